"""The workflows: command name -> (module with ``run``, ``"schema_module:SchemaClass"``).

Shared by the CLI and by ``jaxpetro batch`` (which runs another workflow per input); a light
module, so that looking a workflow up imports no JAX.
"""

from __future__ import annotations

import importlib

__all__ = ["WORKFLOWS", "UNSTAGED", "schema_of"]

WORKFLOWS: dict[str, tuple[str, str]] = {
    "demo": ("jaxpetro.workflows.demo", "jaxpetro.config.demo:DemoConfig"),
    "qmap": ("jaxpetro.workflows.qmap", "jaxpetro.config.qmap:QmapConfig"),
    "ptpath": ("jaxpetro.workflows.ptpath", "jaxpetro.config.ptpath:PtpathConfig"),
    "isocon": ("jaxpetro.workflows.isocon", "jaxpetro.config.isocon:IsoconConfig"),
    "section": ("jaxpetro.workflows.section", "jaxpetro.config.section:SectionConfig"),
    "forward": ("jaxpetro.workflows.forward", "jaxpetro.config.forward:ForwardConfig"),
    "batch": ("jaxpetro.workflows.batch", "jaxpetro.config.batch:BatchConfig"),
}

#: workflows that manage their output folder themselves (one all-or-nothing folder per input,
#: resumable), instead of the CLI staging the whole --out folder
UNSTAGED = frozenset({"batch"})


def schema_of(path: str) -> type:
    """The schema class of a ``"module:Class"`` path."""
    module_name, class_name = path.split(":")
    return getattr(importlib.import_module(module_name), class_name)

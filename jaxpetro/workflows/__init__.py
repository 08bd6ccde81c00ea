"""One module per command; each has ``run(config, out_dir, quiet=False)`` made of typed stages
and one writer. Submodules load on first use.

Modules:
    qmap:    EPMA maps + spots -> phases, mixing fractions, wt% maps with errors, summaries.
    ptpath:  garnet zoning profile (+ inclusions, forward model) -> P-T(-t) path with bands.
    isocon:  whole-rock analyses -> immobile elements, mass change, gains and losses.
    batch:   many inputs through one workflow (resumable, across processes); the sweep runner.
    demo:    the embedded synthetic thin section through qmap, plus the ptpath and isocon demos.
    stages:  the progress bar and stage timings every workflow uses.
"""

import importlib

__all__ = ["batch", "demo", "isocon", "ptpath", "qmap", "stages"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxpetro.workflows.{name}")
    raise AttributeError(f"module 'jaxpetro.workflows' has no attribute {name!r}")

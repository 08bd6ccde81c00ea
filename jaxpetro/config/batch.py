"""Config schema of ``jaxpetro batch`` (many inputs through one workflow, resumable, multi-process)."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jaxpetro.config.loader import NestedConfig, nested_config, option, section
from jaxpetro.errors import ConfigError

__all__ = ["BatchConfig", "DistributedConfig", "expand_inputs", "input_name"]

_HOST_PORT = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


@dataclass(frozen=True)
class DistributedConfig:
    """Several processes (on one or many hosts) sharing the inputs, through ``jax.distributed``."""

    coordinator: str | None = option(
        None, "host:port of process 0 (e.g. node01:12345); empty = one process, unless 'auto'")
    num_processes: int | None = option(None, "number of processes in the job (with coordinator)", ge=1)
    process_id: int | None = option(None, "this process's index, 0 ... num_processes-1 (with coordinator)", ge=0)
    auto: bool = option(False, "read coordinator, process count and index from the cluster (SLURM, Open MPI) "
                               "through jax.distributed.initialize()")
    timeout_s: int = option(300, "seconds a process waits for the others to join", ge=1)

    def __post_init__(self):
        given = [self.coordinator is not None, self.num_processes is not None, self.process_id is not None]
        if any(given) and not all(given):
            raise ConfigError("distributed.coordinator, distributed.num_processes and distributed.process_id go "
                              "together: give all three (or set distributed.auto: true on SLURM / Open MPI).")
        if self.coordinator is not None and not _HOST_PORT.fullmatch(self.coordinator):
            raise ConfigError(f"distributed.coordinator must be host:port (e.g. 127.0.0.1:12345), "
                              f"got {self.coordinator!r}.")
        if all(given) and self.process_id >= self.num_processes:
            raise ConfigError(f"distributed.process_id {self.process_id} must be below distributed.num_processes "
                              f"{self.num_processes}.")
        if self.auto and any(given):
            raise ConfigError("distributed.auto reads the job layout from the cluster; leave coordinator, "
                              "num_processes and process_id empty with it.")

    @property
    def enabled(self) -> bool:
        return self.auto or self.coordinator is not None


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Many inputs through one workflow: one output folder each, resumable, across processes."""

    workflow: Literal["qmap", "ptpath", "isocon"] = option(help="the workflow every input goes through")
    inputs: tuple[str, ...] = option(
        help="input files or folders, or glob patterns (e.g. [maps/*.npz]); relative to this config's folder",
        path=True)
    input_key: str = option(
        help="the dotted key of the workflow's config each input fills, e.g. input.maps (qmap), profile "
             "(ptpath), data (isocon)")
    base: dict = nested_config("the rest of the workflow's config, as in its own YAML (paths relative to "
                               "this config's folder)")
    distributed: DistributedConfig = section(DistributedConfig, "several processes or hosts")

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", self.input_key):
            raise ConfigError(f"input_key must be a dotted config key such as 'input.maps', got {self.input_key!r}.")
        if not isinstance(self.base, NestedConfig):  # built directly in Python, not by load_config
            object.__setattr__(self, "base", NestedConfig(self.base))
        expand_inputs(self.inputs)  # an input that matches nothing is a config error, before any run


def expand_inputs(patterns: tuple[str, ...]) -> list[str]:
    """The input paths of ``patterns`` (globs expanded, sorted per pattern, duplicates dropped).

    Raises:
        ConfigError: a pattern matches nothing, or two inputs would share an output folder.
    """
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or (not glob.has_magic(pattern) and not Path(pattern).exists()):
            raise ConfigError(f"inputs: '{pattern}' matches no file or folder; check the path (relative paths are "
                              "resolved from the batch config's folder).")
        paths += [m for m in matches if m not in paths]
    if not paths:
        raise ConfigError("inputs is empty; list the input files, e.g. inputs: [maps/*.npz].")
    names: dict[str, str] = {}
    for path in paths:
        name = input_name(path)
        if name in names:
            raise ConfigError(f"inputs '{names[name]}' and '{path}' would both write to the output folder "
                              f"'{name}/'; rename one of them.")
        names[name] = path
    return paths


def input_name(path: str) -> str:
    """The output folder name of an input: its file name without the extension."""
    return Path(path).stem or Path(path).name

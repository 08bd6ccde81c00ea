"""The options convention shared by every kernel.

Each kernel has ONE frozen options object (an ``equinox.Module``, hashable) whose field
names are the config keys of its section, so ``Options.from_config(section)`` is a plain
copy, with no renaming and no second set of defaults. Fields that change the compiled
program (a family, an iteration cap, a block size) are ``static`` (part of the pytree
structure: a new value compiles anew); real-valued settings (a tolerance, a covariance
floor, a penalty) are array leaves, so changing them reuses the compiled program. The
object is passed as one argument to the jitted kernel.

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import equinox as eqx

_O = TypeVar("_O", bound="KernelOptions")


def static(default: Any = dataclasses.MISSING) -> Any:
    """A compile-time option (part of the pytree structure)."""
    if default is dataclasses.MISSING:
        return eqx.field(static=True)
    return eqx.field(static=True, default=default)


def _as_float(value: Any) -> Any:
    """Python numbers become floats (one dtype, so an int from a config file, ``tol: 0``, does
    not compile a second program); arrays, tracers and None pass through."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def traced(default: Any = dataclasses.MISSING) -> Any:
    """A real-valued option: an array leaf of the pytree (a new value reuses the compiled
    program), stored as a Python float when given as a number."""
    if default is dataclasses.MISSING:
        return eqx.field(converter=_as_float)
    return eqx.field(default=default, converter=_as_float)


class KernelOptions(eqx.Module):
    """Base class of the kernels' options objects."""

    @classmethod
    def from_config(cls: type[_O], section: Any, **overrides: Any) -> _O:
        """Build from a config section (an object with attributes, or a mapping) whose keys
        are this object's field names; keys the section lacks keep this object's defaults;
        ``overrides`` (e.g. a derived ``family``) win. Keys of the section that are not
        options of this kernel are ignored (a section also holds workflow-level keys)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(section, Mapping):
            values = {n: section[n] for n in names if n in section}
        else:
            values = {n: getattr(section, n) for n in names if hasattr(section, n)}
        values.update(overrides)
        return cls(**values)

    def replace(self: _O, **changes: Any) -> _O:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


__all__ = ["KernelOptions", "static", "traced"]

"""Float64 for a workflow run without touching the user's global JAX configuration."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import jax

P = ParamSpec("P")
R = TypeVar("R")


def float64(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` inside ``jax.enable_x64(True)`` (thread-local; restored afterwards).

    Workflows need float64 for likelihood sums, Kalman algebra and calibration fits; big
    map arrays stay float32 by explicit choice at the call sites.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapper

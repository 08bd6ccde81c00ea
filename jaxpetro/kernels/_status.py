"""One result status for every iterative kernel (mixture EM, unmixing, group lasso, L-BFGS,
the ensemble smoother).

Modelled on optimistix's ``RESULTS``: a solver never raises inside ``jit``; it returns a
:class:`Status` whose ``code`` says how it ended, and the caller decides (a workflow turns a
non-success into a clear message; a user may call :func:`error_if` to raise inside ``jit``
via ``equinox.error_if``). Fields are arrays, so a vmapped solve has one status per problem.

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import enum

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Int


class StatusCode(enum.IntEnum):
    """How an iterative kernel ended (the ``code`` of a :class:`Status`)."""

    SUCCESS = 0  # the stopping criterion was met, every value finite
    MAX_ITERATIONS = 1  # the iteration budget ran out before the criterion was met
    NONFINITE = 2  # a NaN or inf appeared (objective, likelihood or iterate)


_MESSAGES = {
    StatusCode.SUCCESS: "converged",
    StatusCode.MAX_ITERATIONS: "did not converge within the iteration limit",
    StatusCode.NONFINITE: "produced a non-finite value (NaN or inf)",
}


class Status(eqx.Module):
    """How a kernel ended.

    Attributes:
        converged: the stopping criterion was met and every value stayed finite.
        finite: every objective / likelihood value and the result are finite.
        iterations: iterations performed (EM steps, sweeps, L-BFGS steps, ensemble steps).
        code: a :class:`StatusCode` value (int32).
    """

    converged: Bool[Array, "*batch"]
    finite: Bool[Array, "*batch"]
    iterations: Int[Array, "*batch"]
    code: Int[Array, "*batch"]

    @property
    def message(self) -> str:
        """A human-readable summary (host side; for a batched status, the worst code)."""
        code = StatusCode(int(jnp.max(self.code)))
        return _MESSAGES[code]


def make_status(converged: ArrayLike, finite: ArrayLike, iterations: ArrayLike) -> Status:
    """Status from the two flags: NONFINITE beats MAX_ITERATIONS beats SUCCESS."""
    finite = jnp.asarray(finite, dtype=bool)
    converged = jnp.asarray(converged, dtype=bool) & finite
    code = jnp.where(
        ~finite, int(StatusCode.NONFINITE), jnp.where(converged, int(StatusCode.SUCCESS), int(StatusCode.MAX_ITERATIONS))
    ).astype(jnp.int32)
    return Status(converged, finite, jnp.asarray(iterations, dtype=jnp.int32), code)


def error_if(x, status: Status, *, allow_max_iterations: bool = False):
    """Return ``x`` unchanged, raising (also under ``jit``, via ``equinox.error_if``) when the
    kernel failed: a non-finite result always, a missed criterion unless allowed."""
    bad = status.code == int(StatusCode.NONFINITE)
    x = eqx.error_if(x, jnp.any(bad), _MESSAGES[StatusCode.NONFINITE])
    if not allow_max_iterations:
        x = eqx.error_if(x, jnp.any(status.code == int(StatusCode.MAX_ITERATIONS)), _MESSAGES[StatusCode.MAX_ITERATIONS])
    return x


__all__ = ["Status", "StatusCode", "error_if", "make_status"]

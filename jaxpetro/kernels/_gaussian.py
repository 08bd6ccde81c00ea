"""Gaussian pieces shared by the exact Kalman filter and the ensemble smoother.

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax.scipy.linalg import cho_solve
from jaxtyping import Array, Bool, Float

LOG_2PI = math.log(2.0 * math.pi)


def neutralise_masked(
    y: Float[Array, " p"], mask: Bool[Array, " p"], R: Float[Array, "p p"]
) -> tuple[Float[Array, " p"], Float[Array, "p p"], Float[Array, ""]]:
    """Observation vector and noise with masked components made inert.

    A masked component gets value 0, no correlation with the others and unit variance;
    callers also zero its predicted value / observation-matrix row. Its innovation is then
    exactly 0 with an independent unit variance, so the gain has a zero column for it and
    the update equals the one without it. Returns ``(y', R', n_masked)``; the likelihood of
    the inert components is removed by :func:`masked_loglik`.
    """
    m = mask.astype(R.dtype)
    y0 = jnp.where(mask, y, 0.0)  # NaN in a masked slot must not leak into sums
    R0 = R * m[:, None] * m[None, :] + jnp.diag(1.0 - m)
    return y0, R0, jnp.sum(1.0 - m)


def masked_loglik(
    innovation: Float[Array, " p"], chol_S: Float[Array, "p p"], n_masked: Float[Array, ""]
) -> tuple[Float[Array, ""], Float[Array, " p"]]:
    """log N(v; 0, S) over the observed components from the lower Cholesky factor of S.

    Masked components (made inert by :func:`neutralise_masked`: v = 0, unit variance)
    contribute exactly ``-1/2 log 2 pi`` each, which is added back. Also returns ``S^-1 v``
    (the Kalman mean update reuses it).
    """
    Sv = cho_solve((chol_S, True), innovation)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_S)))
    ll = -0.5 * (innovation @ Sv + logdet + innovation.shape[0] * LOG_2PI) + 0.5 * n_masked * LOG_2PI
    return ll, Sv


__all__ = ["LOG_2PI", "masked_loglik", "neutralise_masked"]

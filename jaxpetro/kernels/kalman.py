"""Exact linear-Gaussian Kalman filter and Rauch–Tung–Striebel smoother along an ordered axis.

State-space model over steps n = 0 .. n_steps-1 (shells of a garnet, ordered by radius)::

    x_0     ~ N(m0, P0)
    x_n     = F x_{n-1} + w_n,          w_n ~ N(0, Q_n)           (n >= 1; Q_0 is unused)
    y_n     = H_n x_n + b_n + v_n,      v_n ~ N(0, R_n)

with a boolean mask per observation component: a masked component (a missing value, or
a whole missing shell) is removed from the update exactly, never zero-filled. This is
the reference the ensemble kernels (:mod:`enks`) converge to, and the fast path when the
forward model is linear.

Numerics: covariance updates in Joseph form, every ``S^-1`` through a Cholesky solve, the
log-likelihood from the Cholesky factor. Everything is a pure function of arrays:
``jit``/``vmap``/``grad`` work (e.g. ``vmap`` over profiles, ``grad`` of the
log-likelihood with respect to noise scales).

Kalman (1960); smoother: Rauch, Tung & Striebel (1965). Works in the floating dtype it is
given (float64 recommended: the covariance updates of stiff noise ratios lose digits in float32).

This module imports nothing of jaxpetro except the shared ``jaxpetro.kernels._*`` modules.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_solve
from jaxtyping import Array, ArrayLike, Bool, Float

from jaxpetro.kernels._gaussian import masked_loglik, neutralise_masked


class LinearGaussianModel(NamedTuple):
    """A linear-Gaussian state-space model (see the module docstring).

    Attributes:
        F: transition matrix (d, d); the identity for a random walk.
        Q: process-noise covariance added before step n, (n, d, d); ``Q[0]`` is unused.
        H: observation matrices (n, p, d).
        b: observation offsets (n, p).
        R: observation-noise covariances (n, p, p).
        m0: prior mean of x_0 (d,).
        P0: prior covariance of x_0 (d, d).
    """

    F: Float[Array, "d d"]
    Q: Float[Array, "n d d"]
    H: Float[Array, "n p d"]
    b: Float[Array, "n p"]
    R: Float[Array, "n p p"]
    m0: Float[Array, " d"]
    P0: Float[Array, "d d"]


class KalmanResult(NamedTuple):
    """Filter (and smoother) moments.

    Attributes:
        mean_f, cov_f: predicted (forecast) moments at each step, (n, d), (n, d, d).
        mean_a, cov_a: filtered (analysis) moments, (n, d), (n, d, d).
        mean_s, cov_s: smoothed moments (equal to the filtered ones before smoothing).
        loglik: log p(y_observed) under the model (nats), masked components excluded.
    """

    mean_f: Float[Array, "n d"]
    cov_f: Float[Array, "n d d"]
    mean_a: Float[Array, "n d"]
    cov_a: Float[Array, "n d d"]
    mean_s: Float[Array, "n d"]
    cov_s: Float[Array, "n d d"]
    loglik: Float[Array, ""]


def _update(
    m: Float[Array, " d"],
    P: Float[Array, "d d"],
    y: Float[Array, " p"],
    mask: Bool[Array, " p"],
    H: Float[Array, "p d"],
    b: Float[Array, " p"],
    R: Float[Array, "p p"],
) -> tuple[Float[Array, " d"], Float[Array, "d d"], Float[Array, ""]]:
    """One Kalman measurement update in Joseph form; returns (m_a, P_a, loglik term).

    Masked components are made inert (:func:`~jaxpetro.kernels._gaussian.neutralise_masked`:
    zero innovation, unit variance, zero row of H), which equals the update without them."""
    y0, R0, n_masked = neutralise_masked(y, mask, R)
    H0 = H * mask.astype(H.dtype)[:, None]
    b0 = jnp.where(mask, b, 0.0)
    v = y0 - H0 @ m - b0
    HP = H0 @ P
    S = HP @ H0.T + R0
    S = 0.5 * (S + S.T)
    L = jnp.linalg.cholesky(S)
    K = cho_solve((L, True), HP).T  # P H^T S^-1 (S symmetric)
    m_a = m + K @ v
    IKH = jnp.eye(m.shape[0], dtype=P.dtype) - K @ H0
    P_a = IKH @ P @ IKH.T + K @ R0 @ K.T  # Joseph form: symmetric PSD by construction
    P_a = 0.5 * (P_a + P_a.T)
    ll, _ = masked_loglik(v, L, n_masked)
    return m_a, P_a, ll


def kalman_filter(model: LinearGaussianModel, y: Float[Array, "n p"], mask: Bool[Array, "n p"]) -> KalmanResult:
    """Exact Kalman filter; ``mean_s``/``cov_s`` are the filtered moments.

    Args:
        model: the state-space model.
        y: observations (n, p); values under ``mask == False`` are ignored (may be NaN).
        mask: True where a component is observed.
    """
    q_next = jnp.concatenate([model.Q[1:], jnp.zeros_like(model.Q[:1])], axis=0)

    def step(carry, inp):
        m, P = carry
        y_n, mask_n, H_n, b_n, R_n, Q_next = inp
        m_a, P_a, ll = _update(m, P, y_n, mask_n, H_n, b_n, R_n)
        m_f = model.F @ m_a
        P_f = model.F @ P_a @ model.F.T + Q_next
        return (m_f, 0.5 * (P_f + P_f.T)), (m, P, m_a, P_a, ll)

    _, (mf, Pf, ma, Pa, ll) = lax.scan(step, (model.m0, model.P0), (y, mask, model.H, model.b, model.R, q_next))
    return KalmanResult(mf, Pf, ma, Pa, ma, Pa, jnp.sum(ll))


def rts_smoother(model: LinearGaussianModel, y: Float[Array, "n p"], mask: Bool[Array, "n p"]) -> KalmanResult:
    """Exact Rauch–Tung–Striebel smoother: p(x_n | all observations) for every step.

    Gains ``J_n = P_a,n F^T P_f,n+1^-1`` come from Cholesky solves with ``P_f,n+1``.
    """
    filt = kalman_filter(model, y, mask)

    def back(carry, inp):
        m_s1, P_s1 = carry
        m_a, P_a, m_f1, P_f1 = inp
        Lf = jnp.linalg.cholesky(P_f1)
        J = cho_solve((Lf, True), model.F @ P_a).T  # P_a F^T P_f1^-1
        m_s = m_a + J @ (m_s1 - m_f1)
        P_s = P_a + J @ (P_s1 - P_f1) @ J.T
        P_s = 0.5 * (P_s + P_s.T)
        return (m_s, P_s), (m_s, P_s)

    last = (filt.mean_a[-1], filt.cov_a[-1])
    _, (ms, Ps) = lax.scan(
        back, last, (filt.mean_a[:-1], filt.cov_a[:-1], filt.mean_f[1:], filt.cov_f[1:]), reverse=True
    )
    ms = jnp.concatenate([ms, filt.mean_a[-1:]], axis=0)
    Ps = jnp.concatenate([Ps, filt.cov_a[-1:]], axis=0)
    return filt._replace(mean_s=ms, cov_s=Ps)


def random_walk_noise(dr: Float[ArrayLike, " n"], q: Float[ArrayLike, " d"]) -> Float[Array, "n d d"]:
    """Process noise of a random walk along radius: ``Q_n = dr_n diag(q^2)``.

    Args:
        dr: step lengths (n,), e.g. µm between consecutive shells (``dr[0]`` unused).
        q: noise scale per unit step of each state component (d,), e.g. kbar/sqrt(µm);
            0 for a static parameter carried in the state.
    """
    dr, q = jnp.asarray(dr), jnp.asarray(q)
    return dr[:, None, None] * jnp.diag(q * q)[None]


def loglik(model: LinearGaussianModel, y: Float[Array, "n p"], mask: Bool[Array, "n p"]) -> Float[Array, ""]:
    """Exact marginal log-likelihood log p(y) of the observed components (nats)."""
    return kalman_filter(model, y, mask).loglik


# jit-compiled entry points (shapes are static per call signature).
kalman_filter_jit = jax.jit(kalman_filter)
rts_smoother_jit = jax.jit(rts_smoother)

__all__ = [
    "KalmanResult",
    "LinearGaussianModel",
    "kalman_filter",
    "kalman_filter_jit",
    "loglik",
    "random_walk_noise",
    "rts_smoother",
    "rts_smoother_jit",
]

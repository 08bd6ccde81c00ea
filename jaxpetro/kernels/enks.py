"""Ensemble Kalman filter and smoothers along an ordered axis (radius as pseudo-time).

Model over steps n = 0 .. n_steps-1 (shells of a garnet, core to rim)::

    x_n = F x_{n-1} + w_n,   w_n ~ N(0, Q_n)              (Q_0 unused; X0 is the prior ensemble)
    y_n = h(params, x_n, aux_n) + v_n,   v_n ~ N(0, R_n)  (components where mask_n is False ignored)

Ensembles are stored row-wise, ``X`` of shape (members N, state d). Static parameters
are carried by state augmentation: components of x with zero process noise.

Every analysis is written as a left multiplication ``X <- X + Lf (Rf^T X)`` with two thin
(N, k) factors whose ``Rf`` columns sum to zero (so the update only sees anomalies).
The same multiplication applied to the stored ensembles of earlier steps is the
ensemble Kalman smoother (EnKS): with ``lag = None`` every earlier step is updated (full
EnKS), with ``lag = L`` only the last L. Two analysis variants:

* ``"stochastic"``: perturbed observations, ``X + (y + eps - h(X)) S^-1 C_hx``;
* ``"sqrt"``: deterministic square root (ETKF written in observation space): the mean is
  moved by the Kalman gain and the anomalies by the symmetric square root
  ``(I + V R^-1 V^T / (N-1))^-1/2``, computed from a p x p eigendecomposition.

Model noise is drawn per member. The ensemble RTS smoother (:func:`ensemble_rts`,
``J_n = C(x_n^a, x_{n+1}^f) C(x_{n+1}^f)^-1`` from the stored ensembles) is the second
smoother; on the same draws it equals the full-lag EnKS exactly when the forecast
anomalies span the whole ensemble space (N <= d + 1, e.g. a state augmented with static
parameters), and otherwise both converge to the exact RTS smoother as N grows (they then
differ by sampling error only). Multiplicative inflation scales forecast anomalies.

Also here: the ensemble estimate of the marginal log-likelihood (accumulated by the
filter; a smooth function of noise scales for a fixed key), a small optax maximiser for
hyperparameters, and the MAP path of the same posterior (the Gaussian Markov random
field view: smoothness prior + misfit, optax L-BFGS) as a deterministic cross-check.

All functions are pure: they ``jit`` and ``vmap`` (many profiles, replicates). The
observation function ``h(params, x, aux_n)`` maps one state (d,) to (p,) and must be a
stable Python callable (it is a static argument of the compiled functions).

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.scipy.linalg import cho_solve, solve_triangular
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

_LOG_2PI = math.log(2.0 * math.pi)
# Relative jitter added to small covariance matrices before a Cholesky factorisation:
# ensemble covariances of static (zero-noise) components can be exactly singular.
_JITTER = 1e-12

ObsFn = Callable[[Any, Float[Array, " d"], Any], Float[Array, " p"]]
Variant = Literal["stochastic", "sqrt"]
SmootherKind = Literal["enks", "rts", "none"]


class EnsembleResult(NamedTuple):
    """Ensembles of a filter/smoother pass.

    Attributes:
        smoothed: smoothed ensembles (n, N, d) (the filtered ones when ``smoother="none"``).
        filtered: analysis ensembles of the filter (n, N, d).
        forecast: forecast ensembles after inflation, the ones each analysis used (n, N, d).
        loglik: ensemble estimate of log p(y) (nats): sum over steps of
            log N(y_n; mean h(X_f), cov h(X_f) + R_n) over the observed components.
    """

    smoothed: Float[Array, "n N d"]
    filtered: Float[Array, "n N d"]
    forecast: Float[Array, "n N d"]
    loglik: Float[Array, ""]


# ----------------------------------------------------------------------------- pieces


def _chol(C: Float[Array, "k k"]) -> Float[Array, "k k"]:
    """Cholesky factor with a small relative jitter (for exactly singular ensemble covariances)."""
    k = C.shape[0]
    scale = jnp.maximum(jnp.trace(C) / k, jnp.finfo(C.dtype).tiny)
    return jnp.linalg.cholesky(0.5 * (C + C.T) + _JITTER * scale * jnp.eye(k, dtype=C.dtype))


def _thin_mm(A: Float[Array, "a k"], B: Float[Array, "k b"]) -> Float[Array, "a b"]:
    """``A @ B`` with a small inner dimension k, as k fused elementwise terms.

    XLA on CPU runs such products (k = p or d, batched by vmap over profiles) through a
    general GEMM with a large fixed cost per call; a sum of k broadcast products fuses into
    one loop instead (measured several times faster for k <= 8). Same sum up to roundoff.
    """
    if A.shape[-1] > 8:
        return A @ B
    out = A[:, 0:1] * B[0:1, :]
    for i in range(1, A.shape[-1]):
        out = out + A[:, i : i + 1] * B[i : i + 1, :]
    return out


def standard_normal(key: PRNGKeyArray, shape: tuple[int, ...], dtype=jnp.float64) -> Array:
    """Standard-normal draws for perturbations and model noise, generated in float32.

    They are Monte Carlo noise, immediately scaled by float64 Cholesky factors, so float32
    draws lose nothing that matters and cost a third of float64 ones on CPU (the counter-based
    generator and its inverse-erf transform dominate an EnKS step otherwise; measured).
    """
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


def _masked_obs(y, mask, R):
    """(y', R', n_masked): masked components set to 0 with an independent unit variance."""
    m = mask.astype(R.dtype)
    y0 = jnp.where(mask, y, 0.0)
    R0 = R * m[:, None] * m[None, :] + jnp.diag(1.0 - m)
    return y0, R0, jnp.sum(1.0 - m)


def analysis_factors(
    key: PRNGKeyArray,
    HX: Float[Array, "N p"],
    y: Float[Array, " p"],
    mask: Bool[Array, " p"],
    R: Float[Array, "p p"],
    variant: Variant = "stochastic",
) -> tuple[Float[Array, "N k"], Float[Array, "N k"], Float[Array, ""]]:
    """Thin factors of one ensemble analysis, and the step's log-likelihood term.

    Args:
        key: PRNG key for the observation perturbations (stochastic variant).
        HX: predicted observations of each member (N, p).
        y, mask, R: observation (p,), which components are observed, noise covariance (p, p).
        variant: ``"stochastic"`` or ``"sqrt"``.

    Returns:
        ``(Lf, Rf, loglik)``: any ensemble Z (N, m) whose members correspond to those of
        HX is updated as ``Z + Lf @ (Rf.T @ Z)`` (the current state, and earlier states
        for the smoother); ``loglik`` is log N(y; mean HX, cov HX + R) over observed components.
    """
    n_mem = HX.shape[0]
    m = mask.astype(HX.dtype)
    y0, R0, n_masked = _masked_obs(y, mask, R)
    hbar = jnp.mean(HX, axis=0)
    V = (HX - hbar) * m  # predicted-observation anomalies; masked columns inert
    d = (y0 - hbar) * m
    S = V.T @ V / (n_mem - 1) + R0
    L = jnp.linalg.cholesky(0.5 * (S + S.T))
    Sd = cho_solve((L, True), d)
    loglik = -0.5 * (d @ Sd + 2.0 * jnp.sum(jnp.log(jnp.diagonal(L))) + d.shape[0] * _LOG_2PI)
    loglik = loglik + 0.5 * n_masked * _LOG_2PI
    if variant == "stochastic":
        # Centred perturbations: the mean update is then exactly the Kalman one and only the
        # spread carries sampling noise; their 1/(N-1) sample covariance is unbiased for R
        # (as for the anomalies V), so no rescaling.
        E = _thin_mm(standard_normal(key, HX.shape, HX.dtype), jnp.linalg.cholesky(R0).T)
        E = E - jnp.mean(E, axis=0)
        D = (y0 + E - HX) * m
        # S^-1 from Cholesky solves against the p x p identity, then one GEMM: a triangular
        # solve with N right-hand sides is ~30x slower on CPU for p = 6 (measured).
        S_inv = cho_solve((L, True), jnp.eye(S.shape[0], dtype=S.dtype))
        U = _thin_mm(D, S_inv)  # (N, p): rows (y + e_m - h(x_m))^T S^-1
        return U, V / (n_mem - 1), loglik
    if variant == "sqrt":
        # whitened anomalies V R^-T/2, by a triangular solve (no explicit inverse of R's factor)
        W = solve_triangular(jnp.linalg.cholesky(R0), V.T, lower=True).T / math.sqrt(n_mem - 1)
        lam, E = jnp.linalg.eigh(W.T @ W)
        s = jnp.sqrt(1.0 + jnp.maximum(lam, 0.0))
        f = -1.0 / (s * (1.0 + s))  # ((1+lam)^-1/2 - 1) / lam, finite at lam = 0
        WE = W @ E
        g = V @ Sd / (n_mem - 1)  # mean increment coefficients (sum to zero)
        Lf = jnp.concatenate([jnp.ones((n_mem, 1), HX.dtype), WE * f], axis=1)
        Rf = jnp.concatenate([g[:, None], WE], axis=1)
        return Lf, Rf, loglik
    raise ValueError(f"unknown analysis variant {variant!r}; use 'stochastic' or 'sqrt'")


def propagate(
    key: PRNGKeyArray, Xa: Float[Array, "N d"], F: Float[Array, "d d"], Q: Float[Array, "d d"]
) -> Float[Array, "N d"]:
    """Forecast ensemble ``F x + w`` with w ~ N(0, Q) drawn independently per member.

    The model noise is drawn, not added by a deterministic transform of the anomalies:
    a smoother needs the forecast anomalies to carry new, independent directions (with a
    deterministic transform the smoothed spread collapses onto the prior's span).
    """
    noise = _thin_mm(standard_normal(key, Xa.shape, Xa.dtype), _chol(Q).T)
    # A zero-variance component (a static parameter) has a zero row and column in Q: keep it
    # exactly constant instead of letting the Cholesky jitter move it.
    return _thin_mm(Xa, F.T) + noise * (jnp.diagonal(Q) > 0)


def _analysis_T(key, HXT, y, mask, R):
    """Stochastic :func:`analysis_factors` on member-minor arrays: ``HXT`` (p, N) -> factors
    ``(Lf^T, Rf^T)`` (k, N) and the log-likelihood term. Same draws and algebra, transposed."""
    p, n_mem = HXT.shape
    m = mask.astype(HXT.dtype)
    y0, R0, n_masked = _masked_obs(y, mask, R)
    hbar = jnp.mean(HXT, axis=1)
    VT = (HXT - hbar[:, None]) * m[:, None]
    d = (y0 - hbar) * m
    S = VT @ VT.T / (n_mem - 1) + R0
    L = jnp.linalg.cholesky(0.5 * (S + S.T))
    Sd = cho_solve((L, True), d)
    loglik = -0.5 * (d @ Sd + 2.0 * jnp.sum(jnp.log(jnp.diagonal(L))) + d.shape[0] * _LOG_2PI)
    loglik = loglik + 0.5 * n_masked * _LOG_2PI
    ET = _thin_mm(jnp.linalg.cholesky(R0), standard_normal(key, (n_mem, p), HXT.dtype).T)
    ET = ET - jnp.mean(ET, axis=1, keepdims=True)
    DT = (y0[:, None] + ET - HXT) * m[:, None]
    S_inv = cho_solve((L, True), jnp.eye(p, dtype=S.dtype))
    UT = _thin_mm(S_inv.T, DT)
    return UT, VT / (n_mem - 1), loglik


def _propagate_T(key, XaT, F, Q):
    """:func:`propagate` on a member-minor ensemble (d, N), same draws."""
    d, n_mem = XaT.shape
    noiseT = _thin_mm(_chol(Q), standard_normal(key, (n_mem, d), XaT.dtype).T)
    return _thin_mm(F, XaT) + noiseT * (jnp.diagonal(Q) > 0)[:, None]


# ----------------------------------------------------------------------------- filter / smoothers


@functools.partial(
    jax.jit, static_argnames=("h", "variant", "lag", "smoother")
)
def ensemble_smoother(
    key: PRNGKeyArray,
    h: ObsFn,
    params: Any,
    X0: Float[Array, "N d"],
    y: Float[Array, "n p"],
    mask: Bool[Array, "n p"],
    R: Float[Array, "n p p"],
    Q: Float[Array, "n d d"],
    aux: Any = None,
    *,
    F: Float[Array, "d d"] | None = None,
    inflation: Float[Array, ""] | float = 1.0,
    variant: Variant = "stochastic",
    lag: int | None = None,
    smoother: SmootherKind = "enks",
) -> EnsembleResult:
    """Ensemble Kalman filter along the step axis with ``lax.scan``, then a smoother.

    Args:
        key: PRNG key (observation perturbations and model noise are derived from it).
        h: observation function ``h(params, x (d,), aux_n) -> (p,)`` (static).
        params: pytree of forward-model parameters passed to ``h`` unchanged.
        X0: prior ensemble of the first step (N, d).
        y: observations (n, p); values where ``mask`` is False are ignored (may be NaN).
        mask: True where observed (n, p); a missing shell is an all-False row.
        R: observation-noise covariance per step (n, p, p).
        Q: process-noise covariance added before each step (n, d, d); ``Q[0]`` unused.
        aux: pytree with leading axis n passed to ``h`` per step (default: the step index).
        F: transition matrix (default identity: a random walk).
        inflation: multiplicative inflation of forecast anomalies (>= 1; not applied at step 0).
        variant: analysis, ``"stochastic"`` or ``"sqrt"``.
        lag: smoother lag in steps (None: full EnKS over all earlier steps).
        smoother: ``"enks"``, ``"rts"`` (ensemble RTS on the filter output) or ``"none"``.
    """
    n_steps, (n_mem, d) = y.shape[0], X0.shape
    F = jnp.eye(d, dtype=X0.dtype) if F is None else F
    aux = jnp.arange(n_steps) if aux is None else aux
    keys = jax.random.split(key, (n_steps, 2))
    window = n_steps if lag is None else lag
    steps = jnp.arange(n_steps)
    # Full-lag EnKS: instead of sweeping a buffer of all n steps at every step (most of it
    # still zero), the filter keeps each step's factors and _full_lag_smooth applies the same
    # products afterwards to the steps stored so far only. A finite lag keeps the running buffer.
    keep_buffer = smoother == "enks" and lag is not None
    keep_factors = smoother == "enks" and lag is None

    # Inside the scan ensembles are member-minor, (d, N) and (p, N), so that elementwise work
    # runs along the N members (on the 2-core CPU benchmark it timed the same as member-major,
    # within noise); inputs and outputs keep the (N, d) convention.
    h_ens_T = jax.vmap(h, in_axes=(None, 1, None), out_axes=1)

    def step(carry, inp):
        XaT_prev, buf, ll = carry
        k, key_pair, y_k, mask_k, R_k, Q_k, aux_k = inp
        # Q_0 is unused (step 0 takes X0): replace it so that a singular Q_0 (e.g. a zero
        # first step length) cannot put NaN into gradients through the discarded branch.
        Q_k = jnp.where(k == 0, jnp.eye(d, dtype=Q_k.dtype), Q_k)
        XfT = _propagate_T(key_pair[0], XaT_prev, F, Q_k)
        mean = jnp.mean(XfT, axis=1, keepdims=True)
        XfT = jnp.where(k == 0, X0.T, mean + inflation * (XfT - mean))
        HXT = h_ens_T(params, XfT, aux_k)
        if variant == "stochastic":
            LfT, RfT, ll_k = _analysis_T(key_pair[1], HXT, y_k, mask_k, R_k)
        else:
            Lf, Rf, ll_k = analysis_factors(key_pair[1], HXT.T, y_k, mask_k, R_k, variant)
            LfT, RfT = Lf.T, Rf.T
        XaT = XfT + _thin_mm(XfT @ RfT.T, LfT)
        if keep_buffer:
            # The buffer is (N, n d): one member per row, so the update of every stored
            # step is two plain GEMMs, (k x N)(N x n d) and (N x k)(k x n d). Steps not
            # reached yet are zero and stay zero (their anomalies are zero).
            buf = lax.dynamic_update_slice(buf, XfT.T, (0, k * d))
            upd = LfT.T @ (RfT @ buf)
            live = jnp.repeat((steps <= k) & (k - steps <= window), d).astype(XfT.dtype)
            buf = buf + upd * live
        factors = (LfT, RfT) if keep_factors else ()
        return (XaT, buf, ll + ll_k), (XaT, XfT, factors)

    buf0 = jnp.zeros((n_mem, n_steps * d), X0.dtype) if keep_buffer else jnp.zeros((), X0.dtype)
    inputs = (steps, keys, y, mask, R, Q, aux)
    (_, buf, ll), (XaT, XfT, factors) = lax.scan(step, (X0.T, buf0, jnp.zeros((), X0.dtype)), inputs)
    Xa, Xf = jnp.swapaxes(XaT, 1, 2), jnp.swapaxes(XfT, 1, 2)
    if smoother == "enks" and keep_factors:
        Xs = _full_lag_smooth(XfT, *factors)
    elif smoother == "enks":
        Xs = jnp.transpose(buf.reshape(n_mem, n_steps, d), (1, 0, 2))
    elif smoother == "rts":
        Xs = ensemble_rts(Xa, Xf)
    elif smoother == "none":
        Xs = Xa
    else:
        raise ValueError(f"unknown smoother {smoother!r}; use 'enks', 'rts' or 'none'")
    return EnsembleResult(Xs, Xa, Xf, ll)


def _full_lag_smooth(
    XfT: Float[Array, "n d N"], LfT: Float[Array, "n k N"], RfT: Float[Array, "n k N"], n_blocks: int = 8
) -> Float[Array, "n N d"]:
    """Full-lag EnKS from the filter's forecasts and analysis factors (member-minor), after
    the filter; returns the smoothed ensembles (n, N, d).

    The full-lag smoother is ``X^s_j = T_{n-1} ... T_j Xf_j`` with ``T_m = I + Lf_m Rf_m^T``:
    a buffer of the stored steps to which each step's transform is applied after storing
    that step. Done during the filter, the whole buffer of n steps is swept at every step
    although the steps not reached yet are zero. Here the steps are cut into ``n_blocks``
    blocks, each a ``lax.scan`` over its steps whose buffer (steps so far x d, N) holds only
    the rows of the steps stored so far (static sizes): about half the work and memory
    traffic, the same products on the same rows, so the same result up to roundoff. The
    rank-k update is elementwise (:func:`_thin_mm`, one fused sweep of the buffer).
    """
    n, d, n_mem = XfT.shape
    size = -(-n // max(1, min(n_blocks, n)))

    def step(buf, inp):
        j, XfT_j, LfT_j, RfT_j = inp
        buf = lax.dynamic_update_slice(buf, XfT_j, (j * d, 0))
        return buf + _thin_mm(buf @ RfT_j.T, LfT_j), None

    buf = jnp.zeros((0, n_mem), XfT.dtype)
    for start in range(0, n, size):
        stop = min(start + size, n)
        buf = jnp.concatenate([buf, jnp.zeros(((stop - start) * d, n_mem), XfT.dtype)], axis=0)
        idx = jnp.arange(start, stop)
        buf, _ = lax.scan(step, buf, (idx, XfT[start:stop], LfT[start:stop], RfT[start:stop]))
    return jnp.swapaxes(buf.reshape(n, d, n_mem), 1, 2)


def ensemble_rts(filtered: Float[Array, "n N d"], forecast: Float[Array, "n N d"]) -> Float[Array, "n N d"]:
    """Ensemble Rauch–Tung–Striebel smoother (backward pass over stored ensembles).

    ``X_s,n = X_a,n + (X_s,n+1 - X_f,n+1) J_n^T`` with
    ``J_n = C(x_n^a, x_{n+1}^f) C(x_{n+1}^f)^-1`` from the ensemble anomalies (a Cholesky
    solve with the forecast covariance).
    """

    def back(Xs1, inp):
        Xa, Xf1 = inp
        Aa = Xa - jnp.mean(Xa, axis=0)
        Af = Xf1 - jnp.mean(Xf1, axis=0)
        Lff = _chol(Af.T @ Af)
        Jt = cho_solve((Lff, True), Af.T @ Aa)  # J^T = C_ff^-1 C_fa
        Xs = Xa + (Xs1 - Xf1) @ Jt
        return Xs, Xs

    _, Xs = lax.scan(back, filtered[-1], (filtered[:-1], forecast[1:]), reverse=True)
    return jnp.concatenate([Xs, filtered[-1:]], axis=0)


def ensemble_loglik(
    key: PRNGKeyArray,
    h: ObsFn,
    params: Any,
    X0: Float[Array, "N d"],
    y: Float[Array, "n p"],
    mask: Bool[Array, "n p"],
    R: Float[Array, "n p p"],
    Q: Float[Array, "n d d"],
    aux: Any = None,
    **kwargs,
) -> Float[Array, ""]:
    """Ensemble estimate of log p(y) from a filter pass (no smoothing work).

    With a fixed ``key`` it is a smooth function of ``R``, ``Q``, ``params`` and ``X0``,
    so it can be maximised by gradient ascent (common random numbers).
    """
    return ensemble_smoother(key, h, params, X0, y, mask, R, Q, aux, smoother="none", **kwargs).loglik


# ----------------------------------------------------------------------------- optimisation


def maximise(
    objective: Callable[[Any], Float[Array, ""]],
    theta0: Any,
    *,
    steps: int = 150,
    learning_rate: float = 0.05,
) -> tuple[Any, Float[Array, " steps"]]:
    """Maximise a smooth scalar objective with Adam (``lax.scan`` over ``steps``).

    Used for hyperparameters (log noise scales) against a log-likelihood. Returns the
    parameters with the best objective value seen and the objective history.
    """
    opt = optax.adam(learning_rate)
    value_grad = jax.value_and_grad(lambda t: -objective(t))

    def step(carry, _):
        theta, state, best, best_val = carry
        val, grad = value_grad(theta)
        better = jnp.isfinite(val) & (-val > best_val)
        best = jax.tree_util.tree_map(lambda b, t: jnp.where(better, t, b), best, theta)
        best_val = jnp.where(better, -val, best_val)
        grad = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        updates, state = opt.update(grad, state, theta)
        return (optax.apply_updates(theta, updates), state, best, best_val), -val

    init = (theta0, opt.init(theta0), theta0, jnp.asarray(-jnp.inf))
    (_, _, best, _), history = lax.scan(step, init, None, length=steps)
    return best, history


class LbfgsResult(NamedTuple):
    """Result of :func:`lbfgs_minimise`: minimiser, value, gradient norm, iterations."""

    x: Any
    value: Float[Array, ""]
    grad_norm: Float[Array, ""]
    n_iter: Int[Array, ""]


def lbfgs_minimise(
    fun: Callable[[Any], Float[Array, ""]], x0: Any, *, max_iter: int = 500, tol: float = 1e-9
) -> LbfgsResult:
    """Minimise ``fun`` with optax L-BFGS (zoom line search) in a ``lax.while_loop``.

    Stops when the gradient norm falls below ``tol`` or after ``max_iter`` iterations.
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def cond(carry):
        _, state, n = carry
        grad = optax.tree.get(state, "grad")
        return (n == 0) | ((n < max_iter) & (optax.tree.norm(grad) >= tol))

    def body(carry):
        x, state, n = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state, n + 1

    x, state, n = lax.while_loop(cond, body, (x0, opt.init(x0), jnp.asarray(0)))
    grad = optax.tree.get(state, "grad")
    return LbfgsResult(x, fun(x), optax.tree.norm(grad), n)


def map_objective(
    X: Float[Array, "n d"],
    h: ObsFn,
    params: Any,
    y: Float[Array, "n p"],
    mask: Bool[Array, "n p"],
    R: Float[Array, "n p p"],
    Q: Float[Array, "n d d"],
    aux: Any,
    m0: Float[Array, " d"],
    P0: Float[Array, "d d"],
    F: Float[Array, "d d"],
) -> Float[Array, ""]:
    """Negative log posterior of a path (up to a constant): misfit + GMRF smoothness + prior.

    ``1/2 sum_n |y_n - h(x_n)|^2_{R_n^-1} + 1/2 sum_{n>=1} |x_n - F x_{n-1}|^2_{Q_n^-1}
    + 1/2 |x_0 - m0|^2_{P0^-1}``, masked components excluded; norms via Cholesky solves.
    """

    def misfit(x, y_n, mask_n, R_n, aux_n):
        y0, R0, _ = _masked_obs(y_n, mask_n, R_n)
        r = (y0 - h(params, x, aux_n)) * mask_n
        return 0.5 * jnp.sum(solve_triangular(jnp.linalg.cholesky(R0), r, lower=True) ** 2)

    obs = jnp.sum(jax.vmap(misfit)(X, y, mask, R, aux))
    inc = X[1:] - X[:-1] @ F.T
    dyn = jax.vmap(lambda e, Qn: 0.5 * jnp.sum(solve_triangular(_chol(Qn), e, lower=True) ** 2))(inc, Q[1:])
    prior = 0.5 * jnp.sum(solve_triangular(jnp.linalg.cholesky(P0), X[0] - m0, lower=True) ** 2)
    return obs + jnp.sum(dyn) + prior


@functools.partial(jax.jit, static_argnames=("h", "max_iter"))
def map_path(
    h: ObsFn,
    params: Any,
    y: Float[Array, "n p"],
    mask: Bool[Array, "n p"],
    R: Float[Array, "n p p"],
    Q: Float[Array, "n d d"],
    aux: Any,
    m0: Float[Array, " d"],
    P0: Float[Array, "d d"],
    X_init: Float[Array, "n d"],
    *,
    F: Float[Array, "d d"] | None = None,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> LbfgsResult:
    """MAP path of the smoothing posterior (GMRF prior + misfit) by L-BFGS.

    Optimised in coordinates scaled by the prior standard deviations (so P in kbar and T
    in °C are equally conditioned). On a linear ``h`` it equals the exact RTS mean.
    ``tol`` applies to the gradient norm in those scaled coordinates.
    Returns an :class:`LbfgsResult` whose ``x`` is the path (n, d).
    """
    d = m0.shape[0]
    F = jnp.eye(d, dtype=m0.dtype) if F is None else F
    aux = jnp.arange(y.shape[0]) if aux is None else aux
    scale = jnp.sqrt(jnp.diagonal(P0))

    def fun(Z):
        return map_objective(X_init + Z * scale, h, params, y, mask, R, Q, aux, m0, P0, F)

    res = lbfgs_minimise(fun, jnp.zeros_like(X_init), max_iter=max_iter, tol=tol)
    return res._replace(x=X_init + res.x * scale)


def linear_obs(params: Any, x: Float[Array, " d"], aux: tuple[Float[Array, "p d"], Float[Array, " p"]]) -> Float[Array, " p"]:
    """Linear observation function ``H_n x + b_n`` with per-step ``aux = (H, b)`` (params unused)."""
    H, b = aux
    return H @ x + b


__all__ = [
    "EnsembleResult",
    "LbfgsResult",
    "analysis_factors",
    "ensemble_loglik",
    "ensemble_rts",
    "ensemble_smoother",
    "linear_obs",
    "lbfgs_minimise",
    "map_objective",
    "map_path",
    "maximise",
    "propagate",
    "standard_normal",
]

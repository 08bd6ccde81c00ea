"""Ensemble Kalman filter and smoothers along an ordered axis (radius as pseudo-time).

Model over steps n = 0 .. n_steps-1 (shells of a garnet, core to rim)::

    x_n = F x_{n-1} + w_n,   w_n ~ N(0, Q_n)              (Q_0 unused; X0 is the prior ensemble)
    y_n = h(params, x_n, aux_n) + v_n,   v_n ~ N(0, R_n)  (components where mask_n is False ignored)

Ensembles are stored row-wise, ``X`` of shape (members N, state d). Static parameters
are carried by state augmentation: components of x with zero process noise.

Every analysis is written as a left multiplication ``X <- X + Lf (Rf^T X)`` with two thin
(N, k) factors whose ``Rf`` columns sum to zero (so the update only sees anomalies).
The same multiplication applied to the stored ensembles of earlier steps is the
ensemble Kalman smoother (EnKS; Evensen & van Leeuwen 2000; Evensen 2003, 2009): with ``lag = None`` every earlier
step is updated (full EnKS), with ``lag = L`` only the last L. Two analysis variants:

* ``"stochastic"``: perturbed observations (Burgers et al. 1998), ``X + (y + eps - h(X)) S^-1 C_hx``;
* ``"sqrt"``: deterministic square root (ETKF, Bishop et al. 2001, written in observation space): the mean is
  moved by the Kalman gain and the anomalies by the symmetric square root
  ``(I + V R^-1 V^T / (N-1))^-1/2``, computed from a p x p eigendecomposition.

A nonlinear, state-dependent system model replaces ``F x`` by an optional ``transition(params, x, aux_n)
-> (f(x), s(x))``: member m is forecast as ``f(x_m) + sqrt(s(x_m)) w_m`` with ``w_m ~ N(0, Q_n)``, so the
process noise of each member scales with its own state (e.g. ``s = Δt_n(x)``, a random walk in time
whose clock runs at a state-dependent rate), and deterministic components (``Q_n`` zero there: a
clock, static parameters) follow ``f`` exactly.

Model noise is drawn per member. The ensemble Rauch–Tung–Striebel smoother
(:func:`ensemble_rts`; Rauch, Tung & Striebel 1965, ``J_n = C(x_n^a, x_{n+1}^f)
C(x_{n+1}^f)^-1`` from the stored ensembles) is the second smoother; on the same draws it
equals the full-lag EnKS exactly when the forecast anomalies span the whole ensemble space
(N <= d + 1, e.g. a state augmented with static parameters), and otherwise both converge
to the exact RTS smoother as N grows (they then differ by sampling error only).
Multiplicative inflation scales forecast anomalies.

Kernel shape: :func:`init` makes a :class:`SmootherState` from the prior ensemble,
:func:`step` runs one step (forecast + analysis) and returns the new state and a
:class:`StepInfo`; :func:`ensemble_smoother` is the ``lax.scan`` over :func:`step`
followed by the smoothing pass. Inside the scan (and in the state) ensembles are
member-minor, (d, N), so that the elementwise work runs along the members; the public
inputs and results keep the (N, d) convention. Options: one :class:`SmootherOptions`.

Also here: the ensemble estimate of the marginal log-likelihood (accumulated by the
filter; a differentiable function of noise scales for a fixed key), a small optax Adam
maximiser for hyperparameters (:class:`MaximiseOptions`), and the MAP path of the same
posterior (the Gaussian Markov random field view of Kuwatani et al. 2012: smoothness
prior + misfit, optax L-BFGS, :class:`LbfgsOptions`) as a deterministic cross-check.

All functions are pure: they ``jit`` and ``vmap`` (many profiles, replicates) and work in
the floating dtype they are given. The observation function ``h(params, x, aux_n)`` maps
one state (d,) to (p,) and must be a stable Python callable (it is a static argument of
the compiled functions).

This module imports nothing of jaxpetro except the shared ``jaxpetro.kernels._*`` modules.
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
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key, PRNGKeyArray

from jaxpetro.kernels._gaussian import masked_loglik, neutralise_masked
from jaxpetro.kernels._options import KernelOptions, static
from jaxpetro.kernels._status import Status, make_status

# Relative jitter added to small covariance matrices before a Cholesky factorisation:
# ensemble covariances of static (zero-noise) components can be exactly singular.
_JITTER = 1e-12

ObsFn = Callable[[Any, Float[Array, " d"], Any], Float[Array, " p"]]
#: ``transition(params, x (d,), aux_n) -> (f(x) (d,), s(x) ())``: the forecast of one member is
#: ``f(x) + sqrt(s(x)) w`` with ``w ~ N(0, Q_n)`` (None: ``F x + w``).
TransitionFn = Callable[[Any, Float[Array, " d"], Any], tuple[Float[Array, " d"], Float[Array, ""]]]
Variant = Literal["stochastic", "sqrt"]
SmootherKind = Literal["enks", "rts", "none"]


# ----------------------------------------------------------------------------- options, state, results


class SmootherOptions(KernelOptions):
    """Options of the ensemble smoother; the field names are the keys of the ``ensemble``
    config section of ``jaxpetro ptpath`` (``SmootherOptions.from_config(config.ensemble)``).

    Attributes:
        size: ensemble members drawn by :func:`prior_ensemble` (the smoother itself takes
            the size of the ensemble it is given).
        variant: analysis, ``"stochastic"`` (perturbed observations) or ``"sqrt"``
            (deterministic square root).
        smoother: ``"enks"``, ``"rts"`` (ensemble RTS on the filter output) or ``"none"``.
        lag: smoother lag in steps (None: full-lag EnKS over every earlier step).
        inflation: multiplicative inflation of forecast anomalies (>= 1; not applied at
            step 0); a traced value: changing it reuses the compiled program.
        iterations: K, the number of assimilations of each step's observation (ES-MDA,
            Emerick & Reynolds 2013): 1 is the ordinary analysis; K > 1 assimilates it K times
            with R inflated by alpha_k = K (sum of 1/alpha_k = 1), re-evaluating h on the
            updated members before each -- for strongly nonlinear h (see :func:`step`).
    """

    size: int = static(500)
    variant: Variant = static("stochastic")
    smoother: SmootherKind = static("enks")
    lag: int | None = static(None)
    inflation: float | Float[Array, ""] = 1.0
    iterations: int = static(1)


class MaximiseOptions(KernelOptions):
    """Options of :func:`maximise` (the ``hyperparameters`` config section's keys).

    Attributes:
        steps: Adam iterations (static: the scan length).
        learning_rate: Adam step size (on the optimised coordinates, e.g. log scales).
    """

    steps: int = static(120)
    learning_rate: float | Float[Array, ""] = 0.1


class LbfgsOptions(KernelOptions):
    """Options of :func:`lbfgs_minimise` and :func:`map_path`.

    Attributes:
        max_iter: iteration cap (static).
        tol: stop when the gradient norm falls below it (for :func:`map_path`: in
            coordinates scaled by the prior standard deviations).
    """

    max_iter: int = static(500)
    tol: float | Float[Array, ""] = 1e-8


class Shell(NamedTuple):
    """Inputs of one step (one shell); :func:`ensemble_smoother` scans over a stack of them.

    Attributes:
        key: two PRNG keys (shape (2,)): model noise, observation perturbations.
        y: observation (p,); values where ``mask`` is False are ignored (may be NaN).
        mask: True where observed (p,).
        R: observation-noise covariance (p, p).
        Q: process-noise covariance added before this step (d, d); unused at step 0.
        aux: pytree passed to ``h`` for this step (e.g. the shell radius).
    """

    key: Key[Array, " 2"]
    y: Float[Array, " p"]
    mask: Bool[Array, " p"]
    R: Float[Array, "p p"]
    Q: Float[Array, "d d"]
    aux: Any


class SmootherState(NamedTuple):
    """State between steps (member-minor ensembles).

    Attributes:
        ensemble: analysis ensemble of the last step, (d, N); the prior ensemble before step 0.
        loglik: log-likelihood accumulated so far (nats).
        index: steps done (int32).
        buffer: fixed-lag EnKS buffer (N, n_steps d) of the stored forecasts being smoothed
            (finite ``lag`` with ``smoother="enks"``), else a 0-d placeholder.
    """

    ensemble: Float[Array, "d N"]
    loglik: Float[Array, ""]
    index: Int[Array, ""]
    buffer: Float[Array, "..."]


class StepInfo(NamedTuple):
    """What one :func:`step` computed (member-minor).

    Attributes:
        forecast: forecast ensemble after inflation, the one the analysis used (d, N).
        filtered: analysis ensemble (d, N).
        factors: ``(Lf^T, Rf^T)``, each (k, N): the analysis is ``X <- X + (X Rf) Lf^T``
            in member-minor form (:func:`full_lag_smooth` reapplies them to earlier steps);
            with ES-MDA (``iterations`` K > 1) each (K, k, N), the K transforms in order.
        loglik: this step's log-likelihood term (nats).
    """

    forecast: Float[Array, "d N"]
    filtered: Float[Array, "d N"]
    factors: tuple[Float[Array, "k N"], Float[Array, "k N"]]
    loglik: Float[Array, ""]


class EnsembleResult(NamedTuple):
    """Ensembles of a filter/smoother pass.

    Attributes:
        smoothed: smoothed ensembles (n, N, d) (the filtered ones when ``smoother="none"``).
        filtered: analysis ensembles of the filter (n, N, d).
        forecast: forecast ensembles after inflation, the ones each analysis used (n, N, d).
        loglik: ensemble estimate of log p(y) (nats): sum over steps of
            log N(y_n; mean h(X_f), cov h(X_f) + R_n) over the observed components.
        status: ``finite`` when the log-likelihood and the ensembles are finite;
            ``converged`` equals ``finite`` (a pass has no stopping criterion);
            ``iterations`` is the number of steps.
    """

    smoothed: Float[Array, "n N d"]
    filtered: Float[Array, "n N d"]
    forecast: Float[Array, "n N d"]
    loglik: Float[Array, ""]
    status: Status


class LbfgsResult(NamedTuple):
    """Result of :func:`lbfgs_minimise` / :func:`map_path`.

    Attributes:
        x: the minimiser (a pytree like the start).
        value: objective at ``x``.
        grad_norm: gradient norm at the last iterate.
        status: ``converged`` when ``grad_norm < tol`` and everything is finite;
            ``iterations`` the L-BFGS steps taken.
    """

    x: Any
    value: Float[Array, ""]
    grad_norm: Float[Array, ""]
    status: Status


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


def standard_normal(key: PRNGKeyArray, shape: tuple[int, ...], dtype: Any = None) -> Float[Array, "..."]:
    """Standard-normal draws for perturbations and model noise, generated in float32.

    They are Monte Carlo noise, immediately scaled by Cholesky factors in the working dtype
    (``dtype``, default the default float: float64 when x64 is enabled), so float32 draws
    lose nothing that matters and cost a third of float64 ones on CPU (the counter-based
    generator and its inverse-erf transform dominate an EnKS step otherwise; measured).
    """
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64) if dtype is None else dtype
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


def _loglik_T(
    HXT: Float[Array, "p N"], y: Float[Array, " p"], mask: Bool[Array, " p"], R: Float[Array, "p p"]
) -> Float[Array, ""]:
    """log N(y; mean h(X), cov h(X) + R) over the observed components (the analysis's term,
    computed alone: the ES-MDA step's likelihood is that of the forecast with R itself)."""
    n_mem = HXT.shape[1]
    m = mask.astype(HXT.dtype)
    y0, R0, n_masked = neutralise_masked(y, mask, R)
    hbar = jnp.mean(HXT, axis=1)
    VT = (HXT - hbar[:, None]) * m[:, None]
    S = VT @ VT.T / (n_mem - 1) + R0
    return masked_loglik((y0 - hbar) * m, jnp.linalg.cholesky(0.5 * (S + S.T)), n_masked)[0]


def mda_alphas(iterations: int) -> tuple[float, ...]:
    """Inflation factors alpha_k of ES-MDA: K equal factors alpha_k = K (Emerick & Reynolds 2013,
    their default), so that sum 1/alpha_k = 1 and, for a linear-Gaussian model, the K
    assimilations together equal one assimilation with R (the product of the K likelihoods
    N(y; Hx, alpha_k R) is N(y; Hx, R) up to a constant)."""
    return (float(iterations),) * iterations


def _analysis_T(
    key: PRNGKeyArray,
    HXT: Float[Array, "p N"],
    y: Float[Array, " p"],
    mask: Bool[Array, " p"],
    R: Float[Array, "p p"],
    variant: str,
) -> tuple[Float[Array, "k N"], Float[Array, "k N"], Float[Array, ""]]:
    """The one implementation of the analysis, member-minor: ``HXT`` (p, N) -> factors
    ``(Lf^T, Rf^T)`` (k, N) and the log-likelihood term (see :func:`analysis_factors`)."""
    p, n_mem = HXT.shape
    m = mask.astype(HXT.dtype)
    y0, R0, n_masked = neutralise_masked(y, mask, R)
    hbar = jnp.mean(HXT, axis=1)
    VT = (HXT - hbar[:, None]) * m[:, None]  # predicted-observation anomalies; masked rows inert
    innovation = (y0 - hbar) * m
    S = VT @ VT.T / (n_mem - 1) + R0
    L = jnp.linalg.cholesky(0.5 * (S + S.T))
    loglik, Sd = masked_loglik(innovation, L, n_masked)
    if variant == "stochastic":
        # Centred perturbations: the mean update is then exactly the Kalman one and only the
        # spread carries sampling noise; their 1/(N-1) sample covariance is unbiased for R
        # (as for the anomalies V), so no rescaling.
        ET = _thin_mm(jnp.linalg.cholesky(R0), standard_normal(key, (n_mem, p), HXT.dtype).T)
        ET = ET - jnp.mean(ET, axis=1, keepdims=True)
        DT = (y0[:, None] + ET - HXT) * m[:, None]
        # S^-1 from Cholesky solves against the p x p identity, then one thin product: a
        # triangular solve with N right-hand sides is ~30x slower on CPU for p = 6 (measured).
        S_inv = cho_solve((L, True), jnp.eye(p, dtype=S.dtype))
        UT = _thin_mm(S_inv.T, DT)  # (p, N): columns S^-1 (y + e_m - h(x_m))
        return UT, VT / (n_mem - 1), loglik
    if variant == "sqrt":
        # whitened anomalies R^-1/2 V^T, by a triangular solve (no explicit inverse of R's factor)
        WT = solve_triangular(jnp.linalg.cholesky(R0), VT, lower=True) / math.sqrt(n_mem - 1)
        lam, E = jnp.linalg.eigh(WT @ WT.T)
        s = jnp.sqrt(1.0 + jnp.maximum(lam, 0.0))
        f = -1.0 / (s * (1.0 + s))  # ((1+lam)^-1/2 - 1) / lam, finite at lam = 0
        WET = E.T @ WT  # (p, N)
        g = Sd @ VT / (n_mem - 1)  # mean increment coefficients (sum to zero)
        LfT = jnp.concatenate([jnp.ones((1, n_mem), HXT.dtype), WET * f[:, None]], axis=0)
        RfT = jnp.concatenate([g[None, :], WET], axis=0)
        return LfT, RfT, loglik
    raise ValueError(f"unknown analysis variant {variant!r}; use 'stochastic' or 'sqrt'")


def _propagate_T(
    key: PRNGKeyArray,
    XaT: Float[Array, "d N"],
    F: Float[Array, "d d"],
    Q: Float[Array, "d d"],
    transition: TransitionFn | None = None,
    params: Any = None,
    aux: Any = None,
) -> Float[Array, "d N"]:
    """The one implementation of the forecast, member-minor (see :func:`propagate`)."""
    d, n_mem = XaT.shape
    noiseT = _thin_mm(_chol(Q), standard_normal(key, (n_mem, d), XaT.dtype).T)
    # A zero-variance component (a static parameter) has a zero row and column in Q: keep it
    # exactly constant instead of letting the Cholesky jitter move it.
    noiseT = noiseT * (jnp.diagonal(Q) > 0).astype(XaT.dtype)[:, None]
    if transition is None:
        return _thin_mm(F, XaT) + noiseT
    fT, s = jax.vmap(transition, in_axes=(None, 1, None), out_axes=(1, 0))(params, XaT, aux)
    return fT + noiseT * jnp.sqrt(jnp.maximum(s, 0.0))[None, :]


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
        Same draws and numbers as the member-minor analysis inside :func:`step`.
    """
    LfT, RfT, loglik = _analysis_T(key, HX.T, y, mask, R, variant)
    return LfT.T, RfT.T, loglik


def propagate(
    key: PRNGKeyArray,
    Xa: Float[Array, "N d"],
    F: Float[Array, "d d"],
    Q: Float[Array, "d d"],
    transition: TransitionFn | None = None,
    params: Any = None,
    aux: Any = None,
) -> Float[Array, "N d"]:
    """Forecast ensemble ``F x + w`` with w ~ N(0, Q) drawn independently per member
    (with ``transition``: ``f(x) + sqrt(s(x)) w``, ``F`` unused).

    The model noise is drawn, not added by a deterministic transform of the anomalies:
    a smoother needs the forecast anomalies to carry new, independent directions (with a
    deterministic transform the smoothed spread collapses onto the prior's span).
    Same draws as the forecast inside :func:`step`.
    """
    return _propagate_T(key, Xa.T, F, Q, transition, params, aux).T


def prior_ensemble(
    key: PRNGKeyArray, m0: Float[Array, " d"], P0: Float[Array, "d d"], options: SmootherOptions = SmootherOptions()
) -> Float[Array, "N d"]:
    """``options.size`` members drawn from N(m0, P0), (N, d), in the dtype of ``m0``."""
    z = jax.random.normal(key, (options.size, m0.shape[0]), m0.dtype)
    return m0[None, :] + z @ jnp.linalg.cholesky(P0).T


# ----------------------------------------------------------------------------- the kernel: init / step


def init(
    X0: Float[Array, "N d"], options: SmootherOptions = SmootherOptions(), n_steps: int | None = None
) -> SmootherState:
    """State before step 0 from the prior ensemble X0 (N, d).

    ``n_steps`` (the number of steps to come) is needed only for a fixed-lag EnKS
    (``options.lag`` set with ``smoother="enks"``), whose buffer holds every step.
    """
    n_mem, d = X0.shape
    if options.smoother == "enks" and options.lag is not None:
        if n_steps is None:
            raise ValueError("init: a fixed-lag EnKS (options.lag set) needs n_steps for its buffer")
        buffer = jnp.zeros((n_mem, n_steps * d), X0.dtype)
    else:
        buffer = jnp.zeros((), X0.dtype)
    return SmootherState(X0.T, jnp.zeros((), X0.dtype), jnp.zeros((), jnp.int32), buffer)


def step(
    state: SmootherState,
    shell: Shell,
    h: ObsFn,
    params: Any,
    options: SmootherOptions = SmootherOptions(),
    F: Float[Array, "d d"] | None = None,
    transition: TransitionFn | None = None,
) -> tuple[SmootherState, StepInfo]:
    """One step: forecast (model noise, inflation; step 0 takes the prior ensemble as is)
    and analysis of ``shell``'s observation; a fixed-lag EnKS also updates its buffer.

    With ``options.iterations`` K > 1 the analysis is ES-MDA's (Emerick & Reynolds 2013): the
    observation is assimilated K times with R inflated by ``alpha_k`` (:func:`mda_alphas`,
    sum of 1/alpha_k = 1), each time from h evaluated on the members as updated so far (with
    fresh perturbations of alpha_k R in the stochastic variant). For a linear h this is one
    assimilation with R (equal in distribution; the square-root variant gives the same mean
    and covariance); for a nonlinear h (a curved forward table) the later, smaller updates
    see the curvature around where the members have moved, as a Gauss-Newton iteration
    would. Every one of the K transforms is applied to earlier steps by the smoother.

    Args:
        state: from :func:`init` or the previous step.
        shell: this step's key pair, observation, mask, noise covariances and ``aux``.
        h: observation function ``h(params, x (d,), aux) -> (p,)``.
        params: pytree passed to ``h`` unchanged.
        options: variant, smoother kind, lag, inflation.
        F: transition matrix (default identity: a random walk).
        transition: nonlinear, state-dependent system model (see :data:`TransitionFn`;
            replaces ``F``), called with ``params`` and this step's ``aux``.
    """
    d, n_mem = state.ensemble.shape
    F = jnp.eye(d, dtype=state.ensemble.dtype) if F is None else F
    k = state.index
    # Q_0 is unused (step 0 takes the prior): replace it so that a singular Q_0 (e.g. a zero
    # first step length) cannot put NaN into gradients through the discarded branch.
    Q_k = jnp.where(k == 0, jnp.eye(d, dtype=shell.Q.dtype), shell.Q)
    XfT = _propagate_T(shell.key[0], state.ensemble, F, Q_k, transition, params, shell.aux)
    mean = jnp.mean(XfT, axis=1, keepdims=True)
    XfT = jnp.where(k == 0, state.ensemble, mean + options.inflation * (XfT - mean))
    predict = jax.vmap(h, in_axes=(None, 1, None), out_axes=1)
    HXT = predict(params, XfT, shell.aux)
    if options.iterations == 1:
        LfT, RfT, ll_k = _analysis_T(shell.key[1], HXT, shell.y, shell.mask, shell.R, options.variant)
        XaT = XfT + _thin_mm(XfT @ RfT.T, LfT)
        factors = (LfT, RfT)
        subs = [(LfT, RfT)]
    else:
        # ES-MDA: K assimilations with alpha R, h re-evaluated on the updated members before
        # each (a scan: one compiled analysis whatever K). The step's likelihood is the
        # forecast's with R itself; the K transforms are kept in order for the smoother.
        ll_k = _loglik_T(HXT, shell.y, shell.mask, shell.R)
        alphas = jnp.asarray(mda_alphas(options.iterations), shell.R.dtype)

        def sub(XT, inp):
            key_i, alpha = inp
            L_i, R_i, _ = _analysis_T(key_i, predict(params, XT, shell.aux), shell.y, shell.mask, alpha * shell.R,
                                      options.variant)
            return XT + _thin_mm(XT @ R_i.T, L_i), (L_i, R_i)

        XaT, factors = lax.scan(sub, XfT, (jax.random.split(shell.key[1], options.iterations), alphas))
        subs = [(factors[0][i], factors[1][i]) for i in range(options.iterations)]
    buffer = state.buffer
    if options.smoother == "enks" and options.lag is not None:
        # The buffer is (N, n d): one member per row, so the update of every stored step is
        # two plain GEMMs, (k x N)(N x n d) and (N x k)(k x n d). Steps not reached yet are
        # zero and stay zero (their anomalies are zero).
        steps = jnp.arange(buffer.shape[1] // d, dtype=k.dtype)
        buffer = lax.dynamic_update_slice(buffer, XfT.T, (jnp.zeros_like(k), k * d))
        live = jnp.repeat((steps <= k) & (k - steps <= options.lag), d).astype(XfT.dtype)
        for LfT, RfT in subs:  # the ES-MDA transforms in the order they were applied
            buffer = buffer + (LfT.T @ (RfT @ buffer)) * live[None, :]
    new = SmootherState(XaT, state.loglik + ll_k, k + 1, buffer)
    return new, StepInfo(XfT, XaT, factors, ll_k)


# ----------------------------------------------------------------------------- filter / smoothers


@functools.partial(jax.jit, static_argnames=("h", "transition"))
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
    options: SmootherOptions = SmootherOptions(),
    F: Float[Array, "d d"] | None = None,
    transition: TransitionFn | None = None,
) -> EnsembleResult:
    """Ensemble Kalman filter along the step axis (``lax.scan`` over :func:`step`), then a smoother.

    Args:
        key: PRNG key (observation perturbations and model noise are derived from it:
            ``jax.random.split(key, (n, 2))``, one pair per step).
        h: observation function ``h(params, x (d,), aux_n) -> (p,)`` (static).
        params: pytree of forward-model parameters passed to ``h`` unchanged.
        X0: prior ensemble of the first step (N, d).
        y: observations (n, p); values where ``mask`` is False are ignored (may be NaN).
        mask: True where observed (n, p); a missing shell is an all-False row.
        R: observation-noise covariance per step (n, p, p).
        Q: process-noise covariance added before each step (n, d, d); ``Q[0]`` unused.
        aux: pytree with leading axis n passed to ``h`` per step (default: the step index).
        options: :class:`SmootherOptions` (variant, smoother, lag static; inflation traced).
        F: transition matrix (default identity: a random walk).
        transition: nonlinear, state-dependent system model (static; replaces ``F``):
            ``transition(params, x, aux_n) -> (f(x), s(x))``, forecast ``f(x) + sqrt(s(x)) w``.

    With a fixed ``key`` the result is a differentiable function of ``y``, ``R``, ``Q``,
    ``params`` and ``X0`` (common random numbers).
    """
    if options.smoother not in ("enks", "rts", "none"):
        raise ValueError(f"unknown smoother {options.smoother!r}; use 'enks', 'rts' or 'none'")
    n_steps, (n_mem, d) = y.shape[0], X0.shape
    aux = jnp.arange(n_steps) if aux is None else aux
    shells = Shell(jax.random.split(key, (n_steps, 2)), y, mask, R, Q, aux)
    # Full-lag EnKS: instead of sweeping a buffer of all n steps at every step (most of it
    # still zero), the filter keeps each step's factors and full_lag_smooth applies the same
    # products afterwards to the steps stored so far only. A finite lag keeps the running buffer.
    keep_factors = options.smoother == "enks" and options.lag is None

    def body(state, shell):
        state, info = step(state, shell, h, params, options, F, transition)
        return state, (info.filtered, info.forecast, info.factors if keep_factors else ())

    last, (XaT, XfT, factors) = lax.scan(body, init(X0, options, n_steps), shells)
    Xa, Xf = jnp.swapaxes(XaT, 1, 2), jnp.swapaxes(XfT, 1, 2)
    if keep_factors:
        Xs = full_lag_smooth(XfT, *factors)
    elif options.smoother == "enks":
        Xs = jnp.transpose(last.buffer.reshape(n_mem, n_steps, d), (1, 0, 2))
    elif options.smoother == "rts":
        Xs = ensemble_rts(Xa, Xf)
    else:
        Xs = Xa
    finite = jnp.isfinite(last.loglik) & jnp.all(jnp.isfinite(Xs)) & jnp.all(jnp.isfinite(Xa))
    return EnsembleResult(Xs, Xa, Xf, last.loglik, make_status(finite, finite, n_steps))


def full_lag_smooth(
    XfT: Float[Array, "n d N"], LfT: Float[Array, "n *K k N"], RfT: Float[Array, "n *K k N"], n_blocks: int = 8
) -> Float[Array, "n N d"]:
    """Full-lag EnKS from the filter's forecasts and analysis factors (member-minor, as the
    :class:`StepInfo` of every step stacked; with ES-MDA each step's K factors (n, K, k, N),
    applied in order), after the filter; returns the smoothed ensembles (n, N, d).

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

    def one(buf, inp):
        j, XfT_j, LfT_j, RfT_j = inp
        buf = lax.dynamic_update_slice(buf, XfT_j, (j * d, 0))
        if LfT_j.ndim == 2:
            return buf + _thin_mm(buf @ RfT_j.T, LfT_j), None
        for i in range(LfT_j.shape[0]):  # ES-MDA: the step's K transforms in order
            buf = buf + _thin_mm(buf @ RfT_j[i].T, LfT_j[i])
        return buf, None

    buf = jnp.zeros((0, n_mem), XfT.dtype)
    for start in range(0, n, size):
        stop = min(start + size, n)
        buf = jnp.concatenate([buf, jnp.zeros(((stop - start) * d, n_mem), XfT.dtype)], axis=0)
        idx = jnp.arange(start, stop)
        buf, _ = lax.scan(one, buf, (idx, XfT[start:stop], LfT[start:stop], RfT[start:stop]))
    return jnp.swapaxes(buf.reshape(n, d, n_mem), 1, 2)


def ensemble_rts(filtered: Float[Array, "n N d"], forecast: Float[Array, "n N d"]) -> Float[Array, "n N d"]:
    """Ensemble Rauch–Tung–Striebel smoother (backward pass over stored ensembles).

    ``X_s,n = X_a,n + (X_s,n+1 - X_f,n+1) J_n^T`` with
    ``J_n = C(x_n^a, x_{n+1}^f) C(x_{n+1}^f)^-1`` from the ensemble anomalies (a Cholesky
    solve with the forecast covariance).
    """

    def back(Xs1, inp):
        Xa, Xf1 = inp
        Aa = Xa - jnp.mean(Xa, axis=0, keepdims=True)
        Af = Xf1 - jnp.mean(Xf1, axis=0, keepdims=True)
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
    *,
    options: SmootherOptions = SmootherOptions(),
    F: Float[Array, "d d"] | None = None,
    transition: TransitionFn | None = None,
) -> Float[Array, ""]:
    """Ensemble estimate of log p(y) from a filter pass (no smoothing work: ``options.smoother``
    is replaced by ``"none"``).

    With a fixed ``key`` it is a differentiable function of ``R``, ``Q``, ``params`` and
    ``X0``, so it can be maximised by gradient ascent (common random numbers).
    """
    none = options.replace(smoother="none", lag=None)
    return ensemble_smoother(key, h, params, X0, y, mask, R, Q, aux, options=none, F=F, transition=transition).loglik


# ----------------------------------------------------------------------------- optimisation


def maximise(
    objective: Callable[[Any], Float[Array, ""]], theta0: Any, options: MaximiseOptions = MaximiseOptions(),
    bounds: tuple[Any, Any] | None = None,
) -> tuple[Any, Float[Array, " steps"]]:
    """Maximise a smooth scalar objective with Adam (``lax.scan`` over ``options.steps``).

    Used for hyperparameters (log noise scales) against a log-likelihood. Returns the
    parameters with the best objective value seen and the objective history. Non-finite
    gradient components are zeroed (a step that leaves the likelihood's domain is undone
    by the best-value bookkeeping). ``bounds = (lower, upper)`` (pytrees like ``theta0``;
    ±inf for none) make it projected Adam: every iterate, the start included, is clipped
    into the box, so the search never leaves a range the caller can defend (a noise scale
    whose likelihood estimate is meaningless, or one that runs off to infinity).
    """
    opt = optax.adam(options.learning_rate)

    def project(theta):
        if bounds is None:
            return theta
        return jax.tree_util.tree_map(jnp.clip, theta, bounds[0], bounds[1])

    theta0 = project(theta0)
    value_grad = jax.value_and_grad(lambda t: -objective(t))

    def one(carry, _):
        theta, state, best, best_val = carry
        val, grad = value_grad(theta)
        better = jnp.isfinite(val) & (-val > best_val)
        best = jax.tree_util.tree_map(lambda b, t: jnp.where(better, t, b), best, theta)
        best_val = jnp.where(better, -val, best_val)
        grad = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 step count with floats
            updates, state = opt.update(grad, state, theta)
        return (project(optax.apply_updates(theta, updates)), state, best, best_val), -val

    start = (theta0, opt.init(theta0), theta0, jnp.asarray(-jnp.inf))
    (_, _, best, _), history = lax.scan(one, start, None, length=options.steps)
    return best, history


def lbfgs_minimise(
    fun: Callable[[Any], Float[Array, ""]], x0: Any, options: LbfgsOptions = LbfgsOptions()
) -> LbfgsResult:
    """Minimise ``fun`` with optax L-BFGS (zoom line search) in a ``lax.while_loop``.

    Stops when the gradient norm falls below ``options.tol`` or after ``options.max_iter``
    iterations (``status.converged`` says which).
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def cond(carry):
        _, state, n = carry
        grad = optax.tree.get(state, "grad")
        return (n == 0) | ((n < options.max_iter) & (optax.tree.norm(grad) >= options.tol))

    def body(carry):
        x, state, n = carry
        value, grad = value_and_grad(x, state=state)
        # optax's L-BFGS adds an int32 memory index to an int64 arange when x64 is on, which
        # strict dtype promotion (a user's setting, and our tests') rejects: standard
        # promotion for optax's own arithmetic only (same numbers; our code stays strict).
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state, n + 1

    x, state, n = lax.while_loop(cond, body, (x0, opt.init(x0), jnp.zeros((), jnp.int32)))
    grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
    value = fun(x)
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm)
    for leaf in jax.tree_util.tree_leaves(x):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return LbfgsResult(x, value, grad_norm, make_status(grad_norm < options.tol, finite, n))


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
    Differentiable in ``X`` (and ``params``, ``R``, ``Q``) wherever ``h`` is.
    """

    def misfit(x, y_n, mask_n, R_n, aux_n):
        y0, R0, _ = neutralise_masked(y_n, mask_n, R_n)
        r = (y0 - h(params, x, aux_n)) * mask_n.astype(y0.dtype)
        return 0.5 * jnp.sum(solve_triangular(jnp.linalg.cholesky(R0), r, lower=True) ** 2)

    obs = jnp.sum(jax.vmap(misfit)(X, y, mask, R, aux))
    inc = X[1:] - X[:-1] @ F.T
    dyn = jax.vmap(lambda e, Qn: 0.5 * jnp.sum(solve_triangular(_chol(Qn), e, lower=True) ** 2))(inc, Q[1:])
    prior = 0.5 * jnp.sum(solve_triangular(jnp.linalg.cholesky(P0), X[0] - m0, lower=True) ** 2)
    return obs + jnp.sum(dyn) + prior


@functools.partial(jax.jit, static_argnames=("h",))
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
    options: LbfgsOptions = LbfgsOptions(),
    F: Float[Array, "d d"] | None = None,
) -> LbfgsResult:
    """MAP path of the smoothing posterior (GMRF prior + misfit, :func:`map_objective`) by L-BFGS.

    Optimised in coordinates scaled by the prior standard deviations (so P in kbar and T
    in °C are equally conditioned). On a linear ``h`` it equals the exact RTS mean.
    ``options.tol`` applies to the gradient norm in those scaled coordinates.
    Returns an :class:`LbfgsResult` whose ``x`` is the path (n, d).
    """
    d = m0.shape[0]
    F = jnp.eye(d, dtype=m0.dtype) if F is None else F
    aux = jnp.arange(y.shape[0]) if aux is None else aux
    scale = jnp.sqrt(jnp.diagonal(P0))

    def fun(Z):
        return map_objective(X_init + Z * scale[None, :], h, params, y, mask, R, Q, aux, m0, P0, F)

    res = lbfgs_minimise(fun, jnp.zeros_like(X_init), options)
    return res._replace(x=X_init + res.x * scale[None, :])


def linear_obs(
    params: Any, x: Float[Array, " d"], aux: tuple[Float[ArrayLike, "p d"], Float[ArrayLike, " p"]]
) -> Float[Array, " p"]:
    """Linear observation function ``H_n x + b_n`` with per-step ``aux = (H, b)`` (params unused)."""
    H, b = aux
    return H @ x + b


# ----------------------------------------------------------------------------- iterative ensemble smoother


class IesOptions(KernelOptions):
    """Options of the iterative ensemble smoother (:func:`iterative_smoother`); the field names
    are keys of the ``ensemble`` config section of ``jaxpetro ptpath``.

    Attributes:
        ies_iterations: Levenberg-Marquardt iterations (static: the scan length).
        ies_damping: initial damping lambda of every member (divided by 10 after an accepted
            step, multiplied by 10 after a rejected one).
        ies_mh_steps: Metropolis-Hastings steps of the exact-posterior correction after the
            iterations (:func:`gaussian_mh`; 0 = none). Used by the caller (ptpath), which knows
            the exact log posterior; :func:`iterative_smoother` itself does not use it.
    """

    ies_iterations: int = static(12)
    ies_damping: float | Float[Array, ""] = 1.0
    ies_mh_steps: int = static(40)


class IesState(NamedTuple):
    """State of the iterative ensemble smoother between iterations (row-wise, (N, ...)).

    Attributes:
        U: current members (N, m) in whitened prior coordinates (prior N(0, I)).
        U0: the members' prior draws, the anchors of their objectives (N, m).
        Dw: whitened perturbed data ``L^-1 (d + e_j)`` (N, D) (``C = L L^T``).
        Yw: whitened predictions ``L^-1 g(u_j)`` (N, D).
        cost: the members' objectives (N,); damping: their lambda (N,).
        index: iterations done (int32).
    """

    U: Float[Array, "N m"]
    U0: Float[Array, "N m"]
    Dw: Float[Array, "N D"]
    Yw: Float[Array, "N D"]
    cost: Float[Array, " N"]
    damping: Float[Array, " N"]
    index: Int[Array, ""]


class IesResult(NamedTuple):
    """Result of :func:`iterative_smoother`.

    Attributes:
        U: the members after the last iteration (N, m): approximate posterior draws.
        G: ensemble-averaged sensitivity ``dg/du`` at the final ensemble (D, m) (unwhitened;
            masked rows zero), e.g. for a linearised marginal likelihood.
        cost: final objectives (N,); history: mean objective after each iteration.
        accepted: share of members whose last step was accepted.
        status: ``finite`` when every member and cost is finite; ``converged`` when, in
            addition, the mean objective changed by less than 1e-4 (relative) in the last
            iteration; ``iterations`` the iterations run.
    """

    U: Float[Array, "N m"]
    G: Float[Array, "D m"]
    cost: Float[Array, " N"]
    history: Float[Array, " K"]
    accepted: Float[Array, ""]
    status: Status


def _ies_whiten(Y: Float[Array, "N D"], mask: Bool[Array, " D"], L: Float[Array, "D D"]) -> Float[Array, "N D"]:
    """``L^-1 y`` of each row, masked components zeroed (they are inert: unit variance, zero
    residual, as in :func:`jaxpetro.kernels._gaussian.neutralise_masked`)."""
    Y = jnp.where(mask[None, :], Y, 0.0)
    return solve_triangular(L, Y.T, lower=True).T


def _ies_cost(U, U0, Yw, Dw):
    return 0.5 * jnp.sum((U - U0) ** 2, axis=1) + 0.5 * jnp.sum((Yw - Dw) ** 2, axis=1)


def _ies_sensitivity(U: Float[Array, "N m"], Yw: Float[Array, "N D"]) -> Float[Array, "D m"]:
    """Ensemble-averaged (whitened) sensitivity ``W = dY/dU`` by least squares on the anomalies:
    ``W^T = pinv(dU) dY`` (Chen & Oliver 2013: the average sensitivity of the ensemble)."""
    dU = U - jnp.mean(U, axis=0, keepdims=True)
    dY = Yw - jnp.mean(Yw, axis=0, keepdims=True)
    return (jnp.linalg.pinv(dU) @ dY).T


def ies_init(
    key: PRNGKeyArray | None,
    g: Callable[[Any, Float[Array, " m"]], Float[Array, " D"]],
    params: Any,
    U0: Float[Array, "N m"],
    U_start: Float[Array, "N m"],
    d: Float[Array, " D"],
    mask: Bool[Array, " D"],
    C: Float[Array, "D D"],
    options: IesOptions = IesOptions(),
    E: Float[Array, "N D"] | None = None,
) -> tuple[IesState, Float[Array, "D D"]]:
    """State before the first iteration and the Cholesky factor of the (neutralised) data
    covariance. ``E`` (N, D): data perturbations; None: drawn from N(0, C) with ``key`` and
    centred (so the ensemble mean sees the data itself). See :func:`iterative_smoother`."""
    n_mem, D = U0.shape[0], d.shape[0]
    m = mask.astype(C.dtype)
    C0 = C * m[:, None] * m[None, :] + jnp.diag(1.0 - m)
    L = jnp.linalg.cholesky(0.5 * (C0 + C0.T))
    if E is None:  # drawn (D, N): components appended to the data append draws (prefix-stable keys)
        E = (L @ standard_normal(key, (D, n_mem), C.dtype)).T
        E = E - jnp.mean(E, axis=0, keepdims=True)
    Dw = _ies_whiten(d[None, :] + E, mask, L)
    Yw = _ies_whiten(jax.vmap(lambda u: g(params, u))(U_start), mask, L)
    cost = _ies_cost(U_start, U0, Yw, Dw)
    damping = jnp.full((n_mem,), 1.0, C.dtype) * options.ies_damping
    return IesState(U_start, U0, Dw, Yw, cost, damping, jnp.zeros((), jnp.int32)), L


def ies_step(
    state: IesState,
    g: Callable[[Any, Float[Array, " m"]], Float[Array, " D"]],
    params: Any,
    mask: Bool[Array, " D"],
    L: Float[Array, "D D"],
) -> tuple[IesState, Float[Array, ""]]:
    """One Levenberg-Marquardt iteration of every member's randomised-maximum-likelihood
    objective with the ensemble-averaged sensitivity; returns the new state and the share of
    members whose step was accepted (see :func:`iterative_smoother`)."""
    U, U0, Dw, Yw = state.U, state.U0, state.Dw, state.Yw
    W = _ies_sensitivity(U, Yw)  # (D, m)
    lam, V = jnp.linalg.eigh(W.T @ W)
    lam = jnp.maximum(lam, 0.0)
    grad = (U - U0) - (Dw - Yw) @ W  # (N, m): gradient of each member's objective
    coef = grad @ V  # (N, m) in the eigenbasis
    step = -(coef / (1.0 + state.damping[:, None] + lam[None, :])) @ V.T
    U_new = U + step
    Yw_new = _ies_whiten(jax.vmap(lambda u: g(params, u))(U_new), mask, L)
    cost_new = _ies_cost(U_new, U0, Yw_new, Dw)
    ok = jnp.isfinite(cost_new) & (cost_new < state.cost)
    keep = ok[:, None]
    new = IesState(jnp.where(keep, U_new, U), U0, Dw, jnp.where(keep, Yw_new, Yw),
                   jnp.where(ok, cost_new, state.cost),
                   jnp.clip(jnp.where(ok, state.damping / 10.0, state.damping * 10.0), 1e-8, 1e8),
                   state.index + 1)
    return new, jnp.mean(ok.astype(U.dtype))


@functools.partial(jax.jit, static_argnames=("g",))
def iterative_smoother(
    key: PRNGKeyArray | None,
    g: Callable[[Any, Float[Array, " m"]], Float[Array, " D"]],
    params: Any,
    U0: Float[Array, "N m"],
    d: Float[Array, " D"],
    mask: Bool[Array, " D"],
    C: Float[Array, "D D"],
    U_start: Float[Array, "N m"] | None = None,
    *,
    options: IesOptions = IesOptions(),
    E: Float[Array, "N D"] | None = None,
) -> IesResult:
    """Iterative ensemble smoother: Levenberg-Marquardt ensemble randomised maximum likelihood
    with the ensemble-averaged sensitivity (Chen & Oliver 2013; Evensen 2018) over the WHOLE
    data set at once (no sequential, step-by-step linearisation).

    Model: whitened parameters ``u`` (m,) with prior N(0, I) (a caller maps e.g. a path's
    start and its standardised random-walk increments to u), data ``d = g(u) + e``,
    ``e ~ N(0, C)`` with a full (D, D) covariance ``C`` (correlated errors across steps are
    allowed), components where ``mask`` is False ignored. Member j minimises::

        J_j(u) = 1/2 |u - u0_j|^2 + 1/2 |g(u) - d - e_j|^2_{C^-1}

    (its prior draw u0_j and perturbed data d + e_j, e_j ~ N(0, C) centred over the members),
    by steps ``-((1 + lambda_j) I + W^T W)^-1 grad J_j`` where ``W = C^-1/2 G`` and ``G`` is
    the average sensitivity of the ensemble (least squares of the prediction anomalies on the
    member anomalies, :func:`_ies_sensitivity`); a step is kept only if it lowers J_j (then
    lambda_j / 10, else lambda_j x 10). For a linear g the minimisers are exactly the
    ensemble-smoother update, whose members are draws from the exact Gaussian posterior
    (with an ensemble of the prior's exact moments: the exact posterior mean and covariance;
    tested against the Kalman RTS smoother); for a nonlinear g the iteration linearises
    around where the members are, not around the prior.

    Args:
        key: PRNG key of the data perturbations (unused when ``E`` is given).
        g: forward map ``g(params, u (m,)) -> (D,)`` (static).
        params: pytree passed to g.
        U0: prior draws (N, m) from N(0, I).
        d, mask, C: data (D,), observed components (D,), data covariance (D, D).
        U_start: where the iteration starts (N, m), e.g. a cheaper smoother's members
            (default: U0). The objectives still anchor at U0.
        options: :class:`IesOptions`.
        E: data perturbations (N, D) instead of drawn ones.

    Cost per iteration: one evaluation of g per member and (N, D) triangular solves, an (N, m)
    pseudo-inverse and an (m, m) eigendecomposition. Use N > m: with fewer members the
    average sensitivity is known only in the ensemble's span.
    """
    U_start = U0 if U_start is None else U_start
    state, L = ies_init(key, g, params, U0, U_start, d, mask, C, options, E)
    cost0 = jnp.mean(state.cost)

    def body(st, _):
        st, acc = ies_step(st, g, params, mask, L)
        return st, (jnp.mean(st.cost), acc)

    last, (history, accepted) = lax.scan(body, state, None, length=options.ies_iterations)
    Wf = _ies_sensitivity(last.U, last.Yw)
    G = (L @ Wf) * mask.astype(Wf.dtype)[:, None]
    prev = jnp.concatenate([cost0[None], history])[-2]
    finite = jnp.all(jnp.isfinite(last.U)) & jnp.all(jnp.isfinite(last.cost))
    converged = finite & (jnp.abs(history[-1] - prev) <= 1e-4 * jnp.abs(prev))
    return IesResult(last.U, G, last.cost, history, accepted[-1],
                     make_status(converged, finite, options.ies_iterations))



class MhResult(NamedTuple):
    """Result of :func:`gaussian_mh`.

    Attributes:
        U: the members after the last step (N, m).
        logp: their log densities (N,).
        accept: mean acceptance probability per step (steps,).
    """

    U: Float[Array, "N m"]
    logp: Float[Array, " N"]
    accept: Float[Array, " steps"]


@functools.partial(jax.jit, static_argnames=("logp", "steps"))
def gaussian_mh(
    key: PRNGKeyArray,
    logp: Callable[[Any, Float[Array, " m"]], Float[Array, ""]],
    params: Any,
    U: Float[Array, "N m"],
    steps: int = 20,
    rho: float | Float[Array, ""] = 0.5,
    scale: float | Float[Array, ""] = 1.1,
    live: Bool[Array, " m"] | None = None,
) -> MhResult:
    """Metropolis-Hastings correction of an approximate posterior ensemble (e.g. the iterative
    smoother's), every member a chain, towards the exact target ``logp(params, u)``.

    The proposal is the preconditioned Crank-Nicolson move around the ensemble's Gaussian fit
    ``q = N(mean U, scale² cov U)``: ``u' = mu + rho (u - mu) + sqrt(1 - rho²) q^1/2 xi``, which
    is reversible with respect to q, so the acceptance probability is
    ``min(1, p(u') q(u) / (p(u) q(u')))`` (rho = 0: the independence sampler). The target is
    then invariant: a member that starts from an approximation (randomised maximum likelihood is
    exact only for a linear model) moves toward the exact posterior; where the approximation was
    already exact nearly every proposal is accepted and nothing changes in distribution.
    ``live`` (m,): coordinates that move (others are held, e.g. those of padded steps, and
    excluded from q; they must come after the live ones). Tested on a skewed one-dimensional
    posterior against a grid."""
    n_mem, m = U.shape
    live = jnp.ones(m, bool) if live is None else live
    lf = live.astype(U.dtype)
    mu = jnp.mean(U, axis=0)
    A = U - mu[None, :]
    C = (A.T @ A) / (n_mem - 1) * scale**2
    Lq = _chol(C + 1e-10 * jnp.eye(m, dtype=U.dtype))

    def logq(V):
        w = solve_triangular(Lq, (V - mu[None, :]).T, lower=True) * lf[:, None]
        return -0.5 * jnp.sum(w * w, axis=0)

    lp = jax.vmap(lambda u: logp(params, u))(U)
    lq = logq(U)

    def body(carry, k):
        V, lp, lq = carry
        k1, k2 = jax.random.split(k)
        xi = (Lq @ standard_normal(k1, (m, n_mem), U.dtype)).T  # drawn (m, N): prefix-stable
        prop = mu[None, :] + rho * (V - mu[None, :]) + jnp.sqrt(1.0 - rho**2) * xi
        prop = jnp.where(live[None, :], prop, V)
        lp_new = jax.vmap(lambda u: logp(params, u))(prop)
        lq_new = logq(prop)
        log_a = (lp_new - lp) - (lq_new - lq)
        log_a = jnp.where(jnp.isfinite(log_a), log_a, -jnp.inf)
        ok = jnp.log(jax.random.uniform(k2, (n_mem,), U.dtype)) < log_a
        V = jnp.where(ok[:, None], prop, V)
        return (V, jnp.where(ok, lp_new, lp), jnp.where(ok, lq_new, lq)), jnp.mean(jnp.exp(jnp.minimum(log_a, 0.0)))

    (V, lp, _), acc = lax.scan(body, (U, lp, lq), jax.random.split(key, steps))
    return MhResult(V, lp, acc)


__all__ = [
    "EnsembleResult",
    "IesOptions",
    "IesResult",
    "IesState",
    "LbfgsOptions",
    "LbfgsResult",
    "MaximiseOptions",
    "MhResult",
    "Shell",
    "SmootherOptions",
    "SmootherState",
    "StepInfo",
    "TransitionFn",
    "analysis_factors",
    "ensemble_loglik",
    "ensemble_rts",
    "ensemble_smoother",
    "full_lag_smooth",
    "gaussian_mh",
    "ies_init",
    "ies_step",
    "init",
    "iterative_smoother",
    "lbfgs_minimise",
    "linear_obs",
    "map_objective",
    "map_path",
    "maximise",
    "mda_alphas",
    "prior_ensemble",
    "propagate",
    "standard_normal",
    "step",
]

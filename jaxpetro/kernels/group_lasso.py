"""Proximal group lasso for the log-ratio isocon model (sparse isocon, Kuwatani et al. 2020).

Problem (G groups = elements, S columns = altered samples)::

    min_{a, B}  1/2 sum_gs W_gs (Y_gs - a_s - B_gs)^2
                + lam * sum_g c_g * [(1 - alpha) ||B_g||_2 + alpha ||B_g||_1]

``a`` (S,) are unpenalised per-sample intercepts (log isocon slopes), ``B`` (G, S) the
mobilities, ``W >= 0`` per-observation weights (1 / variance; 0 = missing), ``c`` (G,)
positive group weights and ``alpha`` in [0, 1) the l1 share of the sparse-group variant
(``alpha = 0``: the plain group lasso of Yuan & Lin 2006; ``alpha > 0``: the sparse-group
lasso of Simon et al. 2013). ``q < 1`` (penalty ``lam * sum_g N_g(B_g)^q``) is handled by
iterative reweighting of ``c`` from the ``q = 1`` solution (:func:`solve_q`). The model
and its use for mass balance (Grant 1986, 2005) are described in docs/science.md.

Solvers (both keep ``a`` at its exact minimiser ``a*(B)``, a weighted mean, so the
problem is really over ``B`` on the profiled loss ``f(B) = min_a loss``):

* ``"bcd"`` -- cyclic block coordinate descent over groups. A group's update, with the
  others fixed, is the closed-form sparse-group prox of one majorised step (step
  ``1 / max_s W_gs``; exact block minimisation when a group's weights are equal across
  samples), after which ``a`` is updated in O(S).
* ``"fista"`` -- accelerated proximal gradient (Beck & Teboulle 2009) on ``f(B)`` with
  per-group steps ``1 / max_s W_gs`` (a valid block-diagonal majoriser: the Hessian of
  ``f`` is at most ``diag(W)``), with gradient-based adaptive restart.

Kernel shape: :func:`init` builds a :class:`LassoState`, :func:`step` advances it by one
BCD sweep or one FISTA step and reports a :class:`LassoInfo`; :func:`solve` is the
``lax.while_loop`` over them, testing convergence every ``check_every`` iterations by the
KKT residual (default) or the duality gap (both reported in the :class:`Solution`, with
one :class:`~jaxpetro.kernels._status.Status`). Dual: ``D(T) = sum T*Y - sum T^2 / (2 W)``
over ``T`` with zero column sums and ``T_g / c_g`` inside the sparse-group dual ball of
radius ``lam``; the dual point is ``W * R`` at the profiled residual, scaled into the ball.

All settings are one :class:`LassoOptions` argument: structural ones are static (a new
value compiles anew), the real-valued ones (``tol``, ``l1_ratio``, ``q``,
``reweight_eps``) and ``lam`` are traced (a new value reuses the compiled program).

Differentiation: :func:`solve` is differentiable (``jax.grad``, ``jax.jvp``) with respect
to ``y``, ``w``, ``lam``, ``c`` and ``l1_ratio`` by implicit differentiation of the
optimality conditions on the active set (the non-zero entries of B; the zero entries stay
zero), which is exact wherever the active set is locally constant; the iterations are
never differentiated. :func:`path` inherits it, λ by λ. ``vmap`` over replicates
(bootstrap data) or over ``lam`` works directly. Float64 is required (a clear error when
``jax_enable_x64`` is off). This module imports nothing of jaxpetro except the shared
``jaxpetro.kernels._*`` modules.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import lineax as lx
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

from jaxpetro.kernels._options import KernelOptions, static, traced
from jaxpetro.kernels._precision import require_float64
from jaxpetro.kernels._status import Status, make_status

__all__ = ["LassoInfo", "LassoOptions", "LassoState", "Solution", "dual_norm", "duality_gap", "init",
           "isocon_starts", "kkt_residual", "lambda_grid", "lambda_max", "objective", "path", "penalty",
           "profiled_intercept", "q_objective", "reweight", "sgl_prox", "solve", "solve_q", "step"]

Solver = Literal["bcd", "fista"]
Stopping = Literal["kkt", "gap"]
Scalar = float | Float[Array, ""]

_BISECT_STEPS = 100  # bisection of the sparse-group dual norm: 2^-100 of the bracket
_LOOSE_TOL = 1e-7  # tolerance of the intermediate reweighting solves (they only move the weights)


class LassoOptions(KernelOptions):
    """Settings of the group lasso solvers; field names are keys of the ``sparse`` section
    of the ``jaxpetro isocon`` config (``LassoOptions.from_config(config.sparse)``).

    Attributes:
        solver: ``"bcd"`` (block coordinate descent) or ``"fista"`` (static).
        stopping: stop on the relative KKT residual (``"kkt"``) or on the duality gap
            relative to the objective at B = 0 (``"gap"``) (static; not a config key).
        tol: tolerance of the stopping test (traced).
        max_iter: maximum iterations per solve, rounded up to a multiple of
            ``check_every`` (static).
        check_every: iterations between convergence tests (static; not a config key).
        sparse_group: the sparse-group variant (``alpha = l1_ratio``); False: the plain
            group lasso (``alpha = 0``, no bisection in the dual norm) (static).
        l1_ratio: share of the l1 penalty in the sparse-group variant, in (0, 1) (traced).
        q: exponent of the group penalty, 0 < q <= 1 (traced; :func:`solve_q`).
        reweight_eps: smoothing of the q < 1 reweighting, log units (traced).
        n_reweight: reweighting steps for q < 1 (static).
        multistart: for q < 1, also start the reweighting from the isocon through each
            element (:func:`isocon_starts`) (static).
    """

    solver: Solver = static("bcd")
    stopping: Stopping = static("kkt")
    tol: Scalar = traced(1e-10)
    max_iter: int = static(20000)
    check_every: int = static(5)
    sparse_group: bool = static(False)
    l1_ratio: Scalar = traced(0.5)
    q: Scalar = traced(1.0)
    reweight_eps: Scalar = traced(0.01)
    n_reweight: int = static(5)
    multistart: bool = static(True)

    @property
    def alpha(self) -> Scalar:
        """The l1 share of the penalty: ``l1_ratio`` for the sparse-group variant, else 0 (a Python 0.0)."""
        return self.l1_ratio if self.sparse_group else 0.0


class Solution(NamedTuple):
    """Result of :func:`solve` (or one λ of :func:`path`).

    Attributes:
        intercept: a (S,), the per-sample intercepts (log isocon slopes).
        coef: B (G, S), the mobilities; an all-zero row is an immobile element.
        primal: objective value at (a, B).
        gap: duality gap (>= 0 up to rounding), absolute.
        kkt: KKT residual, max violation of the optimality conditions divided by λ max(c).
        status: how the solve ended (``status.iterations``: sweeps over all groups;
            ``status.converged``: the stopping test reached ``tol`` within ``max_iter``).
    """

    intercept: Float[Array, "*L S"]
    coef: Float[Array, "*L G S"]
    primal: Float[Array, "*L"]
    gap: Float[Array, "*L"]
    kkt: Float[Array, "*L"]
    status: Status


class LassoState(NamedTuple):
    """Iterate of :func:`step`.

    Attributes:
        intercept: a (S,), kept at its exact minimiser for the current B.
        coef: B (G, S).
        coef_prev: the previous B (FISTA momentum; equal to ``coef`` for BCD).
        momentum: FISTA's t (1 for BCD).
        iterations: iterations performed.
        measure: the stopping measure (KKT residual or relative gap) at the last test.
    """

    intercept: Float[Array, " S"]
    coef: Float[Array, "G S"]
    coef_prev: Float[Array, "G S"]
    momentum: Float[Array, ""]
    iterations: Int[Array, ""]
    measure: Float[Array, ""]


class LassoInfo(NamedTuple):
    """What one :func:`step` reports: the stopping measure at the new iterate."""

    measure: Float[Array, ""]


# --------------------------------------------------------------------------- small pieces


def _safe_norm(x: Float[Array, "... S"]) -> Float[Array, "..."]:
    """Row 2-norms with a finite gradient at 0 (jnp.linalg.norm's is NaN there)."""
    ss = jnp.sum(x * x, axis=-1)
    pos = ss > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, ss, 1.0)), 0.0)


def _soft(x: Float[Array, "..."], t: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def sgl_prox(z: Float[Array, "G S"], t_group: Float[Array, " G"], t_l1: Float[Array, " G"]) -> Float[Array, "G S"]:
    """Prox of ``t_l1 ||.||_1 + t_group ||.||_2`` applied to each row of ``z``.

    Closed form: coordinate soft-threshold at ``t_l1``, then group shrinkage of the row
    towards 0 by ``t_group`` (zero if its norm is below ``t_group``).
    """
    u = _soft(z, t_l1[:, None])
    norm = _safe_norm(u)
    scale = jnp.where(norm > t_group, 1.0 - t_group / jnp.where(norm > 0, norm, 1.0), 0.0)
    return u * scale[:, None]


def profiled_intercept(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], b: Float[ArrayLike, "G S"]
                       ) -> Float[Array, " S"]:
    """Exact minimiser of the loss over ``a`` for fixed ``B``: the W-weighted mean of Y - B."""
    y, w, b = _as_arrays(y, w, b)
    return jnp.sum(w * (y - b), axis=0) / jnp.sum(w, axis=0)


def penalty(b: Float[Array, "G S"], c: Float[Array, " G"], alpha: Float[ArrayLike, ""]) -> Float[Array, " G"]:
    """Per-group penalty ``c_g [(1 - alpha) ||B_g||_2 + alpha ||B_g||_1]`` (without λ)."""
    return c * ((1.0 - alpha) * _safe_norm(b) + alpha * jnp.sum(jnp.abs(b), axis=1))


def objective(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], a: Float[ArrayLike, " S"],
              b: Float[ArrayLike, "G S"], lam: Float[ArrayLike, ""], c: Float[ArrayLike, " G"],
              alpha: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """Primal objective (loss + λ penalty) at (a, B)."""
    y, w, a, b, c = _as_arrays(y, w, a, b, c)
    r = y - a[None, :] - b
    return 0.5 * jnp.sum(w * r * r) + lam * jnp.sum(penalty(b, c, alpha))


def dual_norm(theta: Float[Array, "G S"], c: Float[Array, " G"], alpha: Float[ArrayLike, ""]) -> Float[Array, " G"]:
    """Per-group sparse-group dual norm of ``theta``: the τ_g with ``||S_{α τ}(θ_g / c_g)|| = (1 - α) τ``.

    ``theta`` is feasible for penalty level λ iff every τ_g <= λ. For α = 0 this is
    ``||θ_g|| / c_g``; otherwise τ is found by bisection on ``[0, ||θ_g / c_g||_inf / α]``
    (the left side decreases in τ, the right side increases).
    """
    u = jnp.abs(theta) / c[:, None]
    if isinstance(alpha, (int, float)) and alpha == 0:  # static: skip the bisection
        return _safe_norm(u)
    plain = _safe_norm(u) / jnp.maximum(1.0 - alpha, 1e-300)
    hi0 = jnp.max(u, axis=1) / jnp.maximum(alpha, 1e-300)
    hi0 = jnp.minimum(hi0, plain)  # the root never exceeds the α = 0 value scaled by 1 / (1 - α)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        excess = _safe_norm(jnp.maximum(u - alpha * mid[:, None], 0.0)) - (1.0 - alpha) * mid
        return jnp.where(excess > 0, mid, lo), jnp.where(excess > 0, hi, mid)

    lo, hi = lax.fori_loop(0, _BISECT_STEPS, body, (jnp.zeros_like(hi0), hi0))
    return jnp.where(alpha == 0, _safe_norm(u), 0.5 * (lo + hi))


def lambda_max(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], c: Float[ArrayLike, " G"],
               alpha: Float[ArrayLike, ""] = 0.0) -> Float[Array, ""]:
    """Smallest λ at which B = 0 is optimal (every element immobile)."""
    y, w, c = _as_arrays(y, w, c)
    a0 = profiled_intercept(y, w, jnp.zeros_like(y))
    return jnp.max(dual_norm(w * (y - a0[None, :]), c, alpha))


def duality_gap(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], b: Float[ArrayLike, "G S"],
                lam: Float[ArrayLike, ""], c: Float[ArrayLike, " G"], alpha: Float[ArrayLike, ""]
                ) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
    """(gap, primal, dual) at B with the intercepts at their exact minimiser.

    The dual point ``W * R`` has zero column sums because ``a`` is optimal; it is scaled
    by ``min(1, λ / max_g τ_g)`` into the dual-feasible set.
    """
    y, w, b, c = _as_arrays(y, w, b, c)
    a = profiled_intercept(y, w, b)
    r = y - a[None, :] - b
    theta = w * r
    tau = jnp.max(dual_norm(theta, c, alpha))
    theta = theta * jnp.minimum(1.0, lam / jnp.where(tau > 0, tau, 1.0))
    safe_w = jnp.where(w > 0, w, 1.0)
    dual = jnp.sum(theta * y) - 0.5 * jnp.sum(jnp.where(w > 0, theta * theta / safe_w, 0.0))
    primal = 0.5 * jnp.sum(w * r * r) + lam * jnp.sum(penalty(b, c, alpha))
    return primal - dual, primal, dual


def kkt_residual(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], b: Float[ArrayLike, "G S"],
                 lam: Float[ArrayLike, ""], c: Float[ArrayLike, " G"], alpha: Float[ArrayLike, ""]
                 ) -> Float[Array, ""]:
    """Max violation of the optimality conditions at B (intercepts profiled), over λ max(c).

    With ``θ = W * R / c_g``: in a non-zero group, non-zero entries need
    ``θ = λ [α sign(B) + (1 - α) B / ||B_g||]`` and zero entries ``|θ| <= λ α``; a zero group
    needs ``||S_{λα}(θ_g)|| <= λ (1 - α)``. Residuals are measured in gradient units (× c_g).
    """
    y, w, b, c = _as_arrays(y, w, b, c)
    a = profiled_intercept(y, w, b)
    theta = w * (y - a[None, :] - b) / c[:, None]
    norm = _safe_norm(b)
    active = norm > 0
    nz = b != 0
    target = lam * (alpha * jnp.sign(b) + (1.0 - alpha) * b / jnp.where(active, norm, 1.0)[:, None])
    entry = jnp.where(nz, jnp.abs(theta - target), jnp.maximum(jnp.abs(theta) - lam * alpha, 0.0))
    active_viol = jnp.max(entry, axis=1)
    zero_viol = jnp.maximum(_safe_norm(_soft(theta, lam * alpha)) - lam * (1.0 - alpha), 0.0)
    viol = jnp.where(active, active_viol, zero_viol) * c
    # lam = 0 happens when lambda_max = 0 (every log ratio identical): B = 0 is then exact, viol = 0.
    return jnp.max(viol) / jnp.maximum(lam * jnp.max(c), 1e-300)


def _as_arrays(*xs):
    """Float64 arrays of the inputs (NumPy accepted).

    The KKT tolerance (1e-10) and the duality gap need float64: without x64 they would
    silently be float32, so this raises a clear error instead (at trace time).
    """
    require_float64("jaxpetro.kernels.group_lasso")
    return tuple(jnp.asarray(x, jnp.float64) for x in xs)


# --------------------------------------------------------------------------- iterations


def _bcd_sweep(y, w, a, b, lam, c, alpha, lip, colsum):
    """One cyclic pass over the groups; ``a`` follows each group update exactly."""

    def one(i, carry):
        a, b = carry
        bi, wi, yi = b[i], w[i], y[i]
        z = bi + wi * (yi - a - bi) / lip[i]
        new = sgl_prox(z[None, :], (lam * c[i] * (1.0 - alpha) / lip[i])[None],
                       (lam * c[i] * alpha / lip[i])[None])[0]
        a = a - wi * (new - bi) / colsum  # a* is linear in B: an O(S) update
        return a, b.at[i].set(new)

    return lax.fori_loop(0, y.shape[0], one, (a, b))


def _fista_step(y, w, state: LassoState, lam, c, alpha, lip) -> LassoState:
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * state.momentum**2))
    v = state.coef + ((state.momentum - 1.0) / t_next) * (state.coef - state.coef_prev)
    a_v = profiled_intercept(y, w, v)
    z = v + w * (y - a_v[None, :] - v) / lip[:, None]
    new = sgl_prox(z, lam * c * (1.0 - alpha) / lip, lam * c * alpha / lip)
    # Adaptive restart (O'Donoghue & Candes 2015): drop the momentum when it points uphill.
    restart = jnp.sum((v - new) * (new - state.coef)) > 0
    t_next = jnp.where(restart, 1.0, t_next)
    b_prev = jnp.where(restart, new, state.coef)
    return state._replace(intercept=profiled_intercept(y, w, new), coef=new, coef_prev=b_prev, momentum=t_next)


class _Problem(NamedTuple):
    """The data of one solve in float64, with the loop invariants computed once."""

    y: Float[Array, "G S"]
    w: Float[Array, "G S"]
    lam: Float[Array, ""]
    c: Float[Array, " G"]
    lip: Float[Array, " G"]  # per-group step 1 / max_s W_gs
    colsum: Float[Array, " S"]
    null: Float[Array, ""]  # loss at B = 0 (scale of the relative gap)


def _problem(y, w, lam, c) -> _Problem:
    y, w = _as_arrays(y, w)
    c = jnp.ones(y.shape[0], y.dtype) if c is None else jnp.asarray(c, y.dtype)
    lip = jnp.maximum(jnp.max(w, axis=1), 1e-300)
    null = 0.5 * jnp.sum(w * (y - profiled_intercept(y, w, jnp.zeros_like(y))[None, :]) ** 2)
    return _Problem(y, w, jnp.asarray(lam, y.dtype), c, lip, jnp.sum(w, axis=0), null)


def _measure(p: _Problem, b, options: LassoOptions) -> Float[Array, ""]:
    if options.stopping == "kkt":
        return kkt_residual(p.y, p.w, b, p.lam, p.c, options.alpha)
    return duality_gap(p.y, p.w, b, p.lam, p.c, options.alpha)[0] / jnp.maximum(p.null, 1e-300)


def _advance(p: _Problem, state: LassoState, options: LassoOptions) -> LassoState:
    """One iteration without the stopping measure (the loop tests every ``check_every``)."""
    alpha = options.alpha
    if options.solver == "bcd":
        a, b = _bcd_sweep(p.y, p.w, state.intercept, state.coef, p.lam, p.c, alpha, p.lip, p.colsum)
        state = state._replace(intercept=a, coef=b, coef_prev=b)
    else:
        state = _fista_step(p.y, p.w, state, p.lam, p.c, alpha, p.lip)
    return state._replace(iterations=state.iterations + 1)


def _init(p: _Problem, options: LassoOptions, b0) -> LassoState:
    b0 = jnp.zeros_like(p.y) if b0 is None else jnp.asarray(b0, p.y.dtype)
    return LassoState(profiled_intercept(p.y, p.w, b0), b0, b0, jnp.ones((), p.y.dtype), jnp.zeros((), jnp.int32),
                      _measure(p, b0, options))


def init(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], lam: Float[ArrayLike, ""],
         options: LassoOptions = LassoOptions(), c: Float[ArrayLike, " G"] | None = None,
         b0: Float[ArrayLike, "G S"] | None = None) -> LassoState:
    """The state before the first iteration: B = ``b0`` (default zeros), ``a = a*(B)``.

    Args: as :func:`solve`.
    """
    return _init(_problem(y, w, lam, c), options, b0)


def step(state: LassoState, y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], lam: Float[ArrayLike, ""],
         options: LassoOptions = LassoOptions(), c: Float[ArrayLike, " G"] | None = None
         ) -> tuple[LassoState, LassoInfo]:
    """One BCD sweep over all groups (``solver="bcd"``) or one FISTA step, and the stopping
    measure at the new iterate (``state.measure`` is updated too).

    Args: as :func:`solve`.
    """
    p = _problem(y, w, lam, c)
    state = _advance(p, state, options)
    measure = _measure(p, state.coef, options)
    return state._replace(measure=measure), LassoInfo(measure)


def _stationarity(b, active, y, w, lam, c, alpha):
    """Gradient of the profiled objective at B on the active entries; B itself elsewhere.

    Zero at a solution whose active set is ``active`` (the non-zero entries). Evaluated at
    ``B * active`` so that its Jacobian in B is block diagonal (active block: the Hessian of
    the smooth part restricted to the active entries; identity on the rest), symmetric.
    """
    ba = jnp.where(active, b, 0.0)
    a = profiled_intercept(y, w, ba)
    norm = _safe_norm(ba)
    unit = ba / jnp.where(norm > 0, norm, 1.0)[:, None]
    grad = -w * (y - a[None, :] - ba) + lam * c[:, None] * ((1.0 - alpha) * unit + alpha * jnp.sign(ba))
    return jnp.where(active, grad, b)


@jax.custom_jvp
def _implicit_coef(b, y, w, lam, c, alpha):
    """``b`` (the converged B) with the derivative of the solution map attached."""
    return b


@_implicit_coef.defjvp
def _implicit_coef_jvp(primals, tangents):
    # The tangent of ``b`` is ignored: the iterations run on stop-gradient inputs, and the
    # solution does not depend on the start.
    b, *theta = primals
    _, *d_theta = tangents
    active = b != 0
    _, rhs = jax.jvp(lambda *th: _stationarity(b, active, *th), tuple(theta), tuple(d_theta))
    operator = lx.JacobianLinearOperator(lambda x, _: _stationarity(x, active, *theta), b,
                                         tags=(lx.symmetric_tag, lx.positive_semidefinite_tag))
    d_b = lx.linear_solve(operator, -rhs, lx.Cholesky()).value
    return b, d_b


@jax.jit
def solve(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], lam: Float[ArrayLike, ""],
          options: LassoOptions = LassoOptions(), c: Float[ArrayLike, " G"] | None = None,
          b0: Float[ArrayLike, "G S"] | None = None) -> Solution:
    """Solve the (sparse-)group lasso at one λ: :func:`init`, then :func:`step` until the
    stopping measure is at most ``options.tol`` (tested every ``options.check_every``
    iterations) or ``options.max_iter`` iterations.

    Args:
        y: log-ratios Y (G elements, S samples).
        w: weights W >= 0 (1 / variance of Y); every column needs a positive sum.
        lam: λ > 0 (units of W * Y); traced.
        options: :class:`LassoOptions` (``q``, ``reweight_eps``, ``n_reweight`` and
            ``multistart`` are used by :func:`solve_q` only).
        c: group weights c_g > 0 (default ones).
        b0: warm start for B (default zeros).

    Returns:
        :class:`Solution` (gap and KKT residual both evaluated at the returned point).
        Differentiable in ``y``, ``w``, ``lam``, ``c`` and ``options.l1_ratio`` (implicit
        differentiation on the active set; see the module docstring).
    """
    y, w = _as_arrays(y, w)
    lam = jnp.asarray(lam, jnp.float64)
    c = jnp.ones(y.shape[0], y.dtype) if c is None else jnp.asarray(c, y.dtype)
    # The iterations see no tangents; the derivative comes from the optimality conditions.
    p = _problem(*lax.stop_gradient((y, w, lam, c)))
    frozen = lax.stop_gradient(options)

    def epoch(state: LassoState) -> LassoState:
        state = lax.fori_loop(0, frozen.check_every, lambda _, s: _advance(p, s, frozen), state)
        return state._replace(measure=_measure(p, state.coef, frozen))

    def cond(state: LassoState):
        return (state.measure > frozen.tol) & (state.iterations < frozen.max_iter)

    state = lax.while_loop(cond, epoch, _init(p, frozen, None if b0 is None else lax.stop_gradient(b0)))
    alpha = frozen.alpha
    gap, primal, _ = duality_gap(p.y, p.w, state.coef, p.lam, p.c, alpha)
    kkt = kkt_residual(p.y, p.w, state.coef, p.lam, p.c, alpha)
    coef = _implicit_coef(state.coef, y, w, lam, c, jnp.asarray(options.alpha, y.dtype))
    finite = jnp.isfinite(primal) & jnp.all(jnp.isfinite(state.coef))
    status = make_status(state.measure <= frozen.tol, finite, state.iterations)
    return Solution(profiled_intercept(y, w, coef), coef, primal, gap, kkt, status)


def reweight(b: Float[Array, "G S"], q: Float[ArrayLike, ""], alpha: Float[ArrayLike, ""],
             eps: Float[ArrayLike, ""]) -> Float[Array, " G"]:
    """Group weights of one reweighting step for the penalty ``N_g^q``: ``q (N_g + eps)^(q - 1)``.

    ``N_g = (1 - α) ||B_g||_2 + α ||B_g||_1``; the concave ``N^q`` is majorised by its
    tangent at the current B, so each reweighted convex problem decreases the q-objective
    (the adaptive / reweighted l1 scheme of Candès, Wakin & Boyd 2008, per group).
    """
    norm = penalty(b, jnp.ones(b.shape[0], b.dtype), alpha)
    return q * (norm + eps) ** (q - 1.0)


def q_objective(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], b: Float[Array, "G S"],
                lam: Float[ArrayLike, ""], q: Float[ArrayLike, ""], alpha: Float[ArrayLike, ""] = 0.0,
                c: Float[ArrayLike, " G"] | None = None) -> Float[Array, ""]:
    """Objective of the q-penalty at B (intercepts profiled): loss + λ Σ_g c_g N_g(B_g)^q (c default ones)."""
    y, w = _as_arrays(y, w)
    c = jnp.ones(y.shape[0], y.dtype) if c is None else jnp.asarray(c, y.dtype)
    a = profiled_intercept(y, w, b)
    r = y - a[None, :] - b
    norm = penalty(b, jnp.ones(b.shape[0], b.dtype), alpha)
    return 0.5 * jnp.sum(w * r * r) + lam * jnp.sum(c * jnp.where(norm > 0, jnp.where(norm > 0, norm, 1.0) ** q, 0.0))


def isocon_starts(y: Float[Array, "G S"]) -> Float[Array, "G G S"]:
    """One start per group g: B = Y - Y_g, i.e. every sample's isocon through element g."""
    return y[None, :, :] - y[:, None, :]


@jax.jit
def solve_q(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], lam: Float[ArrayLike, ""],
            options: LassoOptions = LassoOptions(), b0: Float[ArrayLike, "G S"] | None = None,
            c: Float[ArrayLike, " G"] | None = None) -> Solution:
    """Penalty ``λ Σ_g N_g(B_g)^q`` (0 < q <= 1, ``options.q``) by iterative reweighting from the q = 1 solution.

    The q = 1 problem (unit weights) is solved first; for q = 1 it is the answer (a
    ``lax.cond`` on the traced ``q``, so both cases share one compiled program). For
    q < 1, ``n_reweight`` convex problems follow with weights :func:`reweight` of the
    previous solution (each warm-started; the intermediate ones at tolerance
    ``max(tol, 1e-7)``). ``reweight_eps`` (log units) keeps the weight of a zero group
    finite: smaller means stickier zeros. ``c`` (default ones) are fixed group weights
    (prior resistance to moving): the penalty is ``λ Σ_g c_g N_g(B_g)^q`` and each
    reweighted problem uses ``c_g q (N_g + eps)^(q - 1)``.

    The q < 1 problem is not convex: the reweighting is run from the q = 1 solution, from
    ``b0`` when given, and with ``multistart`` from each of the G :func:`isocon_starts`
    (vmapped); the solution with the lowest :func:`q_objective` is returned, so it is never
    worse (in that objective) than the plain reweighting from q = 1.
    """
    y, w = _as_arrays(y, w)
    c = jnp.ones(y.shape[0], y.dtype) if c is None else jnp.asarray(c, y.dtype)
    alpha, q, eps = options.alpha, options.q, options.reweight_eps
    first = solve(y, w, lam, options, c, b0)
    loose = options.replace(tol=jnp.maximum(options.tol, _LOOSE_TOL))

    def reweighted(start):
        def body(b, _):
            return solve(y, w, lam, loose, c * reweight(b, q, alpha, eps), b).coef, None

        b, _ = lax.scan(body, start, None, length=options.n_reweight - 1)
        return solve(y, w, lam, options, c * reweight(b, q, alpha, eps), b)

    def nonconvex(_):
        starts = [first.coef[None]]
        if b0 is not None:  # a warm start (previous λ, or the point estimate for a replicate)
            starts.append(jnp.asarray(b0, jnp.float64)[None])
        if options.multistart:
            starts.append(isocon_starts(y))
        if len(starts) == 1:
            return reweighted(first.coef)
        sols = jax.vmap(reweighted)(jnp.concatenate(starts, axis=0))
        best = jnp.argmin(jax.vmap(lambda b: q_objective(y, w, b, lam, q, alpha, c))(sols.coef))
        return jax.tree.map(lambda x: x[best], sols)

    return lax.cond(q == 1.0, lambda _: first, nonconvex, None)


@jax.jit
def path(y: Float[ArrayLike, "G S"], w: Float[ArrayLike, "G S"], lams: Float[ArrayLike, " L"],
         options: LassoOptions = LassoOptions(), c: Float[ArrayLike, " G"] | None = None) -> Solution:
    """Regularisation path: :func:`solve_q` at each λ of ``lams`` (decreasing), warm-started,
    with group weights ``c`` (default ones).

    A ``lax.scan`` carries each solution's B into the next λ. Returns a :class:`Solution`
    whose fields (the status's too) have a leading λ axis (L, ...).
    """
    y, w = _as_arrays(y, w)

    def body(b, lam):
        sol = solve_q(y, w, lam, options, b, c)
        return sol.coef, sol

    _, sols = lax.scan(body, jnp.zeros_like(y), jnp.asarray(lams, jnp.float64))
    return sols


def lambda_grid(lam_max: Float[ArrayLike, ""], n: int, min_ratio: Float[ArrayLike, ""]) -> Float[Array, " n"]:
    """``n`` λ values log-spaced from ``lam_max`` down to ``min_ratio * lam_max``."""
    return lam_max * jnp.logspace(0.0, jnp.log10(min_ratio), n)

"""Proximal group lasso for the log-ratio isocon model (SCIENCE.md section C).

Problem (G groups = elements, S columns = altered samples)::

    min_{a, B}  1/2 sum_gs W_gs (Y_gs - a_s - B_gs)^2
                + lam * sum_g c_g * [(1 - alpha) ||B_g||_2 + alpha ||B_g||_1]

``a`` (S,) are unpenalised per-sample intercepts (log isocon slopes), ``B`` (G, S) the
mobilities, ``W >= 0`` per-observation weights (1 / variance; 0 = missing), ``c`` (G,)
positive group weights and ``alpha`` in [0, 1) the l1 share of the sparse-group variant
(``alpha = 0``: the plain group lasso). ``q < 1`` (penalty ``lam * sum_g N_g(B_g)^q``) is
handled by iterative reweighting of ``c`` from the ``q = 1`` solution (:func:`solve_q`).

Solvers (both keep ``a`` at its exact minimiser ``a*(B)``, a weighted mean, so the
problem is really over ``B`` on the profiled loss ``f(B) = min_a loss``):

* ``"bcd"`` -- cyclic block coordinate descent over groups. A group's update, with the
  others fixed, is the closed-form sparse-group prox of one majorised step (step
  ``1 / max_s W_gs``; exact block minimisation when a group's weights are equal across
  samples), after which ``a`` is updated in O(S).
* ``"fista"`` -- accelerated proximal gradient on ``f(B)`` with per-group steps
  ``1 / max_s W_gs`` (a valid block-diagonal majoriser: the Hessian of ``f`` is at most
  ``diag(W)``), with gradient-based adaptive restart.

Convergence is tested every ``check_every`` iterations by the KKT residual (default) or
the duality gap, both always reported. Dual: ``D(T) = sum T*Y - sum T^2 / (2 W)`` over
``T`` with zero column sums and ``T_g / c_g`` inside the sparse-group dual ball of radius
``lam``; the dual point is ``W * R`` at the profiled residual, scaled into the ball.

Everything is pure JAX (jit/vmap/grad-able): ``vmap`` over replicates (bootstrap data) or
over ``lam`` works directly; :func:`path` is a warm-started ``lax.scan`` over ``lam``.
This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

Method = Literal["bcd", "fista"]
Criterion = Literal["kkt", "gap"]

_BISECT_STEPS = 100  # bisection of the sparse-group dual norm: 2^-100 of the bracket


class Solution(NamedTuple):
    """Result of :func:`solve` (or one λ of :func:`path`).

    Attributes:
        intercept: a (S,), the per-sample intercepts (log isocon slopes).
        coef: B (G, S), the mobilities; an all-zero row is an immobile element.
        primal: objective value at (a, B).
        gap: duality gap (>= 0 up to rounding), absolute.
        kkt: KKT residual, max violation of the optimality conditions divided by λ max(c).
        n_iter: iterations performed (sweeps over all groups).
        converged: whether the chosen criterion reached ``tol`` within ``max_iter``.
    """

    intercept: Float[Array, " S"]
    coef: Float[Array, "G S"]
    primal: Float[Array, ""]
    gap: Float[Array, ""]
    kkt: Float[Array, ""]
    n_iter: Int[Array, ""]
    converged: Bool[Array, ""]


class _State(NamedTuple):
    a: Float[Array, " S"]
    b: Float[Array, "G S"]
    b_prev: Float[Array, "G S"]  # FISTA only
    t: Float[Array, ""]  # FISTA momentum
    it: Int[Array, ""]
    measure: Float[Array, ""]


# --------------------------------------------------------------------------- small pieces


def _safe_norm(x: Float[Array, "... S"]) -> Float[Array, "..."]:
    """Row 2-norms with a finite gradient at 0 (jnp.linalg.norm's is NaN there)."""
    ss = jnp.sum(x * x, axis=-1)
    pos = ss > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, ss, 1.0)), 0.0)


def _soft(x, t):
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


def profiled_intercept(y: Float[Array, "G S"], w: Float[Array, "G S"], b: Float[Array, "G S"]) -> Float[Array, " S"]:
    """Exact minimiser of the loss over ``a`` for fixed ``B``: the W-weighted mean of Y - B."""
    return jnp.sum(w * (y - b), axis=0) / jnp.sum(w, axis=0)


def penalty(b: Float[Array, "G S"], c: Float[Array, " G"], alpha) -> Float[Array, " G"]:
    """Per-group penalty ``c_g [(1 - alpha) ||B_g||_2 + alpha ||B_g||_1]`` (without λ)."""
    return c * ((1.0 - alpha) * _safe_norm(b) + alpha * jnp.sum(jnp.abs(b), axis=1))


def objective(y, w, a, b, lam, c, alpha) -> Float[Array, ""]:
    """Primal objective (loss + λ penalty) at (a, B)."""
    r = y - a[None, :] - b
    return 0.5 * jnp.sum(w * r * r) + lam * jnp.sum(penalty(b, c, alpha))


def dual_norm(theta: Float[Array, "G S"], c: Float[Array, " G"], alpha) -> Float[Array, " G"]:
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


def lambda_max(y: Float[Array, "G S"], w: Float[Array, "G S"], c: Float[Array, " G"], alpha=0.0) -> Float[Array, ""]:
    """Smallest λ at which B = 0 is optimal (every element immobile)."""
    a0 = profiled_intercept(y, w, jnp.zeros_like(y))
    return jnp.max(dual_norm(w * (y - a0[None, :]), c, alpha))


def duality_gap(y, w, b, lam, c, alpha) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
    """(gap, primal, dual) at B with the intercepts at their exact minimiser.

    The dual point ``W * R`` has zero column sums because ``a`` is optimal; it is scaled
    by ``min(1, λ / max_g τ_g)`` into the dual-feasible set.
    """
    a = profiled_intercept(y, w, b)
    r = y - a[None, :] - b
    theta = w * r
    tau = jnp.max(dual_norm(theta, c, alpha))
    theta = theta * jnp.minimum(1.0, lam / jnp.where(tau > 0, tau, 1.0))
    safe_w = jnp.where(w > 0, w, 1.0)
    dual = jnp.sum(theta * y) - 0.5 * jnp.sum(jnp.where(w > 0, theta * theta / safe_w, 0.0))
    primal = 0.5 * jnp.sum(w * r * r) + lam * jnp.sum(penalty(b, c, alpha))
    return primal - dual, primal, dual


def kkt_residual(y, w, b, lam, c, alpha) -> Float[Array, ""]:
    """Max violation of the optimality conditions at B (intercepts profiled), over λ max(c).

    With ``θ = W * R / c_g``: in a non-zero group, non-zero entries need
    ``θ = λ [α sign(B) + (1 - α) B / ||B_g||]`` and zero entries ``|θ| <= λ α``; a zero group
    needs ``||S_{λα}(θ_g)|| <= λ (1 - α)``. Residuals are measured in gradient units (× c_g).
    """
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


def _fista_step(y, w, state: _State, lam, c, alpha, lip):
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * state.t**2))
    v = state.b + ((state.t - 1.0) / t_next) * (state.b - state.b_prev)
    a_v = profiled_intercept(y, w, v)
    z = v + w * (y - a_v[None, :] - v) / lip[:, None]
    new = sgl_prox(z, lam * c * (1.0 - alpha) / lip, lam * c * alpha / lip)
    # Adaptive restart (O'Donoghue & Candes): drop the momentum when it points uphill.
    restart = jnp.sum((v - new) * (new - state.b)) > 0
    t_next = jnp.where(restart, 1.0, t_next)
    b_prev = jnp.where(restart, new, state.b)
    return state._replace(a=profiled_intercept(y, w, new), b=new, b_prev=b_prev, t=t_next)


@functools.partial(jax.jit, static_argnames=("alpha", "method", "criterion", "max_iter", "check_every"))
def solve(
    y: Float[Array, "G S"],
    w: Float[Array, "G S"],
    lam,
    c: Float[Array, " G"] | None = None,
    alpha=0.0,
    init: Float[Array, "G S"] | None = None,
    *,
    method: Method = "bcd",
    criterion: Criterion = "kkt",
    tol: float = 1e-10,
    max_iter: int = 20000,
    check_every: int = 5,
) -> Solution:
    """Solve the (sparse-)group lasso at one λ.

    Args:
        y: log-ratios Y (G elements, S samples).
        w: weights W >= 0 (1 / variance of Y); every column needs a positive sum.
        lam: λ > 0 (units of W * Y).
        c: group weights c_g > 0 (default ones).
        alpha: l1 share in [0, 1) (0 = group lasso); static (a Python float).
        init: warm start for B (default zeros).
        method: "bcd" (cyclic block coordinate descent) or "fista".
        criterion: stop on the relative KKT residual ("kkt") or on the duality gap
            relative to the objective at B = 0 ("gap").
        tol: tolerance of the criterion.
        max_iter: maximum iterations (rounded up to a multiple of ``check_every``).
        check_every: iterations between convergence checks.

    Returns:
        :class:`Solution` (gap and KKT residual both evaluated at the returned point).
    """
    y = jnp.asarray(y, jnp.float64)
    w = jnp.asarray(w, y.dtype)
    c = jnp.ones(y.shape[0], y.dtype) if c is None else jnp.asarray(c, y.dtype)
    b0 = jnp.zeros_like(y) if init is None else jnp.asarray(init, y.dtype)
    lip = jnp.maximum(jnp.max(w, axis=1), 1e-300)
    colsum = jnp.sum(w, axis=0)
    null = 0.5 * jnp.sum(w * (y - profiled_intercept(y, w, jnp.zeros_like(y))[None, :]) ** 2)

    def measure(b):
        if criterion == "kkt":
            return kkt_residual(y, w, b, lam, c, alpha)
        return duality_gap(y, w, b, lam, c, alpha)[0] / jnp.maximum(null, 1e-300)

    def epoch(state: _State) -> _State:
        def inner(_, s):
            if method == "bcd":
                a, b = _bcd_sweep(y, w, s.a, s.b, lam, c, alpha, lip, colsum)
                return s._replace(a=a, b=b)
            return _fista_step(y, w, s, lam, c, alpha, lip)

        state = lax.fori_loop(0, check_every, inner, state)
        return state._replace(it=state.it + check_every, measure=measure(state.b))

    def cond(state: _State):
        return (state.measure > tol) & (state.it < max_iter)

    init_state = _State(profiled_intercept(y, w, b0), b0, b0, jnp.ones((), y.dtype), jnp.zeros((), jnp.int32),
                        measure(b0))
    state = lax.while_loop(cond, epoch, init_state)
    gap, primal, _ = duality_gap(y, w, state.b, lam, c, alpha)
    a = profiled_intercept(y, w, state.b)
    return Solution(a, state.b, primal, gap, kkt_residual(y, w, state.b, lam, c, alpha), state.it,
                    state.measure <= tol)


def reweight(b: Float[Array, "G S"], q, alpha, eps) -> Float[Array, " G"]:
    """Group weights of one reweighting step for the penalty ``N_g^q``: ``q (N_g + eps)^(q - 1)``.

    ``N_g = (1 - α) ||B_g||_2 + α ||B_g||_1``; the concave ``N^q`` is majorised by its
    tangent at the current B, so each reweighted convex problem decreases the q-objective.
    """
    norm = penalty(b, jnp.ones(b.shape[0], b.dtype), alpha)
    return q * (norm + eps) ** (q - 1.0)


def q_objective(y, w, b, lam, q, alpha=0.0) -> Float[Array, ""]:
    """Objective of the q-penalty at B (intercepts profiled): loss + λ Σ_g N_g(B_g)^q."""
    a = profiled_intercept(y, w, b)
    r = y - a[None, :] - b
    norm = penalty(b, jnp.ones(b.shape[0], b.dtype), alpha)
    return 0.5 * jnp.sum(w * r * r) + lam * jnp.sum(jnp.where(norm > 0, norm, 1.0) ** q * (norm > 0))


def isocon_starts(y: Float[Array, "G S"]) -> Float[Array, "G G S"]:
    """One start per group g: B = Y - Y_g, i.e. every sample's isocon through element g."""
    return y[None, :, :] - y[:, None, :]


@functools.partial(jax.jit, static_argnames=("q", "alpha", "method", "criterion", "max_iter", "check_every",
                                             "n_reweight", "multistart"))
def solve_q(
    y, w, lam, q=1.0, alpha=0.0, init=None, *, eps: float = 1e-2, n_reweight: int = 5,
    method: Method = "bcd", criterion: Criterion = "kkt", tol: float = 1e-10, max_iter: int = 20000,
    check_every: int = 5, multistart: bool = False,
) -> Solution:
    """Penalty ``λ Σ_g N_g(B_g)^q`` (0 < q <= 1) by iterative reweighting from the q = 1 solution.

    The q = 1 problem (unit weights) is solved first; then ``n_reweight`` convex problems
    with weights :func:`reweight` of the previous solution (each warm-started). ``q`` is
    static (a Python float): for q = 1 only the convex problem is solved. ``eps`` (units
    of B, log units) keeps the weight of a zero group finite: smaller means stickier zeros.

    The q < 1 problem is not convex: the reweighting is run from the q = 1 solution, from
    ``init`` when given, and with ``multistart`` from each of the G :func:`isocon_starts`
    (vmapped); the solution with the lowest :func:`q_objective` is returned, so it is never
    worse (in that objective) than the plain reweighting from q = 1.
    """
    kw = dict(alpha=alpha, method=method, criterion=criterion, tol=tol, max_iter=max_iter, check_every=check_every)
    first = solve(y, w, lam, None, init=init, **kw)
    if q == 1.0:
        return first

    # Intermediate reweighting steps only move the weights: a loose tolerance is enough there.
    loose = {**kw, "tol": jnp.maximum(tol, 1e-7)}

    def reweighted(b0):
        def body(b, _):
            return solve(y, w, lam, reweight(b, q, alpha, eps), init=b, **loose).coef, None

        b, _ = lax.scan(body, b0, None, length=n_reweight - 1)
        return solve(y, w, lam, reweight(b, q, alpha, eps), init=b, **kw)

    starts = [first.coef[None]]
    if init is not None:  # a warm start (previous λ, or the point estimate for a replicate)
        starts.append(jnp.asarray(init, jnp.float64)[None])
    if multistart:
        starts.append(isocon_starts(jnp.asarray(y, jnp.float64)))
    if len(starts) == 1:
        return reweighted(first.coef)
    starts = jnp.concatenate(starts, axis=0)
    sols = jax.vmap(reweighted)(starts)
    best = jnp.argmin(jax.vmap(lambda b: q_objective(y, w, b, lam, q, alpha))(sols.coef))
    return jax.tree.map(lambda x: x[best], sols)


@functools.partial(jax.jit, static_argnames=("q", "alpha", "method", "criterion", "max_iter", "check_every",
                                             "n_reweight", "multistart"))
def path(
    y, w, lams: Float[Array, " L"], q=1.0, alpha=0.0, *, eps: float = 1e-2, n_reweight: int = 5,
    method: Method = "bcd", criterion: Criterion = "kkt", tol: float = 1e-10, max_iter: int = 20000,
    check_every: int = 5, multistart: bool = False,
) -> Solution:
    """Regularisation path: :func:`solve_q` at each λ of ``lams`` (decreasing), warm-started.

    A ``lax.scan`` carries each solution's B into the next λ. Returns a :class:`Solution`
    whose fields have a leading λ axis (L, ...).
    """
    kw = dict(eps=eps, n_reweight=n_reweight, method=method, criterion=criterion, tol=tol,
              max_iter=max_iter, check_every=check_every, multistart=multistart)

    def body(b, lam):
        sol = solve_q(y, w, lam, q, alpha, b, **kw)
        return sol.coef, sol

    _, sols = lax.scan(body, jnp.zeros_like(jnp.asarray(y, jnp.float64)), jnp.asarray(lams, jnp.float64))
    return sols


def lambda_grid(lam_max, n: int, min_ratio: float) -> Float[Array, " n"]:
    """``n`` λ values log-spaced from ``lam_max`` down to ``min_ratio * lam_max``."""
    return lam_max * jnp.logspace(0.0, jnp.log10(min_ratio), n)

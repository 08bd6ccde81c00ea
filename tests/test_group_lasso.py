"""Tests of the proximal group lasso kernel (jaxpetro.kernels.group_lasso).

References: scikit-learn's MultiTaskLasso on the equivalent design (q = 1, per-element
weights), the KKT conditions and the duality gap (general weights, sparse-group), exact
invariances of the problem, central finite differences of the solution (implicit
differentiation), and the compile cache (traced options do not recompile).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpetro.kernels import group_lasso as gl
from jaxpetro.kernels._status import StatusCode


def opts(alpha=0.0, **kw):
    """Options with l1 share ``alpha`` (0: the plain group lasso)."""
    return gl.LassoOptions(sparse_group=alpha > 0, l1_ratio=alpha if alpha > 0 else 0.5, **kw)


def problem(seed=0, g=20, s=5, n_mobile=12, noise=0.1, uniform_rows=True):
    """Log-ratio data: intercepts, a few mobile groups, Gaussian noise; weights 1/sd^2."""
    rng = np.random.default_rng(seed)
    b = np.zeros((g, s))
    b[:n_mobile] = rng.normal(0.0, 0.5, (n_mobile, s))
    a = rng.normal(0.0, 0.3, s)
    y = a + b + noise * rng.normal(size=(g, s))
    if uniform_rows:
        w = np.repeat(rng.uniform(50, 150, g)[:, None], s, axis=1)
    else:
        w = rng.uniform(20, 200, (g, s))
    return y, w


def sklearn_reference(y, w_rows, c, lam):
    """q = 1 solution by scikit-learn's MultiTaskLasso on the equivalent design.

    With per-element weights w_g, profiling the intercepts out leaves, per sample s,
    1/2 (y_s - b_s)^T M (y_s - b_s) with M = D - w w^T / sum(w) = L^T L, L = P D^(1/2),
    P the projection orthogonal to sqrt(w). MultiTaskLasso minimises
    1/(2n) ||Y' - X W'||^2 + alpha sum_g ||W'_g||; with X = L diag(1/c), Y' = L Y and
    W' = diag(c) B this is our objective divided by n, so alpha = lam / n.
    """
    from sklearn.linear_model import MultiTaskLasso

    g = y.shape[0]
    sw = np.sqrt(w_rows)
    u = sw / np.linalg.norm(sw)
    lmat = (np.eye(g) - np.outer(u, u)) @ np.diag(sw)
    model = MultiTaskLasso(alpha=lam / g, fit_intercept=False, tol=1e-15, max_iter=500000)
    model.fit(lmat / c[None, :], lmat @ y)
    return model.coef_.T / c[:, None]


@pytest.mark.parametrize("method", ["bcd", "fista"])
@pytest.mark.parametrize("frac", [0.5, 0.15])
def test_matches_multitask_lasso(method, frac):
    y, w = problem(1)
    c = np.random.default_rng(2).uniform(0.5, 2.0, y.shape[0])
    lam = frac * float(gl.lambda_max(y, w, c))
    sol = gl.solve(y, w, lam, opts(solver=method, tol=1e-12), c)
    ref = sklearn_reference(y, w[:, 0], c, lam)
    assert bool(sol.status.converged) and int(sol.status.code) == StatusCode.SUCCESS
    # 1e-8 relative on the coefficients, and the same support.
    assert np.abs(np.asarray(sol.coef) - ref).max() <= 1e-8 * np.abs(ref).max()
    np.testing.assert_array_equal(np.linalg.norm(sol.coef, axis=1) > 0, np.linalg.norm(ref, axis=1) > 0)
    # Intercepts are the weighted means of Y - B.
    a_ref = np.sum(w * (y - ref), axis=0) / np.sum(w, axis=0)
    np.testing.assert_allclose(sol.intercept, a_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("method", ["bcd", "fista"])
def test_kkt_and_gap_general_weights(alpha, method):
    """Non-uniform weights and the sparse-group variant: KKT holds, the gap closes, both solvers agree."""
    y, w = problem(3, uniform_rows=False)
    w[2, 1] = 0.0  # a missing observation
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(20), alpha))
    sol = gl.solve(y, w, lam, opts(alpha, solver=method, tol=1e-11, max_iter=50000))
    assert bool(sol.status.converged) and float(sol.kkt) <= 1e-11
    null = float(gl.objective(y, w, gl.profiled_intercept(y, w, jnp.zeros_like(y)), jnp.zeros_like(y), lam,
                              jnp.ones(20), alpha))
    assert -1e-12 * null <= float(sol.gap) <= 1e-8 * null
    other = gl.solve(y, w, lam, opts(alpha, solver="fista" if method == "bcd" else "bcd", tol=1e-11,
                                     max_iter=50000))
    np.testing.assert_allclose(sol.coef, other.coef, atol=1e-8)
    # The solution beats random perturbations of itself (it is a minimum of a convex objective).
    rng = np.random.default_rng(0)
    f0 = float(gl.objective(y, w, sol.intercept, sol.coef, lam, jnp.ones(20), alpha))
    for _ in range(5):
        db = rng.normal(0, 1e-3, y.shape) * (rng.uniform(size=y.shape) < 0.3)
        da = rng.normal(0, 1e-3, y.shape[1])
        assert float(gl.objective(y, w, sol.intercept + da, sol.coef + db, lam, jnp.ones(20), alpha)) >= f0 - 1e-12
    if alpha > 0:
        # Sparse-group: some zero entries inside non-zero groups at this λ.
        active = np.linalg.norm(sol.coef, axis=1) > 0
        assert np.any(np.asarray(sol.coef)[active] == 0)


def test_kkt_residual_detects_a_wrong_point():
    y, w = problem(4)
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(20)))
    sol = gl.solve(y, w, lam)
    bad = np.asarray(sol.coef).copy()
    bad[np.linalg.norm(bad, axis=1) > 0] *= 1.05
    assert float(gl.kkt_residual(y, w, bad, lam, jnp.ones(20), 0.0)) > 1e-3
    gap, primal, dual = gl.duality_gap(y, w, bad, lam, jnp.ones(20), 0.0)
    assert float(gap) > 1e-6 and np.isclose(float(gap), float(primal - dual))


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_lambda_max_is_sharp(alpha):
    y, w = problem(5, uniform_rows=False)
    lmax = float(gl.lambda_max(y, w, jnp.ones(20), alpha))
    above = gl.solve(y, w, 1.0001 * lmax, opts(alpha))
    below = gl.solve(y, w, 0.98 * lmax, opts(alpha))
    assert np.all(np.asarray(above.coef) == 0)
    assert np.count_nonzero(np.linalg.norm(below.coef, axis=1)) >= 1


_dual_norm = jax.jit(gl.dual_norm)  # α traced: one compilation for all examples


@given(st.floats(0.0, 0.95), st.integers(0, 10_000))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_dual_norm_solves_its_equation(alpha, seed):
    """τ_g satisfies ||S_{ατ}(θ_g / c_g)|| = (1 - α) τ_g."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(6, 4)) * rng.uniform(0.1, 10)
    c = rng.uniform(0.5, 2.0, 6)
    tau = np.asarray(_dual_norm(jnp.asarray(theta), jnp.asarray(c), alpha))
    u = np.abs(theta) / c[:, None]
    lhs = np.linalg.norm(np.maximum(u - alpha * tau[:, None], 0), axis=1)
    np.testing.assert_allclose(lhs, (1 - alpha) * tau, rtol=1e-10, atol=1e-12)


@given(st.integers(0, 10_000), st.floats(-2, 2), st.floats(0.1, 10.0))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_invariances(seed, shift, scale):
    """Adding a constant per sample moves only the intercepts; W * k with λ * k changes nothing."""
    y, w = problem(seed % 97, g=8, s=3, n_mobile=4)
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(8)))
    o = opts(tol=1e-12)
    base = gl.solve(y, w, lam, o)
    shifted = gl.solve(y + shift * np.arange(1, 4)[None, :], w, lam, o)
    scaled = gl.solve(y, w * scale, lam * scale, o)
    np.testing.assert_allclose(shifted.coef, base.coef, atol=1e-9)
    np.testing.assert_allclose(shifted.intercept, base.intercept + shift * np.arange(1, 4), atol=1e-9)
    np.testing.assert_allclose(scaled.coef, base.coef, atol=1e-9)


def test_path_warm_start_equals_cold_solves_and_vmap():
    y, w = problem(6)
    lams = gl.lambda_grid(gl.lambda_max(y, w, jnp.ones(20)), 8, 0.05)
    o = opts(tol=1e-12)
    p = gl.path(y, w, lams, o)
    cold = jax.vmap(lambda lam: gl.solve(y, w, lam, o))(lams)  # vmap over λ
    np.testing.assert_allclose(p.coef, cold.coef, atol=1e-9)
    active = np.count_nonzero(np.linalg.norm(p.coef, axis=2), axis=1)
    assert active[0] == 0 and active[-1] > active[1]
    # vmap over replicates of the data equals solving them one by one.
    ys = jnp.stack([y, y[::-1], y * 1.1])
    batch = jax.vmap(lambda yy: gl.solve(yy, w, lams[3], o))(ys)
    for k in range(3):
        one = gl.solve(ys[k], w, lams[3], o)
        np.testing.assert_allclose(batch.coef[k], one.coef, atol=1e-10)


@pytest.mark.parametrize("q", [0.5])
def test_reweighting_decreases_the_q_objective(q):
    """Majorise-minimise: the reweighted solution has a lower q-objective than the q = 1 one, and is sparser or equal."""
    y, w = problem(7, n_mobile=8)
    lam = 0.2 * float(gl.lambda_max(y, w, jnp.ones(20)))

    def q_objective(sol):
        a, b = sol.intercept, sol.coef
        r = y - a[None, :] - b
        return 0.5 * np.sum(w * r * r) + lam * np.sum(np.linalg.norm(b, axis=1) ** q)

    first = gl.solve(y, w, lam, opts(tol=1e-12))
    rew = gl.solve_q(y, w, lam, opts(q=q, reweight_eps=1e-3, n_reweight=8, tol=1e-12, multistart=False))
    assert q_objective(rew) < q_objective(first)
    assert np.count_nonzero(np.linalg.norm(rew.coef, axis=1)) <= np.count_nonzero(np.linalg.norm(first.coef, axis=1))
    same = gl.solve_q(y, w, lam, opts(q=1.0, tol=1e-12))
    np.testing.assert_allclose(same.coef, first.coef, atol=1e-12)


def test_gap_criterion_stops_on_the_relative_gap():
    y, w = problem(9, uniform_rows=False)
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(20)))
    sol = gl.solve(y, w, lam, opts(stopping="gap", tol=1e-11))
    null = float(gl.objective(y, w, gl.profiled_intercept(y, w, jnp.zeros_like(y)), jnp.zeros_like(y), lam,
                              jnp.ones(20), 0.0))
    assert bool(sol.status.converged) and float(sol.gap) <= 1e-11 * null
    ref = gl.solve(y, w, lam, opts(tol=1e-12))
    np.testing.assert_allclose(sol.coef, ref.coef, atol=1e-5)
    # A too-small iteration budget is reported, not hidden.
    short = gl.solve(y, w, lam, opts(stopping="gap", tol=1e-14, max_iter=10))
    assert not bool(short.status.converged) and int(short.status.iterations) == 10
    assert int(short.status.code) == StatusCode.MAX_ITERATIONS


@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_init_and_step_are_the_loop_of_solve(solver):
    """solve = init, then step until the measure is below tol (tested every check_every steps)."""
    y, w = problem(10, uniform_rows=False)
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(20)))
    o = opts(solver=solver, tol=1e-10)
    sol = gl.solve(y, w, lam, o)
    state = gl.init(y, w, lam, o)
    step = jax.jit(gl.step)
    while True:
        for _ in range(o.check_every):
            state, info = step(state, y, w, lam, o)
        if float(info.measure) <= o.tol or int(state.iterations) >= o.max_iter:
            break
    assert int(state.iterations) == int(sol.status.iterations)
    np.testing.assert_allclose(state.coef, sol.coef, rtol=0, atol=1e-14)
    np.testing.assert_allclose(state.intercept, sol.intercept, rtol=0, atol=1e-14)


def test_float_options_and_lambda_do_not_recompile():
    """q, tol, reweight_eps and λ are traced: new values reuse the compiled program; a static option recompiles."""
    y, w = problem(11, g=8, s=3, n_mobile=4)
    lmax = float(gl.lambda_max(y, w, jnp.ones(8)))
    o = opts(multistart=False, n_reweight=2)
    gl.solve_q(y, w, 0.3 * lmax, o)
    size = gl.solve_q._cache_size()
    gl.solve_q(y, w, 0.2 * lmax, o.replace(q=0.5))
    gl.solve_q(y, w, 0.25 * lmax, o.replace(q=0.7, tol=1e-9, reweight_eps=0.05))
    assert gl.solve_q._cache_size() == size
    gl.solve_q(y, w, 0.2 * lmax, o.replace(solver="fista"))
    assert gl.solve_q._cache_size() == size + 1


def _stacked(sol):
    return jnp.concatenate([sol.coef.ravel(), sol.intercept])


@pytest.mark.parametrize("alpha", [pytest.param(0.0, marks=pytest.mark.slow), 0.5])  # 0.5 also checks l1_ratio
def test_gradient_of_the_solution_matches_finite_differences(alpha):
    """Implicit differentiation of (B, a) w.r.t. y, w and λ against central differences (stable active set)."""
    y, w = problem(12, g=10, s=4, n_mobile=5, uniform_rows=False)
    y, w = jnp.asarray(y), jnp.asarray(w)
    o = opts(alpha, tol=1e-14, max_iter=200000)
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(10), o.alpha))

    def f(y_, w_, lam_):
        return _stacked(gl.solve(y_, w_, lam_, o))

    sol = gl.solve(y, w, lam, o)
    active = np.linalg.norm(sol.coef, axis=1) > 0
    assert 0 < active.sum() < 10
    jy, jw, jl = jax.jacrev(f, argnums=(0, 1, 2))(y, w, lam)
    for i, j in ((int(np.flatnonzero(active)[0]), 1), (int(np.flatnonzero(~active)[0]), 2)):
        h = 1e-6
        e = jnp.zeros_like(y).at[i, j].set(h)
        fd = (f(y + e, w, lam) - f(y - e, w, lam)) / (2 * h)
        np.testing.assert_allclose(jy[:, i, j], fd, rtol=0, atol=1e-8 * max(1.0, float(jnp.abs(fd).max())))
        hw = 1e-5 * float(w[i, j])
        e = jnp.zeros_like(w).at[i, j].set(hw)
        fd = (f(y, w + e, lam) - f(y, w - e, lam)) / (2 * hw)
        np.testing.assert_allclose(jw[:, i, j], fd, rtol=1e-5, atol=1e-10)
    hl = 1e-6 * lam
    fd = (f(y, w, lam + hl) - f(y, w, lam - hl)) / (2 * hl)
    np.testing.assert_allclose(jl, fd, rtol=1e-5, atol=1e-10)
    # Forward mode gives the same derivative; zero entries of B have zero derivative.
    np.testing.assert_allclose(jax.jvp(lambda l: f(y, w, l), (lam,), (1.0,))[1], jl, rtol=1e-10, atol=1e-14)
    assert np.all(np.asarray(jl[: 40]).reshape(10, 4)[np.asarray(sol.coef) == 0] == 0)
    # Group weights c, and the l1 share of the sparse-group variant.
    c0 = jnp.ones(10)
    k = int(np.flatnonzero(active)[0])
    jc = jax.jacrev(lambda c_: _stacked(gl.solve(y, w, lam, o, c_)))(c0)
    e = jnp.zeros(10).at[k].set(1e-6)
    fd = (_stacked(gl.solve(y, w, lam, o, c0 + e)) - _stacked(gl.solve(y, w, lam, o, c0 - e))) / 2e-6
    np.testing.assert_allclose(jc[:, k], fd, rtol=1e-5, atol=1e-10)
    if alpha > 0:
        jr = jax.jacrev(lambda r: _stacked(gl.solve(y, w, lam, o.replace(l1_ratio=r))))(alpha)
        fd = (_stacked(gl.solve(y, w, lam, o.replace(l1_ratio=alpha + 1e-6)))
              - _stacked(gl.solve(y, w, lam, o.replace(l1_ratio=alpha - 1e-6)))) / 2e-6
        np.testing.assert_allclose(jr, fd, rtol=1e-5, atol=1e-10)


def test_gradient_through_the_path():
    """jax.grad of a scalar of the whole warm-started path (q = 1) against a central difference."""
    y, w = problem(13, g=10, s=4, n_mobile=5)
    y, w = jnp.asarray(y), jnp.asarray(w)
    # Below λ_max: at λ_max itself the first group sits on the edge of its activation (one-sided derivative).
    lams = gl.lambda_grid(0.9 * gl.lambda_max(y, w, jnp.ones(10)), 4, 0.2)
    o = opts(tol=1e-14, max_iter=200000)
    direction = jnp.asarray(np.random.default_rng(0).normal(size=y.shape))

    def f(y_):
        p = gl.path(y_, w, lams, o)
        return jnp.sum(p.coef**2) + jnp.sum(p.intercept)

    g = jax.grad(f)(y)
    h = 1e-6
    fd = (f(y + h * direction) - f(y - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(g * direction), fd, rtol=1e-6)


def test_float32_mode_is_refused_clearly():
    y, w = problem(14, g=6, s=2, n_mobile=2)
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="float64"):
            gl.solve(y, w, 1.0, opts())

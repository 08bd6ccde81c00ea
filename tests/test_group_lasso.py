"""Tests of the proximal group lasso kernel (jaxpetro.kernels.group_lasso).

References: scikit-learn's MultiTaskLasso on the equivalent design (q = 1, per-element
weights), the KKT conditions and the duality gap (general weights, sparse-group), and
exact invariances of the problem.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxpetro  # noqa: F401  (enables float64)
from jaxpetro.kernels import group_lasso as gl


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
    sol = gl.solve(y, w, lam, c, method=method, tol=1e-12)
    ref = sklearn_reference(y, w[:, 0], c, lam)
    assert bool(sol.converged)
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
    sol = gl.solve(y, w, lam, alpha=alpha, method=method, tol=1e-11, max_iter=50000)
    assert bool(sol.converged) and float(sol.kkt) <= 1e-11
    null = float(gl.objective(y, w, gl.profiled_intercept(y, w, jnp.zeros_like(y)), jnp.zeros_like(y), lam,
                              jnp.ones(20), alpha))
    assert -1e-12 * null <= float(sol.gap) <= 1e-8 * null
    other = gl.solve(y, w, lam, alpha=alpha, method="fista" if method == "bcd" else "bcd", tol=1e-11,
                     max_iter=50000)
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
    above = gl.solve(y, w, 1.0001 * lmax, alpha=alpha)
    below = gl.solve(y, w, 0.98 * lmax, alpha=alpha)
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
    base = gl.solve(y, w, lam, tol=1e-12)
    shifted = gl.solve(y + shift * np.arange(1, 4), w, lam, tol=1e-12)
    scaled = gl.solve(y, w * scale, lam * scale, tol=1e-12)
    np.testing.assert_allclose(shifted.coef, base.coef, atol=1e-9)
    np.testing.assert_allclose(shifted.intercept, base.intercept + shift * np.arange(1, 4), atol=1e-9)
    np.testing.assert_allclose(scaled.coef, base.coef, atol=1e-9)


def test_path_warm_start_equals_cold_solves_and_vmap():
    y, w = problem(6)
    lams = gl.lambda_grid(gl.lambda_max(y, w, jnp.ones(20)), 8, 0.05)
    p = gl.path(y, w, lams, tol=1e-12)
    cold = jax.vmap(lambda lam: gl.solve(y, w, lam, tol=1e-12))(lams)  # vmap over λ
    np.testing.assert_allclose(p.coef, cold.coef, atol=1e-9)
    active = np.count_nonzero(np.linalg.norm(p.coef, axis=2), axis=1)
    assert active[0] == 0 and active[-1] > active[1]
    # vmap over replicates of the data equals solving them one by one.
    ys = jnp.stack([y, y[::-1], y * 1.1])
    batch = jax.vmap(lambda yy: gl.solve(yy, w, lams[3], tol=1e-12))(ys)
    for k in range(3):
        one = gl.solve(ys[k], w, lams[3], tol=1e-12)
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

    first = gl.solve(y, w, lam, tol=1e-12)
    rew = gl.solve_q(y, w, lam, q, eps=1e-3, n_reweight=8, tol=1e-12)
    assert q_objective(rew) < q_objective(first)
    assert np.count_nonzero(np.linalg.norm(rew.coef, axis=1)) <= np.count_nonzero(np.linalg.norm(first.coef, axis=1))
    same = gl.solve_q(y, w, lam, 1.0, tol=1e-12)
    np.testing.assert_allclose(same.coef, first.coef, atol=1e-12)


def test_gap_criterion_stops_on_the_relative_gap():
    y, w = problem(9, uniform_rows=False)
    lam = 0.3 * float(gl.lambda_max(y, w, jnp.ones(20)))
    sol = gl.solve(y, w, lam, criterion="gap", tol=1e-11)
    null = float(gl.objective(y, w, gl.profiled_intercept(y, w, jnp.zeros_like(y)), jnp.zeros_like(y), lam,
                              jnp.ones(20), 0.0))
    assert bool(sol.converged) and float(sol.gap) <= 1e-11 * null
    ref = gl.solve(y, w, lam, tol=1e-12)
    np.testing.assert_allclose(sol.coef, ref.coef, atol=1e-5)
    # A too-small iteration budget is reported, not hidden.
    short = gl.solve(y, w, lam, criterion="gap", tol=1e-14, max_iter=10)
    assert not bool(short.converged) and int(short.n_iter) == 10

"""Tests of the ensemble Kalman filter/smoothers (jaxpetro.kernels.enks) against the exact Kalman references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.kernels import enks
from jaxpetro.kernels import kalman as kf
from jaxpetro.kernels._status import StatusCode

from _numpy_enks import numpy_enks


def garnet_like(seed=0, n=30, p=4, missing=0.15):
    """Linear garnet problem (a linearised table): state (P kbar, T °C), 4 fractions, noise 0.005."""
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(n, p, 2)) * np.array([0.02, 0.001])
    b = rng.uniform(0.1, 0.3, (n, p))
    truth = np.cumsum(rng.normal(size=(n, 2)) * [0.3, 10.0], 0) + [6.0, 500.0]
    R = np.broadcast_to(np.eye(p) * 0.005**2, (n, p, p))
    y = np.einsum("npd,nd->np", H, truth) + b + rng.normal(size=(n, p)) * 0.005
    mask = rng.uniform(size=(n, p)) > missing
    mask[n // 3] = False  # a missing shell
    Q = kf.random_walk_noise(jnp.full(n, 2.0), jnp.array([0.3, 10.0]))
    m0, P0 = jnp.array([6.0, 500.0]), jnp.diag(jnp.array([2.0, 100.0]) ** 2)
    model = kf.LinearGaussianModel(jnp.eye(2), Q, jnp.asarray(H), jnp.asarray(b), jnp.asarray(R), m0, P0)
    return model, jnp.asarray(np.where(mask, y, np.nan)), jnp.asarray(mask)


SMALL = 64  # one ensemble size (and n = 15 shells) for the structural tests: one compilation each


def prior_ensemble(model, n_mem, seed=1):
    return enks.prior_ensemble(jax.random.key(seed), model.m0, model.P0, enks.SmootherOptions(size=n_mem))


def run(model, y, mask, n_mem, **kw):
    X0 = prior_ensemble(model, n_mem)
    return enks.ensemble_smoother(
        jax.random.key(2), enks.linear_obs, None, X0, y, mask, model.R, model.Q, (model.H, model.b), F=model.F,
        options=enks.SmootherOptions(**kw),
    )


@pytest.mark.parametrize("variant", ["stochastic", pytest.param("sqrt", marks=pytest.mark.slow)])
def test_enks_converges_to_exact_rts_at_2000_members(variant):
    """At N = 2000: EnKS mean within 0.3 posterior sd of the exact RTS mean everywhere (rms < 0.1 sd), sd within 6 %.

    Measured (seed 0): max 0.24 / 0.17 sd, rms 0.08 / 0.07 sd, sd 4.2 % / 3.1 % (stochastic / sqrt);
    at N = 8000 these halve (0.11 / 0.09, 0.04, 2 % / 1.2 %), the Monte Carlo rate 1/sqrt(N).
    """
    model, y, mask = garnet_like()
    exact = kf.rts_smoother(model, y, mask)
    sd_exact = np.sqrt(np.diagonal(exact.cov_s, axis1=1, axis2=2))
    res = run(model, y, mask, 2000, variant=variant)
    mean, sd = np.asarray(res.smoothed.mean(1)), np.asarray(res.smoothed.std(1, ddof=1))
    err = (mean - exact.mean_s) / sd_exact
    assert np.abs(err).max() < 0.3 and np.sqrt(np.mean(err**2)) < 0.1
    assert np.abs(sd / sd_exact - 1).max() < 0.06
    # the ensemble log-likelihood estimates the exact one
    assert abs(float(res.loglik) - float(exact.loglik)) < 1.0
    # and the error shrinks with the ensemble: N = 100 is clearly worse on the sd
    if variant != "stochastic":  # one comparison is enough (each ensemble size is a compilation)
        return
    small = run(model, y, mask, 200, variant=variant)
    err_small = (np.asarray(small.smoothed.mean(1)) - exact.mean_s) / sd_exact
    assert np.sqrt(np.mean(err_small**2)) > np.sqrt(np.mean(err**2))
    assert np.abs(np.asarray(small.smoothed.std(1, ddof=1)) / sd_exact - 1).max() > np.abs(sd / sd_exact - 1).max()


@pytest.mark.parametrize("variant", ["stochastic", pytest.param("sqrt", marks=pytest.mark.slow)])
def test_enks_full_lag_equals_ensemble_rts_on_same_draws(variant):
    """Exact equivalence when the forecast anomalies span the ensemble space (N = d + 1)."""
    rng = np.random.default_rng(4)
    n, p, d = 12, 3, 4
    H, b = jnp.asarray(rng.normal(size=(n, p, d))), jnp.asarray(rng.normal(size=(n, p)))
    R = jnp.broadcast_to(jnp.eye(p) * 0.1, (n, p, p))
    y = jnp.asarray(rng.normal(size=(n, p)))
    mask = jnp.asarray(rng.uniform(size=(n, p)) > 0.2)
    Q = kf.random_walk_noise(jnp.ones(n), jnp.array([0.3, 0.5, 0.2, 0.4]))
    X0 = jax.random.normal(jax.random.key(1), (d + 1, d))
    args = (jax.random.key(2), enks.linear_obs, None, X0, y, mask, R, Q, (H, b))
    a = enks.ensemble_smoother(*args, options=enks.SmootherOptions(variant=variant, smoother="enks"))
    c = enks.ensemble_smoother(*args, options=enks.SmootherOptions(variant=variant, smoother="rts"))
    np.testing.assert_allclose(a.filtered, c.filtered, rtol=0, atol=0)
    np.testing.assert_allclose(a.smoothed, c.smoothed, atol=1e-6)
    assert np.abs(np.asarray(a.smoothed - a.filtered)).max() > 1e-2  # smoothing did something


@pytest.mark.slow
def test_enks_and_ensemble_rts_agree_statistically_for_large_ensembles():
    model, y, mask = garnet_like()
    exact = kf.rts_smoother(model, y, mask)
    sd_exact = np.sqrt(np.diagonal(exact.cov_s, axis1=1, axis2=2))
    r = run(model, y, mask, 2000, smoother="rts")
    err = (np.asarray(r.smoothed.mean(1)) - exact.mean_s) / sd_exact
    assert np.abs(err).max() < 0.3 and np.sqrt(np.mean(err**2)) < 0.1
    assert np.abs(np.asarray(r.smoothed.std(1, ddof=1)) / sd_exact - 1).max() < 0.06


def test_map_equals_exact_mean():
    model, y, mask = garnet_like(seed=5)
    exact = kf.rts_smoother(model, y, mask)
    X_init = jnp.broadcast_to(model.m0, exact.mean_s.shape)
    res = enks.map_path(enks.linear_obs, None, y, mask, model.R, model.Q, (model.H, model.b), model.m0, model.P0,
                        X_init, F=model.F)
    sd_exact = np.sqrt(np.diagonal(exact.cov_s, axis1=1, axis2=2))
    assert np.abs((np.asarray(res.x) - exact.mean_s) / sd_exact).max() < 1e-6
    assert bool(res.status.converged) and int(res.status.code) == StatusCode.SUCCESS
    assert 0 < int(res.status.iterations) < 500 and float(res.grad_norm) < 1e-8


def test_lag_zero_is_the_filter_and_lag_windows_interpolate():
    model, y, mask = garnet_like(seed=6, n=15)
    zero = run(model, y, mask, SMALL, lag=0)
    np.testing.assert_allclose(zero.smoothed, zero.filtered, rtol=0, atol=1e-9)
    full = run(model, y, mask, SMALL)
    lag3 = run(model, y, mask, SMALL, lag=3)
    # lag L: each analysis also updates the L steps before it, so the last L + 1 steps have
    # seen every later observation (equal to full lag) and step -(L + 2) has not
    np.testing.assert_allclose(lag3.smoothed[-4:], full.smoothed[-4:], rtol=0, atol=1e-9)
    assert not np.allclose(lag3.smoothed[-5], full.smoothed[-5])
    assert not np.allclose(lag3.smoothed[0], full.smoothed[0])


def test_masked_shell_keeps_forecast_and_values_under_mask_are_ignored():
    model, y, mask = garnet_like(seed=7, n=15)
    res = run(model, y, mask, SMALL, smoother="none")
    k = 15 // 3
    np.testing.assert_allclose(res.filtered[k], res.forecast[k], rtol=0, atol=0)
    other = run(model, jnp.where(mask, y, 123.0), mask, SMALL, smoother="none")
    np.testing.assert_allclose(other.filtered, res.filtered, rtol=0, atol=0)
    np.testing.assert_allclose(other.loglik, res.loglik, rtol=0)


def test_inflation_scales_forecast_anomalies():
    model, y, mask = garnet_like(seed=8, n=15)
    one = run(model, y, mask, SMALL, smoother="none")
    two = run(model, y, mask, SMALL, smoother="none", inflation=1.5)
    # step 1: same analysis at step 0 and same noise draws, so anomalies differ by exactly 1.5
    a1 = one.forecast[1] - one.forecast[1].mean(0, keepdims=True)
    a2 = two.forecast[1] - two.forecast[1].mean(0, keepdims=True)
    np.testing.assert_allclose(a2, 1.5 * a1, rtol=1e-10)
    np.testing.assert_allclose(one.forecast[0], two.forecast[0], rtol=0)


def test_vmap_over_profiles_equals_single_calls():
    model, y, mask = garnet_like(seed=9, n=15)
    ys = jnp.stack([y, y + 0.01, y - 0.01])
    X0 = prior_ensemble(model, SMALL)
    keys = jax.random.split(jax.random.key(0), 3)

    def one(key, yy):
        return enks.ensemble_smoother(key, enks.linear_obs, None, X0, yy, mask, model.R, model.Q, (model.H, model.b),
                                      F=model.F)

    batched = jax.vmap(one)(keys, ys)
    for i in range(3):
        single = one(keys[i], ys[i])
        np.testing.assert_allclose(batched.smoothed[i], single.smoothed, rtol=1e-10, atol=1e-10)


def test_maximise_recovers_process_noise_from_exact_likelihood():
    """Maximising the exact marginal likelihood over log q recovers the simulated scales."""
    rng = np.random.default_rng(10)
    n, q_true = 200, np.array([0.2, 8.0])
    H = np.broadcast_to(np.array([[0.02, 0.0005], [-0.01, 0.001], [0.005, -0.0008]]), (n, 3, 2))
    x = np.cumsum(rng.normal(size=(n, 2)) * q_true, 0) + [6.0, 500.0]
    y = np.einsum("npd,nd->np", H, x) + rng.normal(size=(n, 3)) * 0.002
    base = kf.LinearGaussianModel(
        jnp.eye(2), jnp.zeros((n, 2, 2)), jnp.asarray(H), jnp.zeros((n, 3)),
        jnp.broadcast_to(jnp.eye(3) * 0.002**2, (n, 3, 3)), jnp.array([6.0, 500.0]), jnp.diag(jnp.array([3.0, 100.0]) ** 2),
    )
    mask = jnp.ones((n, 3), bool)

    def objective(log_q):
        Q = kf.random_walk_noise(jnp.ones(n), jnp.exp(log_q))
        return kf.loglik(base._replace(Q=Q), jnp.asarray(y), mask)

    best, hist = jax.jit(lambda t: enks.maximise(objective, t, enks.MaximiseOptions(steps=300, learning_rate=0.05)))(jnp.log(jnp.array([1.0, 1.0])))
    est = np.exp(np.asarray(best))
    assert np.all(np.abs(np.log(est / q_true)) < np.log(1.3)), est
    assert hist[-1] > hist[0]


def test_ensemble_loglik_gradient_is_finite_and_points_uphill():
    """Gradients w.r.t. log noise scales (observation and process noise, with a zero first step
    length: Q_0 = 0 is unused and must not put NaN in the gradient) are finite and point uphill."""
    model, y, mask = garnet_like(seed=11, n=15)
    X0 = prior_ensemble(model, SMALL)
    dr = jnp.ones(15).at[0].set(0.0)

    def ll(theta):
        Q = kf.random_walk_noise(dr, jnp.array([0.3, 10.0]) * jnp.exp(theta[1:]))
        return enks.ensemble_loglik(jax.random.key(3), enks.linear_obs, None, X0, y, mask,
                                    model.R * jnp.exp(2 * theta[0]), Q, (model.H, model.b))

    # observation noise 4x and the walk 20x too large: the likelihood wants all three smaller
    g = np.asarray(jax.jit(jax.grad(ll))(jnp.log(jnp.array([4.0, 20.0, 20.0]))))
    assert np.all(np.isfinite(g)) and np.all(g < 0), g


def test_static_parameter_by_state_augmentation():
    """A constant observation bias carried as a zero-noise state component is estimated like
    the exact augmented Kalman smoother does (and stays constant along the profile)."""
    rng = np.random.default_rng(12)
    n, p = 25, 3
    H2 = rng.normal(size=(n, p, 2)) * np.array([0.02, 0.001])
    H = np.concatenate([H2, np.broadcast_to(np.array([1.0, 0.0, 0.0])[:, None], (n, p, 1))], axis=2)  # bias on y_0
    truth = np.c_[np.cumsum(rng.normal(size=(n, 2)) * [0.3, 10.0], 0) + [6.0, 500.0], np.full(n, 0.03)]
    y = np.einsum("npd,nd->np", H, truth) + rng.normal(size=(n, p)) * 0.005
    Q = kf.random_walk_noise(jnp.full(n, 2.0), jnp.array([0.3, 10.0, 0.0]))
    R = jnp.broadcast_to(jnp.eye(p) * 0.005**2, (n, p, p))
    m0, P0 = jnp.array([6.0, 500.0, 0.0]), jnp.diag(jnp.array([2.0, 100.0, 0.05]) ** 2)
    model = kf.LinearGaussianModel(jnp.eye(3), Q, jnp.asarray(H), jnp.zeros((n, p)), R, m0, P0)
    mask = jnp.ones((n, p), bool)
    exact = kf.rts_smoother(model, jnp.asarray(y), mask)
    res = run(model, jnp.asarray(y), mask, 1000)
    bias = np.asarray(res.smoothed[:, :, 2])
    np.testing.assert_allclose(bias, bias[:1].repeat(n, 0), atol=1e-9)  # static: one value per member
    sd_b = float(np.sqrt(exact.cov_s[0, 2, 2]))
    assert abs(bias.mean() - float(exact.mean_s[0, 2])) < 0.3 * sd_b
    assert abs(bias[0].std(ddof=1) / sd_b - 1) < 0.15
    assert abs(float(exact.mean_s[0, 2]) - 0.03) < 3 * sd_b  # and the exact answer finds the truth


# ----------------------------------------------------------------------------- kernel shape, options, status


def test_stochastic_enks_equals_numpy_reference_on_the_same_draws():
    model, y, mask = garnet_like(seed=13, n=10)
    n_mem, key = 16, jax.random.key(5)
    X0 = prior_ensemble(model, n_mem)
    res = enks.ensemble_smoother(key, enks.linear_obs, None, X0, y, mask, model.R, model.Q, (model.H, model.b))
    pairs = jax.random.split(key, (10, 2))
    z = np.stack([np.asarray(enks.standard_normal(k, (n_mem, 2))) for k in pairs[:, 0]])
    e = np.stack([np.asarray(enks.standard_normal(k, (n_mem, 4))) for k in pairs[:, 1]])
    H, b = np.asarray(model.H), np.asarray(model.b)
    ref = numpy_enks(lambda k, X: X @ H[k].T + b[k], np.asarray(X0), np.asarray(y), np.asarray(mask),
                     np.asarray(model.R), np.asarray(model.Q), lambda k, which, shape: (z, e)[which][k])
    np.testing.assert_allclose(res.smoothed, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("options", [enks.SmootherOptions(), enks.SmootherOptions(variant="sqrt", lag=2, inflation=1.2)])
def test_init_and_step_are_the_kernel_a_user_can_drive(options):
    """A Python loop over the public step reproduces ensemble_smoother (filter, log-likelihood, smoother)."""
    model, y, mask = garnet_like(seed=14, n=8)
    X0, key = prior_ensemble(model, SMALL), jax.random.key(6)
    res = enks.ensemble_smoother(key, enks.linear_obs, None, X0, y, mask, model.R, model.Q, (model.H, model.b),
                                 F=model.F, options=options)
    pairs = jax.random.split(key, (8, 2))
    state = enks.init(X0, options, n_steps=8)
    step = jax.jit(enks.step, static_argnames="h")
    infos = []
    for k in range(8):
        shell = enks.Shell(pairs[k], y[k], mask[k], model.R[k], model.Q[k], (model.H[k], model.b[k]))
        state, info = step(state, shell, h=enks.linear_obs, params=None, options=options, F=model.F)
        infos.append(info)
    assert int(state.index) == 8
    np.testing.assert_allclose(np.stack([i.filtered.T for i in infos]), res.filtered, rtol=0, atol=1e-9)
    np.testing.assert_allclose(float(state.loglik), float(res.loglik), rtol=1e-12)
    np.testing.assert_allclose(sum(float(i.loglik) for i in infos), float(res.loglik), rtol=1e-12)
    if options.lag is None:
        XfT = jnp.stack([i.forecast for i in infos])
        LfT, RfT = (jnp.stack([i.factors[j] for i in infos]) for j in (0, 1))
        smoothed = enks.full_lag_smooth(XfT, LfT, RfT)
    else:
        smoothed = jnp.transpose(state.buffer.reshape(SMALL, 8, 2), (1, 0, 2))
    np.testing.assert_allclose(smoothed, res.smoothed, rtol=0, atol=1e-9)


def test_public_analysis_and_forecast_equal_the_member_minor_step():
    """analysis_factors / propagate (members as rows) are the step's own algebra, transposed."""
    model, y, mask = garnet_like(seed=15, n=3)
    X = prior_ensemble(model, SMALL)
    key = jax.random.key(7)
    Xf = enks.propagate(key, X, model.F, model.Q[1])
    HX = jax.vmap(enks.linear_obs, in_axes=(None, 0, None))(None, Xf, (model.H[1], model.b[1]))
    for variant in ("stochastic", "sqrt"):
        Lf, Rf, ll = enks.analysis_factors(key, HX, y[1], mask[1], model.R[1], variant)
        shell = enks.Shell(jnp.stack([key, key]), y[1], mask[1], model.R[1], model.Q[1], (model.H[1], model.b[1]))
        state = enks.init(X)._replace(index=jnp.ones((), jnp.int32))
        _, info = enks.step(state, shell, enks.linear_obs, None, enks.SmootherOptions(variant=variant), model.F)
        np.testing.assert_allclose(info.forecast.T, Xf, rtol=0, atol=1e-12)
        np.testing.assert_allclose(info.filtered.T, Xf + Lf @ (Rf.T @ Xf), rtol=0, atol=1e-9)
        np.testing.assert_allclose(float(info.loglik), float(ll), rtol=1e-12)
        assert np.allclose(np.asarray(Rf).sum(axis=0), 0.0, atol=1e-12)  # the update only sees anomalies


def test_float_options_do_not_recompile_structural_ones_do():
    model, y, mask = garnet_like(seed=16, n=6)
    X0 = prior_ensemble(model, 16)
    traces = []

    def h(params, x, aux):  # traced once per compilation of the smoother
        traces.append(1)
        return enks.linear_obs(params, x, aux)

    def call(options):
        return enks.ensemble_smoother(jax.random.key(0), h, None, X0, y, mask, model.R, model.Q,
                                      (model.H, model.b), options=options)

    call(enks.SmootherOptions(inflation=1.0))
    n = len(traces)
    assert n > 0
    a = call(enks.SmootherOptions(inflation=1.3))  # a float option: a traced leaf, same program
    call(enks.SmootherOptions(inflation=2.0))
    assert len(traces) == n
    b = call(enks.SmootherOptions(inflation=1.3, variant="sqrt"))  # a structural option compiles anew
    assert len(traces) > n
    assert not np.allclose(a.smoothed, b.smoothed)
    # the maximiser and L-BFGS: a new learning rate / tolerance reuses the program
    counted = []

    @jax.jit
    def fit(opts_m, opts_l):
        counted.append(1)
        best, _ = enks.maximise(lambda t: -jnp.sum((t - 1.0) ** 2), jnp.zeros(2), opts_m)
        return best, enks.lbfgs_minimise(lambda t: jnp.sum((t - 2.0) ** 2), jnp.zeros(2), opts_l).x

    fit(enks.MaximiseOptions(steps=20), enks.LbfgsOptions(max_iter=50))
    fit(enks.MaximiseOptions(steps=20, learning_rate=0.3), enks.LbfgsOptions(max_iter=50, tol=1e-3))
    assert len(counted) == 1


def test_status_of_smoother_and_lbfgs():
    model, y, mask = garnet_like(seed=17, n=6)
    res = run(model, y, mask, 16)
    assert bool(res.status.finite) and bool(res.status.converged) and int(res.status.iterations) == 6
    bad = run(model, y, mask, 16, inflation=jnp.nan)
    assert int(bad.status.code) == StatusCode.NONFINITE and not bool(bad.status.converged)
    short = enks.lbfgs_minimise(lambda t: jnp.sum(jnp.cosh(3.0 * (t - 1.0))), jnp.zeros(3),
                                enks.LbfgsOptions(max_iter=1, tol=1e-12))
    assert int(short.status.code) == StatusCode.MAX_ITERATIONS and int(short.status.iterations) == 1


def test_map_objective_gradient_matches_finite_differences():
    model, y, mask = garnet_like(seed=18, n=6)
    X = jnp.broadcast_to(model.m0, (6, 2)) + jax.random.normal(jax.random.key(1), (6, 2)) * jnp.array([[0.5, 20.0]])

    def f(X):
        return enks.map_objective(X, enks.linear_obs, None, y, mask, model.R, model.Q, (model.H, model.b),
                                  model.m0, model.P0, model.F)

    g = np.asarray(jax.jit(jax.grad(f))(X))
    f_jit = jax.jit(f)
    for i, j in ((0, 0), (3, 1), (5, 0)):
        eps = 1e-4 * float(jnp.abs(X[i, j]))
        fd = (f_jit(X.at[i, j].add(eps)) - f_jit(X.at[i, j].add(-eps))) / (2 * eps)
        np.testing.assert_allclose(g[i, j], float(fd), rtol=1e-5)


def test_smoothed_mean_is_differentiable_in_the_observations():
    """Fixed key: the smoothed mean is a smooth function of y (the ptpath sensitivities rely on it)."""
    model, y, mask = garnet_like(seed=19, n=6, missing=0.0)
    X0 = prior_ensemble(model, 16)

    def mean_P(yy):
        res = enks.ensemble_smoother(jax.random.key(4), enks.linear_obs, None, X0, yy, mask, model.R, model.Q,
                                     (model.H, model.b))
        return jnp.mean(res.smoothed[2, :, 0])

    g = np.asarray(jax.jit(jax.grad(mean_P))(y))
    f = jax.jit(mean_P)
    eps = 1e-6
    fd = (f(y.at[4, 1].add(eps)) - f(y.at[4, 1].add(-eps))) / (2 * eps)
    np.testing.assert_allclose(g[4, 1], float(fd), rtol=1e-5)
    assert np.all(np.isfinite(g))


def test_kernels_work_in_the_dtype_they_are_given():
    """No kernel silently needs float64: with x64 off, float32 in, float32 (finite) out."""
    with jax.enable_x64(False):
        model, y, mask = garnet_like(seed=20, n=6)
        assert model.P0.dtype == jnp.float32
        res = run(model, y, mask, 16)
        assert res.smoothed.dtype == jnp.float32 and bool(res.status.finite)
        exact = kf.rts_smoother(model, y, mask)
        assert exact.mean_s.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(exact.mean_s)))
        # the float32 ensemble mean is still close to the exact one (loose: float32 and 16 members)
        sd = np.sqrt(np.diagonal(np.asarray(exact.cov_s), axis1=1, axis2=2))
        assert np.abs((np.asarray(res.smoothed.mean(1)) - np.asarray(exact.mean_s)) / sd).max() < 3.0


def test_transition_scales_each_members_noise_by_its_own_state():
    """The state-dependent forecast is f(x_m) + sqrt(s(x_m)) w_m with the draws w of the plain
    forecast (same key), a zero-variance component following f exactly; a constant s = c with
    f = identity is the random walk with Q scaled by c, through the whole smoother."""
    rng = np.random.default_rng(0)
    Xa = jnp.asarray(rng.normal(size=(50, 3)) * [1.0, 0.5, 2.0])
    Q = jnp.diag(jnp.array([0.3, 2.0, 0.0]) ** 2)

    def transition(params, x, aux):
        return x.at[2].add(x[0] ** 2), jnp.exp(x[1])

    key = jax.random.key(5)
    out = np.asarray(enks.propagate(key, Xa, jnp.eye(3), Q, transition))
    w = np.asarray(enks.propagate(key, jnp.zeros_like(Xa), jnp.eye(3), Q))
    Xn = np.asarray(Xa)
    ref = Xn + np.sqrt(np.exp(Xn[:, 1]))[:, None] * w
    ref[:, 2] = Xn[:, 2] + Xn[:, 0] ** 2
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert np.all(w[:, 2] == 0)

    model, y, mask = garnet_like(n=15)
    X0 = prior_ensemble(model, SMALL)
    args = (jax.random.key(2), enks.linear_obs, None, X0, y, mask, model.R)
    c = 2.5
    scaled = enks.ensemble_smoother(*args, model.Q * c, (model.H, model.b), options=enks.SmootherOptions(size=SMALL))
    walk = enks.ensemble_smoother(*args, model.Q, (model.H, model.b), options=enks.SmootherOptions(size=SMALL),
                                  transition=lambda p, x, a: (x, jnp.asarray(c, x.dtype)))
    np.testing.assert_allclose(walk.smoothed, scaled.smoothed, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(walk.loglik, scaled.loglik, rtol=1e-12)


def test_es_mda_square_root_equals_one_assimilation_on_a_linear_model():
    """ES-MDA's identity (Emerick & Reynolds 2013): with sum 1/alpha_k = 1, K assimilations of a
    linear-Gaussian observation equal one. The deterministic square-root analysis makes it exact
    in the ensemble: same smoothed and filtered means and covariances as the single-assimilation
    EnKS (measured 4e-11 / 2e-9), same log-likelihood; the fixed lag over every step is the full lag."""
    model, y, mask = garnet_like(n=15)
    one = run(model, y, mask, SMALL, variant="sqrt")
    mda = run(model, y, mask, SMALL, variant="sqrt", iterations=4)
    for name in ("smoothed", "filtered"):
        A, B = np.asarray(getattr(one, name)), np.asarray(getattr(mda, name))
        np.testing.assert_allclose(B.mean(1), A.mean(1), rtol=0, atol=1e-8)
        cov = lambda X: np.einsum("nmi,nmj->nij", X - X.mean(1, keepdims=True), X - X.mean(1, keepdims=True))
        np.testing.assert_allclose(cov(B), cov(A), rtol=1e-7, atol=1e-7)
    assert abs(float(mda.loglik) - float(one.loglik)) < 1e-8
    lagged = run(model, y, mask, SMALL, variant="sqrt", iterations=4, lag=15)
    np.testing.assert_allclose(np.asarray(lagged.smoothed), np.asarray(mda.smoothed), rtol=0, atol=1e-10)
    assert enks.mda_alphas(4) == (4.0, 4.0, 4.0, 4.0) and sum(1 / a for a in enks.mda_alphas(3)) == pytest.approx(1)


def test_es_mda_converges_to_the_exact_rts_smoother():
    """Stochastic ES-MDA (K = 4, fresh perturbations of alpha R each time) at N = 2000 on the
    linear-Gaussian model: within 0.3 posterior sd of the exact RTS mean at every shell, sd within
    6 %, log-likelihood within 1 nat (measured on 15 shells: 0.08 sd, rms 0.04, sd 3.5 %, 0.16 nat)."""
    model, y, mask = garnet_like(n=15)
    exact = kf.rts_smoother(model, y, mask)
    sd_exact = np.sqrt(np.diagonal(exact.cov_s, axis1=1, axis2=2))
    res = run(model, y, mask, 2000, iterations=4)
    err = (np.asarray(res.smoothed.mean(1)) - exact.mean_s) / sd_exact
    assert np.abs(err).max() < 0.3 and np.sqrt(np.mean(err**2)) < 0.1, err
    assert np.abs(np.asarray(res.smoothed.std(1, ddof=1)) / sd_exact - 1).max() < 0.06
    assert abs(float(res.loglik) - float(exact.loglik)) < 1.0


def test_es_mda_moves_a_nonlinear_observation_further_than_one_update():
    """A strongly curved observation y = exp(x) of a scalar state, prior N(0, 1), y = exp(1.5) with
    a small sd: the exact posterior mode is near 1.5. One ensemble update of the linearised
    (cross-covariance) kind falls short; ES-MDA (K = 8) gets much closer (measured: 1.28 vs 1.50)."""
    def h(params, x, aux):
        return jnp.exp(x)

    X0 = jax.random.normal(jax.random.key(0), (400, 1))
    y, mask = jnp.full((1, 1), float(np.exp(1.5))), jnp.ones((1, 1), bool)
    R, Q = jnp.full((1, 1, 1), 0.05**2), jnp.eye(1)[None]
    means = [float(enks.ensemble_smoother(jax.random.key(1), h, None, X0, y, mask, R, Q,
                                          options=enks.SmootherOptions(variant="sqrt", iterations=k)).smoothed.mean())
             for k in (1, 8)]
    assert abs(means[1] - 1.5) < 0.5 * abs(means[0] - 1.5), means


def test_maximise_stays_in_its_bounds():
    """Projected Adam: an objective whose maximum (3, -3) lies outside the box [-1, 1]^2 ends on
    the box's corner; the start is clipped in; without bounds it reaches the maximum."""
    def objective(t):
        return -jnp.sum((t - jnp.array([3.0, -3.0])) ** 2)

    opts = enks.MaximiseOptions(steps=200, learning_rate=0.1)
    best, _ = enks.maximise(objective, jnp.array([5.0, 0.0]), opts, bounds=(-jnp.ones(2), jnp.ones(2)))
    np.testing.assert_allclose(np.asarray(best), [1.0, -1.0], atol=1e-9)
    free, _ = enks.maximise(objective, jnp.zeros(2), opts)
    np.testing.assert_allclose(np.asarray(free), [3.0, -3.0], atol=0.05)


def _exact_moment_draws(seed, N, k):
    """N draws (N, k) whose sample mean is exactly 0 and sample covariance (1/(N-1)) exactly I."""
    Z = np.random.default_rng(seed).normal(size=(N, k))
    Z -= Z.mean(0)
    lam, V = np.linalg.eigh(Z.T @ Z / (N - 1))
    return Z @ V @ np.diag(lam**-0.5) @ V.T


def _path_of_u(model, u):
    """The linear state path (n, 2) of whitened increments u (2n,): x_0 = m0 + L0 u_0,
    x_n = x_{n-1} + chol(Q_n) u_n."""
    n = model.Q.shape[0]
    w = u.reshape(n, 2)
    x0 = model.m0 + jnp.linalg.cholesky(model.P0) @ w[0]
    inc = jax.vmap(lambda Qn, wn: jnp.linalg.cholesky(Qn) @ wn)(model.Q[1:], w[1:])
    return jnp.concatenate([x0[None], x0[None] + jnp.cumsum(inc, axis=0)])


def test_iterative_smoother_is_the_exact_posterior_on_a_linear_gaussian_model():
    """Linear-Gaussian model, whole path as one parameter vector: with a prior ensemble and data
    perturbations of the exact moments (and no sample cross-covariance) the converged
    Levenberg-Marquardt RML ensemble has exactly the Kalman RTS smoother's mean and per-step
    covariance; with random draws it agrees within sampling error."""
    model, y, mask = garnet_like(seed=3, n=20)
    n, p = y.shape
    m, D, N = 2 * n, n * p, 300

    def g(params, u):
        X = _path_of_u(model, u)
        return (jnp.einsum("npd,nd->np", model.H, X) + model.b).reshape(-1)

    C = jax.scipy.linalg.block_diag(*model.R)
    ref = kf.rts_smoother(model, jnp.where(mask, y, 0.0), mask)
    Z = _exact_moment_draws(0, N, m + D)
    U0, E = jnp.asarray(Z[:, :m]), jnp.asarray(Z[:, m:]) @ jnp.linalg.cholesky(C).T
    E = jnp.where(mask.reshape(-1)[None, :], E, 0.0)
    res = enks.iterative_smoother(None, g, None, U0, y.reshape(-1), mask.reshape(-1), C, E=E)
    assert bool(res.status.finite) and bool(res.status.converged)
    X = jax.vmap(lambda u: _path_of_u(model, u))(res.U)  # (N, n, 2)
    sd_ref = jnp.sqrt(jnp.diagonal(ref.cov_s, axis1=1, axis2=2))
    assert float(jnp.max(jnp.abs(X.mean(0) - ref.mean_s) / sd_ref)) < 1e-6
    A = X - X.mean(0, keepdims=True)
    cov = jnp.einsum("jni,jnk->nik", A, A) / (N - 1)
    np.testing.assert_allclose(cov, ref.cov_s, rtol=1e-6, atol=1e-10)
    # started elsewhere (a cheaper smoother's members): same minimisers
    res2 = enks.iterative_smoother(None, g, None, U0, y.reshape(-1), mask.reshape(-1), C, U_start=U0 * 0.3 + 0.1,
                                   E=E)
    np.testing.assert_allclose(res2.U, res.U, atol=1e-6)


@pytest.mark.slow
def test_iterative_smoother_with_random_draws_is_within_sampling_error():
    model, y, mask = garnet_like(seed=3, n=20)
    n, p = y.shape
    m = 2 * n

    def g(params, u):
        X = _path_of_u(model, u)
        return (jnp.einsum("npd,nd->np", model.H, X) + model.b).reshape(-1)

    C = jax.scipy.linalg.block_diag(*model.R)
    ref = kf.rts_smoother(model, jnp.where(mask, y, 0.0), mask)
    res3 = enks.iterative_smoother(jax.random.key(5), g, None, jax.random.normal(jax.random.key(6), (2000, m)),
                                   y.reshape(-1), mask.reshape(-1), C)
    X3 = jax.vmap(lambda u: _path_of_u(model, u))(res3.U)
    sd = jnp.sqrt(jnp.diagonal(ref.cov_s, axis1=1, axis2=2))
    assert float(jnp.max(jnp.abs(X3.mean(0) - ref.mean_s) / sd)) < 0.15
    assert float(jnp.max(jnp.abs(X3.std(0) / sd - 1.0))) < 0.1


def test_iterative_smoother_beats_one_update_on_a_nonlinear_observation():
    """y = exp(u) + e with a broad prior: one ensemble-smoother update (the first iteration at
    damping 0) stays far from the posterior mode; the iterations reach it (the MAP found by
    a dense grid), and the ensemble mean is near the grid posterior mean."""
    def g(params, u):
        return jnp.exp(u)

    y, sd = jnp.array([4.0]), 0.2
    C = jnp.eye(1) * sd**2
    U0 = jax.random.normal(jax.random.key(0), (4000, 1))
    res = enks.iterative_smoother(jax.random.key(1), g, None, U0, y, jnp.array([True]), C)
    grid = jnp.linspace(-3, 4, 200001)
    logp = -0.5 * grid**2 - 0.5 * ((y[0] - jnp.exp(grid)) / sd) ** 2
    w = jnp.exp(logp - logp.max())
    post_mean = float(jnp.sum(w * grid) / jnp.sum(w))
    post_sd = float(jnp.sqrt(jnp.sum(w * (grid - post_mean) ** 2) / jnp.sum(w)))
    one = enks.iterative_smoother(jax.random.key(1), g, None, U0, y, jnp.array([True]), C,
                                  options=enks.IesOptions(ies_iterations=1, ies_damping=0.0))
    assert abs(float(one.U.mean()) - post_mean) > 3 * post_sd
    assert abs(float(res.U.mean()) - post_mean) < 0.1 * post_sd
    assert abs(float(res.U.std()) / post_sd - 1.0) < 0.1


def test_gaussian_mh_corrects_a_skewed_posterior_to_the_grid_answer():
    """y = exp(u) + e with a large error: a skewed posterior whose mean the iterative smoother
    (randomised maximum likelihood) misses; the Metropolis-Hastings correction reaches the grid
    posterior mean and sd within Monte Carlo error."""
    def g(params, u):
        return jnp.exp(u)

    y, sd = jnp.array([3.0]), 1.5
    grid = jnp.linspace(-5, 5, 200001)
    logp_grid = -0.5 * grid**2 - 0.5 * ((y[0] - jnp.exp(grid)) / sd) ** 2
    w = jnp.exp(logp_grid - logp_grid.max())
    mean = float(jnp.sum(w * grid) / jnp.sum(w))
    post_sd = float(jnp.sqrt(jnp.sum(w * (grid - mean) ** 2) / jnp.sum(w)))
    U0 = jax.random.normal(jax.random.key(0), (4000, 1))
    res = enks.iterative_smoother(jax.random.key(1), g, None, U0, y, jnp.array([True]), jnp.eye(1) * sd**2)
    assert abs(float(res.U.mean()) - mean) > 0.1 * post_sd  # RML: biased on a skewed posterior

    def logp(params, u):
        return -0.5 * jnp.sum(u**2) - 0.5 * jnp.sum(((y - jnp.exp(u)) / sd) ** 2)

    mh = enks.gaussian_mh(jax.random.key(2), logp, None, res.U, steps=40)
    assert float(mh.accept.mean()) > 0.3
    assert abs(float(mh.U.mean()) - mean) < 0.05 * post_sd
    assert abs(float(mh.U.std()) / post_sd - 1.0) < 0.05
    np.testing.assert_allclose(mh.logp, jax.vmap(lambda u: logp(None, u))(mh.U), rtol=1e-12)

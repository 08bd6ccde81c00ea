"""Linear mixing kernel: optimum (KKT), simplex, recovery, independence of blocks and order."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import jax
import jax.numpy as jnp

from jaxpetro.kernels._status import StatusCode
from jaxpetro.kernels.unmixing import UnmixOptions, best_single_phase, init, poisson_deviance, step, unmix

RATES = np.array([
    [2000.0, 5.0, 3.0, 1.0],
    [1200.0, 600.0, 2.0, 80.0],
    [700.0, 400.0, 900.0, 5.0],
    [10.0, 1.0, 2.0, 1500.0],
])  # fmt: skip


def _nll(f, lam, x):
    mu = f @ lam
    return np.sum(mu - x * np.log(mu))


def test_fractions_are_the_poisson_mle_on_the_simplex():
    """Against an independent constrained optimiser (SLSQP) on the same objective."""
    rng = np.random.default_rng(0)
    f_true = rng.dirichlet(np.ones(4) * 0.7, 60)
    x = rng.poisson(f_true @ RATES).astype(np.float64)
    res = unmix(x, RATES, options=UnmixOptions(n_active=4, max_iter=400))
    f = np.asarray(res.fractions)
    for i in range(20):
        ref = minimize(_nll, np.full(4, 0.25), args=(RATES, x[i]), method="SLSQP",
                       bounds=[(1e-12, 1)] * 4, constraints={"type": "eq", "fun": lambda v: v.sum() - 1},
                       options={"ftol": 1e-14, "maxiter": 500})
        assert _nll(f[i], RATES, x[i]) <= ref.fun + 1e-6 * abs(ref.fun)
    assert np.quantile(np.asarray(res.gap), 0.9) < 1e-6


def test_noise_free_mixtures_are_recovered():
    rng = np.random.default_rng(1)
    f_true = rng.dirichlet(np.ones(3), 200)
    idx = np.stack([rng.choice(4, 3, replace=False) for _ in range(200)])
    full = np.zeros((200, 4))
    np.put_along_axis(full, idx, f_true, axis=1)
    x = (full @ RATES) * 1000.0  # huge exposure: counts ~ expectation
    f = np.asarray(unmix(x, RATES, np.full(200, 1000.0), options=UnmixOptions(n_active=4, max_iter=600)).fractions)
    np.testing.assert_allclose(f, full, atol=5e-3)  # mirror descent nears a face of the simplex slowly


def test_pure_pixels_get_their_phase_and_gain_is_zero_or_small():
    x = np.array([RATES[0] * 1.0, RATES[3] * 1.0])
    res = unmix(x, RATES, options=UnmixOptions(n_active=3, max_iter=100))
    f = np.asarray(res.fractions)
    assert f[0, 0] > 0.99 and f[1, 3] > 0.99


@given(st.integers(1, 50), st.integers(1, 4), st.integers(0, 2**31 - 1))
@settings(max_examples=6, deadline=None)  # each example compiles twice
def test_simplex_shapes_and_block_independence(n, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.dirichlet(np.ones(4), n) @ RATES).astype(np.float32)
    a = unmix(x, RATES, options=UnmixOptions(n_active=m, max_iter=20, chunk_size=7))
    b = unmix(x, RATES, options=UnmixOptions(n_active=m, max_iter=20, chunk_size=64))
    f = np.asarray(a.fractions)
    assert f.shape == (n, 4)
    assert np.all(f >= 0) and np.allclose(f.sum(1), 1.0, atol=1e-9)
    assert np.all((f > 0).sum(1) <= m)
    # Blocks of other shapes round differently (XLA's vector order), which can flip an
    # accept/reject of a step: equal to well below any meaningful fraction.
    np.testing.assert_allclose(f, np.asarray(b.fractions), atol=1e-6)
    assert np.all(np.asarray(a.gain) >= 0)


def test_phase_order_does_not_matter():
    rng = np.random.default_rng(3)
    x = rng.poisson(rng.dirichlet(np.ones(4), 100) @ RATES).astype(np.float64)
    perm = np.array([2, 0, 3, 1])
    a = np.asarray(unmix(x, RATES, options=UnmixOptions(n_active=4, max_iter=300)).fractions)
    b = np.asarray(unmix(x, RATES[perm], options=UnmixOptions(n_active=4, max_iter=300)).fractions)
    np.testing.assert_allclose(a[:, perm], b, atol=1e-5)


def test_zero_count_pixels_stay_finite():
    res = unmix(np.zeros((3, 4)), RATES, options=UnmixOptions(max_iter=10))
    assert np.all(np.isfinite(np.asarray(res.fractions))) and np.allclose(np.asarray(res.fractions).sum(1), 1)


def test_init_and_step_are_the_loop_of_unmix_and_status_grades_the_gap():
    rng = np.random.default_rng(4)
    x = rng.poisson(rng.dirichlet(np.ones(4), 30) @ RATES).astype(np.float64)
    opts = UnmixOptions(n_active=3, max_iter=25)
    state = init(x, RATES, None, opts)
    for _ in range(opts.max_iter):
        state, info = step(state)
        assert np.all(np.asarray(info.nll) == np.asarray(state.nll))
    res = unmix(x, RATES, options=opts)
    np.testing.assert_allclose(np.asarray(state.nll), np.asarray(res.nll), rtol=1e-12)
    assert int(state.iteration) == 25 and np.all(np.asarray(res.status.iterations) == 25)
    conv = np.asarray(res.status.converged)
    np.testing.assert_array_equal(conv, np.asarray(res.gap) <= opts.gap_tol)
    np.testing.assert_array_equal(np.asarray(res.status.code), np.where(conv, StatusCode.SUCCESS, StatusCode.MAX_ITERATIONS))


def test_float_options_do_not_recompile():
    from jaxpetro.kernels import unmixing

    x = np.ones((5, 4))
    unmix(x, RATES, options=UnmixOptions(max_iter=3))
    before = unmixing._unmix._cache_size()
    unmix(x, RATES, options=UnmixOptions(max_iter=3, gap_tol=1e-3, pure_p=0.1))
    assert unmixing._unmix._cache_size() == before
    unmix(x, RATES, options=UnmixOptions(max_iter=4))  # a static option: a new program
    assert unmixing._unmix._cache_size() == before + 1


def test_best_single_phase_and_deviance():
    rng = np.random.default_rng(5)
    k = rng.integers(0, 4, 50)
    x = rng.poisson(RATES[k]).astype(np.float64)
    fit = best_single_phase(x, RATES, options=UnmixOptions(chunk_size=16))
    np.testing.assert_array_equal(np.asarray(fit.index), k)
    mu = np.maximum(RATES, 1e-9 * RATES.max(0))[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = 2 * np.sum(np.where(x > 0, x * np.log(x / mu), 0.0) - (x - mu), axis=1)
    np.testing.assert_allclose(np.asarray(fit.deviance), ref, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(poisson_deviance(x, mu)), ref, rtol=1e-10)


def test_needs_float64():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="float64"):
            unmix(jnp.ones((2, 4), jnp.float32), jnp.asarray(RATES, jnp.float32))


def test_mixing_model_rates_screening_and_fractions():
    """models.mixing: membership-weighted rates refined on pure pixels, pure pixels kept
    one-hot, mixed ones unmixed (the qmap mixing stage)."""
    from jaxpetro.models.mixing import fit_mixing, pure_phase_rates

    rng = np.random.default_rng(6)
    n = 400
    k = rng.integers(0, 4, n)
    f = np.eye(4)[k]
    mixed = np.arange(n) < 20
    f[mixed] = rng.dirichlet(np.ones(4), mixed.sum())
    x = rng.poisson(f @ RATES).astype(np.float32)
    member = np.eye(4, dtype=np.float32)[np.argmax(f, 1)]  # EM-like: boundary pixels near one-hot
    opts = UnmixOptions(chunk_size=64)
    rates = pure_phase_rates(x, member, opts)
    # Phases with pixels that pass as pure get rates from those only, closer to the truth than
    # the membership-weighted means over all pixels (which the mixed pixels bias); the others
    # keep those means.
    first = (member.T.astype(np.float64) @ x) / member.sum(0)[:, None]
    err, err_first = np.abs(rates - RATES).sum(1), np.abs(first - RATES).sum(1)
    assert np.all(err <= err_first + 1e-9) and np.sum(err < 0.5 * err_first) >= 2
    res = fit_mixing(x, member, opts)
    assert res.fractions.shape == (n, 4) and res.fractions.dtype == np.float32
    np.testing.assert_allclose(res.fractions.sum(1), 1.0, atol=1e-6)
    assert res.unmixed_share >= mixed.mean() and res.gap_p99 >= 0
    assert np.mean(np.argmax(res.fractions[~mixed], 1) == k[~mixed]) > 0.99


def test_zoned_phase_pixels_stay_pure_mixed_boundary_pixels_are_unmixed():
    """Issue 10 item 4. Left half: a homogeneous phase; right half: a phase zoned by +-25 %
    across its grain (garnet-like). The purity screen's critical deviance is scaled per phase
    by its interior pixels' median deviance: the zoned phase's pure pixels keep fraction 1
    (a plain chi-square screen unmixes most of them), and the column of 50/50 boundary
    pixels is still unmixed to about 50/50."""
    from jaxpetro.models.mixing import fit_mixing, interior_mask, phase_scales

    rng = np.random.default_rng(3)
    rows, cols = 40, 40
    lam = np.array([[2000.0, 50.0, 300.0], [600.0, 1500.0, 400.0]])
    f = np.zeros((rows, cols, 2))
    f[:, :20, 0] = 1.0
    f[:, 20:, 1] = 1.0
    f[:, 20] = [0.5, 0.5]  # the boundary column
    zoning = 1.0 + 0.25 * np.cos(np.linspace(0, np.pi, 20))[None, :, None] * np.array([1.0, -1.0, 0.5])
    rate_b = np.zeros((rows, cols, 3))
    rate_b[:, 20:] = lam[1] * zoning  # zoned across the grain (columns 20-39)
    mu = f[..., :1] * lam[0] + f[..., 1:] * rate_b
    x = rng.poisson(mu).reshape(-1, 3).astype(np.float32)
    labels = np.argmax(f, -1)
    labels[:, 20] = 1
    member = np.eye(2, dtype=np.float32)[labels.reshape(-1)]  # EM-like: the boundary looks pure
    interior = interior_mask(labels).reshape(-1)
    opts = UnmixOptions(chunk_size=256)
    res = fit_mixing(x, member, opts, interior)
    frac = res.fractions.reshape(rows, cols, 2)
    pure_b = frac[:, 22:, 1]  # pure zoned pixels away from the boundary
    assert np.mean(pure_b < 0.99) < 0.01
    # ~0.6, not 0.5: the zoned phase's rate at its edge (column 20) is 25 % off its mean rate,
    # which the linear mixing model (one rate per phase) cannot know.
    np.testing.assert_allclose(frac[:, 20, 0].mean(), 0.5, atol=0.15)
    assert np.mean(frac[:, 20, 0] > 0.2) > 0.9  # the boundary column is unmixed
    assert np.mean(frac[:, :19, 0] == 1.0) > 0.99  # homogeneous phase: false alarms at pure_p only
    # The scale: ~1 for the homogeneous phase, large for the zoned one; without it (one
    # scale for all, the old screen) most zoned pixels fail.
    from jaxpetro.kernels.unmixing import best_single_phase
    single = best_single_phase(x, res.rates, options=opts)
    scale = phase_scales(np.asarray(single.deviance), np.asarray(single.index), 2, 3, interior)
    assert scale[0] < 1.5 and scale[1] > 5
    from scipy.stats import chi2
    plain = np.asarray(single.deviance).reshape(rows, cols)[:, 22:] > chi2.ppf(1 - opts.pure_p, 3)
    assert plain.mean() > 0.3

"""Tests of the soft-clustering EM kernel (jaxpetro.kernels.mixture) against ground truth."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpetro.kernels import mixture as mx
from jaxpetro.kernels._status import StatusCode
from jaxpetro.kernels.kmeans import kmeanspp_centres

FAMILIES = ["poisson", "diag", "full"]


def poisson_data(seed=0, n=6000, k=3, d=5, low=2.0, high=60.0, scale=1.0):
    """Well-separated Poisson mixture with known labels, rates and exposure."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(low, high, (k, d)) * scale
    z = rng.integers(0, k, n)
    e = rng.uniform(0.8, 1.2, n)
    x = rng.poisson(rates[z] * e[:, None]).astype(np.float32)
    return x, e, z, rates


def features(family, x, e):
    """Data as each family clusters it: counts (Poisson) or sqrt rates (Gaussian)."""
    if family == "poisson":
        return jnp.asarray(x), jnp.asarray(e)
    return jnp.asarray(np.sqrt(x / e[:, None]).astype(np.float32)), None


def true_params(family, x, e, z, rates, k):
    """Initial parameters from the true labels (one M-step on the true partition)."""
    feat, ex = features(family, x, e)
    anchors = jnp.asarray(z, jnp.int32)
    centres = rates if family == "poisson" else np.stack([np.asarray(feat)[z == j].mean(0) for j in range(k)])
    return mx.init_from_centres(feat, jnp.asarray(centres), ex, anchors, options=mx.MixtureOptions(family=family))


def accuracy(memberships, z):
    return float(np.mean(np.asarray(memberships).argmax(1) == z))


@pytest.mark.parametrize("family", FAMILIES)
def test_recovers_labels_and_loglik_monotone(family):
    x, e, z, rates = poisson_data()
    feat, ex = features(family, x, e)
    p0 = true_params(family, x, e, z, rates, 3)
    res = mx.fit(feat, p0, ex, options=mx.MixtureOptions(family=family, max_iter=200, tol=1e-9))
    assert bool(res.status.converged) and bool(res.status.finite)
    assert accuracy(res.memberships, z) > 0.99
    hist = np.asarray(res.history)[: int(res.status.iterations)]
    assert np.all(np.isfinite(hist))
    # EM never decreases the log-likelihood (up to float64 rounding of the sums).
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[:-1]))
    assert np.isnan(np.asarray(res.history)[int(res.status.iterations):]).all()
    m = np.asarray(res.memberships)
    assert np.all(m >= 0) and np.allclose(m.sum(1), 1.0, atol=1e-5)
    m64 = m.astype(np.float64)
    direct = -np.sum(np.where(m64 > 0, m64 * np.log(np.where(m64 > 0, m64, 1.0)), 0.0))
    assert float(res.entropy) == pytest.approx(direct, rel=1e-3, abs=1e-3)  # memberships are float32


def test_poisson_rates_within_counting_error():
    """Fitted rates agree with the truth to within what Poisson noise allows."""
    x, e, z, rates = poisson_data(n=20000, k=4, d=6)
    p0 = mx.init_from_centres(jnp.asarray(x), jnp.asarray(rates * 1.3), jnp.asarray(e), options=mx.MixtureOptions(family="poisson"))
    res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(family="poisson", max_iter=300, tol=1e-10))
    # Standard error of a rate estimated from n_k pixels of exposure ~1: sqrt(rate / sum e).
    expo = np.array([e[z == j].sum() for j in range(4)])
    se = np.sqrt(rates / expo[:, None])
    z_scores = (np.asarray(res.params.loc) - rates) / se
    assert np.max(np.abs(z_scores)) < 4.5  # 24 rates: |z| < 4.5 fails with p ~ 1e-4
    assert np.allclose(np.exp(res.params.log_weights), np.bincount(z) / len(z), atol=0.01)


@pytest.mark.parametrize("family", ["diag", "full"])
def test_gaussian_matches_scikit_learn(family):
    """Same data, same initial parameters, fixed iterations: same answer as sklearn."""
    sk = pytest.importorskip("sklearn.mixture")
    x, e, z, rates = poisson_data(n=4000, k=3, d=4, low=5.0, high=30.0)
    feat, _ = features(family, x, e)
    p0 = true_params(family, x, e, z, rates, 3)
    n_iter = 15
    res = mx.fit(feat, p0, options=mx.MixtureOptions(family=family, max_iter=n_iter, tol=0.0, reg_covar=1e-6))
    assert int(res.status.iterations) == n_iter
    cov0 = np.asarray(p0.scale) if family == "diag" else np.einsum("kij,klj->kil", p0.scale, p0.scale)
    prec0 = 1.0 / cov0 if family == "diag" else np.linalg.inv(cov0)  # test oracle only
    gm = sk.GaussianMixture(
        3, covariance_type=family, max_iter=n_iter, tol=0.0, reg_covar=1e-6,
        weights_init=np.exp(np.asarray(p0.log_weights)), means_init=np.asarray(p0.loc), precisions_init=prec0,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(np.asarray(feat, np.float64))
    np.testing.assert_allclose(np.asarray(res.params.loc), gm.means_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(np.asarray(res.params.log_weights)), gm.weights_, rtol=1e-5, atol=1e-7)
    cov = np.asarray(res.params.scale) if family == "diag" else np.einsum("kij,klj->kil", res.params.scale, res.params.scale)
    np.testing.assert_allclose(cov, gm.covariances_, rtol=1e-4, atol=1e-7)
    # sklearn's score is the mean log-likelihood per sample at the final parameters.
    assert float(res.loglik) == pytest.approx(gm.score(np.asarray(feat, np.float64)), rel=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_anchors_are_respected(family):
    x, e, z, rates = poisson_data(seed=1)
    feat, ex = features(family, x, e)
    rng = np.random.default_rng(3)
    idx = rng.choice(len(z), 40, replace=False)
    anchors = np.full(len(z), -1, np.int32)
    # Deliberately mislabel a few anchors: EM must keep the given labels regardless.
    anchors[idx] = (z[idx] + (np.arange(40) % 7 == 0)) % 3
    p0 = true_params(family, x, e, z, rates, 3)
    res = mx.fit(feat, p0, ex, jnp.asarray(anchors), options=mx.MixtureOptions(family=family, max_iter=100, tol=1e-9))
    m = np.asarray(res.memberships)
    np.testing.assert_array_equal(m[idx], np.eye(3, dtype=np.float32)[anchors[idx]])
    hist = np.asarray(res.history)[: int(res.status.iterations)]
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[:-1]))


@pytest.mark.parametrize("family", FAMILIES)
def test_invariant_to_permuting_components_and_pixels(family):
    x, e, z, rates = poisson_data(seed=2, n=3000)
    feat, ex = features(family, x, e)
    p0 = true_params(family, x, e, z, rates, 3)
    res = mx.fit(feat, p0, ex, options=mx.MixtureOptions(family=family, max_iter=30, tol=0.0))

    perm_k = np.array([2, 0, 1])
    p0k = jax.tree.map(lambda a: a[perm_k], p0)
    res_k = mx.fit(feat, p0k, ex, options=mx.MixtureOptions(family=family, max_iter=30, tol=0.0))
    np.testing.assert_allclose(np.asarray(res_k.memberships), np.asarray(res.memberships)[:, perm_k], atol=1e-5)
    np.testing.assert_allclose(np.asarray(res_k.params.loc), np.asarray(res.params.loc)[perm_k], rtol=1e-6)

    perm_i = np.random.default_rng(0).permutation(len(z))
    res_i = mx.fit(feat[perm_i], p0, None if ex is None else ex[perm_i], options=mx.MixtureOptions(family=family, max_iter=30, tol=0.0))
    np.testing.assert_allclose(np.asarray(res_i.memberships), np.asarray(res.memberships)[perm_i], atol=1e-5)
    assert float(res_i.loglik) == pytest.approx(float(res.loglik), rel=1e-10)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_equals_unchunked(family):
    x, e, z, rates = poisson_data(seed=4, n=5003)  # not a multiple of the chunk: padding path
    feat, ex = features(family, x, e)
    p0 = true_params(family, x, e, z, rates, 3)
    whole = mx.fit(feat, p0, ex, options=mx.MixtureOptions(family=family, max_iter=25, tol=0.0, chunk_size=10**6))
    parts = mx.fit(feat, p0, ex, options=mx.MixtureOptions(family=family, max_iter=25, tol=0.0, chunk_size=256))
    np.testing.assert_allclose(np.asarray(parts.memberships), np.asarray(whole.memberships), atol=1e-6)
    np.testing.assert_allclose(np.asarray(parts.params.loc), np.asarray(whole.params.loc), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(parts.history), np.asarray(whole.history), rtol=1e-12)


@pytest.mark.parametrize("family", ["poisson", "full"])
def test_vmap_over_maps_equals_loop(family):
    maps = [poisson_data(seed=s, n=1500) for s in range(3)]
    feats = [features(family, x, e) for x, e, _, _ in maps]
    p0s = [true_params(family, *m, 3) for m in maps]
    fit = lambda f, p, ex: mx.fit(f, p, ex, options=mx.MixtureOptions(family=family, max_iter=40, tol=1e-8))  # noqa: E731
    looped = [fit(f, p, ex) for (f, ex), p in zip(feats, p0s)]
    stack = lambda *a: jnp.stack(a)  # noqa: E731
    xb = jnp.stack([f for f, _ in feats])
    eb = None if family != "poisson" else jnp.stack([ex for _, ex in feats])
    pb = jax.tree.map(stack, *p0s)
    batched = jax.vmap(fit)(xb, pb, eb)
    for i, r in enumerate(looped):
        np.testing.assert_allclose(np.asarray(batched.memberships[i]), np.asarray(r.memberships), atol=1e-6)
        assert int(batched.status.iterations[i]) == int(r.status.iterations)
        assert bool(batched.status.converged[i]) == bool(r.status.converged)
        np.testing.assert_allclose(float(batched.loglik[i]), float(r.loglik), rtol=1e-12)


@pytest.mark.parametrize("compute_dtype", ["float64", "float32"])
def test_float32_high_count_maps_are_stable(compute_dtype):
    """1e4-count float32 maps with two close phases: memberships and rates stay accurate."""
    rng = np.random.default_rng(5)
    n = 8000
    rates = np.array([[1.0e4, 2.0e3, 5.0e3], [1.0e4 * 1.03, 2.0e3, 5.0e3 * 0.97]])  # 3 % apart
    z = rng.integers(0, 2, n)
    e = np.ones(n)
    x = rng.poisson(rates[z]).astype(np.float32)
    p0 = mx.init_from_centres(jnp.asarray(x), jnp.asarray(rates), jnp.asarray(e), options=mx.MixtureOptions(family="poisson"))
    # float32 log-densities resolve log-likelihood changes down to ~1e-7 nats/pixel.
    tol = 1e-10 if compute_dtype == "float64" else 1e-6
    res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(family="poisson", max_iter=200, tol=tol, compute_dtype=compute_dtype))
    ref = mx.fit(jnp.asarray(x, jnp.float64), p0, jnp.asarray(e), options=mx.MixtureOptions(family="poisson", max_iter=200, tol=1e-10))
    assert bool(res.status.finite) and bool(res.status.converged)
    # Two Poisson channels 3 % apart at 1e4 counts are ~3 sd apart: ~93 % separable.
    assert accuracy(res.memberships, z) > 0.9
    np.testing.assert_allclose(np.asarray(res.params.loc), np.asarray(ref.params.loc), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(res.memberships), np.asarray(ref.memberships), atol=2e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_degenerate_cases_stay_finite(family):
    # A constant channel, an empty component (a centre far from every pixel) and one pixel.
    x, e, z, rates = poisson_data(seed=6, n=800, k=2, d=3)
    x[:, 1] = 7.0
    feat, ex = features(family, x, e)
    centres = np.asarray(feat if family != "poisson" else x / e[:, None])[[0, 1, 2]].astype(np.float64)
    centres[2] = centres[2] * 50 + 1000  # no pixel is closest to it: an empty component
    p0 = mx.init_from_centres(feat, jnp.asarray(centres), ex, options=mx.MixtureOptions(family=family))
    res = mx.fit(feat, p0, ex, options=mx.MixtureOptions(family=family, max_iter=50, tol=1e-8))
    assert bool(res.status.finite)
    assert np.all(np.isfinite(np.asarray(res.memberships)))
    assert np.all(np.isfinite(np.asarray(res.params.loc)))
    one = mx.fit(feat[:1], p0, None if ex is None else ex[:1], options=mx.MixtureOptions(family=family, max_iter=5))
    assert bool(one.status.finite) and np.allclose(np.asarray(one.memberships).sum(), 1.0)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # each example compiles
@given(
    n=st.integers(1, 300),
    d=st.integers(1, 4),
    k=st.integers(1, 4),
    family=st.sampled_from(FAMILIES),
    seed=st.integers(0, 2**16),
    zero_frac=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_property_simplex_and_finite(n, d, k, family, seed, zero_frac):
    """Any shape, any counts (all-zero maps included): memberships on the simplex, no NaN."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.uniform(0, 20, (n, d))).astype(np.float32)
    x[rng.random(n) < zero_frac] = 0.0
    e = rng.uniform(0.5, 2.0, n)
    feat, ex = features(family, x, e)
    key = jax.random.key(seed)
    base = x / e[:, None] if family == "poisson" else np.asarray(feat)
    centres = kmeanspp_centres(key, jnp.asarray(base), k, n_sample=200, n_lloyd=3)
    p0 = mx.init_from_centres(feat, centres, ex, options=mx.MixtureOptions(family=family, chunk_size=64))
    res = mx.fit(feat, p0, ex, options=mx.MixtureOptions(family=family, max_iter=20, tol=1e-6, chunk_size=64))
    m = np.asarray(res.memberships)
    assert m.shape == (n, k)
    assert np.all(np.isfinite(m)) and np.all(m >= 0)
    np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-5)
    assert bool(res.status.finite)
    np.testing.assert_allclose(np.exp(np.asarray(res.params.log_weights)).sum(), 1.0, rtol=1e-9)


def test_mask_excludes_pixels():
    x, e, z, rates = poisson_data(seed=7, n=2000)
    mask = np.ones(2000, bool)
    mask[::3] = False
    p0 = true_params("poisson", x, e, z, rates, 3)
    res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), mask=jnp.asarray(mask), options=mx.MixtureOptions(family="poisson", max_iter=30, tol=0.0))
    sub = mx.fit(jnp.asarray(x[mask]), p0, jnp.asarray(e[mask]), options=mx.MixtureOptions(family="poisson", max_iter=30, tol=0.0))
    assert np.all(np.asarray(res.memberships)[~mask] == 0)
    np.testing.assert_allclose(np.asarray(res.memberships)[mask], np.asarray(sub.memberships), atol=1e-6)
    assert float(res.n_pixels) == mask.sum()


def test_max_iter_is_reported_as_not_converged():
    x, e, z, rates = poisson_data(seed=8)
    p0 = mx.init_from_centres(jnp.asarray(x), jnp.asarray(rates[::-1] * 1.5), jnp.asarray(e), options=mx.MixtureOptions(family="poisson"))
    res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(family="poisson", max_iter=2, tol=1e-12))
    assert int(res.status.iterations) == 2 and not bool(res.status.converged)


def test_bic_prefers_true_number_of_components():
    x, e, z, rates = poisson_data(seed=9, n=4000, k=3, d=4)
    scores = {}
    for k in (2, 3, 4, 5):
        c = kmeanspp_centres(jax.random.key(k), jnp.asarray(x / e[:, None]), k)
        p0 = mx.init_from_centres(jnp.asarray(x), c, jnp.asarray(e), options=mx.MixtureOptions(family="poisson"))
        res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(family="poisson", max_iter=300, tol=1e-9))
        scores[k] = (float(mx.bic(res, "poisson")), float(mx.icl(res, "poisson")))
    assert min(scores, key=lambda k: scores[k][0]) == 3
    assert min(scores, key=lambda k: scores[k][1]) == 3
    assert mx.n_parameters("full", 3, 4) == 3 * (4 + 10) + 2


def test_poisson_loglik_is_exact():
    """The reported log-likelihood equals a direct evaluation with scipy-free NumPy."""
    x, e, z, rates = poisson_data(seed=10, n=500, k=2, d=3)
    p0 = true_params("poisson", x, e, z, rates, 2)
    res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(family="poisson", max_iter=3, tol=0.0))
    lam = np.asarray(res.params.loc)
    w = np.exp(np.asarray(res.params.log_weights))
    mu = e[:, None, None] * lam[None]  # (n, k, d)
    logfact = np.array([[math.lgamma(v + 1) for v in row] for row in x])
    comp = np.sum(x[:, None, :] * np.log(mu) - mu, axis=2) - logfact.sum(1)[:, None] + np.log(w)
    direct = np.mean(np.log(np.exp(comp - comp.max(1, keepdims=True)).sum(1)) + comp.max(1))
    assert float(res.loglik) == pytest.approx(direct, rel=1e-10)


def test_auto_chunk_size_keeps_blocks_near_budget():
    for family, d in [("poisson", 10), ("diag", 10), ("full", 10), ("full", 15), ("poisson", 1)]:
        b = mx.auto_chunk_size(family, d)
        width = {"poisson": d + 1, "diag": 2 * d, "full": d * (d + 1) // 2 + d}[family]
        assert b & (b - 1) == 0 and 1024 <= b <= 16384  # a power of two in range
        assert b * width * 8 <= 1.5 * (8 << 20) or b == 1024  # nearest power of two to the budget
    assert mx.auto_chunk_size("full", 10) == 16384  # the measured sweet spot for D = 10
    assert mx.auto_chunk_size("full", 15) == 8192


def test_poisson_rates_is_the_weighted_poisson_m_step():
    rng = np.random.default_rng(11)
    x = rng.poisson(5.0, (200, 4)).astype(np.float32)
    w = rng.dirichlet(np.ones(3), 200).astype(np.float32)
    e = rng.uniform(0.5, 2.0, 200)
    w[:, 2] = 0.0  # an empty component: rate 0, not NaN
    got = np.asarray(mx.poisson_rates(x, w, e))
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    want = (w64.T @ x64) / np.maximum(w64.T @ e, 1e-12)[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    assert got.dtype == np.float64 and np.all(got[2] == 0.0)
    # summed over blocks of 64 pixels (3 whole blocks + a remainder of 8): the same sums
    np.testing.assert_allclose(np.asarray(mx.poisson_rates(x, w, e, block=64)), want, rtol=1e-13)
    unit = np.asarray(mx.poisson_rates(x, w))  # no exposure: counts per pixel
    np.testing.assert_allclose(unit, (w64.T @ x64) / np.maximum(w64.sum(0), 1e-12)[:, None], rtol=1e-13)


def test_float_options_do_not_recompile():
    """tol and reg_covar are traced leaves of MixtureOptions: new values reuse the program."""
    x, e, z, rates = poisson_data(seed=12, n=600)
    feat, _ = features("diag", x, e)
    p0 = true_params("diag", x, e, z, rates, 3)
    opts = mx.MixtureOptions(family="diag", max_iter=7)
    mx.fit(feat, p0, options=opts)
    before = mx.fit._cache_size()
    a = mx.fit(feat, p0, options=opts.replace(reg_covar=1e-3, tol=1e-4))
    b = mx.fit(feat, p0, options=opts.replace(reg_covar=1e-2))
    assert mx.fit._cache_size() == before
    assert not np.allclose(np.asarray(a.params.scale), np.asarray(b.params.scale))  # the value is used
    mx.fit(feat, p0, options=opts.replace(max_iter=8))  # a static field: a new program
    assert mx.fit._cache_size() == before + 1


@pytest.mark.parametrize("family", FAMILIES)
def test_init_and_step_are_the_fit_loop(family):
    """A user's own loop over prepare/init/step reproduces fit iteration for iteration."""
    x, e, z, rates = poisson_data(seed=13, n=900)
    feat, ex = features(family, x, e)
    p0 = true_params(family, x, e, z, rates, 3)
    opts = mx.MixtureOptions(family=family, max_iter=6, tol=0.0, chunk_size=256)
    ref = mx.fit(feat, p0, ex, options=opts)
    problem = mx.prepare(feat, ex, options=opts)
    state = mx.init(p0)
    step = jax.jit(mx.step)
    lls = []
    for _ in range(6):
        state, info = step(state, problem, opts)
        lls.append(float(info.loglik))
    assert int(state.iteration) == int(ref.status.iterations) == 6
    np.testing.assert_allclose(lls, np.asarray(ref.history), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(state.params.loc), np.asarray(ref.params.loc), rtol=1e-12)
    assert float(info.stats.count) == len(z)


def test_status_codes():
    x, e, z, rates = poisson_data(seed=14, n=500)
    p0 = true_params("poisson", x, e, z, rates, 3)
    ok = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(max_iter=100, tol=1e-6))
    short = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(max_iter=1, tol=1e-6))
    assert int(ok.status.code) == StatusCode.SUCCESS and int(short.status.code) == StatusCode.MAX_ITERATIONS
    with pytest.raises((ValueError, TypeError)):  # TypeError from the test-time type checker
        mx.MixtureOptions(family="gamma")


def test_requires_float64():
    x = np.ones((10, 2), np.float32)
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="needs float64"):
            mx.fit(jnp.asarray(x), mx.MixtureParams(jnp.zeros(1), jnp.ones((1, 2)), jnp.zeros((1, 0))))
        with pytest.raises(RuntimeError, match="needs float64"):
            mx.poisson_rates(x, np.ones((10, 1)))


def test_poisson_fit_matches_the_numpy_reference_em():
    """Same data, same start, fixed iterations: the kernel equals a plain NumPy EM."""
    from _numpy_em import pixel_constant, poisson_em

    x, e, z, rates = poisson_data(seed=15, n=3000, k=3, d=4, low=1.0, high=8.0)  # overlapping phases
    p0 = mx.init_from_centres(jnp.asarray(x), jnp.asarray(rates * 1.4), jnp.asarray(e),
                              options=mx.MixtureOptions(chunk_size=700))
    n_iter = 12
    res = mx.fit(jnp.asarray(x), p0, jnp.asarray(e), options=mx.MixtureOptions(max_iter=n_iter, tol=0.0, chunk_size=700))
    log_w, lam, hist = poisson_em(x, e, np.asarray(p0.log_weights), np.asarray(p0.loc), n_iter, chunk=1000)
    assert int(res.status.iterations) == n_iter
    np.testing.assert_allclose(np.asarray(res.params.loc), lam, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.params.log_weights), log_w, rtol=1e-10, atol=1e-12)
    want = (hist + pixel_constant(x, e)) / len(x)  # mean log-likelihood per pixel
    np.testing.assert_allclose(np.asarray(res.history), want, rtol=1e-12)

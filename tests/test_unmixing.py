"""Linear mixing kernel: optimum (KKT), simplex, recovery, independence of blocks and order."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from jaxpetro.kernels.unmixing import unmix

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
    res = unmix(x, RATES, n_active=4, max_iter=400)
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
    f = np.asarray(unmix(x, RATES, np.full(200, 1000.0), n_active=4, max_iter=600).fractions)
    np.testing.assert_allclose(f, full, atol=5e-3)  # mirror descent nears a face of the simplex slowly


def test_pure_pixels_get_their_phase_and_gain_is_zero_or_small():
    x = np.array([RATES[0] * 1.0, RATES[3] * 1.0])
    res = unmix(x, RATES, n_active=3, max_iter=100)
    f = np.asarray(res.fractions)
    assert f[0, 0] > 0.99 and f[1, 3] > 0.99


@given(st.integers(1, 50), st.integers(1, 4), st.integers(0, 2**31 - 1))
@settings(max_examples=10, deadline=None)
def test_simplex_shapes_and_block_independence(n, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.dirichlet(np.ones(4), n) @ RATES).astype(np.float32)
    a = unmix(x, RATES, n_active=m, max_iter=20, chunk_size=7)
    b = unmix(x, RATES, n_active=m, max_iter=20, chunk_size=64)
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
    a = np.asarray(unmix(x, RATES, n_active=4, max_iter=300).fractions)
    b = np.asarray(unmix(x, RATES[perm], n_active=4, max_iter=300).fractions)
    np.testing.assert_allclose(a[:, perm], b, atol=1e-5)


def test_zero_count_pixels_stay_finite():
    res = unmix(np.zeros((3, 4)), RATES, max_iter=10)
    assert np.all(np.isfinite(np.asarray(res.fractions))) and np.allclose(np.asarray(res.fractions).sum(1), 1)

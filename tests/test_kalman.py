"""Tests of the exact Kalman filter / RTS smoother (jaxpetro.kernels.kalman) against dense Gaussian algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpetro.kernels import kalman as kf


def random_model(seed, n=8, p=3, d=2, missing=0.25):
    """A random linear-Gaussian model with per-step H, R, Q and a random observation mask."""
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(n, p, d))
    b = rng.normal(size=(n, p))
    Lr = np.tril(rng.normal(size=(n, p, p))) * 0.3 + np.eye(p) * 0.5
    R = Lr @ np.swapaxes(Lr, 1, 2)
    dr = rng.uniform(0.5, 2.0, n)
    q = rng.uniform(0.2, 1.0, d)
    Q = np.asarray(kf.random_walk_noise(jnp.asarray(dr), jnp.asarray(q)))
    F = np.eye(d) + 0.1 * rng.normal(size=(d, d))
    m0 = rng.normal(size=d)
    L0 = np.tril(rng.normal(size=(d, d))) + 2 * np.eye(d)
    P0 = L0 @ L0.T
    mask = rng.uniform(size=(n, p)) > missing
    mask[n // 2] = False  # one whole missing shell
    y = rng.normal(size=(n, p)) * 2
    y_nan = np.where(mask, y, np.nan)
    model = kf.LinearGaussianModel(*(jnp.asarray(a) for a in (F, Q, H, b, R, m0, P0)))
    return model, jnp.asarray(y_nan), jnp.asarray(mask)


def dense_posterior(model, y, mask):
    """Joint Gaussian of the whole path, conditioned on the observed components (numpy)."""
    F, Q, H, b, R, m0, P0 = (np.asarray(a) for a in model)
    n, p, d = H.shape
    # x = G z with z = (x0, w1, ..., w_{n-1}) independent Gaussian
    G = np.zeros((n * d, n * d))
    for i in range(n):
        for j in range(i + 1):
            G[i * d:(i + 1) * d, j * d:(j + 1) * d] = np.linalg.matrix_power(F, i - j)
    Cz = np.zeros((n * d, n * d))
    Cz[:d, :d] = P0
    for i in range(1, n):
        Cz[i * d:(i + 1) * d, i * d:(i + 1) * d] = Q[i]
    mz = np.concatenate([m0, np.zeros((n - 1) * d)])
    mx, Cx = G @ mz, G @ Cz @ G.T
    Hb = np.zeros((n * p, n * d))
    Rb = np.zeros((n * p, n * p))
    for i in range(n):
        Hb[i * p:(i + 1) * p, i * d:(i + 1) * d] = H[i]
        Rb[i * p:(i + 1) * p, i * p:(i + 1) * p] = R[i]
    keep = np.asarray(mask).ravel()
    Ho, Ro = Hb[keep], Rb[np.ix_(keep, keep)]
    yo = np.asarray(y).ravel()[keep] - b.ravel()[keep]
    S = Ho @ Cx @ Ho.T + Ro
    K = np.linalg.solve(S, Ho @ Cx).T
    v = yo - Ho @ mx
    mean = mx + K @ v
    cov = Cx - K @ Ho @ Cx
    _, logdet = np.linalg.slogdet(S)
    ll = -0.5 * (v @ np.linalg.solve(S, v) + logdet + len(v) * np.log(2 * np.pi))
    return mean.reshape(n, d), cov, ll


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rts_equals_dense_gaussian_conditioning(seed):
    model, y, mask = random_model(seed)
    res = kf.rts_smoother_jit(model, y, mask)
    mean, cov, ll = dense_posterior(model, y, mask)
    n, d = mean.shape
    np.testing.assert_allclose(res.mean_s, mean, rtol=1e-8, atol=1e-9)
    blocks = np.stack([cov[i * d:(i + 1) * d, i * d:(i + 1) * d] for i in range(n)])
    np.testing.assert_allclose(res.cov_s, blocks, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.loglik, ll, rtol=1e-10)
    # the filter's last step is already the smoothed one
    np.testing.assert_allclose(res.mean_a[-1], mean[-1], rtol=1e-8, atol=1e-9)


def test_masked_component_equals_dropped_component():
    """A masked value gives exactly the update (and likelihood) of a model without that component."""
    model, y, mask = random_model(5, n=5, p=3, missing=0.0)
    k = 3
    mask = mask.at[k, 1].set(False)
    full = kf.kalman_filter_jit(model, y.at[k, 1].set(1e6), mask)  # the value under the mask is ignored
    keep = jnp.array([0, 2])
    sub = kf.LinearGaussianModel(
        model.F, model.Q[k:k + 1], model.H[k:k + 1, keep], model.b[k:k + 1, keep],
        model.R[k:k + 1][:, keep][:, :, keep], full.mean_f[k], full.cov_f[k],
    )
    one = kf.kalman_filter_jit(sub, y[k:k + 1, keep], jnp.ones((1, 2), bool))
    np.testing.assert_allclose(full.mean_a[k], one.mean_a[0], rtol=1e-12)
    np.testing.assert_allclose(full.cov_a[k], one.cov_a[0], rtol=1e-10)
    before = kf.kalman_filter(model._replace(H=model.H[:k], b=model.b[:k], R=model.R[:k], Q=model.Q[:k]), y[:k], mask[:k])
    np.testing.assert_allclose(full.loglik, before.loglik + one.loglik + kf.kalman_filter(
        model._replace(H=model.H[k + 1:], b=model.b[k + 1:], R=model.R[k + 1:], Q=model.Q[k + 1:],
                       m0=model.F @ full.mean_a[k], P0=full.cov_f[k + 1]), y[k + 1:], mask[k + 1:]).loglik, rtol=1e-10)


def test_missing_shell_is_prediction_only():
    model, y, mask = random_model(3)
    res = kf.kalman_filter_jit(model, y, mask)
    k = y.shape[0] // 2
    np.testing.assert_allclose(res.mean_a[k], res.mean_f[k], rtol=0, atol=0)
    np.testing.assert_allclose(res.cov_a[k], res.cov_f[k], rtol=1e-12)


def test_vmap_over_profiles_equals_loop():
    model, y, mask = random_model(7)
    ys = jnp.stack([y, y + 0.5, y - 1.0])
    batched = jax.jit(jax.vmap(kf.rts_smoother, in_axes=(None, 0, None)))(model, ys, mask)
    for i in range(3):
        one = kf.rts_smoother_jit(model, ys[i], mask)
        np.testing.assert_allclose(batched.mean_s[i], one.mean_s, rtol=1e-12)
        np.testing.assert_allclose(batched.loglik[i], one.loglik, rtol=1e-12)


def test_loglik_gradient_matches_finite_difference():
    model, y, mask = random_model(11)

    def ll(log_scale):
        return kf.loglik(model._replace(R=model.R * jnp.exp(2 * log_scale)), y, mask)

    g = jax.jit(jax.grad(ll))(0.1)
    ll_jit = jax.jit(ll)
    eps = 1e-5
    fd = (ll_jit(0.1 + eps) - ll_jit(0.1 - eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), missing=st.floats(0.0, 0.9))
def test_smoothing_never_increases_variance(seed, missing):
    """Smoothed covariances are symmetric PSD and no larger than the filtered ones."""
    model, y, mask = random_model(seed, missing=missing)
    res = kf.rts_smoother_jit(model, y, mask)
    cov_s, cov_a = np.asarray(res.cov_s), np.asarray(res.cov_a)
    np.testing.assert_allclose(cov_s, np.swapaxes(cov_s, 1, 2), atol=1e-12)
    assert np.linalg.eigvalsh(cov_s).min() > -1e-10
    assert np.linalg.eigvalsh(cov_a - cov_s).min() > -1e-8
    assert np.isfinite(float(res.loglik))

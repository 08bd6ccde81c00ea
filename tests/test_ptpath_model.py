"""The P-T state-space model's noise: values against the formulas, and its promised gradient."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro.models import ptpath_model as pm


def _data(n=5):
    rng = np.random.default_rng(1)
    common = np.zeros((n, 6), bool)
    common[:, :4] = True  # the four end-members take the common sd; the 2 inclusion slots their own
    var = np.where(common, 1.0, rng.uniform(0.1, 0.3, (n, 6)))
    radius = np.cumsum(rng.uniform(10.0, 40.0, n))
    return pm.Data(
        y=np.zeros((n, 6)), mask=np.ones((n, 6), bool), var=var, common=common, radius=radius,
        m0=np.array([6.0, 500.0]), P0=np.diag([4.0, 400.0]),
    )


def test_noise_matches_the_random_walk_and_common_sd():
    data = _data()
    log_theta = jnp.log(jnp.array([0.05, 1.5, 0.01]))
    R, Q = pm.noise(data, log_theta)
    np.testing.assert_allclose(np.diagonal(np.asarray(R), axis1=1, axis2=2)[:, :4], 0.01**2, rtol=1e-12)
    np.testing.assert_allclose(np.diagonal(np.asarray(R), axis1=1, axis2=2)[:, 4:], data.var[:, 4:], rtol=1e-12)
    dr = np.diff(data.radius, prepend=data.radius[:1])
    np.testing.assert_allclose(np.asarray(Q)[:, 0, 0], dr * 0.05**2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(Q)[:, 1, 1], dr * 1.5**2, rtol=1e-12)


def test_noise_gradient_matches_finite_differences():
    data = _data()

    def scalar(log_theta):
        R, Q = pm.noise(data, log_theta)
        return jnp.sum(jnp.log(jnp.diagonal(R, axis1=1, axis2=2))) + jnp.sum(jnp.sqrt(Q[1:, 0, 0] + Q[1:, 1, 1]))

    theta = jnp.log(jnp.array([0.05, 1.5, 0.01]))
    grad = np.asarray(jax.grad(scalar)(theta))
    eps = 1e-6
    fd = [(scalar(theta.at[i].add(eps)) - scalar(theta.at[i].add(-eps))) / (2 * eps) for i in range(3)]
    np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6)

"""k-means++ seeding (jaxpetro.kernels.kmeans)."""

import jax
import jax.numpy as jnp
import numpy as np


from jaxpetro.kernels.kmeans import kmeanspp_centres


def blobs(seed=0, k=5, d=3, n=3000):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-50, 50, (k, d))
    z = rng.integers(0, k, n)
    return centres[z] + rng.normal(0, 1, (n, d)), centres


def match_error(found, centres):
    """Largest distance from a true centre to its nearest found centre."""
    d = np.linalg.norm(np.asarray(found)[None] - centres[:, None], axis=2)
    return d.min(axis=1).max()


def test_finds_separated_blobs_and_is_deterministic():
    x, centres = blobs()
    a = kmeanspp_centres(jax.random.key(3), jnp.asarray(x), 5)
    b = kmeanspp_centres(jax.random.key(3), jnp.asarray(x), 5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert match_error(a, centres) < 0.5  # blob sd 1, ~600 points each


def test_fixed_centres_are_kept_first_and_others_seeded():
    x, centres = blobs(seed=1)
    fixed = centres[:2] + 0.3
    found = np.asarray(kmeanspp_centres(jax.random.key(0), jnp.asarray(x), 5, fixed=jnp.asarray(fixed)))
    np.testing.assert_allclose(found[:2], fixed, rtol=1e-12)
    assert match_error(found[2:], centres[2:]) < 0.5  # the free centres find the other blobs


def test_mask_restricts_candidates():
    x, centres = blobs(seed=2, k=2)
    far = np.linalg.norm(x - centres[1], axis=1) < 5  # only the second blob is eligible
    found = np.asarray(kmeanspp_centres(jax.random.key(0), jnp.asarray(x), 1, mask=jnp.asarray(far)))
    assert np.linalg.norm(found[0] - centres[1]) < 0.5

"""Greedy k-means++ seeding with Lloyd refinement, on a random subsample of pixels.

Used to seed mixture components when no labelled pixel gives a centre. k-means++ is
Arthur & Vassilvitskii (2007, Proc. SODA); the greedy variant (several candidates per
draw, keep the best) is the one scikit-learn uses. Distances are accumulated in float64
(the kernel requires ``jax_enable_x64``). Pure JAX; imports nothing of jaxpetro except
the shared ``jaxpetro.kernels._*`` modules.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from jaxpetro.kernels._precision import require_float64


@functools.partial(jax.jit, static_argnames=("n_components", "n_sample", "n_lloyd"))
def kmeanspp_centres(
    key: PRNGKeyArray,
    features: Float[Array, "N D"],
    n_components: int,
    fixed: Float[Array, "F D"] | None = None,
    mask: Bool[Array, " N"] | None = None,
    *,
    n_sample: int = 20000,
    n_lloyd: int = 20,
) -> Float[Array, "K D"]:
    """k-means++ seeding (+ a few Lloyd iterations) on a random subsample.

    Features are standardised per channel before distances are taken. ``fixed``
    centres (e.g. from labelled spots) are kept and count as already chosen; only
    ``n_components - len(fixed)`` new centres are drawn and refined.

    Args:
        key: PRNG key.
        features: per-pixel features, e.g. rates x / e (counts per unit exposure).
        n_components: total number of centres K.
        fixed: centres that must be kept, (F, D), F <= K.
        mask: pixels eligible as centres.
        n_sample: subsample size (pixels drawn with replacement among valid ones).
        n_lloyd: Lloyd iterations on the subsample.

    Returns:
        Centres (K, D) in the units of ``features``: the fixed ones first.
    """
    require_float64("kmeans.kmeanspp_centres")
    n, d = features.shape
    n_fixed = 0 if fixed is None else fixed.shape[0]
    if n_fixed > n_components:
        raise ValueError("more fixed centres than components")
    k_samp, k_seed = jax.random.split(key)
    size = (min(n_sample, n),)
    if mask is None:
        idx = jax.random.randint(k_samp, size, 0, n)
    else:
        p = mask.astype(jnp.float64)
        idx = jax.random.choice(k_samp, n, size, p=p / jnp.sum(p))
    sample = features[idx].astype(jnp.float64)
    mu = jnp.mean(sample, axis=0)
    sd = jnp.std(sample, axis=0)
    sd = jnp.where(sd > 0, sd, 1.0)
    z = (sample - mu[None, :]) / sd[None, :]
    fixed_z = jnp.zeros((0, d)) if fixed is None else (fixed.astype(jnp.float64) - mu[None, :]) / sd[None, :]

    centres = jnp.concatenate([fixed_z, jnp.zeros((n_components - n_fixed, d))])
    big = jnp.finfo(jnp.float64).max / 4

    def sqdist(c):
        return jnp.sum((z - c[None, :]) ** 2, axis=1)

    if n_fixed:
        d2 = jnp.min(jax.vmap(sqdist)(fixed_z), axis=0)
    else:
        d2 = jnp.full(z.shape[0], big)

    n_trials = 2 + int(math.log(max(n_components, 2)))

    def pick(i, carry):
        centres, d2, key = carry
        key, sub = jax.random.split(key)
        # Greedy D^2 sampling: draw several candidates and keep the one that lowers the
        # total potential most (plain k-means++ often seeds two centres in one cluster).
        # With no centre yet, d2 is uniform (all ``big``), so the draw is uniform.
        w = jnp.where(d2 >= big, 1.0, d2)
        w = jnp.where(jnp.sum(w) > 0, w, 1.0)
        cand = jax.random.choice(sub, z.shape[0], (n_trials,), p=w / jnp.sum(w))
        new_d2 = jnp.minimum(d2[None], jax.vmap(sqdist)(z[cand]))
        best = jnp.argmin(jnp.sum(jnp.where(new_d2 >= big, 0.0, new_d2), axis=1))
        return centres.at[i].set(z[cand[best]]), new_d2[best], key

    centres, _, _ = lax.fori_loop(n_fixed, n_components, pick, (centres, d2, k_seed))

    def lloyd(_, centres):
        lab = jnp.argmin(jax.vmap(sqdist)(centres), axis=0)
        one = jax.nn.one_hot(lab, n_components, dtype=jnp.float64)
        cnt = jnp.sum(one, axis=0)
        new = (one.T @ z) / jnp.maximum(cnt, 1.0)[:, None]
        free = (jnp.arange(n_components) >= n_fixed)[:, None] & (cnt[:, None] > 0)
        return jnp.where(free, new, centres)

    centres = lax.fori_loop(0, n_lloyd, lloyd, centres)
    return centres * sd[None, :] + mu[None, :]


__all__ = ["kmeanspp_centres"]

"""Linear mixing of Poisson X-ray counts: per-pixel phase fractions on the simplex.

A pixel at a grain boundary holds several phases. Its expected counts are a mixture
of the phases' rates, ``mu_ij = e_i sum_k f_ik lambda_kj`` with ``f_i`` on the simplex,
and ``f_i`` is fitted by Poisson maximum likelihood:

    minimise  nll(f) = sum_j [ e mu_j(f) - I_j log(e mu_j(f)) ]   over f >= 0, sum f = 1,

which is convex. The solver is entropic mirror descent (exponentiated gradient), whose
multiplicative update stays on the simplex without projection, with a per-pixel step
that grows after a decrease of the objective and halves (rejecting the step) after an
increase, so every iterate lowers the objective. Each pixel is restricted to its
``n_active`` best single phases (by Poisson log-likelihood), which keeps the work per
pixel small and avoids spurious traces of phases that cannot be at that pixel.

Convergence is measured by the Frank-Wolfe gap ``sum_k f_k g_k - min_k g_k`` (>= 0,
zero exactly at the optimum; an upper bound on nll(f) - min nll), per count of the pixel.

Pure JAX; imports nothing of jaxpetro. Pixels are processed in blocks (``lax.map``)
so memory stays bounded, and the result is independent of the block size.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

_STEP0 = 1.0  # initial step of the normalised objective
_GROW, _SHRINK, _STEP_MAX = 1.5, 0.5, 1e3
_RATE_FLOOR = 1e-9  # relative floor of a phase rate: keeps log(mu) finite for absent elements


class UnmixResult(NamedTuple):
    """Per-pixel mixing fractions.

    Attributes:
        fractions: (N, K) on the simplex; zero outside each pixel's active phases.
        nll: (N,) negative log-likelihood at the fractions, without the constant log I!.
        gap: (N,) Frank-Wolfe gap per count at the end (0 at the optimum).
        gain: (N,) log-likelihood gained over the best single phase (>= 0).
    """

    fractions: Float[Array, "N K"]
    nll: Float[Array, " N"]
    gap: Float[Array, " N"]
    gain: Float[Array, " N"]


def unmix(
    counts: Float[Array, "N J"],
    rates: Float[Array, "K J"],
    exposure: Float[Array, " N"] | None = None,
    *,
    n_active: int = 3,
    max_iter: int = 60,
    chunk_size: int = 16384,
) -> UnmixResult:
    """Fractions of the K phases (rates ``rates`` per unit exposure) in every pixel.

    Args:
        counts: X-ray counts per pixel (non-negative; non-integer dead-time corrected
            counts are fine).
        rates: expected counts per unit exposure of a pure pixel of each phase (> 0 in at
            least one channel per phase).
        exposure: per-pixel exposure in the units of ``rates`` (default 1).
        n_active: phases considered per pixel (the best ``n_active`` single phases).
        max_iter: mirror-descent iterations.
        chunk_size: pixels per block.

    Returns:
        :class:`UnmixResult` (float64).
    """
    counts = jnp.asarray(counts)
    n, _ = counts.shape
    exposure = jnp.ones((n,), counts.dtype) if exposure is None else jnp.asarray(exposure)
    m = int(min(n_active, rates.shape[0]))
    return _unmix(counts, jnp.asarray(rates, jnp.float64), exposure, m=m, max_iter=int(max_iter),
                  chunk_size=int(max(1, min(chunk_size, n))))


def _nll(f, lam, x, e):
    mu = e[:, None] * jnp.einsum("bm,bmj->bj", f, lam)
    return jnp.sum(mu - jax.scipy.special.xlogy(x, mu), axis=-1)


def _grad(f, lam, x, e):
    mu = e[:, None] * jnp.einsum("bm,bmj->bj", f, lam)
    ratio = jnp.where(x > 0, x / mu, 0.0)
    return jnp.einsum("bmj,bj->bm", lam, e[:, None] - ratio * e[:, None])


def _block(x, e, rates, m: int, max_iter: int):
    x = x.astype(jnp.float64)
    e = e.astype(jnp.float64)
    k = rates.shape[0]
    floor = _RATE_FLOOR * jnp.max(rates, axis=0, keepdims=True)
    rates = jnp.maximum(rates, floor)
    # Single-phase fits rank the candidates; their best is the baseline of the gain.
    single = x @ jnp.log(rates).T - e[:, None] * rates.sum(1)[None, :] + jnp.log(e)[:, None] * x.sum(1, keepdims=True)
    top, idx = jax.lax.top_k(single, m)  # (B, m)
    lam = rates[idx]  # (B, m, J)
    scale = 1.0 / (x.sum(1) + 1.0)  # per-pixel normalisation: the step acts on nll per count
    f = jnp.full((x.shape[0], m), 0.1 / max(m - 1, 1)).at[:, 0].set(0.9 if m > 1 else 1.0)
    nll = _nll(f, lam, x, e)
    step = jnp.full((x.shape[0],), _STEP0)

    def body(_, carry):
        f, nll, step = carry
        g = _grad(f, lam, x, e) * scale[:, None]
        logits = jnp.log(f) - step[:, None] * (g - g.min(1, keepdims=True))
        trial = jax.nn.softmax(logits, axis=1)
        trial_nll = _nll(trial, lam, x, e)
        better = trial_nll <= nll
        f = jnp.where(better[:, None], trial, f)
        nll = jnp.where(better, trial_nll, nll)
        step = jnp.clip(jnp.where(better, step * _GROW, step * _SHRINK), 1e-8, _STEP_MAX)
        return f, nll, step

    f, nll, _ = jax.lax.fori_loop(0, max_iter, body, (f, nll, step))
    g = _grad(f, lam, x, e) * scale[:, None]
    gap = jnp.sum(f * g, 1) - g.min(1)
    gain = jnp.maximum(-nll - top[:, 0], 0.0)  # single = -nll of a pure pixel of that phase
    fractions = jnp.zeros((x.shape[0], k)).at[jnp.arange(x.shape[0])[:, None], idx].add(f)
    return fractions, nll, gap, gain


@jax.jit(static_argnames=("m", "max_iter", "chunk_size"))
def _unmix(counts, rates, exposure, *, m, max_iter, chunk_size) -> UnmixResult:
    out = _over_blocks(lambda xb, eb: _block(xb, eb, rates, m, max_iter), counts, exposure, chunk_size)
    return UnmixResult(*out)


def _over_blocks(fn, counts, exposure, chunk_size):
    """``fn(counts_block, exposure_block)`` over pixel blocks (``lax.map``: bounded memory);
    the tail block is padded with zero counts and unit exposure, and cut off the outputs."""
    n = counts.shape[0]
    blocks = -(-n // chunk_size)
    pad = blocks * chunk_size - n
    x = jnp.pad(counts, ((0, pad), (0, 0))).reshape(blocks, chunk_size, -1)
    e = jnp.pad(exposure, (0, pad), constant_values=1).reshape(blocks, chunk_size)
    out = jax.lax.map(lambda b: fn(*b), (x, e))
    return tuple(o.reshape((blocks * chunk_size,) + o.shape[2:])[:n] for o in out)



class SingleFit(NamedTuple):
    """Best single phase per pixel: its index and the Poisson deviance of the pixel's counts
    against it (~ chi-square with J degrees of freedom when the pixel is that pure phase)."""

    index: Int[Array, " N"]
    deviance: Float[Array, " N"]


def best_single_phase(
    counts: Float[Array, "N J"], rates: Float[Array, "K J"], exposure: Float[Array, " N"] | None = None,
    *, chunk_size: int = 65536,
) -> SingleFit:
    """The best-fitting pure phase of every pixel and the deviance of that fit.

    Pixels that their best pure phase explains within counting noise need no unmixing;
    screening them out first divides the work of :func:`unmix` on a typical section by ~5.
    """
    counts = jnp.asarray(counts)
    n = counts.shape[0]
    exposure = jnp.ones((n,), counts.dtype) if exposure is None else jnp.asarray(exposure)
    return _single(counts, jnp.asarray(rates, jnp.float64), exposure, chunk_size=int(max(1, min(chunk_size, n))))


@jax.jit(static_argnames=("chunk_size",))
def _single(counts, rates, exposure, *, chunk_size) -> SingleFit:
    rates = jnp.maximum(rates, _RATE_FLOOR * jnp.max(rates, axis=0, keepdims=True))

    def block(xb, eb):
        xb, eb = xb.astype(jnp.float64), eb.astype(jnp.float64)
        ll = xb @ jnp.log(rates).T - eb[:, None] * rates.sum(1)[None, :]  # + x log e, constant in k
        k = jnp.argmax(ll, axis=1)
        mu = eb[:, None] * rates[k]
        dev = 2.0 * jnp.sum(jax.scipy.special.xlogy(xb, xb / mu) - (xb - mu), axis=1)
        return k, dev

    return SingleFit(*_over_blocks(block, counts, exposure, chunk_size))

"""Mixed pixels of a clustered map: pure-phase rates, screening, and per-pixel fractions.

The clustering gives memberships, which are near 1 on most boundary pixels; the linear
mixing model (:mod:`jaxpetro.kernels.unmixing`) gives each pixel's phase fractions. This
module builds that model from a clustered map:

1. pure-phase rates (counts per pixel) as membership-weighted means, the Poisson M-step
   (:func:`jaxpetro.kernels.mixture.poisson_rates`), valid whichever family clustered;
2. boundary pixels bias those means, so they are re-estimated from the pixels that their
   best pure phase explains within counting noise (Poisson deviance below the chi-square
   quantile ``1 - pure_p`` with one degree of freedom per channel);
3. the pixels that no pure phase explains are unmixed; the others keep their phase.

See docs/science.md (linear mixing; Lanari et al. 2014, 2019 for XMapTools' treatment of
mixed pixels).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Real
from scipy.stats import chi2  # scipy ships with jax

from jaxpetro.kernels.mixture import poisson_rates
from jaxpetro.kernels.unmixing import UnmixOptions, best_single_phase, unmix

__all__ = ["Mixing", "fit_mixing", "mix_pixels", "pure_phase_rates"]


class Mixing(NamedTuple):
    """Mixing fractions of a map's pixels.

    Attributes:
        fractions: (N, K) float32 on the simplex (one-hot on pixels left pure).
        rates: (K, J) float64 pure-phase counts per pixel used.
        unmixed_share: share of the pixels that were unmixed.
        gap_p99: 99th percentile of the Frank-Wolfe gap per count over the unmixed pixels
            (0 when none was).
    """

    fractions: np.ndarray
    rates: np.ndarray
    unmixed_share: float
    gap_p99: float


def _critical_deviance(pure_p: float, n_channels: int) -> float:
    return float(chi2.ppf(1.0 - max(float(pure_p), 1e-12), n_channels))


def pure_phase_rates(
    counts: Real[ArrayLike, "N J"], memberships: Real[ArrayLike, "N K"], options: UnmixOptions = UnmixOptions()
) -> np.ndarray:
    """(K, J) pure-phase counts per pixel: the membership-weighted means over all pixels,
    then, for each phase that has pure pixels (deviance of their best single phase within
    the ``pure_p`` quantile), the weighted mean over those pure pixels only."""
    x = np.asarray(counts)
    p = np.asarray(memberships)
    rates = np.asarray(poisson_rates(x, p))
    single = best_single_phase(x, rates, options=options)
    pure = np.asarray(single.deviance) <= _critical_deviance(options.pure_p, x.shape[1])
    if pure.any():
        has_pure = np.bincount(np.asarray(single.index)[pure], minlength=p.shape[1])[:, None] > 0
        rates = np.where(has_pure, np.asarray(poisson_rates(x[pure], p[pure])), rates)
    return rates


def mix_pixels(
    counts: Real[ArrayLike, "N J"], rates: Real[ArrayLike, "K J"], options: UnmixOptions = UnmixOptions()
) -> tuple[np.ndarray, float, float]:
    """Mixing fractions (N, K) float32: pixels that their best pure phase explains within
    counting noise (deviance below the chi-square quantile ``1 - pure_p``) keep that
    phase; the others are unmixed. Returns (fractions, share unmixed, 99th percentile gap)."""
    x = np.asarray(counts)
    rates = np.asarray(rates)
    n, j = x.shape
    single = best_single_phase(x, rates, options=options)
    index, dev = np.asarray(single.index), np.asarray(single.deviance)
    fractions = np.zeros((n, rates.shape[0]), np.float32)
    fractions[np.arange(n), index] = 1.0
    todo = np.flatnonzero(dev > _critical_deviance(options.pure_p, j)) if options.pure_p > 0 else np.arange(n)
    gap = 0.0
    if todo.size:
        # Pad to a multiple of the block so that maps of similar size share one compilation.
        block = options.chunk_size
        padded = np.zeros((-(-todo.size // block) * block, j), x.dtype)
        padded[: todo.size] = x[todo]
        mix = unmix(padded, rates, None, options)
        fractions[todo] = np.asarray(mix.fractions, np.float32)[: todo.size]
        gap = float(np.quantile(np.asarray(mix.gap)[: todo.size], 0.99))
    return fractions, todo.size / max(n, 1), gap


def fit_mixing(
    counts: Real[ArrayLike, "N J"], memberships: Real[ArrayLike, "N K"], options: UnmixOptions = UnmixOptions()
) -> Mixing:
    """:func:`pure_phase_rates` then :func:`mix_pixels` (X-ray counts per pixel, EM memberships)."""
    rates = pure_phase_rates(counts, memberships, options)
    fractions, share, gap = mix_pixels(counts, rates, options)
    return Mixing(fractions, rates, share, gap)

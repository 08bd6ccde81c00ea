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

Zoned phases (garnet) scatter beyond counting noise about their mean rate, so a pure-but-zoned
pixel would fail a plain chi-square screen and be "unmixed" into spurious fractions of other
phases. The critical deviance of each phase is therefore scaled, as the spot outlier test does
(:func:`jaxpetro.models.spots.spot_outliers`), by max(1, median deviance of the phase's
grain-interior pixels / chi-square median): a homogeneous phase keeps the plain quantile, a
zoned one gets a proportionally wider one. Interior pixels (all 8 neighbours of the same best
phase) keep boundary pixels out of that median.

See docs/science.md (linear mixing; Lanari et al. 2014, 2019 for XMapTools' treatment of
mixed pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Real
from scipy.stats import chi2  # scipy ships with jax

from jaxpetro.kernels.mixture import poisson_rates
from jaxpetro.kernels.unmixing import UnmixOptions, best_single_phase, unmix
from jaxpetro.models import parallel

__all__ = ["Mixing", "fit_mixing", "interior_mask", "mix_pixels", "phase_scales", "pure_phase_rates"]


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


def _single(x: np.ndarray, rates: np.ndarray, options: UnmixOptions, devices: Sequence[Any]):
    """:func:`best_single_phase` of every pixel, the pixels sharded over ``devices``."""
    return parallel.shard_pixels(lambda xb, r: best_single_phase(xb, r, options=options), (x,), (0.0,),
                                 devices=devices, shared=(rates,))


def interior_mask(labels: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: pixels whose 8 neighbours all carry the pixel's label (grain
    interiors; map edges count as different). ``labels`` < 0 are never interior."""
    rows, cols = labels.shape
    pad = np.pad(labels, 1, constant_values=-1)
    out = labels >= 0
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                out &= pad[1 + dr: 1 + dr + rows, 1 + dc: 1 + dc + cols] == labels
    return out


def phase_scales(deviance: np.ndarray, index: np.ndarray, n_phases: int, n_channels: int,
                 interior: np.ndarray | None = None, min_pixels: int = 20) -> np.ndarray:
    """(K,) factor of each phase's critical deviance: max(1, median deviance of its interior
    pixels (best single phase k; all pixels without ``interior``) / chi-square(J) median).
    Phases with fewer than ``min_pixels`` such pixels keep 1."""
    dev, index = np.asarray(deviance), np.asarray(index)
    sel_all = np.ones(dev.shape, bool) if interior is None else np.asarray(interior, bool)
    med = chi2.median(n_channels)
    scale = np.ones(n_phases)
    for k in range(n_phases):
        sel = sel_all & (index == k)
        if sel.sum() >= min_pixels:
            scale[k] = max(1.0, float(np.median(dev[sel])) / med)
    return scale


def pure_phase_rates(
    counts: Real[ArrayLike, "N J"], memberships: Real[ArrayLike, "N K"], options: UnmixOptions = UnmixOptions(),
    interior: np.ndarray | None = None, devices: Sequence[Any] = (),
) -> np.ndarray:
    """(K, J) pure-phase counts per pixel: the membership-weighted means over all pixels,
    then, for each phase that has pure pixels (deviance of their best single phase within
    the ``pure_p`` quantile, scaled per phase by :func:`phase_scales` over the ``interior``
    (N,) pixels), the weighted mean over those pure pixels only. ``devices``: the per-pixel
    screen sharded over them (:func:`jaxpetro.models.parallel.pixel_devices`)."""
    x = np.asarray(counts)
    p = np.asarray(memberships)
    rates = np.asarray(poisson_rates(x, p))
    single = _single(x, rates, options, devices)
    dev, idx = np.asarray(single.deviance), np.asarray(single.index)
    scale = phase_scales(dev, idx, p.shape[1], x.shape[1], interior)
    pure = dev <= _critical_deviance(options.pure_p, x.shape[1]) * scale[idx]
    if pure.any():
        has_pure = np.bincount(np.asarray(single.index)[pure], minlength=p.shape[1])[:, None] > 0
        rates = np.where(has_pure, np.asarray(poisson_rates(x[pure], p[pure])), rates)
    return rates


def mix_pixels(
    counts: Real[ArrayLike, "N J"], rates: Real[ArrayLike, "K J"], options: UnmixOptions = UnmixOptions(),
    interior: np.ndarray | None = None, devices: Sequence[Any] = (),
) -> tuple[np.ndarray, float, float]:
    """Mixing fractions (N, K) float32: pixels that their best pure phase explains within
    counting noise (deviance below the chi-square quantile ``1 - pure_p``, scaled per phase
    by :func:`phase_scales` over the ``interior`` (N,) pixels for zoned phases) keep that
    phase; the others are unmixed, sharded over ``devices`` (each pixel on its own: the
    fractions do not depend on the device count). Returns (fractions, share unmixed, 99th
    percentile gap)."""
    x = np.asarray(counts)
    rates = np.asarray(rates)
    n, j = x.shape
    single = _single(x, rates, options, devices)
    index, dev = np.asarray(single.index), np.asarray(single.deviance)
    fractions = np.zeros((n, rates.shape[0]), np.float32)
    fractions[np.arange(n), index] = 1.0
    scale = phase_scales(dev, index, rates.shape[0], j, interior)
    todo = np.flatnonzero(dev > _critical_deviance(options.pure_p, j) * scale[index]) if options.pure_p > 0 else np.arange(n)
    gap = 0.0
    if todo.size:
        # Pad to a multiple of the block (on every device) so that maps of similar size share
        # one compilation; padded pixels (zero counts) are inert.
        block = options.chunk_size * max(len(devices), 1)
        padded = np.zeros((-(-todo.size // block) * block, j), x.dtype)
        padded[: todo.size] = x[todo]
        mix = parallel.shard_pixels(lambda xb, r: unmix(xb, r, None, options), (padded,), (0.0,), devices=devices,
                                    shared=(rates,))
        fractions[todo] = np.asarray(mix.fractions, np.float32)[: todo.size]
        gap = float(np.quantile(np.asarray(mix.gap)[: todo.size], 0.99))
    return fractions, todo.size / max(n, 1), gap


def fit_mixing(
    counts: Real[ArrayLike, "N J"], memberships: Real[ArrayLike, "N K"], options: UnmixOptions = UnmixOptions(),
    interior: np.ndarray | None = None, devices: Sequence[Any] = (),
) -> Mixing:
    """:func:`pure_phase_rates` then :func:`mix_pixels` (X-ray counts per pixel, EM memberships;
    ``interior`` (N,) bool: grain-interior pixels for the zoned-phase scaling, see
    :func:`interior_mask`; None: all pixels; ``devices``: the per-pixel work sharded over them)."""
    rates = pure_phase_rates(counts, memberships, options, interior, devices)
    fractions, share, gap = mix_pixels(counts, rates, options, interior, devices)
    return Mixing(fractions, rates, share, gap)

"""Spot analyses as anchors and calibration standards: labels, outliers, map agreement.

Numpy (the spot set is small); everything here is bookkeeping and tests on a few dozen
spots, not per-pixel work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2, norm, poisson  # scipy ships with jax

from jaxpetro.errors import InputError
from jaxpetro.kernels.unmixing import poisson_deviance

__all__ = ["SpotLabels", "agreement", "base_phase", "beta_consistency", "interior_rates", "label_spots", "shrink_to_phase", "spot_outliers",
           "window_mean", "window_mean_eiv"]


def base_phase(label: str) -> str:
    """The phase of a sub-phase label: ``Grt_core`` -> ``Grt`` (text before the first ``_``)."""
    return label.split("_", 1)[0]


@dataclass(frozen=True)
class SpotLabels:
    """Which spots anchor which component.

    Attributes:
        phases: component names with spots first (order of first appearance), then
            phases requested without spots.
        index: (n,) component of each spot, -1 for spots left out.
        dropped: {label: number of spots} left out because their phase was not requested.
        unanchored: requested phases that have no spots.
    """

    phases: tuple[str, ...]
    index: np.ndarray
    dropped: dict
    unanchored: tuple[str, ...]


def label_spots(labels: Sequence[str], use: np.ndarray | None, *, merge_subphases: bool,
                phases: tuple[str, ...] | None) -> SpotLabels:
    """Component index of each spot from its label (merged, restricted to ``phases``).

    Raises:
        InputError: no usable spot is left.
    """
    labels = [base_phase(p) if merge_subphases else p for p in labels]
    use = np.ones(len(labels), bool) if use is None else np.asarray(use, bool)
    present = list(dict.fromkeys(p for p, u in zip(labels, use) if u))
    wanted = present if phases is None else [p for p in present if p in phases]
    unanchored = () if phases is None else tuple(p for p in dict.fromkeys(phases) if p not in present)
    names = tuple(wanted) + unanchored
    index = np.array([names.index(p) if (u and p in wanted) else -1 for p, u in zip(labels, use)], np.int64)
    dropped = {}
    for p, u in zip(labels, use):
        if u and p not in wanted:
            dropped[p] = dropped.get(p, 0) + 1
    if not wanted:
        raise InputError(
            "no spot analysis is left to anchor the phases "
            + (f"(clustering.phases = {list(phases)} matches none of the spot labels {present})." if phases else "(all excluded).")
        )
    return SpotLabels(names, index, dropped, unanchored)


def spot_outliers(counts_at_spots: np.ndarray, index: np.ndarray, n_phases: int,
                  p_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Spots whose map counts disagree with their phase beyond noise and fit another phase better.

    Each phase with at least 3 spots gets a reference: the median counts of its spots
    (X-ray channels). A spot is flagged when (a) the Poisson deviance of its pixel's
    counts against its own phase's reference exceeds the chi-square quantile
    ``1 - p_value`` (degrees of freedom = channels), scaled up by the phase's median
    deviance over the chi-square median when larger (zoned phases such as garnet scatter
    beyond counting noise), and (b) another phase's reference fits it better. (b) keeps
    the extreme core or rim spots of a zoned grain, which are still closest to their own
    phase, while a mislabelled or misplaced spot is closest to the phase it really hit.

    Args:
        counts_at_spots: (n, J) counts at the spot pixels.
        index: (n,) component of each spot (-1 = not used).
        p_value: false-alarm probability per spot (0 turns the test off).

    Returns:
        ``(outlier, deviance)``: bool (n,) and the own-phase deviance (n,) (NaN if untested).
    """
    x = np.asarray(counts_at_spots, np.float64)
    index = np.asarray(index)
    n, j = x.shape
    outlier = np.zeros(n, bool)
    deviance = np.full(n, np.nan)
    if p_value <= 0 or j == 0:
        return outlier, deviance
    refs = {k: np.maximum(np.median(x[index == k], axis=0), 0.5)  # 0.5: a zero median makes any count impossible
            for k in range(n_phases) if np.sum(index == k) >= 3}
    if not refs:
        return outlier, deviance
    dev = {k: np.asarray(poisson_deviance(x, mu[None, :])) for k, mu in refs.items()}  # each (n,)
    crit, med_chi = chi2.ppf(1.0 - p_value, j), chi2.median(j)
    best_other = np.full(n, np.inf)
    for k in refs:
        sel = index == k
        deviance[sel] = dev[k][sel]
        for other in refs:
            if other != k:
                best_other[sel] = np.minimum(best_other[sel], dev[other][sel])
    for k in refs:
        sel = index == k
        scale = max(1.0, float(np.median(dev[k][sel])) / med_chi)
        outlier[sel] = (dev[k][sel] > crit * scale) & (best_other[sel] < dev[k][sel])
    return outlier, deviance


def agreement(phase_map: np.ndarray, row: np.ndarray, col: np.ndarray, index: np.ndarray) -> tuple[int, int]:
    """(spots whose pixel's most likely component is their own, spots tested)."""
    sel = np.asarray(index) >= 0
    hits = int(np.sum(np.asarray(phase_map)[np.asarray(row)[sel], np.asarray(col)[sel]] == np.asarray(index)[sel]))
    return hits, int(sel.sum())


def window_mean(image: np.ndarray, row: np.ndarray, col: np.ndarray, memberships: np.ndarray, index: np.ndarray,
                threshold: float, half: int, return_count: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Mean of ``image`` (rows, cols, J) over the (2 half + 1)^2 window around each spot
    pixel (row, col), over the pixels whose membership in the spot's component ``index``
    is at least ``threshold``; the spot pixel alone where none is. Returns (n, J) float64.

    Averaging a few same-phase neighbours divides the counting noise of the map rate at
    a spot (the x of the beta regression) by up to 2 half + 1. With ``return_count`` also
    the (n,) number of pixels averaged.
    """
    rows, cols = image.shape[:2]
    out = np.empty((len(row), image.shape[2]))
    count = np.ones(len(row), np.int64)
    for s, (r, c, k) in enumerate(zip(row, col, index)):
        r0, r1, c0, c1 = max(r - half, 0), min(r + half + 1, rows), max(c - half, 0), min(c + half + 1, cols)
        block = image[r0:r1, c0:c1].astype(np.float64)
        m = memberships[r0:r1, c0:c1, k] >= threshold if k >= 0 else np.zeros(block.shape[:2], bool)
        out[s] = block[m].mean(axis=0) if m.any() else image[r, c]
        count[s] = max(int(m.sum()), 1)
    return (out, count) if return_count else out


def window_mean_eiv(counts: np.ndarray, exposure: np.ndarray, row: np.ndarray, col: np.ndarray, index: np.ndarray,
                    rates: np.ndarray, log_prior: np.ndarray, channels: list[int], threshold: float,
                    half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map rate about each spot for an errors-in-variables calibration: mean, Poisson
    variance and pixel count, per element, over same-phase pixels of the window chosen
    without looking at that element's counts.

    Choosing the window's pixels by their memberships (:func:`window_mean`) biases the mean
    at low counts: a pixel whose Si counts happen to be low looks less like quartz and is
    dropped, so the kept pixels read high. Here, for element channel j, a pixel is kept when
    its posterior of the spot's phase computed from every X-ray channel except j (Poisson
    likelihoods with the phases' ``rates`` and ``log_prior``) is at least ``threshold``.
    Channels are independent given the phase, so the kept pixels' counts of j are unbiased.

    Args:
        counts: (rows, cols, C) X-ray counts (dead-time corrected).
        exposure: (C,) exposure of each channel's pixels, s·µA.
        row, col, index: spot pixels and component (-1: not used; the spot pixel alone).
        rates: (K, C) pure-phase counts per pixel; log_prior: (K,) log mixing weights.
        channels: the channels (indices into C) to return, one per quantified element.
        threshold: minimum leave-one-out posterior of the spot's phase.
        half: window half-width (window 2 half + 1).

    Returns:
        ``(rate, rate_var, n_pixels)``, each (n, len(channels)): mean rate in cps/µA, its
        variance (counts / (n_pixels x exposure)^2) and the pixels averaged.
    """
    lam = np.maximum(np.asarray(rates, np.float64), 1e-9 * np.max(rates, axis=0, keepdims=True) + 1e-300)
    log_lam = np.log(lam)
    rows, cols = counts.shape[:2]
    n, m = len(row), len(channels)
    rate, var, npix = np.empty((n, m)), np.empty((n, m)), np.empty((n, m))
    for s, (r, c, k) in enumerate(zip(row, col, index)):
        r0, r1, c0, c1 = max(r - half, 0), min(r + half + 1, rows), max(c - half, 0), min(c + half + 1, cols)
        x = counts[r0:r1, c0:c1].reshape(-1, counts.shape[2]).astype(np.float64)
        centre = (r - r0) * (c1 - c0) + (c - c0)
        terms = x[:, None, :] * log_lam[None] - lam[None]  # (P, K, C) per-channel log-likelihoods
        total = terms.sum(-1) + log_prior[None, :]
        for jj, ch in enumerate(channels):
            if k >= 0:
                ll = total - terms[:, :, ch]
                post = np.exp(ll[:, k] - np.logaddexp.reduce(ll, axis=1))
                keep = post >= threshold
            else:
                keep = np.zeros(x.shape[0], bool)
            if not keep.any():
                keep[centre] = True
            counts_sum, n_keep = x[keep, ch].sum(), int(keep.sum())
            rate[s, jj] = counts_sum / (n_keep * exposure[ch])
            var[s, jj] = counts_sum / (n_keep * exposure[ch]) ** 2
            npix[s, jj] = n_keep
    return rate, var, npix


def interior_rates(counts: np.ndarray, exposure: np.ndarray, phase_map: np.ndarray, valid: np.ndarray,
                   n_phases: int, min_pixels: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean rate (cps/µA) of each phase over its grain interiors: the pixels whose 8
    neighbours all belong to the phase.

    The pixel's own label is not looked at, so its counts do not decide whether it is kept
    (selecting pixels by their own label biases the mean at low counts); requiring the
    neighbours keeps boundary (mixed) pixels out. Phases with fewer than ``min_pixels``
    interior pixels use every pixel labelled with the phase.

    Args:
        counts: (rows, cols, C) counts; exposure: (C,) s·µA; phase_map: (rows, cols) int
            (-1: excluded); valid: (rows, cols) bool.

    Returns:
        ``(rate, rate_var, n_pixels)``: (K, C), (K, C) and (K,).
    """
    rows, cols = phase_map.shape
    lab = np.where(valid, phase_map, -1)
    pad = np.pad(lab, 1, constant_values=-1)
    same = np.ones((n_phases, rows, cols), bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            nb = pad[1 + dr: 1 + dr + rows, 1 + dc: 1 + dc + cols]
            same &= nb[None] == np.arange(n_phases)[:, None, None]
    same &= valid[None]
    c = counts.reshape(-1, counts.shape[2]).astype(np.float64)
    rate, var, npix = np.zeros((n_phases, c.shape[1])), np.zeros((n_phases, c.shape[1])), np.zeros(n_phases)
    for k in range(n_phases):
        sel = same[k].reshape(-1)
        if sel.sum() < min_pixels:
            sel = (lab == k).reshape(-1)
        n = int(sel.sum())
        if n == 0:
            rate[k], var[k] = np.nan, np.nan
            continue
        total = c[sel].sum(0)
        rate[k], var[k], npix[k] = total / (n * exposure), total / (n * exposure) ** 2, n
    return rate, var, npix


def shrink_to_phase(local: np.ndarray, local_var: np.ndarray, phase_rate: np.ndarray, phase_var: np.ndarray,
                    index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best linear predictor of the true map rate at each spot from its noisy local mean and
    its phase's interior mean (empirical Bayes shrinkage).

    Within phase k the true rates at the spots scatter by tau_k^2 (zoning) =
    mean((local - phase)^2 - var) (the observed scatter less the counting noise), taken as 0
    unless the scatter fails a chi-square test of homogeneity at p = 0.01;
    the predictor is ``phase + kappa (local - phase)`` with ``kappa = tau^2 / (tau^2 + var)``.
    A homogeneous phase (tau ~ 0) takes its interior mean, measured on thousands of pixels;
    a zoned one keeps the local value where zoning exceeds the noise.

    Args:
        local, local_var: (n, J) rate about each spot and its variance.
        phase_rate, phase_var: (K, J) interior mean rate of each phase and its variance.
        index: (n,) component of each spot (-1: returned unchanged).

    Returns:
        ``(rate, rate_var)`` (n, J).
    """
    out, out_var = np.array(local, np.float64), np.array(local_var, np.float64)
    for k in np.unique(index[index >= 0]):
        sel = index == k
        if not np.all(np.isfinite(phase_rate[k])):
            continue
        x, v = local[sel], local_var[sel] + phase_var[k]
        # Zoning only where the spots scatter about the phase mean beyond counting noise
        # (chi-square test at p = 0.01): with a dozen spots, var - noise is itself noisy, and
        # a homogeneous phase should take its precise interior mean.
        stat = np.sum((x - phase_rate[k]) ** 2 / np.maximum(v, 1e-300), axis=0)
        zoned = stat > chi2.ppf(0.99, sel.sum())
        tau2 = np.where(zoned, np.maximum(np.mean((x - phase_rate[k]) ** 2 - v, axis=0), 0.0), 0.0)
        kappa = tau2 / np.maximum(tau2 + v, 1e-300)
        out[sel] = phase_rate[k] + kappa * (x - phase_rate[k])
        out_var[sel] = kappa**2 * v + (1.0 - kappa) ** 2 * phase_var[k]
    return out, out_var


def beta_consistency(observed: np.ndarray, predicted: np.ndarray, usable: np.ndarray, p_value: float,
                     n_pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """qntmap's per-element consistency test of each spot against its map pixel.

    The spot's peak intensity divided by beta predicts the counts of its pixel, ``mu`` (the
    pixel's exposure times the predicted rate). Under Poisson noise the pixel's counts lie
    in its Poisson prediction interval at ``p_value`` (two-sided; the residual is expressed as
    the normal quantile z of its exact mid-p tail, ~ (obs - mu)/sqrt(mu) at high counts); counts outside it mean the spot and its pixel did not see the same
    material (a spot on an inclusion or a crack, a pixel mixed with a neighbour, a bad
    analysis). Real maps scatter beyond counting noise (probe-current drift, zoning within
    the pixel, the spot's own error), so the interval is widened by the overdispersion of
    the usable spots, phi = max(1, median(z^2) / 0.455) (0.455: the chi-square(1) median),
    a robust scale that a few bad spots do not inflate (the same scaling as the spot
    outlier test for zoned phases).

    Args:
        observed, predicted: (n, J) counts at each spot's pixel (or the mean over the
            same-phase pixels of its window) and their prediction.
        n_pixels: (n,) pixels averaged in ``observed`` (the variance is mu / n_pixels).
        usable: (n, J) bool, the spots tested (others are returned consistent, z NaN).
        p_value: false-alarm probability per spot and element (0: every spot consistent).

    Returns:
        ``(consistent, z, phi)``: (n, J) bool, (n, J) standardised residual (normal
        quantile of the Poisson tail of the window's counts), (J,) overdispersion factor.
    """
    obs, mu = np.asarray(observed, np.float64), np.maximum(np.asarray(predicted, np.float64), 1e-12)
    usable = np.asarray(usable, bool) & np.isfinite(obs) & np.isfinite(mu)
    n = (np.ones(obs.shape[0]) if n_pixels is None else np.asarray(n_pixels, np.float64))[:, None]
    # The window's summed counts are Poisson(n mu): z from the exact mid-p tail, so that a trace
    # element with 2 expected counts is not flagged for 4 (the normal approximation would).
    k, lam = np.rint(np.where(usable, obs, 0.0) * n), np.where(usable, mu, 1.0) * n
    upper = poisson.sf(k, lam) + 0.5 * poisson.pmf(k, lam)  # P(X > k) + P(X = k) / 2
    z = np.where(usable, -norm.ppf(np.clip(upper, 1e-300, 1.0 - 1e-16)), np.nan)
    phi = np.ones(obs.shape[1])
    for j in range(obs.shape[1]):
        zj = z[usable[:, j], j]
        if zj.size >= 3:
            phi[j] = max(1.0, float(np.median(zj**2)) / chi2.median(1))
    if p_value <= 0:
        return np.ones(obs.shape, bool), z, phi
    crit = norm.ppf(1.0 - p_value / 2.0) * np.sqrt(phi)[None, :]
    consistent = ~usable | (np.abs(np.nan_to_num(z)) <= crit)
    return consistent, z, phi

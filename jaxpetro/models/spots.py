"""Spot analyses as anchors and calibration standards: labels, outliers, map agreement.

Numpy (the spot set is small); everything here is bookkeeping and tests on a few dozen
spots, not per-pixel work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2  # scipy ships with jax

from jaxpetro.errors import InputError
from jaxpetro.kernels.unmixing import poisson_deviance

__all__ = ["SpotLabels", "agreement", "base_phase", "label_spots", "spot_outliers", "window_mean"]


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
                threshold: float, half: int) -> np.ndarray:
    """Mean of ``image`` (rows, cols, J) over the (2 half + 1)^2 window around each spot
    pixel (row, col), over the pixels whose membership in the spot's component ``index``
    is at least ``threshold``; the spot pixel alone where none is. Returns (n, J) float64.

    Averaging a few same-phase neighbours divides the counting noise of the map rate at
    a spot (the x of the beta regression) by up to 2 half + 1.
    """
    rows, cols = image.shape[:2]
    out = np.empty((len(row), image.shape[2]))
    for s, (r, c, k) in enumerate(zip(row, col, index)):
        r0, r1, c0, c1 = max(r - half, 0), min(r + half + 1, rows), max(c - half, 0), min(c + half + 1, cols)
        block = image[r0:r1, c0:c1].astype(np.float64)
        m = memberships[r0:r1, c0:c1, k] >= threshold if k >= 0 else np.zeros(block.shape[:2], bool)
        out[s] = block[m].mean(axis=0) if m.any() else image[r, c]
    return out

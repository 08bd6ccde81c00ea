"""Summaries of a quantified map: modes, phase compositions, bulk compositions, profiles.

Pure numpy on the arrays the quantification returns (weights ``p`` (rows, cols, K) on the
simplex, wt% ``W`` (rows, cols, J)). The sums run over blocks of ``_BLOCK`` pixels in
NumPy rather than through :func:`jaxpetro.kernels._blocks.map_blocks`: they are a few
float64 matrix products over arrays already on the host (the outputs are written from
NumPy), so a device round trip and a compilation per map shape would cost more than
they save; the blocks only bound the memory of the float64 copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["DEFAULT_DENSITY", "DENSITIES", "bulk_composition", "densities_for", "modal_proportions",
           "phase_compositions", "profile_points"]

#: Densities (g/cm³) of common rock-forming minerals, used for bulk compositions when the
#: config gives none for a phase (mid-range values of the usual handbooks).
DENSITIES = {
    "Qtz": 2.65, "Pl": 2.68, "Kfs": 2.56, "Ab": 2.62, "An": 2.76, "Bt": 3.00, "Ms": 2.83,
    "Phl": 2.85, "Chl": 2.80, "Grt": 4.10, "Ilm": 4.72, "Mag": 5.18, "Hem": 5.26, "Rt": 4.25,
    "Ttn": 3.52, "Ap": 3.19, "Zrn": 4.65, "Ep": 3.45, "Czo": 3.33, "Hbl": 3.20, "Amp": 3.20,
    "Cpx": 3.30, "Di": 3.28, "Opx": 3.40, "Ol": 3.32, "Ky": 3.61, "Sil": 3.24, "And": 3.15,
    "St": 3.75, "Crd": 2.60, "Cal": 2.71, "Dol": 2.85, "Py": 5.01, "Po": 4.61, "Tur": 3.10,
    "Sp": 3.58, "Spl": 3.58, "Chr": 4.80, "Srp": 2.57, "Tlc": 2.75, "Pg": 2.85,
}  # fmt: skip
DEFAULT_DENSITY = 3.0  # g/cm³ for a phase in neither the config nor the table

_BLOCK = 1 << 18  # pixels per block of the float64 sums


def modal_proportions(weights: np.ndarray) -> np.ndarray:
    """(K,) float64 mean phase weight over the map's pixels (weights (..., K))."""
    return weights.reshape(-1, weights.shape[-1]).astype(np.float64).mean(0)


def phase_compositions(weights: np.ndarray, wt: np.ndarray, core: np.ndarray | None = None,
                       threshold: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Weight-averaged composition of each phase and its spread, over its core pixels.

    Args:
        weights: (rows, cols, K) phase memberships p.
        wt: (rows, cols, J) wt%.
        core: (rows, cols, K) weights that decide which pixels are the phase's core
            (default ``weights``; mixing fractions are better: EM memberships are near 1
            on most boundary pixels, whose wt% is a mixture).
        threshold: a pixel counts for phase k where ``core[..., k] >= threshold``.

    Returns:
        ``(mean, sd)``, each (K, J): sum_i p_ik W_ij / sum_i p_ik over the core pixels and
        the weighted standard deviation about it (NaN for a phase without core pixels).
    """
    p = weights.reshape(-1, weights.shape[-1])
    c = p if core is None else core.reshape(-1, core.shape[-1])
    w = wt.reshape(-1, wt.shape[-1])
    s0 = np.zeros(p.shape[1])
    s1 = np.zeros((p.shape[1], w.shape[1]))
    s2 = np.zeros_like(s1)
    for a in range(0, p.shape[0], _BLOCK):
        pb = np.where(c[a : a + _BLOCK] >= threshold, p[a : a + _BLOCK], 0.0).astype(np.float64)
        wb = w[a : a + _BLOCK].astype(np.float64)
        s0 += pb.sum(0)
        s1 += pb.T @ wb
        s2 += pb.T @ (wb * wb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / s0[:, None]
        var = np.maximum(s2 / s0[:, None] - mean**2, 0.0)
    return mean, np.sqrt(var)


def densities_for(phases: Sequence[str], overrides: Mapping[str, float]) -> np.ndarray:
    """Density (g/cm³) of each phase: config first, then the built-in table, else 3.0."""
    return np.array([overrides.get(p, DENSITIES.get(p, DENSITIES.get(p.split("_")[0], DEFAULT_DENSITY))) for p in phases])


def bulk_composition(weights: np.ndarray, wt: np.ndarray, density: np.ndarray,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Density-weighted bulk composition (J,) wt% of the pixels in ``mask`` (default all).

    A pixel's mass is proportional to sum_k p_ik rho_k (volume fractions times density);
    the bulk is the mass-weighted mean of its wt%.
    """
    p = weights.reshape(-1, weights.shape[-1])
    w = wt.reshape(-1, wt.shape[-1])
    sel = np.ones(p.shape[0], bool) if mask is None else np.asarray(mask).reshape(-1)
    num, den = np.zeros(w.shape[1]), 0.0
    for a in range(0, p.shape[0], _BLOCK):
        s = sel[a : a + _BLOCK]
        mass = p[a : a + _BLOCK][s].astype(np.float64) @ np.asarray(density, np.float64)
        num += mass @ w[a : a + _BLOCK][s].astype(np.float64)
        den += mass.sum()
    return num / den if den > 0 else np.full(w.shape[1], np.nan)


def profile_points(start: Sequence[float], end: Sequence[float], shape: Sequence[int],
                   width: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels along a line and across its width.

    Args:
        start, end: (x, y) pixel coordinates (column, row) of the ends.
        shape: (rows, cols) of the map, to clip to.
        width: pixels across the line averaged at each step (odd widths are centred).

    Returns:
        ``(distance_px, rows, cols)``: distance (pixels) from ``start`` of each of the
        n steps (one per pixel of length), and int arrays (n, width) of the pixels
        averaged at each step; steps whose pixels fall off the map are dropped.
    """
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    n = max(int(np.floor(length)) + 1, 1)
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    ux, uy = ((x1 - x0) / length, (y1 - y0) / length) if length > 0 else (1.0, 0.0)
    offsets = np.arange(width) - (width - 1) / 2.0
    xs = x0 + t[:, None] * (x1 - x0) - uy * offsets[None, :]
    ys = y0 + t[:, None] * (y1 - y0) + ux * offsets[None, :]
    cols_, rows_ = np.rint(xs).astype(np.int64), np.rint(ys).astype(np.int64)
    inside = np.all((rows_ >= 0) & (rows_ < shape[0]) & (cols_ >= 0) & (cols_ < shape[1]), axis=1)
    return t[inside] * length, rows_[inside], cols_[inside]

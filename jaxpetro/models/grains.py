"""Garnet grains of a quantified thin section and their 2-D zoning (the model behind ``jaxpetro section``).

From per-pixel garnet fractions and end-member maps this module finds the garnet grains
(connected components, :func:`find_grains`), locates each grain's growth centre
(:func:`growth_centre`), groups its usable pixels into concentric shells whose mean and
spread are one observation each (:func:`shells`), samples radial profiles for figures
(:func:`radial_profiles`), aligns every grain to a common growth coordinate (:func:`align`),
merges the aligned shells of many grains into one joint profile (:func:`merge`) and scores
how well each grain agrees with the others (:func:`consistency`).

**Growth geometry** (a simplification, named in docs/section.md): garnets are spheres grown
concentrically along one P–T path at one radial rate independent of size (interface-controlled
growth; Kretz 1974, Carlson 1989), all growth ending together, so the shell at distance ``u``
inside the rim of any grain grew at the same moment. A grain that nucleated later is smaller;
a grain cut at distance ``d`` from its centre shows section radius ``ρ`` where the sphere has
radius ``sqrt(ρ² + d²)``. With L the growth length (the largest grain's radius, assumed cut
through its centre and nucleated first) a grain of section radius ``r`` has the growth
coordinate

    s(ρ) = s0 + sqrt(ρ² + d²),   s0 = L − sqrt(r² + d²),   0 <= d <= sqrt(L² − r²),

so a late, centrally cut grain (``d = 0``) is a shifted copy of the reference profile and an
off-centre cut of an early grain (``s0 = 0``) a stretched one, flat near its section centre.
:func:`align` picks ``d`` by least squares against the reference grain's shells. Pure numpy
(and scikit-image for labelling); nothing here reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jax.scipy.special import gammaincc  # the chi-square survival function
from skimage import filters, measure, morphology

from jaxpetro.errors import InputError

__all__ = ["Alignment", "Consistency", "Grain", "Shells", "align", "calibration_shifts", "concentric_centre", "consistency",
           "distance_map", "find_grains", "growth_centre", "merge", "radial_profiles", "shells"]


class Grain(NamedTuple):
    """One garnet grain of the section (pixel units; rows down, columns right).

    Attributes:
        id: 1-based grain number, largest first.
        label: its value in the label image of :func:`find_grains`.
        n_pixels: pixels of the grain with inclusions filled.
        centroid: (row, col) geometric centre of the filled grain.
        radius_px: equivalent radius sqrt(n_pixels / π).
        edge: the grain touches the map edge (or a masked pixel): its outer shells are partial.
        bbox: (row0, col0, row1, col1), row1/col1 exclusive.
    """

    id: int
    label: int
    n_pixels: int
    centroid: tuple[float, float]
    radius_px: float
    edge: bool
    bbox: tuple[int, int, int, int]


def find_grains(garnet_fraction: np.ndarray, min_fraction: float = 0.5, min_pixels: int = 30,
                mask: np.ndarray | None = None, seeds: Sequence = (),
                valid: np.ndarray | None = None) -> tuple[np.ndarray, list[Grain]]:
    """Garnet grains as connected components of garnet-dominated pixels.

    Args:
        garnet_fraction: (rows, cols) garnet fraction (or membership) of every pixel.
        min_fraction: a pixel with at least this garnet fraction belongs to a grain.
        min_pixels: smaller components (with inclusions filled) are not grains.
        mask: optional (rows, cols) integer image giving the grains directly (0 background, one
            value per grain); it replaces the thresholding.
        seeds: optional (row, col) points; only the components containing one are kept.
        valid: (rows, cols) analysed pixels; a grain next to an unanalysed pixel counts as at the edge.

    Returns:
        (labels (rows, cols) int32 with 0 outside grains and ``Grain.label`` inside, grains largest
        first).

    Raises:
        InputError: a mask of the wrong shape, a seed outside the map or outside every garnet.
    """
    frac = np.asarray(garnet_fraction, float)
    rows, cols = frac.shape
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != frac.shape:
            raise InputError(f"the grain mask is {mask.shape[0]} x {mask.shape[1]} pixels but the map is {rows} x "
                             f"{cols}; give a mask image of the map's size (one value per grain, 0 elsewhere).")
        labels = measure.label(mask.astype(np.int64), background=0, connectivity=2)
    else:
        labels = measure.label(np.nan_to_num(frac) >= min_fraction, background=0, connectivity=2)
    keep = None
    if len(seeds):
        keep = set()
        for r, c in seeds:
            i, j = int(round(r)), int(round(c))
            if not (0 <= i < rows and 0 <= j < cols):
                raise InputError(f"grain seed ({r}, {c}) lies outside the {rows} x {cols} map; give (row, col) "
                                 f"pixels inside it.")
            if labels[i, j] == 0:
                raise InputError(f"grain seed ({r}, {c}) is not on a garnet pixel (garnet fraction "
                                 f"{frac[i, j]:.2f} < {min_fraction}); move it into a garnet.")
            keep.add(int(labels[i, j]))
    outside = np.zeros((rows, cols), bool) if valid is None else ~np.asarray(valid, bool)
    found = []
    out = np.zeros((rows, cols), np.int32)
    for region in measure.regionprops(labels):
        if keep is not None and region.label not in keep:
            continue
        r0, c0, r1, c1 = region.bbox
        filled = region.image_filled
        n = int(filled.sum())
        if n < min_pixels:
            continue
        touches = r0 == 0 or c0 == 0 or r1 == rows or c1 == cols
        if not touches and outside.any():
            grown = morphology.binary_dilation(np.pad(filled, 1))
            window = np.pad(outside, 1)[r0:r1 + 2, c0:c1 + 2]
            touches = bool((grown & window).any())
        yy, xx = np.nonzero(filled)
        found.append((n, region.label, (float(yy.mean() + r0), float(xx.mean() + c0)), touches, (r0, c0, r1, c1),
                      filled))
    found.sort(key=lambda g: -g[0])
    grains = []
    for k, (n, lab, centroid, touches, bbox, filled) in enumerate(found, start=1):
        r0, c0, r1, c1 = bbox
        out[r0:r1, c0:c1][filled] = k
        grains.append(Grain(k, k, n, centroid, math.sqrt(n / math.pi), bool(touches), bbox))
    return out, grains


def growth_centre(inside: np.ndarray, x_sps: np.ndarray, method: str = "mn", smooth_px: float = 2.0,
                  top: float = 0.05) -> tuple[tuple[float, float], str]:
    """Growth centre of one grain: (row, col) and how it was found.

    ``method='mn'``: the Mn maximum (spessartine is fractionated into the first garnet, so the
    growth centre is where X_sps peaks; Hollister 1966): the mean position of the ``top``
    share of the grain's pixels with the highest X_sps after Gaussian smoothing (``smooth_px``,
    NaNs and other phases left out by normalised convolution). If that maximum lies on the
    grain's outer quarter — no concentric Mn zoning to read — the geometric centre is used
    and the second value says so. ``method='geometric'``: the grain's centroid.

    Returns:
        ((row, col), 'mn' | 'geometric' | 'geometric (no Mn maximum inside the grain)').
    """
    inside = np.asarray(inside, bool)
    yy, xx = np.nonzero(inside)
    if yy.size == 0:
        raise InputError("growth_centre: the grain has no pixels.")
    geometric = (float(yy.mean()), float(xx.mean()))
    if method == "geometric":
        return geometric, "geometric"
    x = np.asarray(x_sps, float)
    ok = inside & np.isfinite(x)
    if ok.sum() < 5:
        return geometric, "geometric (no Mn maximum inside the grain)"
    num = filters.gaussian(np.where(ok, x, 0.0), sigma=smooth_px, mode="constant", preserve_range=True)
    den = filters.gaussian(ok.astype(float), sigma=smooth_px, mode="constant", preserve_range=True)
    smooth = np.where(ok & (den > 1e-6), num / np.where(den > 1e-6, den, 1.0), -np.inf)
    values = smooth[ok]
    cut = np.quantile(values, 1.0 - top)
    sel = ok & (smooth >= cut)
    centre = (float(np.nonzero(sel)[0].mean()), float(np.nonzero(sel)[1].mean()))
    r_eq = math.sqrt(inside.sum() / math.pi)
    if math.hypot(centre[0] - geometric[0], centre[1] - geometric[1]) > 0.75 * r_eq:
        return geometric, "geometric (no Mn maximum inside the grain)"
    return centre, "mn"


def concentric_centre(X: np.ndarray, usable: np.ndarray, start: tuple[float, float], radius_px: float,
                      window: float = 0.3) -> tuple[tuple[float, float], float]:
    """The centre about which the zoning is most concentric, searched near ``start``, and its score.

    For a candidate centre the usable pixels are binned in 1-pixel rings; the criterion is the
    within-ring variance of the four end-member fractions (each scaled by its variance over the
    grain), pooled over the rings per degree of freedom (pixels minus rings) — zero for perfectly
    concentric zoning, and not biased towards off-centre points, whose rings are more numerous. A 1-pixel grid of
    ± ``window`` × radius about ``start`` is searched, then a 0.25-pixel grid about its best
    point. The Mn maximum alone wanders over a flat-topped core; this uses every pixel.
    Returns ((row, col), the criterion there).
    """
    yy, xx = np.nonzero(usable)
    x = np.asarray(X, float)[usable]
    if yy.size < 20:
        return start, float("inf")
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)

    def score(r0, c0):
        ring = np.rint(np.hypot(yy - r0, xx - c0)).astype(int)
        n = np.bincount(ring)
        tot = 0.0
        for e in range(4):
            s1 = np.bincount(ring, x[:, e])
            s2 = np.bincount(ring, x[:, e] ** 2)
            tot += float(np.sum(s2 - np.where(n > 0, s1 * s1 / np.maximum(n, 1), 0.0)))
        # per degree of freedom: a centre near the rim makes more rings, each fitting some noise
        return tot / max(yy.size - int(np.count_nonzero(n)), 1)

    best = start
    for step, half in ((1.0, max(window * radius_px, 2.0)), (0.25, 1.0)):
        offsets = np.arange(-half, half + 1e-9, step)
        cands = [(best[0] + dr, best[1] + dc) for dr in offsets for dc in offsets]
        best = min(cands, key=lambda rc: score(*rc))
    return (float(best[0]), float(best[1])), score(*best)


def distance_map(shape: tuple[int, int], centre: tuple[float, float], step_um: float) -> np.ndarray:
    """(rows, cols) distance of every pixel centre from ``centre`` (µm)."""
    rr, cc = np.indices(shape, dtype=float)
    return np.hypot(rr - centre[0], cc - centre[1]) * step_um


class Shells(NamedTuple):
    """Concentric shells of one grain (or a merged set), inner to outer.

    Attributes:
        radius_um: (n,) mean distance of each shell's pixels from the centre (µm) — or the
            growth coordinate after :func:`align` / :func:`merge`.
        X: (n, 4) mean end-member fractions (alm, prp, grs, sps).
        sd: (n, 4) standard error of the mean: ``spread / sqrt(n_pixels)``, at least the
            pixels' propagated analytical error over ``sqrt(n_pixels)``.
        spread: (n, 4) standard deviation of the shell's pixels (zoning across the shell,
            counting noise, a centre slightly off).
        n_pixels: (n,) pixels per shell.
    """

    radius_um: np.ndarray
    X: np.ndarray
    sd: np.ndarray
    spread: np.ndarray
    n_pixels: np.ndarray


def _no_shells() -> Shells:
    return Shells(np.zeros(0), np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, int))


def shells(distance_um: np.ndarray, X: np.ndarray, usable: np.ndarray, width_um: float,
           X_sd: np.ndarray | None = None, min_pixels: int = 5) -> Shells:
    """Group a grain's usable pixels into annuli of ``width_um`` about its centre.

    Args:
        distance_um: (rows, cols) distance from the growth centre.
        X: (rows, cols, 4) end-member fractions per pixel.
        usable: (rows, cols) pixels of this grain that enter (pure garnet, good total, no crack).
        width_um: annulus width.
        X_sd: optional (rows, cols, 4) analytical sd per pixel (floor of the shell errors).
        min_pixels: annuli with fewer usable pixels are dropped.
    """
    ok = np.asarray(usable, bool) & np.all(np.isfinite(X), axis=-1)
    d = np.asarray(distance_um, float)[ok]
    x = np.asarray(X, float)[ok]
    xs = None if X_sd is None else np.asarray(X_sd, float)[ok]
    if d.size == 0:
        return _no_shells()
    index = np.floor(d / width_um).astype(int)
    out = []
    for k in np.unique(index):
        sel = index == k
        n = int(sel.sum())
        if n < min_pixels:
            continue
        spread = x[sel].std(axis=0, ddof=1)
        sd = spread / math.sqrt(n)
        if xs is not None:
            sd = np.maximum(sd, np.sqrt(np.nanmean(xs[sel] ** 2, axis=0)) / math.sqrt(n))
        out.append((d[sel].mean(), x[sel].mean(axis=0), sd, spread, n))
    if not out:
        return _no_shells()
    r, m, sd, spread, n = zip(*out)
    return Shells(np.array(r), np.array(m), np.array(sd), np.array(spread), np.array(n))


def radial_profiles(centre: tuple[float, float], X: np.ndarray, usable: np.ndarray, n_directions: int,
                    length_px: float, step_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """End-member profiles along ``n_directions`` rays from ``centre`` (nearest pixel, one per pixel step).

    Returns:
        (angles (n_directions,) degrees from the column axis, radius_um (m,), X (n_directions, m, 4)
        with NaN where the ray leaves the usable pixels).
    """
    rows, cols = usable.shape
    steps = np.arange(int(math.ceil(length_px)) + 1, dtype=float)
    angles = np.arange(n_directions) * 360.0 / n_directions
    out = np.full((n_directions, steps.size, 4), np.nan)
    for a, ang in enumerate(np.radians(angles)):
        rr = np.rint(centre[0] + steps * math.sin(ang)).astype(int)
        cc = np.rint(centre[1] + steps * math.cos(ang)).astype(int)
        inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        rr_in, cc_in = rr[inside], cc[inside]
        good = usable[rr_in, cc_in]
        vals = np.where(good[:, None], X[rr_in, cc_in], np.nan)
        out[a, np.flatnonzero(inside)] = vals
    return angles, steps * step_um, out


class Alignment(NamedTuple):
    """A grain's place on the common growth coordinate (µm of the reference grain).

    Attributes:
        growth_um: (n,) growth coordinate of each shell.
        cut_offset_um: d, distance of the section plane from the sphere's centre.
        start_um: s0, growth coordinate at nucleation (0 = with the reference grain).
        core_offset_um: s(0) = s0 + d, where the section's centre lies on the common path.
        chi2: misfit to the reference at the chosen d; dof: shells x end-members used.
    """

    growth_um: np.ndarray
    cut_offset_um: float
    start_um: float
    core_offset_um: float
    chi2: float
    dof: int


def _interp(reference: Shells, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference X and sd at growth coordinates ``s`` (linear; constant beyond its ends)."""
    r = reference.radius_um
    X = np.stack([np.interp(s, r, reference.X[:, e]) for e in range(4)], axis=-1)
    sd = np.stack([np.interp(s, r, reference.sd[:, e]) for e in range(4)], axis=-1)
    return X, sd


def align(grain: Shells, radius_um: float, reference: Shells, length_um: float, model_sd: float = 0.005,
          n_grid: int = 201) -> Alignment:
    """Place a grain on the reference grain's growth coordinate (module docstring).

    Args:
        grain: the grain's shells (radius = distance from its section centre, µm).
        radius_um: the grain's section radius r (equivalent radius, µm).
        reference: the reference grain's shells (its radius is the growth coordinate).
        length_um: L, the reference grain's radius (the growth length).
        model_sd: sd added to every comparison (the shells of two grains are not identical
            even on one path: irregular outlines, sectioning of finite shells).
        n_grid: grid points of the search over d in [0, sqrt(L² − r²)].
    """
    r = min(radius_um, length_um)
    d_max = math.sqrt(max(length_um**2 - r**2, 0.0))
    ds = np.linspace(0.0, d_max, n_grid) if d_max > 0 else np.zeros(1)
    best = None
    for d in ds:
        s0 = length_um - math.sqrt(r * r + d * d)
        s = s0 + np.sqrt(grain.radius_um**2 + d * d)
        Xr, sdr = _interp(reference, s)
        chi2 = float(np.sum((grain.X - Xr) ** 2 / (grain.sd**2 + sdr**2 + model_sd**2)))
        if best is None or chi2 < best[0]:
            best = (chi2, d, s0, s)
    chi2, d, s0, s = best
    return Alignment(s, float(d), float(s0), float(s0 + d), chi2, int(grain.X.size))


def merge(sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], width_um: float) -> Shells:
    """Inverse-variance combination of aligned shells of several grains on common bins.

    ``sets``: (growth_um (n,), X (n, 4), sd (n, 4)) per grain. Shells of different grains in one
    bin of ``width_um`` observe the same moment of growth, so their weighted mean with sd
    ``1/sqrt(Σ 1/sd²)`` is the same observation of the state as the shells one by one (exact for
    independent errors and a common observation function). ``spread`` holds the between-grain
    standard deviation in the bin (0 for a single shell), ``n_pixels`` the number of shells.
    """
    s = np.concatenate([np.asarray(a[0], float) for a in sets])
    X = np.concatenate([np.asarray(a[1], float) for a in sets])
    sd = np.concatenate([np.asarray(a[2], float) for a in sets])
    index = np.floor(s / width_um).astype(int)
    out = []
    for k in np.unique(index):
        sel = index == k
        w = 1.0 / sd[sel] ** 2
        m = np.sum(w * X[sel], axis=0) / np.sum(w, axis=0)
        spread = X[sel].std(axis=0) if sel.sum() > 1 else np.zeros(4)
        out.append((float(np.mean(s[sel])), m, 1.0 / np.sqrt(np.sum(w, axis=0)), spread, int(sel.sum())))
    r, m, e, spread, n = zip(*out)
    return Shells(np.array(r), np.array(m), np.array(e), np.array(spread), np.array(n))


def calibration_shifts(X: np.ndarray, rel_sd: np.ndarray) -> np.ndarray:
    """Change of end-member fractions by a one-sd calibration error of each garnet oxide.

    The fractions are cation ratios ``X_i = n_i / Σ n`` of Fe, Mg, Ca, Mn (one cation per
    oxide, so ``n_j ∝ wt_j``). A relative error ``ε_j`` of oxide j's wt% — the calibration's,
    common to every pixel — moves them by ``ΔX_i = ε_j X_j (δ_ij − X_i)`` to first order (the
    shifts sum to 0: the fractions stay on the simplex).

    Args:
        X: (n, 4) fractions in (alm, prp, grs, sps) order, i.e. FeO, MgO, CaO, MnO.
        rel_sd: (4,) relative sd of those oxides' wt% from the calibration (0 = none).

    Returns:
        (4, n, 4): the shift of every shell for a one-sd error of each oxide.
    """
    X = np.asarray(X, float)
    rel = np.asarray(rel_sd, float)
    eye = np.eye(4)
    return rel[:, None, None] * X.T[:, :, None] * (eye[:, None, :] - X[None, :, :])


class Consistency(NamedTuple):
    """Agreement of one grain with the others: chi2 over its shells against the merged
    profile of the other grains, its degrees of freedom and the upper-tail probability."""

    chi2: float
    dof: int
    p_value: float


def consistency(growth_um: np.ndarray, X: np.ndarray, sd: np.ndarray, others: Shells,
                model_sd: float = 0.005) -> Consistency:
    """Chi-square of a grain's aligned shells against the merged shells of the other grains
    (interpolated), with ``model_sd`` added in quadrature; shells outside the others' range are
    not compared. A small p-value says the grain did not grow on the others' path (or was
    misaligned)."""


    lo, hi = others.radius_um.min(), others.radius_um.max()
    sel = (growth_um >= lo) & (growth_um <= hi)
    if not sel.any():
        return Consistency(float("nan"), 0, float("nan"))
    Xo, sdo = _interp(others, growth_um[sel])
    chi2 = float(np.sum((X[sel] - Xo) ** 2 / (sd[sel] ** 2 + sdo**2 + model_sd**2)))
    dof = int(X[sel].size)
    return Consistency(chi2, dof, float(gammaincc(dof / 2.0, chi2 / 2.0)))

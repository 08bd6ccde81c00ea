"""PNG figures of run results (matplotlib, written atomically).

Figures are ``matplotlib.figure.Figure`` objects made by :func:`subplots`, not pyplot
figures: they need no GUI backend, are never registered with pyplot (nothing to close, no
memory kept between runs), and importing this module does not switch the user's
matplotlib backend (a notebook's inline backend keeps working).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from jaxpetro.io.results import atomic_write

__all__ = ["FLAG_COLOURS", "PHASE_COLOURS", "above_limit", "maps_figure", "phase_colours", "phase_map_figure",
           "phase_scaled_map_figure", "save_figure", "scalar_map_figure", "subplots"]

# Colours petrologists expect in phase maps; other names get tab20 colours.
PHASE_COLOURS = {
    "Qtz": "#d9d9d9",
    "Pl": "#9ecae1",
    "Kfs": "#fdd0a2",
    "Bt": "#8c510a",
    "Ms": "#c7e9c0",
    "Chl": "#41ab5d",
    "Grt": "#cb181d",
    "Ilm": "#252525",
    "Mag": "#525252",
    "Ap": "#f768a1",
    "Ep": "#addd8e",
    "Ky": "#6baed6",
    "St": "#e6550d",
}


def phase_colours(names: Sequence[str]) -> list:
    """One colour per phase: the usual one for known names (Grt_core -> Grt's)."""
    fallback = matplotlib.colormaps["tab20"].colors
    out = []
    for i, name in enumerate(names):
        base = name.split("_")[0]
        out.append(PHASE_COLOURS.get(name, PHASE_COLOURS.get(base, fallback[i % len(fallback)])))
    return out


def subplots(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float | int, float | int] | None = None, layout: str | None = None, **kwargs
):
    """``(figure, axes)`` like ``pyplot.subplots``, on a pyplot-free ``Figure``
    (``layout="constrained"`` keeps labels and colour bars from overlapping)."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a figure to PNG via a temporary file and rename (OutputError on failure).

    Closes it too when it is a pyplot figure (callers may still build figures with pyplot).
    """
    try:
        return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"))
    finally:
        import sys

        if "matplotlib.pyplot" in sys.modules:  # only then can the figure be registered with pyplot
            sys.modules["matplotlib.pyplot"].close(fig)


def _scale_bar(ax, cols: int, step_um: float) -> None:
    """A scale bar of a round length (~1/5 of the map width) in the lower left."""
    width_um = cols * step_um
    nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
    length = max([v for v in nice if v <= width_um / 4] or [nice[0]])
    px = length / step_um
    rows = ax.get_ylim()[0]
    x0, y0 = 0.04 * cols, rows - 0.06 * rows
    ax.plot([x0, x0 + px], [y0, y0], color="white", lw=4, solid_capstyle="butt")
    ax.plot([x0, x0 + px], [y0, y0], color="black", lw=2, solid_capstyle="butt")
    ax.text(x0 + px / 2, y0 - 0.02 * rows, f"{length:g} µm", ha="center", va="bottom", fontsize=8,
            color="black", bbox=dict(facecolor="white", alpha=0.7, lw=0, pad=1))


def phase_map_figure(
    path: str | os.PathLike,
    phase_map: np.ndarray,
    names: Sequence[str],
    *,
    truth: np.ndarray | None = None,
    modal: Sequence[float] | None = None,
    step_um: float | None = None,
    title: str = "most likely phase",
    dpi: int = 120,
) -> Path:
    """Phase map coloured by the most likely phase, with a legend (and the truth beside it).

    Args:
        phase_map: (rows, cols) int index into ``names``; -1 for unassigned pixels.
        names: phase names.
        truth: optional (rows, cols) true phase map (synthetic data), same indexing.
        modal: optional modal fraction per phase, shown in the legend.
        step_um: pixel size (µm) for a scale bar.
    """
    colours = phase_colours(names)
    cmap = ListedColormap(["#ffffff"] + colours)
    panels = [(phase_map, title)] + ([(truth, "true phase")] if truth is not None else [])
    fig, axes = subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.6, 5.2), squeeze=False)
    for ax, (full, label) in zip(axes[0], panels):
        img, factor = _reduce(np.asarray(full), categorical=True)
        ax.imshow(img + 1, cmap=cmap, vmin=0, vmax=len(names), interpolation="nearest")
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
        if step_um:
            _scale_bar(ax, img.shape[1], step_um * factor)
    labels = [f"{n} ({100 * m:.1f} %)" for n, m in zip(names, modal)] if modal is not None else list(names)
    handles = [Patch(facecolor=c, edgecolor="k", lw=0.5, label=lab) for c, lab in zip(colours, labels)]
    fig.legend(handles=handles, loc="center right", frameon=False, title="phase")
    fig.subplots_adjust(right=0.8)
    return save_figure(fig, path, dpi)


_DISPLAY_PX = 800  # a 6-inch panel at 120 dpi shows ~700 pixels: larger maps are reduced first


def _reduce(img: np.ndarray, categorical: bool) -> tuple[np.ndarray, int]:
    """The image reduced by an integer factor so that its longer side is <= ~_DISPLAY_PX
    (block means for quantities, every n-th pixel for labels), and the factor. Rendering a
    4-megapixel map at figure size costs seconds and shows nothing more."""
    f = max(1, int(np.ceil(max(img.shape[:2]) / _DISPLAY_PX)))
    if f == 1:
        return img, 1
    if categorical:
        return img[::f, ::f], f
    r, c = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    blocks = img[:r, :c].reshape(r // f, f, c // f, f)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(blocks, axis=(1, 3)), f


#: Colours of the pixels above a physical limit (100 wt%): within counting noise of it, and beyond
#: it; chosen to be absent from the colour map they are drawn over.
FLAG_COLOURS = {"viridis": ("#fdae61", "#d7191c"), "magma": ("#7fcdbb", "#1d91c0")}
_OTHER_PHASES = "#e3e3e3"  # pixels of other phases on a per-phase panel (NaN pixels stay white)


def above_limit(image: np.ndarray, limit: float, sd: np.ndarray | None = None,
                n_sd: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels above a physical limit (e.g. 100 wt% for an oxide or the analytical total).

    Args:
        image: (rows, cols) values, NaN where not analysed.
        limit: the largest value a true pixel can have (same unit as ``image``).
        sd: optional (rows, cols) standard error of each pixel (counting noise), same unit.
        n_sd: how many standard errors above ``limit`` count as "beyond noise".

    Returns:
        ``(within, beyond)`` bool masks: above ``limit`` by at most ``n_sd`` SE (a pixel whose
        true value is at the limit lands there by counting noise alone), and above it by more
        (not explained by noise: a calibration or matrix problem). Without ``sd`` every pixel
        above the limit is "beyond". NaN pixels are in neither.
    """
    image = np.asarray(image)
    with np.errstate(invalid="ignore"):
        above = image > limit
        if sd is None:
            return np.zeros_like(above), above
        beyond = above & (image - limit > n_sd * np.asarray(sd))
    return above & ~beyond, beyond


def _limits(values: np.ndarray, q: tuple[float, float], limit: float | None) -> tuple[float, float]:
    """Colour range: percentiles ``q`` of the finite ``values``, capped at ``limit``."""
    finite = values[np.isfinite(values)]
    lo, hi = (np.percentile(finite, q) if finite.size else (0.0, 1.0))
    if limit is not None:
        hi, lo = min(hi, limit), min(lo, limit)
    if hi <= lo:  # a constant map: a range of +-1 % around its value (read without an axis offset)
        pad = max(1e-3, 0.01 * abs(hi))
        lo, hi = lo - pad, hi + pad
    return float(lo), float(hi)


def _flags_reduced(within: np.ndarray, beyond: np.ndarray, factor: int) -> np.ndarray:
    """0 / 1 (above the limit within noise) / 2 (beyond noise) per displayed pixel; a reduced
    block takes the worst flag of its pixels, so that no flagged pixel disappears."""
    code = np.where(beyond, 2, np.where(within, 1, 0)).astype(np.int8)
    if factor == 1:
        return code
    r, c = (code.shape[0] // factor) * factor, (code.shape[1] // factor) * factor
    return code[:r, :c].reshape(r // factor, factor, c // factor, factor).max(axis=(1, 3))


def _draw(ax, img: np.ndarray, lo: float, hi: float, cmap: str, flags: np.ndarray | None,
          inside: np.ndarray | None = None):
    """The map on ``ax`` (flagged pixels in the flag colours, pixels outside ``inside`` grey);
    returns the image for the colour bar."""
    clear = (0.0, 0.0, 0.0, 0.0)
    shown_values = img
    if inside is not None:
        ax.imshow(np.where(np.isfinite(img) & ~inside, 1.0, np.nan), cmap=ListedColormap([_OTHER_PHASES]),
                  vmin=0.5, vmax=1.5, interpolation="nearest")
        shown_values = np.where(inside, img, np.nan)
    if flags is not None:
        shown_values = np.where(flags > 0, np.nan, shown_values)
    cm = matplotlib.colormaps[cmap].with_extremes(bad="white" if inside is None else clear)
    shown = ax.imshow(np.ma.masked_invalid(shown_values), cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
    if flags is not None and (flags > 0).any():
        if inside is not None:
            flags = np.where(inside, flags, 0)
        colours = FLAG_COLOURS.get(cmap, FLAG_COLOURS["viridis"])
        ax.imshow(np.ma.masked_equal(flags, 0), cmap=ListedColormap(list(colours)), vmin=0.5, vmax=2.5,
                  interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _flag_handles(within: np.ndarray, beyond: np.ndarray, limit: float, unit: str, n_sd: float, cmap: str,
                  with_sd: bool) -> list:
    """Legend entries of the flag colours with their pixel counts (none when nothing is flagged)."""
    n_within, n_beyond = int(within.sum()), int(beyond.sum())
    if n_within + n_beyond == 0:
        return []
    c_within, c_beyond = FLAG_COLOURS.get(cmap, FLAG_COLOURS["viridis"])
    if not with_sd:
        return [Patch(facecolor=c_beyond, label=f"> {limit:g} {unit}: {n_beyond} px")]
    return [Patch(facecolor=c_within, label=f"> {limit:g} {unit} within {n_sd:g} SE: {n_within} px"),
            Patch(facecolor=c_beyond, label=f"> {limit:g} {unit} by more than {n_sd:g} SE: {n_beyond} px")]


def _reduced_with_flags(image: np.ndarray, limit: float | None, sd: np.ndarray | None, n_sd: float, unit: str,
                        cmap: str) -> tuple[np.ndarray, int, np.ndarray | None, list]:
    """The image reduced for drawing (:func:`_reduce`) and, with a ``limit``, the flags of the pixels
    above it (counted on the full-resolution image, then reduced) and their legend handles."""
    full = np.asarray(image, np.float32)
    img, factor = _reduce(full, categorical=False)
    if limit is None:
        return img, factor, None, []
    within, beyond = above_limit(full, limit, sd, n_sd)
    flags = _flags_reduced(within, beyond, factor)
    return img, factor, flags, _flag_handles(within, beyond, limit, unit, n_sd, cmap, sd is not None)


def scalar_map_figure(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    title: str,
    unit: str = "wt%",
    step_um: float | None = None,
    dpi: int = 120,
    cmap: str = "viridis",
    limit: float | None = None,
    sd: np.ndarray | None = None,
    n_sd: float = 3.0,
) -> Path:
    """One quantity per pixel (e.g. wt% of an oxide) with a colour bar and a µm scale bar.

    The colour range is the 0.5-99.5 percentile range of the finite pixels, so a few hot
    pixels do not wash out the map; NaN pixels (e.g. outside garnet) are left white.

    Args:
        limit: optional physical maximum (100 for wt%): pixels above it are not drawn on the
            colour scale but in the flag colours (:data:`FLAG_COLOURS`; within ``n_sd``
            standard errors ``sd`` of the limit, and beyond), counted in a legend below the
            map; the colour range stops at ``limit``.
        sd: optional per-pixel standard error (same unit) for the flags (:func:`above_limit`).
    """
    img, factor, flags, handles = _reduced_with_flags(image, limit, sd, n_sd, unit, cmap)
    lo, hi = _limits(img if flags is None else np.where(flags > 0, np.nan, img), (0.5, 99.5), limit)
    fig, ax = subplots(figsize=(6.2, 5.2))
    shown = _draw(ax, img, lo, hi, cmap, flags)
    ax.set_title(title)
    if step_um:
        _scale_bar(ax, img.shape[1], step_um * factor)
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=unit)
    bar.ax.yaxis.get_major_formatter().set_useOffset(False)
    if handles:  # below the map, outside it: the tight bounding box takes it in
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncols=1, fontsize=8,
                  frameon=False)
    return save_figure(fig, path, dpi)


def phase_scaled_map_figure(
    path: str | os.PathLike,
    image: np.ndarray,
    phases: Sequence[tuple[str, np.ndarray]],
    *,
    title: str,
    unit: str = "wt%",
    step_um: float | None = None,
    dpi: int = 120,
    cmap: str = "viridis",
    limit: float | None = None,
    sd: np.ndarray | None = None,
    n_sd: float = 3.0,
    ncols: int = 4,
) -> Path:
    """One quantity on several colour scales: the whole map (0.5-99.5 percentiles of all its
    pixels) and one panel per phase on the 1-99 percentile range of that phase's pixels, the
    other phases grey. A minor zoning (garnet's 1-2 wt% of MnO, biotite's TiO2) that a
    scale set by a major phase hides fills the whole colour bar of its own panel.

    Args:
        image: (rows, cols) values, NaN where not analysed.
        phases: ``(name, mask)`` per phase panel; mask (rows, cols) bool, the phase's pixels
            (e.g. pure pixels: a mixing fraction of at least 0.9).
        limit, sd, n_sd: pixels above a physical limit flagged as in :func:`scalar_map_figure`
            (on every panel; one legend below the figure).
        ncols: panels per row.
    """
    img, factor, flags, handles = _reduced_with_flags(image, limit, sd, n_sd, unit, cmap)
    unflagged = img if flags is None else np.where(flags > 0, np.nan, img)
    panels = [("all pixels", None, (0.5, 99.5))] + [(name, mask, (1.0, 99.0)) for name, mask in phases]
    n = len(panels)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(3.9 * ncols, 3.6 * nrows + 0.5 + 0.3 * bool(handles)),
                         squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        label, mask, q = panels[i]
        inside = None
        if mask is not None:
            inside = _reduce(np.asarray(mask, np.float32), categorical=False)[0] >= 0.5
            label = f"{label} ({int(np.asarray(mask).sum())} px)"
        lo, hi = _limits(unflagged if inside is None else np.where(inside, unflagged, np.nan), q, limit)
        shown = _draw(ax, img, lo, hi, cmap, flags, inside)
        ax.set_title(label, fontsize=10)
        if step_um and i == 0:
            _scale_bar(ax, img.shape[1], step_um * factor)
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=unit)
        bar.ax.yaxis.get_major_formatter().set_useOffset(False)  # "+4.5e1" above a bar reads badly
    fig.suptitle(title)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return save_figure(fig, path, dpi)


def maps_figure(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray, str]],
    *,
    title: str,
    step_um: float | None = None,
    dpi: int = 120,
    cmap: str = "viridis",
    ncols: int = 4,
) -> Path:
    """Several quantities of one phase side by side (e.g. a garnet's X_alm, X_prp, X_grs,
    X_sps), each with its own colour bar.

    Args:
        panels: ``(label, image, unit)`` per panel; image (rows, cols), NaN pixels (outside
            the phase) are left white.
        title: the figure's title (e.g. ``"Grt (garnet): structural formula, 12 O"``).
        step_um: pixel size (µm) for a scale bar on the first panel.
        ncols: panels per row (more panels wrap onto further rows).

    Each panel's colour range is the 1-99 percentile range of its finite pixels: end-members
    of a few per cent (X_sps) show their zoning as well as the major ones do.
    """
    n = len(panels)
    if n == 0:
        raise ValueError("maps_figure needs at least one panel")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = subplots(nrows, ncols, figsize=(3.9 * ncols, 3.6 * nrows + 0.5), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        label, image, unit = panels[i]
        img, factor = _reduce(np.asarray(image, np.float32), categorical=False)
        finite = img[np.isfinite(img)]
        lo, hi = (np.percentile(finite, [1.0, 99.0]) if finite.size else (0.0, 1.0))
        if hi <= lo:  # a constant map: a small range around its value
            lo, hi = lo - 1e-3, hi + 1e-3
        cm = matplotlib.colormaps[cmap].with_extremes(bad="white")
        shown = ax.imshow(np.ma.masked_invalid(img), cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if step_um and i == 0:
            _scale_bar(ax, img.shape[1], step_um * factor)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=unit)
    fig.suptitle(title)
    return save_figure(fig, path, dpi)

"""``section_report.png`` of ``jaxpetro section``: the grains on the phase map, their aligned shell
compositions, and the joint and per-grain P–T paths with their 90 % bands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from jaxpetro.io.plots import phase_colours, save_figure, subplots

__all__ = ["section_report_figure"]

_EM = ("X_alm", "X_prp", "X_grs", "X_sps")
_EM_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a")


def section_report_figure(path: str | os.PathLike, phase_map: np.ndarray, phases: Sequence[str],
                          labels: np.ndarray, centres: Sequence[tuple[int, tuple[float, float]]],
                          shells: Sequence[tuple[int, np.ndarray, np.ndarray]], joint: Mapping[str, np.ndarray],
                          per_grain: Mapping[int, Mapping[str, np.ndarray]], step_um: float, dpi: int = 120,
                          truth: tuple[np.ndarray, np.ndarray] | None = None,
                          isopleths: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Path:
    """Three panels: (a) phase map with grain outlines, numbers and growth centres; (b) shell
    end-member fractions of every grain against the common growth coordinate (µm); (c) the joint
    P–T path with its 90 % band, each grain's path, and the truth when given ((P, T) arrays),
    over the forward table's X_grs and X_prp isopleths when ``isopleths`` = (P nodes (nP,) kbar,
    T nodes (nT,) °C, fractions (nP, nT, 4)) is given."""
    fig, axes = subplots(1, 3, figsize=(18.0, 5.2), layout="constrained")
    ax = axes[0]
    cmap = ListedColormap(phase_colours(phases))
    ax.imshow(phase_map, cmap=cmap, vmin=-0.5, vmax=len(phases) - 0.5, interpolation="nearest")
    ax.contour(labels > 0, levels=[0.5], colors="k", linewidths=0.8)
    for gid, (r, c) in centres:
        ax.plot(c, r, "+", color="yellow", ms=9, mew=2)
        ax.annotate(str(gid), (c, r), xytext=(6, 6), textcoords="offset points", color="k", fontsize=10,
                    fontweight="bold", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.8, "lw": 0})
    ax.set_title("(a) phases, garnet grains and growth centres")
    ax.set_xlabel(f"column (px, {step_um:g} µm)")
    ax.set_ylabel("row (px)")
    ax.legend(handles=[Patch(color=cmap(i), label=p) for i, p in enumerate(phases)], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    ax = axes[1]
    markers = "osD^v<>px*hH"
    for n, (gid, growth, X) in enumerate(shells):
        if growth.size != X.shape[0] or growth.size == 0:
            continue
        for e in range(4):
            ax.plot(growth, X[:, e], markers[n % len(markers)], color=_EM_COLOURS[e], ms=3.5, alpha=0.8,
                    label=_EM[e] if n == 0 else None)
    handles = [Patch(color=c, label=e) for e, c in zip(_EM, _EM_COLOURS)]
    ax.legend(handles=handles, fontsize=8, loc="center left")
    ax.set_xlabel("growth coordinate (µm of the reference grain; core → rim)")
    ax.set_ylabel("end-member fraction")
    ax.set_title("(b) shells of every grain, aligned (marker = grain)")

    ax = axes[2]
    for gid, path_g in per_grain.items():
        ax.plot(path_g["T_C"], path_g["P_kbar"], "-", lw=0.9, alpha=0.6, label=f"grain {gid}")
    T, P = joint["T_C"], joint["P_kbar"]
    ax.fill_betweenx(P, joint["T_lo"], joint["T_hi"], color="0.6", alpha=0.25, lw=0, label="joint 90 % band (T)")
    ax.fill_between(T, joint["P_lo"], joint["P_hi"], color="0.3", alpha=0.2, lw=0, label="joint 90 % band (P)")
    ax.plot(T, P, "k-", lw=2, label="joint path")
    ax.plot(T[0], P[0], "ko", ms=5)
    if truth is not None:
        ax.plot(truth[1], truth[0], "r--", lw=1.5, label="truth")
    # the view frames the paths and bands, not the whole table the isopleths come from
    t_all = np.concatenate([np.ravel(joint["T_lo"]), np.ravel(joint["T_hi"]),
                            *[np.ravel(g["T_C"]) for g in per_grain.values()],
                            *([] if truth is None else [np.ravel(truth[1])])])
    p_all = np.concatenate([np.ravel(joint["P_lo"]), np.ravel(joint["P_hi"]),
                            *[np.ravel(g["P_kbar"]) for g in per_grain.values()],
                            *([] if truth is None else [np.ravel(truth[0])])])
    t_all, p_all = t_all[np.isfinite(t_all)], p_all[np.isfinite(p_all)]
    if t_all.size and p_all.size:
        tpad, ppad = 0.06 * max(np.ptp(t_all), 10.0), 0.06 * max(np.ptp(p_all), 0.5)
        ax.set_xlim(t_all.min() - tpad, t_all.max() + tpad)
        ax.set_ylim(p_all.min() - ppad, p_all.max() + ppad)
    if isopleths is not None:
        _draw_isopleths(ax, *isopleths)
    ax.set_xlabel("T (°C)")
    ax.set_ylabel("P (kbar)")
    ax.set_title("(c) P–T paths (dot: core)" + ("; isopleths of the forward table" if isopleths is not None else ""),
                 fontsize=11 if isopleths is not None else None)
    # beside the panel, not inside it: inside, it covers the isopleth labels or the path's start
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(fig, path, dpi)


def _draw_isopleths(ax, P: np.ndarray, T: np.ndarray, X: np.ndarray) -> None:
    """Thin labelled contours of X_grs (a barometer) and X_prp (a thermometer) of the table, about
    eight levels over the values inside the current view (the axis limits are kept)."""
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    inside = ((P[:, None] >= ylim[0]) & (P[:, None] <= ylim[1]) & (T[None, :] >= xlim[0]) & (T[None, :] <= xlim[1]))
    for e, style in ((2, "-"), (1, "--")):
        values = np.asarray(X[..., e], float)
        seen = values[inside & np.isfinite(values)]
        if seen.size < 2:
            continue
        lo, hi = float(seen.min()), float(seen.max())
        step = _nice_step((hi - lo) / 8.0)
        levels = np.arange(np.ceil(lo / step) * step, hi, step)
        if levels.size == 0:
            continue
        cs = ax.contour(T, P, values, levels=levels, colors=[_EM_COLOURS[e]], linewidths=0.6, linestyles=style,
                        alpha=0.7)
        ax.clabel(cs, fontsize=6.5, fmt=lambda v, n=_EM[e]: f"{n.split('_')[1]} {v:.3g}", inline=True)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, the nearest above ``raw``."""
    if not np.isfinite(raw) or raw <= 0:
        return 0.01
    exp = np.floor(np.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10**exp >= raw:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))

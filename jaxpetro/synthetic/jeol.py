"""Write a synthetic thin section as a JEOL EPMA project (maps + ``.qnt`` spots).

The project is laid out as ``docs/jeol.md`` describes::

    <folder>/.map/1/   1_map.txt, 1.cnd, ... (old dialect)  or  data001.csv, data001.cnd, ... (new)
                       0.cnd (human-readable summary)
    <folder>/.qnt/     elem, elint, wt, net, pkint, bgm, bgp, mes, stg .qnt
                       (and peak.qnt, raw peak counts, with ``raw_peak_counts=True``)
    <folder>/.qnt/.cnd/elemw.cnd   (4 labelled lines per element: Bg+ mm, Bg- mm, peak s, bg s)

It follows the default orientation of :mod:`jaxpetro.io.jeol` for the dialect, so that
``read_jeol`` with defaults returns the section's counts and ``spot_pixels`` puts the spots
on ``section.spots.row/col``:

* old: file line = image row; stage X runs along the rows, Y along the columns;
* new: file line = image column (column-major); stage Y runs along the rows, X along the
  columns, mirrored (column 0 at the map start, the largest X).

The map start (x0, y0) is ``section.map_start_mm``; the spots' stage positions are written
in that frame (they differ from ``section.spots.x_mm/y_mm``, which use the section's own
x = column, y = row convention). All channels are written as integer counts; the BSE
signal (arbitrary units) is rounded and written as the electron channel ``electron_name``
(default ``COMPO``, JEOL's name for the compositional BSE image).

Background offsets: L+ = 3.0-3.75 mm and L- = 2.5-3.5 mm depending on the element, with a
background sloping by 2 %/mm, so that (B-·L+ + B+·L-)/(L- + L+) is exactly the section's
background at the peak position.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from jaxpetro.errors import OutputError
from jaxpetro.synthetic.thin_section import ThinSection

__all__ = ["background_offsets", "write_jeol"]

_SLOPE_PER_MM = 0.02  # relative change of the background per mm of spectrometer offset
_STAGE_Z_MM = 10.9


def background_offsets(n_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """(L+, L-) in mm of the synthetic spectrometer set-up, one per element."""
    j = np.arange(n_elements)
    return 3.0 + 0.25 * (j % 4), 2.5 + 0.5 * (j % 3)


def write_jeol(
    section: ThinSection,
    folder,
    *,
    dialect: str = "old",
    comments_encoding: str = "utf-8",
    sample: str = "synthetic schist",
    electron_name: str = "COMPO",
    raw_peak_counts: bool = False,
) -> Path:
    """Write ``section`` as a JEOL project in the new folder ``folder``.

    Args:
        section: a synthetic thin section (:func:`~jaxpetro.synthetic.make_thin_section`).
        folder: the project folder to create (it must not exist); written in a temporary
            sibling folder, then renamed.
        dialect: ``"old"`` (``<k>_map.txt`` + ``<k>.cnd``) or ``"new"`` (``data<kkk>.csv``
            + ``data<kkk>.cnd``).
        comments_encoding: encoding of every text file; the free-text fields (sample name,
            instrument) are where non-ASCII bytes appear (e.g. ``"shift_jis"``, ``"latin-1"``).
        sample: sample name written in the ``.cnd`` files and stg.qnt (blanks become ``_``).
        electron_name: the channel name of the BSE signal (an electron image name).
        raw_peak_counts: also write ``peak.qnt``, the peak intensity as raw counts
            (cps/µA x peak counting time s x probe current µA; whole numbers, since the
            synthetic peak intensities are Poisson counts over that exposure).

    Returns:
        ``folder`` as a Path: maps in ``folder/.map/1``, spots in ``folder/.qnt``.

    Raises:
        ValueError: unknown dialect. OutputError: ``folder`` exists or cannot be written.
    """
    if dialect not in ("old", "new"):
        raise ValueError(f"write_jeol: dialect must be 'old' or 'new', got {dialect!r}.")
    folder = Path(folder)
    if folder.exists():
        raise OutputError(f"cannot write the JEOL project '{folder}': it exists; give a new folder.")
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        _write_maps(section, tmp / ".map" / "1", dialect, comments_encoding, sample.replace(" ", "_"), electron_name)
        _write_spots(section, tmp / ".qnt", dialect, comments_encoding, sample.replace(" ", "_"), raw_peak_counts)
        os.rename(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, (OSError, UnicodeEncodeError)):
            raise OutputError(f"cannot write the JEOL project '{folder}': {err}.") from err
        raise
    return folder


def _write_text(path: Path, lines: list[str], encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def _write_maps(section: ThinSection, folder: Path, dialect: str, encoding: str, sample: str, electron: str) -> None:
    rows, cols = section.shape
    x0, y0 = section.map_start_mm
    # (nx, ny): lines of the file x values per line; old rows follow X, new columns do.
    nx, ny = (rows, cols) if dialect == "old" else (cols, rows)
    names = [electron if c == "BSE" else c for c in section.channels]
    for k, name in enumerate(names, 1):
        image = np.rint(section.counts[..., k - 1]).astype(np.int64)
        matrix = image if dialect == "old" else image.T
        if dialect == "old":
            stem, sep = f"{k}", " "
            cnd = [
                "$CM_INSTRUMENT JXA-8530F (synthetic)",
                f"$CM_SAMPLE {sample}",
                f"$CM_CURRENT {section.current_A:.12g}",
                f"$XM_ELEMENT {name}",
                f"$XM_DWELL_TIME {section.dwell_ms:.12g} msec",
                f"$XM_STEP_SIZE {section.step_um:.12g} {section.step_um:.12g} um",
                f"$XM_MAP_START {x0:.12g} {y0:.12g} {_STAGE_Z_MM} mm",
                f"$XM_POINTS {nx} {ny}",
            ]
        else:
            stem, sep = f"data{k:03d}", ","
            signal = f"$XM_ELEM_IMS_SIGNAL_TYPE%0 {name}" if name == electron else f"$XM_ELEM_NAME%0 {name}"
            cnd = [
                "$XM_ANALYSIS_INSTRUMENT JXA-8230 (synthetic)",
                f"$XM_DATA_SAMPLE_NAME {sample}",
                signal,
                f"$XM_AP_SA_DWELL_TIME%0 {section.dwell_ms:.12g}",
                f"$XM_DATA_PROBE_CURRENT {section.current_A:.12g}",
                f"$XM_AP_SA_STAGE_POS%0_1 {x0:.12g} {y0:.12g} {_STAGE_Z_MM}",
                f"$XM_AP_SA_PIXELS%0 {nx} {ny}",
                f"$XM_AP_SA_PIXEL_SIZE%0 {section.step_um:.12g}",
            ]
        _write_text(folder / f"{stem}.cnd", cnd, encoding)
        _write_text(folder / f"{stem}{'_map.txt' if dialect == 'old' else '.csv'}", [sep.join(map(str, r)) for r in matrix.tolist()], encoding)
    summary = [
        f"{sample} Sample",
        f"{x0:.12g} {y0:.12g} {_STAGE_Z_MM} Start position [mm]",
        f"{nx} {ny} Number of steps",
        f"{section.step_um:.12g} Step size [um]",
        f"{section.dwell_ms:.12g} Dwell time [msec]",
        f"{section.current_A:.12g} Probe current [A]",
    ]
    _write_text(folder / "0.cnd", summary, encoding)


def _write_spots(section: ThinSection, folder: Path, dialect: str, encoding: str, sample: str,
                 raw_peak_counts: bool = False) -> None:
    spots = section.spots
    n_el = len(section.elements)
    x0, y0 = section.map_start_mm
    along_row = spots.row * section.step_um / 1000.0
    along_col = spots.col * section.step_um / 1000.0
    # Stage positions in the dialect's default frame (see the module docstring).
    x, y = (x0 + along_row, y0 + along_col) if dialect == "old" else (x0 - along_col, y0 + along_row)
    plus, minus = background_offsets(n_el)
    bgm = spots.background * (1.0 + _SLOPE_PER_MM * minus)
    bgp = spots.background * (1.0 - _SLOPE_PER_MM * plus)

    def values(table: np.ndarray) -> list[str]:
        # 17 digits: exact round trip, so that pkint - net gives back the background to rounding
        return [f"{i} {n_el} " + " ".join(f"{v:.17g}" for v in row) + f" {row.sum():.17g}" for i, row in zip(spots.id, table)]

    files = {
        "elem": [f"{i} {n_el} " + " ".join(section.oxides) for i in spots.id],
        "elint": [f"{i} {n_el} " + " ".join(section.elements) for i in spots.id],
        "wt": values(spots.wt),
        "net": values(spots.peak - spots.background),
        "pkint": values(spots.peak),
        "bgm": values(bgm),
        "bgp": values(bgp),
        "mes": [f"{i} 1 {float(c):.12g}" for i, c in zip(spots.id, spots.current_A)],
        "stg": [
            f"{i} {sample} Pos_{i:04d} 1 {xi:.6f} {yi:.6f} {_STAGE_Z_MM} 1 0 {phase}"
            for i, xi, yi, phase in zip(spots.id, x, y, spots.phase)
        ],
    }
    if raw_peak_counts:  # counts = cps/µA x t x I; rint removes the float error of the division in the simulator
        counts = np.rint(spots.peak * spots.peak_time_s * (spots.current_A[:, None] * 1e6))
        files["peak"] = values(counts)
    for name, lines in files.items():
        _write_text(folder / f"{name}.qnt", lines, encoding)
    elemw = []
    for j in range(n_el):
        elemw += [
            f"{plus[j]:.4f} Back +[mm]",
            f"{minus[j]:.4f} Back -[mm]",
            f"{spots.peak_time_s:.12g} Peak Meas. Time [sec]",
            f"{spots.background_time_s:.12g} Back Meas. Time [sec]",
        ]
    _write_text(folder / ".cnd" / "elemw.cnd", elemw, encoding)

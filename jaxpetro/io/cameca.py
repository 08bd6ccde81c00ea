"""Cameca SX / Peaksight text exports: X-ray maps (one text file per channel) and spot CSVs.

The layout read here is described in ``docs/formats.md``. A map file is a header of
``key: value`` lines (a tab, ``=`` or ``;`` may stand for the colon) followed by the matrix,
one image row per line:

==========================  =========================================================
header key (any case)       meaning
==========================  =========================================================
``Image`` (or ``Label``,    the channel: an element line (``Si Ka``, ``Si``) or an
``Element``, ``Signal``)    electron signal (``BSE``...)
``Start``                   stage position x y of pixel (0, 0); µm unless the key
                            carries a unit (``Start (mm)``)
``Step``                    pixel size, one value (square pixels) or x y, µm unless
                            the key carries a unit
``Number of lines``         rows of the matrix (``Lines``, ``Nb lines`` also)
``Number of columns``       optional: values per row (``Columns``, ``Points per line``)
``Dwell``                   optional: dwell time per pixel, ms unless the key says ``(s)``
                            or ``(us)``
``Current``                 optional: probe current, nA unless the key says ``(A)`` or
                            ``(uA)``
==========================  =========================================================

Other header lines (date, voltage, comments) are kept out of the way. Values in the matrix
are separated by blanks, tabs, commas or semicolons; every row must have the same length
and there must be exactly ``Number of lines`` rows.

Spot CSV (Peaksight's quantitative export, comma- or semicolon-separated): a label column
(``Comment``, ``Name``, ``Label`` or ``phase``), the stage position ``X``, ``Y`` (µm unless
the header says ``X (mm)``), wt% per oxide named by the oxide with an optional unit
(``SiO2``, ``SiO2 (wt%)``, ``SiO2(Mass%)``, ``SiO2_wt``), optionally ``<El> Peak`` and
``<El> Bkg`` intensities in cps/nA (returned in cps/µA) and ``Current`` (nA). Spots are put
on the map grid with :func:`spot_pixels` from their stage position.

Every problem raises :class:`~jaxpetro.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io._numbers import is_number, parse_number
from jaxpetro.io._text import text_lines  # Peaksight writes Windows-1252 (µ, °): latin-1 fallback
from jaxpetro.io.generic import MapStack, SpotSet

__all__ = ["MAP_SUFFIXES", "CamecaMap", "read_cameca", "read_cameca_map", "read_cameca_maps", "read_cameca_spots",
           "spot_pixels"]

#: Suffixes of map files picked up when a folder is given.
MAP_SUFFIXES = (".txt", ".asc", ".dat")

_LENGTH_UM = {"um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "mm": 1e3, "nm": 1e-3}
_TIME_MS = {"ms": 1.0, "msec": 1.0, "s": 1e3, "sec": 1e3, "us": 1e-3, "µs": 1e-3, "usec": 1e-3}
_CURRENT_A = {"na": 1e-9, "a": 1.0, "ua": 1e-6, "µa": 1e-6, "pa": 1e-12}
_KEYS = {
    "image": re.compile(r"^(image|label|element|signal|channel)\b", re.I),
    "start": re.compile(r"^start\b", re.I),
    "step": re.compile(r"^(step|pixel size)\b", re.I),
    "lines": re.compile(r"^(number of lines|nb\.? ?(of )?lines|lines|rows)\b", re.I),
    "columns": re.compile(r"^(number of columns|nb\.? ?(of )?columns|columns|points per line|pixels per line)\b", re.I),
    "dwell": re.compile(r"^dwell\b", re.I),
    "current": re.compile(r"^(probe )?current\b", re.I),
}
_UNIT = re.compile(r"[\(\[]\s*([^\)\]]+?)\s*[\)\]]")
_SEPARATOR = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class CamecaMap:
    """One channel of a Cameca text export.

    Attributes:
        path: the file.
        channel: element symbol (``Si`` from ``Si Ka``) or electron signal name.
        counts: (rows, cols) float64 as in the file (row = file line).
        start_um: stage (x, y) of pixel (0, 0) in µm.
        step_um: pixel size in µm (square).
        dwell_ms, current_A: acquisition conditions, None when the header lacks them.
    """

    path: Path
    channel: str
    counts: np.ndarray
    start_um: tuple[float, float]
    step_um: float
    dwell_ms: float | None
    current_A: float | None


def read_cameca(maps, spots=None, *, dwell_ms: float | None = None, current_A: float | None = None,
                mirror: str = "none") -> tuple[MapStack, SpotSet | None]:
    """Read a Cameca map export (a folder or list of per-channel text files) and its spot CSV.

    Args:
        maps: a folder (every ``.txt``/``.asc``/``.dat`` file in it, sorted by name) or a list
            of map files.
        spots: the spot CSV, or None.
        dwell_ms, current_A: conditions for files whose header lacks ``Dwell`` / ``Current``
            (a header value wins).
        mirror: stage axes that run against the pixel index (``"none"``, ``"x"``, ``"y"``,
            ``"xy"``), for :func:`spot_pixels`.

    Returns:
        (stack, spots): the MapStack (``map_start_mm`` = start in mm) and the SpotSet with
        ``row``/``col`` filled (None when ``spots`` is None).
    """
    stack = read_cameca_maps(maps, dwell_ms=dwell_ms, current_A=current_A)
    if spots is None:
        return stack, None
    spot_set = read_cameca_spots(spots)
    row, col = spot_pixels(spot_set, stack, mirror=mirror)
    return stack, replace(spot_set, row=row, col=col)


def read_cameca_maps(maps, *, dwell_ms: float | None = None, current_A: float | None = None) -> MapStack:
    """The channels of one map area as a MapStack (see :func:`read_cameca`)."""
    files = _map_paths(maps)
    channels = [read_cameca_map(f) for f in files]
    first = channels[0]
    for c in channels[1:]:
        if c.counts.shape != first.counts.shape:
            raise InputError(f"Cameca map '{c.path}' is {c.counts.shape[0]} x {c.counts.shape[1]} but '{first.path}' is "
                             f"{first.counts.shape[0]} x {first.counts.shape[1]}; all maps of an area must have one grid.")
        for label, a, b in (("start", c.start_um, first.start_um), ("step", c.step_um, first.step_um)):
            if not np.allclose(a, b, rtol=1e-9, atol=1e-9):
                raise InputError(f"Cameca map '{c.path}' has the {label} {a} µm but '{first.path}' {b} µm; all maps of an "
                                 "area must share one grid.")
    names = [c.channel for c in channels]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InputError(f"channel '{dup}' is mapped twice ({', '.join(str(c.path) for c in channels if c.channel == dup)}); "
                         "remove one of the files.")

    def condition(c: CamecaMap, key: str, given, label: str) -> float:
        value = getattr(c, key) if getattr(c, key) is not None else given
        if value is None:
            raise InputError(f"Cameca map '{c.path}' has no '{label}' header line and none is given; add it to the header "
                             f"or give input.{key}.")
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"Cameca map '{c.path}': the {label.lower()} must be positive, got {value}.")
        return float(value)

    return MapStack(
        counts=np.stack([c.counts for c in channels], axis=-1).astype(np.float32),
        channels=tuple(names),
        dwell_ms=np.array([condition(c, "dwell_ms", dwell_ms, "Dwell") for c in channels]),
        current_A=np.array([condition(c, "current_A", current_A, "Current") for c in channels]),
        step_um=first.step_um,
        map_start_mm=(first.start_um[0] / 1e3, first.start_um[1] / 1e3),
    )


def read_cameca_map(path) -> CamecaMap:
    """Read one channel's text export (header, then the matrix)."""
    path = Path(path)
    lines = text_lines(path, "Cameca map")
    header: dict[str, tuple[str, str, int]] = {}  # key -> (value text, unit, line)
    first_data = None
    for n, line in lines:
        fields = [f for f in _SEPARATOR.split(line) if f]
        if fields and all(is_number(f) for f in fields):
            first_data = n
            break
        name, value = _split_header(line)
        for key, rx in _KEYS.items():
            if key not in header and rx.search(name):
                unit = _UNIT.search(name)
                header[key] = (value, unit.group(1).lower() if unit else "", n)
                break
    for key, label in (("image", "Image"), ("start", "Start"), ("step", "Step"), ("lines", "Number of lines")):
        if key not in header:
            raise InputError(f"Cameca map '{path}': missing header line '{label}: ...' before the matrix; the export "
                             "needs Image, Start, Step and Number of lines (see docs/formats.md).")
    if first_data is None:
        raise InputError(f"Cameca map '{path}' has a header but no matrix; the file is truncated, re-export it.")

    def numbers(key: str, count: tuple[int, ...]) -> list[float]:
        value, _, n = header[key]
        fields = [f for f in _SEPARATOR.split(value) if f]
        if len(fields) not in count:
            raise InputError(f"Cameca map '{path}', line {n}: '{value}' must hold {' or '.join(map(str, count))} number(s).")
        return [parse_number(f, f"Cameca map '{path}', line {n}", missing=None) for f in fields]

    def factor(key: str, table: dict, default: str) -> float:
        unit = header[key][1] or default
        if unit not in table:
            raise InputError(f"Cameca map '{path}', line {header[key][2]}: unknown unit '{unit}'; use one of {', '.join(table)}.")
        return table[unit]

    start = [v * factor("start", _LENGTH_UM, "um") for v in numbers("start", (2, 3))[:2]]
    steps = [v * factor("step", _LENGTH_UM, "um") for v in numbers("step", (1, 2))]
    if any(abs(s - steps[0]) > 1e-9 * abs(steps[0]) for s in steps) or not steps[0] > 0:
        raise InputError(f"Cameca map '{path}', line {header['step'][2]}: the step must be one positive value (square "
                         f"pixels), got {header['step'][0]}.")
    n_lines = numbers("lines", (1,))[0]
    if n_lines != int(n_lines) or n_lines < 1:
        raise InputError(f"Cameca map '{path}', line {header['lines'][2]}: the number of lines must be a positive integer.")
    n_cols = None
    if "columns" in header:
        n_cols = numbers("columns", (1,))[0]
    rows, width = [], None
    for n, line in lines:
        if n < first_data:
            continue
        fields = [f for f in _SEPARATOR.split(line) if f]
        values = [parse_number(f, f"Cameca map '{path}', line {n}, column {j + 1}", missing=None,
                               hint=" (the matrix must hold counts only)") for j, f in enumerate(fields)]
        if width is not None and len(values) != width:
            raise InputError(f"Cameca map '{path}', line {n}: {len(values)} values where the rows above have {width}; the "
                             "file is truncated or damaged.")
        width = len(values)
        rows.append(values)
    counts = np.array(rows, np.float64)
    if counts.shape[0] != int(n_lines):
        raise InputError(f"Cameca map '{path}': the header gives {int(n_lines)} lines (line {header['lines'][2]}) but the "
                         f"matrix has {counts.shape[0]}; the file is truncated or the header is wrong.")
    if n_cols is not None and counts.shape[1] != int(n_cols):
        raise InputError(f"Cameca map '{path}': the header gives {int(n_cols)} columns (line {header['columns'][2]}) but "
                         f"the rows hold {counts.shape[1]} values.")
    if np.any(counts < 0):
        r, c = np.argwhere(counts < 0)[0]
        raise InputError(f"Cameca map '{path}', line {first_data + r}: negative count {counts[r, c]:g}; X-ray counts are >= 0.")
    dwell = numbers("dwell", (1,))[0] * factor("dwell", _TIME_MS, "ms") if "dwell" in header else None
    current = numbers("current", (1,))[0] * factor("current", _CURRENT_A, "na") if "current" in header else None
    return CamecaMap(path, _channel_name(header["image"][0], path, header["image"][2]), counts,
                     (start[0], start[1]), steps[0], dwell, current)


def read_cameca_spots(path) -> SpotSet:
    """Read a Peaksight spot CSV (see the module docstring); ``row``/``col`` are left None."""
    from jaxpetro.chemistry import OXIDES  # a table, no JAX work at import

    path = Path(path)
    text = "\n".join(line for _, line in text_lines(path, "Cameca spot table"))
    delimiter = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    table = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter)]
    header = [h.strip() for h in table[0]]
    body = table[1:]
    if not body:
        raise InputError(f"Cameca spot table '{path}' has a header but no spots.")
    base = {i: _UNIT.sub("", h).strip().lower() for i, h in enumerate(header)}
    label = next((i for key in ("comment", "name", "label", "phase") for i, b in base.items() if b == key), None)
    xi = next((i for i, b in base.items() if b == "x"), None)
    yi = next((i for i, b in base.items() if b == "y"), None)
    missing = [name for name, i in (("Comment/Name", label), ("X", xi), ("Y", yi)) if i is None]
    if missing:
        raise InputError(f"Cameca spot table '{path}': missing column(s) {', '.join(missing)}; found {', '.join(header)}.")

    def unit_of(i: int, table: dict, default: str) -> float:
        unit = _UNIT.search(header[i])
        u = unit.group(1).lower() if unit else default
        if u not in table:
            raise InputError(f"Cameca spot table '{path}', column '{header[i]}': unknown unit '{u}'; use one of {', '.join(table)}.")
        return table[u]

    def column(i: int, scale: float = 1.0, required: bool = True) -> np.ndarray:
        out = np.empty(len(body))
        for r, cells in enumerate(body):
            if len(cells) != len(header):
                raise InputError(f"Cameca spot table '{path}', line {r + 2}: {len(cells)} cells for {len(header)} columns.")
            out[r] = parse_number(cells[i], f"Cameca spot table '{path}', line {r + 2}, column '{header[i]}'",
                                  missing=None if required else np.nan) * scale
        return out

    oxides, wt_cols = [], []
    for i, h in enumerate(header):
        name = re.sub(r"\s*[\(\[].*$", "", h).strip()
        name = name[:-3] if name.endswith("_wt") else name
        if name in OXIDES and i not in (label, xi, yi):
            oxides.append(name)
            wt_cols.append(i)
    if not oxides:
        raise InputError(f"Cameca spot table '{path}': no wt% oxide columns (SiO2, Al2O3...); found {', '.join(header)}.")
    elements = tuple(OXIDES[o].cation for o in oxides)
    if len(set(elements)) != len(elements):
        raise InputError(f"Cameca spot table '{path}': two wt% columns for one element ({', '.join(oxides)}).")
    wt = np.stack([column(i, required=False) for i in wt_cols], axis=1)

    def intensities(word: str) -> np.ndarray | None:
        found = [next((i for i, b in base.items() if b == f"{e.lower()} {word}"), None) for e in elements]
        if all(i is None for i in found):
            return None
        # cps/nA -> cps/µA (x 1000): qmap's intensities are per µA
        return np.stack([np.full(len(body), np.nan) if i is None else column(i, 1e3 * unit_of(i, {"cps/na": 1.0}, "cps/na"),
                                                                               required=False) for i in found], axis=1)

    peak, bg = intensities("peak"), intensities("bkg")
    if (peak is None) != (bg is None):
        raise InputError(f"Cameca spot table '{path}': peak intensities need background columns and vice versa "
                         "('<El> Peak' and '<El> Bkg', cps/nA).")
    current_i = next((i for i, b in base.items() if b == "current"), None)
    phase = tuple(cells[label].strip() for cells in body)
    for r, p in enumerate(phase):
        if not p:
            raise InputError(f"Cameca spot table '{path}', line {r + 2}: empty label in column '{header[label]}'; name the "
                             "phase of every spot.")
    return SpotSet(
        id=np.arange(1, len(body) + 1, dtype=np.int64), phase=phase, elements=elements, oxides=tuple(oxides), wt=wt,
        peak=peak, background=bg,
        current_A=None if current_i is None else column(current_i, unit_of(current_i, _CURRENT_A, "na")),
        x_mm=column(xi, unit_of(xi, _LENGTH_UM, "um") / 1e3), y_mm=column(yi, unit_of(yi, _LENGTH_UM, "um") / 1e3),
        use=np.ones(len(body), bool),
    )


def spot_pixels(spots: SpotSet, stack: MapStack, *, mirror: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of each spot: col = round((x - x0) / step), row = round((y - y0) / step),
    negated along a mirrored axis; raises InputError naming the spots off the map."""
    if mirror not in ("none", "x", "y", "xy"):
        raise ConfigError(f"input.mirror must be 'none', 'x', 'y' or 'xy', got {mirror!r}.")
    x0, y0 = stack.map_start_mm
    sx = -1.0 if "x" in mirror else 1.0
    sy = -1.0 if "y" in mirror else 1.0
    col = np.rint(sx * (spots.x_mm - x0) * 1e3 / stack.step_um).astype(np.int64)
    row = np.rint(sy * (spots.y_mm - y0) * 1e3 / stack.step_um).astype(np.int64)
    n_rows, n_cols = stack.counts.shape[:2]
    bad = np.flatnonzero((row < 0) | (row >= n_rows) | (col < 0) | (col >= n_cols))
    if bad.size:
        where = "; ".join(f"spot {spots.id[i]} ({spots.phase[i]}) at ({spots.x_mm[i] * 1e3:.2f}, {spots.y_mm[i] * 1e3:.2f}) "
                          f"µm -> row {row[i]}, col {col[i]}" for i in bad[:5])
        raise InputError(f"{bad.size} spot(s) lie outside the {n_rows} x {n_cols} map: {where}. Check input.mirror (now "
                         f"'{mirror}') and that the spots belong to this map area.")
    return row, col


# ----------------------------------------------------------------------------- helpers


def _map_paths(maps) -> list[Path]:
    if isinstance(maps, (str, os.PathLike)):
        folder = Path(maps)
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MAP_SUFFIXES and p.is_file())
            if not files:
                raise InputError(f"Cameca map folder '{folder}' holds no map files ({', '.join(MAP_SUFFIXES)}).")
            return files
        return [folder]
    files = [Path(m) for m in maps]
    if not files:
        raise InputError("no Cameca map files given; list one text export per channel.")
    return files


def _split_header(line: str) -> tuple[str, str]:
    """``key: value`` (or tab / ``=`` / ``;``) -> (key, value)."""
    m = re.match(r"^([^:=\t;]+?)\s*(?::|=|\t|;)\s*(.*)$", line)
    return (m.group(1), m.group(2)) if m else (line, "")


def _channel_name(value: str, path: Path, line: int) -> str:
    """``Si Ka`` / ``Si-Ka`` / ``Si`` -> ``Si``; an electron signal keeps its name (``BSE``)."""
    from jaxpetro.chemistry import is_electron

    token = re.split(r"[\s_\-]+", value.strip())[0] if value.strip() else ""
    if not token:
        raise InputError(f"Cameca map '{path}', line {line}: empty Image name; name the channel (e.g. 'Si Ka' or 'BSE').")
    return token.upper() if is_electron(token) else token[0].upper() + token[1:].lower()

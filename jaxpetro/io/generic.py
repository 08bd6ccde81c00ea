"""The instrument-neutral input: a map stack file plus a spot table CSV.

Map stack (``.npz`` or ``.h5``/``.hdf5``):

=============  =====================  ==========================================
key            shape                  meaning
=============  =====================  ==========================================
``maps``       (channels, rows, cols) counts per pixel (X-ray channels) or signal
``channels``   (channels,) str        element symbols (``Si``...) or ``BSE``...
``dwell_ms``   (channels,) or ()      dwell time per pixel (ms)
``current_A``  (channels,) or ()      probe current (A)
``step_um``    () optional            pixel size (µm)
=============  =====================  ==========================================

Spot table (CSV): ``x_px`` (column index), ``y_px`` (row index), ``phase`` (label),
then optional columns: ``id``; wt% per oxide named by the oxide (``SiO2`` or
``SiO2_wt``); intensities in cps/µA per element, ``Si_peak``, ``Si_bg`` (background at
the peak position) or ``Si_net``; ``current_A``. :func:`read_spot_set` returns them as a
:class:`SpotSet`; :func:`read_spots` keeps any numeric column by name.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io._numbers import parse_number
from jaxpetro.io.results import atomic_write, write_csv

__all__ = ["MapStack", "SpotPixels", "SpotSet", "read_map_stack", "read_spot_set", "read_spots", "write_map_stack",
           "write_spots"]

_REQUIRED = ("maps", "channels", "dwell_ms", "current_A")


@dataclass(frozen=True)
class MapStack:
    """X-ray (and electron) maps of one area.

    Attributes:
        counts: (rows, cols, channels) float32.
        channels: channel names.
        dwell_ms, current_A: (channels,) acquisition conditions.
        step_um: pixel size (µm) or None.
        map_start_mm: stage position (x, y) in mm of pixel (0, 0), or None.
        dead_time_ns: (channels,) counter dead time in ns from the map conditions, or None.
    """

    counts: np.ndarray
    channels: tuple[str, ...]
    dwell_ms: np.ndarray
    current_A: np.ndarray
    step_um: float | None = None
    map_start_mm: tuple[float, float] | None = None
    dead_time_ns: np.ndarray | None = None


@dataclass(frozen=True)
class SpotSet:
    """Quantitative spot analyses, whatever the instrument (the readers' common output).

    Attributes:
        id: int64 (n,) spot ids, unique.
        phase: n phase labels (the operator's comment, e.g. ``Grt`` or ``Grt_rim``).
        elements: J element symbols analysed (``Si``...), one per oxide.
        oxides: J oxide formulas (``SiO2``...), same order as ``elements``.
        wt: float64 (n, J) wt% oxide (NaN where not reported).
        peak: float64 (n, J) peak intensity in cps/µA, or None when not reported.
        background: float64 (n, J) background intensity at the peak position in cps/µA, or None.
        current_A: float64 (n,) probe current of each spot in A, or None.
        x_mm, y_mm: float64 (n,) stage position in mm, or None (generic tables give pixels).
        row, col: int64 (n,) pixel of each spot when the table gives it, else None
            (JEOL: computed from the stage position and the map's orientation).
        use: bool (n,) False for spots excluded by the user (``phase_list.csv``).
    """

    id: np.ndarray
    phase: tuple[str, ...]
    elements: tuple[str, ...]
    oxides: tuple[str, ...]
    wt: np.ndarray
    peak: np.ndarray | None = None
    background: np.ndarray | None = None
    current_A: np.ndarray | None = None
    x_mm: np.ndarray | None = None
    y_mm: np.ndarray | None = None
    row: np.ndarray | None = None
    col: np.ndarray | None = None
    use: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.id.shape[0])


@dataclass(frozen=True)
class SpotPixels:
    """Spot analyses located on the map grid."""

    row: np.ndarray
    col: np.ndarray
    phase: tuple[str, ...]
    columns: dict  # further numeric columns by name, each (n_spots,)


def read_map_stack(path: str | os.PathLike) -> MapStack:
    """Read a map stack from ``.npz`` or ``.h5``; raises InputError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"map stack '{path}' not found; check input.maps (paths are relative to the working directory).")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                raw = {k: f[k] for k in f.files}
        elif suffix in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                raw = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        else:
            raise InputError(f"map stack '{path}': unknown file type '{suffix}'; use .npz or .h5.")
    except (OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as err:
        # An empty file raises EOFError, a damaged member zlib.error or BadZipFile (CRC),
        # a truncated HDF5 file OSError: all mean an incomplete or damaged file.
        what = "it is empty (0 bytes)" if path.stat().st_size == 0 else f"{type(err).__name__}: {err}"
        raise InputError(f"map stack '{path}' cannot be read ({what}); is it a complete .npz/.h5 file? "
                         "Re-export or re-copy it.") from None
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise InputError(f"map stack '{path}': missing {', '.join(missing)}; it needs {', '.join(_REQUIRED)}.")
    maps = np.asarray(raw["maps"])
    if maps.ndim != 3 or not np.issubdtype(maps.dtype, np.number):
        raise InputError(f"map stack '{path}': 'maps' must be a numeric (channels, rows, cols) array, got {maps.shape} {maps.dtype}.")
    if maps.size == 0:
        raise InputError(f"map stack '{path}': 'maps' is empty ({' x '.join(map(str, maps.shape))} = channels x rows x "
                         "cols); it needs at least one channel and one pixel.")
    channels = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in np.atleast_1d(raw["channels"]))
    n = maps.shape[0]
    if len(channels) != n:
        raise InputError(f"map stack '{path}': {len(channels)} channel names for {n} maps.")
    if len(set(channels)) != n:
        raise InputError(f"map stack '{path}': duplicate channel names {channels}.")
    conds = {}
    for key in ("dwell_ms", "current_A"):
        v = np.broadcast_to(np.asarray(raw[key], np.float64), (n,)) if np.ndim(raw[key]) == 0 else np.asarray(raw[key], np.float64)
        if v.shape != (n,) or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise InputError(f"map stack '{path}': '{key}' must be positive, one value or one per channel ({n}).")
        conds[key] = v
    step = float(raw["step_um"]) if "step_um" in raw else None
    return MapStack(np.moveaxis(maps, 0, -1).astype(np.float32), channels, conds["dwell_ms"], conds["current_A"], step)


def write_map_stack(path: str | os.PathLike, stack: MapStack) -> Path:
    """Write a map stack as ``.npz`` (atomically)."""
    arrays = {
        "maps": np.moveaxis(stack.counts, -1, 0),
        "channels": np.array(stack.channels),
        "dwell_ms": stack.dwell_ms,
        "current_A": stack.current_A,
    }
    if stack.step_um is not None:
        arrays["step_um"] = np.float64(stack.step_um)

    def write(tmp: Path) -> None:
        with open(tmp, "xb") as fh:
            np.savez_compressed(fh, **arrays)

    return atomic_write(Path(path), write)


def read_spots(path: str | os.PathLike, shape: tuple[int, int]) -> SpotPixels:
    """Read a spot CSV and check every spot lies on the ``shape`` = (rows, cols) grid."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"spot table '{path}' not found; check input.spots.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"spot table '{path}' cannot be read as UTF-8 text ({err}).") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("x_px", "y_px", "phase") if c not in header]
    if missing:
        raise InputError(f"spot table '{path}': missing column(s) {', '.join(missing)}; found {header}.")
    rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    if not rows:
        raise InputError(f"spot table '{path}' has no spots.")
    numeric = [h for h in header if h != "phase"]
    values = {}
    for h in numeric:  # an empty cell is NaN (not reported)
        values[h] = np.array([parse_number(r[h], f"spot table '{path}', line {i + 2}, column '{h}'", finite=False)
                              for i, r in enumerate(rows)])
    x, y = values.pop("x_px"), values.pop("y_px")
    r_max, c_max = shape
    for i, (xi, yi) in enumerate(zip(x, y)):
        if not (np.isfinite(xi) and np.isfinite(yi) and xi == int(xi) and yi == int(yi)):
            raise InputError(f"spot table '{path}', line {i + 2}: x_px, y_px must be whole pixel indices, got ({xi}, {yi}).")
        if not (0 <= xi < c_max and 0 <= yi < r_max):
            raise InputError(
                f"spot table '{path}', line {i + 2}: spot at (x_px={int(xi)}, y_px={int(yi)}) lies outside the "
                f"{c_max} x {r_max} map; check the coordinates (x is the column, y the row)."
            )
    phase = tuple(r["phase"] for r in rows)
    if any(p == "" for p in phase):
        i = phase.index("")
        raise InputError(f"spot table '{path}', line {i + 2}: empty phase label.")
    return SpotPixels(y.astype(np.int64), x.astype(np.int64), phase, values)


def read_spot_set(path: str | os.PathLike, shape: tuple[int, int]) -> SpotSet:
    """Read a generic spot CSV as a :class:`SpotSet` (columns: see the module docstring)."""
    from jaxpetro.chemistry import OXIDES  # a table, no JAX work at import

    raw = read_spots(path, shape)
    cols = dict(raw.columns)
    n = raw.row.shape[0]
    ids = cols.pop("id", np.arange(1, n + 1, dtype=np.float64))
    if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
        raise InputError(f"spot table '{path}': column 'id' must hold whole numbers.")
    ids = ids.astype(np.int64)
    dup = sorted({int(i) for i in ids if np.sum(ids == i) > 1})
    if dup:
        raise InputError(f"spot table '{path}': duplicate spot id(s) {dup}; every spot needs its own id.")
    oxides = []
    for name in list(cols):
        ox = name[:-3] if name.endswith("_wt") else name
        if ox in OXIDES:
            oxides.append((ox, name))
    elements = tuple(OXIDES[o].cation for o, _ in oxides)
    if len(set(elements)) != len(elements):
        raise InputError(f"spot table '{path}': two wt% columns for one element ({[o for o, _ in oxides]}).")
    wt = np.stack([cols[c] for _, c in oxides], axis=1) if oxides else np.zeros((n, 0))

    def per_element(suffixes):
        found = [next((cols[f"{e}_{s}"] for s in suffixes if f"{e}_{s}" in cols), None) for e in elements]
        if all(f is None for f in found):
            return None
        return np.stack([np.full(n, np.nan) if f is None else f for f in found], axis=1)

    peak, bg, net = per_element(("peak",)), per_element(("bg", "background")), per_element(("net",))
    if peak is None and net is not None and bg is not None:
        peak = net + bg
    if peak is not None and bg is None:
        raise InputError(f"spot table '{path}': peak intensities without background columns (<El>_bg, cps/µA).")
    current = cols.get("current_A")
    return SpotSet(
        id=ids, phase=raw.phase, elements=elements, oxides=tuple(o for o, _ in oxides), wt=wt,
        peak=peak, background=bg, current_A=current, row=raw.row, col=raw.col, use=np.ones(n, bool),
    )


def write_spots(path: str | os.PathLike, row, col, phase, columns: dict | None = None) -> Path:
    """Write a spot CSV (x_px, y_px, phase, then ``columns``) atomically."""
    columns = columns or {}
    header = ["x_px", "y_px", "phase", *columns]
    values = [np.asarray(v) for v in columns.values()]
    cell = [int if np.issubdtype(v.dtype, np.integer) else float for v in values]  # ids stay whole numbers
    table = [[int(c), int(r), p, *(f(v[i]) for f, v in zip(cell, values))] for i, (r, c, p) in enumerate(zip(row, col, phase))]
    return write_csv(path, header, table)


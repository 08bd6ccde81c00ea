"""JEOL EPMA exports: X-ray maps (``.map/<n>/``) and spot analyses (``.qnt/``).

The file formats are described in ``docs/jeol.md``; this module returns them as the
instrument-neutral :class:`~jaxpetro.io.generic.MapStack` and
:class:`~jaxpetro.io.generic.SpotSet`.

Map dialects (auto-detected from the files in the map folder):

* ``"old"`` (JXA-8800/8105/8530): ``<k>_map.txt`` (whitespace-separated) + ``<k>.cnd``;
* ``"new"`` (JXA-8230 and later): ``data<kkk>.csv`` (comma-separated) + ``data<kkk>.cnd``.

Besides these text exports, each dialect's instrument stores the maps as binary files, read
too: ``<k>.map`` (old) or ``data<kkk>.map`` (new), next to the same ``.cnd`` files. A binary
map holds the ``nx x ny`` matrix of the ``.cnd`` (``$XM_POINTS`` / ``$XM_AP_SA_PIXELS%0``) as
unsigned 16- or 32-bit integers, big-endian by default, in the text export's order (``nx``
lines of ``ny`` values), after an optional header; the value size is inferred from the file
size (see :func:`read_jeol_maps`). Text exports are preferred when a folder holds both.

Image frame. Both dialects store, per channel, a matrix of ``nx`` lines of ``ny`` values
(``$XM_POINTS`` / ``$XM_AP_SA_PIXELS`` = ``nx ny``): the file's lines run along stage X.
The reader returns ``counts[row, col, channel]`` as follows:

* old: file line i is image row i, so rows follow stage X and columns stage Y, neither
  mirrored (``row_axis="x"``, ``mirror="none"``);
* new: the pixel order is column-major, so file line i is image column i (the matrix is
  transposed): rows follow stage Y, columns stage X, and X is mirrored - column 0 lies at
  the largest X, the map start (``row_axis="y"``, ``mirror="x"``).

``map_start_mm`` is the stage position (x, y) of pixel (0, 0) in mm. :func:`spot_pixels`
turns the spots' stage positions into pixels of this frame with those per-dialect defaults;
both keys can be overridden when an instrument is set up differently.

Text is decoded as UTF-8, else Shift-JIS (cp932), else latin-1, so comment bytes of any of
these never stop a read; Windows line endings and extra whitespace are tolerated. Every
problem with the files raises :class:`~jaxpetro.errors.InputError` naming the file (and
line, column or spot id) and how to fix it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.chemistry import is_electron
from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io._numbers import is_number, parse_number
from jaxpetro.io._text import numbered_lines, read_text
from jaxpetro.io.generic import MapStack, SpotSet

__all__ = ["MAX_HEADER_BYTES", "NET_TOLERANCE", "JeolIntensityWarning", "detect_dialect", "read_jeol", "read_jeol_maps",
           "read_jeol_spots", "spot_pixels"]

#: Relative tolerance of the check ``pkint - background = net`` (share of the peak intensity).
#: JEOL computes net.qnt from the same peak and side backgrounds, so on a linear background the
#: three agree to the files' rounding; a larger difference means a curved (exponential) or
#: offset background, or files from different exports.
NET_TOLERANCE = 0.01


class JeolIntensityWarning(UserWarning):
    """The spot intensities of a JEOL export disagree (``pkint - background != net``)."""

DIALECTS = ("old", "new")
#: Orientation of the image frame per dialect: (row_axis, mirror), see the module docstring.
DEFAULT_ORIENTATION = {"old": ("x", "none"), "new": ("y", "x")}

_MAP_FILE = {"old": re.compile(r"^(\d+)_map\.txt$", re.I), "new": re.compile(r"^data(\d+)\.csv$", re.I)}
_BINARY_FILE = {"old": re.compile(r"^(\d+)\.map$", re.I), "new": re.compile(r"^data(\d+)\.map$", re.I)}
MAP_KINDS = ("auto", "text", "binary")
BYTE_ORDERS = {"big": ">", "little": "<"}
_DTYPES = {"uint16": 2, "uint32": 4}
#: Largest header (bytes) accepted before the matrix of a binary ``.map``. The value size is
#: inferred from the file size, so the bound is what separates "a header" from "a file that
#: does not hold nx x ny values" (truncated, or wrong pixel numbers in the .cnd).
MAX_HEADER_BYTES = 4096
_MAP_CSV_COLUMNS = (
    "Element", "File path", "Dwell [msec]", "Probe current [A]",
    "Start X [mm]", "Start Y [mm]", "Step size [um]", "Steps X", "Steps Y",
)  # fmt: skip
_SPOT_CSV_COLUMNS = ("Oxide", "Element", "Bg+ [mm]", "Bg- [mm]", "Peak [sec]", "Bg [sec]")
_DWELL_UNIT_MS = {"msec": 1.0, "ms": 1.0, "sec": 1e3, "s": 1e3, "usec": 1e-3, "us": 1e-3}


# ----------------------------------------------------------------------------- public API


def read_jeol(
    map_dir,
    qnt_dir,
    *,
    dialect: str = "auto",
    map_conditions=None,
    spot_conditions=None,
    phase_list=None,
    dead_time_ns=None,
    map_files: str = "auto",
    byte_order: str = "big",
    map_dtype: str = "auto",
) -> tuple[MapStack, SpotSet]:
    """Read a JEOL map folder and its ``.qnt`` spot folder.

    See :func:`read_jeol_maps` and :func:`read_jeol_spots`; the spots' ``row``/``col`` are
    left None (locate them with :func:`spot_pixels`).
    """
    stack = read_jeol_maps(map_dir, dialect=dialect, map_conditions=map_conditions, dead_time_ns=dead_time_ns,
                           map_files=map_files, byte_order=byte_order, map_dtype=map_dtype)
    spots = read_jeol_spots(qnt_dir, spot_conditions=spot_conditions, phase_list=phase_list)
    return stack, spots


def detect_dialect(map_dir, map_conditions=None, map_files: str = "auto") -> str:
    """``"old"`` or ``"new"``: the dialect of the map files in ``map_dir`` (or named in
    the ``map_conditions`` CSV). Raises InputError when both or neither are present.
    ``map_files``: ``"text"``, ``"binary"`` (``.map``) or ``"auto"`` (text, else binary)."""
    if map_conditions is not None:
        return _dialect_of_paths(Path(map_conditions), [p for _, p in _map_csv_rows(Path(map_conditions))])
    _check_kind(map_files)
    found = {d: _map_files(Path(map_dir), d, map_files) for d in DIALECTS}
    if found["old"] and found["new"]:
        raise InputError(
            f"map folder '{map_dir}' holds both <k>_map.txt (old JEOL) and data<kkk>.csv (new JEOL) maps; "
            "keep one export per folder or set the dialect explicitly ('old' or 'new')."
        )
    if not (found["old"] or found["new"]):
        raise InputError(
            f"map folder '{map_dir}' holds no JEOL maps (<k>_map.txt, data<kkk>.csv, <k>.map or data<kkk>.map"
            f"{'' if map_files == 'auto' else ' of kind ' + repr(map_files)}); point to the folder of one map area, "
            "e.g. '.map/1'."
        )
    return "old" if found["old"] else "new"


def read_jeol_maps(map_dir, *, dialect: str = "auto", map_conditions=None, dead_time_ns=None, map_files: str = "auto",
                   byte_order: str = "big", map_dtype: str = "auto") -> MapStack:
    """Read the maps of one area: counts, channels and acquisition conditions.

    Args:
        map_dir: folder holding the per-channel map files and ``.cnd`` files (e.g. ``.map/1``).
        dialect: ``"auto"`` (from the files present), ``"old"`` or ``"new"``.
        map_conditions: optional CSV of the map conditions (columns ``Element, File path,
            Instrument, Dwell [msec], Probe current [A], Start X [mm], Start Y [mm], Step
            size [um], Steps X, Steps Y`` and optionally ``dead time [ns]``; an empty cell
            repeats the row above). When given it replaces the ``.cnd`` files: it lists the
            channels and their files (relative paths: from the CSV's folder, else ``map_dir``).
        dead_time_ns: detector dead time in ns, one value or ``{channel: ns}``; overrides the
            CSV's column. Electron channels always get 0.
        map_files: ``"text"`` (the exports above), ``"binary"`` (``<k>.map`` / ``data<kkk>.map``)
            or ``"auto"`` (text when the folder has text maps of the dialect, else binary). With a
            ``map_conditions`` CSV each file's suffix decides (``.map`` = binary).
        byte_order: ``"big"`` (default) or ``"little"``: byte order of the binary maps.
        map_dtype: ``"uint16"``, ``"uint32"`` or ``"auto"``: value size of the binary maps; auto
            takes the largest size whose ``nx * ny`` values fit the file with at most
            :data:`MAX_HEADER_BYTES` of header before them (the matrix is the file's last bytes).

    Returns:
        MapStack with float32 ``counts[row, col, channel]`` in the dialect's image frame,
        ``dwell_ms``/``current_A`` per channel, ``step_um``, ``map_start_mm`` (x, y of pixel
        (0, 0)) and ``dead_time_ns`` (None when neither source gives it).
    """
    map_dir = Path(map_dir)
    if map_conditions is None and not map_dir.is_dir():
        raise InputError(
            f"map folder '{map_dir}' not found; give the folder of one map area (e.g. '.map/1'), "
            "relative to the working directory."
        )
    _check_kind(map_files)
    if byte_order not in BYTE_ORDERS:
        raise ConfigError(f"byte order of JEOL binary maps must be 'big' or 'little', got {byte_order!r}.")
    if map_dtype not in ("auto", *_DTYPES):
        raise ConfigError(f"value type of JEOL binary maps must be 'auto', 'uint16' or 'uint32', got {map_dtype!r}.")
    dialect = _check_dialect(dialect) if dialect != "auto" else detect_dialect(map_dir, map_conditions, map_files)
    if map_conditions is None:
        channels = [_channel_from_cnd(path, dialect) for path in _map_files(map_dir, dialect, map_files)]
        if not channels:
            raise InputError(f"map folder '{map_dir}' holds no {dialect}-dialect JEOL maps; check the dialect.")
    else:
        channels = _channels_from_csv(Path(map_conditions), map_dir)
    _check_same_geometry(channels)
    counts = _read_counts(channels, dialect, byte_order, map_dtype)
    names = tuple(c.name for c in channels)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        files = [str(c.path) for c in channels if c.name == dup]
        raise InputError(f"channel '{dup}' is mapped twice ({', '.join(files)}); remove one of the files.")
    first = channels[0]
    return MapStack(
        counts=counts,
        channels=names,
        dwell_ms=np.array([c.dwell_ms for c in channels]),
        current_A=np.array([c.current_A for c in channels]),
        step_um=first.step_um,
        map_start_mm=first.start_mm,
        dead_time_ns=_dead_times(channels, dead_time_ns),
    )


def read_jeol_spots(qnt_dir, *, spot_conditions=None, phase_list=None) -> SpotSet:
    """Read the spot analyses of a ``.qnt`` folder.

    Args:
        qnt_dir: the ``.qnt`` folder (``elem.qnt``, ``elint.qnt``, ``wt.qnt``, ``stg.qnt``;
            optionally ``net.qnt``, ``pkint.qnt``, ``peak.qnt``, ``bgm.qnt``, ``bgp.qnt``,
            ``mes.qnt`` and ``.cnd/elemw.cnd`` or ``Pos_0001/data001.cnd``).
        spot_conditions: optional CSV (``Oxide, Element, Bg+ [mm], Bg- [mm], Peak [sec],
            Bg [sec]``) replacing ``elemw.cnd``; it also names the elements and oxides when
            ``elem.qnt``/``elint.qnt`` are missing.
        phase_list: optional CSV ``id, phase, use``: relabels the listed spots (an empty
            phase keeps the label of ``stg.qnt``) and excludes those with use false.

    Returns:
        SpotSet in the order of ``stg.qnt``: wt%, peak and background at the peak position
        (cps/µA), probe current (A), stage x, y (mm); ``row``/``col`` None. The intensities
        are arranged so that ``peak - background`` is JEOL's ``net.qnt``, the net intensity
        the reported wt% came from (alpha is fitted on it):

        * peak: ``pkint.qnt`` (cps/µA); without it ``peak.qnt`` (raw counts) divided by the
          peak counting time (s, ``elemw.cnd`` or the spot-conditions CSV) x the probe current
          (µA, ``mes.qnt``); without either, net + interpolated background;
        * background: peak - net when both exist, else interpolated from the side
          backgrounds, (B-·L+ + B+·L-)/(L- + L+) with offsets L.

        When peak, net and both side backgrounds exist, ``pkint - B = net`` is checked to
        :data:`NET_TOLERANCE` of the peak intensity; spots that disagree are named in a
        :class:`JeolIntensityWarning`.
    """
    qnt_dir = Path(qnt_dir)
    if not qnt_dir.is_dir():
        raise InputError(
            f"spot folder '{qnt_dir}' not found; give the '.qnt' folder of the project "
            "(relative to the working directory)."
        )
    stg = _read_qnt(qnt_dir / "stg.qnt", required=True)
    ids = list(stg)
    table = _SpotTable(qnt_dir, ids)
    conditions = _spot_conditions(Path(spot_conditions)) if spot_conditions is not None else None
    elements, oxides = _element_names(table, conditions)
    values = {key: table.values(key, len(elements)) for key in ("wt", "net", "pkint", "peak_counts", "bgm", "bgp")}
    if values["wt"] is None:
        raise InputError(f"spot folder '{qnt_dir}' lacks wt.qnt (wt% of each spot); re-export the analyses.")
    peak, background = _intensities(qnt_dir, table, values, elements, conditions, ids)
    phase = [_stg_label(stg[i][0]) for i in ids]
    use = np.ones(len(ids), bool)
    if phase_list is not None:
        _apply_phase_list(Path(phase_list), ids, phase, use)
    for i, (label, used) in enumerate(zip(phase, use)):
        if used and not label:
            raise InputError(
                f"spot {ids[i]} has no phase label ('{qnt_dir / 'stg.qnt'}', line {stg[ids[i]][1]}, column 10); "
                "label it in phase_list.csv or exclude it there (use = FALSE)."
            )
    return SpotSet(
        id=np.array(ids, np.int64),
        phase=tuple(phase),
        elements=elements,
        oxides=oxides,
        wt=values["wt"],
        peak=peak,
        background=background,
        current_A=table.current(),
        x_mm=np.array([_stg_float(stg, i, 5, qnt_dir) for i in ids]),
        y_mm=np.array([_stg_float(stg, i, 6, qnt_dir) for i in ids]),
        use=use,
    )


def spot_pixels(
    spots: SpotSet, stack: MapStack, *, row_axis: str = "auto", mirror: str = "auto", dialect: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (row, col) of the image frame under each spot, from its stage position.

    Along a stage axis the pixel index is round((s - s0) * 1000 / step_um), negated for a
    mirrored axis, with s0 the map start; ``row_axis`` names the stage axis that runs along
    the row index (the other runs along the column index).

    Args:
        spots: from :func:`read_jeol_spots` (needs ``x_mm``, ``y_mm``).
        stack: from :func:`read_jeol_maps` (needs ``step_um``, ``map_start_mm``).
        row_axis: ``"x"``, ``"y"`` or ``"auto"`` (old dialect ``"x"``, new ``"y"``).
        mirror: ``"none"``, ``"x"``, ``"y"``, ``"xy"`` or ``"auto"`` (old ``"none"``, new ``"x"``).
        dialect: ``"old"`` or ``"new"`` (:func:`detect_dialect`), for the ``"auto"`` values.

    Returns:
        int64 arrays (row, col), one entry per spot; -1 for an excluded spot
        (``use`` False) that lies outside the map.

    Raises:
        InputError: a used spot lies outside the map (names it, its position and the
            orientation in force), or positions/geometry are missing.
        ConfigError: an unknown ``row_axis``, ``mirror`` or ``dialect``.
    """
    dialect = _check_dialect(dialect, ConfigError)
    row_axis = DEFAULT_ORIENTATION[dialect][0] if row_axis == "auto" else row_axis
    mirror = DEFAULT_ORIENTATION[dialect][1] if mirror == "auto" else mirror
    if row_axis not in ("x", "y"):
        raise ConfigError(f"input.row_axis must be 'auto', 'x' or 'y', got {row_axis!r}.")
    if mirror not in ("none", "x", "y", "xy"):
        raise ConfigError(f"input.mirror must be 'auto', 'none', 'x', 'y' or 'xy', got {mirror!r}.")
    if spots.x_mm is None or spots.y_mm is None:
        raise InputError("the spots have no stage positions (stg.qnt); cannot place them on the map.")
    if stack.step_um is None or stack.map_start_mm is None:
        raise InputError("the maps have no step size or start position; give them in the map conditions.")
    x0, y0 = stack.map_start_mm
    index = {
        "x": (-1.0 if "x" in mirror else 1.0) * (spots.x_mm - x0) * 1000.0 / stack.step_um,
        "y": (-1.0 if "y" in mirror else 1.0) * (spots.y_mm - y0) * 1000.0 / stack.step_um,
    }
    row = np.rint(index[row_axis]).astype(np.int64)
    col = np.rint(index["y" if row_axis == "x" else "x"]).astype(np.int64)
    n_rows, n_cols = stack.counts.shape[:2]
    outside = (row < 0) | (row >= n_rows) | (col < 0) | (col >= n_cols)
    use = np.ones(len(spots), bool) if spots.use is None else np.asarray(spots.use, bool)
    bad = np.flatnonzero(outside & use)
    if bad.size:
        where = "; ".join(
            f"spot {spots.id[i]} at stage ({spots.x_mm[i]:.4f}, {spots.y_mm[i]:.4f}) mm -> pixel "
            f"(row {row[i]}, col {col[i]})"
            for i in bad[:5]
        )
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        default = DEFAULT_ORIENTATION[dialect]
        raise InputError(
            f"{bad.size} spot(s) lie outside the {n_rows} x {n_cols} map: {where}{more}. Check input.row_axis "
            f"(now '{row_axis}') and input.mirror (now '{mirror}'); the {dialect} JEOL dialect's default is "
            f"row_axis='{default[0]}', mirror='{default[1]}'. A spot analysed off the mapped area can be "
            "excluded in phase_list.csv (use = FALSE)."
        )
    row[outside] = -1
    col[outside] = -1
    return row, col


# ----------------------------------------------------------------------------- text


def _read_text(path: Path, what: str) -> str:
    """The text of ``path`` (:func:`jaxpetro.io._text.read_text`), UTF-8, else Shift-JIS (JEOL's Japanese
    Windows), else latin-1."""
    return read_text(path, what, ("utf-8-sig", "cp932"))


def _read_csv(path: Path, what: str, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as (line number, {column: stripped cell}); checks the header."""
    reader = csv.reader(io.StringIO(_read_text(path, what)))
    rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{what} '{path}' is empty; it needs a header line with {', '.join(required)}.")
    header = [h.strip() for h in rows[0][1]]
    canon = {h.lower(): h for h in header}
    missing = [c for c in required if c.lower() not in canon]
    if missing:
        raise InputError(f"{what} '{path}': missing column(s) {', '.join(missing)}; found {', '.join(header)}.")
    out = []
    for line, cells in rows[1:]:
        cells = [c.strip() for c in cells] + [""] * max(0, len(header) - len(cells))
        out.append((line, {h.lower(): c for h, c in zip(header, cells)}))
    return out


def _float(text: str, where: str, hint: str = "") -> float:
    """A required finite number (the JEOL files have no missing values)."""
    return parse_number(text, where, missing=None, hint=hint)


# ----------------------------------------------------------------------------- maps


@dataclass(frozen=True)
class _Channel:
    """One map file and its acquisition conditions; ``source`` names where they came from."""

    name: str
    path: Path
    source: str
    dwell_ms: float
    current_A: float
    step_um: float
    start_mm: tuple[float, float]
    pixels: tuple[int, int]  # (nx, ny): lines of the file, values per line
    dead_time_ns: float | None = None


def _check_dialect(dialect: str, error=InputError) -> str:
    if dialect not in DIALECTS:
        raise error(f"unknown JEOL dialect {dialect!r}; use 'old' (<k>_map.txt maps) or 'new' (data<kkk>.csv maps).")
    return dialect


def _check_kind(map_files: str) -> None:
    if map_files not in MAP_KINDS:
        raise ConfigError(f"JEOL map files must be 'auto', 'text' or 'binary' (.map), got {map_files!r}.")


def _map_files(map_dir: Path, dialect: str, kind: str = "auto") -> list[Path]:
    """The map files of one dialect in ``map_dir``, in channel order (by their number):
    text exports (``kind="text"``), binary ``.map`` files (``"binary"``) or text when there
    are any, else binary (``"auto"``)."""
    try:
        names = os.listdir(map_dir)
    except OSError as err:
        raise InputError(f"map folder '{map_dir}' cannot be listed ({err.strerror or err}); check the path.") from None

    def hits(pattern) -> list[Path]:
        found = [(int(m.group(1)), name) for name in names if (m := pattern.match(name))]
        return [map_dir / name for _, name in sorted(found)]

    if kind == "binary":
        return hits(_BINARY_FILE[dialect])
    text = hits(_MAP_FILE[dialect])
    return text if (text or kind == "text") else hits(_BINARY_FILE[dialect])


def _dialect_of_paths(source: Path, paths: list[Path]) -> str:
    kinds = {"new" if (p.suffix.lower() == ".csv" or _BINARY_FILE["new"].match(p.name)) else "old" for p in paths}
    if len(kinds) != 1:
        raise InputError(
            f"map conditions '{source}' list both .csv (new JEOL) and .txt (old JEOL) map files; "
            "use one export, or set the dialect explicitly."
        )
    return kinds.pop()


def _parse_cnd(path: Path) -> dict[str, tuple[list[str], int]]:
    """``$KEY value...`` lines of a .cnd file: {KEY (upper case): (values, line)}; first wins."""
    keys: dict[str, tuple[list[str], int]] = {}
    for n, line in numbered_lines(_read_text(path, "condition file")):
        if line.startswith("$") and line[1:].split():
            key, *values = line[1:].split()
            keys.setdefault(key.upper(), (values, n))
    return keys


_CND_KEYS = {
    "old": {
        "name": "XM_ELEMENT", "dwell": "XM_DWELL_TIME", "current": "CM_CURRENT",
        "step": "XM_STEP_SIZE", "start": "XM_MAP_START", "pixels": "XM_POINTS",
    },
    "new": {
        "name": "XM_ELEM_NAME%0", "dwell": "XM_AP_SA_DWELL_TIME%0", "current": "XM_DATA_PROBE_CURRENT",
        "step": "XM_AP_SA_PIXEL_SIZE%0", "start": "XM_AP_SA_STAGE_POS%0_1", "pixels": "XM_AP_SA_PIXELS%0",
    },
}  # fmt: skip
_SIGNAL_KEY = "XM_ELEM_IMS_SIGNAL_TYPE%0"  # new dialect: names the electron image (COMPO, SEI...)


def _channel_from_cnd(map_path: Path, dialect: str) -> _Channel:
    """Conditions of one map from the ``.cnd`` file of the same stem."""
    cnd = map_path.with_name(re.sub(r"_map$", "", map_path.stem, flags=re.I) + ".cnd")  # 1_map.txt -> 1.cnd
    fix = "; complete it or give the map conditions as a CSV (map_conditions, see docs/jeol.md)"
    if not cnd.is_file():
        raise InputError(f"map '{map_path}' has no condition file '{cnd.name}'{fix}.")
    keys = _parse_cnd(cnd)
    names = _CND_KEYS[dialect]

    def values(field: str, count: int) -> list[str]:
        key = names[field]
        if key not in keys or len(keys[key][0]) < count:
            raise InputError(f"condition file '{cnd}' lacks ${key} ({count} value(s)){fix}.")
        return keys[key][0]

    def numbers(field: str, count: int) -> list[float]:
        vals, line = values(field, count), keys[names[field]][1]
        return [_float(v, f"condition file '{cnd}', line {line} (${names[field]})") for v in vals[:count]]

    signal = keys.get(_SIGNAL_KEY, ([], 0))[0]
    if dialect == "new" and signal and is_electron(signal[0]):
        name = signal[0].upper()
    else:
        name = values("name", 1)[0]
    dwell_vals = values("dwell", 1)
    unit = dwell_vals[1].lower() if len(dwell_vals) > 1 else "msec"
    if unit not in _DWELL_UNIT_MS:
        raise InputError(f"condition file '{cnd}': unknown dwell-time unit '{dwell_vals[1]}'; use msec or sec.")
    step = numbers("step", 1)[0]
    # "5 5 um", "5", or JXA-8230's "0.50 0.50 50.00" (x, y, then a third value that is not a step)
    steps = [float(v) for v in values("step", 1) if is_number(v)][:2]
    if any(abs(s - step) > 1e-9 * step for s in steps):
        raise InputError(f"condition file '{cnd}': non-square pixels ({' x '.join(map(str, steps))} µm) are not supported.")
    nx, ny = numbers("pixels", 2)
    return _checked_channel(
        name=name,
        path=map_path,
        source=f"condition file '{cnd}'",
        dwell_ms=numbers("dwell", 1)[0] * _DWELL_UNIT_MS[unit],
        current_A=numbers("current", 1)[0],
        step_um=step,
        start_mm=tuple(numbers("start", 2)),
        pixels=(nx, ny),
    )


def _checked_channel(*, pixels, **fields) -> _Channel:
    source = fields["source"]
    for key, label in (("dwell_ms", "dwell time"), ("current_A", "probe current"), ("step_um", "step size")):
        if not fields[key] > 0:
            raise InputError(f"{source}: the {label} must be positive, got {fields[key]}.")
    if any(p != int(p) or p < 1 for p in pixels):
        raise InputError(f"{source}: the pixel numbers must be positive integers, got {pixels}.")
    return _Channel(pixels=(int(pixels[0]), int(pixels[1])), **fields)


def _map_csv_rows(path: Path) -> list[tuple[dict[str, str], Path]]:
    """Rows of the map-conditions CSV, empty cells filled from the row above, with the
    resolved map path (relative: from the CSV's folder; the caller may re-root it)."""
    rows = _read_csv(path, "map conditions", _MAP_CSV_COLUMNS)
    if not rows:
        raise InputError(f"map conditions '{path}' list no maps; add one row per channel.")
    filled, previous = [], {}
    for line, row in rows:
        row = {k: (v if v != "" else previous.get(k, "")) for k, v in row.items()}
        row["_line"] = str(line)
        previous = row
        filled.append((row, Path(row["file path"])))
    return filled


def _channels_from_csv(path: Path, map_dir: Path) -> list[_Channel]:
    channels = []
    for row, file in _map_csv_rows(path):
        where = f"map conditions '{path}', line {row['_line']}"
        if not file.is_absolute():
            candidates = [path.parent / file, map_dir / file]
            file = next((c for c in candidates if c.is_file()), candidates[0])
        if not file.is_file():
            raise InputError(f"{where}: map file '{row['file path']}' not found (looked in '{path.parent}' and '{map_dir}').")

        def num(column: str) -> float:
            return _float(row[column.lower()], f"{where}, column '{column}'", " (an empty first row has no value to repeat)")

        dead = row.get("dead time [ns]", "")
        channels.append(
            _checked_channel(
                name=row["element"],
                path=file,
                source=where,
                dwell_ms=num("Dwell [msec]"),
                current_A=num("Probe current [A]"),
                step_um=num("Step size [um]"),
                start_mm=(num("Start X [mm]"), num("Start Y [mm]")),
                pixels=(num("Steps X"), num("Steps Y")),
                dead_time_ns=_float(dead, f"{where}, column 'dead time [ns]'") if dead else None,
            )
        )
        if not channels[-1].name:
            raise InputError(f"{where}: empty Element; name the channel (e.g. Si or COMPO).")
    return channels


def _check_same_geometry(channels: list[_Channel]) -> None:
    first = channels[0]
    for c in channels[1:]:
        for field, label in (("step_um", "step size"), ("start_mm", "map start"), ("pixels", "pixel numbers")):
            a, b = np.asarray(getattr(first, field), float), np.asarray(getattr(c, field), float)
            if not np.allclose(a, b, rtol=1e-9, atol=1e-9):
                raise InputError(
                    f"{c.source} gives the {label} {getattr(c, field)} but {first.source} gives "
                    f"{getattr(first, field)}; all channels of a map area must share one grid."
                )


def _read_matrix(path: Path, dialect: str) -> np.ndarray:
    """The count matrix of one map file, as stored (lines x values), float64."""
    rows, width = [], None
    for n, line in numbered_lines(_read_text(path, "map")):
        if dialect == "new":
            fields = [f.strip() for f in line.split(",")]
            if fields[-1] == "":  # a trailing comma ends some exports' lines
                fields.pop()
        else:
            fields = line.split()
        try:
            values = np.array(fields, dtype=np.float64)
        except ValueError:
            values = None
        if values is None or not np.all(np.isfinite(values)):
            j = next((j for j, f in enumerate(fields) if not (is_number(f) and np.isfinite(float(f)))), 0)
            raise InputError(
                f"map '{path}', line {n}, column {j + 1}: '{fields[j]}' is not a count; the map files must hold "
                "numbers only (re-export the map as text)."
            )
        if np.any(values < 0):
            j = int(np.flatnonzero(values < 0)[0])
            raise InputError(
                f"map '{path}', line {n}, column {j + 1}: negative count {fields[j]}; X-ray counts are >= 0 "
                "(re-export the map, or check that this is a count map)."
            )
        if width is not None and values.size != width:
            raise InputError(f"map '{path}', line {n}: {values.size} values where the lines above have {width}; the file is truncated or damaged.")
        width = values.size
        rows.append(values)
    if not rows:
        raise InputError(f"map '{path}' is empty; re-export the map.")
    return np.stack(rows)


def _read_binary_matrix(path: Path, pixels: tuple[int, int], byte_order: str, dtype: str) -> np.ndarray:
    """The ``nx x ny`` matrix of a binary ``.map`` (unsigned integers, the file's last
    ``nx * ny * size`` bytes), float64; the value size from ``dtype`` or the file size."""
    n = pixels[0] * pixels[1]
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"map '{path}' cannot be read ({err.strerror or err}); check that it is a readable file.") from None
    sizes = [_DTYPES[dtype]] if dtype != "auto" else [4, 2]  # largest first: the smallest header wins
    size = next((s for s in sizes if 0 <= len(raw) - n * s <= MAX_HEADER_BYTES), None)
    if size is None:
        need = " or ".join(f"{n * s} (uint{8 * s})" for s in sorted(sizes))
        short = len(raw) < n * min(sizes)
        raise InputError(
            f"map '{path}' has {len(raw)} bytes, which do not hold {pixels[0]} x {pixels[1]} = {n} values: it needs "
            f"{need} bytes plus at most {MAX_HEADER_BYTES} header bytes. "
            + ("The file is truncated; re-copy or re-export it." if short else
               "The pixel numbers of its .cnd (nx ny) are wrong for this file, or it is not a JEOL binary map.")
        )
    values = np.frombuffer(raw, dtype=f"{BYTE_ORDERS[byte_order]}u{size}", count=n, offset=len(raw) - n * size)
    nonzero = values[values != 0]
    # Counts read in the wrong byte order are whole multiples of 256 (uint16) or 65536 (uint32)
    # wherever the true count is below 256: real count maps never look like that.
    step = np.uint64(256 if size == 2 else 65536)
    if nonzero.size >= 16 and np.all(nonzero.astype(np.uint64) % step == 0):
        other = "little" if byte_order == "big" else "big"
        raise InputError(
            f"map '{path}': every nonzero value is a multiple of {int(step)}, the mark of counts read in the wrong "
            f"byte order; read it with byte order '{other}' (input.byte_order: {other})."
        )
    return values.reshape(pixels).astype(np.float64)


def _read_counts(channels: list[_Channel], dialect: str, byte_order: str = "big", map_dtype: str = "auto") -> np.ndarray:
    """(rows, cols, channels) float32 in the image frame; checks shapes and pixel numbers."""
    first_shape, counts = None, None
    for k, c in enumerate(channels):
        if c.path.suffix.lower() == ".map":
            matrix = _read_binary_matrix(c.path, c.pixels, byte_order, map_dtype)
        else:
            matrix = _read_matrix(c.path, dialect)
        if first_shape is not None and matrix.shape != first_shape:
            raise InputError(
                f"map '{c.path}' is {matrix.shape[0]} x {matrix.shape[1]} but '{channels[0].path}' is "
                f"{first_shape[0]} x {first_shape[1]}; all maps of an area must have the same shape."
            )
        if matrix.shape != c.pixels:
            raise InputError(
                f"map '{c.path}' has {matrix.shape[0]} lines of {matrix.shape[1]} values but {c.source} gives "
                f"{c.pixels[0]} x {c.pixels[1]} pixels (nx lines of ny values); the map or its conditions are wrong."
            )
        first_shape = matrix.shape
        image = matrix if dialect == "old" else matrix.T
        if counts is None:
            counts = np.empty(image.shape + (len(channels),), np.float32)
        counts[..., k] = image
    return counts


def _dead_times(channels: list[_Channel], dead_time_ns) -> np.ndarray | None:
    """(channels,) dead time in ns from the argument, else the CSV; 0 for electron channels."""
    names = [c.name for c in channels]
    if dead_time_ns is None:
        if all(c.dead_time_ns is None for c in channels):
            return None
        values = [c.dead_time_ns or 0.0 for c in channels]
    elif isinstance(dead_time_ns, dict):
        unknown = sorted(set(dead_time_ns) - set(names))
        if unknown:
            raise ConfigError(f"dead_time_ns names channel(s) {', '.join(unknown)} that are not mapped ({', '.join(names)}).")
        values = [dead_time_ns.get(n, 0.0) for n in names]
    else:
        values = [dead_time_ns] * len(names)
    try:
        out = np.array([0.0 if is_electron(n) else float(v) for n, v in zip(names, values)])
    except (TypeError, ValueError):
        raise ConfigError(f"dead times must be numbers of ns, got {dead_time_ns!r}.") from None
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise ConfigError(f"dead times must be finite and >= 0 ns, got {dict(zip(names, out.tolist()))}.")
    return out


# ----------------------------------------------------------------------------- spots


def _read_qnt(path: Path, *, required: bool = False) -> dict[int, tuple[list[str], int]] | None:
    """Rows of a ``.qnt`` file: {spot id: (fields after the id, line)}, None if absent."""
    if not path.exists():
        if required:
            raise InputError(f"spot folder '{path.parent}' lacks {path.name}; re-export the analyses with it.")
        return None
    rows: dict[int, tuple[list[str], int]] = {}
    for n, line in numbered_lines(_read_text(path, "spot file")):
        fields = line.split()
        try:
            spot = int(fields[0])
        except ValueError:
            raise InputError(f"spot file '{path}', line {n}: the spot id '{fields[0]}' is not an integer; is this a JEOL .qnt file?") from None
        if spot in rows:
            raise InputError(f"spot file '{path}', line {n}: spot id {spot} repeats line {rows[spot][1]}; spot ids must be unique.")
        rows[spot] = (fields[1:], n)
    if not rows:
        raise InputError(f"spot file '{path}' is empty; re-export the analyses.")
    return rows


class _SpotTable:
    """The optional ``.qnt`` files of a folder, checked to hold the same spots as stg.qnt."""

    _FILES = {
        "elem": ("elem.qnt",), "elint": ("elint.qnt",), "wt": ("wt.qnt",), "net": ("net.qnt",),
        "pkint": ("pkint.qnt",), "peak_counts": ("peak.qnt",), "bgm": ("bgm.qnt",), "bgp": ("bgp.qnt",),
        "mes": ("mes.qnt",),
    }  # fmt: skip

    def __init__(self, qnt_dir: Path, ids: list[int]):
        self.ids = ids
        self.files: dict[str, tuple[Path, dict]] = {}
        for key, names in self._FILES.items():
            path = next((qnt_dir / n for n in names if (qnt_dir / n).exists()), None)
            if path is None:
                continue
            rows = _read_qnt(path, required=True)
            if set(rows) != set(ids):
                missing = sorted(set(ids) - set(rows))[:5]
                extra = sorted(set(rows) - set(ids))[:5]
                raise InputError(
                    f"spot file '{path}' has {len(rows)} spots but stg.qnt has {len(ids)} (ids missing: {missing}, "
                    f"extra: {extra}); the .qnt files must come from one export of the same analyses."
                )
            self.files[key] = (path, rows)

    def names(self, key: str) -> tuple[str, ...] | None:
        """The element or oxide names of elem.qnt / elint.qnt (the same on every line)."""
        if key not in self.files:
            return None
        path, rows = self.files[key]
        seen = None
        for spot in self.ids:
            fields, n = rows[spot]
            count = self._count(path, fields, n)
            names = tuple(f.strip('"') for f in fields[1 : 1 + count])
            if len(names) != count:
                raise InputError(f"spot file '{path}', line {n}: {count} names announced but {len(names)} given.")
            if seen is not None and names != seen:
                raise InputError(
                    f"spot file '{path}', line {n}: spot {spot} lists {' '.join(names)} but the first spot "
                    f"{' '.join(seen)}; analyses with different element lists must be read as separate projects."
                )
            seen = names
        return seen

    def values(self, key: str, n_elements: int) -> np.ndarray | None:
        """(n, J) float64 values of a per-element file, None if absent."""
        if key not in self.files:
            return None
        path, rows = self.files[key]
        out = np.empty((len(self.ids), n_elements))
        for i, spot in enumerate(self.ids):
            fields, n = rows[spot]
            count = self._count(path, fields, n)
            if count != n_elements or len(fields) < 1 + n_elements:
                raise InputError(
                    f"spot file '{path}', line {n}: announces {count} and holds {len(fields) - 1} values for "
                    f"{n_elements} elements; the .qnt files must come from one export of the same analyses."
                )
            for j, text in enumerate(fields[1 : 1 + n_elements]):
                out[i, j] = _float(text, f"spot file '{path}', line {n}, column {j + 3}")
        return out

    def current(self) -> np.ndarray | None:
        """(n,) probe current of each spot in A (mes.qnt, column 3), None if absent."""
        if "mes" not in self.files:
            return None
        path, rows = self.files["mes"]
        out = np.empty(len(self.ids))
        for i, spot in enumerate(self.ids):
            fields, n = rows[spot]
            if len(fields) < 2:
                raise InputError(f"spot file '{path}', line {n}: no probe current (column 3).")
            out[i] = _float(fields[1], f"spot file '{path}', line {n}, column 3")
            if out[i] <= 0:
                raise InputError(f"spot file '{path}', line {n}: the probe current must be positive, got {fields[1]} A.")
        return out

    @staticmethod
    def _count(path: Path, fields: list[str], line: int) -> int:
        try:
            return int(fields[0])
        except (IndexError, ValueError):
            raise InputError(f"spot file '{path}', line {line}: column 2 must be the number of elements.") from None


def _stg_label(fields: list[str]) -> str:
    """The operator's comment (column 10 on; quotes and extra blanks dropped)."""
    return " ".join(fields[8:]).strip().strip('"').strip()


def _stg_float(stg: dict, spot: int, column: int, qnt_dir: Path) -> float:
    """The number in 1-based ``column`` of a stg.qnt line (the id is column 1)."""
    fields, n = stg[spot]
    where = f"spot file '{qnt_dir / 'stg.qnt'}', line {n}, column {column}"
    if len(fields) < column - 1:
        raise InputError(f"{where}: missing; stg.qnt needs the stage x, y (mm) in columns 5-6.")
    return _float(fields[column - 2], where)


@dataclass(frozen=True)
class _SpotConditions:
    """The spot-conditions CSV: per element, oxide and background offsets (mm)."""

    path: Path
    elements: tuple[str, ...]
    oxides: tuple[str, ...]
    plus_mm: np.ndarray
    minus_mm: np.ndarray
    peak_s: np.ndarray


def _spot_conditions(path: Path) -> _SpotConditions:
    rows = _read_csv(path, "spot conditions", _SPOT_CSV_COLUMNS)
    if not rows:
        raise InputError(f"spot conditions '{path}' list no elements; add one row per element.")
    plus, minus, peak_s = [], [], []
    for line, row in rows:
        where = f"spot conditions '{path}', line {line}"
        plus.append(_float(row["bg+ [mm]"], f"{where}, column 'Bg+ [mm]'"))
        minus.append(_float(row["bg- [mm]"], f"{where}, column 'Bg- [mm]'"))
        peak_s.append(_float(row["peak [sec]"], f"{where}, column 'Peak [sec]'"))
    return _SpotConditions(
        path,
        tuple(r["element"] for _, r in rows),
        tuple(r["oxide"] for _, r in rows),
        np.array(plus),
        np.array(minus),
        np.array(peak_s),
    )


def _element_names(table: _SpotTable, conditions: _SpotConditions | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    elements, oxides = table.names("elint"), table.names("elem")
    if conditions is not None:
        elements = elements or conditions.elements
        oxides = oxides or conditions.oxides
    if elements is None or oxides is None:
        missing = "elint.qnt" if elements is None else "elem.qnt"
        raise InputError(f"spot folder lacks {missing}; re-export it or name the elements in a spot-conditions CSV.")
    if len(elements) != len(oxides):
        raise InputError(f"elint.qnt names {len(elements)} elements but elem.qnt {len(oxides)} oxides; they must pair up.")
    return elements, oxides


def _intensities(qnt_dir: Path, table: "_SpotTable", values: dict, elements: tuple[str, ...], conditions,
                 ids: list[int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(peak, background) in cps/µA with peak - background = net.qnt where net.qnt exists."""
    net = values["net"]
    side = _background(qnt_dir, values, elements, conditions)  # interpolated B, or None
    peak = values["pkint"]
    if peak is None and values["peak_counts"] is not None:
        peak = _peak_counts_to_intensity(qnt_dir, values["peak_counts"], table.current(), elements, conditions)
    if peak is None:
        if net is None or side is None:
            return None, None  # no intensities: the workflow calibrates on the map rates
        return net + side, side
    if net is None:
        if side is None:
            raise InputError(
                f"spot folder '{qnt_dir}' has peak intensities but neither net.qnt nor bgm.qnt + bgp.qnt, so the "
                "background is unknown; re-export net.qnt (or both side backgrounds)."
            )
        return peak, side
    if side is not None:
        _check_net(qnt_dir, peak, side, net, elements, ids)
    # JEOL's wt% came from net.qnt: the background is what makes peak - background equal it.
    return peak, peak - net


def _check_net(qnt_dir: Path, peak: np.ndarray, side: np.ndarray, net: np.ndarray, elements, ids) -> None:
    """Warn (naming spots and elements) where pkint - interpolated background != net."""
    bad = np.abs(peak - side - net) > NET_TOLERANCE * np.maximum(np.abs(peak), 1e-12)
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    listed = "; ".join(
        f"spot {ids[i]} ({', '.join(f'{elements[j]}: {peak[i, j] - side[i, j]:.4g} vs {net[i, j]:.4g}' for j in np.flatnonzero(bad[i])[:3])})"
        for i in rows[:8]
    )
    more = f" and {rows.size - 8} more spots" if rows.size > 8 else ""
    warnings.warn(
        f"spot folder '{qnt_dir}': pkint - background (linear interpolation of bgm/bgp) differs from net.qnt by more "
        f"than {100 * NET_TOLERANCE:g} % of the peak at {rows.size} spot(s): {listed}{more}. The calibration uses "
        "net.qnt (the intensity the wt% came from); check the background model (curved backgrounds) and that the "
        ".qnt files come from one export.",
        JeolIntensityWarning,
        stacklevel=3,
    )


def _peak_counts_to_intensity(qnt_dir: Path, counts: np.ndarray, current_A: np.ndarray | None,
                              elements: tuple[str, ...], conditions) -> np.ndarray:
    """peak.qnt (raw counts) -> cps/µA: counts / (peak counting time s x probe current µA)."""
    if current_A is None:
        raise InputError(
            f"spot folder '{qnt_dir}': peak.qnt holds raw counts, which need the probe current of each spot (mes.qnt) "
            "to become cps/µA; re-export mes.qnt or pkint.qnt (peak intensities in cps/µA)."
        )
    peak_s = _peak_times(qnt_dir, elements, conditions)
    return counts / (peak_s[None, :] * current_A[:, None] * 1e6)


def _peak_times(qnt_dir: Path, elements: tuple[str, ...], conditions) -> np.ndarray:
    """(J,) peak counting time in s, from the spot-conditions CSV or elemw.cnd."""
    if conditions is not None:
        missing = [e for e in elements if e not in conditions.elements]
        if missing:
            raise InputError(f"spot conditions '{conditions.path}' lack element(s) {', '.join(missing)}; add a row for each.")
        times, source = conditions.peak_s[[conditions.elements.index(e) for e in elements]], f"spot conditions '{conditions.path}'"
    elif (qnt_dir / ".cnd" / "elemw.cnd").exists():
        source = f"condition file '{qnt_dir / '.cnd' / 'elemw.cnd'}'"
        times = _elemw(qnt_dir / ".cnd" / "elemw.cnd", len(elements))[2]
    else:
        raise InputError(
            f"spot folder '{qnt_dir}': peak.qnt holds raw counts, which need the peak counting times; give them in "
            ".cnd/elemw.cnd or a spot-conditions CSV (column 'Peak [sec]'), or re-export pkint.qnt (cps/µA)."
        )
    if not np.all(np.isfinite(times) & (times > 0)):
        j = int(np.argmax(~(np.isfinite(times) & (times > 0))))
        raise InputError(f"{source}: the peak counting time of {elements[j]} must be positive, got {times[j]:g} s.")
    return times


def _background(qnt_dir: Path, values: dict, elements: tuple[str, ...], conditions) -> np.ndarray | None:
    """(n, J) background at the peak position, cps/µA, from bgm/bgp and the offsets."""
    bgm, bgp = values["bgm"], values["bgp"]
    if bgm is None and bgp is None:
        return None
    if bgm is None or bgp is None:
        missing = "bgm.qnt" if bgm is None else "bgp.qnt"
        raise InputError(f"spot folder '{qnt_dir}' has one background file but lacks {missing}; re-export both sides.")
    plus, minus = _offsets(qnt_dir, elements, conditions)
    return (bgm * plus + bgp * minus) / (plus + minus)


def _offsets(qnt_dir: Path, elements: tuple[str, ...], conditions) -> tuple[np.ndarray, np.ndarray]:
    """(L+, L-) per element in mm (absolute distances of the background positions)."""
    if conditions is not None:
        missing = [e for e in elements if e not in conditions.elements]
        if missing:
            raise InputError(f"spot conditions '{conditions.path}' lack element(s) {', '.join(missing)}; add a row for each.")
        order = [conditions.elements.index(e) for e in elements]
        plus, minus, source = conditions.plus_mm[order], conditions.minus_mm[order], f"spot conditions '{conditions.path}'"
    elif (qnt_dir / ".cnd" / "elemw.cnd").exists():
        source = f"condition file '{qnt_dir / '.cnd' / 'elemw.cnd'}'"
        plus, minus, _ = _elemw(qnt_dir / ".cnd" / "elemw.cnd", len(elements))
    elif (qnt_dir / "Pos_0001" / "data001.cnd").exists():
        source = f"condition file '{qnt_dir / 'Pos_0001' / 'data001.cnd'}'"
        plus, minus = _pos_cnd(qnt_dir / "Pos_0001" / "data001.cnd", len(elements))
    else:
        raise InputError(
            f"spot folder '{qnt_dir}' has no background offsets (.cnd/elemw.cnd or Pos_0001/data001.cnd); "
            "give them in a spot-conditions CSV (Oxide, Element, Bg+ [mm], Bg- [mm], Peak [sec], Bg [sec])."
        )
    plus, minus = np.abs(plus), np.abs(minus)
    if np.any(plus + minus <= 0):
        j = int(np.argmax(plus + minus <= 0))
        raise InputError(f"{source}: both background offsets of {elements[j]} are 0; the background cannot be interpolated.")
    return plus, minus


# Labels of the elemw.cnd lines (JEOL's "value description" layout, 21 lines per element).
_ELEMW_LABELS = {
    "plus": re.compile(r"(back|bg)\s*\+\s*\[mm\]", re.I),
    "minus": re.compile(r"(back|bg)\s*-\s*\[mm\]", re.I),
    "peak": re.compile(r"(peak|pk)( meas\.)? (time|t)\b", re.I),
    "back": re.compile(r"(back|bg)( meas\.)? (time|t)\b", re.I),
}


def _elemw(path: Path, n_elements: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L+ mm, L- mm, peak counting time s) from elemw.cnd: labelled lines when every label
    occurs once per element, else four unlabelled lines per element (Bg+ mm, Bg- mm, peak s,
    background s)."""
    lines = numbered_lines(_read_text(path, "condition file"))
    found = {key: [(n, line) for n, line in lines if rx.search(line)] for key, rx in _ELEMW_LABELS.items()}
    if all(len(v) == n_elements for v in found.values()):
        plus, minus, peak = found["plus"], found["minus"], found["peak"]
    elif len(lines) == 4 * n_elements:
        plus, minus, peak = lines[0::4], lines[1::4], lines[2::4]
    else:
        raise InputError(
            f"condition file '{path}' has {len(lines)} lines; expected 4 per element ({4 * n_elements} for "
            f"{n_elements} elements: Bg+ mm, Bg- mm, peak s, background s) or JEOL's labelled lines. "
            "Give the offsets in a spot-conditions CSV instead."
        )

    def value(n: int, line: str) -> float:
        return _float(line.split()[0], f"condition file '{path}', line {n}")

    return (np.array([value(*p) for p in plus]), np.array([value(*m) for m in minus]),
            np.array([value(*t) for t in peak]))


def _pos_cnd(path: Path, n_elements: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from a JXA-8230 ``Pos_0001/data001.cnd`` ($XM_ELEM_WDS_BACK_PLUS%j ...)."""
    keys = _parse_cnd(path)

    def side(name: str) -> np.ndarray:
        out = []
        for j in range(n_elements):
            key = f"XM_ELEM_WDS_BACK_{name}%{j}"
            if key not in keys or not keys[key][0]:
                raise InputError(f"condition file '{path}' lacks ${key}; give the offsets in a spot-conditions CSV.")
            out.append(_float(keys[key][0][0], f"condition file '{path}', line {keys[key][1]}"))
        return np.array(out)

    return side("PLUS"), side("MINUS")


def _apply_phase_list(path: Path, ids: list[int], phase: list[str], use: np.ndarray) -> None:
    """Relabel / exclude spots in place from ``phase_list.csv`` (id, phase, use)."""
    index = {spot: i for i, spot in enumerate(ids)}
    seen: dict[int, int] = {}
    for line, row in _read_csv(path, "phase list", ("id", "phase", "use")):
        where = f"phase list '{path}', line {line}"
        spot = _float(row["id"], f"{where}, column 'id'")
        if not spot.is_integer():
            raise InputError(f"{where}: id '{row['id']}' is not a spot number.")
        spot = int(spot)
        if spot not in index:
            raise InputError(f"{where}: spot id {spot} is not in stg.qnt (ids {ids[0]}..{ids[-1]}); fix or remove the line.")
        if spot in seen:
            raise InputError(f"{where}: spot id {spot} is listed again (first on line {seen[spot]}); keep one line per spot.")
        seen[spot] = line
        if row["phase"]:
            phase[index[spot]] = row["phase"]
        flag = row["use"].lower()
        if flag not in ("", "true", "false", "t", "f", "1", "0", "yes", "no"):
            raise InputError(f"{where}: use must be TRUE or FALSE, got '{row['use']}'.")
        use[index[spot]] = flag not in ("false", "f", "0", "no")

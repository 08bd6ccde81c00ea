"""Whole-rock analysis tables (CSV) as laboratories export them: units, qualifiers, validation.

Layout: one row per sample; a ``sample`` column (any case); then one column per element
or oxide (``SiO2``, ``TiO2``, ``Zr``...); optionally ``<column>_sd`` columns with the
1-sigma analytical error of that column, in the same unit. Other columns must be listed
in ``exclude`` (e.g. ``LOI``, ``Total``, ``lithology``). Optionally a *units row* right
under the header (its ``sample`` cell empty or ``unit(s)``, every other cell a unit or
empty), as ALS / Actlabs / Bureau Veritas exports have.

Units, in order of strength (every value is converted to ppm = µg/g on reading):

* a unit in the header (``SiO2 (wt%)``, ``Zr [ppm]``, ``SiO2_wt%``, ``Zr_ppm``, ``Au_ppb``)
  or in the units row;
* the ``units`` setting: one string for every column (``"ppm"``) or a mapping
  ``column -> unit`` whose ``default`` entry applies to the other columns;
* ``"auto"`` (the default): oxide-like names (``SiO2``, ``Fe2O3T``, ``FeO*``, ``LOI``) are
  wt%, element names ppm.

A column whose header (or units row) and config give different units is an
:class:`~jaxpetro.errors.InputError` naming both (the data would be off by 10^4).
(An oxide and its cation differ by a constant factor, so ratios, and everything the isocon
method reports, are the same for either.)

Cells (leading footnote flags ``^``, ``*``, ``†`` are dropped first):

* a non-negative number (``12.5``, ``1e-3``) is a measurement;
* ``<0.01`` is below a detection limit of 0.01 (column unit): imputed downstream as half
  the limit (:func:`jaxpetro.models.massbalance.impute`);
* ``bdl``, ``b.d.l.``, ``bd``, ``nd``, ``n.d.``, ``<dl``, ``<lod``, ``tr``, an empty cell,
  ``0`` or a zero limit (``<0``, ``^<.0000``): below an unknown detection limit;
* ``>10000`` is above the upper limit of the method (over-range), a lower bound;
* ``na``, ``n.a.``, ``nan``, ``-``, ``is`` (insufficient sample): not analysed (missing).

Anything else (text, a negative number, ``<abc``) is an :class:`~jaxpetro.errors.InputError`
naming the file, row, sample and column.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io._numbers import is_number, parse_number

__all__ = ["ABOVE_LIMIT", "BELOW_LIMIT", "BELOW_UNKNOWN", "MEASURED", "MISSING", "STATUS_NAMES", "UNIT_TO_PPM",
           "Analyses", "WholeRockTable", "default_unit", "read_wholerock", "split_unit"]

#: cell status codes
MEASURED, BELOW_LIMIT, BELOW_UNKNOWN, MISSING, ABOVE_LIMIT = 0, 1, 2, 3, 4
STATUS_NAMES = {MEASURED: "measured", BELOW_LIMIT: "below detection limit",
                BELOW_UNKNOWN: "zero/below detection (limit unknown)", MISSING: "not analysed",
                ABOVE_LIMIT: "above upper limit (over-range)"}

#: factor from each accepted unit to ppm (µg/g)
UNIT_TO_PPM = {"wt%": 1e4, "%": 1e4, "ppm": 1.0, "mg/kg": 1.0, "ug/g": 1.0, "µg/g": 1.0, "g/t": 1.0,
               "ppb": 1e-3, "ng/g": 1e-3}
# Spellings of those units in headers and units rows (case-insensitive) -> the canonical unit.
_UNIT_ALIASES = {**{u: u for u in UNIT_TO_PPM}, "wt.%": "wt%", "wt %": "wt%", "wt": "wt%", "pct": "%",
                 "percent": "%", "μg/g": "µg/g", "mg/kg": "mg/kg", "ppm.": "ppm"}

_BDL = {"", "bdl", "b.d.l.", "bd", "b.d.", "nd", "n.d.", "<dl", "<lod", "<ld", "<d.l.", "bld", "tr", "tr.",
        "trace", "<ql", "<loq"}
_MISSING = {"na", "n.a.", "nan", "-", "--", "—", "n/a", "is", "i.s.", "nm", "n.m."}
_FLAGS = "^*†‡#"  # footnote flags some laboratories put before a cell's value
_UNITS_ROW_LABELS = {"", "unit", "units", "unit:", "units:", "[unit]"}
# SiO2, Al2O3, Fe2O3T, FeOt, FeO*, Fe2O3(T), LOI: oxides (and loss on ignition) are wt%.
_OXIDE = re.compile(r"^(?:[A-Z][a-z]?\d*)+O\d*(?:t|T|\*|tot|\(T\)|\(t\))?$")
# A unit in a header: "SiO2 (wt%)", "Zr [ppm]", "SiO2_wt%", "Zr_ppm", "Au ppb".
_HEADER_UNIT = re.compile(r"^(?P<name>.+?)(?:\s*\((?P<p>[^()]+)\)|\s*\[(?P<b>[^\[\]]+)\]|[_ ](?P<s>[^_ ()\[\]]+))$")


def _canonical_unit(text: str) -> str | None:
    """The canonical unit of ``text`` (``"Wt.%"`` -> ``"wt%"``), or None if it is not a unit."""
    return _UNIT_ALIASES.get(text.strip().lower().replace("μ", "µ"))


def split_unit(header: str) -> tuple[str, str | None]:
    """``(name, unit)`` of a header cell: ``"SiO2 (wt%)"`` -> ``("SiO2", "wt%")``, ``"Zr_ppm"`` ->
    ``("Zr", "ppm")``, ``"Zr"`` -> ``("Zr", None)``. A suffix that is not a known unit stays in the name."""
    m = _HEADER_UNIT.match(header.strip())
    if m:
        unit = _canonical_unit(m.group("p") or m.group("b") or m.group("s"))
        if unit is not None:
            return m.group("name").strip(), unit
    return header.strip(), None


def _split_header(header: str) -> tuple[str, str | None]:
    """:func:`split_unit`, also for error columns that carry their unit before ``_sd`` (``Zr_ppm_sd``)."""
    name, unit = split_unit(header)
    if unit is None and name.endswith("_sd"):
        stem, unit = split_unit(name[:-3])
        if unit is not None:
            return stem + "_sd", unit
    return name, unit


def default_unit(column: str) -> str:
    """The "auto" unit of a column: wt% for oxide-like names and LOI, ppm otherwise."""
    return "wt%" if column.upper() == "LOI" or _OXIDE.match(column) else "ppm"


@dataclass(frozen=True)
class Analyses:
    """Whole-rock analyses: one row per sample, one column per element or oxide.

    Attributes:
        samples: sample names (n,).
        elements: element/oxide column names (G,).
        units: unit of each column as written in the file/config (G,).
        values: concentrations (n, G): ppm in a :class:`WholeRockTable`, the column units
            in a synthetic set.
    """

    samples: tuple[str, ...]
    elements: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray


@dataclass(frozen=True)
class WholeRockTable(Analyses):
    """A validated whole-rock table, every value in ppm (NaN where not measured, see ``status``).

    Attributes (besides those of :class:`Analyses`):
        path: the file read.
        to_ppm: factor from each column's unit to ppm (G,).
        sd: 1-sigma analytical errors in ppm (n, G); NaN where no ``_sd`` column/value.
        status: (n, G) int, MEASURED / BELOW_LIMIT / BELOW_UNKNOWN / MISSING / ABOVE_LIMIT.
        limit: detection limits in ppm (n, G) where given (``<x``; for ABOVE_LIMIT the upper
            limit ``>x``), else NaN.
    """

    path: str
    to_ppm: np.ndarray
    sd: np.ndarray
    status: np.ndarray
    limit: np.ndarray


def _parse(cell: str, path: str, row: int, column: str, sample: str) -> tuple[float, int, float]:
    """(value, status, limit) of one cell in the column's unit (see the module docstring)."""
    text = cell.strip().lstrip(_FLAGS).strip()
    low = text.lower()
    if low in _BDL:
        return math.nan, BELOW_UNKNOWN, math.nan
    if low in _MISSING:
        return math.nan, MISSING, math.nan
    where = f"{path}: row {row} (sample '{sample}'), column '{column}'"
    if text[:1] in "<>":
        bound = text[1:].strip().lstrip("=").strip()
        limit = float(bound) if is_number(bound) else math.nan
        if not (limit >= 0 and math.isfinite(limit)):
            raise InputError(f"{where}: '{cell.strip()}' is not a detection limit; write '<' or '>' followed by a "
                             f"number >= 0 (e.g. '<0.01', '>10000') or 'bdl'.")
        if text[0] == ">":
            if limit == 0:
                raise InputError(f"{where}: '{cell.strip()}' bounds nothing (an upper limit of 0); write the value.")
            return math.nan, ABOVE_LIMIT, limit
        # '<0' / '<.0000' (a limit printed as zero): below detection, the limit unknown.
        return (math.nan, BELOW_UNKNOWN, math.nan) if limit == 0 else (math.nan, BELOW_LIMIT, limit)
    value = parse_number(text, where, missing=None, hint=". Write a concentration, '<limit', '>limit', 'bdl' or "
                         "'na', or list the column under 'exclude' in the config if it is not an element")
    if value < 0:
        raise InputError(f"{where}: negative concentration {value:g}. Concentrations must be >= 0; write a value "
                         f"below detection as '<limit' or 'bdl' (some laboratories write '-0.5' for '<0.5': "
                         f"replace those).")
    if value == 0:
        return math.nan, BELOW_UNKNOWN, math.nan
    return value, MEASURED, math.nan


def _units_row(row: list[str], s_col: int) -> list[str | None] | None:
    """The units of a units row under the header (None per empty cell), or None if ``row`` is not one."""
    if row[s_col].strip().lower() not in _UNITS_ROW_LABELS:
        return None
    cells = [c.strip() for i, c in enumerate(row) if i != s_col]
    units = [_canonical_unit(c) if c else None for c in cells]
    if not any(units) or any(c and u is None for c, u in zip(cells, units)):
        return None
    return [None if i == s_col else (_canonical_unit(c) if c.strip() else None) for i, c in enumerate(row)]


def read_wholerock(
    path: str | os.PathLike,
    units: Mapping[str, str] | str | None = None,
    exclude: Sequence[str] = (),
) -> WholeRockTable:
    """Read and validate a whole-rock CSV (see the module docstring for the layout).

    Args:
        path: CSV file.
        units: one unit for every column (``"ppm"``), or ``column -> unit`` (keys of
            :data:`UNIT_TO_PPM`, or ``auto``) with an optional ``default`` entry (default
            ``auto``). Units in the header or a units row need no entry; an entry that
            contradicts them is an error.
        exclude: columns to ignore (as in the header, with or without its unit).

    Raises:
        InputError: missing/unreadable file, no ``sample`` column, duplicate samples or
            columns, a unit that is unknown, names no column or contradicts the file, a cell
            that is not a concentration (naming row, sample and column), a negative value,
            fewer than 3 element columns.
    """
    path = Path(path)
    label = str(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except FileNotFoundError:
        raise InputError(f"whole-rock table '{label}' not found; check the 'data' key of the config.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read whole-rock table '{label}': {err}.") from None
    if len(rows) < 2:
        raise InputError(f"{label}: expected a header row and at least one sample row.")
    raw_header = [h.strip() for h in rows[0]]
    split = [_split_header(h) for h in raw_header]
    header = [name for name, _ in split]
    lower = [h.lower() for h in header]
    if "sample" not in lower:
        raise InputError(f"{label}: no 'sample' column in the header ({', '.join(raw_header)}); add one naming each "
                         f"sample.")
    s_col = lower.index("sample")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"{label}: column(s) {', '.join(dup)} appear more than once in the header; rename them.")
    # Units from the file: the header's, then a units row right under it (line 2).
    file_units: list[str | None] = [u for _, u in split]
    first_line = 2
    row2 = rows[1] + [""] * (len(raw_header) - len(rows[1]))
    units_row = _units_row(row2[: len(raw_header)], s_col) if len(row2) == len(raw_header) else None
    if units_row is not None:
        first_line = 3
        for i, u in enumerate(units_row):
            if u is not None and file_units[i] is not None and file_units[i] != u:
                raise InputError(f"{label}: column '{raw_header[i]}' says {file_units[i]} in the header but {u} in "
                                 f"the units row (line 2); make them agree.")
            file_units[i] = file_units[i] or u
        rows = [rows[0], *rows[2:]]
        if len(rows) < 2:
            raise InputError(f"{label}: a header and a units row but no sample row.")
    exclude = set(exclude)
    known = set(header) | set(raw_header)
    unknown_ex = sorted(exclude - known)
    if unknown_ex:
        raise InputError(f"{label}: excluded column(s) {', '.join(unknown_ex)} are not in the header "
                         f"({', '.join(raw_header)}); check the 'exclude' key.")
    skip = {i for i in range(len(header)) if header[i] in exclude or raw_header[i] in exclude}
    columns = [i for i, h in enumerate(header) if i != s_col and i not in skip and not h.endswith("_sd")]
    elements = tuple(header[i] for i in columns)
    sd_cols = {h[:-3]: i for i, h in enumerate(header) if h.endswith("_sd") and i not in skip}
    orphan = sorted(set(sd_cols) - set(elements))
    if orphan:
        raise InputError(f"{label}: error column(s) {', '.join(o + '_sd' for o in orphan)} have no matching "
                         f"element column; rename or exclude them.")
    if len(elements) < 3:
        raise InputError(f"{label}: {len(elements)} element column(s) ({', '.join(elements) or 'none'}); the isocon "
                         f"method needs at least 3 elements (more than ~8 for the sparse method).")

    if isinstance(units, str):
        units = {"default": units}
    units = dict(units or {})
    default = units.pop("default", "auto")
    bad = sorted(k for k in units if k not in elements)
    if bad:
        raise InputError(f"{label}: the config gives units for {', '.join(bad)}, which are not element columns "
                         f"of the file ({', '.join(elements)}); check the 'units' key.")
    col_units = []
    for i, name in zip(columns, elements):
        explicit = name in units
        unit = units.get(name, default)
        if unit != "auto":
            canon = _canonical_unit(unit)
            if canon is None:
                raise InputError(f"unit '{unit}' of column '{name}' is unknown; use one of "
                                 f"{', '.join(UNIT_TO_PPM)} or auto in the 'units' key.")
            unit = canon
        found = file_units[i]
        if found is not None:
            if unit != "auto" and unit != found:
                key = f"units: {{{name}: {units[name]}}}" if explicit else f"units: {default}"
                raise InputError(f"{label}: column '{raw_header[i]}' is in {found} according to the file but the "
                                 f"config says {unit} ('{key}'); remove the config entry or fix the file "
                                 f"(the values would be off by a factor {UNIT_TO_PPM[found] / UNIT_TO_PPM[unit]:g}).")
            unit = found
        elif unit == "auto":
            unit = default_unit(name)
        col_units.append(unit)
    to_ppm = np.array([UNIT_TO_PPM[u] for u in col_units])
    for name, i in sd_cols.items():  # an error column's unit must be its element's
        k = elements.index(name)
        if file_units[i] is not None and file_units[i] != col_units[k]:
            raise InputError(f"{label}: error column '{raw_header[i]}' is in {file_units[i]} but '{name}' in "
                             f"{col_units[k]}; give both in the same unit.")

    n, g = len(rows) - 1, len(elements)
    values = np.full((n, g), np.nan)
    sd = np.full((n, g), np.nan)
    limit = np.full((n, g), np.nan)
    status = np.zeros((n, g), np.int8)
    samples = []
    for r, row in enumerate(rows[1:]):
        line = r + first_line
        row = row + [""] * (len(header) - len(row))
        if len(row) > len(header):
            raise InputError(f"{label}: row {line} has {len(row)} cells, the header {len(header)}; check for "
                             f"stray commas (use a '.' decimal separator).")
        name = row[s_col].strip()
        if not name:
            raise InputError(f"{label}: row {line} has an empty 'sample' cell; name every sample.")
        samples.append(name)
        for j, col in enumerate(columns):
            v, st, lim = _parse(row[col], label, line, raw_header[col], name)
            values[r, j], status[r, j], limit[r, j] = v, st, lim
            if elements[j] in sd_cols:
                text = row[sd_cols[elements[j]]].strip()
                if text and text.lower() not in _MISSING:
                    e = float(text) if is_number(text) else math.nan
                    # sd = 0 would give that element an infinite weight: it would fix the isocon alone.
                    if not (e > 0 and math.isfinite(e)):
                        raise InputError(f"{label}: row {line} (sample '{name}'), column '{elements[j]}_sd': "
                                         f"'{text}' is not a positive number (an analytical error must be > 0; "
                                         f"leave the cell empty to use relative_error).")
                    sd[r, j] = e
    dup = sorted({s for s in samples if samples.count(s) > 1})
    if dup:
        raise InputError(f"{label}: sample name(s) {', '.join(dup)} appear in more than one row; make them unique.")
    factor = to_ppm[None, :]
    return WholeRockTable(samples=tuple(samples), elements=elements, units=tuple(col_units), values=values * factor,
                          path=label, to_ppm=to_ppm, sd=sd * factor, status=status, limit=limit * factor)

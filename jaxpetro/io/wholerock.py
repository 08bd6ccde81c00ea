"""Whole-rock analysis tables (CSV): units, below-detection entries, validation.

Layout: one row per sample; a ``sample`` column (any case); then one column per element
or oxide (``SiO2``, ``TiO2``, ``Zr``...); optionally ``<column>_sd`` columns with the
1-sigma analytical error of that column, in the same unit. Other columns must be listed
in ``exclude`` (e.g. ``LOI``, ``Total``, ``lithology``).

Units: a mapping ``column -> unit`` whose ``default`` entry applies to the other columns.
The default ``"auto"`` reads oxide-like names (``SiO2``, ``Fe2O3T``, ``FeO*``, ``LOI``) as
wt% and element names as ppm. Every value is converted to ppm (µg/g) on reading, so wt%
and ppm columns mix freely. (An oxide and its cation differ by a constant factor, so
ratios, and everything the isocon method reports, are the same for either.)

Cells:
* a non-negative number (``12.5``, ``1e-3``) is a measurement;
* ``<0.01`` is below a detection limit of 0.01 (column unit);
* ``bdl``, ``b.d.l.``, ``bd``, ``nd``, ``n.d.``, ``<dl``, ``<lod``, an empty cell, or ``0``:
  below an unknown detection limit;
* ``na``, ``n.a.``, ``nan``, ``-``: not analysed (missing).
Anything else (text, a negative number) is an :class:`~jaxpetro.errors.InputError`
naming the file, row and column.
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

__all__ = ["BELOW_LIMIT", "BELOW_UNKNOWN", "MEASURED", "MISSING", "STATUS_NAMES", "UNIT_TO_PPM", "Analyses",
           "WholeRockTable", "default_unit", "read_wholerock"]

#: cell status codes
MEASURED, BELOW_LIMIT, BELOW_UNKNOWN, MISSING = 0, 1, 2, 3
STATUS_NAMES = {MEASURED: "measured", BELOW_LIMIT: "below detection limit",
                BELOW_UNKNOWN: "zero/below detection (limit unknown)", MISSING: "not analysed"}

#: factor from each accepted unit to ppm (µg/g)
UNIT_TO_PPM = {"wt%": 1e4, "%": 1e4, "ppm": 1.0, "mg/kg": 1.0, "ug/g": 1.0, "µg/g": 1.0, "g/t": 1.0,
               "ppb": 1e-3, "ng/g": 1e-3}

_BDL = {"", "bdl", "b.d.l.", "bd", "b.d.", "nd", "n.d.", "<dl", "<lod", "<ld", "<d.l.", "bld"}
_MISSING = {"na", "n.a.", "nan", "-", "--", "—", "n/a"}
# SiO2, Al2O3, Fe2O3T, FeOt, FeO*, Fe2O3(T), LOI: oxides (and loss on ignition) are wt%.
_OXIDE = re.compile(r"^(?:[A-Z][a-z]?\d*)+O\d*(?:t|T|\*|tot|\(T\)|\(t\))?$")


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
        status: (n, G) int, MEASURED / BELOW_LIMIT / BELOW_UNKNOWN / MISSING.
        limit: detection limits in ppm (n, G) where given (``<x``), else NaN.
    """

    path: str
    to_ppm: np.ndarray
    sd: np.ndarray
    status: np.ndarray
    limit: np.ndarray


def _parse(cell: str, path: str, row: int, column: str, sample: str) -> tuple[float, int, float]:
    """(value, status, limit) of one cell in the column's unit."""
    text = cell.strip()
    low = text.lower()
    if low in _BDL:
        return math.nan, BELOW_UNKNOWN, math.nan
    if low in _MISSING:
        return math.nan, MISSING, math.nan
    where = f"{path}: row {row} (sample '{sample}'), column '{column}'"
    if text.startswith("<"):
        limit = float(text[1:]) if is_number(text[1:]) else math.nan
        if not (limit > 0 and math.isfinite(limit)):
            raise InputError(f"{where}: '{text}' is not a detection limit; write '<' followed by a positive number "
                             f"(e.g. '<0.01') or 'bdl'.")
        return math.nan, BELOW_LIMIT, limit
    value = parse_number(text, where, missing=None, hint=". Write a concentration, '<limit', 'bdl' or 'na', or list "
                         "the column under 'exclude' in the config if it is not an element")
    if value < 0:
        raise InputError(f"{where}: negative concentration {value:g}. Concentrations must be >= 0; write a value "
                         f"below detection as '<limit' or 'bdl'.")
    if value == 0:
        return math.nan, BELOW_UNKNOWN, math.nan
    return value, MEASURED, math.nan


def read_wholerock(
    path: str | os.PathLike,
    units: Mapping[str, str] | None = None,
    exclude: Sequence[str] = (),
) -> WholeRockTable:
    """Read and validate a whole-rock CSV (see the module docstring for the layout).

    Args:
        path: CSV file.
        units: ``column -> unit`` (keys of :data:`UNIT_TO_PPM`, or ``auto``), with an optional
            ``default`` entry (default ``auto``).
        exclude: columns to ignore (case-sensitive names as in the header).

    Raises:
        InputError: missing/unreadable file, no ``sample`` column, duplicate samples or
            columns, a unit that is unknown or names no column, a cell that is not a
            concentration, a negative value, fewer than 3 element columns.
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
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    if "sample" not in lower:
        raise InputError(f"{label}: no 'sample' column in the header ({', '.join(header)}); add one naming each sample.")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"{label}: column(s) {', '.join(dup)} appear more than once in the header; rename them.")
    exclude = set(exclude)
    unknown_ex = sorted(exclude - set(header))
    if unknown_ex:
        raise InputError(f"{label}: excluded column(s) {', '.join(unknown_ex)} are not in the header "
                         f"({', '.join(header)}); check the 'exclude' key.")
    s_col = lower.index("sample")
    columns = [i for i, h in enumerate(header) if i != s_col and h not in exclude and not h.endswith("_sd")]
    elements = tuple(header[i] for i in columns)
    sd_cols = {h[:-3]: i for i, h in enumerate(header) if h.endswith("_sd") and h not in exclude}
    orphan = sorted(set(sd_cols) - set(elements))
    if orphan:
        raise InputError(f"{label}: error column(s) {', '.join(o + '_sd' for o in orphan)} have no matching "
                         f"element column; rename or exclude them.")
    if len(elements) < 3:
        raise InputError(f"{label}: {len(elements)} element column(s) ({', '.join(elements) or 'none'}); the isocon "
                         f"method needs at least 3 elements (more than ~8 for the sparse method).")

    units = dict(units or {})
    default = units.pop("default", "auto")
    bad = sorted(k for k in units if k not in elements)
    if bad:
        raise InputError(f"{label}: the config gives units for {', '.join(bad)}, which are not element columns "
                         f"of the file ({', '.join(elements)}); check the 'units' key.")
    col_units = []
    for name in elements:
        unit = units.get(name, default)
        unit = default_unit(name) if unit == "auto" else unit
        if unit not in UNIT_TO_PPM:
            raise InputError(f"unit '{unit}' of column '{name}' is unknown; use one of "
                             f"{', '.join(UNIT_TO_PPM)} or auto in the 'units' key.")
        col_units.append(unit)
    to_ppm = np.array([UNIT_TO_PPM[u] for u in col_units])

    n, g = len(rows) - 1, len(elements)
    values = np.full((n, g), np.nan)
    sd = np.full((n, g), np.nan)
    limit = np.full((n, g), np.nan)
    status = np.zeros((n, g), np.int8)
    samples = []
    for r, row in enumerate(rows[1:]):
        line = r + 2
        row = row + [""] * (len(header) - len(row))
        if len(row) > len(header):
            raise InputError(f"{label}: row {line} has {len(row)} cells, the header {len(header)}; check for "
                             f"stray commas (use a '.' decimal separator).")
        name = row[s_col].strip()
        if not name:
            raise InputError(f"{label}: row {line} has an empty 'sample' cell; name every sample.")
        samples.append(name)
        for j, col in enumerate(columns):
            v, st, lim = _parse(row[col], label, line, elements[j], name)
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

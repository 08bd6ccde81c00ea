"""Garnet zoning profiles and inclusion thermobarometry: CSV readers, validation, writer.

Profile CSV (core to rim; the form ``jaxpetro qmap`` writes)::

    radius_um, X_alm, X_prp, X_grs, X_sps[, X_alm_sd, X_prp_sd, X_grs_sd, X_sps_sd]

An empty or NaN cell is a missing value (masked in the inversion, never zero-filled);
a row with all four empty is a missing shell. Radii must be strictly increasing.
Fractions must lie in [0, 1]; rows whose four fractions do not sum to ~1 are accepted
with a :class:`CompositionWarning`.

Inclusion CSV: ``radius_um, P_kbar, T_C, P_sd, T_sd[, PT_corr]`` (one row per inclusion
thermobarometer; ``PT_corr`` the correlation of its P and T errors, in (-1, 1), 0 when absent: a
full 2 x 2 covariance).

Line-constraint CSV: ``radius_um, a_kbar, b_kbar_per_C, sd_kbar`` -- one equilibrium (a reaction
line) or an isomeke of elastic barometry, ``P = a + b T`` with an sd in P, at a radius.

Age CSV: ``radius_um, age_Ma, age_sd_Ma`` (e.g. Sm-Nd / Lu-Hf ages of a core and a rim).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io._numbers import parse_number
from jaxpetro.io.results import write_csv

ENDMEMBERS = ("X_alm", "X_prp", "X_grs", "X_sps")
INCLUSION_COLUMNS = ("radius_um", "P_kbar", "T_C", "P_sd", "T_sd")
CONSTRAINT_COLUMNS = ("radius_um", "a_kbar", "b_kbar_per_C", "sd_kbar")
AGE_COLUMNS = ("radius_um", "age_Ma", "age_sd_Ma")
#: |sum of the four fractions - 1| above which a row is reported (analyses of garnet
#: normalised to 4 end-members sum to 1; noise of 0.005 per fraction gives a sum sd of 0.01).
SUM_TOLERANCE = 0.05


class CompositionWarning(UserWarning):
    """A profile row whose end-member fractions do not sum to ~1 (accepted, reported)."""


@dataclass(frozen=True)
class GarnetProfile:
    """A zoning profile.

    Attributes:
        radius_um: (n,) strictly increasing radii (µm), core to rim.
        X: (n, 4) fractions of ``ENDMEMBERS``; NaN where missing.
        sd: (n, 4) measurement standard deviations, or None when the file has no ``_sd``
            columns; NaN where a value is missing.
        source: the file name.
    """

    radius_um: np.ndarray
    X: np.ndarray
    sd: np.ndarray | None
    source: str

    @property
    def observed(self) -> np.ndarray:
        """(n, 4) True where a fraction was measured."""
        return np.isfinite(self.X)


@dataclass(frozen=True)
class Inclusions:
    """Inclusion thermobarometry (P, T with standard deviations and their correlation at given
    radii), sorted by radius. ``PT_corr`` is 0 where the file has no such column."""

    radius_um: np.ndarray
    P_kbar: np.ndarray
    T_C: np.ndarray
    P_sd: np.ndarray
    T_sd: np.ndarray
    source: str
    PT_corr: np.ndarray | None = None

    @property
    def cov(self) -> np.ndarray:
        """(k, 2, 2) covariance of (P kbar, T °C) per inclusion."""
        rho = np.zeros_like(self.P_sd) if self.PT_corr is None else self.PT_corr
        c = rho * self.P_sd * self.T_sd
        return np.stack([np.stack([self.P_sd**2, c], -1), np.stack([c, self.T_sd**2], -1)], -2)


@dataclass(frozen=True)
class LineConstraints:
    """Line constraints ``P = a + b T`` (sd in kbar) at given radii, sorted by radius."""

    radius_um: np.ndarray
    a_kbar: np.ndarray
    b_kbar_per_C: np.ndarray
    sd_kbar: np.ndarray
    source: str


@dataclass(frozen=True)
class Ages:
    """Ages (Ma, with sd) at given radii, sorted by radius."""

    radius_um: np.ndarray
    age_Ma: np.ndarray
    age_sd_Ma: np.ndarray
    source: str


def _read_rows(path: Path, what: str) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a CSV (blank lines and ``#`` comment lines skipped)."""
    if not path.is_file():
        raise InputError(f"{what} file '{path}' not found; check the path in the config.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read {what} file '{path}': {err}.") from None
    if len(rows) < 2:
        raise InputError(f"{what} file '{path}' has no data rows; expected a header line and one row per point.")
    return [c.strip() for c in rows[0]], rows[1:]


def _column(path: Path, header: list[str], rows: list[list[str]], name: str, what: str,
            required: bool = True) -> np.ndarray | None:
    """Column ``name`` as floats (NaN where empty or missing), or None when absent and not required."""
    if name not in header:
        if not required:
            return None
        raise InputError(
            f"{what} file '{path}': no column '{name}' (columns found: {', '.join(header)}); "
            f"the header must name {name}."
        )
    k = header.index(name)
    hint = "; write a number or leave the cell empty for a missing value"
    return np.array(
        [parse_number(row[k] if k < len(row) else "", f"{what} file '{path}', line {i + 2}, column {name}", hint=hint)
         for i, row in enumerate(rows)],
        dtype=float,
    )


def _check_radii(path: Path, r: np.ndarray, what: str) -> None:
    if np.any(~np.isfinite(r)):
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise InputError(f"{what} file '{path}', line {i + 2}: radius_um is missing; every row needs a radius.")
    if np.any(r < 0):
        i = int(np.flatnonzero(r < 0)[0])
        raise InputError(f"{what} file '{path}', line {i + 2}: negative radius {r[i]:g} µm; radii are distances from the core.")


def read_profile(path: str | Path) -> GarnetProfile:
    """Read and validate a garnet zoning profile CSV (see the module docstring).

    Raises:
        InputError: missing file or column, non-numeric cell, unsorted or duplicate radii,
            a fraction outside [0, 1], a non-positive standard deviation, fewer than 3
            measured shells.
    Warns:
        CompositionWarning: rows whose measured fractions do not sum to 1 ± SUM_TOLERANCE (0.05).
    """
    path = Path(path)
    what = "garnet profile"
    header, rows = _read_rows(path, what)
    r = _column(path, header, rows, "radius_um", what)
    _check_radii(path, r, what)
    dup = np.flatnonzero(np.diff(r) == 0)
    if dup.size:
        i = int(dup[0]) + 1
        raise InputError(
            f"{what} file '{path}', line {i + 2}: radius {r[i]:g} µm repeats the previous row; "
            f"average the duplicate analyses into one row (with an _sd column) or drop one."
        )
    back = np.flatnonzero(np.diff(r) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise InputError(
            f"{what} file '{path}', line {i + 2}: radius {r[i]:g} µm is smaller than the previous "
            f"{r[i - 1]:g} µm; sort the rows by radius_um from core to rim."
        )
    X = np.stack([_column(path, header, rows, c, what) for c in ENDMEMBERS], axis=1)
    bad = np.isfinite(X) & ((X < 0.0) | (X > 1.0))
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise InputError(
            f"{what} file '{path}', line {i + 2}, column {ENDMEMBERS[k]}: {X[i, k]:g} is outside [0, 1]; "
            f"give end-member mole fractions (not percent)."
        )
    sd_cols = [_column(path, header, rows, f"{c}_sd", what, required=False) for c in ENDMEMBERS]
    sd = None
    if any(s is not None for s in sd_cols):
        absent = [f"{c}_sd" for c, s in zip(ENDMEMBERS, sd_cols) if s is None]
        if absent:
            raise InputError(
                f"{what} file '{path}': has some but not all standard-deviation columns (missing {', '.join(absent)}); "
                f"give all four <end-member>_sd columns or none."
            )
        sd = np.stack(sd_cols, axis=1)
        need = np.isfinite(X) & ~(np.isfinite(sd) & (sd > 0))
        if need.any():
            i, k = np.argwhere(need)[0]
            raise InputError(
                f"{what} file '{path}', line {i + 2}, column {ENDMEMBERS[k]}_sd: a measured fraction needs a positive "
                f"standard deviation (found '{sd[i, k]:g}')."
            )
        sd = np.where(np.isfinite(X), sd, np.nan)
    if np.sum(np.any(np.isfinite(X), axis=1)) < 3:
        raise InputError(f"{what} file '{path}': fewer than 3 shells have measured fractions; a path needs more.")
    full = np.all(np.isfinite(X), axis=1)
    off = full & (np.abs(np.nansum(X, axis=1) - 1.0) > SUM_TOLERANCE)
    if off.any():
        lines = ", ".join(str(int(i) + 2) for i in np.flatnonzero(off)[:8])
        warnings.warn(
            f"{what} file '{path}': {int(off.sum())} row(s) whose four fractions do not sum to 1 ± {SUM_TOLERANCE} "
            f"(line{'s' if off.sum() > 1 else ''} {lines}{'...' if off.sum() > 8 else ''}); check the normalisation of the analyses.",
            CompositionWarning,
            stacklevel=2,
        )
    return GarnetProfile(r, X, sd, str(path))


def _read_points(path: Path, what: str, columns: tuple[str, ...], positive: tuple[str, ...],
                 optional: tuple[str, ...] = ()) -> dict:
    """Columns of a per-radius point file, all cells required (``optional`` columns may be
    absent: None), the ``positive`` ones > 0, rows sorted by radius."""
    header, rows = _read_rows(path, what)
    cols = {c: _column(path, header, rows, c, what) for c in columns}
    cols.update({c: _column(path, header, rows, c, what, required=False) for c in optional})
    _check_radii(path, cols["radius_um"], what)
    for c in (*columns[1:], *optional):
        if cols[c] is None:
            continue
        bad = ~np.isfinite(cols[c])
        if bad.any():
            raise InputError(f"{what} file '{path}', line {int(np.flatnonzero(bad)[0]) + 2}: {c} is empty; "
                             f"every row needs {', '.join(columns[1:])}.")
    for c in positive:
        if np.any(cols[c] <= 0):
            i = int(np.flatnonzero(cols[c] <= 0)[0])
            raise InputError(f"{what} file '{path}', line {i + 2}: {c} must be positive (found {cols[c][i]:g}).")
    order = np.argsort(cols["radius_um"], kind="stable")
    return {c: (v[order] if v is not None else None) for c, v in cols.items()}


def read_inclusions(path: str | Path) -> Inclusions:
    """Read inclusion thermobarometry ``radius_um, P_kbar, T_C, P_sd, T_sd[, PT_corr]`` (rows sorted by radius).

    Raises:
        InputError: missing file/column, non-numeric or empty cell, non-positive sd, a
            correlation outside (-1, 1).
    """
    path = Path(path)
    what = "inclusion"
    cols = _read_points(path, what, INCLUSION_COLUMNS, ("P_sd", "T_sd"), optional=("PT_corr",))
    rho = cols.pop("PT_corr")
    if rho is not None and np.any(np.abs(rho) >= 1):
        i = int(np.flatnonzero(np.abs(rho) >= 1)[0])
        raise InputError(f"{what} file '{path}': PT_corr {rho[i]:g} is not a correlation strictly between -1 and 1; "
                         f"give the correlation coefficient of the P and T errors (0: independent).")
    return Inclusions(*(cols[c] for c in INCLUSION_COLUMNS), source=str(path), PT_corr=rho)


def read_constraints(path: str | Path) -> LineConstraints:
    """Read line constraints ``radius_um, a_kbar, b_kbar_per_C, sd_kbar`` (P = a + b T, sd in P).

    Raises:
        InputError: missing file/column, non-numeric or empty cell, non-positive sd.
    """
    path = Path(path)
    cols = _read_points(path, "line-constraint", CONSTRAINT_COLUMNS, ("sd_kbar",))
    return LineConstraints(*(cols[c] for c in CONSTRAINT_COLUMNS), source=str(path))


def read_ages(path: str | Path) -> Ages:
    """Read ages ``radius_um, age_Ma, age_sd_Ma``.

    Raises:
        InputError: missing file/column, non-numeric or empty cell, non-positive sd.
    """
    path = Path(path)
    cols = _read_points(path, "age", AGE_COLUMNS, ("age_sd_Ma",))
    return Ages(*(cols[c] for c in AGE_COLUMNS), source=str(path))


def write_profile(path: str | Path, radius_um, X, sd=None) -> Path:
    """Write a profile CSV (NaN written as empty cells) readable by :func:`read_profile`."""
    X = np.asarray(X, float)
    header = ["radius_um", *ENDMEMBERS] + ([f"{c}_sd" for c in ENDMEMBERS] if sd is not None else [])

    def cell(v):
        return "" if not np.isfinite(v) else float(v)

    rows = []
    for i, r in enumerate(np.asarray(radius_um, float)):
        row = [float(r), *(cell(v) for v in X[i])]
        if sd is not None:
            row += [cell(v) for v in np.asarray(sd, float)[i]]
        rows.append(row)
    return write_csv(path, header, rows)


__all__ = [
    "AGE_COLUMNS",
    "Ages",
    "CONSTRAINT_COLUMNS",
    "CompositionWarning",
    "GarnetProfile",
    "Inclusions",
    "LineConstraints",
    "read_ages",
    "read_constraints",
    "read_inclusions",
    "read_profile",
    "write_profile",
]

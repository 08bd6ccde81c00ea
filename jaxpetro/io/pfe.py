"""Probe for EPMA / CalcImage ``.DAT`` tables: already-quantified maps to compare qmap with.

CalcImage writes a quantified map as a table, one line per pixel (layout in
``docs/formats.md``):

* a header line naming the columns (blank-, tab- or comma-separated, names may be quoted);
* the columns ``X`` and ``Y`` (stage coordinates of the pixel, in the stage's units),
  ``NX`` and ``NY`` (the pixel's column and row number, counted from 1), ``NXY`` (its
  running number, ``(NY - 1) * nx + NX``);
* then one column per quantity: wt% of an oxide (``SiO2``, ``SiO2 WT%``) or of an element
  (``Si``, ``Si WT%``), and optionally ``Total``. Element wt% are converted to the element's
  usual oxide (all Fe as FeO) when ``as_oxides`` is set.

:func:`read_pfe_dat` returns the maps on their pixel grid; :func:`compare_quantified`
compares them with a qmap result pixel by pixel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io._numbers import parse_number
from jaxpetro.io._text import text_lines

__all__ = ["QuantifiedMaps", "compare_quantified", "read_pfe", "read_pfe_dat"]

_INDEX = ("X", "Y", "NX", "NY", "NXY")
_SUFFIX = re.compile(r"[\s_]*(\(?\s*(wt\s*%|wt|mass\s*%)\s*\)?)$", re.I)


@dataclass(frozen=True)
class QuantifiedMaps:
    """wt% maps of one area from an external quantification.

    Attributes:
        path: the file read.
        names: the quantity of each layer (an oxide such as ``SiO2``, an element, or ``Total``).
        wt: float64 (rows, cols, len(names)) wt%; NaN where the table has no line for a pixel.
        x, y: float64 (rows, cols) stage coordinates of each pixel (the file's units), NaN where
            no line.
        kind: per layer ``"oxide"``, ``"element"`` or ``"total"``.
    """

    path: Path
    names: tuple[str, ...]
    wt: np.ndarray
    x: np.ndarray
    y: np.ndarray
    kind: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.wt.shape[:2]


def read_pfe(path, *, as_oxides: bool = True) -> QuantifiedMaps:
    """The entry point: :func:`read_pfe_dat` (an external reference, not a qmap input)."""
    return read_pfe_dat(path, as_oxides=as_oxides)


def read_pfe_dat(path, *, as_oxides: bool = True) -> QuantifiedMaps:
    """Read a CalcImage ``.DAT`` table (see the module docstring).

    Args:
        path: the ``.DAT`` file.
        as_oxides: convert element wt% columns to oxide wt% (``Si`` -> ``SiO2`` x 2.1393).

    Raises:
        InputError: missing X Y NX NY NXY columns, non-numeric cells, a line of the wrong length
            (truncated file), pixel numbers that are not whole numbers >= 1, NXY inconsistent
            with NX, NY, or a pixel given twice.
    """
    from jaxpetro.chemistry import DEFAULT_OXIDE, OXIDES

    path = Path(path)
    lines = text_lines(path, "CalcImage table", empty_hint="re-export it from CalcImage")
    split = _splitter(lines[0][1])
    header = [h.strip().strip('"').strip() for h in split(lines[0][1])]
    if split is _blank_split:  # "SiO2 WT%" unquoted: the unit token belongs to the name before it
        merged: list[str] = []
        for h in header:
            if merged and re.fullmatch(r"\(?\s*(wt\s*%|wt|mass\s*%)\s*\)?", h, re.I):
                merged[-1] += " " + h
            else:
                merged.append(h)
        header = merged
    upper = [h.upper() for h in header]
    missing = [c for c in _INDEX if c not in upper]
    if missing:
        raise InputError(f"CalcImage table '{path}', line {lines[0][0]}: missing column(s) {', '.join(missing)}; the table "
                         f"needs X Y NX NY NXY then the wt% columns (found {', '.join(header)}).")
    if len(lines) < 2:
        raise InputError(f"CalcImage table '{path}' has a header but no pixels; the file is truncated.")
    values = np.empty((len(lines) - 1, len(header)))
    for r, (n, line) in enumerate(lines[1:]):
        cells = split(line)
        if len(cells) != len(header):
            raise InputError(f"CalcImage table '{path}', line {n}: {len(cells)} values for {len(header)} columns; the file "
                             "is truncated or damaged.")
        for j, cell in enumerate(cells):
            values[r, j] = parse_number(cell.strip('"'), f"CalcImage table '{path}', line {n}, column '{header[j]}'")
    idx = {c: upper.index(c) for c in _INDEX}
    nx_col, ny_col, nxy = values[:, idx["NX"]], values[:, idx["NY"]], values[:, idx["NXY"]]
    for name, v in (("NX", nx_col), ("NY", ny_col), ("NXY", nxy)):
        bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)) | (v < 1))
        if bad.size:
            raise InputError(f"CalcImage table '{path}', line {lines[1 + bad[0]][0]}: {name} must be a whole pixel number "
                             f">= 1, got {v[bad[0]]:g}.")
    nx, ny = int(nx_col.max()), int(ny_col.max())
    wrong = np.flatnonzero(nxy != (ny_col - 1) * nx + nx_col)
    if wrong.size:
        i = wrong[0]
        raise InputError(f"CalcImage table '{path}', line {lines[1 + i][0]}: NXY = {nxy[i]:g} but (NY - 1) * {nx} + NX = "
                         f"{(ny_col[i] - 1) * nx + nx_col[i]:g}; the matrix size (NX up to {nx}) does not match the "
                         "running pixel numbers: lines are missing or the table was edited.")
    flat = (ny_col - 1).astype(np.int64) * nx + (nx_col - 1).astype(np.int64)
    dup = np.flatnonzero(np.bincount(flat, minlength=nx * ny) > 1)
    if dup.size:
        raise InputError(f"CalcImage table '{path}': pixel (NX={dup[0] % nx + 1}, NY={dup[0] // nx + 1}) is given twice.")
    data_cols = [j for j in range(len(header)) if upper[j] not in _INDEX]
    names, kinds, layers = [], [], []
    for j in data_cols:
        base = _SUFFIX.sub("", header[j]).strip()
        col = values[:, j]
        if base.upper() == "TOTAL":
            names.append("Total"), kinds.append("total"), layers.append(col)
        elif base in OXIDES:
            names.append(base), kinds.append("oxide"), layers.append(col)
        elif base.capitalize() in DEFAULT_OXIDE:
            el = base.capitalize()
            if as_oxides:
                ox = OXIDES[DEFAULT_OXIDE[el]]
                factor = ox.molar_mass / (ox.n_cation * _cation_mass(el, ox))
                names.append(DEFAULT_OXIDE[el]), kinds.append("oxide"), layers.append(col * factor)
            else:
                names.append(el), kinds.append("element"), layers.append(col)
        else:
            names.append(base), kinds.append("other"), layers.append(col)
    if len(set(names)) != len(names):
        dup_name = next(n for n in names if names.count(n) > 1)
        raise InputError(f"CalcImage table '{path}': two columns give {dup_name} (an element and its oxide?); keep one.")

    def grid(v: np.ndarray) -> np.ndarray:
        out = np.full(nx * ny, np.nan)
        out[flat] = v
        return out.reshape(ny, nx)

    wt = np.stack([grid(v) for v in layers], axis=-1) if layers else np.zeros((ny, nx, 0))
    return QuantifiedMaps(path, tuple(names), wt, grid(values[:, idx["X"]]), grid(values[:, idx["Y"]]), tuple(kinds))


def compare_quantified(reference: QuantifiedMaps, wt: np.ndarray, oxides, *, mask: np.ndarray | None = None) -> dict:
    """Pixel-by-pixel comparison of qmap wt% maps with a reference quantification.

    Args:
        reference: from :func:`read_pfe_dat`.
        wt: (rows, cols, J) wt% of the qmap result (same grid as the reference).
        oxides: J oxide names of ``wt``'s layers.
        mask: optional (rows, cols) bool, True = pixel compared.

    Returns:
        {oxide: {"n": pixels compared, "mean_reference", "mean_qmap" (wt%), "bias" (mean
        qmap - reference, wt%), "relative_bias" (bias / mean reference), "rmse" (wt%),
        "r" (Pearson correlation), "slope" (least-squares slope of qmap on reference)}} for
        every oxide in both; pixels where either is NaN are left out.

    Raises:
        InputError: the grids differ, or no oxide is in both.
    """
    wt = np.asarray(wt, np.float64)
    oxides = tuple(oxides)
    if wt.shape[:2] != reference.shape:
        raise InputError(f"the qmap maps are {wt.shape[0]} x {wt.shape[1]} but CalcImage table '{reference.path}' is "
                         f"{reference.shape[0]} x {reference.shape[1]} (rows x cols); compare maps of one grid.")
    if wt.ndim != 3 or wt.shape[2] != len(oxides):
        raise InputError(f"{len(oxides)} oxide names for {wt.shape[-1]} qmap layers.")
    common = [o for o in oxides if o in reference.names]
    if not common:
        raise InputError(f"no oxide in both the qmap result ({', '.join(oxides)}) and '{reference.path}' "
                         f"({', '.join(reference.names)}).")
    keep = np.ones(reference.shape, bool) if mask is None else np.asarray(mask, bool)
    out = {}
    for o in common:
        a = reference.wt[..., reference.names.index(o)]
        b = wt[..., oxides.index(o)]
        ok = keep & np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        n = int(a.size)
        if n == 0:
            out[o] = {"n": 0}
            continue
        da, db = a - a.mean(), b - b.mean()
        saa, sbb, sab = float(da @ da), float(db @ db), float(da @ db)
        out[o] = {
            "n": n,
            "mean_reference": float(a.mean()),
            "mean_qmap": float(b.mean()),
            "bias": float(b.mean() - a.mean()),
            "relative_bias": float((b.mean() - a.mean()) / a.mean()) if a.mean() != 0 else float("nan"),
            "rmse": float(np.sqrt(np.mean((b - a) ** 2))),
            "r": sab / np.sqrt(saa * sbb) if saa > 0 and sbb > 0 else float("nan"),
            "slope": sab / saa if saa > 0 else float("nan"),
        }
    return out


# ----------------------------------------------------------------------------- helpers


def _splitter(header: str):
    """Split on tabs or commas when the header uses them, else on blanks (quoted names kept)."""
    if "\t" in header:
        return lambda line: [c.strip() for c in line.split("\t")]
    if "," in header:
        return lambda line: [c.strip() for c in line.split(",")]
    return _blank_split


def _blank_split(line: str) -> list[str]:
    return re.findall(r'"[^"]*"|\S+', line)


def _cation_mass(element: str, oxide) -> float:
    """The cation's molar mass from the oxide's (M_oxide - n_O * M_O) / n_cation."""
    return (oxide.molar_mass - oxide.n_oxygen * 15.999) / oxide.n_cation

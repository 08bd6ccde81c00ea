"""Readers of garnet-composition tables over a P-T grid (CSV, and the Perple_X WERAMI 2-d
``.tab`` format of Connolly's Perple_X; described in docs/ptpath.md).

Two formats:

1. CSV, one row per grid node: ``P_kbar, T_C, X_alm, X_prp, X_grs, X_sps`` (other columns
   allowed and ignored; ``P_bar``/``P_GPa`` and ``T_K`` are converted). Missing nodes are
   empty or NaN cells, or rows left out of the full grid.
2. Perple_X 2-d ``.tab`` (WERAMI >= 6.6.6): version line, title, number of independent
   variables (2), four lines per variable (name such as ``T(K)``/``P(bar)``, minimum,
   increment, node count), number of columns, column names, rows. With the independent
   variables as leading columns (``spreadsheet = T``) the nodes are read from them;
   otherwise they are implied by the header, the first variable cycling fastest.

End-member columns are recognised by the last token of their name (``X_alm``,
``Gt(W),alm``, ``Grt_prp``, ``py``, ``gr``, ``spss``...). Both readers return a
:class:`GarnetTable` on an ascending regular grid with NaN at missing nodes.

Closure (the observation's normalisation): a zoning profile gives four fractions that sum
to 1 (an analysis recast on alm + prp + grs + sps). A table whose garnet model has more
end-members -- khoharite ``kho`` (Mg3Fe3+2Si3O12) in the White et al. (2014) garnet,
andradite ``andr`` -- is recast the same way: kho counted with pyrope (its Mg), andr with
grossular (its Ca), then the four divided by their sum at every node. A table whose four
columns do not sum to 1 (within :data:`SUM_TOLERANCE`) is renormalised likewise; both are
reported with a :class:`TableWarning` naming the columns and the largest deviation.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io._numbers import parse_number
from jaxpetro.io.results import write_text

ENDMEMBERS = ("X_alm", "X_prp", "X_grs", "X_sps")
_ALIASES = {
    "X_alm": {"alm", "xalm", "almandine"},
    "X_prp": {"prp", "py", "xpy", "xprp", "pyrope"},
    "X_grs": {"grs", "gr", "xgr", "xgrs", "grossular"},
    "X_sps": {"sps", "spss", "xsps", "xspss", "spessartine"},
}
#: Extra garnet end-members folded into the four of the observation (name aliases -> the
#: end-member that takes them): khoharite with pyrope (Mg), andradite with grossular (Ca).
_EXTRA = {
    "X_prp": {"kho", "khoh", "xkho", "khoharite"},
    "X_grs": {"andr", "adr", "and", "xandr", "andradite"},
}
#: |sum of the four end-member columns - 1| above which a node is renormalised (and reported).
SUM_TOLERANCE = 1e-3
_P_UNITS = {"kbar": 1.0, "bar": 1e-3, "gpa": 10.0, "mpa": 1e-2}
_T_UNITS = {"c": 0.0, "k": -273.15}
# A table with more missing nodes than this is not a usable forward model.
MAX_MISSING = 0.5


class TableWarning(UserWarning):
    """A forward table recast onto the four observed end-members (extra columns folded in,
    or columns not summing to 1 renormalised); the message names the columns."""


@dataclass(frozen=True)
class GarnetTable:
    """Garnet end-member fractions on a regular P-T grid.

    Attributes:
        P_kbar: ascending pressure nodes (nP,), kbar.
        T_C: ascending temperature nodes (nT,), °C.
        values: (nP, nT, 4) fractions of ``ENDMEMBERS``; NaN at missing nodes.
        source: file it was read from.
    """

    P_kbar: np.ndarray
    T_C: np.ndarray
    values: np.ndarray
    source: str

    @property
    def valid(self) -> np.ndarray:
        """(nP, nT) True where the node has all four fractions."""
        return np.all(np.isfinite(self.values), axis=-1)

    @property
    def dP(self) -> float:
        return float(self.P_kbar[1] - self.P_kbar[0])

    @property
    def dT(self) -> float:
        return float(self.T_C[1] - self.T_C[0])


def read_table(path: str | Path) -> GarnetTable:
    """Read a CSV or Perple_X ``.tab`` table (chosen by content: a ``.tab`` has no commas
    in its first lines). Raises :class:`InputError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"forward table '{path}' not found; check forward.path in the config.")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise InputError(f"cannot read forward table '{path}': {err}.") from None
    first = text.splitlines()[:1]
    if path.suffix.lower() in (".tab", ".txt") or (first and "," not in first[0]):
        return _parse_tab(text, str(path))
    return _parse_csv(text, str(path))


def _endmember_of(name: str) -> str | None:
    token = re.split(r"[,_:\s.()\[\]]+", name.strip().lower().rstrip(")"))
    token = [t for t in token if t]
    if not token:
        return None
    last = token[-1]
    for em, names in _ALIASES.items():
        if last in names or name.strip().lower() == em.lower():
            return em
    return None


def _axis_of(name: str) -> tuple[str, float, float] | None:
    """('P' or 'T', scale, offset) from a column/variable name such as P_kbar, P(bar), T(K)."""
    m = re.fullmatch(r"\s*([PT])\s*[_(\[]?\s*([A-Za-z]+)?\s*[)\]]?\s*", name)
    if not m:
        return None
    axis, unit = m.group(1), (m.group(2) or "").lower()
    if axis == "P":
        unit = unit or "kbar"
        return ("P", _P_UNITS[unit], 0.0) if unit in _P_UNITS else None
    unit = unit or "c"
    return ("T", 1.0, _T_UNITS[unit]) if unit in _T_UNITS else None


def _extra_of(name: str) -> str | None:
    """The observed end-member an extra garnet end-member column is counted with, or None."""
    token = [t for t in re.split(r"[,_:\s.()\[\]]+", name.strip().lower().rstrip(")")) if t]
    if not token:
        return None
    for em, names in _EXTRA.items():
        if token[-1] in names:
            return em
    return None


def _columns(names: list[str], source: str) -> tuple[dict, dict, dict]:
    """Indices of the P, T axis columns, of the four end-members, and of extra end-member
    columns (index -> the end-member that takes them)."""
    axes, ems, extra = {}, {}, {}
    for k, name in enumerate(names):
        ax = _axis_of(name)
        if ax is not None and ax[0] not in axes:
            axes[ax[0]] = (k, ax[1], ax[2])
            continue
        em = _endmember_of(name)
        if em is not None and em not in ems:
            ems[em] = k
            continue
        host = _extra_of(name)
        if host is not None:
            extra[k] = host
    missing = [e for e in ENDMEMBERS if e not in ems]
    if missing:
        raise InputError(
            f"forward table '{source}': no column for {', '.join(missing)} (columns found: {', '.join(names)}); "
            f"name the garnet end-member columns X_alm, X_prp, X_grs, X_sps."
        )
    return axes, ems, extra


def _closed(data: np.ndarray, names: list[str], ems: dict, extra: dict, source: str) -> np.ndarray:
    """(rows, 4) end-member fractions recast as the observation is: extra end-members folded
    into their host (kho -> prp, andr -> grs), then divided by the sum of the four at every
    node whose sum is off by more than :data:`SUM_TOLERANCE`. Warns (:class:`TableWarning`)
    naming the columns. NaN rows stay NaN."""
    X = data[:, [ems[e] for e in ENDMEMBERS]].copy()
    # Before any renormalisation (which would hide it): every column must be a mole fraction.
    for k in [*(ems[e] for e in ENDMEMBERS), *extra]:
        bad = np.flatnonzero(np.isfinite(data[:, k]) & ((data[:, k] < 0) | (data[:, k] > 1)))
        if bad.size:
            raise InputError(
                f"forward table '{source}': fractions outside [0, 1] (column {names[k]} = {data[bad[0], k]:g} in data "
                f"row {int(bad[0]) + 1}); the table must hold garnet end-member mole fractions.")
    folded = []
    for k, host in extra.items():
        col = np.nan_to_num(data[:, k], nan=0.0)  # an empty extra cell: that end-member is absent
        X[:, ENDMEMBERS.index(host)] += col
        folded.append(f"{names[k]} counted with {names[ems[host]]}")
    total = X.sum(axis=1)
    off = np.isfinite(total) & (np.abs(total - 1.0) > SUM_TOLERANCE) & (total > 0)
    if folded or off.any():
        cols = ", ".join(names[ems[e]] for e in ENDMEMBERS)
        worst = float(np.nanmax(np.abs(total - 1.0))) if np.isfinite(total).any() else 0.0
        what = (f"{'; '.join(folded)}; " if folded else "") + (
            f"the columns {cols} sum to 1 +- {worst:.3g} at worst ({int(off.sum())} of "
            f"{int(np.isfinite(total).sum())} nodes off by more than {SUM_TOLERANCE:g})")
        warnings.warn(
            f"forward table '{source}': {what}; the four fractions are renormalised to sum to 1 at every node, "
            f"as the profile's analyses are (alm + prp + grs + sps = 1).",
            TableWarning,
            stacklevel=3,
        )
        X = np.where(off[:, None], X / np.where(off, total, 1.0)[:, None], X)
    return X


_MISSING_NODE = "; use a number, or leave the cell empty for a missing node"


def _parse_csv(text: str, source: str) -> GarnetTable:
    rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputError(f"forward table '{source}' has no data rows; expected a header and one row per P-T node.")
    names = [c.strip() for c in rows[0]]
    axes, ems, extra = _columns(names, source)
    if "P" not in axes or "T" not in axes:
        raise InputError(
            f"forward table '{source}': need a pressure and a temperature column (P_kbar or P_bar, T_C or T_K); "
            f"found {', '.join(names)}."
        )
    data = np.full((len(rows) - 1, len(names)), np.nan)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(names):
            raise InputError(f"forward table '{source}', line {i + 2}: {len(row)} cells, but the header has {len(names)}.")
        for k in (axes["P"][0], axes["T"][0], *ems.values(), *extra):
            data[i, k] = parse_number(row[k], f"forward table '{source}', line {i + 2}, column {names[k]}",
                                      hint=_MISSING_NODE)
    (kp, sp, op), (kt, st, ot) = axes["P"], axes["T"]
    P, T = data[:, kp] * sp + op, data[:, kt] * st + ot
    return _grid(P, T, _closed(data, names, ems, extra, source), source)


def _regular_axis(values: np.ndarray, name: str, source: str) -> np.ndarray:
    nodes = np.unique(np.round(values, 9))
    if len(nodes) < 4:
        raise InputError(f"forward table '{source}': only {len(nodes)} {name} nodes; the bicubic interpolation needs at least 4.")
    step = np.diff(nodes)
    h = float(np.min(step))
    k = np.round(step / h)
    if np.any(np.abs(step - k * h) > 1e-6 * max(1.0, h)):
        raise InputError(
            f"forward table '{source}': the {name} nodes are not evenly spaced ({', '.join(f'{v:g}' for v in nodes[:8])}...); "
            f"resample the table onto a regular P-T grid."
        )
    n = int(round((nodes[-1] - nodes[0]) / h)) + 1
    if n > 4 * len(nodes) + 100:  # a stray value (2.0001 among 2.0, 2.5...) would span a huge, empty grid
        gaps = np.flatnonzero(np.abs(step - h) < 1e-9 * max(1.0, h))[:3]
        odd = ", ".join(f"{nodes[g]:g}/{nodes[g + 1]:g}" for g in gaps)
        raise InputError(
            f"forward table '{source}': the {name} nodes are not on a regular grid: the closest pair ({odd}) is "
            f"{h:g} apart while the range is {nodes[-1] - nodes[0]:g}; fix the stray value or resample the table."
        )
    return nodes[0] + h * np.arange(n)


def _grid(P: np.ndarray, T: np.ndarray, X: np.ndarray, source: str) -> GarnetTable:
    """Place node rows onto the regular grid spanned by their P and T values."""
    if not (np.all(np.isfinite(P)) and np.all(np.isfinite(T))):
        bad = int(np.flatnonzero(~(np.isfinite(P) & np.isfinite(T)))[0])
        raise InputError(f"forward table '{source}': node {bad + 1} has no P or T value; every row needs both.")
    Pg, Tg = _regular_axis(P, "pressure", source), _regular_axis(T, "temperature", source)
    i = np.round((P - Pg[0]) / (Pg[1] - Pg[0])).astype(int)
    j = np.round((T - Tg[0]) / (Tg[1] - Tg[0])).astype(int)
    values = np.full((len(Pg), len(Tg), 4), np.nan)
    seen = np.zeros((len(Pg), len(Tg)), bool)
    for r, (a, b) in enumerate(zip(i, j)):
        if seen[a, b]:
            raise InputError(
                f"forward table '{source}': the node P = {Pg[a]:g} kbar, T = {Tg[b]:g} °C appears twice (row {r + 1}); "
                f"keep one row per node."
            )
        seen[a, b] = True
        values[a, b] = X[r]
    bad = np.isfinite(values) & ((values < -1e-6) | (values > 1 + 1e-6))
    if bad.any():
        a, b, _ = np.argwhere(bad)[0]
        raise InputError(
            f"forward table '{source}': fractions outside [0, 1] at P = {Pg[a]:g} kbar, T = {Tg[b]:g} °C; "
            f"the table must hold garnet end-member mole fractions."
        )
    values[~np.all(np.isfinite(values), axis=-1)] = np.nan  # a node is usable only with all four
    missing = 1.0 - np.mean(np.all(np.isfinite(values), axis=-1))
    if missing > MAX_MISSING:
        raise InputError(
            f"forward table '{source}': {100 * missing:.0f} % of the {len(Pg)} x {len(Tg)} grid nodes are missing "
            f"(garnet absent or not computed); use a table whose garnet field covers most of the grid."
        )
    return GarnetTable(Pg, Tg, values, source)


def _parse_tab(text: str, source: str) -> GarnetTable:
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]

    def need(k: int, what: str) -> str:
        if k >= len(lines):
            raise InputError(f"Perple_X table '{source}' ends early: expected {what} on line {k + 1}.")
        return lines[k]

    def number(k: int, what: str) -> float:
        return parse_number(need(k, what).split()[0], f"Perple_X table '{source}', line {k + 1}", missing=None,
                            hint=f"; expected {what} there")

    def whole(k: int, what: str) -> int:
        value = number(k, what)
        if not (np.isfinite(value) and value == int(value) and value >= 0):
            raise InputError(f"Perple_X table '{source}', line {k + 1}: expected {what} (a whole number), found '{lines[k]}'.")
        return int(value)

    n_var = whole(2, "the number of independent variables")
    if n_var != 2:
        raise InputError(f"Perple_X table '{source}': {n_var} independent variables; a 2-d P-T table (WERAMI 2-d) is needed.")
    variables = []
    k = 3
    for _ in range(2):
        name = need(k, "an independent-variable name").split()[0]
        vmin, step, count = number(k + 1, "its minimum"), number(k + 2, "its increment"), whole(k + 3, "its node count")
        ax = _axis_of(name)
        if ax is None:
            raise InputError(f"Perple_X table '{source}': independent variable '{name}' is not P(bar) or T(K).")
        variables.append((name, ax, vmin, step, count))
        k += 4
    n_col = whole(k, "the number of columns")
    names = need(k + 1, "the column names").split()
    if len(names) != n_col:
        raise InputError(f"Perple_X table '{source}': header announces {n_col} columns but names {len(names)}.")
    rows = lines[k + 2:]
    data = np.full((len(rows), n_col), np.nan)
    for r, ln in enumerate(rows):
        cells = ln.split()
        if len(cells) != n_col:
            raise InputError(f"Perple_X table '{source}', data line {r + 1}: {len(cells)} values, expected {n_col}.")
        data[r] = [parse_number(c, f"Perple_X table '{source}', data line {r + 1}", hint=_MISSING_NODE) for c in cells]
    if {variables[0][1][0], variables[1][1][0]} != {"P", "T"}:
        raise InputError(f"Perple_X table '{source}': the independent variables must be P and T.")
    axes, ems, extra = _columns(names, source)
    coords = {}
    if all(v[0] in names for v in variables):  # spreadsheet = T: nodes in the leading columns
        for name, (axis, scale, offset), *_ in variables:
            coords[axis] = data[:, names.index(name)] * scale + offset
    else:  # nodes implied by the header, first variable fastest
        (n1, (a1, s1, o1), min1, st1, c1), (n2, (a2, s2, o2), min2, st2, c2) = variables
        if len(rows) != c1 * c2:
            raise InputError(f"Perple_X table '{source}': {len(rows)} rows, but the header implies {c1} x {c2} = {c1 * c2} nodes.")
        idx = np.arange(len(rows))
        coords[a1] = (min1 + st1 * (idx % c1)) * s1 + o1
        coords[a2] = (min2 + st2 * (idx // c1)) * s2 + o2
    return _grid(coords["P"], coords["T"], _closed(data, names, ems, extra, source), source)


def write_tab(path: str | Path, table: GarnetTable, spreadsheet: bool = True, title: str = "garnet") -> Path:
    """Write a table in Perple_X 2-d ``.tab`` form (T(K) first, cycling fastest; P(bar))."""
    nP, nT = len(table.P_kbar), len(table.T_C)
    PP, TT = np.meshgrid(table.P_kbar, table.T_C, indexing="ij")
    order = (PP.ravel(), TT.ravel(), table.values.reshape(-1, 4))  # T (first variable) fastest
    lines = ["|6.6.6", title, "2",
             "T(K)", f"{table.T_C[0] + 273.15:.10g}", f"{table.dT:.10g}", str(nT),
             "P(bar)", f"{table.P_kbar[0] * 1000:.10g}", f"{table.dP * 1000:.10g}", str(nP)]
    cols = (["T(K)", "P(bar)"] if spreadsheet else []) + list(ENDMEMBERS)
    lines += [str(len(cols)), " ".join(cols)]
    for p, t, x in zip(*order):
        cells = ([f"{t + 273.15:.10g}", f"{p * 1000:.10g}"] if spreadsheet else []) + [
            "NaN" if not np.isfinite(v) else f"{v:.10g}" for v in x
        ]
        lines.append(" ".join(cells))
    path = Path(path)
    write_text(path, "\n".join(lines) + "\n")  # atomic: temp file + rename
    return path


__all__ = ["ENDMEMBERS", "SUM_TOLERANCE", "GarnetTable", "TableWarning", "read_table", "write_tab"]

"""``parameters.csv``: the calibration (alpha, beta, gamma) of a quantified map.

One row per element and phase: ``element, oxide, phase, tile, alpha, alpha_se, beta,
beta_se, gamma, gamma_se, n_spots, alpha_source`` (alpha in wt% per cps/µA, gamma in
cps/µA, beta dimensionless; ``tile`` empty and beta the tile-0 value). With per-tile beta,
further rows with ``phase`` = ``*`` give ``beta, beta_se`` of each tile. Written by
``jaxpetro qmap``; read back with ``quantify.parameters`` to quantify a map without spots.

Plain arrays in and out (io/ does not depend on models/): the workflow turns a
:class:`ParameterTable` into a calibration with
:func:`jaxpetro.models.xray.imported_calibration`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike

from jaxpetro.errors import InputError
from jaxpetro.io._numbers import parse_number
from jaxpetro.io.results import write_csv

__all__ = ["HEADER", "ParameterTable", "read_parameters", "write_parameters"]

HEADER = ["element", "oxide", "phase", "tile", "alpha", "alpha_se", "beta", "beta_se", "gamma", "gamma_se",
          "n_spots", "alpha_source"]  # fmt: skip


class ParameterTable(NamedTuple):
    """Calibration constants read from ``parameters.csv`` (float64; rows: elements,
    columns: phases; T tiles of beta).

    Attributes:
        alpha, alpha_se: (J, K) wt% per cps/µA.
        beta, beta_se: (T, J) map-to-spot intensity ratio per tile.
        gamma, gamma_se: (J, K) background in cps/µA.
    """

    alpha: np.ndarray
    alpha_se: np.ndarray
    beta: np.ndarray
    beta_se: np.ndarray
    gamma: np.ndarray
    gamma_se: np.ndarray


def write_parameters(
    path: str | os.PathLike,
    parameters: Mapping[str, ArrayLike],
    elements: Sequence[str],
    oxides: Sequence[str],
    phases: Sequence[str],
) -> Path:
    """Write a calibration as ``parameters.csv`` (atomically).

    Args:
        parameters: arrays by name: ``alpha``, ``alpha_se``, ``gamma``, ``gamma_se``,
            ``n_spots``, ``alpha_source`` (J, K) and ``beta``, ``beta_se``, ``n_beta``
            (T, J) (e.g. ``Calibration._asdict()`` of :mod:`jaxpetro.models.xray`).
        elements, oxides: the J rows; phases: the K columns.
    """
    c = {k: np.asarray(v) for k, v in parameters.items()}
    rows = []
    for j, (el, ox) in enumerate(zip(elements, oxides)):
        for k, ph in enumerate(phases):
            rows.append([el, ox, ph, "", c["alpha"][j, k], c["alpha_se"][j, k], c["beta"][0, j], c["beta_se"][0, j],
                         c["gamma"][j, k], c["gamma_se"][j, k], int(c["n_spots"][j, k]), int(c["alpha_source"][j, k])])
        if c["beta"].shape[0] > 1:
            for t in range(c["beta"].shape[0]):
                rows.append([el, ox, "*", t, "", "", c["beta"][t, j], c["beta_se"][t, j], "", "", int(c["n_beta"][t, j]), ""])
    return write_csv(path, HEADER, rows)


def read_parameters(path: str | os.PathLike, elements: Sequence[str], phases: Sequence[str]) -> ParameterTable:
    """Read ``parameters.csv`` for the given elements (rows) and phases (columns).

    Raises:
        InputError: missing file or column, non-numeric value, or an element/phase of the
            map that the file does not calibrate.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"parameters file '{path}' not found; check quantify.parameters.")
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        table = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
        header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"parameters file '{path}' cannot be read ({err}).") from None
    missing = [h for h in ("element", "phase", "alpha", "beta", "gamma") if h not in header]
    if missing:
        raise InputError(f"parameters file '{path}': missing column(s) {missing}; write it with jaxpetro qmap.")
    j_n, k_n = len(elements), len(phases)
    alpha, gamma = np.full((j_n, k_n), np.nan), np.full((j_n, k_n), np.nan)
    alpha_se, gamma_se = np.zeros((j_n, k_n)), np.zeros((j_n, k_n))
    beta, beta_se = {}, {}

    def num(row, key, line):
        return parse_number(row.get(key, ""), f"parameters file '{path}', line {line}, column '{key}'",
                            missing=0.0 if key.endswith("_se") else np.nan, finite=False)

    for line, row in enumerate(table, start=2):
        el, ph = row.get("element", ""), row.get("phase", "")
        if el not in elements:
            continue
        j = elements.index(el)
        if ph == "*":
            t = int(num(row, "tile", line))
            beta[(t, j)], beta_se[(t, j)] = num(row, "beta", line), num(row, "beta_se", line)
            continue
        beta.setdefault((0, j), num(row, "beta", line))
        beta_se.setdefault((0, j), num(row, "beta_se", line))
        if ph in phases:
            k = phases.index(ph)
            alpha[j, k], alpha_se[j, k] = num(row, "alpha", line), num(row, "alpha_se", line)
            gamma[j, k], gamma_se[j, k] = num(row, "gamma", line), num(row, "gamma_se", line)
    gaps = [f"{elements[j]}/{phases[k]}" for j, k in zip(*np.nonzero(~np.isfinite(alpha) | ~np.isfinite(gamma)))]
    if gaps:
        raise InputError(
            f"parameters file '{path}' has no alpha/gamma for {', '.join(gaps[:8])}"
            f"{' ...' if len(gaps) > 8 else ''}; calibrate those phases with spots or rename the phases to match."
        )
    n_tiles = 1 + max(t for t, _ in beta)
    b = np.array([[beta.get((t, j), beta.get((0, j), np.nan)) for j in range(j_n)] for t in range(n_tiles)])
    bse = np.array([[beta_se.get((t, j), beta_se.get((0, j), 0.0)) for j in range(j_n)] for t in range(n_tiles)])
    if not np.all(np.isfinite(b)):
        raise InputError(f"parameters file '{path}': beta missing for some element; re-export it with jaxpetro qmap.")
    return ParameterTable(alpha, alpha_se, b, bse, gamma, gamma_se)

"""``parameters.csv``: the calibration (alpha, beta, gamma) of a quantified map.

One row per element and phase: ``element, oxide, phase, tile, alpha, alpha_se, beta,
beta_se, gamma, gamma_se, n_spots, alpha_source`` (alpha in wt% per cps/µA, gamma in
cps/µA, beta dimensionless; ``tile`` empty and beta the tile-0 value). With per-tile beta,
further rows with ``phase`` = ``*`` give ``beta, beta_se`` of each tile. Written by
``jaxpetro qmap``; read back with ``quantify.parameters`` to quantify a map without spots.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io.results import write_csv
from jaxpetro.models.xray import ALPHA_IMPORTED, Calibration

HEADER = ["element", "oxide", "phase", "tile", "alpha", "alpha_se", "beta", "beta_se", "gamma", "gamma_se",
          "n_spots", "alpha_source"]  # fmt: skip


def write_parameters(path: str | os.PathLike, cal: Calibration, elements, oxides, phases) -> Path:
    """Write the calibration as ``parameters.csv`` (atomically)."""
    c = {k: np.asarray(v) for k, v in cal._asdict().items()}
    rows = []
    for j, (el, ox) in enumerate(zip(elements, oxides)):
        for k, ph in enumerate(phases):
            rows.append([el, ox, ph, "", c["alpha"][j, k], c["alpha_se"][j, k], c["beta"][0, j], c["beta_se"][0, j],
                         c["gamma"][j, k], c["gamma_se"][j, k], int(c["n_spots"][j, k]), int(c["alpha_source"][j, k])])
        if c["beta"].shape[0] > 1:
            for t in range(c["beta"].shape[0]):
                rows.append([el, ox, "*", t, "", "", c["beta"][t, j], c["beta_se"][t, j], "", "", int(c["n_beta"][t, j]), ""])
    return write_csv(path, HEADER, rows)


def read_parameters(path: str | os.PathLike, elements, phases) -> Calibration:
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
        text = row.get(key, "")
        if text == "":
            return 0.0 if key.endswith("_se") else np.nan
        try:
            return float(text)
        except ValueError:
            raise InputError(f"parameters file '{path}', line {line}, column '{key}': '{text}' is not a number.") from None

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
    zeros = np.zeros((j_n, k_n), np.int32)
    return Calibration(alpha, alpha_se, b, bse, gamma, gamma_se, zeros, np.zeros(b.shape, np.int32),
                       np.full((j_n, k_n), ALPHA_IMPORTED, np.int32))

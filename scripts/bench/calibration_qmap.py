#!/usr/bin/env python
"""Are qmap's calibration standard errors honest? beta (the map-to-spot intensity ratio) of the
garnet oxides against the synthetic truth, over seeds of the demo section.

For each seed the demo's section (256 x 256 px, 40 spots) is simulated, exported as JEOL and
quantified as ``jaxpetro demo`` does; beta of FeO, MgO, CaO, MnO and its standard error are
compared with the planted beta. What moves the garnet's end-member fractions is the error of
each oxide relative to the others (a factor common to all cancels), so the table reports
z = (e_j - e_FeO) / sqrt(se_j^2 + se_FeO^2) of the relative errors e of MgO, CaO, MnO against
FeO; honest standard errors give rms(z) ~ 1 (within ~1/sqrt(2 n) for n seeds)::

    python scripts/bench/calibration_qmap.py --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/qmap_calibration.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model, write_report

OXIDES = ("FeO", "MgO", "CaO", "MnO")


def one_seed(seed: int) -> dict:
    from jaxpetro._precision import float64

    return float64(_one_seed)(seed)


def _one_seed(seed: int) -> dict:
    from jaxpetro.config.demo import DemoConfig
    from jaxpetro.config.loader import load_config
    from jaxpetro.workflows import demo

    config = load_config({"seed": seed, "isocon": False, "output": {"plots": False}}, DemoConfig)
    with tempfile.TemporaryDirectory() as tmp:
        sec, jeol = demo.simulate(config, Path(tmp) / "section")
        _, results = demo.quantify_section(config, jeol, Path(tmp) / "qmap")
    stage = results.calibration
    oxides = list(stage.oxides)
    row = {"seed": seed}
    for o in OXIDES:
        j = oxides.index(o)
        beta, se = float(np.asarray(stage.cal.beta)[0, j]), float(np.asarray(stage.cal.beta_se)[0, j])
        row[o] = {"beta": beta, "beta_se": se, "beta_true": float(sec.beta[j])}
    return row


def analyse(rows: list[dict]) -> dict:
    rel = np.array([[r[o]["beta"] / r[o]["beta_true"] - 1.0 for o in OXIDES] for r in rows])
    rse = np.array([[r[o]["beta_se"] / r[o]["beta"] for o in OXIDES] for r in rows])
    out = {"n_seeds": len(rows),
           "rms_z_absolute": {o: float(np.sqrt(np.mean((rel[:, j] / rse[:, j]) ** 2))) for j, o in enumerate(OXIDES)}}
    z = {o: (rel[:, j] - rel[:, 0]) / np.sqrt(rse[:, j] ** 2 + rse[:, 0] ** 2) for j, o in enumerate(OXIDES) if j}
    out["z_vs_FeO"] = {o: v.tolist() for o, v in z.items()}
    out["rms_z_vs_FeO"] = {o: float(np.sqrt(np.mean(v**2))) for o, v in z.items()}
    allz = np.concatenate(list(z.values()))
    out["rms_z_vs_FeO_pooled"] = float(np.sqrt(np.mean(allz**2)))
    # rms error / rms se: what a propagation in quadrature needs right (rms z also grows when the
    # se itself scatters, E z^2 > E e^2 / E se^2, with few spots carrying an element)
    out["rms_error_over_rms_se_vs_FeO"] = {
        o: float(np.sqrt(np.mean((rel[:, j] - rel[:, 0]) ** 2) / np.mean(rse[:, j] ** 2 + rse[:, 0] ** 2)))
        for j, o in enumerate(OXIDES) if j}
    return out


def markdown(report: dict) -> str:
    a = report["analysis"]
    lines = [f"# qmap calibration: beta against the truth ({report['cpu']}, {report['date']})", "",
             f"Demo section, {a['n_seeds']} seeds. z of each oxide's relative beta error against FeO's (what moves "
             "the garnet's end-member fractions); honest standard errors give rms z ~ 1 "
             f"(± {1 / np.sqrt(2 * a['n_seeds']):.2f} from {a['n_seeds']} seeds).", "",
             "| oxide | rms z vs FeO | rms error / rms se vs FeO | rms z of beta itself |", "|---|---:|---:|---:|"]
    for o in OXIDES[1:]:
        lines.append(f"| {o} | {a['rms_z_vs_FeO'][o]:.2f} | {a['rms_error_over_rms_se_vs_FeO'][o]:.2f} | "
                     f"{a['rms_z_absolute'][o]:.2f} |")
    lines.append(f"| FeO | — | — | {a['rms_z_absolute']['FeO']:.2f} |")
    n = 3 * a["n_seeds"]
    lines += ["", f"Pooled over the three oxides: rms z {a['rms_z_vs_FeO_pooled']:.2f} (± {1 / np.sqrt(2 * n):.2f} "
              f"from {n} values). beta_se is the leverage-corrected sandwich (HC3, models/xray.fit_beta)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/qmap_calibration.json"))
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(one_seed(seed))
        print(json.dumps(rows[-1]), flush=True)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "seeds": rows,
              "analysis": analyse(rows)}
    write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

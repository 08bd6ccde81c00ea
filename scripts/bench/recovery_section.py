#!/usr/bin/env python
"""Synthetic recovery study of ``jaxpetro section`` (the one-thin-section chain) over seeds.

For each seed the demo's synthetic section (256 x 256 pixels, 2 µm, 20 ms dwell, 40 spots,
garnets of radius 0.12-0.14 map sides, all grown along one P-T path) is simulated, exported
as a JEOL project, quantified by ``jaxpetro qmap`` and run through ``jaxpetro section``'s
stages, exactly as ``jaxpetro demo`` does (:func:`jaxpetro.workflows.demo.section_chain`).
Each seed draws its own map noise, spots and hence its own calibration error, which every
shell of every grain shares: the coverage of the joint path's bands is only meaningful over
seeds, not along one path.

Reported per seed and pooled: RMSE of P and T against the true path at the joint shells,
the 90 % bands' coverage of P and T (with the calibration error propagated, the default, and
ptpath's own bands of the shells' random errors only), garnets found/planted. Writes JSON and
Markdown (atomically)::

    python scripts/bench/recovery_section.py --seeds 0 1 2 3 4 --out benchmarks/section_recovery.json
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


def one_seed(seed: int, folder: Path, per_grain: bool = True) -> dict:
    from jaxpetro._precision import float64

    return float64(_one_seed)(seed, folder, per_grain)  # as `jaxpetro demo` runs: float64 inside, no global change


def _one_seed(seed: int, folder: Path, per_grain: bool) -> dict:
    from jaxpetro.config.demo import DemoConfig
    from jaxpetro.config.loader import load_config
    from jaxpetro.io.results import read_csv_table
    from jaxpetro.synthetic import garnet_path
    from jaxpetro.workflows import demo

    config = load_config({"seed": seed, "isocon": False, "per_grain": per_grain, "output": {"plots": False}},
                         DemoConfig)
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    sec, jeol = demo.simulate(config, folder / "section")
    _, results = demo.quantify_section(config, jeol, folder / "qmap")
    acc = demo.section_chain(config, folder / "section", sec, results)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    load = [load0, os.getloadavg()[0]]  # the shared machine's 1-min load average at the start and the end
    if "skipped" in acc:
        return {"seed": seed, "skipped": acc["skipped"], "seconds": seconds, "cpu_s": cpu_s, "load_1min": load}
    # ptpath's own bands (the shells' random errors only), scored on the same truth
    own = read_csv_table(folder / "section" / "joint" / "ptpath" / "ptpath.csv")
    L = sec.garnets[0][2] * sec.step_um
    P_true, T_true = garnet_path(own["radius_um"] / L)
    acc = {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v) for k, v in acc.items()}
    acc.update(seed=seed, seconds=seconds, cpu_s=cpu_s, load_1min=load, n_shells=int(own["radius_um"].size),
               coverage_P_own=float(np.mean((own["P_lo"] <= P_true) & (P_true <= own["P_hi"]))),
               coverage_T_own=float(np.mean((own["T_lo"] <= T_true) & (T_true <= own["T_hi"]))),
               mean_bias_T_C=float(np.mean(own["T_C"] - T_true)), mean_bias_P_kbar=float(np.mean(own["P_kbar"] - P_true)))
    return acc


def _load_line(rows: list[dict]) -> list[str]:
    """The seconds' context: process CPU and the shared machine's load (older reports lack them)."""
    timed = [r for r in rows if "load_1min" in r]
    if not timed:
        return []
    loads = [v for r in timed for v in r["load_1min"]]
    cpu = sum(r["cpu_s"] for r in timed)
    return [f"Seconds (s): wall time per seed, qmap + section, compilation included; process CPU {cpu:.0f} s over "
            f"{len(timed)} seeds; 1-min load average {min(loads):.1f}-{max(loads):.1f} during the runs (the machine "
            "is shared: the seconds are upper bounds).", ""]


def markdown(report: dict) -> str:
    rows = report["seeds"]
    lines = [f"# Section recovery ({report['cpu']}, {report['date']})", "",
             "The demo's synthetic section per seed, through qmap and the section chain; the joint path against "
             "the true path at the joint shells. Coverage: share of shells whose true P (T) lies in the 90 % band, "
             "with the calibration error propagated (default) and ptpath's own bands (shells' random errors only).",
             "", *_load_line(rows),
             "| seed | garnets found / planted | shells | RMSE P (kbar) | RMSE T (°C) | mean T bias (°C) | "
             "coverage P | coverage T | own coverage P | own coverage T | s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['seed']} | skipped: {r['skipped']} | | | | | | | | | {r['seconds']:.0f} |")
            continue
        lines.append(f"| {r['seed']} | {r['n_grains_found']:.0f} / {r['n_grains_planted']:.0f} | {r['n_shells']} | "
                     f"{r['rmse_P_kbar']:.3f} | {r['rmse_T_C']:.1f} | {r['mean_bias_T_C']:+.1f} | "
                     f"{100 * r['coverage_P']:.0f} % | {100 * r['coverage_T']:.0f} % | {100 * r['coverage_P_own']:.0f} % | "
                     f"{100 * r['coverage_T_own']:.0f} % | {r['seconds']:.0f} |")
    p = report["pooled"]
    lines += ["", f"Pooled over {p['n_seeds']} seeds ({p['n_shells']} shells): RMSE {p['rmse_P_kbar']:.3f} kbar, "
              f"{p['rmse_T_C']:.1f} °C; coverage of the 90 % bands {100 * p['coverage_P']:.0f} % (P), "
              f"{100 * p['coverage_T']:.0f} % (T); ptpath's own bands {100 * p['coverage_P_own']:.0f} % (P), "
              f"{100 * p['coverage_T_own']:.0f} % (T).", ""]
    single = [r for r in rows if "rmse_T_C_grain_mean" in r]
    if single:  # the joint path against each grain inverted alone (grains.per_grain), paired on the grain's shells
        lines += ["Joint path against single grains: each grain inverted alone on its aligned shells, and the joint "
                  "path scored on the same shells (mean over the grains; a small grain covers only the later part "
                  "of the path, so the comparison is paired).", "",
                  "| seed | grains | RMSE P: joint / grain alone, mean (best) (kbar) | "
                  "RMSE T: joint / grain alone, mean (best) (°C) |", "|---:|---:|---:|---:|"]
        for r in single:
            lines.append(f"| {r['seed']} | {r['n_grains_inverted']:.0f} | {r['rmse_P_kbar_joint_on_grain_shells']:.3f} / "
                         f"{r['rmse_P_kbar_grain_mean']:.3f} ({r['rmse_P_kbar_grain_best']:.3f}) | "
                         f"{r['rmse_T_C_joint_on_grain_shells']:.1f} / {r['rmse_T_C_grain_mean']:.1f} "
                         f"({r['rmse_T_C_grain_best']:.1f}) |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/section_recovery.json"))
    ap.add_argument("--no-per-grain", action="store_true", help="skip the single-grain inversions (faster)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows.append(one_seed(seed, Path(tmp) / str(seed), not args.no_per_grain))
            print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if "skipped" not in r]
    w = np.array([r["n_shells"] for r in ok], float)

    def pooled(key, rmse=False):
        v = np.array([r[key] for r in ok])
        return float(np.sqrt(np.sum(w * v**2) / w.sum())) if rmse else float(np.sum(w * v) / w.sum())

    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "seeds": rows,
              "pooled": {"n_seeds": len(ok), "n_shells": int(w.sum()),
                         "rmse_P_kbar": pooled("rmse_P_kbar", True), "rmse_T_C": pooled("rmse_T_C", True),
                         **{k: pooled(k) for k in ("coverage_P", "coverage_T", "coverage_P_own", "coverage_T_own")}}}
    write_report(args.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

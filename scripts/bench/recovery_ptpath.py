"""Synthetic recovery of ``jaxpetro ptpath`` with the default settings (docs/ptpath.md, "What was
verified"): the demo profile (clockwise path 5 -> 9.5 -> 7.6 kbar, 480 -> 610 °C, 60 shells,
noise 0.005 per end-member, no ``_sd`` columns, so the measurement sd is estimated and
``model_sd`` held at 0) inverted with the demo table by :func:`jaxpetro.workflows.ptpath.run_demo`
(500 members, every noise scale estimated, the iterative smoother started from the full-lag EnKS,
its Metropolis-Hastings correction and the correlated forward-model error; no MAP check), one
seed per run. Per seed: RMSE of the smoothed mean in kbar and °C against the true path, the
share of shells whose true P (T) lies in the 90 % band (5-95 % quantiles of the smoothed
ensemble), the estimated scales and the wall time (the first includes the compilation).

Targets (docs/ptpath.md): RMSE <= 0.25 kbar and <= 15 °C, 90 % coverage 75-100 % per seed.
Writes JSON and Markdown::

    python scripts/bench/recovery_ptpath.py --out benchmarks/ptpath_recovery.json --seeds 0,1,2,3,4,5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _machine import cpu_model, write_report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# ptpath synthetic recovery (default settings)", "",
             f"`python scripts/bench/recovery_ptpath.py` -- `run_demo` (60 shells, noise 0.005, demo table, "
             f"500 members, IES + MH correction + correlated error, no MAP check); CPU: {m['cpu']} "
             f"({m['cores']} cores, shared machine, load average {m['load_start']:.1f} at the start, "
             f"{m['load_end']:.1f} at the end); total {report['seconds']:.0f} s.", "",
             "| seed | RMSE P (kbar) | RMSE T (°C) | 90 % band coverage (P, T) | estimated q_P, q_T, sd | "
             "model_corr_sd | time (s) |", "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        corr = "--" if r.get("model_corr_sd") is None else f"{r['model_corr_sd']:.2g}"
        lines.append(f"| {r['seed']} | {r['rmse_P_kbar']:.3f} | {r['rmse_T_C']:.1f} | "
                     f"{100 * r['coverage_P']:.0f} %, {100 * r['coverage_T']:.0f} % | "
                     f"{r['q_P']:.3f}, {r['q_T']:.2f}, {r['sd']:.4f} | {corr} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ptpath_recovery.json"))
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    a = ap.parse_args()
    import json

    from jaxpetro.workflows.ptpath import run_demo

    t0, load0, rows = time.perf_counter(), os.getloadavg()[0], []
    for seed in (int(s) for s in a.seeds.split(",") if s):
        with tempfile.TemporaryDirectory() as tmp:
            t1 = time.perf_counter()
            fig = run_demo(Path(tmp) / "demo", seed, quiet=True)
            seconds = time.perf_counter() - t1
        row = {"seed": seed, **{k: v for k, v in fig.items() if k != "files"}, "seconds": seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_start": load0,
                          "load_end": os.getloadavg()[0]},
              "seconds": time.perf_counter() - t0, "rows": rows}
    write_report(a.out, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

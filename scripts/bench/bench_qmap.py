"""Wall time of the whole ``jaxpetro qmap`` workflow on a large synthetic section, by stage.

    python scripts/bench/bench_qmap.py [--size 2000] [--input generic|jeol|both] [--out benchmarks]

Simulates a size x size section (9 element channels + BSE, 60 spots; not timed), writes
it as generic input (``maps.npz`` + ``spots.csv``) and/or as a JEOL project, then times
``qmap.run`` end to end (read -> dead time -> spots -> cluster -> mix -> calibrate ->
quantify -> write, with the default config: Poisson EM, mixing on, all CSV/PNG outputs)
and records each stage's wall time, the machine, and the accuracy against the truth in
``benchmarks/qmap_cpu.json`` and ``.md``. The first call of each jitted kernel includes
its compilation, as a user's run does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxpetro.config import load_config
from jaxpetro.config.qmap import QmapConfig
from jaxpetro.io.results import read_hdf5
from jaxpetro.synthetic import make_thin_section
from jaxpetro.synthetic.jeol import write_jeol
from jaxpetro.workflows import qmap
from jaxpetro.workflows.demo import export_section

from _machine import cpu_model  # this script's folder is on sys.path

TARGET_S = 25.0  # issue 14 item 8: all outputs of 2000 x 2000 x 10 in < 25 s


def run_once(sec, folder: Path, kind: str) -> dict:
    if kind == "generic":
        inp = {"maps": str(folder / "section" / "maps.npz"), "spots": str(folder / "section" / "spots.csv")}
    else:
        inp = {"format": "jeol", "map_dir": str(folder / "jeol" / ".map" / "1"), "qnt_dir": str(folder / "jeol" / ".qnt")}
    cfg = load_config({"input": inp}, QmapConfig)
    out = folder / f"out_{kind}"
    t0 = time.perf_counter()
    summary = qmap.run(cfg, out, quiet=True)
    total = time.perf_counter() - t0
    data, _ = read_hdf5(out / "qmap.h5")
    pure = sec.fractions.max(-1) > 0.99
    rmse = {}
    for j, ox in enumerate(sec.oxides):
        err = data["wt"][ox] - sec.wt[..., j]
        rmse[ox] = {"all": float(np.sqrt(np.mean(err**2))), "pure": float(np.sqrt(np.mean(err[pure] ** 2))),
                    "mixed": float(np.sqrt(np.mean(err[~pure] ** 2)))}
    return {"input": kind, "total_s": total, "stages_s": summary["timings"], "n_iter": summary["n_iter"],
            "rmse_wt": rmse, "modal": summary["modal"], "modal_truth": sec.modal_truth(),
            "spot_agreement": summary["checks"].get("spot_agreement")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--spots", type=int, default=60)
    parser.add_argument("--input", choices=("generic", "jeol", "both"), default="both")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    args = parser.parse_args()
    sec = make_thin_section(args.size, args.size, n_spots=args.spots, seed=0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = ("generic", "jeol") if args.input == "both" else (args.input,)
        export_section(sec, folder / "section")
        if "jeol" in kinds:
            write_jeol(sec, folder / "jeol", dialect="old")
        for kind in kinds:
            results.append(run_once(sec, folder, kind))
            shutil.rmtree(folder / f"out_{kind}")
            print(json.dumps({k: v for k, v in results[-1].items() if k in ("input", "total_s", "stages_s")}, indent=1))
    record = {
        "benchmark": "qmap end to end", "size": [args.size, args.size, len(sec.channels)], "spots": args.spots,
        "target_s": TARGET_S, "results": results, "note": args.note,
        "load_average_before": os.getloadavg(),
        "machine": {"cpu": cpu_model(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()]},
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "qmap_cpu.json").write_text(json.dumps(record, indent=1))
    lines = [f"# qmap end to end, {args.size} x {args.size} x {len(sec.channels)} synthetic section ({record['date']})",
             "", f"Machine: {record['machine']['cpu']}, {record['machine']['platform']}, {record['machine']['cpus']} CPUs, "
             f"backend {record['machine']['backend']}, load average before the run "
             f"{record['load_average_before'][0]:.1f}. {args.note}", "",
             "| input | total (s) | " + " | ".join(results[0]["stages_s"]) + " | target |",
             "|---|---|" + "---|" * len(results[0]["stages_s"]) + "---|"]
    for r in results:
        verdict = "met" if r["total_s"] <= TARGET_S else f"missed by {r['total_s'] - TARGET_S:.0f} s"
        lines.append(f"| {r['input']} | {r['total_s']:.1f} | " + " | ".join(f"{v:.1f}" for v in r["stages_s"].values())
                     + f" | {verdict} |")
    lines += ["", "wt% RMSE (all / pure / mixed pixels), generic input:", ""]
    r0 = results[0]["rmse_wt"]
    lines.append("| " + " | ".join(r0) + " |")
    lines.append("|" + "---|" * len(r0))
    lines.append("| " + " | ".join(f"{v['all']:.2f} / {v['pure']:.2f} / {v['mixed']:.2f}" for v in r0.values()) + " |")
    (out / "qmap_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

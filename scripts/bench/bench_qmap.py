"""Wall time of the whole ``jaxpetro qmap`` workflow on a large synthetic section, by stage.

    python scripts/bench/bench_qmap.py [--size 2000] [--input generic|jeol|both] [--out benchmarks]

Simulates a size x size section (9 element channels + BSE, 60 spots; not timed), writes
it as generic input (``maps.npz`` + ``spots.csv``) and/or as a JEOL project, then times
``qmap.run`` end to end (read -> dead time -> spots -> cluster -> mix -> calibrate ->
quantify -> write, with the default config: Poisson EM, mixing on, all CSV/PNG outputs)
and records each stage's wall time, the machine, and the accuracy against the truth in
``benchmarks/qmap_cpu.json`` and ``.md``. The first call of each jitted kernel includes
its compilation, as a user's run does.

    python scripts/bench/bench_qmap.py --peak-memory --size 4000 --extra-channels 5

measures the peak resident memory of the same run on a bigger section instead (issue 14
item 8: 4000 x 4000 x 15 <= 8 GB): the section is simulated and exported in this process,
then ``qmap.run`` runs alone in a child process whose maximum RSS (``wait4``) is recorded
under ``peak_memory`` in ``qmap_cpu.json``. ``--extra-channels N`` (0-5) adds N trace-element
channels (Cr, P, Ni, Zn, V; Poisson counts of the same instrument model as the simulator's,
with spot analyses) so the section has 10 + N channels, all quantified.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
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
MEMORY_BOUND_GB = 8.0  # issue 14 item 8: peak memory of 4000 x 4000 x 15

# Trace elements the simulator lacks, for --extra-channels: oxide and wt% in each phase
# (PHASES order: Qtz, Pl, Bt, Ms, Grt, Ilm), typical of a pelitic schist's minerals.
TRACE = (
    ("Cr", "Cr2O3", (0.0, 0.0, 0.05, 0.08, 0.04, 0.10)),
    ("P", "P2O5", (0.0, 0.05, 0.01, 0.01, 0.08, 0.0)),
    ("Ni", "NiO", (0.0, 0.0, 0.03, 0.01, 0.0, 0.01)),
    ("Zn", "ZnO", (0.0, 0.0, 0.05, 0.01, 0.02, 0.05)),
    ("V", "V2O3", (0.0, 0.0, 0.06, 0.08, 0.02, 0.40)),
)


def with_trace_channels(sec, n_extra: int, seed: int = 1):
    """``sec`` with ``n_extra`` trace-element channels added before BSE, simulated with the
    simulator's own instrument model (:mod:`jaxpetro.synthetic.thin_section`): map rate
    (wt / alpha + gamma) / beta per phase, mixed by the pixel's fractions, Poisson counts at
    the map's exposure; spot peak and background counts at the spot exposure and wt% =
    alpha (peak - bg). alpha and gamma are titanium's (same matrix factors), beta = 1."""
    if n_extra == 0:
        return sec
    from jaxpetro.synthetic import thin_section as ts

    rng = np.random.Generator(np.random.PCG64([seed, 77]))
    trace = TRACE[:n_extra]
    w = np.array([t[2] for t in trace], dtype=np.float64)  # (n_extra, phases) wt%
    alpha_ti, gamma_ti = sec.alpha[1], sec.gamma[1]  # (phases,) Ti's row
    rate_k = w / alpha_ti[None, :] + gamma_ti[None, :]  # (n_extra, phases) cps/uA, beta = 1
    rows, cols, nph = sec.fractions.shape
    f = sec.fractions.reshape(-1, nph)
    n_el = len(sec.elements)
    counts = np.empty((rows, cols, n_el + n_extra + 1), dtype=np.float32)
    counts[..., :n_el] = sec.counts[..., :n_el]
    counts[..., -1] = sec.counts[..., n_el]
    for j in range(n_extra):
        lam = (f @ rate_k[j].astype(np.float32)).reshape(rows, cols) * sec.exposure
        counts[..., n_el + j] = rng.poisson(lam)
    wt_extra = (f @ w.T.astype(np.float32)).reshape(rows, cols, n_extra)
    sp = sec.spots
    ph = np.array([sec.phases.index(p) for p in sp.phase])
    cur_ua = sp.current_A * 1e6
    e_peak = (ts._SPOT_PEAK_S * cur_ua)[:, None]
    e_bg = (ts._SPOT_BG_S * cur_ua)[:, None]
    a, g = alpha_ti[ph][:, None], gamma_ti[ph][:, None]
    net = np.maximum(w.T[ph] / a * (1.0 + ts._SPOT_REPRO * rng.standard_normal((ph.size, n_extra))), 0.0)
    peak = rng.poisson((net + g) * e_peak) / e_peak
    bg = rng.poisson(np.broadcast_to(g * e_bg, net.shape)) / e_bg
    spot_wt = a * (peak - bg) * (1.0 + ts._SPOT_ZAF_NOISE * rng.standard_normal((ph.size, n_extra)))
    spots = dataclasses.replace(sp, wt=np.hstack([sp.wt, spot_wt]), peak=np.hstack([sp.peak, peak]),
                                background=np.hstack([sp.background, bg]))
    elements = sec.elements + tuple(t[0] for t in trace)
    return dataclasses.replace(sec, channels=elements + ("BSE",), elements=elements,
                               oxides=sec.oxides + tuple(t[1] for t in trace), counts=counts,
                               wt=np.concatenate([sec.wt, wt_extra], axis=-1), spots=spots)


def peak_memory(args) -> None:
    """Simulate + export here, run qmap alone in a child process, record its maximum RSS."""
    sec = with_trace_channels(make_thin_section(args.size, args.size, n_spots=args.spots, seed=0), args.extra_channels)
    n_ch = len(sec.channels)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export_section(sec, folder / "section")
        del sec
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--run-only", str(folder)], stdout=subprocess.PIPE)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            raise SystemExit(f"qmap child failed (status {status})")
        timings = json.loads(out.decode().strip().splitlines()[-1])
        outputs_gb = sum(p.stat().st_size for p in (folder / "out").rglob("*") if p.is_file()) / 1e9
    rss_gb = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in kB on Linux
    rec = {"size": [args.size, args.size, n_ch], "spots": args.spots, "max_rss_GB": rss_gb,
           "bound_GB": MEMORY_BOUND_GB, "met": rss_gb <= MEMORY_BOUND_GB, "wall_s": wall,
           "user_s": usage.ru_utime, "system_s": usage.ru_stime, "stages_s": timings["timings"], "rss_max_by_stage_GB": timings["rss_max_by_stage_GB"],
           "outputs_GB": outputs_gb, "extra_channels": [t[0] for t in TRACE[:args.extra_channels]],
           "load_average_before": load_before, "load_average_after": os.getloadavg(),
           "machine": {"cpu": cpu_model(), "cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%d %H:%M"),
           "note": args.note}
    path = Path(args.out) / "qmap_cpu.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record["peak_memory"] = rec
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(json.dumps(rec, indent=1))


def _rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def run_only(folder: Path) -> None:
    """The child of :func:`peak_memory`: qmap with the default config on the exported section,
    its resident memory sampled every 0.2 s and attributed to the stages by their timings."""
    import threading

    inp = {"maps": str(folder / "section" / "maps.npz"), "spots": str(folder / "section" / "spots.csv")}
    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.perf_counter(), _rss_gb()))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    summary = qmap.run(load_config({"input": inp}, QmapConfig), folder / "out", quiet=True)
    done.set()
    sampler.join()
    by_stage, start = {}, t0
    for stage, secs in summary["timings"].items():  # stages in the order they ran
        inside = [r for t, r in samples if start <= t < start + secs]
        by_stage[stage] = max(inside) if inside else None
        start += secs
    print(json.dumps({"timings": summary["timings"], "oxides": list(summary.get("oxides") or []),
                      "rss_max_by_stage_GB": by_stage}))


def run_once(sec, folder: Path, kind: str) -> dict:
    if kind == "generic":
        inp = {"maps": str(folder / "section" / "maps.npz"), "spots": str(folder / "section" / "spots.csv")}
    else:
        inp = {"format": "jeol", "map_dir": str(folder / "jeol" / ".map" / "1"), "qnt_dir": str(folder / "jeol" / ".qnt")}
    cfg = load_config({"input": inp}, QmapConfig)
    out = folder / f"out_{kind}"
    t0, c0 = time.perf_counter(), time.process_time()
    summary = qmap.run(cfg, out, quiet=True)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    data, _ = read_hdf5(out / "qmap.h5")
    pure = sec.fractions.max(-1) > 0.99
    rmse = {}
    for j, ox in enumerate(sec.oxides):
        err = data["wt"][ox] - sec.wt[..., j]
        rmse[ox] = {"all": float(np.sqrt(np.mean(err**2))), "pure": float(np.sqrt(np.mean(err[pure] ** 2))),
                    "mixed": float(np.sqrt(np.mean(err[~pure] ** 2)))}
    return {"input": kind, "total_s": total, "cpu_s": cpu, "stages_s": summary["timings"], "n_iter": summary["n_iter"],
            "rmse_wt": rmse, "modal": summary["modal"], "modal_truth": sec.modal_truth(),
            "spot_agreement": summary["checks"].get("spot_agreement")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--spots", type=int, default=60)
    parser.add_argument("--input", choices=("generic", "jeol", "both"), default="both")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    parser.add_argument("--extra-channels", type=int, default=0, choices=range(len(TRACE) + 1),
                        help="trace-element channels added to the 10 simulated ones (see with_trace_channels)")
    parser.add_argument("--peak-memory", action="store_true",
                        help="record the maximum RSS of qmap (child process) instead of the timing run")
    parser.add_argument("--run-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_only:
        return run_only(Path(args.run_only))
    if args.peak_memory:
        return peak_memory(args)
    sec = with_trace_channels(make_thin_section(args.size, args.size, n_spots=args.spots, seed=0), args.extra_channels)
    results = []
    load_before = os.getloadavg()
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
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
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
             f"{record['load_average_before'][0]:.1f}, after {record['load_average_after'][0]:.1f}. {args.note}", "",
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

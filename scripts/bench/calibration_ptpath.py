#!/usr/bin/env python
"""Calibration study of ``jaxpetro ptpath`` (issue 11 item 8): are the bands honest?

Synthetic profiles with known paths -- clockwise paths (``make_garnet_profile``) and paths
drawn from the time walk (``make_time_walk_profile``) at several noise levels, and profiles
simulated through an *external-style* table (the demo table with a smooth, closed perturbation
of ~0.01 per end-member: a forward-model error the inversion does not know, which the
estimated ``model_sd`` has to absorb) -- are inverted with the demo table by

* ``ies``: the default, the iterative ensemble smoother over the whole profile started from the
  EnKS, with its Metropolis-Hastings correction and the correlated forward-model error estimated
  (500 members, every noise scale estimated);
* ``enks``: the ensemble Kalman smoother alone (``ensemble.smoother: enks``);
* ``es-mda``: the EnKS with ``ensemble.iterations: 4`` (ES-MDA analysis per shell);
* ``nuts``: NumPyro NUTS on the MRF posterior at the ``ies`` run's noise scales (``mcmc.enabled``).

Per method and profile: RMSE of P and T against the truth, and the share of shells whose true
P (T) lies in the 50 % and the 90 % band (the 25-75 % and 5-95 % quantiles of the smoothed
ensemble or the NUTS sample); per profile each method's mean minus the NUTS mean in NUTS
posterior sds at every shell, and the NUTS time (NUTS runs at the ``ies`` run's noise scales,
correlated error included). Profiles have ``_sd`` columns (as qmap writes
them), so ``model_sd`` is estimated. Writes JSON and Markdown::

    python scripts/bench/calibration_ptpath.py --out benchmarks/ptpath_calibration.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model

N_SHELLS = 20


def external_table(amplitude: float = 0.012):
    """The demo table with a smooth perturbation of the four fractions that sums to zero at every
    node (so the table stays closed): a different 'thermodynamic model' of the same rock."""
    from jaxpetro.io.perplex import GarnetTable, read_table
    from jaxpetro.synthetic.garnet_profile import demo_table_path

    t = read_table(demo_table_path())
    u = (t.P_kbar[:, None] - t.P_kbar[0]) / np.ptp(t.P_kbar)
    v = (t.T_C[None, :] - t.T_C[0]) / np.ptp(t.T_C)
    d = np.stack([np.sin(2.1 * np.pi * u + 0.5) * np.cos(1.7 * np.pi * v),
                  np.cos(1.3 * np.pi * u) * np.sin(2.3 * np.pi * v + 1.0),
                  np.sin(1.1 * np.pi * (u + v)),
                  np.cos(2.7 * np.pi * u * v)], axis=-1)
    d = d - d.mean(axis=-1, keepdims=True)
    d = amplitude * d / np.abs(d).max()
    return GarnetTable(t.P_kbar, t.T_C, np.clip(t.values + d, 1e-4, 1.0), "demo table + closed perturbation")


def profiles(quick: bool = False) -> list[tuple[str, object]]:
    from jaxpetro.synthetic.garnet_profile import make_garnet_profile, make_time_walk_profile

    ext = external_table()
    out = [
        ("clockwise, noise 0.005, seed 0", make_garnet_profile(seed=0, n_shells=N_SHELLS, noise_sd=0.005)),
        ("clockwise, noise 0.003, seed 1", make_garnet_profile(seed=1, n_shells=N_SHELLS, noise_sd=0.003)),
        ("clockwise, noise 0.010, seed 2", make_garnet_profile(seed=2, n_shells=N_SHELLS, noise_sd=0.010)),
        ("clockwise, noise 0.005, seed 3", make_garnet_profile(seed=3, n_shells=N_SHELLS, noise_sd=0.005)),
        ("time walk, noise 0.005, seed 0", make_time_walk_profile(seed=0, noise_sd=0.005, n_shells=N_SHELLS,
                                                                   q_P=1.5, q_T=30.0)),
        ("time walk, noise 0.003, seed 1", make_time_walk_profile(seed=1, noise_sd=0.003, n_shells=N_SHELLS,
                                                                   q_P=1.5, q_T=30.0)),
        ("time walk, noise 0.008, seed 2", make_time_walk_profile(seed=2, noise_sd=0.008, n_shells=N_SHELLS,
                                                                   q_P=1.5, q_T=30.0)),
        ("time walk, noise 0.005, seed 3", make_time_walk_profile(seed=3, noise_sd=0.005, n_shells=N_SHELLS,
                                                                   q_P=1.5, q_T=30.0)),
        ("external table (model error 0.012), seed 0",
         make_garnet_profile(ext, seed=4, n_shells=N_SHELLS, noise_sd=0.005)),
        ("external table (model error 0.012), seed 1",
         make_time_walk_profile(ext, seed=5, noise_sd=0.005, n_shells=N_SHELLS, q_P=1.5, q_T=30.0)),
    ]
    return out[:2] if quick else out


def _bands(X: np.ndarray) -> dict:
    """mean, sd and the 50 % / 90 % bands of samples X (n, draws, 2)."""
    q = np.quantile(X, [0.05, 0.25, 0.75, 0.95], axis=1)
    return {"mean": X.mean(1), "sd": X.std(1, ddof=1), "q": q}


def _scores(b: dict, P: np.ndarray, T: np.ndarray) -> dict:
    truth = np.stack([P, T], axis=1)
    q = b["q"]
    in50 = (truth >= q[1]) & (truth <= q[2])
    in90 = (truth >= q[0]) & (truth <= q[3])
    err = b["mean"] - truth
    return {"rmse_P_kbar": float(np.sqrt(np.mean(err[:, 0] ** 2))), "rmse_T_C": float(np.sqrt(np.mean(err[:, 1] ** 2))),
            "cov50_P": float(in50[:, 0].mean()), "cov50_T": float(in50[:, 1].mean()),
            "cov90_P": float(in90[:, 0].mean()), "cov90_T": float(in90[:, 1].mean()),
            "mean_sd_P_kbar": float(b["sd"][:, 0].mean()), "mean_sd_T_C": float(b["sd"][:, 1].mean())}


METHODS = ("ies", "enks", "es-mda")


def one_profile(name: str, synth, folder: Path, nuts: bool, chains: int, samples: int, warmup: int,
                methods: tuple = METHODS) -> dict:
    from jaxpetro._precision import float64

    return float64(_one_profile)(name, synth, folder, nuts, chains, samples, warmup, methods)


def _one_profile(name, synth, folder, nuts, chains, samples, warmup, methods=METHODS) -> dict:
    from jaxpetro.config.loader import load_config
    from jaxpetro.config.ptpath import PtpathConfig
    from jaxpetro.io.profiles import write_profile
    from jaxpetro.synthetic.garnet_profile import demo_table_path
    from jaxpetro.workflows import ptpath

    folder.mkdir(parents=True, exist_ok=True)
    prof = write_profile(folder / "profile.csv", synth.radius_um, synth.X, np.full_like(synth.X, synth.noise_sd))
    base = {"profile": str(prof), "forward": {"kind": "table", "path": str(demo_table_path())}, "seed": 0,
            "map_check": False, "output": {"plots": False}}
    row = {"profile": name, "n_shells": int(len(synth.radius_um)), "noise_sd": float(synth.noise_sd), "methods": {}}
    runs = {}
    for method, extra in (("ies", {"mcmc": {"enabled": nuts, "chains": chains, "samples": samples,
                                            "warmup": warmup}}),
                          ("enks", {"ensemble": {"smoother": "enks"}}),
                          ("es-mda", {"ensemble": {"smoother": "enks", "iterations": 4}})):
        if method not in methods:
            continue
        if method == methods[0]:
            extra = {**extra, "mcmc": {"enabled": nuts, "chains": chains, "samples": samples, "warmup": warmup}}
        cfg = load_config({**base, **extra}, PtpathConfig)
        t0 = time.perf_counter()
        res = ptpath.run_stages(cfg, folder / method, quiet=True)
        seconds = time.perf_counter() - t0
        inv = res.inversion
        b = _bands(inv.smoothed[..., :2])
        runs[method] = b
        q_P, q_T, sd, model_sd = np.exp(inv.log_theta)
        row["methods"][method] = {**_scores(b, synth.P_kbar, synth.T_C), "seconds": seconds,
                                  "q_P": float(q_P), "q_T": float(q_T), "model_sd": float(model_sd)}
        if inv.log_corr is not None:
            row["methods"][method].update(model_corr_sd=float(np.exp(inv.log_corr[0])),
                                          model_corr_um=float(np.exp(inv.log_corr[1])))
        if res.mcmc is not None:
            r = res.mcmc.result
            X = r.states.reshape(-1, *r.states.shape[2:]).transpose(1, 0, 2)[..., :2]
            bn = _bands(X)
            runs["nuts"] = bn
            row["methods"]["nuts"] = {**_scores(bn, synth.P_kbar, synth.T_C), "seconds": float(r.seconds),
                                      "max_r_hat": float(np.nanmax(r.r_hat)), "min_ess": float(np.nanmin(r.ess)),
                                      "divergences": int(r.divergences.sum())}
    if "nuts" in runs:
        for method in [m for m in METHODS if m in runs]:
            z = np.abs(runs[method]["mean"] - runs["nuts"]["mean"]) / runs["nuts"]["sd"]
            row["methods"][method].update(max_z_vs_nuts=float(z.max()), share_within_0p3_sd=float(np.mean(z <= 0.3)),
                                          median_z_vs_nuts=float(np.median(z)))
    return row


def summarise(rows: list[dict]) -> dict:
    out = {}
    for method in ("ies", "enks", "es-mda", "nuts"):
        got = [r["methods"][method] for r in rows if method in r["methods"]]
        if not got:
            continue
        keys = [k for k in got[0] if isinstance(got[0][k], float)]
        out[method] = {k: float(np.mean([g[k] for g in got if k in g])) for k in keys}
        out[method]["profiles"] = len(got)
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# ptpath calibration study (issue 11 item 8)", "",
             f"`python scripts/bench/calibration_ptpath.py` -- {len(result['rows'])} synthetic profiles of "
             f"{N_SHELLS} shells, inverted with the demo table; CPU: {m['cpu']} ({m['cores']} cores, shared machine, "
             f"load average {m['load_start']:.1f} at the start, {m['load_end']:.1f} at the end); total "
             f"{result['seconds']:.0f} s.", "",
             "Coverage = share of shells whose true value lies in the band (target for the 90 % band: 85-95 % on "
             "average). z vs NUTS = |mean - NUTS mean| / NUTS posterior sd per shell (target <= 0.3 at every shell).",
             *[line for note in result.get("notes", []) for line in ("", note)],
             "", "## Averages over profiles", "",
             "| method | RMSE P (kbar) | RMSE T (°C) | 50 % cov P | 50 % cov T | 90 % cov P | 90 % cov T | "
             "mean sd P | mean sd T | max z vs NUTS | shells within 0.3 sd | time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, s in result["summary"].items():
        z = f"{s['max_z_vs_nuts']:.2f}" if "max_z_vs_nuts" in s else "--"
        w = f"{100 * s['share_within_0p3_sd']:.0f} %" if "share_within_0p3_sd" in s else "--"
        lines.append(f"| {method} | {s['rmse_P_kbar']:.3f} | {s['rmse_T_C']:.1f} | {100 * s['cov50_P']:.0f} % | "
                     f"{100 * s['cov50_T']:.0f} % | {100 * s['cov90_P']:.0f} % | {100 * s['cov90_T']:.0f} % | "
                     f"{s['mean_sd_P_kbar']:.3f} | {s['mean_sd_T_C']:.1f} | {z} | {w} | {s['seconds']:.0f} |")
    lines += ["", "## Per profile", "",
              "| profile | method | RMSE P | RMSE T | 50 % P/T | 90 % P/T | max z vs NUTS | model_sd | notes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for method, s in r["methods"].items():
            z = f"{s['max_z_vs_nuts']:.2f}" if "max_z_vs_nuts" in s else "--"
            msd = f"{s['model_sd']:.4f}" if "model_sd" in s else "--"
            note = (f"R-hat {s['max_r_hat']:.3f}, ESS {s['min_ess']:.0f}, {s['divergences']} div., {s['seconds']:.0f} s"
                    if method == "nuts" else f"{s['seconds']:.0f} s")
            lines.append(f"| {r['profile']} | {method} | {s['rmse_P_kbar']:.3f} | {s['rmse_T_C']:.1f} | "
                         f"{100 * s['cov50_P']:.0f}/{100 * s['cov50_T']:.0f} % | "
                         f"{100 * s['cov90_P']:.0f}/{100 * s['cov90_T']:.0f} % | {z} | {msd} | {note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/ptpath_calibration.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/ptpath_calibration"))
    ap.add_argument("--quick", action="store_true", help="two profiles only")
    ap.add_argument("--no-nuts", action="store_true")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--only", default="", help="comma-separated profile indices (development runs)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    a = ap.parse_args()
    methods = tuple(m for m in a.methods.split(",") if m)
    only = {int(i) for i in a.only.split(",") if i}
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    rows = []
    for i, (name, synth) in enumerate(profiles(a.quick)):
        if only and i not in only:
            continue
        rows.append(one_profile(name, synth, a.work / f"p{i}", not a.no_nuts, a.chains, a.samples, a.warmup,
                                methods))
        print(json.dumps(rows[-1]), flush=True)
    result = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_start": load0,
                          "load_end": os.getloadavg()[0]},
              "settings": {"n_shells": N_SHELLS, "ensemble_size": 500, "es_mda_iterations": 4,
                           "nuts": {"chains": a.chains, "samples": a.samples, "warmup": a.warmup}},
              "seconds": time.perf_counter() - t0, "rows": rows, "summary": summarise(rows)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(a.out)
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

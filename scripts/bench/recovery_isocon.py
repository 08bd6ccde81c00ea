#!/usr/bin/env python
"""Synthetic recovery study of the sparse isocon (issue 5 verification).

For each seed, :func:`jaxpetro.synthetic.wholerock.make_wholerock` draws 20 elements,
5 altered samples and one protolith analysis, 30 % immobile elements, mass ratios in
0.7-1.5 and 10 % multiplicative (log-normal) noise on every analysis. Estimators of the
log mass ratios ``log(M^A/M^O)``:

* ``sparse q=...``: :func:`jaxpetro.models.massbalance.select` with the workflow's defaults
  (criterion bic, 40 λ, refinement on and started from every element's isocon too,
  multistart for q < 1, relative error = the true 10 %), refit on the selected set; for
  q = 1 also with the refinement from the path's set only, and without the refinement;
* ``median``: the per-sample median of the log ratios (a common robust shortcut);
* ``oracle``: the weighted mean over the true immobile elements (perfect knowledge).

Reported over the seeds: median and mean RMSE of the log mass ratios, mean precision
and recall of the immobile set (positive = immobile), the share of seeds with a gross
error (RMSE > 0.12), and the share the workflow would refuse (chi-square p < 1e-3 of the
selected set). The coverage of the bootstrap intervals is measured by
``scripts/bench/coverage_isocon.py``. Writes JSON + Markdown::

    python scripts/bench/recovery_isocon.py --seeds 100 --q 1 0.5 --out benchmarks/isocon_recovery.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro.models import massbalance as mb
from jaxpetro.synthetic.wholerock import make_wholerock


def variants(qs) -> list[tuple[str, mb.SparseOptions]]:
    """(name, select options): the workflow's default (q = 1, refined) and the alternatives."""
    out = []
    for q in qs:
        out.append((f"sparse q={q:g}", mb.SparseOptions(q=q)))
        if q == 1.0:
            out.append(("sparse q=1, single-start refine", mb.SparseOptions(q=q, refine_multistart=False)))
            out.append(("sparse q=1, no refine", mb.SparseOptions(q=q, refine=False)))
    return out


def log_data(d):
    """The isocon inputs of a synthetic set (one reference analysis; its noise as the analytical error)."""
    return mb.log_data(d.values, np.full(d.values.shape, d.noise), [0], list(range(1, len(d.samples))))[0]


def one_seed(seed: int, qs) -> dict:
    d = make_wholerock(seed)
    y, w = mb.log_ratios(log_data(d))
    a_true = -np.log(d.mass_ratio)
    out = {}
    for name, options in variants(qs):
        t = time.perf_counter()
        sel = mb.select(y, w, options)
        a = np.asarray(sel.intercept)
        seconds = time.perf_counter() - t
        imm = np.asarray(sel.immobile[:, 0])
        tp = int(np.sum(imm & d.immobile))
        _, _, p = mb.chi2_fit(y, w, sel.immobile, sel.intercept)
        out[name] = {
            "rmse": float(np.sqrt(np.mean((a - a_true) ** 2))), "precision": tp / max(int(imm.sum()), 1),
            "recall": tp / int(d.immobile.sum()), "n_immobile": int(imm.sum()), "chi2_p": float(p),
            "seconds": seconds,
        }
    med = np.median(np.asarray(y), axis=0)
    out["median"] = {"rmse": float(np.sqrt(np.mean((med - a_true) ** 2)))}
    oracle = np.asarray(mb.refit_intercept(y, w, jnp.asarray(np.repeat(d.immobile[:, None], 5, axis=1))))
    out["oracle"] = {"rmse": float(np.sqrt(np.mean((oracle - a_true) ** 2)))}
    return out


def summarise(per_seed: list[dict]) -> dict:
    table = {}
    for name in per_seed[0]:
        rows = [s[name] for s in per_seed]
        rmse = np.array([r["rmse"] for r in rows])
        entry = {"median_rmse": float(np.median(rmse)), "mean_rmse": float(np.mean(rmse)),
                 "gross_error_share": float(np.mean(rmse > 0.12))}
        if "precision" in rows[0]:
            entry.update({
                "mean_precision": float(np.mean([r["precision"] for r in rows])),
                "mean_recall": float(np.mean([r["recall"] for r in rows])),
                "median_recall": float(np.median([r["recall"] for r in rows])),
                "refused_share": float(np.mean([r["chi2_p"] < 1e-3 for r in rows])),
                "median_rmse_accepted": float(np.median([r["rmse"] for r in rows if r["chi2_p"] >= 1e-3])),
                "mean_seconds": float(np.mean([r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]])),
            })
        table[name] = entry
    return table


def markdown(summary: dict, n: int) -> str:
    lines = [f"Synthetic recovery over {n} seeds (20 elements, 5 samples, 30 % immobile, mass ratios 0.7–1.5, "
             "10 % noise). RMSE of log(M^A/M^O); precision/recall of the immobile set.", "",
             "| estimator | median RMSE | mean RMSE | gross errors (RMSE > 0.12) | precision | recall (mean / median) "
             "| refused (χ² p < 1e-3) | median RMSE of accepted | s / data set |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, e in summary.items():
        if "mean_precision" in e:
            lines.append(f"| {name} | {e['median_rmse']:.4f} | {e['mean_rmse']:.4f} | {100 * e['gross_error_share']:.0f} % "
                         f"| {e['mean_precision']:.3f} | {e['mean_recall']:.3f} / {e['median_recall']:.2f} "
                         f"| {100 * e['refused_share']:.0f} % | {e['median_rmse_accepted']:.4f} | {e['mean_seconds']:.2f} |")
        else:
            lines.append(f"| {name} | {e['median_rmse']:.4f} | {e['mean_rmse']:.4f} | "
                         f"{100 * e['gross_error_share']:.0f} % | — | — | — | — | — |")
    return "\n".join(lines) + "\n"


def main() -> None:
    jax.config.update("jax_enable_x64", True)  # the kernels' float64 (jaxpetro changes no JAX setting on import)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--q", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--out", default="benchmarks/isocon_recovery.json")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.time()
    load0 = os.getloadavg()[0]
    per_seed = [one_seed(s, args.q) for s in range(args.seeds)]
    summary = summarise(per_seed)
    md = markdown(summary, args.seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"summary": summary, "per_seed": per_seed, "seeds": args.seeds, "q": args.q,
              "wall_s": time.time() - start, "load_average_start": load0, "load_average_end": os.getloadavg()[0],
              "machine": platform.processor() or platform.machine(), "jax": jax.__version__,
              "note": "2 CPU cores shared with other work; timings indicative only"}
    out.write_text(json.dumps(record, indent=1))
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

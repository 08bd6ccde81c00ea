#!/usr/bin/env python
"""Coverage of the isocon's bootstrap intervals on synthetic whole-rock sets with known truth (issue 10 item 19).

For each seed and each generator of :mod:`jaxpetro.synthetic.wholerock` — ``random``
(:func:`make_wholerock`, the recovery study's: 20 elements, a random 30 % immobile, mass
ratios uniform in 0.7-1.5, 10 % noise on every analysis, the protolith's included) and
``basalt`` (:func:`make_altered_basalt`, the demo's: a sericite-chlorite altered basalt
closed to 100 wt%, Ti Al Zr Nb Y Th immobile, 2 % noise on oxides, 6 % on traces) — the
sparse isocon runs as the workflow does (defaults, the true noise as the analytical
error), draws the workflow's parametric bootstrap (:func:`montecarlo_sparse`, the
protolith error shared by all samples) and builds:

* ``basic``: the workflow's default (:func:`bootstrap_intervals`, ``uncertainty.interval:
  basic``), the basic (pivotal) interval of the replicates;
* ``bootstrap-t``: ``uncertainty.interval: studentized``, the bootstrap-t studentized by each
  fit's misfit (Birge ratio);
* ``percentile``: the plain percentile interval of the replicates.

Coverage = share of true log mass ratios and true log mobilities ``b_ij`` inside the
nominal-95 % intervals, over the samples the workflow accepts (chi-square p >= 1e-3; the
others stop with "cannot be identified" and get no interval) and over all. Also checked:
every point estimate lies inside its basic and its bootstrap-t interval. Writes JSON + Markdown::

    python scripts/bench/coverage_isocon.py --seeds 40 --out benchmarks/isocon_coverage.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from _machine import cpu_model
from jaxpetro.models import massbalance as mb
from jaxpetro.synthetic.wholerock import make_altered_basalt, make_wholerock

GENERATORS = {"random": make_wholerock, "basalt": make_altered_basalt}
METHODS = ("basic", "bootstrap-t", "percentile")


def one_seed(generator: str, seed: int, replicates: int, level: float) -> dict:
    """Inside/outside flags of every interval of one data set, per method."""
    d = GENERATORS[generator](seed)
    noise = np.broadcast_to(np.asarray(d.noise, float), d.values.shape)
    ref = [d.samples.index(r) for r in d.reference]
    alt = [d.samples.index(a) for a in d.altered]
    data, _ = mb.log_data(d.values, noise, ref, alt)
    y, w = mb.log_ratios(data)
    sel = mb.select(y, w)
    reps = mb.montecarlo_sparse(jax.random.PRNGKey(seed), data, sel.lam, sel.solution.coef, sel.immobile,
                                n=replicates)
    imm, a0, y0 = np.asarray(sel.immobile), np.asarray(sel.intercept), np.asarray(y)
    _, _, p = mb.chi2_fit(y, w, sel.immobile, sel.intercept)
    a_true, b_true = -np.log(d.mass_ratio), d.mobility
    d0 = y0 - a0[None, :]
    a_iv, b_iv = {}, {}
    for name, method in (("bootstrap-t", "studentized"), ("basic", "basic")):
        iv = mb.bootstrap_intervals(y, w, sel.immobile, sel.intercept, reps, level, method)
        # log scale: a in [-log hi, -log lo], b in [log1p(lo), log1p(hi)]
        a_iv[name] = (-np.log(iv.mass_ratio_hi), -np.log(iv.mass_ratio_lo))
        b_iv[name] = (np.log1p(iv.relative_change_lo), np.log1p(iv.relative_change_hi))
    ra = np.asarray(reps.intercept)
    dr = np.asarray(reps.y) - ra[:, None, :]
    a_iv["percentile"] = mb.interval(ra, level)
    b_iv["percentile"] = mb.interval(dr, level)
    out = {"seed": seed, "accepted": bool(float(p) >= 1e-3), "chi2_p": float(p),
           "exact_selection": bool(np.all(imm[:, 0] == d.immobile)),
           "birge_ratio": iv.birge_ratio.tolist(), "immobile_entry": imm.ravel().tolist()}
    tol = 1e-12
    out["point_inside"] = all(bool(np.all((a_iv[m][0] <= a0 + tol) & (a0 <= a_iv[m][1] + tol))
                                   and np.all((b_iv[m][0] <= d0 + tol) & (d0 <= b_iv[m][1] + tol)))
                              for m in ("basic", "bootstrap-t"))
    for m in METHODS:
        lo, hi = a_iv[m]
        blo, bhi = b_iv[m]
        out[m] = {"a_inside": ((lo <= a_true) & (a_true <= hi)).tolist(), "a_width": (hi - lo).tolist(),
                  "b_inside": ((blo <= b_true) & (b_true <= bhi)).ravel().tolist()}
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (samples treated as independent)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(c - h), float(c + h)


def summarise(rows: list[dict]) -> dict:
    """Coverage per method of mass ratios and log mobilities (accepted / all), widths, point inside."""
    acc = np.concatenate([[r["accepted"]] * len(r["basic"]["a_inside"]) for r in rows])
    acc_b = np.concatenate([[r["accepted"]] * len(r["basic"]["b_inside"]) for r in rows])
    imm_b = np.concatenate([r["immobile_entry"] for r in rows]).astype(bool)
    out = {"n_seeds": len(rows), "n_mass_ratios": int(acc.size), "n_accepted": int(acc.sum()),
           "seeds_refused": int(sum(not r["accepted"] for r in rows)),
           "seeds_exact_selection": int(sum(r["exact_selection"] for r in rows)),
           "point_inside_all": bool(all(r["point_inside"] for r in rows)),
           "median_birge_ratio_accepted": float(np.median(np.concatenate(
               [r["birge_ratio"] for r in rows if r["accepted"]] or [[np.nan]])))}
    for m in METHODS:
        a = np.concatenate([r[m]["a_inside"] for r in rows]).astype(bool)
        b = np.concatenate([r[m]["b_inside"] for r in rows]).astype(bool)
        width = np.concatenate([r[m]["a_width"] for r in rows])
        out[m] = {"mass_ratio_accepted": float(a[acc].mean()), "mass_ratio_all": float(a.mean()),
                  "mass_ratio_accepted_wilson95": wilson(int(a[acc].sum()), int(acc.sum())),
                  "log_change_accepted": float(b[acc_b].mean()), "log_change_all": float(b.mean()),
                  "log_change_accepted_mobile": float(b[acc_b & ~imm_b].mean()),
                  "log_change_accepted_immobile": float(b[acc_b & imm_b].mean()),
                  "median_width_log_mass_ratio_accepted": float(np.median(width[acc]))}
    return out


def markdown(record: dict) -> str:
    lines = [f"Coverage of nominal {100 * record['level']:g} % intervals, {record['replicates']} bootstrap replicates, "
             f"seeds {record['start']}..{record['start'] + record['seeds'] - 1} per generator "
             f"({record['cpu']}, shared 2-core machine, {record['wall_s']:.0f} s).", "",
             "| generator | interval | M^A/M^O, accepted (Wilson 95 %) | M^A/M^O, all | log change, accepted "
             "(mobile / immobile entries) | log change, all | median width of log M^A/M^O |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for gen, s in record["summary"].items():
        for m in METHODS:
            e = s[m]
            lo, hi = e["mass_ratio_accepted_wilson95"]
            lines.append(f"| {gen} | {m} | {100 * e['mass_ratio_accepted']:.1f} % ({100 * lo:.0f}–{100 * hi:.0f}) "
                         f"| {100 * e['mass_ratio_all']:.1f} % | {100 * e['log_change_accepted']:.1f} % "
                         f"({100 * e['log_change_accepted_mobile']:.1f} / {100 * e['log_change_accepted_immobile']:.1f}) "
                         f"| {100 * e['log_change_all']:.1f} % | {e['median_width_log_mass_ratio_accepted']:.3f} |")
    lines.append("")
    for gen, s in record["summary"].items():
        lines.append(f"* {gen}: {s['n_accepted']} of {s['n_mass_ratios']} mass ratios accepted "
                     f"({s['seeds_refused']} of {s['n_seeds']} seeds refused, {s['seeds_exact_selection']} with the "
                     f"exact immobile set); median Birge ratio of the accepted fits {s['median_birge_ratio_accepted']:.2f}; "
                     f"every point estimate inside its basic and bootstrap-t intervals: {s['point_inside_all']}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    jax.config.update("jax_enable_x64", True)  # the kernels' float64 (jaxpetro changes no JAX setting on import)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--start", type=int, default=0, help="first seed (e.g. 40 for a held-out check)")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (the workflow's default)")
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    parser.add_argument("--out", default="benchmarks/isocon_coverage.json")
    args = parser.parse_args()
    start, load0 = time.time(), os.getloadavg()[0]
    per_seed = {g: [one_seed(g, s, args.replicates, args.level) for s in range(args.start, args.start + args.seeds)]
                for g in args.generators}
    record = {"level": args.level, "replicates": args.replicates, "seeds": args.seeds, "start": args.start,
              "summary": {g: summarise(rows) for g, rows in per_seed.items()}, "per_seed": per_seed,
              "wall_s": time.time() - start, "cpu": cpu_model(), "load_average_start": load0,
              "load_average_end": os.getloadavg()[0], "jax": jax.__version__,
              "note": "2 CPU cores shared with other work; timings indicative only"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    md = markdown(record)
    out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

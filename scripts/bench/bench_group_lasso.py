#!/usr/bin/env python
"""Benchmark: 1000 bootstrap replicates of the sparse isocon in one vmapped call vs skglm.

Data: a synthetic whole-rock set (:func:`jaxpetro.synthetic.wholerock.make_wholerock`,
seed 0: 20 elements, 5 altered samples, 10 % noise); λ is the one the sparse isocon
chooses by BIC on it. Replicates: the workflow's parametric bootstrap
(:func:`jaxpetro.models.massbalance.perturb` about the fitted values), the same 1000 data
sets for every method.

* ``jaxpetro vmap``: :func:`jaxpetro.kernels.group_lasso.solve` vmapped over the replicates,
  one compiled call (compilation excluded), BCD and FISTA, cold start (B = 0) and warm
  start (the point estimate); KKT tolerance 1e-9.
* ``skglm loop``: a Python loop of ``skglm.GroupLasso`` fits, one per replicate, on the
  equivalent design: the intercepts are profiled out (per sample j, ``L_j = P_j D_j^(1/2)``
  with ``D_j = diag(W_.j)`` and ``P_j`` the projection orthogonal to ``sqrt(W_.j)``), giving a
  single-task group lasso with G groups of S coefficients, ``X = blockdiag_j(L_j)``,
  ``alpha = λ / (G S)``, ``fit_intercept=False``; skglm ``tol=1e-9`` (its own criterion);
  cold (a fresh estimator) and warm (``warm_start=True``, one estimator reused).

Both sides run in the same process on the same (shared, 2-core) machine; each timing is
the best of ``--rounds`` runs. The JSON records the agreement of the solutions.

    python scripts/bench/bench_group_lasso.py [--replicates 1000] [--out benchmarks/group_lasso_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro.kernels import group_lasso as gl
from jaxpetro.models import massbalance as mb
from jaxpetro.synthetic.wholerock import make_wholerock


def problem(n_rep: int):
    d = make_wholerock(0)
    data, _ = mb.log_data(d.values, np.full(d.values.shape, d.noise), [0], list(range(1, len(d.samples))))
    y, w = mb.log_ratios(data)
    sel = mb.select(y, w)
    yhat = mb.fitted(y, sel.immobile, sel.intercept)
    ys = mb.perturb(jax.random.PRNGKey(0), yhat, data, n_rep)
    return np.asarray(y), np.asarray(w), float(sel.lam), np.asarray(sel.solution.coef), np.asarray(ys)


def skglm_design(w: np.ndarray):
    """Blocks L_j (G x G) with 1/2 ||L_j (y_j - b_j)||^2 = the profiled loss of sample j."""
    g, s = w.shape
    blocks = []
    for j in range(s):
        sw = np.sqrt(w[:, j])
        u = sw / np.linalg.norm(sw)
        blocks.append((np.eye(g) - np.outer(u, u)) @ np.diag(sw))
    x = np.zeros((g * s, g * s))
    for j, lj in enumerate(blocks):
        x[j * g:(j + 1) * g, j::s] = lj  # column i * S + j holds b_ij: element-major, groups of S
    return x, blocks


def best_of(fn, rounds: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


def main() -> None:
    jax.config.update("jax_enable_x64", True)  # the kernels' float64 (jaxpetro changes no JAX setting on import)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skglm-rounds", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/group_lasso_cpu.json")
    args = parser.parse_args()
    from skglm import GroupLasso

    load0 = os.getloadavg()
    y, w, lam, coef0, ys = problem(args.replicates)
    g, s = y.shape
    n = args.replicates
    results, solutions = {}, {}

    for method in ("bcd", "fista"):
        for start in ("cold", "warm"):
            init = None if start == "cold" else jnp.asarray(coef0)
            options = gl.LassoOptions(solver=method, tol=1e-9)
            fn = jax.jit(jax.vmap(lambda yy, o=options, i=init: gl.solve(yy, w, lam, o, None, i)))
            out = fn(ys)  # compile + first run
            jax.block_until_ready(out)
            best, times = best_of(lambda: jax.block_until_ready(fn(ys)), args.rounds)
            name = f"jaxpetro vmap {method} {start}"
            results[name] = {"seconds": best, "all_seconds": times, "per_replicate_ms": 1e3 * best / n,
                             "mean_iterations": float(np.mean(out.status.iterations)),
                             "all_converged": bool(np.all(out.status.converged)),
                             "max_kkt": float(np.max(out.kkt))}
            solutions[name] = np.asarray(out.coef)

    x, _ = skglm_design(w)
    ys_big = np.stack([np.concatenate([_ for _ in skglm_targets(yy, w)]) for yy in ys])
    alpha = lam / (g * s)

    def run_skglm(warm: bool):
        coefs = np.empty((n, g, s))
        model = GroupLasso(groups=s, alpha=alpha, tol=1e-9, max_iter=500, max_epochs=100000, fit_intercept=False,
                           warm_start=warm)
        for k in range(n):
            est = model if warm else GroupLasso(groups=s, alpha=alpha, tol=1e-9, max_iter=500, max_epochs=100000,
                                                fit_intercept=False)
            est.fit(x, ys_big[k])
            coefs[k] = est.coef_.reshape(g, s)
        return coefs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_skglm(False)  # numba compilation
        for warm in (False, True):
            holder = {}
            best, times = best_of(lambda: holder.__setitem__("c", run_skglm(warm)), args.skglm_rounds)
            name = f"skglm loop {'warm' if warm else 'cold'}"
            results[name] = {"seconds": best, "all_seconds": times, "per_replicate_ms": 1e3 * best / n}
            solutions[name] = holder["c"]

    ref = solutions["jaxpetro vmap bcd cold"]
    scale = np.abs(ref).max()
    agreement = {name: float(np.max(np.abs(c - ref)) / scale) for name, c in solutions.items()}
    support = {name: float(np.mean((np.linalg.norm(c, axis=2) > 1e-8) == (np.linalg.norm(ref, axis=2) > 0)))
               for name, c in solutions.items()}
    fastest = min((r["seconds"], k) for k, r in results.items() if k.startswith("jaxpetro"))
    ratios = {k: r["seconds"] / fastest[0] for k, r in results.items()}
    record = {
        "problem": {"elements": g, "samples": s, "replicates": n, "lambda": lam, "lambda_over_max":
                    lam / float(gl.lambda_max(y, w, jnp.ones(g)))},
        "results": results, "time_ratio_vs_fastest_jaxpetro": ratios,
        "max_relative_coef_difference_vs_bcd_cold": agreement, "support_agreement_vs_bcd_cold": support,
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "skglm": __import__("skglm").__version__, "load_average_start": load0,
                    "load_average_end": os.getloadavg(),
                    "note": "2 CPU cores shared with other engineers' work; both sides timed in the same run"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    lines = [f"{n} bootstrap replicates, G = {g} elements x S = {s} samples, λ = {record['problem']['lambda_over_max']:.3f} λ_max "
             f"(BIC choice); best of {args.rounds} (jaxpetro) / {args.skglm_rounds} (skglm) runs.", "",
             "| method | seconds (all replicates) | ms / replicate | × fastest jaxpetro | max rel. coef. diff. vs BCD cold | support agreement |",
             "|---|---:|---:|---:|---:|---:|"]
    for k, r in results.items():
        lines.append(f"| {k} | {r['seconds']:.3f} | {r['per_replicate_ms']:.3f} | {ratios[k]:.1f} | "
                     f"{agreement[k]:.1e} | {100 * support[k]:.1f} % |")
    md = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(md)
    print(md)


def skglm_targets(y: np.ndarray, w: np.ndarray):
    _, blocks = skglm_design(w)
    return [lj @ y[:, j] for j, lj in enumerate(blocks)]


if __name__ == "__main__":
    main()

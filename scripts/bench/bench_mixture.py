#!/usr/bin/env python
"""Seconds per EM iteration: jaxpetro's mixture kernel vs scikit-learn and NumPy.

What is measured (all on the same synthetic data, in one run):

* ``jaxpetro`` -- :func:`jaxpetro.kernels.mixture.fit` for the ``poisson``, ``diag`` and
  ``full`` families, ``compute_dtype`` float64 and float32, at the default chunk size
  (65536) and, for the chunk sweep, 16384 and 262144;
* ``sklearn`` -- :class:`sklearn.mixture.GaussianMixture` (diag, full) from the same
  initial parameters (``weights_init``/``means_init``/``precisions_init``), tol = 0;
* ``numpy`` -- a plain vectorised NumPy implementation of the same Poisson EM updates
  (``tests/_numpy_em.py``, also the tests' oracle), in chunks of 65536 pixels (the
  Poisson family has no scikit-learn peer);
* ``read bound`` -- one NumPy streaming pass that reads every float32 element once.

Seconds per iteration are ``(t(n_hi) - t(n_lo)) / (n_hi - n_lo)`` where ``t(n)`` is the
wall time of a whole fit run for exactly ``n`` iterations (tol = 0) from the same
initial parameters: set-up, the final membership pass and (for JAX) dispatch cancel.
JAX programs are compiled ahead of time (``jit(...).lower(...).compile()``), so
compilation is never timed.

The machine has 2 cores that other work may share, so timing is done in rounds
(``--rounds``): each round runs every method once for n_lo and once for n_hi, all
methods and sizes interleaved (direction alternating); ``t(n)`` is the minimum over
rounds. A burst of foreign load then spoils one round of a few methods instead of
every sample of one. ``CPU x`` (process CPU time / wall time of the difference) shows
how many cores a method kept busy; the load average is recorded at each round.

Per-iteration FLOPs follow a simple algorithmic model (documented in
:func:`flop_model`); ``GFLOP/s`` is that model divided by the measured time.

Usage::

    python scripts/bench/bench_mixture.py                      # full run, ~10 min on 2 cores
    python scripts/bench/bench_mixture.py --quick              # smoke run (N = 2e5), ~1 min
    python scripts/bench/bench_mixture.py --quick --sizes 2e4 --out /tmp/m.json   # seconds
    python scripts/bench/bench_mixture.py --sizes 1e6 --iters 3 8 --no-sklearn-full

Writes ``--out`` (JSON) and the Markdown table next to it (same stem, ``.md``),
atomically.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

K = 8
D = 10
REG_COVAR = 1e-6
DEFAULT_CHUNK = 65536  # the reference block size of the tables (the kernel's own default is automatic)
REPO = Path(__file__).resolve().parents[2]

for _path in (REPO, REPO / "tests"):  # run from a checkout without installing; tests/ holds the NumPy EM
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=None, help="pixel counts N (default 1e6 4e6; --quick: 2e5)")
    ap.add_argument("--iters", nargs=2, type=int, default=[3, 8], metavar=("N_LO", "N_HI"),
                    help="iteration counts whose time difference gives s/iter (default 3 8)")
    ap.add_argument("--sklearn-iters", nargs=2, type=int, default=None, metavar=("N_LO", "N_HI"),
                    help="iteration counts for scikit-learn diag (default: --iters at N <= 1e6, else 1 4)")
    ap.add_argument("--sklearn-full-iters", nargs=2, type=int, default=None, metavar=("N_LO", "N_HI"),
                    help="iteration counts for scikit-learn full covariance (default 1 3)")
    ap.add_argument("--chunks", nargs="+", type=int, default=[16384, DEFAULT_CHUNK, 262144],
                    help="chunk sizes for the jaxpetro sweep (default 16384 65536 262144)")
    ap.add_argument("--sweep-max-n", type=float, default=1e6,
                    help="run the chunk-size sweep only at sizes N <= this (default 1e6; the default chunk runs everywhere)")
    ap.add_argument("--sweep-dtypes", nargs="+", default=["float32", "float64"],
                    help="compute dtypes swept over chunk sizes (the default chunk always runs both)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timing rounds over all methods (each round: one n_lo and one n_hi run per method); "
                         "the minimum per n over rounds is kept (default 3)")
    ap.add_argument("--sweep-rounds", type=int, default=1, help="rounds for the non-default chunk sizes (default 1)")
    ap.add_argument("--slow-pair-s", type=float, default=25.0,
                    help="a method whose first (n_lo, n_hi) pair took longer is not repeated (default 25)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sklearn-full", action="store_true", help="skip scikit-learn full covariance")
    ap.add_argument("--quick", action="store_true", help="small smoke run (N = 2e5, few iterations)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "mixture_cpu.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = args.sizes or [2e5]
        args.iters = [1, 3]
        args.sklearn_iters = [1, 3]
        args.sklearn_full_iters = [1, 2]
        args.chunks = [16384, DEFAULT_CHUNK]
        args.sweep_dtypes = ["float32"]
        args.sweep_max_n = 2e5
        args.rounds = 1
    args.sizes = args.sizes or [1e6, 4e6]
    if args.iters[1] <= args.iters[0]:
        ap.error("--iters N_LO N_HI needs N_HI > N_LO")
    return args


# --------------------------------------------------------------------------------------
# Small utilities.
# --------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


class Timer:
    """Wall and process-CPU time of a block (CPU/wall > 1 means several cores busy)."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def machine_info() -> dict:
    import jax
    import sklearn

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    flags = ""
    try:
        txt = Path("/proc/cpuinfo").read_text()
        fl = next(line for line in txt.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
        flags = " ".join(f for f in ("avx2", "fma", "avx512f") if f in fl)
    except (OSError, StopIteration):  # pragma: no cover
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:  # pragma: no cover
        pass
    blas = None
    try:
        import threadpoolctl

        blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")} for i in threadpoolctl.threadpool_info()]
    except Exception:  # noqa: BLE001 - optional
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "jaxpetro/kernels"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        commit, dirty = "", ""
    return {
        "cpu_model": cpu,
        "cpu_flags": flags,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "mem_total_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "sklearn": sklearn.__version__,
        "blas": blas,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": commit,
        "kernel_dirty": bool(dirty),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------
# Synthetic data.
# --------------------------------------------------------------------------------------


def truth(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K x D phase count rates (log-uniform on 2..3000) and mixture weights."""
    rng = np.random.default_rng([seed, 7])
    rates = 10.0 ** rng.uniform(math.log10(2.0), math.log10(3000.0), (K, D))
    w = np.maximum(rng.dirichlet(np.full(K, 2.0)), 0.02)
    return rates, w / w.sum()


def make_data(n: int, seed: int) -> dict:
    """Poisson-mixture counts (float32), exposure ~ 1 +- 2 %, and sqrt(counts/exposure)."""
    rates, w = truth(seed)
    rng = np.random.default_rng([seed, n])
    x = np.empty((n, D), np.float32)
    e = np.empty(n, np.float32)
    block = 1 << 20
    for s in range(0, n, block):
        b = min(block, n - s)
        lab = rng.choice(K, b, p=w)
        eb = np.clip(1.0 + 0.02 * rng.standard_normal(b), 0.9, 1.1)
        x[s : s + b] = rng.poisson(eb[:, None] * rates[lab])
        e[s : s + b] = eb
    g = np.sqrt(x / e[:, None]).astype(np.float32)
    return {"x": x, "e": e, "g": g, "rates": rates, "weights": w}


# --------------------------------------------------------------------------------------
# Cost model.
# --------------------------------------------------------------------------------------


def n_features(family: str, d: int = D) -> int:
    """Columns P of the per-pixel design features F: log p(x | k) = F . W_k + c_k."""
    return {"poisson": d + 1, "diag": 2 * d, "full": d * (d + 1) // 2 + d}[family]


def flop_model(family: str, k: int = K, d: int = D) -> dict:
    """Algorithmic work per pixel per EM iteration (the M-step is O(K D^2), negligible).

    Every family's E-step is one GEMM with its P design features (Poisson [x, e],
    diag [x^2, x], full [x_d x_e (d <= e), x]: P = 11, 20, 65 for D = 10) and its
    sufficient statistics a second, r^T F: 2 x 2 P K flops, plus building F (P) and
    ~6 K elementwise flops for the max shift / exp / normalisation. scikit-learn's
    formulations differ (full: K whitening products and K weighted outer products,
    ~4 K D^2) but are the same order. ``exp`` is what any implementation needs: K
    exponentials and 1 log per pixel.
    """
    p = n_features(family, d)
    mm = 4 * p * k
    return {"flops": mm + p + 6 * k, "matmul_flops": mm, "exp": k + 1, "features": p}


# --------------------------------------------------------------------------------------
# Methods.
# --------------------------------------------------------------------------------------


def init_params(data: dict, family: str, seed: int):
    """jaxpetro initial parameters: k-means++ centres + one hard M-step (kernel API)."""
    import jax
    import jax.numpy as jnp

    from jaxpetro.kernels import mixture as mx
    from jaxpetro.kernels.kmeans import kmeanspp_centres

    key = jax.random.PRNGKey(seed)
    opts = mx.MixtureOptions(family=family, chunk_size=DEFAULT_CHUNK, reg_covar=REG_COVAR)
    if family == "poisson":
        x, e = jnp.asarray(data["x"]), jnp.asarray(data["e"])
        centres = kmeanspp_centres(key, x / e[:, None], K)
        p = mx.init_from_centres(x, centres, e, options=opts)
    else:
        g = jnp.asarray(data["g"])
        centres = kmeanspp_centres(key, g, K)
        p = mx.init_from_centres(g, centres, None, options=opts)
    return jax.block_until_ready(p)


class Task:
    """One timed method. ``run(n)`` fits for exactly n iterations and returns a :class:`Timer`.

    :func:`run_rounds` samples every task once per round (one n_lo and one n_hi run),
    interleaving all methods, so a burst of load from another process spoils one
    round of several methods rather than every sample of one method; the minimum
    wall time per n over the rounds is kept.
    """

    def __init__(self, name: str, iters, run, finish, max_rounds: int, meta: dict):
        self.name, self.iters, self.run, self.finish, self.max_rounds, self.meta = name, tuple(iters), run, finish, max_rounds, meta
        self.best: dict = {}
        self.walls: dict = {n: [] for n in self.iters}
        self.pairs = 0

    def sample(self) -> float:
        spent = 0.0
        for n in self.iters:
            t = self.run(n)
            spent += t.wall
            self.walls[n].append(round(t.wall, 4))
            if n not in self.best or t.wall < self.best[n].wall:
                self.best[n] = t
        self.pairs += 1
        return spent

    def result(self) -> dict:
        out = {n: {"wall": t.wall, "cpu": t.cpu, "all_walls": self.walls[n]} for n, t in self.best.items()}
        return {"method": self.name} | self.meta | _diff(out, *self.iters) | {"pairs": self.pairs} | self.finish()


def run_rounds(tasks: list, rounds: int, slow_pair_s: float, on_round=None) -> None:
    """Round-robin sampling; direction alternates; a task whose first pair took longer
    than ``slow_pair_s`` is not repeated."""
    for r in range(rounds):
        order = tasks if r % 2 == 0 else tasks[::-1]
        todo = [t for t in order if r < t.max_rounds]
        if not todo:
            break
        log(f"round {r + 1}/{rounds}: {len(todo)} methods (load {loadavg()})")
        for t in todo:
            spent = t.sample()
            if r == 0 and spent > slow_pair_s:  # long enough that short bursts average out
                t.max_rounds = 1
            if r == 0 or t.pairs == t.max_rounds:
                log(f"  {t.name:<44} n={t.iters}: {', '.join(f'{t.walls[n][-1]:.3f}s' for n in t.iters)}")
        if on_round is not None:
            on_round(r)


def jax_task(xj, ej, params, family, dtype, chunk, iters, max_rounds, n) -> Task:
    """mixture.fit, AOT-compiled for both iteration counts (compilation is never timed)."""
    import jax

    from jaxpetro.kernels import mixture as mx

    compiled, compile_s, last, opts = {}, {}, {}, {}
    for it in iters:
        opts[it] = mx.MixtureOptions(family=family, max_iter=it, tol=0.0, min_iter=0, chunk_size=chunk,
                                     reg_covar=REG_COVAR, compute_dtype=dtype)
        with Timer() as tc:
            compiled[it] = mx.fit.lower(xj, params, ej, None, None, opts[it]).compile()
        compile_s[it] = tc.wall
    if max_rounds < 2:  # a single sample: take the first-execution cost out of it
        jax.block_until_ready(compiled[iters[0]](xj, params, ej, None, None, opts[iters[0]]))

    def run(it):
        with Timer() as t:
            last[it] = jax.block_until_ready(compiled[it](xj, params, ej, None, None, opts[it]))
        return t

    def finish():
        for it in iters:
            st = last[it].status
            if int(st.iterations) != it or not bool(st.finite):
                raise RuntimeError(f"jaxpetro {family}/{dtype}: iterations={int(st.iterations)} (wanted {it}), "
                                   f"finite={bool(st.finite)}")
        hi = iters[1]
        return {"compile_s": compile_s[hi], "loglik_hist_last": float(np.asarray(last[hi].history)[hi - 1]),
                "params": jax.tree.map(np.asarray, last[hi].params)}

    meta = {"impl": "jaxpetro", "family": family, "dtype": dtype, "chunk": chunk, "n": n}
    return Task(f"jaxpetro {family} {dtype} chunk={chunk}", iters, run, finish, max_rounds, meta)


def _diff(out: dict, lo: int, hi: int) -> dict:
    dw = out[hi]["wall"] - out[lo]["wall"]
    dc = out[hi]["cpu"] - out[lo]["cpu"]
    return {
        "n_lo": lo,
        "n_hi": hi,
        "t_lo": out[lo]["wall"],
        "t_hi": out[hi]["wall"],
        "s_per_iter": dw / (hi - lo),
        "fixed_s": out[lo]["wall"] - lo * dw / (hi - lo),
        "cpu_util": dc / dw if dw > 0 else float("nan"),
        "all_walls": {str(n): v.get("all_walls") for n, v in out.items()},
    }


def sklearn_init(params, family: str) -> dict:
    w = np.exp(np.asarray(params.log_weights, np.float64))
    means = np.asarray(params.loc, np.float64)
    if family == "diag":
        prec = 1.0 / np.asarray(params.scale, np.float64)
    else:
        chol = np.asarray(params.scale, np.float64)
        cov = chol @ np.swapaxes(chol, 1, 2)
        prec = np.linalg.inv(cov)
        prec = 0.5 * (prec + np.swapaxes(prec, 1, 2))
    return {"weights_init": w / w.sum(), "means_init": means, "precisions_init": prec}


def sklearn_task(g64, params, family, iters, max_rounds, n) -> Task:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    init = sklearn_init(params, family)
    last = {}

    def run(it):
        gm = GaussianMixture(K, covariance_type=family, tol=0.0, max_iter=it, reg_covar=REG_COVAR,
                             init_params="random_from_data", random_state=0, **init)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with Timer() as t:
                gm.fit(g64)
        if gm.n_iter_ != it:
            raise RuntimeError(f"sklearn {family}: n_iter_={gm.n_iter_} (wanted {it})")
        last[it] = gm
        return t

    def finish():
        # Cross-check: one EM iteration timed directly (the body of GaussianMixture's loop:
        # _e_step + _m_step; private API, so only a check of the fit difference).
        gm, direct = last[iters[1]], []
        means, lower_bound = gm.means_.copy(), float(gm.lower_bound_)
        for _ in range(2):
            with Timer() as t:
                _, log_resp = gm._e_step(g64)
                gm._m_step(g64, log_resp)
            direct.append(t.wall)
        return {"loglik_hist_last": lower_bound, "means": means, "direct_step_s": min(direct),
                "direct_step_all": [round(v, 4) for v in direct]}

    meta = {"impl": "sklearn", "family": family, "dtype": "float64", "chunk": None, "n": n}
    return Task(f"sklearn {family} float64", iters, run, finish, max_rounds, meta)


def numpy_task(x, e, params, iters, max_rounds, n, chunk=DEFAULT_CHUNK) -> Task:
    from _numpy_em import poisson_em, rate_floor

    floor = rate_floor(x, e)
    last = {}

    def run(it):
        with Timer() as t:
            last[it] = poisson_em(x, e, np.asarray(params.log_weights), np.asarray(params.loc), it, chunk, floor)
        return t

    def finish():
        return {"rates": last[iters[1]][1], "log_weights": last[iters[1]][0]}

    meta = {"impl": "numpy", "family": "poisson", "dtype": "float64", "chunk": chunk, "n": n}
    return Task(f"numpy poisson float64 chunk={chunk}", iters, run, finish, max_rounds, meta)


def read_bound(x: np.ndarray, chunk: int = DEFAULT_CHUNK, repeats: int = 7) -> dict:
    """Seconds for one NumPy pass that reads every float32 element once (best variant)."""

    def flat_chunked():
        acc = 0.0
        for s in range(0, x.shape[0], chunk):
            acc += float(np.add.reduce(x[s : s + chunk].reshape(-1)))
        return acc

    def axis0_chunked():
        acc = np.zeros(x.shape[1], np.float64)
        for s in range(0, x.shape[0], chunk):
            acc += x[s : s + chunk].sum(axis=0)
        return acc

    def flat_whole():
        return float(np.add.reduce(x.reshape(-1)))

    res = {}
    for name, fn in (("flat_chunked", flat_chunked), ("axis0_chunked", axis0_chunked), ("flat_whole", flat_whole)):
        fn()  # touch pages
        ts = []
        for _ in range(repeats):
            with Timer() as t:
                fn()
            ts.append(t.wall)
        res[name] = float(np.median(ts))
    best = min(res, key=res.get)
    return {"s": res[best], "variant": best, "variants_s": res, "GB_per_s": x.nbytes / res[best] / 1e9, "bytes": x.nbytes}


def machine_rates(repeats: int = 3) -> dict:
    """This CPU's rates for the floor: dense GEMM at BLAS peak (NumPy matmul of 2048^2
    matrices, every core) in float64 and float32, and XLA's exp and log throughput on a
    4e6 x 8 array (every core; what a JAX kernel can get for its K exponentials per pixel)."""
    import jax
    import jax.numpy as jnp

    out = {}
    for dt in ("float64", "float32"):
        a = np.random.default_rng(0).random((2048, 2048)).astype(dt)
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(repeats))
        out[f"gemm_peak_{dt}_GFps"] = 2 * 2048**3 / best / 1e9
        x = jnp.asarray(np.random.default_rng(1).random((4_000_000, 8)).astype(dt))
        for name, fn in (("exp", jnp.exp), ("log", jnp.log)):
            f = jax.jit(lambda v, fn=fn: jnp.sum(fn(v), dtype=jnp.float64)).lower(x).compile()
            f(x).block_until_ready()
            best = min(_timed(lambda: f(x).block_until_ready()) for _ in range(repeats))
            out[f"xla_{name}_{dt}_Gps"] = x.size / best / 1e9
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def floor_s(family: str, n: int, read_s: float, rates: dict, dtype: str = "float64") -> dict:
    """The machine's floor for one EM iteration: one read of the data (the NumPy read bound)
    + the model's FLOPs at the BLAS GEMM peak + K exps and 1 log per pixel at XLA's rates,
    each resource used alone and in turn (a sum: the lowest time without overlap; overlap
    of the three could at best halve it). Seconds, and the share of each part."""
    fm = flop_model(family)
    parts = {"read": read_s, "flops": fm["flops"] * n / (rates[f"gemm_peak_{dtype}_GFps"] * 1e9),
             "exp": n * (K / rates[f"xla_exp_{dtype}_Gps"] + 1 / rates[f"xla_log_{dtype}_Gps"]) / 1e9}
    return {"floor_s": sum(parts.values()), "floor_parts_s": parts}


# --------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)  # the kernel accumulates its statistics in float64
    import jax.numpy as jnp

    from jaxpetro.io.results import atomic_write
    from jaxpetro.kernels import mixture as mx

    t_start = time.perf_counter()
    out_path = Path(args.out)
    report = {
        "benchmark": "jaxpetro mixture EM, seconds per iteration (CPU)",
        "machine": machine_info(),
        "load_avg_start": loadavg(),
        "args": vars(args),
        "config": {"K": K, "D": D, "reg_covar": REG_COVAR, "default_chunk": DEFAULT_CHUNK, "seed": args.seed,
                   "data": "Poisson mixture counts (float32), rates log-uniform 2..3000, exposure 1 +- 2 %; "
                           "Gaussian families on sqrt(counts/exposure) float32; sklearn on the same values as float64"},
        "flop_model_per_pixel": {f: flop_model(f) for f in ("poisson", "diag", "full")},
        "sizes": {},
    }
    log(f"load {report['load_avg_start']}")
    report["machine_rates"] = machine_rates()
    log("machine rates: " + ", ".join(f"{k} {v:.2f}" for k, v in report["machine_rates"].items()))

    # ---- set-up: data, initial parameters and one Task per method and size.
    tasks, keep = [], {}
    for size in args.sizes:
        n = int(size)
        entry = {"n": n}
        report["sizes"][str(n)] = entry
        with Timer() as t:
            data = make_data(n, args.seed)
        entry["data_gen_s"] = t.wall
        entry["read_bound"] = rb = read_bound(data["x"])
        log(f"N={n}: data {t.wall:.1f}s; read bound {rb['s'] * 1e3:.2f} ms ({rb['GB_per_s']:.1f} GB/s, {rb['variant']})")
        with Timer() as t:
            params = {f: init_params(data, f, args.seed) for f in ("poisson", "diag", "full")}
        entry["init_s"] = t.wall
        xj, ej, gj = jnp.asarray(data["x"]), jnp.asarray(data["e"]), jnp.asarray(data["g"])
        g64 = data["g"].astype(np.float64)
        keep[n] = {"data": data, "params": params, "gj": gj, "g64": g64}
        with Timer() as t:
            for family in ("poisson", "diag", "full"):
                data_j, exp_j = (xj, ej) if family == "poisson" else (gj, None)
                for dtype in ("float64", "float32"):
                    for chunk in args.chunks:
                        sweep = chunk != DEFAULT_CHUNK
                        if chunk > n or (sweep and (dtype not in args.sweep_dtypes or n > args.sweep_max_n)):
                            continue
                        tasks.append(jax_task(data_j, exp_j, params[family], family, dtype, chunk, args.iters,
                                              args.sweep_rounds if sweep else args.rounds, n))
        entry["compile_s"] = t.wall
        log(f"  compiled {sum(1 for q in tasks if q.meta['n'] == n)} jaxpetro programs in {t.wall:.0f} s")
        tasks.append(numpy_task(data["x"], data["e"], params["poisson"], args.iters, args.rounds, n))
        sk_iters = args.sklearn_iters or (args.iters if n <= 1_000_000 else [1, 4])
        tasks.append(sklearn_task(g64, params["diag"], "diag", sk_iters, args.rounds, n))
        if not args.no_sklearn_full:
            tasks.append(sklearn_task(g64, params["full"], "full", args.sklearn_full_iters or [1, 3], args.rounds, n))

    # ---- timing rounds over all methods and sizes.
    report["rounds_load_avg"] = []
    run_rounds(tasks, args.rounds, args.slow_pair_s, on_round=lambda r: report["rounds_load_avg"].append(loadavg()))

    # ---- results, cross-checks and derived figures per size.
    for size in args.sizes:
        n = int(size)
        entry, kept = report["sizes"][str(n)], keep[n]
        rb = entry["read_bound"]
        full_rows = [q.result() for q in tasks if q.meta["n"] == n]
        by = {(r["impl"], r["family"], r["dtype"], r["chunk"]): r for r in full_rows}
        ref = by.get(("jaxpetro", "poisson", "float64", DEFAULT_CHUNK))  # absent when N < the default chunk
        npr = by[("numpy", "poisson", "float64", DEFAULT_CHUNK)]
        if ref is not None:
            p64 = ref["params"]
            npr["check_vs_jaxpetro_f64"] = {"iterations": args.iters[1],
                                            "max_rel_diff_rates": float(np.max(np.abs(npr["rates"] - p64.loc) / p64.loc))}
        for r in full_rows:  # do the peers compute the same thing? (untimed)
            if r["impl"] != "sklearn":
                continue
            n_hi = r["n_hi"]
            ours = mx.fit(kept["gj"], kept["params"][r["family"]], None, options=mx.MixtureOptions(
                family=r["family"], max_iter=n_hi, tol=0.0, min_iter=0, chunk_size=DEFAULT_CHUNK, reg_covar=REG_COVAR))
            r["check_vs_jaxpetro_f64"] = {
                "iterations": n_hi,
                "loglik_sklearn": r["loglik_hist_last"],
                "loglik_jaxpetro": float(ours.history[n_hi - 1]),
                "max_abs_diff_means": float(np.max(np.abs(r["means"] - np.asarray(ours.params.loc)))),
            }
        rows = [{k: v for k, v in r.items() if k not in ("params", "means", "rates", "log_weights")} for r in full_rows]
        for row in rows:
            fm = flop_model(row["family"])
            row["x_read_bound"] = row["s_per_iter"] / rb["s"]
            row["read_bound_fraction"] = rb["s"] / row["s_per_iter"]
            row["GFLOP_per_s"] = fm["flops"] * n / row["s_per_iter"] / 1e9
            row["Gexp_per_s"] = fm["exp"] * n / row["s_per_iter"] / 1e9
            fl = floor_s(row["family"], n, rb["s"], report["machine_rates"], row["dtype"])
            row.update(fl, floor_fraction=fl["floor_s"] / row["s_per_iter"])
            peer = None
            if row["impl"] == "jaxpetro":
                if row["family"] == "poisson":
                    peer = next((q for q in rows if q["impl"] == "numpy"), None)
                else:
                    peer = next((q for q in rows if q["impl"] == "sklearn" and q["family"] == row["family"]), None)
            if peer is not None:
                row["peer"] = peer["method"]
                row["speedup_vs_peer"] = peer["s_per_iter"] / row["s_per_iter"]
                # the same ratio in process CPU seconds per iteration: less sensitive to other
                # processes' load than wall time (it charges each method the cores it used)
                row["cpu_speedup_vs_peer"] = (peer["s_per_iter"] * peer["cpu_util"]) / (row["s_per_iter"] * row["cpu_util"])
        entry["results"] = rows
        for row in rows:
            sp = f"  x{row['speedup_vs_peer']:.1f} vs peer" if "speedup_vs_peer" in row else ""
            log(f"N={n} {row['method']:<40} {row['s_per_iter']:.4f} s/iter (cpu x{row['cpu_util']:.2f}, {row['pairs']} pairs){sp}")
    del tasks
    keep.clear()

    report["load_avg_end"] = loadavg()
    report["total_s"] = time.perf_counter() - t_start
    out_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=float)  # the figures first: the table is made from them
    atomic_write(out_path, lambda tmp: tmp.write_text(text))
    table = markdown(report)
    atomic_write(out_path.with_suffix(".md"), lambda tmp: tmp.write_text(table))
    log(f"wrote {out_path} and {out_path.with_suffix('.md')} in {report['total_s']:.0f} s")
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Mixture EM, seconds per iteration on CPU",
        "",
        f"{m['cpu_model']} ({m['usable_cores']} cores, {m['cpu_flags']}), {m['mem_total_gb']} GB; jax {m['jax']} ({m['jax_backend']}), "
        f"scikit-learn {m['sklearn']}, NumPy {m['numpy']}; commit {m['git_commit']}{' (kernel modified)' if m['kernel_dirty'] else ''}; "
        f"{m['date_utc']}; load average at start {report['load_avg_start']}, end {report.get('load_avg_end')}.",
        "",
    ]
    lines += [
        f"K = {report['config']['K']}, D = {report['config']['D']}; s/iter = (t(n_hi) - t(n_lo)) / (n_hi - n_lo) of whole fits "
        "(tol 0, same initial parameters). Speed-up is against scikit-learn GaussianMixture (same covariance type) for "
        "diag/full and against vectorised NumPy for Poisson. 'x read' is s/iter over one NumPy float32 read pass; "
        "GFLOP/s uses the algorithmic FLOP model in the JSON; CPU x = process CPU time / wall time; pairs = timing rounds "
        "(minimum per n kept).",
        "",
        "| method | N | s/iter | speed-up vs peer | x read bound | GFLOP/s | CPU x | n_lo, n_hi (pairs) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, entry in report["sizes"].items():
        for r in entry["results"]:
            sp = f"{r['speedup_vs_peer']:.1f}x" if "speedup_vs_peer" in r else "—"
            lines.append(f"| {r['method']} | {int(size):.0e} | {r['s_per_iter']:.4f} | {sp} | {r['x_read_bound']:.0f} | "
                         f"{r['GFLOP_per_s']:.2f} | {r['cpu_util']:.2f} | {r['n_lo']}, {r['n_hi']} ({r.get('pairs', 1)}) |")
        rb = entry["read_bound"]
        for r in entry["results"]:
            if "direct_step_s" in r:
                lines.append(f"| ({r['method']}: one iteration timed directly, `_e_step` + `_m_step`, best of 2) | {int(size):.0e} | "
                             f"{r['direct_step_s']:.4f} | — | {r['direct_step_s'] / rb['s']:.0f} | — | — | check |")
        lines.append(f"| one-pass read bound (NumPy, {rb['variant']}) | {int(size):.0e} | {rb['s']:.4f} | — | 1 | — | — | "
                     f"{rb['GB_per_s']:.1f} GB/s |")
    mr = report.get("machine_rates")
    if mr:
        lines += ["", "Machine floor per iteration (one read of the data + the FLOP model at this CPU's BLAS GEMM peak + "
                  "K exp and 1 log per pixel at XLA's exp/log rates, in turn; " + ", ".join(f"{k} {v:.2f}" for k, v in mr.items())
                  + ") and the fraction of it each jaxpetro row reaches (floor / measured):", "",
                  "| method | N | s/iter | floor s | read | FLOPs at peak | exp + log | fraction of floor |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for size, entry in report["sizes"].items():
            for r in entry["results"]:
                if r["impl"] != "jaxpetro" or "floor_s" not in r:
                    continue
                fp = r["floor_parts_s"]
                lines.append(f"| {r['method']} | {int(size):.0e} | {r['s_per_iter']:.4f} | {r['floor_s']:.4f} | {fp['read']:.4f} | "
                             f"{fp['flops']:.4f} | {fp['exp']:.4f} | {r['floor_fraction']:.0%} |")
    lines += ["", "Target (>= 15x scikit-learn per iteration for diag and full; Poisson >= 10x the vectorised NumPy EM), "
              "jaxpetro at the default chunk (65536) and at its best chunk:", "",
              "| family | N | peer s/iter | float64 default | float32 default | best (dtype, chunk) | best in CPU s/iter | target met |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for size, entry in report["sizes"].items():
        rows = entry["results"]
        for fam, impl, target in (("poisson", "numpy", 10), ("diag", "sklearn", 15), ("full", "sklearn", 15)):
            sk = next((r for r in rows if r["impl"] == impl and r["family"] == fam), None)
            ours = [r for r in rows if r["impl"] == "jaxpetro" and r["family"] == fam and "speedup_vs_peer" in r]
            if sk is None or not ours:
                continue
            d64 = next((r for r in ours if r["dtype"] == "float64" and r["chunk"] == DEFAULT_CHUNK), None)
            d32 = next((r for r in ours if r["dtype"] == "float32" and r["chunk"] == DEFAULT_CHUNK), None)
            best = max(ours, key=lambda r: r["speedup_vs_peer"])
            met = "yes" if best["speedup_vs_peer"] >= target else f"no ({best['speedup_vs_peer'] / target:.0%} of {target}x)"
            sp = lambda r: f"{r['speedup_vs_peer']:.1f}x" if r is not None else "—"  # noqa: E731
            lines.append(f"| {fam} (vs {impl}) | {int(size):.0e} | {sk['s_per_iter']:.3f} | {sp(d64)} | "
                         f"{sp(d32)} | {best['speedup_vs_peer']:.1f}x ({best['dtype']}, {best['chunk']}) | "
                         f"{best.get('cpu_speedup_vs_peer', float('nan')):.1f}x | {met} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

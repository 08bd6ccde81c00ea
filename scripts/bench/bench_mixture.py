#!/usr/bin/env python
"""Seconds per EM iteration: jaxpetro's mixture kernel vs scikit-learn and NumPy.

What is measured (all on the same synthetic data, in one run):

* ``jaxpetro`` -- :func:`jaxpetro.kernels.mixture.fit` for the ``poisson``, ``diag`` and
  ``full`` families, ``compute_dtype`` float64 and float32, at the default chunk size
  (65536) and, for the chunk sweep, 16384 and 262144;
* ``sklearn`` -- :class:`sklearn.mixture.GaussianMixture` (diag, full) from the same
  initial parameters (``weights_init``/``means_init``/``precisions_init``), tol = 0;
* ``numpy`` -- a plain vectorised NumPy implementation of the same Poisson EM updates,
  in chunks of the kernel's default size (the Poisson family has no scikit-learn peer);
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
:func:`flop_model`); ``GFLOP/s`` is that model divided by the measured time. Resource
micro-benchmarks (exp / log throughput, small-matmul throughput) give the time each
family would need if it were bound by one resource alone; ``--ablate`` times the
kernel's E-step in cumulative stages and prototype variants of it (written here, not
in the kernel) to show where the time goes; ``--sharded`` times a 2-device
pixel-sharded fit (``shard_map`` + the kernel's ``axis_name``).

Usage::

    python scripts/bench/bench_mixture.py                      # full run, ~10 min on 2 cores
    python scripts/bench/bench_mixture.py --ablate --sharded   # + where the time goes (~3 min more)
    python scripts/bench/bench_mixture.py --quick              # smoke run, ~1 min
    python scripts/bench/bench_mixture.py --sizes 1e6 --iters 3 8 --no-sklearn-full

Writes ``--out`` (JSON) and the Markdown table next to it (same stem, ``.md``),
atomically.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

K = 8
D = 10
REG_COVAR = 1e-6
DEFAULT_CHUNK = 65536
REPO = Path(__file__).resolve().parents[2]

if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 4e6], help="pixel counts N (default 1e6 4e6)")
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
    ap.add_argument("--ablate", action=argparse.BooleanOptionalAction, default=False,
                    help="also time the kernel's E-step stages and prototype variants at the first size (~1.5 min; default off)")
    ap.add_argument("--sharded", action=argparse.BooleanOptionalAction, default=False,
                    help="also time a 2-device pixel-sharded fit at the first size (subprocess, ~1 min; default off)")
    ap.add_argument("--extras-only", action="store_true",
                    help="skip the timing rounds: re-run only --ablate/--sharded and update the existing --out JSON/.md")
    ap.add_argument("--quick", action="store_true", help="small smoke run (N = 2e5, few iterations)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "mixture_cpu.json"))
    ap.add_argument("--sharded-worker", help=argparse.SUPPRESS)  # internal: JSON job for the subprocess
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = [2e5]
        args.iters = [1, 3]
        args.sklearn_iters = [1, 3]
        args.sklearn_full_iters = [1, 2]
        args.chunks = [16384, DEFAULT_CHUNK]
        args.sweep_dtypes = ["float32"]
        args.sweep_max_n = 2e5
        args.rounds = 1
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


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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

    try:
        from jaxpetro.kernels.kmeans import kmeanspp_centres
    except ImportError:  # older layout
        kmeanspp_centres = mx.kmeanspp_centres
    key = jax.random.PRNGKey(seed)
    if family == "poisson":
        x, e = jnp.asarray(data["x"]), jnp.asarray(data["e"])
        centres = kmeanspp_centres(key, x / e[:, None], K)
        p = mx.init_from_centres(x, centres, e, family="poisson", chunk_size=DEFAULT_CHUNK, reg_covar=REG_COVAR)
    else:
        g = jnp.asarray(data["g"])
        centres = kmeanspp_centres(key, g, K)
        p = mx.init_from_centres(g, centres, None, family=family, chunk_size=DEFAULT_CHUNK, reg_covar=REG_COVAR)
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

    compiled, compile_s, last = {}, {}, {}
    for it in iters:
        kw = dict(family=family, max_iter=it, tol=0.0, min_iter=0, chunk_size=chunk, reg_covar=REG_COVAR, compute_dtype=dtype)
        with Timer() as tc:
            compiled[it] = mx.fit.lower(xj, params, ej, **kw).compile()
        compile_s[it] = tc.wall
    if max_rounds < 2:  # a single sample: take the first-execution cost out of it
        jax.block_until_ready(compiled[iters[0]](xj, params, ej, tol=0.0))

    def run(it):
        with Timer() as t:
            last[it] = jax.block_until_ready(compiled[it](xj, params, ej, tol=0.0))
        return t

    def finish():
        for it in iters:
            if int(last[it].n_iter) != it or not bool(last[it].finite):
                raise RuntimeError(f"jaxpetro {family}/{dtype}: n_iter={int(last[it].n_iter)} (wanted {it}), "
                                   f"finite={bool(last[it].finite)}")
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


def rate_floor(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The kernel's Poisson rate floor: 1e-6 of each channel's mean rate."""
    return 1e-6 * x.sum(axis=0, dtype=np.float64) / e.sum(dtype=np.float64) + 1e-12


def numpy_poisson_em(x, e, log_w, rates, n_iter, chunk, floor):
    """The Poisson EM updates in plain vectorised NumPy (float64), chunk by chunk.

    E-step: l_ik = x_i . log(rate_k) - e_i sum_j rate_kj + log pi_k, r = softmax_k(l);
    M-step: rate_k = sum_i r_ik x_i / sum_i r_ik e_i, pi_k = sum_i r_ik / N.
    Returns (log weights, rates, sum_i logsumexp_k l_ik at the last E-step).
    """
    n = x.shape[0]
    log_w = np.array(log_w, np.float64)
    rates = np.array(rates, np.float64)
    ll = 0.0
    for _ in range(n_iter):
        log_rate = np.log(rates)
        total = rates.sum(axis=1)
        nk = np.zeros(K)
        s1 = np.zeros((K, D))
        se = np.zeros(K)
        ll = 0.0
        for s in range(0, n, chunk):
            xc = x[s : s + chunk].astype(np.float64)
            ec = e[s : s + chunk].astype(np.float64)
            lj = xc @ log_rate.T
            lj -= ec[:, None] * total
            lj += log_w
            m = lj.max(axis=1, keepdims=True)
            lj -= m
            np.exp(lj, out=lj)
            tot = lj.sum(axis=1, keepdims=True)
            ll += float(m.sum() + np.log(tot).sum())
            lj /= tot
            nk += lj.sum(axis=0)
            s1 += lj.T @ xc
            se += lj.T @ ec
        rates = np.maximum(s1 / se[:, None], floor)
        nk = np.maximum(nk, 1e-10)
        log_w = np.log(nk) - np.log(nk.sum())
    return log_w, rates, ll


def numpy_task(x, e, params, iters, max_rounds, n, chunk=DEFAULT_CHUNK) -> Task:
    floor = rate_floor(x, e)
    last = {}

    def run(it):
        with Timer() as t:
            last[it] = numpy_poisson_em(x, e, np.asarray(params.log_weights), np.asarray(params.loc), it, chunk, floor)
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


# --------------------------------------------------------------------------------------
# Resource micro-benchmarks (what a single resource would cost).
# --------------------------------------------------------------------------------------


def microbench(chunk: int = DEFAULT_CHUNK, n_chunks: int = 16, repeats: int = 5) -> dict:
    """Throughput of exp, log and the kernel's small matmul shapes under XLA:CPU and NumPy."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(1)
    res = {}

    def best_of(fn, *a):
        jax.block_until_ready(fn(*a))
        ts = []
        for _ in range(repeats):
            with Timer() as t:
                jax.block_until_ready(fn(*a))
            ts.append(t.wall)
        return min(ts)

    for dt in ("float64", "float32"):
        a = jnp.asarray(rng.uniform(-30, 0, (n_chunks, chunk, K)).astype(dt))
        n_el = a.size

        @jax.jit
        def scan_exp(a):
            return lax.scan(lambda c, b: (c + jnp.sum(jnp.exp(b)), None), jnp.zeros((), a.dtype), a)[0]

        @jax.jit
        def scan_log(a):
            return lax.scan(lambda c, b: (c + jnp.sum(jnp.log(-b + 1.0)), None), jnp.zeros((), a.dtype), a)[0]

        @jax.jit
        def scan_add(a):
            return lax.scan(lambda c, b: (c + jnp.sum(b + 1.0), None), jnp.zeros((), a.dtype), a)[0]

        t_add = best_of(scan_add, a)
        res[f"xla_exp_{dt}_Gps"] = n_el / best_of(scan_exp, a) / 1e9
        res[f"xla_log_{dt}_Gps"] = n_el / best_of(scan_log, a) / 1e9
        res[f"xla_add_reduce_{dt}_Gps"] = n_el / t_add / 1e9
        an = np.asarray(a)
        ts = []
        for _ in range(repeats):
            with Timer() as t:
                np.exp(an)
            ts.append(t.wall)
        res[f"numpy_exp_{dt}_Gps"] = n_el / min(ts) / 1e9

        # The kernel's GEMM shapes: E-step (B, P) @ (P, K) and statistics (B, K)^T (B, P).
        n_pix = n_chunks * chunk
        r_k = jnp.asarray(rng.standard_normal((n_chunks, chunk, K)).astype(dt))

        @jax.jit
        def mm_f_w(fs, w):
            return lax.scan(lambda c, b: (c + jnp.sum(b @ w), None), jnp.zeros((), fs.dtype), fs)[0]

        @jax.jit
        def mm_rt_f(rs, fs):
            return lax.scan(lambda c, b: (c + b[0].T @ b[1], None), jnp.zeros((rs.shape[-1], fs.shape[-1]), fs.dtype), (rs, fs))[0]

        for fam in ("poisson", "diag", "full"):
            pf = n_features(fam)
            fs = jnp.asarray(rng.standard_normal((n_chunks, chunk, pf)).astype(dt))
            w = jnp.asarray(rng.standard_normal((pf, K)).astype(dt))
            res[f"xla_gemm_E_{fam}_{dt}_GFps"] = 2 * n_pix * pf * K / best_of(mm_f_w, fs, w) / 1e9
            res[f"xla_gemm_stats_{fam}_{dt}_GFps"] = 2 * n_pix * pf * K / best_of(mm_rt_f, r_k, fs) / 1e9
            del fs
    return res


def resource_floors(family: str, n: int, mb: dict, read_s: float, dtype: str = "float64") -> dict:
    """Seconds per iteration if one resource alone bound the kernel (from the micro-benchmarks):
    its two GEMMs at XLA's measured rate for their shapes (E-step in ``dtype``, statistics in
    float64), its K exps in ``dtype`` + 1 float64 log per pixel, one read of the data."""
    fm = flop_model(family)
    half = fm["matmul_flops"] / 2 * n
    return {
        "read_s": read_s,
        "gemm_s": half / (mb[f"xla_gemm_E_{family}_{dtype}_GFps"] * 1e9) + half / (mb[f"xla_gemm_stats_{family}_float64_GFps"] * 1e9),
        "exp_s": K * n / (mb[f"xla_exp_{dtype}_Gps"] * 1e9) + n / (mb["xla_log_float64_Gps"] * 1e9),
    }


# --------------------------------------------------------------------------------------
# Ablation: prototype variants of the E-step pass (NOT the kernel; evidence for changes).
# --------------------------------------------------------------------------------------


def ablation(data: dict, params_by_family: dict, chunk: int = DEFAULT_CHUNK, repeats: int = 5) -> dict:
    """Seconds per E-step pass: the kernel's pass and prototypes that change one thing.

    ``kernel``: ``mixture._pass`` (the per-iteration pass of ``fit``) jitted alone as
    :func:`_kernel_pass` builds it (no anchors, no mask, only the statistics ``step``
    consumes, so XLA drops what it drops inside ``fit``). ``kernel chunk=16384``: the
    same at a quarter of the chunk.
    Prototypes (:func:`_proto_pass`: the kernel's own ``_coefficients``/``_design`` and
    formulas, no anchors or mask; written here, not in the kernel):

    * ``proto control``: the kernel's ``_design`` and float64 statistics, as the kernel --
      its time should match ``kernel`` (checks that the prototype has no hidden advantage);
    * ``features built once in compute dtype``: the design features built once, in the
      compute dtype, the packed outer product from static slices instead of a gather
      (the kernel builds them in float64 and casts a copy for the E-step GEMM; for
      ``full`` XLA then materialises the gathered column products separately), still
      cast to float64 for the statistics GEMM;
    * ``+ float32 statistics``: also r^T F in float32 per chunk (summed over chunks in
      float64), with float32 responsibilities.

    Accuracy against the kernel's float64 pass: ``rel_diff_ll`` (summed log-likelihood)
    and how far the next M-step moves (Poisson: relative rate difference; Gaussians:
    relative variance difference and mean difference in standard deviations).
    Returns ``{"skipped": reason}`` if the kernel's internals have changed.
    """
    import jax
    import jax.numpy as jnp

    from jaxpetro.kernels import mixture as mx

    missing = [f for f in ("_pass", "_to_chunks", "_data_shift", "_coefficients", "_design", "_zero_stats", "_m_step")
               if not hasattr(mx, f)]
    if missing:
        return {"skipped": f"kernel internals changed (missing {missing})"}
    out, items = {}, {}
    for family, params in params_by_family.items():
        if family == "poisson":
            x, e = jnp.asarray(data["x"]), jnp.asarray(data["e"])
        else:
            x, e = jnp.asarray(data["g"]), None
        chunks = mx._to_chunks(x, e, None, None, chunk)
        small = mx._to_chunks(x, e, None, None, 16384)
        shift = mx._data_shift(family, chunks)
        ref = None
        for dtype in ("float64", "float32"):
            dt = jnp.dtype(dtype)
            kern = _kernel_pass(family, dt, x.shape[0])
            proto = functools.partial(_proto_pass, family, dtype=dt)
            variants = {
                "kernel": (kern, chunks),
                "kernel chunk=16384": (kern, small),
                "proto control": (jax.jit(functools.partial(proto, feat_dtype=jnp.float64, stat_dtype=jnp.float64,
                                                            own_design=False)), chunks),
                "features built once in compute dtype": (jax.jit(functools.partial(
                    proto, feat_dtype=dt, stat_dtype=jnp.float64)), chunks),
            }
            if dtype == "float32":
                variants["+ float32 statistics"] = (jax.jit(functools.partial(
                    proto, feat_dtype=jnp.float32, stat_dtype=jnp.float32)), chunks)
            for name, (fn, ch) in variants.items():
                args = (params, ch, shift)
                stats = jax.block_until_ready(fn(*args))  # compiles
                if ref is None:
                    ref = stats
                items[f"{family}/{dtype}/{name}"] = (fn, args)
                out[f"{family}/{dtype}/{name}"] = {
                    "rel_diff_ll": float(jnp.abs(stats.loglik - ref.loglik) / jnp.abs(ref.loglik)),
                } | _mstep_diff(family, stats, ref, params, shift)
    for key, timing in _interleaved_min(items, repeats).items():
        out[key] = timing | out[key]
    return out


def _interleaved_min(items: dict, rounds: int) -> dict:
    """Best wall time of each ``fn(*args)`` over ``rounds`` rounds that cycle through all items."""
    import jax

    best: dict = {}
    for r in range(rounds):
        for key, (fn, args) in (items.items() if r % 2 == 0 else reversed(items.items())):
            with Timer() as t:
                jax.block_until_ready(fn(*args))
            if key not in best or t.wall < best[key][0]:
                best[key] = (t.wall, t.cpu)
    return {k: {"s_per_pass": w, "cpu_util": c / w} for k, (w, c) in best.items()}


def _mstep_diff(family, stats, ref, params, shift) -> dict:
    """How much the next parameters move if these statistics replace the float64 kernel's."""
    import jax.numpy as jnp

    from jaxpetro.kernels import mixture as mx

    floor = jnp.zeros(params.loc.shape[1])
    a = mx._m_step(family, stats, params, shift, REG_COVAR, floor)
    b = mx._m_step(family, ref, params, shift, REG_COVAR, floor)
    if family == "poisson":
        return {"mstep_rel_diff_rates": float(jnp.max(jnp.abs(a.loc - b.loc) / b.loc))}
    if family == "diag":
        va, vb = a.scale, b.scale
    else:
        va = jnp.sum(a.scale**2, axis=2)  # diag(L L^T)
        vb = jnp.sum(b.scale**2, axis=2)
    return {"mstep_rel_diff_var": float(jnp.max(jnp.abs(va - vb) / vb)),
            "mstep_mean_diff_sd": float(jnp.max(jnp.abs(a.loc - b.loc) / jnp.sqrt(vb)))}


def stage_breakdown(data: dict, params_by_family: dict, chunk: int = DEFAULT_CHUNK, repeats: int = 5) -> dict:
    """Where the kernel's E-step pass spends its time: cumulative stages, each jitted alone.

    Built from the kernel's own ``_coefficients`` and ``_design`` over the same chunks:
    ``features+E-GEMM`` (design features F, joint = F W + c), ``+exp/normalise`` (max
    shift, one exp per pixel and component in the compute dtype, normalisation,
    log-sum), ``full_pass`` (``mixture._pass``: adds the statistics GEMM r^T F and the
    sums; as :func:`_kernel_pass`). A stage's cost is the difference from the row above (XLA fuses each
    program on its own, so these are estimates).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    from jaxpetro.kernels import mixture as mx

    if not all(hasattr(mx, f) for f in ("_coefficients", "_design", "_pass", "_to_chunks", "_data_shift")):
        return {"skipped": "kernel internals changed"}
    items = {}
    for family, params in params_by_family.items():
        if family == "poisson":
            x, e = jnp.asarray(data["x"]), jnp.asarray(data["e"])
        else:
            x, e = jnp.asarray(data["g"]), None
        chunks = mx._to_chunks(x, e, None, None, chunk)
        shift = mx._data_shift(family, chunks)
        for dtype in ("float64", "float32"):
            dt = jnp.dtype(dtype)

            def staged(params, chunks, shift, upto, family=family, dt=dt):
                w, c, centre, total_centre = mx._coefficients(family, params, shift)

                def body(acc, ch):
                    xc, ec, _, vc = ch
                    feats = mx._design(family, xc, ec, shift)
                    joint = (feats.astype(dt) @ w.astype(dt)).astype(jnp.float64) + c
                    if upto == 0:
                        return acc + jnp.sum(joint, axis=0), None
                    top = jnp.max(joint, axis=1, keepdims=True)
                    scaled = jnp.exp((joint - top).astype(dt))
                    total = jnp.sum(scaled, axis=1, dtype=jnp.float64)
                    lse = top[:, 0] + jnp.log(total)
                    resp = scaled.astype(jnp.float64) / total[:, None] * vc[:, None]
                    return acc + jnp.sum(resp, axis=0) + jnp.sum(jnp.where(vc, lse, 0.0)), None

                return lax.scan(body, jnp.zeros(params.loc.shape[0], jnp.float64), tuple(chunks))[0]

            fns = {
                "features+E-GEMM": jax.jit(functools.partial(staged, upto=0)),
                "+exp/normalise": jax.jit(functools.partial(staged, upto=1)),
                "full_pass": _kernel_pass(family, dt, x.shape[0]),
            }
            for name, fn in fns.items():
                jax.block_until_ready(fn(params, chunks, shift))  # compiles
                items[f"{family}/{dtype}/{name}"] = (fn, (params, chunks, shift))
    timings = _interleaved_min(items, repeats)
    return {k: timings[k] for k in items}  # keep the stage order


def _needed(stats):
    """The statistics ``mixture.step`` consumes (the entropy is dead code inside ``fit``)."""
    import jax.numpy as jnp

    return stats._replace(entropy=jnp.zeros((), jnp.float64))  # not entropy * 0: XLA keeps that (NaN rules)


def _kernel_pass(family: str, dtype, n: int):
    """``mixture._pass`` as ``fit`` runs it when there are no anchors and no mask: the
    anchors (-1) and the validity mask (pixel index < n) are built inside the jitted
    program, so XLA folds the anchor machinery away as it does in ``fit`` (passed in as
    arrays they would cost a one-hot, a gather and selects per chunk)."""
    import jax
    import jax.numpy as jnp

    from jaxpetro.kernels import mixture as mx

    def run(params, chunks, shift):
        nc, b = chunks.x.shape[:2]
        valid = (jnp.arange(nc * b) < n).reshape(nc, b)
        anchors = jnp.full((nc, b), -1, jnp.int32)
        return _needed(mx._pass(family, params, mx._Chunks(chunks.x, chunks.e, anchors, valid), shift, jnp.dtype(dtype)))

    return jax.jit(run)


def _design_in(family, x, e, shift, dtype):
    """The kernel's design features (same formulas and column order as ``mixture._design``),
    built in ``dtype``; the packed outer product x_d x_e (d <= e) from static slices
    ``x[:, d:d+1] * x[:, d:]`` rather than a gather of column pairs."""
    import jax.numpy as jnp

    if family == "poisson":
        return jnp.concatenate([x.astype(dtype), e[:, None].astype(dtype)], axis=1)
    xs = x.astype(dtype) - shift.astype(dtype)
    if family == "diag":
        return jnp.concatenate([xs * xs, xs], axis=1)
    d = x.shape[1]
    return jnp.concatenate([xs[:, i : i + 1] * xs[:, i:] for i in range(d)] + [xs], axis=1)


def _proto_pass(family, params, chunks, shift, *, dtype, feat_dtype, stat_dtype, own_design=True):
    """The kernel's E-step pass (``mixture._chunk_stats`` without anchors or masks) with
    the dtype of the design features and of the statistics GEMM as parameters.

    ``own_design=False`` uses the kernel's ``mixture._design`` (float64); otherwise the
    features are built once, in ``feat_dtype``, by :func:`_design_in`."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from jaxpetro.kernels import mixture as mx

    k, d = params.loc.shape
    w, c, centre, total_centre = mx._coefficients(family, params, shift)

    def body(acc, chunk):
        x, e, _, valid = chunk
        if own_design:
            feats = _design_in(family, x, e, shift, feat_dtype)
        else:
            feats = mx._design(family, x, e, shift)
        joint = (feats.astype(dtype) @ w.astype(dtype)).astype(jnp.float64) + c
        common = x.astype(jnp.float64) @ centre - e.astype(jnp.float64) * total_centre
        top = jnp.max(joint, axis=1, keepdims=True)
        scaled = jnp.exp((joint - top).astype(dtype))
        total = jnp.sum(scaled, axis=1, dtype=jnp.float64)
        lse = top[:, 0] + jnp.log(total)
        resp = scaled.astype(stat_dtype) / total.astype(stat_dtype)[:, None] * valid[:, None].astype(stat_dtype)
        moments = (resp.T @ feats.astype(stat_dtype)).astype(jnp.float64)
        if family == "poisson":
            s1, s2 = moments[:, :d], moments[:, d]
        else:
            s2, s1 = moments[:, :-d], moments[:, -d:]
        stats = mx.SuffStats(
            n=jnp.sum(resp, axis=0, dtype=jnp.float64), s1=s1, s2=s2,
            loglik=jnp.sum(jnp.where(valid, lse + common, 0.0)),
            entropy=jnp.zeros((), jnp.float64), count=jnp.sum(valid, dtype=jnp.float64),
        )
        return jax.tree.map(jnp.add, acc, stats), None

    stats, _ = lax.scan(body, mx._zero_stats(family, k, d), tuple(chunks))
    return stats


# --------------------------------------------------------------------------------------
# 2-device pixel-sharded fit (subprocess: the host device count is fixed at JAX start).
# --------------------------------------------------------------------------------------


def sharded_worker(job_path: str) -> None:
    """Runs in a subprocess with 2 host devices: times a shard_map'd fit, prints JSON."""
    job = json.loads(Path(job_path).read_text())
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    import jaxpetro  # noqa: F401  (x64)
    from jaxpetro.kernels import mixture as mx

    ndev = len(jax.devices())
    data = make_data(job["n"], job["seed"])
    results = {}
    mesh = Mesh(np.array(jax.devices()), ("pix",))
    for family in job["families"]:
        params = init_params(data, family, job["seed"])
        if family == "poisson":
            xj, ej = jnp.asarray(data["x"]), jnp.asarray(data["e"])
        else:
            xj, ej = jnp.asarray(data["g"]), None
        for dtype in job["dtypes"]:
            compiled = {}
            for n in job["iters"]:
                kw = dict(family=family, max_iter=n, tol=0.0, min_iter=0, chunk_size=job["chunk"], reg_covar=REG_COVAR,
                          compute_dtype=dtype, axis_name="pix")
                specs = mx.MixtureResult(*([P()] * 9))._replace(memberships=P("pix"))
                in_specs = (P("pix"), P("pix") if ej is not None else None, P())
                fn = jax.jit(jax.shard_map(lambda f, ex, p, kw=kw: mx.fit(f, p, ex, **kw), mesh=mesh, in_specs=in_specs,
                                           out_specs=specs, check_vma=False))
                compiled[n] = fn.lower(xj, ej, params).compile()
            jax.block_until_ready(compiled[job["iters"][0]](xj, ej, params))  # untimed warm-up run

            def run(n, compiled=compiled):
                with Timer() as t:
                    r = jax.block_until_ready(compiled[n](xj, ej, params))
                assert int(r.n_iter) == n
                return t

            task = Task(f"sharded {family} {dtype}", job["iters"], run, dict, job["rounds"], {})
            for _ in range(job["rounds"]):
                task.sample()
            results[f"{family}/{dtype}"] = task.result()
    print("SHARDED-JSON " + json.dumps({"n_devices": ndev, "results": results}))


def run_sharded(n: int, seed: int, iters, rounds: int, families, dtypes, chunk=DEFAULT_CHUNK) -> dict:
    job = {"n": n, "seed": seed, "iters": list(iters), "rounds": rounds, "families": families, "dtypes": dtypes, "chunk": chunk}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(job, fh)
        path = fh.name
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    try:
        proc = subprocess.run([sys.executable, __file__, "--sharded-worker", path], env=env, capture_output=True, text=True, timeout=900)
    finally:
        os.unlink(path)
    for line in proc.stdout.splitlines():
        if line.startswith("SHARDED-JSON "):
            return json.loads(line[len("SHARDED-JSON ") :])
    return {"error": proc.stderr[-2000:]}


# --------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------


def run_extras(report: dict, args, kept: dict) -> None:
    """--ablate (E-step stages + prototype variants) and --sharded, at the first size."""
    n0 = int(args.sizes[0])
    entry = report["sizes"][str(n0)]
    if args.ablate:
        log(f"E-step stages and prototype variants at N={n0} (load {loadavg()})")
        entry["extras_load_avg_start"] = loadavg()
        entry["stages"] = stage_breakdown(kept["data"], kept["params"])
        for k_, v in entry["stages"].items():
            log(f"  stage {k_:<34} {v}")
        entry["ablation"] = ablation(kept["data"], kept["params"])
        for k_, v in entry["ablation"].items():
            log(f"  {k_:<40} {v}")
        entry["extras_load_avg_end"] = loadavg()
    if args.sharded:
        log(f"2-device sharded fit at N={n0} (subprocess; load {loadavg()})")
        report["sharded_2dev"] = run_sharded(n0, args.seed, args.iters, 2, ["poisson", "diag", "full"], ["float64", "float32"])
        report["sharded_2dev"]["n"] = n0
        report["sharded_2dev"]["load_avg_end"] = loadavg()
        for k_, v in report["sharded_2dev"].get("results", {}).items():
            log(f"  sharded {k_:<20} {v['s_per_iter']:.4f} s/iter (cpu x{v['cpu_util']:.2f})")


def extras_only(args) -> int:
    """Re-run only --ablate / --sharded and update an existing --out JSON (and its .md)."""
    import jaxpetro  # noqa: F401  (enables x64)

    out_path = Path(args.out)
    report = json.loads(out_path.read_text())
    n0 = int(args.sizes[0])
    if str(n0) not in report["sizes"]:
        raise SystemExit(f"{out_path} has no results for N={n0}")
    data = make_data(n0, args.seed)
    params = {f: init_params(data, f, args.seed) for f in ("poisson", "diag", "full")}
    m = machine_info()
    report.setdefault("extras_runs", []).append({"date_utc": m["date_utc"], "git_commit": m["git_commit"],
                                                 "kernel_dirty": m["kernel_dirty"], "load_avg_start": loadavg(),
                                                 "ablate": args.ablate, "sharded": args.sharded})
    run_extras(report, args, {"data": data, "params": params})
    report["extras_runs"][-1]["load_avg_end"] = loadavg()
    atomic_write(out_path, json.dumps(report, indent=1, default=float))
    atomic_write(out_path.with_suffix(".md"), markdown(report))
    log(f"updated {out_path} and {out_path.with_suffix('.md')}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sharded_worker:
        sharded_worker(args.sharded_worker)
        return 0
    if args.extras_only:
        return extras_only(args)

    import jax.numpy as jnp

    import jaxpetro  # noqa: F401  (enables x64)
    from jaxpetro.kernels import mixture as mx

    t_start = time.perf_counter()
    out_path = Path(args.out)
    report = {
        "benchmark": "jaxpetro mixture EM, seconds per iteration (CPU)",
        "machine": machine_info(),
        "load_avg_start": loadavg(),
        "args": {k: v for k, v in vars(args).items() if k != "sharded_worker"},
        "config": {"K": K, "D": D, "reg_covar": REG_COVAR, "default_chunk": DEFAULT_CHUNK, "seed": args.seed,
                   "data": "Poisson mixture counts (float32), rates log-uniform 2..3000, exposure 1 +- 2 %; "
                           "Gaussian families on sqrt(counts/exposure) float32; sklearn on the same values as float64"},
        "flop_model_per_pixel": {f: flop_model(f) for f in ("poisson", "diag", "full")},
        "sizes": {},
    }
    log(f"load {report['load_avg_start']}; micro-benchmarks")
    report["microbench"] = microbench()
    log(json.dumps({k: round(v, 2) for k, v in report["microbench"].items()}))

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
    mb = report["microbench"]
    for size in args.sizes:
        n = int(size)
        entry, kept = report["sizes"][str(n)], keep[n]
        rb = entry["read_bound"]
        full_rows = [q.result() for q in tasks if q.meta["n"] == n]
        by = {(r["impl"], r["family"], r["dtype"], r["chunk"]): r for r in full_rows}
        p64 = by[("jaxpetro", "poisson", "float64", DEFAULT_CHUNK)]["params"]
        npr = by[("numpy", "poisson", "float64", DEFAULT_CHUNK)]
        npr["check_vs_jaxpetro_f64"] = {"iterations": args.iters[1],
                                        "max_rel_diff_rates": float(np.max(np.abs(npr["rates"] - p64.loc) / p64.loc))}
        for r in full_rows:  # do the peers compute the same thing? (untimed)
            if r["impl"] != "sklearn":
                continue
            n_hi = r["n_hi"]
            ours = mx.fit(kept["gj"], kept["params"][r["family"]], None, family=r["family"], max_iter=n_hi, tol=0.0, min_iter=0,
                          chunk_size=DEFAULT_CHUNK, reg_covar=REG_COVAR, compute_dtype="float64")
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
            peer = None
            if row["impl"] == "jaxpetro":
                if row["family"] == "poisson":
                    peer = next((q for q in rows if q["impl"] == "numpy"), None)
                else:
                    peer = next((q for q in rows if q["impl"] == "sklearn" and q["family"] == row["family"]), None)
            if peer is not None:
                row["peer"] = peer["method"]
                row["speedup_vs_peer"] = peer["s_per_iter"] / row["s_per_iter"]
        entry["results"] = rows
        entry["resource_floors_float64"] = {f: resource_floors(f, n, mb, rb["s"]) for f in ("poisson", "diag", "full")}
        for row in rows:
            sp = f"  x{row['speedup_vs_peer']:.1f} vs peer" if "speedup_vs_peer" in row else ""
            log(f"N={n} {row['method']:<40} {row['s_per_iter']:.4f} s/iter (cpu x{row['cpu_util']:.2f}, {row['pairs']} pairs){sp}")
    report["load_avg_after_timing"] = loadavg()
    atomic_write(out_path, json.dumps(report, indent=1, default=float))  # partial result
    del tasks

    run_extras(report, args, keep[int(args.sizes[0])])
    keep.clear()

    report["load_avg_end"] = loadavg()
    report["total_s"] = time.perf_counter() - t_start
    atomic_write(out_path, json.dumps(report, indent=1, default=float))
    atomic_write(out_path.with_suffix(".md"), markdown(report))
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
    for er in report.get("extras_runs", []):
        what = " and ".join(w for w, on in (("stage/variant tables", er.get("ablate")), ("sharded table", er.get("sharded"))) if on)
        lines += [f"The {what} were re-run with `--extras-only` on {er['date_utc']} "
                  f"(commit {er.get('git_commit', '?')}, load {er['load_avg_start']} -> {er.get('load_avg_end')}).", ""]
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
    lines += ["", "Target (>= 10x scikit-learn per iteration), jaxpetro at the default chunk (65536) and at its best chunk:", "",
              "| family | N | sklearn s/iter | float64 default | float32 default | best (dtype, chunk) | target met |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for size, entry in report["sizes"].items():
        rows = entry["results"]
        for fam in ("diag", "full"):
            sk = next((r for r in rows if r["impl"] == "sklearn" and r["family"] == fam), None)
            ours = [r for r in rows if r["impl"] == "jaxpetro" and r["family"] == fam]
            if sk is None or not ours:
                continue
            d64 = next((r for r in ours if r["dtype"] == "float64" and r["chunk"] == DEFAULT_CHUNK), None)
            d32 = next((r for r in ours if r["dtype"] == "float32" and r["chunk"] == DEFAULT_CHUNK), None)
            best = max(ours, key=lambda r: r["speedup_vs_peer"])
            met = "yes" if best["speedup_vs_peer"] >= 10 else f"no ({best['speedup_vs_peer'] / 10:.0%} of it)"
            lines.append(f"| {fam} | {int(size):.0e} | {sk['s_per_iter']:.3f} | {d64['speedup_vs_peer']:.1f}x | "
                         f"{d32['speedup_vs_peer']:.1f}x | {best['speedup_vs_peer']:.1f}x ({best['dtype']}, {best['chunk']}) | {met} |")
    lines += ["", "Single-resource floors for the float64 default (seconds per iteration if only that resource counted; "
              "from the micro-benchmarks below) vs measured:", "",
              "| family | N | measured | one read of the data | the two GEMMs at XLA's rate for their shapes | "
              "K exp + 1 log per pixel | measured / sum of floors |", "|---|---:|---:|---:|---:|---:|---:|"]
    for size, entry in report["sizes"].items():
        for fam, fl in entry.get("resource_floors_float64", {}).items():
            meas = next((r for r in entry["results"] if r["impl"] == "jaxpetro" and r["family"] == fam
                         and r["dtype"] == "float64" and r["chunk"] == DEFAULT_CHUNK), None)
            if meas is None:
                continue
            tot = fl["read_s"] + fl["gemm_s"] + fl["exp_s"]
            lines.append(f"| {fam} | {int(size):.0e} | {meas['s_per_iter']:.4f} | {fl['read_s']:.4f} | {fl['gemm_s']:.4f} | "
                         f"{fl['exp_s']:.4f} | {meas['s_per_iter'] / tot:.1f} |")
    sh = report.get("sharded_2dev")
    if sh and "results" in sh:
        lines += ["", f"2-device pixel-sharded fit (`shard_map` over 2 host devices + psum, the kernel's `axis_name`), N = {sh['n']:.0e}:", "",
                  "| family/dtype | s/iter | CPU x |", "|---|---:|---:|"]
        for k_, v in sh["results"].items():
            lines.append(f"| {k_} | {v['s_per_iter']:.4f} | {v['cpu_util']:.2f} |")
    for size, entry in report["sizes"].items():
        stages = entry.get("stages", {})
        if stages and "skipped" not in stages:
            lines += ["", f"Where the kernel's E-step pass spends its time, N = {int(size):.0e} (cumulative stages built from the "
                      "kernel's own `_coefficients`/`_design`, each jitted alone; a stage's cost is the difference from the "
                      "row above; best of interleaved repeats):", "",
                      "| family/dtype/stage | s/pass | stage cost | CPU x |", "|---|---:|---:|---:|"]
            prev = {}
            for k_, v in stages.items():
                fam_dt = "/".join(k_.split("/", 2)[:2])
                cost = v["s_per_pass"] - prev.get(fam_dt, 0.0)
                prev[fam_dt] = v["s_per_pass"]
                lines.append(f"| {k_} | {v['s_per_pass']:.4f} | {cost:+.4f} | {v['cpu_util']:.2f} |")
        abl = entry.get("ablation", {})
        if abl and "skipped" not in abl:
            lines += ["", f"E-step pass variants at N = {int(size):.0e} (the kernel's pass, and prototypes written in the "
                      "benchmark -- not the kernel -- that change one thing; accuracy against the kernel's float64 pass):", "",
                      "| family/dtype/variant | s/pass | CPU x | rel diff loglik | next M-step: rel diff rates / variances | "
                      "next means (sd units) |", "|---|---:|---:|---:|---:|---:|"]
            for k_, v in abl.items():
                rel = v.get("mstep_rel_diff_rates", v.get("mstep_rel_diff_var", float("nan")))
                lines.append(f"| {k_} | {v['s_per_pass']:.4f} | {v['cpu_util']:.2f} | {v['rel_diff_ll']:.1e} | {rel:.1e} | "
                             f"{v.get('mstep_mean_diff_sd', float('nan')):.1e} |")
    mb = report.get("microbench", {})
    if mb:
        lines += ["", "Resource micro-benchmarks (XLA:CPU unless noted): " + ", ".join(f"{k} {v:.2f}" for k, v in mb.items()), ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

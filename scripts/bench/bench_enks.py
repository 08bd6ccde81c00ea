#!/usr/bin/env python
"""Ensemble Kalman smoothing of many garnet profiles: one vmapped JAX call vs a NumPy loop.

What is measured (same run, same data):

* ``jax``   -- :func:`jaxpetro.kernels.enks.ensemble_smoother` (stochastic analysis, full-lag
  EnKS, bicubic table forward model of the demo table) ``vmap``-ed over all profiles in one
  compiled call (compiled ahead of time, compilation timed separately, not in ``jax_s``);
  the profile axis is sharded over one XLA host device per CPU core
  (``--xla_force_host_platform_device_count``, ``--devices``), so JAX uses every core;
* ``numpy`` -- a straightforward NumPy implementation of the same EnKS: a Python loop over
  profiles and shells, NumPy vectorised over members (bicubic gather, 6 x 6 solves, full-lag
  buffer update of the shells seen so far), one process; it is ``tests/_numpy_enks.py``, also
  the test oracle of the kernel;
* ``numpy vectorised`` -- the same EnKS in NumPy vectorised over profiles as well
  (:func:`numpy_enks_profiles`: one loop over shells, every array with a leading profile
  axis, batched ``matmul`` / ``solve`` / ``cholesky``), the peer the issue asks JAX to beat.

Correctness first: on two profiles the NumPy code is fed the kernel's own random draws and
must reproduce its smoothed ensembles (max abs difference reported); the vectorised NumPy
version fed the same draws must reproduce the loop's.

The figures are set against the work: :func:`flop_count` counts the floating-point
operations of the algorithm (the full-lag smoother's updates of the stored shells dominate),
so GFLOP/s per implementation says how far each is from the machine's arithmetic rate.

The machine's 2 cores are shared with other work: each side is timed ``--rounds`` times,
interleaved, and the minimum kept; the load average is recorded. Results go to
``benchmarks/enks_cpu.json`` and ``.md`` (``--out``).

Usage: ``python scripts/bench/bench_enks.py [--profiles 256] [--shells 60] [--members 500]
[--numpy-profiles 256] [--rounds 3] [--out benchmarks/enks_cpu.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def _n_devices() -> int:
    for i, a in enumerate(sys.argv):
        if a == "--devices" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if a.startswith("--devices="):
            return int(a.split("=", 1)[1])
    return os.cpu_count() or 1


# one XLA host device per core, set before jax is imported (the profile axis is sharded over them)
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_n_devices()}").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # a script of its own: float64 for the whole run, before any array
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from jaxpetro.io.perplex import read_table  # noqa: E402
from jaxpetro.io.results import write_text  # noqa: E402
from jaxpetro.kernels import enks  # noqa: E402
from jaxpetro.models import garnet as gm  # noqa: E402
from jaxpetro.synthetic.garnet_profile import clockwise_path, demo_table_path, table_params  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # the NumPy EnKS is also the tests' oracle
from _numpy_enks import numpy_enks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

OPTIONS = enks.SmootherOptions()  # stochastic analysis, full-lag EnKS, no inflation (the defaults)


# ----------------------------------------------------------------------------- NumPy reference


def np_table(values, P_min, dP, T_min, dT, X):
    """Bicubic (Keys) interpolation of the table for all members X (N, 2) -> (N, 4)."""
    nP, nT, _ = values.shape
    u = np.clip((X[:, 0] - P_min) / dP, 0.0, nP - 1.0)
    v = np.clip((X[:, 1] - T_min) / dT, 0.0, nT - 1.0)
    i = np.clip(np.floor(u), 0, nP - 2).astype(int)
    j = np.clip(np.floor(v), 0, nT - 2).astype(int)
    off = np.arange(-1, 3)
    rows = np.clip(i[:, None] + off, 0, nP - 1)
    cols = np.clip(j[:, None] + off, 0, nT - 1)
    patch = values[rows[:, :, None], cols[:, None, :]]  # (N, 4, 4, 4)

    def w(s):
        t = np.stack([1 + s, s, 1 - s, 2 - s], axis=1)
        a = -0.5
        near = (a + 2) * t**3 - (a + 3) * t**2 + 1
        far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return np.where(t <= 1, near, far)

    return np.einsum("na,nb,nabk->nk", w(u - i), w(v - j), patch)


def numpy_h(table):
    """The observation function of the NumPy peer: the four end-members from the table, then (P, T)."""
    values, P_min, dP, T_min, dT = table
    return lambda k, X: np.concatenate([np_table(values, P_min, dP, T_min, dT, X), X], axis=1)


def np_cholesky_jitter(C):
    """Batched lower Cholesky factors with the kernel's relative jitter (``_numpy_enks.chol``)."""
    from _numpy_enks import JITTER

    d = C.shape[-1]
    scale = np.maximum(np.trace(C, axis1=-2, axis2=-1) / d, np.finfo(float).tiny)
    return np.linalg.cholesky(0.5 * (C + np.swapaxes(C, -1, -2)) + JITTER * scale[..., None, None] * np.eye(d))


def numpy_enks_profiles(h, X0, y, mask, R, Q, standard_normal):
    """The full-lag stochastic EnKS of ``tests/_numpy_enks.py`` vectorised over G profiles:
    one loop over shells, a leading profile axis on every array.

    Args:
        h: ``h(k, X)`` predicted observations (G, N, p) of the ensembles X (G, N, d).
        X0: prior ensemble (N, d), shared; y, mask: (G, n, p); R: (n, p, p); Q: (n, d, d).
        standard_normal: ``standard_normal(k, which, shape)``: draws (G, N, d) (which 0,
            k >= 1) or (G, N, p) (which 1) for shell k.

    Returns:
        Smoothed ensembles (G, n, N, d).
    """
    g, n, p = y.shape
    N, d = X0.shape
    buf = np.zeros((g, n, N, d))
    Xa = np.broadcast_to(X0, (g, N, d))
    for k in range(n):
        Xf = Xa.copy() if k == 0 else Xa + standard_normal(k, 0, (g, N, d)) @ np_cholesky_jitter(Q[k]).T
        HX = h(k, Xf)
        m = mask[:, k].astype(float)  # (G, p)
        y0 = np.where(mask[:, k], y[:, k], 0.0)
        R0 = R[k] * (m[:, :, None] * m[:, None, :]) + (1.0 - m)[:, :, None] * np.eye(p)
        V = (HX - HX.mean(axis=1, keepdims=True)) * m[:, None, :]
        S = np.swapaxes(V, 1, 2) @ V / (N - 1) + R0
        E = standard_normal(k, 1, (g, N, p)) @ np.swapaxes(np.linalg.cholesky(R0), 1, 2)
        E = E - E.mean(axis=1, keepdims=True)
        U = np.swapaxes(np.linalg.solve(S, np.swapaxes((y0[:, None, :] + E - HX) * m[:, None, :], 1, 2)), 1, 2)
        Rf = V / (N - 1)
        Xa = Xf + U @ (np.swapaxes(Rf, 1, 2) @ Xf)
        buf[:, k] = Xf
        proj = np.swapaxes(Rf, 1, 2)[:, None] @ buf[:, : k + 1]  # (G, k + 1, p, d)
        buf[:, : k + 1] += U[:, None] @ proj
    return buf


def numpy_h_profiles(table):
    """:func:`numpy_h` for ensembles of many profiles (G, N, 2) -> (G, N, 6)."""
    values, P_min, dP, T_min, dT = table

    def h(k, X):
        flat = X.reshape(-1, X.shape[-1])
        out = np.concatenate([np_table(values, P_min, dP, T_min, dT, flat), flat], axis=1)
        return out.reshape(X.shape[:-1] + (out.shape[-1],))

    return h


def flop_count(n_profiles, n_shells, n_members, d=2, p=6) -> dict:
    """Floating-point operations of the full-lag stochastic EnKS (multiply-add = 2).

    Per profile and shell k (0-based) with N members: the update of the k + 1 stored shells,
    projection R_f^T X_j and rank-p correction U (R_f^T X_j), 4 N p d (k + 1); the analysis
    (forecast noise 2 N d^2, anomalies and S = V^T V 2 N p^2, perturbations 2 N p^2, the
    N right-hand sides of the p x p solve 2 N p^2, the state update 4 N p d); the bicubic
    table forward model, 16 taps x 4 end-members x 2 plus the 2 x 4 x 4 weights, per member
    (~160). Cholesky factors and the solve's factorisation are O(p^3) per shell: negligible.
    """
    n, N = n_shells, n_members
    smooth = 4 * N * p * d * n * (n + 1) // 2
    analysis = n * N * (2 * d * d + 6 * p * p + 4 * p * d + 160)
    per_profile = smooth + analysis
    return {"total": per_profile * n_profiles, "smoother_buffer": smooth * n_profiles, "analysis_and_forward": analysis * n_profiles,
            "buffer_bytes_per_profile": n * N * d * 8}


# ----------------------------------------------------------------------------- problem


def make_problem(n_profiles, n_shells, n_members, seed=0):
    t = read_table(demo_table_path())
    params = table_params(t)
    r, P, T = clockwise_path(n_shells, 1500.0)
    X_true = np.asarray(jax.vmap(lambda p, tt: gm.table_interp(params, p, tt))(jnp.asarray(P), jnp.asarray(T)))
    rng = np.random.default_rng(seed)
    y = np.zeros((n_profiles, n_shells, gm.N_OBS))
    y[:, :, :4] = X_true + rng.normal(0, 0.005, (n_profiles, n_shells, 4))
    mask = np.zeros_like(y, bool)
    mask[:, :, :4] = True
    R = np.broadcast_to(np.diag([0.005**2] * 4 + [1.0, 1.0]), (n_shells, 6, 6)).copy()
    dr = np.diff(r, prepend=r[0])
    Q = np.stack([np.diag([x * 0.08**2, x * 2.0**2]) for x in dr])
    m0, sd0 = np.array([8.0, 550.0]), np.array([3.0, 75.0])
    X0 = m0 + rng.standard_normal((n_members, 2)) * sd0
    return params, y, mask, R, Q, r, X0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=256)
    ap.add_argument("--shells", type=int, default=60)
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--numpy-profiles", type=int, default=None, help="profiles the NumPy loop runs (default: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", type=int, default=os.cpu_count() or 1,
                    help="XLA host devices the profile axis is sharded over (default: one per CPU core)")
    ap.add_argument("--out", default="benchmarks/enks_cpu.json")
    args = ap.parse_args()
    n_np = args.numpy_profiles or args.profiles

    params, y, mask, R, Q, r, X0 = make_problem(args.profiles, args.shells, args.members)
    table_np = tuple(np.asarray(a) for a in (params.values, params.P_min, params.dP, params.T_min, params.dT))
    keys = jax.random.split(jax.random.key(0), args.profiles)

    def one(key, yy, mm):
        return enks.ensemble_smoother(key, gm.h_table, params, jnp.asarray(X0), yy, mm, jnp.asarray(R),
                                      jnp.asarray(Q), jnp.asarray(r), options=OPTIONS).smoothed

    devices = jax.devices()
    n_dev = max(k for k in range(1, len(devices) + 1) if args.profiles % k == 0)
    shard = NamedSharding(Mesh(np.array(devices[:n_dev]), ("profiles",)), PartitionSpec("profiles"))
    inputs = tuple(jax.device_put(a, shard) for a in (keys, jnp.asarray(y), jnp.asarray(mask)))
    t0 = time.perf_counter()
    batched = jax.jit(jax.vmap(one)).lower(*inputs).compile()
    t_compile = time.perf_counter() - t0

    # --- correctness: NumPy with the kernel's own draws reproduces its smoothed ensembles
    max_diff = 0.0
    single = jax.jit(one)
    for i in range(2):
        step_keys = jax.random.split(keys[i], (args.shells, 2))
        z = np.asarray(jax.vmap(lambda k: enks.standard_normal(k, (args.members, 2)))(step_keys[:, 0]))
        e = np.asarray(jax.vmap(lambda k: enks.standard_normal(k, (args.members, 6)))(step_keys[:, 1]))
        ref = np.asarray(single(keys[i], jnp.asarray(y[i]), jnp.asarray(mask[i])))
        got = numpy_enks(numpy_h(table_np), X0, y[i], mask[i], R, Q, lambda k, which, shape: (z, e)[which][k])
        max_diff = max(max_diff, float(np.max(np.abs(ref - got))))
    print(f"correctness: max |jax - numpy| over 2 profiles = {max_diff:.2e}")
    # the vectorised NumPy version fed the loop's draws (3 profiles) reproduces the loop
    g3 = min(3, args.profiles)
    draws = np.random.default_rng(2)
    zz = draws.standard_normal((args.shells, g3, args.members, 2))
    ee = draws.standard_normal((args.shells, g3, args.members, 6))
    vec = numpy_enks_profiles(numpy_h_profiles(table_np), X0, y[:g3], mask[:g3], R, Q,
                              lambda k, which, shape: (zz, ee)[which][k])
    max_diff_vec = max(float(np.max(np.abs(vec[i] - numpy_enks(numpy_h(table_np), X0, y[i], mask[i], R, Q,
                                                                 lambda k, which, shape: (zz, ee)[which][k][i]))))
                       for i in range(g3))
    print(f"correctness: max |numpy vectorised - numpy loop| over {g3} profiles = {max_diff_vec:.2e}")

    # --- timing, interleaved rounds, minimum kept
    t_jax, t_np, loads, cpu_jax, cpu_np, t_vec, cpu_vec = [], [], [], [], [], [], []
    rng = np.random.default_rng(1)
    h_np = numpy_h(table_np)
    h_vec = numpy_h_profiles(table_np)
    for rnd in range(args.rounds):
        loads.append(os.getloadavg()[0])
        c0, t0 = time.process_time(), time.perf_counter()
        out = batched(*inputs)
        out.block_until_ready()
        t_jax.append(time.perf_counter() - t0)
        cpu_jax.append((time.process_time() - c0) / t_jax[-1])
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n_np):
            numpy_enks(h_np, X0, y[i], mask[i], R, Q, lambda k, which, shape: rng.standard_normal(shape))
        wall = time.perf_counter() - t0
        cpu_np.append((time.process_time() - c0) / wall)
        t_np.append(wall * args.profiles / n_np)
        c0, t0 = time.process_time(), time.perf_counter()
        numpy_enks_profiles(h_vec, X0, y, mask, R, Q, lambda k, which, shape: rng.standard_normal(shape))
        t_vec.append(time.perf_counter() - t0)
        cpu_vec.append((time.process_time() - c0) / t_vec[-1])
        print(f"round {rnd + 1}: jax {t_jax[-1]:.3f} s, numpy {t_np[-1]:.2f} s, numpy vectorised {t_vec[-1]:.2f} s "
              f"(load {loads[-1]:.2f})")
    jx, nx, vx = min(t_jax), min(t_np), min(t_vec)
    flops = flop_count(args.profiles, args.shells, args.members)
    result = {
        "profiles": args.profiles, "shells": args.shells, "members": args.members,
        "numpy_profiles_timed": n_np,
        "jax_s": jx, "numpy_s": nx, "speedup": nx / jx,
        "numpy_vectorised_s": vx, "speedup_vs_vectorised": vx / jx, "numpy_vectorised_s_rounds": t_vec,
        "numpy_vectorised_cpu_per_wall": cpu_vec, "correctness_vectorised_vs_loop": max_diff_vec,
        "flops": flops, "GFLOP_per_s": {"jax": flops["total"] / jx / 1e9, "numpy": flops["total"] / nx / 1e9,
                                        "numpy_vectorised": flops["total"] / vx / 1e9},
        "cpu_model": cpu_model(), "cores": len(os.sched_getaffinity(0)),
        "jax_s_rounds": t_jax, "numpy_s_rounds": t_np, "jax_cpu_per_wall": cpu_jax,
        "numpy_cpu_per_wall": cpu_np, "jax_compile_s": t_compile, "jax_devices_sharded": n_dev,
        "load_avg_1min": loads, "correctness_max_abs_diff": max_diff,
        "backend": jax.default_backend(), "device": str(jax.devices()[0]),
        "jax_version": jax.__version__, "numpy_version": np.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs", "target_speedup": 20.0,
    }
    print(json.dumps({k: result[k] for k in ("jax_s", "numpy_s", "speedup", "numpy_vectorised_s", "speedup_vs_vectorised",
                                             "GFLOP_per_s")}, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(result, indent=1) + "\n")
    md = [
        f"# EnKS benchmark ({result['backend']}: {result['device']})",
        "",
        f"{args.profiles} profiles x {args.shells} shells x {args.members} members, full-lag stochastic EnKS, "
        f"bicubic demo-table forward model. NumPy loop timed on {n_np} profiles"
        + (f" and scaled x{args.profiles / n_np:g}" if n_np != args.profiles else "") + ".",
        "",
        "| implementation | seconds (min of rounds) | speed-up |",
        "|---|---|---|",
        f"| JAX, one vmapped call, profiles sharded over {n_dev} host device(s) | {jx:.3f} | {nx / jx:.1f}x |",
        f"| NumPy loop over profiles and shells | {nx:.2f} | 1x |",
        f"| NumPy vectorised over profiles (one loop over shells) | {vx:.2f} | {nx / vx:.1f}x (JAX {vx / jx:.1f}x faster) |",
        "",
        f"Work: {flops['total'] / 1e9:.2f} GFLOP ({flops['smoother_buffer'] / flops['total']:.0%} of it the full-lag "
        f"updates of the stored shells), so JAX runs at {flops['total'] / jx / 1e9:.2f} GFLOP/s, the NumPy loop at "
        f"{flops['total'] / nx / 1e9:.2f} and the vectorised NumPy at {flops['total'] / vx / 1e9:.2f}. "
        f"Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores. The vectorised NumPy version fed the loop's draws "
        f"reproduces it to {max_diff_vec:.1e}; CPU/wall per round: {', '.join(f'{v:.2f}' for v in cpu_vec)}.",
        "",
        f"Target >= 20x: {'met' if nx / jx >= 20 else 'missed'}. Correctness: NumPy fed the kernel's draws reproduces "
        f"its smoothed ensembles to {max_diff:.1e}. Load average (1 min) before each round: "
        f"{', '.join(f'{v:.2f}' for v in loads)}; CPU/wall per round, JAX: {', '.join(f'{v:.2f}' for v in cpu_jax)}, "
        f"NumPy: {', '.join(f'{v:.2f}' for v in cpu_np)} (JAX uses every core, the NumPy loop one process). "
        f"JAX compilation (not timed above): {t_compile:.1f} s.",
    ]
    write_text(out.with_suffix(".md"), "\n".join(md) + "\n")


if __name__ == "__main__":
    main()

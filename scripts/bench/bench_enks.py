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
  the test oracle of the kernel.

Correctness first: on two profiles the NumPy code is fed the kernel's own random draws and
must reproduce its smoothed ensembles (max abs difference reported).

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

    # --- timing, interleaved rounds, minimum kept
    t_jax, t_np, loads, cpu_jax, cpu_np = [], [], [], [], []
    rng = np.random.default_rng(1)
    h_np = numpy_h(table_np)
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
        print(f"round {rnd + 1}: jax {t_jax[-1]:.3f} s, numpy {t_np[-1]:.2f} s (load {loads[-1]:.2f})")
    jx, nx = min(t_jax), min(t_np)
    result = {
        "profiles": args.profiles, "shells": args.shells, "members": args.members,
        "numpy_profiles_timed": n_np,
        "jax_s": jx, "numpy_s": nx, "speedup": nx / jx,
        "jax_s_rounds": t_jax, "numpy_s_rounds": t_np, "jax_cpu_per_wall": cpu_jax,
        "numpy_cpu_per_wall": cpu_np, "jax_compile_s": t_compile, "jax_devices_sharded": n_dev,
        "load_avg_1min": loads, "correctness_max_abs_diff": max_diff,
        "backend": jax.default_backend(), "device": str(jax.devices()[0]),
        "jax_version": jax.__version__, "numpy_version": np.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs", "target_speedup": 20.0,
    }
    print(json.dumps({k: result[k] for k in ("jax_s", "numpy_s", "speedup")}, indent=1))
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

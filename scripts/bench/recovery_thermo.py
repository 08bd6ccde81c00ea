"""Synthetic recovery with ``forward.kind: thermo``, and the bias of the table + Rayleigh approach.

Ground truth: a garnet profile grown by the thermodynamic model itself (jaxpetro.thermo, g-bi-mu-pl-q,
the MnO-rich metapelite of tests/test_ptpath_thermo.py) along a known P-T path (5.0 -> 7.5 kbar plus
a 0.3 kbar bump, 525 -> 590 degC, shells 60 um apart), each shell's equilibrium garnet removed from the
reactive bulk before the next (the same functions as the inversion's transition), plus Gaussian noise
of sd 0.003 on every fraction. The same profile is then inverted four ways (same ensemble size,
hyperparameters q_P 0.08 kbar/sqrt(um), q_T 2 degC/sqrt(um), model_sd 0, seed 3, prior box
3.5-8.5 kbar, 460-620 degC):

1. ``thermo``: forward.kind thermo, fractionation_efficiency 1 (the model that made the data);
2. ``thermo_closed``: forward.kind thermo, fractionation_efficiency 0 (closed system);
3. ``table``: forward.kind table with a forward table of the same (initial) bulk written by
   ``jaxpetro forward`` (its Python API; P 3.5-8.5 kbar step 0.25, T 460-620 degC step 5), no
   Rayleigh factor: what a single-bulk table assumes;
4. ``table_rayleigh``: the same table with the old Rayleigh Mn factor (forward.fractionation:
   X_sps x (1 - F)^(K - 1), F = f_rim (r / r_rim)^3) given its most favourable inputs, taken from
   the synthetic truth: K = the garnet/rock MnO mass-concentration ratio of the core shell, f_rim =
   the mass fraction of the rock grown into garnet at the rim (the removed shells' mass / 100 g),
   r_rim = the rim radius.

RMSE of the smoothed mean against the true path and the coverage of the 90 % bands are reported for
each. With ``--timing M N`` it also times one ``forward.kind: thermo`` inversion with M members on an
N-shell profile (the same path, shells 60 um apart): wall and process CPU seconds, and the XLA
compile seconds within them (jax.monitoring's backend_compile_duration events).

Writes benchmarks/thermo_recovery.{json,md} (CPU model recorded; the machine is shared).

Run:  python scripts/bench/recovery_thermo.py [--shells 6] [--members 32] [--timing 500 6] [--skip-recovery]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # a script, not the library: float64 everywhere

import jax.numpy as jnp  # noqa: E402

from jaxpetro.config.forward import ForwardConfig  # noqa: E402
from jaxpetro.config.loader import load_config  # noqa: E402
from jaxpetro.config.ptpath import PtpathConfig  # noqa: E402
from jaxpetro.errors import InputError  # noqa: E402
from jaxpetro.io.profiles import write_profile  # noqa: E402
from jaxpetro.models import ptpath_model as pm  # noqa: E402
from jaxpetro.thermo.bulk import COMPONENTS, MOLAR_MASS, components_from_wt  # noqa: E402
from jaxpetro.workflows import forward as fwd  # noqa: E402
from jaxpetro.workflows import ptpath  # noqa: E402

#: the metapelite of configs/forward.yaml without TiO2, MnO 0.4 wt% (tests/test_ptpath_thermo.py)
WT = {"SiO2": 59.8, "Al2O3": 16.6, "FeO": 6.9, "MgO": 2.6, "MnO": 0.4, "CaO": 1.1, "Na2O": 1.7, "K2O": 3.8,
      "H2O": 1.6, "O": 0.1}
SD = 0.003
PRIOR = {"P_kbar": [3.5, 8.5], "T_C": [460.0, 620.0]}
HYPER = {"q_P": 0.08, "q_T": 2.0, "model_sd": 0.0}
SEED = 3


def true_path(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius (um), P (kbar), T (degC) of the known path on n shells 60 um apart (6 shells: the
    path of tests/test_ptpath_thermo.py)."""
    r = np.linspace(60.0, 60.0 * n, n)
    P = np.linspace(5.0, 7.5, n) + 0.3 * np.sin(np.linspace(0, np.pi, n))
    T = np.linspace(525.0, 590.0, n)
    return r, P, T


def grow(n: int) -> dict:
    """The noise-free fractionated garnet along the true path, and the mass removed per shell."""
    r, P, T = true_path(n)
    bulk = components_from_wt(WT)
    cfg = thermo_config("p.csv", 1.0, 32)
    fw = pm.thermo_forward(cfg.forward, bulk, 2)
    params = pm.ObsParams(fw, None)
    frac = jax.jit(pm.thermo_fractions)
    walk = jax.jit(pm.thermo_radius_walk)
    lb = jnp.log(jnp.asarray(bulk)[jnp.asarray(fw.present)])
    x = jnp.concatenate([jnp.array([P[0], T[0]]), lb, lb])
    X = np.empty((n, 4))
    removed = np.empty((n, len(COMPONENTS)))  # moles of each component leaving the bulk per shell
    for k in range(n):
        x = x.at[0].set(P[k]).at[1].set(T[k])
        Xk, ok = frac(fw, x)
        if not bool(ok):
            raise RuntimeError(f"the synthetic growth failed at shell {k} (P {P[k]:.2f} kbar, T {T[k]:.1f} C)")
        X[k] = np.asarray(Xk)
        before = np.asarray(fw.physical(x))[2:]
        x, _ = walk(params, x, pm.StepAux(0.0, 1.0, 0.0))
        removed[k] = before - np.asarray(fw.physical(x))[2:]
    mass = np.array([MOLAR_MASS[c] for c in COMPONENTS])
    shell_mass = removed @ mass  # g of garnet per shell (per 100 g of rock)
    mn = COMPONENTS.index("MnO")
    K_core = (removed[0, mn] * MOLAR_MASS["MnO"] / shell_mass[0]) / (WT["MnO"] / sum(WT.values()))
    return {"r": r, "P": P, "T": T, "X": X, "shell_mass_g": shell_mass, "K_core": float(K_core),
            "f_rim": float(shell_mass.sum() / sum(WT.values()))}


def noisy_profile(truth: dict, path: Path, seed: int) -> Path:
    noisy = np.clip(truth["X"] + np.random.default_rng(seed).normal(0.0, SD, truth["X"].shape), 1e-4, 1.0)
    return write_profile(path, truth["r"], noisy, np.full_like(truth["X"], SD))


def thermo_config(profile, efficiency: float, members: int):
    raw = {"profile": str(profile), "seed": SEED,
           "forward": {"kind": "thermo", "bulk": {"oxides_wt": WT}, "fractionation_efficiency": efficiency},
           "prior": PRIOR, "ensemble": {"size": members}, "hyperparameters": HYPER, "output": {"plots": False}}
    return load_config(raw, PtpathConfig)


def table_config(profile, table: Path, members: int, rayleigh: dict | None):
    forward = {"kind": "table", "path": str(table)}
    if rayleigh:
        forward["fractionation"] = rayleigh
    raw = {"profile": str(profile), "seed": SEED, "forward": forward, "prior": PRIOR, "ensemble": {"size": members},
           "hyperparameters": HYPER, "map_check": False, "output": {"plots": False}}
    return load_config(raw, PtpathConfig)


def forward_table(out: Path) -> tuple[Path, float, dict]:
    cfg = load_config({"bulk": {"oxides_wt": WT}, "assemblage": ["g", "bi", "mu", "pl", "q"],
                       "grid": {"P_kbar": [3.5, 8.5, 0.25], "T_C": [460.0, 620.0, 5.0]},
                       "output": {"plots": False}}, ForwardConfig)
    t0 = time.perf_counter()
    summary = fwd.run(cfg, out, quiet=True)
    return out / "forward.csv", time.perf_counter() - t0, summary


def invert(config, out: Path, truth: dict) -> dict:
    """The workflow's run; where ptpath refuses the profile (a table that cannot produce the
    observed garnet: its range check), the refusal is recorded and the inversion is run anyway
    (build_problem + invert, the same code without the range checks) to measure the bias."""
    t0 = time.perf_counter()
    refused = None
    try:
        res = ptpath.run_stages(config, out, quiet=True)
        inv, summary = res.inversion, res.summary
    except InputError as err:
        refused = str(err)
        inv, summary = ptpath.invert(ptpath.build_problem(config), config), {}
    rec = ptpath.recovery(inv, truth["P"], truth["T"])
    rec["seconds"] = time.perf_counter() - t0
    if refused:
        rec["refused_by_ptpath"] = refused.replace(str(Path(config.forward.path).parent) + "/", "")
    rec["max_abs_error_P_kbar"] = float(np.max(np.abs(inv.mean[:, 0] - truth["P"])))
    rec["max_abs_error_T_C"] = float(np.max(np.abs(inv.mean[:, 1] - truth["T"])))
    if "thermo_failed_share" in summary:
        rec["thermo_failed_share"] = float(summary["thermo_failed_share"])
    rec["mean_P_kbar"] = [round(float(v), 3) for v in inv.mean[:, 0]]
    rec["mean_T_C"] = [round(float(v), 2) for v in inv.mean[:, 1]]
    return rec


def recovery(shells: int, members: int, work: Path, only: list[str], old: dict | None) -> dict:
    truth = grow(shells)
    profile = noisy_profile(truth, work / "profile.csv", seed=0)
    table, t_table, fsum = forward_table(work / "forward")
    rayleigh = {"K": round(truth["K_core"], 4), "f_rim": round(truth["f_rim"], 5), "r_rim_um": float(truth["r"][-1])}
    out = {"shells": shells, "members": members,
           "true_path": {"radius_um": truth["r"].tolist(), "P_kbar": truth["P"].round(4).tolist(),
                         "T_C": truth["T"].round(3).tolist()},
           "garnet_mass_per_shell_g_per_100g": truth["shell_mass_g"].round(5).tolist(),
           "rayleigh_inputs_from_truth": rayleigh,
           "forward_table": {"grid": "P 3.5-8.5 kbar step 0.25, T 460-620 C step 5", "seconds_incl_compile": t_table,
                             "nodes_ok": fsum.get("ok"), "nodes": fsum.get("nodes"), "status": fsum.get("status")},
           "runs": dict(old["runs"]) if old and only else {}}
    runs = [("thermo", thermo_config(profile, 1.0, members)),
            ("thermo_closed", thermo_config(profile, 0.0, members)),
            ("table", table_config(profile, table, members, None)),
            ("table_rayleigh", table_config(profile, table, members, rayleigh))]
    for name, cfg in runs:
        if only and name not in only:
            continue
        try:
            out["runs"][name] = invert(cfg, work / name, truth)
        except Exception as err:  # a biased model may fail outright: that is a result too
            out["runs"][name] = {"error": f"{type(err).__name__}: {err}"}
        print(name, json.dumps(out["runs"][name]), flush=True)
    return out


_COMPILE_S = [0.0]


def _on_duration(event: str, seconds: float, **_) -> None:
    if event.endswith("backend_compile_duration"):  # XLA compilation proper (not tracing or lowering)
        _COMPILE_S[0] += seconds
        if seconds > 1.0:  # logged as it happens: a run killed by a timeout still tells its compile time
            print(f"compiled in {seconds:.1f} s (total {_COMPILE_S[0]:.1f} s)", flush=True)


def timing(members: int, shells: int, work: Path) -> dict:
    """One inversion of M members x N shells: wall and process CPU seconds, and the XLA compile
    seconds inside it (jax.monitoring's backend_compile_duration events, summed)."""
    truth = grow(shells)
    profile = noisy_profile(truth, work / "profile_t.csv", seed=0)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    _COMPILE_S[0] = 0.0
    load0 = os.getloadavg()[0]
    print(f"timing {members} x {shells}: start, load {load0:.2f}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    res = ptpath.run_stages(thermo_config(profile, 1.0, members), work / "timing", quiet=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load = [load0, os.getloadavg()[0]]  # the machine's 1-min load average at the start and the end
    rec = ptpath.recovery(res.inversion, truth["P"], truth["T"])
    print(f"timing {members} x {shells}: {wall:.1f} s wall, {cpu:.1f} s CPU, compile {_COMPILE_S[0]:.1f} s",
          json.dumps(rec), flush=True)
    return {"members": members, "shells": shells, "wall_s": wall, "cpu_s": cpu, "compile_s": _COMPILE_S[0],
            "run_s": wall - _COMPILE_S[0], "load_1min": load, "cpu": cpu_model(), "recovery": rec}


def _row(name: str, r: dict) -> str:
    if "error" in r:
        return f"| {name} | failed: {r['error'][:80]} | | | | |"
    if "refused_by_ptpath" in r:
        name += " ¹"
    return (f"| {name} | {r['rmse_P_kbar']:.3f} | {r['rmse_T_C']:.1f} | {100 * r['coverage_P']:.0f} % | "
            f"{100 * r['coverage_T']:.0f} % | {r['seconds']:.0f} |")


def write(result: dict, path: Path) -> None:
    old = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
    old.update(result)
    path.with_suffix(".json").write_text(json.dumps(old, indent=1))
    lines = ["# forward.kind: thermo — synthetic recovery and the table + Rayleigh bias", "",
             f"Machine: {old['cpu']} ({old['cores']} cores, shared with other jobs: timings are upper bounds). "
             f"Written by `scripts/bench/recovery_thermo.py`.", ""]
    rec = old.get("recovery")
    if rec:
        ray = rec["rayleigh_inputs_from_truth"]
        lines += [f"Profile: {rec['shells']} shells grown with fractionation by the thermodynamic model, noise sd "
                  f"{SD}; {rec['members']} members, seed {SEED}, q_P {HYPER['q_P']}, q_T {HYPER['q_T']}, model_sd 0.",
                  "", "| inversion | RMSE P (kbar) | RMSE T (°C) | 90 % band covers P | covers T | seconds (incl. compile) |",
                  "|---|---:|---:|---:|---:|---:|"]
        labels = {"thermo": "thermo, fractionation on (the true model)",
                  "thermo_closed": "thermo, closed system (efficiency 0)",
                  "table": "table of the initial bulk (`jaxpetro forward`), no Rayleigh",
                  "table_rayleigh": f"same table + Rayleigh Mn (K {ray['K']}, f_rim {ray['f_rim']}, r_rim "
                                    f"{ray['r_rim_um']:.0f} µm, from the truth)"}
        lines += [_row(labels[k], v) for k, v in rec["runs"].items()]
        refused = [v["refused_by_ptpath"] for v in rec["runs"].values() if "refused_by_ptpath" in v]
        if refused:
            lines += ["", f"¹ `jaxpetro ptpath` refuses this profile with this table: \"{refused[0]}\" The row is "
                      "the same inversion run without that check (`build_problem` + `invert`), to measure the bias."]
        lines += ["", "The Rayleigh inputs are the most favourable a user could have: K is the core shell's garnet/rock "
                  "MnO mass-concentration ratio and f_rim the rock mass fraction grown into garnet by the rim, both "
                  "from the synthetic truth. Even so the factor cannot follow this garnet: the model grows "
                  f"{rec['garnet_mass_per_shell_g_per_100g'][0]:.1f} g of garnet per 100 g of rock in the core shell "
                  "(all the garnet stable at the core's P-T) and "
                  f"{min(rec['garnet_mass_per_shell_g_per_100g'][1:]):.2f}-"
                  f"{max(rec['garnet_mass_per_shell_g_per_100g'][1:]):.2f} g in each later one, while the Rayleigh "
                  "F = f_rim (r / r_rim)^3 assumes a volume that grows with r^3; and it corrects Mn only, where "
                  "fractionation also moves Fe, Mg and Ca.", "",
                  "Seconds: wall time on the shared machine, including compilation for the first run of each kind "
                  "(the closed-system run reuses the compiled program of the first: the efficiency is traced).", ""]
    tim = old.get("timing")
    if tim:
        lines += ["## Timing of forward.kind: thermo", "",
                  "| members × shells | wall (s) | process CPU (s) | XLA compile (s) | wall less compile (s) | "
                  "1-min load (start, end) | CPU |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        def num(v):
            return "–" if v is None else f"{v:.0f}"

        for t in tim:
            lines.append(f"| {t['members']} × {t['shells']} | {num(t['wall_s'])} | {num(t['cpu_s'])} | "
                         f"{num(t['compile_s'])} | {num(t['run_s'])} | "
                         + (", ".join(f"{v:.1f}" for v in t["load_1min"]) if t.get("load_1min") else "–")
                         + f" | {t.get('cpu', old['cpu'])} |")
        for key, label in (("timing_hangs", "Runs that did not finish before the fix"),
                           ("timing_500x60_note", "500 × 60")):
            if key in old:
                lines += ["", f"**{label}**: {old[key]}"]
        lines.append("")
    path.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shells", type=int, default=6)
    ap.add_argument("--members", type=int, default=32)
    ap.add_argument("--timing", type=int, nargs=2, action="append", metavar=("MEMBERS", "SHELLS"), default=[])
    ap.add_argument("--skip-recovery", action="store_true")
    ap.add_argument("--runs", nargs="*", default=[], help="only these recovery runs (the others kept from the json)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "thermo_recovery")
    args = ap.parse_args()
    # the header's machine is the recovery runs' machine: a timing-only run leaves it (each timing row has its own)
    result = {} if args.skip_recovery else {"cpu": cpu_model(), "cores": os.cpu_count(),
                                             "python": platform.python_version(), "jax": jax.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_recovery:
            old = json.loads(args.out.with_suffix(".json").read_text()).get("recovery") \
                if args.out.with_suffix(".json").is_file() else None
            result["recovery"] = recovery(args.shells, args.members, work, args.runs, old)
            write(result, args.out)
        if args.timing:
            old = json.loads(args.out.with_suffix(".json").read_text()).get("timing", []) \
                if args.out.with_suffix(".json").is_file() else []
            for m, n in args.timing:
                t = timing(m, n, work)
                old = [o for o in old if (o["members"], o["shells"]) != (m, n)] + [t]
                result["timing"] = old
                write(result, args.out)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

"""Published parameters and independent reference values from BurnMan (run in its own venv).

BurnMan 2.x pins numpy < 2, so it lives in a separate virtual environment; jaxpetro and its
tests never import it. This script

1. exports the published data that jaxpetro's thermodynamic model uses (facts, not code):
   * ``jaxpetro/thermo/data/ds62_endmembers.json``: every hp_tmt end-member of the Holland &
     Powell (2011) data set ds62 as distributed with BurnMan (``burnman.minerals.HP_2011_ds62``):
     H0, S0, V0, Cp polynomial, a0, K0, K', K'', n, molar mass, formula, and the Landau
     (Holland & Powell 2011, tricritical) or Bragg-Williams (Holland & Powell 1996) ordering terms;
   * ``jaxpetro/thermo/data/white2014.json``: the White et al. (2014) MnNCKFMASHTO solution models
     g, mu, bi and the Holland & Powell (2003) ternary feldspar pl4tr as site formulas, van Laar
     alphas and the published (unscaled) W = W_H - T W_S + P W_V, plus the "made" end-members
     (linear combinations of ds62 end-members with DQF corrections), from
     ``burnman.minerals.mp50MnNCKFMASHTO``;
2. writes reference values computed by BurnMan to ``tests/data/``:
   * ``burnman_endmembers.json``: G [J/mol] and V [m^3/mol] of those end-members at 7 P-T points;
   * ``burnman_activities.json``: activities, chemical potentials and the molar Gibbs energy of
     each solution at given compositions and P-T;
   * ``burnman_equilibrium.json`` (``--equilibrate``): fixed-assemblage g-bi-mu-pl-q compositions
     from ``burnman.equilibrate`` on a small P-T grid for two bulk compositions, and the time of a
     17 x 21 grid (``--time-grid``).

The H2O fluid (CORK) is not in BurnMan's copy of ds62; its references are written by
``h2o_reference.py`` beside this script (BurnMan's 1 bar ideal gas + atmodeller's CORK).

Run:  /tmp/burnman-env/bin/python scripts/reference/burnman_reference.py [--equilibrate] [--time-grid]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

import burnman
from burnman import Mineral
from burnman.classes.combinedmineral import CombinedMineral
from burnman.minerals import HP_2011_ds62, mp50MnNCKFMASHTO as mp

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "jaxpetro" / "thermo" / "data"
TESTS = ROOT / "tests" / "data"
SOLUTIONS = ("g", "pl4tr", "mu", "bi")
PT_POINTS = [  # (P [Pa], T [K])
    (1.0e5, 298.15), (1.0e5, 900.0), (3.0e8, 773.15), (5.0e8, 823.15),
    (8.0e8, 873.15), (1.0e9, 973.15), (1.5e9, 1073.15),
]


def _endmember_record(m: Mineral) -> dict:
    p = m.params
    rec = {
        "formula": {k: float(v) for k, v in p["formula"].items()},
        "H_0": p["H_0"], "S_0": p["S_0"], "V_0": p["V_0"], "Cp": [float(c) for c in p["Cp"]],
        "a_0": p["a_0"], "K_0": p["K_0"], "Kprime_0": p["Kprime_0"], "Kdprime_0": p["Kdprime_0"],
        "n": p["n"], "molar_mass": p["molar_mass"],
    }
    for kind, mod in getattr(m, "property_modifiers", []):
        if kind == "landau_hp":
            rec["landau"] = {"Tc_0": mod["Tc_0"], "S_D": mod["S_D"], "V_D": mod["V_D"]}
        elif kind == "bragg_williams":
            rec["bragg_williams"] = {k: mod[k] for k in ("deltaH", "deltaV", "Wh", "Wv", "n", "factor")}
        else:
            raise ValueError(f"{p['name']}: unexpected property modifier {kind}")
    return rec


def ds62_endmembers() -> dict[str, Mineral]:
    out = {}
    for name, cls in inspect.getmembers(HP_2011_ds62, inspect.isclass):
        if not issubclass(cls, Mineral) or cls.__module__ != HP_2011_ds62.__name__:
            continue
        m = cls()
        if m.params.get("equation_of_state") != "hp_tmt":
            continue
        out[m.params["name"]] = m
    return out


def _combined_record(cm: CombinedMineral) -> dict:
    mix = cm.mixture
    names = [e[0].params["name"] for e in mix.solution_model.endmembers]
    coeffs = [float(c) for c in mix.molar_fractions]
    lin = dict(cm.property_modifiers[0][1]) if getattr(cm, "property_modifiers", []) else {}
    return {"combination": dict(zip(names, coeffs)),
            "dqf": [lin.get("delta_E", 0.0), lin.get("delta_S", 0.0), lin.get("delta_V", 0.0)]}


def _unscale(wscaled: np.ndarray, alphas: np.ndarray) -> list[list[float]]:
    """BurnMan stores 2 W_ij / (a_i + a_j); the published W_ij is the upper triangle, row by row."""
    n = len(alphas)
    return [[float(wscaled[i, j] * (alphas[i] + alphas[j]) / 2.0) for j in range(i + 1, n)] for i in range(n - 1)]


def solution_models() -> tuple[dict, dict]:
    models, made = {}, {}
    for sname in SOLUTIONS:
        sol = getattr(mp, sname)()
        sm = sol.solution_model
        ends = []
        for mineral, site_formula in sm.endmembers:
            name = mineral.params["name"]
            if isinstance(mineral, CombinedMineral):
                made[name] = _combined_record(mineral)
                ends.append({"name": name, "sites": site_formula, "source": "made"})
            else:
                ends.append({"name": name, "sites": site_formula, "source": "ds62"})
        alphas = np.asarray(sm.alphas, dtype=float)
        models[sname] = {
            "endmembers": ends,
            "alphas": alphas.tolist(),
            "W_H": _unscale(sm.We, alphas),
            "W_S": _unscale(sm.Ws, alphas),
            "W_V": _unscale(sm.Wv, alphas),
        }
    return models, made


def _solution_compositions(sname: str, n: int, rng: np.random.Generator) -> list[list[float]]:
    out = []
    for _ in range(3):
        x = rng.uniform(0.05, 1.0, n)
        out.append((x / x.sum()).tolist())
    return out


def export(args) -> None:
    ends = ds62_endmembers()
    models, made = solution_models()
    DATA.mkdir(parents=True, exist_ok=True)
    meta = {"source": f"burnman {burnman.__version__}, burnman.minerals.HP_2011_ds62 "
                      "(Holland & Powell 2011, data set ds62); SI units (J, J/K, m^3, Pa)",
            "units": {"H_0": "J/mol", "S_0": "J/K/mol", "V_0": "m^3/mol", "Cp": "J/K/mol (a + bT + cT^-2 + dT^-1/2)",
                      "a_0": "1/K", "K_0": "Pa", "Kprime_0": "1", "Kdprime_0": "1/Pa", "molar_mass": "kg/mol",
                      "landau": "Tc_0 K, S_D J/K/mol, V_D m^3/mol",
                      "bragg_williams": "deltaH J/mol, deltaV m^3/mol, Wh J/mol, Wv m^3/mol"}}
    (DATA / "ds62_endmembers.json").write_text(json.dumps(
        {"meta": meta, "endmembers": {k: _endmember_record(v) for k, v in sorted(ends.items())}}, indent=1))
    (DATA / "white2014.json").write_text(json.dumps({
        "meta": {"source": f"burnman {burnman.__version__}, burnman.minerals.mp50MnNCKFMASHTO: White, Powell, "
                           "Holland, Johnson & Green (2014) J. Metamorph. Geol. 32, 261-286 (g, mu, bi); "
                           "Holland & Powell (2003) Contrib. Mineral. Petrol. 145, 492-501 (pl4tr)",
                 "units": {"W_H": "J/mol", "W_S": "J/K/mol", "W_V": "m^3/mol", "dqf": "[J/mol, J/K/mol, m^3/mol]"},
                 "convention": "G_made = sum_k c_k G_k(ds62) + dqf[0] - T dqf[1] + P dqf[2]; W_ij upper "
                               "triangle row by row; van Laar: 2 W_ij / (a_i + a_j)"},
        "made": made, "solutions": models}, indent=1))

    # ---------------------------------------------------------------- reference values
    TESTS.mkdir(parents=True, exist_ok=True)
    needed = sorted({c for r in made.values() for c in r["combination"]} |
                    {e["name"] for m in models.values() for e in m["endmembers"] if e["source"] == "ds62"} |
                    {"q", "ru", "ilm", "sill", "ky", "and", "ab", "san", "an", "sph", "cor", "hem", "mt"})
    made_objs = {}
    for sname in SOLUTIONS:
        for mineral, _ in getattr(mp, sname)().solution_model.endmembers:
            if isinstance(mineral, CombinedMineral):
                made_objs[mineral.params["name"]] = mineral
    rows = {}
    for name in needed + sorted(made_objs):
        m = made_objs[name] if name in made_objs else ends[name]
        G, V = [], []
        for P, T in PT_POINTS:
            m.set_state(P, T)
            G.append(float(m.gibbs))
            V.append(float(m.V))
        rows[name] = {"G": G, "V": V}
    (TESTS / "burnman_endmembers.json").write_text(json.dumps(
        {"meta": {"burnman": burnman.__version__, "units": {"P": "Pa", "T": "K", "G": "J/mol", "V": "m^3/mol"}},
         "PT": PT_POINTS, "endmembers": rows}, indent=1))

    rng = np.random.default_rng(20140101)
    acts = {}
    for sname in SOLUTIONS:
        sol = getattr(mp, sname)()
        n = sol.n_endmembers
        cases = []
        for x in _solution_compositions(sname, n, rng):
            for P, T in PT_POINTS[2:6]:
                sol.set_composition(x)
                sol.set_state(P, T)
                cases.append({"P": P, "T": T, "x": x,
                              "activities": sol.activities.tolist(),
                              "activity_coefficients": sol.activity_coefficients.tolist(),
                              "partial_gibbs": sol.partial_gibbs.tolist(),
                              "gibbs": float(sol.gibbs), "volume": float(sol.V)})
        acts[sname] = cases
    (TESTS / "burnman_activities.json").write_text(json.dumps(
        {"meta": {"burnman": burnman.__version__, "units": {"P": "Pa", "T": "K", "partial_gibbs": "J/mol",
                                                            "gibbs": "J/mol", "volume": "m^3/mol"}},
         "solutions": acts}, indent=1))
    print(f"wrote {len(ends)} end-members, {len(models)} solutions, references for {len(rows)} end-members")


# ------------------------------------------------------------------ fixed-assemblage equilibria
#: two metapelite bulks (wt%; O = excess oxygen, i.e. Fe2O3 - 2 FeO in oxide terms)
BULKS = {
    "pelite_a": {"SiO2": 59.8, "TiO2": 0.8, "Al2O3": 16.6, "FeO": 6.9, "MgO": 2.6, "MnO": 0.1, "CaO": 1.1,
                 "Na2O": 1.7, "K2O": 3.8, "H2O": 1.6, "O": 0.1},
    "pelite_b": {"SiO2": 63.0, "TiO2": 0.6, "Al2O3": 17.2, "FeO": 5.8, "MgO": 2.1, "MnO": 0.4, "CaO": 1.6,
                 "Na2O": 2.0, "K2O": 3.2, "H2O": 1.7, "O": 0.06},
}
_MASS = {"SiO2": 60.0835, "TiO2": 79.865, "Al2O3": 101.96, "FeO": 71.844, "MgO": 40.304, "MnO": 70.937,
         "CaO": 56.077, "Na2O": 61.9786, "K2O": 94.1956, "H2O": 18.015, "O": 15.999}
_ELEM = {"SiO2": {"Si": 1, "O": 2}, "TiO2": {"Ti": 1, "O": 2}, "Al2O3": {"Al": 2, "O": 3}, "FeO": {"Fe": 1, "O": 1},
         "MgO": {"Mg": 1, "O": 1}, "MnO": {"Mn": 1, "O": 1}, "CaO": {"Ca": 1, "O": 1}, "Na2O": {"Na": 2, "O": 1},
         "K2O": {"K": 2, "O": 1}, "H2O": {"H": 2, "O": 1}, "O": {"O": 1}}
PHASES = {"g": "g", "bi": "bi", "mu": "mu", "pl": "pl4tr"}
X0 = {"g": [0.12, 0.68, 0.06, 0.12, 0.02], "bi": [0.30, 0.30, 0.20, 0.10, 0.05, 0.03, 0.02],
      "mu": [0.70, 0.06, 0.04, 0.15, 0.02, 0.03], "pl4tr": [0.70, 0.28, 0.02]}
GRID_P = [5.0e8, 6.0e8, 7.0e8]
GRID_T = [833.15, 873.15, 913.15]


def element_bulk(wt: dict) -> dict:
    """Element moles in 100 g (molar masses with H 1.008, O 15.999 as jaxpetro.chemistry)."""
    out: dict[str, float] = {}
    for ox, w in wt.items():
        mol = w / _MASS[ox]
        for el, k in _ELEM[ox].items():
            out[el] = out.get(el, 0.0) + k * mol
    return out


def _assemblage():
    sols = []
    for name in ("g", "bi", "mu", "pl4tr"):
        s = getattr(mp, name)()
        s.set_composition(np.array(X0[name]))
        sols.append(s)
    sols.append(HP_2011_ds62.q())
    return burnman.Composite(sols, [0.05, 0.1, 0.1, 0.15, 0.6])


def equilibria(args) -> None:
    from burnman import equilibrate
    out = {"meta": {"burnman": burnman.__version__, "assemblage": ["g", "bi", "mu", "pl", "q"],
                    "units": {"P": "Pa", "T": "K", "wt": "wt%", "x": "molar end-member fractions"},
                    "endmembers": {k: [e[0].params["name"] for e in getattr(mp, v)().solution_model.endmembers]
                                   for k, v in PHASES.items()}},
           "bulks": BULKS, "P": GRID_P, "T": GRID_T, "results": {}}
    for bname, wt in BULKS.items():
        comp = element_bulk(wt)
        rows = []
        for P in GRID_P:
            for T in GRID_T:
                assem = _assemblage()
                sol, _ = equilibrate(comp, assem, [["P", P], ["T", T]], tol=1e-10, max_iterations=200)
                rec = {"P": P, "T": T, "success": bool(sol.success)}
                for key, phase in zip(("g", "bi", "mu", "pl"), assem.phases[:4]):
                    rec[key] = phase.molar_fractions.tolist()
                rec["phase_moles"] = [float(a) for a in assem.molar_fractions * assem.n_moles] \
                    if hasattr(assem, "n_moles") else assem.molar_fractions.tolist()
                rows.append(rec)
                print(bname, P, T, sol.success, np.round(assem.phases[0].molar_fractions, 5), flush=True)
        out["results"][bname] = rows
    if args.time_grid:
        comp = element_bulk(BULKS["pelite_a"])
        Ps = np.linspace(4.0e8, 12.0e8, 17)
        Ts = np.linspace(773.15, 973.15, 21)
        assem = _assemblage()
        t0 = time.perf_counter()
        sols, _ = equilibrate(comp, assem, [["P", Ps], ["T", Ts]], tol=1e-10, max_iterations=200)
        dt = time.perf_counter() - t0
        ok = int(sum(s.success for row in sols for s in row))
        out["timing"] = {"grid": [17, 21], "seconds": dt, "successful_nodes": ok}
        print(f"17 x 21 grid: {dt:.1f} s, {ok} nodes converged", flush=True)
    (TESTS / "burnman_equilibrium.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--equilibrate", action="store_true", help="also fixed-assemblage references")
    ap.add_argument("--time-grid", action="store_true", help="time equilibrate on the 17 x 21 grid")
    args = ap.parse_args()
    export(args)
    if args.equilibrate or args.time_grid:
        equilibria(args)
    sys.exit(0)

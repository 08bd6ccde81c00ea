"""Independent reference values of the ds62 H2O fluid (CORK) for tests/test_thermo_fluid.py.

BurnMan 2.1 has the CORK equation of state only in its corresponding-states form (its
HP_2011_fluids carry CO2, CH4, O2, H2, S2, H2S, not the ds62 H2O with its own MRK a(T) and the
Holland & Powell 1998 virial terms), so the reference is assembled from two independent codes,
each in its own virtual environment (neither is a dependency of jaxpetro):

* the ideal-gas standard state at 1 bar, G0(T) = H0 + int Cp dT - T (S0 + int Cp/T dT), from
  BurnMan (a ``Mineral`` with ``equation_of_state: cork`` and ``cork_T: 0``, BurnMan's own ideal-gas
  convention, as its O2), with the ds62 H2O values H0, S0 and Cp;
* ln phi and V of the CORK of Holland & Powell (1991, MRK) with the virial terms of Holland &
  Powell (1998), from atmodeller (Bower et al.; ``atmodeller.eos._holland_powell.H2O_cork_holland98``,
  its own JAX implementation of the same published equations).

G(P, T) = G0(T) + R T [ln(P / 1 bar) + ln phi(P, T)] (J/mol) at 7 P-T points above the CORK's
critical temperature (695 K), written to tests/data/h2o_cork_reference.json.

Run:  /tmp/burnman-env/bin/python scripts/reference/h2o_reference.py [--atmodeller-python /tmp/atm/bin/python]
(create the second environment with ``python -m venv /tmp/atm && /tmp/atm/bin/pip install atmodeller``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "h2o_cork_reference.json"
PT_POINTS = [  # (P [Pa], T [K]); all above Tc = 695 K of the H2O CORK, below and above P0 = 2 kbar
    (1.0e5, 800.0), (1.5e8, 700.0), (2.0e8, 773.15), (5.0e8, 873.15),
    (8.0e8, 923.15), (1.0e9, 973.15), (1.5e9, 1073.15),
]
#: ds62 H2O (Holland & Powell 1998, 2011): ideal gas at 1 bar, SI units
H2O = {"H_0": -241810.0, "S_0": 188.8, "Cp": [40.1, 0.008656, 487500.0, -251.2]}


def atmodeller_worker() -> None:
    """ln phi and V (m^3/mol) of atmodeller's H2O CORK (HP91 MRK + HP98 virial) at PT_POINTS: JSON on stdout."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import atmodeller
    from atmodeller.eos._holland_powell import H2O_cork_holland98 as cork

    rows = [{"ln_phi": float(cork.log_fugacity_coefficient(T, P / 1e5)), "V": float(cork.volume(T, P / 1e5))}
            for P, T in PT_POINTS]
    print(json.dumps({"atmodeller": getattr(atmodeller, "__version__", "unknown"), "rows": rows}))


def main(args) -> None:
    import burnman
    from burnman import Mineral
    from burnman.constants import gas_constant

    params = {"name": "H2O (ds62 ideal gas at 1 bar)", "formula": {"H": 2.0, "O": 1.0}, "equation_of_state": "cork",
              "cork_params": [[0.0, 0.0], [0.0], [0.0, 0.0], [0.0, 0.0]], "cork_T": 0.0, "cork_P": 1.0e5,
              "H_0": H2O["H_0"], "S_0": H2O["S_0"], "Cp": H2O["Cp"], "n": 3.0, "molar_mass": 0.01801528}
    gas = Mineral(params=params)
    g0 = []
    for P, T in PT_POINTS:
        gas.set_state(P, T)  # cork_T = 0: BurnMan sets RT ln f = 0, so this is G0(T) of the 1 bar ideal gas
        g0.append(float(gas.gibbs))
    worker = subprocess.run([args.atmodeller_python, __file__, "--atmodeller-worker"], check=True,
                            capture_output=True, text=True)
    atm = json.loads(worker.stdout.strip().splitlines()[-1])
    rows = []
    for (P, T), G0, r in zip(PT_POINTS, g0, atm["rows"]):
        G = G0 + gas_constant * T * (math.log(P / 1.0e5) + r["ln_phi"])
        rows.append({"P": P, "T": T, "G0": G0, "ln_phi": r["ln_phi"], "G": G, "V": r["V"]})
        print(f"P {P:.3g} Pa, T {T:.2f} K: G0 {G0:.3f}, ln phi {r['ln_phi']:.12f}, G {G:.4f} J/mol, V {r['V']:.6e}")
    OUT.write_text(json.dumps({
        "meta": {"burnman": burnman.__version__, "atmodeller": atm["atmodeller"],
                 "what": "ds62 H2O fluid: G0 (ideal gas, 1 bar) from BurnMan, ln phi and V of the CORK (Holland & "
                         "Powell 1991 MRK + 1998 virial) from atmodeller's H2O_cork_holland98; "
                         "G = G0 + RT (ln(P / 1 bar) + ln phi)",
                 "units": {"P": "Pa", "T": "K", "G0": "J/mol", "G": "J/mol", "V": "m^3/mol", "ln_phi": "1"},
                 "R": gas_constant},
        "H2O": H2O, "points": rows}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atmodeller-python", default="/tmp/atm/bin/python")
    ap.add_argument("--atmodeller-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.atmodeller_worker:
        atmodeller_worker()
    else:
        main(a)
    sys.exit(0)

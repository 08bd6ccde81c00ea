"""The ds62 H2O fluid (CORK: Holland & Powell 1991 MRK + 1998 virial terms) and water-saturated
assemblages.

Ground truth: tests/data/h2o_cork_reference.json (scripts/reference/h2o_reference.py): the 1 bar
ideal-gas G0 from BurnMan 2.1 and ln phi, V from atmodeller's independent CORK code; V = dG/dP
and S = -dG/dT against central differences; a pure fluid in excess fixes mu_H2O = G_H2O(P, T), so
the solids do not depend on how much water is in excess and the extra water all goes to the fluid.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.thermo.bulk import COMPONENTS, components_from_wt
from jaxpetro.thermo.database import FluidSet, fluid_set, formula_of
from jaxpetro.thermo.endmembers import cork_ln_fugacity_coefficient
from jaxpetro.thermo.equilibrium import assemblage, solve_nodes

REF = json.loads((Path(__file__).parent / "data" / "h2o_cork_reference.json").read_text())
PTS = REF["points"]


@jax.jit
def _props(fs, P, T):
    g = jax.vmap(lambda p, t: fs.gibbs(p, t)[0])(P, T)
    v = jax.vmap(lambda p, t: fs.volume(p, t)[0])(P, T)
    dgdp = jax.vmap(jax.grad(lambda p, t: fs.gibbs(p, t)[0]))(P, T)
    dgdt = jax.vmap(jax.grad(lambda p, t: fs.gibbs(p, t)[0], argnums=1))(P, T)
    lnphi = jax.vmap(lambda p, t: cork_ln_fugacity_coefficient(p, t, fs.params)[0])(P, T)
    return g, v, dgdp, dgdt, lnphi


@pytest.fixture(scope="module")
def props():
    fs = fluid_set(["H2O"])
    P = jnp.array([r["P"] for r in PTS])
    T = jnp.array([r["T"] for r in PTS])
    hP, hT = 1e-5 * P, 1e-3  # Pa (relative: 1 bar to 15 kbar), K: central differences, truncation ~h^2
    Pn = jnp.concatenate([P, P + hP, P - hP, P, P, jnp.array([2e8, 5e8])])
    Tn = jnp.concatenate([T, T, T, T + hT, T - hT, jnp.array([650.0, 690.0])])
    out = [np.asarray(a) for a in _props(fs, Pn, Tn)]
    return fs, len(PTS), hP, hT, out


def test_h2o_matches_the_independent_reference(props):
    """G (J/mol) and V (m^3/mol) at 7 P-T points (1 bar to 15 kbar, 700-1073 K) within 1e-9
    relative (target 1e-6), ln phi within 1e-10."""
    _, n, _, _, (g, v, _, _, lnphi) = props
    G0 = np.array([r["G"] for r in PTS])
    V0 = np.array([r["V"] for r in PTS])
    np.testing.assert_allclose(g[:n], G0, rtol=1e-9, atol=0)
    np.testing.assert_allclose(v[:n], V0, rtol=1e-9, atol=0)
    np.testing.assert_allclose(lnphi[:n], [r["ln_phi"] for r in PTS], rtol=0, atol=1e-10)


def test_volume_and_entropy_are_derivatives_of_g(props):
    """V = dG/dP (exact first derivatives through the MRK root's implicit step) and both
    derivatives equal central differences of G. Not at P = P0 = 2 kbar for the pressure: the
    (P - P0)^1/4 virial volume term has an infinite slope there (V is continuous, its derivative
    is not), so a central difference across P0 is off by ~5e-4."""
    _, n, hP, hT, (g, v, dgdp, dgdt, _) = props
    np.testing.assert_allclose(dgdp[:n], v[:n], rtol=1e-12)
    fd_p = (g[n:2 * n] - g[2 * n:3 * n]) / (2 * np.asarray(hP))
    fd_t = (g[3 * n:4 * n] - g[4 * n:5 * n]) / (2 * hT)
    away = np.array([abs(r["P"] - 2e8) > 1e6 for r in PTS])
    np.testing.assert_allclose(dgdp[:n][away], fd_p[away], rtol=1e-7)
    np.testing.assert_allclose(dgdt[:n], fd_t, rtol=1e-7)
    # the ideal-gas limit at 1 bar: V ~ RT/P, S = -dG/dT ~ S0 + int Cp/T (ln phi ~ 6e-4 there)
    assert abs(v[0] / (8.31446261815324 * PTS[0]["T"] / PTS[0]["P"]) - 1.0) < 1e-3


def test_below_the_critical_temperature_is_nan(props):
    """Below Tc = 695 K the CORK has gas and liquid branches that are not implemented: NaN, never a number."""
    _, n, _, _, (g, v, *_) = props
    assert np.all(np.isnan(g[5 * n:])) and np.all(np.isnan(v[5 * n:]))


def test_fluid_in_the_phase_table():
    assert formula_of("H2O") == {"H": 2.0, "O": 1.0}
    system = assemblage(["q", "H2O"], components_from_wt({"SiO2": 60.0, "H2O": 5.0}))
    assert system.kinds == ("pure", "pure") and isinstance(system.models[1], FluidSet)


#: the metapelite of tests/test_ptpath_thermo.py, 3 wt% H2O (more than the micas hold: fluid present)
WT = {"SiO2": 59.8, "Al2O3": 16.6, "FeO": 6.9, "MgO": 2.6, "MnO": 0.4, "CaO": 1.1, "Na2O": 1.7, "K2O": 3.8,
      "H2O": 3.0, "O": 0.1}


def test_water_saturated_assemblage():
    """g-bi-mu-pl-q-H2O at 6 kbar, 600 °C for 3 and 6 wt% H2O (water in excess): identical solid
    compositions and amounts, the 3 wt% extra water all in the fluid, mu_H2O of the plane equal to
    G_H2O(P, T) of the pure fluid; 0.5 wt% H2O cannot saturate (fluid amount negative: reason 3);
    below the CORK's Tc the node is non-finite (reason 2), not a number."""
    b3, b6, b05 = (components_from_wt({**WT, "H2O": w}) for w in (3.0, 6.0, 0.5))
    names = ["g", "bi", "mu", "pl", "q", "H2O"]
    system = assemblage(names, b3)
    P = np.array([6e8, 6e8, 6e8, 6e8])
    T = np.array([873.15, 873.15, 873.15, 650.0])
    eq = solve_nodes(system, P, T, np.stack([b3, b6, b05, b3]))
    assert np.asarray(eq.reason).tolist() == [0, 0, 3, 2]
    fl = system.phase_of("H2O")
    x, amounts = np.asarray(eq.x), np.asarray(eq.amounts)
    np.testing.assert_allclose(x[1], x[0], rtol=0, atol=1e-10)
    solids = [k for k in range(len(names)) if k != fl]
    np.testing.assert_allclose(amounts[1, solids], amounts[0, solids], rtol=1e-9)
    np.testing.assert_allclose(amounts[1, fl] - amounts[0, fl], b6[COMPONENTS.index("H2O")] - b3[COMPONENTS.index("H2O")],
                               rtol=1e-9)
    assert amounts[0, fl] > 0 and amounts[2, fl] < 0
    g_h2o = float(fluid_set(["H2O"]).gibbs(jnp.float64(6e8), jnp.float64(873.15))[0])
    mu = np.asarray(eq.component_mu)[:2, COMPONENTS.index("H2O")]
    np.testing.assert_allclose(mu, g_h2o, rtol=1e-12)
    # mass balance of the saturated node
    comps = np.asarray(system.components)
    np.testing.assert_allclose(comps @ np.asarray(eq.n[0]), b3, rtol=0, atol=1e-10)

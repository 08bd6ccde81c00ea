"""The committed thermodynamic data: ds62 end-members and the solution models, as arrays.

Data files (``jaxpetro/thermo/data/``, JSON, SI units; written by
``scripts/reference/burnman_reference.py`` from BurnMan's copy of the published tables):

* ``ds62_endmembers.json``: Holland & Powell (2011) data set ds62, every end-member with the
  modified Tait EoS (H0, S0, V0, Cp, a0, K0, K', K'', n, formula, Landau / Bragg-Williams terms);
* ``white2014.json``: White et al. (2014) g, mu, bi and Holland & Powell (2003) pl4tr as site
  formulas and van Laar parameters, and the "made" end-members (kho, fmu, annm, obi, tbi, ...):
  linear combinations of ds62 end-members plus a DQF term dE - T dS + P dV;
* ``ds62_fluids.json``: the ds62 fluid end-member H2O (ideal-gas standard state and the CORK
  parameters of Holland & Powell 1991, published values: BurnMan does not carry them);
* ``phases.json``: jaxpetro's phase table: which model each assemblage name (g, bi, mu, pl, q,
  ru, ...) uses and the starting composition of the equilibrium solve.

Reading uses only the standard library and NumPy; arrays become JAX arrays in
:func:`endmember_set`.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxpetro.thermo.endmembers import CorkParams, EndmemberParams, cork_gibbs, cork_volume, endmember_gibbs

__all__ = ["EndmemberSet", "FluidSet", "endmember_set", "ds62", "fluids", "fluid_set", "phase_table", "solution_data",
           "made_data", "formula_of"]


@functools.cache
def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files("jaxpetro.thermo").joinpath("data", name).read_text(encoding="utf-8"))


def ds62() -> dict[str, dict[str, Any]]:
    """The ds62 end-member records, by name."""
    return _load("ds62_endmembers.json")["endmembers"]


def fluids() -> dict[str, dict[str, Any]]:
    """The ds62 fluid end-member records (CORK), by name."""
    return _load("ds62_fluids.json")["fluids"]


def solution_data() -> dict[str, dict[str, Any]]:
    """The solution-model records (site formulas, alphas, W_H, W_S, W_V), by model name."""
    return _load("white2014.json")["solutions"]


def made_data() -> dict[str, dict[str, Any]]:
    """The made end-members: ``{"combination": {ds62 name: coefficient}, "dqf": [dE, dS, dV]}``."""
    return _load("white2014.json")["made"]


def phase_table() -> dict[str, dict[str, Any]]:
    """jaxpetro's assemblage names: ``{"model": ...}`` (a solution) or ``{"endmember": ...}`` (pure)."""
    return _load("phases.json")["phases"]


def _combination(name: str) -> tuple[dict[str, float], list[float]]:
    made = made_data()
    if name in made:
        return made[name]["combination"], list(made[name]["dqf"])
    if name in ds62():
        return {name: 1.0}, [0.0, 0.0, 0.0]
    raise KeyError(name)


def formula_of(name: str) -> dict[str, float]:
    """Element formula of a ds62, fluid or made end-member (moles of element per formula unit)."""
    if name in fluids():
        return dict(fluids()[name]["formula"])
    comb, _ = _combination(name)
    out: dict[str, float] = {}
    for base, c in comb.items():
        for el, v in ds62()[base]["formula"].items():
            out[el] = out.get(el, 0.0) + c * v
    return {el: v for el, v in out.items() if abs(v) > 1e-10}


def _params(names: list[str]) -> EndmemberParams:
    recs = [ds62()[n] for n in names]

    def col(key):
        return jnp.asarray(np.array([r[key] for r in recs], dtype=np.float64))

    landau = np.array([[r["landau"]["Tc_0"], r["landau"]["S_D"], r["landau"]["V_D"]] if "landau" in r else [0.0] * 3
                       for r in recs], dtype=np.float64)
    bwkeys = ("deltaH", "deltaV", "Wh", "Wv", "n", "factor")
    bw = np.array([[r["bragg_williams"][k] for k in bwkeys] if "bragg_williams" in r else [0.0] * 6 for r in recs],
                  dtype=np.float64)
    return EndmemberParams(
        H0=col("H_0"), S0=col("S_0"), V0=col("V_0"), cp=jnp.asarray(np.array([r["Cp"] for r in recs], np.float64)),
        a0=col("a_0"), K0=col("K_0"), K1=col("Kprime_0"), K2=col("Kdprime_0"), natoms=col("n"),
        landau=jnp.asarray(landau), has_landau=jnp.asarray(np.array(["landau" in r for r in recs], np.float64)),
        bw=jnp.asarray(bw), has_bw=jnp.asarray(np.array(["bragg_williams" in r for r in recs], np.float64)),
    )


class EndmemberSet(eqx.Module):
    """End-members as linear combinations of ds62 end-members plus DQF terms (all arrays, so
    gradients w.r.t. every parameter are available).

    G_i(P, T) = sum_k C_ik G_k^ds62(P, T) + dqf_i0 - T dqf_i1 + P dqf_i2   (J/mol)

    Attributes:
        names: end-member names (static).
        base: ds62 parameters of the base end-members.
        combination: (m, k) coefficients C.
        dqf: (m, 3) dE (J/mol), dS (J/K/mol), dV (m^3/mol).
    """

    names: tuple[str, ...] = eqx.field(static=True)
    base: EndmemberParams
    combination: Float[Array, "m k"]
    dqf: Float[Array, "m 3"]

    def gibbs(self, P, T) -> Float[Array, " m"]:
        """G of every end-member (J/mol) at P (Pa), T (K)."""
        g = self.combination @ endmember_gibbs(P, T, self.base)
        return g + self.dqf[:, 0] - T * self.dqf[:, 1] + P * self.dqf[:, 2]

    def volume(self, P, T) -> Float[Array, " m"]:
        """V = dG/dP of every end-member (m^3/mol)."""
        return jax.jacfwd(lambda pp: self.gibbs(pp, T))(jnp.asarray(P, dtype=jnp.float64))


def endmember_set(names: list[str] | tuple[str, ...]) -> EndmemberSet:
    """The :class:`EndmemberSet` of ds62 or made end-members ``names`` (KeyError if unknown)."""
    combos = [_combination(n) for n in names]
    base = sorted({b for comb, _ in combos for b in comb})
    C = np.zeros((len(names), len(base)))
    for i, (comb, _) in enumerate(combos):
        for b, c in comb.items():
            C[i, base.index(b)] = c
    dqf = np.array([d for _, d in combos], dtype=np.float64)
    return EndmemberSet(tuple(names), _params(base), jnp.asarray(C), jnp.asarray(dqf))


class FluidSet(eqx.Module):
    """Fluid end-members with the CORK equation of state (:func:`jaxpetro.thermo.endmembers.cork_gibbs`),
    with the same ``gibbs``/``volume`` interface as :class:`EndmemberSet` (a pure phase of an
    assemblage may be either).

    Attributes:
        names: end-member names (static).
        params: their :class:`~jaxpetro.thermo.endmembers.CorkParams`.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    params: CorkParams

    def gibbs(self, P, T) -> Float[Array, " m"]:
        """G of every fluid end-member (J/mol) at P (Pa), T (K); NaN below the CORK's Tc."""
        return cork_gibbs(P, T, self.params)

    def volume(self, P, T) -> Float[Array, " m"]:
        """Molar volume (m^3/mol) of every fluid end-member (the CORK volume; equal to dG/dP)."""
        return cork_volume(P, T, self.params)


def fluid_set(names: list[str] | tuple[str, ...]) -> FluidSet:
    """The :class:`FluidSet` of ds62 fluid end-members ``names`` (KeyError if unknown)."""
    recs = [fluids()[n] for n in names]

    def arr(f):
        return jnp.asarray(np.array([f(r) for r in recs], dtype=np.float64))

    return FluidSet(tuple(names), CorkParams(
        H0=arr(lambda r: r["H_0"]), S0=arr(lambda r: r["S_0"]), cp=arr(lambda r: r["Cp"]),
        a=arr(lambda r: r["cork"]["a"]), b=arr(lambda r: r["cork"]["b"]), virial=arr(lambda r: r["cork"]["virial"]),
        P0=arr(lambda r: r["cork"]["P0"]), Ta=arr(lambda r: r["cork"]["Ta"]), Tc=arr(lambda r: r["cork"]["Tc"])))

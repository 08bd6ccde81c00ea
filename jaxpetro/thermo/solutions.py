"""Solution models as data, evaluated by one generic code path.

A model is its end-members' site formulas (``"[Mgx]3[Aly]2"``: Mg on the 3-fold X site, Al on
the 2-fold Y site; ``"[Sit1/2Alt1/2]2"``: a half-and-half site), van Laar asymmetry parameters
alpha and the published interaction energies W = W_H - T W_S + P W_V. Adding a model (chlorite,
staurolite, ilmenite ...) is adding its record to the data file; the code is the same.

Per end-member i of a phase of molar fractions x (sum 1; individual fractions may be negative
where the model has ordered end-members, e.g. obi in biotite, as long as site fractions stay
positive), the chemical potential is (Holland & Powell 1998, 2003; Powell & Holland 1993)

    mu_i = G_i(P, T) + RT ln a_i^ideal + RT ln gamma_i
    ln a_i^ideal = sum_s m_s nu_is [ln X_s(x) - ln nu_is]     (site mixing, normalised to a_i = 1 pure)
    RT ln gamma_i = -sum_{j<k} q_j q_k W*_jk alpha_i / (sum_l alpha_l x_l) ... (eq. 2 of HP 2003)

with X_s = sum_i x_i nu_is the fraction of species s on its site, nu_is the end-member's, m_s the
site multiplicity, phi_j = alpha_j x_j / sum alpha x, q_j = delta_ij - phi_j and
W*_jk = 2 W_jk / (alpha_j + alpha_k). Order-disorder (biotite) needs no special code: the ordered
end-member is one more compositional unknown that the equilibrium solve minimises over.
"""

from __future__ import annotations

import re
from fractions import Fraction

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxpetro.thermo.database import EndmemberSet, endmember_set, solution_data
from jaxpetro.thermo.endmembers import R_GAS

__all__ = [
    "SolutionModel", "parse_sites", "solution_model", "ideal_log_activities", "excess_partial_gibbs",
    "chemical_potentials", "molar_gibbs", "site_fractions",
]

_SITE = re.compile(r"\[([^\]]+)\]([0-9./]*)")
_SPECIES = re.compile(r"([A-Z][a-z]*)([0-9./]*)")


def _number(text: str, default: float = 1.0) -> float:
    return float(Fraction(text)) if text else default


def parse_sites(formula: str) -> list[tuple[float, dict[str, float]]]:
    """``"[Mgx]3[Aly]2"`` -> ``[(3.0, {"Mgx": 1.0}), (2.0, {"Aly": 1.0})]``: (multiplicity,
    species fractions) per site. Raises ValueError on a malformed formula or fractions that do
    not sum to 1 on a site."""
    sites = []
    pos = 0
    for m in _SITE.finditer(formula):
        if m.start() != pos:
            raise ValueError(f"site formula {formula!r}: unexpected text {formula[pos:m.start()]!r}")
        pos = m.end()
        species: dict[str, float] = {}
        spos = 0
        for s in _SPECIES.finditer(m.group(1)):
            if s.start() != spos:
                raise ValueError(f"site formula {formula!r}: cannot read species in [{m.group(1)}]")
            spos = s.end()
            species[s.group(1)] = species.get(s.group(1), 0.0) + _number(s.group(2))
        if spos != len(m.group(1)) or abs(sum(species.values()) - 1.0) > 1e-12:
            raise ValueError(f"site formula {formula!r}: site [{m.group(1)}] fractions must sum to 1")
        sites.append((_number(m.group(2)), species))
    if pos != len(formula) or not sites:
        raise ValueError(f"site formula {formula!r}: expected [species]multiplicity groups")
    return sites


class SolutionModel(eqx.Module):
    """One solution model as arrays (m end-members, s site-species).

    Attributes:
        name, endmember_names, species: labels (static).
        endmembers: their Gibbs energies (:class:`EndmemberSet`).
        occupancy: (m, s) fraction nu_is of species s on its site in end-member i.
        multiplicity: (s,) multiplicity of the site of species s.
        alpha: (m,) van Laar asymmetry parameters (1 for a symmetric model).
        W_H, W_S, W_V: (m, m) upper-triangular published interaction terms (J/mol, J/K/mol, m^3/mol).
    """

    name: str = eqx.field(static=True)
    endmember_names: tuple[str, ...] = eqx.field(static=True)
    species: tuple[str, ...] = eqx.field(static=True)
    endmembers: EndmemberSet
    occupancy: Float[Array, "m s"]
    multiplicity: Float[Array, " s"]
    alpha: Float[Array, " m"]
    W_H: Float[Array, "m m"]
    W_S: Float[Array, "m m"]
    W_V: Float[Array, "m m"]

    @property
    def size(self) -> int:
        return len(self.endmember_names)


def _upper(rows: list[list[float]], m: int) -> np.ndarray:
    out = np.zeros((m, m))
    for i, row in enumerate(rows):
        out[i, i + 1:] = row
    return out


def solution_model(name: str, keep: list[str] | tuple[str, ...] | None = None) -> SolutionModel:
    """The model ``name`` of the data file, optionally reduced to the end-members ``keep`` (in
    the data file's order): the sub-model of a smaller chemical system (no Mn: drop spss...).
    Site-species that no kept end-member has are dropped (their fraction is identically 0)."""
    rec = solution_data()[name]
    ends = rec["endmembers"]
    idx = [i for i, e in enumerate(ends) if keep is None or e["name"] in keep]
    if keep is not None and len(idx) != len(set(keep)):
        unknown = sorted(set(keep) - {e["name"] for e in ends})
        raise KeyError(f"model {name} has no end-member(s) {unknown}")
    parsed = [parse_sites(ends[i]["sites"]) for i in idx]
    n_sites = {len(p) for p in parsed}
    if len(n_sites) != 1:
        raise ValueError(f"model {name}: end-members have different numbers of sites")
    columns: list[tuple[int, str]] = []
    mult_of_site: list[float] = []
    for k in range(n_sites.pop()):
        mults = {p[k][0] for p in parsed}
        if len(mults) != 1:  # variable multiplicities (some HPx models) are not supported by this code path
            raise ValueError(f"model {name}: site {k + 1} has different multiplicities across end-members")
        mult_of_site.append(mults.pop())
        for sp in sorted({s for p in parsed for s in p[k][1]}):
            columns.append((k, sp))
    occ = np.array([[p[k][1].get(sp, 0.0) for k, sp in columns] for p in parsed])
    keep_col = occ.max(axis=0) > 0.0
    occ = occ[:, keep_col]
    columns = [c for c, ok in zip(columns, keep_col) if ok]
    mult = np.array([mult_of_site[k] for k, _ in columns])
    m_all = len(ends)
    sel = np.ix_(idx, idx)
    alphas = np.asarray(rec["alphas"], dtype=np.float64)[idx]
    return SolutionModel(
        name=name, endmember_names=tuple(ends[i]["name"] for i in idx),
        species=tuple(f"{sp}@{k + 1}" for k, sp in columns),
        endmembers=endmember_set([ends[i]["name"] for i in idx]),
        occupancy=jnp.asarray(occ), multiplicity=jnp.asarray(mult), alpha=jnp.asarray(alphas),
        W_H=jnp.asarray(_upper(rec["W_H"], m_all)[sel]), W_S=jnp.asarray(_upper(rec["W_S"], m_all)[sel]),
        W_V=jnp.asarray(_upper(rec["W_V"], m_all)[sel]),
    )


def site_fractions(model: SolutionModel, x: Float[Array, " m"]) -> Float[Array, " s"]:
    """X_s = sum_i x_i nu_is: the fraction of each species on its site."""
    return x @ model.occupancy


def ideal_log_activities(model: SolutionModel, x: Float[Array, " m"]) -> Float[Array, " m"]:
    """ln a_i^ideal = sum_s m_s nu_is (ln X_s - ln nu_is) (ideal mixing on sites, normalised so
    that a pure end-member has activity 1; Powell & Holland 1993)."""
    nocc = model.occupancy * model.multiplicity[None, :]
    present = model.occupancy > 0.0
    ln_nu = jnp.log(jnp.where(present, model.occupancy, 1.0))
    X = site_fractions(model, x)
    pos = X > 0.0
    # an absent species (X = 0, e.g. at a pure end-member) gives the end-members that have it
    # ln a = -inf, and contributes nothing (not 0 * -inf) to those that lack it
    ln_x = jnp.where(pos, jnp.log(jnp.where(pos, X, 1.0)), -jnp.inf)
    terms = jnp.where(present, nocc * (ln_x[None, :] - ln_nu), 0.0)
    return jnp.sum(terms, axis=1)


def _interaction(model: SolutionModel, P, T) -> Float[Array, "m m"]:
    """W*_jk = 2 (W_H - T W_S + P W_V)_jk / (alpha_j + alpha_k), upper triangle (Holland & Powell 2003)."""
    W = model.W_H - T * model.W_S + P * model.W_V
    return W * 2.0 / (model.alpha[:, None] + model.alpha[None, :])


def excess_partial_gibbs(model: SolutionModel, x: Float[Array, " m"], P, T) -> Float[Array, " m"]:
    """RT ln gamma_i = -alpha_i sum_{j<k} q_ij q_ik W*_jk with q_ij = delta_ij - phi_j,
    phi_j = alpha_j x_j / sum_l alpha_l x_l (Holland & Powell 2003, eq. 2; J/mol)."""
    phi = model.alpha * x / jnp.sum(model.alpha * x)
    q = jnp.eye(model.size, dtype=x.dtype) - phi[None, :]
    return -model.alpha * jnp.sum((q @ _interaction(model, P, T)) * q, axis=1)


def chemical_potentials(model: SolutionModel, x: Float[Array, " m"], P, T, g=None) -> Float[Array, " m"]:
    """mu_i = G_i + RT ln a_i^ideal + RT ln gamma_i of every end-member (J/mol); ``g``: the
    end-member Gibbs energies G_i(P, T) when already computed (they do not depend on x)."""
    g = model.endmembers.gibbs(P, T) if g is None else g
    return g + R_GAS * T * ideal_log_activities(model, x) + excess_partial_gibbs(model, x, P, T)


def molar_gibbs(model: SolutionModel, x: Float[Array, " m"], P, T):
    """Molar Gibbs energy sum_i x_i mu_i (J/mol of formula unit)."""
    return jnp.dot(x, chemical_potentials(model, x, P, T))

"""Oxide stoichiometry and mineral formulas from wt% oxides.

The table covers the oxides an EPMA analysis of a silicate rock reports. Molar masses
are in g/mol (IUPAC 2021 standard atomic weights, rounded to 4 decimals).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float


class Oxide(NamedTuple):
    """One oxide: its cation, cations and oxygens per formula unit, and molar mass (g/mol)."""

    cation: str
    n_cation: int
    n_oxygen: int
    molar_mass: float


_O = 15.999
_CATION_MASS = {
    "Si": 28.0855, "Ti": 47.867, "Al": 26.9815, "Cr": 51.9961, "Fe": 55.845, "Mn": 54.938,
    "Mg": 24.305, "Ca": 40.078, "Na": 22.9898, "K": 39.0983, "P": 30.9738, "Ni": 58.6934,
    "Zn": 65.38, "Ba": 137.327, "Sr": 87.62, "Zr": 91.224, "V": 50.9415, "Co": 58.9332,
    "Y": 88.9058, "Ce": 140.116, "La": 138.9055, "Nb": 92.9064, "Th": 232.0377, "U": 238.0289,
}
# oxide formula -> (cation, cations per formula, oxygens per formula)
_FORMULAS = {
    "SiO2": ("Si", 1, 2), "TiO2": ("Ti", 1, 2), "Al2O3": ("Al", 2, 3), "Cr2O3": ("Cr", 2, 3),
    "FeO": ("Fe", 1, 1), "Fe2O3": ("Fe", 2, 3), "MnO": ("Mn", 1, 1), "MgO": ("Mg", 1, 1),
    "CaO": ("Ca", 1, 1), "Na2O": ("Na", 2, 1), "K2O": ("K", 2, 1), "P2O5": ("P", 2, 5),
    "NiO": ("Ni", 1, 1), "ZnO": ("Zn", 1, 1), "BaO": ("Ba", 1, 1), "SrO": ("Sr", 1, 1),
    "ZrO2": ("Zr", 1, 2), "V2O3": ("V", 2, 3), "CoO": ("Co", 1, 1), "Y2O3": ("Y", 2, 3),
    "Ce2O3": ("Ce", 2, 3), "La2O3": ("La", 2, 3), "Nb2O5": ("Nb", 2, 5), "ThO2": ("Th", 1, 2),
    "UO2": ("U", 1, 2),
}
OXIDES: dict[str, Oxide] = {
    name: Oxide(cat, n, o, n * _CATION_MASS[cat] + o * _O) for name, (cat, n, o) in _FORMULAS.items()
}
#: element symbol -> its usual oxide in EPMA reports (all iron as FeO).
DEFAULT_OXIDE: dict[str, str] = {ox.cation: name for name, ox in OXIDES.items() if name != "Fe2O3"}

GARNET_END_MEMBERS = ("X_alm", "X_prp", "X_grs", "X_sps")


def oxide_of(element: str) -> str | None:
    """The usual oxide of an element symbol (``Si`` -> ``SiO2``), or None if unknown."""
    return DEFAULT_OXIDE.get(element.strip().capitalize())


def element_of(oxide: str) -> str | None:
    """The cation of an oxide formula (``Al2O3`` -> ``Al``), or None if unknown."""
    entry = OXIDES.get(oxide.strip())
    return None if entry is None else entry.cation


def cations_per_oxygen(
    wt: Float[Array, "... oxides"], oxides: tuple[str, ...], n_oxygen: float
) -> Float[Array, "... oxides"]:
    """Cations per formula unit normalised to ``n_oxygen`` oxygens (e.g. 12 for garnet).

    Args:
        wt: wt% of each oxide in ``oxides`` (negative values count as 0).
        oxides: oxide formulas (keys of :data:`OXIDES`).
        n_oxygen: oxygens per formula unit.

    Returns:
        cations of each oxide's element per formula unit; NaN where the analysis holds no oxygen.
    """
    table = [OXIDES[o] for o in oxides]
    moles = jnp.maximum(jnp.asarray(wt), 0.0) / jnp.array([t.molar_mass for t in table])
    oxygen = moles @ jnp.array([float(t.n_oxygen) for t in table])
    scale = jnp.where(oxygen > 0, n_oxygen / jnp.where(oxygen > 0, oxygen, 1.0), jnp.nan)
    return moles * jnp.array([float(t.n_cation) for t in table]) * scale[..., None]


def garnet_end_members(
    wt: Float[Array, "... oxides"], oxides: tuple[str, ...]
) -> Float[Array, "... 4"]:
    """Garnet end-member fractions (X_alm, X_prp, X_grs, X_sps) from wt% oxides.

    Cations on 12 oxygens, all iron as Fe2+; each fraction is the divalent cation over
    Fe + Mg + Ca + Mn (so they sum to 1). NaN where none of the four is present.

    Raises:
        KeyError: if ``oxides`` lacks one of FeO, MgO, CaO, MnO.
    """
    cations = cations_per_oxygen(wt, oxides, 12.0)
    x = jnp.stack([cations[..., oxides.index(o)] for o in ("FeO", "MgO", "CaO", "MnO")], axis=-1)
    total = x.sum(-1, keepdims=True)
    return jnp.where(total > 0, x / jnp.where(total > 0, total, 1.0), jnp.nan)

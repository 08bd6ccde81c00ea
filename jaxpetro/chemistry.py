"""Chemical tables shared by io/ and models/: oxide stoichiometry and electron-image signals.

Pure Python (no JAX, no NumPy work at import), so a reader in :mod:`jaxpetro.io` and a
model in :mod:`jaxpetro.models` can both use it without io importing models. Molar masses
are in g/mol (IUPAC 2021 standard atomic weights, rounded to 4 decimals). A new oxide is
one line in ``_FORMULAS`` (and its cation's mass in ``_CATION_MASS``).
"""

from __future__ import annotations

from typing import NamedTuple

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


#: Electron-image signals of JEOL and other instruments: usable for clustering, never
#: dead-time corrected or quantified, and not Poisson counts.
ELECTRON_SIGNALS = frozenset({"BSE", "BSI", "COMPO", "CP", "SEI", "SL", "TOPO", "TP"})


def is_electron(channel: str) -> bool:
    """Whether a channel name is an electron image (BSE, COMPO, SEI...) rather than X-rays."""
    return channel.strip().upper() in ELECTRON_SIGNALS


__all__ = ["DEFAULT_OXIDE", "ELECTRON_SIGNALS", "GARNET_END_MEMBERS", "OXIDES", "Oxide", "is_electron", "oxide_of"]

"""Bulk compositions in the oxide-component basis of THERMOCALC-style calculations.

Components (moles): SiO2, TiO2, Al2O3, FeO, MgO, MnO, CaO, Na2O, K2O, H2O and O, where O is
oxygen in excess of the other components (Fe2O3 = 2 FeO + O: O sets the ferric iron). The
conversions are linear, so a bulk is differentiable in its wt% (NumPy here for host-side
set-up; :func:`components_from_wt` also works on JAX arrays).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxpetro.chemistry import OXIDES
from jaxpetro.errors import InputError

COMPONENTS = ("SiO2", "TiO2", "Al2O3", "FeO", "MgO", "MnO", "CaO", "Na2O", "K2O", "H2O", "O")
#: g/mol: jaxpetro.chemistry's oxides; H2O and O from the same atomic weights (H 1.008, O 15.999)
MOLAR_MASS = {**{c: OXIDES[c].molar_mass for c in COMPONENTS if c in OXIDES}, "H2O": 2 * 1.008 + 15.999,
              "O": 15.999}
# element -> (component, moles of component per mole of element, oxygens carried by that element)
_ELEMENT = {"Si": ("SiO2", 1.0, 2.0), "Ti": ("TiO2", 1.0, 2.0), "Al": ("Al2O3", 0.5, 1.5), "Fe": ("FeO", 1.0, 1.0),
            "Mg": ("MgO", 1.0, 1.0), "Mn": ("MnO", 1.0, 1.0), "Ca": ("CaO", 1.0, 1.0), "Na": ("Na2O", 0.5, 0.5),
            "K": ("K2O", 0.5, 0.5), "H": ("H2O", 0.5, 0.5)}

__all__ = ["COMPONENTS", "MOLAR_MASS", "components_from_elements", "components_from_wt", "formula_components"]


def formula_components(formula: Mapping[str, float]) -> np.ndarray:
    """Moles of each component in one formula unit (``{"Mg": 3, "Fe": 2, "Si": 3, "O": 12}``
    -> 3 MgO + 2 FeO + 3 SiO2 + 1 O). KeyError for an element outside the system."""
    out = np.zeros(len(COMPONENTS))
    oxygen = float(formula.get("O", 0.0))
    for el, v in formula.items():
        if el == "O":
            continue
        if el not in _ELEMENT:
            raise KeyError(el)
        comp, per, ox = _ELEMENT[el]
        out[COMPONENTS.index(comp)] += per * v
        oxygen -= ox * v
    out[COMPONENTS.index("O")] = oxygen
    return out


def _check_amounts(values: Mapping[str, float], known, where: str, unit: str, noun: str, unknown) -> None:
    """InputError naming ``where`` and the key for a key outside ``known`` (message ``unknown(key)``)
    or a value that is not a finite number >= 0 (in ``unit``)."""
    for k, v in values.items():
        if k not in known:
            raise InputError(unknown(k))
        try:
            value = float(v)
        except (TypeError, ValueError):
            raise InputError(f"{where}.{k}: expected a number of {unit}, got {v!r}.") from None
        if not np.isfinite(value) or value < 0:
            raise InputError(f"{where}.{k} = {v!r}: {noun} must be a finite number >= 0.")


def components_from_wt(wt: Mapping[str, float], where: str = "bulk.oxides_wt"):
    """Moles of each component in 100 g of rock from oxide wt% (a missing oxide is 0; ``O``:
    wt% of excess oxygen). :class:`InputError` (naming ``where`` and the key) for an oxide outside
    the system or a negative / non-numeric value."""
    _check_amounts(wt, COMPONENTS, where, "wt%", "a wt%",
                   lambda k: f"{where}: unknown oxide '{k}'; the thermodynamic system has {', '.join(COMPONENTS)} "
                             f"(O: excess oxygen, i.e. ferric iron; give Fe2O3 as FeO + O).")
    return np.array([float(wt.get(c, 0.0)) / MOLAR_MASS[c] for c in COMPONENTS])


def components_from_elements(moles: Mapping[str, float], where: str = "bulk.elements_mol") -> np.ndarray:
    """Component moles from element moles (``{"Si": 0.6, ..., "O": 1.9}``); oxygen beyond the
    cations' oxides is the O component. :class:`InputError` (naming ``where`` and the key) for an
    element outside the system, a negative value, or less oxygen than the cations' oxides need."""
    _check_amounts(moles, (*_ELEMENT, "O"), where, "moles", "an amount",
                   lambda k: f"{where}: unknown element '{k}'; the thermodynamic system has "
                             f"{', '.join([*_ELEMENT, 'O'])}.")
    out = formula_components({k: float(v) for k, v in moles.items()})
    if out[-1] < -1e-9:
        raise InputError(f"{where}.O: the element bulk has {-out[-1]:.4g} mol less oxygen than its cations' "
                         f"oxides need (Si as SiO2, Al as AlO1.5, Fe as FeO, ...); raise O.")
    out[-1] = max(out[-1], 0.0)
    return out

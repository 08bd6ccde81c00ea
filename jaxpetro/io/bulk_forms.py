"""Bulk compositions (oxide wt%) in the input forms of phase-equilibrium programs.

Three forms, each in mol % of oxides (the elements for Theriak), with two options the maps
cannot measure: H2O (the microprobe does not see H) and the Fe3+ of the bulk (it sees total
Fe, reported as FeO):

* **Perple_X** (``build``): the ``begin thermodynamic component list`` block of a build
  ``.dat`` file, one line per component ``NAME  1  amount  0.00000  0.00000  molar amount``
  (Connolly 2005, 2009). Fe3+ enters as the component ``O2``: Fe2O3 = 2 FeO + 1/2 O2, so
  O2 = Fe3+ / 4.
* **Theriak-Domino** (de Capitani & Petrakakis 2010): the bulk line of a ``THERIN`` file,
  ``1   SI(..)AL(..)...O(..)   * comment``, in moles of elements; ``O(?)`` (oxygen from the
  cation charges, all Fe as Fe2+) unless an Fe3+/Fe is given, then the oxygen explicitly.
* **MAGEMin** (Riel et al. 2022): a MAGEMinApp bulk-rock file,
  ``title; comments; db; sysUnit; oxide; frac`` with one line per bulk, oxides in mol; Fe3+
  as the component ``O`` (Fe2O3 = 2 FeO + O, so O = Fe3+ / 2), always listed (0 when no
  Fe3+/Fe is given) since MAGEMin's databases take FeO + O.

Every form is normalised to 100 (mol % of the components written).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxpetro.chemistry import OXIDES
from jaxpetro.errors import InputError
from jaxpetro.io.results import write_text

__all__ = ["FORMS", "bulk_mol_percent", "magemin_bulk_file", "perplex_components", "theriak_bulk_line",
           "write_bulk_forms"]

#: The forms :func:`write_bulk_forms` writes, with their file names.
FORMS = {"perplex": "bulk_perplex.txt", "theriak": "bulk_theriak.txt", "magemin": "bulk_magemin.dat"}


def bulk_mol_percent(wt: Sequence[float] | np.ndarray, oxides: Sequence[str], *, h2o_mol: float | None = None,
                     fe3_fe: float | None = None, oxygen: str = "O") -> dict[str, float]:
    """The bulk as mol % of its oxides (iron as FeO), the oxygen of its Fe3+ and H2O.

    Args:
        wt: oxide wt% (any total), one per ``oxides``; iron as FeO and/or Fe2O3 (summed as
            total Fe). NaN or negative values count as 0.
        oxides: the oxide of each value (keys of :data:`jaxpetro.chemistry.OXIDES`; others,
            e.g. H2O or LOI columns, are an error: give H2O with ``h2o_mol``).
        h2o_mol: mol % of H2O in the result (the rest scaled to 100 - h2o_mol); None = none.
        fe3_fe: Fe3+/Fe_total; adds the oxygen component ``oxygen`` (``"O"`` = Fe3+/2 moles,
            ``"O2"`` = Fe3+/4 moles); None = no oxygen component (all Fe as FeO).
        oxygen: the name of the oxygen component (``"O"`` MAGEMin, ``"O2"`` Perple_X).

    Returns:
        component -> mol %, in the order of ``oxides`` (FeO once, where the first iron column
        was), then the oxygen, then H2O; summing to 100.
    """
    unknown = [o for o in oxides if o not in OXIDES]
    if unknown:
        raise InputError(f"bulk: oxide(s) {', '.join(unknown)} not in the oxide table (known: {', '.join(OXIDES)}); "
                         "give H2O as an amount (h2o_mol), not a column")
    moles: dict[str, float] = {}
    fe = 0.0
    for o, w in zip(oxides, wt):
        w = float(w) if np.isfinite(w) and w > 0 else 0.0
        ox = OXIDES[o]
        if ox.cation == "Fe":
            moles.setdefault("FeO", 0.0)
            fe += w / ox.molar_mass * ox.n_cation
            continue
        moles[o] = moles.get(o, 0.0) + w / ox.molar_mass
    if "FeO" in moles:
        moles["FeO"] = fe
    if fe3_fe is not None:
        if not 0.0 <= fe3_fe <= 1.0:
            raise InputError(f"bulk: Fe3+/Fe = {fe3_fe} must lie in 0..1")
        moles[oxygen] = fe3_fe * fe * (0.5 if oxygen == "O" else 0.25)
    total = sum(moles.values())
    if total <= 0:
        raise InputError("bulk: the composition is empty (every oxide 0 or NaN)")
    h2o = 0.0 if h2o_mol is None else float(h2o_mol)
    if not 0.0 <= h2o < 100.0:
        raise InputError(f"bulk: H2O = {h2o_mol} mol % must lie in 0..100 (exclusive)")
    out = {k: v * (100.0 - h2o) / total for k, v in moles.items()}
    if h2o_mol is not None:
        out["H2O"] = h2o
    return out


def perplex_components(mol: Mapping[str, float], name: str) -> str:
    """A Perple_X build ``thermodynamic component list`` block of a bulk (mol %; ``O2`` for Fe3+),
    preceded by a ``|`` comment naming it (components in Perple_X's upper-case names)."""
    lines = [f"| {name}: bulk from jaxpetro qmap, mol % (paste into the build .dat file)",
             "begin thermodynamic component list"]
    for comp, value in mol.items():
        lines.append(f"{comp.upper():<6}1 {value:10.5f}      0.00000      0.00000     molar amount")
    lines.append("end thermodynamic component list")
    return "\n".join(lines) + "\n"


def theriak_bulk_line(mol: Mapping[str, float], name: str, fe3_fe: float | None = None) -> str:
    """The bulk line of a Theriak-Domino ``THERIN`` file, in moles of elements (from mol % of
    oxides): ``1   SI(..)AL(..)...O(?)   * name``; with ``fe3_fe`` the oxygen is written
    (that of the oxides plus Fe3+/2), else ``O(?)`` lets Theriak compute it (all Fe2+)."""
    elements: dict[str, float] = {}
    oxygen = 0.0
    for comp, value in mol.items():
        if comp in ("O", "O2"):
            oxygen += value * (1 if comp == "O" else 2)
            continue
        if comp == "H2O":
            elements["H"] = elements.get("H", 0.0) + 2 * value
            oxygen += value
            continue
        ox = OXIDES[comp]
        elements[ox.cation.upper()] = elements.get(ox.cation.upper(), 0.0) + ox.n_cation * value
        oxygen += ox.n_oxygen * value
    text = "".join(f"{el}({value:.5f})" for el, value in elements.items())
    text += f"O({oxygen:.5f})" if fe3_fe is not None else "O(?)"
    return f"1   {text}   * {name}"


def magemin_bulk_file(bulks: Mapping[str, Mapping[str, float]], db: str = "mp", comment: str = "jaxpetro qmap") -> str:
    """A MAGEMinApp bulk-rock file: ``title; comments; db; sysUnit; oxide; frac`` and one line
    per bulk (mol %, ``sysUnit`` mol). Oxide names as MAGEMin writes them (SiO2, Al2O3, FeO, O,
    H2O...)."""
    lines = ["# bulk compositions from jaxpetro qmap (mol %); Fe3+ as O (Fe2O3 = 2 FeO + O)",
             "title; comments; db; sysUnit; oxide; frac"]
    for name, mol in bulks.items():
        comps = ", ".join(mol)
        values = ", ".join(f"{v:.5f}" for v in mol.values())
        lines.append(f"{name.replace(';', ',')}; {comment}; {db}; mol; [{comps}]; [{values}]")
    return "\n".join(lines) + "\n"


def write_bulk_forms(out: str | os.PathLike, bulks: Mapping[str, Sequence[float] | np.ndarray], oxides: Sequence[str], *,
                     forms: Sequence[str] = tuple(FORMS), h2o_mol: float | None = None,
                     fe3_fe: float | None = None, magemin_db: str = "mp") -> dict[str, Path]:
    """Write the bulks (name -> oxide wt%) in each form to ``out`` (files :data:`FORMS`).

    Bulks with no finite oxide (an empty domain) are left out. Returns form -> path written.
    """
    out = Path(out)
    usable = {n: w for n, w in bulks.items() if np.any(np.isfinite(np.asarray(w, np.float64)))}
    paths = {}
    if "perplex" in forms:
        text = "".join(perplex_components(bulk_mol_percent(w, oxides, h2o_mol=h2o_mol, fe3_fe=fe3_fe, oxygen="O2"),
                                          n) + "\n" for n, w in usable.items())
        paths["perplex"] = write_text(out / FORMS["perplex"], text)
    if "theriak" in forms:
        lines = [theriak_bulk_line(bulk_mol_percent(w, oxides, h2o_mol=h2o_mol, fe3_fe=fe3_fe), n, fe3_fe)
                  for n, w in usable.items()]
        paths["theriak"] = write_text(out / FORMS["theriak"], "\n".join(lines) + "\n")
    if "magemin" in forms:
        mol = {n: bulk_mol_percent(w, oxides, h2o_mol=h2o_mol, fe3_fe=0.0 if fe3_fe is None else fe3_fe, oxygen="O")
               for n, w in usable.items()}
        paths["magemin"] = write_text(out / FORMS["magemin"], magemin_bulk_file(mol, magemin_db))
    return paths

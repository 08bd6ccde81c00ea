"""Structural formulae of rock-forming minerals from wt% oxides, vectorised over pixels.

For each mineral kind (garnet, biotite, muscovite, chlorite, plagioclase, K-feldspar,
clinopyroxene, orthopyroxene, amphibole, olivine, epidote, spinel) this module computes,
from oxide wt% arrays of shape ``(..., n_oxides)``:

* **cations per formula unit** (apfu) on the mineral's standard anhydrous oxygen basis
  (garnet 12 O, micas 11 O, chlorite 14 O, feldspars 8 O, pyroxenes 6 O, amphibole 23 O,
  olivine and spinel 4 O, epidote 12.5 O);
* **Fe3+** by charge balance where the stoichiometry fixes it (Droop 1987, Mineral. Mag.
  51:431-435): with ``S`` the cation total on ``X`` oxygens with all iron as Fe2+ and ``T``
  the ideal cation total, ``Fe3+ = 2 X (1 - T/S)`` in the formula normalised to ``T``
  cations (garnet 8/12, pyroxenes 4/6, epidote 8/12.5, spinel 3/4; amphibole with the
  13eCNK normalisation: ``T = 13`` cations excluding Ca, Na and K on 23 O, Leake et al.
  1997, Am. Mineral. 82:1019, Appendix; Droop's variant for a subset of cations). Fe3+ is
  clipped to ``0 <= Fe3+ <= Fe_total`` and the formula is then normalised to ``X``
  oxygens with that Fe3+/Fe ratio, which is the same formula as Droop's ``T``-cation one
  whenever the clip is inactive. Micas, chlorite and feldspars get all iron as Fe2+:
  their unanalysed H (OH, H2O) and site vacancies leave the charge balance
  indeterminate (Droop 1987 excludes minerals with cation vacancies);
* **site occupancies** (apfu on each crystallographic site, filled in the conventional
  order stated per mineral in docs/structural.md), **end-member fractions** (sets that
  sum to 1) and **ratios** (X_Mg, Fe3+/Fe...).

Everything is plain ``jax.numpy``, elementwise over the leading (pixel) axes, in the dtype
of the input (float32 is ample for 0.01 apfu; float64 when derivatives matter), and
differentiable in the wt%. Masked pixels (NaN wt%) and pixels without oxygen give NaN, and
so does a fraction whose denominator is zero; never a division warning.

A phase name (``Grt``, ``garnet``, ``Pl``...) maps to a mineral kind through
:data:`DEFAULT_MINERALS` (case-insensitive), overridable by a mapping such as the qmap
config key ``structural.minerals: {Grt: garnet, Wm: muscovite}``; :func:`resolve_minerals`
returns the kinds and a note for each phase it skips.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Real

from jaxpetro.chemistry import OXIDES
from jaxpetro.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_MINERALS",
    "FE3_METHODS",
    "MINERALS",
    "MineralScheme",
    "StructuralFormula",
    "analysed_only",
    "mineral_kind",
    "resolve_minerals",
    "split_iron",
    "structural_formula",
    "structural_formula_blocks",
    "structural_formulae",
]

#: Ways to split iron: ``charge_balance`` (Droop 1987, where the scheme allows it),
#: ``none`` (all Fe2+), ``all_ferric`` (all Fe3+, e.g. epidote by convention),
#: ``measured`` (FeO and Fe2O3 columns as analysed, e.g. wet chemistry or Mössbauer).
FE3_METHODS = ("charge_balance", "none", "all_ferric", "measured")


class MineralScheme(NamedTuple):
    """How one mineral kind is recalculated.

    Attributes:
        oxygens: anhydrous oxygens per formula unit (the normalisation basis).
        cations: ideal cation total for Droop's charge balance, or None where vacancies or
            unanalysed H make it indeterminate (then ``charge_balance`` is refused).
        exclude: cations left out of the charge-balance cation sum (amphibole 13eCNK:
            Ca, Na, K).
        fe3: the default iron method (one of :data:`FE3_METHODS`).
        formula: the ideal formula, for the documentation and the metadata.
    """

    oxygens: float
    cations: float | None
    exclude: tuple[str, ...]
    fe3: str
    formula: str


#: The schemes, by mineral kind.
MINERALS: dict[str, MineralScheme] = {
    "garnet": MineralScheme(12.0, 8.0, (), "charge_balance", "X3 Y2 Z3 O12"),
    "biotite": MineralScheme(11.0, None, (), "none", "A M3 T4 O10 (OH)2"),
    "muscovite": MineralScheme(11.0, None, (), "none", "A M2 T4 O10 (OH)2"),
    "chlorite": MineralScheme(14.0, None, (), "none", "M6 T4 O10 (OH)8"),
    "plagioclase": MineralScheme(8.0, None, (), "none", "A T4 O8"),
    "k_feldspar": MineralScheme(8.0, None, (), "none", "A T4 O8"),
    "clinopyroxene": MineralScheme(6.0, 4.0, (), "charge_balance", "M2 M1 T2 O6"),
    "orthopyroxene": MineralScheme(6.0, 4.0, (), "charge_balance", "M2 M1 T2 O6"),
    "amphibole": MineralScheme(23.0, 13.0, ("Ca", "Na", "K"), "charge_balance", "A B2 C5 T8 O22 (OH)2"),
    "olivine": MineralScheme(4.0, 3.0, (), "none", "M2 T O4"),
    "epidote": MineralScheme(12.5, 8.0, (), "charge_balance", "A2 M3 T3 O12 (OH)"),
    "spinel": MineralScheme(4.0, 3.0, (), "charge_balance", "A B2 O4"),
}

#: Phase names (lower case: IMA abbreviations of Whitney & Evans 2010 / Warr 2021 and full
#: names) -> mineral kind.
DEFAULT_MINERALS: dict[str, str] = {
    **dict.fromkeys(("grt", "gt", "garnet"), "garnet"),
    **dict.fromkeys(("bt", "bi", "biotite"), "biotite"),
    **dict.fromkeys(("ms", "mu", "wm", "phe", "phg", "muscovite", "phengite", "white mica"), "muscovite"),
    **dict.fromkeys(("chl", "chlorite"), "chlorite"),
    **dict.fromkeys(("pl", "plg", "plag", "plagioclase"), "plagioclase"),
    **dict.fromkeys(("kfs", "ksp", "kf", "k-feldspar", "kfeldspar", "k_feldspar", "alkali feldspar",
                     "or", "mc", "sa", "orthoclase", "microcline", "sanidine"), "k_feldspar"),
    **dict.fromkeys(("cpx", "clinopyroxene", "aug", "augite", "di", "diopside", "omp", "omphacite"),
                    "clinopyroxene"),
    **dict.fromkeys(("opx", "orthopyroxene", "en", "enstatite", "hyp", "hypersthene"), "orthopyroxene"),
    **dict.fromkeys(("amp", "am", "amphibole", "hbl", "hb", "hornblende"), "amphibole"),
    **dict.fromkeys(("ol", "olivine"), "olivine"),
    **dict.fromkeys(("ep", "epidote", "czo", "clinozoisite", "zo", "zoisite"), "epidote"),
    **dict.fromkeys(("spl", "sp", "spinel"), "spinel"),
}

_SKIP = frozenset({"", "none", "skip", "null", "false"})


def mineral_kind(phase: str, minerals: Mapping[str, Any] | None = None) -> str | None:
    """The mineral kind of a phase name, or None if it has none.

    ``minerals`` (e.g. the config's ``structural.minerals``) wins over
    :data:`DEFAULT_MINERALS`; both are matched case-insensitively. A value of ``none`` /
    ``skip`` (or YAML ``null`` / ``false``) in ``minerals`` switches a phase off.

    Raises:
        ConfigError: an override names a kind that does not exist.
    """
    overrides = {str(k).strip().lower(): (k, v) for k, v in (minerals or {}).items()}
    key = phase.strip().lower()
    if key in overrides:
        name, value = overrides[key]
        if value is None or value is False or str(value).strip().lower() in _SKIP:
            return None
        kind = str(value).strip().lower().replace("-", "_").replace(" ", "_")
        kind = DEFAULT_MINERALS.get(kind, kind)
        if kind not in MINERALS:
            raise ConfigError(
                f"structural.minerals.{name}: {value!r} is not a mineral kind; use one of "
                f"{', '.join(sorted(MINERALS))} (or 'none' to skip the phase)"
            )
        return kind
    return DEFAULT_MINERALS.get(key)


def resolve_minerals(
    phases: Sequence[str], minerals: Mapping[str, Any] | None = None
) -> tuple[dict[str, str], list[str]]:
    """Mineral kinds of phase names, and one note per phase skipped.

    Returns:
        ``({phase: kind}, notes)``; a phase without a kind is absent from the dict and
        named in a note (how to map it: ``structural.minerals: {<phase>: <kind>}``).
    """
    kinds, notes = {}, []
    for phase in phases:
        kind = mineral_kind(phase, minerals)
        if kind is None:
            notes.append(
                f"structural formula skipped for phase {phase!r}: no mineral kind (map it with "
                f"structural.minerals: {{{phase}: <kind>}}, kinds: {', '.join(sorted(MINERALS))})"
            )
        else:
            kinds[phase] = kind
    return kinds, notes


class StructuralFormula(NamedTuple):
    """The structural formula of one mineral over an array of pixels.

    Every array has the leading shape of the input (the wt% without its oxide axis).

    Attributes:
        mineral: the mineral kind (a key of :data:`MINERALS`).
        oxygens: the oxygen basis.
        cation_basis: Droop's ideal cation total (None where not used).
        fe3_method: how iron was split (one of :data:`FE3_METHODS`).
        cations: element -> apfu (iron as ``Fe2`` and ``Fe3``), plus ``sum``.
        sites: ``<site>_<element>`` -> apfu on that site, plus ``<site>_sum``.
        end_members: end-member name -> mole fraction; each set sums to 1.
        ratios: other dimensionless ratios (``X_Mg`` = Mg/(Mg+Fe2+), ``Fe3_Fe``...).
        notes: what the scheme assumes or could not do, in words.
    """

    mineral: str
    oxygens: float
    cation_basis: float | None
    fe3_method: str
    cations: dict[str, Array]
    sites: dict[str, Array]
    end_members: dict[str, Array]
    ratios: dict[str, Array]
    notes: tuple[str, ...]

    def datasets(self) -> dict[str, dict[str, Array]]:
        """Nested arrays for a writer: ``{"cations": {...}, "sites": {...}, "end_members":
        {...}, "ratios": {...}}`` (store under ``structural/<Phase>/``)."""
        return {"cations": dict(self.cations), "sites": dict(self.sites),
                "end_members": dict(self.end_members), "ratios": dict(self.ratios)}

    def units(self, prefix: str = "") -> dict[str, str]:
        """Unit patterns for :func:`jaxpetro.io.results.write_hdf5` (apfu and ``"1"``)."""
        return {f"{prefix}cations/*": "apfu", f"{prefix}sites/*": "apfu",
                f"{prefix}end_members/*": "1", f"{prefix}ratios/*": "1"}

    def attrs(self) -> dict[str, Any]:
        """The metadata as HDF5-friendly attributes."""
        return {"mineral": self.mineral, "oxygen_basis": self.oxygens,
                "cation_basis": -1.0 if self.cation_basis is None else self.cation_basis,
                "fe3_method": self.fe3_method, "formula": MINERALS[self.mineral].formula,
                "notes": "; ".join(self.notes)}


# ----------------------------------------------------------------------------- arithmetic


def _div(num: Array, den: Array) -> Array:
    """num / den, NaN where den is not positive; the guarded denominator keeps the
    gradient finite (a plain division inside jnp.where differentiates to NaN)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.nan)


def _fill(capacity: Array, amounts: Sequence[Array]) -> tuple[list[Array], Array]:
    """Fill a site of ``capacity`` with ``amounts`` in order: each takes what it has, up
    to the room left. Returns the amounts placed and the room left (>= 0)."""
    placed, room = [], jnp.maximum(capacity, 0.0)
    for a in amounts:
        take = jnp.clip(a, 0.0, room)
        placed.append(take)
        room = room - take
    return placed, room


def _moles(wt: Array, oxides: tuple[str, ...]) -> tuple[dict[str, Array], dict[str, float], Array, Array]:
    """Cation moles per 100 g by element (Fe summed over FeO and Fe2O3), their oxygen
    per cation, and the moles of Fe from Fe2O3 and of all Fe."""
    moles: dict[str, Array] = {}
    o_per: dict[str, float] = {}
    fe3 = jnp.zeros(wt.shape[:-1], wt.dtype)
    fe_total = jnp.zeros(wt.shape[:-1], wt.dtype)
    for j, name in enumerate(oxides):
        ox = OXIDES[name]
        m = jnp.maximum(wt[..., j], 0.0) / ox.molar_mass * ox.n_cation
        if ox.cation == "Fe":
            fe_total = fe_total + m
            if name == "Fe2O3":
                fe3 = fe3 + m
            continue
        moles[ox.cation] = moles.get(ox.cation, 0.0) + m
        o_per[ox.cation] = ox.n_oxygen / ox.n_cation
    return moles, o_per, fe3, fe_total


def _cations(wt: Array, oxides: tuple[str, ...], scheme: MineralScheme, method: str) -> tuple[dict[str, Array], Array]:
    """Cations per formula unit and the Fe3+/Fe_total ratio used."""
    moles, o_per, fe3_moles, fe = _moles(wt, oxides)
    # oxygen with all iron as FeO
    oxygen0 = fe + sum((m * o_per[c] for c, m in moles.items()), jnp.zeros_like(fe))
    if method == "none":
        ratio = jnp.zeros_like(fe)
    elif method == "all_ferric":
        ratio = jnp.where(fe > 0, 1.0, 0.0).astype(fe.dtype)
    elif method == "measured":
        ratio = jnp.where(fe > 0, fe3_moles / jnp.where(fe > 0, fe, 1.0), 0.0)
    else:  # Droop (1987): F = 2X(1 - T/S), S over the cations not excluded (all Fe2+)
        x, t = scheme.oxygens, scheme.cations
        s_moles = fe + sum((m for c, m in moles.items() if c not in scheme.exclude), jnp.zeros_like(fe))
        s = _div(s_moles * x, oxygen0)
        f = 2.0 * x * (1.0 - _div(jnp.full_like(s, t), s))
        fe_t = _div(fe * x, oxygen0) * _div(jnp.full_like(s, t), s)  # all Fe in the T-formula
        ratio = jnp.clip(jnp.where(fe_t > 0, f / jnp.where(fe_t > 0, fe_t, 1.0), 0.0), 0.0, 1.0)
    oxygen = oxygen0 + 0.5 * ratio * fe
    scale = _div(jnp.full_like(oxygen, scheme.oxygens), oxygen)
    cations = {c: m * scale for c, m in moles.items()}
    cations["Fe2"] = (1.0 - ratio) * fe * scale
    cations["Fe3"] = ratio * fe * scale
    cations["sum"] = sum((v for v in cations.values()), jnp.zeros_like(scale))
    return cations, jnp.where(jnp.isfinite(scale), ratio, jnp.nan)


# ----------------------------------------------------------------------------- the minerals


def _garnet(c: Callable[[str], Array]) -> tuple[dict, dict, dict, list[str]]:
    si = c("Si")
    (z_si, z_al, z_fe3), _ = _fill(jnp.full_like(si, 3.0), [si, c("Al"), c("Fe3")])
    y = {"Y_Al": c("Al") - z_al, "Y_Fe3": c("Fe3") - z_fe3, "Y_Cr": c("Cr"), "Y_Ti": c("Ti"), "Y_Si": si - z_si}
    x = {"X_Fe2": c("Fe2"), "X_Mg": c("Mg"), "X_Mn": c("Mn"), "X_Ca": c("Ca"), "X_Na": c("Na")}
    sites = {"Z_Si": z_si, "Z_Al": z_al, "Z_Fe3": z_fe3, **y, **x}
    sites.update(Z_sum=z_si + z_al + z_fe3, Y_sum=sum(y.values()), X_sum=sum(x.values()))
    xsum = c("Fe2") + c("Mg") + c("Mn") + c("Ca")
    ca = _div(c("Ca"), xsum)
    # the Ca garnets in sequence: andradite takes the Fe3+ on Y (2 per formula), uvarovite the
    # Cr, each capped by the Ca left; grossular is the rest of Ca. Without Fe3+ and Cr this is
    # the all-Fe2+ convention X_grs = Ca / (Fe + Mg + Mn + Ca)
    adr = jnp.clip(0.5 * y["Y_Fe3"], 0.0, ca)
    uv = jnp.clip(0.5 * y["Y_Cr"], 0.0, ca - adr)
    em = {"X_alm": _div(c("Fe2"), xsum), "X_prp": _div(c("Mg"), xsum), "X_grs": ca - adr - uv,
          "X_sps": _div(c("Mn"), xsum), "X_adr": adr, "X_uv": uv}
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + c("Fe2"))}
    notes = ["Z filled with Si, Al, Fe3+ to 3; X_adr = Fe3+(Y)/2, X_uv = Cr/2 (capped by X_Ca), X_grs the rest of X_Ca"]
    return sites, em, ratios, notes


def _mica_t(c: Callable[[str], Array]) -> tuple[Array, Array, Array]:
    si = c("Si")
    (t_si, t_al), _ = _fill(jnp.full_like(si, 4.0), [si, c("Al")])
    return t_si, t_al, c("Al") - t_al


def _biotite(c):
    t_si, t_al, al6 = _mica_t(c)
    m = {"M_Al": al6, "M_Ti": c("Ti"), "M_Cr": c("Cr"), "M_Fe2": c("Fe2"), "M_Fe3": c("Fe3"), "M_Mn": c("Mn"),
         "M_Mg": c("Mg"), "M_Zn": c("Zn"), "M_Ni": c("Ni")}
    a = {"A_K": c("K"), "A_Na": c("Na"), "A_Ca": c("Ca"), "A_Ba": c("Ba")}
    sites = {"T_Si": t_si, "T_Al": t_al, **m, **a, "T_sum": t_si + t_al, "M_sum": sum(m.values()),
             "A_sum": sum(a.values())}
    sites["M_vac"] = 3.0 - sites["M_sum"]
    fe = c("Fe2") + c("Fe3")
    em = {"X_phl": _div(c("Mg"), c("Mg") + fe), "X_ann": _div(fe, c("Mg") + fe)}
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + fe), "X_Fe": _div(fe, c("Mg") + fe)}
    return sites, em, ratios, ["annite-phlogopite is the Fe-Mg projection (Al, Ti, Mn on M reported as sites)"]


def _muscovite(c):
    t_si, t_al, al6 = _mica_t(c)
    m = {"M_Al": al6, "M_Ti": c("Ti"), "M_Cr": c("Cr"), "M_Fe2": c("Fe2"), "M_Fe3": c("Fe3"), "M_Mn": c("Mn"),
         "M_Mg": c("Mg")}
    a = {"A_K": c("K"), "A_Na": c("Na"), "A_Ca": c("Ca"), "A_Ba": c("Ba")}
    sites = {"T_Si": t_si, "T_Al": t_al, **m, **a, "T_sum": t_si + t_al, "M_sum": sum(m.values()),
             "A_sum": sum(a.values())}
    kna = c("K") + c("Na") + c("Ca")
    em = {"X_ms": _div(c("K"), kna), "X_pg": _div(c("Na"), kna), "X_mrg": _div(c("Ca"), kna)}
    fe = c("Fe2") + c("Fe3")
    # the Tschermak (celadonite) substitution Si(Mg,Fe) = Al(IV)Al(VI) on the ms-cel join
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + fe), "X_cel": jnp.clip(t_si - 3.0, 0.0, 1.0)}
    return sites, em, ratios, ["X_ms, X_pg, X_mrg are K, Na, Ca over K+Na+Ca on A; X_cel = Si - 3 (clipped to 0..1)"]


def _chlorite(c):
    t_si, t_al, al6 = _mica_t(c)
    m = {"M_Al": al6, "M_Ti": c("Ti"), "M_Cr": c("Cr"), "M_Fe2": c("Fe2"), "M_Fe3": c("Fe3"), "M_Mn": c("Mn"),
         "M_Mg": c("Mg"), "M_Zn": c("Zn"), "M_Ni": c("Ni"), "M_Ca": c("Ca"), "M_Na": c("Na"), "M_K": c("K")}
    sites = {"T_Si": t_si, "T_Al": t_al, **m, "T_sum": t_si + t_al, "M_sum": sum(m.values())}
    sites["M_vac"] = 6.0 - sites["M_sum"]
    fe = c("Fe2") + c("Fe3")
    em = {"X_clc": _div(c("Mg"), c("Mg") + fe), "X_dph": _div(fe, c("Mg") + fe)}
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + fe)}
    return sites, em, ratios, ["clinochlore-daphnite is the Fe-Mg projection; M_vac = 6 - octahedral sum"]


def _feldspar(c):
    t = {"T_Si": c("Si"), "T_Al": c("Al"), "T_Fe": c("Fe2") + c("Fe3")}
    a = {"A_Ca": c("Ca"), "A_Na": c("Na"), "A_K": c("K"), "A_Ba": c("Ba"), "A_Sr": c("Sr")}
    sites = {**t, **a, "T_sum": sum(t.values()), "A_sum": sum(a.values())}
    can = c("Ca") + c("Na") + c("K")
    em = {"X_an": _div(c("Ca"), can), "X_ab": _div(c("Na"), can), "X_or": _div(c("K"), can)}
    return sites, em, {}, ["An, Ab, Or are Ca, Na, K over Ca+Na+K (Ba, Sr reported as A-site occupancy)"]


def _pyroxene(c, quad_jd: bool):
    si = c("Si")
    (t_si, t_al, t_fe3), _ = _fill(jnp.full_like(si, 2.0), [si, c("Al"), c("Fe3")])
    al6, fe3_6 = c("Al") - t_al, c("Fe3") - t_fe3
    # M1 after Morimoto et al. (1988): Al, Fe3+, Ti, Cr, then Mg, Fe2+, Mn to 1; the rest to M2
    (m1_al, m1_fe3, m1_ti, m1_cr, m1_mg, m1_fe2, m1_mn), _ = _fill(
        jnp.ones_like(si), [al6, fe3_6, c("Ti"), c("Cr"), c("Mg"), c("Fe2"), c("Mn")])
    m1 = {"M1_Al": m1_al, "M1_Fe3": m1_fe3, "M1_Ti": m1_ti, "M1_Cr": m1_cr, "M1_Mg": m1_mg, "M1_Fe2": m1_fe2,
          "M1_Mn": m1_mn}
    m2 = {"M2_Mg": c("Mg") - m1_mg, "M2_Fe2": c("Fe2") - m1_fe2, "M2_Mn": c("Mn") - m1_mn, "M2_Ca": c("Ca"),
          "M2_Na": c("Na"), "M2_K": c("K")}
    sites = {"T_Si": t_si, "T_Al": t_al, "T_Fe3": t_fe3, **m1, **m2, "T_sum": t_si + t_al + t_fe3,
             "M1_sum": sum(m1.values()), "M2_sum": sum(m2.values())}
    fe_star = c("Fe2") + c("Fe3") + c("Mn")  # Morimoto's Sum Fe = Fe2+ + Fe3+ + Mn
    wef = c("Ca") + c("Mg") + fe_star
    em = {"X_wo": _div(c("Ca"), wef), "X_en": _div(c("Mg"), wef), "X_fs": _div(fe_star, wef)}
    notes = ["Wo, En, Fs are Ca, Mg, Fe2+ + Fe3+ + Mn over their sum (Morimoto et al. 1988)"]
    if quad_jd:
        q, j = c("Ca") + c("Mg") + c("Fe2"), 2.0 * c("Na")
        trivalent = m1_al + m1_fe3
        f_jd = jnp.where(trivalent > 0, m1_al / jnp.where(trivalent > 0, trivalent, 1.0), 1.0)
        x_j = _div(j, q + j)
        em.update(X_quad=_div(q, q + j), X_jd=x_j * f_jd, X_aeg=x_j * (1.0 - f_jd))
        notes.append("Q = Ca+Mg+Fe2+, J = 2Na (Morimoto et al. 1988); J split into jd and aeg as Al and Fe3+ on M1")
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + c("Fe2"))}
    return sites, em, ratios, notes


def _amphibole(c):
    si = c("Si")
    (t_si, t_al), _ = _fill(jnp.full_like(si, 8.0), [si, c("Al")])
    # C (M1-3) after Leake et al. (1997): Al, Fe3+, Ti, Cr, then Mg, Fe2+, Mn to 5
    (c_al, c_fe3, c_ti, c_cr, c_mg, c_fe2, c_mn), _ = _fill(
        jnp.full_like(si, 5.0), [c("Al") - t_al, c("Fe3"), c("Ti"), c("Cr"), c("Mg"), c("Fe2"), c("Mn")])
    (b_mg, b_fe2, b_mn, b_ca, b_na), _ = _fill(
        jnp.full_like(si, 2.0), [c("Mg") - c_mg, c("Fe2") - c_fe2, c("Mn") - c_mn, c("Ca"), c("Na")])
    cs = {"C_Al": c_al, "C_Fe3": c_fe3, "C_Ti": c_ti, "C_Cr": c_cr, "C_Mg": c_mg, "C_Fe2": c_fe2, "C_Mn": c_mn}
    bs = {"B_Mg": b_mg, "B_Fe2": b_fe2, "B_Mn": b_mn, "B_Ca": b_ca, "B_Na": b_na}
    as_ = {"A_Na": c("Na") - b_na, "A_K": c("K"), "A_Ca": c("Ca") - b_ca}
    sites = {"T_Si": t_si, "T_Al": t_al, **cs, **bs, **as_, "T_sum": t_si + t_al, "C_sum": sum(cs.values()),
             "B_sum": sum(bs.values()), "A_sum": sum(as_.values())}
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + c("Fe2"))}
    return sites, {}, ratios, [
        "T: Si, Al to 8; C: Al, Fe3+, Ti, Cr, Mg, Fe2+, Mn to 5; B: rest of Mg, Fe2+, Mn, then Ca, Na to 2; "
        "A: rest of Na, K (Leake et al. 1997); no end-member set (classify with Hawthorne et al. 2012)"]


def _olivine(c):
    m = {"M_Mg": c("Mg"), "M_Fe2": c("Fe2"), "M_Fe3": c("Fe3"), "M_Mn": c("Mn"), "M_Ni": c("Ni"), "M_Ca": c("Ca"),
         "M_Cr": c("Cr"), "M_Al": c("Al")}
    sites = {"T_Si": c("Si"), **m, "M_sum": sum(m.values())}
    fe = c("Fe2") + c("Fe3")
    em = {"X_fo": _div(c("Mg"), c("Mg") + fe), "X_fa": _div(fe, c("Mg") + fe)}
    return sites, em, {"X_Mg": em["X_fo"]}, ["Fo, Fa are Mg, Fe over Mg+Fe (Mn, Ni, Ca reported on M)"]


def _epidote(c):
    si = c("Si")
    (t_si, t_al), _ = _fill(jnp.full_like(si, 3.0), [si, c("Al")])
    al_m = c("Al") - t_al
    m3_al = jnp.maximum(al_m - 2.0, 0.0)  # M1 and M2 are Al; Fe3+ and the rest of Al share M3
    m = {"M_Al": al_m, "M_Fe3": c("Fe3"), "M_Fe2": c("Fe2"), "M_Ti": c("Ti"), "M_Cr": c("Cr"), "M_Mn": c("Mn"),
         "M_Mg": c("Mg")}
    a = {"A_Ca": c("Ca"), "A_Sr": c("Sr"), "A_Na": c("Na")}
    sites = {"T_Si": t_si, "T_Al": t_al, **m, **a, "M3_Al": m3_al, "M3_Fe3": c("Fe3"), "T_sum": t_si + t_al,
             "M_sum": sum(m.values()), "A_sum": sum(a.values())}
    em = {"X_ep": _div(c("Fe3"), c("Fe3") + m3_al), "X_czo": _div(m3_al, c("Fe3") + m3_al)}
    ratios = {"X_ps": _div(c("Fe3"), c("Fe3") + c("Al"))}
    return sites, em, ratios, ["X_ep = Fe3+/(Fe3+ + Al - 2) on M3; pistacite X_ps = Fe3+/(Fe3+ + Al)"]


def _spinel(c):
    tri = c("Al") + c("Cr") + c("Fe3")
    sites = {"A_Mg": c("Mg"), "A_Fe2": c("Fe2"), "A_Mn": c("Mn"), "A_Zn": c("Zn"), "A_Ni": c("Ni"),
             "B_Al": c("Al"), "B_Cr": c("Cr"), "B_Fe3": c("Fe3"), "B_Ti": c("Ti"), "B_V": c("V")}
    em = {"X_Al": _div(c("Al"), tri), "X_Cr": _div(c("Cr"), tri), "X_Fe3": _div(c("Fe3"), tri)}
    ratios = {"X_Mg": _div(c("Mg"), c("Mg") + c("Fe2")), "Cr_number": _div(c("Cr"), c("Cr") + c("Al"))}
    return sites, em, ratios, ["normal-spinel site labels (A divalent, B trivalent and Ti); inversion not resolved"]


_SITES = {
    "garnet": _garnet, "biotite": _biotite, "muscovite": _muscovite, "chlorite": _chlorite,
    "plagioclase": _feldspar, "k_feldspar": _feldspar,
    "clinopyroxene": lambda c: _pyroxene(c, True), "orthopyroxene": lambda c: _pyroxene(c, False),
    "amphibole": _amphibole, "olivine": _olivine, "epidote": _epidote, "spinel": _spinel,
}

_FE3_NOTES = {
    "charge_balance": "Fe3+ by charge balance (Droop 1987) on {t:g} cations / {x:g} O{sub}, clipped to 0..Fe_total",
    "none": "all Fe as Fe2+",
    "all_ferric": "all Fe as Fe3+",
    "measured": "Fe2+ and Fe3+ from the FeO and Fe2O3 columns as given",
}


def structural_formula(
    wt: Real[ArrayLike, "... oxides"], oxides: Sequence[str], mineral: str, fe3: str | None = None
) -> StructuralFormula:
    """The structural formula of ``mineral`` for every pixel of ``wt``.

    Args:
        wt: oxide wt%, shape (..., len(oxides)); negative values count as 0; NaN (masked)
            pixels give NaN everywhere. Any total: the formula is a normalisation.
        oxides: oxide formulas (keys of :data:`jaxpetro.chemistry.OXIDES`), e.g.
            ``("SiO2", "Al2O3", "FeO", "MgO")``; iron may come as FeO, Fe2O3 or both.
            Volatiles (H2O, F, Cl) are not part of the anhydrous basis: leave them out.
        mineral: a mineral kind (key of :data:`MINERALS`) or a phase name known to
            :data:`DEFAULT_MINERALS` (``"Grt"``, ``"biotite"``...).
        fe3: iron method (:data:`FE3_METHODS`); None takes the mineral's default
            (``charge_balance`` for garnet, pyroxenes, amphibole, epidote, spinel; ``none``
            otherwise).

    Returns:
        a :class:`StructuralFormula` (apfu, site occupancies, fractions, metadata).

    Raises:
        InputError: an oxide is not in the table or ``wt`` has the wrong last axis.
        ConfigError: unknown mineral or iron method, or ``charge_balance`` asked of a
            mineral whose charge balance is indeterminate (micas, chlorite, feldspars).
    """
    kind = mineral if mineral in MINERALS else DEFAULT_MINERALS.get(str(mineral).strip().lower())
    if kind is None:
        raise ConfigError(f"unknown mineral {mineral!r}; use one of {', '.join(sorted(MINERALS))} "
                          f"or a phase name such as {', '.join(sorted(DEFAULT_MINERALS)[:8])}...")
    scheme = MINERALS[kind]
    method = scheme.fe3 if fe3 is None else str(fe3)
    if method not in FE3_METHODS:
        raise ConfigError(f"structural fe3 method {fe3!r} for {kind}: use one of {', '.join(FE3_METHODS)}")
    if method == "charge_balance" and scheme.cations is None:
        raise ConfigError(
            f"Fe3+ by charge balance is indeterminate for {kind} (unanalysed H and site vacancies: Droop 1987); "
            "use fe3: none, all_ferric or measured")
    oxides = tuple(str(o).strip() for o in oxides)
    unknown = [o for o in oxides if o not in OXIDES]
    if unknown:
        raise InputError(f"structural formula of {kind}: oxide(s) {', '.join(unknown)} not in the oxide table "
                         f"(known: {', '.join(OXIDES)}); leave out volatiles (H2O, F, Cl) and totals")
    arr = jnp.asarray(wt)
    arr = arr if jnp.issubdtype(arr.dtype, jnp.floating) else arr.astype(float)
    if arr.ndim == 0 or arr.shape[-1] != len(oxides):
        raise InputError(f"structural formula of {kind}: wt% has shape {arr.shape}, expected (..., {len(oxides)}) "
                         f"for the oxides {', '.join(oxides)}")
    cations, _ = _cations(arr, oxides, scheme, method)
    zero = 0.0 * cations["sum"]  # an element not analysed: 0, NaN on masked pixels

    def c(element: str) -> Array:
        return cations.get(element, zero)

    sites, end_members, ratios, notes = _SITES[kind](c)
    ratios = {**ratios, "Fe3_Fe": _div(c("Fe3"), c("Fe2") + c("Fe3"))}
    sub = " excluding " + ", ".join(scheme.exclude) if scheme.exclude else ""
    fe_note = _FE3_NOTES[method].format(t=scheme.cations or 0.0, x=scheme.oxygens, sub=sub)
    if kind == "amphibole" and method == "charge_balance":
        fe_note += " (13eCNK only; Leake et al. 1997 also bound it by 15eNK and all-Fe2+: not done here)"
    return StructuralFormula(
        mineral=kind, oxygens=scheme.oxygens,
        cation_basis=scheme.cations if method == "charge_balance" else None, fe3_method=method,
        cations=cations, sites=sites, end_members=end_members, ratios=ratios,
        notes=(f"{scheme.oxygens:g} O anhydrous basis", fe_note, *notes))


def structural_formulae(
    compositions: Mapping[str, Real[ArrayLike, "... oxides"]],
    oxides: Sequence[str],
    minerals: Mapping[str, Any] | None = None,
    fe3: Mapping[str, str] | None = None,
) -> tuple[dict[str, StructuralFormula], list[str]]:
    """Structural formulae of several phases (e.g. each phase's wt% map).

    Args:
        compositions: phase name -> wt% (..., len(oxides)) (NaN outside the phase).
        oxides: the oxide of each column.
        minerals: phase -> mineral kind overrides (config ``structural.minerals``).
        fe3: mineral kind or phase -> iron method overrides.

    Returns:
        ``({phase: StructuralFormula}, notes)``: phases without a kind are skipped, each
        with a note.
    """
    kinds, notes = resolve_minerals(list(compositions), minerals)
    methods = {str(k).strip().lower(): v for k, v in (fe3 or {}).items()}
    out = {}
    for phase, kind in kinds.items():
        method = methods.get(phase.strip().lower(), methods.get(kind))
        out[phase] = structural_formula(compositions[phase], oxides, kind, method)
    return out, notes


# ----------------------------------------------------------------------------- whole maps

#: Pixels per block of :func:`structural_formula_blocks`: every block has this shape, so the
#: eager kernels compile once per dtype and are shared by every mineral kind (~1 s once,
#: then ~0.01 s per block; a jit per kind would compile ~1.5 s for each).
BLOCK = 32768

_CATION_SYMBOLS = frozenset({ox.cation for ox in OXIDES.values()} | {"Fe2", "Fe3"})


def structural_formula_blocks(
    wt: Real[np.ndarray, "pixels oxides"], oxides: Sequence[str], mineral: str, fe3: str | None = None,
    block: int = BLOCK,
) -> StructuralFormula:
    """:func:`structural_formula` of many pixels, in fixed-size blocks, as numpy arrays.

    Args:
        wt: (n, len(oxides)) wt% of the pixels (e.g. one phase's pixels of a map).
        oxides, mineral, fe3: as :func:`structural_formula`.
        block: pixels per evaluation; the last block is padded with copies of the first
            pixel (dropped from the result), so every evaluation has the same shape.

    Returns:
        a :class:`StructuralFormula` whose arrays are numpy arrays of shape (n,) in the dtype
        of ``wt``.
    """
    arr = np.asarray(wt)
    arr = arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InputError(f"structural formula of {mineral}: expected (pixels, oxides) wt% with at least one pixel, "
                         f"got shape {arr.shape}")
    n = arr.shape[0]
    parts, first = [], None
    for start in range(0, n, block):
        chunk = arr[start:start + block]
        if chunk.shape[0] < block:  # pad: one shape for every evaluation
            chunk = np.concatenate([chunk, np.broadcast_to(arr[:1], (block - chunk.shape[0], arr.shape[1]))])
        f = structural_formula(chunk, oxides, mineral, fe3)
        if first is None:
            first = f
        parts.append({g: {k: np.asarray(v) for k, v in d.items()} for g, d in f.datasets().items()})
    groups = {g: {k: np.concatenate([p[g][k] for p in parts])[:n] for k in parts[0][g]} for g in parts[0]}
    return first._replace(**groups)


def analysed_only(formula: StructuralFormula, oxides: Sequence[str]) -> StructuralFormula:
    """The formula without the cations and site occupancies of elements that were not
    analysed (identically 0: e.g. ``Cr``, ``Y_Cr`` and ``M_Zn`` of a map without Cr2O3 and
    ZnO), nor, with all iron as Fe2+ (``fe3_method`` none), the Fe3+ entries and ``Fe3_Fe``;
    sums, vacancies, end-members and the other ratios are kept."""
    present = {OXIDES[o].cation for o in oxides if o in OXIDES}
    if "Fe" in present:
        present |= {"Fe2"} if formula.fe3_method == "none" else {"Fe2", "Fe3"}
    ratios = {k: v for k, v in formula.ratios.items() if k != "Fe3_Fe" or "Fe3" in present}

    def keep(name: str) -> bool:
        element = name.rsplit("_", 1)[-1]
        return element not in _CATION_SYMBOLS or element in present

    return formula._replace(cations={k: v for k, v in formula.cations.items() if keep(k)},
                            sites={k: v for k, v in formula.sites.items() if keep(k)}, ratios=ratios)


def split_iron(wt: Real[np.ndarray, "... oxides"], oxides: Sequence[str], fe3_fe: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """The same analyses with their total iron split into FeO and Fe2O3 at a given
    Fe3+/Fe_total (for ``fe3="measured"``): e.g. each pixel of a phase at the ratio that the
    charge balance of the phase's mean composition gives.

    Args:
        wt: (..., len(oxides)) wt%; iron as FeO, Fe2O3 or both (summed as total Fe).
        oxides: the oxide of each column.
        fe3_fe: Fe3+/(Fe2+ + Fe3+), clipped to 0..1.

    Returns:
        ``(wt, oxides)``: the other columns unchanged, FeO and Fe2O3 last (wt% of each, so
        that the moles of Fe are those of the input).
    """
    given = np.asarray(wt)
    dtype = given.dtype if np.issubdtype(given.dtype, np.floating) else np.float64
    arr = given.astype(np.float64)
    oxides = tuple(oxides)
    iron = [j for j, o in enumerate(oxides) if o in OXIDES and OXIDES[o].cation == "Fe"]
    keep = [j for j in range(len(oxides)) if j not in iron]
    fe_moles = sum((arr[..., j] / OXIDES[oxides[j]].molar_mass * OXIDES[oxides[j]].n_cation for j in iron),
                   np.zeros(arr.shape[:-1]))
    r = float(np.clip(fe3_fe, 0.0, 1.0))
    feo = (1.0 - r) * fe_moles * OXIDES["FeO"].molar_mass
    fe2o3 = 0.5 * r * fe_moles * OXIDES["Fe2O3"].molar_mass
    out = np.concatenate([arr[..., keep], feo[..., None], fe2o3[..., None]], axis=-1)
    return out.astype(dtype), tuple(oxides[j] for j in keep) + ("FeO", "Fe2O3")

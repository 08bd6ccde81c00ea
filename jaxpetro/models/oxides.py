"""Mineral formulas from wt% oxides (JAX, differentiable in the wt%).

The oxide table itself is :mod:`jaxpetro.chemistry` (shared with the readers in io/).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real

from jaxpetro.chemistry import GARNET_END_MEMBERS, OXIDES

__all__ = ["GARNET_END_MEMBERS", "GARNET_OXIDES", "GarnetEndMembers", "cations_per_oxygen", "garnet_end_members",
           "garnet_end_members_with_sd", "mean_atomic_number"]

#: The oxides whose cations make the garnet end-members (X_alm, X_prp, X_grs, X_sps).
GARNET_OXIDES = ("FeO", "MgO", "CaO", "MnO")


# Atomic numbers of the cations of jaxpetro.chemistry.OXIDES (and O, H).
_Z = {"O": 8, "H": 1, "Si": 14, "Ti": 22, "Al": 13, "Cr": 24, "Fe": 26, "Mn": 25, "Mg": 12, "Ca": 20, "Na": 11, "K": 19,
      "P": 15, "Ni": 28, "Zn": 30, "Ba": 56, "Sr": 38, "Zr": 40, "V": 23, "Co": 27, "Y": 39, "Ce": 58, "La": 57,
      "Nb": 41, "Th": 90, "U": 92}
_O_MASS, _H_MASS = 15.999, 1.008


def mean_atomic_number(wt: Real[ArrayLike, "... oxides"], oxides: tuple[str, ...]) -> np.ndarray:
    """Mass-fraction-weighted mean atomic number Zbar = sum_i c_i Z_i of a composition.

    The X-ray continuum (the background under a peak) grows about linearly with Zbar
    (Kramers 1923), which is how :func:`jaxpetro.models.xray.calibrate_on_map_rates` carries
    a background from the phases that lack an element to those that have it.

    Args:
        wt: wt% oxides (..., len(oxides)); negative values count as 0. The unanalysed
            remainder of a total below 100 wt% is counted as H2O (the usual reason for a low
            total in silicates: OH in micas, amphiboles, chlorite); a total above 100 is
            normalised.
        oxides: oxide formulas (keys of :data:`jaxpetro.chemistry.OXIDES`).

    Returns:
        float64 (...,) mean Z (quartz 10.8; almandine ~15.5).
    """
    coef = []
    for o in oxides:
        ox = OXIDES[o]
        cation_mass = ox.molar_mass - ox.n_oxygen * _O_MASS  # all cations of the formula
        coef.append((cation_mass * _Z[ox.cation] + ox.n_oxygen * _O_MASS * _Z["O"]) / ox.molar_mass / 100.0)
    wt = np.maximum(np.asarray(wt, np.float64), 0.0)
    total = wt.sum(-1)
    missing = np.clip(100.0 - total, 0.0, None)
    h2o = (2 * _H_MASS * _Z["H"] + _O_MASS * _Z["O"]) / (2 * _H_MASS + _O_MASS) / 100.0
    return np.asarray((wt @ np.asarray(coef) + missing * h2o) * 100.0 / np.maximum(total + missing, 1e-12))


def _as_float(wt: ArrayLike) -> Array:
    wt = jnp.asarray(wt)
    return wt if jnp.issubdtype(wt.dtype, jnp.floating) else wt.astype(float)


def cations_per_oxygen(
    wt: Real[ArrayLike, "... oxides"], oxides: tuple[str, ...], n_oxygen: float
) -> Float[Array, "... oxides"]:
    """Cations per formula unit normalised to ``n_oxygen`` oxygens (e.g. 12 for garnet).

    Computed in the dtype of ``wt`` (float64 recommended); differentiable in ``wt``.

    Args:
        wt: wt% of each oxide in ``oxides`` (negative values count as 0).
        oxides: oxide formulas (keys of :data:`jaxpetro.chemistry.OXIDES`).
        n_oxygen: oxygens per formula unit.

    Returns:
        cations of each oxide's element per formula unit; NaN where the analysis holds no oxygen.
    """
    wt = _as_float(wt)
    table = [OXIDES[o] for o in oxides]
    lead = (1,) * (wt.ndim - 1)  # per-oxide constants broadcast over the leading axes, explicitly

    def row(values):
        return jnp.array(values, wt.dtype).reshape(lead + (-1,))

    moles = jnp.maximum(wt, 0.0) / row([t.molar_mass for t in table])
    oxygen = moles @ jnp.array([float(t.n_oxygen) for t in table], wt.dtype)
    scale = jnp.where(oxygen > 0, n_oxygen / jnp.where(oxygen > 0, oxygen, 1.0), jnp.nan)
    return moles * row([float(t.n_cation) for t in table]) * scale[..., None]


def garnet_end_members(wt: Real[ArrayLike, "... oxides"], oxides: tuple[str, ...]) -> Float[Array, "... 4"]:
    """Garnet end-member fractions (X_alm, X_prp, X_grs, X_sps) from wt% oxides.

    Cations on 12 oxygens, all iron as Fe2+; each fraction is the divalent cation over
    Fe + Mg + Ca + Mn (so they sum to 1). NaN where none of the four is present.
    Differentiable in ``wt``.

    Raises:
        ValueError: if ``oxides`` lacks one of FeO, MgO, CaO, MnO.
    """
    cations = cations_per_oxygen(wt, oxides, 12.0)
    x = jnp.stack([cations[..., oxides.index(o)] for o in GARNET_OXIDES], axis=-1)
    total = x.sum(-1, keepdims=True)
    return jnp.where(total > 0, x / jnp.where(total > 0, total, 1.0), jnp.nan)


class GarnetEndMembers(NamedTuple):
    """End-member fractions (n, 4) and their standard errors (n, 4), order of
    :data:`GARNET_END_MEMBERS`."""

    x: Float[Array, "n 4"]
    sd: Float[Array, "n 4"]


def garnet_end_members_with_sd(
    wt: Real[ArrayLike, "n oxides"], wt_se: Real[ArrayLike, "n oxides"], oxides: tuple[str, ...]
) -> GarnetEndMembers:
    """Garnet end-members of n analyses and their standard errors, propagated to first order
    from independent wt% errors: ``sd_e^2 = sum_j (dX_e / dW_j)^2 se_j^2`` (the Jacobian by
    forward-mode autodiff)."""
    wt = _as_float(wt)
    wt_se = jnp.asarray(wt_se).astype(wt.dtype)
    x = garnet_end_members(wt, oxides)
    jac = jax.vmap(jax.jacfwd(lambda v: garnet_end_members(v, oxides)))(wt)  # (n, 4, J)
    sd = jnp.sqrt(jnp.einsum("nej,nj->ne", jac**2, wt_se**2))
    return GarnetEndMembers(x, sd)

"""Mineral formulas from wt% oxides (JAX, differentiable in the wt%).

The oxide table itself is :mod:`jaxpetro.chemistry` (shared with the readers in io/).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxpetro.chemistry import GARNET_END_MEMBERS, OXIDES

__all__ = ["GARNET_END_MEMBERS", "cations_per_oxygen", "garnet_end_members"]


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

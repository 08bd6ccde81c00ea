"""Garnet composition and fractional growth: the pure functions a P-T path model needs.

* :func:`garnet_fractions`: X_alm, X_prp, X_grs, X_sps of the garnet in an equilibrium (X_prp =
  py + kho, the Fe3+ end-member khoharite counted with pyrope as both are Mg garnets; the four
  sum to 1);
* :func:`grow`: the garnet shell in equilibrium with the reactive bulk at P, T, and the new
  reactive bulk once ``d_garnet`` moles of that garnet are removed from it (fractional
  crystallisation: the shell is isolated from the matrix). Mass is conserved exactly:
  new bulk + d_garnet x composition(shell) = old bulk.

Both are jit/vmap/grad-compatible (through :func:`~jaxpetro.thermo.equilibrium.equilibrate`'s
implicit differentiation), so an ensemble forecast can carry each member's reactive bulk.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxpetro.thermo.equilibrium import Assemblage, Equilibrium, EquilibriumOptions, equilibrate

__all__ = ["GARNET_COLUMNS", "Growth", "garnet_fractions", "garnet_x", "grow", "remove_shell"]

GARNET_COLUMNS = ("X_alm", "X_prp", "X_grs", "X_sps")
_GROUPS = {"X_alm": ("alm",), "X_prp": ("py", "kho"), "X_grs": ("gr",), "X_sps": ("spss",)}


def garnet_fractions(system: Assemblage, x: Float[Array, " N"], phase: str = "g") -> Float[Array, " 4"]:
    """(X_alm, X_prp, X_grs, X_sps) from the end-member fractions ``x`` of an equilibrium
    (end-members the chemical system lacks count 0), normalised to sum 1."""
    a, _ = system.slices[system.phase_of(phase)]
    names = system.endmembers_of(phase)
    parts = [sum((x[a + names.index(e)] for e in group if e in names), jnp.zeros((), x.dtype))
             for group in (_GROUPS[c] for c in GARNET_COLUMNS)]
    v = jnp.stack(parts)
    return v / jnp.sum(v)


def garnet_x(system: Assemblage, P, T, bulk, n0=None, options: EquilibriumOptions | None = None):
    """The pure forward function (P [Pa], T [K], bulk [component mol]) -> ((X_alm, X_prp, X_grs,
    X_sps), the :class:`Equilibrium`) for an observation operator."""
    eq = equilibrate(system, P, T, bulk, n0, options)
    return garnet_fractions(system, eq.x), eq


class Growth(NamedTuple):
    """One fractional-growth step.

    Attributes:
        X: (4,) X_alm, X_prp, X_grs, X_sps of the shell.
        shell: (m,) end-member fractions of the shell garnet (the model's order).
        removed: (C,) component moles removed with the shell.
        bulk: (C,) the new reactive bulk.
        equilibrium: the equilibrium the shell grew in (its status says whether to trust it).
    """

    X: Array
    shell: Array
    removed: Array
    bulk: Array
    equilibrium: Equilibrium


def remove_shell(system: Assemblage, eq: Equilibrium, bulk, d_garnet, phase: str = "g") -> Growth:
    """Remove ``d_garnet`` moles (formula units) of the garnet of equilibrium ``eq`` from the
    reactive ``bulk`` (component moles): the mass-balance half of :func:`grow`, for a caller that
    already has the equilibrium."""
    a, b = system.slices[system.phase_of(phase)]
    shell = eq.x[a:b]
    removed = d_garnet * (system.components[:, a:b] @ shell)
    return Growth(garnet_fractions(system, eq.x, phase), shell, removed, jnp.asarray(bulk) - removed, eq)


def grow(system: Assemblage, P, T, bulk, d_garnet, n0=None, options: EquilibriumOptions | None = None,
         phase: str = "g") -> Growth:
    """Grow ``d_garnet`` moles (formula units, >= 0; at most the equilibrium garnet amount) of the
    garnet in equilibrium with ``bulk`` at P (Pa), T (K) and remove it from the reactive bulk."""
    return remove_shell(system, equilibrate(system, P, T, bulk, n0, options), bulk, d_garnet, phase)

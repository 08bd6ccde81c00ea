"""Garnet composition and fractional growth: the pure functions a P-T path model needs.

* :func:`garnet_fractions`: X_alm, X_prp, X_grs, X_sps of the garnet in an equilibrium (X_prp =
  py + kho, the Fe3+ end-member khoharite counted with pyrope as both are Mg garnets; the four
  sum to 1);
* :func:`nucleus`: where the rock makes no garnet at P, T (the assemblage without it is stable),
  the composition of the garnet in equilibrium with the rest of the assemblage (the matrix): the
  garnet that would nucleate there, its mode 0. It is the limit of the equilibrium garnet as its
  mode goes to 0, so an observation that falls back to it stays continuous across garnet-in;
* :func:`grow`: the garnet shell in equilibrium with the reactive bulk at P, T, and the new
  reactive bulk once ``d_garnet`` moles of that garnet are removed from it (fractional
  crystallisation: the shell is isolated from the matrix). Mass is conserved exactly:
  new bulk + d_garnet x composition(shell) = old bulk.

Both are jit/vmap/grad-compatible (through :func:`~jaxpetro.thermo.equilibrium.equilibrate`'s
implicit differentiation), so an ensemble forecast can carry each member's reactive bulk.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from jaxpetro.thermo import linsolve
from jaxpetro.thermo.endmembers import R_GAS
from jaxpetro.thermo.equilibrium import Assemblage, Equilibrium, EquilibriumOptions, equilibrate, step_to_boundary
from jaxpetro.thermo.solutions import chemical_potentials

__all__ = ["GARNET_COLUMNS", "Growth", "Nucleus", "garnet_fractions", "garnet_x", "grow", "nucleus", "remove_shell"]

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


class Nucleus(NamedTuple):
    """The garnet in equilibrium with the matrix (:func:`nucleus`).

    Attributes:
        X: (4,) X_alm, X_prp, X_grs, X_sps.
        x: (m,) end-member fractions (the model's order).
        affinity: the garnet's Gibbs energy above the matrix's chemical-potential plane, per
            formula unit, in units of RT (0 on garnet-in, > 0 where garnet is not stable, < 0
            where the matrix alone is supersaturated in it).
        ok: the matrix equilibrium and the tangent solve both converged, finite, every site
            fraction positive (an end-member fraction may be negative, as in any equilibrium:
            py < 0 with kho > 0 is a positive Mg and Fe3+ garnet).
        matrix: the matrix's :class:`Equilibrium`.
    """

    X: Array
    x: Array
    affinity: Array
    ok: Bool[Array, ""]
    matrix: Equilibrium


def nucleus(system: Assemblage, matrix: Assemblage, P, T, bulk, options: EquilibriumOptions | None = None,
            phase: str = "g", max_iter: int = 60, tol: float = 1e-10) -> Nucleus:
    """The composition of the garnet in equilibrium with ``matrix`` (the assemblage ``system``
    without ``phase``) at P (Pa), T (K) and ``bulk`` (component moles): the x that minimises the
    garnet's molar Gibbs energy above the matrix's chemical-potential plane (the parallel-tangent
    construction; its affinity is > 0 where garnet is not stable, 0 on garnet-in).

    Conditions (end-members i of the garnet, c_i their component moles, mu_C the matrix's component
    chemical potentials): mu_i(x) / RT - c_i . mu_C / RT = affinity for every i, sum x = 1;
    Newton's method on that square system (the Hessian as in :func:`~jaxpetro.thermo.equilibrium.kkt_matrix`),
    damped so that every site fraction stays positive, from the model's starting composition.
    Differentiable by the same implicit step as :func:`~jaxpetro.thermo.equilibrium.equilibrate`.
    """
    P = jnp.asarray(P, dtype=jnp.float64)
    T = jnp.asarray(T, dtype=jnp.float64)
    eq = equilibrate(matrix, P, T, bulk, None, options)
    k = system.phase_of(phase)
    a, b = system.slices[k]
    model = system.models[k]
    m = b - a
    g = model.endmembers.gibbs(P, T)
    plane = system.components[:, a:b].T @ eq.component_mu / (R_GAS * T)  # (m,)
    occ = model.occupancy

    def F(z, g, plane):
        n = z[:m]
        return jnp.concatenate([chemical_potentials(model, n / jnp.sum(n), P, T, g) / (R_GAS * T) - plane - z[m],
                                jnp.sum(n, keepdims=True) - 1.0])

    def J(z, g):
        H = jax.jacfwd(lambda n: chemical_potentials(model, n / jnp.sum(n), P, T, g) / (R_GAS * T))(z[:m])
        one = jnp.ones((m, 1), z.dtype)
        return jnp.block([[H, -one], [one.T, jnp.zeros((1, 1), z.dtype)]])

    gs, ps = jax.lax.stop_gradient((g, plane))

    def body(state):
        z, f, it = state
        dz = linsolve.solve(J(z, gs), -f)
        n, dn = z[:m], dz[:m]
        alpha = step_to_boundary(n @ occ, dn @ occ, 0.99)  # site-species amounts stay positive
        z = z + alpha * dz
        return z, F(z, gs, ps), it + 1

    def cond(state):
        _, f, it = state
        r = jnp.max(jnp.abs(f))
        return (it < max_iter) & (r > tol) & jnp.isfinite(r)

    x0 = system.x0[a:b]
    z0 = jnp.concatenate([x0, jnp.zeros(1, x0.dtype)])
    z0 = jax.lax.stop_gradient(z0.at[m].set(jnp.mean(F(z0, gs, ps)[:m])))
    z_star, f, _ = jax.lax.while_loop(cond, body, (z0, F(z0, gs, ps), jnp.asarray(0, jnp.int32)))
    z_star = jax.lax.stop_gradient(z_star)
    z = z_star - linsolve.solve(jax.lax.stop_gradient(J(z_star, gs)), F(z_star, g, plane))  # implicit step
    x = z[:m] / jnp.sum(z[:m])
    full = jnp.zeros(system.size, x.dtype).at[a:b].set(x)
    X = garnet_fractions(system, full, phase)
    ok = (eq.reason == 0) & (jnp.max(jnp.abs(f)) <= tol) & jnp.all(jnp.isfinite(z)) & jnp.all(x @ occ > 0.0)
    return Nucleus(X, x, z[m], ok, eq)

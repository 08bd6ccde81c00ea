"""Fixed-assemblage equilibrium: minimise the Gibbs energy at P, T and bulk composition.

Unknowns: the amount n_pi of every end-member i of every phase p (moles of formula unit; a
phase's amount is sum_i n_pi, its composition x_p = n_p / sum_i n_pi) and one Lagrange
multiplier per independent component. At the minimum of G = sum_pi n_pi mu_pi subject to the
mass balance A n = b (closed system), the Karush-Kuhn-Tucker conditions are

    mu_pi(x_p, P, T) / RT - (A^T lambda)_pi = 0     (every end-member on the same chemical-potential plane)
    A n - b = 0                                        (mass balance)

solved by Newton's method on that square system (the Hessian of each phase block is
d(mu/RT)/dn by forward-mode differentiation of that phase alone, :func:`kkt_matrix`; a dense LU solve of the KKT matrix, no inverse,
by :func:`jaxpetro.thermo.linsolve.solve`, which keeps every CPU LAPACK call unbatched: jaxlib 0.10.2's batched one can deadlock the thread pool),
damped so that every site fraction and every solution phase amount stays positive
(fraction-to-the-boundary rule, as in interior-point methods: the logarithms of ideal mixing
are the barrier) and backtracked on the residual norm. RT lambda are the chemical potentials
of the components (J/mol).

Derivatives (w.r.t. P, T, bulk and every model parameter) come from the implicit function
theorem, not from the iterations: after the loop, one more Newton step with the KKT matrix held
constant, z = z* - J(z*)^-1 F(z*, theta) (z* and J under stop_gradient), has the value z* (F = 0)
and the derivative dz/dtheta = -J^-1 dF/dtheta, exact at the solution. It works under jit,
vmap, grad and jvp alike.

Every node has a :class:`~jaxpetro.kernels._status.Status` and a ``reason`` code
(:data:`REASONS`): not converged, non-finite, or a phase whose amount is negative or vanishing
(the assemblage is not stable at that bulk): never a silent number.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from jaxtyping import Array, Float, Int

from jaxpetro.errors import InputError
from jaxpetro.kernels._options import KernelOptions, static, traced
from jaxpetro.kernels._precision import require_float64
from jaxpetro.kernels._status import Status, make_status
from jaxpetro.thermo import linsolve
from jaxpetro.thermo.bulk import COMPONENTS, formula_components
from jaxpetro.thermo.database import EndmemberSet, endmember_set, fluid_set, fluids, formula_of, phase_table
from jaxpetro.thermo.endmembers import R_GAS
from jaxpetro.thermo.solutions import SolutionModel, chemical_potentials, solution_model

__all__ = ["REASONS", "Assemblage", "Equilibrium", "EquilibriumOptions", "Jacobians", "assemblage", "equilibrate",
           "kkt_matrix", "kkt_residual", "phase_volumes", "solve_nodes", "solve_nodes_jacobians", "starting_amounts", "step_to_boundary"]

#: reason codes of a node (``Equilibrium.reason``)
REASONS = {0: "ok", 1: "did not converge", 2: "non-finite value", 3: "a phase amount is negative or zero "
           "(the assemblage is not stable for this bulk at this P-T)"}


class EquilibriumOptions(KernelOptions):
    """Options of the Newton/KKT solve.

    Attributes:
        max_iter: Newton iterations (static).
        max_backtrack: halvings of a step that does not reduce the residual norm (static).
        tol: convergence when max |KKT residual| < tol (chemical potentials in units of RT,
            mass balance in moles).
        boundary: fraction-to-the-boundary factor (a step goes at most this share of the way to a
            zero site fraction or phase amount).
        min_amount: a solution phase with fewer moles than min_amount x total is reported as
            vanishing (reason 3).
    """

    max_iter: int = static(200)
    max_backtrack: int = static(0)
    tol: float = traced(1e-9)
    boundary: float = traced(0.99)
    min_amount: float = traced(1e-7)


class Assemblage(eqx.Module):
    """A fixed assemblage in a given chemical system (host-side structure + JAX arrays).

    Attributes:
        names: phase names (static); kinds: "solution" or "pure" per phase (static).
        slices: (start, stop) of each phase's end-members in the unknown vector n (static).
        endmember_names: every end-member, in order (static).
        models: per phase a :class:`SolutionModel` (solution) or an :class:`EndmemberSet` or a
            :class:`~jaxpetro.thermo.database.FluidSet` (pure; the fluid H2O: a water-saturated
            assemblage, its chemical potential fixed by the pure fluid at P, T).
        A: (r, N) mass-balance matrix in an orthonormal basis of the components present
            (rows = the r independent combinations).
        basis: (r, C) that basis: A = basis @ (component matrix); b = basis @ bulk.
        components: (C, N) moles of each component (:data:`~jaxpetro.thermo.bulk.COMPONENTS`)
            per formula unit of each end-member.
        positivity: (K, N) rows whose products with n must stay positive: the site-species
            amounts and the amount of every solution phase.
        x0: (N,) starting composition (per phase, summing to 1; 1 for a pure phase).
    """

    names: tuple[str, ...] = eqx.field(static=True)
    kinds: tuple[str, ...] = eqx.field(static=True)
    slices: tuple[tuple[int, int], ...] = eqx.field(static=True)
    endmember_names: tuple[str, ...] = eqx.field(static=True)
    models: tuple
    A: Float[Array, "r N"]
    basis: Float[Array, "r C"]
    components: Float[Array, "C N"]
    positivity: Float[Array, "K N"]
    x0: Float[Array, " N"]

    @property
    def size(self) -> int:
        return len(self.endmember_names)

    def phase_of(self, name: str) -> int:
        return self.names.index(name)

    def endmembers_of(self, phase: str) -> tuple[str, ...]:
        a, b = self.slices[self.phase_of(phase)]
        return self.endmember_names[a:b]


def _phase_spec(name: str) -> dict:
    table = phase_table()
    if name not in table:
        raise InputError(f"phase '{name}' is not in the thermodynamic phase table; known phases: "
                         f"{', '.join(sorted(table))}.")
    return table[name]


def assemblage(names: Sequence[str], bulk: Sequence[float] | np.ndarray) -> Assemblage:
    """Build the :class:`Assemblage` of phases ``names`` for the chemical system of ``bulk``
    (component moles, :data:`~jaxpetro.thermo.bulk.COMPONENTS` order).

    End-members that need a component the bulk lacks (spessartine without MnO, Fe3+ end-members
    without excess O, ...) are left out, and so are site species that no remaining end-member
    has. Raises :class:`InputError` for an unknown phase, a phase left without end-members, or a
    bulk the assemblage cannot make (a component no phase holds).
    """
    bulk = np.asarray(bulk, dtype=np.float64)
    if bulk.shape != (len(COMPONENTS),):
        raise InputError(f"the bulk must be {len(COMPONENTS)} component amounts ({', '.join(COMPONENTS)}), "
                         f"got shape {bulk.shape}.")
    bad = [f"{c} = {v:g}" for c, v in zip(COMPONENTS, bulk) if not (np.isfinite(v) and v >= 0)]
    if bad:
        raise InputError(f"the bulk has negative or non-finite component amounts ({', '.join(bad)}); every "
                         f"component must be a finite amount >= 0 (0 or omitted: absent).")
    if not np.any(bulk > 0):
        raise InputError("the bulk composition is all zeros.")
    if len(set(names)) != len(names) or not names:
        raise InputError(f"the assemblage {list(names)} must name each phase once.")
    present = bulk > 1e-12 * bulk.sum()
    kinds, slices, models, em_names, cols, x0, pos_rows = [], [], [], [], [], [], []
    start = 0
    for name in names:
        spec = _phase_spec(name)
        if "endmember" in spec:
            ems = [spec["endmember"]]
        else:
            ems = [e for e in (solution_model(spec["model"]).endmember_names)]
        comp = {e: formula_components(formula_of(e)) for e in ems}
        keep = [e for e in ems if np.all(present | (np.abs(comp[e]) < 1e-12))]
        if not keep:
            missing = [COMPONENTS[k] for k in range(len(COMPONENTS)) if not present[k] and np.abs(comp[ems[0]][k]) > 1e-12]
            raise InputError(f"phase '{name}' cannot form from this bulk: it needs {', '.join(missing)}, which the "
                             f"bulk lacks; remove it from the assemblage or add the component.")
        if "endmember" in spec:
            kinds.append("pure")
            models.append(fluid_set(keep) if keep[0] in fluids() else endmember_set(keep))
            x0.append(np.ones(1))
        else:
            kinds.append("solution")
            m = solution_model(spec["model"], keep=keep)
            models.append(m)
            guess = np.array([float(spec["x0"].get(e, 0.05)) for e in m.endmember_names])
            x0.append(guess / guess.sum())
        slices.append((start, start + len(keep)))
        start += len(keep)
        em_names.extend(keep)
        cols.extend(comp[e] for e in keep)
    N = start
    comps = np.array(cols).T  # (C, N)
    for (a, b), kind, m in zip(slices, kinds, models):
        if kind != "solution":
            continue
        occ = np.asarray(m.occupancy)  # (m, s): site-species amounts are occ^T n_p
        for s in range(occ.shape[1]):
            row = np.zeros(N)
            row[a:b] = occ[:, s]
            pos_rows.append(row)
        row = np.zeros(N)
        row[a:b] = 1.0
        pos_rows.append(row)
    rows = np.flatnonzero(present)
    sub = comps[rows]
    U, sv, _ = np.linalg.svd(sub, full_matrices=False)
    rank = int(np.sum(sv > 1e-10 * sv[0]))
    basis_sub = U[:, :rank].T
    b_sub = bulk[rows]
    resid = b_sub - basis_sub.T @ (basis_sub @ b_sub)
    if np.linalg.norm(resid) > 1e-9 * np.linalg.norm(b_sub):
        worst = [COMPONENTS[rows[k]] for k in np.argsort(-np.abs(resid))[:3] if abs(resid[k]) > 1e-9 * np.linalg.norm(b_sub)]
        raise InputError(f"the assemblage {', '.join(names)} cannot hold this bulk composition: no combination of "
                         f"its phases matches the bulk (most off: {', '.join(worst)}); add a phase for these "
                         f"components or remove them from the bulk.")
    if rank != N and rank > N:  # more independent components than unknowns cannot happen after the check
        raise InputError("the assemblage has fewer end-members than independent components.")
    basis = np.zeros((rank, len(COMPONENTS)))
    basis[:, rows] = basis_sub
    return Assemblage(
        names=tuple(names), kinds=tuple(kinds), slices=tuple(slices), endmember_names=tuple(em_names),
        models=tuple(models), A=jnp.asarray(basis @ comps), basis=jnp.asarray(basis), components=jnp.asarray(comps),
        positivity=jnp.asarray(np.array(pos_rows).reshape(-1, N)), x0=jnp.asarray(np.concatenate(x0)),
    )


def standard_gibbs(system: Assemblage, P, T) -> Float[Array, " N"]:
    """G_i(P, T) of every end-member (J/mol), in the order of the unknowns."""
    return jnp.concatenate([m.endmembers.gibbs(P, T) if kind == "solution" else m.gibbs(P, T)
                            for kind, m in zip(system.kinds, system.models)])


def _mu(system: Assemblage, n: Float[Array, " N"], P, T, g=None) -> Float[Array, " N"]:
    """Chemical potential of every end-member (J/mol) at amounts n (``g``: precomputed
    :func:`standard_gibbs`, which does not depend on n: the Newton loop computes it once)."""
    g = standard_gibbs(system, P, T) if g is None else g
    out = []
    for (a, b), kind, m in zip(system.slices, system.kinds, system.models):
        if kind == "pure":
            out.append(g[a:b])
        else:
            npp = n[a:b]
            out.append(chemical_potentials(m, npp / jnp.sum(npp), P, T, g[a:b]))
    return jnp.concatenate(out)


def kkt_residual(system: Assemblage, z: Float[Array, " M"], P, T, bulk: Float[Array, " C"], g=None) -> Float[Array, " M"]:
    """F(z) = [mu/RT - A^T lambda, A n - basis b] with z = [n, lambda] (dimensionless, moles)."""
    N = system.size
    n, lam = z[:N], z[N:]
    f1 = _mu(system, n, P, T, g) / (R_GAS * T) - system.A.T @ lam
    f2 = system.A @ n - system.basis @ bulk
    return jnp.concatenate([f1, f2])


def kkt_matrix(system: Assemblage, z: Float[Array, " M"], P, T, g=None) -> Float[Array, "M M"]:
    """dF/dz of :func:`kkt_residual`: [[H, -A^T], [A, 0]] with H the block-diagonal d(mu/RT)/dn
    (one block per solution phase, forward mode on that phase's amounts only; a pure phase's mu
    does not depend on n). Cheaper than differentiating F in all M directions: the lambda and
    mass-balance blocks are constant and the phases do not interact."""
    g = standard_gibbs(system, P, T) if g is None else g
    N = system.size
    n = z[:N]
    blocks = []
    for (a, b), kind, m in zip(system.slices, system.kinds, system.models):
        if kind == "pure":
            blocks.append(jnp.zeros((b - a, b - a), dtype=z.dtype))
        else:
            ga = g[a:b]
            blocks.append(jax.jacfwd(lambda npp, m=m, ga=ga: chemical_potentials(m, npp / jnp.sum(npp), P, T, ga))(n[a:b]))
    H = jax.scipy.linalg.block_diag(*blocks) / (R_GAS * T)
    r = system.A.shape[0]
    return jnp.block([[H, -system.A.T], [system.A, jnp.zeros((r, r), dtype=z.dtype)]])


def starting_amounts(system: Assemblage, bulk: Float[Array, " C"]) -> Float[Array, " N"]:
    """End-member amounts with the starting compositions x0 and phase amounts from a least-squares
    fit of the bulk (clipped to at least 2 % of the largest, so that every phase starts present)."""
    cols = []
    for a, b in system.slices:
        vec = jnp.zeros(system.size, dtype=jnp.float64).at[a:b].set(system.x0[a:b])
        cols.append(vec)
    X = jnp.stack(cols, axis=1)  # (N, p): unit amount of each phase at x0
    M = system.A @ X  # (r, p)
    amounts = jnp.linalg.lstsq(M, system.basis @ bulk)[0]
    amounts = jnp.maximum(amounts, 0.02 * jnp.max(amounts))
    return X @ amounts


class _Loop(NamedTuple):
    z: Array
    f: Array  # the residual at z (the accepted trial's: not evaluated twice)
    fnorm: Array
    it: Array


def step_to_boundary(rows, drows, boundary):
    """Largest step in (0, 1] along ``drows`` keeping every (positive) row amount ``rows`` above
    (1 - boundary) of its value: the fraction-to-the-boundary rule of interior-point methods."""
    shrinking = drows < 0.0
    ratio = jnp.where(shrinking, -rows / jnp.where(shrinking, drows, -1.0), jnp.inf)
    return jnp.minimum(1.0, boundary * jnp.min(ratio, initial=jnp.inf))


def _max_step(system: Assemblage, n, dn, boundary):
    """Largest step in (0, 1] keeping every positivity row above (1 - boundary) of its value."""
    return step_to_boundary(system.positivity @ n, system.positivity @ dn, boundary)


def _newton(system: Assemblage, z0, P, T, bulk, opts: EquilibriumOptions) -> _Loop:
    N = system.size
    g = standard_gibbs(system, P, T)  # once: the end-member terms do not depend on the amounts

    def F(z):
        return kkt_residual(system, z, P, T, bulk, g)

    def norm(f):
        return jnp.max(jnp.abs(f))

    def cond(s: _Loop):
        return (s.it < opts.max_iter) & (s.fnorm > opts.tol) & jnp.isfinite(s.fnorm)

    def body(s: _Loop):
        J = kkt_matrix(system, s.z, P, T, g)
        dz = linsolve.solve(J, -s.f)  # not jnp.linalg.solve: see jaxpetro.thermo.linsolve
        alpha0 = _max_step(system, s.z[:N], dz[:N], opts.boundary)

        # backtracking on the residual norm, unrolled (a nested while_loop doubles compile time)
        alpha = alpha0
        f_new = F(s.z + alpha0 * dz)
        fn = norm(f_new)
        for _ in range(opts.max_backtrack):
            worse = ~(fn < (1.0 - 1e-4 * alpha) * s.fnorm)
            trial = jnp.where(worse, 0.5 * alpha, alpha)
            f_new = jnp.where(worse, F(s.z + trial * dz), f_new)
            fn = norm(f_new)
            alpha = trial
        return _Loop(s.z + alpha * dz, f_new, fn, s.it + 1)

    f0 = F(z0)
    return jax.lax.while_loop(cond, body, _Loop(z0, f0, norm(f0), jnp.asarray(0, dtype=jnp.int32)))


class Equilibrium(eqx.Module):
    """The equilibrium at one node (fields batch under vmap).

    Attributes:
        n: (N,) end-member amounts (mol of formula unit, for the bulk's moles).
        x: (N,) molar end-member fractions per phase (1 for a pure phase).
        amounts: (p,) moles of each phase (formula units).
        mu: (N,) chemical potentials of the end-members (J/mol).
        component_mu: (C,) chemical potentials of the components present (J/mol; the plane RT basis^T lambda).
        residual: max |KKT residual| at the end.
        status: the solver :class:`Status`; reason: int code of :data:`REASONS`.
    """

    n: Float[Array, "*b N"]
    x: Float[Array, "*b N"]
    amounts: Float[Array, "*b p"]
    mu: Float[Array, "*b N"]
    component_mu: Float[Array, "*b C"]
    residual: Float[Array, "*b"]
    status: Status
    reason: Int[Array, "*b"]

    @property
    def ok(self):
        return self.reason == 0


def equilibrate(system: Assemblage, P, T, bulk, n0=None, options: EquilibriumOptions | None = None) -> Equilibrium:
    """Equilibrium of ``system`` at pressure ``P`` (Pa), temperature ``T`` (K) and bulk ``bulk``
    (component moles), optionally starting from end-member amounts ``n0`` (a neighbouring
    solution). Differentiable in P, T, bulk and the model parameters (implicit function theorem;
    see the module docstring). jit/vmap it over nodes."""
    require_float64("thermo.equilibrate")
    opts = options or EquilibriumOptions()
    P = jnp.asarray(P, dtype=jnp.float64)
    T = jnp.asarray(T, dtype=jnp.float64)
    bulk = jnp.asarray(bulk, dtype=jnp.float64)
    N = system.size
    n_start = starting_amounts(system, jax.lax.stop_gradient(bulk)) if n0 is None else jnp.asarray(n0, jnp.float64)
    n_start = jax.lax.stop_gradient(n_start)
    frozen = jax.lax.stop_gradient((system, P, T, bulk))
    g_frozen = standard_gibbs(*frozen[:3])
    mu0 = _mu(frozen[0], n_start, frozen[1], frozen[2], g_frozen) / (R_GAS * frozen[2])
    lam0 = linsolve.solve(system.A @ system.A.T, system.A @ mu0)
    z0 = jax.lax.stop_gradient(jnp.concatenate([n_start, lam0]))
    loop = _newton(*frozen[:1], z0, *frozen[1:], opts)
    z_star = jax.lax.stop_gradient(loop.z)
    J = jax.lax.stop_gradient(kkt_matrix(frozen[0], z_star, frozen[1], frozen[2], g_frozen))
    g = standard_gibbs(system, P, T)
    z = z_star - linsolve.solve(J, kkt_residual(system, z_star, P, T, bulk, g))  # the implicit-differentiation step
    n, lam = z[:N], z[N:]
    amounts = jnp.stack([jnp.sum(n[a:b]) for a, b in system.slices])
    x = jnp.concatenate([n[a:b] / jnp.sum(n[a:b]) for a, b in system.slices])
    mu = _mu(system, n, P, T, g)
    finite = jnp.all(jnp.isfinite(z)) & jnp.isfinite(loop.fnorm)
    converged = loop.fnorm <= opts.tol
    status = make_status(converged, finite, loop.it)
    vanishing = jnp.any(amounts <= opts.min_amount * jnp.sum(jnp.abs(amounts)))
    reason = jnp.where(~finite, 2, jnp.where(~converged, 1, jnp.where(vanishing, 3, 0))).astype(jnp.int32)
    return Equilibrium(n=n, x=x, amounts=amounts, mu=mu, component_mu=R_GAS * T * (system.basis.T @ lam),
                       residual=loop.fnorm, status=status, reason=reason)


def phase_volumes(system: Assemblage, eq: Equilibrium, P, T) -> Float[Array, " p"]:
    """Volume of each phase (m^3 for the bulk's moles): n . dmu/dP (partial molar volumes)."""
    v = jax.jacfwd(lambda pp: _mu(system, eq.n, pp, T))(jnp.asarray(P, dtype=jnp.float64))
    return jnp.stack([jnp.dot(eq.n[a:b], v[a:b]) for a, b in system.slices])


class Jacobians(eqx.Module):
    """Derivatives of an equilibrium w.r.t. its conditions (implicit function theorem; batched
    over nodes like :class:`Equilibrium`).

    Attributes:
        x_P, x_T: (N,) d x / d P [1/Pa] and d x / d T [1/K] of every end-member fraction.
        x_bulk: (N, C) d x / d bulk [1/mol of component].
        amounts_P, amounts_T: (p,) d(phase moles) / d P [mol/Pa], / d T [mol/K].
        amounts_bulk: (p, C) d(phase moles) / d bulk [mol/mol].
    """

    x_P: Float[Array, "*b N"]
    x_T: Float[Array, "*b N"]
    x_bulk: Float[Array, "*b N C"]
    amounts_P: Float[Array, "*b p"]
    amounts_T: Float[Array, "*b p"]
    amounts_bulk: Float[Array, "*b p C"]


def _equilibrate_with_jacobians(system: Assemblage, P, T, bulk, n0, options) -> tuple[Equilibrium, Jacobians]:
    def f(p, t, b):
        eq = equilibrate(system, p, t, b, n0, options)
        return (eq.x, eq.amounts), eq

    (dx, da), eq = jax.jacfwd(f, argnums=(0, 1, 2), has_aux=True)(P, T, bulk)
    return eq, Jacobians(x_P=dx[0], x_T=dx[1], x_bulk=dx[2], amounts_P=da[0], amounts_T=da[1], amounts_bulk=da[2])


@functools.partial(jax.jit, static_argnames="jacobians")
def _solve_nodes(system: Assemblage, P, T, bulk, n0, options: EquilibriumOptions, jacobians: bool = False):
    if jacobians:
        return jax.vmap(lambda p, t, b, n: _equilibrate_with_jacobians(system, p, t, b, n, options))(P, T, bulk, n0)
    return jax.vmap(lambda p, t, b, n: equilibrate(system, p, t, b, n, options))(P, T, bulk, n0)


def _solve(system: Assemblage, P, T, bulk, n0, options, retries: int, jacobians: bool):
    opts = options or EquilibriumOptions()
    P = jnp.atleast_1d(jnp.asarray(P, dtype=jnp.float64))
    T = jnp.atleast_1d(jnp.asarray(T, dtype=jnp.float64))
    nodes = P.shape[0]
    if T.shape != (nodes,):
        raise InputError(f"P and T must be 1-D arrays of the same length (got {P.shape} and {T.shape}).")
    bulk = jnp.asarray(bulk, dtype=jnp.float64)
    bulk = jnp.broadcast_to(bulk, (nodes, bulk.shape[-1])) if bulk.ndim == 1 else bulk
    if n0 is None:
        n0 = jax.vmap(lambda b: starting_amounts(system, b))(bulk)
    n0 = jnp.broadcast_to(jnp.asarray(n0, dtype=jnp.float64), (nodes, system.size))
    out = _solve_nodes(system, P, T, bulk, n0, opts, jacobians)
    eq = out[0] if jacobians else out
    pt = np.stack([np.asarray(P) / 1e8, np.asarray(T) / 10.0], axis=1)  # ~kbar and 10 K: comparable steps
    for _ in range(retries):
        # every pass solves all nodes (one compiled shape): converged ones from themselves (a
        # Newton step or none), failed ones from their nearest converged neighbour
        ok = np.asarray(eq.reason == 0) | np.asarray(eq.reason == 3)
        if ok.all() or not ok.any():
            break
        good = np.flatnonzero(ok)
        d = np.linalg.norm(pt[:, None, :] - pt[None, good, :], axis=2)
        start = np.asarray(eq.n)[good[np.argmin(d, axis=1)]]
        start[ok] = np.asarray(eq.n)[ok]
        again = _solve_nodes(system, P, T, bulk, jnp.asarray(start), opts, jacobians)
        keep = jnp.asarray(ok)
        out = jax.tree_util.tree_map(lambda a, b: jnp.where(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), out, again)
        eq = out[0] if jacobians else out
    return out


def solve_nodes(system: Assemblage, P, T, bulk, n0=None, options: EquilibriumOptions | None = None,
                retries: int = 2) -> Equilibrium:
    """Equilibria at many nodes in one compiled, vmapped call: ``P`` (Pa), ``T`` (K) of shape
    (n,), ``bulk`` (C,) or (n, C). Every node starts from ``n0`` ((N,) or (n, N); default: the
    least-squares start of :func:`starting_amounts` for its bulk); nodes that fail are retried
    from the solution at their nearest converged node (``retries`` passes, the same compiled
    program). The system and the options are arguments, so another bulk of the same chemical
    system, or another tolerance, reuses the compiled program."""
    return _solve(system, P, T, bulk, n0, options, retries, False)


def solve_nodes_jacobians(system: Assemblage, P, T, bulk, n0=None, options: EquilibriumOptions | None = None,
                          retries: int = 2) -> tuple[Equilibrium, Jacobians]:
    """:func:`solve_nodes` plus the :class:`Jacobians` of every node's compositions and phase
    amounts w.r.t. P, T and the bulk (forward mode through the implicit-differentiation step;
    the Newton iterations are not differentiated)."""
    return _solve(system, P, T, bulk, n0, options, retries, True)

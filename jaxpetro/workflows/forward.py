"""``jaxpetro forward``: a garnet forward table from the built-in thermodynamic model.

For one bulk composition and one fixed assemblage, solves the Gibbs minimisation
(:mod:`jaxpetro.thermo.equilibrium`: Holland & Powell 2011 ds62 end-members, White et al. 2014
metapelite solutions, Holland & Powell 2003 feldspar) at every node of a P-T grid in one
compiled, vmapped call, with the implicit derivatives of every node. Writes:

* ``forward.csv``: ``P_kbar, T_C, X_alm, X_prp, X_grs, X_sps`` (X_prp = py + kho, the four
  summing to 1), ``mode_<phase>`` (volume fraction of each phase) and ``status`` (``ok``,
  ``not_converged``, ``nonfinite``, ``phase_absent``); X and modes are empty at a node whose
  status is not ``ok``, so the file is a ``jaxpetro ptpath`` forward table as it stands
  (:func:`jaxpetro.io.perplex.read_table`);
* ``forward.h5``: every phase's end-member fractions and moles, the chemical potentials of the
  end-members and the components, phase volumes, status/reason/iterations/residual per node,
  and the Jacobians of the end-member fractions and phase moles w.r.t. P, T and the bulk;
  with ``sensitivity``, ``sensitivity/`` holds d(X)/d(oxide wt%) per node and its summary;
* ``sensitivity.csv`` (with ``sensitivity``): per oxide, the median |dX/d wt%| and
  |dX/d ln wt| over the converged nodes;
* ``forward.png``: garnet isopleths (X_alm, X_prp, X_grs, X_sps) over the grid, failed nodes marked.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro._precision import float64
from jaxpetro.config import config_to_yaml
from jaxpetro.config.forward import ForwardConfig
from jaxpetro.errors import ConvergenceError, InputError
from jaxpetro.io.plots import save_figure, subplots
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.thermo import equilibrium as eqm
from jaxpetro.thermo.bulk import COMPONENTS, MOLAR_MASS, components_from_elements, components_from_wt
from jaxpetro.thermo.growth import GARNET_COLUMNS, garnet_fractions
from jaxpetro.workflows.stages import Stages

__all__ = ["STATUS_NAMES", "Table", "node_axes", "run"]

#: the status column's word for each reason code of jaxpetro.thermo.equilibrium.REASONS
STATUS_NAMES = {0: "ok", 1: "not_converged", 2: "nonfinite", 3: "phase_absent"}


def node_axes(config: ForwardConfig) -> tuple[np.ndarray, np.ndarray]:
    """The P (kbar) and T (°C) nodes of ``grid``: min, min + step, ... while <= max."""
    out = []
    for lo, hi, step in (config.grid.P_kbar, config.grid.T_C):
        n = math.floor((hi - lo) / step + 1e-9) + 1
        out.append(lo + step * np.arange(n))
    return out[0], out[1]


class Inputs(NamedTuple):
    """The set-up stage: the bulk (component moles), its 100-g wt% scale, the system, the nodes."""

    bulk: np.ndarray
    wt_scale: float
    system: eqm.Assemblage
    P_kbar: np.ndarray
    T_C: np.ndarray


class Table(NamedTuple):
    """The solve stage, flattened P-major over the grid (node k = (i, j), k = i * nT + j).

    Attributes:
        eq: every node's :class:`~jaxpetro.thermo.equilibrium.Equilibrium`.
        jac: its :class:`~jaxpetro.thermo.equilibrium.Jacobians`.
        X: (nodes, 4) garnet X_alm, X_prp, X_grs, X_sps (NaN where status is not ok).
        dX_dP, dX_dT: (nodes, 4) their derivatives (1/kbar, 1/K); dX_dbulk: (nodes, 4, C) per mol.
        volumes: (nodes, p) phase volumes (m^3 per bulk), modes: (nodes, p) volume fractions.
    """

    eq: eqm.Equilibrium
    jac: eqm.Jacobians
    X: np.ndarray
    dX_dP: np.ndarray
    dX_dT: np.ndarray
    dX_dbulk: np.ndarray
    volumes: np.ndarray
    modes: np.ndarray


def _setup(config: ForwardConfig) -> Inputs:
    if config.bulk.oxides_wt:
        bulk = components_from_wt(dict(config.bulk.oxides_wt), where="bulk.oxides_wt")
        scale = 1.0  # dX/d wt% as given: b = wt / M exactly
    else:
        bulk = components_from_elements(dict(config.bulk.elements_mol), where="bulk.elements_mol")
        # as wt% of the same rock normalised to 100 g: X is homogeneous of degree 0 in the bulk
        scale = float(sum(bulk[k] * MOLAR_MASS[c] for k, c in enumerate(COMPONENTS))) / 100.0
    system = eqm.assemblage(list(config.assemblage), bulk)
    if "g" not in system.names:  # the schema checks this too; a library caller may skip it
        raise InputError("the assemblage has no garnet 'g'.")
    P, T = node_axes(config)
    return Inputs(bulk, scale, system, P, T)


@jax.jit
def _garnet(system: eqm.Assemblage, x, x_P, x_T, x_bulk):
    """X (4,) of every node and its derivatives by the chain rule through garnet_fractions."""
    def one(x, xp, xt, xb):
        X, dP = jax.jvp(lambda v: garnet_fractions(system, v), (x,), (xp,))
        _, dT = jax.jvp(lambda v: garnet_fractions(system, v), (x,), (xt,))
        dB = jax.vmap(lambda t: jax.jvp(lambda v: garnet_fractions(system, v), (x,), (t,))[1], in_axes=1, out_axes=1)(xb)
        return X, dP, dT, dB

    return jax.vmap(one)(x, x_P, x_T, x_bulk)


@jax.jit
def _volumes(system: eqm.Assemblage, eq: eqm.Equilibrium, P, T):
    return jax.vmap(lambda e, p, t: eqm.phase_volumes(system, e, p, t))(eq, P, T)


def _solve(config: ForwardConfig, inputs: Inputs) -> Table:
    PP, TT = np.meshgrid(inputs.P_kbar, inputs.T_C, indexing="ij")
    P = jnp.asarray(PP.ravel() * 1e8)  # kbar -> Pa
    T = jnp.asarray(TT.ravel() + 273.15)  # degC -> K
    s = config.solver
    opts = eqm.EquilibriumOptions(max_iter=s.max_iter, tol=s.tol, min_amount=s.min_amount)
    eq, jac = eqm.solve_nodes_jacobians(inputs.system, P, T, jnp.asarray(inputs.bulk), options=opts, retries=s.retries)
    X, dP, dT, dB = (np.asarray(a) for a in _garnet(inputs.system, eq.x, jac.x_P, jac.x_T, jac.x_bulk))
    ok = np.asarray(eq.reason) == 0
    X = np.where(ok[:, None], X, np.nan)
    vol = np.asarray(_volumes(inputs.system, eq, P, T))
    with np.errstate(invalid="ignore", divide="ignore"):
        modes = np.where(ok[:, None], vol / vol.sum(axis=1, keepdims=True), np.nan)
    return Table(eq, jac, X, dP * 1e8, dT, dB, vol, modes)


def _sensitivity(config: ForwardConfig, inputs: Inputs, table: Table) -> dict:
    """d X / d(oxide wt%) per node and the oxides that move X most (median over ok nodes)."""
    mass = np.array([MOLAR_MASS[c] for c in COMPONENTS])
    dX_dwt = table.dX_dbulk * inputs.wt_scale / mass  # (nodes, 4, C): per wt% of each oxide
    wt = inputs.bulk * mass / inputs.wt_scale  # the bulk as wt% (100 g basis for an element bulk)
    dX_dlnwt = dX_dwt * wt  # per unit relative change (x 0.01: per 1 % relative)
    ok = np.asarray(table.eq.reason) == 0
    present = inputs.bulk > 0
    med_abs = np.median(np.abs(dX_dwt[ok]), axis=0) if ok.any() else np.full(dX_dwt.shape[1:], np.nan)
    med_rel = np.median(np.abs(dX_dlnwt[ok]), axis=0) if ok.any() else np.full(dX_dwt.shape[1:], np.nan)
    top = {}
    for i, name in enumerate(GARNET_COLUMNS):
        rel = np.where(present, med_rel[i], -np.inf)
        ab = np.where(present, med_abs[i], -np.inf)
        top[name] = {"per_wt": COMPONENTS[int(np.argmax(ab))], "per_relative": COMPONENTS[int(np.argmax(rel))]}
    return {"dX_dwt": dX_dwt, "dX_dlnwt": dX_dlnwt, "wt": wt, "median_abs_dX_dwt": med_abs,
            "median_abs_dX_dlnwt": med_rel, "top": top}


def _write(out: Path, config: ForwardConfig, inputs: Inputs, table: Table, sens: dict | None) -> None:
    system, eq, jac = inputs.system, table.eq, table.jac
    PP, TT = np.meshgrid(inputs.P_kbar, inputs.T_C, indexing="ij")
    reason = np.asarray(eq.reason)
    phases = system.names
    header = ["P_kbar", "T_C", *GARNET_COLUMNS, *(f"mode_{p}" for p in phases), "status"]
    rows = []
    for k, (p, t) in enumerate(zip(PP.ravel(), TT.ravel())):
        ok = reason[k] == 0
        cells = [float(v) for v in table.X[k]] + [float(v) for v in table.modes[k]]
        rows.append([round(float(p), 10), round(float(t), 10), *(c if ok else "" for c in cells),
                     STATUS_NAMES[int(reason[k])]])
    write_csv(out / "forward.csv", header, rows)

    ems = system.endmember_names
    datasets = {
        "P_kbar": inputs.P_kbar, "T_C": inputs.T_C, "node_P_kbar": PP.ravel(), "node_T_C": TT.ravel(),
        "bulk_mol": inputs.bulk, "components": list(COMPONENTS), "phases": list(phases),
        "endmembers": list(ems), "endmember_phase": [phases[i] for i, (a, b) in enumerate(system.slices)
                                                     for _ in range(b - a)],
        "garnet": {"columns": list(GARNET_COLUMNS), "X": table.X, "dX_dP": table.dX_dP, "dX_dT": table.dX_dT,
                   "dX_dbulk": table.dX_dbulk},
        "x": np.asarray(eq.x), "n": np.asarray(eq.n), "phase_moles": np.asarray(eq.amounts),
        "phase_volume": table.volumes, "modes": table.modes,
        "mu": np.asarray(eq.mu), "component_mu": np.asarray(eq.component_mu),
        "status": {"reason": reason, "name": [STATUS_NAMES[int(r)] for r in reason],
                   "iterations": np.asarray(eq.status.iterations), "residual": np.asarray(eq.residual)},
        "jacobian": {"x_P": np.asarray(jac.x_P) * 1e8, "x_T": np.asarray(jac.x_T), "x_bulk": np.asarray(jac.x_bulk),
                     "phase_moles_P": np.asarray(jac.amounts_P) * 1e8, "phase_moles_T": np.asarray(jac.amounts_T),
                     "phase_moles_bulk": np.asarray(jac.amounts_bulk)},
    }
    units = {
        "P_kbar": "kbar", "node_P_kbar": "kbar", "T_C": "degC", "node_T_C": "degC", "bulk_mol": "mol",
        "components": "", "phases": "", "endmembers": "", "endmember_phase": "", "garnet/columns": "",
        "garnet/X": "1", "garnet/dX_dP": "1/kbar", "garnet/dX_dT": "1/K", "garnet/dX_dbulk": "1/mol",
        "x": "1", "n": "mol", "phase_moles": "mol", "phase_volume": "m^3", "modes": "1",
        "mu": "J/mol", "component_mu": "J/mol", "status/reason": "1", "status/name": "",
        "status/iterations": "1", "status/residual": "1",
        "jacobian/x_P": "1/kbar", "jacobian/x_T": "1/K", "jacobian/x_bulk": "1/mol",
        "jacobian/phase_moles_P": "mol/kbar", "jacobian/phase_moles_T": "mol/K", "jacobian/phase_moles_bulk": "mol/mol",
    }
    if sens is not None:
        datasets["sensitivity"] = {"dX_dwt": sens["dX_dwt"], "dX_dlnwt": sens["dX_dlnwt"], "wt": sens["wt"],
                                   "median_abs_dX_dwt": sens["median_abs_dX_dwt"],
                                   "median_abs_dX_dlnwt": sens["median_abs_dX_dlnwt"],
                                   "top_per_wt": [sens["top"][c]["per_wt"] for c in GARNET_COLUMNS],
                                   "top_per_relative": [sens["top"][c]["per_relative"] for c in GARNET_COLUMNS]}
        units.update({"sensitivity/dX_dwt": "1/wt%", "sensitivity/dX_dlnwt": "1", "sensitivity/wt": "wt%",
                      "sensitivity/median_abs_dX_dwt": "1/wt%", "sensitivity/median_abs_dX_dlnwt": "1",
                      "sensitivity/top_per_wt": "", "sensitivity/top_per_relative": ""})
        header_s = ["oxide", "wt", *(f"median_abs_d{c}_dwt" for c in GARNET_COLUMNS),
                    *(f"median_abs_d{c}_dlnwt" for c in GARNET_COLUMNS)]
        rows_s = [[c, round(float(sens["wt"][k]), 10), *(float(v) for v in sens["median_abs_dX_dwt"][:, k]),
                   *(float(v) for v in sens["median_abs_dX_dlnwt"][:, k])]
                  for k, c in enumerate(COMPONENTS) if inputs.bulk[k] > 0]
        write_csv(out / "sensitivity.csv", header_s, rows_s)
    write_hdf5(out / "forward.h5", datasets, attrs={**run_attrs(config_to_yaml(config), 0),
                                                   "grid_order": "P-major: node k = i_P * n_T + i_T"}, units=units)
    if config.output.plots:
        _figure(out / "forward.png", inputs, table, config.output.dpi)


def _figure(path: Path, inputs: Inputs, table: Table, dpi: int) -> None:
    """Four panels of garnet isopleths over the P-T grid; nodes that are not ok marked with x."""
    nP, nT = len(inputs.P_kbar), len(inputs.T_C)
    fig, axes = subplots(2, 2, figsize=(9.5, 7.5), layout="constrained", sharex=True, sharey=True)
    reason = np.asarray(table.eq.reason).reshape(nP, nT)
    TT, PP = np.meshgrid(inputs.T_C, inputs.P_kbar)
    for i, (ax, name) in enumerate(zip(axes.ravel(), GARNET_COLUMNS)):
        Z = table.X[:, i].reshape(nP, nT)
        finite = np.isfinite(Z)
        if finite.sum() >= 4 and np.nanmax(Z) > np.nanmin(Z):
            pc = ax.pcolormesh(TT, PP, np.ma.masked_invalid(Z), shading="nearest", cmap="viridis")
            fig.colorbar(pc, ax=ax, label=name)
            if nP >= 2 and nT >= 2:
                levels = np.unique(np.round(np.linspace(np.nanmin(Z), np.nanmax(Z), 9)[1:-1], 4))
                try:
                    cs = ax.contour(TT, PP, np.ma.masked_invalid(Z), levels=levels, colors="white", linewidths=0.8)
                    ax.clabel(cs, fmt="%.3f", fontsize=7)
                except ValueError:  # too few finite nodes for contours
                    pass
        bad = reason != 0
        if bad.any():
            ax.plot(TT[bad], PP[bad], "x", color="red", ms=4, label="no solution / phase absent")
            ax.legend(loc="upper left", fontsize=7)
        ax.set_title(f"garnet {name}")
    for ax in axes[1]:
        ax.set_xlabel("T (°C)")
    for ax in axes[:, 0]:
        ax.set_ylabel("P (kbar)")
    fig.suptitle(f"fixed assemblage {'-'.join(inputs.system.names)}")
    save_figure(fig, path, dpi=dpi)


@float64
def run(config: ForwardConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the workflow; returns a summary (nodes, converged, status counts, X ranges, timings)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(total=3 + int(config.sensitivity), desc="forward", quiet=quiet)
    with stages.stage("setup", "bulk and assemblage"):
        inputs = _setup(config)
    n_nodes = len(inputs.P_kbar) * len(inputs.T_C)
    with stages.stage("solve", f"{n_nodes} equilibria (compiling first)"):
        table = _solve(config, inputs)
    reason = np.asarray(table.eq.reason)
    if not np.any(reason == 0):
        counts = ", ".join(f"{STATUS_NAMES[r]}: {int((reason == r).sum())}" for r in np.unique(reason))
        raise ConvergenceError(f"no node of the grid has a stable {'-'.join(inputs.system.names)} assemblage for this "
                               f"bulk ({counts}); check the bulk composition and the assemblage (a phase that needs a "
                               f"component the bulk barely has is often the one missing).")
    sens = None
    if config.sensitivity:
        with stages.stage("sensitivity"):
            sens = _sensitivity(config, inputs, table)
    with stages.stage("write", "writing"):
        _write(out, config, inputs, table, sens)
    stages.close()
    summary = {
        "nodes": n_nodes, "ok": int((reason == 0).sum()),
        "status": {STATUS_NAMES[int(r)]: int((reason == r).sum()) for r in np.unique(reason)},
        "X_range": {c: [float(np.nanmin(table.X[:, i])), float(np.nanmax(table.X[:, i]))]
                    for i, c in enumerate(GARNET_COLUMNS)},
        "timings": dict(stages.timings),
    }
    if sens is not None:
        summary["sensitivity_top"] = sens["top"]
    if not quiet:
        _report(summary)
    return summary


def _report(summary: dict) -> None:
    print(f"forward: {summary['ok']} of {summary['nodes']} nodes ok "
          f"({', '.join(f'{k}: {v}' for k, v in summary['status'].items())}); solve {summary['timings']['solve']:.1f} s",
          file=sys.stderr)
    for c, (lo, hi) in summary["X_range"].items():
        print(f"  {c}: {lo:.4f} - {hi:.4f}", file=sys.stderr)
    for c, top in summary.get("sensitivity_top", {}).items():
        print(f"  {c} moves most with {top['per_wt']} per wt%, with {top['per_relative']} per relative change",
              file=sys.stderr)

"""``jaxpetro isocon``: mass transfer from whole-rock analyses (classical and sparse isocon).

Reads a whole-rock CSV (:mod:`jaxpetro.io.wholerock`), builds the log-ratio data of every
altered sample against the protolith (the mean of the ``reference`` samples), then either
uses the named immobile elements (``method: classical``, Grant 1986) or selects them with the
sparse isocon (:func:`jaxpetro.models.massbalance.select`, Kuwatani et al. 2020), refits the
isocon slopes, and draws intervals from a parametric bootstrap over the analytical errors
(docs/isocon.md, docs/science.md).
Writes:

* ``isocon.csv``: sample, mass_ratio, mass_ratio_lo, mass_ratio_hi, n_immobile, mass_change,
  chi2_p, mass_ratio_grant_linear, birge_ratio (and volume_ratio when densities are given);
* ``transfer.csv``: sample, element, relative_change, relative_change_lo, relative_change_hi,
  immobile, delta_c, unit, imputed;
* ``imputed.csv``: every value that was imputed (below detection / zero / not analysed);
* ``isocon.h5``: inputs, the path (λ, B, criterion), the selection, the Monte-Carlo
  replicates, the sensitivity (Jacobian of the mass ratios w.r.t. the concentrations);
* ``isocon.png`` (one isocon diagram per sample), ``path.png`` (sparse), ``transfer.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro._precision import float64
from jaxpetro.config import config_to_yaml
from jaxpetro.config.isocon import IsoconConfig
from jaxpetro.errors import ConvergenceError, InputError
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.io.wholerock import STATUS_NAMES, WholeRockTable, read_wholerock
from jaxpetro.models import massbalance as mb
from jaxpetro.workflows.stages import Stages

__all__ = ["run", "run_demo"]


class Inputs(NamedTuple):
    """The read stage: the table, its imputed values and the log-ratio data.

    Attributes:
        table: the validated whole-rock table (ppm).
        imputed: values ready for the logarithm and their log-space errors (all samples).
        reference: row indices of the protolith samples.
        altered: row indices of the altered samples.
        data: log concentrations of the altered samples and the protolith.
        protolith: protolith composition (G,), ppm.
        y: log ratios (G, S).
        w: their weights (G, S).
    """

    table: WholeRockTable
    imputed: mb.Imputed
    reference: list[int]
    altered: list[int]
    data: mb.LogData
    protolith: np.ndarray
    y: jax.Array
    w: jax.Array

    @property
    def elements(self) -> tuple[str, ...]:
        return self.table.elements

    @property
    def altered_names(self) -> list[str]:
        return [self.table.samples[i] for i in self.altered]


class Fit(NamedTuple):
    """The fit stage: the immobile set, the sparse selection (None for classical), the point results.

    Attributes:
        immobile: (G, S) immobile entries.
        selection: the sparse selection (None for classical).
        summary: point results of the log-ratio isocon on ``immobile``.
        weights: (G,) group weights of the penalty (prior resistance to moving; ones if none).
        grant_slope: (S,) Grant's (1986) linear isocon slope through the origin on ``immobile``.
    """

    immobile: jax.Array
    selection: mb.Selection | None
    summary: mb.Summary
    weights: np.ndarray
    grant_slope: np.ndarray


def _read(config: IsoconConfig) -> Inputs:
    """Read, check and impute the table; build the log-ratio data."""
    table = read_wholerock(config.data, config.units, config.exclude)
    where = f"{table.path}"
    unknown = [r for r in config.reference if r not in table.samples]
    if unknown:
        raise InputError(f"reference sample(s) {', '.join(unknown)} not found in {where}; its samples are "
                         f"{', '.join(table.samples)}. Fix the 'reference' key.")
    ref_idx = [table.samples.index(r) for r in dict.fromkeys(config.reference)]
    alt_idx = [i for i in range(len(table.samples)) if i not in ref_idx]
    if not alt_idx:
        raise InputError(f"every sample of {where} is a reference; there is no altered sample to compare.")
    bad_rho = [k for k in config.densities if k not in table.samples]
    if bad_rho:
        raise InputError(f"'densities' names sample(s) {', '.join(bad_rho)} that are not in {where}.")
    if config.densities and not all(table.samples[i] in config.densities for i in ref_idx + alt_idx):
        missing = [table.samples[i] for i in ref_idx + alt_idx if table.samples[i] not in config.densities]
        raise InputError(f"'densities' gives no density for {', '.join(missing)}; give every sample one, or none.")
    try:
        imp = mb.impute(table.values, table.status, table.limit, table.sd, config.relative_error,
                        config.below_detection_sd)
    except ValueError as err:
        col = table.elements[err.args[0]]
        raise InputError(f"{where}: column '{col}' has no measured value in any sample; exclude it "
                         f"('exclude: [{col}]').") from None
    data, ref_vals = mb.log_data(imp.values, imp.sd_log, ref_idx, alt_idx)
    y, w = mb.log_ratios(data)
    return Inputs(table, imp, ref_idx, alt_idx, data, ref_vals, y, w)


def _fit(config: IsoconConfig, inputs: Inputs) -> Fit:
    """The immobile set (named, or selected by the sparse isocon), checked, and the point results."""
    table, elements, altered = inputs.table, inputs.elements, inputs.altered_names
    g, s = len(elements), len(altered)
    sp = config.sparse
    selection = None
    try:
        weights = mb.group_weights(elements, sp.weights, sp.prior, sp.prior_weight)
    except KeyError as err:
        raise InputError(f"'sparse.weights' names {err.args[0]!r}, which is neither a column nor the element of a "
                         f"column of {table.path} ({', '.join(elements)}).") from None
    if config.method == "classical":
        unknown = [e for e in config.immobile if e not in elements]
        if unknown:
            raise InputError(f"'immobile' names {', '.join(unknown)}, which are not element columns of {table.path} "
                             f"({', '.join(elements)}).")
        imm_g = np.array([e in config.immobile for e in elements])
        immobile = jnp.asarray(np.repeat(imm_g[:, None], s, axis=1))
    else:
        if g < 4:
            raise InputError(f"{table.path}: {g} elements; the sparse isocon needs at least 4 (better > 8). "
                             f"Use method: classical with named immobile elements.")
        selection = mb.select(inputs.y, inputs.w, mb.SparseOptions.from_config(sp), jnp.asarray(weights))
        if not bool(np.all(np.asarray(selection.path.status.converged))):
            print(f"jaxpetro: warning: the solver did not reach sparse.tol={sp.tol:g} at every λ of the path "
                  f"within sparse.max_iter={sp.max_iter}; raise sparse.max_iter.", file=sys.stderr)
        if sp.criterion != "fixed" and not np.isfinite(float(selection.criterion[selection.index])):
            raise InputError(
                f"{table.path}: the immobile elements cannot be identified: no point of the λ path keeps "
                f"{sp.min_immobile} or more elements on a common isocon in every sample (all elements appear "
                f"mobile). Check the reference sample, or use method: classical with known immobile elements.")
        immobile = selection.immobile
    summary = mb.summarize(inputs.y, inputs.w, immobile, inputs.imputed.values[inputs.altered], inputs.protolith)
    n_imm = np.asarray(jnp.sum(immobile, axis=0))
    thr = min(sp.min_immobile, g - 1)
    if config.method == "sparse" and np.any(n_imm < thr):
        bad = [altered[j] for j in np.flatnonzero(n_imm < thr)]
        raise InputError(f"{table.path}: the immobile elements cannot be identified for sample(s) {', '.join(bad)}: "
                         f"fewer than sparse.min_immobile={sp.min_immobile} elements stay on a common isocon.")
    chi2, dof, pval = float(summary.chi2), int(summary.dof), float(summary.p_value)
    if config.method == "sparse" and pval < sp.fit_p_min:
        raise InputError(
            f"{table.path}: the immobile elements cannot be identified: the best immobile set "
            f"({', '.join(e for e, m in zip(elements, np.asarray(immobile).any(axis=1)) if m)}) scatters about its "
            f"isocons far more than the analytical errors allow (chi-square {chi2:.1f} on {dof} degrees "
            f"of freedom, p = {pval:.2g} < sparse.fit_p_min={sp.fit_p_min:g}), so no element set is immobile "
            f"within error. If the errors are underestimated, raise 'relative_error' (or the '_sd' columns); "
            f"otherwise the samples share no immobile elements.")
    if not np.all(np.isfinite(np.asarray(summary.intercept))):
        raise ConvergenceError("the isocon slopes are not finite; check the data for extreme values.")
    grant = mb.grant_linear(inputs.imputed.values[inputs.altered], inputs.protolith, np.asarray(immobile))
    return Fit(immobile, selection, summary, weights, grant)


def _uncertainty(config: IsoconConfig, inputs: Inputs, fit: Fit) -> mb.Replicates | None:
    """Monte-Carlo replicates over the analytical errors (None with ``replicates: 0``)."""
    n_rep = config.uncertainty.replicates
    if n_rep == 0:
        return None
    key = jax.random.PRNGKey(config.seed)
    if fit.selection is None:
        return mb.montecarlo_fixed(key, inputs.data, fit.immobile, n=n_rep)
    return mb.montecarlo_sparse(key, inputs.data, fit.selection.lam, fit.selection.solution.coef, fit.immobile,
                                n=n_rep, options=mb.SparseOptions.from_config(config.sparse),
                                c=jnp.asarray(fit.weights))


@float64
def run(config: IsoconConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the workflow; returns a summary dict (mass ratios, immobile elements per sample, chi2_p, λ)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(total=4, desc="isocon", quiet=quiet)
    with stages.stage("read", "reading"):
        inputs = _read(config)
    with stages.stage("fit", "fitting"):
        fit = _fit(config, inputs)
    with stages.stage("uncertainty"):
        reps = _uncertainty(config, inputs, fit)
    bands = _intervals(config, inputs, fit, reps)
    with stages.stage("write", "writing"):
        _write(out, config, inputs, fit, reps, bands, quiet)
    stages.close()
    altered, elements, imm = inputs.altered_names, inputs.elements, np.asarray(fit.immobile)
    summary = {"mass_ratio": dict(zip(altered, np.asarray(fit.summary.mass_ratio).tolist())),
               "mass_ratio_grant_linear": dict(zip(altered, (1.0 / fit.grant_slope).tolist())),
               "immobile": {name: [e for i, e in enumerate(elements) if imm[i, j]] for j, name in enumerate(altered)},
               "mass_ratio_interval": {n: (float(bands.mass_ratio_lo[j]), float(bands.mass_ratio_hi[j]))
                                       for j, n in enumerate(altered)},
               "chi2_p": float(fit.summary.p_value),
               "lambda": None if fit.selection is None else float(fit.selection.lam)}
    if not quiet:
        _report(config, summary, bands)
    return summary


def _report(config: IsoconConfig, summary: dict, bands: Bands) -> None:
    """Headline results on stderr (stdout stays clean for pipes): immobile set, mass ratios per sample."""
    sets = {tuple(v) for v in summary["immobile"].values()}
    lines = []
    if len(sets) == 1:
        lines.append(f"immobile ({config.method}): {', '.join(next(iter(sets)))}")
    level = 100 * config.uncertainty.level
    lines.append(f"sample      M^A/M^O (log-ratio isocon)  [{level:g} % interval]   Grant linear   immobile")
    names = list(summary["mass_ratio"])
    lo, hi = bands.mass_ratio_lo, bands.mass_ratio_hi
    for j, name in enumerate(names):
        band = f"[{lo[j]:.3f}, {hi[j]:.3f}]" if np.isfinite(lo[j]) else ""
        extra = "" if len(sets) == 1 else ", ".join(summary["immobile"][name])
        lines.append(f"{name:<12}{summary['mass_ratio'][name]:8.3f}   {band:<26}"
                     f"{summary['mass_ratio_grant_linear'][name]:8.3f}   {extra}")
    lines.append(f"chi-square p of the immobile elements about their isocons: {summary['chi2_p']:.3g}"
                 + ("" if summary["lambda"] is None else f"; λ = {summary['lambda']:.4g}"))
    print("\n".join(lines), file=sys.stderr)


class Bands(NamedTuple):
    """Bootstrap intervals (NaN without replicates): mass ratios (S,), relative changes (G, S), and the
    point fit's Birge ratio per sample (S,), the factor its misfit widened them by."""

    mass_ratio_lo: np.ndarray
    mass_ratio_hi: np.ndarray
    relative_change_lo: np.ndarray
    relative_change_hi: np.ndarray
    birge_ratio: np.ndarray


def _intervals(config: IsoconConfig, inputs: Inputs, fit: Fit, reps: mb.Replicates | None) -> Bands:
    """Bootstrap intervals (:func:`~jaxpetro.models.massbalance.bootstrap_intervals`, basic or
    studentized by ``uncertainty.interval``), which always contain the point estimate: of the log slope
    ``a`` (then ``M^A/M^O = exp(-a)``) and of the log mobility ``y - a`` (then ``ΔC/C^O = exp(y - a) - 1``)."""
    g, s = inputs.y.shape
    if reps is None:
        nan_s, nan_gs = np.full(s, np.nan), np.full((g, s), np.nan)
        return Bands(nan_s, nan_s, nan_gs, nan_gs, nan_s)
    return Bands(*mb.bootstrap_intervals(inputs.y, inputs.w, fit.immobile, fit.summary.intercept, reps,
                                         config.uncertainty.level, config.uncertainty.interval))


def _write(out: Path, config: IsoconConfig, inputs: Inputs, fit: Fit, reps: mb.Replicates | None, bands: Bands,
           quiet: bool) -> None:
    """Every output file, from the stage results."""
    table, imp, selection, summary = inputs.table, inputs.imputed, fit.selection, fit.summary
    elements, altered = inputs.elements, inputs.altered_names
    ref_idx = inputs.reference
    g, s = len(elements), len(altered)
    a = np.asarray(summary.intercept)
    mr = np.asarray(summary.mass_ratio)
    rel = np.asarray(summary.relative_change)  # (G, S)
    chi2, dof, pval = float(summary.chi2), int(summary.dof), float(summary.p_value)
    imm_np = np.asarray(fit.immobile)
    n_imm = imm_np.sum(axis=0)
    mr_lo, mr_hi, rel_lo, rel_hi, birge = bands
    frequency = imm_np.astype(float) if reps is None else np.asarray(reps.immobile).mean(axis=0)
    mr_grant = 1.0 / fit.grant_slope
    delta_c = rel * (inputs.protolith / table.to_ppm)[:, None]  # in each column's unit, per mass of protolith

    header = ["sample", "mass_ratio", "mass_ratio_lo", "mass_ratio_hi", "n_immobile", "mass_change", "chi2_p",
              "mass_ratio_grant_linear", "birge_ratio"]
    rows = [[altered[j], mr[j], mr_lo[j], mr_hi[j], int(n_imm[j]), mr[j] - 1.0, pval, mr_grant[j], birge[j]]
            for j in range(s)]
    if config.densities:
        rho_ref = np.mean([config.densities[table.samples[i]] for i in ref_idx])
        vol = mr * rho_ref / np.array([config.densities[n] for n in altered])  # V^A/V^O = (M^A/M^O) ρ^O/ρ^A
        header += ["volume_ratio", "volume_change"]
        rows = [r + [vol[j], vol[j] - 1.0] for j, r in enumerate(rows)]
    write_csv(out / "isocon.csv", header, rows)
    imputed_alt = imp.imputed[inputs.altered]
    write_csv(
        out / "transfer.csv",
        ["sample", "element", "relative_change", "relative_change_lo", "relative_change_hi", "immobile",
         "delta_c", "unit", "imputed", "immobile_frequency"],
        [[altered[j], elements[i], rel[i, j], rel_lo[i, j], rel_hi[i, j], bool(imm_np[i, j]), delta_c[i, j],
          table.units[i], bool(imputed_alt[j, i] or imp.imputed[ref_idx, i].any()), frequency[i, j]]
         for j in range(s) for i in range(g)],
    )
    imputed_rows = [[table.samples[r], elements[c], STATUS_NAMES[int(table.status[r, c])],
                     imp.values[r, c] / table.to_ppm[c], table.units[c], float(imp.sd_log[r, c])]
                    for r, c in zip(*np.nonzero(imp.imputed))]
    write_csv(out / "imputed.csv", ["sample", "element", "status", "value_used", "unit", "sd_log"], imputed_rows)
    if imputed_rows and not quiet:
        print(f"jaxpetro: {len(imputed_rows)} value(s) below detection or missing were imputed and down-weighted; "
              f"see {out / 'imputed.csv'}.", file=sys.stderr)

    h5 = {
        "samples": list(altered), "reference": [table.samples[i] for i in ref_idx], "elements": list(elements),
        "units": list(table.units),
        "input": {"concentration_ppm": imp.values, "sd_log": imp.sd_log, "imputed": imp.imputed.astype(np.int8),
                  "status": table.status, "all_samples": list(table.samples)},
        "log_ratio": np.asarray(inputs.y), "weight": np.asarray(inputs.w), "protolith_ppm": inputs.protolith,
        "fit": {"intercept": a, "mass_ratio": mr, "relative_change": rel,
                "immobile": imm_np.astype(np.int8), "chi2": chi2, "dof": dof, "chi2_p": pval,
                "mass_ratio_lo": mr_lo, "mass_ratio_hi": mr_hi, "relative_change_lo": rel_lo,
                "relative_change_hi": rel_hi, "birge_ratio": birge, "group_weight": fit.weights,
                "grant_linear_slope": fit.grant_slope, "mass_ratio_grant_linear": mr_grant},
    }
    if config.sensitivity:
        h5["sensitivity"] = {"d_mass_ratio_d_altered_ppm": np.asarray(summary.d_mass_ratio_d_altered),
                             "d_mass_ratio_d_reference_ppm": np.asarray(summary.d_mass_ratio_d_reference)}
    if selection is not None:
        path = selection.path
        h5["path"] = {"lambda": np.asarray(selection.lambdas), "coef": np.asarray(path.coef),
                      "intercept": np.asarray(path.intercept), "criterion": np.asarray(selection.criterion),
                      "kkt": np.asarray(path.kkt), "gap": np.asarray(path.gap),
                      "n_iter": np.asarray(path.status.iterations), "converged": np.asarray(path.status.converged)}
        h5["selection"] = {"lambda": float(selection.lam), "index": int(selection.index),
                           "coef": np.asarray(selection.solution.coef), "kkt": float(selection.solution.kkt),
                           "gap": float(selection.solution.gap)}
    if reps is not None:
        h5["replicates"] = {"mass_ratio": np.asarray(reps.mass_ratio), "intercept": np.asarray(reps.intercept),
                            "se_intercept": np.asarray(reps.se_intercept),
                            "relative_change": np.asarray(reps.relative_change),
                            "immobile": np.asarray(reps.immobile).astype(np.int8)}
    units = {"samples": "", "reference": "", "elements": "", "units": "", "input/all_samples": "",
             "input/concentration_ppm": "ppm", "input/sd_log": "1", "input/imputed": "1", "input/status": "1",
             "log_ratio": "1", "weight": "1", "protolith_ppm": "ppm", "fit/*": "1", "fit/dof": "1",
             "sensitivity/*": "1/ppm", "path/*": "1", "path/lambda": "1", "path/n_iter": "1",
             "selection/*": "1", "replicates/*": "1"}
    write_hdf5(out / "isocon.h5", h5, run_attrs(config_to_yaml(config), config.seed), units=units)

    if config.output.plots:
        _figures(out, config, elements, altered, inputs.data, a, imm_np, selection, rel, rel_lo, rel_hi)


# --------------------------------------------------------------------------- figures


def _figures(out, config, elements, altered, data, a, imm, selection, rel, rel_lo, rel_hi) -> None:
    """Isocon diagrams (a panel per sample), the regularisation path (sparse) and the gain/loss bar chart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from jaxpetro.io.plots import save_figure, subplots

    dpi = config.output.dpi
    x = np.asarray(data.log_ref) / np.log(10)  # log10 C^O (ppm)
    s = len(altered)
    ncol = min(s, 3)
    nrow = -(-s // ncol)
    fig, axes = subplots(nrow, ncol, figsize=(4.4 * ncol, 4.3 * nrow), squeeze=False, layout="constrained")
    for j, name in enumerate(altered):
        ax = axes[j // ncol][j % ncol]
        yj = np.asarray(data.log_alt[j]) / np.log(10)
        lim = np.array([min(x.min(), yj.min()) - 0.3, max(x.max(), yj.max()) + 0.3])
        ax.plot(lim, lim, color="0.7", ls=":", lw=1, label="no mass change (1:1)")
        ax.plot(lim, lim + float(a[j]) / np.log(10), color="C3", lw=1.5,
                label=f"isocon, M$^A$/M$^O$ = {float(np.exp(-a[j])):.3f}")
        ax.scatter(x[~imm[:, j]], yj[~imm[:, j]], facecolor="white", edgecolor="C0", zorder=3, label="mobile")
        ax.scatter(x[imm[:, j]], yj[imm[:, j]], color="C3", zorder=3, label="immobile")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_xlabel("log$_{10}$ C$^O$ (protolith, ppm)")
        ax.set_ylabel(f"log$_{{10}}$ C$^A$ ({name}, ppm)")
        ax.set_title(name)
        ax.legend(fontsize=6, loc="upper left")
    for k in range(s, nrow * ncol):
        axes[k // ncol][k % ncol].set_visible(False)
    fig.suptitle("isocon diagrams (log C$^A$ vs log C$^O$)")
    FigureCanvasAgg(fig).draw()  # the constrained layout fixes the axes' sizes before the labels are placed
    for j in range(s):
        yj = np.asarray(data.log_alt[j]) / np.log(10)
        _label_points(axes[j // ncol][j % ncol], x, yj, elements)
    save_figure(fig, out / "isocon.png", dpi)

    if selection is not None:
        lam = np.asarray(selection.lambdas)
        norms = np.linalg.norm(np.asarray(selection.path.coef), axis=2)  # (L, G)
        fig, ax = subplots(figsize=(7.0, 4.6), layout="constrained")
        lines = [ax.plot(lam / lam[0], norms[:, i], lw=1)[0] for i in range(len(elements))]
        ax.axvline(float(selection.lam) / lam[0], color="k", ls="--", lw=1, label="chosen λ")
        ax.set_xscale("log")
        end = lam[-1] / lam[0]
        ax.set_xlim(1.0 / 0.85, end / 4.0)  # decreasing λ to the right, room after the path's end for the names
        top = 1.05 * max(float(norms.max()), 1e-3)
        ax.set_ylim(-0.03 * top, top)
        # Names of the elements that end mobile, in a column spread so that none overlaps (gap of about one
        # line of 6-pt text on this axis), joined to their curve's end by a thin leader.
        moving = [i for i in range(len(elements)) if norms[-1, i] > 0]
        gap = 1.1 * top * 6.5 / (72 * 0.72 * 4.6)
        order = sorted(moving, key=lambda i: norms[-1, i])
        ys = []
        for i in order:
            ys.append(max(float(norms[-1, i]), ys[-1] + gap if ys else -np.inf))
        for k in range(len(ys) - 1, -1, -1):  # push back under the top
            ys[k] = min(ys[k], (ys[k + 1] - gap) if k + 1 < len(ys) else top - gap / 2)
        for i, yl in zip(order, ys):
            ax.annotate(elements[i], (end, norms[-1, i]), xytext=(end / 1.6, yl), textcoords="data", fontsize=6,
                        va="center", ha="left", color=lines[i].get_color(),
                        arrowprops=dict(arrowstyle="-", lw=0.4, color=lines[i].get_color(), shrinkA=0, shrinkB=0))
        ax.set_xlabel("λ / λ$_{max}$")
        ax.set_ylabel("‖b$_i$‖ (mobility of element i, log units)")
        crit = np.asarray(selection.criterion)
        if np.any(np.isfinite(crit)):
            ax2 = ax.twinx()
            ax2.plot(lam / lam[0], np.where(np.isfinite(crit), crit, np.nan), color="0.4", ls=":", lw=1.2)
            ax2.set_ylabel(f"criterion ({config.sparse.criterion})", color="0.4")
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title("regularisation path")
        save_figure(fig, out / "path.png", dpi)

    g = rel.shape[0]
    fig, ax = subplots(figsize=(min(14.0, max(6.0, 0.3 * g * max(1, len(altered)) ** 0.5 + 2)), 4.2), layout="constrained")
    width = 0.8 / s
    pos = np.arange(g)
    for j, name in enumerate(altered):
        xs = pos - 0.4 + width * (j + 0.5)
        val = 100 * rel[:, j]
        err = None
        if np.all(np.isfinite(rel_lo[:, j])):
            err = np.vstack([val - 100 * rel_lo[:, j], 100 * rel_hi[:, j] - val])
            err = np.maximum(err, 0)
        ax.bar(xs, val, width, yerr=err, color=f"C{j % 10}", label=name, error_kw=dict(lw=0.6, capsize=1),
               hatch=None)
        ax.scatter(xs[imm[:, j]], np.zeros(int(imm[:, j].sum())), marker="o", s=8, color="k", zorder=3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xticks(pos)
    ax.set_xticklabels(elements, rotation=60, fontsize=8)
    ax.set_ylabel("ΔC / C$^O$ (%)")
    ax.set_title("gain (+) / loss (−) per element; dots: immobile")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="sample")
    save_figure(fig, out / "transfer.png", dpi)


def _label_points(ax, x, y, labels, fontsize: float = 7) -> None:
    """Name every point without two names overlapping each other, a point or the legend.

    Greedy: labels are placed from the most crowded point outwards at the first of a few
    offsets (right-above, right-below, left-above, left-below, then further out) whose box
    is clear in display coordinates; a label with no clear offset goes to its first one.
    """
    renderer = ax.figure.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([x, y]))
    marker = 4.0 * ax.figure.dpi / 72.0  # half the marker size, display units
    blocked = [(px - marker, py - marker, px + marker, py + marker) for px, py in pts]
    legend = ax.get_legend()
    if legend is not None:
        b = legend.get_window_extent(renderer)
        blocked.append((b.x0, b.y0, b.x1, b.y1))
    offsets = [(4, 3), (4, -10), (-4, 3), (-4, -10), (4, 11), (4, -18), (-4, 11), (-4, -18), (10, -4), (-10, -4)]
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    order = np.argsort(np.sort(dist, axis=1)[:, 1] if len(pts) > 1 else np.zeros(len(pts)))

    def clear(box):
        return all(box[2] <= o[0] or box[0] >= o[2] or box[3] <= o[1] or box[1] >= o[3] for o in blocked)

    for i in order:
        text = None
        for dx, dy in offsets:
            if text is not None:
                text.remove()
            text = ax.annotate(labels[i], (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               ha="left" if dx > 0 else "right")
            b = text.get_window_extent(renderer)
            box = (b.x0, b.y0, b.x1, b.y1)
            if clear(box):
                break
        else:
            text.remove()
            dx, dy = offsets[0]
            text = ax.annotate(labels[i], (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize)
            b = text.get_window_extent(renderer)
            box = (b.x0, b.y0, b.x1, b.y1)
        blocked.append(box)


# --------------------------------------------------------------------------- demo


@float64
def run_demo(out_dir: Path, seed: int, quiet: bool = False) -> dict:
    """Synthetic altered basalt -> ``out_dir/wholerock.csv`` -> sparse isocon with default settings.

    The data (:func:`jaxpetro.synthetic.wholerock.make_altered_basalt`: a protolith and 5
    samples of a sericite-chlorite altered basalt, 20 elements, Ti Al Zr Nb Y Th immobile,
    compositions closed to 100 wt% with LOI, 2 % / 6 % analytical errors on oxides / traces
    written as ``_sd`` columns) have known truth; returns headline figures: RMSE of the log
    mass ratios, precision and recall of the immobile set, the coverage of the 95 %
    intervals of the mass ratios, and the RMSE of the per-sample median of log ratios and
    of the oracle (true immobile set). A seed whose immobile set the workflow refuses as
    not identifiable gives ``identified`` False and NaN sparse figures (no exception).
    """
    from jaxpetro.config import load_config
    from jaxpetro.synthetic import wholerock as synthetic

    out = prepare_out_dir(out_dir)
    truth = synthetic.make_altered_basalt(seed)
    csv_path = synthetic.write_wholerock_csv(out / "wholerock.csv", truth, sd_columns=True)
    exclude = ["LOI", "Total"] if truth.loi is not None else []
    config = load_config({"data": str(csv_path), "reference": list(truth.reference), "seed": seed,
                          "exclude": exclude}, IsoconConfig)
    a_true = -np.log(truth.mass_ratio)
    inputs = _read(config)
    y, w = np.asarray(inputs.y), np.asarray(inputs.w)
    imm_true = np.repeat(truth.immobile[:, None], y.shape[1], axis=1)
    oracle = np.sum(w * y * imm_true, 0) / np.sum(w * imm_true, 0)
    head = {"rmse_median": float(np.sqrt(np.mean((np.median(y, axis=0) - a_true) ** 2))),
            "rmse_oracle": float(np.sqrt(np.mean((oracle - a_true) ** 2)))}
    try:
        result = run(config, out, quiet=quiet)
    except InputError as err:
        if not quiet:
            print(f"jaxpetro: isocon demo (seed {seed}): {err}", file=sys.stderr)
        return {"identified": False, "rmse_log_mass_ratio": float("nan"), **head, "precision": float("nan"),
                "recall": float("nan"), "n_immobile": 0, "coverage_mass_ratio": float("nan")}
    est = -np.log(np.array([result["mass_ratio"][n] for n in truth.altered]))
    lo = np.array([result["mass_ratio_interval"][n][0] for n in truth.altered])
    hi = np.array([result["mass_ratio_interval"][n][1] for n in truth.altered])
    selected = np.array([e in result["immobile"][truth.altered[0]] for e in truth.elements])
    tp = int(np.sum(selected & truth.immobile))
    return {
        "identified": True,
        "rmse_log_mass_ratio": float(np.sqrt(np.mean((est - a_true) ** 2))),
        **head,
        "precision": tp / max(int(selected.sum()), 1),
        "recall": tp / int(truth.immobile.sum()),
        "n_immobile": int(selected.sum()),
        "coverage_mass_ratio": float(np.mean((lo <= truth.mass_ratio) & (truth.mass_ratio <= hi))),
    }

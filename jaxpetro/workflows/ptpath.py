"""``jaxpetro ptpath``: P–T(–t) path of a zoned garnet by ensemble Kalman smoothing along radius.

Reads a zoning profile (:mod:`jaxpetro.io.profiles`), optional inclusion thermobarometry,
and a forward model (a table from :mod:`jaxpetro.io.perplex` or the linearised model of
:mod:`jaxpetro.models.garnet`). Radius is pseudo-time: the state (P, T) follows a random
walk along radius and the shells observe it through the forward model
(:mod:`jaxpetro.models.ptpath_model`; Kuwatani et al. 2012, 2018; equations in
docs/science.md). Noise scales not given in the config are estimated by maximising the
marginal likelihood (exact Kalman for the linear model, the ensemble estimate for a table);
the ensemble Kalman smoother (Evensen 2003, 2009) gives the path and its bands.

Stages: :func:`build_problem` -> :func:`invert` -> :func:`check_inside_table` ->
[:func:`sensitivity`] -> :func:`growth_times` -> :func:`write_outputs`.

Writes ``ptpath.csv`` (radius_um, P_kbar, T_C, P_sd, T_sd, P_lo, P_hi, T_lo, T_hi
[, t_Myr]; lo/hi bound the 90 % band), ``ptpath.h5`` (smoothed and filter ensembles,
hyperparameters, log-likelihood, MAP path, predicted profile, sensitivities) and the
figures ``ptpath.png`` (path over the forward model's isopleths) and ``profiles.png``
(observed vs predicted end-members), plus ``sensitivity.png`` with ``sensitivity: true``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro._precision import float64
from jaxpetro.config.loader import config_to_yaml
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.errors import ConvergenceError, InputError
from jaxpetro.io.perplex import read_table
from jaxpetro.io.profiles import read_inclusions, read_profile, write_profile
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.kernels import enks
from jaxpetro.kernels import kalman as kf
from jaxpetro.models import garnet as gm
from jaxpetro.models import ptpath_model as pm
from jaxpetro.models.ptpath_model import Problem
from jaxpetro.workflows.stages import Stages

CSV_COLUMNS = ("radius_um", "P_kbar", "T_C", "P_sd", "T_sd", "P_lo", "P_hi", "T_lo", "T_hi")
BAND = (0.05, 0.95)  # the 90 % band
_Z90 = 1.6448536269514722  # normal quantile of 0.95


# ----------------------------------------------------------------------------- stage results


class Predicted(NamedTuple):
    """Predicted end-member fractions of the smoothed ensemble: mean and 90 % band, (n, 4) each."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class Exact(NamedTuple):
    """Exact RTS posterior of a linear-Gaussian model: mean and sd, (n, 2) each."""

    mean: np.ndarray
    sd: np.ndarray


@dataclass(frozen=True)
class Inversion:
    """Numbers of one inversion (numpy).

    Attributes:
        log_theta: log (q_P, q_T, sd) used; estimated: names of the estimated ones;
            history: log-likelihood per Adam step (empty when nothing was estimated).
        smoothed, filtered: ensembles (n, N, 2); loglik, loglik_method: 'exact' or 'ensemble'.
        mean, sd, lo, hi: the path summary (n, 2) (exact posterior for a linear-Gaussian model).
        map_path: MAP path (n, 2) or None; map_iter: its L-BFGS iterations (0 without).
        exact: exact posterior (linear-Gaussian model) or None; pred: predicted fractions.
    """

    log_theta: np.ndarray
    estimated: list
    history: np.ndarray
    smoothed: np.ndarray
    filtered: np.ndarray
    loglik: float
    loglik_method: str
    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    map_path: np.ndarray | None
    map_iter: int
    exact: Exact | None
    pred: Predicted


@dataclass(frozen=True)
class Sensitivity:
    """Jacobians of the smoothed mean path (P and T per step): w.r.t. every observed fraction
    (n, n, 4: output step, input step, end-member), and for the linear model w.r.t. its
    parameters X0, A, B ((n, 4) each; None for a table). Field names are the HDF5 dataset names."""

    dP_dX: np.ndarray
    dT_dX: np.ndarray
    dP_dX0: np.ndarray | None = None
    dT_dX0: np.ndarray | None = None
    dP_dA: np.ndarray | None = None
    dT_dA: np.ndarray | None = None
    dP_dB: np.ndarray | None = None
    dT_dB: np.ndarray | None = None


class GrowthTimes(NamedTuple):
    """Time since nucleation per step (Myr): ensemble mean and 90 % band."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class PtpathRun(NamedTuple):
    """Everything one run produced (returned by :func:`run_stages`)."""

    problem: Problem
    inversion: Inversion
    sensitivity: Sensitivity | None
    paths: dict
    summary: dict


# ----------------------------------------------------------------------------- the workflow


@float64
def run(config: PtpathConfig, out_dir: Path, quiet: bool = False, truth: tuple | None = None) -> dict:
    """Run the workflow; returns a summary (path extent, hyperparameters, MAP agreement, files, timings).

    ``truth`` (P, T arrays per step) is drawn on the figures when given (the demo)."""
    return run_stages(config, out_dir, quiet, truth).summary


@float64
def run_stages(config: PtpathConfig, out_dir: Path, quiet: bool = False, truth: tuple | None = None) -> PtpathRun:
    """The stages of :func:`run`, returning every stage result."""
    out = prepare_out_dir(out_dir)
    stages = Stages(4 + int(config.sensitivity), "ptpath", quiet)
    with stages.stage("read_s", "reading"):
        problem = build_problem(config)
    with stages.stage("invert_s", "inverting"):
        inv = invert(problem, config)
        check_inside_table(problem.table, problem.radius_um, inv.mean)
    sens = None
    if config.sensitivity:
        with stages.stage("sensitivity_s", "sensitivity"):
            sens = sensitivity(problem, config, inv)
    with stages.stage("times_s", "time axis"):
        times = growth_times(problem, inv, config)
    with stages.stage("write_s", "writing"):
        paths = write_outputs(out, config, problem, inv, times, sens, truth)
    stages.close()
    return PtpathRun(problem, inv, sens, paths, _summary(problem, inv, paths, stages.timings))


def build_problem(config: PtpathConfig) -> Problem:
    """Read the inputs named by ``config`` and assemble the state-space problem."""
    profile = read_profile(config.profile)
    incl = read_inclusions(config.inclusions) if config.inclusions else None
    table = read_table(config.forward.path) if config.forward.kind == "table" else None
    return pm.build_problem(profile, incl, table, config)


# ----------------------------------------------------------------------------- inversion


class _CoreOut(NamedTuple):
    """Outputs of the compiled inversion (None where not computed)."""

    theta: Any
    history: Any
    smoothed: Any
    filtered: Any
    loglik: Any
    mean: Any
    pred: Any
    exact_mean: Any = None
    exact_sd: Any = None
    exact_loglik: Any = None
    map: Any = None
    map_iter: Any = None


def _smooth(key, data: pm.Data, params, log_theta, X0, options: enks.SmootherOptions, h) -> enks.EnsembleResult:
    R, Q = pm.noise(data, log_theta)
    return enks.ensemble_smoother(key, h, params, X0, jnp.asarray(data.y), jnp.asarray(data.mask), R, Q,
                                  jnp.asarray(data.radius), options=options)


@functools.partial(jax.jit, static_argnames=("h", "exact", "free", "map_check"))
def _core(key, data: pm.Data, params, theta0, options: pm.Options, *, h, exact: bool, free: tuple, map_check: bool):
    """Hyperparameters, smoother, exact reference (linear), MAP and predicted profile in one compiled call."""
    k_h, k_prior, k_run = jax.random.split(key, 3)
    k_hprior, k_hfilter = jax.random.split(k_h)
    free_j = jnp.asarray(free)
    y, mask, radius = jnp.asarray(data.y), jnp.asarray(data.mask), jnp.asarray(data.radius)
    m0, P0 = jnp.asarray(data.m0), jnp.asarray(data.P0)
    if any(free):
        if exact:
            def loglik(theta):
                return kf.loglik(pm.linear_model(data, params, jnp.where(free_j, theta, theta0)), y, mask)
        else:
            X0h = enks.prior_ensemble(k_hprior, m0, P0, options.likelihood)

            def loglik(theta):
                R, Q = pm.noise(data, jnp.where(free_j, theta, theta0))
                return enks.ensemble_loglik(k_hfilter, h, params, X0h, y, mask, R, Q, radius, options=options.likelihood)

        best, history = enks.maximise(loglik, theta0, options.maximise)
        theta = jnp.where(free_j, best, theta0)
    else:
        theta, history = theta0, jnp.zeros(0)
    X0 = enks.prior_ensemble(k_prior, m0, P0, options.smoother)
    res = _smooth(k_run, data, params, theta, X0, options.smoother, h)
    mean = jnp.mean(res.smoothed, axis=1)
    extra = {}
    if exact:
        ex = kf.rts_smoother(pm.linear_model(data, params, theta), y, mask)
        mean = ex.mean_s
        extra.update(exact_mean=ex.mean_s, exact_sd=jnp.sqrt(jnp.diagonal(ex.cov_s, axis1=1, axis2=2)),
                     exact_loglik=ex.loglik)
    if map_check:
        R, Q = pm.noise(data, theta)
        mp = enks.map_path(h, params, y, mask, R, Q, radius, m0, P0, mean, options=pm.MAP_OPTIONS)
        extra.update(map=mp.x, map_iter=mp.status.iterations)
    pred = jax.vmap(jax.vmap(h, in_axes=(None, 0, None)), in_axes=(None, 0, 0))(params, res.smoothed, radius)
    return _CoreOut(theta, history, res.smoothed, res.filtered, res.loglik, mean, pred[..., :4], **extra)


def invert(problem: Problem, config: PtpathConfig) -> Inversion:
    """Estimate hyperparameters, smooth, summarise (mean, sd, 90 % band), MAP cross-check."""
    hyper = pm.start(problem, config.hyperparameters)
    exact = pm.exact_linear(problem, config.forward.fractionation)
    out = _core(jax.random.key(config.seed), pm.data_of(problem), problem.params, jnp.asarray(hyper.log_theta),
                pm.smoother_options(config), h=problem.h, exact=exact, free=hyper.free, map_check=config.map_check)
    out = jax.tree_util.tree_map(np.asarray, out)
    if not np.all(np.isfinite(out.theta)):
        raise ConvergenceError(
            "ptpath: the hyperparameter estimation produced non-finite noise scales; give "
            "hyperparameters.q_P, q_T and sd in the config, or check the profile for outliers."
        )
    Xs = out.smoothed
    if not np.all(np.isfinite(Xs)):
        raise ConvergenceError(
            "ptpath: the ensemble smoother produced non-finite states; try ensemble.variant: stochastic, "
            "a larger ensemble.size, or fixed hyperparameters."
        )
    mean, sd = Xs.mean(axis=1), Xs.std(axis=1, ddof=1)
    lo, hi = np.quantile(Xs, BAND[0], axis=1), np.quantile(Xs, BAND[1], axis=1)
    loglik, method, ex = float(out.loglik), "ensemble", None
    if exact:
        # Linear-Gaussian: the exact posterior is the answer (the ensemble stays in the HDF5).
        mean, sd = out.exact_mean, out.exact_sd
        lo, hi = mean - _Z90 * sd, mean + _Z90 * sd
        loglik, method, ex = float(out.exact_loglik), "exact", Exact(mean, sd)
    pred = Predicted(out.pred.mean(axis=1), np.quantile(out.pred, BAND[0], axis=1), np.quantile(out.pred, BAND[1], axis=1))
    return Inversion(out.theta, hyper.names, out.history, Xs, out.filtered, loglik, method, mean, sd, lo, hi,
                     out.map, int(out.map_iter) if out.map_iter is not None else 0, ex, pred)


def check_inside_table(table: Any, radius_um: np.ndarray, mean: np.ndarray) -> None:
    """InputError if the smoothed mean path (n, 2) at ``radius_um`` leaves the forward table's
    extent or enters cells touching its missing nodes (``table`` None: the linear model, no check)."""
    t = table
    if t is None:
        return
    ok = gm.table_support(t.valid, t.P_kbar[0], t.dP, t.T_C[0], t.dT, mean[:, 0], mean[:, 1])
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise InputError(
            f"the P-T path leaves the forward table '{t.source}' at radius {radius_um[i]:g} µm "
            f"(P = {mean[i, 0]:.2f} kbar, T = {mean[i, 1]:.0f} °C; the table covers "
            f"{t.P_kbar[0]:g}-{t.P_kbar[-1]:g} kbar, {t.T_C[0]:g}-{t.T_C[-1]:g} °C with "
            f"{int((~t.valid).sum())} missing nodes); extend the table over that region (or fill its holes) "
            f"and run again -- the path is never extrapolated."
        )


def sensitivity(problem: Problem, config: PtpathConfig, inv: Inversion) -> Sensitivity:
    """Jacobians of the smoothed mean path w.r.t. every observed fraction (and, for the
    linear model, its parameters X0, A, B), with the run's key (common random numbers)."""
    data = pm.data_of(problem)
    theta = jnp.asarray(inv.log_theta)
    linear = {}
    if pm.exact_linear(problem, config.forward.fractionation):
        @jax.jit
        def jac(comp, params):
            def path(c, p):
                d = data._replace(y=jnp.asarray(data.y).at[:, :4].set(c))
                return kf.rts_smoother(pm.linear_model(d, p, theta), d.y, jnp.asarray(d.mask)).mean_s

            return jax.jacrev(path, argnums=(0, 1))(comp, params)

        J_y, J_p = jac(jnp.asarray(problem.y[:, :4]), problem.params)
        for name in ("X0", "A", "B"):
            jp = np.asarray(getattr(J_p, name))  # (n, 2, 4)
            linear[f"dP_d{name}"], linear[f"dT_d{name}"] = jp[:, 0], jp[:, 1]
    else:
        options = pm.smoother_options(config).smoother
        _, k_prior, k_run = jax.random.split(jax.random.key(config.seed), 3)

        @jax.jit
        def jac(comp):
            def path(c):
                d = data._replace(y=jnp.asarray(data.y).at[:, :4].set(c))
                X0 = enks.prior_ensemble(k_prior, jnp.asarray(d.m0), jnp.asarray(d.P0), options)
                return jnp.mean(_smooth(k_run, d, problem.params, theta, X0, options, problem.h).smoothed, axis=1)

            return jax.jacrev(path)(comp)

        J_y = jac(jnp.asarray(problem.y[:, :4]))
    J_y = np.asarray(J_y) * problem.mask[None, None, :, :4]  # (n, 2, n, 4); unobserved inputs: 0
    return Sensitivity(J_y[:, 0], J_y[:, 1], **linear)


def growth_times(problem: Problem, inv: Inversion, config: PtpathConfig) -> GrowthTimes | None:
    """Time since nucleation of each step from the growth law over the smoothed ensemble (None without one)."""
    g = config.growth
    if g.k0_um_per_Myr is None:
        return None
    dt = np.asarray(gm.shell_durations(problem.radius_um, inv.smoothed[..., 1].T, g.k0_um_per_Myr, g.Q_J_per_mol))
    t = np.cumsum(dt, axis=1)  # (N, n)
    return GrowthTimes(t.mean(axis=0), np.quantile(t, BAND[0], axis=0), np.quantile(t, BAND[1], axis=0))


# ----------------------------------------------------------------------------- outputs


def write_outputs(out: Path, config: PtpathConfig, prob: Problem, inv: Inversion, times: GrowthTimes | None,
                  sens: Sensitivity | None, truth: tuple | None = None) -> dict:
    """Write ptpath.csv, ptpath.h5 and the figures from the stage results; returns the paths written."""
    header = list(CSV_COLUMNS) + (["t_Myr"] if times is not None else [])
    cols = [prob.radius_um, inv.mean[:, 0], inv.mean[:, 1], inv.sd[:, 0], inv.sd[:, 1],
            inv.lo[:, 0], inv.hi[:, 0], inv.lo[:, 1], inv.hi[:, 1]] + ([times.mean] if times is not None else [])
    rows = [[float(c[i]) for c in cols] for i in range(len(prob.radius_um))]
    paths = {"csv": write_csv(out / "ptpath.csv", header, rows)}
    q_P, q_T, sd = np.exp(inv.log_theta)
    data = {
        "path": {name: np.asarray(c) for name, c in zip(header, cols)},
        "ensemble": {"smoothed": inv.smoothed, "filtered": inv.filtered, "state_names": ["P_kbar", "T_C"]},
        "hyperparameters": {"q_P_kbar_per_sqrt_um": q_P, "q_T_C_per_sqrt_um": q_T, "sd": sd,
                            "estimated": list(inv.estimated) or ["none"], "loglik_history": inv.history},
        "loglik": inv.loglik,
        "loglik_method": inv.loglik_method,
        "observations": {"radius_um": prob.radius_um, "shell": prob.shell, "y": np.where(prob.mask, prob.y, np.nan),
                         "mask": prob.mask, "names": list(gm.OBS_NAMES)},
        "predicted": {"mean": inv.pred.mean, "lo": inv.pred.lo, "hi": inv.pred.hi, "names": list(gm.ENDMEMBERS)},
    }
    if times is not None:
        data["path"]["t_lo_Myr"], data["path"]["t_hi_Myr"] = times.lo, times.hi
    if inv.map_path is not None:
        data["map"] = {"P_kbar": inv.map_path[:, 0], "T_C": inv.map_path[:, 1], "n_iter": inv.map_iter}
    if inv.exact is not None:
        data["exact"] = {"mean": inv.exact.mean, "sd": inv.exact.sd}
    if sens is not None:
        names = ("dP_dX0", "dT_dX0", "dP_dA", "dT_dA", "dP_dB", "dT_dB", "dP_dX", "dT_dX")
        data["sensitivity"] = {n: getattr(sens, n) for n in names if getattr(sens, n) is not None}
    paths["h5"] = write_hdf5(out / "ptpath.h5", data, run_attrs(config_to_yaml(config), config.seed))
    if config.output.plots:
        paths.update(_figures(out, config, prob, inv, sens, truth))
    return paths


def _summary(problem: Problem, inv: Inversion, paths: dict, timings: dict) -> dict:
    """Headline figures of a run (path extent, noise scales, log-likelihood, MAP agreement, files, timings)."""
    q_P, q_T, sd = np.exp(inv.log_theta)
    summary = {
        "n_steps": int(len(problem.radius_um)),
        "P_range_kbar": (float(inv.mean[:, 0].min()), float(inv.mean[:, 0].max())),
        "T_range_C": (float(inv.mean[:, 1].min()), float(inv.mean[:, 1].max())),
        "q_P": float(q_P), "q_T": float(q_T), "sd": float(sd), "estimated": list(inv.estimated),
        "loglik": inv.loglik,
        "files": {k: str(v) for k, v in paths.items()},
        "timings": dict(timings),
    }
    if inv.map_path is not None:
        summary["map_rms_diff_P_kbar"] = float(np.sqrt(np.mean((inv.map_path[:, 0] - inv.mean[:, 0]) ** 2)))
        summary["map_rms_diff_T_C"] = float(np.sqrt(np.mean((inv.map_path[:, 1] - inv.mean[:, 1]) ** 2)))
    return summary


def _isopleths(problem: Problem, n: int = 70) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P grid, T grid, X (n, n, 4)) of the forward model over the plotted region."""
    (p_lo, p_hi), (t_lo, t_hi) = problem.box
    if problem.table is not None:
        t = problem.table
        p_lo, p_hi, t_lo, t_hi = t.P_kbar[0], t.P_kbar[-1], t.T_C[0], t.T_C[-1]
    P, T = np.linspace(p_lo, p_hi, n), np.linspace(t_lo, t_hi, n)
    PP, TT = np.meshgrid(P, T, indexing="ij")
    states = np.stack([PP.ravel(), TT.ravel()], axis=1)
    X = np.asarray(jax.jit(jax.vmap(problem.h, in_axes=(None, 0, None)))(problem.params, states, 0.0))[:, :4]
    return P, T, X.reshape(n, n, 4)


def _figures(out: Path, config: PtpathConfig, prob: Problem, inv: Inversion, sens: Sensitivity | None,
             truth: tuple | None) -> dict:
    """ptpath.png, profiles.png (and sensitivity.png); returns their paths."""

    from jaxpetro.io.plots import save_figure, subplots

    r = prob.radius_um
    pred_mean, pred_lo, pred_hi = inv.pred
    dpi = config.output.dpi
    paths = {}

    fig, axes = subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.3, 1, 1]}, layout="constrained")
    ax = axes[0]
    P, T, X = _isopleths(prob)
    for k, (name, style) in enumerate(zip(gm.ENDMEMBERS, ("-", "--", ":", "-."))):
        if name in ("X_grs", "X_prp", "X_sps"):
            cs = ax.contour(T, P, X[..., k], levels=8, colors="0.6", linestyles=style, linewidths=0.7)
            ax.clabel(cs, fontsize=6, fmt=f"{name[2:]} %.2f")
    rng = np.random.default_rng(0)
    for m in rng.choice(inv.smoothed.shape[1], size=min(25, inv.smoothed.shape[1]), replace=False):
        ax.plot(inv.smoothed[:, m, 1], inv.smoothed[:, m, 0], color="tab:blue", alpha=0.12, lw=0.6)
    every = max(1, len(r) // 12)
    sel = np.arange(0, len(r), every)
    ax.errorbar(inv.mean[sel, 1], inv.mean[sel, 0],
                xerr=[inv.mean[sel, 1] - inv.lo[sel, 1], inv.hi[sel, 1] - inv.mean[sel, 1]],
                yerr=[inv.mean[sel, 0] - inv.lo[sel, 0], inv.hi[sel, 0] - inv.mean[sel, 0]],
                fmt="none", ecolor="tab:blue", alpha=0.6, lw=0.8)
    sc = ax.scatter(inv.mean[:, 1], inv.mean[:, 0], c=r, cmap="viridis", s=12, zorder=3, label="smoothed mean")
    ax.plot(inv.mean[:, 1], inv.mean[:, 0], color="tab:blue", lw=1.2)
    if inv.map_path is not None:
        ax.plot(inv.map_path[:, 1], inv.map_path[:, 0], color="tab:orange", ls="--", lw=1, label="MAP")
    if truth is not None:
        ax.plot(truth[1], truth[0], color="k", ls=":", lw=1.5, label="truth")
    incl = prob.mask[:, 4]
    if incl.any():
        ax.errorbar(prob.y[incl, 5], prob.y[incl, 4], xerr=_Z90 * np.sqrt(prob.var[incl, 5]),
                    yerr=_Z90 * np.sqrt(prob.var[incl, 4]), fmt="s", color="tab:red", ms=4, label="inclusions")
    fig.colorbar(sc, ax=ax, label="radius (µm)")
    ax.set_xlabel("T (°C)")
    ax.set_ylabel("P (kbar)")
    ax.set_title("P–T path (90 % bands) over garnet isopleths")
    ax.legend(fontsize=7, loc="upper left")
    for ax, k, unit in ((axes[1], 0, "P (kbar)"), (axes[2], 1, "T (°C)")):
        ax.fill_between(r, inv.lo[:, k], inv.hi[:, k], color="tab:blue", alpha=0.25, label="90 % band")
        ax.plot(r, inv.mean[:, k], color="tab:blue", label="mean")
        if truth is not None:
            ax.plot(r, truth[k], color="k", ls=":", label="truth")
        ax.set_xlabel("radius (µm)")
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)
    paths["ptpath_png"] = save_figure(fig, out / "ptpath.png", dpi)

    fig, axes = subplots(2, 2, figsize=(10, 7), sharex=True, layout="constrained")
    for k, ax in enumerate(axes.ravel()):
        obs = prob.mask[:, k]
        sd = np.sqrt(np.where(np.isnan(prob.var[:, k]), np.exp(inv.log_theta[2]) ** 2, prob.var[:, k]))
        ax.errorbar(r[obs], prob.y[obs, k], yerr=sd[obs], fmt="o", ms=3, color="k", lw=0.6, label="observed")
        ax.fill_between(r, pred_lo[:, k], pred_hi[:, k], color="tab:green", alpha=0.3, label="predicted 90 %")
        ax.plot(r, pred_mean[:, k], color="tab:green", label="predicted")
        ax.set_title(gm.ENDMEMBERS[k])
        ax.set_xlabel("radius (µm)")
    axes[0, 0].legend(fontsize=7)
    paths["profiles_png"] = save_figure(fig, out / "profiles.png", dpi)

    if sens is not None:
        fig, axes = subplots(2, 4, figsize=(15, 7), sharex=True, sharey=True, layout="constrained")
        for row, key in enumerate(("dP_dX", "dT_dX")):
            J = getattr(sens, key)  # (n, n, 4): output shell, input shell, end-member
            lim = float(np.max(np.abs(J))) or 1.0
            for k in range(4):
                ax = axes[row, k]
                im = ax.imshow(J[:, :, k], cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower", aspect="auto",
                               extent=(r[0], r[-1], r[0], r[-1]))
                ax.set_title(f"∂{'P' if row == 0 else 'T'} / ∂{gm.ENDMEMBERS[k]}", fontsize=9)
                ax.set_xlabel("observed shell radius (µm)")
                if k == 0:
                    ax.set_ylabel("path radius (µm)")
            fig.colorbar(im, ax=axes[row].tolist(), label="kbar per unit fraction" if row == 0 else "°C per unit fraction")
        paths["sensitivity_png"] = save_figure(fig, out / "sensitivity.png", dpi)
    return paths


def recovery(inv: Inversion, P_true: np.ndarray, T_true: np.ndarray) -> dict:
    """RMSE of the smoothed mean and coverage of the 90 % band against a known path."""
    eP, eT = inv.mean[:, 0] - P_true, inv.mean[:, 1] - T_true
    inP = (P_true >= inv.lo[:, 0]) & (P_true <= inv.hi[:, 0])
    inT = (T_true >= inv.lo[:, 1]) & (T_true <= inv.hi[:, 1])
    return {
        "rmse_P_kbar": float(np.sqrt(np.mean(eP**2))),
        "rmse_T_C": float(np.sqrt(np.mean(eT**2))),
        "coverage_P": float(np.mean(inP)),
        "coverage_T": float(np.mean(inT)),
        "coverage": float(np.mean(np.concatenate([inP, inT]))),
    }


@float64
def run_demo(out_dir: Path, seed: int, quiet: bool = False) -> dict:
    """Invert a synthetic clockwise-path profile (60 shells, noise 0.005) with the demo table.

    Writes ``garnet_profile.csv`` and the workflow's outputs into ``out_dir`` and returns
    headline figures: RMSE in kbar and °C, 90 % band coverage, estimated noise scales.
    Default settings (hyperparameters estimated, 500 members, full-lag EnKS) without the MAP
    cross-check.
    """
    from jaxpetro.config.loader import load_config
    from jaxpetro.synthetic.garnet_profile import demo_table_path, make_garnet_profile

    out = prepare_out_dir(out_dir)
    table = demo_table_path()
    if not table.is_file():
        raise InputError(f"the demo forward table '{table}' is missing from the installation; reinstall jaxpetro.")
    synth = make_garnet_profile(read_table(table), seed=seed)
    profile = write_profile(out / "garnet_profile.csv", synth.radius_um, synth.X)
    # Default settings, except the MAP cross-check: its L-BFGS compilation would double the
    # demo's run time (the tests check the MAP separately).
    config = load_config({"profile": str(profile), "forward": {"kind": "table", "path": str(table)}, "seed": seed,
                          "map_check": False}, PtpathConfig)
    result = run_stages(config, out, quiet=quiet, truth=(synth.P_kbar, synth.T_C))
    figures = recovery(result.inversion, synth.P_kbar, synth.T_C)
    s = result.summary
    figures.update(n_shells=len(synth.radius_um), noise_sd=synth.noise_sd, q_P=s["q_P"], q_T=s["q_T"],
                   sd=s["sd"], files=s["files"])
    return figures


__all__ = [
    "BAND",
    "CSV_COLUMNS",
    "Exact",
    "GrowthTimes",
    "Inversion",
    "Predicted",
    "Problem",
    "PtpathRun",
    "Sensitivity",
    "build_problem",
    "check_inside_table",
    "growth_times",
    "invert",
    "recovery",
    "run",
    "run_demo",
    "run_stages",
    "sensitivity",
    "write_outputs",
]

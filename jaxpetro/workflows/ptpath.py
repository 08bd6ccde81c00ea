"""``jaxpetro ptpath``: P–T(–t) path of a zoned garnet by ensemble Kalman smoothing along radius.

Reads a zoning profile (:mod:`jaxpetro.io.profiles`), optional inclusion thermobarometry,
and a forward model (a table from :mod:`jaxpetro.io.perplex` or the linearised model of
:mod:`jaxpetro.models.garnet`). Radius is pseudo-time: the state (P, T) follows a random
walk along radius, the shells observe it through the forward model (SCIENCE.md §B).
Noise scales not given in the config are estimated by maximising the marginal
likelihood (exact Kalman for the linear model, the ensemble estimate for a table).

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
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.config.loader import config_to_yaml
from jaxpetro.errors import ConvergenceError, InputError
from jaxpetro.io.perplex import read_table
from jaxpetro.io.profiles import read_inclusions, read_profile, write_profile
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.kernels import enks
from jaxpetro.kernels import kalman as kf
from jaxpetro.models import garnet as gm

CSV_COLUMNS = ("radius_um", "P_kbar", "T_C", "P_sd", "T_sd", "P_lo", "P_hi", "T_lo", "T_hi")
BAND = (0.05, 0.95)  # the 90 % band
_Z90 = 1.6448536269514722  # normal quantile of 0.95


@dataclass(frozen=True)
class Problem:
    """Arrays of one inversion (all numpy; n steps = shells and inclusion-only radii).

    Attributes:
        radius_um: (n,) step radii; shell: (n,) bool, True for profile shells.
        y: (n, 6) observations (4 fractions, P, T of inclusions); mask: (n, 6) observed.
        var: (n, 6) measurement variances (fractions without an sd column: NaN, to be
            replaced by the common sd).
        h: forward function; params: its parameters; kind: 'table' or 'linear'.
        m0, P0: prior of the first step; box: ((Pmin, Pmax), (Tmin, Tmax)) prior ranges.
        table: the GarnetTable (table kind) or None.
    """

    radius_um: np.ndarray
    shell: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    var: np.ndarray
    h: Callable
    params: Any
    kind: str
    m0: np.ndarray
    P0: np.ndarray
    box: tuple
    table: Any


# ----------------------------------------------------------------------------- set-up


def build_problem(config: PtpathConfig) -> Problem:
    """Read the inputs named by ``config`` and assemble the state-space problem."""
    profile = read_profile(config.profile)
    incl = read_inclusions(config.inclusions) if config.inclusions else None
    fw = config.forward
    r_rim = fw.fractionation.r_rim_um or float(profile.radius_um[-1])
    frac = gm.Fractionation(jnp.asarray(fw.fractionation.K), jnp.asarray(fw.fractionation.f_rim), jnp.asarray(r_rim))
    if fw.kind == "table":
        table = read_table(fw.path)
        params = gm.params_from_table(table)._replace(frac=frac)
        h = gm.h_table
        valid_P = table.P_kbar[np.any(table.valid, axis=1)]
        valid_T = table.T_C[np.any(table.valid, axis=0)]
        box = ((float(valid_P.min()), float(valid_P.max())), (float(valid_T.min()), float(valid_T.max())))
    else:
        table = None
        lin = fw.linear
        params = gm.LinearParams(jnp.asarray(lin.X0), jnp.asarray(lin.P0), jnp.asarray(lin.T0),
                                 jnp.asarray(lin.A), jnp.asarray(lin.B), frac)
        h = gm.h_linear
        box = ((lin.P0 - 5.0, lin.P0 + 5.0), (lin.T0 - 150.0, lin.T0 + 150.0))
    if config.prior.P_kbar is not None:
        box = (tuple(config.prior.P_kbar), box[1])
    if config.prior.T_C is not None:
        box = (box[0], tuple(config.prior.T_C))
    m0 = np.array([np.mean(box[0]), np.mean(box[1])])
    P0 = np.diag([(np.diff(box[0])[0] / 4.0) ** 2, (np.diff(box[1])[0] / 4.0) ** 2])

    # Steps: every shell, plus inclusion radii that fall between shells (compositions masked there).
    radii = profile.radius_um
    if incl is not None:
        extra = [r for r in incl.radius_um if not np.any(np.isclose(radii, r, rtol=0, atol=1e-6))]
        radii = np.union1d(radii, np.asarray(extra, float))
    n = len(radii)
    shell = np.isin(radii, profile.radius_um)
    y = np.full((n, gm.N_OBS), np.nan)
    var = np.full((n, gm.N_OBS), np.nan)
    at = np.searchsorted(radii, profile.radius_um)
    y[at, :4] = profile.X
    sd = config.hyperparameters.sd
    if sd is not None:
        var[at, :4] = sd**2
    elif profile.sd is not None:
        var[at, :4] = profile.sd**2
    if incl is not None:
        idx = np.array([int(np.argmin(np.abs(radii - r))) for r in incl.radius_um])
        if len(np.unique(idx)) != len(idx):
            raise InputError(f"inclusion file '{incl.source}': two inclusions at the same radius; combine them into one row.")
        y[idx, 4], y[idx, 5] = incl.P_kbar, incl.T_C
        var[idx, 4], var[idx, 5] = incl.P_sd**2, incl.T_sd**2
    mask = np.isfinite(y)
    y = np.where(mask, y, 0.0)
    return Problem(radii, shell, y, mask, var, h, params, fw.kind, m0, P0, box, table)


class _Data(NamedTuple):
    """Arrays of a problem as a pytree (traced inside the compiled core)."""

    y: Any
    mask: Any
    var: Any  # measurement variances; 1 where the common sd applies
    common: Any  # True where the common (estimated or configured) sd applies
    radius: Any
    m0: Any
    P0: Any


def _data(problem: Problem) -> _Data:
    common = np.isnan(problem.var)
    return _Data(problem.y, problem.mask, np.where(common, 1.0, problem.var), common, problem.radius_um,
                 problem.m0, problem.P0)


def _noise(data: _Data, log_theta):
    """(R (n,6,6), Q (n,2,2)) from log (q_P, q_T, sd)."""
    q = jnp.exp(log_theta[:2])
    sd = jnp.exp(log_theta[2])
    var = jnp.where(data.common, sd**2, data.var)
    R = jax.vmap(jnp.diag)(var)
    dr = jnp.diff(data.radius, prepend=data.radius[:1])
    return R, kf.random_walk_noise(dr, q)


def _linear_model(data: _Data, params, log_theta) -> kf.LinearGaussianModel:
    """Exact state-space model of the linear forward model (no fractionation)."""
    p = params
    H = jnp.zeros((gm.N_OBS, 2)).at[:4, 0].set(p.A).at[:4, 1].set(p.B).at[4, 0].set(1.0).at[5, 1].set(1.0)
    b = jnp.zeros(gm.N_OBS).at[:4].set(p.X0 - p.A * p.P0 - p.B * p.T0)
    n = data.radius.shape[0]
    R, Q = _noise(data, log_theta)
    return kf.LinearGaussianModel(jnp.eye(2), Q, jnp.broadcast_to(H, (n, gm.N_OBS, 2)),
                                  jnp.broadcast_to(b, (n, gm.N_OBS)), R, data.m0, data.P0)


def _exact_linear(problem: Problem, config: PtpathConfig) -> bool:
    frac = config.forward.fractionation
    return problem.kind == "linear" and (frac.K == 1.0 or frac.f_rim == 0.0)


def _prior_ensemble(key, data: _Data, n_mem: int):
    z = jax.random.normal(key, (n_mem, 2))
    return data.m0 + z @ jnp.linalg.cholesky(data.P0).T


def _smooth(key, data, params, log_theta, X0, inflation, *, h, variant, lag, smoother):
    R, Q = _noise(data, log_theta)
    return enks.ensemble_smoother(key, h, params, X0, data.y, data.mask, R, Q, data.radius,
                                  inflation=inflation, variant=variant, lag=lag, smoother=smoother)


@functools.partial(jax.jit, static_argnames=(
    "h", "exact", "free", "variant", "lag", "smoother", "steps", "members", "size", "map_check"))
def _core(key, data: _Data, params, theta0, learning_rate, inflation, *, h, exact, free, variant, lag, smoother,
          steps, members, size, map_check):
    """Hyperparameters, smoother, exact reference (linear), MAP and predicted profile in one compiled call."""
    k_h, k_prior, k_run = jax.random.split(key, 3)
    k_hprior, k_hfilter = jax.random.split(k_h)
    free_j = jnp.asarray(free)
    if any(free):
        if exact:
            def loglik(theta):
                return kf.loglik(_linear_model(data, params, jnp.where(free_j, theta, theta0)), data.y, data.mask)
        else:
            X0h = _prior_ensemble(k_hprior, data, members)

            def loglik(theta):
                R, Q = _noise(data, jnp.where(free_j, theta, theta0))
                return enks.ensemble_loglik(k_hfilter, h, params, X0h, data.y, data.mask, R, Q, data.radius,
                                            variant=variant)

        best, history = enks.maximise(loglik, theta0, steps=steps, learning_rate=learning_rate)
        theta = jnp.where(free_j, best, theta0)
    else:
        theta, history = theta0, jnp.zeros(0)
    X0 = _prior_ensemble(k_prior, data, size)
    res = _smooth(k_run, data, params, theta, X0, inflation, h=h, variant=variant, lag=lag, smoother=smoother)
    out = {"theta": theta, "history": history, "smoothed": res.smoothed, "filtered": res.filtered,
           "loglik": res.loglik, "mean": jnp.mean(res.smoothed, axis=1)}
    if exact:
        ex = kf.rts_smoother(_linear_model(data, params, theta), data.y, data.mask)
        out.update(exact_mean=ex.mean_s, exact_sd=jnp.sqrt(jnp.diagonal(ex.cov_s, axis1=1, axis2=2)),
                   exact_loglik=ex.loglik, mean=ex.mean_s)
    if map_check:
        R, Q = _noise(data, theta)
        mp = enks.map_path(h, params, data.y, data.mask, R, Q, data.radius, data.m0, data.P0, out["mean"],
                           max_iter=300)
        out.update(map=mp.x, map_iter=mp.n_iter)
    pred = jax.vmap(jax.vmap(h, in_axes=(None, 0, None)), in_axes=(None, 0, 0))(params, res.smoothed, data.radius)
    out["pred"] = pred[..., :4]
    return out


def _start(problem: Problem, config: PtpathConfig) -> tuple[np.ndarray, tuple, list[str]]:
    """Initial log (q_P, q_T, sd), which of them are estimated, and their names."""
    hp = config.hyperparameters
    span_r = max(float(problem.radius_um[-1] - problem.radius_um[0]), 1e-6)
    (p_lo, p_hi), (t_lo, t_hi) = problem.box
    given = [hp.q_P, hp.q_T, hp.sd]
    # Starting guesses: a walk covering a quarter of the prior range over the profile, sd 0.01.
    start = [0.25 * (p_hi - p_lo) / np.sqrt(span_r), 0.25 * (t_hi - t_lo) / np.sqrt(span_r), 0.01]
    needs_sd = bool(np.any(np.isnan(problem.var[:, :4]) & problem.mask[:, :4]))
    free = (given[0] is None, given[1] is None, given[2] is None and needs_sd)
    theta0 = np.log([g if g is not None else s for g, s in zip(given, start)])
    return theta0, free, [n for n, f in zip(("q_P", "q_T", "sd"), free) if f]


# ----------------------------------------------------------------------------- inversion


@dataclass
class Inversion:
    """Numbers of one inversion (numpy)."""

    problem: Problem
    log_theta: np.ndarray
    estimated: list
    history: np.ndarray
    smoothed: np.ndarray  # (n, N, 2)
    filtered: np.ndarray
    loglik: float
    loglik_method: str
    mean: np.ndarray  # (n, 2)
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    map_path: np.ndarray | None
    map_iter: int
    exact: tuple | None  # (mean, sd) of the exact RTS smoother (linear model)
    pred: tuple  # (mean, lo, hi) of the predicted fractions, (n, 4) each


def invert(problem: Problem, config: PtpathConfig) -> Inversion:
    """Estimate hyperparameters, smooth, summarise (mean, sd, 90 % band), MAP cross-check."""
    theta0, free, names = _start(problem, config)
    ens, hp = config.ensemble, config.hyperparameters
    exact = _exact_linear(problem, config)
    out = _core(jax.random.key(config.seed), _data(problem), problem.params, jnp.asarray(theta0),
                hp.learning_rate, ens.inflation, h=problem.h, exact=exact, free=free, variant=ens.variant,
                lag=ens.lag, smoother=ens.smoother, steps=hp.steps, members=hp.members, size=ens.size,
                map_check=config.map_check)
    out = jax.tree_util.tree_map(np.asarray, out)
    theta = out["theta"]
    if not np.all(np.isfinite(theta)):
        raise ConvergenceError(
            "ptpath: the hyperparameter estimation produced non-finite noise scales; give "
            "hyperparameters.q_P, q_T and sd in the config, or check the profile for outliers."
        )
    Xs = out["smoothed"]
    if not np.all(np.isfinite(Xs)):
        raise ConvergenceError(
            "ptpath: the ensemble smoother produced non-finite states; try ensemble.variant: stochastic, "
            "a larger ensemble.size, or fixed hyperparameters."
        )
    mean, sd = Xs.mean(axis=1), Xs.std(axis=1, ddof=1)
    lo, hi = np.quantile(Xs, BAND[0], axis=1), np.quantile(Xs, BAND[1], axis=1)
    loglik, method, ex = float(out["loglik"]), "ensemble", None
    if exact:
        # Linear-Gaussian: the exact posterior is the answer (the ensemble stays in the HDF5).
        mean, sd = out["exact_mean"], out["exact_sd"]
        lo, hi = mean - _Z90 * sd, mean + _Z90 * sd
        loglik, method, ex = float(out["exact_loglik"]), "exact", (mean, sd)
    pred = out["pred"]
    pred_summary = (pred.mean(axis=1), np.quantile(pred, BAND[0], axis=1), np.quantile(pred, BAND[1], axis=1))
    return Inversion(problem, theta, names, out["history"], Xs, out["filtered"], loglik, method, mean, sd, lo, hi,
                     out.get("map"), int(out.get("map_iter", 0)), ex, pred_summary)


def check_inside_table(problem: Problem, inv: Inversion) -> None:
    """InputError if the smoothed path leaves the table's extent or enters missing nodes."""
    t = problem.table
    if t is None:
        return
    ok = gm.table_support(t.valid, t.P_kbar[0], t.dP, t.T_C[0], t.dT, inv.mean[:, 0], inv.mean[:, 1])
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise InputError(
            f"the P-T path leaves the forward table '{t.source}' at radius {problem.radius_um[i]:g} µm "
            f"(P = {inv.mean[i, 0]:.2f} kbar, T = {inv.mean[i, 1]:.0f} °C; the table covers "
            f"{t.P_kbar[0]:g}-{t.P_kbar[-1]:g} kbar, {t.T_C[0]:g}-{t.T_C[-1]:g} °C with "
            f"{int((~t.valid).sum())} missing nodes); extend the table over that region (or fill its holes) "
            f"and run again -- the path is never extrapolated."
        )


def sensitivity(problem: Problem, config: PtpathConfig, inv: Inversion) -> dict:
    """Jacobians of the smoothed mean path w.r.t. every observed fraction (and, for the
    linear model, its parameters X0, A, B), with the run's key (common random numbers)."""
    data = _data(problem)
    theta = jnp.asarray(inv.log_theta)
    out = {}
    if _exact_linear(problem, config):
        @jax.jit
        def jac(comp, params):
            def path(c, p):
                d = data._replace(y=jnp.asarray(data.y).at[:, :4].set(c))
                return kf.rts_smoother(_linear_model(d, p, theta), d.y, d.mask).mean_s

            return jax.jacrev(path, argnums=(0, 1))(comp, params)

        J_y, J_p = jac(jnp.asarray(problem.y[:, :4]), problem.params)
        for name in ("X0", "A", "B"):
            jp = np.asarray(getattr(J_p, name))  # (n, 2, 4)
            out[f"dP_d{name}"], out[f"dT_d{name}"] = jp[:, 0], jp[:, 1]
    else:
        ens = config.ensemble
        _, k_prior, k_run = jax.random.split(jax.random.key(config.seed), 3)

        @jax.jit
        def jac(comp):
            def path(c):
                d = data._replace(y=jnp.asarray(data.y).at[:, :4].set(c))
                X0 = _prior_ensemble(k_prior, d, ens.size)
                res = _smooth(k_run, d, problem.params, theta, X0, ens.inflation, h=problem.h, variant=ens.variant,
                              lag=ens.lag, smoother=ens.smoother)
                return jnp.mean(res.smoothed, axis=1)

            return jax.jacrev(path)(comp)

        J_y = jac(jnp.asarray(problem.y[:, :4]))
    J_y = np.asarray(J_y) * problem.mask[None, None, :, :4]  # (n, 2, n, 4); unobserved inputs: 0
    out["dP_dX"], out["dT_dX"] = J_y[:, 0], J_y[:, 1]
    return out


# ----------------------------------------------------------------------------- outputs


def _tick(progress, label):
    if progress is not None:
        progress.update()
        progress.set_postfix_str(label)


def _times(config: PtpathConfig, problem: Problem, inv: Inversion):
    g = config.growth
    if g.k0_um_per_Myr is None:
        return None
    T_K = inv.smoothed[..., 1].T + gm.KELVIN  # (N, n); numpy: no compilation for a few exponentials
    dr = np.diff(problem.radius_um, prepend=0.0)
    dt = dr / (g.k0_um_per_Myr * np.exp(-g.Q_J_per_mol / (gm.R_GAS * T_K)))
    t = np.cumsum(dt, axis=1)
    return t.mean(axis=0), np.quantile(t, BAND[0], axis=0), np.quantile(t, BAND[1], axis=0)


def write_outputs(out: Path, config: PtpathConfig, inv: Inversion, sens: dict | None, truth=None) -> dict:
    """Write ptpath.csv, ptpath.h5 and the figures; returns the paths written."""
    prob = inv.problem
    times = _times(config, prob, inv)
    header = list(CSV_COLUMNS) + (["t_Myr"] if times is not None else [])
    cols = [prob.radius_um, inv.mean[:, 0], inv.mean[:, 1], inv.sd[:, 0], inv.sd[:, 1],
            inv.lo[:, 0], inv.hi[:, 0], inv.lo[:, 1], inv.hi[:, 1]] + ([times[0]] if times is not None else [])
    rows = [[float(c[i]) for c in cols] for i in range(len(prob.radius_um))]
    paths = {"csv": write_csv(out / "ptpath.csv", header, rows)}
    pred_mean, pred_lo, pred_hi = inv.pred
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
        "predicted": {"mean": pred_mean, "lo": pred_lo, "hi": pred_hi, "names": list(gm.ENDMEMBERS)},
    }
    if times is not None:
        data["path"]["t_lo_Myr"], data["path"]["t_hi_Myr"] = times[1], times[2]
    if inv.map_path is not None:
        data["map"] = {"P_kbar": inv.map_path[:, 0], "T_C": inv.map_path[:, 1], "n_iter": inv.map_iter}
    if inv.exact is not None:
        data["exact"] = {"mean": inv.exact[0], "sd": inv.exact[1]}
    if sens is not None:
        data["sensitivity"] = sens
    paths["h5"] = write_hdf5(out / "ptpath.h5", data, run_attrs(config_to_yaml(config), config.seed))
    if config.output.plots:
        paths.update(_figures(out, config, inv, pred_mean, pred_lo, pred_hi, sens, truth))
    return paths


def _isopleths(problem: Problem, n: int = 70):
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


def _figures(out: Path, config: PtpathConfig, inv: Inversion, pred_mean, pred_lo, pred_hi, sens, truth) -> dict:
    """ptpath.png, profiles.png (and sensitivity.png); returns their paths."""
    import matplotlib.pyplot as plt

    from jaxpetro.io.plots import save_figure

    prob = inv.problem
    r = prob.radius_um
    dpi = config.output.dpi
    paths = {}

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.3, 1, 1]})
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

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
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
        fig, axes = plt.subplots(2, 4, figsize=(15, 7), sharex=True, sharey=True)
        for row, key in enumerate(("dP_dX", "dT_dX")):
            J = sens[key]  # (n, n, 4): output shell, input shell, end-member
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


def run(config: PtpathConfig, out_dir: Path, quiet: bool = False, truth=None) -> dict:
    """Run the workflow; returns a summary (path extent, hyperparameters, MAP agreement, files)."""
    out = prepare_out_dir(out_dir)
    progress = tqdm(total=3 + int(config.sensitivity), desc="ptpath", disable=quiet, unit="stage")
    progress.set_postfix_str("reading")
    problem = build_problem(config)
    _tick(progress, "inverting")
    inv = invert(problem, config)
    check_inside_table(problem, inv)
    sens = None
    if config.sensitivity:
        _tick(progress, "sensitivity")
        sens = sensitivity(problem, config, inv)
    _tick(progress, "writing")
    paths = write_outputs(out, config, inv, sens, truth)
    progress.close()
    q_P, q_T, sd = np.exp(inv.log_theta)
    summary = {
        "n_steps": int(len(problem.radius_um)),
        "P_range_kbar": (float(inv.mean[:, 0].min()), float(inv.mean[:, 0].max())),
        "T_range_C": (float(inv.mean[:, 1].min()), float(inv.mean[:, 1].max())),
        "q_P": float(q_P), "q_T": float(q_T), "sd": float(sd), "estimated": list(inv.estimated),
        "loglik": inv.loglik,
        "files": {k: str(v) for k, v in paths.items()},
    }
    if inv.map_path is not None:
        summary["map_rms_diff_P_kbar"] = float(np.sqrt(np.mean((inv.map_path[:, 0] - inv.mean[:, 0]) ** 2)))
        summary["map_rms_diff_T_C"] = float(np.sqrt(np.mean((inv.map_path[:, 1] - inv.mean[:, 1]) ** 2)))
    summary["_inversion"] = inv
    return summary


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
    summary = run(config, out, quiet=quiet, truth=(synth.P_kbar, synth.T_C))
    inv = summary.pop("_inversion")
    figures = recovery(inv, synth.P_kbar, synth.T_C)
    figures.update(n_shells=len(synth.radius_um), noise_sd=synth.noise_sd, q_P=summary["q_P"], q_T=summary["q_T"],
                   sd=summary["sd"], files=summary["files"])
    return figures

"""``jaxpetro ptpath``: P–T(–t) path of a zoned garnet by ensemble Kalman smoothing along radius.

Reads a zoning profile (:mod:`jaxpetro.io.profiles`), optional inclusion thermobarometry (full
2 x 2 covariance), line constraints (P = a + b T: an isomeke, one equilibrium), ages, and a
forward model (a table from :mod:`jaxpetro.io.perplex` or the linearised table of
:mod:`jaxpetro.models.garnet`). The state (P, T[, t, ln k0, Q, A0]) follows a random walk along
radius, or -- with a growth law -- in time, each shell's process noise proportional to the time
it took to grow at the member's own temperature; the shells observe it through the forward model
in closure coordinates with a forward-model error in R (:mod:`jaxpetro.models.ptpath_model`;
Kuwatani et al. 2012, 2018; equations in docs/ptpath.md). Noise scales not given in the config
are estimated by maximising the marginal likelihood (exact Kalman for the linear-Gaussian
model, the ensemble estimate otherwise); the ensemble Kalman smoother (Evensen 2003, 2009)
gives the path and its bands, the MRF posterior's MAP (L-BFGS) a deterministic cross-check and,
with ``mcmc.enabled``, NumPyro NUTS its reference sample (:mod:`jaxpetro.models.mrf`).

Stages: :func:`build_problem` (with :func:`jaxpetro.models.ptpath_model.check_profile_range`)
-> :func:`invert` -> :func:`check_inside_table` -> [:func:`sensitivity`] -> :func:`growth_times`
-> [:func:`mcmc`] -> :func:`write_outputs`.

Writes ``ptpath.csv`` (radius_um, P_kbar, T_C, P_sd, T_sd, P_lo, P_hi, T_lo, T_hi [, t_Myr
[, age_Ma]]; lo/hi bound the 90 % band), ``ptpath.h5`` (smoothed and filter ensembles, noise
scales, log-likelihood, MAP path, predicted profile, growth parameters, sensitivities, the
NUTS sample under ``mcmc/``; units on every dataset), ``ptpath_mcmc.csv`` (the NUTS summary,
same columns) and the figures ``ptpath.png`` (path over the forward model's isopleths) and
``profiles.png`` (observed vs predicted end-members), plus ``sensitivity.png`` with
``sensitivity: true``. Headline results (peak P–T, noise scales) go to stderr.
"""

from __future__ import annotations

import functools
import sys
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
from jaxpetro.io.profiles import read_ages, read_constraints, read_inclusions, read_profile, write_profile
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.kernels import enks
from jaxpetro.kernels import kalman as kf
from jaxpetro.models import garnet as gm
from jaxpetro.models import growth as gr
from jaxpetro.models import mrf
from jaxpetro.models import ptpath_model as pm
from jaxpetro.models.ptpath_model import Problem
from jaxpetro.workflows.stages import Stages

CSV_COLUMNS = ("radius_um", "P_kbar", "T_C", "P_sd", "T_sd", "P_lo", "P_hi", "T_lo", "T_hi")
BAND = (0.05, 0.95)  # the 90 % band
_Z90 = 1.6448536269514722  # normal quantile of 0.95
#: forward.kind thermo: most share of members at one step whose equilibrium may fail (their
#: prediction is a neutral placeholder: beyond a few the update is no longer the model's)
MAX_FAILED = 0.05
#: Units of the state components (HDF5 ``units`` of the ensembles, by state name).
STATE_UNITS = {"P_kbar": "kbar", "T_C": "degC", "t_Myr": "Myr", "ln_k0": "ln(um/Myr)", "Q_J_per_mol": "J/mol",
               "A0_Ma": "Ma", **{f"ln_bulk_{w}{c}": "ln(mol per 100 g of rock)" for w in ("", "before_") for c in
                                 ("SiO2", "TiO2", "Al2O3", "FeO", "MgO", "MnO", "CaO", "Na2O", "K2O", "H2O", "O")}}


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
        log_theta: log (q_P, q_T, sd, model_sd) used; estimated: names of the estimated ones;
            history: log-likelihood per Adam step (empty when nothing was estimated).
        smoothed, filtered: ensembles (n, N, d); loglik, loglik_method: 'exact' or 'ensemble'.
        mean, sd, lo, hi: the path summary (n, d) (exact posterior for a linear-Gaussian model).
        map_path: MAP states (n, d) or None; map_iter: its L-BFGS iterations (0 without).
        exact: exact posterior (linear-Gaussian model) or None; pred: predicted fractions.
        failed: forward.kind thermo: share of members per step whose equilibrium failed (over the
            filter's and the smoother's ensembles together), else None.
        log_corr: log (model_corr_sd, model_corr_um) of the correlated forward-model error, or None
            (off); ies: the iterative smoother's ``converged``, ``accepted`` (share of members whose
            last step was accepted) and ``evidence`` (linearised log marginal likelihood, nats;
            None without the correlated error), or None (no iteration).
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
    failed: np.ndarray | None = None
    log_corr: np.ndarray | None = None
    ies: dict | None = None


@dataclass(frozen=True)
class Sensitivity:
    """Jacobians of the smoothed mean path (P and T per step): w.r.t. every measured fraction as
    read (n, n, 4: output step, input step, end-member; through the closure's renormalisation
    and its delta-method covariance), and for the linear model w.r.t. its parameters X0, A, B
    ((n, 4) each; None for a table). Field names are the HDF5 dataset names."""

    dP_dX: np.ndarray
    dT_dX: np.ndarray
    dP_dX0: np.ndarray | None = None
    dT_dX0: np.ndarray | None = None
    dP_dA: np.ndarray | None = None
    dT_dA: np.ndarray | None = None
    dP_dB: np.ndarray | None = None
    dT_dB: np.ndarray | None = None


class GrowthTimes(NamedTuple):
    """Time since nucleation per step (Myr): mean and 90 % band over an ensemble (the state's
    clock for the time walk; computed from the smoothed T for the radius walk); with ages also
    the absolute age A0 - t (Ma) and the growth parameters (mean, sd) estimated from them."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    age: np.ndarray | None = None
    age_lo: np.ndarray | None = None
    age_hi: np.ndarray | None = None
    constants: dict | None = None


class McmcRun(NamedTuple):
    """The NUTS reference posterior: the sample and its summary (mean, sd, 90 % band, (n, d))."""

    result: mrf.NutsResult
    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    times: GrowthTimes | None


class PtpathRun(NamedTuple):
    """Everything one run produced (returned by :func:`run_stages`)."""

    problem: Problem
    inversion: Inversion
    sensitivity: Sensitivity | None
    paths: dict
    summary: dict
    mcmc: McmcRun | None = None


# ----------------------------------------------------------------------------- the workflow


@float64
def run(config: PtpathConfig, out_dir: Path, quiet: bool = False, truth: tuple | None = None) -> dict:
    """Run the workflow; returns a summary (path extent, peak P–T, noise scales, MAP agreement,
    files, timings); prints the headline figures on stderr unless ``quiet``.

    ``truth`` (P, T arrays per step) is drawn on the figures when given (the demo)."""
    return run_stages(config, out_dir, quiet, truth).summary


@float64
def run_stages(config: PtpathConfig, out_dir: Path, quiet: bool = False, truth: tuple | None = None,
               inverted: tuple[Problem, Inversion] | None = None) -> PtpathRun:
    """The stages of :func:`run`, returning every stage result. ``inverted``: the problem and its
    inversion computed already (the batched runs of :mod:`jaxpetro.workflows.ptpath_batch`)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(4 + int(config.sensitivity) + int(config.mcmc.enabled), "ptpath", quiet)
    with stages.stage("read_s", "reading"):
        problem = build_problem(config) if inverted is None else inverted[0]
        pm.check_profile_range(problem)  # before inverting: a table that cannot produce the garnet
    with stages.stage("invert_s", "inverting"):
        inv = invert(problem, config) if inverted is None else inverted[1]
        check_inside_table(problem.table, problem.radius_um, inv.mean)
    sens = None
    if config.sensitivity:
        with stages.stage("sensitivity_s", "sensitivity"):
            sens = sensitivity(problem, config, inv)
    with stages.stage("times_s", "time axis"):
        times = growth_times(problem, inv.smoothed, config)
    chain = None
    if config.mcmc.enabled:
        with stages.stage("mcmc_s", "NUTS reference"):
            chain = mcmc(problem, config, inv)
    with stages.stage("write_s", "writing"):
        paths = write_outputs(out, config, problem, inv, times, sens, truth, chain)
    stages.close()
    summary = _summary(problem, inv, times, chain, paths, stages.timings)
    if not quiet:
        _report(summary)
    return PtpathRun(problem, inv, sens, paths, summary, chain)


def build_problem(config: PtpathConfig) -> Problem:
    """Read the inputs named by ``config`` and assemble the state-space problem."""
    profile = read_profile(config.profile)
    incl = read_inclusions(config.inclusions) if config.inclusions else None
    lines = read_constraints(config.constraints) if config.constraints else None
    ages = read_ages(config.ages) if config.ages else None
    table = read_table(config.forward.path) if config.forward.kind == "table" else None
    bulk = thermo_bulk(config) if config.forward.kind == "thermo" else None
    return pm.build_problem(profile, incl, table, config, constraints=lines, ages=ages, bulk=bulk)


def _read_qmap_bulk(path: str, domain: str) -> dict[str, float]:
    """wt% of the row ``domain`` of a qmap ``bulk.csv`` (columns region, <oxides>, total)."""
    import csv

    p = Path(path)
    if not p.is_file():
        raise InputError(f"forward.bulk_from: file '{path}' not found; give the bulk.csv of a qmap run "
                         f"(<qmap out>/bulk.csv).")
    with p.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0].strip() != "region":
        raise InputError(f"forward.bulk_from: '{path}' line 1 must be the qmap header 'region,<oxides...>,total', "
                         f"got {rows[0] if rows else 'an empty file'}.")
    header = [h.strip() for h in rows[0]]
    names = [r[0].strip() for r in rows[1:] if r]
    if domain not in names:
        raise InputError(f"forward.domain = '{domain}': no such row in '{path}'; its rows are {', '.join(names)}.")
    line = 2 + names.index(domain)
    row = rows[line - 1]
    out = {}
    for name, cell in zip(header[1:], row[1:]):
        if name == "total":
            continue
        try:
            value = float(cell)
        except ValueError:
            raise InputError(f"forward.bulk_from: '{path}' line {line}, column {name}: not a number ({cell!r}).") from None
        if not np.isfinite(value):
            raise InputError(f"forward.bulk_from: '{path}' line {line} ({domain}), column {name} is {cell}: the "
                             f"domain has no analysed pixel; choose another forward.domain.")
        out[name] = value
    return out


def thermo_bulk(config: PtpathConfig) -> np.ndarray:
    """The reactive bulk at the core (component moles per 100 g of rock, :data:`jaxpetro.thermo.bulk.COMPONENTS`)
    of ``forward.kind: thermo``: ``forward.bulk`` (oxide wt% or element moles), or the row
    ``forward.domain`` (default ``section``) of a qmap ``bulk.csv`` plus ``forward.bulk_extra_wt``.
    A qmap oxide outside the thermodynamic system (e.g. Cr2O3, P2O5) is left out with a warning;
    Fe2O3 counts as FeO + O."""
    from jaxpetro.thermo.bulk import COMPONENTS, components_from_elements, components_from_wt

    f = config.forward
    if f.bulk is not None:
        if f.bulk.oxides_wt:
            return components_from_wt(dict(f.bulk.oxides_wt), where="forward.bulk.oxides_wt")
        return components_from_elements(dict(f.bulk.elements_mol), where="forward.bulk.elements_mol")
    domain = f.domain or "section"
    wt = _read_qmap_bulk(f.bulk_from, domain)
    if "Fe2O3" in wt:  # Fe2O3 = 2 FeO + O by mass: 143.69 / 159.69 of it is FeO
        fe2o3 = wt.pop("Fe2O3")
        wt["FeO"] = wt.get("FeO", 0.0) + fe2o3 * 2 * 71.844 / 159.687
        wt["O"] = wt.get("O", 0.0) + fe2o3 * 15.999 / 159.687
    left = sorted(k for k in wt if k not in COMPONENTS)
    if left:
        print(f"warning: forward.bulk_from: {', '.join(left)} of '{domain}' are not in the thermodynamic system "
              f"and are left out of the reactive bulk.", file=sys.stderr)
    wt = {k: v for k, v in wt.items() if k in COMPONENTS}
    for k, v in f.bulk_extra_wt.items():
        wt[k] = wt.get(k, 0.0) + float(v)
    return components_from_wt(wt, where=f"forward.bulk_from ({domain})")


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
    failed: Any = None
    log_corr: Any = None
    ies_converged: Any = None
    ies_accepted: Any = None
    evidence: Any = None
    mh_accept: Any = None


def _smooth(key, data: pm.Data, params, log_theta, X0, options: enks.SmootherOptions, h,
            transition) -> enks.EnsembleResult:
    R, Q = pm.noise(data, log_theta)
    return enks.ensemble_smoother(key, h, params, X0, jnp.asarray(data.y), jnp.asarray(data.mask), R, Q, data.aux,
                                  options=options, transition=transition)


def _predict(h, params, X, aux):
    """h over an ensemble (n, N, d) with per-step aux: (n, N, 8)."""
    return jax.vmap(jax.vmap(h, in_axes=(None, 0, None)), in_axes=(None, 0, 0))(params, X, aux)


@functools.lru_cache(maxsize=None)
def _path_forward(h):
    """The whole profile's predicted observations (n 8,) as a function of the whitened path
    coordinates, ``g((data, params, log_theta), u)`` (one stable function per h: a static
    argument of the iterative smoother)."""
    def g(p, u):
        data, params, log_theta = p
        X = mrf.states(mrf.free_of_whitened(u, data, params, log_theta), data, params)[0]
        return mrf.predict(X, data, params, h)

    return g


def _members_path(U, data, params, log_theta):
    """States (n, N, d) of whitened members U (N, m)."""
    X = jax.vmap(lambda u: mrf.states(mrf.free_of_whitened(u, data, params, log_theta), data, params)[0])(U)
    return jnp.swapaxes(X, 0, 1)


def _neutralised(C, mask):
    m = mask.astype(C.dtype)
    return C * m[:, None] * m[None, :] + jnp.diag(1.0 - m)


def _iterate(key, data: pm.Data, params, theta, X_start, options: pm.Options, h, model_sd_free: bool):
    """The iterative ensemble smoother over the whole profile (:func:`jaxpetro.kernels.enks.iterative_smoother`)
    in the whitened path coordinates (:func:`jaxpetro.models.mrf.free_of_whitened`: its posterior
    is the MRF posterior), started from the EnKS members ``X_start`` (n, N, d).

    With a correlated forward-model error (``options.corr`` not None) the first pass (without
    it) gives the ensemble-averaged sensitivity G and mean; its scales (and ``model_sd`` when
    estimated) are then estimated by maximising the marginal likelihood of the model
    linearised there, ``y ~ N(mean g - G mean u, G G^T + C)`` (exact for a linear model), and a
    second pass starts from the first's members with them. Returns (states (n, N, d), log_theta,
    log_corr or None, result, evidence or None)."""
    k_u, k_e = jax.random.split(key)
    n_mem = X_start.shape[1]
    live = _live(data)
    # drawn (m, N) and the coordinates of steps after the last observed one held at 0: a profile
    # padded with unobserved steps (ptpath_batch) gets the same numbers as alone
    U0 = jax.random.normal(k_u, (mrf.n_whitened(data), n_mem), jnp.asarray(data.m0).dtype).T * live[None, :]
    U_start = jax.vmap(lambda x: mrf.whitened_of_free(mrf.free_of(x, data), data, params, theta), in_axes=1)(X_start)
    U_start = U_start * live[None, :]
    g = _path_forward(h)
    d = jnp.asarray(data.y).reshape(-1)
    mask = jnp.asarray(data.mask).reshape(-1)

    def run(th, log_corr, start):
        C = pm.path_covariance(data, th, log_corr)
        return enks.iterative_smoother(k_e, g, (data, params, th), U0, d, mask, C, start, options=options.ies)

    res = run(theta, None, U_start)
    if options.corr is None:
        U, acc = _correct(jax.random.fold_in(key, 3), data, params, theta, None, res.U, options, h)
        return _members_path(U, data, params, theta), theta, None, res, None, acc
    ubar = jnp.mean(res.U, axis=0)
    gbar = jnp.mean(jax.vmap(lambda u: g((data, params, theta), u))(res.U), axis=0)
    r = jnp.where(mask, d - gbar + res.G @ ubar, 0.0)
    GG = res.G @ res.G.T
    start, lower, upper = pm.corr_start(data, options.corr)
    sd_lo, sd_hi = (np.log(pm.SD_RANGE[0]), np.log(pm.SD_RANGE[1])) if model_sd_free else (theta[3], theta[3])
    v0 = jnp.concatenate([theta[3:4], start])
    lo = jnp.concatenate([jnp.reshape(jnp.asarray(sd_lo, v0.dtype), (1,)), lower])
    hi = jnp.concatenate([jnp.reshape(jnp.asarray(sd_hi, v0.dtype), (1,)), upper])

    def evidence(v):
        C0 = _neutralised(pm.path_covariance(data, theta.at[3].set(v[0]), v[1:]), mask)
        S = GG + C0
        L = jnp.linalg.cholesky(0.5 * (S + S.T))
        w = jax.scipy.linalg.solve_triangular(L, r, lower=True)
        return -0.5 * jnp.sum(w * w) - jnp.sum(jnp.log(jnp.diagonal(L)))

    best, _ = enks.maximise(evidence, v0, options.maximise, bounds=(lo, hi))
    theta2 = theta.at[3].set(best[0])
    res2 = run(theta2, best[1:], res.U)
    U, acc = _correct(jax.random.fold_in(key, 3), data, params, theta2, best[1:], res2.U, options, h)
    return _members_path(U, data, params, theta2), theta2, best[1:], res2, evidence(best), acc


def _live(data: pm.Data):
    """Whitened coordinates that carry information (m,): the static parameters and every step up
    to the last one with an observation (later steps are the prior's walk alone)."""
    observed = jnp.any(jnp.asarray(data.mask), axis=1)
    n = observed.shape[0]
    last = jnp.max(jnp.where(observed, jnp.arange(n), 0))
    steps = jnp.repeat(jnp.arange(n) <= last, 2)
    return jnp.concatenate([jnp.ones(mrf.n_static(data), bool), steps]).astype(jnp.asarray(data.m0).dtype)


def _correct(key, data: pm.Data, params, theta, log_corr, U, options: pm.Options, h):
    """Metropolis-Hastings correction of the iterated ensemble toward the exact MRF posterior in
    the whitened coordinates, ``log p(u | y) = -|u|²/2 - |L^-1 (y - g(u))|²/2`` (+ const;
    :func:`jaxpetro.kernels.enks.gaussian_mh`): randomised maximum likelihood is exact only for a
    linear model; on a skewed posterior its ensemble sits between the mode and the mean.
    Returns (members, mean acceptance of the last step; None without steps)."""
    steps = options.ies.ies_mh_steps
    if steps == 0:
        return U, None
    L = mrf.chol_path_covariance(data, theta, log_corr)
    d = jnp.asarray(data.y).reshape(-1)
    mask = jnp.asarray(data.mask).reshape(-1)
    res = enks.gaussian_mh(key, _whitened_logp(h), (data, params, theta, L, d, mask), U, steps=steps,
                           live=_live(data) > 0)
    return res.U, res.accept[-1]


@functools.lru_cache(maxsize=None)
def _whitened_logp(h):
    """log p(u | y) of the whitened coordinates for the observation function h (one stable
    function per h: a static argument)."""
    g = _path_forward(h)

    def logp(p, u):
        data, params, theta, L, d, mask = p
        r = jnp.where(mask, d - g((data, params, theta), u), 0.0)
        return -0.5 * jnp.sum(u * u) - 0.5 * jnp.sum(jax.scipy.linalg.solve_triangular(L, r, lower=True) ** 2)

    return logp


@functools.partial(jax.jit, static_argnames=("h", "transition", "exact", "free", "map_check"))
def _core(key, data: pm.Data, params, theta0, options: pm.Options, bounds, *, h, transition, exact: bool,
          free: tuple, map_check: bool):
    """Noise scales, smoother, exact reference (linear), MAP and predicted profile in one compiled call."""
    k_h, k_prior, k_run = jax.random.split(key, 3)
    k_hprior, k_hfilter = jax.random.split(k_h)
    free_j = jnp.asarray(free)
    y, mask = jnp.asarray(data.y), jnp.asarray(data.mask)
    if any(free):
        if exact:
            def loglik(theta):
                return kf.loglik(pm.linear_model(data, params, jnp.where(free_j, theta, theta0)), y, mask)
        else:
            X0h = pm.prior_draws(k_hprior, data, params, options.likelihood.size)

            def loglik(theta):
                R, Q = pm.noise(data, jnp.where(free_j, theta, theta0))
                return enks.ensemble_loglik(k_hfilter, h, params, X0h, y, mask, R, Q, data.aux,
                                            options=options.likelihood, transition=transition)

        best, history = enks.maximise(loglik, theta0, options.maximise, bounds=bounds)
        theta = jnp.where(free_j, best, theta0)
    else:
        theta, history = theta0, jnp.zeros(0)
    X0 = pm.prior_draws(k_prior, data, params, options.smoother.size)
    res = _smooth(k_run, data, params, theta, X0, options.smoother, h, transition)
    smoothed = res.smoothed
    extra = {}
    log_corr = None
    if options.ies is not None and not isinstance(params.forward, pm.ThermoForward):
        # the whole-profile iteration, from the EnKS members (a key of its own: the EnKS draws unchanged)
        smoothed, theta, log_corr, ires, ev, acc = _iterate(jax.random.fold_in(key, 11), data, params, theta,
                                                       res.smoothed, options, h, bool(free[3]))
        extra.update(ies_converged=ires.status.converged, ies_accepted=ires.accepted, log_corr=log_corr,
                     evidence=ev, mh_accept=acc)
    mean = jnp.mean(smoothed, axis=1)
    if exact:
        if log_corr is None:
            ex = kf.rts_smoother(pm.linear_model(data, params, theta), y, mask)
            ex_mean, ex_sd, ex_ll = ex.mean_s, jnp.sqrt(jnp.diagonal(ex.cov_s, axis1=1, axis2=2)), ex.loglik
        else:  # correlated between shells: the whole profile conditioned as one Gaussian
            ex_mean, ex_sd, ex_ll = mrf.exact_whole_path(data, params, theta, log_corr, h)
        mean = ex_mean
        extra.update(exact_mean=ex_mean, exact_sd=ex_sd, exact_loglik=ex_ll)
    if map_check:
        chol_C = None if log_corr is None else mrf.chol_path_covariance(data, theta, log_corr)
        mp, states = mrf.map_path(data, params, theta, mrf.free_of(mean, data), h=h, options=pm.MAP_OPTIONS,
                                  chol_C=chol_C)
        extra.update(map=states, map_iter=mp.status.iterations)
    if isinstance(params.forward, pm.ThermoForward):
        # one equilibrium per member for both ensembles: the predicted profile and the failures
        n = res.smoothed.shape[1]
        pred4, failed = pm.thermo_predict(params, jnp.concatenate([res.smoothed, res.filtered], axis=1), data.aux)
        pred4 = pred4[:, :n]
        extra["failed"] = failed  # share over both ensembles
    else:
        pred4 = _predict(h, params, smoothed, data.aux)[..., :4]
    return _CoreOut(theta, history, smoothed, res.filtered, res.loglik, mean, pred4, **extra)


def _bands(X: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sd, 5 % and 95 % quantiles) of samples along ``axis``."""
    return (X.mean(axis=axis), X.std(axis=axis, ddof=1), np.quantile(X, BAND[0], axis=axis),
            np.quantile(X, BAND[1], axis=axis))


def core_statics(problem: Problem, config: PtpathConfig, hyper: pm.HyperStart) -> dict:
    """The static arguments of :func:`_core` for ``problem`` (also used by the batched runs of
    :mod:`jaxpetro.workflows.ptpath_batch`)."""
    # the MRF's MAP has no fractionation history (each shell's bulk depends on the path before
    # it): no cross-check for the thermo model
    return {"h": problem.h, "transition": problem.transition, "exact": pm.exact_linear(problem, config),
            "free": hyper.free, "map_check": config.map_check and problem.kind != "thermo"}


def invert(problem: Problem, config: PtpathConfig) -> Inversion:
    """Estimate the noise scales, smooth, summarise (mean, sd, 90 % band), MAP cross-check."""
    hyper = pm.start(problem, config.hyperparameters)
    statics = core_statics(problem, config, hyper)
    out = _core(jax.random.key(config.seed), pm.data_of(problem), problem.params, jnp.asarray(hyper.log_theta),
                pm.smoother_options(config), (jnp.asarray(hyper.lower), jnp.asarray(hyper.upper)), **statics)
    return finish_inversion(problem, config, hyper, statics["exact"], jax.tree_util.tree_map(np.asarray, out))


def finish_inversion(problem: Problem, config: PtpathConfig, hyper: pm.HyperStart, exact: bool,
                     out: _CoreOut) -> Inversion:
    """The checks and the path summary of :func:`_core`'s outputs (numpy) for ``problem``."""
    if out.failed is not None and float(out.failed.max()) > MAX_FAILED:
        i = int(np.argmax(out.failed))
        raise ConvergenceError(
            f"ptpath: the equilibrium failed for {100 * float(out.failed[i]):.0f} % of the members at radius "
            f"{problem.radius_um[i]:g} µm (more than {100 * MAX_FAILED:g} %): the assemblage "
            f"{', '.join(config.forward.assemblage)} cannot be solved where the ensemble is; narrow prior.P_kbar / "
            f"prior.T_C to the assemblage's field, raise forward.solver.max_iter, or check forward.assemblage.")
    if not np.all(np.isfinite(out.theta[np.asarray(hyper.free)])):
        raise ConvergenceError(
            "ptpath: the noise-scale estimation produced non-finite values; give hyperparameters.q_P, q_T, sd "
            "(and model_sd) in the config, or check the profile for outliers."
        )
    _warn_at_bounds(out.theta, hyper, problem.walk)
    Xs = out.smoothed
    if not np.all(np.isfinite(Xs)):
        raise ConvergenceError(
            "ptpath: the ensemble smoother produced non-finite states; try ensemble.variant: stochastic, "
            "a larger ensemble.size, or fixed hyperparameters."
        )
    mean, sd, lo, hi = _bands(Xs, 1)
    loglik, method, ex = float(out.loglik), "ensemble", None
    if exact:
        # Linear-Gaussian: the exact posterior is the answer (the ensemble stays in the HDF5).
        mean, sd = out.exact_mean, out.exact_sd
        lo, hi = mean - _Z90 * sd, mean + _Z90 * sd
        loglik, method, ex = float(out.exact_loglik), "exact", Exact(mean, sd)
    pred = Predicted(out.pred.mean(axis=1), np.quantile(out.pred, BAND[0], axis=1), np.quantile(out.pred, BAND[1], axis=1))
    ies = None
    if out.ies_converged is not None:
        ies = {"converged": bool(out.ies_converged), "accepted": float(out.ies_accepted),
               "evidence": None if out.evidence is None else float(out.evidence),
               "mh_accept": None if out.mh_accept is None else float(out.mh_accept)}
    names = list(hyper.names)
    if out.log_corr is not None:
        _warn_corr_at_bounds(problem, np.asarray(out.log_corr), config)
        names += [n for n, v in zip(pm.CORR_NAMES, (config.hyperparameters.model_corr_sd,
                                                    config.hyperparameters.model_corr_um)) if v is None]
    return Inversion(out.theta, names, out.history, Xs, out.filtered, loglik, method, mean, sd, lo, hi,
                     out.map, int(out.map_iter) if out.map_iter is not None else 0, ex, pred, out.failed,
                     None if out.log_corr is None else np.asarray(out.log_corr), ies)


def _warn_at_bounds(theta: np.ndarray, hyper: pm.HyperStart, walk: str) -> None:
    """One warning line per estimated noise scale that ended on the edge of its search range
    (:data:`jaxpetro.models.ptpath_model.WALK_SPREAD`, ``SD_RANGE``): the likelihood wanted to go
    further, so the profile, the forward model or the prior range is probably not what the model
    assumes -- the scale is then a bound, not an estimate."""
    unit = "Myr" if walk == "time" else "um"
    units = (f"kbar/sqrt({unit})", f"degC/sqrt({unit})", "", "")
    for k, name in enumerate(pm.HYPER_NAMES):
        if not hyper.free[k]:
            continue
        for side, edge in (("lower", hyper.lower[k]), ("upper", hyper.upper[k])):
            if name == "model_sd" and side == "lower":
                continue  # a forward model without error is the ordinary answer of a well-specified table
            if abs(float(theta[k]) - float(edge)) < 1e-6:
                print(f"warning: ptpath: hyperparameters.{name} was estimated at the {side} end of its search range "
                      f"({float(np.exp(edge)):.3g} {units[k]}); the likelihood would take it further, so the profile, "
                      f"the forward model or the prior range does not fit the model well -- check profiles.png, or "
                      f"give hyperparameters.{name} in the config.", file=sys.stderr)


def _warn_corr_at_bounds(problem: Problem, log_corr: np.ndarray, config: PtpathConfig) -> None:
    """A warning when the correlated error's length was estimated on an edge of its range (its sd
    at the lower edge is the ordinary answer for a well-specified forward model: no warning)."""
    if config.hyperparameters.model_corr_um is not None:
        return
    data = pm.data_of(problem)
    _, lower, upper = (np.asarray(a) for a in pm.corr_start(data, np.full(2, np.nan)))
    sd = float(np.exp(log_corr[0]))
    # a correlated sd below 0.002 (smaller than any microprobe sd) matters little whatever its length
    if sd > 0.002 and (abs(log_corr[1] - lower[1]) < 1e-6 or abs(log_corr[1] - upper[1]) < 1e-6):
        side = "lower" if abs(log_corr[1] - lower[1]) < 1e-6 else "upper"
        print(f"warning: ptpath: hyperparameters.model_corr_um was estimated at the {side} end of its search range "
              f"({float(np.exp(log_corr[1])):.3g} um; model_corr_sd {sd:.3g}): the forward-model error is "
              f"{'not correlated between shells' if side == 'lower' else 'practically a constant bias'} -- check "
              f"profiles.png, or give hyperparameters.model_corr_um.", file=sys.stderr)


def check_inside_table(table: Any, radius_um: np.ndarray, mean: np.ndarray) -> None:
    """InputError if the smoothed mean path (n, ≥2: P, T first) at ``radius_um`` leaves the forward
    table's extent or enters cells touching its missing nodes (``table`` None: the linear model,
    no check)."""
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
    """Jacobians of the smoothed mean path w.r.t. every measured fraction (through the closure
    coordinates and their covariance) and, for the linear model, its parameters X0, A, B; with
    the run's key (common random numbers)."""
    data = pm.data_of(problem)
    theta = jnp.asarray(inv.log_theta)
    X_in = jnp.asarray(np.nan_to_num(problem.X_meas))  # missing inputs: any finite value (masked)
    closed = jnp.asarray(problem.closed)

    def with_fractions(X):
        y4, J = pm.fraction_observations(X, closed, problem.drop)
        mask4 = jnp.asarray(problem.mask[:, :4])
        return data._replace(y=jnp.asarray(data.y).at[:, :4].set(jnp.where(mask4, y4, 0.0)), J=J)

    linear = {}
    if pm.exact_linear(problem, config):
        @jax.jit
        def jac(X, params):
            def path(X, p):
                d = with_fractions(X)
                return kf.rts_smoother(pm.linear_model(d, p, theta), jnp.asarray(d.y), jnp.asarray(d.mask)).mean_s

            return jax.jacrev(path, argnums=(0, 1))(X, params)

        J_y, J_p = jac(X_in, problem.params)
        for name in ("X0", "A", "B"):
            jp = np.asarray(getattr(J_p.forward, name))  # (n, 2, 4)
            linear[f"dP_d{name}"], linear[f"dT_d{name}"] = jp[:, 0], jp[:, 1]
    else:
        options = pm.smoother_options(config).smoother
        _, k_prior, k_run = jax.random.split(jax.random.key(config.seed), 3)

        @jax.jit
        def jac(X):
            def path(X):
                d = with_fractions(X)
                X0 = pm.prior_draws(k_prior, d, problem.params, options.size)
                res = _smooth(k_run, d, problem.params, theta, X0, options, problem.h, problem.transition)
                return jnp.mean(res.smoothed, axis=1)[:, :2]

            return jax.jacrev(path)(X)

        J_y = jac(X_in)
    J_y = np.asarray(J_y) * np.isfinite(problem.X_meas)[None, None]  # (n, 2, n, 4); unmeasured inputs: 0
    return Sensitivity(J_y[:, 0], J_y[:, 1], **linear)


def growth_times(problem: Problem, X: np.ndarray, config: PtpathConfig) -> GrowthTimes | None:
    """Time since nucleation of each step over an ensemble or sample ``X`` (n, N, d): the state's
    own clock for the time walk (with ages also A0 - t and the growth parameters), else from the
    growth law at each member's T afterwards, ``t_n = Σ_{m≤n} D_m / g(T_m)`` (None without a law)."""
    g = config.growth
    if problem.walk == "time":
        t = X[..., gr.TIME]  # (n, N)
    elif g.k0_um_per_Myr is not None:
        D = gr.radial_steps(problem.radius_um, g.radius_exponent, g.r_ref_um)
        rate = np.asarray(gr.rate_constant(X[..., gr.T], np.log(g.k0_um_per_Myr), g.Q_J_per_mol))
        t = np.cumsum(D[:, None] / rate, axis=0)
    else:
        return None
    mean, _, lo, hi = _bands(t, 1)
    if not problem.with_ages:
        return GrowthTimes(mean, lo, hi)
    age = X[..., gr.AGE0] - t
    _, _, a_lo, a_hi = _bands(age, 1)
    last = X[-1]  # the static parameters given every observation
    constants = {name: (float(last[:, k].mean()), float(last[:, k].std(ddof=1)))
                 for k, name in zip(mrf.STATIC, ("ln_k0", "Q_J_per_mol", "A0_Ma"))}
    return GrowthTimes(mean, lo, hi, age.mean(axis=1), a_lo, a_hi, constants)


def mcmc(problem: Problem, config: PtpathConfig, inv: Inversion) -> McmcRun:
    """NUTS sample of the MRF posterior at the run's noise scales, started around the smoothed
    mean (:func:`jaxpetro.models.mrf.sample_nuts`); its summary as for the ensemble."""
    c = config.mcmc
    data = pm.data_of(problem)
    key = jax.random.fold_in(jax.random.key(config.seed), 7)  # a stream of its own
    res = mrf.sample_nuts(key, data, problem.params, jnp.asarray(inv.log_theta), mrf.free_of(inv.mean, data), problem.h,
                          chains=c.chains, samples=c.samples, warmup=c.warmup, target_accept=c.target_accept,
                          log_corr=inv.log_corr)
    X = res.states.reshape(-1, *res.states.shape[2:]).transpose(1, 0, 2)  # (n, draws, d)
    if not np.all(np.isfinite(X)):
        raise ConvergenceError("ptpath: the NUTS sample has non-finite states; raise mcmc.warmup or mcmc.target_accept.")
    mean, sd, lo, hi = _bands(X, 1)
    return McmcRun(res, mean, sd, lo, hi, growth_times(problem, X, config))


# ----------------------------------------------------------------------------- outputs


def _csv_table(prob: Problem, mean, sd, lo, hi, times: GrowthTimes | None) -> tuple[list, list]:
    """(header, columns) of ptpath.csv / ptpath_mcmc.csv."""
    header = list(CSV_COLUMNS)
    cols = [prob.radius_um, mean[:, 0], mean[:, 1], sd[:, 0], sd[:, 1], lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]]
    if times is not None:
        header.append("t_Myr")
        cols.append(times.mean)
        if times.age is not None:
            header.append("age_Ma")
            cols.append(times.age)
    return header, cols


def _write_csv(path: Path, header: list, cols: list) -> Path:
    return write_csv(path, header, [[float(c[i]) for c in cols] for i in range(len(cols[0]))])


def _noise_names(walk: str) -> tuple[str, str]:
    per = "Myr" if walk == "time" else "um"
    return f"q_P_kbar_per_sqrt_{per}", f"q_T_C_per_sqrt_{per}"


def write_outputs(out: Path, config: PtpathConfig, prob: Problem, inv: Inversion, times: GrowthTimes | None,
                  sens: Sensitivity | None, truth: tuple | None = None, chain: McmcRun | None = None) -> dict:
    """Write ptpath.csv, ptpath.h5 (units on every dataset), ptpath_mcmc.csv and the figures;
    returns the paths written."""
    header, cols = _csv_table(prob, inv.mean, inv.sd, inv.lo, inv.hi, times)
    paths = {"csv": _write_csv(out / "ptpath.csv", header, cols)}
    q_P, q_T, sd, model_sd = np.exp(inv.log_theta)
    nP, nT = _noise_names(prob.walk)
    state_units = "; ".join(f"{n}: {STATE_UNITS[n]}" for n in prob.state_names)
    data = {
        "path": {name: np.asarray(c) for name, c in zip(header, cols)},
        "ensemble": {"smoothed": inv.smoothed, "filtered": inv.filtered, "state_names": list(prob.state_names)},
        "hyperparameters": {nP: q_P, nT: q_T, "sd": sd, "model_sd": model_sd,
                            **({} if inv.log_corr is None else
                               dict(zip(pm.CORR_NAMES, (float(v) for v in np.exp(inv.log_corr))))),
                            "estimated": list(inv.estimated) or ["none"], "loglik_history": inv.history},
        "loglik": inv.loglik,
        "loglik_method": inv.loglik_method,
        "observations": {"radius_um": prob.radius_um, "shell": prob.shell, "y": np.where(prob.mask, prob.y, np.nan),
                         "mask": prob.mask, "names": list(pm.OBS_NAMES), "X_measured": prob.X_meas,
                         "closed": prob.closed, "drop": gm.ENDMEMBERS[prob.drop]},
        "predicted": {"mean": inv.pred.mean, "lo": inv.pred.lo, "hi": inv.pred.hi, "names": list(gm.ENDMEMBERS)},
    }
    units = {"path/radius_um": "um", "path/P_*": "kbar", "path/T_*": "degC", "path/t_Myr": "Myr", "path/age_Ma": "Ma",
             "path/t_lo_Myr": "Myr", "path/t_hi_Myr": "Myr", "path/age_lo_Ma": "Ma", "path/age_hi_Ma": "Ma",
             "ensemble/smoothed": state_units, "ensemble/filtered": state_units, "ensemble/state_names": "",
             f"hyperparameters/{nP}": f"kbar/sqrt({nP.rsplit('_', 1)[1]})",
             f"hyperparameters/{nT}": f"degC/sqrt({nT.rsplit('_', 1)[1]})",
             "hyperparameters/sd": "1", "hyperparameters/model_sd": "1", "hyperparameters/estimated": "",
             "hyperparameters/model_corr_sd": "1", "hyperparameters/model_corr_um": "um",
             "hyperparameters/loglik_history": "nat", "loglik": "nat", "loglik_method": "",
             "observations/radius_um": "um", "observations/shell": "1", "observations/mask": "1",
             "observations/names": "", "observations/drop": "", "observations/closed": "1",
             "observations/X_measured": "1",
             "observations/y": "X_*: 1 (mole fraction); P_kbar, line_kbar: kbar; T_C: degC; age_Ma: Ma",
             "predicted/names": "", "predicted/*": "1",
             "map/P_kbar": "kbar", "map/T_C": "degC", "map/t_Myr": "Myr", "map/n_iter": "1",
             "map/ln_k0": "ln(um/Myr)", "map/Q_J_per_mol": "J/mol", "map/A0_Ma": "Ma",
             "exact/*": "P: kbar; T: degC", "sensitivity/dP_*": "kbar", "sensitivity/dT_*": "degC",
             "growth/ln_k0": "ln(um/Myr)", "growth/ln_k0_sd": "ln(um/Myr)", "growth/Q_J_per_mol": "J/mol",
             "growth/Q_J_per_mol_sd": "J/mol", "growth/A0_Ma": "Ma", "growth/A0_Ma_sd": "Ma"}
    if times is not None:
        data["path"]["t_lo_Myr"], data["path"]["t_hi_Myr"] = times.lo, times.hi
        if times.age is not None:
            data["path"]["age_lo_Ma"], data["path"]["age_hi_Ma"] = times.age_lo, times.age_hi
            data["growth"] = {}
            for name, (m, s) in times.constants.items():
                data["growth"][name], data["growth"][f"{name}_sd"] = m, s
    if inv.map_path is not None:
        data["map"] = {"P_kbar": inv.map_path[:, 0], "T_C": inv.map_path[:, 1], "n_iter": inv.map_iter}
        if prob.walk == "time":
            data["map"]["t_Myr"] = inv.map_path[:, gr.TIME]
        if prob.with_ages:
            for k, name in zip(mrf.STATIC, ("ln_k0", "Q_J_per_mol", "A0_Ma")):
                data["map"][name] = inv.map_path[0, k]
    if inv.exact is not None:
        data["exact"] = {"mean": inv.exact.mean, "sd": inv.exact.sd}
    if inv.failed is not None:
        data["ensemble"]["failed_share"] = inv.failed
        units["ensemble/failed_share"] = "1"
    if sens is not None:
        names = ("dP_dX0", "dT_dX0", "dP_dA", "dT_dA", "dP_dB", "dT_dB", "dP_dX", "dT_dX")
        data["sensitivity"] = {n: getattr(sens, n) for n in names if getattr(sens, n) is not None}
        # per unit of the parameter: X0 and X are fractions, A per kbar, B per degC
        units.update({"sensitivity/dP_dA": "kbar2", "sensitivity/dT_dA": "degC kbar",
                      "sensitivity/dP_dB": "kbar degC", "sensitivity/dT_dB": "degC2"})
    if chain is not None:
        r = chain.result
        m_header, m_cols = _csv_table(prob, chain.mean, chain.sd, chain.lo, chain.hi, chain.times)
        paths["mcmc_csv"] = _write_csv(out / "ptpath_mcmc.csv", m_header, m_cols)
        data["mcmc"] = {"samples": r.states, "state_names": list(prob.state_names), "r_hat": r.r_hat, "ess": r.ess,
                        "divergences": r.divergences, "accept_prob": r.accept, "num_steps": r.steps,
                        "seconds": r.seconds, "mean": chain.mean, "sd": chain.sd,
                        "chains": config.mcmc.chains, "samples_per_chain": config.mcmc.samples,
                        "warmup": config.mcmc.warmup}
        units.update({"mcmc/samples": state_units, "mcmc/mean": state_units, "mcmc/sd": state_units,
                      "mcmc/state_names": "", "mcmc/r_hat": "1", "mcmc/ess": "1", "mcmc/divergences": "1",
                      "mcmc/accept_prob": "1", "mcmc/num_steps": "1", "mcmc/seconds": "s", "mcmc/chains": "1",
                      "mcmc/samples_per_chain": "1", "mcmc/warmup": "1"})
    paths["h5"] = write_hdf5(out / "ptpath.h5", data, run_attrs(config_to_yaml(config), config.seed), units=units)
    if config.output.plots:
        paths.update(_figures(out, config, prob, inv, sens, truth, chain))
    return paths


def _peak(mean: np.ndarray, k: int) -> dict:
    i = int(np.argmax(mean[:, k]))
    return {"index": i, "P_kbar": float(mean[i, 0]), "T_C": float(mean[i, 1])}


def _summary(problem: Problem, inv: Inversion, times: GrowthTimes | None, chain: McmcRun | None, paths: dict,
             timings: dict) -> dict:
    """Headline figures of a run (path extent, peak P–T, noise scales, log-likelihood, MAP
    agreement, growth parameters, NUTS diagnostics, files, timings)."""
    q_P, q_T, sd, model_sd = np.exp(inv.log_theta)
    pP, pT = _peak(inv.mean, 0), _peak(inv.mean, 1)
    summary = {
        "n_steps": int(len(problem.radius_um)),
        "P_range_kbar": (float(inv.mean[:, 0].min()), float(inv.mean[:, 0].max())),
        "T_range_C": (float(inv.mean[:, 1].min()), float(inv.mean[:, 1].max())),
        "peak_P": {**pP, "radius_um": float(problem.radius_um[pP["index"]]), "P_sd": float(inv.sd[pP["index"], 0])},
        "peak_T": {**pT, "radius_um": float(problem.radius_um[pT["index"]]), "T_sd": float(inv.sd[pT["index"], 1])},
        "walk": problem.walk,
        "q_P": float(q_P), "q_T": float(q_T), "sd": float(sd), "model_sd": float(model_sd),
        "smoother": "ies" if inv.ies is not None else "enks",
        "estimated": list(inv.estimated),
        "loglik": inv.loglik, "loglik_method": inv.loglik_method,
        "files": {k: str(v) for k, v in paths.items()},
        "timings": dict(timings),
    }
    if inv.failed is not None:
        summary["thermo_failed_share"] = float(np.max(inv.failed))
    if inv.log_corr is not None:
        summary["model_corr_sd"], summary["model_corr_um"] = (float(v) for v in np.exp(inv.log_corr))
    if inv.ies is not None:
        summary["ies"] = dict(inv.ies)
    if times is not None:
        summary["duration_Myr"] = float(times.mean[-1])
        if times.constants is not None:
            summary["growth"] = dict(times.constants)
    if inv.map_path is not None:
        summary["map_rms_diff_P_kbar"] = float(np.sqrt(np.mean((inv.map_path[:, 0] - inv.mean[:, 0]) ** 2)))
        summary["map_rms_diff_T_C"] = float(np.sqrt(np.mean((inv.map_path[:, 1] - inv.mean[:, 1]) ** 2)))
    if chain is not None:
        r = chain.result
        z = np.abs(inv.mean[:, :2] - chain.mean[:, :2]) / chain.sd[:, :2]
        summary["mcmc"] = {"max_r_hat": float(np.nanmax(r.r_hat)), "min_ess": float(np.nanmin(r.ess)),
                           "divergences": int(r.divergences.sum()), "seconds": r.seconds,
                           "max_mean_diff_in_sd": float(z.max())}
    return summary


def _report(summary: dict) -> None:
    """Headline results on stderr (stdout stays clean for pipes)."""
    pP, pT = summary["peak_P"], summary["peak_T"]
    unit = "Myr" if summary["walk"] == "time" else "µm"
    est = ", ".join(summary["estimated"]) or "none"
    lines = [
        f"peak P {pP['P_kbar']:.2f} ± {pP['P_sd']:.2f} kbar at {pP['T_C']:.0f} °C (radius {pP['radius_um']:g} µm); "
        f"peak T {pT['T_C']:.0f} ± {pT['T_sd']:.0f} °C at {pT['P_kbar']:.2f} kbar (radius {pT['radius_um']:g} µm)",
        f"path {summary['P_range_kbar'][0]:.2f}-{summary['P_range_kbar'][1]:.2f} kbar, "
        f"{summary['T_range_C'][0]:.0f}-{summary['T_range_C'][1]:.0f} °C over {summary['n_steps']} steps "
        f"(random walk in {'time' if summary['walk'] == 'time' else 'radius'})",
        f"noise: q_P {summary['q_P']:.3g} kbar/√{unit}, q_T {summary['q_T']:.3g} °C/√{unit}, sd {summary['sd']:.3g}, "
        f"model_sd {summary['model_sd']:.3g} (estimated: {est}); log-likelihood {summary['loglik']:.2f} "
        f"({summary['loglik_method']})",
    ]
    if "model_corr_sd" in summary:
        lines.append(f"correlated model error: sd {summary['model_corr_sd']:.3g} over {summary['model_corr_um']:.3g} µm "
                     f"(iterative smoother: {'converged' if summary['ies']['converged'] else 'not converged'})")
    if "duration_Myr" in summary:
        lines.append(f"growth duration {summary['duration_Myr']:.3g} Myr" + (
            "; " + ", ".join(f"{k} {m:.4g} ± {s:.2g}" for k, (m, s) in summary["growth"].items())
            if "growth" in summary else ""))
    if "map_rms_diff_P_kbar" in summary:
        lines.append(f"MAP vs mean: rms {summary['map_rms_diff_P_kbar']:.3f} kbar, {summary['map_rms_diff_T_C']:.1f} °C")
    if "mcmc" in summary:
        m = summary["mcmc"]
        lines.append(f"NUTS: max R-hat {m['max_r_hat']:.3f}, min ESS {m['min_ess']:.0f}, {m['divergences']} divergences, "
                     f"{m['seconds']:.1f} s; ensemble mean within {m['max_mean_diff_in_sd']:.2f} NUTS sd")
    lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings"].items() if v >= 0.05))
    print("\n".join(lines), file=sys.stderr)


def _isopleths(problem: Problem, n: int = 70) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P grid, T grid, X (n, n, 4)) of the forward model over the plotted region."""
    (p_lo, p_hi), (t_lo, t_hi) = problem.box
    if problem.table is not None:
        t = problem.table
        p_lo, p_hi, t_lo, t_hi = t.P_kbar[0], t.P_kbar[-1], t.T_C[0], t.T_C[-1]
    P, T = np.linspace(p_lo, p_hi, n), np.linspace(t_lo, t_hi, n)
    PP, TT = np.meshgrid(P, T, indexing="ij")
    # every other state component at the prior mean: for thermo the core's bulk (no fractionation yet)
    states = np.tile(problem.m0, (PP.size, 1))
    states[:, 0], states[:, 1] = PP.ravel(), TT.ravel()
    aux = pm.StepAux(0.0, 0.0, 0.0)  # the core's composition (no Rayleigh depletion yet)
    X = np.asarray(jax.jit(jax.vmap(problem.h, in_axes=(None, 0, None)))(problem.params, states, aux))[:, :4]
    return P, T, X.reshape(n, n, 4)


def _figures(out: Path, config: PtpathConfig, prob: Problem, inv: Inversion, sens: Sensitivity | None,
             truth: tuple | None, chain: McmcRun | None = None) -> dict:
    """ptpath.png, profiles.png (and sensitivity.png); returns their paths."""

    from jaxpetro.io.plots import save_figure, subplots

    r = prob.radius_um
    pred_mean, pred_lo, pred_hi = inv.pred
    dpi = config.output.dpi
    paths = {}

    fig, axes = subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.3, 1, 1]}, layout="constrained")
    ax = axes[0]
    P, T, X = _isopleths(prob, 25 if prob.kind == "thermo" else 70)  # thermo: a Gibbs minimisation per node
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
    if chain is not None:
        ax.plot(chain.mean[:, 1], chain.mean[:, 0], color="tab:purple", ls="-.", lw=1, label="NUTS mean")
    if truth is not None:
        ax.plot(truth[1], truth[0], color="k", ls=":", lw=1.5, label="truth")
    incl = prob.mask[:, pm.INCL]
    if incl.any():
        ax.errorbar(prob.y[incl, pm.INCL + 1], prob.y[incl, pm.INCL],
                    xerr=_Z90 * np.sqrt(prob.R_other[incl, 1, 1]), yerr=_Z90 * np.sqrt(prob.R_other[incl, 0, 0]),
                    fmt="s", color="tab:red", ms=4, label="inclusions")
    line = prob.mask[:, pm.LINE]
    if line.any():
        tt = np.array(ax.get_xlim())
        for i in np.flatnonzero(line):
            ax.plot(tt, prob.y[i, pm.LINE] + prob.aux.line_b[i] * tt, color="tab:red", ls="--", lw=0.8,
                    label="line constraint" if i == np.flatnonzero(line)[0] else None)
        ax.set_xlim(tt)
    fig.colorbar(sc, ax=ax, label="radius (µm)")
    ax.set_xlabel("T (°C)")
    ax.set_ylabel("P (kbar)")
    ax.set_title("P–T path (90 % bands) over garnet isopleths")
    ax.legend(fontsize=7, loc="upper left")
    for ax, k, unit in ((axes[1], 0, "P (kbar)"), (axes[2], 1, "T (°C)")):
        ax.fill_between(r, inv.lo[:, k], inv.hi[:, k], color="tab:blue", alpha=0.25, label="90 % band")
        ax.plot(r, inv.mean[:, k], color="tab:blue", label="mean")
        if chain is not None:
            ax.plot(r, chain.lo[:, k], color="tab:purple", ls="-.", lw=0.8, label="NUTS 90 %")
            ax.plot(r, chain.hi[:, k], color="tab:purple", ls="-.", lw=0.8)
        if truth is not None:
            ax.plot(r, truth[k], color="k", ls=":", label="truth")
        ax.set_xlabel("radius (µm)")
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)
    paths["ptpath_png"] = save_figure(fig, out / "ptpath.png", dpi)

    fig, axes = subplots(2, 2, figsize=(10, 7), sharex=True, layout="constrained")
    sd_common, model_sd = np.exp(inv.log_theta[2]), np.exp(inv.log_theta[3])
    for k, ax in enumerate(axes.ravel()):
        obs = np.isfinite(prob.X_obs[:, k]) & prob.shell
        var = np.where(np.isnan(prob.frac_var[:, k]), sd_common**2, prob.frac_var[:, k]) + model_sd**2
        ax.errorbar(r[obs], prob.X_obs[obs, k], yerr=np.sqrt(var[obs]), fmt="o", ms=3, color="k", lw=0.6,
                    label="observed (sd incl. model error)")
        ax.fill_between(r, pred_lo[:, k], pred_hi[:, k], color="tab:green", alpha=0.3, label="predicted 90 %")
        ax.plot(r, pred_mean[:, k], color="tab:green", label="predicted")
        ax.set_title(gm.ENDMEMBERS[k] + (" (left out of the likelihood)" if k == prob.drop and prob.closed.any() else ""))
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
    headline figures: RMSE in kbar and °C, 90 % band coverage, estimated noise scales (and the
    correlated error's, None when off). Default settings (hyperparameters estimated, 500
    members, the iterative smoother started from the full-lag EnKS) without the MAP cross-check.
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
                   sd=s["sd"], model_sd=s["model_sd"], model_corr_sd=s.get("model_corr_sd"),
                   model_corr_um=s.get("model_corr_um"), files=s["files"])
    return figures


__all__ = [
    "BAND",
    "CSV_COLUMNS",
    "Exact",
    "GrowthTimes",
    "Inversion",
    "McmcRun",
    "Predicted",
    "Problem",
    "PtpathRun",
    "MAX_FAILED",
    "STATE_UNITS",
    "Sensitivity",
    "build_problem",
    "check_inside_table",
    "core_statics",
    "finish_inversion",
    "growth_times",
    "invert",
    "mcmc",
    "recovery",
    "run",
    "run_demo",
    "run_stages",
    "sensitivity",
    "thermo_bulk",
    "write_outputs",
]

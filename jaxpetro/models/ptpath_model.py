"""State-space model of a garnet P–T(–t) path along radius (the model behind ``jaxpetro ptpath``).

Radius orders the shells (the Bayesian P–T path reconstruction from zoned garnet of Kuwatani et
al. 2012, 2018, with its Gaussian Markov random field smoothness prior, solved here sequentially
by ensemble Kalman smoothing). Equations and named simplifications: docs/ptpath.md.

**System model.** The state of step n is ``x_n = (P kbar, T °C)`` (``growth.walk: radius``, or no
growth law), a random walk along radius, ``x_n = x_{n-1} + w_n``, ``w_n ~ N(0, Δr_n diag(q_P², q_T²))``;
or, with a growth law (``growth.walk: time``), ``x_n = (P, T, t Myr[, ln k0, Q, A0])``, a random walk in
*time*: ``w_n ~ N(0, Δt_n(x_{n-1}) diag(q_P², q_T²))`` with ``Δt_n = D_n / g(T_{n-1})`` per ensemble
member (:mod:`jaxpetro.models.growth`), the clock ``t`` deterministic, and -- with ages -- the rate
constants and the nucleation age estimated by state augmentation.

**Observation** of step n, eight slots (:data:`OBS_NAMES`)::

    X_alm, X_prp, X_grs, X_sps   the shell's end-member fractions (forward model, renormalised to sum 1)
    P_incl, T_incl               an inclusion thermobarometer: the state, full 2 x 2 covariance
    line                         a line constraint P - b T = a (an isomeke, one equilibrium), sd in P
    age                          an age, A0 - t (Ma)

masked where not measured. *Closure*: a shell with all four fractions is observed as three
independent fractions ``z = X_k / S`` (S the sum; ``observation.drop`` left out) with the
covariance propagated from the ``_sd`` columns by the delta method,
``Σ_z = J diag(sd² + σ_m²) J^T``, ``J = (I - z 1^T) / S`` -- any three give the same likelihood
(an affine change of coordinates with unit Jacobian). ``σ_m`` is the forward-model error
(``hyperparameters.model_sd``), part of R always and estimated by the marginal likelihood
whenever the measurement sds are known. A shell missing a fraction observes the measured ones
as they are (no closure is possible), with variances ``sd² + σ_m²``.

The prior of the first step: P and T ~ N(centre of the prior box, (width / 4)²); ln k0 ~
N(ln k0_config, ln_k0_sd²), Q ~ N(Q_config, Q_sd²), A0 ~ N(oldest age, broad); the clock starts
at the time to grow the first shell from nucleation.

This module builds that model from the read inputs (:func:`build_problem`), the noise of given
log noise scales (:func:`noise`), the exact linear-Gaussian model of the linearised table
(:func:`linear_model`), the starting noise scales (:func:`start`), the prior ensemble
(:func:`prior_draws`), the table range check (:func:`check_profile_range`) and the kernels'
options (:func:`smoother_options`). It reads no files (the workflow passes what
:mod:`jaxpetro.io` read).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from jaxpetro.config.ptpath import ForwardConfig, HyperConfig, PtpathConfig
from jaxpetro.errors import InputError
from jaxpetro.kernels import enks
from jaxpetro.kernels import kalman as kf
from jaxpetro.models import garnet as gm
from jaxpetro.models import growth as gr
from jaxpetro.models import thermo_forward as tf
from jaxpetro.thermo import equilibrium as eqm
from jaxpetro.thermo import growth
from jaxpetro.thermo.bulk import COMPONENTS

#: L-BFGS options of the MAP cross-check: 300 iterations are ample for the smooth GMRF
#: posterior started at the smoothed mean (it typically stops after ~100 at tol 1e-8).
MAP_OPTIONS = enks.LbfgsOptions(max_iter=300)
HYPER_NAMES = ("q_P", "q_T", "sd", "model_sd")
OBS_NAMES = (*gm.ENDMEMBERS, "P_kbar", "T_C", "line_kbar", "age_Ma")
N_OBS = len(OBS_NAMES)
INCL, LINE, AGE = 4, 6, 7
#: Margin of the pre-inversion range check, in measurement sds (and at least RANGE_FLOOR).
RANGE_SIGMAS, RANGE_FLOOR = 3.0, 0.02


class StepAux(NamedTuple):
    """Per-step inputs of the observation and transition functions (leading axis n).

    Attributes:
        radius: step radius (µm), for the Rayleigh correction.
        D: radial step of the growth law (µm; :func:`jaxpetro.models.growth.radial_steps`).
        line_b: slope b of this step's line constraint P = a + b T (kbar/°C; 0 where none).
    """

    radius: Float[ArrayLike, "*n"]
    D: Float[ArrayLike, "*n"]
    line_b: Float[ArrayLike, "*n"]


class ObsParams(NamedTuple):
    """Parameters of the observation and transition functions: the forward model's and the
    fixed growth law's (used when the rate constants are not in the state)."""

    forward: Any
    growth: gr.GrowthLaw


def _assemble(X: Float[Array, " 4"], x: Float[Array, " d"], aux: StepAux) -> Float[Array, " 8"]:
    """The eight observation slots from the forward model's fractions ``X`` and the (P, T[, t, ln
    k0, Q, A0]) part ``x`` of the state."""
    X = X / jnp.sum(X)  # closure: the forward model's fractions recast to sum 1, as the observation is
    line = x[gr.P] - aux.line_b * x[gr.T]
    age = x[gr.AGE0] - x[gr.TIME] if x.shape[0] > gr.AGE0 else jnp.zeros((), x.dtype)
    return jnp.concatenate([X, x[:2], jnp.stack([line, age])])


def _observe(comp: Callable, params: ObsParams, x: Float[Array, " d"], aux: StepAux) -> Float[Array, " 8"]:
    return _assemble(comp(params.forward, x, aux.radius)[:4], x, aux)


def observe_table(params: ObsParams, x: Float[Array, " d"], aux: StepAux) -> Float[Array, " 8"]:
    """Observation function with the table forward model (:func:`jaxpetro.models.garnet.h_table`)."""
    return _observe(gm.h_table, params, x, aux)


def observe_linear(params: ObsParams, x: Float[Array, " d"], aux: StepAux) -> Float[Array, " 8"]:
    """Observation function with the linearised table (:func:`jaxpetro.models.garnet.h_linear`)."""
    return _observe(gm.h_linear, params, x, aux)


# ----------------------------------------------------------------------------- forward.kind: thermo

#: Floor of a reactive-bulk component (mol per mol of the starting bulk) before its logarithm: a
#: component that fractionation exhausts stays representable (it never goes negative in log space).
BULK_FLOOR = 1e-12


class ThermoForward(eqx.Module):
    """The thermodynamic forward model of ``forward.kind: thermo`` as carried by the ptpath state.

    The state is ``(P, T[, t, ln k0, Q, A0], ln b_k ..., ln b'_k ...)``: after the walk's
    ``base`` components come the natural logarithms of the moles of the bulk components
    ``present`` (indices into :data:`jaxpetro.thermo.bulk.COMPONENTS`; the absent ones are 0 and
    stay 0) of the reactive bulk ``b`` (every earlier shell removed) and of ``b'``, the reactive
    bulk before the last shell was removed (the last shell resorbed). Log moles keep every
    member's bulk positive whatever the ensemble analysis does to it (a Kalman update is
    additive; a depleted MnO would otherwise be pushed below zero).

    Attributes:
        thermo: :class:`jaxpetro.models.thermo_forward.ThermoParams` (its ``bulk_start`` = ``base``).
        present: indices of the components in the state (static).
        base: number of non-bulk state components (static).
        matrix: the assemblage without garnet (None where it cannot hold the bulk): the
            fallback of :func:`thermo_fractions` for a member whose P-T is behind its bulk's
            garnet-in (:func:`jaxpetro.thermo.growth.nucleus`).
    """

    thermo: tf.ThermoParams
    present: tuple[int, ...] = eqx.field(static=True)
    base: int = eqx.field(static=True)
    matrix: eqm.Assemblage | None = None

    @property
    def m(self) -> int:
        return len(self.present)

    def physical(self, x: Float[Array, " d"], previous: bool = False) -> Float[Array, " D"]:
        """``(base components, the C component moles of b (or b'))``: what ThermoParams reads."""
        a = self.base + (self.m if previous else 0)
        b = jnp.zeros(len(COMPONENTS), x.dtype).at[jnp.asarray(self.present)].set(jnp.exp(x[a:a + self.m]))
        return jnp.concatenate([x[:self.base], b])

    def log_slots(self, bulk: Float[Array, " C"], scale: Float[Array, ""]) -> Float[Array, " m"]:
        """ln of the present components of ``bulk`` (floored at BULK_FLOOR x ``scale``)."""
        return jnp.log(jnp.maximum(bulk[jnp.asarray(self.present)], BULK_FLOOR * scale))


def thermo_fractions(fw: ThermoForward, x: Float[Array, " d"], nucleus: bool = False
                     ) -> tuple[Float[Array, " 4"], Bool[Array, ""]]:
    """(X_alm, X_prp, X_grs, X_sps, never NaN) of a member and whether its equilibrium is usable.

    The garnet in equilibrium with the reactive bulk ``b`` at the member's P-T. Fractional growth
    leaves ``b`` exactly on the garnet-out boundary at the last shell's P-T, so a member whose
    forecast steps back (less garnet stable) cannot grow a shell from ``b``: its rim resorbs, and
    its garnet is that in equilibrium with ``b'`` (the last shell back in the reactive bulk).

    A member further back than that (``b'`` makes no garnet at its P-T either: the fixed
    assemblage has no solution with a positive garnet mode; the solver stops with reason 1, a
    negative garnet amount) is not usable: its fractions are replaced by a neutral 0.25 each
    (finite, so the ensemble update never sees a NaN). In the filter's observation that
    placeholder carries real information: every observed shell says garnet grew there, and the
    placeholder pushes a member that stepped behind garnet-in away from the data. With
    ``nucleus=True`` (:func:`thermo_predict`: the predicted profile of the analysed ensembles)
    such a member gets instead the garnet in equilibrium with the matrix of ``b'``
    (:func:`jaxpetro.thermo.growth.nucleus`: mode 0, continuous with the ``b'`` garnet at its
    garnet-in). With many thin shells the bulk sits one shell's growth (~0.04 kbar, ~1 °C on 60
    shells 60 µm apart) from garnet-in and the smoother's corrections move members much further
    back than that (57 of 64 smoothed members at shell 27 of the 60-shell profile of
    scripts/bench/recovery_thermo.py), so without the fallback the check of the workflow (it
    refuses a run in which more than a few members are unusable) refused such runs. Measured
    (64 members, that profile): the nucleus in the filter's observation too leaves no failure
    but loses the growth information: RMSE 1.93 kbar / 15.7 °C, 90 % bands cover 38 % / 8 %
    (P runs ~4 kbar low at the rim). A member whose matrix or nucleus solve fails as well keeps
    the placeholder and is counted by :func:`thermo_predict`."""
    def one(previous):
        y, reason = tf.observe_thermo(fw.thermo, fw.physical(x, previous))
        X = y[:4]
        return X, (reason == 0) & jnp.all(jnp.isfinite(X)) & (jnp.sum(X) > 0)

    X, ok = one(False)
    X1, ok1 = one(True)
    if fw.matrix is None or not nucleus:
        return jnp.where(ok, X, jnp.where(ok1, X1, 0.25)), ok | ok1
    xp = fw.physical(x, True)
    nu = growth.nucleus(fw.thermo.system, fw.matrix, xp[0] * 1e8, xp[1] + 273.15, fw.thermo.bulk_of(xp),
                        fw.thermo.options)
    ok2 = nu.ok & jnp.all(jnp.isfinite(nu.X))
    X = jnp.where(ok, X, jnp.where(ok1, X1, jnp.where(ok2, nu.X, 0.25)))
    return X, ok | ok1 | ok2


def observe_thermo(params: ObsParams, x: Float[Array, " d"], aux: StepAux) -> Float[Array, " 8"]:
    """Observation function of ``forward.kind: thermo``: the garnet in equilibrium with the
    member's own reactive bulk at its P-T (:func:`thermo_fractions`)."""
    fw = params.forward
    return _assemble(thermo_fractions(fw, x)[0], x[:fw.base], aux)


def thermo_predict(params: ObsParams, X: Float[Array, "n N d"], aux: StepAux) -> tuple[Float[Array, "n N 4"], Float[Array, " n"]]:
    """(predicted fractions (n, N, 4), share of members per step whose garnet is not usable: no
    equilibrium with ``b`` or ``b'`` and no nucleus, :func:`thermo_fractions` with ``nucleus=True``)
    of an ensemble, in one evaluation per member."""
    fw = params.forward
    X4, ok = jax.vmap(jax.vmap(lambda x: thermo_fractions(fw, x, nucleus=True)))(X)
    return X4 / jnp.sum(X4, axis=-1, keepdims=True), 1.0 - jnp.mean(ok.astype(X.dtype), axis=1)


def _fractionated(params: ObsParams, x: Float[Array, " d"]) -> Float[Array, " d"]:
    """The member after its last shell left the reactive bulk: ``b' <- b`` and ``b <- b`` minus
    the garnet in equilibrium with ``b`` at the member's analysed P-T
    (:func:`jaxpetro.models.thermo_forward.fractionate`). Where ``b`` makes no garnet there (the
    member stepped back, see :func:`thermo_fractions`) no shell grew: both stay."""
    fw = params.forward
    xp = fw.physical(x)
    new, reason = tf.fractionate_status(fw.thermo, xp)
    ok = (reason == 0) & jnp.all(jnp.isfinite(new))
    b, b1 = x[fw.base:fw.base + fw.m], x[fw.base + fw.m:]
    scale = jnp.sum(jnp.exp(b))
    b_new = jnp.where(ok, fw.log_slots(new[fw.base:], scale), b)
    return jnp.concatenate([x[:fw.base], b_new, jnp.where(ok, b, b1)])


def thermo_radius_walk(params: ObsParams, x: Float[Array, " d"], aux: StepAux) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """Transition of ``forward.kind: thermo`` with the random walk in radius: the grown shell leaves
    the bulk (deterministic), then P and T take a step with variance ``Δr_n q²`` (``aux.D`` = Δr_n)."""
    return _fractionated(params, x), jnp.asarray(aux.D, x.dtype)


def thermo_time_walk(params: ObsParams, x: Float[Array, " d"], aux: StepAux) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """Transition of ``forward.kind: thermo`` with the random walk in time: fractionation as
    :func:`thermo_radius_walk`, and the clock and noise scale of :func:`jaxpetro.models.growth.time_walk`
    from the member's own T."""
    nb = params.forward.base
    base, dt = gr.time_walk(params, x[:nb], aux)
    return _fractionated(params, x).at[:nb].set(base), dt


#: Prior box of forward.kind thermo without prior ranges (kbar, °C): the default grid of `jaxpetro forward`.
THERMO_BOX = ((4.0, 12.0), (500.0, 700.0))


def thermo_forward(forward: ForwardConfig, bulk: np.ndarray, base: int) -> ThermoForward:
    """The :class:`ThermoForward` of the config for the bulk ``bulk`` (component moles, C) after
    ``base`` non-bulk state components. :class:`InputError` (from the assemblage) for a phase the
    bulk cannot form or a bulk the assemblage cannot hold."""
    bulk = np.asarray(bulk, float)
    system = eqm.assemblage(list(forward.assemblage), bulk)
    s = forward.solver
    opts = eqm.EquilibriumOptions(max_iter=s.max_iter, tol=s.tol, min_amount=s.min_amount)
    present = tuple(int(i) for i in np.flatnonzero(bulk > 1e-12 * bulk.sum()))
    params = tf.ThermoParams(system, base, opts, jnp.asarray(float(forward.fractionation_efficiency)))
    rest = [p for p in forward.assemblage if p != "g"]
    try:
        matrix = eqm.assemblage(rest, bulk) if rest and "g" in forward.assemblage else None
    except InputError:  # the matrix alone cannot hold this bulk: no nucleus fallback
        matrix = None
    return ThermoForward(params, present, base, matrix)


@dataclass(frozen=True)
class Problem:
    """Arrays of one inversion (all numpy; n steps = shells and radii of inclusions, lines, ages).

    Attributes:
        radius_um: (n,) step radii; shell: (n,) bool, True for profile shells.
        y: (n, 8) observations (see :data:`OBS_NAMES`; 0 where unobserved); mask: (n, 8).
        X_meas: (n, 4) the measured fractions as read (NaN where missing or not a shell).
        closed: (n,) the shells observed in closure coordinates; drop: index of the left-out end-member.
        X_obs: (n, 4) the measured fractions, renormalised where closed (NaN where missing).
        frac_var: (n, 4) measured variances of the fractions (NaN: the common sd applies).
        J: (n, 4, 4) closure Jacobian (identity for a shell without closure).
        R_other: (n, 4, 4) covariance of the inclusion, line and age slots (1 where unused).
        aux: per-step :class:`StepAux`.
        h: observation function; transition: the time walk or None; params: :class:`ObsParams`.
        kind: 'table' or 'linear'; walk: 'time' or 'radius'; state_names: names of the d state
            components; with_ages: rate constants estimated.
        m0, sd0: prior mean and sd of the first step's state (d,); box: prior ranges of P and T.
        table: the forward table (table kind) or None.
    """

    radius_um: np.ndarray
    shell: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    X_meas: np.ndarray
    closed: np.ndarray
    drop: int
    X_obs: np.ndarray
    frac_var: np.ndarray
    J: np.ndarray
    R_other: np.ndarray
    aux: StepAux
    h: Callable
    transition: Callable | None
    params: Any
    kind: str
    walk: str
    state_names: tuple
    with_ages: bool
    m0: np.ndarray
    sd0: np.ndarray
    box: tuple
    table: Any

    @property
    def d(self) -> int:
        return len(self.state_names)

    @property
    def P0(self) -> np.ndarray:
        return np.diag(self.sd0**2)


class Data(NamedTuple):
    """Arrays of a problem as a pytree (traced inside the compiled inversion)."""

    y: Float[ArrayLike, "n 8"]
    mask: Bool[ArrayLike, "n 8"]
    frac_var: Float[ArrayLike, "n 4"]
    common: Bool[ArrayLike, "n 4"]
    J: Float[ArrayLike, "n 4 4"]
    R_other: Float[ArrayLike, "n 4 4"]
    aux: StepAux
    m0: Float[ArrayLike, " d"]
    sd0: Float[ArrayLike, " d"]


class HyperStart(NamedTuple):
    """Starting log noise scales (q_P, q_T, sd, model_sd), which are estimated, their names, and
    the box ``[lower, upper]`` (log scales, (4,) each) the estimation searches (:func:`start`)."""

    log_theta: np.ndarray
    free: tuple[bool, bool, bool, bool]
    names: list[str]
    lower: np.ndarray
    upper: np.ndarray


#: Search range of the random walk's spread over the whole profile, as a fraction of the prior
#: range's width (P and T): from a practically constant path (1/1000 of the range: 0.01 kbar,
#: 0.3 °C for the demo table) to one that can wander over the whole range (beyond that the walk
#: no longer smooths anything, and the forward model is flat outside its range).
WALK_SPREAD = (1e-3, 1.0)
#: Search range of the measurement and model-error sds (mole fraction): from 1e-4 (negligible
#: next to any microprobe analysis, ~0.002-0.005) to 0.05 (5 mol %: thermodynamic models are
#: good to ~0.01-0.02, and an error of 0.05 is most of a garnet's zoning range, where the forward
#: model no longer constrains P and T).
SD_RANGE = (1e-4, 0.05)


class Options(NamedTuple):
    """The kernels' options of one run, from the config.

    Attributes:
        smoother: the ``ensemble`` section (size, variant, smoother, lag, inflation).
        likelihood: ensemble of the likelihood estimate for the noise scales: ``variant`` and
            ``inflation`` of the run, ``hyperparameters.members`` members, no smoothing.
        maximise: the ``hyperparameters`` section's Adam options (steps, learning_rate).
    """

    smoother: enks.SmootherOptions
    likelihood: enks.SmootherOptions
    maximise: enks.MaximiseOptions
    ies: enks.IesOptions | None = None
    corr: Any = None


def smoother_options(config: PtpathConfig) -> Options:
    """Options objects of the kernels, copied from the config sections (no renaming). The
    likelihood of the noise scales uses the run's inflation and ES-MDA iterations: they are part
    of the filter whose forecasts the likelihood is made of. ``ensemble.smoother: ies`` runs the
    full-lag EnKS first (its likelihood estimates the noise scales, its members start the
    iterations): ``smoother`` is then ``enks`` and ``ies`` the iteration's options."""
    ies = config.ensemble.smoother == "ies" and config.forward.kind != "thermo"
    kind = "enks" if config.ensemble.smoother == "ies" else config.ensemble.smoother
    ens = enks.SmootherOptions.from_config(config.ensemble, smoother=kind)
    like = enks.SmootherOptions(size=config.hyperparameters.members, variant=ens.variant, smoother="none",
                                inflation=ens.inflation, iterations=ens.iterations)
    corr = correlated_error(config)
    given = None if corr is None else np.array([np.nan if v is None else float(v) for v in corr])
    return Options(ens, like, enks.MaximiseOptions.from_config(config.hyperparameters),
                   enks.IesOptions.from_config(config.ensemble) if ies else None, given)


def correlated_error(config: PtpathConfig) -> tuple | None:
    """The correlated forward-model error's setting: None when off (``model_corr_sd: 0``, or no
    iterative smoother: the sequential EnKS cannot carry an error correlated between shells),
    else ``(sd, length_um)`` with None where estimated."""
    h = config.hyperparameters
    if config.ensemble.smoother != "ies" or config.forward.kind == "thermo" or h.model_corr_sd == 0:
        return None
    return (h.model_corr_sd, h.model_corr_um)


def corr_start(data: Data, given: Float[ArrayLike, " 2"]) -> tuple[Float[Array, " 2"], Float[Array, " 2"], Float[Array, " 2"]]:
    """(start, lower, upper) of log (model_corr_sd, model_corr_um): sd in :data:`SD_RANGE`
    (start 0.005), the length between the mean step spacing (shorter is the independent
    ``model_sd``) and twice the profile's span (a practically constant bias; start a quarter of
    the span); a given value (``given``, NaN where estimated; traced) is used as given (lower =
    upper = it)."""
    r = jnp.asarray(data.aux.radius)
    observed = jnp.any(jnp.asarray(data.mask)[:, :4], axis=1)  # shells (not padded or inclusion-only steps)
    r_lo = jnp.min(jnp.where(observed, r, jnp.inf))
    r_hi = jnp.max(jnp.where(observed, r, -jnp.inf))
    span = jnp.maximum(r_hi - r_lo, 1e-6)
    spacing = span / jnp.maximum(jnp.sum(observed.astype(r.dtype)) - 1.0, 1.0)
    start = jnp.log(jnp.stack([jnp.asarray(0.005, r.dtype), 0.25 * span]))
    lower = jnp.log(jnp.stack([jnp.asarray(SD_RANGE[0], r.dtype), spacing]))
    upper = jnp.log(jnp.stack([jnp.asarray(SD_RANGE[1], r.dtype), 2.0 * span]))
    given = jnp.asarray(given, r.dtype)
    fixed = jnp.isfinite(given)
    log_given = jnp.log(jnp.where(fixed, given, 1.0))
    return (jnp.where(fixed, log_given, start), jnp.where(fixed, log_given, lower),
            jnp.where(fixed, log_given, upper))


def forward_model(forward: ForwardConfig, table: Any, r_rim_default: float, bulk: np.ndarray | None = None,
                  base: int = 2) -> tuple[Callable, Any, tuple]:
    """(observation function, forward params, prior box) of the configured forward model;
    ``table`` is the read forward table (table kind) or None; ``bulk`` the reactive bulk's
    component moles (thermo kind) after ``base`` non-bulk state components."""
    if forward.kind == "thermo":
        if bulk is None:
            raise InputError("forward.kind is 'thermo' but no bulk composition was given (forward.bulk or "
                             "forward.bulk_from).")
        return observe_thermo, thermo_forward(forward, bulk, base), THERMO_BOX
    fr = forward.fractionation
    frac = gm.Fractionation(jnp.asarray(fr.K), jnp.asarray(fr.f_rim), jnp.asarray(fr.r_rim_um or r_rim_default))
    if forward.kind == "table":
        params = gm.params_from_table(table)._replace(frac=frac)
        valid_P = table.P_kbar[np.any(table.valid, axis=1)]
        valid_T = table.T_C[np.any(table.valid, axis=0)]
        box = ((float(valid_P.min()), float(valid_P.max())), (float(valid_T.min()), float(valid_T.max())))
        return observe_table, params, box
    lin = forward.linear
    params = gm.LinearParams(jnp.asarray(lin.X0), jnp.asarray(lin.P0), jnp.asarray(lin.T0),
                             jnp.asarray(lin.A), jnp.asarray(lin.B), frac)
    return observe_linear, params, ((lin.P0 - 5.0, lin.P0 + 5.0), (lin.T0 - 150.0, lin.T0 + 150.0))


def closure_jacobian(X: Float[ArrayLike, "*n 4"], drop: int) -> tuple[Float[Array, "*n 4"], Float[Array, "*n 4 4"]]:
    """(z, J) of complete shells (batched over leading axes, pure JAX, differentiable in X): the
    renormalised fractions ``z = X / S`` (S the sum) and ``J = (I - z 1^T) / S`` (rows: dz_i/dX_k),
    the row of the dropped end-member zeroed (three independent fractions observed)."""
    X = jnp.asarray(X)
    S = jnp.sum(X, axis=-1, keepdims=True)
    z = X / S
    eye = jnp.broadcast_to(jnp.eye(4, dtype=X.dtype), (*z.shape, 4))
    J = (eye - z[..., :, None]) / S[..., None]
    return z, J.at[..., drop, :].set(0.0)


def fraction_observations(X: Float[ArrayLike, "n 4"], closed: Bool[ArrayLike, " n"],
                          drop: int) -> tuple[Float[Array, "n 4"], Float[Array, "n 4 4"]]:
    """(y (n, 4), J (n, 4, 4)) of measured fractions ``X`` (NaN where missing): closed shells
    observe :func:`closure_jacobian`'s z with its J, the others X itself with J = I. One
    implementation for the problem and its sensitivities (differentiable in X)."""
    X = jnp.asarray(X)
    closed = jnp.asarray(closed)
    safe = jnp.where(closed[:, None], X, 1.0)  # no NaN through the division of an open shell
    z, J = closure_jacobian(safe, drop)
    y = jnp.where(closed[:, None], z, X)
    J = jnp.where(closed[:, None, None], J, jnp.broadcast_to(jnp.eye(4, dtype=X.dtype), J.shape))
    return y, J


def _step_index(radii: np.ndarray, r: np.ndarray, source: str, what: str) -> np.ndarray:
    idx = np.array([int(np.argmin(np.abs(radii - v))) for v in r], int)
    if len(np.unique(idx)) != len(idx):
        raise InputError(f"{what} file '{source}': two rows at the same radius; combine them into one row.")
    return idx


def build_problem(profile: Any, inclusions: Any, table: Any, config: PtpathConfig,
                  constraints: Any = None, ages: Any = None, bulk: np.ndarray | None = None) -> Problem:
    """Assemble the state-space problem.

    Args:
        profile: the zoning profile (a :class:`jaxpetro.io.profiles.GarnetProfile`).
        inclusions: inclusion thermobarometry (:class:`jaxpetro.io.profiles.Inclusions`) or None.
        table: the forward table (table kind) or None.
        config: the run's config (forward model, prior box, noise, growth law).
        constraints: line constraints (:class:`jaxpetro.io.profiles.LineConstraints`) or None.
        ages: ages (:class:`jaxpetro.io.profiles.Ages`) or None.
        bulk: the reactive bulk at the core (component moles,
            :data:`jaxpetro.thermo.bulk.COMPONENTS`; ``forward.kind: thermo``) or None.

    Raises:
        InputError: two inclusions (or lines, or ages) at the same step; a thermo bulk the
            assemblage cannot make.
    """
    g = config.growth
    walk = "time" if (g.k0_um_per_Myr is not None and g.walk == "time") else "radius"
    with_ages = ages is not None
    base = 2 if walk == "radius" else (6 if with_ages else 3)
    h, fparams, box = forward_model(config.forward, table, float(profile.radius_um[-1]), bulk, base)
    forward_T = box[1]
    if config.prior.P_kbar is not None:
        box = (tuple(config.prior.P_kbar), box[1])
    if config.prior.T_C is not None:
        box = (box[0], tuple(config.prior.T_C))

    # Steps: every shell, plus radii of inclusions, lines and ages that fall between shells.
    radii = profile.radius_um
    for pts in (inclusions, constraints, ages):
        if pts is not None:
            extra = [r for r in pts.radius_um if not np.any(np.isclose(radii, r, rtol=0, atol=1e-6))]
            radii = np.union1d(radii, np.asarray(extra, float))
    n = len(radii)
    shell = np.isin(radii, profile.radius_um)
    at = np.searchsorted(radii, profile.radius_um)
    y = np.full((n, N_OBS), np.nan)
    X_obs = np.empty((n, 4))
    frac_var = np.full((n, 4), np.nan)
    J = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    R_other = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    sd = config.hyperparameters.sd
    if sd is not None:
        frac_var[at] = np.where(np.isfinite(profile.X), sd**2, np.nan)
    elif profile.sd is not None:
        frac_var[at] = profile.sd**2
    drop = gm.ENDMEMBERS.index(config.observation.drop)
    X_meas = np.full((n, 4), np.nan)
    X_meas[at] = profile.X
    closed = np.zeros(n, bool)
    closed[at] = config.observation.closure & np.all(np.isfinite(profile.X), axis=1)
    with jax.enable_x64(True):  # numpy in, numpy out: float64 whatever the caller's JAX setting
        yX, JX = fraction_observations(X_meas, closed, drop)
    X_obs[:], J[:] = np.asarray(yX), np.asarray(JX)
    y[:, :4] = X_obs
    y[closed, drop] = np.nan  # three independent fractions

    line_b = np.zeros(n)
    if inclusions is not None:
        idx = _step_index(radii, inclusions.radius_um, inclusions.source, "inclusion")
        y[idx, INCL], y[idx, INCL + 1] = inclusions.P_kbar, inclusions.T_C
        R_other[idx, :2, :2] = inclusions.cov
    if constraints is not None:
        idx = _step_index(radii, constraints.radius_um, constraints.source, "line-constraint")
        y[idx, LINE] = constraints.a_kbar
        line_b[idx] = constraints.b_kbar_per_C
        R_other[idx, 2, 2] = constraints.sd_kbar**2
    if ages is not None:
        idx = _step_index(radii, ages.radius_um, ages.source, "age")
        y[idx, AGE] = ages.age_Ma
        R_other[idx, 3, 3] = ages.age_sd_Ma**2
    mask = np.isfinite(y)
    y = np.where(mask, y, 0.0)

    # the growth law is evaluated over the forward model's temperature range (and the prior's, if
    # wider): a member outside it grows at the edge's rate (gr.GrowthLaw: no runaway step)
    T_lo, T_hi = min(forward_T[0], box[1][0]), max(forward_T[1], box[1][1])
    law = gr.GrowthLaw(jnp.asarray(np.log(g.k0_um_per_Myr or 1.0)), jnp.asarray(float(g.Q_J_per_mol or 0.0)),
                       jnp.asarray(float(T_lo)), jnp.asarray(float(T_hi)))
    if walk == "time":
        D = gr.radial_steps(radii, g.radius_exponent, g.r_ref_um)
    else:
        D = np.diff(radii, prepend=0.0)
    aux = StepAux(radii.astype(float), D, line_b)
    m0 = [np.mean(box[0]), np.mean(box[1])]
    sd0 = [np.diff(box[0])[0] / 4.0, np.diff(box[1])[0] / 4.0]
    names = gr.STATE_NAMES[:2]
    if walk == "time":
        m0.append(0.0)  # the clock: set per member by prior_draws
        sd0.append(0.0)
        names = gr.STATE_NAMES[:3]
        if with_ages:
            oldest = float(np.max(ages.age_Ma))
            span = float(np.ptp(ages.age_Ma)) if len(ages.age_Ma) > 1 else 0.0
            m0 += [float(np.log(g.k0_um_per_Myr)), float(g.Q_J_per_mol), oldest]
            sd0 += [g.ln_k0_sd, g.Q_sd_J_per_mol, max(5.0 * float(np.max(ages.age_sd_Ma)), span, 1.0)]
            names = gr.STATE_NAMES
    transition = gr.time_walk if walk == "time" else None
    if config.forward.kind == "thermo":
        # the reactive bulk: fixed at the core (no process noise), changed only by fractionation
        present = list(fparams.present)
        m0 += 2 * list(np.log(np.asarray(bulk, float)[present]))  # b and b' both the core's bulk
        sd0 += [0.0] * (2 * len(present))
        names = (*names, *(f"ln_bulk_{COMPONENTS[k]}" for k in present),
                 *(f"ln_bulk_before_{COMPONENTS[k]}" for k in present))
        transition = thermo_time_walk if walk == "time" else thermo_radius_walk
    return Problem(radii, shell, y, mask, X_meas, closed, drop, X_obs, frac_var, J, R_other, aux, h,
                   transition, ObsParams(fparams, law), config.forward.kind, walk,
                   tuple(names), with_ages, np.asarray(m0, float), np.asarray(sd0, float), box, table)


def data_of(problem: Problem) -> Data:
    """The traced arrays of ``problem``."""
    common = np.isnan(problem.frac_var)
    return Data(problem.y, problem.mask, np.where(common, 1.0, problem.frac_var), common, problem.J,
                problem.R_other, jax.tree_util.tree_map(np.asarray, problem.aux), problem.m0, problem.sd0)


def noise(data: Data, log_theta: Float[Array, " 4"]) -> tuple[Float[Array, "n 8 8"], Float[Array, "n d d"]]:
    """(R (n, 8, 8), Q (n, d, d)) from log (q_P, q_T, sd, model_sd); differentiable in ``log_theta``.

    ``R``: the fractions' block ``J diag(v + σ_m²) J^T`` (v the measured variances, or the common
    sd², σ_m the model error), then the fixed inclusion/line/age block. ``Q``: ``Δr_n diag(q²)``
    for the radius walk (d = 2); for the time walk ``diag(q_P², q_T², 0, ...)`` per Myr, which
    the transition scales by each member's Δt_n; for ``forward.kind: thermo`` (d > 2, a
    transition always) the same per-unit form, scaled by Δr_n (radius walk) or Δt_n (time walk),
    zero on the bulk slots."""
    q = jnp.exp(log_theta[:2])
    sd, model_sd = jnp.exp(log_theta[2]), jnp.exp(log_theta[3])
    v = jnp.where(jnp.asarray(data.common), sd**2, jnp.asarray(data.frac_var)) + model_sd**2
    J = jnp.asarray(data.J)
    R_frac = jnp.einsum("nik,nk,njk->nij", J, v, J)
    n = R_frac.shape[0]
    R = jnp.zeros((n, N_OBS, N_OBS), R_frac.dtype).at[:, :4, :4].set(R_frac).at[:, 4:, 4:].set(jnp.asarray(data.R_other))
    d = jnp.shape(data.m0)[0]
    qd = jnp.zeros(d, q.dtype).at[:2].set(q)
    if d == 2:
        radius = jnp.asarray(data.aux.radius)
        dr = jnp.diff(radius, prepend=radius[:1])
        return R, kf.random_walk_noise(dr, qd)
    return R, jnp.broadcast_to(jnp.diag(qd * qd), (n, d, d))


#: Names of the correlated forward-model error's scales (log_corr).
CORR_NAMES = ("model_corr_sd", "model_corr_um")


def path_covariance(data: Data, log_theta: Float[Array, " 4"], log_corr: Float[Array, " 2"] | None) -> Float[Array, "D D"]:
    """Covariance (n 8, n 8) of the whole profile's observation errors, step-major: the per-step
    R of :func:`noise` on the block diagonal, plus a forward-model error that is correlated
    between shells (``log_corr`` = log (sd, length µm); sd 0: none)::

        cov(b_n, b_m) = sd² exp(-(r_n - r_m)² / (2 length²)) P,   P = I - 1 1^T / 4

    on the four fraction slots: a bias of the forward model's fractions that is smooth in
    radius (a thermodynamic table's error is smooth in P-T, so neighbouring shells share it)
    and closed (it sums to zero, like the renormalised fractions, so the likelihood does not
    depend on the end-member left out). An independent per-shell ``model_sd`` cannot
    represent it. ``log_corr`` None: no correlated term. Differentiable in both arguments."""
    R, _ = noise(data, log_theta)
    n = R.shape[0]
    eye = jnp.eye(n, dtype=R.dtype)
    C = (eye[:, None, :, None] * R[:, :, None, :]).reshape(n * N_OBS, n * N_OBS)
    if log_corr is None:
        return C
    sd, length = jnp.exp(log_corr[0]), jnp.exp(log_corr[1])
    r = jnp.asarray(data.aux.radius)
    K = sd**2 * jnp.exp(-0.5 * ((r[:, None] - r[None, :]) / length) ** 2)
    Pc = jnp.zeros((N_OBS, N_OBS), R.dtype).at[:4, :4].set(jnp.eye(4, dtype=R.dtype) - 0.25)
    return C + (K[:, None, :, None] * Pc[None, :, None, :]).reshape(n * N_OBS, n * N_OBS)


def prior_draws(key: PRNGKeyArray, data: Data, params: ObsParams, size: int) -> Float[Array, "N d"]:
    """``size`` members of the first step's prior: independent normals (m0, sd0), the clock (time
    walk) set to each member's time from nucleation to the first shell."""
    m0, sd0 = jnp.asarray(data.m0), jnp.asarray(data.sd0)
    X = m0[None, :] + jax.random.normal(key, (size, m0.shape[0]), m0.dtype) * sd0[None, :]
    nb = params.forward.base if isinstance(params.forward, ThermoForward) else m0.shape[0]  # bulk slots: none here
    if nb > gr.TIME:
        X = X.at[:, :nb].set(gr.start_times(params, X[:, :nb], jnp.asarray(data.aux.D)[0]))
    return X


def linear_H(params: gm.LinearParams, line_b: Float[ArrayLike, " n"]) -> tuple[Float[Array, "n 8 2"], Float[Array, " 8"]]:
    """(H (n, 8, 2), b (8,)) of the linearised table: the observation ``H_n x + b`` (closed
    parameters: X0 sums to 1, A and B to 0, so the renormalisation is the identity)."""
    p = params
    H = jnp.zeros((N_OBS, 2)).at[:4, 0].set(p.A).at[:4, 1].set(p.B).at[INCL, 0].set(1.0).at[INCL + 1, 1].set(1.0)
    H = jnp.broadcast_to(H, (jnp.shape(line_b)[0], N_OBS, 2))
    H = H.at[:, LINE, 0].set(1.0).at[:, LINE, 1].set(-jnp.asarray(line_b))
    b = jnp.zeros(N_OBS).at[:4].set(p.X0 - p.A * p.P0 - p.B * p.T0)
    return H, b


def linear_model(data: Data, params: ObsParams, log_theta: Float[Array, " 4"]) -> kf.LinearGaussianModel:
    """Exact state-space model of the linearised table (no fractionation, radius walk)."""
    H, b = linear_H(params.forward, jnp.asarray(data.aux.line_b))
    n = H.shape[0]
    R, Q = noise(data, log_theta)
    return kf.LinearGaussianModel(jnp.eye(2), Q, H, jnp.broadcast_to(b, (n, N_OBS)), R, jnp.asarray(data.m0),
                                  jnp.diag(jnp.asarray(data.sd0) ** 2))


def exact_linear(problem: Problem, config: PtpathConfig) -> bool:
    """Whether the model is linear-Gaussian -- the linearised table with closed parameters (X0
    sums to 1, A and B to 0: the renormalisation is then the identity), no Rayleigh correction,
    the radius walk (a time walk's noise depends on the state): then the exact Kalman smoother
    is the answer."""
    if problem.kind != "linear" or problem.walk != "radius":
        return False
    lin, fr = config.forward.linear, config.forward.fractionation
    closed = abs(sum(lin.X0) - 1.0) < 1e-9 and abs(sum(lin.A)) < 1e-12 and abs(sum(lin.B)) < 1e-12
    return closed and (fr.K == 1.0 or fr.f_rim == 0.0)


def start(problem: Problem, hyper: HyperConfig) -> HyperStart:
    """Initial log (q_P, q_T, sd, model_sd), which of them are estimated, and their names.

    The model error is estimated whenever the measurement variances are known (``_sd`` columns
    or a given sd); when the measurement sd itself is estimated the two are not separately
    identifiable (they add), so the estimated sd is the total and model_sd is held at its given
    value (0 when empty)."""
    (p_lo, p_hi), (t_lo, t_hi) = problem.box
    if problem.walk == "time":
        # the clock's span at the prior's centre, and at the hot and cold ends of the law's range
        law = problem.params.growth
        total = float(np.sum(problem.aux.D))

        def span_at(T):
            return max(total / float(gr.rate_constant(T, law.ln_k0, law.Q)), 1e-9)

        span = span_at(np.mean(problem.box[1]))
        short, long = span_at(float(law.T_hi_C)), span_at(float(law.T_lo_C))
    else:
        span = short = long = max(float(problem.radius_um[-1] - problem.radius_um[0]), 1e-6)
    needs_sd = bool(np.any(np.isnan(problem.frac_var) & problem.mask[:, :4]))
    given = [hyper.q_P, hyper.q_T, hyper.sd, hyper.model_sd]
    # Starting guesses: a walk covering a quarter of the prior range over the profile, sd 0.01.
    guess = [0.25 * (p_hi - p_lo) / np.sqrt(span), 0.25 * (t_hi - t_lo) / np.sqrt(span), 0.01, 0.01]
    if needs_sd and hyper.model_sd is None:
        guess[3] = 0.0
    free = (given[0] is None, given[1] is None, given[2] is None and needs_sd,
            given[3] is None and not needs_sd)
    with np.errstate(divide="ignore"):  # model_sd = 0: log 0 = -inf, exp(-inf) = 0 exactly
        log_theta = np.log([g if g is not None else s for g, s in zip(given, guess)])
    # The search box (WALK_SPREAD, SD_RANGE): the walk's spread over the profile from the longest
    # (coldest) to the shortest (hottest) growth duration the law allows; only the estimated
    # scales are bounded (a given value is used as given).
    widths = np.array([p_hi - p_lo, t_hi - t_lo])
    lower = np.log(np.concatenate([WALK_SPREAD[0] * widths / np.sqrt(long), [SD_RANGE[0]] * 2]))
    upper = np.log(np.concatenate([WALK_SPREAD[1] * widths / np.sqrt(short), [SD_RANGE[1]] * 2]))
    lower = np.where(free, lower, -np.inf)
    upper = np.where(free, upper, np.inf)
    return HyperStart(log_theta, free, [n for n, f in zip(HYPER_NAMES, free) if f], lower, upper)


def check_profile_range(problem: Problem, sd_default: float = 0.01) -> None:
    """Before inverting: every measured fraction must lie within the forward table's range of
    that end-member (over its real nodes), give or take ``RANGE_SIGMAS`` measurement sds (at
    least ``RANGE_FLOOR``). Raises :class:`InputError` naming the end-member, the shell, the
    table's range and by how much it is out (a table that cannot produce the garnet cannot
    invert it). The linear model has no range: no check."""
    t = problem.table
    if t is None:
        return
    vals = np.asarray(t.values)[np.asarray(t.valid)]  # (nodes, 4)
    lo, hi = vals.min(axis=0), vals.max(axis=0)
    sd = np.sqrt(np.where(np.isnan(problem.frac_var), sd_default**2, problem.frac_var))
    margin = np.maximum(RANGE_SIGMAS * sd, RANGE_FLOOR)
    X = problem.X_obs
    below, above = np.nan_to_num(lo - margin - X, nan=-1.0), np.nan_to_num(X - hi - margin, nan=-1.0)
    out = np.maximum(below, above)
    if np.any(out > 0):
        i, k = np.unravel_index(int(np.argmax(out)), out.shape)
        n_bad = int(np.sum(np.any(out > 0, axis=1)))
        side = "below" if below[i, k] > 0 else "above"
        by = float(lo[k] - X[i, k]) if side == "below" else float(X[i, k] - hi[k])
        raise InputError(
            f"the profile is outside the forward table '{t.source}': {gm.ENDMEMBERS[k]} = {X[i, k]:.4f} at radius "
            f"{problem.radius_um[i]:g} µm is {by:.4f} {side} the table's range {lo[k]:.4f}-{hi[k]:.4f} "
            f"({n_bad} shell(s) out by more than {RANGE_SIGMAS:g} sd or {RANGE_FLOOR:g}); the table cannot produce "
            f"this garnet -- use a forward table for this rock's bulk composition (or check the profile's normalisation)."
        )


__all__ = [
    "CORR_NAMES",
    "Data",
    "HYPER_NAMES",
    "HyperStart",
    "MAP_OPTIONS",
    "BULK_FLOOR",
    "N_OBS",
    "OBS_NAMES",
    "ObsParams",
    "Options",
    "Problem",
    "SD_RANGE",
    "StepAux",
    "THERMO_BOX",
    "WALK_SPREAD",
    "ThermoForward",
    "build_problem",
    "check_profile_range",
    "closure_jacobian",
    "corr_start",
    "correlated_error",
    "data_of",
    "exact_linear",
    "forward_model",
    "fraction_observations",
    "linear_H",
    "linear_model",
    "noise",
    "observe_linear",
    "observe_table",
    "prior_draws",
    "smoother_options",
    "start",
    "thermo_predict",
    "thermo_forward",
    "thermo_fractions",
    "thermo_radius_walk",
    "thermo_time_walk",
    "observe_thermo",
    "path_covariance",
]

"""State-space model of a garnet P–T path along radius (the model behind ``jaxpetro ptpath``).

Radius is pseudo-time (the Bayesian P–T path reconstruction from zoned garnet of Kuwatani
et al. 2012, 2018, with its Gaussian Markov random field smoothness prior, solved here
sequentially by Kalman smoothing):
the state x_n = (P kbar, T °C) of step n follows a random walk along radius,

    x_n = x_{n-1} + w_n,   w_n ~ N(0, dr_n diag(q_P^2, q_T^2)),

and step n observes ``y_n = h(x_n) + v_n`` (four end-member fractions of a profile shell,
and P, T of an inclusion thermobarometer where one was measured; the other components are
masked), ``v_n ~ N(0, R_n)`` with ``R_n`` diagonal: the profile's ``_sd`` columns, or a
common sd for every fraction, and the inclusions' own sds. The prior of the first step is
N(m0, P0): the centre of the prior P–T box, sd a quarter of its width. Equations:
docs/science.md.

This module builds that model from the read inputs (:func:`build_problem`), the noise of
given log noise scales (:func:`noise`), the exact linear-Gaussian model of the linear
forward model (:func:`linear_model`), the starting noise scales and which are estimated
(:func:`start`), and the kernels' options from the config (:func:`smoother_options`).
It reads no files (the workflow passes what :mod:`jaxpetro.io` read).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from jaxpetro.config.ptpath import ForwardConfig, FractionationConfig, HyperConfig, PtpathConfig
from jaxpetro.errors import InputError
from jaxpetro.kernels import enks
from jaxpetro.kernels import kalman as kf
from jaxpetro.models import garnet as gm

#: L-BFGS options of the MAP cross-check: 300 iterations are ample for the smooth GMRF
#: posterior started at the smoothed mean (it typically stops after ~100 at tol 1e-8).
MAP_OPTIONS = enks.LbfgsOptions(max_iter=300)
HYPER_NAMES = ("q_P", "q_T", "sd")


@dataclass(frozen=True)
class Problem:
    """Arrays of one inversion (all numpy; n steps = shells and inclusion-only radii).

    Attributes:
        radius_um: (n,) step radii; shell: (n,) bool, True for profile shells.
        y: (n, 6) observations (4 fractions, P, T of inclusions; 0 where unobserved);
            mask: (n, 6) observed.
        var: (n, 6) measurement variances (fractions without an sd column: NaN, to be
            replaced by the common sd).
        h: forward function; params: its parameters; kind: 'table' or 'linear'.
        m0, P0: prior of the first step; box: ((Pmin, Pmax), (Tmin, Tmax)) prior ranges.
        table: the forward table (table kind; a :class:`jaxpetro.io.perplex.GarnetTable`) or None.
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


class Data(NamedTuple):
    """Arrays of a problem as a pytree (traced inside the compiled inversion).

    Attributes:
        y, mask: observations and their mask (n, 6).
        var: measurement variances; 1 where the common sd applies.
        common: True where the common (estimated or configured) sd applies.
        radius: step radii (n,) µm, the ``aux`` of the forward model.
        m0, P0: prior of the first step.
    """

    y: Float[ArrayLike, "n 6"]
    mask: Bool[ArrayLike, "n 6"]
    var: Float[ArrayLike, "n 6"]
    common: Bool[ArrayLike, "n 6"]
    radius: Float[ArrayLike, " n"]
    m0: Float[ArrayLike, " 2"]
    P0: Float[ArrayLike, "2 2"]


class HyperStart(NamedTuple):
    """Starting log noise scales (q_P, q_T, sd), which are estimated, and their names."""

    log_theta: np.ndarray
    free: tuple[bool, bool, bool]
    names: list[str]


class Options(NamedTuple):
    """The kernels' options of one run, from the config.

    Attributes:
        smoother: the ``ensemble`` section (size, variant, smoother, lag, inflation).
        likelihood: ensemble of the likelihood estimate for the noise scales: ``variant``
            of the run, ``hyperparameters.members`` members, no smoothing, no inflation.
        maximise: the ``hyperparameters`` section's Adam options (steps, learning_rate).
    """

    smoother: enks.SmootherOptions
    likelihood: enks.SmootherOptions
    maximise: enks.MaximiseOptions


def smoother_options(config: PtpathConfig) -> Options:
    """Options objects of the kernels, copied from the config sections (no renaming)."""
    ens = enks.SmootherOptions.from_config(config.ensemble)
    like = enks.SmootherOptions(size=config.hyperparameters.members, variant=ens.variant, smoother="none")
    return Options(ens, like, enks.MaximiseOptions.from_config(config.hyperparameters))


def forward_model(forward: ForwardConfig, table: Any, r_rim_default: float) -> tuple[Callable, Any, tuple]:
    """(h, params, prior box) of the configured forward model; ``table`` is the read forward
    table (table kind) or None; ``r_rim_default`` the rim radius when the config has none."""
    fr = forward.fractionation
    frac = gm.Fractionation(jnp.asarray(fr.K), jnp.asarray(fr.f_rim), jnp.asarray(fr.r_rim_um or r_rim_default))
    if forward.kind == "table":
        params = gm.params_from_table(table)._replace(frac=frac)
        valid_P = table.P_kbar[np.any(table.valid, axis=1)]
        valid_T = table.T_C[np.any(table.valid, axis=0)]
        box = ((float(valid_P.min()), float(valid_P.max())), (float(valid_T.min()), float(valid_T.max())))
        return gm.h_table, params, box
    lin = forward.linear
    params = gm.LinearParams(jnp.asarray(lin.X0), jnp.asarray(lin.P0), jnp.asarray(lin.T0),
                             jnp.asarray(lin.A), jnp.asarray(lin.B), frac)
    return gm.h_linear, params, ((lin.P0 - 5.0, lin.P0 + 5.0), (lin.T0 - 150.0, lin.T0 + 150.0))


def build_problem(profile: Any, inclusions: Any, table: Any, config: PtpathConfig) -> Problem:
    """Assemble the state-space problem.

    Args:
        profile: the zoning profile (a :class:`jaxpetro.io.profiles.GarnetProfile`).
        inclusions: inclusion thermobarometry (:class:`jaxpetro.io.profiles.Inclusions`) or None.
        table: the forward table (table kind) or None.
        config: the run's config (forward model, prior box, common sd).

    Raises:
        InputError: two inclusions at the same step.
    """
    h, params, box = forward_model(config.forward, table, float(profile.radius_um[-1]))
    if config.prior.P_kbar is not None:
        box = (tuple(config.prior.P_kbar), box[1])
    if config.prior.T_C is not None:
        box = (box[0], tuple(config.prior.T_C))
    m0 = np.array([np.mean(box[0]), np.mean(box[1])])
    P0 = np.diag([(np.diff(box[0])[0] / 4.0) ** 2, (np.diff(box[1])[0] / 4.0) ** 2])

    # Steps: every shell, plus inclusion radii that fall between shells (compositions masked there).
    radii = profile.radius_um
    if inclusions is not None:
        extra = [r for r in inclusions.radius_um if not np.any(np.isclose(radii, r, rtol=0, atol=1e-6))]
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
    if inclusions is not None:
        idx = np.array([int(np.argmin(np.abs(radii - r))) for r in inclusions.radius_um])
        if len(np.unique(idx)) != len(idx):
            raise InputError(
                f"inclusion file '{inclusions.source}': two inclusions at the same radius; combine them into one row."
            )
        y[idx, 4], y[idx, 5] = inclusions.P_kbar, inclusions.T_C
        var[idx, 4], var[idx, 5] = inclusions.P_sd**2, inclusions.T_sd**2
    mask = np.isfinite(y)
    y = np.where(mask, y, 0.0)
    return Problem(radii, shell, y, mask, var, h, params, config.forward.kind, m0, P0, box, table)


def data_of(problem: Problem) -> Data:
    """The traced arrays of ``problem``."""
    common = np.isnan(problem.var)
    return Data(problem.y, problem.mask, np.where(common, 1.0, problem.var), common, problem.radius_um,
                problem.m0, problem.P0)


def noise(data: Data, log_theta: Float[Array, " 3"]) -> tuple[Float[Array, "n 6 6"], Float[Array, "n 2 2"]]:
    """(R (n, 6, 6), Q (n, 2, 2)) from log (q_P, q_T, sd); differentiable in ``log_theta``."""
    q = jnp.exp(log_theta[:2])
    sd = jnp.exp(log_theta[2])
    var = jnp.where(data.common, sd**2, data.var)
    R = jax.vmap(jnp.diag)(var)
    radius = jnp.asarray(data.radius)
    dr = jnp.diff(radius, prepend=radius[:1])
    return R, kf.random_walk_noise(dr, q)


def linear_model(data: Data, params: gm.LinearParams, log_theta: Float[Array, " 3"]) -> kf.LinearGaussianModel:
    """Exact state-space model of the linear forward model (no fractionation)."""
    p = params
    H = jnp.zeros((gm.N_OBS, 2)).at[:4, 0].set(p.A).at[:4, 1].set(p.B).at[4, 0].set(1.0).at[5, 1].set(1.0)
    b = jnp.zeros(gm.N_OBS).at[:4].set(p.X0 - p.A * p.P0 - p.B * p.T0)
    n = jnp.shape(data.radius)[0]
    R, Q = noise(data, log_theta)
    return kf.LinearGaussianModel(jnp.eye(2), Q, jnp.broadcast_to(H, (n, gm.N_OBS, 2)),
                                  jnp.broadcast_to(b, (n, gm.N_OBS)), R, jnp.asarray(data.m0), jnp.asarray(data.P0))


def exact_linear(problem: Problem, fractionation: FractionationConfig) -> bool:
    """Whether the model is linear-Gaussian (linear forward model, no Rayleigh correction):
    then the exact Kalman smoother is the answer."""
    return problem.kind == "linear" and (fractionation.K == 1.0 or fractionation.f_rim == 0.0)


def start(problem: Problem, hyper: HyperConfig) -> HyperStart:
    """Initial log (q_P, q_T, sd), which of them are estimated, and their names."""
    span_r = max(float(problem.radius_um[-1] - problem.radius_um[0]), 1e-6)
    (p_lo, p_hi), (t_lo, t_hi) = problem.box
    given = [hyper.q_P, hyper.q_T, hyper.sd]
    # Starting guesses: a walk covering a quarter of the prior range over the profile, sd 0.01.
    guess = [0.25 * (p_hi - p_lo) / np.sqrt(span_r), 0.25 * (t_hi - t_lo) / np.sqrt(span_r), 0.01]
    needs_sd = bool(np.any(np.isnan(problem.var[:, :4]) & problem.mask[:, :4]))
    free = (given[0] is None, given[1] is None, given[2] is None and needs_sd)
    log_theta = np.log([g if g is not None else s for g, s in zip(given, guess)])
    return HyperStart(log_theta, free, [n for n, f in zip(HYPER_NAMES, free) if f])


__all__ = [
    "Data",
    "HyperStart",
    "MAP_OPTIONS",
    "Options",
    "Problem",
    "build_problem",
    "data_of",
    "exact_linear",
    "forward_model",
    "linear_model",
    "noise",
    "smoother_options",
    "start",
]

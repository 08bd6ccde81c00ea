"""The MRF posterior of a garnet P–T(–t) path: the whole-profile formulation of Kuwatani et al.
(2012), its mode (MAP, L-BFGS) and its NumPyro NUTS sample -- the nonlinear reference the
ensemble Kalman smoother of :mod:`jaxpetro.models.ptpath_model` is checked against.

Free variables ``z``: the path ``x_n = (P_n kbar, T_n °C)`` at every step and, with ages, the
static growth parameters ``s = (ln k0, Q J/mol, A0 Ma)``. The deterministic state components
follow from them as in the ensemble forecast: the clock of the time walk
``t_0 = D_0 / g(T_0)``, ``t_n = t_{n-1} + D_n / g(T_{n-1})`` (:mod:`jaxpetro.models.growth`).

Log posterior (up to a constant), with the noise of :func:`jaxpetro.models.ptpath_model.noise`
at given noise scales (empirical Bayes: the scales the ensemble run estimated)::

    log p(z | y) = log N(x_0, s; m0, diag sd0²)                                  prior of the core
                 + Σ_{n≥1} log N(x_n - x_{n-1}; 0, c_n Q_n)                      GMRF smoothness
                 + Σ_n log N(y_n; h(x_n, aux_n), R_n)   (observed slots only)    misfit

``c_n = 1`` for the radius walk (``Q_n = Δr_n diag q²``) and ``c_n = Δt_n(x_{n-1})`` for the time
walk (``Q_n = diag q²`` per Myr); the time walk's normaliser ``-1/2 log det(c_n Q_n)`` depends
on the path and is kept. Kuwatani et al. (2012) write the same posterior as a Gaussian Markov
random field prior (first differences along radius) times the misfit. On the linear-Gaussian
model (linearised table, radius walk) it is the exact Kalman/RTS posterior, a check of both.

Pure JAX; NumPyro is imported only by :func:`sample_nuts`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxpetro.kernels import enks
from jaxpetro.models import growth as gr
from jaxpetro.models import ptpath_model as pm

#: State components that are free variables besides P and T (the static growth parameters).
STATIC = (gr.LN_K0, gr.Q_ACT, gr.AGE0)


class Free(NamedTuple):
    """Free variables of the MRF posterior: the path ``x`` (n, 2) (P kbar, T °C) and the static
    growth parameters ``s`` (k,) (ln k0, Q J/mol, A0 Ma; k = 0 without ages)."""

    x: Float[Array, "n 2"]
    s: Float[Array, " k"]


def n_static(data: pm.Data) -> int:
    """Number of static free parameters (3 with ages, else 0)."""
    return 3 if jnp.shape(data.m0)[0] > gr.AGE0 else 0


def free_of(X: Float[ArrayLike, "n d"], data: pm.Data) -> Free:
    """The free variables of a full state path (n, d) (e.g. the ensemble mean)."""
    X = jnp.asarray(X)
    k = n_static(data)
    return Free(X[:, :2], X[0, jnp.asarray(STATIC[:k], int)] if k else jnp.zeros(0, X.dtype))


def states(z: Free, data: pm.Data, params: pm.ObsParams) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
    """(full states (n, d), transition scales c_n (n,)) of the free variables.

    Radius walk (d = 2): the path itself, c = 1. Time walk: the clock advanced by
    :func:`jaxpetro.models.growth.time_walk` from each previous state (the same transition as
    the ensemble forecast), c_n = Δt_n (c_0 unused)."""
    d = jnp.shape(data.m0)[0]
    x = z.x
    if d == 2:
        return x, jnp.ones(x.shape[0], x.dtype)
    x0 = jnp.concatenate([x[0], jnp.zeros(1, x.dtype), z.s])
    x0 = x0.at[gr.TIME].set(gr.shell_duration(params, x0, jnp.asarray(data.aux.D)[0]))
    aux_rest = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[1:], data.aux)

    def one(prev, inp):
        xn, aux_n = inp
        f, c = gr.time_walk(params, prev, aux_n)
        new = f.at[:2].set(xn)
        return new, (new, c)

    _, (rest, c) = lax.scan(one, x0, (x[1:], aux_rest))
    return jnp.concatenate([x0[None], rest]), jnp.concatenate([jnp.ones(1, x.dtype), c])


def _gauss(e: Float[Array, " k"], C: Float[Array, "k k"]) -> Float[Array, ""]:
    """log N(e; 0, C) without the 2π constant (Cholesky; no inverse)."""
    L = jnp.linalg.cholesky(C)
    return -0.5 * jnp.sum(solve_triangular(L, e, lower=True) ** 2) - jnp.sum(jnp.log(jnp.diagonal(L)))


def log_posterior(z: Free, data: pm.Data, params: pm.ObsParams, log_theta: Float[Array, " 4"],
                  h: Callable, chol_C: Float[Array, "D D"] | None = None) -> Float[Array, ""]:
    """Log posterior of the free variables (nats, up to a constant; see the module docstring).

    ``chol_C``: the lower Cholesky factor of the whole profile's neutralised data covariance
    (:func:`chol_path_covariance`, with a correlated forward-model error): the misfit is then
    one Gaussian over every step's residuals together instead of a sum over steps."""
    R, Q = pm.noise(data, log_theta)
    if chol_C is not None:  # one Gaussian over the whole profile's residuals
        X, c = states(z, data, params)
        prior_dyn = _prior_and_dynamics(z, X, c, Q, data)
        mask = jnp.asarray(data.mask).reshape(-1)
        r = jnp.where(mask, jnp.asarray(data.y).reshape(-1) - predict(X, data, params, h), 0.0)
        return prior_dyn - 0.5 * jnp.sum(solve_triangular(chol_C, r, lower=True) ** 2)
    X, c = states(z, data, params)

    def misfit(x, y_n, mask_n, R_n, aux_n):
        m = jnp.asarray(mask_n).astype(x.dtype)
        R0 = R_n * m[:, None] * m[None, :] + jnp.diag(1.0 - m)  # masked slots inert: unit variance, zero residual
        r = (jnp.where(mask_n, y_n, 0.0) - h(params, x, aux_n)) * m
        return _gauss(r, R0)

    obs = jax.vmap(misfit)(X, jnp.asarray(data.y), jnp.asarray(data.mask), R, data.aux)
    return _prior_and_dynamics(z, X, c, Q, data) + jnp.sum(obs)


def _prior_and_dynamics(z: Free, X, c, Q, data: pm.Data) -> Float[Array, ""]:
    """The prior of the core and the GMRF smoothness terms of :func:`log_posterior`."""
    m0, sd0 = jnp.asarray(data.m0), jnp.asarray(data.sd0)
    free_idx = jnp.asarray((0, 1, *STATIC[:n_static(data)]), int)
    first = jnp.concatenate([z.x[0], z.s])
    prior = -0.5 * jnp.sum(((first - m0[free_idx]) / sd0[free_idx]) ** 2)
    dyn = jax.vmap(lambda e, cn, Qn: _gauss(e, cn * Qn[:2, :2]))(z.x[1:] - z.x[:-1], c[1:], Q[1:])
    return prior + jnp.sum(dyn)


def predict(X: Float[Array, "n d"], data: pm.Data, params: pm.ObsParams, h: Callable) -> Float[Array, " D"]:
    """The observation function over a whole path, flattened step-major ((n 8,))."""
    return jax.vmap(lambda x, a: h(params, x, a))(X, data.aux).reshape(-1)


def chol_path_covariance(data: pm.Data, log_theta: Float[Array, " 4"],
                         log_corr: Float[Array, " 2"] | None) -> Float[Array, "D D"]:
    """Lower Cholesky factor of the whole profile's data covariance
    (:func:`jaxpetro.models.ptpath_model.path_covariance`) with the masked slots neutralised
    (zero correlation, unit variance: their residual is zeroed, so they are inert)."""
    C = pm.path_covariance(data, log_theta, log_corr)
    m = jnp.asarray(data.mask).reshape(-1).astype(C.dtype)
    C0 = C * m[:, None] * m[None, :] + jnp.diag(1.0 - m)
    return jnp.linalg.cholesky(0.5 * (C0 + C0.T))


# ----------------------------------------------------------------------------- whitened coordinates


def n_whitened(data: pm.Data) -> int:
    """Size m of the whitened coordinates u of a path: the static growth parameters first, then
    2 per step (the core's standardised P, T and the standardised random-walk increments), so
    that steps appended after the rim append coordinates (a padded profile's prefix is its own)."""
    return 2 * int(jnp.shape(data.y)[0]) + n_static(data)


def _increment_sd(data: pm.Data, log_theta: Float[Array, " 4"]) -> Float[Array, "n 2"]:
    """sd of the P and T increment per unit transition scale c_n: sqrt(diag Q_n) ((n, 2); row 0
    unused)."""
    Q = pm.noise(data, log_theta)[1]
    return jnp.sqrt(jnp.diagonal(Q, axis1=1, axis2=2)[:, :2])


def free_of_whitened(u: Float[Array, " m"], data: pm.Data, params: pm.ObsParams,
                     log_theta: Float[Array, " 4"]) -> Free:
    """The path of whitened coordinates ``u = (u_s, u_0, u_1, ...)`` (prior N(0, I)): static
    parameters ``s = m0_s + sd0_s u_s``, ``x_0 = m0 + sd0 u_0`` and ``x_n = x_{n-1} + sqrt(c_n diag Q_n) u_n`` with c_n the
    transition scale at x_{n-1} (1 for the radius walk, Δt_n for the time walk): the prior of u
    maps to the MRF prior of the path exactly (the time walk's normaliser is this map's
    Jacobian), so a posterior over u is the MRF posterior."""
    n = int(jnp.shape(data.y)[0])
    k = n_static(data)
    m0, sd0 = jnp.asarray(data.m0), jnp.asarray(data.sd0)
    w = u[k:].reshape(n, 2)
    idx = jnp.asarray(STATIC[:k], int)
    s = m0[idx] + sd0[idx] * u[:k] if k else jnp.zeros(0, u.dtype)
    x0 = m0[:2] + sd0[:2] * w[0]
    sdq = _increment_sd(data, log_theta)
    if jnp.shape(data.m0)[0] == 2:
        inc = sdq[1:] * w[1:]
        return Free(jnp.concatenate([x0[None], x0[None] + jnp.cumsum(inc, axis=0)]), s)
    full0 = jnp.concatenate([x0, jnp.zeros(1, u.dtype), s])
    full0 = full0.at[gr.TIME].set(gr.shell_duration(params, full0, jnp.asarray(data.aux.D)[0]))
    aux_rest = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[1:], data.aux)

    def one(prev, inp):
        wn, sdn, aux_n = inp
        f, c = gr.time_walk(params, prev, aux_n)
        new = f.at[:2].set(prev[:2] + jnp.sqrt(c) * sdn * wn)
        return new, new[:2]

    _, rest = lax.scan(one, full0, (w[1:], sdq[1:], aux_rest))
    return Free(jnp.concatenate([x0[None], rest]), s)


def whitened_of_free(z: Free, data: pm.Data, params: pm.ObsParams, log_theta: Float[Array, " 4"]) -> Float[Array, " m"]:
    """Inverse of :func:`free_of_whitened`."""
    m0, sd0 = jnp.asarray(data.m0), jnp.asarray(data.sd0)
    k = n_static(data)
    _, c = states(z, data, params)
    sdq = _increment_sd(data, log_theta)
    w0 = (z.x[0] - m0[:2]) / sd0[:2]
    rest = (z.x[1:] - z.x[:-1]) / (jnp.sqrt(c[1:])[:, None] * sdq[1:])
    idx = jnp.asarray(STATIC[:k], int)
    us = (z.s - m0[idx]) / sd0[idx] if k else jnp.zeros(0, z.x.dtype)
    return jnp.concatenate([us, w0, rest.reshape(-1)])


@functools.partial(jax.jit, static_argnames=("h",))
def exact_whole_path(data: pm.Data, params: pm.ObsParams, log_theta: Float[Array, " 4"],
                     log_corr: Float[Array, " 2"] | None, h: Callable) -> tuple[Float[Array, "n 2"], Float[Array, "n 2"], Float[Array, ""]]:
    """(mean, sd, log p(y)) of P and T for a model that is linear in the whitened coordinates
    (the linearised table with the radius walk), with the whole profile's data covariance
    (correlated forward-model error included): the path conditioned as one Gaussian,
    ``u | y ~ N(G^T S^-1 (y - g0), I - G^T S^-1 G)``, ``S = G G^T + C``. Without a correlated
    error it equals the Kalman RTS smoother (tested)."""
    m = n_whitened(data)
    zero = jnp.zeros(m, jnp.asarray(data.m0).dtype)

    def path(u):
        return free_of_whitened(u, data, params, log_theta).x

    def g(u):
        return predict(states(free_of_whitened(u, data, params, log_theta), data, params)[0], data, params, h)

    mask = jnp.asarray(data.mask).reshape(-1)
    mf = mask.astype(zero.dtype)
    G = jax.jacfwd(g)(zero) * mf[:, None]
    r = jnp.where(mask, jnp.asarray(data.y).reshape(-1) - g(zero), 0.0)
    L = chol_path_covariance(data, log_theta, log_corr)
    C0 = L @ L.T
    S = G @ G.T + C0
    Ls = jnp.linalg.cholesky(0.5 * (S + S.T))
    from jaxpetro.kernels._gaussian import masked_loglik

    loglik, Sr = masked_loglik(r, Ls, jnp.sum(1.0 - mf))
    mean_u = G.T @ Sr
    A = solve_triangular(Ls, G, lower=True)
    cov_u = jnp.eye(m, dtype=zero.dtype) - A.T @ A
    T = jax.jacfwd(path)(zero)  # (n, 2, m)
    cov_x = jnp.einsum("nim,mk,njk->nij", T, cov_u, T)
    return path(mean_u), jnp.sqrt(jnp.diagonal(cov_x, axis1=1, axis2=2)), loglik


def _scales(data: pm.Data, like: Free) -> Free:
    """Scales of the optimiser's and sampler's coordinates: the prior sds (P and T in kbar and
    °C are then equally conditioned)."""
    sd0 = jnp.asarray(data.sd0)
    k = n_static(data)
    return Free(jnp.broadcast_to(sd0[:2], like.x.shape), sd0[jnp.asarray(STATIC[:k], int)] if k else like.s)


@functools.partial(jax.jit, static_argnames=("h",))
def map_path(data: pm.Data, params: pm.ObsParams, log_theta: Float[Array, " 4"], init: Free, *, h: Callable,
             options: enks.LbfgsOptions = enks.LbfgsOptions(),
             chol_C: Float[Array, "D D"] | None = None) -> tuple[enks.LbfgsResult, Float[Array, "n d"]]:
    """MAP of the MRF posterior by L-BFGS from ``init`` (e.g. the smoothed mean), in coordinates
    scaled by the prior sds. Returns the L-BFGS result (``x``: :class:`Free`) and the full
    state path (n, d). On the linear-Gaussian model it is the exact RTS mean. ``chol_C``: with a
    correlated forward-model error (:func:`log_posterior`)."""
    scale = _scales(data, init)

    def to_free(u):
        return jax.tree_util.tree_map(lambda a, b, s: a + b * s, init, u, scale)

    res = enks.lbfgs_minimise(lambda u: -log_posterior(to_free(u), data, params, log_theta, h, chol_C),
                              jax.tree_util.tree_map(jnp.zeros_like, init), options)
    z = to_free(res.x)
    return res._replace(x=z), states(z, data, params)[0]


class NutsResult(NamedTuple):
    """A NUTS sample of the MRF posterior (numpy).

    Attributes:
        states: (chains, samples, n, d) full states (P, T[, t, ln k0, Q, A0]).
        r_hat: split Gelman–Rubin R̂ per state component, (n, d) (NaN for a deterministic one).
        ess: effective sample size per component, (n, d).
        divergences: divergent transitions per chain, (chains,).
        accept: mean acceptance probability per chain; steps: mean leapfrog steps per sample.
        seconds: wall time of warm-up and sampling.
    """

    states: np.ndarray
    r_hat: np.ndarray
    ess: np.ndarray
    divergences: np.ndarray
    accept: np.ndarray
    steps: np.ndarray
    seconds: float


def nuts_model(data: pm.Data, params: pm.ObsParams, log_theta: Float[Array, " 4"], centre: Free, h: Callable,
               chol_C: Float[Array, "D D"] | None = None):
    """NumPyro model of the MRF posterior: improper flat sites ``u`` in coordinates
    ``z = centre + u * prior sd`` and the log posterior as a factor (a constant Jacobian)."""
    import numpyro
    import numpyro.distributions as dist

    scale = _scales(data, centre)
    ux = numpyro.sample("u_x", dist.ImproperUniform(dist.constraints.real, (), centre.x.shape))
    us = numpyro.sample("u_s", dist.ImproperUniform(dist.constraints.real, (), centre.s.shape)) if centre.s.shape[0] \
        else jnp.zeros(0, centre.x.dtype)
    z = Free(centre.x + ux * scale.x, centre.s + us * scale.s)
    numpyro.factor("mrf", log_posterior(z, data, params, log_theta, h, chol_C))


def sample_nuts(key: PRNGKeyArray, data: pm.Data, params: pm.ObsParams, log_theta: Float[Array, " 4"],
                centre: Free, h: Callable, *, chains: int, samples: int, warmup: int,
                target_accept: float = 0.85, init_radius: float = 1.0,
                log_corr: Float[ArrayLike, " 2"] | None = None) -> NutsResult:
    """Sample the MRF posterior with NumPyro NUTS (dense mass matrix adapted in warm-up; chains
    vectorised), each chain started at ``centre`` moved by up to ``init_radius`` prior sds per
    coordinate; diagnostics from :mod:`numpyro.diagnostics`. ``log_corr`` (log sd, log length
    µm) of a correlated forward-model error: the misfit over the whole profile at once
    (:func:`log_posterior` with ``chol_C``, factorised once here)."""
    import time

    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
    from numpyro.infer import MCMC, NUTS, init_to_uniform

    kernel = NUTS(nuts_model, dense_mass=True, target_accept_prob=target_accept,
                  init_strategy=init_to_uniform(radius=init_radius))
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method="vectorized",
                progress_bar=False)
    t0 = time.perf_counter()
    # NumPyro's NUTS mixes int and float dtypes internally, which strict promotion (a user's
    # setting, and our tests') rejects: standard promotion for the sampler only.
    with jax.numpy_dtype_promotion("standard"):
        chol_C = None if log_corr is None else chol_path_covariance(data, log_theta, jnp.asarray(log_corr))
        mcmc.run(key, data, params, log_theta, centre, h, chol_C,
                 extra_fields=("diverging", "accept_prob", "num_steps"))
    u = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    scale = _scales(data, centre)
    us = u["u_s"] if "u_s" in u else jnp.zeros((chains, samples, 0), centre.x.dtype)
    def to_states(ux, us):
        return states(Free(centre.x + ux * scale.x, centre.s + us * scale.s), data, params)[0]

    X = jax.vmap(jax.vmap(to_states))(u["u_x"], us)
    X = np.asarray(jax.block_until_ready(X))
    seconds = time.perf_counter() - t0
    varying = np.std(X, axis=(0, 1)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        r_hat = np.where(varying, np.asarray(split_gelman_rubin(X)), np.nan)
        ess = np.where(varying, np.asarray(effective_sample_size(X)), np.nan)
    return NutsResult(X, r_hat, ess, np.asarray(extra["diverging"]).sum(axis=1),
                      np.asarray(extra["accept_prob"]).mean(axis=1), np.asarray(extra["num_steps"]).mean(axis=1),
                      seconds)


__all__ = [
    "Free",
    "chol_path_covariance",
    "exact_whole_path",
    "free_of_whitened",
    "n_whitened",
    "predict",
    "whitened_of_free",
    "NutsResult",
    "STATIC",
    "free_of",
    "log_posterior",
    "map_path",
    "n_static",
    "nuts_model",
    "sample_nuts",
    "states",
]

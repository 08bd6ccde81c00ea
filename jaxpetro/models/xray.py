"""X-ray measurement model of EPMA maps: dead time, rates, and the calibration to wt%.

The calibration is the qntmap form of SCIENCE.md section A. For element j and phase k:

* ``alpha[j, k]`` (wt% per cps/µA): slope through the origin of the spots' wt% against
  their net intensity (peak − background); it absorbs the matrix (ZAF) effect of phase k;
* ``gamma[j, k]`` (cps/µA): mean background intensity of the spots of phase k;
* ``beta[j]`` (dimensionless): spot peak intensity / map rate at the spot's pixel, from
  spot pixels whose membership in the spot's phase is at least a threshold;

and a pixel's wt% is ``W_ij = max(0, sum_k p_ik alpha_jk (beta_j r_ij - gamma_jk))`` with
``r`` the map rate (cps/µA) and ``p`` the pixel's phase weights (memberships or mixing
fractions). Everything here is pure JAX and differentiable in the spot data.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxpetro.chemistry import is_electron  # noqa: F401  (re-exported for callers)

#: ``Calibration.alpha_source`` codes.
ALPHA_OWN, ALPHA_POOLED, ALPHA_IMPORTED = 0, 1, 2
_DETECTION_T = 3.0  # a phase's net intensity must exceed 3 standard errors to get its own alpha


def exposure_s_uA(dwell_ms, current_A) -> np.ndarray:
    """Exposure of a pixel, dwell time (ms) x probe current (A), in s x µA.

    Counts divided by it are rates in cps/µA, the unit of spot intensities.
    """
    return np.asarray(dwell_ms, np.float64) * 1e-3 * np.asarray(current_A, np.float64) * 1e6


def dead_time_factor(counts, dwell_ms, dead_time_ns):
    """Live-time fraction ``1 - tau * I / t`` of a non-paralysable counter.

    Args:
        counts: counts per pixel (any shape, channels last).
        dwell_ms: dwell time per pixel in ms (broadcasts against ``counts``).
        dead_time_ns: dead time in ns per channel (0 for electron channels).

    Returns:
        The fraction; corrected counts are ``counts / factor``. A value <= 0 means the
        counter saturated (the count rate exceeds 1/tau): such counts cannot be corrected.
    """
    rate_cps = jnp.asarray(counts) / (jnp.asarray(dwell_ms) * 1e-3)
    return 1.0 - jnp.asarray(dead_time_ns) * 1e-9 * rate_cps


class Calibration(NamedTuple):
    """Calibration constants (rows: elements, columns: phases) and their standard errors.

    Attributes:
        alpha, alpha_se: (J, K) wt% per cps/µA.
        beta, beta_se: (T, J) map-to-spot intensity ratio per tile (T = 1 without tiles).
        gamma, gamma_se: (J, K) background in cps/µA.
        n_spots: (J, K) spots used for alpha and gamma.
        n_beta: (T, J) spot pixels used for beta.
        alpha_source: (J, K) 0 = fitted on the phase's spots, 1 = pooled over all phases
            (phase without spots, or element not detected in it), 2 = imported.
    """

    alpha: Float[Array, "J K"]
    alpha_se: Float[Array, "J K"]
    beta: Float[Array, "T J"]
    beta_se: Float[Array, "T J"]
    gamma: Float[Array, "J K"]
    gamma_se: Float[Array, "J K"]
    n_spots: Int[Array, "J K"]
    n_beta: Int[Array, "T J"]
    alpha_source: Int[Array, "J K"]


def fit_alpha_gamma(
    wt: Float[Array, "n J"],
    net: Float[Array, "n J"],
    background: Float[Array, "n J"],
    phase: Int[Array, " n"],
    use: Bool[Array, " n"],
    n_phases: int,
):
    """alpha (slope through the origin of wt% on net intensity) and gamma (mean
    background) per element and phase, with standard errors.

    A phase gets its own alpha when its spots' mean net intensity is at least 3
    standard errors above zero; otherwise (no spots, or the element is not detected in
    that phase, where the slope is noise) it takes the alpha pooled over all spots.
    gamma of a phase without spots is the mean over all spots.

    Returns:
        ``(alpha, alpha_se, gamma, gamma_se, n_spots, alpha_source)``, each (J, K).
    """
    wt, net, bg = (jnp.asarray(a, jnp.float64) for a in (wt, net, background))
    ok = jnp.asarray(use) & jnp.all(jnp.isfinite(wt) & jnp.isfinite(net), axis=1)
    onehot = jax.nn.one_hot(jnp.asarray(phase), n_phases, dtype=jnp.float64) * ok[:, None]  # (n, K)
    wt, net, bg = (jnp.where(ok[:, None], a, 0.0) for a in (wt, net, bg))
    n_k = onehot.sum(0)  # (K,)

    sxy, sxx = (net * wt).T @ onehot, (net * net).T @ onehot  # (J, K)
    own = sxy / jnp.where(sxx > 0, sxx, 1.0)
    resid2 = ((wt[:, :, None] - net[:, :, None] * own[None]) ** 2 * onehot[:, None, :]).sum(0)
    own_se = jnp.sqrt(resid2 / jnp.maximum(n_k - 1, 1) / jnp.where(sxx > 0, sxx, 1.0))
    pooled = (net * wt).sum(0) / jnp.maximum((net * net).sum(0), 1e-300)  # (J,)
    pooled_resid2 = ((wt - net * pooled) ** 2).sum(0)
    pooled_se = jnp.sqrt(pooled_resid2 / jnp.maximum(ok.sum() - 1, 1) / jnp.maximum((net * net).sum(0), 1e-300))
    # One spot gives no scatter: borrow the pooled relative error.
    own_se = jnp.where(n_k >= 2, own_se, jnp.abs(own) * (pooled_se / jnp.maximum(jnp.abs(pooled), 1e-300))[:, None])

    mean_net = (net.T @ onehot) / jnp.maximum(n_k, 1)
    var_net = ((net[:, :, None] - mean_net[None]) ** 2 * onehot[:, None, :]).sum(0) / jnp.maximum(n_k - 1, 1)
    detected = (n_k >= 1) & (sxx > 0) & (mean_net > _DETECTION_T * jnp.sqrt(var_net / jnp.maximum(n_k, 1)))
    detected &= own > 0
    alpha = jnp.where(detected, own, pooled[:, None])
    alpha_se = jnp.where(detected, own_se, pooled_se[:, None])
    source = jnp.where(detected, ALPHA_OWN, ALPHA_POOLED).astype(jnp.int32)

    gamma_own = (bg.T @ onehot) / jnp.maximum(n_k, 1)
    gamma_var = ((bg[:, :, None] - gamma_own[None]) ** 2 * onehot[:, None, :]).sum(0) / jnp.maximum(n_k - 1, 1)
    n_all = jnp.maximum(ok.sum(), 1)
    gamma_all = bg.sum(0) / n_all
    gamma_all_se = jnp.sqrt(((bg - gamma_all) ** 2 * ok[:, None]).sum(0) / jnp.maximum(n_all - 1, 1) / n_all)
    gamma = jnp.where(n_k >= 1, gamma_own, gamma_all[:, None])
    gamma_se = jnp.where(n_k >= 2, jnp.sqrt(gamma_var / jnp.maximum(n_k, 1)), gamma_all_se[:, None])
    n_spots = jnp.broadcast_to(n_k, alpha.shape).astype(jnp.int32)
    return alpha, alpha_se, gamma, gamma_se, n_spots, source


def fit_beta(
    peak: Float[Array, "n J"],
    spot_rate: Float[Array, "n J"],
    weight: Float[Array, " n"],
    tile: Int[Array, " n"],
    n_tiles: int,
):
    """beta per tile and element: the ratio estimator sum_s w y / sum_s w x of spot peak
    intensity y on map rate x at the spot pixel.

    This is the weighted least-squares slope through the origin with variance
    proportional to x, i.e. Poisson-like map noise; unlike the ordinary slope it is not
    biased by the counting noise of x. ``weight`` is the membership of the spot's phase
    (zero below the threshold). Tiles without a usable spot take the all-tile value.

    Returns:
        ``(beta, beta_se, n_used)``, each (T, J); beta is NaN where no spot is usable at all.
    """
    y, x = jnp.asarray(peak, jnp.float64), jnp.asarray(spot_rate, jnp.float64)
    w = jnp.where(jnp.isfinite(y) & jnp.isfinite(x), jnp.asarray(weight, jnp.float64)[:, None], 0.0)
    y, x = jnp.where(w > 0, y, 0.0), jnp.where(w > 0, x, 0.0)
    t = jax.nn.one_hot(jnp.asarray(tile), n_tiles, dtype=jnp.float64)  # (n, T)

    def ratio(sel):  # sel (n, G): spots of each group
        num, den = sel.T @ (w * y), sel.T @ (w * x)  # (G, J)
        beta = num / jnp.where(den > 0, den, 1.0)
        resid = w * (y - x * (sel @ beta))  # each spot against its own group's ratio
        var = (sel.T @ resid**2) / jnp.where(den > 0, den, 1.0) ** 2
        used = sel.T @ (w > 0).astype(jnp.float64)
        return jnp.where(den > 0, beta, jnp.nan), jnp.sqrt(var), used

    b_all, se_all, n_all = ratio(jnp.ones((x.shape[0], 1)))
    b_t, se_t, n_t = ratio(t)
    has = n_t >= 1
    beta = jnp.where(has, b_t, b_all)
    beta_se = jnp.where(has & (n_t >= 2), se_t, se_all)
    return beta, beta_se, jnp.where(has, n_t, n_all).astype(jnp.int32)


@jax.jit(static_argnames=("n_phases", "n_tiles"))
def calibrate(wt, net, background, peak, phase, use, spot_rate, weight, tile, n_phases: int, n_tiles: int = 1) -> Calibration:
    """All calibration constants from the spots (see :func:`fit_alpha_gamma`, :func:`fit_beta`)."""
    alpha, alpha_se, gamma, gamma_se, n_spots, source = fit_alpha_gamma(wt, net, background, phase, use, n_phases)
    beta, beta_se, n_beta = fit_beta(peak, spot_rate, jnp.where(use, weight, 0.0), tile, n_tiles)
    return Calibration(alpha, alpha_se, beta, beta_se, gamma, gamma_se, n_spots, n_beta, source)


class Quantified(NamedTuple):
    """Per-pixel quantification, each (N, J) float32 unless stated."""

    wt: Float[Array, "N J"]  # wt% oxide
    se: Float[Array, "N J"]  # standard error, wt%: counting + calibration
    lod: Float[Array, "N J"]  # detection limit, wt%


def _quantify_block(rate, weights, tile, exposure, cal: Calibration):
    r = rate.astype(jnp.float64)
    p = weights.astype(jnp.float64)
    e = exposure[None, :]
    beta, beta_se = cal.beta[tile], cal.beta_se[tile]  # (B, J)
    a_eff = p @ cal.alpha.T  # sum_k p_k alpha_jk
    ag = p @ (cal.alpha * cal.gamma).T
    net_term = beta * r
    wt = a_eff * net_term - ag
    bg_rate = p @ cal.gamma.T / beta  # background as a map rate, cps/µA
    # Counting noise: var(r) = E[r] / e for Poisson counts r * e. The observed rate
    # estimates E[r], but a pixel with 0 counts would get 0 error; E[r] >= background.
    var_count = (a_eff * beta) ** 2 * jnp.maximum(r, bg_rate) / e
    # Calibration: alpha_k and gamma_k enter with weight p_k; beta with a_eff * r.
    p2 = p * p
    sa2, sg2 = cal.alpha_se.T**2, cal.gamma_se.T**2  # (K, J)
    var_alpha = (net_term**2) * (p2 @ sa2) - 2 * net_term * (p2 @ (sa2 * cal.gamma.T)) + p2 @ (sa2 * cal.gamma.T**2)
    var_gamma = p2 @ (cal.alpha.T**2 * sg2)
    var_beta = (a_eff * r * beta_se) ** 2
    se = jnp.sqrt(var_count + jnp.maximum(var_alpha, 0.0) + var_gamma + var_beta)
    lod = 3.0 * a_eff * beta * jnp.sqrt(jnp.maximum(bg_rate, 0.0) / e)
    return (jnp.maximum(wt, 0.0).astype(jnp.float32), se.astype(jnp.float32), lod.astype(jnp.float32))


def quantify(
    rate: Float[Array, "N J"],
    weights: Float[Array, "N K"],
    exposure: Float[Array, " J"],
    cal: Calibration,
    tile: Int[Array, " N"] | None = None,
    chunk_size: int = 65536,
) -> Quantified:
    """wt%, standard error and detection limit of every pixel.

    Args:
        rate: dead-time corrected map rate in cps/µA (counts / exposure).
        weights: phase weights per pixel on the simplex (memberships or mixing fractions).
        exposure: dwell (s) x current (µA) of each channel's pixels, for the counting noise.
        cal: the calibration.
        tile: tile index of each pixel into ``cal.beta`` (default: all tile 0).
        chunk_size: pixels per block (bounds memory: ~30 float64 values per pixel-element).

    Returns:
        :class:`Quantified` (float32). Standard errors add in quadrature the Poisson
        counting error of the pixel and the regression errors of alpha, beta, gamma
        (taken as independent); LOD = 3 sqrt(background counts) / sensitivity.
    """
    n = rate.shape[0]
    if tile is None:
        tile = jnp.zeros((n,), jnp.int32)
    exposure = jnp.broadcast_to(jnp.asarray(exposure, jnp.float64), rate.shape[-1:])
    return _quantify(jnp.asarray(rate), jnp.asarray(weights), exposure, jnp.asarray(tile), cal,
                     chunk_size=int(max(1, min(chunk_size, n))))


@jax.jit(static_argnames=("chunk_size",))
def _quantify(rate, weights, exposure, tile, cal, *, chunk_size):
    n = rate.shape[0]
    blocks = -(-n // chunk_size)
    pad = blocks * chunk_size - n

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((blocks, chunk_size) + a.shape[1:])

    out = jax.lax.map(lambda b: _quantify_block(*b, exposure, cal), (split(rate), split(weights), split(tile)))
    return Quantified(*(o.reshape((blocks * chunk_size,) + o.shape[2:])[:n] for o in out))

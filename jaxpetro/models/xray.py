"""X-ray measurement model of EPMA maps: dead time, rates, and the calibration to wt%.

The calibration is that of qntmap (Yasumoto et al. 2018, Am. Mineral. 103:1690; the
equations are in docs/science.md). For element j and phase k:

* ``alpha[j, k]`` (wt% per cps/µA): slope through the origin of the spots' wt% against
  their net intensity (peak − background); it absorbs the matrix (ZAF) effect of phase k;
* ``gamma[j, k]`` (cps/µA): mean background intensity of the spots of phase k;
* ``beta[j]`` (dimensionless): spot peak intensity / map rate at the spot's pixel, from
  spot pixels whose membership in the spot's phase is at least a threshold;

and a pixel's wt% is ``W_ij = max(0, sum_k p_ik alpha_jk (beta_j r_ij - gamma_jk))`` with
``r`` the map rate (cps/µA) and ``p`` the pixel's phase weights (memberships or mixing
fractions). :func:`calibrate` and :func:`quantify` are pure JAX and differentiable in the
spot data and the map rates.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from jaxpetro.kernels._blocks import clamp_block_size, map_blocks
from jaxpetro.kernels._options import KernelOptions, static
from jaxpetro.kernels._precision import require_float64
from jaxpetro.models import parallel

__all__ = [
    "ALPHA_IMPORTED",
    "ALPHA_OWN",
    "ALPHA_POOLED",
    "Calibration",
    "QuantifyOptions",
    "Quantified",
    "ABSENT_WT",
    "calibrate",
    "calibrate_on_map_rates",
    "dead_time_factor",
    "exposure_s_uA",
    "fit_alpha_gamma",
    "fit_beta",
    "imported_calibration",
    "quantify",
    "tile_index",
]

#: ``Calibration.alpha_source`` codes.
ALPHA_OWN, ALPHA_POOLED, ALPHA_IMPORTED = 0, 1, 2
_DETECTION_T = 3.0  # a phase's net intensity must exceed 3 standard errors to get its own alpha


class QuantifyOptions(KernelOptions):
    """Options of the calibration and quantification; the field names are the keys of the
    ``quantify:`` config section (``weights`` and ``parameters`` are the workflow's).

    Attributes:
        threshold: minimum membership of a spot pixel in the spot's phase to enter beta.
        beta_window: odd window (px) of same-phase pixels averaged around a spot for beta
            (used by :func:`jaxpetro.models.spots.window_mean`). Static.
        beta_tiles: tiles (rows, cols) with their own beta, for drifting maps. Static.
        chunk_size: pixels per block of quantification work (bounds memory: ~30 float64
            values per pixel-element). Static.
    """

    threshold: float = 0.9
    beta_window: int = static(3)
    beta_tiles: tuple[int, int] = static((1, 1))
    chunk_size: int = static(65536)

    @property
    def n_tiles(self) -> int:
        """Number of beta tiles."""
        return int(self.beta_tiles[0] * self.beta_tiles[1])


def exposure_s_uA(dwell_ms: Real[ArrayLike, "*c"], current_A: Real[ArrayLike, "*c"]) -> np.ndarray:
    """Exposure of a pixel, dwell time (ms) x probe current (A), in s x µA.

    Counts divided by it are rates in cps/µA, the unit of spot intensities.
    """
    return np.asarray(np.asarray(dwell_ms, np.float64) * 1e-3 * np.asarray(current_A, np.float64) * 1e6)


def dead_time_factor(
    counts: Real[ArrayLike, "..."], dwell_ms: Real[ArrayLike, "..."], dead_time_ns: Real[ArrayLike, "..."]
) -> Float[Array, "..."]:
    """Live-time fraction ``1 - tau * I / t`` of a non-paralysable counter.

    Args:
        counts: counts per pixel (any shape, channels last).
        dwell_ms: dwell time per pixel in ms (broadcasts against ``counts``).
        dead_time_ns: dead time in ns per channel (0 for electron channels).

    Returns:
        The fraction; corrected counts are ``counts / factor``. A value <= 0 means the
        counter saturated (the count rate exceeds 1/tau): such counts cannot be corrected.
    """
    rate_cps = jnp.asarray(counts, jnp.float64) / (jnp.asarray(dwell_ms, jnp.float64) * 1e-3)
    return 1.0 - jnp.asarray(dead_time_ns, jnp.float64) * 1e-9 * rate_cps


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
    wt: Real[ArrayLike, "n J"],
    net: Real[ArrayLike, "n J"],
    background: Real[ArrayLike, "n J"],
    phase: Int[ArrayLike, " n"],
    use: Bool[ArrayLike, " n"],
    n_phases: int,
) -> tuple[Array, Array, Array, Array, Array, Array]:
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
    okf = ok.astype(jnp.float64)
    onehot = jax.nn.one_hot(jnp.asarray(phase), n_phases, dtype=jnp.float64) * okf[:, None]  # (n, K)
    wt, net, bg = (jnp.where(ok[:, None], a, 0.0) for a in (wt, net, bg))
    n_k = onehot.sum(0)[None, :]  # (1, K)

    sxy, sxx = (net * wt).T @ onehot, (net * net).T @ onehot  # (J, K)
    own = sxy / jnp.where(sxx > 0, sxx, 1.0)
    resid2 = ((wt[:, :, None] - net[:, :, None] * own[None]) ** 2 * onehot[:, None, :]).sum(0)
    own_se = jnp.sqrt(resid2 / jnp.maximum(n_k - 1, 1) / jnp.where(sxx > 0, sxx, 1.0))
    pooled = (net * wt).sum(0) / jnp.maximum((net * net).sum(0), 1e-300)  # (J,)
    pooled_resid2 = ((wt - net * pooled[None, :]) ** 2).sum(0)
    pooled_se = jnp.sqrt(pooled_resid2 / jnp.maximum(okf.sum() - 1, 1) / jnp.maximum((net * net).sum(0), 1e-300))
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
    n_all = jnp.maximum(okf.sum(), 1.0)
    gamma_all = bg.sum(0) / n_all
    gamma_all_se = jnp.sqrt(((bg - gamma_all[None, :]) ** 2 * okf[:, None]).sum(0) / jnp.maximum(n_all - 1, 1) / n_all)
    gamma = jnp.where(n_k >= 1, gamma_own, gamma_all[:, None])
    gamma_se = jnp.where(n_k >= 2, jnp.sqrt(gamma_var / jnp.maximum(n_k, 1)), gamma_all_se[:, None])
    n_spots = jnp.broadcast_to(n_k, alpha.shape).astype(jnp.int32)
    return alpha, alpha_se, gamma, gamma_se, n_spots, source


def fit_beta(
    peak: Real[ArrayLike, "n J"],
    spot_rate: Real[ArrayLike, "n J"],
    weight: Real[ArrayLike, " n"] | Real[ArrayLike, "n J"],
    tile: Int[ArrayLike, " n"],
    n_tiles: int,
) -> tuple[Array, Array, Array]:
    """beta per tile and element: the ratio estimator sum_s w y / sum_s w x of spot peak
    intensity y on map rate x at the spot pixel.

    This is the weighted least-squares slope through the origin with variance
    proportional to x, i.e. Poisson-like map noise; unlike the ordinary slope it is not
    biased by the counting noise of x. ``weight`` is the membership of the spot's phase
    (zero below the threshold), one per spot (n,) or per spot and element (n, J) (zero where
    a spot failed that element's consistency test). Tiles without a usable spot take the
    all-tile value.

    Standard error: the heteroscedasticity-consistent sandwich of the ratio estimator with each
    spot's residual scaled by its leverage, ``var = sum_s (w_s r_s / (1 - h_s))^2 / (sum_s w_s x_s)^2``
    with ``h_s = w_s x_s / sum w x`` (HC3, MacKinnon & White 1985; close to the delete-one
    jackknife). An element is carried by few spots (MnO by the garnet's, MgO by garnet and
    biotite): they dominate both the ratio and its residuals, and the plain sandwich (HC0)
    sees their residuals shrunk by the fit, so it is too small -- over 30 seeds of the demo
    section the errors of MgO, CaO, MnO relative to FeO scattered 1.29, 1.15, 1.09 times the HC0
    standard errors and 1.18, 1.07, 0.99 times these (benchmarks/qmap_calibration.md). A spot
    with h_s near 1 (the only spot of a tile) counts with 1 - h_s >= 0.05.

    Returns:
        ``(beta, beta_se, n_used)``, each (T, J); beta is NaN where no spot is usable at all.
    """
    y, x = jnp.asarray(peak, jnp.float64), jnp.asarray(spot_rate, jnp.float64)
    weight = jnp.asarray(weight, jnp.float64)
    weight = weight[:, None] if weight.ndim == 1 else weight  # (n,) or per element (n, J)
    w = jnp.where(jnp.isfinite(y) & jnp.isfinite(x), weight, 0.0)
    y, x = jnp.where(w > 0, y, 0.0), jnp.where(w > 0, x, 0.0)
    t = jax.nn.one_hot(jnp.asarray(tile), n_tiles, dtype=jnp.float64)  # (n, T)

    def ratio(sel):  # sel (n, G): spots of each group
        num, den = sel.T @ (w * y), sel.T @ (w * x)  # (G, J)
        beta = num / jnp.where(den > 0, den, 1.0)
        resid = w * (y - x * (sel @ beta))  # each spot against its own group's ratio
        den_s = sel @ den  # (n, J): each spot's group total
        lev = (w * x) / jnp.where(den_s > 0, den_s, 1.0)  # leverage of each spot in its group
        resid = resid / jnp.maximum(1.0 - lev, 0.05)  # HC3
        var = (sel.T @ resid**2) / jnp.where(den > 0, den, 1.0) ** 2
        used = sel.T @ (w > 0).astype(jnp.float64)
        return jnp.where(den > 0, beta, jnp.nan), jnp.sqrt(var), used

    b_all, se_all, n_all = ratio(jnp.ones((x.shape[0], 1)))
    b_t, se_t, n_t = ratio(t)
    has = n_t >= 1
    beta = jnp.where(has, b_t, b_all)
    beta_se = jnp.where(has & (n_t >= 2), se_t, se_all)
    return beta, beta_se, jnp.where(has, n_t, n_all).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("n_phases",))
def calibrate(
    wt: Real[ArrayLike, "n J"],
    peak: Real[ArrayLike, "n J"],
    background: Real[ArrayLike, "n J"],
    phase: Int[ArrayLike, " n"],
    use: Bool[ArrayLike, " n"],
    spot_rate: Real[ArrayLike, "n J"],
    membership: Real[ArrayLike, " n"],
    tile: Int[ArrayLike, " n"],
    n_phases: int,
    options: QuantifyOptions = QuantifyOptions(),
    beta_use: Bool[ArrayLike, "n J"] | None = None,
) -> Calibration:
    """All calibration constants from the spots (see :func:`fit_alpha_gamma`, :func:`fit_beta`).

    Args:
        wt: wt% oxide of each spot (NaN: not reported).
        peak, background: spot intensities at the peak position (cps/µA); the net
            intensity of alpha is their difference.
        phase: component index of each spot (any value where ``use`` is False).
        use: spots that enter the calibration.
        spot_rate: map rate (cps/µA) at each spot's pixel (or a window mean about it).
        membership: membership of each spot's pixel in the spot's own phase; spots below
            ``options.threshold`` do not enter beta, the others weigh by it.
        tile: beta tile of each spot's pixel (see :func:`tile_index`).
        n_phases: K.
        options: ``threshold`` and ``beta_tiles`` are used here.
        beta_use: (n, J) spots that may enter each element's beta (default all), e.g. those
            passing :func:`jaxpetro.models.spots.beta_consistency`.

    Differentiable in the spot data (wt, intensities, map rates, memberships).
    """
    require_float64("calibrate")  # the regressions' floors (1e-300) and sums need float64
    peak, background = jnp.asarray(peak), jnp.asarray(background)
    use = jnp.asarray(use)
    m = jnp.asarray(membership)
    weight = jnp.where(use & (m >= options.threshold), m, 0.0)
    if beta_use is not None:
        weight = jnp.where(jnp.asarray(beta_use), weight[:, None], 0.0)
    alpha, alpha_se, gamma, gamma_se, n_spots, source = fit_alpha_gamma(wt, peak - background, background, phase, use,
                                                                        n_phases)
    beta, beta_se, n_beta = fit_beta(peak, spot_rate, weight, tile, options.n_tiles)
    return Calibration(alpha, alpha_se, beta, beta_se, gamma, gamma_se, n_spots, n_beta, source)


#: A phase whose spots average less than this wt% of an oxide lacks the element: its map rate
#: is background (used by :func:`calibrate_on_map_rates`).
ABSENT_WT = 0.1


@functools.partial(jax.jit, static_argnames=("n_phases", "n_tiles"))
def calibrate_on_map_rates(
    wt: Real[ArrayLike, "n J"],
    rate: Real[ArrayLike, "n J"],
    rate_var: Real[ArrayLike, "n J"],
    phase: Int[ArrayLike, " n"],
    use: Bool[ArrayLike, " n"],
    mean_z: Real[ArrayLike, " K"],
    n_phases: int,
    n_tiles: int = 1,
) -> Calibration:
    """Calibration from spots that report wt% but no intensities: wt% against the map rate
    at the spot (errors in variables), with a per-phase background.

    Model, per element j and phase k: ``wt_s = alpha_jk (x_s - g_jk)`` with x_s the true map
    rate (cps/µA) at spot s and g_jk the phase's background rate. The observed rate is
    ``x_s + noise``, Poisson with the known variance ``rate_var``: an errors-in-variables
    problem. The least-squares slope sum w x / sum x^2 is biased low by the noise
    (regression dilution: E[x^2] = x^2 + var); this uses the ratio estimator
    ``alpha_jk = sum_s wt_s / sum_s (x_s - g_jk)``, unbiased to first order since E[x_obs] =
    x, with the second-order term removed: E[1/Sx] ~ (1 + var(Sx)/Sx^2)/Sx.

    Background: a phase whose spots average below :data:`ABSENT_WT` of the oxide lacks the
    element, so its mean rate is its background. The continuum scales with the mean atomic
    number (Kramers' law), so the phases with the element take ``g_jk = c_j Zbar_k`` with
    ``c_j`` the Zbar-weighted mean of the absent phases' backgrounds per unit Z (0 when every
    phase has the element: the background is then part of alpha, as before).

    Args:
        wt: (n, J) spot wt% (NaN: not reported).
        rate, rate_var: (n, J) map rate at each spot (window mean, cps/µA) and its Poisson
            variance (counts / (pixels x exposure)^2, (cps/µA)^2), from pixels selected
            without looking at that element's counts (see
            :func:`jaxpetro.models.spots.window_mean_eiv`).
        phase: (n,) component of each spot; use: (n,) spots that enter.
        mean_z: (K,) mean atomic number of each phase (from its spots' wt%,
            :func:`jaxpetro.models.oxides.mean_atomic_number`; any value for phases without spots).
        n_phases: K. n_tiles: beta tiles (beta is 1 on every tile: the map rate is the intensity).

    Returns:
        :class:`Calibration` with beta = 1, gamma = g (the background rate, cps/µA), alpha and
        their standard errors (alpha_se from the scatter of the spots about the line and the
        counting noise; gamma_se the standard error of the background mean).
    """
    require_float64("calibrate_on_map_rates")
    w, x, v = (jnp.asarray(a, jnp.float64) for a in (wt, rate, rate_var))
    ok = jnp.asarray(use)[:, None] & jnp.isfinite(w) & jnp.isfinite(x) & jnp.isfinite(v)  # (n, J)
    okf = ok.astype(jnp.float64)
    w, x, v = (jnp.where(ok, a, 0.0) for a in (w, x, v))
    onehot = jax.nn.one_hot(jnp.asarray(phase), n_phases, dtype=jnp.float64)  # (n, K)
    n_k = okf.T @ onehot  # (J, K)
    sw, sx, sv = (a.T @ onehot for a in (w * okf, x, v))  # (J, K) sums over each phase's spots
    mean_w = sw / jnp.maximum(n_k, 1.0)
    mean_x = sx / jnp.maximum(n_k, 1.0)
    z = jnp.asarray(mean_z, jnp.float64)[None, :]

    absent = (n_k >= 1) & (mean_w < ABSENT_WT)
    # Background per unit Z from the absent phases, weighted by their spot counts.
    c = (jnp.where(absent, n_k * mean_x, 0.0).sum(1) / jnp.maximum(jnp.where(absent, n_k * z, 0.0).sum(1), 1e-300))
    has_absent = absent.any(axis=1)
    c = jnp.where(has_absent, c, 0.0)
    g = jnp.where(absent, mean_x, c[:, None] * z)  # (J, K)
    # SE of the absent phases' means: Poisson variance of their spot rates (sv / n^2 per phase).
    c_var = jnp.where(absent, sv, 0.0).sum(1) / jnp.maximum(jnp.where(absent, n_k * z, 0.0).sum(1), 1e-300) ** 2
    g_se = jnp.where(absent, jnp.sqrt(sv) / jnp.maximum(n_k, 1.0), jnp.sqrt(c_var)[:, None] * z)
    g_se = jnp.where(has_absent[:, None] | absent, g_se, 0.0)

    net = sx - n_k * g  # sum of (x - g) over the phase's spots
    # Ratio estimator with its second-order bias removed (var(sum x) = sum var).
    alpha_own = sw / jnp.where(net > 0, net, 1.0) * (1.0 - sv / jnp.where(net > 0, net, 1.0) ** 2)
    pred = (x - onehot @ g.T) * (onehot @ alpha_own.T)  # (n, J) each spot against its phase's line
    resid2 = ((w - pred) ** 2 * okf).T @ onehot  # (J, K)
    # alpha_se: scatter about the line (which includes the counting noise of x) over the net sum.
    alpha_own_se = jnp.sqrt(resid2 / jnp.maximum(n_k - 1.0, 1.0) * n_k) / jnp.where(net > 0, net, 1.0)
    detected = (n_k >= 1) & (net > 0) & ~absent & (alpha_own > 0)
    # Pooled alpha (phases without spots, or without the element): sum w / sum (x - g) over detected phases.
    sw_p = jnp.where(detected, sw, 0.0).sum(1)
    net_p = jnp.where(detected, net, 0.0).sum(1)
    pooled = sw_p / jnp.where(net_p > 0, net_p, 1.0)
    pooled_se = jnp.sqrt(jnp.where(detected, resid2, 0.0).sum(1) / jnp.maximum(jnp.where(detected, n_k, 0.0).sum(1) - 1.0, 1.0)
                         * jnp.where(detected, n_k, 0.0).sum(1)) / jnp.where(net_p > 0, net_p, 1.0)
    one = n_k >= 2
    alpha = jnp.where(detected, alpha_own, pooled[:, None])
    # One spot gives no scatter: it borrows the pooled relative error.
    borrowed = alpha_own * (pooled_se / jnp.maximum(pooled, 1e-300))[:, None]
    alpha_se = jnp.where(detected & one, alpha_own_se, jnp.where(detected, borrowed, pooled_se[:, None]))
    # Phases without spots: the Kramers background at the mean Z of the phases with spots.
    z_known = jnp.where(n_k.sum(0) > 0, z[0], 0.0)
    z_mean = z_known.sum() / jnp.maximum((n_k.sum(0) > 0).sum().astype(jnp.float64), 1.0)
    gamma = jnp.where(n_k >= 1, g, c[:, None] * z_mean)
    gamma_se = jnp.where(n_k >= 1, g_se, jnp.sqrt(c_var)[:, None] * z_mean)
    source = jnp.where(detected, ALPHA_OWN, ALPHA_POOLED).astype(jnp.int32)
    n_el = w.shape[1]
    beta = jnp.ones((n_tiles, n_el))
    n_beta = jnp.broadcast_to(okf.sum(0), (n_tiles, n_el)).astype(jnp.int32)
    return Calibration(alpha, alpha_se, beta, jnp.zeros((n_tiles, n_el)), gamma, gamma_se, n_k.astype(jnp.int32),
                       n_beta, source)


def imported_calibration(
    alpha: Real[ArrayLike, "J K"],
    alpha_se: Real[ArrayLike, "J K"],
    beta: Real[ArrayLike, "T J"],
    beta_se: Real[ArrayLike, "T J"],
    gamma: Real[ArrayLike, "J K"],
    gamma_se: Real[ArrayLike, "J K"],
) -> Calibration:
    """A :class:`Calibration` from constants read back from a file (no spot counts; every
    alpha marked :data:`ALPHA_IMPORTED`)."""
    alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
    zeros = np.zeros(alpha.shape, np.int32)
    return Calibration(alpha, np.asarray(alpha_se, np.float64), beta, np.asarray(beta_se, np.float64),
                       np.asarray(gamma, np.float64), np.asarray(gamma_se, np.float64), zeros,
                       np.zeros(beta.shape, np.int32), np.full(alpha.shape, ALPHA_IMPORTED, np.int32))


def tile_index(rows: int, cols: int, beta_tiles: tuple[int, int]) -> np.ndarray:
    """(rows, cols) int32 beta tile of each pixel (row-major tiles of equal size)."""
    tr, tc = beta_tiles
    r = (np.arange(rows) * tr // rows)[:, None]
    c = (np.arange(cols) * tc // cols)[None, :]
    return (r * tc + c).astype(np.int32)


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
    rate: Real[ArrayLike, "N J"],
    weights: Real[ArrayLike, "N K"],
    exposure: Real[ArrayLike, "*J"],
    cal: Calibration,
    tile: Int[ArrayLike, " N"] | None = None,
    options: QuantifyOptions = QuantifyOptions(),
    devices: Sequence[Any] = (),
) -> Quantified:
    """wt%, standard error and detection limit of every pixel.

    Args:
        rate: dead-time corrected map rate in cps/µA (counts / exposure).
        weights: phase weights per pixel on the simplex (memberships or mixing fractions).
        exposure: dwell (s) x current (µA) of each channel's pixels (or one value for all),
            for the counting noise.
        cal: the calibration.
        tile: tile index of each pixel into ``cal.beta`` (default: all tile 0).
        options: ``chunk_size`` (pixels per block) is used here.
        devices: local devices the pixels are sharded over
            (:func:`jaxpetro.models.parallel.pixel_devices`; each pixel is computed on its
            own, so the result does not depend on them); empty or one = unsharded.

    Returns:
        :class:`Quantified` (float32). Standard errors add in quadrature the Poisson
        counting error of the pixel and the regression errors of alpha, beta, gamma
        (taken as independent); LOD = 3 sqrt(background counts) / sensitivity.
    """
    rate = jnp.asarray(rate)
    n = rate.shape[0]
    tile = jnp.zeros((n,), jnp.int32) if tile is None else jnp.asarray(tile)
    exposure = jnp.broadcast_to(jnp.asarray(exposure), rate.shape[-1:])
    cal = Calibration(*(jnp.asarray(a) for a in cal))
    # padding rows (zero rate and weights, tile 0) are inert and cut off again
    return parallel.shard_pixels(lambda r, p, t, e, c: _quantify(r, p, e, t, c, options),
                                 (rate, jnp.asarray(weights), tile), (0.0, 0.0, 0), devices=devices,
                                 shared=(exposure, cal))


@jax.jit
def _quantify(rate, weights, exposure, tile, cal: Calibration, options: QuantifyOptions) -> Quantified:
    require_float64("quantify")  # the error propagation works in float64; outputs are float32
    exposure = exposure.astype(jnp.float64)
    block = clamp_block_size(options.chunk_size, rate.shape[0])
    # Padded rows (zero rate, zero weights, tile 0) are cut off again.
    out = map_blocks(lambda r, p, t: _quantify_block(r, p, t, exposure, cal), (rate, weights, tile), block, (0, 0, 0))
    return Quantified(*out)

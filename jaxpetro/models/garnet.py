"""Forward models of garnet zoning: composition as a function of (P, T) along radius.

State of a shell: ``x = (P [kbar], T [°C])``. Observation of a shell (docs/science.md;
Kuwatani et al. 2012, 2018):
``y = (X_alm, X_prp, X_grs, X_sps, P_incl, T_incl)`` -- the four end-member fractions
of the garnet and, where an inclusion thermobarometer was measured, a direct
observation of the state. The inclusion components are masked at shells without one.

Forward models ``h(params, x, aux) -> (6,)``, pure JAX, differentiable in x and params:

* :func:`h_linear` -- the linearised table ``X = X0 + A (P - P0) + B (T - T0)`` (constant
  sensitivities: a first-order expansion about (P0, T0), not Spear's Gibbs method);
* :func:`h_table` -- a table of garnet composition over a regular P-T grid (Perple_X,
  Theriak-Domino, MAGEMin, BurnMan; e.g. Holland & Powell 2011 data with the White et al.
  2014 metapelite models), interpolated by bicubic convolution (C1, so the
  ensemble and the MAP see a differentiable h); missing nodes are filled for the
  interpolant only and the region they touch is reported by :func:`table_support`;

both optionally corrected for Mn depletion of the reactive bulk by Rayleigh
fractionation, ``X_sps <- X_sps (1 - F)^(K - 1)`` with the grown volume fraction
``F = f_rim (r / r_rim)^3`` (the other end-members rescaled to keep the sum).

Growth law (time axis): ``dr/dt = k0 exp(-Q / (R T[K]))`` (:func:`growth_rate`,
:func:`shell_durations`; differentiable in T).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

ENDMEMBERS: tuple[str, ...] = ("X_alm", "X_prp", "X_grs", "X_sps")
OBS_NAMES: tuple[str, ...] = (*ENDMEMBERS, "P_kbar", "T_C")
N_OBS = len(OBS_NAMES)
SPS = 3  # index of X_sps
R_GAS = 8.314462618  # J / (mol K)
KELVIN = 273.15


class Fractionation(NamedTuple):
    """Rayleigh-fractionation correction of X_sps (all scalars).

    Attributes:
        K: garnet/bulk partition coefficient of Mn (> 1 depletes the bulk); 1 disables.
        f_rim: volume fraction of the reactive bulk consumed when the rim grew (0..1).
        r_rim: radius of the rim (µm).
    """

    K: Float[Array, ""]
    f_rim: Float[Array, ""]
    r_rim: Float[Array, ""]


NO_FRACTIONATION = Fractionation(jnp.asarray(1.0), jnp.asarray(0.0), jnp.asarray(1.0))


class LinearParams(NamedTuple):
    """Linearised model ``X = X0 + A (P - P0) + B (T - T0)``.

    Attributes:
        X0: composition at the reference point (4,).
        P0: reference pressure (kbar); T0: reference temperature (°C).
        A: dX/dP per end-member (1/kbar), (4,); B: dX/dT (1/°C), (4,).
        frac: Rayleigh correction.
    """

    X0: Float[Array, " 4"]
    P0: Float[Array, ""]
    T0: Float[Array, ""]
    A: Float[Array, " 4"]
    B: Float[Array, " 4"]
    frac: Fractionation = NO_FRACTIONATION


class TableParams(NamedTuple):
    """Gridded table ``values[i, j] = X(P_min + i dP, T_min + j dT)``.

    Attributes:
        values: (nP, nT, 4) end-member fractions, missing nodes filled (see
            :func:`fill_missing`), so the interpolant is defined everywhere.
        P_min, dP: first node and spacing of the pressure axis (kbar).
        T_min, dT: first node and spacing of the temperature axis (°C).
        frac: Rayleigh correction.
    """

    values: Float[Array, "nP nT 4"]
    P_min: Float[Array, ""]
    dP: Float[Array, ""]
    T_min: Float[Array, ""]
    dT: Float[Array, ""]
    frac: Fractionation = NO_FRACTIONATION


def _rayleigh(X: Float[Array, " 4"], frac: Fractionation, radius: Float[ArrayLike, ""]) -> Float[Array, " 4"]:
    """Mn depletion of the bulk by Rayleigh fractionation (identity for K = 1 or f_rim = 0)."""
    F = jnp.clip(frac.f_rim * (radius / frac.r_rim) ** 3, 0.0, 0.999)
    sps = X[SPS] * (1.0 - F) ** (frac.K - 1.0)
    others = X.at[SPS].set(0.0) * (1.0 - sps) / jnp.maximum(1.0 - X[SPS], 1e-12)
    return others.at[SPS].set(sps)


def _with_state(X: Float[Array, " 4"], x: Float[Array, " d"]) -> Float[Array, " 6"]:
    return jnp.concatenate([X, x[:2]])


def h_linear(params: LinearParams, x: Float[Array, " d"], aux: Float[ArrayLike, ""]) -> Float[Array, " 6"]:
    """Linearised forward model; ``aux`` is the shell radius (µm)."""
    X = params.X0 + params.A * (x[0] - params.P0) + params.B * (x[1] - params.T0)
    return _with_state(_rayleigh(X, params.frac, aux), x)


def _keys_weights(s: Float[Array, ""]) -> Float[Array, " 4"]:
    """Cubic-convolution weights (Keys, a = -1/2) of the nodes at offsets -1, 0, 1, 2."""
    a = -0.5
    t = jnp.array([1.0 + s, s, 1.0 - s, 2.0 - s])
    near = (a + 2.0) * t**3 - (a + 3.0) * t**2 + 1.0
    far = a * t**3 - 5.0 * a * t**2 + 8.0 * a * t - 4.0 * a
    return jnp.where(t <= 1.0, near, far)


def table_interp(params: TableParams, P: Float[ArrayLike, ""], T: Float[ArrayLike, ""]) -> Float[Array, " 4"]:
    """Bicubic (cubic-convolution) interpolation of the table at (P kbar, T °C).

    Outside the grid the point is clamped to its edge (constant continuation), so
    ensemble members that stray keep finite predictions; whether a path is inside is
    checked separately (:func:`table_support`). Differentiable (C1) in P, T and the
    table values.
    """
    nP, nT, _ = params.values.shape
    u = jnp.clip((P - params.P_min) / params.dP, 0.0, nP - 1.0)
    v = jnp.clip((T - params.T_min) / params.dT, 0.0, nT - 1.0)
    i = jnp.clip(jnp.floor(u), 0, nP - 2).astype(jnp.int32)
    j = jnp.clip(jnp.floor(v), 0, nT - 2).astype(jnp.int32)
    offsets = jnp.arange(-1, 3, dtype=jnp.int32)
    rows = jnp.clip(i + offsets, 0, nP - 1)
    cols = jnp.clip(j + offsets, 0, nT - 1)
    patch = params.values[rows[:, None], cols[None, :]]  # (4, 4, 4)
    wu, wv = _keys_weights(u - i.astype(u.dtype)), _keys_weights(v - j.astype(v.dtype))
    return jnp.einsum("a,b,abk->k", wu, wv, patch)


def h_table(params: TableParams, x: Float[Array, " d"], aux: Float[ArrayLike, ""]) -> Float[Array, " 6"]:
    """Table forward model; ``aux`` is the shell radius (µm)."""
    X = table_interp(params, x[0], x[1])
    return _with_state(_rayleigh(X, params.frac, aux), x)


def fill_missing(values: np.ndarray, valid: np.ndarray, n_iter: int = 500) -> np.ndarray:
    """Fill missing nodes (``valid == False``) by iterated neighbour averaging (a discrete
    harmonic fill) so the interpolant is smooth; the filled region is never trusted (see
    :func:`table_support`). ``values`` (nP, nT, k); returns a new float64 array."""
    out = np.where(valid[..., None], values, np.nan).astype(np.float64)
    fill = np.nanmean(out.reshape(-1, out.shape[-1]), axis=0)
    out[~valid] = fill
    if valid.all():
        return out
    for _ in range(n_iter):
        pad = np.pad(out, ((1, 1), (1, 1), (0, 0)), mode="edge")
        avg = (pad[:-2, 1:-1] + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:]) / 4.0
        out = np.where(valid[..., None], out, avg)
    return out


def table_support(valid: np.ndarray, P_min: float, dP: float, T_min: float, dT: float,
                  P: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Whether each point (P, T) is inside the grid and its 4x4 interpolation stencil
    uses only real (not filled) nodes. Returns a bool array shaped like P."""
    P, T = np.asarray(P, float), np.asarray(T, float)
    nP, nT = valid.shape
    u, v = (P - P_min) / dP, (T - T_min) / dT
    inside = (u >= -1e-9) & (u <= nP - 1 + 1e-9) & (v >= -1e-9) & (v <= nT - 1 + 1e-9)
    i = np.clip(np.floor(np.nan_to_num(u)), 0, nP - 2).astype(int)
    j = np.clip(np.floor(np.nan_to_num(v)), 0, nT - 2).astype(int)
    ok = np.ones(P.shape, bool)
    for di in range(-1, 3):
        for dj in range(-1, 3):
            ok &= valid[np.clip(i + di, 0, nP - 1), np.clip(j + dj, 0, nT - 1)]
    return inside & ok


def params_from_table(table) -> TableParams:
    """Parameters of the table forward model from a :class:`jaxpetro.io.perplex.GarnetTable`
    (any object with ``values``, ``valid``, ``P_kbar``, ``T_C``, ``dP``, ``dT``); missing nodes
    are filled for the interpolant (:func:`fill_missing`)."""
    values = fill_missing(np.asarray(table.values), np.asarray(table.valid))
    return TableParams(jnp.asarray(values), jnp.asarray(float(table.P_kbar[0])), jnp.asarray(float(table.dP)),
                       jnp.asarray(float(table.T_C[0])), jnp.asarray(float(table.dT)))


def growth_rate(
    T_C: Float[ArrayLike, "..."], k0_um_per_Myr: float | Float[Array, ""], Q_J_per_mol: float | Float[Array, ""]
) -> Float[Array, "..."]:
    """Radial growth rate ``G(T) = k0 exp(-Q / (R T[K]))`` in µm/Myr (differentiable in all arguments)."""
    return k0_um_per_Myr * jnp.exp(-Q_J_per_mol / (R_GAS * (jnp.asarray(T_C) + KELVIN)))


def shell_durations(
    radius_um: Float[ArrayLike, " n"],
    T_C: Float[ArrayLike, "*members n"],
    k0_um_per_Myr: float | Float[Array, ""],
    Q_J_per_mol: float | Float[Array, ""],
) -> Float[Array, "*members n"]:
    """Time to grow each shell (Myr): ``dt_n = dr_n / G(T_n)``, ``dr_0 = r_0`` (growth from
    the centre). ``T_C`` may carry leading (ensemble) axes; ``t = cumsum(dt)`` is the time
    since nucleation."""
    G = growth_rate(T_C, k0_um_per_Myr, Q_J_per_mol)
    dr = jnp.diff(jnp.asarray(radius_um), prepend=0.0)
    return jnp.broadcast_to(dr, G.shape) / G


__all__ = [
    "ENDMEMBERS",
    "Fractionation",
    "LinearParams",
    "NO_FRACTIONATION",
    "N_OBS",
    "OBS_NAMES",
    "TableParams",
    "fill_missing",
    "growth_rate",
    "h_linear",
    "h_table",
    "params_from_table",
    "shell_durations",
    "table_interp",
    "table_support",
]

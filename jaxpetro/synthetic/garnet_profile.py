"""Synthetic garnet zoning profiles with a known P–T path (the ``jaxpetro ptpath`` demo; docs/ptpath.md).

A clockwise path -- burial with heating, then decompression while T still rises -- is
mapped through the demo forward table (BurnMan / HP2011 metapelite garnet over 2-14
kbar, 400-700 °C; ``data/garnet_grid_demo.csv``) and measured with Gaussian noise per
end-member. The truth is returned alongside, for the recovery tests and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro._precision import float64
from jaxpetro.io.perplex import GarnetTable, read_table
from jaxpetro.models import growth as gr
from jaxpetro.models.garnet import TableParams, params_from_table, table_interp

DEMO_TABLE_NAME = "garnet_grid_demo.csv"


def demo_table_path() -> Path:
    """Path of the demo forward table shipped with the package (``jaxpetro/synthetic/data``)."""
    return Path(str(resources.files("jaxpetro.synthetic").joinpath("data", DEMO_TABLE_NAME)))


def table_params(table: GarnetTable) -> TableParams:
    """JAX parameters of the table forward model (missing nodes filled for the interpolant)."""
    return params_from_table(table)


def clockwise_path(n_shells: int = 60, r_rim_um: float = 1500.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clockwise P–T path over ``n_shells`` evenly spaced shells.

    P rises from 5.0 to a peak of 9.5 kbar at 62.5 % of the radius (burial), then falls to
    7.6 kbar at the rim (decompression); T rises monotonically from 480 to 610 °C.
    Returns ``(radius_um, P_kbar, T_C)``.
    """
    r = r_rim_um * np.arange(1, n_shells + 1) / n_shells
    s = r / r_rim_um
    P = 5.0 + 4.5 * np.sin(0.8 * np.pi * s)
    T = 480.0 + 130.0 * s**0.8
    return r, P, T


@dataclass(frozen=True)
class SyntheticProfile:
    """A simulated profile with its truth.

    Attributes:
        radius_um: (n,) radii; P_kbar, T_C: (n,) the true path.
        X_true: (n, 4) noise-free fractions; X: (n, 4) measured (NaN where dropped).
        noise_sd: measurement sd per end-member.
        t_Myr: (n,) true time since nucleation (:func:`make_time_walk_profile`), else None.
    """

    radius_um: np.ndarray
    P_kbar: np.ndarray
    T_C: np.ndarray
    X_true: np.ndarray
    X: np.ndarray
    noise_sd: float
    t_Myr: np.ndarray | None = None


@float64  # the same numbers whatever the caller's x64 setting
def make_garnet_profile(
    table: GarnetTable | None = None,
    *,
    seed: int = 0,
    n_shells: int = 60,
    noise_sd: float = 0.005,
    r_rim_um: float = 1500.0,
    missing: float = 0.0,
) -> SyntheticProfile:
    """Simulate a zoning profile of the clockwise path through ``table`` (default: the demo).

    Args:
        seed: numpy seed of the noise and of the dropped values.
        n_shells: number of analysed shells, core to rim.
        noise_sd: Gaussian measurement noise per end-member fraction.
        missing: fraction of individual values dropped (NaN) at random.
    """
    table = read_table(demo_table_path()) if table is None else table
    r, P, T = clockwise_path(n_shells, r_rim_um)
    params = table_params(table)
    X_true = np.asarray(jax.vmap(lambda p, t: table_interp(params, p, t))(jnp.asarray(P), jnp.asarray(T)))
    rng = np.random.default_rng(seed)
    X = np.clip(X_true + rng.normal(0.0, noise_sd, X_true.shape), 0.0, 1.0)
    if missing > 0:
        X[rng.uniform(size=X.shape) < missing] = np.nan
    return SyntheticProfile(r, P, T, X_true, X, noise_sd)


def time_walk_path(seed: int, *, n_shells: int = 40, dr_um: float = 25.0, k0_um_per_Myr: float = 1.0e9,
                   Q_J_per_mol: float = 1.0e5, q_P: float = 0.5, q_T: float = 15.0, P0: float = 6.0,
                   T0: float = 520.0, box: tuple = ((3.0, 13.0), (430.0, 680.0))) -> tuple[np.ndarray, ...]:
    """A P–T–t path drawn from the time walk of ``jaxpetro ptpath`` itself (docs/ptpath.md):
    shells ``dr_um`` apart, shell n grown in ``Δt_n = D_n / g(T_{n-1})`` (Arrhenius interface
    control, m = 0; ``Δt_0`` at T0 from nucleation), P and T stepping by ``N(0, Δt_n q²)``
    (q_P kbar/√Myr, q_T °C/√Myr). Steps leaving ``box`` are reflected back into it (the path
    stays where the forward table is). Returns ``(radius_um, P_kbar, T_C, t_Myr)``."""
    rng = np.random.default_rng(seed)
    r = dr_um * np.arange(1, n_shells + 1)
    D = gr.radial_steps(r)
    P, T, t = np.empty(n_shells), np.empty(n_shells), np.empty(n_shells)
    P[0], T[0] = P0, T0
    t[0] = D[0] / float(gr.rate_constant(T0, np.log(k0_um_per_Myr), Q_J_per_mol))
    for n in range(1, n_shells):
        dt = D[n] / float(gr.rate_constant(T[n - 1], np.log(k0_um_per_Myr), Q_J_per_mol))
        t[n] = t[n - 1] + dt
        for arr, q, (lo, hi) in ((P, q_P, box[0]), (T, q_T, box[1])):
            v = arr[n - 1] + np.sqrt(dt) * q * rng.normal()
            arr[n] = lo + abs(v - lo) if v < lo else (hi - abs(v - hi) if v > hi else v)
    return r, P, T, t


@float64
def make_time_walk_profile(table: GarnetTable | None = None, *, seed: int = 0, noise_sd: float = 0.005,
                           **path) -> SyntheticProfile:
    """Simulate a profile of a :func:`time_walk_path` (keywords passed on) through ``table``
    (default: the demo), measured with Gaussian noise ``noise_sd`` per end-member; the truth
    includes the time axis ``t_Myr``."""
    table = read_table(demo_table_path()) if table is None else table
    r, P, T, t = time_walk_path(seed, **path)
    params = table_params(table)
    X_true = np.asarray(jax.vmap(lambda p, q: table_interp(params, p, q))(jnp.asarray(P), jnp.asarray(T)))
    rng = np.random.default_rng(seed + 1000)
    X = np.clip(X_true + rng.normal(0.0, noise_sd, X_true.shape), 0.0, 1.0)
    return SyntheticProfile(r, P, T, X_true, X, noise_sd, t)


__all__ = ["SyntheticProfile", "clockwise_path", "demo_table_path", "make_garnet_profile", "make_time_walk_profile",
           "table_params", "time_walk_path"]

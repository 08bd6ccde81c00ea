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
    """

    radius_um: np.ndarray
    P_kbar: np.ndarray
    T_C: np.ndarray
    X_true: np.ndarray
    X: np.ndarray
    noise_sd: float


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


__all__ = ["SyntheticProfile", "clockwise_path", "demo_table_path", "make_garnet_profile", "table_params"]

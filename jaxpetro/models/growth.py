"""Garnet growth law inside the system model: a random walk in time whose clock is the growth rate.

Radial growth rate (interface control, Arrhenius; optional radius dependence)::

    G(T, r) = k0 exp(-Q / (R T[K])) (r / r_ref)^(-m)        [µm/Myr]

``m = 0`` is interface-controlled growth at a constant rate for a given T (Kretz 1974;
Carlson 1989 "interface-controlled" end-member); ``m = 1`` gives dr/dt ∝ 1/r, the
diffusion-limited (parabolic) form of spherical growth (Carlson 1989, 1991). At fixed T over a
shell the time to grow from r_{n-1} to r_n is exact::

    Δt_n = ∫ dr / G = D_n / g(T),  D_n = (r_n^(m+1) - r_{n-1}^(m+1)) / ((m + 1) r_ref^m),
    g(T) = k0 exp(-Q / (R T[K]))

(:func:`radial_steps` gives D_n in µm, with r_{-1} = 0: the first shell's time counts from
nucleation). The state of the time walk is ``x = (P kbar, T °C, t Myr[, ln k0, Q J/mol, A0 Ma])``:
P and T follow a random walk in *time*, ``x_n = x_{n-1} + w_n``, ``w_n ~ N(0, Δt_n diag(q_P², q_T²))``,
with Δt_n from each member's own T_{n-1} (explicit Euler over the shell; T clamped to the forward
model's range, :class:`GrowthLaw`) -- so the growth law shapes the path: a shell grown fast (hot) allows little change of P and T, a slow one more. The clock
``t_n = t_{n-1} + Δt_n`` is deterministic. With ages the rate constants ln k0 and Q and the
nucleation age A0 (Ma) join the state as static components (state augmentation) and an age
observes ``A0 - t_n`` (the age of a shell grown t_n after nucleation).

All functions are pure JAX, differentiable in T and the rate constants.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

R_GAS = 8.314462618  # J / (mol K)
KELVIN = 273.15
#: State component indices of the time walk.
P, T, TIME, LN_K0, Q_ACT, AGE0 = range(6)
STATE_NAMES = ("P_kbar", "T_C", "t_Myr", "ln_k0", "Q_J_per_mol", "A0_Ma")


class GrowthLaw(NamedTuple):
    """Rate constants used when they are not in the state (scalars), and the temperature range
    over which the law is evaluated.

    Attributes:
        ln_k0: natural log of the pre-exponential rate k0 (µm/Myr).
        Q: activation energy (J/mol).
        T_lo_C, T_hi_C: the temperature range of the system model (°C; the forward model's):
            a member's T is clamped to it before the rate is evaluated (:func:`shell_duration`).
            Arrhenius growth slows without bound as T falls (at Q = 100 kJ/mol, 10^4 times
            slower at 200 °C than at 500 °C), so an ensemble member that wanders out of the
            forward model's range -- where its prediction is the table's constant edge
            continuation and carries no information -- would get a shell duration, hence a
            random-walk step, that grows with its own excursion: a runaway (-2000 kbar on the
            shipped profile before this bound). Inside the range the law is unchanged.
    """

    ln_k0: Float[ArrayLike, ""]
    Q: Float[ArrayLike, ""]
    T_lo_C: Float[ArrayLike, ""] = 0.0
    T_hi_C: Float[ArrayLike, ""] = 1500.0


def rate_constant(T_C: Float[ArrayLike, "..."], ln_k0: Float[ArrayLike, "..."], Q: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """``g(T) = k0 exp(-Q / (R T[K]))`` (µm/Myr), the growth rate at r = r_ref (Arrhenius)."""
    return jnp.exp(jnp.asarray(ln_k0) - jnp.asarray(Q) / (R_GAS * (jnp.asarray(T_C) + KELVIN)))


def radial_steps(radius_um: np.ndarray, m: float = 0.0, r_ref_um: float = 1000.0) -> np.ndarray:
    """``D_n = (r_n^(m+1) - r_{n-1}^(m+1)) / ((m + 1) r_ref^m)`` (µm), r_{-1} = 0, so that
    ``Δt_n = D_n / g(T)`` is the exact time to grow shell n at constant T (numpy, (n,))."""
    r = np.asarray(radius_um, float)
    prev = np.concatenate([[0.0], r[:-1]])
    return (r ** (m + 1.0) - prev ** (m + 1.0)) / ((m + 1.0) * r_ref_um**m)


def _constants(params: Any, x: Float[Array, " d"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(ln k0, Q) of a state: its own components when augmented (d = 6), else the fixed law."""
    if x.shape[0] > LN_K0:
        return x[LN_K0], x[Q_ACT]
    return params.growth.ln_k0, params.growth.Q


def shell_duration(params: Any, x: Float[Array, " d"], D_um: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """Time (Myr) to grow a shell of radial step ``D_um`` at the state's T: ``D / g(T)``, with T
    clamped to the law's range ``[T_lo_C, T_hi_C]`` (:class:`GrowthLaw`; a member outside the
    forward model's range grows at the rate of its edge, so its step stays bounded)."""
    ln_k0, Q = _constants(params, x)
    law = params.growth
    return D_um / rate_constant(jnp.clip(x[T], law.T_lo_C, law.T_hi_C), ln_k0, Q)


def time_walk(params: Any, x: Float[Array, " d"], aux: Any) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """Transition of the time walk (an :data:`jaxpetro.kernels.enks.TransitionFn`): the clock
    advances by ``Δt_n = D_n / g(T_{n-1})`` and the process noise of P and T scales by Δt_n.
    ``aux.D`` is this step's radial step (µm); ``params.growth`` the fixed law (d = 3)."""
    dt = shell_duration(params, x, aux.D)
    return x.at[TIME].add(dt), dt


def start_times(params: Any, X: Float[Array, "N d"], D0: Float[ArrayLike, ""]) -> Float[Array, "N d"]:
    """Members with their clock set to the time from nucleation to the first shell, ``D_0 / g(T_0)``."""
    dt = jax.vmap(lambda x: shell_duration(params, x, D0))(X)
    return X.at[:, TIME].set(dt)


__all__ = [
    "AGE0",
    "GrowthLaw",
    "KELVIN",
    "LN_K0",
    "P",
    "Q_ACT",
    "R_GAS",
    "STATE_NAMES",
    "T",
    "TIME",
    "rate_constant",
    "radial_steps",
    "shell_duration",
    "start_times",
    "time_walk",
]

"""The thermodynamic forward model as a P-T path observation: garnet from each member's own reactive bulk.

For ``forward.kind: thermo``, the forward model is the built-in Gibbs minimisation
(:mod:`jaxpetro.thermo`) of each ensemble member instead of a table. The reactive bulk
composition is part of the member's state, so the forecast carries it and fractionation
follows each member's own path:

* state ``x = (P kbar, T °C, <the walk's other components>, b_1 ... b_C)``: the C component moles
  of the reactive bulk (:data:`jaxpetro.thermo.bulk.COMPONENTS`) start at ``ThermoParams.bulk_start``;
* :func:`h_thermo` ``(params, x, aux) -> (X_alm, X_prp, X_grs, X_sps, P, T)``: the protocol of
  :func:`jaxpetro.models.garnet.h_table` (``aux``, the shell radius, is unused: no Rayleigh
  factor, the depletion is in the bulk). It is differentiable in x, including the bulk, through
  the implicit derivatives of the equilibrium;
* :func:`fractionate` ``(params, x) -> x``: the growth step between shells. The garnet in
  equilibrium with the reactive bulk at the member's P-T is the new shell (the earlier shells
  were taken out of the bulk, so all the garnet the bulk now makes is new growth). A share
  ``params.efficiency`` of it is removed from the bulk slots. Mass is conserved exactly.
  Apply it after a shell has been observed and before the next forecast.

A node where the equilibrium fails (``reason != 0``) still returns the solver's numbers, because
an ensemble update cannot take a NaN. :func:`observe_thermo` also returns the reason, so that the
caller can mask the member or inflate its error.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from jaxpetro.thermo.equilibrium import Assemblage, EquilibriumOptions, equilibrate
from jaxpetro.thermo.growth import garnet_fractions, remove_shell

__all__ = ["ThermoParams", "fractionate", "fractionate_status", "h_thermo", "observe_thermo"]


class ThermoParams(eqx.Module):
    """Parameters of the thermodynamic observation.

    Attributes:
        system: the fixed assemblage (:func:`jaxpetro.thermo.equilibrium.assemblage`).
        bulk_start: index of the first bulk component in the state (static).
        options: the Newton options.
        efficiency: share of the equilibrium garnet removed per step (1 = full fractionation,
            0 = closed-system equilibrium growth with the original bulk).
    """

    system: Assemblage
    bulk_start: int = eqx.field(static=True)
    options: EquilibriumOptions
    efficiency: Float[ArrayLike, ""] = 1.0

    def bulk_of(self, x: Float[Array, " d"]) -> Float[Array, " C"]:
        return x[self.bulk_start:self.bulk_start + self.system.components.shape[0]]


def _equilibrium(params: ThermoParams, x: Float[Array, " d"]):
    P = x[0] * 1e8  # kbar -> Pa
    T = x[1] + 273.15  # degC -> K
    return equilibrate(params.system, P, T, params.bulk_of(x), options=params.options)


def observe_thermo(params: ThermoParams, x: Float[Array, " d"], aux: Float[ArrayLike, ""] = 0.0
                   ) -> tuple[Float[Array, " 6"], Int[Array, ""]]:
    """(X_alm, X_prp, X_grs, X_sps, P, T) of the member's reactive bulk at its P-T, and the
    node's reason code (:data:`jaxpetro.thermo.equilibrium.REASONS`; 0 = ok)."""
    eq = _equilibrium(params, x)
    X = garnet_fractions(params.system, eq.x)
    return jnp.concatenate([X, x[:2]]), eq.reason


def h_thermo(params: ThermoParams, x: Float[Array, " d"], aux: Float[ArrayLike, ""] = 0.0) -> Float[Array, " 6"]:
    """The observation function ``h(params, x, aux)`` of the ptpath model (see the module docstring)."""
    return observe_thermo(params, x, aux)[0]


def fractionate_status(params: ThermoParams, x: Float[Array, " d"]) -> tuple[Float[Array, " d"], Int[Array, ""]]:
    """:func:`fractionate` and the reason code of its equilibrium (one solve for both)."""
    eq = _equilibrium(params, x)
    g = params.system.phase_of("g")
    d = params.efficiency * jnp.maximum(eq.amounts[g], 0.0)
    shell = remove_shell(params.system, eq, params.bulk_of(x), d)
    C = params.system.components.shape[0]
    return x.at[params.bulk_start:params.bulk_start + C].set(shell.bulk), eq.reason


def fractionate(params: ThermoParams, x: Float[Array, " d"]) -> Float[Array, " d"]:
    """The state after this step's garnet shell has left the reactive bulk (the bulk slots lose
    ``efficiency`` x the equilibrium garnet amount times its composition; nothing else changes)."""
    return fractionate_status(params, x)[0]

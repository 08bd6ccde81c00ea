"""The ptpath observation of the thermodynamic model (jaxpetro.models.thermo_forward): garnet from
the reactive bulk in the state, against BurnMan; fractionation removes exactly the equilibrium garnet."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.models.thermo_forward import ThermoParams, fractionate, h_thermo, observe_thermo
from jaxpetro.thermo.bulk import components_from_wt
from jaxpetro.thermo.equilibrium import EquilibriumOptions, assemblage

REF = json.loads((Path(__file__).parent / "data" / "burnman_equilibrium.json").read_text())


@pytest.mark.slow
def test_observation_and_fractionation():
    bulk = components_from_wt(REF["bulks"]["pelite_b"])
    params = ThermoParams(assemblage(REF["meta"]["assemblage"], bulk), 3, EquilibriumOptions(), 1.0)
    r = REF["results"]["pelite_b"][4]
    x = jnp.concatenate([jnp.array([r["P"] / 1e8, r["T"] - 273.15, 1.0]), jnp.asarray(bulk)])
    obs = jax.jit(observe_thermo)
    y, reason = obs(params, x)
    g = np.asarray(r["g"])
    np.testing.assert_allclose(np.asarray(y[:4]), [g[1], g[0] + g[4], g[3], g[2]], atol=1e-8)
    np.testing.assert_allclose(np.asarray(y[4:]), np.asarray(x[:2]))
    assert int(reason) == 0
    x1 = jax.jit(fractionate)(params, x)
    np.testing.assert_array_equal(np.asarray(x1[:3]), np.asarray(x[:3]))
    removed = np.asarray(x[3:] - x1[3:])
    # the shell's silica: 3 SiO2 per garnet formula unit, r["phase_moles"][0] formula units
    np.testing.assert_allclose(removed[0], 3 * r["phase_moles"][0], rtol=1e-7)
    # what is left is the other phases, already in equilibrium: it makes no more garnet here
    _, reason1 = obs(params, x1)
    assert int(reason1) in (1, 3)  # garnet vanishes (or the solve cannot reach a zero amount)
    # differentiable in the bulk slots of the state (implicit derivatives)
    J = jax.jit(jax.jacfwd(h_thermo, argnums=1))(params, x)
    assert J.shape == (6, x.shape[0]) and np.all(np.isfinite(np.asarray(J)))
    assert float(jnp.abs(J[3, 3 + 5])) > 0  # X_sps responds to MnO

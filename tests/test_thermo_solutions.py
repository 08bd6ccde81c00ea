"""Solution models (White et al. 2014 g, mu, bi; Holland & Powell 2003 pl4tr) against BurnMan
2.1 (tests/data/burnman_activities.json) and against identities of the formalism."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpetro.thermo.endmembers import R_GAS
from jaxpetro.thermo.solutions import (
    chemical_potentials, excess_partial_gibbs, ideal_log_activities, molar_gibbs, parse_sites, solution_model,
)

REF = json.loads((Path(__file__).parent / "data" / "burnman_activities.json").read_text())["solutions"]
MODELS = {name: solution_model(name) for name in REF}


@jax.jit
def _evaluate(m, x, P, T):
    def one(x, P, T):
        lna = ideal_log_activities(m, x) + excess_partial_gibbs(m, x, P, T) / (R_GAS * T)
        return lna, chemical_potentials(m, x, P, T), molar_gibbs(m, x, P, T)

    return jax.vmap(one)(x, P, T)


@pytest.mark.parametrize("name", list(REF))
def test_activities_and_chemical_potentials_match_burnman(name):
    cases = REF[name]
    x = jnp.asarray([c["x"] for c in cases])
    P = jnp.asarray([c["P"] for c in cases], dtype=jnp.float64)
    T = jnp.asarray([c["T"] for c in cases], dtype=jnp.float64)
    lna, mu, g = _evaluate(MODELS[name], x, P, T)
    a_ref = np.array([c["activities"] for c in cases])
    np.testing.assert_allclose(np.exp(np.asarray(lna)), a_ref, rtol=1e-8, atol=0)
    np.testing.assert_allclose(np.asarray(mu), [c["partial_gibbs"] for c in cases], rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g), [c["gibbs"] for c in cases], rtol=1e-12)


def test_parse_sites():
    assert parse_sites("[Mgx]3[Aly]2") == [(3.0, {"Mgx": 1.0}), (2.0, {"Aly": 1.0})]
    assert parse_sites("[Naa][Altb1/4Sitb3/4]") == [(1.0, {"Naa": 1.0}), (1.0, {"Altb": 0.25, "Sitb": 0.75})]
    for bad in ("Mg3", "[Mgx1/2]3", "[Mgx]3x[Aly]2", ""):
        with pytest.raises(ValueError):
            parse_sites(bad)


def test_pure_endmember_has_unit_ideal_activity():
    for m in MODELS.values():
        for i in range(m.size):
            x = jnp.zeros(m.size).at[i].set(1.0)
            # site fractions of absent species are 0; only the end-member's own appear in its activity
            assert float(ideal_log_activities(m, x)[i]) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.02, 1.0), min_size=5, max_size=5), st.floats(700.0, 1100.0), st.floats(1e8, 1.5e9))
def test_chemical_potentials_are_partial_molar_gibbs(w, T, P):
    """mu_i = d(n G_molar)/dn_i (an identity the closed-form van Laar derivative must satisfy)."""
    grad, mu = _partial_molar(jnp.asarray(w), jnp.float64(P), jnp.float64(T))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(mu), rtol=1e-10, atol=1e-6)


@jax.jit
def _partial_molar(n, P, T):
    m = MODELS["g"]
    total_g = lambda nn: jnp.sum(nn) * molar_gibbs(m, nn / jnp.sum(nn), P, T)
    return jax.grad(total_g)(n), chemical_potentials(m, n / jnp.sum(n), P, T)


def test_reduced_model_drops_endmembers_and_empty_sites():
    g = solution_model("g", keep=["py", "alm", "gr"])
    assert g.endmember_names == ("py", "alm", "gr")
    assert "Mnx@1" not in g.species and "Fey@2" not in g.species
    full = MODELS["g"]
    x3 = jnp.array([0.2, 0.6, 0.2])
    x5 = jnp.array([0.2, 0.6, 0.0, 0.2, 0.0])
    P, T = jnp.float64(6e8), jnp.float64(850.0)
    np.testing.assert_allclose(np.asarray(excess_partial_gibbs(g, x3, P, T)),
                               np.asarray(excess_partial_gibbs(full, x5, P, T))[[0, 1, 3]], rtol=1e-12)
    with pytest.raises(KeyError):
        solution_model("g", keep=["py", "xyz"])

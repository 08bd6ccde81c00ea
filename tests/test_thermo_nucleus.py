"""The garnet in equilibrium with the matrix where the rock makes none (jaxpetro.thermo.growth.nucleus).

Ground truth by construction: remove all the garnet of an equilibrium from the bulk; the depleted
bulk sits exactly on garnet-in at that P-T, so the garnet in equilibrium with its matrix there is
the garnet just removed (the equilibrium's own composition, solved independently by the full
Gibbs minimisation) with zero affinity. A P-T behind garnet-in (lower P along this path) has no
fixed-assemblage solution with a positive garnet mode, and a positive affinity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.thermo.bulk import components_from_wt
from jaxpetro.thermo.equilibrium import assemblage, equilibrate
from jaxpetro.thermo.growth import garnet_fractions, nucleus, remove_shell

#: the metapelite of tests/test_ptpath_thermo.py
WT = {"SiO2": 59.8, "Al2O3": 16.6, "FeO": 6.9, "MgO": 2.6, "MnO": 0.4, "CaO": 1.1, "Na2O": 1.7, "K2O": 3.8,
      "H2O": 1.6, "O": 0.1}
P0, T0 = 6.0e8, 560.0 + 273.15  # Pa, K


@pytest.fixture(scope="module")
def rock():
    bulk = jnp.asarray(components_from_wt(WT))
    system = assemblage(["g", "bi", "mu", "pl", "q"], np.asarray(bulk))
    matrix = assemblage(["bi", "mu", "pl", "q"], np.asarray(bulk))
    eq = equilibrate(system, P0, T0, bulk)
    assert int(eq.reason) == 0 and float(eq.amounts[0]) > 1e-3
    depleted = remove_shell(system, eq, bulk, eq.amounts[0])
    nu = jax.jit(lambda P, T, b: nucleus(system, matrix, P, T, b))
    return system, matrix, bulk, eq, depleted, nu


def test_on_garnet_in_the_nucleus_is_the_removed_garnet(rock):
    system, _, bulk, eq, depleted, nu = rock
    r = nu(P0, T0, depleted.bulk)
    assert bool(r.ok)
    np.testing.assert_allclose(np.asarray(r.X), np.asarray(depleted.X), atol=1e-8)
    a, b = system.slices[0]
    np.testing.assert_allclose(np.asarray(r.x), np.asarray(eq.x[a:b]), atol=1e-8)
    assert abs(float(r.affinity)) < 1e-8
    # the undepleted rock is supersaturated in garnet at the same P-T: its matrix alone is metastable
    assert float(nu(P0, T0, bulk).affinity) < -1.0


def test_behind_garnet_in_no_equilibrium_but_a_nucleus(rock):
    system, _, _, _, depleted, nu = rock
    P = P0 - 0.2e8  # 0.2 kbar back along the path: this bulk makes no garnet
    eq = equilibrate(system, P, T0, depleted.bulk)
    assert int(eq.reason) != 0
    r = nu(P, T0, depleted.bulk)
    assert bool(r.ok) and float(r.affinity) > 0.0
    X = np.asarray(r.X)
    assert abs(X.sum() - 1.0) < 1e-12 and np.all(X > 0)
    # continuous through garnet-in: the equilibrium garnet just ahead, the nucleus just behind
    ahead = equilibrate(system, P0 + 2e5, T0, depleted.bulk)
    assert int(ahead.reason) == 0
    behind = nu(P0 - 2e5, T0, depleted.bulk)
    np.testing.assert_allclose(np.asarray(behind.X), np.asarray(garnet_fractions(system, ahead.x)), atol=1e-3)


def test_implicit_derivative_equals_central_difference(rock):
    _, _, _, _, depleted, nu = rock
    P = P0 - 0.2e8
    d = jax.jacfwd(lambda p: nu(p, T0, depleted.bulk).X)(jnp.asarray(P))
    h = 1e5
    fd = (np.asarray(nu(P + h, T0, depleted.bulk).X) - np.asarray(nu(P - h, T0, depleted.bulk).X)) / (2 * h)
    np.testing.assert_allclose(np.asarray(d), fd, rtol=1e-4, atol=1e-14)

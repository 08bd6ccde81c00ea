"""Fixed-assemblage equilibria (g-bi-mu-pl-q) against BurnMan 2.1 (tests/data/burnman_equilibrium.json,
written by scripts/reference/burnman_reference.py --equilibrate) and against the conditions a
Gibbs minimum must meet: mass balance, every end-member on one chemical-potential plane, implicit
derivatives equal to central finite differences, a shell removed from the bulk by hand
calculation, every failure reported with a reason.

One compiled, vmapped call (``solve_nodes_jacobians``) serves the whole file: the reference nodes,
the finite-difference nodes and the failing nodes are one batch (the compile takes most of the
time on a CPU).
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.errors import InputError
from jaxpetro.thermo.bulk import COMPONENTS, components_from_elements, components_from_wt
from jaxpetro.thermo.endmembers import R_GAS
from jaxpetro.thermo.equilibrium import (
    EquilibriumOptions, assemblage, equilibrate, kkt_matrix, kkt_residual, solve_nodes, solve_nodes_jacobians,
)
from jaxpetro.thermo.growth import garnet_fractions, grow, remove_shell

REF = json.loads((Path(__file__).parent / "data" / "burnman_equilibrium.json").read_text())
NAMES = REF["meta"]["assemblage"]
BULKS = {k: components_from_wt(v) for k, v in REF["bulks"].items()}
FD_NODE = (6.0e8, 873.15)  # the finite-difference point (Pa, K), pelite_a
H_P, H_T, H_B = 1.0e6, 0.05, 1e-5  # Pa, K, mol: central differences, truncation ~h^2


def _batch():
    """(P, T, bulk, labels) of every node in the one compiled call."""
    P, T, B, labels = [], [], [], []
    for name, rows in REF["results"].items():
        for k, r in enumerate(rows):
            P.append(r["P"]); T.append(r["T"]); B.append(BULKS[name]); labels.append(("ref", name, k))
    p0, t0 = FD_NODE
    b0 = BULKS["pelite_a"]
    P += [p0, p0 + H_P, p0 - H_P, p0, p0]; T += [t0, t0, t0, t0 + H_T, t0 - H_T]; B += [b0] * 5
    labels += [("fd", "0", 0), ("fd", "P", 1), ("fd", "P", -1), ("fd", "T", 1), ("fd", "T", -1)]
    for c in range(len(COMPONENTS)):
        for sign in (1, -1):
            P.append(p0); T.append(t0); B.append(b0 + sign * H_B * np.eye(len(COMPONENTS))[c])
            labels.append(("fd", COMPONENTS[c], sign))
    # a silica-poor bulk: quartz would have to be negative (reason 3); a NaN pressure (reason 2)
    poor = components_from_wt({**REF["bulks"]["pelite_a"], "SiO2": 15.0})
    P += [p0, np.nan]; T += [t0, t0]; B += [poor, b0]
    labels += [("bad", "silica-poor", 0), ("bad", "nan", 0)]
    return np.array(P), np.array(T), np.array(B), labels


@pytest.fixture(scope="module")
def solved():
    system = assemblage(NAMES, BULKS["pelite_a"])
    P, T, B, labels = _batch()
    eq, jac = solve_nodes_jacobians(system, P, T, B)
    return system, P, T, B, labels, eq, jac


def _index(labels, *key):
    return labels.index(key)


def test_the_assemblage_has_the_reference_endmembers(solved):
    system = solved[0]
    for phase, ems in REF["meta"]["endmembers"].items():
        assert system.endmembers_of(phase) == tuple(ems)
    assert system.endmembers_of("q") == ("q",)


@pytest.mark.parametrize("bulk", list(REF["results"]))
def test_compositions_and_phase_amounts_match_burnman(solved, bulk):
    system, _, _, _, labels, eq, _ = solved
    for k, r in enumerate(REF["results"][bulk]):
        i = _index(labels, "ref", bulk, k)
        assert int(eq.reason[i]) == 0, (bulk, k, int(eq.reason[i]))
        assert r["success"]
        for phase in ("g", "bi", "mu", "pl"):
            a, b = system.slices[system.phase_of(phase)]
            # the target is |dX| <= 1e-4; both solvers converge far tighter
            np.testing.assert_allclose(np.asarray(eq.x[i, a:b]), r[phase], rtol=0, atol=1e-8)
        np.testing.assert_allclose(np.asarray(eq.amounts[i]), r["phase_moles"], rtol=1e-7, atol=0)
        X = np.asarray(garnet_fractions(system, eq.x[i]))
        g = np.asarray(r["g"])  # py, alm, spss, gr, kho
        expected = np.array([g[1], g[0] + g[4], g[3], g[2]]) / g.sum()
        np.testing.assert_allclose(X, expected, rtol=0, atol=1e-8)
        assert abs(X.sum() - 1.0) < 1e-14


def test_mass_balance_and_one_chemical_potential_plane(solved):
    system, _, T, B, labels, eq, _ = solved
    ok = np.asarray(eq.reason) == 0
    assert ok.sum() == len(labels) - 2  # every node but the two made to fail
    comps = np.asarray(system.components)
    made = np.asarray(eq.n) @ comps.T  # (nodes, C): component moles in the phases
    scale = B.sum(axis=1, keepdims=True)
    assert np.max(np.abs(made - B)[ok] / scale[ok]) < 1e-10
    # at a Gibbs minimum every end-member's mu is the sum of its components' chemical potentials
    plane = np.asarray(eq.component_mu) @ comps  # (nodes, N)
    assert np.max(np.abs(np.asarray(eq.mu) - plane)[ok] / (R_GAS * T[ok, None])) < 1e-8


def test_implicit_derivatives_equal_central_differences(solved):
    system, _, _, _, labels, eq, jac = solved
    i0 = _index(labels, "fd", "0", 0)
    for which, h, exact_x, exact_a in (("P", H_P, jac.x_P[i0], jac.amounts_P[i0]),
                                       ("T", H_T, jac.x_T[i0], jac.amounts_T[i0])):
        up, down = _index(labels, "fd", which, 1), _index(labels, "fd", which, -1)
        fd_x = (np.asarray(eq.x[up]) - np.asarray(eq.x[down])) / (2 * h)
        fd_a = (np.asarray(eq.amounts[up]) - np.asarray(eq.amounts[down])) / (2 * h)
        np.testing.assert_allclose(np.asarray(exact_x), fd_x, rtol=0, atol=1e-5 * np.abs(fd_x).max())
        np.testing.assert_allclose(np.asarray(exact_a), fd_a, rtol=0, atol=1e-5 * np.abs(fd_a).max())
        assert np.abs(fd_x).max() > 0  # the derivative is not trivially zero
    a, b = system.slices[system.phase_of("g")]
    for c, name in enumerate(COMPONENTS):
        up, down = _index(labels, "fd", name, 1), _index(labels, "fd", name, -1)
        fd_x = (np.asarray(eq.x[up]) - np.asarray(eq.x[down])) / (2 * H_B)
        exact = np.asarray(jac.x_bulk[i0][:, c])
        np.testing.assert_allclose(exact, fd_x, rtol=0, atol=1e-5 * max(np.abs(fd_x).max(), 1e-3), err_msg=name)
    # the garnet responds to MnO most strongly per mole (spessartine)
    dg = np.abs(np.asarray(jac.x_bulk[i0][a:b]))
    assert COMPONENTS[int(np.argmax(dg.max(axis=0)))] == "MnO"


@pytest.mark.slow  # a full jacfwd of the KKT residual: the heaviest compile of the suite (it crashed XLA once under memory pressure)
def test_the_block_kkt_matrix_is_the_jacobian_of_the_residual(solved):
    system, P, T, B, labels, eq, _ = solved
    i = _index(labels, "ref", "pelite_b", 7)
    lam = np.linalg.lstsq(np.asarray(system.A).T, np.asarray(eq.mu[i]) / (R_GAS * T[i]), rcond=None)[0]
    z = jnp.concatenate([eq.n[i], jnp.asarray(lam)])
    full = jax.jacfwd(lambda zz: kkt_residual(system, zz, P[i], T[i], jnp.asarray(B[i])))(z)
    np.testing.assert_allclose(np.asarray(kkt_matrix(system, z, P[i], T[i])), np.asarray(full), rtol=1e-12, atol=1e-12)


def test_failing_nodes_are_reported_with_a_reason(solved):
    system, P, T, B, labels, eq, _ = solved
    poor, nan = _index(labels, "bad", "silica-poor", 0), _index(labels, "bad", "nan", 0)
    assert int(eq.reason[poor]) == 3
    assert float(eq.amounts[poor][system.phase_of("q")]) < 0  # quartz negative: not a silent number
    assert int(eq.reason[nan]) == 2 and not bool(eq.status.finite[nan])
    # an unreachable tolerance: every node "did not converge" (the same compiled program: tol is traced)
    eq1, _ = solve_nodes_jacobians(system, P, T, B, options=EquilibriumOptions(tol=-1.0))
    reasons = np.asarray(eq1.reason)
    assert set(reasons[:-1].tolist()) <= {1, 3} and (reasons[:-1] == 1).sum() >= len(labels) - 2
    assert reasons[-1] == 2 and not bool(np.any(eq1.status.converged))


def test_remove_shell_conserves_mass_by_hand_calculation(solved):
    system, _, _, B, labels, eq, _ = solved
    i = _index(labels, "ref", "pelite_a", 4)
    one = jax.tree_util.tree_map(lambda a: a[i], eq)
    d = 0.3 * float(one.amounts[system.phase_of("g")])
    shell = remove_shell(system, one, jnp.asarray(B[i]), d)
    np.testing.assert_allclose(np.asarray(shell.bulk + shell.removed), B[i], rtol=1e-15, atol=1e-17)
    py, alm, spss, gr, kho = (float(v) for v in shell.shell)
    by_hand = {"SiO2": 3.0, "Al2O3": 1.0 - kho, "FeO": 3 * alm + 2 * kho, "MgO": 3 * (py + kho),
               "MnO": 3 * spss, "CaO": 3 * gr, "O": kho}  # Mg3Fe3+2Si3O12 = 3 MgO + 2 FeO + O + 3 SiO2
    expected = np.array([d * by_hand.get(c, 0.0) for c in COMPONENTS])
    np.testing.assert_allclose(np.asarray(shell.removed), expected, rtol=1e-13, atol=1e-17)
    np.testing.assert_array_equal(np.asarray(shell.X), np.asarray(garnet_fractions(system, one.x)))


@pytest.mark.slow
def test_grow_and_solve_nodes_agree_with_the_batch(solved):
    system, P, T, B, labels, eq, _ = solved
    i = _index(labels, "ref", "pelite_b", 2)
    g = jax.jit(lambda b, d: grow(system, P[i], T[i], b, d))(jnp.asarray(B[i]), 0.001)
    np.testing.assert_allclose(np.asarray(g.X), np.asarray(garnet_fractions(system, eq.x[i])), atol=1e-12)
    np.testing.assert_allclose(np.asarray(g.bulk + g.removed), B[i], rtol=1e-15)
    plain = solve_nodes(system, P[:18], T[:18], B[:18])
    np.testing.assert_allclose(np.asarray(plain.x), np.asarray(eq.x[:18]), atol=1e-12)
    one = equilibrate(system, P[i], T[i], B[i])
    np.testing.assert_allclose(np.asarray(one.x), np.asarray(eq.x[i]), atol=1e-12)


def test_bad_bulks_and_assemblages_raise_input_errors_naming_the_key():
    wt = dict(REF["bulks"]["pelite_a"])
    with pytest.raises(InputError, match="MgO"):
        components_from_wt({**wt, "MgO": -1.0})
    with pytest.raises(InputError, match="Fe2O3"):
        components_from_wt({**wt, "Fe2O3": 1.0})
    with pytest.raises(InputError, match="CaO"):
        components_from_wt({**wt, "CaO": "lots"})
    with pytest.raises(InputError, match="Xx"):
        components_from_elements({"Si": 1.0, "Xx": 1.0, "O": 3.0})
    with pytest.raises(InputError, match="bulk.elements_mol.O"):
        components_from_elements({"Si": 1.0, "O": 1.0})
    np.testing.assert_allclose(components_from_elements({"Si": 1.0, "Al": 2.0, "Fe": 1.0, "O": 6.5}),
                               [1.0, 0, 1.0, 1.0, 0, 0, 0, 0, 0, 0, 0.5])
    b = components_from_wt(wt)
    negative = b.copy()
    negative[COMPONENTS.index("Na2O")] = -0.1
    with pytest.raises(InputError, match="Na2O"):
        assemblage(NAMES, negative)
    with pytest.raises(InputError, match="'garnet'"):
        assemblage(["garnet", "bi", "mu", "pl", "q"], b)
    with pytest.raises(InputError, match="K2O"):  # muscovite without potassium
        assemblage(NAMES, components_from_wt({k: v for k, v in wt.items() if k != "K2O"}))
    with pytest.raises(InputError, match="SiO2"):  # quartz without silica
        assemblage(NAMES, components_from_wt({k: v for k, v in wt.items() if k != "SiO2"}))
    with pytest.raises(InputError, match="once"):
        assemblage(["g", "g", "q"], b)
    # MnO left out: spessartine and the Mn biotite drop out of the models
    no_mn = assemblage(NAMES, components_from_wt({k: v for k, v in wt.items() if k != "MnO"}))
    assert "spss" not in no_mn.endmembers_of("g") and "mmbi" not in no_mn.endmembers_of("bi")

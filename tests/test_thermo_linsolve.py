"""The equilibrium's linear solves (jaxpetro.thermo.linsolve) and the XLA CPU hang they avoid.

Ground truth: numpy.linalg.solve (LAPACK) on the same matrices, including ones that need row
pivoting and the KKT matrix of a real g-bi-mu-pl-q equilibrium; derivatives against those of
jnp.linalg.solve. The hang (docs/forward.md, "The XLA CPU hang"): jaxlib's LAPACK kernels
split a batched call over the intra-op thread pool and block a pool thread on it, which
deadlocks when as many batched calls run at once as the pool has threads. The structural
tests lower the thermo programs under vmap and check that no LAPACK custom call in them has a
batch dimension (an unbatched call runs inline and cannot wait on the pool).
"""

import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.thermo.bulk import components_from_wt
from jaxpetro.thermo.endmembers import R_GAS
from jaxpetro.thermo.equilibrium import EquilibriumOptions, assemblage, equilibrate, kkt_matrix, kkt_residual
from jaxpetro.thermo.linsolve import solve

WT = {"SiO2": 59.8, "Al2O3": 16.6, "FeO": 6.9, "MgO": 2.6, "MnO": 0.4, "CaO": 1.1, "Na2O": 1.7, "K2O": 3.8,
      "H2O": 1.6, "O": 0.1}
NAMES = ["g", "bi", "mu", "pl", "q"]


def _batched_lapack_calls(hlo_text: str) -> list[str]:
    """The LAPACK custom calls of a lowered program whose first operand has more than two
    dimensions (a batch of matrices)."""
    out = []
    for m in re.finditer(r'custom_call @(lapack_\w+)\(.*?\)\s*(?:\{.*?\})?\s*:\s*\(tensor<([0-9x]+)x?f', hlo_text):
        dims = [d for d in m.group(2).split("x") if d]
        if len(dims) > 2:
            out.append(f"{m.group(1)} {m.group(2)}")
    return out


def test_solve_equals_lapack_with_pivoting():
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=(n, n)) for n in (1, 2, 7, 31)]
    cases.append(np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [4.0, -3.0, 8.0]]))  # a zero pivot without row swaps
    kkt_like = rng.normal(size=(40, 40))
    kkt_like[30:, 30:] = 0.0  # the [[H, -A^T], [A, 0]] zero block
    cases.append(kkt_like)
    for A in cases:
        b = rng.normal(size=A.shape[0])
        x = np.asarray(solve(jnp.asarray(A), jnp.asarray(b)))
        ref = np.linalg.solve(A, b)
        assert np.max(np.abs(x - ref)) <= 1e-11 * max(1.0, np.max(np.abs(ref))), A.shape
        assert np.max(np.abs(A @ x - b)) <= 1e-11 * np.linalg.norm(A, np.inf) * max(1.0, np.max(np.abs(x)))


@pytest.mark.slow  # one equilibrium compiled: ~20 s on the shared CPU
def test_solve_of_a_real_kkt_matrix_and_its_derivatives():
    bulk = jnp.asarray(components_from_wt(WT))
    system = assemblage(NAMES, np.asarray(bulk))
    P, T = 6.0e8, 873.15

    @jax.jit
    def system_at_solution(bulk):
        eq = equilibrate(system, P, T, bulk, options=EquilibriumOptions())
        lam = jnp.linalg.lstsq(system.A.T, eq.mu / (R_GAS * T))[0]
        z = jnp.concatenate([eq.n, lam])
        return eq.reason, kkt_matrix(system, z, P, T), kkt_residual(system, z + 1e-3, P, T, bulk)

    reason, J, r = system_at_solution(bulk)
    assert int(reason) == 0
    ref = np.linalg.solve(np.asarray(J), np.asarray(r))
    x = np.asarray(solve(J, r))
    assert np.max(np.abs(x - ref)) <= 1e-9 * np.max(np.abs(ref))
    # derivatives w.r.t. the matrix and the right-hand side equal those of LAPACK's solve
    f_ours = lambda A, b: jnp.sum(jnp.sin(solve(A, b)))  # noqa: E731
    f_ref = lambda A, b: jnp.sum(jnp.sin(jnp.linalg.solve(A, b)))  # noqa: E731
    g_ours, g_ref = jax.grad(f_ours, argnums=(0, 1))(J, r), jax.grad(f_ref, argnums=(0, 1))(J, r)
    for a, b in zip(g_ours, g_ref):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-8 * max(1.0, float(jnp.max(jnp.abs(b))))
    t_ours = jax.jvp(lambda b: solve(J, b), (r,), (jnp.ones_like(r),))[1]
    assert np.allclose(np.asarray(t_ours), np.linalg.solve(np.asarray(J), np.ones(r.shape[0])), rtol=1e-9, atol=1e-12)


def test_singular_matrix_gives_non_finite_values():
    x = solve(jnp.zeros((3, 3)), jnp.ones(3))
    assert not np.any(np.isfinite(np.asarray(x)))
    with pytest.raises((ValueError, TypeError)):  # TypeError: the jaxtyping hook of the test run checks first
        solve(jnp.ones((3, 2)), jnp.ones(3))


def test_the_helper_finds_batched_lapack_calls():
    """The structural check itself: it sees jnp.linalg.solve under vmap, not an unbatched one."""
    A = jnp.ones((8, 5, 5)) + jnp.eye(5)[None]
    b = jnp.ones((8, 5))
    batched = jax.jit(jax.vmap(jnp.linalg.solve)).lower(A, b).as_text()
    single = jax.jit(jnp.linalg.solve).lower(A[0], b[0]).as_text()
    ours = jax.jit(jax.vmap(solve)).lower(A, b).as_text()
    assert _batched_lapack_calls(batched), "the check must see the batched getrf"
    assert not _batched_lapack_calls(single)
    assert not _batched_lapack_calls(ours) and "lapack_dgetrf_ffi" in ours  # LAPACK, one matrix per call


def _equilibrium_programs(jacobians: bool) -> list[str]:
    bulk = components_from_wt(WT)
    system = assemblage(NAMES, bulk)
    opts = EquilibriumOptions()
    P = jnp.linspace(5e8, 7e8, 4)
    T = jnp.linspace(820.0, 880.0, 4)
    B = jnp.broadcast_to(jnp.asarray(bulk), (4, bulk.shape[0]))

    def garnet(p, t, b):
        return equilibrate(system, p, t, b, options=opts).x

    fn = jax.vmap(jax.jacfwd(garnet, argnums=(0, 1, 2))) if jacobians else jax.vmap(garnet)
    return jax.jit(fn).lower(P, T, B).as_text()


def test_vmapped_equilibrium_has_no_batched_lapack_call():
    """equilibrate under vmap (one per ensemble member or node): its LAPACK calls are unbatched."""
    text = _equilibrium_programs(False)
    assert "lapack_dgetrf_ffi" in text
    assert _batched_lapack_calls(text) == []


@pytest.mark.slow
def test_vmapped_equilibrium_jacobians_have_no_batched_lapack_call():
    """... and its forward-mode Jacobians (jaxpetro forward --sensitivity, solve_nodes_jacobians)."""
    assert _batched_lapack_calls(_equilibrium_programs(True)) == []


@pytest.mark.slow
def test_two_concurrent_batched_equilibrium_solves_finish(tmp_path):
    """The pattern that hung (two independent batched KKT solves in one program, 128 members,
    run repeatedly) finishes with our solve; run in a child process with a time limit so that a
    regression fails instead of hanging the suite."""
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        from jaxpetro.thermo.linsolve import solve
        A = jax.random.normal(jax.random.key(0), (2, 128, 31, 31)) + 31 * jnp.eye(31)
        b = jnp.ones((128, 31))
        f = jax.jit(lambda A, b: jax.vmap(solve)(A[0], b) + jax.vmap(solve)(A[1], b))
        for _ in range(400):
            f(A, b).block_until_ready()
        print("finished")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "finished" in res.stdout, res.stderr[-2000:]

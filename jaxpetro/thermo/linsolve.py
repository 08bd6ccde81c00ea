"""The equilibrium's dense linear solves, without jaxlib's batched CPU LAPACK call (it can hang).

Why not ``jnp.linalg.solve`` under ``vmap``: on the CPU backend, jaxlib 0.10.2's LAPACK kernels
(``lapack_dgetrf_ffi`` and the others) split a *batched* call (a solve under ``vmap``: one
KKT matrix per ensemble member or P-T node) into chunks on XLA's intra-op thread pool and then
block the pool thread that runs the call until the chunks are done (``jax::ParallelBatchMap``
-> ``absl::BlockingCounter::Wait``). When as many such calls run at the same time as the pool
has threads (XLA's thunk executor runs independent operations concurrently: ptpath's two
equilibria per member, with ``b`` and ``b'``; two grains), every pool thread waits for chunks
that no free thread is left to run. The program never finishes, with every thread idle and the
main thread in ``BlockUntilReady``. On a 2-core machine, two concurrent batched solves of 64 or
more 31 x 31 matrices hang within a few hundred calls (32 never did in 3000); jax/jaxlib 0.6.2
ran the same program 3000 times without a hang. See docs/forward.md ("The XLA CPU hang").

:func:`solve` gives the same numbers as ``jnp.linalg.solve`` (LU with partial pivoting,
LAPACK getrf + getrs), but under ``vmap`` on the CPU it loops over the batch
(``lax.map``), so that every LAPACK call is unbatched and runs inline on its thread, with
nothing to wait for. That costs no more CPU than the batched call (measured: 2.2 vs 3.1 ms
for 128 31 x 31 solves, 10.4 vs 12.6 ms for 512). On other backends (GPU) the batched solve
is kept (``lax.platform_dependent``). It is differentiable in forward and reverse mode
(``lax.custom_linear_solve``: the derivative of x = A^-1 b is another solve with A or A^T).

A kernel-level helper: imports nothing of jaxpetro.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float

__all__ = ["solve"]


@custom_vmap
def _lapack(A, b):
    """jnp.linalg.solve of one system; batched by :func:`_lapack_batched`."""
    return jnp.linalg.solve(A, b)


@_lapack.def_vmap
def _lapack_batched(axis_size, in_batched, A, b):
    a_batched, b_batched = in_batched
    A = A if a_batched else jnp.broadcast_to(A, (axis_size,) + A.shape)
    b = b if b_batched else jnp.broadcast_to(b, (axis_size,) + b.shape)

    def one_at_a_time(A, b):  # an outer vmap batches _lapack again: the same rule, one level up
        return lax.map(lambda ab: _lapack(*ab), (A, b))

    def batched(A, b):
        return jnp.linalg.solve(A, b[..., None])[..., 0]

    return lax.platform_dependent(A, b, cpu=one_at_a_time, default=batched), True


def solve(A: Float[Array, "n n"], b: Float[Array, " n"]) -> Float[Array, " n"]:
    """x with A x = b for one square matrix ``A`` (n, n) and one right-hand side ``b`` (n,); vmap
    it for batches (see the module docstring). A singular ``A`` gives inf/NaN, as
    ``jnp.linalg.solve`` does."""
    A = jnp.asarray(A)
    b = jnp.asarray(b, dtype=A.dtype)
    n = A.shape[-1]
    if A.shape != (n, n) or b.shape != (n,):
        raise ValueError(f"solve: A must be (n, n) and b (n,), got {A.shape} and {b.shape}")
    return lax.custom_linear_solve(lambda x: A @ x, b, solve=lambda _, r: _lapack(A, r),
                                   transpose_solve=lambda _, r: _lapack(A.T, r))

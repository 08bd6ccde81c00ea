"""Test-wide JAX settings: the strictest promotion rules, float64.

Run under jaxtyping's import hook with beartype (``--jaxtyping-packages`` in pyproject's
pytest ``addopts``), so every annotated array shape and dtype in jaxpetro is checked.
jaxpetro itself changes no global JAX setting on import; the CLI and workflows enable
float64 for their own runs, and so do the tests here.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


import gc

import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after every test module.

    A full run compiles several thousand XLA programs; kept all at once they grow the
    process by gigabytes, and one late compile aborted XLA on a 2-core CI machine. Each
    module recompiles what it needs, so this costs little time and bounds the memory.
    """
    yield
    jax.clear_caches()
    gc.collect()

"""Test-wide JAX settings: the strictest promotion rules, float64.

Run under jaxtyping's import hook with beartype (``--jaxtyping-packages`` in pyproject's
pytest ``addopts``), so every annotated array shape and dtype in jaxpetro is checked.
jaxpetro itself changes no global JAX setting on import; the CLI and workflows enable
float64 for their own runs, and so do the tests here.
"""

import os

# The suite is bound by XLA compilation (a few thousand small programs, most run once or twice):
# LLVM's O0 backend compiles them about a third faster (measured on a 2-core AMD EPYC: 54 -> 36 s
# of CPU for three compile-heavy tests; the demo and section tests, which compute, also ran
# faster). XLA's own HLO passes, which decide the numerics, still run; only the machine-code
# optimisation is lowered, for the tests alone (the library and the CLI set nothing).
# JAXPETRO_TEST_XLA_OPT=1 runs the tests with XLA's default backend optimisation instead.
if os.environ.get("JAXPETRO_TEST_XLA_OPT") != "1":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

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

"""The package's shape: stated public API, one-way imports, no global side effects, one status type."""

import ast
import importlib
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import jaxpetro
from jaxpetro.kernels._options import KernelOptions, static
from jaxpetro.kernels._status import Status, StatusCode, error_if, make_status

ROOT = Path(jaxpetro.__file__).parent
SUBPACKAGES = ("kernels", "models", "io", "workflows", "synthetic", "config")


def _imports(path: Path) -> set[str]:
    """Absolute jaxpetro modules a file imports (at any depth of the file)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "jaxpetro" or m.startswith("jaxpetro.")}


def test_importing_jaxpetro_changes_no_global_jax_setting():
    code = textwrap.dedent(
        """
        import jax
        names = ("jax_enable_x64", "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion", "jax_default_matmul_precision")
        before = {k: getattr(jax.config, k) for k in names}
        import jaxpetro, jaxpetro.kernels, jaxpetro.models, jaxpetro.io, jaxpetro.workflows, jaxpetro.cli
        import jaxpetro.workflows.qmap, jaxpetro.workflows.ptpath, jaxpetro.workflows.isocon, jaxpetro.workflows.demo
        after = {k: getattr(jax.config, k) for k in names}
        assert before == after, (before, after)
        import jax.numpy as jnp
        assert jnp.ones(1).dtype == jnp.float32
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("sub", ["kernels"])
def test_kernels_import_only_kernels(sub):
    for path in (ROOT / sub).glob("*.py"):
        bad = {m for m in _imports(path) if not m.startswith("jaxpetro.kernels")}
        assert not bad, f"{path.name} imports {bad}: kernels are pure and import only jaxpetro.kernels"


def test_io_does_not_import_models_or_workflows():
    for path in (ROOT / "io").glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("jaxpetro.models", "jaxpetro.workflows", "jaxpetro.kernels"))}
        assert not bad, f"io/{path.name} imports {bad}: data flow one way (shared tables live in jaxpetro.chemistry)"


def test_models_do_not_import_io_or_workflows():
    for path in (ROOT / "models").glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith(("jaxpetro.io", "jaxpetro.workflows"))}
        assert not bad, f"models/{path.name} imports {bad}"


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_every_public_module_states_its_api(sub):
    package = importlib.import_module(f"jaxpetro.{sub}")
    assert isinstance(getattr(package, "__all__", None), list | tuple), f"jaxpetro.{sub} has no __all__"
    for name in package.__all__:
        assert hasattr(package, name), f"jaxpetro.{sub}.__all__ names {name!r}, which it does not define"
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"jaxpetro.{sub}.{info.name}")
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"jaxpetro.{sub}.{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"jaxpetro.{sub}.{info.name}.__all__ names {name!r}, which it does not define"


def test_no_references_to_files_a_user_does_not_have():
    repo = ROOT.parent
    texts = [*ROOT.rglob("*.py"), *(repo / "docs").glob("*.md"), repo / "README.md", *(repo / "scripts").rglob("*.py")]
    for path in texts:
        text = path.read_text(encoding="utf-8")
        for needle in ("SCIENCE.md", "DESIGN.md", "shared/", "formats/"):
            assert needle not in text, f"{path.relative_to(repo)} refers to {needle}, which users do not have"


def test_license_file_exists():
    assert (ROOT.parent / "LICENSE").read_text().startswith("MIT License")


# ----------------------------------------------------------------------------- the status type


def test_status_codes():
    ok = make_status(True, True, 5)
    assert bool(ok.converged) and int(ok.code) == StatusCode.SUCCESS and int(ok.iterations) == 5
    assert ok.message == "converged"
    stalled = make_status(False, True, 200)
    assert int(stalled.code) == StatusCode.MAX_ITERATIONS and not bool(stalled.converged)
    broken = make_status(True, False, 3)  # a non-finite result is never "converged"
    assert int(broken.code) == StatusCode.NONFINITE and not bool(broken.converged)


def test_status_batches_under_vmap_and_error_if_raises_under_jit():
    batch = jax.vmap(lambda c, f: make_status(c, f, 1))(jnp.array([True, False]), jnp.array([True, True]))
    assert isinstance(batch, Status) and batch.code.tolist() == [0, 1]

    @jax.jit
    def checked(x, converged):
        return error_if(x, make_status(converged, jnp.isfinite(x).all(), 1))

    assert float(checked(jnp.ones(()), True)) == 1.0
    with pytest.raises(Exception, match="did not converge"):
        checked(jnp.ones(()), False).block_until_ready()
    with pytest.raises(Exception, match="non-finite"):
        checked(jnp.array(jnp.nan), True).block_until_ready()


def test_options_static_fields_recompile_float_fields_do_not():
    class Opts(KernelOptions):
        mode: str = static("a")
        tol: float = 1e-6

    traces = []

    @jax.jit
    def f(opts, x):
        traces.append(1)
        return x * opts.tol if opts.mode == "a" else -x

    x = jnp.ones(3)
    f(Opts(), x)
    f(Opts(tol=0.5), x)  # a float option: same program
    assert len(traces) == 1
    f(Opts(mode="b"), x)  # a structural option: a new program
    assert len(traces) == 2
    assert Opts.from_config({"tol": 2.0, "other_key": 1}).tol == 2.0
    assert hash(Opts()) == hash(Opts())

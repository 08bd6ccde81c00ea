"""The jaxpetro command: argument handling, error reporting, exit codes."""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from jaxpetro import __version__, cli
from jaxpetro.config import DemoConfig
from jaxpetro.config.registry import WORKFLOWS
from jaxpetro.errors import ConvergenceError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_demo(monkeypatch):
    """Replace the demo workflow module by a recorder, independent of the real workflow."""
    module = types.ModuleType("fake_demo_workflow")
    module.calls = []
    module.behaviour = None

    def run(config, out_dir, quiet=False):
        module.calls.append((config, out_dir, quiet))
        if module.behaviour is not None:
            raise module.behaviour
        (out_dir / "results.h5").write_text("fake")
        return {"n_phases": 3}

    module.run = run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.WORKFLOWS, "demo", (module.__name__, "jaxpetro.config.demo:DemoConfig"))
    return module


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"jaxpetro {__version__}"


def test_no_workflow_is_usage_error(capsys):
    assert cli.main([]) == 2
    assert "WORKFLOW" in capsys.readouterr().err


def test_demo_runs_with_config_overrides_and_writes_resolved_config(fake_demo, tmp_path, capsys):
    config = tmp_path / "demo.yaml"
    config.write_text("clustering:\n  model: gaussian\n")
    out = tmp_path / "out"
    assert cli.main(["demo", str(config), "--out", str(out), "--set", "seed=4", "--set", "clustering.tol=1e-5"]) == 0
    (cfg, out_dir, quiet), = fake_demo.calls
    assert isinstance(cfg, DemoConfig) and cfg.seed == 4 and cfg.clustering.model == "gaussian"
    assert cfg.clustering.tol == 1e-5 and quiet is False
    assert out_dir.parent == out.parent and out_dir.name.startswith(".out.partial-")  # staged, then swapped in
    assert not out_dir.exists() and (out / "results.h5").exists()
    assert "seed: 4" in (out / "config.resolved.yaml").read_text()
    assert capsys.readouterr().out.strip() == f"results written to {out}"


def test_quiet_and_default_out_dir(fake_demo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--quiet"]) == 0
    (cfg, out_dir, quiet), = fake_demo.calls
    assert cfg == DemoConfig() and out_dir.name.startswith(".demo-out.partial-") and quiet is True
    assert (tmp_path / "demo-out" / "results.h5").exists()
    assert capsys.readouterr() == ("", "")


def test_config_error_exit_2_one_line_no_traceback(fake_demo, tmp_path, capsys):
    code = cli.main(["demo", "--out", str(tmp_path), "--set", "clustering.modle=gaussian"])
    err = capsys.readouterr().err
    assert code == 2 and not fake_demo.calls
    assert err.startswith("jaxpetro: error: ") and "Did you mean 'clustering.model'?" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_set(fake_demo, capsys):
    assert cli.main(["demo", "--set", "seed"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_unwritable_out_is_exit_5(fake_demo, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["demo", "--out", str(blocker / "sub")]) == 5
    assert str(blocker) in capsys.readouterr().err and not fake_demo.calls


def test_workflow_error_uses_its_exit_code(fake_demo, tmp_path, capsys):
    fake_demo.behaviour = ConvergenceError("EM diverged:\nlog-likelihood is NaN.")
    out = tmp_path / "o"
    assert cli.main(["demo", "--out", str(out), "--quiet"]) == 4
    assert capsys.readouterr().err == "jaxpetro: error: EM diverged: log-likelihood is NaN.\n"
    assert not out.exists() and (tmp_path / "o.failed" / "config.resolved.yaml").exists()


def test_interrupt_exits_130(fake_demo, tmp_path, capsys):
    fake_demo.behaviour = KeyboardInterrupt()
    assert cli.main(["demo", "--out", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "jaxpetro: interrupted", f"jaxpetro: '{tmp_path / 'o'}' is unchanged; the incomplete run is in '{tmp_path / 'o'}.failed'"]


def test_bugs_keep_their_traceback(fake_demo, tmp_path):
    fake_demo.behaviour = ZeroDivisionError("a bug")
    with pytest.raises(ZeroDivisionError):
        cli.main(["demo", "--out", str(tmp_path / "o")])
    assert (tmp_path / "o.failed").is_dir()


def test_rerun_is_all_or_nothing(fake_demo, tmp_path):
    """A finished rerun replaces --out whole (the earlier run kept as .previous); an
    interrupted rerun leaves the earlier result exactly as it was, never a mix."""
    out = tmp_path / "o"
    assert cli.main(["demo", "--out", str(out), "--quiet", "--set", "seed=1"]) == 0
    first = (out / "config.resolved.yaml").read_text()
    (out / "extra.txt").write_text("from run 1")
    fake_demo.behaviour = KeyboardInterrupt()
    assert cli.main(["demo", "--out", str(out), "--quiet", "--set", "seed=2"]) == 130
    assert (out / "config.resolved.yaml").read_text() == first and (out / "extra.txt").exists()
    assert "seed: 2" in (tmp_path / "o.failed" / "config.resolved.yaml").read_text()
    fake_demo.behaviour = None
    assert cli.main(["demo", "--out", str(out), "--quiet", "--set", "seed=3"]) == 0
    assert "seed: 3" in (out / "config.resolved.yaml").read_text() and not (out / "extra.txt").exists()
    assert (tmp_path / "o.previous" / "config.resolved.yaml").read_text() == first
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_out_cannot_be_the_working_directory(fake_demo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--out", "."]) == 5
    assert "working directory" in capsys.readouterr().err and not fake_demo.calls


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in WORKFLOWS])
def test_every_help_runs(argv, capsys):
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: jaxpetro")
    if argv == ["--help"]:
        assert "wt% maps" in text  # a literal % in a workflow summary must not break argparse


def test_help_lists_config_keys(capsys):
    assert cli.main(["demo", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "clustering.model = 'poisson'" in help_text and "--set" in help_text


@pytest.mark.parametrize("command", [["-m", "jaxpetro.cli", "demo"], [str(REPO / "scripts" / "demo.py")]])
def test_subprocess_config_error_has_no_traceback(command, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, *command, "--out", str(tmp_path), "--set", "synthetic.rows=4"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert "jaxpetro: error: --set synthetic.rows=4: invalid value 4" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sensitivity_flag_sets_the_config_key(fake_demo, monkeypatch, tmp_path):
    monkeypatch.setitem(cli.WORKFLOWS, "ptpath", (fake_demo.__name__, "jaxpetro.config.ptpath:PtpathConfig"))
    profile = tmp_path / "p.csv"
    profile.write_text("radius_um,X_alm,X_prp,X_grs,X_sps\n0,0.7,0.1,0.1,0.1\n")
    args = ["ptpath", "--out", str(tmp_path / "o"), "--quiet", "--set", f"profile={profile}",
            "--set", "forward.path=table.csv"]
    assert cli.main(args + ["--sensitivity"]) == 0
    assert fake_demo.calls[-1][0].sensitivity is True
    assert cli.main(args) == 0
    assert fake_demo.calls[-1][0].sensitivity is False


def test_error_message_is_not_glued_onto_a_progress_bar(fake_demo, tmp_path, capsys):
    """A workflow that fails with its bar half drawn: the bar is closed (ending its line)
    before the one-line error, so the message starts a line of its own."""
    from jaxpetro.errors import InputError
    from jaxpetro.workflows.stages import Stages

    def run(config, out_dir, quiet=False):
        stages = Stages(4, "demo", quiet)
        stages.start("reading")
        stages.done("reading")  # the bar is drawn at 1/4, no newline yet
        raise InputError("map stack 'x.npz' cannot be read.")

    fake_demo.run = run
    assert cli.main(["demo", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "1/4" in err  # the bar was drawn
    before, sep, after = err.partition("jaxpetro: error: map stack 'x.npz' cannot be read.")
    assert sep and before.endswith("\n") and after.startswith("\n")

"""jaxpetro batch and config sweeps: one all-or-nothing folder per run, resumable, reports,
several processes through jax.distributed (two local processes on 127.0.0.1)."""

import csv
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxpetro import cli
from jaxpetro.config import BatchConfig, load_config, read_sweep
from jaxpetro.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

FAKE_WORKFLOW = '''
"""A stand-in workflow: reads its 'data' file (a number), fails on 'bad', is interrupted on 'stop'."""
from pathlib import Path
from jaxpetro.errors import InputError

calls = []

def run(config, out_dir, quiet=False):
    text = Path(config.data).read_text().strip()
    calls.append(config.data)
    if text == "bad":
        raise InputError(f"{config.data}: not a number")
    if text == "stop":
        raise KeyboardInterrupt
    if text == "bug":
        raise ZeroDivisionError("a bug")
    (Path(out_dir) / "result.txt").write_text(text)
    return {"value": float(text), "nested": {"seed": config.seed}, "list_is_skipped": [1, 2]}
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The isocon command replaced by FAKE_WORKFLOW (its schema kept: 'data' is the input key)."""
    (tmp_path / "fakewf.py").write_text(FAKE_WORKFLOW)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("fakewf")
    module.calls.clear()
    monkeypatch.setitem(cli.WORKFLOWS, "isocon", ("fakewf", "jaxpetro.config.isocon:IsoconConfig"))
    return module


def write_inputs(folder: Path, values: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (folder / f"{name}.csv").write_text(value)


def batch_yaml(folder: Path, extra: str = "") -> Path:
    path = folder / "batch.yaml"
    path.write_text(textwrap.dedent("""\
        workflow: isocon
        inputs: [rocks/*.csv]
        input_key: data
        base:
          reference: R1
          seed: 7
        """) + extra)
    return path


def report(out: Path, name: str = "batch_report.csv") -> dict:
    with open(out / name, newline="") as fh:
        return {Path(r.get("input", r.get("run", ""))).stem: r for r in csv.DictReader(fh)}


def test_batch_runs_each_input_and_records_failures(fake, tmp_path):
    write_inputs(tmp_path / "rocks", {"a": "1.5", "b": "bad", "c": "3"})
    out = tmp_path / "out"
    assert cli.main(["batch", str(batch_yaml(tmp_path)), "--out", str(out), "--quiet"]) == 0
    rows = report(out)
    assert {k: r["status"] for k, r in rows.items()} == {"a": "ok", "b": "failed", "c": "ok"}
    assert "not a number" in rows["b"]["error"] and float(rows["a"]["value"]) == 1.5
    assert rows["a"]["nested.seed"] == "7.0" and "list_is_skipped" not in rows["a"]
    assert (out / "a" / "result.txt").read_text() == "1.5" and (out / "a" / "config.resolved.yaml").exists()
    assert not (out / "b").exists() and (out / "b.failed").is_dir()
    # paths in the batch config resolve from its folder: inputs are absolute in each run's config
    assert str(tmp_path / "rocks" / "a.csv") in (out / "a" / "config.resolved.yaml").read_text()


def test_rerun_skips_finished_and_retries_failed(fake, tmp_path):
    write_inputs(tmp_path / "rocks", {"a": "1", "b": "bad"})
    out, config = tmp_path / "out", batch_yaml(tmp_path)
    assert cli.main(["batch", str(config), "--out", str(out), "--quiet"]) == 0
    (tmp_path / "rocks" / "b.csv").write_text("2")  # the user fixes the bad input
    fake.calls.clear()
    assert cli.main(["batch", str(config), "--out", str(out), "--quiet"]) == 0
    assert fake.calls == [str(tmp_path / "rocks" / "b.csv")]  # only the failed one ran again
    rows = report(out)
    assert rows["a"]["status"] == "skipped" and rows["a"]["value"] == "1.0"  # headline kept from the first run
    assert rows["b"]["status"] == "ok" and (out / "b" / "result.txt").read_text() == "2"


def test_interrupted_batch_loses_nothing_finished(fake, tmp_path):
    write_inputs(tmp_path / "rocks", {"a": "1", "b": "stop", "c": "3"})
    out, config = tmp_path / "out", batch_yaml(tmp_path)
    assert cli.main(["batch", str(config), "--out", str(out), "--quiet"]) == 130
    assert (out / "a" / "result.txt").exists() and not (out / "b").exists() and not (out / "c").exists()
    assert not list(out.glob(".*partial*"))  # no half-written folder
    assert report(out)["a"]["status"] == "ok"
    (tmp_path / "rocks" / "b.csv").write_text("2")
    assert cli.main(["batch", str(config), "--out", str(out), "--quiet"]) == 0
    assert {k: r["status"] for k, r in report(out).items()} == {"a": "skipped", "b": "ok", "c": "ok"}


def test_a_bug_in_one_input_is_recorded_with_its_traceback(fake, tmp_path):
    write_inputs(tmp_path / "rocks", {"a": "bug", "b": "2"})
    out = tmp_path / "out"
    assert cli.main(["batch", str(batch_yaml(tmp_path)), "--out", str(out), "--quiet"]) == 0
    rows = report(out)
    assert rows["a"]["status"] == "failed" and "ZeroDivisionError" in rows["a"]["error"]
    assert "a bug" in (out / "a.failed" / "traceback.txt").read_text() and rows["b"]["status"] == "ok"


def test_batch_config_errors_name_the_key(tmp_path):
    write_inputs(tmp_path / "rocks", {"a": "1"})
    with pytest.raises(ConfigError, match="matches no file"):
        load_config({"workflow": "isocon", "inputs": "nothing/*.csv", "input_key": "data"}, BatchConfig,
                    base_dir=tmp_path)
    write_inputs(tmp_path / "other", {"a": "2"})
    with pytest.raises(ConfigError, match="both write to the output folder 'a/'"):
        load_config({"workflow": "isocon", "inputs": ["rocks/a.csv", "other/a.csv"], "input_key": "data"},
                    BatchConfig, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="go together"):
        load_config({"workflow": "isocon", "inputs": "rocks/a.csv", "input_key": "data",
                     "distributed": {"coordinator": "127.0.0.1:1234"}}, BatchConfig, base_dir=tmp_path)
    code = cli.main(["batch", str(batch_yaml(tmp_path, "  sparse: {q: 7}\n")), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2  # the base config is validated against the workflow's schema before anything runs


def test_sweep_block_expands_grid_and_list():
    sweep = read_sweep({"sweep": {"grid": {"seed": [0, 1], "ensemble.size": 64}, "list": [{"seed": 9}]}})
    assert sweep.runs == [{"seed": 0, "ensemble.size": 64}, {"seed": 1, "ensemble.size": 64}, {"seed": 9}]
    assert sweep.plot is None and read_sweep({"seed": 1}).runs == []
    plot = read_sweep({"sweep": {"grid": {"seed": [0, 1]}, "plot": {"x": "seed", "y": "rmse"}}}).plot
    assert plot == {"x": "seed", "y": ["rmse"], "group": None}
    with pytest.raises(ConfigError, match="not a swept key"):
        read_sweep({"sweep": {"grid": {"seed": [0, 1]}, "plot": {"x": "size", "y": "rmse"}}})
    with pytest.raises(ConfigError, match="sweep"):
        read_sweep({"sweep": {"grid": {"seed": []}}})
    with pytest.raises(ConfigError, match="sweep"):
        read_sweep({"sweep": {"points": 3}})


def test_sweep_runs_every_point_into_its_folder_and_gathers_a_table(fake, tmp_path):
    write_inputs(tmp_path, {"rock": "4"})
    config = tmp_path / "iso.yaml"
    config.write_text("data: rock.csv\nreference: R1\nsweep:\n  grid:\n    seed: [1, 2]\n    sparse.q: [0.5, 1.0]\n"
                      "  plot: {x: sparse.q, y: [value, nested.seed], group: seed}\n")
    out = tmp_path / "sw"
    assert cli.main(["isocon", str(config), "--out", str(out), "--quiet"]) == 0
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["seed"], r["sparse.q"], r["status"]) for r in rows] == [
        ("1", "0.5", "ok"), ("1", "1.0", "ok"), ("2", "0.5", "ok"), ("2", "1.0", "ok")]
    assert [r["nested.seed"] for r in rows] == ["1.0", "1.0", "2.0", "2.0"]
    assert "q: 1.0" in (out / "run_001" / "config.resolved.yaml").read_text()
    assert (out / "sweep.png").stat().st_size > 10_000
    fake.calls.clear()
    assert cli.main(["isocon", str(config), "--out", str(out), "--quiet"]) == 0
    assert fake.calls == []  # resumable: every point had finished


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_split_the_inputs_through_jax_distributed(tmp_path):
    """Two local processes joined by jax.distributed: each input written exactly once, one report."""
    (tmp_path / "fakewf.py").write_text(FAKE_WORKFLOW)
    write_inputs(tmp_path / "rocks", {name: str(i) for i, name in enumerate("abcde")})
    config = batch_yaml(tmp_path, f"distributed:\n  coordinator: 127.0.0.1:{_free_port()}\n  num_processes: 2\n"
                                  "  timeout_s: 60\n")
    out = tmp_path / "out"
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from jaxpetro import cli; "
              "cli.WORKFLOWS['isocon'] = ('fakewf', 'jaxpetro.config.isocon:IsoconConfig'); "
              "sys.exit(cli.main(['batch', sys.argv[2], '--out', sys.argv[3], '--quiet', "
              "'--set', 'distributed.process_id=' + sys.argv[4]]))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(config), str(out), str(k)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (0, 1)]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    rows = report(out)
    assert sorted(rows) == list("abcde") and {r["status"] for r in rows.values()} == {"ok"}
    mine = {k: report(out, f"batch_report.p{k}.csv") for k in (0, 1)}
    assert sorted(mine[0]) == ["a", "c", "e"] and sorted(mine[1]) == ["b", "d"]  # round robin, no overlap
    assert all((out / name / "result.txt").read_text() == str(i) for i, name in enumerate("abcde"))


@pytest.mark.slow
def test_experiment_script_sweeps_qmap_dwell(tmp_path):
    """scripts/experiments/run_experiment.py: a sweep block over dwell times, one qmap run per point
    on the synthetic section, errors against the truth in sweep.csv and sweep.png; 10x the dwell
    cuts the wt% RMSE by ~sqrt(10) where counting noise dominates (at least 2x here)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "experiments" / "run_experiment.py"
    spec = importlib.util.spec_from_file_location("run_experiment", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = tmp_path / "exp.yaml"
    config.write_text("experiment: qmap_dwell\nfixed: {rows: 64, cols: 64, n_spots: 24}\n"
                      "sweep:\n  grid: {dwell_ms: [2, 20], seed: [0]}\n  plot: {x: dwell_ms, y: [rmse_wt_FeO]}\n")
    assert module.main([str(config), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "sweep.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    short, long = (float(r["rmse_wt_FeO"]) for r in rows)
    assert short > 2 * long > 0
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 0

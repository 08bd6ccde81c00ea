"""``jaxpetro batch``: many inputs through one workflow, resumable, across processes and hosts.

Each input runs the workflow named by ``workflow`` with the config ``base`` whose key
``input_key`` is set to that input, into its own folder ``<out>/<input stem>/``. A folder is
written all-or-nothing (:func:`jaxpetro.io.results.staged_out_dir`): a finished input is a
complete folder, which a rerun skips; an input that fails is recorded in the report (its
incomplete output kept as ``<stem>.failed/``) and the batch goes on; a batch killed at any
moment loses nothing that had finished.

With ``distributed`` set, ``jax.distributed.initialize`` joins the processes of one job (JAX's
own runtime: coordinator address, process count and index given, or read from SLURM / Open MPI
with ``auto``); process *k* of *n* takes the inputs ``k, k + n, k + 2n, ...`` of the sorted
list, so every input is written exactly once. Each process writes
``batch_report.p<k>.csv``; after a barrier process 0 merges them into ``batch_report.csv``.

The same runner (:func:`run_jobs`) serves a config's ``sweep:`` block (``sweep.csv``).
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import shutil
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from jaxpetro._precision import float64
from jaxpetro.config import config_to_yaml, load_config
from jaxpetro.config.batch import BatchConfig, DistributedConfig, expand_inputs, input_name
from jaxpetro.config.registry import WORKFLOWS, schema_of
from jaxpetro.errors import ConfigError, JaxpetroError
from jaxpetro.io.results import (
    prepare_out_dir,
    staged_out_dir,
    write_csv,
    write_resolved_config,
    write_text,
)
from jaxpetro.workflows.stages import Stages

__all__ = ["HEADLINE_NAME", "Job", "REPORT_COLUMNS", "headline", "plot_sweep", "run", "run_jobs"]

#: file in each finished run folder with the run's headline figures (read back by reruns)
HEADLINE_NAME = "headline.json"
REPORT_COLUMNS = ("input", "status", "seconds", "error")


class Job(NamedTuple):
    """One run: its folder name under the batch output, its validated config, the values that
    distinguish it (the input path, or the swept keys) for the report."""

    name: str
    config: Any
    params: Mapping[str, Any]


@float64
def run(config: BatchConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run every input of the batch config; returns {"ok": n, "failed": n, "skipped": n, "report": path}."""
    out = prepare_out_dir(out_dir)
    module_name, schema_path = WORKFLOWS[config.workflow]
    jobs = _jobs(config, schema_of(schema_path))
    index, count = _join(config.distributed)
    mine = jobs[index::count]
    report = "batch_report.csv" if count == 1 else f"batch_report.p{index}.csv"
    rows = run_jobs(mine, importlib.import_module(module_name), out, report=report, quiet=quiet,
                    desc=f"batch {config.workflow}" + (f" [{index + 1}/{count}]" if count > 1 else ""))
    if count > 1:
        rows = _gather_reports(out, index, count)
    tally = {status: sum(row["status"] == status for row in rows) for status in ("ok", "failed", "skipped")}
    if not quiet and index == 0:
        print(f"batch {config.workflow}: {tally['ok']} ok, {tally['skipped']} skipped (finished earlier), "
              f"{tally['failed']} failed of {len(rows)} inputs; report in {out / 'batch_report.csv'}")
        for row in rows:
            if row["status"] == "failed":
                print(f"  failed: {row['input']}: {row['error']}")
    return {**tally, "report": str(out / "batch_report.csv")}


def run_jobs(jobs: Sequence[Job], module: ModuleType, out: Path, *, report: str, quiet: bool = False,
             desc: str = "runs") -> list[dict[str, Any]]:
    """Run ``module.run`` for each job into ``out/<job.name>/``, skipping finished ones.

    After every job the report ``out/<report>`` is rewritten (atomically) with one row per job
    so far: the job's params, ``status`` (ok / failed / skipped), ``seconds``, ``error`` and the
    run's headline figures (:func:`headline`). A :class:`~jaxpetro.errors.JaxpetroError` or any
    other exception of one job is recorded and the next job runs; Ctrl-C stops after writing
    the report (the interrupted job leaves no folder but ``<name>.failed``).

    Returns:
        The report rows.
    """
    rows: list[dict[str, Any]] = []
    stages = Stages(len(jobs), desc, quiet)
    try:
        for job in jobs:
            with stages.stage(job.name):
                rows.append(_run_one(job, module, out))
                _write_report(out / report, rows)
    finally:
        _write_report(out / report, rows)
        stages.close()
    return rows


def headline(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar figures of a workflow summary, flattened to ``a.b`` keys (numbers, bools, text)."""
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(headline(value, f"{name}."))
        elif isinstance(value, bool) or isinstance(value, str):
            flat[name] = value
        elif isinstance(value, (int, float)) or _is_numpy_scalar(value):
            number = float(value)
            flat[name] = number if math.isfinite(number) else str(number)
    return flat


def plot_sweep(rows: Sequence[Mapping[str, Any]], path: Path, *, x: str, y: Sequence[str],
               group: str | None = None) -> Path | None:
    """``sweep.png``: each headline figure of ``y`` against the swept key ``x``, one line per value
    of ``group``; runs that share (x, group) — other swept keys such as seeds — are averaged,
    their min-max range shaded. Returns None (and draws nothing) when no run has the figures."""
    import numpy as np

    from jaxpetro.io.plots import save_figure, subplots

    ok = [r for r in rows if r.get("status") in ("ok", "skipped")]
    ys = [name for name in y if any(_number(r.get(name)) is not None for r in ok)]
    if not ok or not ys:
        return None
    groups = sorted({r.get(group) for r in ok}, key=_sort_key) if group else [None]
    fig, axes = subplots(1, len(ys), figsize=(4.2 * len(ys), 3.4), layout="constrained", squeeze=False)
    for ax, name in zip(axes[0], ys):
        for g in groups:
            points: dict[float, list[float]] = {}
            for r in ok:
                xv, yv = _number(r.get(x)), _number(r.get(name))
                if xv is not None and yv is not None and (group is None or r.get(group) == g):
                    points.setdefault(xv, []).append(yv)
            if not points:
                continue
            xs = np.array(sorted(points))
            values = [np.asarray(points[v]) for v in xs]
            mean = np.array([v.mean() for v in values])
            line, = ax.plot(xs, mean, marker="o", label=None if group is None else f"{group} = {g}")
            if any(v.size > 1 for v in values):
                ax.fill_between(xs, [v.min() for v in values], [v.max() for v in values], color=line.get_color(),
                                alpha=0.2, linewidth=0)
        values_x = [_number(r.get(x)) for r in ok if _number(r.get(x)) is not None]
        if values_x and min(values_x) > 0 and max(values_x) / min(values_x) >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if group is not None:
            ax.legend(fontsize=8)
    return save_figure(fig, path)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _sort_key(value: Any) -> tuple:
    number = _number(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


# ----------------------------------------------------------------------------- internals


def _jobs(config: BatchConfig, schema: type) -> list[Job]:
    jobs = []
    for path in expand_inputs(config.inputs):
        raw = _with_key(config.base, config.input_key, path)
        try:
            cfg = load_config(raw, schema, base_dir=config.base.base_dir)
        except ConfigError as err:
            raise ConfigError(f"batch base config with {config.input_key}={path}: {err}") from None
        jobs.append(Job(input_name(path), cfg, {"input": path}))
    return jobs


def _with_key(base: Mapping, dotted: str, value: str) -> dict:
    raw = json.loads(json.dumps(base))  # a plain, deep copy (tuples become lists)
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"input_key '{dotted}': base.{part} is a value, not a section.")
        node = child
    node[leaf] = value
    return raw


def _run_one(job: Job, module: ModuleType, out: Path) -> dict[str, Any]:
    folder = out / job.name
    row: dict[str, Any] = {**job.params, "status": "ok", "seconds": 0.0, "error": ""}
    if folder.is_dir():  # complete by construction: folders only appear by the final rename
        row["status"] = "skipped"
        row.update(_read_headline(folder))
        return row
    for stale in out.glob(f".{job.name}.partial-*"):  # left by a killed earlier run of this job
        shutil.rmtree(stale, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        with staged_out_dir(folder) as staging:
            write_resolved_config(staging, config_to_yaml(job.config))
            summary = module.run(job.config, staging, quiet=True)
            figures = headline(summary or {})
            write_text(staging / HEADLINE_NAME, json.dumps(figures, indent=1, sort_keys=True))
        row.update(figures)
    except JaxpetroError as err:
        row.update(status="failed", error=" ".join(str(err).split()))
    except Exception as err:  # a bug in one run must not stop the others; its traceback is kept
        row.update(status="failed", error=f"internal error {type(err).__name__}: {err} (traceback in "
                                          f"{job.name}.failed/traceback.txt)")
        failed = out / f"{job.name}.failed"
        if failed.is_dir():
            write_text(failed / "traceback.txt", traceback.format_exc())
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _read_headline(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / HEADLINE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_report(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = [k for k in rows[0] if k not in REPORT_COLUMNS[1:]] if rows else ["input"]
    extra = sorted({k for row in rows for k in row} - set(keys) - set(REPORT_COLUMNS))
    header = keys + list(REPORT_COLUMNS[1:]) + extra
    write_csv(path, header, [[row.get(k, "") for k in header] for row in rows])


def _join(dist: DistributedConfig) -> tuple[int, int]:
    """(process index, process count), joining the distributed job when one is configured."""
    if not dist.enabled:
        return 0, 1
    import jax

    if jax.distributed.is_initialized():  # already joined (e.g. by a calling script)
        return jax.process_index(), jax.process_count()
    # CPU processes need a collectives backend for the final barrier; GPUs and TPUs have their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if dist.auto:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator_address=dist.coordinator, num_processes=dist.num_processes,
                                       process_id=dist.process_id, initialization_timeout=dist.timeout_s)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot join the distributed job (distributed.coordinator={dist.coordinator!r}, "
                          f"process {dist.process_id} of {dist.num_processes}): {' '.join(str(err).split())[:300]}. "
                          "Start every process with the same coordinator and count, process 0 first reachable "
                          "at that address.") from None
    return jax.process_index(), jax.process_count()


def _gather_reports(out: Path, index: int, count: int) -> list[dict[str, Any]]:
    """Barrier, then process 0 merges the per-process reports into batch_report.csv."""
    import jax
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("jaxpetro-batch-finished")
    rows: list[dict[str, Any]] = []
    for k in range(count):
        with open(out / f"batch_report.p{k}.csv", newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    rows.sort(key=lambda row: row["input"])
    if index == 0:
        _write_report(out / "batch_report.csv", rows)
    multihost_utils.sync_global_devices("jaxpetro-batch-reported")
    jax.distributed.shutdown()
    return rows


def _is_numpy_scalar(value: Any) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0

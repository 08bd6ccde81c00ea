"""The ``jaxpetro`` command: ``jaxpetro WORKFLOW [CONFIG.yaml] [--out DIR] [--set KEY=VALUE ...] [--quiet]``.

Each workflow is a module with ``run(config, out_dir: Path, quiet: bool = False) -> dict``
whose config schema is a class in a light module of :mod:`jaxpetro.config` (so a config is
validated, and its errors reported, before the heavier workflow module is imported).
Registering a workflow is one line in :data:`jaxpetro.config.registry.WORKFLOWS`.

The CLI validates the config (relative paths in it are resolved from the config file's
folder), then runs the workflow into a hidden staging folder next to ``--out`` (with
``config.resolved.yaml`` written first) and swaps it in only when the run has finished: a
rerun keeps the earlier result as ``<out>.previous``, and a failed or interrupted one leaves
``--out`` untouched and its incomplete folder as ``<out>.failed``. A config with a ``sweep:``
block runs once per point of the sweep into ``<out>/run_NNN/`` and gathers ``<out>/sweep.csv``
(see :func:`jaxpetro.workflows.batch.run_jobs`); ``batch`` manages its folders itself. A :class:`~jaxpetro.errors.JaxpetroError`
is printed as one line ``jaxpetro: error: ...`` on stderr and the exit status is its
``exit_code`` (2 config, 3 input, 4 convergence, 5 output); Ctrl-C exits with 130; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Sequence

from jaxpetro import __version__
from jaxpetro.config import config_to_yaml, describe_config, load_config, read_sweep
from jaxpetro.config.registry import UNSTAGED, WORKFLOWS, schema_of
from jaxpetro.errors import JaxpetroError
from jaxpetro.io.results import prepare_out_dir, staged_out_dir, write_resolved_config

_PATHS = (
    "Relative paths in CONFIG.yaml are resolved from the config file's folder; paths given with\n"
    "--set from the working directory. A key expecting a list also takes a single value.\n"
)
_STAGED = (
    "The run is written to a hidden folder next to --out and moved there when it has finished:\n"
    "an earlier result in --out is kept as <out>.previous; a failed or interrupted run leaves\n"
    "--out as it was and its incomplete output in <out>.failed.\n"
    "A 'sweep:' block in CONFIG.yaml (grid: {KEY: [values]} and/or list: [{KEY: value}]) runs once\n"
    "per point into <out>/run_NNN/ and writes <out>/sweep.csv; a rerun skips finished points."
)
_PER_INPUT = (
    "Each input is written all-or-nothing to <out>/<input stem>/; a rerun skips finished inputs\n"
    "and retries failed ones; <out>/batch_report.csv lists input, status, seconds, error."
)

EXIT_INTERRUPTED = 130  # the shell convention for SIGINT (128 + 2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors: keep argparse's status
        return int(exit_.code or 0)
    try:
        return _run(args)
    except JaxpetroError as err:
        _close_progress_bars()
        print(f"jaxpetro: error: {_one_paragraph(str(err))}", file=sys.stderr)
        _say_out_unchanged(args)
        return err.exit_code
    except KeyboardInterrupt:
        _close_progress_bars()
        print("jaxpetro: interrupted", file=sys.stderr)
        _say_out_unchanged(args)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxpetro", description="Differentiable inversion engine for petrology (JAX)."
    )
    parser.add_argument("--version", action="version", version=f"jaxpetro {__version__}")
    commands = parser.add_subparsers(dest="workflow", required=True, metavar="WORKFLOW")
    for name, (_, schema_path) in WORKFLOWS.items():
        schema = schema_of(schema_path)
        summary = (schema.__doc__ or "").strip().splitlines()[0]
        sub = commands.add_parser(
            # argparse %-formats help strings (not descriptions): a literal % ("wt% maps") is escaped
            name, help=summary.replace("%", "%%"), description=summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=(f"{_PATHS}{_PER_INPUT if name in UNSTAGED else _STAGED}\n\nconfig keys (set in CONFIG.yaml or with --set KEY=VALUE):\n"
                    f"{describe_config(schema)}"),
        )
        sub.add_argument("config", nargs="?", metavar="CONFIG.yaml",
                         help="YAML config file; defaults are used for keys it leaves out")
        sub.add_argument("-o", "--out", default=f"{name}-out", metavar="DIR",
                         help="output directory, created if needed (default: %(default)s)")
        sub.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                         help="override a config key, e.g. --set clustering.tol=1e-6 (repeatable)")
        sub.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
        if "sensitivity" in {f.name for f in dataclasses.fields(schema)}:
            sub.add_argument("--sensitivity", action="store_true",
                             help="also write the Jacobian of the result w.r.t. the inputs (same as --set sensitivity=true)")
    return parser


def _run(args: argparse.Namespace) -> int:
    module_name, schema_path = WORKFLOWS[args.workflow]
    overrides = list(args.overrides) + (["sensitivity=true"] if getattr(args, "sensitivity", False) else [])
    schema = schema_of(schema_path)
    sweep = read_sweep(args.config) if args.workflow not in UNSTAGED else None
    if sweep is not None and sweep.runs:
        return _run_sweep(args, schema, overrides, sweep)
    cfg = load_config(args.config, schema, overrides)
    if args.workflow in UNSTAGED:  # one all-or-nothing folder per input inside --out, resumable
        out_dir = prepare_out_dir(args.out)
        write_resolved_config(out_dir, config_to_yaml(cfg))
        with _float64():
            importlib.import_module(module_name).run(cfg, out_dir, quiet=args.quiet)
        if not args.quiet:
            print(f"results written to {args.out}")
        return 0
    try:
        with staged_out_dir(args.out) as staging:
            # Written before the run so that a failed run still documents what was asked for.
            write_resolved_config(staging, config_to_yaml(cfg))
            # The workflows decorate `run` with jaxpetro._precision.float64 as well; the CLI's own
            # scope covers everything it imports and runs, without a global switch.
            with _float64():
                importlib.import_module(module_name).run(cfg, staging, quiet=args.quiet)
    except BaseException:
        args.run_failed = True
        raise
    if not args.quiet:
        print(f"results written to {args.out}")
    return 0


def _run_sweep(args: argparse.Namespace, schema: type, overrides: list[str], sweep) -> int:
    """One run per point of the config's sweep block (each overriding its keys), resumable."""
    from jaxpetro.workflows.batch import Job, plot_sweep, run_jobs

    jobs = []
    for i, point in enumerate(sweep.runs):
        sets = [f"{key}={_yaml_value(value)}" for key, value in point.items()]
        try:
            cfg = load_config(args.config, schema, overrides + sets)
        except JaxpetroError as err:
            raise type(err)(f"sweep run {i} ({', '.join(sets)}): {err}") from None
        jobs.append(Job(f"run_{i:03d}", cfg, dict(point)))
    out_dir = prepare_out_dir(args.out)
    module = importlib.import_module(WORKFLOWS[args.workflow][0])
    with _float64():
        rows = run_jobs(jobs, module, out_dir, report="sweep.csv", quiet=args.quiet)
    if sweep.plot is not None:
        plot_sweep(rows, out_dir / "sweep.png", **sweep.plot)
    failed = [row for row in rows if row["status"] == "failed"]
    if not args.quiet:
        print(f"{len(rows) - len(failed)} of {len(rows)} sweep runs finished; table in {out_dir / 'sweep.csv'}")
    return 3 if failed else 0


def _yaml_value(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _say_out_unchanged(args: argparse.Namespace) -> None:
    if getattr(args, "run_failed", False) and not args.quiet:
        print(f"jaxpetro: '{args.out}' is unchanged; the incomplete run is in '{args.out}.failed'", file=sys.stderr)


def _close_progress_bars() -> None:
    # An error message must start on its own line, not glued to a half-drawn bar.
    from jaxpetro.workflows.stages import close_open_bars

    close_open_bars()


def _float64():
    import jax  # late: --help and config errors need no JAX

    return jax.enable_x64(True)


def _one_paragraph(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())

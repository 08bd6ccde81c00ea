"""``jaxpetro demo``: the embedded synthetic thin section, end to end.

Simulates an EPMA dataset of a garnet-mica schist with known truth
(:mod:`jaxpetro.synthetic`), soft-clusters its X-ray maps into phases anchored on the
spot analyses (:mod:`jaxpetro.models.clustering`), and writes to the output directory:

* ``demo.h5``      -- maps, memberships, fitted mixture, truth, summary (+ run attributes);
* ``summary.csv``  -- per phase: modal fraction found vs true, spots;
* ``phases.png``   -- most likely phase per pixel with a legend, beside the true map;
* ``section/``     -- the section's maps and spots in the generic input format
  (``maps.npz``, ``spots.csv``), the input of ``jaxpetro qmap configs/qmap.yaml``.

``config.resolved.yaml`` is written by the CLI before the run starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxpetro.config import DemoConfig, config_to_yaml
from jaxpetro.io.generic import MapStack, write_map_stack, write_spots
from jaxpetro.io.plots import phase_map_figure
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.models.clustering import adjusted_rand_index, cluster_map
from jaxpetro.synthetic import make_thin_section

CONFIG = DemoConfig


def run(config: DemoConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the demo; returns a summary dict (accuracy, ARI, modal proportions, timings)."""
    out = prepare_out_dir(out_dir)
    stages = tqdm(total=3, desc="demo", disable=quiet, unit="stage")
    timings = {}

    t0 = time.perf_counter()
    stages.set_postfix_str("simulating thin section")
    syn = config.synthetic
    sec = make_thin_section(
        rows=syn.rows, cols=syn.cols, n_spots=syn.n_spots, seed=config.seed,
        dwell_ms=syn.dwell_ms, current_nA=syn.current_nA, step_um=syn.step_um,
    )
    timings["simulate_s"] = time.perf_counter() - t0
    stages.update()

    t0 = time.perf_counter()
    stages.set_postfix_str("clustering")
    cl = config.clustering
    result = cluster_map(
        sec.counts, sec.exposure,
        phases=sec.phases, anchors=sec.anchor_labels(),
        model=cl.model, covariance=cl.covariance, transform=cl.transform, init=cl.init,
        extra_components=cl.extra_components,
        electron_channels=[i for i, c in enumerate(sec.channels) if c not in sec.elements],
        use_electron=cl.use_bse, seed=config.seed,
        max_iter=cl.max_iter, tol=cl.tol, reg_covar=cl.reg_covar, chunk_size=cl.chunk_size,
    )
    timings["cluster_s"] = time.perf_counter() - t0
    stages.update()

    t0 = time.perf_counter()
    stages.set_postfix_str("writing results")
    found = result.phase_map
    n_named = len(sec.phases)
    # Extra (unlabelled) components have no true counterpart: count them as misses.
    accuracy = float(np.mean(found == sec.phase_map))
    pure = sec.fractions.max(axis=-1) > 0.99
    accuracy_pure = float(np.mean(found[pure] == sec.phase_map[pure]))
    ari = adjusted_rand_index(found, sec.phase_map)
    modal = result.modal()
    modal_truth = sec.modal_truth()
    spot_counts = {p: int(np.sum(np.asarray(sec.spots.phase) == p)) for p in sec.phases}

    rows = [
        [name, modal[name], modal_truth.get(name, float("nan")), spot_counts.get(name, 0)]
        for name in result.names
    ]
    write_csv(out / "summary.csv", ["phase", "modal_fraction", "modal_fraction_true", "n_spots"], rows)
    write_hdf5(
        out / "demo.h5",
        {
            "phases": list(result.names),
            "channels": list(sec.channels),
            "membership": result.memberships,
            "phase_map": found,
            "maps": {"counts": sec.counts, "exposure": sec.exposure},
            "spots": {
                "id": sec.spots.id, "row": sec.spots.row, "col": sec.spots.col,
                "phase": list(sec.spots.phase), "wt": sec.spots.wt,
            },
            "clustering": result.datasets(),
            "summary": {
                "modal": np.array([modal[n] for n in result.names]),
                "accuracy": accuracy,
                "accuracy_pure": accuracy_pure,
                "adjusted_rand_index": ari,
            },
            "truth": {
                "phases": list(sec.phases),
                "phase_map": sec.phase_map,
                "fractions": sec.fractions,
                "wt": sec.wt,
                "oxides": list(sec.oxides),
                "modal": np.array([modal_truth[p] for p in sec.phases]),
            },
        },
        run_attrs(config_to_yaml(config), config.seed),
    )
    if config.output.plots:
        phase_map_figure(
            out / "phases.png", found, result.names,
            truth=sec.phase_map if n_named == len(result.names) else None,
            modal=[modal[n] for n in result.names], step_um=sec.step_um,
            title=f"most likely phase ({result.family} EM)", dpi=config.output.dpi,
        )
    export_section(sec, out / "section")
    timings["write_s"] = time.perf_counter() - t0
    stages.update()
    stages.close()

    summary = {
        "accuracy": accuracy,
        "accuracy_pure": accuracy_pure,
        "adjusted_rand_index": ari,
        "n_iter": result.n_iter,
        "converged": result.converged,
        "modal": modal,
        "modal_truth": modal_truth,
        **timings,
    }
    if not quiet:
        _print_table(summary, result.names)
    return summary


def export_section(sec, folder: Path) -> None:
    """Write a synthetic section as generic input: ``maps.npz`` + ``spots.csv``.

    Exposure drift along the map is not part of the generic format, so the export
    states the nominal dwell time and current of every channel.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = len(sec.channels)
    stack = MapStack(sec.counts, sec.channels, np.full(n, sec.dwell_ms), np.full(n, sec.current_A), sec.step_um)
    write_map_stack(folder / "maps.npz", stack)
    sp = sec.spots
    columns = {"id": sp.id}
    columns.update({f"{ox}_wt": sp.wt[:, j] for j, ox in enumerate(sec.oxides)})
    columns.update({f"{el}_peak": sp.peak[:, j] for j, el in enumerate(sec.elements)})
    columns.update({f"{el}_bg": sp.background[:, j] for j, el in enumerate(sec.elements)})
    columns["current_A"] = sp.current_A
    write_spots(folder / "spots.csv", sp.row, sp.col, sp.phase, columns)


def _print_table(summary: dict, names) -> None:
    """A short modal-proportion table on stderr (stdout stays clean for pipes)."""
    lines = [f"{'phase':<8}{'found %':>9}{'true %':>9}"]
    for n in names:
        true = summary["modal_truth"].get(n, float("nan"))
        lines.append(f"{n:<8}{100 * summary['modal'][n]:9.2f}{100 * true:9.2f}")
    lines.append(
        f"pixel accuracy {100 * summary['accuracy']:.2f} % (pure pixels {100 * summary['accuracy_pure']:.2f} %), "
        f"ARI {summary['adjusted_rand_index']:.3f}, EM {summary['n_iter']} iterations"
        + ("" if summary["converged"] else " (NOT converged: raise clustering.max_iter)")
    )
    print("\n".join(lines), file=sys.stderr)

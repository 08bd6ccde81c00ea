"""``jaxpetro demo``: the embedded synthetic thin section, end to end, against its truth.

1. simulates an EPMA dataset of a garnet-mica schist with known truth (:mod:`jaxpetro.synthetic`);
2. exports it as a JEOL project (``section/jeol``) and as generic input (``section/``);
3. runs ``jaxpetro qmap`` on the JEOL export into ``qmap/`` (phases, wt% maps, ...);
4. scores the result against the truth: ``demo.h5``, ``summary.csv`` (modal proportions),
   ``accuracy.csv`` (per-oxide RMSE of wt% over all, pure and mixed pixels, with
   memberships and with mixing fractions as phase weights), ``phases.png`` beside the truth;
5. inverts a synthetic garnet profile (``ptpath/``) and a synthetic whole-rock set
   (``isocon/``) with their workflows' ``run_demo``.

``config.resolved.yaml`` is written by the CLI before the run starts.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from jaxpetro.config import DemoConfig, config_to_dict, config_to_yaml, load_config
from jaxpetro.config.qmap import QmapConfig
from jaxpetro.io.generic import MapStack, write_map_stack, write_spots
from jaxpetro.io.plots import phase_map_figure
from jaxpetro.io.results import prepare_out_dir, read_hdf5, run_attrs, write_csv, write_hdf5
from jaxpetro.models.clustering import adjusted_rand_index
from jaxpetro.models.xray import Calibration, exposure_s_uA, quantify
from jaxpetro.synthetic import make_thin_section
from jaxpetro.synthetic.jeol import write_jeol
from jaxpetro.workflows import qmap
from jaxpetro.workflows.stages import Stages

CONFIG = DemoConfig


def run(config: DemoConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the demo; returns a summary dict (accuracy, RMSE, modal proportions, timings)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(5, "demo", quiet)

    with stages.stage("simulate_s", "simulating thin section"):
        syn = config.synthetic
        sec = make_thin_section(
            rows=syn.rows, cols=syn.cols, n_spots=syn.n_spots, seed=config.seed,
            dwell_ms=syn.dwell_ms, current_nA=syn.current_nA, step_um=syn.step_um,
        )
        export_section(sec, out / "section")
        jeol = out / "section" / "jeol"
        if jeol.exists():  # the demo owns this folder; write_jeol creates it afresh
            shutil.rmtree(jeol)
        write_jeol(sec, jeol, dialect="old")

    with stages.stage("qmap_s", "quantifying (qmap)"):
        qcfg = load_config(
            {
                "seed": config.seed,
                "input": {"format": "jeol", "map_dir": str(jeol / ".map" / "1"), "qnt_dir": str(jeol / ".qnt")},
                "clustering": config_to_dict(config.clustering),
                "quantify": config_to_dict(config.quantify),
                "mixing": config_to_dict(config.mixing),
                "output": config_to_dict(config.output),
            },
            QmapConfig,
        )
        q_summary = qmap.run(qcfg, out / "qmap", quiet=True)

    with stages.stage("score_s", "scoring against the truth"):
        summary = _score(config, sec, out, q_summary)

    with stages.stage("ptpath_s", "P-T path (ptpath)"):
        if config.ptpath:
            from jaxpetro.workflows.ptpath import run_demo as ptpath_demo

            summary["ptpath"] = ptpath_demo(out / "ptpath", config.seed, quiet=True)

    with stages.stage("isocon_s", "mass transfer (isocon)"):
        if config.isocon:
            from jaxpetro.workflows.isocon import run_demo as isocon_demo

            summary["isocon"] = isocon_demo(out / "isocon", config.seed, quiet=True)
    stages.close()
    summary.update(stages.timings)
    if not quiet:
        _print_table(summary)
    return summary


def _score(config, sec, out: Path, q_summary: dict) -> dict:
    """Compare the qmap results with the truth; write demo.h5, summary.csv, accuracy.csv, phases.png."""
    data, _ = read_hdf5(out / "qmap" / "qmap.h5")
    names = tuple(data["phases"])
    idx = np.array([sec.phases.index(n) if n in sec.phases else -1 for n in names])
    found = np.where(data["phase_map"] >= 0, idx[data["phase_map"]], -1)
    pure = sec.fractions.max(axis=-1) > 0.99
    accuracy = float(np.mean(found == sec.phase_map))
    accuracy_pure = float(np.mean(found[pure] == sec.phase_map[pure]))
    ari = adjusted_rand_index(found, sec.phase_map)
    modal = dict(zip(names, np.asarray(data["summary"]["modal"]).tolist()))
    modal_truth = sec.modal_truth()
    truth_wt = np.asarray(sec.wt)

    # wt% with memberships (the qmap output) and with mixing fractions, same calibration.
    oxides = list(data["oxides"])
    wt_m = np.stack([data["wt"][o] for o in oxides], axis=-1)
    weights = {"memberships": wt_m}
    if "fractions" in data:
        cal = Calibration(**{k: np.asarray(v) for k, v in data["parameters"].items()})
        chan = [sec.channels.index(e) for e in data["elements"]]
        expo = exposure_s_uA(sec.dwell_ms, sec.current_A) * np.ones(len(chan))
        rate = sec.counts[..., chan].reshape(-1, len(chan)) / expo.astype(np.float32)
        q = quantify(rate, data["fractions"].reshape(-1, len(names)), expo, cal)
        weights["fractions"] = np.asarray(q.wt).reshape(wt_m.shape)
    order = [sec.oxides.index(o) for o in oxides]
    rmse = {}
    for kind, wt in weights.items():
        err = wt - truth_wt[..., order]
        rmse[kind] = {
            "all": np.sqrt(np.mean(err**2, axis=(0, 1))),
            "pure": np.sqrt(np.mean(err[pure] ** 2, axis=0)),
            "mixed": np.sqrt(np.mean(err[~pure] ** 2, axis=0)),
        }
    header = ["oxide"] + [f"rmse_{where}_{kind}" for kind in rmse for where in ("all", "pure", "mixed")]
    write_csv(out / "accuracy.csv", header,
              [[o, *[rmse[k][w][j] for k in rmse for w in ("all", "pure", "mixed")]] for j, o in enumerate(oxides)])
    spot_counts = {p: int(np.sum(np.asarray(sec.spots.phase) == p)) for p in sec.phases}
    rows = [[n, modal[n], modal_truth.get(n, float("nan")), spot_counts.get(n, 0)] for n in names]
    write_csv(out / "summary.csv", ["phase", "modal_fraction", "modal_fraction_true", "n_spots"], rows)
    write_hdf5(
        out / "demo.h5",
        {
            "phases": list(names),
            "channels": list(sec.channels),
            "membership": data["membership"],
            "phase_map": data["phase_map"],
            "maps": {"counts": sec.counts, "exposure": sec.exposure},
            "spots": {"id": sec.spots.id, "row": sec.spots.row, "col": sec.spots.col,
                      "phase": list(sec.spots.phase), "wt": sec.spots.wt},
            "summary": {
                "modal": np.array([modal[n] for n in names]),
                "accuracy": accuracy, "accuracy_pure": accuracy_pure, "adjusted_rand_index": ari,
                "oxides": oxides,
                "rmse": {k: {w: v for w, v in r.items()} for k, r in rmse.items()},
            },
            "truth": {
                "phases": list(sec.phases), "phase_map": sec.phase_map, "fractions": sec.fractions,
                "wt": sec.wt, "oxides": list(sec.oxides),
                "modal": np.array([modal_truth[p] for p in sec.phases]),
                "alpha": sec.alpha, "beta": sec.beta, "gamma": sec.gamma,
            },
        },
        run_attrs(config_to_yaml(config), config.seed),
    )
    if config.output.plots:
        truth_idx = np.array([names.index(p) if p in names else -1 for p in sec.phases])
        phase_map_figure(
            out / "phases.png", data["phase_map"], names, truth=truth_idx[sec.phase_map],
            modal=[modal[n] for n in names], step_um=sec.step_um, title="most likely phase (qmap)",
            dpi=config.output.dpi,
        )
    return {
        "accuracy": accuracy, "accuracy_pure": accuracy_pure, "adjusted_rand_index": ari,
        "n_iter": q_summary["n_iter"], "converged": q_summary["converged"],
        "modal": modal, "modal_truth": modal_truth, "oxides": oxides,
        "rmse": {k: {w: dict(zip(oxides, v.tolist())) for w, v in r.items()} for k, r in rmse.items()},
        "spot_agreement": q_summary["checks"].get("spot_agreement"),
    }


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


def _print_table(summary: dict) -> None:
    """Headline figures on stderr (stdout stays clean for pipes)."""
    names = list(summary["modal"])
    lines = [f"{'phase':<8}{'found %':>9}{'true %':>9}"]
    for n in names:
        true = summary["modal_truth"].get(n, float("nan"))
        lines.append(f"{n:<8}{100 * summary['modal'][n]:9.2f}{100 * true:9.2f}")
    lines.append(
        f"pixel accuracy {100 * summary['accuracy']:.2f} % (pure pixels {100 * summary['accuracy_pure']:.2f} %), "
        f"ARI {summary['adjusted_rand_index']:.3f}, EM {summary['n_iter']} iterations"
        + ("" if summary["converged"] else " (NOT converged: raise clustering.max_iter)")
    )
    rm = summary["rmse"]["memberships"]
    lines.append("wt% RMSE, all / pure / mixed pixels: " + ", ".join(
        f"{o} {rm['all'][o]:.2f}/{rm['pure'][o]:.2f}/{rm['mixed'][o]:.2f}" for o in summary["oxides"][:4]) + " ...")
    for key in ("ptpath", "isocon"):
        if key in summary:
            lines.append(f"{key}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in summary[key].items() if not isinstance(v, dict)))
    print("\n".join(lines), file=sys.stderr)

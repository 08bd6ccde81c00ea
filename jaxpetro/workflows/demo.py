"""``jaxpetro demo``: the embedded synthetic thin section, end to end, against its truth.

Stages (each a function with a typed result):

1. :func:`simulate`: an EPMA dataset of a garnet-mica schist with known truth
   (:mod:`jaxpetro.synthetic`), exported as a JEOL project (``section/jeol``) and as
   generic input (``section/``), the inputs of the next stage;
2. :func:`quantify_section`: ``jaxpetro qmap``'s stages on the JEOL export, written into
   ``qmap/`` (phases, wt% maps, ...);
3. :func:`score`: the result against the truth (pixel accuracy, ARI, modal proportions,
   per-oxide RMSE of wt% over all, pure and mixed pixels, with memberships and with
   mixing fractions as phase weights);
4. :func:`section_chain`: ``jaxpetro section``'s stages on the quantified map (the garnets
   found, their 2-D zoning aligned on one growth coordinate, the joint P–T path and one per
   grain) into ``section/``, scored against the path the garnets grew along
   (``section/accuracy.csv``);
5. the ``run_demo`` of ``ptpath`` (a synthetic garnet profile, ``ptpath/``) and of
   ``isocon`` (a synthetic whole-rock set, ``isocon/``);
6. :func:`write_outputs`: ``demo.h5``, ``summary.csv`` (modal proportions),
   ``accuracy.csv``, ``phases.png`` beside the truth.

``config.resolved.yaml`` is written by the CLI before the run starts.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxpetro._precision import float64
from jaxpetro.config import DemoConfig, config_to_dict, config_to_yaml, load_config
from jaxpetro.config.qmap import QmapConfig
from jaxpetro.io.generic import MapStack, write_map_stack, write_spots
from jaxpetro.io.plots import phase_map_figure
from jaxpetro.io.results import prepare_out_dir, read_csv_table, run_attrs, write_csv, write_hdf5
from jaxpetro.models import summaries
from jaxpetro.models.clustering import adjusted_rand_index
from jaxpetro.models.xray import QuantifyOptions, exposure_s_uA, quantify
from jaxpetro.synthetic import ThinSection, make_thin_section
from jaxpetro.synthetic.jeol import write_jeol
from jaxpetro.workflows import qmap
from jaxpetro.workflows.stages import Stages

__all__ = ["CONFIG", "UNITS", "Score", "export_section", "quantify_section", "run", "score", "simulate", "write_outputs"]

CONFIG = DemoConfig

#: Units of every dataset of ``demo.h5`` ("" = text, "1" = dimensionless).
UNITS = {
    "phases": "", "channels": "", "membership": "1", "phase_map": "1",
    "maps/counts": "counts", "maps/exposure": "s*uA",
    "spots/id": "1", "spots/row": "px", "spots/col": "px", "spots/phase": "", "spots/wt": "wt%",
    "summary/*": "1", "summary/oxides": "", "summary/rmse/*": "wt%",
    "truth/phases": "", "truth/oxides": "", "truth/phase_map": "1", "truth/fractions": "1", "truth/modal": "1",
    "truth/wt": "wt%", "truth/alpha": "wt%/(cps/uA)", "truth/beta": "1", "truth/gamma": "cps/uA",
}
_WHERE = ("all", "pure", "mixed")


class Score(NamedTuple):
    """The qmap result against the truth.

    Attributes:
        names: phases found (qmap's order).
        found: (rows, cols) true-phase index of each pixel's most likely phase (-1: none).
        accuracy, accuracy_pure: share of pixels (of pure pixels) whose phase is right.
        adjusted_rand_index: agreement of the two partitions (1 = identical).
        modal: found modal proportion per phase (from the memberships); modal_mixing: from
            the mixing fractions (boundary pixels shared; empty without mixing);
            modal_truth: the true ones.
        oxides: quantified oxides.
        rmse: {weights kind: {all|pure|mixed: (J,) wt% RMSE}}, kinds ``memberships`` and,
            with mixing, ``fractions``.
        spot_counts: spots per true phase.
    """

    names: tuple[str, ...]
    found: np.ndarray
    accuracy: float
    accuracy_pure: float
    adjusted_rand_index: float
    modal: dict[str, float]
    modal_mixing: dict[str, float]
    modal_truth: dict[str, float]
    oxides: list[str]
    rmse: dict[str, dict[str, np.ndarray]]
    spot_counts: dict[str, int]


@float64
def run(config: DemoConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the demo; returns a summary dict (accuracy, RMSE, modal proportions, timings)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(6, "demo", quiet)
    with stages.stage("simulate_s", "simulating thin section"):
        sec, jeol = simulate(config, out / "section")
    with stages.stage("qmap_s", "quantifying (qmap)"):
        qcfg, results = quantify_section(config, jeol, out / "qmap")
    with stages.stage("score_s", "scoring against the truth"):
        scored = score(sec, results, qcfg)
        write_outputs(config, out, sec, results, scored)
    others = {}
    with stages.stage("section_s", "one thin section to a P-T path (section)"):
        if config.section:
            others["section"] = section_chain(config, out / "section", sec, results)
    with stages.stage("ptpath_s", "P-T path (ptpath)"):
        if config.ptpath:
            from jaxpetro.workflows.ptpath import run_demo as ptpath_demo

            others["ptpath"] = ptpath_demo(out / "ptpath", config.seed, quiet=True)
    with stages.stage("isocon_s", "mass transfer (isocon)"):
        if config.isocon:
            from jaxpetro.workflows.isocon import run_demo as isocon_demo

            others["isocon"] = isocon_demo(out / "isocon", config.seed, quiet=True)
    stages.close()
    summary = {**_summary(results, scored), **others, **stages.timings}
    if not quiet:
        _print_table(summary)
    return summary


def simulate(config: DemoConfig, folder: Path) -> tuple[ThinSection, Path]:
    """The synthetic section, exported into ``folder`` (generic) and ``folder/jeol`` (JEOL,
    old dialect); returns the section and the JEOL project folder."""
    syn = config.synthetic
    sec = make_thin_section(
        rows=syn.rows, cols=syn.cols, n_spots=syn.n_spots, seed=config.seed,
        dwell_ms=syn.dwell_ms, current_nA=syn.current_nA, step_um=syn.step_um, garnet_size=syn.garnet_size,
    )
    export_section(sec, folder)
    jeol = folder / "jeol"
    if jeol.exists():  # the demo owns this folder; write_jeol creates it afresh
        shutil.rmtree(jeol)
    write_jeol(sec, jeol, dialect="old")
    return sec, jeol


def quantify_section(config: DemoConfig, jeol: Path, out: Path) -> tuple[QmapConfig, qmap.QmapResults]:
    """qmap's stages on the JEOL export, with the demo's clustering/quantify/mixing/output
    settings; qmap's outputs are written into ``out``."""
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
    q_out = prepare_out_dir(out)
    results = qmap.analyse(qcfg, Stages(8, "qmap", quiet=True))
    qmap.write_outputs(qcfg, q_out, results)
    return qcfg, results


def section_chain(config: DemoConfig, out: Path, sec: ThinSection, results: qmap.QmapResults) -> dict:
    """``jaxpetro section``'s stages on the quantified synthetic map, into ``out``, and the joint
    path against the truth: ``accuracy.csv`` (rmse_P_kbar, rmse_T_C, coverage_P, coverage_T of the
    90 % bands at the joint shells, n_grains_found, n_grains_planted, n_grains_matched).

    The truth at growth coordinate s (µm of the reference grain) is the section's path
    (:func:`jaxpetro.synthetic.garnet_path`) at s / L, L the largest planted garnet's radius.
    A map too small for three shells in any garnet gets a warning, not an error.
    """
    from importlib import resources

    from jaxpetro.config.section import SectionConfig
    from jaxpetro.errors import InputError
    from jaxpetro.synthetic import garnet_path
    from jaxpetro.workflows import section as section_wf

    table = resources.files("jaxpetro.synthetic").joinpath("data", "garnet_grid_demo.csv")
    scfg = load_config({"seed": config.seed, "grains": {"per_grain": config.per_grain},
                        "ptpath": {"forward": {"kind": "table", "path": str(table)}, "ensemble": {"size": 300},
                                   "map_check": False, "output": config_to_dict(config.output)},
                        "output": config_to_dict(config.output)}, SectionConfig)
    out.mkdir(parents=True, exist_ok=True)
    L = sec.garnets[0][2] * sec.step_um  # the true growth length (µm)

    def true_path(s, _length_um=None):
        return garnet_path(np.asarray(s) / L)

    try:
        summary = section_wf.analyse(scfg, results, out, Stages(4, "section", quiet=True), truth=true_path)
    except InputError as err:
        print(f"jaxpetro: warning: the section chain was skipped on this map: {err}", file=sys.stderr)
        return {"skipped": str(err)}
    j = summary["joint"]
    P_true, T_true = true_path(j["radius_um"])
    planted = sec.garnets
    matched = sum(any(np.hypot(g["centroid_y_px"] - r, g["centroid_x_px"] - c) < 0.5 * R for r, c, R in planted)
                  for g in summary["grains"])
    acc = {"rmse_P_kbar": float(np.sqrt(np.mean((j["P_kbar"] - P_true) ** 2))),
           "rmse_T_C": float(np.sqrt(np.mean((j["T_C"] - T_true) ** 2))),
           "coverage_P": float(np.mean((j["P_lo"] <= P_true) & (P_true <= j["P_hi"]))),
           "coverage_T": float(np.mean((j["T_lo"] <= T_true) & (T_true <= j["T_hi"]))),
           "n_grains_found": summary["n_grains"], "n_grains_planted": len(planted), "n_grains_matched": int(matched)}
    acc.update(_single_grain_accuracy(out, true_path, j))
    write_csv(out / "accuracy.csv", list(acc), [list(acc.values())])
    truth_rows = [[r, p, t] for r, p, t in zip(j["radius_um"], P_true, T_true)]
    write_csv(out / "truth.csv", ["growth_um", "P_kbar", "T_C"], truth_rows)
    return acc


def _single_grain_accuracy(out: Path, true_path, joint: dict) -> dict:
    """With ``per_grain``: every grain's own path against the truth at its shells (each grain's
    shells are on the common growth coordinate), beside the joint path scored on the same shells
    (interpolated there): a paired comparison, since a small grain covers only the later part of
    the path. Means over the grains and the best grain's RMSE."""
    own_P, own_T, joint_P, joint_T = [], [], [], []
    s_joint = np.asarray(joint["radius_um"])
    for f in sorted(out.glob("grains/*/ptpath/ptpath.csv")):
        g = read_csv_table(f)
        s = np.asarray(g["radius_um"])
        inside = (s >= s_joint.min()) & (s <= s_joint.max())
        if not inside.any():
            continue
        P_true, T_true = true_path(s[inside])
        own_P.append(float(np.sqrt(np.mean((g["P_kbar"][inside] - P_true) ** 2))))
        own_T.append(float(np.sqrt(np.mean((g["T_C"][inside] - T_true) ** 2))))
        jP, jT = np.interp(s[inside], s_joint, joint["P_kbar"]), np.interp(s[inside], s_joint, joint["T_C"])
        joint_P.append(float(np.sqrt(np.mean((jP - P_true) ** 2))))
        joint_T.append(float(np.sqrt(np.mean((jT - T_true) ** 2))))
    if not own_P:
        return {}
    return {"n_grains_inverted": len(own_P),
            "rmse_P_kbar_grain_mean": float(np.mean(own_P)), "rmse_T_C_grain_mean": float(np.mean(own_T)),
            "rmse_P_kbar_grain_best": float(np.min(own_P)), "rmse_T_C_grain_best": float(np.min(own_T)),
            "rmse_P_kbar_joint_on_grain_shells": float(np.mean(joint_P)),
            "rmse_T_C_joint_on_grain_shells": float(np.mean(joint_T))}


def score(sec: ThinSection, results: qmap.QmapResults, qcfg: QmapConfig) -> Score:
    """Phases and wt% of the qmap result against the section's truth."""
    phases, cal = results.phases, results.calibration
    names = phases.names
    idx = np.array([sec.phases.index(n) if n in sec.phases else -1 for n in names])
    found = np.where(phases.phase_map >= 0, idx[phases.phase_map], -1)
    pure = sec.fractions.max(axis=-1) > 0.99
    modal = dict(zip(names, summaries.modal_proportions(phases.memberships).tolist()))
    modal_mixing = {} if results.fractions is None else \
        dict(zip(names, summaries.modal_proportions(np.asarray(results.fractions, np.float64)).tolist()))
    truth_wt = np.asarray(sec.wt)
    # wt% with memberships (the qmap output) and with mixing fractions, same calibration.
    oxides = list(cal.oxides)
    wt_m = results.quant.wt
    weights = {"memberships": wt_m}
    if results.fractions is not None:
        chan = [sec.channels.index(e) for e in cal.elements]
        expo = exposure_s_uA(sec.dwell_ms, sec.current_A) * np.ones(len(chan))
        rate = sec.counts[..., chan].reshape(-1, len(chan)) / expo.astype(np.float32)
        q = quantify(rate, results.fractions.reshape(-1, len(names)), expo, cal.cal, None,
                     QuantifyOptions.from_config(qcfg.quantify))
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
    return Score(
        names=names, found=found,
        accuracy=float(np.mean(found == sec.phase_map)),
        accuracy_pure=float(np.mean(found[pure] == sec.phase_map[pure])),
        adjusted_rand_index=adjusted_rand_index(found, sec.phase_map),
        modal=modal, modal_mixing=modal_mixing, modal_truth=sec.modal_truth(), oxides=oxides, rmse=rmse,
        spot_counts={p: int(np.sum(np.asarray(sec.spots.phase) == p)) for p in sec.phases},
    )


def write_outputs(config: DemoConfig, out: Path, sec: ThinSection, results: qmap.QmapResults, s: Score) -> None:
    """``accuracy.csv``, ``summary.csv``, ``demo.h5`` and ``phases.png`` (qmap/ is written by
    :func:`quantify_section`; ptpath/ and isocon/ by their workflows)."""
    names, modal, rmse = s.names, s.modal, s.rmse
    header = ["oxide"] + [f"rmse_{where}_{kind}" for kind in rmse for where in _WHERE]
    write_csv(out / "accuracy.csv", header,
              [[o, *[rmse[k][w][j] for k in rmse for w in _WHERE]] for j, o in enumerate(s.oxides)])
    rows = [[n, modal[n], s.modal_mixing.get(n, float("nan")), s.modal_truth.get(n, float("nan")),
             s.spot_counts.get(n, 0)] for n in names]
    write_csv(out / "summary.csv", ["phase", "modal_fraction", "modal_fraction_mixing", "modal_fraction_true",
                                    "n_spots"], rows)
    write_hdf5(
        out / "demo.h5",
        {
            "phases": list(names),
            "channels": list(sec.channels),
            "membership": results.phases.memberships,
            "phase_map": results.phases.phase_map,
            "maps": {"counts": sec.counts, "exposure": sec.exposure},
            "spots": {"id": sec.spots.id, "row": sec.spots.row, "col": sec.spots.col,
                      "phase": list(sec.spots.phase), "wt": sec.spots.wt},
            "summary": {
                "modal": np.array([modal[n] for n in names]),
                "accuracy": s.accuracy, "accuracy_pure": s.accuracy_pure, "adjusted_rand_index": s.adjusted_rand_index,
                "oxides": s.oxides,
                "rmse": {k: dict(r) for k, r in rmse.items()},
            },
            "truth": {
                "phases": list(sec.phases), "phase_map": sec.phase_map, "fractions": sec.fractions,
                "wt": sec.wt, "oxides": list(sec.oxides),
                "modal": np.array([s.modal_truth[p] for p in sec.phases]),
                "alpha": sec.alpha, "beta": sec.beta, "gamma": sec.gamma,
            },
        },
        run_attrs(config_to_yaml(config), config.seed),
        units=UNITS,
    )
    if config.output.plots:
        truth_idx = np.array([names.index(p) if p in names else -1 for p in sec.phases])
        phase_map_figure(
            out / "phases.png", results.phases.phase_map, names, truth=truth_idx[sec.phase_map],
            modal=[modal[n] for n in names], step_um=sec.step_um, title="most likely phase (qmap)",
            dpi=config.output.dpi,
        )


def _summary(results: qmap.QmapResults, s: Score) -> dict:
    """The summary returned by :func:`run` (before the ptpath/isocon parts and timings)."""
    clustering, agreement = results.phases.result, results.phases.agreement
    return {
        "accuracy": s.accuracy, "accuracy_pure": s.accuracy_pure, "adjusted_rand_index": s.adjusted_rand_index,
        "n_iter": int(clustering.status.iterations), "converged": bool(clustering.status.converged),
        "modal": s.modal, "modal_mixing": s.modal_mixing, "modal_truth": s.modal_truth, "oxides": s.oxides,
        "rmse": {k: {w: dict(zip(s.oxides, v.tolist())) for w, v in r.items()} for k, r in s.rmse.items()},
        "spot_agreement": None if agreement is None else agreement[0] / max(agreement[1], 1),
    }


def export_section(sec: ThinSection, folder: Path) -> None:
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
    mixing = summary.get("modal_mixing") or {}
    lines = [f"{'phase':<8}{'found %':>9}{'mixing %':>10}{'true %':>9}   (mode by memberships, by mixing fractions)"]
    for n in names:
        true = summary["modal_truth"].get(n, float("nan"))
        lines.append(f"{n:<8}{100 * summary['modal'][n]:9.2f}{100 * mixing.get(n, float('nan')):10.2f}{100 * true:9.2f}")
    lines.append(
        f"pixel accuracy {100 * summary['accuracy']:.2f} % (pure pixels {100 * summary['accuracy_pure']:.2f} %), "
        f"ARI {summary['adjusted_rand_index']:.3f}, EM {summary['n_iter']} iterations"
        + ("" if summary["converged"] else " (NOT converged: raise clustering.max_iter)")
    )
    rm = summary["rmse"]["memberships"]
    lines.append("wt% RMSE, all / pure / mixed pixels: " + ", ".join(
        f"{o} {rm['all'][o]:.2f}/{rm['pure'][o]:.2f}/{rm['mixed'][o]:.2f}" for o in summary["oxides"][:4]) + " ...")
    sc = summary.get("section", {})
    if "rmse_P_kbar" in sc:
        lines.append(f"section: {sc['n_grains_found']} garnets found ({sc['n_grains_planted']} planted); joint P-T "
                     f"path RMSE {sc['rmse_P_kbar']:.2f} kbar, {sc['rmse_T_C']:.1f} °C; 90 % bands cover "
                     f"{100 * sc['coverage_P']:.0f} % (P), {100 * sc['coverage_T']:.0f} % (T) of the shells")
    for key in ("ptpath", "isocon"):
        if key in summary:
            lines.append(f"{key}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in summary[key].items() if not isinstance(v, dict)))
    print("\n".join(lines), file=sys.stderr)

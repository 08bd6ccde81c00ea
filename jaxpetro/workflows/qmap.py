"""``jaxpetro qmap``: phase clustering of EPMA maps anchored on spot analyses.

Reads a generic map stack + spot CSV (:mod:`jaxpetro.io.generic`), soft-clusters the
pixels into the phases named by the spots (:mod:`jaxpetro.models.clustering`) and
writes ``qmap.h5`` (``phases``, ``channels``, ``membership``, ``phase_map``,
``clustering/``, ``summary/modal``), ``summary.csv`` (phase, modal_fraction) and
``phases.png``. Calibration to wt% and the JEOL readers come with the quantification
release; the names written here are the ones it keeps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxpetro.config import QmapConfig, config_to_yaml
from jaxpetro.errors import InputError
from jaxpetro.io.generic import read_map_stack, read_spots
from jaxpetro.io.plots import phase_map_figure
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.models.clustering import cluster_map
from jaxpetro.models.xray import exposure_s_uA, is_electron


def anchors_from_spots(spots, shape) -> tuple[tuple[str, ...], np.ndarray]:
    """Phase names (in order of first appearance) and the (rows, cols) anchor map."""
    phases = tuple(dict.fromkeys(spots.phase))
    anchors = np.full(shape, -1, np.int32)
    for r, c, p in zip(spots.row, spots.col, spots.phase):
        k = phases.index(p)
        if anchors[r, c] not in (-1, k):
            raise InputError(
                f"spot table: two spots on pixel (x_px={c}, y_px={r}) carry different phases "
                f"({phases[anchors[r, c]]} and {p}); relabel or drop one."
            )
        anchors[r, c] = k
    return phases, anchors


def run(config: QmapConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the workflow; returns a summary dict (modal proportions, EM iterations)."""
    out = prepare_out_dir(out_dir)
    progress = tqdm(total=3, desc="qmap", disable=quiet, unit="stage")
    progress.set_postfix_str("reading")
    stack = read_map_stack(config.input.maps)
    rows, cols, _ = stack.counts.shape
    if config.input.spots is not None:
        phases, anchors = anchors_from_spots(read_spots(config.input.spots, (rows, cols)), (rows, cols))
    else:
        phases, anchors = (), None
    progress.update()

    progress.set_postfix_str("clustering")
    cl = config.clustering
    electron = [i for i, c in enumerate(stack.channels) if is_electron(c)]
    # Dwell x current differs per channel but not per pixel: a Poisson rate is free per
    # channel, so the factor is absorbed by the fit and divided out of the rates below.
    result = cluster_map(
        stack.counts, None, phases=phases, anchors=anchors,
        model=cl.model, covariance=cl.covariance, transform=cl.transform, init=cl.init,
        extra_components=cl.extra_components, electron_channels=electron, use_electron=cl.use_bse,
        seed=config.seed, max_iter=cl.max_iter, tol=cl.tol, reg_covar=cl.reg_covar, chunk_size=cl.chunk_size,
    )
    progress.update()

    progress.set_postfix_str("writing")
    modal = result.modal()
    clustering = result.datasets([stack.channels[i] for i in result.channels])
    if result.family == "poisson":
        factor = exposure_s_uA(stack.dwell_ms, stack.current_A)[list(result.channels)]
        clustering["rate_cps_per_uA"] = result.params.loc / factor
    write_hdf5(
        out / "qmap.h5",
        {
            "phases": list(result.names),
            "channels": list(stack.channels),
            "membership": result.memberships,
            "phase_map": result.phase_map,
            "clustering": clustering,
            "summary": {"modal": np.array([modal[n] for n in result.names])},
        },
        run_attrs(config_to_yaml(config), config.seed),
    )
    write_csv(out / "summary.csv", ["phase", "modal_fraction"], [[n, modal[n]] for n in result.names])
    if config.output.plots:
        phase_map_figure(
            out / "phases.png", result.phase_map, result.names, modal=[modal[n] for n in result.names],
            step_um=stack.step_um, title=f"most likely phase ({result.family} EM)", dpi=config.output.dpi,
        )
    progress.update()
    progress.close()
    if not result.converged:
        print(
            f"jaxpetro: warning: EM stopped after {result.n_iter} iterations without reaching "
            f"clustering.tol={cl.tol:g}; raise clustering.max_iter.",
            file=sys.stderr,
        )
    return {"modal": modal, "n_iter": result.n_iter, "converged": result.converged, "phases": result.names}

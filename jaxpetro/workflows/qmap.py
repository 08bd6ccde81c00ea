"""``jaxpetro qmap``: EPMA X-ray maps + spot analyses -> phases and wt% maps.

Stages (timed; the times are returned in the summary and printed unless ``--quiet``):

1. read: a JEOL project (:mod:`jaxpetro.io.jeol`) or the generic map stack + spot CSV
   (:mod:`jaxpetro.io.generic`); stage positions -> pixels with the configured orientation;
2. dead-time correction of the X-ray channels (electron channels exempt);
3. spots: sub-phase labels merged, phases restricted, outlier spots flagged and left out;
4. clustering: Poisson (or Gaussian) EM anchored on the spot pixels; the share of spots
   landing on a pixel of their own phase is reported (orientation check);
5. mixing: per-pixel phase fractions on the simplex (Poisson linear mixing model);
6. calibration (alpha, beta, gamma) from the spots, or read from ``parameters.csv``;
7. quantification: wt%, standard error and detection limit per pixel and oxide;
8. summaries and outputs.

Outputs (names are a contract other tools read): ``qmap.h5`` (``phases``, ``membership``,
``wt/<OXIDE>``, ``wt_se/<OXIDE>``, ``lod/<OXIDE>``, ``total``, ``fractions``,
``parameters/``, ``summary/modal``, ``summary/composition``, ...), ``summary.csv``,
``parameters.csv``, ``spots.csv``, ``bulk.csv``, one ``<OXIDE>.csv`` matrix per oxide,
``profiles/``, PNG maps.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import chi2  # scipy ships with jax

from jaxpetro.config import QmapConfig, config_to_yaml
from jaxpetro.errors import InputError
from jaxpetro.io.generic import MapStack, SpotSet, read_map_stack, read_spot_set
from jaxpetro.io.parameters import read_parameters, write_parameters
from jaxpetro.io.plots import phase_map_figure, scalar_map_figure
from jaxpetro.io.results import atomic_write, prepare_out_dir, run_attrs, write_csv, write_hdf5
from jaxpetro.kernels.unmixing import best_single_phase, unmix
from jaxpetro.models import spots as spot_model
from jaxpetro.models import summaries
from jaxpetro.models.clustering import cluster_map
from jaxpetro.chemistry import GARNET_END_MEMBERS, oxide_of
from jaxpetro.models.oxides import garnet_end_members
from jaxpetro.models.xray import Calibration, calibrate, dead_time_factor, exposure_s_uA, is_electron, quantify
from jaxpetro.workflows.stages import Stages

_GARNET_OXIDES = ("FeO", "MgO", "CaO", "MnO")


def _warn(message: str) -> None:
    print(f"jaxpetro: warning: {message}", file=sys.stderr)


@dataclass
class _Input:
    stack: MapStack
    spots: SpotSet | None


def read_input(cfg) -> _Input:
    """Maps and spots (with pixels) of the ``input`` config section."""
    if cfg.format == "jeol":
        from jaxpetro.io.jeol import detect_dialect, read_jeol, spot_pixels

        stack, spots = read_jeol(
            cfg.map_dir, cfg.qnt_dir, dialect=cfg.dialect, map_conditions=cfg.map_conditions,
            spot_conditions=cfg.spot_conditions, phase_list=cfg.phase_list, dead_time_ns=cfg.dead_time_ns,
        )
        dialect = cfg.dialect if cfg.dialect != "auto" else detect_dialect(cfg.map_dir, cfg.map_conditions)
        row, col = spot_pixels(spots, stack, row_axis=cfg.row_axis, mirror=cfg.mirror, dialect=dialect)
        spots = SpotSet(**{**spots.__dict__, "row": row, "col": col})
        return _Input(stack, spots)
    stack = read_map_stack(cfg.maps)
    spots = read_spot_set(cfg.spots, stack.counts.shape[:2]) if cfg.spots is not None else None
    return _Input(stack, spots)


def _dead_time(stack: MapStack, xray: list[int], override: float | None) -> np.ndarray:
    """Dead-time corrected counts (rows, cols, channels) float32; electron channels unchanged."""
    tau = np.zeros(len(stack.channels))
    if override is not None:
        tau[xray] = override
    elif stack.dead_time_ns is not None:
        tau[xray] = np.asarray(stack.dead_time_ns, np.float64)[xray]
    if not np.any(tau > 0):
        return stack.counts
    counts = np.array(stack.counts, np.float32)
    for c in np.flatnonzero(tau > 0):
        factor = np.asarray(dead_time_factor(counts[..., c], stack.dwell_ms[c], tau[c]))
        if np.any(factor <= 0.05):
            raise InputError(
                f"channel {stack.channels[c]}: a dead time of {tau[c]:g} ns leaves less than 5 % live time at "
                f"{counts[..., c].max():g} counts per {stack.dwell_ms[c]:g} ms; check input.dead_time_ns (in ns)."
            )
        counts[..., c] = counts[..., c] / factor
    return counts


def _match_elements(spots: SpotSet | None, channels, xray) -> tuple[list[int], list[int]]:
    """(spot element index, channel index) of the elements both analysed and mapped."""
    if spots is None or not spots.elements:
        return [], []
    mapped = {channels[c].strip().capitalize(): c for c in xray}
    pairs = [(j, mapped[e.strip().capitalize()]) for j, e in enumerate(spots.elements) if e.strip().capitalize() in mapped]
    not_mapped = [e for e in spots.elements if e.strip().capitalize() not in mapped]
    if not_mapped:
        _warn(f"element(s) {', '.join(not_mapped)} analysed at the spots but not mapped: left out of the quantification.")
    quantified = {c for _, c in pairs}
    spare = [channels[c] for c in xray if c not in quantified]
    if spare:
        _warn(f"mapped element(s) {', '.join(spare)} have no spot analyses: used for clustering only, not quantified.")
    return [j for j, _ in pairs], [c for _, c in pairs]


def run(config: QmapConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the workflow; returns a summary dict (modes, compositions, timings, checks)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(8, "qmap", quiet)
    stage, done = stages.start, stages.done

    # 1. read ---------------------------------------------------------------------------
    stage("read")
    data = read_input(config.input)
    stack, spots = data.stack, data.spots
    rows, cols, n_ch = stack.counts.shape
    channels = stack.channels
    xray = [c for c in range(n_ch) if not is_electron(channels[c])]
    electron = [c for c in range(n_ch) if is_electron(channels[c])]
    done("read")

    # 2. dead time ----------------------------------------------------------------------
    stage("dead_time")
    counts = _dead_time(stack, xray, config.input.dead_time_ns)
    exposure = exposure_s_uA(stack.dwell_ms, stack.current_A)  # (channels,) s·µA
    done("dead_time")

    # 3. spots --------------------------------------------------------------------------
    stage("spots")
    cl = config.clustering
    if spots is None:
        if config.quantify.parameters is not None or cl.init == "anchors":
            raise InputError(
                "no spot table: give input.spots (phase labels at least), or cluster only with "
                "clustering.init: kmeans++ (and no quantify.parameters)."
            )
        labels = None
    else:
        labels = spot_model.label_spots(spots.phase, spots.use, merge_subphases=config.spots.merge_subphases,
                                        phases=cl.phases)
        for name, n in labels.dropped.items():
            _warn(f"{n} spot(s) of phase {name} left out: not in clustering.phases.")
        for name in labels.unanchored:
            _warn(f"phase {name} in clustering.phases has no spots: fitted as an unanchored component, "
                  "quantified with the calibration pooled over all phases.")
    outlier = np.zeros(0, bool)
    deviance = np.zeros(0)
    if labels is not None:
        at = counts[spots.row, spots.col][:, xray]
        n_anch = len(labels.phases) - len(labels.unanchored)
        outlier, deviance = spot_model.spot_outliers(at, labels.index, n_anch, config.spots.outlier_p)
        if outlier.any():
            ids = ", ".join(str(i) for i in spots.id[outlier])
            _warn(f"spot(s) {ids} disagree with their phase beyond counting noise: left out of anchors and calibration "
                  "(see spots.csv; spots.outlier_p sets the test).")
        anchor_index = np.where(outlier, -1, labels.index)
        anchor_index = np.where(anchor_index >= n_anch, -1, anchor_index)
        anchors = np.full((rows, cols), -1, np.int32)
        for r, c, k, sid in zip(spots.row, spots.col, anchor_index, spots.id):
            if k < 0:
                continue
            if anchors[r, c] not in (-1, k):
                raise InputError(
                    f"spot {sid}: two spots on pixel (x_px={c}, y_px={r}) carry different phases "
                    f"({labels.phases[anchors[r, c]]} and {labels.phases[k]}); relabel or exclude one."
                )
            anchors[r, c] = k
        anchored_names = labels.phases[:n_anch]
        extra = cl.extra_components + len(labels.unanchored)
    else:
        anchors, anchored_names, extra, anchor_index = None, (), cl.extra_components, np.zeros(0, np.int64)
    done("spots")

    # 4. clustering ---------------------------------------------------------------------
    stage("clustering")
    result = cluster_map(
        counts, None, phases=anchored_names, anchors=anchors,
        model=cl.model, covariance=cl.covariance, transform=cl.transform, init=cl.init,
        extra_components=extra, electron_channels=electron, use_electron=cl.use_bse,
        seed=config.seed, max_iter=cl.max_iter, tol=cl.tol, reg_covar=cl.reg_covar, chunk_size=cl.chunk_size,
    )
    names = tuple(result.names)
    if labels is not None and labels.unanchored:  # extra components named after the requested phases
        names = names[: len(anchored_names)] + labels.unanchored + names[len(anchored_names) + len(labels.unanchored):]
    memberships = result.memberships  # (rows, cols, K) float32
    phase_map = result.phase_map
    k_n = len(names)
    checks = {}
    if labels is not None:
        hits, tested = spot_model.agreement(phase_map, spots.row, spots.col, anchor_index)
        share = hits / max(tested, 1)
        checks.update(spots_on_own_phase=hits, spots_tested=tested, spot_agreement=share)
        if share < config.input.min_agreement:
            _warn(
                f"only {hits} of {tested} spots ({100 * share:.0f} %) land on a pixel whose most likely phase is their "
                "label; check the map orientation (input.row_axis, input.mirror) and the spot labels."
            )
    done("clustering")

    # 5. mixing -------------------------------------------------------------------------
    stage("mixing")
    x_counts = counts[..., xray].reshape(-1, len(xray))
    fractions = None
    if config.mixing.enabled:
        p_flat = memberships.reshape(-1, k_n)
        # Pure-phase rates (counts per pixel) as membership-weighted means: the Poisson
        # M-step, valid whichever family clustered the map.
        lam = _pure_rates(x_counts, p_flat, np.ones(p_flat.shape[0], bool))
        # Boundary pixels bias those means (EM gives most of them a membership near 1);
        # re-estimate from the pixels that their best pure phase explains within noise.
        single = best_single_phase(x_counts, lam)
        pure = np.asarray(single.deviance) <= chi2.ppf(1.0 - max(config.mixing.pure_p, 1e-12), len(xray))
        if pure.any():
            lam = np.where(np.bincount(np.asarray(single.index)[pure], minlength=k_n)[:, None] > 0,
                           _pure_rates(x_counts, p_flat, pure), lam)
        fractions, mixed_share, gap = _mix(x_counts, lam, config.mixing)
        fractions = fractions.reshape(rows, cols, k_n)
        checks.update(mixing_unmixed_share=mixed_share, mixing_gap_p99=gap)
    done("mixing")

    # 6. calibration --------------------------------------------------------------------
    stage("calibration")
    q = config.quantify
    spot_j, chan = _match_elements(spots, channels, xray)
    quantified = bool(chan)
    if q.parameters is not None and spots is not None:
        elements = tuple(channels[c] for c in chan) if chan else tuple(channels[c] for c in xray)
        chan = chan or xray
        oxides = tuple(oxide_of(e) or e for e in elements)
        cal = read_parameters(q.parameters, elements, names)
        quantified = True
    elif quantified:
        elements = tuple(spots.elements[j] for j in spot_j)
        oxides = tuple(spots.oxides[j] for j in spot_j)
        cal = _calibrate_from_spots(spots, spot_j, chan, counts, exposure, memberships, anchor_index,
                                    labels.index, outlier, q, k_n)
    else:
        elements, oxides, cal = (), (), None
    n_tiles = q.beta_tiles[0] * q.beta_tiles[1]
    if cal is not None and cal.beta.shape[0] not in (1, n_tiles):
        raise InputError(f"parameters file '{q.parameters}' has beta for {cal.beta.shape[0]} tiles but "
                         f"quantify.beta_tiles = {list(q.beta_tiles)}; set beta_tiles to match.")
    done("calibration")

    # 7. quantification -----------------------------------------------------------------
    stage("quantification")
    weights = fractions if q.weights == "fractions" else memberships
    quant = None
    if cal is not None:
        rate = counts[..., chan].reshape(-1, len(chan)) / exposure[chan].astype(np.float32)
        tile = _tile_index(rows, cols, q.beta_tiles) if cal.beta.shape[0] > 1 else None
        quant = quantify(rate, weights.reshape(-1, k_n), exposure[chan], cal,
                         None if tile is None else tile.reshape(-1), q.chunk_size)
        quant = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(rows, cols, -1), quant)
    done("quantification")

    # 8. summaries and outputs ------------------------------------------------------------
    stage("writing")
    summary = _write_outputs(config, out, stack, names, memberships, phase_map, fractions, result, elements,
                             oxides, cal, quant, weights, spots, labels, anchor_index, outlier, deviance, checks)
    done("writing")
    stages.close()
    if not result.converged:
        _warn(f"EM stopped after {result.n_iter} iterations without reaching clustering.tol={cl.tol:g}; "
              "raise clustering.max_iter.")
    if not quantified and spots is not None:
        _warn("the spot table has no wt% columns for mapped elements: phases only, no wt% maps.")
    summary.update(timings=stages.timings, n_iter=result.n_iter, converged=result.converged, phases=names, checks=checks)
    if not quiet:
        _report(summary)
    return summary


def _report(summary: dict) -> None:
    """Headline figures on stderr (stdout stays clean for pipes)."""
    checks = summary["checks"]
    lines = ["phase     modal %" + ("   " + "  ".join(f"{o:>6}" for o in list(summary.get("bulk", {}))[:6]) if "composition" in summary else "")]
    for name, m in summary["modal"].items():
        comp = summary.get("composition", {}).get(name, {})
        lines.append(f"{name:<8}{100 * m:8.2f}" + ("   " + "  ".join(f"{v:6.2f}" for v in list(comp.values())[:6]) if comp else ""))
    if "spots_tested" in checks:
        lines.append(f"{checks['spots_on_own_phase']} of {checks['spots_tested']} spots land on a pixel of their own phase; "
                     f"EM {summary['n_iter']} iterations" + ("" if summary["converged"] else " (not converged)"))
    if "mixing_unmixed_share" in checks:
        lines.append(f"{100 * checks['mixing_unmixed_share']:.1f} % of pixels unmixed (the rest fit one phase within noise)")
    lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings"].items() if v >= 0.05))
    print("\n".join(lines), file=sys.stderr)


def _pure_rates(x_counts, p_flat, sel) -> np.ndarray:
    """(K, J) membership-weighted mean counts over the selected pixels (the Poisson M-step)."""
    p = p_flat[sel].astype(np.float64)
    return (p.T @ x_counts[sel].astype(np.float64)) / np.maximum(p.sum(0), 1e-12)[:, None]


def _mix(x_counts, lam, cfg):
    """Mixing fractions (N, K) float32: pixels that their best pure phase explains within
    counting noise (deviance below the chi-square quantile ``1 - cfg.pure_p``) keep that
    phase; the others are unmixed. Returns (fractions, share unmixed, 99th percentile gap)."""
    n, j = x_counts.shape
    single = best_single_phase(x_counts, lam)
    index, dev = np.asarray(single.index), np.asarray(single.deviance)
    fractions = np.zeros((n, lam.shape[0]), np.float32)
    fractions[np.arange(n), index] = 1.0
    todo = np.flatnonzero(dev > chi2.ppf(1.0 - cfg.pure_p, j)) if cfg.pure_p > 0 else np.arange(n)
    gap = 0.0
    if todo.size:
        # Pad to a multiple of the block so that maps of similar size share one compilation.
        block = 16384
        padded = np.zeros((-(-todo.size // block) * block, j), x_counts.dtype)
        padded[: todo.size] = x_counts[todo]
        mix = unmix(padded, lam, None, n_active=cfg.n_active, max_iter=cfg.max_iter, chunk_size=block)
        fractions[todo] = np.asarray(mix.fractions, np.float32)[: todo.size]
        gap = float(np.quantile(np.asarray(mix.gap)[: todo.size], 0.99))
    return fractions, todo.size / max(n, 1), gap


def _tile_index(rows: int, cols: int, tiles) -> np.ndarray:
    """(rows, cols) int32 tile of each pixel for per-tile beta (row-major tiles)."""
    tr, tc = tiles
    r = (np.arange(rows) * tr // rows)[:, None]
    c = (np.arange(cols) * tc // cols)[None, :]
    return (r * tc + c).astype(np.int32)


def _calibrate_from_spots(spots, spot_j, chan, counts, exposure, memberships, anchor_index, spot_index, outlier,
                          q, k_n) -> Calibration:
    """alpha, beta, gamma from the spots (see :func:`jaxpetro.models.xray.calibrate`)."""
    rows, cols, _ = counts.shape
    # Calibrate on every labelled spot that is not an outlier (spots of unanchored
    # phases too: they have no anchor but do have a phase).
    index = np.where(outlier, -1, spot_index)
    rate_img = counts[..., chan] / exposure[chan].astype(np.float32)
    spot_rate = spot_model.window_mean(rate_img, spots.row, spots.col, memberships, index, q.threshold,
                                       q.beta_window // 2)
    wt = spots.wt[:, spot_j]
    if spots.peak is not None:
        peak, bg = spots.peak[:, spot_j], spots.background[:, spot_j]
    else:
        # No spot intensities: calibrate wt% on the map rate itself (beta = 1, gamma = 0).
        peak, bg = spot_rate, np.zeros_like(spot_rate)
    own = memberships[spots.row, spots.col, np.maximum(index, 0)]
    weight = np.where((index >= 0) & (own >= q.threshold), own, 0.0)
    if not np.any(weight > 0):
        raise InputError(
            f"no spot pixel has a membership of at least quantify.threshold = {q.threshold:g} in its own phase, "
            "so beta cannot be fitted; lower quantify.threshold or check the spot positions (orientation)."
        )
    tile = _tile_index(rows, cols, q.beta_tiles)[spots.row, spots.col]
    n_tiles = q.beta_tiles[0] * q.beta_tiles[1]
    cal = calibrate(wt, peak - bg, bg, peak, np.maximum(index, 0), index >= 0, spot_rate, weight, tile, k_n, n_tiles)
    return jax.tree_util.tree_map(np.asarray, cal)


def _garnet(names, oxides, weights, wt, cfg):
    """(rows, cols, 4) garnet end-members on garnet pixels (NaN elsewhere), or None."""
    if cfg.garnet not in names or not all(o in oxides for o in _GARNET_OXIDES):
        return None
    k = names.index(cfg.garnet)
    mask = weights[..., k] >= cfg.garnet_min_membership
    x = np.full(wt.shape[:2] + (4,), np.nan, np.float32)
    if mask.any():
        x[mask] = np.asarray(garnet_end_members(jnp.asarray(wt[mask], jnp.float64), oxides), np.float32)
    return x


def _write_outputs(config, out, stack, names, memberships, phase_map, fractions, result, elements, oxides, cal,
                   quant, weights, spots, labels, anchor_index, outlier, deviance, checks) -> dict:
    rows, cols, k_n = memberships.shape
    modal = memberships.reshape(-1, k_n).astype(np.float64).mean(0)
    datasets = {
        "phases": list(names),
        "channels": list(stack.channels),
        "membership": memberships,
        "phase_map": phase_map,
        "clustering": result.datasets([stack.channels[i] for i in result.channels]),
        "summary": {"modal": modal},
    }
    if result.family == "poisson":  # counts per pixel -> cps/µA (channels differ in dwell x current)
        factor = exposure_s_uA(stack.dwell_ms, stack.current_A)[list(result.channels)]
        datasets["clustering"]["rate_cps_per_uA"] = np.asarray(result.params.loc) / factor
    if fractions is not None:
        datasets["fractions"] = fractions
        datasets["summary"]["modal_fractions"] = fractions.reshape(-1, k_n).astype(np.float64).mean(0)
    summary = {"modal": dict(zip(names, modal.tolist()))}
    step = stack.step_um
    header = ["phase", "modal_fraction"]
    table = [[n, m] for n, m in zip(names, modal)]
    if quant is not None:
        wt, se, lod = quant.wt, quant.se, quant.lod
        total = wt.sum(-1)
        mean, sd = summaries.phase_compositions(memberships, wt, fractions, config.quantify.threshold)
        density = summaries.densities_for(names, config.densities)
        bulk = summaries.bulk_composition(weights, wt, density)
        datasets.update(
            wt={o: wt[..., j] for j, o in enumerate(oxides)},
            wt_se={o: se[..., j] for j, o in enumerate(oxides)},
            lod={o: lod[..., j] for j, o in enumerate(oxides)},
            below_lod={o: (wt[..., j] < lod[..., j]).astype(np.uint8) for j, o in enumerate(oxides)},
            total=total,
            oxides=list(oxides),
            elements=list(elements),
            parameters={**{k: np.asarray(v) for k, v in cal._asdict().items()}},
        )
        datasets["summary"].update(composition=mean, composition_sd=sd, bulk=bulk, densities=density)
        header += list(oxides) + [f"{o}_sd" for o in oxides]
        table = [[n, m, *mean[k], *sd[k]] for k, (n, m) in enumerate(zip(names, modal))]
        regions = {"section": bulk}
        for name, (r0, r1, c0, c1) in config.summary.regions.items():
            if not (r0 < r1 <= rows and c0 < c1 <= cols):
                raise InputError(f"summary.regions.{name} = {[r0, r1, c0, c1]} is not a rectangle inside the "
                                 f"{rows} x {cols} map ([row0, row1, col0, col1], end exclusive).")
            mask = np.zeros((rows, cols), bool)
            mask[r0:r1, c0:c1] = True
            regions[name] = summaries.bulk_composition(weights, wt, density, mask)
        datasets["summary"]["regions"] = regions
        write_csv(out / "bulk.csv", ["region", *oxides, "total"], [[n, *v, float(np.sum(v))] for n, v in regions.items()])
        garnet = _garnet(names, oxides, weights, wt, config.summary)
        if garnet is not None:
            datasets["garnet"] = {m: garnet[..., i] for i, m in enumerate(GARNET_END_MEMBERS)}
        profiles = _profiles(config, out, names, oxides, weights, phase_map, wt, se, garnet, step)
        if profiles:
            datasets["profiles"] = profiles
        write_parameters(out / "parameters.csv", cal, elements, oxides, names)
        for j, o in enumerate(oxides):
            _write_matrix(out / f"{o}.csv", wt[..., j])
        summary.update(composition={n: dict(zip(oxides, mean[k].tolist())) for k, n in enumerate(names)},
                       bulk=dict(zip(oxides, bulk.tolist())))
    if fractions is not None:
        header.append("modal_fraction_mixing")
        for row, m in zip(table, datasets["summary"]["modal_fractions"]):
            row.append(m)
    write_csv(out / "summary.csv", header, table)
    if spots is not None and labels is not None:
        pix = phase_map[spots.row, spots.col]
        write_csv(
            out / "spots.csv",
            ["id", "label", "phase", "x_px", "y_px", "used", "outlier", "deviance", "pixel_phase", "agrees"],
            [[int(i), lab, labels.phases[k] if k >= 0 else "", int(c), int(r), bool(a >= 0), bool(o), d,
              names[p], bool(k >= 0 and p == k)]
             for i, lab, k, r, c, a, o, d, p in zip(spots.id, spots.phase, labels.index, spots.row, spots.col,
                                                    anchor_index, outlier, deviance, pix)],
        )
    datasets["checks"] = {k: v for k, v in checks.items()}
    write_hdf5(out / "qmap.h5", datasets, run_attrs(config_to_yaml(config), config.seed))
    if config.output.plots:
        dpi = config.output.dpi
        phase_map_figure(out / "phases.png", phase_map, names, modal=modal, step_um=step,
                         title=f"most likely phase ({result.family} EM)", dpi=dpi)
        if quant is not None:
            for j, o in enumerate(oxides):
                scalar_map_figure(out / f"{o}.png", quant.wt[..., j], title=f"{o} (wt%)", step_um=step, dpi=dpi)
            scalar_map_figure(out / "total.png", quant.wt.sum(-1), title="analytical total (wt%)", step_um=step,
                              dpi=dpi, cmap="magma")
    return summary


def _write_matrix(path: Path, image: np.ndarray) -> None:
    """One oxide's wt% map as a CSV matrix (rows x cols), 4 significant digits."""

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8") as fh:
            np.savetxt(fh, image, fmt="%.4g", delimiter=",")

    atomic_write(path, write)


def _profiles(config, out, names, oxides, weights, phase_map, wt, se, garnet, step_um) -> dict:
    """Profiles along lines: ``profiles/<name>.csv`` (wt% and SE per step) and, where the
    line crosses garnet, ``profiles/<name>_garnet.csv`` ready for ``jaxpetro ptpath``."""
    cfg = config.summary
    if not cfg.profiles:
        return {}
    folder = out / "profiles"
    folder.mkdir(exist_ok=True)
    step = step_um or 1.0
    result = {}
    for name, (x0, y0, x1, y1) in cfg.profiles.items():
        dist, rr, cc = summaries.profile_points((x0, y0), (x1, y1), phase_map.shape, cfg.profile_width)
        if dist.size == 0:
            raise InputError(f"summary.profiles.{name}: the line {[x0, y0, x1, y1]} lies outside the map.")
        w_mean = wt[rr, cc].mean(axis=1)
        w_se = np.sqrt((se[rr, cc] ** 2).mean(axis=1) / rr.shape[1])
        phase = phase_map[rr[:, rr.shape[1] // 2], cc[:, cc.shape[1] // 2]]
        write_csv(folder / f"{name}.csv", ["distance_um", "x_px", "y_px", "phase", *oxides, *[f"{o}_se" for o in oxides]],
                  [[d * step, c[c.size // 2], r[r.size // 2], names[p], *w, *s]
                   for d, r, c, p, w, s in zip(dist, rr, cc, phase, w_mean, w_se)])
        entry = {"distance_um": dist * step, "wt": w_mean, "wt_se": w_se}
        if garnet is not None:
            k = names.index(cfg.garnet)
            g = weights[rr, cc, k].mean(axis=1) >= cfg.garnet_min_membership
            if g.any():
                ox = jnp.asarray(w_mean[g], jnp.float64)
                x = np.asarray(garnet_end_members(ox, oxides))
                jac = np.asarray(jax.vmap(jax.jacfwd(lambda v: garnet_end_members(v, oxides)))(ox))  # (n, 4, J)
                x_sd = np.sqrt(np.einsum("nej,nj->ne", jac**2, w_se[g] ** 2))
                radius = dist[g] * step  # profiles start at the garnet's core
                write_csv(folder / f"{name}_garnet.csv",
                          ["radius_um", *GARNET_END_MEMBERS, *[f"{m}_sd" for m in GARNET_END_MEMBERS]],
                          [[r, *xv, *sv] for r, xv, sv in zip(radius, x, x_sd)])
                entry.update(garnet_radius_um=radius, garnet=x, garnet_sd=x_sd)
        result[name] = entry
    return result

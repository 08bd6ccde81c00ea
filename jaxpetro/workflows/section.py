"""``jaxpetro section``: one thin section to a P–T(–t) path — quantify, find the garnets, read their
2-D zoning, align them on one growth coordinate and invert one joint path (and one per grain).

Stages: :func:`quantify` (the qmap stages, written into ``qmap/``) -> :func:`garnet_maps` ->
:func:`read_grains` (grains, centres, shells, radial profiles; :mod:`jaxpetro.models.grains`) ->
:func:`align_grains` (common growth coordinate, joint profile, per-grain consistency) ->
:func:`invert` (``jaxpetro ptpath`` on the joint profile and on every grain) -> :func:`write_outputs`.

Writes ``section.csv`` (one row per grain: id, centroid_x_px, centroid_y_px, radius_um, n_pixels,
edge, core_offset_um, cut_offset_um, start_um, centre, n_shells, chi2_per_dof, p_value, used),
``grains/<id>/shells.csv`` (growth_um, radius_um, X_*, X_*_sd, X_*_spread, n_pixels),
``grains/<id>/profiles.csv`` (radial profiles), ``grains/<id>/ptpath/`` (that grain alone),
``joint/profile.csv`` and ``joint/ptpath/`` (the joint path, ``joint/ptpath.csv`` a copy of its
path), ``section.h5``, ``section_report.png`` and ``report.md``. Assumptions: docs/section.md.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxpetro._precision import float64
from jaxpetro.config.loader import NestedConfig, config_to_yaml, load_config
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.config.qmap import QmapConfig
from jaxpetro.config.section import GrainsConfig, SectionConfig
from jaxpetro.errors import ConfigError, InputError, JaxpetroError
from jaxpetro.io.masks import read_mask_image
from jaxpetro.io.profiles import write_profile
from jaxpetro.io.results import prepare_out_dir, read_csv_table, run_attrs, write_csv, write_hdf5
from jaxpetro.models import grains as gm
from jaxpetro.models.oxides import GARNET_END_MEMBERS, GARNET_OXIDES, garnet_end_members_with_sd
from jaxpetro.workflows import qmap
from jaxpetro.workflows.stages import Stages

__all__ = ["CONFIG", "GarnetMaps", "GrainZoning", "Joint", "align_grains", "analyse", "calibration_sd", "check_blocks", "domain_isocon", "garnet_maps",
           "invert", "quantify", "read_grains", "run", "with_calibration_error", "write_outputs"]

CONFIG = SectionConfig
SECTION_COLUMNS = ("id", "centroid_x_px", "centroid_y_px", "radius_um", "n_pixels", "edge", "core_offset_um",
                   "cut_offset_um", "start_um", "centre", "n_shells", "chi2_per_dof", "p_value", "used")


class GarnetMaps(NamedTuple):
    """Per-pixel garnet data of the quantified map.

    Attributes:
        fraction: (rows, cols) garnet fraction (mixing fractions, else memberships).
        X, X_sd: (rows, cols, 4) end-member fractions and their propagated sd (NaN off garnet).
        total: (rows, cols) oxide total (wt%).
        valid: (rows, cols) analysed pixels. step_um: pixel size.
    """

    fraction: np.ndarray
    X: np.ndarray
    X_sd: np.ndarray
    total: np.ndarray
    valid: np.ndarray
    step_um: float


class GrainZoning(NamedTuple):
    """One grain's 2-D zoning: the grain, its centre (row, col) and how it was found, its shells,
    radial profiles (angles deg, radius µm, X (n_dir, m, 4)) and usable-pixel count."""

    grain: gm.Grain
    centre: tuple[float, float]
    centre_method: str
    shells: gm.Shells
    profiles: tuple[np.ndarray, np.ndarray, np.ndarray]
    n_usable: int


class Joint(NamedTuple):
    """Grains on the common growth coordinate: the reference grain's index, each grain's
    alignment and consistency with the others, which grains are used, the merged profile."""

    reference: int
    alignments: list[gm.Alignment]
    consistency: list[gm.Consistency]
    used: list[bool]
    merged: gm.Shells
    length_um: float


# ----------------------------------------------------------------------------- stages


def _sub_config(raw: NestedConfig, schema: type, key: str, extra: dict | None = None):
    data = {**dict(raw), **(extra or {})}
    try:
        return load_config(data, schema, base_dir=getattr(raw, "base_dir", None))
    except ConfigError as err:
        raise ConfigError(f"section '{key}:' block: {err}") from None


def quantify(config: SectionConfig, out: Path) -> tuple[QmapConfig, qmap.QmapResults]:
    """The qmap stages on the ``qmap:`` block's input; qmap's outputs go to ``out``."""
    qcfg = _sub_config(config.qmap, QmapConfig, "qmap", {"seed": config.qmap.get("seed", config.seed)})
    results = qmap.analyse(qcfg, Stages(8, "qmap", quiet=True))
    qmap.write_outputs(qcfg, prepare_out_dir(out), results)
    return qcfg, results


def garnet_maps(results: qmap.QmapResults, cfg: GrainsConfig) -> GarnetMaps:
    """Garnet fraction, end-members with errors and totals of every pixel.

    Raises:
        InputError: no garnet phase of that name, or no wt% maps (a spot table is needed).
    """
    names = list(results.phases.names)
    if cfg.phase not in names:
        raise InputError(f"the qmap result has no phase '{cfg.phase}' (phases: {', '.join(names)}); set "
                         f"grains.phase to the garnet's name.")
    if results.quant is None:
        raise InputError("the map was not quantified (no spot analyses with wt%); the section chain needs wt% "
                         "maps: give qmap.input a spot table.")
    oxides = tuple(results.calibration.oxides)
    missing = [o for o in GARNET_OXIDES if o not in oxides]
    if missing:
        raise InputError(f"the quantified oxides lack {', '.join(missing)}: garnet end-members need FeO, MgO, CaO "
                         f"and MnO maps with spot calibration.")
    k = names.index(cfg.phase)
    weights = results.fractions if results.fractions is not None else results.phases.memberships
    frac = np.asarray(weights[..., k], float)
    rows, cols = frac.shape
    wt = np.asarray(results.quant.wt, float).reshape(rows, cols, -1)
    se = np.asarray(results.quant.se, float).reshape(rows, cols, -1)
    X = np.full((rows, cols, 4), np.nan)
    X_sd = np.full((rows, cols, 4), np.nan)
    on = (frac >= cfg.min_fraction) & np.all(np.isfinite(wt), axis=-1)
    if on.any():
        members = garnet_end_members_with_sd(wt[on], se[on], oxides)
        X[on], X_sd[on] = np.asarray(members.x), np.asarray(members.sd)
    valid = np.asarray(results.corrected.valid, bool).reshape(rows, cols) if results.corrected.valid is not None \
        else np.ones((rows, cols), bool)
    step = float(results.input.stack.step_um or 1.0)
    return GarnetMaps(frac, X, X_sd, np.nansum(wt, axis=-1), valid, step)


def read_grains(maps: GarnetMaps, cfg: GrainsConfig, mask: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                                               list[GrainZoning]]:
    """Find the grains and read each one's centre, shells and radial profiles.

    Raises:
        InputError: no grain, or no grain with usable shells.
    """
    labels, grains = gm.find_grains(maps.fraction, cfg.min_fraction, cfg.min_pixels, mask, cfg.seeds, maps.valid)
    if not grains:
        raise InputError(f"no garnet grain of at least grains.min_pixels={cfg.min_pixels} pixels with garnet "
                         f"fraction >= grains.min_fraction={cfg.min_fraction} in the section; check grains.phase "
                         f"or lower those keys.")
    if not cfg.use_edge_grains:
        grains = [g for g in grains if not g.edge]
    grains = grains[: cfg.max_grains]
    lo, hi = cfg.total_wt
    out = []
    for g in grains:
        inside = labels == g.label
        usable = inside & (maps.fraction >= cfg.pure_fraction) & (maps.total >= lo) & (maps.total <= hi)
        usable &= np.all(np.isfinite(maps.X), axis=-1)
        centre, how = gm.growth_centre(inside, np.where(usable, maps.X[..., 3], np.nan), cfg.centre)
        if how == "mn":
            # The most concentric centre near the Mn maximum or near the outline's centre (a sphere's
            # section is a circle about the growth centre's projection; the Mn maximum is noisy in the
            # weakly zoned section of a late or off-centre grain): the better of the two.
            found = [gm.concentric_centre(maps.X, usable, start, g.radius_px, 0.3)
                     for start in (centre, g.centroid)]
            centre = min(found, key=lambda cs: cs[1])[0]
        dist = gm.distance_map(inside.shape, centre, maps.step_um)
        sh = gm.shells(dist, maps.X, usable, cfg.shell_width_um, maps.X_sd, cfg.min_shell_pixels)
        prof = gm.radial_profiles(centre, maps.X, usable, cfg.directions, 1.2 * g.radius_px, maps.step_um)
        out.append(GrainZoning(g, centre, how, sh, prof, int(usable.sum())))
    if not any(z.shells.radius_um.size >= 3 for z in out):
        raise InputError("no garnet grain has three usable shells (pure garnet pixels with totals in "
                         f"grains.total_wt={list(cfg.total_wt)}); lower grains.pure_fraction or "
                         "grains.shell_width_um.")
    return labels, out


def align_grains(zoning: list[GrainZoning], cfg: GrainsConfig, step_um: float) -> Joint:
    """The reference grain (the largest not touching the edge, else the largest), every grain's
    alignment to it, the merged profile and each grain's consistency with the others."""
    usable = [i for i, z in enumerate(zoning) if z.shells.radius_um.size >= 3]
    inner = [i for i in usable if not zoning[i].grain.edge]
    ref = (inner or usable)[0]
    L = zoning[ref].grain.radius_px * step_um
    ref_sh = zoning[ref].shells
    alignments = []
    for i, z in enumerate(zoning):
        if i == ref:
            sh = z.shells
            alignments.append(gm.Alignment(sh.radius_um.copy(), 0.0, 0.0, 0.0, 0.0, int(sh.X.size)))
        elif i in usable:
            alignments.append(gm.align(z.shells, z.grain.radius_px * step_um, ref_sh, L, cfg.model_sd))
        else:
            alignments.append(gm.Alignment(np.zeros(0), np.nan, np.nan, np.nan, np.nan, 0))
    sets = {i: (alignments[i].growth_um, zoning[i].shells.X, zoning[i].shells.sd) for i in usable}
    merged = gm.merge(list(sets.values()), cfg.shell_width_um)
    cons = []
    for i in range(len(zoning)):
        others = [sets[j] for j in usable if j != i]
        if i not in usable or not others:
            cons.append(gm.Consistency(np.nan, 0, np.nan))
            continue
        s, X, sd = sets[i]
        cons.append(gm.consistency(s, X, sd, gm.merge(others, cfg.shell_width_um), cfg.model_sd))
    return Joint(ref, alignments, cons, [i in usable for i in range(len(zoning))], merged, L)


def _ptpath_config(config: SectionConfig, profile: Path, extra: dict | None = None, qmap_bulk: Path | None = None):
    """The ptpath config of one inversion: the ``ptpath:`` block with ``profile``, the seed and
    ``extra``; with ``forward.kind: thermo`` and neither ``forward.bulk`` nor ``forward.bulk_from``,
    the reactive bulk is the section's own map (``qmap_bulk``, qmap's ``bulk.csv``; row
    ``forward.domain``, default the whole map)."""
    forward = dict(config.ptpath.get("forward") or {})
    if forward.get("kind") == "thermo" and forward.get("bulk") is None and not forward.get("bulk_from") \
            and qmap_bulk is not None:
        forward["bulk_from"] = str(Path(qmap_bulk).resolve())
        extra = {"forward": forward, **(extra or {})}
    return _sub_config(config.ptpath, PtpathConfig, "ptpath",
                       {"profile": str(profile), "seed": config.ptpath.get("seed", config.seed), **(extra or {})})


def check_blocks(config: SectionConfig, out: Path) -> None:
    """Validate the ``ptpath:`` and ``isocon:`` blocks before the map is quantified, so that a
    typo in them fails in a second, not after the qmap and grain stages: the ptpath block is
    loaded as for the joint inversion (files are read only when it runs); ``isocon.reference``
    and ptpath's ``forward.domain`` (thermo, the section's own bulk) must name a domain of the
    qmap block's ``summary`` when those names are known before the map is read (regions,
    polygons, named mask domains).

    Raises:
        ConfigError: naming the block and key.
    """
    _ptpath_config(config, out / "joint" / "profile.csv", qmap_bulk=out / "qmap" / "bulk.csv")
    summary = dict(config.qmap.get("summary") or {})
    known = [*dict(summary.get("regions") or {}), *dict(summary.get("polygons") or {}),
             *[str(v) for v in dict(summary.get("domain_names") or {}).values()]]
    unnamed = bool(summary.get("domains")) and not summary.get("domain_names")
    forward = dict(config.ptpath.get("forward") or {})
    domain = forward.get("domain")
    if forward.get("kind") == "thermo" and not forward.get("bulk_from") and forward.get("bulk") is None \
            and domain not in (None, "section") and not unnamed and domain not in known:
        raise ConfigError(f"section 'ptpath:' block: forward.domain = '{domain}' is not a domain of the qmap "
                          f"block's summary ({', '.join(['section', *known])}); 'section' is the whole map.")
    if config.isocon:
        ref = config.isocon.get("reference")
        refs = [ref] if isinstance(ref, str) else list(ref or [])
        if not refs:
            raise ConfigError("section 'isocon:' block: give isocon.reference, the protolith domain of the qmap "
                              "block's summary (regions, domains or polygons).")
        missing = [r for r in refs if r not in known]
        if missing and not unnamed:
            raise ConfigError(f"section 'isocon:' block: isocon.reference {', '.join(map(str, missing))} is not a "
                              f"domain of the qmap block's summary"
                              + (f" ({', '.join(known)})." if known else
                                 "; give the domains as qmap summary.regions, summary.domains or summary.polygons."))


def calibration_sd(results: qmap.QmapResults, phase: str) -> np.ndarray:
    """(4,) relative sd of the garnet's FeO, MgO, CaO, MnO wt% from the calibration: the
    garnet's alpha and the map-to-spot ratio beta (mean variance over beta tiles), in
    quadrature (zeros without a calibration or for imported constants without errors).

    This error is common to every pixel of the garnet: averaging pixels into shells and grains
    into the joint profile reduces only the random part of the pixels' errors, not this one, so
    :func:`invert` adds its effect on the path separately."""
    stage = results.calibration
    cal = stage.cal
    if cal is None or phase not in results.phases.names:
        return np.zeros(4)
    k = list(results.phases.names).index(phase)
    oxides = list(stage.oxides)
    rel = np.zeros(4)
    for i, o in enumerate(GARNET_OXIDES):
        if o not in oxides:
            continue
        j = oxides.index(o)
        a, a_se = float(cal.alpha[j, k]), float(cal.alpha_se[j, k])
        b, b_se = np.asarray(cal.beta)[:, j], np.asarray(cal.beta_se)[:, j]
        ra = a_se / a if a > 0 and np.isfinite(a_se) else 0.0
        rb = np.nanmean(np.where(b > 0, (b_se / np.where(b > 0, b, 1.0)) ** 2, 0.0))
        rel[i] = math.sqrt(ra**2 + float(rb if np.isfinite(rb) else 0.0))
    return rel


def _calibration_sensitivity(config: SectionConfig, folder: Path, merged: gm.Shells, rel: np.ndarray,
                             joint_summary: dict, base: dict, qmap_bulk: Path | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """(dP (4, n), dT (4, n)): the joint path's change for a one-sd calibration error of each
    garnet oxide, from ptpath on the shifted profile with the joint run's noise scales fixed
    and the same seed (the same ensemble draws: the difference is the sensitivity, not Monte
    Carlo noise); ``base`` is the joint run's path."""
    from jaxpetro.workflows import ptpath  # the heavy module only when an inversion runs

    hyper = {**dict(config.ptpath.get("hyperparameters", {})),
             "q_P": joint_summary["q_P"], "q_T": joint_summary["q_T"], "model_sd": joint_summary["model_sd"]}
    shifts = gm.calibration_shifts(merged.X, rel)
    n = merged.radius_um.size
    dP, dT = np.zeros((4, n)), np.zeros((4, n))
    for j, oxide in enumerate(GARNET_OXIDES):
        if rel[j] <= 0:
            continue
        sub = folder / oxide
        sub.mkdir(parents=True, exist_ok=True)
        write_profile(sub / "profile.csv", merged.radius_um, merged.X + shifts[j], merged.sd)
        cfg = _ptpath_config(config, sub / "profile.csv", {"hyperparameters": hyper, "output": {"plots": False}},
                             qmap_bulk)
        ptpath.run(cfg, sub / "ptpath", quiet=True)
        shifted = read_csv_table(sub / "ptpath" / "ptpath.csv")
        dP[j], dT[j] = shifted["P_kbar"] - base["P_kbar"], shifted["T_C"] - base["T_C"]
    return dP, dT


#: Columns of ``joint/ptpath.csv``: ptpath's path with the calibration error included.
JOINT_COLUMNS = ("radius_um", "P_kbar", "T_C", "P_sd", "T_sd", "P_lo", "P_hi", "T_lo", "T_hi",
                 "P_sd_calibration", "T_sd_calibration")


def with_calibration_error(path: dict, dP: np.ndarray, dT: np.ndarray) -> dict:
    """ptpath's path with the calibration's effect added: sd in quadrature
    (``sd² + Σ_j Δ_j²``, the oxides' errors independent) and each band's half-widths scaled by
    the same factor about the mean. Adds ``P_sd_calibration`` and ``T_sd_calibration``."""
    out = dict(path)
    for q, d in (("P", dP), ("T", dT)):
        mean, sd = np.asarray(path[f"{q}_kbar" if q == "P" else f"{q}_C"]), np.asarray(path[f"{q}_sd"])
        sd_cal = np.sqrt(np.sum(np.asarray(d) ** 2, axis=0))
        total = np.sqrt(sd**2 + sd_cal**2)
        scale = np.where(sd > 0, total / np.where(sd > 0, sd, 1.0), 1.0)
        out[f"{q}_sd"] = total
        out[f"{q}_lo"] = mean - (mean - np.asarray(path[f"{q}_lo"])) * scale
        out[f"{q}_hi"] = mean + (np.asarray(path[f"{q}_hi"]) - mean) * scale
        out[f"{q}_sd_calibration"] = sd_cal
    return out


def invert(config: SectionConfig, out: Path, zoning: list[GrainZoning], joint: Joint,
           stages: Stages | None = None, results: qmap.QmapResults | None = None,
           qmap_bulk: Path | None = None) -> dict[str, Any]:
    """``jaxpetro ptpath`` on the joint profile (``joint/``) and, with ``grains.per_grain``, on
    every usable grain's aligned shells (``grains/<id>/ptpath``). Returns their summaries; a grain
    whose own inversion fails (e.g. its path leaves the table) is warned about and recorded.

    With ``grains.calibration_error`` and the qmap ``results``, ``joint/ptpath.csv`` holds the
    joint path with the calibration's error (:func:`calibration_sd`) added to its sd and bands
    (:func:`with_calibration_error`; the shifted runs in ``joint/calibration/<oxide>/``);
    ``joint/ptpath/`` keeps ptpath's own output, whose bands hold the shells' random errors only.
    Per-grain paths do not include it (their comparison with each other does not need it).
    ``qmap_bulk``: the section's qmap ``bulk.csv``, the reactive bulk of ``forward.kind: thermo``
    when the ptpath block gives none (:func:`_ptpath_config`)."""
    folder = out / "joint"
    folder.mkdir(exist_ok=True)
    m = joint.merged
    write_profile(folder / "profile.csv", m.radius_um, m.X, m.sd)
    from jaxpetro.workflows import ptpath  # the heavy module only when an inversion runs

    joint_run = ptpath.run_stages(_ptpath_config(config, folder / "profile.csv", qmap_bulk=qmap_bulk),
                                  folder / "ptpath", quiet=True)
    result = {"joint": joint_run.summary}
    path = read_csv_table(folder / "ptpath" / "ptpath.csv")
    rel = calibration_sd(results, config.grains.phase) if (config.grains.calibration_error and results is not None) \
        else np.zeros(4)
    if np.any(rel > 0):
        dP, dT = _calibration_sensitivity(config, folder / "calibration", m, rel, result["joint"], path, qmap_bulk)
        path = with_calibration_error(path, dP, dT)
        result["calibration"] = {"rel_sd": dict(zip(GARNET_OXIDES, rel.tolist())),
                                 "P_sd_max_kbar": float(np.max(path["P_sd_calibration"])),
                                 "T_sd_max_C": float(np.max(path["T_sd_calibration"]))}
    else:
        path = {**path, "P_sd_calibration": np.zeros_like(path["P_kbar"]),
                "T_sd_calibration": np.zeros_like(path["T_C"])}
    write_csv(folder / "ptpath.csv", list(JOINT_COLUMNS), np.column_stack([path[k] for k in JOINT_COLUMNS]).tolist())
    if config.grains.per_grain:
        result.update(_invert_grains(config, out, zoning, joint, qmap_bulk, joint_run))
    return result


def joint_bulk_at(joint_run, growth_um: float, before: bool = False) -> dict[str, float] | None:
    """The joint path's reactive bulk at the growth coordinate ``growth_um`` (µm), component moles
    per 100 g of the starting rock (:data:`jaxpetro.thermo.bulk.COMPONENTS` present in the state),
    or None when the joint run carries no bulk (``forward.kind`` table or linear).

    The bulk is the mean over the smoothed ensemble's members of the reactive bulk ``b``
    (:class:`jaxpetro.models.ptpath_model.ThermoForward`: the rock's bulk less every shell grown
    before, in equilibrium with this step's garnet), or with ``before`` of ``b'`` (the bulk before
    the last shell left it: the one a member that steps back resorbs to), in moles, linearly
    interpolated between the joint steps on the growth coordinate (held constant beyond the first
    and last step). A present component is kept at least 1e-10 of the total, so an exhausted one
    (e.g. MnO) stays in the system."""
    names = list(joint_run.problem.state_names)
    prefix = "ln_bulk_before_" if before else "ln_bulk_"
    slots = [(i, n[len(prefix):]) for i, n in enumerate(names)
             if n.startswith(prefix) and (before or not n.startswith("ln_bulk_before_"))]
    if not slots:
        return None
    radius = np.asarray(joint_run.problem.radius_um, float)
    moles = np.exp(np.asarray(joint_run.inversion.smoothed)[:, :, [i for i, _ in slots]]).mean(axis=1)  # (n, m)
    b = np.array([np.interp(float(growth_um), radius, moles[:, j]) for j in range(len(slots))])
    b = np.maximum(b, 1e-10 * b.sum())
    return {c: float(v) for (_, c), v in zip(slots, b)}


def _invert_grains(config: SectionConfig, out: Path, zoning: list[GrainZoning], joint: Joint,
                   qmap_bulk: Path | None = None, joint_run=None) -> dict[str, Any]:
    """Every used grain alone on its aligned shells (``grains/<id>/ptpath``), all grains' inversions
    as one compiled call vmapped over the grains (:func:`jaxpetro.workflows.ptpath_batch.run_batch`:
    each grain its own noise scales and ensemble, the same numbers as one ptpath run per grain to
    rounding). A grain whose inversion fails is warned about and recorded (the joint path stands).

    With ``forward.kind: thermo`` and fractionation, a grain whose first shell lies beyond the joint
    path's first step on the growth coordinate (a late or off-centre grain) starts from the joint
    path's reactive bulk there (:func:`joint_bulk_at` of ``joint_run``, the joint
    :class:`~jaxpetro.workflows.ptpath.PtpathRun`; ``b`` as the grain's ``forward.bulk``, ``b'``,
    the bulk before the joint path's last shell, as its first step's resorption fallback via
    :func:`jaxpetro.workflows.ptpath_batch.with_start`), not from the rock's: the garnet grown
    before (other grains', or this sphere's outside the cut) had already depleted it. With ``b'``
    equal to ``b`` a member whose P-T lies below the last shell's grows no garnet from ``b`` (it
    sits on the garnet-out boundary there) and fails: 6 % of 64 members did in
    ``tests/test_section_thermo.py``. This is a choice: it
    conditions the grain's own path on the joint one (the joint smoothed bulk has seen every
    grain's shells), so the grain's path is not independent of the joint path at its core. Its
    summary records ``start_bulk`` (growth coordinate, oxide wt%)."""
    from jaxpetro.workflows import ptpath_batch  # the heavy module only when an inversion runs

    from jaxpetro.thermo.bulk import MOLAR_MASS

    ids, configs, dirs, starts, outcome, start_bulk = [], [], [], [], {}, {}
    forward = dict(config.ptpath.get("forward") or {})
    fractionating = forward.get("kind") == "thermo" and float(forward.get("fractionation_efficiency", 1.0)) > 0
    for z, used, a in zip(zoning, joint.used, joint.alignments):
        if not used:
            continue
        g_dir = out / "grains" / str(z.grain.id)
        extra = None
        g0 = float(np.asarray(a.growth_um)[0]) if len(a.growth_um) else 0.0
        r0 = float(np.asarray(joint.merged.radius_um)[0])
        b = joint_bulk_at(joint_run, g0) if (fractionating and joint_run is not None and g0 > r0) else None
        start = None
        if b is not None:
            b1 = joint_bulk_at(joint_run, g0, before=True)
            wt, wt1 = ({c: v * MOLAR_MASS[c] for c, v in moles.items()} for moles in (b, b1))
            fw = {k: v for k, v in forward.items() if k not in ("bulk_from", "domain", "bulk_extra_wt")}
            extra = {"forward": {**fw, "bulk": {"oxides_wt": wt}}}
            start = {f"ln_bulk_before_{c}": float(np.log(v)) for c, v in b1.items()}
            start_bulk[z.grain.id] = {"growth_um": g0, "oxides_wt": wt, "before_oxides_wt": wt1}
            if a.core_offset_um > config.grains.shell_width_um:
                print(f"jaxpetro: note: grain {z.grain.id}'s section core lies {a.core_offset_um:.0f} µm along the "
                      f"growth coordinate (a late or off-centre grain): inverted alone with forward.kind thermo and "
                      f"fractionation it starts from the joint path's reactive bulk at {g0:.0f} µm (the rock's bulk "
                      f"depleted by the garnet grown before), so its own path is conditioned on the joint one there.",
                      file=sys.stderr)
        try:
            configs.append(_ptpath_config(config, g_dir / "shells_profile.csv", extra=extra, qmap_bulk=qmap_bulk))
        except JaxpetroError as err:
            outcome[z.grain.id] = err
            continue
        ids.append(z.grain.id)
        dirs.append(g_dir / "ptpath")
        starts.append(start)
    outcome.update(zip(ids, ptpath_batch.run_batch(configs, dirs, quiet=True, starts=starts)))
    result = {}
    for gid in [z.grain.id for z, used in zip(zoning, joint.used) if used]:
        res = outcome[gid]
        if isinstance(res, JaxpetroError):  # one grain's failure does not stop the section
            result[f"grain_{gid}"] = {"error": str(res)}
            print(f"jaxpetro: warning: grain {gid} alone could not be inverted: {res}", file=sys.stderr)
        else:
            result[f"grain_{gid}"] = res if gid not in start_bulk else {**res, "start_bulk": start_bulk[gid]}
    return result


def _write_grain_files(out: Path, zoning: list[GrainZoning], joint: Joint) -> None:
    for z, a in zip(zoning, joint.alignments):
        g_dir = out / "grains" / str(z.grain.id)
        g_dir.mkdir(parents=True, exist_ok=True)
        sh = z.shells
        em = list(GARNET_END_MEMBERS)
        header = ["growth_um", "radius_um", *em, *[f"{e}_sd" for e in em], *[f"{e}_spread" for e in em], "n_pixels"]
        growth = a.growth_um if a.growth_um.size == sh.radius_um.size else np.full(sh.radius_um.size, np.nan)
        write_csv(g_dir / "shells.csv", header,
                  [[growth[i], sh.radius_um[i], *sh.X[i], *sh.sd[i], *sh.spread[i], int(sh.n_pixels[i])]
                   for i in range(sh.radius_um.size)])
        if a.growth_um.size == sh.radius_um.size and sh.radius_um.size:
            write_profile(g_dir / "shells_profile.csv", a.growth_um, sh.X, sh.sd)
        angles, radius, X = z.profiles
        rows = [[ang, r, *X[d, i]] for d, ang in enumerate(angles) for i, r in enumerate(radius)
                if np.all(np.isfinite(X[d, i]))]
        write_csv(g_dir / "profiles.csv", ["direction_deg", "radius_um", *em], rows)


def analyse(config: SectionConfig, results: qmap.QmapResults, out: Path, stages: Stages,
            mask: np.ndarray | None = None, truth=None, qmap_bulk: Path | None = None) -> dict:
    """Everything after quantification, into ``out`` (used by :func:`run` and by the demo).

    ``truth``: optional function of the growth coordinate (µm) and the growth length (µm)
    returning the true (P kbar, T °C), drawn in the figure (synthetic sections). ``qmap_bulk``: the
    qmap ``bulk.csv`` of the map (the reactive bulk of a thermo forward model without one)."""
    cfg = config.grains
    with stages.stage("grains"):
        maps = garnet_maps(results, cfg)
        labels, zoning = read_grains(maps, cfg, mask)
        for z in zoning:
            if z.grain.edge:
                print(f"jaxpetro: warning: grain {z.grain.id} touches the map edge; its outer shells are partial "
                      f"(set grains.use_edge_grains: false to leave it out).", file=sys.stderr)
            if z.centre_method != "mn" and cfg.centre == "mn":
                print(f"jaxpetro: warning: grain {z.grain.id}: no Mn maximum inside the grain; its geometric "
                      f"centre is used.", file=sys.stderr)
    with stages.stage("align"):
        joint = align_grains(zoning, cfg, maps.step_um)
        _write_grain_files(out, zoning, joint)
    with stages.stage("invert", "inverting (ptpath)"):
        paths = invert(config, out, zoning, joint, results=results, qmap_bulk=qmap_bulk)
    with stages.stage("write", "writing"):
        summary = write_outputs(config, out, maps, labels, zoning, joint, paths, results, truth)
    return summary


@float64
def run(config: SectionConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the workflow; returns a summary (grains, joint path extent, consistency, timings)."""
    check_blocks(config, Path(out_dir))
    out = prepare_out_dir(out_dir)
    stages = Stages(5 + bool(config.isocon), "section", quiet)
    with stages.stage("qmap", "quantifying (qmap)"):
        _, results = quantify(config, out / "qmap")
    mask = None
    if config.grains.mask is not None:
        mask = read_mask_labels(config.grains.mask, results.phases.memberships.shape[:2])
    summary = analyse(config, results, out, stages, mask, qmap_bulk=out / "qmap" / "bulk.csv")
    if config.isocon:
        with stages.stage("isocon", "mass transfer between domains (isocon)"):
            summary["isocon"] = domain_isocon(config, out / "qmap" / "bulk.csv", out / "isocon")
    stages.close()
    summary["timings"] = stages.timings
    if not quiet:
        _report(summary)
    return summary


def domain_isocon(config: SectionConfig, bulk_csv: Path, out: Path) -> dict:
    """``jaxpetro isocon`` between the map's domain bulks (the ``isocon:`` block).

    The bulk of every region, domain and polygon of the qmap block (``bulk.csv``; the whole
    map's row ``section`` left out) becomes one sample of a whole-rock table in wt% oxides
    (``isocon/domains.csv``), the domain named by ``isocon.reference`` the protolith, and the
    isocon workflow runs on it with the block's other keys. Map bulks carry no analytical sd:
    ``relative_error`` (default 5 %) stands for their error (modal sampling of a finite map
    dominates it; Lanari & Engi 2017).

    Raises:
        InputError: fewer than two domains, or a reference that is not one of them.
    """
    from jaxpetro.config.isocon import IsoconConfig
    from jaxpetro.workflows import isocon

    table = read_csv_table(bulk_csv)
    names = [str(n) for n in table["region"]]
    keep = [i for i, n in enumerate(names) if n != "section"]
    domains = [names[i] for i in keep]
    if len(domains) < 2:
        raise InputError("the isocon: block needs at least two domains of the map (a protolith and an altered one): "
                         "give them in the qmap block as summary.regions, summary.domains or summary.polygons.")
    ref = config.isocon.get("reference")
    refs = [ref] if isinstance(ref, str) else list(ref or [])
    missing = [r for r in refs if r not in domains]
    if not refs or missing:
        raise InputError(f"isocon.reference must name the protolith domain(s) among {', '.join(domains)}"
                         + (f"; not found: {', '.join(map(str, missing))}." if missing else "."))
    oxides = [k for k in table if k not in ("region", "total")]
    out.mkdir(parents=True, exist_ok=True)
    data = out / "domains.csv"
    write_csv(data, ["sample", *oxides], [[names[i], *(float(table[o][i]) for o in oxides)] for i in keep])
    cfg = _sub_config(config.isocon, IsoconConfig, "isocon",
                      {"data": str(data), "units": {"default": "wt%"}, "seed": config.isocon.get("seed", config.seed)})
    return isocon.run(cfg, out / "result", quiet=True)


def read_mask_labels(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A grain mask image (``grains.mask``) as integer labels: one value or colour per grain,
    0 / black background (:func:`jaxpetro.io.masks.read_mask_image` formats).

    Raises:
        InputError: missing or unreadable file, or a size other than the map's.
    """
    img = read_mask_image(path, "grains.mask")
    if img.ndim == 3:  # colours -> one integer per colour
        flat = img[..., :3].reshape(-1, 3).astype(np.int64)
        codes = flat[:, 0] * 65536 + flat[:, 1] * 256 + flat[:, 2]
        img = codes.reshape(img.shape[:2])
    if img.shape != tuple(shape):
        raise InputError(f"grains.mask: '{path}' is {img.shape[0]} x {img.shape[1]} pixels but the map is "
                         f"{shape[0]} x {shape[1]}; give a mask of the map's size.")
    return img


def write_outputs(config: SectionConfig, out: Path, maps: GarnetMaps, labels: np.ndarray,
                  zoning: list[GrainZoning], joint: Joint, paths: dict, results: qmap.QmapResults,
                  truth=None) -> dict:
    """section.csv, section.h5, report.md and section_report.png; returns the summary."""
    rows = []
    for z, a, c, used in zip(zoning, joint.alignments, joint.consistency, joint.used):
        g = z.grain
        chi = c.chi2 / c.dof if c.dof else np.nan
        rows.append([g.id, z.centre[1], z.centre[0], g.radius_px * maps.step_um, g.n_pixels, g.edge,
                     a.core_offset_um, a.cut_offset_um, a.start_um, z.centre_method, int(z.shells.radius_um.size),
                     chi, c.p_value, used])
    write_csv(out / "section.csv", list(SECTION_COLUMNS), rows)
    joint_path = read_csv_table(out / "joint" / "ptpath.csv")
    h5 = {"labels": labels.astype(np.int32), "garnet_fraction": maps.fraction.astype(np.float32),
          "X": maps.X.astype(np.float32), "joint": {"growth_um": joint.merged.radius_um, "X": joint.merged.X,
                                                    "X_sd": joint.merged.sd, "spread": joint.merged.spread,
                                                    "n_shells": joint.merged.n_pixels}}
    for z, a in zip(zoning, joint.alignments):
        h5[f"grains/{z.grain.id}"] = {"radius_um": z.shells.radius_um, "growth_um": a.growth_um,
                                      "X": z.shells.X, "X_sd": z.shells.sd, "spread": z.shells.spread,
                                      "n_pixels": z.shells.n_pixels}
    units = {"labels": "1", "garnet_fraction": "1", "X": "1", "joint/growth_um": "um", "joint/X": "1",
             "joint/X_sd": "1", "joint/spread": "1", "joint/n_shells": "1", "grains/*/radius_um": "um",
             "grains/*/growth_um": "um", "grains/*/X": "1", "grains/*/X_sd": "1", "grains/*/spread": "1",
             "grains/*/n_pixels": "1"}
    write_hdf5(out / "section.h5", h5, run_attrs(config_to_yaml(config), config.seed), units=units)
    summary = {"n_grains": len(zoning), "n_used": int(sum(joint.used)), "reference": zoning[joint.reference].grain.id,
               "growth_length_um": joint.length_um,
               "joint": {k: joint_path[k] for k in ("radius_um", "P_kbar", "T_C", "P_lo", "P_hi", "T_lo", "T_hi")},
               "grains": [dict(zip(SECTION_COLUMNS, r)) for r in rows]}
    _report_md(out / "report.md", summary, paths)
    if config.output.plots:
        from jaxpetro.io.section_plots import section_report_figure

        per_grain = {}
        for z in zoning:
            p = out / "grains" / str(z.grain.id) / "ptpath" / "ptpath.csv"
            if p.exists():
                per_grain[z.grain.id] = read_csv_table(p)
        section_report_figure(out / "section_report.png", results.phases.phase_map, list(results.phases.names),
                              labels, [(z.grain.id, z.centre) for z in zoning],
                              [(z.grain.id, a.growth_um, z.shells.X) for z, a in zip(zoning, joint.alignments)],
                              joint_path, per_grain, maps.step_um, config.output.dpi,
                              None if truth is None else truth(joint_path["radius_um"], joint.length_um),
                              _isopleths(config, out))
    return summary


def _isopleths(config: SectionConfig, out: Path):
    """(P nodes, T nodes, fractions) of the ptpath forward table for the figure, or None (the
    linear model, or a table that cannot be read — the inversion already said why)."""
    from jaxpetro.io.perplex import read_table

    try:
        forward = _ptpath_config(config, out / "joint" / "profile.csv").forward
        if forward.kind != "table" or not forward.path:
            return None
        table = read_table(forward.path)
    except JaxpetroError:
        return None
    return table.P_kbar, table.T_C, table.values


def _report_md(path: Path, summary: dict, paths: dict) -> None:
    j = summary["joint"]
    k = int(np.argmax(j["P_kbar"]))
    lines = ["# jaxpetro section", "",
             f"{summary['n_grains']} garnet grains found, {summary['n_used']} used; reference grain "
             f"{summary['reference']} (growth length {summary['growth_length_um']:.0f} µm).", "",
             f"Joint path: core {j['P_kbar'][0]:.2f} kbar / {j['T_C'][0]:.0f} °C, rim {j['P_kbar'][-1]:.2f} kbar / "
             f"{j['T_C'][-1]:.0f} °C, peak P {j['P_kbar'][k]:.2f} kbar [{j['P_lo'][k]:.2f}, {j['P_hi'][k]:.2f}] at "
             f"{j['T_C'][k]:.0f} °C.", "",
             "| grain | radius (µm) | pixels | edge | core offset (µm) | cut offset (µm) | start (µm) | "
             "χ²/dof vs others | p | used |", "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for g in summary["grains"]:
        lines.append(f"| {g['id']} | {g['radius_um']:.0f} | {g['n_pixels']} | {g['edge']} | {g['core_offset_um']:.1f} "
                     f"| {g['cut_offset_um']:.1f} | {g['start_um']:.1f} | {g['chi2_per_dof']:.2f} | "
                     f"{g['p_value']:.2g} | {g['used']} |")
    lines += ["", "Files: section.csv, grains/<id>/{shells,profiles}.csv, grains/<id>/ptpath/, joint/profile.csv, "
              "joint/ptpath.csv, section.h5, section_report.png; the quantified map in qmap/."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _report(summary: dict) -> None:
    j = summary["joint"]
    k = int(np.argmax(j["P_kbar"]))
    lines = [f"{summary['n_grains']} garnet grains, {summary['n_used']} used (reference grain {summary['reference']})",
             f"joint path: core {j['P_kbar'][0]:.2f} kbar {j['T_C'][0]:.0f} °C -> rim {j['P_kbar'][-1]:.2f} kbar "
             f"{j['T_C'][-1]:.0f} °C; peak P {j['P_kbar'][k]:.2f} kbar [{j['P_lo'][k]:.2f}, {j['P_hi'][k]:.2f}]"]
    for g in summary["grains"]:
        lines.append(f"  grain {g['id']}: r {g['radius_um']:.0f} µm, core at {g['core_offset_um']:.0f} µm of the "
                     f"growth path, χ²/dof {g['chi2_per_dof']:.2f}" + (" (edge)" if g["edge"] else ""))
    print("\n".join(lines), file=sys.stderr)

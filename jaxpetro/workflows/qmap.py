"""``jaxpetro qmap``: EPMA X-ray maps + spot analyses -> phases and wt% maps.

The method is that of qntmap (Yasumoto et al. 2018, Am. Mineral. 103:1690); the equations
are in docs/science.md, the JEOL input in docs/jeol.md. Stages (timed; the times are
returned in the summary and printed unless ``--quiet``), each a function with a typed result:

1. :func:`read_input`: a JEOL project (:mod:`jaxpetro.io.jeol`) or the generic map stack +
   spot CSV (:mod:`jaxpetro.io.generic`); stage positions -> pixels with the configured
   orientation;
2. :func:`correct_dead_time` of the X-ray channels (electron channels exempt);
3. :func:`anchor_spots`: sub-phase labels merged, phases restricted, outlier spots
   flagged and left out;
4. :func:`cluster`: Poisson (or Gaussian) EM anchored on the spot pixels; the share of
   spots landing on a pixel of their own phase is reported (orientation check);
5. :func:`mix`: per-pixel phase fractions on the simplex (Poisson linear mixing model);
6. :func:`calibration` (alpha, beta, gamma) from the spots, or read from ``parameters.csv``;
7. :func:`quantification`: wt%, standard error and detection limit per pixel and oxide;
8. :func:`structural`: structural formulae of every pixel of each phase with a mineral kind
   (:mod:`jaxpetro.models.structural`; docs/structural.md);
9. :func:`write_outputs`: summaries and every file, from the stage results.

Outputs (names are a contract other tools read): ``qmap.h5`` (``phases``, ``membership``,
``wt/<OXIDE>``, ``wt_se/<OXIDE>``, ``lod/<OXIDE>``, ``total``, ``fractions``,
``parameters/``, ``summary/modal``, ``summary/composition``, ``structural/<Phase>/...``, ...),
``summary.csv``, ``parameters.csv``, ``spots.csv``, ``bulk.csv`` (section, rectangles, mask
domains, polygons) and the same bulks as ``bulk_perplex.txt``, ``bulk_theriak.txt``,
``bulk_magemin.dat`` (:mod:`jaxpetro.io.bulk_forms`), ``structural.csv``, one ``<OXIDE>.csv``
matrix per oxide, ``profiles/``, PNG maps (``structural_<Phase>.png``).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxpetro._precision import float64
from jaxpetro.chemistry import GARNET_END_MEMBERS, OXIDES, is_electron, oxide_of
from jaxpetro.config import QmapConfig, config_to_yaml
from jaxpetro.config.qmap import QmapInputConfig, QuantifyConfig
from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io.bulk_forms import write_bulk_forms
from jaxpetro.io.generic import MapStack, SpotSet, read_map_stack, read_spot_set
from jaxpetro.io.masks import read_mask_image
from jaxpetro.io.parameters import read_parameters, write_parameters
from jaxpetro.io.plots import above_limit, maps_figure, phase_map_figure, phase_scaled_map_figure, scalar_map_figure
from jaxpetro.io.results import prepare_out_dir, run_attrs, write_csv, write_hdf5, write_matrix
from jaxpetro.kernels.unmixing import UnmixOptions
from jaxpetro.models import parallel
from jaxpetro.models import spots as spot_model
from jaxpetro.models import summaries
from jaxpetro.models.clustering import ClusteringOptions, ClusterResult, cluster_map
from jaxpetro.models.mixing import Mixing, fit_mixing, interior_mask
from jaxpetro.models.oxides import GARNET_OXIDES, garnet_end_members, garnet_end_members_with_sd
from jaxpetro.models.structural import (
    MINERALS,
    StructuralFormula,
    analysed_only,
    resolve_minerals,
    split_iron,
    structural_formula_blocks,
)
from jaxpetro.models.xray import (
    Calibration,
    QuantifyOptions,
    Quantified,
    calibrate,
    calibrate_on_map_rates,
    dead_time_factor,
    exposure_s_uA,
    imported_calibration,
    quantify,
    tile_index,
)
from jaxpetro.workflows.stages import Stages

__all__ = [
    "Anchoring",
    "CalibrationStage",
    "Corrected",
    "Phases",
    "PhaseFormula",
    "QmapInput",
    "QmapResults",
    "Structural",
    "anchor_spots",
    "analyse",
    "calibration",
    "cluster",
    "correct_dead_time",
    "UNITS",
    "mix",
    "pixel_mask",
    "quantification",
    "read_input",
    "read_domains",
    "read_mask",
    "polygon_mask",
    "run",
    "structural",
    "write_outputs",
]


def _warn(message: str) -> None:
    print(f"jaxpetro: warning: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------- stage results


class QmapInput(NamedTuple):
    """Stage 1: the maps and the spots (with pixels), or no spots."""

    stack: MapStack
    spots: SpotSet | None


class Corrected(NamedTuple):
    """Stage 2: dead-time corrected counts (rows, cols, channels) float32, the exposure of
    each channel's pixels (s·µA), which channels are X-ray and electron signals, and the
    pixels analysed (``valid``, (rows, cols) bool; excluded pixels hold 0 counts)."""

    counts: np.ndarray
    exposure: np.ndarray
    xray: list[int]
    electron: list[int]
    valid: np.ndarray


class Anchoring(NamedTuple):
    """Stage 3: how the spots anchor the clustering (all empty without spots).

    Attributes:
        labels: component of each spot (None without spots).
        outlier, deviance: (n,) outlier flags and own-phase deviance of each spot.
        anchor_index: (n,) component each spot anchors (-1: none).
        anchors: (rows, cols) anchored component per pixel (-1 elsewhere), or None.
        anchored_names: components with spots.
        extra: components fitted beyond them.
    """

    labels: spot_model.SpotLabels | None
    outlier: np.ndarray
    deviance: np.ndarray
    anchor_index: np.ndarray
    anchors: np.ndarray | None
    anchored_names: tuple[str, ...]
    extra: int


class Phases(NamedTuple):
    """Stage 4: the clustered map.

    Attributes:
        result: the clustering (fitted mixture, history...).
        names: component names (unanchored extra components named after the requested phases).
        memberships: (rows, cols, K) float32; phase_map: (rows, cols) most likely component.
        agreement: (spots on a pixel of their own phase, spots tested), None without spots.
    """

    result: ClusterResult
    names: tuple[str, ...]
    memberships: np.ndarray
    phase_map: np.ndarray
    agreement: tuple[int, int] | None


class CalibrationStage(NamedTuple):
    """Stage 6: what is quantified and with which constants (``cal`` None: phases only).

    ``beta_use`` (n, J) bool: the spots that entered each element's beta (None without spot
    intensities or with imported parameters); ``beta_note``: per spot, why it was left out
    of some element's beta ("" when it was not)."""

    elements: tuple[str, ...]
    oxides: tuple[str, ...]
    channels: list[int]
    cal: Calibration | None
    quantified: bool
    beta_use: np.ndarray | None = None
    beta_note: tuple[str, ...] | None = None


class QmapResults(NamedTuple):
    """Every stage's result.

    Attributes:
        mixing: None when ``mixing.enabled`` is false; fractions: its fractions as
            (rows, cols, K) float32, or None.
        weights: (rows, cols, K) the phase weights of the wt% formula (memberships or
            mixing fractions, by ``quantify.weights``).
        quant: (rows, cols, J) wt%, SE and LOD, None without a calibration.
    """

    input: QmapInput
    corrected: Corrected
    anchoring: Anchoring
    phases: Phases
    mixing: Mixing | None
    fractions: np.ndarray | None
    weights: np.ndarray
    calibration: CalibrationStage
    quant: Quantified | None


class PhaseFormula(NamedTuple):
    """The structural formula of one phase's pixels.

    Attributes:
        phase: the phase name; mineral: its mineral kind.
        pixels: (rows, cols) bool, the pixels with a formula (weight in the phase at least
            ``structural.min_weight``, analysed, every oxide finite).
        formula: the formula of those pixels, numpy arrays (n_pixels,) in row-major pixel
            order (cations and sites of unanalysed elements left out).
        of_mean: the formula of the pixels' mean composition (0-d arrays).
        panels: (group, name) of each quantity drawn in ``structural_<Phase>.png``.
    """

    phase: str
    mineral: str
    pixels: np.ndarray
    formula: StructuralFormula
    of_mean: StructuralFormula
    panels: tuple[tuple[str, str], ...]

    @property
    def n_pixels(self) -> int:
        return int(self.pixels.sum())

    def maps(self, group: str) -> dict[str, np.ndarray]:
        """One group (``cations``, ``sites``, ``end_members``, ``ratios``) as (rows, cols)
        float32 maps, NaN outside the phase's pixels."""
        return {name: self.map(group, name) for name in getattr(self.formula, group)}

    def map(self, group: str, name: str) -> np.ndarray:
        """One quantity as a (rows, cols) float32 map, NaN outside the phase's pixels."""
        image = np.full(self.pixels.shape, np.nan, np.float32)
        image[self.pixels] = getattr(self.formula, group)[name]
        return image


class Structural(NamedTuple):
    """Stage 8: structural formulae per phase (:func:`structural`).

    Attributes:
        phases: phase -> :class:`PhaseFormula`, for the phases with a mineral kind and pixels.
        skipped: phases without a mineral kind (no formula, no message).
        empty: phases with a kind but no pixel of weight >= ``structural.min_weight``.
        oxides: the oxides the formulae are computed from (volatiles and unknown columns left out).
    """

    phases: dict[str, PhaseFormula]
    skipped: tuple[str, ...]
    empty: tuple[str, ...]
    oxides: tuple[str, ...]


# ----------------------------------------------------------------------------- the workflow


@float64
def run(config: QmapConfig, out_dir: Path, quiet: bool = False) -> dict:
    """Run the workflow; returns a summary dict (modes, compositions, timings, checks)."""
    out = prepare_out_dir(out_dir)
    stages = Stages(9, "qmap", quiet)
    results = _without_counts(analyse(config, stages))
    with stages.stage("structural"):
        formulae = structural(config, results)
    with stages.stage("writing"):
        summary = write_outputs(config, out, results, formulae)
    stages.close()
    status = results.phases.result.status
    if not bool(status.converged):
        _warn(f"EM stopped after {int(status.iterations)} iterations without reaching clustering.tol="
              f"{config.clustering.tol:g}; raise clustering.max_iter.")
    if not results.calibration.quantified and results.input.spots is not None:
        _warn("the spot table has no wt% columns for mapped elements: phases only, no wt% maps.")
    summary.update(timings=stages.timings)
    if not quiet:
        _report(summary)
    return summary


def _without_counts(results: QmapResults) -> QmapResults:
    """The results with the map counts replaced by an empty (0, 0, channels) array: the structural
    formulae and the outputs do not use them, and :func:`run` lets them go before those stages
    (0.96 GB at 4000 x 4000 x 15 float32)."""
    none = np.empty((0, 0, results.corrected.counts.shape[-1]), np.float32)
    stack = dataclasses.replace(results.input.stack, counts=none)
    return results._replace(input=results.input._replace(stack=stack), corrected=results.corrected._replace(counts=none))


def analyse(config: QmapConfig, stages: Stages) -> QmapResults:
    """Stages 1-7 (everything but writing), each timed by ``stages``."""
    with stages.stage("read"):
        data = read_input(config.input)
    with stages.stage("dead_time"):
        valid = pixel_mask(data.stack, config.input)
        corrected = correct_dead_time(data.stack, config.input.dead_time_ns, valid)
    with stages.stage("spots"):
        anchoring = anchor_spots(data.spots, corrected, config)
    with stages.stage("clustering"):
        phases = cluster(corrected, anchoring, data.spots, config)
    with stages.stage("mixing"):
        mixing = mix(corrected, phases, config) if config.mixing.enabled else None
        fractions = None if mixing is None else mixing.fractions.reshape(phases.memberships.shape)
    with stages.stage("calibration"):
        cal = calibration(data.spots, data.stack.channels, corrected, anchoring, phases, config, fractions)
    with stages.stage("quantification"):
        weights = fractions if config.quantify.weights == "fractions" else phases.memberships
        quant = quantification(corrected, cal, weights, config.quantify, _devices(config))
    return QmapResults(data, corrected, anchoring, phases, mixing, fractions, weights, cal, quant)


# ----------------------------------------------------------------------------- stages


def _devices(config: QmapConfig) -> tuple:
    """The local devices of ``parallel.devices`` (one on a plain CPU: no sharding)."""
    return parallel.pixel_devices(config.parallel.devices)


def read_input(cfg: QmapInputConfig) -> QmapInput:
    """Maps and spots (with pixels) of the ``input`` config section."""
    if cfg.format == "jeol":
        from jaxpetro.io.jeol import JeolIntensityWarning, detect_dialect, read_jeol, spot_pixels

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", JeolIntensityWarning)
            stack, spots = read_jeol(
                cfg.map_dir, cfg.qnt_dir, dialect=cfg.dialect, map_conditions=cfg.map_conditions,
                spot_conditions=cfg.spot_conditions, phase_list=cfg.phase_list, dead_time_ns=cfg.dead_time_ns,
                map_files=cfg.map_files, byte_order=cfg.byte_order, map_dtype=cfg.map_dtype,
            )
        for w in caught:  # the reader's warnings in the workflow's own one-line form
            if issubclass(w.category, JeolIntensityWarning):
                _warn(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        dialect = cfg.dialect if cfg.dialect != "auto" else detect_dialect(cfg.map_dir, cfg.map_conditions,
                                                                             cfg.map_files)
        row, col = spot_pixels(spots, stack, row_axis=cfg.row_axis, mirror=cfg.mirror, dialect=dialect)
        spots = SpotSet(**{**spots.__dict__, "row": row, "col": col})
        return QmapInput(stack, spots)
    if cfg.format in ("cameca", "h5oina", "bcf"):
        return QmapInput(*_read_instrument(cfg))
    stack = read_map_stack(cfg.maps)
    spots = read_spot_set(cfg.spots, stack.counts.shape[:2]) if cfg.spots is not None else None
    return QmapInput(stack, spots)


def _read_instrument(cfg: QmapInputConfig):
    """(stack, spots) of the Cameca, Oxford and Bruker readers (docs/formats.md); their warnings
    in the workflow's one-line form."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if cfg.format == "cameca":
            from jaxpetro.io.cameca import read_cameca

            out = read_cameca(cfg.maps, cfg.spots, dwell_ms=cfg.dwell_ms, current_A=cfg.current_A,
                              mirror="none" if cfg.mirror == "auto" else cfg.mirror)
        elif cfg.format == "h5oina":
            from jaxpetro.io.oxford import read_h5oina

            out = read_h5oina(cfg.maps, cfg.spots, current_A=cfg.current_A, dwell_ms=cfg.dwell_ms, slice_name=cfg.slice)
        else:
            from jaxpetro.io.bruker import read_bcf

            out = read_bcf(cfg.maps, cfg.spots, current_A=cfg.current_A, dwell_ms=cfg.dwell_ms,
                           lines=dict(cfg.lines) or None, fwhm_mn_eV=cfg.fwhm_mn_eV)
    for w in caught:
        if issubclass(w.category, UserWarning) and "jaxpetro" in str(w.filename):  # the reader's own
            _warn(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def read_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool of the pixels to exclude, from ``input.mask``: a ``.npy`` array, a
    ``.csv``/``.txt`` matrix (comma, semicolon, tab or space separated; nonzero = excluded) or
    a ``.png``/``.tif`` image (any non-black pixel = excluded; colour channels are combined)."""
    mask = read_mask_image(path, "input.mask")
    if mask.ndim == 3:  # RGB(A): a pixel is excluded where any colour channel is set
        mask = mask[..., :3].max(axis=-1) if mask.shape[-1] in (3, 4) else mask.max(axis=-1)
    if mask.shape != tuple(shape):
        raise InputError(f"input.mask: '{path}' is {' x '.join(map(str, mask.shape))} but the maps are "
                         f"{shape[0]} x {shape[1]} (rows x cols); give a mask of the map's size.")
    if mask.dtype.kind not in "biuf" or (mask.dtype.kind == "f" and not np.all(np.isfinite(mask))):
        raise InputError(f"input.mask: '{path}' must hold numbers (nonzero = excluded), without NaN.")
    return mask != 0


def read_domains(path: str | Path, shape: tuple[int, int], names: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Domains of ``summary.domains``: name -> (rows, cols) bool, one per colour or label.

    A ``.png``/``.tif`` image has one colour per domain (black, and a fully transparent pixel,
    belong to none); a ``.npy``/``.csv``/``.txt`` matrix holds integer labels (0 = none).
    ``names`` maps a colour (``"#ff0000"``) or label (``"3"``) to a name; the others are called
    ``d_ff0000`` or ``domain_3``. Domains come in order of colour or label.
    """
    key = "summary.domains"
    image = read_mask_image(path, key)
    if image.shape[:2] != tuple(shape):
        raise InputError(f"{key}: '{path}' is {' x '.join(map(str, image.shape[:2]))} but the maps are "
                         f"{shape[0]} x {shape[1]} (rows x cols); give a mask of the map's size.")
    if image.ndim == 2 and image.dtype.kind == "f" and not np.all(np.isfinite(image) & (image == np.round(image))):
        raise InputError(f"{key}: '{path}' must hold integer labels (0 = no domain), without NaN.")
    found = _domain_codes(image)
    if not found:
        raise InputError(f"{key}: '{path}' holds no domain (every pixel black or 0).")
    names = {str(k).strip().lower(): v for k, v in (names or {}).items()}
    unused = sorted(set(names) - set(found))
    if unused:
        _warn(f"summary.domain_names: {', '.join(unused)} not found in '{path}' (its domains: {', '.join(found)}).")
    colour = image.ndim == 3
    return {names.get(k, f"d_{k[1:]}" if colour else f"domain_{k}"): m for k, m in found.items()}


def _domain_codes(image: np.ndarray) -> dict[str, np.ndarray]:
    """Colour ('#rrggbb') or label ('3') -> its pixels, in order of colour or label."""
    if image.ndim == 3:
        rgb = image[..., :3].astype(np.int64) >> (8 if image.dtype == np.uint16 else 0)  # 16-bit: top byte
        inside = np.any(rgb > 0, axis=-1)
        if image.shape[-1] == 4:  # a transparent pixel is no domain
            inside &= image[..., 3] > 0
        code = np.where(inside, (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], -1)
        return {f"#{int(v):06x}": code == v for v in np.unique(code[inside])}
    labels = image.astype(np.int64)
    return {str(int(v)): labels == v for v in np.unique(labels[labels != 0])}


def polygon_mask(vertices, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: the pixels whose centre (x = column, y = row) lies inside the polygon."""
    from matplotlib.path import Path as PolygonPath

    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = PolygonPath(np.asarray(vertices, np.float64)).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
    return inside.reshape(rows, cols)


def pixel_mask(stack: MapStack, cfg: QmapInputConfig) -> np.ndarray:
    """(rows, cols) bool: the pixels analysed. Pixels are excluded by ``input.mask`` (a file),
    ``input.mask_value`` (a no-data value in any X-ray channel) and ``input.mask_nan`` (a NaN
    in any channel). A NaN or infinite count left in an analysed pixel stops the run with the
    channel named and the keys that exclude it."""
    counts = stack.counts
    rows, cols = counts.shape[:2]
    excluded = np.zeros((rows, cols), bool)
    if cfg.mask is not None:
        excluded |= read_mask(cfg.mask, (rows, cols))
    xray = [c for c in range(len(stack.channels)) if not is_electron(stack.channels[c])]
    if cfg.mask_value is not None:
        excluded |= np.any(counts[..., xray] == np.float32(cfg.mask_value), axis=-1)
    finite = np.isfinite(counts)
    if cfg.mask_nan:
        excluded |= np.any(np.isnan(counts), axis=-1)
    bad = ~finite & ~excluded[..., None]
    if bad.any():
        per = bad.reshape(-1, bad.shape[-1]).sum(0)
        names = ", ".join(f"{stack.channels[c]} ({int(per[c])} pixels)" for c in np.flatnonzero(per))
        r, c = np.argwhere(bad.any(-1))[0]
        raise InputError(
            f"the maps hold NaN or infinite values in channel(s) {names}; first at pixel (x_px={c}, y_px={r}). "
            "Exclude those pixels: input.mask_nan: true (every pixel with a NaN), or input.mask: a mask file "
            "(.npy, .csv, .png; nonzero = excluded), or input.mask_value for a no-data value."
        )
    valid = ~excluded
    if not valid.any():
        raise InputError("input.mask / mask_value / mask_nan exclude every pixel of the map; nothing is left to analyse.")
    return valid


def correct_dead_time(stack: MapStack, override: float | None, valid: np.ndarray | None = None) -> Corrected:
    """Dead-time corrected counts (float32); electron channels unchanged; excluded pixels
    (``valid`` False) set to 0 counts."""
    channels = stack.channels
    xray = [c for c in range(len(channels)) if not is_electron(channels[c])]
    electron = [c for c in range(len(channels)) if is_electron(channels[c])]
    exposure = exposure_s_uA(stack.dwell_ms, stack.current_A)  # (channels,) s·µA
    valid = np.ones(stack.counts.shape[:2], bool) if valid is None else valid
    tau = np.zeros(len(channels))
    if override is not None:
        tau[xray] = override
    elif stack.dead_time_ns is not None:
        tau[xray] = np.asarray(stack.dead_time_ns, np.float64)[xray]
    counts = stack.counts
    if not valid.all():
        counts = np.where(valid[..., None], counts, np.float32(0.0)).astype(np.float32)
    if not np.any(tau > 0):
        return Corrected(counts, exposure, xray, electron, valid)
    counts = np.array(counts, np.float32)
    for c in np.flatnonzero(tau > 0):
        factor = np.asarray(dead_time_factor(counts[..., c], stack.dwell_ms[c], tau[c]))
        if np.any(factor <= 0.05):
            raise InputError(
                f"channel {channels[c]}: a dead time of {tau[c]:g} ns leaves less than 5 % live time at "
                f"{counts[..., c].max():g} counts per {stack.dwell_ms[c]:g} ms; check input.dead_time_ns (in ns)."
            )
        counts[..., c] = counts[..., c] / factor
    return Corrected(counts, exposure, xray, electron, valid)


def anchor_spots(spots: SpotSet | None, corrected: Corrected, config: QmapConfig) -> Anchoring:
    """Spot labels -> anchor pixels; outlier spots (counts that disagree with their phase)
    are flagged and left out."""
    cl = config.clustering
    rows, cols = corrected.counts.shape[:2]
    if spots is None:
        if config.quantify.parameters is not None or cl.init == "anchors":
            raise InputError(
                "no spot table: give input.spots (phase labels at least), or cluster only with "
                "clustering.init: kmeans++ (and no quantify.parameters)."
            )
        return Anchoring(None, np.zeros(0, bool), np.zeros(0), np.zeros(0, np.int64), None, (), cl.extra_components)
    labels = spot_model.label_spots(spots.phase, spots.use, merge_subphases=config.spots.merge_subphases,
                                    phases=cl.phases)
    for name, n in labels.dropped.items():
        _warn(f"{n} spot(s) of phase {name} left out: not in clustering.phases.")
    for name in labels.unanchored:
        _warn(f"phase {name} in clustering.phases has no spots: fitted as an unanchored component, "
              "quantified with the calibration pooled over all phases.")
    masked = ~corrected.valid[spots.row, spots.col]
    if masked.any():
        _warn(f"spot(s) {', '.join(str(i) for i in spots.id[masked])} lie on excluded pixels (input.mask*): left out.")
        labels = dataclasses.replace(labels, index=np.where(masked, -1, labels.index))
    at = corrected.counts[spots.row, spots.col][:, corrected.xray]
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
    return Anchoring(labels, outlier, deviance, anchor_index, anchors, labels.phases[:n_anch],
                     cl.extra_components + len(labels.unanchored))


def cluster(corrected: Corrected, anchoring: Anchoring, spots: SpotSet | None, config: QmapConfig) -> Phases:
    """EM clustering anchored on the spot pixels, and the spots' agreement with it."""
    cl = config.clustering
    valid = corrected.valid
    counts, anchors = corrected.counts, anchoring.anchors
    if not valid.all():  # cluster the analysed pixels only, as one (1, N, channels) strip
        counts = counts[valid][None]
        anchors = None if anchors is None else anchors[valid][None]
    result = cluster_map(
        counts, None, phases=anchoring.anchored_names, anchors=anchors,
        electron_channels=corrected.electron, seed=config.seed,
        options=ClusteringOptions.from_config(cl, extra_components=anchoring.extra), devices=_devices(config),
    )
    memberships, phase_map = result.memberships, result.phase_map
    if not valid.all():  # excluded pixels: no phase (weights 0, phase_map -1)
        memberships = np.zeros(valid.shape + (memberships.shape[-1],), np.float32)
        memberships[valid] = result.memberships[0]
        phase_map = np.full(valid.shape, -1, np.int32)
        phase_map[valid] = result.phase_map[0]
    names = tuple(result.names)
    labels = anchoring.labels
    if labels is not None and labels.unanchored:  # extra components named after the requested phases
        n = len(anchoring.anchored_names)
        names = names[:n] + labels.unanchored + names[n + len(labels.unanchored):]
    agreement = None
    if labels is not None:
        hits, tested = agreement = spot_model.agreement(phase_map, spots.row, spots.col, anchoring.anchor_index)
        share = hits / max(tested, 1)
        if share < config.input.min_agreement:
            _warn(
                f"only {hits} of {tested} spots ({100 * share:.0f} %) land on a pixel whose most likely phase is their "
                "label; check the map orientation (input.row_axis, input.mirror) and the spot labels."
            )
    return Phases(result, names, memberships, phase_map, agreement)


def mix(corrected: Corrected, phases: Phases, config: QmapConfig) -> Mixing:
    """Per-pixel mixing fractions of the X-ray channels (see :mod:`jaxpetro.models.mixing`)."""
    xray, valid = corrected.xray, corrected.valid.reshape(-1)
    if list(xray) == list(range(len(xray))):  # the first channels (electron ones last): a view, no copy
        counts = corrected.counts.reshape(-1, corrected.counts.shape[-1])[:, : len(xray)]
    else:
        counts = corrected.counts[..., xray].reshape(-1, len(xray))
    k = phases.memberships.shape[-1]
    memberships = phases.memberships.reshape(-1, k)
    interior = interior_mask(phases.phase_map).reshape(-1)  # for the zoned-phase scaling of the purity screen
    options, devices = UnmixOptions.from_config(config.mixing), _devices(config)
    if valid.all():
        return fit_mixing(counts, memberships, options, interior, devices)
    fit = fit_mixing(counts[valid], memberships[valid], options, interior[valid], devices)
    fractions = np.zeros((valid.size, k), np.float32)  # excluded pixels: no phase
    fractions[valid] = fit.fractions
    return fit._replace(fractions=fractions)


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


def calibration(spots: SpotSet | None, channels: tuple[str, ...], corrected: Corrected, anchoring: Anchoring,
                phases: Phases, config: QmapConfig, fractions: np.ndarray | None = None) -> CalibrationStage:
    """alpha, beta, gamma from the spots, or read from ``quantify.parameters``. With mixing
    ``fractions``, a spot enters beta weighted by its pixel's fraction of the spot's phase."""
    q = config.quantify
    spot_j, chan = _match_elements(spots, channels, corrected.xray)
    quantified = bool(chan)
    beta_use, beta_note = None, None  # spot checks of beta: only when beta is fitted on spot intensities
    if q.parameters is not None and spots is not None:
        elements = tuple(channels[c] for c in chan) if chan else tuple(channels[c] for c in corrected.xray)
        chan = chan or corrected.xray
        oxides = tuple(oxide_of(e) or e for e in elements)
        cal = imported_calibration(*read_parameters(q.parameters, elements, phases.names))
        quantified = True
    elif quantified:
        elements = tuple(spots.elements[j] for j in spot_j)
        oxides = tuple(spots.oxides[j] for j in spot_j)
        cal, beta_use, beta_note = _calibrate_from_spots(spots, spot_j, chan, corrected, phases.memberships, anchoring,
                                                         q, fractions)
    else:
        elements, oxides, cal = (), (), None
    options = QuantifyOptions.from_config(q)
    if cal is not None and cal.beta.shape[0] not in (1, options.n_tiles):
        raise InputError(f"parameters file '{q.parameters}' has beta for {cal.beta.shape[0]} tiles but "
                         f"quantify.beta_tiles = {list(q.beta_tiles)}; set beta_tiles to match.")
    return CalibrationStage(elements, oxides, chan, cal, quantified, beta_use, beta_note)


def _calibrate_from_spots(spots: SpotSet, spot_j: list[int], chan: list[int], corrected: Corrected,
                          memberships: np.ndarray, anchoring: Anchoring, q: QuantifyConfig,
                          fractions: np.ndarray | None = None,
                          ) -> tuple[Calibration, np.ndarray | None, tuple[str, ...] | None]:
    """alpha, beta, gamma from the spots (see :func:`jaxpetro.models.xray.calibrate`), with
    the spots that entered each element's beta and why the others did not.

    beta is robust to mixed and bad spot pixels (issue 10 item 1): a spot enters beta with
    the weight of its pixel's mixing fraction of the spot's phase (its membership without
    mixing), none below ``quantify.threshold``; then each spot is tested per element against
    its pixel (:func:`jaxpetro.models.spots.beta_consistency`) and beta is refitted without
    the spots inconsistent for that element."""
    options = QuantifyOptions.from_config(q)
    counts, exposure = corrected.counts, corrected.exposure
    rows, cols, _ = counts.shape
    k_n = memberships.shape[-1]
    # Calibrate on every labelled spot that is not an outlier (spots of unanchored
    # phases too: they have no anchor but do have a phase).
    index = np.where(anchoring.outlier, -1, anchoring.labels.index)
    rate_img = counts[..., chan] / exposure[chan].astype(np.float32)
    # Same-phase window pixels by mixing fraction where available: EM memberships are near 1 on most
    # boundary pixels, which would bring a neighbour's counts into the window.
    weights = memberships if fractions is None else fractions
    spot_rate, n_window = spot_model.window_mean(rate_img, spots.row, spots.col, weights, index,
                                                 options.threshold, options.beta_window // 2, return_count=True)
    wt = spots.wt[:, spot_j]
    if spots.peak is None:  # no spot intensities: wt% against the map rates (errors in variables)
        cal = _calibrate_on_map_rates(spots, spot_j, chan, corrected, memberships, index, options,
                                      anchoring.labels.phases)
        return cal, None, None
    peak, bg = spots.peak[:, spot_j], spots.background[:, spot_j]
    what = "membership" if fractions is None else "mixing fraction"
    own = weights[spots.row, spots.col, np.maximum(index, 0)]
    if not np.any((index >= 0) & (own >= options.threshold)):
        raise InputError(
            f"no spot pixel has a {what} of at least quantify.threshold = {options.threshold:g} in its own "
            "phase, so beta cannot be fitted; lower quantify.threshold or check the spot positions (orientation)."
        )
    tile = tile_index(rows, cols, options.beta_tiles)[spots.row, spots.col]
    args = (wt, peak, bg, np.maximum(index, 0), index >= 0, spot_rate, own, tile, k_n, options)
    # beta_use given both times (all spots the first): one compilation of calibrate, not two
    cal = jax.tree_util.tree_map(np.asarray, calibrate(*args, beta_use=np.ones(peak.shape, bool)))
    # Consistency of each spot with its pixel, per element: the spot's peak / beta predicts the counts per
    # pixel of the same-phase window that enters beta (its mean of n pixels has variance mu / n).
    tested = (index >= 0) & (own >= options.threshold)
    observed = spot_rate * exposure[chan][None, :]
    predicted = peak / cal.beta[tile] * exposure[chan][None, :]
    consistent, z, _ = spot_model.beta_consistency(observed, predicted, tested[:, None] & np.isfinite(peak), q.beta_p,
                                                   n_window)
    if not consistent.all():
        cal = jax.tree_util.tree_map(np.asarray, calibrate(*args, beta_use=consistent))
    beta_use = tested[:, None] & consistent & np.isfinite(peak)
    elements = [spots.elements[j] for j in spot_j]
    notes = []
    for s in range(len(spots)):
        if index[s] < 0:
            notes.append("")
        elif not tested[s]:
            notes.append(f"mixed pixel: {what} {own[s]:.2f} of {anchoring.labels.phases[index[s]]} < quantify.threshold "
                         f"{options.threshold:g} (left out of every beta)")
        else:
            bad = np.flatnonzero(~consistent[s])
            notes.append("; ".join(f"{elements[j]}: pixel {observed[s, j]:.0f} counts, spot predicts "
                                   f"{predicted[s, j]:.0f} (z = {z[s, j]:+.1f})" for j in bad))
    flagged = [str(i) for i, n in zip(spots.id, notes) if n and not n.startswith("mixed")]
    if flagged:
        _warn(f"spot(s) {', '.join(flagged[:10])}{' ...' if len(flagged) > 10 else ''} disagree with their map pixel "
              "beyond counting noise for some elements: left out of those elements' beta (see spots.csv, "
              "column beta_note; quantify.beta_p sets the test).")
    return cal, beta_use, tuple(notes)


#: Below this many counts per pixel of a major element (>= 1 wt%) at the spots, a run
#: without spot intensities warns: each pixel's wt% then has >10 % counting error.
LOW_COUNTS = 100.0


def _calibrate_on_map_rates(spots: SpotSet, spot_j: list[int], chan: list[int], corrected: Corrected,
                            memberships: np.ndarray, index: np.ndarray, options: QuantifyOptions,
                            names: tuple[str, ...] = ()) -> Calibration:
    """alpha and a per-phase background from spots with wt% only (see
    :func:`jaxpetro.models.xray.calibrate_on_map_rates`): the spots' map rates are noisy
    regressors of known Poisson variance, averaged over same-phase pixels chosen without the
    element's own counts (:func:`jaxpetro.models.spots.window_mean_eiv`)."""
    from jaxpetro.chemistry import OXIDES
    from jaxpetro.kernels.mixture import poisson_rates
    from jaxpetro.models.oxides import mean_atomic_number

    counts, exposure, xray, valid = corrected.counts, corrected.exposure, corrected.xray, corrected.valid
    rows, cols, _ = counts.shape
    k_n = memberships.shape[-1]
    x_img = counts[..., xray]
    p = memberships[valid]
    rates = np.asarray(poisson_rates(x_img[valid], p))  # (K, C) counts per pixel
    log_prior = np.log(np.maximum(p.mean(0), 1e-12))
    position = [xray.index(c) for c in chan]
    local, local_var, _ = spot_model.window_mean_eiv(x_img, exposure[xray], spots.row, spots.col, index, rates,
                                                     log_prior, position, options.threshold, options.beta_window // 2)
    phase_map = np.where(valid, memberships.argmax(-1), -1)
    inner, inner_var, _ = spot_model.interior_rates(x_img[..., position], exposure[chan], phase_map, valid, k_n)
    rate, var = spot_model.shrink_to_phase(local, local_var, inner, inner_var, index)
    wt = spots.wt[:, spot_j]
    known = [j for j, o in enumerate(spots.oxides) if o in OXIDES]
    spot_z = mean_atomic_number(np.nan_to_num(spots.wt[:, known]), tuple(spots.oxides[j] for j in known))
    used = index >= 0
    z = np.array([spot_z[used & (index == k)].mean() if np.any(used & (index == k)) else np.nan for k in range(k_n)])
    cal = calibrate_on_map_rates(wt, rate, var, np.maximum(index, 0), used, np.nan_to_num(z, nan=np.nanmean(z)),
                                 k_n, options.n_tiles)
    # Low counts: name the (element, phase) pairs of major elements below LOW_COUNTS per pixel.
    low = []
    for jj, (j, ch) in enumerate(zip(spot_j, chan)):
        for k in range(k_n):
            sel = used & (index == k)
            if sel.any() and np.nanmean(wt[sel, jj]) >= 1.0:
                per_pixel = float(np.mean(rate[sel, jj]) * exposure[ch])
                if per_pixel < LOW_COUNTS:
                    low.append((per_pixel, spots.elements[j], k))
    if low:
        low.sort()
        listed = ", ".join(f"{el} {per:.0f} in {names[k] if k < len(names) else f'component {k}'}"
                           for per, el, k in low[:6])
        _warn(f"the spot table has no intensities and the maps hold few counts per pixel of major elements ({listed}): "
              f"calibrated on the map rates with an errors-in-variables estimator, but each pixel's wt% has "
              f"~{100 / np.sqrt(max(low[0][0], 1.0)):.0f} % counting error; average pixels (summary.regions, "
              "summary.profile_width) or map with a longer dwell.")
    return jax.tree_util.tree_map(np.asarray, cal)


def quantification(corrected: Corrected, stage: CalibrationStage, weights: np.ndarray,
                   q: QuantifyConfig, devices=()) -> Quantified | None:
    """wt%, standard error and detection limit (rows, cols, J) float32, or None; the pixels
    sharded over ``devices`` (:func:`jaxpetro.models.parallel.pixel_devices`)."""
    cal = stage.cal
    if cal is None:
        return None
    counts, exposure, chan = corrected.counts, corrected.exposure, stage.channels
    rows, cols, k_n = weights.shape
    n, n_el = rows * cols, len(chan)
    options = QuantifyOptions.from_config(q)
    counts = counts.reshape(n, -1)
    weights = weights.reshape(n, k_n)
    scale = exposure[chan].astype(np.float32)
    tile = tile_index(rows, cols, options.beta_tiles).reshape(-1) if cal.beta.shape[0] > 1 else None
    # The pixels go through quantify() in blocks of _QUANT_CALL_CHUNKS x chunk_size, written into
    # the float32 outputs as they come: the peak holds the three outputs and one block's work
    # instead of the whole rate matrix, the kernel's outputs and their copies (~6 GB more at
    # 4000 x 4000 x 14). Every pixel is computed on its own in the same chunk_size blocks as
    # one call over all pixels would use, so the result does not depend on the blocking. The
    # last block is padded to the same size (inert zero rows, cut off) to reuse the program.
    block = min(n, _QUANT_CALL_CHUNKS * options.chunk_size)
    out = [np.empty((n, n_el), np.float32) for _ in Quantified._fields]
    for start in range(0, n, block):
        stop = min(start + block, n)
        rate = counts[start:stop, chan] / scale
        w = weights[start:stop]
        t = None if tile is None else tile[start:stop]
        if stop - start < block:
            pad = block - (stop - start)
            rate = np.concatenate([rate, np.zeros((pad, n_el), rate.dtype)])
            w = np.concatenate([w, np.zeros((pad, k_n), w.dtype)])
            t = None if t is None else np.concatenate([t, np.zeros(pad, t.dtype)])
        part = quantify(rate, w, exposure[chan], cal, t, options, devices)
        for dst, a in zip(out, part):
            dst[start:stop] = np.asarray(a)[: stop - start]
        del part, rate, w
    quant = Quantified(*(a.reshape(rows, cols, n_el) for a in out))
    if not corrected.valid.all():  # excluded pixels have no composition
        for a in quant:
            a[~corrected.valid] = np.nan
    return quant


#: quantify() calls of this many ``quantify.chunk_size`` blocks each (1M pixels by default).
_QUANT_CALL_CHUNKS = 16


#: The quantities drawn in ``structural_<Phase>.png`` by default (first found of each name in
#: end_members, ratios, sites, cations; names of unanalysed elements are passed over).
STRUCTURAL_MAPS: dict[str, tuple[str, ...]] = {
    "garnet": ("X_alm", "X_prp", "X_grs", "X_sps"),
    "biotite": ("X_Mg", "Ti", "M_Al"),
    "muscovite": ("Si", "X_Mg", "X_pg"),
    "chlorite": ("X_Mg", "Si", "M_Al"),
    "plagioclase": ("X_an",),
    "k_feldspar": ("X_or", "X_ab"),
    "clinopyroxene": ("X_wo", "X_en", "X_fs", "X_jd"),
    "orthopyroxene": ("X_en", "X_fs", "X_wo"),
    "amphibole": ("Si", "X_Mg", "A_sum", "Ti"),
    "olivine": ("X_fo",),
    "epidote": ("X_ps", "X_ep"),
    "spinel": ("X_Mg", "Cr_number"),
}
_GROUPS = ("end_members", "ratios", "sites", "cations")
_GROUP_UNITS = {"cations": "apfu", "sites": "apfu", "end_members": "1", "ratios": "1"}


def _panels(formula: StructuralFormula, names: tuple[str, ...], key: str | None) -> tuple[tuple[str, str], ...]:
    """(group, name) of each quantity to draw; ``key`` (the config key that named them) makes
    an unknown name an error, else (the defaults) it is passed over."""
    out = []
    for name in names:
        group, _, bare = name.rpartition("/")
        groups = (group,) if group else _GROUPS
        found = next((g for g in groups if g in _GROUPS and bare in getattr(formula, g)), None)
        if found is None:
            if key is None:
                continue
            known = ", ".join(n for g in _GROUPS for n in getattr(formula, g))
            raise ConfigError(f"{key}: {name!r} is not a quantity of the {formula.mineral} formula; use one of {known} "
                              "(or group/name, e.g. sites/X_Mg)")
        out.append((found, bare))
    return tuple(out)


def structural(config: QmapConfig, results: QmapResults) -> Structural | None:
    """Structural formulae of every pixel of each phase with a mineral kind (stage 8).

    A pixel belongs to a phase when its weight in it is at least ``structural.min_weight``:
    the mixing fraction when mixing is on (a 60/40 boundary pixel is 0.6, its EM membership
    is near 1), else the membership. Its wt% must be finite in every oxide used. Phases
    without a kind (``structural.minerals`` and the built-in abbreviations) are skipped.

    Returns:
        None when ``structural.enabled`` is false or there are no wt% maps.
    """
    cfg = config.structural
    quant = results.quant
    if not cfg.enabled or quant is None:
        return None
    names = results.phases.names
    oxides = tuple(results.calibration.oxides)
    used = [j for j, o in enumerate(oxides) if o in OXIDES]  # volatiles and unknown columns are no cations
    ox = tuple(oxides[j] for j in used)
    lower = {n.strip().lower() for n in names}
    stray = sorted((k for k in cfg.minerals if str(k).strip().lower() not in lower), key=str.lower)
    if stray:
        _warn(f"structural.minerals names phase(s) {', '.join(stray)} that this run does not have "
              f"(phases: {', '.join(names)}).")
    kinds, _ = resolve_minerals(names, cfg.minerals)
    weights = results.fractions if results.fractions is not None else results.phases.memberships
    # a view when every oxide is used (no (rows, cols, J) copy); finite per row block
    wt = quant.wt if used == list(range(quant.wt.shape[-1])) else quant.wt[..., used]
    finite = np.empty(wt.shape[:2], bool)
    for r0 in range(0, wt.shape[0], 256):
        finite[r0:r0 + 256] = np.all(np.isfinite(wt[r0:r0 + 256]), axis=-1)
    finite &= results.corrected.valid
    methods = {str(k).strip().lower(): v for k, v in cfg.fe3.items()}
    draw = {str(k).strip().lower(): (k, v) for k, v in cfg.maps.items()}
    phases, empty = {}, []
    for k, phase in enumerate(names):
        kind = kinds.get(phase)
        if kind is None or not ox:
            continue
        pixels = finite & (weights[..., k] >= cfg.min_weight)
        if not pixels.any():
            empty.append(phase)
            continue
        sample = wt[pixels].astype(np.float32)
        mean = sample.mean(axis=0, dtype=np.float64)
        method = methods.get(phase.strip().lower(), methods.get(kind)) or MINERALS[kind].fe3
        rows_ = np.concatenate([mean[None].astype(np.float32), sample])  # the mean rides along as row 0
        f = _phase_formula(rows_, ox, kind, method, cfg.fe3_from)
        f = analysed_only(f, ox)
        formula = f._replace(**{g: {n: v[1:] for n, v in getattr(f, g).items()} for g in _GROUPS})
        of_mean = f._replace(**{g: {n: v[0] for n, v in getattr(f, g).items()} for g in _GROUPS})
        key, wanted = draw.get(phase.strip().lower(), draw.get(kind, (None, None)))
        panels = (_panels(formula, tuple(wanted), f"structural.maps.{key}") if wanted is not None
                  else _panels(formula, STRUCTURAL_MAPS.get(kind, ()), None))
        phases[phase] = PhaseFormula(phase, kind, pixels, formula, of_mean, panels)
    if empty:
        _warn(f"no pixel of phase(s) {', '.join(empty)} has a weight of at least structural.min_weight="
              f"{cfg.min_weight:g}: no structural formula (lower structural.min_weight).")
    skipped = tuple(n for n in names if n not in kinds)
    return Structural(phases, skipped, tuple(empty), ox)


def _phase_formula(rows: np.ndarray, oxides: tuple[str, ...], kind: str, method: str, fe3_from: str) -> StructuralFormula:
    """The formula of each row (row 0: the phase's mean composition).

    With ``charge_balance`` and ``fe3_from: phase_mean`` every row gets the Fe3+/Fe that
    Droop's charge balance gives for row 0: one pixel's counting noise moves its cation total,
    and Fe3+ clipped at 0 turns that noise into a positive bias (+0.08 apfu Fe3+, X_grs 0.03
    low, in the synthetic garnet at 20 ms per pixel), whereas the mean's noise is small.
    """
    has_iron = any(OXIDES[o].cation == "Fe" for o in oxides)
    if method != "charge_balance" or fe3_from != "phase_mean" or not has_iron:
        return structural_formula_blocks(rows, oxides, kind, method)
    ratio = float(structural_formula_blocks(rows[:1], oxides, kind, "charge_balance").ratios["Fe3_Fe"][0])
    ratio = ratio if np.isfinite(ratio) else 0.0
    split, ox2 = split_iron(rows, oxides, ratio)
    f = structural_formula_blocks(split, ox2, kind, "measured")
    note = (f"Fe3+/Fe = {ratio:.4f} in every pixel: the charge balance (Droop 1987) of the phase's mean composition "
            f"on {MINERALS[kind].cations:g} cations / {MINERALS[kind].oxygens:g} O")
    notes = tuple(note if n.startswith("Fe2+ and Fe3+ from") else n for n in f.notes)
    return f._replace(fe3_method="charge_balance_phase_mean", cation_basis=MINERALS[kind].cations, notes=notes)


def _structural_outputs(structural_: Structural, cfg) -> tuple[dict, list]:
    """``qmap.h5/structural`` datasets and the rows of ``structural.csv``."""
    datasets, table = {}, []
    for phase, pf in structural_.phases.items():
        f = pf.formula
        entry = {"mineral": pf.mineral, "fe3_method": f.fe3_method, "formula": f.attrs()["formula"],
                 "oxygen_basis": float(f.oxygens), "cation_basis": float(f.attrs()["cation_basis"]),
                 "notes": "; ".join(f.notes), "n_pixels": pf.n_pixels}
        if cfg.pixels:
            entry["pixels"] = pf.pixels.astype(np.uint8)
            # made as each is written (~140 maps of 4 phases: 2.3 GB at 2000 x 2000 if held at once)
            entry.update({g: {n: (lambda pf=pf, g=g, n=n: pf.map(g, n)) for n in getattr(f, g)}
                          for g in _GROUPS if getattr(f, g)})
        datasets[phase.replace("/", "_")] = entry
        for g in _GROUPS:
            for name, values in getattr(f, g).items():
                v = values[np.isfinite(values)]
                mean = float(v.mean(dtype=np.float64)) if v.size else float("nan")
                sd = float(v.std(ddof=1, dtype=np.float64)) if v.size > 1 else float("nan")
                table.append([phase, pf.mineral, g, name, _GROUP_UNITS[g], pf.n_pixels, round(mean, 5), round(sd, 5),
                              round(float(getattr(pf.of_mean, g)[name]), 5)])
    return datasets, table


def _file_name(phase: str) -> str:
    """A phase name as part of a file name (anything but letters, digits, - and . becomes _)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", phase)


# ----------------------------------------------------------------------------- outputs

#: Units of every dataset of ``qmap.h5`` (exact paths and fnmatch patterns; "" = text, "1" =
#: dimensionless). New datasets need an entry here: :func:`write_hdf5` checks.
UNITS = {
    "phases": "", "channels": "", "oxides": "", "elements": "",
    "membership": "1", "phase_map": "1", "fractions": "1", "valid": "1",
    "wt/*": "wt%", "wt_se/*": "wt%", "lod/*": "wt%", "below_lod/*": "1", "above_100/*": "1", "total": "wt%",
    "parameters/alpha": "wt%/(cps/uA)", "parameters/alpha_se": "wt%/(cps/uA)", "parameters/beta": "1",
    "parameters/beta_se": "1", "parameters/gamma": "cps/uA", "parameters/gamma_se": "cps/uA", "parameters/*": "1",
    "garnet/*": "1",
    "summary/*": "1", "summary/composition": "wt%", "summary/composition_sd": "wt%", "summary/bulk": "wt%",
    "summary/regions/*": "wt%", "summary/densities": "g/cm3", "summary/domain_pixels/*": "1",
    "profiles/*/distance_um": "um", "profiles/*/garnet_radius_um": "um", "profiles/*/wt": "wt%",
    "profiles/*/wt_se": "wt%", "profiles/*/garnet": "1", "profiles/*/garnet_sd": "1",
    "clustering/*": "1", "clustering/family": "", "clustering/channels": "", "clustering/loglik": "nats",
    "clustering/history": "nats/pixel", "clustering/bic": "nats", "clustering/icl": "nats",
    "clustering/rate_cps_per_uA": "cps/uA",
    "calibration/*": "1", "calibration/spot_rate": "cps/uA", "calibration/spot_counts": "counts",
    "calibration/predicted_counts": "counts", "calibration/beta_weight": "1",
    "checks/*": "1",
    "structural/*/cations/*": "apfu", "structural/*/sites/*": "apfu", "structural/*/end_members/*": "1",
    "structural/*/ratios/*": "1", "structural/*/pixels": "1", "structural/*/n_pixels": "1",
    "structural/*/mineral": "", "structural/*/fe3_method": "", "structural/*/formula": "", "structural/*/notes": "",
    "structural/*/oxygen_basis": "apfu", "structural/*/cation_basis": "apfu",
}


def _clustering_units(family: str, transform: str) -> dict[str, str]:
    """Units of the fitted mixture's ``loc`` and ``scale`` (the features it clustered: counts
    per pixel; the Gaussian model's sqrt transform takes their square root; BSE in its own units)."""
    if family == "poisson":
        return {"clustering/loc": "counts", "clustering/scale": "1"}
    unit = "sqrt(counts)" if transform == "sqrt" else "counts"
    scale = f"({unit})^2" if family.endswith("diag") else unit  # variances, or Cholesky factors
    return {"clustering/loc": unit, "clustering/scale": scale}



def _checks(results: QmapResults) -> dict:
    """The checks reported in ``qmap.h5`` (``checks/``) and the summary."""
    checks = {}
    if results.phases.agreement is not None:
        hits, tested = results.phases.agreement
        checks.update(spots_on_own_phase=hits, spots_tested=tested, spot_agreement=hits / max(tested, 1))
    if results.mixing is not None:
        checks.update(mixing_unmixed_share=results.mixing.unmixed_share, mixing_gap_p99=results.mixing.gap_p99)
    return checks


def write_outputs(config: QmapConfig, out: Path, results: QmapResults,
                  formulae: Structural | None | bool = True) -> dict:
    """Every output file from the stage results; returns the summary (modes, compositions,
    clustering status, checks; the timings are added by :func:`run`).

    ``formulae``: the :func:`structural` stage's result; True (the default) computes it here
    (before any file is written, so a bad ``structural.maps`` name leaves nothing behind).
    """
    if formulae is True:
        formulae = structural(config, results)
    stack, phases, cal_stage, quant = results.input.stack, results.phases, results.calibration, results.quant
    spots, anch = results.input.spots, results.anchoring
    names, memberships, phase_map, result = phases.names, phases.memberships, phases.phase_map, phases.result
    fractions, weights, oxides, elements = results.fractions, results.weights, cal_stage.oxides, cal_stage.elements
    checks = _checks(results)
    rows, cols, k_n = memberships.shape
    valid = results.corrected.valid
    modal = summaries.modal_proportions(memberships[valid])  # over the analysed pixels
    datasets = {
        "phases": list(names),
        "channels": list(stack.channels),
        "membership": memberships,
        "phase_map": phase_map,
        "clustering": result.datasets([stack.channels[i] for i in result.channels]),
        "summary": {"modal": modal},
    }
    if result.family == "poisson":  # counts per pixel -> cps/µA (channels differ in dwell x current)
        factor = results.corrected.exposure[list(result.channels)]
        datasets["clustering"]["rate_cps_per_uA"] = np.asarray(result.params.loc) / factor
    if fractions is not None:
        datasets["fractions"] = fractions
        datasets["summary"]["modal_fractions"] = summaries.modal_proportions(fractions[valid])
    summary = {"modal": dict(zip(names, modal.tolist()))}
    matrices = []  # (path, wt% map) of the text matrices
    step = stack.step_um
    header = ["phase", "modal_fraction"]
    table = [[n, m] for n, m in zip(names, modal)]
    if quant is not None:
        wt, se, lod = quant.wt, quant.se, quant.lod
        wt0 = wt if valid.all() else np.where(valid[..., None], wt, 0.0)  # excluded pixels (weight 0) add nothing
        mean, sd = summaries.phase_compositions(memberships, wt0, fractions, config.quantify.threshold)
        density = summaries.densities_for(names, config.densities)
        bulk = summaries.bulk_composition(weights, wt0, density, valid)
        datasets.update(
            wt={o: wt[..., j] for j, o in enumerate(oxides)},
            wt_se={o: se[..., j] for j, o in enumerate(oxides)},
            lod={o: lod[..., j] for j, o in enumerate(oxides)},
            # made as each is written
            below_lod={o: (lambda j=j: (wt[..., j] < lod[..., j]).astype(np.uint8)) for j, o in enumerate(oxides)},
            total=wt.sum(-1),
            oxides=list(oxides),
            elements=list(elements),
            parameters={k: np.asarray(v) for k, v in cal_stage.cal._asdict().items()},
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
            regions[name] = summaries.bulk_composition(weights, wt0, density, mask & valid)
        shapes = {name: polygon_mask(v, (rows, cols)) for name, v in config.summary.polygons.items()}
        if config.summary.domains is not None:
            shapes.update(read_domains(config.summary.domains, (rows, cols), config.summary.domain_names))
        for name, mask in shapes.items():
            if name in regions:
                raise ConfigError(f"summary: the domain or polygon name {name!r} is also a region or 'section'; "
                                  "rename it (summary.domain_names).")
            if not (mask & valid).any():
                _warn(f"summary: domain or polygon {name!r} holds no analysed pixel; its bulk is NaN.")
            regions[name] = summaries.bulk_composition(weights, wt0, density, mask & valid)
        datasets["summary"]["regions"] = regions
        if shapes:
            datasets["summary"]["domain_pixels"] = {n: m.astype(np.uint8) for n, m in shapes.items()}
        b = config.bulk
        if b.forms:
            write_bulk_forms(out, regions, oxides, forms=b.forms, h2o_mol=b.h2o_mol, fe3_fe=b.fe3_fe,
                             magemin_db=b.magemin_db)
        write_csv(out / "bulk.csv", ["region", *oxides, "total"], [[n, *v, float(np.sum(v))] for n, v in regions.items()])
        garnet = _garnet(names, oxides, weights, wt, config.summary)
        if garnet is not None:
            datasets["garnet"] = {m: garnet[..., i] for i, m in enumerate(GARNET_END_MEMBERS)}
        profiles = _profiles(config, out, names, oxides, weights, phase_map, wt, se, garnet is not None, step)
        if profiles:
            datasets["profiles"] = profiles
        above = _above_100(wt, se, oxides)
        datasets["above_100"] = {name: code for name, (code, _, _) in above.items()}
        checks["above_100"] = {name: n for name, (_, n, _) in above.items()}
        checks["above_100_beyond_noise"] = {name: m for name, (_, _, m) in above.items()}
        # Pixels whose true value is 100 wt% land above it half the time and beyond 3 SE 0.135 % of
        # the time: ~2 x 0.00135 x (pixels above 100) beyond noise are expected from counting alone.
        flagged = [f"{name} {n} ({m} by more than {_FLAG_SD:g} SE, ~{2 * _P_BEYOND * n:.0f} expected from counting "
                   "noise)" for name, (_, n, m) in above.items() if n]
        if flagged:
            # "far more": beyond the Poisson spread of the expected count (3 sd), and at least 3 pixels
            excess = [name for name, (_, n, m) in above.items() if m > max(3.0, 2 * _P_BEYOND * n
                                                                            + 3 * np.sqrt(2 * _P_BEYOND * n))]
            _warn(f"pixels above 100 wt%: {', '.join(flagged)} of {int(valid.sum())} analysed; flagged in the PNG maps "
                  "and in qmap.h5/above_100 (1 = within counting noise of 100 wt%, 2 = beyond)."
                  + (f" Far more beyond noise than expected for {', '.join(excess)}: check the calibration (spots.csv, "
                     "parameters.csv) and the standards' totals." if excess else "")
                  + (" The total also runs high where the noise of oxides a phase lacks is cut at 0 wt%, and its SE "
                     "counts the oxides' errors as independent." if "total" in excess else ""))
        write_parameters(out / "parameters.csv", cal_stage.cal._asdict(), elements, oxides, names)
        if config.output.text_matrices:
            matrices = [(out / f"{o}.csv", wt[..., j]) for j, o in enumerate(oxides)]
        summary.update(composition={n: dict(zip(oxides, mean[k].tolist())) for k, n in enumerate(names)},
                       bulk=dict(zip(oxides, bulk.tolist())))
    if fractions is not None:
        header.append("modal_fraction_mixing")
        for row, m in zip(table, datasets["summary"]["modal_fractions"]):
            row.append(m)
    write_csv(out / "summary.csv", header, table)
    if spots is not None and anch.labels is not None:
        pix = phase_map[spots.row, spots.col]
        n_spots = len(spots)
        if cal_stage.beta_use is not None:  # elements whose beta each spot entered, and why not the others
            beta_elements = [" ".join(e for e, u in zip(elements, row) if u) for row in cal_stage.beta_use]
            beta_note = list(cal_stage.beta_note)
        else:
            beta_elements, beta_note = [""] * n_spots, [""] * n_spots
        write_csv(
            out / "spots.csv",
            ["id", "label", "phase", "x_px", "y_px", "used", "outlier", "deviance", "pixel_phase", "agrees",
             "beta_elements", "beta_note"],
            [[int(i), lab, anch.labels.phases[k] if k >= 0 else "", int(c), int(r), bool(a >= 0), bool(o), d,
              names[p], bool(k >= 0 and p == k), beta_elements[s], beta_note[s]]
             for s, (i, lab, k, r, c, a, o, d, p) in enumerate(zip(spots.id, spots.phase, anch.labels.index, spots.row,
                                                                   spots.col, anch.anchor_index, anch.outlier,
                                                                   anch.deviance, pix))],
        )
    datasets["checks"] = dict(checks)
    units = {**UNITS, **_clustering_units(result.family, config.clustering.transform)}
    if formulae:
        h5, rows_ = _structural_outputs(formulae, config.structural)
        if h5:
            datasets["structural"] = h5
        write_csv(out / "structural.csv", ["phase", "mineral", "group", "name", "unit", "n_pixels", "mean", "sd",
                                           "of_mean_composition"], rows_)
        summary["structural"] = {
            p: {"mineral": pf.mineral, "n_pixels": pf.n_pixels,
                **{n: float(np.nanmean(getattr(pf.formula, g)[n])) for g, n in pf.panels}}
            for p, pf in formulae.phases.items()}
    # The text matrices (numpy, mostly without the GIL) and the figures (matplotlib, in this one
    # thread only) are written in two threads while qmap.h5 is compressed (zlib, in threads):
    # on 2 cores the three overlap instead of queueing. Each file is written atomically; an
    # error in either thread is raised here once qmap.h5 is written.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="qmap-write") as pool:
        jobs = [pool.submit(lambda: [_write_matrix(path, image) for path, image in matrices])]
        if config.output.plots:
            jobs.append(pool.submit(_figures, config, out, results, formulae, modal, step))
        write_hdf5(out / "qmap.h5", datasets, run_attrs(config_to_yaml(config), config.seed), units=units)
        for job in jobs:
            job.result()
    summary.update(n_iter=int(result.status.iterations), converged=bool(result.status.converged), phases=names,
                   checks=checks)
    return summary


def _figures(config: QmapConfig, out: Path, results: QmapResults, formulae: Structural | None,
             modal: np.ndarray, step: float | None) -> None:
    """The PNG maps: phases, each oxide and the total, the structural formulae per phase."""
    quant, fractions, weights, valid = results.quant, results.fractions, results.weights, results.corrected.valid
    result, names, phase_map = results.phases.result, results.phases.names, results.phases.phase_map
    oxides = results.calibration.oxides
    dpi = config.output.dpi
    phase_map_figure(out / "phases.png", phase_map, names, modal=modal.tolist(), step_um=step,
                     title=f"most likely phase ({result.family} EM)", dpi=dpi)
    if quant is not None:
        # the phases' own colour ranges from their pure pixels: mixing fractions where fitted
        # (memberships of boundary pixels are near 1 too)
        _oxide_figures(out, config.output, quant.wt, quant.se, quant.lod, oxides, names,
                       fractions if fractions is not None else weights, valid, step)
    if formulae and config.structural.pixels:
        for phase, pf in formulae.phases.items():
            if not pf.panels:
                continue
            f = pf.formula
            panels = [(name, pf.map(g, name), "apfu" if _GROUP_UNITS[g] == "apfu" else "fraction")
                      for g, name in pf.panels]
            fe = {"charge_balance": "Fe3+ by charge balance per pixel", "none": "all Fe as Fe2+",
                  "charge_balance_phase_mean": "Fe3+ by charge balance of the mean",
                  "all_ferric": "all Fe as Fe3+", "measured": "Fe as analysed"}[f.fe3_method]
            maps_figure(out / f"structural_{_file_name(phase)}.png", panels, step_um=step, dpi=dpi,
                        title=f"{phase} ({pf.mineral.replace('_', '-')}, {f.oxygens:g} O, {fe}): "
                              f"{pf.n_pixels} pixels")


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
    for phase, entry in summary.get("structural", {}).items():
        shown = "  ".join(f"{k} {v:.3f}" for k, v in entry.items() if k not in ("mineral", "n_pixels"))
        lines.append(f"{phase} ({entry['mineral']}, {entry['n_pixels']} px): {shown}")
    lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings"].items() if v >= 0.05))
    print("\n".join(lines), file=sys.stderr)


_FLAG_SD = 3.0  # a pixel above 100 wt% by more than this many SE is unlikely to be counting noise
_P_BEYOND = 0.0013499  # P(Z > 3) of a standard normal: the chance of that for a true value at 100 wt%
_PHASE_PANEL_WEIGHT = 0.9  # pixels on a phase's own colour scale: (nearly) pure ones, boundaries left out
_PHASE_PANEL_MIN_PIXELS = 20


def _total_se(se: np.ndarray, block_rows: int = 256) -> np.ndarray:
    """(rows, cols) float64 SE of the analytical total, sqrt(sum_j se_j^2) (the oxides' errors as
    independent), from the (rows, cols, J) float32 SE maps in row blocks: the same sum per pixel
    as over the whole map, without its (rows, cols, J) float64 temporaries (2 x 1.8 GB at
    4000 x 4000 x 14)."""
    total = np.empty(se.shape[:-1], np.float64)
    for r0 in range(0, se.shape[0], block_rows):
        total[r0:r0 + block_rows] = np.sqrt(np.sum(np.asarray(se[r0:r0 + block_rows], np.float64) ** 2, axis=-1))
    return total


def _above_100(wt: np.ndarray, se: np.ndarray, oxides) -> dict[str, tuple[np.ndarray, int, int]]:
    """Per oxide and for the total: (uint8 map, 0 / 1 above 100 wt% within noise / 2 beyond;
    pixels above 100; of them beyond noise). The total's SE combines the oxides' counting
    errors as independent."""
    out = {}
    total_se = _total_se(se)
    for name, image, sd in [*((o, wt[..., j], se[..., j]) for j, o in enumerate(oxides)),
                            ("total", wt.sum(-1), total_se)]:
        within, beyond = above_limit(image, 100.0, sd, _FLAG_SD)
        code = np.where(beyond, 2, np.where(within, 1, 0)).astype(np.uint8)
        out[name] = (code, int(within.sum() + beyond.sum()), int(beyond.sum()))
    return out


def _oxide_figures(out: Path, cfg, wt, se, lod, oxides, names, weights, valid, step) -> None:
    """``<oxide>.png`` and ``total.png``: pixels above 100 wt% flagged; with ``output.oxide_scale:
    phase`` each oxide map also on each phase's own colour range (the phases that hold it:
    median above the median detection limit of their pixels)."""
    dpi = cfg.dpi
    total_se = _total_se(se)
    pure = [(n, (weights[..., k] >= _PHASE_PANEL_WEIGHT) & valid) for k, n in enumerate(names)]
    pure = [(n, m) for n, m in pure if m.sum() >= _PHASE_PANEL_MIN_PIXELS]
    for j, o in enumerate(oxides):
        image, sd = wt[..., j], se[..., j]
        if cfg.oxide_scale == "phase":
            held = [(n, m) for n, m in pure if _holds(image[m], lod[..., j][m])]
            phase_scaled_map_figure(out / f"{o}.png", image, held, title=f"{o} (wt%)", step_um=step, dpi=dpi,
                                    limit=100.0, sd=sd, n_sd=_FLAG_SD)
        else:
            scalar_map_figure(out / f"{o}.png", image, title=f"{o} (wt%)", step_um=step, dpi=dpi, limit=100.0,
                              sd=sd, n_sd=_FLAG_SD)
    scalar_map_figure(out / "total.png", wt.sum(-1), title="analytical total (wt%)", step_um=step, dpi=dpi,
                      cmap="magma", limit=100.0, sd=total_se, n_sd=_FLAG_SD)


def _holds(values: np.ndarray, lod: np.ndarray) -> bool:
    """Whether a phase holds an oxide: the median of its pixels above their median detection
    limit (a phase without it would get a panel of noise around zero)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        level, limit = np.nanmedian(values), np.nanmedian(lod)
    return bool(np.isfinite(level) and (not np.isfinite(limit) or level > limit))


def _garnet(names, oxides, weights, wt, cfg) -> np.ndarray | None:
    """(rows, cols, 4) garnet end-members on garnet pixels (NaN elsewhere), or None."""
    if cfg.garnet not in names or not all(o in oxides for o in GARNET_OXIDES):
        return None
    k = names.index(cfg.garnet)
    mask = weights[..., k] >= cfg.garnet_min_membership
    x = np.full(wt.shape[:2] + (4,), np.nan, np.float32)
    if mask.any():
        x[mask] = np.asarray(garnet_end_members(wt[mask].astype(np.float64), oxides), np.float32)
    return x


def _write_matrix(path: Path, image: np.ndarray) -> None:
    """One oxide's wt% map as a CSV matrix (rows x cols), 4 significant digits ("%.4g")."""
    write_matrix(path, image, digits=4)


def _profiles(config, out, names, oxides, weights, phase_map, wt, se, garnet: bool, step_um) -> dict:
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
        if garnet:
            k = names.index(cfg.garnet)
            g = weights[rr, cc, k].mean(axis=1) >= cfg.garnet_min_membership
            if g.any():
                members = garnet_end_members_with_sd(w_mean[g].astype(np.float64), w_se[g], oxides)
                x, x_sd = np.asarray(members.x), np.asarray(members.sd)
                radius = dist[g] * step  # profiles start at the garnet's core
                write_csv(folder / f"{name}_garnet.csv",
                          ["radius_um", *GARNET_END_MEMBERS, *[f"{m}_sd" for m in GARNET_END_MEMBERS]],
                          [[r, *xv, *sv] for r, xv, sv in zip(radius, x, x_sd)])
                entry.update(garnet_radius_um=radius, garnet=x, garnet_sd=x_sd)
        result[name] = entry
    return result

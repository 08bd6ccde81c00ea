"""Config schema of ``jaxpetro qmap`` (quantitative mapping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxpetro.config.loader import option, section
from jaxpetro.errors import ConfigError
from jaxpetro.config.common import OutputConfig

__all__ = ["BulkFormsConfig", "ClusteringConfig", "MixingConfig", "ParallelConfig", "QmapConfig", "QmapInputConfig",
           "QmapOutputConfig", "QuantifyConfig", "SpotsConfig", "StructuralConfig", "SummaryConfig"]


@dataclass(frozen=True)
class ClusteringConfig:
    """Soft clustering of pixels into phases (EM on a mixture model)."""

    model: Literal["poisson", "gaussian"] = option("poisson", "mixture model of the pixel counts")
    covariance: Literal["diag", "full"] = option("full", "covariance structure (gaussian only)")
    transform: Literal["none", "sqrt"] = option(
        "sqrt", "variance-stabilising transform of count rates (gaussian only)"
    )
    init: Literal["anchors", "kmeans++"] = option(
        "anchors", "initialisation: phases of the spot analyses, or k-means++ seeding"
    )
    phases: tuple[str, ...] | None = option(
        None, "phases to fit (default: those of the spots); spots of other phases are left out, listed phases without spots are fitted unanchored"
    )
    extra_components: int = option(0, "components added beyond the phases of the spots", ge=0)
    use_bse: bool = option(True, "cluster on the electron (BSE) channel too")
    max_iter: int = option(500, "maximum EM iterations", ge=1)
    tol: float = option(1e-7, "convergence tolerance on the mean log-likelihood per pixel", gt=0)
    reg_covar: float = option(1e-6, "added to covariance diagonals for stability (gaussian only)", gt=0)
    chunk_size: int | None = option(
        None, "pixels per block of EM work (bounds memory); empty = automatic, ~8 MB of features per block", ge=1
    )


@dataclass(frozen=True, kw_only=True)
class QmapInputConfig:
    """Where the maps and spot analyses are (relative paths are resolved from the config file's folder)."""

    format: Literal["generic", "jeol", "cameca", "h5oina", "bcf"] = option(
        "generic", "input format: 'generic' = a map stack (.npz/.h5) + a spot CSV; 'jeol' = JEOL map and .qnt folders "
        "(text or binary maps); 'cameca' = Peaksight/SX text map exports + their spot CSV; 'h5oina' = Oxford EDS maps; "
        "'bcf' = Bruker EDS maps (needs the 'bruker' extra); see docs/formats.md"
    )
    maps: str | None = option(
        None, "generic: map stack file (.npz or .h5) with maps (channels, rows, cols), channels, dwell_ms, current_A; "
        "cameca: the folder of map text files; h5oina/bcf: the .h5oina/.bcf file", path=True)
    spots: str | None = option(
        None, "generic, h5oina, bcf: spot CSV with x_px, y_px, phase[, id, <oxide> wt%, <El>_peak, <El>_bg cps/µA, "
        "current_A]; cameca: the Peaksight spot CSV", path=True,
    )
    map_files: Literal["auto", "text", "binary"] = option(
        "auto", "jeol: map files as text exports or binary .map matrices (auto: text when both exist)")
    byte_order: Literal["big", "little"] = option("big", "jeol binary .map: byte order of the values")
    map_dtype: Literal["auto", "uint16", "uint32"] = option(
        "auto", "jeol binary .map: value type (auto: from the file size and the map size)")
    current_A: float | None = option(
        None, "cameca, h5oina, bcf: probe current (A) when the files do not hold it", gt=0)
    dwell_ms: float | None = option(None, "cameca, h5oina, bcf: dwell per pixel (ms) when the files do not hold it", gt=0)
    slice: str = option("1", "h5oina: the slice (top-level group) of the file")
    lines: dict[str, float] = option({}, "bcf: extra or overriding X-ray line energies (keV) by element or line name")
    fwhm_mn_eV: float = option(130.0, "bcf: detector resolution (FWHM at Mn Ka, eV) for the line windows", gt=0)
    map_dir: str | None = option(None, "jeol: the map folder (e.g. project/.map/1) holding the map files and their .cnd", path=True)
    qnt_dir: str | None = option(None, "jeol: the spot folder (project/.qnt) holding the *.qnt files", path=True)
    dialect: Literal["auto", "old", "new"] = option("auto", "jeol: .cnd dialect (old: <k>_map.txt; new: data<kkk>.csv)")
    map_conditions: str | None = option(None, "jeol: CSV of map conditions, when .cnd files are missing or incomplete", path=True)
    spot_conditions: str | None = option(None, "jeol: CSV of spot conditions, when .qnt/.cnd/elemw.cnd is missing", path=True)
    phase_list: str | None = option(None, "jeol: phase_list.csv (id, phase, use) to relabel or exclude spots", path=True)
    row_axis: Literal["auto", "x", "y"] = option("auto", "jeol: stage axis that runs along the map rows (auto: the dialect's)")
    mirror: Literal["auto", "none", "x", "y", "xy"] = option("auto", "jeol: mirrored stage axes (auto: the dialect's)")
    dead_time_ns: float | None = option(
        None, "dead time of the X-ray counters (ns); empty = from the map conditions, else 0 (electron channels exempt)", ge=0
    )
    mask: str | None = option(
        None, "pixels to exclude (holes, epoxy, cracks): a .npy, .csv/.txt matrix (rows x cols, nonzero = excluded) "
        "or a .png/.tif image (non-black = excluded)", path=True,
    )
    mask_value: float | None = option(
        None, "exclude pixels where any X-ray channel holds this value (e.g. -1 or 65535 for no-data pixels)"
    )
    mask_nan: bool = option(False, "exclude pixels where any channel is NaN (NaN-padded or cropped maps)")
    min_agreement: float = option(
        0.7, "warn when fewer spots than this share land on a pixel of their own phase (orientation check)", ge=0, le=1
    )

    def __post_init__(self):
        if self.format == "generic" and self.maps is None:
            raise ConfigError("input.maps is required with input.format: generic (the map stack .npz/.h5).")
        if self.format == "jeol" and (self.map_dir is None or self.qnt_dir is None):
            raise ConfigError("input.map_dir and input.qnt_dir are required with input.format: jeol.")
        if self.format in ("cameca", "h5oina", "bcf") and self.maps is None:
            what = {"cameca": "the folder of Cameca map text files", "h5oina": "the .h5oina file",
                    "bcf": "the .bcf file"}[self.format]
            raise ConfigError(f"input.maps is required with input.format: {self.format} ({what}).")


@dataclass(frozen=True)
class SpotsConfig:
    """How spot analyses anchor the clustering."""

    merge_subphases: bool = option(True, "merge sub-phase labels into their phase (Grt_core, Grt_rim -> Grt)")
    outlier_p: float = option(
        1e-3, "flag spots whose map counts disagree with their phase beyond Poisson noise at this p-value (0 = off)", ge=0, lt=1
    )


@dataclass(frozen=True)
class QuantifyConfig:
    """Calibration of the map rates to wt% (the qntmap model of Yasumoto et al. 2018, Am. Mineral.
    103:1690; see docs/science.md)."""

    threshold: float = option(0.9, "minimum membership of a spot pixel in the spot's phase to enter beta", gt=0, le=1)
    beta_window: int = option(3, "odd window (px) of same-phase pixels averaged around a spot for beta", ge=1)
    beta_tiles: tuple[int, int] = option((1, 1), "tiles (rows, cols) with their own beta, for drifting maps", ge=1)
    weights: Literal["memberships", "fractions"] = option(
        "memberships", "phase weights of the wt% formula: EM memberships or linear-mixing fractions (needs mixing.enabled)"
    )
    beta_p: float = option(
        1e-3, "per-element test of each spot against its map pixel (Poisson prediction interval, widened by the spots' "
        "overdispersion): spots outside it at this p-value are left out of that element's beta (0 = off)", ge=0, lt=1
    )
    parameters: str | None = option(None, "parameters.csv of an earlier run: quantify with it instead of spots", path=True)
    chunk_size: int = option(65536, "pixels per block of quantification work", ge=1)


@dataclass(frozen=True)
class MixingConfig:
    """Linear mixing model: per-pixel phase fractions on the simplex (Poisson likelihood)."""

    enabled: bool = option(True, "fit per-pixel phase fractions beside the memberships")
    n_active: int = option(
        0, "phases considered per pixel: 0 = all (unbiased modes); N = its N best single-phase fits (less work "
           "with many phases, but a phase that only dilutes the others' signals, like quartz, is then left out of "
           "its boundary pixels: its mode comes out low)", ge=0)
    max_iter: int = option(30, "mirror-descent iterations per pixel", ge=1)
    pure_p: float = option(
        1e-3, "pixels that their best pure phase explains at this p-value (Poisson deviance) stay pure; 0 = unmix all", ge=0, lt=1
    )
    chunk_size: int = option(16384, "pixels per block of mixing work (bounds memory)", ge=1)


@dataclass(frozen=True)
class SummaryConfig:
    """Summaries beyond modal proportions and phase compositions."""

    regions: dict[str, tuple[int, int, int, int]] = option(
        {}, "bulk composition of rectangles: name -> [row0, row1, col0, col1] (pixels, end exclusive)", ge=0
    )
    profiles: dict[str, tuple[float, float, float, float]] = option(
        {}, "profiles: name -> [x0, y0, x1, y1] (pixel column, row of start and end); garnet ones start at the core", ge=0
    )
    profile_width: int = option(1, "pixels averaged across a profile", ge=1)
    domains: str | None = option(
        None, "bulk composition of domains from a mask: a .png/.tif image, one colour per domain (black = none), or a "
        ".npy/.csv/.txt matrix of integer labels (0 = none), of the map's size", path=True,
    )
    domain_names: dict[str, str] = option(
        {}, "names of the domains of summary.domains: colour ('#ff0000') or label ('3') -> name; unnamed domains are "
        "called by their colour (d_ff0000) or label (domain_3)"
    )
    polygons: dict[str, tuple[tuple[float, float], ...]] = option(
        {}, "bulk composition of polygons: name -> [[x, y], ...] vertices (pixel column, row; at least 3); a pixel "
        "belongs to the polygon when its centre lies inside"
    )
    garnet: str = option("Grt", "phase whose pixels get garnet end-members (X_alm, X_prp, X_grs, X_sps)")
    garnet_min_membership: float = option(0.5, "garnet pixels: membership (or fraction) at least this", gt=0, le=1)

    def __post_init__(self):
        for name, vertices in self.polygons.items():
            if len(vertices) < 3:
                raise ConfigError(f"summary.polygons.{name}: a polygon needs at least 3 vertices [[x, y], ...], "
                                  f"got {len(vertices)}.")
        names = [*self.regions, *self.polygons, *self.domain_names.values()]
        clash = sorted({n for n in names if names.count(n) > 1 or n == "section"})
        if clash:
            raise ConfigError(f"summary: the name(s) {', '.join(clash)} are used twice among summary.regions, "
                              "summary.polygons and summary.domain_names, or are 'section' (the whole map): rename them.")


@dataclass(frozen=True)
class BulkFormsConfig:
    """The bulk of the section, each region, domain and polygon in the input forms of
    phase-equilibrium programs (mol % of oxides; docs/qmap.md)."""

    forms: tuple[Literal["perplex", "theriak", "magemin"], ...] = option(
        ("perplex", "theriak", "magemin"), "forms written: perplex (build component list, bulk_perplex.txt), theriak "
        "(THERIN bulk lines, bulk_theriak.txt), magemin (MAGEMinApp bulk file, bulk_magemin.dat); [] = none"
    )
    h2o_mol: float | None = option(
        None, "H2O in mol % of each bulk written (the maps do not measure H); empty = no H2O component", ge=0, lt=100
    )
    fe3_fe: float | None = option(
        None, "Fe3+/Fe_total of the bulks (the maps give total Fe as FeO): O2 in Perple_X, O in MAGEMin, the oxygen in "
        "Theriak; empty = all Fe2+ (MAGEMin then gets O = 0, Theriak O(?))", ge=0, le=1
    )
    magemin_db: str = option("mp", "MAGEMin database named in bulk_magemin.dat (mp metapelite, mb metabasite, ig...)")


@dataclass(frozen=True)
class StructuralConfig:
    """Structural formulae of the mapped phases, per pixel (jaxpetro.models.structural; docs/structural.md).

    A phase gets a formula when its name is a known abbreviation (Grt, Bt, Ms, Chl, Pl, Kfs,
    Cpx, Opx, Amp, Ol, Ep, Spl, full names and common synonyms, case-insensitive) or is
    mapped in ``minerals``; other phases (Qtz, Ilm...) are skipped without a message.
    """

    enabled: bool = option(True, "structural formulae of every mapped phase with a mineral kind (needs wt% maps)")
    minerals: dict[str, str | None] = option(
        {}, "phase -> mineral kind (garnet, biotite, muscovite, chlorite, plagioclase, k_feldspar, clinopyroxene, "
        "orthopyroxene, amphibole, olivine, epidote, spinel), overriding the built-in names; none = no formula"
    )
    fe3: dict[str, str] = option(
        {}, "mineral kind or phase -> Fe3+ method (charge_balance, none, all_ferric, measured); default: the kind's "
        "(charge balance after Droop 1987 for garnet, pyroxenes, amphibole, epidote, spinel; all Fe2+ otherwise)"
    )
    fe3_from: Literal["phase_mean", "pixel"] = option(
        "phase_mean", "where charge balance applies: Fe3+/Fe of every pixel from the charge balance of the phase's mean "
        "composition (phase_mean), or of each pixel (pixel: noisy, and biased up by counting noise since Fe3+ >= 0)"
    )
    min_weight: float = option(
        0.9, "pixels whose weight in the phase (mixing fraction, or membership without mixing) is at least this; "
        "a mixed pixel's wt% is a mixture and has no formula of either phase", gt=0, le=1
    )
    pixels: bool = option(
        True, "per-pixel formulae in qmap.h5 (structural/<Phase>/...) and PNG maps; false = per-phase means only "
        "(structural.csv)"
    )
    maps: dict[str, tuple[str, ...]] = option(
        {}, "mineral kind or phase -> quantities drawn in structural_<Phase>.png (end-member, ratio, site or "
        "cation names, e.g. {garnet: [X_alm, X_prp, X_grs, X_sps, Fe3]}); default: the main ones of each kind"
    )

    def __post_init__(self):
        if not (self.minerals or self.fe3):
            return
        # the valid kinds and methods live with the formulae (imported here only when needed)
        from jaxpetro.models.structural import FE3_METHODS, MINERALS, mineral_kind

        for phase in self.minerals:
            mineral_kind(phase, self.minerals)  # ConfigError naming structural.minerals.<phase> and the kinds
        for key, method in self.fe3.items():
            if method not in FE3_METHODS:
                raise ConfigError(f"structural.fe3.{key}: {method!r} is not an Fe3+ method; use one of "
                                  f"{', '.join(FE3_METHODS)}.")
            kind = str(key).strip().lower()
            kind = kind if kind in MINERALS else mineral_kind(str(key), self.minerals)  # a phase name
            if method == "charge_balance" and kind in MINERALS and MINERALS[kind].cations is None:
                raise ConfigError(f"structural.fe3.{key}: charge balance is indeterminate for {kind} (unanalysed H "
                                  "and site vacancies, Droop 1987); use none, all_ferric or measured.")


@dataclass(frozen=True)
class QmapOutputConfig(OutputConfig):
    """Figures and tables of qmap: the common keys, the colour scale of the oxide maps and the
    text matrices."""

    text_matrices: bool = option(
        True, "one <OXIDE>.csv matrix of wt% per oxide (rows x cols, 4 significant digits); the same maps are in "
        "qmap.h5 (wt/<OXIDE>); false saves ~20 MB and ~0.3 s per oxide of a 2000 x 2000 map"
    )

    oxide_scale: Literal["percentile", "phase"] = option(
        "percentile", "colour scale of the oxide maps: 'percentile' = one range for the map, the 0.5-99.5 "
        "percentiles of its pixels; 'phase' = that panel and, beside it, one panel per phase holding the oxide, on "
        "the 1-99 percentile range of that phase's pixels (minor zoning next to a major phase); see docs/qmap.md"
    )


@dataclass(frozen=True)
class ParallelConfig:
    """The pixel axis over this process's devices (jaxpetro.models.parallel; docs/scaling.md)."""

    devices: Literal["all"] | int = option(
        "all", "local devices (GPUs, or CPU host devices) the map's pixels are sharded over for the EM, the mixing "
        "and the quantification: all, or a number N (1 = no sharding); results equal to rounding", ge=1
    )


@dataclass(frozen=True, kw_only=True)
class QmapConfig:
    """Quantitative mapping: EPMA X-ray maps + spot analyses -> phases and wt% maps."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)
    input: QmapInputConfig = option(help="input files")
    clustering: ClusteringConfig = section(ClusteringConfig, "phase clustering")
    spots: SpotsConfig = section(SpotsConfig, "spot handling")
    quantify: QuantifyConfig = section(QuantifyConfig, "calibration to wt%")
    mixing: MixingConfig = section(MixingConfig, "mixed pixels")
    densities: dict[str, float] = option(
        {}, "density per phase (g/cm³) for bulk compositions; unlisted phases take the built-in table", gt=0
    )
    summary: SummaryConfig = section(SummaryConfig, "summaries")
    structural: StructuralConfig = section(StructuralConfig, "structural formulae per pixel")
    bulk: BulkFormsConfig = section(BulkFormsConfig, "bulk compositions for Perple_X, Theriak-Domino, MAGEMin")
    output: QmapOutputConfig = section(QmapOutputConfig, "figures and tables")
    parallel: ParallelConfig = section(ParallelConfig, "devices the pixels are sharded over")

    def __post_init__(self):
        if self.quantify.weights == "fractions" and not self.mixing.enabled:
            raise ConfigError("quantify.weights: fractions needs mixing.enabled: true.")
        if self.quantify.beta_window % 2 == 0:
            raise ConfigError(f"quantify.beta_window must be odd, got {self.quantify.beta_window}.")

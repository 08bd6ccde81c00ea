"""Config schema of ``jaxpetro isocon`` (mass transfer from whole-rock analyses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxpetro.config.common import OutputConfig
from jaxpetro.config.loader import option, section
from jaxpetro.errors import ConfigError


@dataclass(frozen=True)
class SparseConfig:
    """Sparse isocon: which elements are immobile, chosen from the data (method: sparse)."""

    q: float = option(1.0, "exponent of the group penalty, 0 < q <= 1 (1 = convex group lasso; smaller = "
                           "elements more strictly either mobile or immobile)", gt=0, le=1)
    criterion: Literal["bic", "aic", "bic_unknown", "fixed"] = option(
        "bic", "how λ is chosen on the path: bic/aic with the analytical errors as the noise, bic_unknown "
               "with the noise scale estimated, or fixed (lambda_fraction)")
    lambda_fraction: float | None = option(None, "λ as a fraction of λ_max, for criterion: fixed", gt=0, le=1)
    n_lambda: int = option(40, "number of λ on the regularisation path", ge=3)
    lambda_min_ratio: float = option(0.01, "smallest λ of the path as a fraction of λ_max", gt=0, lt=1)
    sparse_group: bool = option(False, "allow an element to be immobile in some samples only (ℓ1 + group)")
    l1_ratio: float = option(0.5, "share of the ℓ1 penalty in the sparse-group variant", gt=0, lt=1)
    refine: bool = option(True, "after the path, move elements across the isocon while that lowers the "
                                "criterion (bic/aic, group lasso only; not with criterion: fixed): fewer wrong immobile sets")
    refine_steps: int = option(50, "iterations of that refinement (it stops earlier at a fixed point)", ge=1)
    refine_multistart: bool = option(True, "also refine from the isocon through each element and keep the set of "
                                           "lowest criterion (the refinement is local: fewer wrong sets)")
    min_immobile: int = option(3, "fewest immobile elements per sample for a model to be accepted", ge=1)
    fit_p_min: float = option(1e-3, "reject a selection whose immobile elements scatter about the isocon more "
                                    "than the analytical errors allow (chi-square p-value below this; 0 = off)",
                              ge=0, lt=1)
    prior: Literal["none", "hfse"] = option(
        "none", "preset of elements favoured as immobile (their penalty weight is prior_weight): hfse = Ti, Zr, "
                "Hf, Nb, Ta, Th, Y, Al and the rare earths (oxide columns count as their cation: TiO2 is Ti)")
    prior_weight: float = option(2.0, "penalty weight of the prior's elements (1 = no preference; > 1 = harder "
                                      "to call mobile)", gt=0)
    weights: dict[str, float] = option({}, "penalty weight per element or column (default 1; overrides the prior), "
                                           "e.g. {Zr: 3, K2O: 0.5}: the element's resistance to moving", gt=0)
    solver: Literal["bcd", "fista"] = option("bcd", "block coordinate descent or accelerated proximal gradient")
    tol: float = option(1e-10, "solver tolerance on the relative KKT residual", gt=0)
    max_iter: int = option(20000, "maximum solver iterations per λ", ge=10)
    reweight_eps: float = option(0.01, "smoothing of the q < 1 reweighting (log units)", gt=0)
    n_reweight: int = option(5, "reweighting steps for q < 1", ge=1)
    multistart: bool = option(True, "for q < 1, also start the reweighting from the isocon through each element "
                                    "(finds the largest immobile set more often; ~20x the work of one start)")

    def __post_init__(self):
        if self.criterion == "fixed" and self.lambda_fraction is None:
            raise ConfigError("criterion 'fixed' needs 'sparse.lambda_fraction' (λ / λ_max, e.g. 0.2).")


@dataclass(frozen=True)
class UncertaintyConfig:
    """Monte-Carlo intervals over the analytical errors."""

    replicates: int = option(1000, "Monte-Carlo replicates (0 = no intervals)", ge=0)
    level: float = option(0.95, "probability of the central intervals", gt=0, lt=1)
    interval: Literal["basic", "studentized"] = option(
        "basic", "basic: pivotal bootstrap interval (measured coverage on target); studentized: bootstrap-t "
                 "scaled by each isocon's Birge ratio, wider where the immobile elements scatter beyond their errors")


@dataclass(frozen=True, kw_only=True)
class IsoconConfig:
    """Mass transfer: classical and sparse isocon analysis of whole-rock analyses."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)
    data: str = option(help="whole-rock CSV: a 'sample' column, then one column per element/oxide "
                            "(optional '<element>_sd' error columns)", path=True)
    reference: tuple[str, ...] = option(help="protolith sample name(s), e.g. [ref1]; several are averaged")
    units: dict[str, str] = option({"default": "auto"}, "unit per column (wt%, ppm, ppb...), 'default' for the "
                                                        "rest; auto = wt% for oxides, ppm for elements; units in "
                                                        "the header ('SiO2 (wt%)', 'Zr_ppm') or a units row "
                                                        "need no entry, a contradicting entry is an error")
    exclude: tuple[str, ...] = option([], "columns that are not elements (e.g. LOI, Total, lithology)")
    method: Literal["sparse", "classical"] = option("sparse", "sparse: immobile elements chosen from the data; "
                                                              "classical: named in 'immobile'")
    immobile: tuple[str, ...] = option([], "immobile elements for method: classical (e.g. [TiO2, Zr, Al2O3])")
    relative_error: float = option(0.05, "relative 1-sigma analytical error where no '<element>_sd' column",
                                   gt=0, lt=1)
    below_detection_sd: float = option(1.0, "log-space 1-sigma given to imputed below-detection values", gt=0)
    densities: dict[str, float] = option({}, "density per sample (g/cm^3), for volume changes; references' "
                                             "mean is the protolith's", gt=0)
    sensitivity: bool = option(True, "write the Jacobian of the mass ratios w.r.t. every input concentration "
                                     "(isocon.h5/sensitivity; cheap, so on by default)")
    sparse: SparseConfig = section(SparseConfig, "sparse isocon")
    uncertainty: UncertaintyConfig = section(UncertaintyConfig, "intervals")
    output: OutputConfig = section(OutputConfig, "figures")

    def __post_init__(self):
        if not self.reference:
            raise ConfigError("'reference' names no sample; list the protolith sample(s), e.g. reference: [ref1].")
        if self.method == "classical" and not self.immobile:
            raise ConfigError("method 'classical' needs the immobile elements in 'immobile', e.g. "
                              "immobile: [TiO2, Zr]; or use method: sparse to select them from the data.")


__all__ = ["IsoconConfig", "SparseConfig", "UncertaintyConfig"]

"""Config schema of ``jaxpetro qmap`` (quantitative mapping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxpetro.config.loader import option, section
from jaxpetro.config.common import OutputConfig


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
    extra_components: int = option(0, "components added beyond the phases of the spots", ge=0)
    use_bse: bool = option(True, "cluster on the electron (BSE) channel too")
    max_iter: int = option(500, "maximum EM iterations", ge=1)
    tol: float = option(1e-7, "convergence tolerance on the mean log-likelihood per pixel", gt=0)
    reg_covar: float = option(1e-6, "added to covariance diagonals for stability (gaussian only)", gt=0)
    chunk_size: int | None = option(
        None, "pixels per block of EM work (bounds memory); empty = automatic, ~8 MB of features per block", ge=1
    )


@dataclass(frozen=True, kw_only=True)  # kw_only: required keys may follow defaulted ones
class QmapInputConfig:
    """Where the maps and spot analyses are (paths relative to the working directory)."""

    format: Literal["generic"] = option(
        "generic", "input format: 'generic' = a map stack (.npz/.h5) + a spot CSV (JEOL exports: next release)"
    )
    maps: str = option(help="map stack file (.npz or .h5): maps (channels, rows, cols), channels, dwell_ms, current_A")
    spots: str | None = option(None, "spot CSV with columns x_px, y_px, phase (optional: without it, use clustering.init: kmeans++)")


@dataclass(frozen=True, kw_only=True)
class QmapConfig:
    """Quantitative mapping: cluster EPMA X-ray maps into phases anchored on spot analyses."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)
    input: QmapInputConfig = option(help="input files")
    clustering: ClusteringConfig = section(ClusteringConfig, "phase clustering")
    output: OutputConfig = section(OutputConfig, "figures")

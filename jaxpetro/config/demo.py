"""Config schema of ``jaxpetro demo`` (the embedded synthetic thin section)."""

from __future__ import annotations

from dataclasses import dataclass

from jaxpetro.config.loader import option, section
from jaxpetro.config.common import OutputConfig
from jaxpetro.config.qmap import ClusteringConfig, MixingConfig, QuantifyConfig

__all__ = ["DemoConfig", "SyntheticConfig"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic thin section: map size, spot analyses and measurement conditions."""

    rows: int = option(256, "pixel rows of the synthetic X-ray maps", ge=16)
    cols: int = option(256, "pixel columns of the synthetic X-ray maps", ge=16)
    n_spots: int = option(40, "number of quantitative spot analyses", ge=12)
    dwell_ms: float = option(20.0, "dwell time per pixel (ms)", gt=0)
    current_nA: float = option(100.0, "beam current (nA)", gt=0)
    step_um: float = option(2.0, "pixel step (µm)", gt=0)
    garnet_size: tuple[float, float] = option([0.12, 0.14], "radius range of the largest garnet / map side; "
                                                            "smaller garnets (late, some cut off-centre) fill ~11 %")


@dataclass(frozen=True)
class DemoConfig:
    """Embedded demo: quantify a synthetic thin section with known truth, invert a garnet
    profile and a whole-rock set."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)
    synthetic: SyntheticConfig = section(SyntheticConfig, "synthetic thin section")
    clustering: ClusteringConfig = section(ClusteringConfig, "phase clustering")
    quantify: QuantifyConfig = section(QuantifyConfig, "calibration to wt%")
    mixing: MixingConfig = section(MixingConfig, "mixed pixels")
    ptpath: bool = option(False, "also invert a synthetic 1-D garnet profile (jaxpetro ptpath's own demo) into ptpath/")
    isocon: bool = option(True, "also run a synthetic sparse isocon analysis (jaxpetro isocon) into isocon/")
    output: OutputConfig = section(OutputConfig, "figures")
    per_grain: bool = option(False, "with section: also invert every garnet alone (one ptpath run each)")
    # last: the field shadows the ``section`` helper in the class body
    section: bool = option(True, "the one-thin-section chain (jaxpetro section) on the quantified map: garnets "
                                 "found, 2-D zoning, joint P-T path against the truth, into section/")


"""Config schema of ``jaxpetro section`` (one thin section to a P–T–t path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxpetro.config.common import OutputConfig
from jaxpetro.config.loader import nested_config, option, section
from jaxpetro.errors import ConfigError

__all__ = ["GrainsConfig", "SectionConfig"]


@dataclass(frozen=True)
class GrainsConfig:
    """Finding the garnets and reading their 2-D zoning (:mod:`jaxpetro.models.grains`)."""

    phase: str = option("Grt", "name of the garnet phase in the qmap result")
    min_fraction: float = option(0.5, "garnet fraction of a pixel that belongs to a grain", gt=0, le=1)
    pure_fraction: float = option(0.9, "garnet fraction of a pixel whose composition enters a shell "
                                       "(mixed boundary and inclusion pixels are left out)", gt=0, le=1)
    min_pixels: int = option(60, "smallest grain (pixels, inclusions filled)", ge=5)
    max_grains: int = option(12, "largest number of grains used (largest first)", ge=1)
    mask: str | None = option(None, "grain mask image (PNG/TIFF/.npy; 0 = background, one value per grain) "
                                    "instead of finding the grains", path=True)
    seeds: tuple[tuple[float, float], ...] = option([], "only the grains containing these (row, col) pixels, "
                                                        "e.g. [[120, 80], [40, 200]]")
    centre: Literal["mn", "geometric"] = option("mn", "growth centre: the Mn (spessartine) maximum or the "
                                                      "geometric centre")
    shell_width_um: float = option(6.0, "width of the concentric shells (µm)", gt=0)
    min_shell_pixels: int = option(8, "fewest usable pixels of a shell", ge=2)
    total_wt: tuple[float, float] = option([96.0, 104.0], "range of oxide totals (wt%) of usable pixels "
                                                          "(cracks, holes and bad pixels fall outside)")
    directions: int = option(8, "radial profiles per grain (figure and profiles.csv)", ge=1)
    use_edge_grains: bool = option(True, "use grains touching the map edge (their partial shells; warned)")
    model_sd: float = option(0.005, "sd of the end-member fractions added when grains are compared "
                                    "(alignment, consistency)", gt=0)
    per_grain: bool = option(True, "also invert every grain alone (grains/<id>/ptpath)")
    calibration_error: bool = option(
        True, "add the qmap calibration's error (alpha, beta of FeO, MgO, CaO, MnO; shared by every shell and "
              "grain) to the joint path's sd and bands, by its linear effect: one more ptpath run per oxide")

    def __post_init__(self):
        if self.pure_fraction < self.min_fraction:
            raise ConfigError(f"grains.pure_fraction ({self.pure_fraction}) must be >= grains.min_fraction "
                              f"({self.min_fraction}).")
        if not self.total_wt[0] < self.total_wt[1]:
            raise ConfigError(f"grains.total_wt must be [low, high] with low < high, not {list(self.total_wt)}.")


@dataclass(frozen=True)
class SectionConfig:
    """One thin section to a P–T path: quantify the map, find its garnets, invert their joint zoning.

    ``qmap:`` quantifies the map, ``grains:`` finds the garnets and reads their 2-D zoning,
    ``ptpath:`` inverts one joint P–T path and one per grain."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)
    qmap: dict = nested_config("the qmap config of the map, as in its own YAML (input, clustering, ...)")
    ptpath: dict = nested_config("the ptpath config of the inversions without 'profile' (forward, "
                                 "ensemble, hyperparameters, ...), as in its own YAML")
    grains: GrainsConfig = section(GrainsConfig, "garnet grains and their zoning")
    isocon: dict = nested_config("optional: a sparse isocon between the map's domain bulks (the qmap block's "
                                 "summary.regions / summary.domains / summary.polygons), as an isocon config "
                                 "without 'data'; 'reference' names the protolith domain")
    output: OutputConfig = section(OutputConfig, "figures")

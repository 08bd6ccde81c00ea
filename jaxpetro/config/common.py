"""Config sections shared by several workflows."""

from __future__ import annotations

from dataclasses import dataclass

from jaxpetro.config.loader import option


@dataclass(frozen=True)
class OutputConfig:
    """What is written besides the HDF5 results."""

    plots: bool = option(True, "write PNG figures")
    dpi: int = option(120, "resolution of the figures (dots per inch)", ge=20)


__all__ = ["OutputConfig"]

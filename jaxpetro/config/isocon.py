"""Config schema of ``jaxpetro isocon``."""

from __future__ import annotations

from dataclasses import dataclass

from jaxpetro.config.loader import option


@dataclass(frozen=True, kw_only=True)
class IsoconConfig:
    """Mass transfer: classical and sparse isocon analysis of whole-rock analyses."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)

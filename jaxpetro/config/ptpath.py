"""Config schema of ``jaxpetro ptpath``."""

from __future__ import annotations

from dataclasses import dataclass

from jaxpetro.config.loader import option


@dataclass(frozen=True, kw_only=True)
class PtpathConfig:
    """P–T–t path of a zoned garnet (ensemble Kalman smoother along radius)."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)

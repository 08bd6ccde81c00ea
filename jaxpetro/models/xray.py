"""X-ray measurement model of EPMA maps: which channels count X-rays, and exposure.

(Dead time and the calibration to wt% of SCIENCE.md section A join this module with
the quantification workflow.)
"""

from __future__ import annotations

import numpy as np

#: Electron-image signals of JEOL and other instruments: usable for clustering, never
#: dead-time corrected or quantified, and not Poisson counts.
ELECTRON_SIGNALS = frozenset({"BSE", "BSI", "COMPO", "CP", "SEI", "SL", "TOPO", "TP"})


def is_electron(channel: str) -> bool:
    """Whether a channel name is an electron image (BSE, COMPO, SEI...) rather than X-rays."""
    return channel.strip().upper() in ELECTRON_SIGNALS


def exposure_s_uA(dwell_ms, current_A) -> np.ndarray:
    """Exposure of a pixel, dwell time (ms) x probe current (A), in s x µA.

    Counts divided by it are rates in cps/µA, the unit of spot intensities.
    """
    return np.asarray(dwell_ms, np.float64) * 1e-3 * np.asarray(current_A, np.float64) * 1e6

"""Forward simulators that make realistic data with known truth.

``make_thin_section`` simulates EPMA X-ray maps and spot analyses of a garnet-mica
schist thin section (theme A of SCIENCE.md), the embedded demo data and the ground
truth of the mapping tests.
"""

from jaxpetro.synthetic.thin_section import (
    CHANNELS,
    ELEMENTS,
    OXIDES,
    PHASE_WT,
    PHASES,
    SpotTable,
    ThinSection,
    calibration_truth,
    garnet_wt,
    make_thin_section,
    mean_atomic_number,
)

__all__ = [
    "CHANNELS",
    "ELEMENTS",
    "OXIDES",
    "PHASE_WT",
    "PHASES",
    "SpotTable",
    "ThinSection",
    "calibration_truth",
    "garnet_wt",
    "make_thin_section",
    "mean_atomic_number",
]

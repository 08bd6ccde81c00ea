"""Forward simulators that make realistic data with known truth.

``make_thin_section`` simulates EPMA X-ray maps and spot analyses of a garnet-mica
schist thin section (the qntmap measurement model, docs/science.md), the embedded demo
data and the ground truth of the mapping tests.
"""

from jaxpetro.synthetic.thin_section import (
    CHANNELS,
    ELEMENTS,
    GARNET_PATH,
    GarnetGrowth,
    OXIDES,
    PHASE_WT,
    PHASES,
    SpotTable,
    ThinSection,
    calibration_truth,
    garnet_end_members_truth,
    garnet_path,
    garnet_wt,
    make_thin_section,
    mean_atomic_number,
)

from jaxpetro.synthetic import thin_section as _thin_section

__all__ = list(_thin_section.__all__)  # the thin-section simulator's public API, re-exported above

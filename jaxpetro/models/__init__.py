"""The petrology over the kernels: calibration, spots, mixing, summaries, formulas, forward
models, the P-T state-space model and mass balance. Models import kernels and
:mod:`jaxpetro.chemistry`, never io or workflows.

Modules:
    xray:          dead time, rates, the alpha/beta/gamma calibration to wt%, per-pixel errors and LOD.
    clustering:    validated soft clustering of whole maps (options = the ``clustering:`` keys).
    parallel:      the pixel axis over several local devices (sharded EM, per-pixel work).
    spots:         spot labels, sub-phase merging, outlier spots, spot/pixel agreement.
    mixing:        pure-phase rates, the single-phase screen and unmixing of mixed pixels.
    summaries:     modal proportions, phase and bulk compositions, profiles.
    oxides:        mineral formulas from wt% (cations per oxygen, garnet end-members with errors).
    garnet:        garnet forward models (table, linearised), fractionation, growth law.
    ptpath_model:  the state-space model of a zoning profile (priors, process and observation noise).
    massbalance:   Gresens/Grant isocon and the sparse isocon around the group-lasso kernel.
"""

from jaxpetro.models import (
    clustering,
    garnet,
    massbalance,
    mixing,
    oxides,
    parallel,
    ptpath_model,
    spots,
    summaries,
    xray,
)

__all__ = [
    "clustering",
    "garnet",
    "massbalance",
    "mixing",
    "oxides",
    "parallel",
    "ptpath_model",
    "spots",
    "summaries",
    "xray",
]

"""Every file format in and out. io imports :mod:`jaxpetro.chemistry` and :mod:`jaxpetro.errors`,
never models, kernels or workflows; submodules load on first use (``jaxpetro.io.jeol``), so
reading a file needs no JAX and no matplotlib.

Modules:
    generic:     instrument-neutral map stacks (.npz / .h5) and spot tables (CSV).
    masks:       mask and label images of a map (.npy, .csv/.txt, .png/.tif).
    jeol:        JEOL EPMA exports (both .cnd dialects, .qnt spot sets, conditions CSVs).
    parameters:  calibration parameters (alpha, beta, gamma) as CSV.
    perplex:     garnet composition tables over P-T (CSV, Perple_X .tab).
    profiles:    garnet zoning profiles and inclusion thermobarometry (CSV).
    wholerock:   whole-rock analyses with units, detection limits and errors (CSV).
    results:     HDF5/CSV/text writers (atomic), output folders, run attributes.
    plots:       PNG figures (pyplot-free, atomic).
    section_plots: the figure of ``jaxpetro section``.
"""

import importlib

__all__ = ["generic", "jeol", "masks", "parameters", "perplex", "plots", "profiles", "results", "section_plots",
           "wholerock"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxpetro.io.{name}")
    raise AttributeError(f"module 'jaxpetro.io' has no attribute {name!r}")

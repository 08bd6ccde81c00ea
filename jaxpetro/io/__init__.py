"""Every file format in and out. io imports :mod:`jaxpetro.chemistry` and :mod:`jaxpetro.errors`,
never models, kernels or workflows; submodules load on first use (``jaxpetro.io.jeol``), so
reading a file needs no JAX and no matplotlib.

Modules:
    generic:     instrument-neutral map stacks (.npz / .h5) and spot tables (CSV).
    masks:       mask and label images of a map (.npy, .csv/.txt, .png/.tif).
    jeol:        JEOL EPMA exports (both .cnd dialects, text or binary .map maps, .qnt spot sets, conditions CSVs).
    cameca:      Cameca SX / Peaksight text map exports and spot CSVs.
    pfe:         Probe for EPMA / CalcImage .DAT quantified maps (a reference to compare qmap with).
    oxford:      Oxford AZtec .h5oina EDS maps (h5py).
    bruker:      Bruker .bcf hypermaps as element maps (optional rosettasciio, the 'bruker' extra).
    parameters:  calibration parameters (alpha, beta, gamma) as CSV.
    perplex:     garnet composition tables over P-T (CSV, Perple_X .tab).
    profiles:    garnet zoning profiles and inclusion thermobarometry (CSV).
    wholerock:   whole-rock analyses with units, detection limits and errors (CSV).
    results:     HDF5/CSV/text writers (atomic), output folders, run attributes.
    plots:       PNG figures (pyplot-free, atomic).
    section_plots: the figure of ``jaxpetro section``.
"""

import importlib

__all__ = ["bruker", "cameca", "generic", "jeol", "masks", "oxford", "parameters", "perplex", "pfe", "plots", "profiles",
           "results", "section_plots", "wholerock"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"jaxpetro.io.{name}")
    raise AttributeError(f"module 'jaxpetro.io' has no attribute {name!r}")

"""jaxpetro: a JAX-based differentiable inversion engine for petrology.

Three inverse problems share one engine of pure JAX kernels (``jaxpetro.kernels``):
quantitative EPMA mapping (soft-clustering EM), P-T-t paths from garnet zoning
(ensemble Kalman smoothing along radius) and mass transfer (sparse isocon).

Importing jaxpetro changes no global JAX setting. The command line and the workflows
(``jaxpetro.workflows.*.run``) run in float64 inside ``jax.enable_x64(True)``; a kernel
called directly works in the dtype it is given, and one that needs float64 (sufficient
statistics, Kalman algebra) says so with a clear error when float64 is off.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

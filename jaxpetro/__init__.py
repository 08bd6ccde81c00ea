"""jaxpetro: a JAX-based differentiable inversion engine for petrology.

Three inverse problems share one engine of pure JAX kernels (``jaxpetro.kernels``):
quantitative EPMA mapping (soft-clustering EM), P-T-t paths from garnet zoning
(ensemble Kalman smoothing along radius) and mass transfer (sparse isocon).
"""

import jax

# Sufficient statistics, likelihoods and Kalman algebra need float64; big map arrays
# stay float32 by explicit choice at the call sites.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

"""The float64 requirement of kernels whose sums or factorisations need it.

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import jax


def require_float64(kernel: str) -> None:
    """Raise a clear error when float64 is off (at trace time, so once per compilation).

    Without ``jax_enable_x64`` every float64 request silently becomes float32, and sums of
    millions of pixel statistics or Kalman covariance updates lose the digits the
    convergence tests rely on; failing loudly beats a quietly wrong answer.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{kernel} needs float64: call it inside `with jax.enable_x64(True):` or set "
            "jax.config.update('jax_enable_x64', True) before creating arrays "
            "(the jaxpetro command line and workflows do this for you)"
        )


__all__ = ["require_float64"]

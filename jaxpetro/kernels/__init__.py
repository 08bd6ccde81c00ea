"""Pure JAX kernels: no files, no config, no printing; each module can be read on its own.

Every kernel follows one shape: a frozen options object (field names = config keys;
structural fields static, real-valued fields traced), a State with public ``init`` /
``step``, a ``fit`` / ``solve`` looping over them, and a result carrying one :class:`Status`.

Modules:
    mixture:      soft-clustering EM (Poisson with exposure, Gaussian diag/full), anchors, BIC/ICL.
    kmeans:       k-means++ seeding.
    unmixing:     Poisson linear unmixing of pixels on the simplex (entropic mirror descent).
    kalman:       exact Kalman filter, RTS smoother and log-likelihood (linear-Gaussian reference).
    enks:         ensemble Kalman filter/smoothers along an ordered axis, marginal likelihood, MAP path.
    group_lasso:  proximal (sparse-)group lasso solvers with implicit differentiation.
"""

from jaxpetro.kernels import enks, group_lasso, kalman, kmeans, mixture, unmixing
from jaxpetro.kernels._options import KernelOptions, static
from jaxpetro.kernels._precision import require_float64
from jaxpetro.kernels._status import Status, StatusCode, error_if, make_status
from jaxpetro.kernels.enks import SmootherOptions
from jaxpetro.kernels.group_lasso import LassoOptions
from jaxpetro.kernels.mixture import MixtureOptions
from jaxpetro.kernels.unmixing import UnmixOptions

__all__ = [
    "KernelOptions",
    "LassoOptions",
    "MixtureOptions",
    "SmootherOptions",
    "Status",
    "StatusCode",
    "UnmixOptions",
    "enks",
    "error_if",
    "group_lasso",
    "kalman",
    "kmeans",
    "make_status",
    "mixture",
    "require_float64",
    "static",
    "unmixing",
]

"""The NumPy reference of the full-lag stochastic ensemble Kalman smoother.

One implementation serves two purposes: the test oracle (replaying the kernel's own
standard-normal draws, it must reproduce ``kernels.enks.ensemble_smoother`` to rounding)
and the NumPy peer that ``scripts/bench/bench_enks.py`` times against the kernel.
Plain NumPy, one profile, a loop over shells (Evensen 2003; Evensen & van Leeuwen 2000).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

JITTER = 1e-12  # the kernel's relative jitter before a Cholesky factorisation of Q


def chol(C: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor with the kernel's small relative jitter (Q of static components is singular)."""
    scale = max(np.trace(C) / C.shape[0], np.finfo(float).tiny)
    return np.linalg.cholesky(0.5 * (C + C.T) + JITTER * scale * np.eye(C.shape[0]))


def numpy_enks(
    h: Callable[[int, np.ndarray], np.ndarray],
    X0: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    R: np.ndarray,
    Q: np.ndarray,
    standard_normal: Callable[[int, int, tuple[int, ...]], np.ndarray],
) -> np.ndarray:
    """Smoothed ensembles (n, N, d) of one profile.

    Args:
        h: ``h(k, X)`` predicted observations (N, p) of the ensemble X (N, d) at shell k.
        X0: prior ensemble (N, d); y, mask: (n, p); R: (n, p, p); Q: (n, d, d), Q[0] unused.
        standard_normal: ``standard_normal(k, which, shape)`` draws for shell k: ``which`` 0 is
            the model noise (N, d) (asked for k >= 1, before the observation draws), 1 the
            observation perturbations (N, p).
    """
    n, p = y.shape
    N, d = X0.shape
    buf = np.zeros((n, N, d))
    Xa = X0
    for k in range(n):
        Xf = X0.copy() if k == 0 else Xa + standard_normal(k, 0, (N, d)) @ chol(Q[k]).T
        HX = h(k, Xf)
        m = mask[k].astype(float)
        y0 = np.where(mask[k], y[k], 0.0)
        R0 = R[k] * np.outer(m, m) + np.diag(1.0 - m)
        V = (HX - HX.mean(axis=0)) * m
        S = V.T @ V / (N - 1) + R0
        E = standard_normal(k, 1, (N, p)) @ np.linalg.cholesky(R0).T
        E = E - E.mean(axis=0)  # centred perturbations, as in the kernel
        U = np.linalg.solve(S, ((y0 + E - HX) * m).T).T
        Rf = V / (N - 1)
        Xa = Xf + U @ (Rf.T @ Xf)
        buf[k] = Xf
        proj = np.einsum("Nk,jNd->jkd", Rf, buf[: k + 1])
        buf[: k + 1] += np.einsum("Nk,jkd->jNd", U, proj)
    return buf


__all__ = ["JITTER", "chol", "numpy_enks"]

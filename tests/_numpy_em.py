"""A reference Poisson-mixture EM in plain NumPy (float64): the test oracle of
:func:`jaxpetro.kernels.mixture.fit` for the Poisson family, and the NumPy peer that
``scripts/bench/bench_mixture.py`` times the kernel against.

It implements the same model and updates as the kernel, written the obvious way
(Dempster, Laird & Rubin 1977): per pixel and component
``l_ik = x_i . log(rate_k) - e_i sum_j rate_kj + log pi_k`` (up to pixel constants),
responsibilities ``r = softmax_k(l)``, then ``rate_k = sum_i r_ik x_i / sum_i r_ik e_i``
(floored per channel at 1e-6 of the channel's mean rate, + 1e-12) and
``pi_k = sum_i r_ik / N``. No anchors, no mask.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln


def rate_floor(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The smallest rate per channel: 1e-6 of the channel's mean rate, + 1e-12."""
    return 1e-6 * x.sum(axis=0, dtype=np.float64) / e.sum(dtype=np.float64) + 1e-12


def pixel_constant(x: np.ndarray, e: np.ndarray) -> float:
    """sum_ij [x_ij log e_i - log x_ij!]: the parameter-free part of the log-likelihood."""
    x = x.astype(np.float64)
    return float(np.sum(x.sum(axis=1) * np.log(e.astype(np.float64))) - np.sum(gammaln(x + 1.0)))


def poisson_em(x, e, log_w, rates, n_iter: int, chunk: int = 65536, floor=None):
    """``n_iter`` EM iterations from (log weights (K,), rates (K, D)), chunk by chunk.

    Returns (log weights, rates, history) where ``history[t]`` is the sum over pixels of
    ``logsumexp_k l_ik`` at the parameters before update ``t`` (pixel constants excluded:
    add :func:`pixel_constant` for the true log-likelihood).
    """
    n = x.shape[0]
    floor = rate_floor(x, e) if floor is None else floor
    log_w = np.array(log_w, np.float64)
    rates = np.array(rates, np.float64)
    k, d = rates.shape
    history = []
    for _ in range(n_iter):
        log_rate = np.log(rates)
        total = rates.sum(axis=1)
        nk = np.zeros(k)
        s1 = np.zeros((k, d))
        se = np.zeros(k)
        ll = 0.0
        for s in range(0, n, chunk):
            xc = x[s : s + chunk].astype(np.float64)
            ec = e[s : s + chunk].astype(np.float64)
            lj = xc @ log_rate.T
            lj -= ec[:, None] * total
            lj += log_w
            m = lj.max(axis=1, keepdims=True)
            lj -= m
            np.exp(lj, out=lj)
            tot = lj.sum(axis=1, keepdims=True)
            ll += float(m.sum() + np.log(tot).sum())
            lj /= tot
            nk += lj.sum(axis=0)
            s1 += lj.T @ xc
            se += lj.T @ ec
        history.append(ll)
        rates = np.maximum(s1 / se[:, None], floor)
        nk = np.maximum(nk, 1e-10)
        log_w = np.log(nk) - np.log(nk.sum())
    return log_w, rates, np.asarray(history)

"""Batched soft-clustering EM for per-pixel mixtures.

Three component families share one expectation-maximisation driver:

* ``"poisson"`` -- counts with a per-pixel exposure, ``x_ij ~ Poisson(e_i * rate_kj)``
  (rates in counts per unit exposure; the model of Yasumoto et al. 2018, Am. Mineral.,
  for X-ray maps; see docs/science.md);
* ``"diag"``    -- Gaussian with diagonal covariance;
* ``"full"``    -- Gaussian with full covariance (stored as its lower Cholesky factor).

EM itself is Dempster, Laird & Rubin (1977, J. R. Stat. Soc. B 39:1); the Gaussian
M-steps are those of scikit-learn's ``GaussianMixture`` (the tests check the numbers).

Shape of the kernel
-------------------
In the style of optimistix / blackjax: :func:`prepare` turns the data into an
:class:`EMProblem` (pixel blocks and the data-only constants), :func:`init` gives the
:class:`EMState` before the first iteration, :func:`step` performs one EM iteration and
returns ``(state, info)``, and :func:`fit` is the jitted ``lax.while_loop`` over them,
returning a :class:`MixtureResult` whose ``status`` (a
:class:`~jaxpetro.kernels._status.Status`) says whether the tolerance was met. All
settings travel in ONE :class:`MixtureOptions`: the family, iteration caps, block size,
compute dtype and axis name are compile-time fields; ``tol`` and ``reg_covar`` are array
leaves, so changing them reuses the compiled program.

Design
------
* Pixels are processed in fixed-size blocks with :func:`jax.lax.scan` (blocks from
  :func:`jaxpetro.kernels._blocks.to_blocks`), so peak memory is
  ``O(chunk_size * K * D)`` beyond the data itself. Data stay in their own dtype
  (float32 for maps); the per-block log-densities are computed in ``compute_dtype`` and
  the sufficient statistics are accumulated in float64 (so the kernel requires
  ``jax_enable_x64``).
* Each family is a small table of functions (:class:`_Family`: design features,
  log-density coefficients, statistics layout, M-step, provisional parameters) looked up
  once; the driver has no per-family branches.
* One pass over the data returns :class:`SuffStats`, a pytree of sums. A sharded fit
  only needs ``lax.psum(stats, axis_name)`` between the pass and the M-step, which the
  ``axis_name`` option does.
* Semi-supervised anchors: ``anchors[i] = k >= 0`` fixes pixel ``i``'s membership to
  component ``k`` (a spot analysis of known phase); ``-1`` leaves it free. The
  objective is then the joint log-likelihood of the labelled pixels plus the marginal
  log-likelihood of the free ones, and EM increases it monotonically.
* ``fit`` is a pure function of arrays: it ``jit``s, ``vmap``s over a batch of maps of
  the same shape, and never raises -- it reports a :class:`Status` instead; input
  validation is the caller's business (``jaxpetro.models.clustering``).

This module imports nothing of jaxpetro except the shared ``jaxpetro.kernels._*`` modules.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import cho_solve
from jax.scipy.special import gammaln
from jaxtyping import Array, ArrayLike, Bool, Float, Float64, Int, Real

from jaxpetro.kernels._blocks import clamp_block_size, to_blocks
from jaxpetro.kernels._gaussian import LOG_2PI
from jaxpetro.kernels._options import KernelOptions, static, traced
from jaxpetro.kernels._precision import require_float64
from jaxpetro.kernels._status import Status, make_status

Family = Literal["poisson", "diag", "full"]
FAMILIES: tuple[str, ...] = ("poisson", "diag", "full")

# A component whose total responsibility falls below this keeps its previous
# parameters: its M-step would divide by ~zero.
_EMPTY = 1e-10


class MixtureOptions(KernelOptions):
    """Settings of the EM fit (one object, passed as one argument to :func:`fit`).

    Attributes:
        family: ``"poisson"``, ``"diag"`` or ``"full"`` (static).
        max_iter: maximum number of EM iterations (static).
        min_iter: iterations run before the tolerance is tested (static).
        chunk_size: pixels per block of work (memory ~ chunk_size x (K + features));
            ``None`` picks :func:`auto_chunk_size` for the family (static).
        compute_dtype: dtype of the per-block log-density matmuls ("float64" or
            "float32"); statistics are always accumulated in float64. float32 is
            faster but resolves log-likelihood changes only down to ~1e-7 nats per
            pixel, so use ``tol >= 1e-6`` with it (static).
        axis_name: name of a mapped/sharded pixel axis whose statistics are summed (static).
        tol: stop when the mean log-likelihood per pixel (nats) changes by less (traced).
        reg_covar: variance floor added to Gaussian covariances (data units^2) (traced).
    """

    family: Family = static("poisson")
    max_iter: int = static(200)
    min_iter: int = static(2)
    chunk_size: int | None = static(None)
    compute_dtype: Literal["float64", "float32"] = static("float64")
    axis_name: str | None = static(None)
    tol: float | Float[Array, ""] = traced(1e-6)
    reg_covar: float | Float[Array, ""] = traced(1e-6)

    def __check_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown mixture family {self.family!r}; expected one of {FAMILIES}")


class MixtureParams(NamedTuple):
    """Parameters of a K-component mixture over D channels.

    Attributes:
        log_weights: log mixture weights, shape (K,), logsumexp = 0.
        loc: Poisson rates (counts per unit exposure, > 0) or Gaussian means, (K, D).
        scale: Gaussian variances (K, D) for ``"diag"``, lower Cholesky factors of
            the covariances (K, D, D) for ``"full"``; unused (K, 0) for ``"poisson"``.
    """

    log_weights: Float[Array, " K"]
    loc: Float[Array, "K D"]
    scale: Float[Array, "K ..."]


class SuffStats(NamedTuple):
    """Sufficient statistics of one pass (sums over pixels, float64).

    ``s2`` is sum r*e (K,) for Poisson, sum r*x^2 (K, D) for diag, and the upper
    triangle (``numpy.triu_indices`` order) of sum r*x x^T, (K, D (D + 1) / 2), for
    full; Gaussian moments are about the data mean ``shift``. ``loglik`` excludes the
    pixel-only constants (:attr:`EMProblem.const`); ``entropy`` is
    sum_i sum_k -r_ik log r_ik in the final pass of :func:`fit` (the iterations' passes,
    e.g. :attr:`EMInfo.stats`, leave it 0: it is only needed for ICL).
    """

    n: Float[Array, " K"]
    s1: Float[Array, "K D"]
    s2: Float[Array, "K ..."]
    loglik: Float[Array, ""]
    entropy: Float[Array, ""]
    count: Float[Array, ""]


class PixelBlocks(NamedTuple):
    """Pixel arrays padded and reshaped to (n_blocks, block, ...); padded rows have zero
    data, unit exposure, no anchor and are not valid."""

    x: Float[Array, "C B D"]
    e: Float[Array, "C B"]
    anchor: Int[Array, "C B"]
    valid: Bool[Array, "C B"]


class EMProblem(NamedTuple):
    """The data of a fit in the form every EM step reads (from :func:`prepare`).

    Attributes:
        blocks: pixels (data, exposure, anchors, validity) in blocks of ``chunk_size``.
        shift: per-channel data mean the Gaussian moments are taken about (0 for Poisson), (D,).
        rate_floor: smallest Poisson rate per channel (1e-6 of the channel's mean rate), (D,).
        const: pixel-only part of the log-likelihood per valid pixel (nats).
    """

    blocks: PixelBlocks
    shift: Float[Array, " D"]
    rate_floor: Float[Array, " D"]
    const: Float[Array, ""]


class EMState(NamedTuple):
    """State of the EM loop between iterations.

    Attributes:
        params: current parameters.
        iteration: iterations performed.
        loglik: mean log-likelihood per pixel at the parameters the last step started
            from (NaN before the first step).
        delta: change of that mean in the last step (NaN before the second).
    """

    params: MixtureParams
    iteration: Int[Array, ""]
    loglik: Float[Array, ""]
    delta: Float[Array, ""]


class EMInfo(NamedTuple):
    """What one :func:`step` saw: the E-step statistics at the parameters it started from.

    Attributes:
        loglik: mean log-likelihood per valid pixel (nats) at those parameters.
        stats: the sufficient statistics of that pass (psum'd over ``axis_name``).
    """

    loglik: Float[Array, ""]
    stats: SuffStats


class MixtureResult(NamedTuple):
    """Result of :func:`fit`.

    Attributes:
        params: fitted parameters.
        memberships: responsibilities p_ik, (N, K) float32, rows on the simplex
            (anchored pixels one-hot; masked pixels all zero).
        loglik: mean log-likelihood per (valid) pixel at ``params``, including the
            pixel constants, so it is a true log-likelihood (nats per pixel).
        history: mean log-likelihood per pixel before each M-step, NaN-padded to
            ``max_iter``; non-decreasing up to rounding.
        entropy: sum of membership entropies (nats), for ICL.
        n_pixels: number of valid pixels.
        status: iterations performed, whether ``|delta loglik| < tol`` was reached within
            ``max_iter`` (``converged``), whether every log-likelihood stayed finite.
    """

    params: MixtureParams
    memberships: Float[Array, "N K"]
    loglik: Float[Array, ""]
    history: Float[Array, " max_iter"]
    entropy: Float[Array, ""]
    n_pixels: Float[Array, ""]
    status: Status


# --------------------------------------------------------------------------------------
# The families: a table of functions each.
# --------------------------------------------------------------------------------------


class _Coefficients(NamedTuple):
    """``log pi_k + log p(x | k) = F . w_k + c_k + x . centre - e * total_centre``
    up to pixel-only constants (``centre``, ``total_centre``: zero for Gaussians)."""

    w: Float[Array, "P K"]
    c: Float[Array, " K"]
    centre: Float[Array, " D"]
    total_centre: Float[Array, ""]


class _Family(NamedTuple):
    """One component family: the functions the driver calls, nothing else differs.

    Every family's log-density is linear in per-pixel design features F --
    ``log p(x_i | k) = F_i . W_k + c_k`` up to pixel-only terms -- and its sufficient
    statistics are ``resp^T F``. So an E-step plus the statistics are two GEMMs per
    block, whatever the family.
    """

    centred: bool  # Gaussian data are centred on their mean (less cancellation)
    width: Callable[[int], int]  # design columns for D channels
    n_free: Callable[[int], int]  # free parameters per component
    s2_shape: Callable[[int, int], tuple[int, ...]]  # shape of SuffStats.s2 for (K, D)
    # (x (B, D), e (B,), shift (D,)) -> F as a tuple of column blocks (B, P_i) float64,
    # never concatenated: XLA:CPU writes a concatenation of columns slowly (it took 25 % of
    # a diag pass), while one GEMM per block reads each where it is
    design: Callable[..., tuple[Array, ...]]
    coefficients: Callable[..., _Coefficients]  # (params, shift) -> _Coefficients
    split: Callable[..., tuple[Array, Array]]  # (moments (K, P), D) -> (s1, s2)
    m_step: Callable[..., tuple[Array, Array]]  # (stats, n_safe, old, shift, reg_covar, floor) -> (loc, scale)
    # (x (B, D) f64, e (B,) f64) -> pixel-only log-density (B,); None: the Gaussian
    # constant -D log(2 pi) / 2 per pixel
    pixel_term: Callable[..., Array] | None


def _triu(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle (diagonal included) of a d x d matrix."""
    return np.triu_indices(d)


def _gaussian_split(moments, d):
    return moments[:, -d:], moments[:, :-d]


def _centred_mean(stats: SuffStats, n_safe, shift):
    mean_c = stats.s1 / n_safe[:, None]  # centred on ``shift``
    return mean_c, mean_c + shift[None, :]


# Poisson: F = [x, e] (D + 1 columns).


def _poisson_design(x, e, shift):
    return x.astype(jnp.float64), e[:, None].astype(jnp.float64)


def _poisson_coefficients(params: MixtureParams, shift) -> _Coefficients:
    # sum_j x_ij log rate_kj - e_i sum_j rate_kj. Both terms are centred on their mean
    # over components and the means go to ``common`` (float64), so a float32 matmul only
    # sees differences between components: its round-off scales with how different the
    # components are, not with the size of the counts.
    log_rate = jnp.log(params.loc)
    centre = jnp.mean(log_rate, axis=0)
    total = jnp.sum(params.loc, axis=1)
    total_centre = jnp.mean(total)
    w = jnp.concatenate([(log_rate - centre[None, :]).T, -(total - total_centre)[None]], axis=0)
    return _Coefficients(w, params.log_weights, centre, total_centre)


def _poisson_m_step(stats: SuffStats, n_safe, old: MixtureParams, shift, reg_covar, rate_floor):
    expo = jnp.where(stats.n < _EMPTY, 1.0, stats.s2)
    return jnp.maximum(stats.s1 / expo[:, None], rate_floor[None, :]), old.scale


def _poisson_term(x, e):
    # sum_j [x_ij log e_i - log x_ij!]
    return jnp.sum(x, axis=1) * jnp.log(e) - jnp.sum(gammaln(x + 1.0), axis=1)


_POISSON = _Family(
    centred=False,
    width=lambda d: d + 1,
    n_free=lambda d: d,
    s2_shape=lambda k, d: (k,),
    design=_poisson_design,
    coefficients=_poisson_coefficients,
    split=lambda moments, d: (moments[:, :d], moments[:, d]),
    m_step=_poisson_m_step,
    pixel_term=_poisson_term,
)


# diag: F = [x^2, x] (2 D), x shifted by the data mean.


def _diag_design(x, e, shift):
    xs = x.astype(jnp.float64) - shift[None, :]  # centred data: less cancellation in the expansion
    return xs * xs, xs


def _diag_coefficients(params: MixtureParams, shift) -> _Coefficients:
    # -1/2 sum_j (x - mu)^2 / v - 1/2 sum_j log v, expanded in powers of x.
    mu = params.loc - shift[None, :]
    prec = 1.0 / params.scale
    w = jnp.concatenate([-0.5 * prec, mu * prec], axis=1).T
    c = -0.5 * jnp.sum(mu * mu * prec + jnp.log(params.scale), axis=1)
    d = params.loc.shape[1]
    return _Coefficients(w, c + params.log_weights, jnp.zeros(d), jnp.zeros(()))


def _diag_m_step(stats: SuffStats, n_safe, old, shift, reg_covar, rate_floor):
    mean_c, loc = _centred_mean(stats, n_safe, shift)
    return loc, jnp.maximum(stats.s2 / n_safe[:, None] - mean_c * mean_c, 0.0) + reg_covar


_DIAG = _Family(
    centred=True,
    width=lambda d: 2 * d,
    n_free=lambda d: 2 * d,
    s2_shape=lambda k, d: (k, d),
    design=_diag_design,
    coefficients=_diag_coefficients,
    split=_gaussian_split,
    m_step=_diag_m_step,
    pixel_term=None,
)


# full: F = [x_d x_e (d <= e), x] (D (D + 1) / 2 + D): the symmetric outer product is
# stored once, which halves the work of the quadratic form.


def _full_design(x, e, shift):
    xs = x.astype(jnp.float64) - shift[None, :]
    # Static slices in numpy.triu_indices order; a gather here stops XLA from fusing
    # the products into both GEMMs that read them (3x slower measured).
    quad = [xs[:, j : j + 1] * xs[:, j:] for j in range(x.shape[1])]
    return (jnp.concatenate([*quad, xs], axis=1),)  # one block: the quadratic columns are fused into the GEMMs


def _full_coefficients(params: MixtureParams, shift) -> _Coefficients:
    # -1/2 (x - mu)^T S^-1 (x - mu) - 1/2 log|S|, expanded in powers of x. The precision
    # S^-1 comes from Cholesky solves against the identity (K small D x D systems per
    # iteration), never from inverting S itself.
    chol = params.scale
    d = params.loc.shape[1]
    eye = jnp.eye(d, dtype=chol.dtype)
    prec = jax.vmap(lambda c_: cho_solve((c_, True), eye))(chol)
    prec = 0.5 * (prec + jnp.swapaxes(prec, 1, 2))
    mu = params.loc - shift[None, :]
    rows, cols = _triu(d)
    quad = jnp.where(rows == cols, -0.5, -1.0)[None, :] * prec[:, rows, cols]  # off-diagonals appear twice
    lin = jnp.einsum("kde,ke->kd", prec, mu)
    w = jnp.concatenate([quad, lin], axis=1).T
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    c = -0.5 * jnp.sum(mu * lin, axis=1) - half_logdet
    return _Coefficients(w, c + params.log_weights, jnp.zeros(d), jnp.zeros(()))


def _full_m_step(stats: SuffStats, n_safe, old, shift, reg_covar, rate_floor):
    mean_c, loc = _centred_mean(stats, n_safe, shift)
    k, d = loc.shape
    rows, cols = _triu(d)
    second = jnp.zeros((k, d, d)).at[:, rows, cols].set(stats.s2).at[:, cols, rows].set(stats.s2)
    cov = second / n_safe[:, None, None] - mean_c[:, :, None] * mean_c[:, None, :]
    cov = cov + reg_covar * jnp.eye(d)[None]
    return loc, jnp.linalg.cholesky(cov)


_FULL = _Family(
    centred=True,
    width=lambda d: d * (d + 1) // 2 + d,
    n_free=lambda d: d + d * (d + 1) // 2,
    s2_shape=lambda k, d: (k, d * (d + 1) // 2),
    design=_full_design,
    coefficients=_full_coefficients,
    split=_gaussian_split,
    m_step=_full_m_step,
    pixel_term=None,
)

_TABLE: dict[str, _Family] = {"poisson": _POISSON, "diag": _DIAG, "full": _FULL}


def _family(name: str) -> _Family:
    try:
        return _TABLE[name]
    except KeyError:
        raise ValueError(f"unknown mixture family {name!r}; expected one of {FAMILIES}") from None


# --------------------------------------------------------------------------------------
# One block, one pass, one M-step.
# --------------------------------------------------------------------------------------


def _block_stats(
    fam: _Family,
    coeffs: _Coefficients,
    x: Float[Array, "B D"],
    e: Float[Array, " B"],
    anchor: Int[Array, " B"],
    valid: Bool[Array, " B"],
    shift: Float[Array, " D"],
    dtype,
    hard: bool,
    entropy: bool = False,
) -> tuple[SuffStats, Float[Array, "B K"]]:
    """E-step on one block: responsibilities and their sufficient statistics (the
    membership entropy only with ``entropy``: the final pass needs it, the iterations not)."""
    feats = fam.design(x, e, shift)
    w = coeffs.w.astype(dtype)
    edges = np.cumsum([0] + [f.shape[1] for f in feats])
    joint = sum(f.astype(dtype) @ w[a:b] for f, a, b in zip(feats, edges[:-1], edges[1:]))
    joint = joint.astype(jnp.float64) + coeffs.c[None, :]
    n_comp = joint.shape[1]
    label = jnp.where(anchor >= 0, anchor, jnp.argmax(joint, axis=1).astype(jnp.int32) if hard else 0)
    is_fixed = (anchor >= 0) | hard
    # One exponential per pixel and component: shift by the row maximum, exponentiate
    # (in the compute dtype: float32 exp is several times faster on CPU), normalise.
    # ``logsumexp`` followed by ``exp(joint - lse)`` would take every exp twice.
    top = jnp.max(joint, axis=1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    scaled = jnp.exp((joint - top).astype(dtype))
    total = jnp.sum(scaled, axis=1, dtype=jnp.float64)
    lse = top[:, 0] + jnp.log(total)
    # The labelled component by comparison, not a gather (XLA:CPU gathers are slow), and one
    # division per pixel (valid / total) instead of one per component.
    own = label[:, None] == jnp.arange(n_comp, dtype=jnp.int32)[None, :]
    fixed_ll = jnp.sum(jnp.where(own, joint, 0.0), axis=1)
    ll_i = jnp.where(is_fixed, fixed_ll, lse)
    if not fam.centred:  # pixel terms the coefficients were centred by (Poisson; zero for Gaussians)
        ll_i = ll_i + x.astype(jnp.float64) @ coeffs.centre - e.astype(jnp.float64) * coeffs.total_centre
    weight = valid.astype(jnp.float64)
    resp = jnp.where(
        is_fixed[:, None],
        jnp.where(own, weight[:, None], 0.0),
        scaled.astype(jnp.float64) * (weight / total)[:, None],
    )
    # (K, P): every sufficient statistic, one GEMM per column block
    moments = jnp.concatenate([resp.T @ f for f in feats], axis=1)
    s1, s2 = fam.split(moments, x.shape[1])
    ent = jnp.zeros((), jnp.float64)
    if entropy:
        # log r_ik = joint - lse is at hand for free pixels (fixed ones have zero entropy),
        # so the entropy costs no extra transcendental.
        log_resp = jnp.where(is_fixed[:, None] | (resp <= 0), 0.0, joint - lse[:, None])
        ent = -jnp.sum(resp * log_resp)
    stats = SuffStats(
        n=jnp.sum(resp, axis=0),
        s1=s1,
        s2=s2,
        loglik=jnp.sum(jnp.where(valid, ll_i, 0.0)),
        entropy=ent,
        count=jnp.sum(weight),
    )
    return stats, resp


def _zero_stats(fam: _Family, k: int, d: int) -> SuffStats:
    z = jnp.zeros((), jnp.float64)
    return SuffStats(jnp.zeros(k), jnp.zeros((k, d)), jnp.zeros(fam.s2_shape(k, d)), z, z, z)


def _pass(fam: _Family, params, blocks: PixelBlocks, shift, dtype, hard=False, axis_name=None, keep_resp=False):
    """One read of the data: summed sufficient statistics (psum'd over ``axis_name``).

    Returns ``(stats, resp)``; ``resp`` is the (n_blocks * block, K) float32
    responsibilities when ``keep_resp`` (the final pass; ``stats.entropy`` is summed only
    then, 0 otherwise), else None.
    """
    k, d = params.loc.shape
    coeffs = fam.coefficients(params, shift)

    def body(acc, block):
        stats, resp = _block_stats(fam, coeffs, *block, shift, dtype, hard, entropy=keep_resp)
        return jax.tree.map(jnp.add, acc, stats), resp.astype(jnp.float32) if keep_resp else None

    stats, resp = lax.scan(body, _zero_stats(fam, k, d), tuple(blocks))
    if axis_name is not None:
        stats = lax.psum(stats, axis_name)
    return stats, (resp.reshape(-1, k) if keep_resp else None)


def _m_step(fam: _Family, stats: SuffStats, old: MixtureParams, shift, reg_covar, rate_floor) -> MixtureParams:
    """Maximise the expected complete-data log-likelihood given the statistics; a
    component with no responsibility keeps its previous parameters."""
    n = stats.n
    empty = n < _EMPTY
    n_safe = jnp.where(empty, 1.0, n)
    log_weights = jnp.log(jnp.maximum(n, _EMPTY)) - jnp.log(jnp.sum(jnp.maximum(n, _EMPTY)))
    loc, scale = fam.m_step(stats, n_safe, old, shift, reg_covar, rate_floor)
    keep = empty.reshape((-1,) + (1,) * (old.scale.ndim - 1))
    return MixtureParams(
        log_weights=log_weights,
        loc=jnp.where(empty[:, None], old.loc, loc),
        scale=jnp.where(keep, old.scale, scale),
    )


# --------------------------------------------------------------------------------------
# The data of a fit.
# --------------------------------------------------------------------------------------


def auto_chunk_size(family: Family, n_channels: int, budget_bytes: int = 8 << 20) -> int:
    """Pixels per block so that a block's float64 design features take ~``budget_bytes``
    (within a factor sqrt(2): the nearest power of two).

    Blocks that stay in cache run markedly faster: on a 2-core CPU, 16384 pixels per
    block beat 65536 for every family at N = 4e6 (Poisson 2x, diag 1.25x, full 1.4x;
    benchmarks/mixture_cpu.md), so blocks are capped there; a power of two in
    [1024, 16384] (full covariance over 15 channels gets 8192).
    """
    return _block_pixels(_family(family).width(n_channels), budget_bytes)


def _block_pixels(width: int, budget_bytes: int = 8 << 20) -> int:
    """:func:`auto_chunk_size` for ``width`` float64 design columns."""
    pixels = budget_bytes // (8 * width)
    return int(min(16384, max(1024, 2 ** round(math.log2(max(pixels, 1))))))  # nearest power of 2


def _scan_sum(fn, blocks: PixelBlocks, init, axis_name):
    """Sum ``fn(block)`` over the blocks (psum'd over ``axis_name``)."""

    def body(acc, block):
        return jax.tree.map(jnp.add, acc, fn(PixelBlocks(*block))), None

    total, _ = lax.scan(body, init, tuple(blocks))
    return total if axis_name is None else lax.psum(total, axis_name)


def _prepare(fam: _Family, x, exposure, anchors, mask, chunk_size, axis_name) -> EMProblem:
    n, d = x.shape
    block = clamp_block_size(chunk_size if chunk_size is not None else _block_pixels(fam.width(d)), n)
    e = jnp.ones(n, x.dtype) if exposure is None else exposure
    a = jnp.full(n, -1, jnp.int32) if anchors is None else anchors.astype(jnp.int32)
    v = jnp.ones(n, bool) if mask is None else mask.astype(bool)
    blocks = PixelBlocks(*to_blocks((x, e, a, v), block, (0, 1, -1, False)))
    z = jnp.zeros((), jnp.float64)

    def sums(b: PixelBlocks):
        x64 = b.x.astype(jnp.float64)
        vx = jnp.where(b.valid[:, None], x64, 0.0)
        term = z if fam.pixel_term is None else fam.pixel_term(x64, b.e.astype(jnp.float64))
        return (
            jnp.sum(b.valid, dtype=jnp.float64),  # valid pixels
            jnp.sum(vx, axis=0),  # sum of the data per channel
            jnp.sum(jnp.where(b.valid, b.e, 0.0), dtype=jnp.float64),  # total exposure
            jnp.sum(jnp.where(b.valid, term, 0.0)),  # pixel-only log-density (Poisson)
        )

    count, sx, se, const = _scan_sum(sums, blocks, (z, jnp.zeros(d), z, z), axis_name)
    if fam.pixel_term is None:
        const = -0.5 * d * LOG_2PI * count
    # Gaussian data are centred on their per-channel mean; Poisson rates need the raw counts.
    shift = sx / jnp.maximum(count, 1.0) if fam.centred else jnp.zeros(d)
    # The smallest Poisson rate allowed per channel, 1e-6 of the channel's mean rate,
    # keeps log rates finite when a component sees no counts in a channel.
    floor = 1e-6 * sx / jnp.maximum(se, 1e-300) + 1e-12 if not fam.centred else jnp.zeros(d)
    return EMProblem(blocks=blocks, shift=shift, rate_floor=floor, const=const / jnp.maximum(count, 1.0))


def prepare(
    x: Float[ArrayLike, "N D"],
    exposure: Real[ArrayLike, " N"] | None = None,
    anchors: Int[ArrayLike, " N"] | None = None,
    mask: Bool[ArrayLike, " N"] | None = None,
    options: MixtureOptions = MixtureOptions(),
) -> EMProblem:
    """The data of a fit as :func:`step` reads it: pixel blocks and data-only constants.

    Args: as :func:`fit` (``options.family``, ``chunk_size`` and ``axis_name`` are used).
    """
    require_float64("mixture.prepare")
    return _prepare(_family(options.family), x, exposure, anchors, mask, options.chunk_size, options.axis_name)


# --------------------------------------------------------------------------------------
# The EM kernel: init, step, and the loop.
# --------------------------------------------------------------------------------------


def init(params: MixtureParams) -> EMState:
    """EM state before the first iteration, at initial parameters ``params``."""
    nan = jnp.asarray(jnp.nan, jnp.float64)
    return EMState(params, jnp.asarray(0, jnp.int32), nan, nan)


def step(state: EMState, problem: EMProblem, options: MixtureOptions = MixtureOptions()) -> tuple[EMState, EMInfo]:
    """One EM iteration: E-step pass (log-likelihood at ``state.params``) + M-step.

    Returns the new state and an :class:`EMInfo` with the log-likelihood and statistics
    at the parameters the step started from.
    """
    fam = _family(options.family)
    stats, _ = _pass(fam, state.params, problem.blocks, problem.shift, jnp.dtype(options.compute_dtype),
                     axis_name=options.axis_name)
    ll = stats.loglik / jnp.maximum(stats.count, 1.0) + problem.const
    params = _m_step(fam, stats, state.params, problem.shift, options.reg_covar, problem.rate_floor)
    new = EMState(params=params, iteration=state.iteration + 1, loglik=ll, delta=ll - state.loglik)
    return new, EMInfo(loglik=ll, stats=stats)


@jax.jit
def fit(
    x: Float[ArrayLike, "N D"],
    params: MixtureParams,
    exposure: Real[ArrayLike, " N"] | None = None,
    anchors: Int[ArrayLike, " N"] | None = None,
    mask: Bool[ArrayLike, " N"] | None = None,
    options: MixtureOptions = MixtureOptions(),
) -> MixtureResult:
    """Fit a mixture by EM from initial parameters.

    Args:
        x: data, (N, D): counts per pixel and channel for ``"poisson"``, any real
            features (rates, sqrt-counts...) for Gaussians. Kept in its own dtype.
        params: initial parameters (see :func:`init_from_centres`; centres may come from
            ``jaxpetro.kernels.kmeans.kmeanspp_centres``).
        exposure: per-pixel exposure (e.g. dwell s x current uA), (N,), > 0.
            Poisson only; ``None`` means 1.
        anchors: per-pixel fixed component index, -1 for free pixels, (N,).
        mask: pixels to use, (N,) bool; ``None`` uses all. Masked pixels get zero
            memberships.
        options: a :class:`MixtureOptions` (family, tolerance, iteration caps, ...).

    Returns:
        A :class:`MixtureResult`.
    """
    require_float64("mixture.fit")
    fam = _family(options.family)
    problem = _prepare(fam, x, exposure, anchors, mask, options.chunk_size, options.axis_name)

    def cond(carry):
        state, _ = carry
        healthy = (state.iteration == 0) | jnp.isfinite(state.loglik)
        unconverged = (state.iteration < options.min_iter) | ~(jnp.abs(state.delta) < options.tol)
        return (state.iteration < options.max_iter) & healthy & unconverged

    def body(carry):
        state, history = carry
        new, info = step(state, problem, options)
        return new, history.at[state.iteration].set(info.loglik)

    history0 = jnp.full(options.max_iter, jnp.nan)
    state, history = lax.while_loop(cond, body, (init(params), history0))
    final, memberships = _pass(fam, state.params, problem.blocks, problem.shift, jnp.dtype(options.compute_dtype),
                               axis_name=options.axis_name, keep_resp=True)
    loglik = final.loglik / jnp.maximum(final.count, 1.0) + problem.const
    finite = jnp.all(jnp.isfinite(jnp.where(jnp.isnan(history), 0.0, history))) & jnp.isfinite(loglik)
    return MixtureResult(
        params=state.params,
        memberships=memberships[: x.shape[0]],
        loglik=loglik,
        history=history,
        entropy=final.entropy,
        n_pixels=final.count,
        status=make_status(jnp.abs(state.delta) < options.tol, finite, state.iteration),
    )


# --------------------------------------------------------------------------------------
# Initialisation.
# --------------------------------------------------------------------------------------


@jax.jit
def init_from_centres(
    x: Float[ArrayLike, "N D"],
    centres: Real[ArrayLike, "K D"],
    exposure: Real[ArrayLike, " N"] | None = None,
    anchors: Int[ArrayLike, " N"] | None = None,
    mask: Bool[ArrayLike, " N"] | None = None,
    options: MixtureOptions = MixtureOptions(),
) -> MixtureParams:
    """Initial parameters from component centres (e.g. per-phase medians at spots).

    Every pixel is assigned to its most likely centre (anchored pixels to their
    label) under provisional parameters -- rates = centres for Poisson; means =
    centres with the global per-channel variance for Gaussians -- and one M-step on
    that hard partition gives weights, means/rates and covariances. A centre that
    receives no pixel keeps its provisional parameters. Uses ``options.family``,
    ``chunk_size`` and ``reg_covar``; the pass is in float64 and not summed over
    ``axis_name``.

    Args:
        centres: Poisson rates (counts per unit exposure) or Gaussian means, (K, D).
    """
    require_float64("mixture.init_from_centres")
    fam = _family(options.family)
    problem = _prepare(fam, x, exposure, anchors, mask, options.chunk_size, None)
    k, d = centres.shape
    centres = centres.astype(jnp.float64)
    log_w = jnp.full(k, -jnp.log(k))
    if not fam.centred:  # Poisson: the centres are the rates
        provisional = MixtureParams(log_w, jnp.maximum(centres, problem.rate_floor[None, :]), jnp.zeros((k, 0)))
    else:
        one = MixtureParams(jnp.zeros(1), problem.shift[None], jnp.ones((1, d)))
        glob, _ = _pass(_DIAG, one, problem.blocks, problem.shift, jnp.float64)
        var = glob.s2[0] / jnp.maximum(glob.n[0], 1.0) + options.reg_covar
        scale = jnp.broadcast_to(var, (k, d)) if fam is _DIAG else jnp.broadcast_to(jnp.diag(jnp.sqrt(var)), (k, d, d))
        provisional = MixtureParams(log_w, centres, scale)
    stats, _ = _pass(fam, provisional, problem.blocks, problem.shift, jnp.float64, hard=True)
    return _m_step(fam, stats, provisional, problem.shift, options.reg_covar, problem.rate_floor)


# --------------------------------------------------------------------------------------
# The Poisson M-step for given weights.
# --------------------------------------------------------------------------------------


def poisson_rates(
    counts: Real[ArrayLike, "N D"],
    weights: Real[ArrayLike, "N K"],
    exposure: Real[ArrayLike, " N"] | None = None,
    block: int = 1 << 18,
) -> Float64[Array, "K D"]:
    """Poisson M-step for weighted pixels: rate_kj = sum_i w_ik x_ij / sum_i w_ik e_i.

    The maximum-likelihood rates (counts per unit exposure) of K components given
    per-pixel weights (memberships, or any non-negative weights), in float64. A
    component with no weight (denominator below 1e-12) gets rate 0 rather than NaN.

    Args:
        counts: counts per pixel and channel, (N, D), kept in their own dtype.
        weights: per-pixel component weights, (N, K), kept in their own dtype.
        exposure: per-pixel exposure, (N,); ``None`` means 1 (rates in counts per pixel).
        block: pixels per block of the sums (static). Each block is cast to float64 and
            summed into the (K, D) and (K,) totals, so a whole map is never held in float64
            (at 16e6 pixels x 14 channels that copy alone was 1.8 GB).
    """
    require_float64("mixture.poisson_rates")
    x = jnp.asarray(counts)
    w = jnp.asarray(weights)
    e = jnp.ones(x.shape[0], w.dtype) if exposure is None else jnp.asarray(exposure)
    num, den = _weighted_sums(x, w, e, min(block, max(x.shape[0], 1)))
    return num / jnp.maximum(den, 1e-12)[:, None]


@functools.partial(jax.jit, static_argnames="block")
def _weighted_sums(x, w, e, block: int):
    """(sum_i w_ik x_ij, sum_i w_ik e_i) in float64 over blocks of ``block`` pixels (a scan over
    the whole blocks, then the remainder). Slices of the inputs rather than
    :func:`~jaxpetro.kernels._blocks.to_blocks`: its padding would copy the whole map, the memory
    this function exists to save (the EM keeps its padded blocks; here they are read once)."""

    def sums(xb, wb, eb):
        wb = wb.astype(jnp.float64)
        return wb.T @ xb.astype(jnp.float64), wb.T @ eb.astype(jnp.float64)

    n_full = x.shape[0] // block

    def body(acc, i):
        lo = i * block
        part = sums(*(lax.dynamic_slice_in_dim(a, lo, block) for a in (x, w, e)))
        return jax.tree.map(jnp.add, acc, part), None

    zero = (jnp.zeros((w.shape[1], x.shape[1]), jnp.float64), jnp.zeros(w.shape[1], jnp.float64))
    acc, _ = lax.scan(body, zero, jnp.arange(n_full))
    rest = n_full * block
    if rest < x.shape[0]:
        acc = jax.tree.map(jnp.add, acc, sums(x[rest:], w[rest:], e[rest:]))
    return acc


# --------------------------------------------------------------------------------------
# Model choice.
# --------------------------------------------------------------------------------------


def n_parameters(family: Family, n_components: int, n_channels: int) -> int:
    """Number of free parameters of a K-component mixture over D channels."""
    k = n_components
    return k * _family(family).n_free(n_channels) + (k - 1)


def bic(result: MixtureResult, family: Family) -> Float[Array, ""]:
    """Bayesian information criterion, -2 log L + p log N (lower is better; Schwarz 1978)."""
    k, d = result.params.loc.shape[-2:]
    n = result.n_pixels
    return -2.0 * result.loglik * n + n_parameters(family, k, d) * jnp.log(n)


def icl(result: MixtureResult, family: Family) -> Float[Array, ""]:
    """Integrated completed likelihood: BIC + 2 x membership entropy (lower is better;
    Biernacki, Celeux & Govaert 2000).

    Penalises overlapping components, so it prefers well-separated phases.
    """
    return bic(result, family) + 2.0 * result.entropy


__all__ = [
    "FAMILIES",
    "EMInfo",
    "EMProblem",
    "EMState",
    "Family",
    "MixtureOptions",
    "MixtureParams",
    "MixtureResult",
    "PixelBlocks",
    "SuffStats",
    "auto_chunk_size",
    "bic",
    "fit",
    "icl",
    "init",
    "init_from_centres",
    "n_parameters",
    "poisson_rates",
    "prepare",
    "step",
]

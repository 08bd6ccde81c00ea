"""Batched soft-clustering EM for per-pixel mixtures.

Three component families share one expectation-maximisation driver:

* ``"poisson"`` -- counts with a per-pixel exposure, ``x_ij ~ Poisson(e_i * rate_kj)``
  (SCIENCE.md section A; rates in counts per unit exposure);
* ``"diag"``    -- Gaussian with diagonal covariance;
* ``"full"``    -- Gaussian with full covariance (stored as its lower Cholesky factor).

Design
------
* Pixels are processed in fixed-size chunks with :func:`jax.lax.scan`, so peak memory
  is ``O(chunk_size * K * D)`` beyond the data itself. Data stay in their own dtype
  (float32 for maps); the per-chunk log-densities are computed in ``compute_dtype`` and
  the sufficient statistics are accumulated in float64.
* One pass over the data returns :class:`SuffStats`, a pytree of sums. A sharded fit
  only needs ``lax.psum(stats, axis_name)`` between the pass and the M-step, which the
  ``axis_name`` argument does.
* Semi-supervised anchors: ``anchors[i] = k >= 0`` fixes pixel ``i``'s membership to
  component ``k`` (a spot analysis of known phase); ``-1`` leaves it free. The
  objective is then the joint log-likelihood of the labelled pixels plus the marginal
  log-likelihood of the free ones, and EM increases it monotonically.
* ``fit`` is a pure function of arrays: it ``jit``s, ``vmap``s over a batch of maps of
  the same shape, and never raises -- it reports ``converged`` and a finite-ness flag
  instead; input validation is the caller's business (``jaxpetro.models.clustering``).

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

import functools
import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import cho_solve
from jax.scipy.special import gammaln
from jaxtyping import Array, ArrayLike, Bool, Float, Float64, Int, Real

from jaxpetro.kernels._precision import require_float64

Family = Literal["poisson", "diag", "full"]
FAMILIES: tuple[str, ...] = ("poisson", "diag", "full")

# A component whose total responsibility falls below this keeps its previous
# parameters: its M-step would divide by ~zero.
_EMPTY = 1e-10
_LOG_2PI = math.log(2.0 * math.pi)


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
    full; Gaussian moments are about the data mean ``shift``. ``loglik`` excludes pixel-only constants (see
    :func:`pixel_constant`); ``entropy`` is sum_i sum_k -r_ik log r_ik.
    """

    n: Float[Array, " K"]
    s1: Float[Array, "K D"]
    s2: Float[Array, "K ..."]
    loglik: Float[Array, ""]
    entropy: Float[Array, ""]
    count: Float[Array, ""]


class EMState(NamedTuple):
    """State of the EM loop (``init``/``step`` + ``lax.while_loop``)."""

    params: MixtureParams
    iteration: Int[Array, ""]
    loglik: Float[Array, ""]  # mean log-likelihood per pixel at ``params``' parent
    delta: Float[Array, ""]  # change of that mean since the previous iteration
    history: Float[Array, " max_iter"]


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
        n_iter: number of EM iterations performed.
        converged: whether ``|delta loglik| < tol`` was reached within ``max_iter``.
        finite: whether every log-likelihood stayed finite.
        entropy: sum of membership entropies (nats), for ICL.
        n_pixels: number of valid pixels.
    """

    params: MixtureParams
    memberships: Float[Array, "N K"]
    loglik: Float[Array, ""]
    history: Float[Array, " max_iter"]
    n_iter: Int[Array, ""]
    converged: Bool[Array, ""]
    finite: Bool[Array, ""]
    entropy: Float[Array, ""]
    n_pixels: Float[Array, ""]


# --------------------------------------------------------------------------------------
# Family operations: per-chunk log joint densities and M-steps.
# --------------------------------------------------------------------------------------


def _triu(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle (diagonal included) of a d x d matrix."""
    return np.triu_indices(d)


def _design(family: str, x: Float[Array, "B D"], e: Float[Array, " B"], shift: Float[Array, " D"]) -> Float[Array, "B P"]:
    """Per-pixel design features F (float64) of a family.

    Every family's log-density is linear in F -- ``log p(x_i | k) = F_i . W_k + c_k``
    up to pixel-only terms -- and its sufficient statistics are ``resp^T F``. So an
    E-step plus the statistics are two GEMMs per chunk, whatever the family:

    * Poisson: F = [x, e]                 (D + 1 columns)
    * diag:    F = [x^2, x]               (2 D), x shifted by the data mean
    * full:    F = [x_d x_e (d <= e), x]  (D (D + 1) / 2 + D): the symmetric outer
      product is stored once, which halves the work of the quadratic form.
    """
    if family == "poisson":
        return jnp.concatenate([x.astype(jnp.float64), e[:, None].astype(jnp.float64)], axis=1)
    xs = x.astype(jnp.float64) - shift  # centred data: less cancellation in the expansion
    if family == "diag":
        return jnp.concatenate([xs * xs, xs], axis=1)
    # Static slices in numpy.triu_indices order; a gather here stops XLA from fusing
    # the products into both GEMMs that read them (3x slower measured).
    quad = [xs[:, j : j + 1] * xs[:, j:] for j in range(x.shape[1])]
    return jnp.concatenate([*quad, xs], axis=1)


def _coefficients(family: str, params: MixtureParams, shift: Float[Array, " D"]):
    """Weights W (P, K) and offsets c (K,) with log pi_k + log p(x | k) = F . W_k + c_k + common(x).

    Returns (W, c, centre, total_centre); ``centre`` and ``total_centre`` define the
    Poisson's k-independent part ``common = x . centre - e * total_centre`` (zero for
    Gaussians). Pixel-only constants (log x!, 2 pi terms, x log e) are added once per
    fit by :func:`pixel_constant`.
    """
    d = params.loc.shape[1]
    centre, total_centre = jnp.zeros(d), jnp.zeros(())
    if family == "poisson":
        # sum_j x_ij log rate_kj - e_i sum_j rate_kj. Both terms are centred on their
        # mean over components and the means go to ``common`` (float64), so a float32
        # matmul only sees differences between components: its round-off scales with
        # how different the components are, not with the size of the counts.
        log_rate = jnp.log(params.loc)
        centre = jnp.mean(log_rate, axis=0)
        total = jnp.sum(params.loc, axis=1)
        total_centre = jnp.mean(total)
        w = jnp.concatenate([(log_rate - centre).T, -(total - total_centre)[None]], axis=0)
        c = jnp.zeros(params.loc.shape[0])
    elif family == "diag":
        # -1/2 sum_j (x - mu)^2 / v - 1/2 sum_j log v, expanded in powers of x.
        mu = params.loc - shift
        prec = 1.0 / params.scale
        w = jnp.concatenate([-0.5 * prec, mu * prec], axis=1).T
        c = -0.5 * jnp.sum(mu * mu * prec + jnp.log(params.scale), axis=1)
    else:
        # -1/2 (x - mu)^T S^-1 (x - mu) - 1/2 log|S|, expanded in powers of x. The
        # precision S^-1 comes from Cholesky solves against the identity (K small D x D
        # systems per iteration), never from inverting S itself.
        chol = params.scale
        eye = jnp.eye(d, dtype=chol.dtype)
        prec = jax.vmap(lambda c_: cho_solve((c_, True), eye))(chol)
        prec = 0.5 * (prec + jnp.swapaxes(prec, 1, 2))
        mu = params.loc - shift
        rows, cols = _triu(d)
        quad = jnp.where(rows == cols, -0.5, -1.0) * prec[:, rows, cols]  # off-diagonals appear twice
        lin = jnp.einsum("kde,ke->kd", prec, mu)
        w = jnp.concatenate([quad, lin], axis=1).T
        half_logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        c = -0.5 * jnp.sum(mu * lin, axis=1) - half_logdet
    return w, c + params.log_weights, centre, total_centre


def _chunk_stats(
    family: str,
    coeffs: tuple,
    x: Float[Array, "B D"],
    e: Float[Array, " B"],
    anchor: Int[Array, " B"],
    valid: Bool[Array, " B"],
    shift: Float[Array, " D"],
    dtype,
    hard: bool,
) -> tuple[SuffStats, Float[Array, "B K"]]:
    """E-step on one chunk: responsibilities and their sufficient statistics.

    ``coeffs`` is :func:`_coefficients` of the current parameters (computed once per pass).
    """
    feats = _design(family, x, e, shift)
    w, c, centre, total_centre = coeffs
    joint = (feats.astype(dtype) @ w.astype(dtype)).astype(jnp.float64) + c
    common = x.astype(jnp.float64) @ centre - e.astype(jnp.float64) * total_centre
    n_comp = joint.shape[1]
    label = jnp.where(anchor >= 0, anchor, jnp.argmax(joint, axis=1) if hard else 0)
    is_fixed = (anchor >= 0) | hard
    # One exponential per pixel and component: shift by the row maximum, exponentiate
    # (in the compute dtype: float32 exp is several times faster on CPU), normalise.
    # ``logsumexp`` followed by ``exp(joint - lse)`` would take every exp twice.
    top = jnp.max(joint, axis=1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    scaled = jnp.exp((joint - top).astype(dtype))
    total = jnp.sum(scaled, axis=1, dtype=jnp.float64)
    lse = top[:, 0] + jnp.log(total)
    fixed_ll = jnp.take_along_axis(joint, label[:, None], axis=1)[:, 0]
    ll_i = jnp.where(is_fixed, fixed_ll, lse) + common
    resp = jnp.where(
        is_fixed[:, None],
        jax.nn.one_hot(label, n_comp, dtype=jnp.float64),
        scaled.astype(jnp.float64) / total[:, None],
    )
    resp = resp * valid[:, None]
    moments = resp.T @ feats  # (K, P): every sufficient statistic in one GEMM
    d = x.shape[1]
    if family == "poisson":
        s1, s2 = moments[:, :d], moments[:, d]
    else:
        s2, s1 = moments[:, :-d], moments[:, -d:]
    # log r_ik = joint - lse is at hand for free pixels (fixed ones have zero entropy),
    # so the entropy costs no extra transcendental.
    log_resp = jnp.where(is_fixed[:, None] | (resp <= 0), 0.0, joint - lse[:, None])
    entropy = -jnp.sum(resp * log_resp)
    stats = SuffStats(
        n=jnp.sum(resp, axis=0),
        s1=s1,
        s2=s2,
        loglik=jnp.sum(jnp.where(valid, ll_i, 0.0)),
        entropy=entropy,
        count=jnp.sum(valid, dtype=jnp.float64),
    )
    return stats, resp


def _m_step(
    family: str,
    stats: SuffStats,
    old: MixtureParams,
    shift: Float[Array, " D"],
    reg_covar: float,
    rate_floor: Float[Array, " D"],
) -> MixtureParams:
    """Maximise the expected complete-data log-likelihood given the statistics."""
    n = stats.n
    empty = n < _EMPTY
    n_safe = jnp.where(empty, 1.0, n)
    log_weights = jnp.log(jnp.maximum(n, _EMPTY)) - jnp.log(jnp.sum(jnp.maximum(n, _EMPTY)))
    if family == "poisson":
        expo = jnp.where(empty, 1.0, stats.s2)
        loc = jnp.maximum(stats.s1 / expo[:, None], rate_floor)
        scale = old.scale
    else:
        mean_c = stats.s1 / n_safe[:, None]  # centred on ``shift``
        loc = mean_c + shift
        d = loc.shape[1]
        if family == "diag":
            scale = jnp.maximum(stats.s2 / n_safe[:, None] - mean_c * mean_c, 0.0) + reg_covar
        else:
            rows, cols = _triu(d)
            second = jnp.zeros((n.shape[0], d, d)).at[:, rows, cols].set(stats.s2).at[:, cols, rows].set(stats.s2)
            cov = second / n_safe[:, None, None] - mean_c[:, :, None] * mean_c[:, None, :]
            cov = cov + reg_covar * jnp.eye(d)
            scale = jnp.linalg.cholesky(cov)
    keep = empty.reshape((-1,) + (1,) * (old.scale.ndim - 1))
    return MixtureParams(
        log_weights=log_weights,
        loc=jnp.where(empty[:, None], old.loc, loc),
        scale=jnp.where(keep, old.scale, scale),
    )


# --------------------------------------------------------------------------------------
# Chunked passes over the data.
# --------------------------------------------------------------------------------------


class _Chunks(NamedTuple):
    """Pixel arrays padded and reshaped to (n_chunks, chunk, ...)."""

    x: Float[Array, "C B D"]
    e: Float[Array, "C B"]
    anchor: Int[Array, "C B"]
    valid: Bool[Array, "C B"]


def auto_chunk_size(family: str, n_channels: int, budget_bytes: int = 8 << 20) -> int:
    """Pixels per block so that a block's float64 design features take ~``budget_bytes``
    (within a factor sqrt(2): the nearest power of two).

    Blocks that stay in cache run markedly faster: on a 2-core CPU, 16384 pixels per
    block beat 65536 for every family at N = 4e6 (Poisson 2x, diag 1.25x, full 1.4x;
    benchmarks/mixture_cpu.md), so blocks are capped there; a power of two in
    [1024, 16384] (full covariance over 15 channels gets 8192).
    """
    d = n_channels
    width = {"poisson": d + 1, "diag": 2 * d, "full": d * (d + 1) // 2 + d}[family]
    pixels = budget_bytes // (8 * width)
    return int(min(16384, max(1024, 2 ** round(math.log2(max(pixels, 1))))))  # nearest power of 2


def _to_chunks(x, exposure, anchors, mask, chunk_size: int | None, family: str = "poisson") -> _Chunks:
    n, d = x.shape
    if chunk_size is None:
        chunk_size = auto_chunk_size(family, d)
    b = max(1, min(chunk_size, n))
    n_chunks = -(-n // b)
    pad = n_chunks * b - n
    e = jnp.ones(n, x.dtype) if exposure is None else exposure
    a = jnp.full(n, -1, jnp.int32) if anchors is None else anchors.astype(jnp.int32)
    v = jnp.ones(n, bool) if mask is None else mask.astype(bool)

    def chunked(arr, fill):
        if pad:
            arr = jnp.concatenate([arr, jnp.full((pad,) + arr.shape[1:], fill, arr.dtype)])
        return arr.reshape((n_chunks, b) + arr.shape[1:])

    return _Chunks(chunked(x, 0), chunked(e, 1), chunked(a, -1), chunked(v, False))


def _zero_stats(family: str, k: int, d: int) -> SuffStats:
    s2_shape = {"poisson": (k,), "diag": (k, d), "full": (k, d * (d + 1) // 2)}[family]
    z = jnp.zeros((), jnp.float64)
    return SuffStats(jnp.zeros(k), jnp.zeros((k, d)), jnp.zeros(s2_shape), z, z, z)


def _pass(family, params, chunks: _Chunks, shift, dtype, hard=False, axis_name=None, keep_resp=False):
    """One read of the data: summed sufficient statistics (psum'd over ``axis_name``).

    Returns ``(stats, resp)``; ``resp`` is the (n_chunks * chunk, K) float32
    responsibilities when ``keep_resp``, else None.
    """
    k, d = params.loc.shape
    coeffs = _coefficients(family, params, shift)

    def body(acc, chunk):
        stats, resp = _chunk_stats(family, coeffs, *chunk, shift, dtype, hard)
        return jax.tree.map(jnp.add, acc, stats), resp.astype(jnp.float32) if keep_resp else None

    stats, resp = lax.scan(body, _zero_stats(family, k, d), tuple(chunks))
    if axis_name is not None:
        stats = lax.psum(stats, axis_name)
    return stats, (resp.reshape(-1, k) if keep_resp else None)


def pixel_constant(family: str, x: Float[Array, "N D"], exposure=None, mask=None, chunk_size: int | None = None, axis_name=None):
    """Sum over pixels of the parameter-free part of log p(x_i | k).

    Poisson: sum_ij [x_ij log e_i - log x_ij!]; Gaussian: -N D log(2 pi) / 2.
    Computed once per fit, so the reported log-likelihood is a true one.
    """
    _check_family(family)
    return _pixel_constant(family, _to_chunks(x, exposure, None, mask, chunk_size, family), axis_name)


def _pixel_constant(family: str, chunks: _Chunks, axis_name=None):
    """:func:`pixel_constant` on data already split into chunks."""
    if family != "poisson":
        count = jnp.sum(chunks.valid, dtype=jnp.float64)
        if axis_name is not None:
            count = lax.psum(count, axis_name)
        return -0.5 * chunks.x.shape[-1] * _LOG_2PI * count

    def body(acc, chunk):
        xc, ec, _, vc = chunk
        xc = xc.astype(jnp.float64)
        term = jnp.sum(xc, axis=1) * jnp.log(ec.astype(jnp.float64)) - jnp.sum(gammaln(xc + 1.0), axis=1)
        return acc + jnp.sum(jnp.where(vc, term, 0.0)), None

    total, _ = lax.scan(body, jnp.zeros((), jnp.float64), tuple(chunks))
    if axis_name is not None:
        total = lax.psum(total, axis_name)
    return total


def _data_shift(family, chunks: _Chunks, axis_name=None):
    """Per-channel mean of the valid pixels (Gaussian data are centred on it; Poisson: 0)."""
    d = chunks.x.shape[-1]
    if family == "poisson":
        return jnp.zeros(d)  # rates need the raw counts

    def body(acc, chunk):
        xc, _, _, vc = chunk
        return (acc[0] + jnp.sum(jnp.where(vc[:, None], xc.astype(jnp.float64), 0.0), axis=0), acc[1] + jnp.sum(vc)), None

    (total, count), _ = lax.scan(body, (jnp.zeros(d), jnp.zeros((), jnp.float64)), tuple(chunks))
    if axis_name is not None:
        total, count = lax.psum((total, count), axis_name)
    return total / jnp.maximum(count, 1.0)


def _rate_floor(chunks: _Chunks, axis_name=None) -> Float[Array, " D"]:
    """Smallest Poisson rate allowed per channel: 1e-6 of the channel's mean rate.

    Keeps log rates finite when a component sees no counts in a channel.
    """

    def body(acc, chunk):
        xc, ec, _, vc = chunk
        return (acc[0] + jnp.sum(jnp.where(vc[:, None], xc, 0.0), axis=0, dtype=jnp.float64),
                acc[1] + jnp.sum(jnp.where(vc, ec, 0.0), dtype=jnp.float64)), None

    d = chunks.x.shape[-1]
    (sx, se), _ = lax.scan(body, (jnp.zeros(d), jnp.zeros((), jnp.float64)), tuple(chunks))
    if axis_name is not None:
        sx, se = lax.psum((sx, se), axis_name)
    return 1e-6 * sx / jnp.maximum(se, 1e-300) + 1e-12


# --------------------------------------------------------------------------------------
# The EM driver.
# --------------------------------------------------------------------------------------


class _Problem(NamedTuple):
    family: str
    chunks: _Chunks
    shift: Float[Array, " D"]
    rate_floor: Float[Array, " D"]
    const: Float[Array, ""]  # pixel constant per valid pixel
    reg_covar: float
    dtype: object
    axis_name: object


def init(problem: _Problem, params: MixtureParams, max_iter: int) -> EMState:
    """EM state before the first iteration."""
    nan = jnp.asarray(jnp.nan, jnp.float64)
    return EMState(params, jnp.asarray(0), nan, nan, jnp.full(max_iter, jnp.nan))


def step(problem: _Problem, state: EMState) -> EMState:
    """One EM iteration: E-step pass (log-likelihood at ``state.params``) + M-step."""
    stats, _ = _pass(problem.family, state.params, problem.chunks, problem.shift, problem.dtype, axis_name=problem.axis_name)
    ll = stats.loglik / jnp.maximum(stats.count, 1.0) + problem.const
    params = _m_step(problem.family, stats, state.params, problem.shift, problem.reg_covar, problem.rate_floor)
    return EMState(
        params=params,
        iteration=state.iteration + 1,
        loglik=ll,
        delta=ll - state.loglik,
        history=state.history.at[state.iteration].set(ll),
    )


def _make_problem(family, x, exposure, anchors, mask, chunk_size, reg_covar, compute_dtype, axis_name) -> _Problem:
    _check_family(family)
    chunks = _to_chunks(x, exposure, anchors, mask, chunk_size, family)
    count = jnp.sum(chunks.valid, dtype=jnp.float64)
    if axis_name is not None:
        count = lax.psum(count, axis_name)
    const = _pixel_constant(family, chunks, axis_name) / jnp.maximum(count, 1.0)
    return _Problem(
        family=family,
        chunks=chunks,
        shift=_data_shift(family, chunks, axis_name),
        rate_floor=_rate_floor(chunks, axis_name) if family == "poisson" else jnp.zeros(x.shape[1]),
        const=const,
        reg_covar=reg_covar,
        dtype=jnp.dtype(compute_dtype),
        axis_name=axis_name,
    )


@functools.partial(
    jax.jit,
    static_argnames=("family", "max_iter", "chunk_size", "reg_covar", "compute_dtype", "axis_name", "min_iter"),
)
def fit(
    x: Float[Array, "N D"],
    params: MixtureParams,
    exposure: Float[Array, " N"] | None = None,
    anchors: Int[Array, " N"] | None = None,
    mask: Bool[Array, " N"] | None = None,
    *,
    family: Family = "poisson",
    max_iter: int = 200,
    tol: float = 1e-6,
    min_iter: int = 2,
    chunk_size: int | None = None,
    reg_covar: float = 1e-6,
    compute_dtype: str = "float64",
    axis_name: str | None = None,
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
        family: ``"poisson"``, ``"diag"`` or ``"full"``.
        max_iter: maximum number of EM iterations.
        tol: stop when the mean log-likelihood per pixel (nats) changes by less.
        min_iter: iterations run before the tolerance is tested.
        chunk_size: pixels per block of work (memory ~ chunk_size x (K + features));
            ``None`` picks :func:`auto_chunk_size` for the family.
        reg_covar: variance floor added to Gaussian covariances (data units^2).
        compute_dtype: dtype of the per-chunk log-density matmuls ("float64" or
            "float32"); statistics are always accumulated in float64. float32 is
            faster but resolves log-likelihood changes only down to ~1e-7 nats per
            pixel, so use ``tol >= 1e-6`` with it.
        axis_name: name of a mapped/sharded pixel axis whose statistics are summed.

    Returns:
        A :class:`MixtureResult`.
    """
    problem = _make_problem(family, x, exposure, anchors, mask, chunk_size, reg_covar, compute_dtype, axis_name)

    def cond(state: EMState):
        healthy = (state.iteration == 0) | jnp.isfinite(state.loglik)
        unconverged = (state.iteration < min_iter) | ~(jnp.abs(state.delta) < tol)
        return (state.iteration < max_iter) & healthy & unconverged

    state = lax.while_loop(cond, functools.partial(step, problem), init(problem, params, max_iter))
    final, memberships = _pass(
        problem.family, state.params, problem.chunks, problem.shift, problem.dtype,
        axis_name=problem.axis_name, keep_resp=True,
    )
    loglik = final.loglik / jnp.maximum(final.count, 1.0) + problem.const
    finite = jnp.all(jnp.isfinite(jnp.where(jnp.isnan(state.history), 0.0, state.history))) & jnp.isfinite(loglik)
    return MixtureResult(
        params=state.params,
        memberships=memberships[: x.shape[0]],
        loglik=loglik,
        history=state.history,
        n_iter=state.iteration,
        converged=(jnp.abs(state.delta) < tol) & finite,
        finite=finite,
        entropy=final.entropy,
        n_pixels=final.count,
    )


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown mixture family {family!r}; expected one of {FAMILIES}")


# --------------------------------------------------------------------------------------
# Initialisation.
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("family", "chunk_size", "reg_covar"))
def init_from_centres(
    x: Float[Array, "N D"],
    centres: Float[Array, "K D"],
    exposure: Float[Array, " N"] | None = None,
    anchors: Int[Array, " N"] | None = None,
    mask: Bool[Array, " N"] | None = None,
    *,
    family: Family = "poisson",
    chunk_size: int | None = None,
    reg_covar: float = 1e-6,
) -> MixtureParams:
    """Initial parameters from component centres (e.g. per-phase medians at spots).

    Every pixel is assigned to its most likely centre (anchored pixels to their
    label) under provisional parameters -- rates = centres for Poisson; means =
    centres with the global per-channel variance for Gaussians -- and one M-step on
    that hard partition gives weights, means/rates and covariances. A centre that
    receives no pixel keeps its provisional parameters.

    Args:
        centres: Poisson rates (counts per unit exposure) or Gaussian means, (K, D).
    """
    problem = _make_problem(family, x, exposure, anchors, mask, chunk_size, reg_covar, "float64", None)
    k, d = centres.shape
    centres = centres.astype(jnp.float64)
    if family == "poisson":
        provisional = MixtureParams(jnp.full(k, -jnp.log(k)), jnp.maximum(centres, problem.rate_floor), jnp.zeros((k, 0)))
    else:
        one = MixtureParams(jnp.zeros(1), problem.shift[None], jnp.ones((1, d)))
        glob, _ = _pass("diag", one, problem.chunks, problem.shift, jnp.float64)
        var = glob.s2[0] / jnp.maximum(glob.n[0], 1.0) + reg_covar
        scale = jnp.broadcast_to(var, (k, d)) if family == "diag" else jnp.broadcast_to(jnp.diag(jnp.sqrt(var)), (k, d, d))
        provisional = MixtureParams(jnp.full(k, -jnp.log(k)), centres, scale)
    stats, _ = _pass(family, provisional, problem.chunks, problem.shift, jnp.float64, hard=True)
    return _m_step(family, stats, provisional, problem.shift, reg_covar, problem.rate_floor)


def poisson_rates(
    counts: Real[ArrayLike, "N D"],
    weights: Real[ArrayLike, "N K"],
    exposure: Real[ArrayLike, " N"] | None = None,
) -> Float64[Array, "K D"]:
    """Poisson M-step for weighted pixels: rate_kj = sum_i w_ik x_ij / sum_i w_ik e_i.

    The maximum-likelihood rates (counts per unit exposure) of K components given
    per-pixel weights (memberships, or any non-negative weights), in float64. A
    component with no weight (denominator below 1e-12) gets rate 0 rather than NaN.

    Args:
        counts: counts per pixel and channel, (N, D).
        weights: per-pixel component weights, (N, K).
        exposure: per-pixel exposure, (N,); ``None`` means 1 (rates in counts per pixel).
    """
    require_float64("mixture.poisson_rates")
    x = jnp.asarray(counts, jnp.float64)
    w = jnp.asarray(weights, jnp.float64)
    expo = jnp.sum(w, axis=0) if exposure is None else w.T @ jnp.asarray(exposure, jnp.float64)
    return (w.T @ x) / jnp.maximum(expo, 1e-12)[:, None]


# --------------------------------------------------------------------------------------
# Model choice.
# --------------------------------------------------------------------------------------


def n_parameters(family: Family, n_components: int, n_channels: int) -> int:
    """Number of free parameters of a K-component mixture over D channels."""
    _check_family(family)
    k, d = n_components, n_channels
    per = {"poisson": d, "diag": 2 * d, "full": d + d * (d + 1) // 2}[family]
    return k * per + (k - 1)


def bic(result: MixtureResult, family: Family) -> Float[Array, ""]:
    """Bayesian information criterion, -2 log L + p log N (lower is better)."""
    k, d = result.params.loc.shape[-2:]
    n = result.n_pixels
    return -2.0 * result.loglik * n + n_parameters(family, k, d) * jnp.log(n)


def icl(result: MixtureResult, family: Family) -> Float[Array, ""]:
    """Integrated completed likelihood: BIC + 2 x membership entropy (lower is better).

    Penalises overlapping components, so it prefers well-separated phases.
    """
    return bic(result, family) + 2.0 * result.entropy

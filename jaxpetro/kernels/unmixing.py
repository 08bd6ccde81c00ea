"""Linear mixing of Poisson X-ray counts: per-pixel phase fractions on the simplex.

A pixel at a grain boundary holds several phases. Its expected counts are a mixture
of the phases' rates, ``mu_ij = e_i sum_k f_ik lambda_kj`` with ``f_i`` on the simplex,
and ``f_i`` is fitted by Poisson maximum likelihood:

    minimise  nll(f) = sum_j [ e mu_j(f) - I_j log(e mu_j(f)) ]   over f >= 0, sum f = 1,

which is convex. The solver is entropic mirror descent (exponentiated gradient), whose
multiplicative update stays on the simplex without projection, with a per-pixel step
that grows after a decrease of the objective and halves (rejecting the step) after an
increase, so every iterate lowers the objective. By default every phase is a candidate in
every pixel; ``n_active`` restricts a pixel to its best single phases (by Poisson
log-likelihood), less work with many phases, but a phase whose pure rates are low in most
channels (quartz: Si only) fits a boundary pixel worst on its own and drops out of it, so its
mode comes out low (−1.8 points on the demo section at 3 or 4 candidates, −0.06 with all six;
the linear mixing model of EPMA maps: Lanari et al. 2014, Comput. Geosci. 62:227, XMapTools;
see docs/science.md).

Convergence is measured by the Frank-Wolfe gap ``sum_k f_k g_k - min_k g_k`` (>= 0,
zero exactly at the optimum; an upper bound on nll(f) - min nll), per count of the pixel.

Kernel shape: :func:`init` builds the state of a block of pixels, :func:`step` is one
mirror-descent iteration, :func:`unmix` runs ``max_iter`` of them over blocks of
``chunk_size`` pixels (``lax.map``, so memory stays bounded; the result does not depend
on the block size). Pure JAX, float64; imports only the shared ``jaxpetro.kernels._*``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from jaxpetro.kernels._blocks import clamp_block_size, map_blocks
from jaxpetro.kernels._options import KernelOptions, static
from jaxpetro.kernels._precision import require_float64
from jaxpetro.kernels._status import Status, make_status

__all__ = [
    "SingleFit",
    "UnmixInfo",
    "UnmixOptions",
    "UnmixResult",
    "UnmixState",
    "best_single_phase",
    "init",
    "poisson_deviance",
    "step",
    "unmix",
]

_STEP0 = 1.0  # initial step of the normalised objective
_GROW, _SHRINK, _STEP_MIN, _STEP_MAX = 1.5, 0.5, 1e-8, 1e3
_RATE_FLOOR = 1e-9  # relative floor of a phase rate: keeps log(mu) finite for absent elements


class UnmixOptions(KernelOptions):
    """Options of the mixing kernel; the field names are the keys of the ``mixing:`` config
    section (``enabled`` is the workflow's, not the kernel's).

    Attributes:
        n_active: phases considered per pixel: 0 = all; else its ``n_active`` best
            single-phase fits (less work with many phases, but a phase that only dilutes the
            others' signals — quartz next to plagioclase — ranks last among single-phase fits
            and is then left out of its own boundary pixels, biasing its mode low). Static.
        max_iter: mirror-descent iterations per pixel. Static.
        chunk_size: pixels per block of work (bounds memory). Static.
        pure_p: a pixel that its best pure phase explains at this p-value of the Poisson
            deviance stays pure (used by the screening in :mod:`jaxpetro.models.mixing`;
            0 unmixes every pixel).
        gap_tol: Frank-Wolfe gap per count below which a pixel's status says converged
            (the iteration count is fixed; the tolerance only grades the result).
    """

    n_active: int = static(0)
    max_iter: int = static(30)
    chunk_size: int = static(16384)
    pure_p: float = 1e-3
    gap_tol: float = 1e-6


class UnmixResult(NamedTuple):
    """Per-pixel mixing fractions.

    Attributes:
        fractions: (N, K) on the simplex; zero outside each pixel's active phases.
        nll: (N,) negative log-likelihood at the fractions, without the constant log I!.
        gap: (N,) Frank-Wolfe gap per count at the end (0 at the optimum).
        gain: (N,) log-likelihood gained over the best single phase (>= 0).
        status: per-pixel :class:`~jaxpetro.kernels._status.Status` (converged: gap <=
            ``gap_tol``; iterations: ``max_iter``).
    """

    fractions: Float[Array, "N K"]
    nll: Float[Array, " N"]
    gap: Float[Array, " N"]
    gain: Float[Array, " N"]
    status: Status


class UnmixState(NamedTuple):
    """Mirror-descent state of a block of B pixels over the K phases, each pixel restricted
    to its M candidate phases (the others keep fraction 0).

    Attributes:
        counts, exposure: (B, J), (B,) the block's data (float64).
        candidates: (B, M) indices of each pixel's candidate phases, best single fit first.
        active: (B, K) bool, True on each pixel's candidates.
        rates: (K, J) the phases' rates (floored), shared by every pixel.
        scale: (B,) 1 / (counts + 1): the step acts on the objective per count.
        best_single: (B,) log-likelihood of the best single phase (baseline of the gain).
        fractions: (B, K) current fractions (0 off the candidates).
        log_fractions: (B, K) their logarithms (-inf off the candidates), carried so that a
            step needs no logarithm of the fractions.
        nll: (B,) objective at ``fractions``.
        step_size: (B,) current step of each pixel.
        iteration: () iterations done.
    """

    counts: Array
    exposure: Array
    candidates: Array
    active: Array
    rates: Array
    scale: Array
    best_single: Array
    fractions: Array
    log_fractions: Array
    nll: Array
    step_size: Array
    iteration: Array


class UnmixInfo(NamedTuple):
    """What one :func:`step` did: the objective after it and which pixels accepted it."""

    nll: Float[Array, " B"]
    accepted: Bool[Array, " B"]


def _floored(rates: Array) -> Array:
    return jnp.maximum(rates, _RATE_FLOOR * jnp.max(rates, axis=0, keepdims=True))


# The rates are one (K, J) matrix shared by the block, so the expected counts and the
# gradient are two small GEMMs per iteration; gathering each pixel's candidates' rates
# into a (B, M, J) array instead made every iteration stream B x M x J float64 values from
# memory (8 MB per block of 16384 pixels; ~4x slower measured on the 2000^2 section).


def _mu(f, lam, e):
    return e[:, None] * (f @ lam)


def _nll(f, lam, x, e):
    mu = _mu(f, lam, e)
    return jnp.sum(mu - jax.scipy.special.xlogy(x, mu), axis=-1)


def _grad(f, lam, x, e):
    mu = _mu(f, lam, e)
    ratio = jnp.where(x > 0, x / mu, 0.0)
    return (e[:, None] * (1.0 - ratio)) @ lam.T


def _active_min(g, active):
    return jnp.min(jnp.where(active, g, jnp.inf), axis=1, keepdims=True)


def init(
    counts: Real[ArrayLike, "B J"],
    rates: Real[ArrayLike, "K J"],
    exposure: Real[ArrayLike, " B"] | None = None,
    options: UnmixOptions = UnmixOptions(),
) -> UnmixState:
    """State of a block of pixels: candidates ranked by single-phase fits, fractions 0.9 on
    the best and the rest shared by the other candidates.

    Args:
        counts: X-ray counts per pixel (non-negative; dead-time corrected counts are fine).
        rates: expected counts per unit exposure of a pure pixel of each phase (> 0 in at
            least one channel per phase).
        exposure: per-pixel exposure in the units of ``rates`` (default 1).
        options: ``n_active`` is used here.
    """
    require_float64("unmixing.init")
    x = jnp.asarray(counts).astype(jnp.float64)
    e = jnp.ones((x.shape[0],), jnp.float64) if exposure is None else jnp.asarray(exposure).astype(jnp.float64)
    rates = _floored(jnp.asarray(rates).astype(jnp.float64))
    k = rates.shape[0]
    m = int(k if options.n_active <= 0 else min(options.n_active, k))
    # Single-phase fits rank the candidates; their best is the baseline of the gain.
    single = x @ jnp.log(rates).T - e[:, None] * rates.sum(1)[None, :] + jnp.log(e)[:, None] * x.sum(1, keepdims=True)
    top, idx = jax.lax.top_k(single, m)  # (B, m)
    phase = jnp.arange(k, dtype=idx.dtype)[None, None, :]
    active = jnp.any(idx[:, :, None] == phase, axis=1)  # (B, K)
    best = idx[:, :1] == phase[0]  # (B, K): the best single phase
    f = jnp.where(best, 0.9 if m > 1 else 1.0, jnp.where(active, 0.1 / max(m - 1, 1), 0.0))
    return UnmixState(
        counts=x, exposure=e, candidates=idx, active=active, rates=rates, scale=1.0 / (x.sum(1) + 1.0),
        best_single=top[:, 0], fractions=f, log_fractions=jnp.where(active, jnp.log(f), -jnp.inf),
        nll=_nll(f, rates, x, e), step_size=jnp.full((x.shape[0],), _STEP0), iteration=jnp.zeros((), jnp.int32),
    )


def step(state: UnmixState) -> tuple[UnmixState, UnmixInfo]:
    """One exponentiated-gradient step per pixel, kept where it lowers the objective (the
    step then grows by 1.5), rejected otherwise (the step halves)."""
    s = state
    g = _grad(s.fractions, s.rates, s.counts, s.exposure) * s.scale[:, None]
    logits = s.log_fractions - s.step_size[:, None] * (g - _active_min(g, s.active))  # -inf off the candidates
    # softmax, and its logarithm without a logarithm per phase
    top = jnp.max(logits, axis=1, keepdims=True)
    w = jnp.exp(logits - top)
    total = jnp.sum(w, axis=1, keepdims=True)
    trial = w / total
    trial_log = logits - (top + jnp.log(total))
    trial_nll = _nll(trial, s.rates, s.counts, s.exposure)
    better = trial_nll <= s.nll
    f = jnp.where(better[:, None], trial, s.fractions)
    log_f = jnp.where(better[:, None], trial_log, s.log_fractions)
    nll = jnp.where(better, trial_nll, s.nll)
    size = jnp.clip(jnp.where(better, s.step_size * _GROW, s.step_size * _SHRINK), _STEP_MIN, _STEP_MAX)
    new = s._replace(fractions=f, log_fractions=log_f, nll=nll, step_size=size, iteration=s.iteration + 1)
    return new, UnmixInfo(nll, better)


def _finish(state: UnmixState, gap_tol) -> UnmixResult:
    s = state
    g = _grad(s.fractions, s.rates, s.counts, s.exposure) * s.scale[:, None]
    gap = jnp.sum(s.fractions * g, 1) - _active_min(g, s.active)[:, 0]
    gain = jnp.maximum(-s.nll - s.best_single, 0.0)  # best_single = -nll of a pure pixel of that phase
    b = s.counts.shape[0]
    finite = jnp.isfinite(s.nll) & jnp.all(jnp.isfinite(s.fractions), axis=1)
    status = make_status(gap <= gap_tol, finite, jnp.broadcast_to(s.iteration, (b,)))
    return UnmixResult(s.fractions, s.nll, gap, gain, status)


def _solve_block(x, e, rates, options: UnmixOptions) -> UnmixResult:
    state = init(x, rates, e, options)
    state = jax.lax.fori_loop(0, options.max_iter, lambda _, st: step(st)[0], state)
    return _finish(state, options.gap_tol)


def unmix(
    counts: Real[ArrayLike, "N J"],
    rates: Real[ArrayLike, "K J"],
    exposure: Real[ArrayLike, " N"] | None = None,
    options: UnmixOptions = UnmixOptions(),
) -> UnmixResult:
    """Fractions of the K phases (rates ``rates`` per unit exposure) in every pixel:
    :func:`init`, then ``options.max_iter`` :func:`step` s, over blocks of
    ``options.chunk_size`` pixels.

    Args:
        counts: X-ray counts per pixel (non-negative; non-integer dead-time corrected
            counts are fine).
        rates: expected counts per unit exposure of a pure pixel of each phase.
        exposure: per-pixel exposure in the units of ``rates`` (default 1).
        options: :class:`UnmixOptions`.

    Returns:
        :class:`UnmixResult` (float64).
    """
    return _unmix(*_inputs(counts, rates, exposure), options)


@jax.jit
def _unmix(counts, rates, exposure, options: UnmixOptions) -> UnmixResult:
    require_float64("unmix")
    rates = rates.astype(jnp.float64)
    return _over_pixels(lambda xb, eb: _solve_block(xb, eb, rates, options), counts, exposure, options)


@jax.jit
def poisson_deviance(counts: Real[ArrayLike, "*#batch J"], mu: Real[ArrayLike, "*#batch J"]) -> Float[Array, "..."]:
    """Poisson deviance ``2 sum_j [x_j log(x_j / mu_j) - (x_j - mu_j)]`` of counts against
    their expectation (~ chi-square with J degrees of freedom when ``mu`` is right); the
    leading axes broadcast (same rank)."""
    x, mu = jnp.asarray(counts), jnp.asarray(mu)
    return 2.0 * jnp.sum(jax.scipy.special.xlogy(x, x / mu) - (x - mu), axis=-1)


class SingleFit(NamedTuple):
    """Best single phase per pixel: its index and the Poisson deviance of the pixel's counts
    against it (~ chi-square with J degrees of freedom when the pixel is that pure phase)."""

    index: Int[Array, " N"]
    deviance: Float[Array, " N"]


def best_single_phase(
    counts: Real[ArrayLike, "N J"],
    rates: Real[ArrayLike, "K J"],
    exposure: Real[ArrayLike, " N"] | None = None,
    options: UnmixOptions = UnmixOptions(),
) -> SingleFit:
    """The best-fitting pure phase of every pixel and the deviance of that fit (blocks of
    ``options.chunk_size`` pixels).

    Pixels that their best pure phase explains within counting noise need no unmixing;
    screening them out first divides the work of :func:`unmix` on a typical section by ~5.
    """
    return _single(*_inputs(counts, rates, exposure), options)


@jax.jit
def _single(counts, rates, exposure, options: UnmixOptions) -> SingleFit:
    require_float64("best_single_phase")
    rates = _floored(rates.astype(jnp.float64))

    def block(xb, eb):
        xb, eb = xb.astype(jnp.float64), eb.astype(jnp.float64)
        ll = xb @ jnp.log(rates).T - eb[:, None] * rates.sum(1)[None, :]  # + x log e, constant in k
        k = jnp.argmax(ll, axis=1)
        return SingleFit(k, poisson_deviance(xb, eb[:, None] * rates[k]))

    return _over_pixels(block, counts, exposure, options)


def _inputs(counts, rates, exposure):
    """Arrays of the public entry points; exposure 1 when not given."""
    counts = jnp.asarray(counts)
    exposure = jnp.ones((counts.shape[0],), counts.dtype) if exposure is None else jnp.asarray(exposure)
    return counts, jnp.asarray(rates), exposure


def _over_pixels(fn, counts, exposure, options: UnmixOptions):
    """``fn(counts_block, exposure_block)`` over blocks of ``options.chunk_size`` pixels;
    padded rows (zero counts at unit exposure) are inert and cut off again."""
    return map_blocks(fn, (counts, exposure), clamp_block_size(options.chunk_size, counts.shape[0]), (0, 1))

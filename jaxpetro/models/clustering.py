"""Phase clustering of X-ray maps: validated inputs -> the EM kernel -> memberships.

This is the petrology-facing layer over :mod:`jaxpetro.kernels.mixture`. It checks
the maps (raising :class:`~jaxpetro.errors.InputError` with a message that says what
to fix), builds the features each model family needs, derives initial centres from
labelled spot pixels (per-phase medians) and/or seeded k-means++, runs EM and
reshapes the result back to the map grid.

Models:
    ``poisson``  X-ray counts with per-pixel exposure (dwell x current); electron
                 channels (BSE...) are not Poisson counts and are left out.
    ``gaussian`` diagonal or full covariance on rates (counts / exposure) or on the
                 variance-stabilised ``sqrt`` of rates; electron channels may join.

Every setting is in one :class:`ClusteringOptions` whose fields are the ``clustering:``
config keys (``ClusteringOptions.from_config(config.clustering)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro.errors import ConvergenceError, InputError
from jaxpetro.kernels import kmeans, mixture
from jaxpetro.kernels._options import KernelOptions, static
from jaxpetro.kernels._status import Status
from jaxpetro.models import parallel

Model = Literal["poisson", "gaussian"]


class ClusteringOptions(KernelOptions):
    """Settings of :func:`cluster_map`; field names and defaults are those of the
    ``clustering:`` config section (its ``phases`` key is the workflow's: which spots
    anchor which component).

    Attributes:
        model: ``poisson`` (counts) or ``gaussian``.
        covariance: ``diag`` or ``full`` (gaussian only).
        transform: ``none`` or ``sqrt``: variance-stabilising transform of count rates
            (gaussian only).
        init: ``anchors`` (per-phase medians at anchored pixels; phases without spots
            and extra components seeded by k-means++) or ``kmeans++``.
        extra_components: unlabelled components added to the labelled phases.
        use_bse: let the Gaussian model cluster on the electron (BSE) channels too.
        max_iter: maximum EM iterations.
        tol: convergence tolerance on the mean log-likelihood per pixel (nats).
        reg_covar: added to covariance diagonals (gaussian only; feature units^2).
        chunk_size: pixels per block of EM work; ``None``: automatic
            (:func:`jaxpetro.kernels.mixture.auto_chunk_size`).
    """

    model: Model = static("poisson")
    covariance: Literal["diag", "full"] = static("full")
    transform: Literal["none", "sqrt"] = static("sqrt")
    init: Literal["anchors", "kmeans++"] = static("anchors")
    extra_components: int = static(0)
    use_bse: bool = static(True)
    max_iter: int = static(500)
    tol: float = eqx.field(default=1e-7, converter=float)
    reg_covar: float = eqx.field(default=1e-6, converter=float)
    chunk_size: int | None = static(None)

    @property
    def family(self) -> mixture.Family:
        """The kernel family: ``poisson``, or the Gaussian covariance type."""
        return "poisson" if self.model == "poisson" else self.covariance

    def mixture_options(self) -> mixture.MixtureOptions:
        """The EM kernel's options for these settings."""
        return mixture.MixtureOptions(
            family=self.family, max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar,
            chunk_size=self.chunk_size,
        )


@dataclass(frozen=True)
class ClusterResult:
    """Phase memberships of a map and the fitted mixture.

    Attributes:
        names: component names: the labelled phases, then ``extra1``, ``extra2``...
        memberships: (rows, cols, K) float32, each pixel on the simplex.
        params: the fitted :class:`~jaxpetro.kernels.mixture.MixtureParams`; for
            ``poisson`` ``loc`` holds the rates in counts per unit exposure of the
            channels in ``channels``.
        channels: indices of the input channels that were clustered.
        family: kernel family used (``poisson``, ``diag`` or ``full``).
        loglik: mean log-likelihood per pixel (nats).
        history: log-likelihood per iteration.
        status: the EM's :class:`~jaxpetro.kernels._status.Status` (``iterations``,
            ``converged``: whether the tolerance was reached, ``finite``, ``code``).
        bic, icl: information criteria of the fit (lower is better).
    """

    names: tuple[str, ...]
    memberships: np.ndarray
    params: mixture.MixtureParams
    channels: tuple[int, ...]
    family: str
    loglik: float
    history: np.ndarray
    status: Status
    bic: float
    icl: float

    @property
    def phase_map(self) -> np.ndarray:
        """Index of the most likely component per pixel, (rows, cols) int32."""
        return np.argmax(self.memberships, axis=-1).astype(np.int32)

    def datasets(self, channel_names=None) -> dict:
        """The fitted mixture as a mapping for an HDF5 ``clustering/`` group."""
        return {
            "family": self.family,
            "channels": list(channel_names) if channel_names is not None else np.asarray(self.channels),
            "log_weights": self.params.log_weights,
            "loc": self.params.loc,
            "scale": self.params.scale,
            "history": self.history,
            "n_iter": int(self.status.iterations),
            "converged": int(self.status.converged),
            "loglik": self.loglik,
            "bic": self.bic,
            "icl": self.icl,
        }

    def modal(self) -> dict[str, float]:
        """Modal proportion of each component: the mean membership over the map."""
        m = self.memberships.reshape(-1, self.memberships.shape[-1]).mean(axis=0, dtype=np.float64)
        return dict(zip(self.names, m.tolist()))


def validate_maps(
    counts: np.ndarray,
    exposure: np.ndarray | None,
    anchors: np.ndarray | None = None,
    n_phases: int | None = None,
    *,
    require_counts: bool = True,
    what: str = "map stack",
) -> None:
    """Check a (rows, cols, channels) map stack and its exposure and anchor maps.

    Raises:
        InputError: wrong dimensionality or shapes, NaN/infinite or negative counts,
            non-positive exposure, anchor labels out of range.
    """
    counts = np.asarray(counts)
    if counts.ndim != 3 or min(counts.shape) < 1:
        raise InputError(
            f"{what}: expected an array of shape (rows, cols, channels) with at least one pixel "
            f"and one channel, got shape {counts.shape}."
        )
    rows, cols, n_chan = counts.shape
    bad = ~np.isfinite(counts)
    if bad.any():
        chan = np.flatnonzero(bad.any(axis=(0, 1)))
        raise InputError(
            f"{what}: {int(bad.sum())} NaN or infinite values (channels {chan.tolist()}); "
            "replace missing pixels by a mask or re-export the maps."
        )
    if require_counts and (counts < 0).any():
        chan = np.flatnonzero((counts < 0).any(axis=(0, 1)))
        raise InputError(
            f"{what}: negative X-ray counts in channels {chan.tolist()}; counts must be >= 0 "
            "(background-subtracted maps cannot be used with the Poisson model; use raw counts "
            "or clustering.model: gaussian)."
        )
    if exposure is not None:
        exposure = np.asarray(exposure)
        if exposure.shape != (rows, cols):
            raise InputError(
                f"exposure: shape {exposure.shape} does not match the maps' {(rows, cols)}; "
                "give one exposure (dwell s x current uA) per pixel."
            )
        if not np.all(np.isfinite(exposure)) or (exposure <= 0).any():
            raise InputError(
                "exposure: every pixel needs a finite, positive exposure (dwell time x probe "
                "current); check the dwell time and probe current of the map conditions."
            )
    if anchors is not None:
        anchors = np.asarray(anchors)
        if anchors.shape != (rows, cols):
            raise InputError(f"anchors: shape {anchors.shape} does not match the maps' {(rows, cols)}.")
        if n_phases is not None and ((anchors < -1) | (anchors >= n_phases)).any():
            raise InputError(
                f"anchors: labels must be -1 (free pixel) or a phase index in [0, {n_phases - 1}]."
            )


def _features(counts, exposure, channels, model, transform, electron):
    """Per-pixel features (N, D) float32 the family clusters on, and the exposure."""
    x = counts.reshape(-1, counts.shape[-1])[:, list(channels)].astype(np.float32, copy=False)
    e = np.ones(x.shape[0]) if exposure is None else np.asarray(exposure, np.float64).reshape(-1)
    if model == "poisson":
        return x, e
    is_xray = np.array([c not in electron for c in channels])
    rates = np.where(is_xray, x / e[:, None].astype(np.float32), x)
    if transform == "sqrt":
        rates = np.where(is_xray, np.sqrt(np.maximum(rates, 0.0)), rates)
    return np.ascontiguousarray(rates, dtype=np.float32), None


def anchor_centres(features: np.ndarray, exposure: np.ndarray | None, anchors: np.ndarray, n_phases: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-phase median feature (or rate, for counts with exposure) at anchored pixels.

    Returns:
        (centres (n_phases, D), has_anchor (n_phases,) bool); phases without anchors
        get NaN centres.
    """
    flat = anchors.reshape(-1)
    values = features if exposure is None else features / exposure[:, None]
    centres = np.full((n_phases, features.shape[1]), np.nan)
    for k in range(n_phases):  # a few dozen spot pixels: a Python loop over phases is fine
        sel = flat == k
        if sel.any():
            centres[k] = np.median(values[sel], axis=0)
    return centres, ~np.isnan(centres[:, 0])


def cluster_map(
    counts: np.ndarray,
    exposure: np.ndarray | None = None,
    *,
    phases: Sequence[str] = (),
    anchors: np.ndarray | None = None,
    electron_channels: Sequence[int] = (),
    seed: int = 0,
    options: ClusteringOptions = ClusteringOptions(),
    devices: Sequence = (),
) -> ClusterResult:
    """Soft-cluster a map stack into phases.

    Args:
        counts: (rows, cols, channels) X-ray counts per pixel (electron channels may
            hold any non-negative signal).
        exposure: (rows, cols) dwell time (s) x probe current (uA) per pixel, or
            ``None`` for a uniform exposure of 1.
        phases: names of the labelled phases; ``anchors`` indexes into them.
        anchors: (rows, cols) int, the phase index of spot pixels (fixed during EM),
            -1 elsewhere; ``None`` for unsupervised clustering.
        electron_channels: indices of electron-image channels (BSE...).
        seed: seed of the k-means++ draws.
        options: a :class:`ClusteringOptions` (model, covariance, init, EM settings...).
        devices: local devices to shard the pixels over
            (:func:`jaxpetro.models.parallel.pixel_devices`); empty or one device = unsharded.

    Returns:
        A :class:`ClusterResult`.

    Raises:
        InputError: invalid maps, exposure or anchors, or too few components.
        ConvergenceError: the EM produced non-finite log-likelihoods.
    """
    o = options
    counts = np.asarray(counts)
    phases = tuple(phases)
    validate_maps(counts, exposure, anchors, len(phases), require_counts=o.model == "poisson")
    rows, cols, n_chan = counts.shape
    electron = set(int(c) for c in electron_channels)
    if o.model == "poisson" or not o.use_bse:
        channels = tuple(c for c in range(n_chan) if c not in electron)
    else:
        channels = tuple(range(n_chan))
    if not channels:
        raise InputError("map stack: no X-ray channel to cluster (all channels are electron images).")
    if o.init == "anchors" and (anchors is None or not (np.asarray(anchors) >= 0).any()):
        raise InputError(
            "clustering.init is 'anchors' but no spot pixel is labelled; give spot analyses "
            "with phase labels, or use clustering.init: kmeans++ with clustering.extra_components "
            "set to the number of phases expected."
        )
    n_comp = len(phases) + o.extra_components
    if n_comp < 1:
        raise InputError(
            "clustering: no components; name the phases (spot labels) or set clustering.extra_components >= 1."
        )
    x, e = _features(counts, exposure, channels, o.model, o.transform, electron)
    n_pix = x.shape[0]
    if n_pix < n_comp:
        raise InputError(f"map stack: {n_pix} pixels cannot be split into {n_comp} components.")
    flat_anchors = None if anchors is None else np.asarray(anchors, np.int32).reshape(-1)

    fixed = np.zeros((0, x.shape[1]))
    if o.init == "anchors":
        centres, has = anchor_centres(x, e, flat_anchors, len(phases))
        fixed = centres[has]  # phases without spots are seeded by k-means++ below
    else:
        has = np.zeros(len(phases), bool)
    key = jax.random.key(seed)
    feat_for_seeds = x if e is None else x / e[:, None]
    seeded = np.asarray(
        kmeans.kmeanspp_centres(key, jnp.asarray(feat_for_seeds), n_comp, fixed=jnp.asarray(fixed))
    )
    # Order: labelled phases (anchored ones from their medians, others from k-means++),
    # then the extra components.
    order = np.concatenate([np.flatnonzero(has), np.flatnonzero(~has), np.arange(len(phases), n_comp)])
    centres_all = np.empty_like(seeded)
    centres_all[order] = seeded

    xj = jnp.asarray(x)
    ej = None if e is None else jnp.asarray(e)
    aj = None if flat_anchors is None else jnp.asarray(flat_anchors)
    em = o.mixture_options()
    params0 = mixture.init_from_centres(xj, jnp.asarray(centres_all), ej, aj, options=em)
    res = parallel.fit_mixture(xj, params0, ej, aj, options=em, devices=devices)
    if not bool(res.status.finite):
        raise ConvergenceError(
            "clustering: the EM log-likelihood became non-finite; check the maps for saturated or "
            "constant channels, or raise clustering.reg_covar (Gaussian model)."
        )
    history = np.asarray(res.history)
    names = phases + tuple(f"extra{i + 1}" for i in range(o.extra_components))
    return ClusterResult(
        names=names,
        memberships=np.asarray(res.memberships).reshape(rows, cols, n_comp),
        params=jax.tree.map(np.asarray, res.params),
        channels=channels,
        family=o.family,
        loglik=float(res.loglik),
        history=history[~np.isnan(history)],
        status=res.status,
        bic=float(mixture.bic(res, o.family)),
        icl=float(mixture.icl(res, o.family)),
    )


class ComponentScore(NamedTuple):
    """One row of :func:`compare_components`: K, the mean log-likelihood per pixel
    (nats), BIC, ICL and whether the EM converged."""

    k: int
    loglik: float
    bic: float
    icl: float
    converged: bool


def compare_components(
    counts: np.ndarray,
    exposure: np.ndarray | None,
    n_components: Sequence[int],
    *,
    electron_channels: Sequence[int] = (),
    seed: int = 0,
    options: ClusteringOptions = ClusteringOptions(),
) -> list[ComponentScore]:
    """Fit unsupervised mixtures (k-means++ seeds, no anchors) for several K and tabulate
    BIC and ICL; ``options`` gives the model and EM settings (its ``init`` and
    ``extra_components`` are overridden).

    Returns:
        One :class:`ComponentScore` per K; choose the K with the lowest BIC (or ICL,
        which favours well-separated phases).
    """
    rows = []
    for k in n_components:  # each K has its own shapes: one compilation per K
        res = cluster_map(counts, exposure, electron_channels=electron_channels, seed=seed,
                          options=options.replace(init="kmeans++", extra_components=int(k)))
        rows.append(ComponentScore(int(k), res.loglik, res.bic, res.icl, bool(res.status.converged)))
    return rows


def adjusted_rand_index(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Adjusted Rand index of two labellings of the same pixels (1 = identical partitions).

    Invariant to renaming the labels; ~0 for independent random labellings.
    """
    a = np.asarray(labels_a).reshape(-1)
    b = np.asarray(labels_b).reshape(-1)
    if a.shape != b.shape:
        raise InputError(f"labellings have different sizes ({a.size} and {b.size}).")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), np.int64)
    np.add.at(table, (ai, bi), 1)

    def pairs(v):
        v = np.asarray(v, np.float64)
        return np.sum(v * (v - 1) / 2)

    index = pairs(table)
    row, col, total = pairs(table.sum(1)), pairs(table.sum(0)), a.size * (a.size - 1) / 2
    expected = row * col / total if total > 0 else 0.0
    best = 0.5 * (row + col)
    if best == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return float((index - expected) / (best - expected))


__all__ = [
    "ClusterResult",
    "ClusteringOptions",
    "ComponentScore",
    "Model",
    "adjusted_rand_index",
    "anchor_centres",
    "cluster_map",
    "compare_components",
    "validate_maps",
]

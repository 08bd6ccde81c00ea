"""Synthetic whole-rock data with known mass transfer (the isocon model of Grant 1986; docs/science.md).

A protolith composition (major oxides in wt%, trace elements in ppm) is altered into
``n_altered`` samples: each sample has a true mass ratio ``M^A/M^O`` and each mobile
element a true log mobility ``b_ij = log(1 + ΔC_ij / C_i^O)``; immobile elements have
``b_ij = 0`` in every sample. Then (Gresens) ``C^A_ij = C^O_i exp(b_ij) / (M^A/M^O)_j``.
Every reported analysis (the protolith ones too) carries independent multiplicative
log-normal noise of relative size ``noise``. Used by the tests, the recovery study, the
demo and ``configs/data/wholerock_synthetic.csv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.io.results import write_csv
from jaxpetro.io.wholerock import Analyses

__all__ = ["PROTOLITH", "WholeRockSet", "make_wholerock", "write_wholerock_csv"]

# A metabasalt-like protolith: 10 major oxides (wt%) and 10 trace elements (ppm).
PROTOLITH: dict[str, tuple[float, str]] = {
    "SiO2": (49.5, "wt%"), "TiO2": (1.6, "wt%"), "Al2O3": (15.2, "wt%"), "FeO": (10.1, "wt%"),
    "MnO": (0.18, "wt%"), "MgO": (7.4, "wt%"), "CaO": (10.8, "wt%"), "Na2O": (2.6, "wt%"),
    "K2O": (0.45, "wt%"), "P2O5": (0.21, "wt%"),
    "Zr": (115.0, "ppm"), "Nb": (9.5, "ppm"), "Y": (29.0, "ppm"), "Th": (1.2, "ppm"), "Rb": (11.0, "ppm"),
    "Sr": (220.0, "ppm"), "Ba": (140.0, "ppm"), "La": (8.9, "ppm"), "Ce": (22.0, "ppm"), "V": (290.0, "ppm"),
}


@dataclass(frozen=True)
class WholeRockSet(Analyses):
    """A synthetic data set (:class:`~jaxpetro.io.wholerock.Analyses`: samples, references
    first ``ref1``..., then ``alt1``...; units "wt%" or "ppm"; measured values in the column
    units) and its truth.

    Attributes (besides those of :class:`~jaxpetro.io.wholerock.Analyses`):
        reference: names of the protolith samples.
        protolith: true protolith (G,) in the column units.
        mass_ratio: true M^A/M^O (n_altered,).
        mobility: true log mobility b (G, n_altered); 0 where immobile.
        immobile: true immobile elements (G,) (b = 0 in every sample).
        noise: relative (log-normal) analytical error of every value.
    """

    reference: tuple[str, ...]
    protolith: np.ndarray
    mass_ratio: np.ndarray
    mobility: np.ndarray
    immobile: np.ndarray
    noise: float

    @property
    def altered(self) -> tuple[str, ...]:
        return tuple(s for s in self.samples if s not in self.reference)


def make_wholerock(
    seed: int,
    n_elements: int = 20,
    n_altered: int = 5,
    immobile_fraction: float = 0.3,
    mass_ratio_range: tuple[float, float] = (0.7, 1.5),
    noise: float = 0.10,
    n_reference: int = 1,
    mobility_range: tuple[float, float] = (0.2, 1.0),
    gain_probability: float = 0.6,
    partial: float = 0.0,
    closure: bool = True,
) -> WholeRockSet:
    """Simulate one whole-rock data set with known truth.

    Args:
        seed: seed of numpy's generator (same seed, same data).
        n_elements: G <= 20 columns (the first G of :data:`PROTOLITH` in a shuffled order).
        n_altered: number of altered samples S.
        immobile_fraction: share of elements immobile in every sample (rounded; 0 = all mobile).
        mass_ratio_range: true M^A/M^O drawn uniformly in this range.
        noise: relative analytical error (sd of the log of every measured value).
        n_reference: number of protolith analyses (replicates of the same rock).
        mobility_range: |b_ij| (log units) of a mobile element drawn uniformly here; each
            mobile element gains (probability ``gain_probability``) or loses in every sample.
        partial: probability that a mobile element is nonetheless immobile in one sample
            (for the sparse-group variant).
        closure: keep the oxide total of every true altered composition at or below
            99 wt% (the rest is volatiles) where the mobile oxides allow it: the excess is
            removed from the most abundant mobile oxides in turn (the truth records the
            adjusted mobilities).

    Returns:
        :class:`WholeRockSet`.
    """
    if not 3 <= n_elements <= len(PROTOLITH):
        raise ValueError(f"n_elements must be in 3..{len(PROTOLITH)}")
    rng = np.random.default_rng(seed)
    names = list(PROTOLITH)
    order = rng.permutation(len(names))[:n_elements]
    elements = tuple(names[i] for i in sorted(order))
    base = np.array([PROTOLITH[e][0] for e in elements])
    units = tuple(PROTOLITH[e][1] for e in elements)
    n_imm = int(round(immobile_fraction * n_elements))
    immobile = np.zeros(n_elements, bool)
    immobile[rng.choice(n_elements, n_imm, replace=False)] = True
    direction = np.where(rng.uniform(size=n_elements) < gain_probability, 1.0, -1.0)
    magnitude = rng.uniform(*mobility_range, size=(n_elements, n_altered))
    mobility = direction[:, None] * magnitude
    if partial > 0:
        mobility = np.where(rng.uniform(size=mobility.shape) < partial, 0.0, mobility)
    mobility[immobile] = 0.0
    mass_ratio = rng.uniform(*mass_ratio_range, size=n_altered)
    if closure:
        # The excess over 99 wt% is taken from the most abundant mobile oxides, in turn
        # (desilication first when SiO2 is mobile); other mobilities stay as drawn.
        is_wt = np.array([u == "wt%" for u in units])
        fillers = [i for i in np.argsort(-base) if is_wt[i] and not immobile[i]]
        for j in range(n_altered):
            for k in fillers:
                oxide = base[is_wt] * np.exp(mobility[is_wt, j]) / mass_ratio[j]
                excess = oxide.sum() - 99.0
                if excess <= 0:
                    break
                now = base[k] * np.exp(mobility[k, j]) / mass_ratio[j]
                target = max(now - excess, 0.05 * now)
                mobility[k, j] = min(mobility[k, j], np.log(target * mass_ratio[j] / base[k]))
    altered_true = base[None, :] * np.exp(mobility.T) / mass_ratio[:, None]
    true = np.concatenate([np.repeat(base[None, :], n_reference, axis=0), altered_true], axis=0)
    values = true * np.exp(noise * rng.normal(size=true.shape))
    reference = tuple(f"ref{k + 1}" for k in range(n_reference))
    samples = reference + tuple(f"alt{k + 1}" for k in range(n_altered))
    return WholeRockSet(samples=samples, elements=elements, units=units, values=values, reference=reference,
                        protolith=base, mass_ratio=mass_ratio, mobility=mobility, immobile=immobile, noise=noise)


def write_wholerock_csv(path: str | os.PathLike, data: WholeRockSet, digits: int = 4) -> Path:
    """Write the measured values as a whole-rock CSV (``sample`` column + one column per element).

    Values are rounded to ``digits`` significant digits, as a laboratory reports them.
    """
    rows = [[name, *(f"{v:.{digits}g}" for v in row)] for name, row in zip(data.samples, data.values)]
    return write_csv(path, ["sample", *data.elements], rows)  # atomic: temp file + rename

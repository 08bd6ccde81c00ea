"""Synthetic whole-rock data with known mass transfer (the isocon model of Grant 1986; docs/science.md).

A protolith composition (major oxides in wt%, trace elements in ppm) is altered into
``n_altered`` samples: each sample has a true mass ratio ``M^A/M^O`` and each mobile
element a true log mobility ``b_ij = log(1 + ΔC_ij / C_i^O)``; immobile elements have
``b_ij = 0`` in every sample. Then (Gresens) ``C^A_ij = C^O_i exp(b_ij) / (M^A/M^O)_j``.
Every reported analysis (the protolith ones too) carries independent multiplicative
log-normal noise of relative size ``noise``.

Two generators: :func:`make_wholerock` draws a random immobile set and independent
mass ratios (the recovery and coverage studies); :func:`make_altered_basalt` is a
geochemically plausible hydrothermally altered basalt (the demo and
``configs/data/wholerock_synthetic.csv``): Ti, Al, Zr, Nb, Y and Th immobile, alkalis,
Ca, Sr, Ba, Mg, Fe... moved along one alteration trend of varying intensity, volatiles
(LOI) gained, every composition closing to 100 wt% so that the mass ratio follows from
the element changes, as it does in a rock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpetro.io.results import write_csv
from jaxpetro.io.wholerock import Analyses

__all__ = ["ALTERATION", "PROTOLITH", "WholeRockSet", "make_altered_basalt", "make_wholerock",
           "write_wholerock_csv"]

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
        noise: relative (log-normal) analytical error of every value, one number or one per
            element (G,).
        loi: measured loss on ignition (wt%) per sample, or None (:func:`make_altered_basalt`).
    """

    reference: tuple[str, ...]
    protolith: np.ndarray
    mass_ratio: np.ndarray
    mobility: np.ndarray
    immobile: np.ndarray
    noise: float | np.ndarray
    loi: np.ndarray | None = None

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

#: Log change per unit alteration intensity of each element of :data:`PROTOLITH` in
#: :func:`make_altered_basalt`: sericite-chlorite alteration of a basalt (plagioclase and
#: clinopyroxene destroyed, sericite and chlorite formed, as in the footwall of
#: volcanogenic massive sulphide deposits; MacLean & Kranidiotis 1987, Grant 2005):
#: K, Rb, Ba gained (sericite), Na, Ca, Sr lost (plagioclase), Mg and Fe gained
#: (chlorite), Mn, P, light REE and V mildly lost. Ti, Al, Zr, Nb, Y and Th are immobile
#: (0). SiO2 moves per sample (silicification or leaching) and sets the mass change.
ALTERATION: dict[str, float] = {
    "SiO2": 0.0, "TiO2": 0.0, "Al2O3": 0.0, "FeO": 0.35, "MnO": -0.5, "MgO": 0.5, "CaO": -1.1, "Na2O": -1.2,
    "K2O": 1.3, "P2O5": -0.4, "Zr": 0.0, "Nb": 0.0, "Y": 0.0, "Th": 0.0, "Rb": 1.1, "Sr": -0.9, "Ba": 0.8,
    "La": -0.45, "Ce": -0.4, "V": -0.4,
}
_IMMOBILE_BASALT = ("TiO2", "Al2O3", "Zr", "Nb", "Y", "Th")
_LOI_PROTOLITH = 1.2  # wt%, H2O + CO2 of a fresh basalt
_LOI_GAIN = 1.0       # log gain of the volatiles per unit intensity (hydration, carbonation)


def make_altered_basalt(
    seed: int,
    n_altered: int = 5,
    n_reference: int = 1,
    noise_major: float = 0.02,
    noise_trace: float = 0.06,
    intensity_range: tuple[float, float] = (0.4, 1.0),
    silica_range: tuple[float, float] = (-0.6, 0.45),
    jitter: float = 0.25,
) -> WholeRockSet:
    """A hydrothermally altered basalt with known truth, closed to 100 wt%.

    Sample j has an alteration intensity ``x_j`` (uniform in ``intensity_range``); element
    i moves by ``b_ij = x_j ALTERATION_i exp(jitter z_ij)`` (same sign in every sample),
    SiO2 by a per-sample ``b_j`` uniform in ``silica_range`` (silicification > 0, leaching
    < 0), the volatiles (LOI, 1.2 wt% in the protolith) by ``x_j`` log units; Ti, Al, Zr,
    Nb, Y, Th do not move. Every true composition, oxides + traces + LOI, sums to 100 wt%,
    so the mass ratio is not drawn but follows from mass balance (Gresens 1967):
    ``M^A/M^O = sum_i C^O_i exp(b_ij) / 100`` (wt%, the volatiles included). The measured
    values carry log-normal noise of relative size ``noise_major`` (oxides, LOI) and
    ``noise_trace`` (ppm elements), typical XRF / ICP-MS precisions with some sample
    heterogeneity, so the measured totals scatter about 100 wt% by about 1 wt%.

    Args:
        seed: seed of numpy's generator (same seed, same data).
        n_altered: altered samples S.
        n_reference: protolith analyses.
        noise_major, noise_trace: relative analytical error of oxides and of trace elements.
        intensity_range: alteration intensity x_j.
        silica_range: log change of SiO2 per sample.
        jitter: log-normal spread of each element's change about the common trend.

    Returns:
        :class:`WholeRockSet` with the 20 elements of :data:`PROTOLITH`, per-element
        ``noise`` (G,) and the measured ``loi``.
    """
    rng = np.random.default_rng(seed)
    elements = tuple(PROTOLITH)
    base = np.array([PROTOLITH[e][0] for e in elements])
    units = tuple(PROTOLITH[e][1] for e in elements)
    to_wt = np.array([1.0 if u == "wt%" else 1e-4 for u in units])
    immobile = np.array([e in _IMMOBILE_BASALT for e in elements])
    beta = np.array([ALTERATION[e] for e in elements])
    x = rng.uniform(*intensity_range, size=n_altered)
    mobility = beta[:, None] * x[None, :] * np.exp(jitter * rng.normal(size=(len(elements), n_altered)))
    mobility[elements.index("SiO2")] = rng.uniform(*silica_range, size=n_altered)
    mobility[immobile] = 0.0
    # The protolith closes to 100 wt% with its volatiles; scale the anhydrous analysis to 100 - LOI.
    base = base * (100.0 - _LOI_PROTOLITH) / np.sum(base * to_wt)
    loi_alt = _LOI_PROTOLITH * np.exp(_LOI_GAIN * x)
    # Gresens: C^A = C^O exp(b) / (M^A/M^O); closure of C^A (with LOI) to 100 gives M^A/M^O.
    mass_ratio = (np.sum(base[:, None] * to_wt[:, None] * np.exp(mobility), axis=0) + loi_alt) / 100.0
    altered_true = base[None, :] * np.exp(mobility.T) / mass_ratio[:, None]
    loi_true = np.concatenate([np.full(n_reference, _LOI_PROTOLITH), loi_alt / mass_ratio])
    true = np.concatenate([np.repeat(base[None, :], n_reference, axis=0), altered_true], axis=0)
    noise = np.where(to_wt == 1.0, noise_major, noise_trace)
    values = true * np.exp(noise[None, :] * rng.normal(size=true.shape))
    loi = loi_true * np.exp(noise_major * rng.normal(size=loi_true.shape))
    reference = tuple(f"ref{k + 1}" for k in range(n_reference))
    samples = reference + tuple(f"alt{k + 1}" for k in range(n_altered))
    return WholeRockSet(samples=samples, elements=elements, units=units, values=values, reference=reference,
                        protolith=base, mass_ratio=mass_ratio, mobility=mobility, immobile=immobile, noise=noise,
                        loi=loi)


def write_wholerock_csv(path: str | os.PathLike, data: WholeRockSet, digits: int = 4, sd_columns: bool = False
                        ) -> Path:
    """Write the measured values as a whole-rock CSV (``sample`` column + one column per element).

    Values are rounded to ``digits`` significant digits, as a laboratory reports them. With
    ``sd_columns``, each element is followed by its 1-sigma analytical error (``<name>_sd``,
    ``noise`` times the value, in the column's unit). A set with a measured ``loi`` gets
    ``LOI`` and ``Total`` (oxides + traces + LOI, wt%) columns, which are not elements to
    balance (a run excludes them: ``exclude: [LOI, Total]``).
    """
    noise = np.broadcast_to(np.asarray(data.noise, float), (len(data.elements),))
    header = ["sample"]
    for e in data.elements:
        header += [e, f"{e}_sd"] if sd_columns else [e]
    rows = []
    for k, (name, row) in enumerate(zip(data.samples, data.values)):
        cells = [name]
        for v, n in zip(row, noise):
            cells += [f"{v:.{digits}g}", f"{n * v:.2g}"] if sd_columns else [f"{v:.{digits}g}"]
        rows.append(cells)
    if data.loi is not None:
        to_wt = np.array([1.0 if u == "wt%" else 1e-4 for u in data.units])
        header += ["LOI", "Total"]
        for k, cells in enumerate(rows):
            total = float(np.sum(data.values[k] * to_wt) + data.loi[k])
            cells += [f"{data.loi[k]:.3g}", f"{total:.2f}"]
    return write_csv(path, header, rows)  # atomic: temp file + rename

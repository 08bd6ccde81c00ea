"""Synthetic EPMA X-ray maps of a garnet-mica schist thin section with known truth.

The simulator draws a thin-section microstructure (matrix grains of three size classes,
foliated mica lenses, zoned garnet porphyroblasts with quartz/ilmenite inclusions, small
ilmenite grains), anti-aliases it into per-pixel phase fractions, assigns every pixel a
true composition (wt% oxides) and turns that into Poisson X-ray counts with the
measurement model of qntmap (Yasumoto et al. 2018; docs/science.md), so that the calibration
constants alpha, beta, gamma are known exactly:

* spot peak intensity of element j in phase k (cps/uA) = W_jk / alpha_jk + gamma_jk,
  where W is wt% oxide, alpha_jk (wt% per cps/uA) the matrix-dependent sensitivity and
  gamma_jk (cps/uA) the background;
* map rate (cps/uA) of pixel i: r_ij = sum_k f_ik (W_ijk / alpha_jk + gamma_jk) / beta_j,
  i.e. a mixture of the phases' spot peak intensities divided by the map/spot ratio beta_j,
  so that for a pure pixel W = alpha_jk (beta_j r_ij - gamma_jk);
* counts I_ij ~ Poisson(r_ij * e_i), with exposure e_i = dwell (s) * probe current (uA)
  of that pixel (the current drifts linearly by +-2 % over the acquisition).

No dead time is simulated (the counts are what a dead-time-corrected map would hold on
average: use tau = 0 ns when processing these maps).

Coordinates: pixel (row, col) has its centre at stage position
x_mm = x0 + col * step_um / 1000, y_mm = y0 + row * step_um / 1000 (x grows with the
column, y with the row), so that col = round((x - x0) * 1000 / step), row likewise.

Everything is vectorised numpy driven by one ``np.random.Generator``; the same arguments
give the same arrays bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np

from jaxpetro.errors import ConfigError

__all__ = [
    "PHASES",
    "ELEMENTS",
    "OXIDES",
    "CHANNELS",
    "PHASE_WT",
    "SpotTable",
    "ThinSection",
    "GARNET_PATH",
    "GarnetGrowth",
    "calibration_truth",
    "garnet_end_members_truth",
    "garnet_path",
    "garnet_wt",
    "make_thin_section",
    "mean_atomic_number",
]

# --------------------------------------------------------------------------------------
# Phases, elements and their compositions
# --------------------------------------------------------------------------------------

PHASES: tuple[str, ...] = ("Qtz", "Pl", "Bt", "Ms", "Grt", "Ilm")
ELEMENTS: tuple[str, ...] = ("Si", "Ti", "Al", "Fe", "Mn", "Mg", "Ca", "Na", "K")
OXIDES: tuple[str, ...] = ("SiO2", "TiO2", "Al2O3", "FeO", "MnO", "MgO", "CaO", "Na2O", "K2O")
CHANNELS: tuple[str, ...] = ELEMENTS + ("BSE",)

_QTZ, _PL, _BT, _MS, _GRT, _ILM = range(6)
_N_PH = len(PHASES)
_N_EL = len(ELEMENTS)

# Oxide stoichiometry: (cation Z, cation molar mass g/mol, cations per formula, O per formula).
_OXIDE_STOICH = {
    "SiO2": (14, 28.0855, 1, 2),
    "TiO2": (22, 47.867, 1, 2),
    "Al2O3": (13, 26.9815, 2, 3),
    "FeO": (26, 55.845, 1, 1),
    "MnO": (25, 54.938, 1, 1),
    "MgO": (12, 24.305, 1, 1),
    "CaO": (20, 40.078, 1, 1),
    "Na2O": (11, 22.9898, 2, 1),
    "K2O": (19, 39.0983, 2, 1),
}
_O_MASS, _H_MASS = 15.999, 1.008

# Garnet zoning: grown along a prograde P-T path, its end-members read from the demo forward
# table that ``jaxpetro ptpath`` uses (``data/garnet_grid_demo.csv``), so that a profile cut from
# the quantified map (qmap -> ptpath) inverts for a known path. Core -> rim: Mn and Ca fall,
# Mg rises. Minor oxides are fixed; the garnet's total is 100 wt% (anhydrous, Fe as FeO).
GARNET_PATH: tuple[tuple[float, float], tuple[float, float]] = ((6.5, 450.0), (11.5, 650.0))  # (P kbar, T C): core, rim
_GRT_MINOR = {"TiO2": 0.05, "Na2O": 0.02, "K2O": 0.0}
_GRT_TABLE = "garnet_grid_demo.csv"
_GRT_X_OXIDES = ("FeO", "MgO", "CaO", "MnO")  # the X-site cations of alm, prp, grs, sps
_table_cache: list = []


def _garnet_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo table as (P nodes, T nodes, X (nP, nT, 4) in alm, prp, grs, sps order)."""
    if not _table_cache:
        from importlib import resources

        text = resources.files("jaxpetro.synthetic").joinpath("data", _GRT_TABLE).read_text(encoding="utf-8")
        rows = np.array([[float(v) for v in line.split(",")] for line in text.splitlines()[1:] if line.strip()])
        p, t = np.unique(rows[:, 0]), np.unique(rows[:, 1])
        x = np.full((p.size, t.size, 4), np.nan)
        x[np.searchsorted(p, rows[:, 0]), np.searchsorted(t, rows[:, 1])] = rows[:, 2:6]
        _table_cache.append((p, t, x))
    return _table_cache[0]


def garnet_path(rho) -> tuple[np.ndarray, np.ndarray]:
    """True growth path of the section's garnet: (P kbar, T C) at normalised radius ``rho``
    (0 core, 1 rim; clipped), linear between :data:`GARNET_PATH`'s end points."""
    rho = np.clip(np.asarray(rho, dtype=np.float64), 0.0, 1.0)
    (p0, t0), (p1, t1) = GARNET_PATH
    return np.asarray(p0 + (p1 - p0) * rho), np.asarray(t0 + (t1 - t0) * rho)


def garnet_end_members_truth(rho) -> np.ndarray:
    """(…, 4) X_alm, X_prp, X_grs, X_sps of the garnet at ``rho``: the demo table bilinearly
    interpolated on :func:`garnet_path` (sum 1)."""
    p_nodes, t_nodes, table = _garnet_table()
    p, t = garnet_path(rho)
    i = np.clip(np.searchsorted(p_nodes, p) - 1, 0, p_nodes.size - 2)
    j = np.clip(np.searchsorted(t_nodes, t) - 1, 0, t_nodes.size - 2)
    u = ((p - p_nodes[i]) / (p_nodes[i + 1] - p_nodes[i]))[..., None]
    v = ((t - t_nodes[j]) / (t_nodes[j + 1] - t_nodes[j]))[..., None]
    x = ((1 - u) * (1 - v) * table[i, j] + u * (1 - v) * table[i + 1, j] + (1 - u) * v * table[i, j + 1]
         + u * v * table[i + 1, j + 1])
    return x / x.sum(-1, keepdims=True)


def garnet_wt(rho) -> np.ndarray:
    """True garnet composition as a function of normalised radius.

    The end-members of :func:`garnet_end_members_truth` on the ideal formula
    (Fe,Mg,Ca,Mn)3 Al2 Si3 O12 as wt% oxides, with the fixed minor oxides of ``_GRT_MINOR``,
    the whole summing to 100 wt%.

    Args:
        rho: normalised radius (0 = core, 1 = rim), any shape; values outside [0, 1]
            are clipped.

    Returns:
        float64 array of shape ``rho.shape + (9,)``: wt% of each oxide in ``OXIDES``.
        MnO and CaO decrease and MgO increases monotonically from core to rim.
    """
    x = garnet_end_members_truth(rho)
    moles = np.zeros(x.shape[:-1] + (_N_EL,))
    moles[..., OXIDES.index("SiO2")] = 3.0
    moles[..., OXIDES.index("Al2O3")] = 1.0
    for m, ox in enumerate(_GRT_X_OXIDES):
        moles[..., OXIDES.index(ox)] = 3.0 * x[..., m]
    mass = np.array([n_cat * m + n_o * _O_MASS for (_, m, n_cat, n_o) in (_OXIDE_STOICH[o] for o in OXIDES)])
    grams = moles * mass
    minor = sum(_GRT_MINOR.values())
    out = grams * ((100.0 - minor) / grams.sum(-1, keepdims=True))
    for ox, val in _GRT_MINOR.items():
        out[..., OXIDES.index(ox)] = val
    return out


def _garnet_disc_mean() -> np.ndarray:
    # Area-weighted mean over a disc: rho = sqrt(u) with u uniform on (0, 1) (midpoint rule).
    u = (np.arange(20000) + 0.5) / 20000.0
    return garnet_wt(np.sqrt(u)).mean(axis=0)


# Nominal compositions, wt% oxides, rows in PHASES order, columns in OXIDES order.
# Micas are H2O-bearing and H2O is not analysed, hence totals near 95 wt%.
PHASE_WT: np.ndarray = np.array(
    [
        # SiO2   TiO2  Al2O3   FeO    MnO   MgO   CaO   Na2O   K2O
        [99.70, 0.01, 0.05, 0.03, 0.00, 0.00, 0.01, 0.01, 0.00],  # Qtz
        [62.10, 0.00, 23.90, 0.08, 0.00, 0.00, 5.20, 8.60, 0.12],  # Pl (oligoclase An25)
        [35.40, 1.90, 19.30, 20.60, 0.12, 8.70, 0.02, 0.22, 9.00],  # Bt
        [46.20, 0.55, 35.40, 1.10, 0.01, 0.65, 0.01, 0.95, 9.90],  # Ms
        _garnet_disc_mean().round(6).tolist(),  # Grt: area mean of the zoning law
        [0.05, 52.00, 0.05, 44.80, 2.10, 0.35, 0.02, 0.00, 0.00],  # Ilm
    ],
    dtype=np.float64,
)
PHASE_WT.setflags(write=False)


def _oxide_z_coefficients() -> tuple[np.ndarray, float]:
    """Per-oxide contribution to the mass-weighted mean Z per wt%, and that of H2O."""
    coef = np.empty(_N_EL)
    for j, ox in enumerate(OXIDES):
        z, m, n_cat, n_o = _OXIDE_STOICH[ox]
        mol = n_cat * m + n_o * _O_MASS
        coef[j] = (n_cat * m * z + n_o * _O_MASS * 8) / mol / 100.0
    h2o = (2 * _H_MASS * 1 + _O_MASS * 8) / (2 * _H_MASS + _O_MASS) / 100.0
    return coef, h2o


_Z_COEF, _Z_H2O = _oxide_z_coefficients()


def mean_atomic_number(wt) -> np.ndarray:
    """Mass-fraction-weighted mean atomic number of a composition.

    Args:
        wt: wt% oxides in ``OXIDES`` order, shape (..., 9). The unanalysed remainder
            of a total below 100 wt% is counted as H2O (micas); a total above 100 wt%
            is normalised.

    Returns:
        float64 array of shape (...,): mean Z (e.g. 10.8 for quartz, ~19 for ilmenite).
    """
    wt = np.asarray(wt, dtype=np.float64)
    total = wt.sum(axis=-1)
    zsum = wt @ _Z_COEF
    missing = np.clip(100.0 - total, 0.0, None)
    return (zsum + missing * _Z_H2O) * 100.0 / np.maximum(total + missing, 1e-12)


# --------------------------------------------------------------------------------------
# Instrument model (seed independent, so the calibration truth is a constant)
# --------------------------------------------------------------------------------------

# Net peak sensitivity in a reference matrix of mean Z 11: cps/uA per wt% oxide.
_SENS = np.array([12000.0, 6000.0, 12000.0, 5000.0, 5000.0, 12000.0, 10000.0, 8000.0, 10000.0])
# Matrix (absorption) coefficient: sensitivity factor 1 - a_j (Zbar_k - 11); soft X-rays
# (Na, Mg, Al, Si) are absorbed more strongly in Fe-Ti-rich phases.
_MATRIX_A = np.array([0.025, 0.006, 0.030, -0.004, -0.004, 0.035, 0.010, 0.040, 0.012])
# Continuum background at the peak position in a matrix of mean Z 11, cps/uA.
_BG = np.array([1500.0, 800.0, 1500.0, 1000.0, 900.0, 1200.0, 700.0, 1000.0, 700.0])
# Map/spot intensity ratio beta_j (spot = beta * map): the defocused, stage-scanned map
# sees lower intensities than the spot (most for Na, which migrates under the beam).
_BETA = np.array([1.08, 1.12, 1.05, 1.15, 1.18, 1.04, 1.10, 1.22, 1.06])
_Z_REF = 11.0

# Spot analyses: probe current and counting times (peak; background, both sides together).
_SPOT_CURRENT_A = 20e-9
_SPOT_PEAK_S = 20.0
_SPOT_BG_S = 10.0
_SPOT_REPRO = 0.01  # relative spot-to-spot reproducibility of the net intensity
_SPOT_ZAF_NOISE = 0.003  # relative scatter of the ZAF-corrected wt% about alpha*net
_DRIFT = 0.02  # +-2 % linear probe-current drift over the map acquisition
_BSE_GAIN = 100.0  # BSE signal units per unit of mean Z
_BSE_NOISE = 0.005  # relative Gaussian noise of the BSE signal

_PHASE_Z = mean_atomic_number(PHASE_WT)


def calibration_truth(intensity_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact calibration constants of the synthetic instrument.

    Args:
        intensity_scale: multiplier of the instrument's sensitivity and background
            (a brighter instrument: all intensities scale by it).

    Returns:
        ``(alpha, beta, gamma)``: alpha (9, 6) wt% per cps/uA (wt = alpha * net peak
        intensity, phase-dependent through a matrix factor), beta (9,) map/spot ratio
        (dimensionless, spot intensity = beta * map rate), gamma (9, 6) background
        intensity in cps/uA. Rows follow ``ELEMENTS``, columns ``PHASES``.
    """
    matrix = np.clip(1.0 - _MATRIX_A[:, None] * (_PHASE_Z[None, :] - _Z_REF), 0.5, 1.5)
    alpha = 1.0 / (_SENS[:, None] * matrix * intensity_scale)
    gamma = _BG[:, None] * (_PHASE_Z[None, :] / _Z_REF) * intensity_scale
    return alpha, _BETA.copy(), gamma


# --------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------


def _readonly(*arrays):
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.setflags(write=False)


@dataclass(frozen=True, eq=False)
class SpotTable:
    """Quantitative spot analyses (one row per spot), as an EPMA spot table holds them.

    Attributes:
        id: int64 (n,), spot numbers 1..n in acquisition order.
        row, col: int64 (n,), map pixel under the spot (pixel indices).
        x_mm, y_mm: float64 (n,), stage position in mm
            (x = x0 + col*step_um/1000, y = y0 + row*step_um/1000).
        phase: tuple of n phase labels (the operator's comment, e.g. "Grt").
        wt: float64 (n, n_oxides), analysed wt% oxides (true composition plus ~1 %
            relative analytical noise; trace oxides may come out slightly negative, as
            below-detection results do).
        peak: float64 (n, n_elements), peak intensity in cps/uA (Poisson counting noise
            over ``peak_time_s`` plus 1 % reproducibility), ~ wt/alpha + gamma.
        background: float64 (n, n_elements), background intensity in cps/uA (Poisson
            counting noise over ``background_time_s``), ~ gamma.
        current_A: float64 (n,), probe current of each spot in A (about 20 nA).
        rho: float64 (n,), normalised garnet radius of garnet spots (0 core, 1 rim),
            NaN for other phases (truth, not something an instrument reports).
        peak_time_s, background_time_s: counting times in s.
    """

    id: np.ndarray
    row: np.ndarray
    col: np.ndarray
    x_mm: np.ndarray
    y_mm: np.ndarray
    phase: tuple[str, ...]
    wt: np.ndarray
    peak: np.ndarray
    background: np.ndarray
    current_A: np.ndarray
    rho: np.ndarray
    peak_time_s: float = _SPOT_PEAK_S
    background_time_s: float = _SPOT_BG_S

    def __len__(self) -> int:
        return int(self.id.shape[0])

    def phase_index(self, phases: tuple[str, ...] = PHASES) -> np.ndarray:
        """int64 (n,): index of each spot's phase label in ``phases``."""
        return np.array([phases.index(p) for p in self.phase], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ThinSection:
    """A synthetic EPMA map dataset with its ground truth. All arrays are read-only.

    Measured data:
        channels: element channels then "BSE".
        elements, oxides: element channel names and the oxide of each (same order).
        counts: float32 (rows, cols, n_channels). X-ray channels hold integer counts
            per pixel (Poisson); the last channel, BSE, is an electron signal in
            arbitrary units (100 * mean atomic number, 0.5 % Gaussian noise), not
            counts and not to be dead-time or exposure corrected.
        exposure: float64 (rows, cols), dwell (s) * probe current (uA) of each pixel,
            in s*uA; the current drifts linearly by +-2 % over the acquisition.
        dwell_ms: dwell time per pixel in ms. current_A: nominal probe current in A.
        step_um: pixel size in um. map_start_mm: stage position (x0, y0) in mm of pixel
            (0, 0)'s centre.
        spots: the spot analyses (:class:`SpotTable`).

    Truth:
        phases: phase names. phase_map: int32 (rows, cols), argmax of ``fractions``.
        fractions: float32 (rows, cols, n_phases), per-pixel area fractions on the
            simplex (multiples of 1/16: a 2x-supersampled tent-filtered indicator).
        wt: float32 (rows, cols, n_oxides), true wt% oxides: sum_k f_ik * W_ik.
        phase_wt: float64 (n_phases, n_oxides) nominal compositions; for garnet the
            area mean of the zoning law over a disc (the map's garnet varies with
            radius, see :func:`garnet_wt` and ``garnet_rho``).
        alpha: (n_elements, n_phases) wt% per cps/uA. beta: (n_elements,) map/spot
            ratio. gamma: (n_elements, n_phases) background cps/uA. For a pure pixel of
            phase k: W = alpha_jk * (beta_j * r_ij - gamma_jk), r = counts/exposure.
        garnets: tuple of (row_c, col_c, radius_px) per porphyroblast, the first the
            largest; radius is the mean radius (outlines are slightly irregular).
        garnet_rho: float32 (rows, cols), growth coordinate in the nearest garnet: the
            position on the common growth path (0 the first garnet's core, 1 every rim, > 1
            outside); NaN far from any garnet. For the largest garnet it is the normalised
            radius; smaller ones nucleated later or are cut off their centre (``garnet_growth``).
        garnet_growth: :class:`GarnetGrowth` per garnet (3-D radius, cut offset, start).
        phase_z: float64 (n_phases,) mean atomic number of each nominal phase.
        foliation_deg: angle of the foliation (mica elongation) from the column axis,
            degrees, positive towards increasing rows.
        seed, intensity_scale: the generator's arguments.
    """

    channels: tuple[str, ...]
    elements: tuple[str, ...]
    oxides: tuple[str, ...]
    phases: tuple[str, ...]
    counts: np.ndarray
    exposure: np.ndarray
    dwell_ms: float
    current_A: float
    step_um: float
    map_start_mm: tuple[float, float]
    phase_map: np.ndarray
    fractions: np.ndarray
    wt: np.ndarray
    phase_wt: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    garnets: tuple[tuple[float, float, float], ...]
    garnet_rho: np.ndarray
    spots: SpotTable
    phase_z: np.ndarray
    foliation_deg: float
    seed: int
    intensity_scale: float
    garnet_growth: tuple = ()

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the map."""
        return tuple(self.phase_map.shape)

    def modal_truth(self) -> dict[str, float]:
        """True modal proportions: phase -> mean area fraction over the map."""
        m = self.fractions.reshape(-1, len(self.phases)).mean(axis=0, dtype=np.float64)
        return {p: float(v) for p, v in zip(self.phases, m)}

    def mixed_share(self, threshold: float = 0.99) -> float:
        """Share of pixels whose largest phase fraction is below ``threshold``."""
        return float((self.fractions.max(axis=-1) < threshold).mean())

    def anchor_labels(self) -> np.ndarray:
        """int32 (rows, cols): -1 everywhere except spot pixels, which hold the index of
        the spot's phase label in ``phases`` (anchors for semi-supervised EM)."""
        lab = np.full(self.shape, -1, dtype=np.int32)
        lab[self.spots.row, self.spots.col] = self.spots.phase_index(self.phases)
        return lab

    def phase_rate(self) -> np.ndarray:
        """float64 (n_phases, n_elements): map rate of a pure pixel of each nominal
        phase in cps/uA, (W_k / alpha_jk + gamma_jk) / beta_j -- the Poisson mixture's
        lambda_kj (garnet: at its area-mean composition; the map's garnet is zoned)."""
        return (self.phase_wt / self.alpha.T + self.gamma.T) / self.beta[None, :]

    def expected_rate(self) -> np.ndarray:
        """float32 (rows, cols, n_elements): the true map rate r_ij in cps/uA, i.e.
        sum_k f_ik (W_ijk / alpha_jk + gamma_jk) / beta_j (computed on demand)."""
        return _map_rate(self.fractions, self.garnet_rho, self.alpha, self.beta, self.gamma)

    def expected_counts(self) -> np.ndarray:
        """float32 (rows, cols, n_elements): expected X-ray counts, rate * exposure."""
        r = self.expected_rate()
        r *= self.exposure[..., None].astype(np.float32)
        return r


# --------------------------------------------------------------------------------------
# Measurement model
# --------------------------------------------------------------------------------------


def _spot_peak_table(alpha: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """(n_phases, n_elements) spot peak intensity cps/uA of each nominal phase."""
    return PHASE_WT / alpha.T + gamma.T


def _map_rate(fractions, garnet_rho, alpha, beta, gamma) -> np.ndarray:
    """Map rate in cps/uA, float32 (rows, cols, n_elements) (see ThinSection)."""
    rows, cols, nph = fractions.shape
    f = fractions.reshape(-1, nph)
    peak = _spot_peak_table(alpha, gamma)  # (k, j)
    rate = (f @ (peak / beta[None, :]).astype(np.float32)).astype(np.float32)
    # Garnet is zoned: correct its nominal term by the composition at the pixel's radius.
    fg = f[:, _GRT]
    idx = np.flatnonzero(fg > 0)
    if idx.size:
        rho = garnet_rho.reshape(-1)[idx]
        dw = garnet_wt(rho) - PHASE_WT[_GRT]
        corr = fg[idx, None] * (dw / (alpha[:, _GRT] * beta)[None, :])
        rate[idx] += corr.astype(np.float32)
    np.maximum(rate, 0.0, out=rate)
    return rate.reshape(rows, cols, -1)


# --------------------------------------------------------------------------------------
# Geometry: bucketed (jittered-grid) Voronoi tessellations on a half-pixel lattice
# --------------------------------------------------------------------------------------


class _Tessellation:
    """Jittered-grid Voronoi seeds in a rotated, anisotropically scaled frame.

    Grains have an equivalent diameter of about ``size`` pixels and are elongated by
    ``aspect`` along the foliation. Each point compares its distance only against the
    seeds of the 3x3 neighbouring grid cells (one seed per cell, jittered within the
    inner 80 % of its cell), which makes the labelling O(9) per point.
    """

    def __init__(self, rng, rows, cols, size, aspect, cos_t, sin_t):
        self.size = float(size)
        self.su_scale = math.sqrt(aspect)  # u = p / sqrt(a): grains longer along p
        self.cos_t, self.sin_t = cos_t, sin_t
        corners = np.array(
            [[-0.5, -0.5], [-0.5, cols - 0.5], [rows - 0.5, -0.5], [rows - 0.5, cols - 0.5]]
        )
        u, v = self._uv(corners[:, 0], corners[:, 1])
        c = self.size
        self.u0 = float(u.min()) - c
        self.v0 = float(v.min()) - c
        self.nu = int(math.ceil((u.max() - u.min()) / c)) + 3
        self.nv = int(math.ceil((v.max() - v.min()) / c)) + 3
        ii, jj = np.meshgrid(np.arange(self.nu), np.arange(self.nv), indexing="ij")
        jit = 0.8
        self.su = (self.u0 + (ii + 0.5 + jit * (rng.random(ii.shape) - 0.5)) * c).ravel()
        self.sv = (self.v0 + (jj + 0.5 + jit * (rng.random(ii.shape) - 0.5)) * c).ravel()
        self.su = self.su.astype(np.float32)
        self.sv = self.sv.astype(np.float32)
        self.n_cells = self.nu * self.nv

    def _uv(self, y, x):
        p = x * self.cos_t + y * self.sin_t  # along the foliation
        q = -x * self.sin_t + y * self.cos_t  # across it
        return p / self.su_scale, q * self.su_scale

    def seed_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed positions back in map coordinates (row y, col x), float64."""
        p = self.su.astype(np.float64) * self.su_scale
        q = self.sv.astype(np.float64) / self.su_scale
        x = p * self.cos_t - q * self.sin_t
        y = p * self.sin_t + q * self.cos_t
        return y, x

    def label(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """int32 cell label of each point given its rotated coordinates (p, q)."""
        u = p * np.float32(1.0 / self.su_scale)
        v = q * np.float32(self.su_scale)
        inv = np.float32(1.0 / self.size)
        base = ((u - np.float32(self.u0)) * inv).astype(np.int32)
        base *= self.nv
        base += ((v - np.float32(self.v0)) * inv).astype(np.int32)
        best = best_d = None
        d = np.empty_like(u)
        tmp = np.empty_like(u)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                idx = base + (di * self.nv + dj)
                np.subtract(u, self.su.take(idx), out=d)
                np.multiply(d, d, out=d)
                np.subtract(v, self.sv.take(idx), out=tmp)
                np.multiply(tmp, tmp, out=tmp)
                d += tmp
                if best is None:
                    best, best_d = idx, d.copy()
                else:
                    closer = d < best_d
                    np.copyto(best_d, d, where=closer)
                    np.copyto(best, idx, where=closer)
        return best


def _stratified_assign(areas: np.ndarray, targets: np.ndarray, rng) -> np.ndarray:
    """Assign a class to each cell so class areas match ``targets`` to within one cell.

    Cells are visited in random order; a cell gets the class whose cumulative target
    interval contains the midpoint of the cell's cumulative area. Returns int64 (n,).
    """
    n = areas.shape[0]
    order = rng.permutation(n)
    a = areas[order].astype(np.float64)
    total = a.sum()
    out = np.zeros(n, dtype=np.int64)
    if total <= 0:
        return out
    mid = (np.cumsum(a) - 0.5 * a) / total
    edges = np.cumsum(targets) / np.sum(targets)
    out[order] = np.minimum(np.searchsorted(edges, mid, side="right"), len(targets) - 1)
    return out


def _place_garnets(rng, rows, cols, size=(0.16, 0.19)):
    """Non-overlapping garnet porphyroblasts: (row_c, col_c, radius, harmonics) list."""
    m = min(rows, cols)
    target = 0.11 * rows * cols
    garnets = []
    area = 0.0

    def fits(yc, xc, r):
        return all(math.hypot(yc - g[0], xc - g[1]) >= 1.12 * (r + g[2]) + 3 for g in garnets)

    def add(r, tries):
        nonlocal area
        pad = 1.1 * r + 1.0
        if rows - 2 * pad < 1 or cols - 2 * pad < 1:
            return False
        for _ in range(tries):
            yc = rng.uniform(pad - 0.5, rows - 0.5 - pad)
            xc = rng.uniform(pad - 0.5, cols - 0.5 - pad)
            if fits(yc, xc, r):
                # Slightly irregular outline: R(theta) = r (1 + sum a_n cos(n(theta - phi_n))).
                harm = [(n, rng.uniform(0.01, 0.035), rng.uniform(0, 2 * math.pi)) for n in (3, 4, 6)]
                garnets.append((yc, xc, r, harm))
                area += math.pi * r * r
                return True
        return False

    r1 = m * rng.uniform(*size)
    add(max(r1, 2.5), 50)
    # Smaller porphyroblasts fill the deficit towards ~11 % garnet (several on long maps).
    # Long strip-like maps get more and relatively larger ones.
    big = 0.6 if rows * cols <= 2 * m * m else 0.9
    while garnets and len(garnets) < 16:
        r_main = garnets[0][2]
        deficit = target - area
        if deficit < math.pi * (0.3 * r_main) ** 2:
            break
        r = max(min(math.sqrt(deficit / math.pi), big * r_main) * rng.uniform(0.9, 1.0), 2.5)
        if not add(max(r, 0.3 * r_main), 30):
            break
    return garnets


class GarnetGrowth(NamedTuple):
    """How one porphyroblast of the section grew and was cut (pixels; see :func:`_garnet_growth`).

    Attributes:
        radius_3d_px: final radius of the sphere.
        cut_offset_px: distance of the section plane from the sphere's centre (0 = central cut).
        start: growth coordinate at nucleation (0 = with the first garnet, the largest; the
            rim of every garnet is at 1): the shell at 3-D radius r has the composition of
            ``start + r / L`` on the common path, L the largest garnet's radius.
    """

    radius_3d_px: float
    cut_offset_px: float
    start: float


def _garnet_growth(garnets, rng) -> list[GarnetGrowth]:
    """Growth and cut of every garnet, all grown along one P-T path at one radial rate
    (interface-controlled growth independent of size; Kretz 1974), growth ending together.

    The first (largest) garnet nucleated first and is cut through its centre: its section radius
    L is the full growth length. Each other garnet, of section radius r, is a sphere of radius R
    in [r, L] cut at ``d = sqrt(R^2 - r^2)`` from its centre, nucleated at ``(L - R) / L``: the
    second is mostly an off-centre cut (R = r + 0.6 (L - r)), the third a centrally cut late
    one (R = r), the rest drawn between the two (R = r + u (L - r), u ~ U(0, 0.8)).
    """
    if not garnets:
        return []
    L = garnets[0][2]
    out = [GarnetGrowth(float(L), 0.0, 0.0)]
    for k, g in enumerate(garnets[1:], start=1):
        r = g[2]
        u = 0.6 if k == 1 else 0.0 if k == 2 else float(rng.uniform(0.0, 0.8))
        R = r + u * max(L - r, 0.0)
        out.append(GarnetGrowth(float(R), float(math.sqrt(max(R * R - r * r, 0.0))), float((L - R) / L)))
    return out


def _garnet_rho_lattice(garnets, growth, rows, cols):
    """float32 (2R+1, 2C+1) growth coordinate on the half-pixel lattice (< 1 inside a garnet,
    1 on its rim, > 1 outside); NaN away from garnets."""
    ly, lx = 2 * rows + 1, 2 * cols + 1
    rho = np.full((ly, lx), np.nan, dtype=np.float32)
    L = garnets[0][2] if garnets else 1.0
    for (yc, xc, r, harm), gg in zip(garnets, growth):
        ext = 1.25 * r + 1.0
        # lattice index i <-> coordinate -0.5 + 0.5 i
        i0 = max(int(math.floor(2 * (yc - ext) + 1)), 0)
        i1 = min(int(math.ceil(2 * (yc + ext) + 1)) + 1, ly)
        j0 = max(int(math.floor(2 * (xc - ext) + 1)), 0)
        j1 = min(int(math.ceil(2 * (xc + ext) + 1)) + 1, lx)
        y = (-0.5 + 0.5 * np.arange(i0, i1))[:, None] - yc
        x = (-0.5 + 0.5 * np.arange(j0, j1))[None, :] - xc
        d = np.hypot(y, x)
        th = np.arctan2(y, x)
        rad = np.full_like(d, 1.0)
        for n, a, ph in harm:
            rad += a * np.cos(n * (th - ph))
        rho2 = r * d / (r * rad)  # 2-D distance with the outline's irregularity normalised out (px)
        g = ((gg.start * L + np.sqrt(rho2 * rho2 + gg.cut_offset_px**2)) / L).astype(np.float32)
        sub = rho[i0:i1, j0:j1]
        np.copyto(sub, g, where=~(sub <= g))  # keep the nearer (smaller rho) garnet
    return rho


# Default grain sizes in pixels (equivalent diameters) and tessellation parameters.
_SIZE_COARSE, _SIZE_MEDIUM, _SIZE_FINE, _SIZE_MICA = 40.0, 15.0, 7.0, 11.0
_ASPECT_MATRIX, _ASPECT_MICA = 1.4, 4.0
_KEEP_COARSE, _KEEP_MEDIUM = 0.35, 0.55
_P_INCLUSION = 0.05
_MODE_TARGET = np.array([0.35, 0.20, 0.15, 0.15, 0.11, 0.015])


def _microstructure(rng, rows, cols, growth_rng, garnet_size):
    """Draw the phase label of every half-pixel lattice point.

    Returns (phase lattice int8 (2R+1, 2C+1), garnet rho lattice, garnets, foliation deg,
    garnet growth). ``growth_rng`` draws the garnets' growth (its own stream, so the
    microstructure does not depend on it).
    """
    m = min(rows, cols)
    # Shrink grains on small maps so that every phase still has grain interiors.
    s = min(1.0, max(m / 128.0, 0.3))
    theta = rng.uniform(-25.0, 25.0)
    ct, st = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    t_coarse = _Tessellation(rng, rows, cols, _SIZE_COARSE * s, _ASPECT_MATRIX, ct, st)
    t_medium = _Tessellation(rng, rows, cols, _SIZE_MEDIUM * s, _ASPECT_MATRIX, ct, st)
    t_fine = _Tessellation(rng, rows, cols, max(_SIZE_FINE * s, 3.0), _ASPECT_MATRIX, ct, st)
    t_mica = _Tessellation(rng, rows, cols, _SIZE_MICA * s, _ASPECT_MICA, ct, st)

    garnets = _place_garnets(rng, rows, cols, garnet_size)
    growth = _garnet_growth(garnets, growth_rng)
    rho_lat = _garnet_rho_lattice(garnets, growth, rows, cols)

    ly, lx = 2 * rows + 1, 2 * cols + 1
    lab_c = np.empty((ly, lx), np.int32)
    lab_m = np.empty((ly, lx), np.int32)
    lab_f = np.empty((ly, lx), np.int32)
    lab_mi = np.empty((ly, lx), np.int32)
    xs = (-0.5 + 0.5 * np.arange(lx, dtype=np.float32))[None, :]
    chunk = max(1, 2_000_000 // lx)
    for i0 in range(0, ly, chunk):  # blocks of lattice rows, to bound temporaries
        i1 = min(i0 + chunk, ly)
        ys = (-0.5 + 0.5 * np.arange(i0, i1, dtype=np.float32))[:, None]
        p = xs * np.float32(ct) + ys * np.float32(st)
        q = ys * np.float32(ct) - xs * np.float32(st)
        lab_c[i0:i1] = t_coarse.label(p, q)
        lab_m[i0:i1] = t_medium.label(p, q)
        lab_f[i0:i1] = t_fine.label(p, q)
        lab_mi[i0:i1] = t_mica.label(p, q)

    garnet = rho_lat < 1.0  # NaN compares False
    not_garnet = ~garnet
    n_lat = float(ly * lx)
    g_frac = garnet.mean()
    free = max(1.0 - g_frac, 1e-6)

    # Mica lenses (foliated): Bt / Ms / none, area-stratified over the non-garnet area.
    areas = np.bincount(lab_mi[not_garnet], minlength=t_mica.n_cells)
    tb, tm = _MODE_TARGET[_BT] / free, _MODE_TARGET[_MS] / free
    cls = _stratified_assign(areas, np.array([tb, tm, max(1.0 - tb - tm, 0.0)]), rng)
    mica_phase = np.array([_BT, _MS, -1], dtype=np.int8)[cls]
    mica_pt = mica_phase.take(lab_mi)
    del lab_mi

    # Matrix grains: a coarse grain where its coarse cell is kept, else a medium grain
    # where that is kept, else a fine grain (three size classes, clustered domains).
    nc, nm = t_coarse.n_cells, t_medium.n_cells
    keep_c = rng.random(nc) < _KEEP_COARSE
    keep_m = rng.random(nm) < _KEEP_MEDIUM
    gid = np.where(keep_c.take(lab_c), lab_c, np.where(keep_m.take(lab_m), lab_m + nc, lab_f + nc + nm))
    del lab_c, lab_m
    visible = not_garnet & (mica_pt < 0)
    areas = np.bincount(gid[visible], minlength=nc + nm + t_fine.n_cells).astype(np.float64)
    grain_phase = np.full(areas.shape[0], _QTZ, dtype=np.int8)
    # Ilmenite: whole medium-size grains (plates of ~10-15 px) up to ~1.5 % of the map,
    # at least two grains, preferring grains large enough to have interior pixels.
    med = np.arange(nc, nc + nm)
    big = med[areas[med] >= 0.5 * (2 * _SIZE_MEDIUM * s) ** 2]
    cand = big if big.size >= 2 else med[areas[med] > 0]
    cand = rng.permutation(cand)
    cum = np.cumsum(areas[cand])
    n_ilm = max(2, int(np.searchsorted(cum, _MODE_TARGET[_ILM] * n_lat)))
    grain_phase[cand[:n_ilm]] = _ILM
    rest = np.flatnonzero((grain_phase != _ILM) & (areas > 0))
    cls = _stratified_assign(areas[rest], _MODE_TARGET[[_QTZ, _PL]], rng)
    grain_phase[rest] = np.array([_QTZ, _PL], dtype=np.int8)[cls]

    # Poikiloblastic garnet: some fine cells seeded inside the inner garnet are
    # quartz (or ilmenite) inclusions.
    sy, sx = t_fine.seed_xy()
    incl = np.zeros(t_fine.n_cells, dtype=np.int8)  # 0 none, else phase + 1
    for yc, xc, r, _ in garnets:
        inside = np.hypot(sy - yc, sx - xc) < 0.65 * r
        draw = inside & (rng.random(t_fine.n_cells) < _P_INCLUSION)
        ph = np.where(rng.random(t_fine.n_cells) < 0.85, _QTZ, _ILM) + 1
        incl = np.where(draw, ph, incl).astype(np.int8)

    phase = grain_phase.take(gid)
    del gid
    np.copyto(phase, mica_pt, where=mica_pt >= 0)
    in_incl = incl.take(lab_f)
    del lab_f
    gphase = np.where(in_incl > 0, in_incl - 1, _GRT).astype(np.int8)
    np.copyto(phase, gphase, where=garnet)
    return phase, rho_lat, garnets, theta, growth


def _fractions(phase_lat: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Per-pixel phase fractions: tent filter ([1,2,1]/4 separable) of the one-hot
    lattice, i.e. a pixel's 3x3 half-pixel neighbourhood. float32 (rows, cols, n_ph)."""
    f = np.empty((rows, cols, _N_PH), dtype=np.float32)
    for k in range(_N_PH):
        oh = (phase_lat == k).view(np.uint8)
        a = oh[0:-2:2].astype(np.uint8) + 2 * oh[1:-1:2] + oh[2::2]  # (rows, 2C+1) in 0..4
        b = a[:, 0:-2:2] + 2 * a[:, 1:-1:2] + a[:, 2::2]  # 0..16
        np.multiply(b, np.float32(1.0 / 16.0), out=f[..., k], casting="unsafe")
    return f


# --------------------------------------------------------------------------------------
# Spots
# --------------------------------------------------------------------------------------


def _allocate_spots(n_spots: int, available: np.ndarray) -> np.ndarray | None:
    """Spots per phase: 2 each, the rest roughly by mode (garnet a bit more for its
    zoning); capped by the available pure pixels. None if a phase has fewer than 2."""
    if np.any(available < 2):
        return None
    w = np.array([0.35, 0.20, 0.15, 0.15, 0.13, 0.02])
    rem = n_spots - 2 * _N_PH
    quota = rem * w / w.sum()
    alloc = 2 + np.floor(quota).astype(np.int64)
    left = n_spots - alloc.sum()
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    alloc[order[:left]] += 1
    # Respect availability; give the surplus to phases with room, in mode order.
    surplus = int(np.sum(np.maximum(alloc - available, 0)))
    alloc = np.minimum(alloc, available)
    for k in (_QTZ, _PL, _BT, _MS, _GRT, _ILM):
        add = int(min(surplus, available[k] - alloc[k]))
        alloc[k] += add
        surplus -= add
    if surplus > 0:
        return None
    return alloc


def _pick(rng, cand: np.ndarray, n: int, used: set) -> list:
    cand = cand[~np.isin(cand, np.fromiter(used, dtype=np.int64, count=len(used)))] if used else cand
    if n <= 0 or cand.size == 0:
        return []
    sel = rng.choice(cand, size=min(n, cand.size), replace=False)
    used.update(int(c) for c in sel)
    return [int(c) for c in sel]


def _choose_spot_pixels(rng, fractions, garnet_rho, garnets, n_spots):
    """Flat pixel indices and phase indices of the spots, or None if impossible."""
    rows, cols, _ = fractions.shape
    f = fractions.reshape(-1, _N_PH)
    pure = [np.flatnonzero(f[:, k] >= 0.99) for k in range(_N_PH)]
    available = np.array([p.size for p in pure])
    alloc = _allocate_spots(n_spots, available)
    if alloc is None:
        return None
    used: set = set()
    pix, ph = [], []
    for k in range(_N_PH):
        if k == _GRT:
            continue
        sel = _pick(rng, pure[k], int(alloc[k]), used)
        pix += sel
        ph += [k] * len(sel)
    # Garnet: about a third on the core and a third on the rim of the main porphyroblast.
    cand = pure[_GRT]
    n_g = int(alloc[_GRT])
    yc, xc, r = garnets[0][:3]
    rr, cc = np.divmod(cand, cols)
    main = np.hypot(rr - yc, cc - xc) < 1.2 * r
    rho = garnet_rho.reshape(-1)[cand]
    n_core = max(1, n_g // 3)
    n_rim = max(1, n_g // 3)
    sel = _pick(rng, cand[main & (rho < 0.3)], n_core, used)
    sel += _pick(rng, cand[main & (rho > 0.8)], n_rim, used)
    sel += _pick(rng, cand, n_g - len(sel), used)
    pix += sel
    ph += [_GRT] * len(sel)
    if len(pix) != n_spots:
        return None
    order = rng.permutation(n_spots)  # acquisition order mixes the phases
    return np.asarray(pix, dtype=np.int64)[order], np.asarray(ph, dtype=np.int64)[order]


def _measure_spots(rng, pix, ph, wt_map, garnet_rho, alpha, gamma, step_um, x0, y0, cols):
    n = pix.size
    row, col = np.divmod(pix, cols)
    wt_true = wt_map.reshape(-1, _N_EL)[pix].astype(np.float64)
    rho = garnet_rho.reshape(-1)[pix].astype(np.float64)
    is_g = ph == _GRT
    # Garnet spots: exact composition at that radius (the float32 map is rounded).
    wt_true[is_g] = garnet_wt(rho[is_g])
    rho = np.where(is_g, np.clip(rho, 0.0, 1.0), np.nan)
    a = alpha.T[ph]  # (n, j)
    g = gamma.T[ph]
    current = _SPOT_CURRENT_A * (1.0 + 0.003 * rng.standard_normal(n))
    cur_ua = current * 1e6
    e_peak = (_SPOT_PEAK_S * cur_ua)[:, None]
    e_bg = (_SPOT_BG_S * cur_ua)[:, None]
    net = wt_true / a * (1.0 + _SPOT_REPRO * rng.standard_normal((n, _N_EL)))
    net = np.maximum(net, 0.0)
    peak = rng.poisson((net + g) * e_peak) / e_peak
    bg = rng.poisson(g * e_bg) / e_bg
    wt = a * (peak - bg) * (1.0 + _SPOT_ZAF_NOISE * rng.standard_normal((n, _N_EL)))
    return SpotTable(
        id=np.arange(1, n + 1, dtype=np.int64),
        row=row.astype(np.int64),
        col=col.astype(np.int64),
        x_mm=x0 + col * step_um / 1000.0,
        y_mm=y0 + row * step_um / 1000.0,
        phase=tuple(PHASES[k] for k in ph),
        wt=wt,
        peak=peak,
        background=bg,
        current_A=current,
        rho=rho,
    )


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------

_MAP_START_MM = (31.2345, 52.1075)
_MAX_PIXELS = 4096 * 4096


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"make_thin_section: {name} must be an integer, got {value!r}.")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ConfigError(f"make_thin_section: {name} must be {rng}, got {value}.")
    return int(value)


def _check_pos(name, value):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"make_thin_section: {name} must be a finite number > 0, got {value!r}.")
    return float(value)


def make_thin_section(
    rows: int = 256,
    cols: int = 256,
    n_spots: int = 40,
    seed: int = 0,
    dwell_ms: float | int = 20.0,
    current_nA: float | int = 100.0,
    step_um: float | int = 2.0,
    intensity_scale: float | int = 1.0,
    garnet_size: tuple[float, float] = (0.16, 0.19),
) -> ThinSection:
    """Simulate an EPMA map dataset of a garnet-biotite-muscovite-plagioclase-quartz
    schist (with accessory ilmenite) and its ground truth.

    Args:
        rows, cols: map size in pixels (each >= 16; at most 4096*4096 pixels in all).
            Memory use is about 250 bytes per pixel (2000x2000: ~1 GB peak).
        n_spots: number of quantitative spot analyses (>= 12, i.e. 2 per phase, and at
            most one per 4 pixels). Every phase gets at least 2; the main garnet gets
            core and rim spots.
        seed: non-negative integer seeding ``np.random.Generator(PCG64(seed))``.
        dwell_ms: dwell time per pixel in ms (> 0).
        current_nA: nominal probe current of the map in nA (> 0); it drifts by +-2 %.
        step_um: pixel size in um (> 0); links spot stage positions to pixels.
        intensity_scale: multiplier (> 0) of the instrument's sensitivity and background
            (alpha is divided by it, gamma multiplied): 5-10 gives ~1e4-count maps.
        garnet_size: range of the largest garnet's radius as a fraction of the map's
            smaller side; smaller garnets (nucleated later, some cut off their centre) fill
            the garnet mode to ~11 %: the default gives one large porphyroblast and one or two
            small ones, (0.12, 0.14) (the demo's) 4-5 garnets of different sizes on a square map.

    Returns:
        A :class:`ThinSection`. At the defaults (20 ms, 100 nA: exposure 0.002 s*uA)
        quartz gives ~2200 Si counts per pixel and trace/background channels 1-4.

    Raises:
        ConfigError (a ValueError): an argument is out of range, or the map is too small
        to hold the requested spots on pure pixels of every phase.
    """
    rows = _check_int("rows", rows, 16)
    cols = _check_int("cols", cols, 16)
    if rows * cols > _MAX_PIXELS:
        raise ConfigError(
            f"make_thin_section: rows*cols = {rows * cols} exceeds {_MAX_PIXELS} pixels "
            "(memory); simulate a smaller map."
        )
    n_spots = _check_int("n_spots", n_spots, 2 * _N_PH, max(2 * _N_PH, rows * cols // 4))
    seed = _check_int("seed", seed, 0)
    dwell_ms = _check_pos("dwell_ms", dwell_ms)
    current_nA = _check_pos("current_nA", current_nA)
    step_um = _check_pos("step_um", step_um)
    intensity_scale = _check_pos("intensity_scale", intensity_scale)
    if not (len(garnet_size) == 2 and 0.02 <= garnet_size[0] <= garnet_size[1] <= 0.3):
        raise ConfigError(f"make_thin_section: garnet_size {tuple(garnet_size)} must be (lo, hi) with "
                          f"0.02 <= lo <= hi <= 0.3 (radius / map side).")

    rng = np.random.Generator(np.random.PCG64(seed))
    growth_rng = np.random.Generator(np.random.PCG64([seed, 13]))
    for _attempt in range(8):
        phase_lat, rho_lat, garnets, theta, growth = _microstructure(rng, rows, cols, growth_rng, garnet_size)
        fractions = _fractions(phase_lat, rows, cols)
        del phase_lat
        garnet_rho = np.ascontiguousarray(rho_lat[1::2, 1::2])
        del rho_lat
        picked = _choose_spot_pixels(rng, fractions, garnet_rho, garnets, n_spots)
        if picked is not None:
            break
    else:
        raise ConfigError(
            f"make_thin_section: a {rows}x{cols} map is too small to place {n_spots} spots on "
            "pure pixels with at least 2 per phase; use a larger map or fewer spots."
        )
    spot_pix, spot_ph = picked
    alpha, beta, gamma = calibration_truth(intensity_scale)

    # True composition: sum_k f_ik W_k with garnet's W at the pixel's radius.
    flat_f = fractions.reshape(-1, _N_PH)
    wt = (flat_f @ PHASE_WT.astype(np.float32)).astype(np.float32)
    fg = flat_f[:, _GRT]
    gidx = np.flatnonzero(fg > 0)
    g_rho = garnet_rho.reshape(-1)[gidx]
    dwg = garnet_wt(g_rho) - PHASE_WT[_GRT]
    wt[gidx] += (fg[gidx, None] * dwg).astype(np.float32)
    np.maximum(wt, 0.0, out=wt)
    wt = wt.reshape(rows, cols, _N_EL)

    # Exposure: dwell * current with a linear drift over the (row-major) acquisition.
    t = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols) / max(rows * cols - 1, 1)
    exposure = (dwell_ms * 1e-3) * (current_nA * 1e-3) * (1.0 + _DRIFT * (2.0 * t - 1.0))
    del t

    counts = np.empty((rows, cols, _N_EL + 1), dtype=np.float32)
    rate = _map_rate(fractions, garnet_rho, alpha, beta, gamma)
    for j in range(_N_EL):
        lam = rate[..., j] * exposure
        counts[..., j] = rng.poisson(lam)
    del rate

    # BSE: 100 * mean Z mixed by fractions (garnet Z follows its zoning), 0.5 % noise.
    z = flat_f @ _PHASE_Z.astype(np.float32)
    z[gidx] += (fg[gidx] * (mean_atomic_number(PHASE_WT[_GRT] + dwg) - _PHASE_Z[_GRT])).astype(np.float32)
    bse = _BSE_GAIN * z * (1.0 + _BSE_NOISE * rng.standard_normal(z.shape, dtype=np.float32))
    counts[..., _N_EL] = bse.reshape(rows, cols)
    del z, bse

    spots = _measure_spots(
        rng, spot_pix, spot_ph, wt, garnet_rho, alpha, gamma, step_um, *_MAP_START_MM, cols
    )
    phase_map = np.argmax(fractions, axis=-1).astype(np.int32)
    garnet_tuple = tuple((float(g[0]), float(g[1]), float(g[2])) for g in garnets)
    phase_wt = PHASE_WT.copy()
    phase_z = _PHASE_Z.copy()
    _readonly(counts, exposure, phase_map, fractions, wt, phase_wt, alpha, beta, gamma, garnet_rho, phase_z)
    _readonly(spots.id, spots.row, spots.col, spots.x_mm, spots.y_mm, spots.wt, spots.peak)
    _readonly(spots.background, spots.current_A, spots.rho)
    return ThinSection(
        channels=CHANNELS,
        elements=ELEMENTS,
        oxides=OXIDES,
        phases=PHASES,
        counts=counts,
        exposure=exposure,
        dwell_ms=dwell_ms,
        current_A=current_nA * 1e-9,
        step_um=step_um,
        map_start_mm=_MAP_START_MM,
        phase_map=phase_map,
        fractions=fractions,
        wt=wt,
        phase_wt=phase_wt,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        garnets=garnet_tuple,
        garnet_rho=garnet_rho,
        garnet_growth=tuple(growth),
        spots=spots,
        phase_z=phase_z,
        foliation_deg=float(theta),
        seed=seed,
        intensity_scale=intensity_scale,
    )

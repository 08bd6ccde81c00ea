"""Tests of the synthetic EPMA thin-section simulator (jaxpetro.synthetic)."""

from __future__ import annotations

import math

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpetro.synthetic import (
    PHASE_WT,
    SpotTable,
    ThinSection,
    calibration_truth,
    garnet_wt,
    make_thin_section,
    mean_atomic_number,
)

PHASES = ("Qtz", "Pl", "Bt", "Ms", "Grt", "Ilm")
GRT = PHASES.index("Grt")
# Target modes and the tolerance each 256x256 map must meet (absolute fractions).
MODE_TARGET = {"Qtz": 0.35, "Pl": 0.20, "Bt": 0.15, "Ms": 0.15, "Grt": 0.11, "Ilm": 0.015}
MODE_TOL = {"Qtz": 0.05, "Pl": 0.03, "Bt": 0.02, "Ms": 0.02, "Grt": 0.025, "Ilm": 0.01}


@pytest.fixture(scope="module")
def sec() -> ThinSection:
    return make_thin_section()


@pytest.fixture(scope="module")
def bright() -> ThinSection:
    return make_thin_section(rows=128, cols=128, seed=7, intensity_scale=5.0)


def _pure(s: ThinSection, k: int) -> np.ndarray:
    return s.fractions[..., k] >= 0.99


# ---------------------------------------------------------------------------- structure


def test_shapes_dtypes_and_metadata(sec):
    r, c = 256, 256
    ne, nph = len(sec.elements), len(sec.phases)
    assert sec.phases == PHASES
    assert 8 <= ne <= 12 and sec.channels == sec.elements + ("BSE",)
    assert len(sec.oxides) == ne and sec.oxides[0] == "SiO2"
    assert sec.counts.shape == (r, c, ne + 1) and sec.counts.dtype == np.float32
    assert sec.exposure.shape == (r, c) and sec.exposure.dtype == np.float64
    assert sec.phase_map.shape == (r, c) and sec.phase_map.dtype == np.int32
    assert sec.fractions.shape == (r, c, nph) and sec.fractions.dtype == np.float32
    assert sec.wt.shape == (r, c, ne) and sec.wt.dtype == np.float32
    assert sec.phase_wt.shape == (nph, ne)
    assert sec.alpha.shape == (ne, nph) and sec.gamma.shape == (ne, nph) and sec.beta.shape == (ne,)
    assert sec.garnet_rho.shape == (r, c)
    assert sec.dwell_ms == 20.0 and sec.current_A == pytest.approx(1e-7) and sec.step_um == 2.0
    assert len(sec.map_start_mm) == 2
    assert isinstance(sec.spots, SpotTable) and len(sec.spots) == 40
    n = len(sec.spots)
    for name in ("id", "row", "col", "x_mm", "y_mm", "current_A", "rho"):
        assert getattr(sec.spots, name).shape == (n,)
    for name in ("wt", "peak", "background"):
        assert getattr(sec.spots, name).shape == (n, ne)
    assert np.array_equal(sec.spots.id, np.arange(1, n + 1))
    assert not sec.counts.flags.writeable  # the truth cannot be altered by accident
    with pytest.raises(Exception):
        sec.seed = 3  # frozen


def test_deterministic_for_a_seed_and_seeds_differ():
    a = make_thin_section(rows=64, cols=80, n_spots=20, seed=11)
    b = make_thin_section(rows=64, cols=80, n_spots=20, seed=11)
    c = make_thin_section(rows=64, cols=80, n_spots=20, seed=12)
    for name in ("counts", "fractions", "wt", "exposure", "garnet_rho"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert a.garnets == b.garnets and a.spots.phase == b.spots.phase
    assert np.array_equal(a.spots.peak, b.spots.peak)
    assert not np.array_equal(a.counts, c.counts)
    assert not np.array_equal(a.phase_map, c.phase_map)


def test_fractions_on_simplex_and_phase_map_is_argmax(sec):
    f = sec.fractions
    assert np.all(f >= 0) and np.all(f <= 1)
    np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-6)
    assert np.array_equal(sec.phase_map, np.argmax(f, -1))


def test_true_wt_is_fraction_mixture(sec):
    # Away from garnet, W_i = sum_k f_ik W_k exactly (garnet is zoned, tested elsewhere).
    no_grt = sec.fractions[..., GRT] == 0
    expect = sec.fractions[no_grt].astype(np.float64) @ sec.phase_wt
    np.testing.assert_allclose(sec.wt[no_grt], expect, rtol=1e-5, atol=1e-4)
    totals = sec.wt.sum(-1)
    assert totals.min() > 94.0 and totals.max() < 101.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_modal_proportions_near_targets(seed):
    s = make_thin_section(seed=seed)
    modes = s.modal_truth()
    assert set(modes) == set(PHASES)
    assert sum(modes.values()) == pytest.approx(1.0, abs=1e-6)
    for p, target in MODE_TARGET.items():
        assert abs(modes[p] - target) <= MODE_TOL[p], (p, modes[p])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mixed_pixel_share(seed):
    # ~10-20 % of pixels straddle a phase boundary (largest fraction < 0.99) at 256x256.
    s = make_thin_section(seed=seed)
    share = s.mixed_share()
    assert 0.10 <= share <= 0.25, share
    mixed = s.fractions.max(-1) < 0.99
    # Every mixed pixel has at least two phases present.
    assert np.all((s.fractions[mixed] > 0).sum(-1) >= 2)


def test_garnets_grew_on_one_path_and_some_are_cut_off_centre():
    """Every garnet's growth coordinate is 1 on its rim; the largest starts at 0 (central, first); a
    late garnet is a central cut whose core starts later; an off-centre cut's section centre lies at
    start + d / L on the path; the truth is reported per garnet."""
    s = make_thin_section(seed=0, garnet_size=(0.12, 0.14))
    assert len(s.garnets) >= 4 and len(s.garnet_growth) == len(s.garnets)
    L = s.garnets[0][2]
    first, offc, late = s.garnet_growth[:3]
    assert first.start == 0.0 and first.cut_offset_px == 0.0
    assert late.cut_offset_px == 0.0 and late.start == pytest.approx((L - s.garnets[2][2]) / L)
    assert offc.cut_offset_px > 0 and offc.radius_3d_px == pytest.approx(math.hypot(s.garnets[1][2], offc.cut_offset_px))
    for (yc, xc, r), g in zip(s.garnets, s.garnet_growth):
        core = s.garnet_rho[int(round(yc)), int(round(xc))]
        assert core == pytest.approx(g.start + g.cut_offset_px / L, abs=0.03)


def test_garnet_geometry(sec):
    r, c = sec.phase_map.shape
    assert 1 <= len(sec.garnets)
    yc, xc, rad = sec.garnets[0]
    assert 0.15 * min(r, c) <= rad <= 0.25 * min(r, c)
    assert all(g[2] <= rad for g in sec.garnets)
    for y, x, g in sec.garnets:
        assert g <= y <= r - 1 - g and g <= x <= c - 1 - g
    assert sec.phase_map[int(round(yc)), int(round(xc))] in (GRT, 0, 5)  # core may hold an inclusion
    # The disc of radius ~0.9 R around the centre is (almost) all garnet.
    yy, xx = np.mgrid[:r, :c]
    inner = np.hypot(yy - yc, xx - xc) < 0.9 * rad
    assert (sec.phase_map[inner] == GRT).mean() > 0.9


def test_garnet_zoning_is_monotone(sec):
    pure = _pure(sec, GRT)
    rho = sec.garnet_rho[pure].astype(np.float64)
    wt = sec.wt[pure].astype(np.float64)
    order = np.argsort(rho, kind="stable")
    ox = {o: i for i, o in enumerate(sec.oxides)}
    tol = 1e-4  # float32 storage
    assert np.all(np.diff(wt[order, ox["MnO"]]) <= tol)
    assert np.all(np.diff(wt[order, ox["CaO"]]) <= tol)
    assert np.all(np.diff(wt[order, ox["MgO"]]) >= -tol)
    # Independent of garnet_rho: binned by distance from the stored centre of the main
    # porphyroblast, the means follow the same trends with clear core-rim contrasts.
    yc, xc, rad = sec.garnets[0]
    yy, xx = np.mgrid[: sec.shape[0], : sec.shape[1]]
    d = np.hypot(yy - yc, xx - xc) / rad
    main = pure & (d < 1.0)
    bins = np.minimum((d[main] / 0.1).astype(int), 9)
    prof = np.array([sec.wt[main][bins == b].mean(0) for b in range(9)])
    assert np.all(np.diff(prof[:, ox["MnO"]]) < 0)
    assert np.all(np.diff(prof[:, ox["CaO"]]) < 0)
    assert np.all(np.diff(prof[:, ox["MgO"]]) > 0)
    assert prof[0, ox["MnO"]] - prof[-1, ox["MnO"]] > 0.9 and prof[-1, ox["MgO"]] - prof[0, ox["MgO"]] > 2.0
    # garnet_wt itself: end members and the constant total.
    core, rim = garnet_wt(0.0), garnet_wt(1.0)
    assert core[ox["MnO"]] > rim[ox["MnO"]] and core[ox["CaO"]] > rim[ox["CaO"]]
    assert core[ox["MgO"]] < rim[ox["MgO"]] and core[ox["FeO"]] > rim[ox["FeO"]]
    np.testing.assert_allclose(garnet_wt(np.linspace(0, 1, 11)).sum(-1), 100.0)


def test_garnet_zoning_is_the_ptpath_table_along_a_known_path():
    """The section's garnet is the demo forward table of ``jaxpetro ptpath`` read along
    GARNET_PATH: its wt% give back (cations on 12 O) the end-members that ptpath's own table
    reader and bicubic interpolant predict at that P-T, so qmap -> ptpath has a known answer."""
    import jax.numpy as jnp

    from jaxpetro.models.garnet import table_interp
    from jaxpetro.models.oxides import garnet_end_members
    from jaxpetro.synthetic.garnet_profile import demo_table_path, table_params
    from jaxpetro.synthetic.thin_section import GARNET_PATH, OXIDES, garnet_path
    from jaxpetro.io.perplex import read_table

    rho = np.linspace(0.0, 1.0, 21)
    P, T = garnet_path(rho)
    assert (P[0], T[0]) == GARNET_PATH[0] and (P[-1], T[-1]) == GARNET_PATH[1]
    x = np.asarray(garnet_end_members(garnet_wt(rho), OXIDES))
    params = table_params(read_table(demo_table_path()))
    ref = np.array([np.asarray(table_interp(params, jnp.float64(p), jnp.float64(t))) for p, t in zip(P, T)])
    np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(x, ref, atol=2e-3)  # bilinear (here) vs bicubic (ptpath) on a 0.25 kbar x 10 C grid


# -------------------------------------------------------------------------------- spots


def _check_spots(s: ThinSection):
    sp = s.spots
    n = len(sp)
    k = sp.phase_index(s.phases)
    # Each spot sits on a pure pixel of its labelled phase; pixels are distinct.
    assert np.all(s.fractions[sp.row, sp.col, k] >= 0.99)
    assert np.array_equal(s.phase_map[sp.row, sp.col], k)
    assert len(set(zip(sp.row.tolist(), sp.col.tolist()))) == n
    counts = {p: sp.phase.count(p) for p in s.phases}
    assert all(v >= 2 for v in counts.values()), counts
    # Stage coordinates map back to the pixel: col = round((x - x0) * 1000 / step).
    x0, y0 = s.map_start_mm
    assert np.array_equal(np.round((sp.x_mm - x0) * 1000 / s.step_um).astype(int), sp.col)
    assert np.array_equal(np.round((sp.y_mm - y0) * 1000 / s.step_um).astype(int), sp.row)
    lab = s.anchor_labels()
    assert lab.dtype == np.int32 and (lab >= 0).sum() == n
    assert np.array_equal(lab[sp.row, sp.col], k)
    assert np.all(np.isnan(sp.rho) == (k != GRT))


def test_spots_on_pure_pixels_of_their_phase(sec):
    _check_spots(sec)
    sp = sec.spots
    g = sp.rho[~np.isnan(sp.rho)]
    assert (g < 0.3).sum() >= 1 and (g > 0.8).sum() >= 1  # core and rim of the main garnet
    assert np.all(np.abs(sp.current_A - 20e-9) < 1e-9)


def test_spot_measurement_model_identity(sec):
    """Spot peak ~ W/alpha + gamma; background ~ gamma; wt ~ alpha (peak - bg) ~ truth."""
    sp = sec.spots
    k = sp.phase_index(sec.phases)
    a, g = sec.alpha.T[k], sec.gamma.T[k]  # (n, j)
    w_true = sec.wt[sp.row, sp.col].astype(np.float64)
    e_pk = (sp.peak_time_s * sp.current_A * 1e6)[:, None]
    e_bg = (sp.background_time_s * sp.current_A * 1e6)[:, None]
    pred = w_true / a + g
    # Counting noise plus 1 % spot-to-spot reproducibility, 6 sigma.
    sd = np.sqrt(pred / e_pk + (0.01 * w_true / a) ** 2) + 1e-3 * pred
    assert np.all(np.abs(sp.peak - pred) <= 6 * sd)
    assert np.all(np.abs(sp.background - g) <= 6 * np.sqrt(g / e_bg))
    # Reported wt% = alpha * net (ZAF scatter 0.3 %) and close to the truth.
    net = sp.peak - sp.background
    np.testing.assert_allclose(sp.wt, a * net, rtol=0.02, atol=np.max(a * 6 * np.sqrt(g / e_bg)))
    major = w_true > 5
    rel = np.abs(sp.wt[major] / w_true[major] - 1)
    assert rel.max() < 0.06 and np.median(rel) < 0.015
    # Slope through the origin of wt vs net intensity per phase recovers alpha (majors).
    for kk in range(len(sec.phases)):
        m = k == kk
        for j in range(len(sec.elements)):
            if np.all(w_true[m, j] > 5):
                slope = np.sum(sp.wt[m, j] * net[m, j]) / np.sum(net[m, j] ** 2)
                assert slope == pytest.approx(sec.alpha[j, kk], rel=0.03)


# -------------------------------------------------------------------- measurement model


def test_counts_are_nonnegative_integers_and_bse_is_positive(sec):
    x = sec.counts[..., :-1]
    assert np.all(x >= 0) and np.all(x == np.round(x))
    bse = sec.counts[..., -1]
    assert np.all(np.isfinite(bse)) and bse.min() > 0
    assert np.any(bse != np.round(bse))  # a float electron signal, not counts


def test_exposure_units_and_drift(sec):
    nominal = 20e-3 * 0.1  # dwell s * current uA
    assert sec.exposure.mean() == pytest.approx(nominal, rel=1e-6)
    assert sec.exposure.min() == pytest.approx(nominal * 0.98, rel=1e-6)
    assert sec.exposure.max() == pytest.approx(nominal * 1.02, rel=1e-6)
    assert sec.exposure[0].mean() < sec.exposure[-1].mean()


def _expected_pure_counts(s: ThinSection, k: int):
    m = _pure(s, k)
    lam = (s.wt[m].astype(np.float64) / s.alpha[:, k] + s.gamma[:, k]) / s.beta * s.exposure[m][:, None]
    return m, lam


@pytest.mark.parametrize("which", ["sec", "bright"])
def test_mean_counts_per_phase_match_rate_times_exposure(which, request):
    """Per phase and element, summed counts over pure pixels agree with the model
    lambda_i = (W_ij/alpha_jk + gamma_jk)/beta_j * e_i within Poisson error (|z| < 5),
    and the scatter is Poisson (standardised residual variance ~ 1)."""
    s = request.getfixturevalue(which)
    zs = []
    for k in range(len(s.phases)):
        m, lam = _expected_pure_counts(s, k)
        obs = s.counts[m][:, :-1].astype(np.float64)
        z = (obs.sum(0) - lam.sum(0)) / np.sqrt(lam.sum(0))
        zs.append(z)
        hi = lam.mean(0) > 50
        if m.sum() > 500 and np.any(hi):
            var = (((obs - lam) ** 2) / lam).mean(0)[hi]
            assert np.all(np.abs(var - 1) < 0.15), (s.phases[k], var)
    zs = np.array(zs)
    assert np.all(np.abs(zs) < 5), zs
    # All pixels (mixed ones included) against the simulator's expected counts.
    exp = s.expected_counts().astype(np.float64)
    obs = s.counts[..., :-1].astype(np.float64)
    z = (obs.sum((0, 1)) - exp.sum((0, 1))) / np.sqrt(exp.sum((0, 1)))
    assert np.all(np.abs(z) < 5), z


def test_phase_rate_is_the_pure_pixel_poisson_mean(sec):
    # lambda_kj = sum_i I_ij / sum_i e_i over pure pixels (the EM M-step with hard labels).
    lam = sec.phase_rate()
    assert lam.shape == (len(sec.phases), len(sec.elements))
    for k in range(len(sec.phases)):
        if k == GRT:
            continue
        m = _pure(sec, k)
        est = sec.counts[m][:, :-1].sum(0) / sec.exposure[m].sum()
        se = np.sqrt(lam[k] / sec.exposure[m].sum())
        assert np.all(np.abs(est - lam[k]) < 5 * se), sec.phases[k]


def test_intensity_levels(sec, bright):
    si, mn = sec.elements.index("Si"), sec.elements.index("Mn")
    qtz = _pure(sec, 0)
    assert 1000 < sec.counts[qtz][:, si].mean() < 5000  # a few thousand
    assert sec.counts[qtz][:, mn].mean() < 5  # background only
    # intensity_scale scales sensitivity and background alike: ~1e4-count maps.
    assert bright.counts[_pure(bright, 0)][:, si].mean() > 1e4
    a1, b1, g1 = calibration_truth(1.0)
    np.testing.assert_allclose(bright.alpha * 5, a1)
    np.testing.assert_allclose(bright.gamma / 5, g1)
    np.testing.assert_allclose(bright.beta, b1)


def test_pure_pixel_calibration_recovers_phase_composition(bright):
    """W = alpha_jk (beta_j r_ij - gamma_jk) with r = counts/exposure, averaged over pure
    pixels, returns the nominal phase compositions (qntmap identity)."""
    s = bright
    for k in range(len(s.phases)):
        if k == GRT:
            continue
        m = _pure(s, k)
        r = s.counts[m][:, :-1] / s.exposure[m][:, None]
        w = (s.alpha[:, k] * (s.beta * r - s.gamma[:, k])).mean(0)
        se = s.alpha[:, k] * s.beta * np.sqrt(r.mean(0) / s.exposure[m].mean() / m.sum())
        assert np.all(np.abs(w - s.phase_wt[k]) < 5 * se + 1e-3), (s.phases[k], w, s.phase_wt[k])


def test_bse_follows_mean_atomic_number(sec):
    means = np.array([sec.counts[_pure(sec, k)][:, -1].mean() for k in range(len(sec.phases))])
    np.testing.assert_allclose(means[[0, 1, 2, 3, 5]], 100 * sec.phase_z[[0, 1, 2, 3, 5]], rtol=0.003)
    assert np.array_equal(np.argsort(means), np.argsort(sec.phase_z))
    z = mean_atomic_number(PHASE_WT)
    assert 10.7 < z[0] < 10.9 and z[5] > 18  # quartz, ilmenite


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rows": 8}, "rows"),
        ({"cols": 15}, "cols"),
        ({"rows": 32.0}, "rows"),
        ({"n_spots": 5}, "n_spots"),
        ({"rows": 16, "cols": 16, "n_spots": 200}, "n_spots"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"dwell_ms": 0.0}, "dwell_ms"),
        ({"current_nA": float("nan")}, "current_nA"),
        ({"step_um": -2}, "step_um"),
        ({"intensity_scale": float("inf")}, "intensity_scale"),
        ({"rows": 5000, "cols": 5000}, "rows\\*cols"),
    ],
)
def test_argument_validation(kwargs, match):
    # A value of the wrong type is a TypeError where the annotations are checked (the
    # tests' jaxtyping hook), else the function's own ValueError; both name the argument.
    with pytest.raises((ValueError, TypeError), match=match):
        make_thin_section(**kwargs)


# --------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(16, 56),
    cols=st.integers(16, 56),
    n_spots=st.integers(12, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_invariants_on_small_maps(rows, cols, n_spots, seed):
    s = make_thin_section(rows=rows, cols=cols, n_spots=n_spots, seed=seed)
    assert s.counts.shape == (rows, cols, len(s.channels))
    np.testing.assert_allclose(s.fractions.sum(-1), 1.0, atol=1e-6)
    x = s.counts[..., :-1]
    assert np.all(x >= 0) and np.all(x == np.round(x))
    assert np.all(np.isfinite(s.wt)) and np.all(s.wt >= 0)
    assert len(s.spots) == n_spots
    _check_spots(s)


# --------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_large_map_2000():
    t0 = time.perf_counter()
    s = make_thin_section(rows=2000, cols=2000, seed=5)
    dt = time.perf_counter() - t0
    assert dt < 60.0, dt
    assert s.counts.shape == (2000, 2000, len(s.channels))
    modes = s.modal_truth()
    for p, target in MODE_TARGET.items():
        assert abs(modes[p] - target) <= MODE_TOL[p], (p, modes[p])
    assert 0.10 <= s.mixed_share() <= 0.25
    _check_spots(s)

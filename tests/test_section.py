"""``jaxpetro section``: grains, centres, shells, alignment of late and off-centre grains, the joint
profile, consistency — against planted truth — and the chain on the synthetic section."""

import math
from pathlib import Path

import numpy as np
import pytest

from jaxpetro.errors import InputError
from jaxpetro.models import grains as gm
from jaxpetro.config.loader import load_config

ROOT = Path(__file__).resolve().parents[1]


def _disc_field(shape, centre, radius, X_of_s, s0=0.0, d=0.0):
    """Garnet fraction and end-member maps of a disc whose pixel at section radius rho has the
    composition X(s0 + sqrt(rho^2 + d^2))."""
    rr, cc = np.indices(shape, dtype=float)
    rho = np.hypot(rr - centre[0], cc - centre[1])
    inside = rho <= radius
    X = np.where(inside[..., None], X_of_s(s0 + np.sqrt(rho**2 + d**2)), np.nan)
    return inside.astype(float), X


def _X_of_s(s, L=40.0):
    """A smooth prograde profile: sps and grs fall, prp rises, alm the balance."""
    u = np.clip(np.asarray(s, float) / L, 0, 1)
    sps, grs, prp = 0.20 * (1 - u) ** 1.5 + 0.02, 0.20 - 0.10 * u, 0.05 + 0.10 * u**1.3
    return np.stack([1 - sps - grs - prp, prp, grs, sps], axis=-1)


def test_find_grains_sizes_order_and_edges():
    frac = np.zeros((120, 160))
    for (r, c, R) in ((60, 60, 25), (30, 130, 12), (110, 140, 10)):  # the last touches the bottom edge
        rr, cc = np.indices(frac.shape)
        frac[np.hypot(rr - r, cc - c) <= R] = 0.95
    frac[60, 60] = 0.0  # an inclusion: filled, still one grain
    labels, grains = gm.find_grains(frac, 0.5, 30)
    assert [g.id for g in grains] == [1, 2, 3]
    assert grains[0].radius_px == pytest.approx(25, abs=0.6) and grains[1].radius_px == pytest.approx(12, abs=0.6)
    assert grains[0].centroid == pytest.approx((60, 60), abs=0.1)
    assert [g.edge for g in grains] == [False, False, True]
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    _, kept = gm.find_grains(frac, 0.5, 30, seeds=[(30, 130)])
    assert len(kept) == 1 and kept[0].centroid == pytest.approx((30, 130), abs=0.1)
    with pytest.raises(InputError, match="not on a garnet pixel"):
        gm.find_grains(frac, 0.5, 30, seeds=[(5, 5)])
    with pytest.raises(InputError, match="outside"):
        gm.find_grains(frac, 0.5, 30, seeds=[(500, 5)])
    with pytest.raises(InputError, match="map is 120 x 160"):
        gm.find_grains(frac, 0.5, 30, mask=np.zeros((10, 10), int))


def test_centre_and_shells_recover_a_planted_profile():
    centre = (50.3, 61.7)
    frac, X = _disc_field((100, 120), centre, 30.0, _X_of_s)
    usable = frac > 0.5
    start, how = gm.growth_centre(usable, np.where(usable, X[..., 3], np.nan), "mn")
    assert how == "mn" and math.hypot(start[0] - centre[0], start[1] - centre[1]) < 2.0
    found, score = gm.concentric_centre(X, usable, start, 30.0)
    assert score >= 0
    assert math.hypot(found[0] - centre[0], found[1] - centre[1]) < 0.3
    sh = gm.shells(gm.distance_map(usable.shape, found, 1.0), X, usable, 3.0)
    # each shell's mean is the profile near its mean radius (curvature only), errors from the spread
    np.testing.assert_allclose(sh.X, _X_of_s(sh.radius_um), atol=2e-3)
    assert np.all(sh.sd > 0) and np.all(sh.n_pixels >= 5)


@pytest.mark.parametrize("s0,d", [(0.0, 0.0), (12.0, 0.0), (0.0, 25.0), (6.0, 15.0)])
def test_align_recovers_late_nucleation_and_off_centre_cuts(s0, d):
    L = 40.0
    ref_r = np.arange(1.5, L, 3.0)
    reference = gm.Shells(ref_r, _X_of_s(ref_r), np.full((ref_r.size, 4), 1e-3), np.zeros((ref_r.size, 4)),
                          np.full(ref_r.size, 50))
    r = math.sqrt((L - s0) ** 2 - d**2)  # section radius of a sphere of radius L - s0 cut at d
    rho = np.arange(1.0, r, 2.0)
    grain = gm.Shells(rho, _X_of_s(s0 + np.sqrt(rho**2 + d**2)), np.full((rho.size, 4), 1e-3),
                      np.zeros((rho.size, 4)), np.full(rho.size, 30))
    a = gm.align(grain, r, reference, L, model_sd=1e-3, n_grid=401)
    assert a.cut_offset_um == pytest.approx(d, abs=1.5)
    assert a.start_um == pytest.approx(s0, abs=1.5)
    np.testing.assert_allclose(a.growth_um, s0 + np.sqrt(rho**2 + d**2), atol=1.0)


def test_merge_is_the_inverse_variance_combination():
    s1, s2 = np.array([1.0, 4.0]), np.array([1.5, 7.0])
    X1, X2 = np.full((2, 4), 0.2), np.full((2, 4), 0.3)
    sd1, sd2 = np.full((2, 4), 0.01), np.full((2, 4), 0.02)
    m = gm.merge([(s1, X1, sd1), (s2, X2, sd2)], 3.0)
    assert m.radius_um.tolist() == [1.25, 4.0, 7.0]
    w1, w2 = 1 / 0.01**2, 1 / 0.02**2
    np.testing.assert_allclose(m.X[0], (w1 * 0.2 + w2 * 0.3) / (w1 + w2))
    np.testing.assert_allclose(m.sd[0], 1 / math.sqrt(w1 + w2))
    np.testing.assert_allclose(m.X[1], 0.2) and np.testing.assert_allclose(m.X[2], 0.3)
    assert m.n_pixels.tolist() == [2, 1, 1]


def test_consistency_p_value_is_the_chi_square_tail():
    from scipy.stats import chi2  # oracle (scipy comes with jax)

    r = np.arange(1.0, 20.0, 2.0)
    others = gm.Shells(r, _X_of_s(r), np.full((r.size, 4), 0.004), np.zeros((r.size, 4)), np.ones(r.size))
    rng = np.random.default_rng(0)
    X = _X_of_s(r) + 0.005 * rng.standard_normal((r.size, 4))
    c = gm.consistency(r, X, np.full((r.size, 4), 0.003), others, model_sd=0.0)
    expected = np.sum((X - _X_of_s(r)) ** 2 / (0.003**2 + 0.004**2))
    assert c.chi2 == pytest.approx(expected) and c.dof == r.size * 4
    assert c.p_value == pytest.approx(chi2.sf(expected, r.size * 4), rel=1e-6)
    bad = gm.consistency(r, X + 0.05, np.full((r.size, 4), 0.003), others, model_sd=0.0)
    assert bad.p_value < 1e-6  # a grain from another path is flagged


def test_calibration_shifts_are_the_first_order_change_of_the_end_members():
    import jax

    from jaxpetro.models.oxides import GARNET_OXIDES, garnet_end_members

    oxides = ("SiO2", "Al2O3", *GARNET_OXIDES)
    wt = np.array([[37.5, 21.0, 30.0, 3.0, 6.0, 2.5], [38.0, 21.5, 20.0, 6.0, 8.0, 6.0]])
    rel = np.array([0.004, 0.012, 0.008, 0.01])
    with jax.enable_x64(True):
        X = np.asarray(garnet_end_members(wt, oxides))
        shifts = gm.calibration_shifts(X, rel)
        for j in range(4):
            eps = 1e-6
            up = wt.copy()
            up[:, 2 + j] *= 1 + eps
            numeric = (np.asarray(garnet_end_members(up, oxides)) - X) / eps * rel[j]
            np.testing.assert_allclose(shifts[j], numeric, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(shifts.sum(-1), 0.0, atol=1e-15)  # the fractions stay on the simplex


def test_calibration_error_adds_in_quadrature_and_scales_the_bands():
    from jaxpetro.workflows.section import with_calibration_error

    path = {"P_kbar": np.array([6.0, 8.0]), "T_C": np.array([500.0, 600.0]), "P_sd": np.array([0.3, 0.4]),
            "T_sd": np.array([8.0, 6.0]), "P_lo": np.array([5.5, 7.4]), "P_hi": np.array([6.4, 8.7]),
            "T_lo": np.array([487.0, 590.0]), "T_hi": np.array([513.0, 610.0])}
    dP = np.array([[0.3, 0.0], [0.0, 0.3], [0.0, 0.0], [0.0, 0.0]])
    dT = np.array([[6.0, 8.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    out = with_calibration_error(path, dP, dT)
    np.testing.assert_allclose(out["P_sd"], [math.hypot(0.3, 0.3), 0.5])
    np.testing.assert_allclose(out["T_sd"], [10.0, 10.0])
    np.testing.assert_allclose(out["T_sd_calibration"], [6.0, 8.0])
    # the half-widths grow by total / own sd about the mean (asymmetric bands stay asymmetric)
    np.testing.assert_allclose(out["T_lo"], [500.0 - 13.0 * 10.0 / 8.0, 600.0 - 10.0 * 10.0 / 6.0])
    np.testing.assert_allclose(out["P_hi"], [6.0 + 0.4 * math.sqrt(2.0), 8.0 + 0.7 * 0.5 / 0.4])


# ----------------------------------------------------------------------------- the chain, end to end


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """`jaxpetro section` through the CLI on a 192 x 176 synthetic section exported as JEOL."""
    from jaxpetro.cli import main
    from jaxpetro.synthetic import make_thin_section
    from jaxpetro.synthetic.jeol import write_jeol

    root = tmp_path_factory.mktemp("section")
    sec = make_thin_section(rows=192, cols=176, seed=1, garnet_size=(0.12, 0.14))
    write_jeol(sec, root / "jeol", dialect="old")
    (root / "section.yaml").write_text(
        "qmap:\n  input: {format: jeol, map_dir: jeol/.map/1, qnt_dir: jeol/.qnt}\n  output: {plots: false}\n"
        "grains: {per_grain: false}\n"
        "ptpath:\n  forward: {kind: table, path: " + str(ROOT / "configs" / "data" / "garnet_grid_demo.csv") + "}\n"
        "  ensemble: {size: 200}\n  map_check: false\n  output: {plots: false}\n")
    assert main(["section", str(root / "section.yaml"), "--out", str(root / "out"), "--quiet"]) == 0
    return sec, root


def test_chain_finds_the_planted_garnets_and_their_zoning(chain):
    from jaxpetro.io.results import read_csv_table
    from jaxpetro.synthetic.thin_section import garnet_end_members_truth

    sec, root = chain
    out = root / "out"
    for name in ("section.csv", "section.h5", "report.md", "section_report.png", "joint/ptpath.csv",
                 "joint/profile.csv", "qmap/qmap.h5", "grains/1/shells.csv", "grains/1/profiles.csv"):
        assert (out / name).stat().st_size > 0, name
    table = read_csv_table(out / "section.csv")
    assert len(table["id"]) == len(sec.garnets)
    L = sec.garnets[0][2]
    for k, ((yc, xc, r), g) in enumerate(zip(sec.garnets, sec.garnet_growth)):
        # each planted garnet found, its growth centre within 1.5 px, its radius within 10 %
        d = np.hypot(table["centroid_y_px"] - yc, table["centroid_x_px"] - xc)
        i = int(np.argmin(d))
        assert d[i] < 1.5 and table["radius_um"][i] == pytest.approx(r * sec.step_um, rel=0.1)
        # where the section's centre lies on the common path (s0 + d), within 5 µm
        assert table["core_offset_um"][i] == pytest.approx((g.start * L + g.cut_offset_px) * sec.step_um, abs=5.0)
        # shell compositions = the planted zoning at the shells' true growth coordinate, within
        # counting noise plus the calibration's few-0.001 bias
        sh = read_csv_table(out / "grains" / str(int(table["id"][i])) / "shells.csv")
        rho = (g.start * L + np.sqrt((sh["radius_um"] / sec.step_um) ** 2 + g.cut_offset_px**2)) / L
        X = np.stack([sh[f"X_{e}"] for e in ("alm", "prp", "grs", "sps")], -1)
        sd = np.stack([sh[f"X_{e}_sd"] for e in ("alm", "prp", "grs", "sps")], -1)
        err = X - garnet_end_members_truth(rho)
        assert np.all(np.abs(err) < 4 * sd + 0.012), (k, err)
    assert np.all(table["p_value"] > 1e-3)  # the grains agree: one path
    # the joint path's sd holds ptpath's own sd and the calibration's, in quadrature
    own, joint = read_csv_table(out / "joint" / "ptpath" / "ptpath.csv"), read_csv_table(out / "joint" / "ptpath.csv")
    for q in ("P", "T"):
        assert np.all(joint[f"{q}_sd_calibration"] > 0)
        np.testing.assert_allclose(joint[f"{q}_sd"] ** 2, own[f"{q}_sd"] ** 2 + joint[f"{q}_sd_calibration"] ** 2,
                                   rtol=1e-9)


def test_an_unknown_garnet_phase_is_a_clear_error(chain, capsys):
    from jaxpetro.cli import main

    sec, root = chain
    status = main(["section", str(root / "section.yaml"), "--out", str(root / "bad"), "--quiet",
                   "--set", "grains.phase=Grnt"])
    err = capsys.readouterr().err
    assert status == 3 and "no phase 'Grnt'" in err and "grains.phase" in err and "Traceback" not in err


def test_no_grain_a_wrong_mask_and_a_bad_mask_file_are_clear_errors(tmp_path):
    from jaxpetro.config.section import GrainsConfig
    from jaxpetro.workflows import section as S

    frac, X = _disc_field((60, 70), (30, 35), 12.0, _X_of_s)
    maps = S.GarnetMaps(frac, X, np.full_like(X, 0.002), np.full(frac.shape, 100.0), np.ones(frac.shape, bool), 2.0)
    labels, zoning = S.read_grains(maps, GrainsConfig(shell_width_um=4.0))
    assert len(zoning) == 1 and zoning[0].shells.radius_um.size >= 3
    with pytest.raises(InputError, match="no garnet grain of at least grains.min_pixels=100000"):
        S.read_grains(maps, GrainsConfig(min_pixels=100000))
    with pytest.raises(InputError, match="map is 60 x 70"):
        S.read_grains(maps, GrainsConfig(), mask=np.zeros((10, 12), int))
    with pytest.raises(InputError, match="three usable shells"):  # every pixel's total outside the range
        S.read_grains(maps._replace(total=np.full(frac.shape, 80.0)), GrainsConfig())
    np.save(tmp_path / "m.npy", np.zeros((10, 12), int))
    with pytest.raises(InputError, match="10 x 12 pixels but the map is 60 x 70"):
        S.read_mask_labels(tmp_path / "m.npy", (60, 70))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match="grains.mask: .*cannot be read as a mask"):
        S.read_mask_labels(tmp_path / "bad.png", (60, 70))


def test_domain_isocon_recovers_a_planted_mass_change(tmp_path):
    """The isocon: block on domain bulks: a protolith domain and one altered by a 25 % mass gain
    (Ti, Al, Fe, Mn immobile; Si, K gained, Mg, Ca, Na lost) -> mass ratio 1.25 and that immobile set;
    missing domains or a wrong reference are clear errors."""
    from jaxpetro._precision import float64
    from jaxpetro.config.loader import load_config
    from jaxpetro.config.section import SectionConfig
    from jaxpetro.io.results import write_csv
    from jaxpetro.workflows.section import domain_isocon

    oxides = ["SiO2", "TiO2", "Al2O3", "FeO", "MnO", "MgO", "CaO", "Na2O", "K2O"]
    fresh = np.array([60.0, 1.0, 16.0, 7.0, 0.15, 3.0, 4.0, 3.0, 3.0])
    mass_factor = np.array([1.3, 1, 1, 1, 1, 0.6, 0.3, 0.4, 2.0])  # mass of each oxide after / before
    altered = fresh * mass_factor / 1.25
    rows = [["section", *fresh, fresh.sum()], ["fresh", *fresh, fresh.sum()], ["vein halo", *altered, altered.sum()]]
    write_csv(tmp_path / "bulk.csv", ["region", *oxides, "total"], rows)
    cfg = load_config({"isocon": {"reference": "fresh", "uncertainty": {"replicates": 50}}}, SectionConfig)
    result = float64(domain_isocon)(cfg, tmp_path / "bulk.csv", tmp_path / "iso")
    assert result["mass_ratio"]["vein halo"] == pytest.approx(1.25, rel=1e-6)
    assert result["immobile"]["vein halo"] == ["TiO2", "Al2O3", "FeO", "MnO"]
    assert (tmp_path / "iso" / "result" / "isocon.csv").stat().st_size > 0
    bad = load_config({"isocon": {"reference": "protolith"}}, SectionConfig)
    with pytest.raises(InputError, match="not found: protolith"):
        domain_isocon(bad, tmp_path / "bulk.csv", tmp_path / "iso2")
    write_csv(tmp_path / "one.csv", ["region", *oxides, "total"], rows[:2])
    with pytest.raises(InputError, match="at least two domains"):
        domain_isocon(cfg, tmp_path / "one.csv", tmp_path / "iso3")


def test_the_ptpath_and_isocon_blocks_are_checked_before_the_map_is_quantified(tmp_path):
    """A typo in the ptpath: or isocon: block fails at once, before qmap runs (the qmap block here
    names no input at all, so reaching qmap would be a different error)."""
    from jaxpetro.config.section import SectionConfig
    from jaxpetro.errors import ConfigError
    from jaxpetro.workflows import section as S

    regions = {"summary": {"regions": {"fresh": [0, 10, 0, 10], "altered": [10, 20, 0, 10]}}}
    table = {"kind": "table", "path": "t.csv"}
    ok = load_config({"qmap": regions, "ptpath": {"forward": table}, "isocon": {"reference": "fresh"}}, SectionConfig)
    S.check_blocks(ok, tmp_path / "out")  # passes: nothing read, nothing written
    assert not (tmp_path / "out").exists()
    bad_key = load_config({"ptpath": {"forward": table, "ensemble": {"sise": 10}}}, SectionConfig)
    with pytest.raises(ConfigError, match="section 'ptpath:' block.*sise"):
        S.check_blocks(bad_key, tmp_path / "out")
    bad_ref = load_config({"qmap": regions, "ptpath": {"forward": table}, "isocon": {"reference": "protolith"}},
                          SectionConfig)
    with pytest.raises(ConfigError, match="isocon.reference protolith is not a domain.*fresh, altered"):
        S.check_blocks(bad_ref, tmp_path / "out")
    thermo = {"kind": "thermo", "assemblage": ["g", "bi", "mu", "pl", "q"], "domain": "rim"}
    with pytest.raises(ConfigError, match="forward.domain = 'rim' is not a domain.*section, fresh, altered"):
        S.check_blocks(load_config({"qmap": regions, "ptpath": {"forward": thermo}}, SectionConfig), tmp_path / "o")
    with pytest.raises(ConfigError):  # the CLI refuses before quantifying: exit status of a config error
        S.run(bad_ref, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_thermo_forward_model_takes_the_sections_own_bulk(tmp_path):
    """forward.kind: thermo without forward.bulk / bulk_from: the reactive bulk is the section's
    qmap bulk.csv (the whole map, or forward.domain); a given bulk_from is left alone."""
    from jaxpetro.config.section import SectionConfig
    from jaxpetro.workflows import section as S
    from jaxpetro.workflows.ptpath import thermo_bulk
    from jaxpetro.thermo.bulk import components_from_wt

    bulk = tmp_path / "qmap" / "bulk.csv"
    bulk.parent.mkdir()
    wt = {"SiO2": 63.8, "TiO2": 1.5, "Al2O3": 16.0, "FeO": 7.4, "MnO": 0.9, "MgO": 2.3, "CaO": 2.1, "Na2O": 1.9,
          "K2O": 2.9}
    rim = {k: v * (1.1 if k == "MnO" else 1.0) for k, v in wt.items()}
    bulk.write_text("region," + ",".join(wt) + ",total\n"
                    + "section," + ",".join(map(str, wt.values())) + f",{sum(wt.values())}\n"
                    + "rim," + ",".join(map(str, rim.values())) + f",{sum(rim.values())}\n")
    forward = {"kind": "thermo", "assemblage": ["g", "bi", "mu", "pl", "q"], "bulk_extra_wt": {"H2O": 4.0}}
    cfg = load_config({"ptpath": {"forward": forward}}, SectionConfig)
    pt = S._ptpath_config(cfg, tmp_path / "p.csv", qmap_bulk=bulk)
    assert pt.forward.bulk_from == str(bulk.resolve())
    np.testing.assert_allclose(thermo_bulk(pt), components_from_wt({**wt, "H2O": 4.0}), rtol=1e-12)
    pt_rim = S._ptpath_config(load_config({"ptpath": {"forward": {**forward, "domain": "rim"}}}, SectionConfig),
                              tmp_path / "p.csv", qmap_bulk=bulk)
    np.testing.assert_allclose(thermo_bulk(pt_rim), components_from_wt({**rim, "H2O": 4.0}), rtol=1e-12)
    given = tmp_path / "other.csv"
    pt_given = S._ptpath_config(load_config({"ptpath": {"forward": {**forward, "bulk_from": str(given)}}},
                                            SectionConfig), tmp_path / "p.csv", qmap_bulk=bulk)
    assert pt_given.forward.bulk_from == str(given)

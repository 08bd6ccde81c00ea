"""qmap's structural formulae (``structural:`` keys, qmap.h5/structural, structural.csv, PNG maps)
on a small synthetic section whose compositions are known: the garnet's end-members at every
pixel (the zoning law), the matrix phases' nominal analyses (checked by hand calculation)."""

import csv
import dataclasses

import h5py
import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.config import QmapConfig
from jaxpetro.config.loader import load_config
from jaxpetro.errors import ConfigError
from jaxpetro.io import results as results_io
from jaxpetro.io.results import read_hdf5
from jaxpetro.synthetic import make_thin_section
from jaxpetro.synthetic.thin_section import PHASE_WT, PHASES, garnet_end_members_truth
from jaxpetro.workflows import qmap
from jaxpetro.workflows.demo import export_section
from jaxpetro.workflows.stages import Stages

N = 64
GRT = PHASES.index("Grt")

# Molar masses (g/mol) for the hand calculations below (IUPAC atomic weights).
MOLAR = {"SiO2": 60.083, "TiO2": 79.865, "Al2O3": 101.961, "FeO": 71.844, "MnO": 70.937, "MgO": 40.304,
         "CaO": 56.077, "Na2O": 61.979, "K2O": 94.195}
CATIONS = {"SiO2": 1, "TiO2": 1, "Al2O3": 2, "FeO": 1, "MnO": 1, "MgO": 1, "CaO": 1, "Na2O": 2, "K2O": 2}
OXYGENS = {"SiO2": 2, "TiO2": 2, "Al2O3": 3, "FeO": 1, "MnO": 1, "MgO": 1, "CaO": 1, "Na2O": 1, "K2O": 1}
OXIDES = ("SiO2", "TiO2", "Al2O3", "FeO", "MnO", "MgO", "CaO", "Na2O", "K2O")


def hand_formula(wt, basis):
    """Cations per formula unit of one analysis by hand: moles of cations and oxygens per
    100 g, scaled to ``basis`` oxygens (Deer, Howie & Zussman 1992, Appendix)."""
    cat = {o: w / MOLAR[o] * CATIONS[o] for o, w in zip(OXIDES, wt)}
    oxy = sum(w / MOLAR[o] * OXYGENS[o] for o, w in zip(OXIDES, wt))
    return {o: c * basis / oxy for o, c in cat.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("structural")
    sec = make_thin_section(rows=N, cols=N, n_spots=24, seed=0)
    export_section(sec, root / "sec")
    cfg = load_config({"input": {"maps": str(root / "sec" / "maps.npz"), "spots": str(root / "sec" / "spots.csv")}},
                      QmapConfig)
    res = qmap.analyse(cfg, Stages(8, "qmap", quiet=True))
    return sec, cfg, res, qmap.structural(cfg, res)


def with_structural(cfg, **changes):
    return dataclasses.replace(cfg, structural=dataclasses.replace(cfg.structural, **changes))


def test_garnet_pixels_recover_the_planted_end_members(run):
    sec, cfg, res, st = run
    grt = st.phases["Grt"]
    assert grt.mineral == "garnet" and grt.formula.fe3_method == "charge_balance_phase_mean"
    assert grt.n_pixels > 300
    # pixels taken are (nearly) pure garnet by the truth too
    assert np.min(sec.fractions[..., GRT][grt.pixels]) >= 0.9
    truth = garnet_end_members_truth(sec.garnet_rho[grt.pixels])
    em = grt.formula.end_members
    for i, name in enumerate(("X_alm", "X_prp", "X_grs", "X_sps")):
        err = em[name] - truth[:, i]
        assert abs(err.mean()) < 0.01, (name, err.mean())  # the pixels' mean: counting noise averages out
        assert np.median(np.abs(err)) < 0.03, (name, np.median(np.abs(err)))  # one 20 ms pixel
    # the zoning itself is recovered: means over shells of the growth coordinate follow the truth
    rho = sec.garnet_rho[grt.pixels]
    shells = np.digitize(rho, np.quantile(rho, [0.25, 0.5, 0.75]))
    for i, name in enumerate(("X_alm", "X_prp", "X_grs", "X_sps")):
        got = np.array([em[name][shells == b].mean() for b in range(4)])
        want = np.array([truth[shells == b, i].mean() for b in range(4)])
        assert np.max(np.abs(got - want)) < 0.015, (name, got, want)
    # no Fe3+ was planted: the charge balance of the garnet's mean composition finds ~none
    assert float(grt.of_mean.ratios["Fe3_Fe"]) < 0.01 and np.mean(em["X_adr"]) < 0.005
    # the ideal cation totals: 8 on 12 O; Z filled to 3; Y and X near 2 and 3
    c, s = grt.formula.cations, grt.formula.sites
    assert abs(np.mean(c["sum"]) - 8.0) < 0.01 and abs(float(grt.of_mean.cations["sum"]) - 8.0) < 0.005
    np.testing.assert_allclose(s["Z_sum"], 3.0, atol=1e-5)
    assert abs(np.mean(s["Y_sum"]) - 2.0) < 0.02 and abs(np.mean(s["X_sum"]) - 3.0) < 0.02
    sums = sum(em[k] for k in ("X_alm", "X_prp", "X_grs", "X_sps", "X_adr", "X_uv"))
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)


def test_per_pixel_charge_balance_is_biased_by_counting_noise(run):
    """Why fe3_from defaults to phase_mean: Fe3+ >= 0 per pixel turns the noise of each pixel's
    cation total into spurious andradite (no Fe3+ was planted)."""
    sec, cfg, res, st = run
    pix = qmap.structural(with_structural(cfg, fe3_from="pixel"), res).phases["Grt"]
    assert pix.formula.fe3_method == "charge_balance"
    truth = garnet_end_members_truth(sec.garnet_rho[pix.pixels])
    assert np.mean(pix.formula.cations["Fe3"]) > 0.04
    assert np.mean(pix.formula.end_members["X_grs"]) < np.mean(truth[:, 2]) - 0.015
    mean = st.phases["Grt"]
    assert abs(np.mean(mean.formula.end_members["X_grs"]) - np.mean(truth[:, 2])) < 0.01


def test_matrix_phases_against_hand_calculations(run):
    sec, cfg, res, st = run
    assert set(st.phases) == {"Grt", "Bt", "Ms", "Pl"} and set(st.skipped) == {"Qtz", "Ilm"}
    wt = res.quant.wt
    rng = np.random.default_rng(1)
    for phase, basis in (("Pl", 8.0), ("Bt", 11.0), ("Ms", 11.0), ("Grt", 12.0)):
        pf = st.phases[phase]
        # the formula of the phase's mean composition, and of three of its pixels, by hand
        hand = hand_formula(wt[pf.pixels].mean(axis=0, dtype=np.float64), basis)
        got = pf.of_mean.cations
        for oxide, element in (("SiO2", "Si"), ("Al2O3", "Al"), ("MgO", "Mg"), ("CaO", "Ca"), ("Na2O", "Na"),
                               ("K2O", "K")):
            assert float(got[element]) == pytest.approx(hand[oxide], abs=2e-4), (phase, element)
        if phase != "Grt":  # all Fe2+ (garnet: Fe3+ from the charge balance, tested above)
            assert float(got["Fe2"]) == pytest.approx(hand["FeO"], abs=2e-4)
            assert float(got["sum"]) == pytest.approx(sum(hand.values()), abs=1e-3)
        rows, cols = np.nonzero(pf.pixels)
        for i in rng.choice(rows.size, 3, replace=False):
            h = hand_formula(wt[rows[i], cols[i]].astype(np.float64), basis)
            assert pf.formula.cations["Si"][i] == pytest.approx(h["SiO2"], abs=2e-4)  # row-major pixel order
    # against the planted analyses (through the calibration: its error, not the formula's, sets the tolerance)
    pl, bt, ms = (PHASE_WT[PHASES.index(p)] for p in ("Pl", "Bt", "Ms"))
    ca, na, k = pl[6] / MOLAR["CaO"], 2 * pl[7] / MOLAR["Na2O"], 2 * pl[8] / MOLAR["K2O"]
    assert abs(float(st.phases["Pl"].of_mean.end_members["X_an"]) - ca / (ca + na + k)) < 0.02  # An 24.9
    hand = hand_formula(bt, 11.0)
    f = st.phases["Bt"].of_mean
    assert abs(float(f.ratios["X_Mg"]) - hand["MgO"] / (hand["MgO"] + hand["FeO"])) < 0.015  # 0.430
    assert abs(float(f.cations["K"]) - hand["K2O"]) < 0.05 and abs(float(f.cations["Ti"]) - hand["TiO2"]) < 0.02
    hand = hand_formula(ms, 11.0)
    f = st.phases["Ms"].of_mean
    assert abs(float(f.end_members["X_pg"]) - hand["Na2O"] / (hand["Na2O"] + hand["K2O"] + hand["CaO"])) < 0.03
    # micas and feldspar keep all Fe as Fe2+: no Fe3+ entries are written for them
    assert "Fe3" not in st.phases["Bt"].formula.cations and "Fe3_Fe" not in st.phases["Bt"].formula.ratios
    # elements not analysed (Cr, Ba, Zn...) have no entries
    assert "Cr" not in st.phases["Grt"].formula.cations and "Y_Cr" not in st.phases["Grt"].formula.sites


def test_outputs_have_units_csv_and_maps(run, tmp_path, monkeypatch):
    sec, cfg, res, st = run
    monkeypatch.setattr(results_io, "REQUIRE_UNITS", True)  # a dataset without units is an error
    summary = qmap.write_outputs(cfg, tmp_path, res, st)
    with h5py.File(tmp_path / "qmap.h5") as f:
        g = f["structural/Grt"]
        assert g["cations/Si"].attrs["units"] == "apfu" and g["sites/Z_Si"].attrs["units"] == "apfu"
        assert g["end_members/X_alm"].attrs["units"] == "1" and g["ratios/X_Mg"].attrs["units"] == "1"
        assert g["mineral"][()].decode() == "garnet" and g["oxygen_basis"][()] == 12.0
        assert g["cation_basis"][()] == 8.0 and g["oxygen_basis"].attrs["units"] == "apfu"
        assert g["end_members/X_alm"].shape == (N, N) and g["end_members/X_alm"].dtype == np.float32
        assert "structural/Bt/ratios/X_Mg" in f and "structural/Pl/end_members/X_an" in f
        assert "structural/Qtz" not in f
    data, _ = read_hdf5(tmp_path / "qmap.h5")
    grt = data["structural"]["Grt"]
    pix = grt["pixels"].astype(bool)
    assert pix.sum() == st.phases["Grt"].n_pixels == grt["n_pixels"]
    x = grt["end_members"]["X_alm"]
    assert np.all(np.isfinite(x[pix])) and np.all(np.isnan(x[~pix]))
    np.testing.assert_array_equal(x[pix], st.phases["Grt"].formula.end_members["X_alm"])
    with open(tmp_path / "structural.csv") as fh:
        rows = list(csv.DictReader(fh))
    row = next(r for r in rows if r["phase"] == "Grt" and r["name"] == "X_alm")
    assert row["mineral"] == "garnet" and row["unit"] == "1" and int(row["n_pixels"]) == pix.sum()
    assert float(row["mean"]) == pytest.approx(float(np.nanmean(x)), abs=1e-5)
    assert {r["unit"] for r in rows if r["group"] in ("cations", "sites")} == {"apfu"}
    assert summary["structural"]["Grt"]["X_alm"] == pytest.approx(float(np.nanmean(x)), abs=1e-6)
    for phase in ("Grt", "Bt", "Ms", "Pl"):
        assert (tmp_path / f"structural_{phase}.png").stat().st_size > 10_000


def test_keys_map_skip_and_switch_off(run, tmp_path):
    sec, cfg, res, st = run
    c = with_structural(cfg, minerals={"Ms": "none", "Qtz": "garnet"}, maps={"garnet": ("X_Mg", "sites/X_Mg", "Fe2")})
    out = qmap.structural(c, res)
    assert "Ms" not in out.phases and "Ms" in out.skipped and out.phases["Qtz"].mineral == "garnet"
    assert out.phases["Grt"].panels == (("ratios", "X_Mg"), ("sites", "X_Mg"), ("cations", "Fe2"))
    assert qmap.structural(with_structural(cfg, enabled=False), res) is None
    # a higher threshold takes fewer, purer pixels
    strict = qmap.structural(with_structural(cfg, min_weight=0.99), res).phases["Grt"]
    assert strict.n_pixels < st.phases["Grt"].n_pixels and not np.any(strict.pixels & ~st.phases["Grt"].pixels)
    # per-phase means only: structural.csv and the metadata, no per-pixel maps or PNGs
    means = with_structural(dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, plots=False)), pixels=False)
    qmap.write_outputs(means, tmp_path, res)
    with h5py.File(tmp_path / "qmap.h5") as f:
        assert f["structural/Grt/mineral"][()].decode() == "garnet" and "structural/Grt/end_members" not in f
    assert (tmp_path / "structural.csv").stat().st_size > 1000 and not list(tmp_path.glob("structural_*.png"))


def test_bad_keys_are_config_errors(run, tmp_path, capsys):
    sec, cfg, res, st = run
    with pytest.raises(ConfigError, match=r"structural\.maps\.garnet: 'X_foo' is not a quantity.*X_alm"):
        qmap.structural(with_structural(cfg, maps={"garnet": ("X_foo",)}), res)
    base = {"input": {"maps": "m.npz"}}
    with pytest.raises(ConfigError, match=r"structural\.minerals\.Wm: 'mica' is not a mineral kind; use one of "
                                          r"amphibole, biotite, .*garnet"):
        load_config(base, QmapConfig, ["structural.minerals={Wm: mica}"])
    with pytest.raises(ConfigError, match=r"structural\.fe3\.Grt: 'droop' is not an Fe3\+ method; use one of "
                                          r"charge_balance, none"):
        load_config(base, QmapConfig, ["structural.fe3={Grt: droop}"])
    with pytest.raises(ConfigError, match=r"structural\.fe3\.Bt: charge balance is indeterminate for biotite"):
        load_config(base, QmapConfig, ["structural.fe3={Bt: charge_balance}"])
    # through the CLI: a clean message, exit code 2, no traceback
    assert main(["qmap", "--out", str(tmp_path / "o"), "--quiet", "--set", "input.maps=m.npz",
                 "--set", "structural.minerals={Grt: garnett}"]) != 0
    err = capsys.readouterr().err
    assert "structural.minerals.Grt" in err and "k_feldspar" in err and "Traceback" not in err


def test_mapping_a_phase_the_run_lacks_is_warned(run, capsys):
    sec, cfg, res, st = run
    out = qmap.structural(with_structural(cfg, minerals={"grt": "garnet", "Wm": "muscovite"}), res)
    err = capsys.readouterr().err
    assert "structural.minerals names phase(s) Wm" in err and "grt" not in err.split("phase(s)")[1].split("that")[0]
    assert out.phases["Grt"].mineral == "garnet"  # matched case-insensitively

"""End-to-end tests of ``jaxpetro isocon``: outputs against the synthetic truth, the reader, bad inputs."""

import csv
from pathlib import Path

import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.config import load_config
from jaxpetro.config.isocon import IsoconConfig
from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io.results import read_hdf5
from jaxpetro.io.wholerock import BELOW_LIMIT, BELOW_UNKNOWN, MISSING, default_unit, read_wholerock
from jaxpetro.synthetic.wholerock import make_wholerock, write_wholerock_csv
from jaxpetro.workflows import isocon

ROOT = Path(__file__).resolve().parents[1]


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write(path, text):
    path.write_text(text)
    return path


def small_config(tmp_path, **extra):
    data = make_wholerock(2)
    csv_path = write_wholerock_csv(tmp_path / "wr.csv", data)
    raw = {"data": str(csv_path), "reference": ["ref1"], "relative_error": 0.1,
           "output": {"plots": False}, **extra}
    return data, load_config(raw, IsoconConfig)


def test_example_config_runs_and_recovers_truth(tmp_path, monkeypatch, capsys):
    """configs/isocon.yaml through the CLI: contract outputs, truth inside the intervals, headline report."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    # Default 1000 replicates: the same compiled bootstrap as the demo test (one compilation).
    rc = main(["isocon", "configs/isocon.yaml", "--out", str(out), "--set", "output.plots=false"])
    assert rc == 0
    report = capsys.readouterr().err
    assert "immobile (sparse):" in report and "Grant linear" in report and "alt1" in report
    truth = {r["sample"]: r for r in read_csv(ROOT / "configs/data/wholerock_synthetic_truth.csv")}
    rows = read_csv(out / "isocon.csv")
    assert list(rows[0])[:5] == ["sample", "mass_ratio", "mass_ratio_lo", "mass_ratio_hi", "n_immobile"]
    assert all(float(r["birge_ratio"]) >= 1.0 for r in rows)
    for r in rows:
        mr, lo, hi = float(r["mass_ratio"]), float(r["mass_ratio_lo"]), float(r["mass_ratio_hi"])
        true = float(truth[r["sample"]]["mass_ratio"])
        assert lo <= true <= hi and lo <= mr <= hi
        assert abs(np.log(mr / true)) < 0.03
        # Grant's linear isocon (through the origin, ppm) on the same immobile set: near the log-ratio one
        assert abs(np.log(float(r["mass_ratio_grant_linear"]) / mr)) < 0.1
    immobile_true = set(next(iter(truth.values()))["immobile"].split())
    transfer = read_csv(out / "transfer.csv")
    assert list(transfer[0])[:6] == ["sample", "element", "relative_change", "relative_change_lo",
                                     "relative_change_hi", "immobile"]
    selected = {r["element"] for r in transfer if r["sample"] == "alt1" and r["immobile"] == "True"}
    assert selected == immobile_true
    # The two below-detection entries are imputed and reported.
    imputed = read_csv(out / "imputed.csv")
    assert {(r["sample"], r["element"]) for r in imputed} == {("alt2", "Th"), ("alt4", "Rb")}
    assert float(next(r for r in imputed if r["element"] == "Th")["value_used"]) == pytest.approx(0.25)
    datasets, attrs = read_hdf5(out / "isocon.h5")
    assert datasets["path"]["coef"].shape == (40, 20, 5)
    assert datasets["replicates"]["mass_ratio"].shape == (1000, 5)
    assert np.all(datasets["path"]["converged"])
    assert datasets["sensitivity"]["d_mass_ratio_d_altered_ppm"].shape == (5, 5, 20)
    assert attrs["seed"] == 0 and "reference" in attrs["config"]


def test_classical_with_densities_matches_grant(tmp_path):
    data, cfg = small_config(tmp_path, method="classical", immobile=["TiO2", "Zr"],
                             densities={"ref1": 2.9, **{f"alt{k}": 2.7 + 0.05 * k for k in range(1, 6)}})
    names = list(data.elements)
    values = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(open(cfg.data)))[1:]])  # as written
    out = tmp_path / "out"
    isocon.run(cfg, out, quiet=True)
    rows = read_csv(out / "isocon.csv")
    i = [names.index("TiO2"), names.index("Zr")]
    for j, r in enumerate(rows):
        ratio = values[1 + j, i] / values[0, i]
        mr = float(r["mass_ratio"])
        # Equal weights: the log isocon slope is the mean log ratio of the named elements.
        assert mr == pytest.approx(1.0 / np.exp(np.mean(np.log(ratio))), rel=1e-12)
        assert float(r["volume_ratio"]) == pytest.approx(mr * 2.9 / (2.7 + 0.05 * (j + 1)), rel=1e-12)
        assert int(r["n_immobile"]) == 2
    transfer = read_csv(out / "transfer.csv")
    sio2 = next(t for t in transfer if t["sample"] == "alt1" and t["element"] == "SiO2")
    s = 1.0 / float(rows[0]["mass_ratio"])
    k = names.index("SiO2")
    assert float(sio2["relative_change"]) == pytest.approx(values[1, k] / values[0, k] / s - 1, rel=1e-10)
    assert float(sio2["delta_c"]) == pytest.approx(float(sio2["relative_change"]) * values[0, k], rel=1e-10)
    assert sio2["unit"] == "wt%"


def test_demo_headline_figures(tmp_path):
    """The demo's altered basalt: its immobile set (Ti, Al, Zr, Nb, Y, Th) recovered exactly, the mass ratios
    near the oracle's and inside their intervals; the written table looks like a lab's (totals near 100 wt%)."""
    res = isocon.run_demo(tmp_path, seed=0, quiet=True)
    assert res["identified"]
    assert res["precision"] == res["recall"] == 1.0 and res["n_immobile"] == 6
    assert res["rmse_log_mass_ratio"] < 0.03 and res["rmse_median"] > 2 * res["rmse_log_mass_ratio"]
    assert res["rmse_oracle"] <= res["rmse_log_mass_ratio"] + 1e-12
    assert res["coverage_mass_ratio"] == 1.0
    table = read_csv(tmp_path / "wholerock.csv")
    assert all(97.0 < float(r["Total"]) < 103.0 for r in table)
    assert all(float(r["TiO2_sd"]) == pytest.approx(0.02 * float(r["TiO2"]), rel=0.05) for r in table)
    immobile = {r["element"] for r in read_csv(tmp_path / "transfer.csv") if r["immobile"] == "True"}
    assert immobile == {"TiO2", "Al2O3", "Zr", "Nb", "Y", "Th"}
    for png in ("isocon.png", "path.png", "transfer.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_demo_reports_an_unidentifiable_seed(tmp_path, monkeypatch):
    """A data set the workflow refuses (seed 20 of the recovery study, chi-square): the demo says so instead of
    failing. (No seed of the altered basalt is refused, so the demo is handed that set.)"""
    from jaxpetro.synthetic import wholerock as synthetic

    monkeypatch.setattr(synthetic, "make_altered_basalt", lambda seed: make_wholerock(20))
    res = isocon.run_demo(tmp_path, seed=20, quiet=True)
    assert res["identified"] is False and np.isnan(res["rmse_log_mass_ratio"])
    assert res["rmse_oracle"] < res["rmse_median"]


def test_reader_units_and_cells(tmp_path):
    path = write(tmp_path / "t.csv",
                 "Sample,SiO2,Fe2O3T,Zr,Zr_sd,Au,note\n"
                 "a,50,10,100,5,<0.5,x\n"
                 "b,48.5,bdl,0,,na,y\n"
                 "c,47,9, 120 ,6,n.d.,z\n")
    t = read_wholerock(path, {"default": "auto", "Au": "ppb"}, exclude=["note"])
    assert t.elements == ("SiO2", "Fe2O3T", "Zr", "Au") and t.units == ("wt%", "wt%", "ppm", "ppb")
    np.testing.assert_allclose(t.values[0, :3], [50e4, 10e4, 100.0])
    assert t.limit[0, 3] == pytest.approx(0.5e-3)  # ppb -> ppm
    assert t.status[0, 3] == BELOW_LIMIT and t.status[1, 1] == BELOW_UNKNOWN and t.status[1, 2] == BELOW_UNKNOWN
    assert t.status[1, 3] == MISSING and t.status[2, 3] == BELOW_UNKNOWN
    assert t.sd[0, 2] == 5.0 and np.isnan(t.sd[1, 2])
    assert default_unit("FeO*") == "wt%" and default_unit("LOI") == "wt%" and default_unit("Co") == "ppm"


BAD_INPUTS = [
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nalt1,abc,1.2,110\n", {}, "'abc' is not a number"),
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nalt1,45,-1.2,110\n", {}, "negative concentration"),
    ("sample,SiO2,Zr\nref1,50,100\nalt1,45,110\n", {}, "at least 3 elements"),
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nalt1,45,1.2,110\n", {"reference": ["protolith"]}, "protolith"),
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nref1,45,1.2,110\n", {}, "more than one row"),
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nalt1,45,1.2,110\n", {"units": {"Nb": "ppm"}}, "Nb"),
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nalt1,45,1.2,110\n", {"units": {"Zr": "ppt"}}, "unit 'ppt'"),
    ("sample,SiO2,TiO2,Zr\nref1,50,1.5,100\nalt1,45,1.2,110\n", {"method": "classical", "immobile": ["Al2O3"]},
     "Al2O3"),
    ("sample,SiO2,TiO2,Zr\nref1,50,bdl,100\nalt1,45,<0.1,110\n", {}, "no measured value"),
    ("SiO2,TiO2,Zr\n50,1.5,100\n45,1.2,110\n", {}, "no 'sample' column"),
]


@pytest.mark.parametrize("text,extra,message", BAD_INPUTS)
def test_bad_inputs_name_the_problem(tmp_path, capsys, text, extra, message):
    path = write(tmp_path / "bad.csv", text)
    cfg = {"data": str(path), "reference": ["ref1"], "output": {"plots": False}, "uncertainty": {"replicates": 0},
           **extra}
    with pytest.raises(InputError, match="bad.csv|unit") as err:
        isocon.run(load_config(cfg, IsoconConfig), tmp_path / "out", quiet=True)
    assert message in str(err.value)


def test_all_elements_mobile_is_not_identifiable(tmp_path, capsys):
    data = make_wholerock(1, immobile_fraction=0.0)
    path = write_wholerock_csv(tmp_path / "mobile.csv", data)
    rc = main(["isocon", "--out", str(tmp_path / "o"), "--quiet", "--set", f"data={path}", "--set",
               "reference=[ref1]", "--set", "relative_error=0.1", "--set", "output.plots=false"])
    assert rc == 3
    err = capsys.readouterr().err
    assert "cannot be identified" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "isocon.csv").exists()


def test_config_errors():
    with pytest.raises(ConfigError, match="immobile"):
        load_config({"data": "x.csv", "reference": ["a"], "method": "classical"}, IsoconConfig)
    with pytest.raises(ConfigError, match="lambda_fraction"):
        load_config({"data": "x.csv", "reference": ["a"], "sparse": {"criterion": "fixed"}}, IsoconConfig)
    with pytest.raises(ConfigError, match="reference"):
        load_config({"data": "x.csv"}, IsoconConfig)
    with pytest.raises(ConfigError, match="q"):
        load_config({"data": "x.csv", "reference": ["a"], "sparse": {"q": 1.5}}, IsoconConfig)


def test_fixed_lambda_and_seed_reproducibility(tmp_path):
    _, cfg = small_config(tmp_path, sparse={"criterion": "fixed", "lambda_fraction": 0.999999},
                          uncertainty={"replicates": 0})
    with pytest.raises(InputError, match="scatters"):  # every element "immobile" does not fit within error
        isocon.run(cfg, tmp_path / "a", quiet=True)
    _, cfg = small_config(tmp_path, sparse={"criterion": "fixed", "lambda_fraction": 0.999999, "fit_p_min": 0.0},
                          uncertainty={"replicates": 0})
    res = isocon.run(cfg, tmp_path / "a", quiet=True)
    # Just below λ_max every element is immobile (or only the most deviant one moves).
    assert len(res["immobile"]["alt1"]) >= 19
    _, cfg = small_config(tmp_path)
    isocon.run(cfg, tmp_path / "b", quiet=True)
    isocon.run(cfg, tmp_path / "c", quiet=True)
    assert (tmp_path / "b" / "isocon.csv").read_text() == (tmp_path / "c" / "isocon.csv").read_text()

"""`jaxpetro qmap` quantification: JEOL input, calibration to wt%, mixing, summaries, bad input."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.io.results import read_hdf5
from jaxpetro.models import xray
from jaxpetro.models.clustering import ClusteringOptions, cluster_map
from jaxpetro.kernels.unmixing import UnmixOptions, unmix
from jaxpetro.synthetic import make_thin_section
from jaxpetro.synthetic.jeol import write_jeol
from jaxpetro.workflows.demo import export_section

ROWS, COLS = 120, 128


@pytest.fixture(scope="module")
def section():
    return make_thin_section(rows=ROWS, cols=COLS, n_spots=40, seed=2)


@pytest.fixture(scope="module")
def project(section, tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    export_section(section, root / "section")
    write_jeol(section, root / "jeol_old", dialect="old")
    write_jeol(section, root / "jeol_new", dialect="new")
    return root


def run_qmap(out, *sets):
    args = ["qmap", "--out", str(out), "--quiet"]
    for s in sets:
        args += ["--set", s]
    return main(args)


def jeol_sets(root, dialect="old"):
    return [f"input.format=jeol", f"input.map_dir={root / f'jeol_{dialect}' / '.map' / '1'}",
            f"input.qnt_dir={root / f'jeol_{dialect}' / '.qnt'}"]


def generic_sets(root, spots=None):
    return [f"input.maps={root / 'section' / 'maps.npz'}", f"input.spots={spots or root / 'section' / 'spots.csv'}"]


@pytest.fixture(scope="module")
def jeol_run(project, tmp_path_factory):
    out = tmp_path_factory.mktemp("jeol_run")
    assert run_qmap(out, *jeol_sets(project), "summary.regions={left: [0, 120, 0, 64]}") == 0
    return out


def test_jeol_run_writes_the_contract(jeol_run, section):
    data, attrs = read_hdf5(jeol_run / "qmap.h5")
    oxides = list(section.oxides)
    assert data["oxides"] == oxides
    for group in ("wt", "wt_se", "lod"):
        assert sorted(data[group]) == sorted(oxides)
        assert data[group]["SiO2"].shape == (ROWS, COLS)
    assert data["membership"].shape == (ROWS, COLS, 6)
    assert data["fractions"].shape == (ROWS, COLS, 6)
    np.testing.assert_allclose(data["fractions"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(data["total"], sum(data["wt"][o] for o in oxides), rtol=1e-5)
    for key in ("alpha", "beta", "gamma", "alpha_se"):
        assert key in data["parameters"]
    assert data["summary"]["composition"].shape == (6, 9)
    assert float(data["checks"]["spot_agreement"]) == 1.0
    for name in ("summary.csv", "parameters.csv", "spots.csv", "bulk.csv", "phases.png", "total.png",
                 "SiO2.csv", "SiO2.png", "K2O.png"):
        assert (jeol_run / name).stat().st_size > 0, name
    matrix = np.loadtxt(jeol_run / "FeO.csv", delimiter=",")
    np.testing.assert_allclose(matrix, data["wt"]["FeO"], rtol=1e-3, atol=1e-3)  # 4 significant digits
    with open(jeol_run / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:11] == ["phase", "modal_fraction", *oxides]
    assert "left" in data["summary"]["regions"]


def test_wt_maps_match_the_truth_within_counting_noise(jeol_run, section):
    """Pure pixels: the error of each major oxide has the SE the workflow reports (z sd ~1,
    allowing the map's +-2 % exposure drift, which the JEOL conditions do not record).
    Phase compositions: counting noise averages out, so majors are within 3 % (the
    calibration's own uncertainty with 40 spots, plus the drift)."""
    data, _ = read_hdf5(jeol_run / "qmap.h5")
    pure = section.fractions.max(-1) > 0.99
    for j, ox in enumerate(section.oxides):
        err = data["wt"][ox] - section.wt[..., j]
        z = err[pure] / data["wt_se"][ox][pure]
        major = section.wt[..., j][pure] > 5
        if major.sum() > 100:
            assert 0.7 < np.std(z[major]) < 1.3, ox
            # The calibration error is shared by all pixels of a phase: it shifts their mean
            # z by up to about its share of the SE, not by 1/sqrt(n).
            assert abs(np.mean(z[major])) < 1.0, ox
    names = data["phases"]
    comp = data["summary"]["composition"]
    for k, name in enumerate(names):
        truth = section.phase_wt[section.phases.index(name)]
        for j, ox in enumerate(section.oxides):
            if truth[j] > 5 and name != "Grt":  # garnet is zoned: its mean is area-weighted differently
                assert comp[k, j] == pytest.approx(truth[j], rel=0.03), (name, ox)


def test_both_jeol_dialects_give_the_same_result(project, jeol_run, tmp_path):
    assert run_qmap(tmp_path / "new", *jeol_sets(project, "new"), "output.plots=false") == 0
    a, _ = read_hdf5(jeol_run / "qmap.h5")
    b, _ = read_hdf5(tmp_path / "new" / "qmap.h5")
    np.testing.assert_allclose(a["membership"], b["membership"], atol=1e-5)
    np.testing.assert_allclose(a["wt"]["SiO2"], b["wt"]["SiO2"], rtol=1e-4, atol=1e-4)


def test_wrong_orientation_is_caught(project, tmp_path, capsys):
    status = run_qmap(tmp_path / "o", *jeol_sets(project), "input.row_axis=y", "output.plots=false")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # A transposed grid either puts spots off the map or on pixels of other phases.
    assert (status == 3 and "input.row_axis" in err) or (status == 0 and "orientation" in err)


def test_parameters_csv_quantifies_a_map_without_wt_spots(project, jeol_run, tmp_path):
    """Labels-only spots + parameters.csv of the first run give the same wt% maps."""
    with open(project / "section" / "spots.csv") as fh:
        rows = list(csv.DictReader(fh))
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x_px", "y_px", "phase"])
        w.writerows([[r["x_px"], r["y_px"], r["phase"]] for r in rows])
    shutil.copy(project / "section" / "maps.npz", tmp_path / "maps.npz")
    status = run_qmap(tmp_path / "p", f"input.maps={tmp_path / 'maps.npz'}", f"input.spots={labels}",
                      f"quantify.parameters={jeol_run / 'parameters.csv'}", "output.plots=false")
    assert status == 0
    a, _ = read_hdf5(jeol_run / "qmap.h5")
    b, _ = read_hdf5(tmp_path / "p" / "qmap.h5")
    np.testing.assert_allclose(b["wt"]["Al2O3"], a["wt"]["Al2O3"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b["parameters"]["alpha"], a["parameters"]["alpha"], rtol=1e-12)


def test_outlier_spot_is_flagged_and_subphases_merge(project, tmp_path, capsys):
    with open(project / "section" / "spots.csv") as fh:
        rows = list(csv.DictReader(fh))
    qtz = next(i for i, r in enumerate(rows) if r["phase"] == "Qtz")
    rows[qtz]["phase"] = "Grt"  # a mislabelled spot
    for r in rows:
        if r["phase"] == "Grt" and r is not rows[qtz]:
            r["phase"] = "Grt_rim"
    path = tmp_path / "spots.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert run_qmap(tmp_path / "out", *generic_sets(project, path), "output.plots=false") == 0
    err = capsys.readouterr().err
    assert f"spot(s) {rows[qtz]['id']} disagree" in err
    data, _ = read_hdf5(tmp_path / "out" / "qmap.h5")
    assert "Grt" in data["phases"] and "Grt_rim" not in data["phases"]
    with open(tmp_path / "out" / "spots.csv") as fh:
        report = {r["id"]: r for r in csv.DictReader(fh)}
    flagged = [i for i, r in report.items() if r["outlier"] == "True"]
    assert flagged == [rows[qtz]["id"]]
    assert report[rows[qtz]["id"]]["pixel_phase"] == "Qtz"


def test_element_bookkeeping_warnings(project, tmp_path, capsys):
    with open(project / "section" / "spots.csv") as fh:
        rows = list(csv.DictReader(fh))
    path = tmp_path / "spots.csv"
    fields = [f for f in rows[0] if not f.startswith("K2O") and not f.startswith("K_")] + ["Cr2O3"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "Cr2O3": "0.01"})
    assert run_qmap(tmp_path / "out", *generic_sets(project, path), "output.plots=false",
                    "clustering.phases=[Qtz, Pl, Bt, Ms, Grt, Ilm, Chl]") == 0
    err = capsys.readouterr().err
    assert "Cr analysed at the spots but not mapped" in err
    assert "K have no spot analyses" in err
    assert "phase Chl in clustering.phases has no spots" in err
    data, _ = read_hdf5(tmp_path / "out" / "qmap.h5")
    assert "K2O" not in data["wt"] and data["phases"][-1] == "Chl"


@pytest.mark.parametrize(
    "extra, match",
    [
        (["input.dead_time_ns=1e6"], "dead time"),
        (["input.maps=nope.npz"], "not found"),
        (["quantify.threshold=1.0", "quantify.beta_window=1"], None),  # runs (pure spots have p ~ 1)
        (["quantify.parameters=missing.csv"], "parameters file"),
    ],
)
def test_bad_settings_give_clear_errors(project, tmp_path, capsys, extra, match):
    status = run_qmap(tmp_path / "o", *generic_sets(project), "output.plots=false", *extra)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if match is None:
        assert status == 0
    else:
        assert status == 3 and match in err


def test_duplicate_spot_ids(project, tmp_path, capsys):
    path = tmp_path / "spots.csv"
    path.write_text("id,x_px,y_px,phase,SiO2\n1,3,4,Qtz,99\n1,5,6,Qtz,99\n")
    assert run_qmap(tmp_path / "o", *generic_sets(project, path)) == 3
    assert "duplicate spot id" in capsys.readouterr().err


def test_mixing_fractions_quantify_boundary_pixels_better_without_noise(section):
    """On noise-free counts (isolating the weighting from counting noise), the linear
    mixing fractions give boundary pixels a smaller wt% error than EM memberships, and
    recover the true area fractions more closely."""
    sec = section
    counts = sec.expected_counts()  # float, no Poisson noise
    x = counts.reshape(-1, 9)
    exposure = np.float64(sec.exposure.mean())
    res = cluster_map(np.concatenate([counts, sec.counts[..., 9:]], -1), None, phases=sec.phases,
                      anchors=sec.anchor_labels(), electron_channels=[9],
                      options=ClusteringOptions(use_bse=False))
    p = res.memberships.reshape(-1, 6)
    lam = (p.T.astype(np.float64) @ x) / p.sum(0)[:, None]
    f = np.asarray(unmix(x, lam, options=UnmixOptions(n_active=3, max_iter=200)).fractions)
    cal = xray.Calibration(sec.alpha, 0 * sec.alpha, sec.beta[None], np.zeros((1, 9)), sec.gamma, 0 * sec.gamma,
                           np.zeros((9, 6), np.int32), np.zeros((1, 9), np.int32), np.zeros((9, 6), np.int32))
    rate = x / sec.exposure.reshape(-1, 1)
    mixed = (sec.fractions.max(-1) < 0.99).reshape(-1)
    truth = sec.wt.reshape(-1, 9)
    err_p = np.asarray(xray.quantify(rate, p, exposure, cal).wt)[mixed] - truth[mixed]
    err_f = np.asarray(xray.quantify(rate, f, exposure, cal).wt)[mixed] - truth[mixed]
    assert np.sqrt(np.mean(err_f**2)) < 0.8 * np.sqrt(np.mean(err_p**2))  # measured 0.72 (seed 2)
    tv = lambda w: np.abs(w[mixed] - sec.fractions.reshape(-1, 6)[mixed]).sum(1).mean() / 2  # noqa: E731
    assert tv(f) < 0.6 * tv(p)  # measured 0.51 (seed 2)


def test_shipped_config_runs_on_the_demo_export(tmp_path, monkeypatch):
    """configs/qmap.yaml reads the JEOL project that `jaxpetro demo` writes (its paths are relative
    to the config's folder: ../demo-out from configs/)."""
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "qmap.yaml"
    config.write_text((Path(__file__).resolve().parents[1] / "configs" / "qmap.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "demo-out", "--quiet", "--set", "synthetic.rows=64", "--set", "synthetic.cols=64",
                 "--set", "section=false", "--set", "isocon=false", "--set", "output.plots=false"]) == 0
    # the shipped profile line is for the 256 x 256 demo section: none on this small map
    assert main(["qmap", str(config), "--out", "qmap-out", "--quiet", "--set", "summary.regions={top: [0, 32, 0, 64]}",
                 "--set", "summary.profiles={}", "--set", "output.plots=false"]) == 0
    data, _ = read_hdf5(tmp_path / "qmap-out" / "qmap.h5")
    assert set(data["summary"]["regions"]) == {"section", "top"}


def test_garnet_profile_feeds_ptpath(project, section, tmp_path):
    """A profile from the garnet core outwards: wt% along it, and a ptpath-ready garnet
    profile whose end-members follow the true zoning (Mn and Ca down, Mg up)."""
    from jaxpetro.io.profiles import read_profile

    r0, c0, radius = section.garnets[0]
    line = f"summary.profiles={{g: [{c0:.1f}, {r0:.1f}, {c0 + 0.9 * radius:.1f}, {r0:.1f}]}}"
    assert run_qmap(tmp_path / "o", *generic_sets(project), line, "summary.profile_width=3", "output.plots=false") == 0
    prof = read_profile(tmp_path / "o" / "profiles" / "g_garnet.csv")
    x = np.asarray(prof.X) if hasattr(prof, "X") else None
    with open(tmp_path / "o" / "profiles" / "g_garnet.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 0.6 * 0.9 * radius
    sps = np.array([float(r["X_sps"]) for r in rows])
    prp = np.array([float(r["X_prp"]) for r in rows])
    n = len(rows) // 3
    assert sps[:n].mean() > sps[-n:].mean() and prp[:n].mean() < prp[-n:].mean()
    total = sum(np.array([float(r[m]) for r in rows]) for m in ("X_alm", "X_prp", "X_grs", "X_sps"))
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert all(float(r["X_sps_sd"]) > 0 for r in rows)
    assert x is None or x.shape[0] == len(rows)
    with open(tmp_path / "o" / "profiles" / "g.csv") as fh:
        assert "distance_um" in fh.readline()

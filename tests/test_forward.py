"""``jaxpetro forward``: the CLI on a small grid, the table as ptpath reads it, the status column, the
sensitivities against finite differences of whole runs, and config errors.

The runs share one compiled program (same grid shape and chemical system; the tolerances are
traced), so only the first pays the compile."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from jaxpetro import cli
from jaxpetro.config import load_config
from jaxpetro.config.forward import ForwardConfig
from jaxpetro.errors import ConfigError
from jaxpetro.io.perplex import read_table
from jaxpetro.io.results import read_csv_table, read_hdf5

REF = json.loads((Path(__file__).parent / "data" / "burnman_equilibrium.json").read_text())
WT = REF["bulks"]["pelite_a"]
H_MNO = 1e-3  # wt%, central differences of whole runs


def _config(tmp_path: Path, name: str, **changes) -> Path:
    cfg = {"bulk": {"oxides_wt": dict(WT)}, "assemblage": ["g", "bi", "mu", "pl", "q"],
           "grid": {"P_kbar": [5.0, 8.0, 1.0], "T_C": [540.0, 600.0, 20.0]}, "output": {"dpi": 60}}
    for key, value in changes.items():
        cfg[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forward")
    out = {}
    assert cli.main(["forward", str(_config(tmp, "base")), "--out", str(tmp / "base"), "--quiet", "--sensitivity"]) == 0
    out["base"] = tmp / "base"
    for sign, label in ((1, "up"), (-1, "down")):
        bulk = {"oxides_wt": {**WT, "MnO": WT["MnO"] + sign * H_MNO}}
        assert cli.main(["forward", str(_config(tmp, label, bulk=bulk)), "--out", str(tmp / label), "--quiet"]) == 0
        out[label] = tmp / label
    # garnet is 1.7-3.8 mol % of the phases' moles on this grid: a 2.25 % floor makes 6 nodes "phase_absent"
    cfg = _config(tmp, "absent", solver={"min_amount": 0.0225})
    assert cli.main(["forward", str(cfg), "--out", str(tmp / "absent"), "--quiet"]) == 0
    out["absent"] = tmp / "absent"
    return out


def test_the_table_is_a_ptpath_forward_table_matching_the_h5(runs):
    base = runs["base"]
    table = read_table(base / "forward.csv")
    np.testing.assert_allclose(table.P_kbar, [5, 6, 7, 8])
    np.testing.assert_allclose(table.T_C, [540, 560, 580, 600])
    assert table.valid.all()
    csv = read_csv_table(base / "forward.csv")
    assert list(csv)[:6] == ["P_kbar", "T_C", "X_alm", "X_prp", "X_grs", "X_sps"]
    assert {"mode_g", "mode_bi", "mode_mu", "mode_pl", "mode_q", "status"} <= set(csv)
    assert set(csv["status"].tolist()) == {"ok"}
    X = np.stack([csv[c] for c in ("X_alm", "X_prp", "X_grs", "X_sps")], axis=1)
    np.testing.assert_allclose(X.sum(axis=1), 1.0, atol=1e-13)
    modes = np.stack([csv[f"mode_{p}"] for p in ("g", "bi", "mu", "pl", "q")], axis=1)
    np.testing.assert_allclose(modes.sum(axis=1), 1.0, atol=1e-13)
    np.testing.assert_allclose(table.values.reshape(-1, 4), X, atol=1e-15)  # P-major rows
    data, attrs = read_hdf5(base / "forward.h5")
    np.testing.assert_allclose(data["garnet"]["X"], X, atol=1e-15)
    assert data["x"].shape == (16, 22) and data["jacobian"]["x_bulk"].shape == (16, 22, 11)
    assert "bulk" in attrs["config"]


def test_nodes_agree_with_the_burnman_reference(runs):
    # 6 kbar / 600 degC and 7 kbar / 600 degC (the reference's 873.15 K column) are nodes of this grid
    csv = read_csv_table(runs["base"] / "forward.csv")
    for r in REF["results"]["pelite_a"]:
        P, T = r["P"] / 1e8, r["T"] - 273.15
        hit = np.flatnonzero(np.isclose(csv["P_kbar"], P) & np.isclose(csv["T_C"], T))
        if not hit.size:
            continue
        g = np.asarray(r["g"])
        expected = np.array([g[1], g[0] + g[4], g[3], g[2]]) / g.sum()
        got = [csv[c][hit[0]] for c in ("X_alm", "X_prp", "X_grs", "X_sps")]
        np.testing.assert_allclose(got, expected, atol=1e-8)


def test_sensitivity_equals_central_differences_of_whole_runs(runs):
    data, _ = read_hdf5(runs["base"] / "forward.h5")
    comps = list(data["components"])
    up = read_hdf5(runs["up"] / "forward.h5")[0]["garnet"]["X"]
    down = read_hdf5(runs["down"] / "forward.h5")[0]["garnet"]["X"]
    fd = (up - down) / (2 * H_MNO)
    exact = data["sensitivity"]["dX_dwt"][:, :, comps.index("MnO")]
    np.testing.assert_allclose(exact, fd, rtol=0, atol=1e-5 * np.abs(fd).max())
    # quartz buffers silica: extra SiO2 is extra quartz, the garnet does not change
    assert np.abs(data["sensitivity"]["dX_dwt"][:, :, comps.index("SiO2")]).max() < 1e-12
    s = read_csv_table(runs["base"] / "sensitivity.csv")
    assert list(s["oxide"]) == comps  # every oxide of this bulk is present
    k = comps.index("MnO")
    np.testing.assert_allclose(s["median_abs_dX_sps_dwt"][k], np.median(np.abs(exact[:, 3])))
    assert data["sensitivity"]["top_per_wt"][3] == "MnO"  # spessartine answers to MnO per wt%


def test_status_column_and_missing_nodes(runs):
    csv = read_csv_table(runs["absent"] / "forward.csv")
    absent = csv["status"] == "phase_absent"
    assert absent.sum() == 6 and set(csv["status"][~absent].tolist()) == {"ok"}
    assert np.isnan(csv["X_alm"][absent]).all() and np.isnan(csv["mode_g"][absent]).all()
    assert np.isfinite(csv["X_alm"][~absent]).all()
    table = read_table(runs["absent"] / "forward.csv")  # missing nodes are NaN for ptpath
    assert int((~table.valid).sum()) == 6
    data, _ = read_hdf5(runs["absent"] / "forward.h5")
    assert (data["status"]["reason"] == 3).sum() == 6
    assert (runs["absent"] / "forward.png").is_file()


def test_config_errors(tmp_path, capsys):
    bad = {"bulk": {"oxides_wt": {**WT, "Fe2O3": 1.0}}}
    assert cli.main(["forward", str(_config(tmp_path, "a", **bad)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bulk.oxides_wt.Fe2O3" in err and "FeO + O" in err
    assert cli.main(["forward", str(_config(tmp_path, "b", bulk={"oxides_wt": {**WT, "MgO": -1}})),
                     "--out", str(tmp_path / "o")]) == 2
    assert "bulk.oxides_wt.MgO" in capsys.readouterr().err
    assert cli.main(["forward", str(_config(tmp_path, "c", assemblage=["garnet", "q"])),
                     "--out", str(tmp_path / "o")]) == 2  # no 'g'
    assert "'g'" in capsys.readouterr().err
    assert cli.main(["forward", str(_config(tmp_path, "d", assemblage=["g", "bi", "mu", "pl", "qtz"])),
                     "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "'qtz'" in err and "known phases" in err and not (tmp_path / "o").exists()
    assert cli.main(["forward", str(_config(tmp_path, "e", grid={"P_kbar": [8, 5, 1]})), "--out", str(tmp_path / "o")]) == 2
    assert "grid.P_kbar" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="exactly one"):
        load_config({"bulk": {}}, ForwardConfig)
    with pytest.raises(ConfigError, match="exactly one"):
        load_config({"bulk": {"oxides_wt": WT, "elements_mol": {"Si": 1.0, "O": 2.0}}}, ForwardConfig)
    one = load_config({"bulk": {"oxides_wt": WT}, "assemblage": "g"}, ForwardConfig)  # a single value
    assert one.assemblage == ("g",)
    assert cli.main(["forward", "--help"]) == 0
    assert "bulk.oxides_wt" in capsys.readouterr().out

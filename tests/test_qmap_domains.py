"""qmap domains (a mask image of colours or labels, polygons) and their bulk compositions in the
input forms of Perple_X, Theriak-Domino and MAGEMin, checked against hand calculations."""

import csv
import dataclasses
import re

import h5py
import numpy as np
import pytest

from jaxpetro.chemistry import OXIDES
from jaxpetro.config import QmapConfig
from jaxpetro.config.loader import load_config
from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io import results as results_io
from jaxpetro.io.bulk_forms import bulk_mol_percent, magemin_bulk_file, perplex_components, theriak_bulk_line
from jaxpetro.synthetic import make_thin_section
from jaxpetro.workflows import qmap
from jaxpetro.workflows.demo import export_section
from jaxpetro.workflows.stages import Stages

# wt% equal to the molar masses: one mole of each oxide, so 25 mol % each
OX4 = ("SiO2", "Al2O3", "FeO", "MgO")
WT4 = [OXIDES[o].molar_mass for o in OX4]


def test_mol_percent_by_hand():
    assert bulk_mol_percent(WT4, OX4) == pytest.approx({"SiO2": 25.0, "Al2O3": 25.0, "FeO": 25.0, "MgO": 25.0})
    # Fe3+/Fe = 0.5 of 1 mol Fe: O = 0.25 mol (Fe2O3 = 2 FeO + O), 4.25 mol in all; 10 mol % H2O
    mol = bulk_mol_percent(WT4, OX4, fe3_fe=0.5, h2o_mol=10.0)
    assert list(mol) == ["SiO2", "Al2O3", "FeO", "MgO", "O", "H2O"]
    assert mol["SiO2"] == pytest.approx(90.0 / 4.25) and mol["O"] == pytest.approx(90.0 * 0.25 / 4.25)
    assert mol["H2O"] == 10.0 and sum(mol.values()) == pytest.approx(100.0)
    # Perple_X's O2 is half of that: Fe2O3 = 2 FeO + 1/2 O2
    assert bulk_mol_percent(WT4, OX4, fe3_fe=0.5, oxygen="O2")["O2"] == pytest.approx(100 * 0.125 / 4.125)
    # Fe2O3 columns join FeO as total iron: 1 mol Fe2O3 = 2 mol Fe
    mol = bulk_mol_percent([OXIDES["SiO2"].molar_mass, OXIDES["Fe2O3"].molar_mass], ("SiO2", "Fe2O3"))
    assert mol == pytest.approx({"SiO2": 100 / 3, "FeO": 200 / 3})
    with pytest.raises(InputError, match="H2O"):
        bulk_mol_percent([1.0, 2.0], ("SiO2", "H2O"))


def test_the_three_forms_read_back():
    mol = bulk_mol_percent(WT4, OX4, fe3_fe=0.5, oxygen="O2", h2o_mol=10.0)
    block = perplex_components(mol, "rim").splitlines()
    assert block[0].startswith("| rim") and block[1] == "begin thermodynamic component list"
    assert block[-1] == "end thermodynamic component list"
    rows = [line.split() for line in block[2:-1]]
    assert [r[0] for r in rows] == ["SIO2", "AL2O3", "FEO", "MGO", "O2", "H2O"]
    assert all(r[1] == "1" and r[3:] == ["0.00000", "0.00000", "molar", "amount"] for r in rows)
    assert float(rows[0][2]) == pytest.approx(mol["SiO2"], abs=1e-5)
    # Theriak: moles of elements; 25 mol % each oxide -> Si 25, Al 50, Fe 25, Mg 25; O(?) without Fe3+
    line = theriak_bulk_line(bulk_mol_percent(WT4, OX4), "core")
    assert line.startswith("1   ") and line.endswith("   * core")
    els = dict(re.findall(r"([A-Z]+)\(([^)]*)\)", line))
    assert {k: v for k, v in els.items() if k != "O"} == {"SI": "25.00000", "AL": "50.00000", "FE": "25.00000",
                                                        "MG": "25.00000"} and els["O"] == "?"
    # with Fe3+/Fe = 0.5 the oxygen is written: 2 Si + 3 Al2O3 + FeO + MgO + Fe3+/2, per 4.25 mol
    mol = bulk_mol_percent(WT4, OX4, fe3_fe=0.5)
    els = dict(re.findall(r"([A-Z]+)\(([^)]*)\)", theriak_bulk_line(mol, "x", fe3_fe=0.5)))
    assert float(els["O"]) == pytest.approx(100 * (2 + 3 + 1 + 1 + 0.25) / 4.25, abs=1e-4)
    # MAGEMin: header and one line per bulk, O always present
    text = magemin_bulk_file({"a": bulk_mol_percent(WT4, OX4, fe3_fe=0.0)}, db="mp").splitlines()
    assert text[1] == "title; comments; db; sysUnit; oxide; frac"
    title, comment, db, unit, comps, fracs = [f.strip() for f in text[2].split(";")]
    assert (title, db, unit) == ("a", "mp", "mol") and comps == "[SiO2, Al2O3, FeO, MgO, O]"
    assert [float(v) for v in fracs.strip("[]").split(",")] == pytest.approx([25, 25, 25, 25, 0])


def test_domains_from_colours_labels_and_polygons(tmp_path):
    from skimage.io import imsave

    image = np.zeros((6, 8, 3), np.uint8)
    image[:, :4] = (255, 0, 0)
    image[:2, 4:] = (0, 128, 255)
    imsave(tmp_path / "d.png", image, check_contrast=False)
    domains = qmap.read_domains(tmp_path / "d.png", (6, 8), {"#FF0000": "left"})
    assert list(domains) == ["d_0080ff", "left"]  # in order of colour; unnamed ones by their colour
    assert domains["left"].sum() == 24 and domains["d_0080ff"].sum() == 8 and not (domains["left"] & domains["d_0080ff"]).any()
    labels = np.zeros((6, 8), int)
    labels[3:, 5:] = 3
    np.savetxt(tmp_path / "l.csv", labels, fmt="%d", delimiter=",")
    assert {k: v.sum() for k, v in qmap.read_domains(tmp_path / "l.csv", (6, 8)).items()} == {"domain_3": 9}
    with pytest.raises(InputError, match=r"summary\.domains: .* is 6 x 8 but the maps are 7 x 8"):
        qmap.read_domains(tmp_path / "d.png", (7, 8))
    np.save(tmp_path / "z.npy", np.zeros((6, 8)))
    with pytest.raises(InputError, match="holds no domain"):
        qmap.read_domains(tmp_path / "z.npy", (6, 8))
    np.save(tmp_path / "f.npy", np.full((6, 8), 0.5))
    with pytest.raises(InputError, match="integer labels"):
        qmap.read_domains(tmp_path / "f.npy", (6, 8))
    # polygons: pixel centres inside; a rectangle around rows 0-2, cols 0-4 holds its 15 pixels
    rect = qmap.polygon_mask([[-0.5, -0.5], [4.5, -0.5], [4.5, 2.5], [-0.5, 2.5]], (6, 8))
    assert rect.sum() == 15 and rect[:3, :5].all()
    tri = qmap.polygon_mask([[0.5, 0.5], [6.5, 0.5], [0.5, 4.5]], (6, 8))  # x + 1.5 y < 7.25, x >= 1, y >= 1
    assert tri.sum() == sum(1 for y in range(6) for x in range(8) if x >= 1 and y >= 1 and (x - 0.5) / 6 + (y - 0.5) / 4 < 1)


def test_bad_domain_keys_are_config_errors():
    base = {"input": {"maps": "m.npz"}}
    with pytest.raises(ConfigError, match=r"summary\.polygons\.p: a polygon needs at least 3 vertices"):
        load_config(base, QmapConfig, ["summary.polygons={p: [[0, 0], [1, 1]]}"])
    with pytest.raises(ConfigError, match=r"the name\(s\) a are used twice"):
        load_config(base, QmapConfig, ["summary.regions={a: [0, 2, 0, 2]}", "summary.polygons={a: [[0, 0], [1, 0], [0, 1]]}"])
    with pytest.raises(ConfigError, match=r"bulk\.forms"):
        load_config(base, QmapConfig, ["bulk.forms=[thermocalc]"])


def test_qmap_writes_domain_bulks_in_every_form(tmp_path, monkeypatch):
    from skimage.io import imsave

    rows = cols = 40
    sec = make_thin_section(rows=rows, cols=cols, n_spots=16, seed=2)
    export_section(sec, tmp_path / "sec")
    image = np.zeros((rows, cols, 3), np.uint8)
    image[:, :20] = (255, 0, 0)
    image[:, 20:] = (0, 255, 0)
    imsave(tmp_path / "domains.png", image, check_contrast=False)
    left = [[-0.5, -0.5], [19.5, -0.5], [19.5, 39.5], [-0.5, 39.5]]  # the red half as a polygon
    cfg = load_config({"input": {"maps": str(tmp_path / "sec" / "maps.npz"), "spots": str(tmp_path / "sec" / "spots.csv")},
                       "summary": {"domains": str(tmp_path / "domains.png"), "domain_names": {"#ff0000": "red"},
                                   "polygons": {"left": left}, "regions": {"top": [0, 20, 0, 40]}},
                       "bulk": {"h2o_mol": 5.0, "fe3_fe": 0.1}, "output": {"plots": False},
                       "structural": {"enabled": False}}, QmapConfig)
    res = qmap.analyse(cfg, Stages(8, "qmap", quiet=True))
    monkeypatch.setattr(results_io, "REQUIRE_UNITS", True)
    out = tmp_path / "out"
    out.mkdir()
    qmap.write_outputs(cfg, out, res)
    with open(out / "bulk.csv") as fh:
        table = {r["region"]: r for r in csv.DictReader(fh)}
    assert set(table) == {"section", "top", "left", "red", "d_00ff00"}
    oxides = list(res.calibration.oxides)
    red = np.array([float(table["red"][o]) for o in oxides])
    np.testing.assert_allclose([float(table["left"][o]) for o in oxides], red, rtol=1e-12)  # same pixels
    with h5py.File(out / "qmap.h5") as f:
        assert f["summary/domain_pixels/red"][()].sum() == 800 and f["summary/domain_pixels/red"].attrs["units"] == "1"
        assert f["summary/regions/red"].attrs["units"] == "wt%"
    # every form holds every bulk, in mol %, with the H2O and Fe3+ asked for
    section = [float(table["section"][o]) for o in oxides]
    want = bulk_mol_percent(section, oxides, h2o_mol=5.0, fe3_fe=0.1, oxygen="O2")
    text = (out / "bulk_perplex.txt").read_text()
    assert text.count("begin thermodynamic component list") == 5
    block = text.split("| section:")[1].split("end thermodynamic component list")[0]
    got = {line.split()[0]: float(line.split()[2]) for line in block.splitlines()[2:]}
    assert got == pytest.approx({k.upper(): v for k, v in want.items()}, abs=2e-5) and got["H2O"] == 5.0
    lines = (out / "bulk_theriak.txt").read_text().splitlines()
    assert len(lines) == 5 and lines[0].endswith("* section") and "O(?)" not in lines[0]
    magemin = (out / "bulk_magemin.dat").read_text().splitlines()
    assert len(magemin) == 2 + 5 and magemin[2].startswith("section; jaxpetro qmap; mp; mol; [SiO2")

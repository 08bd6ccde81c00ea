"""`jaxpetro qmap` on the generic input format: readers, recovery, bad input."""

import h5py
import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.errors import InputError
from jaxpetro.io.generic import MapStack, read_map_stack, read_spots, write_map_stack, write_spots
from jaxpetro.io.results import read_hdf5
from jaxpetro.synthetic import make_thin_section
from jaxpetro.workflows.demo import export_section


@pytest.fixture(scope="module")
def section():
    return make_thin_section(rows=96, cols=112, n_spots=30, seed=11)


@pytest.fixture()
def exported(section, tmp_path):
    export_section(section, tmp_path / "section")
    return tmp_path / "section"


def qmap(tmp_path, maps, spots=None, *extra):
    args = ["qmap", "--out", str(tmp_path / "out"), "--quiet", "--set", f"input.maps={maps}"]
    if spots is not None:
        args += ["--set", f"input.spots={spots}"]
    return main(args + list(extra))


def test_generic_round_trip(section, exported, tmp_path):
    stack = read_map_stack(exported / "maps.npz")
    np.testing.assert_array_equal(stack.counts, section.counts)
    assert stack.channels == section.channels and stack.step_um == section.step_um
    spots = read_spots(exported / "spots.csv", (96, 112))
    np.testing.assert_array_equal(spots.row, section.spots.row)
    np.testing.assert_array_equal(spots.col, section.spots.col)
    assert spots.phase == tuple(section.spots.phase)
    np.testing.assert_allclose(spots.columns["SiO2_wt"], section.spots.wt[:, 0], rtol=1e-15)
    # The same stack as HDF5, with scalar conditions, reads back the same.
    h5 = tmp_path / "maps.h5"
    with h5py.File(h5, "w") as f:
        f["maps"] = np.moveaxis(section.counts, -1, 0)
        f["channels"] = np.array(section.channels, dtype=h5py.string_dtype())
        f["dwell_ms"] = 20.0
        f["current_A"] = 1e-7
    again = read_map_stack(h5)
    np.testing.assert_array_equal(again.counts, section.counts)
    assert again.channels == section.channels and again.dwell_ms.shape == (len(section.channels),)


def test_qmap_recovers_phases_and_rates(section, exported, tmp_path):
    assert qmap(tmp_path, exported / "maps.npz", exported / "spots.csv") == 0
    out = tmp_path / "out"
    data, attrs = read_hdf5(out / "qmap.h5")
    phases = data["phases"]
    truth_idx = np.array([section.phases.index(p) for p in phases])
    found = truth_idx[data["phase_map"]]
    pure = section.fractions.max(-1) > 0.99
    assert np.mean(found[pure] == section.phase_map[pure]) > 0.99
    true_modal = section.modal_truth()
    for p, m in zip(phases, data["summary"]["modal"]):
        assert m == pytest.approx(true_modal[p], abs=0.03), p
    # Rates come back in cps/uA: quartz's Si agrees with the truth within the exposure
    # drift of the section (+-2 %) and mixed-pixel bias.
    k = phases.index("Qtz")
    si = data["clustering"]["channels"].index("Si")
    assert data["clustering"]["rate_cps_per_uA"][k, si] == pytest.approx(section.phase_rate()[0, 0], rel=0.04)
    for name in ("summary.csv", "phases.png", "config.resolved.yaml"):
        assert (out / name).stat().st_size > 0
    assert "input:" in attrs["config"]


def test_qmap_without_spots_needs_kmeans(exported, tmp_path, capsys):
    assert qmap(tmp_path, exported / "maps.npz") == 3
    assert "kmeans++" in capsys.readouterr().err
    assert qmap(tmp_path, exported / "maps.npz", None, "--set", "clustering.init=kmeans++",
                "--set", "clustering.extra_components=6", "--set", "output.plots=false") == 0


def write_bad_spots(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, match",
    [
        ("x_px,y_px,label\n1,2,Qtz\n", "missing column"),
        ("x_px,y_px,phase\n500,2,Qtz\n", "outside"),
        ("x_px,y_px,phase\n1.5,2,Qtz\n", "whole pixel"),
        ("x_px,y_px,phase,SiO2_wt\n1,2,Qtz,abc\n", "line 2, column 'SiO2_wt'"),
        ("x_px,y_px,phase\n1,2,\n", "empty phase"),
        ("x_px,y_px,phase\n", "no spots"),
    ],
)
def test_bad_spot_tables(tmp_path, text, match):
    with pytest.raises(InputError, match=match):
        read_spots(write_bad_spots(tmp_path / "s.csv", text), (96, 112))


def test_conflicting_spots_on_one_pixel(exported, tmp_path, capsys):
    spots = write_bad_spots(tmp_path / "s.csv", "x_px,y_px,phase\n3,4,Qtz\n3,4,Grt\n")
    assert qmap(tmp_path, exported / "maps.npz", spots) == 3
    err = capsys.readouterr().err
    assert "different phases" in err and "Traceback" not in err


def test_bad_map_stacks(section, tmp_path, capsys):
    assert qmap(tmp_path, tmp_path / "nope.npz") == 3
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, maps=np.zeros((2, 4, 4)), channels=np.array(["Si", "Al", "Fe"]), dwell_ms=1.0, current_A=1e-7)
    with pytest.raises(InputError, match="3 channel names for 2 maps"):
        read_map_stack(bad)
    np.savez(bad, maps=np.zeros((2, 4, 4)), channels=np.array(["Si", "Al"]))
    with pytest.raises(InputError, match="missing dwell_ms, current_A"):
        read_map_stack(bad)
    np.savez(bad, maps=np.zeros((2, 4, 4)), channels=np.array(["Si", "Al"]), dwell_ms=[1.0, 0.0], current_A=1e-7)
    with pytest.raises(InputError, match="dwell_ms"):
        read_map_stack(bad)
    (tmp_path / "maps.tif").write_bytes(b"II*\x00")
    with pytest.raises(InputError, match="unknown file type"):
        read_map_stack(tmp_path / "maps.tif")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(InputError, match="cannot be read"):
        read_map_stack(tmp_path / "trunc.npz")
    counts = section.counts.copy()
    counts[3, 3, 0] = np.nan
    n = len(section.channels)
    write_map_stack(tmp_path / "nan.npz", MapStack(counts, section.channels, np.full(n, 20.0), np.full(n, 1e-7)))
    write_spots(tmp_path / "sp.csv", [5], [5], ["Qtz"])
    assert qmap(tmp_path, tmp_path / "nan.npz", tmp_path / "sp.csv") == 3
    assert "NaN" in capsys.readouterr().err

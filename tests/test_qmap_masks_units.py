"""qmap: excluded pixels (input.mask, mask_value, mask_nan), NaN named by channel, and a
units attribute on every dataset of qmap.h5 and demo.h5."""

import h5py
import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.io import results
from jaxpetro.io.generic import MapStack, write_map_stack
from jaxpetro.io.results import read_hdf5
from jaxpetro.synthetic import make_thin_section
from jaxpetro.workflows.demo import export_section

ROWS, COLS = 64, 72


@pytest.fixture(scope="module")
def section():
    return make_thin_section(rows=ROWS, cols=COLS, n_spots=24, seed=4)


@pytest.fixture(scope="module")
def exported(section, tmp_path_factory):
    root = tmp_path_factory.mktemp("sec")
    export_section(section, root)
    return root


def qmap(out, maps, spots, *sets):
    args = ["qmap", "--out", str(out), "--quiet", "--set", f"input.maps={maps}", "--set", f"input.spots={spots}",
            "--set", "output.plots=false"]
    for s in sets:
        args += ["--set", s]
    return main(args)


def all_units(path):
    found = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj.attrs.get("units")) if isinstance(obj, h5py.Dataset)
                     else None)
    return found


def test_every_qmap_dataset_has_units(exported, tmp_path, monkeypatch):
    monkeypatch.setattr(results, "REQUIRE_UNITS", True)  # a dataset without units is an error
    line = "summary.profiles={g: [5, 5, 40, 30]}"
    assert qmap(tmp_path / "o", exported / "maps.npz", exported / "spots.csv", line, "summary.regions={a: [0, 9, 0, 9]}") == 0
    units = all_units(tmp_path / "o" / "qmap.h5")
    assert units and all(u is not None for u in units.values()), [k for k, u in units.items() if u is None]
    assert units["wt/SiO2"] == "wt%" and units["parameters/alpha"] == "wt%/(cps/uA)"
    assert units["parameters/gamma"] == "cps/uA" and units["membership"] == "1" and units["phases"] == ""
    assert units["clustering/loc"] == "counts" and units["clustering/rate_cps_per_uA"] == "cps/uA"
    assert units["profiles/g/distance_um"] == "um" and units["summary/densities"] == "g/cm3"


def test_every_demo_dataset_has_units(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "REQUIRE_UNITS", True)
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet", "--set", "synthetic.rows=40", "--set",
                 "synthetic.cols=40", "--set", "ptpath=false", "--set", "isocon=false", "--set", "output.plots=false"]) == 0
    for name in ("demo.h5", "qmap/qmap.h5"):
        units = all_units(tmp_path / "d" / name)
        assert all(u is not None for u in units.values()), (name, [k for k, u in units.items() if u is None])
    units = all_units(tmp_path / "d" / "demo.h5")
    assert units["truth/wt"] == "wt%" and units["maps/exposure"] == "s*uA" and units["summary/rmse/memberships/all"] == "wt%"


def nan_stack(section, tmp_path, hole):
    counts = np.array(section.counts)
    counts[hole] = np.nan  # a hole in every channel (e.g. a crop padded with NaN)
    n = len(section.channels)
    path = tmp_path / "nan.npz"
    write_map_stack(path, MapStack(counts, section.channels, np.full(n, section.dwell_ms),
                                   np.full(n, section.current_A), section.step_um))
    return path


def test_nan_names_the_channel_and_the_mask_keys(section, exported, tmp_path, capsys):
    hole = (slice(0, 4), slice(60, 72))
    maps = nan_stack(section, tmp_path, hole)
    assert qmap(tmp_path / "o", maps, exported / "spots.csv") == 3
    err = capsys.readouterr().err
    assert "Si (48 pixels)" in err and "BSE (48 pixels)" in err and "input.mask_nan" in err and "input.mask" in err
    assert "x_px=60, y_px=0" in err and "Traceback" not in err


@pytest.mark.parametrize("how", ["mask_nan", "npy", "csv", "png"])
def test_excluded_pixels_are_left_out(section, exported, tmp_path, how):
    hole = np.zeros((ROWS, COLS), bool)
    hole[:4, 60:] = True
    maps = nan_stack(section, tmp_path, (slice(0, 4), slice(60, 72)))
    sets = []
    if how == "mask_nan":
        sets.append("input.mask_nan=true")
    elif how == "npy":
        np.save(tmp_path / "m.npy", hole)
        sets.append(f"input.mask={tmp_path / 'm.npy'}")
    elif how == "csv":
        np.savetxt(tmp_path / "m.csv", hole.astype(int), fmt="%d", delimiter=",")
        sets.append(f"input.mask={tmp_path / 'm.csv'}")
    else:
        from skimage.io import imsave

        imsave(tmp_path / "m.png", (hole * 255).astype(np.uint8), check_contrast=False)
        sets.append(f"input.mask={tmp_path / 'm.png'}")
    assert qmap(tmp_path / how, maps, exported / "spots.csv", *sets) == 0
    data, _ = read_hdf5(tmp_path / how / "qmap.h5")
    assert np.all(data["phase_map"][hole] == -1) and np.all(data["phase_map"][~hole] >= 0)
    assert np.all(data["membership"][hole] == 0)
    np.testing.assert_allclose(data["membership"][~hole].sum(-1), 1.0, atol=1e-5)
    assert np.all(np.isnan(data["wt"]["SiO2"][hole])) and np.all(np.isfinite(data["wt"]["SiO2"][~hole]))
    assert data["summary"]["modal"].sum() == pytest.approx(1.0, abs=1e-6)  # over the analysed pixels
    assert np.all(np.isfinite(data["summary"]["bulk"]))
    # The analysed pixels get the same phases as an unmasked run of the same counts.
    if how == "npy":
        assert qmap(tmp_path / "ref", exported / "maps.npz", exported / "spots.csv") == 0
        ref, _ = read_hdf5(tmp_path / "ref" / "qmap.h5")
        assert np.mean(ref["phase_map"][~hole] == data["phase_map"][~hole]) > 0.995


def test_mask_value_and_bad_masks(section, exported, tmp_path, capsys):
    counts = np.array(section.counts)
    counts[10:12, 10:14, :-1] = 65535.0  # a no-data value in every X-ray channel
    n = len(section.channels)
    write_map_stack(tmp_path / "v.npz", MapStack(counts, section.channels, np.full(n, section.dwell_ms),
                                                 np.full(n, section.current_A), section.step_um))
    assert qmap(tmp_path / "v", tmp_path / "v.npz", exported / "spots.csv", "input.mask_value=65535") == 0
    data, _ = read_hdf5(tmp_path / "v" / "qmap.h5")
    assert np.all(data["phase_map"][10:12, 10:14] == -1) and np.sum(data["phase_map"] == -1) == 8
    np.save(tmp_path / "small.npy", np.zeros((3, 3)))
    assert qmap(tmp_path / "b", exported / "maps.npz", exported / "spots.csv", f"input.mask={tmp_path / 'small.npy'}") == 3
    assert "3 x 3 but the maps are 64 x 72" in capsys.readouterr().err
    assert qmap(tmp_path / "b", exported / "maps.npz", exported / "spots.csv", f"input.mask={tmp_path / 'no.npy'}") == 3
    assert "not found" in capsys.readouterr().err
    np.save(tmp_path / "all.npy", np.ones((ROWS, COLS)))
    assert qmap(tmp_path / "b", exported / "maps.npz", exported / "spots.csv", f"input.mask={tmp_path / 'all.npy'}") == 3
    assert "every pixel" in capsys.readouterr().err

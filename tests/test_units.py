"""The units contract (issue 10 item 9): every dataset of every HDF5 file a workflow writes has a
``units`` attribute, and :func:`jaxpetro.io.results.write_hdf5` refuses one without.

The default run checks the demo's qmap chain; the slow test walks the outputs of every workflow
(demo with section and isocon, qmap, ptpath, isocon, section, forward and batch) on shipped data."""

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from jaxpetro.cli import main
from jaxpetro.io import results
from jaxpetro.io.results import read_hdf5

REPO = Path(__file__).resolve().parents[1]


def datasets_without_units(folder: Path) -> tuple[list[Path], list[str]]:
    """(HDF5 files under ``folder``, 'file:dataset' of every dataset without a units attribute)."""
    files = sorted(folder.rglob("*.h5"))
    missing = []
    for path in files:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj, p=path: missing.append(f"{p.relative_to(folder)}:{name}")
                         if isinstance(obj, h5py.Dataset) and "units" not in obj.attrs else None)
    return files, missing


def test_write_hdf5_refuses_a_dataset_without_units_by_default(tmp_path):
    assert results.REQUIRE_UNITS is True
    with pytest.raises(ValueError, match=r"without units: maps/b"):
        results.write_hdf5(tmp_path / "x.h5", {"maps": {"a": np.ones(3), "b": np.ones(3)}}, units={"maps/a": "wt%"})
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("units") / "demo"
    return out


def test_every_dataset_of_the_demo_qmap_chain_has_units(small_demo, capsys):
    status = main(["demo", "--out", str(small_demo), "--quiet", "--set", "synthetic.rows=48", "--set",
                   "synthetic.cols=48", "--set", "section=false", "--set", "isocon=false", "--set", "output.plots=false"])
    assert status == 0
    err = capsys.readouterr().err
    files, missing = datasets_without_units(small_demo)
    assert {p.relative_to(small_demo).as_posix() for p in files} == {"demo.h5", "qmap/qmap.h5"}
    assert missing == []
    with h5py.File(small_demo / "qmap" / "qmap.h5") as f:
        assert f["wt/SiO2"].attrs["units"] == "wt%" and f["parameters/alpha"].attrs["units"] == "wt%/(cps/uA)"
        assert f["above_100/SiO2"].attrs["units"] == "1" and f["phases"].attrs["units"] == ""
    # the pixels above 100 wt% are stored, counted in checks/ and in the run's warning, all alike
    data, _ = read_hdf5(small_demo / "qmap" / "qmap.h5")
    si, flag = data["wt"]["SiO2"], data["above_100"]["SiO2"]
    n_above = int((si > 100).sum())
    assert n_above > 0  # 48 x 48 demo: quartz at ~99.5 wt% with ~2 wt% of counting noise
    assert int((flag > 0).sum()) == n_above == int(data["checks"]["above_100"]["SiO2"])
    assert int((flag == 2).sum()) == int(data["checks"]["above_100_beyond_noise"]["SiO2"])
    assert (flag[si <= 100] == 0).all()
    assert re.search(rf"pixels above 100 wt%: .*SiO2 {n_above} \({int((flag == 2).sum())} by more than 3 SE", err)


@pytest.mark.slow
def test_every_dataset_of_every_workflow_has_units(tmp_path):
    """Each workflow on shipped data or the demo's exported section (and the full demo), every
    HDF5 file walked."""
    cfg = REPO / "configs"
    out = tmp_path / "runs"
    assert main(["demo", "--out", str(out / "demo"), "--quiet"]) == 0  # 256 x 256: configs/qmap.yaml's regions
    jeol = out / "demo" / "section" / "jeol"
    maps = [f"map_dir={jeol / '.map' / '1'}", f"qnt_dir={jeol / '.qnt'}"]
    assert main(["qmap", str(cfg / "qmap.yaml"), "--out", str(out / "qmap"), "--quiet", "--set", "output.plots=false",
                 *(a for m in maps for a in ("--set", f"input.{m}"))]) == 0
    assert main(["section", str(cfg / "section.yaml"), "--out", str(out / "section"), "--quiet",
                 "--set", "output.plots=false", *(a for m in maps for a in ("--set", f"qmap.input.{m}"))]) == 0
    # ptpath on the garnet profile qmap cut (configs/ptpath.yaml's own profile leaves its table today)
    assert main(["ptpath", str(cfg / "chain_ptpath.yaml"), "--out", str(out / "ptpath"), "--quiet", "--set",
                 "output.plots=false", "--set", f"profile={out / 'qmap' / 'profiles' / 'garnet_garnet.csv'}"]) == 0
    assert main(["isocon", str(cfg / "isocon.yaml"), "--out", str(out / "isocon"), "--quiet",
                 "--set", "output.plots=false"]) == 0
    ref = json.loads((REPO / "tests" / "data" / "burnman_equilibrium.json").read_text())
    forward = {"bulk": {"oxides_wt": dict(ref["bulks"]["pelite_a"])}, "assemblage": ["g", "bi", "mu", "pl", "q"],
               "grid": {"P_kbar": [5.0, 8.0, 1.5], "T_C": [540.0, 600.0, 30.0]}, "output": {"plots": False}}
    (tmp_path / "forward.yaml").write_text(yaml.safe_dump(forward))
    assert main(["forward", str(tmp_path / "forward.yaml"), "--out", str(out / "forward"), "--quiet",
                 "--sensitivity"]) == 0
    isocon = yaml.safe_load((cfg / "isocon.yaml").read_text())
    isocon.pop("data")
    batch = {"workflow": "isocon", "inputs": [str(cfg / "data" / "wholerock_synthetic.csv")], "input_key": "data",
             "base": {**isocon, "output": {"plots": False}}}
    (tmp_path / "batch.yaml").write_text(yaml.safe_dump(batch))
    assert main(["batch", str(tmp_path / "batch.yaml"), "--out", str(out / "batch"), "--quiet"]) == 0
    files, missing = datasets_without_units(out)
    assert missing == []
    found = {p.relative_to(out).parts[0] for p in files}
    assert found == {"demo", "qmap", "ptpath", "isocon", "section", "forward", "batch"}, found

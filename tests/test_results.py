"""Result files: HDF5 round trip, atomic writes, output directory checks."""

import csv
from datetime import datetime

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro import __version__
from jaxpetro.errors import InputError, OutputError
from jaxpetro.io import results
from jaxpetro.io.results import (
    atomic_write,
    prepare_out_dir,
    read_hdf5,
    run_attrs,
    write_csv,
    write_hdf5,
    write_resolved_config,
    write_text,
)


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_hdf5_round_trip_groups_strings_attrs(tmp_path):
    wt = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    datasets = {
        "maps": {"wt_pct": wt, "labels": jnp.arange(20).reshape(4, 5)},
        "phases/names": ["garnet", "biotite", "quartz", "plagioclase α"],
        "phases/modes": np.array([0.1, 0.2, 0.3, 0.4]),
        "summary": {"loglik": -12.5, "converged": np.bool_(True), "note": "été"},
        "empty": {},
    }
    attrs = run_attrs("seed: 3\n", seed=3)
    path = write_hdf5(tmp_path / "run.h5", datasets, attrs, units={"*": "1"})
    data, got_attrs = read_hdf5(path)

    np.testing.assert_array_equal(data["maps"]["wt_pct"], wt)
    assert data["maps"]["wt_pct"].dtype == np.float32
    np.testing.assert_array_equal(data["maps"]["labels"], np.arange(20).reshape(4, 5))
    assert data["phases"]["names"] == datasets["phases/names"]
    np.testing.assert_allclose(data["phases"]["modes"], [0.1, 0.2, 0.3, 0.4])
    assert data["summary"]["loglik"] == -12.5 and data["summary"]["converged"]
    assert data["summary"]["note"] == "été"
    assert data["empty"] == {}
    assert got_attrs == attrs
    assert leftovers(tmp_path) == []


def test_run_attrs_content():
    attrs = run_attrs("a: 1\n", seed=5)
    assert attrs["config"] == "a: 1\n" and attrs["seed"] == 5
    assert attrs["jaxpetro_version"] == __version__ and attrs["backend"] in {"cpu", "gpu", "tpu", "cuda", "rocm"}
    assert datetime.fromisoformat(attrs["created"]).utcoffset().total_seconds() == 0


def test_arrays_from_64_kib_are_compressed_and_chunked(tmp_path):
    arrays = {"big": np.zeros((512, 512)), "map": np.full((128, 128), np.nan, np.float32),  # 64 KiB
              "under": np.zeros(8191), "small": np.zeros(10)}  # 8191 float64 = 64 KiB - 8 bytes
    path = write_hdf5(tmp_path / "big.h5", arrays, units={"*": "1"})
    with h5py.File(path) as f:
        for name in ("big", "map"):
            assert f[name].compression == "gzip" and f[name].compression_opts == 1 and f[name].chunks
            assert f[name].shuffle
        assert f["under"].compression is None and f["small"].compression is None
        assert f["map"].id.get_storage_size() < 0.05 * arrays["map"].nbytes  # a NaN map shrinks 20-fold at least
    data, _ = read_hdf5(path)
    assert np.isnan(data["map"]).all() and data["map"].dtype == np.float32


@pytest.mark.parametrize(
    "datasets, error",
    [
        ({"a": object()}, TypeError),
        ({"a": np.zeros(2), "a/b": np.zeros(2)}, ValueError),
        ({"a/b": np.zeros(2), "a": {"b": np.zeros(2)}}, ValueError),
        ({"a//b": 1}, ValueError),
    ],
)
def test_bad_datasets_fail_before_writing(tmp_path, datasets, error):
    with pytest.raises(error):
        write_hdf5(tmp_path / "x.h5", datasets)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = write_hdf5(tmp_path / "run.h5", {"x": np.arange(3)}, {"version": "old"}, units={"*": "1"})
    real_create = h5py.Group.create_dataset
    calls = []

    def failing_create(self, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:  # the first dataset is already in the temporary file
            raise OSError(28, "No space left on device")
        return real_create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create)
    with pytest.raises(OutputError, match="run.h5") as info:
        write_hdf5(path, {"x": np.arange(5), "y": np.ones(2)}, {"version": "new"}, units={"*": "1"})
    assert "unchanged" in str(info.value)
    data, attrs = read_hdf5(path)
    np.testing.assert_array_equal(data["x"], np.arange(3))
    assert attrs == {"version": "old"} and set(data) == {"x"}
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["run.h5"]


def test_interrupt_mid_write_cleans_up_and_is_not_wrapped(tmp_path, monkeypatch):
    write_text(tmp_path / "t.txt", "old")

    def interrupted(path):
        path.write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "_fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text(tmp_path / "t.txt", "new")
    assert (tmp_path / "t.txt").read_text() == "old" and leftovers(tmp_path) == []


def test_atomic_write_with_custom_writer(tmp_path):
    target = tmp_path / "fig.png"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"png-1"))

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("renderer crashed")

    with pytest.raises(OutputError, match="fig.png.*renderer crashed"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"png-1" and leftovers(tmp_path) == []


def test_read_missing_or_corrupt_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_hdf5(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputError, match="bad.h5"):
        read_hdf5(bad)


def test_prepare_out_dir_creates_nested(tmp_path):
    out = prepare_out_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


def test_unwritable_out_dir_is_output_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")  # a file where a directory is needed fails even for root
    for out in (blocker, blocker / "sub"):
        with pytest.raises(OutputError, match="file.txt"):
            prepare_out_dir(out)


def test_write_into_missing_directory_is_output_error(tmp_path):
    with pytest.raises(OutputError, match="nowhere"):
        write_text(tmp_path / "nowhere" / "t.txt", "x")


def test_text_and_resolved_config(tmp_path):
    path = write_resolved_config(tmp_path, "seed: 1\nstep: 2 µm\n")
    assert path.name == "config.resolved.yaml"
    assert path.read_text(encoding="utf-8") == "seed: 1\nstep: 2 µm\n"
    write_text(path, "seed: 2\n")
    assert path.read_text() == "seed: 2\n" and leftovers(tmp_path) == []


def test_csv_floats_are_lossless(tmp_path):
    values = [0.1, 1 / 3, 1e-300, np.float32(1 / 3), jnp.float32(0.1), 2.5e20]
    path = write_csv(tmp_path / "t.csv", ["name", "value", "n"],
                     [[f"v{i}", v, np.int64(i)] for i, v in enumerate(values)] + [["a,b", 1.0, 7]])
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["name", "value", "n"]
    assert [float(r[1]) for r in rows[1:4]] == values[:3]
    assert rows[4][1] == "0.33333334" and rows[5][1] == "0.1"
    assert float(rows[6][1]) == 2.5e20 and rows[7] == ["a,b", "1.0", "7"]


def test_csv_rejects_ragged_rows(tmp_path):
    with pytest.raises(ValueError, match="row 1"):
        write_csv(tmp_path / "t.csv", ["a", "b"], [[1, 2], [3]])
    assert list(tmp_path.iterdir()) == []


def test_every_dataset_gets_its_units(tmp_path, monkeypatch):
    import h5py

    from jaxpetro.io import results

    path = results.write_hdf5(tmp_path / "u.h5", {"wt": {"SiO2": np.ones(3), "SiO2_sd": np.ones(3)}, "n": 3, "names": ["a"]},
                              units={"wt/*": "wt%", "wt/*_sd": "wt% (1 sd)", "n": "1", "names": ""})
    with h5py.File(path) as f:
        assert f["wt/SiO2"].attrs["units"] == "wt%" and f["wt/SiO2_sd"].attrs["units"] == "wt% (1 sd)"
        assert f["n"].attrs["units"] == "1" and f["names"].attrs["units"] == ""
    monkeypatch.setattr(results, "REQUIRE_UNITS", True)
    with pytest.raises(ValueError, match="without units: b"):
        results.write_hdf5(tmp_path / "v.h5", {"a": 1, "b": 2}, units={"a": "1"})
    assert not (tmp_path / "v.h5").exists()

"""The fast writers of qmap's large outputs (io.results): text matrices identical to numpy's
``"%.4g"`` text, HDF5 maps compressed chunk by chunk that read back exactly."""

import io

import h5py
import numpy as np

from jaxpetro.io.results import read_hdf5, write_hdf5, write_matrix


def test_write_matrix_equals_savetxt(tmp_path):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 120, 40000), 10 ** rng.uniform(-12, 6, 40000), -(10 ** rng.uniform(-6, 3, 999)),
                             [0.0, np.nan, np.inf, -np.inf, 9.99951, 9.9995, 0.001, 1e-5, 100.0, 1e5, 99995.0, 0.5]])
    image = values[: (values.size // 31) * 31].astype(np.float32).reshape(-1, 31)
    for arr in (image, np.zeros((3, 4)), np.full((2, 5), np.nan), np.array([[5e7, 0.0]])):
        expected = io.StringIO()
        np.savetxt(expected, arr, fmt="%.4g", delimiter=",")
        write_matrix(tmp_path / "m.csv", arr)
        assert (tmp_path / "m.csv").read_text() == expected.getvalue()
    back = np.loadtxt(tmp_path / "m.csv", delimiter=",", ndmin=2)
    np.testing.assert_array_equal(back, [[5e7, 0.0]])


def test_chunked_hdf5_reads_back_and_skips_fill_chunks(tmp_path):
    rng = np.random.default_rng(1)
    phase_map = rng.normal(size=(700, 530)).astype(np.float32)
    phase_map[:, :300] = np.nan  # a phase's structural map: NaN outside its pixels
    mask = np.zeros((700, 530, 3), np.uint8)
    mask[650:, 500:] = 1
    series = rng.normal(size=100003)
    write_hdf5(tmp_path / "r.h5", {"a": phase_map, "b": mask, "c": series}, units={"*": "1"})
    data, _ = read_hdf5(tmp_path / "r.h5")
    for name, arr in (("a", phase_map), ("b", mask), ("c", series)):
        np.testing.assert_array_equal(data[name], arr)
        assert data[name].dtype == arr.dtype
    with h5py.File(tmp_path / "r.h5") as f:
        a = f["a"]
        assert a.compression == "gzip" and a.shuffle and a.chunks == (256, 256)
        # 3 x 3 tiles; the first column of tiles (cols 0-255) is all NaN and not stored
        assert a.id.get_num_chunks() == 6
        assert f["b"].id.get_num_chunks() == 1  # only the tile holding the ones

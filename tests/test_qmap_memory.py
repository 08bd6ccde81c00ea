"""The memory-bounded paths of qmap (issue 14 item 8) give the same numbers as the whole-map ones:
quantification in blocks of pixels, the total's SE and the text matrices in blocks of rows."""

import jax
import numpy as np
import pytest

from jaxpetro.config.qmap import QuantifyConfig
from jaxpetro.io import results as io_results
from jaxpetro.models.xray import Calibration, QuantifyOptions, quantify, tile_index
from jaxpetro.workflows import qmap


def _calibration(rng, n_el, k, tiles):
    pos = lambda *s: rng.uniform(0.5, 2.0, s)  # noqa: E731
    return Calibration(alpha=pos(n_el, k) * 1e-2, alpha_se=pos(n_el, k) * 1e-4, beta=pos(tiles, n_el),
                       beta_se=pos(tiles, n_el) * 1e-2, gamma=pos(n_el, k), gamma_se=pos(n_el, k) * 1e-2,
                       n_spots=np.ones((n_el, k), np.int32), n_beta=np.ones((tiles, n_el), np.int32),
                       alpha_source=np.zeros((n_el, k), np.int32))


@pytest.mark.parametrize("tiles", [(1, 1), (2, 3)])
def test_blocked_quantification_equals_one_call(tiles):
    """qmap.quantification in blocks of 16 chunks (the last one padded) is bit-identical to
    one quantify() call over all pixels, with excluded pixels NaN."""
    rng = np.random.default_rng(3)
    rows, cols, n_ch, k = 61, 53, 5, 3  # 3233 pixels: 4 blocks of 16 x 50, the last one short
    counts = rng.poisson(rng.uniform(5, 200, (1, 1, n_ch)), (rows, cols, n_ch)).astype(np.float32)
    exposure = rng.uniform(0.5, 2.0, n_ch)
    chan = [0, 2, 3, 4]  # channel 1 not quantified
    weights = rng.dirichlet(np.ones(k), (rows, cols)).astype(np.float32)
    valid = rng.random((rows, cols)) > 0.1
    n_tiles = tiles[0] * tiles[1]
    cal = _calibration(rng, len(chan), k, n_tiles)
    corrected = qmap.Corrected(counts, exposure, list(range(n_ch)), [], valid)
    stage = qmap.CalibrationStage(("a",) * 4, ("A",) * 4, chan, cal, True)
    cfg = QuantifyConfig(chunk_size=50, beta_tiles=tiles)
    with jax.enable_x64(True):
        got = qmap.quantification(corrected, stage, weights, cfg)
        rate = counts[..., chan].reshape(-1, len(chan)) / exposure[chan].astype(np.float32)
        tile = tile_index(rows, cols, tiles).reshape(-1) if n_tiles > 1 else None
        ref = quantify(rate, weights.reshape(-1, k), exposure[chan], cal, tile, QuantifyOptions(chunk_size=50))
    for g, r in zip(got, ref):
        r = np.array(r).reshape(rows, cols, -1)
        r[~valid] = np.nan
        assert g.dtype == np.float32 and g.shape == (rows, cols, len(chan))
        np.testing.assert_array_equal(g, r)
    assert np.isfinite(got.wt[valid]).all() and (got.se[valid] > 0).all()


def test_total_se_in_row_blocks():
    rng = np.random.default_rng(0)
    se = (rng.random((530, 41, 14)) * 10.0 ** rng.integers(-3, 2, (530, 41, 1))).astype(np.float32)
    se[3, 4, 5] = np.nan
    whole = np.sqrt(np.sum(np.asarray(se, np.float64) ** 2, axis=-1))
    np.testing.assert_array_equal(qmap._total_se(se, block_rows=37), whole)


def test_write_matrix_in_row_blocks_is_the_whole_text(tmp_path, monkeypatch):
    """The text of a matrix written in blocks of rows is that of one block, "%.4g" per cell."""
    rng = np.random.default_rng(1)
    image = (rng.standard_normal((23, 17)) * 10.0 ** rng.integers(-6, 4, (23, 17))).astype(np.float32)
    image[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    whole = io_results._matrix_bytes(np.asarray(image, np.float64), 4)
    monkeypatch.setattr(io_results, "_MATRIX_BLOCK_VALUES", 40)  # 2 rows per block
    io_results.write_matrix(tmp_path / "m.csv", image)
    text = (tmp_path / "m.csv").read_bytes()
    assert text == whole
    cells = [c for line in text.decode().splitlines() for c in line.split(",")]
    assert cells[:4] == ["nan", "inf", "-inf", "0"]
    assert cells[4:] == [f"{v:.4g}" for v in image.reshape(-1)[4:].astype(np.float64)]

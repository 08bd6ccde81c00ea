"""Oxide map figures (issue 10 item 10): pixels above 100 wt% flagged, not drawn on the colour
scale; per-phase colour ranges that show a minor phase's zoning next to a major phase; the
``output.oxide_scale`` key; qmap's count of the flagged pixels."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from jaxpetro.config import load_config
from jaxpetro.config.qmap import QmapConfig, QmapOutputConfig
from jaxpetro.errors import ConfigError
from jaxpetro.io import plots
from jaxpetro.workflows import qmap


@pytest.fixture
def figures(monkeypatch):
    """The Figure objects the plotting functions save (saved for real as well)."""
    saved = []
    real = plots.save_figure

    def keep(fig, path, dpi=120):
        saved.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    return saved


def _colour_pixels(path, colour: str) -> int:
    """Pixels of the PNG at ``path`` in ``colour`` (exactly, to 1/255)."""
    rgb = mpimg.imread(path)[..., :3]
    return int(np.all(np.abs(rgb - np.array(to_rgb(colour))) < 1.5 / 255, axis=-1).sum())


def test_above_limit_splits_pixels_within_and_beyond_noise():
    image = np.array([[99.0, 100.0, 100.5, 104.0], [np.nan, 101.0, 130.0, 50.0]])
    sd = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.2, 5.0, 1.0]])
    within, beyond = plots.above_limit(image, 100.0, sd, n_sd=3.0)
    # 100.5: 0.5 SE above; 104: 4 SE; 101: 5 SE (sd 0.2); 130: 6 SE; 100 itself is not above
    np.testing.assert_array_equal(within, [[False, False, True, False], [False, False, False, False]])
    np.testing.assert_array_equal(beyond, [[False, False, False, True], [False, True, True, False]])
    w, b = plots.above_limit(image, 100.0)  # without SE every pixel above the limit is "beyond"
    assert not w.any() and b.sum() == 4


def test_scalar_map_flags_pixels_above_100_and_stops_the_scale_there(tmp_path, figures):
    rng = np.random.default_rng(0)
    image = rng.uniform(40.0, 60.0, (60, 80)).astype(np.float32)
    image[:30, :40] = 99.0  # a quartz-like region just under 100
    image[2:5, 2:5] = 100.4  # 9 pixels above 100 within 1 SE
    image[10:14, 10:14] = 109.0  # 16 pixels 9 SE above
    image[50, 70] = np.nan
    sd = np.ones_like(image)
    path = plots.scalar_map_figure(tmp_path / "SiO2.png", image, title="SiO2 (wt%)", step_um=2.0, limit=100.0, sd=sd)
    ax = figures[0].axes[0]
    values, flags = ax.images[0], ax.images[1]
    lo, hi = values.get_clim()
    assert hi <= 100.0 and lo < 41.0  # the scale ends at 100: no colour of the bar means "109 wt%"
    code = np.ma.filled(flags.get_array(), 0)
    assert (code == 1).sum() == 9 and (code == 2).sum() == 16
    assert np.ma.getmaskarray(values.get_array())[10:14, 10:14].all()  # not drawn on the colour scale too
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["> 100 wt% within 3 SE: 9 px", "> 100 wt% by more than 3 SE: 16 px"]
    within, beyond = plots.FLAG_COLOURS["viridis"]
    assert _colour_pixels(path, beyond) > 16 and _colour_pixels(path, within) > 9  # a map pixel is > 1 PNG pixel

    clean = plots.scalar_map_figure(tmp_path / "MgO.png", np.clip(image, 0, 60), title="MgO (wt%)", limit=100.0,
                                    sd=sd)
    assert figures[1].axes[0].get_legend() is None and len(figures[1].axes[0].images) == 1
    assert _colour_pixels(clean, beyond) == 0


def test_a_flagged_pixel_survives_the_reduction_of_a_large_map(figures, tmp_path):
    image = np.full((1700, 1700), 50.0, np.float32)  # reduced 3-fold for display
    image[1001, 433] = 101.0  # one pixel, beyond 3 SE of 0.1
    plots.scalar_map_figure(tmp_path / "big.png", image, title="x", limit=100.0, sd=np.full_like(image, 0.1))
    code = np.ma.filled(figures[0].axes[0].images[1].get_array(), 0)
    assert code.shape == (566, 566) and code[1001 // 3, 433 // 3] == 2 and (code > 0).sum() == 1


def test_phase_panels_show_a_minor_phase_zoning_next_to_a_major_phase(tmp_path, figures):
    """Garnet-like MnO (1 -> 2 wt% core to rim) next to ilmenite at 45 wt%: on one scale the zoning
    spans 2 % of the colour bar, on the garnet's own panel nearly all of it."""
    rows, cols = 40, 60
    image = np.full((rows, cols), 0.05, np.float32)  # quartz: no MnO
    grt = np.zeros((rows, cols), bool)
    grt[5:35, 5:35] = True
    rr, cc = np.mgrid[:rows, :cols]
    radius = np.hypot(rr - 19.5, cc - 19.5)
    image[grt] = (1.0 + radius[grt] / radius[grt].max()).astype(np.float32)  # 1 wt% core -> 2 wt% rim
    ilm = np.zeros((rows, cols), bool)
    ilm[10:30, 42:58] = True
    image[ilm] = 45.0
    plots.phase_scaled_map_figure(tmp_path / "MnO.png", image, [("Grt", grt), ("Ilm", ilm)], title="MnO (wt%)",
                                  limit=100.0, sd=np.full_like(image, 0.1))
    fig = figures[0]
    axes = [ax for ax in fig.axes if ax.get_title()]  # the map panels (colour bars have no title)
    assert [ax.get_title() for ax in axes] == ["all pixels", "Grt (900 px)", "Ilm (320 px)"]
    lo_all, hi_all = axes[0].images[-1].get_clim()
    lo_grt, hi_grt = axes[1].images[-1].get_clim()
    assert (hi_all - lo_all) > 40.0  # 1 wt% of zoning is ~2 % of this range
    assert 1.0 <= lo_grt < 1.1 and 1.9 < hi_grt <= 2.0  # the 1-99 percentile range of the zoning itself
    shown = axes[1].images[-1].get_array()
    assert np.ma.getmaskarray(shown)[~grt].all() and not np.ma.getmaskarray(shown)[grt].any()
    assert fig.legends == []  # nothing above 100 wt%: no flag legend


def test_output_oxide_scale_key():
    cfg = load_config({"input": {"maps": "m.npz"}, "output": {"oxide_scale": "phase"}}, QmapConfig)
    assert cfg.output.oxide_scale == "phase" and cfg.output.dpi == 120
    assert load_config({"input": {"maps": "m.npz"}}, QmapConfig).output.oxide_scale == "percentile"
    with pytest.raises(ConfigError, match=r"output\.oxide_scale.*'percentile', 'phase'"):
        load_config({"input": {"maps": "m.npz"}, "output": {"oxide_scale": "phases"}}, QmapConfig)


def _section():
    """Two oxides on a 30 x 40 map: quartz (SiO2 ~100, noisy) left, a Mn-bearing phase right."""
    rng = np.random.default_rng(3)
    rows, cols = 30, 40
    qtz = np.zeros((rows, cols), bool)
    qtz[:, :20] = True
    wt = np.zeros((rows, cols, 2), np.float32)
    wt[..., 0] = np.where(qtz, 99.0, 37.0) + rng.normal(0, 1.0, (rows, cols))
    wt[:, 20:, 1] = 3.0 + np.linspace(-0.5, 0.5, 20)  # zoned 2.5 -> 3.5 wt%; quartz has none
    wt[0, 0, 0] = 108.0  # one pixel 9 SE above 100
    se = np.ones_like(wt)
    se[..., 1] = 0.05
    lod = np.full_like(wt, 0.3)
    fractions = np.stack([qtz, ~qtz], -1).astype(np.float32)
    return wt, se, lod, fractions


def test_qmap_counts_and_maps_pixels_above_100():
    wt, se, lod, _ = _section()
    above = qmap._above_100(wt, se, ["SiO2", "MnO"])
    code, n, m = above["SiO2"]
    assert n == int((wt[..., 0] > 100).sum()) and m == 1 and code[0, 0] == 2
    assert ((code == 1) == ((wt[..., 0] > 100) & (wt[..., 0] <= 103))).all()
    assert above["MnO"][1] == 0
    # the total's SE: sqrt(1^2 + 0.05^2) per pixel
    total = wt.sum(-1)
    n_beyond = int((total - 100 > 3 * np.sqrt(1.0025)).sum())
    assert above["total"][1] == int((total > 100).sum()) and above["total"][2] == n_beyond


def test_qmap_phase_scale_gives_panels_to_the_phases_that_hold_the_oxide(tmp_path, figures):
    wt, se, lod, fractions = _section()
    valid = np.ones(wt.shape[:2], bool)
    qmap._oxide_figures(tmp_path, QmapOutputConfig(oxide_scale="phase"), wt, se, lod, ["SiO2", "MnO"],
                        ["Qtz", "Sps"], fractions, valid, 2.0)
    titles = [[ax.get_title() for ax in fig.axes if ax.get_title()] for fig in figures]
    # SiO2: both phases hold it; MnO: quartz's 0 wt% is below its detection limit, no panel
    assert titles == [["all pixels", "Qtz (600 px)", "Sps (600 px)"], ["all pixels", "Sps (600 px)"],
                      ["analytical total (wt%)"]]
    assert {p.name for p in tmp_path.iterdir()} == {"SiO2.png", "MnO.png", "total.png"}
    sps_lo, sps_hi = [ax for ax in figures[1].axes if ax.get_title().startswith("Sps")][0].images[-1].get_clim()
    assert 2.4 < sps_lo < 2.6 and 3.4 < sps_hi < 3.6  # its own +-0.5 wt% zoning, not 0-3.5
    legend = [t.get_text() for t in figures[0].legends[0].get_texts()]
    assert legend[1] == "> 100 wt% by more than 3 SE: 1 px"

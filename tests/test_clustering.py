"""Phase clustering of the synthetic thin section: recovery against the known truth."""

import numpy as np
import pytest

from jaxpetro.errors import InputError
from jaxpetro.models.clustering import ClusteringOptions, adjusted_rand_index, cluster_map, compare_components
from jaxpetro.synthetic import make_thin_section


@pytest.fixture(scope="module")
def section():
    return make_thin_section(rows=128, cols=128, n_spots=36, seed=3)


def run(sec, **kw):
    bse = [sec.channels.index("BSE")]
    return cluster_map(sec.counts, sec.exposure, phases=sec.phases, anchors=sec.anchor_labels(),
                       electron_channels=bse, options=ClusteringOptions(**kw))


def test_poisson_recovers_phase_map(section):
    res = run(section)
    truth = section.phase_map
    pure = section.fractions.max(-1) > 0.99
    assert bool(res.status.converged)
    # Pure pixels are unambiguous at these counts; boundary pixels are genuinely mixed
    # (their dominant phase holds >= 50 %) so a few percent of them may go either way.
    assert np.mean(res.phase_map[pure] == truth[pure]) > 0.995
    assert np.mean(res.phase_map == truth) > 0.95
    assert adjusted_rand_index(res.phase_map, truth) > 0.9
    modal, true = res.modal(), section.modal_truth()
    for phase in section.phases:
        assert modal[phase] == pytest.approx(true[phase], abs=0.03), phase
    m = res.memberships
    assert m.shape == (128, 128, len(section.phases))
    np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-5)
    # Spot pixels are anchors: their membership is exactly their label.
    sp = section.spots
    np.testing.assert_array_equal(m[sp.row, sp.col].argmax(-1), sp.phase_index())
    assert np.all(m[sp.row, sp.col].max(-1) == 1.0)


def test_poisson_rates_within_counting_noise_on_pure_section(section):
    """Same geometry, rates and exposure as the section, but every pixel pure: the
    fitted phase rates must agree with the truth within Poisson counting noise."""
    rng = np.random.default_rng(0)
    truth = section.phase_rate()  # cps/uA per phase and element
    lam = truth[section.phase_map] * section.exposure[..., None]
    counts = section.counts.copy()
    counts[..., : len(section.elements)] = rng.poisson(lam)
    res = cluster_map(counts, section.exposure, phases=section.phases, anchors=section.anchor_labels(),
                      electron_channels=[section.channels.index("BSE")], options=ClusteringOptions(tol=1e-9))
    for k, phase in enumerate(section.phases):
        if phase == "Grt":
            continue  # zoned: one component's rate is a mean over the zoning, not a truth
        n_exp = section.exposure[section.phase_map == k].sum()  # s uA of that phase
        se = np.sqrt(truth[k] / n_exp)
        assert np.all(np.abs(res.params.loc[k] - truth[k]) < 5 * se), phase


def test_mixed_pixels_bias_rates_only_moderately(section):
    """On the real section ~20 % of pixels are mixed; membership-weighted rates of a
    phase's major channels (>= 30 % of the highest phase rate) stay within 15 %.
    Trace channels are dominated by neighbours' signal: that is what the linear mixing
    model of the quantification workflow is for."""
    res = run(section)
    truth = section.phase_rate()
    major = truth / truth.max(axis=0) >= 0.3
    rel = np.abs(res.params.loc - truth) / truth
    assert np.all(rel[major] < 0.15), rel[major].max()


def test_gaussian_model_clusters_too(section):
    res = run(section, model="gaussian", covariance="full")
    pure = section.fractions.max(-1) > 0.99
    assert np.mean(res.phase_map[pure] == section.phase_map[pure]) > 0.99


def test_kmeanspp_without_spots_finds_the_partition(section):
    bse = [section.channels.index("BSE")]
    res = cluster_map(section.counts, section.exposure, electron_channels=bse, seed=1,
                      options=ClusteringOptions(init="kmeans++", extra_components=6))
    assert adjusted_rand_index(res.phase_map, section.phase_map) > 0.85
    assert res.names == tuple(f"extra{i}" for i in range(1, 7))


def test_same_seed_same_numbers(section):
    bse = [section.channels.index("BSE")]
    opts = ClusteringOptions(init="kmeans++", extra_components=4)
    a = cluster_map(section.counts, section.exposure, electron_channels=bse, seed=7, options=opts)
    b = cluster_map(section.counts, section.exposure, electron_channels=bse, seed=7, options=opts)
    np.testing.assert_array_equal(a.memberships, b.memberships)


def test_compare_components_table(section):
    bse = [section.channels.index("BSE")]
    table = compare_components(section.counts, section.exposure, [3, 6], electron_channels=bse,
                               options=ClusteringOptions(max_iter=100))
    assert [r.k for r in table] == [3, 6]
    assert table[1].bic < table[0].bic  # six phases are there: six beat three


def test_adjusted_rand_index_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 500)
    b = np.where(rng.random(500) < 0.7, a, rng.integers(0, 4, 500))
    assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index(a, (a + 3) % 5) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda c, e, a: (np.where(np.arange(c.size).reshape(c.shape) == 5, np.nan, c), e, a), "NaN"),
        (lambda c, e, a: (c - 10.0, e, a), "negative"),
        (lambda c, e, a: (c, e[:-1], a), "exposure: shape"),
        (lambda c, e, a: (c, np.zeros_like(e), a), "positive exposure"),
        (lambda c, e, a: (c, e, a[:-1]), "anchors: shape"),
        (lambda c, e, a: (c, e, np.where(a >= 0, 99, a)), "anchors: labels"),
        (lambda c, e, a: (c[0], e, a), "shape \\(rows, cols, channels\\)"),
    ],
)
def test_bad_inputs_raise_input_error(section, mutate, match):
    counts, expo, anchors = mutate(section.counts.copy(), section.exposure.copy(), section.anchor_labels())
    with pytest.raises(InputError, match=match):
        cluster_map(counts, expo, phases=section.phases, anchors=anchors)


def test_anchors_required_for_anchor_init(section):
    with pytest.raises(InputError, match="kmeans\\+\\+"):
        cluster_map(section.counts, section.exposure, phases=section.phases, anchors=None)


def test_options_are_the_config_section():
    """ClusteringOptions has the clustering config keys (and their defaults) as fields."""
    import dataclasses

    from jaxpetro.config.qmap import ClusteringConfig

    config = ClusteringConfig()
    opts = ClusteringOptions.from_config(config)
    fields = {f.name for f in dataclasses.fields(ClusteringOptions)}
    assert fields == {f.name for f in dataclasses.fields(ClusteringConfig)} - {"phases"}
    for name in fields:
        assert getattr(opts, name) == getattr(config, name), name
    assert ClusteringOptions(model="gaussian", covariance="diag").mixture_options().family == "diag"

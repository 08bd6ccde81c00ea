"""isocon on real lab tables: units in headers and units rows, qualifiers, prior mobility weights,
Grant's linear isocon and intervals that contain the point estimate (issue 10, items 16-20)."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpetro.errors import InputError
from jaxpetro.io.wholerock import (ABOVE_LIMIT, BELOW_LIMIT, BELOW_UNKNOWN, MEASURED, MISSING, read_wholerock,
                                   split_unit)
from jaxpetro.models import massbalance as mb


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("header,expected", [
    ("SiO2 (wt%)", ("SiO2", "wt%")), ("Zr [ppm]", ("Zr", "ppm")), ("SiO2_wt%", ("SiO2", "wt%")),
    ("Zr_ppm", ("Zr", "ppm")), ("Au ppb", ("Au", "ppb")), ("Al2O3 (Wt.%)", ("Al2O3", "wt%")),
    ("Zr", ("Zr", None)), ("Fe2O3_T", ("Fe2O3_T", None)), ("Zr_sd", ("Zr_sd", None)),
])
def test_split_unit(header, expected):
    assert split_unit(header) == expected


def test_units_from_headers_and_units_row(tmp_path):
    """Header units win over 'auto'; a units row under the header counts too; values go to ppm."""
    path = write(tmp_path / "t.csv",
                 "Sample,SiO2 (wt%),Zr [ppm],Nb_ppm,Au,Au_sd\n"
                 "units,,,,ppb,ppb\n"
                 "a,50,100,9,12,2\n"
                 "b,48,110,10,14,2\n")
    t = read_wholerock(path)
    assert t.elements == ("SiO2", "Zr", "Nb", "Au")
    assert t.units == ("wt%", "ppm", "ppm", "ppb")
    np.testing.assert_allclose(t.values[0], [50e4, 100.0, 9.0, 12e-3])
    np.testing.assert_allclose(t.sd[0, 3], 2e-3)
    assert t.samples == ("a", "b")  # the units row is not a sample


def test_a_single_unit_for_every_column(tmp_path):
    path = write(tmp_path / "t.csv", "sample,SiO2,TiO2,Zr\na,50,1.5,100\nb,48,1.4,110\n")
    t = read_wholerock(path, "ppm")
    assert t.units == ("ppm", "ppm", "ppm")
    np.testing.assert_allclose(t.values[0], [50.0, 1.5, 100.0])


def test_a_config_unit_contradicting_the_header_is_an_error(tmp_path):
    path = write(tmp_path / "t.csv", "sample,SiO2 (wt%),TiO2,Zr\na,50,1.5,100\nb,48,1.4,110\n")
    with pytest.raises(InputError, match=r"SiO2 \(wt%\).*ppm.*factor 10000"):
        read_wholerock(path, {"SiO2": "ppm"})
    bad_row = write(tmp_path / "u.csv", "sample,SiO2 (wt%),TiO2,Zr\nunits,ppm,wt%,ppm\na,50,1.5,100\n")
    with pytest.raises(InputError, match="units row"):
        read_wholerock(bad_row)


def test_lab_qualifiers_parse_to_values_or_imputed_cells(tmp_path):
    path = write(tmp_path / "t.csv",
                 "sample,SiO2,Zr,Au,Cu,Th\n"
                 "a,50,<0.5,n.d.,>10000,^<.0000\n"
                 "b,48,b.d.l.,na,*120,tr\n"
                 "c,47,110,is,< 2,12\n")
    t = read_wholerock(path)
    assert t.status[0].tolist() == [MEASURED, BELOW_LIMIT, BELOW_UNKNOWN, ABOVE_LIMIT, BELOW_UNKNOWN]
    assert t.status[1].tolist() == [MEASURED, BELOW_UNKNOWN, MISSING, MEASURED, BELOW_UNKNOWN]
    assert t.status[2].tolist() == [MEASURED, MEASURED, MISSING, BELOW_LIMIT, MEASURED]
    assert t.limit[0, 1] == 0.5 and t.limit[0, 3] == 10000.0 and t.limit[2, 3] == 2.0
    assert t.values[1, 3] == 120.0
    # an over-range cell is imputed at its bound, a value below detection at half its limit
    keep = [0, 1, 3, 4]  # Au has no measured value to impute from
    imp = mb.impute(t.values[:, keep], t.status[:, keep], t.limit[:, keep], t.sd[:, keep], 0.05, 1.0)
    assert imp.values[0, 2] == 10000.0 and imp.values[0, 1] == 0.25


@pytest.mark.parametrize("cell,message", [("<abc", "'<abc' is not a detection limit"),
                                          (">0", "bounds nothing"), ("12 ppm?", "not a number")])
def test_a_bad_cell_names_row_sample_and_column(tmp_path, cell, message):
    path = write(tmp_path / "t.csv", f"sample,SiO2,Zr (ppm),Nb\na,50,100,9\nb,48,{cell},10\n")
    with pytest.raises(InputError, match=message) as err:
        read_wholerock(path)
    assert "row 3" in str(err.value) and "sample 'b'" in str(err.value) and "Zr (ppm)" in str(err.value)


def test_group_weights_presets_and_overrides():
    cols = ["SiO2", "TiO2", "Al2O3", "K2O", "Zr", "La", "Rb"]
    c = mb.group_weights(cols, prior="hfse", prior_weight=3.0)
    np.testing.assert_array_equal(c, [1, 3, 3, 1, 3, 3, 1])
    c = mb.group_weights(cols, {"Zr": 5.0, "K": 0.5}, prior="hfse", prior_weight=3.0)
    np.testing.assert_array_equal(c, [1, 3, 3, 0.5, 5, 3, 1])  # 'K' is the element of K2O
    with pytest.raises(KeyError):
        mb.group_weights(cols, {"Nb": 2.0})


def _borderline_data(seed=0):
    """Log-ratio data of 8 elements, 3 altered samples, common slope a = 0.1; element 7 moves by a
    small amount (0.12 in log units, 4 sds), so the penalty weight decides whether it is called mobile."""
    rng = np.random.default_rng(seed)
    g, s, sd = 8, 3, 0.03
    y = 0.1 + sd * rng.standard_normal((g, s))
    y[5:7] += np.array([[0.8, -0.6, 0.7], [-0.9, 0.5, 1.1]])  # clearly mobile
    y[7] += 0.12
    return np.asarray(y), np.full((g, s), 1.0 / sd**2)


def test_a_prior_weight_keeps_a_borderline_element_immobile():
    import jax.numpy as jnp

    y, w = _borderline_data(seed=1)
    opts = mb.SparseOptions()
    plain = np.asarray(mb.select(jnp.asarray(y), jnp.asarray(w), opts).immobile)
    c = np.ones(8)
    c[7] = 10.0
    weighted = np.asarray(mb.select(jnp.asarray(y), jnp.asarray(w), opts, jnp.asarray(c)).immobile)
    assert not plain[5:7].any() and not weighted[5:7].any()  # the clearly mobile stay mobile
    assert plain[:5].all() and weighted[:5].all()
    assert not plain[7].all()  # without a prior the 4-sigma move is seen ...
    assert weighted[7].all()  # ... a strong prior resistance to moving overrides it


def test_grant_linear_isocon_by_hand():
    ref = np.array([10.0, 20.0, 30.0, 5.0])
    alt = np.array([[20.0, 40.0, 60.0, 1.0],  # mass loss: immobile elements concentrated twice
                    [5.0, 10.0, 15.0, 9.0]])  # mass gain
    imm = np.array([[True, True], [True, True], [True, True], [False, False]])
    s = mb.grant_linear(alt, ref, imm)
    np.testing.assert_allclose(s, [2.0, 0.5])  # M^A/M^O = 1/s
    # through the origin: a least-squares slope, Σ C^O C^A / Σ (C^O)^2, by hand for a noisy set
    alt2 = np.array([[11.0, 19.0, 33.0, 0.0]])
    s2 = mb.grant_linear(alt2, ref, imm[:, :1])
    assert s2[0] == pytest.approx((10 * 11 + 20 * 19 + 30 * 33) / (10**2 + 20**2 + 30**2))


@settings(max_examples=50, deadline=None)
@given(st.floats(-2, 2), st.floats(-2, 2), st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_basic_interval_always_contains_the_point(point, centre, spread, seed):
    reps = centre + spread * np.random.default_rng(seed).standard_normal(200)
    lo, hi = mb.basic_interval(np.array(point), reps, np.array(centre), 0.95)
    assert lo <= point <= hi


def test_basic_interval_is_the_pivotal_interval_when_it_straddles():
    reps = np.random.default_rng(1).normal(0.3, 0.1, 4000)
    lo, hi = mb.basic_interval(np.array(0.3), reps, np.array(0.3), 0.9)
    q_lo, q_hi = np.percentile(reps - 0.3, [5, 95])
    assert lo == pytest.approx(0.3 - q_hi) and hi == pytest.approx(0.3 - q_lo)


@settings(max_examples=50, deadline=None)
@given(st.floats(-2, 2), st.floats(-2, 2), st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_studentized_interval_always_contains_the_point(point, centre, spread, se, seed):
    rng = np.random.default_rng(seed)
    reps = centre + spread * rng.standard_normal(200)
    se_reps = se * np.exp(0.3 * rng.standard_normal(200))
    lo, hi = mb.studentized_interval(np.array(point), np.array(se), reps, np.array(centre), se_reps, 0.95)
    assert lo <= point <= hi


def test_studentized_interval_by_hand():
    """[point - t_hi se, point - t_lo se] with t = (replicate - centre) / se_replicate; se_replicate = 0 counts as t = 0."""
    rng = np.random.default_rng(2)
    reps, se_reps = rng.normal(1.0, 0.2, 4000), rng.uniform(0.1, 0.3, 4000)
    lo, hi = mb.studentized_interval(np.array(1.1), np.array(0.5), reps, np.array(1.0), se_reps, 0.9)
    t_lo, t_hi = np.percentile((reps - 1.0) / se_reps, [5, 95])
    assert lo == pytest.approx(1.1 - t_hi * 0.5) and hi == pytest.approx(1.1 - t_lo * 0.5)
    lo, hi = mb.studentized_interval(np.array(0.0), np.array(0.0), np.zeros(10), np.array(0.0), np.zeros(10), 0.95)
    assert lo == hi == 0.0  # a quantity fixed by construction (a lone immobile element's residual)


def test_isocon_scales_by_hand():
    """Birge ratio sqrt(max(1, chi2 / (k - 1))) per sample, se(a) = phi / sqrt(sum W), se of y - a."""
    y = np.array([[0.1, 0.0], [0.3, 0.02], [-0.1, -0.01], [1.0, 0.8]])
    w = np.array([[100.0, 100.0], [50.0, 100.0], [100.0, 100.0], [25.0, 25.0]])
    imm = np.array([[True] * 2, [True] * 2, [True] * 2, [False] * 2])
    a = np.sum(w[:3] * y[:3], axis=0) / np.sum(w[:3], axis=0)
    sc = mb.isocon_scales(jnp.asarray(y), jnp.asarray(w), jnp.asarray(imm), jnp.asarray(a))
    chi2 = np.sum(w[:3] * (y[:3] - a) ** 2, axis=0)
    phi = np.sqrt(np.maximum(chi2 / 2, 1.0))
    assert chi2[0] / 2 > 1 > chi2[1] / 2  # sample 0 scatters beyond its errors, sample 1 does not
    big_w = np.sum(w[:3], axis=0)
    np.testing.assert_allclose(sc.birge_ratio, phi, rtol=1e-12)
    np.testing.assert_allclose(sc.se_intercept, phi / np.sqrt(big_w), rtol=1e-12)
    np.testing.assert_allclose(sc.se_log_change[3], phi * np.sqrt(1 / w[3] + 1 / big_w), rtol=1e-12)  # mobile
    np.testing.assert_allclose(sc.se_log_change[:3], phi * np.sqrt(1 / w[:3] - 1 / big_w), rtol=1e-12)  # residuals

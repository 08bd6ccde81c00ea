"""Tests of the garnet forward models (jaxpetro.models.garnet) and the table/profile readers."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpetro.errors import InputError
from jaxpetro.io.perplex import GarnetTable, read_table, write_tab
from jaxpetro.io.profiles import CompositionWarning, read_inclusions, read_profile, write_profile
from jaxpetro.models import garnet as gm
from jaxpetro.synthetic.garnet_profile import demo_table_path, make_garnet_profile, table_params

P_AX = np.arange(2.0, 14.01, 0.5)
T_AX = np.arange(400.0, 700.1, 20.0)


def quadratic_table():
    """A table whose four 'fractions' are quadratics in (P, T): cubic convolution reproduces them exactly."""
    PP, TT = np.meshgrid(P_AX, T_AX, indexing="ij")
    u, v = (PP - 8) / 6, (TT - 550) / 150
    vals = np.stack([0.5 + 0.1 * u - 0.05 * v + 0.02 * u * v, 0.1 + 0.03 * v**2, 0.2 - 0.04 * u**2, 0.2 + 0.01 * u], -1)
    return GarnetTable(P_AX, T_AX, vals, "quadratic")


def params_of(table):
    return table_params(table)


def quad_exact(P, T):
    u, v = (P - 8) / 6, (T - 550) / 150
    return np.array([0.5 + 0.1 * u - 0.05 * v + 0.02 * u * v, 0.1 + 0.03 * v**2, 0.2 - 0.04 * u**2, 0.2 + 0.01 * u])


@settings(max_examples=30, deadline=None)
@given(P=st.floats(3.0, 13.0), T=st.floats(420.0, 680.0))
def test_bicubic_reproduces_quadratics_inside_the_grid(P, T):
    p = params_of(quadratic_table())
    np.testing.assert_allclose(gm.table_interp(p, P, T), quad_exact(P, T), atol=1e-12)


def test_bicubic_hits_nodes_and_has_consistent_gradients():
    t = read_table(demo_table_path())
    p = params_of(t)
    np.testing.assert_allclose(gm.table_interp(p, t.P_kbar[17], t.T_C[9]), t.values[17, 9], atol=1e-12)
    f = jax.jit(lambda x: gm.table_interp(p, x[0], x[1]))
    J = jax.jit(jax.jacfwd(f))
    rng = np.random.default_rng(0)
    for x in rng.uniform([3, 420], [13, 680], (5, 2)):
        num = np.stack([(f(x + e) - f(x - e)) / (2 * 1e-6 * s) for e, s in ((np.array([1e-6, 0]), 1), (np.array([0, 1e-6]), 1))], 1)
        np.testing.assert_allclose(J(jnp.asarray(x)), num, rtol=1e-4, atol=1e-7)
    # C1 across a cell boundary: one-sided derivatives agree
    x0 = np.array([t.P_kbar[20], 555.0])
    np.testing.assert_allclose(J(jnp.asarray(x0 - [1e-7, 0])), J(jnp.asarray(x0 + [1e-7, 0])), rtol=1e-4, atol=1e-8)


def test_linear_model_and_state_components():
    p = gm.LinearParams(jnp.array([0.6, 0.1, 0.2, 0.1]), jnp.asarray(8.0), jnp.asarray(550.0),
                        jnp.array([-0.01, 0.005, 0.01, -0.005]), jnp.array([-1e-4, 3e-4, -1e-4, -1e-4]))
    out = gm.h_linear(p, jnp.array([9.0, 600.0]), 100.0)
    np.testing.assert_allclose(out[:4], [0.6 - 0.01 - 0.005, 0.1 + 0.005 + 0.015, 0.2 + 0.01 - 0.005, 0.1 - 0.005 - 0.005])
    np.testing.assert_allclose(out[4:], [9.0, 600.0])


def test_rayleigh_fractionation_depletes_sps_and_keeps_the_sum():
    X = jnp.array([0.6, 0.1, 0.15, 0.15])
    off = gm._rayleigh(X, gm.NO_FRACTIONATION, jnp.asarray(500.0))
    np.testing.assert_allclose(off, X, rtol=1e-14)
    frac = gm.Fractionation(jnp.asarray(3.0), jnp.asarray(0.4), jnp.asarray(1000.0))
    radii = jnp.array([100.0, 500.0, 1000.0])
    out = jax.vmap(lambda r: gm._rayleigh(X, frac, r))(radii)
    F = 0.4 * (np.asarray(radii) / 1000.0) ** 3
    np.testing.assert_allclose(out[:, 3], 0.15 * (1 - F) ** 2, rtol=1e-12)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-12)
    assert np.all(np.diff(np.asarray(out[:, 3])) < 0)
    # the other end-members keep their proportions
    np.testing.assert_allclose(out[:, 0] / out[:, 1], 6.0, rtol=1e-12)


def test_growth_law_durations():
    r = jnp.array([100.0, 300.0, 600.0])
    T = jnp.full(3, 550.0)
    dt = gm.shell_durations(r, T, 2.0e9, 120_000.0)
    G = 2.0e9 * math.exp(-120_000.0 / (gm.R_GAS * 823.15))
    np.testing.assert_allclose(np.cumsum(dt), np.asarray(r) / G, rtol=1e-12)
    # hotter grows faster: less time per shell
    assert float(gm.shell_durations(r, T + 50, 2.0e9, 120_000.0)[1]) < float(dt[1])


def test_holes_are_filled_for_the_interpolant_but_outside_the_support():
    t = quadratic_table()
    vals = t.values.copy()
    vals[10:13, 5:8] = np.nan
    holed = GarnetTable(t.P_kbar, t.T_C, vals, "holed")
    filled = gm.fill_missing(holed.values, holed.valid)
    assert np.all(np.isfinite(filled))
    np.testing.assert_array_equal(filled[holed.valid], t.values[holed.valid])
    ok = gm.table_support(holed.valid, t.P_kbar[0], t.dP, t.T_C[0], t.dT,
                          np.array([t.P_kbar[11], 3.0, 20.0]), np.array([t.T_C[6], 420.0, 500.0]))
    assert ok.tolist() == [False, True, False]  # in the hole, clear of it, beyond the grid


# ----------------------------------------------------------------------------- table readers


def test_demo_csv_and_perplex_tab_round_trip(tmp_path):
    t = read_table(demo_table_path())
    assert t.values.shape == (49, 31, 4) and t.valid.all()
    assert (t.dP, t.dT) == (0.25, 10.0)
    for spreadsheet in (True, False):
        path = write_tab(tmp_path / f"t{spreadsheet}.tab", t, spreadsheet=spreadsheet)
        back = read_table(path)
        np.testing.assert_allclose(back.values, t.values, rtol=1e-9)
        np.testing.assert_allclose(back.P_kbar, t.P_kbar, atol=1e-9)
        np.testing.assert_allclose(back.T_C, t.T_C, atol=1e-9)


def test_perplex_tab_with_perplex_names_and_nan(tmp_path):
    text = "\n".join([
        "|6.6.6", "grt.tab", "2",
        "T(K)", "673.15", "20", "4",
        "P(bar)", "2000", "1000", "4",
        "4", "Gt(W),alm Gt(W),py Gt(W),gr Gt(W),spss",
    ] + [("NaN NaN NaN NaN" if k == 5 else f"{0.5 + 0.001 * k} 0.1 0.2 {0.2 - 0.001 * k}") for k in range(16)]) + "\n"
    path = tmp_path / "g.tab"
    path.write_text(text)
    t = read_table(path)
    np.testing.assert_allclose(t.P_kbar, [2, 3, 4, 5])
    np.testing.assert_allclose(t.T_C, [400, 420, 440, 460])
    assert not t.valid[1, 1] and t.valid.sum() == 15  # row 5 = T index 1, P index 1 (T fastest)
    np.testing.assert_allclose(t.values[2, 3, 0], 0.5 + 0.001 * 11)


def write_table_csv(path, rows, header="P_kbar,T_C,X_alm,X_prp,X_grs,X_sps"):
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return path


def grid_rows(P=(2, 3, 4, 5), T=(400, 420, 440, 460)):
    return [[p, t, 0.5, 0.1, 0.2, 0.2] for p in P for t in T]


def test_table_units_and_missing_rows(tmp_path):
    rows = [[p * 1000, t + 273.15, *x] for p, t, *x in grid_rows()]
    del rows[6]  # a node left out: masked, not an error
    t = read_table(write_table_csv(tmp_path / "u.csv", rows, "P_bar,T_K,X_alm,X_prp,X_grs,X_sps"))
    np.testing.assert_allclose(t.P_kbar, [2, 3, 4, 5])
    np.testing.assert_allclose(t.T_C, [400, 420, 440, 460], atol=1e-9)
    assert t.valid.sum() == 15 and not t.valid[1, 2]


@pytest.mark.parametrize("case, match", [
    ("duplicate", "appears twice"),
    ("irregular", "not evenly spaced"),
    ("fraction", "outside \\[0, 1\\]"),
    ("mostly_missing", "are missing"),
    ("no_column", "no column for X_sps"),
    ("text", "is not a number"),
])
def test_bad_tables(tmp_path, case, match):
    rows = grid_rows()
    header = "P_kbar,T_C,X_alm,X_prp,X_grs,X_sps"
    if case == "duplicate":
        rows.append(rows[3])
    elif case == "irregular":
        rows = grid_rows(P=(2, 3, 4, 5.5))
    elif case == "fraction":
        rows[2][2] = 1.4
    elif case == "mostly_missing":
        rows = [r if i < 5 else r[:2] + [""] * 4 for i, r in enumerate(rows)]
    elif case == "no_column":
        header = "P_kbar,T_C,X_alm,X_prp,X_grs,X_other"
    elif case == "text":
        rows[4][3] = "abc"
    with pytest.raises(InputError, match=match):
        read_table(write_table_csv(tmp_path / "bad.csv", rows, header))


def test_missing_table_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_table(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- profile readers


def profile_text(rows, header="radius_um,X_alm,X_prp,X_grs,X_sps"):
    return header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"


GOOD = [[10, 0.6, 0.1, 0.2, 0.1], [20, 0.6, 0.11, 0.19, 0.1], [30, 0.59, 0.12, 0.19, 0.1], [40, "", 0.13, 0.18, 0.1]]


def test_profile_round_trip_and_masks(tmp_path):
    synth = make_garnet_profile(seed=3, n_shells=12, missing=0.1)
    path = write_profile(tmp_path / "p.csv", synth.radius_um, synth.X, np.full_like(synth.X, 0.005))
    prof = read_profile(path)
    np.testing.assert_array_equal(prof.radius_um, synth.radius_um)
    np.testing.assert_array_equal(np.isnan(prof.X), np.isnan(synth.X))
    np.testing.assert_allclose(prof.X[np.isfinite(prof.X)], synth.X[np.isfinite(synth.X)])
    assert np.all(np.isnan(prof.sd) == np.isnan(prof.X))
    p2 = tmp_path / "g.csv"
    p2.write_text(profile_text(GOOD))
    prof = read_profile(p2)
    assert prof.sd is None and np.isnan(prof.X[3, 0]) and prof.observed.sum() == 15


@pytest.mark.parametrize("case, match", [
    ("unsorted", "sort the rows"),
    ("duplicate", "repeats the previous row"),
    ("above_one", "outside \\[0, 1\\]"),
    ("negative", "outside \\[0, 1\\]"),
    ("missing_column", "no column 'X_grs'"),
    ("partial_sd", "some but not all"),
    ("bad_sd", "positive"),
    ("text", "is not a number"),
])
def test_bad_profiles(tmp_path, case, match):
    rows = [list(r) for r in GOOD]
    header = "radius_um,X_alm,X_prp,X_grs,X_sps"
    if case == "unsorted":
        rows[1][0], rows[2][0] = 30, 20
    elif case == "duplicate":
        rows[2][0] = 20
    elif case == "above_one":
        rows[1][1] = 1.2
    elif case == "negative":
        rows[2][4] = -0.01
    elif case == "missing_column":
        header = "radius_um,X_alm,X_prp,X_gross,X_sps"
    elif case == "partial_sd":
        header += ",X_alm_sd"
        rows = [r + [0.01] for r in rows]
    elif case == "bad_sd":
        header += ",X_alm_sd,X_prp_sd,X_grs_sd,X_sps_sd"
        rows = [r + [0.01, 0.01, 0.0 if i == 1 else 0.01, 0.01] for i, r in enumerate(rows)]
    elif case == "text":
        rows[0][2] = "0.1a"
    path = tmp_path / "bad.csv"
    path.write_text(profile_text(rows, header))
    with pytest.raises(InputError, match=match) as err:
        read_profile(path)
    assert "bad.csv" in str(err.value)


def test_rows_not_summing_to_one_warn(tmp_path):
    rows = [list(r) for r in GOOD]
    rows[1][1] = 0.75  # sum 1.15
    path = tmp_path / "w.csv"
    path.write_text(profile_text(rows))
    with pytest.warns(CompositionWarning, match="line 3"):
        read_profile(path)
    path.write_text(profile_text(GOOD))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_profile(path)


def test_inclusions_reader(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("radius_um,P_kbar,T_C,P_sd,T_sd\n800,9.1,560,0.5,25\n200,6.0,500,0.4,20\n")
    inc = read_inclusions(path)
    np.testing.assert_allclose(inc.radius_um, [200, 800])
    np.testing.assert_allclose(inc.P_kbar, [6.0, 9.1])
    path.write_text("radius_um,P_kbar,T_C,P_sd,T_sd\n800,9.1,560,0,25\n")
    with pytest.raises(InputError, match="P_sd must be positive"):
        read_inclusions(path)


# ----------------------------------------------------------------------------- differentiability (the module's claim)


def test_forward_models_and_growth_law_are_differentiable():
    """jax.grad of h_linear, h_table (in the state and the parameters), table_interp and the growth
    law equals central finite differences."""
    table = params_of(read_table(demo_table_path()))._replace(
        frac=gm.Fractionation(jnp.asarray(2.0), jnp.asarray(0.3), jnp.asarray(1500.0)))
    lin = gm.LinearParams(jnp.array([0.6, 0.1, 0.2, 0.1]), jnp.asarray(8.0), jnp.asarray(550.0),
                          jnp.array([-0.01, 0.005, 0.01, -0.005]), jnp.array([-1e-4, 3e-4, -1e-4, -1e-4]),
                          table.frac)
    x0 = jnp.array([7.3, 537.0])
    radius = jnp.asarray(900.0)
    w = jnp.array([0.3, -0.7, 1.1, 0.5, 0.0, 0.0])  # a fixed projection of the six outputs

    def check(f, arg, eps):
        g = jax.grad(f)(arg)
        for i in range(arg.shape[0] if arg.ndim else 1):
            e = jnp.zeros_like(arg).at[i].set(eps) if arg.ndim else jnp.asarray(eps)
            fd = (f(arg + e) - f(arg - e)) / (2 * eps)
            np.testing.assert_allclose(g[i] if arg.ndim else g, fd, rtol=1e-5, atol=1e-12)

    check(lambda x: w @ gm.h_table(table, x, radius), x0, 1e-5)
    check(lambda x: w @ gm.h_linear(lin, x, radius), x0, 1e-5)
    check(lambda x: jnp.sum(gm.table_interp(table, x[0], x[1]) * w[:4]), x0, 1e-5)
    check(lambda A: w @ gm.h_linear(lin._replace(A=A), x0, radius), lin.A, 1e-6)
    check(lambda K: w @ gm.h_table(table._replace(frac=table.frac._replace(K=K)), x0, radius), jnp.asarray(2.0), 1e-6)
    check(lambda T: gm.growth_rate(T, 2.0e9, 120_000.0), jnp.asarray(550.0), 1e-3)
    check(lambda Q: jnp.sum(gm.shell_durations(jnp.array([100.0, 300.0]), jnp.array([540.0, 560.0]), 2.0e9, Q)),
          jnp.asarray(120_000.0), 1.0)

"""The P-T(-t) state-space model: its noise against the formulas (closure delta method, model
error, radius and time walks), the closure Jacobian against differentiation, the prior clock,
the pre-inversion range check, and the problem assembly (inclusions, lines, ages)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.config.loader import load_config
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.errors import InputError
from jaxpetro.io.perplex import GarnetTable
from jaxpetro.io.profiles import Ages, GarnetProfile, Inclusions, LineConstraints
from jaxpetro.models import growth as gr
from jaxpetro.models import ptpath_model as pm

X4 = np.array([[0.62, 0.14, 0.16, 0.08], [0.60, 0.15, 0.17, 0.09], [0.58, 0.16, 0.18, 0.07]])


def profile(X=X4, sd=None, r=(100.0, 200.0, 300.0)):
    return GarnetProfile(np.asarray(r, float), np.asarray(X, float), sd, "p.csv")


def config(**kw):
    return load_config({"profile": "p.csv", "forward": {"kind": "linear"}, **kw}, PtpathConfig)


def test_closure_jacobian_is_the_derivative_of_the_renormalisation():
    X = jnp.asarray(X4[0] * 1.03)  # a sum off 1 on purpose
    z, J = pm.closure_jacobian(X, 0)
    np.testing.assert_allclose(z, X / jnp.sum(X), rtol=1e-15)
    full = jax.jacfwd(lambda v: v / jnp.sum(v))(X)
    np.testing.assert_allclose(J[1:], full[1:], rtol=1e-12)
    assert np.all(np.asarray(J[0]) == 0)  # the dropped end-member's row


def test_noise_closure_block_model_error_and_radius_walk():
    sd = np.array([[0.004, 0.003, 0.002, 0.001]] * 3)
    prob = pm.build_problem(profile(sd=sd), None, None, config(observation={"drop": "X_grs"}))
    data = pm.data_of(prob)
    theta = jnp.log(jnp.array([0.05, 1.5, 0.01, 0.015]))
    R, Q = pm.noise(data, theta)
    assert R.shape == (3, 8, 8) and Q.shape == (3, 2, 2)
    for n in range(3):
        X = X4[n]
        S = X.sum()
        J = (np.eye(4) - np.outer(X / S, np.ones(4))) / S
        J[2] = 0.0
        ref = J @ np.diag(sd[n] ** 2 + 0.015**2) @ J.T  # delta method, model error on every fraction
        np.testing.assert_allclose(R[n, :4, :4], ref, rtol=1e-12, atol=1e-18)
    assert not prob.mask[:, 2].any() and prob.mask[:, [0, 1, 3]].all()  # three independent fractions
    dr = np.diff(prob.radius_um, prepend=prob.radius_um[:1])
    np.testing.assert_allclose(Q[:, 0, 0], dr * 0.05**2, rtol=1e-12)
    np.testing.assert_allclose(Q[:, 1, 1], dr * 1.5**2, rtol=1e-12)


def test_open_shells_take_the_common_sd_and_the_model_error():
    X = X4.copy()
    X[1, 3] = np.nan  # a missing fraction: no closure possible, the others observed as measured
    prob = pm.build_problem(profile(X), None, None, config())
    R, _ = pm.noise(pm.data_of(prob), jnp.log(jnp.array([0.05, 1.5, 0.01, 0.02])))
    assert not prob.closed[1] and prob.closed[[0, 2]].all()
    np.testing.assert_allclose(R[1, :4, :4], np.eye(4) * (0.01**2 + 0.02**2), rtol=1e-12)
    np.testing.assert_allclose(prob.y[1, :3], X[1, :3])
    assert not prob.mask[1, 3] and prob.mask[1, :3].all()


def test_noise_gradient_matches_finite_differences():
    data = pm.data_of(pm.build_problem(profile(sd=np.full((3, 4), 0.004)), None, None, config()))

    def scalar(log_theta):
        R, Q = pm.noise(data, log_theta)
        return jnp.sum(jnp.log(jnp.diagonal(R, axis1=1, axis2=2)[:, 1:4])) + jnp.sum(jnp.sqrt(Q[1:, 0, 0] + Q[1:, 1, 1]))

    theta = jnp.log(jnp.array([0.05, 1.5, 0.01, 0.01]))
    grad = np.asarray(jax.grad(scalar)(theta))
    eps = 1e-6
    fd = [(scalar(theta.at[i].add(eps)) - scalar(theta.at[i].add(-eps))) / (2 * eps) for i in range(4)]
    np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6, atol=1e-9)


def test_model_error_is_estimated_when_the_measurement_sd_is_known():
    with_sd = pm.build_problem(profile(sd=np.full((3, 4), 0.004)), None, None, config())
    assert pm.start(with_sd, config().hyperparameters).names == ["q_P", "q_T", "model_sd"]
    without = pm.build_problem(profile(), None, None, config())
    h = pm.start(without, config().hyperparameters)
    assert h.names == ["q_P", "q_T", "sd"] and np.exp(h.log_theta[3]) == 0.0  # not identifiable: held at 0


def test_inclusions_lines_and_ages_enter_their_slots():
    incl = Inclusions(np.array([150.0]), np.array([7.0]), np.array([520.0]), np.array([0.5]), np.array([20.0]),
                      "i.csv", PT_corr=np.array([0.6]))
    lines = LineConstraints(np.array([200.0]), np.array([-3.0]), np.array([0.02]), np.array([0.3]), "l.csv")
    ages = Ages(np.array([100.0, 300.0]), np.array([40.0, 37.0]), np.array([0.5, 0.6]), "a.csv")
    cfg = config(growth={"k0_um_per_Myr": 100.0, "Q_J_per_mol": 0.0}, ages="a.csv")
    prob = pm.build_problem(profile(), incl, None, cfg, constraints=lines, ages=ages)
    assert len(prob.radius_um) == 4 and prob.shell.sum() == 3 and prob.state_names == gr.STATE_NAMES
    k = 1  # the inclusion's own step at 150 µm, between shells
    assert not prob.mask[k, :4].any() and prob.mask[k, pm.INCL:pm.INCL + 2].all()
    np.testing.assert_allclose(prob.R_other[k, :2, :2], [[0.25, 0.6 * 0.5 * 20.0], [0.6 * 0.5 * 20.0, 400.0]])
    i = 2  # 200 µm: a shell with a line constraint P - 0.02 T = -3
    assert prob.mask[i, pm.LINE] and prob.y[i, pm.LINE] == -3.0 and prob.aux.line_b[i] == 0.02
    assert prob.R_other[i, 2, 2] == pytest.approx(0.09)
    np.testing.assert_allclose(prob.y[prob.mask[:, pm.AGE], pm.AGE], [40.0, 37.0])
    # the observation: line P - b T, age A0 - t (linear model)
    x = jnp.array([8.0, 550.0, 1.5, np.log(100.0), 0.0, 41.0])
    aux = jax.tree_util.tree_map(lambda a: a[i], pm.data_of(prob).aux)
    obs = pm.observe_linear(prob.params, x, aux)
    np.testing.assert_allclose(obs[pm.LINE], 8.0 - 0.02 * 550.0)
    np.testing.assert_allclose(obs[pm.AGE], 41.0 - 1.5)
    np.testing.assert_allclose(jnp.sum(obs[:4]), 1.0, rtol=1e-12)


def test_prior_clock_is_the_time_to_grow_the_first_shell():
    cfg = config(growth={"k0_um_per_Myr": 1e9, "Q_J_per_mol": 1e5, "radius_exponent": 1.0, "r_ref_um": 500.0})
    prob = pm.build_problem(profile(), None, None, cfg)
    assert prob.walk == "time" and prob.state_names == ("P_kbar", "T_C", "t_Myr")
    X = np.asarray(pm.prior_draws(jax.random.key(0), pm.data_of(prob), prob.params, 50))
    D0 = 100.0**2 / (2 * 500.0)  # (r^(m+1) - 0) / ((m+1) r_ref^m)
    # the rate at each member's T, clamped to the law's range (the linear model's 400-700 °C)
    assert (float(prob.params.growth.T_lo_C), float(prob.params.growth.T_hi_C)) == (400.0, 700.0)
    g = 1e9 * np.exp(-1e5 / (gr.R_GAS * (np.clip(X[:, 1], 400.0, 700.0) + 273.15)))
    np.testing.assert_allclose(X[:, 2], D0 / g, rtol=1e-12)


def test_range_check_names_the_end_member_and_by_how_much():
    P, T = np.linspace(2, 14, 5), np.linspace(400, 700, 4)
    vals = np.zeros((5, 4, 4))
    vals[..., 1], vals[..., 2] = np.linspace(0.05, 0.25, 5)[:, None], 0.1
    vals[..., 3] = np.linspace(0.05, 0.15, 4)[None, :]
    vals[..., 0] = 1 - vals[..., 1:].sum(-1)
    t = GarnetTable(P, T, vals, "tab.csv")
    cfg = load_config({"profile": "p.csv", "forward": {"path": "tab.csv"}, "hyperparameters": {"sd": 0.005}},
                      PtpathConfig)
    ok = np.array([[0.70, 0.10, 0.10, 0.10]] * 3)
    pm.check_profile_range(pm.build_problem(profile(ok), None, t, cfg))
    bad = ok.copy()
    bad[2] = [0.55, 0.10, 0.10, 0.25]  # X_sps 0.25, the table reaches 0.15
    with pytest.raises(InputError, match=r"X_sps = 0.2500 at radius 300 µm is 0.1000 above the table's range "
                                         r"0.0500-0.1500"):
        pm.check_profile_range(pm.build_problem(profile(bad), None, t, cfg))


def test_table_with_khoharite_is_folded_into_pyrope_and_renormalised_with_a_warning(tmp_path):
    from jaxpetro.io.perplex import TableWarning, read_table

    rows = ["P_kbar,T_C,X_alm,X_prp,X_grs,X_sps,X_kho"]
    for P in (2.0, 3.0, 4.0, 5.0):
        for T in (400.0, 410.0, 420.0, 430.0):
            rows.append(f"{P},{T},0.60,0.10,0.10,0.10,0.05")  # the five sum to 0.95
    path = tmp_path / "kho.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.warns(TableWarning, match=r"X_kho counted with X_prp.*renormalised"):
        t = read_table(path)
    np.testing.assert_allclose(t.values[0, 0], np.array([0.60, 0.15, 0.10, 0.10]) / 0.95, rtol=1e-12)


def test_inclusion_correlation_outside_minus_one_one_is_an_input_error(tmp_path):
    from jaxpetro.io.profiles import read_ages, read_inclusions

    p = tmp_path / "inc.csv"
    p.write_text("radius_um,P_kbar,T_C,P_sd,T_sd,PT_corr\n100,7,520,0.5,20,1.2\n")
    with pytest.raises(InputError, match="inc.csv.*PT_corr 1.2"):
        read_inclusions(p)
    a = tmp_path / "ages.csv"
    a.write_text("radius_um,age_Ma,age_sd_Ma\n100,40,0\n")
    with pytest.raises(InputError, match="ages.csv', line 2: age_sd_Ma must be positive"):
        read_ages(a)

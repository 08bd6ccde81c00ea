"""End-to-end tests of ``jaxpetro ptpath``: synthetic recovery, exact linear path, sensitivities, bad inputs."""

import csv
import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.config.loader import load_config
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io.perplex import GarnetTable, read_table
from jaxpetro.io.profiles import write_profile
from jaxpetro.io.results import read_hdf5
from jaxpetro.kernels import kalman as kf
from jaxpetro.synthetic.garnet_profile import clockwise_path, demo_table_path
from jaxpetro.workflows import ptpath

LIN = dict(X0=(0.70, 0.12, 0.10, 0.08), P0=8.0, T0=550.0, A=(-0.004, 0.002, 0.012, -0.010),
           B=(-0.0001, 0.0006, -0.0002, -0.0003))


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], float)


@pytest.mark.slow  # seeds 0-5 in benchmarks/ptpath_recovery.md (scripts/bench/recovery_ptpath.py)
def test_demo_recovery_meets_targets(tmp_path):
    """Clockwise path, 60 shells, noise 0.005, default settings (hyperparameters estimated):
    RMSE <= 0.25 kbar and <= 15 °C, 90 % band coverage in [75 %, 100 %]."""
    res = ptpath.run_demo(tmp_path, seed=0, quiet=True)
    assert res["rmse_P_kbar"] <= 0.25, res
    assert res["rmse_T_C"] <= 15.0, res
    assert 0.75 <= res["coverage"] <= 1.0, res
    assert res["n_shells"] == 60
    header, data = read_csv(tmp_path / "ptpath.csv")
    assert header == list(ptpath.CSV_COLUMNS)
    assert data.shape == (60, 9)
    assert np.all(data[:, 5] <= data[:, 1]) and np.all(data[:, 1] <= data[:, 6])  # P_lo <= P <= P_hi
    h5, attrs = read_hdf5(tmp_path / "ptpath.h5")
    assert h5["ensemble"]["smoothed"].shape == (60, 500, 2)
    assert h5["ensemble"]["filtered"].shape == (60, 500, 2)
    assert set(h5["hyperparameters"]["estimated"]) == {"q_P", "q_T", "sd", "model_corr_sd", "model_corr_um"}
    assert float(h5["hyperparameters"]["model_corr_sd"]) < 0.002  # the table is the simulating one: no bias
    assert abs(float(h5["hyperparameters"]["sd"]) - 0.005) < 0.0015  # the noise level is recovered
    assert np.isfinite(h5["loglik"]) and attrs["seed"] == 0
    for name in ("ptpath.png", "profiles.png", "garnet_profile.csv"):
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_recovery_other_seeds(tmp_path, seed):
    res = ptpath.run_demo(tmp_path, seed=seed, quiet=True)
    assert res["rmse_P_kbar"] <= 0.25 and res["rmse_T_C"] <= 15.0 and 0.75 <= res["coverage"] <= 1.0, res


def linear_profile(tmp_path, n=25, seed=0, missing_shell=True):
    r, P, T = clockwise_path(n, 1000.0)
    X = np.asarray(LIN["X0"]) + np.outer(P - LIN["P0"], LIN["A"]) + np.outer(T - LIN["T0"], LIN["B"])
    X = X + np.random.default_rng(seed).normal(0, 0.003, X.shape)
    if missing_shell:
        X[7] = np.nan
        X[12, 2] = np.nan
    return write_profile(tmp_path / "lin.csv", r, X), r, X


def test_linear_workflow_is_the_exact_rts_with_its_map_and_exact_sensitivities(tmp_path):
    path, r, X = linear_profile(tmp_path)
    out = tmp_path / "out"
    sets = [f"profile={path}", "forward.kind=linear", "hyperparameters.q_P=0.05", "hyperparameters.q_T=2.0",
            "hyperparameters.sd=0.003", "hyperparameters.model_sd=0", "hyperparameters.model_corr_sd=0",
            "observation.closure=false", "map_check=true",
            "sensitivity=true", "output.plots=false", "ensemble.size=64"]
    assert main(["ptpath", "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])]) == 0
    header, data = read_csv(out / "ptpath.csv")
    # independent exact reference built here
    n = len(r)
    H = np.zeros((n, 4, 2))
    H[:, :, 0], H[:, :, 1] = LIN["A"], LIN["B"]
    b = np.broadcast_to(np.asarray(LIN["X0"]) - np.asarray(LIN["A"]) * 8.0 - np.asarray(LIN["B"]) * 550.0, (n, 4))
    dr = np.diff(r, prepend=r[0])
    Q = np.stack([np.diag([d * 0.05**2, d * 2.0**2]) for d in dr])
    m0, P0 = np.array([8.0, 550.0]), np.diag([2.5**2, 75.0**2])  # prior: P0 ± 5 kbar, T0 ± 150 °C ranges / 4
    model = kf.LinearGaussianModel(*(jnp.asarray(a) for a in (np.eye(2), Q, H, b, np.broadcast_to(np.eye(4) * 0.003**2, (n, 4, 4)), m0, P0)))
    mask = np.isfinite(X)
    ref = kf.rts_smoother(model, jnp.asarray(np.where(mask, X, 0.0)), jnp.asarray(mask))
    np.testing.assert_allclose(data[:, 1:3], ref.mean_s, rtol=1e-9)
    np.testing.assert_allclose(data[:, 3:5], np.sqrt(np.diagonal(ref.cov_s, axis1=1, axis2=2)), rtol=1e-9)
    h5, _ = read_hdf5(out / "ptpath.h5")
    assert h5["loglik_method"] == "exact"
    # the MAP (L-BFGS on the GMRF posterior) is the exact posterior mean of a linear model
    sd = np.sqrt(np.diagonal(ref.cov_s, axis1=1, axis2=2))
    assert np.abs((np.c_[h5["map"]["P_kbar"], h5["map"]["T_C"]] - ref.mean_s) / sd).max() < 1e-4
    np.testing.assert_allclose(h5["loglik"], ref.loglik, rtol=1e-10)
    # Jacobian of the smoothed mean: a linear map, so one finite difference is exact
    dP, dT = h5["sensitivity"]["dP_dX"], h5["sensitivity"]["dT_dX"]
    assert dP.shape == (n, n, 4)
    Xp = np.where(mask, X, 0.0).copy()
    Xp[10, 1] += 1e-3
    moved = kf.rts_smoother(model, jnp.asarray(Xp), jnp.asarray(mask)).mean_s
    np.testing.assert_allclose((moved[:, 0] - ref.mean_s[:, 0]) / 1e-3, dP[:, 10, 1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose((moved[:, 1] - ref.mean_s[:, 1]) / 1e-3, dT[:, 10, 1], rtol=1e-6, atol=1e-7)
    assert np.all(dP[:, 7, :] == 0)  # a missing shell has no influence
    assert h5["sensitivity"]["dP_dA"].shape == (n, 4)


def test_cli_bad_inputs_exit_cleanly(tmp_path, capsys):
    bad = tmp_path / "unsorted.csv"
    bad.write_text("radius_um,X_alm,X_prp,X_grs,X_sps\n10,0.6,0.1,0.2,0.1\n30,0.6,0.1,0.2,0.1\n20,0.6,0.1,0.2,0.1\n")
    code = main(["ptpath", "--out", str(tmp_path / "o"), "--quiet", "--set", f"profile={bad}",
                 "--set", f"forward.path={demo_table_path()}"])
    err = capsys.readouterr().err
    assert code == InputError.exit_code and "unsorted.csv" in err and "sort the rows" in err
    assert "Traceback" not in err
    code = main(["ptpath", "--out", str(tmp_path / "o"), "--quiet", "--set", f"profile={bad}",
                 "--set", f"forward.path={demo_table_path()}", "--set", "ensemble.size=0"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code and "ensemble.size" in err
    code = main(["ptpath", "--out", str(tmp_path / "o"), "--quiet", "--set", f"profile={bad}"])
    assert code == ConfigError.exit_code and "forward.path" in capsys.readouterr().err


def test_schema_rejects_nonpositive_sizes_and_half_growth_laws():
    base = {"profile": "p.csv", "forward": {"path": "t.csv"}}
    for bad in ({"ensemble": {"size": -3}}, {"growth": {"k0_um_per_Myr": 1e9}}, {"prior": {"P_kbar": [9, 3]}}):
        with pytest.raises(ConfigError):
            load_config({**base, **bad}, PtpathConfig)


def fake(table, mean):
    return table, np.arange(len(mean)) * 10.0, np.asarray(mean, float)


def test_path_leaving_the_table_or_entering_a_hole_is_an_error():
    t = read_table(demo_table_path())
    inside = [[6.0, 500.0], [7.0, 520.0]]
    ptpath.check_inside_table(*fake(t, inside))
    with pytest.raises(InputError, match="leaves the forward table.*radius 10 µm"):
        ptpath.check_inside_table(*fake(t, [[6.0, 500.0], [15.0, 520.0]]))
    vals = t.values.copy()
    vals[20:23, 10:12] = np.nan  # P 7-7.5 kbar, T 500-510 °C
    holed = GarnetTable(t.P_kbar, t.T_C, vals, "holed.csv")
    with pytest.raises(InputError, match="missing nodes"):
        ptpath.check_inside_table(*fake(holed, [[6.0, 450.0], [7.25, 505.0]]))
    ptpath.check_inside_table(*fake(holed, [[6.0, 450.0], [10.0, 600.0]]))


def test_inclusions_become_state_observations_between_shells(tmp_path):
    path, r, X = linear_profile(tmp_path, n=10, missing_shell=False)
    inc = tmp_path / "inc.csv"
    inc.write_text(f"radius_um,P_kbar,T_C,P_sd,T_sd\n{r[3]},7.0,520,0.5,20\n{(r[5] + r[6]) / 2},8.0,540,0.4,15\n")
    cfg = load_config({"profile": str(path), "inclusions": str(inc), "forward": {"kind": "linear"}}, PtpathConfig)
    prob = ptpath.build_problem(cfg)
    assert len(prob.radius_um) == 11 and prob.shell.sum() == 10
    k = int(np.flatnonzero(~prob.shell)[0])
    assert k == 6 and not prob.mask[k, :4].any() and prob.mask[k, 4:6].all() and not prob.mask[k, 6:].any()
    np.testing.assert_allclose(prob.y[k, 4:6], [8.0, 540.0])
    np.testing.assert_allclose(prob.R_other[k, :2, :2], np.diag([0.4**2, 15.0**2]))  # no PT_corr column: independent
    # a shell with its own inclusion observes three closed fractions and the inclusion
    assert prob.mask[3, 1:6].all() and not prob.mask[3, 0]
    assert not prob.mask[:, 4][prob.shell & (np.arange(11) != 3)].any()


@pytest.mark.slow
def test_table_sensitivity_matches_finite_differences(tmp_path):
    """With the run's key fixed the EnKS mean is a smooth function of the profile: the reverse-mode
    Jacobian equals a central finite difference."""
    from jaxpetro.synthetic.garnet_profile import make_garnet_profile

    synth = make_garnet_profile(seed=4, n_shells=15)
    path = write_profile(tmp_path / "p.csv", synth.radius_um, synth.X)
    cfg = load_config({"profile": str(path), "forward": {"path": str(demo_table_path())}, "map_check": False,
                       "ensemble": {"size": 100},
                       "hyperparameters": {"q_P": 0.1, "q_T": 3.0, "sd": 0.005}}, PtpathConfig)
    prob = ptpath.build_problem(cfg)
    inv = ptpath.invert(prob, cfg)
    sens = ptpath.sensitivity(prob, cfg, inv)
    eps = 1e-5
    means = []
    for sign in (1, -1):
        y = prob.y.copy()
        y[6, 2] += sign * eps
        moved = ptpath.invert(dataclasses.replace(prob, y=y), cfg)
        means.append(moved.smoothed.mean(axis=1))
    fd = (means[0] - means[1]) / (2 * eps)
    np.testing.assert_allclose(sens.dP_dX[:, 6, 2], fd[:, 0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(sens.dT_dX[:, 6, 2], fd[:, 1], rtol=1e-3, atol=0.1)


@pytest.mark.slow
def test_shipped_config_runs_and_recovers_the_truth(tmp_path, monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the config's paths are relative to the repository root
    assert main(["ptpath", "configs/ptpath.yaml", "--out", str(tmp_path), "--quiet"]) == 0
    header, data = read_csv(tmp_path / "ptpath.csv")
    assert header == [*ptpath.CSV_COLUMNS, "t_Myr"]
    assert np.all(np.diff(data[:, -1]) > 0)  # time increases outwards
    _, truth = read_csv(root / "configs/data/garnet_truth.csv")
    shells = np.isin(data[:, 0], truth[:, 0])
    assert np.sqrt(np.mean((data[shells, 1] - truth[:, 1]) ** 2)) <= 0.25
    assert np.sqrt(np.mean((data[shells, 2] - truth[:, 2]) ** 2)) <= 15.0


def test_kernel_options_are_the_config_sections_with_the_same_defaults():
    """One place for defaults: the options classes; the config schema's defaults are the same values
    and from_config copies the sections without renaming."""
    from jaxpetro.config.ptpath import EnsembleConfig, HyperConfig
    from jaxpetro.kernels import enks
    from jaxpetro.models import ptpath_model as pm

    for options, section in ((enks.SmootherOptions(), EnsembleConfig()), (enks.MaximiseOptions(), HyperConfig()),
                             (enks.IesOptions(), EnsembleConfig())):
        for field in dataclasses.fields(options):
            if field.name == "smoother":  # the config's default 'ies' runs the kernel's 'enks' first, then iterates
                assert section.smoother == "ies" and options.smoother == "enks"
                continue
            assert getattr(section, field.name) == getattr(options, field.name), field.name
    cfg = load_config({"profile": "p.csv", "forward": {"path": "t.csv"},
                       "ensemble": {"variant": "sqrt", "lag": 4, "inflation": 1.1, "size": 64},
                       "hyperparameters": {"steps": 7, "learning_rate": 0.2, "members": 30}}, PtpathConfig)
    opts = pm.smoother_options(cfg)
    assert opts.smoother == enks.SmootherOptions(size=64, variant="sqrt", smoother="enks", lag=4, inflation=1.1)
    assert opts.ies == enks.IesOptions() and opts.corr is not None and np.all(np.isnan(opts.corr))
    off = pm.smoother_options(load_config({"profile": "p.csv", "forward": {"path": "t.csv"},
                                           "ensemble": {"smoother": "enks"}}, PtpathConfig))
    assert off.ies is None and off.corr is None  # the sequential EnKS cannot carry a correlated error
    assert opts.maximise == enks.MaximiseOptions(steps=7, learning_rate=0.2)
    assert opts.likelihood == enks.SmootherOptions(size=30, variant="sqrt", smoother="none", inflation=1.1)


def test_stages_return_typed_results(tmp_path):
    path, r, X = linear_profile(tmp_path, n=12, missing_shell=False)
    cfg = load_config({"profile": str(path), "forward": {"kind": "linear"}, "map_check": False,
                       "ensemble": {"size": 32},
                       "growth": {"k0_um_per_Myr": 1e9, "Q_J_per_mol": 1e5, "walk": "radius"},
                       "hyperparameters": {"q_P": 0.05, "q_T": 2.0, "sd": 0.003}, "output": {"plots": False}},
                      PtpathConfig)
    res = ptpath.run_stages(cfg, tmp_path / "out", quiet=True)
    assert isinstance(res.problem, ptpath.Problem) and isinstance(res.inversion, ptpath.Inversion)
    assert res.sensitivity is None and res.inversion.map_path is None
    assert res.inversion.loglik_method == "exact" and isinstance(res.inversion.exact, ptpath.Exact)
    assert set(res.summary["timings"]) == {"read_s", "invert_s", "times_s", "write_s"}
    times = ptpath.growth_times(res.problem, res.inversion.smoothed, cfg)
    header, data = read_csv(tmp_path / "out" / "ptpath.csv")
    assert header[-1] == "t_Myr"
    np.testing.assert_allclose(data[:, -1], times.mean, rtol=1e-12)


def test_time_walk_with_ages_estimates_the_rate_and_gives_t_from_the_ensemble(tmp_path, capsys):
    """A profile grown along a known path at a known Arrhenius rate, dated at core and rim: the
    ages pull ln k0 (prior a factor 1.5 off, sd 0.5) to the truth, and t_Myr / age_Ma (the state's own clock,
    from the same ensemble as P and T) match the true time axis."""
    from jaxpetro.models import growth as gr

    n, k0, Q, A0 = 20, 4.0e7, 9.0e4, 40.0
    path, r, X = linear_profile(tmp_path, n=n, missing_shell=False)
    _, P_true, T_true = clockwise_path(n, 1000.0)
    D = gr.radial_steps(r)
    g = np.asarray(gr.rate_constant(T_true, np.log(k0), Q))
    t_true = np.cumsum(D / np.concatenate([g[:1], g[:-1]]))  # Δt_n = D_n / g(T_{n-1}); the core at T_0
    ages = tmp_path / "ages.csv"
    ages.write_text(f"radius_um,age_Ma,age_sd_Ma\n{r[0]},{A0 - t_true[0]},0.05\n{r[-1]},{A0 - t_true[-1]},0.05\n")
    cfg = load_config({"profile": str(path), "ages": str(ages), "forward": {"kind": "linear"}, "map_check": True,
                       "ensemble": {"size": 300}, "observation": {"closure": False},
                       "growth": {"k0_um_per_Myr": 1.5 * k0, "Q_J_per_mol": Q, "ln_k0_sd": 0.5,
                                  "Q_sd_J_per_mol": 100.0},
                       "hyperparameters": {"q_P": 0.4, "q_T": 15.0, "sd": 0.003, "model_sd": 0.0},
                       "output": {"plots": False}}, PtpathConfig)
    res = ptpath.run_stages(cfg, tmp_path / "out", quiet=False)
    assert res.problem.walk == "time" and res.problem.state_names[-1] == "A0_Ma"
    header, data = read_csv(tmp_path / "out" / "ptpath.csv")
    assert header == [*ptpath.CSV_COLUMNS, "t_Myr", "age_Ma"]
    np.testing.assert_allclose(data[:, -2], res.inversion.smoothed[..., 2].mean(1), rtol=1e-12)  # the ensemble's clock
    h5, _ = read_hdf5(tmp_path / "out" / "ptpath.h5")
    ln_k0, ln_k0_sd = h5["growth"]["ln_k0"], h5["growth"]["ln_k0_sd"]
    # measured: 17.66 ± 0.17 against the true 17.50 (the prior 17.91 ± 0.5); the sd is set by the
    # path's T uncertainty (d ln g / dT = Q / (R T²) ~ 0.015 per °C), not by the 0.05 Ma ages
    assert abs(ln_k0 - np.log(k0)) < 2 * ln_k0_sd and abs(ln_k0 - np.log(k0)) < 0.5 * np.log(1.5), (ln_k0, ln_k0_sd)
    assert ln_k0_sd < 0.5 * 0.5  # the ages, not the prior, set it
    assert np.abs(data[:, -2] - t_true).max() < 0.1 * t_true[-1]
    # the dated shells' ages are reproduced; A0 alone is loosely determined by the ensemble (the
    # nucleation time t_0 = D_0 / g(T_0) is heavy-tailed under the broad core prior: docs/ptpath.md)
    np.testing.assert_allclose(data[[0, -1], -1], [A0 - t_true[0], A0 - t_true[-1]], atol=0.15)
    # the MAP of the MRF posterior (same model) recovers the rate and the nucleation age
    assert h5["map"]["t_Myr"].shape == (n,)
    assert abs(h5["map"]["ln_k0"] - np.log(k0)) < 0.05 and abs(h5["map"]["A0_Ma"] - A0) < 0.2, h5["map"]
    err = capsys.readouterr().err
    assert "peak P" in err and "model_sd" in err and "ln_k0" in err


@pytest.mark.slow  # ~60-100 s on the shared 2-core machine (NUTS compilation)
def test_mcmc_writes_the_nuts_reference_and_matches_the_exact_posterior(tmp_path):
    """mcmc.enabled on the linear-Gaussian model: ptpath_mcmc.csv has ptpath.csv's columns and
    NUTS's mean and sd equal the exact posterior within Monte Carlo error; diagnostics with units."""
    import h5py

    path, r, X = linear_profile(tmp_path, n=8, missing_shell=False)
    cfg = load_config({"profile": str(path), "forward": {"kind": "linear"}, "map_check": False,
                       "ensemble": {"size": 32}, "mcmc": {"enabled": True, "chains": 2, "samples": 300, "warmup": 300},
                       "hyperparameters": {"q_P": 0.05, "q_T": 2.0, "sd": 0.003, "model_sd": 0.002},
                       "output": {"plots": False}}, PtpathConfig)
    res = ptpath.run_stages(cfg, tmp_path / "out", quiet=True)
    header, data = read_csv(tmp_path / "out" / "ptpath.csv")
    m_header, m_data = read_csv(tmp_path / "out" / "ptpath_mcmc.csv")
    assert m_header == header and m_data.shape == data.shape
    h5, _ = read_hdf5(tmp_path / "out" / "ptpath.h5")
    mc = h5["mcmc"]
    assert mc["samples"].shape == (2, 300, 8, 2) and mc["r_hat"].shape == (8, 2)
    assert mc["divergences"].sum() == 0 and np.nanmax(mc["r_hat"]) < 1.05
    ess = mc["ess"]
    exact_mean, exact_sd = data[:, 1:3], data[:, 3:5]  # the exact RTS posterior (linear-Gaussian)
    assert np.abs((m_data[:, 1:3] - exact_mean) / (exact_sd / np.sqrt(ess))).max() < 4.5
    assert np.abs((m_data[:, 3:5] / exact_sd - 1) * np.sqrt(2 * ess)).max() < 5.0
    with h5py.File(tmp_path / "out" / "ptpath.h5") as f:
        units = {}
        f.visititems(lambda name, obj: units.update({name: obj.attrs.get("units")}) if isinstance(obj, h5py.Dataset) else None)
    assert all(u is not None for u in units.values()), [k for k, u in units.items() if u is None]
    assert units["mcmc/r_hat"] == "1" and units["mcmc/seconds"] == "s" and "kbar" in units["mcmc/samples"]
    assert res.summary["mcmc"]["divergences"] == 0


def test_profile_outside_the_table_is_refused_before_inverting(tmp_path, capsys):
    r = np.linspace(50, 1000, 10)
    X = np.tile([0.80, 0.08, 0.06, 0.06], (10, 1))  # X_alm 0.80: the demo table reaches 0.53
    path = write_profile(tmp_path / "p.csv", r, X)
    code = main(["ptpath", "--out", str(tmp_path / "o"), "--quiet", "--set", f"profile={path}",
                 "--set", f"forward.path={demo_table_path()}"])
    err = capsys.readouterr().err
    assert code == InputError.exit_code and "X_alm = 0.8000" in err and "above the table's range" in err
    assert "Traceback" not in err

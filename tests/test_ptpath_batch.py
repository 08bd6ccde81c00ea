"""Batched ptpath (``jaxpetro.workflows.ptpath_batch``, the per-grain paths of ``jaxpetro section``):
profiles of different lengths, padded and inverted in one vmapped call, give the same numbers as
ptpath run on each one alone (same seed: same draws), to rounding."""

from pathlib import Path

import numpy as np
import pytest

from jaxpetro._precision import float64
from jaxpetro.config.loader import load_config
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.errors import InputError
from jaxpetro.io.profiles import write_profile
from jaxpetro.synthetic.garnet_profile import clockwise_path, demo_table_path, make_garnet_profile

#: the linearised table of tests/test_ptpath.py (closed: X0 sums to 1, A and B to 0)
LIN = {"X0": [0.70, 0.12, 0.10, 0.08], "P0": 8.0, "T0": 550.0, "A": [0.004, 0.004, -0.006, -0.002],
       "B": [-0.0001, 0.0004, -0.0001, -0.0002]}


def _h5(path: Path) -> dict:
    import h5py

    with h5py.File(path) as f:
        return {k: f[k][()] for k in ("ensemble/smoothed", "ensemble/filtered", "path/P_kbar", "path/T_C",
                                      "path/P_sd", "path/T_sd", "path/T_lo", "path/T_hi", "predicted/mean",
                                      "hyperparameters/loglik_history")}


def _same_as_one_by_one(configs, tmp_path, atol):
    from jaxpetro.workflows import ptpath, ptpath_batch

    alone = [ptpath.run(c, tmp_path / f"alone{i}", quiet=True) for i, c in enumerate(configs)]
    batch = ptpath_batch.run_batch(configs, [tmp_path / f"batch{i}" for i in range(len(configs))])
    for i, (a, b) in enumerate(zip(alone, batch)):
        assert isinstance(b, dict), b
        assert b["timings"]["batch_size"] == len(configs)
        ha, hb = _h5(tmp_path / f"alone{i}" / "ptpath.h5"), _h5(tmp_path / f"batch{i}" / "ptpath.h5")
        for k in ha:
            assert ha[k].shape == hb[k].shape, k
            np.testing.assert_allclose(hb[k], ha[k], rtol=0, atol=atol[k.split("/")[-1]] if isinstance(atol, dict)
                                       else atol, err_msg=f"profile {i}: {k}")
        for k in ("q_P", "q_T", "sd", "model_sd", "loglik"):
            assert b[k] == pytest.approx(a[k], rel=1e-10, abs=1e-12), (i, k)
        assert (tmp_path / f"batch{i}" / "ptpath.csv").read_text().splitlines()[0] == \
            (tmp_path / f"alone{i}" / "ptpath.csv").read_text().splitlines()[0]
    return alone, batch


@pytest.mark.slow  # 149 s at load 11 on the shared 2-core Xeon (four compilations of ptpath's core)
@float64
def test_padding_is_exact_for_the_linear_model_with_given_noise_scales(tmp_path):
    """Three linear-model profiles of 5, 8 and 11 shells (one with a missing shell), given noise
    scales: the batched ensembles and exact posteriors equal the runs one by one."""
    configs = []
    for i, n in enumerate((5, 8, 11)):
        r, P, T = clockwise_path(n, 80.0 + 10 * i)
        X = np.asarray(LIN["X0"]) + np.outer(P - LIN["P0"], LIN["A"]) + np.outer(T - LIN["T0"], LIN["B"])
        X = X + np.random.default_rng(i).normal(0, 0.003, X.shape)
        if i == 1:
            X[3] = np.nan
        path = write_profile(tmp_path / f"p{i}.csv", r + 4.0 * i, X)
        configs.append(load_config({"profile": str(path), "forward": {"kind": "linear", "linear": LIN}, "seed": 5,
                                    "map_check": False, "ensemble": {"size": 24},
                                    "hyperparameters": {"q_P": 0.05, "q_T": 2.0, "sd": 0.003},
                                    "output": {"plots": False}}, PtpathConfig))
    _same_as_one_by_one(configs, tmp_path, 1e-9)


@pytest.mark.slow  # 77 s at load 11 on the shared 2-core Xeon (one compilation of ptpath's core)
@float64
def test_a_profile_that_fails_is_returned_as_its_error_and_the_others_run(tmp_path):
    from jaxpetro.workflows import ptpath_batch

    good = make_garnet_profile(seed=0, n_shells=5, r_rim_um=50.0)
    bad_X = good.X.copy()
    bad_X[2, 3] = 0.9  # far outside the demo table's spessartine range
    configs = []
    for i, X in enumerate((good.X, bad_X)):
        path = write_profile(tmp_path / f"p{i}.csv", good.radius_um, X)
        configs.append(load_config({"profile": str(path), "forward": {"kind": "table", "path": str(demo_table_path())},
                                    "map_check": False, "ensemble": {"size": 16},
                                    "hyperparameters": {"q_P": 0.3, "q_T": 10.0, "sd": 0.005},
                                    "output": {"plots": False}}, PtpathConfig))
    res = ptpath_batch.run_batch(configs, [tmp_path / "a", tmp_path / "b"])
    assert isinstance(res[0], dict) and res[0]["n_steps"] == 5 and (tmp_path / "a" / "ptpath.csv").is_file()
    assert isinstance(res[1], InputError) and "outside the forward table" in str(res[1])


def test_pad_data_and_shared_leaves():
    from jaxpetro.models import ptpath_model as pm
    from jaxpetro.workflows.ptpath_batch import pad_data, shared_leaves

    n = 3
    aux = pm.StepAux(np.array([2.0, 5.0, 9.0]), np.array([2.0, 3.0, 4.0]), np.zeros(n))
    data = pm.Data(np.ones((n, 8)), np.ones((n, 8), bool), np.full((n, 4), 0.1), np.zeros((n, 4), bool),
                   np.tile(2 * np.eye(4), (n, 1, 1)), np.tile(3 * np.eye(4), (n, 1, 1)), aux, np.zeros(2), np.ones(2))
    p = pad_data(data, 5)
    np.testing.assert_array_equal(p.aux.radius, [2, 5, 9, 13, 17])
    np.testing.assert_array_equal(p.aux.D, [2, 3, 4, 4, 4])
    assert p.mask[:3].all() and not p.mask[3:].any() and p.common[3:].all() and not p.common[:3].any()
    np.testing.assert_array_equal(p.J[3:], np.tile(np.eye(4), (2, 1, 1)))
    np.testing.assert_array_equal(p.y[3:], 0.0)
    assert pad_data(data, 3) is data
    with pytest.raises(ValueError):
        pad_data(data, 2)
    tree, axes = shared_leaves([{"a": np.arange(3.0), "b": np.array(1.0)}, {"a": np.arange(3.0), "b": np.array(2.0)}])
    assert axes == {"a": None, "b": 0}
    np.testing.assert_array_equal(tree["b"], [1.0, 2.0])
    np.testing.assert_array_equal(tree["a"], np.arange(3.0))


@pytest.mark.slow  # 5-7 min at load 11 on the shared 2-core Xeon (four compilations with the noise-scale search)
@float64
def test_estimated_noise_scales_per_profile_equal_the_runs_one_by_one(tmp_path):
    """The demo table, noise scales estimated per profile (Adam on the ensemble likelihood),
    profiles of 6, 9 and 12 shells with their own Rayleigh rim radius: every profile's estimated
    scales, ensembles and bands equal its own ptpath run (measured: ensembles to 6e-11, T to 1.4e-11 °C)."""
    configs = []
    for i, n in enumerate((6, 9, 12)):
        s = make_garnet_profile(seed=i, n_shells=n, r_rim_um=10.0 * n)
        path = write_profile(tmp_path / f"p{i}.csv", s.radius_um + 5 * i, s.X, np.full_like(s.X, 0.005))
        configs.append(load_config({"profile": str(path), "forward": {"kind": "table", "path": str(demo_table_path())},
                                    "seed": 3, "map_check": False, "ensemble": {"size": 40},
                                    "hyperparameters": {"members": 30, "steps": 30}, "output": {"plots": False}},
                                   PtpathConfig))
    alone, batch = _same_as_one_by_one(configs, tmp_path, 1e-8)
    assert len({round(a["q_T"], 6) for a in alone}) == 3  # each profile its own estimate

"""The pixel axis over 8 host devices (models.parallel): the sharded EM, clustering and per-pixel
work equal the single-device results to rounding, for pixel counts not divisible by 8.

Runs in a subprocess because the number of host devices is fixed when JAX starts.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import numpy as np, jax, jax.numpy as jnp
    from jaxpetro.models import clustering, parallel
    from jaxpetro.errors import ConfigError

    with jax.enable_x64(True):
        devices = parallel.pixel_devices("all")
        assert len(devices) == 8 and len(parallel.pixel_devices(3)) == 3 and len(parallel.pixel_devices(None)) == 1
        try:
            parallel.pixel_devices(9)
        except ConfigError as err:
            assert "9 devices" in str(err)
        else:
            raise AssertionError("9 of 8 devices accepted")
        rng = np.random.default_rng(1)
        rows, cols, K = 37, 43, 3  # 1591 pixels: not a multiple of 8
        rates = rng.uniform(3, 80, (K, 5)); z = rng.integers(0, K, rows * cols)
        e = rng.uniform(0.9, 1.1, rows * cols)
        counts = rng.poisson(rates[z] * e[:, None]).reshape(rows, cols, 5).astype(np.float32)
        exposure = e.reshape(rows, cols)
        anchors = np.where(rng.random(rows * cols) < 0.02, z, -1).reshape(rows, cols).astype(np.int32)
        for model in ("poisson", "gaussian"):
            opts = clustering.ClusteringOptions(model=model, max_iter=25, tol=0.0)
            kw = dict(phases=("a", "b", "c"), anchors=anchors, options=opts)
            ref = clustering.cluster_map(counts, exposure, **kw)
            sh = clustering.cluster_map(counts, exposure, devices=devices, **kw)
            assert int(sh.status.iterations) == int(ref.status.iterations) == 25
            np.testing.assert_allclose(sh.memberships, ref.memberships, atol=1e-6)
            np.testing.assert_allclose(sh.params.loc, ref.params.loc, rtol=1e-8)
            assert abs(sh.loglik - ref.loglik) < 1e-10 * abs(ref.loglik)
        # per-pixel work: outputs in pixel order, padding removed, shared arguments whole
        x = jnp.asarray(rng.normal(size=(1591, 4)))
        w = jnp.asarray(rng.normal(size=(4, 2)))
        fn = lambda a, m: (jnp.tanh(a @ m), jnp.sum(a, axis=1))
        out = parallel.shard_pixels(fn, (x,), (0.0,), devices=devices, shared=(w,))
        ref = fn(x, w)
        np.testing.assert_allclose(out[0], ref[0], atol=1e-12); np.testing.assert_allclose(out[1], ref[1], atol=1e-12)
        assert out[0].shape == (1591, 2)
    print("PARALLEL-OK")
    """
)


def test_sharded_clustering_and_pixel_work_equal_single_device():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PARALLEL-OK" in proc.stdout


QMAP_SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    from pathlib import Path
    import numpy as np, jax
    from jaxpetro.config import load_config
    from jaxpetro.config.qmap import QmapConfig
    from jaxpetro.io.results import read_hdf5
    from jaxpetro.synthetic import make_thin_section
    from jaxpetro.workflows import qmap
    from jaxpetro.workflows.demo import export_section

    assert len(jax.local_devices()) == 8
    sec = make_thin_section(rows=61, cols=67, n_spots=24, seed=3)  # 4087 pixels: 7 short of a multiple of 8
    tmp = Path(tempfile.mkdtemp())
    export_section(sec, tmp / "in")
    from jaxpetro.models import parallel
    calls = []  # the sharded path is taken (and only with several devices): every padded call counted
    pad = parallel._pad
    parallel._pad = lambda arrays, fills, n: calls.append(n) or pad(arrays, fills, n)
    out = {}
    for devices in (1, "all"):
        # A fixed number of EM iterations (tol far below rounding): stopped by a tolerance, two runs
        # whose sums are ordered differently can stop a few iterations apart on the flat optimum
        # (the log-likelihood equal to the last bit while memberships still move by ~1e-6).
        cfg = load_config({"input": {"maps": str(tmp / "in" / "maps.npz"), "spots": str(tmp / "in" / "spots.csv")},
                           "clustering": {"max_iter": 12, "tol": 1e-300}, "output": {"plots": False},
                           "structural": {"enabled": False},  # not sharded: per-phase pixel blocks
                           "parallel": {"devices": devices}}, QmapConfig)
        summary = qmap.run(cfg, tmp / f"out_{devices}", quiet=True)
        data, _ = read_hdf5(tmp / f"out_{devices}" / "qmap.h5")
        out[devices] = summary, data
        print(devices, "sharded calls", calls, {k: round(v, 1) for k, v in summary["timings"].items()}, flush=True)
    (s1, d1), (s8, d8) = out[1], out["all"]
    assert s1["n_iter"] == s8["n_iter"], (s1["n_iter"], s8["n_iter"])
    report = {"membership": float(np.abs(d8["membership"] - d1["membership"]).max()),
              "fractions": float(np.abs(d8["fractions"] - d1["fractions"]).max()),
              "wt": max(float(np.nanmax(np.abs(d8["wt"][o] - d1["wt"][o]))) for o in d1["oxides"]),
              "se": max(float(np.nanmax(np.abs(d8["wt_se"][o] - d1["wt_se"][o]))) for o in d1["oxides"]),
              "modal": float(np.abs(d8["summary"]["modal"] - d1["summary"]["modal"]).max()),
              "modal_fractions": float(np.abs(d8["summary"]["modal_fractions"] - d1["summary"]["modal_fractions"]).max())}
    report["loglik"] = float(abs(d8["clustering"]["loglik"] - d1["clustering"]["loglik"]))
    print("DIFF", report)
    # EM (fit_mixture), mixing screens (2) and unmixing, quantification: all on the 8 devices
    assert calls == [8] * 5, calls
    np.testing.assert_array_equal(d8["phase_map"], d1["phase_map"])
    assert report["membership"] < 1e-6 and report["fractions"] < 1e-5, report
    assert report["wt"] < 1e-3 and report["se"] < 1e-3, report  # wt% (float32 outputs of ~0.01-60 wt%)
    assert report["modal"] < 1e-8 and report["modal_fractions"] < 1e-7, report
    for o in d1["oxides"]:  # the maps are the truth's to within noise: the comparison is not of two empty runs
        assert np.nanmean(np.abs(d1["wt"][o] - sec.wt[..., list(sec.oxides).index(o)])) < 3.0, o
    print("QMAP-PARALLEL-OK")
    """
)


def test_sharded_qmap_run_equals_single_device():
    """The whole qmap workflow (EM, mixing, quantification) with parallel.devices: all over 8 host
    devices equals parallel.devices: 1 to rounding, on 4087 pixels (not a multiple of 8)."""
    proc = subprocess.run([sys.executable, "-c", QMAP_SCRIPT], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "QMAP-PARALLEL-OK" in proc.stdout

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

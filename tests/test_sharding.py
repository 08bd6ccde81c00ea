"""A pixel-sharded EM (shard_map over 4 host devices + psum) equals the unsharded fit.

Runs in a subprocess because the number of host devices is fixed when JAX starts.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import numpy as np, jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)  # the EM accumulates its statistics in float64
    from jax.sharding import Mesh, PartitionSpec as P
    from jaxpetro.kernels import mixture as mx

    assert len(jax.devices()) == 4
    rng = np.random.default_rng(0)
    K, D, N = 3, 4, 4000
    rates = rng.uniform(2, 60, (K, D)); z = rng.integers(0, K, N); e = rng.uniform(0.8, 1.2, N)
    x = jnp.asarray(rng.poisson(rates[z] * e[:, None]).astype(np.float32)); e = jnp.asarray(e)
    anchors = jnp.asarray(np.where(rng.random(N) < 0.01, z, -1).astype(np.int32))
    for family in ("poisson", "full"):
        feat = x if family == "poisson" else jnp.sqrt(x / e[:, None])
        ex = e if family == "poisson" else None
        opts = mx.MixtureOptions(family=family, max_iter=15, tol=0.0, chunk_size=256)
        p0 = mx.init_from_centres(feat, feat[:K].astype(jnp.float64), ex, options=opts)
        ref = mx.fit(feat, p0, ex, anchors, options=opts)
        mesh = Mesh(np.array(jax.devices()), ("pix",))
        specs = mx.MixtureResult(*([P()] * 7))._replace(memberships=P("pix"))
        sharded_opts = opts.replace(axis_name="pix")
        fit = lambda f, ex, a, p: mx.fit(f, p, ex, a, options=sharded_opts)
        in_specs = (P("pix"), P("pix") if ex is not None else None, P("pix"), P())
        sharded = jax.shard_map(fit, mesh=mesh, in_specs=in_specs, out_specs=specs, check_vma=False)
        sh = sharded(feat, ex, anchors, p0)
        assert int(sh.status.iterations) == int(ref.status.iterations) == 15
        np.testing.assert_allclose(np.asarray(sh.memberships), np.asarray(ref.memberships), atol=1e-6)
        np.testing.assert_allclose(np.asarray(sh.params.loc), np.asarray(ref.params.loc), rtol=1e-9)
        np.testing.assert_allclose(float(sh.loglik), float(ref.loglik), rtol=1e-11)
    print("SHARDED-OK")
    """
)


def test_sharded_fit_equals_unsharded():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SHARDED-OK" in proc.stdout

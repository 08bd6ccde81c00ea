"""The pixel axis of a map over several devices (data parallelism with ``jax.shard_map``).

A map of N pixels is padded to a multiple of the device count with inert pixels (masked,
zero counts, unit exposure: the caller gives the fill of each array), cut into one
contiguous slice per device, and each device runs the same program on its slice:

* per-pixel work (unmixing, quantification) needs no communication
  (:func:`shard_pixels`);
* the EM of the mixture kernel sums its sufficient statistics over the slices with
  ``lax.psum`` between the E-pass and the M-step (the kernel's ``axis_name`` option), so
  every device holds the same parameters after each iteration and the fit equals the
  single-device fit up to the order of floating-point additions
  (:func:`fit_mixture`).

Devices are this process's local devices (``jax.local_devices()``): in a multi-process
job (``jax.distributed``) each process shards its own maps over its own GPUs, and
different maps go to different processes (``jaxpetro batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jaxpetro.errors import ConfigError
from jaxpetro.kernels import mixture

__all__ = ["AXIS", "fit_mixture", "pixel_devices", "shard_pixels"]

#: the mesh axis name of the pixel dimension
AXIS = "pixels"


def pixel_devices(devices: int | str | None = "all") -> tuple[Any, ...]:
    """The local devices to shard pixels over: ``"all"`` (default), a count N, or None (= 1).

    Raises:
        ConfigError: more devices asked for than this process has.
    """
    local = jax.local_devices()
    if devices is None:
        return tuple(local[:1])
    if devices == "all":
        return tuple(local)
    n = int(devices)
    if not 1 <= n <= len(local):
        raise ConfigError(f"parallel.devices: {n} devices asked for, this process has {len(local)} "
                          f"({local[0].platform}); use 'all' or a number from 1 to {len(local)}.")
    return tuple(local[:n])


def shard_pixels(fn: Callable[..., Any], pixel_arrays: Sequence[Any], fills: Sequence[Any], *,
                 devices: Sequence[Any], shared: Sequence[Any] = ()) -> Any:
    """``fn(*pixel_slices, *shared)`` on each device's slice of the pixel axis (axis 0).

    Args:
        fn: a per-pixel function: every output has the pixels on axis 0.
        pixel_arrays: arrays with N pixels on axis 0.
        fills: the inert value of each array for the padding rows.
        devices: from :func:`pixel_devices`; none or one device runs ``fn`` unsharded.
        shared: arguments every device gets whole (parameters, tables).

    Returns:
        ``fn``'s outputs for the N pixels, in order (padding removed).
    """
    if len(devices) <= 1:
        return fn(*pixel_arrays, *shared)
    n = pixel_arrays[0].shape[0]
    padded = _pad(pixel_arrays, fills, len(devices))
    mesh = Mesh(np.array(devices), (AXIS,))
    spec = PartitionSpec(AXIS)
    out_shape = jax.eval_shape(fn, *[a[: padded[0].shape[0] // len(devices)] for a in padded], *shared)
    mapped = jax.shard_map(
        fn, mesh=mesh,
        in_specs=(*[spec] * len(padded), *[PartitionSpec()] * len(shared)),
        out_specs=jax.tree.map(lambda _: spec, out_shape),
        check_vma=False,
    )
    return jax.tree.map(lambda o: o[:n], jax.jit(mapped)(*padded, *shared))


def fit_mixture(x, params: mixture.MixtureParams, exposure=None, anchors=None, mask=None, *,
                options: mixture.MixtureOptions = mixture.MixtureOptions(),
                devices: Sequence[Any] = ()) -> mixture.MixtureResult:
    """:func:`jaxpetro.kernels.mixture.fit` with the pixels sharded over ``devices``.

    The statistics are ``psum``-reduced over the devices each iteration; the memberships come
    back for the N pixels in order. With one device (or none given) it is the plain fit.
    """
    if len(devices) <= 1:
        return mixture.fit(x, params, exposure, anchors, mask, options=options)
    n = x.shape[0]
    e = jnp.ones(n, x.dtype) if exposure is None else exposure
    a = jnp.full(n, -1, jnp.int32) if anchors is None else anchors
    v = jnp.ones(n, bool) if mask is None else mask
    arrays = _pad((x, e, a, v), (0, 1, -1, False), len(devices))
    mesh = Mesh(np.array(devices), (AXIS,))
    sharded_options = options.replace(axis_name=AXIS)
    replicated = PartitionSpec()
    out_specs = mixture.MixtureResult(*([replicated] * len(mixture.MixtureResult._fields)))._replace(
        memberships=PartitionSpec(AXIS))
    spec = PartitionSpec(AXIS)

    def run(x_, e_, a_, v_, p_):
        # exposure None keeps the Gaussian families' features unweighted, as in the plain fit
        return mixture.fit(x_, p_, e_ if exposure is not None else None, a_, v_, options=sharded_options)

    fit = jax.jit(jax.shard_map(run, mesh=mesh, in_specs=(spec, spec, spec, spec, replicated),
                                out_specs=out_specs, check_vma=False))
    result = fit(*arrays, params)
    return result._replace(memberships=result.memberships[:n])


def _pad(arrays: Sequence[Any], fills: Sequence[Any], n_devices: int) -> tuple[Any, ...]:
    """Pad axis 0 to a multiple of ``n_devices`` with inert rows (so any pixel count works)."""
    n = arrays[0].shape[0]
    pad = -n % n_devices
    if not pad:
        return tuple(jnp.asarray(a) for a in arrays)
    return tuple(jnp.concatenate([jnp.asarray(a), jnp.full((pad,) + a.shape[1:], fill, a.dtype)])
                 for a, fill in zip(arrays, fills, strict=True))

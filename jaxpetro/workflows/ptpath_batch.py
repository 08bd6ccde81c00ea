"""Many ``jaxpetro ptpath`` inversions as ONE compiled call, vmapped over the profiles.

Used by ``jaxpetro section`` for the per-grain paths: every grain's aligned shells are one
profile, inverted alone (its own noise scales estimated, its own ensemble), but instead of one
compilation and one run of :func:`jaxpetro.workflows.ptpath._core` per grain -- the grains have
different numbers of shells, so every grain compiles its own program -- the profiles are padded
to a common number of steps and the core runs once under ``jax.vmap``.

Padding (why the result equals the runs one by one, to rounding): the padded steps come after
the rim, every observation of them masked. A step with no observation is an exact identity of
the ensemble analysis (:func:`jaxpetro.kernels._gaussian.neutralise_masked`: innovation and
anomalies zero, so the update factors are zero) and adds exactly 0 to the log-likelihood, so the
steps before it -- filter, full-lag EnKS, likelihood of the noise scales, their gradients -- are
the same numbers; their key pairs are the same too, because ``jax.random.split(key, (n, 2))``
gives the same first rows for any n with the partitionable threefry generator (JAX's default,
checked here). The padded steps' radii continue the last shell's spacing (positive steps: finite
process noise) and are cut off after the call. What may differ is rounding (a matrix product of
another shape sums in another order), amplified a little by the Adam search of the noise scales.
The MAP cross-check (L-BFGS, ``map_check``) is the exception: its smoothness prior spans the
padded steps too, so its iterations and its converged path differ within L-BFGS's tolerance.

Everything after the compiled core -- the checks, the bands, growth times, the optional
sensitivity and NUTS sample, the files -- is ptpath's own code, per profile
(:func:`jaxpetro.workflows.ptpath.finish_inversion`, :func:`jaxpetro.workflows.ptpath.run_stages`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpetro._precision import float64
from jaxpetro.config.ptpath import PtpathConfig
from jaxpetro.errors import JaxpetroError
from jaxpetro.models import ptpath_model as pm
from jaxpetro.workflows import ptpath

__all__ = ["pad_data", "run_batch", "shared_leaves", "with_start"]

#: _CoreOut fields with a leading step axis (cut back to each profile's own steps)
_PER_STEP = ("smoothed", "filtered", "mean", "pred", "exact_mean", "exact_sd", "map", "failed")


def _prefix_stable_keys() -> bool:
    """Whether ``split(key, (n, 2))[:m]`` equals ``split(key, (m, 2))`` (partitionable threefry)."""
    k = jax.random.key(0)
    a = jax.random.key_data(jax.random.split(k, (3, 2)))
    b = jax.random.key_data(jax.random.split(k, (5, 2)))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)[:3]))


def pad_data(data: pm.Data, n: int) -> pm.Data:
    """``data`` of m <= n steps padded to n: unobserved steps after the rim (mask False,
    observation 0, identity closure Jacobian and unit other-noise blocks), radii continuing the
    last spacing (1 µm after a one-step profile), step lengths ``D`` the last one's."""
    m = int(np.shape(data.y)[0])
    k = n - m
    if k < 0:
        raise ValueError(f"pad_data: {m} steps do not fit in {n}")
    if k == 0:
        return data

    def pad(x, value):
        x = np.asarray(x)
        fill = np.broadcast_to(np.asarray(value, x.dtype), (k, *x.shape[1:]))
        return np.concatenate([x, fill], axis=0)

    radius = np.asarray(data.aux.radius, float)
    dr = float(radius[-1] - radius[-2]) if m > 1 and radius[-1] > radius[-2] else 1.0
    D = np.asarray(data.aux.D, float)
    aux = data.aux._replace(radius=np.concatenate([radius, radius[-1] + dr * np.arange(1, k + 1)]),
                            D=pad(D, D[-1] if D[-1] > 0 else dr), line_b=pad(data.aux.line_b, 0.0))
    return data._replace(y=pad(data.y, 0.0), mask=pad(data.mask, False), frac_var=pad(data.frac_var, 1.0),
                         common=pad(data.common, True), J=pad(data.J, np.eye(4)), R_other=pad(data.R_other, np.eye(4)),
                         aux=aux)


def shared_leaves(trees: list) -> tuple:
    """(tree, in_axes) for ``jax.vmap`` over trees of one structure: a leaf equal in all of them
    is passed once (axis None: the forward table is not copied per profile), the others are
    stacked on a new leading axis (e.g. the Rayleigh rim radius, the profile's last radius)."""
    flat = [jax.tree_util.tree_flatten(t) for t in trees]
    treedef = flat[0][1]
    if any(f[1] != treedef for f in flat[1:]):
        raise ValueError("shared_leaves: the trees differ in structure")
    leaves, axes = [], []
    for parts in zip(*(f[0] for f in flat)):
        arrays = [np.asarray(p) for p in parts]
        if all(a.shape == arrays[0].shape and np.array_equal(a, arrays[0], equal_nan=True) for a in arrays[1:]):
            leaves.append(parts[0])
            axes.append(None)
        else:
            leaves.append(np.stack(arrays))
            axes.append(0)
    return treedef.unflatten(leaves), treedef.unflatten(axes)


def _group_key(problem: pm.Problem, config: PtpathConfig, statics: dict) -> tuple:
    """Profiles with equal keys share one compiled program (same model, options, statics, seed)."""
    return (statics["h"], statics["transition"], statics["exact"], statics["free"], statics["map_check"],
            problem.d, problem.kind, problem.walk, config.seed, repr(pm.smoother_options(config)),
            jax.tree_util.tree_structure(problem.params))


@functools.partial(jax.jit, static_argnames=("h", "transition", "exact", "free", "map_check", "params_axes"))
def _batched_core(key, data, params, theta0, options, bounds, *, h, transition, exact, free, map_check,
                  params_axes):
    core = functools.partial(ptpath._core, h=h, transition=transition, exact=exact, free=free, map_check=map_check)
    return jax.vmap(core, in_axes=(None, 0, params_axes.tree, 0, None, 0))(key, data, params, theta0, options,
                                                                                 bounds)


class _Hashable:
    """A pytree of in_axes (None / 0 leaves) as a hashable static argument."""

    def __init__(self, tree):
        self.tree = tree
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=lambda x: x is None)
        self._key = (tuple(leaves), treedef)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Hashable) and self._key == other._key


def _invert_group(items: list[tuple[pm.Problem, PtpathConfig, pm.HyperStart]], statics: dict) -> list:
    """One vmapped :func:`ptpath._core` over the group's problems; per profile a ``_CoreOut``
    (numpy, cut to its own steps)."""
    n = max(len(p.radius_um) for p, _, _ in items)
    datas = [pad_data(pm.data_of(p), n) for p, _, _ in items]
    data = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *datas)
    params, axes = shared_leaves([p.params for p, _, _ in items])
    theta0 = np.stack([h.log_theta for _, _, h in items])
    bounds = (np.stack([h.lower for _, _, h in items]), np.stack([h.upper for _, _, h in items]))
    config = items[0][1]
    out = _batched_core(jax.random.key(config.seed), data, params, jnp.asarray(theta0), pm.smoother_options(config),
                        (jnp.asarray(bounds[0]), jnp.asarray(bounds[1])), params_axes=_Hashable(axes), **statics)
    out = jax.tree_util.tree_map(np.asarray, out)
    results = []
    for b, (p, _, _) in enumerate(items):
        m = len(p.radius_um)
        fields = {}
        for name, value in out._asdict().items():
            if value is None:
                fields[name] = None
                continue
            v = value[b]
            fields[name] = v[:m] if name in _PER_STEP else v
        results.append(ptpath._CoreOut(**fields))
    return results


def with_start(problem: pm.Problem, start: dict[str, float] | None) -> pm.Problem:
    """``problem`` with the prior mean of the first step's state components named in ``start``
    (state name -> value in the state's units, :data:`jaxpetro.workflows.ptpath.STATE_UNITS`)
    replaced; e.g. ``ln_bulk_before_MnO`` of ``forward.kind: thermo`` (the reactive bulk before the
    last shell: a grain that nucleated late). ValueError for a name not in the state."""
    if not start:
        return problem
    names = list(problem.state_names)
    m0 = np.array(problem.m0, float)
    for name, value in start.items():
        if name not in names:
            raise ValueError(f"with_start: '{name}' is not a state component ({', '.join(names)})")
        m0[names.index(name)] = float(value)
    return dataclasses.replace(problem, m0=m0)


@float64
def run_batch(configs: list[PtpathConfig], out_dirs: list[Path], quiet: bool = True,
              starts: list[dict[str, float] | None] | None = None) -> list[dict | JaxpetroError]:
    """``jaxpetro ptpath`` on every config (one profile each) into its out dir, the inversions of
    compatible configs (same forward model, options, seed and estimated scales; e.g. the grains
    of one section) as one compiled, vmapped call. Returns per config ptpath's summary, or the
    :class:`~jaxpetro.errors.JaxpetroError` that profile raised (reading, range checks, a path
    leaving the table, a failed estimation): one profile's failure does not stop the others.
    Each summary's ``timings['batched_invert_s']`` is the wall time of its group's call.
    ``starts``: per config None or the first step's prior means to replace (:func:`with_start`;
    the prior mean is part of the vmapped data, so profiles with other starts share the call)."""
    if not _prefix_stable_keys():  # pragma: no cover - JAX's default since 0.5
        raise RuntimeError("ptpath_batch needs jax_threefry_partitionable (the default): with the old threefry the "
                           "padded profiles would draw other random numbers than the runs one by one")
    results: list = [None] * len(configs)
    groups: dict[tuple, list[int]] = {}
    prepared = {}
    for i, cfg in enumerate(configs):
        try:
            problem = with_start(ptpath.build_problem(cfg), (starts or [None] * len(configs))[i])
            pm.check_profile_range(problem)
        except JaxpetroError as err:
            results[i] = err
            continue
        hyper = pm.start(problem, cfg.hyperparameters)
        statics = ptpath.core_statics(problem, cfg, hyper)
        prepared[i] = (problem, cfg, hyper, statics)
        groups.setdefault(_group_key(problem, cfg, statics), []).append(i)
    for members in groups.values():
        t0 = time.perf_counter()
        cores = _invert_group([prepared[i][:3] for i in members], prepared[members[0]][3])
        seconds = time.perf_counter() - t0
        for i, core in zip(members, cores):
            problem, cfg, hyper, statics = prepared[i]
            try:
                inv = ptpath.finish_inversion(problem, cfg, hyper, statics["exact"], core)
                run = ptpath.run_stages(cfg, out_dirs[i], quiet=quiet, inverted=(problem, inv))
                results[i] = {**run.summary, "timings": {**run.summary["timings"], "batched_invert_s": seconds,
                                                         "batch_size": len(members)}}
            except JaxpetroError as err:
                results[i] = err
    return results

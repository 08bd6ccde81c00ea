"""The one pad-reshape-map driver for work over pixel blocks (bounded memory).

A map of N pixels is cut into blocks of ``block_size`` along axis 0; the tail block is
padded with a fill value chosen by the caller (zero counts, unit exposure, an invalid
mask...) so that padded rows are inert, and cut off the outputs again.

This module imports nothing of jaxpetro.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array


def n_blocks(n: int, block_size: int) -> int:
    """Number of blocks of ``block_size`` that cover ``n`` rows."""
    return -(-n // block_size)


def clamp_block_size(block_size: int, n: int) -> int:
    """``block_size`` clamped to [1, n] (a block larger than the data only pads)."""
    return int(max(1, min(int(block_size), n)))


def to_blocks(arrays: Sequence[Array], block_size: int, fills: Sequence[Any]) -> tuple[Array, ...]:
    """Pad each array along axis 0 to a multiple of ``block_size`` with its fill value and
    reshape it to (n_blocks, block_size, ...)."""
    n = arrays[0].shape[0]
    nb = n_blocks(n, block_size)
    pad = nb * block_size - n
    out = []
    for a, fill in zip(arrays, fills, strict=True):
        if pad:
            a = jnp.concatenate([a, jnp.full((pad,) + a.shape[1:], fill, a.dtype)])
        out.append(a.reshape((nb, block_size) + a.shape[1:]))
    return tuple(out)


def from_blocks(out: Any, n: int) -> Any:
    """Inverse of :func:`to_blocks` for a pytree of (n_blocks, block_size, ...) outputs:
    flatten the two leading axes and drop the padded rows."""
    return jax.tree.map(lambda o: o.reshape((o.shape[0] * o.shape[1],) + o.shape[2:])[:n], out)


def map_blocks(fn: Callable[..., Any], arrays: Sequence[Array], block_size: int, fills: Sequence[Any]) -> Any:
    """``fn(*blocks)`` over blocks of rows with ``lax.map`` (one block in memory at a time);
    returns ``fn``'s pytree of outputs with the rows of all blocks, padding removed."""
    n = arrays[0].shape[0]
    blocks = to_blocks(arrays, block_size, fills)
    return from_blocks(jax.lax.map(lambda b: fn(*b), blocks), n)


__all__ = ["clamp_block_size", "from_blocks", "map_blocks", "n_blocks", "to_blocks"]

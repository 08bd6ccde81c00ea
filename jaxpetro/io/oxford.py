"""Oxford Instruments AZtec ``.h5oina`` files (HDF5): EDS element maps.

Read with h5py from the file's public HDF5 layout (described in ``docs/formats.md``):

==========================================  ==============================================
path (under the slice group, ``1``)         content
==========================================  ==============================================
``EDS/Header/X Cells``, ``Y Cells``         map width and height (pixels), shape (1,)
``EDS/Header/X Step``, ``Y Step``           pixel size (µm), shape (1,)
``EDS/Data/Window Integral/<line>``         counts per pixel of one X-ray line window
                                            (``Si Ka1``, ``Fe Kα1``...), flat (X Cells *
                                            Y Cells,) in row order (x fastest); older files
                                            hold a group ``<line>`` with a ``Counts`` dataset
``EDS/Data/Live Time``                      optional: live time per pixel (s)
``Electron Image/Data/<detector>/<name>``   optional: electron images (kept when they are
                                            on the EDS grid)
==========================================  ==============================================

EDS files do not record the probe current in a form read here, so it is an argument (any
positive value works for a qmap calibration made on these maps: alpha absorbs it).
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from jaxpetro.errors import InputError
from jaxpetro.io.generic import MapStack, SpotSet, read_spot_set

__all__ = ["read_h5oina", "read_h5oina_maps"]

_LINE = re.compile(r"^([A-Z][a-z]?)[\s_]*([KLMN])", re.U)


def read_h5oina(path, spots=None, *, current_A: float | None = None, dwell_ms: float | None = None,
                slice_name: str = "1", electron_images: bool = True) -> tuple[MapStack, SpotSet | None]:
    """Read the EDS maps of an ``.h5oina`` file, and a generic spot CSV (pixel positions) if given.

    Args:
        path: the ``.h5oina`` file.
        spots: spot CSV with ``x_px``, ``y_px``, ``phase`` and wt% columns
            (:func:`jaxpetro.io.generic.read_spot_set`), or None.
        current_A: probe current (A), required (the file does not carry it).
        dwell_ms: dwell time per pixel (ms); default the mean of ``EDS/Data/Live Time``.
        slice_name: the top-level group of the map (``"1"`` for a single map).
        electron_images: also return electron images on the EDS grid as channels.

    Returns:
        (stack, spots) with ``counts[row, col, channel]`` (row = y cell, col = x cell).
    """
    stack = read_h5oina_maps(path, current_A=current_A, dwell_ms=dwell_ms, slice_name=slice_name,
                             electron_images=electron_images)
    spot_set = read_spot_set(spots, stack.counts.shape[:2]) if spots is not None else None
    return stack, spot_set


def read_h5oina_maps(path, *, current_A: float | None = None, dwell_ms: float | None = None, slice_name: str = "1",
                     electron_images: bool = True) -> MapStack:
    """The maps of :func:`read_h5oina`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"h5oina file '{path}' not found; check the path (relative to the config file's folder).")
    if current_A is None or not (np.isfinite(current_A) and current_A > 0):
        raise InputError(f"h5oina file '{path}': the probe current is not stored in the file; give it as input.current_A "
                         f"(A, positive), got {current_A!r}.")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        what = "it is empty (0 bytes)" if path.stat().st_size == 0 else str(err)
        raise InputError(f"h5oina file '{path}' cannot be read as HDF5 ({what}); the file is truncated or damaged - "
                         "re-export or re-copy it.") from None
    with f:
        try:
            return _read(f, path, current_A, dwell_ms, slice_name, electron_images)
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"h5oina file '{path}' cannot be read ({type(err).__name__}: {err}); the file is damaged.") from None


def _read(f: h5py.File, path: Path, current_A: float, dwell_ms, slice_name: str, electron_images: bool) -> MapStack:
    if slice_name not in f:
        raise InputError(f"h5oina file '{path}' has no group '{slice_name}' (groups: {', '.join(f.keys())}); set the slice.")
    root = f[slice_name]
    header = f"{slice_name}/EDS/Header"

    def scalar(name: str, kind=float):
        key = f"{header}/{name}"
        if key not in f:
            raise InputError(f"h5oina file '{path}' lacks '{key}'; is this an AZtec EDS map export?")
        value = np.asarray(f[key][()]).ravel()
        if value.size != 1:
            raise InputError(f"h5oina file '{path}': '{key}' must hold one value, got {value.size}.")
        return kind(value[0])

    nx, ny = scalar("X Cells", int), scalar("Y Cells", int)
    step_x, step_y = scalar("X Step"), scalar("Y Step")
    if nx < 1 or ny < 1:
        raise InputError(f"h5oina file '{path}': X Cells, Y Cells must be >= 1, got {nx}, {ny}.")
    if not (step_x > 0 and abs(step_x - step_y) <= 1e-6 * step_x):
        raise InputError(f"h5oina file '{path}': non-square or non-positive pixels ({step_x} x {step_y} µm) are not supported.")
    window = f"{slice_name}/EDS/Data/Window Integral"
    if window not in f or not len(f[window]):
        raise InputError(f"h5oina file '{path}' has no EDS element maps ('{window}' is missing or empty); export the map "
                         "with its window integrals.")
    names, layers = [], []
    for line in f[window]:
        item = f[f"{window}/{line}"]
        data = item["Counts"] if isinstance(item, h5py.Group) and "Counts" in item else item
        if not isinstance(data, h5py.Dataset):
            raise InputError(f"h5oina file '{path}': '{window}/{line}' is neither a dataset nor a group with 'Counts'.")
        layers.append(_on_grid(np.asarray(data[()]), nx, ny, path, f"{window}/{line}"))
        names.append(line)
    channels = _channel_names(names)
    if electron_images and f"{slice_name}/Electron Image/Data" in f:
        group = root["Electron Image/Data"]
        for detector in group:
            if not isinstance(group[detector], h5py.Group):
                continue
            for image in group[detector]:
                data = np.asarray(group[detector][image][()])
                if data.size == nx * ny and detector.upper() not in channels:  # other grids are overview images
                    layers.append(data.reshape(ny, nx).astype(np.float64))
                    channels.append(detector.upper())
                    break
    if dwell_ms is None:
        key = f"{slice_name}/EDS/Data/Live Time"
        if key not in f:
            raise InputError(f"h5oina file '{path}' has no '{key}'; give the dwell time per pixel as input.dwell_ms.")
        live = _on_grid(np.asarray(f[key][()]), nx, ny, path, key)
        dwell_ms = float(np.mean(live)) * 1e3
    if not (np.isfinite(dwell_ms) and dwell_ms > 0):
        raise InputError(f"h5oina file '{path}': the dwell time must be positive, got {dwell_ms} ms.")
    n = len(channels)
    return MapStack(
        counts=np.stack(layers, axis=-1).astype(np.float32), channels=tuple(channels),
        dwell_ms=np.full(n, dwell_ms), current_A=np.full(n, float(current_A)), step_um=float(step_x),
    )


def _on_grid(data: np.ndarray, nx: int, ny: int, path: Path, key: str) -> np.ndarray:
    """A flat (nx * ny,) or (ny, nx) dataset as (ny, nx) float64."""
    if data.shape == (ny, nx):
        out = data
    elif data.ndim == 1 and data.size == nx * ny:
        out = data.reshape(ny, nx)  # row order: x runs fastest
    else:
        raise InputError(f"h5oina file '{path}': '{key}' holds {data.size} values {data.shape} but the header gives "
                         f"X Cells x Y Cells = {nx} x {ny} = {nx * ny}; the file is truncated or its header is wrong.")
    out = out.astype(np.float64)
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise InputError(f"h5oina file '{path}': '{key}' holds negative or non-finite counts.")
    return out


def _channel_names(lines: list[str]) -> list[str]:
    """``Si Ka1`` -> ``Si``; when an element has several lines the K line (else the first)
    gets the element symbol and the others keep their full name (``Fe La1``)."""
    parsed = [_LINE.match(line.strip()) for line in lines]
    order = sorted(range(len(lines)), key=lambda i: "KLMN".index(parsed[i].group(2)) if parsed[i] else 4)
    out = [line.strip() for line in lines]
    taken: set[str] = set()
    for i in order:
        if parsed[i] and parsed[i].group(1) not in taken:
            out[i] = parsed[i].group(1)
            taken.add(out[i])
    return out

"""Mask images: pixel masks and label images of a map (``.npy``, ``.csv``/``.txt`` matrices,
``.png``/``.tif`` images), read as they are; what a value means is the caller's (``qmap``'s
``input.mask`` excludes nonzero pixels, ``section``'s ``grains.mask`` labels grains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxpetro.errors import InputError

__all__ = ["read_mask_image"]


def read_mask_image(path: str | Path, key: str) -> np.ndarray:
    """The array stored in a mask file: (rows, cols), or (rows, cols, channels) for a colour image.

    Args:
        path: a ``.npy`` array, a ``.csv``/``.txt`` matrix (comma, semicolon, tab or space
            separated) or a ``.png``/``.tif``/``.tiff`` image.
        key: the config key that named the file, for the error messages.

    Raises:
        InputError: a missing file, an unknown file type, or a file that cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{key}: file '{path}' not found; give a .npy, .csv/.txt or .png/.tif mask.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        if suffix in (".csv", ".txt"):
            text = path.read_text(encoding="utf-8-sig")
            sep = next((d for d in (",", ";", "\t") if d in text), None)
            return np.loadtxt(path, delimiter=sep, ndmin=2, encoding="utf-8-sig")
        if suffix in (".png", ".tif", ".tiff"):
            from skimage.io import imread  # a declared dependency; imported here: only masks need it

            return np.asarray(imread(path))
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or truncated .npy
        raise InputError(f"{key}: '{path}' cannot be read as a mask ({type(exc).__name__}: {exc}).") from None
    raise InputError(f"{key}: unknown file type '{path.suffix}' of '{path}'; use .npy, .csv, .txt, .png or .tif.")

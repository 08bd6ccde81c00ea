"""Bruker Esprit ``.bcf`` hypermaps (EDS spectrum images) as element maps, via rosettasciio.

The ``.bcf`` container is read by RosettaSciIO (``rsciio.bruker``), an optional dependency
installed with the ``bruker`` extra (``pip install 'jaxpetro[bruker]'``). RosettaSciIO is
GPL-3.0 licensed, so it is never a required dependency and is imported only when a ``.bcf``
is read; without it :func:`read_bcf` raises a ConfigError saying how to install it.

Each element map is the sum, per pixel, of the spectrum channels whose centre energy lies
in the element's line window E0 ± w/2, w = ``window_fwhm`` x FWHM(E0), with the detector
resolution FWHM(E)² = FWHM(Mn Kα)² + 2.5 eV · (E − 5898.8 eV) (Fiori & Newbury 1978; E,
FWHM in eV). Line energies E0 (keV; Bearden 1967) are in :data:`LINES`, by line
(``Si_Ka``); ``lines`` overrides or extends them, keyed by line or by element (``{"Si":
1.74}``). The lines mapped are those the file lists (Esprit's element selection) plus the
keys of ``lines``; a listed line without an energy is left out with a warning naming it.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io.generic import MapStack, SpotSet, read_spot_set

__all__ = ["LINES", "line_window", "maps_from_spectrum_image", "read_bcf"]

#: X-ray line energies (keV) by line, ``<El>_<line>`` as rosettasciio names Esprit's element
#: selection: Kα1 (``Ka``) and Lα1 (``La``) energies of Bearden (1967).
LINES: dict[str, float] = {
    "C_Ka": 0.2770, "O_Ka": 0.5249, "F_Ka": 0.6768, "Na_Ka": 1.0410, "Mg_Ka": 1.2536, "Al_Ka": 1.4867,
    "Si_Ka": 1.7400, "P_Ka": 2.0137, "S_Ka": 2.3078, "Cl_Ka": 2.6224, "K_Ka": 3.3138, "Ca_Ka": 3.6917,
    "Ti_Ka": 4.5109, "V_Ka": 4.9522, "Cr_Ka": 5.4147, "Mn_Ka": 5.8988, "Fe_Ka": 6.4038, "Co_Ka": 6.9303,
    "Ni_Ka": 7.4782, "Cu_Ka": 8.0478, "Zn_Ka": 8.6389, "Fe_La": 0.7050, "Sr_La": 1.8065, "Y_La": 1.9226,
    "Zr_La": 2.0424, "Ba_La": 4.4663, "La_La": 4.6510, "Ce_La": 4.8402,
}  # fmt: skip
_MN_KA_EV = 5898.8
# The .bcf container (Bruker's "SFS"): magic at 0; float32 version and uint32 chunk size at 0x124;
# uint32 tree address, tree items and number of chunks at 0x140 (little-endian); the chunks follow a
# 0x118-byte header, so a complete file has 0x118 + chunks x chunk size bytes.
_SFS_MAGIC = b"AAMVHFSS"
_SFS_HEADER = 0x118
_INSTALL = "pip install 'jaxpetro[bruker]' (installs rosettasciio, GPL-3.0)"


def line_window(energy_keV: float, *, fwhm_mn_eV: float = 130.0, window_fwhm: float = 1.2) -> tuple[float, float]:
    """(low, high) keV of the integration window around a line at ``energy_keV``."""
    fwhm_sq = fwhm_mn_eV**2 + 2.5 * (energy_keV * 1e3 - _MN_KA_EV)
    if fwhm_sq <= 0:
        raise ConfigError(f"detector resolution {fwhm_mn_eV} eV at Mn Ka gives no width at {energy_keV} keV; use a "
                          "realistic FWHM (about 120-140 eV).")
    half = 0.5 * window_fwhm * math.sqrt(fwhm_sq) * 1e-3
    return energy_keV - half, energy_keV + half


def maps_from_spectrum_image(data: np.ndarray, offset_keV: float, scale_keV: float, lines: dict[str, float], *,
                             fwhm_mn_eV: float = 130.0, window_fwhm: float = 1.2) -> tuple[np.ndarray, tuple[str, ...]]:
    """Window integrals of a spectrum image.

    Args:
        data: (rows, cols, channels) counts.
        offset_keV, scale_keV: energy of channel 0 and channel width (keV).
        lines: {element: line energy keV}.

    Returns:
        ((rows, cols, len(lines)) float64 counts, element names).

    Raises:
        InputError: a window lies outside the recorded energy range or holds no channel.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"the spectrum image must be (rows, cols, channels), got shape {data.shape}.")
    centres = offset_keV + scale_keV * np.arange(data.shape[2])
    out = np.empty(data.shape[:2] + (len(lines),))
    for k, (element, energy) in enumerate(lines.items()):
        low, high = line_window(energy, fwhm_mn_eV=fwhm_mn_eV, window_fwhm=window_fwhm)
        chans = np.flatnonzero((centres >= low) & (centres <= high))
        if chans.size == 0:
            raise InputError(f"the {element} window {low:.3f}-{high:.3f} keV holds no channel of the spectrum "
                             f"({centres[0]:.3f}-{centres[-1]:.3f} keV); drop {element} or give its line energy in 'lines'.")
        out[..., k] = data[..., chans].sum(axis=-1, dtype=np.float64)
    return out, tuple(lines)


def read_bcf(path, spots=None, *, current_A: float | None = None, dwell_ms: float | None = None,
             lines: dict[str, float] | None = None, index: int | None = None, fwhm_mn_eV: float = 130.0,
             window_fwhm: float = 1.2) -> tuple[MapStack, SpotSet | None]:
    """Read a Bruker ``.bcf`` hypermap as element maps, and a generic spot CSV if given.

    Args:
        path: the ``.bcf`` file.
        spots: spot CSV with ``x_px``, ``y_px``, ``phase`` and wt% columns, or None.
        current_A: probe current (A), required (not read from the file).
        dwell_ms: dwell time per pixel (ms); default the map's live time (else real time) from
            the file's metadata divided by the number of pixels.
        lines: {line or element: energy keV} overriding or adding to :data:`LINES`
            (``{"Nd_La": 5.23}``, ``{"Si": 1.74}``); the lines of the file's element selection
            and these are mapped.
        index: which hypermap of a multi-map file (rosettasciio's ``index``; default the first).
        fwhm_mn_eV, window_fwhm: window width (see the module docstring).

    Raises:
        ConfigError: rosettasciio is not installed, or no elements to map.
        InputError: the file is missing, truncated or damaged, or the conditions are missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Bruker file '{path}' not found; check the path (relative to the config file's folder).")
    if current_A is None or not (np.isfinite(current_A) and current_A > 0):
        raise InputError(f"Bruker file '{path}': the probe current is not read from the file; give it as input.current_A "
                         f"(A, positive), got {current_A!r}.")
    _check_container(path)  # rosettasciio's compiled parser can crash the process on a truncated file
    try:
        from rsciio.bruker import file_reader
    except ImportError:
        raise ConfigError(f"reading the Bruker file '{path}' needs the optional rosettasciio package: {_INSTALL}.") from None
    try:
        items = file_reader(str(path), select_type="spectrum_image", index=index)
    except (OSError, ValueError, KeyError, IndexError, EOFError, struct.error, zlib.error) as err:
        raise InputError(f"Bruker file '{path}' cannot be read ({type(err).__name__}: {err}); the file is truncated or "
                         "damaged - re-export or re-copy it.") from None
    if not items:
        raise InputError(f"Bruker file '{path}' holds no hypermap (spectrum image); export the map with its spectra.")
    item = items[0]
    data = np.asarray(item["data"])
    if data.ndim != 3:
        raise InputError(f"Bruker file '{path}': the hypermap has shape {data.shape}, expected (rows, cols, channels).")
    energy = item["axes"][2]
    given = {k: v for k, v in (lines or {}).items() if "_" in k}
    by_element = {k: v for k, v in (lines or {}).items() if "_" not in k}
    selected = [str(x) for x in item.get("metadata", {}).get("Sample", {}).get("xray_lines", [])]
    wanted: dict[str, float] = {}  # channel (element) -> line energy keV
    skipped = []
    for line in selected:
        element = _element(line)
        if element is None or element in wanted:
            continue
        energy_keV = by_element.get(element, given.get(line, LINES.get(line)))
        if energy_keV is None:
            skipped.append(line)
        else:
            wanted[element] = energy_keV
    for key, value in (lines or {}).items():  # lines given but not selected in Esprit
        element = _element(key) if "_" in key else key
        if element and element not in wanted:
            wanted[element] = value
    if skipped:
        warnings.warn(f"Bruker file '{path}': no line energy for {', '.join(skipped)}; left out (give them in 'lines', "
                      "keV, e.g. {'Nd_La': ...}).", UserWarning, stacklevel=2)
    if not wanted:
        raise ConfigError(f"Bruker file '{path}' lists no element with a known line energy; name them with their line "
                          "energies in 'lines' (e.g. {'Si': 1.74}).")
    maps, names = maps_from_spectrum_image(data, float(energy["offset"]), float(energy["scale"]), wanted,
                                           fwhm_mn_eV=fwhm_mn_eV, window_fwhm=window_fwhm)
    if dwell_ms is None:
        eds = (item.get("metadata", {}).get("Acquisition_instrument", {}).get("SEM", {}).get("Detector", {})
               .get("EDS", {}))
        total = eds.get("live_time", eds.get("real_time"))  # seconds for the whole map
        if total is None:
            raise InputError(f"Bruker file '{path}' records no live or real time; give the dwell time per pixel as "
                             "input.dwell_ms.")
        dwell_ms = float(total) * 1e3 / (data.shape[0] * data.shape[1])
    if not (np.isfinite(dwell_ms) and dwell_ms > 0):
        raise InputError(f"Bruker file '{path}': the dwell time must be positive, got {dwell_ms} ms.")
    step = item["axes"][0].get("scale")
    units = item["axes"][0].get("units")
    n = len(names)
    stack = MapStack(
        counts=maps.astype(np.float32), channels=names, dwell_ms=np.full(n, float(dwell_ms)),
        current_A=np.full(n, float(current_A)), step_um=float(step) if units == "µm" and step else None,
    )
    spot_set = read_spot_set(spots, stack.counts.shape[:2]) if spots is not None else None
    return stack, spot_set


def _check_container(path: Path) -> None:
    """InputError unless ``path`` is a complete SFS container (magic, and the size its header announces)."""
    with open(path, "rb") as fh:
        head = fh.read(0x14C)
    size = path.stat().st_size
    if len(head) < 0x14C or head[:8] != _SFS_MAGIC:
        what = "too short for its header" if head[:8] == _SFS_MAGIC else "not a Bruker .bcf (no 'AAMVHFSS' container mark)"
        raise InputError(f"Bruker file '{path}' ({size} bytes) is {what}; re-export or re-copy it.")
    chunk = struct.unpack("<I", head[0x128:0x12C])[0]
    n_chunks = struct.unpack("<I", head[0x148:0x14C])[0]
    expected = _SFS_HEADER + n_chunks * chunk
    if chunk == 0 or size < expected:
        raise InputError(f"Bruker file '{path}' has {size} bytes but its header announces {n_chunks} chunks of {chunk} "
                         f"bytes ({expected} bytes): the file is truncated; re-export or re-copy it.")


def _element(xray_line: str) -> str | None:
    """``Fe_Ka`` -> ``Fe``."""
    m = re.match(r"^([A-Z][a-z]?)", str(xray_line))
    return m.group(1) if m else None

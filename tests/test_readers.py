"""Instrument readers for qmap: JEOL binary .map, Cameca text exports, CalcImage .DAT,
Oxford .h5oina, Bruker .bcf (through rosettasciio).

Every format is written here by a writer of our own from the layout in docs/formats.md,
read back and compared with the numbers written; each reader is also given a truncated file
and a wrong matrix size, which must raise InputError naming the file.
"""

from __future__ import annotations

import struct
import sys
import types

import h5py
import numpy as np
import pytest

from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io import bruker, cameca, jeol, oxford, pfe

RNG = np.random.default_rng(7)


# ----------------------------------------------------------------------------- JEOL binary .map


def write_jeol_binary(folder, dialect, maps, *, dtype=">u2", header=b"", start=(12.5, 30.25), step_um=2.0,
                      dwell_ms=20.0, current_A=5e-8, text=False):
    """One map area as JEOL writes it: per channel a binary .map (header bytes, then the nx x ny
    matrix as unsigned integers) and its $-key .cnd; ``text`` also writes the text export."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (name, matrix) in enumerate(maps.items(), 1):
        nx, ny = matrix.shape
        stem = str(k) if dialect == "old" else f"data{k:03d}"
        (folder / f"{stem}.map").write_bytes(header + np.ascontiguousarray(matrix).astype(dtype).tobytes())
        if dialect == "old":
            cnd = [f"$XM_ELEMENT {name}", f"$XM_DWELL_TIME {dwell_ms} msec", f"$CM_CURRENT {current_A}",
                   f"$XM_STEP_SIZE {step_um}", f"$XM_MAP_START {start[0]} {start[1]} 11.0", f"$XM_POINTS {nx} {ny}"]
        else:
            cnd = [f"$XM_ELEM_NAME%0 {name}", f"$XM_AP_SA_DWELL_TIME%0 {dwell_ms}", f"$XM_DATA_PROBE_CURRENT {current_A}",
                   f"$XM_AP_SA_PIXEL_SIZE%0 {step_um} {step_um} 50.00", f"$XM_AP_SA_STAGE_POS%0_1 {start[0]} {start[1]} 11.0",
                   f"$XM_AP_SA_PIXELS%0 {nx} {ny}"]
        (folder / f"{stem}.cnd").write_text("\n".join(cnd) + "\n")
        if text:
            sep = " " if dialect == "old" else ","
            name_txt = f"{k}_map.txt" if dialect == "old" else f"data{k:03d}.csv"
            (folder / name_txt).write_text("\n".join(sep.join(str(int(v)) for v in row) for row in matrix) + "\n")


def _counts(nx, ny, high=400):
    return RNG.integers(0, high, size=(nx, ny))


@pytest.mark.parametrize("dialect,dtype,header", [("old", ">u2", b"\x00" * 32), ("new", ">u4", b""),
                                                  ("old", ">u4", b"JEOL" * 8)])
def test_jeol_binary_round_trip_equals_text_export(tmp_path, dialect, dtype, header):
    maps = {"Si": _counts(6, 9), "Fe": _counts(6, 9, 70000 if dtype == ">u4" else 400)}
    write_jeol_binary(tmp_path, dialect, maps, dtype=dtype, header=header, text=True)
    binary = jeol.read_jeol_maps(tmp_path, map_files="binary")
    text = jeol.read_jeol_maps(tmp_path, map_files="text")
    assert jeol.detect_dialect(tmp_path, map_files="binary") == dialect
    assert binary.channels == ("Si", "Fe")
    for k, m in enumerate(maps.values()):  # old: file line = image row; new: transposed (docs/jeol.md)
        np.testing.assert_array_equal(binary.counts[..., k], m if dialect == "old" else m.T)
    np.testing.assert_array_equal(binary.counts, text.counts)
    assert binary.step_um == 2.0 and binary.map_start_mm == (12.5, 30.25)
    np.testing.assert_allclose(binary.dwell_ms, 20.0)
    np.testing.assert_allclose(binary.current_A, 5e-8)


def test_jeol_binary_only_folder_is_found_by_auto(tmp_path):
    write_jeol_binary(tmp_path, "new", {"Mg": _counts(4, 5)})
    stack = jeol.read_jeol_maps(tmp_path)  # no text export: auto reads the binary maps
    assert stack.counts.shape == (5, 4, 1)


def test_jeol_binary_little_endian_and_explicit_dtype(tmp_path):
    m = _counts(5, 7)
    write_jeol_binary(tmp_path, "old", {"Ca": m}, dtype="<u2")
    stack = jeol.read_jeol_maps(tmp_path, byte_order="little", map_dtype="uint16")
    np.testing.assert_array_equal(stack.counts[..., 0], m)


def test_jeol_binary_wrong_byte_order_is_named(tmp_path):
    write_jeol_binary(tmp_path, "old", {"Ca": _counts(8, 8, 200) + 1}, dtype="<u2")
    with pytest.raises(InputError, match=r"1\.map'.*wrong byte order.*'little'"):
        jeol.read_jeol_maps(tmp_path)


def test_jeol_binary_truncated_file(tmp_path):
    write_jeol_binary(tmp_path, "old", {"Si": _counts(20, 30)})
    path = tmp_path / "1.map"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(InputError, match=r"1\.map' has 1193 bytes.*600 values.*truncated"):
        jeol.read_jeol_maps(tmp_path)


def test_jeol_binary_wrong_matrix_size(tmp_path):
    write_jeol_binary(tmp_path, "new", {"Si": _counts(80, 80)})  # 12800 bytes of uint16
    cnd = tmp_path / "data001.cnd"
    # 1600 values: 3200 (uint16) or 6400 (uint32) bytes, both more than MAX_HEADER_BYTES short of 12800
    cnd.write_text(cnd.read_text().replace("$XM_AP_SA_PIXELS%0 80 80", "$XM_AP_SA_PIXELS%0 40 40"))
    with pytest.raises(InputError, match=r"data001\.map' has 12800 bytes.*40 x 40 = 1600 values.*pixel numbers of its"):
        jeol.read_jeol_maps(tmp_path)
    with pytest.raises(ConfigError, match="'big' or 'little'"):
        jeol.read_jeol_maps(tmp_path, byte_order="middle")


# ----------------------------------------------------------------------------- Cameca


def write_cameca_map(path, image, counts, *, start_um=(1000.0, 2000.0), step_um=1.5, dwell_ms=30.0, current_nA=40.0,
                     sep="\t", extra_header=()):
    """A Peaksight-style text export: header lines (key: value), then one image row per line."""
    header = [f"Image: {image}", f"Start (um): {start_um[0]} {start_um[1]}", f"Step (um): {step_um}",
              f"Number of lines: {counts.shape[0]}", f"Number of columns: {counts.shape[1]}",
              f"Dwell (ms): {dwell_ms}", f"Current (nA): {current_nA}", *extra_header]
    rows = [sep.join(f"{v:g}" for v in row) for row in counts]
    path.write_text("\r\n".join(header + rows) + "\r\n", encoding="latin-1")


def write_cameca_spots(path, spots, *, start_um=(1000.0, 2000.0), step_um=1.5, delimiter=";"):
    """A Peaksight spot CSV: Comment, X, Y (µm) at the spots' pixels, oxide wt%, Si Peak/Bkg (cps/nA)."""
    lines = [delimiter.join(["Comment", "X (um)", "Y (um)", "SiO2 (wt%)", "FeO(Mass%)", "Si Peak (cps/nA)",
                             "Si Bkg (cps/nA)", "Current (nA)"])]
    for label, row, col, si, fe, pk, bg in spots:
        x, y = start_um[0] + col * step_um, start_um[1] + row * step_um
        lines.append(delimiter.join([label, f"{x:.4f}", f"{y:.4f}", f"{si}", f"{fe}", f"{pk}", f"{bg}", "40"]))
    path.write_text("\n".join(lines) + "\n")


def _cameca_area(tmp_path):
    maps = {"Si Ka": RNG.poisson(50, (7, 11)).astype(float), "Fe Ka": RNG.poisson(20, (7, 11)).astype(float),
            "BSE": RNG.integers(0, 255, (7, 11)).astype(float)}
    folder = tmp_path / "maps"
    folder.mkdir()
    for k, (name, m) in enumerate(maps.items()):
        write_cameca_map(folder / f"{k}_{name.split()[0]}.txt", name, m, sep=("\t", " ", ",")[k])
    spots = [("Grt", 2, 3, 37.1, 30.2, 1.25, 0.05), ("Qz", 6, 10, 99.6, 0.1, 3.5, 0.07), ("Grt", 0, 0, 37.4, 29.9, 1.3, 0.05)]
    write_cameca_spots(tmp_path / "spots.csv", spots)
    return folder, maps, spots


def test_cameca_round_trip(tmp_path):
    folder, maps, spots = _cameca_area(tmp_path)
    stack, spot_set = cameca.read_cameca(folder, tmp_path / "spots.csv")
    assert stack.channels == ("Si", "Fe", "BSE")
    for k, m in enumerate(maps.values()):
        np.testing.assert_array_equal(stack.counts[..., k], m)
    assert stack.step_um == 1.5 and stack.map_start_mm == (1.0, 2.0)
    np.testing.assert_allclose(stack.dwell_ms, 30.0)
    np.testing.assert_allclose(stack.current_A, 40e-9)
    assert spot_set.phase == ("Grt", "Qz", "Grt") and spot_set.oxides == ("SiO2", "FeO")
    np.testing.assert_array_equal(spot_set.row, [s[1] for s in spots])
    np.testing.assert_array_equal(spot_set.col, [s[2] for s in spots])
    np.testing.assert_allclose(spot_set.wt, [[s[3], s[4]] for s in spots])
    np.testing.assert_allclose(spot_set.peak[:, 0], [1e3 * s[5] for s in spots])  # cps/nA -> cps/µA
    np.testing.assert_allclose(spot_set.background[:, 0], [1e3 * s[6] for s in spots])
    assert np.all(np.isnan(spot_set.peak[:, 1]))  # no Fe intensities in the table
    np.testing.assert_allclose(spot_set.current_A, 40e-9)


def test_cameca_mirror_and_spot_outside(tmp_path):
    folder, _, _ = _cameca_area(tmp_path)
    with pytest.raises(InputError, match=r"spot\(s\) lie outside the 7 x 11 map.*spot 2 \(Qz\).*input\.mirror \(now 'x'\)"):
        cameca.read_cameca(folder, tmp_path / "spots.csv", mirror="x")


def test_cameca_truncated_and_wrong_size(tmp_path):
    m = RNG.poisson(10, (6, 5)).astype(float)
    path = tmp_path / "si.txt"
    write_cameca_map(path, "Si Ka", m)
    text = path.read_text(encoding="latin-1").splitlines()
    path.write_text("\n".join(text[:-2]) + "\n")  # last two rows lost
    with pytest.raises(InputError, match=r"si\.txt': the header gives 6 lines .* matrix has 4; the file is truncated"):
        cameca.read_cameca_map(path)
    path.write_text("\n".join(text[:-1] + [text[-1].rsplit("\t", 1)[0]]) + "\n")  # last row cut short
    with pytest.raises(InputError, match=r"si\.txt', line 13: 4 values where the rows above have 5"):
        cameca.read_cameca_map(path)
    write_cameca_map(path, "Si Ka", m, extra_header=())
    path.write_text(path.read_text(encoding="latin-1").replace("Number of columns: 5", "Number of columns: 6"))
    with pytest.raises(InputError, match=r"si\.txt': the header gives 6 columns"):
        cameca.read_cameca_map(path)
    path.write_text("\n".join(t for t in text if not t.startswith("Step")) + "\n")
    with pytest.raises(InputError, match=r"si\.txt': missing header line 'Step"):
        cameca.read_cameca_map(path)
    path.write_text("\n".join(text[:7]) + "\n")
    with pytest.raises(InputError, match="no matrix; the file is truncated"):
        cameca.read_cameca_map(path)


def test_cameca_bad_cells_and_missing_conditions(tmp_path):
    m = RNG.poisson(10, (3, 4)).astype(float)
    path = tmp_path / "fe.txt"
    write_cameca_map(path, "Fe Ka", m)
    path.write_text(path.read_text(encoding="latin-1").replace("\n" + "\t".join(f"{v:g}" for v in m[1]),
                                                               "\n" + "\t".join(["x"] + [f"{v:g}" for v in m[1][1:]])))
    with pytest.raises(InputError, match=r"fe\.txt', line 9, column 1: 'x' is not a number"):
        cameca.read_cameca_map(path)
    write_cameca_map(path, "Fe Ka", m)
    path.write_text("\n".join(t for t in path.read_text(encoding="latin-1").splitlines() if not t.startswith("Current")))
    with pytest.raises(InputError, match=r"no 'Current' header line.*input\.current_A"):
        cameca.read_cameca_maps([path])
    assert cameca.read_cameca_maps([path], current_A=2e-8).current_A[0] == 2e-8


# ----------------------------------------------------------------------------- CalcImage .DAT


def write_pfe_dat(path, columns: dict, nx, ny, *, skip=(), step=(0.002, 0.002), origin=(10.0, 20.0)):
    """A CalcImage .DAT: quoted header X Y NX NY NXY <columns>, one tab-separated line per pixel
    (x fastest); ``skip`` = (NX, NY) pixels left out."""
    names = ["X", "Y", "NX", "NY", "NXY", *columns]
    lines = ["\t".join(f'"{n}"' for n in names)]
    for iy in range(1, ny + 1):
        for ix in range(1, nx + 1):
            if (ix, iy) in skip:
                continue
            vals = [origin[0] + (ix - 1) * step[0], origin[1] + (iy - 1) * step[1], ix, iy, (iy - 1) * nx + ix]
            vals += [v[iy - 1, ix - 1] for v in columns.values()]
            lines.append("\t".join(f"{v:.10g}" for v in vals))
    path.write_text("\n".join(lines) + "\n")


def test_pfe_round_trip_and_element_to_oxide(tmp_path):
    nx, ny = 5, 4
    si = RNG.uniform(35, 40, (ny, nx))
    fe = RNG.uniform(20, 25, (ny, nx))
    path = tmp_path / "map.DAT"
    write_pfe_dat(path, {"SiO2 WT%": si, "Fe WT%": fe, "Total": si + fe}, nx, ny, skip={(2, 3)})
    q = pfe.read_pfe_dat(path)
    assert q.names == ("SiO2", "FeO", "Total") and q.kind == ("oxide", "oxide", "total") and q.shape == (4, 5)
    si_ref, fe_ref = si.copy(), fe.copy()
    si_ref[2, 1] = fe_ref[2, 1] = np.nan  # the skipped pixel (NX=2, NY=3)
    np.testing.assert_allclose(q.wt[..., 0], si_ref, rtol=1e-9)
    # FeO / Fe = (55.845 + 15.999) / 55.845 = 1.286489...
    np.testing.assert_allclose(q.wt[..., 1], fe_ref * 71.844 / 55.845, rtol=1e-9)
    np.testing.assert_allclose(q.x[0, :], 10.0 + 0.002 * np.arange(5))
    np.testing.assert_allclose(q.y[:, 0], 20.0 + 0.002 * np.arange(4))
    assert pfe.read_pfe_dat(path, as_oxides=False).names == ("SiO2", "Fe", "Total")


def test_pfe_unquoted_blank_header(tmp_path):
    path = tmp_path / "b.dat"
    path.write_text("X Y NX NY NXY SiO2 WT% MgO WT%\n0 0 1 1 1 40.5 10.25\n1 0 2 1 2 41.0 9.75\n")
    q = pfe.read_pfe_dat(path)
    assert q.names == ("SiO2", "MgO")
    np.testing.assert_allclose(q.wt[0], [[40.5, 10.25], [41.0, 9.75]])


def test_pfe_truncated_and_wrong_size(tmp_path):
    nx, ny = 4, 3
    path = tmp_path / "m.DAT"
    write_pfe_dat(path, {"SiO2": RNG.uniform(40, 50, (ny, nx))}, nx, ny)
    text = path.read_text()
    path.write_text(text[: text.rstrip().rfind("\t")])  # last line cut mid-way
    with pytest.raises(InputError, match=r"m\.DAT', line 13: 5 values for 6 columns; the file is truncated"):
        pfe.read_pfe_dat(path)
    lines = text.splitlines()
    lines[5] = lines[5].replace("\t5\t", "\t9\t", 1)  # NXY of pixel (NX=4, NY=1) as if nx were 8
    lines[5] = "\t".join(c if i != 4 else "9" for i, c in enumerate(lines[5].split("\t")))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"line 6: NXY = 9 but \(NY - 1\) \* 4 \+ NX = 5"):
        pfe.read_pfe_dat(path)
    path.write_text('"X"\t"Y"\t"SiO2"\n0\t0\t40\n')
    with pytest.raises(InputError, match="missing column.*NX, NY, NXY"):
        pfe.read_pfe_dat(path)


def test_compare_quantified_exact_statistics(tmp_path):
    nx, ny = 6, 5
    si = RNG.uniform(35, 45, (ny, nx))
    mg = RNG.uniform(5, 15, (ny, nx))
    path = tmp_path / "ref.DAT"
    write_pfe_dat(path, {"SiO2": si, "MgO": mg}, nx, ny)
    ref = pfe.read_pfe_dat(path)
    qmap = np.stack([1.02 * si, mg + 0.5, np.full_like(si, 3.0)], axis=-1)
    stats = pfe.compare_quantified(ref, qmap, ("SiO2", "MgO", "CaO"))
    assert set(stats) == {"SiO2", "MgO"}
    assert stats["SiO2"]["n"] == 30
    np.testing.assert_allclose(stats["SiO2"]["relative_bias"], 0.02, rtol=1e-8)
    np.testing.assert_allclose(stats["SiO2"]["slope"], 1.02, rtol=1e-8)
    np.testing.assert_allclose(stats["SiO2"]["r"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(stats["MgO"]["bias"], 0.5, rtol=1e-8)
    np.testing.assert_allclose(stats["MgO"]["rmse"], 0.5, rtol=1e-8)
    np.testing.assert_allclose(stats["MgO"]["slope"], 1.0, rtol=1e-8)
    mask = np.zeros((ny, nx), bool)
    mask[:2] = True
    assert pfe.compare_quantified(ref, qmap, ("SiO2", "MgO", "CaO"), mask=mask)["MgO"]["n"] == 12
    with pytest.raises(InputError, match=r"qmap maps are 5 x 5 but CalcImage table .* 5 x 6"):
        pfe.compare_quantified(ref, qmap[:, :5], ("SiO2", "MgO", "CaO"))


# ----------------------------------------------------------------------------- Oxford .h5oina


def write_h5oina(path, lines: dict, nx, ny, *, live_s=0.004, step_um=0.5, old_layout=False, se=True):
    """The EDS part of an AZtec .h5oina: slice group '1', header cells/steps as (1,) arrays,
    flat window integrals (x fastest), per-pixel live time, an SE image on the same grid."""
    with h5py.File(path, "w") as f:
        h = f.create_group("1/EDS/Header")
        h["X Cells"], h["Y Cells"] = np.array([nx], np.int32), np.array([ny], np.int32)
        h["X Step"], h["Y Step"] = np.array([step_um], np.float32), np.array([step_um], np.float32)
        h["Beam Voltage"] = np.array([15.0], np.float32)
        d = f.create_group("1/EDS/Data")
        for name, image in lines.items():
            if old_layout:
                d.create_dataset(f"Window Integral/{name}/Counts", data=image.ravel().astype(np.float32))
            else:
                d.create_dataset(f"Window Integral/{name}", data=image.ravel().astype(np.float32))
        d["Live Time"] = np.full(nx * ny, live_s, np.float32)
        d["X"] = np.tile(np.arange(nx) * step_um, ny).astype(np.float32)
        d["Y"] = np.repeat(np.arange(ny) * step_um, nx).astype(np.float32)
        if se:
            f.create_dataset("1/Electron Image/Data/SE/Electron Image 1", data=RNG.integers(0, 255, nx * ny).astype(np.uint8))
            f.create_dataset("1/Electron Image/Data/BSE/Overview", data=np.zeros((3, 3), np.uint8))  # other grid: skipped


@pytest.mark.parametrize("old_layout", [False, True])
def test_h5oina_round_trip(tmp_path, old_layout):
    nx, ny = 9, 6
    lines = {"Fe Lα1": RNG.poisson(3, (ny, nx)), "Si Ka1": RNG.poisson(40, (ny, nx)), "Fe Kα1": RNG.poisson(12, (ny, nx))}
    path = tmp_path / "area.h5oina"
    write_h5oina(path, lines, nx, ny, old_layout=old_layout)
    spots = tmp_path / "spots.csv"
    spots.write_text("x_px,y_px,phase,SiO2,FeO\n3,2,Grt,37.0,30.0\n8,5,Qz,99.5,0.1\n")
    stack, spot_set = oxford.read_h5oina(path, spots, current_A=1e-9)
    # the K line gets the element symbol, Fe's L line keeps its name; the 3 x 3 BSE overview is not on the grid
    # (HDF5 lists members by name, so the order is Fe Kα1, Fe Lα1, Si Ka1, then the electron image)
    assert stack.channels == ("Fe", "Fe Lα1", "Si", "SE")
    for name, image in lines.items():
        key = {"Fe Lα1": "Fe Lα1", "Si Ka1": "Si", "Fe Kα1": "Fe"}[name]
        np.testing.assert_array_equal(stack.counts[..., stack.channels.index(key)], image)
    assert stack.counts.shape == (6, 9, 4) and stack.step_um == 0.5
    np.testing.assert_allclose(stack.dwell_ms, 4.0, rtol=1e-6)
    np.testing.assert_allclose(stack.current_A, 1e-9)
    np.testing.assert_array_equal(spot_set.row, [2, 5])
    np.testing.assert_array_equal(spot_set.col, [3, 8])


def test_h5oina_truncated_wrong_size_and_current(tmp_path):
    nx, ny = 8, 8
    path = tmp_path / "a.h5oina"
    write_h5oina(path, {"Si Ka1": RNG.poisson(5, (ny, nx))}, nx, ny)
    with pytest.raises(InputError, match=r"a\.h5oina'.*probe current.*input\.current_A"):
        oxford.read_h5oina(path)
    with h5py.File(path, "r+") as f:
        f["1/EDS/Header/X Cells"][0] = 10
    with pytest.raises(InputError, match=r"a\.h5oina'.*Window Integral/Si Ka1' holds 64 values .* 10 x 8 = 80"):
        oxford.read_h5oina(path, current_A=1e-9)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(InputError, match=r"a\.h5oina' cannot be read as HDF5.*truncated"):
        oxford.read_h5oina(path, current_A=1e-9)


# ----------------------------------------------------------------------------- Bruker .bcf


def write_sfs(path, *, chunk=512, n_chunks=3, cut=0):
    """The container of a .bcf (Bruker SFS) as its header describes it: 'AAMVHFSS', float32 version
    and uint32 chunk size at 0x124, uint32 tree address, items, chunks at 0x140, then the chunks
    after a 0x118-byte header; ``cut`` bytes are dropped from the end (a truncated copy)."""
    head = bytearray(0x118 + n_chunks * chunk)
    head[:8] = b"AAMVHFSS"
    head[0x124:0x12C] = struct.pack("<fI", 2.6, chunk)
    head[0x140:0x14C] = struct.pack("<III", 1, 1, n_chunks)
    path.write_bytes(bytes(head[: len(head) - cut]))


def _fake_rsciio(monkeypatch, item=None, error=None):
    """rosettasciio stand-in: rsciio.bruker.file_reader returns ``item`` (the dict layout of
    rosettasciio's bcf hypermap) or raises ``error``."""
    calls = []

    def file_reader(filename, select_type=None, index=None):
        calls.append((filename, select_type, index))
        if error is not None:
            raise error
        return [item]

    pkg = types.ModuleType("rsciio")
    mod = types.ModuleType("rsciio.bruker")
    mod.file_reader = file_reader
    pkg.bruker = mod
    monkeypatch.setitem(sys.modules, "rsciio", pkg)
    monkeypatch.setitem(sys.modules, "rsciio.bruker", mod)
    return calls


def test_bruker_window_is_hand_computed():
    # Si Ka 1.740 keV: FWHM^2 = 130^2 + 2.5 (1740 - 5898.8) = 6503.0 eV^2 -> 80.6412 eV; x 1.2 / 2 = 48.3847 eV
    low, high = bruker.line_window(1.74)
    np.testing.assert_allclose([low, high], [1.74 - 0.0483847, 1.74 + 0.0483847], atol=1e-7)


def _hypermap_item(data, xray_lines, **eds):
    return {"data": data,
            "axes": [{"scale": 0.8, "units": "µm"}, {"scale": 0.8, "units": "µm"}, {"offset": -0.02, "scale": 0.01}],
            "metadata": {"Sample": {"xray_lines": xray_lines},
                         "Acquisition_instrument": {"SEM": {"Detector": {"EDS": eds}}}}}


def test_bruker_maps_from_hypermap(tmp_path, monkeypatch):
    rows, cols, n_ch = 4, 5, 1024
    data = RNG.poisson(2, (rows, cols, n_ch)).astype(np.uint16)
    calls = _fake_rsciio(monkeypatch, _hypermap_item(data, ["Fe_Ka", "Si_Ka"], real_time=2.0))
    path = tmp_path / "map.bcf"
    write_sfs(path)
    stack, spots = bruker.read_bcf(path, current_A=2e-9)
    assert calls == [(str(path), "spectrum_image", None)] and spots is None
    assert stack.channels == ("Fe", "Si") and stack.step_um == 0.8
    centres = -0.02 + 0.01 * np.arange(n_ch)
    for k, energy in enumerate((6.4038, 1.74)):
        low, high = bruker.line_window(energy)
        chans = (centres >= low) & (centres <= high)
        np.testing.assert_array_equal(stack.counts[..., k], data[..., chans].sum(-1))
    # Si: channel centres 1.70..1.78 keV (indices 172..180) lie in 1.6916-1.7884 keV: nine channels
    si = (centres >= 1.74 - 0.0483847) & (centres <= 1.74 + 0.0483847)
    np.testing.assert_array_equal(np.flatnonzero(si), np.arange(172, 181))
    np.testing.assert_array_equal(stack.counts[..., 1], data[..., 172:181].sum(-1))
    np.testing.assert_allclose(stack.dwell_ms, 2.0 * 1e3 / 20)  # real time / pixels
    np.testing.assert_allclose(stack.current_A, 2e-9)


def test_bruker_line_without_energy_is_left_out_or_given(tmp_path, monkeypatch):
    data = RNG.poisson(2, (3, 3, 1024)).astype(np.uint16)
    _fake_rsciio(monkeypatch, _hypermap_item(data, ["Si_Ka", "Nd_La"], live_time=0.9))
    path = tmp_path / "map.bcf"
    write_sfs(path)
    with pytest.warns(UserWarning, match=r"no line energy for Nd_La; left out"):
        stack, _ = bruker.read_bcf(path, current_A=1e-9)
    assert stack.channels == ("Si",)
    np.testing.assert_allclose(stack.dwell_ms, 100.0)  # live time 0.9 s over 9 pixels
    stack, _ = bruker.read_bcf(path, current_A=1e-9, lines={"Nd_La": 5.2304}, dwell_ms=5.0)
    assert stack.channels == ("Si", "Nd") and stack.dwell_ms[0] == 5.0
    low, high = bruker.line_window(5.2304)
    centres = -0.02 + 0.01 * np.arange(1024)
    np.testing.assert_array_equal(stack.counts[..., 1], data[..., (centres >= low) & (centres <= high)].sum(-1))
    _fake_rsciio(monkeypatch, _hypermap_item(data, ["Xx_Ka"]))
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no element with a known line energy"):
        bruker.read_bcf(path, current_A=1e-9)


def test_bruker_missing_extra_truncated_and_damaged_file(tmp_path, monkeypatch):
    path = tmp_path / "map.bcf"
    write_sfs(path)
    monkeypatch.setitem(sys.modules, "rsciio", None)  # import fails as when not installed
    with pytest.raises(ConfigError, match=r"map\.bcf' needs the optional rosettasciio.*jaxpetro\[bruker\]"):
        bruker.read_bcf(path, current_A=1e-9)
    calls = _fake_rsciio(monkeypatch, error=struct.error("unpack requires a buffer of 16 bytes"))
    with pytest.raises(InputError, match=r"map\.bcf' cannot be read \(error: unpack.*truncated or damaged"):
        bruker.read_bcf(path, current_A=1e-9)
    write_sfs(path, cut=700)  # 0x118 + 3 x 512 = 1816 bytes announced, 1116 left
    calls.clear()
    with pytest.raises(InputError, match=r"map\.bcf' has 1116 bytes but its header announces 3 chunks of 512 bytes "
                                         r"\(1816 bytes\): the file is truncated"):
        bruker.read_bcf(path, current_A=1e-9)
    assert calls == []  # never handed to rosettasciio, whose compiled parser can crash on it
    path.write_bytes(b"PK\x03\x04" + bytes(400))
    with pytest.raises(InputError, match="not a Bruker .bcf"):
        bruker.read_bcf(path, current_A=1e-9)


def test_bruker_wrong_window_names_the_element():
    data = np.ones((2, 2, 100))
    with pytest.raises(InputError, match=r"the Fe window .* holds no channel"):
        bruker.maps_from_spectrum_image(data, 0.0, 0.01, {"Fe": 6.4038})  # spectrum ends at 0.99 keV


# ----------------------------------------------------------------------------- a synthetic section in each format


@pytest.fixture(scope="module")
def section():
    from jaxpetro.synthetic import make_thin_section

    return make_thin_section(rows=40, cols=52, n_spots=12, seed=3)


@pytest.mark.parametrize("dialect", ["old", "new"])
def test_jeol_project_with_binary_maps_reads_as_its_text_export(section, tmp_path, dialect):
    """The synthetic JEOL project with every text map replaced by the binary .map of the same
    matrix (big-endian uint16, a 64-byte header): the same stack, and the spots on the same pixels."""
    from jaxpetro.synthetic.jeol import write_jeol

    write_jeol(section, tmp_path / "text", dialect=dialect)
    text_stack, text_spots = jeol.read_jeol(tmp_path / "text" / ".map" / "1", tmp_path / "text" / ".qnt")
    write_jeol(section, tmp_path / "bin", dialect=dialect)
    folder = tmp_path / "bin" / ".map" / "1"
    pattern = "*_map.txt" if dialect == "old" else "data*.csv"
    for path in sorted(folder.glob(pattern)):
        # the matrix as the text export stores it (blank- or comma-separated lines)
        matrix = np.array([[float(v) for v in line.replace(",", " ").split()] for line in path.read_text().splitlines()
                           if line.strip()])
        stem = path.name.replace("_map.txt", "") if dialect == "old" else path.stem
        (folder / f"{stem}.map").write_bytes(bytes(64) + np.rint(matrix).astype(">u2").tobytes())
        path.unlink()
    stack, spots = jeol.read_jeol(folder, tmp_path / "bin" / ".qnt")
    np.testing.assert_array_equal(stack.counts, text_stack.counts)
    for k, ch in enumerate(section.channels[:-1]):  # the X-ray channels (BSE is written rounded as COMPO)
        np.testing.assert_array_equal(stack.counts[..., stack.channels.index(ch)], section.counts[..., k])
    assert stack.channels == text_stack.channels
    row, col = jeol.spot_pixels(spots, stack, dialect=dialect)
    np.testing.assert_array_equal(row, section.spots.row)
    np.testing.assert_array_equal(col, section.spots.col)


def _cameca_export(section, tmp_path):
    """The section as Cameca map text files + a Peaksight spot CSV: (map folder, spot CSV)."""
    folder = tmp_path / "maps"
    folder.mkdir()
    start_um, step = (4000.0, 7000.0), section.step_um
    for k, ch in enumerate(section.channels):
        write_cameca_map(folder / f"{k:02d}.txt", ch if ch == "BSE" else f"{ch} Ka", np.rint(section.counts[..., k]),
                         start_um=start_um, step_um=step, dwell_ms=section.dwell_ms, current_nA=section.current_A * 1e9)
    s = section.spots
    lines = [";".join(["Comment", "X (um)", "Y (um)", *section.oxides])]
    for i in range(len(s.phase)):
        x, y = start_um[0] + s.col[i] * step, start_um[1] + s.row[i] * step
        lines.append(";".join([s.phase[i], f"{x:.3f}", f"{y:.3f}", *(f"{v:.17g}" for v in s.wt[i])]))
    (tmp_path / "spots.csv").write_text("\n".join(lines) + "\n")
    return folder, tmp_path / "spots.csv"


def test_cameca_export_of_a_section_reads_as_the_section(section, tmp_path):
    s = section.spots
    stack, spots = cameca.read_cameca(*_cameca_export(section, tmp_path))
    assert stack.channels == section.channels
    np.testing.assert_array_equal(stack.counts, np.rint(section.counts))
    np.testing.assert_allclose(stack.dwell_ms, section.dwell_ms)
    np.testing.assert_allclose(stack.current_A, section.current_A, rtol=1e-12)
    np.testing.assert_array_equal(spots.row, s.row)
    np.testing.assert_array_equal(spots.col, s.col)
    assert spots.oxides == tuple(section.oxides) and spots.phase == tuple(s.phase)
    np.testing.assert_array_equal(spots.wt, s.wt)


def test_h5oina_export_of_a_section_reads_as_the_section(section, tmp_path):
    rows, cols = section.shape
    xray = [k for k, c in enumerate(section.channels) if c != "BSE"]
    lines = {f"{section.channels[k]} Ka1": np.rint(section.counts[..., k]) for k in xray}
    path = tmp_path / "s.h5oina"
    write_h5oina(path, lines, cols, rows, live_s=section.dwell_ms / 1e3, se=False)
    stack, _ = oxford.read_h5oina(path, current_A=section.current_A)
    for k in xray:
        np.testing.assert_array_equal(stack.counts[..., stack.channels.index(section.channels[k])],
                                      np.rint(section.counts[..., k]))
    np.testing.assert_allclose(stack.dwell_ms, section.dwell_ms, rtol=1e-6)


def test_non_numeric_cells_and_missing_columns_are_named(tmp_path):
    path = tmp_path / "m.DAT"
    path.write_text('"X"\t"Y"\t"NX"\t"NY"\t"NXY"\t"SiO2"\n0\t0\t1\t1\t1\t40.1\n1\t0\t2\t1\t2\tn.d.x\n')
    with pytest.raises(InputError, match=r"m\.DAT', line 3, column 'SiO2': 'n\.d\.x' is not a number"):
        pfe.read_pfe_dat(path)
    spots = tmp_path / "s.csv"
    spots.write_text("Comment,X,Y,SiO2\nGrt,1000,2000,37.2\nQz,1001.5,abc,99.1\n")
    with pytest.raises(InputError, match=r"s\.csv', line 3, column 'Y': 'abc' is not a number"):
        cameca.read_cameca_spots(spots)
    spots.write_text("Comment,X,SiO2\nGrt,1000,37.2\n")
    with pytest.raises(InputError, match=r"s\.csv': missing column\(s\) Y"):
        cameca.read_cameca_spots(spots)
    spots.write_text("Comment,X,Y,SiO2\n,1000,2000,37.2\n")
    with pytest.raises(InputError, match=r"s\.csv', line 2: empty label in column 'Comment'"):
        cameca.read_cameca_spots(spots)


# ----------------------------------------------------------------------------- wired into qmap's input


def test_qmap_input_formats_read_through_the_config(section, tmp_path):
    """input.format cameca / h5oina in a qmap config: relative paths from the config's folder, the
    same stack and spots as the readers, and a clear error without input.maps."""
    from jaxpetro.config.loader import load_config
    from jaxpetro.config.qmap import QmapConfig
    from jaxpetro.workflows.qmap import read_input

    folder, spots = _cameca_export(section, tmp_path)
    cfg = load_config({"input": {"format": "cameca", "maps": "maps", "spots": "spots.csv"}}, QmapConfig,
                      base_dir=str(tmp_path))
    got = read_input(cfg.input)
    stack, sp = cameca.read_cameca(folder, spots)
    np.testing.assert_array_equal(got.stack.counts, stack.counts)
    np.testing.assert_array_equal(got.spots.row, section.spots.row)
    np.testing.assert_array_equal(got.spots.wt, sp.wt)

    xray = [k for k, c in enumerate(section.channels) if c != "BSE"]
    rows, cols = section.shape
    write_h5oina(tmp_path / "s.h5oina", {f"{section.channels[k]} Ka1": np.rint(section.counts[..., k]) for k in xray},
                 cols, rows, live_s=section.dwell_ms / 1e3, se=False)
    cfg = load_config({"input": {"format": "h5oina", "maps": "s.h5oina", "current_A": section.current_A}}, QmapConfig,
                      base_dir=str(tmp_path))
    got = read_input(cfg.input)
    for k in xray:
        np.testing.assert_array_equal(got.stack.counts[..., got.stack.channels.index(section.channels[k])],
                                      np.rint(section.counts[..., k]))
    with pytest.raises(ConfigError, match="input.maps is required with input.format: bcf"):
        load_config({"input": {"format": "bcf"}}, QmapConfig)


def test_jaxpetro_qmap_runs_on_a_cameca_export(section, tmp_path):
    """`jaxpetro qmap` end to end on the Cameca export: phases and wt% maps written, the spots on
    pixels of their own phase."""
    from jaxpetro.cli import main
    from jaxpetro.io.results import read_csv_table

    _cameca_export(section, tmp_path)
    (tmp_path / "qmap.yaml").write_text("input: {format: cameca, maps: maps, spots: spots.csv}\n"
                                        "output: {plots: false}\n")
    assert main(["qmap", str(tmp_path / "qmap.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    with h5py.File(tmp_path / "out" / "qmap.h5") as f:
        assert f["wt/SiO2"].shape == section.shape and f["wt/SiO2"].attrs["units"] == "wt%"
    table = read_csv_table(tmp_path / "out" / "spots.csv")
    assert np.mean(np.asarray(table["agrees"], str) == "True") > 0.9


# --------------------------------------------------------------------------- the one text-file reader (io/_text.py)


def test_text_reader_wording_is_the_same_for_every_instrument(tmp_path):
    """JEOL, Cameca and CalcImage readers share one message for a missing, unreadable or binary file."""
    from jaxpetro.io import _text

    readers = {"jeol": lambda p: jeol._parse_cnd(p), "cameca": cameca.read_cameca_map, "pfe": pfe.read_pfe_dat}
    folder = tmp_path / "a_folder"
    folder.mkdir()
    binary = tmp_path / "map.bin"
    binary.write_bytes(b"\x00\x01\x02\x03" * 100)
    for name, read in readers.items():
        with pytest.raises(InputError, match=r"'.*nowhere\.txt' not found; check the path \(a relative path in a "
                                             r"config file resolves from the config file's folder"):
            read(tmp_path / "nowhere.txt")
        with pytest.raises(InputError, match=r"a_folder' cannot be read \(.*\); check that it is a readable file"):
            read(folder)
        with pytest.raises(InputError, match=r"map\.bin' is not a text file \(it holds binary data\)"):
            read(binary)
    with pytest.raises(InputError, match=r"CalcImage table '.*empty\.dat' is empty; re-export it from CalcImage\."):
        (tmp_path / "empty.dat").write_text("\n  \n")
        pfe.read_pfe_dat(tmp_path / "empty.dat")
    # Decoding: UTF-16 with a byte-order mark, Shift-JIS where asked (JEOL), latin-1 as the last resort (Cameca µ).
    path = tmp_path / "t.txt"
    path.write_text("Probe current: 20 µA\n", encoding="utf-16")
    assert _text.read_text(path, "map") == "Probe current: 20 µA\n"
    path.write_bytes("試料 1\n".encode("cp932"))
    assert _text.read_text(path, "map", ("utf-8-sig", "cp932")) == "試料 1\n"
    path.write_bytes("Probe current: 20 µA\n".encode("cp1252"))
    assert _text.read_text(path, "map") == "Probe current: 20 µA\n"
    assert _text.text_lines(path, "map") == [(1, "Probe current: 20 µA")]
    path.write_bytes(b"\xef\xbb\xbfa\r\n\r\n  b  \r\n")
    assert _text.text_lines(path, "map") == [(1, "a"), (3, "b")]

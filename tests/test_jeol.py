"""JEOL EPMA readers (jaxpetro.io.jeol) against synthetic projects (jaxpetro.synthetic.jeol)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxpetro.errors import ConfigError, InputError
from jaxpetro.io.jeol import NET_TOLERANCE, JeolIntensityWarning, detect_dialect, read_jeol, read_jeol_maps, read_jeol_spots, spot_pixels
from jaxpetro.synthetic import make_thin_section
from jaxpetro.synthetic.jeol import background_offsets, write_jeol

DIALECTS = ("old", "new")
MAP_FILE = {"old": "{k}_map.txt", "new": "data{k:03d}.csv"}
CND_FILE = {"old": "{k}.cnd", "new": "data{k:03d}.cnd"}


@pytest.fixture(scope="module")
def section():
    return make_thin_section(rows=48, cols=64, n_spots=20, seed=3)


@pytest.fixture(scope="module")
def written(section, tmp_path_factory):
    root = tmp_path_factory.mktemp("jeol")
    return {d: write_jeol(section, root / d, dialect=d) for d in DIALECTS}


@pytest.fixture(params=DIALECTS)
def project(request, written, tmp_path):
    """A fresh copy of the written project of one dialect: (dialect, map dir, qnt dir)."""
    dst = shutil.copytree(written[request.param], tmp_path / "project")
    return request.param, dst / ".map" / "1", dst / ".qnt"


def _edit(path: Path, fn) -> None:
    path.write_text(fn(path.read_text()))


def _raises(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ----------------------------------------------------------------------------- round trip


def test_round_trip(project, section):
    dialect, map_dir, qnt_dir = project
    stack, spots = read_jeol(map_dir, qnt_dir)
    assert detect_dialect(map_dir) == dialect
    assert stack.channels == section.elements + ("COMPO",)
    assert stack.counts.shape == section.counts.shape and stack.counts.dtype == np.float32
    np.testing.assert_array_equal(stack.counts[..., :-1], section.counts[..., :-1])
    np.testing.assert_array_equal(stack.counts[..., -1], np.rint(section.counts[..., -1]))
    np.testing.assert_allclose(stack.dwell_ms, section.dwell_ms, rtol=1e-12)
    np.testing.assert_allclose(stack.current_A, section.current_A, rtol=1e-12)
    assert stack.step_um == pytest.approx(section.step_um)
    assert stack.map_start_mm == pytest.approx(section.map_start_mm)
    assert stack.dead_time_ns is None

    truth = section.spots
    np.testing.assert_array_equal(spots.id, truth.id)
    assert spots.phase == truth.phase
    assert spots.elements == section.elements and spots.oxides == section.oxides
    for name in ("wt", "peak", "background", "current_A"):
        np.testing.assert_allclose(getattr(spots, name), getattr(truth, name), rtol=1e-10, err_msg=name)
    assert spots.use.all() and spots.row is None

    row, col = spot_pixels(spots, stack, dialect=dialect)
    np.testing.assert_array_equal(row, truth.row)
    np.testing.assert_array_equal(col, truth.col)


@pytest.mark.parametrize("row_axis", ["x", "y"])
@pytest.mark.parametrize("mirror", ["none", "x", "y", "xy"])
def test_wrong_orientation_moves_or_rejects_spots(project, section, row_axis, mirror):
    dialect, map_dir, qnt_dir = project
    stack, spots = read_jeol(map_dir, qnt_dir)
    default = {"old": ("x", "none"), "new": ("y", "x")}[dialect]
    if (row_axis, mirror) == default:
        row, col = spot_pixels(spots, stack, row_axis=row_axis, mirror=mirror, dialect=dialect)
        np.testing.assert_array_equal(row, section.spots.row)
        return
    try:
        row, col = spot_pixels(spots, stack, row_axis=row_axis, mirror=mirror, dialect=dialect)
    except InputError as err:
        msg = str(err)
        assert "input.row_axis" in msg and "input.mirror" in msg and re.search(r"spot \d+ at stage \(", msg)
    else:
        assert not (np.array_equal(row, section.spots.row) and np.array_equal(col, section.spots.col))


def test_spot_outside_the_map(project):
    dialect, map_dir, qnt_dir = project
    stack, spots = read_jeol(map_dir, qnt_dir)
    far = spots.x_mm.copy()
    far[3] += 1.0  # 1 mm = 500 pixels off
    moved = dataclasses.replace(spots, x_mm=far)
    msg = _raises("outside", spot_pixels, moved, stack, dialect=dialect)
    assert f"spot {spots.id[3]} at stage ({far[3]:.4f}" in msg and "phase_list.csv" in msg
    use = spots.use.copy()
    use[3] = False
    row, col = spot_pixels(dataclasses.replace(moved, use=use), stack, dialect=dialect)
    assert row[3] == col[3] == -1 and np.all(np.delete(row, 3) >= 0)


def test_orientation_keys_are_checked(project):
    dialect, map_dir, qnt_dir = project
    stack, spots = read_jeol(map_dir, qnt_dir)
    with pytest.raises(ConfigError, match="row_axis"):
        spot_pixels(spots, stack, row_axis="z", dialect=dialect)
    with pytest.raises(ConfigError, match="mirror"):
        spot_pixels(spots, stack, mirror="yes", dialect=dialect)
    with pytest.raises(ConfigError, match="dialect"):
        spot_pixels(spots, stack, dialect="auto")


# ----------------------------------------------------------------------------- fallbacks


def test_map_conditions_csv_replaces_cnd_files(project, section):
    dialect, map_dir, qnt_dir = project
    for cnd in map_dir.glob("*.cnd"):
        if cnd.name != "0.cnd":
            cnd.unlink()
    _raises("no condition file.*map_conditions", read_jeol_maps, map_dir)
    rows, cols = section.shape
    nx, ny = (rows, cols) if dialect == "old" else (cols, rows)
    x0, y0 = section.map_start_mm
    lines = ["Element,File path,Instrument,Dwell [msec],Probe current [A],Start X [mm],Start Y [mm],"
             "Step size [um],Steps X,Steps Y,dead time [ns]"]  # fmt: skip
    for k, name in enumerate(section.elements + ("COMPO",), 1):
        first = f"JXA,{section.dwell_ms},{section.current_A},{x0},{y0},{section.step_um},{nx},{ny},1200"
        lines.append(f"{name},{MAP_FILE[dialect].format(k=k)}," + (first if k == 1 else ",,,,,,,,"))
    csv_path = map_dir.parent / "conditions.csv"  # file paths resolve from map_dir
    csv_path.write_text("\n".join(lines) + "\n")
    stack = read_jeol_maps(map_dir, map_conditions=csv_path)
    np.testing.assert_array_equal(stack.counts[..., :-1], section.counts[..., :-1])
    assert stack.channels[-1] == "COMPO" and stack.map_start_mm == pytest.approx(section.map_start_mm)
    np.testing.assert_allclose(stack.dwell_ms, section.dwell_ms)
    np.testing.assert_array_equal(stack.dead_time_ns, [1200.0] * 9 + [0.0])  # electron images: never
    stack = read_jeol_maps(map_dir, map_conditions=csv_path, dead_time_ns={"Si": 500.0})
    np.testing.assert_array_equal(stack.dead_time_ns, [500.0] + [0.0] * 9)
    with pytest.raises(ConfigError, match="not mapped"):
        read_jeol_maps(map_dir, map_conditions=csv_path, dead_time_ns={"Zr": 500.0})
    with pytest.raises(ConfigError, match="dead times"):
        read_jeol_maps(map_dir, map_conditions=csv_path, dead_time_ns="fast")

    (map_dir.parent / "bad.csv").write_text(lines[0] + "\nSi,nowhere.txt\n")
    _raises("line 2.*not found", read_jeol_maps, map_dir, map_conditions=map_dir.parent / "bad.csv", dialect=dialect)
    (map_dir.parent / "short.csv").write_text("Element,File path\nSi,1_map.txt\n")
    _raises("missing column.*Dwell", read_jeol_maps, map_dir, map_conditions=map_dir.parent / "short.csv")


def test_spot_conditions_csv_and_elemw_layouts(project, section):
    _, _, qnt_dir = project
    elemw = qnt_dir / ".cnd" / "elemw.cnd"
    plus, minus = background_offsets(len(section.elements))

    # JEOL's own layout: a labelled block of many lines per element.
    block = []
    for p, m in zip(plus, minus):
        block += ["1 Order", "25 Acc. Voltage [kV]", f"{p} Back +[mm]", f"{m} Back -[mm]", "10 Peak Meas. Time [sec]",
                  "5 Back Meas. Time [sec]", "0 Something else"]  # fmt: skip
    elemw.write_text("\n".join(block) + "\n")
    np.testing.assert_allclose(read_jeol_spots(qnt_dir).background, section.spots.background, rtol=1e-10)

    # Four unlabelled lines per element: Bg+ mm, Bg- mm, peak s, background s.
    elemw.write_text("".join(f"{p}\n{m}\n20\n10\n" for p, m in zip(plus, minus)))
    np.testing.assert_allclose(read_jeol_spots(qnt_dir).background, section.spots.background, rtol=1e-10)

    # JXA-8230: Pos_0001/data001.cnd with indexed keys.
    elemw.unlink()
    pos = qnt_dir / "Pos_0001" / "data001.cnd"
    pos.parent.mkdir()
    pos.write_text("".join(f"$XM_ELEM_WDS_BACK_PLUS%{j} {p}\n$XM_ELEM_WDS_BACK_MINUS%{j} {m}\n" for j, (p, m) in enumerate(zip(plus, minus))))
    np.testing.assert_allclose(read_jeol_spots(qnt_dir).background, section.spots.background, rtol=1e-10)

    pos.unlink()
    _raises("no background offsets.*spot-conditions CSV", read_jeol_spots, qnt_dir)
    rows = [f"{ox},{el},{p},{-m},20,10" for ox, el, p, m in zip(section.oxides, section.elements, plus, minus)]
    csv_path = qnt_dir.parent / "spot_conditions.csv"
    csv_path.write_text("Oxide,Element,Bg+ [mm],Bg- [mm],Peak [sec],Bg [sec]\n" + "\n".join(rows[::-1]) + "\n")
    spots = read_jeol_spots(qnt_dir, spot_conditions=csv_path)  # row order and sign of Bg- do not matter
    np.testing.assert_allclose(spots.background, section.spots.background, rtol=1e-10)
    csv_path.write_text("Oxide,Element,Bg+ [mm],Bg- [mm],Peak [sec],Bg [sec]\n" + "\n".join(rows[1:]) + "\n")
    _raises("lack element.*Si", read_jeol_spots, qnt_dir, spot_conditions=csv_path)


def _qnt_values(path: Path) -> np.ndarray:
    """(n, J) values of a per-element .qnt file written by the synthetic writer (id, J, values..., total)."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return np.array([[float(v) for v in r[2:2 + int(r[1])]] for r in rows])


def test_alpha_sees_net_qnt_whatever_files_exist(project, section):
    """peak - background is JEOL's net.qnt (the intensity its wt% came from) whenever
    net.qnt exists: with both side backgrounds, without them, and without a peak file."""
    _, _, qnt_dir = project
    net = _qnt_values(qnt_dir / "net.qnt")
    truth = section.spots
    with warnings.catch_warnings():
        warnings.simplefilter("error", JeolIntensityWarning)  # a consistent export: no warning
        spots = read_jeol_spots(qnt_dir)
    np.testing.assert_allclose(spots.peak - spots.background, net, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(spots.peak, truth.peak, rtol=1e-10)
    np.testing.assert_allclose(spots.background, truth.background, rtol=1e-8)
    (qnt_dir / "bgm.qnt").unlink()
    (qnt_dir / "bgp.qnt").unlink()
    spots = read_jeol_spots(qnt_dir)  # background = pkint - net without the side backgrounds
    np.testing.assert_allclose(spots.background, truth.background, rtol=1e-8)
    np.testing.assert_allclose(spots.peak - spots.background, net, rtol=1e-12, atol=1e-9)
    (qnt_dir / "net.qnt").unlink()
    _raises("neither net.qnt nor bgm.qnt", read_jeol_spots, qnt_dir)


def test_without_peak_file_peak_is_net_plus_background(project, section):
    _, _, qnt_dir = project
    (qnt_dir / "pkint.qnt").unlink()
    spots = read_jeol_spots(qnt_dir)
    np.testing.assert_allclose(spots.peak, section.spots.peak, rtol=1e-9)
    (qnt_dir / "net.qnt").unlink()
    spots = read_jeol_spots(qnt_dir)
    assert spots.peak is None and spots.background is None  # no intensities: the map rates calibrate


@pytest.mark.parametrize("conditions", ["elemw", "csv"])
def test_peak_qnt_raw_counts_become_cps_per_uA(section, tmp_path, conditions):
    """peak.qnt holds raw counts: counts / (peak time s x current µA) is pkint (cps/µA)."""
    qnt_dir = write_jeol(section, tmp_path / "p", raw_peak_counts=True) / ".qnt"
    counts = _qnt_values(qnt_dir / "peak.qnt")
    assert np.all(counts == np.rint(counts)) and counts.max() > 1e3  # whole counts, not cps/µA
    (qnt_dir / "pkint.qnt").unlink()
    kwargs = {}
    if conditions == "csv":
        (qnt_dir / ".cnd" / "elemw.cnd").unlink()
        plus, minus = background_offsets(len(section.elements))
        path = tmp_path / "spot_conditions.csv"
        path.write_text("Oxide,Element,Bg+ [mm],Bg- [mm],Peak [sec],Bg [sec]\n" + "".join(
            f"{o},{e},{p},{m},{section.spots.peak_time_s},{section.spots.background_time_s}\n"
            for o, e, p, m in zip(section.oxides, section.elements, plus, minus)))
        kwargs["spot_conditions"] = path
    spots = read_jeol_spots(qnt_dir, **kwargs)
    np.testing.assert_allclose(spots.peak, section.spots.peak, rtol=1e-9)
    # By hand for one spot and element: counts / (t * I).
    t, i_ua = section.spots.peak_time_s, section.spots.current_A[0] * 1e6
    assert spots.peak[0, 0] == pytest.approx(counts[0, 0] / (t * i_ua), rel=1e-10)  # mes.qnt: 12 digits
    (qnt_dir / "mes.qnt").unlink()
    _raises("peak.qnt holds raw counts.*mes.qnt", read_jeol_spots, qnt_dir, **kwargs)


def test_peak_minus_background_disagreeing_with_net_is_named(project, section):
    """Spots whose pkint - interpolated background differs from net.qnt are named in a
    warning; the calibration intensity stays net.qnt."""
    _, _, qnt_dir = project
    net = _qnt_values(qnt_dir / "net.qnt")
    edited = net.copy()
    edited[2, 0] *= 1.05  # spot 3, Si: 5 % off
    edited[6, 3] += 0.02 * section.spots.peak[6, 3]  # spot 7, Fe: 2 % of the peak
    edited[9, 1] *= 1.0 + 0.2 * NET_TOLERANCE * section.spots.peak[9, 1] / max(net[9, 1], 1e-9)  # spot 10: within tolerance
    lines = [f"{i} {edited.shape[1]} " + " ".join(f"{v:.17g}" for v in row) + f" {row.sum():.17g}"
             for i, row in zip(section.spots.id, edited)]
    (qnt_dir / "net.qnt").write_text("\n".join(lines) + "\n")
    with pytest.warns(JeolIntensityWarning, match=r"at 2 spot\(s\): spot 3 \(Si: .*\); spot 7 \(Fe: ") as record:
        spots = read_jeol_spots(qnt_dir)
    assert "spot 10" not in str(record[0].message)
    np.testing.assert_allclose(spots.peak - spots.background, edited, rtol=1e-12, atol=1e-9)


def test_phase_list_relabels_and_excludes(project, section):
    _, _, qnt_dir = project
    path = qnt_dir.parent / "phase_list.csv"
    path.write_text("id,phase,use\n1,Grt_rim,TRUE\n2,,FALSE\n5,Bt,true\n")
    spots = read_jeol_spots(qnt_dir, phase_list=path)
    expected = list(section.spots.phase)
    expected[0], expected[4] = "Grt_rim", "Bt"
    assert spots.phase == tuple(expected)
    assert spots.use.tolist() == [i != 1 for i in range(len(expected))]

    for text, match in (
        ("id,phase,use\n99,Grt,TRUE\n", "line 2: spot id 99 is not in stg.qnt"),
        ("id,phase,use\n1,Grt,TRUE\n1,Qtz,TRUE\n", "line 3: spot id 1 is listed again"),
        ("id,phase,use\n1,Grt,maybe\n", "use must be TRUE or FALSE"),
        ("id,phase\n1,Grt\n", "missing column.*use"),
    ):
        path.write_text(text)
        _raises(match, read_jeol_spots, qnt_dir, phase_list=path)


@pytest.mark.parametrize(
    "dialect, encoding, sample, label",
    [("old", "latin-1", "échantillon à Mn", "Grt_é"), ("new", "shift_jis", "合成片岩", "ザクロ石")],
)
def test_windows_line_endings_whitespace_and_comment_encodings(section, tmp_path, dialect, encoding, sample, label):
    root = write_jeol(section, tmp_path / "p", dialect=dialect, comments_encoding=encoding, sample=sample)
    for path in root.rglob("*"):
        if path.is_file():  # CRLF, padded lines and trailing blank lines
            lines = path.read_bytes().split(b"\n")
            path.write_bytes(b"\r\n".join(b"  " + line.replace(b" ", b"   ") + b" " for line in lines) + b"\r\n\r\n")
    stg = root / ".qnt" / "stg.qnt"
    stg.write_bytes(re.sub(rb"\S+ \r\n", label.encode(encoding) + b" \r\n", stg.read_bytes(), count=1))
    stack, spots = read_jeol(root / ".map" / "1", root / ".qnt")
    np.testing.assert_array_equal(stack.counts[..., :-1], section.counts[..., :-1])
    np.testing.assert_allclose(spots.wt, section.spots.wt, rtol=1e-10)
    assert spots.phase == (label,) + section.spots.phase[1:]
    row, col = spot_pixels(spots, stack, dialect=dialect)
    np.testing.assert_array_equal(col, section.spots.col)


# ----------------------------------------------------------------------------- bad inputs


def test_dialect_detection_errors(project, tmp_path):
    dialect, map_dir, qnt_dir = project
    _raises("not found", read_jeol_maps, tmp_path / "nowhere")
    _raises("no JEOL maps", read_jeol_maps, tmp_path)
    other = "old" if dialect == "new" else "new"
    (map_dir / MAP_FILE[other].format(k=1)).write_text("1 2\n")
    _raises("both .* keep one export", read_jeol_maps, map_dir)
    read_jeol_maps(map_dir, dialect=dialect)  # an explicit dialect picks its files
    with pytest.raises(InputError, match="unknown JEOL dialect"):
        read_jeol_maps(map_dir, dialect="jxa")


def _map(dialect, map_dir, k=1):
    return map_dir / MAP_FILE[dialect].format(k=k)


def _cnd(dialect, map_dir, k=1):
    return map_dir / CND_FILE[dialect].format(k=k)


def _sep(dialect):
    return "," if dialect == "new" else " "


def _drop_last_line(text: str) -> str:
    return "".join(text.splitlines(keepends=True)[:-1])


def _set_field(path: Path, sep: str, line: int, col: int, value: str) -> None:
    lines = path.read_text().split("\n")
    fields = lines[line].split(sep)
    fields[col] = value
    lines[line] = sep.join(fields)
    path.write_text("\n".join(lines))


MAP_CASES = {
    "non-numeric count": (lambda d, m: _set_field(_map(d, m, 2), _sep(d), 0, 1, "abc"), r"line 1, column 2: 'abc' is not a count"),
    "NaN count": (lambda d, m: _set_field(_map(d, m, 3), _sep(d), 0, 0, "nan"), r"line 1, column 1: 'nan' is not a count"),
    "negative count": (lambda d, m: _set_field(_map(d, m, 3), _sep(d), 0, 2, "-4"), r"line 1, column 3: negative count -4"),
    "ragged line": (lambda d, m: _set_field(_map(d, m, 1), _sep(d), 1, 0, "7" + _sep(d) + "7"), r"line 2: \d+ values where the lines above have"),
    "different shapes": (lambda d, m: _edit(_map(d, m, 4), _drop_last_line), r"all maps of an area must have the same shape"),
    "pixels disagree": (lambda d, m: [_edit(_map(d, m, k), _drop_last_line) for k in range(1, 11)], r"pixels \(nx lines of ny values\)"),
    "missing cnd": (lambda d, m: _cnd(d, m, 2).unlink(), r"no condition file .*map_conditions"),
    "incomplete cnd": (lambda d, m: _edit(_cnd(d, m, 5), lambda t: re.sub(r"\$\S*DWELL\S*.*\n", "", t)), r"lacks \$\S*DWELL.*map_conditions"),
    "bad cnd number": (lambda d, m: _edit(_cnd(d, m, 5), lambda t: t.replace("1e-07", "1e-O7")), r"line \d+ .*'1e-O7' is not a number"),
    "other grid": (lambda d, m: _edit(_cnd(d, m, 6), lambda t: t.replace("31.2345", "31.2")), r"map start .*share one grid"),
    "empty map": (lambda d, m: _map(d, m, 7).write_text("\n\n"), r"is empty"),
    "unreadable map": (lambda d, m: (_map(d, m, 8).unlink(), _map(d, m, 8).mkdir()), r"cannot be read"),
}


@pytest.mark.parametrize("case", sorted(MAP_CASES))
def test_bad_maps_raise_input_error(project, case):
    dialect, map_dir, qnt_dir = project
    break_it, match = MAP_CASES[case]
    break_it(dialect, map_dir)
    msg = _raises(match, read_jeol_maps, map_dir)
    assert str(map_dir) in msg  # names the file


def _drop_line(n):
    return lambda t: "".join(line for i, line in enumerate(t.splitlines(keepends=True)) if i != n)


SPOT_CASES = {
    "no folder": (shutil.rmtree, r"spot folder .* not found"),
    "no stg.qnt": (lambda q: (q / "stg.qnt").unlink(), r"lacks stg.qnt"),
    "no wt.qnt": (lambda q: (q / "wt.qnt").unlink(), r"lacks wt.qnt"),
    "unreadable": (lambda q: ((q / "net.qnt").unlink(), (q / "net.qnt").mkdir()), r"net.qnt' cannot be read"),
    "duplicate id": (lambda q: _edit(q / "wt.qnt", lambda t: re.sub(r"^2 ", "1 ", t, count=1, flags=re.M)), r"wt.qnt', line 2: spot id 1 repeats line 1"),
    "fewer spots": (lambda q: _edit(q / "net.qnt", _drop_line(4)), r"net.qnt' has 19 spots but stg.qnt has 20 \(ids missing: \[5\]"),
    "non-integer id": (lambda q: _edit(q / "bgm.qnt", lambda t: "x" + t), r"bgm.qnt', line 1: the spot id 'x1' is not an integer"),
    "non-numeric value": (lambda q: _edit(q / "wt.qnt", lambda t: re.sub(r"^(3 9 )\S+", r"\1n/a", t, flags=re.M)), r"wt.qnt', line 3, column 3: .*'n/a'"),
    "short line": (lambda q: _edit(q / "bgp.qnt", lambda t: re.sub(r"^(6 9( \S+){4}).*$", r"\1", t, flags=re.M)), r"bgp.qnt', line 6: announces 9 and holds 4"),
    "element lists differ": (lambda q: _edit(q / "elint.qnt", lambda t: re.sub(r"^(7 9 )Si", r"\1Zr", t, flags=re.M)), r"elint.qnt', line 7: spot 7 lists Zr"),
    "one background side": (lambda q: (q / "bgp.qnt").unlink(), r"lacks bgp.qnt"),
    "bad elemw": (lambda q: _edit(q / ".cnd" / "elemw.cnd", _drop_line(0)), r"elemw.cnd' has 35 lines; expected 4 per element"),
    "no label": (lambda q: _edit(q / "stg.qnt", lambda t: re.sub(r" \S+$", "", t, count=1, flags=re.M)), r"spot 1 has no phase label .*phase_list.csv"),
    "bad current": (lambda q: _edit(q / "mes.qnt", lambda t: re.sub(r"^(2 1 )\S+", r"\1-1", t, flags=re.M)), r"mes.qnt', line 2: the probe current must be positive"),
}


@pytest.mark.parametrize("case", sorted(SPOT_CASES))
def test_bad_spots_raise_input_error(project, case):
    _, _, qnt_dir = project
    break_it, match = SPOT_CASES[case]
    break_it(qnt_dir)
    _raises(match, read_jeol_spots, qnt_dir)


def test_writer_refuses_an_existing_folder(section, tmp_path):
    from jaxpetro.errors import OutputError

    with pytest.raises(OutputError, match="exists"):
        write_jeol(section, tmp_path)
    with pytest.raises(ValueError, match="dialect"):
        write_jeol(section, tmp_path / "x", dialect="jxa")
    assert list(tmp_path.iterdir()) == []


def test_hand_written_old_dialect_frame():
    """A 2 x 3 map written by hand from docs/jeol.md (not by our writer): file line i is
    image row i, which follows stage X; a spot one step along +X from the map start lands
    on row 1, column 0."""
    import tempfile

    from jaxpetro.io.generic import SpotSet
    from jaxpetro.io.jeol import read_jeol_maps, spot_pixels

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "1_map.txt").write_text("1 2 3\r\n4 5 6\r\n")
        (d / "1.cnd").write_text(
            "$CM_INSTRUMENT JXA-8530F\n$CM_CURRENT 1e-07\n$XM_ELEMENT Si\n$XM_DWELL_TIME 20 msec\n"
            "$XM_STEP_SIZE 5 5 um\n$XM_MAP_START 10.0 20.0 11.0 mm\n$XM_POINTS 2 3\n"
        )
        stack = read_jeol_maps(d)
        np.testing.assert_array_equal(stack.counts[..., 0], [[1, 2, 3], [4, 5, 6]])
        assert stack.channels == ("Si",) and stack.step_um == 5.0 and tuple(stack.map_start_mm) == (10.0, 20.0)
        spots = SpotSet(id=np.array([1, 2]), phase=("Qtz", "Pl"), elements=("Si",), oxides=("SiO2",),
                        wt=np.ones((2, 1)), x_mm=np.array([10.005, 10.0]), y_mm=np.array([20.0, 20.010]))
        row, col = spot_pixels(spots, stack, dialect="old")
        assert row.tolist() == [1, 0] and col.tolist() == [0, 2]

"""Bad inputs found in review: each must stop with a clear jaxpetro error, not a wrong answer."""

import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.errors import InputError
from jaxpetro.io.generic import read_map_stack
from jaxpetro.io.perplex import read_table
from jaxpetro.io.wholerock import read_wholerock


def test_tiny_ensembles_are_refused(tmp_path, capsys):
    status = main(["ptpath", "--out", str(tmp_path / "o"), "--set", "profile=p.csv", "--set", "forward.path=t.csv",
                   "--set", "ensemble.size=2"])
    assert status == 2 and "ensemble.size" in capsys.readouterr().err


@pytest.mark.parametrize("cell, sd, match", [("inf", "1", "not a finite number"), ("50", "0", "not a positive number")])
def test_whole_rock_inf_and_zero_sd(tmp_path, cell, sd, match):
    path = tmp_path / "wr.csv"
    path.write_text(f"sample,SiO2,SiO2_sd,Zr,TiO2\nP,50,1,100,1\nA,{cell},{sd},120,1.1\n")
    with pytest.raises(InputError, match=match):
        read_wholerock(path)


def test_a_stray_table_node_is_named_not_allocated(tmp_path):
    """P = 2.0001 among a 0.5-kbar grid would span a 100k-row grid; it is an error instead."""
    rows = ["P_kbar,T_C,X_alm,X_prp,X_grs,X_sps"]
    for p in (2.0, 2.5, 3.0, 3.5, 2.0001):
        for t in (500, 510, 520, 530):
            rows.append(f"{p},{t},0.7,0.1,0.1,0.1")
    path = tmp_path / "grid.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match="not on a regular grid"):
        read_table(path)


def _stack(path):
    rng = np.random.default_rng(0)
    np.savez_compressed(path, maps=rng.poisson(50, (3, 40, 40)), channels=np.array(["Si", "Al", "Fe"]), dwell_ms=10.0,
                        current_A=1e-7)
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["empty", "truncated", "corrupt member", "no pixels"])
def test_damaged_map_stack_is_an_input_error_naming_the_file(tmp_path, damage):
    good = _stack(tmp_path / "good.npz")
    bad = tmp_path / "maps.npz"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "corrupt member":  # the zip directory is intact, the deflated data is not
        raw = bytearray(good)
        raw[len(raw) // 3: len(raw) // 3 + 64] = b"\0" * 64
        bad.write_bytes(bytes(raw))
    else:
        np.savez(bad, maps=np.zeros((3, 0, 5)), channels=np.array(["Si", "Al", "Fe"]), dwell_ms=10.0, current_A=1e-7)
    with pytest.raises(InputError, match="maps.npz") as info:
        read_map_stack(bad)
    assert ("empty" in str(info.value)) == (damage in ("empty", "no pixels"))


def test_truncated_map_stack_through_the_cli_has_no_traceback(tmp_path, capsys):
    good = _stack(tmp_path / "good.npz")
    (tmp_path / "maps.npz").write_bytes(good[:100])
    status = main(["qmap", "--out", str(tmp_path / "o"), "--quiet", "--set", f"input.maps={tmp_path / 'maps.npz'}",
                   "--set", "clustering.init=kmeans++"])
    err = capsys.readouterr().err
    assert status == 3 and err.startswith("jaxpetro: error: map stack") and "Traceback" not in err

"""Bad inputs found in review: each must stop with a clear jaxpetro error, not a wrong answer."""

import pytest

from jaxpetro.cli import main
from jaxpetro.errors import InputError
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

"""The qmap -> ptpath chain on shipped configs: the demo section's garnet grew along a known
P-T path (read from ptpath's own demo table), qmap cuts a profile from core to rim and
configs/chain_ptpath.yaml inverts it, all through the CLI."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.synthetic import make_thin_section
from jaxpetro.synthetic.thin_section import garnet_path

ROOT = Path(__file__).resolve().parents[1]
N = 96


def core_to_rim(sec):
    """[x0, y0, x1, y1] from the main garnet's centre along the ray that stays in pure garnet."""
    r, c, radius = sec.garnets[0]
    for ang in np.deg2rad(np.arange(0, 360, 15)):
        d = np.arange(0, 0.9 * radius)
        rr, cc = np.round(r + d * np.sin(ang)).astype(int), np.round(c + d * np.cos(ang)).astype(int)
        if np.all((rr >= 0) & (rr < N) & (cc >= 0) & (cc < N)) and np.all(sec.fractions[rr, cc, 4] > 0.99):
            return [round(float(v), 1) for v in (c, r, c + 0.9 * radius * np.cos(ang),
                                                  r + 0.9 * radius * np.sin(ang))], radius
    raise AssertionError("no pure-garnet ray")


@pytest.mark.slow  # ~70 s; the same qmap -> ptpath chain runs by default in tests/test_section.py and test_demo.py
def test_qmap_profile_inverts_for_the_true_path(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("qmap.yaml", "chain_ptpath.yaml"):
        shutil.copy(ROOT / "configs" / name, configs / name)
    shutil.copytree(ROOT / "configs" / "data", configs / "data")
    monkeypatch.chdir(tmp_path)
    fast = ["--set", "output.plots=false"]
    assert main(["demo", "--out", "demo-out", "--quiet", "--set", f"synthetic.rows={N}", "--set", f"synthetic.cols={N}",
                 "--set", "ptpath=false", "--set", "isocon=false", *fast]) == 0
    sec = make_thin_section(rows=N, cols=N, n_spots=40, seed=0, garnet_size=(0.12, 0.14))  # the demo's section
    line, radius = core_to_rim(sec)
    assert main(["qmap", "configs/qmap.yaml", "--out", "qmap-out", "--quiet", "--set", f"summary.profiles={{garnet: {line}}}",
                 "--set", "summary.regions={}", *fast]) == 0
    assert (tmp_path / "qmap-out" / "profiles" / "garnet_garnet.csv").is_file()
    assert main(["ptpath", "configs/chain_ptpath.yaml", "--out", "chain-out", "--quiet", "--set", "ensemble.size=100",
                 *fast]) == 0
    with open(tmp_path / "chain-out" / "ptpath.csv") as fh:
        rows = list(csv.DictReader(fh))
    r_um = np.array([float(r["radius_um"]) for r in rows])
    P = np.array([float(r["P_kbar"]) for r in rows])
    T = np.array([float(r["T_C"]) for r in rows])
    P_true, T_true = garnet_path(r_um / (radius * sec.step_um))
    # Truth 6.5 -> ~11 kbar, 450 -> ~630 C over the profile; the map's counting noise (one 20 ms
    # pixel, 3 px wide) leaves ~0.4 kbar / ~20 C of posterior sd per shell.
    assert np.sqrt(np.mean((P - P_true) ** 2)) < 1.0, (P, P_true)
    assert np.sqrt(np.mean((T - T_true) ** 2)) < 40.0, (T, T_true)
    assert np.corrcoef(P, P_true)[0, 1] > 0.8 and np.corrcoef(T, T_true)[0, 1] > 0.8

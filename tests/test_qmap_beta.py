"""beta robust to mixed and bad spot pixels (issue 10 item 1): spots weighted by their
pixel's mixing fraction, qntmap's per-element consistency test, reasons in spots.csv.
Ground truth: the synthetic instrument's beta and planted bad and mixed spots."""

import csv

import numpy as np
import pytest

from jaxpetro.cli import main
from jaxpetro.io.results import read_hdf5
from jaxpetro.models.spots import beta_consistency
from jaxpetro.synthetic import make_thin_section
from jaxpetro.workflows.demo import export_section


def test_consistency_test_flags_by_poisson_tail_and_overdispersion():
    rng = np.random.default_rng(0)
    mu = np.array([[2.0, 2000.0]]).repeat(200, 0)
    obs = rng.poisson(mu).astype(float)
    obs[5, 1] = 2000 * 1.2  # 20 % off at 2000 counts: 9 sigma
    obs[7, 0] = 7.0  # 7 counts for 2 expected: Poisson tail 4.5e-3 (the normal approximation says 3.5 sigma)
    ok, z, phi = beta_consistency(obs, mu, np.ones_like(mu, bool), 1e-3)
    assert not ok[5, 1] and ok[7, 0] and ok[:, 0].sum() >= 199 and ok[:, 1].sum() == 199
    assert phi[1] == pytest.approx(1.0, abs=0.3)
    # A map scattering 3 % beyond counting noise (drift): the interval widens, the 20 % spot is still out.
    obs2 = rng.poisson(mu * rng.normal(1.0, 0.03, mu.shape)).astype(float)
    obs2[5, 1] = 2000 * 1.2
    ok2, _, phi2 = beta_consistency(obs2, mu, np.ones_like(mu, bool), 1e-3)
    assert phi2[1] > 3 and ok2[:, 1].sum() == 199 and not ok2[5, 1]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Seed-0 section with a garnet spot whose Fe peak reads 1.5 x (an inclusion under the
    beam) and a quartz spot moved onto a boundary pixel with 81 % quartz."""
    sec = make_thin_section(rows=128, cols=128, n_spots=40, seed=0)
    root = tmp_path_factory.mktemp("beta")
    export_section(sec, root)
    with open(root / "spots.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    phases = [r["phase"] for r in rows]
    bad, mixed = phases.index("Grt"), phases.index("Qtz")
    rows[bad]["Fe_peak"] = str(float(rows[bad]["Fe_peak"]) * 1.5)
    q = sec.phases.index("Qtz")
    cand = np.argwhere((sec.fractions[..., q] > 0.8) & (sec.fractions[..., q] < 0.88))
    r, c = cand[len(cand) // 2]
    rows[mixed]["x_px"], rows[mixed]["y_px"] = str(c), str(r)
    with open(root / "spots.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sec, root, rows[bad]["id"], rows[mixed]["id"]


def _run(root, out, *sets):
    args = ["qmap", "--out", str(out), "--quiet", "--set", f"input.maps={root / 'maps.npz'}",
            "--set", f"input.spots={root / 'spots.csv'}", "--set", "output.plots=false"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    data, _ = read_hdf5(out / "qmap.h5")
    with open(out / "spots.csv", newline="") as fh:
        return data, {r["id"]: r for r in csv.DictReader(fh)}


def test_planted_spots_are_left_out_of_beta_and_listed(planted, tmp_path, capsys):
    sec, root, bad, mixed = planted
    fe = sec.elements.index("Fe")
    data, spots = _run(root, tmp_path / "on")
    beta = np.asarray(data["parameters"]["beta"])[0]
    assert "left out of those elements' beta" in capsys.readouterr().err
    assert spots[bad]["beta_note"].startswith("Fe: ") and "Fe" not in spots[bad]["beta_elements"].split()
    assert "Si" in spots[bad]["beta_elements"].split()  # only Fe is left out of this spot
    # the 81 % quartz pixel is estimated below the threshold (0.8-0.9 of Qtz) and left out of every beta
    note = spots[mixed]["beta_note"]
    assert note.startswith("mixed pixel: mixing fraction 0.") and "of Qtz < quantify.threshold" in note, note
    assert float(note.split("mixing fraction ")[1].split()[0]) < 0.95 and spots[mixed]["beta_elements"] == ""
    assert abs(beta[fe] / sec.beta[fe] - 1) < 0.01
    # Without the test the planted spot drags beta_Fe up by its share of the ratio estimator.
    data_off, spots_off = _run(root, tmp_path / "off", "quantify.beta_p=0")
    assert np.asarray(data_off["parameters"]["beta"])[0][fe] / sec.beta[fe] - 1 > 0.02
    assert "Fe" in spots_off[bad]["beta_elements"].split() and spots_off[bad]["beta_note"] == ""

#!/usr/bin/env python
"""Regenerate the shipped ptpath example data under configs/data/.

Writes ``garnet_profile.csv`` (60 shells of the synthetic clockwise path through the demo
table, noise 0.005 per end-member, with ``_sd`` columns), ``garnet_inclusions.csv`` (two
inclusion thermobarometers on the same path) and ``garnet_truth.csv`` (the true path), and
copies the demo table to ``garnet_grid_demo.csv``. Usage: ``python scripts/make_ptpath_data.py [SEED]``.
"""

import shutil
import sys
from pathlib import Path

import numpy as np

from jaxpetro.io.profiles import write_profile
from jaxpetro.io.results import write_csv
from jaxpetro.synthetic.garnet_profile import demo_table_path, make_garnet_profile

OUT = Path(__file__).resolve().parents[1] / "configs" / "data"


def main(seed: int = 1) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo_table_path(), OUT / "garnet_grid_demo.csv")
    synth = make_garnet_profile(seed=seed)
    write_profile(OUT / "garnet_profile.csv", synth.radius_um, synth.X, np.full_like(synth.X, synth.noise_sd))
    write_csv(OUT / "garnet_truth.csv", ["radius_um", "P_kbar", "T_C"],
              [[float(r), float(p), float(t)] for r, p, t in zip(synth.radius_um, synth.P_kbar, synth.T_C)])
    rng = np.random.default_rng(seed + 1)
    rows = []
    for radius in (310.0, 1110.0):  # between shells: the inclusions add steps of their own
        P = float(np.interp(radius, synth.radius_um, synth.P_kbar))
        T = float(np.interp(radius, synth.radius_um, synth.T_C))
        rows.append([radius, round(P + 0.5 * rng.normal(), 2), round(T + 25.0 * rng.normal(), 1), 0.5, 25.0])
    write_csv(OUT / "garnet_inclusions.csv", ["radius_um", "P_kbar", "T_C", "P_sd", "T_sd"], rows)
    print(f"wrote {OUT}/garnet_profile.csv, garnet_inclusions.csv, garnet_truth.csv, garnet_grid_demo.csv")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)

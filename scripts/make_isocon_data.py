#!/usr/bin/env python
"""Write ``configs/data/wholerock_synthetic.csv``, the data of ``configs/isocon.yaml``.

A synthetic altered metabasalt (:func:`jaxpetro.synthetic.wholerock.make_wholerock`, seed 1):
2 protolith analyses (averaged by the workflow), 5 altered samples, 20 elements (10 oxides
in wt%, 10 trace elements in ppm), 30 % immobile, 5 % analytical noise. To exercise the
reader, one value is written as below a detection limit ('<0.5'), one as 'bdl', and two
non-element columns (LOI = 100 wt% minus the analysed total, lithology) are added; the config excludes them. The truth
(mass ratios, immobile elements) is written next to it as ``wholerock_synthetic_truth.csv``.

    python scripts/make_isocon_data.py [--out configs/data/wholerock_synthetic.csv]
"""

import argparse
import csv
from pathlib import Path

import numpy as np

from jaxpetro.synthetic.wholerock import make_wholerock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="configs/data/wholerock_synthetic.csv")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = make_wholerock(args.seed, n_reference=2, noise=0.05)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    is_wt = np.array([u == "wt%" for u in data.units])
    # LOI: what the analysed oxides and traces leave of 100 wt% (volatiles), as a lab reports it.
    loi = np.clip(100.0 - data.values[:, is_wt].sum(axis=1) - 1e-4 * data.values[:, ~is_wt].sum(axis=1), 0.2, None)
    cells = [[f"{v:.4g}" for v in row] for row in data.values]
    th, rb = data.elements.index("Th") if "Th" in data.elements else 0, data.elements.index("Rb") if "Rb" in data.elements else 1
    cells[3][th] = "<0.5"  # a below-detection entry with its limit
    cells[5][rb] = "bdl"  # a below-detection entry without a limit
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["sample", "lithology", *data.elements, "LOI"])
        for name, row, l in zip(data.samples, cells, loi):
            lith = "metabasalt" if name in data.reference else "altered metabasalt"
            writer.writerow([name, lith, *row, f"{l:.2f}"])
    truth = out.with_name(out.stem + "_truth.csv")
    with open(truth, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["sample", "mass_ratio", "immobile"])
        imm = " ".join(e for e, m in zip(data.elements, data.immobile) if m)
        for name, mr in zip(data.altered, data.mass_ratio):
            writer.writerow([name, f"{mr:.6f}", imm])
    print(f"wrote {out} and {truth}")


if __name__ == "__main__":
    main()

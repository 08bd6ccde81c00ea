#!/usr/bin/env python
"""Write ``configs/data/wholerock_synthetic.csv``, the data of ``configs/isocon.yaml``.

A synthetic sericite-chlorite altered basalt (:func:`jaxpetro.synthetic.wholerock.make_altered_basalt`,
seed 1): 2 protolith analyses (averaged by the workflow), 5 altered samples, 20 elements
(10 oxides in wt%, 10 trace elements in ppm), Ti Al Zr Nb Y Th immobile, every composition
closed to 100 wt% with its LOI, 2 % (oxides) and 6 % (traces) analytical errors written as
``<column>_sd`` columns. To exercise the reader, one value is written as below a detection
limit ('<0.5'), one as 'bdl', and three non-element columns (lithology, LOI, Total) are
added; the config excludes them. The truth (mass ratios, immobile elements) is written next
to it as ``wholerock_synthetic_truth.csv``.

    python scripts/make_isocon_data.py [--out configs/data/wholerock_synthetic.csv]
"""

import argparse
import csv
from pathlib import Path

from jaxpetro.synthetic.wholerock import make_altered_basalt, write_wholerock_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="configs/data/wholerock_synthetic.csv")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = make_altered_basalt(args.seed, n_reference=2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.csv")
    write_wholerock_csv(tmp, data, sd_columns=True)  # sample, <element>, <element>_sd ..., LOI, Total
    with open(tmp, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    tmp.unlink()
    header = rows[0]
    rows[4][header.index("Th")] = "<0.5"  # alt2: a below-detection entry with its limit
    rows[6][header.index("Rb")] = "bdl"  # alt4: a below-detection entry without a limit
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([header[0], "lithology", *header[1:]])
        for row in rows[1:]:
            lith = "basalt" if row[0] in data.reference else "altered basalt"
            writer.writerow([row[0], lith, *row[1:]])
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

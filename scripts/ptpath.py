#!/usr/bin/env python
"""P–T path of a zoned garnet; same as ``jaxpetro ptpath [CONFIG.yaml] [--out DIR] [--set KEY=VALUE ...]``.

Example: ``python scripts/ptpath.py configs/ptpath.yaml --out ptpath-out --set sensitivity=true``.
"""

import sys

from jaxpetro.cli import main

if __name__ == "__main__":
    sys.exit(main(["ptpath", *sys.argv[1:]]))

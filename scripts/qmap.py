#!/usr/bin/env python
"""Thin script equivalent to ``jaxpetro qmap``: ``python scripts/qmap.py configs/qmap.yaml --out qmap-out``."""

import sys

from jaxpetro.cli import main

if __name__ == "__main__":
    sys.exit(main(["qmap", *sys.argv[1:]]))

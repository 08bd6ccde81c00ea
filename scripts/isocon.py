#!/usr/bin/env python
"""Thin script equivalent to ``jaxpetro isocon``: ``python scripts/isocon.py configs/isocon.yaml --out isocon-out``."""

import sys

from jaxpetro.cli import main

if __name__ == "__main__":
    sys.exit(main(["isocon", *sys.argv[1:]]))

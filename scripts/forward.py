#!/usr/bin/env python
"""Thin script equivalent to ``jaxpetro forward``: ``python scripts/forward.py configs/forward.yaml --out forward-out``."""

import sys

from jaxpetro.cli import main

if __name__ == "__main__":
    sys.exit(main(["forward", *sys.argv[1:]]))

#!/usr/bin/env python
"""Run the embedded demo; same as ``jaxpetro demo [CONFIG.yaml] [--out DIR] [--set KEY=VALUE ...] [--quiet]``."""

import sys

from jaxpetro.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))

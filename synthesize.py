#!/usr/bin/env python3
"""Bulk synthesis: ``python synthesize.py --checkpoint DIR --input LABELS --out DIR [--inst DIR]``."""
import sys

from pix2pixhd.cli import synthesize_main
from pix2pixhd.errors import run

if __name__ == "__main__":
    sys.exit(run(synthesize_main))

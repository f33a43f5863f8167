#!/usr/bin/env python3
"""Bulk synthesis: ``python synthesize.py --checkpoint DIR --input LABELS --out DIR [--inst DIR]``."""
import sys

from pix2pixhd.launch import synthesize   # also the installed pix2pixhd-synthesize's

if __name__ == "__main__":
    sys.exit(synthesize())

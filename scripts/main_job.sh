#!/usr/bin/env bash
# The README's first command: install, then run the main job (scripts/main_job.py) on the
# synthetic street-scene dataset the project generates itself. Extra arguments go to main_job.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0 triton==3.8.0
python3 -m pip install -q -e .
python3 scripts/main_job.py "$@"

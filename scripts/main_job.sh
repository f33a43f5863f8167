#!/usr/bin/env bash
# The README's first command: install (scripts/env.sh: the active environment, else .venv), then
# run the main job (scripts/main_job.py) on the synthetic street-scene dataset the project
# generates itself. Extra arguments go to main_job.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
pix2pixhd_env ""
"$PY" scripts/main_job.py "$@"

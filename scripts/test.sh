#!/usr/bin/env bash
# The README's test command (and CI's): install the package with its test extras
# (scripts/env.sh: the active environment, else .venv), then run the suite. Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
pix2pixhd_env "[test]"
"$PY" -m pytest -q --durations=15 tests "$@"

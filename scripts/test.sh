#!/usr/bin/env bash
# The README's test command: install the package with its test extras, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0 triton==3.8.0
python3 -m pip install -q -e ".[test]"
python3 -m pytest -q --durations=15 tests "$@"

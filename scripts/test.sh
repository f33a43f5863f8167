#!/usr/bin/env bash
# The README's test command (and CI's): install the package with its test extras
# (scripts/env.sh: the active environment, else .venv), then run the suite. Extra arguments go
# to pytest.
#
# The suite runs in two pytest-xdist worker processes where the machine has two cores or more
# (most tests are one process, or wait on subprocesses, and leave a core idle), one test file per
# worker at a time (--dist loadfile: a module's shared fixtures run once). PIX2PIXHD_TEST_WORKERS=N runs N
# workers; 1, or an environment without pytest-xdist (an offline install that could not fetch it),
# runs the suite in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
pix2pixhd_env "[test]"
cores=$("$PY" -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)')
workers=${PIX2PIXHD_TEST_WORKERS:-$(( cores < 2 ? 1 : 2 ))}
case "$workers" in
    ''|*[!0-9]*) workers=bad ;;
    *) if [ "${#workers}" -gt 4 ]; then workers=bad; else workers=$(( 10#$workers )); fi ;;
esac
if [ "$workers" = bad ] || [ "$workers" -lt 1 ]; then
    echo "scripts/test.sh: PIX2PIXHD_TEST_WORKERS=${PIX2PIXHD_TEST_WORKERS-}: expected a number of workers from 1 to 9999 (1: one process, no pytest-xdist)" >&2
    exit 1
fi
parallel=()
# the caller chose (-n N, -p no:xdist), or asked for what workers cannot give (--pdb, --trace, -s:
# a debugger or the output on this terminal): one process, or pytest takes their -n
for arg in "$@"; do
    case "$arg" in -n|-n[0-9]*|--numprocesses*|no:xdist|-pno:xdist|--pdb|--trace|-s|--capture=no) workers=1 ;; esac
done
if [ "$workers" -gt 1 ]; then
    if "$PY" -c 'import xdist' 2>/dev/null; then
        parallel=(-n "$workers" --dist loadfile)
    else
        echo "note: pytest-xdist is not installed: the suite runs in one process (pip install pytest-xdist for $workers workers)" >&2
    fi
fi
# ${a[@]+...}: an empty array under set -u is an error before bash 4.4 (macOS's bash 3.2)
"$PY" -m pytest -q --durations=15 ${parallel[@]+"${parallel[@]}"} tests "$@"

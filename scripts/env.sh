# The Python environment of the README's two commands (scripts/main_job.sh, scripts/test.sh),
# sourced by both: `source scripts/env.sh; pix2pixhd_env SPEC` leaves the interpreter in $PY.
#
# Which interpreter: the active environment when there is one (a virtual environment: VIRTUAL_ENV,
# or a python3 whose sys.prefix != sys.base_prefix; or an activated conda environment), otherwise
# a project-local .venv that is created once and reused. So the system Python is never installed
# into, and an externally managed one (PEP 668: Debian 12, Ubuntu 24.04, Homebrew) never blocks.
#
# What it installs: torch==2.13.0 (a CPU build on this project's machines' disk), triton==3.8.0 on
# Linux only (no other platform has triton wheels; the kernels fall back to PyTorch without it),
# then SPEC (".", or ".[test]") in editable mode. An interpreter that already imports torch >= 2.6
# keeps its torch and triton (a GPU machine's CUDA build is never swapped for the pinned CPU one).
# Where pip cannot fetch SPEC's dependencies (an offline machine), the package alone is installed
# (--no-deps --no-build-isolation) and the missing dependencies are named.
#
# Settings (environment variables):
#   PIX2PIXHD_PYTHON        the interpreter to start from (default: python3, else python)
#   PIX2PIXHD_VENV          where the project-local environment lives (default: <repo>/.venv)
#   PIX2PIXHD_ENV_DRY_RUN=1 choose the interpreter and create .venv if needed, then print the
#                           install commands instead of running them and exit 0 without running
#                           the job (tests/test_install.py: no torch install inside a test)

_pix2pixhd_die() {
    echo "scripts/env.sh: $*" >&2
    exit 1
}

# The python executable inside virtual environment $1 (bin/ on POSIX, Scripts/ on Windows).
_pix2pixhd_venv_python() {
    if [ -x "$1/bin/python" ]; then echo "$1/bin/python"; else echo "$1/Scripts/python.exe"; fi
}

# Runs (or, in a dry run, prints) one command.
_pix2pixhd_do() {
    if [ "${PIX2PIXHD_ENV_DRY_RUN:-0}" = "1" ]; then
        echo "would run:$(printf ' %q' "$@")"
    else
        "$@"
    fi
}

pix2pixhd_env() {
    local spec="$1" root base venv
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -n "${PIX2PIXHD_PYTHON:-}" ]; then
        base="$PIX2PIXHD_PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}" ] && [ -e "$(_pix2pixhd_venv_python "$VIRTUAL_ENV")" ]; then
        base="$(_pix2pixhd_venv_python "$VIRTUAL_ENV")"
    elif command -v python3 >/dev/null 2>&1; then
        base=python3
    elif command -v python >/dev/null 2>&1; then
        base=python
    else
        _pix2pixhd_die "no python3 on PATH; install Python 3.10 or newer (or set PIX2PIXHD_PYTHON)"
    fi
    command -v "$base" >/dev/null 2>&1 || _pix2pixhd_die "PIX2PIXHD_PYTHON=$base is not an executable"
    # One question to the interpreter: its version and whether it is an environment of its own.
    local facts
    facts="$("$base" -c 'import os, sys
active = sys.prefix != sys.base_prefix or os.environ.get("CONDA_PREFIX") == sys.prefix
print("%d.%d %s" % (sys.version_info[0], sys.version_info[1], int(active)))')" \
        || _pix2pixhd_die "$base does not run"
    local version="${facts% *}" active="${facts#* }"
    case "$version" in
        2.*|3.[0-9]) _pix2pixhd_die "$base is Python $version; the project needs 3.10 or newer (set PIX2PIXHD_PYTHON to one)" ;;
    esac

    if [ "$active" = "1" ]; then
        PY="$base"
        echo "Python environment: the active one ($("$PY" -c 'import sys; print(sys.prefix)'))"
    else
        venv="${PIX2PIXHD_VENV:-$root/.venv}"
        if [ ! -e "$venv/pyvenv.cfg" ]; then
            echo "Python environment: creating $venv with $base (Python $version)"
            "$base" -m venv "$venv" || _pix2pixhd_die "could not create $venv with '$base -m venv'. \
On Debian/Ubuntu install the venv module first: sudo apt install python3-venv (or python$version-venv)"
        else
            echo "Python environment: $venv (reused; delete it to start afresh)"
        fi
        PY="$(_pix2pixhd_venv_python "$venv")"
        "$PY" -c 'import sys' 2>/dev/null \
            || _pix2pixhd_die "$PY does not run (its base Python moved or was removed?); delete $venv and run again"
    fi

    if [ "${PIX2PIXHD_ENV_DRY_RUN:-0}" != "1" ] && ! "$PY" -m pip --version >/dev/null 2>&1; then
        _pix2pixhd_die "$PY has no pip (an environment made by 'uv venv' or with --without-pip?); \
run '$PY -m ensurepip' once, or install torch==2.13.0 and the package into it yourself"
    fi
    # torch and triton: kept where the interpreter already has a usable torch.
    local have
    have="$("$PY" -c 'import importlib.util, torch
v = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
print(torch.__version__ if v >= (2, 6) else "old", int(importlib.util.find_spec("triton") is not None))' \
        2>/dev/null)" || have=""
    if [ -z "$have" ] || [ "${have% *}" = "old" ]; then
        _pix2pixhd_do "$PY" -m pip install -q torch==2.13.0 'triton==3.8.0; platform_system == "Linux"'
    else
        case "${have% *}" in
            2.13.0|2.13.0+*) echo "torch ${have% *} is already installed in $PY (the pinned version)" ;;
            *) echo "torch ${have% *} is already installed in $PY: kept (not replaced by the pinned torch==2.13.0)" ;;
        esac
        if [ "${have#* }" = "0" ]; then
            _pix2pixhd_do "$PY" -m pip install -q 'triton==3.8.0; platform_system == "Linux"' \
                || echo "scripts/env.sh: triton could not be installed; the kernels will run in PyTorch" >&2
        fi
    fi
    if ! _pix2pixhd_do "$PY" -m pip install -q -e "$root$spec"; then
        echo "scripts/env.sh: pip could not install $root$spec with its dependencies (offline, or no" \
             "index reachable?); installing the package alone: pip install --no-deps --no-build-isolation -e $root" >&2
        "$PY" -m pip install -q --no-deps --no-build-isolation -e "$root" \
            || _pix2pixhd_die "the package alone did not install either (see pip's message above). \
Install setuptools>=64 into $PY, or its dependencies (torch numpy pillow tensorboardX tqdm) from a \
wheel folder: $PY -m pip install --no-index --find-links DIR -e '$root$spec'"
        "$PY" - <<'PYEOF' || _pix2pixhd_die "a required dependency is missing (above); install it into $PY and run again"
import importlib.util, sys
need = {"torch": "torch", "numpy": "numpy", "PIL": "pillow"}
want = {"tqdm": "tqdm (progress bars of train_hd.py and synthesize.py)",
        "tensorboardX": "tensorboardX (tensorboard logs; without it torch.utils.tensorboard "
                        "is used if tensorboard is installed, or pass --no_tensorboard)",
        "pytest": "pytest (the test suite)"}
missing = [pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None]
for mod, what in want.items():
    if importlib.util.find_spec(mod) is None:
        print(f"scripts/env.sh: not installed: {what}", file=sys.stderr)
if missing:
    print(f"scripts/env.sh: required and not installed: {', '.join(missing)}", file=sys.stderr)
    sys.exit(1)
PYEOF
    fi
    if [ "${PIX2PIXHD_ENV_DRY_RUN:-0}" = "1" ]; then
        echo "python: $PY"
        exit 0
    fi
}

"""The training and synthesis commands: ``train_hd.py`` / ``synthesize.py`` in a checkout, the
installed ``pix2pixhd-train`` / ``pix2pixhd-synthesize`` (setup.py's console scripts) and
``python -m pix2pixhd train|synthesize``, all through :func:`train` and :func:`synthesize`.

Nothing heavy is imported at the top (``import pix2pixhd`` imports no torch either). A SIGTERM or
SIGINT that arrives while the command's module imports is held; from then on cli's start-up
handlers (torch imports under them) end the start as a stop in training would (exit status 75
or 130, one line), not with 143 or a traceback.
"""
from __future__ import annotations

import sys
from typing import Sequence


def train(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Training's command line (default: ``sys.argv[1:]``); returns the exit status. ``prog``:
    the command's name in its help and usage (default: the script's file name)."""
    from pix2pixhd.errors import hold_stop_signals   # (imports nothing heavy)
    held, previous = hold_stop_signals()
    try:
        from pix2pixhd.cli import train_main
        from pix2pixhd.errors import run
    finally:
        from pix2pixhd.errors import restore_signal_handlers
        restore_signal_handlers(previous)
    return run(lambda args: train_main(args, held=held, prog=prog), argv)


def synthesize(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Synthesis's command line (default: ``sys.argv[1:]``); returns the exit status."""
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.errors import run
    return run(lambda args: synthesize_main(args, prog=prog), argv)


def train_command() -> None:
    """The ``pix2pixhd-train`` console script."""
    sys.exit(train())


def synthesize_command() -> None:
    """The ``pix2pixhd-synthesize`` console script."""
    sys.exit(synthesize())

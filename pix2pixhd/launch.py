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
from typing import Callable, Sequence


def _status(command: Callable[[], int]) -> int:
    """``command()``'s exit status, also where it ends by SystemExit: argparse's (an option it
    refuses: its usage and error lines printed, 2; ``--help``: 0) and a stop's during the start
    (75, 130) are returned, so that a Python caller (a notebook) gets the status these functions
    promise instead of an exception; the scripts pass it to sys.exit, as the SystemExit did. One
    whose code is not a status (a message) passes on."""
    try:
        return command()
    except SystemExit as e:
        if e.code is None or (isinstance(e.code, int) and not isinstance(e.code, bool)):
            return int(e.code or 0)
        raise


def train(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Training's command line (default: ``sys.argv[1:]``); returns the exit status, also for
    what ends the command by SystemExit (argparse's 2 for an option it refuses, 0 for ``--help``,
    a stop's 75/130). ``prog``: the command's name in its help and usage (default: the script's
    file name)."""
    from pix2pixhd.errors import hold_stop_signals   # (imports nothing heavy)
    held, previous = hold_stop_signals()
    try:
        from pix2pixhd.cli import train_main
        from pix2pixhd.errors import run
    finally:
        from pix2pixhd.errors import restore_signal_handlers
        restore_signal_handlers(previous)
    return _status(lambda: run(lambda args: train_main(args, held=held, prog=prog), argv))


def synthesize(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Synthesis's command line (default: ``sys.argv[1:]``); returns the exit status, as
    :func:`train` does (argparse's too)."""
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.errors import run
    return _status(lambda: run(lambda args: synthesize_main(args, prog=prog), argv))


def train_command() -> None:
    """The ``pix2pixhd-train`` console script."""
    sys.exit(train())


def synthesize_command() -> None:
    """The ``pix2pixhd-synthesize`` console script."""
    sys.exit(synthesize())

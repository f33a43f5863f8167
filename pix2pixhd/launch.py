"""The training and synthesis commands: ``train_hd.py`` / ``synthesize.py`` in a checkout, the
installed ``pix2pixhd-train`` / ``pix2pixhd-synthesize`` (setup.py's console scripts) and
``python -m pix2pixhd train|synthesize``, all through :func:`train` and :func:`synthesize`.

Nothing heavy is imported at the top (``import pix2pixhd`` imports no torch either). A SIGTERM or
SIGINT that arrives while the command's module imports is held; from then on cli's start-up
handlers (torch imports under them) end the start as a stop in training would (exit status 75
or 130, one line), not with 143 or a traceback.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Sequence


def _hold_signals() -> tuple[list[int], dict]:
    """Hold SIGTERM and SIGINT (their numbers are appended to the list); one ignored on entry
    (nohup, `&`) stays ignored. Returns the list and the handlers to put back."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return held, {}
    from pix2pixhd.errors import install_signal_handlers   # (imports nothing heavy)
    hold = lambda signum, frame: held.append(signum)   # noqa: E731
    return held, install_signal_handlers({signal.SIGTERM: hold, signal.SIGINT: hold})


def train(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Training's command line (default: ``sys.argv[1:]``); returns the exit status. ``prog``:
    the command's name in its help and usage (default: the script's file name)."""
    held, previous = _hold_signals()
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

"""Errors a user can act on, and the one way every command line reports them.

:class:`UserError` is the base of the project's own error types (a bad dataset, an unusable or
mismatched checkpoint, a label id out of range, a non-finite loss, options that do not go
together, a name that would leave its folder, a run folder that is already taken). Their messages
name the file, the value and the fix. Each type keeps the built-in base it had before
(``DatasetError`` is still a ``ValueError``, ``CheckpointError`` a ``RuntimeError``...), so code
that catches those keeps working.

:func:`run` is what every entry point's ``__main__`` calls (``train_hd.py``, ``synthesize.py``, their
installed ``pix2pixhd-train``/``pix2pixhd-synthesize`` and ``python -m pix2pixhd train|synthesize``,
``python -m pix2pixhd.data|features|evaluate|export|flops``, ``pix2pixhd.kernels.aot``, the dataset
makers, the scripts of benchmarks/ and scripts/): a ``UserError`` prints as ``error: <message>`` on stderr, without a traceback, and the
exit status is 1 (an error with an ``exit_status`` of its own gives that: synthesize.py --strict's
skipped inputs, 65); ``--debug`` anywhere on the command line (or ``PIX2PIXHD_DEBUG=1``) shows the
traceback instead. Any other exception is a bug or an environment problem and keeps its traceback,
except two the user can act on without one: a data loader worker that died (the OOM killer's
``kill -9``: torch's ``RuntimeError: DataLoader worker (pid N) is killed by signal: Killed.``) is one
``error:`` line naming the pid, the signal and the fix, status 1; and a closed stdout
(``... | head -2``: ``BrokenPipeError``) ends the command quietly with status 141, as SIGPIPE would,
except in train_hd.py, whose start-up lines and notes (:func:`say`) and end-of-run summary go to
os.devnull once the reader is gone: the run trains on and keeps its status (0, or a stop's 75/130).
Command-line parsing errors (an unknown option, a value of the wrong type) are argparse's: its
usage, then ``error:``, status 2 (``SystemExit`` passes through :func:`run`; ``pix2pixhd.launch``'s
``train``/``synthesize`` return its status to a Python caller); so the reference's options this
project replaces are refused before parsing, as a ``ConfigError`` (``cli.refuse_reference_only``).
The entry functions themselves (``train_main(argv)``...) raise as before, so Python callers and
tests see the exception.

Under torchrun, a rank that meets a user error exits with status 1 and torchrun stops the other
workers; the training start (run folder check, dataset validation, which only rank 0 does) is
also agreed between ranks (:func:`raise_on_any_rank`), so every rank stops there together instead
of the others waiting in a collective for a rank that is gone.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Callable, Sequence

DEBUG_ENV = "PIX2PIXHD_DEBUG"
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """An error the user can act on: its message alone says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """Options that have no valid meaning, alone or together (the message names the flags)."""


class InputError(UserError, ValueError):
    """A file or folder the user gave cannot be used as it is (no pairs, sizes that differ...)."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named (or a default location) does not exist or holds nothing."""


class MissingDependencyError(UserError, ImportError):
    """An optional package a command needs is not installed (the message names the extra)."""


class RunExistsError(UserError, FileExistsError):
    """A new run was started in the folder of an existing one (see ``pix2pixhd.run_folder``)."""


class PeerFailedError(UserError):
    """This rank stopped because another rank failed (that rank printed why)."""


# The values Triton's own environment switches (TRITON_INTERPRET...) read as on, any case.
TRUTHY = ("1", "true", "yes", "on", "y")


def env_flag(name: str) -> bool:
    """Whether environment variable ``name`` is on, by Triton's rule (knobs.env_bool): 1, true,
    yes, on or y, in any case."""
    return os.environ.get(name, "").lower() in TRUTHY


def loads_json(text: str | bytes):
    """``json.loads(text)``, except that a document nested too deeply for Python's parser
    (``'[' * 100000``: a damaged or hostile file) raises ValueError, as any other text that is not
    JSON does, instead of RecursionError, which the readers' ``except ValueError`` (a one-line
    error naming the file, a note, a damaged line skipped) would not catch."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("not readable JSON: nested too deeply (a damaged or hostile file)") from None


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """Lists ``--debug`` in ``parser``'s help. :func:`run` takes the flag off the command line
    before the parser sees it (an error may come before or during parsing), so it never appears in
    the parsed namespace (``default=SUPPRESS``)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", default=argparse.SUPPRESS,
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")


def _rank_prefix() -> str:
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f" (rank {os.environ.get('RANK', '0')} of {world})" if world > 1 else ""


# 128 + SIGINT: what a shell reports for a program Ctrl-C ended (pix2pixhd.trainer uses it too).
INTERRUPTED_EXIT_STATUS = 130
# Exit status of a run or job stopped by SIGTERM (training after saving latest.pt, synthesis and
# features after what they had written): EX_TEMPFAIL of sysexits.h ("try again later"), so a job
# script can tell it from a finished run (0), an error (1) and a kill.
STOPPED_EXIT_STATUS = 75
# Exit status of a synthesis run with --strict that went through all its inputs and skipped some
# (the outputs written are kept): EX_DATAERR of sysexits.h ("the input data was incorrect"), so a
# pipeline can tell "some inputs could not be used" from an error (1) and a stop (75, 130).
SKIPPED_EXIT_STATUS = 65


def install_signal_handlers(handlers: dict) -> dict:
    """Install ``handlers`` ({signum: handler}), leaving a signal ignored on entry ignored (SIG_IGN:
    SIGINT of a job a non-interactive script started with ``&``). Main thread only. Returns the
    handlers replaced, for :func:`restore_signal_handlers`."""
    import signal
    return {s: signal.signal(s, h) for s, h in handlers.items() if signal.getsignal(s) is not signal.SIG_IGN}


def hold_stop_signals() -> tuple[list[int], dict]:
    """Hold SIGTERM and SIGINT: their numbers are appended to the list returned, nothing else
    happens; one ignored on entry (nohup, `&`) stays ignored. Main thread only (elsewhere nothing
    is held). Returns the list and the handlers to put back (:func:`restore_signal_handlers`)."""
    import signal
    import threading
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return held, {}
    hold = lambda signum, frame: held.append(signum)   # noqa: E731
    return held, install_signal_handlers({signal.SIGTERM: hold, signal.SIGINT: hold})


def restore_signal_handlers(previous: dict) -> None:
    """Put back the handlers :func:`install_signal_handlers` replaced (None: one not set from
    Python, which is given back as SIG_DFL)."""
    import signal
    for s, handler in previous.items():
        signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def check_required_imports(command: str, required: dict[str, str]) -> None:
    """:class:`MissingDependencyError` (one line) naming every module of ``required`` ({module:
    pip package}) that does not import, and the packages to pip install."""
    import importlib
    missing = {}
    for module, package in required.items():
        try:
            importlib.import_module(module)
        except ImportError as e:
            missing[package] = f"{type(e).__name__}: {e}"
    if missing:
        raise MissingDependencyError(f"{command} needs {' and '.join(missing)} ({'; '.join(missing.values())}): "
                                     f"pip install {' '.join(missing)}")


def run(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)`` (default: ``sys.argv[1:]`` without ``--debug``) and return its exit
    status; a :class:`UserError` becomes one ``error: ...`` line on stderr and status 1 (or the
    error's own ``exit_status``, as synthesis's --strict gives :data:`SKIPPED_EXIT_STATUS`), a
    KeyboardInterrupt (Ctrl-C) one ``interrupted`` line and status 130.

    ``--debug`` sets ``PIX2PIXHD_DEBUG=1`` for this call, so that the children it starts (data
    loader workers, a re-executed compiler) show tracebacks too; its value before is put back when
    the call ends (a notebook's next call without --debug shows one line again, not a traceback).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug_before = os.environ.get(DEBUG_ENV)
    if DEBUG_FLAG in argv:
        argv = [a for a in argv if a != DEBUG_FLAG]
        os.environ[DEBUG_ENV] = "1"
    try:
        return _run(main, argv)
    finally:
        # after the except clauses of _run (their debug_enabled() sees this call's --debug)
        if debug_before is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = debug_before


def _run(main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """:func:`run`'s call of ``main(argv)`` and its errors, once ``--debug`` is decided."""
    try:
        status = int(main(argv) or 0)
        sys.stdout.flush()   # here, not at exit: a reader gone (`| head`) is a BrokenPipeError below
        return status
    except UserError as e:
        if debug_enabled():
            raise
        _error_line(f"error{_rank_prefix()}: {user_message(e)}")
        return int(getattr(e, "exit_status", 1))
    except KeyboardInterrupt as e:   # Ctrl-C where no handler of ours stops cleanly (start-up)
        if debug_enabled():
            raise
        # a stop that says what it kept (the synthesis engine's SynthesisInterrupted: its ``line``)
        # is said as it is, for any command that runs it (benchmarks/synthesis.py), not the bare line
        line = getattr(e, "line", None)
        print(line if isinstance(line, str) and line else
              f"\ninterrupted{_rank_prefix()} (Ctrl-C); exit status {INTERRUPTED_EXIT_STATUS}", file=sys.stderr,
              flush=True)
        return INTERRUPTED_EXIT_STATUS
    except BrokenPipeError:
        if debug_enabled() or not stdout_closed():
            raise
        return BROKEN_PIPE_EXIT_STATUS
    except Exception as e:
        # torch's errors (RuntimeError); a dead loader worker's is searched for in any error's
        # chain: its SIGCHLD handler raises wherever the main thread is, and inside another
        # handler (the stdlib's Thread.start cleaning up) it becomes that one's context
        message = loader_worker_died(e)
        if message is None:
            message = shared_memory_full(e)
        if message is None and isinstance(e, RuntimeError):
            message = peer_gone(e)
        if message is None or debug_enabled():
            raise
        _error_line(f"error{_rank_prefix()}: {message}")
        return 1


# What gloo and NCCL say in the error of a collective whose peer process went away.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted",
              "ncclRemoteError", "remote process exited")


def peer_gone(e: BaseException) -> str | None:
    """Under torchrun (WORLD_SIZE > 1), the line for a collective's error that says another rank went
    away while this one waited for it (gloo's "Connection closed by peer", NCCL's remote error);
    None for anything else. That rank's own error line says why (a file it could not read, say):
    this rank's traceback, ~30 lines of the backend's internals, buried it."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    text = str(e)
    if not any(marker in text for marker in _PEER_GONE):
        return None
    first = " ".join(text.split())[:200]
    return (f"stopped: another rank ended while this one waited for it ({first}); that rank's own error says "
            "why (above, or in its log); checkpoints written before are intact. Fix that, then rerun the same "
            "command (training: with --auto_resume)")


# 128 + SIGPIPE: what a shell reports for a program whose reader went away (`... | head`).
BROKEN_PIPE_EXIT_STATUS = 141


# Without a terminal on stderr (a SLURM or nohup log), training and synthesis say their progress
# in a line at most this often (seconds) instead of a progress bar, whose redraws would pile up in
# the file.
PROGRESS_INTERVAL_S = 60.0


def stderr_is_tty() -> bool:
    """Whether stderr is a terminal (a progress bar's place); False when it is None or closed."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


# What a terminal acts on instead of showing: C0 and C1 control characters but newline and tab
# (ESC starts colours, cursor moves and the window title's OSC, BEL ends it, CR goes back over the
# line), DEL, the bidi controls that reorder what follows (U+202E shows "gnp.exe" for "exe.png"),
# and lone surrogates (a file name's undecodable bytes, which stdout cannot encode at all).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape_char(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(s: str) -> str:
    """``s`` with the characters a terminal would act on (:data:`_UNPRINTABLE`) shown as
    ``\\xNN``/``\\uNNNN`` escapes, everything else (accents, CJK, emoji, newlines, tabs) as it is: a
    file name or a value read from a file is printed as text, so a hostile one cannot set the
    window title, clear the screen or hide the rest of its line behind a carriage return."""
    return _UNPRINTABLE.sub(_escape_char, s)


def has_unprintable(s: str) -> bool:
    """Whether :func:`printable` would change ``s``: a value that cannot name a folder or be
    stored in a run's config (``--name``, an imported option) as it is."""
    return _UNPRINTABLE.search(s) is not None


def _error_line(line: str) -> None:
    """``line`` and its newline on stderr in one write: under torchrun every rank of an agreed
    error prints its line to one pipe, and print()'s two writes (the text, then the newline) let
    another rank's line land between them. File names and values in it are shown
    :func:`printable`."""
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()


def say(text: str) -> None:
    """``print(text, flush=True)`` on stdout for a command whose work must go on without its
    reader (train_hd.py's start-up lines and notes): a reader gone (``| head -3`` that exited) sends
    stdout to os.devnull instead of ending the run with status 141. Shown :func:`printable`."""
    try:
        print(printable(text), flush=True)
    except BrokenPipeError:
        if not stdout_closed():
            raise


def stdout_closed() -> bool:
    """Whether the reader of stdout is gone (``| head`` exited): then stdout is pointed at
    os.devnull, so that Python's own flush at exit does not print "Exception ignored ... Broken
    pipe". A BrokenPipeError of anything else (a socket, a child's pipe) is not this."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    closed = False
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        closed = True
    except OSError:
        return False
    if not closed:
        try:   # nothing was left to flush: ask the pipe itself (POLLERR: no reader any more)
            import select
            poll = select.poll()
            poll.register(fd, select.POLLOUT)
            closed = any(ev & select.POLLERR for _, ev in poll.poll(0))
        except (AttributeError, OSError, ValueError):
            return False
    if closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return closed


_WORKER_KILLED = re.compile(r"DataLoader worker \(pid (\d+)\) is killed by signal: ([^.]+)\.")
_WORKER_EXITED = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([0-9, ]+)\) exited unexpectedly"
                            r"(?: with exit code (-?\d+))?")


def _chain_texts(e: BaseException | None) -> list[str]:
    """The messages of ``e`` and of the errors it was raised from or during (``__cause__``, else
    ``__context__``), outermost first, each once: where torch's wrapped errors keep the original."""
    chain, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    return chain


def loader_worker_died(e: BaseException, resume: str = "rerun the same command to resume (train_hd.py: "
                                                        "with --resume)",
                       workers: str = "--nThreads/--workers") -> str | None:
    """The one line for torch's error of a DataLoader worker process that died (killed by a
    signal, e.g. by the out-of-memory killer, or exited), or None when ``e`` is not that. torch
    raises "exited unexpectedly" from the more precise "is killed by signal": the chain is
    searched for the latter first. ``resume``: the line's last part, how to go on (the trainer's
    says which checkpoint it saved); "" ends the line with the cause. ``workers``: the option(s)
    that set the number of workers, named in the advice (synthesize.py's is --workers alone)."""
    tail = f"; {resume}" if resume else ""
    chain = _chain_texts(e)
    for text in chain:
        m = _WORKER_KILLED.search(text)
        if m:
            pid, sig = m.group(1), m.group(2).strip()
            why = (f"out of shared memory? raise /dev/shm (docker: --shm-size), or fewer {workers}"
                   if sig.lower().startswith("bus error") else f"out of memory? fewer {workers}")
            return f"a data loader worker (pid {pid}) was killed by signal: {sig} ({why}){tail}"
    for text in chain:
        m = _WORKER_EXITED.search(text)
        if m:
            pids, code = m.group(1).strip(), m.group(2)
            how = f"exited with code {code}" if code is not None else "exited unexpectedly"
            plural = "s" if "," in pids else ""
            return (f"a data loader worker (pid{plural} {pids}) {how} (killed for memory? fewer "
                    f"{workers}; --debug shows torch's traceback){tail}")
    return None


# torch's error when shared memory cannot be had: a DataLoader worker putting a batch in /dev/shm
_SHM_FULL = re.compile(r"unable to (?:allocate shared memory\(shm\)|write to file|resize file|"
                       r"mmap \d+ bytes from file) (?:for file )?<?(/?torch_[^>\s]*)>?[^\n]*")


def shared_memory_full(e: BaseException, workers: str = "--nThreads/--workers", resume: str = "") -> str | None:
    """The one line for torch's error of a shared-memory allocation that failed (a container's
    /dev/shm, 64 MB under Docker by default, filled by the loader workers' batches), or None
    when ``e`` is not that (its cause or context chain is searched). ``workers``: the option(s)
    setting the number of workers; ``resume``: how to go on once that is fixed ("" says none)."""
    for text in _chain_texts(e):
        m = _SHM_FULL.search(text)
        if m:
            said = " ".join(m.group(0).split())[:200]
            return (f"out of shared memory: a data loader worker could not put its samples in /dev/shm "
                    f"({said}); give the container more (docker run --shm-size=8g; Kubernetes: an emptyDir "
                    f"with medium: Memory mounted at /dev/shm), or use fewer {workers} (0 reads in the main "
                    "process, without shared memory)" + (f"; then {resume}" if resume else ""))
    return None


def user_message(e: UserError) -> str:
    """``e``'s message as the user should read it. torch's DataLoader re-raises an error from a
    worker process with the worker's traceback in the message ("Caught DatasetError in DataLoader
    worker process 0. Original Traceback ..."): only the original message is kept."""
    text = str(e).strip()
    if "Original Traceback" in text:
        head = f"\n{type(e).__module__}.{type(e).__qualname__}: "
        if head in text:
            text = text.rsplit(head, 1)[1].strip()
    return text or type(e).__name__


def raise_on_any_rank(error: BaseException | None, dist_info, what: str = "could not start") -> None:
    """Collective (every rank of ``dist_info`` calls it): re-raise this rank's ``error``; when
    this rank has none but another has, raise :class:`PeerFailedError` naming that rank and
    ``what`` happened to it. A single process just re-raises ``error``. Costs one small
    all-gather."""
    if dist_info is not None and dist_info.distributed:
        import torch.distributed as dist
        seen: list = [None] * dist_info.world_size
        dist.all_gather_object(seen, None if error is None else f"{type(error).__name__}: {error}")
        failed = [r for r, m in enumerate(seen) if m is not None]
        if error is None and failed:
            first = seen[failed[0]].splitlines()[0]
            raise PeerFailedError(f"stopped because rank {failed[0]} {what} ({first[:300]})")
    if error is not None:
        raise error

"""The command-line parts every benchmark script shares (no torch import; not a script itself).

- :func:`make_parser`: an ``ArgumentParser`` under the project's one command-line policy
  (``pix2pixhd.argparsing``): abbreviations refused, as train_hd.py's (``--ste 1`` is not read as
  ``--steps 1``), and each default shown once. An option whose default depends on the device
  (``None`` in the parser, "GPU 20, CPU 5" in fact) says so in its help as ``(default: ...)``.
- :func:`add_generator_options`, :func:`add_device_options`: the options train.py and
  synthesis.py both take (the networks' shapes; device, peak and JSON output), defined once.
- :func:`command_line`: the command that reproduces this run, for the ``command`` field of a
  benchmark's JSON record, with the interpreter that ran it (not always ``python3``) and the
  script's path as invoked.
- :func:`check_outputs`: the files (--json, --markdown) and folders (--profile) a script will
  write, checked before any work; :func:`write_text_atomic` writes such a file.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from typing import Sequence

from pix2pixhd.argparsing import make_parser as _make_parser


def make_parser(description: str, *, raw_description: bool = False, **kwargs) -> argparse.ArgumentParser:
    """The parser of a benchmark script: defaults shown once, no abbreviated options, a misspelt
    option named with the closest one. Its callers check the values after parsing and raise
    ConfigError (one ``error:`` line through ``errors.run``, status 1)."""
    return _make_parser(description=description, raw_description=raw_description, **kwargs)


def add_generator_options(p: argparse.ArgumentParser) -> None:
    """The generator's shape and the random label maps' classes (train.py, synthesis.py)."""
    p.add_argument("--ngf", type=int, default=None,
                   help="generator filters of the first conv (default: the reference's (global 64, "
                        "local 32) on GPU; 16 on CPU)")
    p.add_argument("--n_downsample_global", type=int, default=4,
                   help="the global generator's downsamplings (the reference's 4)")
    p.add_argument("--n_blocks_global", type=int, default=9,
                   help="residual blocks of the global generator (the reference's 9)")
    p.add_argument("--n_blocks_local", type=int, default=3,
                   help="residual blocks of the local enhancer (the reference's 3)")
    p.add_argument("--label_nc", type=int, default=35,
                   help="label classes of the random label maps (Cityscapes' 35)")


def add_device_options(p: argparse.ArgumentParser) -> None:
    """The device, its peak for the utilisation column and the JSON record (train.py, synthesis.py)."""
    p.add_argument("--device", default="auto", help="auto (the GPU if there is one, else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--peak_tflops", type=float, default=None,
                   help="the device's peak for the utilisation column (default: from the data sheet "
                        "table in pix2pixhd.flops for known GPUs; none for CPUs)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON (default: not written)")


def python_command() -> str:
    """The interpreter running this process, as a command: its name (``python``, ``python3.11``)
    when that name on PATH is this very interpreter (an active virtual environment's too), else
    its full path (a virtual environment that is not active, a Python not on PATH)."""
    exe = sys.executable
    if not exe:
        return "python3"
    name = os.path.basename(exe)
    found = shutil.which(name)
    if found and os.path.normcase(os.path.abspath(found)) == os.path.normcase(os.path.abspath(exe)):
        return name
    return exe


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """``<interpreter> <script> <arguments>``, shell-quoted (``argv``: default ``sys.argv[1:]``).
    The script is the path it was run by (``sys.argv[0]``) when this process runs it as a file;
    else (imported, ``python -m``) ``script``, a path relative to the repository root. An ``argv``
    given by ``errors.run`` (the script's ``__main__``) counts as this process's command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    invoked = sys.argv[0] if sys.argv and sys.argv[0] else ""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    as_file = argv is None or os.path.basename(main_file) == os.path.basename(script)
    if as_file and invoked.endswith(".py") and os.path.basename(invoked) == os.path.basename(script):
        script = invoked
    return shlex.join([python_command(), script, *args])


def check_outputs(p: argparse.ArgumentParser, files: Sequence[tuple[str, str | os.PathLike | None]] = (),
                  folders: Sequence[tuple[str, str | os.PathLike | None]] = ()) -> None:
    """A UserError (one ``error:`` line through ``errors.run``, status 1) before any work when a
    file a script will write ((flag, path) in ``files``: a folder, under a file, in a folder it
    cannot write) or a folder (``folders``: a file, not writable) would fail, or a ConfigError when
    two flags name the same file. ``p``: the script's parser (unused; kept for its callers)."""
    from pix2pixhd.errors import ConfigError
    from pix2pixhd.paths import check_output_file, check_output_folder
    given = [(flag, path) for flag, path in files if path]
    for i, (flag, path) in enumerate(given):
        for other, q in given[:i]:
            if os.path.abspath(path) == os.path.abspath(q):
                raise ConfigError(f"{flag} {path} is also {other}'s file: one would overwrite the other; "
                                  f"give {flag} another file")
    # (the checks make a file where each will be written, as root too)
    for flag, path in given:
        check_output_file(path, flag, kind="a results file",
                          default_name="results.md" if flag == "--markdown" else "results.json")
    for flag, path in folders:
        if path:
            check_output_folder(path, flag)


def train_command_error(argv: Sequence[str]) -> str | None:
    """What train_hd.py says of the command line ``argv`` (its one-line UserError), checked as it
    checks it, without running anything; None when it takes it. For the scripts that start
    train_hd.py runs: their options are refused before any of their own work."""
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.errors import UserError
    try:
        resolve_config(list(argv))
    except UserError as e:
        return str(e)
    return None


def write_text_atomic(path: str | os.PathLike, text: str, say: bool = True) -> None:
    """``text`` into ``path`` (its folders made) through pix2pixhd.checkpoint's atomic write, so a
    run cut short leaves the previous file whole; ``say``: print ``wrote PATH``."""
    from pathlib import Path

    from pix2pixhd.checkpoint import atomic_write_bytes
    atomic_write_bytes(Path(path), text.encode())
    if say:
        print(f"wrote {path}")


if __name__ == "__main__":
    print("error: benchmarks/_cli.py is a module of the benchmark scripts' command-line helpers, not a "
          "script; run one of benchmarks/train.py, synthesis.py, kernels.py, loader.py, loader_memory.py, "
          "memory.py, optimizer.py, quality.py, cyclegan_quality.py", file=sys.stderr)
    raise SystemExit(2)

"""User-given names that become paths: a run's ``--name`` under ``--checkpoints_dir``, a
``--phase`` under ``--dataroot``.

Such a name must be ONE folder name, so that ``parent / name`` stays inside ``parent``: not
empty, not ``.`` or ``..``, no ``/`` or ``\\`` (either system's separator, so a name written on one
system means the same on the other), no drive (``C:``), no NUL. Paths the user gives as paths
(``--checkpoints_dir``, ``--dataroot``, ``--out``) are theirs to choose and are not checked here.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PureWindowsPath

from pix2pixhd.errors import UserError


class UnsafeNameError(UserError, ValueError):
    """A name that would put a path outside the folder it names something in."""


def check_name(value: str, flag: str, parent: str | os.PathLike) -> str:
    """``value`` unchanged if it is one plain folder/file name; else :class:`UnsafeNameError`
    naming the flag, the value, the folder it must stay in and a name that would do."""
    if not isinstance(value, str) or not value:
        problem = "is empty"
    elif value in (".", ".."):
        problem = f"is {value!r}, which is not a folder of its own"
    elif value.startswith(("/", "\\")):
        problem = "is an absolute path"
    elif "/" in value or "\\" in value:
        problem = "holds a path separator"
    elif PureWindowsPath(value).drive:
        problem = "names a drive"
    elif "\x00" in value:
        problem = "holds a NUL character"
    else:
        return value
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value or "")).strip("._") or "run1"
    raise UnsafeNameError(f"{flag} {value!r} {problem}: it must be a single folder name inside "
                          f"{parent}, so nothing is read or written outside it; use a plain name "
                          f"such as {flag} {plain}")


def run_dir(checkpoints_dir: str | os.PathLike, name: str) -> Path:
    """The folder of run ``name``: ``checkpoints_dir/name``, refusing names that would leave it."""
    return Path(checkpoints_dir) / check_name(name, "--name", checkpoints_dir)


def folder_made_from(folder: str | os.PathLike, typed: str | os.PathLike) -> Path | None:
    """The folder a command ran in, told by a ``folder`` it made from the relative path it was
    given, ``typed`` (a run's ``checkpoints_dir/name``): ``folder`` (made absolute) less ``typed``'s
    parts at its end. None where that cannot be told: ``typed`` empty, absolute, climbing (``..``),
    or not the end of ``folder``."""
    parts = [q for q in Path(typed).parts if q != "."]
    run = Path(os.path.abspath(folder)).parts
    cut = len(run) - len(parts)
    if not parts or Path(typed).is_absolute() or ".." in parts or cut < 1 or list(run[cut:]) != parts:
        return None
    return Path(*run[:cut])

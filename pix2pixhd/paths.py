"""User-given names that become paths: a run's ``--name`` under ``--checkpoints_dir``, a
``--phase`` under ``--dataroot``.

Such a name must be ONE folder name, so that ``parent / name`` stays inside ``parent``: not
empty, not ``.`` or ``..``, no ``/`` or ``\\`` (either system's separator, so a name written on one
system means the same on the other), no drive (``C:``), no NUL, at most :data:`NAME_MAX` bytes.
Paths the user gives as paths (``--checkpoints_dir``, ``--dataroot``, ``--out``) are theirs to
choose and are not checked as names.

Paths a command writes are checked before its work (:func:`check_output_file`,
:func:`check_output_folder`): a folder where a file is wanted and the reverse, a parent that is
a file or cannot be written, a file the command reads, an existing file of another kind.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PureWindowsPath
from typing import Callable, Iterable

from pix2pixhd.errors import ConfigError, UserError


NAME_MAX = 255   # bytes in one file or folder name: the limit of ext4, XFS, btrfs, APFS...


class UnsafeNameError(UserError, ValueError):
    """A name that would put a path outside the folder it names something in."""


def name_bytes(name: str) -> int:
    """The length of ``name`` in bytes, as the file system counts it (UTF-8)."""
    return len(name.encode("utf-8", "surrogatepass"))


def check_name(value: str, flag: str, parent: str | os.PathLike) -> str:
    """``value`` unchanged if it is one plain folder/file name; else :class:`UnsafeNameError`
    naming the flag, the value, the folder it must stay in and a name that would do."""
    if not isinstance(value, str):
        raise UnsafeNameError(f"{flag} {value!r} is of type {type(value).__name__}, not a name: pass a str "
                              f"(a single folder name inside {parent}), e.g. {flag} {str(value)!r}")
    if not value:
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
    elif name_bytes(value) > NAME_MAX:
        raise UnsafeNameError(f"{flag} {value[:24]!r}... is {name_bytes(value)} bytes long: a folder name "
                              f"holds at most {NAME_MAX} bytes (the file system's limit); use a shorter {flag}")
    else:
        return value
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value or "")).strip("._") or "run1"
    raise UnsafeNameError(f"{flag} {value!r} {problem}: it must be a single folder name inside "
                          f"{parent}, so nothing is read or written outside it; use a plain name "
                          f"such as {flag} {plain}")


def run_dir(checkpoints_dir: str | os.PathLike, name: str) -> Path:
    """The folder of run ``name``: ``checkpoints_dir/name`` (a leading ``~`` of ``checkpoints_dir``
    is the home folder), refusing names that would leave it."""
    return Path(checkpoints_dir).expanduser() / check_name(name, "--name", checkpoints_dir)


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


# ---- paths a command writes ----------------------------------------------------------------------
def _same_file(a: Path, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (a link to it included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:   # either missing: compare the paths
        return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()


def _check_writable_parent(path: Path, flag: str, folder: bool = False) -> None:
    """Refuse ``path`` when the nearest folder above it (``folder``: or itself) that exists is not
    a folder (a file, a broken link) or is one this process cannot write in: by its permission
    bits, and by making (and removing) a file there, which root's permission bits pass on /proc
    and read-only mounts. Missing folders below it are made later."""
    full = Path(os.path.abspath(path))
    above = next((q for q in ([full] if folder else []) + list(full.parents)
                  if q.exists() or q.is_symlink()), None)
    if above is None:
        return
    if not above.is_dir():
        what = "a broken link" if above.is_symlink() and not above.exists() else "a file"
        raise ConfigError(f"cannot write {path}: {above} is {what}, not a folder; give {flag} a path in a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        why = "no write permission"
        try:   # access() says no on a read-only mount too (EROFS): not a permission to ask for
            if os.statvfs(above).f_flag & getattr(os, "ST_RDONLY", 1):
                why = "it is on a read-only file system"
        except (OSError, AttributeError):
            pass
        raise ConfigError(f"cannot write {path}: {above} is not writable ({why}); give {flag} "
                          "a path in a folder you can write to")
    import tempfile
    try:
        with tempfile.TemporaryFile(dir=above):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write {path}: no file can be made in {above} ({e.strerror}); give {flag} "
                          "a path in a folder you can write to") from None


def check_output_file(path: str | os.PathLike, flag: str, *, kind: str, default_name: str,
                      inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
                      why_not_kind: Callable[[Path], str | None] | None = None) -> Path:
    """``path`` (a file a command is about to write, given as ``flag``) as a Path, or a
    ConfigError before any work when writing it would fail or destroy something: a folder (the
    error suggests ``path/default_name``), a path under a file or in a folder that cannot be
    written, one of ``inputs`` ((what, path) of the files the command reads: the checkpoint...),
    or an existing non-empty file that is not ``kind`` ('an ONNX file'; ``why_not_kind(path)``:
    None when it is such a file, which is then replaced as before, else what it is instead)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: give {kind} to write, e.g. {flag} {path / default_name}")
    _check_writable_parent(path, flag)
    for what, src in inputs:
        if src is not None and _same_file(path, src):
            raise ConfigError(f"{flag} {path} is {what} this command reads: writing it would destroy it; "
                              f"give {flag} another file, e.g. {flag} {path.with_name(default_name)}")
    if why_not_kind is not None and path.is_file() and path.stat().st_size:
        why = why_not_kind(path)
        if why:
            raise ConfigError(f"{flag} {path} exists and is not {kind} ({why}): writing would replace it; "
                              f"give {flag} another file, e.g. {flag} {path.with_name(default_name)}")
    return path


def check_output_folder(path: str | os.PathLike, flag: str, what: str = "a folder of files") -> Path:
    """``path`` (a folder a command is about to write into) as a Path, or a ConfigError before any
    work when it is a file, lies under a file, or cannot be written."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        kind = "a broken link" if not path.exists() else "a file"
        raise ConfigError(f"{flag} {path} is {kind}, not a folder: this command writes {what} there; "
                          f"give {flag} a folder")
    _check_writable_parent(path, flag, folder=True)
    return path


def describe_file(path: str | os.PathLike) -> str:
    """What ``path`` holds, told by its first bytes, for messages: 'a PyTorch file (zip)', 'a PNG
    image', 'JSON'...; '' when not told."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return ""
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch file (zip)" if Path(path).suffix in (".pt", ".pth", ".ckpt") else "a zip archive"
    for magic, what in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"\x80", "a pickle (PyTorch's legacy format?)")):
        if head.startswith(magic):
            return what
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON"
    return ""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """The sha256 (hex) of the file ``path``'s bytes, read in ``chunk``-byte blocks: what records of
    checkpoints, ONNX files and cluster files hold, and how evaluate finds copies of one photo."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tmp_beside(path: Path) -> Path:
    """The temporary file a write of ``path`` goes through, beside it: ``NAME.PID.tmp`` (one per
    process: two processes never share one), or, where that name would be longer than NAME_MAX
    bytes, the name's first 100 bytes, ``~``, a hash of the whole name, ``.PID.tmp`` (the hash:
    writer threads of one process never share one either). Both end in ``.tmp``, which
    the synthesis engine's ``clean_stale_tmp`` removes."""
    tail = f".{os.getpid()}.tmp"
    if len(os.fsencode(path.name + tail)) <= NAME_MAX:
        return path.with_name(path.name + tail)
    head = path.name[:100]
    while len(os.fsencode(head)) > 100:   # multi-byte characters
        head = head[:-1]
    return path.with_name(f"{head}~{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}{tail}")

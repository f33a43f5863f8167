"""Full-state checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is one file holding everything a run needs to continue exactly: G, D, E, both
optimizers, the GradScaler, epoch and iteration, the learning rate, every RNG state, the config
and the package version; and, for provenance, where and how it was written (:func:`environment`:
the command line, versions, device, thread count, git commit). ``config.json`` is written beside
it. A crash mid-write leaves the previous file intact: we write ``NAME.PID.tmp`` in the same
folder, fsync, ``os.replace``, then fsync the folder; the next training start in that folder
removes leftovers of a kill (:func:`clean_stale_tmp`). A write that fails (a full disk) removes
its ``NAME.tmp`` itself and raises :class:`CheckpointError` naming the file and the OS error.

``config.json`` is a convenience, not a single point of failure: :func:`load_run_config` (used by
resume, --load_pretrain, synthesis, export and features) falls back to the copy of the config that
every checkpoint carries when config.json is missing, truncated or unreadable.

The line of training: every training start gets a random attempt id; each checkpoint it writes
holds ``attempt`` and ``lineage``, the line it continues as ``[[attempt, from_step], ...]`` (a
resume: the resumed checkpoint's line plus its own entry). ``lineage.json`` holds the line of the
folder's last start, written before that start's first checkpoint, so a kill between the two
leaves a line that places every checkpoint in the folder rightly (:func:`on_line`).
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import secrets
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pix2pixhd.errors import ConfigError, UserError, loads_json, printable
from pix2pixhd.paths import tmp_beside

if TYPE_CHECKING:
    from pix2pixhd.config import TrainConfig


class CheckpointError(UserError, RuntimeError):
    """A run folder's checkpoint or config cannot be used; the message names the file and the fix."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint, or no run folder, where the command line points."""


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is not a regular file ('a fifo', 'a socket', 'a folder',
    'a device'), else None: a regular file or a link to one, and a path that is missing or cannot be
    looked at (opening it says why). Asked before a run's file is opened: open() of a fifo that no
    process writes blocks for ever, and SIGTERM does not end the wait (Python's handler only sets a
    flag, and the interrupted open() is retried); a folder gives a bare IsADirectoryError."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):   # missing, a broken link, no permission, a NUL in the name
        return None
    if stat.S_ISREG(mode):
        return None
    return ("a folder" if stat.S_ISDIR(mode) else "a fifo" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device")


def not_regular_message(path: str | os.PathLike, fix: str = "remove it") -> str | None:
    """The one-line refusal of ``path`` when it is not a regular file (:func:`not_regular`): it,
    what it is and ``fix``; None when it may be opened."""
    kind = not_regular(path)
    return None if kind is None else f"{path} is not a regular file ({kind}): {fix}"


class _RecordingFile:
    """A binary file that remembers the first OSError its writes raised. torch.save writes
    through ``write`` from C++, which turns the OSError of a full disk ("No space left on
    device") into "[enforce fail at inline_container.cc] unexpected pos"; the recorded error lets
    :func:`_atomic_write` name the real cause."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):   # fileno, tell...: the file's own
        return getattr(self.f, name)


def _fsync_dir(folder: Path) -> None:
    """fsync ``folder`` so that a rename into it survives a power loss (POSIX: the rename is an
    entry of the directory, which the file's own fsync does not persist). Skipped where the
    platform or file system cannot open or sync a directory (Windows, some network mounts)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EISDIR,
                      errno.EACCES, errno.EPERM}


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into ``NAME.PID.tmp`` beside ``path`` (:func:`~pix2pixhd.paths.tmp_beside`:
    one per process, so two writers never share one; a shorter name for a long one), fsync it,
    rename it over ``path``, fsync the folder. A failure deletes the ``.tmp``; one caused by the
    file system (a read-only or unwritable folder, a full disk, a file-size limit, an I/O error)
    raises :class:`CheckpointError` naming ``path``, the OS error, the fix for that error and that
    the previous ``path`` is untouched (anything else is re-raised as it was)."""
    path = Path(path)
    tmp = tmp_beside(path)
    rec, opened = None, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            opened = True
            rec = _RecordingFile(f)
            write(rec)
            rec.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        removed = ""
        try:
            if opened or tmp.exists():
                tmp.unlink(missing_ok=True)
                removed = f" and the partial {tmp.name} was removed"
        except OSError:
            removed = f"; remove the partial {tmp} by hand"
        os_error = (rec.error if rec is not None and rec.error is not None
                    else e if isinstance(e, OSError) else None)
        if os_error is None:
            raise
        why = f"{type(os_error).__name__}: {os_error}"
        previous = (f"the previous {path.name} there is intact" if path.exists()
                    else f"there was no {path.name} before")
        if os_error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            fix = (f"{path.parent} is read-only or not writable by this user: make it writable (or "
                   "point the command at a folder that is)")
        elif os_error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            fix = "Free space on that disk (or raise the file-size limit)"
        else:
            fix = f"Check the file system of {path.parent}"
        raise CheckpointError(
            f"could not write {path}: {why}; {previous}{removed}. {fix}, then rerun the command (a "
            "training run continues with --resume)") from os_error
    try:
        _fsync_dir(path.parent)
    except OSError as e:
        raise CheckpointError(f"{path} was written, but its folder could not be synced to disk "
                              f"({type(e).__name__}: {e}): the file system may be failing; check it "
                              "before trusting this run folder") from e


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, never half-written (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` as the file ``path``, never half-written (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) RNG states, in types weights_only accepts."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU of the machine that saved: a machine with fewer GPUs takes its first
        # ones (set_rng_state_all would index past this machine's devices).
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def seed_rng(seed: int) -> None:
    """Python, NumPy and torch (CPU and every CUDA device) RNGs seeded from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _package_version(name: str) -> str | None:
    """``name``'s installed version (read from its metadata, not imported), or None."""
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """The commit checked out in ``folder`` (default: the folder holding this package, when the
    code runs from a checkout; an installed copy has no ``.git`` there), read from ``.git/HEAD``
    and the ref it names (loose or packed; a worktree's ``.git`` file followed); None where there
    is no checkout or its files cannot be read. Runs no git command."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent.parent
    dot = folder / ".git"
    if not dot.exists():
        return None
    try:
        git = dot
        if dot.is_file():   # a worktree or submodule: "gitdir: PATH"
            git = (folder / dot.read_text().split("gitdir:", 1)[1].strip()).resolve()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None
        ref = head[4:].strip()
        for base in (git, common):
            if (base / ref).is_file():
                sha = (base / ref).read_text().strip()
                return sha if re.fullmatch(r"[0-9a-f]{40,64}", sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


_DIRTY: dict = {}


def git_dirty(folder: str | os.PathLike | None = None) -> bool | None:
    """Whether the checkout in ``folder`` (default: the one holding this package) has uncommitted
    changes to tracked files, from ``git status --porcelain --untracked-files=no`` (asked once per
    folder and process, 10 s at most); None outside a checkout, without git, or when it fails."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent.parent
    key = str(folder)
    if key not in _DIRTY:
        _DIRTY[key] = None
        if (folder / ".git").exists():
            import subprocess
            try:
                r = subprocess.run(["git", "-C", key, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
                if r.returncode == 0:
                    _DIRTY[key] = bool(r.stdout.strip())
            except (OSError, subprocess.SubprocessError):
                pass
    return _DIRTY[key]


def environment(device: torch.device) -> dict:
    """Where and how a checkpoint was written, for provenance (nothing reads it back): the command
    line, working directory, host, versions of Python, torch, NumPy and Triton, the device's
    name, torch's CPU thread count, and the git commit of the code and whether its tracked files had
    uncommitted changes (both None outside a checkout)."""
    import platform
    import socket
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = _cpu_name()
    else:
        name = device.type
    try:
        cwd = os.getcwd()
    except OSError:   # the working directory was deleted
        cwd = None
    return {"argv": [str(a) for a in sys.argv], "cwd": cwd, "hostname": socket.gethostname(),
            "python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__),
            "triton": _package_version("triton"), "device": str(device), "device_name": name,
            "num_threads": torch.get_num_threads(), "git_commit": git_commit(), "git_dirty": git_dirty()}


def checkpoint_path(experiment_dir: Path, which: str | int) -> Path:
    """``latest.pt`` or ``epoch_NNNN.pt`` in ``experiment_dir``; ``which`` is 'latest' or an epoch
    number (anything else, a path included, is refused: it must not name a file elsewhere)."""
    which = str(which)
    if which == "latest":
        return Path(experiment_dir) / "latest.pt"
    if not re.fullmatch(r"[0-9]+", which):
        raise ConfigError(f"--which_epoch {which!r}: expected 'latest' or an epoch number N (the file "
                         f"epoch_NNNN.pt in {experiment_dir}); {_held(Path(experiment_dir))}")
    return Path(experiment_dir) / f"epoch_{int(which):04d}.pt"


def _checkpoints(folder: Path) -> list[str]:
    """Names of the checkpoints (latest.pt, epoch_N.pt) in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(x.name for x in folder.glob("*.pt") if re.fullmatch(r"latest|epoch_[0-9]+", x.stem))


def epoch_checkpoints(folder: str | os.PathLike) -> dict[int, Path]:
    """The run's numbered checkpoints in ``folder``: {N: path} for each regular file named exactly
    as :func:`checkpoint_path` names epoch N (``epoch_0005.pt``). Not a link (it may point into
    another run), nor ``epoch_5.pt`` (which ``--which_epoch 5`` does not read), nor the
    ``epoch_N_stepS.pt`` a resume keeps aside: what --keep_epoch_checkpoints may remove."""
    held = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:   # missing, or not listable: nothing to remove
        return held
    for e in entries:
        m = re.fullmatch(r"epoch_([0-9]+)\.pt", e.name)
        try:
            if m and e.name == f"epoch_{int(m[1]):04d}.pt" and e.is_file(follow_symlinks=False):
                held[int(m[1])] = Path(e.path)
        except OSError:   # gone, or cannot be looked at: left alone
            continue
    return held


def _held(folder: Path) -> str:
    have = _checkpoints(folder)
    return f"that folder holds {have}" if have else f"{folder} holds no checkpoints"


def _which_epochs(folder: Path, but: Path | None = None) -> str:
    """The --which_epoch values ``folder``'s checkpoints answer to (``but`` left out), or ''."""
    have = [n for n in _checkpoints(folder) if (but is None or n != but.name) and not_regular(folder / n) is None]
    return " or ".join(f"--which_epoch {'latest' if n == 'latest.pt' else int(n[6:-3])}" for n in have)


def no_run_message(folder: Path) -> str | None:
    """Why ``folder`` is no run folder to read (it does not exist; NVIDIA's run, to import first;
    no checkpoint in it), with the fix; None when it holds a checkpoint."""
    from pix2pixhd.run_folder import reference_run_message
    folder = Path(folder)
    if not folder.exists():
        parent = folder.parent
        runs = (sorted(d.name for d in parent.iterdir() if d.is_dir() and _checkpoints(d))
                if parent.is_dir() else [])
        there = (f"; run folders in {parent}: {', '.join(runs[:8])}{' ...' if len(runs) > 8 else ''}"
                 if runs else "")
        return (f"no run folder {folder}: it does not exist; check the path (train_hd.py names its "
                f"run folders --checkpoints_dir/--name){there}")
    nvidia = reference_run_message(folder)
    if nvidia is not None:
        return nvidia
    if not folder.is_dir():
        return f"{folder} is a file, not a run folder; pass the run folder written by train_hd.py"
    if not _checkpoints(folder):
        return (f"{folder} holds no checkpoint (latest.pt or epoch_N.pt): not a run folder written by "
                "train_hd.py, or nothing saved yet; check the path (train_hd.py names its run folders --checkpoints_dir/--name)")
    return None


def save_checkpoint(state: dict, experiment_dir: Path, which: str | int, config_json: str) -> Path:
    path = checkpoint_path(experiment_dir, which)
    atomic_torch_save(state, path)
    atomic_write_bytes(Path(experiment_dir) / "config.json", config_json.encode())
    return path


LINEAGE = "lineage.json"


def new_attempt() -> str:
    """A random id for one training start (from os.urandom: the seeded RNGs are not drawn)."""
    return secrets.token_hex(8)


def _is_line(line: Any) -> bool:
    return (isinstance(line, list) and len(line) > 0
            and all(isinstance(x, (list, tuple)) and len(x) == 2 and isinstance(x[0], str)
                    and isinstance(x[1], int) and not isinstance(x[1], bool) for x in line))


def line_of(ck: Any) -> list[list]:
    """The line of training checkpoint ``ck`` carries (``[[attempt, from_step], ...]``, oldest
    first); [] for a checkpoint written before lines were recorded."""
    line = ck.get("lineage") if isinstance(ck, dict) else None
    return [[a, int(s)] for a, s in line] if _is_line(line) else []


def write_lineage(run: str | os.PathLike, line: list[list]) -> None:
    """``line`` as ``run``'s lineage.json, never half-written (see :func:`_atomic_write`)."""
    atomic_write_bytes(Path(run) / LINEAGE, json.dumps({"line": line}).encode())


def read_lineage(run: str | os.PathLike) -> tuple[list[list] | None, str]:
    """(the line of ``run``'s lineage.json, ''), or (None, why it cannot be used)."""
    kind = not_regular(Path(run) / LINEAGE)
    if kind is not None:
        return None, f"cannot be read (not a regular file but {kind}: remove it)"
    try:
        line = json.loads((Path(run) / LINEAGE).read_text())["line"]
    except FileNotFoundError:
        return None, "is missing"
    except Exception as e:   # truncated, not JSON, no "line"
        return None, f"cannot be read ({one_line(e)})"
    if not _is_line(line):
        return None, "cannot be read (not a list of [attempt, step])"
    return [[a, int(s)] for a, s in line], ""


def on_line(line: list[list], attempt: str, step: int) -> bool:
    """Whether a checkpoint of ``attempt`` at ``step`` is on ``line``: its attempt is, and the
    step is no later than where the line's next attempt started (any step for the last)."""
    for i, (a, _) in enumerate(line):
        if a == attempt:
            return i + 1 == len(line) or step <= line[i + 1][1]
    return False


def load_checkpoint(experiment_dir: str | os.PathLike, which: str | int = "latest",
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``experiment_dir`` may be the file)."""
    from pix2pixhd.run_folder import reference_run_message
    p = Path(experiment_dir)
    nvidia = reference_run_message(p)
    if nvidia is not None and (p.is_file() or not _checkpoints(p)):
        raise CheckpointNotFoundError(nvidia)
    path = p if p.is_file() or (p.exists() and not p.is_dir()) else checkpoint_path(p, which)
    others = _which_epochs(path.parent, but=path)
    said = not_regular_message(path, f"remove it{f', or pass {others}' if others else ''}")
    if said is not None:   # checked before torch.load opens it: a fifo would block for ever
        raise CheckpointError(said)
    if not path.is_file():
        why = no_run_message(path.parent)
        if why is not None:
            raise CheckpointNotFoundError(why)
        raise CheckpointNotFoundError(f"no checkpoint {path}; {_held(path.parent)}: pass "
                                      f"{_which_epochs(path.parent)}{_imported_epoch_hint(path.parent, which)}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        from pix2pixhd.compat import pickled_global
        said = pickled_global(e)
        if said is not None:   # torch's advice (weights_only=False) would run the file's code
            raise CheckpointError(f"{path} holds pickled Python objects ({said}), not only tensors and the "
                                  "training state; such a file is not loaded, as loading it would run code: "
                                  "use a checkpoint that train_hd.py wrote, from a source you trust") from None
        fix = (f"it may be truncated or damaged: pass {others}, or restore {path.name} from a copy"
               if others else f"it may be truncated or damaged: restore {path.name} from a copy")
        raise CheckpointError(f"{path} could not be read ({one_line(e)}); {fix}") from e


def imported_source(ck: dict) -> str | None:
    """The NVIDIA run folder the run of checkpoint ``ck`` was imported from (import_reference), or
    None: the import's checkpoint says ``imported_from``, a checkpoint of its training since
    ``imported_run``."""
    return ck.get("imported_from") or ck.get("imported_run") or None


def _imported_epoch_hint(folder: Path, which: str | int) -> str:
    """For a run imported from NVIDIA's folder SRC (one epoch of it: import_reference), asked for
    epoch ``which`` that SRC holds as ``{which}_net_G.pth``: how to import that one; else ''."""
    if not re.fullmatch(r"[0-9]+", str(which)):
        return ""
    try:
        src = peek_checkpoint(folder / "latest.pt").get("imported_from")
    except Exception:
        return ""
    if not src or not (Path(src) / f"{int(which)}_net_G.pth").is_file():
        return ""
    return (f"; this run was imported from {src}, which holds {int(which)}_net_G.pth: import that epoch as a "
            f"run of its own with python -m pix2pixhd.import_reference {src} --which_epoch {int(which)} "
            f"--name {folder.name}_{int(which)}")


# The fix for a file train_hd.py did not write, where a checkpoint of a run is expected.
NOT_OURS_FIX = ("pass a run folder that train_hd.py wrote, or import weights saved alone (a generator's "
                "state_dict) as a run: put them in a folder as latest_net_G.pth and run python -m "
                "pix2pixhd.import_reference FOLDER --name NAME")


def describe_entries(ck: Any) -> str:
    """What the contents ``ck`` of a checkpoint file that train_hd.py did not write hold, for its
    error: the first top-level keys, and 'a bare state_dict?' when every value is a tensor
    (``torch.save(G.state_dict())``, whose keys are the layers' names)."""
    if not isinstance(ck, dict):
        return f"it holds a {type(ck).__name__}, not a dict of entries"
    if not ck:
        return "it holds an empty dict"
    keys = [printable(str(k))[:40] for k in list(ck)[:4]]
    shown = ", ".join(map(repr, keys)) + (f", ... ({len(ck)} in all)" if len(ck) > 4 else "")
    bare = all(isinstance(v, torch.Tensor) for v in ck.values())
    return f"its top-level entries are {shown}" + (": a bare state_dict?" if bare else "")


def peek_checkpoint(path: Path) -> dict:
    """``path``'s checkpoint with its tensors memory-mapped, not read: what it takes to tell a
    checkpoint that loads from a damaged one (truncated, garbage) cheaply. Raises as torch.load, or
    CheckpointError for a path that is not a regular file (a fifo: never opened)."""
    said = not_regular_message(path)
    if said is not None:
        raise CheckpointError(said)
    ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(ck, dict) or "global_step" not in ck:
        raise CheckpointError(f"{path} was not written by train_hd.py: it holds no 'global_step' entry "
                              f"({describe_entries(ck)}); {NOT_OURS_FIX}")
    return ck


def _last_logged_step(run: Path) -> int | None:
    """The last step in ``run``'s loss_history.jsonl (lines that do not parse skipped), or None."""
    if not_regular(run / "loss_history.jsonl") is not None:   # a fifo: never opened
        return None
    try:
        lines = (run / "loss_history.jsonl").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(loads_json(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _print_freq(run: Path, ck: dict) -> int:
    """The larger --print_freq of ``run``'s config.json (the last start's) and of checkpoint
    ``ck``'s config (the run that wrote it); 1 where neither says."""
    freqs = [1]
    try:
        if not_regular(run / "config.json") is None:   # a fifo: never opened
            freqs.append(int(json.loads((run / "config.json").read_text())["print_freq"]))
    except Exception:   # missing, damaged, no such key: the checkpoint's alone
        pass
    try:
        freqs.append(int(ck["config"]["print_freq"]))
    except Exception:
        pass
    return max(freqs)


def auto_resume_checkpoint(run: str | os.PathLike) -> tuple[str, str | None]:
    """``--auto_resume``'s checkpoint in run folder ``run`` (which holds ``latest.pt``), as
    (``which_epoch``, note). ``("latest", None)`` when latest.pt reads and is on the run's line
    of training; otherwise (it cannot be read, or the last start, a ``--resume --which_epoch``,
    went back from it and stopped before its first save) the newest ``epoch_N.pt`` of that line
    that reads, and a note saying why latest.pt is not used, which file is, which were skipped and how many steps that trains again (from
    loss_history.jsonl: latest.pt's own step cannot be read). An unattended restart (torchrun
    --max_restarts) can then go on from the last good state; ``--resume`` alone never falls back
    (a human chose the file). Neither reads: a :class:`CheckpointError` naming them and the fixes.

    The line of training is lineage.json's (:func:`on_line`): an epoch_N.pt of another attempt, or
    of one of the line's attempts past where the next one started, was left by training that a
    ``--resume --which_epoch`` went back from (those files keep their names until overwritten):
    it is skipped, and named. A checkpoint written before attempts were recorded is on the line
    when its step is no later than where lineage.json's first attempt started and, as for a folder
    without lineage.json, before the last logged step + print_freq: every start truncates
    loss_history.jsonl to the step it resumed from, then the run logs every --print_freq steps."""
    run = Path(run)
    latest = run / "latest.pt"
    line, line_why = read_lineage(run)
    try:
        lk = peek_checkpoint(latest)
    except Exception as e:
        why, gone_back = f"cannot be read ({one_line(e)})", None
    else:
        attempt = lk.get("attempt")
        try:
            gone_back = int(lk["global_step"])
        except Exception:   # load_checkpoint says what is wrong with it
            gone_back = None
        if line is None or not isinstance(attempt, str) or gone_back is None or on_line(line, attempt, gone_back):
            return "latest", None
        # the last start (a --resume --which_epoch) went back from it and stopped before its first save
        why = (f"holds step {gone_back}, of training that the last start went back from (a --resume "
               f"--which_epoch): it is not on this run's line of training ({LINEAGE})")
    epochs = sorted((int(x.stem[6:]) for x in run.glob("epoch_*.pt")
                     if re.fullmatch(r"epoch_[0-9]+", x.stem)), reverse=True)
    logged = _last_logged_step(run)
    unreadable, off_line, past_log, by_steps = [], [], [], False
    for n in epochs:
        path = checkpoint_path(run, n)
        try:
            ck = peek_checkpoint(path)
            step = int(ck["global_step"])
        except Exception as e:
            unreadable.append(f"{path.name} ({one_line(e)})")
            continue
        attempt = ck.get("attempt")
        if line is not None and isinstance(attempt, str):
            if not on_line(line, attempt, step):
                off_line.append(f"{path.name} (step {step})")
                continue
        else:   # written before attempts were recorded, or lineage.json cannot be read: steps
            by_steps = by_steps or attempt is not None
            if line is not None and step > line[0][1]:   # the line from there on is recorded
                off_line.append(f"{path.name} (step {step})")
                continue
            if logged is not None and step >= logged + _print_freq(run, ck):
                past_log.append(f"{path.name} (step {step})")
                continue
        skipped = _skipped(off_line, past_log, logged, line_why if by_steps else "")
        also = f"; {', '.join(unreadable)} cannot be read either" if unreadable else ""
        lost = (f"the run had logged step {logged} (loss_history.jsonl), so {logged - step} steps are "
                "trained again" if logged is not None and logged >= step else
                f"the steps after {step} are trained again (how many, nothing here says)")
        keep = (f"{latest.name} is kept as latest_step{gone_back}.pt at this run's first save" if gone_back
                is not None else f"{latest.name} is replaced at this run's next save: copy it away first to keep it")
        return str(n), (f"--auto_resume: {latest} {why}; resuming from {path} "
                        f"(the end of epoch {n}, step {step}), the newest checkpoint "
                        f"{'of this line of training ' if off_line or past_log else ''}that reads{also}: "
                        f"{lost}{skipped}. {keep}")
    skipped = off_line or past_log
    tried = f"; {', '.join(unreadable)} cannot be read either" if unreadable else \
        "" if skipped else "; the folder holds no epoch_N.pt to fall back to"
    fix = (", or resume from one of the skipped files with --resume --which_epoch N to take that "
           "training up again" if skipped else "")
    restore = (f"--resume takes {latest.name} up again as it is" if gone_back is not None else
               f"Restore {latest.name} from a copy")
    raise CheckpointError(
        f"--auto_resume: {latest} {why}{tried}"
        f"{_skipped(off_line, past_log, logged, line_why if by_steps else '')}. {restore}{fix}, or start "
        "the run anew with --overwrite instead of --auto_resume (the old folder is kept until the new "
        "run's first save)")


def _skipped(off_line: list[str], past_log: list[str], logged: int | None, line_why: str) -> str:
    """The note's words on the epoch_N.pt files ``auto_resume_checkpoint`` skipped, off the line
    lineage.json records or past the logged steps, and on a lineage.json that ``line_why``
    (its files carry attempts); '' if there is nothing to say."""
    said = []
    if off_line:
        said.append(f"{', '.join(off_line)}, which are not on this run's line of training ({LINEAGE})")
    if past_log:
        said.append(f"{', '.join(past_log)}, which hold later steps than this run reached "
                    f"(loss_history.jsonl logs up to step {logged})")
    text = (f"; skipped {' and '.join(said)}: training that a --resume --which_epoch went back from"
            if said else "")
    if line_why:
        text += f"; {LINEAGE} {line_why}, so the line of training was told by steps alone"
    return text


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line (torch's unpickling errors run to many): its type and its first
    sentence, whole (torch's "...failed finding central directory." without the paragraph after
    it), or its type alone when that sentence is longer than ``limit`` characters: never a quote
    cut mid-sentence."""
    first = str(e).strip().splitlines()[0].strip() if str(e).strip() else ""
    m = re.match(r"(.+?[.!?])(?=\s|$)", first)
    sentence = m.group(1) if m else first
    return f"{type(e).__name__}: {sentence}" if sentence and len(sentence) <= limit else type(e).__name__


_NOTED: set[str] = set()   # config.json files already reported as unusable in this process


def load_run_config(run_dir: str | os.PathLike, which_epoch: str | int = "latest", *,
                    checkpoint: dict | None = None) -> "TrainConfig":
    """The TrainConfig of a training run folder (or of one checkpoint file).

    Read from ``run_dir/config.json``; when that file is missing, truncated or unreadable, from
    the copy of the config in the ``which_epoch`` checkpoint (``checkpoint``, when the caller has
    loaded it already), saying so once per file on stderr. When ``checkpoint`` is given and its
    config differs from config.json, the checkpoint's wins: config.json holds the latest save, the
    checkpoint what its own weights were trained with. When neither can be used: one
    :class:`CheckpointError` line naming both files and the fix. Checkpoints are read with
    ``weights_only=True``. Each option is checked as a command line's is
    (:meth:`TrainConfig.from_saved`), and the network sizes against the checkpoint's weights
    (:func:`pix2pixhd.models.check_weights_fit`; memory-mapped where ``checkpoint`` is not given,
    skipped where there is no checkpoint to compare with), so that nothing is built from a
    config that does not fit them.
    """
    from pix2pixhd.config import TrainConfig
    p = Path(run_dir)
    if p.is_file():   # a checkpoint file: its own config
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(p)
        return _fitting(_checkpoint_config(ckpt, p), ckpt, f"{p}'s saved config", p)
    cj = p / "config.json"
    ckpt_file = checkpoint_path(p, which_epoch)
    kind = not_regular(cj)
    if kind is not None:   # never opened: a fifo would block for ever
        cfg, why = None, f"is unreadable (not a regular file but {kind}: remove it)"
    else:
        try:
            cfg, why = TrainConfig.from_saved(json.loads(cj.read_text())), None
        except FileNotFoundError:
            cfg, why = None, "is missing"
        except json.JSONDecodeError as e:
            cfg, why = None, f"is truncated or not JSON ({e})"
        except Exception as e:   # no permission, not UTF-8, not an object, unknown options
            cfg, why = None, f"is unreadable ({one_line(e)})"
    if cfg is not None and not (isinstance(checkpoint, dict) and checkpoint.get("config")):
        ckpt = checkpoint if checkpoint is not None else _weights(ckpt_file)
        if ckpt is None:
            return cfg
        try:
            return _fitting(cfg, ckpt, str(cj), ckpt_file)
        except CheckpointError as e:   # config.json edited: the checkpoint's own copy, if it fits
            try:
                own = _fitting(_checkpoint_config(ckpt, ckpt_file), ckpt, f"{ckpt_file}'s saved config", ckpt_file)
            except (CheckpointError, ValueError):
                raise e from None
            if str(cj) not in _NOTED and os.environ.get("RANK", "0") == "0":
                _NOTED.add(str(cj))
                print(f"note: {cj} does not fit the weights in {ckpt_file} "
                      f"({'; '.join(getattr(e, 'differ', [])) or 'its sizes'}); using the config saved in "
                      f"{ckpt_file}", file=sys.stderr)
            return own
    if cfg is None and checkpoint is None and not ckpt_file.is_file():
        if not _checkpoints(p):
            from pix2pixhd.run_folder import reference_run_message
            nvidia = reference_run_message(p)
            if nvidia is not None:
                raise CheckpointNotFoundError(nvidia)
            if not p.exists():
                raise CheckpointNotFoundError(no_run_message(p))
            raise CheckpointNotFoundError(
                f"{p} holds neither config.json nor a checkpoint: not a run folder written by "
                "train_hd.py, or nothing saved yet; check the path (train_hd.py names its run folders --checkpoints_dir/--name)")
        raise CheckpointError(f"{cj} {why} and {ckpt_file} does not exist; pass --which_epoch with "
                              f"an epoch that does ({_held(p)})")
    ckpt = checkpoint
    try:
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(p, which_epoch)
        from_ckpt = _checkpoint_config(ckpt, ckpt_file)
    except (OSError, CheckpointError, ValueError) as e:
        if cfg is not None:
            return _fitting(cfg, ckpt, str(cj), ckpt_file) if isinstance(ckpt, dict) else cfg
        raise CheckpointError(
            f"{cj} {why}, and the config cannot be taken from the checkpoint either: "
            f"{str(e).splitlines()[0]}. Restore {cj.name} from a copy, or pick a checkpoint that "
            f"reads with --which_epoch ({_held(p)})") from None
    if cfg is None and str(cj) not in _NOTED:
        _NOTED.add(str(cj))
        if os.environ.get("RANK", "0") == "0":   # under torchrun, one note for all ranks
            print(f"note: {cj} {why}; using the config saved in {ckpt_file}", file=sys.stderr)
    return _fitting(from_ckpt, ckpt, f"{ckpt_file}'s saved config", ckpt_file)


def _weights(path: Path) -> dict | None:
    """Checkpoint ``path`` with its tensors memory-mapped (their shapes, not their data), or None
    where it is missing, is not a regular file (a fifo: never opened) or does not read that way
    (loading it says why)."""
    if not_regular(path) is not None:
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    return ck if isinstance(ck, dict) else None


def _fitting(cfg: "TrainConfig", ckpt: Any, config_source: str, path: Path) -> "TrainConfig":
    """``cfg``, once its network sizes are found to fit the weights of checkpoint ``ckpt``
    (:func:`pix2pixhd.models.check_weights_fit`): a CheckpointError naming both where not."""
    from pix2pixhd.models import check_weights_fit
    check_weights_fit(cfg, ckpt, config_source, str(path))
    return cfg


def _checkpoint_config(ckpt: Any, path: Path) -> "TrainConfig":
    from pix2pixhd.config import TrainConfig
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict):
        if isinstance(ckpt, dict) and "global_step" in ckpt:   # train_hd.py's, its config taken out
            raise CheckpointError(f"{path} holds no training config: the checkpoint was edited or damaged; "
                                  "restore it from a copy")
        raise CheckpointError(f"{path} holds no training config and was not written by train_hd.py "
                              f"({describe_entries(ckpt)}); {NOT_OURS_FIX}")
    from pix2pixhd.config import NewerConfigError
    try:
        return TrainConfig.from_saved(ckpt["config"])
    except NewerConfigError as e:   # not damaged: this version is older than the one that saved it
        raise CheckpointError(f"{path}: its saved {e}") from e
    except (TypeError, ValueError) as e:   # ConfigError: an option of the wrong type, choice or range
        why = str(e) if isinstance(e, ConfigError) else one_line(e)
        raise CheckpointError(f"{path}: its saved config cannot be used ({why}): the checkpoint was edited "
                              "or damaged; restore it from a copy") from e


def clean_stale_tmp(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the partial files (``*.tmp``, the visualizer's ``*.tmp.png``) that a process killed
    mid-write leaves in a run folder, say what was removed on stderr, and return their paths.

    Call it at the start of a run, before anything is written: an atomic write never leaves
    one behind when it finishes, so any that exist belong to a write that will never finish.
    """
    root = Path(run_dir)
    if not root.is_dir():
        return []
    stale = sorted({q for pat in ("*.tmp", "*.tmp.png") for q in root.rglob(pat)
                    if q.is_file() or q.is_symlink()})
    removed = []
    for q in stale:
        try:
            size = q.lstat().st_size
            q.unlink()
        except FileNotFoundError:
            continue
        removed.append(q)
        print(f"note: removed {q} ({size / 2**20:.1f} MiB), left by a write that was interrupted",
              file=sys.stderr)
    return removed

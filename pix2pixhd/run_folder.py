"""A run folder belongs to one run: a new run never overwrites an existing one by accident.

A folder ``--checkpoints_dir/--name`` holds a run when it holds ``config.json`` or a checkpoint
(``latest.pt``, ``epoch_N.pt``), or the files of an NVIDIA pix2pixHD run (``latest_net_G.pth``,
``opt.txt``...: :func:`reference_files`; such a run is imported with ``python -m
pix2pixhd.import_reference``). Starting a run there without ``--resume`` is refused
(:func:`check_new_run`, a :class:`~pix2pixhd.errors.RunExistsError` naming ``--resume``, a new
``--name`` and ``--overwrite``), before anything is read or written. From Python, the first
``Trainer.save()`` of a Trainer that ``fit()`` did not start checks the folder the same way
(``check_new_run(cfg, by_save=True)``): checkpoints there are refused unless ``resume=True``, or
moved aside as below with ``overwrite=True``.

``--overwrite`` replaces the old run, in two steps that never leave the user with nothing:

1. once the new run has validated its data and built its models, the old folder is renamed to
   ``NAME.replaced-YYYYmmdd-HHMMSS`` beside it (:func:`move_aside`: one rename, nothing copied,
   whatever its size); the new run starts in an empty ``NAME``;
2. after the new run's first checkpoint is written, the renamed folder is deleted
   (:func:`drop_replaced`).

A new run that fails or is killed between the two leaves the old run whole (and resumable once
renamed back), and says where it is. Deleting at once would lose the old run to a new one that
dies in its first minutes; keeping it for ever would double the disk a week-long run holds. A
``NAME.replaced-TIME`` left by an ``--overwrite`` that died before its first save is named at the
next start of ``NAME`` (:func:`replaced_leftovers`); a later ``--overwrite`` deletes it with its own
at its first save, a resume keeps it.

A run folder that is a link (``checkpoints/NAME -> /scratch/NAME``) is not replaced by
``--overwrite``: renaming it would move the link, not the run; :func:`check_new_run` refuses it,
naming the target to give instead. A new run's ``--name`` leaves room for the ``.replaced-TIME``
suffix (:data:`REPLACED_ROOM` bytes within the file system's :data:`~pix2pixhd.paths.NAME_MAX`).

A training process holds ``NAME/train.lock`` (:data:`RUN_LOCK`, :func:`lock_run`) while it runs,
so a second one into the same folder is refused naming the holder; the file does not make a folder
a run (:func:`run_files`).

``--auto_resume`` with no ``latest.pt`` starts fresh in a folder holding config.json but no
checkpoint: that is an earlier attempt of the same command (torchrun restarts it) that died before
its first save, and it has nothing to lose. ``--resume`` of such a folder starts it again from step
0 with the options of its config.json (:meth:`TrainConfig.resolved` says so).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pix2pixhd.errors import ConfigError, RunExistsError
from pix2pixhd.paths import NAME_MAX, name_bytes

if TYPE_CHECKING:
    from pix2pixhd.config import TrainConfig


RUN_LOCK = "train.lock"   # the lock of a running training process; not a run file
# what move_aside adds to a run folder's name: '.replaced-YYYYmmdd-HHMMSS', '-K' when that is taken
REPLACED_ROOM = len(".replaced-20260101-000000-99")


def run_files(folder: Path) -> list[str]:
    """The names in ``folder`` that make it a run: config.json and checkpoints (sorted; never
    :data:`RUN_LOCK`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name == "config.json" or re.fullmatch(r"(latest|epoch_[0-9]+)\.pt", p.name))


# What NVIDIA's pix2pixHD leaves in its checkpoints/NAME (pix2pixhd.import_reference reads it).
_REFERENCE_FILE = re.compile(r"(latest|[0-9]+)_net_[GDE]\.pth|opt\.txt|iter\.txt|features_clustered_[0-9]+\.npy")


def reference_files(folder: Path) -> list[str]:
    """The names in ``folder`` that NVIDIA's pix2pixHD writes into a run folder (weights, opt.txt,
    iter.txt, cluster files), sorted; empty for a folder that is not one (or does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if _REFERENCE_FILE.fullmatch(p.name))


def reference_run_message(folder: Path) -> str | None:
    """The one line for a run folder of NVIDIA's pix2pixHD (``{latest,N}_net_G.pth``, opt.txt)
    or of the pix2pix/CycleGAN repo (``_net_G_A.pth``/``_G_B``, or its options printout saying
    model pix2pix or cycle_gan: the import then needs ``--model``) given where a run of ours is
    expected (``--checkpoint``, ``--resume``), or None when ``folder`` is not one. A
    ``*_net_G.pth`` file itself counts as its folder."""
    folder = Path(folder)
    if folder.is_file() and re.fullmatch(r"(latest|[0-9]+)_net_([GDE]|[GD]_[AB])\.pth", folder.name):
        folder = folder.parent
    from pix2pixhd.import_reference import REPO, repo_run_model
    repo = repo_run_model(folder)   # CycleGAN's G_A/G_B, or an options printout of the repo's
    if repo is not None:
        return (f"{folder} is a {repo[0]} run folder of {REPO} ({repo[1]}): import it first: python -m "
                f"pix2pixhd.import_reference {folder} --model {repo[0]} --name NAME, then point this command at "
                "the imported run (checkpoints/NAME)")
    held = reference_files(folder)
    if not any(n.endswith("_net_G.pth") for n in held):
        return None
    shown = [n for n in held if n in ("latest_net_G.pth", "opt.txt")] or held[:2]
    return (f"{folder} is an NVIDIA pix2pixHD run folder ({', '.join(shown)}): import it first: "
            f"python -m pix2pixhd.import_reference {folder} --name NAME, then point this command at the "
            "imported run (checkpoints/NAME)")


def check_new_run(cfg: "TrainConfig", by_save: bool = False) -> None:
    """Refuse to start run ``cfg`` (resolved) in the folder of another run, unless it resumes it
    or ``cfg.overwrite`` says to replace it; refuse to resume a run whose dataroot is gone
    (:func:`check_resumed_dataroot`). Reads only; call it on every rank. ``by_save``: the check
    of ``Trainer.save()`` on a Trainer that ``fit()`` did not start (Python): it refuses only a
    folder holding checkpoints, and its message names TrainConfig's fields instead of the
    command line's options."""
    if cfg.resume or getattr(cfg, "_restart", False):
        check_resumed_dataroot(cfg)
    if cfg.resume or getattr(cfg, "_restart", False):
        return   # _restart: --resume of a run that saved no checkpoint (TrainConfig.resolved)
    folder = cfg.experiment_dir
    # a new run's name must leave room for the NAME.replaced-TIME a later --overwrite renames it to
    if (cfg.overwrite or not _holds_run(folder)) and name_bytes(cfg.name) > NAME_MAX - REPLACED_ROOM:
        opt = "name" if by_save else "--name"
        raise ConfigError(f"{opt} {cfg.name[:24]!r}... is {name_bytes(cfg.name)} bytes long: a new run's folder "
                          f"name may hold at most {NAME_MAX - REPLACED_ROOM} bytes ({NAME_MAX}, the file system's "
                          f"limit, less {REPLACED_ROOM} for the NAME.replaced-TIME that --overwrite renames it "
                          f"to); use a shorter {opt}")
    if cfg.overwrite:
        if folder.is_symlink() and _holds_run(folder):   # renaming it would move the link, not the run
            target = Path(os.path.realpath(folder))
            there = (f"checkpoints_dir={str(target.parent)!r}, name={target.name!r}" if by_save else
                     f"--checkpoints_dir {target.parent} --name {target.name}")
            raise ConfigError(
                f"{'overwrite=True' if by_save else '--overwrite'} of {folder}: it is a link to {target}, and "
                f"moving the run aside would rename the link, not the run (the new run would start on this "
                f"disk); to replace the run, point at the folder itself: {there} (the old run is kept "
                f"beside it until the first checkpoint), or empty {target} yourself and start without "
                f"{'overwrite' if by_save else '--overwrite'}")
        return
    found = run_files(folder)
    theirs = reference_files(folder)
    # the words for the options: train_hd.py's, or TrainConfig's for Trainer.save()
    add, name, overwrite = (("build the Trainer with ", "name", "set overwrite=True") if by_save else
                            ("add ", "--name", "add --overwrite"))
    doing = ("Trainer.save() would write a new run's checkpoint there (this Trainer was neither "
             "started by fit() nor built with resume=True)" if by_save else
             "this command would start a new one there")
    if theirs and not found:   # NVIDIA's run: its weights would be mixed with this run's files
        shown = ", ".join(theirs[:4]) + (f", ... ({len(theirs)} files)" if len(theirs) > 4 else "")
        raise RunExistsError(
            f"{folder} holds an NVIDIA pix2pixHD run ({shown}) and "
            f"{doing if by_save else 'this command would start a new run there'}. To continue it, "
            f"import it first: python -m pix2pixhd.import_reference {folder} --name NEW_NAME, then "
            f"train_hd.py --resume --name NEW_NAME; to start another run, choose a {name} other than "
            f"{cfg.name!r}; to replace it, {overwrite} (it is kept as {folder.name}.replaced-TIME "
            "until the new run's first checkpoint, then deleted)")
    checkpoints = [f for f in found if f.endswith(".pt")]
    if not found or ((cfg.auto_resume or by_save) and not checkpoints):
        return   # config.json alone: a start that died before its first save, nothing to lose
    flag = "resume=True" if by_save else "--resume"
    if "latest.pt" in checkpoints:
        resume = f"{add}{flag}"
    elif checkpoints:
        n = int(checkpoints[-1][6:-3])
        resume = f"{add}{flag}, which_epoch='{n}'" if by_save else f"{add}{flag} --which_epoch {n}"
    else:
        resume = f"{add}{flag} (it saved no checkpoint: it starts again from step 0 with its options)"
    raise RunExistsError(
        f"{folder} already holds a run ({', '.join(found)}) and {doing}. To continue it, "
        f"{resume}; to keep it and start another, choose a {name} other than {cfg.name!r}; to "
        f"replace it, {overwrite} (it is kept as {folder.name}.replaced-TIME until the new run's "
        "first checkpoint, then deleted)")


def check_resumed_dataroot(cfg: "TrainConfig") -> None:
    """A resumed run reads the dataroot its config.json recorded (an imported run: NVIDIA's
    opt.txt's, relative to the folder its train.py ran in). When that folder is missing or empty,
    one :class:`~pix2pixhd.errors.MissingInputError` line says so and to pass ``--dataroot``: the
    advice for a new run's missing data (generate synthetic data there) would point the user at
    writing made-up images into a folder named after the run's real dataset."""
    from pix2pixhd.errors import MissingInputError
    root = Path(cfg.dataroot)
    if root.is_dir() and any(root.iterdir()):
        return
    state = "is empty" if root.is_dir() else "is a file" if root.exists() else "was not found"
    whose = f"the run's dataroot {cfg.dataroot} {state}"
    try:
        from pix2pixhd.checkpoint import peek_checkpoint, checkpoint_path
        imported = peek_checkpoint(checkpoint_path(cfg.experiment_dir, cfg.which_epoch)).get("imported_from")
    except Exception:
        imported = None
    if imported:   # NVIDIA's run folder, or the pix2pix/CycleGAN repo's (train_opt.txt, or opt.txt)
        repo = cfg.model in ("pix2pix", "cyclegan")
        opts = f"{imported}'s options file" if repo else f"{imported}/opt.txt"
        trainer = "the repo's train.py" if repo else "NVIDIA's train.py"
        whose += (f" (from {opts}, relative to the folder {trainer} ran in)"
                  if not root.is_absolute() else f" (from {opts})")
    raise MissingInputError(f"--resume of {cfg.experiment_dir}: {whose}; pass --dataroot DIR (the folder "
                            "holding this run's training data)")


def _holds_run(folder: Path) -> bool:
    """Whether ``folder`` exists and holds anything but the lock this run took."""
    return folder.exists() and not (folder.is_dir() and {p.name for p in folder.iterdir()} <= {RUN_LOCK})


def move_aside(folder: Path) -> Path | None:
    """Rename run ``folder`` to ``NAME.replaced-TIME`` beside it; return the new path (None when
    there is nothing to move). Says so on stderr. A ``folder`` that is a link is refused
    (:func:`check_new_run` says so first): renaming it would move the link, not the run."""
    folder = Path(folder)
    if not _holds_run(folder):
        return None   # nothing, or only the lock this run took
    if folder.is_symlink():
        raise ConfigError(f"--overwrite of {folder}: it is a link to {os.path.realpath(folder)}; moving it "
                          "aside would rename the link, not the run: point --checkpoints_dir and --name at "
                          "the folder itself")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.replaced-{stamp}")
    k = 1
    while aside.exists():
        k += 1
        aside = folder.with_name(f"{folder.name}.replaced-{stamp}-{k}")
    held = run_files(folder)
    folder.rename(aside)
    print(f"note: --overwrite: the run in {folder} ({', '.join(held) or 'no checkpoints'}) was moved "
          f"to {aside}; it is deleted once this run saves its first checkpoint (until then, "
          f"rename it back to keep it)", file=sys.stderr, flush=True)
    return aside


def drop_replaced(aside: Path | None, leftovers: list[Path] = ()) -> None:
    """Delete the run that ``--overwrite`` replaced and the ``leftovers`` of earlier ones
    (:func:`replaced_leftovers`), after the new run's first save."""
    for old in ([aside] if aside is not None else []) + list(leftovers):
        shutil.rmtree(old, ignore_errors=True)
        state = "could not be deleted; remove it by hand" if Path(old).exists() else "deleted"
        what = "the replaced run" if old == aside else "the run left by an earlier --overwrite,"
        print(f"note: --overwrite: {what} {old} {state} (this run has saved its first "
              "checkpoint)", file=sys.stderr, flush=True)


def replaced_leftovers(folder: Path, links: bool = False) -> list[Path]:
    """The ``NAME.replaced-TIME`` folders beside run ``folder`` (sorted): runs that an
    ``--overwrite`` moved aside and never deleted (it died before its first save). ``links``: the
    links to folders of that name instead, which versions before the refusal in
    :func:`check_new_run` made of a linked run folder (the run is in the link's target)."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        return []
    pat = re.compile(re.escape(folder.name) + r"\.replaced-[0-9]{8}-[0-9]{6}(-[0-9]+)?")
    return sorted(p for p in folder.parent.iterdir()
                  if pat.fullmatch(p.name) and p.is_dir() and p.is_symlink() == links)


def note_leftovers(folder: Path, overwrite: bool) -> list[Path]:
    """Name the :func:`replaced_leftovers` of ``folder`` on stderr and return them: an
    ``--overwrite`` deletes them at its first save; any other start keeps them and says how to
    remove them. Leftover links are named with their targets, never deleted, not returned."""
    left = replaced_leftovers(folder)
    for link in replaced_leftovers(folder, links=True):   # never deleted here: the run is elsewhere
        target = os.path.realpath(link)
        print(f"note: {link} is a link to {target}: an --overwrite of {folder} renamed the link instead of "
              f"the run it points to; that run's files are in {target}: to delete them, `rm -r {target}` "
              f"and then `rm {link}` (the link alone holds nothing)", file=sys.stderr, flush=True)
    if left:
        names = ", ".join(str(p) for p in left)
        fate = ("they are deleted with the run this --overwrite replaces once it saves its first "
                "checkpoint" if overwrite else
                f"kept; remove them with `rm -r {' '.join(str(p) for p in left)}` (or rename one back "
                f"to {folder} in place of this run to keep it)")
        print(f"note: {names}: run(s) that an --overwrite of {folder} moved aside and did not delete "
              f"(it stopped before its first save); {fate}", file=sys.stderr, flush=True)
    return left


def lock_run(folder: Path):
    """Take the lock of run ``folder`` (``folder/train.lock``, created with the folders leading
    to it) for this process: synthesis's :class:`~pix2pixhd.engine.OutLock` (``fcntl.lockf``; a
    dead holder's lock is taken over with a note; where locks are not supported, the recorded pid
    decides). Returns it, with ``release()``, which also removes the folders it created if they
    are still empty. Raises InputError naming the holder when another process trains there, and
    ConfigError naming the folder when it cannot be created or written."""
    lock = _run_lock_class()(folder)
    try:   # (exists() raises on a name the file system refuses: ENAMETOOLONG)
        lock.created = [p for p in (Path(folder), *Path(folder).parents) if not p.exists()]
        note = lock.acquire()
    except OSError as e:
        lock.release()
        if e.errno in (errno.ENOTDIR, errno.EEXIST) and (why := _file_in_the_way(Path(folder))):
            raise ConfigError(why) from e
        raise ConfigError(f"could not create the lock {lock.path} of this run: {type(e).__name__}: {e}; "
                          f"{_unwritable_fix(Path(folder), e)}") from e
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return lock


def _file_in_the_way(folder: Path) -> str | None:
    """Why run ``folder`` (--checkpoints_dir/--name) cannot be made when it or a folder above it
    is a file; None when none is."""
    try:
        file = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    except OSError:
        return None
    if file is None:
        return None
    if file == folder:
        return (f"the run folder {folder} (--checkpoints_dir/--name) is a file, not a folder: move the file "
                "away, or give another --name")
    if file == folder.parent:
        return (f"--checkpoints_dir {file} is a file, not a folder: give --checkpoints_dir a folder (runs are "
                "made in --checkpoints_dir/--name)")
    return (f"{file} is a file, not a folder, so --checkpoints_dir {folder.parent} cannot be made under it: give "
            "--checkpoints_dir a path of folders")


def _unwritable_fix(folder: Path, e: OSError) -> str:
    """What to do when a write into run ``folder`` failed with ``e``."""
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"{folder} (or a folder above it) is read-only or not writable by this user: make it "
                "writable, or use a --checkpoints_dir that is (to resume, copy the run folder there)")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on that disk, then rerun the command"
    return f"check that {folder} can be created and written, then rerun the command"


_RUN_LOCK_CLASS = None


def _run_lock_class():
    """OutLock with training's file name and words (engine is imported on first use: it loads
    the synthesis engine, which run_folder's other users do not need)."""
    global _RUN_LOCK_CLASS
    if _RUN_LOCK_CLASS is not None:
        return _RUN_LOCK_CLASS
    from pix2pixhd.engine import OutLock

    class RunLock(OutLock):
        FILE, HOLDER = RUN_LOCK, "a training process"

        def __init__(self, folder: Path):
            super().__init__(folder)
            self.created: list[Path] = []

        def _held_message(self, holder: dict) -> str:
            return (f"{self.out} is being trained by another process ({self._who(holder)}; lock "
                    f"{self.path}): wait for it to end (or stop it), or pick another --name; if that "
                    f"process is gone (another machine), remove {self.path}")

        def release(self) -> None:
            super().release()
            for p in self.created:   # a start that failed leaves no empty folders behind
                try:
                    p.rmdir()
                except OSError:
                    break
            self.created = []

        def moved(self, to: Path) -> None:
            """The folder was renamed to ``to`` (the lock file with it, still locked)."""
            self.out, self.path, self.created = Path(to), Path(to) / self.FILE, []

    _RUN_LOCK_CLASS = RunLock
    return RunLock

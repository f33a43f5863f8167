"""A training run locks its folder (train.lock) for its lifetime: a second process into it is
refused naming the holder, before it writes anything; --overwrite locks the new folder. Also:
NAME.replaced-* left by a dead --overwrite, signals during start-up, unwritable folders."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pix2pixhd import checkpoint
from pix2pixhd.checkpoint import CheckpointError, atomic_write_bytes, clean_stale_tmp
from pix2pixhd.cli import train_main
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.run_folder import RUN_LOCK, run_files
from pix2pixhd.trainer import Trainer
from tests.file_state import listing as _listing
from tests.test_sigterm import TINY, streets  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
# holds the lock of run folder argv[1] (as a training process does) until its stdin closes
HOLDER = ("import sys; from pix2pixhd.run_folder import lock_run; lock = lock_run(sys.argv[1]); "
          "print('held', flush=True); sys.stdin.read()")
# whether argv[1] is locked by another process: exits 0 when it is
PROBE = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(0)\n"
         "sys.exit(1)")


def args(streets, ck, *extra):
    return [*TINY, "--dataroot", str(streets), "--checkpoints_dir", str(ck), "--max_steps", "1", *extra]


@pytest.fixture(scope="module")
def trained(streets, tmp_path_factory):  # noqa: F811
    ck = tmp_path_factory.mktemp("lock") / "ck"
    assert train_main(args(streets, ck)) == 0
    assert not (ck / "run" / RUN_LOCK).exists()   # released (and removed) at the end
    return ck


def test_a_second_training_into_a_held_folder_is_refused_before_writing(trained, streets, capsys):  # noqa: F811
    run = trained / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _listing(run, recursive=True)
        for extra in ([], ["--resume"], ["--auto_resume"], ["--overwrite"]):
            capsys.readouterr()
            with pytest.raises(InputError) as e:
                train_main(args(streets, trained, *extra))
            msg = str(e.value)
            assert "\n" not in msg and f"pid {holder.pid} on host" in msg and "started" in msg, msg
            assert "is being trained by another process" in msg and "--name" in msg, msg
            assert _listing(run, recursive=True) == before, extra   # nothing written, nothing moved aside
            assert not list(trained.glob("run.replaced-*"))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder gone (its lock file removed): the same command trains
    assert train_main(args(streets, trained, "--resume")) == 0


def test_a_lock_file_is_not_a_run_and_a_dead_holders_lock_is_taken_over(streets, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "ck" / "run"
    run.mkdir(parents=True)
    (run / RUN_LOCK).write_text(json.dumps({"pid": 2 ** 22 + 7, "host": "gone", "started": "then"}))
    assert run_files(run) == []
    assert train_main(args(streets, tmp_path / "ck")) == 0   # a new run: not "already holds a run"
    assert f"{run / RUN_LOCK} was left by a training process (pid {2 ** 22 + 7} on gone)" in capsys.readouterr().err


def test_overwrite_locks_the_new_folder_and_deletes_earlier_leftovers(trained, streets, tmp_path, monkeypatch,  # noqa: F811
                                                                      capsys):
    import shutil
    ck = tmp_path / "ck"
    shutil.copytree(trained / "run", ck / "run")
    dead = ck / "run.replaced-20260101-000000"   # an --overwrite killed before its first save
    shutil.copytree(trained / "run", dead)
    # a resume keeps it and says how to remove it
    assert train_main(args(streets, ck, "--resume")) == 0
    err = capsys.readouterr().err
    assert dead.is_dir() and f"note: {dead}: run(s) that an --overwrite" in err and f"rm -r {dead}" in err
    seen = []
    step = Trainer.train_step

    def probed(self, batch):
        if not seen:   # first step: the new folder is locked by this process, the old one moved away
            p = subprocess.run([sys.executable, "-c", PROBE, str(self.exp_dir / RUN_LOCK)], timeout=30)
            seen.append((p.returncode, self._replaced, sorted(os.listdir(self._replaced))))
        return step(self, batch)
    monkeypatch.setattr(Trainer, "train_step", probed)
    assert train_main(args(streets, ck, "--overwrite")) == 0
    (rc, aside, held), = seen
    assert rc == 0, "the new run folder was not locked"
    assert RUN_LOCK not in held and "latest.pt" in held   # the old lock went with it, released
    err = capsys.readouterr().err
    assert "they are deleted with the run this --overwrite replaces" in err
    assert f"the run left by an earlier --overwrite, {dead} deleted" in err and f"{aside} deleted" in err
    assert not dead.exists() and not aside.exists() and not (ck / "run" / RUN_LOCK).exists()


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_signal_during_start_up_exits_as_a_stop_does(streets, tmp_path, monkeypatch, capfd, signum, status):  # noqa: F811
    def signalled(self):   # during the dataset's check, before the first step
        os.kill(os.getpid(), signum)
        time.sleep(5)
        raise AssertionError("the signal did not stop the start")
    monkeypatch.setattr(Trainer, "make_loader", signalled)
    before = signal.getsignal(signum)
    with pytest.raises(SystemExit) as e:
        train_main(args(streets, tmp_path / "ck"))
    assert e.value.code == status
    assert signal.getsignal(signum) is before
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"stopped by {signal.Signals(signum).name} during start-up, before the first step: "
                          "nothing to save; rerun the same command"), err
    assert not (tmp_path / "ck").exists()   # the lock's folders, created for nothing, removed


# runs train_hd.py as a script; the signal argv[1] arrives while pix2pixhd.cli (and torch) import
DURING_IMPORT = ("import os, runpy, sys\n"
                 "SIGNUM = int(sys.argv[1])\n"
                 "class Signal:\n"
                 "    def find_spec(self, name, path=None, target=None):\n"
                 "        if name == 'pix2pixhd.cli':\n"
                 "            os.kill(os.getpid(), SIGNUM)\n"
                 "sys.meta_path.insert(0, Signal())\n"
                 "sys.argv = [sys.argv[2], '--name', 'x', '--checkpoints_dir', 'ck']\n"
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_signal_while_torch_imports_exits_as_a_stop_does(tmp_path, signum, status):
    p = subprocess.run([sys.executable, "-c", DURING_IMPORT, str(int(signum)), str(REPO / "train_hd.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == status, (p.returncode, p.stderr[-2000:])
    assert p.stderr.strip() == (f"stopped by {signal.Signals(signum).name} during start-up, before the first "
                                "step: nothing to save; rerun the same command"
                                + (f"; exit status {status}" if status != 75 else "")), p.stderr[-2000:]
    assert not (tmp_path / "ck").exists()


def test_write_errors_name_the_cause_and_the_fix(tmp_path, monkeypatch):
    import builtins
    path = tmp_path / "lineage.json"
    path.write_bytes(b"old")
    real_open = builtins.open

    def read_only(f, mode="r", *a, **k):
        if str(f).endswith(".tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(f))
        return real_open(f, mode, *a, **k)
    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(CheckpointError) as e:
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    msg = str(e.value)
    assert "\n" not in msg and f"{tmp_path} is read-only or not writable" in msg and "intact" in msg, msg
    assert "partial" not in msg and "Free space" not in msg, msg
    # the temp file is this process's own; a stale one of another process is cleaned at a start
    names = []
    atomic_write_bytes(path, b"x")
    monkeypatch.setattr(checkpoint.os, "replace", lambda a, b: (names.append(Path(a).name), os.rename(a, b)))
    atomic_write_bytes(path, b"y")
    monkeypatch.undo()
    assert names == [f"lineage.json.{os.getpid()}.tmp"] and path.read_bytes() == b"y"
    stale = tmp_path / "latest.pt.4242.tmp"
    stale.write_bytes(b"half")
    assert clean_stale_tmp(tmp_path) == [stale]


def test_an_unwritable_checkpoints_dir_is_one_error_line(streets, tmp_path, monkeypatch):  # noqa: F811
    real_mkdir = Path.mkdir
    ck = tmp_path / "ro" / "ck"

    def mkdir(self, *a, **k):
        if str(self).startswith(str(ck)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(ConfigError) as e:
        train_main(args(streets, ck))
    msg = str(e.value)
    assert "\n" not in msg and f"{ck / 'run'} (or a folder above it) is read-only or not writable" in msg, msg

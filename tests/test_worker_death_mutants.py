"""A DataLoader worker that died (the OOM killer's SIGKILL), at the places the tests of
tests/test_trainer_output.py and tests/test_ddp_worker_death.py do not reach, each found by a
mutation-testing walkthrough: a change of the code there passed every test. A death during the
end-of-epoch save, one torch's handler raises again inside the loop's except, one before the
run's first step, a worker still dying when the socket error arrives, the line without a resume
part, and under DDP a sample that kills every worker that loads it (one restart, not one per
death for ever).

Run as a script (under torchrun) this file is the worker of the DDP test: train_hd.py's
train_main, with rank 1's dataset killing any loader worker that loads the third distinct index
rank 1's workers load, once rank 1's step 2 has begun (a marker file the training process
writes): the death is noticed at the fetch of that batch itself, so the new workers meet it again.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.datasets.synthetic_streets import generate
from pix2pixhd.errors import loader_worker_died
from pix2pixhd.trainer import Trainer, _worker_death_error
from tests.test_trainer_output import _cut_run, workers_killed_at_fetch


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    """Four scenes: epochs of 4 steps (batchSize 1)."""
    root = tmp_path_factory.mktemp("streets4")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


def _loss_log(latest: Path) -> str:
    return (latest.parent / "loss_log.txt").read_text()


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker killed during the end-of-epoch save (single process): held "
                        "to the next epoch's first fetch, latest.pt saved there, one error line")
def test_a_worker_killed_during_the_end_of_epoch_save_is_held_to_the_next_fetch(tmp_path, streets, monkeypatch,
                                                                                capsys):
    """The loop holds SIGCHLD again when an epoch's batches end (StopIteration): a worker killed
    while the epoch's checkpoints are written is noticed at the next epoch's first fetch, a
    step boundary, not raised by torch's handler inside save() (nothing saved, torch's error).
    Here the workers are killed, and dead (not reaped), inside the first save at step 4, the
    end of epoch 1."""
    save, killed = Trainer.save, []

    def killing(self, which):
        if self.global_step == 4 and not killed:
            for w in self._loader._iterator._workers:   # persistent workers: the fit's iterator
                killed.append(w.pid)   # first: torch's handler, not held, would raise right after the wait
                os.kill(w.pid, signal.SIGKILL)
                os.waitid(os.P_PID, w.pid, os.WEXITED | os.WNOWAIT)   # dead (not reaped): SIGCHLD sent
        return save(self, which)
    monkeypatch.setattr(Trainer, "save", killing)
    status, err, errors, latest = _cut_run(tmp_path, streets, capsys)
    line = (f"a data loader worker (pid {killed[0] if killed else '?'}) was killed by signal: Killed (out of "
            f"memory? fewer --nThreads/--workers); {latest} saved at epoch 2 step 4; rerun the same command "
            "with --auto_resume (or --resume) to continue")
    assert len(killed) == 1 and status == 1 and errors == [f"error: {line}"], err[-3000:]
    assert load_checkpoint(latest.parent)["global_step"] == 4 and "Traceback" not in err
    assert line in _loss_log(latest), "the worker's death is not in loss_log.txt"


@pytest.mark.fault(cls="interrupted run",
                   case="a socket error from a fetch, then torch's handler raising a worker's death as the "
                        "loop holds SIGCHLD again (single process): that death, latest.pt saved, one error line")
def test_a_worker_death_raised_as_the_except_holds_sigchld_is_that_step_boundarys(tmp_path, streets, monkeypatch,
                                                                                 capsys):
    """After a fetch's error the loop holds SIGCHLD again first thing; torch's handler may raise
    a dead worker's error just before the hold takes, inside the loop's except: that error is
    this boundary's (latest.pt saved), and the hold is taken again. Here the second fetch raises
    ConnectionResetError (every worker alive) and the hold that follows raises torch's error
    once, before it replaces the handler."""
    from torch.utils.data import dataloader
    next_data = dataloader._MultiProcessingDataLoaderIter._next_data
    hold = Trainer._hold_worker_deaths
    calls, raised = [], []

    def failing(self):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionResetError(104, "Connection reset by peer")
        return next_data(self)

    def dying_hold(self):
        if len(calls) == 2 and self._sigchld_previous is None and not raised:
            raised.append(self.global_step)
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
        return hold(self)
    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "_next_data", failing)
    monkeypatch.setattr(Trainer, "_hold_worker_deaths", dying_hold)
    status, err, errors, latest = _cut_run(tmp_path, streets, capsys)
    line = (f"a data loader worker (pid 4242) was killed by signal: Killed (out of memory? fewer "
            f"--nThreads/--workers); {latest} saved at epoch 1 step 1; rerun the same command with "
            "--auto_resume (or --resume) to continue")
    assert raised == [1] and status == 1 and errors == [f"error: {line}"], err[-3000:]
    assert load_checkpoint(latest.parent)["global_step"] == 1 and "Traceback" not in err
    assert line in _loss_log(latest), "the worker's death is not in loss_log.txt"
    handler = signal.getsignal(signal.SIGCHLD)   # torch's again, not the loop's
    assert getattr(handler, "__qualname__", "").startswith("_set_SIGCHLD_handler"), handler


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker killed before the run's first step (single process): torch's "
                        "error as one line, no latest.pt written at step 0")
def test_a_worker_death_before_the_first_step_saves_nothing(tmp_path, streets, monkeypatch, capsys):
    """A death before the run has trained a step leaves nothing to save (a latest.pt at step 0
    would stand for a run that never trained): the error line says that a worker died, no
    'saved at'. Here the first fetch kills the workers, waits until they are dead (not reaped)
    and raises the socket's ConnectionResetError, with torch's SIGCHLD handler swapped for one
    that does nothing (as tests/test_trainer_output.py's socket-error test does)."""
    with workers_killed_at_fetch(monkeypatch, 1) as killed:
        status, err, errors, latest = _cut_run(tmp_path, streets, capsys)
    assert killed and status == 1 and len(errors) == 1, err[-3000:]
    assert errors[0].startswith(f"error: a data loader worker (pid {killed[0]}) exited unexpectedly"), errors
    assert "saved at" not in err and not latest.exists(), err[-3000:]


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker still exiting when its socket's error reaches the fetch: given up "
                        "to 1 s, it is counted as dead (torch's error of a dead worker, not the socket's)")
def test_a_worker_still_dying_when_the_socket_error_comes_is_counted():
    """_worker_death_error gives each worker up to ``wait_s`` (1 s in all) to be seen dead: a
    worker killed while handing a batch over may still be exiting when its socket's error
    reaches the fetch. Here the worker is dead once joined with a timeout."""

    class Dying:
        pid, alive = 21, True

        def join(self, timeout=None):
            if timeout is None or timeout > 0:
                self.alive = False

        def is_alive(self):
            return self.alive

    bare = ConnectionResetError(104, "Connection reset by peer")
    converted = _worker_death_error(bare, SimpleNamespace(_workers=[Dying()]))
    assert isinstance(converted, RuntimeError) and converted.__cause__ is bare, repr(converted)
    assert str(converted) == "DataLoader worker (pid(s) 21) exited unexpectedly"


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker's death as a DDP rank's note (no resume part): the line ends "
                        "with its cause, no dangling '; '")
def test_a_worker_death_line_without_a_resume_ends_with_its_cause():
    """resume="" (a DDP rank's note, whose rank goes on): the line ends with the cause, no '; '."""
    assert loader_worker_died(RuntimeError("DataLoader worker (pid 9) is killed by signal: Killed. "),
                              resume="") == \
        "a data loader worker (pid 9) was killed by signal: Killed (out of memory? fewer --nThreads/--workers)"
    assert loader_worker_died(RuntimeError("DataLoader worker (pid(s) 9, 10) exited unexpectedly"), resume="") == \
        ("a data loader worker (pids 9, 10) exited unexpectedly (killed for memory? fewer --nThreads/--workers; "
         "--debug shows torch's traceback)")


# ---- DDP: a sample that kills every worker that loads it ----------------------------------------
def worker(marks: Path, argv: list[str]) -> int:
    """train_hd.py's train_main; on rank 1 the third distinct index its workers load kills any
    worker that loads it, once the training process has begun step 2 (``marks/go``)."""
    import torch.utils.data

    from pix2pixhd import data
    from pix2pixhd.cli import train_main
    from pix2pixhd.errors import run
    rank, create, step = int(os.environ["RANK"]), data.create_dataset, Trainer.train_step

    def poisoned(*a, **kw):
        ds = create(*a, **kw)
        if rank != 1:
            return ds
        load = type(ds).__getitem__

        def getitem(self, i):
            if torch.utils.data.get_worker_info() is not None:   # in a loader worker
                seen = marks / f"seen_{i}"
                if not seen.exists():
                    seen.touch()
                    if len(list(marks.glob("seen_*"))) == 3:
                        (marks / f"poison_{i}").touch()
                if (marks / f"poison_{i}").exists():
                    t0 = time.monotonic()
                    while not (marks / "go").exists() and time.monotonic() - t0 < 60:
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGKILL)
            return load(self, i)
        ds.__class__ = type(type(ds).__name__, (type(ds),), {"__getitem__": getitem})
        return ds

    def stepping(self, batch):
        if rank == 1 and self.global_step == 1:   # step 2 begins: its batch was fetched
            (marks / "go").touch()
        return step(self, batch)
    data.create_dataset = poisoned
    Trainer.train_step = stepping
    return run(train_main, argv)


def _kill_torchrun(p: subprocess.Popen) -> None:
    """SIGKILL torchrun ``p`` (started in a session of its own) and its ranks with their loader
    workers: torchrun starts each rank in a session of its own, which killing its group misses
    (they would go on, holding the output pipes open)."""
    ranks = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == p.pid:
            ranks.append(int(stat.parent.name))
    for pid in [*ranks, p.pid]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.mark.fault(cls="interrupted run",
                   case="under two-rank DDP a sample that kills every loader worker loading it: one restart "
                        "of rank 1's workers, then torch's error ends the run (no restart for ever)")
def test_a_sample_that_kills_every_worker_under_ddp_restarts_the_workers_once(tmp_path):
    """Under DDP a rank whose worker died starts new workers at the same place once; a second
    death before the ranks have stopped ends the run with torch's error. A sample that kills
    every worker loading it (the same batch is loaded again) restarted the workers for ever."""
    from tests.test_ddp_worker_death import ARGS
    from tests.test_distributed import make_data, torchrun_cmd, torchrun_env
    make_data(tmp_path / "data", n=8)                      # 4 steps per epoch on 2 ranks
    marks = tmp_path / "marks"
    marks.mkdir()
    cmd = torchrun_cmd(__file__, str(marks), *ARGS, "--dataroot", str(tmp_path / "data"),
                       "--checkpoints_dir", str(tmp_path / "ck"))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=torchrun_env(),
                         start_new_session=True)
    try:
        err = p.communicate(timeout=90)[1]   # 5-15 s here
        ran_on = False
    except subprocess.TimeoutExpired:
        ran_on = True
    finally:
        if p.poll() is None:   # a failed assertion, a timeout: no training left behind
            _kill_torchrun(p)
    if ran_on:
        err = p.communicate(timeout=60)[1]
    notes = [ln for ln in err.splitlines() if "note: rank 1: a data loader worker" in ln]
    assert not ran_on and p.returncode != 0, \
        f"status {p.returncode}, still running after 90 s: {ran_on} ({len(notes)} restarts):\n{err[-4000:]}"
    assert len(notes) == 1, f"{len(notes)} restarts of rank 1's workers:\n{err[-4000:]}"
    assert list(marks.glob("poison_*")) and (marks / "go").exists(), err[-4000:]
    assert re.search(r"error \(rank 1 of 2\): a data loader worker \(pids? [0-9, ]+\) ", err), err[-4000:]


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), sys.argv[2:]))


def test_a_second_ctrl_c_as_the_sigchld_hold_goes_in_leaves_no_handler_behind(monkeypatch):
    """A KeyboardInterrupt (a second Ctrl-C) raised just as signal.signal installs the loop's
    SIGCHLD handler: the release on the way out puts the previous handler back. Before, the
    handler to restore was taken from signal.signal's return value, lost with the exception, and
    the loop's handler stayed installed (later worker deaths only set a flag no one read)."""
    from pix2pixhd import trainer
    real, fired = signal.signal, []

    def interrupted(signum, handler):
        previous = real(signum, handler)
        if signum == signal.SIGCHLD and not fired:
            fired.append(1)
            raise KeyboardInterrupt
        return previous

    def mine(signum, frame):
        pass
    before = real(signal.SIGCHLD, mine)
    try:
        t = SimpleNamespace(_sigchld_previous=None, _sigchld_held=False)
        monkeypatch.setattr(trainer.signal, "signal", interrupted)
        with pytest.raises(KeyboardInterrupt):
            Trainer._hold_worker_deaths(t)
        monkeypatch.setattr(trainer.signal, "signal", real)
        assert fired and signal.getsignal(signal.SIGCHLD) is not mine   # the loop's went in
        Trainer._release_worker_deaths(t, raise_held=False)
        assert signal.getsignal(signal.SIGCHLD) is mine
    finally:
        real(signal.SIGCHLD, before)

"""What train_hd.py reports: progress on rank 0's console (without a terminal, plain lines at most
every PROGRESS_INTERVAL_S seconds, not a progress bar; either way the whole run's ETA), the JSON
summary on stdout after a SIGTERM/SIGINT stop too, and a DataLoader worker that died (the OOM
killer) in a single-process run: latest.pt saved at the step boundary, one error line."""
import contextlib
import io
import json
import os
import re
import signal
import time

import pytest
import torch

from pix2pixhd import trainer
from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import run
from pix2pixhd.trainer import RunProgress, Trainer, TrainingStopped
from tests.test_sigterm import TINY
from tests.test_trainer_step import tiny_cfg


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    """Four scenes: epochs of 4 steps (batchSize 1)."""
    root = tmp_path_factory.mktemp("streets4")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


def _cfg(tmp_path, streets, **kw):
    return tiny_cfg(tmp_path, **{**dict(label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                                         batchSize=1, niter=2, niter_decay=0, print_freq=100), **kw})


# ---- progress -------------------------------------------------------------------------------------
def test_the_eta_is_the_whole_runs_steps_left_at_the_mean_step_time_after_the_first():
    p = RunProgress(first_step=5, last_step=21, now=0.0)
    p.step(1, now=10.0)   # the first step (warm-up) is not timed
    assert p.eta(6, now=10.0) is None and p.eta_text(6, now=10.0) == "?"
    p.step(1, now=11.0)
    p.step(1, now=13.0)
    assert p.eta(8, now=13.0) == pytest.approx(13 * 1.5)   # 13 steps left, 1.5 s each
    assert p.eta_text(8, now=13.0) == "0:00:20"
    assert trainer._duration(2 * 86400 + 3 * 3600 + 4 * 60 + 5) == "2d 3:04:05"


def test_without_a_terminal_progress_is_lines_over_the_whole_run(tmp_path, streets, monkeypatch, capfd):
    monkeypatch.setattr(trainer, "PROGRESS_INTERVAL_S", 0.0)   # a line after every step
    Trainer(_cfg(tmp_path, streets, no_progress=False, max_steps=2)).fit()
    err = capfd.readouterr().err
    assert "\r" not in err and "it/s" not in err, err   # no tqdm bar
    lines = [ln for ln in err.splitlines() if ln.startswith("progress:")]
    # then the last logged losses (step 1's: a window is logged at step 1, then every print_freq)
    assert len(lines) == 2 and lines[0].startswith("progress: global epoch 1/2, step 1/2 (50.0%), ") and \
        re.search(r"run ETA \?, losses G_GAN \S+ G_GAN_Feat \S+ D_real \S+ D_fake \S+$", lines[0]), lines
    assert re.fullmatch(r"progress: global epoch 1/2, step 2/2 \(100\.0%\), \d+\.\d\d images/s, run ETA "
                        r"0:00:00, losses( \w+ \S+)+", lines[1]), lines[1]

    # resumed: the run's last step is the end of epoch 2 (8), past the epoch it is in
    Trainer(_cfg(tmp_path, streets, no_progress=False, resume=True)).fit()
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("progress:")]
    assert [re.search(r"epoch (\d/\d), step (\d+/\d+)", ln).groups() for ln in lines] == \
        [("1/2", "3/8"), ("1/2", "4/8")] + [("2/2", f"{k}/8") for k in range(5, 9)]
    assert re.search(r"run ETA \d+:\d\d:\d\d$", lines[1]) and lines[-1].endswith("run ETA 0:00:00")

    # --no_progress: nothing
    Trainer(_cfg(tmp_path, streets, no_progress=True, niter=3, resume=True, max_steps=1)).fit()
    assert "progress" not in capfd.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_shows_the_whole_runs_eta(tmp_path, streets, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setattr(trainer.Trainer, "train_step", _slowed(trainer.Trainer.train_step, 0.05))
    Trainer(_cfg(tmp_path, streets, no_progress=False, niter=1)).fit()
    out = term.getvalue()
    assert "\r" in out and "progress:" not in out   # the bar, not lines
    assert re.search(r"run ETA=\d+:\d\d:\d\d", out), out[-2000:]


def _slowed(step, seconds):
    def slow(self, batch):
        out = step(self, batch)
        time.sleep(seconds)
        return out
    return slow


# ---- the summary of a SIGTERM/SIGINT stop -----------------------------------------------------------
def _summary(stdout: str) -> dict:
    """The JSON object train_hd.py prints last on stdout."""
    return json.loads(stdout[stdout.rindex("\n{\n") + 1:])


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 75), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
@pytest.mark.fault(cls="interrupted run",
                   case="{id} stop: train_hd.py prints the JSON summary on stdout (stopped_early, stopped_by "
                        "naming the signal) before exiting with {status}")
def test_a_signal_stop_prints_the_summary_naming_the_signal(tmp_path, streets, monkeypatch, capsys,
                                                            signum, status):
    step = Trainer.train_step

    def signalled(self, batch):
        if self.global_step + 1 == 3:
            os.kill(os.getpid(), signum)
        return step(self, batch)
    monkeypatch.setattr(Trainer, "train_step", signalled)
    args = [*TINY, "--dataroot", str(streets), "--checkpoints_dir", str(tmp_path)]   # 2 epochs of 4 steps
    with pytest.raises(TrainingStopped) as e:
        train_main(args)
    assert e.value.code == status
    s = _summary(capsys.readouterr().out)
    assert (s["stopped_early"], s["stopped_by"], s["global_step"], s["steps"]) == \
        (True, signal.Signals(signum).name, 3, 3)
    assert (s["epoch"], s["epochs_completed"]) == (1, 0) and set(s["losses"]) >= {"D_real", "G_GAN"}
    assert s["losses_over"] == "mean over the 3 step(s) of epoch 1 this run trained (not the whole epoch)"
    if signum == signal.SIGINT:
        return

    monkeypatch.setattr(Trainer, "train_step", step)   # the same keys for --max_steps and the end
    resume = ["--resume", "--name", "run", "--checkpoints_dir", str(tmp_path)]
    assert train_main([*resume, "--max_steps", "2"]) == 0
    s = _summary(capsys.readouterr().out)
    assert (s["stopped_early"], s["stopped_by"], s["global_step"]) == (True, "max_steps", 5)
    assert train_main(resume) == 0
    s = _summary(capsys.readouterr().out)
    assert (s["stopped_early"], s["stopped_by"], s["global_step"]) == (False, None, 8)


# ---- a DataLoader worker killed (the OOM killer) ----------------------------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker SIGKILLed (the OOM killer) mid-step in a single-process run: latest.pt "
                        "saved at the next step boundary, one error line naming it and the resume, status 1; the "
                        "resume ends with the uninterrupted run's weights")
def test_a_killed_loader_worker_saves_latest_at_the_step_boundary(tmp_path, streets, monkeypatch, capsys):
    """The training process SIGKILLs its loader's worker (as the OOM killer would) as step 2
    begins (``global_step`` 1: step 1 trained) and waits until it is dead, then trains step 2:
    torch's SIGCHLD handler would raise its error there, mid-step. The run holds it to the next
    fetch, the boundary after step 2, where it saves latest.pt at step 2 and ends with one error
    line (status 1) naming the worker; its resume ends as an uninterrupted run. The kill is made
    from the training process at a known step, not by the worker at its n-th sample: which
    sample's index goes with which fetch depends on the loader's prefetch depth (CI failed when
    a kill at the 3rd sample came before any step)."""
    step, killed = Trainer.train_step, []

    def killing(self, batch):
        if self.global_step == 1 and not killed:   # step 2 begins
            for w in self._loader._iterator._workers:   # persistent workers: the fit's iterator
                os.kill(w.pid, signal.SIGKILL)
                os.waitid(os.P_PID, w.pid, os.WEXITED | os.WNOWAIT)   # dead (not reaped): SIGCHLD sent
                killed.append(w.pid)
        return step(self, batch)
    monkeypatch.setattr(Trainer, "train_step", killing)
    common = [*TINY, "--dataroot", str(streets)]
    status = run(train_main, [*common, "--checkpoints_dir", str(tmp_path / "cut")])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error")]
    latest = tmp_path / "cut" / "run" / "latest.pt"
    assert len(killed) == 1 and status == 1 and errors == [
        f"error: a data loader worker (pid {killed[0]}) was killed by signal: Killed (out of memory? fewer "
        f"--nThreads/--workers); {latest} saved at epoch 1 step 2; rerun the same command with --auto_resume "
        "(or --resume) to continue"], err[-3000:]
    assert load_checkpoint(latest.parent)["global_step"] == 2 and "Traceback" not in err
    handler = signal.getsignal(signal.SIGCHLD)   # torch's again, not the loop's
    assert getattr(handler, "__qualname__", "").startswith("_set_SIGCHLD_handler"), handler
    monkeypatch.undo()
    # the resume ends with the weights of the run trained whole: latest.pt was a step boundary
    assert train_main(["--resume", "--name", "run", "--checkpoints_dir", str(tmp_path / "cut")]) == 0
    assert train_main([*common, "--checkpoints_dir", str(tmp_path / "whole")]) == 0
    resumed, whole = load_checkpoint(latest.parent), load_checkpoint(tmp_path / "whole" / "run")
    assert resumed["global_step"] == whole["global_step"] == 8
    for net in ("G", "D"):
        for k, v in whole[net].items():
            assert torch.equal(resumed[net][k], v), f"{net}.{k} differs from the uninterrupted run's"


def _cut_run(tmp_path, streets, capsys):
    """train_hd.py's way (errors.run) on TINY into tmp_path/cut: (status, stderr, its error
    lines, where latest.pt goes)."""
    status = run(train_main, [*TINY, "--dataroot", str(streets), "--checkpoints_dir", str(tmp_path / "cut")])
    err = capsys.readouterr().err
    return (status, err, [ln for ln in err.splitlines() if ln.startswith("error")],
            tmp_path / "cut" / "run" / "latest.pt")


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker's death raised by torch between a fetch and the loop's hold of "
                        "SIGCHLD (single process): latest.pt saved at that step boundary, one error line")
def test_a_worker_death_raised_right_after_the_fetch_is_that_step_boundarys(tmp_path, streets, monkeypatch, capsys):
    """torch's SIGCHLD handler raises a dead worker's error wherever the main thread is; the loop
    holds SIGCHLD after each fetch. A death the handler raised after the fetch had returned but
    before the hold (a worker killed at once by the index that fetch sent it) escaped the loop
    as torch's error, nothing saved (CI met it under DDP). Here the handler's error is raised at
    that point, deterministically: by the hold itself, before it replaces the handler, at the
    first fetch after step 1."""
    hold = Trainer._hold_worker_deaths
    raised = []

    def dying_hold(self):
        if self.global_step == 1 and self._sigchld_previous is None and not raised:
            raised.append(self.global_step)
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
        return hold(self)
    monkeypatch.setattr(Trainer, "_hold_worker_deaths", dying_hold)
    status, err, errors, latest = _cut_run(tmp_path, streets, capsys)
    assert raised and status == 1 and errors == [
        f"error: a data loader worker (pid 4242) was killed by signal: Killed (out of memory? fewer "
        f"--nThreads/--workers); {latest} saved at epoch 1 step 1; rerun the same command with --auto_resume "
        "(or --resume) to continue"], err[-3000:]
    assert load_checkpoint(latest.parent)["global_step"] == 1
    handler = signal.getsignal(signal.SIGCHLD)   # torch's again, not the loop's
    assert getattr(handler, "__qualname__", "").startswith("_set_SIGCHLD_handler"), handler


@contextlib.contextmanager
def workers_killed_at_fetch(monkeypatch, n: int):
    """The loader's ``n``-th fetch SIGKILLs its workers, waits until they are dead (not reaped) and
    raises the socket's ConnectionResetError, as torch re-raises it for a worker not yet reaped;
    torch's SIGCHLD handler is swapped for one that does nothing from then until the block ends
    (a signal mask would not do: Python runs handlers in the main thread whichever thread the
    signal reaches), so that no handler reports the death first. Yields the killed pids."""
    from torch.utils.data import dataloader
    next_data = dataloader._MultiProcessingDataLoaderIter._next_data
    calls, killed, torchs = [], [], []

    def dying(self):
        calls.append(1)
        if len(calls) == n and not killed:
            torchs.append(signal.signal(signal.SIGCHLD, lambda signum, frame: None))
            for w in self._workers:
                os.kill(w.pid, signal.SIGKILL)
                os.waitid(os.P_PID, w.pid, os.WEXITED | os.WNOWAIT)   # dead, not reaped
                killed.append(w.pid)
            raise ConnectionResetError(104, "Connection reset by peer")
        return next_data(self)
    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "_next_data", dying)
    try:
        yield killed
    finally:
        if torchs:
            signal.signal(signal.SIGCHLD, torchs[0])


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker killed while handing a batch over, seen as the socket's "
                        "ConnectionResetError (single process): latest.pt saved at that step boundary, one error line")
def test_a_worker_death_seen_as_a_socket_error_is_saved_as_a_worker_death(tmp_path, streets, monkeypatch, capsys):
    """A worker killed while handing a batch's shared memory over can surface from the fetch as
    the socket's error (ConnectionResetError, EOFError), which torch re-raises as it is when the
    worker was not yet reaped; it escaped the loop's step-boundary save (only RuntimeError was
    caught). Here the second fetch kills the workers, waits until they are dead (not reaped) and
    raises ConnectionResetError, with torch's SIGCHLD handler swapped for one that does nothing
    (a signal mask would not do: Python runs handlers in the main thread whichever thread the
    signal reaches), so that no handler reports the death first: the run must save latest.pt
    at step 1 and say that a worker died."""
    with workers_killed_at_fetch(monkeypatch, 2) as killed:
        status, err, errors, latest = _cut_run(tmp_path, streets, capsys)
    assert killed and status == 1 and errors == [
        f"error: a data loader worker (pid {killed[0]}) exited unexpectedly (killed for memory? fewer "
        f"--nThreads/--workers; --debug shows torch's traceback); {latest} saved at epoch 1 step 1; rerun "
        "the same command with --auto_resume (or --resume) to continue"], err[-3000:]
    assert load_checkpoint(latest.parent)["global_step"] == 1 and "Traceback" not in err


def test_a_datasets_own_socket_error_is_not_taken_for_a_worker_death():
    """_worker_death_error joins the loader's workers (up to 1 s) only for a bare socket error;
    one the dataset's code raised in a worker (torch names the worker process in it) is
    returned at once, unchanged, and a bare one with every worker alive stays itself."""
    from types import SimpleNamespace

    from pix2pixhd.trainer import _worker_death_error
    joined = []

    class Worker:
        def __init__(self, pid, alive):
            self.pid, self.alive = pid, alive

        def join(self, timeout=None):
            joined.append(self.pid)

        def is_alive(self):
            return self.alive

    own = EOFError("Caught EOFError in DataLoader worker process 0.\nOriginal Traceback ...")
    it = SimpleNamespace(_workers=[Worker(11, True), Worker(12, False)])
    assert _worker_death_error(own, it) is own and joined == []
    bare = ConnectionResetError(104, "Connection reset by peer")
    converted = _worker_death_error(bare, it)
    assert isinstance(converted, RuntimeError) and converted.__cause__ is bare and joined == [11, 12]
    assert str(converted) == "DataLoader worker (pid(s) 12) exited unexpectedly"
    alive = SimpleNamespace(_workers=[Worker(13, True)])
    assert _worker_death_error(bare, alive, wait_s=0.0) is bare

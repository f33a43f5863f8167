"""SIGTERM (SLURM preemption; torchrun passes it on to its workers, and to their DataLoader
workers): training stops at the next step boundary with latest.pt saved, exits with status
STOPPED_EXIT_STATUS and a message saying how to continue, and the resumed run ends where an
uninterrupted one does. The handler is the loop's only: fit() puts the previous one back.
SIGINT (Ctrl-C), errors in DataLoader workers and the end-of-run summary: tests/test_interrupts.py."""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import STOPPED_EXIT_STATUS, Trainer, TrainingInterrupted, TrainingStopped
from tests.test_trainer_step import tiny_cfg

REPO = Path(__file__).resolve().parents[1]
TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "4",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "1", "--no_progress", "--no_tensorboard",
        "--no_html", "--print_freq", "1", "--display_freq", "1000", "--device", "cpu", "--niter", "2",
        "--niter_decay", "0", "--norm_impl", "ref", "--deterministic", "--name", "run"]

# The training process of the subprocess test: train_hd.py, each step made 0.2 s longer so that
# the SIGTERM sent once step 3 is logged lands well before the run's 16th and last step.
SLOW_TRAIN = """
import sys, time
from pix2pixhd.trainer import Trainer
step = Trainer.train_step
def slow(self, batch):
    out = step(self, batch)
    time.sleep(0.2)
    return out
Trainer.train_step = slow
from pix2pixhd.cli import train_main
from pix2pixhd.errors import run
sys.exit(run(train_main, sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=8, n_test=0, width=64, height=32, seed=0)
    return root


def run_env() -> dict:
    """A training subprocess's environment: the caller's thread count (conftest sets it), so the
    CPU kernels sum in the same order, and unbuffered output."""
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONUNBUFFERED="1")


def start_slow(args: list[str]) -> subprocess.Popen:
    """SLOW_TRAIN with ``args``, in a process group of its own (as torchrun or a terminal's job)."""
    return subprocess.Popen([sys.executable, "-c", SLOW_TRAIN, *args], cwd=REPO, env=run_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_steps(p: subprocess.Popen, run: Path, n: int, timeout: float = 120) -> None:
    """Until run ``run`` has logged ``n`` steps; fails when ``p`` ended before."""
    t0, history = time.monotonic(), run / "loss_history.jsonl"
    while p.poll() is None and time.monotonic() - t0 < timeout:
        if history.is_file() and len(history.read_text().splitlines()) >= n:
            return
        time.sleep(0.01)
    assert p.poll() is None, "the run ended before it could be signalled:\n" + p.communicate()[1][-3000:]


def assert_resume_ends_as_an_uninterrupted_run(tmp_path: Path, common: list[str]) -> None:
    """--resume of ``tmp_path/cut/run`` (stopped) ends with the weights of ``common`` run whole."""
    run = tmp_path / "cut" / "run"
    assert train_main(["--resume", "--name", "run", "--checkpoints_dir", str(tmp_path / "cut")]) == 0
    assert train_main([*common, "--checkpoints_dir", str(tmp_path / "whole")]) == 0
    resumed, whole = load_checkpoint(run), load_checkpoint(tmp_path / "whole" / "run")
    assert resumed["global_step"] == whole["global_step"] == 16
    for net in ("G", "D"):
        for k, v in whole[net].items():
            assert torch.equal(resumed[net][k], v), f"{net}.{k} differs from the uninterrupted run's"


@contextlib.contextmanager
def group_killed_on_exit(p: subprocess.Popen):
    """``p`` (started in a session of its own), its whole process group killed if it still runs
    when the block ends (a failed assertion, a timeout): no training left behind."""
    try:
        yield p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


@contextlib.contextmanager
def stopped_in_step_3(tmp_path: Path, streets: Path, monkeypatch, signum: int):
    """A tiny run in this process, sent ``signum`` in the middle of step 3 while the caller's
    handler of it is a marker that fails if called. Checks that fit() stopped at the step
    boundary (TrainingStopped; SIGINT's TrainingInterrupted; latest.pt at step 3) and put the
    marker back; yields (the trainer, its exception, the marker). The previous handler is restored when the block ends."""
    step = Trainer.train_step
    name = signal.Signals(signum).name

    def signalled(self, batch):
        if self.global_step + 1 == 3:
            os.kill(os.getpid(), signum)
        return step(self, batch)

    def marker(signum, frame):   # a handler of the caller's, which fit() must put back
        raise AssertionError(f"the caller's {name} handler ran")
    monkeypatch.setattr(Trainer, "train_step", signalled)
    previous = signal.signal(signum, marker)
    try:
        tr = Trainer(tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                              batchSize=1, niter=1, niter_decay=0))
        # SIGINT: a KeyboardInterrupt for a Python caller (train_hd.py ends it as TrainingStopped, 130)
        with pytest.raises(TrainingStopped if signum == signal.SIGTERM else TrainingInterrupted) as e:
            tr.fit()
        assert signal.getsignal(signum) is marker
        assert load_checkpoint(tmp_path / "t")["global_step"] == tr.global_step == 3
        yield tr, e.value, marker
    finally:
        signal.signal(signum, previous)


@pytest.mark.fault(cls="interrupted run",
                   case="SIGTERM during a step: the step finishes, latest.pt is saved at it, exit "
                        "status 75 with the message, the previous handler restored")
def test_sigterm_stops_at_the_step_boundary_and_restores_the_handler(tmp_path, streets, monkeypatch,
                                                                     capsys):
    step = Trainer.train_step
    with stopped_in_step_3(tmp_path, streets, monkeypatch, signal.SIGTERM) as (tr, stopped, marker):
        assert stopped.code == STOPPED_EXIT_STATUS == 75
        msg = (f"stopped by SIGTERM at epoch 1 step 3; {tmp_path / 't' / 'latest.pt'} saved; rerun the "
               "same command with --auto_resume (or --resume) to continue")
        assert str(stopped) == msg and msg in capsys.readouterr().err
        assert msg in (tmp_path / "t" / "loss_log.txt").read_text()

        monkeypatch.setattr(Trainer, "train_step", step)   # a run that ends: the handler goes back too
        again = Trainer(tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                                 batchSize=1, niter=1, niter_decay=0, resume=True))
        assert again.fit()["global_step"] == 8
        assert signal.getsignal(signal.SIGTERM) is marker


@pytest.mark.fault(cls="interrupted run",
                   case="SIGTERM to a training process group mid-run (DataLoader workers included): "
                        "latest.pt saved at the step it stopped at, status 75, the resume ends with "
                        "the uninterrupted run's weights")
def test_sigterm_to_the_process_group_saves_and_the_resume_ends_as_an_uninterrupted_run(tmp_path, streets):
    common = [*TINY, "--dataroot", str(streets)]
    run = tmp_path / "cut" / "run"
    with group_killed_on_exit(start_slow([*common, "--checkpoints_dir", str(tmp_path / "cut")])) as p:
        wait_for_steps(p, run, 3)
        os.killpg(p.pid, signal.SIGTERM)   # the training process and its DataLoader worker
        t_signal = time.monotonic()
        out, err = p.communicate(timeout=120)
    # promptly: the step, the save, the workers shut down (ignoring SIGTERM, left to interpreter
    # exit they would make it wait for ever)
    assert time.monotonic() - t_signal < 30
    assert p.returncode == STOPPED_EXIT_STATUS, f"status {p.returncode}:\n{err[-4000:]}"
    m = re.search(r"stopped by SIGTERM at epoch (\d) step (\d+); (\S+) saved; rerun the same command "
                  r"with --auto_resume \(or --resume\)", err)
    assert m, err[-4000:]
    stopped_at = int(m.group(2))
    assert Path(m.group(3)) == run / "latest.pt"
    assert 3 <= stopped_at < 16
    ck = load_checkpoint(run)
    assert ck["global_step"] == stopped_at and ck["epoch"] == int(m.group(1))
    assert "Traceback" not in err and "exited unexpectedly" not in err, err[-4000:]
    assert_resume_ends_as_an_uninterrupted_run(tmp_path, common)

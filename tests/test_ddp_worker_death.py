"""A DataLoader worker of one rank SIGKILLed (the out-of-memory killer) in a two-rank gloo run:
that rank loads the batch again with new workers, every rank trains that step and then saves
latest.pt and stops with one error line each (status 1); the resume ends with the weights of the
run trained whole. Before, the rank failed with torch's error and nothing was saved.

Run as a script (under torchrun) this file is the worker: train_hd.py's train_main, with rank 1
SIGKILLing its loader's only worker as step 2 begins (step 1 trained) and waiting until it is
dead, once (a marker file). The death comes mid-step 2 and is held to the next fetch, where rank 1
starts new workers, every rank trains step 3 and saves latest.pt at step 3. The kill is made at
a known step from the training process, not by the worker at its n-th sample: which sample's
index goes with which fetch depends on the loader's prefetch depth, and a death before the run's
first step ends with torch's error (CI met that when the worker killed itself at its 3rd).
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ARGS = ["--label_nc", "9", "--loadSize", "64", "--fineSize", "64", "--resize_or_crop", "none",
        "--ngf", "4", "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4",
        "--n_layers_D", "2", "--no_vgg_loss", "--no_tensorboard", "--no_progress", "--nThreads", "1",
        "--device", "cpu", "--batchSize", "1", "--niter", "2", "--niter_decay", "0",
        "--print_freq", "1", "--save_latest_freq", "100", "--save_epoch_freq", "100", "--name", "run",
        "--seed", "3"]


def worker(marker: Path, argv: list[str]) -> int:
    from pix2pixhd.trainer import Trainer
    rank, step = int(os.environ["RANK"]), Trainer.train_step

    def killing(self, batch):
        if rank == 1 and self.global_step == 1 and str(marker) != "-" and not marker.exists():   # step 2 begins
            marker.touch()
            for w in self._loader._iterator._workers:   # persistent workers: the fit's iterator
                os.kill(w.pid, signal.SIGKILL)
                os.waitid(os.P_PID, w.pid, os.WEXITED | os.WNOWAIT)   # dead (not reaped): SIGCHLD sent
        return step(self, batch)
    Trainer.train_step = killing
    cut = str(marker) != "-"
    return run_probing_the_stop_save(argv, rank, writer=cut and rank == 0, recorder=cut and rank == 1)


def run_probing_the_stop_save(argv: list[str], rank: int, *, writer: bool, recorder: bool,
                              slow_when=lambda: True) -> int:
    """train_hd.py's train_main (a UserError is one error line) with the probes of the tests that
    the other rank waits for the latest.pt of a stop: on the ``writer`` (rank 0) each checkpoint
    write takes 1 s longer while ``slow_when()``, and the process lingers 2 s after the run, so
    the other rank stops first (torchrun would stop it before its record); on the ``recorder``
    the end of fit records whether latest.pt was there, in CHECKPOINTS_DIR/rank{rank}_exit_saw_latest."""
    from pix2pixhd.cli import train_main
    from pix2pixhd.errors import run
    from pix2pixhd.trainer import Trainer
    if writer:
        from pix2pixhd import trainer
        write = trainer.save_checkpoint

        def slow_write(*a, **k):
            if slow_when():
                time.sleep(1)
            return write(*a, **k)
        trainer.save_checkpoint = slow_write
    if recorder:
        fit, ck = Trainer.fit, Path(argv[argv.index("--checkpoints_dir") + 1])

        def recording(self, *a, **k):
            try:
                return fit(self, *a, **k)
            finally:
                (ck / f"rank{rank}_exit_saw_latest").write_text(str((ck / "run" / "latest.pt").is_file()))
        Trainer.fit = recording
    status = run(train_main, argv)
    if writer:
        time.sleep(2)
    return status


def _run(tmp_path: Path, ck: str, marker: str, *extra: str) -> subprocess.CompletedProcess:
    from tests.test_distributed import torchrun_cmd, torchrun_env
    cmd = torchrun_cmd(__file__, marker, *ARGS, "--dataroot", str(tmp_path / "data"),
                       "--checkpoints_dir", str(tmp_path / ck), *extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=torchrun_env())


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker of one rank SIGKILLed under two-rank DDP: new workers load its "
                        "batch, every rank saves latest.pt after that step and stops; the resume ends as the whole run")
def test_a_killed_loader_worker_under_ddp_saves_latest_and_the_resume_is_exact(tmp_path):
    from tests.test_distributed import make_data
    make_data(tmp_path / "data", n=8)                      # 4 steps per epoch on 2 ranks, 8 in all
    marker = tmp_path / "killed"
    p = _run(tmp_path, "cut", str(marker))
    out = p.stdout + p.stderr
    assert marker.exists() and p.returncode != 0, out[-4000:]
    latest = tmp_path / "cut" / "run" / "latest.pt"
    errors = re.findall(r"error \(rank (\d) of 2\): (.*)", out)
    own = [e for r, e in errors if r == "1" and e.startswith("a data loader worker (pid ")]
    other = [e for r, e in errors if r == "0" and e.startswith("a data loader worker of another rank died")]
    # every rank raises its line, but torchrun stops the others once the first has exited: a
    # slower rank may end before it prints; the note of the rank whose worker died comes earlier
    assert len(own) + len(other) >= 1 and len(own) <= 1 and len(other) <= 1, out[-4000:]
    if own:
        assert re.search(r"was killed by signal: Killed \(out of memory\? fewer --nThreads/--workers\); ",
                         own[0]), own[0]
    m = re.search(r"(\S+) saved at epoch (\d) step (\d+); rerun the same command with --auto_resume", (own or other)[0])
    assert m and m.group(1) == str(latest), (own or other)[0]
    from pix2pixhd.checkpoint import load_checkpoint
    cut = load_checkpoint(latest.parent)
    assert (m.group(2), m.group(3)) == ("1", "3"), (own or other)[0]   # the step after the death's
    assert cut["global_step"] == 3 and len(cut["rng"]) == 2
    # rank 0 took 1 s to write latest.pt: rank 1 waited for it before exiting (torchrun then stops
    # rank 0, which would end a slower write than its grace period allows)
    assert (tmp_path / "cut" / "rank1_exit_saw_latest").read_text() == "True"
    if other:   # rank 0, the log's writer, wrote its line there before raising it
        assert other[0] in (latest.parent / "loss_log.txt").read_text(), "the stop is not in loss_log.txt"
    assert "note: rank 1: a data loader worker" in out and "]: Traceback" not in out, out[-4000:]

    resumed = _run(tmp_path, "cut", "-", "--auto_resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    whole = _run(tmp_path, "whole", "-")
    assert whole.returncode == 0, (whole.stdout + whole.stderr)[-4000:]
    a, b = load_checkpoint(latest.parent), load_checkpoint(tmp_path / "whole" / "run")
    assert a["global_step"] == b["global_step"] == 8
    for net in ("G", "D"):
        for k, v in b[net].items():
            assert torch.equal(a[net][k], v), f"{net}.{k}: the resumed run differs from the whole run"


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), sys.argv[2:]))

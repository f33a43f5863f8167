"""A file that cannot be read, met mid-run (a truncated photo passes --validate headers): the run
saves latest.pt at that step boundary, says so in a note, and stops with the file's one error
line; once the file is fixed, --auto_resume ends with the weights of the run trained whole. Under
DDP every rank saves with the failing one (rank 0, the writer, included) and each rank's line names
that rank's error. Before, nothing was saved: the steps since the last latest.pt were lost, and
under DDP the other ranks waited in the step's collectives until the backend gave up.

Run as a script (under torchrun or not) this file is the worker: train_hd.py's train_main, with
the dataset of the failing rank raising the reader's error on its third fetch (steps 1 and 2
trained), when the marker is "fail". --nThreads 0: the fetches happen in the training process,
one per step, in order.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_ddp_worker_death import ARGS

ARGS0 = [a if a != "1" or ARGS[i - 1] != "--nThreads" else "0" for i, a in enumerate(ARGS)]
MESSAGE = "train_img/train_00002.png: cannot read this photo (image file is truncated)"


def worker(marker: str, failing_rank: int, argv: list[str]) -> int:
    from pix2pixhd.cli import train_main
    from pix2pixhd.data.dataset import DatasetError, PairedDataset
    from pix2pixhd.errors import run
    rank, get, calls = int(os.environ.get("RANK", "0")), PairedDataset.__getitem__, [0]

    def failing(self, key):
        calls[0] += 1
        if marker == "fail" and rank == failing_rank and calls[0] == 3:
            raise DatasetError(MESSAGE)
        return get(self, key)
    PairedDataset.__getitem__ = failing
    return run(train_main, argv)   # train_hd.py's way: a UserError is one error line


def _run(tmp_path: Path, ck: str, marker: str, ranks: int, *extra: str) -> subprocess.CompletedProcess:
    from tests.test_distributed import torchrun_cmd, torchrun_env
    args = [marker, "0", *ARGS0, "--dataroot", str(tmp_path / "data"), "--checkpoints_dir", str(tmp_path / ck),
            *extra]
    cmd = torchrun_cmd(__file__, *args) if ranks > 1 else [sys.executable, __file__, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=torchrun_env())


def _same_weights(a_dir: Path, b_dir: Path, steps: int) -> None:
    from pix2pixhd.checkpoint import load_checkpoint
    a, b = load_checkpoint(a_dir), load_checkpoint(b_dir)
    assert a["global_step"] == b["global_step"] == steps
    for net in ("G", "D"):
        for k, v in b[net].items():
            assert torch.equal(a[net][k], v), f"{net}.{k}: the resumed run differs from the whole run"


@pytest.mark.fault(cls="bad dataset",
                   case="a file that cannot be read, met mid-run in one process: latest.pt saved at that "
                        "step boundary with a note, one error line; fixed and resumed, the weights of the whole run")
def test_a_data_error_mid_run_saves_latest_and_the_resume_is_exact(tmp_path):
    from tests.test_distributed import make_data
    make_data(tmp_path / "data", n=4)                      # 4 steps per epoch, 8 in all
    p = _run(tmp_path, "cut", "fail", 1)
    assert p.returncode == 1, p.stderr[-4000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error")]
    assert errors == [f"error: {MESSAGE}"], p.stderr[-4000:]
    latest = tmp_path / "cut" / "run" / "latest.pt"
    assert (f"note: the batch after step 2 could not be loaded (the error below says why); {latest} saved at "
            "epoch 1 step 2; rerun the same command with --auto_resume") in p.stderr, p.stderr[-4000:]
    assert "Traceback" not in p.stderr
    assert "could not be loaded" in (latest.parent / "loss_log.txt").read_text()
    from pix2pixhd.checkpoint import load_checkpoint
    assert load_checkpoint(latest.parent)["global_step"] == 2

    resumed = _run(tmp_path, "cut", "-", 1, "--auto_resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    whole = _run(tmp_path, "whole", "-", 1)
    assert whole.returncode == 0, whole.stderr[-4000:]
    _same_weights(latest.parent, tmp_path / "whole" / "run", 8)


@pytest.mark.fault(cls="bad dataset",
                   case="under two-rank DDP, rank 0 cannot read a file mid-run: every rank saves latest.pt "
                        "at that step boundary and stops with one line naming rank 0's error; the resume finishes")
def test_under_ddp_a_data_error_mid_run_saves_latest_on_every_rank(tmp_path):
    from tests.test_distributed import make_data
    make_data(tmp_path / "data", n=8)                      # 4 steps per epoch on 2 ranks, 8 in all
    p = _run(tmp_path, "cut", "fail", 2)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-4000:]
    latest = tmp_path / "cut" / "run" / "latest.pt"
    lines = re.findall(r"error \(rank (\d) of 2\): (.*)", out)
    # torchrun stops the other rank once the first has exited: one of the two lines may be missing
    assert 1 <= len(lines) <= 2, out[-4000:]
    for rank, line in lines:
        if rank == "0":
            assert line == MESSAGE, line
        else:
            assert line == (f"stopped because rank 0 could not load its batch ({MESSAGE}); {latest} saved at "
                            "epoch 1 step 2; rerun the same command with --auto_resume (or --resume) to continue"), line
    # (torchrun prefixes a rank's traceback with [rankN]:; its own summary of failed ranks follows)
    assert not re.search(r"^\[rank\d\]:", out, re.M), out[-4000:]
    from pix2pixhd.checkpoint import load_checkpoint
    cut = load_checkpoint(latest.parent)
    assert cut["global_step"] == 2 and len(cut["rng"]) == 2

    resumed = _run(tmp_path, "cut", "-", 2, "--auto_resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    assert load_checkpoint(latest.parent)["global_step"] == 8


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))

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
import time
from pathlib import Path

import pytest
import torch

from tests.test_ddp_worker_death import ARGS, run_probing_the_stop_save

ARGS0 = [a if a != "1" or ARGS[i - 1] != "--nThreads" else "0" for i, a in enumerate(ARGS)]
MESSAGE = "train_img/train_00002.png: cannot read this photo (image file is truncated)"


# what the failing rank's reader says under DDP: two lines, longer than the 300 characters another
# rank's one line quotes of it
LONG = MESSAGE + "\n" + "  (a second line of detail)" * 20


def worker(marker: str, failing_rank: int, argv: list[str]) -> int:
    """``marker``: "-" (no failure), "fail" (the failing rank's third fetch), "fail_first" (its
    first, before any step), "fail_save" (the third, and the save after it fails: a full disk)."""
    from pix2pixhd.data.dataset import DatasetError, PairedDataset
    from pix2pixhd.trainer import Trainer
    rank, get, save, calls = int(os.environ.get("RANK", "0")), PairedDataset.__getitem__, Trainer.save, [0]
    ddp = "WORLD_SIZE" in os.environ
    at = 1 if marker == "fail_first" else 3

    def failing(self, key):
        calls[0] += 1
        if marker.startswith("fail") and rank == failing_rank and calls[0] == at:
            raise DatasetError(LONG if ddp else MESSAGE)
        return get(self, key)

    def saving(self, which):
        if marker == "fail_save" and calls[0] >= at:
            raise OSError(28, "No space left on device (a full disk)")
        return save(self, which)
    PairedDataset.__getitem__ = failing
    Trainer.save = saving
    probing = ddp and marker == "fail"
    return run_probing_the_stop_save(argv, rank, writer=probing and rank != failing_rank,
                                     recorder=probing and rank == failing_rank, slow_when=lambda: calls[0] >= at)


def _run(tmp_path: Path, ck: str, marker: str, ranks: int, *extra: str, failing_rank: int = 0
         ) -> subprocess.CompletedProcess:
    from tests.test_distributed import torchrun_cmd, torchrun_env
    args = [marker, str(failing_rank), *ARGS0, "--dataroot", str(tmp_path / "data"), "--checkpoints_dir", str(tmp_path / ck),
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
                   case="a file that cannot be read mid-run, and latest.pt cannot be saved after it (a full disk): "
                        "a note says so, the file's error line is the one error, status 1")
def test_a_save_that_fails_after_a_data_error_is_a_note_and_the_error_stays(tmp_path):
    from tests.test_distributed import make_data
    make_data(tmp_path / "data", n=4)
    p = _run(tmp_path, "cut", "fail_save", 1)
    assert p.returncode == 1, p.stderr[-4000:]
    assert [ln for ln in p.stderr.splitlines() if ln.startswith("error")] == [f"error: {MESSAGE}"], p.stderr[-4000:]
    assert ("note: latest.pt could not be saved after this error (OSError: [Errno 28] No space left on device "
            "(a full disk)); the checkpoints written before are intact") in p.stderr, p.stderr[-4000:]
    assert not (tmp_path / "cut" / "run" / "latest.pt").exists()


@pytest.mark.fault(cls="bad dataset",
                   case="under two-rank DDP, rank 1 cannot read a file mid-run: every rank saves latest.pt at "
                        "that step boundary (rank 0 writes it); each stops with one line, rank 0's quoting rank "
                        "1's error; the resume finishes")
def test_under_ddp_a_data_error_mid_run_saves_latest_on_every_rank(tmp_path):
    from tests.test_distributed import make_data
    make_data(tmp_path / "data", n=8)                      # 4 steps per epoch on 2 ranks, 8 in all
    p = _run(tmp_path, "cut", "fail", 2, failing_rank=1)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-4000:]
    latest = tmp_path / "cut" / "run" / "latest.pt"
    lines = re.findall(r"error \(rank (\d) of 2\): (.*)", out)
    # torchrun stops the other rank once the first has exited: one of the two lines may be missing
    assert 1 <= len(lines) <= 2, out[-4000:]
    quoted = " ".join(LONG.split())[:300]                  # one line, cut at 300 characters
    for rank, line in lines:
        if rank == "1":
            assert line == MESSAGE, line                   # its own message's first line
        else:
            assert line == (f"stopped because rank 1 could not load its batch ({quoted}); {latest} saved at "
                            "epoch 1 step 2; rerun the same command with --auto_resume (or --resume) to continue"), line
    # (torchrun prefixes a rank's traceback with [rankN]:; its own summary of failed ranks follows)
    assert not re.search(r"^\[rank\d\]:", out, re.M), out[-4000:]
    # rank 0 took 1 s to write latest.pt: rank 1 waited for it before exiting (torchrun then stops
    # rank 0, which would end a slower write than its grace period allows)
    assert (tmp_path / "cut" / "rank1_exit_saw_latest").read_text() == "True"
    from pix2pixhd.checkpoint import load_checkpoint
    cut = load_checkpoint(latest.parent)
    assert cut["global_step"] == 2 and len(cut["rng"]) == 2

    resumed = _run(tmp_path, "cut", "-", 2, "--auto_resume")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    assert load_checkpoint(latest.parent)["global_step"] == 8


@pytest.mark.fault(cls="bad dataset",
                   case="under two-rank DDP, rank 1 cannot read the first batch of the run: every rank stops at once "
                        "with one line, nothing saved (no step to save), no collective left waiting")
def test_under_ddp_a_data_error_before_the_first_step_saves_nothing_and_stops_every_rank(tmp_path):
    from tests.test_distributed import make_data
    make_data(tmp_path / "data", n=8)
    t0 = time.monotonic()
    p = _run(tmp_path, "cut", "fail_first", 2, failing_rank=1)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and time.monotonic() - t0 < 120, out[-4000:]
    lines = re.findall(r"error \(rank (\d) of 2\): (.*)", out)
    assert 1 <= len(lines) <= 2, out[-4000:]
    for rank, line in lines:
        assert line == MESSAGE if rank == "1" else line.endswith(
            "); no step was trained in this run, nothing was saved"), line
    assert not (tmp_path / "cut" / "run" / "latest.pt").exists()


def test_another_ranks_line_quotes_the_workers_own_error_not_torchs_traceback():
    """What the other ranks quote of a failed fetch: one line, the worker's error itself (torch
    re-raises it with "Original Traceback" and the worker's frames), the dead-worker or full-/dev/shm
    line where it is one of those, a UserError's message."""
    from pix2pixhd.data.dataset import DatasetError
    from pix2pixhd.trainer import fetch_error_text
    wrapped = RuntimeError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                           "last):\n  File \"x.py\", line 3, in f\n    g()\nValueError: a bad crop box (3, 9)")
    assert fetch_error_text(wrapped) == "ValueError: a bad crop box (3, 9)"
    shm = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                       "last):\nRuntimeError: unable to allocate shared memory(shm) for file </torch_1_2_3>: No space "
                       "left on device (28)")
    assert fetch_error_text(shm).startswith("out of shared memory: a data loader worker could not put its samples")
    dead = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    assert fetch_error_text(dead).startswith("a data loader worker (pid 4242) was killed by signal: Killed (out of")
    assert fetch_error_text(DatasetError("a.png: cannot\n read")) == "a.png: cannot read"
    # a worker's DatasetError, as torch re-raises it: the type kept, the message its traceback's
    reraised = DatasetError("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                            "call last):\n  File \"w.py\", line 1, in f\npix2pixhd.data.dataset.DatasetError: a.png: "
                            "cannot read")
    assert fetch_error_text(reraised) == "a.png: cannot read"
    assert fetch_error_text(OSError(5, "Input/output error")) == "OSError: [Errno 5] Input/output error"


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))

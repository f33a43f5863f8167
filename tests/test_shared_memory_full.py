"""A full /dev/shm (a container's: Docker gives 64 MB by default), met by the loader workers.

Training's batches are collated in the worker, which allocates them in shared memory: a full
/dev/shm raised torch's RuntimeError there, and the user got ~150 lines of traceback. Synthesis
reads without batching, and torch moved each sample into shared memory in the worker's queue
feeder thread, whose error only printed a traceback and dropped the sample: the job then waited
for it for ever, deaf to SIGTERM (GNU timeout, SLURM). Now the move happens in the worker's fetch
(``loader.convert_shared``) and both end with one line naming /dev/shm and the fixes.

The end-to-end cases mount a small tmpfs on /dev/shm in a private mount namespace
(``unshare -m``, which needs root or user namespaces): skipped, saying so, where that is refused.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pix2pixhd.data.loader import create_dataloader
from pix2pixhd.errors import run, shared_memory_full

REPO = Path(__file__).resolve().parents[1]

# torch 2.13's error as a DataLoader re-raises it from a worker
TORCH_SAYS = ("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
              "  File \".../torch/utils/data/_utils/worker.py\", line 349, in _worker_loop\n"
              "RuntimeError: unable to allocate shared memory(shm) for file </torch_5019_1774579584_2>: "
              "No space left on device (28)")


def test_torchs_shared_memory_error_is_one_line_naming_dev_shm(monkeypatch, capsys):
    monkeypatch.delenv("PIX2PIXHD_DEBUG", raising=False)
    line = shared_memory_full(RuntimeError(TORCH_SAYS), workers="--workers")
    assert line.startswith("out of shared memory: a data loader worker could not put its samples in /dev/shm "
                           "(unable to allocate shared memory(shm) for file </torch_5019_1774579584_2>: No space "
                           "left on device (28)); give the container more (docker run --shm-size=8g"), line
    assert "fewer --workers (0 reads in the main process" in line and "\n" not in line
    assert shared_memory_full(RuntimeError("CUDA out of memory")) is None

    def main(argv):
        raise RuntimeError(TORCH_SAYS)
    assert run(main, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: out of shared memory: "), err


@pytest.mark.parametrize("said", [
    "unable to allocate shared memory(shm) for file </torch_5019_1774579584_2>: No space left on device (28)",
    "unable to write to file </torch_12_34>: No space left on device (28)",
    "unable to resize file </torch_12_34> to the right size: Invalid argument (22)",
    "unable to mmap 8388608 bytes from file </torch_12_34>: Cannot allocate memory (12)"])
def test_each_wording_of_torchs_shared_memory_error_is_recognised_in_the_chain(said):
    assert shared_memory_full(RuntimeError(said)).startswith("out of shared memory: ")
    outer = RuntimeError("the fetch failed")   # the error itself, or its cause, as a wrapper leaves it
    outer.__cause__ = RuntimeError(said)
    assert shared_memory_full(outer).startswith("out of shared memory: ")
    long = shared_memory_full(RuntimeError(said + " " + "x" * 400))
    quoted = long[long.index("(") + 1:long.index("); give the container")]
    assert len(quoted) <= 200, quoted                   # torch's words, cut


def test_a_full_disk_elsewhere_is_not_called_shared_memory():
    assert shared_memory_full(RuntimeError("unable to write to file </data/out.pt>: No space left on device (28)")) \
        is None


def test_synthesis_words_the_full_dev_shm_with_its_own_option_and_way_on():
    from pix2pixhd.engine import LoaderWorkerDiedError, _worker_death_error
    e = _worker_death_error(RuntimeError(TORCH_SAYS))
    assert isinstance(e, LoaderWorkerDiedError) and e.__cause__ is not None
    assert str(e).startswith("out of shared memory: ") and "fewer --workers (0 reads" in str(e)
    assert str(e).endswith("; then rerun the same command to resume the job") and "--nThreads" not in str(e)


def test_convert_shared_moves_every_tensor_of_a_sample_in_a_worker(monkeypatch):
    """In the worker (faked here) every tensor, in nested dicts and lists too, is in shared memory
    when convert_shared returns: what the feeder thread would otherwise do (and fail at silently)."""
    import pix2pixhd.data.loader as loader
    from pix2pixhd.data.loader import convert_shared
    monkeypatch.setattr(loader, "get_worker_info", lambda: object())
    out = convert_shared({"label": torch.zeros(2), "parts": [torch.ones(2), (torch.ones(1),)],
                          "more": {"inst": torch.zeros(3)}, "path": "a.png"})
    assert out["label"].is_shared() and out["more"]["inst"].is_shared()
    assert out["parts"][0].is_shared() and out["parts"][1][0].is_shared() and out["path"] == "a.png"


class _Maps(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key   # the ResumableSampler's (index, epoch)
        return {"label": torch.full((1, 4, 4), i), "path": f"m{i}.png"}


def test_unbatched_samples_are_in_shared_memory_when_they_leave_the_worker():
    """The move into shared memory is the worker's fetch's (where its error is a worker error),
    so nothing is left for the queue's feeder thread to allocate."""
    from pix2pixhd.data.loader import convert_shared
    seen = []
    loader = create_dataloader(_Maps(), None, shuffle=False, num_workers=1, pin_memory=False)
    try:
        for s in loader:
            seen.append((s["label"].is_shared(), int(s["label"][0, 0, 0]), s["path"]))
    finally:
        from pix2pixhd.data.loader import shutdown_workers
        shutdown_workers(loader)
    assert seen == [(True, 0, "m0.png"), (True, 1, "m1.png")]
    assert loader.collate_fn is convert_shared
    here = convert_shared({"label": torch.zeros(2)})   # not in a worker: left where it is
    assert not here["label"].is_shared()


def _small_shm(cmd: list[str], size: str, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` with a ``size`` tmpfs on /dev/shm, in its own mount namespace and process group
    (killed whole at ``timeout``: the hang this file is about)."""
    inner = "mount -t tmpfs -o size=" + size + " tmpfs /dev/shm && exec \"$@\""
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", inner, "sh", *cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS="1", PIX2PIXHD_DEBUG=""))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"still running after {timeout} s (hung on the full /dev/shm):\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


@pytest.fixture(scope="module")
def namespaces():
    if shutil.which("unshare") is None:
        pytest.skip("no unshare here: cannot give a process a small /dev/shm of its own")
    p = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /dev/shm"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"mounting a tmpfs in a private mount namespace is refused here ({p.stderr.strip()[:120]})")


TINY = ["--label_nc", "9", "--resize_or_crop", "none", "--ngf", "4", "--ndf", "4", "--n_blocks_global", "1",
        "--n_downsample_global", "2", "--n_layers_D", "2", "--no_vgg_loss", "--niter", "1", "--niter_decay", "0",
        "--no_tensorboard", "--no_progress", "--no_html", "--device", "cpu"]


def _data(tmp_path: Path) -> list[str]:
    from pix2pixhd.datasets import synthetic_streets
    synthetic_streets.generate(tmp_path / "d", n_train=4, n_test=2, width=256, height=128, seed=0)
    return [sys.executable, "train_hd.py", "--dataroot", str(tmp_path / "d"), "--checkpoints_dir",
            str(tmp_path / "ck"), *TINY]


@pytest.mark.fault(cls="interrupted run",
                   case="a full /dev/shm (a 64 kB tmpfs) met by training's loader workers: one error line naming "
                        "/dev/shm, --shm-size and --nThreads, status 1, no traceback")
def test_a_full_dev_shm_ends_training_with_one_line(tmp_path, namespaces):
    p = _small_shm([*_data(tmp_path), "--name", "shm", "--nThreads", "1", "--batchSize", "2"], "64k", 120)
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error")]
    assert p.returncode == 1 and len(lines) == 1, p.stderr[-3000:]
    assert lines[0].startswith("error: out of shared memory: a data loader worker could not put its samples "
                               "in /dev/shm (unable to "), lines[0]
    assert "fewer --nThreads/--workers" in lines[0] and "Traceback" not in p.stderr, p.stderr[-3000:]


@pytest.mark.fault(cls="synthesis",
                   case="a full /dev/shm (a 64 kB tmpfs) met by synthesis's decoding workers: one error line naming "
                        "/dev/shm and --workers, status 1, within seconds (it hung for ever, SIGTERM ignored)")
def test_a_full_dev_shm_ends_synthesis_with_one_line_not_a_hang(tmp_path, namespaces):
    base = _data(tmp_path)
    ok = subprocess.run([*base, "--name", "ok", "--nThreads", "0", "--max_steps", "1"], capture_output=True,
                        text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=240)
    assert ok.returncode == 0, ok.stderr[-3000:]
    p = _small_shm([sys.executable, "synthesize.py", "--checkpoint", str(tmp_path / "ck" / "ok"), "--dataroot",
                    str(tmp_path / "d"), "--phase", "train", "--out", str(tmp_path / "out"), "--workers", "1"],
                   "64k", 90)
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("error")]
    assert p.returncode == 1 and len(lines) == 1, p.stderr[-3000:]
    assert lines[0].startswith("error: out of shared memory: ") and "fewer --workers (0 reads" in lines[0], lines[0]
    assert lines[0].endswith("then rerun the same command to resume the job") and "Traceback" not in p.stderr, \
        p.stderr[-3000:]

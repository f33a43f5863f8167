"""A full disk during training (ops walkthrough items 1 and 10). A failed TensorBoard write
switches TensorBoard off with one note and training goes on; a tensorboardX writer thread that
stopped is never waited on (its queue blocked the run for good, deaf to SIGTERM). A failed append
to the loss logs ends the run with one ``error:`` line, status 1, and no traceback on stderr (not
the writer thread's, not tensorboardX's atexit hook's). The runs are subprocesses with a timeout,
so that a hang fails the test."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.visualizer import Visualizer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "0", "--no_progress", "--print_freq", "1",
        "--display_freq", "1", "--device", "cpu", "--niter", "1", "--niter_decay", "0",
        "--save_latest_freq", "100000", "--norm_impl", "ref"]

# The disk fills after FULL_AFTER writes of the kind the test names: later writes of that kind (and,
# for "records", every write of the run's logs and tensorboard) fail with ENOSPC.
DRIVER = r"""
import errno, os, sys
import tensorboardX.record_writer as rw
import pix2pixhd.checkpoint as ck
import pix2pixhd.visualizer as vz
from pix2pixhd.cli import train_main
from pix2pixhd.errors import run

mode, full_after = sys.argv[1], int(sys.argv[2])
state = {"tb": 0, "history": 0, "full": False}

def enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

write = rw.RecordWriter.write
def tb_write(self, data):
    state["tb"] += 1
    if state["full"] or (mode == "tb" and state["tb"] > full_after):
        raise enospc(self.path)
    return write(self, data)
rw.RecordWriter.write = tb_write

def log_open(path, mode_="r", *args, **kwargs):
    if "a" in mode_ and str(path).endswith("loss_history.jsonl") and mode == "records":
        state["history"] += 1
        state["full"] = state["full"] or state["history"] > full_after
    if state["full"] and mode_ != "r":
        raise enospc(path)
    return open(path, mode_, *args, **kwargs)
vz.open = log_open
ck.open = log_open
sys.exit(run(train_main, sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=6, n_test=0, width=64, height=32, seed=0)
    return root


def _train(tmp_path, streets, mode, full_after):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("PIX2PIXHD_DEBUG", None)
    try:
        return subprocess.run(
            [sys.executable, "-c", DRIVER, mode, str(full_after), "--dataroot", str(streets),
             "--checkpoints_dir", str(tmp_path), "--name", "r", *TINY],
            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"training hung on a full disk: {e.stderr}")


def _no_tracebacks(stderr):
    assert "Traceback" not in stderr, stderr
    assert "Exception in thread" not in stderr and "Exception ignored" not in stderr, stderr


@pytest.mark.fault(cls="interrupted run",
                   case="disk full while tensorboardX writes events: TensorBoard off with one note naming "
                        "the events file, training goes on, no hang, no traceback")
def test_failed_tensorboard_write_switches_it_off_and_training_goes_on(tmp_path, streets):
    p = _train(tmp_path, streets, "tb", 3)
    assert p.returncode == 0, p.stderr
    _no_tracebacks(p.stderr)
    notes = [line for line in p.stderr.splitlines() if "TensorBoard logging is off" in line]
    events = next((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(notes) == 1 and notes[0].startswith(f"note: could not write {events}: OSError: "), p.stderr
    assert "No space left on device" in notes[0]
    history = (tmp_path / "r" / "loss_history.jsonl").read_text().splitlines()
    assert len(history) == 6   # every step logged
    assert "TensorBoard logging is off" in (tmp_path / "r" / "loss_log.txt").read_text()


@pytest.mark.fault(cls="interrupted run",
                   case="disk full while appending loss_history.jsonl: one error line naming the file "
                        "and ENOSPC, status 1, no traceback")
def test_failed_loss_log_append_is_one_error_line(tmp_path, streets):
    p = _train(tmp_path, streets, "records", 2)
    assert p.returncode == 1, p.stderr
    _no_tracebacks(p.stderr)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error")]
    assert errors == [line for line in p.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith(f"error: could not write {tmp_path / 'r' / 'loss_history.jsonl'}: OSError: "
                                "[Errno 28] No space left on device"), p.stderr
    assert "--auto_resume" in errors[0]


@pytest.mark.fault(cls="interrupted run",
                   case="tensorboardX writer thread stopped: logging and closing do not block, "
                        "TensorBoard off with one note")
def test_a_stopped_writer_thread_is_not_waited_on(tmp_path, capsys):
    """The writer thread stopped (here: told to): logging more than its queue holds, then closing,
    returns at once, with tensorboard off and one note."""
    v = Visualizer(tmp_path, html_page=False)
    v.begin()
    ev = v.writer.file_writer.event_writer
    ev._event_queue.put(ev._worker._shutdown_signal)
    ev._worker.join(5)

    def log():
        for step in range(1, 4):
            v.log_losses(1, step, step, {f"G_{i}": 0.5 for i in range(20)}, {})
        v.close()
    t = threading.Thread(target=log, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():   # tensorboardX's exit hook would block too: the suite would not end
        ev._closed = True
        ev._event_queue.cancel_join_thread()
        pytest.fail("logging blocked on a stopped tensorboard writer")
    assert not v.tensorboard
    err = capsys.readouterr().err
    assert err.count("TensorBoard logging is off") == 1 and "writer thread stopped" in err, err

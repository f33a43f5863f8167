"""A tensorboardX writer thread that is alive but stuck (its events file on a hung mount: a write
that never returns). No visualizer call waits on it more than ``TB_STALL_SECONDS`` (lowered here to
1 s): log_losses, display and close return, TensorBoard is off with one note naming the events
file, and the process exits without waiting on the stuck thread. A slow thread that makes progress
is not switched off. The calls run in a subprocess with a timeout, so that a hang fails the test."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The writer thread's writes block for good on an event no one sets ("stuck"), or take 20 ms
# ("slow"); writes in the main thread (the events file's first record) go through.
DRIVER = r"""
import json, sys, threading, time
from pathlib import Path
import numpy as np
import tensorboardX.record_writer as rw
import pix2pixhd.visualizer as vz

vz.TB_STALL_SECONDS = 1.0
root = Path(sys.argv[1])
mode = {"write": "slow"}
never = threading.Event()
write, flush = rw.RecordWriter.write, rw.RecordWriter.flush

def hang(fn):
    def call(self, *args):
        if threading.current_thread() is not threading.main_thread():
            if mode["write"] == "stuck":
                never.wait()
            time.sleep(0.02)
        return fn(self, *args)
    return call
rw.RecordWriter.write, rw.RecordWriter.flush = hang(write), hang(flush)

def timed(fn, *args):
    t = time.monotonic()
    fn(*args)
    return time.monotonic() - t

out = {}
losses = {f"G_{i}": 0.5 for i in range(20)}   # more scalars than the queue holds (10)
img = {"synthesized": np.zeros((32, 32, 3), np.uint8)}

v = vz.Visualizer(root / "slow", html_page=False)
v.begin()
out["slow"] = [timed(v.log_losses, 1, 1, 1, losses, {}), timed(v.close), v.tensorboard]

mode["write"] = "stuck"
v = vz.Visualizer(root / "log", html_page=False)
v.begin()
out["log"] = [timed(v.log_losses, 1, 1, 1, losses, {}), timed(v.log_losses, 1, 2, 2, losses, {}),
              timed(v.close), v.tensorboard]

v = vz.Visualizer(root / "display", html_page=False)
v.begin()
out["display"] = [sum(timed(v.display, img, 1, s) for s in range(12)), timed(v.close), v.tensorboard]

v = vz.Visualizer(root / "close", html_page=False)
v.begin()
out["close"] = [timed(v.log_losses, 1, 1, 1, {"G_GAN": 0.5}, {}), timed(v.close), v.tensorboard]
print(json.dumps(out))
"""


def _drive(driver: str, tmp_path, timeout: int, blocked: str):
    """``driver`` run with ``tmp_path`` in a subprocess bounded by ``timeout`` (a hang fails the
    test, saying what ``blocked``); its exit status 0 is asserted. The finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    try:
        p = subprocess.run([sys.executable, "-c", driver, str(tmp_path)], capture_output=True,
                           text=True, timeout=timeout, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{blocked} blocked the visualizer or exit: {e.stderr}")
    assert p.returncode == 0, p.stderr
    return p


@pytest.mark.fault(cls="interrupted run",
                   case="tensorboardX writer thread stuck on a hung disk: log, display and close "
                        "return within the bound, TensorBoard off with one note, exit does not wait")
def test_a_stuck_writer_thread_is_given_up_on(tmp_path):
    p = _drive(DRIVER, tmp_path, 90, "a stuck tensorboard writer thread")
    out = json.loads(p.stdout.splitlines()[-1])
    log_first, log_again, log_close, log_tb = out["log"]
    assert 1.0 <= log_first < 4 and log_again < 0.5 and log_close < 0.5 and not log_tb, out
    display, display_close, display_tb = out["display"]
    assert 1.0 <= display < 4 and display_close < 0.5 and not display_tb, out
    close_log, close, close_tb = out["close"]
    assert close_log < 0.5 and 1.0 <= close < 4 and not close_tb, out
    slow_log, slow_close, slow_tb = out["slow"]
    assert slow_tb and slow_log < 4 and slow_close < 4, out   # progress, if slow: left on

    notes = [line for line in p.stderr.splitlines() if "TensorBoard logging is off" in line]
    assert len(notes) == 3, p.stderr
    for name, note in zip(["log", "display", "close"], notes):
        events = next((tmp_path / name / "tensorboard").glob("events.out.tfevents.*"))
        assert note.startswith(f"note: could not write {events}: TimeoutError: its writer thread made "
                               "no progress for 1 s"), note
        assert "TensorBoard logging is off" in (tmp_path / name / "loss_log.txt").read_text()
    assert "TensorBoard logging is off" not in (tmp_path / "slow" / "loss_log.txt").read_text()
    slow_events = next((tmp_path / "slow" / "tensorboard").glob("events.out.tfevents.*"))
    assert slow_events.stat().st_size > 20 * 40   # the 20 scalars were written
    assert "Traceback" not in p.stderr and "Exception" not in p.stderr, p.stderr


# Another writer class (as torch.utils.tensorboard's: no tensorboardX queue to look at) whose
# add_scalar never returns from its second call on.
OTHER_DRIVER = r"""
import json, sys, threading, time
from pathlib import Path
import pix2pixhd.visualizer as vz

vz.TB_STALL_SECONDS = 1.0
never, calls = threading.Event(), []

class Writer:
    def __init__(self, logdir, **kw):
        Path(logdir).mkdir(parents=True, exist_ok=True)
    def add_scalar(self, *args, **kw):
        calls.append(args[0])
        if len(calls) > 1:
            never.wait()
    def close(self):
        pass

vz.summary_writer_class = lambda: Writer
v = vz.Visualizer(Path(sys.argv[1]) / "other", html_page=False)
v.begin()
t = time.monotonic()
v.log_losses(1, 1, 1, {"G_GAN": 0.5, "D_fake": 0.1}, {})
first = time.monotonic() - t
t = time.monotonic()
v.log_losses(1, 2, 2, {"G_GAN": 0.5}, {})
v.close()
print(json.dumps([first, time.monotonic() - t, v.tensorboard, len(calls)]))
"""


@pytest.mark.fault(cls="interrupted run",
                   case="torch.utils.tensorboard-style writer (the fallback) stuck in add_scalar: the log "
                        "call returns within the bound, TensorBoard off with one note, exit does not wait")
def test_a_stuck_call_of_another_writer_class_is_given_up_on(tmp_path):
    p = _drive(OTHER_DRIVER, tmp_path, 60, "a stuck tensorboard writer call")
    first, stuck, tb, calls = json.loads(p.stdout.splitlines()[-1])
    assert 1.0 <= first < 4 and stuck < 0.5 and not tb and calls == 2, p.stdout
    notes = [line for line in p.stderr.splitlines() if "TensorBoard logging is off" in line]
    assert len(notes) == 1 and "TimeoutError: its writer thread made no progress for 1 s" in notes[0], p.stderr
    assert "TensorBoard logging is off" in (tmp_path / "other" / "loss_log.txt").read_text()

"""Synthesis stops (SIGTERM, an interrupted --overwrite, a dead loader worker) where a mutation
walkthrough found code no test held (pix2pixhd/engine.py, pix2pixhd/cli.py's start-up handlers):

* a job that finished without a signal does not call the caller's own SIGTERM handler (only a
  SIGTERM that came too late to stop the job is passed on to it);
* a stop does not send the half-filled batches of maps of one size: the run writes what it had
  sent when the signal came, and no more;
* the stop line counts the outputs of earlier runs of the job (a second stop in a row says how
  many of the job's outputs are complete, not only its own);
* --overwrite over an old synthesis.json that has no "complete" key (written before the state was
  recorded) marks it incomplete before the first file goes;
* a second signal while train_hd.py's start-up stop unwinds is ignored: one line, one status;
* a loader worker that dies in synthesis ends with synthesis's resume hint, not training's.

Tiny untrained checkpoint (tests/synthesis_runs.run), 16x24 maps. The signals are sent by the
process to itself from a generator's forward (or a patched os.write), the kill is an exception
raised at a chosen deletion, and the worker kills itself at a chosen input: nothing depends on
timing."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd import cli
from pix2pixhd.engine import SynthesisJob, run_synthesis
from pix2pixhd.synthesis import Synthesizer, load_generator
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_sigterm import group_killed_on_exit, run_env
from tests.test_synthesis_user_findings import _stopped_with_75, ids

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

REPO = Path(__file__).resolve().parents[1]


def _signalling(g):
    """``g``, whose first forward sends SIGTERM to this process (as `kill PID` would)."""
    calls = []

    def forward(x):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return g(x)
    return forward


def _job(out: Path) -> dict:
    return json.loads((out / "synthesis.json").read_text())


@pytest.mark.fault(cls="synthesis",
                   case="a Python caller's own SIGTERM handler around a job that finished without a "
                        "signal: not called (only a SIGTERM too late to stop the job is passed on)")
def test_a_job_without_a_signal_does_not_call_the_callers_sigterm_handler(run, tmp_path):
    ids(tmp_path / "maps" / "a.png")
    g, cfg = load_generator(run)
    heard = []

    def handler(signum, frame):
        heard.append(signum)
    before = signal.signal(signal.SIGTERM, handler)
    try:
        rep = run_synthesis(Synthesizer(g, cfg), SynthesisJob(out=tmp_path / "out", input=tmp_path / "maps",
                                                              workers=0, progress=False))
        assert signal.getsignal(signal.SIGTERM) is handler   # put back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert rep.written == 1
    assert heard == [], "the caller's SIGTERM handler was called after a job that no signal reached"


@pytest.mark.fault(cls="synthesis",
                   case="SIGTERM with maps of two sizes, batches of 2: the run writes the batch it sent, "
                        "not the other size's half-filled one")
def test_a_stop_does_not_send_the_half_filled_batches_of_other_sizes(run, tmp_path, capsys):
    """Maps alternate 16x24 and 16x32: m1 waits alone in the 16x32 batch when the first batch
    (m0, m2) is sent, and that forward signals. The stop promises the images in flight, no more."""
    for k in range(6):
        ids(tmp_path / "maps" / f"m{k}.png", w=24 if k % 2 == 0 else 32)
    g, cfg = load_generator(run)
    out = tmp_path / "out"
    job = SynthesisJob(out=out, input=tmp_path / "maps", batch_size=2, workers=0, progress=False)
    _stopped_with_75(lambda: run_synthesis(Synthesizer(_signalling(g), cfg), job))
    err = capsys.readouterr().err
    assert re.search(r"^stopped by SIGTERM after 2 image\(s\); rerun the same command to resume", err, re.M), err
    assert sorted(p.name for p in (out / "test_img").glob("*.png")) == ["m0.png", "m2.png"]


@pytest.mark.fault(cls="synthesis",
                   case="SIGTERM twice in a row (the rerun stopped too): the second stop line counts the "
                        "first run's outputs among the job's complete ones")
def test_the_stop_line_of_a_resumed_run_counts_the_earlier_outputs(run, tmp_path, capsys):
    for k in range(6):
        ids(tmp_path / "maps" / f"m{k}.png")
    g, cfg = load_generator(run)
    out = tmp_path / "out"
    job = SynthesisJob(out=out, input=tmp_path / "maps", batch_size=2, workers=0, progress=False)
    for complete in (2, 4):
        _stopped_with_75(lambda: run_synthesis(Synthesizer(_signalling(g), cfg), job))
        err = capsys.readouterr().err
        want = (f"stopped by SIGTERM after 2 image(s); rerun the same command to resume ({complete} of the "
                f"job's outputs are complete in {out})")
        assert want in err.splitlines(), err
        assert _job(out)["complete"] is False and _job(out)["n_written"] == complete
    rep = run_synthesis(Synthesizer(g, cfg), job)
    assert rep.written == 2 and rep.already_done == 4 and len(manifest(out)) == 6


@pytest.mark.fault(cls="synthesis",
                   case="a kill (Ctrl-C) while --overwrite removes a job's files whose synthesis.json has "
                        "no 'complete' key (written before it was recorded): marked incomplete first")
def test_overwrite_marks_an_old_synthesis_json_without_a_complete_key_incomplete(run, tmp_path, monkeypatch):
    for k in range(4):
        ids(tmp_path / "maps" / f"m{k}.png")
    out = tmp_path / "out"
    assert synth(run, tmp_path / "maps", out) == 0
    old = _job(out)
    del old["complete"]
    (out / "synthesis.json").write_text(json.dumps(old))
    unlink, pngs = Path.unlink, []

    def killed_at_the_3rd_png(self, *a, **k):   # 2 files (one output and its label map) removed
        if self.suffix == ".png" and out in self.parents:
            pngs.append(self)
            if len(pngs) == 3:
                raise KeyboardInterrupt
        return unlink(self, *a, **k)
    monkeypatch.setattr(Path, "unlink", killed_at_the_3rd_png)
    with pytest.raises(KeyboardInterrupt):
        synth(run, tmp_path / "maps", out, "--overwrite", "--seed", 7)
    monkeypatch.undo()
    assert len(list((out / "test_img").glob("*.png"))) + len(list((out / "test_label").glob("*.png"))) == 6
    job = _job(out)
    assert job.get("complete") is False, f"not marked incomplete before --overwrite's removals: {job}"
    assert job["seed"] == 0   # the old job's file, marked


@pytest.mark.fault(cls="interrupted run",
                   case="a {second} while train_hd.py's start-up stop (by SIGTERM) unwinds: ignored, one "
                        "line and status 75")
@pytest.mark.parametrize("second", ["SIGTERM", "SIGINT"])
def test_a_second_signal_while_the_startup_stop_unwinds_is_ignored(second, capfd, monkeypatch):
    """The second signal comes once the first's line is written (a scheduler's SIGTERM, then the
    user's Ctrl-C or the scheduler's next one): it neither writes a second line nor changes the
    status."""
    monkeypatch.delenv("RANK", raising=False)
    write, sent = os.write, []

    def write_signalled(fd, data):
        n = write(fd, data)
        if fd == 2 and not sent:
            sent.append(1)
            os.kill(os.getpid(), getattr(signal, second))   # its handler runs before os.kill returns
        return n
    monkeypatch.setattr(os, "write", write_signalled)
    with pytest.raises(SystemExit) as e:
        with cli._startup_signals(held=[signal.SIGTERM]):
            pytest.fail("the held SIGTERM did not end the start-up")
    monkeypatch.undo()
    err = capfd.readouterr().err
    assert sent and e.value.code == 75, (e.value.code, err)
    assert err.splitlines() == ["stopped by SIGTERM during start-up, before the first step: nothing to save; "
                                "rerun the same command"], err


# synthesize.py run as a script whose loader worker SIGKILLs itself (as the out-of-memory killer
# does) about to decode input K
K = 4
WORKER_KILLED = r"""
import os, runpy, signal, sys
from pix2pixhd import engine
K = int(sys.argv.pop(1))
get = engine.FolderSource.__getitem__
def getitem(self, i):
    if i == K:   # in a worker process
        os.kill(os.getpid(), signal.SIGKILL)
    return get(self, i)
engine.FolderSource.__getitem__ = getitem
sys.argv[0] = "synthesize.py"
runpy.run_path("synthesize.py", run_name="__main__")
"""


@pytest.mark.fault(cls="synthesis",
                   case="a loader worker SIGKILLed (the out-of-memory killer) with --workers 2: one line "
                        "with synthesis's resume hint (rerun the same command), not training's")
def test_a_dead_loader_worker_in_synthesis_gives_synthesis_resume_hint(run, tmp_path):
    maps = tmp_path / "maps"
    for k in range(12):
        ids(maps / f"m{k:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", WORKER_KILLED, str(K), "--checkpoint", str(run), "--input", str(maps),
           "--out", str(out), "--device", "cpu", "--no_progress", "--workers", "2", "--batch_size", "1",
           "--writers", "1"]
    env = run_env()
    env.pop("PIX2PIXHD_DEBUG", None)
    with group_killed_on_exit(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, start_new_session=True)) as p:
        _, err = p.communicate(timeout=120)
    assert p.returncode == 1, (p.returncode, err[-3000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: a data loader worker (pid "), err[-3000:]
    assert lines[0].endswith("; rerun the same command to resume the job"), lines[0]
    # killed by signal (the usual line), or exited (a worker killed while handing a batch over
    # surfaces as the socket's error, made the worker's: the test below)
    assert "memory? fewer --workers" in lines[0] and "--nThreads" not in lines[0], lines[0]
    assert "train_hd.py" not in err and "--resume" not in err, err[-3000:]
    assert synth(run, maps, out) == 0 and len(manifest(out)) == 12   # the rerun completes it


@pytest.mark.fault(cls="synthesis",
                   case="a loader worker killed while handing a batch over (the socket's ConnectionResetError "
                        "from the fetch): one line naming the dead worker, not the socket's traceback")
def test_a_dead_worker_seen_as_a_socket_error_in_synthesis_is_one_line(run, tmp_path, monkeypatch, capsys):
    """A worker SIGKILLed in the middle of handing a batch's shared memory over surfaces from the
    fetch as the socket's ConnectionResetError (torch re-raises it as it is when the worker was not
    yet reaped): the test above met it once in a fresh-clone CI run, as a traceback. Here the second
    fetch kills the workers and raises it (tests/test_trainer_output.py's workers_killed_at_fetch)."""
    from pix2pixhd.errors import run as run_cli
    from tests.test_trainer_output import workers_killed_at_fetch
    maps = tmp_path / "maps"
    for k in range(8):
        ids(maps / f"m{k:02d}.png")
    with workers_killed_at_fetch(monkeypatch, 2) as killed:
        status = run_cli(cli.synthesize_main, ["--checkpoint", str(run), "--input", str(maps), "--out",
                                               str(tmp_path / "out"), "--device", "cpu", "--no_progress",
                                               "--workers", "2", "--batch_size", "1", "--writers", "1"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert killed and status == 1 and lines == [
        f"error: a data loader worker (pid{'s' if len(killed) > 1 else ''} {', '.join(map(str, killed))}) exited "
        "unexpectedly (killed for memory? fewer --workers; --debug shows torch's traceback); rerun the same "
        "command to resume the job"], err[-3000:]

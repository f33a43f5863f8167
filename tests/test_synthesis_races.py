"""Three ways synthesize.py's folder could end up wrong after an interruption (pix2pixhd/engine.py):

* a kill during --overwrite's removals left the old job's synthesis.json saying complete over
  some of its files (`data scan` passed it): it is marked incomplete before the first file goes;
* a SIGTERM to the whole process group (GNU timeout, scancel, kill -- -PGID) killed the loader's
  workers and the run failed on a dead worker instead of stopping with status 75: they ignore it;
* a manifest part whose last line was cut short (a full disk, a power loss) swallowed the first
  line a resume appended: the completed job had a photo without a line.

Tiny untrained checkpoint (tests/synthesis_runs.run), 16x24 maps. The kill is an exception
raised at a chosen deletion, the signal is sent by a worker of the child run about to decode the
input the run waits for next, and the cut line is made by truncating the file: nothing depends on
timing."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd import engine
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.dataset import incomplete_synthesis
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_sigterm import group_killed_on_exit, run_env
from tests.test_synthesis_user_findings import ids

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

REPO = Path(__file__).resolve().parents[1]
N = 6


@pytest.fixture
def maps(tmp_path):
    for k in range(N):
        ids(tmp_path / "maps" / f"m{k}.png")
    return tmp_path / "maps"


def _job(out: Path) -> dict:
    return json.loads((out / "synthesis.json").read_text())


# ---- 1. a kill during --overwrite's removals -----------------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="a kill (Ctrl-C) while --overwrite removes a finished job's files: synthesis.json "
                        "says incomplete, `data scan` says so")
def test_a_kill_during_overwrite_leaves_a_folder_marked_incomplete(run, maps, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert synth(run, maps, out) == 0
    assert _job(out)["complete"] is True
    unlink, gone = Path.unlink, []

    def killed_at_the_5th_png(self, *a, **k):   # 4 files (2 outputs with their label maps) removed
        if self.suffix == ".png" and out in self.parents and len(gone) < 5:
            gone.append(self)
            if len(gone) == 5:
                raise KeyboardInterrupt
        return unlink(self, *a, **k)
    monkeypatch.setattr(Path, "unlink", killed_at_the_5th_png)
    with pytest.raises(KeyboardInterrupt):
        synth(run, maps, out, "--overwrite", "--seed", 7)
    monkeypatch.undo()
    n = len(list((out / "test_img").glob("*.png")))
    assert n == N - 2 and len(list((out / "test_label").glob("*.png"))) == N - 2
    job = _job(out)
    assert job["complete"] is False, f"synthesis.json still says complete over {n} of its {N} photos: {job}"
    assert job["seed"] == 0 and job["n_outputs"] == N   # the old job's file, marked
    said = incomplete_synthesis(out, "test")
    assert said is not None and f"holds an incomplete synthesis: {n} of {N} outputs in test_img/" in said
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 1
    assert "holds an incomplete synthesis" in capsys.readouterr().out
    # the --overwrite rerun replaces what is left
    assert synth(run, maps, out, "--overwrite", "--seed", 7) == 0
    assert _job(out)["complete"] is True and _job(out)["seed"] == 7 and len(manifest(out)) == N


# ---- 2. SIGTERM to the process group with loader workers -----------------------------------------------
# synthesize.py run as a script whose loader worker, about to decode input K (once the photo of
# input K-1 is written), sends SIGTERM to the whole process group (the run, both workers), as
# `timeout`, scancel or `kill -- -PGID` do. The run takes input K next, so a worker that dies of
# the signal is always one the run waits for; one that ignores it hands input K over, and the run
# stops there with K photos written.
K = 4
GROUP_SIGTERM = r"""
import os, runpy, signal, sys, time
from pathlib import Path
from pix2pixhd import engine
K, before = int(sys.argv.pop(1)), Path(sys.argv.pop(1))
get = engine.FolderSource.__getitem__
def getitem(self, i):
    if i == K:   # in a worker process
        t0 = time.monotonic()
        while not before.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        os.killpg(0, signal.SIGTERM)
    return get(self, i)
engine.FolderSource.__getitem__ = getitem
sys.argv[0] = "synthesize.py"
runpy.run_path("synthesize.py", run_name="__main__")
"""


@pytest.mark.fault(cls="synthesis",
                   case="SIGTERM to the whole process group (timeout, scancel) with --workers 2: the run "
                        "stops with status 75, no dead-worker error")
def test_sigterm_to_the_process_group_stops_a_run_with_workers(run, tmp_path):
    maps = tmp_path / "maps"
    for k in range(12):
        ids(maps / f"m{k:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", GROUP_SIGTERM, str(K), str(out / "test_img" / f"m{K - 1:02d}.png"),
           "--checkpoint", str(run), "--input", str(maps), "--out", str(out), "--device", "cpu", "--no_progress",
           "--workers", "2", "--batch_size", "1", "--writers", "1"]
    with group_killed_on_exit(subprocess.Popen(cmd, cwd=REPO, env=run_env(), stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, start_new_session=True)) as p:
        _, err = p.communicate(timeout=120)
    assert "data loader worker" not in err and "Traceback" not in err, err[-3000:]
    assert p.returncode == STOPPED_EXIT_STATUS, (p.returncode, err[-3000:])
    assert re.search(rf"^stopped by SIGTERM after {K} image\(s\); rerun the same command to resume", err, re.M), err
    assert _job(out)["complete"] is False
    assert synth(run, maps, out) == 0 and len(manifest(out)) == 12   # the rerun completes it


# synthesize.py run as a script whose writer fails at the 3rd label map (a full disk), --workers 2
WRITER_FAILS = r"""
import runpy, sys
from pix2pixhd import engine
write, labels = engine._write_atomic, []
def failing(path, *a, **k):
    if path.parent.name == "test_label":
        labels.append(path)
        if len(labels) == 3:
            raise OSError("simulated crash")
    return write(path, *a, **k)
engine._write_atomic = failing
sys.argv[0] = "synthesize.py"
runpy.run_path("synthesize.py", run_name="__main__")
"""


@pytest.mark.fault(cls="synthesis",
                   case="a writer error with --workers 2 (whose workers ignore SIGTERM): the process exits")
def test_a_run_with_workers_that_fails_exits(run, tmp_path):
    """Workers that ignore SIGTERM, left to interpreter exit (multiprocessing stops them with
    SIGTERM and joins them), kept a failed run from ever exiting: the error's traceback holds the
    loader. _stream shuts them down on every way out."""
    maps = tmp_path / "maps"
    for k in range(12):
        ids(maps / f"m{k:02d}.png")
    cmd = [sys.executable, "-c", WRITER_FAILS, "--checkpoint", str(run), "--input", str(maps), "--out",
           str(tmp_path / "out"), "--device", "cpu", "--no_progress", "--workers", "2", "--batch_size", "1",
           "--writers", "1"]
    with group_killed_on_exit(subprocess.Popen(cmd, cwd=REPO, env=run_env(), stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, start_new_session=True)) as p:
        try:
            _, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the failed run did not exit in 90 s: its loader workers were left running")
    assert p.returncode not in (0, STOPPED_EXIT_STATUS) and "simulated crash" in err, (p.returncode, err[-3000:])


# ---- 3. a manifest line cut short -------------------------------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="the last manifest line of a killed run cut short (full disk, power loss): the "
                        "resume's first line is not lost, every photo has its line")
def test_a_resume_after_a_cut_short_manifest_line_keeps_every_line(run, maps, tmp_path, monkeypatch):
    out = tmp_path / "out"
    write, labels = engine._write_atomic, []

    def crash_at_the_4th_label(path, *a, **k):   # a kill between outputs: 3 done, with their lines
        if path.parent.name == "test_label":
            if len(labels) >= 3:
                raise OSError("simulated crash")
            labels.append(path)
        return write(path, *a, **k)
    monkeypatch.setattr(engine, "_write_atomic", crash_at_the_4th_label)
    with pytest.raises(OSError, match="simulated crash"):
        synth(run, maps, out, "--batch_size", 1, "--writers", 1)
    monkeypatch.undo()
    part = out / "manifest.parts" / "rank00000.jsonl"   # the file a resume appends to
    assert not (out / "manifest.jsonl").exists()
    data = part.read_bytes()
    assert data.count(b"\n") == 3 and data.endswith(b"\n")
    part.write_bytes(data[:-20])   # the 3rd line cut short: no newline at the end
    assert synth(run, maps, out, "--batch_size", 1, "--writers", 1) == 0
    job = _job(out)
    assert job["complete"] is True and job["n_written"] == N
    photos = sorted(f"test_img/{p.name}" for p in (out / "test_img").glob("*.png"))
    lines = sorted(r["output"] for r in manifest(out) if r["status"] == "ok")
    assert len(photos) == N and lines == photos, f"{len(photos)} photos, manifest lines for {lines}"

"""synthesize.py under torchrun (pix2pixhd/engine.py), found by a data-engine walkthrough:

* on a rerun each rank checks only its share of the outputs (every world-th input) and the
  ranks exchange what is still to do: every rank stat'ed every output, its partners and its
  inputs (world times the metadata operations on a shared file system), then kept its shard;
  the outputs and synthesis.json's counts are still those of a one-process run;
* SIGTERM to torchrun mid-job stops every rank with one line each (no rank's traceback: a
  decoding worker printed a ConnectionResetError's when its rank died while fetching a batch),
  and no decoding worker outlives its rank (four stayed orphaned for seconds).

Two gloo ranks on CPU, started by torchrun in a subprocess with a timeout; its workers are
scripts written by the tests (torchrun runs a file), which patch an engine function to count
(or to slow) and then run synthesize.py's command. Tiny untrained checkpoint, 16x16 maps.
"""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_distributed import REPO, torchrun_cmd, torchrun_env

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

TIMEOUT = 240

# counts the outputs each rank checks on disk (engine._size_on_disk: an output, then its partners)
COUNTING = r"""
import json, os, sys
from pathlib import Path
from pix2pixhd import engine
checked, size_on_disk = [], engine._size_on_disk
def counted(path):
    checked.append(str(path))
    return size_on_disk(path)
engine._size_on_disk = counted
from pix2pixhd.launch import synthesize
try:
    status = synthesize(sys.argv[2:])
finally:
    Path(sys.argv[1], f"checked{os.environ['RANK']}.json").write_text(json.dumps(checked))
sys.exit(status)
"""

# each output written a fifth of a second late: the job is still running when the test signals it
SLOW_WRITES = r"""
import time
from pix2pixhd import engine
write = engine._write_unit
def slow(*a, **kw):
    time.sleep(0.2)
    return write(*a, **kw)
engine._write_unit = slow
"""
SLOW = "import sys\n" + SLOW_WRITES + "from pix2pixhd.launch import synthesize\nsys.exit(synthesize(sys.argv[1:]))\n"


def _maps(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(((np.arange(256).reshape(16, 16) + i) % 5).astype(np.uint8)).save(folder / f"m{i:03d}.png")
    return folder


def _images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _counts(out: Path) -> dict:
    job = json.loads((out / "synthesis.json").read_text())
    return {k: job.get(k) for k in ("complete", "n_inputs", "n_outputs", "n_written", "n_skipped")}


@pytest.mark.fault(cls="synthesis",
                   case="a torchrun rerun after a partial run: each rank checks only its share of the outputs, "
                        "the ranks exchange what is to do, and the job ends as a one-process run's")
def test_each_rank_checks_only_its_share_of_a_rerun_and_the_job_ends_as_one_process_ends_it(run, tmp_path):
    maps, out, one = _maps(tmp_path / "maps", 10), tmp_path / "out", tmp_path / "one"
    assert synth(run, maps, one) == 0
    assert synth(run, maps, out, "--how_many", 6) == 0   # the partial run: 6 of the 10 complete
    script, logs = tmp_path / "counting.py", tmp_path / "logs"
    script.write_text(COUNTING)
    logs.mkdir()
    cmd = torchrun_cmd(script, str(logs), "--checkpoint", str(run), "--input", str(maps), "--out", str(out),
                       "--device", "cpu", "--no_progress", "--workers", "0")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env=torchrun_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "wrote 4 images" in p.stdout and "6 already complete" in p.stdout, p.stdout

    checked = [{Path(f).name for f in json.loads((logs / f"checked{r}.json").read_text())
                if Path(f).parent.name == "test_img"} for r in (0, 1)]
    complete = {f"m{i:03d}.png" for i in range(6)}
    assert len(checked[0]) == len(checked[1]) == 3, \
        f"each rank should check its half of the 6 complete outputs: rank 0 checked {sorted(checked[0])}, " \
        f"rank 1 {sorted(checked[1])}"
    assert checked[0].isdisjoint(checked[1]) and checked[0] | checked[1] == complete, checked

    assert _images(out / "test_img") == _images(one / "test_img")   # byte-identical to one process
    assert _images(out / "test_label") == _images(one / "test_label")
    strip = lambda r: {k: v for k, v in r.items() if k != "rank"}  # noqa: E731
    assert [strip(r) for r in manifest(out)] == [strip(r) for r in manifest(one)]
    assert _counts(out) == _counts(one) and _counts(out)["complete"] is True, (_counts(out), _counts(one))


def _survivors(marker: str) -> list[str]:
    """The processes (pid and command) whose command line holds ``marker``: the ranks and their
    forked decoding workers, whose command line is their rank's."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                line = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in line:
                found.append(f"{d.name}: {line[:200]}")
    return found


@pytest.mark.fault(cls="synthesis",
                   case="SIGTERM to torchrun mid-job (two CPU ranks, DataLoader workers): one line per rank, "
                        "no traceback, no decoding worker outlives its rank")
def test_sigterm_to_torchrun_stops_every_rank_in_one_line_and_leaves_no_worker(run, tmp_path):
    maps, out = _maps(tmp_path / "maps", 100), tmp_path / "out"
    script = tmp_path / "slow_synthesis.py"
    script.write_text(SLOW)
    cmd = torchrun_cmd(script, "--checkpoint", str(run), "--input", str(maps), "--out", str(out),
                       "--device", "cpu", "--no_progress", "--workers", "1", "--writers", "1",
                       "--batch_size", "1")
    log = tmp_path / "torchrun.log"   # a file, not a pipe: a pipe's end waits for the orphans holding it
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=REPO, env=torchrun_env(), stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        parts = [out / "manifest.parts" / f"rank{r:05d}.jsonl" for r in (0, 1)]
        deadline = time.monotonic() + TIMEOUT
        while p.poll() is None and time.monotonic() < deadline:   # both ranks have written (50 each to go)
            if all(f.is_file() and f.read_text().count("\n") >= 2 for f in parts):
                break
            time.sleep(0.01)
        assert p.poll() is None, "the job ended before it could be signalled:\n" + log.read_text()[-5000:]
        p.terminate()   # SIGTERM to torchrun, which passes it on to its ranks
        p.wait(timeout=TIMEOUT)
        left = _survivors(str(script))   # torchrun has ended: its ranks have, and nothing of theirs may run on
        said = log.read_text()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
        for line in _survivors(str(script)):   # never left behind, whatever the test found
            os.kill(int(line.split(":")[0]), 9)
    assert not left, "decoding workers outlived their ranks:\n" + "\n".join(left)
    stops = re.findall(r"^stopped by SIGTERM \(rank (\d) of 2\) after \d+ image\(s\); rerun the same command to "
                       r"resume", said, re.M)
    assert sorted(stops) == ["0", "1"], f"one line per rank expected:\n{said[-6000:]}"
    # a rank's traceback (torch prefixes its lines with [rankN]:); torchrun's own SignalException is its own
    assert "[rank" not in said and "ConnectionResetError" not in said, said[-6000:]
    job = json.loads((out / "synthesis.json").read_text())
    assert job["complete"] is False and (out / "manifest.parts").is_dir(), job   # the rerun resumes

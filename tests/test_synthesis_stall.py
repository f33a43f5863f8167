"""A synthesis whose decoding worker hands over nothing (pix2pixhd/engine.py ``_stream``): the
fetch waits at most the process-group timeout (PIX2PIXHD_DIST_TIMEOUT_S), then the job stops with
one line naming the input the worker held, and a rerun resumes. torch's DataLoader waited for ever
on a worker that was alive; under torchrun the other ranks then waited silently in a collective
(a two-rank synthesis in CI, 2026-12-08). And the workers are forked while the process runs no
thread of its own: ``tqdm(disable=True)`` started tqdm's monitor thread just before the fork.

Checkpoints are tiny untrained generators (``save_run``)."""
import threading
import time

import pytest

from pix2pixhd import engine
from pix2pixhd.cli import synthesize_main
from pix2pixhd.data import loader as loader_module
from pix2pixhd.errors import UserError
from tests.test_synthesis_engine import run, streets  # noqa: F401  (module fixtures: 7 maps, a tiny generator)


def args(run, streets, out, workers=1):
    return ["--checkpoint", str(run), "--input", str(streets / "test_label"), "--inst", str(streets / "test_inst"),
            "--out", str(out), "--device", "cpu", "--no_progress", "--workers", str(workers), "--batch_size", "1"]


@pytest.mark.fault(cls="synthesis", case="a decoding worker that hands over nothing: stopped at the limit, naming its input")
def test_a_stalled_worker_stops_the_job_at_the_limit_naming_the_input_and_a_rerun_resumes(run, streets, tmp_path,
                                                                                          monkeypatch):
    stall = tmp_path / "stall"   # the worker (a fork of this process) sleeps on test_00002 while this file exists
    stall.touch()
    getitem = engine.FolderSource.__getitem__

    def stalls(self, i):
        if stall.exists() and self.stems[i] == "test_00002":
            time.sleep(120)
        return getitem(self, i)

    monkeypatch.setattr(engine.FolderSource, "__getitem__", stalls)
    monkeypatch.setenv("PIX2PIXHD_DIST_TIMEOUT_S", "3")
    out = tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(UserError) as e:
        synthesize_main(args(run, streets, out))
    said = str(e.value)
    assert time.monotonic() - t0 < 60   # the limit (3 s) and the worker's shutdown, not the 120 s sleep
    assert said.startswith("the decoding worker (--workers 1) handed over no input for 3 s (the next input: ")
    assert "test_00002.png" in said and "Rerun the same command to resume" in said
    assert "PIX2PIXHD_DIST_TIMEOUT_S sets the limit" in said
    assert sorted(p.name for p in (out / "test_img").iterdir()) == ["test_00000.png", "test_00001.png"]
    stall.unlink()
    assert synthesize_main(args(run, streets, out)) == 0
    assert len(list((out / "test_img").iterdir())) == 7


def test_the_workers_are_forked_while_the_process_runs_no_thread_of_its_own(run, streets, tmp_path, monkeypatch):
    seen = []
    get_iterator = loader_module._StopsIgnoringLoader._get_iterator

    def forks(self):
        seen.append({t.ident: t.name for t in threading.enumerate()})
        return get_iterator(self)

    monkeypatch.setattr(loader_module._StopsIgnoringLoader, "_get_iterator", forks)
    from tqdm import tqdm
    if tqdm.monitor is not None:   # one an earlier test's bar started would stand for a new one
        tqdm.monitor.exit()
        tqdm.monitor = None
    before = {t.ident for t in threading.enumerate()}   # the test process's own (pytest's...)
    assert synthesize_main(args(run, streets, tmp_path / "out")) == 0
    assert len(seen) == 1
    assert [name for ident, name in seen[0].items() if ident not in before] == []   # was ['tqdm_monitor']

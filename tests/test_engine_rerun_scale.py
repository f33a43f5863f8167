"""Reruns of synthesize.py's data engine (pix2pixhd/engine.py) at scale, found by a walkthrough at
50k outputs; each one is cheap here, on a few 16x16 maps:

* a rerun of a complete job leaves its synthesis.json saying complete until it finds work (a
  no-op rerun took seconds to minutes to find none, and meanwhile training and `data scan`
  refused the finished dataset; killed then, it left it so); a job with work still says
  incomplete while it runs;
* a rerun that wrote nothing keeps manifest.jsonl as it is (it re-merged and rewrote it, with an
  fsync, in time that grows with the job); one with lines to merge still merges;
* an --input folder with images at the top level and in sub-folders names the sub-folders
  holding images in its note (their images are not synthesized).

Checkpoints are tiny untrained generators (``save_run``); "mid-way" is a patched engine function
that records (or raises) when the run reaches it, so nothing depends on timing.
"""
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd import engine
from pix2pixhd.data.dataset import incomplete_synthesis
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")

OLD = 1_000_000_000 * 10**9   # a manifest mtime (2001) no run's rewrite keeps


def _maps(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(((np.arange(256).reshape(16, 16) + i) % 5).astype(np.uint8)).save(folder / f"m{i}.png")
    return folder


def _complete(out: Path):
    return json.loads((out / "synthesis.json").read_text())["complete"]


class _Killed(BaseException):
    """A kill at the patched point (not an Exception: nothing on the way handles it)."""


def sigterm_in(monkeypatch, name: str) -> None:
    """engine.NAME sends this process a SIGTERM (a scheduler's) as it is called, then runs."""
    real = getattr(engine, name)

    def signalled(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)
    monkeypatch.setattr(engine, name, signalled)


def _watch(monkeypatch, out: Path, names=("_complete_lines", "_stream"), kill: str | None = None) -> list:
    """Patch engine functions the run calls after its preparation: each records what training
    and `data scan` would see at that moment (incomplete_synthesis's line, synthesis.json's
    "complete"), then raises _Killed when it is ``kill``."""
    seen = []
    for name in names:
        def watched(*a, _name=name, _f=getattr(engine, name), **kw):
            seen.append((_name, incomplete_synthesis(out, "test"), _complete(out)))
            if _name == kill:
                raise _Killed
            return _f(*a, **kw)
        monkeypatch.setattr(engine, name, watched)
    return seen


@pytest.mark.fault(cls="synthesis",
                   case="a complete job rerun (nothing to do): synthesis.json says complete throughout the rerun")
def test_a_complete_jobs_rerun_leaves_it_complete_while_it_runs(run, tmp_path, monkeypatch):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0 and _complete(out) is True
    seen = _watch(monkeypatch, out)
    assert synth(run, maps, out) == 0
    assert seen == [("_complete_lines", None, True), ("_stream", None, True)], \
        f"a no-op rerun marked the finished dataset incomplete while it ran: {seen}"
    assert _complete(out) is True and incomplete_synthesis(out, "test") is None


@pytest.mark.fault(cls="synthesis",
                   case="a complete job rerun (nothing to do) killed while it looks for work: the dataset stays "
                        "complete")
def test_a_complete_jobs_rerun_killed_mid_way_leaves_it_complete(run, tmp_path, monkeypatch):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0
    before = (out / "synthesis.json").read_bytes()
    _watch(monkeypatch, out, kill="_complete_lines")   # killed while it looks for work
    with pytest.raises(_Killed):
        synth(run, maps, out)
    assert incomplete_synthesis(out, "test") is None and _complete(out) is True, \
        f"a killed no-op rerun left the finished dataset incomplete: {incomplete_synthesis(out, 'test')}"
    assert (out / "synthesis.json").read_bytes() == before


@pytest.mark.fault(cls="synthesis",
                   case="a complete job rerun (nothing to do) stopped by SIGTERM (a requeue): status 75, the "
                        "dataset stays complete")
def test_a_complete_jobs_rerun_stopped_by_sigterm_leaves_it_complete(run, tmp_path, monkeypatch):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0
    sigterm_in(monkeypatch, "_complete_lines")   # a scheduler's SIGTERM while the rerun looks for work
    with pytest.raises(SystemExit) as e:
        synth(run, maps, out)
    assert e.value.code == 75
    assert incomplete_synthesis(out, "test") is None and _complete(out) is True, \
        f"a stopped no-op rerun left the finished dataset incomplete: {incomplete_synthesis(out, 'test')}"
    monkeypatch.undo()
    assert synth(run, maps, out) == 0 and not (out / "manifest.parts").exists() and len(manifest(out)) == 3


@pytest.mark.fault(cls="synthesis",
                   case="a job with work (new, or a complete job with an output lost): synthesis.json says "
                        "incomplete while it synthesizes, and after a kill then")
def test_a_job_with_work_marks_itself_incomplete_while_it_runs(run, tmp_path, monkeypatch):
    """What must not change: outputs are written only under a synthesis.json that says the job
    has not finished (a new job from its start; a complete job's rerun once it finds work)."""
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    seen = _watch(monkeypatch, out, names=("_stream",))
    assert synth(run, maps, out) == 0
    assert [s[2] for s in seen] == [False] and seen[0][1] is not None
    assert _complete(out) is True
    monkeypatch.undo()

    (out / "test_img" / "m1.png").unlink()   # a complete job with one output lost: work
    seen = _watch(monkeypatch, out, names=("_stream",), kill="_stream")
    with pytest.raises(_Killed):
        synth(run, maps, out)
    assert [s[2] for s in seen] == [False] and "0 of 3" not in seen[0][1] and "2 of 3" in seen[0][1]
    assert _complete(out) is False   # killed with work left: incomplete, as before
    monkeypatch.undo()
    assert synth(run, maps, out) == 0 and _complete(out) is True and (out / "test_img" / "m1.png").is_file()


@pytest.mark.fault(cls="synthesis",
                   case="a rerun with nothing to do keeps manifest.jsonl as it is (no re-merge, no rewrite)")
def test_a_no_op_rerun_keeps_the_manifest_as_it_is(run, tmp_path):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0
    path = out / "manifest.jsonl"
    os.utime(path, ns=(OLD, OLD))
    data = path.read_bytes()
    assert synth(run, maps, out) == 0
    assert path.stat().st_mtime_ns == OLD, "a rerun with nothing to do rewrote manifest.jsonl"
    assert path.read_bytes() == data and len(manifest(out)) == 3
    assert not (out / "manifest.parts").exists()   # its empty part removed, as a merge does


@pytest.mark.fault(cls="synthesis",
                   case="a rerun that wrote an output, or that finds a killed run's manifest part, still merges")
def test_a_rerun_with_lines_to_merge_still_merges(run, tmp_path):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0
    path = out / "manifest.jsonl"
    lines = path.read_text().splitlines()

    (out / "test_img" / "m2.png").unlink()   # redone: its new line merged
    os.utime(path, ns=(OLD, OLD))
    assert synth(run, maps, out) == 0
    assert path.stat().st_mtime_ns != OLD and len(manifest(out)) == 3
    assert not (out / "manifest.parts").exists()

    # a run killed after its last output, before the merge: nothing to do, its part merged
    path.write_text("\n".join(lines[:2]) + "\n")
    (out / "manifest.parts").mkdir()
    (out / "manifest.parts" / "rank00001.jsonl").write_text(lines[2] + "\n")
    os.utime(path, ns=(OLD, OLD))
    assert synth(run, maps, out) == 0
    assert path.stat().st_mtime_ns != OLD and [r["output"] for r in manifest(out)] == \
        [f"test_img/m{i}.png" for i in range(3)]
    assert not (out / "manifest.parts").exists()


@pytest.mark.fault(cls="synthesis",
                   case="--input with images at the top level and in sub-folders: the note names the "
                        "sub-folders holding images")
def test_the_note_names_sub_folders_holding_images(run, tmp_path, capsys):
    maps, out = _maps(tmp_path / "maps", 1), tmp_path / "out"
    _maps(maps / "sub1", 1)
    (maps / "sub2").mkdir()
    (maps / "sub2" / "readme.txt").write_text("no images here")
    (maps / ".DS_Store").write_text("x")
    assert synth(run, maps, out) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "not images" in ln]
    assert len(notes) == 1 and notes[0].startswith(
        "note: 3 entr(y/ies) of the input are not images and are not used, e.g. .DS_Store"), notes
    assert notes[0].endswith(
        f"; sub-folders holding images are not searched: sub1/ (their images are not synthesized: move them "
        f"up into maps/, or synthesize each sub-folder (--input {maps / 'sub1'} with an --out of its own))"), \
        f"the note does not name the sub-folder holding images: {notes[0]}"
    assert "sub2/" not in notes[0].split("sub-folders holding images")[1]
    assert [r["output"] for r in manifest(out)] == ["test_img/m0.png"]

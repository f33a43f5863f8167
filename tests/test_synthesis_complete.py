"""A synthesis job's state in synthesis.json (complete or not) and what `data scan` and training
say about a folder whose job did not finish; the job's identity counts the checkpoint by its
sha256, not its path. Tiny untrained checkpoint (tests/synthesis_runs.run), 32x32 maps."""
import hashlib
import json
import os
import shutil
import signal

import pytest

from pix2pixhd import engine
from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.errors import InputError
from pix2pixhd.synthesis import png_bytes
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_synthesis_engine import save_run
from tests.test_synthesis_user_findings import ids

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

N = 8


@pytest.fixture
def maps(tmp_path):
    for k in range(N):
        ids(tmp_path / "maps" / f"m{k}.png", h=32, w=32)
    return tmp_path / "maps"


def _job(out):
    return json.loads((out / "synthesis.json").read_text())


def _photos(out):
    return len(list((out / "test_img").glob("*.png")))


def _crash_after(monkeypatch, n):
    """The writers fail at the label map of output ``n`` + 1 (a crash mid-job, between outputs,
    as a kill leaves it)."""
    labels = []
    write = engine._write_atomic

    def failing(path, *a, **k):
        if path.parent.name == "test_label":
            if len(labels) >= n:
                raise OSError("simulated crash")
            labels.append(path)
        return write(path, *a, **k)
    monkeypatch.setattr(engine, "_write_atomic", failing)


def test_a_crashed_synthesis_is_incomplete_scan_and_training_say_so_and_a_resume_completes_it(
        run, maps, tmp_path, monkeypatch, capsys):
    """A killed job's folder held the files of a finished one and `data scan` said `no problems`."""
    out = tmp_path / "out"
    _crash_after(monkeypatch, 3)
    with pytest.raises(OSError, match="simulated crash"):
        synth(run, maps, out, "--batch_size", 1, "--writers", 1)
    monkeypatch.undo()
    job = _job(out)
    assert job["complete"] is False and job["n_inputs"] == N and job["n_outputs"] == N, job
    n = _photos(out)
    assert 0 < n < N
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 1
    said = capsys.readouterr().out
    assert f"{out} holds an incomplete synthesis: {n} of {N} outputs in test_img/" in said, said
    assert "rerunning the synthesize.py command that wrote it" in said and "no problems" not in said, said
    # training refuses it in one line, with the fixes; --validate off trains on it as it is
    with pytest.raises(DatasetError, match=r"incomplete synthesis: \d of 8 outputs .* pass --validate off") as e:
        create_dataset(out, "test", label_nc=5, no_instance=True, is_train=True, validate="headers")
    assert "\n" not in str(e.value)
    create_dataset(out, "test", label_nc=5, no_instance=True, is_train=True, validate="off")
    # another reader (evaluation, synthesis from it) is told, not refused
    create_dataset(out, "test", label_nc=5, no_instance=True, is_train=False, validate="headers")
    assert "note: " in capsys.readouterr().err
    # the same command resumes it, and the finished job is marked complete
    assert synth(run, maps, out, "--batch_size", 1, "--writers", 1) == 0
    job = _job(out)
    assert job["complete"] is True and job["n_written"] == N and job["n_skipped"] == 0, job
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_a_sigterm_stop_records_the_count_and_the_command_that_resumes_it(run, maps, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["synthesize.py", "--checkpoint", str(run), "--input", str(maps), "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    calls = []

    def stopping(a):   # SIGTERM while the third photo is encoded
        calls.append(a.ndim)
        if calls.count(3) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return png_bytes(a)
    monkeypatch.setattr(engine, "png_bytes", stopping)
    with pytest.raises(SystemExit) as e:
        synth(run, maps, out, "--batch_size", 1, "--writers", 1)
    assert e.value.code == 75
    job = _job(out)
    assert job["complete"] is False and job["n_written"] == _photos(out) < N, job
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 1
    said = capsys.readouterr().out
    assert f"complete it with `cd {os.getcwd()} && " in said and "synthesize.py --checkpoint" in said, said


def test_a_folder_written_before_the_state_was_recorded_scans_clean(run, maps, tmp_path, capsys):
    out = tmp_path / "out"
    assert synth(run, maps, out, "--how_many", 2) == 0
    job = {k: v for k, v in _job(out).items() if k not in engine._STATE_KEYS}
    (out / "synthesis.json").write_text(json.dumps(job))
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_a_byte_identical_checkpoint_elsewhere_resumes_the_job(run, maps, tmp_path, capsys):
    """A moved run folder, or epoch_0003.pt identical to latest.pt, was refused as another
    synthesis (`checkpoint: '.../ck/r1/latest.pt' then, '.../moved/r1/latest.pt' now`)."""
    out = tmp_path / "out"
    assert synth(run, maps, out, "--how_many", 3) == 0
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    capsys.readouterr()
    assert synth(moved, maps, out, "--how_many", 3) == 0
    said = capsys.readouterr()
    assert "wrote 0 images" in said.out and "3 already complete" in said.out, said.out
    assert "has the same sha256: resuming the job with it" in said.err, said.err
    assert _job(out)["checkpoint"] == str((moved / "latest.pt").resolve())   # recorded, for information
    shutil.copy(moved / "latest.pt", moved / "epoch_0003.pt")
    assert synth(moved / "epoch_0003.pt", maps, out, "--how_many", 3) == 0
    assert "3 already complete" in capsys.readouterr().out
    other = tmp_path / "other"
    save_run(other, seed=1, label_nc=5, no_instance=True)   # other weights: another job
    with pytest.raises(InputError, match=r"another synthesis \(checkpoint: .*checkpoint_sha256: "):
        synth(other, maps, out, "--how_many", 3)


def test_an_older_synthesis_json_with_the_path_in_its_digest_resumes_from_a_moved_checkpoint(run, maps, tmp_path, capsys):
    """synthesis.json and manifest lines as the previous version wrote them (the checkpoint's path
    in the digest, no state): resumed with the checkpoint moved, its lines kept."""
    out = tmp_path / "out"
    assert synth(run, maps, out, "--how_many", 3) == 0
    old = {k: v for k, v in _job(out).items() if k not in engine._STATE_KEYS and k != "digest"}
    old["digest"] = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    (out / "synthesis.json").write_text(json.dumps(old))
    lines = [dict(r, job=old["digest"]) for r in manifest(out)]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 0   # no state recorded: nothing to say
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    capsys.readouterr()
    assert synth(moved, maps, out, "--how_many", 4) == 0
    said = capsys.readouterr()
    assert "wrote 1 images" in said.out and "3 already complete" in said.out, said.out
    assert len(manifest(out)) == 4 and _job(out)["complete"] is True
    assert _job(out)["older_digests"] == [old["digest"]]   # its lines count on every later run
    assert synth(moved, maps, out, "--how_many", 4) == 0
    assert "wrote 0 images" in capsys.readouterr().out and len(manifest(out)) == 4

"""A folder that synthesize.py before b6b4a2e marked complete on a rerun with a smaller --how_many
(synthesis.json: complete, n_inputs and n_outputs of the first N inputs only, while the manifest
holds more of the job's outputs). Tiny untrained checkpoint (tests/synthesis_runs.run), 32x32 maps."""
import json

import pytest

from pix2pixhd import engine
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_engine_findings import _job, _maps
from tests.test_synthesis_complete import _crash_after

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _old_how_many_rerun(out, n):
    """What the older engine's rerun with --how_many ``n`` left after a killed run: the parts
    merged into manifest.jsonl (lines without label_bytes/inst_bytes, which it did not write)
    and a state that counts the first ``n`` inputs only, marked complete."""
    job = _job(out)
    engine.merge_manifest(out, job["digest"])
    lines = [{k: v for k, v in r.items() if k not in ("label_bytes", "inst_bytes")} for r in manifest(out)]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))
    job.update(complete=True, n_inputs=n, n_outputs=n, n_written=n, n_skipped=0)
    (out / "synthesis.json").write_text(json.dumps(job, indent=1, sort_keys=True))


def _marked_complete_too_early(run, tmp_path, monkeypatch):
    """A job of 8 maps killed after 5 outputs, then marked complete by an older rerun with
    --how_many 2: (maps folder, output folder)."""
    maps, out = _maps(tmp_path / "maps", 8), tmp_path / "out"
    _crash_after(monkeypatch, 5)
    with pytest.raises(OSError, match="simulated crash"):
        synth(run, maps, out, "--batch_size", 1, "--writers", 1)
    monkeypatch.undo()
    _old_how_many_rerun(out, 2)
    return maps, out


def test_a_folder_an_older_smaller_how_many_marked_complete_is_completed_with_a_note(
        run, tmp_path, monkeypatch, capsys):
    maps, out = _marked_complete_too_early(run, tmp_path, monkeypatch)
    assert len(manifest(out)) == 5
    capsys.readouterr()
    assert synth(run, maps, out) == 0
    said = capsys.readouterr()
    note = (f"note: {out / 'synthesis.json'} marked this job complete with 2 output(s), but 5 of its "
            f"outputs are in {out} and 3 are not: an older synthesize.py rerun with a smaller --how_many "
            "marked the partial folder complete; synthesizing the missing outputs")
    assert said.err.count(note) == 1, said.err
    assert "wrote 3 images" in said.out and "5 already complete" in said.out, said.out
    job = _job(out)
    assert job["complete"] is True and job["n_inputs"] == 8 and job["n_outputs"] == 8, job
    assert len(manifest(out)) == 8 and len(list((out / "test_img").iterdir())) == 8


def test_no_note_when_a_complete_folder_is_extended_or_already_holds_every_output(run, tmp_path, capsys):
    """A --how_many job extended by a rerun without it (its outputs are not more than its
    synthesis.json counted), and inputs removed and put back (nothing left to do): no note."""
    maps, out = _maps(tmp_path / "maps", 4), tmp_path / "out"
    assert synth(run, maps, out, "--how_many", 2) == 0
    assert synth(run, maps, out) == 0
    for k in (2, 3):
        (maps / f"m{k}.png").rename(tmp_path / f"m{k}.png")
    assert synth(run, maps, out) == 0
    assert _job(out)["n_outputs"] == 2 and len(manifest(out)) == 4
    for k in (2, 3):
        (tmp_path / f"m{k}.png").rename(maps / f"m{k}.png")
    assert synth(run, maps, out) == 0
    said = capsys.readouterr()
    assert "marked this job complete" not in said.err, said.err
    assert _job(out)["n_outputs"] == 4


def test_scan_and_training_refuse_a_folder_an_older_smaller_how_many_marked_complete(run, tmp_path, monkeypatch):
    """incomplete_synthesis (data scan, create_dataset) counts the manifest's finished outputs
    whose files and inputs are still there against synthesis.json's n_outputs."""
    from pix2pixhd.data.dataset import DatasetError, create_dataset, incomplete_synthesis
    maps, out = _marked_complete_too_early(run, tmp_path, monkeypatch)
    said = incomplete_synthesis(out, "test")
    assert said and "marks the job complete with 2 outputs" in said and "lists 5 finished outputs" in said, said
    assert "without --how_many" in said
    with pytest.raises(DatasetError, match="lists 5 finished outputs"):
        create_dataset(out, "test", label_nc=5, no_instance=True, is_train=True, resize_or_crop="none")
    assert synth(run, maps, out) == 0   # the rerun completes it
    assert incomplete_synthesis(out, "test") is None


def test_scan_takes_a_complete_folder_whose_removed_inputs_left_lines(run, tmp_path):
    """Lines of inputs removed since (the job shrank) are not finished outputs of the job."""
    from pix2pixhd.data.dataset import incomplete_synthesis
    maps, out = _maps(tmp_path / "maps", 4), tmp_path / "out"
    assert synth(run, maps, out) == 0
    assert incomplete_synthesis(out, "test") is None
    for k in (2, 3):
        (maps / f"m{k}.png").unlink()
    assert synth(run, maps, out) == 0
    assert _job(out)["n_outputs"] == 2 and len(manifest(out)) == 4
    assert incomplete_synthesis(out, "test") is None

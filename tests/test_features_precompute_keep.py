"""``python -m pix2pixhd.features precompute``'s progress file after a ``--how_many`` run, and the
stop lines of both commands once the progress file there is judged (review FX43), each shown
failing on the code before its fix:

1. a ``precompute --how_many N`` that finished (N below the split's size) left no progress file, so
   a later larger run (``--how_many 2N`` or 0) encoded the first N maps again; one stopped after
   its last map removed the file too;
2. one whose ``--how_many`` equalled a larger earlier run's count removed that file when it
   finished, so a later full run rewrote those maps;
3. with such a file kept, the missing maps' note of a ``--load_features`` run said "an interrupted
   precompute left ...: rerun the same precompute command to finish it", which writes nothing;
4. precompute stamped every input before it checked that the maps' folder could be written;
5. docs/features.md did not say that a chmod, chown or new hard link makes a rerun start over;
6. a stop after ``_load_progress`` returned, before the run took its file in, got a line that did
   not say whether a rerun continues (encode: "it reads PROGRESS and continues from it if it is
   this run's"; precompute: main's "nothing written; rerun the same command").

A tiny untrained E on 7 synthetic 64x32 scenes, read in the main process (nThreads 0), from
tests/features_runs.py: E is wrapped to count the images it encodes and to raise KeyboardInterrupt
(a kill's stand-in: nothing is written at it) before a given image; stops are raised at a given
call through main's handler: nothing depends on timing."""
import re
import signal
from pathlib import Path

import pytest
import torch

import pix2pixhd.features as features
from pix2pixhd.data.layouts import PartnerMessage, missing_feat_note
from pix2pixhd.errors import InputError
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import N, maps, progress_count
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _killed_after_4(folder, out, counted) -> Path:
    """precompute into ``out`` (batches of 1, progress every map) killed before map 5: its
    progress file, counting 4."""
    counted(stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1)
    progress = out.parent / f".{out.name}.progress"
    assert progress_count(progress) == 4
    return progress


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute --how_many 3 of 7 runs through (default --progress_every): its "
                        "progress file counts the 3 maps, a rerun with --how_many 5 encodes only 2, one without "
                        "--how_many the last 2, and removes it; with --progress_every 0 none is written")
def test_a_finished_how_many_leaves_its_count_for_a_larger_run(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=4)
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, batch_size=2, how_many=3)
    assert sum(sizes) == 3
    assert progress.exists(), "the finished --how_many 3 run left no progress file: a larger run redoes its maps"
    d = torch.load(progress, map_location="cpu", weights_only=True)
    assert (d["count"], d["asked"]) == (3, 3), d
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, batch_size=2, how_many=5)
    assert f"note: resuming from {progress}: 3 of 5 image(s) already done, not redone" in capsys.readouterr().err
    assert sum(sizes) == 2, f"--how_many 5 after a finished --how_many 3 encoded {sum(sizes)} images, not 2"
    assert progress_count(progress) == 5
    sizes = counted()
    written = features.precompute_feature_maps(folder, out_dir=out, batch_size=2)
    assert sum(sizes) == N - 5 and written.new == N - 5 and len(written) == N
    assert maps(out) == maps(tmp_path / "whole")
    assert not progress.exists(), "every map of the split is written: the progress file is left"
    counted()   # --progress_every 0 writes no progress file, also for a --how_many run
    features.precompute_feature_maps(folder, out_dir=tmp_path / "none", batch_size=2, how_many=3,
                                     progress_every=0)
    assert not (tmp_path / ".none.progress").exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute --how_many 3 of 7, SIGTERM after its last map: the line says the 3 "
                        "asked for are written and the progress file records them for a larger run, which "
                        "continues from 3")
def test_a_how_many_run_stopped_after_its_last_map_records_its_maps(run, tmp_path, counted, capsys, monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    end = features._end_workers

    def then_stopped(loader):
        end(loader)
        signal.raise_signal(signal.SIGTERM)   # main's handler: the stop, the 3 maps written
    monkeypatch.setattr(features, "_end_workers", then_stopped)
    counted()
    with pytest.raises(SystemExit) as e:
        features.main(["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--batch_size", "3",
                       "--how_many", "3", "--device", "cpu"])
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    line = (f"stopped by SIGTERM: all 3 feature map(s) asked for (--how_many 3) written to {out}/ before the "
            f"stop, each whole; {progress} records the first 3: precompute without --how_many (or with a larger "
            "one) continues from there")
    assert err.strip().splitlines()[-1] == line, err
    assert progress.exists() and progress_count(progress) == 3
    monkeypatch.setattr(features, "_end_workers", end)
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, batch_size=3)
    assert sum(sizes) == N - 3 and not progress.exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute killed after 4 of 7 maps, rerun with --how_many 4: nothing encoded, "
                        "the progress file kept at 4 (not removed), a rerun without --how_many encodes only 3")
def test_an_equal_how_many_keeps_the_larger_runs_count(run, tmp_path, counted, capsys):
    folder, _ = run
    out = tmp_path / "feat"
    progress = _killed_after_4(folder, out, counted)
    before = progress.read_bytes()
    sizes = counted()
    written = features.precompute_feature_maps(folder, out_dir=out, batch_size=2, how_many=4)
    assert sizes == [] and len(written) == 4 and written.new == 0
    assert progress.exists(), "the --how_many 4 run removed the progress file counting its 4 maps"
    assert progress.read_bytes() == before, "the --how_many 4 run rewrote the progress file it had all the maps of"
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, batch_size=2)
    assert f"note: resuming from {progress}: 4 of {N} image(s) already done" in capsys.readouterr().err
    assert sum(sizes) == N - 4, f"the full run encoded {sum(sizes)} images, not the {N - 4} left"
    assert not progress.exists()


def _note(root: Path) -> str:
    """The missing maps' note of a --load_features listing of ``root``'s train split."""
    msg = PartnerMessage("train_label/a.png has no train_feat/a.*", ("feat",), str(root), "train")
    return missing_feat_note([("missing partner", str(root / "train_label" / "a.png"), msg)])


INTERRUPTED = "an interrupted precompute left {}: rerun the same precompute command to finish it"


@pytest.mark.fault(cls="interrupted run",
                   case="--load_features missing maps after a finished precompute --how_many 3 (its progress "
                        "file kept): the note says to run precompute without --how_many or with a larger one, "
                        "not to rerun the same command; after a killed run, or with a file of an older version "
                        "(no asked field, still resumed from), it says to rerun the same command")
def test_the_missing_maps_note_tells_a_finished_how_many_from_an_interrupted_run(run, tmp_path, counted, capsys):
    folder, _ = run
    progress = tmp_path / ".train_feat.progress"
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "train_feat", batch_size=4, how_many=3)
    note = _note(tmp_path)
    assert (f"; a precompute --how_many 3 left {progress}: it wrote the first 3 maps and finished, so rerunning "
            "it writes nothing; run precompute without --how_many (or with a larger one), which continues after "
            "them") in note, note
    assert "rerun the same precompute command" not in note, note
    # an older version's file (no "asked"): the note as before, and the file is still resumed from
    d = torch.load(progress, map_location="cpu", weights_only=True)
    del d["asked"]
    torch.save(d, progress)
    assert INTERRUPTED.format(progress) in _note(tmp_path)
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "train_feat", batch_size=4, how_many=5)
    assert f"note: resuming from {progress}: 3 of 5 image(s) already done" in capsys.readouterr().err
    assert sum(sizes) == 2
    # a killed run's (asked 7, count 4): the same command finishes it
    other = tmp_path / "other"
    _killed_after_4(folder, other / "train_feat", counted)
    assert torch.load(other / ".train_feat.progress", map_location="cpu", weights_only=True)["asked"] == N
    assert INTERRUPTED.format(other / ".train_feat.progress") in _note(other)


@pytest.mark.fault(cls="bad dataset",
                   case="features precompute into a read-only dataset folder (train_feat cannot be made): "
                        "refused in one line before any input is stamped")
def test_a_read_only_dataset_folder_is_refused_before_the_inputs_are_stamped(run, counted, monkeypatch):
    folder, streets = run
    mkdir, stamp, stamps = Path.mkdir, features._record_stamp, []

    def refused(self, *a, **k):   # as in a read-only folder (root passes chmod)
        if self.name == "train_feat":
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *a, **k)

    def counted_stamp(*a, **k):
        stamps.append(1)
        return stamp(*a, **k)
    monkeypatch.setattr(Path, "mkdir", refused)
    monkeypatch.setattr(features, "_record_stamp", counted_stamp)
    counted()
    with pytest.raises(InputError, match=rf"^cannot write the feature maps into {streets}/train_feat/"):
        features.main(["precompute", "--checkpoint", str(folder), "--device", "cpu"])
    assert stamps == [], f"{len(stamps)} input(s) stamped before the folder was refused"
    assert not (streets / "train_feat").exists()


def test_the_docs_say_a_chmod_chown_or_hard_link_makes_a_rerun_start_over():
    doc = (Path(__file__).parents[1] / "docs" / "features.md").read_text()
    said = re.search(r"A `chmod`, `chown` or new hard link of one of those inputs\s+changes its change time too, "
                     r"so a rerun after one starts over", doc)
    assert said, "docs/features.md does not say that a chmod, chown or new hard link makes a rerun start over"


def _stop_after_the_judgement(monkeypatch, command: str) -> None:
    """SIGTERM (main's handler: the stop) after ``_load_progress`` returned, before the run takes
    its file in: encode, at its next held block (the one that does); precompute, at its loader."""
    if command == "precompute":
        batches = features._batches

        def stopped(*a, **k):
            signal.raise_signal(signal.SIGTERM)
            return batches(*a, **k)
        monkeypatch.setattr(features, "_batches", stopped)
        return
    load, held, state = features._load_progress, features._stops_held, {}

    def loaded(*a, **k):
        got = load(*a, **k)
        state["returned"] = True
        return got

    def held_after(*a, **k):
        if state.pop("returned", False):
            signal.raise_signal(signal.SIGTERM)
        return held(*a, **k)
    monkeypatch.setattr(features, "_load_progress", loaded)
    monkeypatch.setattr(features, "_stops_held", held_after)


@pytest.mark.fault(cls="interrupted run",
                   case="features encode and precompute with a progress file there (of 4 images, damaged, or a "
                        "larger run's for encode --how_many 3), SIGTERM after it is judged and before the run "
                        "takes it in: the line says whether a rerun continues from the 4 or starts over, and "
                        "the rerun does so")
@pytest.mark.parametrize("command, there", [("encode", "its own"), ("encode", "damaged"), ("encode", "larger"),
                                            ("precompute", "its own"), ("precompute", "damaged")])
def test_a_stop_after_the_progress_file_is_judged_says_which(run, tmp_path, counted, capsys, monkeypatch,
                                                             command, there):
    folder, _ = run
    if command == "encode":
        out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
        counted(stop_at=5)   # batches of 2, saves every 2: 4 done and saved, then killed
        with pytest.raises(KeyboardInterrupt):
            features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
        args = ["encode", "--checkpoint", str(folder), "--out", str(out)]
    else:
        out = tmp_path / "feat"
        progress = _killed_after_4(folder, out, counted)
        args = ["precompute", "--checkpoint", str(folder), "--out_dir", str(out)]
    args += ["--batch_size", "2", "--progress_every", "2", "--device", "cpu"]
    if there == "damaged":
        progress.write_bytes(b"x")
    if there == "larger":
        args += ["--how_many", "3"]
    before = progress.read_bytes()
    capsys.readouterr()
    with monkeypatch.context() as m:
        _stop_after_the_judgement(m, command)
        sizes = counted()
        with pytest.raises(SystemExit) as e:
            features.main(args)
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    assert sizes == [] and progress.read_bytes() == before
    said = capsys.readouterr().err.strip().splitlines()[-1]
    lines = {
        ("encode", "its own"): f"nothing written to {out} (written whole at encode's end); the features of 4 "
                               f"image(s) are kept in {progress}: rerun the same command to continue from there",
        ("encode", "damaged"): f"nothing written ({out} is written whole at encode's end; it was not created); "
                               "rerun the same command (encode starts over)",
        ("encode", "larger"): f"nothing written ({out} is written whole at encode's end; it was not created); "
                              f"rerun the same command (encode starts over); {progress}, a larger run's, is kept "
                              "as it was",
        ("precompute", "its own"): f"4 feature map(s) written to {out}/ before the stop, each whole (through a "
                                   f"temporary file), the others not; {progress} records the first 4: rerun the "
                                   "same command to write the others",
        ("precompute", "damaged"): f"no feature map written to {out}/ before the stop; rerun the same command to "
                                   "write them all"}
    assert said == f"stopped by SIGTERM: {lines[command, there]}", said
    sizes = counted()
    assert features.main(args) == 0
    asked = 3 if there == "larger" else N
    assert sum(sizes) == (asked - 4 if there == "its own" else asked), (there, sizes)

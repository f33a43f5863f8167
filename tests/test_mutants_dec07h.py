"""Tests that kill the mutants MUT5 found surviving in this session's commits: the features
progress file (format 2 read, _PrefixDigest.upto going back, encode's save at a stop one image
past the last save, precompute's stop after the last map, a negative count), evaluate's refusal of
several files of one kind whose fix is too long for the first line, and benchmarks/loader_memory.py
(--records dicts measured as dicts, the USS read, --unique just above --n).

The features tests use the tiny untrained E and the 7 synthetic 64x32 scenes of
tests/features_runs.py (its fixtures, imported); E is wrapped to raise SIGTERM
(main's handler: the stop) or KeyboardInterrupt (a kill's stand-in: nothing is saved at it) before
a given image: nothing depends on timing."""
import json
import os
import signal

import pytest
import torch
from PIL import Image

import pix2pixhd.features as features
from benchmarks import loader_memory as LM
from pix2pixhd.errors import ConfigError
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import N, encoded_after_a_rewrite, progress_count
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

HAS_SMAPS = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")


def _records(folder, n):
    """The first ``n`` records of the run's dataset, as encode reads it."""
    _, cfg, _ = features.load_encoder(folder)
    return features._dataset(cfg, "", "train", 0).records[:n]


@pytest.mark.fault(cls="interrupted run",
                   case="features encode --how_many 5 killed after 4 images, its progress file rewritten as "
                        "format 2 (inputs digest of all 5 inputs): the rerun resumes from the 4, encodes 1")
def test_a_format_2_progress_file_is_resumed_from(run, tmp_path, counted, capsys):
    """Kills: `if d["version"] == 2:` -> `if False:`; `not in (2, _PROGRESS_VERSION)` ->
    `!= _PROGRESS_VERSION`; `_inputs_digest(ds.records, ctime=False)` -> `_inputs_digest(digest.records,
    ctime=False)` or `ctime=True` (format 2 stamped each input's size and mtime, no ctime)."""
    folder, _ = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    counted(stop_at=4)   # its 3rd batch (image 5): 4 done and saved
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2, how_many=5)
    d = torch.load(progress, map_location="cpu", weights_only=True)
    assert d["count"] == 4 and d["version"] == 4, (d["count"], d["version"])
    # format 2: the inputs digest is of every input of the run (its --how_many 5), not of the 4 done,
    # each stamped with its size and mtime only
    d["version"], d["key"]["inputs"] = 2, features._inputs_digest(_records(folder, 5), ctime=False)
    torch.save(d, progress)
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2, how_many=5)
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 4 of 5 image(s) already done, not redone" in err, err
    assert sum(sizes) == 1, f"the rerun encoded {sum(sizes)} images, not the 1 left"
    assert not progress.exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features encode --batch_size 1 --progress_every 3, SIGTERM before the 5th image (one "
                        "past the save at 3): the progress file counts the 4 encoded")
def test_a_stop_one_image_past_the_last_save_keeps_that_image(run, tmp_path, counted, capsys):
    """Kills: encode's stop `done > last` -> `done > last + 1` (the one image since the save lost)."""
    folder, _ = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    counted(stop_at=4, signum=signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        features.main(["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "1",
                       "--progress_every", "3", "--device", "cpu"])
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    assert f"the features of 4 image(s) are kept in {progress}" in err, err
    assert progress_count(progress) == 4, \
        f"the progress file counts {progress_count(progress)} images at the stop, not the 4 encoded"


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: 4 maps saved, map 2 deleted, the rerun starts over and is killed "
                        "after 3 maps (saved at 2): the next rerun resumes from the 2 (the digest of fewer "
                        "images than the progress file's read)")
def test_a_save_of_fewer_images_than_the_file_read_is_resumed_from(run, tmp_path, counted, capsys):
    """Kills _PrefixDigest.upto: `if n < self.n:` -> `if False:`; `records[:n]` -> `records[:n+1]`
    in that branch; `while self.n < n:` -> `while self.n < n - 1:`."""
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    counted(stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=2, batch_size=1)
    assert progress_count(progress) == 4
    sorted(out.iterdir())[1].unlink()   # map 2: the rerun reads the file's 4 (its digest at 4), starts over
    capsys.readouterr()
    counted(stop_at=3)   # saves at 2 (a digest of 2 after one of 4 was made), killed after 3
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=2, batch_size=1)
    assert "is gone: ignored, precompute starts over" in capsys.readouterr().err
    assert progress_count(progress) == 2
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, progress_every=2, batch_size=1)
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 2 of {N} image(s) already done, not redone" in err, err
    assert sum(sizes) == N - 2, f"the rerun encoded {sum(sizes)} images, not the {N - 2} left"


@pytest.mark.fault(cls="interrupted run",
                   case="features encode after 4 images done, the 4th one's photo rewritten (its mtime): a note "
                        "naming other inputs, the run starts over")
def test_the_last_image_done_is_in_the_inputs_digest(run, tmp_path, counted, capsys):
    """Kills _PrefixDigest.upto: `while self.n < n:` -> `while self.n < n - 1:` (the last image
    done left out of the digest: its rewrite went unseen)."""
    folder, streets = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    counted(stop_at=5)   # batches of 2: 4 done and saved
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    assert progress_count(progress) == 4
    sizes, err = encoded_after_a_rewrite(folder, streets, out, 3, counted, capsys)   # 3: the last of the 4 done
    assert (f"note: {progress} records other inputs (among the images it counts done, a file added, removed "
            "or rewritten since): ignored, encode starts over") in err, err
    assert sum(sizes) == N


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: SIGTERM after the last of 7 maps is written (progress saved at "
                        "6): the line says all 7 are written, no progress file remains")
def test_a_stop_after_the_last_map_says_all_written_and_leaves_no_progress(run, tmp_path, counted, capsys,
                                                                         monkeypatch):
    """Kills: precompute's stop `if len(written) == len(ds):` -> `if False:`, and that branch's
    progress.unlink dropped."""
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    end = features._end_workers

    def then_stopped(loader):
        end(loader)
        signal.raise_signal(signal.SIGTERM)   # main's handler: the stop, every map written
    monkeypatch.setattr(features, "_end_workers", then_stopped)
    counted()
    with pytest.raises(SystemExit) as e:
        features.main(["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--batch_size", "3",
                       "--progress_every", "2", "--device", "cpu"])
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"stopped by SIGTERM: all {N} feature map(s) written to {out}/ before the stop, each whole"], err
    assert len(list(out.iterdir())) == N
    assert not progress.exists(), f"{progress} (count {progress_count(progress)}) is left after every map was written"


@pytest.mark.fault(cls="bad dataset",
                   case="features precompute with a progress file whose count is -1: a note that it is damaged "
                        "(no count of the images done), the run starts over")
def test_a_negative_count_is_a_damaged_progress_file(run, tmp_path, counted, capsys):
    """Kills: `or d["count"] < 0` dropped from _load_progress's check."""
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    counted(stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=2, batch_size=1)
    d = torch.load(progress, map_location="cpu", weights_only=True)
    d["count"] = -1
    torch.save(d, progress)
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, progress_every=2, batch_size=1)
    err = capsys.readouterr().err
    assert (f"note: {progress} cannot be read as a progress file (damaged: no count of the images done): "
            "ignored, precompute starts over") in err, err
    assert sum(sizes) == N


@pytest.mark.fault(cls="bad dataset",
                   case="evaluate: 2 RGB --labels maps: a short first line (count, the fix follows the list, not "
                        "'of each kind'), the 2 files, then the colour fix on a line of its own")
def test_files_of_one_kind_whose_fix_is_long_have_it_after_the_list(tmp_path, capsys):
    """Kills evaluate's `_FIRST_LINE_WIDTH = 180` -> 1000 (the ~280-character colour fix on the first
    line) and `' of each kind' if len(fixes) > 1` -> `>= 1`."""
    pytest.importorskip("torchmetrics")
    from tests.evaluate_cli import images, one_error
    fake, real = images(tmp_path / "fake", 3), images(tmp_path / "real", 3, seed=1)
    train_img, train_lab = images(tmp_path / "train_img", 2, seed=2), images(tmp_path / "train_lab", 2, "L")
    labels = images(tmp_path / "labels", 3, "L", seed=3)
    for i in (0, 2):   # RGB pictures given as label maps
        Image.open(real / f"{i}.png").save(labels / f"{i}.png")
    lines = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid", "--labels", str(labels),
                               "--train_images", str(train_img), "--train_labels", str(train_lab),
                               "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16"]).splitlines()
    assert lines[0] == "error: 2 images cannot be read (the fix follows the list):", lines
    assert len(lines) == 4, lines
    for line, i in zip(lines[1:3], (0, 2)):
        assert line.startswith(f"  --labels map {labels / f'{i}.png'} "), lines
    assert lines[3].startswith("  for each colour image given as a label map: convert"), lines


@pytest.mark.skipif(not HAS_SMAPS, reason="no /proc/PID/smaps_rollup here (Linux 4.14 or later)")
def test_loader_memory_measures_dicts_as_a_list_and_compact_as_records(tmp_path, capsys):
    """Kills benchmarks/loader_memory.py's `if mode == "dicts":` -> `if False:` (--records dicts
    measured the compact Records): each row names the type of the records the workers forked with."""
    out = tmp_path / "m.json"
    assert LM.main(["--n", "8", "--workers", "1", "--batches", "2", "--batch_size", "2", "--records", "both",
                    "--data", str(tmp_path / "data"), "--json", str(out)]) == 0
    capsys.readouterr()
    rows = json.loads(out.read_text())["rows"]
    assert [(r["records"], r["records_type"]) for r in rows] == [("compact", "Records"), ("dicts", "list")], rows


@pytest.mark.skipif(not HAS_SMAPS, reason="no /proc/PID/smaps_rollup here (Linux 4.14 or later)")
def test_loader_memory_uss_is_private_clean_plus_private_dirty(monkeypatch):
    """Kills smaps_rollup's `Uss = Private_Clean + Private_Dirty` -> `Uss = Private_Dirty`: a
    smaps_rollup text of known fields (as the kernel writes it, in kB) is given to smaps_rollup in
    place of the file, so that neither field can be 0 (a process's Private_Clean often is)."""
    text = ("55d0c0000000-7ffd00000000 ---p 00000000 00:00 0                          [rollup]\n"
            "Rss:              204800 kB\nPss:              102400 kB\nPss_Anon:          51200 kB\n"
            "Shared_Clean:      81920 kB\nShared_Dirty:          0 kB\nPrivate_Clean:     30720 kB\n"
            "Private_Dirty:     92160 kB\nReferenced:       204800 kB\nSwap:                  0 kB\n")

    class Captured:
        def __init__(self, path):
            assert path == "/proc/1234/smaps_rollup", path

        def __enter__(self):
            return iter(text.splitlines(keepends=True))

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(LM, "open", Captured, raising=False)
    got = LM.smaps_rollup(1234)
    assert got["Uss"] == (30720 + 92160) / 1024 == 120.0, got
    assert {k: got[k] for k in LM.FIELDS} == {"Rss": 200.0, "Pss": 100.0, "Private_Clean": 30.0,
                                              "Private_Dirty": 90.0}, got


def test_loader_memory_refuses_unique_one_above_n():
    """Kills parse_args's `a.unique > a.n` -> `a.unique > a.n + 1` (--unique 3 of --n 2 accepted)."""
    with pytest.raises(ConfigError, match=r"--unique 3: expected at most --n 2"):
        LM.parse_args(["--n", "2", "--batch_size", "2", "--unique", "3"])

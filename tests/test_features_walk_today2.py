"""``python -m pix2pixhd.features encode`` / ``precompute``: the findings of a user walkthrough
(TODAY2) of the commands' progress files, stops and last lines.

1. precompute's last line counted the maps its run covers, not those it wrote ("wrote 50" for a
   run that wrote none, "wrote 300" for a resumed one that wrote 141).
2. encode with a smaller --how_many than a progress file's images done called the file "ignored",
   then overwrote it and removed it at the end: the larger run's images were lost.
3. --progress_every 0 ignored an existing progress file (and then removed it): it only means that
   none is written.
4. precompute --how_many N below the split's size said nothing of the maps --load_features still
   lacks, and the missing maps' note did not say to run it without --how_many.
5. A stop before the first map said "0 feature map(s) written ..., each whole ..., the others not".

A tiny untrained E on 7 synthetic 64x32 scenes, read in the main process (nThreads 0), from
tests/features_runs.py: E is wrapped to count the images it encodes and to raise
SIGTERM (main's handler: the stop) or KeyboardInterrupt (a kill's stand-in: nothing is written at
it) before a given image, so nothing depends on timing."""
import signal
from pathlib import Path

import pytest
import torch

import pix2pixhd.features as features
from pix2pixhd.data.layouts import PartnerMessage, missing_feat_note
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import N, maps, same
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _features(path: Path) -> dict:
    """The features and centers of the clusters file ``path`` (its counts left out)."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    return {k: {c: v for c, v in d[k].items()} for k in ("features", "centers")}


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute killed after 3 of 7 maps, rerun with --how_many 2 then 0: the last "
                        "lines say 'wrote no feature map: the 2 asked for are in OUT already' and 'wrote 4 feature "
                        "map(s) to OUT (7 there in all)', not the maps the run covers")
def test_precompute_says_how_many_maps_it_wrote(run, tmp_path, counted, capsys):
    folder, _ = run
    out = tmp_path / "feat"
    counted(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1)
    capsys.readouterr()
    args = ["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--batch_size", "2",
            "--progress_every", "1", "--device", "cpu"]
    sizes = counted()
    assert features.main([*args, "--how_many", "2"]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said == [f"wrote no feature map: the 2 asked for are in {out} already"], said
    assert sizes == []
    assert features.main(args) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said == [f"wrote 4 feature map(s) to {out} ({N} there in all)"], said
    # the Python API: the paths of the run's maps (those resumed from too), and how many it wrote
    again = features.precompute_feature_maps(folder, out_dir=tmp_path / "fresh", batch_size=4)
    assert isinstance(again, list) and len(again) == N and again.new == N, (len(again), again.new)
    assert again.summary() == f"wrote {N} feature map(s) to {tmp_path / 'fresh'}"
    assert maps(out) == maps(tmp_path / "fresh")


@pytest.mark.fault(cls="interrupted run",
                   case="features encode killed after 4 of 7 images, rerun with --how_many 3 (run through, or "
                        "stopped by SIGTERM): the larger run's progress file is left as it was (not overwritten, "
                        "not removed), the note says so, and a rerun without --how_many still continues from 4")
@pytest.mark.parametrize("smaller", ["finished", "stopped"])
def test_encode_with_a_smaller_how_many_keeps_a_larger_runs_progress(run, tmp_path, counted, capsys, smaller):
    folder, _ = run
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2)[0]
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):   # a kill: the last save counts 4 images done
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    before = progress.read_bytes()
    capsys.readouterr()
    args = ["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "1", "--progress_every", "1",
            "--how_many", "3", "--device", "cpu"]
    if smaller == "finished":
        counted()
        assert features.main(args) == 0
    else:
        counted(stop_at=2, signum=signal.SIGTERM)
        with pytest.raises(SystemExit) as e:
            features.main(args)
        assert e.value.code == STOPPED_EXIT_STATUS
    err = capsys.readouterr().err
    assert progress.exists(), f"the {smaller} --how_many 3 run removed the larger run's progress file"
    assert progress.read_bytes() == before, f"the {smaller} --how_many 3 run rewrote the larger run's progress file"
    assert (f"note: {progress} holds the features of 4 image(s), more than this run's 3 (--how_many 3), pooled "
            "per class: the first 3 images' cannot be taken apart from them: not used (encode starts over), but "
            "kept for a rerun with more; this run keeps no progress of its own") in err, err
    if smaller == "stopped":
        assert f"{progress}, a larger run's, is kept as it was" in err, err
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    assert f"resuming from {progress}: 4 of {N} image(s) already done" in capsys.readouterr().err
    assert sum(sizes) == N - 4, f"the rerun encoded {sum(sizes)} images, not the {N - 4} left"
    assert same(_features(whole), _features(out)) and not progress.exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features encode / precompute killed after 4 of 7 images, rerun with --progress_every 0: "
                        "resumes from the 4 with the usual note (0 only writes no progress file), matches an "
                        "uninterrupted run, and removes the file at the end")
@pytest.mark.parametrize("command", ["encode", "precompute"])
def test_progress_every_0_still_resumes(run, tmp_path, counted, capsys, command):
    folder, _ = run
    counted()
    if command == "encode":
        out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
        whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2)[0]

        def cmd(**k):
            return features.encode_and_cluster(folder, out=out, batch_size=2, **k)
    else:
        out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
        features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=2)

        def cmd(**k):
            return features.precompute_feature_maps(folder, out_dir=out, batch_size=2, **k)
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):   # a kill: the last save counts 4 images done
        cmd(progress_every=2)
    capsys.readouterr()
    sizes = counted()
    cmd(progress_every=0)
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 4 of {N} image(s) already done, not redone" in err, err
    assert sum(sizes) == N - 4, f"--progress_every 0 encoded {sum(sizes)} images, not the {N - 4} left"
    if command == "encode":
        assert same(_features(whole), _features(out))
    else:
        assert maps(out) == maps(tmp_path / "whole")
    assert not progress.exists(), "the finished run left the progress file it completed"


def test_precompute_with_how_many_says_load_features_needs_every_map(run, tmp_path, counted, capsys):
    folder, streets = run
    counted()
    written = features.precompute_feature_maps(folder, out_dir=tmp_path / "feat", batch_size=4, how_many=3)
    assert len(written) == 3
    err = capsys.readouterr().err
    note = (f"note: --how_many 3: these maps cover 3 of the {N} train images of {streets}; a --load_features run "
            "needs the map of every image: run precompute without --how_many for them all")
    assert err.count("--load_features") == 1 and note in err, f"no one note that the maps cover 3 of {N}: {err!r}"
    features.precompute_feature_maps(folder, out_dir=tmp_path / "all", batch_size=4, how_many=N + 1)
    assert "--load_features" not in capsys.readouterr().err   # all the images: nothing to say
    msg = PartnerMessage("train_label/a.png has no train_feat/a.*", ("feat",), str(streets), "train")
    told = missing_feat_note([("missing partner", str(streets / "train_label" / "a.png"), msg)])
    assert (f"`python -m pix2pixhd.features precompute --checkpoint RUN --dataroot {streets}` (without "
            "--how_many: every image needs its map; RUN: the run whose encoder makes them") in told, told


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute stopped by SIGTERM before its first map: the line says 'no feature "
                        "map written to OUT/ before the stop', not '0 feature map(s) written ..., each whole'")
def test_a_stop_before_the_first_map_says_none_was_written(run, tmp_path, counted, capsys):
    folder, _ = run
    out = tmp_path / "feat"
    counted(stop_at=0, signum=signal.SIGTERM)
    with pytest.raises(SystemExit) as e:
        features.main(["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--device", "cpu"])
    assert e.value.code == STOPPED_EXIT_STATUS
    err = capsys.readouterr().err
    line = (f"stopped by SIGTERM: no feature map written to {out}/ before the stop; rerun the same command to "
            "write them all")
    assert err.strip().splitlines() == [line], err
    assert list(out.iterdir()) == [] and not (tmp_path / ".feat.progress").exists()

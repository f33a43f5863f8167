"""``python -m pix2pixhd.features encode`` / ``precompute``: what a stop keeps, and a rerun with
another ``--how_many``.

A stop (SIGTERM, SIGINT) recorded nothing at the stop: the progress file held the images done at
its last save, every ``--progress_every`` images, so a stop lost up to one interval, E's work
redone. Now the progress of every image done when the stop comes is saved, whole, and the stop's
line says how many. And the progress file's inputs digest covered all the inputs, so a rerun with
a larger ``--how_many`` (or 0) started over; now the images done only need to be the first of the
new inputs.

A tiny untrained E (per-image BatchNorm, as ``encode`` runs it) on 7 synthetic 64x32 scenes, read
in the main process (nThreads 0): tests/features_runs.py's. E is wrapped to count the images it
encodes and to raise SIGTERM or SIGINT (main's handler: the stop) or KeyboardInterrupt (a kill's
stand-in: nothing is written at it) before a given image: nothing depends on timing."""
import signal

import pytest

import pix2pixhd.features as features
from pix2pixhd.errors import INTERRUPTED_EXIT_STATUS
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import N, clusters, encoded_after_a_rewrite, maps, progress_count, same
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

@pytest.mark.fault(cls="interrupted run",
                   case="features encode: SIGTERM after 6 of 7 images, progress saved every 4: the features of "
                        "all 6 are kept at the stop (not the 4 of the last save), the line says 6, the rerun "
                        "encodes 1 and matches an uninterrupted run")
def test_a_stop_keeps_every_image_encoded(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2)[0]
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    args = ["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "2",
            "--progress_every", "4", "--device", "cpu"]
    counted(stop_at=6, signum=signal.SIGTERM)   # E's 4th batch (image 7): 6 encoded, saved at 4
    with pytest.raises(SystemExit) as e:
        features.main(args)
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    line = (f"stopped by SIGTERM: nothing written to {out} (written whole at encode's end); the features of 6 "
            f"image(s) are kept in {progress}: rerun the same command to continue from there")
    assert err.strip().splitlines() == [line], err
    assert progress_count(progress) == 6, \
        f"the progress file counts {progress_count(progress)} images at the stop, not the 6 encoded"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.pt.progress", "whole.pt"]   # no temporary file
    sizes = counted()
    assert features.main(args) == 0
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 6 of {N} image(s) already done, not redone" in err, err
    assert sizes == [1], f"the rerun's forwards {sizes}, not the 1 image left"
    assert same(clusters(whole), clusters(out)), "the resumed run's clusters differ from an uninterrupted run's"
    assert not progress.exists()
    # --progress_every 0 (never) keeps nothing at a stop either
    counted(stop_at=6, signum=signal.SIGTERM)
    with pytest.raises(SystemExit):
        features.main([*args[:-4], "--progress_every", "0", "--device", "cpu"])
    assert not progress.exists() and "encode starts over" in capsys.readouterr().err


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: SIGINT after 3 of 7 maps, progress saved every 2: the count of "
                        "all 3 is kept at the stop (not the 2 of the last save), the line says 3, the rerun "
                        "writes only the other 4, the maps equal an uninterrupted run's")
def test_a_stop_records_every_map_written(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=3)
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    args = ["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--batch_size", "3",
            "--progress_every", "2", "--device", "cpu"]
    counted(stop_at=3, signum=signal.SIGINT)   # E's 2nd batch: 3 maps written, saved at 2
    with pytest.raises(SystemExit) as e:
        features.main(args)
    assert e.value.code == INTERRUPTED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    line = (f"stopped by SIGINT: 3 feature map(s) written to {out}/ before the stop, each whole (through a "
            f"temporary file), the others not; {progress} records the first 3: rerun the same command to write "
            "the others; exit status 130")
    assert err.strip().splitlines() == [line], err
    assert progress_count(progress) == 3, \
        f"the progress file counts {progress_count(progress)} maps at the stop, not the 3 written"
    sizes = counted()
    assert features.main(args) == 0
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 3 of {N} image(s) already done, not redone" in err, err
    assert sizes == [3, 1], f"the rerun's forwards {sizes}, not the {N - 3} images left in batches of 3"
    assert maps(out) == maps(tmp_path / "whole") and len(maps(out)) == N
    assert not progress.exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features encode --how_many 5 killed after 4 (progress every 2), rerun with a larger "
                        "--how_many or 0: continues from the 4, clusters equal an uninterrupted run's")
@pytest.mark.parametrize("more", [6, 0], ids=["how_many_6", "all"])
def test_encode_continues_with_a_larger_how_many(run, tmp_path, counted, capsys, more):
    folder, _ = run
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2, how_many=more)[0]
    out = tmp_path / "c.pt"
    counted(stop_at=4)   # its 3rd batch (image 5): 4 done and saved
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2, how_many=5)
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2, how_many=more)
    err = capsys.readouterr().err
    total = more or N
    assert f"resuming from {tmp_path / '.c.pt.progress'}: 4 of {total} image(s) already done" in err, err
    assert sum(sizes) == total - 4, f"the rerun encoded {sum(sizes)} images, not the {total - 4} left"
    assert same(clusters(whole), clusters(out)), "the continued run's clusters differ from an uninterrupted run's"
    assert not (tmp_path / ".c.pt.progress").exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute --how_many 4 killed after 3 maps, rerun with --how_many 0: writes "
                        "only the other 4, the maps equal an uninterrupted run's")
def test_precompute_continues_with_a_larger_how_many(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=3)
    out = tmp_path / "feat"
    counted(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=3, how_many=4)
    capsys.readouterr()
    sizes = counted()
    written = features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=3)
    err = capsys.readouterr().err
    assert f"3 of {N} image(s) already done" in err, err
    assert sizes == [3, 1], f"the rerun's forwards {sizes}, not the {N - 3} images left in batches of 3"
    assert len(written) == N and maps(out) == maps(tmp_path / "whole")
    assert not (tmp_path / ".feat.progress").exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features encode after 4 images done, one input rewritten: one of the 4 → a note naming "
                        "other inputs, the run starts over; one not yet encoded → the run continues from the 4")
@pytest.mark.parametrize("touched, resumed", [(1, False), (N - 1, True)], ids=["done", "not_done"])
def test_only_the_inputs_done_must_be_the_same(run, tmp_path, counted, capsys, touched, resumed):
    folder, streets = run
    out = tmp_path / "c.pt"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    sizes, err = encoded_after_a_rewrite(folder, streets, out, touched, counted, capsys)
    progress = tmp_path / ".c.pt.progress"
    if resumed:
        assert f"note: resuming from {progress}: 4 of {N} image(s) already done" in err, err
        assert sum(sizes) == N - 4
    else:
        assert (f"note: {progress} records other inputs (among the images it counts done, a file added, removed "
                "or rewritten since): ignored, encode starts over") in err, err
        assert sum(sizes) == N


@pytest.mark.fault(cls="interrupted run",
                   case="features encode after 4 images done, rerun with --how_many 3: a note saying the 4 "
                        "images' features cannot be taken apart, the run starts over and matches an "
                        "uninterrupted --how_many 3")
def test_encode_with_a_smaller_how_many_starts_over_saying_why(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2, how_many=3)[0]
    out = tmp_path / "c.pt"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2, how_many=3)
    err = capsys.readouterr().err
    assert (f"note: {tmp_path / '.c.pt.progress'} holds the features of 4 image(s), more than this run's 3 "
            "(--how_many 3), pooled per class: the first 3 images' cannot be taken apart from them: not used "
            "(encode starts over), but kept for a rerun with more; this run keeps no progress of its own") in err, err
    assert sum(sizes) == 3
    assert same(clusters(whole), clusters(out)), "the clusters differ from an uninterrupted --how_many 3 run's"


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute after 4 maps written, rerun with --how_many 3: its 3 maps are "
                        "there: nothing encoded, a note, the progress file kept; a rerun with 0 then continues "
                        "from the 4")
def test_precompute_with_a_smaller_how_many_has_its_maps(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=1)
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    counted(stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1)
    capsys.readouterr()
    sizes = counted()
    written = features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1, how_many=3)
    err = capsys.readouterr().err
    assert (f"note: {progress} counts 4 image(s) done, more than this run's 3 (--how_many 3): those are all "
            "done already; the file is kept for a rerun with more") in err, err
    assert sizes == [], f"E encoded {sizes} for maps already written"
    names = sorted(maps(tmp_path / "whole"))
    assert [p.name for p in written] == names[:3]
    assert progress_count(progress) == 4
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1)
    assert f"4 of {N} image(s) already done" in capsys.readouterr().err
    assert sizes == [1, 1, 1]
    assert maps(out) == maps(tmp_path / "whole") and not progress.exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: SIGTERM during k-means, after all 7 images are encoded: their features "
                        "are kept, the rerun encodes none and writes the clusters of an uninterrupted run")
def test_a_stop_while_clustering_keeps_every_image(run, tmp_path, counted, capsys, monkeypatch):
    folder, _ = run
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2)[0]
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    cluster = features.cluster_features

    def stopped(*a, **k):
        signal.raise_signal(signal.SIGTERM)
        return cluster(*a, **k)
    monkeypatch.setattr(features, "cluster_features", stopped)
    args = ["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "2", "--progress_every", "4",
            "--device", "cpu"]
    with pytest.raises(SystemExit):
        features.main(args)
    assert f"the features of {N} image(s) are kept in {progress}" in capsys.readouterr().err
    monkeypatch.setattr(features, "cluster_features", cluster)
    sizes = counted()
    assert features.main(args) == 0
    assert f"{N} of {N} image(s) already done" in capsys.readouterr().err
    assert sizes == [], f"the rerun encoded {sizes}"
    assert same(clusters(whole), clusters(out)), "the resumed run's clusters differ from an uninterrupted run's"
    assert not progress.exists()

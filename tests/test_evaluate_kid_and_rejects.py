"""python -m pix2pixhd.evaluate at 500-5,000 images: KID computed on --device from Gram matrices
built once (the same values as torchmetrics' per-subset KID), and every rejected file (mode I/F
photos, colour or undecodable label maps) named in one error, as undecodable images already were
(its first line, then one indented line per file named, then the fix of each kind).

Features are 16-d random tensors, images 16 px; each test runs in seconds.
"""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torchmetrics")

import pix2pixhd.evaluate as ev  # noqa: E402
from tests.evaluate_cli import images, one_error  # noqa: E402


def _torchmetrics_kid(fake, real, subsets, subset_size, seed):
    """What fid_kid computed before: torchmetrics' KID on float64 copies, its subsets drawn after
    torch.manual_seed(seed)."""
    from torchmetrics.image.kid import KernelInceptionDistance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=ev._Precomputed(fake.shape[1]), subsets=subsets,
                                      subset_size=subset_size)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return kid.compute()


def test_kid_equals_torchmetrics_on_both_paths_and_runs_on_the_device(monkeypatch):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(60, 16, generator=g)
    fake = torch.randn(55, 16, generator=g) * 1.2 + 0.3   # sets of unequal size: separate draws
    kernels = []
    poly = ev._poly_kernel
    monkeypatch.setattr(ev, "_poly_kernel", lambda a, b: kernels.append(a.device) or poly(a, b))
    want_mean, want_std = _torchmetrics_kid(fake, real, 10, 20, seed=3)
    for budget, n_kernels in ((ev.KID_GRAM_BYTES, 3), (0, 3 * 10)):   # the Gram path, the per-subset path
        kernels.clear()
        got = ev.kid_scores(fake, real, subsets=10, subset_size=20, seed=3, gram_bytes=budget)
        assert got.dtype == torch.float64 and got.shape == (10,)
        assert abs(float(got.mean()) - float(want_mean)) < 1e-10, (budget, got.mean(), want_mean)
        assert abs(float(got.std(unbiased=False)) - float(want_std)) < 1e-10, (budget, got, want_std)
        # the fault: 3 kernels per subset whatever the size; the Gram matrices: 3 in all
        assert len(kernels) == n_kernels, (budget, len(kernels))
    # fid_kid gives those values (and the whole-set case: one subset of everything)
    res = ev.fid_kid(fake, real, kid_subsets=10, kid_subset_size=20, seed=3, device="cpu")
    assert abs(res["kid_mean"] - float(want_mean)) < 1e-10 and abs(res["kid_std"] - float(want_std)) < 1e-10
    whole = ev.fid_kid(fake[:30], real[:30], kid_subsets=10, kid_subset_size=1000, seed=3)
    assert abs(whole["kid_mean"] - float(_torchmetrics_kid(fake[:30], real[:30], 1, 30, 3)[0])) < 1e-10
    # the device is honoured: on 'meta' (no data; every op checks its device) the kernels and the
    # scores are there, not on the CPU (the fault: KID always ran in float64 on the CPU)
    for budget in (ev.KID_GRAM_BYTES, 0):
        kernels.clear()
        got = ev.kid_scores(fake, real, subsets=4, subset_size=20, seed=3, device="meta", gram_bytes=budget)
        assert got.device.type == "meta" and kernels and {d.type for d in kernels} == {"meta"}, (got, kernels)
    # evaluate hands fid_kid its --device
    seen = {}
    monkeypatch.setattr(ev, "kid_scores", lambda *a, **k: seen.update(k) or torch.zeros(k["subsets"], dtype=torch.float64))
    ev.fid_kid(fake, real, kid_subsets=2, kid_subset_size=20, device="meta")
    assert seen["device"] == "meta", seen


_images, _error = images, one_error   # tests/evaluate_cli.py


@pytest.mark.fault(cls="bad dataset", case="2 mode-F --real photos, then 2 colour --labels maps and an "
                   "undecodable --train_labels map: one error naming both of each (not the first only)")
def test_every_rejected_file_of_a_non_decode_kind_is_named_in_the_one_error(tmp_path, capsys):
    fake, real = _images(tmp_path / "fake", 6), _images(tmp_path / "real", 6, seed=1)
    for i in (1, 4):   # 32-bit float photos: no fixed range, refused
        (real / f"{i}.png").unlink()
        Image.fromarray(np.random.default_rng(i).random((16, 16), dtype=np.float32)).save(real / f"{i}.tif")
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    # the fault: only --real 1.tif was named, 4.tif on the rerun
    assert err.startswith("error: 2 images cannot be read: "), err
    for i in (1, 4):
        assert f"\n  --real image {real / f'{i}.tif'} is a mode-F image (32-bit float values" in err, err
    # one kind: its fix on the first line
    assert err.splitlines()[0].endswith("for each mode-I or mode-F image (32-bit values of no fixed range): "
                                        "convert it to an 8-bit (or 16-bit) PNG first"), err

    # the segmentation score's inputs: two colour --labels maps and a truncated --train_labels map
    real = _images(tmp_path / "real2", 6, seed=1)
    train_img = _images(tmp_path / "train_img", 4, seed=2)
    train_lab, labels = _images(tmp_path / "train_lab", 4, "L"), _images(tmp_path / "labels", 6, "L", seed=3)
    data = (train_lab / "2.png").read_bytes()
    (train_lab / "2.png").write_bytes(data[:len(data) // 2])
    for i in (0, 5):
        Image.open(real / f"{i}.png").save(labels / f"{i}.png")   # an RGB picture given as a label map
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid", "--labels", str(labels),
                          "--train_images", str(train_img), "--train_labels", str(train_lab),
                          "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16"])
    # the fault: only --train_labels 2.png was named, then --labels 0.png, then 5.png: three reruns
    assert err.startswith("error: 3 images cannot be read (the fix of each kind follows the list):\n"), err
    assert f"\n  --train_labels map {train_lab / '2.png'} (" in err, err
    for i in (0, 5):
        assert f"\n  --labels map {labels / f'{i}.png'} is an RGB image (3 channels)" in err, err
    assert "\n  for each file that is truncated or not an image: re-create it" in err, err
    # the colour fix is wrapped (over 200 characters): read as one text
    assert "for each colour image given as a label map: convert it to a single-channel id map (CMP " \
           "Facades: python -m pix2pixhd.datasets.convert_facades --src SRC --out OUT), or pass " \
           "--palette facades" in " ".join(err.split()), err


@pytest.mark.fault(cls="bad dataset", case="2 mode-F --fake images and a colour --labels map: one error "
                   "naming both kinds, before the image pass (not the fakes, then the map after a full pass)")
def test_refused_segmentation_inputs_are_named_before_the_image_pass_with_the_bad_images(tmp_path, capsys,
                                                                                       monkeypatch):
    scored = []   # the image pass (PSNR/SSIM, then Inception): minutes on a real test set
    monkeypatch.setattr(ev, "psnr_ssim", lambda x, y: scored.append(1) or (torch.zeros(1), torch.zeros(1)))
    fake, real = _images(tmp_path / "fake", 6), _images(tmp_path / "real", 6, seed=1)
    train_img, train_lab = _images(tmp_path / "train_img", 4, seed=2), _images(tmp_path / "train_lab", 4, "L")
    labels = _images(tmp_path / "labels", 6, "L", seed=3)
    Image.open(real / "3.png").save(labels / "3.png")   # an RGB picture given as a label map
    seg = ["--labels", str(labels), "--train_images", str(train_img), "--train_labels", str(train_lab),
           "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16", "--no_fid"]

    # a colour --labels map alone, good images: refused before any image is scored
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), *seg])
    assert f"{labels / '3.png'} is a RGB image (3 channels); label and instance maps must be" in err, err
    # the fault: the map was read only after the whole PSNR/SSIM/FID/KID pass
    assert scored == [], f"the image pass ran ({len(scored)} pairs scored) before the --labels map was read"

    # with two mode-F fakes too: one error naming both kinds, the fakes first
    fake2 = _images(tmp_path / "fake2", 6)
    for i in (1, 4):
        (fake2 / f"{i}.png").unlink()
        Image.fromarray(np.random.default_rng(i).random((16, 16), dtype=np.float32)).save(fake2 / f"{i}.tif")
    err = _error(capsys, ["--fake", str(fake2), "--real", str(real), *seg])
    # the fault: only the two fakes were named; the map only on the second run, after its image pass
    assert err.startswith("error: 3 images cannot be read (the fix of each kind follows the list):\n"), err
    assert err.index(f"--fake image {fake2 / '1.tif'} is a mode-F image") < \
        err.index(f"--fake image {fake2 / '4.tif'} is a mode-F image") < \
        err.index(f"--labels map {labels / '3.png'} is an RGB image (3 channels)"), err
    assert "for each mode-I or mode-F image" in err and "for each colour image given as a label map" in err, err
    assert scored == [], f"the image pass ran ({len(scored)} pairs scored) before the inputs were checked"


@pytest.mark.fault(cls="bad dataset", case="more refused files than the error lists, of two kinds: each kind has a "
                   "file named beside its fix (a colour --labels map was only in '... and N more')")
def test_each_kind_of_refused_file_is_named_when_more_than_five_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ev, "psnr_ssim", lambda x, y: (torch.zeros(1), torch.zeros(1)))
    fake, real = _images(tmp_path / "fake", 6), _images(tmp_path / "real", 6, seed=1)
    for i in range(6):   # six mode-F fakes: more than the five listed
        (fake / f"{i}.png").unlink()
        Image.fromarray(np.random.default_rng(i).random((16, 16), dtype=np.float32)).save(fake / f"{i}.tif")
    train_img, train_lab = _images(tmp_path / "train_img", 4, seed=2), _images(tmp_path / "train_lab", 4, "L")
    labels = _images(tmp_path / "labels", 6, "L", seed=3)
    Image.open(real / "3.png").save(labels / "3.png")   # an RGB picture given as a label map
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--labels", str(labels), "--train_images",
                          str(train_img), "--train_labels", str(train_lab), "--label_nc", "3", "--seg_steps", "1",
                          "--seg_width", "16", "--no_fid"])
    assert err.startswith("error: 7 images cannot be read (the fix of each kind follows the list):\n"), err
    # the fault: five fakes were named, the colour map only counted in "and 2 more"
    assert f"\n  --labels map {labels / '3.png'} is an RGB image (3 channels)\n  ... and 1 more\n" in err, err
    assert f"{fake / '5.tif'}" not in err, err
    assert "for each mode-I or mode-F image" in err and "for each colour image given as a label map" in err, err

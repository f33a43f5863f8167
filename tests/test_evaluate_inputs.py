"""python -m pix2pixhd.evaluate on inputs and options it cannot score as given: 16-bit, 32-bit
and float images, truncated files, unusable --inception files, out-of-range options, a missing
device, too few images for FID, the same folder on both sides, a synthesize.py output root.

Each error is one ``error:`` line from the command line (errors.run); images are 16-32 px.
"""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("torchmetrics")

from pix2pixhd.evaluate import evaluate, fid_kid, format_table  # noqa: E402
from tests.evaluate_cli import one_error  # noqa: E402


def _grey(n, seed=0, size=16):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(n)]


def _save(folder, images, ext="png", conv=lambda a: a):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(images):
        Image.fromarray(conv(a)).save(folder / f"{i}.{ext}")
    return folder


_error = one_error   # tests/evaluate_cli.py


def test_16_bit_grey_images_score_as_their_8_bit_picture(tmp_path, capsys):
    # the fault: convert("RGB") clipped 16-bit values to 255: the same picture scored PSNR 4.98 dB
    imgs = _grey(3)
    f8 = _save(tmp_path / "f8", imgs)
    for name, ext, conv in (("png16", "png", lambda a: a.astype(np.uint16) * 257),
                            ("tif16", "tif", lambda a: a.astype(np.uint16) << 8)):
        real = _save(tmp_path / name, imgs, ext, conv)
        assert Image.open(real / f"0.{ext}").mode.startswith("I;16")
        res = evaluate(f8, real, no_fid=True, verbose=False)
        assert res["psnr"] == float("inf") and res["ssim"] == pytest.approx(1.0)
    # 32-bit integer and float images have no fixed range: refused, naming the file and mode
    for mode, conv in (("I", lambda a: a.astype(np.int32)), ("F", lambda a: a.astype(np.float32))):
        real = _save(tmp_path / mode, imgs, "tif", conv)
        err = _error(capsys, ["--fake", str(f8), "--real", str(real), "--no_fid"])
        assert f"--real image {real / '0.tif'} is a mode-{mode} image" in err
        assert "convert it to an 8-bit (or 16-bit) PNG" in err


def test_a_truncated_image_is_one_error_naming_it(tmp_path, capsys):
    fake, real = _save(tmp_path / "fake", _grey(3)), _save(tmp_path / "real", _grey(3, 1))
    data = (real / "1.png").read_bytes()
    (real / "1.png").write_bytes(data[:len(data) // 2])
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert f"--real image {real / '1.png'} cannot be read (image file is truncated)" in err
    (real / "1.png").write_bytes(data)
    (fake / "2.png").write_text("not an image")
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert f"--fake image {fake / '2.png'} cannot be read" in err and "not an image" in err


def test_an_unusable_inception_file_is_one_error_naming_the_expected_file(tmp_path, capsys):
    # the fault: a 22-line traceback blaming "checkpoint corruption"
    fake, real = _save(tmp_path / "fake", _grey(2)), _save(tmp_path / "real", _grey(2, 1))
    torch.save(nn.Conv2d(3, 4, 3).state_dict(), tmp_path / "pt_inception.pth")   # weights only
    (tmp_path / "notes.pt").write_text("hello")
    torch.jit.script(nn.Flatten(0)).save(str(tmp_path / "flat.pt"))   # TorchScript, wrong kind
    args = ["--fake", str(fake), "--real", str(real), "--inception"]
    for name, what in (("pt_inception.pth", "is not a TorchScript module (a torch.save file"),
                       ("notes.pt", "is not a TorchScript module (not a zip archive"),
                       ("flat.pt", "is TorchScript but not an Inception of the expected kind")):
        err = _error(capsys, args + [str(tmp_path / name)])
        assert f"--inception {tmp_path / name} {what}" in err, err
        assert "default_1.pt" in err and "--no_fid" in err and "corrupt" not in err
    err = _error(capsys, args + [str(tmp_path)])
    assert f"--inception {tmp_path} is a folder" in err and "default_1.pt" in err and "--no_fid" in err


@pytest.mark.parametrize("option, values, says", [
    ("--kid_subset_size", ["1"], "KID's subsets need 2 images or more"),
    ("--kid_subset_size", ["0"], "KID's subsets need 2 images or more"),
    ("--kid_subsets", ["0"], "KID needs 1 random subset or more"),
    ("--resize", ["0", "0"], "H and W must be at least 11 pixels"),
    ("--resize", ["-5", "20"], "H and W must be at least 11 pixels"),
])
def test_out_of_range_options_are_refused_before_any_work(tmp_path, capsys, option, values, says):
    # the folders do not exist: the option is checked first (it was nan, or a raw ValueError)
    err = _error(capsys, ["--fake", str(tmp_path / "no"), "--real", str(tmp_path / "no"),
                          option, *values])
    assert err.startswith(f"error: {option} {' '.join(values)}: {says}"), err


def test_kid_from_one_subset_has_no_std(tmp_path):
    # the fault: --kid_subsets 1 reported "kid_std": 0.0
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g, dtype=torch.float64)
    res = fid_kid(a, b, kid_subsets=1, kid_subset_size=4)
    assert res["kid_std"] is None and "--kid_subsets 2 or more" in res["kid_std_note"]
    assert np.isfinite(res["kid_mean"]) and fid_kid(a, b, kid_subsets=3, kid_subset_size=4)["kid_std"] > 0
    res.update(n_images=8, psnr=1.0, ssim=0.5)
    assert "± n/a (one subset (--kid_subsets 1)" in format_table(res)


def test_device_is_checked_up_front(tmp_path, capsys, monkeypatch):
    no = ["--fake", str(tmp_path / "no"), "--real", str(tmp_path / "no"), "--no_fid"]
    err = _error(capsys, no + ["--device", "gpu"])
    assert err == "error: --device 'gpu': expected auto, cpu, cuda or cuda:N (or mps)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # a CPU-only torch
    err = _error(capsys, no + ["--device", "cuda"])
    assert err.startswith("error: --device cuda: CUDA is not available on this machine (torch ") and \
        err.endswith("); use --device cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    err = _error(capsys, no + ["--device", "cuda:3"])
    assert "--device cuda:3: this machine has 1 CUDA device(s)" in err


def test_fid_with_one_pair_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    fake, real = _save(tmp_path / "fake", _grey(1)), _save(tmp_path / "real", _grey(1, 1))
    import pix2pixhd.evaluate as ev

    def no_reading(*a, **k):
        raise AssertionError("an image was read before the count was checked")
    monkeypatch.setattr(ev, "_load_rgb", no_reading)
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--inception", str(tmp_path / "none.pt")])
    assert "FID/KID need at least 2 image pairs" in err and "have 1" in err and "--no_fid" in err


def test_the_same_folder_on_both_sides_is_refused(tmp_path, capsys):
    # the fault: PSNR inf, SSIM 1 without a word
    folder = _save(tmp_path / "imgs", _grey(2))
    err = _error(capsys, ["--fake", str(folder), "--real", str(folder) + "/", "--no_fid"])
    assert f"--fake {folder} and --real {folder}" in err and "are the same images (2 of 2 pairs" in err
    shutil.copytree(folder, tmp_path / "copy")   # a copy is scored: identical images, PSNR inf
    assert evaluate(folder, tmp_path / "copy", no_fid=True, verbose=False)["psnr"] == float("inf")


def test_a_synthesize_output_root_points_to_its_img_folder(tmp_path, capsys):
    # the fault: "--fake OUT holds no images", with the synthesized photos in OUT/test_img
    out = tmp_path / "out"
    _save(out / "test_img", _grey(2))
    _save(out / "test_label", _grey(2))
    (out / "synthesis.json").write_text(json.dumps({}))
    real = _save(tmp_path / "real", _grey(2, 1))
    err = _error(capsys, ["--fake", str(out), "--real", str(real), "--no_fid"])
    assert f"--fake {out} holds no images" in err and "(test_img, test_label: a synthesize.py output folder)" in err
    assert f"e.g. --fake {out / 'test_img'} " in err and "OUT/<phase>_img" in err

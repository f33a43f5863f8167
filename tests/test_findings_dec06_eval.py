"""Findings of 6 Dec on python -m pix2pixhd.evaluate: settings and notes recorded in the JSON, the
SSIM sentences, the per-city folder hint, pairs without a label map, identical pairs, EXIF
orientation and transparency. Images are 32 px."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import pix2pixhd.evaluate as ev
from pix2pixhd.errors import MissingInputError
from pix2pixhd.evaluate import SegmenterConfig, evaluate, format_table, index_folder, main

ROOT = Path(__file__).resolve().parents[1]


def _imgs(n, seed, size=32):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def _save(folder, images, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{i}.{ext}")
    return folder


def _tiny_extractor():
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, 8, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def test_settings_and_notes_are_in_the_json_and_table(tmp_path, capsys):
    # the fault: --resize, --kid_subsets and --seed changed the metrics but were not recorded,
    # and the few-images FID note was printed only
    fake, real = _save(tmp_path / "f", _imgs(4, 0)), _save(tmp_path / "r", _imgs(4, 1))
    res = evaluate(fake, real, feature_extractor=_tiny_extractor(), resize=(32, 40), kid_subsets=3,
                   kid_subset_size=2, seg=SegmenterConfig(seed=5), verbose=False)
    assert res["resize"] == [32, 40] and res["kid_subsets"] == 3 and res["seed"] == 5
    assert any(n.startswith("FID from 4 images") for n in res["notes"])
    table = format_table(res)
    assert "40x32 (WxH), bicubic" in table and "3 subsets of 2, seed 5" in table
    out = tmp_path / "m.json"
    assert main(["--fake", str(fake), "--real", str(real), "--no_fid", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["resize"] is None and d["notes"] == []


def test_ssim_sentences_say_what_is_computed():
    # the fault: "as Wang et al.'s reference code defines it", untrue of their ssim.m (grey,
    # downsampled by round(min(H, W) / 256))
    doc = (ROOT / "docs" / "evaluation.md").read_text()
    for text in (" ".join(t.split()) for t in (ev.__doc__, ev.ssim.__doc__, doc)):
        assert "reference code" not in text and "ssim.m" in text and "round(min(H, W) / 256)" in text


def test_readme_and_ablations_agree_on_the_ablations_ssim():
    readme = " ".join((ROOT / "README.md").read_text().split())
    # the ablation tables were made with the valid-window SSIM (c84607e), not torchmetrics'
    assert "SSIM here, and in docs/ablations.md, is what" not in readme
    assert "docs/ablations.md's tables were made after that change" in readme
    assert "valid-window SSIM" in (ROOT / "docs" / "ablations.md").read_text()


def test_per_city_subfolders_are_told_to_be_flattened(tmp_path):
    # the fault: the hint suggested one city's folder, which scores only that city's pairs
    for city in ("frankfurt", "lindau", "munster"):
        _save(tmp_path / "val" / city, _imgs(1, 0))
    with pytest.raises(MissingInputError) as e:
        index_folder(tmp_path / "val", "--real")
    msg = str(e.value)
    assert "3 subfolders" in msg and "in one folder" in msg and f"--real {tmp_path / 'val'}/" not in msg
    # a dataset root of splits still gets the split suggested
    for split in ("train", "test"):
        _save(tmp_path / "root" / split, _imgs(1, 0))
    with pytest.raises(MissingInputError, match=f"--real {tmp_path / 'root' / 'test'}"):
        index_folder(tmp_path / "root", "--real")


def test_pairs_without_a_label_map_are_noted(tmp_path):
    # the fault: 4 pairs, 3 label maps: the segmentation score covered 3 without a word
    fake, real = _save(tmp_path / "f", _imgs(4, 0)), _save(tmp_path / "r", _imgs(4, 1))
    tr = _save(tmp_path / "ti", _imgs(2, 2))
    for folder, n in ((tmp_path / "lab", 3), (tmp_path / "tl", 2)):
        folder.mkdir()
        for i in range(n):
            Image.fromarray(np.full((32, 32), i % 2, np.uint8)).save(folder / f"{i}.png")
    res = evaluate(fake, real, labels_dir=tmp_path / "lab", train_images=tr, train_labels=tmp_path / "tl",
                   label_nc=2, no_fid=True, seg_width=32,
                   seg=SegmenterConfig(steps=1, batch_size=2, width=4), verbose=False)
    s = res["segmentation"]
    assert s["n_test"] == 3 and s["n_without_label"] == 1
    assert any(n.startswith("1 of 4 scored pairs have no --labels map") and "3.png" in n for n in res["notes"])
    assert "1 pairs without a label map left out" in format_table(res)


def test_identical_pairs_are_counted_next_to_the_inf_mean(tmp_path):
    # the fault: one identical pair made the mean PSNR inf with no count and no note
    a, b = _imgs(3, 0), _imgs(3, 1)
    fake, real = _save(tmp_path / "f", a), _save(tmp_path / "r", [a[0], b[1], b[2]])
    res = evaluate(fake, real, no_fid=True, verbose=False)
    other = float(ev.psnr(torch.from_numpy(np.stack(a[1:])).permute(0, 3, 1, 2),
                          torch.from_numpy(np.stack(b[1:])).permute(0, 3, 1, 2)).mean())
    assert res["psnr"] == math.inf and res["n_identical_pairs"] == 1
    assert res["psnr_finite_mean"] == pytest.approx(other)
    assert any("1 of 3 pairs are identical images (e.g. 0.png)" in n for n in res["notes"])
    assert f"inf (1 identical pairs; {other:.3f} over the other 2)" in format_table(res)


def test_exif_orientation_and_transparency_are_noted(tmp_path):
    # the fault: a JPEG tagged Orientation 6 and an RGBA image with a transparent half were
    # scored as stored without a word
    real = _save(tmp_path / "r", _imgs(2, 1))
    fake = tmp_path / "f"
    fake.mkdir()
    a = _imgs(2, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a[0]).save(fake / "0.jpg", exif=exif)
    rgba = np.dstack([a[1], np.full((32, 32), 255, np.uint8)])
    rgba[:, 16:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(fake / "1.png")
    notes = evaluate(fake, real, no_fid=True, verbose=False)["notes"]
    assert any(n.startswith("1 --fake image in") and "0.jpg (Orientation 6)" in n for n in notes)
    assert any(n.startswith("1 --fake image in") and "transparent pixels (1.png)" in n for n in notes)
    # opaque RGBA and untagged images: no note
    Image.fromarray(np.dstack([a[1], np.full((32, 32), 255, np.uint8)]), "RGBA").save(fake / "1.png")
    Image.fromarray(a[0]).save(fake / "0.jpg")
    assert evaluate(fake, real, no_fid=True, verbose=False)["notes"] == []


def test_dot_files_beside_the_images_are_not_images(tmp_path):
    """macOS ._* files (AppleDouble, copied beside each image) are ignored as the data module's
    listing ignores them: they were read as images and failed."""
    import numpy as np
    from PIL import Image

    from pix2pixhd.evaluate import index_folder
    for side in ("f", "r"):
        (tmp_path / side).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / side / "a.png")
        (tmp_path / side / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert list(index_folder(tmp_path / "f", "--fake")) == ["a"]

"""Validation before training: each kind of problem is reported with its files and a count."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.__main__ import main as data_main

sys.path.insert(0, str(Path(__file__).parent))   # the block datasets of test_data.py
from test_data import NC, write_cityscapes  # noqa: E402


@pytest.fixture()
def city(tmp_path):
    write_cityscapes(tmp_path, "train", 3, feat=False)
    return tmp_path


def _err(root, **kw):
    kw = {"label_nc": NC, "resize_or_crop": "none", **kw}
    with pytest.raises(DatasetError) as e:
        create_dataset(root, **kw)
    return e.value


def test_clean_dataset_passes(city):
    assert len(create_dataset(city, label_nc=NC, resize_or_crop="none")) == 3


def test_missing_partner(city):
    (city / "train_img/s1.png").unlink()
    (city / "train_inst/s2.png").unlink()
    e = _err(city)
    assert "missing partner: 2 file(s)" in str(e)
    assert "train_label/s1.png has no train_img/s1.*" in str(e)
    assert "train_label/s2.png has no train_inst/s2.*" in str(e)
    assert {p[0] for p in e.problems} == {"missing partner"}


def test_missing_instance_folder_names_the_fix(city):
    import shutil
    shutil.rmtree(city / "train_inst")
    assert "no_instance=True" in str(_err(city))
    assert len(create_dataset(city, label_nc=NC, no_instance=True, resize_or_crop="none")) == 3


def test_size_mismatch(city):
    Image.new("RGB", (32, 32)).save(city / "train_img/s0.png")
    e = _err(city)
    assert "size mismatch" in str(e) and "train_label/s0.png" in str(e) and "image 32x32" in str(e)


def test_truncated_and_unreadable(city):
    data = (city / "train_img/s1.png").read_bytes()
    (city / "train_img/s1.png").write_bytes(data[: len(data) // 2])
    (city / "train_inst/s2.png").write_bytes(b"not an image")
    e = _err(city)
    assert "unreadable: 2 file(s)" in str(e)
    assert "train_img/s1.png" in str(e) and "train_inst/s2.png" in str(e)
    # Headers alone do not see the truncation, only the garbage file.
    e = _err(city, validate="headers")
    assert "train_inst/s2.png" in str(e) and "train_img/s1.png" not in str(e)


def test_ids_at_or_above_label_nc(city):
    lab = np.zeros((32, 64), np.uint8)
    lab[3, 4] = 40
    Image.fromarray(lab).save(city / "train_label/s0.png")
    e = _err(city)
    assert "label id 40 in train_label/s0.png is >= label_nc=6; set label_nc 41" in str(e)
    # 16-bit label maps: the loader refuses ids that would not fit, even unvalidated.
    Image.fromarray(np.full((32, 64), 300, np.uint16)).save(city / "train_label/s1.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match="label id 300"):
        ds[1]


def test_wrong_channel_counts(city):
    Image.new("RGB", (64, 32)).save(city / "train_label/s0.png")
    Image.new("RGBA", (64, 32)).save(city / "train_img/s1.png")
    Image.new("RGB", (64, 32)).save(city / "train_inst/s2.png")
    e = _err(city)
    assert "wrong channels: 3 file(s)" in str(e)
    assert "pass palette=" in str(e) and "mode RGBA" in str(e) and "train_inst/s2.png" in str(e)


def test_sizes_the_generator_cannot_take(city):
    e = _err(city, resize_or_crop="scale_width", loadSize=40, required_multiple=16)
    assert "becomes 40x20" in str(e) and "not a multiple of 16" in str(e)
    assert "size not a multiple: 3 file(s)" in str(e)


def test_lists_first_few_and_a_count(tmp_path):
    write_cityscapes(tmp_path, "train", 9, feat=False)
    for i in range(8):
        (tmp_path / f"train_img/s{i}.png").unlink()
    msg = str(_err(tmp_path))
    assert "missing partner: 8 file(s), first 5:" in msg and "... and 3 more" in msg
    assert msg.count("has no train_img") == 5


def test_no_dataset_found(tmp_path):
    with pytest.raises(DatasetError, match="synthetic_streets"):
        create_dataset(tmp_path / "nothing")


def test_scan_command(city, capsys):
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 0
    out = capsys.readouterr().out
    assert "[train] cityscapes layout, 3 samples" in out and "64x32 (3)" in out
    assert "no problems" in out and "pixel frequency" in out
    (city / "train_img/s1.png").unlink()
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 1
    assert "missing partner" in capsys.readouterr().out

"""Messy real datasets (findings of Dec 6): the folder listing's problems with --validate off,
16-bit photos at read time, EXIF orientation on A|B images, hidden (dot) files, grey id maps
saved as RGB, lossy WebP id maps, and smaller message fixes."""
import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.dataset import check_batch_sizes

W, H = 32, 32
NONE = dict(label_nc=4, resize_or_crop="none", required_multiple=16, no_instance=True)


def _ids(w=W, h=H):
    ids = np.zeros((h, w), np.uint8)
    for k in range(1, 4):
        ids[:, k * w // 4:] = k
    return ids


def _split(root, n=2, label=None, photo=None, names=None):
    """``n`` label maps and RGB photos of the cityscapes layout (no instance maps)."""
    for d in ("train_label", "train_img"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names or [f"s{i}" for i in range(n)]):
        (label or Image.fromarray(_ids())).save(root / "train_label" / f"{name}.png")
        (photo or Image.fromarray(np.stack([_ids() * 60] * 3, -1))).save(root / "train_img" / f"{name}.png")
    return root


def _err(root, **kw):
    with pytest.raises(DatasetError) as e:
        create_dataset(root, **{**NONE, **kw})
    return str(e.value)


# 1 -----------------------------------------------------------------------------------------------
def test_validate_off_notes_samples_left_out_by_the_listing(tmp_path, capsys):
    _split(tmp_path, 3)
    (tmp_path / "train_img" / "s1.png").unlink()
    ds = create_dataset(tmp_path, validate="off", **NONE)
    assert len(ds) == 2
    err = capsys.readouterr().err
    assert f"2 complete sample(s) in {tmp_path} (phase 'train', cityscapes layout); the folder listing " \
           "leaves out what follows" in err, err
    assert "missing partner: 1 file(s)" in err and "train_label/s1.png has no train_img/s1.*" in err, err


def test_validate_off_refuses_a_split_with_no_complete_sample(tmp_path):
    _split(tmp_path, 2)
    for p in (tmp_path / "train_img").iterdir():
        p.rename(p.with_name("x" + p.name))
    msg = _err(tmp_path, validate="off")
    assert msg.startswith(f"no complete sample in {tmp_path}"), msg
    assert "no file has all its partners" in msg and "train_label/s0.png has no train_img/s0.*" in msg, msg
    assert "batchSize" not in msg


def test_validate_off_names_images_in_sub_folders(tmp_path):
    _split(tmp_path, 1)
    for d in ("train_label", "train_img"):
        (tmp_path / d / "city").mkdir()
        (tmp_path / d / "s0.png").rename(tmp_path / d / "city" / "s0.png")
    msg = _err(tmp_path, validate="off")
    assert "its images are in sub-folders (train_img/city/, train_label/city/)" in msg, msg


# 2 -----------------------------------------------------------------------------------------------
def test_16_bit_photo_refused_at_read_time_with_validate_off(tmp_path):
    _split(tmp_path, 1, photo=Image.fromarray((_ids().astype(np.uint16) * 5000)))
    ds = create_dataset(tmp_path, validate="off", **NONE)
    with pytest.raises(DatasetError) as e:
        ds[0]
    msg = str(e.value)
    assert f"{tmp_path}/train_img/s0.png: this photo has mode I" in msg, msg
    assert "save it as an 8-bit RGB or grey PNG" in msg and "clipped to 255" in msg, msg


# 3 -----------------------------------------------------------------------------------------------
def _ab_exif(root, orientation):
    (root / "train").mkdir(parents=True)
    a = np.zeros((H, 2 * W, 3), np.uint8)
    a[:, W:] = 200
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(root / "train" / "1.jpg", exif=exif)


@pytest.mark.parametrize("validate", ["headers", "full"])
def test_ab_image_with_exif_rotation_refused_by_validation(tmp_path, validate):
    _ab_exif(tmp_path, 3)
    msg = _err(tmp_path, label_nc=0, validate=validate)
    assert "EXIF orientation: 1 file(s)" in msg, msg
    assert "train/1.jpg has EXIF Orientation 3 (viewers show it turned 180 degrees)" in msg, msg
    assert "PIL.ImageOps.exif_transpose(im).save(...)" in msg, msg


def test_ab_image_with_exif_rotation_refused_by_the_loader(tmp_path):
    _ab_exif(tmp_path, 2)
    ds = create_dataset(tmp_path, validate="off", **{**NONE, "label_nc": 0})
    with pytest.raises(DatasetError, match="has EXIF Orientation 2"):
        ds[0]


# 4 -----------------------------------------------------------------------------------------------
def test_dot_files_are_ignored_in_every_layout(tmp_path, capsys):
    junk = b"\0\x05\x16\x07\0\x02\0\0Mac OS X        " + b"\0" * 60
    _split(tmp_path / "c", 1)
    (tmp_path / "c" / "train_img" / "._s0.png").write_bytes(junk)
    (tmp_path / "c" / "train_label" / "._s0.png").write_bytes(junk)
    ds = create_dataset(tmp_path / "c", **NONE)
    assert len(ds) == 1
    assert "train_img/._s0.png: hidden (name starts with '.'" in capsys.readouterr().err
    _ab_exif(tmp_path / "a", 1)
    (tmp_path / "a" / "train" / "._1.jpg").write_bytes(junk)
    assert len(create_dataset(tmp_path / "a", **{**NONE, "label_nc": 0})) == 1
    for d in ("trainA", "trainB"):
        (tmp_path / "u" / d).mkdir(parents=True)
        Image.new("RGB", (W, H)).save(tmp_path / "u" / d / "1.png")
        (tmp_path / "u" / d / "._1.png").write_bytes(junk)
    assert len(create_dataset(tmp_path / "u", **{**NONE, "label_nc": 0})) == 1


# 5 -----------------------------------------------------------------------------------------------
def test_grey_ids_saved_as_rgb_are_named_so(tmp_path):
    _split(tmp_path, 1, label=Image.fromarray(np.stack([_ids()] * 3, -1)))
    msg = _err(tmp_path)
    assert "its three channels are equal: a grey id map saved as RGB; re-save it as 8-bit grey" in msg, msg
    assert "pass --palette" not in msg, msg
    ds = create_dataset(tmp_path, validate="off", **NONE)
    with pytest.raises(DatasetError, match="its three channels are equal"):
        ds[0]


def test_lossy_webp_label_map_is_a_lossy_id_map(tmp_path):
    if not Image.registered_extensions().get(".webp"):
        pytest.skip("no WebP support in PIL")
    _split(tmp_path, 1)
    (tmp_path / "train_label" / "s0.png").unlink()
    Image.fromarray(_ids()).save(tmp_path / "train_label" / "s0.webp", lossless=False, quality=80)
    msg = _err(tmp_path, validate="headers")
    assert "lossy id map: 1 file(s)" in msg and "saved as lossy WebP" in msg, msg
    assert "wrong channels" not in msg, msg


# 6 -----------------------------------------------------------------------------------------------
def test_size_messages_name_only_the_options_of_the_mode(tmp_path):
    _split(tmp_path, 1)
    msg = _err(tmp_path, resize_or_crop="scale_width", loadSize=40)
    assert "with resize_or_crop=scale_width loadSize=40, not a multiple of 16" in msg, msg
    assert "fineSize" not in msg, msg
    Image.fromarray(_ids(64, 32)).save(tmp_path / "train_label" / "s1.png")
    Image.new("RGB", (64, 32)).save(tmp_path / "train_img" / "s1.png")
    ds = create_dataset(tmp_path, **NONE)
    with pytest.raises(DatasetError) as e:
        check_batch_sizes(ds, 2)
    assert "sizes with resize_or_crop=none, but a batch" in str(e.value), str(e.value)


def test_zero_byte_file_is_called_empty(tmp_path):
    _split(tmp_path, 1)
    (tmp_path / "train_img" / "s0.png").write_bytes(b"")
    assert "train_img/s0.png: cannot read: the file is empty (0 bytes)" in _err(tmp_path)
    ds = create_dataset(tmp_path, validate="off", **NONE)
    with pytest.raises(DatasetError, match=r"cannot read this photo: the file is empty \(0 bytes\)"):
        ds[0]


def test_partners_differing_only_in_case_are_named(tmp_path):
    _split(tmp_path, 1, names=["s0"])
    (tmp_path / "train_img" / "s0.png").rename(tmp_path / "train_img" / "S0.png")
    msg = _err(tmp_path)
    assert "train_label/s0.png has no train_img/s0.* (train_img/S0.png differs only in upper/lower case" in msg, msg


def test_cityscapes_color_beside_label_ids_names_the_one_to_keep(tmp_path):
    _split(tmp_path, 1, names=["a_000000_000019_gtFine_labelIds"])
    Image.fromarray(np.stack([_ids() * 60] * 3, -1)).save(
        tmp_path / "train_label" / "a_000000_000019_gtFine_color.png")
    msg = _err(tmp_path, validate="headers")
    assert ("keep a_000000_000019_gtFine_labelIds.png (the id map) and move "
            "a_000000_000019_gtFine_color.png") in msg, msg


def test_dry_run_refuses_what_the_runs_validation_refuses_in_the_listing(tmp_path, capsys):
    """--dry_run lists the dataset without reading files: a missing partner, which the run's
    validation refuses, is an error there too (it passed with a 'validation off' note)."""
    from pix2pixhd.cli import train_main
    from pix2pixhd.data.dataset import DatasetError
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    root = tmp_path / "st"
    generate(root, n_train=4, n_test=0, width=32, height=32, seed=0)
    sorted((root / "train_img").iterdir())[0].unlink()
    argv = ["--name", "x", "--checkpoints_dir", str(tmp_path / "ck"), "--dataroot", str(root), "--label_nc",
            str(LABEL_NC), "--no_vgg_loss", "--resize_or_crop", "none", "--device", "cpu", "--dry_run"]
    with pytest.raises(DatasetError, match=r"missing partner(.|\n)*--validate full, refuses them"):
        train_main(argv)
    capsys.readouterr()
    assert train_main([*argv, "--validate", "off"]) == 0
    err = capsys.readouterr().err
    assert "3 complete sample(s)" in err and "missing partner" in err

"""A user walkthrough's data findings: flips on a phase not named train, colours missing from the
palette, indexed PNGs with their own palettes, EXIF rotations of any kind, JPEG id maps, the
loader's scan hint, other tools' folder names, scan's size checks, --max_dataset_size before
validation, cityscapesScripts' instanceTrainIds, and three smaller ones."""
import io
import json
import re
import shlex

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.__main__ import main as data_main

W, H = 48, 32
NONE = dict(resize_or_crop="none", required_multiple=16, no_instance=True)


def _ids(w=W, h=H):
    """Four vertical bands of ids 0..3."""
    ids = np.zeros((h, w), np.uint8)
    for k in range(1, 4):
        ids[:, k * w // 4:] = k
    return ids


def _split(root, phase="train", labels=None, n=1, ext="png", photo=None):
    """``n`` label maps (PIL images, or ``_ids()``) with grey photos in the cityscapes layout."""
    for d in ("label", "img"):
        (root / f"{phase}_{d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        lab = labels[i] if labels else Image.fromarray(_ids())
        lab.save(root / f"{phase}_label" / f"s{i}.{ext}")
        (photo or Image.fromarray(np.stack([_ids() * 60] * 3, -1))).save(root / f"{phase}_img" / f"s{i}.png")
    return root


def _err(root, **kw):
    with pytest.raises(DatasetError) as e:
        create_dataset(root, **{"label_nc": 4, **NONE, **kw})
    return str(e.value)


# 1 -----------------------------------------------------------------------------------------------
def test_is_train_flips_a_phase_named_trainval_and_without_it_a_note_says_flips_are_off(tmp_path, capsys):
    _split(tmp_path, "trainval")
    ds = create_dataset(tmp_path, "trainval", label_nc=4, is_train=True, **NONE)
    firsts = {int(ds[(0, epoch)]["label"][0, 0, 0]) for epoch in range(12)}
    assert firsts == {0, 3}   # flipped in some epochs: the right band (3) comes first
    capsys.readouterr()
    ds = create_dataset(tmp_path, "trainval", label_nc=4, **NONE)
    assert {int(ds[(0, epoch)]["label"][0, 0, 0]) for epoch in range(12)} == {0}
    assert "phase 'trainval' is read without random flips" in capsys.readouterr().err


# 2 -----------------------------------------------------------------------------------------------
COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]


def test_a_colour_missing_from_the_palette_is_named_not_merged_into_the_nearest(tmp_path):
    rgb = np.array(COLOURS, np.uint8)[_ids()]
    rgb[0, :] = (224, 224, 192)   # VOC's border colour on one row (48 px, 3%)
    _split(tmp_path, labels=[Image.fromarray(rgb)])
    (tmp_path / "pal.json").write_text(json.dumps(COLOURS))
    msg = _err(tmp_path, palette=str(tmp_path / "pal.json"))
    assert "colour not in palette: 1 file(s)" in msg, msg
    assert "train_label/s0.png: colour (224, 224, 192) covers 48 pixels (3.1%)" in msg, msg
    assert "add the colour to the palette" in msg and "recolour" in msg, msg
    # a class left out of the palette: its colour is named too
    (tmp_path / "pal3.json").write_text(json.dumps(COLOURS[:3]))
    msg = _err(tmp_path, palette=str(tmp_path / "pal3.json"), label_nc=3)
    assert "colour (128, 128, 0) covers 372 pixels (24.2%) of the map" in msg, msg
    assert "id 1 (128, 0, 0); also (224, 224, 192) (48 px)" in msg, msg


def test_a_jpeg_colour_map_of_palette_colours_is_not_flagged(tmp_path):
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 4, (8, 12)), np.ones((8, 8), int))
    b = io.BytesIO()
    Image.fromarray(np.array(COLOURS, np.uint8)[blocks]).save(b, "JPEG", quality=75)
    _split(tmp_path, labels=[Image.open(b)], photo=Image.new("RGB", (96, 64)))
    (tmp_path / "pal.json").write_text(json.dumps(COLOURS))
    assert len(create_dataset(tmp_path, label_nc=4, palette=str(tmp_path / "pal.json"), **NONE)) == 1


# 3 -----------------------------------------------------------------------------------------------
def _indexed(ids, colours, order):
    """A P image showing ``colours[ids]`` whose palette lists the colours in ``order``."""
    inv = np.argsort(order)
    p = Image.fromarray(inv[ids].astype(np.uint8), "P")
    p.putpalette(np.array(colours, np.uint8)[order].ravel().tolist())
    return p


def test_indexed_label_maps_whose_palettes_disagree_are_refused(tmp_path):
    ids = _ids()
    maps = [_indexed(ids, COLOURS, [1, 0, 2, 3]), _indexed(ids, COLOURS, [0, 1, 2, 3])]
    _split(tmp_path, labels=maps, n=2)
    msg = _err(tmp_path)
    assert "P palettes differ: 1 file(s)" in msg, msg
    assert ("train_label/s1.png: index 0 of this indexed (P) PNG is colour (0, 0, 0), but (128, 0, 0) in "
            "train_label/s0.png") in msg, msg
    assert "pass --palette with the classes' colours" in msg and "save the maps as id maps" in msg, msg
    (tmp_path / "pal.json").write_text(json.dumps(COLOURS))   # the fix: read the colours
    ds = create_dataset(tmp_path, label_nc=4, palette=str(tmp_path / "pal.json"), no_flip=True, **NONE)
    assert all((ds[i]["label"][0].numpy() == ids).all() for i in range(2))
    # VOC-style: one palette shared by every file, read as indices
    shared = tmp_path / "voc"
    _split(shared, labels=[_indexed(ids, COLOURS, [1, 0, 2, 3])] * 2, n=2)
    ds = create_dataset(shared, label_nc=4, no_flip=True, **NONE)
    assert (ds[1]["label"][0].numpy() == np.argsort([1, 0, 2, 3])[ids]).all()


# 4 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation,size", [(2, (W, H)), (3, (W, H)), (6, (H, H))])
def test_a_photo_with_an_exif_rotation_is_refused_also_when_the_sizes_agree(tmp_path, orientation, size):
    _split(tmp_path, labels=[Image.fromarray(_ids(*size))])
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "train_img" / "s0.png").unlink()
    Image.new("RGB", size).save(tmp_path / "train_img" / "s0.jpg", exif=exif.tobytes())
    msg = _err(tmp_path)
    assert f"train_img/s0.jpg has EXIF Orientation {orientation} (viewers show it" in msg, msg
    assert "train_label/s0.png has none" in msg and "PIL.ImageOps.exif_transpose" in msg, msg


# 5 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["label", "inst"])
def test_jpeg_id_maps_are_refused_before_their_made_up_ids(tmp_path, role):
    _split(tmp_path)
    if role == "label":
        (tmp_path / "train_label" / "s0.png").unlink()
        Image.fromarray(_ids()).save(tmp_path / "train_label" / "s0.jpg", quality=75)
    else:
        (tmp_path / "train_inst").mkdir()
        Image.fromarray(_ids()).save(tmp_path / "train_inst" / "s0.jpg", quality=75)
    what = {"label": "label map", "inst": "instance map"}[role]
    msg = _err(tmp_path, no_instance=role == "label")
    assert "lossy id map: 1 file(s)" in msg and f"this {what} is saved as JPEG, which is lossy" in msg, msg
    assert "save id maps as PNG" in msg and "--label_nc" not in msg, msg
    ds = create_dataset(tmp_path, label_nc=4, **{**NONE, "no_instance": role == "label"}, validate="off")
    with pytest.raises(DatasetError, match=f"s0.jpg: this {what} is saved as JPEG"):
        ds[0]


# 6 -----------------------------------------------------------------------------------------------
def test_the_loaders_scan_hint_carries_the_options_that_find_the_file(tmp_path, capsys):
    ids = _ids()
    ids[0, 0] = 7
    _split(tmp_path, labels=[Image.fromarray(ids)])
    ds = create_dataset(tmp_path, label_nc=4, validate="off", **NONE)
    with pytest.raises(DatasetError) as e:
        ds[0]
    hint = re.search(r"`python -m pix2pixhd\.data scan (.*?)`", str(e.value)).group(1)
    assert hint == f"{tmp_path} --label_nc 4 --no_instance --model pix2pixhd --resize_or_crop none", hint
    capsys.readouterr()
    assert data_main(["scan"] + shlex.split(hint)) == 1
    assert "label id 7 in train_label/s0.png is >= label_nc=4" in capsys.readouterr().out
    assert data_main(["scan", str(tmp_path), "--resize_or_crop", "none", "--no_instance"]) == 0   # label_nc 256: nothing found


# 7 -----------------------------------------------------------------------------------------------
def test_other_tools_folder_names_get_the_layout_and_a_rename(tmp_path, capsys):
    for d in ("a/images", "a/masks", "b/train/images", "b/train/labels"):
        (tmp_path / d).mkdir(parents=True)
        Image.new("L", (32, 32)).save(tmp_path / d / "x.png")
    a, b = tmp_path / "a", tmp_path / "b"
    msg = _err(a, label_nc=9)
    assert f"`mv {a}/images {a}/train_img && mv {a}/masks {a}/train_label`" in msg, msg
    assert "--phase images" not in msg and "--phase masks" not in msg, msg
    msg = _err(a, phase="images", label_nc=0)   # read as AB images, each photo cut in halves
    assert "is not a folder of pix2pix AB images" in msg and "train_img" in msg, msg
    msg = _err(b, label_nc=9)
    assert "holds AB images" not in msg and "--palette facades" not in msg, msg
    assert f"{b}/train/ holds no image directly (it holds images/, labels/" in msg, msg
    assert f"`mv {b}/train/images {b}/train_img && mv {b}/train/labels {b}/train_label`" in msg, msg
    from pix2pixhd.errors import run
    assert run(data_main, ["scan", str(a)]) == 1   # no split: one error line (the fix: a rename)
    assert f"mv {a}/images {a}/train_img" in capsys.readouterr().err


# 8 -----------------------------------------------------------------------------------------------
def test_scan_checks_sizes_as_training_does_by_default(tmp_path, capsys):
    _split(tmp_path)   # 48x32: scale_width makes it 1024x682, not a multiple of 16
    _err(tmp_path, resize_or_crop="scale_width")   # training's defaults refuse it
    assert data_main(["scan", str(tmp_path), "--no_instance"]) == 1
    out = capsys.readouterr().out
    assert "--resize_or_crop scale_width --loadSize 1024 --fineSize 512 --batchSize 1, each side a " \
           "multiple of 16" in out, out
    assert "48x32 becomes 1024x682" in out, out
    assert data_main(["scan", str(tmp_path), "--resize_or_crop", "none", "--no_instance"]) == 0
    Image.fromarray(_ids(64, 32)).save(tmp_path / "train_label" / "s1.png")
    Image.new("RGB", (64, 32)).save(tmp_path / "train_img" / "s1.png")
    assert data_main(["scan", str(tmp_path), "--resize_or_crop", "none", "--batchSize", "2", "--no_instance"]) == 1
    assert "mixed sizes" in capsys.readouterr().out


# 9 -----------------------------------------------------------------------------------------------
def test_max_dataset_size_limits_before_validation(tmp_path):
    _split(tmp_path, n=3)
    Image.fromarray(np.full((H, W), 9, np.uint8)).save(tmp_path / "train_label" / "s2.png")
    assert "label id 9 in train_label/s2.png" in _err(tmp_path)
    assert len(create_dataset(tmp_path, label_nc=4, max_dataset_size=2, **NONE)) == 2


# 10 ----------------------------------------------------------------------------------------------
def test_cityscapes_instance_train_ids_pair_up(tmp_path):
    _split(tmp_path)
    (tmp_path / "train_label" / "s0.png").rename(tmp_path / "train_label" / "s0_gtFine_labelTrainIds.png")
    (tmp_path / "train_img" / "s0.png").rename(tmp_path / "train_img" / "s0_leftImg8bit.png")
    (tmp_path / "train_inst").mkdir()
    Image.fromarray(_ids()).save(tmp_path / "train_inst" / "s0_gtFine_instanceTrainIds.png")
    assert len(create_dataset(tmp_path, label_nc=4, **{**NONE, "no_instance": False})) == 1


# 11 ----------------------------------------------------------------------------------------------
def test_a_classes_list_smaller_than_label_nc_gets_the_note(tmp_path, capsys):
    _split(tmp_path)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c", "d"]}))
    create_dataset(tmp_path, label_nc=35, **NONE)
    err = capsys.readouterr().err
    assert "classes.json names 4 classes (ids 0-3), this run uses label_nc=35" in err, err
    assert "Pass --label_nc 4" in err, err


def test_the_rgb_pairs_refusal_names_every_option_at_once(tmp_path):
    for d in ("train_A", "train_B"):
        (tmp_path / d).mkdir()
        Image.new("RGB", (32, 32)).save(tmp_path / d / "x.png")
    with pytest.raises(DatasetError, match=r"set --label_nc 0 and --no_instance \(label_nc=0, no_instance=True\)"):
        create_dataset(tmp_path, resize_or_crop="none")


def test_a_bilevel_mask_reads_as_ids_0_and_1(tmp_path):
    _split(tmp_path, labels=[Image.fromarray(_ids() > 1)])
    assert Image.open(tmp_path / "train_label" / "s0.png").mode == "1"
    ds = create_dataset(tmp_path, label_nc=2, no_flip=True, **NONE)
    assert (ds[0]["label"][0].numpy() == (_ids() > 1)).all()


def test_training_flips_a_trainval_split_and_validates_only_the_samples_it_keeps(tmp_path):
    """Through the trainer as train_hd.py builds its loader: --phase trainval flips (is_train), and
    --max_dataset_size 2 reads none of the third sample's files (a truncated photo there)."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.trainer import Trainer
    root = _split(tmp_path / "d", phase="trainval", n=3)
    photo = root / "trainval_img" / "s2.png"
    photo.write_bytes(photo.read_bytes()[:60])   # truncated
    cfg = TrainConfig(name="t", checkpoints_dir=str(tmp_path / "ck"), dataroot=str(root), phase="trainval",
                      label_nc=4, no_instance=True, resize_or_crop="none", max_dataset_size=2, batchSize=1,
                      ngf=4, ndf=4, n_downsample_global=2, n_blocks_global=1, num_D=1, n_layers_D=2,
                      no_vgg_loss=True, device="cpu", nThreads=0, validate="full").resolved()
    loader, _ = Trainer(cfg).make_loader()
    ds = loader.dataset
    assert len(ds) == 2 and ds.flip

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


@pytest.mark.fault(cls="bad dataset",
                   case="a missing photo and a missing instance map (--validate full): both named in "
                        "one error")
def test_missing_partner(city):
    (city / "train_img/s1.png").unlink()
    (city / "train_inst/s2.png").unlink()
    e = _err(city)
    assert "missing partner: 2 file(s)" in str(e)
    assert "train_label/s1.png has no train_img/s1.*" in str(e)
    assert "train_label/s2.png has no train_inst/s2.*" in str(e)
    assert {p[0] for p in e.problems} == {"missing partner"}


@pytest.mark.fault(cls="bad dataset", case="no train_inst folder: the error names no_instance=True")
def test_missing_instance_folder_names_the_fix(city):
    import shutil
    shutil.rmtree(city / "train_inst")
    assert "no_instance=True" in str(_err(city))
    assert len(create_dataset(city, label_nc=NC, no_instance=True, resize_or_crop="none")) == 3


@pytest.mark.fault(cls="bad dataset", case="partners of different sizes (--validate full)")
def test_size_mismatch(city):
    Image.new("RGB", (32, 32)).save(city / "train_img/s0.png")
    e = _err(city)
    assert "size mismatch" in str(e) and "train_label/s0.png" in str(e) and "image 32x32" in str(e)


@pytest.mark.fault(cls="bad dataset",
                   case="truncated PNG and a non-image file (--validate full): both named")
@pytest.mark.fault(cls="bad dataset",
                   case="truncated PNG and a non-image file under --validate headers: the non-image "
                        "named, the truncation left to the loader")
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


@pytest.mark.fault(cls="bad dataset", case="label id >= label_nc (--validate full)")
@pytest.mark.fault(cls="bad dataset",
                   case="16-bit label id >= label_nc under --validate off: the loader names it")
def test_ids_at_or_above_label_nc(city):
    lab = np.zeros((32, 64), np.uint8)
    lab[3, 4] = 40
    Image.fromarray(lab).save(city / "train_label/s0.png")
    e = _err(city)
    assert "label id 40 in train_label/s0.png is >= label_nc=6; pass --label_nc 41" in str(e)
    lab[3, 4] = NC   # label_nc itself: one past the last id
    Image.fromarray(lab).save(city / "train_label/s0.png")
    assert f"label id {NC} in train_label/s0.png is >= label_nc={NC}; pass --label_nc {NC + 1}" in str(_err(city))
    # 16-bit label maps: the loader refuses ids that would not fit, even unvalidated.
    Image.fromarray(np.full((32, 64), 300, np.uint16)).save(city / "train_label/s1.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match="label id 300"):
        ds[1]


@pytest.mark.fault(cls="bad dataset",
                   case="RGB label map, 16-bit photo, RGB instance map (--validate full)")
def test_wrong_channel_counts(city):
    Image.new("RGB", (64, 32)).save(city / "train_label/s0.png")
    Image.fromarray(np.full((32, 64), 3000, np.uint16)).save(city / "train_img/s1.png")
    Image.new("RGB", (64, 32)).save(city / "train_inst/s2.png")
    e = _err(city)
    assert "wrong channels: 3 file(s)" in str(e)
    assert "pass --palette" in str(e) and "train_inst/s2.png" in str(e)
    assert "train_img/s1.png: image has mode I;16" in str(e) and "clipped to 255" in str(e)


@pytest.mark.fault(cls="bad dataset",
                   case="sizes the generator cannot take after scale_width (not a multiple of 16): "
                        "all counted")
def test_sizes_the_generator_cannot_take(city):
    e = _err(city, resize_or_crop="scale_width", loadSize=40, required_multiple=16)
    assert "becomes 40x20" in str(e) and "not a multiple of 16" in str(e)
    assert "size not a multiple: 3 file(s)" in str(e)


@pytest.mark.fault(cls="bad dataset", case="many bad files: first few listed and a count")
def test_lists_first_few_and_a_count(tmp_path):
    write_cityscapes(tmp_path, "train", 9, feat=False)
    for i in range(8):
        (tmp_path / f"train_img/s{i}.png").unlink()
    msg = str(_err(tmp_path))
    assert "missing partner: 8 file(s), first 5:" in msg and "... and 3 more" in msg
    assert msg.count("has no train_img") == 5


@pytest.mark.fault(cls="bad dataset",
                   case="no dataset at --dataroot: the error names the generator command")
def test_no_dataset_found(tmp_path):
    with pytest.raises(DatasetError, match="synthetic_streets"):
        create_dataset(tmp_path / "nothing")


@pytest.mark.fault(cls="bad dataset", case="scan of a dataset with a missing partner exits 1")
def test_scan_command(city, capsys):
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 0
    out = capsys.readouterr().out
    assert "[train] cityscapes layout, 3 samples" in out and "64x32 (3)" in out
    assert "no problems" in out and "pixel frequency" in out
    (city / "train_img/s1.png").unlink()
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 1
    assert "missing partner" in capsys.readouterr().out


# ---- nothing dropped silently; the loader names what it cannot use (issue 13, item 6) -----------
@pytest.mark.fault(cls="bad dataset", case="broken symlink as a partner (--validate full)")
def test_broken_symlink_partner_is_reported(city):
    (city / "train_img/s1.png").unlink()
    (city / "train_img/s1.png").symlink_to(city / "gone/s1.png")
    e = _err(city)
    assert "broken symlink: 1 file(s)" in str(e)
    assert "train_img/s1.png is a symlink to" in str(e) and "gone/s1.png" in str(e)
    assert "train_label/s1.png has no train_img/s1.*" in str(e)   # the sample it belonged to


@pytest.mark.fault(cls="bad dataset", case="broken symlink in a pix2pix AB folder")
def test_broken_symlink_in_an_aligned_folder_is_reported(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (64, 32)).save(tmp_path / "train/0.jpg")
    (tmp_path / "train/1.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DatasetError, match=r"train/1.jpg is a symlink to .*nowhere.jpg"):
        create_dataset(tmp_path, label_nc=0, no_instance=True, resize_or_crop="none")


@pytest.mark.fault(cls="bad dataset", case="non-image entries and sub-folders: reported, not fatal")
def test_entries_that_are_not_images_are_reported_before_training(city, capsys):
    (city / "train_img/notes.txt").write_text("x")
    (city / "train_label/more").mkdir()
    Image.new("L", (64, 32)).save(city / "train_label/more/s9.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none")   # not samples: not fatal
    assert len(ds) == 3
    err = capsys.readouterr().err
    assert "2 entr(y/ies) not used as samples" in err
    assert "train_img/notes.txt: not an image (.txt" in err
    assert "train_label/more/ is a folder; sub-folders are not searched" in err
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 0
    out = capsys.readouterr().out
    assert "train_img/notes.txt" in out and "train_label/more/" in out


@pytest.mark.fault(cls="bad dataset", case="scan of a dataset with a broken symlink exits 1")
def test_scan_reports_broken_symlinks_and_fails(city, capsys):
    (city / "train_inst/s0.png").unlink()
    (city / "train_inst/s0.png").symlink_to("../elsewhere/s0.png")
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 1
    out = capsys.readouterr().out
    assert "broken symlink" in out and "train_inst/s0.png is a symlink to ../elsewhere/s0.png" in out


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.fault(cls="bad dataset",
                   case="truncated JPEG under --validate headers: the loader names it, the other "
                        "samples load")
def test_truncated_jpeg_through_headers_validation_names_the_file(city):
    Image.open(city / "train_img/s1.png").convert("RGB").save(city / "train_img/s1.jpg", quality=95)
    (city / "train_img/s1.png").unlink()
    _truncate(city / "train_img/s1.jpg")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="headers")
    with pytest.raises(DatasetError, match=r"train_img/s1.jpg: cannot read this photo \(OSError: "
                                           r"image file is truncated"):
        ds[1]
    assert ds[0]["image"].shape == (3, 32, 64)   # the other samples still load


@pytest.mark.fault(cls="bad dataset",
                   case="RGB label map under --validate off: the loader names it")
def test_rgb_label_map_through_validation_off_names_the_file(city):
    Image.new("RGB", (64, 32)).save(city / "train_label/s2.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"train_label/s2.png: this label map has mode RGB \(3 "
                                           r"channel\(s\)\).*palette="):
        ds[2]


@pytest.mark.fault(cls="bad dataset",
                   case="RGB instance map under --validate off: the loader names it")
def test_rgb_instance_map_through_validation_off_names_the_file(city):
    Image.new("RGB", (64, 32)).save(city / "train_inst/s0.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"train_inst/s0.png: this instance map has mode RGB"):
        ds[0]


@pytest.mark.fault(cls="bad dataset",
                   case="partners of different sizes under --validate off: the loader names them")
def test_partners_of_different_sizes_through_validation_off_are_refused(city):
    Image.new("RGB", (32, 16)).save(city / "train_img/s0.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"s0.png: partners differ in size \(label 64x32, "
                                           r"image 32x16"):
        ds[0]


@pytest.mark.fault(cls="bad dataset",
                   case="uint8 label id >= label_nc under --validate off: the loader names it")
def test_uint8_label_id_above_label_nc_through_validation_off_names_the_file(city):
    lab = np.zeros((32, 64), np.uint8)
    lab[5, 60] = 7   # NC = 6: fits uint8, so no dtype conversion would notice it
    Image.fromarray(lab).save(city / "train_label/s1.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"label id 7 in .*train_label/s1.png is outside "
                                           r"\[0, label_nc=6\); pass --label_nc 8"):
        ds[1]
    lab[5, 60] = NC   # label_nc itself: one past the last id
    Image.fromarray(lab).save(city / "train_label/s1.png")
    with pytest.raises(DatasetError, match=rf"label id {NC} in .*train_label/s1.png is outside "
                                           rf"\[0, label_nc={NC}\); pass --label_nc {NC + 1}"):
        ds[1]


@pytest.mark.fault(cls="bad dataset",
                   case="truncated label map met in a DataLoader worker process: named")
def test_loader_worker_error_names_the_file(city):
    from pix2pixhd.data import create_dataloader
    _truncate(city / "train_label/s2.png")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="headers")
    it = iter(create_dataloader(ds, 1, shuffle=False, num_workers=1))
    with pytest.raises(DatasetError, match=r"train_label/s2.png: cannot read this label map"):
        list(it)
    # Its worker stopped now, as the iterator's __del__ would: the traceback holds it in a cycle,
    # and freed by a later test's garbage collection it waits out torch's 5 s worker join.
    it._shutdown_workers()


def _classes(root, ids, label_nc):
    import json
    (root / "classes.json").write_text(json.dumps(
        {"label_nc": label_nc, "classes": [{"id": i, "name": f"c{i}"} for i in ids]}))


@pytest.mark.fault(cls="bad dataset", case="label ids < label_nc that are not in classes.json")
def test_label_ids_not_in_classes_json_are_flagged_below_label_nc(city, capsys):
    _classes(city, [0, 1, 2, 4, 5], NC)   # id 3 is not a class, though < label_nc
    lab = np.zeros((32, 64), np.uint8)
    lab[:8, :8] = 3
    Image.fromarray(lab).save(city / "train_label/s0.png")
    for i in (1, 2):
        Image.fromarray(np.zeros((32, 64), np.uint8)).save(city / f"train_label/s{i}.png")
    e = _err(city)
    assert "ids not in classes.json: 1 file(s)" in str(e)
    assert "label id(s) [3] in train_label/s0.png are not classes of" in str(e)
    assert "its ids: 0-2, 4-5" in str(e)
    assert data_main(["scan", str(city)]) == 1   # label_nc from classes.json
    assert "ids not in classes.json" in capsys.readouterr().out


@pytest.mark.fault(cls="bad dataset",
                   case="--label_nc larger than classes.json's: the extra ids flagged")
def test_label_nc_larger_than_classes_json_flags_the_extra_ids(city):
    _classes(city, range(4), 4)   # the dataset has 4 classes; label_nc=6 was given
    e = _err(city)   # blocks() draws ids 0..5: 4 and 5 are no class of this dataset
    assert "ids not in classes.json" in str(e) and "[4, 5]" in str(e)


@pytest.mark.fault(cls="bad dataset",
                   case="label id >= label_nc that classes.json does not name: the fix says so")
def test_an_id_above_label_nc_and_outside_classes_json_is_not_fixed_by_label_nc_alone(city):
    # "set label_nc 41" alone led to a second error: id 40 is no class of classes.json either
    _classes(city, range(NC), NC)
    lab = np.zeros((32, 64), np.uint8)
    lab[3, 4] = 40
    Image.fromarray(lab).save(city / "train_label/s0.png")
    fix = (r"classes.json does not name id 40 either \(its ids: 0-5\): remap it to one of its classes, "
           r"or add it to classes.json and pass --label_nc 41")
    with pytest.raises(DatasetError, match=fix):
        create_dataset(city, label_nc=NC, resize_or_crop="none")
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"label id 40 in .*is outside \[0, label_nc=6\); .*" + fix):
        ds[0]


@pytest.mark.fault(cls="bad dataset", case="unreadable classes.json: a problem named, no traceback")
def test_unreadable_classes_json_is_a_problem_not_a_crash(city, capsys):
    (city / "classes.json").write_text('{"label_nc": 6, "classes": [')
    e = _err(city)
    assert "classes.json cannot be read (JSONDecodeError" in str(e)
    assert data_main(["scan", str(city), "--label_nc", str(NC)]) == 1
    assert "classes.json cannot be read" in capsys.readouterr().out
    assert data_main(["scan", str(city)]) == 1   # label_nc not given: no traceback either


@pytest.mark.fault(cls="bad dataset",
                   case="x2 precomputed feature maps accepted; another aspect ratio refused")
def test_feature_maps_may_be_a_multiple_of_the_sample_size(tmp_path):
    # `features precompute` writes x2 maps; they are resampled (nearest) like the other partners
    write_cityscapes(tmp_path, "train", 2, feat=False)
    (tmp_path / "train_feat").mkdir(exist_ok=True)
    for i in range(2):
        Image.new("RGB", (128, 64), (10, 20, 30)).save(tmp_path / f"train_feat/s{i}.png")
    ds = create_dataset(tmp_path, label_nc=NC, resize_or_crop="none", load_features=True)
    assert ds[0]["feat"].shape == (3, 32, 64) and int(ds[0]["feat"][2].max()) == 30
    Image.new("RGB", (100, 64)).save(tmp_path / "train_feat/s1.png")   # another aspect ratio
    e = _err(tmp_path, load_features=True)
    assert "partners differ in size (label 64x32, image 64x32, inst 64x32, feat 100x64)" in str(e)
    ds = create_dataset(tmp_path, label_nc=NC, resize_or_crop="none", load_features=True,
                        validate="off")
    with pytest.raises(DatasetError, match="feat 100x64"):
        ds[1]


# ---- review of the data module: batches, photo modes, id 255, EXIF (issue: data review) --------
def _sized(root, sizes, phase="train"):
    """A cityscapes-layout split without instance maps, one sample per (w, h) of ``sizes``."""
    for k in ("label", "img"):
        (root / f"{phase}_{k}").mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / f"{phase}_label/{i}.png")
        Image.new("RGB", (w, h)).save(root / f"{phase}_img/{i}.png")
    return root


MIXED = {   # resize_or_crop -> (source sizes, options, the two outputs the error names)
    "none": ([(64, 32), (48, 32)], {}, ["0.png (64x32) becomes 64x32", "1.png (48x32) becomes 48x32"]),
    "crop": ([(64, 32), (64, 64), (64, 64)], {"fineSize": 48},
             ["1.png (64x64) becomes 48x48", "0.png (64x32) becomes 48x32"]),
    "scale_width": ([(64, 32), (32, 32)], {"loadSize": 64},
                    ["0.png (64x32) becomes 64x32", "1.png (32x32) becomes 64x64"]),
}


@pytest.mark.fault(cls="bad dataset",
                   case="samples of several output sizes with --batchSize 2 ({id}): refused before "
                        "training, two files named")
@pytest.mark.parametrize("mode", list(MIXED))
def test_mixed_output_sizes_are_refused_for_batches(tmp_path, mode):
    from pix2pixhd.data import check_batch_sizes
    sizes, opts, named = MIXED[mode]
    ds = create_dataset(_sized(tmp_path, sizes), label_nc=NC, no_instance=True,
                        resize_or_crop=mode, **opts)
    check_batch_sizes(ds, 1)   # one sample per batch: any sizes do
    with pytest.raises(DatasetError) as e:
        check_batch_sizes(ds, 2)
    msg = str(e.value)
    assert f"samples come out in 2 sizes with resize_or_crop={mode}" in msg
    assert all(f"train_label/{n}" in msg for n in named), msg
    assert "--batchSize 1" in msg and "--resize_or_crop resize_and_crop" in msg
    if mode == "crop":
        assert "--fineSize 32 or less (the smallest side is 32" in msg
    assert [p[0] for p in e.value.problems] == ["mixed sizes"] * 2
    # one size: resize_and_crop makes any sources one size
    check_batch_sizes(create_dataset(tmp_path, label_nc=NC, no_instance=True,
                                     resize_or_crop="resize_and_crop", loadSize=64, fineSize=48), 2)


@pytest.mark.fault(cls="bad dataset",
                   case="mixed sizes, --batchSize 2: train_hd refuses before training (rank 0); "
                        "with --validate off the first mixed batch names the files")
def test_make_loader_refuses_mixed_sizes_and_the_loader_names_them(tmp_path):
    from types import SimpleNamespace

    from pix2pixhd.config import TrainConfig
    from pix2pixhd.trainer import Trainer
    root = _sized(tmp_path / "data", [(64, 32), (48, 32), (64, 32), (48, 32)])

    def loader(validate, is_master=True):
        cfg = TrainConfig(name="t", checkpoints_dir=str(tmp_path), dataroot=str(root), label_nc=NC,
                          no_instance=True, resize_or_crop="none", batchSize=2, nThreads=0,
                          validate=validate, device="cpu").resolved()
        fake = SimpleNamespace(cfg=cfg, dist=SimpleNamespace(is_master=is_master, rank=0,
                                                              world_size=1))
        return Trainer.make_loader(fake)[0]

    for validate in ("full", "headers"):
        with pytest.raises(DatasetError, match=r"train_label/0.png \(64x32\) becomes 64x32, "
                                               r"train_label/1.png \(48x32\) becomes 48x32"):
            loader(validate)
    loader("full", is_master=False)   # the other ranks neither validate nor check: rank 0 did
    # --validate off reads no file before training; the collate names the first mixed batch
    with pytest.raises(DatasetError, match=r"samples of one batch differ in size: .*train_label/\d"
                                           r".png gives label (64|48)x32, .*png gives label "
                                           r"(64|48)x32.*--batchSize 1"):
        list(loader("off"))


def test_mixed_batch_from_a_worker_process_names_the_files(tmp_path):
    from pix2pixhd.data import create_dataloader
    ds = create_dataset(_sized(tmp_path, [(64, 32), (48, 32)]), label_nc=NC, no_instance=True,
                        resize_or_crop="none", validate="off")
    it = iter(create_dataloader(ds, 2, shuffle=False, num_workers=1))
    with pytest.raises(DatasetError, match=r"0.png gives label 64x32, .*1.png gives label 48x32"):
        next(it)
    it._shutdown_workers()   # now, not in a later garbage collection (see above)


@pytest.mark.fault(cls="bad dataset", case="RGBA, LA, CMYK and palette photos: taken as RGB")
def test_photos_in_any_8bit_mode_are_taken_as_rgb(city):
    rgb = np.asarray(Image.open(city / "train_img/s0.png").convert("RGB"))
    Image.fromarray(rgb).convert("RGBA").save(city / "train_img/s0.png")
    Image.fromarray(rgb).convert("LA").save(city / "train_img/s1.png")
    (city / "train_img/s2.png").unlink()
    Image.fromarray(rgb).convert("CMYK").save(city / "train_img/s2.jpg", quality=100)
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", no_flip=True)
    np.testing.assert_array_equal(ds[0]["image"].permute(1, 2, 0).numpy(), rgb)   # alpha dropped
    assert ds[1]["image"].shape == ds[2]["image"].shape == (3, 32, 64)


@pytest.mark.fault(cls="bad dataset", case="LA and RGBA label maps: refused, the fix named")
def test_label_maps_that_are_not_ids_name_the_fix(city):
    Image.new("LA", (64, 32)).save(city / "train_label/s0.png")
    Image.new("RGBA", (64, 32)).save(city / "train_label/s1.png")
    e = str(_err(city))
    assert "train_label/s0.png: label has mode LA (2 channel(s))" in e
    assert "save the ids as an 8-bit grey (mode L) PNG" in e
    assert "train_label/s1.png: label has mode RGBA" in e and "pass --palette" in e
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"s0.png: this label map has mode LA .*save the ids as "
                                           r"an 8-bit grey"):
        ds[0]


@pytest.mark.fault(cls="bad dataset",
                   case="label id 255 >= label_nc: named as an 'ignore' id to remap, not only "
                        "label_nc 256")
def test_label_id_255_is_named_as_an_ignore_id(city):
    lab = np.zeros((32, 64), np.uint8)
    lab[0, 0] = 255
    Image.fromarray(lab).save(city / "train_label/s1.png")
    e = str(_err(city))
    assert "label id 255 in train_label/s1.png is >= label_nc=6; 255 is usually an 'ignore'" in e
    assert "remap it to a void class" in e and "ids[ids == 255] = 0" in e
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"label id 255 in .*is outside \[0, label_nc=6\); 255 is "
                                           r"usually an 'ignore'"):
        ds[1]


@pytest.mark.fault(cls="bad dataset",
                   case="phone JPEG stored rotated (EXIF Orientation 6): the size mismatch names "
                        "the tag and exif_transpose, not a resize")
def test_exif_rotated_photo_names_the_orientation_not_a_resize(city):
    photo = Image.open(city / "train_img/s0.png").convert("RGB").transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 6   # the camera stored portrait pixels (32x64); viewers show them turned
    (city / "train_img/s0.png").unlink()
    photo.save(city / "train_img/s0.jpg", exif=exif.tobytes(), quality=95)
    Image.new("RGB", (32, 64)).save(city / "train_img/s1.png")   # transposed, no EXIF
    e = str(_err(city))
    assert "train_img/s0.jpg has EXIF Orientation 6: it is stored rotated" in e
    assert "PIL.ImageOps.exif_transpose" in e
    line0 = next(ln for ln in e.splitlines() if "train_label/s0.png" in ln)
    line1 = next(ln for ln in e.splitlines() if "train_label/s1.png" in ln)
    assert "resize them" not in line0 and "resize them to one size" in line1
    ds = create_dataset(city, label_nc=NC, resize_or_crop="none", validate="off")
    with pytest.raises(DatasetError, match=r"image 32x64.*s0.jpg has EXIF Orientation 6.*"
                                           r"exif_transpose"):
        ds[0]   # geometry is never changed silently: the loader refuses it the same way


@pytest.mark.parametrize("validate", ["full", "headers"])
def test_aligned_layout_without_its_phase_folder_is_a_dataset_error(tmp_path, validate):
    """pix2pix's side-by-side layout with no {phase}/ folder (converted facades, a test phase that
    is not there): a DatasetError naming the folder and what is there, not a FileNotFoundError
    traceback."""
    (tmp_path / "train_A").mkdir()
    with pytest.raises(DatasetError, match=r"test does not exist; the aligned layout .*folders in .*train_A"):
        create_dataset(tmp_path, "test", dataset_mode="aligned", label_nc=0, no_instance=True,
                       validate=validate)


def test_label_nc_larger_than_classes_json_says_is_noted(tmp_path, capsys):
    """A dataset whose classes.json says label_nc N trained with a larger label_nc (usually the
    default 35 left in place): a note naming both and the option, not silence."""
    write_cityscapes(tmp_path, "train", 2)
    (tmp_path / "classes.json").write_text('{"label_nc": %d}' % NC)
    create_dataset(tmp_path, label_nc=NC, resize_or_crop="none")
    assert "note:" not in capsys.readouterr().err
    create_dataset(tmp_path, label_nc=35, resize_or_crop="none")
    err = capsys.readouterr().err
    assert f"says label_nc={NC}, this run uses label_nc=35" in err and f"--label_nc {NC}" in err, err


@pytest.mark.fault(cls="bad dataset",
                   case="--dataset_mode naming a layout that is not there: the layout there is named")
def test_a_dataset_mode_whose_folders_are_absent_names_the_layout_that_is_there(city):
    # pix2pix defaults to aligned: on a cityscapes-layout root it said "train holds AB images ...
    # pass palette=", of a train/ folder that does not exist
    with pytest.raises(DatasetError, match=r"^dataset_mode aligned reads train/ in .*, which is not there; .* "
                                           r"holds the cityscapes layout \(train_label/\): pass --dataset_mode "
                                           r"cityscapes"):
        create_dataset(city, dataset_mode="aligned", label_nc=NC, no_instance=True, resize_or_crop="none")
    with pytest.raises(DatasetError, match=r"dataset_mode rgb_pairs reads train_A/ \+ train_B/"):
        create_dataset(city, dataset_mode="rgb_pairs", label_nc=0, no_instance=True, resize_or_crop="none")
    assert len(create_dataset(city, dataset_mode="cityscapes", label_nc=NC, resize_or_crop="none")) > 0


@pytest.mark.fault(cls="bad dataset", case="an AB image 1 pixel wide (no A | B halves): refused by validation, "
                                           "and by the read under --validate off")
@pytest.mark.parametrize("size", [(1, 1), (1, 64)])
def test_an_ab_image_too_narrow_for_two_halves_is_refused(tmp_path, size):
    """Its halves were 0 pixels wide, resized into a blank pair that trained without a word."""
    (tmp_path / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(tmp_path / f"train/{i}.png")
    Image.new("RGB", size).save(tmp_path / "train/zz.png")
    opts = dict(label_nc=0, no_instance=True, resize_or_crop="resize_and_crop", loadSize=32, fineSize=32)
    with pytest.raises(DatasetError, match=rf"train/zz.png: an AB image 1 pixel wide has no A \| B halves"):
        create_dataset(tmp_path, validate="headers", **opts)
    ds = create_dataset(tmp_path, validate="off", **opts)
    i = next(i for i, r in enumerate(ds.records) if str(r["ab"]).endswith("zz.png"))
    with pytest.raises(DatasetError, match=r"train/zz.png: an AB image 1 pixel wide has no A \| B halves"):
        ds[(i, 0)]

"""Findings of walkthrough WALK8 (data and evaluate): a Cityscapes gtFine folder copied into
train_label/ as shipped gets one line per stem saying what to do with each file (keep the labelIds,
move the instance map to train_inst/, move the colour rendering out), in scan and in evaluate alike;
"label id N >= label_nc" over several files ends with the split's largest id and its fix; the
segmenter's progress prints its last step."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.dataset import LabelIdMessage
from pix2pixhd.data.layouts import find_files, same_stem_fix
from pix2pixhd.evaluate import SegmenterConfig, train_segmenter

from .evaluate_cli import one_error

fault = pytest.mark.fault
S = "aachen_000000_000019"
W = H = 32


def _ids(path: Path, top: int = 26, dtype=np.uint8, scale: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((H, W), dtype)
    a[: H // 2], a[H // 2:] = 7, top
    Image.fromarray(a * scale if scale != 1 else a).save(path)
    return path


def _photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


def _gtfine(folder: Path, stem: str = S, kinds=("labelIds", "instanceIds", "color")) -> None:
    """Cityscapes' gtFine files of ``stem`` as shipped (the polygons too), in ``folder``."""
    for kind in kinds:
        if kind.startswith("instance"):
            _ids(folder / f"{stem}_gtFine_{kind}.png", dtype=np.uint16, scale=1000)
        elif kind == "color":
            _photo(folder / f"{stem}_gtFine_color.png", seed=1)
        else:
            _ids(folder / f"{stem}_gtFine_{kind}.png")
    (folder / f"{stem}_gtFine_polygons.json").write_text('{"objects": []}')


def _dup_lines(out: str) -> list[str]:
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if "duplicate stem:" in line)
    return [line for line in lines[i + 1:] if line.strip().startswith("- ")
            and "share the stem" in line]


# 1: a Cityscapes gtFine folder in train_label/ -----------------------------------------------
@fault(cls="bad dataset", case="a Cityscapes gtFine folder (labelIds, instanceIds, color, polygons.json) "
                              "copied into train_label/ as shipped")
def test_gtfine_files_in_train_label_get_one_line_saying_what_to_do_with_each(tmp_path, capsys):
    _gtfine(tmp_path / "train_label")
    _photo(tmp_path / "train_img" / f"{S}_leftImg8bit.png")
    assert data_main(["scan", str(tmp_path), "--label_nc", "35"]) == 1
    out = capsys.readouterr().out
    dup = _dup_lines(out)
    assert len(dup) == 1, out   # one line for the stem, not one per pair of files
    line = dup[0]
    assert "keep one" not in line, line   # that would have the user delete the instance maps
    assert f"keep {S}_gtFine_labelIds.png (the id map)" in line, line
    assert (f"move {S}_gtFine_instanceIds.png (the instance map of the labelIds) to {tmp_path / 'train_inst'}/, "
            "named as it is (partners pair by the stem, Cityscapes' suffixes ignored)") in line, line
    assert f"move {S}_gtFine_color.png (Cityscapes' colour rendering, for viewing) out of the folder" in line
    assert "holds Cityscapes' label ids 0-33, which pix2pixHD trains with --label_nc 35" in line
    # the polygons are not an image: listed as not used, never a duplicate
    assert "polygons" not in line and f"train_label/{S}_gtFine_polygons.json: not an image" in out
    # the file the sample reads meanwhile is the id map
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=False, use_feat=False)
    assert [r["label"].name for r in lay.records] == [f"{S}_gtFine_labelIds.png"]


@fault(cls="bad dataset", case="gtFine files in train_label/ while train_inst/ already holds the instance map")
def test_an_instance_map_that_train_inst_already_holds_is_removed_not_moved(tmp_path, capsys):
    _gtfine(tmp_path / "train_label")
    _ids(tmp_path / "train_inst" / f"{S}_gtFine_instanceIds.png", dtype=np.uint16, scale=1000)
    _photo(tmp_path / "train_img" / f"{S}_leftImg8bit.png")
    assert data_main(["scan", str(tmp_path), "--label_nc", "35"]) == 1
    (line,) = _dup_lines(capsys.readouterr().out)
    assert (f"remove {S}_gtFine_instanceIds.png: {tmp_path / 'train_inst'}/ holds "
            f"{S}_gtFine_instanceIds.png already") in line, line


@fault(cls="bad dataset", case="gtFine labelIds and cityscapesScripts' labelTrainIds (and both instance "
                              "maps) of one stem in train_label/")
def test_label_ids_beside_train_ids_say_which_ids_each_holds_and_label_nc(tmp_path):
    _gtfine(tmp_path / "train_label", kinds=("labelIds", "labelTrainIds", "instanceIds",
                                            "instanceTrainIds", "color"))
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=False, use_feat=False)
    (msg,) = [m for k, _, m in lay.problems if k == "duplicate stem"]
    assert f"keep one of {S}_gtFine_labelIds.png (the id map), {S}_gtFine_labelTrainIds.png" in msg, msg
    assert "label ids 0-33" in msg and "train ids 0-18 and 255" in msg, msg
    assert "--label_nc must be the one of the ids kept" in msg, msg
    assert "(instanceIds with labelIds, instanceTrainIds with labelTrainIds)" in msg, msg
    assert "keep one;" not in msg and not msg.endswith("keep one"), msg
    # train ids alone: their own instance map goes to train_inst/, the other out
    for p in (tmp_path / "train_label").glob("*_labelIds.png"):
        p.unlink()
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=False, use_feat=False)
    (msg,) = [m for k, _, m in lay.problems if k == "duplicate stem"]
    assert f"move {S}_gtFine_instanceTrainIds.png (the instance map of the labelTrainIds) to " in msg, msg
    assert f"move {S}_gtFine_instanceIds.png (the instance map of the labelIds) out of the folder" in msg, msg


@fault(cls="bad dataset", case="two images of one stem without a Cityscapes suffix (a.png, a.jpg)")
def test_stems_without_cityscapes_suffixes_still_say_keep_one(tmp_path):
    _ids(tmp_path / "train_label" / "a.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "train_label" / "a.bmp")
    _photo(tmp_path / "train_img" / "a.png")
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=False, use_feat=False)
    (msg,) = [m for k, _, m in lay.problems if k == "duplicate stem"]
    assert msg.endswith("share the stem 'a'; keep one"), msg
    assert same_stem_fix([Path("a.png"), Path("a.bmp")], "label") is None


@fault(cls="command-line errors", case="evaluate --train_labels given a Cityscapes gtFine folder as shipped")
def test_evaluate_train_labels_of_gtfine_files_gets_the_data_modules_advice(tmp_path, capsys):
    for i in range(2):
        _gtfine(tmp_path / "train_label", stem=f"t{i}")
        _photo(tmp_path / "train_img" / f"t{i}_leftImg8bit.png", seed=i)
    _ids(tmp_path / "test_label" / "x_gtFine_labelIds.png")
    _photo(tmp_path / "test_img" / "x_leftImg8bit.png", seed=5)
    _photo(tmp_path / "fake" / "x_gtFine_labelIds.png", seed=6)
    err = one_error(capsys, ["--fake", str(tmp_path / "fake"), "--real", str(tmp_path / "test_img"),
                             "--labels", str(tmp_path / "test_label"),
                             "--train_images", str(tmp_path / "train_img"),
                             "--train_labels", str(tmp_path / "train_label"), "--label_nc", "35",
                             "--no_fid", "--seg_width", "32", "--seg_steps", "2"])
    group = sorted((tmp_path / "train_label").glob("t0_*.png"))
    assert "keep one image per stem" not in err, err
    # the one shared function's words, evaluate reading no instance maps
    assert same_stem_fix(group, "label") in err, err
    assert "t0_gtFine_instanceIds.png (the instance map of the labelIds) out of the folder (not read here)" in err
    assert "(1 other stem of" in err and "holds several images too)" in err, err


# 2: label ids >= label_nc over several files ------------------------------------------------
def _ids_split(root: Path, tops) -> None:
    for i, top in enumerate(tops):
        _ids(root / "train_label" / f"s{i}.png", top=top)
        _photo(root / "train_img" / f"s{i}.png", seed=i)


@fault(cls="bad dataset", case="label ids >= label_nc in more files than the list shows, the largest past them")
def test_ids_past_label_nc_in_several_files_end_with_the_splits_largest_id(tmp_path, capsys):
    _ids_split(tmp_path, [31, 33, 12, 40, 5, 50, 36])
    assert data_main(["scan", str(tmp_path), "--label_nc", "30", "--no_instance", "--max_listed", "2"]) == 1
    out = capsys.readouterr().out
    assert "pass --label_nc 32 or remap ids" in out and "... and 3 more" in out
    assert ("the largest label id of all 7 label maps checked is 50, in train_label/s5.png; the fix for the "
            "split, not just for the files listed: pass --label_nc 51 or remap ids") in out, out
    # said once, after the list
    assert out.count("the largest label id") == 1
    assert out.index("... and 3 more") < out.index("the largest label id")
    # the fields travel with the problem (an error's problems pickled between processes)
    with pytest.raises(DatasetError) as e:
        create_dataset(tmp_path, label_nc=30, no_instance=True, resize_or_crop="none")
    m = next(m for k, _, m in e.value.problems if k == "ids >= label_nc")
    back = pickle.loads(pickle.dumps(m))
    assert isinstance(back, LabelIdMessage) and back == m and back.split_note == m.split_note != ""


@fault(cls="bad dataset", case="label ids >= label_nc, 255 among them, validated with --max_dataset_size")
def test_a_void_id_and_max_dataset_size_are_said_in_the_splits_line(tmp_path):
    _ids_split(tmp_path, [31, 255, 40, 12, 60])
    with pytest.raises(DatasetError) as e:
        create_dataset(tmp_path, label_nc=30, no_instance=True, resize_or_crop="none", max_dataset_size=4)
    msg = str(e.value)
    assert ("the largest label id of the 4 label maps checked (--max_dataset_size 4: the first 4 samples of 5; "
            "the others were not read, and may hold larger ids) is 255, in train_label/s1.png") in msg, msg
    assert "with 255 remapped, the largest other id is 40, in train_label/s2.png: pass --label_nc 41" in msg, msg
    # one such file: its own line says it all
    with pytest.raises(DatasetError) as e:
        create_dataset(tmp_path, label_nc=30, no_instance=True, resize_or_crop="none", max_dataset_size=1)
    assert "the largest label id" not in str(e.value)


# 3: the segmenter's progress ----------------------------------------------------------------
def test_segmenter_progress_prints_the_last_step(capsys):
    """evaluate logs every --seg_steps // 4 steps: 12, 24, 36, 48 of 50, and 50/50 at the end."""
    photos = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1)).to(torch.int16)
    train_segmenter(photos, labels, 3, SegmenterConfig(steps=50, batch_size=1, width=2, depth=1),
                    log_every=max(1, 50 // 4))
    steps = [line.split()[2] for line in capsys.readouterr().out.splitlines() if "segmenter step" in line]
    assert steps == ["12/50:", "24/50:", "36/50:", "48/50:", "50/50:"]


# 4: the docs -----------------------------------------------------------------------------------
def test_data_md_documents_the_cityscapes_advice_where_it_describes_duplicate_stems():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    part = doc[doc.index("**Duplicate stems.**"):doc.index("**One size per batch.**")]
    for name in ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png", "_gtFine_instanceIds.png",
                 "_gtFine_instanceTrainIds.png", "_gtFine_color.png", "_gtFine_polygons.json"):
        assert name in part, name
    assert "keep one" in part and "`{phase}_inst/`" in part and "same_stem_fix" in part

"""REV6's findings on evaluate's A|B-pair refusals and the same-stem advice:

1. ``evaluate --unpaired`` refused a whole photo set for one 2:1 photo among them ("--real
   .../wide_panorama.png is 256x128, twice as wide as --fake ...": there is no pair between unrelated
   sets); the set is refused only when every --real image is twice as wide as the fakes, worded
   for sets;
2. (a refactor, no test of its own) the three A|B-pair messages are one helper, ``_ab_pair_error``;
   the existing tests of each (test_evaluate.py, test_walk9_evaluate_findings.py) hold its words;
3. ``layouts.same_stem_fix`` with both instance maps of a stem in train_label/ beside labelIds and
   labelTrainIds, and train_inst/ holding the stem's instance map already, said to move one of them
   to train_inst/; now it says to remove them, as with one id map.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pix2pixhd.data.layouts import find_files
from pix2pixhd.evaluate import evaluate

from .evaluate_cli import one_error
from .test_walk8_data_findings import S, _gtfine, _ids, _photo


def _tiny_extractor(seed=0, dim=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, dim, 3, stride=2), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _photos(folder: Path, stems, seed=0, size=(16, 16)) -> Path:
    """Random RGB PNGs of ``size`` (W, H) named after ``stems``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in stems:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{s}.png")
    return folder


# ---- 1: one 2:1 photo in an --unpaired --real set ---------------------------------------------------

@pytest.mark.fault(cls="command-line errors", case="evaluate --unpaired with one photo twice as wide as the "
                                                   "fakes among the --real photos")
def test_unpaired_scores_a_set_with_one_wide_photo(tmp_path, capsys):
    fake = _photos(tmp_path / "fake", [f"f{i}" for i in range(5)], seed=1)
    real = _photos(tmp_path / "real", [f"r{i}" for i in range(8)], seed=2)
    _photos(real, ["wide_panorama"], seed=3, size=(32, 16))   # one 2:1 photo: no A|B pair
    ext = _tiny_extractor()
    for resize in (None, (16, 16)):
        res = evaluate(fake, real, unpaired=True, resize=resize, feature_extractor=ext, verbose=False)
        assert (res["n_fake"], res["n_real"]) == (5, 9) and res["fid"] >= 0, res
    # a set of A|B pairs (every image twice as wide as the fakes) is still refused, worded for sets
    ab = _photos(tmp_path / "ab", range(3), seed=4, size=(32, 16))
    err = one_error(capsys, ["--fake", str(fake), "--real", str(ab), "--unpaired"])
    assert f"all 3 images of --real {ab} are 32x16, twice as wide as --fake {fake}'s images (16x16, WxH)" in err
    assert "they look like pix2pix A|B pairs" in err and "against the --fake set" in err, err
    assert "--real_half A (left half) or --real_half B (right half)" in err, err


# ---- 3: both instance maps in train_label/ and train_inst/ holding the stem's --------------------------

@pytest.mark.fault(cls="bad dataset", case="labelIds, labelTrainIds and both instance maps of a stem in "
                                           "train_label/ while train_inst/ already holds its instance map")
def test_both_instance_maps_are_removed_when_train_inst_holds_the_stems(tmp_path):
    _gtfine(tmp_path / "train_label", kinds=("labelIds", "labelTrainIds", "instanceIds",
                                            "instanceTrainIds", "color"))
    _ids(tmp_path / "train_inst" / f"{S}_gtFine_instanceIds.png", dtype=np.uint16, scale=1000)
    _photo(tmp_path / "train_img" / f"{S}_leftImg8bit.png")
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=True, use_feat=False)
    (msg,) = [m for k, _, m in lay.problems if k == "duplicate stem"]
    assert "that matches the ids kept" not in msg and f"to {tmp_path / 'train_inst'}/" not in msg, msg
    assert (f"remove {S}_gtFine_instanceIds.png and {S}_gtFine_instanceTrainIds.png: {tmp_path / 'train_inst'}/ "
            f"holds {S}_gtFine_instanceIds.png already") in msg, msg
    assert f"keep one of {S}_gtFine_labelIds.png (the id map), {S}_gtFine_labelTrainIds.png" in msg, msg


# ---- REV7: a set that is mostly A|B pairs, and a few wide images among photos -----------------------

@pytest.mark.fault(cls="command-line errors", case="evaluate --unpaired with a --real folder of A|B pairs "
                                                   "holding one stray photo")
def test_unpaired_refuses_a_set_mostly_of_ab_pairs_and_notes_a_few(tmp_path, capsys):
    # fc90086 refused only a set whose every image was 2:1, so a facades A|B folder with one stray
    # photo was scored whole without a word; fakes of two sizes were all named as the narrow ones
    fake = _photos(tmp_path / "fake", [f"f{i}" for i in range(4)], seed=1)
    _photos(fake, ["g0"], seed=5, size=(20, 20))
    real = _photos(tmp_path / "real", [f"p{i}" for i in range(6)], seed=2, size=(32, 16))
    _photos(real, ["stray"], seed=3)
    err = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--unpaired"])
    assert f"6 of the 7 images of --real {real} are 32x16, twice as wide as --fake {fake}'s images (16x16, WxH)" \
        in err, err
    # a few wide images among photos: scored, with a note that counts them
    few = _photos(tmp_path / "few", [f"r{i}" for i in range(5)], seed=6)
    _photos(few, ["w0", "w1"], seed=7, size=(32, 16))
    res = evaluate(fake, few, unpaired=True, feature_extractor=_tiny_extractor(), verbose=False)
    assert res["n_real"] == 7
    assert any(n.startswith("2 of the 7 --real images (e.g. ") and "pass --real_half A or B" in n
               for n in res["notes"]), res["notes"]

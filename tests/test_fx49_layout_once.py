"""FX49: the layout's refusals are decided once. ``TrainConfig.check_layout`` (the Trainer and
--dry_run, before the VGG19 weights are looked for) repeated create_dataset's layout checks in a copy
of its own, which had drifted: --dataset_mode rgb_pairs on a train/ folder of sub-folders was refused
there as "no image directly" while create_dataset named the aligned layout and --dataset_mode aligned,
and a --dataset_mode whose folders are not there was let through (refused later by create_dataset,
after the VGG19 weights). Both now call ``pix2pixhd.data.dataset.layout_of``. The test below checks
the two against each other from outside, over layouts x --dataset_mode x --model x --palette, so that
a check added to, or worded differently in, one path fails it."""
import builtins
import io
import json

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.config import DataConfig, TrainConfig
from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.dataset import _other_layout_message, _unread_aligned_message, layout_of, model_layout_problem
from pix2pixhd.data.layouts import MODES, aligned_folder_problem, no_dataset_message

fault = pytest.mark.fault
MODELS = ("pix2pixhd", "pix2pix", "cyclegan")


def _image(path, channels=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (8, 8, 3) if channels == 3 else (8, 8)
    Image.fromarray(np.full(shape, 3, np.uint8)).save(path)


# Split "train" of each root: {name: files to make (a .png is an image), or None: no root at all}.
LAYOUTS = {
    "cityscapes": ["train_label/a.png", "train_img/a.png"],
    "rgb_pairs": ["train_A/a.png", "train_B/a.png"],
    "unaligned": ["trainA/a.png", "trainB/b.png"],
    "aligned": ["train/a.png"],
    "aligned_of_subfolders": ["train/sub/a.png"],   # not AB images: aligned_folder_problem
    "other_tools_names": ["train/images/a.png", "train/labels/a.png"],
    "labels_and_domains": ["train_label/a.png", "trainA/a.png", "trainB/b.png"],
    "one_photo_folder_and_domains": ["train_A/a.png", "trainA/a.png", "trainB/b.png"],
    "empty": [],
    "missing": None,
}


def _root(tmp_path, layout):
    root = tmp_path / layout
    if LAYOUTS[layout] is None:
        return root
    root.mkdir()
    for name in LAYOUTS[layout]:
        _image(root / name, 1 if "label" in name else 3)
    return root


def _layout_messages(root, phase="train"):
    """Every message create_dataset's layout step can refuse ``root`` with (the layout's
    refusals, worded by their own functions), and no_dataset_message (no layout: not
    check_layout's)."""
    found = {model_layout_problem(root, phase, m, model) for m in MODES[1:] for model in MODELS}
    found |= {_other_layout_message(root, phase, m, t) for m in MODES[1:] for t in MODES[1:] if m != t}
    found.add(aligned_folder_problem(root, phase))
    found |= {_unread_aligned_message(root, phase, m) for m in MODES[1:]}   # FX53: no circle of refusals
    return found - {None}, no_dataset_message(root, phase)


def _create_error(root, mode, palette, model):
    try:
        create_dataset(root, "train", DataConfig(dataset_mode=mode, palette=palette, validate="off"), model=model,
                       report_listing=False)
    except Exception as e:   # the layout's, or whatever the layout's options or files make it say next
        return str(e)
    return None


@fault(cls="bad dataset", case="each layout (CycleGAN's domains, AB images of sub-folders, other tools' folder "
                               "names, none) with each --dataset_mode, --model and --palette: check_layout refuses "
                               "exactly where create_dataset's layout step does, with the same line")
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_check_layout_refuses_exactly_what_create_dataset_refuses_for_the_layout(tmp_path, monkeypatch, layout):
    root = _root(tmp_path, layout)
    pal_file = tmp_path / "pal.json"
    pal_file.write_text(json.dumps([[0, 0, 0], [255, 255, 255]]))
    layout_lines, no_layout = _layout_messages(root)
    compared = refused = 0
    for mode in MODES:
        for model in MODELS:
            for palette in (None, "facades", str(pal_file)):
                made = _create_error(root, mode, palette, model)
                cfg = TrainConfig(dataroot=str(root), phase="train", dataset_mode=mode, palette=palette or "",
                                  model=model)
                with monkeypatch.context() as m:   # check_layout reads folder listings, no file (not the palette's)
                    def no_file(*a, **k):
                        raise AssertionError(f"check_layout opened a file: {a[:1]}")
                    for owner, name in ((builtins, "open"), (io, "open"), (Image, "open")):
                        m.setattr(owner, name, no_file)
                    try:
                        cfg.check_layout()
                        checked = None
                    except DatasetError as e:
                        checked = str(e)
                where = f"{layout}: --dataset_mode {mode} --model {model} --palette {palette}"
                if made in layout_lines:   # create_dataset refused the layout: check_layout says the same
                    assert checked == made, f"{where}: create_dataset said\n  {made}\ncheck_layout said\n  {checked}"
                    refused += 1
                else:   # no layout (left to create_dataset), another problem or none: check_layout passes
                    assert checked is None, f"{where}: check_layout said\n  {checked}\ncreate_dataset said\n  {made}"
                    assert made != no_layout or mode == "auto" or layout in ("empty", "missing")
                compared += 1
    assert compared == len(MODES) * len(MODELS) * 3
    if layout not in ("empty", "missing"):
        assert refused   # each layout is refused by some --model or --dataset_mode


def test_layout_of_returns_the_layout_read_and_leaves_no_layout_to_the_caller(tmp_path):
    assert layout_of(_root(tmp_path, "unaligned"), "train", "auto", None, "cyclegan") == "unaligned"
    assert layout_of(tmp_path / "unaligned", "train", "unaligned", None, None) == "unaligned"
    assert layout_of(_root(tmp_path, "cityscapes"), "train", "auto", "facades", "pix2pixhd") == "palette"
    # --dataset_mode palette on the cityscapes layout read without a palette: the palette layout (its folders)
    assert layout_of(tmp_path / "cityscapes", "train", "palette", None, "pix2pixhd") == "palette"
    empty = _root(tmp_path, "empty")
    assert layout_of(empty, "train", "auto", None, "pix2pixhd", missing_ok=True) is None
    with pytest.raises(DatasetError) as e:
        layout_of(empty, "train", "auto", None, "pix2pixhd")
    assert str(e.value) == no_dataset_message(empty, "train")
    # a --dataset_mode given where nothing is there: that mode (its reader names the missing folders)
    assert layout_of(empty, "train", "rgb_pairs", None, "pix2pixhd", missing_ok=True) == "rgb_pairs"
    # synthesis (inputs_only) reads one domain of the unaligned layout with a paired checkpoint's model unknown
    assert layout_of(tmp_path / "unaligned", "train", "auto", None, "pix2pixhd", inputs_only=True) == "unaligned"
    with pytest.raises(DatasetError, match="--model pix2pixhd cannot train on"):
        layout_of(tmp_path / "unaligned", "train", "auto", None, "pix2pixhd")


@fault(cls="path tricks", case="--phase ../x: refused by layout_of (and so by check_layout) before any folder "
                               "outside --dataroot is listed")
def test_layout_of_refuses_a_phase_leaving_the_dataroot(tmp_path):
    root = _root(tmp_path, "rgb_pairs")
    (tmp_path / "x_A").mkdir()
    (tmp_path / "x_B").mkdir()
    for call in (lambda: layout_of(root, "../x", "auto", None, "pix2pixhd"),
                 TrainConfig(dataroot=str(root), phase="../x", dataset_mode="auto", model="cyclegan").check_layout):
        with pytest.raises(Exception, match="--phase"):
            call()


# ---- NVIDIA's --onnx and --engine on synthesize.py ---------------------------------------------------
@fault(cls="command-line errors", case="NVIDIA's test.py --onnx FILE / --engine FILE (TensorRT) given to "
                                       "synthesize.py: one line naming --backend onnx and the export")
@pytest.mark.parametrize("given, says", [   # were "did you mean --onnx_path?" and argparse's plain usage
    ("--onnx g.onnx", "use --backend onnx --onnx_path FILE (onnxruntime, not TensorRT"),
    ("--engine g.trt", "no equivalent: no TensorRT engine is run here; --backend onnx")])
def test_nvidia_onnx_and_engine_on_synthesize_name_the_onnx_backend(given, says, capsys, monkeypatch):
    from pix2pixhd import errors
    from pix2pixhd.cli import synthesize_main
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)   # another test's --debug
    argv = ["--checkpoint", "ck", "--input", "in", "--out", "out", *given.split()]
    assert errors.run(synthesize_main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {given} is an option of the reference's test.py") and err.count("\n") == 1, err
    assert says in err and "python -m pix2pixhd.export" in err

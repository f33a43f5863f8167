"""Findings of Dec 6 (d), inference side: one device resolver for every command and the Python
API (``distributed.resolve_device``), and one way to pair result files by name
(``data.layouts.index_images``) for evaluate, the results page and the synthesis engine."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.errors import ConfigError, InputError, run

UNKNOWN = "'gpu': expected auto, cpu, cuda or cuda:N (or mps)"


def _rgb(path, seed=0, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _ids(path, seed=0, size=32, n=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, n, (size, size), dtype=np.uint8)).save(path)
    return path


def _one_error_line(capsys, main, argv) -> str:
    assert run(main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---- 1. one device resolver ----------------------------------------------------------------------

def test_an_unknown_device_is_the_same_line_in_every_command(tmp_path, capsys, monkeypatch):
    """synthesize.py and features precompute --device gpu ended in torch's traceback
    ("Expected one of cpu, cuda, ..."); evaluate said it in other words."""
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.evaluate import main as evaluate_main
    from pix2pixhd.features import main as features_main
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    no = str(tmp_path / "no")
    lines = [_one_error_line(capsys, synthesize_main, ["--checkpoint", no, "--input", no, "--out",
                                                       str(tmp_path / "out"), "--device", "gpu"]),
             _one_error_line(capsys, features_main, ["precompute", "--checkpoint", no, "--dataroot", no,
                                                     "--device", "gpu"]),
             _one_error_line(capsys, evaluate_main, ["--fake", no, "--real", no, "--no_fid",
                                                     "--device", "gpu"])]
    assert lines == [f"error: --device {UNKNOWN}"] * 3
    assert not (tmp_path / "out").exists()


def test_the_python_api_refuses_an_unknown_device_naming_its_argument():
    from pix2pixhd.synthesis import Synthesizer
    with pytest.raises(ConfigError, match=rf"^device {re.escape(UNKNOWN)}$"):
        Synthesizer(torch.nn.Identity(), None, "gpu")
    with pytest.raises(ConfigError, match=r"^device 'meta': expected auto"):
        Synthesizer(torch.nn.Identity(), None, "meta")


def test_cuda_past_the_last_gpu_is_refused_by_the_commands_resolver(monkeypatch):
    """distributed.resolve_device (train, synthesize, features) passed cuda:3 on a 1-GPU machine
    to torch, which failed at the first tensor moved there."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)   # no scheduler binding (see test_cuda_paths)
    from pix2pixhd.distributed import DeviceUnavailableError, resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceUnavailableError, match=r"^--device cuda:3: this machine has 1 CUDA device\(s\), "
                                                     r"numbered from cuda:0; pass one of them or cpu$"):
        resolve_device("cuda:3")
    with pytest.raises(DeviceUnavailableError, match=r"^--device auto \(cuda:2\): this machine has 1"):
        resolve_device("auto", local_rank=2)    # torchrun with more ranks than GPUs
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda:0")
    assert resolve_device("cuda", local_rank=None) == torch.device("cuda")   # the API: torch's current


def test_missing_cuda_is_the_same_line_for_the_commands_and_the_api(monkeypatch):
    from pix2pixhd.distributed import DeviceUnavailableError, resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError,
                       match=r"^--device cuda:1: CUDA is not available on this machine \(torch .*\); "
                             r"use --device cpu$"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceUnavailableError, match=r"^device cuda: CUDA is not available on this "
                                                      r"machine \(torch .*\); use device cpu$"):
        resolve_device("cuda", None, option="device")


# ---- 2. one way to pair result files by name --------------------------------------------------------

def test_evaluate_pairs_cityscapes_coarse_labels_with_their_photos(tmp_path):
    """x_gtCoarse_labelIds.png beside x_leftImg8bit.png fakes: "no file stems in common"."""
    from pix2pixhd.evaluate import index_folder, match, match_key
    assert match_key("x_gtCoarse_labelIds") == match_key("x_leftImg8bit") == "x"
    assert match_key("x_gtFine_labelTrainIds_synthesized_image") == "x"
    _rgb(tmp_path / "fake" / "x_leftImg8bit.png")
    _ids(tmp_path / "labels" / "x_gtCoarse_labelIds.png")
    assert match(("--fake", index_folder(tmp_path / "fake", "--fake")),
                 ("--labels", index_folder(tmp_path / "labels", "--labels"))) == ["x"]


def test_evaluate_scores_a_coarse_labelled_split(tmp_path):
    from pix2pixhd.evaluate import SegmenterConfig, evaluate
    for i in range(2):
        _rgb(tmp_path / "train_img" / f"t{i}_leftImg8bit.png", seed=10 + i, size=32)
        _ids(tmp_path / "train_lab" / f"t{i}_gtCoarse_labelIds.png", seed=20 + i)
    _rgb(tmp_path / "real" / "x_leftImg8bit.png", seed=1, size=32)
    _rgb(tmp_path / "fake" / "x_leftImg8bit.png", seed=2, size=32)
    _ids(tmp_path / "labels" / "x_gtCoarse_labelIds.png", seed=3)
    res = evaluate(tmp_path / "fake", tmp_path / "real", labels_dir=tmp_path / "labels",
                   train_images=tmp_path / "train_img", train_labels=tmp_path / "train_lab", label_nc=3,
                   no_fid=True, seg_width=32, seg=SegmenterConfig(steps=1, width=4, batch_size=2),
                   verbose=False)
    assert res["segmentation"]["n_test"] == 1 and res["segmentation"]["n_train"] == 2


@pytest.mark.parametrize("ext", ["webp", "bmp", "tif"])
def test_the_results_page_reads_every_image_type_training_reads(tmp_path, ext):
    """synthesize.py --real with .webp/.bmp/.tif photos: "no file stems in common"."""
    from pix2pixhd.report import compare_folders
    _rgb(tmp_path / "fake" / "a.png")
    _rgb(tmp_path / "real" / f"a_leftImg8bit.{ext}")
    assert compare_folders(tmp_path / "fake", tmp_path / "real")["n"] == 1


def test_two_photos_of_one_stem_are_refused_not_one_silently_scored(tmp_path):
    """report and engine kept whichever of a.png and a.jpg came last; evaluate refused."""
    from pix2pixhd import engine
    from pix2pixhd.evaluate import index_folder
    from pix2pixhd.report import compare_folders
    _rgb(tmp_path / "fake" / "a.png")
    _rgb(tmp_path / "real" / "a.png")
    _rgb(tmp_path / "real" / "a.jpg", seed=1)
    real = tmp_path / "real"
    twice = r"a\.jpg and a\.png both pair as 'a'; keep one image per stem$"
    with pytest.raises(InputError, match=rf"^{re.escape(str(real))}: {twice}"):
        compare_folders(tmp_path / "fake", real)
    with pytest.raises(InputError, match=r"a\.jpg and a\.png both pair as 'a'"):
        engine._index(real)
    with pytest.raises(InputError, match=rf"^--real {re.escape(str(real))}: {twice}"):
        index_folder(real, "--real")


def test_the_results_page_skips_hidden_files(tmp_path):
    """macOS ._a.png beside a.png got a row of its own on the page (the data module skips it)."""
    from pix2pixhd.report import write_comparison_page
    for side in ("fake", "labels", "real"):
        _rgb(tmp_path / side / "a.png")
    (tmp_path / "fake" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    page = write_comparison_page(tmp_path / "fake", tmp_path / "labels", tmp_path / "real", 0)
    assert page.read_text().count("<tr>") == 1

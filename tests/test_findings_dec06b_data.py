"""Findings of Dec 6 (b): names in two Unicode normal forms (macOS NFD beside Linux NFC) pair up,
palette and classes.json files with a BOM (or broken) are read or refused in one line, and the
tools that write into a data folder say so in one line when it cannot be written."""
import errno
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.data import create_dataset
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.layouts import find_files, load_palette, read_classes
from pix2pixhd.datasets import convert_facades, synthetic_streets
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.models import build_encoder

W, H = 32, 32
NONE = dict(label_nc=4, resize_or_crop="none", required_multiple=16, no_instance=True)
NFC, NFD = unicodedata.normalize("NFC", "café_0"), unicodedata.normalize("NFD", "café_0")


def _ids(w=W, h=H):
    ids = np.zeros((h, w), np.uint8)
    for k in range(1, 4):
        ids[:, k * w // 4:] = k
    return ids


def _sample(root: Path, folder: str, name: str, rgb: bool = False) -> Path:
    (root / folder).mkdir(parents=True, exist_ok=True)
    a = _ids()
    path = root / folder / f"{name}.png"
    Image.fromarray(np.stack([a * 60] * 3, -1) if rgb else a).save(path)
    return path


# 1: Unicode normal forms -------------------------------------------------------------------------
def test_partners_in_nfd_and_nfc_pair_up_and_keep_their_own_paths(tmp_path):
    assert NFC != NFD
    label = _sample(tmp_path, "train_label", NFC)
    photo = _sample(tmp_path, "train_img", NFD, rgb=True)      # copied from a Mac
    inst = _sample(tmp_path, "train_inst", NFD)
    feat = _sample(tmp_path, "train_feat", NFD, rgb=True)
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=True, use_feat=True)
    assert lay.problems == [] and lay.records == [{"label": label, "image": photo, "inst": inst, "feat": feat}]
    ds = create_dataset(tmp_path, **{**NONE, "no_instance": False}, validate="full")
    assert len(ds) == 1 and ds[0]["image"].shape[-2:] == (H, W)


def test_validate_off_keeps_an_nfd_sample(tmp_path, capsys):
    _sample(tmp_path, "train_label", NFD)
    _sample(tmp_path, "train_img", NFC, rgb=True)
    _sample(tmp_path, "train_label", "s1")
    _sample(tmp_path, "train_img", "s1", rgb=True)
    assert len(create_dataset(tmp_path, validate="off", **NONE)) == 2
    assert "missing partner" not in capsys.readouterr().err


def test_one_name_in_both_forms_in_one_folder_is_a_duplicate_saying_so(tmp_path):
    _sample(tmp_path, "train_label", NFC)
    _sample(tmp_path, "train_label", NFD)
    _sample(tmp_path, "train_img", NFC, rgb=True)
    lay = find_files(tmp_path, "train", "cityscapes", use_inst=False, use_feat=False)
    dup = [m for k, _, m in lay.problems if k == "duplicate stem"]
    assert len(dup) == 1 and "the same name in two Unicode normal forms, NFC and NFD" in dup[0], lay.problems


# 2: palette and classes.json files ---------------------------------------------------------------
PAL = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]


def test_a_palette_file_with_a_bom_and_crlf_is_read(tmp_path):
    p = tmp_path / "pal.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps({"palette": PAL}, indent=1).replace("\n", "\r\n").encode())
    assert load_palette(str(p)).tolist() == PAL


@pytest.mark.parametrize("text, what", [
    ('[[0, 0, 0], [255, 0, 0],]', r"not valid JSON \(Expecting value at line 1, column 25\)"),
    ('{"colors": [[0, 0, 0]]}', r"a JSON object without a \"palette\" key \(its keys: 'colors'\)"),
    ('{"palette": [[0, 0, 0], [255, 0]]}', r"colour 1 is \[255, 0\], not \[r, g, b\] of integers 0-255"),
    ('{"palette": []}', r"the palette is an empty list"),
    ('"facades"', r"the palette is a string, not a list of colours")])
def test_a_bad_palette_file_is_one_line_naming_it_what_is_wrong_and_the_shape(tmp_path, text, what):
    p = tmp_path / "pal.json"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"^palette file {p}: {what}; it should hold a list of \[r, g, b\] "
                                          r"colours \(integers 0-255\), e\.g\. .*or \{\"palette\": \[\.\.\.\]\}$") as e:
        load_palette(str(p))
    assert "\n" not in str(e.value)


def test_training_and_scan_read_a_palette_with_a_bom_and_refuse_a_broken_one(tmp_path, capsys):
    ids = _ids()
    (tmp_path / "train_label").mkdir()
    Image.fromarray(np.asarray(PAL, np.uint8)[ids]).save(tmp_path / "train_label" / "s0.png")
    _sample(tmp_path, "train_img", "s0", rgb=True)
    p = tmp_path / "pal.json"
    p.write_text(json.dumps(PAL), encoding="utf-8-sig")
    ds = create_dataset(tmp_path, **NONE, palette=str(p))
    assert (ds[0]["label"][0].numpy() == ids).all()
    assert data_main(["scan", str(tmp_path), "--palette", str(p), "--label_nc", "4", "--no_instance"]) == 0
    p.write_text('{"colors": []}')
    for call in (lambda: create_dataset(tmp_path, **NONE, palette=str(p)),
                 lambda: data_main(["scan", str(tmp_path), "--palette", str(p), "--label_nc", "4"])):
        with pytest.raises(ConfigError, match=rf"^palette file {p}: a JSON object without a \"palette\" key"):
            call()


def test_classes_json_with_a_bom_and_crlf_is_read(tmp_path, capsys):
    _sample(tmp_path, "train_label", "s0")
    _sample(tmp_path, "train_img", "s0", rgb=True)
    text = json.dumps({"label_nc": 4, "classes": [{"id": i} for i in range(4)]}, indent=1)
    (tmp_path / "classes.json").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert read_classes(tmp_path).ids == frozenset(range(4))
    assert len(create_dataset(tmp_path, **NONE)) == 1
    assert data_main(["scan", str(tmp_path), "--no_instance"]) == 0
    assert "cannot be read" not in capsys.readouterr().out


# 3: folders that cannot be written ---------------------------------------------------------------
def _refuse_mkdir(monkeypatch, name: str, err=errno.EACCES):
    """Path.mkdir of a folder named ``name`` fails as in a read-only folder (root passes chmod)."""
    mkdir = Path.mkdir

    def fake(self, *a, **k):
        if self.name == name:
            raise OSError(err, "Permission denied" if err == errno.EACCES else "Read-only file system", str(self))
        return mkdir(self, *a, **k)
    monkeypatch.setattr(Path, "mkdir", fake)


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_precompute_into_a_read_only_data_folder_is_one_line_naming_it_and_out_dir(tmp_path, monkeypatch):
    from pix2pixhd.features import main as features_main
    run = tmp_path / "ck" / "a"
    cfg = TrainConfig(name="a", checkpoints_dir=str(run.parent), instance_feat=True, label_nc=4, nef=4,
                      n_downsample_E=2, ngf=4, n_downsample_global=2, n_blocks_global=1).resolved()
    save_checkpoint({"config": cfg.to_dict(), "global_step": 1, "E": build_encoder(cfg).state_dict()},
                    run, "latest", cfg.to_json())
    data = tmp_path / "data"
    _sample(data, "train_label", "s0")
    _sample(data, "train_inst", "s0")
    _sample(data, "train_img", "s0", rgb=True)
    argv = ["precompute", "--checkpoint", str(run), "--dataroot", str(data), "--device", "cpu"]
    with monkeypatch.context() as m:
        _refuse_mkdir(m, "train_feat")
        with pytest.raises(InputError) as e:
            features_main(argv)
    assert _one_line(e) == (f"cannot write the feature maps into {data}/train_feat/ ({data}/train_feat: "
                            f"Permission denied); make {data} writable, or write them elsewhere with "
                            "--out_dir DIR (--load_features reads DATAROOT/train_feat/: copy them there, "
                            "or into a copy of the dataset)")
    (data / "train_feat").write_text("")   # a file where the folder goes: no chmod needed
    with pytest.raises(InputError, match=rf"^cannot write the feature maps into {data}/train_feat/ "
                                         rf"\({data}/train_feat is a file, not a folder\); write them "
                                         r"elsewhere with --out_dir DIR"):
        features_main(argv)
    with pytest.raises(InputError, match=rf"\({data}/train_feat is a file, not a folder\); pass --out_dir "
                                         "a folder you can write to$"):
        features_main(argv + ["--out_dir", str(data / "train_feat")])
    (data / "train_feat").unlink()
    assert features_main(argv) == 0 and (data / "train_feat" / "s0.png").is_file()


@pytest.mark.parametrize("tool", ["synthetic_streets", "convert_facades"])
def test_dataset_makers_into_a_read_only_folder_are_one_line(tmp_path, monkeypatch, capsys, tool):
    if tool == "synthetic_streets":
        def make(out):
            return synthetic_streets.main(["--out", str(out), "--n_train", "1", "--n_test", "0",
                                           "--width", "32", "--height", "16"])
    else:
        src = tmp_path / "src" / "train"
        src.mkdir(parents=True)
        colours = np.asarray(convert_facades.FACADES_PALETTE, np.uint8)[_ids() % 12]
        Image.fromarray(np.concatenate([np.full_like(colours, 90), colours], 1)).save(src / "1.jpg", quality=100)

        def make(out):
            return convert_facades.main(["--src", str(tmp_path / "src"), "--out", str(out)])
    ro = tmp_path / "ro"
    ro.mkdir()
    with monkeypatch.context() as m:   # the folder above --out cannot be written
        _refuse_mkdir(m, "data")
        with pytest.raises(InputError) as e:
            make(ro / "data" / "sub")
    assert _one_line(e) == (f"{tool}: cannot write {ro}/data (Permission denied); make {ro} writable, "
                            "or pass --out a folder you can write to")
    with monkeypatch.context() as m:   # a read-only file system: writes fail inside --out
        _refuse_mkdir(m, "train_label", errno.EROFS)
        with pytest.raises(InputError, match=rf"^{tool}: cannot write {ro}/data/sub/train_label \(Read-only "
                                             rf"file system\); make {ro}/data/sub writable, or pass --out"):
            make(ro / "data" / "sub")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=rf"^cannot write {tmp_path}/file/sub: {tmp_path}/file is a file, "
                                          "not a folder; give --out a path in a folder$"):
        make(tmp_path / "file" / "sub")
    real = __import__("os").access
    monkeypatch.setattr("os.access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    with pytest.raises(ConfigError, match=rf"^cannot write {ro}/new: {ro} is not writable \(no write "
                                          r"permission\); give --out a path in a folder you can write to$"):
        make(ro / "new")   # refused before anything is written (non-root users)
    assert not (ro / "new").exists()

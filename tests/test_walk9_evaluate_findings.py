"""WALK9's findings on evaluate and the quality benchmarks (pix2pix and CycleGAN users, facades):

1. the segmentation score read pix2pix A|B images whole: one folder as --train_images and
   --train_labels, and A|B --labels maps (the photo half decoded to palette ids), scored without a
   word; now refused as --real's A|B images are, with --*_half options to read their halves;
2. FID/KID could not be computed for unpaired output (CycleGAN against photos of other scenes):
   "no file stems in common", and partly overlapping stems scored the paired subset only;
   ``--unpaired`` computes them over both sets, and the errors and the CycleGAN note name it;
3. docs/cyclegan.md listed ``quality.py --prepare_only`` as a first step without its cost;
4. cyclegan_quality.py's default --src (beside the checkout) against a --data folder made from
   another --src said "pass another --data folder", not --src; a missing default --src went
   unsaid; and the script itself crashed in every full run (``run`` shadowed by errors.run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import cyclegan_quality as C  # noqa: E402
from benchmarks import quality as Q  # noqa: E402
from pix2pixhd.data import FACADES_PALETTE  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402
from pix2pixhd.evaluate import (InceptionFeatures, SegmenterConfig, _read_ids, _read_seg_inputs,  # noqa: E402
                                evaluate, fid_kid, format_table, index_folder)
from tests.evaluate_cli import one_error  # noqa: E402
from tests.test_quality import _facades  # noqa: E402

PAL = np.asarray(FACADES_PALETTE, np.uint8)


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()   # the benchmarks set their --threads (1)
    yield
    torch.set_num_threads(n)


def _tiny_extractor(seed=0, dim=8):
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, dim, 3, stride=2), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _ab(folder: Path, stems, seed=0, size=16):
    """pix2pix facades-style A|B images ``size`` high, 2 * ``size`` wide: photo | colour label map
    (blocks of facades palette colours); returns {stem: ids}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    ids_of = {}
    for s in stems:
        ids = np.repeat(np.repeat(rng.integers(0, 12, (size // 8, size // 8)), 8, 0), 8, 1)
        photo = np.clip(PAL[ids].astype(int) // 2 + rng.integers(0, 60, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(np.concatenate([photo, PAL[ids]], 1)).save(folder / f"{s}.png")
        ids_of[s] = ids
    return ids_of


def _photos(folder: Path, stems, seed=0, size=(16, 16)):
    """Random RGB PNGs of ``size`` (W, H) named after ``stems``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in stems:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{s}.png")
    return folder


def _seg_argv(tmp_path, train_images, train_labels, labels, *extra):
    fake = _photos(tmp_path / "out" / "test_B", range(100, 104), seed=5)
    return ["--fake", str(fake), "--real", str(tmp_path / "fac" / "test"), "--real_half", "A", "--no_fid",
            "--labels", str(labels), "--train_images", str(train_images), "--train_labels", str(train_labels),
            "--palette", "facades", "--label_nc", "12", "--seg_steps", "2", "--seg_width", "16",
            "--seg_channels", "4", *extra]


# ---- 1: A|B images in the segmentation score's folders --------------------------------------------

@pytest.mark.fault(cls="command-line errors", case="evaluate's segmentation score with one folder of pix2pix "
                                                   "A|B images as both --train_images and --train_labels")
def test_one_folder_as_train_images_and_train_labels_is_refused(tmp_path, capsys):
    """WALK9's command trained the segmenter on whole A|B images used both as photos and as label
    maps (the photo half decoded to the nearest palette colours) and printed a score."""
    _ab(tmp_path / "fac" / "trainAB", range(6))
    _ab(tmp_path / "fac" / "test", range(100, 104), seed=1)
    train = tmp_path / "fac" / "trainAB"
    link = tmp_path / "same"
    link.symlink_to(train)   # the same folder under another name: compared resolved
    err = one_error(capsys, _seg_argv(tmp_path, train, link, tmp_path / "fac" / "test", "--labels_half", "B"))
    assert f"--train_images {train} and --train_labels {link} are the same folder ({train.resolve()})" in err
    assert "--train_images_half A --train_labels_half B" in err, err
    # the same half of both is the same images too
    err = one_error(capsys, _seg_argv(tmp_path, train, train, tmp_path / "fac" / "test", "--labels_half", "B",
                                      "--train_images_half", "A", "--train_labels_half", "A"))
    assert "same folder" in err and "the same --train_images_half and --train_labels_half A" in err, err


def test_halves_of_one_ab_folder_train_the_segmenter_on_photo_and_label_map(tmp_path):
    """With --train_images_half A --train_labels_half B (and --labels_half B) one folder of A|B
    images gives the photos and their label maps: the maps read are the B halves' ids, the photos
    the A halves, at the segmenter size of one half (not of the whole A|B image)."""
    ids = _ab(tmp_path / "trainAB", range(4))
    test_ids = _ab(tmp_path / "test", range(100, 102), seed=1)
    fakes = index_folder(_photos(tmp_path / "fake", range(100, 102)), "--fake")
    reals = index_folder(tmp_path / "test", "--real")
    keys = sorted(fakes)
    seg = SegmenterConfig(steps=1, width=4)
    inputs = _read_seg_inputs(fakes, reals, keys, tmp_path / "test", tmp_path / "trainAB", tmp_path / "trainAB",
                              12, 16, seg, PAL.astype(np.int32), labels_half="B", train_images_half="A",
                              train_labels_half="B")
    assert inputs.size == (16, 16)   # one half's 16x16, not the A|B image's 32x16 aspect
    assert [inputs.labels[i].tolist() for i in range(4)] == [ids[k].tolist() for k in sorted(ids, key=str)]
    assert [inputs.test_labels[i].tolist() for i in range(2)] == [test_ids[k].tolist() for k in (100, 101)]
    left = np.asarray(Image.open(tmp_path / "trainAB" / "0.png"))[:, :16]
    assert torch.equal(inputs.photos[0], torch.from_numpy(left.copy()).permute(2, 0, 1))
    # a single-channel id map's half too (no --palette)
    grey = np.concatenate([np.full((16, 16), 7, np.uint8), ids[0].astype(np.uint8)], 1)
    Image.fromarray(grey, "L").save(tmp_path / "ids.png")
    assert _read_ids(tmp_path / "ids.png", None, 12, None, "--labels", "B").tolist() == ids[0].tolist()
    assert (_read_ids(tmp_path / "ids.png", None, 12, None, "--labels", "A") == 7).all()
    # and through evaluate: the JSON records the halves, the table says they were read
    res = evaluate(tmp_path / "fake", tmp_path / "test", real_half="A", no_fid=True, labels_dir=tmp_path / "test",
                   train_images=tmp_path / "trainAB", train_labels=tmp_path / "trainAB", label_nc=12,
                   palette="facades", seg_width=16, seg=seg, labels_half="B", train_images_half="A",
                   train_labels_half="B", verbose=False)
    s = res["segmentation"]
    assert (s["labels_half"], s["train_images_half"], s["train_labels_half"], s["size"]) == ("B", "A", "B", [16, 16])
    assert "A|B halves read: --train_images_half A, --train_labels_half B, --labels_half B" in format_table(res)


@pytest.mark.fault(cls="command-line errors", case="evaluate's segmentation score reading pix2pix A|B images "
                                                   "whole as --labels, --train_images or --train_labels maps")
@pytest.mark.parametrize("which", ["labels", "train_images", "train_labels", "both_train"])
def test_ab_images_read_whole_by_the_segmentation_score_are_refused(tmp_path, capsys, which):
    """A|B images read whole as label maps or photos were squashed to the segmenter's size and
    scored; refused as --real's are, naming the half option."""
    _ab(tmp_path / "fac" / "test", range(100, 104), seed=1)
    _ab(tmp_path / "fac" / "trainAB", range(6))
    _ab(tmp_path / "fac" / "trainAB2", range(6))   # a copy of the pairs under another folder
    tr = tmp_path / "fac" / "train_img"
    tl = tmp_path / "fac" / "train_label"
    _photos(tr, range(6), size=(16, 16))
    tl.mkdir()
    for i in range(6):
        Image.fromarray(PAL[np.zeros((16, 16), int)]).save(tl / f"{i}.png")
    test = tmp_path / "fac" / "test"
    argv, want = {
        "labels": (_seg_argv(tmp_path, tr, tl, test), f"--labels {test / '100.png'} is 32x16, twice as wide as "
                                                      "its --fake"),
        "train_images": (_seg_argv(tmp_path, tmp_path / "fac" / "trainAB", tl, test, "--labels_half", "B"),
                         "--train_images_half A or --train_images_half B, the half holding the photo"),
        "train_labels": (_seg_argv(tmp_path, tr, tmp_path / "fac" / "trainAB", test, "--labels_half", "B"),
                         "--train_labels_half A or --train_labels_half B, the half holding the label map"),
        "both_train": (_seg_argv(tmp_path, tmp_path / "fac" / "trainAB", tmp_path / "fac" / "trainAB2", test,
                                 "--labels_half", "B"),
                       "twice as wide as the --fake images (16x16, WxH)"),
    }[which]
    err = one_error(capsys, argv)
    assert "pix2pix A|B pair" in err and want in err, err
    if which == "labels":
        assert "--labels_half A or --labels_half B" in err, err
    if which == "both_train":
        assert "--train_images_half A --train_labels_half B" in err, err


# ---- 2: --unpaired ----------------------------------------------------------------------------------

@pytest.mark.fault(cls="command-line errors", case="evaluate of unpaired output (CycleGAN against photos of "
                                                   "other scenes): FID/KID with no file stems in common")
def test_unpaired_computes_fid_kid_over_every_image_of_both_folders(tmp_path):
    """``--fake cg/test_B --real unp/testB`` with no stems in common was 'no file stems in common';
    with partly overlapping stems FID/KID used the paired subset only."""
    fake = _photos(tmp_path / "cg" / "test_B", [f"a{i}" for i in range(5)] + ["s0", "s1", "s2"], seed=1)
    real = _photos(tmp_path / "unp" / "testB", [f"b{i}" for i in range(6)] + ["s0", "s1", "s2"], seed=2)
    ext = _tiny_extractor()
    res = evaluate(fake, real, unpaired=True, feature_extractor=ext, kid_subsets=5, kid_subset_size=4,
                   verbose=False)
    assert (res["unpaired"], res["n_fake"], res["n_real"]) == (True, 8, 9)
    assert "psnr" not in res and "ssim" not in res and "n_images" not in res
    feats = InceptionFeatures(net=ext)

    def all_of(folder):
        return feats(torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)
                                  for p in sorted(folder.iterdir())]))
    want = fid_kid(all_of(fake), all_of(real), kid_subsets=5, kid_subset_size=4)
    assert res["fid"] == pytest.approx(want["fid"], rel=1e-5, abs=1e-9)
    assert res["kid_mean"] == pytest.approx(want["kid_mean"], rel=1e-5, abs=1e-9)
    paired = evaluate(fake, real, feature_extractor=ext, kid_subsets=5, kid_subset_size=4, verbose=False)
    assert paired["n_images"] == 3 and paired["fid"] != pytest.approx(res["fid"])   # the pairs only
    table = format_table(res)
    assert "8 fake, 9 real" in table and "FID" in table and "PSNR" not in table


@pytest.mark.fault(cls="command-line errors", case="evaluate --unpaired with what needs pairs (--no_fid, the "
                                                   "segmentation score), A|B real images, sets of no common size")
def test_unpaired_refuses_what_needs_pairs_and_checks_sizes(tmp_path, capsys):
    fake = _photos(tmp_path / "fake", range(3), seed=1)
    real = _photos(tmp_path / "real", range(10, 14), seed=2)
    base = ["--fake", str(fake), "--real", str(real)]
    err = one_error(capsys, base)   # without --unpaired: the pairing error names it
    assert "no file stems in common" in err and "pass --unpaired" in err, err
    err = one_error(capsys, base + ["--unpaired", "--no_fid"])
    assert "--unpaired computes FID and KID only" in err and "drop --no_fid" in err, err
    err = one_error(capsys, base + ["--unpaired", "--labels", str(real), "--label_nc", "3"])
    assert err.startswith(f"error: --labels {real} --label_nc 3: the segmentation score") and "drop them" in err
    err = one_error(capsys, base + ["--unpaired", "--seg_steps", "5"])
    assert "--seg_steps 5" in err and "--unpaired pairs none" in err, err
    _ab(tmp_path / "ab", range(20, 23))   # 32x16 A|B pairs against 16x16 fakes
    err = one_error(capsys, ["--fake", str(fake), "--real", str(tmp_path / "ab"), "--unpaired"])
    assert "twice as wide as --fake" in err and "--real_half" in err, err
    big = _photos(tmp_path / "big", range(30, 33), size=(24, 24))
    err = one_error(capsys, ["--fake", str(fake), "--real", str(big), "--unpaired"])
    assert "are 16x16 but the --real images" in err and "24x24" in err and "--resize H W" in err, err
    ext = _tiny_extractor()
    res = evaluate(fake, big, unpaired=True, resize=(16, 16), feature_extractor=ext, verbose=False)
    assert res["resize"] == [16, 16] and res["n_real"] == 3
    res = evaluate(fake, tmp_path / "ab", unpaired=True, real_half="A", feature_extractor=ext, verbose=False)
    assert res["real_half"] == "A" and res["n_real"] == 3


def test_unpaired_on_the_command_line_writes_its_json(tmp_path, capsys):
    """The CLI with a TorchScript extractor file: the table and the JSON, which a rerun replaces."""
    from pix2pixhd.evaluate import main
    fake = _photos(tmp_path / "fake", range(3), seed=1)
    real = _photos(tmp_path / "real", range(10, 14), seed=2)
    torch.jit.script(_tiny_extractor()).save(str(tmp_path / "tiny.pt"))
    argv = ["--fake", str(fake), "--real", str(real), "--unpaired", "--inception", str(tmp_path / "tiny.pt"),
            "--kid_subsets", "3", "--json", str(tmp_path / "m.json")]
    assert main(argv) == 0
    assert "3 fake, 4 real" in capsys.readouterr().out
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["unpaired"] is True and "fid" in d and "kid_mean" in d
    assert main(argv) == 0   # its own results file is replaced, not refused


@pytest.mark.fault(cls="command-line errors", case="evaluate of CycleGAN output whose stems partly match those of "
                                                   "the --real photos: FID/KID of the pairs only")
def test_cyclegan_note_names_unpaired_when_fid_kid_cover_only_the_pairs(tmp_path):
    """The CycleGAN note said "read FID/KID" while FID/KID covered only the stems in common."""
    fake = _photos(tmp_path / "out" / "test_B", ["1", "2", "3"], seed=1)
    real = _photos(tmp_path / "testB", ["2", "3", "4", "5"], seed=2)
    (tmp_path / "out" / "synthesis.json").write_text(json.dumps({"generator": "G_A"}))
    res = evaluate(fake, real, no_fid=True, verbose=False)
    (said,) = [n for n in res["notes"] if "CycleGAN" in n]
    assert "FID/KID here cover only the 2 images of each side that pair by name (3 left out)" in said, said
    assert "pass --unpaired" in said and said.endswith("read FID/KID (drop --no_fid)"), said


# ---- 3: the cost of quality.py --prepare_only in docs/cyclegan.md ----------------------------------

def test_cyclegan_doc_says_what_preparing_the_data_costs():
    """docs/cyclegan.md listed the preparation as a first step without its cost (WALK9: 12 minutes)."""
    doc = (REPO / "docs" / "cyclegan.md").read_text()
    at = doc.index("python benchmarks/quality.py --prepare_only")
    near = doc[max(0, at - 1500):at + 1500]
    assert "12.1 min" in near and "CPU-min" in near and "once per `--data` folder" in near
    assert "--unpaired" in doc and "--unpaired" in (REPO / "docs" / "evaluation.md").read_text()


# ---- 4: cyclegan_quality.py's --src ------------------------------------------------------------------

def _prepared(data: Path, src: str, **spec) -> Path:
    """A --data folder whose manifest says it was made from ``src`` (the split's files are not needed
    for the checks made before it is read)."""
    data.mkdir(parents=True)
    (data / "quality_data.json").write_text(json.dumps({"spec": {"src": src, "n_val": 100, "split_seed": 0,
                                                                 "size": 128, **spec}}))
    return data


@pytest.mark.fault(cls="command-line errors", case="benchmarks/cyclegan_quality.py: the default --src (beside "
                                                   "the checkout) missing, --data made from another --src")
def test_cyclegan_quality_names_the_src_its_data_was_made_from(tmp_path, monkeypatch):
    """A checkout elsewhere: the default --src did not exist and --data had been made from
    /work/shared/data/facades; the error said 'pass another --data folder (or remove ...)'."""
    made = _facades(tmp_path / "facades", 3)
    data = _prepared(tmp_path / "qdata", str(made.resolve()))
    monkeypatch.setattr(Q, "DEFAULT_SRC", tmp_path / "elsewhere" / "shared" / "data" / "facades")
    a = C.parser().parse_args(["--data", str(data), "--out", str(tmp_path / "out")])
    with pytest.raises(ConfigError) as e:
        C.check_options(C.parser(), a)
    msg = str(e.value)
    assert msg.startswith(f"--src {Q.DEFAULT_SRC} does not exist (the default") and "beside this checkout" in msg
    assert f"--data {data} was prepared from --src {made.resolve()}: pass that to reuse it" in msg, msg
    assert not (tmp_path / "out").exists()
    # an existing --src other than the one the folder was made from: both named, and how to reuse it
    other = _facades(tmp_path / "other", 3)
    a = C.parser().parse_args(["--data", str(data), "--out", str(tmp_path / "out"), "--src", str(other),
                               "--n_val", "1"])
    C.check_options(C.parser(), a)
    with pytest.raises(SystemExit) as e:
        C.run_recipe(a)
    msg = str(e.value.code)
    assert msg.startswith(f"error: --data {data.resolve()} holds the split made with --src {made.resolve()} "
                          f"(this call's: {other.resolve()})"), msg
    assert f"pass --src {made.resolve()} --n_val 100 to reuse it" in msg and "another --data folder" in msg, msg


@pytest.mark.fault(cls="command-line errors", case="benchmarks/quality.py with a --src that is gone: the one "
                                                   "--data was made from, or the default beside another checkout")
def test_quality_reuses_a_data_folder_whose_src_is_gone_and_says_the_default(tmp_path, monkeypatch):
    """quality.py refused a --src without train/ even where --data held its split (which reads no
    --src); a missing default --src did not say it was the default."""
    gone = (tmp_path / "gone").resolve()
    data = _prepared(tmp_path / "qdata", str(gone))
    a = Q.build_parser().parse_args(["--prepare_only", "--data", str(data), "--src", str(gone)])
    Q.check_options(Q.build_parser(), a)   # DATA was made from it: reused, not read
    monkeypatch.setattr(Q, "DEFAULT_SRC", tmp_path / "elsewhere" / "facades")
    a = Q.build_parser().parse_args(["--prepare_only", "--data", str(data)])
    with pytest.raises(ConfigError) as e:
        Q.check_options(Q.build_parser(), a)
    msg = str(e.value)
    assert "(the default: ../shared/data/facades beside this checkout" in msg, msg
    assert f"was prepared from --src {gone}: pass that to reuse it" in msg, msg


@pytest.mark.fault(cls="command-line errors", case="python benchmarks/cyclegan_quality.py run as a script "
                                                   "past its option checks")
def test_cyclegan_quality_script_reaches_its_run(tmp_path):
    """``python benchmarks/cyclegan_quality.py --data D --out O`` died in every full run with
    "TypeError: 'Namespace' object is not callable": the __main__ block's ``from
    pix2pixhd.errors import run`` replaced the module's run(), which main() calls."""
    made = _facades(tmp_path / "facades", 3)
    other = _facades(tmp_path / "other", 3)
    data = _prepared(tmp_path / "qdata", str(made.resolve()))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "cyclegan_quality.py"), "--data", str(data),
                        "--out", str(tmp_path / "out"), "--src", str(other), "--n_val", "1", "--no_fid"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: --data"), p.stderr   # run()'s first check

"""synthesize.py --scale_width: inputs resized as training's scale_width resized them (ids nearest,
photos bicubic, through the data module's transforms), the resized maps written to the output
dataset; 'trained' is the checkpoint's --loadSize; without it, a note when the maps are far from
the width the generator was trained at (NVIDIA's test.py resized to --loadSize by default)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.cli import synthesize_main
from pix2pixhd.data import transforms as T
from pix2pixhd.datasets.synthetic_streets import generate
from pix2pixhd.errors import ConfigError
from pix2pixhd.synthesis import Synthesizer, load_generator
from tests.test_synthesis_engine import images, save_run


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=1, n_test=2, width=64, height=32, seed=0)
    return root


def synth(run, streets, out, *extra):
    return synthesize_main(["--checkpoint", str(run), "--input", str(streets / "test_label"), "--inst",
                            str(streets / "test_inst"), "--out", str(out), "--device", "cpu", "--no_progress",
                            "--workers", "0", *extra])


def test_scale_width_trained_resizes_the_maps_as_training_did(tmp_path, streets, capsys):
    cfg = save_run(tmp_path / "run", resize_or_crop="scale_width", loadSize=32)
    assert synth(tmp_path / "run", streets, tmp_path / "out", "--scale_width", "trained") == 0
    assert "note: the generator was trained" not in capsys.readouterr().err
    g = T.Geometry((32, 16), (0, 0, 32, 16), False)
    synth_ = Synthesizer(load_generator(tmp_path / "run")[0], cfg)
    for name, data in images(tmp_path / "out" / "test_label").items():
        lab = np.asarray(Image.open(streets / "test_label" / name))
        inst = np.asarray(Image.open(streets / "test_inst" / name)).astype(np.int32)
        small, small_inst = T.apply_ids(lab, g), T.apply_ids(inst, g)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "test_label" / name)), small)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "test_inst" / name)), small_inst)
        want = synth_(torch.from_numpy(small)[None, None], torch.from_numpy(small_inst)[None, None])[0]
        got = np.asarray(Image.open(tmp_path / "out" / "test_img" / name))
        assert got.shape == (16, 32, 3)
        assert np.abs(got.astype(int) - want.permute(1, 2, 0).numpy()).max() <= 1
    assert json.loads((tmp_path / "out" / "synthesis.json").read_text())["scale_width"] == 32


def test_without_it_maps_keep_their_size_and_a_far_width_is_noted(tmp_path, streets, capsys):
    save_run(tmp_path / "run", resize_or_crop="scale_width", loadSize=32)
    assert synth(tmp_path / "run", streets, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "note: the generator was trained on maps resized to 32 px wide" in err and "is 64 px wide" in err
    assert {Image.open(tmp_path / "out" / "test_img" / n).size for n in images(tmp_path / "out" / "test_img")} \
        == {(64, 32)}
    assert "scale_width" not in json.loads((tmp_path / "out" / "synthesis.json").read_text())
    # the same width as training: no note
    save_run(tmp_path / "run64", resize_or_crop="scale_width", loadSize=64)
    assert synth(tmp_path / "run64", streets, tmp_path / "out64") == 0
    assert "note: the generator was trained" not in capsys.readouterr().err


def test_real_photos_are_compared_at_the_synthesized_size_and_bad_values_are_refused(tmp_path, streets, capsys):
    save_run(tmp_path / "run", resize_or_crop="scale_width", loadSize=32)
    assert synth(tmp_path / "run", streets, tmp_path / "out", "--scale_width", "48", "--real",
                 str(streets / "test_img")) == 0
    out = capsys.readouterr().out
    assert "(resized to --scale_width 48): L1" in out and (tmp_path / "out" / "index.html").is_file()
    assert Image.open(next((tmp_path / "out" / "test_img").iterdir())).size == (48, 24)
    save_run(tmp_path / "none", resize_or_crop="none")
    with pytest.raises(ConfigError, match=r"--scale_width trained: .*--resize_or_crop none"):
        synth(tmp_path / "none", streets, tmp_path / "o2", "--scale_width", "trained")
    with pytest.raises(ConfigError, match=r"--scale_width wide: give a width in pixels"):
        synth(tmp_path / "none", streets, tmp_path / "o3", "--scale_width", "wide")


def test_side_by_side_ab_images_given_as_input_are_noted(tmp_path, capsys):
    # a pix2pix run trained on square crops of A|B images, given the A|B files through --input:
    # it ran the generator on both halves at once, without a word
    save_run(tmp_path / "run", model="pix2pix", netG_pix2pix="resnet_6blocks", label_nc=0, ngf=4)
    (tmp_path / "ab").mkdir()
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "ab" / "1.png")
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--input", str(tmp_path / "ab"), "--out",
                            str(tmp_path / "out"), "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    assert "is 32x16, twice as wide as high" in capsys.readouterr().err

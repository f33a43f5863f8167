"""synthesize.py --dataroot on a split that holds the generator's inputs alone: label maps with no
photo folder (the data engine's usual input), or one domain of CycleGAN's unaligned layout. They
synthesize, `data scan` says what they are (exit 0, except for train), and a photo folder that is
there is still paired and checked; the domain a generator reads, when absent, is named with the fix."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.cli import synthesize_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.dataset import DatasetError
from pix2pixhd.datasets.synthetic_streets import generate
from pix2pixhd.errors import MissingInputError
from pix2pixhd.models import build_generator
from tests.test_synthesis_engine import images, save_run


def synth(run, root, out, *extra):
    return synthesize_main(["--checkpoint", str(run), "--dataroot", str(root), "--out", str(out),
                            "--device", "cpu", "--no_progress", "--workers", "0", *extra])


@pytest.fixture(scope="module")
def labels_only(tmp_path_factory):
    """A synthetic-streets test split whose photos (test_img/) are removed."""
    root = tmp_path_factory.mktemp("labels_only")
    generate(root, n_train=1, n_test=3, width=64, height=32, seed=0)
    shutil.rmtree(root / "test_img")
    return root


def test_label_maps_without_photos_synthesize(tmp_path, labels_only, capsys):
    save_run(tmp_path / "run")
    assert synth(tmp_path / "run", labels_only, tmp_path / "out") == 0
    assert sorted(images(tmp_path / "out" / "test_img")) == sorted(images(labels_only / "test_label"))
    assert images(tmp_path / "out" / "test_label") == images(labels_only / "test_label")
    capsys.readouterr()
    assert data_main(["scan", str(labels_only)]) == 0   # train (with photos) and test (without): fine
    out = capsys.readouterr().out
    assert "[test] cityscapes layout, 3 samples" in out and "no test_img/" in out, out


def test_a_train_split_without_photos_and_a_partial_photo_folder_are_still_problems(tmp_path, labels_only,
                                                                                      capsys):
    root = tmp_path / "d"
    shutil.copytree(labels_only, root)
    shutil.rmtree(root / "train_img")
    assert data_main(["scan", str(root)]) == 1   # training needs the photos
    assert "train_img does not exist" in capsys.readouterr().out
    # a photo folder that is there is paired: a map without its photo is still named
    shutil.rmtree(root / "train_label")
    (root / "test_img").mkdir()
    first = sorted((root / "test_label").iterdir())[0]
    Image.new("RGB", (64, 32)).save(root / "test_img" / first.name)
    save_run(tmp_path / "run")
    with pytest.raises(DatasetError, match=r"has no test_img/"):
        synth(tmp_path / "run", root, tmp_path / "out")


@pytest.fixture(scope="module")
def cyclegan(tmp_path_factory):
    """An untrained tiny CycleGAN run and a root holding testB/ alone."""
    tmp = tmp_path_factory.mktemp("cyclegan")
    cfg = TrainConfig(model="cyclegan", ngf=4, netG_pix2pix="resnet_6blocks", norm_impl="ref").resolved()
    torch.manual_seed(0)
    state = {k: build_generator(cfg, d).state_dict() for k, d in (("G_A", "AtoB"), ("G_B", "BtoA"))}
    save_checkpoint({**state, "config": cfg.to_dict()}, tmp / "run", "latest", cfg.to_json())
    root = tmp / "only_b"
    (root / "testB").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(root / "testB" / f"b{i}.png")
    return tmp / "run", root


def test_one_cyclegan_domain_alone_synthesizes_in_its_direction(tmp_path, cyclegan, capsys):
    run, root = cyclegan
    assert synth(run, root, tmp_path / "BtoA", "--direction", "BtoA") == 0
    assert images(tmp_path / "BtoA" / "test_A") == images(root / "testB")
    assert sorted(images(tmp_path / "BtoA" / "test_B")) == sorted(images(root / "testB"))
    with pytest.raises(MissingInputError, match=r"testA/, which does not exist.*--direction BtoA"):
        synth(run, root, tmp_path / "AtoB", "--direction", "AtoB")
    capsys.readouterr()
    assert data_main(["scan", str(root)]) == 0   # was read as a pix2pix phase named "testB"
    out = capsys.readouterr().out
    assert "[test] unaligned layout, 0 A + 3 B images" in out and "--direction BtoA" in out, out
    assert "[testB]" not in out


def test_a_lone_train_domain_is_a_problem(tmp_path, cyclegan, capsys):
    _, root = cyclegan
    shutil.copytree(root / "testB", tmp_path / "d" / "trainB")
    assert data_main(["scan", str(tmp_path / "d")]) == 1
    assert "trainA does not exist" in capsys.readouterr().out

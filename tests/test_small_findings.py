"""Small user findings: convert_facades' numeric options and --direction, the training page's and
TensorBoard's captions, synthesize.py's test-time options that change nothing for a checkpoint."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.data import FACADES_PALETTE
from pix2pixhd.datasets.convert_facades import convert, main as convert_main
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.models import build_generator
from tests.synthesis_runs import synth
from tests.test_synthesis_engine import save_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _ab_folder(src: Path, n: int = 3) -> None:
    """``src/train/{1..n}.png``: a grey photo | a facades colour map, 32x32 each half."""
    (src / "train").mkdir(parents=True)
    pal = np.array(FACADES_PALETTE, np.uint8)
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        ids = np.kron(rng.integers(0, 12, (4, 4)), np.ones((8, 8), int))
        grey = rng.integers(60, 200, (32, 32, 1), dtype=np.uint8) + rng.integers(0, 8, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([grey, pal[ids]], 1)).save(src / "train" / f"{i}.png")


# ---- 1. convert_facades: negative numeric options -------------------------------------------------
@pytest.mark.parametrize("option, value, message", [
    ("--holdout", "-1", r"--holdout -1: must be 0 or more"),
    ("--limit", "-1", r"--limit -1: must be 1 or more"),
    ("--limit", "0", r"--limit 0: must be 1 or more"),
    ("--holdout_seed", "-3", r"--holdout_seed -3: must be 0 or more")])
def test_convert_facades_refuses_a_negative_count_before_writing(tmp_path, option, value, message):
    # --holdout -1 wrote {'train': 3, 'test': 0} and an empty test split; --limit -1 dropped the
    # last image, --limit 0 converted all; --holdout_seed -3 was numpy's traceback
    _ab_folder(tmp_path / "src")
    extra = ["--holdout", "1"] if option == "--holdout_seed" else []
    with pytest.raises(ConfigError, match=message):
        convert_main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), option, value, *extra])
    assert not (tmp_path / "out").exists()
    assert convert(tmp_path / "src", tmp_path / "ok", holdout=1, limit=1) == {"train": 1, "test": 1}


# ---- 2. convert_facades: the photo half taken as the label map -------------------------------------
def test_convert_facades_refuses_a_photo_half_as_the_label_map_naming_the_other_direction(tmp_path):
    # --direction AtoB on photo|label facades quantised the photos into a few ids without a word
    _ab_folder(tmp_path / "src")
    with pytest.raises(InputError, match=r"train/1\.png: only 0% of the pixels of its left half \(the label "
                                         r"map with --direction AtoB\).*pass --direction BtoA$"):
        convert(tmp_path / "src", tmp_path / "out", direction="AtoB")
    assert not (tmp_path / "out").exists()   # refused before anything is written
    assert convert(tmp_path / "src", tmp_path / "out") == {"train": 3}   # BtoA, the default


def test_one_photo_among_the_label_halves_keeps_the_earlier_conversion(tmp_path):
    """Only each split's first file was checked before writing: a bad file later stopped the run
    halfway, after the earlier conversion's folders were deleted."""
    _ab_folder(tmp_path / "src")
    assert convert(tmp_path / "src", tmp_path / "out") == {"train": 3}
    before = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    im = np.asarray(Image.open(tmp_path / "src" / "train" / "3.png"))
    Image.fromarray(np.concatenate([im[:, :32], im[:, :32]], 1)).save(tmp_path / "src" / "train" / "3.png")
    with pytest.raises(InputError, match=r"train/3\.png: only 0% of the pixels of its right half"):
        convert(tmp_path / "src", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")) == before


# ---- 3. captions of the training page and the TensorBoard grid -----------------------------------
def _show(v, visuals):
    img = np.zeros((4, 4, 3), np.uint8)
    v.display({k: img for k in visuals}, 1, 1)
    v.close()


def test_a_photo_input_is_captioned_input_and_target_a_label_map_label_and_real(tmp_path):
    from pix2pixhd.visualizer import Visualizer
    from tests.tb_events import read_events
    keys = ("label", "synthesized", "real")
    for name, label_nc, want in (("photo", 0, ["input", "synthesized", "target"]),
                                 ("ids", 4, ["label", "synthesized", "real"])):
        _show(Visualizer(tmp_path / name, label_nc=label_nc), keys)
        page = (tmp_path / name / "web" / "index.html").read_text()
        assert re.findall(r"<br>(\w+)</td>", page) == want
        assert "images/epoch001_label.png" in page   # the files keep their names
        tags = {v.tag for ev in read_events(tmp_path / name / "tensorboard") for v in ev.summary.value}
        assert tags == {"images/" + "_".join(want)}


def test_a_cyclegan_page_names_the_folders_of_a_and_b(tmp_path):
    from pix2pixhd.visualizer import Visualizer
    cycle = ("real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B")
    for name, direction, a, b in (("ab", "AtoB", "trainA", "trainB"), ("ba", "BtoA", "trainB", "trainA")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(
            {"model": "cyclegan", "dataroot": "/data/h2z", "phase": "train", "direction": direction}))
        _show(Visualizer(tmp_path / name, tensorboard=False), cycle)
        page = (tmp_path / name / "web" / "index.html").read_text()
        assert f"A: the images of /data/h2z/{a}/, B: those of /data/h2z/{b}/" in page
        assert re.findall(r"<br>(\w+)</td>", page) == list(cycle)
    _show(Visualizer(tmp_path / "pix", tensorboard=False), ("label", "synthesized", "real"))
    assert "A: the images" not in (tmp_path / "pix" / "web" / "index.html").read_text()


# ---- 4. synthesize.py: test-time options that change nothing -------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "p.png")
    return folder


def _pix2pix_run(folder: Path, norm: str) -> Path:
    """An untrained tiny pix2pix run: ResNet G with dropout, --norm ``norm``."""
    cfg = TrainConfig(model="pix2pix", ngf=4, netG_pix2pix="resnet_6blocks", norm=norm, norm_impl="ref").resolved()
    torch.manual_seed(0)
    save_checkpoint({"G": build_generator(cfg).state_dict(), "config": cfg.to_dict()}, folder, "latest",
                    cfg.to_json())
    return folder


def _notes(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if "changes nothing" in line]


def test_test_time_options_that_change_nothing_for_the_checkpoint_say_so(tmp_path, photos, capsys):
    hd = tmp_path / "hd"
    save_run(hd, label_nc=0, no_instance=True)   # pix2pixHD: instance norm, no dropout
    assert synth(hd, photos, tmp_path / "o1", "--eval") == 0
    assert _notes(capsys) == ["note: --eval (--bn_running_stats and --no_test_dropout) changes nothing for "
                              "this checkpoint: its generator has no BatchNorm layers (--norm instance: no "
                              "running statistics to use) and no dropout layers (pix2pixHD's generator has none)"]
    assert synth(hd, photos, tmp_path / "o2", "--bn_running_stats", "--no_test_dropout") == 0
    assert [n.split(" changes")[0] for n in _notes(capsys)] == ["note: --bn_running_stats", "note: --no_test_dropout"]
    inst = _pix2pix_run(tmp_path / "inst", "instance")   # dropout, no BatchNorm
    assert synth(inst, photos, tmp_path / "o3", "--eval") == 0
    assert _notes(capsys) == ["note: --eval's --bn_running_stats part changes nothing for this checkpoint: its "
                              "generator has no BatchNorm layers (--norm instance: no running statistics to use)"]
    batch = _pix2pix_run(tmp_path / "batch", "batch")   # both apply: no note
    assert synth(batch, photos, tmp_path / "o4", "--eval") == 0
    assert _notes(capsys) == []
    assert json.loads((tmp_path / "o4" / "synthesis.json").read_text()).get("batchnorm_statistics") == "running"

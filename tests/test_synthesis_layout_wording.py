"""A --dataroot whose layout is not the one the checkpoint's run was trained on, read by
synthesize.py and `python -m pix2pixhd.features`, which have no --dataset_mode or --label_nc: the
refusals named those flags (training's fixes; argparse then said "unrecognized arguments"), and a
pix2pix checkpoint (trained on AB images) refused {phase}_A/ + {phase}_B/ photo pairs, the folders
synthesize.py writes for it, though --dataroot is documented to take any layout. Now the layout
there is read where the checkpoint's inputs come in it, and otherwise the refusal says what the
checkpoint reads and the fixes these commands have. Tiny untrained generators and encoders, 16x20
photos and 64x32 synthetic streets.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.cli import synthesize_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.data import create_dataset
from pix2pixhd.data.dataset import DatasetError
from pix2pixhd.datasets.synthetic_streets import generate
from pix2pixhd.models import build_encoder
from tests.test_synthesis_engine import images, save_run
from tests.test_synthesis_option_findings import _save_cyclegan, _save_pix2pix

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TRAINING_FLAGS = ("--dataset_mode", "--label_nc 0", "set --label_nc", "Pass --label_nc", "pass --label_nc")


def _photos(folder, n=2, width=20, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, width, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One test split in each layout: aligned AB images, rgb_pairs, unaligned, cityscapes."""
    tmp = tmp_path_factory.mktemp("roots")
    _photos(tmp / "ab" / "test", width=40)
    _photos(tmp / "rgb" / "test_A"), _photos(tmp / "rgb" / "test_B", seed=1)
    _photos(tmp / "unpaired" / "testA"), _photos(tmp / "unpaired" / "testB", seed=1)
    generate(tmp / "streets", n_train=1, n_test=2, width=64, height=32, seed=0)   # classes.json: label_nc 9
    return tmp


def synth(run, out, *source):
    return synthesize_main(["--checkpoint", str(run), *source, "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0"])


def _refused(run, root, out) -> str:
    with pytest.raises(DatasetError) as e:
        synth(run, out, "--dataroot", str(root))
    msg = str(e.value)
    assert not any(flag in msg for flag in TRAINING_FLAGS), f"training's fix in synthesis: {msg}"
    assert "\n" not in msg and not out.exists(), msg
    return msg


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --dataroot with a CycleGAN checkpoint on an aligned (AB) root: refused saying "
                        "it reads testA/ + testB/, with --input FOLDER as the fix (not --dataset_mode)")
def test_a_cyclegan_checkpoint_on_paired_data_names_its_layout_and_input(tmp_path, roots):
    _save_cyclegan(tmp_path / "cg")
    msg = _refused(tmp_path / "cg", roots / "ab", tmp_path / "out")
    assert "--model cyclegan" in msg and "testA/ + testB/" in msg and "holds the aligned layout (test/" in msg, msg
    assert "with --input FOLDER" in msg, msg
    # the advice: a folder of one domain's images with --input
    assert synth(tmp_path / "cg", tmp_path / "in", "--input", str(roots / "unpaired" / "testA")) == 0
    assert len(images(tmp_path / "in" / "test_B")) == 2


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --dataroot with a pix2pix photo checkpoint (label_nc 0) on a cityscapes-layout "
                        "root: refused saying it reads photo pairs (not --dataset_mode cityscapes)")
def test_a_photo_checkpoint_on_label_maps_names_what_it_reads(tmp_path, roots):
    _save_pix2pix(tmp_path / "p2p")
    msg = _refused(tmp_path / "p2p", roots / "streets", tmp_path / "out")
    assert "test_A/ + test_B/ or side-by-side A|B images in test/" in msg, msg
    assert "holds the cityscapes layout (test_label/" in msg and "trained on them (label_nc > 0)" in msg, msg


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --dataroot with a pix2pix checkpoint trained on AB images, on test_A/ + test_B/ "
                        "photo pairs (synthesize.py's own output for it): read, as the AB images' input half")
def test_a_pix2pix_checkpoint_reads_photo_pairs_and_its_own_output(tmp_path, roots):
    _save_pix2pix(tmp_path / "p2p")
    assert synth(tmp_path / "p2p", tmp_path / "from_ab", "--dataroot", str(roots / "ab")) == 0
    assert synth(tmp_path / "p2p", tmp_path / "from_rgb", "--dataroot", str(roots / "rgb")) == 0
    assert sorted(images(tmp_path / "from_rgb" / "test_B")) == sorted(images(roots / "rgb" / "test_A"))
    # synthesize.py's output folder (test_A/ + test_B/) is a dataset root the same checkpoint reads
    assert synth(tmp_path / "p2p", tmp_path / "again", "--dataroot", str(tmp_path / "from_ab")) == 0
    assert len(images(tmp_path / "again" / "test_B")) == 2
    # its input (test_A/, the partner it records) is the AB images' input half, as the first job's
    for name in images(roots / "ab" / "test"):
        ab = np.asarray(Image.open(roots / "ab" / "test" / name))
        a = np.asarray(Image.open(tmp_path / "again" / "test_A" / name))
        assert np.array_equal(a, ab[:, :20]), name


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --dataroot with a label-map checkpoint (label_nc 9) on unpaired photo folders or "
                        "photo pairs: refused saying photos need a checkpoint trained on them (not --label_nc 0)")
@pytest.mark.parametrize("layout", ["unpaired", "rgb"])
def test_a_label_map_checkpoint_on_photos_says_it_reads_label_maps(tmp_path, roots, layout):
    save_run(tmp_path / "hd")
    msg = _refused(tmp_path / "hd", roots / layout, tmp_path / "out")
    assert "label maps of ids (label_nc 9) in test_label/" in msg, msg
    assert "photos need a checkpoint trained on photos (label_nc 0)" in msg, msg


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --dataroot with a label_nc 35 checkpoint on data whose classes.json says "
                        "label_nc 9: no data-module note naming --label_nc (synthesis has its own note)")
def test_synthesis_prints_no_label_nc_fix_for_a_smaller_classes_json(tmp_path, roots, capsys):
    save_run(tmp_path / "hd35", label_nc=35)
    assert synth(tmp_path / "hd35", tmp_path / "out", "--dataroot", str(roots / "streets")) == 0
    err = capsys.readouterr().err
    assert "--label_nc" not in err, err
    assert "not this checkpoint's 35 classes" in err, err   # synthesis's own note
    # training (which can set label_nc) still gets the note and its fix
    create_dataset(roots / "streets", "test", label_nc=35, validate="headers")
    assert "Pass --label_nc 9 unless that is meant" in capsys.readouterr().err


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory):
    """A run (label_nc 35) with an untrained feature encoder."""
    run = tmp_path_factory.mktemp("features") / "run"
    cfg = TrainConfig(name="run", checkpoints_dir=str(run.parent), instance_feat=True, label_nc=35, nef=4,
                      n_downsample_E=2, ngf=4, n_downsample_global=2, n_blocks_global=1, n_clusters=2).resolved()
    torch.manual_seed(0)
    save_checkpoint({"config": cfg.to_dict(), "global_step": 1, "E": build_encoder(cfg).state_dict()}, run,
                    "latest", cfg.to_json())
    return run


@pytest.mark.fault(cls="bad dataset",
                   case="features encode/precompute --dataroot on unpaired photo folders or photo pairs with a run "
                        "trained on label maps: refused asking for its label maps (not --label_nc 0, no such flag)")
@pytest.mark.parametrize("command", ["encode", "precompute"])
@pytest.mark.parametrize("layout", ["unpaired", "rgb"])
def test_features_on_photos_ask_for_the_runs_label_maps(feature_run, roots, command, layout):
    from pix2pixhd.features import main
    with pytest.raises(DatasetError) as e:
        main([command, "--checkpoint", str(feature_run), "--dataroot", str(roots / layout), "--phase", "test",
              "--device", "cpu"])
    msg = str(e.value)
    assert not any(flag in msg for flag in TRAINING_FLAGS), msg
    assert "trained on label maps (label_nc 35)" in msg and "a dataset of its label maps" in msg, msg


@pytest.mark.fault(cls="bad dataset",
                   case="features encode with a label_nc 35 run on data whose classes.json says label_nc 9: no "
                        "note naming --label_nc (encode has no such flag)")
def test_features_encode_prints_no_label_nc_fix(tmp_path, feature_run, roots, capsys):
    pytest.importorskip("sklearn")
    from pix2pixhd.features import main
    assert main(["encode", "--checkpoint", str(feature_run), "--dataroot", str(roots / "streets"), "--phase",
                 "test", "--device", "cpu", "--out", str(tmp_path / "clusters.pt")]) == 0
    err = capsys.readouterr().err
    assert "--label_nc" not in err, err

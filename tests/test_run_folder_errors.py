"""Where a run folder is expected and none is there: one line saying what is there instead (no
folder, an empty one, NVIDIA's pix2pixHD run to import first, a damaged checkpoint) and the fix
that applies to it, never advice naming files that do not exist. No training: checkpoints here
are small dicts; NVIDIA's files are named, not real weights (they are recognised by name)."""
import os
from pathlib import Path

import pytest
import torch

from pix2pixhd.checkpoint import (CheckpointError, CheckpointNotFoundError, load_checkpoint,
                                  load_run_config, save_checkpoint)
from pix2pixhd.errors import RunExistsError
from pix2pixhd.run_folder import check_new_run

NVIDIA_FILES = ("opt.txt", "iter.txt", "latest_net_G.pth", "latest_net_D.pth", "latest_net_E.pth",
                "features_clustered_010.npy")


@pytest.fixture()
def nvidia(tmp_path):
    """checkpoints/nv: what NVIDIA's train.py and encode_features.py leave."""
    d = tmp_path / "checkpoints" / "nv"
    d.mkdir(parents=True)
    for name in NVIDIA_FILES:
        (d / name).write_bytes(b"weights" if name.endswith(".pth") else b"2\n4\n")
    return d


@pytest.fixture()
def in_tmp(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def _nvidia_line(msg: str, folder: Path) -> None:
    assert "\n" not in msg, msg
    assert (f"{folder} is an NVIDIA pix2pixHD run folder (latest_net_G.pth, opt.txt): import it first: "
            f"python -m pix2pixhd.import_reference {folder} --name NAME") in msg, msg


# ---- NVIDIA's run folders --------------------------------------------------------------------------
@pytest.mark.parametrize("read", ["load_checkpoint", "load_run_config", "a *_net_G.pth file"])
def test_an_nvidia_run_folder_read_as_a_checkpoint_says_to_import_it(nvidia, read):
    """synthesize.py / features encode / export --checkpoint NVIDIA_DIR said "no checkpoint
    NVIDIA_DIR/latest.pt ..."."""
    with pytest.raises(CheckpointNotFoundError) as e:
        {"load_checkpoint": lambda: load_checkpoint(nvidia),
         "load_run_config": lambda: load_run_config(nvidia),
         "a *_net_G.pth file": lambda: load_checkpoint(nvidia / "latest_net_G.pth")}[read]()
    _nvidia_line(str(e.value), nvidia)


def test_continue_train_of_an_nvidia_run_folder_says_to_import_it(nvidia):
    """train_hd.py --continue_train said "holds neither config.json nor a checkpoint"."""
    from pix2pixhd.cli import resolve_config
    with pytest.raises(CheckpointNotFoundError) as e:
        resolve_config(["--continue_train", "--name", "nv", "--checkpoints_dir", str(nvidia.parent)])
    _nvidia_line(str(e.value), nvidia)


def test_synthesize_and_features_encode_of_an_nvidia_run_folder_say_to_import_it(nvidia, tmp_path):
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.features import main as features_main
    for call in (lambda: synthesize_main(["--checkpoint", str(nvidia), "--input", str(tmp_path),
                                          "--out", str(tmp_path / "o"), "--device", "cpu"]),
                 lambda: features_main(["encode", "--checkpoint", str(nvidia), "--device", "cpu"])):
        with pytest.raises(CheckpointNotFoundError) as e:
            call()
        _nvidia_line(str(e.value), nvidia)
    assert not (tmp_path / "o").exists()


def test_a_new_run_in_an_nvidia_run_folder_is_refused_untouched(nvidia):
    from pix2pixhd.cli import resolve_config
    cfg = resolve_config(["--name", "nv", "--checkpoints_dir", str(nvidia.parent), "--dataroot",
                          str(nvidia.parent), "--label_nc", "9"])
    before = {p.name: p.read_bytes() for p in nvidia.iterdir()}
    with pytest.raises(RunExistsError) as e:
        check_new_run(cfg)
    msg = str(e.value)
    assert "\n" not in msg and f"{nvidia} holds an NVIDIA pix2pixHD run (features_clustered_010.npy" in msg
    assert f"python -m pix2pixhd.import_reference {nvidia} --name NEW_NAME" in msg, msg
    assert "--name other than 'nv'" in msg and "--overwrite" in msg, msg
    assert {p.name: p.read_bytes() for p in nvidia.iterdir()} == before
    cfg.auto_resume = True   # an --auto_resume start with no latest.pt would start fresh there too
    with pytest.raises(RunExistsError):
        check_new_run(cfg)


# ---- no run folder, an empty one, one without the epoch asked for -----------------------------------
def test_a_checkpoint_folder_that_does_not_exist_says_so(in_tmp):
    """It said "no checkpoint nope/latest.pt; nope holds no checkpoints (pass --which_epoch latest
    or one of those epochs)"."""
    save_checkpoint({"global_step": 1}, in_tmp / "ck" / "mine", "latest", "{}")
    for folder, also in (("nope", ""), ("ck/nop", "; run folders in ck: mine")):
        for read in (load_checkpoint, load_run_config):
            with pytest.raises(CheckpointNotFoundError) as e:
                read(folder)
            msg = str(e.value)
            assert msg == (f"no run folder {folder}: it does not exist; check the path (train_hd.py names its "
                           f"run folders --checkpoints_dir/--name){also}"), msg


def test_an_empty_folder_suggests_no_epochs(in_tmp):
    (in_tmp / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError) as e:
        load_checkpoint("empty")
    msg = str(e.value)
    assert "empty holds no checkpoint (latest.pt or epoch_N.pt)" in msg and "--which_epoch" not in msg, msg


def test_a_missing_epoch_names_the_epochs_there_only(tmp_path):
    save_checkpoint({"global_step": 1}, tmp_path, 2, "{}")
    save_checkpoint({"global_step": 1}, tmp_path, 5, "{}")
    with pytest.raises(CheckpointNotFoundError) as e:
        load_checkpoint(tmp_path)
    msg = str(e.value)
    assert msg.endswith("pass --which_epoch 2 or --which_epoch 5") and "latest" not in msg.split(";")[1], msg


# ---- a damaged checkpoint --------------------------------------------------------------------------
@pytest.mark.parametrize("older", [True, False], ids=["an older epoch there", "no other checkpoint"])
def test_a_truncated_checkpoint_quotes_whole_sentences(tmp_path, older):
    """torch's paragraph was cut at 200 characters: "...there is a high likelihood that your
    checkpoint file is); it may be truncated"."""
    save_checkpoint({"global_step": 1, "w": torch.zeros(256)}, tmp_path, "latest", "{}")
    if older:
        save_checkpoint({"global_step": 1}, tmp_path, 3, "{}")
    latest = tmp_path / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:300])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{latest} could not be read (RuntimeError: PytorchStreamReader failed reading "
                          "zip archive: failed finding central directory.); it may be truncated or damaged"), msg
    assert "likelihood" not in msg and "\n" not in msg
    assert msg.endswith("pass --which_epoch 3, or restore latest.pt from a copy" if older
                        else "restore latest.pt from a copy"), msg


def test_train_hd_in_an_nvidia_run_folder_is_refused_untouched(nvidia, tmp_path):
    from pix2pixhd.cli import train_main
    before = {p.name: p.read_bytes() for p in nvidia.iterdir()}
    with pytest.raises(RunExistsError, match="holds an NVIDIA pix2pixHD run"):
        train_main(["--name", "nv", "--checkpoints_dir", str(nvidia.parent), "--dataroot", str(tmp_path),
                    "--label_nc", "9", "--ngf", "4", "--n_downsample_global", "1", "--n_blocks_global", "1",
                    "--ndf", "4", "--n_layers_D", "1", "--no_vgg_loss", "--device", "cpu", "--nThreads", "0",
                    "--norm_impl", "ref", "--resize_or_crop", "none"])
    assert {p.name: p.read_bytes() for p in nvidia.iterdir()} == before

"""Option combinations a user walkthrough found taken and then failing or doing nothing, each now
refused when the options are resolved (before anything is written), in one line naming the flag,
the value and the fix: label-region features of photo inputs; instance features where no instance
maps can be; a resume that adds or drops a network (--load_features, pix2pix's --lambda_GAN across
0); options nothing reads (E's without an encoder, --input_nc with label maps, --direction with
{phase}_label folders); a local stage whose global part cannot have the global stage's ngf. And a
global stage's --n_local_enhancers/--n_blocks_local, which were recorded and then left by the
local stage loading it, are what that local stage builds."""
import dataclasses
import json
import re

import pytest
import torch

from pix2pixhd.cli import resolve_config
from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError

CLI = "command-line errors"


def _run_folder(tmp_path, name, **options) -> TrainConfig:
    """A run folder whose config.json is all that resolution reads."""
    cfg = TrainConfig(name=name, checkpoints_dir=str(tmp_path), **options).resolved()
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(cfg.to_json())
    (tmp_path / name / "latest.pt").write_bytes(b"")
    return cfg


def _refused(match: str, **options) -> str:
    with pytest.raises(ConfigError, match=match) as e:
        TrainConfig(**options).resolved()
    assert "\n" not in str(e.value)
    return str(e.value)


# ---- 1, 2: features of photo inputs ---------------------------------------------------------------
@pytest.mark.fault(cls=CLI, case="--label_nc 0 --label_feat (photo inputs have no label regions): refused "
                                 "when resolved, not a shape error at the first step")
def test_label_features_of_photo_inputs_are_refused():
    said = _refused(r"^--label_feat", label_nc=0, label_feat=True)
    assert said == ("--label_feat averages E's features within label regions; --label_nc 0 inputs are photos, "
                    "which have none: drop --label_feat")
    with pytest.raises(ConfigError, match=r"^--label_feat averages"):
        resolve_config(["--label_nc", "0", "--label_feat", "--no_instance"])
    assert TrainConfig(label_nc=9, label_feat=True).resolved().label_feat   # label maps: taken


@pytest.mark.fault(cls=CLI, case="--instance_feat where no {{phase}}_inst can be (--label_nc 0, with or without "
                                 "--no_instance): refused naming --instance_feat, not 'pass --no_instance'")
def test_instance_features_without_instance_maps_are_refused_naming_instance_feat():
    for no_instance in (True, False):
        said = _refused(r"^--instance_feat averages E's features within the instances of \{phase\}_inst maps; "
                        r"--label_nc 0 inputs are photos, whose layouts have no instance maps: drop --instance_feat",
                        label_nc=0, instance_feat=True, no_instance=no_instance)
        assert ("--no_instance does not change that" in said) == no_instance and "pass --no_instance" not in said
    _refused(r"^--instance_feat .*--dataset_mode rgb_pairs reads A/B pairs", label_nc=9, instance_feat=True,
             dataset_mode="rgb_pairs")
    # label maps with their instance maps: --no_instance drops G's boundary channel, E still reads them
    d = TrainConfig(label_nc=9, instance_feat=True, no_instance=True).resolved().data_config()
    assert (d.no_instance, d.instance_feat) == (False, True)


def test_an_aligned_colour_map_dataset_with_instance_feat_names_instance_feat(tmp_path):
    """An A|B dataset of colour maps (a palette, label_nc > 0, found by --dataset_mode auto) has no
    {phase}_inst; the data config asks for them for E (TrainConfig.data_config), so with
    --no_instance given the dataset's error told the user to "pass --no_instance"."""
    import numpy as np
    from PIL import Image

    from pix2pixhd.config import TrainConfig as TC
    from pix2pixhd.data import create_dataset
    from pix2pixhd.data.dataset import DatasetError
    from tests.test_data import COLOURS, NC, blocks
    (tmp_path / "train").mkdir()
    lab, _, img = blocks(64, 32, 0)
    Image.fromarray(np.concatenate([img, COLOURS[lab].astype(np.uint8)], 1), "RGB").save(tmp_path / "train/1.png")
    (tmp_path / "palette.json").write_text(json.dumps(COLOURS.tolist()))
    cfg = TC(label_nc=NC, palette=str(tmp_path / "palette.json"), direction="BtoA", no_instance=True, instance_feat=True,
             resize_or_crop="none", dataroot=str(tmp_path)).resolved()
    with pytest.raises(DatasetError) as e:
        create_dataset(tmp_path, "train", cfg.data_config())
    assert str(e.value).endswith("has no instance maps, and --instance_feat averages E's features within them: "
                                 "drop --instance_feat"), str(e.value)


# ---- 3: a resume keeps its networks -----------------------------------------------------------------
@pytest.mark.fault(cls=CLI, case="--resume --load_features on a run that trains E, and --load_features false on "
                                 "one that reads the maps: refused by name, not an optimizer load traceback")
def test_resume_refuses_load_features_that_adds_or_drops_the_encoder(tmp_path):
    _run_folder(tmp_path, "e", label_nc=9, instance_feat=True)
    _run_folder(tmp_path, "m", label_nc=9, instance_feat=True, load_features=True)
    base = ["--checkpoints_dir", str(tmp_path), "--resume"]
    with pytest.raises(ConfigError) as e:
        resolve_config(base + ["--name", "e", "--load_features"])
    assert str(e.value) == (
        f"--load_features: --resume continues {tmp_path / 'e'}, which trains its feature encoder E (load_features "
        "off), and with --load_features it would have none (the checkpoint's E and its Adam state would not "
        f"load): drop --load_features (the run keeps its own), or start a new run that reads the maps: --name NEW "
        f"--load_pretrain {tmp_path / 'e'} --load_features")
    with pytest.raises(ConfigError, match=rf"^--load_features false: --resume continues {re.escape(str(tmp_path))}"
                                          r".m, which reads precomputed feature maps .* no feature encoder E"):
        resolve_config(base + ["--name", "m", "--load_features", "false"])
    # the run's own values resume; the fix the refusal names resolves
    assert not resolve_config(base + ["--name", "e", "--load_features", "false"]).load_features
    assert resolve_config(base + ["--name", "m", "--load_features"]).load_features
    new = resolve_config(["--checkpoints_dir", str(tmp_path), "--name", "new", "--load_pretrain",
                          str(tmp_path / "e"), "--load_features"])
    assert new.load_features and new.instance_feat


@pytest.mark.fault(cls=CLI, case="pix2pix --resume with --lambda_GAN across 0 (D dropped, or none to continue): "
                                 "refused by name")
def test_resume_refuses_lambda_gan_across_zero(tmp_path):
    pix = dict(model="pix2pix", netG_pix2pix="unet_128", ngf=8)
    _run_folder(tmp_path, "d", **pix)
    _run_folder(tmp_path, "l1", **pix, lambda_GAN=0.0)
    base = ["--checkpoints_dir", str(tmp_path), "--resume"]
    with pytest.raises(ConfigError, match=rf"^--lambda_GAN 0: --resume continues {re.escape(str(tmp_path))}.d, "
                                          r"which trains a discriminator \(lambda_GAN 1\.0\), and with 0 it has none "
                                          r"\(its D and D's Adam state would be left out of the next checkpoints\)"):
        resolve_config(base + ["--name", "d", "--lambda_GAN", "0"])
    with pytest.raises(ConfigError, match=r"^--lambda_GAN 1\.0: --resume continues .*l1, trained with lambda_GAN 0 "
                                          r"\(L1 only\), which has no discriminator to continue: drop --lambda_GAN"):
        resolve_config(base + ["--name", "l1", "--lambda_GAN", "1"])
    # another weight on the same side of 0 is a change of loss (a note), not of networks
    c = resolve_config(base + ["--name", "d", "--lambda_GAN", "0.5"])
    assert c.lambda_GAN == 0.5 and any("--lambda_GAN 1.0 -> 0.5" in n for n in c.notes())
    # the L1-only run from its G that the refusal names
    assert resolve_config(["--checkpoints_dir", str(tmp_path), "--name", "new", "--load_pretrain",
                           str(tmp_path / "d"), "--lambda_GAN", "0"]).lambda_GAN == 0


@pytest.mark.fault(cls=CLI, case="a checkpoint without the D its --model builds (saved with lambda_GAN 0): the "
                                 "error names lambda_GAN, not 'another --model?'")
def test_a_checkpoint_without_a_network_names_the_option_that_left_it_out(tmp_path, one_thread):
    from pix2pixhd.trainer import Trainer
    cfg = TrainConfig(name="l1", checkpoints_dir=str(tmp_path), model="pix2pix", netG_pix2pix="unet_128",
                      ngf=4, lambda_GAN=0.0, device="cpu", no_tensorboard=True, no_html=True,
                      no_progress=True).resolved()
    Trainer(cfg).save("latest")
    # a config built in Python is not resolved against the run: the trainer's own check says why
    with pytest.raises(CheckpointMismatchError) as e:
        Trainer(dataclasses.replace(cfg, resume=True, lambda_GAN=1.0, ndf=4))
    msg = str(e.value)
    assert msg == (f"this run (pix2pix) uses a D network but {tmp_path / 'l1' / 'latest.pt'} holds none (it holds "
                   "['G']); it was saved with lambda_GAN 0.0, and this run has --lambda_GAN 1.0: train with the "
                   "checkpoint's --lambda_GAN, or start a new run (another --name)")


# ---- 4: options nothing reads ----------------------------------------------------------------------
@pytest.mark.fault(cls=CLI, case="E's options (--feat_num, --nef, --n_downsample_E) without an encoder: refused, "
                                 "not recorded unused")
def test_encoder_options_without_an_encoder_are_refused():
    said = _refused(r"^--feat_num 5 --nef 8 --n_downsample_E 2: these options are the feature encoder's",
                    label_nc=9, feat_num=5, nef=8, n_downsample_E=2)
    assert said.endswith("drop --feat_num --nef --n_downsample_E, or add --instance_feat (or --label_feat)")
    _refused(r"^--nef 8: this option is the feature encoder's", label_nc=9, nef=8)
    # their defaults pass (a command line repeating a run's config.json), and so does an encoder
    assert TrainConfig(label_nc=9, feat_num=3, nef=16, n_downsample_E=4).resolved().feat_num == 3
    assert TrainConfig(label_nc=9, label_feat=True, feat_num=5, nef=8).resolved().nef == 8


@pytest.mark.fault(cls=CLI, case="--input_nc with label maps (--label_nc > 0): refused, not recorded unused")
def test_input_nc_with_label_maps_is_refused():
    said = _refused(r"^--input_nc 1: it is the channels of input photos \(--label_nc 0\), and --label_nc 9 reads "
                    r"label maps", label_nc=9, input_nc=1)
    assert said.endswith("drop --input_nc, or give --label_nc 0 for photo inputs")
    assert TrainConfig(label_nc=9, input_nc=3).resolved().label_nc == 9     # the default passes
    assert TrainConfig(label_nc=0, input_nc=1, no_instance=True).resolved().input_nc == 1
    assert TrainConfig(model="pix2pix", input_nc=1).resolved().input_nc == 1


@pytest.mark.fault(cls=CLI, case="--direction BtoA with {{phase}}_label folders (label maps are the input): "
                                 "refused, not recorded unused")
def test_direction_with_label_map_folders_is_refused(tmp_path):
    (tmp_path / "streets" / "train_label").mkdir(parents=True)
    streets = str(tmp_path / "streets")
    said = _refused(r"^--direction BtoA: it picks the input of A/B pairs", label_nc=9, dataroot=streets,
                    direction="BtoA")
    assert said.endswith(f"({tmp_path / 'streets' / 'train_label'}), whose input is always the label map: "
                         "drop --direction")
    _refused(r"^--direction BtoA: .*\(--dataset_mode cityscapes\)", label_nc=9, dataset_mode="cityscapes",
             direction="BtoA")
    # where direction picks the input, or the layout is not known yet, it is taken
    assert TrainConfig(label_nc=9, dataroot=streets, direction="AtoB").resolved().direction == "AtoB"
    assert TrainConfig(model="pix2pix", direction="BtoA").resolved().direction == "BtoA"
    assert TrainConfig(label_nc=9, dataroot=str(tmp_path / "elsewhere"), direction="BtoA").resolved()
    # a run that recorded it (before this check) resumes with its own command line
    old = dataclasses.replace(TrainConfig(name="old", checkpoints_dir=str(tmp_path), label_nc=9,
                                          dataroot=streets).resolved(), direction="BtoA")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(old.to_json())
    (tmp_path / "old" / "latest.pt").write_bytes(b"")
    assert resolve_config(["--checkpoints_dir", str(tmp_path), "--name", "old", "--resume", "--direction",
                           "BtoA"]).direction == "BtoA"


def test_a_global_stages_local_enhancer_options_are_the_local_stages(tmp_path):
    # recorded by the global stage, they were left by the local stage loading it (which built 1 and 3)
    _run_folder(tmp_path, "g", label_nc=9, ngf=16, loadSize=64, fineSize=64, n_local_enhancers=2,
                n_blocks_local=1)
    loc = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g")).resolved()
    assert (loc.n_local_enhancers, loc.n_blocks_local, loc.ngf, loc.loadSize, loc.netG) == (2, 1, 4, 256, "local")
    # given values still win (and the sizes follow them)
    loc = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g"), n_local_enhancers=1,
                      n_blocks_local=2).resolved()
    assert (loc.n_local_enhancers, loc.n_blocks_local, loc.ngf, loc.loadSize) == (1, 2, 8, 128)


# ---- 5: the local stage's ngf ---------------------------------------------------------------------
@pytest.mark.fault(cls=CLI, case="a local stage whose global part cannot have the global stage's ngf (ngf not a "
                                 "multiple of 2^n_local_enhancers): one error naming both, whatever --ngf is given")
def test_a_global_ngf_the_local_stage_cannot_divide_is_one_error(tmp_path):
    _run_folder(tmp_path, "g8", label_nc=9, ngf=8)
    _run_folder(tmp_path, "g6", label_nc=9, ngf=6)
    said = _refused(r"^--n_local_enhancers 4: ", stage="local", load_pretrain=str(tmp_path / "g8"),
                    n_local_enhancers=4)
    assert f"{tmp_path / 'g8'} has ngf 8, which does not divide by 2^4 = 16, so no --ngf fits" in said
    assert "--ngf 0" not in said and said.endswith("give --n_local_enhancers 3 or fewer, or train the global "
                                                   "stage with an --ngf that divides by 16 (e.g. 16)")
    six = dict(stage="local", load_pretrain=str(tmp_path / "g6"), n_local_enhancers=2)
    said = _refused(r"^--n_local_enhancers 2: .*has ngf 6, which does not divide by 2\^2 = 4", **six)
    assert "give --n_local_enhancers 1, or" in said and "Use --ngf" not in said
    # the --ngf the old advice named gives the same error, not the advice again
    assert _refused(r"^--n_local_enhancers 2", **six, ngf=1) == said
    assert TrainConfig(stage="local", load_pretrain=str(tmp_path / "g6")).resolved().ngf == 3

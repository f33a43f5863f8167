"""pix2pix and CycleGAN against the pix2pix/CycleGAN repo: pix2pixHD's generator and encoder
options are refused by name under --model pix2pix/cyclegan (they were recorded and ignored, and
--label_feat crashed pix2pix's first step), and the repo's options without an equivalent here
get the one-line reference-option refusal."""
import pytest

from pix2pixhd.cli import resolve_config
from pix2pixhd.errors import ConfigError

BASE = ["--name", "x", "--dataroot", "unused", "--device", "cpu"]


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
@pytest.mark.parametrize("opts, says", [
    (["--netG", "local"], "--netG local: --model {m} does not use it"),
    (["--n_blocks_global", "6"], "--n_blocks_global 6: --model {m} does not use it"),
    (["--n_downsample_global", "3"], "--n_downsample_global 3: --model {m} does not use it"),
    (["--n_local_enhancers", "2"], "--n_local_enhancers 2: --model {m} does not use it"),
    (["--n_blocks_local", "2"], "--n_blocks_local 2: --model {m} does not use it"),
    (["--feat_num", "4"], "--feat_num 4: --model {m} does not use it"),
    (["--nef", "8"], "--nef 8: --model {m} does not use it"),
    (["--n_downsample_E", "3"], "--n_downsample_E 3: --model {m} does not use it"),
    (["--label_feat"], None),
    (["--instance_feat"], None),
])
def test_pix2pixhd_generator_options_are_refused_for_the_other_models(model, opts, says):
    with pytest.raises(ConfigError) as e:
        resolve_config([*BASE, "--model", model, *opts])
    if says is not None:
        assert says.format(m=model) in str(e.value), str(e.value)
    else:
        assert opts[0] in str(e.value), str(e.value)


def test_the_repos_netG_names_still_work_as_netG_pix2pix():
    cfg = resolve_config([*BASE, "--model", "pix2pix", "--netG", "unet_128"])
    assert cfg.netG_pix2pix == "unet_128"


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_the_values_a_runs_config_records_pass(model):
    """A pix2pix/CycleGAN config.json records pix2pixHD's defaults (netG global, 9 blocks...):
    a command rebuilt from it is taken."""
    cfg = resolve_config([*BASE, "--model", model])
    again = [f"--{k}" if v is True else f"--{k} {v}"
             for k, v in ((k, getattr(cfg, k)) for k in ("netG", "n_blocks_global", "n_downsample_global",
                                                          "n_local_enhancers", "n_blocks_local", "feat_num",
                                                          "nef", "n_downsample_E"))
             if v is not None and v is not False]
    assert resolve_config([*BASE, "--model", model, *" ".join(again).split()]) == cfg


@pytest.mark.parametrize("option, value, says", [
    ("init_type", "xavier", "no equivalent: weights are initialised normal (std 0.02) only, not xavier"),
    ("init_type", "normal", "drop --init_type"),
    ("init_gain", "0.05", "no equivalent: the initial weights' std is 0.02"),
    ("lr_policy", "step", "no step schedule"),
    ("lr_policy", "linear", "drop --lr_policy"),
    ("lr_decay_iters", "50", "only the linear decay"),
    ("epoch_count", "5", "--resume"),
])
def test_the_repos_options_without_an_equivalent_are_one_line(option, value, says):
    from pix2pixhd.cli import train_main
    with pytest.raises(ConfigError, match=f"--{option} {value} is an option of the reference code") as e:
        train_main([*BASE, f"--{option}", value])
    assert says in str(e.value), str(e.value)


def test_a_resume_repeating_its_runs_command_line_passes(tmp_path):
    """Versions before the check recorded --netG local and --n_blocks_global 6 of a pix2pix run:
    the same command line with --auto_resume (a scheduler's rerun) continues it; a new value is
    still refused."""
    import json

    import torch
    cmd = [*BASE, "--model", "pix2pix", "--checkpoints_dir", str(tmp_path), "--name", "p"]
    saved = resolve_config(cmd).to_dict()
    saved.update(netG="local", n_blocks_global=6)   # what 1cacc53 recorded for these options
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    torch.save({"config": saved, "global_step": 1}, tmp_path / "p" / "latest.pt")
    again = [*cmd, "--netG", "local", "--n_blocks_global", "6", "--resume"]
    assert resolve_config(again).model == "pix2pix"
    with pytest.raises(ConfigError, match="--n_blocks_global 5: "):
        resolve_config([*cmd, "--n_blocks_global", "5", "--resume"])

"""The sizes a run reads and scan checks, decided in one place: the loader's scan hint names the
run's --model and the sizes that differ from that model's defaults; DataConfig's and scan's
defaults are TrainConfig's; the generator's multiple and the generators' size check are one
function each."""
from __future__ import annotations

import dataclasses
import re
import shlex

import pytest
import torch
from PIL import Image

from pix2pixhd import config as C
from pix2pixhd.config import DataConfig, TrainConfig, default_config
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.data.__main__ import scan_parser, training_sizes
from pix2pixhd.data.dataset import create_dataset, scan_command
from pix2pixhd.errors import ConfigError


def _unaligned(root):
    for d in ("trainA", "trainB"):
        (root / d).mkdir(parents=True)
        Image.new("RGB", (40, 24)).save(root / d / "x.png")
    return root


def _run(tmp_path, **options) -> TrainConfig:
    return TrainConfig(dataroot=str(tmp_path / "data"), checkpoints_dir=str(tmp_path / "ck"), name="x",
                       **options).resolved()


# 1 -----------------------------------------------------------------------------------------------
def test_scan_hint_of_a_cyclegan_run_checks_its_sizes(tmp_path, capsys):
    root = _unaligned(tmp_path / "data")
    cfg = _run(tmp_path, model="cyclegan", resize_or_crop="scale_width", loadSize=1024, fineSize=512)
    hint = scan_command(create_dataset(root, "train", cfg.data_config(validate="off")))
    assert hint == f"{root} --label_nc 0 --model cyclegan --resize_or_crop scale_width --loadSize 1024 " \
                   "--fineSize 512", hint
    data_main(["scan"] + shlex.split(hint))
    assert ("sizes as train_hd.py --model cyclegan reads them: --resize_or_crop scale_width --loadSize 1024 "
            "--fineSize 512 --batchSize 1, each side a multiple of 4") in capsys.readouterr().out
    cfg = _run(tmp_path, model="cyclegan")   # its own defaults: only --model
    assert scan_command(create_dataset(root, "train", cfg.data_config(validate="off"))) \
        == f"{root} --label_nc 0 --model cyclegan"


def test_scan_hint_without_a_model_names_scans_default(tmp_path):
    root = _unaligned(tmp_path / "data")   # DataConfig's (pix2pixhd's) sizes on CycleGAN's layout
    ds = create_dataset(root, "train", label_nc=0, no_instance=True, validate="off")
    assert scan_command(ds) == (f"{root} --label_nc 0 --model cyclegan --resize_or_crop scale_width "
                                "--loadSize 1024 --fineSize 512 --required_multiple 16")
    ds = create_dataset(root, "train", DataConfig(model="pix2pixhd", inputs_only=True), label_nc=0,
                        no_instance=True, validate="off", resize_or_crop="none", required_multiple=1)
    assert scan_command(ds) == f"{root} --label_nc 0 --model pix2pixhd --resize_or_crop none --required_multiple 1"


def test_scans_own_datasets_carry_its_model(tmp_path, monkeypatch):
    root = _unaligned(tmp_path / "data")
    seen = []

    def opened(root, phase, config=None, **options):
        seen.append(config and config.model)
        return create_dataset(root, phase, config, **options)
    monkeypatch.setattr("pix2pixhd.data.__main__.create_dataset", opened)
    data_main(["scan", str(root), "--model", "cyclegan"])
    assert seen == ["cyclegan"]   # its errors' scan hint names the model scan was given


# DataConfig's and scan's defaults -----------------------------------------------------------------
def test_data_config_defaults_are_a_pix2pixhd_runs():
    run = default_config("pix2pixhd").data_config()
    assert dataclasses.replace(run, model=None, instance_feat=None) == DataConfig()


def test_scan_help_reads_its_defaults_from_train_config(monkeypatch):
    changed = {("loadSize", "pix2pix"): 300, ("fineSize", "pix2pixhd"): 480, ("batchSize", "pix2pixhd"): 2,
               ("resize_or_crop", "pix2pixhd"): "crop", ("n_downsample_global", "pix2pixhd"): 5,
               ("n_local_enhancers", "pix2pixhd"): 2}
    of = C.default_of
    monkeypatch.setattr(C, "default_of", lambda f, model: changed.get((f.name, model), of(f, model)))
    helps = {a.dest: " ".join(a.help.split()) for a in scan_parser()._actions}
    assert "train_hd.py's, 1024; pix2pix: 300; cyclegan: 286)" in helps["loadSize"]
    assert "train_hd.py's, 480; pix2pix/cyclegan: 256)" in helps["fineSize"]
    assert "train_hd.py's, 2; pix2pix/cyclegan: 1)" in helps["batchSize"]
    assert "train_hd.py's, crop; pix2pix/cyclegan: resize_and_crop)" in helps["resize_or_crop"]
    assert "(default 5: sides a multiple of 32)" in helps["n_downsample_global"]
    assert "(default 2)" in helps["n_local_enhancers"]


# 2: the generator's multiple ----------------------------------------------------------------------
def test_generator_multiple_of_each_model(tmp_path):
    assert _run(tmp_path).generator_multiple == 16
    assert _run(tmp_path, netG="local", n_local_enhancers=2, n_downsample_global=3).generator_multiple == 32
    assert _run(tmp_path, model="pix2pix").generator_multiple == 256
    assert _run(tmp_path, model="cyclegan").generator_multiple == 4
    cfg = _run(tmp_path, instance_feat=True, n_downsample_E=6)   # E's is not the generator's
    assert (cfg.generator_multiple, cfg.required_multiple) == (16, 64)


def test_generator_multiple_is_decided_in_one_place(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "generator_size_multiple", lambda *a: 64)
    cfg = _run(tmp_path, n_downsample_global=2)
    assert (cfg.generator_multiple, cfg.required_multiple) == (64, 64)
    assert cfg.data_config().required_multiple == 64
    from pix2pixhd.models import check_generator_input
    with pytest.raises(ConfigError, match=r"too small for the generator \(64x downsampled\)"):
        check_generator_input(cfg, 64, 64, "the crop")
    a = scan_parser().parse_args(["DIR", "--n_downsample_global", "2"])
    assert training_sizes(a, "train", False)[0]["required_multiple"] == 64


# 2: the generators' size check ------------------------------------------------------------------
def test_generators_check_their_input_with_one_function(monkeypatch):
    from pix2pixhd import networks, pix2pix_networks
    from pix2pixhd.networks import Encoder, GlobalGenerator, LocalEnhancer
    from pix2pixhd.pix2pix_networks import ResnetGenerator, UnetGenerator
    x = torch.zeros(1, 3, 22, 38)
    pipeline = "; the data pipeline's resize_or_crop=none does this"
    expected = [   # the messages as they were, each generator's own
        (GlobalGenerator(3, 3, ngf=2, n_downsampling=4, n_blocks=1),
         "GlobalGenerator: input size 38x22 (WxH) is not divisible by 16; pad or resize the input to a "
         "multiple of 16 (e.g. 48x32)" + pipeline),
        (LocalEnhancer(3, 3, ngf=2, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1),
         "LocalEnhancer: input size 38x22 (WxH) is not divisible by 8; pad or resize the input to a "
         "multiple of 8 (e.g. 40x24)" + pipeline),
        (UnetGenerator(3, 3, num_downs=5, ngf=2),
         "UnetGenerator(num_downs=5): input size 38x22 (WxH) is not divisible by 32; resize or pad the "
         "input to a multiple of 32 (e.g. 64x32)"),
        (UnetGenerator(3, 3, num_downs=8, ngf=1),
         "UnetGenerator(num_downs=8): input size 38x22 (WxH) is not divisible by 256; resize or pad the "
         "input to a multiple of 256 (e.g. 256x256), or use unet_128 for smaller images"),
        (ResnetGenerator(3, 3, ngf=2, n_blocks=1),
         "ResnetGenerator: input size 38x22 (WxH) is not divisible by 4 (two stride-2 convs); pad or "
         "resize the input to 40x24"),
    ]
    for g, msg in expected:
        with pytest.raises(ValueError) as e:
            g(x)
        assert str(e.value) == msg
    with pytest.raises(ValueError, match=r"^Encoder: input size 38x22 \(WxH\) is not divisible by 4;"):
        Encoder(3, 3, ngf=2, n_downsampling=2)(x, torch.zeros(1, 1, 22, 38))

    class Checked(Exception):
        pass

    def check(x, multiple, who, *args, **kwargs):
        raise Checked(who)
    assert pix2pix_networks.check_input_size is networks.check_input_size
    for mod in (networks, pix2pix_networks):
        monkeypatch.setattr(mod, "check_input_size", check)
    for g, msg in expected:
        with pytest.raises(Checked, match=re.escape(msg.split(":")[0])):
            g(x)


def test_the_too_small_advice_of_a_stage_that_loads_its_depths_names_the_stage_to_load():
    """A local stage takes n_downsample_global with the weights it loads (--load_pretrain): advising
    --n_downsample_global 3 there was refused in turn ("does not fit ... use 4")."""
    import dataclasses
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.errors import ConfigError
    from pix2pixhd.models import check_generator_input
    cfg = TrainConfig(name="x", dataroot=".", stage="local", resize_or_crop="none").resolved()
    with pytest.raises(ConfigError) as fresh:
        check_generator_input(cfg, 64, 32, "a.png (64x32)")
    assert "use --n_downsample_global 3 (or fewer), or images of" in str(fresh.value), str(fresh.value)
    loaded = dataclasses.replace(cfg, load_pretrain="/runs/global")
    with pytest.raises(ConfigError) as e:
        check_generator_input(loaded, 64, 32, "a.png (64x32)")
    assert ("use --load_pretrain of a stage trained with --n_downsample_global 3 (or fewer), or images of"
            in str(e.value)), str(e.value)

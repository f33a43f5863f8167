"""``python -m pix2pixhd.import_reference REPO_RUN --model pix2pix|cyclegan``: run folders of the
pix2pix/CycleGAN repo (junyanz/pytorch-CycleGAN-and-pix2pix) as runs of ours that synthesize.py
reads, and the messages that send such a folder there (not to NVIDIA's import)."""
import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import synthesize_main
from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError, UserError
from pix2pixhd.import_reference import main as import_main
from pix2pixhd.pix2pix_networks import define_D, define_G
from pix2pixhd.synthesis import Synthesizer, prepare_generator

REPO = "the pix2pix/CycleGAN repo (junyanz/pytorch-CycleGAN-and-pix2pix)"


def _opt_txt(folder, opts: dict, name="train_opt.txt"):
    """The repo's options printout: padded values, '\\t[default: x]' where not the default."""
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(opts.items()):
        v, default = v if isinstance(v, tuple) else (v, None)
        lines.append("{:>25}: {:<30}{}".format(k, str(v), "" if default is None else f"\t[default: {default}]"))
    (folder / name).write_text("\n".join(lines + ["----------------- End -------------------"]) + "\n")


def _pix2pix(folder, opt=True, **over):
    """A pix2pix run folder of the repo: unet_128, ngf 8, BatchNorm, dropout; D basic, ndf 8."""
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    g = define_G(3, 3, 8, "unet_128", "batch", use_dropout=True)
    d = define_D(6, 8, "basic", 3, "batch")
    with torch.no_grad():   # BatchNorm statistics that are not the init's
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    torch.save(g.state_dict(), folder / "latest_net_G.pth")
    torch.save(d.state_dict(), folder / "latest_net_D.pth")
    if opt:
        _opt_txt(folder, {"model": ("pix2pix", "cycle_gan"), "netG": ("unet_128", "resnet_9blocks"),
                          "ngf": (8, 64), "ndf": (8, 64), "netD": "basic", "n_layers_D": 3,
                          "norm": ("batch", "instance"), "no_dropout": False, "dataset_mode": ("aligned", "unaligned"),
                          "direction": ("BtoA", "AtoB"), "load_size": (143, 286), "crop_size": (128, 256),
                          "preprocess": "resize_and_crop", "lambda_L1": 100.0, "pool_size": 0, "gan_mode": "vanilla",
                          "n_epochs": (3, 100), "n_epochs_decay": (2, 100), "epoch": "latest", "epoch_count": 1,
                          "input_nc": 3, "output_nc": 3, "dataroot": ("/data/facades", None), "gpu_ids": "0",
                          "name": folder.name, "checkpoints_dir": "./checkpoints", **over})
    return folder


def _cyclegan(folder, with_d=True, **over):
    """A CycleGAN run folder of the repo: resnet_6blocks, ngf 8, instance norm, no dropout."""
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    for k in ("G_A", "G_B"):
        torch.save(define_G(3, 3, 8, "resnet_6blocks", "instance", use_dropout=False).state_dict(),
                   folder / f"latest_net_{k}.pth")
    if with_d:
        for k in ("D_A", "D_B"):
            torch.save(define_D(3, 8, "basic", 3, "instance").state_dict(), folder / f"latest_net_{k}.pth")
    _opt_txt(folder, {"model": "cycle_gan", "netG": ("resnet_6blocks", "resnet_9blocks"), "ngf": (8, 64),
                      "ndf": (8, 64), "netD": "basic", "norm": "instance", "no_dropout": True,
                      "dataset_mode": "unaligned", "direction": "AtoB", "load_size": 286, "crop_size": 256,
                      "lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5, "pool_size": 50,
                      "gan_mode": "lsgan", "n_epochs": 100, "n_epochs_decay": 100, "input_nc": 3, "output_nc": 3,
                      "dataroot": ("/data/horse2zebra", None), **over})
    return folder


def _photos(folder, n=2, side=128):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _outputs(out):
    files = sorted((out / "test_B").glob("*.png"))
    return np.stack([np.asarray(Image.open(f)) for f in files])


def _expected(g, cfg, inputs):
    """What the repo's weights (loaded with load_reference_weights) give through Synthesizer."""
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in sorted(inputs.glob("*.png"))])).permute(0, 3, 1, 2)
    return Synthesizer(g, cfg, precision="fp32").synthesize(x)[0].permute(0, 2, 3, 1).numpy()


def test_a_pix2pix_run_of_the_repo_imports_and_synthesizes_as_its_weights(tmp_path, capsys):
    src = _pix2pix(tmp_path / "repo" / "facades")
    ck = tmp_path / "ck"
    assert import_main([str(src), "--model", "pix2pix", "--name", "facades", "--checkpoints_dir", str(ck)]) == 0
    said = capsys.readouterr().out
    assert f"imported {src} ({REPO}, pix2pix) into {ck / 'facades'}: G, D; epoch 1" in said, said
    ckpt = load_checkpoint(ck / "facades")
    cfg = ckpt["config"]
    assert ckpt["imported_from"] == str(src.resolve())
    # the repo's names (netG, load_size, crop_size, n_epochs...) as ours
    assert (cfg["model"], cfg["netG_pix2pix"], cfg["ngf"], cfg["ndf"], cfg["norm"], cfg["no_dropout"]) == \
        ("pix2pix", "unet_128", 8, 8, "batch", False)
    assert (cfg["direction"], cfg["loadSize"], cfg["fineSize"], cfg["niter"], cfg["niter_decay"]) == \
        ("BtoA", 143, 128, 3, 2)
    assert (cfg["dataroot"], cfg["gan_mode"], cfg["lambda_L1"]) == ("/data/facades", "vanilla", 100.0)

    inputs = _photos(tmp_path / "in")
    assert synthesize_main(["--checkpoint", str(ck / "facades"), "--input", str(inputs), "--out",
                            str(tmp_path / "out"), "--device", "cpu", "--no_progress", "--no_test_dropout"]) == 0
    g = define_G(3, 3, 8, "unet_128", "batch", use_dropout=True)
    load_reference_weights(g, src / "latest_net_G.pth")
    want = _expected(prepare_generator(g, test_dropout=False), TrainConfig(model="pix2pix", netG_pix2pix="unet_128",
                                                                           ngf=8).resolved(), inputs)
    got = _outputs(tmp_path / "out")
    assert got.shape == (2, 128, 128, 3)
    assert np.array_equal(got, want), np.abs(got.astype(int) - want).max()


def test_a_cyclegan_run_of_the_repo_imports_both_generators(tmp_path, capsys):
    src = _cyclegan(tmp_path / "repo" / "h2z")
    ck = tmp_path / "ck"
    assert import_main([str(src), "--model", "cyclegan", "--name", "h2z", "--checkpoints_dir", str(ck)]) == 0
    assert ": G_A, G_B, D_A, D_B; epoch 1" in capsys.readouterr().out
    ckpt = load_checkpoint(ck / "h2z")
    cfg = ckpt["config"]
    assert (cfg["model"], cfg["netG_pix2pix"], cfg["ngf"], cfg["no_dropout"], cfg["pool_size"]) == \
        ("cyclegan", "resnet_6blocks", 8, True, 50)
    assert ckpt["pools"][0]["fake_B"]["size"] == 50 and ckpt["pools"][0]["fake_B"]["images"] == []
    inputs = _photos(tmp_path / "in", side=64)
    for direction, key in (("AtoB", "G_A"), ("BtoA", "G_B")):
        out = tmp_path / f"out_{direction}"
        assert synthesize_main(["--checkpoint", str(ck / "h2z"), "--input", str(inputs), "--out", str(out),
                                "--device", "cpu", "--no_progress", "--direction", direction]) == 0
        g = define_G(3, 3, 8, "resnet_6blocks", "instance", use_dropout=False)
        load_reference_weights(g, src / f"latest_net_{key}.pth")
        want = _expected(g, TrainConfig(model="cyclegan", netG_pix2pix="resnet_6blocks", ngf=8).resolved(), inputs)
        assert np.array_equal(_outputs(out), want), direction


@pytest.mark.fault(cls="command-line errors",
                   case="synthesize.py --checkpoint of the pix2pix/CycleGAN repo's run folder: named as the repo's, "
                        "with the import command and its --model")
@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_synthesize_names_the_repo_and_the_import_with_its_model(tmp_path, kind):
    src = (_pix2pix if kind == "pix2pix" else _cyclegan)(tmp_path / "jzrun")
    with pytest.raises(UserError) as e:
        synthesize_main(["--checkpoint", str(src), "--input", str(_photos(tmp_path / "in", 1)),
                         "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = str(e.value)
    assert "\n" not in err, err
    assert f"{src} is a {kind} run folder of {REPO}" in err, err
    assert f"python -m pix2pixhd.import_reference {src} --model {kind} --name NAME" in err, err
    assert "NVIDIA" not in err, err


@pytest.mark.fault(cls="command-line errors",
                   case="import_reference REPO_RUN without --model: refused in one line naming the --model to add")
@pytest.mark.parametrize("kind,opt", [("pix2pix", True), ("pix2pix", False), ("cyclegan", True)])
def test_import_without_model_says_which_model_to_add(tmp_path, kind, opt):
    src = _pix2pix(tmp_path / "jz", opt=opt) if kind == "pix2pix" else _cyclegan(tmp_path / "jz")
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{src} is a {kind} run folder of {REPO}"), msg
    assert f"add --model {kind}" in msg, msg
    assert not (tmp_path / "ck").exists()


@pytest.mark.fault(cls="command-line errors",
                   case="import_reference REPO_RUN with options its weights contradict: refused naming the flags "
                        "that fit (the repo's names)")
def test_options_the_weights_contradict_are_refused_with_the_flags(tmp_path):
    src = _pix2pix(tmp_path / "jz", netG="unet_256", ngf=16, crop_size=256, load_size=286)
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--model", "pix2pix", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    msg = str(e.value)
    assert "train_opt.txt says netG unet_256, but latest_net_G.pth is a netG unet_128 generator" in msg, msg
    assert msg.endswith("pass --netG unet_128 --ngf 8 to import_reference"), msg
    assert not (tmp_path / "ck").exists()
    # the flags given fix it
    assert import_main([str(src), "--model", "pix2pix", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck"),
                        "--netG", "unet_128", "--ngf", "8", "--dry_run"]) == 0


@pytest.mark.fault(cls="command-line errors",
                   case="import_reference REPO_RUN with the other repo model's --model: refused naming the right one")
def test_the_other_model_is_refused_naming_the_right_one(tmp_path):
    src = _cyclegan(tmp_path / "jz")
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--model", "pix2pix", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    assert str(e.value).endswith("pass --model cyclegan"), str(e.value)


def test_guess_names_the_repos_generators():
    """A U-Net's keys (model.model.*) were called "an Encoder"."""
    g = torch.nn.Module()
    from pix2pixhd.networks import GlobalGenerator
    target = GlobalGenerator(3, 3, 8, 2, 1)
    with pytest.raises(CheckpointMismatchError) as e:
        load_reference_weights(target, define_G(3, 3, 8, "unet_128", "batch").state_dict())
    assert "pix2pix's U-Net (netG unet_128" in str(e.value) and "Encoder" not in str(e.value), str(e.value)
    with pytest.raises(UserError) as e:
        load_reference_weights(GlobalGenerator(3, 3, 8, 4, 1), define_G(3, 3, 8, "resnet_6blocks", "instance",
                                                                         use_dropout=False).state_dict())
    assert "CycleGAN's ResNet generator (netG resnet_6blocks" in str(e.value), str(e.value)
    del g


@pytest.mark.parametrize("with_d", [True, False])
def test_an_imported_cyclegan_run_resumes(tmp_path, capsys, with_d):
    """The checkpoint has the shape of NVIDIA's import (weights, epoch, imported_from, no optimizer
    state) and the image pools a CycleGAN resume reads (empty: the repo saves none). A folder
    without D_A/D_B resumes with both from their initialisation, as NVIDIA's without D does."""
    from pix2pixhd.cli import train_main
    rng = np.random.default_rng(0)
    for sub in ("trainA", "trainB"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "data" / sub / f"{i}.png")
    src = _cyclegan(tmp_path / "repo" / "h2z", with_d=with_d, load_size=64, crop_size=64)
    ck = tmp_path / "ck"
    assert import_main([str(src), "--model", "cyclegan", "--name", "h2z", "--checkpoints_dir", str(ck)]) == 0
    said = capsys.readouterr()
    assert ("training it (--resume, --load_pretrain) starts those discriminators from their initialisation"
            in said.out + said.err) == (not with_d)
    assert train_main(["--resume", "--name", "h2z", "--checkpoints_dir", str(ck), "--dataroot", str(tmp_path / "data"),
                       "--max_steps", "1", "--device", "cpu", "--nThreads", "0", "--validate", "off",
                       "--no_tensorboard", "--no_html"]) == 0
    assert load_checkpoint(ck / "h2z")["global_step"] == 1
    log = (ck / "h2z" / "loss_log.txt").read_text()
    assert ("held no D_A (no *_net_D_A.pth of the epoch imported): D_A starts from its initialisation" in log) == (not with_d)
    assert "the pix2pix/CycleGAN repo's --continue_train took it from --epoch_count" in log


@pytest.mark.fault(cls="command-line errors", case="--resume of a run imported from the pix2pix/CycleGAN repo whose "
                                                "dataroot is gone: one line naming the repo's options file")
def test_a_missing_dataroot_of_a_repo_import_names_the_repos_options_file(tmp_path):
    from pix2pixhd.errors import MissingInputError
    from pix2pixhd.run_folder import check_resumed_dataroot
    src = _pix2pix(tmp_path / "repo" / "facades", dataroot=("datasets/facades", None))
    ck = tmp_path / "ck"
    assert import_main([str(src), "--model", "pix2pix", "--name", "f", "--checkpoints_dir", str(ck)]) == 0
    cfg = TrainConfig.load(ck / "f")
    cfg.resume = True
    with pytest.raises(MissingInputError, match=r"was not found \(from .*facades's options file, relative to the "
                                                r"folder the repo's train.py ran in\)"):
        check_resumed_dataroot(cfg)


@pytest.mark.fault(cls="command-line errors", case="an import whose run folder holds the source run ({id}), with "
                                                  "--overwrite: refused, the source kept (it was moved aside with "
                                                  "the folder and deleted)")
@pytest.mark.parametrize("kind", ["repo", "nvidia"])
def test_an_import_into_a_folder_holding_its_source_is_refused_and_the_source_kept(tmp_path, kind):
    """A source inside the run folder it is imported to: the first import wrote latest.pt beside it;
    a re-import with --overwrite moved the whole folder aside, source included, and deleted it."""
    ck = tmp_path / "ck"
    if kind == "repo":
        src, model = _pix2pix(ck / "foo" / "repo_run"), ["--model", "pix2pix"]
    else:
        from tests.test_reference_import import _reference_run
        src, model = ck / "foo" / "nv_run", []
        _reference_run(src)
    for extra in ([], ["--overwrite"]):
        with pytest.raises(ConfigError, match=r"would be written into a folder holding it .*--overwrite would move "
                                              r"that folder aside and delete it, the source run with it"):
            import_main([str(src), *model, "--name", "foo", "--checkpoints_dir", str(ck), *extra])
    assert sorted(p.name for p in src.iterdir()) == sorted(p.name for p in src.iterdir() if p.is_file())
    assert (src / "latest_net_G.pth").is_file() and not (ck / "foo" / "latest.pt").exists()

"""Problems users met walking through training, each reproduced as they met it: a pix2pix loss
recipe that leaves G no loss, options given that the run never reads (D's with --lambda_GAN 0,
--n_layers_D with another PatchGAN), images too small for the generator or the feature encoder,
and the partial batch each epoch leaves out."""
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from pix2pixhd import errors
from pix2pixhd.cli import train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import ConfigError
from pix2pixhd.models import build_discriminator, check_generator_input, generator_min_side
from pix2pixhd.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--label_nc", str(LABEL_NC), "--ngf", "4", "--n_blocks_global", "1", "--ndf", "4",
        "--n_layers_D", "2", "--num_D", "1", "--no_vgg_loss", "--nThreads", "0", "--no_progress",
        "--no_tensorboard", "--no_html", "--device", "cpu", "--niter", "1", "--niter_decay", "0",
        "--norm_impl", "ref"]


def _refused(argv, capsys) -> str:
    """The one error line train_main prints for ``argv`` (exit status 1)."""
    capsys.readouterr()
    assert errors.run(train_main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- 1. no loss left for G -------------------------------------------------------------------------
def test_pix2pix_without_gan_and_l1_is_refused_before_anything_runs(tmp_path, capsys):
    # it passed --dry_run, then stopped at step 1 (torch.stack of no losses), leaving a run folder
    argv = ["--model", "pix2pix", "--lambda_GAN", "0", "--lambda_L1", "0", "--dataroot", str(tmp_path),
            "--checkpoints_dir", str(tmp_path / "ck"), "--name", "x"]
    for extra in (["--dry_run"], []):
        err = _refused(argv + extra, capsys)
        assert "--lambda_GAN 0 --lambda_L1 0" in err and "no loss" in err and "--lambda_L1 > 0" in err, err
    assert not (tmp_path / "ck").exists()
    # every other recipe keeps a G loss: pix2pix's L1 or cGAN alone, pix2pixHD's GAN term (no
    # lambda), CycleGAN's GAN terms without the cycle losses (the paper's "GAN alone")
    TrainConfig(model="pix2pix", lambda_GAN=0.0).resolved()
    TrainConfig(model="pix2pix", lambda_L1=0.0).resolved()
    TrainConfig(no_ganFeat_loss=True, no_vgg_loss=True, lambda_L1=0.0).resolved()
    TrainConfig(model="cyclegan", lambda_A=0.0, lambda_B=0.0, lambda_identity=0.0).resolved()


# ---- 2. options given that the run never reads ----------------------------------------------------
@pytest.mark.parametrize("kw, says", [
    (dict(model="pix2pix", n_layers_D=1),
     r"^--n_layers_D 1: --n_layers_D applies to --netD_pix2pix n_layers; basic is the 70x70 PatchGAN, "
     r"n_layers 3: drop --n_layers_D, or add --netD_pix2pix n_layers$"),
    (dict(model="pix2pix", netD_pix2pix="image", n_layers_D=1), r"image is the 286x286 ImageGAN, n_layers 5"),
    (dict(model="pix2pix", netD_pix2pix="pixel", n_layers_D=4), r"pixel is the 1x1 PixelGAN"),
    (dict(model="cyclegan", n_layers_D=1), r"^--n_layers_D 1: .*basic is the 70x70 PatchGAN"),
    (dict(model="pix2pix", lambda_GAN=0.0, netD_pix2pix="pixel", ndf=16),
     r"^--netD_pix2pix pixel --ndf 16: --lambda_GAN 0 trains no discriminator .*: drop --netD_pix2pix --ndf,"),
    (dict(model="pix2pix", lambda_GAN=0.0, gan_mode="lsgan"), r"^--gan_mode lsgan: --lambda_GAN 0 .*drop --gan_mode"),
    (dict(model="pix2pix", lambda_GAN=0.0, no_cond_D=True), r"^--no_cond_D on: --lambda_GAN 0 .*drop --no_cond_D"),
    (dict(model="pix2pix", lambda_GAN=0.0, n_layers_D=2), r"^--n_layers_D 2: --lambda_GAN 0"),
    (dict(no_ganFeat_loss=True, no_vgg_loss=True, lambda_feat=5.0), r"^--lambda_feat 5\.0: .*drop --lambda_feat"),
    (dict(model="cyclegan", lambda_A=0.0, lambda_B=0.0, lambda_identity=0.2), r"^--lambda_identity 0\.2: "),
])
def test_an_option_the_run_never_reads_is_refused(kw, says):
    with pytest.raises(ConfigError, match=says) as e:
        TrainConfig(**kw).resolved()
    assert "\n" not in str(e.value)


def test_n_layers_D_was_ignored_by_the_default_patchgan_and_the_refusal_keeps_what_is_read(capsys, tmp_path):
    # what the user saw: the same D (45,033 parameters) with and without --n_layers_D 1
    base = dict(model="pix2pix", ndf=8)
    n = lambda cfg: sum(p.numel() for p in build_discriminator(cfg).parameters())  # noqa: E731
    d_basic = n(TrainConfig(**base).resolved())
    assert n(TrainConfig(**base, netD_pix2pix="n_layers", n_layers_D=1).resolved()) < d_basic
    err = _refused(["--model", "pix2pix", "--n_layers_D", "1", "--dry_run", "--dataroot", str(tmp_path)], capsys)
    assert "--netD_pix2pix n_layers" in err
    # given at the model's default, or where it is read: accepted (the rule of the model-only options)
    for kw in (dict(n_layers_D=3), dict(netD_pix2pix="n_layers", n_layers_D=1), dict(lambda_GAN=0.0, ndf=64),
               dict(lambda_GAN=0.0, gan_mode="vanilla", netD_pix2pix="basic")):
        TrainConfig(model="pix2pix", **kw).resolved()
    TrainConfig(lambda_feat=5.0, no_vgg_loss=True).resolved()   # feature matching reads it


# ---- 3. images too small for G or E ---------------------------------------------------------------
@pytest.fixture(scope="module")
def small_streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root / "s32", n_train=2, n_test=0, width=32, height=16, seed=0)
    generate(root / "s64", n_train=2, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.mark.parametrize("data, opts, says", [
    ("s32", ["--resize_or_crop", "scale_width", "--loadSize", "32", "--n_downsample_global", "4"],
     r"train_00000\.png \(32x16\) with --resize_or_crop scale_width --loadSize 32 is 32x16, too small for the "
     r"generator \(16x downsampled\): each side must be more than 16 .*: use --n_downsample_global 3 \(or fewer\), "
     r"or a --loadSize \(and --fineSize\) that leaves 32 pixels a side or more"),
    ("s64", ["--resize_or_crop", "none", "--n_downsample_global", "2", "--instance_feat", "--n_downsample_E", "6"],
     r"\(64x32\) with --resize_or_crop none is 64x64, too small for the feature encoder \(64x downsampled\): "
     r"each side must be more than 64 .*: use --n_downsample_E 4 \(or fewer\), or images of 65 pixels"),
])
def test_images_too_small_for_g_or_e_are_one_line_before_the_run_folder(small_streets, tmp_path, capsys,
                                                                        data, opts, says):
    # they stopped at step 1 with torch's padding error or instance_norm_act's ValueError, the
    # second leaving config.json and the logs of a run that never trained
    ck = tmp_path / "ck"
    err = _refused(TINY + opts + ["--dataroot", str(small_streets / data), "--checkpoints_dir", str(ck),
                                  "--name", "x"], capsys)
    assert re.search(says, err), err
    assert not (ck / "x").exists()


def test_generator_min_side_is_synthesis_rule_and_the_unet_takes_any_size():
    hd = TrainConfig(n_downsample_global=2).resolved()
    assert generator_min_side(hd) == 5 and generator_min_side(hd, 16) == 17
    check_generator_input(hd, 8, 8, "x")                          # two multiples: a 2x2 bottleneck
    with pytest.raises(ConfigError, match=r"^x is 8x4, too small for the generator \(4x downsampled\)"):
        check_generator_input(hd, 8, 4, "x")
    unet = TrainConfig(model="pix2pix", netG_pix2pix="unet_128").resolved()
    assert generator_min_side(unet) == 1
    check_generator_input(unet, 128, 128, "x")
    resnet = TrainConfig(model="cyclegan").resolved()
    with pytest.raises(ConfigError, match=r"too small for the generator \(4x downsampled\).*--loadSize and "
                                          r"--fineSize 8 or more"):
        check_generator_input(resnet, 4, 4, "x")


# ---- 4. the partial batch each epoch leaves out ----------------------------------------------------
def _pairs(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(root / "train" / f"{i}.png")
    return root


@pytest.mark.parametrize("batch, world, says", [
    (4, 1, "note: 6 images, batchSize 4 x 1 process: each epoch trains 4, the last 2 of its shuffled order "
           "are left out of it"),
    (2, 2, "note: 6 images, batchSize 2 x 2 processes: each epoch trains 4, the last 2"),
    (3, 1, None), (2, 1, None)])
def test_the_partial_batch_left_out_of_each_epoch_is_said_once(tmp_path, capsys, batch, world, says):
    cfg = TrainConfig(model="pix2pix", netG_pix2pix="resnet_6blocks", ngf=4, ndf=4, resize_or_crop="none",
                      dataroot=str(_pairs(tmp_path / "ab", 6)), checkpoints_dir=str(tmp_path / "ck"),
                      name="x", batchSize=batch, nThreads=0, device="cpu", no_progress=True).resolved()
    # rank 0 of ``world`` processes (the other ranks say nothing)
    dist = SimpleNamespace(is_master=True, rank=0, world_size=world)
    capsys.readouterr()
    loader, _ = Trainer.make_loader(SimpleNamespace(cfg=cfg, dist=dist))
    assert len(loader) == 6 // world // batch   # this rank's full batches
    err = capsys.readouterr().err
    Trainer.make_loader(SimpleNamespace(cfg=cfg, dist=SimpleNamespace(is_master=False, rank=1, world_size=world)))
    assert "note:" not in capsys.readouterr().err
    assert (says in err and err.count("note:") == 1) if says else "note:" not in err, err


def test_a_restart_of_a_run_that_older_versions_took_with_an_unused_option_is_not_refused(tmp_path):
    """A run started before the unused-option check with --lambda_GAN 0 --ndf 32 (a SLURM requeue or
    torchrun restart repeats that command line): its own recorded values pass; a new run, or
    another value on resume, is refused."""
    import json
    from pix2pixhd.cli import resolve_config
    ok = TrainConfig(name="old", checkpoints_dir=str(tmp_path), model="pix2pix", lambda_GAN=0.0).resolved()
    saved = json.loads(ok.to_json())
    saved["ndf"] = 32   # what an older version recorded for that command line
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    (tmp_path / "old" / "latest.pt").write_bytes(b"")
    argv = ["--checkpoints_dir", str(tmp_path), "--model", "pix2pix", "--lambda_GAN", "0", "--ndf", "32"]
    assert resolve_config(argv + ["--name", "old", "--resume"]).ndf == 32
    with pytest.raises(ConfigError, match=r"^--ndf 32: --lambda_GAN 0 trains no discriminator"):
        resolve_config(argv + ["--name", "new"])
    with pytest.raises(ConfigError, match=r"^--ndf 16: "):
        resolve_config([*argv[:-1], "16", "--name", "old", "--resume"])


def test_a_vgg_file_given_to_a_run_without_the_vgg_loss_is_refused(tmp_path):
    """A local stage from a global one trained with --no_vgg_loss inherits it: the --vgg_path given
    for the VGG loss was taken without a word and the stage trained without it."""
    from pix2pixhd.cli import resolve_config
    base = ["--checkpoints_dir", str(tmp_path), "--ngf", "8"]
    with pytest.raises(ConfigError, match=r"^--vgg_path .*vgg19.pth: the VGG loss is off \(--no_vgg_loss\), so "
                                          r"nothing reads the file: add --no_vgg_loss false"):
        resolve_config([*base, "--name", "g", "--no_vgg_loss", "--vgg_path", "vgg19.pth"])
    g = TrainConfig(name="g", checkpoints_dir=str(tmp_path), ngf=8, no_vgg_loss=True).resolved()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(g.to_json())
    (tmp_path / "g" / "latest.pt").write_bytes(b"")
    local = [*base[:2], "--name", "l", "--stage", "local", "--load_pretrain", str(tmp_path / "g")]
    with pytest.raises(ConfigError, match=rf"the VGG loss is off \(--no_vgg_loss, taken from --load_pretrain "
                                          rf"{re.escape(str(tmp_path / 'g'))}\)"):
        resolve_config([*local, "--vgg_path", "vgg19.pth"])
    assert not resolve_config([*local, "--vgg_path", "vgg19.pth", "--no_vgg_loss", "false"]).no_vgg_loss

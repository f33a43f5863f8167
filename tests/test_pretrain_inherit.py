"""--load_pretrain takes every architecture option not given from the stage it loads, for every pair
of stages (global -> global, global -> local, local -> local/finetune, pix2pix, cyclegan); an option
given that the loaded weights do not fit is refused in one line naming the file; every load error
names the checkpoint file; a --resume refusal says truly where an imported run started from."""
import dataclasses
import re

import pytest
import torch

from pix2pixhd.checkpoint import load_checkpoint, save_checkpoint
from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError
from pix2pixhd.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(label_nc=5, ngf=8, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1, ndf=8,
            n_layers_D=2, no_vgg_loss=True, no_tensorboard=True, no_html=True, no_progress=True,
            device="cpu", nThreads=0, loadSize=64, fineSize=32)


def _cfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(**{"checkpoints_dir": str(tmp_path), **kw}).resolved()


def _saved(tmp_path, name, **kw) -> Trainer:
    """A run folder (config.json, latest.pt) of a Trainer built from TINY with ``kw``."""
    torch.manual_seed(0)
    tr = Trainer(_cfg(tmp_path, name=name, **{**TINY, **kw}))
    tr.save("latest")
    return tr


def _config_only(tmp_path, name, **kw) -> TrainConfig:
    """A run folder whose config.json is all that resolution reads."""
    cfg = _cfg(tmp_path, name=name, **kw)
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(cfg.to_json())
    (tmp_path / name / "latest.pt").write_bytes(b"")
    return cfg


def test_a_global_stage_from_a_global_run_takes_its_architecture_and_loads_it(tmp_path):
    # ngf and num_D stayed at the defaults (64, 2): 19 shape mismatches naming no file
    g = _saved(tmp_path, "g", num_D=1)
    gg = _cfg(tmp_path, name="gg", stage="global", load_pretrain=str(tmp_path / "g"))
    assert (gg.ngf, gg.num_D, gg.ndf, gg.n_downsample_global, gg.label_nc) == (8, 1, 8, 2, 5)
    tr = Trainer(gg)
    for k, v in g.G.state_dict().items():
        assert torch.equal(tr.G.state_dict()[k], v), k
    # the sizes are not taken, and a note says so where they differ
    assert (gg.loadSize, gg.fineSize) == (1024, 512)
    assert any("trained on images read as scale_width, loadSize 64, fineSize 32" in n
               and "--loadSize 64 --fineSize 32" in n for n in gg.notes())
    same = _cfg(tmp_path, name="gs", load_pretrain=str(tmp_path / "g"), loadSize=64, fineSize=32)
    assert not same.notes()


def test_an_option_given_that_the_loaded_weights_do_not_fit_is_refused_naming_the_file(tmp_path):
    _config_only(tmp_path, "g", **TINY)
    file = re.escape(str(tmp_path / "g" / "latest.pt"))
    with pytest.raises(ConfigError, match=rf"^--ngf 16 --num_D 3: this stage loads G and D of {file}, built "
                                          r"with ngf 8, num_D 2, .*: drop --ngf --num_D \(") as e:
        _cfg(tmp_path, name="x", load_pretrain=str(tmp_path / "g"), ngf=16, num_D=3, n_blocks_local=2)
    assert "\n" not in str(e.value) and "n_blocks_local" not in str(e.value)   # it shapes no global G
    _config_only(tmp_path, "l", stage="local", load_pretrain=str(tmp_path / "g"), **TINY)
    with pytest.raises(ConfigError, match=r"^--n_blocks_local 2: this stage loads G of .*l/latest\.pt, built "
                                          r"with n_blocks_local 1"):
        _cfg(tmp_path, name="f", stage="finetune", load_pretrain=str(tmp_path / "l"), n_blocks_local=2)
    # the stage loaded's own values, and options that shape nothing loaded, are fine
    f = _cfg(tmp_path, name="f", stage="finetune", load_pretrain=str(tmp_path / "l"), ngf=8, lr=0.001)
    assert (f.ngf, f.num_D, f.n_blocks_local, f.netG) == (8, 3, 1, "local")


@pytest.mark.parametrize("model, kw, given, says", [
    ("pix2pix", dict(netG_pix2pix="unet_128", lambda_GAN=0.0,   # no D: D's options are refused with it
                     ngf=8, loadSize=128, fineSize=128), dict(lambda_GAN=1.0),
     r"^--lambda_GAN 1\.0: this stage loads D of .*built with lambda_GAN 0\.0"),
    ("cyclegan", dict(netG_pix2pix="resnet_6blocks", netD_pix2pix="n_layers", ngf=8, ndf=8, n_layers_D=2),
     dict(ndf=16), r"^--ndf 16: this stage loads D_A and D_B of .*built with ndf 8")])
def test_pix2pix_and_cyclegan_runs_loaded_give_their_networks(tmp_path, model, kw, given, says):
    prev = _config_only(tmp_path, "p", model=model, **kw)
    c = _cfg(tmp_path, name="x", load_pretrain=str(tmp_path / "p"))
    names = ("model", "netG_pix2pix", "netD_pix2pix", "no_cond_D", "lambda_GAN", "ngf", "ndf", "n_layers_D")
    assert {k: getattr(c, k) for k in names} == {k: getattr(prev, k) for k in names}
    with pytest.raises(ConfigError, match=says):
        _cfg(tmp_path, name="x", load_pretrain=str(tmp_path / "p"), **given)


def test_a_local_stage_keeps_the_global_stages_discriminator_scales_and_names_the_file(tmp_path):
    _saved(tmp_path, "g", num_D=4)
    loc = _cfg(tmp_path, name="l", stage="local", load_pretrain=str(tmp_path / "g"))
    assert (loc.ngf, loc.num_D) == (4, 4)   # 3 scales, the stage's default, dropped one it trained
    Trainer(loc)
    file = re.escape(str(tmp_path / "g" / "latest.pt"))
    for given, says in ((dict(ndf=16), "ndf 8, this run's with ndf 16"), (dict(num_D=3), "num_D 4, this run's "
                                                                                         "with num_D 3")):
        cfg = _cfg(tmp_path, name="l", stage="local", load_pretrain=str(tmp_path / "g"), **given)
        with pytest.raises(CheckpointMismatchError, match=rf"^{file}: its discriminator was built with {says}"):
            Trainer(cfg)


def test_a_load_that_does_not_fit_names_the_checkpoint_file(tmp_path):
    # a config built apart from the stage loaded (Python) still fails naming the file, not "the given state_dict"
    _saved(tmp_path, "g")
    cfg = dataclasses.replace(_cfg(tmp_path, name="x", **{**TINY, "ngf": 16}), load_pretrain=str(tmp_path / "g"))
    with pytest.raises(CheckpointMismatchError, match=rf"^{re.escape(str(tmp_path / 'g' / 'latest.pt'))}'s G "
                                                      "does not fit GlobalGenerator"):
        Trainer(cfg)


def test_resume_refusal_names_the_nvidia_run_an_imported_run_came_from(tmp_path):
    # it said "it started from random weights", also after the imported run had trained on
    tr = _saved(tmp_path, "city")
    state = {**tr.state_dict(), "optimizer_G": None, "optimizer_D": None, "rng": None, "lineage": None,
             "imported_from": "/data/nvidia/city_tiny"}   # as pix2pixhd.import_reference writes it
    save_checkpoint(state, tmp_path / "city", "latest", tr.cfg.to_json())
    resume = dict(name="city", resume=True, load_pretrain=str(tmp_path / "other"))
    says = r"loads nothing else \(it was imported from /data/nvidia/city_tiny\): drop --load_pretrain"
    with pytest.raises(ConfigError, match=says):
        _cfg(tmp_path, **resume)
    resumed = Trainer(_cfg(tmp_path, name="city", resume=True))
    resumed.save("latest")   # its own checkpoint now: no optimizer-less import, the origin kept
    assert load_checkpoint(tmp_path / "city").get("optimizer_G") is not None
    with pytest.raises(ConfigError, match=says):
        _cfg(tmp_path, **resume)
    _saved(tmp_path, "fresh")
    with pytest.raises(ConfigError, match=r"\(it started from random weights\)"):
        _cfg(tmp_path, name="fresh", resume=True, load_pretrain=str(tmp_path / "other"))

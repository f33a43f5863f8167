"""Findings of Dec 6 (d), the files beside a checkpoint: a saved config is checked as a command line
is and against its weights before anything is built; files that pickle code are named as such, not
as damaged; an imported iter.txt out of range and a clusters file of the wrong width are refused in
one line naming the file."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pix2pixhd.cli import synthesize_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError, InputError, run
from tests.test_synthesis_engine import save_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _edit(folder, where=("config.json", "latest.pt"), **options):
    """Set ``options`` in the run's config.json and/or latest.pt's saved config."""
    if "latest.pt" in where:
        ck = torch.load(folder / "latest.pt", weights_only=True)
        ck["config"].update(options)
        torch.save(ck, folder / "latest.pt")
    if "config.json" in where:
        cj = json.loads((folder / "config.json").read_text())
        cj.update(options)
        (folder / "config.json").write_text(json.dumps(cj))


def _maps(folder):
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 5, (16, 16), dtype=np.uint8)).save(folder / "a.png")
    return folder


def _synth_error(capsys, folder, tmp_path) -> str:
    argv = ["--checkpoint", str(folder), "--input", str(_maps(tmp_path / "in")), "--out", str(tmp_path / "out"),
            "--device", "cpu", "--workers", "0", "--no_progress"]
    assert run(synthesize_main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ---- 1. a saved config: types, choices, ranges; its sizes against its weights -------------------------
@pytest.mark.parametrize("option, value, says", [
    ("ngf", "8", "--ngf '8': must be int"),                       # TypeError in networks
    ("norm", {"a": 1}, "--norm {'a': 1}: must be str"),           # ValueError in layers.norm_act
    ("no_instance", "false", "--no_instance 'false': must be bool"),   # read as true
    ("upsample", "bilinear", "--upsample 'bilinear': expected one of transpose, resize"),
    ("n_blocks_global", -1, "--n_blocks_global -1: must be >= 0")])
@pytest.mark.fault(cls="damaged run folder",
                   case="a saved config's {option} of the wrong type or range: one line naming the files, nothing "
                        "built")
def test_a_saved_option_of_the_wrong_type_or_range_is_one_line_naming_the_files(
        tmp_path, capsys, monkeypatch, option, value, says):
    monkeypatch.delenv("PIX2PIXHD_DEBUG", raising=False)
    folder = tmp_path / "run"
    save_run(folder, label_nc=5, no_instance=True)
    _edit(folder, **{option: value})
    err = _synth_error(capsys, folder, tmp_path)
    assert f"{folder / 'config.json'} is unreadable" in err and f"{folder / 'latest.pt'}: its saved config" in err
    assert says in err and "restore it from a copy" in err
    with pytest.raises(ConfigError, match=f"^{folder / 'config.json'} cannot be used"):
        TrainConfig.load(folder)


def test_a_saved_config_json_that_does_not_check_gives_way_to_the_checkpoints(tmp_path, capsys):
    from pix2pixhd.checkpoint import load_run_config
    folder = tmp_path / "run"
    save_run(folder, label_nc=5, no_instance=True)
    _edit(folder, where=("config.json",), no_instance="false")
    assert load_run_config(folder).no_instance is True
    assert "config.json is unreadable (ConfigError: --no_instance 'false'" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, says", [
    ("label_nc", 65536, "65536 input channels of G from label_nc 65536, no_instance True "
                        "(its G takes 5)"),   # (10**12: an allocator traceback; now past label_nc's bound)
    ("n_downsample_global", 6, "n_downsample_global 6 (its G: 2)"),   # (60: 24 GB, then killed)
    ("n_blocks_global", 50, "n_blocks_global 50 (its G: 1)"),         # (10**6: hung)
    ("netG", "local", "netG local (its G: global)")])
@pytest.mark.fault(cls="damaged run folder",
                   case="a saved config's {option} that does not fit the weights: refused before a network is "
                        "built")
def test_saved_sizes_that_do_not_fit_the_weights_are_refused_before_a_build(
        tmp_path, capsys, monkeypatch, option, value, says):
    monkeypatch.delenv("PIX2PIXHD_DEBUG", raising=False)
    import pix2pixhd.models as models
    folder = tmp_path / "run"
    save_run(folder, label_nc=5, no_instance=True)
    _edit(folder, **{option: value})
    monkeypatch.setattr(models, "build_generator", lambda *a, **k: pytest.fail("built"))
    err = _synth_error(capsys, folder, tmp_path)
    assert err == (f"error: {folder / 'latest.pt'}'s saved config does not fit the weights in "
                   f"{folder / 'latest.pt'}: {says}. The saved config was edited or damaged, or is another "
                   "run's: restore it from a copy, or set these options back to the weights' values")


def test_a_pix2pix_config_is_compared_with_its_generators_shapes(tmp_path):
    from pix2pixhd.checkpoint import load_run_config
    folder = tmp_path / "run"
    save_run(folder, model="pix2pix", ngf=4, netG_pix2pix="unet_128")
    load_run_config(folder)   # its own config fits
    _edit(folder, output_nc=1000)
    with pytest.raises(CheckpointError, match=r"G shapes from output_nc 1000, netG_pix2pix unet_128 \(2 differ, e.g. "
                                         r"model.model.3.weight \[8, 1000, 4, 4\], in the weights \[8, 3, 4, 4\]\)"):
        load_run_config(folder)
    _edit(folder, output_nc=3, ngf=10**6)
    with pytest.raises(CheckpointError, match=r"ngf 1000000 and 9 input channels \(its G: ngf 4, 9 input"):
        load_run_config(folder)


TINY = dict(label_nc=5, ngf=4, n_downsample_global=2, n_blocks_global=1, ndf=4, n_layers_D=1, num_D=1,
            no_vgg_loss=True, no_tensorboard=True, no_html=True, no_progress=True, device="cpu",
            nThreads=0, loadSize=32, fineSize=32, norm_impl="ref")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder as the Trainer saves it (G and D, config.json, latest.pt), untrained."""
    from pix2pixhd.trainer import Trainer
    ck = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    Trainer(TrainConfig(checkpoints_dir=str(ck), name="g", **TINY).resolved()).save("latest")
    return ck


def _copy(trained, tmp_path, **options):
    import shutil
    shutil.copytree(trained / "g", tmp_path / "g")
    _edit(tmp_path / "g", **options)
    return tmp_path


def test_resume_reads_a_saved_niter_of_the_wrong_type_as_one_line(trained, tmp_path):
    # it was a TypeError in config._resumed_changes: the previous config was used unchecked
    ck = _copy(trained, tmp_path, niter="3")
    with pytest.raises(CheckpointError, match=r"--niter '3': must be int .*restore it from a copy"):
        TrainConfig(checkpoints_dir=str(ck), name="g", resume=True, niter=4).resolved()


def test_load_pretrain_names_the_checkpoint_whose_own_config_does_not_check(trained, tmp_path):
    """config.json is sound, latest.pt's copy is not: the stage's start read that copy unchecked
    (a bare "niter='3': must be int" once from_saved checked it, without the file)."""
    import shutil
    from pix2pixhd.trainer import Trainer
    shutil.copytree(trained / "g", tmp_path / "g")
    _edit(tmp_path / "g", where=("latest.pt",), niter="3")
    cfg = TrainConfig(checkpoints_dir=str(tmp_path), name="l", stage="local",
                      load_pretrain=str(tmp_path / "g"), **{k: v for k, v in TINY.items() if k != "stage"}).resolved()
    with pytest.raises(CheckpointError, match=r"latest\.pt.*--niter '3': must be int"):
        Trainer(cfg)


@pytest.mark.parametrize("option, value, says", [("n_blocks_global", 50, "n_blocks_global 50 (its G: 1)"),
                                                 ("ndf", 4096, "ndf 4096 (its D: 4)")])
def test_load_pretrain_and_resume_compare_the_saved_sizes_with_the_weights(trained, tmp_path, option, value,
                                                                            says):
    ck = _copy(trained, tmp_path, **{option: value})
    latest = ck / "g" / "latest.pt"
    for given in (dict(name="g", resume=True), dict(name="l", stage="local", load_pretrain=str(ck / "g"))):
        with pytest.raises(CheckpointError) as e:
            TrainConfig(checkpoints_dir=str(ck), **given).resolved()
        assert str(e.value).startswith(f"{ck / 'g' / 'config.json'} does not fit the weights in {latest}: {says}")


# ---- 2. a file that pickles code is not "truncated or damaged" -------------------------------------------
class Pickled:
    """A class of this module: torch's "Unsupported global: GLOBAL ..." wording."""


class RunsCode:
    """Unpickles as a call of os.getpid: torch's "unsupported GLOBAL posix.getpid whose module posix
    is blocked" wording (a harmless function in place of os.system)."""

    def __reduce__(self):
        return (os.getpid, ())


@pytest.mark.fault(cls="damaged run folder",
                   case="a .pt file that would run code when unpickled ({said}): named as such, never run")
@pytest.mark.parametrize("obj, said", [(RunsCode(), f"GLOBAL {os.getpid.__module__}.getpid"),
                                       (Pickled(), f"GLOBAL {__name__}.Pickled")])
def test_a_file_pickling_python_objects_is_named_so_everywhere(tmp_path, obj, said):
    from pix2pixhd.compat import read_state_dict
    from pix2pixhd.features import FeatureClusters
    from pix2pixhd.losses import read_vgg19_state
    path = tmp_path / "latest.pt"
    torch.save({"G": {}, "x": obj}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert f"holds pickled Python objects ({said})" in str(e.value) and "damaged" not in str(e.value)
    with pytest.raises(InputError, match=r"holds pickled Python objects \(.*not loaded, as loading it would run"):
        read_vgg19_state(path)
    with pytest.raises(ValueError, match=rf"it holds objects other than tensors \({said}\)"):
        read_state_dict(path)
    with pytest.raises(InputError) as e:
        FeatureClusters.load(path)
    assert f"holds pickled Python objects ({said})" in str(e.value) and "damaged" not in str(e.value)


# ---- 3. an imported iter.txt out of range ----------------------------------------------------------------
@pytest.mark.parametrize("text", ["99999999999999999999\n0\n", "0\n0\n", "3\n-2\n", "8\n0\n"])
def test_import_refuses_an_iter_txt_position_out_of_range(tmp_path, text):
    from pix2pixhd.import_reference import import_reference_run
    from tests.test_reference_import import _reference_run
    src = tmp_path / "nvidia" / "city_tiny"
    _reference_run(src)   # niter 2 + niter_decay 4: epochs 1 to 7
    (src / "iter.txt").write_text(text)
    epoch, it = text.split()
    with pytest.raises(ConfigError, match=rf"^{src / 'iter.txt'}: epoch {epoch}, iteration {it} is not a position "
                                          r"of this run \(epochs 1 to 7"):
        import_reference_run(src, ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours")])
    assert not (tmp_path / "ours").exists()


# ---- 4. a clusters file of another width or classes ---------------------------------------------------------
def test_clusters_of_another_width_than_their_feat_num_are_refused_on_loading(tmp_path):
    from pix2pixhd.features import FeatureClusters
    path = FeatureClusters({0: torch.zeros(2, 7), 1: torch.zeros(1, 7)}, 3, 2).save(tmp_path / "c.pt")
    with pytest.raises(InputError, match=rf"^{path} is not a usable clusters file \(its centres are 7 wide, but "
                                         r"its feat_num is 3\)"):
        FeatureClusters.load(path)


def test_synthesis_refuses_clusters_of_classes_the_run_does_not_have(tmp_path, capsys, monkeypatch):
    from pix2pixhd.features import CLUSTERS_FILE, FeatureClusters
    monkeypatch.delenv("PIX2PIXHD_DEBUG", raising=False)
    folder = tmp_path / "run"
    save_run(folder, label_nc=5, no_instance=True, instance_feat=True, feat_num=3)
    FeatureClusters({0: torch.zeros(2, 3), 10**9: torch.zeros(1, 3)}, 3, 2).save(folder / CLUSTERS_FILE)
    err = _synth_error(capsys, folder, tmp_path)
    assert err.startswith(f"error: {folder / CLUSTERS_FILE} holds centres for class(es) 1000000000, but the "
                          "checkpoint's label_nc is 5")


@pytest.mark.fault(cls="damaged run folder",
                   case="config.json that does not fit the weights: --resume uses the checkpoint's own config, "
                        "with a note")
def test_a_config_json_that_does_not_fit_gives_way_to_the_checkpoints_own(trained, tmp_path, capsys):
    """config.json edited to sizes its weights do not have, the checkpoint's copy sound: --resume
    and --load_pretrain were refused ("restore it from a copy"), though the copy is in the
    checkpoint, which synthesis already used; a config.json that does not read fell back to it."""
    import shutil
    shutil.copytree(trained / "g", tmp_path / "g")
    _edit(tmp_path / "g", where=("config.json",), ngf=16)
    cfg = TrainConfig(checkpoints_dir=str(tmp_path), name="g", resume=True).resolved()
    assert cfg.ngf == 4
    err = capsys.readouterr().err
    assert (f"note: {tmp_path / 'g' / 'config.json'} does not fit the weights in {tmp_path / 'g' / 'latest.pt'} "
            f"(ngf 16 (its G: 4)); using the config saved in {tmp_path / 'g' / 'latest.pt'}") in err, err


def test_a_config_from_a_newer_version_says_so_not_damaged(trained, tmp_path):
    import shutil
    from pix2pixhd.checkpoint import load_run_config
    from pix2pixhd.config import NewerConfigError
    shutil.copytree(trained / "g", tmp_path / "g")
    _edit(tmp_path / "g", ema_decay=0.999)   # an option of a later version, in both copies
    with pytest.raises(CheckpointError) as e:
        load_run_config(tmp_path / "g")
    said = str(e.value)
    assert "unknown option(s) ['ema_decay']: written by a newer pix2pixhd than this one" in said, said
    assert "damaged" not in said and "restore" not in said, said
    with pytest.raises(NewerConfigError, match=r"config\.json: config has unknown option\(s\) \['ema_decay'\]"):
        TrainConfig.load(tmp_path / "g")

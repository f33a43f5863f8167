"""Findings of Dec 6 on the trainer and its logs: a resume to an earlier checkpoint cuts the abandoned
stretch's message lines from loss_log.txt, not only its loss lines; a fresh local stage may not fix
a randomly initialised global generator (--niter_fix_global without --load_pretrain); the page's
CycleGAN folders come from the trainer's config, not from a read of config.json."""
import dataclasses
import re

import numpy as np
import pytest

from pix2pixhd.cli import resolve_config, train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import ConfigError
from pix2pixhd.trainer import Trainer
from pix2pixhd.visualizer import Visualizer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "0", "--no_progress", "--device", "cpu",
        "--norm_impl", "ref", "--print_freq", "2", "--display_freq", "100", "--no_tensorboard", "--no_html"]


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)   # 4 steps an epoch
    return root


def _loss_steps(text):
    return [int(m.group(1)) for ln in text.splitlines()
            if (m := re.match(r"    \[step (\d+)\]", ln))]   # a loss line's extras line


# ---- 1. a resume to an earlier checkpoint cuts the abandoned stretch's messages too -----------------
def test_a_resume_to_an_earlier_epoch_cuts_the_messages_of_the_abandoned_stretch(tmp_path, streets):
    """A: epoch 1 (steps 1-4); B: --resume, epochs 2-3 (its start messages, then steps 5-12); C:
    --resume --which_epoch 1. B's start messages came before its first loss line (step 6), where
    the cut was: they stayed, and the log said twice that the run resumed from epoch 2."""
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--name", "r",
              "--niter", "3", "--niter_decay", "0", "--save_epoch_freq", "1"]
    log = tmp_path / "r" / "loss_log.txt"
    assert train_main([*common, "--max_steps", "4"]) == 0
    kept = log.read_text()
    assert _loss_steps(kept) == [1, 2, 4] and "training global stage, epochs 1..3" in kept
    assert train_main([*common, "--resume"]) == 0
    b = log.read_text()[len(kept):]
    assert "resumed from epoch 2 iteration 0" in b and _loss_steps(b) == [6, 8, 10, 12]
    assert re.search(r"^================ \[step 5\] .*resumed from epoch 2 iteration 0$", b, re.M), b
    assert train_main([*common, "--resume", "--which_epoch", "1", "--max_steps", "1"]) == 0
    text = log.read_text()
    assert text.startswith(kept)   # the kept stretch's lines, messages included, as they were
    after = text[len(kept):]
    assert after.count("resumed from epoch 2 iteration 0") == 1, after   # C's own, not B's
    assert "epochs 2..3" not in after.split("resumed from epoch 2 iteration 0")[0]
    assert not any(ln in after for ln in b.splitlines() if ln.startswith(("(epoch", "    [step")))
    b_header = len(re.findall(r"^================ Training Loss ", b, re.M))   # B's start: not cut
    assert f"loss_log.txt: {len(b.splitlines()) - b_header} line(s) from step 5 on, logged past step 4" in after
    assert _loss_steps(text) == [1, 2, 4, 5]


def test_the_cut_keeps_messages_of_the_resumed_step_and_untagged_lines_before_it(tmp_path):
    log = tmp_path / "loss_log.txt"
    log.write_text("================ Sun Dec  6 10:00:00 2026 an untagged line of an older version\n"
                   "(epoch: 1, iters: 4, step: 4) G_GAN: 1.0\n"
                   "================ [step 4] Sun Dec  6 10:00:01 2026 a save note at step 4\n"
                   "================ [step 5] Sun Dec  6 10:00:02 2026 epoch 2: global generator unfrozen\n"
                   "================ [step 5] Sun Dec  6 10:00:03 2026 stopped at step 5\n")
    v = Visualizer(tmp_path, tensorboard=False, html_page=False)
    v.begin(resumed_at_step=4)
    lines = log.read_text().splitlines()
    assert [ln.split(" 2026 ")[-1] for ln in lines[:3]] == [
        "an untagged line of an older version", "(epoch: 1, iters: 4, step: 4) G_GAN: 1.0", "a save note at step 4"]
    assert not any("unfrozen" in ln or "stopped" in ln for ln in lines)
    assert lines[3].startswith("================ Training Loss (")   # this start's header
    assert lines[4].startswith("================ [step 5] ") and "2 line(s) from step 5 on" in lines[4]
    v.log_message("given a step", step=9)
    assert log.read_text().splitlines()[-1].startswith("================ [step 9] ")


# ---- 2. --niter_fix_global on a fresh local stage without --load_pretrain --------------------------
def test_a_fresh_local_stage_cannot_fix_a_random_global_generator(tmp_path, streets):
    argv = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--name", "l",
            "--stage", "local", "--n_blocks_local", "1", "--niter", "1", "--niter_decay", "0",
            "--niter_fix_global", "2"]
    cfg = resolve_config(argv)   # resolves: an import of NVIDIA's local run has no --load_pretrain either
    want = (r"^--niter_fix_global 2: the local stage fixes its global generator for the first 2 epoch\(s\), "
            r"and without --load_pretrain that generator has random weights: give --load_pretrain "
            r"GLOBAL_RUN \(the global stage's run folder\), or drop --niter_fix_global$")
    with pytest.raises(ConfigError, match=want):
        Trainer(cfg)
    with pytest.raises(ConfigError, match=want):   # train_hd.py prints it as one error: line
        train_main(argv)
    assert not (tmp_path / "l").exists()
    # a resume (its global generator is the checkpoint's), --load_pretrain, or no fixing: not refused
    dataclasses.replace(cfg, resume=True).check_new_training()
    dataclasses.replace(cfg, load_pretrain=str(tmp_path / "g")).check_new_training()
    dataclasses.replace(cfg, niter_fix_global=0).check_new_training()
    TrainConfig(stage="finetune").resolved().check_new_training()


# ---- 3. the page's CycleGAN folders come from the trainer --------------------------------------------
def test_the_cyclegan_folders_on_the_page_come_from_the_trainers_config(tmp_path):
    root = tmp_path / "h2z"
    cfg = resolve_config(["--model", "cyclegan", "--dataroot", str(root), "--checkpoints_dir", str(tmp_path / "ck"),
                          "--name", "c", "--direction", "BtoA", "--ngf", "4", "--ndf", "4", "--netG_pix2pix",
                          "resnet_6blocks", "--netD_pix2pix", "n_layers", "--n_layers_D", "1", "--device", "cpu", "--no_tensorboard"])
    tr = Trainer(cfg)
    assert not (tmp_path / "ck" / "c" / "config.json").exists()   # nothing to read it from
    img = np.zeros((4, 4, 3), np.uint8)
    tr.vis.display({k: img for k in ("real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B")}, 1, 1)
    tr.vis.close()
    page = (tmp_path / "ck" / "c" / "web" / "index.html").read_text()
    assert f"A: the images of {root}/trainB/, B: those of {root}/trainA/ (--direction BtoA)" in page
    # built without them (the Python API): the generic line where no config.json says more
    v = Visualizer(tmp_path / "api", tensorboard=False)
    assert v._domains_line().startswith("A: the images of the dataroot's trainA/ folder")


@pytest.mark.parametrize("module, fix", [("tensorboardX", "pip install tensorboardX"), ("tqdm", "pip install tqdm")])
def test_a_missing_package_stops_the_first_start_before_the_run_folder_is_written(
        tmp_path, monkeypatch, module, fix):
    """A start without tqdm, or without a TensorBoard writer (tensorboardX nor torch's), fails
    before config.json is written, so the same command runs once the package is installed."""
    import sys

    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    from pix2pixhd.errors import MissingDependencyError
    from pix2pixhd.trainer import Trainer
    from tests.test_trainer_step import tiny_cfg
    root = tmp_path / "streets"
    generate(root, n_train=2, n_test=0, width=32, height=32, seed=0)
    cfg = dict(label_nc=LABEL_NC, dataroot=str(root), resize_or_crop="none", batchSize=1, niter=1,
               niter_decay=0, no_tensorboard=False)
    monkeypatch.setitem(sys.modules, module, None)
    if module == "tensorboardX":
        monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingDependencyError, match=fix):
        Trainer(tiny_cfg(tmp_path / "ck", **cfg)).fit()
    assert not (tmp_path / "ck" / "t").exists() or not any((tmp_path / "ck" / "t").iterdir())
    monkeypatch.undo()
    Trainer(tiny_cfg(tmp_path / "ck", **cfg)).fit()
    assert (tmp_path / "ck" / "t" / "latest.pt").is_file()


def test_dry_run_refuses_a_fresh_local_stage_fixing_a_random_global_generator(tmp_path, capsys):
    root = tmp_path / "streets"
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    generate(root, n_train=2, n_test=0, width=32, height=32, seed=0)
    argv = ["--name", "l", "--checkpoints_dir", str(tmp_path / "ck"), "--dataroot", str(root), "--label_nc",
            str(LABEL_NC), "--stage", "local", "--niter_fix_global", "1", "--no_vgg_loss", "--device", "cpu",
            "--dry_run"]
    from pix2pixhd.errors import ConfigError
    with pytest.raises(ConfigError, match="--niter_fix_global 1: .*--load_pretrain"):
        train_main(argv)

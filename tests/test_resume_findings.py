"""Resume findings: a kill between an epoch end's two saves, --auto_resume's fallback after a
--which_epoch resume went back, and BatchNorm statistics of the fixed global generator. Tiny
runs (64x32, 4 images, batch 2: 2 steps per epoch) through train_hd.py's entry point."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import pix2pixhd.trainer as trainer_module
from pix2pixhd.checkpoint import auto_resume_checkpoint, load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--n_blocks_local", "1", "--ndf", "4",
        "--num_D", "1", "--n_layers_D", "2", "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0",
        "--no_progress", "--no_tensorboard", "--no_html", "--print_freq", "1", "--device", "cpu",
        "--deterministic"]


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


def _train(ck: Path, streets: Path, *args: str) -> None:
    """A run of ``args`` (a global stage at --ngf 8 unless they say --stage or --resume)."""
    own = [] if {"--stage", "--resume", "--auto_resume"} & set(args) else ["--ngf", "8"]
    assert train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), *TINY, *own, *args]) == 0


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (no handler catches a BaseException)."""


def _killed_before_epoch_save(monkeypatch, epoch: int) -> None:
    real = trainer_module.save_checkpoint

    def save(state, folder, which, config_json):
        if which == epoch:
            raise _Killed
        return real(state, folder, which, config_json)
    monkeypatch.setattr(trainer_module, "save_checkpoint", save)


# ---- 1. a kill between latest.pt and epoch_N.pt at an epoch's end -------------------------------------
@pytest.mark.parametrize("run", [
    # epoch 2 by --save_epoch_freq, then trained on to the end: the run's end equals one in one go
    ["--niter", "2", "--niter_decay", "1", "--save_epoch_freq", "2"],
    # epoch 2 is the last: the resume has nothing to train but still writes it
    ["--niter", "1", "--niter_decay", "1", "--save_epoch_freq", "10"]], ids=["save_epoch_freq", "last"])
@pytest.mark.fault(cls="interrupted run",
                   case="killed between latest.pt and epoch_N.pt at an epoch's end ({id}): the resume "
                        "writes epoch_N.pt from that state, with a note")
def test_a_kill_between_the_epoch_ends_two_saves_loses_no_epoch_checkpoint(tmp_path, streets, monkeypatch,
                                                                           capsys, run):
    _train(tmp_path, streets, "--name", "full", *run)
    with monkeypatch.context() as m:
        _killed_before_epoch_save(m, 2)
        with pytest.raises(_Killed):
            _train(tmp_path, streets, "--name", "cut", *run)
    cut = tmp_path / "cut"
    assert not (cut / "epoch_0002.pt").exists()
    at_kill = load_checkpoint(cut)
    assert (at_kill["epoch"], at_kill["iter_in_epoch"], at_kill["global_step"]) == (3, 0, 4)
    capsys.readouterr()
    _train(tmp_path, streets, "--name", "cut", "--resume")
    err = capsys.readouterr().err
    assert f"note: epoch_0002.pt was missing: the run saved {cut / 'latest.pt'} at the end of epoch 2 " \
           "(step 4)" in err, err
    # logged as a save at the resumed step: a later resume to that step keeps the line
    assert re.search(r"^================ \[step 4\] .*epoch_0002.pt was missing", (cut / "loss_log.txt").read_text(),
                     re.M), (cut / "loss_log.txt").read_text()
    e2 = load_checkpoint(cut, 2)   # --which_epoch 2 reads it
    assert (e2["epoch"], e2["iter_in_epoch"], e2["global_step"]) == (3, 0, 4)
    for which in (2, "latest"):    # bit-equal to the run that was not killed
        full, got = load_checkpoint(tmp_path / "full", which), load_checkpoint(cut, which)
        assert got["global_step"] == full["global_step"]
        for net in ("G", "D"):
            assert all(torch.equal(v, got[net][k]) for k, v in full[net].items()), (which, net)
    # the next resume has nothing to write (and keeps no copy of its own line's files)
    capsys.readouterr()
    _train(tmp_path, streets, "--name", "cut", "--resume")
    assert "was missing" not in capsys.readouterr().err
    assert sorted(p.name for p in cut.glob("*.pt")) == sorted(p.name for p in (tmp_path / "full").glob("*.pt"))


# ---- 2. --auto_resume's fallback after a --which_epoch resume went back ------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="--auto_resume with latest.pt unreadable after a --which_epoch resume went back: "
                        "the later epoch_N.pt of the abandoned training are skipped, and named")
def test_auto_resume_falls_back_within_the_line_of_training(tmp_path, streets, capsys):
    args = ["--name", "br", "--niter", "2", "--niter_decay", "1", "--save_epoch_freq", "1"]
    _train(tmp_path, streets, *args)                                       # to step 6
    _train(tmp_path, streets, *args, "--resume", "--which_epoch", "1", "--max_steps", "1")   # 2 -> 3
    run = tmp_path / "br"
    steps = [json.loads(ln)["step"] for ln in (run / "loss_history.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]   # the history was cut back to step 2 at the resume
    assert [load_checkpoint(run, n)["global_step"] for n in (1, 2, 3)] == [2, 4, 6]   # 2, 3: went back from
    data = (run / "latest.pt").read_bytes()
    (run / "latest.pt").write_bytes(data[:100])
    which, note = auto_resume_checkpoint(run)
    assert which == "1", note
    for says in (f"resuming from {run / 'epoch_0001.pt'} (the end of epoch 1, step 2)",
                 "logged step 3 (loss_history.jsonl), so 1 steps are trained again",
                 "skipped epoch_0003.pt (step 6), epoch_0002.pt (step 4)", "--which_epoch went back from"):
        assert says in note, (says, note)
    capsys.readouterr()
    _train(tmp_path, streets, "--name", "br", "--auto_resume")
    err = capsys.readouterr().err
    assert "nothing to train" not in err
    assert load_checkpoint(run)["global_step"] == 6   # trained on from step 2


def _fake_run(folder: Path, print_freq: int, logged: int, epochs: dict[int, int]) -> Path:
    """A run folder with latest.pt unreadable, ``epochs`` {N: step} and a history up to ``logged``."""
    folder.mkdir()
    (folder / "latest.pt").write_bytes(b"x" * 100)
    (folder / "config.json").write_text(json.dumps({"print_freq": print_freq}))
    for n, step in epochs.items():
        torch.save({"global_step": step, "epoch": n + 1, "iter_in_epoch": 0,
                    "config": {"print_freq": print_freq}}, folder / f"epoch_{n:04d}.pt")
    (folder / "loss_history.jsonl").write_text(
        "".join(json.dumps({"epoch": 1, "iter": s, "step": s}) + "\n" for s in range(0, logged + 1, print_freq)[1:]))
    return folder


def test_auto_resume_keeps_an_epoch_saved_after_the_last_log_line(tmp_path):
    # --print_freq 100, epochs of 75 steps: epoch 2 (step 150) was saved after the log at step 100;
    # the run died before its log at 200. epoch_0002.pt is this line's newest, not one gone back from.
    run = _fake_run(tmp_path / "r", 100, 100, {1: 75, 2: 150})
    which, note = auto_resume_checkpoint(run)
    assert which == "2" and "skipped" not in note, note
    # a step at or past the next log line (200) the history lacks cannot be this line's
    shutil.rmtree(run)
    run = _fake_run(tmp_path / "r", 100, 100, {1: 75, 2: 150, 3: 225})
    which, note = auto_resume_checkpoint(run)
    assert which == "2" and "skipped epoch_0003.pt (step 225)" in note, note


# ---- 3. BatchNorm statistics of the fixed global generator -------------------------------------------
def test_fixed_global_generator_keeps_its_batchnorm_statistics(tmp_path, streets):
    _train(tmp_path, streets, "--name", "g", "--norm", "batch", "--niter", "1", "--niter_decay", "0")
    local = ["--name", "l", "--stage", "local", "--load_pretrain", str(tmp_path / "g"), "--niter", "2",
             "--niter_decay", "0", "--niter_fix_global", "1", "--save_epoch_freq", "1"]
    _train(tmp_path, streets, *local, "--max_steps", "1")   # mid epoch 1 (fixed)
    _train(tmp_path, streets, "--name", "l", "--resume")     # rest of epoch 1, then epoch 2 (unfrozen)
    g = load_checkpoint(tmp_path / "g")["G"]
    e1, e2 = (load_checkpoint(tmp_path / "l", n)["G"] for n in (1, 2))
    stats = [k for k in e1 if k.startswith("model.") and k.rsplit(".", 1)[1] in
             ("running_mean", "running_var", "num_batches_tracked")]
    assert len(stats) > 6
    fixed = [k for k in e1 if k.startswith("model.")]
    assert [k for k in fixed if not torch.equal(e1[k], g[k])] == []   # epoch 1: all of it as loaded
    assert all(not torch.equal(e2[k], e1[k]) for k in stats)         # unfrozen: tracked again


def test_a_beta1_given_with_resume_is_the_one_adam_steps_with(tmp_path, streets):
    """The note about options changed on --resume names --beta1; the optimizer's state restored
    from the checkpoint brought the old betas back, so the new one was recorded but never used."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.trainer import Trainer
    _train(tmp_path, streets, "--name", "b", "--niter", "1", "--niter_decay", "0", "--beta1", "0.5")
    cfg = TrainConfig(name="b", checkpoints_dir=str(tmp_path), resume=True, niter=2, beta1=0.9).resolved()
    t = Trainer(cfg)
    assert {g["betas"] for o in (t.opt_G, t.opt_D) for g in o.param_groups} == {(0.9, 0.999)}
    assert load_checkpoint(tmp_path / "b")["optimizer_G"]["param_groups"][0]["betas"] == (0.5, 0.999)


@pytest.mark.parametrize("niter, stopped", [(1, False), (2, True)])
def test_max_steps_at_an_epochs_last_step_ends_the_epoch_as_usual(tmp_path, streets, capsys, niter, stopped):
    """--max_steps reached on an epoch's last step returned before the epoch's end: no
    epoch_N.pt (the next --resume trained 0 steps to write it) and, at the run's last step,
    "stopped_early": true for a run that had finished."""
    capsys.readouterr()
    _train(tmp_path, streets, "--name", "r", "--niter", str(niter), "--niter_decay", "0", "--save_epoch_freq", "1",
           "--max_steps", "2")   # 4 images, batch 2: 2 steps per epoch
    out = capsys.readouterr().out
    summary = json.loads(out[out.rindex("\n{") + 1:])   # train_hd.py's last output: the summary
    assert summary["stopped_early"] is stopped and summary["epochs_completed"] == 1, summary
    run = tmp_path / "r"
    assert load_checkpoint(run, 1)["global_step"] == 2   # the epoch's end, written as every epoch end is
    ck = load_checkpoint(run)
    assert (ck["epoch"], ck["iter_in_epoch"], ck["global_step"]) == (2, 0, 2)

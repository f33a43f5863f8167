"""--keep_epoch_checkpoints K: a run folder keeps the K newest epoch_N.pt and removes the older
ones after each new one is written (every --save_epoch_freq epochs one was added and none was
ever removed: 101 of them after 2000 epochs of a tiny run, ~1 GB each at 2048x1024). Only the
run's own epoch files go: never latest.pt, the epoch_N_stepS.pt a --which_epoch resume keeps
aside, links or other names; a file that cannot be removed is a note, not a stopped run; the
option is the run's, kept by a resume and changeable there."""
import json
import os
import pathlib
import re
from pathlib import Path

import pytest

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate

N_TRAIN, BATCH = 4, 2   # 2 steps an epoch
TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--n_downsample_global", "2",
        "--n_blocks_global", "1", "--ngf", "4", "--ndf", "4", "--n_layers_D", "2", "--num_D", "1",
        "--no_vgg_loss", "--batchSize", str(BATCH), "--nThreads", "0", "--no_progress",
        "--no_tensorboard", "--no_html", "--print_freq", "100", "--device", "cpu",
        "--niter_decay", "0", "--save_epoch_freq", "1"]


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=N_TRAIN, n_test=0, width=32, height=32, seed=0)
    return root


def _train(ck: Path, streets: Path, *args: str) -> None:
    assert train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), *TINY, *args]) == 0


def _pt(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".pt"))


def test_keep_two_leaves_the_two_newest_epochs_and_latest(tmp_path, streets):
    _train(tmp_path, streets, "--name", "r", "--niter", "5", "--keep_epoch_checkpoints", "2")
    run = tmp_path / "r"
    assert _pt(run) == ["epoch_0004.pt", "epoch_0005.pt", "latest.pt"], _pt(run)
    assert load_checkpoint(run, 5)["global_step"] == 10
    assert json.loads((run / "config.json").read_text())["keep_epoch_checkpoints"] == 2


@pytest.mark.fault(cls="interrupted run",
                   case="--keep_epoch_checkpoints 2 on a --which_epoch resume that went back: the older "
                        "epoch_N.pt removed; the kept-aside epoch_N_stepS.pt, a link, epoch_5.pt and other "
                        "files left")
def test_only_the_runs_own_older_epoch_files_are_removed(tmp_path, streets):
    run = tmp_path / "r"
    # K=0 (the default) keeps every epoch: 4 of them
    _train(tmp_path, streets, "--name", "r", "--niter", "5", "--max_steps", "8")
    assert _pt(run) == ["epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt", "epoch_0004.pt", "latest.pt"]
    # files that are not the run's epoch checkpoints: a link (to a file outside), a name
    # --which_epoch does not read, another file
    outside = tmp_path / "elsewhere.pt"
    (run / "epoch_0001.pt").rename(outside)
    os.symlink(outside, run / "epoch_0001.pt")
    (run / "epoch_5.pt").write_bytes(b"mine")
    (run / "notes.pt").write_bytes(b"mine")
    (run / "epoch_0000.txt").write_bytes(b"mine")
    # back to epoch 2, on to 5 keeping 2: epochs 3 and 4 of the first training are kept aside
    _train(tmp_path, streets, "--name", "r", "--resume", "--which_epoch", "2", "--keep_epoch_checkpoints", "2")
    kept_aside = [n for n in _pt(run) if re.fullmatch(r"(epoch_000[34]|latest)_step[0-9]+\.pt", n)]
    assert len(kept_aside) == 3, _pt(run)
    assert sorted(set(_pt(run)) - set(kept_aside)) == [
        "epoch_0001.pt", "epoch_0004.pt", "epoch_0005.pt", "epoch_5.pt", "latest.pt", "notes.pt"], _pt(run)
    assert (run / "epoch_0001.pt").is_symlink() and outside.is_file()
    assert (run / "epoch_0000.txt").read_bytes() == b"mine"
    assert load_checkpoint(run, 5)["global_step"] == 10


@pytest.mark.fault(cls="damaged run folder",
                   case="--keep_epoch_checkpoints: an old epoch_N.pt that cannot be removed is one note "
                        "(once per file) and the run finishes")
def test_a_failing_removal_is_a_note_and_the_run_finishes(tmp_path, streets, monkeypatch, capsys):
    unlink = pathlib.Path.unlink

    def refused(self, *a, **k):
        if re.fullmatch(r"epoch_[0-9]{4}\.pt", self.name):
            raise PermissionError(13, "Permission denied", str(self))
        return unlink(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "unlink", refused)
    _train(tmp_path, streets, "--name", "r", "--niter", "3", "--keep_epoch_checkpoints", "1")
    run = tmp_path / "r"
    assert _pt(run) == ["epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt", "latest.pt"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "could not remove" in line]
    assert len(notes) == 2, notes   # epoch 1 after epoch 2's save, epoch 2 after epoch 3's: each once
    assert notes[0].startswith("note: --keep_epoch_checkpoints 1: could not remove epoch_0001.pt from ")
    assert "Permission denied" in notes[0] and "remove it by hand" in notes[0]
    assert "epoch_0002.pt" in notes[1] and "epoch_0001.pt" not in notes[1]
    assert load_checkpoint(run)["epoch"] == 4   # the run went to its end


@pytest.mark.fault(cls="interrupted run",
                   case="--keep_epoch_checkpoints is kept by --resume, and may be changed there without a note")
def test_a_resume_keeps_the_option_and_may_change_it(tmp_path, streets, capsys):
    run = tmp_path / "r"
    _train(tmp_path, streets, "--name", "r", "--niter", "4", "--keep_epoch_checkpoints", "1", "--max_steps", "4")
    assert _pt(run) == ["epoch_0002.pt", "latest.pt"]
    _train(tmp_path, streets, "--name", "r", "--resume", "--max_steps", "2")   # the run's K=1
    assert _pt(run) == ["epoch_0003.pt", "latest.pt"]
    assert json.loads((run / "config.json").read_text())["keep_epoch_checkpoints"] == 1
    capsys.readouterr()
    _train(tmp_path, streets, "--name", "r", "--resume", "--keep_epoch_checkpoints", "0")   # keep all now
    said = capsys.readouterr()
    notes = [line for line in (said.out + said.err).splitlines() if line.startswith("note:")]
    assert notes and not [n for n in notes if "keep_epoch_checkpoints" in n], notes   # not a change of the training
    assert _pt(run) == ["epoch_0003.pt", "epoch_0004.pt", "latest.pt"]
    assert json.loads((run / "config.json").read_text())["keep_epoch_checkpoints"] == 0


def test_the_last_epoch_writes_an_epoch_file_between_save_epoch_freq_multiples(tmp_path, streets):
    # README and --save_epoch_freq's help say so: epoch 2 (a multiple) and epoch 3 (the run's last,
    # not one) each write epoch_N.pt; the last is the state latest.pt holds
    _train(tmp_path, streets, "--name", "r", "--niter", "3", "--save_epoch_freq", "2")
    run = tmp_path / "r"
    assert _pt(run) == ["epoch_0002.pt", "epoch_0003.pt", "latest.pt"], _pt(run)
    assert load_checkpoint(run, 3)["global_step"] == load_checkpoint(run, "latest")["global_step"] == 6
    assert "last epoch" in TrainConfig.__dataclass_fields__["save_epoch_freq"].metadata["help"]

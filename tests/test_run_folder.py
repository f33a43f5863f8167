"""A run folder is never overwritten or made inconsistent by another command (issue 13, item 2),
nor by a process killed while it writes a checkpoint.

A new run where one exists is refused (naming --resume, a new --name and --overwrite); a start
that fails (bad data, a refused folder) writes nothing, so the old run stays byte for byte as it
was and resumes; --overwrite replaces the old run only after the new one has validated its data,
keeps it aside until the new run's first checkpoint, then deletes it. One tiny run is trained
once; each test works on its own copy.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pix2pixhd.checkpoint import CheckpointNotFoundError, load_checkpoint
from pix2pixhd.cli import resolve_config, train_main
from pix2pixhd.data import DatasetError
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import ConfigError, RunExistsError

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0", "--no_progress", "--print_freq", "1",
        "--display_freq", "1", "--device", "cpu", "--niter", "1", "--niter_decay", "1",
        "--norm_impl", "ref"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """streets/ (4 images: 2 steps per epoch), broken/ (one label map truncated) and ck/run, a run
    stopped after one step with every log written (text, history, tensorboard, HTML page)."""
    root = tmp_path_factory.mktemp("run_folder")
    generate(root / "streets", n_train=4, n_test=0, width=64, height=32, seed=0)
    shutil.copytree(root / "streets", root / "broken")
    bad = sorted((root / "broken" / "train_label").iterdir())[1]
    bad.write_bytes(bad.read_bytes()[:40])
    assert train_main(["--dataroot", str(root / "streets"), "--checkpoints_dir", str(root / "ck"),
                       "--name", "run", "--max_steps", "1", *TINY]) == 0
    return root


@pytest.fixture()
def ck(trained, tmp_path):
    """A private copy of the trained run: ck/run."""
    shutil.copytree(trained / "ck" / "run", tmp_path / "ck" / "run")
    return tmp_path / "ck"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(trained: Path, ck: Path, *args: str, data: str = "streets") -> int:
    return train_main(["--dataroot", str(trained / data), "--checkpoints_dir", str(ck), *TINY, *args])


def _resumes(ck: Path) -> None:
    """The run in ck/run continues from its step 1 to step 2."""
    assert train_main(["--resume", "--name", "run", "--checkpoints_dir", str(ck), "--max_steps", "1"]) == 0
    assert load_checkpoint(ck / "run")["global_step"] == 2


@pytest.mark.fault(cls="run folder in use",
                   case="a new run where one exists: refused naming --resume/--name/--overwrite; old "
                        "run untouched, resumes")
def test_a_new_run_where_one_exists_is_refused_and_the_old_run_is_untouched(trained, ck):
    before = snapshot(ck / "run")
    with pytest.raises(RunExistsError) as e:
        _train(trained, ck, "--name", "run", "--max_steps", "1")
    msg = str(e.value)
    assert "\n" not in msg and str(ck / "run") in msg and "config.json, latest.pt" in msg
    assert "add --resume" in msg and "--name other than 'run'" in msg and "add --overwrite" in msg
    assert snapshot(ck / "run") == before and sorted(p.name for p in ck.iterdir()) == ["run"]
    _resumes(ck)


@pytest.mark.fault(cls="run folder in use",
                   case="--resume with a dataset that fails validation: run folder byte-identical, "
                        "resumes")
def test_resume_whose_dataset_fails_validation_leaves_the_run_untouched_and_resumable(trained, ck):
    before = snapshot(ck / "run")
    with pytest.raises(DatasetError):
        train_main(["--resume", "--name", "run", "--checkpoints_dir", str(ck),
                    "--dataroot", str(trained / "broken")])
    # config.json still names the good dataset, the logs are as they were
    assert snapshot(ck / "run") == before
    _resumes(ck)


@pytest.mark.fault(cls="run folder in use",
                   case="--overwrite with a dataset that fails validation: old run in place, resumes")
def test_overwrite_whose_dataset_fails_validation_keeps_the_old_run_in_place(trained, ck):
    before = snapshot(ck / "run")
    with pytest.raises(DatasetError):
        _train(trained, ck, "--name", "run", "--overwrite", data="broken")
    assert snapshot(ck / "run") == before and sorted(p.name for p in ck.iterdir()) == ["run"]
    _resumes(ck)


@pytest.mark.fault(cls="run folder in use",
                   case="a new run whose dataset fails validation: no folder created")
def test_a_new_run_that_fails_validation_creates_no_folder(trained, tmp_path):
    with pytest.raises(DatasetError):
        _train(trained, tmp_path / "ck", "--name", "fresh", data="broken")
    assert not (tmp_path / "ck" / "fresh").exists()


@pytest.mark.fault(cls="run folder in use",
                   case="--overwrite: old run replaced, deleted after the new run's first save")
def test_overwrite_replaces_the_run_and_deletes_the_old_one_after_the_first_save(trained, ck, capsys):
    assert _train(trained, ck, "--name", "run", "--overwrite", "--ngf", "4", "--max_steps", "1") == 0
    ckpt = load_checkpoint(ck / "run")
    assert ckpt["config"]["ngf"] == 4 and ckpt["global_step"] == 1
    assert sorted(p.name for p in ck.iterdir()) == ["run"]   # the old run is gone after the save
    err = capsys.readouterr().err
    assert "was moved to" in err and ".replaced-" in err and "deleted (this run has saved" in err
    # the new run's logs start afresh: one history line (step 1), not the old run's plus its own
    assert len((ck / "run" / "loss_history.jsonl").read_text().splitlines()) == 1


@pytest.mark.fault(cls="run folder in use",
                   case="--overwrite whose first step raises (before its first save): old run kept "
                        "aside byte-identical, resumes when renamed back")
def test_overwrite_that_fails_before_its_first_save_keeps_the_old_run_aside(trained, ck, monkeypatch, capsys):
    from pix2pixhd.trainer import Trainer
    before = snapshot(ck / "run")

    def dies(self, batch):
        raise RuntimeError("killed in the first step")
    monkeypatch.setattr(Trainer, "train_step", dies)
    with pytest.raises(RuntimeError, match="killed in the first step"):
        _train(trained, ck, "--name", "run", "--overwrite", "--ngf", "4")
    aside = [p for p in ck.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and snapshot(aside[0]) == before
    assert str(aside[0]) in capsys.readouterr().err
    # renamed back, the old run resumes
    monkeypatch.undo()
    shutil.rmtree(ck / "run")
    aside[0].rename(ck / "run")
    _resumes(ck)


@pytest.mark.fault(cls="run folder in use",
                   case="--auto_resume over an attempt with no checkpoint: starts; over epoch "
                        "checkpoints without latest.pt: refused")
def test_auto_resume_starts_over_an_attempt_that_never_saved_but_not_over_checkpoints(trained, ck):
    # an earlier attempt of the same command that died before its first save: config.json only
    attempt = ck / "attempt"
    attempt.mkdir()
    shutil.copy(ck / "run" / "config.json", attempt / "config.json")
    assert _train(trained, ck, "--name", "attempt", "--auto_resume", "--max_steps", "1") == 0
    assert load_checkpoint(attempt)["global_step"] == 1
    # epoch checkpoints but no latest.pt: --auto_resume would start over them, so it is refused
    numbered = ck / "numbered"
    numbered.mkdir()
    shutil.copy(ck / "run" / "latest.pt", numbered / "epoch_0001.pt")
    with pytest.raises(RunExistsError, match=r"add --resume --which_epoch 1;"):
        _train(trained, ck, "--name", "numbered", "--auto_resume")


@pytest.mark.fault(cls="run folder in use",
                   case="a run that stopped before its first checkpoint: --resume starts it again")
def test_resume_of_a_run_that_stopped_before_its_first_checkpoint_starts_it_again(trained, tmp_path, capsys):
    # It fails mid-epoch (a truncated label map that --validate headers does not decode) after
    # writing config.json and its logs: the same command is refused, and --resume used to fail for
    # want of a checkpoint, leaving --overwrite as the only way on.
    ck = tmp_path / "ck"
    shutil.copytree(trained / "streets", tmp_path / "late_fault")
    photo = sorted((tmp_path / "late_fault" / "train_img").iterdir())[1]
    photo.write_bytes(photo.read_bytes()[:300])   # its header reads, its pixels do not
    with pytest.raises(DatasetError, match="truncated"):
        train_main(["--dataroot", str(tmp_path / "late_fault"), "--checkpoints_dir", str(ck), *TINY,
                    "--name", "early", "--validate", "headers", "--ngf", "4"])
    assert not list((ck / "early").glob("*.pt")) and (ck / "early" / "config.json").is_file()
    with pytest.raises(RunExistsError, match=r"add --resume \(it saved no checkpoint: it starts again"):
        _train(trained, ck, "--name", "early", "--ngf", "4")
    with pytest.raises(CheckpointNotFoundError):   # an epoch asked for by number is not there
        train_main(["--dataroot", str(trained / "streets"), "--checkpoints_dir", str(ck), "--name",
                    "early", "--resume", "--which_epoch", "1"])
    capsys.readouterr()
    assert train_main(["--dataroot", str(trained / "streets"), "--checkpoints_dir", str(ck), "--name",
                       "early", "--resume", "--max_steps", "1"]) == 0
    assert "saved no checkpoint (its earlier start stopped before the first), so it starts again " \
           "from step 0" in capsys.readouterr().out
    ck_ = load_checkpoint(ck / "early")
    assert ck_["global_step"] == 1 and ck_["config"]["ngf"] == 4   # config.json's options
    assert not ck_["config"]["resume"]


@pytest.mark.fault(cls="run folder in use",
                   case="--overwrite with --resume or --auto_resume: refused")
def test_overwrite_with_resume_or_auto_resume_is_refused(ck):
    for flag in ("--resume", "--auto_resume"):
        with pytest.raises(ConfigError, match="--overwrite starts the run anew"):
            resolve_config(["--name", "run", "--checkpoints_dir", str(ck), "--overwrite", flag])


# A process that dies inside torch.save of its second checkpoint: the first save completes, the
# second writes half of latest.pt.tmp, then the process SIGKILLs itself (no cleanup runs).
_DIES_IN_SECOND_SAVE = """
import io, os, signal, sys
import torch
real_save, saves = torch.save, []
def save(obj, f, *args, **kwargs):
    saves.append(1)
    if len(saves) < 2:
        return real_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    f.write(buf.getvalue()[: buf.tell() // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
from pix2pixhd.cli import train_main
sys.exit(train_main(sys.argv[1:]))
"""


@pytest.mark.fault(cls="interrupted run", case="SIGKILL in the middle of a checkpoint write: the "
                   "previous latest.pt loads, the partial file is removed at the next start, it resumes")
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(trained, tmp_path, capsys):
    ck = tmp_path / "ck"
    p = subprocess.run([sys.executable, "-c", _DIES_IN_SECOND_SAVE, "--dataroot", str(trained / "streets"),
                        "--checkpoints_dir", str(ck), "--name", "k", *TINY, "--save_latest_freq", "1",
                        "--no_html", "--no_tensorboard"],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    partial = next((ck / "k").glob("latest.pt.*.tmp"))   # NAME.<pid>.tmp
    assert partial.is_file() and partial.stat().st_size > 0
    with pytest.raises(Exception):   # half a zip archive
        torch.load(partial, weights_only=True)
    assert load_checkpoint(ck / "k")["global_step"] == 1   # the first save, whole
    assert train_main(["--resume", "--name", "k", "--checkpoints_dir", str(ck), "--max_steps", "1"]) == 0
    assert not partial.exists() and f"removed {partial}" in capsys.readouterr().err
    assert load_checkpoint(ck / "k")["global_step"] == 2

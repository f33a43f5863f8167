"""--auto_resume's fallback after a --which_epoch resume went back, told by lineage.json (the line of
training: [[attempt, from_step], ...]) rather than by steps. Tiny runs (64x32, 4 images, batch 2:
2 steps per epoch) through train_hd.py's entry point."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import pix2pixhd.trainer as trainer_module
from pix2pixhd.checkpoint import auto_resume_checkpoint, load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4", "--num_D", "1",
        "--n_layers_D", "2", "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0", "--no_progress",
        "--no_tensorboard", "--no_html", "--device", "cpu", "--deterministic"]
# epochs 1, 2, 3 end at steps 2, 4, 6, each with its epoch_N.pt
RUN = ["--niter", "2", "--niter_decay", "1", "--save_epoch_freq", "1"]
LINEAGE = "lineage.json"


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


def _train(ck: Path, streets: Path, *args: str) -> None:
    own = [] if {"--resume", "--auto_resume"} & set(args) else TINY
    assert train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), *own, *args]) == 0


def _logged(run: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run / "loss_history.jsonl").read_text().splitlines()]


def _line(run: Path) -> list:
    return json.loads((run / LINEAGE).read_text())["line"]


def _damage_latest(run: Path) -> None:
    (run / "latest.pt").write_bytes((run / "latest.pt").read_bytes()[:100])


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (no handler catches a BaseException)."""


@pytest.mark.fault(cls="interrupted run",
                   case="--auto_resume with latest.pt unreadable after a --which_epoch resume went back, the "
                        "abandoned epoch_N.pt within --print_freq steps of the last log: skipped, and named")
def test_an_abandoned_epoch_within_print_freq_of_the_last_log_is_skipped(tmp_path, streets, capsys):
    _train(tmp_path, streets, "--name", "r", "--print_freq", "10", *RUN)              # A: to step 6
    _train(tmp_path, streets, "--name", "r", "--resume", "--which_epoch", "1", "--max_steps", "1")   # B: 2 -> 3
    run = tmp_path / "r"
    assert max(_logged(run)) < 6 < max(_logged(run)) + 10   # steps alone cannot tell epoch_0003.pt
    assert [load_checkpoint(run, n)["global_step"] for n in (1, 2, 3)] == [2, 4, 6]   # 2, 3: A's, gone back from
    _damage_latest(run)
    which, note = auto_resume_checkpoint(run)
    assert which == "1", note
    for says in (f"resuming from {run / 'epoch_0001.pt'} (the end of epoch 1, step 2)",
                 "skipped epoch_0003.pt (step 6), epoch_0002.pt (step 4), which are not on this run's line "
                 f"of training ({LINEAGE}): training that a --resume --which_epoch went back from"):
        assert says in note, (says, note)
    capsys.readouterr()
    _train(tmp_path, streets, "--name", "r", "--auto_resume")   # C: from step 2, on A's line
    assert load_checkpoint(run)["global_step"] == 6
    line = _line(run)
    a = load_checkpoint(run, 1)
    assert a["lineage"] == [[a["attempt"], 0]]           # A's line; B is gone from the folder's
    assert line == [[a["attempt"], 0], [load_checkpoint(run)["attempt"], 2]]


@pytest.mark.fault(cls="interrupted run",
                   case="killed between lineage.json and a --which_epoch resume's first checkpoint: "
                        "--auto_resume goes on from the epoch resumed from, skips the abandoned files and keeps "
                        "the abandoned latest.pt aside (also when latest.pt is unreadable)")
def test_a_kill_between_lineage_and_the_first_checkpoint(tmp_path, streets, monkeypatch):
    _train(tmp_path, streets, "--name", "r", "--print_freq", "10", *RUN)   # A: to step 6
    run = tmp_path / "r"
    a = load_checkpoint(run)["attempt"]
    with monkeypatch.context() as m:
        def killed(*args, **kwargs):
            raise _Killed
        m.setattr(trainer_module, "save_checkpoint", killed)
        with pytest.raises(_Killed):   # B's first checkpoint (latest.pt at step 4) is never written
            _train(tmp_path, streets, "--name", "r", "--resume", "--which_epoch", "1")
    line = _line(run)
    assert line[0] == [a, 0] and line[1][0] != a and line[1][1] == 2 and len(line) == 2   # B is recorded
    assert {load_checkpoint(run, w)["attempt"] for w in ("latest", 1, 2, 3)} == {a}       # no file of B's
    # latest.pt reads, but it is A's step 6, what B went back from: --auto_resume goes on with B's
    # choice, from epoch 1, and keeps latest.pt aside
    which, note = auto_resume_checkpoint(run)
    assert which == "1", note
    for says in (f"{run / 'latest.pt'} holds step 6, of training that the last start went back from",
                 f"not on this run's line of training ({LINEAGE}); resuming from {run / 'epoch_0001.pt'}",
                 "skipped epoch_0003.pt (step 6), epoch_0002.pt (step 4)",
                 "latest.pt is kept as latest_step6.pt at this run's first save"):
        assert says in note, (says, note)
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    _train(tmp_path, streets, "--name", "r", "--auto_resume", "--max_steps", "1")   # C: 2 -> 3
    c = load_checkpoint(run)
    assert c["global_step"] == 3 and _line(run) == c["lineage"] == [[a, 0], [c["attempt"], 2]]
    assert load_checkpoint(run / "latest_step6.pt")["attempt"] == a   # A's end, kept as the note said
    # the same folder with latest.pt unreadable: the same choice
    run = damaged
    _damage_latest(run)
    which, note = auto_resume_checkpoint(run)
    assert which == "1" and "skipped epoch_0003.pt (step 6), epoch_0002.pt (step 4)" in note, note
    # a kill before lineage.json was replaced (the old line): A's newest epoch is its line's and is taken
    (run / LINEAGE).write_text(json.dumps({"line": [[a, 0]]}))
    which, note = auto_resume_checkpoint(run)
    assert which == "3" and "skipped" not in note, note


def _strip(run: Path) -> None:
    """Make ``run`` a folder written before attempts were recorded."""
    (run / LINEAGE).unlink()
    for p in run.glob("*.pt"):
        ck = torch.load(p, map_location="cpu", weights_only=True)
        del ck["attempt"], ck["lineage"]
        torch.save(ck, p)


@pytest.mark.fault(cls="interrupted run",
                   case="--auto_resume with latest.pt unreadable in a folder written before lineage.json: "
                        "told by steps as before; resumed, its old files are placed by the first recorded start")
def test_an_old_folder_is_told_by_steps_and_resumes(tmp_path, streets):
    _train(tmp_path, streets, "--name", "r", "--print_freq", "1", *RUN)   # to step 6, a log every step
    run = tmp_path / "r"
    _strip(run)
    _train(tmp_path, streets, "--name", "r", "--resume", "--which_epoch", "1", "--max_steps", "1")   # 2 -> 3
    assert _logged(run) == [1, 2, 3]
    b = load_checkpoint(run)
    assert _line(run) == b["lineage"] == [[b["attempt"], 2]]   # an old checkpoint resumed
    _damage_latest(run)
    which, note = auto_resume_checkpoint(run)   # old epoch files past step 2 (B's start) are off the line
    assert which == "1" and f"epoch_0002.pt (step 4), which are not on this run's line of training ({LINEAGE})" \
        in note, note
    (run / LINEAGE).unlink()                    # no lineage.json at all: the step heuristic, as before
    which, note = auto_resume_checkpoint(run)
    assert which == "1" and "skipped epoch_0003.pt (step 6), epoch_0002.pt (step 4), which hold later steps " \
        "than this run reached (loss_history.jsonl logs up to step 3)" in note, note
    assert "told by steps" not in note          # no file it read carries an attempt


def test_a_lost_lineage_falls_back_to_steps_and_says_so(tmp_path, streets):
    _train(tmp_path, streets, "--name", "r", "--print_freq", "1", *RUN)
    _train(tmp_path, streets, "--name", "r", "--resume", "--which_epoch", "1", "--max_steps", "1")
    run = tmp_path / "r"
    _damage_latest(run)
    (run / LINEAGE).write_text('{"line": [')
    which, note = auto_resume_checkpoint(run)
    assert which == "1" and "skipped epoch_0003.pt (step 6), epoch_0002.pt (step 4), which hold later" in note
    assert f"{LINEAGE} cannot be read (JSONDecodeError" in note and "told by steps alone" in note, note

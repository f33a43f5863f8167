"""The ranks of one DDP run agree before they train: the same options (paths and loader workers
aside), the same starting point (all fresh, or the same checkpoint step) and a dataset of the
same size. A rank that differs stops every rank with one line, instead of training out of step
until a collective fails or hangs for the process-group timeout. Also the messages of a dataset
too small for one step, and of a resume on another number of processes.

Run as a script (under torchrun) this file is the worker: ``OUT ARGS_OF_RANK_0 @@ ARGS_OF_RANK_1``,
train_hd.py's train_main with its rank's arguments.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SPLIT = "@@"
TINY = ["--label_nc", "9", "--loadSize", "64", "--fineSize", "64", "--resize_or_crop", "none",
        "--ngf", "4", "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4",
        "--n_layers_D", "2", "--no_vgg_loss", "--no_tensorboard", "--no_progress", "--nThreads", "0",
        "--device", "cpu", "--batchSize", "1", "--niter", "1", "--niter_decay", "0", "--name", "run"]


def worker(argv: list[str]) -> int:
    from pix2pixhd.cli import train_main
    from pix2pixhd.errors import run
    i = argv.index(SPLIT)
    mine = argv[:i] if int(os.environ["RANK"]) == 0 else argv[i + 1:]
    return run(train_main, mine)


def _two_ranks(rank0: list[str], rank1: list[str]) -> subprocess.CompletedProcess:
    from tests.test_distributed import torchrun_cmd, torchrun_env
    env = dict(torchrun_env(), PIX2PIXHD_DIST_TIMEOUT_S="60")   # a hang fails in a minute, not an hour
    return subprocess.run(torchrun_cmd(__file__, *rank0, SPLIT, *rank1), capture_output=True, text=True,
                          timeout=180, env=env)


def _errors(p: subprocess.CompletedProcess) -> dict[str, str]:
    """Each rank's error line. Every rank raises the agreed error, but torchrun stops the other
    ranks once the first has exited, so a slower rank may end before it prints its line: at
    least one line, and every line printed is the agreed one. That SIGTERM no longer turns a
    slower rank's error into a start-up stop line (cli._train marks the error under way)."""
    assert "during start-up" not in p.stdout + p.stderr, (p.stdout + p.stderr)[-3000:]
    return dict(re.findall(r"error \(rank (\d) of 2\): (.*)", p.stdout + p.stderr))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from tests.test_distributed import make_data
    root = tmp_path_factory.mktemp("ddp_agree")
    return make_data(root / "four", n=4), make_data(root / "six", n=6)


def test_ranks_with_other_options_stop_before_training(tmp_path, scenes):
    common = [*TINY, "--dataroot", str(scenes[0]), "--checkpoints_dir", str(tmp_path)]
    p = _two_ranks(common, [*common, "--seed", "1", "--lr", "0.002"])
    errs = _errors(p)
    assert p.returncode != 0 and errs and set(errs) <= {"0", "1"}, (p.stdout + p.stderr)[-3000:]
    for line in errs.values():
        assert line.startswith("rank 1's options differ from rank 0's: --lr 0.002 (rank 0: 0.0002), "
                               "--seed 1 (rank 0: 0)"), line
        assert "every rank must run the same command" in line
    assert not (tmp_path / "run" / "latest.pt").exists()


def test_a_rank_that_cannot_see_the_checkpoint_stops_every_rank(tmp_path, scenes):
    """Two nodes whose --checkpoints_dir are not the same folder: --auto_resume resumes on the
    node that has latest.pt and starts fresh on the other."""
    shared = [*TINY, "--dataroot", str(scenes[0])]
    a, b = tmp_path / "a", tmp_path / "b"
    first = _two_ranks([*shared, "--checkpoints_dir", str(a)], [*shared, "--checkpoints_dir", str(a)])
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    more = ["--niter", "2", "--auto_resume"]
    p = _two_ranks([*shared, *more, "--checkpoints_dir", str(a)], [*shared, *more, "--checkpoints_dir", str(b)])
    errs = _errors(p)
    assert p.returncode != 0 and errs and set(errs) <= {"0", "1"}, (p.stdout + p.stderr)[-3000:]
    for line in errs.values():
        assert re.match(r"rank 1 starts \S+ fresh, rank 0 resumes \S+ at step 2 \(epoch 2, iteration 0\): every "
                        r"rank must read the same run folder", line), line
    assert "Timed out" not in p.stdout + p.stderr


def test_ranks_reading_datasets_of_other_sizes_stop_before_training(tmp_path, scenes):
    common = [*TINY, "--checkpoints_dir", str(tmp_path)]
    p = _two_ranks([*common, "--dataroot", str(scenes[0])], [*common, "--dataroot", str(scenes[1])])
    errs = _errors(p)
    assert p.returncode != 0 and errs and set(errs) <= {"0", "1"}, (p.stdout + p.stderr)[-3000:]
    for line in errs.values():
        assert line == (f"the ranks read datasets of different sizes (rank 0: 4 samples in {scenes[0]}, rank 1: "
                        f"6 samples in {scenes[1]}): every rank must read the same dataset (one shared copy, "
                        "or identical copies on every node)"), line


def test_a_dataset_too_small_for_one_step_names_the_counts(tmp_path, scenes, capsys):
    from pix2pixhd.cli import train_main
    from pix2pixhd.errors import run
    assert run(train_main, [*TINY, "--dataroot", str(scenes[0]), "--checkpoints_dir", str(tmp_path),
                            "--batchSize", "5"]) == 1
    err = capsys.readouterr().err
    assert f"error: {scenes[0]}: 4 samples (--phase train), fewer than one step takes (--batchSize 5): lower " \
           "--batchSize to 4 or less" in err, err


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))

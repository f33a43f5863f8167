"""Errors the user can act on print as one clear message (issue 13, item 7): every command-line
entry point, given one bad input, prints one ``error: ...`` line (no traceback) and exits with 1;
``--debug`` or ``PIX2PIXHD_DEBUG=1`` shows the traceback; other exceptions keep theirs; under
torchrun a rank whose start fails stops every rank."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pix2pixhd import errors
from pix2pixhd.checkpoint import CheckpointError, CheckpointNotFoundError
from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd.data import DatasetError
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.encoding import LabelRangeError
from pix2pixhd.errors import ConfigError, UserError
from pix2pixhd.paths import UnsafeNameError
from pix2pixhd.trainer import NonFiniteLossError

REPO = Path(__file__).resolve().parents[1]
TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "4",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "0", "--no_progress", "--no_tensorboard",
        "--no_html", "--device", "cpu", "--niter", "1", "--niter_decay", "0", "--norm_impl", "ref"]


# ---- the error types ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, base", [
    (DatasetError, ValueError), (CheckpointError, RuntimeError), (CheckpointNotFoundError, FileNotFoundError),
    (CheckpointMismatchError, ValueError), (LabelRangeError, ValueError), (UnsafeNameError, ValueError),
    (NonFiniteLossError, FloatingPointError), (ConfigError, ValueError),
    (errors.RunExistsError, FileExistsError), (errors.MissingInputError, FileNotFoundError),
    (errors.InputError, ValueError), (errors.MissingDependencyError, ImportError)])
def test_project_errors_are_user_errors_and_keep_their_old_base(cls, base):
    assert issubclass(cls, UserError) and issubclass(cls, base)


# ---- errors.run, in process --------------------------------------------------------------------------
def _raises(exc):
    def main(argv):
        raise exc
    return main


def test_a_user_error_is_one_line_and_status_1(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.run(_raises(DatasetError("data/x.png: cannot read; re-export it")), []) == 1
    err = capsys.readouterr().err
    assert err == "error: data/x.png: cannot read; re-export it\n"


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with pytest.raises(DatasetError):
        errors.run(_raises(DatasetError("bad")), ["--debug"])
    assert os.environ[errors.DEBUG_ENV] == "1"   # children (loader workers) inherit it
    with pytest.raises(ConfigError):
        errors.run(_raises(ConfigError("bad")), [])


def test_debug_is_taken_off_the_command_line(monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    seen = []
    assert errors.run(lambda argv: seen.append(argv) or 0, ["--a", "--debug", "b"]) == 0
    assert seen == [["--a", "b"]]


def test_ctrl_c_outside_the_training_loop_is_one_line_and_status_130(capsys, monkeypatch):
    # start-up (dataset validation), synthesis, evaluation: no ~80-line KeyboardInterrupt traceback
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.run(_raises(KeyboardInterrupt()), []) == errors.INTERRUPTED_EXIT_STATUS == 130
    assert capsys.readouterr().err == "\ninterrupted (Ctrl-C); exit status 130\n"
    with pytest.raises(KeyboardInterrupt):
        errors.run(_raises(KeyboardInterrupt()), ["--debug"])


def test_an_unexpected_exception_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with pytest.raises(KeyError):
        errors.run(_raises(KeyError("a bug")), [])


@pytest.mark.fault(cls="command-line errors",
                   case="a dataset error in a loader worker: the worker's message only, no traceback")
def test_a_loader_worker_error_prints_the_workers_message_only(tmp_path, capsys, monkeypatch):
    from pix2pixhd.data import create_dataloader, create_dataset
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    generate(tmp_path, n_train=2, n_test=0, width=32, height=16, seed=0)
    bad = sorted((tmp_path / "train_label").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:40])
    ds = create_dataset(tmp_path, label_nc=LABEL_NC, resize_or_crop="none", validate="off")

    def main(argv):
        list(create_dataloader(ds, 1, shuffle=False, num_workers=1))
    assert errors.run(main, []) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: cannot read this label map") and "Traceback" not in err
    assert "DataLoader worker" not in err


@pytest.mark.fault(cls="numerics",
                   case="non-finite loss through train_main: one error line naming the step, status 1")
def test_a_non_finite_loss_through_train_main_is_one_line(tmp_path, capsys, monkeypatch):
    from pix2pixhd.cli import train_main
    from pix2pixhd.trainer import Trainer
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    generate(tmp_path / "d", n_train=2, n_test=0, width=32, height=16, seed=0)
    step = Trainer._pix2pixhd_step

    def poisoned(self, batch):
        with torch.no_grad():
            self.G.model[1].bias.fill_(float("inf"))
        return step(self, batch)
    monkeypatch.setattr(Trainer, "_pix2pixhd_step", poisoned)
    assert errors.run(train_main, ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir",
                                   str(tmp_path / "ck"), "--name", "nf", *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: non-finite loss at epoch 1, iteration 1 (step 1)")
    assert "Traceback" not in "\n".join(err)


# ---- every entry point, as the user runs it ------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    generate(root / "d", n_train=2, n_test=1, width=32, height=16, seed=0)
    bad = sorted((root / "d" / "train_label").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:40])
    return root


def _cli(args, cwd, debug=False, env_debug=False):
    env = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    env.update(OMP_NUM_THREADS="1", **({errors.DEBUG_ENV: "1"} if env_debug else {}))
    cmd = [sys.executable, *args, *(["--debug"] if debug else [])]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(cwd), env=env, timeout=300)


# one bad input per entry point, and what its one line must say
ENTRY_POINTS = {
    "train_hd.py: a label map that cannot be read": (
        [str(REPO / "train_hd.py"), "--dataroot", "d", "--checkpoints_dir", "ck", "--name", "r", *TINY],
        "train_label/train_00000.png: cannot read"),
    "train_hd.py: options that do not go together": (
        [str(REPO / "train_hd.py"), "--stage", "finetune", "--netG", "global", "--dry_run"],
        "--stage finetune trains the local generator"),
    "synthesize.py: no run folder": (
        [str(REPO / "synthesize.py"), "--checkpoint", "nowhere", "--input", "d/test_label", "--out", "o"],
        "no checkpoint nowhere/latest.pt"),
    "pix2pixhd.data scan: an unknown palette": (
        ["-m", "pix2pixhd.data", "scan", "d", "--palette", "nonsense"], "palette='nonsense' is neither"),
    "pix2pixhd.features: no run folder": (
        ["-m", "pix2pixhd.features", "encode", "--checkpoint", "nowhere", "--device", "cpu"],
        "no checkpoint nowhere/latest.pt"),
    "pix2pixhd.export: no run folder": (
        ["-m", "pix2pixhd.export", "--checkpoint", "nowhere"], "no checkpoint nowhere/latest.pt"),
    "pix2pixhd.evaluate: no such folder": (
        ["-m", "pix2pixhd.evaluate", "--fake", "nowhere", "--real", "d/test_img", "--json", "e.json"],
        "--fake nowhere is not a folder"),
    "pix2pixhd.kernels.aot: a bad --arch": (
        ["-m", "pix2pixhd.kernels.aot", "--arch", "sm80"], "--arch 'sm80'"),
    "convert_facades: no facades folder": (
        ["-m", "pix2pixhd.datasets.convert_facades", "--src", "nowhere", "--out", "f"],
        "nowhere has none of train/ val/ test/"),
    "synthetic_streets: a size out of range": (
        ["-m", "pix2pixhd.datasets.synthetic_streets", "--out", "s", "--width", "0"],
        "size 0x128 is outside"),
}


DEBUG_CASES = {"train_hd.py: a label map that cannot be read": "--debug",
               "synthesize.py: no run folder": "PIX2PIXHD_DEBUG=1"}


@pytest.fixture(scope="module")
def ran(data):
    """Every entry point's bad-input command, and two of them again with --debug / PIX2PIXHD_DEBUG,
    run as subprocesses four at a time (each starts Python and torch): {(case, debug?): result}."""
    from concurrent.futures import ThreadPoolExecutor
    jobs = {(case, None): (args, {}) for case, (args, _) in ENTRY_POINTS.items()}
    jobs.update({(case, how): (ENTRY_POINTS[case][0], {"debug": how == "--debug",
                                                        "env_debug": how != "--debug"})
                 for case, how in DEBUG_CASES.items()})
    with ThreadPoolExecutor(4) as pool:
        futures = {key: pool.submit(_cli, args, data, **kw) for key, (args, kw) in jobs.items()}
        return {key: f.result() for key, f in futures.items()}


@pytest.mark.parametrize("case", list(ENTRY_POINTS))
@pytest.mark.fault(cls="command-line errors", case="{case}: one message, status 1, no traceback")
def test_entry_point_prints_one_line_without_traceback(ran, case):
    args, says = ENTRY_POINTS[case]
    p = ran[case, None]
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    # one message, last: from its "error: " line to the end (a dataset's problems are listed
    # under it, one per line)
    lines = p.stderr.strip().splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("error")]
    assert len(starts) == 1 and lines[starts[0]].startswith("error: "), p.stderr
    assert says in "\n".join(lines[starts[0]:]), p.stderr


@pytest.mark.parametrize("case, how", list(DEBUG_CASES.items()))
@pytest.mark.fault(cls="command-line errors",
                   case="{case}, with {how}: the traceback shown, status 1")
def test_debug_shows_the_traceback(ran, case, how):
    p, says = ran[case, how], ENTRY_POINTS[case][1]
    assert p.returncode == 1 and "Traceback (most recent call last)" in p.stderr and says in p.stderr


@pytest.mark.fault(cls="command-line errors",
                   case="torchrun, rank 0's dataset fails validation: every rank stops with one line, "
                        "nothing written")
def test_a_rank_whose_start_fails_stops_every_rank(data):
    """Two ranks: only rank 0 validates the dataset (the others read it unchecked), so only rank 0
    meets the bad file at start; rank 1 must stop too, saying why, without a traceback."""
    from tests.test_distributed import free_port
    p = _cli(["-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1", "--master_addr=127.0.0.1",
              f"--master_port={free_port()}", str(REPO / "train_hd.py"), "--dataroot", "d",
              "--checkpoints_dir", "ck", "--name", "ddp", *TINY], data)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "error (rank 0 of 2): 1 problem(s) in d" in out and "train_00000.png: cannot read" in out, out[-4000:]
    assert "error (rank 1 of 2): stopped because rank 0 could not start (DatasetError" in out, out[-4000:]
    # torchrun's launcher prints its own traceback of the failed group; none comes from a rank
    ours = [ln for ln in out.splitlines() if ln.strip().startswith('File "')
            and "torch/distributed" not in ln and "runpy" not in ln]
    assert not ours, out[-4000:]
    assert not (data / "ck" / "ddp").exists()

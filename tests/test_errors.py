"""Errors the user can act on print as one clear message (issue 13, item 7): every command-line
entry point, given one bad input, prints one ``error: ...`` line (no traceback) and exits with 1;
``--debug`` or ``PIX2PIXHD_DEBUG=1`` shows the traceback; other exceptions keep theirs; under
torchrun a rank whose start fails stops every rank."""
import os
import subprocess
import sys
import textwrap
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
    during = []

    def main(argv):
        during.append(os.environ.get(errors.DEBUG_ENV))   # children (loader workers) inherit it
        raise DatasetError("bad")

    with pytest.raises(DatasetError):
        errors.run(main, ["--debug"])
    assert during == ["1"]
    assert errors.DEBUG_ENV not in os.environ   # for that call only: a later call in the process is not debugged
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
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


def _chained(outer: str, inner: str) -> RuntimeError:
    """torch's chain: the SIGCHLD handler's error, re-raised as "exited unexpectedly" from it."""
    try:
        try:
            raise RuntimeError(inner)
        except RuntimeError as e:
            raise RuntimeError(outer) from e
    except RuntimeError as e:
        return e


@pytest.mark.parametrize("exc, want", [
    (RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. "),
     "error: a data loader worker (pid 4242) was killed by signal: Killed (out of memory? fewer "
     "--nThreads/--workers); rerun the same command to resume"),
    (_chained("DataLoader worker (pid(s) 4242) exited unexpectedly",
              "DataLoader worker (pid 4242) is killed by signal: Killed. "),
     "error: a data loader worker (pid 4242) was killed by signal: Killed (out of memory?"),
    (RuntimeError("DataLoader worker (pid 77) is killed by signal: Bus error. It is possible that "
                  "dataloader's workers are out of shared memory. Please try to raise your shared memory limit."),
     "error: a data loader worker (pid 77) was killed by signal: Bus error (out of shared memory?"),
    (RuntimeError("DataLoader worker (pid(s) 5, 6) exited unexpectedly"),
     "error: a data loader worker (pids 5, 6) exited unexpectedly (killed for memory?"),
], ids=["killed", "chained", "bus error", "exited"])
def test_a_killed_loader_worker_is_one_line_and_status_1(exc, want, capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.run(_raises(exc), []) == 1
    err = capsys.readouterr().err
    assert err.startswith(want) and err.count("\n") == 1, err
    with pytest.raises(RuntimeError):
        errors.run(_raises(exc), ["--debug"])
    with pytest.raises(RuntimeError, match="CUDA out of memory"):   # any other RuntimeError: a bug
        errors.run(_raises(RuntimeError("CUDA out of memory")), [])


_RUN = "import sys; from pix2pixhd import errors; sys.exit(errors.run(main, sys.argv[1:]))"


def test_a_loader_worker_killed_by_the_oom_killer_is_one_line(tmp_path):
    """kill -9 of a decoding worker (what the OOM killer does), through a real DataLoader."""
    code = textwrap.dedent("""
        import os, signal, torch
        class Data(torch.utils.data.Dataset):
            def __len__(self):
                return 4
            def __getitem__(self, i):
                os.kill(os.getpid(), signal.SIGKILL)
        def main(argv):
            list(torch.utils.data.DataLoader(Data(), num_workers=1))
        """) + _RUN
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(errors.DEBUG_ENV, None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: a data loader worker (pid ") and r.stderr.count("\n") == 1, r.stderr
    assert "killed by signal: Killed (out of memory? fewer --nThreads/--workers)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def _printing_into_head(tmp_path, main_code: str):
    """Run ``main_code`` (defining main) through errors.run with stdout into ``head -2``."""
    script = tmp_path / "m.py"
    script.write_text(textwrap.dedent(main_code) + _RUN + "\n")
    env = {**os.environ}
    env.pop(errors.DEBUG_ENV, None)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    first = [p.stdout.readline(), p.stdout.readline()]
    p.stdout.close()                                        # `| head -2` exits
    err = p.stderr.read().decode()
    return p.wait(timeout=60), first, err


def test_stdout_closed_by_head_ends_quietly(tmp_path):
    status, first, err = _printing_into_head(tmp_path, """
        import time
        def main(argv):
            print("one", flush=True)
            print("two", flush=True)
            time.sleep(0.5)                                 # head has gone by now
            for i in range(100000):
                print("line", i)
        """)
    assert first == [b"one\n", b"two\n"]
    assert err == "" and status == errors.BROKEN_PIPE_EXIT_STATUS == 141, err


def test_stdout_without_a_reader_at_exit_ends_quietly(tmp_path):
    """What is left in stdout's buffer when main returns is flushed by run, not at interpreter exit
    ("Exception ignored ... BrokenPipeError", status 120)."""
    script = tmp_path / "m.py"
    script.write_text("def main(argv):\n    print('buffered, never read')\n" + _RUN + "\n")
    r, w = os.pipe()
    os.close(r)                                             # the reader is gone before the first write
    env = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    try:
        p = subprocess.run([sys.executable, str(script)], stdout=w, stderr=subprocess.PIPE, env=env,
                           timeout=60)
    finally:
        os.close(w)
    assert p.stderr.decode() == "" and p.returncode == 141, p.stderr.decode()


def test_a_broken_pipe_that_is_not_stdout_keeps_its_traceback(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with pytest.raises(BrokenPipeError):
        errors.run(_raises(BrokenPipeError(32, "Broken pipe")), [])


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
        it = iter(create_dataloader(ds, 1, shuffle=False, num_workers=1))
        try:
            list(it)
        finally:
            # its worker stopped now: the traceback holds the iterator in a cycle, and freed by a
            # later test's garbage collection it waits out torch's 5 s worker join
            it._shutdown_workers()
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
        "no run folder nowhere: it does not exist"),
    "pix2pixhd.data scan: an unknown palette": (
        ["-m", "pix2pixhd.data", "scan", "d", "--palette", "nonsense"], "--palette nonsense: no such named palette"),
    "pix2pixhd.features: no run folder": (
        ["-m", "pix2pixhd.features", "encode", "--checkpoint", "nowhere", "--device", "cpu"],
        "no run folder nowhere: it does not exist"),
    "pix2pixhd.export: no run folder": (
        ["-m", "pix2pixhd.export", "--checkpoint", "nowhere"], "no run folder nowhere: it does not exist"),
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
    # the dataroot typed ("d") is stored absolute (TrainConfig.resolved)
    assert f"error (rank 0 of 2): 1 problem(s) in {data / 'd'}" in out and "train_00000.png: cannot read" in out, \
        out[-4000:]
    assert "error (rank 1 of 2): stopped because rank 0 could not start (DatasetError" in out, out[-4000:]
    # torchrun's launcher prints its own traceback of the failed group; none comes from a rank
    ours = [ln for ln in out.splitlines() if ln.strip().startswith('File "')
            and "torch/distributed" not in ln and "runpy" not in ln]
    assert not ours, out[-4000:]
    assert not (data / "ck" / "ddp").exists()

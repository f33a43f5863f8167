"""How a training run ends, DataLoader workers included: an error raised in a worker mid-epoch
exits at once with its one line (persistent workers that ignore SIGTERM used to keep the process
from exiting); Ctrl-C (SIGINT to the whole process group) stops at a step boundary with latest.pt
saved, exit status 130, and a second one aborts at once with one line; under torchrun the ranks
agree on the step, as for SIGTERM (tests/test_sigterm.py); and the end-of-run summary says what
its losses and epochs are."""
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import INTERRUPTED_EXIT_STATUS, Trainer
from tests.test_logging import _recording
from tests.test_sigterm import (SLOW_TRAIN, TINY, assert_resume_ends_as_an_uninterrupted_run,  # noqa: F401
                                group_killed_on_exit, run_env, start_slow, stopped_in_step_3, streets,
                                wait_for_steps)  # (streets: a fixture)
from tests.test_trainer_step import tiny_cfg

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120


def _broken(tmp_path: Path, how: str) -> Path:
    """Four scenes, one of them broken in a way only reading it finds (mid-epoch, in a worker)."""
    root = tmp_path / "data"
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    if how == "truncated":
        p = root / "train_img" / "train_00002.png"
        b = p.read_bytes()
        p.write_bytes(b[:len(b) // 2])   # headers intact: --validate headers passes it
    else:
        p = root / "train_label" / "train_00002.png"
        a = np.array(Image.open(p))
        a[0, 0] = 200
        Image.fromarray(a).save(p)
    return root


@pytest.mark.parametrize("how, extra", [("truncated", ["--validate", "headers", "--nThreads", "2"]),
                                        ("label_id", ["--validate", "off", "--nThreads", "1"])])
@pytest.mark.fault(cls="interrupted run",
                   case="a {how} file met by a DataLoader worker mid-epoch: the process exits at once "
                        "with status 1 and one error line (workers shut down, no hang)")
def test_an_error_in_a_worker_mid_epoch_exits_at_once_with_one_line(tmp_path, how, extra):
    data = _broken(tmp_path, how)
    cmd = [sys.executable, "train_hd.py", "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ck"),
           "--label_nc", str(LABEL_NC), "--ngf", "8", "--ndf", "8", "--n_downsample_global", "2",
           "--n_blocks_global", "1", "--no_vgg_loss", "--loadSize", "64", "--resize_or_crop",
           "scale_width", "--niter", "1", "--niter_decay", "0", "--device", "cpu", "--no_progress",
           "--no_tensorboard", "--no_html", *extra]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=REPO, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"the run did not exit within {TIMEOUT} s after its error:\n{err[-3000:]}")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    elapsed = time.monotonic() - t0
    assert p.returncode == 1, f"status {p.returncode}:\n{err[-3000:]}"
    errors = [ln for ln in err.splitlines() if ln.startswith("error")]
    want = "cannot read this photo" if how == "truncated" else "label id 200 in"
    assert len(errors) == 1 and "train_00002.png" in errors[0] and want in errors[0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert elapsed < TIMEOUT / 2, f"{elapsed:.0f} s to exit"


def _live_children() -> set[int]:
    return {c.pid for c in multiprocessing.active_children()}


@pytest.mark.parametrize("how", ["error", "end"])
def test_fit_shuts_its_loader_workers_down_on_every_way_out(tmp_path, streets, how):
    before = _live_children()
    tr = Trainer(tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                          batchSize=1, niter=1, niter_decay=0, nThreads=2))
    if how == "error":
        step = tr.train_step

        def boom(batch):
            if tr.global_step == 2:
                raise RuntimeError("boom")
            return step(batch)
        tr.train_step = boom
        # the exception is kept, as a DataLoader's re-raised worker error keeps itself (a reference
        # cycle through its traceback): its frames, the loader with them, outlive fit()
        with pytest.raises(RuntimeError, match="boom") as e:
            tr.fit()
    else:
        tr.fit()
    assert tr._loader is None
    # the persistent workers are gone now, not at interpreter exit (where, ignoring SIGTERM,
    # they would make multiprocessing's exit handler wait for ever)
    assert _live_children() <= before
    if how == "error":
        assert e.value.__traceback__ is not None


# ---- SIGINT -----------------------------------------------------------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="SIGINT during a step: the step finishes, latest.pt is saved at it, a "
                        "KeyboardInterrupt carrying status 130 and the command's line, the previous SIGINT "
                        "handler restored")
def test_sigint_stops_at_the_step_boundary_and_restores_the_handler(tmp_path, streets, monkeypatch, capfd):
    with stopped_in_step_3(tmp_path, streets, monkeypatch, signal.SIGINT) as (tr, stopped, _):   # Ctrl-C
        assert isinstance(stopped, KeyboardInterrupt) and stopped.status == INTERRUPTED_EXIT_STATUS == 130
        msg = (f"stopped by SIGINT at epoch 1 step 3; {tmp_path / 't' / 'latest.pt'} saved; rerun the "
               "same command with --auto_resume (or --resume) to continue; exit status 130")
        err = capfd.readouterr().err
        assert stopped.line == msg and msg not in err   # from Python: no line naming a command
        assert "press Ctrl-C again to abort without saving" in err
        assert msg in (tmp_path / "t" / "loss_log.txt").read_text()


@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C (SIGINT to the process group, DataLoader workers included) mid-run: "
                        "latest.pt saved at the step it stopped at, status 130, one message and no "
                        "traceback; --resume ends with the uninterrupted run's weights")
def test_ctrl_c_saves_latest_and_the_resume_continues_from_it(tmp_path, streets):
    common = [*TINY, "--dataroot", str(streets)]
    run = tmp_path / "cut" / "run"
    with group_killed_on_exit(start_slow([*common, "--checkpoints_dir", str(tmp_path / "cut")])) as p:
        wait_for_steps(p, run, 3)
        os.killpg(p.pid, signal.SIGINT)   # what a terminal's Ctrl-C does
        t0 = time.monotonic()
        out, err = p.communicate(timeout=TIMEOUT)
    assert time.monotonic() - t0 < 30
    assert p.returncode == INTERRUPTED_EXIT_STATUS, f"status {p.returncode}:\n{err[-4000:]}"
    m = re.search(r"stopped by SIGINT at epoch (\d) step (\d+); (\S+) saved; rerun the same command "
                  r"with --auto_resume \(or --resume\) to continue; exit status 130", err)
    assert m, err[-4000:]
    stopped_at = int(m.group(2))
    assert Path(m.group(3)) == run / "latest.pt" and 3 <= stopped_at < 16
    ck = load_checkpoint(run)
    assert ck["global_step"] == stopped_at and ck["epoch"] == int(m.group(1))
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "exited unexpectedly" not in err, \
        err[-4000:]
    assert_resume_ends_as_an_uninterrupted_run(tmp_path, common)


# SLOW_TRAIN with step 3 held (up to 60 s) once it has trained, its marker file written first: the
# test's two SIGINTs land inside that step whatever the machine's load (sleeps between them did
# not: on a loaded machine the second could come after the run had ended)
HELD_STEP_3 = SLOW_TRAIN.replace("    time.sleep(0.2)\n", """    if self.global_step == 2:   # step 3, not yet counted
        import os, pathlib
        pathlib.Path(os.environ["IN_STEP_3"]).touch()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            time.sleep(0.01)
    time.sleep(0.2)
""")


@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C twice: the run aborts at once, status 130, one line, no traceback, "
                        "nothing saved")
def test_a_second_ctrl_c_aborts_at_once_with_one_line(tmp_path, streets):
    import queue
    import threading
    assert HELD_STEP_3 != SLOW_TRAIN
    run, marker = tmp_path / "ck" / "run", tmp_path / "in_step_3"
    p = subprocess.Popen([sys.executable, "-c", HELD_STEP_3, *TINY, "--dataroot", str(streets),
                          "--checkpoints_dir", str(tmp_path / "ck")], cwd=REPO,
                         env={**run_env(), "IN_STEP_3": str(marker)}, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    with group_killed_on_exit(p):
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in p.stderr] + [lines.put(None)], daemon=True).start()
        t0 = time.monotonic()
        while not marker.exists():
            assert p.poll() is None and time.monotonic() - t0 < TIMEOUT, "the run never reached step 3"
            time.sleep(0.01)
        os.killpg(p.pid, signal.SIGINT)
        err = []
        while not any(ln.startswith("SIGINT: stopping after this step") for ln in err):
            ln = lines.get(timeout=TIMEOUT)   # the first SIGINT handled: the second cannot merge with it
            assert ln is not None, "the run ended after one SIGINT:\n" + "".join(err)[-4000:]
            err.append(ln)
        os.killpg(p.pid, signal.SIGINT)
        t0 = time.monotonic()
        p.wait(timeout=TIMEOUT)
        while (ln := lines.get(timeout=TIMEOUT)) is not None:
            err.append(ln)
        err = "".join(err)
    assert time.monotonic() - t0 < 30
    assert p.returncode == INTERRUPTED_EXIT_STATUS, f"status {p.returncode}:\n{err[-4000:]}"
    lines = [ln for ln in err.splitlines() if "second SIGINT" in ln]
    assert len(lines) == 1 and lines[0].startswith("aborted by a second SIGINT during epoch 1 after step 2,"), err
    assert "saving nothing (no checkpoint yet); exit status 130" in lines[0]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-4000:]
    assert "stopped by SIGINT" not in err and not (run / "latest.pt").exists()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child pids from /proc (Linux)")
@pytest.mark.fault(cls="interrupted run",
                   case="SIGINT to the DataLoader workers alone: they ignore it, and the run trains "
                        "to its end (no 'worker exited unexpectedly')")
def test_loader_workers_ignore_sigint(tmp_path, streets):
    # SLOW_TRAIN with steps 0.05 s longer, not 0.2: the workers, signalled after step 3 of 16,
    # still have to serve the batches of both epochs after it (persistent workers)
    fast = SLOW_TRAIN.replace("time.sleep(0.2)", "time.sleep(0.05)")
    assert fast != SLOW_TRAIN
    run = tmp_path / "ck" / "run"
    with group_killed_on_exit(subprocess.Popen(
            [sys.executable, "-c", fast, *TINY, "--dataroot", str(streets), "--checkpoints_dir",
             str(tmp_path / "ck")], cwd=REPO, env=run_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)) as p:
        wait_for_steps(p, run, 3)
        workers = _children(p.pid)
        assert workers, "no DataLoader worker found"
        for w in workers:
            os.kill(w, signal.SIGINT)
        out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0, f"status {p.returncode}:\n{err[-4000:]}"
    assert load_checkpoint(run)["global_step"] == 16
    assert "exited unexpectedly" not in err and "Traceback" not in err, err[-4000:]
    assert "SIGINT" not in err, err[-4000:]   # nothing took it for a Ctrl-C of the training process


# torchrun's worker: SLOW_TRAIN as a file (torchrun runs a script)
@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C to torchrun (two CPU ranks, DataLoader workers): it passes SIGINT on, "
                        "the ranks stop after the same step, rank 0 saves latest.pt, status 130")
def test_ctrl_c_to_torchrun_stops_every_rank_at_the_same_step(tmp_path, streets):
    from tests.test_distributed import repo_first, torchrun_cmd
    script = tmp_path / "slow_train.py"
    script.write_text(SLOW_TRAIN)
    run = tmp_path / "ck" / "run"
    cmd = torchrun_cmd(script, *TINY, "--dataroot", str(streets), "--checkpoints_dir", str(tmp_path / "ck"))
    with group_killed_on_exit(subprocess.Popen(
            cmd, cwd=REPO, env=repo_first(dict(run_env(), OMP_NUM_THREADS="1")), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)) as p:
        wait_for_steps(p, run, 2)
        os.killpg(p.pid, signal.SIGINT)   # the terminal's Ctrl-C: torchrun's group (its ranks have their own)
        out, _ = p.communicate(timeout=TIMEOUT)
    stops = re.findall(r"stopped by SIGINT at epoch (\d) step (\d+); \S+ saved", out)
    assert len(stops) == 1, out[-6000:]   # rank 0 says it, for both
    epoch, stopped_at = map(int, stops[0])
    ck = load_checkpoint(run)
    assert ck["global_step"] == stopped_at and ck["epoch"] == epoch and len(ck["rng"]) == 2
    assert "exited unexpectedly" not in out and "KeyboardInterrupt" not in out, out[-6000:]
    # torchrun itself ends with its SignalException (its traceback is its own, as for SIGTERM)
    assert p.returncode != 0


# ---- the end-of-run summary ---------------------------------------------------------------------
def _mean(steps, which):
    return {k: sum(steps[s][k] for s in which) / len(which) for k in steps[which[0]]}


@pytest.mark.fault(cls="interrupted run",
                   case="the end-of-run summary: losses over the last epoch (said in words), the "
                        "epochs completed, and the steps after the last log line logged at the end")
def test_summary_losses_and_epochs_say_what_they_are_and_the_last_window_is_logged(tmp_path, streets,
                                                                                   monkeypatch):
    recorded = _recording(monkeypatch)
    cfg = tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                   batchSize=1, niter=1, niter_decay=0, print_freq=10, no_tensorboard=False)
    summary = Trainer(cfg).fit()
    assert sorted(recorded) == list(range(1, 9))
    assert (summary["epoch"], summary["epochs_completed"], summary["global_step"]) == (1, 1, 8)
    assert summary["losses"] == pytest.approx(_mean(recorded, list(range(1, 9))), rel=1e-5)
    assert summary["losses_over"] == "mean over all 8 step(s) of epoch 1"
    assert load_checkpoint(tmp_path / "t")["epoch"] == 2   # a checkpoint's epoch: the next to train
    # the steps after the last log line (step 1) reach the logs at the end: one window of 7
    hist = {h["step"]: h for h in map(json.loads, (tmp_path / "t" / "loss_history.jsonl").read_text().splitlines())}
    assert sorted(hist) == [1, 8] and hist[8]["window_steps"] == 7
    want = _mean(recorded, list(range(2, 9)))
    assert {k: hist[8][k] for k in want} == pytest.approx(want, rel=1e-5)
    assert re.search(r"^\(epoch: 1, iters: 8, time: [\d.]+\) .*\n    \[step 8\] ",
                     (tmp_path / "t" / "loss_log.txt").read_text(), re.M)
    from tests.tb_events import read_events
    tb = {(v.tag, ev.step) for ev in read_events(tmp_path / "t" / "tensorboard") for v in ev.summary.value}
    assert all((f"loss/{k}", 8) in tb for k in want)

    # a max_steps stop inside the next epoch: the steps it trained of it, the epochs completed
    recorded.clear()
    cfg2 = tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                    batchSize=1, niter=2, niter_decay=0, print_freq=10, resume=True, max_steps=3)
    s2 = Trainer(cfg2).fit()
    assert sorted(recorded) == [9, 10, 11]
    assert (s2["epoch"], s2["epochs_completed"], s2["global_step"], s2["stopped_early"]) == (2, 1, 11, True)
    assert s2["losses"] == pytest.approx(_mean(recorded, [9, 10, 11]), rel=1e-5)
    assert s2["losses_over"] == "mean over the 3 step(s) of epoch 2 this run trained (not the whole epoch)"

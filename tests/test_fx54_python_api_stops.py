"""What a Python caller of Trainer.fit() (a script, a notebook) meets, where train_hd.py's lines and
statuses stay as they were: a Ctrl-C stop (and a second Ctrl-C's abort) is a KeyboardInterrupt
with no line naming a command (it was a SystemExit(130), past ``except KeyboardInterrupt`` and
``except Exception``, telling to "rerun the same command"); a resume's changed options are
printed on stderr (only loss_log.txt had them); an earlier run's --deterministic no longer holds
for a later Trainer without it."""
import os
import signal

import pytest
import torch

from pix2pixhd import trainer as trainer_mod
from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC
from pix2pixhd.trainer import (INTERRUPTED_EXIT_STATUS, Trainer, TrainingAborted, TrainingInterrupted,
                               TrainingStopped)
from tests.test_sigterm import TINY, streets  # noqa: F401 (streets: a fixture)
from tests.test_trainer_step import tiny_cfg


def _cfg(tmp_path, streets, **kw):
    return tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none", batchSize=1,
                    niter=1, niter_decay=0, **kw)


def _sigint_in_step_3(monkeypatch, times: int) -> None:
    """Trainer.train_step sends this process ``times`` SIGINTs as step 3 starts (a Ctrl-C, or two)."""
    step = Trainer.train_step

    def signalled(self, batch):
        if self.global_step + 1 == 3:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch)
    monkeypatch.setattr(Trainer, "train_step", signalled)


# ---- 1. Ctrl-C during fit(): a KeyboardInterrupt ------------------------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C during Trainer.fit() from Python: latest.pt saved at the step boundary, then "
                        "a KeyboardInterrupt (TrainingInterrupted: summary, status 130, the command's line) "
                        "with no line naming a command; a Trainer with resume=True continues")
def test_ctrl_c_during_fit_is_a_keyboard_interrupt(tmp_path, streets, monkeypatch, capfd):
    _sigint_in_step_3(monkeypatch, 1)
    tr = Trainer(_cfg(tmp_path, streets))
    try:
        tr.fit()
    except Exception as e:   # what a script's "except Exception" must not take for an error
        pytest.fail(f"a Ctrl-C stop was caught as an Exception: {type(e).__name__}: {e}")
    except KeyboardInterrupt as e:
        stopped = e
    else:
        pytest.fail("fit() returned after a Ctrl-C")
    assert isinstance(stopped, TrainingInterrupted) and not isinstance(stopped, SystemExit)
    latest = tmp_path / "t" / "latest.pt"
    assert str(stopped) == (f"stopped by SIGINT at epoch 1 step 3; {latest} saved; a Trainer of the same "
                            "config with resume=True continues the run")
    assert stopped.status == stopped.exit_status == INTERRUPTED_EXIT_STATUS == 130
    assert stopped.line == (f"stopped by SIGINT at epoch 1 step 3; {latest} saved; rerun the same command "
                            "with --auto_resume (or --resume) to continue; exit status 130")
    assert (stopped.summary["stopped_by"], stopped.summary["global_step"]) == ("SIGINT", 3)
    assert load_checkpoint(tmp_path / "t")["global_step"] == 3
    err = capfd.readouterr().err
    assert "press Ctrl-C again to abort without saving" in err
    assert "rerun the same command" not in err and "exit status" not in err, err
    monkeypatch.undo()   # train_step as it is: the resume trains the rest of the epoch
    summary = Trainer(_cfg(tmp_path, streets, resume=True)).fit()
    assert summary["global_step"] == 8 and summary["stopped_by"] is None


@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C twice during Trainer.fit() from Python: a KeyboardInterrupt (TrainingAborted) "
                        "at once, nothing saved, no line naming an exit status")
def test_a_second_ctrl_c_during_fit_is_a_keyboard_interrupt(tmp_path, streets, monkeypatch, capfd):
    _sigint_in_step_3(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt) as e:
        Trainer(_cfg(tmp_path, streets)).fit()
    assert isinstance(e.value, TrainingAborted) and not isinstance(e.value, SystemExit)
    assert str(e.value) == ("aborted by a second SIGINT during epoch 1 after step 2, saving nothing "
                            "(no checkpoint yet)")
    assert e.value.line == str(e.value) + "; exit status 130" and e.value.status == 130
    assert not (tmp_path / "t" / "latest.pt").exists()
    err = capfd.readouterr().err
    assert "aborted by a second SIGINT" not in err and "exit status" not in err, err


@pytest.mark.parametrize("times", [1, 2], ids=["stop", "abort"])
@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C (once: stop, twice: abort) during train_main in-process: its one line on stderr "
                        "and SystemExit(130), as before the API's KeyboardInterrupt")
def test_train_main_still_ends_a_ctrl_c_with_its_line_and_status_130(tmp_path, streets, monkeypatch, capfd,
                                                                     times):
    _sigint_in_step_3(monkeypatch, times)
    args = [*TINY, "--nThreads", "0", "--dataroot", str(streets), "--checkpoints_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as e:
        train_main(args)
    assert e.value.code == 130
    err = capfd.readouterr().err
    assert ("SIGINT: stopping after this step, saving latest.pt (exit status 130); press Ctrl-C again to abort "
            "without saving") in err, err
    if times == 1:
        assert isinstance(e.value, TrainingStopped)
        lines = [ln for ln in err.splitlines() if ln.startswith("stopped by SIGINT")]
        assert lines == [f"stopped by SIGINT at epoch 1 step 3; {tmp_path / 'run' / 'latest.pt'} saved; rerun the "
                         "same command with --auto_resume (or --resume) to continue; exit status 130"], err
    else:
        lines = [ln for ln in err.splitlines() if "second SIGINT" in ln]
        assert lines == ["aborted by a second SIGINT during epoch 1 after step 2, saving nothing (no checkpoint "
                         "yet); exit status 130"], err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


# ---- 2. a resume's changed options: said to a Python caller ---------------------------------------
def test_a_resume_with_changed_options_says_so_on_stderr_from_python(tmp_path, streets, capfd):
    Trainer(_cfg(tmp_path, streets, max_steps=1)).fit()
    capfd.readouterr()
    Trainer(_cfg(tmp_path, streets, resume=True, lr=0.01, seed=7, max_steps=1)).fit()
    err = capfd.readouterr().err
    notes = [ln for ln in err.splitlines() if "with options other than its own" in ln]
    assert notes == [f"note: resuming {tmp_path / 't'} with options other than its own: --seed 0 -> 7, "
                     "--lr 0.0002 -> 0.01: the resumed run differs from an uninterrupted one from here on"], err


def test_train_hd_says_a_resumes_changed_options_once(tmp_path, streets, capfd):
    args = [*TINY, "--nThreads", "0", "--dataroot", str(streets), "--checkpoints_dir", str(tmp_path),
            "--max_steps", "1"]
    assert train_main(args) == 0
    capfd.readouterr()
    assert train_main([*args, "--resume", "--lr", "0.01", "--seed", "7"]) == 0
    out, err = capfd.readouterr()
    notes = [ln for ln in (out + err).splitlines() if "with options other than its own" in ln]
    assert len(notes) == 1 and notes[0] in out.splitlines(), out + err   # train_hd.py's start lines (stdout)


# ---- 3. --deterministic: not carried over to a later Trainer without it -----------------------------
def _state():
    return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()


def test_a_later_trainer_without_deterministic_runs_without_it(tmp_path, streets, monkeypatch):
    monkeypatch.setattr(trainer_mod, "_DETERMINISTIC_BEFORE", None)
    torch.use_deterministic_algorithms(False)   # (conftest puts the session's setting back)
    Trainer(_cfg(tmp_path, streets, name="a", deterministic=True))
    assert _state() == (True, False)   # the run's documented setting, left on after it
    Trainer(_cfg(tmp_path, streets, name="b"))
    assert _state() == (False, False)
    Trainer(_cfg(tmp_path, streets, name="c", deterministic=True))
    assert _state() == (True, False)


def test_a_callers_own_deterministic_setting_is_left_as_it_was(tmp_path, streets, monkeypatch):
    monkeypatch.setattr(trainer_mod, "_DETERMINISTIC_BEFORE", None)
    torch.use_deterministic_algorithms(True, warn_only=True)   # the caller's own, before any run
    Trainer(_cfg(tmp_path, streets, name="a"))
    assert _state() == (True, True)
    Trainer(_cfg(tmp_path, streets, name="b", deterministic=True))   # CPU: strict
    assert _state() == (True, False)
    Trainer(_cfg(tmp_path, streets, name="c"))   # the caller's setting back, not switched off
    assert _state() == (True, True)

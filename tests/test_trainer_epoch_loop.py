"""The trainer's epoch loop: on a terminal, the bars an epoch leaves on the screen (the run's last,
and epochs that took EPOCH_BAR_KEEP_S or more; a run of many tiny epochs leaves one line, not one a
epoch), and the epoch's step count, taken once per epoch before its batches (a resumed epoch's
last step is known, so the run's last step is timed)."""
import io
import json

import pytest

from pix2pixhd import trainer
from pix2pixhd.data import loader as data_loader
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import Trainer
from tests.test_trainer_step import tiny_cfg


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    """Two scenes: epochs of 2 steps (batchSize 1)."""
    root = tmp_path_factory.mktemp("streets2")
    generate(root, n_train=2, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """One scene: epochs of 1 step."""
    root = tmp_path_factory.mktemp("streets1")
    generate(root, n_train=1, n_test=0, width=64, height=32, seed=0)
    return root


def _cfg(tmp_path, streets, **kw):
    return tiny_cfg(tmp_path, **{**dict(label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                                         batchSize=1, niter=2, niter_decay=0, print_freq=100), **kw})


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _screen(out: str) -> list[str]:
    """The lines a terminal shows after ``out``: each carriage return goes back to the line's
    start and what follows overwrites it (tqdm clears a bar by spaces)."""
    lines = []
    for raw in out.split("\n"):
        cells: list[str] = []
        for part in raw.split("\r"):
            cells[:len(part)] = list(part)
        text = "".join(cells).strip()
        if text:
            lines.append(text)
    return lines


def _bars(out: str) -> list[str]:
    return [ln for ln in _screen(out) if " epoch " in ln and "|" in ln]


def test_a_run_of_tiny_epochs_leaves_only_its_last_bar(tmp_path, scene, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    Trainer(_cfg(tmp_path, scene, no_progress=False, niter=4)).fit()
    bars = _bars(term.getvalue())
    assert len(bars) == 1 and "epoch 4/4" in bars[0] and "100%" in bars[0], \
        f"bars left on the screen after 4 tiny epochs: {bars}"

    # epochs that took EPOCH_BAR_KEEP_S or more keep their bar (here: every epoch)
    monkeypatch.setattr(trainer, "EPOCH_BAR_KEEP_S", 0.0)
    term.seek(0)
    term.truncate()
    Trainer(_cfg(tmp_path, scene, no_progress=False, niter=6, resume=True)).fit()
    bars = _bars(term.getvalue())
    assert [b[b.index("epoch "):].split(":")[0] for b in bars] == ["epoch 5/6", "epoch 6/6"], bars


def test_a_note_during_an_epoch_is_written_above_the_bar(tmp_path, streets, monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    t = Trainer(_cfg(tmp_path, streets, no_progress=False, niter=1, max_steps=1))
    t.cfg.compile = True   # after the networks were built: the first step's note only, no compilation
    t.fit()
    screen = _screen(term.getvalue())
    notes = [ln for ln in screen if "--compile" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: --compile"), f"the note is not a line of its own: {screen}"


@pytest.mark.fault(cls="interrupted run",
                   case="resumed inside its last epoch: the epoch's steps left are taken once (len of the loader "
                        "once per epoch), so the run's last step is timed (its log line has phase times)")
def test_the_epochs_step_count_is_taken_once_per_epoch_and_times_a_resumed_runs_last_step(
        tmp_path, streets, monkeypatch):
    calls = []
    length = data_loader.ResumableSampler.__len__
    monkeypatch.setattr(data_loader.ResumableSampler, "__len__", lambda self: calls.append(1) or length(self))
    # two epochs of two steps, stopped after step 3 (inside epoch 2)
    Trainer(_cfg(tmp_path, streets, max_steps=3, niter=2)).fit()
    assert len(calls) == 1 + 2, f"len(sampler) called {len(calls)} times for a run's start and 2 epochs"

    calls.clear()
    summary = Trainer(_cfg(tmp_path, streets, resume=True)).fit()   # epoch 2's last step only
    assert summary["global_step"] == 4 and summary["steps"] == 1
    assert len(calls) == 1 + 1, f"len(sampler) called {len(calls)} times for a run's start and 1 epoch"
    history = (tmp_path / "t" / "loss_history.jsonl").read_text().splitlines()
    last = json.loads(history[-1])
    assert last["step"] == 4 and last["window_steps"] == 1
    assert any(k.startswith("ms/") and k != "ms/data" for k in last), \
        f"the resumed run's last step (4) has no phase times: {sorted(last)}"


def test_a_note_beside_a_live_bar_gets_a_line_of_its_own(monkeypatch):
    """trainer._note (the fp16 skipped-step note, a save's notes, a DDP rank's worker-death note:
    written while an epoch's bar is on the screen) clears the bar, writes the note and draws the
    bar again; printed, the note was glued to the bar's line."""
    from tqdm import tqdm
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    bar = tqdm(total=4, file=term, desc="global epoch 1/1", leave=True)
    bar.update(1)
    trainer._note("note: fp16: step 2 had inf/NaN gradients")
    bar.update(3)
    bar.close()
    screen = _screen(term.getvalue())
    assert "note: fp16: step 2 had inf/NaN gradients" in screen, f"the note is not a line of its own: {screen}"
    assert len(_bars(term.getvalue())) == 1, screen

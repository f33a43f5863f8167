"""Logs after a resume: a run killed after a save (SIGKILL, OOM, node loss), or resumed with
--which_epoch from an earlier epoch, keeps in loss_log.txt, TensorBoard and the HTML page only what
the resumed line of training logged, as loss_history.jsonl does; and the log lines' formatting."""
import json
import re

import pytest
from PIL import Image

from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "0", "--no_progress", "--device", "cpu",
        "--norm_impl", "ref", "--print_freq", "2", "--display_freq", "3"]


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (no handler catches a BaseException)."""


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


def _log_steps(run):
    return [int(m.group(1)) for ln in (run / "loss_log.txt").read_text().splitlines()
            if (m := re.match(r"    \[step (\d+)\]", ln))]   # a loss line's extras line


def _history_steps(run):
    return [json.loads(ln)["step"] for ln in (run / "loss_history.jsonl").read_text().splitlines()]


def _events(f):
    """The Events of one event file (TFRecord framing: u64 length, u32 crc, payload, u32 crc)."""
    from tests.tb_events import _event_pb2
    event_pb2, data, pos, out = _event_pb2(), f.read_bytes(), 0, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        out.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
        pos += 12 + n + 4
    return out


def _tensorboard_as_read(folder):
    """Each scalar tag's (step, value) list as TensorBoard shows it: files in the order written,
    and a SessionLog START at step N (a writer's purge_step) drops the earlier events at steps >= N."""
    files = sorted((_events(f) for f in folder.glob("events.out.tfevents.*")),
                   key=lambda evs: evs[0].wall_time)
    tags: dict[str, list] = {}
    for ev in (ev for evs in files for ev in evs):
        if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START:
            tags = {t: [(s, v) for s, v in pts if s < ev.step] for t, pts in tags.items()}
        for v in ev.summary.value:
            if not v.HasField("image"):
                tags.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return tags


def _image_steps(folder):
    return {p.name: int(Image.open(p).info["step"]) for p in sorted(folder.glob("epoch*_*.png"))}


def test_a_resume_after_a_kill_logs_each_step_once(tmp_path, streets, monkeypatch):
    """Killed at step 7, after latest.pt at step 4: loss_log.txt, TensorBoard and the page keep only
    steps up to 4 of the dead attempt; the resumed run logs 5..8 once."""
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--name", "k",
              "--niter", "2", "--niter_decay", "0", "--save_latest_freq", "4"]
    step = Trainer.train_step

    def killed_at_7(self, batch):
        if self.global_step + 1 == 7:
            raise _Killed
        return step(self, batch)
    with monkeypatch.context() as m:
        m.setattr(Trainer, "train_step", killed_at_7)
        with pytest.raises(_Killed):
            train_main(common)
    run = tmp_path / "k"
    assert _log_steps(run) == [1, 2, 4, 6]   # step 6 was logged after the save at 4
    assert _image_steps(run / "web" / "images") == {f"epoch{e:03d}_{k}.png": s for e, s in ((1, 4), (2, 6))
                                                    for k in ("label", "real", "synthesized")}
    assert train_main([*common, "--resume"]) == 0
    assert _history_steps(run) == [1, 2, 4, 6, 8]
    assert _log_steps(run) == [1, 2, 4, 6, 8]   # was [1, 2, 4, 6, 6, 8]
    text = (run / "loss_log.txt").read_text()
    assert "loss_log.txt: 2 line(s) from step 6 on, logged past step 4 where this run starts, dropped" in text
    assert text.index("resumed from epoch 2 iteration 0") < text.index("    [step 6]")
    hist = {h["step"]: h for h in map(json.loads, (run / "loss_history.jsonl").read_text().splitlines())}
    tb = _tensorboard_as_read(run / "tensorboard")
    for k in ("G_GAN", "D_fake"):
        assert [s for s, _ in tb[f"loss/{k}"]] == [1, 2, 4, 6, 8]
        assert [v for _, v in tb[f"loss/{k}"]] == pytest.approx([hist[s][k] for s in (1, 2, 4, 6, 8)], rel=1e-6)
    # the dead attempt's step-6 images are out of the page, moved aside; step 6 shown again, and 8
    aside = run / "web" / "images" / "abandoned_step4"
    assert _image_steps(aside) == {f"epoch002_{k}.png": 6 for k in ("label", "real", "synthesized")}
    assert _image_steps(run / "web" / "images") == {f"epoch{e:03d}_{k}.png": s for e, s in ((1, 4), (2, 8))
                                                    for k in ("label", "real", "synthesized")}


def test_a_resume_that_goes_back_drops_the_abandoned_epochs_from_the_logs_and_page(tmp_path, streets):
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--name", "b",
              "--niter", "3", "--niter_decay", "0", "--save_epoch_freq", "1"]
    assert train_main(common) == 0
    run = tmp_path / "b"
    assert _log_steps(run) == [1, 2, 4, 6, 8, 10, 12]
    assert train_main([*common, "--resume", "--which_epoch", "1", "--max_steps", "2"]) == 0
    assert _log_steps(run) == _history_steps(run) == [1, 2, 4, 6]
    page = (run / "web" / "index.html").read_text()
    assert re.findall(r"<h3>epoch (\d+)</h3>", page) == ["2", "1"]   # not 3
    assert "epoch003" not in page
    assert sorted(p.name for p in (run / "web" / "images" / "abandoned_step4").iterdir())[:1] == ["epoch002_label.png"]
    tb = _tensorboard_as_read(run / "tensorboard")
    assert [s for s, _ in tb["loss/G_GAN"]] == [1, 2, 4, 6]


def test_window_steps_is_an_integer_and_a_runs_last_short_window_has_phase_times(tmp_path, streets):
    # print_freq 2 on 4-step epochs, 3 steps: the last window (step 3) is one short step
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--niter", "1",
              "--niter_decay", "0", "--no_tensorboard", "--no_html"]
    assert train_main([*common, "--name", "m", "--max_steps", "3"]) == 0
    assert train_main([*common, "--name", "e", "--print_freq", "3"]) == 0   # the epoch ends at step 4
    for name, last in (("m", 3), ("e", 4)):
        hist = [json.loads(ln) for ln in (tmp_path / name / "loss_history.jsonl").read_text().splitlines()]
        assert hist[-1]["step"] == last and hist[-1]["window_steps"] == 1
        assert {"ms/prepare", "ms/G_losses", "ms/G_backward", "ms/optimizer"} <= set(hist[-1]), hist[-1]
        lines = (tmp_path / name / "loss_log.txt").read_text()
        assert "window_steps: 1 " in lines and "window_steps: 1.0" not in lines


def test_a_later_rewind_keeps_the_notes_about_files_still_on_disk(tmp_path, streets):
    """The note that a checkpoint was kept aside (latest_stepN.pt) or images set aside
    (abandoned_stepS/) names files that stay: a resume to a still earlier step keeps it in the log."""
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--name", "w",
              "--niter", "3", "--niter_decay", "0", "--save_epoch_freq", "1"]
    assert train_main(common) == 0                                                    # steps 1..12
    run = tmp_path / "w"
    assert train_main([*common, "--resume", "--which_epoch", "2", "--max_steps", "2"]) == 0   # 8 -> 10
    assert (run / "latest_step12.pt").is_file() and (run / "web" / "images" / "abandoned_step8").is_dir()
    assert train_main([*common, "--resume", "--which_epoch", "1", "--max_steps", "1"]) == 0   # 4 -> 5
    assert _log_steps(run) == [1, 2, 4, 5]
    text = (run / "loss_log.txt").read_text()
    for says in (f"resumed: kept as {run / 'latest_step12.pt'}", "moved from", "abandoned_step8"):
        assert says in text, (says, text)
    assert "2 note(s) about files still on disk kept" in text
    kept = [x for x in text.splitlines() if "[kept]" in x]
    assert len(kept) >= 2 and all(x.startswith("================ [step 5] [kept] ") for x in kept), kept

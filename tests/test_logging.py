"""Logs that can be read (issue 18, item 4): every logged loss is the mean over its logging window
(the steps since the previous log line), in the history, the text log, tensorboard and the HTML
curves; the step losses are recorded independently (from the train step itself) and averaged
here. The first window after a resume averages the steps run since the checkpoint."""
import json
import re

import numpy as np
import pytest
import torch

from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import Trainer
from pix2pixhd.visualizer import loss_curves_svg

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "0", "--no_progress", "--print_freq", "4",
        "--display_freq", "100", "--device", "cpu", "--niter", "1", "--niter_decay", "0",
        "--norm_impl", "ref", "--deterministic"]


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=8, n_test=0, width=64, height=32, seed=0)
    return root


def _recording(mp: pytest.MonkeyPatch) -> dict[int, dict[str, float]]:
    """From now on, every train step's losses as floats, keyed by the global step it trains."""
    steps: dict[int, dict[str, float]] = {}
    step = Trainer.train_step

    def recording(self, batch):
        losses = step(self, batch)
        steps[self.global_step + 1] = {k: float(v) for k, v in losses.items()}
        return losses
    mp.setattr(Trainer, "train_step", recording)
    return steps


@pytest.fixture(scope="module")
def full(tmp_path_factory, streets):
    """One epoch of 8 steps in one go (print_freq 4): its folder and its recorded step losses."""
    ck = tmp_path_factory.mktemp("full")
    with pytest.MonkeyPatch.context() as mp:
        recorded = _recording(mp)
        assert train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), *TINY,
                           "--name", "w"]) == 0
    return ck / "w", recorded


def _history(run):
    return {h["step"]: h for h in map(json.loads, (run / "loss_history.jsonl").read_text().splitlines())}


def _mean(steps, which):
    return {k: sum(steps[s][k] for s in which) / len(which) for k in steps[which[0]]}


def _tensorboard_scalars(folder):
    from tests.tb_events import read_events
    return {(v.tag, ev.step): v.simple_value for ev in read_events(folder) for v in ev.summary.value}


def test_logged_losses_are_means_over_the_print_freq_window(full):
    run, recorded = full
    assert sorted(recorded) == list(range(1, 9))
    hist = _history(run)
    # log lines at step 1 (alone) and every 4 steps: windows {1}, {2, 3, 4}, {5, 6, 7, 8}
    windows = {1: [1], 4: [2, 3, 4], 8: [5, 6, 7, 8]}
    assert sorted(hist) == sorted(windows)
    keys = set(recorded[1])
    assert keys == {"D_real", "D_fake", "G_GAN", "G_GAN_Feat"}
    for at, steps in windows.items():
        want = _mean(recorded, steps)
        assert {k: hist[at][k] for k in keys} == pytest.approx(want, rel=1e-6, abs=1e-7), at
        assert hist[at]["window_steps"] == len(steps)
        # not the step that falls on the line (the losses do move between steps)
        if len(steps) > 1:
            assert any(hist[at][k] != pytest.approx(recorded[at][k], rel=1e-6) for k in keys)
    # the text log prints the same means
    text = (run / "loss_log.txt").read_text().splitlines()
    lines = [ln for ln in text if ln.startswith("(epoch")]
    assert len(lines) == 3
    for line, at in zip(lines, sorted(windows)):
        assert text[text.index(line) + 1].startswith(f"    [step {at}] ")   # its extras line
        printed = dict(re.findall(r"(\w+): (-?[0-9.]+)", line.split(")", 1)[1]))
        for k in keys:
            assert float(printed[k]) == pytest.approx(hist[at][k], abs=6e-5)
    # tensorboard's scalars are the same means
    tb = _tensorboard_scalars(run / "tensorboard")
    for at in windows:
        for k in keys:
            assert tb[(f"loss/{k}", at)] == pytest.approx(hist[at][k], rel=1e-6)
    # and the HTML page draws its curves from them
    page = (run / "web" / "index.html").read_text()
    assert loss_curves_svg(list(hist.values())) in page


def test_first_window_after_a_resume_averages_the_steps_since_the_checkpoint(tmp_path, streets, full,
                                                                          monkeypatch):
    full_run, full = full
    recorded = _recording(monkeypatch)
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY]
    assert train_main([*common, "--name", "cut", "--max_steps", "6", "--no_tensorboard", "--no_html"]) == 0
    recorded.clear()
    assert train_main(["--resume", "--name", "cut", "--checkpoints_dir", str(tmp_path)]) == 0
    assert sorted(recorded) == [7, 8]
    for s in (7, 8):   # exact resume: the same step losses as the run done in one go
        assert recorded[s] == full[s]
    hist = _history(tmp_path / "cut")
    # the steps after the last log line before the stop (5, 6) were logged at the stop, not lost
    assert sorted(hist) == [1, 4, 6, 8]
    assert hist[6]["window_steps"] == hist[8]["window_steps"] == 2
    for at, steps in ((6, [5, 6]), (8, [7, 8])):
        want = _mean(full, steps)
        assert {k: hist[at][k] for k in want} == pytest.approx(want, rel=1e-6, abs=1e-7), at
    assert torch.equal(torch.tensor([hist[4][k] for k in want]),
                       torch.tensor([_history(full_run)[4][k] for k in want]))


def test_tensorboard_writer_falls_back_to_torch_then_names_the_fix(monkeypatch):
    """tensorboardX absent (GPU images often carry only `tensorboard`): torch.utils.tensorboard's
    writer is used; neither: an error naming both fixes, not a bare ModuleNotFoundError."""
    import sys
    import types

    from pix2pixhd import visualizer as V
    from pix2pixhd.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` fails
    fake = types.ModuleType("torch.utils.tensorboard")

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter
        pass

    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    assert V.summary_writer_class() is Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"pip install tensorboardX.*--no_tensorboard"):
        V.summary_writer_class()


def test_html_page_lists_epochs_from_1000_on(tmp_path):
    """Image files are epoch{e:03d}_*.png: epoch 1000 is epoch1000_..., not epoch 100."""
    import numpy as np

    from pix2pixhd.visualizer import Visualizer
    v = Visualizer(tmp_path, tensorboard=False, label_nc=4)
    img = np.zeros((4, 4, 3), np.uint8)
    for e in (999, 1000, 1001):
        v.display({"label": img, "synthesized": img, "real": img}, e, e)
    page = (tmp_path / "web" / "index.html").read_text()
    assert re.findall(r"<h3>epoch (\d+)</h3>", page) == ["1001", "1000", "999"]
    assert "images/epoch1000_synthesized.png" in page and "images/epoch1001_real.png" in page


def test_label_colormap_is_cityscapes_for_35_ids_else_bit_interleaved():
    """As the reference's util.labelcolormap: Cityscapes labelId colours for label_nc 35."""
    from pix2pixhd.visualizer import label_colormap
    cs = label_colormap(35)
    assert cs.shape == (35, 3) and cs.dtype.name == "uint8"
    for i, rgb in {0: (0, 0, 0), 4: (0, 0, 0), 5: (111, 74, 0), 7: (128, 64, 128), 8: (244, 35, 232),
                   11: (70, 70, 70), 21: (107, 142, 35), 23: (70, 130, 180), 24: (220, 20, 60),
                   26: (0, 0, 142), 33: (119, 11, 32), 34: (0, 0, 142)}.items():
        assert tuple(cs[i]) == rgb, i
    assert label_colormap(4).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert tuple(label_colormap(36)[7]) == (128, 128, 128)   # any other label_nc: bit-interleaved


def test_tensorboard_grid_is_shrunk_and_takes_panels_of_two_heights():
    """Three 2048-px panels make a 6144-px grid every display_freq steps: TensorBoard gets it
    shrunk by a whole factor to at most TB_MAX_WIDTH (area average); CycleGAN's domains of two
    heights are padded, not a concatenate error."""
    from pix2pixhd.visualizer import TB_MAX_WIDTH, tensorboard_grid
    rng = np.random.default_rng(0)
    panels = [rng.integers(0, 256, (1024, 2048, 3), dtype=np.uint8) for _ in range(3)]
    grid = tensorboard_grid(panels)
    assert grid.dtype == np.uint8 and grid.shape == (256, 1536, 3) and grid.shape[1] <= TB_MAX_WIDTH
    want = panels[0][:4, :4].reshape(1, 4, 1, 4, 3).mean((1, 3)).round()
    assert np.array_equal(grid[:1, :1], want.reshape(1, 1, 3).astype(np.uint8))
    small = [np.full((32, 48, 3), 7, np.uint8), np.full((16, 48, 3), 9, np.uint8)]
    g = tensorboard_grid(small)
    assert g.shape == (32, 96, 3) and (g[16:, 48:] == 0).all() and (g[:16, 48:] == 9).all()


def _image_steps(folder):
    from tests.tb_events import read_events
    return [ev.step for ev in read_events(folder) for v in ev.summary.value if v.tag.startswith("images/")]


def test_each_step_gets_one_image_grid_and_a_stop_on_an_epochs_last_step_shows_that_epoch(tmp_path, streets):
    # display_freq 4 on 8-step epochs: the epoch-end grid and the step-8 grid were two image events
    # at one step; and a run stopped on an epoch's last step (--max_steps, SIGTERM/SIGINT) never
    # showed that epoch: the resumed run, which trains none of its steps, had nothing to show
    ck = tmp_path / "ck"
    argv = ["--dataroot", str(streets), "--checkpoints_dir", str(ck), *TINY, "--name", "g", "--niter", "2"]
    assert train_main(argv + ["--display_freq", "4"]) == 0
    assert _image_steps(ck / "g" / "tensorboard") == [4, 8, 12, 16]
    assert train_main(argv + ["--name", "s", "--max_steps", "8"]) == 0    # stops on epoch 1's last step
    assert train_main(argv + ["--name", "s", "--resume"]) == 0
    images = sorted(p.name for p in (ck / "s" / "web" / "images").glob("*.png"))
    assert [n for n in images if n.startswith("epoch001_")], images
    assert _image_steps(ck / "s" / "tensorboard") == []   # epoch ends: the page only (display_freq 100)


def test_two_writers_in_one_second_keep_both_event_files(tmp_path, monkeypatch):
    # tensorboardX names event files by the second: a run resumed within the second of its stop
    # opened the stopped run's file again and wiped its events (seen in the full suite)
    import time as _time

    from pix2pixhd.visualizer import Visualizer
    now = _time.time()
    monkeypatch.setattr(_time, "time", lambda: now)
    for step in (1, 2):
        v = Visualizer(tmp_path, html_page=False)
        v.log_losses(1, step, step, {"G_GAN": 0.5}, {})
        v.close()
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    assert {s for (tag, s) in scalars if tag == "loss/G_GAN"} == {1, 2}, scalars

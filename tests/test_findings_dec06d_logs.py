"""Findings of Dec 6 (d) on the logs: loss_log.txt is read by parsers written for NVIDIA's
pix2pixHD (and junyanz's pix2pix/CycleGAN) logs: NVIDIA's loss line, in the reference's loss order,
the rest on one extras line after it, NVIDIA's header at each start; a resume's cut takes a loss
line with its extras line; TensorBoard gets image grids only every --display_freq steps (the
epoch-end displays write the HTML page only)."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.visualizer import Visualizer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "1", "--nThreads", "0", "--no_progress", "--device", "cpu",
        "--norm_impl", "ref", "--print_freq", "2", "--display_freq", "3", "--niter", "2",
        "--niter_decay", "0", "--save_epoch_freq", "1"]
# what users' parsers of NVIDIA's loss_log.txt match
NVIDIA_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+), time: ([\d.]+)\)")
HEADER = re.compile(r"^================ Training Loss \(.+\) ================$", re.M)


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)   # 4 steps an epoch
    return root


def _nvidia_parse(text):
    """As NVIDIA-log plotting scripts do: the lines the regex matches, every `key: value` pair
    after the parenthesis a loss; other lines skipped."""
    out = []
    for line in text.splitlines():
        if m := NVIDIA_LINE.match(line):
            pairs = re.findall(r"(\S+): (\S+)", line[m.end():])
            out.append((int(m.group(1)), int(m.group(2)), m.group(3), pairs))
    return out


def _history(run):
    return [json.loads(ln) for ln in (run / "loss_history.jsonl").read_text().splitlines()]


def _tb_image_steps(folder):
    from tests.tb_events import read_events
    return [ev.step for ev in read_events(folder) for v in ev.summary.value if v.tag.startswith("images/")]


def _entries(text):
    """(loss line, extras line) pairs; asserts that each extras line follows a loss line."""
    lines = text.splitlines()
    out = []
    for i, ln in enumerate(lines):
        if ln.startswith("    [step "):
            assert i > 0 and NVIDIA_LINE.match(lines[i - 1]), f"orphan extras line: {ln!r}"
        if NVIDIA_LINE.match(ln):
            assert i + 1 < len(lines) and lines[i + 1].startswith("    [step "), f"no extras line: {ln!r}"
            out.append((ln, lines[i + 1]))
    return out


def test_loss_log_reads_as_nvidias_and_tensorboard_images_come_every_display_freq(tmp_path, streets):
    common = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path), *TINY, "--name", "r"]
    run = tmp_path / "r"
    # stops on epoch 1's last step (its page images at step 4), then epoch 2; display_freq 3
    assert train_main([*common, "--max_steps", "4"]) == 0
    assert train_main([*common, "--resume"]) == 0
    assert _tb_image_steps(run / "tensorboard") == [3, 6]   # was [3, 4, 6, 8]: the epoch ends too
    assert sorted(p.name for p in (run / "web" / "images").glob("*.png")) == [
        f"epoch00{e}_{k}.png" for e in (1, 2) for k in ("label", "real", "synthesized")]
    text = (run / "loss_log.txt").read_text()
    hist = _history(run)
    parsed = _nvidia_parse(text)
    assert [h["step"] for h in hist] == [1, 2, 4, 6, 8] and len(parsed) == len(hist)
    for (epoch, it, secs, pairs), h in zip(parsed, hist):
        assert (epoch, it) == (h["epoch"], h["iter"])
        assert secs == f"{1 / h['images_per_s']:.3f}"   # the window's seconds per image
        assert [k for k, _ in pairs] == ["G_GAN", "G_GAN_Feat", "D_real", "D_fake"]   # NVIDIA's order
        assert all(v == f"{h[k]:.4f}" for k, v in pairs), (pairs, h)
    assert [int(re.match(r"    \[step (\d+)\]", x).group(1)) for _, x in _entries(text)] == [1, 2, 4, 6, 8]
    assert len(HEADER.findall(text)) == 2 and text.startswith("================ Training Loss (")
    # a resume to epoch 1 (step 4): the cut takes steps 6 and 8's loss and extras lines
    assert train_main([*common, "--resume", "--which_epoch", "1", "--max_steps", "1"]) == 0
    text = (run / "loss_log.txt").read_text()
    entries = _entries(text)   # no orphan line either way
    assert [int(re.match(r"    \[step (\d+)\]", x).group(1)) for _, x in entries] == [1, 2, 4, 5]
    assert [e[:2] for e in _nvidia_parse(text)] == [(h["epoch"], h["iter"]) for h in _history(run)]
    assert re.search(r"loss_log.txt: \d+ line\(s\) from step 5 on, logged past step 4", text)
    assert "[step 6]" not in text and "[step 8]" not in text
    assert len(HEADER.findall(text)) == 3


def test_the_cut_takes_a_loss_line_with_its_extras_line_and_keeps_headers(tmp_path):
    v = Visualizer(tmp_path, tensorboard=False, html_page=False)
    for step in (1, 2, 3):
        v.log_losses(1, step, step, {"G_GAN": 0.5}, {"lr": 2e-4})
    v.log_message("a note at step 3", step=3, kept=True)
    text = (tmp_path / "loss_log.txt").read_text()
    assert "(epoch: 1, iters: 2, time: 0.000) G_GAN: 0.5000 \n    [step 2] lr: 0.0002\n" in text
    v2 = Visualizer(tmp_path, tensorboard=False, html_page=False)
    v2.begin(resumed_at_step=1)
    lines = (tmp_path / "loss_log.txt").read_text().splitlines()
    assert lines[0].startswith("================ Training Loss (")
    assert lines[1:3] == ["(epoch: 1, iters: 1, time: 0.000) G_GAN: 0.5000 ", "    [step 1] lr: 0.0002"]
    assert lines[3].startswith("================ [step 2] [kept] ") and lines[3].endswith("a note at step 3")
    assert lines[4].startswith("================ Training Loss (")
    assert "4 line(s) from step 2 on" in lines[5] and len(lines) == 6


def test_cyclegan_losses_in_its_references_order_and_unknown_ones_after(tmp_path):
    v = Visualizer(tmp_path, tensorboard=False, html_page=False)
    v.log_losses(1, 1, 1, {"G_L1": 0.1, "D_fake": 0.2, "D_real": 0.3, "G_GAN": 0.4}, {"images_per_s": 4.0})
    v.log_losses(1, 2, 2, {"G_A": 0.1, "idt_B": 0.2, "D_A": 0.3}, {}, model="cyclegan")
    v.log_losses(1, 3, 3, {"D_fake": 0.2, "D_real": 0.3, "G_GAN": 0.4, "G_L1": 0.1}, {}, model="pix2pix")
    parsed = _nvidia_parse((tmp_path / "loss_log.txt").read_text())
    assert parsed[0][2] == "0.250"
    assert [[k for k, _ in p[3]] for p in parsed] == [
        ["G_GAN", "D_real", "D_fake", "G_L1"], ["D_A", "G_A", "idt_B"], ["G_GAN", "G_L1", "D_real", "D_fake"]]


def test_a_pix2pix_runs_loss_line_has_junyanz_order(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "ab" / "train").mkdir(parents=True)
    for i in range(2):   # side-by-side A|B
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(tmp_path / "ab" / "train" / f"{i}.png")
    assert train_main(["--model", "pix2pix", "--netG_pix2pix", "resnet_6blocks", "--ngf", "4", "--ndf", "4",
                       "--loadSize", "32", "--fineSize", "32", "--dataroot", str(tmp_path / "ab"),
                       "--checkpoints_dir", str(tmp_path), "--name", "p", "--nThreads", "0", "--device", "cpu",
                       "--no_progress", "--no_tensorboard", "--no_html", "--print_freq", "1", "--niter", "1",
                       "--niter_decay", "0"]) == 0
    parsed = _nvidia_parse((tmp_path / "p" / "loss_log.txt").read_text())
    assert len(parsed) == 2
    assert all([k for k, _ in p[3]] == ["G_GAN", "G_L1", "D_real", "D_fake"] for p in parsed)

"""A run of thousands of short epochs (a small dataset trained for days): the HTML page, rewritten
at every display and epoch end, costs no file-system call per old epoch (its cost grew with every
epoch: 0.17 s a rewrite at epoch 2000) and shows what it showed before; and without a terminal
the progress line carries the last logged losses (a nohup log had none: only loss_log.txt did)."""
import html
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pix2pixhd import trainer
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import Trainer
from pix2pixhd.visualizer import VISUALS, Visualizer
from tests.test_trainer_step import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    """Four scenes: epochs of 4 steps (batchSize 1)."""
    root = tmp_path_factory.mktemp("streets4")
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


def _old_page(vis: Visualizer) -> str:
    """The page as write_html wrote it before this fix (a glob, then a stat per epoch and image
    key): the reference the new page must equal."""
    images = sorted((vis.web / "images").glob("epoch*_*.png")) if (vis.web / "images").is_dir() else []
    epochs = sorted({int(m.group(1)) for p in images if (m := re.match(r"epoch(\d+)_", p.name))}, reverse=True)
    rows = []
    for e in epochs:
        cells = []
        for k in VISUALS:
            p = vis.web / "images" / f"epoch{e:03d}_{k}.png"
            if p.is_file():
                rel = p.relative_to(vis.web).as_posix()
                cells.append(f'<td><a href="{rel}"><img src="{rel}" width="256"></a><br>{vis.caption(k)}</td>')
        rows.append(f"<h3>epoch {e}</h3><table><tr>{''.join(cells)}</tr></table>")
    cycle = any(p.name.endswith(("_real_A.png", "_real_B.png")) for p in images)
    domains = f"<p>{html.escape(vis._domains_line())}</p>" if cycle and rows else ""
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(vis.dir.name)}</title></head><body>"
            f"<h1>{html.escape(vis.dir.name)}</h1><h2>Losses</h2>{vis._curves.svg()}"
            f"<h2>Results</h2>{domains}{''.join(rows) or '<p>No images yet.</p>'}</body></html>")


def _fake_epochs(images: Path, epochs, keys=("label", "synthesized", "real")):
    images.mkdir(parents=True, exist_ok=True)
    for e in epochs:
        for k in keys:
            (images / f"epoch{e:03d}_{k}.png").touch()   # empty: the page only links them


def _write_counting_stats(vis: Visualizer, monkeypatch) -> int:
    """write_html once; the stat calls it made (os.stat, os.lstat, Path.is_file, .exists, .is_dir)."""
    calls = []

    def counting(name, f):
        def wrapper(*a, **kw):
            calls.append(name)
            return f(*a, **kw)
        return wrapper
    with monkeypatch.context() as m:
        for mod, name in ((os, "stat"), (os, "lstat"), (Path, "is_file"), (Path, "exists"), (Path, "is_dir")):
            m.setattr(mod, name, counting(name, getattr(mod, name)))
        vis.write_html()
    return len(calls)


def test_a_page_rewrite_makes_no_stat_call_per_old_epoch(tmp_path, monkeypatch):
    counts = {}
    for n in (3, 300):
        run = tmp_path / f"run{n}"
        _fake_epochs(run / "web" / "images", range(1, n + 1))
        vis = Visualizer(run, tensorboard=False, label_nc=5)
        vis.write_html()   # the first reads the loss history (none here)
        counts[n] = (_write_counting_stats(vis, monkeypatch), _write_counting_stats(vis, monkeypatch))
        assert (run / "web" / "index.html").read_text().count("<h3>epoch ") == n
    assert counts[300] == counts[3], (
        f"write_html's stat calls grow with the epochs on the page: {counts[3]} with 3 epochs, {counts[300]} with 300")


def test_the_page_is_the_one_the_old_code_wrote_across_rewrites(tmp_path):
    """Odd names as the old glob saw them (4-digit epochs, a non-padded name, a folder so named,
    a link, other files), CycleGAN's domains line, and rewrites by one Visualizer while images
    come, go and come back (the row cache is never stale)."""
    run = tmp_path / "run"
    images = run / "web" / "images"
    _fake_epochs(images, [1, 2, 3, 999, 1000, 1234])
    _fake_epochs(images, [4], keys=("label",))
    (images / "epoch0005_label.png").touch()     # epoch 5 by its digits, but not epoch005_: an empty row
    (images / "epoch006_real.png").mkdir()       # a folder: epoch 6's empty row
    (images / "epoch7_fake.png").touch()         # not a visual's key
    (images / "epochx_label.png").touch()        # no epoch
    (images / "notes.txt").touch()
    (images / "abandoned_step4").mkdir()
    (images / "abandoned_step4" / "epoch008_label.png").touch()
    os.symlink(images / "epoch001_real.png", images / "epoch010_real.png")
    vis = Visualizer(run, tensorboard=False, label_nc=0, dataroot="/data/horses", phase="train")
    page = lambda: (run / "web" / "index.html").read_text()  # noqa: E731

    vis.write_html()
    assert page() == _old_page(vis)
    assert '<h3>epoch 1234</h3>' in page() and '<h3>epoch 5</h3><table><tr></tr></table>' in page()

    # images moved aside (as a resume does) and others written: the cached rows must not stay
    (images / "epoch003_real.png").rename(images / "abandoned_step4" / "epoch003_real.png")
    (images / "epoch1234_label.png").unlink()
    _fake_epochs(images, [4], keys=("synthesized", "real"))
    _fake_epochs(images, [11], keys=("real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B"))
    vis.write_html()
    assert page() == _old_page(vis) and "A: the images of /data/horses/trainA/" in page()
    assert 'epoch003_real.png' not in page() and 'epoch004_real.png' in page()

    (images / "abandoned_step4" / "epoch003_real.png").rename(images / "epoch003_real.png")   # back
    vis.write_html()
    assert page() == _old_page(vis) and 'epoch003_real.png' in page()

    for p in images.glob("epoch*"):   # none left
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    vis.write_html()
    assert page() == _old_page(vis) and "No images yet." in page()


@pytest.mark.fault(cls="interrupted run", case="a resume to an earlier step in the same process: the page "
                                               "the resumed run rewrites drops the images moved aside")
def test_a_resumed_runs_page_drops_the_images_moved_aside(tmp_path):
    run = tmp_path / "run"
    img = np.zeros((4, 4, 3), np.uint8)
    first = Visualizer(run, tensorboard=False, label_nc=5)
    first.begin(0)
    for epoch in (1, 2, 3):
        first.display({"label": img, "synthesized": img, "real": img}, epoch, step=4 * epoch, html_only=True)
    assert (run / "web" / "index.html").read_text().count("<h3>epoch ") == 3
    first.close()

    again = Visualizer(run, tensorboard=False, label_nc=5)   # resumed from step 4 (the end of epoch 1)
    again.begin(4)
    again.display({"label": img, "synthesized": img, "real": img}, 2, step=6, html_only=True)
    page = (run / "web" / "index.html").read_text()
    assert page == _old_page(again)
    assert re.findall(r"<h3>epoch (\d+)</h3>", page) == ["2", "1"], page
    assert sorted(p.name for p in (run / "web" / "images" / "abandoned_step4").iterdir()) == \
        [f"epoch{e:03d}_{k}.png" for e in (2, 3) for k in ("label", "real", "synthesized")]


def test_without_a_terminal_the_progress_line_has_the_last_logged_losses(tmp_path, streets, monkeypatch, capfd):
    monkeypatch.setattr(trainer, "PROGRESS_INTERVAL_S", 0.0)   # a line after every step
    Trainer(tiny_cfg(tmp_path, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none", batchSize=1,
                     niter=2, niter_decay=0, print_freq=2, max_steps=3, no_progress=False)).fit()
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("progress:")]
    run = tmp_path / "t"
    history = {r["step"]: r for r in map(json.loads, (run / "loss_history.jsonl").read_text().splitlines())}
    # the names in loss_log.txt's order (its first loss line's)
    first = next(ln for ln in (run / "loss_log.txt").read_text().splitlines() if ln.startswith("(epoch: "))
    names = re.findall(r"(\w+): -?\d", first.split(") ", 1)[1])
    assert names[:4] == ["G_GAN", "G_GAN_Feat", "D_real", "D_fake"], names
    assert len(lines) == 3, lines
    for line, logged in zip(lines, (1, 2, 2)):   # steps 1 and 2 logged (print_freq 2), step 3 not yet
        losses = "".join(f" {k} {history[logged][k]:.3g}" for k in names)
        assert line.endswith(", losses" + losses), (line, losses)
        assert re.search(r"run ETA (\?|\d+:\d\d:\d\d), losses G_GAN \d", line), line

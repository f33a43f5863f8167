"""scripts/main_job.py: its sample sheet, and the ``--quick`` smoke run end to end (data, three
training stages, synthesis, the untrained floor, the summary with wall seconds and CPU minutes)."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.visualizer import label_colormap

ROOT = Path(__file__).resolve().parents[1]


def _main_job():
    spec = importlib.util.spec_from_file_location("main_job", ROOT / "scripts" / "main_job.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_sample_sheet_rows_are_label_fake_real_of_the_first_scenes(tmp_path):
    rng = np.random.default_rng(0)
    h, w, nc = 8, 16, 5
    scenes = {}
    for i in range(6):
        stem = f"s{i}"
        lab = rng.integers(0, nc, (h, w)).astype(np.uint8)
        fake = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        real = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        _png(tmp_path / "label" / f"{stem}.png", lab)
        if i != 1:  # s1 has no synthesized photo: it is left out, not shown with a hole
            _png(tmp_path / "fake" / f"{stem}.png", fake)
        _png(tmp_path / "real" / f"{stem}.png", real)
        scenes[stem] = (lab, fake, real)
    sheet_path = _main_job().write_sample_sheet(tmp_path / "out" / "samples.png", tmp_path / "label",
                                                tmp_path / "fake", tmp_path / "real", nc, n=3, gap=2,
                                                colors=None)
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"))
    title = 14
    assert sheet.shape == (title + 3 * (h + 2), 3 * w + 2 * 2, 3)
    cmap = label_colormap(nc)
    for row, stem in enumerate(("s0", "s2", "s3")):
        lab, fake, real = scenes[stem]
        y = title + row * (h + 2)
        np.testing.assert_array_equal(sheet[y:y + h, 0:w], cmap[lab])
        np.testing.assert_array_equal(sheet[y:y + h, w + 2:2 * w + 2], fake)
        np.testing.assert_array_equal(sheet[y:y + h, 2 * w + 4:3 * w + 4], real)


def test_sample_sheet_without_matching_scenes_names_the_folders(tmp_path):
    _png(tmp_path / "label" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "fake" / "b.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "real").mkdir()
    with pytest.raises(FileNotFoundError, match="fake"):
        _main_job().write_sample_sheet(tmp_path / "s.png", tmp_path / "label", tmp_path / "fake",
                                       tmp_path / "real", 3)


def test_threads_one_on_a_busy_machine_else_the_cores(monkeypatch):
    choose = _main_job().choose_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose(0, cores=2, load=0.3)[0] == 2
    assert choose(0, cores=2, load=1.6)[0] == 1 and "busy" in choose(0, cores=2, load=1.6)[1]
    assert choose(0, cores=1, load=5.0)[0] == 1
    assert choose(3, cores=2, load=9.0) == (3, "--threads")        # asked for: taken as it is
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose(0, cores=2, load=9.0) == (2, "OMP_NUM_THREADS")  # the user's setting wins


def test_quick_main_job_runs_end_to_end(tmp_path):
    res = tmp_path / "res"
    cmd = [sys.executable, "scripts/main_job.py", "--quick", "--data", str(tmp_path / "data"),
           "--checkpoints_dir", str(tmp_path / "ck"), "--results", str(res), "--threads", "1"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((res / "summary.json").read_text())
    stages = ["data", "global", "local", "finetune", "synthesis", "floor"]
    assert list(summary["seconds"]) == stages and list(summary["cpu_minutes"]) == stages
    # every stage did work; the training stages ran in child processes whose CPU time is counted
    assert all(summary["seconds"][k] > 0 for k in stages), summary
    assert all(summary["cpu_minutes"][k] > 0 for k in ("global", "local", "finetune")), summary
    assert summary["trained"]["n"] == summary["untrained"]["n"] == 2
    # the recipe reaches every stage's generator: resize-convolution upsampling, the L1 term
    assert summary["recipe"]["upsample"] == "resize" and summary["recipe"]["lambda_L1"] == 100
    for stage in ("main_global", "main_local", "main_finetune"):
        cfg = json.loads((tmp_path / "ck" / stage / "config.json").read_text())
        assert cfg["upsample"] == "resize" and cfg["lambda_L1"] == 100, (stage, cfg)
    assert "CPU-min" in out.stdout and "sample sheet:" in out.stdout and "CPU threads per stage: 1" in out.stdout
    # the figures are printed with the thread count the stages ran with (it said this process's)
    assert " with 1 CPU thread(s)" in out.stdout, out.stdout[-2000:]
    assert (res / "index.html").is_file()
    sheet = Image.open(res / "samples.png")
    assert sheet.mode == "P"  # reduced to 256 colours, to stay small
    assert sheet.size[0] > 3 * 64 and sheet.size[1] > 2 * 32  # 2 rows of 64x32 scenes, 3 columns
    # the page shows copies of the real photos, inside the results folder (not links into the
    # dataset, which a later run writes anew)
    srcs = re.findall(r'src="([^"]+)"', (res / "index.html").read_text())
    assert len(srcs) == 3 * 2 and len([s for s in srcs if "real" in s]) == 2, srcs
    assert all(res.resolve() in (res / s).resolve().parents for s in srcs), srcs

    # the same command again: it reruns from scratch (each stage replaces its earlier run) and
    # gives the same numbers, instead of a refusal and a traceback
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    rerun = json.loads((res / "summary.json").read_text())
    assert rerun["trained"] == summary["trained"] and rerun["untrained"] == summary["untrained"]
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["main_finetune", "main_global", "main_local"]
    # writing the dataset anew (or removing it) leaves the page whole
    srcs = re.findall(r'src="([^"]+)"', (res / "index.html").read_text())
    shutil.rmtree(tmp_path / "data")
    for src in srcs:
        path = (res / src).resolve()
        assert path.is_file() and res.resolve() in path.parents, src


def test_sample_sheet_in_256_colours_stays_close_to_the_full_colour_one(tmp_path):
    rng = np.random.default_rng(1)
    # smooth photos with noise, as the synthetic streets are, not uniform noise
    ramp = np.linspace(0, 200, 64)[None, :, None] + np.linspace(0, 50, 32)[:, None, None]
    for i in range(2):
        _png(tmp_path / "label" / f"s{i}.png", rng.integers(0, 4, (32, 64)).astype(np.uint8))
        for d in ("fake", "real"):
            img = ramp + np.array([0, 20, 40]) * (i + 1) + rng.normal(0, 4, (32, 64, 3))
            _png(tmp_path / d / f"s{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    mj = _main_job()
    args = (tmp_path / "label", tmp_path / "fake", tmp_path / "real", 4)
    full = np.asarray(Image.open(mj.write_sample_sheet(tmp_path / "full.png", *args, colors=None)),
                      dtype=np.float64)
    small = Image.open(mj.write_sample_sheet(tmp_path / "small.png", *args))
    assert small.mode == "P" and len(small.getcolors(4096)) <= 256
    diff = np.abs(np.asarray(small.convert("RGB"), dtype=np.float64) - full)
    assert diff.mean() < 4, diff.mean()


def _job(tmp_path, *args, timeout=300):
    return subprocess.run([sys.executable, "scripts/main_job.py", "--data", str(tmp_path / "data"),
                           "--checkpoints_dir", str(tmp_path / "ck"), "--results", str(tmp_path / "res"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_a_failing_stage_ends_the_job_with_one_line_naming_it_its_status_and_its_output(tmp_path):
    out = _job(tmp_path, "--width", "8")   # the dataset maker refuses 8x4 scenes
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "CalledProcessError" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: main job stage 'data'") and "exit status 1" in last, last
    assert str(tmp_path / "data") in last
    assert "outside 16x16" in out.stderr   # the stage's own message stays above it


def _snapshot(folder: Path) -> dict:
    """Each file's inode (a file written anew by os.replace() has a new one), modification time
    and bytes (an mtime alone misses a rewrite within the filesystem's timestamp granularity)."""
    return {p.relative_to(folder): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("taken", ["results", "checkpoint"])
def test_folders_the_job_cannot_use_are_refused_before_the_data_is_touched(tmp_path, taken):
    from pix2pixhd.datasets.synthetic_streets import generate
    generate(tmp_path / "data", n_train=1, n_test=1, width=16, height=16)
    before = _snapshot(tmp_path / "data")
    if taken == "results":   # a folder of the user's: not an earlier main job's results
        (tmp_path / "res").mkdir()
        (tmp_path / "res" / "notes.txt").write_text("mine")
        want = "--results"
    else:                    # a file where a stage's run folder goes
        (tmp_path / "ck").mkdir()
        (tmp_path / "ck" / "main_local").write_text("")
        want = "main_local"
    out = _job(tmp_path, "--quick", timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("error: ") and want in out.stderr
    assert _snapshot(tmp_path / "data") == before   # the dataset was not written anew
    assert not (tmp_path / "res" / "index.html").exists()

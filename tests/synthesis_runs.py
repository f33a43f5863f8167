"""Shared by the synthesis test modules (test_synthesis_faults.py, test_synthesis_inputs.py,
test_synthesis_user_findings.py): the tiny untrained checkpoints they synthesize with, as
module-scoped fixtures (import them into the test module: each module builds its own, once), and
the calls they make on a run."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.cli import synthesize_main
from pix2pixhd.launch import synthesize
from tests.test_synthesis_engine import save_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """label_nc 5, no instance maps, 2 downsamplings (size multiple 4)."""
    folder = tmp_path_factory.mktemp("run")
    save_run(folder, label_nc=5, no_instance=True)
    return folder


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    """A photo-to-photo generator (label_nc 0)."""
    folder = tmp_path_factory.mktemp("rgb_run")
    save_run(folder, label_nc=0, no_instance=True)
    return folder


@pytest.fixture(scope="module")
def palette_run(tmp_path_factory):
    """label_nc 12 trained on facades colour maps (--palette facades)."""
    folder = tmp_path_factory.mktemp("palette_run")
    save_run(folder, label_nc=12, no_instance=True, palette="facades")
    return folder


def synth(run, inp, out, *extra):
    return synthesize_main(["--checkpoint", str(run), "--input", str(inp), "--out", str(out),
                            "--device", "cpu", "--no_progress", "--workers", "0", *map(str, extra)])


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def band_map(path: Path, classes=(0, 1, 2), h: int = 16, w: int = 24) -> Path:
    """A label map of vertical bands of ``classes`` (ids 255: a map of the void id, skipped as out of
    range by a checkpoint of fewer labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.array(classes, dtype=np.uint8)[np.arange(w) * len(classes) // w]
    Image.fromarray(np.repeat(a[None], h, 0)).save(path)
    return path


def job_record(out: Path) -> dict:
    """The job's OUT/synthesis.json."""
    return json.loads((out / "synthesis.json").read_text())


def synth_cli(*args) -> int:
    """synthesize.py's exit status (errors.run: an error's line on stderr), on the CPU, no workers."""
    return synthesize(["--device", "cpu", "--no_progress", "--workers", "0", *map(str, args)])


def signalling(g, signum):
    """``g``, whose first forward sends ``signum`` to this process (as Ctrl-C or `kill` would)."""
    calls = []

    def forward(x):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signum)
        return g(x)
    return forward

"""A large but legal map among small ones (a security walkthrough: a 13000x13000 grey PNG, 164 KB
on disk, under `ulimit -v` 4 GB). Its batch's stack, --batch_size rows of the one map, failed the
CPU allocator outside the generator's try and stopped the whole job with a traceback, the other
maps unwritten; and Pillow's DecompressionBombWarning (above Image.MAX_IMAGE_PIXELS, under twice
it) printed two lines of a Python warning naming no file. Now the size is skipped with the reason
and the fix, as an out-of-memory in the generator is, and the warning is one note naming the file.
Both are simulated small: the allocator's error raised by a patched torch.stack for one size, and
Pillow's limit lowered."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (fixtures)

fault = pytest.mark.fault


def ids(path, h: int = 16, w: int = 24, top: int = 4):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(h * w) % (top + 1)).reshape(h, w).astype(np.uint8)).save(path)
    return path


@fault(cls="synthesis", case="a lone map whose batch (--batch_size copies of it) cannot be stacked in memory")
def test_a_size_whose_batch_cannot_be_stacked_is_skipped_and_the_rest_written(run, tmp_path, capsys,
                                                                             monkeypatch):
    stack = torch.stack
    rows = []

    def small_only(ts, *a, **k):   # the CPU allocator's error for the large map's batch
        if ts[0].dim() == 3 and ts[0].shape[-1] == 48:
            rows.append(len(ts))
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 2704000000 bytes. Error code 12")
        return stack(ts, *a, **k)
    monkeypatch.setattr(torch, "stack", small_only)
    inp = tmp_path / "in"
    ids(inp / "a.png")
    ids(inp / "big.png", h=32, w=48)
    ids(inp / "c.png")
    assert synth(run, inp, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert rows == [4]   # padded to --batch_size still: the call shape keeps the bytes (module doc)
    assert re.search(r"skipped .*big\.png: out of memory synthesizing 48x32 maps 4 at a time: rerun with a "
                     r"smaller --batch_size \(a rerun into this --out resumes and does them\), or --scale_width "
                     r"below the map's width into another --out", text), text
    assert sorted(p.name for p in (tmp_path / "out" / "test_img").iterdir()) == ["a.png", "c.png"]
    status = {r["input"].rsplit("/", 1)[-1]: r["status"] for r in manifest(tmp_path / "out")}
    assert status == {"a.png": "ok", "big.png": "skipped", "c.png": "ok"}


def _no_bomb_warning(recwarn):
    return not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@fault(cls="synthesis", case="a map above Pillow's decompression-bomb warning limit (--input)")
def test_a_map_above_pillows_warning_limit_is_one_note_naming_it(run, tmp_path, capsys, monkeypatch, recwarn):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 48x32 = 1536: a warning, not an error (2000)
    inp = tmp_path / "in"
    ids(inp / "a.png")
    big = ids(inp / "big.png", h=32, w=48)
    assert synth(run, inp, tmp_path / "out") == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "decompression-bomb" in line]
    assert notes == [f"note: {big} is 48x32 (1536 pixels, above Pillow's decompression-bomb warning limit of "
                     "1000): read as it is; remove it if it is not meant to be that large (a size this "
                     "machine's memory cannot synthesize is skipped, with the fix)"], err
    assert "DecompressionBombWarning" not in err and _no_bomb_warning(recwarn), [str(w.message) for w in recwarn]
    assert sorted(p.name for p in (tmp_path / "out" / "test_img").iterdir()) == ["a.png", "big.png"]


@fault(cls="synthesis", case="a map above Pillow's decompression-bomb warning limit (--dataroot)")
def test_a_dataset_map_above_pillows_warning_limit_is_one_note_naming_it(run, tmp_path, capsys, monkeypatch,
                                                                          recwarn):
    from pix2pixhd.cli import synthesize_main
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    root = tmp_path / "d"
    ids(root / "test_label" / "a.png")
    big = ids(root / "test_label" / "big.png", h=32, w=48)
    assert synthesize_main(["--checkpoint", str(run), "--dataroot", str(root), "--out", str(tmp_path / "out"),
                            "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "decompression-bomb" in line]
    assert notes == [f"note: {big} is 48x32 (1536 pixels, above Pillow's decompression-bomb warning limit of "
                     "1000): read as it is; remove it if it is not meant to be that large (a size this "
                     "machine's memory cannot synthesize is skipped, with the fix)"], err
    assert "DecompressionBombWarning" not in err and _no_bomb_warning(recwarn), [str(w.message) for w in recwarn]
    assert sorted(p.name for p in (tmp_path / "out" / "test_img").iterdir()) == ["a.png", "big.png"]


def test_other_warnings_are_not_shown_again_for_every_input(tmp_path, capsys):
    """The first version of the note caught warnings around each input's read (warnings.
    catch_warnings), which resets Python's once-only registries: a warning shown once (the default
    filter) was printed again after every input read with --workers 0 (helper REV's review)."""
    import warnings

    from pix2pixhd import engine

    def warn_once():
        warnings.warn("something once", UserWarning)   # one code location: the default shows it once
    ids_ = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(ids_)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(3):
            warn_once()
            engine._size(ids_)
            engine._noting_large_images(lambda self, i: {"label": None})(None, 0)
    assert [str(w.message) for w in seen] == ["something once"]

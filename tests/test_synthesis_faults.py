"""No silent loss in synthesis (issue 13 item 5): two inputs with one output name are refused
before any work; one bad input (unreadable, too small for the network, ids out of range, the wrong
kind for the checkpoint) is skipped, named with its reason on stdout and in the manifest, while
the rest of its batch and folder are written; a missing --inst folder and a --real photo of
another size are clear errors before any work; the results page URL-encodes its links.

Each test carries ``@pytest.mark.fault(cls=..., case=...)``: the fault table in the docs is built
from these markers."""
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.errors import InputError, MissingInputError
from tests.synthesis_runs import manifest, rgb_run, run, synth  # noqa: F401  (fixtures)

fault = pytest.mark.fault


def ids(path: Path, h: int = 16, w: int = 24, top: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(h * w) % (top + 1)).reshape(h, w).astype(np.uint8)).save(path)
    return path


def photo(path: Path, h: int = 16, w: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@fault(cls="synthesis", case="two inputs that map to one output name (a.png, a.jpg; x_gtFine_labelIds.png, x.png)")
def test_inputs_with_one_output_name_are_refused_before_any_work(run, tmp_path):
    inp = tmp_path / "in"
    ids(inp / "a.png")
    ids(inp / "a.jpg")
    ids(inp / "x_gtFine_labelIds.png")
    ids(inp / "x.png")
    ids(inp / "b.png")
    with pytest.raises(InputError) as e:
        synth(run, inp, tmp_path / "out")
    msg = str(e.value)
    assert "2 pair(s)" in msg and "a.jpg and" in msg and "a.png both become a.png" in msg
    assert "x.png and" in msg and "x_gtFine_labelIds.png both become x.png" in msg and "rename" in msg
    assert not (tmp_path / "out").exists()


@fault(cls="synthesis", case="unreadable, too-small and out-of-range inputs among good ones in one batch")
def test_bad_inputs_are_skipped_with_name_and_reason_and_the_rest_written(run, tmp_path, capsys):
    inp = tmp_path / "in"
    for name in ("a", "c", "e"):
        ids(inp / f"{name}.png")
    (inp / "b.png").write_bytes(b"not a png")                    # unreadable
    ids(inp / "d.png", h=4, w=24)                                 # 4 rows: one multiple of 4
    ids(inp / "f.png", top=7)                                     # id 7 >= label_nc 5
    ids(inp / "g.png", top=5)                                     # id 5: label_nc itself
    assert synth(run, inp, tmp_path / "out", "--batch_size", 7) == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*b\.png: cannot read this image \(UnidentifiedImageError", text)
    assert re.search(r"skipped .*d\.png: 24x4 is too small for this generator: each side must be at least 5", text)
    assert re.search(r"skipped .*f\.png: label id 7 >= label_nc=5 of the checkpoint; remap the ids to 0\.\.4", text)
    assert re.search(r"skipped .*g\.png: label id 5 >= label_nc=5 of the checkpoint; remap the ids to 0\.\.4", text)
    assert "wrote 3 images" in text and "skipped 4" in text
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "test_img").iterdir()) == ["a.png", "c.png", "e.png"]
    status = {Path(r["input"]).name: (r["status"], r.get("reason", "")) for r in manifest(out)}
    assert status["a.png"] == ("ok", "") and status["b.png"][0] == "skipped"
    assert "too small" in status["d.png"][1] and "label id 7" in status["f.png"][1]
    assert status["g.png"][0] == "skipped" and "label id 5" in status["g.png"][1]


@fault(cls="synthesis", case="grey images (id maps?) into a photo-input (label_nc 0) checkpoint: converted "
                               "to RGB, with a note")
def test_grey_images_into_a_photo_model_are_converted_with_a_note(rgb_run, tmp_path, capsys):
    """A grey image is read as a grey photo, converted to RGB as --dataroot (the data module)
    converts it, with one note that an id map would need another checkpoint (it was skipped as
    'an id map?' through --input only, while --dataroot synthesized it)."""
    inp = tmp_path / "in"
    photo(inp / "p.png")
    ids(inp / "m.png")
    assert synth(rgb_run, inp, tmp_path / "out") == 0
    cap = capsys.readouterr()
    assert re.search(r"note: .*m\.png is a grey image, converted to RGB for this checkpoint \(label_nc 0, "
                     r"photo inputs\).*if it is a label id map, use a checkpoint trained on label maps",
                     cap.err), cap.err
    assert sorted(p.name for p in (tmp_path / "out" / "test_B").iterdir()) == ["m.png", "p.png"]


@fault(cls="synthesis", case="RGB photos into a label-map checkpoint")
def test_photos_into_a_label_model_are_skipped_as_the_wrong_kind(run, tmp_path, capsys):
    inp = tmp_path / "in"
    photo(inp / "p.png")
    ids(inp / "m.png")
    assert synth(run, inp, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*p\.png: a RGB image \(3 channels\), but this checkpoint takes label ids "
                     r"\(label_nc=5\): give single-channel id maps \(mode L: each pixel its class id 0\.\.4; a "
                     r"colour map's colours mapped to their ids first\)", text), text
    assert [p.name for p in (tmp_path / "out" / "test_img").iterdir()] == ["m.png"]


@fault(cls="synthesis", case="a missing --inst folder")
def test_a_missing_inst_folder_is_an_error_before_any_work(run, tmp_path):
    inp = tmp_path / "in"
    ids(inp / "a.png")
    with pytest.raises(MissingInputError, match=r"--inst .*nope is not a folder \(it does not exist\)"):
        synth(run, inp, tmp_path / "out", "--inst", tmp_path / "nope")
    assert not (tmp_path / "out").exists()


@fault(cls="synthesis", case="a --real photo of another size than its label map")
def test_a_real_photo_of_another_size_is_an_error_before_any_work(run, tmp_path):
    inp, real = tmp_path / "in", tmp_path / "real"
    ids(inp / "a.png")
    ids(inp / "b.png")
    photo(real / "a.png")
    photo(real / "b.png", h=32, w=48)
    with pytest.raises(InputError, match=r"(?s)1 --real photo\(s\) differ in size.*b\.png is 48x32 but its "
                                         r"label map .*b\.png is 24x16"):
        synth(run, inp, tmp_path / "out", "--real", real)
    assert not (tmp_path / "out").exists()


@fault(cls="synthesis", case="file names with #, ? and % on the results page")
def test_results_page_links_are_url_encoded(run, tmp_path):
    inp, real = tmp_path / "in", tmp_path / "real"
    names = ["a#1.png", "b?x.png", "c%20d.png", "plain.png"]
    for n in names:
        ids(inp / n)
        photo(real / n)
    out = tmp_path / "out"
    assert synth(run, inp, out, "--real", real) == 0
    page = (out / "index.html").read_text()
    links = re.findall(r'src="([^"]+)"', page)
    assert len(links) == 3 * len(names)
    for link in links:
        assert "#" not in link and "?" not in link       # would cut the URL short
        assert (out / unquote(link)).resolve().is_file(), link
    assert "a%231.png" in page and "b%3Fx.png" in page and "c%2520d.png" in page


@fault(cls="synthesis", case="one map size runs out of memory: its inputs are skipped with the reason and the "
                             "fix, the rest written, exit 0")
def test_a_size_that_runs_out_of_memory_is_skipped_and_the_rest_written(run, tmp_path, capsys, monkeypatch):
    """An 8000x8000 map among small ones (under a memory limit) failed the allocation in the
    generator and stopped the whole job with a traceback, the other maps unwritten."""
    import torch
    from pix2pixhd.synthesis import Synthesizer
    synthesize = Synthesizer.synthesize

    def small_only(self, label, *a, **k):   # the allocator's error for the large maps, as on the CPU
        if label.shape[-1] > 24:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 25600000000 bytes. Error code 12")
        return synthesize(self, label, *a, **k)
    monkeypatch.setattr(Synthesizer, "synthesize", small_only)
    inp = tmp_path / "in"
    ids(inp / "a.png")
    ids(inp / "big.png", h=32, w=48)
    ids(inp / "c.png")
    assert synth(run, inp, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*big\.png: out of memory synthesizing 48x32 maps 4 at a time: rerun with a "
                     r"smaller --batch_size \(a rerun into this --out resumes and does them\), or --scale_width "
                     r"below the map's width into another --out", text), text
    assert sorted(p.name for p in (tmp_path / "out" / "test_img").iterdir()) == ["a.png", "c.png"]
    status = {Path(r["input"]).name: r["status"] for r in manifest(tmp_path / "out")}
    assert status == {"a.png": "ok", "big.png": "skipped", "c.png": "ok"}
    monkeypatch.setattr(Synthesizer, "synthesize", synthesize)   # memory enough now: the rerun does it
    assert synth(run, inp, tmp_path / "out", "--batch_size", 1) == 0
    assert (tmp_path / "out" / "test_img" / "big.png").is_file()


def test_a_tensor_past_32_bit_indexing_is_skipped_as_too_large():
    """CUDA's ReflectionPad2d refuses inputs of 2^31 elements or more (an 8000x8000 map's 36
    one-hot channels): that error is a skip too, not a traceback that stops the job."""
    from pix2pixhd.engine import _too_large
    assert _too_large(RuntimeError("input tensor must fit into 32-bit index math")).startswith("a tensor too large")
    assert _too_large(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "out of memory"
    assert _too_large(RuntimeError("Expected all tensors to be on the same device")) is None


def test_the_too_large_advice_offers_a_smaller_batch_only_where_it_can_help():
    """One 8000x8000 map of 35 labels (36 one-hot channels: 2.3e9 elements) fails CUDA's 32-bit
    indexing at any --batch_size: only --scale_width is offered there, and at batch 1."""
    from types import SimpleNamespace
    from pix2pixhd.engine import _too_large_reason
    cfg = SimpleNamespace(label_nc=35, ngf=64)
    index = "a tensor too large for this device's kernels (2^31 elements or more)"
    assert _too_large_reason(index, 4, 8000, 8000, cfg) == (
        f"{index} synthesizing 8000x8000 maps 4 at a time: rerun with --scale_width below the map's width "
        "into another --out")
    assert "smaller --batch_size" in _too_large_reason(index, 4, 4000, 4000, cfg)   # 1.0e9 a map: the batch
    assert "smaller --batch_size" in _too_large_reason("out of memory", 4, 8000, 8000, cfg)
    assert "smaller --batch_size" not in _too_large_reason("out of memory", 1, 8000, 8000, cfg)


def test_without_a_terminal_the_progress_is_a_line_at_a_time_not_a_bar(run, tmp_path, capsys, monkeypatch):
    """tqdm's bar wrote its carriage-return redraws into nohup/SLURM logs 8 times a second
    (26 KB in 45 s); without a terminal synthesis says a progress line, as training does."""
    from pix2pixhd import engine
    from pix2pixhd.cli import synthesize_main
    monkeypatch.setattr(engine, "PROGRESS_INTERVAL_S", 0.0)   # a line at every update
    inp = tmp_path / "in"
    for n in "abc":
        ids(inp / f"{n}.png")
    assert synthesize_main(["--checkpoint", str(run), "--input", str(inp), "--out", str(tmp_path / "out"),
                            "--device", "cpu", "--workers", "0", "--batch_size", "1"]) == 0
    err = capsys.readouterr().err   # (pytest's capture is no terminal)
    assert "\r" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("progress: synthesize ")]
    assert lines and lines[-1].startswith("progress: synthesize 3/3 (100.0%), ") and "outputs/s, ETA" in lines[-1], err


def test_the_manifest_merge_streams_sorted_runs_and_keeps_each_outputs_last_line(run, tmp_path, monkeypatch):
    """The merge held every line of the job in a dict (gigabytes for millions of outputs); it now
    sorts runs of MERGE_RUN_LINES lines on disk and merges them. With runs of 2 lines, a job
    whose manifest holds a redo (a skipped output done again) merges as with one run: each
    output once, its last line, sorted by name, and no run file left behind."""
    import json
    from pix2pixhd import engine
    inp = tmp_path / "in"
    for n in "abcde":
        ids(inp / f"{n}.png")
    out = tmp_path / "out"
    assert synth(run, inp, out) == 0
    whole = (out / "manifest.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in whole]
    redo = dict(recs[2], status="skipped", reason="an earlier run's")   # c: skipped first, then done
    parts = out / engine.PARTS
    parts.mkdir()
    (out / "manifest.jsonl").write_text("\n".join([json.dumps(redo)] + whole[::-1]) + "\n")
    (parts / "merge0.999.tmp").write_text("stale run of a killed merge\n")
    monkeypatch.setattr(engine, "MERGE_RUN_LINES", 2)
    merges = []
    heap_merge = engine.heapq.merge

    def counting_merge(*runs):   # how many sorted runs the 6 lines were spread over
        merges.append(len(runs))
        return heap_merge(*runs)
    monkeypatch.setattr(engine.heapq, "merge", counting_merge)
    engine.merge_manifest(out, recs[0]["job"])
    assert merges == [3]
    merged = (out / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["output"] for x in merged] == sorted(r["output"] for r in recs)
    assert [json.loads(x) for x in merged] == sorted(recs, key=lambda r: r["output"])   # c's ok line won
    assert not parts.exists()

"""Memory per input of synthesize.py's data engine (pix2pixhd/engine.py), found by a walkthrough:
what the engine holds for the whole run grew by ~0.5 KB of Python objects per input (four lists
of str per input, the list of (input, samples) to do) and a rerun's scan of the manifest by
~0.65 KB per complete output (a dict of tuples of lists): a million label maps was ~0.5 GB per
rank. Both are stored compactly now (``compact.Strs``, ``_Todo``, ``_Done``: bytes blobs and arrays).

The bounds are deterministic: the bytes of the objects reachable from the job's state
(``sys.getsizeof`` over ``gc.get_referents``), not a process's memory, at N and 4N inputs, so
that what every job holds whatever its size (the checkpoint's palette, the classes) cancels out.
The other tests check that the compact structures answer as the lists and dicts they replace."""
import gc
import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd import engine
from pix2pixhd.compact import Strs
from pix2pixhd.config import TrainConfig
from pix2pixhd.engine import MANIFEST, SynthesisJob, _complete_lines, run_synthesis
from pix2pixhd.synthesis import Synthesizer

pytestmark = pytest.mark.usefixtures("one_thread")

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
         types.MethodType)


def _deep_bytes(*roots) -> int:
    """The bytes of the objects reachable from ``roots`` (classes, modules and functions, which
    every job shares, left out), each counted once."""
    seen, stack, total = set(), list(roots), 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(256).reshape(16, 16) % 5).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class _AtStream(BaseException):
    """Raised where the stream would start (not an Exception: nothing on the way handles it)."""


@pytest.mark.fault(cls="synthesis", case="job state held for the whole run: bytes per input bounded (N vs 4N inputs)")
def test_the_job_state_held_for_the_run_grows_little_per_input(tmp_path, monkeypatch):
    cfg = TrainConfig(label_nc=9, no_instance=True, netG="global", n_downsample_global=2).resolved()
    torch.manual_seed(0)
    synth = Synthesizer(torch.nn.Sequential(torch.nn.Conv2d(9, 3, 1), torch.nn.Tanh()), cfg, "cpu")
    png, held = _png(), {}

    def at_stream(synth_, job, src, layout, mine, *a, **kw):   # what the run holds from here to its end
        held[len(src)] = _deep_bytes(src, mine)
        raise _AtStream
    monkeypatch.setattr(engine, "_stream", at_stream)
    for n in (500, 2000):
        maps = tmp_path / f"maps{n}"
        maps.mkdir()
        for i in range(n):   # Cityscapes names: a path, a name and a stem per input
            (maps / f"frankfurt_000000_{i:06d}_gtFine_labelIds.png").write_bytes(png)
        with pytest.raises(_AtStream):
            run_synthesis(synth, SynthesisJob(out=tmp_path / f"out{n}", input=maps, workers=0, progress=False))
    per_input = (held[2000] - held[500]) / 1500
    print(f"job state: {held[500]} bytes at 500 inputs, {held[2000]} at 2000: {per_input:.0f} bytes per input")
    assert per_input < 150, (f"the job state held for the run grows by {per_input:.0f} bytes per input "
                             f"({held[500]} bytes at 500 inputs, {held[2000]} at 2000)")


def _lines(n: int, digest: str = "d") -> list[dict]:
    """Manifest lines of ``n`` complete outputs, as a job of Cityscapes label maps writes them."""
    return [{"job": digest, "status": "ok", "output": f"test_img/frankfurt_000000_{i:06d}.png", "bytes": 1000 + i,
             "inputs": [[f"frankfurt_000000_{i:06d}_gtFine_labelIds.png", 190, 1733000000000000000 + i]],
             "label": f"test_label/frankfurt_000000_{i:06d}.png", "label_bytes": 190, "sample": 0,
             "seed": 12345 + i, "sha256": "ab" * 32, "checkpoint": "/runs/x/latest.pt",
             "input": f"/data/maps/frankfurt_000000_{i:06d}_gtFine_labelIds.png"} for i in range(n)]


@pytest.mark.fault(cls="synthesis", case="a rerun's scan of the manifest: bytes held per complete output bounded (N vs 4N lines)")
def test_a_reruns_scan_of_the_manifest_holds_little_per_output(tmp_path):
    held = {}
    for n in (500, 2000):
        out = tmp_path / f"out{n}"
        out.mkdir()
        (out / MANIFEST).write_text("".join(json.dumps(rec) + "\n" for rec in _lines(n)))
        done = _complete_lines(out, {"d"})
        assert len(done) == n
        held[n] = _deep_bytes(done)
    per_output = (held[2000] - held[500]) / 1500
    print(f"scan: {held[500]} bytes at 500 outputs, {held[2000]} at 2000: {per_output:.0f} bytes per output")
    assert per_output < 300, (f"a rerun's scan holds {per_output:.0f} bytes per complete output "
                              f"({held[500]} bytes at 500, {held[2000]} at 2000)")


def _reference(lines: list[dict], jobs) -> dict:
    """_complete_lines as the dict it was (the last ok line of an output wins)."""
    done = {}
    for rec in lines:
        if rec.get("job") in jobs and rec.get("status") == "ok":
            partners = tuple((rec[key], rec.get(f"{key}_bytes")) for key in ("label", "inst")
                             if isinstance(rec.get(key), str))
            real = rec.get("real_sha256")
            done[rec["output"]] = (rec.get("bytes", -1), rec.get("inputs", "legacy"), partners,
                                   real if isinstance(real, str) else None)
    return done


@pytest.mark.fault(cls="synthesis", case="compact scan of the manifest: the answers of the dict it replaces (last line wins, pop, len)")
def test_the_compact_scan_answers_as_the_dict_did(tmp_path):
    lines = _lines(6) + [
        {**_lines(3)[1], "bytes": 7, "inst": "test_inst/x.png", "inst_bytes": 9},   # a later line of output 1 wins
        {**_lines(1)[0], "job": "other", "bytes": 1},                                 # another job's: ignored
        {**_lines(5)[4], "status": "skipped"},                                        # not ok: the earlier ok line stays
        {"job": "d", "status": "ok", "output": "test_img/caf\udcc3.png", "bytes": 3.5, "inputs": "x"},   # odd name
        {"job": "d", "status": "ok", "output": None, "bytes": 2},                      # a null output: one key
        {**_lines(4)[2], "real_sha256": "cd" * 32, "bytes": 11},
        {**_lines(4)[2], "inputs": [[None, None, None]]},                              # and again: this one wins
    ]
    (tmp_path / MANIFEST).write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    done, want = _complete_lines(tmp_path, {"d"}), _reference(lines, {"d"})
    assert len(done) == len(want) == 8
    for key, value in want.items():
        assert done.get(key) == value, key
    assert done.get("test_img/nothing.png", "absent") == "absent"
    for key in list(want)[:3] + [None]:
        assert done.pop(key, None) == want.pop(key)
        assert done.pop(key, None) is None and len(done) == len(want)
    assert len(done) == 4 and bool(done)


@pytest.mark.fault(cls="synthesis", case="compact input names and to-do list: the answers of the lists they replace")
def test_the_compact_names_and_todo_answer_as_the_lists_did():
    names = ["a.png", "caf\u00e9.png", "cafe\u0301.png", "x\udcff.png", "", "\udc80 lone.png"]
    strs = Strs(names)   # as the engine stores them (os.fsencode: names as the file system gives them)
    assert list(strs) == names and strs == names and len(strs) == 6 and strs[-1] == names[-1]
    assert strs[1:4] == names[1:4] and engine._NFC(strs)[2] == "caf\u00e9.png"
    import pickle
    assert pickle.loads(pickle.dumps(strs)) == names
    pairs = [(0, [0, 1, 2]), (3, [1]), (4, [0, 1, 2]), (7, [0, 2]), (9, [0, 1, 2])]
    todo = engine._Todo(pairs, 3)
    assert todo == pairs and list(todo) == pairs and len(todo) == 5 and todo.units() == 12
    assert todo[1::2] == pairs[1::2] and todo[0::2] == pairs[0::2] and todo[1::2].units() == 3
    assert list(todo.inputs()) == [0, 3, 4, 7, 9] and len(todo.inputs()) == 5
    assert [todo.ks(i) for i, _ in pairs] == [ks for _, ks in pairs]

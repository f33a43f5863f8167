"""A fifo or a folder where a run's file is expected, and the ONNX backend's onnxruntime errors (a
hostile-input walkthrough). open() of a fifo that no process writes blocks for ever, and SIGTERM did
not end it (Python's handler only sets a flag; the interrupted open() is retried): train_hd.py
--resume with a fifo at latest.pt or config.json, and synthesize.py with a fifo at OUT/manifest.jsonl
or OUT/synthesis.json, hung; a folder there gave a raw IsADirectoryError, or a message suggesting the
--which_epoch that failed. Now such a path is refused before it is opened, in one line naming it.
An ONNX file whose input has fixed N/H/W failed mid-run with onnxruntime's traceback; it is refused
when loaded, and onnxruntime's errors while running become one line (out of memory: the inputs are
skipped, as for the torch backend).

No test can block: every fifo is watched (:func:`_watched`) by a thread that opens it to write
without blocking, which succeeds only while something has it open to read: that records that the
product opened it, and lets that open return (end of file) instead of waiting for ever.
"""
import contextlib
import os
import re
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import (CheckpointError, load_checkpoint, load_run_config, peek_checkpoint,
                                  save_checkpoint)
from pix2pixhd.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@contextlib.contextmanager
def _watched(fifo):
    """Yields a list that gets an entry each time something opens ``fifo`` to read (a writer's
    O_NONBLOCK open succeeds only then; ENXIO otherwise); the writer closes at once, so that reader
    sees end of file and goes on, to fail the test's assertions rather than hang it."""
    opened, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:   # ENXIO: no reader; ENOENT: removed
                stop.wait(0.02)
                continue
            opened.append(True)
            os.close(fd)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield opened
    finally:
        stop.set()
        t.join()


def _special(path, what):
    """Replace ``path`` (if there) with a fifo or a folder."""
    if path.is_file():
        path.unlink()
    os.mkfifo(path) if what == "fifo" else path.mkdir()


@contextlib.contextmanager
def _maybe_watched(path, what):
    if what == "fifo":
        with _watched(path) as opened:
            yield
        assert not opened, f"{path} (a fifo) was opened: an open without a writer blocks for ever"
    else:
        yield


def _save(run, which):
    """A tiny pix2pix run's checkpoint (U-Net, ngf 2, G only) and config.json."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    cfg = TrainConfig(model="pix2pix", label_nc=0, ngf=2, netG_pix2pix="unet_128", norm_impl="ref").resolved()
    torch.manual_seed(0)
    save_checkpoint({"G": build_generator(cfg).state_dict(), "config": cfg.to_dict(), "global_step": 1},
                    run, which, cfg.to_json())


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    _save(run, "latest")
    _save(run, 1)
    return run


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (16, 20)), ("big", (130, 140))):   # the U-Net pads to 128x128, 256x256
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _synth(run, photos, out, *extra):
    from pix2pixhd.cli import synthesize_main
    return synthesize_main(["--checkpoint", str(run), "--input", str(photos), "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0", "--writers", "1", "--no_test_dropout", *extra])


# --- a run folder ---------------------------------------------------------------------------

@pytest.mark.fault(cls="damaged run folder", case="latest.pt is a {what}: --resume refuses it in one line "
                                                  "naming it, before opening it (a fifo blocked for ever)")
@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_resume_refuses_a_latest_pt_that_is_not_a_regular_file(run, what):
    from pix2pixhd.cli import train_main
    latest = run / "latest.pt"
    _special(latest, what)
    with _maybe_watched(latest, what), pytest.raises(CheckpointError) as e:
        train_main(["--checkpoints_dir", str(run.parent), "--name", run.name, "--resume", "--device", "cpu"])
    # the fix is the other checkpoint, never --which_epoch latest, the file that failed
    assert str(e.value) == f"{latest} is not a regular file (a {what}): remove it, or pass --which_epoch 1"


@pytest.mark.fault(cls="damaged run folder", case="a checkpoint that is a {what}: load_checkpoint and "
                                                  "peek_checkpoint refuse it in one line, unopened")
@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_load_and_peek_refuse_a_checkpoint_that_is_not_a_regular_file(run, what):
    epoch = run / "epoch_0001.pt"
    _special(epoch, what)
    with _maybe_watched(epoch, what):
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(epoch))} is not a regular file \(a {what}\): "
                                                  r"remove it, or pass --which_epoch latest$"):
            load_checkpoint(run, 1)
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(epoch))} is not a regular file \(a {what}\): "
                                                  r"remove it$"):
            peek_checkpoint(epoch)


@pytest.mark.fault(cls="damaged run folder", case="config.json is a fifo: not opened; the checkpoint's "
                                                  "config is used, with a note naming it")
def test_a_config_json_fifo_is_not_opened_and_the_checkpoints_config_is_used(run, capsys):
    cj = run / "config.json"
    _special(cj, "fifo")
    with _maybe_watched(cj, "fifo"):
        cfg = load_run_config(run)
    assert cfg.ngf == 2 and cfg.model == "pix2pix"
    assert (f"note: {cj} is unreadable (not a regular file but a fifo: remove it); using the config saved in "
            f"{run / 'latest.pt'}") in capsys.readouterr().err


# --- a synthesis output folder --------------------------------------------------------------

@pytest.mark.fault(cls="synthesis", case="OUT/{name} is a {what}: refused in one line naming it, before any "
                                         "work (a fifo blocked for ever; a folder gave IsADirectoryError)")
@pytest.mark.parametrize("what", ["fifo", "folder"])
@pytest.mark.parametrize("name", ["manifest.jsonl", "synthesis.json"])
def test_synthesis_refuses_a_manifest_or_job_file_that_is_not_a_regular_file(run, photos, tmp_path, name, what):
    out = tmp_path / "out"
    out.mkdir()
    special = out / name
    _special(special, what)
    with _maybe_watched(special, what), pytest.raises(InputError) as e:
        _synth(run, photos, out)
    assert str(e.value) == (f"{special} is not a regular file (a {what}): remove it (synthesize.py writes {name} "
                            "as a file), or pick another --out")
    assert sorted(p.name for p in out.iterdir()) == [name]   # refused before anything was written


# --- the ONNX backend -----------------------------------------------------------------------

def _identity_onnx(path, shape, elem="FLOAT"):
    """An ONNX Identity graph whose input ``x`` has ``shape`` (ints fixed, strings dynamic)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    t = getattr(TensorProto, elem)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", t, shape)],
                              [helper.make_tensor_value_info("y", t, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.fault(cls="synthesis", case="an ONNX generator path that is a {what}: OnnxGenerator refuses it in "
                                         "one line, unopened")
@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_an_onnx_path_that_is_not_a_regular_file_is_refused(tmp_path, what):
    pytest.importorskip("onnxruntime")
    from pix2pixhd.export import OnnxGenerator
    path = tmp_path / "g.onnx"
    _special(path, what)
    with _maybe_watched(path, what), pytest.raises(InputError) as e:
        OnnxGenerator(path, fix="my export")
    assert str(e.value) == (f"ONNX generator {path} is not a regular file (a {what}): remove it, and export one "
                            "there with `my export`")


@pytest.mark.fault(cls="synthesis", case="an ONNX file whose input has fixed N, H and W: refused when loaded "
                                         "(it failed mid-run with onnxruntime's InvalidArgument traceback)")
def test_an_onnx_input_with_fixed_dims_is_refused_before_any_work(run, photos, tmp_path):
    fixed = _identity_onnx(tmp_path / "fixed.onnx", [1, 3, 4, 4])
    with pytest.raises(InputError) as e:
        _synth(run, photos, tmp_path / "out", "--backend", "onnx", "--onnx_path", str(fixed))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"ONNX generator {fixed}: its input 'x' [1, 3, 4, 4] has fixed "
                                              "N 1, H 4, W 4: it takes inputs of that size alone"), msg
    assert msg.endswith(f"--out {fixed}`"), msg   # the export command that writes a dynamic one there
    assert not (tmp_path / "out").exists()


@pytest.mark.fault(cls="synthesis", case="onnxruntime's InvalidArgument while running the graph: one line "
                                         "naming the file and the export command")
def test_onnxruntimes_invalid_argument_at_run_is_one_line(tmp_path):
    from pix2pixhd.export import OnnxGenerator
    half = _identity_onnx(tmp_path / "half.onnx", ["N", 3, "H", "W"], elem="FLOAT16")   # takes fp16 only
    og = OnnxGenerator(half, fix="my export")
    with pytest.raises(InputError) as e:
        og(torch.zeros(2, 3, 8, 8))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"ONNX generator {half} cannot run on input [2, 3, 8, 8] ("), msg
    assert "ONNXRuntimeError" not in msg and msg.endswith("export it again with `my export`"), msg


@pytest.mark.fault(cls="synthesis", case="onnxruntime runs out of memory (BFCArena) on one size: its inputs "
                                         "are skipped with the reason, the others written")
def test_onnxruntime_out_of_memory_skips_that_size_and_writes_the_rest(run, photos, tmp_path, monkeypatch, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail
    from pix2pixhd.export import main as export_main
    assert export_main(["--checkpoint", str(run), "--legacy", "--no_check"]) == 0
    real_run = ort.InferenceSession.run

    def arena_full(self, names, feeds, *a, **k):   # the walkthrough's error, for the large size only
        if next(iter(feeds.values())).shape[-1] == 256:
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:359 onnxruntime::BFCArena::AllocateRawInternal "
                       "Available memory of 0 is smaller than requested bytes of 5242880")
        return real_run(self, names, feeds, *a, **k)
    monkeypatch.setattr(ort.InferenceSession, "run", arena_full)
    out = tmp_path / "out"
    capsys.readouterr()
    _synth(run, photos, out, "--backend", "onnx")
    text = capsys.readouterr().out
    assert re.search(r"skipped .*big\.png: out of memory synthesizing 140x130 maps", text), text
    assert sorted(p.name for p in (out / "test_B").iterdir()) == ["a.png"]


@pytest.mark.fault(cls="synthesis", case="synthesize.py --onnx_path names a {what}: one line saying it is not a "
                                         "regular file (it said the file did not exist)")
@pytest.mark.parametrize("what", ["fifo", "folder"])
def test_synthesize_with_an_onnx_path_that_is_not_a_regular_file_says_so(run, photos, tmp_path, what):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "g.onnx"
    _special(path, what)
    with _maybe_watched(path, what), pytest.raises(InputError) as e:
        _synth(run, photos, tmp_path / "out", "--backend", "onnx", "--onnx_path", str(path))
    assert str(e.value).startswith(f"ONNX generator {path} is not a regular file (a {what}): remove it, and export "
                                   "one there with `"), str(e.value)


@pytest.mark.fault(cls="damaged run folder", case="{name} of a run is a {what}: the run's start refuses it in one "
                                                 "line (a fifo's append waited for a reader for ever)")
@pytest.mark.parametrize("name, what", [("loss_log.txt", "fifo"), ("loss_history.jsonl", "fifo")])
def test_a_run_log_that_is_not_a_regular_file_is_refused_at_the_start(tmp_path, name, what):
    """Run in a child process with a time limit: without the check, the append to a fifo blocks."""
    import subprocess
    import sys
    run = tmp_path / "run"
    run.mkdir()
    _special(run / name, what)
    code = ("import sys; from pathlib import Path; from pix2pixhd.visualizer import Visualizer\n"
            "v = Visualizer(Path(sys.argv[1]), tensorboard=False, html_page=False)\n"
            "try:\n    v.begin(resumed_at_step=0)\nexcept Exception as e:\n    print(type(e).__name__, e); sys.exit(3)\n")
    p = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr[-2000:])
    assert p.stdout.startswith(f"LogWriteError {run / name} is not a regular file (a {what}): remove it"), p.stdout

"""Problems users reported with synthesize.py's data engine (pix2pixhd/engine.py), one test each:

* OUT/classes.json describes the output (the checkpoint's label_nc, marked as synthesis's), and a
  dataset's own classes.json in OUT is kept when compatible, refused otherwise, never overwritten;
* one job at a time per OUT (OUT/synthesis.lock: a held lock is refused naming its pid and host,
  a dead job's is taken over), so a second run cannot delete the first's in-flight files;
* --overwrite leaves only the new job's files, also those a killed run left without a line;
* inputs of the wrong kind are skipped with a reason (photos to a colour-map checkpoint, JPEG id
  maps), and a folder of nothing but such inputs stops early with one error, leaving no OUT;
* skip reasons give synthesis's fixes, name the file once, and hint at id 255 in both modes;
* manifest inputs do not depend on the working directory; SIGTERM stops with one line and status
  75; notes are printed only once the job starts.

Checkpoints are tiny untrained generators (``save_run``); the lock and the signal are made
deterministic by holding the lock from the test and by a generator that signals its own process.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.cli import synthesize_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import ConfigError, InputError
from tests.synthesis_runs import manifest, palette_run, rgb_run, run, synth  # noqa: F401  (fixtures)
from tests.test_synthesis_engine import save_run

pytestmark = pytest.mark.usefixtures("one_thread")


def ids(path: Path, h: int = 16, w: int = 24, top: int = 4, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = (np.arange(h * w).reshape(h, w) % (top + 1)).astype(np.uint8)
    Image.fromarray(a).save(path, format=fmt)
    return path


def photo(path: Path, h: int = 16, w: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def dataroot(run_dir, root, out, *extra):
    return synthesize_main(["--checkpoint", str(run_dir), "--dataroot", str(root), "--out", str(out),
                            "--device", "cpu", "--no_progress", "--workers", "0", *map(str, extra)])


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=1, n_test=3, width=32, height=16, seed=0)
    return root


@pytest.fixture(scope="module")
def streets_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streets_run")
    save_run(folder, no_instance=True)   # label_nc = the streets' LABEL_NC
    return folder


def colour_map(path: Path, h: int = 16, w: int = 24) -> Path:
    from pix2pixhd.data.layouts import FACADES_PALETTE
    pal = np.array(FACADES_PALETTE, dtype=np.uint8)
    a = pal[(np.arange(h * w).reshape(h, w) // 7) % 12]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


# ---- 1. classes.json ---------------------------------------------------------------------------------
def test_classes_json_describes_the_output_not_the_input_dataset(streets, streets_run, tmp_path):
    """It was a verbatim copy of the input's (written_by synthetic_streets, n_test, seed, complete)."""
    out = tmp_path / "out"
    assert synth(streets_run, streets / "test_label", out) == 0
    meta = json.loads((out / "classes.json").read_text())
    src = json.loads((streets / "classes.json").read_text())
    assert meta["label_nc"] == LABEL_NC and meta["written_by"] == "synthesize.py"
    assert meta["classes"] == src["classes"]                       # the class names agree: kept
    assert not {"n_test", "n_train", "seed", "complete", "width", "height"} & set(meta)


def test_an_unrelated_classes_json_does_not_describe_the_output(run, tmp_path, capsys):
    """A parent's {"label_nc": 35} with a 5-class checkpoint gave an OUT training refused."""
    from pix2pixhd.data.__main__ import main as data_main
    ids(tmp_path / "data" / "maps" / "a.png")
    (tmp_path / "data" / "classes.json").write_text('{"label_nc": 35}')
    out = tmp_path / "out"
    assert synth(run, tmp_path / "data" / "maps", out) == 0
    meta = json.loads((out / "classes.json").read_text())
    assert meta == {"label_nc": 5, "written_by": "synthesize.py"}
    assert "describes label_nc 35, not this checkpoint's 5 classes" in capsys.readouterr().err
    assert data_main(["scan", str(out), "--label_nc", "5"]) == 0


def test_a_datasets_own_classes_json_in_out_is_never_overwritten(run, tmp_path):
    """Synthesizing into a dataset root with only train_* overwrote its classes.json."""
    ids(tmp_path / "maps" / "a.png")
    out = tmp_path / "ds"
    ids(out / "train_label" / "t.png")
    theirs = '{"label_nc": 35, "name": "theirs"}'
    (out / "classes.json").write_text(theirs)
    with pytest.raises(InputError, match=r"holds .*classes\.json of another dataset \(label_nc 35\), but "
                                         r"this checkpoint writes label ids 0\.\.4"):
        synth(run, tmp_path / "maps", out)
    assert (out / "classes.json").read_text() == theirs and not (out / "test_img").exists()
    compatible = '{"label_nc": 5, "name": "theirs"}'
    (out / "classes.json").write_text(compatible)
    assert synth(run, tmp_path / "maps", out) == 0
    assert (out / "classes.json").read_text() == compatible          # kept as it was
    assert (out / "test_img" / "a.png").is_file()


# ---- 2. the lock on OUT ------------------------------------------------------------------------------
_HOLD_LOCK = r"""
import fcntl, json, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"pid": 4242, "host": "otherhost", "started": "then"}).encode())
print("locked", flush=True)
sys.stdin.read()   # held until the test closes stdin
"""


def test_a_second_job_on_a_locked_out_is_refused_and_deletes_nothing(run, tmp_path):
    """A second run's start-up clean-up deleted the first run's in-flight *.tmp files. The running
    job is a process that holds OUT's lock (locks belong to processes) until the test lets go."""
    ids(tmp_path / "maps" / "a.png")
    out = tmp_path / "out"
    assert synth(run, tmp_path / "maps", out) == 0
    inflight = out / "test_img" / "b.png.4242.tmp"   # a write of the running job
    inflight.write_bytes(b"partial")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out / "synthesis.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=r"being written by another synthesis \(pid 4242 on host "
                                             r"otherhost, started then"):
            synth(run, tmp_path / "maps", out, "--overwrite", "--seed", 3)
        assert inflight.read_bytes() == b"partial"
        assert (out / "test_img" / "a.png").is_file() and (out / "synthesis.lock").is_file()
    finally:
        holder.stdin.close()
        holder.wait()


def test_the_lock_of_a_killed_job_is_taken_over_with_a_note(run, tmp_path, capsys):
    ids(tmp_path / "maps" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()   # its pid is no longer running
    (out / "synthesis.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert synth(run, tmp_path / "maps", out) == 0
    assert re.search(rf"note: .*synthesis\.lock was left by a synthesis \(pid {dead.pid} on .*\) that is no "
                     r"longer running; taking it over", capsys.readouterr().err)
    assert not (out / "synthesis.lock").exists()   # released at the end


# ---- 3. --overwrite -----------------------------------------------------------------------------------
def test_overwrite_removes_what_a_killed_run_left_without_manifest_lines(run, tmp_path, capsys):
    for n in ("a", "b"):
        ids(tmp_path / "maps" / f"{n}.png")
    out = tmp_path / "out"
    assert synth(run, tmp_path / "maps", out) == 0
    # a killed run: a photo renamed into place before its line, a label map without its photo
    (out / "test_img" / "ghost.png").write_bytes((out / "test_img" / "a.png").read_bytes())
    (out / "test_label" / "orphan.png").write_bytes((out / "test_label" / "a.png").read_bytes())
    capsys.readouterr()
    assert synth(run, tmp_path / "maps", out, "--seed", 5, "--overwrite") == 0
    assert sorted(p.name for p in (out / "test_img").iterdir()) == ["a.png", "b.png"]
    assert sorted(p.name for p in (out / "test_label").iterdir()) == ["a.png", "b.png"]
    assert re.search(r"note: --overwrite: removed 6 file\(s\) of the previous synthesis .*everything else "
                     r"in test_label/, test_img/", capsys.readouterr().err)


# ---- 4. inputs of the wrong kind ----------------------------------------------------------------------
def test_photos_given_to_a_colour_map_checkpoint_are_skipped_in_both_modes(palette_run, tmp_path, capsys):
    colour_map(tmp_path / "maps" / "m.png")
    photo(tmp_path / "maps" / "p.png")
    assert synth(palette_run, tmp_path / "maps", tmp_path / "o1") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*p\.png: only \d+% of its pixels are near a colour of this checkpoint's "
                     r"palette .*a photo\?", text), text
    assert sorted(p.name for p in (tmp_path / "o1" / "test_img").iterdir()) == ["m.png"]
    # --dataroot at the default --validate headers: the same check
    root = tmp_path / "root"
    colour_map(root / "test_label" / "m.png")
    photo(root / "test_label" / "p.png")
    assert dataroot(palette_run, root, tmp_path / "o2") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*p\.png: only \d+% of its pixels are near a colour", text), text
    assert sorted(p.name for p in (tmp_path / "o2" / "test_img").iterdir()) == ["m.png"]


def test_jpeg_id_maps_are_skipped_naming_the_file(tmp_path, capsys):
    save_run(tmp_path / "r", label_nc=5)   # with instance maps
    ids(tmp_path / "maps" / "a.png")
    ids(tmp_path / "maps" / "j.jpg")
    ids(tmp_path / "maps" / "k.png")
    ids(tmp_path / "inst" / "a.png")
    ids(tmp_path / "inst" / "j.png")
    ids(tmp_path / "inst" / "k.jpg")
    assert synth(tmp_path / "r", tmp_path / "maps", tmp_path / "out", "--inst", tmp_path / "inst") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped \S*j\.jpg: a lossy JPEG label map: its ids are corrupted by compression; save "
                     r"label maps as PNG", text), text
    assert re.search(r"skipped \S*k\.png: instance map \S*k\.jpg is a lossy JPEG: its ids are corrupted", text)
    assert sorted(p.name for p in (tmp_path / "out" / "test_img").iterdir()) == ["a.png"]


def test_jpeg_photos_still_go_to_a_photo_checkpoint(rgb_run, tmp_path):
    p = photo(tmp_path / "in" / "x.png")
    Image.open(p).save(tmp_path / "in" / "y.jpg")
    assert synth(rgb_run, tmp_path / "in", tmp_path / "out") == 0
    assert sorted(q.name for q in (tmp_path / "out" / "test_B").iterdir()) == ["x.png", "y.png"]


# ---- 5. a folder of the wrong kind stops early ---------------------------------------------------------
def test_a_folder_of_the_wrong_kind_stops_with_one_error_and_leaves_no_out(run, tmp_path, capsys):
    for i in range(25):
        photo(tmp_path / "photos" / f"{i:02d}.png", seed=i)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"the first 20 inputs of --input .*photos cannot be synthesized by "
                                         r"this checkpoint, for one reason .*a RGB image \(3 channels\).*it "
                                         r"takes label maps of class ids.*0\.\.4.*removed again"):
        synth(run, tmp_path / "photos", out)
    assert "skipped" not in capsys.readouterr().out
    assert not out.exists()


# ---- 6. skip reasons in synthesis's words -------------------------------------------------------------
def test_dataroot_skip_reasons_name_synthesis_fixes_and_the_file_once(run, tmp_path, capsys):
    root = tmp_path / "root"
    ids(root / "test_label" / "a.png")
    ids(root / "test_label" / "big.png", top=7)                     # ids >= label_nc 5
    photo(root / "test_label" / "rgb.png")                          # an RGB label map
    assert dataroot(run, root, tmp_path / "out", "--validate", "off") == 0
    text = capsys.readouterr().out
    assert "pass --label_nc" not in text and "pass --palette" not in text and "training with" not in text
    assert re.search(r"skipped \S*big\.png: label id 7 >= label_nc=5 of the checkpoint; remap the ids to 0\.\.4",
                     text), text
    line = next(s for s in text.splitlines() if "rgb.png" in s)
    assert line.count("rgb.png") == 1 and "use a checkpoint trained with --palette" in line, line


def test_id_255_gets_the_void_hint_through_input_too(run, tmp_path, capsys):
    a = np.zeros((16, 24), np.uint8)
    a[0, 0] = 255
    (tmp_path / "maps").mkdir()
    Image.fromarray(a).save(tmp_path / "maps" / "v.png")
    ids(tmp_path / "maps" / "ok.png")
    assert synth(run, tmp_path / "maps", tmp_path / "out") == 0
    assert re.search(r"skipped \S*v\.png: label id 255 >= .*255 is usually an 'ignore' \(void\) id",
                     capsys.readouterr().out)


# ---- 9. manifest inputs --------------------------------------------------------------------------------
def test_manifest_inputs_do_not_depend_on_the_working_directory(run, tmp_path, monkeypatch):
    for n in "abcd":
        ids(tmp_path / "rm_in" / f"{n}.png")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert synth(run, "rm_in", out, "--how_many", 2) == 0
    monkeypatch.chdir("/")
    assert synth(run, tmp_path / "rm_in", out) == 0
    root = (tmp_path / "rm_in").resolve()
    assert sorted(r["input"] for r in manifest(out)) == [str(root / f"{n}.png") for n in "abcd"]


# ---- 10. SIGTERM ---------------------------------------------------------------------------------------
class _Unhandled(Exception):
    pass


def _stopped_with_75(call) -> None:
    """``call()`` (a run that signals itself SIGTERM) ends with SystemExit(75), while the caller's
    SIGTERM handler is one that fails the test if called (what reaches the caller when the engine
    has no handler of its own), and that handler is back afterwards."""
    def unhandled(signum, frame):
        raise _Unhandled("SIGTERM reached the caller: the run did not handle it")
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(SystemExit) as e:
            call()
        assert e.value.code == 75 and signal.getsignal(signal.SIGTERM) is unhandled   # restored
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_stops_a_single_process_run_with_one_line_and_status_75(run, tmp_path, capsys):
    from pix2pixhd.engine import SynthesisJob, run_synthesis
    from pix2pixhd.synthesis import Synthesizer, load_generator
    for n in "abcdef":
        ids(tmp_path / "maps" / f"{n}.png")
    g, cfg = load_generator(run)
    calls = []

    def signalling(x):   # the first batch's forward signals this process, as `kill PID` would
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return g(x)

    job = SynthesisJob(out=tmp_path / "out", input=tmp_path / "maps", batch_size=2, workers=0, progress=False)
    _stopped_with_75(lambda: run_synthesis(Synthesizer(signalling, cfg), job))
    assert re.search(r"^stopped by SIGTERM after 2 image\(s\); rerun the same command to resume",
                     capsys.readouterr().err, re.M)
    out = tmp_path / "out"
    assert not (out / "synthesis.lock").exists()
    # the stop leaves the manifest parts unmerged (a merge's time grows with the job, a grace
    # period after SIGTERM does not); the run that completes the job merges them
    assert not (out / "manifest.jsonl").exists()
    parts = [json.loads(ln) for p in sorted((out / "manifest.parts").glob("rank*.jsonl"))
             for ln in p.read_text().splitlines()]
    assert len(parts) == 2 and all(r["status"] == "ok" for r in parts)
    rep = run_synthesis(Synthesizer(g, cfg), job)
    assert rep.written == 4 and rep.already_done == 2
    assert len(manifest(out)) == 6 and not (out / "manifest.parts").exists()


@pytest.mark.fault(cls="synthesis",
                   case="SIGTERM while a single-process job is prepared (inputs listed, the folder checked): "
                        "it stops before any output with one line and status 75, and the rerun completes it")
def test_sigterm_while_the_job_is_prepared_stops_it_before_any_output(run, tmp_path, capsys, monkeypatch):
    """The preparation (listing inputs, reading the manifest, --overwrite's removals) can take
    minutes for a large job; a SIGTERM then ended the process with status 143 and no line, as
    run_synthesis's handler came only with the stream."""
    from pix2pixhd import engine
    from pix2pixhd.engine import SynthesisJob, run_synthesis
    from pix2pixhd.synthesis import Synthesizer, load_generator
    for n in "abcd":
        ids(tmp_path / "maps" / f"{n}.png")
    g, cfg = load_generator(run)
    check = engine._check_out_folder

    def signalled(*args, **kw):   # as `kill PID` while the job's folder is checked
        os.kill(os.getpid(), signal.SIGTERM)
        return check(*args, **kw)

    job = SynthesisJob(out=tmp_path / "out", input=tmp_path / "maps", batch_size=2, workers=0, progress=False)
    monkeypatch.setattr(engine, "_check_out_folder", signalled)
    _stopped_with_75(lambda: run_synthesis(Synthesizer(g, cfg), job))
    assert re.search(r"^stopped by SIGTERM after 0 image\(s\); rerun the same command to resume",
                     capsys.readouterr().err, re.M)
    out = tmp_path / "out"
    assert not list((out / "test_img").glob("*.png"))
    assert json.loads((out / "synthesis.json").read_text())["complete"] is False
    monkeypatch.setattr(engine, "_check_out_folder", check)
    rep = run_synthesis(Synthesizer(g, cfg), job)
    assert rep.written == 4 and len(manifest(out)) == 4


def test_a_sigterm_during_the_final_merge_completes_the_job_and_reaches_the_callers_handler(
        run, tmp_path, capsys, monkeypatch):
    """Once the last output is in, a SIGTERM (during the manifest merge) lets the job complete;
    it is then passed on to the handler the caller had, which would otherwise never hear of it
    (a script running several jobs would go on to the next one until SIGKILL)."""
    from pix2pixhd import engine
    from pix2pixhd.engine import SynthesisJob, run_synthesis
    from pix2pixhd.synthesis import Synthesizer, load_generator
    for n in "abc":
        ids(tmp_path / "maps" / f"{n}.png")
    g, cfg = load_generator(run)
    merge, heard = engine.merge_manifest, []

    def signalled(*args, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return merge(*args, **kw)
    monkeypatch.setattr(engine, "merge_manifest", signalled)
    job = SynthesisJob(out=tmp_path / "out", input=tmp_path / "maps", batch_size=2, workers=0, progress=False)
    before = signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
    try:
        rep = run_synthesis(Synthesizer(g, cfg), job)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert rep.written == 3 and heard == [signal.SIGTERM]
    assert json.loads((tmp_path / "out" / "synthesis.json").read_text())["complete"] is True
    assert len(manifest(tmp_path / "out")) == 3


# ---- 11. notes only once the job starts ----------------------------------------------------------------
def test_no_notes_before_a_refusal(run, tmp_path, capsys):
    maps = tmp_path / "maps"
    ids(maps / "a.png", h=8, w=160)            # far wider than the run was trained on: a note
    (maps / "readme.txt").write_text("x")     # not an image: a note
    with pytest.raises(ConfigError, match="would write into --input"):
        synth(run, maps, maps)
    assert "note:" not in capsys.readouterr().err


def test_the_missing_inst_note_comes_only_once_the_job_starts(tmp_path, capsys):
    inst_run = tmp_path / "inst_run"
    save_run(inst_run, label_nc=5, no_instance=False)   # reads instance boundaries
    maps = tmp_path / "maps"
    ids(maps / "a.png")
    with pytest.raises(ConfigError, match="would write into --input"):
        synth(inst_run, maps, maps)
    said = capsys.readouterr()
    assert "no --inst folder" not in said.out + said.err   # it was printed before this refusal
    assert synth(inst_run, maps, tmp_path / "out") == 0
    assert "note: no --inst folder: instance boundaries are taken from the label map" in capsys.readouterr().err


def test_every_training_fix_in_a_data_message_is_worded_for_synthesis():
    """The data module's messages name training's fixes; synthesis swaps in its own from the same
    table (data.dataset.SYNTHESIS_FIXES), so a message reworded in one place cannot slip through
    untranslated: each training phrase, as the data module writes it, comes out as synthesis's."""
    from pix2pixhd.data.dataset import SYNTHESIS_FIXES, _FIND_ALL, _fix, _id_fix
    from pix2pixhd.engine import _synthesis_wording
    written = {"find_all": _FIND_ALL.format(root="DATA"), "palette_hint": _fix("palette_hint"),
               "palette_check": _fix("palette_check"), "aligned_palette": _fix("aligned_palette"),
               "widen_label_nc": _id_fix(12, 9), "add_class": _fix("add_class", n=13),
               "void_label_nc": _id_fix(255, 9), "classes_label_nc": _fix("classes_label_nc", given=5, n=9)}
    assert set(written) == set(SYNTHESIS_FIXES)
    for key, text in written.items():
        train, synth = SYNTHESIS_FIXES[key]
        out = _synthesis_wording(f"x.png: problem; {text}. end")
        assert re.split(r"\{\w+\}", train)[0] not in out and synth in out and out.endswith(". end"), (key, out)
        assert "pass --label_nc" not in out, (key, out)
    assert "--palette (palette=)" not in _synthesis_wording(_fix("palette_hint"))

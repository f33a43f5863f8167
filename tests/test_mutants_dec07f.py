"""Tests that kill mutants which survived mutation testing of the Dec 7 changes (a complete job's
rerun marked incomplete, the ranks' all-reduced stop, a no-op rerun over damaged manifest lines,
the bounded skip lines; --keep_epoch_checkpoints' range and its exact epoch names; the missing
encoder's messages; MPO frames, unreadable bytes, EXIF notes of paired partners, a palette
dataset's classes.json, the dry run under --validate off; the training page's CycleGAN line and
its row cache). Each says which mutant it kills."""
import io
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from pix2pixhd import engine
from pix2pixhd.data.dataset import incomplete_synthesis
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.errors import run as run_main
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_engine_rank_scan import SLOW_WRITES
from tests.test_engine_rerun_scale import _complete, _maps, sigterm_in
from tests.test_keep_epoch_checkpoints import streets  # noqa: F401  (a fixture)

fault = pytest.mark.fault
pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


# --- 1. engine.py: a complete job's rerun that finds work is marked incomplete (`marked = True`) ----

@fault(cls="synthesis", case="a complete job's rerun that finds work (an output lost), stopped by SIGTERM before "
                             "it writes: status 75, synthesis.json says incomplete")
def test_a_complete_jobs_rerun_with_work_stopped_by_sigterm_stays_incomplete(run, tmp_path, monkeypatch):
    """The rerun marked the job incomplete before any output went; stopped then, the job is not
    complete (one output is missing): the end of the run must not mark it complete again."""
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0 and _complete(out) is True
    (out / "test_img" / "m1.png").unlink()   # work: one output lost
    sigterm_in(monkeypatch, "_stream")   # a scheduler's SIGTERM before the first output is written
    with pytest.raises(SystemExit) as e:
        synth(run, maps, out)
    assert e.value.code == 75
    assert not (out / "test_img" / "m1.png").exists()
    assert _complete(out) is False, "a rerun stopped with an output missing marked the job complete"
    assert incomplete_synthesis(out, "test") is not None, "training would take a job with an output missing"


# --- 2. engine.py: under torchrun one rank's SIGTERM stops every rank (`stopped = n_stopped > 0`) ---

# writes this rank's pid (the test signals one rank alone), then each output a fifth of a second late
ONE_RANK = (r"""
import os, sys
from pathlib import Path
Path(sys.argv[1], f"pid{os.environ['RANK']}").write_text(str(os.getpid()))
""" + SLOW_WRITES + "from pix2pixhd.launch import synthesize\nsys.exit(synthesize(sys.argv[2:]))\n")


@fault(cls="synthesis", case="SIGTERM to one rank of a torchrun job (not to torchrun): every rank stops with its "
                             "line, the job stays incomplete with its manifest parts")
def test_sigterm_to_one_rank_stops_every_rank_and_the_job_stays_incomplete(run, tmp_path):
    from tests.test_distributed import REPO, torchrun_cmd, torchrun_env
    from tests.test_engine_rank_scan import TIMEOUT
    from tests.test_engine_rank_scan import _maps as rank_maps
    maps, out = rank_maps(tmp_path / "maps", 24), tmp_path / "out"
    script, pids = tmp_path / "one_rank.py", tmp_path / "pids"
    script.write_text(ONE_RANK)
    pids.mkdir()
    cmd = torchrun_cmd(script, str(pids), "--checkpoint", str(run), "--input", str(maps), "--out", str(out),
                       "--device", "cpu", "--no_progress", "--workers", "0", "--writers", "1", "--batch_size", "1")
    log = tmp_path / "torchrun.log"
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=REPO, env=torchrun_env(), stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        part1 = out / "manifest.parts" / "rank00001.jsonl"
        deadline = time.monotonic() + TIMEOUT
        while p.poll() is None and time.monotonic() < deadline:   # rank 1 has written (10 to go)
            if (pids / "pid1").is_file() and part1.is_file() and part1.read_text().count("\n") >= 2:
                break
            time.sleep(0.01)
        assert p.poll() is None, "the job ended before it could be signalled:\n" + log.read_text()[-5000:]
        os.kill(int((pids / "pid1").read_text()), signal.SIGTERM)   # rank 1 alone
        p.wait(timeout=TIMEOUT)
        said = log.read_text()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
    stops = re.findall(r"^stopped by (SIGTERM|another rank's SIGTERM) \(rank (\d) of 2\) after \d+ image\(s\); "
                       r"rerun the same command to resume", said, re.M)
    assert sorted(stops) == [("SIGTERM", "1"), ("another rank's SIGTERM", "0")], \
        f"every rank must stop when one is signalled:\n{said[-6000:]}"
    job = json.loads((out / "synthesis.json").read_text())
    assert job["complete"] is False, job
    assert (out / "manifest.parts").is_dir(), "rank 0 merged a job a rank left"


# --- 3. config.py: --keep_epoch_checkpoints in AT_LEAST ---------------------------------------------

@fault(cls="command-line errors", case="--keep_epoch_checkpoints -1: refused with its range")
def test_a_negative_keep_epoch_checkpoints_is_refused(tmp_path, capsys):
    from pix2pixhd.cli import train_main
    from pix2pixhd.config import TrainConfig
    with pytest.raises(ConfigError) as e:
        TrainConfig(keep_epoch_checkpoints=-1).resolved()
    assert str(e.value).startswith("--keep_epoch_checkpoints -1: must be >= 0"), str(e.value)
    capsys.readouterr()
    assert run_main(train_main, ["--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"),
                                 "--keep_epoch_checkpoints", "-1", "--dry_run"]) == 1
    err = capsys.readouterr().err
    assert "error: --keep_epoch_checkpoints -1: must be >= 0" in err, err


# --- 4. checkpoint.py: epoch_checkpoints reads only epoch_NNNN.pt ------------------------------------

@fault(cls="interrupted run", case="--keep_epoch_checkpoints 1 with epoch_0.pt and epoch_00001.pt in the run "
                                   "folder: they are not the run's epoch files, and stay")
def test_epoch_files_of_other_digit_counts_survive_keep_epoch_checkpoints(tmp_path, streets):
    """epoch_0.pt and epoch_00001.pt are no names checkpoint_path gives (--which_epoch 1 reads
    epoch_0001.pt): another tool's files, which --keep_epoch_checkpoints must not remove."""
    from tests.test_keep_epoch_checkpoints import _pt, _train
    run_dir = tmp_path / "r"
    _train(tmp_path, streets, "--name", "r", "--niter", "3", "--max_steps", "2")   # epoch 1 of 3
    assert _pt(run_dir) == ["epoch_0001.pt", "latest.pt"], _pt(run_dir)
    (run_dir / "epoch_0.pt").write_bytes(b"mine")
    (run_dir / "epoch_00001.pt").write_bytes(b"mine")
    _train(tmp_path, streets, "--name", "r", "--resume", "--keep_epoch_checkpoints", "1")   # epochs 2 and 3
    assert _pt(run_dir) == ["epoch_0.pt", "epoch_00001.pt", "epoch_0003.pt", "latest.pt"], _pt(run_dir)
    assert (run_dir / "epoch_0.pt").read_bytes() == b"mine" == (run_dir / "epoch_00001.pt").read_bytes()


# --- 5. engine.py _nothing_to_merge: `or damaged` ---------------------------------------------------

@fault(cls="synthesis", case="a complete job whose manifest.jsonl has a damaged line: the rerun with nothing to do "
                             "merges it away (a second rerun says nothing of it)")
def test_a_no_op_rerun_drops_a_damaged_manifest_line(run, tmp_path, capsys):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"output": 5, "status": "ok"}\n')   # damaged: a path that is no string (a cut line is ignored)
    capsys.readouterr()
    assert synth(run, maps, out) == 0
    assert "damaged" in capsys.readouterr().err   # said once, and the merge drops the line
    assert synth(run, maps, out) == 0
    err = capsys.readouterr().err
    assert "damaged" not in err, f"the damaged line was kept by a rerun with nothing to do:\n{err}"
    assert len(manifest(out)) == 3 and _complete(out) is True


# --- 6, 7. features.py load_encoder: a run without E ------------------------------------------------

@fault(cls="damaged run folder", case="load_encoder of a --load_features run that loaded no run with an encoder: "
                                      "the message says --load_features and the fix")
def test_a_load_features_run_without_an_encoder_says_load_features(tmp_path):
    from pix2pixhd.features import load_encoder
    from tests.test_synthesis_engine import save_run
    run_dir = tmp_path / "RF"
    save_run(run_dir, instance_feat=True, load_features=True)   # G and config: no E
    with pytest.raises(ConfigError) as e:
        load_encoder(run_dir)
    assert str(e.value).startswith(f"{run_dir}: this run trained on precomputed feature maps (--load_features)"), \
        str(e.value)
    assert "the run whose encoder made the maps" in str(e.value)


@fault(cls="damaged run folder", case="load_encoder given a checkpoint file (not its folder) without E: the "
                                      "message names that file")
def test_a_checkpoint_file_without_an_encoder_is_named_as_given(tmp_path):
    from pix2pixhd.checkpoint import CheckpointError
    from pix2pixhd.features import load_encoder
    from tests.test_synthesis_engine import save_run
    run_dir = tmp_path / "RF"
    save_run(run_dir, instance_feat=True)
    with pytest.raises(CheckpointError) as e:
        load_encoder(run_dir / "latest.pt")
    assert str(e.value).startswith(f"{run_dir / 'latest.pt'} is incomplete: it holds no encoder E"), str(e.value)


# --- 8. dataset.py _frames: an MPO counts one frame ------------------------------------------------

@fault(cls="bad dataset", case="an MPO (a phone's JPEG with a second image): read as one frame, no 'several "
                               "frames' notice")
def test_an_mpo_is_one_frame(tmp_path):
    from pix2pixhd.data.dataset import _frames, _read_as_stored
    path = tmp_path / "phone.jpg"
    first = Image.fromarray(np.zeros((16, 32, 3), np.uint8))
    try:
        first.save(path, "MPO", save_all=True, append_images=[Image.fromarray(np.full((16, 32, 3), 9, np.uint8))])
    except (KeyError, ValueError, OSError) as e:
        pytest.skip(f"this Pillow cannot write an MPO: {e}")
    with Image.open(path) as im:
        if im.format != "MPO" or getattr(im, "n_frames", 1) != 2:
            pytest.skip(f"this Pillow did not write a 2-frame MPO ({im.format})")
        assert _frames(im) == 1
        assert not [n for n in _read_as_stored("A", im, path, "phone.jpg") if n[0] == "several frames"]


# --- 9. dataset.py _read_error: not a path (TypeError) ----------------------------------------------

@fault(cls="synthesis", case="garbage bytes read in memory (the encoded synthesis's real photo): 'cannot read "
                             "this image', not a TypeError")
def test_unreadable_bytes_in_memory_are_cannot_read(tmp_path):
    from pix2pixhd.data.dataset import _read_error
    assert _read_error(io.BytesIO(b"x"), OSError("y")) == " (OSError: y)"
    with pytest.raises(InputError) as e:
        engine._open(io.BytesIO(b"x"))
    assert str(e.value).startswith("cannot read this image ("), str(e.value)


# --- 10. dataset.py _read_as_stored: only domain images get the EXIF note ---------------------------

@fault(cls="bad dataset", case="a paired partner with an EXIF Orientation: its orientation problem only, no "
                               "'read as stored' notice")
def test_a_paired_partners_orientation_gets_no_read_as_stored_notice(tmp_path):
    from pix2pixhd.data.dataset import _read_as_stored
    from tests.test_exif_frames_notes import turned_jpeg
    path = turned_jpeg(tmp_path / "x.jpg", 6)
    with Image.open(path) as im:
        assert [n[0] for n in _read_as_stored("A", im, path, "x.jpg")] == ["EXIF orientation read as stored"]
        for role in ("label", "image", "inst", "ab"):
            assert _read_as_stored(role, im, path, "x.jpg") == [], role


# --- 11. dataset.py classes_problems: a palette dataset's classes.json --------------------------------

@fault(cls="bad dataset", case="a palette (facades) dataset whose classes.json says more classes than "
                               "--label_nc: no label_nc problem, as its start takes it")
def test_a_palette_datasets_classes_json_label_nc_is_no_problem(tmp_path):
    from pix2pixhd.data import create_dataset
    from pix2pixhd.data.dataset import classes_problems
    from tests.test_data_facades import _hand_made_ab
    _hand_made_ab(tmp_path, "png", 0)
    (tmp_path / "classes.json").write_text(json.dumps({"label_nc": 20}))
    opts = dict(label_nc=12, no_instance=True, direction="BtoA", palette="facades", resize_or_crop="none",
                required_multiple=16)
    assert len(create_dataset(tmp_path, "train", validate="full", **opts)) == 1   # what the start does
    classes, problems = classes_problems(create_dataset(tmp_path, "train", validate="off", **opts))
    assert classes.label_nc == 20 and problems == [], problems


# --- 12. cli.py: the dry run reads classes.json only when the run validates -------------------------

@fault(cls="bad dataset", case="--dry_run --validate off with a classes.json of more classes: not refused, as "
                               "the start under --validate off does not read it")
def test_the_dry_run_under_validate_off_does_not_refuse_classes_json(tmp_path, capsys):
    from pix2pixhd.cli import train_main
    from tests.test_error_wording import _city, _train_argv
    root = _city(tmp_path / "d", top=3, classes={"label_nc": 9})
    assert run_main(train_main, _train_argv(tmp_path, root, "--dry_run", "--validate", "off")) == 0, \
        capsys.readouterr().err


# --- 13. engine.py: one _SkipLines for the broken links and the stream ------------------------------

@fault(cls="synthesis", case="broken links and unreadable inputs together: SKIP_LINES skip lines in all, then one "
                             "line")
def test_broken_links_and_unreadable_inputs_share_the_skip_lines(run, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a", "b"):   # usable first: the early stop does not apply
        Image.fromarray((np.arange(16 * 24) % 5).reshape(16, 24).astype(np.uint8)).save(inp / f"{name}.png")
    for i in range(5):
        (inp / f"e{i}.png").write_bytes(b"")
    for i in range(25):
        os.symlink(tmp_path / "gone" / f"{i}.png", inp / f"s{i:02d}.png")
    out = tmp_path / "out"
    capsys.readouterr()
    assert synth(run, inp, out) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("skipped ")]
    further = [line for line in text.splitlines() if line.startswith("skipped: further skipped inputs")]
    assert (len(lines), len(further)) == (engine.SKIP_LINES, 1) == (20, 1), \
        f"{len(lines)} skip lines and {len(further)} 'further' lines printed:\n{text}"
    assert len([r for r in manifest(out) if r["status"] == "skipped"]) == 30


# --- 14, 15. visualizer.py: the page's CycleGAN line and its row cache ------------------------------

def _images(run_dir, names):
    folder = run_dir / "web" / "images"
    folder.mkdir(parents=True)
    for name in names:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / name)


def test_a_page_with_only_real_b_is_cyclegans(tmp_path):
    """A CycleGAN page showing domain B's images alone (a run that saved only those) still says
    which folder is A and which B."""
    from pix2pixhd.visualizer import Visualizer
    _images(tmp_path, ["epoch001_real_B.png"])
    page = Visualizer(tmp_path, tensorboard=False, dataroot=tmp_path / "d", phase="train").write_html().read_text()
    assert f"A: the images of {tmp_path / 'd' / 'trainA'}/" in page, page


def test_an_unchanged_page_rebuilds_no_row(tmp_path, monkeypatch):
    """write_html runs at every display of a long run: the rows of an unchanged web/images are
    taken from the cache, not rebuilt (a caption per image per epoch)."""
    from pix2pixhd.visualizer import Visualizer
    _images(tmp_path, [f"epoch{e:03d}_{k}.png" for e in (1, 2, 3) for k in ("label", "synthesized", "real")])
    vis = Visualizer(tmp_path, tensorboard=False)
    calls = []
    caption = vis.caption
    monkeypatch.setattr(vis, "caption", lambda key: calls.append(key) or caption(key))
    first = vis.write_html().read_text()
    assert len(calls) == 9, calls
    calls.clear()
    assert vis.write_html().read_text() == first
    assert calls == [], f"an unchanged page rebuilt its rows: {len(calls)} captions"

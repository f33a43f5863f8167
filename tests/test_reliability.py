"""Damaged run folders, names that would leave their folder, bad files met mid-epoch (issue 13,
items 3, 4 and 6): each case ends in a working command or one line naming the file and the fix.

One tiny run with a feature encoder (so every entry point has something to read: resume,
synthesis, export, features) is trained once; each test damages its own copy of the folder.
"""
import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from pix2pixhd.checkpoint import CheckpointError, clean_stale_tmp, load_checkpoint, load_run_config
from pix2pixhd.cli import resolve_config, synthesize_main, train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.paths import UnsafeNameError

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0", "--no_progress", "--no_tensorboard",
        "--no_html", "--print_freq", "100", "--display_freq", "1000", "--device", "cpu",
        "--instance_feat", "--nef", "4", "--n_downsample_E", "2", "--n_clusters", "2",
        "--niter", "1", "--niter_decay", "1", "--norm_impl", "ref"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("sklearn")
    from pix2pixhd.features import main as features_main
    root = tmp_path_factory.mktemp("reliability")
    generate(root / "streets", n_train=4, n_test=2, width=64, height=32, seed=0)
    assert train_main(["--dataroot", str(root / "streets"), "--checkpoints_dir", str(root / "ck"),
                       "--name", "run", "--max_steps", "1", *TINY]) == 0   # mid-epoch (2 per epoch)
    assert features_main(["encode", "--checkpoint", str(root / "ck" / "run"), "--device", "cpu"]) == 0
    return root


@pytest.fixture()
def run(trained, tmp_path):
    """A private copy of the trained run folder: tmp_path/ck/run."""
    dst = tmp_path / "ck" / "run"
    shutil.copytree(trained / "ck" / "run", dst)
    return dst


def damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 8)   # not UTF-8, not JSON, not a zip
    else:
        raise ValueError(how)


DAMAGES = ("missing", "truncated", "garbage")


def _noted_once(err: str, run: Path) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("note: ") and "config.json" in ln]
    assert len(lines) == 1, err
    assert str(run / "config.json") in lines[0] and str(run / "latest.pt") in lines[0]


# ---- item 3: config.json is not a single point of failure ---------------------------------------
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json {how}: --resume reads the checkpoint's config")
def test_resume_reads_the_config_from_the_checkpoint(run, trained, how, capsys):
    want = json.loads((run / "config.json").read_text())
    damage(run / "config.json", how)
    assert train_main(["--resume", "--name", "run", "--checkpoints_dir", str(run.parent),
                       "--max_steps", "1"]) == 0
    _noted_once(capsys.readouterr().err, run)
    assert load_checkpoint(run)["global_step"] == 2
    again = json.loads((run / "config.json").read_text())   # the resumed run wrote it back
    assert {k: again[k] for k in ("ngf", "label_nc", "instance_feat", "dataroot")} == \
        {k: want[k] for k in ("ngf", "label_nc", "instance_feat", "dataroot")}


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json {how}: --load_pretrain inherits the checkpoint's architecture")
def test_load_pretrain_inherits_from_the_checkpoint_config(run, how, tmp_path, capsys):
    damage(run / "config.json", how)
    cfg = resolve_config(["--stage", "local", "--load_pretrain", str(run), "--name", "l",
                          "--checkpoints_dir", str(tmp_path / "ck2"), "--dry_run"])
    _noted_once(capsys.readouterr().err, run)
    # the global stage's architecture, not the defaults (label_nc 35, no encoder)
    assert (cfg.label_nc, cfg.instance_feat, cfg.nef, cfg.ngf) == (LABEL_NC, True, 4, 4)


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json {how}: synthesis reads the checkpoint's config")
def test_synthesis_reads_the_config_from_the_checkpoint(run, trained, how, tmp_path, capsys):
    damage(run / "config.json", how)
    out = tmp_path / "out"
    assert synthesize_main(["--checkpoint", str(run), "--input", str(trained / "streets/test_label"),
                            "--inst", str(trained / "streets/test_inst"), "--out", str(out),
                            "--no_progress", "--device", "cpu"]) == 0
    _noted_once(capsys.readouterr().err, run)
    assert len(list((out / "test_img").glob("*.png"))) == 2


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json {how}: ONNX export reads the checkpoint's config")
def test_export_reads_the_config_from_the_checkpoint(run, how, tmp_path, capsys):
    pytest.importorskip("onnx")
    from pix2pixhd.export import main as export_main
    damage(run / "config.json", how)
    assert export_main(["--checkpoint", str(run), "--out", str(tmp_path / "g.onnx"), "--legacy",
                        "--no_check"]) == 0
    _noted_once(capsys.readouterr().err, run)
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "g.onnx")).metadata_props}
    assert json.loads(meta["pix2pixhd.config"])["ngf"] == 8


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json {how}: features encode reads the checkpoint's config")
def test_features_read_the_config_from_the_checkpoint(run, how, capsys):
    from pix2pixhd.features import main as features_main
    damage(run / "config.json", how)
    assert features_main(["encode", "--checkpoint", str(run), "--device", "cpu",
                          "--out", str(run / "again.pt")]) == 0
    _noted_once(capsys.readouterr().err, run)
    assert (run / "again.pt").is_file()


@pytest.mark.parametrize("content", ["[1, 2]", '{"ngf": 8, "an_option_from_the_future": 1}', None],
                         ids=["not-an-object", "unknown-option", "a-folder"])
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json unusable ({id}): the checkpoint's config is used, with a note")
def test_other_unreadable_config_json_falls_back(run, content, capsys):
    (run / "config.json").unlink()
    if content is None:
        (run / "config.json").mkdir()
    else:
        (run / "config.json").write_text(content)
    cfg = load_run_config(run)
    assert cfg == TrainConfig.from_dict(load_checkpoint(run)["config"])
    assert "is unreadable" in capsys.readouterr().err


@pytest.mark.fault(cls="damaged run folder",
                   case="config.json missing: the fallback is said once per file")
def test_the_fallback_is_said_once_per_file(run, capsys):
    (run / "config.json").unlink()
    assert load_run_config(run) == load_run_config(run, checkpoint=load_checkpoint(run))
    _noted_once(capsys.readouterr().err, run)


def _one_line_naming(e: BaseException, *files: Path) -> None:
    msg = str(e)
    assert "\n" not in msg, msg
    for f in files:
        assert str(f) in msg, msg


@pytest.mark.parametrize("how", ("missing", "garbage"))
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json {how} and latest.pt truncated: --resume fails in one line naming "
                        "both")
def test_resume_with_config_and_checkpoint_unusable_fails_in_one_line(run, how):
    damage(run / "config.json", how)
    damage(run / "latest.pt", "truncated")
    with pytest.raises(CheckpointError) as e:
        train_main(["--resume", "--name", "run", "--checkpoints_dir", str(run.parent)])
    _one_line_naming(e.value, run / "config.json", run / "latest.pt")
    assert "--which_epoch" in str(e.value)


@pytest.mark.parametrize("entry", ("synthesis", "export", "features"))
@pytest.mark.fault(cls="damaged run folder",
                   case="config.json garbage and latest.pt truncated: {entry} fails in one line")
def test_other_entry_points_with_both_unusable_fail_in_one_line(run, trained, entry, tmp_path):
    from pix2pixhd.export import main as export_main
    from pix2pixhd.features import main as features_main
    damage(run / "config.json", "garbage")
    damage(run / "latest.pt", "truncated")
    call = {"synthesis": lambda: synthesize_main(["--checkpoint", str(run), "--input",
                                                  str(trained / "streets/test_label"),
                                                  "--out", str(tmp_path / "o"), "--device", "cpu"]),
            "export": lambda: export_main(["--checkpoint", str(run), "--no_check"]),
            "features": lambda: features_main(["encode", "--checkpoint", str(run), "--device", "cpu"])}
    with pytest.raises(CheckpointError) as e:
        call[entry]()
    _one_line_naming(e.value, run / "latest.pt")   # the weights are needed whatever config.json says


@pytest.mark.fault(cls="damaged run folder", case="an empty folder resumed: says it holds no run")
def test_no_run_folder_at_all_says_so(tmp_path):
    (tmp_path / "ck" / "empty").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds neither config.json nor a checkpoint") as e:
        resolve_config(["--resume", "--name", "empty", "--checkpoints_dir", str(tmp_path / "ck")])
    assert "\n" not in str(e.value)


@pytest.mark.fault(cls="damaged run folder",
                   case="config.json missing and --which_epoch 7 absent: names the checkpoints there")
def test_missing_config_and_missing_epoch_names_the_epochs_there(run):
    (run / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"epoch_0007.pt does not exist; pass --which_epoch.*"
                                              r"latest.pt"):
        load_run_config(run, "7")


# ---- item 4: paths stay where the user put them -------------------------------------------------
@pytest.mark.parametrize("name", ["..", "../escaped", "/tmp/abs", "a/b", "a\\b", "", ".", "C:x"])
@pytest.mark.fault(cls="path tricks",
                   case="--name {name!r}: refused in one line suggesting a plain name")
def test_name_that_leaves_checkpoints_dir_is_refused(tmp_path, name):
    ck = tmp_path / "inner" / "ck"
    with pytest.raises(UnsafeNameError, match=r"--name .* single folder name inside") as e:
        resolve_config(["--name", name, "--checkpoints_dir", str(ck), "--dry_run"])
    assert repr(name) in str(e.value) and "use a plain name such as --name" in str(e.value)
    with pytest.raises(UnsafeNameError):
        TrainConfig(name=name, checkpoints_dir=str(ck)).experiment_dir
    assert not (tmp_path / "inner" / "escaped").exists()


@pytest.mark.parametrize("which", ["../../run/latest", "latest.pt", "1.5", "-1", "", "5/../6"])
@pytest.mark.fault(cls="path tricks", case="--which_epoch {which!r}: refused, naming the checkpoints there")
def test_which_epoch_that_is_not_latest_or_a_number_is_refused(run, which):
    with pytest.raises(ValueError, match=r"--which_epoch .*expected 'latest' or an epoch number") as e:
        load_checkpoint(run, which)
    assert repr(which) in str(e.value) and "latest.pt" in str(e.value)   # and what the folder holds


@pytest.mark.fault(cls="path tricks", case="--phase ../outside/train: refused")
def test_phase_that_leaves_dataroot_is_refused(tmp_path):
    from pix2pixhd.data import create_dataset
    generate(tmp_path / "outside", n_train=1, n_test=0, width=32, height=16, seed=0)
    (tmp_path / "root").mkdir()
    # dataroot/../outside/train_label exists: without the check it would be read
    with pytest.raises(UnsafeNameError, match=r"--phase '\.\./outside/train'"):
        create_dataset(tmp_path / "root", "../outside/train", label_nc=LABEL_NC, resize_or_crop="none")


@pytest.mark.fault(cls="path tricks", case="convert_facades --holdout_split ../x: refused")
def test_holdout_split_that_leaves_the_output_folder_is_refused(tmp_path):
    from PIL import Image

    from pix2pixhd.datasets.convert_facades import convert
    (tmp_path / "src" / "train").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 16)).save(tmp_path / "src" / "train" / f"{i}.jpg")
    with pytest.raises(UnsafeNameError, match=r"--holdout_split '\.\./x'"):
        convert(tmp_path / "src", tmp_path / "out", holdout=1, holdout_split="../x")
    assert not (tmp_path / "x_label").exists()


@pytest.mark.fault(cls="interrupted run",
                   case="stale *.tmp files (as killed writes leave them): removed and named at the "
                        "next --resume")
def test_stale_tmp_files_are_removed_at_the_next_start(run, capsys):
    stale = [run / "latest.pt.tmp", run / "config.json.tmp", run / "epoch_0002.pt.tmp",
             run / "web" / "images" / "epoch001_real.png.tmp.png"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    keep = run / "notes.tmpl"
    keep.write_text("mine")
    assert train_main(["--resume", "--name", "run", "--checkpoints_dir", str(run.parent),
                       "--max_steps", "1"]) == 0
    err = capsys.readouterr().err
    for p in stale:
        assert not p.exists() and f"removed {p}" in err
    assert keep.read_text() == "mine" and (run / "latest.pt").is_file()
    assert clean_stale_tmp(run) == []


# ---- item 6: a bad file met mid-epoch is named ----------------------------------------------------
@pytest.mark.fault(cls="bad dataset",
                   case="truncated JPEG met mid-epoch by train_main --validate headers: DatasetError "
                        "names it")
def test_truncated_jpeg_met_mid_epoch_under_validate_headers_is_named(tmp_path):
    generate(tmp_path / "jpg", n_train=4, n_test=0, width=64, height=32, seed=0, img_ext="jpg")
    bad = sorted((tmp_path / "jpg" / "train_img").iterdir())[2]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match=rf"{bad}: cannot read this photo \(OSError: image file is "
                                        r"truncated") as e:
        train_main(["--dataroot", str(tmp_path / "jpg"), "--checkpoints_dir", str(tmp_path / "ck"),
                    "--name", "j", "--validate", "headers", *TINY])
    assert type(e.value).__name__ == "DatasetError"


# ---- review of the distributed/restart paths ------------------------------------------------------
HALF_LINE = '{"epoch": 1, "iter": 2, "step": 2, "G_GAN": 0.7'   # a write cut short: no '}', no newline


def _steps(run: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in (run / "loss_history.jsonl").read_text().splitlines()]


@pytest.mark.fault(cls="interrupted run",
                   case="loss_history.jsonl ends in a half-written line (full disk, node crash): "
                        "--resume drops it with one note and continues")
def test_half_written_history_line_does_not_block_the_resume(run, capsys):
    with open(run / "loss_history.jsonl", "a") as f:
        f.write(HALF_LINE)
    assert train_main(["--resume", "--name", "run", "--checkpoints_dir", str(run.parent),
                       "--max_steps", "1", "--print_freq", "1"]) == 0
    assert _steps(run) == [1, 2]   # the resumed step 2 logged on a clean line
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "loss_history.jsonl" in ln]
    assert len(notes) == 1 and "1 line(s) are not complete JSON records" in notes[0], notes
    assert "not complete JSON records" in (run / "loss_log.txt").read_text()


@pytest.mark.fault(cls="interrupted run",
                   case="loss_history.jsonl with unparseable lines: the HTML page draws the others")
def test_html_page_skips_unparseable_history_lines(tmp_path, capsys):
    from pix2pixhd.visualizer import Visualizer
    vis = Visualizer(tmp_path, tensorboard=False)
    good = [{"epoch": 1, "iter": s, "step": s, "G_GAN": 1.0 / s} for s in (1, 2)]
    (tmp_path / "loss_history.jsonl").write_text(
        json.dumps(good[0]) + "\n[1, 2]\n" + json.dumps(good[1]) + "\n" + HALF_LINE)
    page = vis.write_html().read_text()
    from pix2pixhd.visualizer import loss_curves_svg
    assert loss_curves_svg(good) in page
    vis.write_html()
    assert capsys.readouterr().err.count("2 line(s) are not complete JSON records") == 1   # once


@pytest.mark.fault(cls="run folder in use",
                   case="--auto_resume fresh start over a dead attempt's config.json and history: "
                        "the history starts clean")
def test_fresh_auto_resume_start_forgets_the_dead_attempts_history(run, trained):
    for p in run.glob("*.pt"):   # an attempt that logged steps but died before its first save
        p.unlink()
    dead = _steps(run)
    assert dead == [1]
    assert train_main(["--auto_resume", "--name", "run", "--checkpoints_dir", str(run.parent),
                       "--dataroot", str(trained / "streets"), *TINY,
                       "--max_steps", "2", "--print_freq", "1"]) == 0
    assert load_checkpoint(run)["global_step"] == 2
    assert _steps(run) == [1, 2]   # not [1, 1, 2]


def _with_epochs(run: Path, history_to: int | None = None) -> None:
    """``run`` (latest.pt at step 1) plus epoch_0001.pt (a copy of it) and an unreadable
    epoch_0002.pt; the history extended to step ``history_to``."""
    shutil.copy(run / "latest.pt", run / "epoch_0001.pt")
    (run / "epoch_0002.pt").write_bytes(bytes(range(256)) * 8)
    if history_to:
        with open(run / "loss_history.jsonl", "a") as f:
            f.write(json.dumps({"epoch": 1, "iter": 2, "step": history_to, "G_GAN": 1.0}) + "\n")


@pytest.mark.fault(cls="interrupted run",
                   case="--auto_resume with latest.pt truncated: falls back to the newest epoch_N.pt "
                        "that reads, with a note naming the files and the steps lost")
def test_auto_resume_falls_back_to_the_newest_readable_epoch(run, capsys):
    _with_epochs(run, history_to=5)
    damage(run / "latest.pt", "truncated")
    args = ["--auto_resume", "--name", "run", "--checkpoints_dir", str(run.parent)]
    cfg = resolve_config(args)
    assert cfg.resume and cfg.which_epoch == "1"
    note, = [n for n in cfg.notes() if "--auto_resume" in n]
    for says in (f"{run / 'latest.pt'} cannot be read", f"resuming from {run / 'epoch_0001.pt'}",
                 "step 1)", "epoch_0002.pt (", "cannot be read either", "logged step 5",
                 "4 steps are trained again"):
        assert says in note, (says, note)
    assert "\n" not in note
    assert train_main([*args, "--max_steps", "1"]) == 0
    out = capsys.readouterr().out
    assert f"note: {note}" in out
    assert load_checkpoint(run)["global_step"] == 2   # latest.pt rewritten from epoch 1's state


@pytest.mark.fault(cls="interrupted run",
                   case="--auto_resume with latest.pt and every epoch_N.pt unreadable: one line "
                        "naming them and the fixes")
def test_auto_resume_with_nothing_readable_names_the_files(run):
    _with_epochs(run)
    damage(run / "epoch_0001.pt", "truncated")
    damage(run / "latest.pt", "garbage")
    with pytest.raises(CheckpointError) as e:
        resolve_config(["--auto_resume", "--name", "run", "--checkpoints_dir", str(run.parent)])
    _one_line_naming(e.value, run / "latest.pt")
    assert "epoch_0001.pt" in str(e.value) and "epoch_0002.pt" in str(e.value)
    assert "Restore latest.pt from a copy" in str(e.value) and "--overwrite" in str(e.value)


@pytest.mark.fault(cls="interrupted run",
                   case="plain --resume with latest.pt truncated: refused in one line (no fallback: "
                        "a human decides)")
def test_plain_resume_of_a_truncated_latest_is_refused_not_replaced(run):
    _with_epochs(run)
    damage(run / "latest.pt", "truncated")
    with pytest.raises(CheckpointError) as e:
        train_main(["--resume", "--name", "run", "--checkpoints_dir", str(run.parent), "--max_steps", "1"])
    _one_line_naming(e.value, run / "latest.pt")
    assert "--which_epoch" in str(e.value)


@pytest.mark.fault(cls="run folder in use",
                   case="--auto_resume --which_epoch N over a readable latest.pt: epoch N is used, "
                        "with a note")
def test_auto_resume_honours_an_explicit_which_epoch(run):
    _with_epochs(run)
    cfg = resolve_config(["--auto_resume", "--which_epoch", "1", "--name", "run",
                          "--checkpoints_dir", str(run.parent)])
    assert cfg.resume and cfg.which_epoch == "1"
    assert any("resuming from epoch_0001.pt as given" in n for n in cfg.notes())
    plain = resolve_config(["--auto_resume", "--name", "run", "--checkpoints_dir", str(run.parent)])
    assert plain.resume and plain.which_epoch == "latest" and plain.notes() == []


# ---- a checkpoint write that fails (disk full) ----------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDiskFile:
    """A file whose writes fail with ENOSPC after ``room`` bytes, as a full disk's do."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            _enospc()
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("what", ["checkpoint", "bytes"])
@pytest.mark.fault(cls="interrupted run",
                   case="disk full while writing a {what} file: CheckpointError naming the file and "
                        "ENOSPC, no .tmp left, the previous file intact")
def test_failed_write_names_the_file_and_the_os_error_and_leaves_nothing(tmp_path, monkeypatch, what):
    import builtins

    import torch

    from pix2pixhd import checkpoint
    path = tmp_path / ("latest.pt" if what == "checkpoint" else "config.json")
    if what == "checkpoint":
        checkpoint.atomic_torch_save({"w": torch.arange(4)}, path)
        write = lambda: checkpoint.atomic_torch_save({"w": torch.zeros(100_000)}, path)  # noqa: E731
    else:
        checkpoint.atomic_write_bytes(path, b'{"old": 1}')
        write = lambda: checkpoint.atomic_write_bytes(path, b"x" * 100_000)  # noqa: E731
    before = path.read_bytes()
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, mode="r", *a, **k: _FullDiskFile(
        real_open(f, mode, *a, **k), room=1000) if str(f).endswith(".tmp") else real_open(f, mode, *a, **k))
    with pytest.raises(CheckpointError) as e:
        write()
    monkeypatch.undo()
    _one_line_naming(e.value, path)
    assert "No space left on device" in str(e.value) and "intact" in str(e.value)
    assert "unexpected pos" not in str(e.value)
    assert not list(path.parent.glob(path.name + ".*.tmp")) and not path.with_name(path.name + ".tmp").exists()
    assert path.read_bytes() == before


@pytest.mark.fault(cls="interrupted run",
                   case="file-size limit hit while torch.save writes latest.pt (RLIMIT_FSIZE, a real "
                        "EFBIG): CheckpointError, no .tmp, the previous checkpoint loads")
def test_real_short_write_under_a_file_size_limit(tmp_path):
    import subprocess
    import sys

    import torch
    torch.save({"global_step": 3}, tmp_path / "latest.pt")
    code = ("import resource, signal, sys, torch\n"
            "from pix2pixhd.checkpoint import CheckpointError, atomic_torch_save\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))\n"
            "try:\n"
            f"    atomic_torch_save({{'global_step': 4, 'w': torch.zeros(100_000)}}, {str(tmp_path / 'latest.pt')!r})\n"
            "except CheckpointError as e:\n"
            "    print(e); sys.exit(3)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stdout + p.stderr
    assert f"could not write {tmp_path / 'latest.pt'}" in p.stdout and "File too large" in p.stdout, p.stdout
    assert not list(tmp_path.glob("latest.pt*.tmp"))
    assert torch.load(tmp_path / "latest.pt", weights_only=True) == {"global_step": 3}


def test_atomic_writes_fsync_the_folder_after_the_rename(tmp_path, monkeypatch):
    """The rename is an entry of the folder: without the folder's fsync a power loss can undo it.
    A file system that cannot sync a folder (EINVAL) is skipped, not an error."""
    import stat

    from pix2pixhd import checkpoint
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    checkpoint.atomic_write_bytes(tmp_path / "a.json", b"{}")
    assert synced == [False, True]   # the file, then its folder

    def no_dir_fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", no_dir_fsync)
    checkpoint.atomic_write_bytes(tmp_path / "a.json", b"[]")
    assert (tmp_path / "a.json").read_bytes() == b"[]"

"""Paths of a user walkthrough (Dec 6): a quoted ``~`` in a path option is the home folder (train_hd.py's
--checkpoints_dir and --palette, evaluate's folders, ``data scan DIR``); --overwrite of a run
folder that is a link is refused naming the link, its target and the fix; a --name too long for
its folder (or for the NAME.replaced-TIME --overwrite renames it to) is one line, not OSError.

HOME is monkeypatched; runs are 64x32, ngf 8, one step.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.cli import resolve_config, train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import ConfigError, run
from pix2pixhd.run_folder import check_new_run, lock_run, note_leftovers, replaced_leftovers

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0", "--no_progress", "--no_html",
        "--no_tensorboard", "--device", "cpu", "--niter", "1", "--niter_decay", "0",
        "--norm_impl", "ref", "--max_steps", "1"]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """HOME is tmp/home, holding streets/ (4 images); the working folder is tmp/cwd."""
    h = tmp_path / "home"
    generate(h / "streets", n_train=4, n_test=0, width=64, height=32, seed=0)
    monkeypatch.setenv("HOME", str(h))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return h


def test_a_quoted_tilde_in_checkpoints_dir_is_the_home_folder(home, tmp_path):
    assert train_main(["--dataroot=~/streets", "--checkpoints_dir=~/ck", "--name", "run", *TINY]) == 0
    assert (home / "ck" / "run" / "latest.pt").is_file()
    assert not (tmp_path / "cwd" / "~").exists()   # not ./~/ck/run
    saved = json.loads((home / "ck" / "run" / "config.json").read_text())
    assert saved["checkpoints_dir"] == str(home / "ck") and saved["dataroot"] == str(home / "streets")
    # --palette's JSON file too
    (home / "pal.json").write_text(json.dumps([[0, 0, 0], [255, 255, 255]]))
    cfg = resolve_config(["--dataroot=~/streets", "--checkpoints_dir=~/ck", "--name", "p", "--palette=~/pal.json",
                          *TINY])
    assert cfg.palette == str(home / "pal.json") and cfg.experiment_dir == home / "ck" / "p"
    from pix2pixhd.config import TrainConfig
    assert TrainConfig(checkpoints_dir="~/ck", name="q").experiment_dir == home / "ck" / "q"   # unresolved


def test_evaluate_and_data_scan_read_a_quoted_tilde_as_the_home_folder(home, capsys):
    rng = np.random.default_rng(0)
    for side in ("fake", "real"):
        (home / side).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(home / side / f"{i}.png")
    from pix2pixhd.evaluate import main as evaluate_main
    assert run(evaluate_main, ["--fake=~/fake", "--real=~/real", "--no_fid", "--json=~/m.json"]) == 0
    assert json.loads((home / "m.json").read_text())["n_images"] == 2
    from pix2pixhd.data.__main__ import main as data_main
    assert run(data_main, ["scan", "~/streets", "--label_nc", str(LABEL_NC), "--no_instance"]) == 0
    out = capsys.readouterr()
    assert "[train]" in out.out and "error" not in out.err


@pytest.fixture()
def linked(home, tmp_path):
    """scratch/run, a run of one step, and ck/run, a link to it."""
    assert train_main(["--dataroot", str(home / "streets"), "--checkpoints_dir", str(tmp_path / "scratch"),
                       "--name", "run", *TINY]) == 0
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "run").symlink_to(tmp_path / "scratch" / "run")
    return tmp_path


def test_overwrite_of_a_linked_run_folder_is_refused_naming_the_link_and_its_target(linked, home):
    link, target = linked / "ck" / "run", linked / "scratch" / "run"
    before = sorted(p.name for p in target.iterdir())
    argv = ["--dataroot", str(home / "streets"), "--checkpoints_dir", str(linked / "ck"), "--name", "run",
            "--overwrite", *TINY]
    for extra in ([], ["--dry_run"]):
        with pytest.raises(ConfigError) as e:
            train_main(argv + extra)
        msg = str(e.value)
        assert "\n" not in msg and f"{link}: it is a link to {target}" in msg
        assert f"--checkpoints_dir {target.parent} --name run" in msg
    # nothing moved: the link is still the link, the run still whole on scratch
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == before
    assert sorted(p.name for p in (linked / "ck").iterdir()) == ["run"]
    # the advice works: --overwrite of the folder itself replaces the run there
    assert train_main(["--dataroot", str(home / "streets"), "--checkpoints_dir", str(target.parent),
                       "--name", "run", "--overwrite", *TINY]) == 0
    assert sorted(p.name for p in target.parent.iterdir()) == ["run"] and link.is_symlink()


def test_a_link_left_by_an_earlier_overwrite_is_named_with_its_target_and_never_deleted(tmp_path, capsys):
    (tmp_path / "scratch" / "old").mkdir(parents=True)
    (tmp_path / "scratch" / "old" / "latest.pt").write_bytes(b"x")
    (tmp_path / "ck" / "run").mkdir(parents=True)
    left = tmp_path / "ck" / "run.replaced-20261206-120000"
    left.symlink_to(tmp_path / "scratch" / "old")
    assert replaced_leftovers(tmp_path / "ck" / "run") == []
    assert note_leftovers(tmp_path / "ck" / "run", overwrite=True) == []   # not handed to drop_replaced
    err = capsys.readouterr().err
    assert f"{left} is a link to {tmp_path / 'scratch' / 'old'}" in err
    assert f"rm -r {tmp_path / 'scratch' / 'old'}" in err and "stopped before its first save" not in err
    assert (tmp_path / "scratch" / "old" / "latest.pt").is_file()


def _one_error_line(capsys, argv) -> str:
    assert run(train_main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_a_name_too_long_for_its_folder_or_its_replaced_name_is_one_line(home, tmp_path, capsys):
    base = ["--dataroot", str(home / "streets"), "--checkpoints_dir", str(tmp_path / "ck"), *TINY]
    err = _one_error_line(capsys, base + ["--name", "n" * 300])
    assert "is 300 bytes long" in err and "at most 255 bytes" in err
    # 240 bytes: a folder could hold it, NAME.replaced-TIME could not: a new run is refused up front
    err = _one_error_line(capsys, base + ["--name", "n" * 240])
    assert "is 240 bytes long" in err and f"at most {255 - 28} bytes" in err and "shorter --name" in err
    assert not (tmp_path / "ck").exists()
    # an existing run of such a name (made by an earlier version): --overwrite is refused the same way,
    # the run untouched; --resume is not refused for its name
    run_dir = tmp_path / "ck" / ("n" * 240)
    run_dir.mkdir(parents=True)
    (run_dir / "latest.pt").write_bytes(b"x")
    err = _one_error_line(capsys, base + ["--name", "n" * 240, "--overwrite"])
    assert "is 240 bytes long" in err and sorted(p.name for p in run_dir.iterdir()) == ["latest.pt"]
    cfg = resolve_config(base + ["--name", "n" * 240, "--overwrite"])
    cfg.resume, cfg.overwrite = True, False
    check_new_run(cfg)   # a resume is not refused for the name's length
    # the lock of a folder whose name the file system refuses: ConfigError, not OSError
    with pytest.raises(ConfigError):
        lock_run(tmp_path / ("x" * 300))
    assert os.listdir(tmp_path / "ck") == ["n" * 240]

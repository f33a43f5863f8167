"""The validation stamp: after the dataset passed validation, a run writes ``validation.json`` in
its folder (level, the data options validation depends on, and a hash of the files' relative paths,
sizes, mtimes and ctimes); a resume (or a restart) that finds the same level, options and files skips
validation, which at 100k samples under --validate full took 87 s on each --resume, with one note
saying how to force it (delete the file). Any change validates again: a file touched, another
level, a stamp that cannot be read. Tiny runs (64x32, 4 images, batch 2) through train_hd.py's
entry point; validations counted by the calls to ``validate_dataset``.

Each test carries ``@pytest.mark.fault(cls=..., case=...)``: the fault table in the docs is built
from these markers."""
import json
import os
from pathlib import Path

import pytest

from pix2pixhd.cli import train_main
from pix2pixhd.data import dataset as dsmod
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate

pytestmark = pytest.mark.usefixtures("one_thread")
fault = pytest.mark.fault

TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
        "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4", "--num_D", "1",
        "--n_layers_D", "2", "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0", "--no_progress",
        "--no_tensorboard", "--no_html", "--device", "cpu", "--deterministic", "--niter", "5",
        "--niter_decay", "0", "--validate", "full"]
STAMP = "validation.json"
SKIPPED = "validation (full) skipped"


@pytest.fixture()
def streets(tmp_path):
    root = tmp_path / "streets"
    generate(root, n_train=4, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.fixture()
def validations(monkeypatch):
    """The levels validate_dataset was called with, in order."""
    calls = []
    real = dsmod.validate_dataset

    def counted(ds, *, level="full", **kw):
        calls.append(level)
        return real(ds, level=level, **kw)

    monkeypatch.setattr(dsmod, "validate_dataset", counted)
    return calls


def _train(ck: Path, streets: Path, steps: int, *args: str) -> None:
    own = ["--resume"] if steps > 1 else TINY
    assert train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), "--name", "r",
                       *own, "--max_steps", str(steps), *args]) == 0


@fault(cls="interrupted run", case="--resume on the files and options validation passed (the run folder's "
       "validation.json): not validated again (87 s at 100k samples), one note says so and how to force it; "
       "a file touched since, or another --validate level: validated again")
def test_a_resume_skips_validation_until_a_file_or_the_level_changes(tmp_path, streets, validations, capsys):
    _train(tmp_path, streets, 1)
    assert validations == ["full"] and (tmp_path / "r" / STAMP).is_file()
    stamp = json.loads((tmp_path / "r" / STAMP).read_text())
    assert stamp["level"] == "full" and stamp["config"]["label_nc"] == LABEL_NC
    assert stamp["sizes"] == [[64, 32, 4]]
    capsys.readouterr()
    _train(tmp_path, streets, 2)
    err = capsys.readouterr().err
    assert validations == ["full"], "a resume on unchanged files validated them again"
    assert SKIPPED in err and f"delete {tmp_path / 'r' / STAMP} to validate again" in err, err

    photo = sorted((streets / "train_img").iterdir())[2]   # touched: same bytes, a later mtime
    st = photo.stat()
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _train(tmp_path, streets, 3)
    assert validations == ["full", "full"], "a touched file was not validated again"
    assert SKIPPED not in capsys.readouterr().err
    _train(tmp_path, streets, 4)
    assert validations == ["full", "full"]   # the new stamp covers the touched file

    _train(tmp_path, streets, 5, "--validate", "headers")
    assert validations == ["full", "full", "headers"], "another level was not validated"


@fault(cls="damaged run folder", case="a run folder's validation.json that is damaged (not JSON) or of wrong "
       "types: ignored, the dataset validated (never an error), the stamp written anew")
@pytest.mark.parametrize("damage", ["truncated", "wrong types"])
def test_a_damaged_stamp_validates_again(tmp_path, streets, validations, capsys, damage):
    _train(tmp_path, streets, 1)
    path = tmp_path / "r" / STAMP
    good = path.read_text()
    if damage == "truncated":
        path.write_text(good[:len(good) // 2])
    else:   # everything matches but the sizes, which are not [w, h, count] lists
        edited = {**json.loads(good), "sizes": [["64", 32, "4"]]}
        edited["digest"] = dsmod._stamp_digest(edited)   # its own digest matches: the sizes' checks decide
        path.write_text(json.dumps(edited))
    capsys.readouterr()
    _train(tmp_path, streets, 2)
    err = capsys.readouterr().err
    assert validations == ["full", "full"], f"a {damage} stamp skipped validation"
    assert SKIPPED not in err and "does not match its own digest" not in err, err
    assert json.loads(path.read_text()) == json.loads(good)   # written anew: same files, same sizes

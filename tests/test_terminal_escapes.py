"""Terminal control sequences in file names and in text read from files (an opt.txt's dataroot, a
--name) reached the terminal raw: a corrupt dataset file named ``x\\e[31mRED\\e]0;TITLE\\a\\rZ...``
recoloured the output, set the window title and hid the start of its line behind a carriage
return. They are shown escaped now (errors.printable), and refused where they would be stored
(--name, an imported opt.txt's value). Names of any script (accents, CJK) are left as they are."""
import json
import sys

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.cli import train_main
from pix2pixhd.data.dataset import DatasetError, create_dataset
from pix2pixhd.errors import _error_line, printable, say
from pix2pixhd.errors import run as run_command
from pix2pixhd.import_reference import import_reference_run
from pix2pixhd.import_reference import main as import_main
from pix2pixhd.paths import UnsafeNameError
from tests.synthesis_runs import run, synth  # noqa: F401  (run: a fixture)
from tests.test_import_repo_runs import _pix2pix
from tests.test_reference_import import _reference_run

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

# ESC (colour, then the window title's OSC ended by BEL), CR, and the right-to-left override
HOSTILE = "x\x1b[31mRED\x1b]0;TITLE\x07\rZ\u202egnp"
ESCAPED = "x\\x1b[31mRED\\x1b]0;TITLE\\x07\\x0dZ\\u202egnp"
RAW = ("\x1b", "\x07", "\r", "\u202e")
# what the walkthrough's opt.txt said (a CR would end its line: opt.txt is read as text)
OPT_HOSTILE, OPT_ESCAPED = "rel\x1b[31mRED\x1b]0;TITLE\x07\u202eZ", "rel\\x1b[31mRED\\x1b]0;TITLE\\x07\\u202eZ"


def _clean(text: str) -> None:
    found = [repr(c) for c in RAW if c in text]
    assert not found, f"{found} reached the output: {text!r}"


def _ids(path, top=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.arange(32 * 32) % (top + 1)).reshape(32, 32).astype(np.uint8)).save(path)


def _photo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (10, 20, 30)).save(path)


def _dataset(root, n=2):
    for k in range(n):
        _ids(root / "train_label" / f"s{k}.png")
        _photo(root / "train_img" / f"s{k}.png")
    return root


@pytest.mark.fault(cls="path tricks", case="printable(): control characters, DEL, C1 and bidi controls escaped; "
                                            "accents, CJK, emoji, newline and tab kept")
def test_printable_escapes_what_a_terminal_acts_on_and_keeps_every_script():
    assert printable(HOSTILE) == ESCAPED
    assert printable("\x00\x7f\x9b\u061c\u200e\u200f\u2066\u2069\udcff") == \
        "\\x00\\x7f\\x9b\\u061c\\u200e\\u200f\\u2066\\u2069\\udcff"
    kept = "café/東京/naïve 😀 ünïcödé\n\tnext line"
    assert printable(kept) == kept
    assert printable(printable(HOSTILE)) == ESCAPED   # escaping twice changes nothing more


@pytest.mark.fault(cls="path tricks", case="an error line or a note (say) holding a file name with escape "
                                            "sequences: printed escaped")
def test_error_lines_and_notes_are_printed_escaped(capsys):
    _error_line(f"error: {HOSTILE}.png: cannot read")
    say(f"note: {HOSTILE}.png\nsecond line")
    cap = capsys.readouterr()
    _clean(cap.out + cap.err)
    assert cap.err == f"error: {ESCAPED}.png: cannot read\n"
    assert cap.out == f"note: {ESCAPED}.png\nsecond line\n"


@pytest.mark.fault(cls="path tricks", case="a corrupt dataset file whose name holds escape sequences: the "
                                            "problem listing and the error line show the name escaped")
def test_a_hostile_dataset_file_name_is_listed_escaped(tmp_path, capsys):
    root = _dataset(tmp_path / "data")
    _ids(root / "train_label" / f"{HOSTILE}.png")
    (root / "train_img" / f"{HOSTILE}.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DatasetError) as e:
        create_dataset(root, "train", label_nc=5, no_instance=True, resize_or_crop="none")
    assert f"train_img/{ESCAPED}.png: cannot read" in str(e.value), str(e.value)
    _clean(str(e.value))

    def check(argv):
        create_dataset(root, "train", label_nc=5, no_instance=True, resize_or_crop="none")
    assert run_command(check, []) == 1
    err = capsys.readouterr().err
    _clean(err)
    assert f"train_img/{ESCAPED}.png: cannot read" in err, err


@pytest.mark.fault(cls="path tricks", case="a non-image entry whose name holds escape sequences: the "
                                            "dataset's note lists it escaped")
def test_a_hostile_entry_in_the_notice_listing_is_escaped(tmp_path, capsys):
    root = _dataset(tmp_path / "data")
    (root / "train_img" / f"{HOSTILE}.txt").write_text("not an image")
    create_dataset(root, "train", label_nc=5, no_instance=True, resize_or_crop="none")
    err = capsys.readouterr().err
    _clean(err)
    assert f"{ESCAPED}.txt" in err, err


@pytest.mark.fault(cls="path tricks", case="synthesize --input with an unreadable file whose name holds escape "
                                            "sequences: its 'skipped' line shows the name escaped")
def test_synthesis_skips_a_hostile_name_escaped(run, tmp_path, capsys):
    inp = tmp_path / "in"
    _ids(inp / "a.png")
    (inp / f"{HOSTILE}.png").write_bytes(b"not a png")
    assert synth(run, inp, tmp_path / "out") == 0
    cap = capsys.readouterr()
    _clean(cap.out + cap.err)
    assert f"skipped {inp}/{ESCAPED}.png: cannot read this image" in cap.out, cap.out


@pytest.mark.fault(cls="path tricks", case="--name holding escape sequences: refused in one line, shown "
                                            "escaped, no folder made")
def test_a_name_with_control_characters_is_refused(tmp_path, capsys):
    name = "n\x1b[2J\x1b]0;T\x07\u202eab"
    root = _dataset(tmp_path / "data")   # a dry run that would go through: only the name is wrong
    argv = ["--name", name, "--checkpoints_dir", str(tmp_path / "ck"), "--dataroot", str(root), "--label_nc", "5",
            "--no_instance", "--resize_or_crop", "none", "--no_vgg_loss", "--dry_run", "--device", "cpu"]
    assert run_command(train_main, argv) == 1
    cap = capsys.readouterr()
    _clean(cap.out + cap.err)
    [line] = cap.err.splitlines()
    assert line == ("error: --name n\\x1b[2J\\x1b]0;T\\x07\\u202eab holds control characters (shown escaped) that "
                    "a terminal would act on when the run's folder or config is printed: use a plain name such "
                    "as --name n_2J_0_Tab"), line
    assert not (tmp_path / "ck").exists()
    with pytest.raises(UnsafeNameError):   # the Python API refuses it too
        train_main(argv)


@pytest.mark.fault(cls="path tricks", case="import_reference of an opt.txt whose dataroot holds escape "
                                            "sequences: refused naming the option, escaped; --dataroot imports it")
def test_an_imported_dataroot_with_control_characters_is_refused(tmp_path, capsys):
    src = tmp_path / "nvidia" / "city_tiny"
    _reference_run(src, with_d=False)
    opt = src / "opt.txt"
    opt.write_text(opt.read_text().replace("dataroot: /data/nvidia/cityscapes", f"dataroot: {OPT_HOSTILE}"))
    argv = ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours")]
    assert run_command(import_main, [str(src), *argv]) == 1
    cap = capsys.readouterr()
    _clean(cap.out + cap.err)
    [line] = cap.err.splitlines()
    assert line.startswith(f"error: {opt} says dataroot: {OPT_ESCAPED}, which holds control characters") \
        and line.endswith("pass --dataroot with the value to use to import_reference"), line
    assert not (tmp_path / "ours").exists()
    out = import_reference_run(src, argv + ["--dataroot", str(tmp_path / "data")])   # the fix it names
    assert (out / "config.json").is_file()


@pytest.mark.fault(cls="path tricks", case="import_reference of an opt.txt whose dataroot has accented and CJK "
                                            "letters: imported as written")
def test_an_imported_dataroot_with_letters_of_any_script_is_kept(tmp_path, capsys):
    src = tmp_path / "nvidia" / "city_tiny"
    _reference_run(src, with_d=False)
    opt = src / "opt.txt"
    opt.write_text(opt.read_text().replace("/data/nvidia/cityscapes", "/data/café/東京"))
    out = import_reference_run(src, ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours"), "--dry_run"])
    printed = capsys.readouterr().out
    assert "/data/café/東京" in printed and not out.exists(), printed
    out = import_reference_run(src, ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours")])
    assert json.loads((out / "config.json").read_text())["dataroot"] == "/data/café/東京"


@pytest.mark.fault(cls="path tricks", case="import_reference --model pix2pix of a train_opt.txt whose dataroot "
                                            "holds escape sequences: refused naming the option, escaped")
def test_a_repo_runs_dataroot_with_control_characters_is_refused(tmp_path, capsys):
    src = _pix2pix(tmp_path / "repo" / "facades", dataroot=(OPT_HOSTILE, None))
    argv = [str(src), "--model", "pix2pix", "--name", "f", "--checkpoints_dir", str(tmp_path / "ck")]
    assert run_command(import_main, argv) == 1
    cap = capsys.readouterr()
    _clean(cap.out + cap.err)
    [line] = cap.err.splitlines()
    assert line.startswith(f"error: {src / 'train_opt.txt'} says dataroot: {OPT_ESCAPED}, which holds control "
                           "characters"), line
    assert import_main(argv + ["--dataroot", str(tmp_path / "data")]) == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.fault(cls="path tricks", case="--name with a newline or a tab: refused in one line (it split the "
                                            "start-up listing and could plant a fake 'note:' line)")
@pytest.mark.parametrize("name", ["x\nnote: all good", "a\tb"])
def test_a_name_with_a_newline_or_tab_is_refused_in_one_line(name):
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.paths import UnsafeNameError
    with pytest.raises(UnsafeNameError) as e:
        TrainConfig(name=name).resolved()
    assert "\n" not in str(e.value) and "\t" not in str(e.value), repr(str(e.value))

"""Findings of 6 Dec (walkthrough c) on the command lines: --out_phase/--phase leaving --out, empty
path options, evaluate's segmenter options, non-finite floats, export's --atol, import_reference's
unknown options, synthesize's --writers 0, a --checkpoints_dir or --vgg_path of the wrong kind.
Each case is refused before any work, so nothing is trained or loaded."""
from pathlib import Path

import pytest

from pix2pixhd import evaluate, export, import_reference
from pix2pixhd.cli import resolve_config, synthesize_main, synthesize_parser
from pix2pixhd.errors import ConfigError, MissingInputError
from pix2pixhd.losses import vgg19_file
from pix2pixhd.paths import UnsafeNameError
from pix2pixhd.run_folder import lock_run


def _synth(tmp_path, *extra):
    return synthesize_main(["--checkpoint", str(tmp_path / "ck"), "--input", str(tmp_path / "in"),
                            "--out", str(tmp_path / "o"), *extra], prog="synthesize.py")


@pytest.mark.parametrize("extra, flag", [(["--out_phase", "../x"], "--out_phase"),
                                         (["--out_phase", "/abs/x"], "--out_phase"),
                                         (["--out_phase", ".."], "--out_phase"),
                                         (["--phase", "../y"], "--phase")])
def test_synthesize_split_must_stay_in_out(tmp_path, extra, flag):
    # the fault: {out_phase}_img etc. were made beside --out, or at an absolute path
    with pytest.raises(UnsafeNameError, match=rf"^{flag} .*must be a single folder name inside .*o\b"):
        _synth(tmp_path, *extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--out", "--checkpoint"])
def test_synthesize_refuses_empty_paths(tmp_path, flag, monkeypatch):
    # the fault: --out "" wrote test_img/, manifest.jsonl ... into the working directory
    monkeypatch.chdir(tmp_path)
    argv = {"--checkpoint": "ck", "--input": "in", "--out": "o"} | {flag: ""}
    with pytest.raises(ConfigError, match=rf"^{flag} is empty"):
        synthesize_main([x for kv in argv.items() for x in kv], prog="synthesize.py")
    assert list(tmp_path.iterdir()) == []


def test_writers_help_says_what_0_means():
    action = next(a for a in synthesize_parser("synthesize.py")._actions if "--writers" in a.option_strings)
    assert "0 counts as 1" in action.help


@pytest.mark.parametrize("flag, value", [("--seg_batch", "0"), ("--seg_batch", "-2"), ("--seg_steps", "0"),
                                         ("--seg_steps", "-5"), ("--seg_channels", "-1"),
                                         ("--seg_channels", "0"), ("--seg_width", "0"), ("--seg_width", "7")])
def test_evaluate_refuses_segmenter_options_out_of_range(tmp_path, flag, value):
    # the fault: a nan-loss or untrained segmenter scored silently, or a traceback
    with pytest.raises(ConfigError, match=rf"^{flag} {value}: must be >= "):
        evaluate.main(["--fake", str(tmp_path / "f"), "--real", str(tmp_path / "r"), flag, value])


def test_evaluate_accepts_the_smallest_segmenter_width():
    evaluate.check_seg_options(8, evaluate.SegmenterConfig(steps=1, batch_size=1, width=1))


@pytest.mark.parametrize("flag", ["--fake", "--real"])
def test_evaluate_refuses_empty_folders(tmp_path, flag):
    # the fault: --fake "" read the working directory
    argv = {"--fake": str(tmp_path), "--real": str(tmp_path)} | {flag: ""}
    with pytest.raises(ConfigError, match=rf"^{flag} is empty"):
        evaluate.main([x for kv in argv.items() for x in kv] + ["--no_fid"])


@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--lambda_feat", "nan"),
                                         ("--lambda_L1", "inf"), ("--beta1", "nan")])
def test_train_refuses_non_finite_floats(tmp_path, flag, value):
    # the fault: nan passed `v < lo`, inf passed "> 0"; the run stopped at a non-finite loss
    with pytest.raises(ConfigError, match=rf"^{flag} {value}: must be "):
        resolve_config(["--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path), flag, value])


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_export_checks_atol_first(tmp_path, value):
    # the fault: nan switched the parity check off; -1 ran the whole export, then refused it
    with pytest.raises(ConfigError, match=rf"^--atol {value}: must be a finite number >= 0"):
        export.main(["--checkpoint", str(tmp_path / "missing"), "--atol", value])


def test_export_refuses_empty_checkpoint():
    with pytest.raises(ConfigError, match="^--checkpoint is empty"):
        export.main(["--checkpoint", ""])


def test_import_reference_refuses_unknown_option_first(tmp_path, capsys):
    # the fault: "x/latest_net_G.pth not found" (exit 1) before the mistyped option was named
    with pytest.raises(SystemExit) as e:
        import_reference.main([str(tmp_path / "x"), "--dry"])
    assert e.value.code == 2
    assert "unrecognized arguments: --dry (did you mean --dry_run?)" in capsys.readouterr().err


def test_checkpoints_dir_that_is_a_file(tmp_path):
    # the fault: "could not create the lock ... NotADirectoryError"
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"^--checkpoints_dir .*afile is a file, not a folder"):
        lock_run(tmp_path / "afile" / "run1")
    with pytest.raises(ConfigError, match=r"^the run folder .*afile \(--checkpoints_dir/--name\) is a file"):
        lock_run(tmp_path / "afile")
    assert (tmp_path / "afile").is_file() and [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_vgg_path_that_is_a_folder(tmp_path):
    # the fault: "weights not found at /tmp"
    with pytest.raises(MissingInputError, match=r"^--vgg_path .* is a folder: give the weights file itself"):
        vgg19_file(tmp_path)

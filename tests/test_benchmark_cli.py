"""The benchmark scripts' and scripts/main_job.py's command lines (their help and abbreviations:
tests/test_cli_help.py, with every other parser): benchmarks/baseline.py says it is a module, and a
JSON record's ``command`` names the interpreter that ran it."""
import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_main_job import _main_job

REPO = Path(__file__).resolve().parents[1]


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help" and a.help is not argparse.SUPPRESS]


def test_train_benchmark_refuses_an_abbreviation_of_steps(capsys):
    from benchmarks import train as T
    with pytest.raises(SystemExit):
        T.parse_args(["--ste", "1"])
    assert "unrecognized arguments: --ste" in capsys.readouterr().err


def test_main_job_help_on_the_command_line_lists_every_option_with_its_default():
    out = subprocess.run([sys.executable, "scripts/main_job.py", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    opts = _options(_main_job().parser())
    for a in opts:
        assert a.option_strings[0] in text
    assert text.count("(default:") == sum(a.nargs != 0 for a in opts)   # flags: off unless given
    assert "(default: data/synthetic_streets)" in text and "(default: (30, 6, 4))" in text


def test_baseline_is_a_module_and_says_so_in_one_line():
    out = subprocess.run([sys.executable, "benchmarks/baseline.py", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, out
    assert "is a module, not a script" in out.stdout and "benchmarks/train.py" in out.stdout
    out = subprocess.run([sys.executable, "benchmarks/baseline.py"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith("error: ") and "not a script" in out.stderr


def test_command_names_the_interpreter_that_ran_it(monkeypatch, tmp_path):
    from benchmarks import _cli
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python3.99"))
    cmd = _cli.command_line("benchmarks/train.py", ["--res", "32x32", "--json", "a b.json"])
    assert shlex.split(cmd) == [str(tmp_path / "bin" / "python3.99"), "benchmarks/train.py", "--res", "32x32",
                                "--json", "a b.json"]   # not on PATH: its full path
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "python3.99"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    assert _cli.command_line("benchmarks/train.py", ["--steps", "1"]) == "python3.99 benchmarks/train.py --steps 1"


def test_train_benchmark_json_records_this_interpreter(tmp_path):
    from benchmarks import train as T
    js = tmp_path / "t.json"
    assert T.main(["--stage", "global", "--res", "32x32", "--ngf", "4", "--ndf", "4", "--n_downsample_global", "1",
                   "--n_blocks_global", "1", "--label_nc", "3", "--no_vgg_loss", "--steps", "1", "--warmup", "0",
                   "--phase_steps", "1", "--no_baseline", "--no_reference_widths", "--device", "cpu",
                   "--json", str(js)]) == 0
    cmd = json.loads(js.read_text())["command"]
    # this interpreter: its name (on PATH) or its path, not always "python3"
    assert shlex.split(cmd)[0] in (sys.executable, os.path.basename(sys.executable)), cmd
    assert shlex.split(cmd)[1:3] == ["benchmarks/train.py", "--stage"]


SYNTH = ["--stage", "global", "--res", "64x32", "--ngf", "8", "--n_blocks_global", "1", "--label_nc", "5",
         "--device", "cpu"]
TRAIN = ["--stage", "global", "--res", "32x32", "--ngf", "4", "--ndf", "4", "--n_downsample_global", "2",
         "--label_nc", "5", "--device", "cpu"]
LOADER = ["--res", "64x32", "--n", "4", "--epochs", "1"]
MEMORY = ["--stage", "global", "--precision", "fp32"]
BAD_OPTIONS = [  # (script, good options, a bad value, what its error line starts with)
    ("synthesis", SYNTH, ["--steps", "0"], "--steps 0: expected at least 1"),
    ("synthesis", SYNTH, ["--pipeline", "--n_images", "0"], "--n_images 0: expected at least 1"),
    ("synthesis", SYNTH, ["--warmup", "-1"], "--warmup -1: expected at least 0"),
    ("synthesis", SYNTH, ["--peak_tflops", "-5"], "--peak_tflops -5: expected a peak above 0"),
    ("synthesis", SYNTH, ["--batch", "0"], "--batch 0: expected at least 1"),
    ("synthesis", SYNTH, ["--pipeline", "--workers", "-1"], "--workers -1: expected at least 0"),
    ("synthesis", SYNTH, ["--precision", "fp8"], "--precision 'fp8': expected auto, fp32"),
    ("synthesis", SYNTH, ["--stage", "global,local"], "--res 64x32: the local generator needs sides that are "
                                                      "multiples of 32 and at least 64"),
    ("train", TRAIN, ["--peak_tflops", "-5"], "--peak_tflops -5: expected a peak above 0"),
    ("train", TRAIN, ["--peak_tflops", "0"], "--peak_tflops 0: expected a peak above 0"),
    ("train", TRAIN, ["--stage", "global,local", "--res", "44x20"],   # the global stage alone fits
     "--res 44x20: the local generator needs sides that are multiples of 8 and at least 16"),
    ("train", TRAIN, ["--n_downsample_global", "7", "--res", "256x256", "--reference_widths"],
     "--n_downsample_global 7: the global generator needs sides that are multiples of 128 and at least 256 "
     "(a bottleneck of 2 pixels), and --reference_widths runs it at 256x128"),
    ("loader", LOADER, ["--workers", "0,-1"], "--workers -1: expected at least 0"),
    ("loader", LOADER, ["--epochs", "0"], "--epochs 0: expected at least 1"),
    ("loader", LOADER, ["--n", "0"], "--n 0: expected at least 1"),
    ("loader", LOADER, ["--res", "10x10"], "--res 10x10: expected 16x16 to 4096x4096"),
    ("loader", LOADER, ["--unique", "9"], "--unique 9: expected at most --n 4"),
    ("memory", MEMORY, ["--batch", "0"], "--batch 0: expected at least 1"),
    ("memory", MEMORY, ["--batch", "-2"], "--batch -2: expected at least 1"),
    ("memory", MEMORY, ["--label_nc", "-3"], "--label_nc -3: must be >= 0"),
]


@pytest.mark.parametrize("script, good, bad, error", BAD_OPTIONS,
                         ids=[f"{s} {' '.join(b)}" for s, _, b, _ in BAD_OPTIONS])
def test_benchmark_refuses_a_bad_value_before_any_work(script, good, bad, error, capsys):
    """A bad value is a UserError from parse_args (which main calls first): through errors.run, one
    ``error: --opt V: ...`` line, exit status 1, no usage; the good options alone pass."""
    import importlib

    from pix2pixhd.errors import UserError, run
    M = importlib.import_module(f"benchmarks.{script}")
    M.parse_args(good)
    with pytest.raises(UserError) as e:
        M.parse_args(good + bad)
    assert str(e.value).startswith(error), str(e.value)
    assert run(M.parse_args, good + bad) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {error}") and len(err.splitlines()) == 1, err


def test_benchmarks_write_nothing_for_a_bad_value(tmp_path):
    """No map generated, no stage run or saved: the checks come before main's work."""
    from benchmarks import loader as L
    from benchmarks import synthesis as S
    from benchmarks import train as T
    from pix2pixhd.errors import ConfigError
    with pytest.raises(ConfigError):
        S.main(SYNTH + ["--pipeline", "--n_images", "0", "--data", str(tmp_path / "maps")])
    with pytest.raises(ConfigError):
        L.main(LOADER + ["--unique", "9", "--data", str(tmp_path / "scenes")])
    with pytest.raises(ConfigError):
        T.main(TRAIN + ["--stage", "global,local", "--res", "44x20", "--steps", "1", "--warmup", "0",
                        "--json", str(tmp_path / "b.json")])
    assert list(tmp_path.iterdir()) == []

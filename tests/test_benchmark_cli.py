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
                   "--phase_steps", "1", "--no_baseline", "--no-reference_widths", "--device", "cpu",
                   "--json", str(js)]) == 0
    cmd = json.loads(js.read_text())["command"]
    # this interpreter: its name (on PATH) or its path, not always "python3"
    assert shlex.split(cmd)[0] in (sys.executable, os.path.basename(sys.executable)), cmd
    assert shlex.split(cmd)[1:3] == ["benchmarks/train.py", "--stage"]

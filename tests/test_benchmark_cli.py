"""The benchmark scripts' and scripts/main_job.py's command lines: every option explains itself
and shows its default once (as tests/test_cli_help.py checks for the evaluation CLIs), abbreviated
options are refused (as train_hd.py's are), benchmarks/baseline.py says it is a module, and a JSON
record's ``command`` names the interpreter that ran it."""
import argparse
import importlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = {  # script -> the function that builds its parser
    "train": "build_parser", "synthesis": "build_parser", "kernels": "build_parser",
    "loader": "build_parser", "memory": "build_parser", "optimizer": "build_parser",
    "quality": "build_parser", "cyclegan_quality": "parser"}


def _main_job():
    spec = importlib.util.spec_from_file_location("main_job", REPO / "scripts" / "main_job.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _parser(name):
    if name == "main_job":
        return _main_job().parser()
    return getattr(importlib.import_module(f"benchmarks.{name}"), BENCHMARKS[name])()


SCRIPTS = [*BENCHMARKS, "main_job"]


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help" and a.help is not argparse.SUPPRESS]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_has_a_help_text_and_shows_its_default_once(name):
    parser = _parser(name)
    formatter = parser._get_formatter()
    assert isinstance(formatter, argparse.ArgumentDefaultsHelpFormatter), name
    for a in _options(parser):
        text = (a.help or "").split("(default:")[0].strip()
        assert len(text) >= 8, f"{name} {a.option_strings[0]} has no help text"
        shown = formatter._get_help_string(a)
        want = 0 if a.required else 1
        assert shown.count("(default:") == want, f"{name} {a.option_strings[0]}: {shown!r}"
    text = " ".join(parser.format_help().split())   # renders (a stray % would raise here)
    for a in _options(parser):
        assert a.option_strings[0] in text
    assert ") (default: None)" not in text and "(default: None)" not in text, name


def _unique_prefix(parser, option):
    """The shortest prefix of ``option`` that no other option string starts with (None if none)."""
    others = [s for a in parser._actions for s in a.option_strings if s != option]
    for n in range(3, len(option)):
        if not any(o.startswith(option[:n]) for o in others):
            return option[:n]
    return None


@pytest.mark.parametrize("name", SCRIPTS)
def test_abbreviated_options_are_refused(name):
    parser = _parser(name)
    tried, required = 0, [x for a in _options(parser) if a.required for x in (a.option_strings[0], "x")]
    for a in _options(parser):
        prefix = _unique_prefix(parser, a.option_strings[0])
        if prefix is None or a.required or a.nargs not in (None, 0, "+", "?"):
            continue
        value = [] if a.nargs == 0 else [str(a.choices[0]) if a.choices else "1"]
        _, extras = parser.parse_known_args([*required, prefix, *value])
        # an abbreviation would be read as the option; refused, it is left over
        assert extras[:1] == [prefix], f"{name}: {prefix} was read as {a.option_strings[0]}"
        tried += 1
    assert tried >= 3, name


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
    assert text.count("(default:") == len(opts)
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

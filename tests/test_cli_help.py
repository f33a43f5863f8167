"""Every command line of the project (train_hd.py, synthesize.py, the ``python -m pix2pixhd.*``
tools, benchmarks/ and scripts/) under one policy (``pix2pixhd.argparsing``): every option explains
itself, shows its default once where it is a value (never "(default: None)", "(default: )" or a
flag's "(default: False)"), and abbreviations are refused. A parser made anywhere else in the
project and not listed here fails the first test, so that a new one cannot slip past."""
import argparse
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd.argparsing import HelpFormatter

REPO = Path(__file__).resolve().parents[1]


def _module(name):
    return lambda: importlib.import_module(name)


def _script(path):
    def load():
        spec = importlib.util.spec_from_file_location(Path(path).stem + "_under_test", REPO / path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod   # (dataclasses look their module up)
        spec.loader.exec_module(mod)
        return mod
    return load


# command line -> (file that builds its parser, how to build it)
ENTRY_POINTS = {
    "train_hd.py": ("pix2pixhd/cli.py", lambda: _module("pix2pixhd.cli")().train_parser([])),
    "train_hd.py --model cyclegan": ("pix2pixhd/config.py",
                                     lambda: _module("pix2pixhd.cli")().train_parser(["--model", "cyclegan"])),
    "synthesize.py": ("pix2pixhd/cli.py", lambda: _module("pix2pixhd.cli")().synthesize_parser()),
    "python -m pix2pixhd.evaluate": ("pix2pixhd/evaluate.py", lambda: _module("pix2pixhd.evaluate")().evaluate_parser()),
    "python -m pix2pixhd.features": ("pix2pixhd/features.py", lambda: _module("pix2pixhd.features")().build_parser()),
    "python -m pix2pixhd.export": ("pix2pixhd/export.py", lambda: _module("pix2pixhd.export")().build_parser()),
    "python -m pix2pixhd.import_reference": ("pix2pixhd/import_reference.py",
                                             lambda: _module("pix2pixhd.import_reference")().build_parser()),
    "python -m pix2pixhd.flops": ("pix2pixhd/flops.py", lambda: _module("pix2pixhd.flops")().build_parser()),
    "python -m pix2pixhd.data": ("pix2pixhd/data/__main__.py", lambda: _module("pix2pixhd.data.__main__")().data_parser()),
    "python -m pix2pixhd.datasets.synthetic_streets": (
        "datasets/synthetic_streets.py",
        lambda: _module("pix2pixhd.datasets.synthetic_streets")().synthetic_streets_parser()),
    "python -m pix2pixhd.datasets.convert_facades": (
        "datasets/convert_facades.py", lambda: _module("pix2pixhd.datasets.convert_facades")().build_parser()),
    "python -m pix2pixhd.kernels.aot": ("kernels/aot.py", lambda: _module("pix2pixhd.kernels.aot")().build_parser()),
    **{f"benchmarks/{n}.py": (f"benchmarks/{n}.py", (lambda n=n, f=f: getattr(_module(f"benchmarks.{n}")(), f)()))
       for n, f in (("train", "build_parser"), ("synthesis", "build_parser"), ("kernels", "build_parser"),
                    ("loader", "build_parser"), ("loader_memory", "build_parser"), ("memory", "build_parser"),
                    ("optimizer", "build_parser"),
                    ("quality", "build_parser"), ("ranges", "build_parser"), ("cyclegan_quality", "parser"))},
    **{f"scripts/{n}.py": (f"scripts/{n}.py", (lambda n=n, f=f: getattr(_script(f"scripts/{n}.py")(), f)()))
       for n, f in (("main_job", "parser"), ("ablations", "build_parser"), ("numerics_check", "build_parser"),
                    ("fault_table", "build_parser"), ("elastic_demo", "build_parser"),
                    ("fork_stress", "build_parser"))},
}
POLICY_FILES = {"pix2pixhd/argparsing.py", "benchmarks/_cli.py"}   # the policy itself


def _parsers(parser, name):
    """``parser`` and its sub-commands' parsers, with their names."""
    yield name, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for cmd, sub in a.choices.items():
                yield from _parsers(sub, f"{name} {cmd}")


def _all_parsers():
    for name, (_, build) in ENTRY_POINTS.items():
        yield from _parsers(build(), name)


def _options(parser):
    return [a for a in parser._actions
            if a.option_strings and a.dest != "help" and a.help is not argparse.SUPPRESS]


def test_every_parser_in_the_project_is_listed_here():
    files = [*REPO.glob("*.py"), *(f for d in ("pix2pixhd", "kernels", "datasets", "benchmarks", "scripts")
                                   for f in (REPO / d).rglob("*.py"))]
    made = {f.relative_to(REPO).as_posix() for f in files
            if re.search(r"ArgumentParser\(|make_parser\(", f.read_text())}
    listed = {f for f, _ in ENTRY_POINTS.values()}
    assert made - POLICY_FILES - listed == set(), "parsers not held to the policy by this test"


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_option_explains_itself_and_shows_a_default_once(name):
    for pname, parser in _parsers(ENTRY_POINTS[name][1](), name):
        assert parser.allow_abbrev is False, f"{pname} accepts abbreviated options"
        formatter = parser._get_formatter()
        assert isinstance(formatter, HelpFormatter), f"{pname}: {type(formatter).__name__}"
        for a in _options(parser):
            text = (a.help or "").split("(default:")[0].strip()
            assert len(text) >= 8, f"{pname} {a.option_strings[0]} has no help text"
            shown = formatter._get_help_string(a)
            assert shown.count("default:") <= 1, f"{pname} {a.option_strings[0]}: {shown!r}"
            value = not (a.required or a.nargs == 0 or a.default in (None, "", argparse.SUPPRESS))
            if value and "default:" not in (a.help or ""):   # argparse adds it
                assert shown.endswith("(default: %(default)s)"), f"{pname} {a.option_strings[0]}"
        text = " ".join(parser.format_help().split())   # renders (a stray % would raise here)
        for a in _options(parser):
            assert a.option_strings[0] in text, f"{pname} {a.option_strings[0]} not in its help"
        for noise in ("(default: None)", "(default: )", "(default: False)", "(default: True)"):
            assert noise not in text, f"{pname}: {noise}"
        assert not re.search(r"default: [^)]*\) \(default: ", text), pname


def _unique_prefix(parser, option):
    """The shortest prefix (3 characters or more) of ``option`` no other option starts with."""
    others = [s for a in parser._actions for s in a.option_strings if s != option]
    for n in range(3, len(option)):
        if not any(o.startswith(option[:n]) for o in others):
            return option[:n]
    return None


def test_abbreviated_options_are_refused_everywhere():
    tried = 0
    for pname, parser in _all_parsers():
        required = [x for a in _options(parser) if a.required for x in (a.option_strings[0], "x")]
        positionals = ["x" for a in parser._actions if not a.option_strings and a.nargs is None]
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            continue   # its sub-commands are tried on their own
        for a in _options(parser):
            prefix = _unique_prefix(parser, a.option_strings[0])
            if prefix is None or a.required or a.nargs not in (None, 0, "?"):
                continue
            value = [] if a.nargs == 0 else [str(a.choices[0]) if a.choices else "1"]
            _, extras = parser.parse_known_args([*positionals, *required, prefix, *value])
            assert extras[:1] == [prefix], f"{pname}: {prefix} was read as {a.option_strings[0]}"
            tried += 1
    assert tried >= 100


@pytest.mark.parametrize("module", ["pix2pixhd.evaluate", "pix2pixhd.datasets.synthetic_streets"])
def test_help_on_the_command_line_lists_every_option(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())   # argparse wraps lines
    for a in _options(ENTRY_POINTS[f"python -m {module}"][1]()):
        assert a.option_strings[0] in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_data_scan_options_explain_themselves_and_a_missing_root_is_one_error_line(tmp_path):
    from pix2pixhd.data.__main__ import scan_parser
    parser = scan_parser()
    for a in parser._actions:
        if a.dest != "help":
            assert len(a.help or "") >= 8, f"data scan {a.dest} has no help text"
    out = subprocess.run([sys.executable, "-m", "pix2pixhd.data", "scan", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1
    assert "nowhere is not a folder (it does not exist)" in out.stderr and "synthetic_streets" in out.stderr


def test_synthesize_names_a_mistyped_option_and_shows_each_default_once(capsys):
    # --check was reported as "the following arguments are required: --checkpoint"
    from pix2pixhd.cli import synthesize_main
    with pytest.raises(SystemExit) as e:
        synthesize_main(["--check", "ck", "--input", "in", "--out", "out"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unrecognized arguments: --check (did you mean --checkpoint?)" in err, err
    with pytest.raises(SystemExit):
        synthesize_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: latest)" in text
    assert not re.search(r"\(default: [^)]*\) \(default: ", text) and "(default: )" not in text
    assert "(default: False)" not in text

"""One command-line policy for benchmarks/ and scripts/ as for the main tools (Dec 6, F1): every
parser made through ``pix2pixhd.argparsing`` names the closest option for a misspelt one (only
train_hd.py, synthesize.py and import_reference did); a value refused after parsing is one
``error:`` line, status 1 (they printed argparse's usage, status 2); the dash spellings
(``--no-compile``, ``--cache-dir``...) still parse as the underscore ones, shown nowhere."""
import argparse
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pix2pixhd import argparsing
from pix2pixhd.errors import ConfigError, run
from tests.test_cli_help import ENTRY_POINTS, _options, _parsers

REPO = Path(__file__).resolve().parents[1]


def _made_here():
    """Every parser of the project made by argparsing (make_parser, add_command), with its name."""
    for name, (_, build) in ENTRY_POINTS.items():
        for pname, parser in _parsers(build(), name):
            if isinstance(parser, argparsing.ArgumentParser):
                yield pname, parser


def test_every_parser_names_the_closest_option_for_a_misspelt_one(capsys):
    tried = 0
    for pname, parser in _made_here():
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            continue   # its sub-commands are tried on their own
        for option in [a.option_strings[0] for a in _options(parser) if len(a.option_strings[0]) >= 6][:3]:
            for typed in (option + option[-1], f"{option}{option[-1]}=1"):   # --steps -> --stepss
                with pytest.raises(SystemExit) as e:   # first, before any required option is missed
                    parser.parse_args([typed])
                err = capsys.readouterr().err
                assert e.value.code == 2 and err.startswith("usage: "), (pname, err)
                assert f"unrecognized arguments: {option}{option[-1]} (did you mean {option}?)" in err, (pname, err)
                tried += 1
    assert tried >= 100


def test_a_sub_commands_misspelt_option_is_named_by_that_command(capsys):
    from pix2pixhd.data.__main__ import data_parser
    from pix2pixhd.features import build_parser
    with pytest.raises(SystemExit):
        data_parser().parse_args(["scan", "root", "--label_ncc", "3"])
    err = capsys.readouterr().err
    assert "python -m pix2pixhd.data scan: error: unrecognized arguments: --label_ncc (did you mean --label_nc?)" in err
    with pytest.raises(SystemExit):   # not "the following arguments are required: --checkpoint"
        build_parser().parse_args(["encode", "--check", "run"])
    assert "unrecognized arguments: --check (did you mean --checkpoint?)" in capsys.readouterr().err


def test_the_suggestion_is_an_option_the_typed_name_begins_and_none_is_made_up(capsys):
    """difflib on whole names (dashes included) told `export --check` to use --no_check (which
    turns the parity check off), `train_hd.py --foo` to use --ngf, `synthesize.py --gpu` --input;
    a misspelt sub-command was blamed on the option after it."""
    from pix2pixhd.data.__main__ import data_parser
    from pix2pixhd.export import build_parser as export_parser
    from pix2pixhd.features import build_parser as features_parser
    assert argparsing.closest_option("--check", export_parser()._option_string_actions) == "--checkpoint"
    from pix2pixhd.cli import resolve_config
    for argv, said in ((["--foo"], "unrecognized arguments: --foo\n"), (["--niterr", "3"], "(did you mean --niter?)")):
        with pytest.raises(SystemExit):
            resolve_config(argv)
        assert said in capsys.readouterr().err
    for parser, argv, said in ((features_parser(), ["precomptue", "--checkpoint", "x"], "invalid choice: 'precomptue'"),
                               (data_parser(), ["scna", "streets", "--label_nc", "9"], "invalid choice: 'scna'")):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert said in err and "unrecognized arguments" not in err, err


def test_negative_numbers_values_and_what_follows_double_dash_are_not_options():
    from benchmarks import kernels as K
    from pix2pixhd.data.__main__ import data_parser
    assert K.build_parser().parse_args(["--batch", "-1", "--reps=-2"]).batch == -1
    assert data_parser().parse_args(["scan", "--", "--root"]).dataroot == "--root"
    assert data_parser().parse_args(["scan", "--palette", "scan", "root"]).dataroot == "root"
    assert argparsing.unknown_option(K.build_parser(), ["--res", "-1x2"]) is None


def test_a_parser_not_made_here_keeps_its_check_through_cli(capsys):
    from pix2pixhd.cli import synthesize_main
    with pytest.raises(SystemExit) as e:
        synthesize_main(["--input", "in", "--out", "out", "--checkpont", "ck"])
    assert e.value.code == 2
    assert "unrecognized arguments: --checkpont (did you mean --checkpoint?)" in capsys.readouterr().err


def test_a_benchmark_value_error_is_one_error_line_status_1_without_usage():
    out = subprocess.run([sys.executable, "benchmarks/loader.py", "--epochs", "0"], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert out.returncode == 1 and out.stdout == "", out
    assert out.stderr == "error: --epochs 0: expected at least 1\n", out.stderr


def test_argparses_own_errors_stay_status_2(capsys):
    from benchmarks import loader as L
    with pytest.raises(SystemExit) as e:   # a value of the wrong type
        L.parse_args(["--epochs", "x"])
    assert e.value.code == 2 and "argument --epochs: invalid int value: 'x'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"^--epochs 0: expected at least 1$"):
        L.parse_args(["--epochs", "0"])


SCRIPTS = [f"benchmarks/{n}.py" for n in ("train", "synthesis", "kernels", "loader", "memory", "optimizer",
                                         "quality", "cyclegan_quality")] + \
          [f"scripts/{n}.py" for n in ("ablations", "elastic_demo", "numerics_check", "main_job")]
# (not scripts/fault_table.py: it refuses no values of its own, and errors.run would take a
# --debug meant for pytest, after --, off its command line)


@pytest.mark.parametrize("path", SCRIPTS)
def test_each_script_refuses_values_with_config_error_through_errors_run(path):
    text = (REPO / path).read_text()
    assert "p.error(" not in text and "parser.error(" not in text, path   # argparse's usage, status 2
    main_block = text[text.index('if __name__ == "__main__":'):]
    assert "run(main)" in main_block or "run_command(main)" in main_block, main_block


@pytest.mark.parametrize("path", ["benchmarks/train.py", "benchmarks/synthesis.py", "benchmarks/kernels.py"])
def test_a_check_outputs_refusal_is_one_error_line(path, tmp_path, capsys):
    import importlib
    mod = importlib.import_module(path[:-3].replace("/", "."))
    argv = ["--device", "cpu"] if "kernels" not in path else []
    assert run(mod.parse_args, argv + ["--json", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --json") and "is a folder" in err and len(err.splitlines()) == 1, err


ALIASES = [  # (module, parser builder, dash spelling, underscore spelling, value)
    ("benchmarks.kernels", "build_parser", "--no-compile", "--no_compile", None),
    ("benchmarks.kernels", "build_parser", "--no-backward", "--no_backward", None),
    ("benchmarks.train", "build_parser", "--no-reference_widths", "--no_reference_widths", None),
    ("pix2pixhd.kernels.aot", "build_parser", "--cache-dir", "--cache_dir", "/tmp/aot"),
    ("pix2pixhd.kernels.aot", "build_parser", "--no-cache", "--no_cache", None),
]


@pytest.mark.parametrize("module, build, dash, underscore, value", ALIASES, ids=[a[2] for a in ALIASES])
def test_dash_spellings_still_parse_and_are_not_shown(module, build, dash, underscore, value):
    import importlib
    parser = getattr(importlib.import_module(module), build)()
    given = [] if value is None else [value]
    assert parser.parse_args([dash, *given]) == parser.parse_args([underscore, *given]) != parser.parse_args([])
    if value is not None:
        assert parser.parse_args([f"{dash}={value}"]) == parser.parse_args([underscore, value])
    shown = parser.format_help() + parser.format_usage()
    assert underscore in shown and dash not in shown


def test_the_defaults_of_the_flag_pairs_are_kept():
    from benchmarks import kernels as K
    from benchmarks import train as T
    assert K.build_parser().parse_args([]).backward is True
    assert K.build_parser().parse_args(["--no_backward", "--backward"]).backward is True
    assert T.build_parser().parse_args([]).reference_widths is None
    assert T.build_parser().parse_args(["--reference_widths"]).reference_widths is True


def test_gpu_check_and_the_docs_use_the_underscore_spellings():
    for path in ("scripts/gpu_check.sh", "docs/kernels.md", "docs/benchmarks.md"):
        text = (REPO / path).read_text()
        for dash in ("--no-compile", "--no-cache", "--cache-dir", "--no-reference_widths", "--no-backward"):
            assert dash not in text, (path, dash)


def test_a_script_run_through_errors_run_records_the_path_it_was_run_by(monkeypatch):
    # errors.run hands main sys.argv[1:]: the record still names the file as invoked
    from benchmarks import _cli
    monkeypatch.setattr(sys, "argv", ["/somewhere/benchmarks/train.py", "--steps", "1"])
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__file__="/somewhere/benchmarks/train.py"))
    assert " /somewhere/benchmarks/train.py --steps 1" in _cli.command_line("benchmarks/train.py", ["--steps", "1"])

"""Every option of the evaluation and dataset-maker command lines explains itself and shows its
default (train_hd.py's and synthesize.py's parsers: tests/test_config.py::test_every_option_has_help)."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd.datasets.synthetic_streets import synthetic_streets_parser
from pix2pixhd.evaluate import evaluate_parser

REPO = Path(__file__).resolve().parents[1]
PARSERS = {"pix2pixhd.evaluate": evaluate_parser,
           "pix2pixhd.datasets.synthetic_streets": synthetic_streets_parser}


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("module", list(PARSERS))
def test_every_option_has_a_help_text_and_shows_its_default(module):
    parser = PARSERS[module]()
    formatter = parser._get_formatter()
    assert isinstance(formatter, argparse.ArgumentDefaultsHelpFormatter)
    for a in _options(parser):
        text = (a.help or "").split(" (default:")[0].strip()
        assert len(text) >= 8, f"{module} {a.option_strings[0]} has no help text"
        if a.default is not argparse.SUPPRESS:   # --debug has none to show
            assert "(default: %(default)s)" in formatter._get_help_string(a), a.option_strings[0]


@pytest.mark.parametrize("module", list(PARSERS))
def test_help_on_the_command_line_lists_every_option_with_its_default(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())   # argparse wraps lines
    for a in _options(PARSERS[module]()):
        assert a.option_strings[0] in text
    want = sum(a.default is not argparse.SUPPRESS for a in _options(PARSERS[module]()))
    assert text.count("(default:") == want


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

"""Every option of the evaluation and dataset-maker command lines explains itself and shows its
default (train_hd.py's and synthesize.py's parsers: tests/test_config.py::test_every_option_has_help)."""
import argparse
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

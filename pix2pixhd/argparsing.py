"""One policy for every command line of the project (train_hd.py, synthesize.py, the ``python -m
pix2pixhd.*`` tools, benchmarks/ and scripts/): abbreviated options are refused (``--ng 8`` is an
error, never ``--ngf 8``), and each option's help shows its default once, only where it is a value
(not for a flag that is off unless given, an option whose help says what leaving it out means
(default None or empty), or a required one). ``tests/test_cli_help.py`` holds every parser to it.
"""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` without the noise: no second default where the help
    already states one (``default:``), none for a required option, a flag (``store_true`` and
    friends: nargs 0), or a default of None or '' (its help says what not giving it means)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default:" in text or action.required or action.nargs == 0
                or action.default in (None, "", argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """:class:`HelpFormatter`, with the description printed as it is written."""


def make_parser(prog: str | None = None, description: str | None = None, *,
                raw_description: bool = False, **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` under this module's policy (``kwargs`` go to it)."""
    kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter if raw_description else HelpFormatter)
    kwargs.setdefault("allow_abbrev", False)
    return argparse.ArgumentParser(prog=prog, description=description, **kwargs)


def add_command(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command's parser (``subparsers.add_parser``) under the same policy."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    kwargs.setdefault("allow_abbrev", False)
    return subparsers.add_parser(name, **kwargs)

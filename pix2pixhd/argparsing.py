"""One policy for every command line of the project (train_hd.py, synthesize.py, the ``python -m
pix2pixhd.*`` tools, benchmarks/ and scripts/): abbreviated options are refused (``--ng 8`` is an
error, never ``--ngf 8``), and each option's help shows its default once, only where it is a value
(not for a flag that is off unless given, an option whose help says what leaving it out means
(default None or empty), or a required one). ``tests/test_cli_help.py`` holds every parser to it.
An option it does not have is refused before any other check, naming the closest one it has
(``unrecognized arguments: --ngf_x (did you mean --ngf?)``, argparse's usage and status 2). Options
are spelt with underscores; a dash spelling kept for older command lines (:func:`add_alias`) is read
but not shown.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import sys


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


def unknown_option(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.ArgumentParser, str] | None:
    """The first option of ``argv`` that ``parser`` (or the sub-command ``argv`` names) does not
    have, as (that parser, its error message naming the closest option it has); None if there is
    none. Read up to ``--``; ``-1`` (a negative number), ``--opt=value`` and ``-n5`` as argparse does."""
    known = parser._option_string_actions
    commands = {name: sub for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                for name, sub in a.choices.items()}
    skip = 0
    for i, arg in enumerate(argv):
        if skip:   # the value of the option before (it may be a sub-command's name)
            skip -= 1
            continue
        if arg == "--":
            return None
        if not arg.startswith("-") or arg == "-" or arg[1:2].isdigit() or arg[1:2] == ".":
            if arg in commands:
                return unknown_option(commands[arg], argv[i + 1:])
            if commands:   # a misspelt sub-command: argparse's "invalid choice" names them
                return None
            continue
        name = arg.split("=", 1)[0]
        action = known.get(name)
        if action is None and not arg.startswith("--") and len(arg) > 2 and arg[:2] in known:
            continue   # -n5: a short option and its value
        if action is None:
            if " " in arg:   # argparse reads it as a value
                continue
            close = closest_option(name, known)
            return parser, f"unrecognized arguments: {name}" + (f" (did you mean {close}?)" if close else "")
        if "=" not in arg and (action.nargs is None or isinstance(action.nargs, int)):
            skip = 1 if action.nargs is None else action.nargs
    return None


def closest_option(name: str, known: dict) -> str | None:
    """The option of ``known`` (option string -> action) a misspelt ``name`` most likely meant:
    one it begins (``--check`` -> ``--checkpoint``; the shortest), else the closest by difflib,
    names compared without their dashes (with them, ``--foo`` was "close" to ``--ngf``). Options
    shown in --help before hidden aliases; None if none is close."""
    bare = name.lstrip("-")
    for pool in ([s for s, a in known.items() if a.help is not argparse.SUPPRESS], list(known)):
        long = [s for s in pool if s.startswith("--")] if name.startswith("--") else pool
        starts = sorted((s for s in long if bare and s.lstrip("-").startswith(bare)), key=len)
        if starts:
            return starts[0]
        by_bare = {s.lstrip("-"): s for s in long}
        close = difflib.get_close_matches(bare, list(by_bare), n=1)
        if close:
            return by_bare[close[0]]
    return None


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose ``parse_args`` refuses an option it does not have before
    any other check (a mistyped ``--check`` is not "the following arguments are required:
    --checkpoint"), naming the closest one. ``parse_known_args`` leaves unknown options to the caller."""

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        found = unknown_option(self, args)
        if found:
            found[0].error(found[1])
        return super().parse_args(args, namespace)


def add_alias(container, alias: str, option: str) -> argparse.Action:
    """Make ``alias`` (an older spelling, ``--no-cache`` for ``--no_cache``) read as ``option`` of
    ``container`` (a parser or one of its groups) does, shown neither in --help nor in the usage."""
    action = copy.copy(container._option_string_actions[option])
    action.option_strings, action.help, action.default = [alias], argparse.SUPPRESS, argparse.SUPPRESS
    return container._add_action(action)


def make_parser(prog: str | None = None, description: str | None = None, *,
                raw_description: bool = False, **kwargs) -> argparse.ArgumentParser:
    """An :class:`ArgumentParser` under this module's policy (``kwargs`` go to it); its
    sub-commands' parsers (``add_subparsers``) are of the same class."""
    kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter if raw_description else HelpFormatter)
    kwargs.setdefault("allow_abbrev", False)
    return ArgumentParser(prog=prog, description=description, **kwargs)


def add_command(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command's parser (``subparsers.add_parser``) under the same policy."""
    if not issubclass(subparsers._parser_class, ArgumentParser):   # a plain parser's sub-commands
        subparsers._parser_class = ArgumentParser
    kwargs.setdefault("formatter_class", HelpFormatter)
    kwargs.setdefault("allow_abbrev", False)
    return subparsers.add_parser(name, **kwargs)

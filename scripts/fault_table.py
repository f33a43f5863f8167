#!/usr/bin/env python3
"""The fault table: run every test marked ``fault`` and write what they tried and how it ended.

``python scripts/fault_table.py`` runs ``pytest -m fault tests`` in this process with a small
plugin that records, for each ``@pytest.mark.fault(cls=..., case=...)`` marker of each test that
ran, the fault class, the case (``{param}`` and ``{id}`` filled from a parametrised test), the
test and its outcome (passed, failed, error, skipped and why). It writes ``docs/reliability.md``:
the command, the date, the commit, a summary line, one row per class, then one row per case. The
table is produced by the tests themselves: a case is listed only if a test tries it, and its
outcome is that test's outcome in this run.

Options: ``--out PATH`` (default docs/reliability.md); ``--all`` runs the whole suite instead of
``-m fault`` (one run that is both the full test run and the table; the table still lists the
fault cases only); anything after ``--`` goes to pytest (``-- -k run_folder`` to try a subset; the
command on the page says so). The exit status is pytest's.

A marker's ``case`` may name the test's parameters (``{how}``, ``{name!r}``) and ``{id}`` (its
parametrisation id); a placeholder that names none of them, or a marker without ``cls`` and
``case``, stops the run with a usage error naming the test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from pix2pixhd.checkpoint import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "reliability.md"
# the classes in table order; a class not listed here comes after them, alphabetically
CLASS_ORDER = ("bad dataset", "damaged run folder", "run folder in use", "interrupted run",
               "path tricks", "command-line errors", "numerics", "kernels", "synthesis")


class FaultRecorder:
    """pytest plugin: (class, case, test, outcome) for every fault marker of every test run."""

    def __init__(self):
        self.cases: dict[str, list[tuple[str, str]]] = {}   # nodeid -> [(class, case)]
        self.outcome: dict[str, str] = {}                     # nodeid -> outcome

    def pytest_collection_finish(self, session):
        for item in session.items:   # after -m/-k deselection: the tests that will run
            marks = list(item.iter_markers("fault"))
            if not marks:
                continue
            params = dict(getattr(getattr(item, "callspec", None), "params", {}) or {})
            params["id"] = getattr(getattr(item, "callspec", None), "id", "")
            rows = []
            for m in marks:
                if set(m.kwargs) != {"cls", "case"} or m.args:
                    raise pytest.UsageError(f"{item.nodeid}: write the fault marker as "
                                            f"@pytest.mark.fault(cls=..., case=...), not {m}")
                cls, case = m.kwargs["cls"], m.kwargs["case"]
                try:
                    case = case.format(**params)
                except (KeyError, IndexError, ValueError) as e:
                    raise pytest.UsageError(
                        f"{item.nodeid}: fault case {case!r} cannot be filled from the test's "
                        f"parameters {sorted(params)} ({type(e).__name__}: {e}); name one of them, or "
                        "double the braces ({{ }}) to keep them") from None
                rows.append((cls, case))
            self.cases[item.nodeid] = rows[::-1]   # closest marker last in iter_markers: file order

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.cases:
            return
        if report.when == "call" or report.outcome != "passed":
            if report.skipped:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                out = f"skipped ({reason.removeprefix('Skipped: ')})"
            elif report.failed:
                out = "failed" if report.when == "call" else f"error (in {report.when})"
            else:
                out = "passed"
            if report.nodeid not in self.outcome or self.outcome[report.nodeid] == "passed":
                self.outcome[report.nodeid] = out

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [(cls, case, nodeid, self.outcome.get(nodeid, "not run"))
                for nodeid, cases in self.cases.items() for cls, case in cases]


MECHANISMS = """
## What holds the cases

- **Errors** (`pix2pixhd/errors.py`). The project's error types (`DatasetError`,
  `CheckpointError`, `CheckpointMismatchError`, `LabelRangeError`, `UnsafeNameError`,
  `NonFiniteLossError`, `ConfigError`, `RunExistsError`, ...) derive from `UserError` and keep
  their built-in bases (`ValueError`...). Every entry point runs through `errors.run`: a
  `UserError` prints as `error: <message>` on stderr, exit status 1, no traceback; `--debug` or
  `PIX2PIXHD_DEBUG=1` shows the traceback; any other exception keeps its traceback (it is a bug).
- **Run folders** (`pix2pixhd/run_folder.py`). A new run where one exists (config.json or a
  checkpoint) is refused, naming `--resume`, another `--name` and `--overwrite`. Nothing is written
  to a run folder before the dataset is validated and the models are built. `--overwrite` renames
  the old run to `NAME.replaced-TIME` (instant, nothing copied) and deletes it after the new run's
  first checkpoint: a new run that dies in its first minutes loses nothing, and a week-long run
  does not keep a second copy of its predecessor once it has saved (one killed before then leaves
  `NAME.replaced-TIME`, which the next start of `NAME` names: a resume keeps it and says how to
  remove it, the next `--overwrite` deletes it at its first save). A training run holds
  `NAME/train.lock`: a second one into the same folder is refused, naming the holder.
- **Several ranks.** The start (folder check, dataset validation, which rank 0 does) is agreed
  by all ranks in one all-gather: one rank's failure stops every rank, each with one line, and
  none is left waiting in a collective. A rank that fails later (a non-finite loss) exits with
  status 1 and torchrun stops the others (with `--max_restarts` and `--auto_resume` it restarts
  the group, which then resumes from `latest.pt`).
- **Checkpoints** (`pix2pixhd/checkpoint.py`): written to `NAME.<pid>.tmp`, fsynced, renamed; a kill
  mid-write leaves the previous file whole, and the next start removes the partial one. Every
  checkpoint carries its config, so a damaged `config.json` is read from the checkpoint.
- **Datasets** ([data.md](data.md)): validation (`--validate full|headers|off`) reports every file
  it cannot use before training; what it lets through, the loader names when it meets it.
"""


KINDS = ("passed", "failed", "error", "skipped", "not run")


def _kind(outcome: str) -> str:
    """passed | failed | error | skipped | not run (an outcome without its reason)."""
    return outcome if outcome == "not run" else outcome.split(" ")[0]


def _counts(c: Counter) -> str:
    """'3 passed, 1 failed': the kinds in a fixed order, those with no case left out."""
    return ", ".join(f"{c[k]} {k}" for k in KINDS if c[k])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_table(rows, command: str, out: Path, seconds: float) -> str:
    order = {c: i for i, c in enumerate(CLASS_ORDER)}
    rows = sorted(rows, key=lambda r: (order.get(r[0], len(order)), r[0]))
    per_class: dict[str, Counter] = defaultdict(Counter)
    for cls, _, _, outcome in rows:
        per_class[cls][_kind(outcome)] += 1
    total = Counter(_kind(o) for *_, o in rows)
    summary = f"{len(rows)} fault cases in {len(per_class)} classes: {_counts(total)}"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        commit, dirty = "unknown", ""
    lines = [
        "# Reliability: the fault cases the test suite tries",
        "",
        "Issue 13 asked for a toolkit that survives what users and machines do to it: bad datasets",
        "under each `--validate` mode, processes killed during training and checkpoint writes,",
        "damaged or reused run folders, odd synthesis inputs, names that try to leave their folder,",
        "command lines that cannot work. Each such case is a test marked",
        "`@pytest.mark.fault(cls=..., case=...)`; this page is written by running them all:",
        "",
        "```",
        command,
        "```",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}, commit `{commit}`"
        + (" with uncommitted changes in the tree" if dirty else "")
        + f", {seconds / 60:.1f} min on {os.cpu_count()} CPU core(s).",
        "",
        f"**{summary}.**",
        "",
        "What the outcomes mean: *passed* is the test's assertions held (the case ended as the",
        "'case' column says: a clear one-line error naming the file and the fix, an exact resume,",
        "an untouched run folder...); *failed* is that they did not.",
        "",
        "## Per class",
        "",
        "| class | cases | outcome |",
        "| --- | ---: | --- |",
    ]
    for cls, c in sorted(per_class.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        lines.append(f"| {_md(cls)} | {sum(c.values())} | {_counts(c)} |")
    lines += ["", "## Every case", "", "| class | case | outcome | test |", "| --- | --- | --- | --- |"]
    for cls, case, nodeid, outcome in rows:
        lines.append(f"| {_md(cls)} | {_md(case)} | {_md(outcome)} | `{_md(nodeid)}` |")
    lines += ["", *MECHANISMS.strip("\n").splitlines(), ""]
    atomic_write_bytes(out, "\n".join(lines).encode())   # a cut run leaves the old page whole
    return summary


def run_fault_tests(pytest_args: list[str]) -> tuple[int, list[tuple[str, str, str, str]]]:
    """``pytest.main(pytest_args)`` in this process with a :class:`FaultRecorder`: (pytest's exit
    status, one (class, case, test id, outcome) row per fault marker of each test collected)."""
    rec = FaultRecorder()
    rc = pytest.main(pytest_args, plugins=[rec])
    return int(rc), rec.rows()


def build_parser() -> argparse.ArgumentParser:
    """The script's own options (pytest's come after ``--``)."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser("scripts/fault_table.py", __doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(OUT), help="the page to write (default: docs/reliability.md)")
    p.add_argument("--all", action="store_true", help="run the whole suite, not only the fault tests")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    a = build_parser().parse_args(own)
    os.chdir(REPO)
    args = [*([] if a.all else ["-m", "fault"]), "-q", "-p", "no:cacheprovider", "tests", *extra]
    command = " ".join(["python scripts/fault_table.py", *own, *(["--", *extra] if extra else [])])
    command += f"\n# runs: python -m pytest {' '.join(args)}"
    t0 = time.perf_counter()
    rc, rows = run_fault_tests(args)
    if not rows:
        print(f"no test marked fault was collected (pytest exit status {rc}); {a.out} not written",
              file=sys.stderr)
        return rc or 1
    summary = write_table(rows, command, Path(a.out), time.perf_counter() - t0)
    print(f"{summary}; wrote {a.out} in {(time.perf_counter() - t0) / 60:.1f} min")
    return rc


if __name__ == "__main__":
    sys.exit(main())

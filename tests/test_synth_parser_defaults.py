"""synthesize.py's options take SynthesisJob's defaults (pix2pixhd/synthesis_job.py), the one place
they are written, so that the command and the Python API run the same job; its --help still shows
them, and still without importing torch (the class lives in a module that imports none)."""
import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from pix2pixhd import cli
from pix2pixhd.engine import SynthesisJob

REPO = Path(__file__).resolve().parents[1]
# options whose "not given" is "" where the job's is None (--input "" is no --input)
EMPTY_IS_NONE = {"input", "inst", "real", "dataroot", "out_phase"}
# job fields that are not options of their own name: --no_progress is progress=False; out is
# required; command is the command line itself
NOT_OPTIONS = {"progress", "out", "command"}


def _option_defaults(parser: argparse.ArgumentParser) -> dict:
    """{SynthesisJob field: the value the parser gives it when the option is left out}, as
    synthesize_main hands it to the job (its type applied; --scale_width stays a string, "trained"
    or a width, which resolve_scale_width reads)."""
    fields = {f.name for f in dataclasses.fields(SynthesisJob)}
    out = {}
    for a in parser._actions:
        if a.dest in fields and a.dest not in NOT_OPTIONS:
            value = a.default
            if isinstance(value, str) and callable(a.type):
                value = a.type(value)
            out[a.dest] = None if (a.dest in EMPTY_IS_NONE and value == "") else value
        elif a.dest == "no_progress":
            out["progress"] = not a.default
    return out


def test_every_option_of_a_job_field_has_the_fields_default():
    """One that differs (a default hard-coded in the parser again, and changed in one place only)
    would make synthesize.py and SynthesisJob(...) run different jobs."""
    job = {f.name: f.default for f in dataclasses.fields(SynthesisJob) if f.default is not dataclasses.MISSING}
    given = _option_defaults(cli.synthesize_parser())
    assert set(job) - NOT_OPTIONS - set(given) == set(), "job fields without an option"
    assert len(given) >= 15, sorted(given)
    differ = {k: (v, job[k]) for k, v in given.items()
              if not (v == job[k] or (k == "scale_width" and str(v) == str(job[k])))
              or (job[k] is not None and type(v) is not type(job[k]) and k != "scale_width")}
    assert not differ, f"synthesize.py's defaults (parser, SynthesisJob) differ: {differ}"


def test_the_parser_takes_its_defaults_from_the_job(monkeypatch):
    """Written once: the parser follows SynthesisJob's defaults, whatever they are."""
    job = {f.name: f.default for f in dataclasses.fields(SynthesisJob) if f.default is not dataclasses.MISSING}
    changed = {"phase": "val", "validate": "full", "how_many": 7, "scale_width": 512, "num_samples": 3,
               "seed": 11, "batch_size": 9, "workers": 5, "writers": 6, "direction": "BtoA"}
    monkeypatch.setattr(cli, "_synthesis_job_defaults", lambda: {**job, **changed}, raising=False)
    got = vars(cli.synthesize_parser().parse_args(["--checkpoint", "c", "--out", "o"]))
    differ = {k: (got[k], v) for k, v in changed.items() if str(got[k]) != str(v)}
    assert not differ, f"options that do not follow SynthesisJob's defaults (parser, job): {differ}"


def test_the_engine_runs_the_same_class():
    """pix2pixhd.engine re-exports the class the parser reads: one SynthesisJob, not two."""
    from pix2pixhd.synthesis_job import SynthesisJob as light
    assert SynthesisJob is light


def test_help_shows_the_defaults_without_importing_torch():
    """The reason SynthesisJob lives apart from the engine: importing the engine imports torch,
    seconds before --help or an option's error."""
    code = ("import sys; from pix2pixhd.cli import synthesize_parser; "
            "print(synthesize_parser('synthesize.py').format_help()); "
            "print('imported:', sorted(m for m in ('torch', 'pix2pixhd.engine') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, COLUMNS="200"))
    assert r.returncode == 0, r.stderr
    assert "imported: []" in r.stdout, r.stdout[-300:]
    text = " ".join(r.stdout.split())
    for shown in ("--batch_size BATCH_SIZE maps per generator call (maps of one size; a short batch is filled "
                  "up) (default: 4)", "(default: headers)", "--workers WORKERS decoding processes (0: in the "
                  "main process) (default: 2)", "0: each map keeps its size (default: 0)"):
        assert shown in text, f"not in synthesize.py --help: {shown!r}"

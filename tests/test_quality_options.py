"""benchmarks/quality.py's command line: the recorded command resumes, bad values are refused
before any work, the run's feature extractor is part of its identity, curves.svg without KID,
Ctrl-C. The tiny setting of tests/test_quality.py (synthetic facades, 32 px, a tiny recipe)."""
from __future__ import annotations

import dataclasses
import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("torchmetrics")

from benchmarks import quality  # noqa: E402
from tests.test_quality import TINY, _facades, _table_state  # noqa: E402


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The tiny recipe on the command line, a 1-step segmenter, 8 facades in tmp/src, cwd tmp."""
    import pix2pixhd.evaluate as ev
    small = ev.SegmenterConfig

    def cfg(**kw):
        return small(**{"steps": 1, "width": 4, "depth": 2, **kw})
    monkeypatch.setattr(ev, "SegmenterConfig", cfg)
    monkeypatch.setitem(quality.RECIPES, "tiny", TINY)
    _facades(tmp_path / "src", 8)
    monkeypatch.chdir(tmp_path)
    return tmp_path


BASE = ["--recipe", "tiny", "--out", "out", "--src", "src", "--size", "32", "--n_val", "3",
        "--split_seed", "5", "--no_fid", "--budget_minutes", "1000"]


def test_recorded_command_resumes_and_settings_that_change_the_curve_are_refused(tiny, monkeypatch):
    # the fault: quality.md's command dropped --src --size --n_val ... so it was refused
    assert quality.main(BASE + ["--max_epochs", "1"]) == 0
    md = (tiny / "out" / "quality.md").read_text()
    line = next(x for x in md.splitlines() if "benchmarks/quality.py" in x)
    cmd = shlex.split(line.split("`")[1])
    assert cmd[1] == str(Path(quality.__file__).resolve()) and "--no_fid" in cmd and "--src" in cmd
    argv = cmd[2:]
    argv[argv.index("--max_epochs") + 1] = "2"
    (tiny / "elsewhere").mkdir()
    monkeypatch.chdir(tiny / "elsewhere")           # its paths are absolute
    assert quality.main(argv) == 0
    st = json.loads((tiny / "out" / "state.json").read_text())
    assert [p["epoch"] for p in st["points"]] == [1, 2]
    assert (tiny / "out" / "train.log").read_text().count("--resume --which_epoch 1") == 1

    # the fault: a resume with or without --no_fid, or another --inception, was accepted
    with_fid = [a for a in argv if a != "--no_fid"]
    with pytest.raises(SystemExit, match="other settings.*no_fid"):
        quality.main(with_fid)
    with pytest.raises(SystemExit, match="other settings.*inception"):
        quality.main(argv + ["--inception", str(tiny / "other.pt")])
    # a state.json written before these were recorded: --no_fid read from its points
    st["run"].pop("no_fid"), st["run"].pop("inception")
    assert quality._with_old_defaults(st)["no_fid"] is True
    assert quality._with_old_defaults(st)["inception"] is None


@pytest.mark.parametrize("opt, value, words", [
    ("--eval_every_epochs", "0", "expected at least 1"), ("--eval_every_epochs", "-2", "at least 1"),
    ("--budget_minutes", "0", "more than 0"), ("--budget_minutes", "-1", "more than 0"),
    ("--budget_minutes", "nan", "more than 0"), ("--max_epochs", "-1", "at least 0"),
    ("--threads", "0", "at least 1"), ("--size", "0", "multiple of 16"), ("--size", "40", "multiple of 16"),
    ("--n_val", "0", "at least 1"), ("--n_val", "8", "below the 8 images"),
    ("--split_seed", "-1", "at least 0")])
def test_bad_values_are_refused_before_any_work(tiny, capsys, opt, value, words):
    argv = [a for a in BASE]
    if opt in argv:
        argv[argv.index(opt) + 1] = value
    else:
        argv += [opt, value]
    from pix2pixhd.errors import run
    assert run(quality.main, argv) == 1   # a ConfigError: one error line, status 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"quality.py: error: {opt} {value}") or f"error: {opt} {value}" in err, err
    assert words in err
    assert not (tiny / "out").exists()


def test_refused_resume_leaves_no_data_folder(tiny):
    (tiny / "out").mkdir()
    (tiny / "out" / "state.json").write_text(json.dumps({"run": {"recipe": "other"}, "points": []}))
    with pytest.raises(SystemExit, match="other settings"):
        quality.main(BASE)
    assert not (tiny / "out" / "data").exists()


def test_curves_without_kid_say_so_in_svg():
    # the fault: an HTML <p> inside the SVG
    st = _table_state(False)
    st["run"]["no_fid"] = True
    svg = quality.curves_svg([st])
    ET.fromstring(svg)
    assert "<p>" not in svg and svg.count("KID was not computed (--no_fid)") == 2


def test_ctrl_c_prints_one_line_and_exits_130(tiny, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(quality, "run_benchmark", interrupted)
    assert quality.main(BASE) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the same command resumes" in err[0] and "Traceback" not in err[0]


def test_resume_command_spells_out_every_setting(tmp_path):
    spec = quality.DataSpec(str(tmp_path / "src"), n_val=4, split_seed=7, size=64)
    cmd = shlex.split(quality.resume_command("pix2pix_l1", tmp_path / "o", tmp_path / "d", spec,
                                             budget_minutes=2.5, eval_every_epochs=3, max_epochs=9,
                                             seed=1, threads=2, inception="/x.pt", no_fid=False))
    a = quality.build_parser().parse_args(cmd[2:])
    assert (a.recipe, a.budget_minutes, a.eval_every_epochs, a.max_epochs, a.seed, a.threads) == \
        ("pix2pix_l1", 2.5, 3, 9, 1, 2)
    assert dataclasses.asdict(quality.DataSpec(a.src, a.n_val, a.split_seed, a.size)) == dataclasses.asdict(spec)
    assert (str(a.out), str(a.data), a.inception, a.no_fid) == (str(tmp_path / "o"), str(tmp_path / "d"), "/x.pt", False)


def test_curves_span_the_points_they_draw():
    """A short run's x values (CPU-minutes 0.06..0.13) were drawn on a 0.06..1.06 axis, in its left
    6%: the axis spans the points now; one point still gets a unit-wide axis."""
    from pix2pixhd.visualizer import loss_curves_svg
    svg = loss_curves_svg([{"m": 0.06, "G_x": 1.0}, {"m": 0.13, "G_x": 2.0}], x="m")
    assert "0.06 … 0.13)" in svg, svg
    assert "5 … 6)" in loss_curves_svg([{"m": 5, "G_x": 1.0}], x="m")

"""benchmarks/ranges.py: the range of the speed ratios over several --json files of
benchmarks/train.py and benchmarks/synthesis.py, and the README's speed table is what it prints
for the committed runs (docs/bench_runs/cpu_2026-12-07)."""
import json
import re
from pathlib import Path

import pytest

from benchmarks.ranges import main, ranges
from pix2pixhd.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "bench_runs" / "cpu_2026-12-07"


def _write(path: Path, wall: float, cpu: float) -> Path:
    rows = [{"stage": "local", "res": "256x128", "path": "baseline (reference-style)",
             "speedup_vs_baseline": 1.0, "cpu_speedup_vs_baseline": 1.0},
            {"stage": "local", "res": "256x128", "path": "ours fp32",
             "speedup_vs_baseline": wall, "cpu_speedup_vs_baseline": cpu}]
    path.write_text(json.dumps({"benchmark": "train", "rows": rows}))
    return path


def test_min_and_max_over_runs_baseline_left_out(tmp_path, capsys):
    files = [_write(tmp_path / f"r{i}.json", w, c) for i, (w, c) in enumerate([(1.2, 1.1), (0.9, 1.3), (1.05, 1.2)])]
    rows = ranges(files)
    assert rows == [{"benchmark": "train", "stage": "local", "res": "256x128", "path": "ours fp32", "ngf": None,
                     "runs": 3, "wall": (0.9, 1.2), "cpu": (1.1, 1.3)}]
    assert main([str(f) for f in files]) == 0
    assert re.search(r"ours fp32\s+3\s+0\.90-1\.20\s+1\.10-1\.30$", capsys.readouterr().out, re.M)


def _write_ngf(path: Path, ngf: int, wall: float, cpu: float) -> Path:
    rows = [{"stage": "global", "res": "256x128", "path": "ours fp32", "ngf": ngf,
             "speedup_vs_baseline": wall, "cpu_speedup_vs_baseline": cpu}]
    path.write_text(json.dumps({"benchmark": "train", "rows": rows}))
    return path


def test_runs_at_other_widths_are_ranges_of_their_own(tmp_path):
    """The default widths (ngf 16) and NVIDIA's (ngf 64) are separate README rows: pooled, one
    range would span both."""
    files = [_write_ngf(tmp_path / "a.json", 16, 1.5, 1.2), _write_ngf(tmp_path / "b.json", 64, 0.8, 0.9),
             _write_ngf(tmp_path / "c.json", 16, 1.3, 1.1)]
    got = sorted(ranges(files), key=lambda r: r["ngf"])
    assert [(r["ngf"], r["runs"], r["wall"], r["cpu"]) for r in got] == [
        (16, 2, (1.3, 1.5), (1.1, 1.2)), (64, 1, (0.8, 0.8), (0.9, 0.9))], got


def test_a_single_run_prints_one_figure_not_a_range(tmp_path, capsys):
    assert main([str(_write(tmp_path / "r.json", 1.5, 1.25))]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ours fp32\s+1\s+1\.50\s+1\.25$", out, re.M), out
    assert "1.50-1.50" not in out, out


def test_a_file_that_is_not_a_benchmark_json_is_named(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"notes\.json is not a benchmark --json file"):
        ranges([bad])


@pytest.mark.skipif(not RUNS.is_dir(), reason="the committed runs are not in this checkout")
def test_the_readme_speed_table_is_what_ranges_prints_for_the_committed_runs():
    got = {(r["benchmark"], r["stage"], r["res"], r["path"]): r for r in ranges(sorted(RUNS.glob("*.json")))}
    fmt = lambda r: f"{r[0]:.2f}-{r[1]:.2f}"  # noqa: E731
    readme = (ROOT / "README.md").read_text()
    expect = {"| global, 128×64, ngf 16 |": ("train", "global", "128x64", "ours fp32"),
              "| local, 256×128, ngf 16 |": ("train", "local", "256x128", "ours fp32"),
              "| global, 256×128, NVIDIA's widths (ngf 64, ndf 64), fp32 |": ("train", "global", "256x128", "ours fp32"),
              "| the same, bf16 autocast |": ("train", "global", "256x128", "ours bf16"),
              "| synthesis, global G, 256×128 (`benchmarks/synthesis.py`) |":
                  ("synthesis", "global", "256x128", "ours auto (fp32)"),
              "| synthesis, local G, 512×256 |": ("synthesis", "local", "512x256", "ours auto (fp32)")}
    for row, key in expect.items():
        line = next(l for l in readme.splitlines() if l.startswith(row))
        cells = [c.strip() for c in line.split("|")[2:4]]
        r = got[key]
        assert cells[0].split(" ")[0] == fmt(r["cpu"]) and cells[1] == fmt(r["wall"]), (line, r)


def test_training_runs_keep_their_widths_apart_as_train_py_records_them(tmp_path):
    """benchmarks/train.py writes ngf under the row's "arch" (synthesis.py beside the row's
    fields): runs at ngf 16 and 64 of one stage and size are two ranges, not one."""
    files = []
    for i, (ngf, wall) in enumerate([(16, 1.1), (64, 1.6), (16, 1.2)]):
        rows = [{"stage": "global", "res": "256x128", "path": "ours fp32", "arch": {"ngf": ngf, "ndf": ngf},
                 "speedup_vs_baseline": wall, "cpu_speedup_vs_baseline": wall}]
        f = tmp_path / f"t{i}.json"
        f.write_text(json.dumps({"benchmark": "train", "rows": rows}))
        files.append(f)
    got = sorted((r["ngf"], r["runs"], r["wall"]) for r in ranges(files))
    assert got == [(16, 2, (1.1, 1.2)), (64, 1, (1.6, 1.6))]

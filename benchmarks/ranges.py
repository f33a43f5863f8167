"""The range of the speed ratios over several runs of a benchmark (the rule for quoting them:
timings here vary by +-30% between runs, so one run proves little).

    python3 benchmarks/ranges.py docs/bench_runs/cpu_2026-12-07/*.json

Reads the ``--json`` files that benchmarks/train.py and benchmarks/synthesis.py write and prints,
per benchmark, stage, size and path, the number of runs and the smallest and largest wall-time
(``speedup_vs_baseline``) and CPU-time (``cpu_speedup_vs_baseline``) ratios against the
reference-style baseline of the same run (> 1: ours faster).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root makes the packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pix2pixhd.errors import InputError  # noqa: E402

from benchmarks._cli import make_parser  # noqa: E402


def ranges(files) -> list[dict]:
    """One row per (benchmark, stage, res, path, ngf) over ``files``: runs, and the min/max of the
    wall and CPU ratios; the baseline rows (ratio 1 by definition) are left out."""
    seen: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: {"wall": [], "cpu": []})
    for f in files:
        try:
            data = json.loads(Path(f).read_text())
            rows, bench = data["rows"], data.get("benchmark", Path(f).stem)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"{f} is not a benchmark --json file ({type(e).__name__}: {e}); pass the files "
                             "benchmarks/train.py or benchmarks/synthesis.py wrote with --json") from None
        for r in rows:
            if str(r.get("path", "")).startswith("baseline"):
                continue
            arch = r.get("arch") if isinstance(r.get("arch"), dict) else {}
            # train.py records the widths under "arch", synthesis.py beside the row's other fields
            k = (bench, r.get("stage"), r.get("res"), r.get("path"), r.get("ngf", arch.get("ngf")))
            for name, field in (("wall", "speedup_vs_baseline"), ("cpu", "cpu_speedup_vs_baseline")):
                if isinstance(r.get(field), (int, float)):
                    seen[k][name].append(float(r[field]))
    out = []
    for (bench, stage, res, path, ngf), v in seen.items():
        out.append({"benchmark": bench, "stage": stage, "res": res, "path": path, "ngf": ngf,
                    "runs": max(len(v["wall"]), len(v["cpu"])),
                    "wall": (min(v["wall"]), max(v["wall"])) if v["wall"] else None,
                    "cpu": (min(v["cpu"]), max(v["cpu"])) if v["cpu"] else None})
    return out


def build_parser():
    p = make_parser("Ranges of the speed ratios over several benchmark --json files.")
    p.add_argument("files", nargs="+", help="--json files of benchmarks/train.py or benchmarks/synthesis.py")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    fmt = lambda r: "-" if r is None else (f"{r[0]:.2f}" if round(r[0], 2) == round(r[1], 2)  # noqa: E731
                                            else f"{r[0]:.2f}-{r[1]:.2f}")
    rows = ranges(a.files)   # a bad file is one error line, before any output
    print(f"{'benchmark':<10} {'stage':<7} {'res':<8} {'ngf':>4} {'path':<18} {'runs':>4}  {'wall ratio':>10}  "
          f"{'CPU ratio':>10}")
    for r in sorted(rows, key=lambda r: (r["benchmark"], str(r["stage"]), str(r["res"]), str(r["path"]))):
        print(f"{r['benchmark']:<10} {r['stage'] or '-':<7} {r['res'] or '-':<8} {r['ngf'] or '-':>4} "
              f"{r['path']:<18} {r['runs']:>4}  {fmt(r['wall']):>10}  {fmt(r['cpu']):>10}")
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    sys.exit(run(main))

"""scripts/gpu_check.sh: on a machine without a GPU it says so, writes the AOT table and exits 0;
and every command its GPU parts run parses with the flags it passes (so the first GPU run does not
die on a typo).

The CPU run narrows the AOT part (GPU_CHECK_AOT_ARGS: sm_90, bf16, channels-last) to keep the suite
fast; tests/test_aot.py runs the full one.
"""
import importlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path; this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_writes_the_aot_table_and_exits_0(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "gpu_check"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["GPU_CHECK_AOT_ARGS"] = "--arch 90 --dtypes bf16 --layouts cl"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True,
                          timeout=1800, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NO GPU: torch.cuda.is_available() is False" in proc.stdout
    aot_md = (out / "aot.md").read_text()
    assert re.search(r"^# AOT compilation: \d+ specializations compiled for sm_90, 0 spills$",
                     aot_md, re.M), aot_md[:500]
    assert "| layout | dtype |" in aot_md and "_fwd_kernel, sm_90" in aot_md
    rows = json.loads((out / "aot.json").read_text())["rows"]
    assert rows and all(r["spills"] == 0 and r["error"] is None for r in rows)
    parts = {p["part"]: p["status"] for p in json.loads((out / "parts.json").read_text())["parts"]}
    assert parts["aot"] == "ok" and parts["device"] == "ok"
    for part in ("cuda_tests", "kernels", "train_global", "train_local", "synthesis", "loader",
                 "kernels_compile"):
        assert parts[part] == "skipped: no GPU", part
        assert (out / f"{part}.json").is_file() and (out / f"{part}.md").is_file(), part
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# gpu_check: 2 ok, 0 failed, 7 skipped")


def gpu_part_commands() -> list[tuple[str, list[str]]]:
    """(module, argv) of every `"$PY" -m MODULE ...` line of the script, continuations joined."""
    text = SCRIPT.read_text().replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        m = re.search(r'"\$PY" -m ((?:benchmarks|pix2pixhd\.kernels)\.\w+) (.*)', line)
        if m:
            args = shlex.split(m.group(2).replace('"$OUT', '"/tmp/out').replace("$AOT_ARGS", "--arch 80,90"))
            cmds.append((m.group(1), args))
    return cmds


def test_gpu_parts_pass_flags_their_scripts_accept():
    cmds = gpu_part_commands()
    modules = [m for m, _ in cmds]
    for want in ("benchmarks.kernels", "benchmarks.train", "benchmarks.synthesis",
                 "benchmarks.loader", "pix2pixhd.kernels.aot"):
        assert want in modules, want
    for module, argv in cmds:
        mod = importlib.import_module(module)
        try:
            mod.parse_args(argv)
        except SystemExit as e:  # argparse's exit on an unknown or malformed flag
            pytest.fail(f"{module} {' '.join(argv)}: rejected (exit {e.code})")
    # The values argparse cannot check: train's per-path precisions.
    train = importlib.import_module("benchmarks.train")
    for module, argv in cmds:
        if module == "benchmarks.train":
            assert train.parse_precisions(train.parse_args(argv).precision) == [("fp32", False),
                                                                                ("bf16", True)]


def test_the_background_loader_data_call_matches_ensure_data():
    """The GPU part makes the loader's scenes in the background with a python -c line: it must
    call benchmarks.loader.ensure_data with arguments the function takes, and the same sizes as
    the loader part's flags (or the loader part would generate them again inside its cap)."""
    import inspect

    from benchmarks import loader
    text = SCRIPT.read_text()
    m = re.search(r"ensure_data\(Path\(sys\.argv\[1\]\), (\d+), (\d+), (\d+), (\d+)\)", text)
    assert m, "the background ensure_data call is gone or changed shape"
    w, h, n, unique = map(int, m.groups())
    inspect.signature(loader.ensure_data).bind(Path("/tmp/x"), w, h, n, unique)
    argv = dict(gpu_part_commands())["benchmarks.loader"]
    a = loader.parse_args(argv)
    assert (a.res, a.n, a.unique) == (f"{w}x{h}", n, unique)
    assert '--data "$OUT/loader_data"' in text and 'ensure_data(Path(sys.argv[1])' in text
    assert '"$OUT/loader_data" > "$OUT/loader_data.log"' in text

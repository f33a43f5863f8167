"""scripts/gpu_check.sh: on a machine without a GPU it says so, writes the AOT table and exits 0;
and every command its GPU parts run parses with the flags it passes (so the first GPU run does not
die on a typo).

The CPU run narrows the AOT part (GPU_CHECK_AOT_ARGS: sm_90, bf16, channels-last) to keep the suite
fast; tests/test_aot.py runs the full one.
"""
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
NO_GPU_TEST = "test_gpu_check_without_a_gpu_says_so_writes_the_aot_table_and_exits_0"
PRETEND_GPU_TEST = "test_gpu_parts_plumbing_with_a_pretend_gpu"
CAPPED_TEST = "test_cuda_tests_part_stopped_at_its_cap_still_tables_the_tests_that_finished"


class _Background:
    """A command started now in its own session, stdout and stderr to files in ``tmp``; ``out``:
    the folder its results go to."""

    def __init__(self, tmp: Path, out: Path, argv: list[str], env: dict, cwd: Path):
        self.tmp, self.out = tmp, out
        with open(tmp / "stdout", "w") as o, open(tmp / "stderr", "w") as e:
            self.p = subprocess.Popen(argv, env=env, stdout=o, stderr=e, cwd=cwd, start_new_session=True)

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        """Waits for the command (killed, and TimeoutExpired raised, after ``timeout`` s)."""
        try:
            self.p.wait(timeout=timeout)
        finally:
            self.stop()
        return subprocess.CompletedProcess(self.p.args, self.p.returncode, (self.tmp / "stdout").read_text(),
                                           (self.tmp / "stderr").read_text())

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


@pytest.fixture(scope="module")
def script_runs(request, tmp_path_factory):
    """The script runs of this file's three tests that make one, for those selected, started
    together: each is mostly one Python start-up after another on one core (or sleeps, the capped
    part's), so on two or more cores they overlap instead of adding up. Each test waits for its
    own run and checks it."""
    selected = {getattr(item, "originalname", item.name) for item in request.session.items}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    runs = {}
    if NO_GPU_TEST in selected and not torch.cuda.is_available() and importlib.util.find_spec("triton"):
        tmp = tmp_path_factory.mktemp("no_gpu")
        no_gpu_env = dict(env, GPU_CHECK_AOT_ARGS="--arch 90 --dtypes bf16 --layouts cl")
        if shutil.which("gcc"):  # CC names a compiler of its own: the script must name CC, not gcc
            (tmp / "bin").mkdir()
            (tmp / "bin" / "my-cc").symlink_to(shutil.which("gcc"))
            no_gpu_env["CC"] = str(tmp / "bin" / "my-cc")
        runs[NO_GPU_TEST] = _Background(tmp, tmp / "gc", ["bash", str(SCRIPT), str(tmp / "gc")], cwd=tmp,
                                        env=no_gpu_env)
    if PRETEND_GPU_TEST in selected:
        tmp = tmp_path_factory.mktemp("pretend_gpu")
        fake = tmp / "python"
        fake.write_text(_PRETEND_GPU_PYTHON.replace("__REAL__", sys.executable))
        fake.chmod(0o755)
        runs[PRETEND_GPU_TEST] = _Background(tmp, tmp / "gc", ["bash", str(SCRIPT), str(tmp / "gc")], cwd=tmp,
                                             env=dict(env, PIX2PIXHD_PYTHON=str(fake)))
    if CAPPED_TEST in selected:
        runs[CAPPED_TEST] = _start_capped_cuda_tests(tmp_path_factory.mktemp("capped_cuda_tests"))
    yield runs
    for run in runs.values():
        run.stop()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path; this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_writes_the_aot_table_and_exits_0(script_runs):
    pytest.importorskip("triton")
    run = script_runs[NO_GPU_TEST]   # GPU_CHECK_AOT_ARGS="--arch 90 --dtypes bf16 --layouts cl"
    proc, out = run.result(timeout=1800), run.out
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
    # what Triton's launcher build needs, named beside the device (this machine has both): CC
    # first (the run's own, a link to gcc, where gcc is there), as Triton takes it
    dev = json.loads((out / "device.json").read_text())["rows"][0]
    cc = str(run.tmp / "bin" / "my-cc") if shutil.which("gcc") else os.environ.get("CC")
    assert dev["c_compiler"] == (cc or shutil.which("clang")), dev
    assert "WARNING: no C compiler" not in proc.stdout
    assert Path(dev["python_h"]).name == "Python.h" and Path(dev["python_h"]).is_file(), dev
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
    # The kernels parts: fused vs eager first, torch.compile vs eager last; each ratio from one run,
    # no column timed twice.
    kernels = importlib.import_module("benchmarks.kernels")
    runs = [kernels.parse_args(argv).methods for module, argv in cmds if module == "benchmarks.kernels"]
    assert runs == [["fused", "eager"], ["eager", "compile"]]


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


_PRETEND_GPU_PYTHON = r'''#!/usr/bin/env bash
# A stand-in interpreter for scripts/gpu_check.sh: says CUDA is there, answers each part's command
# with the files such a run writes (train_local fails, as a part may), passes the rest through.
REAL=__REAL__
arg_after() { local want="$1"; shift; while [ $# -gt 0 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
rows='{"rows": [{"stage": "global", "res": "1024x512", "path": "ours bf16 cl", "step_ms": 50.0,
        "images_per_s": 20.0, "workers": 8, "MB_per_s": 100.0}]}'
case "$*" in
  *"torch.cuda.is_available() else 1"*) exit 0 ;;
  *"ensure_data("*) exit 0 ;;  # the loader's scenes: the pretend loader part needs none
  "-m pytest "*)
    echo '<testsuites><testsuite><testcase classname="tests.test_kernels" name="test_a" time="0.5"/><testcase classname="tests.test_kernels" name="test_b" time="0.1"><skipped message="no"/></testcase></testsuite></testsuites>' > "$(arg_after --junitxml "$@")"
    echo "1 passed, 1 skipped"; exit 0 ;;
  "-m benchmarks.kernels "*|"-m pix2pixhd.kernels.aot "*)
    echo "$rows" > "$(arg_after --json "$@")"; echo "# table" > "$(arg_after --markdown "$@")"; exit 0 ;;
  "-m benchmarks.train "*"--stage local"*) echo "CUDA out of memory (pretend)" >&2; exit 1 ;;
  "-m benchmarks."*) echo "$rows" > "$(arg_after --json "$@")"; exit 0 ;;
esac
exec "$REAL" "$@"
'''


def test_gpu_parts_plumbing_with_a_pretend_gpu(script_runs):
    """The GPU half of the script (its bash: parts, caps, JSON to markdown, junit to a table, the
    summary, the exit status) has never run on a GPU: run it with a stand-in interpreter that
    says CUDA is there and answers each part's command. A failing part is recorded and the next
    ones still run; the exit status says a part failed."""
    run = script_runs[PRETEND_GPU_TEST]   # PIX2PIXHD_PYTHON: _PRETEND_GPU_PYTHON
    proc, out = run.result(timeout=600), run.out
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "NO GPU" not in proc.stdout
    # no CC set here (unless the caller's): the compiler warning only where none is found
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    assert ("WARNING: no C compiler" in proc.stdout) == (not compiler), proc.stdout[-3000:]
    parts = {p["part"]: p["status"] for p in json.loads((out / "parts.json").read_text())["parts"]}
    assert list(parts) == ["device", "aot", "cuda_tests", "kernels", "train_global", "train_local",
                           "synthesis", "loader", "kernels_compile"], parts
    assert parts["train_local"] == "failed (exit 1)"
    assert all(s == "ok" for p, s in parts.items() if p != "train_local"), parts
    assert (out / "summary.md").read_text().startswith("# gpu_check: 8 ok, 1 failed, 0 skipped")
    tests_md = (out / "cuda_tests.md").read_text()
    assert "1 passed, 0 failed, 0 error, 1 skipped" in tests_md and "test_kernels::test_a" in tests_md
    assert "| 1024x512 |" in (out / "train_global.md").read_text()
    assert "CUDA out of memory (pretend)" in (out / "train_local.md").read_text()
    for part in parts:
        assert (out / f"{part}.json").is_file() and (out / f"{part}.md").is_file(), part


_SLOW_TESTS = '''
import time
import pytest

@pytest.mark.parametrize("i", range(100))
def test_slow(i):
    time.sleep(0.1)
    assert i != 1
'''


def _start_capped_cuda_tests(tmp: Path) -> _Background:
    """The script's own cuda_tests function, its pytest pointed at a file of slow tests, started
    in the background (results in tmp/out)."""
    (tmp / "test_slow_cases.py").write_text(_SLOW_TESTS)
    fake = tmp / "python"
    fake.write_text(f'''#!/usr/bin/env bash
if [ "$1 $2" = "-m pytest" ]; then
    while [ $# -gt 0 ]; do [ "$1" = --junitxml ] && xml="$2"; shift; done
    cd {tmp} && exec {sys.executable} -m pytest -q test_slow_cases.py --junitxml "$xml" -p no:cacheprovider
fi
exec {sys.executable} "$@"
''')
    fake.chmod(0o755)
    text = SCRIPT.read_text()
    func = re.search(r"^cuda_tests\(\) \{\n.*?^\}\n", text, re.S | re.M).group(0)
    out = tmp / "out"
    out.mkdir()
    # stopped 25 s before the cap, after 5 s: the 100 tests take 10 s
    env = dict(os.environ, PY=str(fake), OUT=str(out), PART_CAP="30", PYTHONPATH=str(ROOT))
    return _Background(tmp, out, ["bash", "-c", func + "\ncuda_tests"], env=env, cwd=ROOT)


def test_cuda_tests_part_stopped_at_its_cap_still_tables_the_tests_that_finished(script_runs):
    """The cuda_tests part interrupts pytest (SIGINT) before the part's cap, so pytest still
    writes its junit report: the table lists the tests that finished (one failed here), says the
    run was stopped, and the report's nameless closing entry is no row. Runs the script's own
    cuda_tests function, its pytest pointed at a file of slow tests (_start_capped_cuda_tests)."""
    run = script_runs[CAPPED_TEST]
    proc, out = run.result(timeout=120), run.out
    assert proc.returncode == 124, proc.stdout[-2000:] + proc.stderr[-2000:]   # stopped after 5 s
    rec = json.loads((out / "cuda_tests.json").read_text())
    names = [r["test"] for r in rec["rows"]]
    assert 3 <= len(names) < 100 and all(n.startswith("test_slow_cases::test_slow[") for n in names), names
    assert rec["counts"]["failed"] == 1 and rec["counts"]["passed"] == len(names) - 1
    assert "stopped at the time cap" in (out / "cuda_tests.md").read_text()

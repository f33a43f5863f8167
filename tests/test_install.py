"""Installing and running where users start from: an externally managed system Python (PEP 668)
and a machine without Triton (no wheels for macOS or Windows).

* scripts/env.sh (the environment logic of scripts/main_job.sh and scripts/test.sh) is run in its
  dry mode (PIX2PIXHD_ENV_DRY_RUN=1: it chooses the interpreter and creates .venv, then prints the
  install commands instead of running them) against a real externally managed interpreter: a
  relocated copy of this one whose stdlib carries an EXTERNALLY-MANAGED marker, so its pip refuses
  to install. No torch is installed inside a test.
* Without Triton: the package runs a training step and synthesis, silently on the CPU (PyTorch's native norm); asked for the Triton kernels, it says once why it fell back;
  and pip installs it (editable, no index) into an environment that holds every dependency but
  Triton, once the environment markers are those of macOS.
"""
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = "Triton is not importable"


def _clean_env(**extra) -> dict:
    """This process's environment without an active environment or pip settings (pip reads no
    config file: the checks must not depend on this machine's indexes)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _run(cmd, env, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _bundled_wheel() -> Path:
    """A wheel on local disk that any pip can install offline (ensurepip's own)."""
    wheels = sorted((Path(sysconfig.get_path("stdlib")) / "ensurepip" / "_bundled").glob("pip-*.whl"))
    if not wheels:
        pytest.skip("this Python has no ensurepip wheels (a distribution that strips them)")
    return wheels[0]


def _externally_managed_python(root: Path) -> Path:
    """A relocated copy of this interpreter at ``root`` (bin/ and a stdlib of symlinks, pip in its
    site-packages) whose stdlib carries PEP 668's EXTERNALLY-MANAGED marker: what a fresh Debian 12
    or Ubuntu 24.04 has as python3. Not a virtual environment (sys.prefix == sys.base_prefix)."""
    import pip

    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    base_exe = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    stdlib = Path(sysconfig.get_path("stdlib"))
    (root / "bin").mkdir(parents=True)
    lib = root / "lib" / ver
    (lib / "site-packages").mkdir(parents=True)
    exe = root / "bin" / ver
    shutil.copy2(base_exe, exe)
    (root / "bin" / "python3").symlink_to(ver)
    for entry in stdlib.iterdir():
        if entry.name not in ("site-packages", "dist-packages"):
            (lib / entry.name).symlink_to(entry)
    for so in (Path(sys.base_prefix) / "lib").glob("libpython*"):  # for an $ORIGIN/../lib runpath
        (root / "lib" / so.name).symlink_to(so)
    (lib / "site-packages" / "pip").symlink_to(Path(pip.__file__).parent)
    (lib / "EXTERNALLY-MANAGED").write_text(
        "[externally-managed]\nError=a fake system Python made by tests/test_install.py\n")
    probe = _run([exe, "-c", "import sys, sysconfig; print(sys.prefix == sys.base_prefix, "
                             "sysconfig.get_path('stdlib'))"], _clean_env())
    if probe.returncode != 0 or probe.stdout.split() != ["True", str(lib)]:
        pytest.skip(f"this interpreter cannot be relocated for the test: {probe.stdout}{probe.stderr}")
    return root / "bin" / "python3"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def test_scripts_install_into_dot_venv_when_the_system_python_is_externally_managed(tmp_path):
    wheel = _bundled_wheel()
    system = _externally_managed_python(tmp_path / "system")
    # The premise: this interpreter's pip refuses to install, as on Debian 12 / Ubuntu 24.04.
    refused = _run([system, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", wheel],
                   _clean_env())
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused

    venv = tmp_path / "project" / ".venv"
    env = _clean_env(PIX2PIXHD_PYTHON=str(system), PIX2PIXHD_VENV=str(venv), PIX2PIXHD_ENV_DRY_RUN="1")
    py = _venv_python(venv)
    for script, extras, created in (("scripts/test.sh", "[test]", True),
                                    ("scripts/main_job.sh", "", False)):
        out = _run(["bash", script], env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert (f"creating {venv}" in out.stdout) == created, out.stdout
        assert (f"{venv} (reused" in out.stdout) == (not created), out.stdout
        installs = [shlex.split(line[len("would run:"):]) for line in out.stdout.splitlines()
                    if line.startswith("would run:")]
        # every install goes to .venv's interpreter, none to the system one
        pip = [str(py), "-m", "pip", "install", "-q"]
        assert installs == [pip + ["torch==2.13.0", 'triton==3.8.0; platform_system == "Linux"'],
                            pip + ["-e", f"{ROOT}{extras}"]], out.stdout
        assert out.stdout.rstrip().endswith(f"python: {py}")
    # .venv is a virtual environment of the system Python, and its pip installs where the
    # system's refused.
    assert f"home = {system.parent}" in (venv / "pyvenv.cfg").read_text()
    ok = _run([py, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", wheel], _clean_env())
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_scripts_use_the_active_virtual_environment(tmp_path):
    active = tmp_path / "active"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(active)], check=True)
    unused = tmp_path / ".venv"
    out = _run(["bash", "scripts/test.sh"],
               _clean_env(VIRTUAL_ENV=str(active), PIX2PIXHD_VENV=str(unused), PIX2PIXHD_ENV_DRY_RUN="1"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the active one" in out.stdout
    assert out.stdout.rstrip().endswith(f"python: {_venv_python(active)}")
    assert not unused.exists()


def _fake_package(site: Path, name: str, version: str) -> None:
    """An importable stand-in that only answers __version__ (enough for env.sh's question)."""
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(f"__version__ = {version!r}\n")


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.mark.parametrize("torch_version, triton, expect", [
    ("2.11.0+cu130", True, "keep both"),      # a GPU machine's image: its CUDA torch stays
    ("2.11.0+cu130", False, "add triton"),    # torch kept, the missing triton installed
    ("2.3.1", True, "pinned torch"),          # too old for the package: the pinned one goes in
    ("2.13.0+cpu", True, "keep pinned"),      # the pinned one already: said so, not "kept (not replaced)"
])
def test_scripts_keep_the_torch_an_environment_already_has(tmp_path, torch_version, triton, expect):
    active = tmp_path / "active"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(active)], check=True)
    site = _site_packages(active)
    _fake_package(site, "torch", torch_version)
    if triton:
        _fake_package(site, "triton", "3.6.0")
    out = _run(["bash", "scripts/test.sh"],
               _clean_env(VIRTUAL_ENV=str(active), PIX2PIXHD_ENV_DRY_RUN="1"))
    assert out.returncode == 0, out.stdout + out.stderr
    installs = [shlex.split(line[len("would run:"):]) for line in out.stdout.splitlines()
                if line.startswith("would run:")]
    pip = [str(_venv_python(active)), "-m", "pip", "install", "-q"]
    package = pip + ["-e", f"{ROOT}[test]"]
    if expect == "pinned torch":
        assert installs == [pip + ["torch==2.13.0", 'triton==3.8.0; platform_system == "Linux"'],
                            package], out.stdout
        assert "already installed" not in out.stdout
    else:
        assert f"torch {torch_version} is already installed" in out.stdout, out.stdout
        pinned = expect == "keep pinned"
        assert ("(the pinned version)" in out.stdout) == pinned, out.stdout
        assert ("kept (not replaced by the pinned torch==2.13.0)" in out.stdout) != pinned, out.stdout
        extra = [] if triton else [pip + ['triton==3.8.0; platform_system == "Linux"']]
        assert installs == extra + [package], out.stdout


# Run in a fresh interpreter: where setuptools, _distutils_hack, pkg_resources and wheel are (their
# packages' __init__), setuptools' version and the .dist-info folders of setuptools and wheel.
_TOOLS_PROBE = """
import importlib.metadata, importlib.util, json
spec = {}
for m in ("setuptools", "_distutils_hack", "pkg_resources", "wheel"):
    s = importlib.util.find_spec(m)
    spec[m] = s.origin if s is not None and s.origin else None
dist = []
for d in ("setuptools", "wheel"):
    try:
        dist.append(str(importlib.metadata.distribution(d)._path))
    except (importlib.metadata.PackageNotFoundError, AttributeError):
        pass
version = importlib.metadata.version("setuptools") if spec["setuptools"] else ""
print(json.dumps({"spec": spec, "dist": dist, "setuptools_version": version}))
"""


def test_offline_install_falls_back_to_the_package_alone_and_names_what_is_missing(tmp_path):
    """No index reachable (PIP_NO_INDEX=1): pip cannot fetch the dependencies of .[test], so
    env.sh installs the package alone (editable, no dependencies, no build isolation) and then
    stops on the required dependencies that are missing, naming them."""
    import json

    import pip
    # What this environment would lend, asked of a fresh interpreter: in this process an earlier
    # test may have imported setuptools (torch.compile's inductor does), which puts its _vendor
    # folder on sys.path, so that "wheel" would be found there, a vendored copy pip then misreads.
    found = json.loads(subprocess.run([sys.executable, "-c", _TOOLS_PROBE], capture_output=True, text=True,
                                      check=True).stdout)
    if found["spec"].get("setuptools") is None:
        pytest.skip("no setuptools in this environment to lend the test's venv")
    st_version = found["setuptools_version"]
    if tuple(int(v) for v in st_version.split(".")[:2]) < (70, 1) and found["spec"].get("wheel") is None:
        pytest.skip(f"setuptools {st_version} builds wheels only with the 'wheel' package, "
                    "which this environment lacks")
    # A venv holding nothing but pip and setuptools (this environment's, through a .pth), a stand-in
    # torch and triton: numpy and pillow are missing, and no index is reachable.
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = _venv_python(venv)
    site = _site_packages(venv)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "pip").symlink_to(Path(pip.__file__).parent)
    for extra, origin in found["spec"].items():
        if origin:
            (tools / extra).symlink_to(Path(origin).parent)
    for info in found["dist"]:  # their entry points register setup()'s keywords and commands
        (tools / Path(info).name).symlink_to(info)
    (site / "a_tools.pth").write_text(f"{tools}\n")  # before distutils-precedence.pth (sorted)
    precedence = Path(found["spec"]["setuptools"]).parents[1] / "distutils-precedence.pth"
    if precedence.is_file():  # setuptools' own distutils, as in any environment that has it
        shutil.copy2(precedence, site / precedence.name)
    _fake_package(site, "torch", "2.11.0+cu130")
    _fake_package(site, "triton", "3.6.0")
    out = _run(["bash", "scripts/test.sh"],
               _clean_env(VIRTUAL_ENV=str(venv), PIP_NO_INDEX="1"), timeout=600)
    assert out.returncode != 0
    assert "torch 2.11.0+cu130 is already installed" in out.stdout, out.stdout
    assert "installing the package alone" in out.stderr, out.stderr[-3000:]
    assert "required and not installed: numpy, pillow" in out.stderr, out.stderr[-3000:]
    # The package itself did go in: pip lists it (editable, from this tree).
    shown = _run([py, "-m", "pip", "show", "pix2pixhd"], _clean_env())
    assert shown.returncode == 0 and "Name: pix2pixhd" in shown.stdout, shown.stdout + shown.stderr


def test_scripts_refuse_a_python_older_than_3_10_with_the_fix(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho '3.9 0'\n")  # answers the version question as a 3.9 would
    old.chmod(0o755)
    out = _run(["bash", "scripts/main_job.sh"],
               _clean_env(PIX2PIXHD_PYTHON=str(old), PIX2PIXHD_VENV=str(tmp_path / ".venv")))
    assert out.returncode != 0
    assert "Python 3.9" in out.stderr and "3.10 or newer" in out.stderr and "PIX2PIXHD_PYTHON" in out.stderr
    assert not (tmp_path / ".venv").exists()


# ---- without Triton ---------------------------------------------------------------------------

_TRAIN_AND_SYNTHESIZE = r'''
import sys, warnings
sys.modules["triton"] = None  # `import triton` fails, as where no wheel exists
warnings.simplefilter("always")  # the warnings filter dedups nothing: "once" is the module's
from pathlib import Path
from pix2pixhd.cli import synthesize_main, train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
import importlib
K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
root = Path(sys.argv[1])
generate(root / "data", n_train=2, n_test=1, width=64, height=32, seed=0)
train_main(["--dataroot", str(root / "data"), "--checkpoints_dir", str(root / "ck"), "--name", "t",
            "--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--ngf", "8",
            "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "8", "--n_layers_D", "2",
            "--no_vgg_loss", "--batchSize", "2", "--nThreads", "0", "--no_progress",
            "--no_tensorboard", "--no_html", "--niter", "1", "--niter_decay", "0", "--device", "cpu"])
rc = synthesize_main(["--checkpoint", str(root / "ck" / "t"), "--input", str(root / "data" / "test_label"),
                      "--inst", str(root / "data" / "test_inst"), "--out", str(root / "out"),
                      "--no_progress"])
assert rc == 0, rc
print("triton module:", sys.modules["triton"], "| not found:", K._triton_not_found())
print("--- asked for triton", file=sys.stderr, flush=True)   # CPU 'auto' above: silent
import torch
x = torch.randn(1, 2, 4, 4)
K.instance_norm_act(x, impl="triton"); K.instance_norm_act(x, impl="triton")
'''


def test_without_triton_training_and_synthesis_run_and_say_why_once(tmp_path):
    env = _clean_env()
    env.pop("TRITON_INTERPRET", None)
    out = _run([sys.executable, "-c", _TRAIN_AND_SYNTHESIZE, tmp_path], env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "triton module: None | not found: " in out.stdout  # Triton really was absent
    run, asked = out.stderr.split("--- asked for triton")
    assert FALLBACK not in run, run[-3000:]   # CPU 'auto' is PyTorch's native norm, silently
    assert asked.count(FALLBACK) == 1, asked[-3000:]
    assert "runs in PyTorch" in asked and "Linux only" in asked
    assert (tmp_path / "ck" / "t" / "config.json").is_file()
    assert len(list((tmp_path / "out" / "test_img").glob("*.png"))) == 1


# Imported at start-up by the test environment below when MACOS_MARKERS=1: pip evaluates
# environment markers as on an Apple-silicon Mac. Only the markers: wheel tags, sys.platform and
# everything else stay this machine's.
_MACOS_MARKERS = """import pip._vendor.packaging.markers as markers

_this_machine = markers.default_environment


def _macos():
    return dict(_this_machine(), platform_system="Darwin", sys_platform="darwin",
                platform_machine="arm64")


markers.default_environment = _macos
"""


def _environment_without_triton(root: Path) -> Path:
    """A virtual environment in which every distribution this interpreter has installed is
    importable, and visible to pip, except Triton (and this project's own install)."""
    linked = root / "linked"
    linked.mkdir(parents=True)
    skip = ("triton", "pix2pixhd", "__editable__", "_pix2pixhd")
    for site_dir in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
        for entry in Path(site_dir).iterdir():
            low = entry.name.lower()
            if low.startswith(skip) or entry.suffix == ".pth" or (linked / entry.name).exists():
                continue  # .pth files are start-up hooks (editable installs among them), not packages
            (linked / entry.name).symlink_to(entry)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = _venv_python(venv)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     _clean_env()).stdout.strip())
    # .pth files run in name order: the linked packages (pip among them) first.
    (site / "_a_linked.pth").write_text(f"import site; site.addsitedir({str(linked)!r})\n")
    (site / "_macos_markers.py").write_text(_MACOS_MARKERS)
    (site / "_b_macos_markers.pth").write_text(
        "import os; os.environ.get('MACOS_MARKERS') == '1' and __import__('_macos_markers')\n")
    return py


def test_pip_installs_the_package_without_triton_where_triton_has_no_wheels(tmp_path):
    src = tmp_path / "src"  # the project's installable files; the shared tree is not written to
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pix2pixhd", "kernels", "datasets"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    py = _environment_without_triton(tmp_path / "env")
    install = [py, "-m", "pip", "install", "--no-index", "--no-build-isolation", "-e", src]

    # Linux markers: triton is required and nowhere to be found, so the install fails on it
    # (the environment truly has no triton, and the marker is what decides).
    linux = _run(install, _clean_env())
    assert linux.returncode != 0 and "requirement triton" in linux.stderr, linux.stdout + linux.stderr
    # macOS markers: the same install, with every other requirement resolved, succeeds.
    mac = _run(install, _clean_env(MACOS_MARKERS="1"))
    assert mac.returncode == 0, mac.stdout[-3000:] + mac.stderr[-3000:]

    check = _run([py, "-W", "always", "-c", r'''
import importlib.metadata as md, importlib.util, platform, torch
import pix2pixhd
from pix2pixhd.kernels import instance_norm_act
from packaging.requirements import Requirement
x = torch.randn(1, 2, 4, 4)
instance_norm_act(x); instance_norm_act(x, impl="triton"); instance_norm_act(x, impl="triton")
req = [r for r in map(Requirement, md.requires("pix2pixhd")) if r.name == "triton"][0]
print("spec", importlib.util.find_spec("triton"), "| from", pix2pixhd.__file__)
print("marker", req.marker, "|", *(req.marker.evaluate({"platform_system": s})
                                   for s in ("Linux", "Darwin", "Windows")))
'''], _clean_env(), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"spec None | from {src / 'pix2pixhd'}" in check.stdout  # the editable copy, no triton
    assert 'marker platform_system == "Linux" | True False False' in check.stdout
    assert check.stderr.count(FALLBACK) == 1, check.stderr


# `python train_hd.py` in a checkout that is not installed editable: the checkout's pix2pixhd/
# comes first (the script's folder), and no finder maps kernels/ and datasets/ into it.
UNINSTALLED_CHECKOUT = r"""
import runpy, sys
from pathlib import Path
copy = Path.cwd().resolve()
# no editable install: drop setuptools' editable finder (a .pth in site-packages installs it)
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, str(copy))   # what `python train_hd.py` puts first: the script's folder
import pix2pixhd, pix2pixhd.kernels.instance_norm_act, pix2pixhd.datasets.synthetic_streets
from pix2pixhd.datasets.convert_facades import convert
for name in ("pix2pixhd", "pix2pixhd.kernels.instance_norm_act", "pix2pixhd.datasets.convert_facades"):
    f = sys.modules[name].__file__
    assert Path(f).resolve().is_relative_to(copy), f"{name} from {f}"
from pix2pixhd.datasets.synthetic_streets import generate
generate(copy / "data", n_train=2, n_test=0, width=64, height=32, seed=0)
sys.argv = ["train_hd.py", "--dry_run", "--no_vgg_loss", "--dataroot", str(copy / "data")]
runpy.run_path("train_hd.py", run_name="__main__")
"""


def test_train_hd_runs_from_a_checkout_that_is_not_installed(tmp_path):
    """setup.py maps kernels/ and datasets/ into pix2pixhd (package_dir); a checkout run without an
    editable install (a plain install, or none with the dependencies present) must find them too."""
    copy = tmp_path / "checkout"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("pix2pixhd", "kernels", "datasets"):
        shutil.copytree(ROOT / d, copy / d, ignore=skip)
    shutil.copy2(ROOT / "train_hd.py", copy / "train_hd.py")
    r = _run([sys.executable, "-I", "-c", UNINSTALLED_CHECKOUT], _clean_env(OMP_NUM_THREADS="1"),
             cwd=copy, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "dry_run: True" in r.stdout, r.stdout[-2000:]


# another checkout's editable install, as a finder that maps pix2pixhd.kernels/.datasets to its folders
OTHER_CHECKOUT = """
import importlib.util, sys
other = sys.argv[1]
class Other:
    def find_spec(self, name, path=None, target=None):
        if name in ("pix2pixhd.kernels", "pix2pixhd.datasets"):
            init = f"{other}/{name.split('.')[1]}/__init__.py"
            return importlib.util.spec_from_file_location(name, init, submodule_search_locations=[init[:-12]])
sys.meta_path.insert(0, Other())
sys.path.insert(0, sys.argv[2])
import pix2pixhd, pix2pixhd.kernels, pix2pixhd.datasets
print(pix2pixhd.__file__, pix2pixhd.kernels.__file__, pix2pixhd.datasets.__file__)
"""


def test_a_checkout_runs_its_own_kernels_and_datasets_beside_another_editable_install(tmp_path):
    """A checkout run as `python train_hd.py` while another checkout is installed editable: its own
    kernels/ and datasets/, not the other install's (which mixed two versions of the code)."""
    for sub in ("kernels", "datasets"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
    p = subprocess.run([sys.executable, "-c", OTHER_CHECKOUT, str(tmp_path), str(ROOT)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == [str(ROOT / "pix2pixhd" / "__init__.py"), str(ROOT / "kernels" / "__init__.py"),
                                str(ROOT / "datasets" / "__init__.py")]

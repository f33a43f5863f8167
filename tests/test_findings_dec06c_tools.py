"""Option checks of the tools around training (scan, the synthetic dataset, the scripts and
benchmarks): a value out of range is one error line naming the option, the value and the fix,
before any folder is read, cleared or written."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import cyclegan_quality as C  # noqa: E402
from benchmarks import quality as Q  # noqa: E402
from pix2pixhd.cli import resolve_config  # noqa: E402
from pix2pixhd.data.__main__ import main as scan_main  # noqa: E402
from pix2pixhd.datasets import synthetic_streets as ss  # noqa: E402
from pix2pixhd.errors import ConfigError, run  # noqa: E402


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error line"
    return err[-1]


@pytest.fixture(scope="module")
def streets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("streets") / "d"
    ss.generate(root, n_train=2, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.mark.parametrize("opt,value", [("label_nc", "-3"), ("n_downsample_global", "-1"), ("loadSize", "-5"),
                                       ("fineSize", "0"), ("batchSize", "0"), ("n_local_enhancers", "0")])
def test_scan_refuses_what_training_refuses_with_trainings_line(streets, capsys, opt, value):
    with pytest.raises(ConfigError) as want:
        resolve_config(["--dataroot", str(streets), f"--{opt}", value])
    assert run(scan_main, ["scan", str(streets), f"--{opt}", value]) == 1
    out, err = capsys.readouterr()
    assert err.strip() == f"error: {want.value}", err
    assert "[train]" not in out   # refused before any split is read


def test_scan_refuses_required_multiple_below_one(streets, capsys):
    assert run(scan_main, ["scan", str(streets), "--required_multiple", "0"]) == 1
    assert _last_error(capsys).startswith("error: --required_multiple 0: must be >= 1")


@pytest.mark.parametrize("opt,value", [("n_train", "-1"), ("n_test", "-1"), ("seed", "-5")])
def test_synthetic_streets_refuses_negative_counts_before_clearing(tmp_path, capsys, opt, value):
    out = tmp_path / "d"
    ss.generate(out, n_train=2, n_test=1, width=64, height=32, seed=0)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert run(ss.main, ["--out", str(out), f"--{opt}", value]) == 1
    assert _last_error(capsys) == (f"error: synthetic_streets: --{opt} {value}: must be a whole number >= 0; "
                                   f"pass --{opt} 0 or more")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before   # nothing cleared


def test_synthetic_streets_refuses_an_empty_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(ss.main, ["--out", "", "--n_train", "1", "--n_test", "0"]) == 1
    assert "--out '' is empty" in _last_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_quality_compare_of_a_folder_without_state_json(tmp_path):
    with pytest.raises(SystemExit) as e:
        Q.main(["--compare", str(tmp_path / "nonexist")])
    assert str(e.value) == (f"error: --compare {tmp_path / 'nonexist'}: not a quality run (no state.json; no "
                            "such folder); give run folders that benchmarks/quality.py --out wrote")


@pytest.mark.parametrize("value,says", [("abc", "'abc' is not WIDTHxHEIGHT"),
                                        ("0x0", "0x0: each side must be a multiple of 16 and at least 32")])
def test_numerics_check_parses_and_checks_fp32_res(capsys, value, says):
    nc = _script("numerics_check")
    with pytest.raises(SystemExit) as e:
        nc.build_parser().parse_args(["--fp32_res", value])
    assert e.value.code == 2
    assert f"error: argument --fp32_res: {says}" in _last_error(capsys)
    assert nc.build_parser().parse_args(["--fp32_res", "64X32"]).fp32_res == (64, 32)


@pytest.mark.parametrize("case", ["file", "under_file", "timeout"])
def test_elastic_demo_checks_workdir_and_timeout_first(tmp_path, capsys, case):
    demo = _script("elastic_demo")
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = {"file": ["--workdir", str(afile)], "under_file": ["--workdir", str(afile / "sub")],
            "timeout": ["--workdir", str(tmp_path / "w"), "--timeout", "-1"]}[case]
    assert run(demo.main, argv) == 1   # a ConfigError: one error line, status 1
    err = _last_error(capsys)
    assert (f"--workdir {argv[1]}: {afile} is a file" in err if case != "timeout"
            else "--timeout -1.0: expected more than 0 seconds" in err), err
    assert not (tmp_path / "w").exists()


def test_ablations_check_train_options_before_preparing_data(tmp_path, capsys):
    abl = _script("ablations")
    (tmp_path / "facades" / "train").mkdir(parents=True)
    assert run(abl.main, ["--facades", str(tmp_path / "facades"), "--out", str(tmp_path / "out"), "--ngf", "0",
                          "--only", "l1"]) == 1
    assert "error: --ngf 0: must be >= 1" in _last_error(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("opt,value,says", [("lambda_identity", "-1", "--lambda_identity -1.0: must be >= 0"),
                                            ("budget_minutes", "-5", "--budget_minutes -5.0: expected more than 0"),
                                            ("compare", "nonexist", "--compare nonexist: not a quality run")])
def test_cyclegan_quality_checks_options_before_the_split(tmp_path, capsys, opt, value, says):
    assert run(C.main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), f"--{opt}", value]) == 1
    assert f"error: {says}" in _last_error(capsys)
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_ablations_name_their_own_n_val_when_it_leaves_no_training_images(tmp_path, capsys):
    """convert_facades said "--holdout 40 leaves no training images", an option ablations.py lacks,
    in a traceback; now one line naming --n_val, before anything is made."""
    abl = _script("ablations")
    (tmp_path / "facades" / "train").mkdir(parents=True)
    (tmp_path / "facades" / "train" / "1.jpg").write_bytes(b"")
    assert run(abl.main, ["--facades", str(tmp_path / "facades"), "--out", str(tmp_path / "out"), "--only", "l1"]) == 1
    assert "error: --n_val 40 leaves no training images (1 in " in _last_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_user_error_from_deeper_down_is_one_line_from_the_script(tmp_path):
    """scripts/ablations.py on a facades file that is no image: convert_facades' error, raised below
    main, was a PIL traceback; it is one error line (status 1) through pix2pixhd.errors.run, as
    in benchmarks/quality.py and cyclegan_quality.py."""
    import subprocess
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "f" / "train").mkdir(parents=True)
    for n in (1, 2):
        (tmp_path / "f" / "train" / f"{n}.jpg").write_bytes(b"")
    p = subprocess.run([sys.executable, str(root / "scripts" / "ablations.py"), "--facades", str(tmp_path / "f"),
                        "--out", str(tmp_path / "out"), "--n_val", "1", "--only", "l1"],
                       capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 1, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'f' / 'train'}/") and "Traceback" not in p.stderr
    for script in ("benchmarks/quality.py", "benchmarks/cyclegan_quality.py"):
        assert (root / script).read_text().rstrip().endswith("sys.exit(run(main))"), script

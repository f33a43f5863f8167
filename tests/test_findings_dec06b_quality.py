"""benchmarks/quality.py and scripts/ablations.py, findings of 6 Dec (b): --compare refuses runs of
different splits and marks SSIM of the old implementation, --size is checked against the recipe's
generator before any work, the resume command runs from any folder, the refusals are one
``error:`` line naming the caller's option and the fix. No training: state.json files are written
by hand, and the refusals come before any work."""
from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from benchmarks import quality

REPO = Path(__file__).resolve().parents[1]
SEG = {"pixel_acc": 0.5, "class_acc": 0.4, "mean_iou": 0.3}


def _state(recipe: str, size: int = 128, n_val: int = 100, ssim_impl: str | None = None) -> dict:
    point = {"epoch": 2, "train_cpu_min": 5.0, "train_wall_min": 6.0, "psnr": 12.0, "ssim": 0.3,
             "grid": 2.0, "seg": SEG}
    if ssim_impl:
        point["ssim_impl"] = ssim_impl
    return {"run": {"recipe": recipe, "data": {"src": "/x/facades", "n_val": n_val, "split_seed": 0,
                                               "size": size}},
            "references": {"real photos (ceiling)": {"seg": SEG, "grid": 1.0, "psnr": "inf", "ssim": 1.0}},
            "points": [point]}


def _write(folder: Path, state: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps(state))
    return folder


def test_compare_refuses_runs_of_different_splits_naming_them(tmp_path):
    # the fault: one table under the first run's reference rows and n_val, no warning
    a = _write(tmp_path / "a", _state("a"))
    b = _write(tmp_path / "b", _state("b", size=32))
    with pytest.raises(SystemExit) as e:
        quality.main(["--compare", str(a), str(b)])
    msg = str(e.value.code)
    assert msg.startswith("error: ") and "\n" not in msg
    assert str(a) in msg and str(b) in msg and "--size 128 vs 32" in msg
    # the same split compares (the source folder's path is not part of it)
    c = _write(tmp_path / "c", {**_state("c"), "run": {**_state("c")["run"],
                                                       "data": {**_state("c")["run"]["data"], "src": "/y/facades"}}})
    assert "| c | 2 |" in quality.compare([a, c], None, None)


def test_compare_refuses_a_data_folder_of_another_split(tmp_path):
    # the fault: --data of another split swapped in that folder's reference rows unchecked
    a = _write(tmp_path / "a", _state("a"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "quality_data.json").write_text(json.dumps({"spec": {"src": "/x/facades", "n_val": 40,
                                                                 "split_seed": None, "size": 128}}))
    with pytest.raises(SystemExit) as e:
        quality.main(["--compare", str(a), "--data", str(data)])
    msg = str(e.value.code)
    assert msg.startswith("error: --data") and "another split" in msg and "--n_val 40 vs 100" in msg


def test_compare_data_without_scorer_cache_is_an_error(tmp_path):
    # the fault: "holds 0 different scorer caches ([])... or remove the stale ones", exit 0
    a = _write(tmp_path / "a", _state("a"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "quality_data.json").write_text(json.dumps({"spec": _state("a")["run"]["data"]}))
    with pytest.raises(SystemExit) as e:
        quality.main(["--compare", str(a), "--data", str(data)])
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "no scorer cache" in msg   # exit 1
    assert "stale" not in msg and "--prepare_only" in msg


def test_ssim_of_the_old_implementation_is_marked():
    # the fault: old records' torchmetrics SSIM and new runs' SSIM in one unmarked column
    old, new = _state("old"), _state("new", ssim_impl=quality.SSIM_IMPL)
    text = quality.table_md([old, new])
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| 0.300‡ |" in rows["old"] and "| 0.300 |" in rows["new"]
    assert "| 1.000 |" in rows["real photos (ceiling)"]      # 1 for identical images in both
    assert sum(line.startswith("‡SSIM of a record that names no implementation") and "torchmetrics" in line
               for line in text.splitlines()) == 1
    assert "‡" not in quality.table_md([new])


def test_size_the_recipes_generator_cannot_take_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    # the fault: --recipe pix2pix_l1_cgan --size 64 failed in train.log after the split and segmenter
    monkeypatch.chdir(tmp_path)
    from pix2pixhd.errors import ConfigError, run
    assert run(quality.main, ["--recipe", "pix2pix_l1_cgan", "--size", "64", "--out", "out", "--src", "nowhere"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: --size 64 with --recipe pix2pix_l1_cgan" in err and "128" in err
    assert not (tmp_path / "out").exists()
    # pix2pixHD's global generator takes 64
    a = quality.build_parser().parse_args(["--recipe", "pix2pixhd_global", "--size", "64", "--src", "nowhere"])
    with pytest.raises(ConfigError) as e:
        quality.check_options(quality.build_parser(), a)
    assert "--src nowhere" in str(e.value)      # got past --size to the next check


def test_resume_command_runs_from_any_folder(tmp_path):
    # the fault: "python benchmarks/quality.py ..." worked only from the repository root
    spec = quality.DataSpec(str(tmp_path / "src"))
    cmd = shlex.split(quality.resume_command("pix2pix_l1", tmp_path / "o", tmp_path / "d", spec,
                                             budget_minutes=1.0, eval_every_epochs=1, max_epochs=0,
                                             seed=0, threads=1, inception=None, no_fid=True))
    assert os.path.isabs(cmd[1]) and Path(cmd[1]) == REPO / "benchmarks" / "quality.py"
    assert cmd[cmd.index("--data") + 1] == str(tmp_path / "d")


def test_resume_with_other_settings_is_one_error_line_offering_the_runs_own(tmp_path):
    # the fault: "... other settings {'no_fid': (True, False)}; use another --out", no error: prefix
    out = tmp_path / "out"
    spec = quality.DataSpec(str(tmp_path / "src"), n_val=2, size=32)
    recipe = quality.RECIPES["pix2pixhd_global"]
    ident = {"recipe": recipe.name, "flags": list(recipe.flags), "eval_every_epochs": 1,
             "data": quality.asdict(spec), "seed": 0, "threads": 1, "no_fid": True, "inception": None}
    _write(out, {"run": ident, "points": []})
    with pytest.raises(SystemExit) as e:
        quality.run_benchmark(recipe, out, budget_minutes=1, data=tmp_path / "data", spec=spec, no_fid=False)
    msg = str(e.value.code)
    assert msg.startswith("error: ") and "\n" not in msg and "--no_fid" in msg and "another --out" in msg
    assert not (tmp_path / "data").exists()


def test_ablations_on_another_split_names_its_own_option(tmp_path):
    # the fault: "pass another --data folder", an option ablations.py does not have
    spec = importlib.util.spec_from_file_location("ablations_dec06b", REPO / "scripts" / "ablations.py")
    abl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = abl
    spec.loader.exec_module(abl)
    (tmp_path / "src" / "train").mkdir(parents=True)
    for n in range(1, 42):   # more than the default --n_val 40 (not read: the split is refused first)
        (tmp_path / "src" / "train" / f"{n}.jpg").write_bytes(b"")
    data = tmp_path / "out" / "data"
    data.mkdir(parents=True)
    (data / "quality_data.json").write_text(json.dumps({"spec": {"src": "/elsewhere", "n_val": 9,
                                                                 "split_seed": 3, "size": 128}}))
    with pytest.raises(SystemExit) as e:
        abl.main(["--facades", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
    msg = str(e.value.code)
    assert msg.startswith("error: ") and "another --out folder" in msg and "--data" not in msg

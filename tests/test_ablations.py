"""scripts/ablations.py on the product path: each variant's train_hd.py command resolves to the
paper's settings, and the study runs end to end on a few synthetic facades (split written by the
converter, training in train_hd.py's own process reading the split with the data module, full
dataset validation, synthesis, scores, resume by skipping finished variants, the doc block)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from pix2pixhd.cli import resolve_config
from pix2pixhd.engine import photos_dir
from pix2pixhd.errors import ConfigError
from pix2pixhd.models import build_discriminator, build_generator
from pix2pixhd.pix2pix_networks import receptive_field
from tests.file_state import file_state as _file_state
from tests.test_quality import _facades

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def abl():
    spec = importlib.util.spec_from_file_location("ablations", REPO / "scripts" / "ablations.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def l1_trained(abl, tmp_path_factory):
    """The study's first call, --stage train --only l1 on 6 synthetic facades, made once for the
    module; returns fresh(), which puts back what that call left (at the same paths, mtimes
    kept) and returns (the facades folder, --out, the options)."""
    root = tmp_path_factory.mktemp("ablations")
    src = _facades(root / "src", 6)        # 1..6; validation: the last 2 by number
    out, kept = root / "out", root / "after_training_l1"
    argv = ["--facades", str(src), "--out", str(out), "--n_val", "2", "--ngf", "4", "--ndf", "4",
            "--seg_steps", "2", "--seg_batch", "2", "--seg_channels", "4", "--no_kid"]
    assert abl.main(argv + ["--only", "l1", "--stage", "train"]) == 0
    shutil.copytree(out, kept)

    def fresh():
        shutil.rmtree(out)
        shutil.copytree(kept, out)
        return src, out, argv
    return fresh


def test_ablation_variants_resolve_to_the_papers_settings(abl, tmp_path):
    a = abl.build_parser().parse_args([])
    data = tmp_path / "data" / "facades"
    got = {}
    for v in abl.VARIANTS:
        argv = abl.variant_argv(v, a, data, tmp_path / "runs")
        opts = [s for s in argv if s.startswith("--")]
        assert len(opts) == len(set(opts)), v.key   # each option once: the logged command is what ran
        cfg = resolve_config(argv)
        got[v.key] = cfg, build_discriminator(cfg)
        # the converted split as a user reads it, validated in full, pix2pix's jitter at 128 px
        assert (str(cfg.dataroot), cfg.phase, cfg.dataset_mode, cfg.label_nc, cfg.no_instance,
                cfg.validate) == (str(data), "train", "cityscapes", 12, True, "full")
        assert (cfg.loadSize, cfg.fineSize, cfg.resize_or_crop, cfg.batchSize) == (143, 128, "resize_and_crop", 1)
        assert (cfg.name, cfg.niter, cfg.niter_decay, cfg.lr, cfg.beta1) == (v.key, 1, 0, 2e-4, 0.5)
        assert ("--ndf" in opts) == (v.key != "l1") and (v.key == "l1" or cfg.ndf == 32)   # l1: no D
    cfg, d = got["l1_cgan"]
    assert (cfg.model, cfg.ngf, cfg.netG_pix2pix, cfg.norm) == ("pix2pix", 32, "unet_128", "batch")
    assert (cfg.lambda_L1, cfg.lambda_GAN, cfg.no_cond_D, cfg.gan_mode) == (100, 1, False, "vanilla")
    assert receptive_field(d) == 70 and d.model[0].in_channels == 12 + 3   # one-hot label + photo
    assert got["l1"][1] is None and got["l1"][0].lambda_L1 == 100
    assert got["gan"][0].lambda_L1 == 0 and got["gan"][1].model[0].in_channels == 3  # unconditional
    assert got["cgan"][0].lambda_L1 == 0 and got["cgan"][1].model[0].in_channels == 15
    assert got["l1_gan"][0].lambda_L1 == 100 and got["l1_gan"][0].no_cond_D
    assert {k: receptive_field(got[k][1]) for k in ("d1", "d16", "d286")} == {"d1": 1, "d16": 16, "d286": 286}
    enc = build_generator(got["encdec_l1_cgan"][0])
    unet = build_generator(got["l1_cgan"][0])
    assert sum(p.numel() for p in enc.parameters()) < sum(p.numel() for p in unet.parameters())
    hd = got["hd_gan_fm"][0]
    assert (hd.model, hd.netG, hd.no_ganFeat_loss, hd.no_vgg_loss, hd.lambda_GAN, hd.lambda_L1) == \
        ("pix2pixhd", "global", False, True, 1, 0)
    assert (hd.ngf, hd.n_downsample_global, hd.n_blocks_global, hd.num_D, hd.norm, hd.gan_mode) == \
        (16, 3, 4, 2, "instance", "lsgan")


def test_ablation_merge_flags_replaces_in_place_and_appends_new_options(abl):
    base = ["--ngf", "32", "--no_instance", "--niter", "1"]
    assert abl.merge_flags(base, ["--ngf", "16", "--no_cond_D", "--no_instance", "--num_D", "2"]) == \
        ["--ngf", "16", "--no_instance", "--niter", "1", "--no_cond_D", "--num_D", "2"]


def test_ablations_run_on_the_product_path_and_resume(abl, l1_trained, tmp_path, capsys):
    src, out, argv = l1_trained()   # after abl.main(argv + ["--only", "l1", "--stage", "train"])
    doc = tmp_path / "ablations.md"

    facades = out / "data" / "facades"
    assert sorted(p.stem for p in (facades / "val_img").iterdir()) == ["5", "6"]
    assert sorted(p.stem for p in (facades / "train_img").iterdir()) == ["1", "2", "3", "4"]
    run = out / "runs" / "l1"
    cfg = json.loads((run / "config.json").read_text())   # written by train_hd.py's own process
    assert (cfg["dataroot"], cfg["phase"], cfg["dataset_mode"], cfg["validate"]) == \
        (str(facades), "train", "cityscapes", "full")
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["train_cpu_s"] > 0    # 4 training images, 1 epoch
    assert f"$ python train_hd.py {' '.join(summary['argv'])}" in (run / "train.log").read_text()
    assert cfg["lambda_GAN"] == 0 and cfg["name"] == "l1"
    ckpt = _file_state(run / "epoch_0001.pt")

    # all stages: l1 is skipped (finished), the pix2pixHD row trains (passing full validation)
    capsys.readouterr()
    assert abl.main(argv + ["--only", "l1,hd_gan_fm", "--doc", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert "[l1] already trained" in printed and _file_state(run / "epoch_0001.pt") == ckpt
    hd = json.loads((out / "runs" / "hd_gan_fm" / "config.json").read_text())
    assert (hd["model"], hd["label_nc"], hd["validate"], hd["dataroot"]) == ("pix2pixhd", 12, "full", str(facades))
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {"l1", "hd_gan_fm"} <= rows.keys()
    for k in ("l1", "hd_gan_fm"):
        assert sorted(p.stem for p in photos_dir(out / "fakes" / k).iterdir()) == ["5", "6"]
        assert 0 <= rows[k]["pixel_acc"] <= 1 and rows[k]["steps"] == 4 and rows[k]["kid"] is None
    labels = [r["label"] for r in rows.values() if r["table"] == "reference"]
    assert labels == ["real photos (ceiling)", "real photos blurred σ=4 px", "colour label maps (floor)"]
    text = doc.read_text()
    assert f"python3 scripts/ablations.py {' '.join(argv)} --only l1,hd_gan_fm --doc {doc}" in text
    assert "| L1 | " in text and "| pix2pixHD global G, GAN+FM | " in text

    # a split other than the one on disk is refused, not silently mixed
    with pytest.raises(SystemExit, match="holds a split"):
        abl.main(argv[:4] + ["--n_val", "3"] + argv[6:] + ["--stage", "score"])


def test_ablations_refuse_a_finished_run_trained_with_other_options(abl, l1_trained, capsys):
    """A finished variant is reused only with the options it was trained with: another --ngf is
    one line naming the run folder, the option with both values and the fix, before anything
    else is trained (d1 first in --only) or scored; the run is untouched. --retrain replaces it."""
    _, out, argv = l1_trained()   # l1 trained with --ngf 4 (argv), nothing scored
    assert argv[argv.index("--ngf") + 1] == "4"
    run = out / "runs" / "l1"
    ckpt = _file_state(run / "epoch_0001.pt")
    for stage in ("all", "score"):
        with pytest.raises(ConfigError) as e:
            abl.main(argv + ["--ngf", "8", "--only", "d1,l1", "--stage", stage])
        msg = str(e.value)
        assert "\n" not in msg and str(run) in msg and "--ngf 4 (this call: 8)" in msg, msg
        assert "another --out" in msg and "options it was trained with" in msg, msg
        assert "--ndf" not in msg and "--dataroot" not in msg, msg   # only what differs
    assert not (out / "runs" / "d1").exists() and not (out / "results.json").exists()
    assert _file_state(run / "epoch_0001.pt") == ckpt
    assert json.loads((run / "config.json").read_text())["ngf"] == 4
    assert abl.main(argv + ["--ngf", "8", "--only", "l1", "--stage", "train", "--retrain"]) == 0
    assert json.loads((run / "config.json").read_text())["ngf"] == 8


def test_an_l1_run_recorded_with_ndf_by_an_older_version_is_still_reused(abl, l1_trained):
    """The l1 variant (no D) no longer passes --ndf, which train_hd.py now refuses without a D; its
    finished runs recorded --ndf and were refused as trained with other options."""
    _, out, argv = l1_trained()
    summary = out / "runs" / "l1" / "train_summary.json"
    rec = json.loads(summary.read_text())
    assert "--ndf" not in rec["argv"]
    rec["argv"] += ["--ndf", "4"]
    summary.write_text(json.dumps(rec))
    a = abl.build_parser().parse_args(argv + ["--only", "l1"])
    manifest = json.loads((out / "data" / "quality_data.json").read_text())
    abl.check_finished(a, abl.select("l1"), manifest, out / "runs")   # no SystemExit
    a = abl.build_parser().parse_args(argv + ["--only", "l1", "--ngf", "8"])
    with pytest.raises(ConfigError, match=r"--ngf 4 \(this call: 8\)"):
        abl.check_finished(a, abl.select("l1"), manifest, out / "runs")


def test_ablations_refuse_a_missing_facades_folder_before_making_any(abl, tmp_path, capsys):
    from pix2pixhd.errors import run
    assert run(abl.main, ["--facades", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--only", "l1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"error: --facades {tmp_path / 'none'}: no train/ folder; point it at the pix2pix "
                        "facades folder (train/N.jpg: photo | colour label map)"), err
    assert not (tmp_path / "out").exists()


def test_training_processes_import_the_checkout_this_process_imported(tmp_path, monkeypatch):
    """train_chunk's process runs in the run folder, where another checkout's editable install
    would provide pix2pixhd: PYTHONPATH names this process's checkout first."""
    import subprocess
    from benchmarks import quality
    seen = {}

    def spy(cmd, env=None, **kw):
        seen.update(env)
        return subprocess.CompletedProcess(cmd, 0)
    monkeypatch.setattr(quality.subprocess, "run", spy)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    quality.train_chunk(["--name", "x"], tmp_path / "log.txt", 1)
    assert seen["PYTHONPATH"].split(":") == [str(REPO), "/elsewhere"]

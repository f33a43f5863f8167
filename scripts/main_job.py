#!/usr/bin/env python3
"""The main job, small enough for 2 CPU cores in about 10 minutes:

  1. generate the synthetic street-scene dataset (Cityscapes layout, train + test),
  2. train_hd.py --stage global   (GlobalGenerator at half resolution, 2-scale D; as in every
     stage, GAN + feature matching + an L1 term to the real photo with weight 100, and
     resize-convolution upsampling instead of the reference's transposed convolutions),
  3. train_hd.py --stage local    (LocalEnhancer at full resolution; global part loaded and frozen),
  4. train_hd.py --stage finetune (everything jointly),
  5. synthesize.py on the test split → results/main_job/index.html (label | synthesized | real)
     and results/main_job/samples.png (the first test scenes: coloured label map | synthesized | real),
  6. the same test split through an untrained generator of the same architecture, as the floor.

Every number it prints is measured in this run: per stage the wall seconds and the CPU minutes
(user + system time of the stage's processes, which a busy machine inflates less than the wall
time). ``--quick`` shrinks everything for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str]) -> tuple[float, float]:
    """Runs ``cmd``; returns its wall seconds and CPU seconds (user + system of the child)."""
    print("\n$ " + " ".join(cmd), flush=True)
    c0, t0 = _cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0, _cpu_seconds(resource.RUSAGE_CHILDREN) - c0


def choose_threads(requested: int, cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """The CPU threads for every stage, and why. ``requested`` > 0 is taken as it is; 0 (auto)
    keeps torch's default (OMP_NUM_THREADS, else the cores) unless other processes already keep
    the cores busy (1-minute load average >= cores - 0.5), then 1: OpenMP threads wait for each
    other at every operation, and with the second core taken by a neighbour a 2-thread step ran
    about 20x slower than a 1-thread one here (README, "The main job")."""
    if requested > 0:
        return requested, "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if load is None else load
    if cores > 1 and load >= cores - 0.5:
        return 1, f"load average {load:.1f} on {cores} cores: the machine is busy"
    return cores, f"{cores} cores, load average {load:.1f}"


def write_sample_sheet(path: Path, label_dir: Path, fake_dir: Path, real_dir: Path, label_nc: int,
                       n: int = 4, gap: int = 4, colors: int | None = 256) -> Path:
    """A PNG (``pix2pixhd.report.write_image_grid``) of the first ``n`` scenes (by file stem) with
    a fake, a label map and a real photo: one row each, coloured label map | synthesized | real,
    under a line of column titles, ``gap`` white pixels apart. With
    ``colors`` it is reduced to that many colours (median cut, no dithering): 4 rows at 256x128
    take ~180 KB instead of ~550 KB (the photos' sensor noise compresses badly), small enough
    for a README; ``None`` keeps every pixel."""
    import numpy as np
    from PIL import Image

    from pix2pixhd.report import _index, write_image_grid
    from pix2pixhd.visualizer import label_colormap
    labels, fakes, reals = _index(label_dir), _index(fake_dir), _index(real_dir)
    stems = [k for k in sorted(fakes) if k in labels and k in reals][:n]
    if not stems:
        raise FileNotFoundError(f"no scene has a label map in {label_dir}, a synthesized photo in "
                                f"{fake_dir} and a real photo in {real_dir}")
    cmap = np.concatenate([label_colormap(max(label_nc, 1)), [[255, 255, 255]]]).astype(np.uint8)
    rows = []
    for k in stems:
        fake = Image.open(fakes[k]).convert("RGB")
        lab = cmap[np.clip(np.asarray(Image.open(labels[k])), 0, label_nc)]
        rows.append([Image.fromarray(lab).resize(fake.size, Image.NEAREST), fake,
                     Image.open(reals[k]).convert("RGB").resize(fake.size)])
    return write_image_grid(rows, path, titles=("label map", "synthesized", "real"), gap=gap,
                            colors=colors, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic_streets")
    p.add_argument("--checkpoints_dir", default="checkpoints")
    p.add_argument("--results", default="results/main_job")
    p.add_argument("--n_train", type=int, default=96)
    p.add_argument("--n_test", type=int, default=12)
    p.add_argument("--width", type=int, default=256, help="full resolution (the local stage's)")
    p.add_argument("--epochs", type=int, nargs=3, default=(30, 6, 4), metavar=("GLOBAL", "LOCAL", "FINETUNE"))
    p.add_argument("--n_downsample_global", type=int, default=3,
                   help="downsamplings of the global generator (trained at half the width)")
    p.add_argument("--batchSize", type=int, default=4, help="images per training step, every stage")
    p.add_argument("--lambda_L1", type=float, default=100.0,
                   help="weight of the L1 term between synthesized and real photo, in every stage "
                        "(0 = the reference's recipe; 100 follows the label maps more closely at "
                        "the same cost: the README's main-job section has the comparison)")
    p.add_argument("--upsample", default="resize", choices=("transpose", "resize"),
                   help="the generators' x2 upsampling (train_hd.py --upsample): nearest resize + 3x3 "
                        "conv, without the transposed convolutions' checkerboard grid, or 'transpose', "
                        "the reference's (the README's main-job section has the comparison)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of every stage (0: OMP_NUM_THREADS if set, else the cores, or 1 "
                        "when the load average says other processes keep the cores busy)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny data, one epoch per stage")
    a = p.parse_args(argv)
    if a.quick:
        a.n_train, a.n_test, a.width, a.epochs = 8, 2, 64, (1, 1, 1)
    py = sys.executable
    threads, why = choose_threads(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)   # the stages run in child processes
    print(f"CPU threads per stage: {threads} ({why})", flush=True)
    w, h = a.width, a.width // 2
    t = {}
    t["data"] = run([py, "-m", "pix2pixhd.datasets.synthetic_streets", "--out", a.data, "--n_train",
                     str(a.n_train), "--n_test", str(a.n_test), "--width", str(w), "--height", str(h)])
    label_nc = json.loads((ROOT / a.data / "classes.json").read_text())["label_nc"]
    common = ["train_hd.py", "--dataroot", a.data, "--checkpoints_dir", a.checkpoints_dir,
              "--label_nc", str(label_nc), "--resize_or_crop", "scale_width", "--batchSize", str(a.batchSize),
              "--nThreads", "1", "--no_vgg_loss", "--print_freq", "10", "--display_freq", "50",
              "--save_epoch_freq", "100", "--validate", "headers", "--lambda_L1", str(a.lambda_L1),
              "--upsample", a.upsample]
    eg, el, ef = a.epochs
    t["global"] = run([py, *common, "--stage", "global", "--name", "main_global", "--loadSize", str(w // 2),
                       "--ngf", "16", "--n_downsample_global", str(a.n_downsample_global), "--n_blocks_global", "3", "--ndf", "16",
                       "--niter", str(eg - eg // 2), "--niter_decay", str(eg // 2)])
    t["local"] = run([py, *common, "--stage", "local", "--name", "main_local", "--loadSize", str(w),
                      "--load_pretrain", f"{a.checkpoints_dir}/main_global", "--n_blocks_local", "2",
                      "--ndf", "16", "--niter", str(el), "--niter_decay", "0", "--niter_fix_global", str(el)])
    t["finetune"] = run([py, *common, "--stage", "finetune", "--name", "main_finetune", "--loadSize", str(w),
                         "--load_pretrain", f"{a.checkpoints_dir}/main_local", "--ndf", "16",
                         "--niter", str(ef - ef // 2), "--niter_decay", str(ef // 2)])
    out = Path(a.results)
    t["synthesis"] = run([py, "synthesize.py", "--checkpoint", f"{a.checkpoints_dir}/main_finetune",
                          "--input", f"{a.data}/test_label", "--inst", f"{a.data}/test_inst",
                          "--real", f"{a.data}/test_img", "--out", str(out)])

    # The floor: the same architecture with its initial (untrained) weights.
    c0, t0 = _cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    import torch

    from pix2pixhd.config import TrainConfig
    from pix2pixhd.report import compare_folders
    from pix2pixhd.synthesis import Synthesizer, synthesize_folder
    from pix2pixhd.models import build_generator
    cfg = TrainConfig.load(ROOT / a.checkpoints_dir / "main_finetune")
    torch.manual_seed(cfg.seed)
    untrained = build_generator(cfg).eval()
    base = out / "untrained"
    synthesize_folder(Synthesizer(untrained, cfg), ROOT / a.data / "test_label", base,
                      inst_dir=ROOT / a.data / "test_inst", progress=False)
    trained_stats = compare_folders(out / "test_img", ROOT / a.data / "test_img")   # synthesis writes a dataset
    floor_stats = compare_folders(base / "test_img", ROOT / a.data / "test_img")
    sheet = write_sample_sheet(out / "samples.png", ROOT / a.data / "test_label", out / "test_img",
                               ROOT / a.data / "test_img", label_nc)
    t["floor"] = (time.perf_counter() - t0, _cpu_seconds(resource.RUSAGE_SELF) - c0)
    # The figures repeat to the last digit on one machine and thread count, not across them (CPU
    # kernels pick their vector instructions by the CPU and split reductions by the thread
    # count), so they are printed with both. The stages inherit this process's thread count.
    sys.path.insert(0, str(ROOT))
    from benchmarks.baseline import describe_device
    ran_on = dict(describe_device(torch.device("cpu")), cpu_isa=torch.backends.cpu.get_cpu_capability())
    recipe = {"n_train": a.n_train, "n_test": a.n_test, "width": a.width, "epochs": list(a.epochs),
              "batchSize": a.batchSize, "n_downsample_global": a.n_downsample_global,
              "lambda_L1": a.lambda_L1, "upsample": a.upsample}
    summary = {"recipe": recipe,
               "seconds": {k: round(v[0], 1) for k, v in t.items()},
               "cpu_minutes": {k: round(v[1] / 60, 2) for k, v in t.items()},
               "total_seconds": round(sum(v[0] for v in t.values()), 1),
               "total_cpu_minutes": round(sum(v[1] for v in t.values()) / 60, 2),
               "machine": ran_on, "trained": trained_stats, "untrained": floor_stats,
               "l1_ratio_trained_over_untrained": trained_stats["l1"] / floor_stats["l1"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n=== main job ===")
    print("recipe: " + ", ".join(f"{k} {v}" for k, v in recipe.items()))
    print(f"{'stage':<10}{'seconds':>9}{'CPU-min':>9}")
    for k in summary["seconds"]:
        print(f"{k:<10}{summary['seconds'][k]:>9.1f}{summary['cpu_minutes'][k]:>9.2f}")
    print(f"{'total':<10}{summary['total_seconds']:>9.1f}{summary['total_cpu_minutes']:>9.2f}")
    print(f"ran on: {ran_on['cpu']} ({ran_on['cpu_isa']}), torch {ran_on['torch']} with "
          f"{ran_on['cpu_threads']} CPU thread(s), Python {ran_on['python']}")
    print(f"test split ({trained_stats['n']} images)   L1      pooled PSNR")
    print(f"  trained (finetune)   {trained_stats['l1']:.4f}  {trained_stats['pooled_psnr']:.2f} dB")
    print(f"  untrained            {floor_stats['l1']:.4f}  {floor_stats['pooled_psnr']:.2f} dB")
    print(f"results page: {out / 'index.html'}")
    print(f"sample sheet: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

A rerun starts from scratch and gives the same results: the dataset is written anew (the same
seed, the same images), each training stage replaces its earlier run (train_hd.py --overwrite:
the old run folder is moved aside until the new run's first checkpoint, then deleted), and the
results folder is rewritten (synthesize.py --overwrite; the job's own page, sample sheet,
untrained outputs and copies of the real photos are replaced). Before anything is written, the
folders are checked (a file where a folder should be, a results folder that holds something
else), so a refusal leaves the data and the earlier results as they were. The results page links
to copies of the real test photos (``RESULTS/index_files/real/``), not to the dataset, so it stays
whole when the dataset is written again. A stage that fails ends the job with one line naming the
stage, its exit status and where its output is. Relative paths are taken from the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the checkout first, so that its pix2pixhd and benchmarks/ import, not an installed copy
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))
STAGE_RUNS = ("main_global", "main_local", "main_finetune")   # run folders under --checkpoints_dir
# what the job writes into its results folder besides synthesize.py's dataset (test_label/,
# test_inst/, test_img/, synthesis.json, manifest.jsonl, classes.json): replaced by a rerun
OWN_RESULTS = ("index.html", "index_files", "samples.png", "summary.json", "untrained")
REAL_COPIES = Path("index_files") / "real"   # the real test photos the results page shows


def _user_error():
    from pix2pixhd.errors import UserError
    return UserError


def stage_failed(stage: str, cmd: list[str], status: int, output: str):
    """The one-line error of a stage that failed (a :class:`pix2pixhd.errors.UserError`)."""
    prog = Path(cmd[1]).name if len(cmd) > 1 and cmd[1] != "-m" else (cmd[2] if len(cmd) > 2 else cmd[0])
    return _user_error()(f"main job stage {stage!r} ({prog}) failed with exit status {status}; its messages "
                         f"are printed above and its output is in {output}")


def _cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], stage: str = "", output: str | Path = "") -> tuple[float, float]:
    """Runs ``cmd``; returns its wall seconds and CPU seconds (user + system of the child). A
    non-zero exit status raises :func:`stage_failed`'s error (one line, no traceback)."""
    print("\n$ " + " ".join(cmd), flush=True)
    c0, t0 = _cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    status = subprocess.run(cmd, cwd=ROOT).returncode
    if status != 0:
        raise stage_failed(stage or Path(cmd[1] if len(cmd) > 1 else cmd[0]).stem, cmd, status, output or ROOT)
    return time.perf_counter() - t0, _cpu_seconds(resource.RUSAGE_CHILDREN) - c0


def _entries(folder: Path) -> list[str]:
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())


def check_folders(data: Path, checkpoints_dir: Path, results: Path) -> None:
    """Refuse, before anything is written, the folders the job could not use: a file where a
    folder goes (the dataset, the checkpoints folder, a stage's run folder, the results) and a
    non-empty results folder that holds neither an earlier main job's nor synthesize.py's files
    (it may be something else of the user's: the rerun would write over it). The dataset folder's
    contents are checked by its maker, which runs first and refuses a folder it did not write
    before touching it; the stages' earlier runs are replaced (train_hd.py --overwrite)."""
    UserError = _user_error()
    folders = [("--data", data), ("--checkpoints_dir", checkpoints_dir), ("--results", results)]
    folders += [(f"the {name[5:]} stage's run folder", checkpoints_dir / name) for name in STAGE_RUNS]
    for what, folder in folders:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{what} {folder} is a file, not a folder; pass another path (or move the file away)")
    if results.is_dir():
        held = _entries(results)
        if held and not ((results / "summary.json").is_file() or (results / "synthesis.json").is_file()):
            shown = ", ".join(held[:6]) + (f", ... ({len(held)} entries)" if len(held) > 6 else "")
            raise UserError(f"--results {results} already holds {shown} but no summary.json or synthesis.json, "
                            "so it is not an earlier main job's results folder and a rerun would write over "
                            "it; pass another --results (a new or empty folder), or remove it yourself")


def clear_own_results(results: Path) -> None:
    """Remove what an earlier main job wrote into ``results`` besides synthesize.py's dataset
    (which synthesize.py --overwrite replaces): the page, its label images and real-photo copies,
    the sample sheet, the summary and the untrained generator's outputs."""
    for name in OWN_RESULTS:
        p = results / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def copy_real_photos(src: Path, dst: Path) -> Path:
    """Copy the photos of ``src`` (the test split's real photos) into ``dst`` (emptied first), so
    the results page shows copies that a later rewrite of the dataset leaves alone."""
    from pix2pixhd.data.layouts import IMG_EXTS
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        if p.is_file() and p.suffix.lower() in IMG_EXTS:
            shutil.copy2(p, dst / p.name)
    return dst


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

    from pix2pixhd.data.layouts import index_images
    from pix2pixhd.report import write_image_grid
    from pix2pixhd.visualizer import label_colormap
    labels, fakes, reals = index_images(label_dir), index_images(fake_dir), index_images(real_dir)
    stems = [k for k in sorted(fakes) if k in labels and k in reals][:n]
    if not stems:   # MissingInputError is a FileNotFoundError: one error line through errors.run
        from pix2pixhd.errors import MissingInputError
        raise MissingInputError(
            f"{path}: no scene to show: none has a label map in {label_dir} ({len(labels)} found), a synthesized "
            f"photo in {fake_dir} ({len(fakes)}) and a real photo in {real_dir} ({len(reals)}) under one file "
            f"name; check that synthesize.py wrote the test split's photos into {fake_dir} (its lines above), "
            "then rerun the job")
    cmap = np.concatenate([label_colormap(max(label_nc, 1)), [[255, 255, 255]]]).astype(np.uint8)
    rows = []
    for k in stems:
        fake = Image.open(fakes[k]).convert("RGB")
        lab = cmap[np.clip(np.asarray(Image.open(labels[k])), 0, label_nc)]
        rows.append([Image.fromarray(lab).resize(fake.size, Image.NEAREST), fake,
                     Image.open(reals[k]).convert("RGB").resize(fake.size)])
    return write_image_grid(rows, path, titles=("label map", "synthesized", "real"), gap=gap,
                            colors=colors, optimize=True)


def parser() -> argparse.ArgumentParser:
    """The command line of ``python scripts/main_job.py`` (``bash scripts/main_job.sh``)."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser("scripts/main_job.py", __doc__, raw_description=True)
    p.add_argument("--data", default="data/synthetic_streets",
                   help="folder of the synthetic street-scene dataset the job writes (written anew by every run)")
    p.add_argument("--checkpoints_dir", default="checkpoints",
                   help="folder of the stages' run folders (main_global, main_local, main_finetune; "
                        "a rerun replaces them)")
    p.add_argument("--results", default="results/main_job",
                   help="folder of the results page (index.html), the sample sheet (samples.png), "
                        "summary.json and the synthesized test split (a rerun replaces them)")
    p.add_argument("--n_train", type=int, default=96, help="training scenes of the generated dataset")
    p.add_argument("--n_test", type=int, default=12, help="test scenes of the generated dataset (synthesized and scored)")
    p.add_argument("--width", type=int, default=256, help="full resolution (the local stage's)")
    p.add_argument("--epochs", type=int, nargs=3, default=(30, 6, 4), metavar=("GLOBAL", "LOCAL", "FINETUNE"),
                   help="epochs of the global, local and finetune stages (global and finetune: the first "
                        "half at the full learning rate, the rest decaying; local: the global part frozen)")
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
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 8 train + 2 test scenes at 64 pixels, one epoch per stage")
    return p


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if a.quick:
        a.n_train, a.n_test, a.width, a.epochs = 8, 2, 64, (1, 1, 1)
    py = sys.executable
    data, ck, out = ROOT / a.data, ROOT / a.checkpoints_dir, ROOT / a.results   # an absolute path stays as it is
    check_folders(data, ck, out)
    threads, why = choose_threads(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)   # the stages run in child processes
    print(f"CPU threads per stage: {threads} ({why})", flush=True)
    w, h = a.width, a.width // 2
    t = {}
    t["data"] = run([py, "-m", "pix2pixhd.datasets.synthetic_streets", "--out", a.data, "--n_train",
                     str(a.n_train), "--n_test", str(a.n_test), "--width", str(w), "--height", str(h)],
                    "data", data)
    label_nc = json.loads((data / "classes.json").read_text())["label_nc"]
    common = ["train_hd.py", "--dataroot", a.data, "--checkpoints_dir", a.checkpoints_dir,
              "--label_nc", str(label_nc), "--resize_or_crop", "scale_width", "--batchSize", str(a.batchSize),
              "--nThreads", "1", "--no_vgg_loss", "--print_freq", "10", "--display_freq", "50",
              "--save_epoch_freq", "100", "--validate", "headers", "--lambda_L1", str(a.lambda_L1),
              "--upsample", a.upsample, "--overwrite"]   # a rerun replaces the stage's earlier run
    eg, el, ef = a.epochs
    t["global"] = run([py, *common, "--stage", "global", "--name", "main_global", "--loadSize", str(w // 2),
                       "--ngf", "16", "--n_downsample_global", str(a.n_downsample_global), "--n_blocks_global", "3", "--ndf", "16",
                       "--niter", str(eg - eg // 2), "--niter_decay", str(eg // 2)],
                      "global", ck / "main_global")
    t["local"] = run([py, *common, "--stage", "local", "--name", "main_local", "--loadSize", str(w),
                      "--load_pretrain", f"{a.checkpoints_dir}/main_global", "--n_blocks_local", "2",
                      "--ndf", "16", "--niter", str(el), "--niter_decay", "0", "--niter_fix_global", str(el)],
                     "local", ck / "main_local")
    t["finetune"] = run([py, *common, "--stage", "finetune", "--name", "main_finetune", "--loadSize", str(w),
                         "--load_pretrain", f"{a.checkpoints_dir}/main_local", "--ndf", "16",
                         "--niter", str(ef - ef // 2), "--niter_decay", str(ef // 2)],
                        "finetune", ck / "main_finetune")
    # the page shows copies of the real photos: a later run that writes the dataset anew (another
    # --n_test or --width, --quick) leaves this run's page whole
    clear_own_results(out)
    real = copy_real_photos(data / "test_img", out / REAL_COPIES)
    t["synthesis"] = run([py, "synthesize.py", "--checkpoint", f"{a.checkpoints_dir}/main_finetune",
                          "--input", f"{a.data}/test_label", "--inst", f"{a.data}/test_inst",
                          "--real", str(real), "--out", str(out), "--overwrite"],
                         "synthesis", out)

    # The floor: the same architecture with its initial (untrained) weights.
    c0, t0 = _cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    import torch

    from pix2pixhd.config import TrainConfig
    from pix2pixhd.report import compare_folders
    from pix2pixhd.synthesis import Synthesizer, synthesize_folder
    from pix2pixhd.models import build_generator
    cfg = TrainConfig.load(ck / "main_finetune")
    torch.manual_seed(cfg.seed)
    untrained = build_generator(cfg).eval()
    base = out / "untrained"
    synthesize_folder(Synthesizer(untrained, cfg), data / "test_label", base,
                      inst_dir=data / "test_inst", progress=False)
    trained_stats = compare_folders(out / "test_img", real)   # synthesis writes a dataset
    floor_stats = compare_folders(base / "test_img", real)
    sheet = write_sample_sheet(out / "samples.png", data / "test_label", out / "test_img", real, label_nc)
    t["floor"] = (time.perf_counter() - t0, _cpu_seconds(resource.RUSAGE_SELF) - c0)
    # The figures repeat to the last digit on one machine and thread count, not across them (CPU
    # kernels pick their vector instructions by the CPU and split reductions by the thread
    # count), so they are printed with both: the stages' count (OMP_NUM_THREADS, set above for the
    # child processes), not this process's, whose torch had started its threads before.
    from benchmarks.baseline import describe_device
    ran_on = dict(describe_device(torch.device("cpu")), cpu_isa=torch.backends.cpu.get_cpu_capability(),
                  cpu_threads=threads)
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
    from pix2pixhd.errors import run as run_command   # a UserError: one "error: ..." line, status 1
    sys.exit(run_command(main))

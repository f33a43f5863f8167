"""Benchmark: the data loader's throughput (images/s) at 1024x512 and 2048x1024.

    python3 benchmarks/loader.py                                  # both sizes, 0 and 2 workers
    python3 benchmarks/loader.py --res 2048x1024 --workers 0,4,8 --n 16 --data /tmp/bench_streets
    python3 benchmarks/loader.py --res 2048x1024 --workers 8,16 --n 64 --unique 8   # a GPU host

What is timed: ``pix2pixhd.data`` as training uses it, PNG decode + the reference default
preprocessing (``scale_width`` at the source width, so no resample, plus random flips) + collate,
batch 1, Cityscapes layout (label, instance, photo per sample) from the synthetic street
generator, files in the page cache after a warm-up epoch. With CUDA the batches are also copied
to the device (pinned memory, non_blocking) inside the timed loop. One-hot and boundary maps are
computed on the device by ``pix2pixhd.encoding`` and are not part of this number.
Prints one row per (size, workers): images/s, ms per image, MB/s of uint8 tensors delivered.
``--unique K`` generates K scenes and hard-links them to make up the --n files (a 2048x1024 scene
takes seconds to generate; decoding a copy costs what decoding the original does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pix2pixhd.data import create_dataloader, create_dataset  # noqa: E402
from pix2pixhd.datasets import synthetic_streets as ss  # noqa: E402

from benchmarks._cli import check_outputs, command_line, make_parser, write_text_atomic  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402


def ensure_data(root: Path, w: int, h: int, n: int, unique: int | None = None) -> Path:
    unique = min(unique or n, n)
    d = root / (f"streets_{w}x{h}_{n}" + ("" if unique == n else f"_{unique}u"))
    if not (d / "classes.json").is_file():
        t = time.perf_counter()
        ss.generate(d, n_train=unique, n_test=0, width=w, height=h, seed=0)
        for sub in ("train_label", "train_inst", "train_img"):
            for i in range(unique, n):
                src = d / sub / f"train_{i % unique:05d}.png"
                if src.is_file():
                    os.link(src, d / sub / f"train_{i:05d}.png")
        print(f"generated {unique} scenes of {w}x{h} ({n} files) in {time.perf_counter() - t:.1f} s -> {d}")
    return d


def bench(d: Path, w: int, workers: int, epochs: int, device: torch.device) -> dict:
    ds = create_dataset(d, "train", label_nc=ss.LABEL_NC, resize_or_crop="scale_width",
                        loadSize=w, validate="headers")
    loader = create_dataloader(ds, 1, shuffle=True, num_workers=workers, seed=0)
    nbytes = 0

    def run_epoch(e):
        nonlocal nbytes
        loader.sampler.set_epoch(e)
        for b in loader:
            for k in ("label", "inst", "image"):
                t = b[k].to(device, non_blocking=True)
                nbytes += t.numel() * t.element_size()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run_epoch(0)                           # warm-up: worker start, page cache
    nbytes = 0
    t = time.perf_counter()
    for e in range(1, epochs + 1):
        run_epoch(e)
    dt = time.perf_counter() - t
    n = len(ds) * epochs
    return {"images_per_s": n / dt, "ms_per_image": 1e3 * dt / n, "MB_per_s": nbytes / dt / 1e6}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/loader.py``."""
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--res", default="1024x512,2048x1024", help="comma-separated WIDTHxHEIGHT")
    p.add_argument("--workers", default="0,2", help="comma-separated num_workers values")
    p.add_argument("--n", type=int, default=8, help="images per size (generated once, cached)")
    p.add_argument("--unique", type=int, default=None,
                   help="distinct scenes among the --n files (default: all distinct)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per row")
    p.add_argument("--data", default=None, help="where to keep the generated images "
                                                "(default: a temporary folder)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the rows as JSON (default: not written)")
    return p


def parse_args(argv=None):
    """The options, each checked before any work (no scene generated, no epoch timed): a bad value
    is a ConfigError naming the option, the value and the valid range (one ``error:`` line through
    ``errors.run``, exit status 1). Sets ``sizes`` [(w, h)] and ``worker_counts`` [int] from --res
    and --workers."""
    p = build_parser()
    a = p.parse_args(argv)
    for name, least in (("n", 1), ("epochs", 1), ("unique", 1)):
        v = getattr(a, name)
        if v is not None and v < least:
            raise ConfigError(f"--{name} {v}: expected at least {least}")
    if a.unique is not None and a.unique > a.n:
        raise ConfigError(f"--unique {a.unique}: expected at most --n {a.n} (distinct scenes among the --n files)")
    a.sizes = []
    for r in a.res.split(","):
        try:
            w, h = (int(v) for v in r.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--res {r!r}: expected WIDTHxHEIGHT, e.g. 1024x512") from None
        if not (16 <= w <= ss.MAX_SIZE[0] and 16 <= h <= ss.MAX_SIZE[1]):  # the generator's range
            raise ConfigError(f"--res {r}: expected 16x16 to {ss.MAX_SIZE[0]}x{ss.MAX_SIZE[1]} "
                              "(synthetic street scenes)")
        a.sizes.append((w, h))
    a.worker_counts = []
    for v in a.workers.split(","):
        try:
            nw = int(v)
        except ValueError:
            raise ConfigError(f"--workers {v!r}: expected comma-separated integers of at least 0") from None
        if nw < 0:
            raise ConfigError(f"--workers {nw}: expected at least 0 (num_workers; 0 loads in the main process)")
        a.worker_counts.append(nw)
    check_outputs(p, [("--json", a.json)], [("--data", a.data)])
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = None if a.data else tempfile.TemporaryDirectory()
    root = Path(a.data or tmp.name)
    rows = []
    try:
        for w, h in a.sizes:
            d = ensure_data(root, w, h, a.n, a.unique)
            for nw in a.worker_counts:
                r = bench(d, w, nw, a.epochs, device)
                rows.append({"res": f"{w}x{h}", "workers": nw, **r})
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"\nloader, batch 1, label+inst+photo uint8, scale_width (no resample) + flip; "
          f"device {device}; {os.cpu_count()} CPU cores visible")
    print(f"{'size':>10} {'workers':>7} {'images/s':>9} {'ms/image':>9} {'MB/s':>8}")
    for r in rows:
        print(f"{r['res']:>10} {r['workers']:>7} {r['images_per_s']:9.1f} {r['ms_per_image']:9.1f} "
              f"{r['MB_per_s']:8.1f}")
    if a.json:
        from benchmarks.baseline import describe_device   # CPU model and threads, torch, GPU
        write_text_atomic(a.json, json.dumps({"benchmark": "loader",
                                              "command": command_line("benchmarks/loader.py", argv),
                                              "device": describe_device(device),
                                              "cpu_count": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    sys.exit(run(main))

#!/usr/bin/env python3
"""Many small synthesis jobs in one torchrun process group, each starting its decoding worker
right after the group's collectives; counts the jobs in which a worker never handed over an input
(stalled), with the loader's wait before the fork or without it. docs/synthesis.md quotes its output.

    torchrun --nproc_per_node=2 scripts/fork_stress.py --jobs 1500                 # the loader's wait
    torchrun --nproc_per_node=2 scripts/fork_stress.py --jobs 1500 --settle_s 0    # forked at once, as before

A process group's threads take Python's interpreter lock from C++ when they drop a tensor; a fork
while one of them held the interpreter's thread-state lock gave a worker that waited for it for
ever in Python's after-fork code (pix2pixhd.data.loader.settle_before_fork). Each stall costs
--stall_s seconds (the loader's limit here; synthesize.py's is PIX2PIXHD_DIST_TIMEOUT_S), after
which the job stops on every rank and the next one starts. Run it where other work loads the
CPUs too: the window is short.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from pix2pixhd.argparsing import HelpFormatter
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--jobs", type=int, default=300, help="synthesis jobs to run")
    p.add_argument("--stall_s", type=float, default=10.0,
                   help="seconds a worker may hand over nothing before the job counts as stalled")
    p.add_argument("--settle_s", type=float, default=None,
                   help="seconds each loader waits before it forks its worker (default: the loader's own, "
                        "pix2pixhd.data.loader.FORK_SETTLE_S; 0: it forks at once, as before)")
    p.add_argument("--work", default="/tmp/pix2pixhd_fork_stress",
                   help="scratch folder: a tiny checkpoint, 7 maps, each job's output (removed after each job)")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    from pix2pixhd.errors import ConfigError
    if a.jobs < 1 or not a.stall_s > 0 or (a.settle_s is not None and not a.settle_s >= 0):
        raise ConfigError(f"--jobs {a.jobs} --stall_s {a.stall_s:g} --settle_s {a.settle_s}: --jobs must be >= 1, "
                          "--stall_s > 0 and --settle_s >= 0")
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise ConfigError("run it under torchrun with 2 or more processes: torchrun --nproc_per_node=2 "
                         "scripts/fork_stress.py ...")
    import torch
    import torch.distributed as dist

    from pix2pixhd import distributed
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.data import loader
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    from pix2pixhd.models import build_generator

    info = distributed.setup("cpu")
    work = Path(a.work)
    if info.rank == 0:
        shutil.rmtree(work, ignore_errors=True)
        generate(work / "maps", n_train=1, n_test=7, width=64, height=32, seed=0)
        cfg = TrainConfig(label_nc=LABEL_NC, netG="global", ngf=4, n_downsample_global=2, n_blocks_global=1,
                          norm_impl="ref").resolved()
        torch.manual_seed(0)
        save_checkpoint({"G": build_generator(cfg).state_dict(), "config": cfg.to_dict()}, work / "run", "latest",
                        cfg.to_json())
    dist.barrier()
    # the jobs share this process group (synthesize_main would end it), and a stalled worker stops
    # its job after --stall_s (set after the group started: its own timeout stays the default)
    distributed.cleanup = lambda info_: None
    distributed.process_group_timeout = lambda: datetime.timedelta(seconds=a.stall_s)
    if a.settle_s is not None:
        loader.FORK_SETTLE_S = a.settle_s
    stalled, t0 = 0, time.perf_counter()
    for k in range(a.jobs):
        out = work / f"job_{k}"
        args = ["--checkpoint", str(work / "run"), "--input", str(work / "maps" / "test_label"), "--inst",
                str(work / "maps" / "test_inst"), "--device", "cpu", "--no_progress", "--workers", "1",
                "--batch_size", "2", "--out", str(out)]
        with open(os.devnull, "w") as null:   # each job's summary and notes: not the point here
            so, se = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = null
            try:
                synthesize_main(args)
            except Exception as e:   # a stall stops the job on every rank (one as the error, the others as a peer's)
                if "handed over no input" in str(e) and "stopped because rank" not in str(e):
                    stalled += 1
            finally:
                sys.stdout, sys.stderr = so, se
        dist.barrier()
        if info.rank == 0:
            shutil.rmtree(out, ignore_errors=True)
    t = torch.tensor([stalled], dtype=torch.float64)
    dist.all_reduce(t)
    if info.rank == 0:
        print(f"settle {loader.FORK_SETTLE_S:g} s: {a.jobs} jobs on {info.world_size} ranks, {int(t.item())} stalled "
              f"(a worker that handed over nothing for {a.stall_s:g} s), {time.perf_counter() - t0:.0f} s")
        shutil.rmtree(work, ignore_errors=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a UserError: one error line, status 1
    sys.exit(run(main))

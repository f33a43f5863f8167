"""Loader workers forked in a process that runs a torch.distributed process group
(pix2pixhd.data.loader.settle_before_fork): the loader waits FORK_SETTLE_S first.

A process group's C++ threads (gloo's) take the interpreter lock when they drop a tensor, creating
and deleting a Python thread state under an interpreter lock; a worker forked while one held it
waited for it for ever in Python's after-fork code (gdb: PyOS_AfterFork_Child ->
_PyThreadState_DeleteExcept), before it ran a line of the loader. A two-rank synthesis in CI hung
on it (2026-12-08); scripts/fork_stress.py counts such stalls over many jobs."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.bounded import run_bounded
from tests.test_synthesis_engine import free_port

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import time
    import torch.distributed as dist
    from pix2pixhd.data import create_dataloader, create_dataset, loader
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    import sys
    root = sys.argv[1]
    generate(root, n_train=4, n_test=1, width=64, height=32, seed=0)
    ds = create_dataset(root, "train", label_nc=LABEL_NC)
    waits = []
    sleep = time.sleep
    loader.time.sleep = lambda s: (waits.append(s), sleep(s))

    def first_batch():
        waits.clear()
        dl = create_dataloader(ds, 2, shuffle=False, num_workers=1, ignore_stops=True)
        batch = next(iter(dl))
        loader.shutdown_workers(dl)
        return waits[:1], tuple(batch["label"].shape)

    print("alone", *first_batch())
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    print("group", *first_batch())
    dist.destroy_process_group()
""")


def test_in_a_process_group_the_loader_waits_before_it_forks_its_workers(tmp_path):
    p = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "streets")], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.split("\n")
    assert "alone [] (2, 1, 512, 1024)" in lines, p.stdout   # no group: forked at once
    assert "group [0.05] (2, 1, 512, 1024)" in lines, p.stdout


@pytest.mark.fault(cls="synthesis", case="decoding workers forked in a process group: the stalls over jobs counted")
def test_fork_stress_runs_jobs_in_one_group_and_counts_the_stalls(tmp_path):
    """The script's own run (a few jobs; the count over hundreds is docs/synthesis.md's)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(ROOT / "scripts" / "fork_stress.py"),
           "--jobs", "3", "--work", str(tmp_path / "w")]
    p = run_bounded(cmd, timeout=240, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "settle 0.05 s: 3 jobs on 2 ranks, 0 stalled" in p.stdout, p.stdout
    assert not (tmp_path / "w").exists()

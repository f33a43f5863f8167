#!/usr/bin/env python3
"""Elastic restart on CPU: kill a DDP worker mid-epoch, torchrun restarts, training resumes.

    python3 scripts/elastic_demo.py [--workdir DIR] [--keep]

What it does (all on loopback, gloo, a tiny global-stage model on a tiny synthetic dataset):
  1. ``torchrun --nproc_per_node=2 --max_restarts=1 --master_addr 127.0.0.1 --master_port P
     train_hd.py --auto_resume --save_latest_freq 1 ...`` in the background (static rendezvous:
     with ``--rdzv_backend=c10d`` on one CPU host the restarted gloo ranks here failed to connect
     to a previous attempt's address, torch 2.13);
  2. waits until ``latest.pt`` exists, then SIGKILLs one worker (a child of the torchrun agent);
  3. the agent tears the other worker down and restarts both; ``--auto_resume`` finds
     ``latest.pt`` and every rank resumes from it;
  4. checks torchrun exits 0, the log says "resumed from", and the final checkpoint is at the
     last epoch with every step accounted for. Exit status 0 on success, 1 otherwise.
No fault-injection hook in the product: the kill comes from outside, as a crash would.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_IMAGES, EPOCHS = 8, 3          # 2 ranks, batch 1: 4 steps per epoch, 12 in all


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc; Linux)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="", help="folder for data and checkpoints (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--timeout", type=float, default=400.0, help="seconds before giving up")
    a = p.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="elastic_demo_"))
    work.mkdir(parents=True, exist_ok=True)
    from pix2pixhd.datasets import synthetic_streets
    synthetic_streets.generate(work / "data", n_train=N_IMAGES, n_test=0, width=64, height=32, seed=0)
    exp = work / "ck" / "elastic"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--max_restarts=1", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           str(REPO / "train_hd.py"), "--auto_resume", "--dataroot", str(work / "data"),
           "--checkpoints_dir", str(work / "ck"), "--name", "elastic", "--label_nc", "9",
           "--loadSize", "64", "--fineSize", "64", "--resize_or_crop", "none", "--ngf", "4",
           "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4", "--n_layers_D", "2",
           "--no_vgg_loss", "--no_tensorboard", "--no_html", "--no_progress", "--nThreads", "0",
           "--device", "cpu", "--batchSize", "1", "--niter", str(EPOCHS), "--niter_decay", "0",
           "--print_freq", "1", "--save_latest_freq", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    log = open(work / "torchrun.log", "w")
    print("launch:", " ".join(cmd[2:6]), "train_hd.py --auto_resume ...", flush=True)
    # its own process group, so that whatever happens every worker goes with the agent (finally)
    agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                             start_new_session=True)
    t0, killed = time.time(), None
    ok = False
    try:
        while time.time() - t0 < a.timeout and agent.poll() is None:
            if killed is None and (exp / "latest.pt").exists():
                workers = sorted(children(agent.pid))  # the 2 ranks
                if len(workers) == 2:
                    killed = workers[-1]
                    os.kill(killed, signal.SIGKILL)
                    print(f"latest.pt written after {time.time() - t0:.1f} s: SIGKILL worker pid {killed}",
                          flush=True)
            time.sleep(0.05)
        if agent.poll() is None:
            print(f"torchrun still running after {a.timeout:.0f} s: giving up")
            return 1
        log.close()
        rc = agent.returncode
        text = (exp / "loss_log.txt").read_text() if (exp / "loss_log.txt").exists() else ""
        import torch
        ck = torch.load(exp / "latest.pt", weights_only=True, map_location="cpu")
        steps = N_IMAGES // 2 * EPOCHS
        checks = {
            "a worker was killed mid-run": killed is not None,
            "torchrun exited 0": rc == 0,
            "the agent saw the worker die (exit -9)": f"exitcode: -9) local_rank: 1 (pid: {killed})"
                                                      in (work / "torchrun.log").read_text()
                                                      or f"(pid: {killed})" in (work / "torchrun.log").read_text(),
            "training resumed from latest.pt": "resumed from epoch" in text,
            f"final checkpoint after epoch {EPOCHS}": ck["epoch"] == EPOCHS + 1,
            f"global_step == {steps} (no step lost or repeated)": ck["global_step"] == steps,
        }
        for k, v in checks.items():
            print(f"  [{'ok' if v else 'FAIL'}] {k}")
        resumed = [ln for ln in text.splitlines() if "resumed from" in ln]
        print("log:", resumed[0].strip() if resumed else "(no resume line)")
        print(f"done in {time.time() - t0:.1f} s; torchrun log {work / 'torchrun.log'}")
        ok = all(checks.values())
        return 0 if ok else 1
    finally:
        try:
            os.killpg(agent.pid, signal.SIGKILL)  # the agent and any worker still alive
        except ProcessLookupError:
            pass
        agent.wait()
        if not a.workdir and not a.keep and ok:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

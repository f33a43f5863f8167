#!/usr/bin/env python3
"""Elastic restart on CPU: kill a DDP worker mid-epoch, torchrun restarts, training resumes.

    python3 scripts/elastic_demo.py [--workdir DIR] [--keep]

What it does (all on loopback, gloo, a tiny global-stage model on a tiny synthetic dataset):
  1. a reference run: the same two-rank training, uninterrupted;
  2. ``torchrun --nproc_per_node=2 --max_restarts=1 --master_addr 127.0.0.1 --master_port P
     elastic_demo.py --worker LOGDIR <train_hd.py's options> --auto_resume --save_latest_freq 1``
     in the background (static rendezvous: with ``--rdzv_backend=c10d`` on one CPU host the
     restarted gloo ranks here failed to connect to a previous attempt's address, torch 2.13);
  3. waits until rank 1 has trained 6 steps (mid-epoch 2; the kill lands wherever that rank is
     then: in a step, in a save, between them), then SIGKILLs it (a child of the torchrun agent);
  4. the agent tears the other worker down and restarts both; ``--auto_resume`` finds
     ``latest.pt`` and every rank resumes from it;
  5. checks what was actually trained. Each worker is train_hd.py's own entry point
     (``cli.train_main``) with one addition made here, not in the product: after every step it
     appends (global step, the files of its batch) to a log of its own rank and attempt, and at
     the start the step it resumed from. Per rank, with S the step attempt 1 resumed from:
       * attempt 0 trained steps 1..K without a gap, attempt 1 trained S+1..12 without a gap;
       * S <= K <= S + save_latest_freq: the only steps trained twice are those attempt 0 trained
         after its last completed save (lost with it, and retrained);
       * attempt 0's 1..S followed by attempt 1's S+1..12 is the reference run's sequence: the
         same step numbers with the same files, so no step was lost, repeated or given other
         data; the retrained steps S+1..K had the same files both times;
     and the final weights equal the reference run's bit for bit. Exit status 0 on success.
No fault-injection hook in the product: the kill comes from outside, as a crash would.
"""
from __future__ import annotations

import argparse
import json
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
STEPS = N_IMAGES // 2 * EPOCHS
SAVE_LATEST_FREQ = 1
KILL_AFTER = 6                   # steps rank 1 has trained when it is killed: mid-epoch 2


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


def worker(log_dir: Path, train_args: list[str]) -> int:
    """torchrun's entry point here: ``cli.train_main`` (what train_hd.py runs), each trained step
    appended to ``LOGDIR/steps.rank{R}.attempt{A}.jsonl`` (A: torchrun's restart count)."""
    from pix2pixhd.cli import train_main
    from pix2pixhd.trainer import Trainer
    rank = int(os.environ.get("RANK", "0"))
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    fd = os.open(log_dir / f"steps.rank{rank}.attempt{attempt}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(record: dict) -> None:  # one write per line: a kill leaves at most a torn last line
        os.write(fd, (json.dumps(record) + "\n").encode())

    train_step, fit = Trainer.train_step, Trainer.fit

    def recording_step(self, batch):
        losses = train_step(self, batch)
        write({"step": self.global_step + 1, "files": [Path(p).name for p in batch["path"]]})
        return losses

    def recording_fit(self):
        write({"start": self.global_step})
        return fit(self)

    Trainer.train_step, Trainer.fit = recording_step, recording_fit
    return train_main(train_args)


def read_log(path: Path) -> tuple[int | None, list[tuple[int, list[str]]]]:
    """(the step the attempt started from, [(step, files)] in the order trained)."""
    start, steps = None, []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a SIGKILL cut
        if "start" in rec:
            start = rec["start"]
        else:
            steps.append((rec["step"], rec["files"]))
    return start, steps


def torchrun(port: int, log_dir: Path, train_args: list[str], max_restarts: int) -> list[str]:
    log_dir.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
            f"--max_restarts={max_restarts}", "--master_addr=127.0.0.1", f"--master_port={port}",
            str(Path(__file__).resolve()), "--worker", str(log_dir), *train_args]


def check_sequences(logs: Path, ref_logs: Path) -> dict[str, bool]:
    """The checks of the module docstring's step 5, per rank."""
    checks = {}
    for rank in (0, 1):
        _, ref = read_log(ref_logs / f"steps.rank{rank}.attempt0.jsonl")
        start0, first = read_log(logs / f"steps.rank{rank}.attempt0.jsonl")
        p1 = logs / f"steps.rank{rank}.attempt1.jsonl"
        start1, second = read_log(p1) if p1.exists() else (None, [])
        s, k = start1, len(first)
        steps0, steps1 = [st for st, _ in first], [st for st, _ in second]
        ok_resume = s is not None and s <= k <= s + SAVE_LATEST_FREQ
        checks[f"rank {rank}: the reference run trained steps 1..{STEPS}"] = [st for st, _ in ref] == list(range(1, STEPS + 1))
        checks[f"rank {rank}: attempt 0 trained 1..K (K={k}) from a fresh start"] = start0 == 0 and steps0 == list(range(1, k + 1))
        checks[f"rank {rank}: attempt 1 resumed from step S={s}, S <= K <= S + {SAVE_LATEST_FREQ} (only steps after the last save retrained)"] = ok_resume
        checks[f"rank {rank}: attempt 1 trained S+1..{STEPS}"] = ok_resume and steps1 == list(range(s + 1, STEPS + 1))
        checks[f"rank {rank}: attempt 0's 1..S + attempt 1's S+1..{STEPS} == the reference's steps and files"] = \
            ok_resume and first[:s] + second == ref
        checks[f"rank {rank}: the retrained steps S+1..K had the same files both times"] = \
            ok_resume and first[s:] == second[:k - s]
    return checks


def build_parser() -> argparse.ArgumentParser:
    from pix2pixhd.argparsing import make_parser
    p = make_parser("scripts/elastic_demo.py", __doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="", help="folder for data and checkpoints (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--timeout", type=float, default=400.0, help="seconds before giving up")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(Path(argv[1]), argv[2:])
    from pix2pixhd.errors import ConfigError
    p = build_parser()
    a = p.parse_args(argv)
    if not a.timeout > 0:   # nan too
        raise ConfigError(f"--timeout {a.timeout}: expected more than 0 seconds (default 400)")
    if a.workdir:   # a file at the path, or above it, is refused before anything is written
        above = next((d for d in (Path(a.workdir), *Path(a.workdir).parents) if d.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(f"--workdir {a.workdir}: {above} is a file, not a folder; pass a folder (or none: "
                              "a temp dir)")
    work = Path(a.workdir or tempfile.mkdtemp(prefix="elastic_demo_"))
    work.mkdir(parents=True, exist_ok=True)
    from pix2pixhd.datasets import synthetic_streets
    synthetic_streets.generate(work / "data", n_train=N_IMAGES, n_test=0, width=64, height=32, seed=0)
    exp = work / "ck" / "elastic"

    def train_args(name: str) -> list[str]:
        return ["--auto_resume", "--dataroot", str(work / "data"), "--checkpoints_dir", str(work / "ck"),
                "--name", name, "--label_nc", "9", "--loadSize", "64", "--fineSize", "64",
                "--resize_or_crop", "none", "--ngf", "4", "--n_downsample_global", "2",
                "--n_blocks_global", "1", "--ndf", "4", "--n_layers_D", "2", "--no_vgg_loss",
                "--no_tensorboard", "--no_html", "--no_progress", "--nThreads", "0", "--device", "cpu",
                "--batchSize", "1", "--niter", str(EPOCHS), "--niter_decay", "0", "--print_freq", "1",
                "--save_latest_freq", str(SAVE_LATEST_FREQ)]

    # the workers import this checkout's pix2pixhd, not an installed copy
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=path)
    t0 = time.time()
    print("reference: the same two-rank run, uninterrupted", flush=True)
    with open(work / "reference.log", "w") as ref_log:
        try:
            ref = subprocess.run(torchrun(free_port(), work / "steps" / "reference", train_args("reference"), 0),
                                 stdout=ref_log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                                 timeout=a.timeout)
        except subprocess.TimeoutExpired:
            print(f"  [FAIL] the reference run did not finish in {a.timeout:g} s (--timeout); see "
                  f"{work / 'reference.log'}, or give a larger --timeout")
            return 1
    if ref.returncode != 0:
        print(f"  [FAIL] the reference run exited {ref.returncode}; see {work / 'reference.log'}")
        return 1
    cmd = torchrun(free_port(), work / "steps" / "elastic", train_args("elastic"), 1)
    log = open(work / "torchrun.log", "w")
    print("launch:", " ".join(cmd[2:6]), "elastic_demo.py --worker ... --auto_resume ...", flush=True)
    # its own process group, so that whatever happens every worker goes with the agent (finally)
    agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                             start_new_session=True)
    t1, killed = time.time(), None
    ok = False
    try:
        while time.time() - t1 < a.timeout and agent.poll() is None:
            trained = work / "steps" / "elastic" / "steps.rank1.attempt0.jsonl"
            if killed is None and (exp / "latest.pt").exists() and trained.exists() \
                    and len(read_log(trained)[1]) >= KILL_AFTER:
                workers = sorted(children(agent.pid))  # the 2 ranks
                if len(workers) == 2:
                    killed = workers[-1]
                    os.kill(killed, signal.SIGKILL)
                    print(f"rank 1 trained {KILL_AFTER} steps after {time.time() - t1:.1f} s: SIGKILL "
                          f"worker pid {killed}", flush=True)
            time.sleep(0.05)
        if agent.poll() is None:
            print(f"torchrun still running after {a.timeout:.0f} s: giving up")
            return 1
        log.close()
        rc = agent.returncode
        text = (exp / "loss_log.txt").read_text() if (exp / "loss_log.txt").exists() else ""
        agent_log = (work / "torchrun.log").read_text()
        import torch
        ck = torch.load(exp / "latest.pt", weights_only=True, map_location="cpu")
        ref_ck = torch.load(work / "ck" / "reference" / "latest.pt", weights_only=True, map_location="cpu")
        checks = {
            "a worker was killed mid-run": killed is not None,
            "torchrun exited 0": rc == 0,
            "the agent saw the worker die (exit -9)": f"exitcode: -9) local_rank: 1 (pid: {killed})" in agent_log
                                                      or f"(pid: {killed})" in agent_log,
            "training resumed from latest.pt": "resumed from epoch" in text,
            **check_sequences(work / "steps" / "elastic", work / "steps" / "reference"),
            f"final checkpoint after epoch {EPOCHS}, step {STEPS}": (ck["epoch"], ck["global_step"]) == (EPOCHS + 1, STEPS),
            "final G and D weights equal the reference run's, bit for bit": all(
                torch.equal(v, ref_ck[net][k]) for net in ("G", "D") for k, v in ck[net].items()),
        }
        for k, v in checks.items():
            print(f"  [{'ok' if v else 'FAIL'}] {k}")
        resumed = [ln for ln in text.splitlines() if "resumed from" in ln]
        print("log:", resumed[0].strip() if resumed else "(no resume line)")
        print(f"done in {time.time() - t0:.1f} s; torchrun log {work / 'torchrun.log'}, step logs {work / 'steps'}")
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
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    sys.exit(run(main))

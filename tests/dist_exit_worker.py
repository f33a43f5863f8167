"""A torchrun worker for tests/test_distributed.py's exit tests (not a test module).

    python -m torch.distributed.run --nproc_per_node=2 tests/dist_exit_worker.py OUT train ARGS...
    python -m torch.distributed.run --nproc_per_node=2 tests/dist_exit_worker.py OUT pending

``train``: train_hd.py's train_main with ARGS, then writes the names of this process's threads
(after train_main has ended the process group) to OUT/threads{rank}.json.
``pending``: the package's setup and DDP wrap, one training step, then an all-reduce still in
flight on rank 0 when the group is ended (rank 1 joins it a second late), and exit: the gloo
worker finishes that work, and frees its tensor, while rank 0 leaves.
"""
import json
import os
import sys
import time
from pathlib import Path


def threads() -> list[str]:
    return sorted(Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task"))


def threads_after_cleanup(wait_s: float = 5.0) -> list[str]:
    """This process's thread names once gloo's are gone, or after ``wait_s``: gloo's transport
    loop thread can take a moment to end after the group is destroyed (a CI run under load read
    it still there); a group that is never freed (the bug the tests guard) keeps them for good."""
    gloo = ("gloo_tcp_loop", "pt_gloo_runloop")
    deadline = time.monotonic() + wait_s
    names = threads()
    while any(n in gloo for n in names) and time.monotonic() < deadline:
        time.sleep(0.05)
        names = threads()
    return names


def main(out: Path, mode: str, argv: list[str]) -> int:
    rank = int(os.environ["RANK"])
    if mode == "train":
        from pix2pixhd.cli import train_main
        rc = train_main(argv)
        (out / f"threads{rank}.json").write_text(json.dumps(threads_after_cleanup()))
        return rc
    import torch
    import torch.distributed as dist

    from pix2pixhd import distributed
    info = distributed.setup("cpu")
    net = distributed.wrap(torch.nn.Linear(3, 3), info)
    net(torch.randn(2, 3)).sum().backward()
    del net
    t = torch.ones(1 << 20)
    if rank == 1:
        time.sleep(1.0)
    work = dist.all_reduce(t, async_op=True)
    del t, work
    distributed.cleanup(info)
    (out / f"threads{rank}.json").write_text(json.dumps(threads_after_cleanup()))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))

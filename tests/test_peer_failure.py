"""raise_on_any_rank: a rank that fails makes every rank stop, each saying which rank failed and
at what (start of training, or mid-way through its synthesis shard), none left in a collective."""
import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp

from pix2pixhd.distributed import DistInfo
from pix2pixhd.errors import InputError, PeerFailedError, raise_on_any_rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    info = DistInfo(rank=rank, local_rank=rank, world_size=2)
    err = InputError("map_7.png: label id 40 >= label_nc=35") if rank == 1 else None
    try:
        raise_on_any_rank(err, info, "failed while synthesizing its shard")
        msg = "no error"
    except PeerFailedError as e:
        msg = f"peer: {e}"
    except InputError as e:
        msg = f"own: {e}"
    dist.destroy_process_group()
    with open(f"{out}/{rank}.txt", "w") as f:
        f.write(msg)


def test_every_rank_stops_and_names_the_rank_and_what_it_failed_at(tmp_path):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    assert (tmp_path / "1.txt").read_text() == "own: map_7.png: label id 40 >= label_nc=35"
    assert (tmp_path / "0.txt").read_text() == (
        "peer: stopped because rank 1 failed while synthesizing its shard "
        "(InputError: map_7.png: label id 40 >= label_nc=35)")

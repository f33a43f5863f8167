"""Process-group setup from torchrun's environment; a single process never touches torch.distributed.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR/PORT or a rendezvous). With
WORLD_SIZE > 1 we start NCCL on CUDA and gloo on CPU; rank 0 is the master that logs and saves.
``wrap`` puts a module in DistributedDataParallel the same way for G, D and E, optionally with
gradients all-reduced in bf16 (``bf16_allreduce_hook``: half the bytes of fp32 on the wire, for
multi-node runs where the interconnect, not the GPU, bounds the step).

The process group's timeout (how long a collective waits for a rank before failing) is
``PIX2PIXHD_DIST_TIMEOUT_S`` seconds, default :data:`DEFAULT_TIMEOUT_S` (1 hour), not torch's 10
minutes for NCCL: at the start rank 0 validates the dataset (``--validate full`` reads every
file) while the other ranks wait in the start agreement, which takes longer than 10 minutes on
large datasets.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from pix2pixhd.errors import ConfigError, UserError


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class DeviceUnavailableError(UserError, RuntimeError):
    """The device asked for does not exist on this machine."""


def resolve_device(pref: str | torch.device, local_rank: int | None = 0, *,
                   option: str = "--device") -> torch.device:
    """``pref`` (auto, cpu, cuda, cuda:N or mps; or a torch.device) as a torch.device of this machine.

    auto is cuda when CUDA is available, else cpu; cuda without an index gets ``local_rank``
    (None: no index, torch's current device), or cuda:0 where CUDA_VISIBLE_DEVICES leaves this
    process one GPU (a scheduler's binding of one GPU per process, outside torchrun). Every command and the Python API check devices
    here: an unknown name is a ConfigError naming ``option`` ('--device', or 'device' for the
    API), the value and the accepted forms; CUDA or MPS this machine (or this torch build)
    lacks, or cuda:N past its last GPU, is a DeviceUnavailableError.
    """
    if pref == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(pref)
        except (RuntimeError, TypeError):   # torch.device("gpu"): "Expected one of cpu, cuda, ..."
            dev = None
        if dev is None or dev.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"{option} {pref!r}: expected auto, cpu, cuda or cuda:N (or mps)")
    name = str(pref)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"{option} {name}: CUDA is not available on this machine (torch "
                                     f"{torch.__version__}); use {option} cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"{option} {name}: Apple's MPS is not available on this machine (this "
                                     f"torch build or this machine has none); use {option} cpu")
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        # A scheduler that binds one GPU to each process (SLURM --gpus-per-task=1, CUDA_VISIBLE_DEVICES
        # set per rank) leaves each process one device, cuda:0, whatever its local rank. Not under
        # torchrun (TORCHELASTIC_RUN_ID): its workers on a node share one CUDA_VISIBLE_DEVICES, so
        # two ranks there on one visible GPU would both take it (NCCL: "Duplicate GPU").
        one_bound = (torch.cuda.device_count() == 1 and os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
                     and "TORCHELASTIC_RUN_ID" not in os.environ)
        dev = torch.device(f"cuda:{0 if one_bound else local_rank}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        shown = name if name == str(dev) else f"{name} ({dev})"
        raise DeviceUnavailableError(f"{option} {shown}: this machine has {torch.cuda.device_count()} "
                                     "CUDA device(s), numbered from cuda:0; pass one of them or cpu")
    return dev


def bind_cuda_device(device: torch.device) -> None:
    """Makes a CUDA device with an index this process's current device: CUDA events, streams,
    synchronize() and the Triton launches follow the current device, not the tensors' one, so a
    process working on cuda:1 would time and launch on cuda:0. Nothing for other devices."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


TIMEOUT_ENV = "PIX2PIXHD_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0


def process_group_timeout() -> timedelta:
    """The process group's timeout: ``$PIX2PIXHD_DIST_TIMEOUT_S`` seconds, else
    :data:`DEFAULT_TIMEOUT_S`; a value that is not a positive number is a ConfigError naming it."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        secs = float(raw)
    except ValueError:
        secs = float("nan")
    if not (math.isfinite(secs) and secs > 0):
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0 (how long a rank "
                          f"waits for the others in a collective; default {DEFAULT_TIMEOUT_S:g}); "
                          f"set it to e.g. 7200, or unset it")
    return timedelta(seconds=secs)


def setup(device_pref: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local)
    bind_cuda_device(device)
    if world > 1:
        if not dist.is_initialized():
            _import_before_the_group()
            backend = "nccl" if device.type == "cuda" else "gloo"
            dev_id = device if device.type == "cuda" else None
            timeout = process_group_timeout()
            restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
            if restart > 0 and "MASTER_ADDR" in os.environ:
                # After an elastic restart the agent's store still holds the previous attempt's
                # keys; gloo could read a dead rank's address from them and fail to connect.
                # A per-attempt prefix gives every attempt a clean namespace.
                use_agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
                store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                      is_master=rank == 0 and not use_agent, wait_for_workers=False,
                                      timeout=timeout)
                dist.init_process_group(backend, store=dist.PrefixStore(f"attempt_{restart}/", store),
                                        rank=rank, world_size=world, device_id=dev_id, timeout=timeout)
            else:
                dist.init_process_group(backend=backend, device_id=dev_id, timeout=timeout)
    return DistInfo(rank, local, world, device)


def _import_before_the_group() -> None:
    """Imports ``torch.distributed.nn`` before the default process group exists.

    That module's functions take ``group=group.WORLD`` as a default argument, evaluated when it
    is first imported, and DDP's constructor imports it. Imported after ``init_process_group``,
    those defaults keep the world group alive after ``destroy_process_group()`` (torch 2.11 and
    2.13). Gloo's worker threads then run on until the interpreter's shutdown clears that module.
    A worker that frees a tensor there needs the interpreter lock; Python ends a thread that asks
    for it during shutdown, ending it inside a C++ destructor terminates the process, and the
    rank aborts with "terminate called without an active exception" after its run and checkpoint
    are done. Imported first, the defaults are None, and ``cleanup`` ends the group and joins its
    threads while Python is fully alive.
    """
    import torch.distributed.nn  # noqa: F401


def bf16_allreduce_hook(process_group, bucket):
    """DDP communication hook: all-reduce a gradient bucket in bf16, write the mean back in fp32.

    torch's ``default_hooks.bf16_compress_hook`` does the same but refuses anything but NCCL;
    this one also runs on gloo (CPU), so the option can be tested without a GPU (its name differs
    because DDP refuses any hook *named* bf16_compress_hook off NCCL). The division
    by the world size happens before the reduction, in bf16, as torch's hook does.
    """
    group = process_group if process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    buf = bucket.buffer()                                   # [numel] fp32, flat bucket
    compressed = buf.to(torch.bfloat16).div_(world)
    fut = dist.all_reduce(compressed, group=group, async_op=True).get_future()

    def decompress(f):
        out = bucket.buffer()
        out.copy_(f.value()[0])
        return out

    return fut.then(decompress)


def wrap(module: torch.nn.Module, info: DistInfo, bf16_grads: bool = False) -> torch.nn.Module:
    """``module`` in DDP on ``info.device`` (gradients averaged over ranks); unchanged when single.

    DDP copies rank 0's parameters and buffers to every rank at construction, so ranks that were
    initialised from different seeds start identical. Buffers are not re-broadcast at every
    forward: the only buffers are BatchNorm's running stats, which SyncBatchNorm already keeps
    equal on CUDA, and a broadcast between D's real and fake passes would modify a tensor
    autograd still needs.
    """
    if not info.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP
    import inspect
    ids = [info.device.index] if info.device.type == "cuda" else None
    # torch >= 2.13 renamed the option (and warns on the old name); both keep init-time sync.
    kw = ({"forward_sync_buffers": False}
          if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
          else {"broadcast_buffers": False})
    ddp = DDP(module, device_ids=ids, **kw)
    if bf16_grads:
        ddp.register_comm_hook(None, bf16_allreduce_hook)
    return ddp


def gather_all(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable), by rank; ``[obj]`` in a single process. A collective:
    every rank calls it at the same point (one ``all_gather_object``)."""
    if not info.distributed:
        return [obj]
    seen: list = [None] * info.world_size
    dist.all_gather_object(seen, obj)
    return seen


def differing_keys(mine: dict, theirs: dict, skip=()) -> list[str]:
    """The keys of either dict whose values differ (a key one lacks counts), sorted; ``skip``:
    keys not compared. What the ranks' start agreements name when a rank's options differ."""
    return sorted(k for k in set(mine) | set(theirs) if k not in skip and mine.get(k) != theirs.get(k))


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()

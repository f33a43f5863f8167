"""The DataLoader: worker processes, pinned memory, reproducible order, exact resume.

The sampler yields ``(index, epoch)`` keys, so each sample's crop and flip are drawn from
(seed, epoch, index) inside whichever worker loads it: workers may be persistent (they keep a
stale copy of the dataset) and results stay identical for any ``num_workers``. An epoch's order
is a permutation seeded by (seed, epoch); ``set_epoch(epoch, skip=k)`` reproduces it and starts
after this rank's first k samples, and ``set_epoch(epoch, done=D)`` after the D samples all ranks
consumed, on any number of ranks: that is how a resumed run continues mid-epoch.
"""
from __future__ import annotations

import math
import random
import signal
import threading
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate, default_convert, get_worker_info

from pix2pixhd.data.dataset import DatasetError


class ResumableSampler(Sampler):
    """Seeded per-epoch order over ``n`` samples, shardable over ``world_size`` ranks.

    Yields ``(index, epoch)``. The epoch's order is one seeded permutation of all samples; rank r
    of W takes its positions r, r + W, r + 2W, ... (equal shares: padded from the order's start,
    or trimmed with ``drop_last``), so the first k samples of every rank are the order's first
    k * W positions.

    Resuming inside an epoch, ``set_epoch(epoch, done=D)`` leaves out the order's first D
    positions, the samples all ranks together consumed (batches done * batch size * the world
    size they ran with), and shares the rest among this sampler's ranks. With the world size the
    samples were consumed with, that is exactly each rank's own order less its first D / W
    samples; with another (a restart on fewer or more processes) no sample of the epoch is
    trained twice, and with ``drop_last`` only the last positions that do not fill every rank's
    share are left out, as at the end of any epoch. ``skip=k`` instead leaves out the first k samples of this rank's
    own order. Either applies to the next iteration only.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.skip, self.done = 0, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0, done: int = 0) -> None:
        if skip and done:
            raise ValueError("set_epoch: give skip (this rank's samples) or done (all ranks'), not both")
        self.epoch, self.skip, self.done = int(epoch), int(skip), int(done)

    def order(self, epoch: int, done: int = 0) -> list[int]:
        """This rank's index order for ``epoch``, less the order's first ``done`` positions
        (before any ``skip``)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        idx = perm[done:]
        if self.world_size > 1:     # equal shares, as DistributedSampler: pad or trim
            m = len(idx)
            per = m // self.world_size if self.drop_last else math.ceil(m / self.world_size)
            total = per * self.world_size
            idx = (idx + perm[:max(0, total - m)])[:total]
            idx = idx[self.rank:total:self.world_size]
        return idx

    def __iter__(self):
        epoch, skip, done = self.epoch, self.skip, self.done
        self.skip = self.done = 0
        return iter([(i, epoch) for i in self.order(epoch, done)[skip:]])

    def count(self, epoch: int, done: int = 0) -> int:
        """``len(self.order(epoch, done))``, by arithmetic: the permutation is not drawn (a
        ``torch.randperm`` of every sample, milliseconds at 100k samples, asked for every step
        would cost O(N) a step). The epoch does not change the count, only the order. Each
        ``range`` slice mirrors a list slice of :meth:`order`, so any ``done`` or rank counts as it
        does there."""
        m = len(range(self.n)[done:])
        if self.world_size <= 1:
            return m
        per = m // self.world_size if self.drop_last else math.ceil(m / self.world_size)
        total = per * self.world_size
        padded = min(total, m + len(range(self.n)[:max(0, total - m)]))
        return len(range(padded)[self.rank:total:self.world_size])

    def __len__(self) -> int:
        """What the next iteration yields: this rank's share less the ``done`` and ``skip`` of
        :meth:`set_epoch` (:meth:`count`, no permutation drawn)."""
        return len(range(self.count(self.epoch, self.done))[self.skip:])


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive numpy/random from it so any
    # other randomness in a worker is reproducible too. One thread per worker: the workers are
    # the parallelism, and oversubscribed cores slow PIL and torch down.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    torch.set_num_threads(1)


def _worker_init_ignoring_stops(worker_id: int) -> None:
    """:func:`_worker_init`, in a worker that ignores SIGTERM and SIGINT: SLURM signals every
    process of the job, torchrun its workers' whole process group, GNU timeout and a terminal's
    Ctrl-C the whole (foreground) process group; a worker that died of it would make the process
    it serves fail on a dead worker (torch raises "DataLoader worker exited unexpectedly", and the
    worker prints a traceback) instead of finishing its step or its writes and stopping. Such
    workers must be ended with :func:`shutdown_workers` on every way out (left to interpreter
    exit, a worker that ignores SIGTERM would hang it), or they end with the process they serve
    (torch's watchdog).

    The signals were blocked in the process that started the worker (:class:`_StopsIgnoringLoader`),
    so the worker was born with them blocked: torch installs a SIGTERM handler of its own in every
    worker before this runs (one that dies of a SIGTERM not sent by the loader's process), and a
    signal that came in between (GNU timeout firing while the workers start) killed the worker.
    Now such a signal waits, pending, and is discarded when they are unblocked here, ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    _worker_init(worker_id)


_STOPS = (signal.SIGTERM, signal.SIGINT)


class _StopsIgnoringLoader(DataLoader):
    """A DataLoader whose workers start with SIGTERM and SIGINT blocked (this thread's signal mask
    while they are forked; this process gets a signal that came meanwhile when they are back), until
    :func:`_worker_init_ignoring_stops` ignores them, and are forked after
    :func:`settle_before_fork`. Where there are no signal masks (Windows), without the blocking."""

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        settle_before_fork()
        if not hasattr(signal, "pthread_sigmask"):
            return super()._get_iterator()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        try:
            return super()._get_iterator()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def collate(batch: list[dict]):
    """``default_collate``, except that samples of different sizes raise DatasetError naming two
    of the files, their sizes and the fixes, where torch says only 'stack expects each tensor to
    be equal size'. :func:`pix2pixhd.data.check_batch_sizes` refuses such a dataset before
    training; this is what a run that skipped it (``--validate off``) meets at the first mixed
    batch. Runs in the worker; the error reaches the training process with its message."""
    try:
        return default_collate(batch)
    except RuntimeError:
        if not (batch and all(isinstance(s, dict) for s in batch)):
            raise
        for key, value in batch[0].items():
            if not isinstance(value, torch.Tensor):
                continue
            other = next((s for s in batch if s[key].shape != value.shape), None)
            if other is not None:
                where = "path_B" if key == "B" else "path"

                def named(s):
                    return f"{s.get(where, '?')} gives {key} {s[key].shape[-1]}x{s[key].shape[-2]}"
                raise DatasetError(
                    f"samples of one batch differ in size: {named(batch[0])}, {named(other)}; a "
                    f"batch ({len(batch)} samples) stacks samples of one size. Fix: --batchSize 1, "
                    f"or a resize_or_crop that gives one size (resize_and_crop), or resize the files "
                    f"to one size. Validation (--validate headers or full) refuses such a dataset "
                    f"before training, naming the sizes") from None
        raise


def _share(x) -> None:
    if isinstance(x, torch.Tensor):
        x.share_memory_()
    elif isinstance(x, dict):
        for v in x.values():
            _share(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _share(v)


def convert_shared(sample):
    """``default_convert`` (what a loader without batching applies to each sample), with every
    tensor moved into shared memory here, in the worker. Without it the move happens in the
    worker's queue-feeder thread, where a full /dev/shm (a container's 64 MB) only prints a
    traceback and drops the sample: the loader's consumer then waits for it for ever (synthesis
    hung, deaf to SIGTERM). Here the allocation's error is the fetch's, and reaches the main
    process as any worker error does (:func:`pix2pixhd.errors.shared_memory_full` words it).
    What default_collate does for batches already (it allocates its output in shared memory)."""
    out = default_convert(sample)
    if get_worker_info() is not None:
        _share(out)
    return out


# seconds a loader waits before it forks its workers in a process that runs a process group
FORK_SETTLE_S = 0.05


def settle_before_fork() -> None:
    """Wait :data:`FORK_SETTLE_S` before forking loader workers, where this process runs a
    torch.distributed process group (nothing otherwise).

    The group's threads (gloo's) take Python's interpreter lock from C++ when they drop a
    collective's tensors, creating and deleting a Python thread state under a lock of the
    interpreter's own. A fork while one of them held that lock gave a worker that waited for it for
    ever in Python's after-fork code (gdb's stack of the stuck worker: ``PyOS_AfterFork_Child`` ->
    ``_PyThreadState_DeleteExcept``, Python 3.11), before it ran a line of the loader: a two-rank
    synthesis hung, one rank waiting for its worker's first input and the other in a collective.
    The workers are forked right after the start's collectives, while those threads may still be
    dropping their tensors: waiting lets them finish (``scripts/fork_stress.py`` counts the stalls
    over many jobs, with and without the wait: docs/synthesis.md). A forkserver would avoid the
    fork altogether, but it imports the user's script again (one without a ``__main__`` guard ran
    twice), and under it the tests of a dead worker under DDP and of a SIGTERM to torchrun failed."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        time.sleep(FORK_SETTLE_S)


def create_dataloader(dataset, batch_size: int, *, shuffle: bool, num_workers: int, seed: int = 0,
                      drop_last: bool = False, sampler=None, pin_memory: bool | None = None,
                      prefetch_factor: int = 2, ignore_stops: bool = False, timeout: float = 0) -> DataLoader:
    """A DataLoader over ``dataset`` with batches of uint8/int32 tensors and 'path' lists.

    With no ``sampler`` a :class:`ResumableSampler` is made (``loader.sampler``); call
    ``loader.sampler.set_epoch(epoch, skip=batches_done * batch_size)`` before each epoch.
    ``pin_memory`` defaults to whether CUDA is available; workers are persistent when
    ``num_workers > 0``; with ``ignore_stops`` they ignore SIGTERM and SIGINT
    (:func:`_worker_init_ignoring_stops`) and are forked after :func:`settle_before_fork`. Batches are made by :func:`collate` (samples of different sizes: a
    DatasetError naming them). ``timeout`` > 0 (with workers): a fetch that waits longer for a
    worker raises torch's "DataLoader timed out after T seconds" RuntimeError (0: it waits for ever
    while the worker lives).
    """
    if sampler is None:
        sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kw = {}
    if num_workers > 0:
        kw = dict(persistent_workers=True, prefetch_factor=prefetch_factor,
                  worker_init_fn=_worker_init_ignoring_stops if ignore_stops else _worker_init,
                  timeout=timeout)
    # None: no batching, samples pass through default_convert (in shared memory from the worker)
    kw["collate_fn"] = collate if batch_size is not None else convert_shared
    cls = _StopsIgnoringLoader if ignore_stops else DataLoader
    return cls(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
               pin_memory=pin_memory, drop_last=drop_last, generator=torch.Generator().manual_seed(seed), **kw)


def shutdown_workers(loader, timeout: float = 5.0) -> None:
    """End ``loader``'s worker processes now, if it has any running; safe to call more than once.

    Persistent workers (:func:`create_dataloader`) otherwise live until the loader is garbage
    collected; at interpreter exit torch leaves them to multiprocessing, which stops them with
    SIGTERM and joins them, so a worker that ignores SIGTERM (the training loop's do, see
    ``pix2pixhd.trainer``) would keep the process from ever exiting. Here the workers are asked to
    stop (torch's own shutdown: they finish the sample in hand), and any still alive after
    ``timeout`` seconds is killed (SIGKILL, which no worker can ignore)."""
    it = getattr(loader, "_iterator", None)
    if it is None:
        return
    loader._iterator = None   # a later iteration starts fresh workers
    workers = list(getattr(it, "_workers", ()))
    if getattr(it, "_worker_pids_set", False):
        # torch's SIGCHLD handler raises the error of any dead worker whose pid it still watches,
        # in the main thread, wherever that is: a worker killed below (or one that died) raised
        # it out of this shutdown. torch's own shutdown stops watching them first; so does this.
        from torch.utils.data._utils.signal_handling import _remove_worker_pids
        _remove_worker_pids(id(it))
        it._worker_pids_set = False
    if hasattr(it, "_workers_done_event") and any(not w.is_alive() for w in workers):
        # A worker that died (SIGKILL: the out-of-memory killer) may have died holding the lock
        # of the event torch's shutdown sets, which every worker checks in its loop: set() would
        # then wait for ever (a training run that had saved hung at its end). The others are
        # killed too (told to stop without the event, they would fail an assertion), and the
        # shutdown sets an event of this process's own.
        for w in workers:
            if w.is_alive():
                w.kill()
        for w in workers:
            w.join(timeout)
        it._workers_done_event = threading.Event()
    try:
        if hasattr(it, "_shutdown_workers"):   # a multiprocessing iterator (num_workers > 0)
            it._shutdown_workers()
    finally:
        deadline = None
        for w in workers:
            if w.is_alive():
                deadline = deadline or time.monotonic() + timeout
                w.join(max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                w.kill()
                w.join(timeout)


def socket_error_as_worker_death(e: BaseException, iterator, wait_s: float = 1.0) -> BaseException:
    """``e``, raised by a DataLoader fetch, as torch's error of a dead worker when it is the
    socket error of one (EOFError, ConnectionError: a worker killed while handing a batch's
    shared memory over; torch wraps that in its RuntimeError only when the worker was already
    reaped): each of ``iterator``'s workers is joined (``wait_s`` in all) and a dead one makes
    it ``RuntimeError("DataLoader worker (pid(s) P) exited unexpectedly")`` from ``e``. Else ``e``
    (at once when it is the dataset's own error, which torch re-raises naming the worker process)."""
    if isinstance(e, RuntimeError) or "in DataLoader worker process" in str(e):
        return e
    deadline, dead = time.monotonic() + wait_s, []
    for w in list(getattr(iterator, "_workers", None) or []):
        try:
            w.join(max(0.0, deadline - time.monotonic()))
            if not w.is_alive():
                dead.append(str(w.pid))
        except (AssertionError, ValueError, OSError):   # not started, or closed: not ours to judge
            continue
    if not dead:
        return e
    err = RuntimeError(f"DataLoader worker (pid(s) {', '.join(dead)}) exited unexpectedly")
    err.__cause__ = e
    return err

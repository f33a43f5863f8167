"""Benchmark: the memory of the DataLoader's worker processes on a large dataset (10k-100k samples).

    OMP_NUM_THREADS=1 python3 benchmarks/loader_memory.py                 # 10k samples, 2 workers
    OMP_NUM_THREADS=1 python3 benchmarks/loader_memory.py --n 100000 --data /tmp/loader_memory
    python3 benchmarks/loader_memory.py --n 200 --workers 1 --batches 5 --records compact --json m.json

A worker is a fork of the training process: the pages it only reads stay shared with it, and
every page it writes is copied into it, a Python object's page as soon as its reference count
changes (a read of the object does that) or the garbage collector walks it. The dataset's records
were a list of dicts of Paths (some objects per sample), which each worker copied as it read
samples; since f6f3b6f they are :class:`pix2pixhd.data.layouts.Records` (per role one bytes blob
and one offsets array). What is measured: a paired dataset (cityscapes layout, ``train_label`` +
``train_img``, no instance maps) of ``--n`` samples of 8x8 PNGs, ``--unique`` distinct pairs
hard-linked under the other names (a 100k-sample split costs 200k directory entries, not files),
opened with ``validate='off'`` (``--validate off``: no file read before training, as a large run
would, or a ``--resume`` whose validation.json skips validation), loaded by
``pix2pixhd.data.create_dataloader`` as training does (shuffled, ``drop_last``, persistent
workers that ignore stops) for ``--batches`` batches of ``--batch_size``. Then per worker its
USS (Private_Clean + Private_Dirty: what it alone holds, freed when it exits) and PSS (its
pages, shared ones divided among their sharers) from ``/proc/PID/smaps_rollup`` (the USS also
when the first batch reached the training process: the workers' start), and the training
process's RSS. A worker touches only the records of the samples it read: ``--batches`` of a
whole epoch (``--n`` / ``--batch_size``, shared among the workers) shows what a long run's come to.

``--records dicts`` measures the former representation with the same code: the Records are
turned into a list of dicts of Paths (``list(ds.records)``: one dict and one Path per file, as
find_files made them) before the workers fork; ``both`` (the default) runs compact then dicts.
Each runs in a fresh process (spawned), so one does not inherit the other's heap. Linux only
(``/proc/PID/smaps_rollup``, kernel 4.14 or later).

A stop (SIGTERM: GNU timeout, scancel; SIGINT: Ctrl-C) ends the run with one ``stopped by`` line on
stderr and the status a stop of the project's other commands has (75, 130), no table: the
measuring process and its workers are ended (it runs in a process group of its own, which a
terminal's Ctrl-C does not reach) and the temporary dataset is removed.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._cli import check_outputs, command_line, make_parser, write_text_atomic  # noqa: E402
from pix2pixhd.errors import (INTERRUPTED_EXIT_STATUS, STOPPED_EXIT_STATUS, ConfigError,  # noqa: E402
                              UserError, install_signal_handlers, restore_signal_handlers)

SIZE = 8          # the images' side: decoding costs next to nothing, the records are what grows
LABEL_NC = 4      # label ids 0..3
MODES = ("compact", "dicts")
FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty")
# A stop's exit status, as the project's other commands have it (pix2pixhd.errors)
STOPS = {signal.SIGTERM: STOPPED_EXIT_STATUS, signal.SIGINT: INTERRUPTED_EXIT_STATUS}
# How long the measuring process has to shut its workers down once told to stop (s); then killed
END_TIMEOUT_S = 20.0


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived (:func:`stop_on_signals`); ``signum`` is the signal's number.
    A BaseException, as KeyboardInterrupt is: no ``except Exception`` takes it for an error."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals() -> dict:
    """SIGTERM and SIGINT raise :class:`Stopped` from here on (one ignored on entry stays
    ignored); once one has, both are ignored, so that a second cannot cut the cleanup short.
    Main thread only (elsewhere nothing is installed). Returns the handlers replaced
    (``restore_signal_handlers``)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_stop(signum, frame):
        for s in STOPS:
            if signal.getsignal(s) is on_stop:
                signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)
    return install_signal_handlers({s: on_stop for s in STOPS})


def smaps_rollup(pid: int) -> dict[str, float]:
    """{field: MiB} of ``/proc/PID/smaps_rollup`` (:data:`FIELDS`), with ``Uss`` = Private_Clean +
    Private_Dirty."""
    got = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in FIELDS:
                got[key] = int(rest.split()[0]) / 1024   # kB
    got["Uss"] = got["Private_Clean"] + got["Private_Dirty"]
    return got


def ensure_data(root: Path, n: int, unique: int) -> Path:
    """The dataset of ``n`` samples under ``root`` (reused when there, from an earlier run with the
    same --n and --unique): ``unique`` distinct label + photo pairs, the rest hard links to them.
    Built in a ``.part`` folder renamed when whole, so a run cut short is not taken for one."""
    import numpy as np
    from PIL import Image
    d = root / f"tiny_{SIZE}px_{n}_{unique}u"
    if d.is_dir():
        return d
    part = d.with_name(d.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    (part / "train_label").mkdir(parents=True)
    (part / "train_img").mkdir()
    for i in range(n):
        for sub in ("train_label", "train_img"):
            p = part / sub / f"s{i:06d}.png"
            if i < unique:
                a = (rng.integers(0, LABEL_NC, (SIZE, SIZE)) if sub == "train_label"
                     else rng.integers(0, 256, (SIZE, SIZE, 3)))
                Image.fromarray(a.astype(np.uint8)).save(p)
            else:
                os.link(part / sub / f"s{i % unique:06d}.png", p)
    part.rename(d)
    print(f"made {n} samples ({unique} distinct pairs, the rest hard links) in "
          f"{time.perf_counter() - t:.1f} s -> {d}", flush=True)
    return d


def _quiet_dropped_connections(kind, value, tb) -> None:
    """sys.excepthook of the measuring process and its workers. A worker hands each batch's
    tensors over as file descriptors, served by multiprocessing.resource_sharer's thread, which
    reports an error of its connection through sys.excepthook; at a stop the measuring process
    drops the connection mid-batch, and the worker printed a traceback's first lines (cut short
    by the group's SIGKILL) under the stop line. A dropped connection (OSError, EOFError) is
    not an error of the measurement: it is not printed; anything else is, as Python would."""
    if issubclass(kind, (OSError, EOFError)):
        return
    sys.__excepthook__(kind, value, tb)


def measure(d: str, mode: str, workers: int, batches: int, batch_size: int) -> list[dict]:
    """One row per worker: ``mode``'s records, ``workers`` forked workers, ``batches`` batches read.
    Runs in a fresh (spawned) process: see :func:`_measure_in_child`."""
    import gc

    from pix2pixhd.data import create_dataloader, create_dataset
    from pix2pixhd.data.loader import shutdown_workers
    # A spawned process inherits its start method ('spawn'), which torch's DataLoader would use for
    # its workers; training's workers are forks (Python's default on Linux, which train_hd.py keeps)
    mp.set_start_method("fork", force=True)
    sys.excepthook = _quiet_dropped_connections   # inherited by the workers, forked below
    ds = create_dataset(d, "train", label_nc=LABEL_NC, no_instance=True, resize_or_crop="none",
                        required_multiple=1, validate="off")
    if mode == "dicts":
        ds.records = list(ds.records)   # the former representation: a list of dicts of Paths
    gc.collect()
    before = smaps_rollup(os.getpid())["Rss"]
    loader = create_dataloader(ds, batch_size, shuffle=True, num_workers=workers, seed=0,
                               drop_last=True, ignore_stops=True)
    first, done, epoch = {}, 0, 0
    try:
        while done < batches:
            loader.sampler.set_epoch(epoch)
            for _ in loader:
                done += 1
                if done == 1:   # the workers started and each made a batch (prefetch)
                    pids = [w.pid for w in loader._iterator._workers]
                    first = {pid: smaps_rollup(pid)["Uss"] for pid in pids}
                if done == batches:
                    break
            epoch += 1
        parent = smaps_rollup(os.getpid())["Rss"]
        rows = []
        for k, pid in enumerate(pids):
            m = smaps_rollup(pid)
            rows.append({"records": mode, "records_type": type(ds.records).__name__,   # what was forked
                         "worker": k, "parent_rss_mib_before_fork": before,
                         "parent_rss_mib": parent, "uss_mib_first_batch": first[pid],
                         "uss_mib": m["Uss"], "pss_mib": m["Pss"], "rss_mib": m["Rss"]})
    finally:
        shutdown_workers(loader)
    return rows


def _measure_in_child(conn, *args) -> None:
    """:func:`measure` in the spawned process, its rows (or its error, or a stop) sent to the
    parent. It leads a process group of its own (its workers are in it), so a terminal's Ctrl-C
    reaches only the parent, which ends this group itself (:func:`_end_child`). It was started
    with SIGTERM and SIGINT blocked (:func:`run_mode`): a stop that came before its handlers are
    in waits for them. A stop raises :class:`Stopped` in measure, whose ``finally`` shuts the
    workers down (they ignore stops, as training's do); then this process ends quietly."""
    try:
        os.setpgid(0, 0)
    except OSError:   # already a group leader
        pass
    stop_on_signals()
    try:
        # a stop that came while they were blocked is raised here, by the unblocking (inside the
        # try: answered as a stop, not a traceback of the process's bootstrap with no reply)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, list(STOPS))
        reply = ("ok", measure(*args))
    except Stopped as e:
        reply = ("stopped", e.signum)
    except BaseException as e:   # said by the parent (a UserError as one error line)
        reply = ("error", e if isinstance(e, UserError) else RuntimeError(f"{type(e).__name__}: {e}"))
    try:
        conn.send(reply)
    except (OSError, Stopped):   # the parent is gone (BrokenPipeError) or stopping: it reports
        pass
    finally:
        conn.close()
        # the workers are gone: from here a SIGTERM (the parent's, see _end_child) ends this
        # process at once, quietly, not with a Stopped raised in multiprocessing's exit code
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _end_child(p, timeout: float = END_TIMEOUT_S) -> None:
    """End the measuring process ``p`` and its workers, if still running: SIGTERM (it shuts its
    workers down and exits), then after ``timeout`` s SIGKILL to its process group, which also
    takes workers it left (SIGKILL to the group also when it has exited: a worker outlives a
    process that died without shutting it down)."""
    if p.is_alive():
        p.terminate()
        p.join(timeout)
    try:
        os.killpg(p.pid, signal.SIGKILL)   # the group it leads: it and its workers, if any are left
    except OSError:   # none left (ProcessLookupError), or it had not made its group yet
        pass
    if p.is_alive():
        p.kill()
    p.join()


def run_mode(d: Path, mode: str, workers: int, batches: int, batch_size: int) -> list[dict]:
    """:func:`measure` in a spawned process: its heap holds only what this mode built."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_measure_in_child, args=(send, str(d), mode, workers, batches, batch_size))
    # the child inherits the mask: a stop meanwhile waits for its handlers; here, for p.start() to
    # return, so that the finally below knows the process it must end
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, list(STOPS))
    try:
        p.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    try:
        send.close()
        try:
            status, got = recv.recv()
        except (EOFError, ConnectionResetError):
            p.join()
            raise RuntimeError(f"the measuring process of --records {mode} died "
                               f"(exit status {p.exitcode})") from None
        p.join(END_TIMEOUT_S)   # it replied: it is exiting
    finally:   # a stop (Stopped) or an error here too: no measuring process or worker outlives this
        recv.close()
        _end_child(p)
    if status == "stopped":   # a stop sent to the measuring process alone: this run stops too
        raise Stopped(got)
    if status != "ok":
        raise got
    return got


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/loader_memory.py``."""
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000, help="samples in the dataset")
    p.add_argument("--unique", type=int, default=None,
                   help="distinct label + photo pairs among them, the rest hard links (default: 4, "
                        "or --n when smaller)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--batches", type=int, default=200, help="batches read before measuring")
    p.add_argument("--batch_size", type=int, default=4, help="samples per batch")
    p.add_argument("--records", default="both", choices=("compact", "dicts", "both"),
                   help="the records' representation: compact (Records, today's), dicts (a list of "
                        "dicts of Paths, the former one) or both")
    p.add_argument("--data", default=None, help="where to keep the generated dataset, reused by a later "
                                                "run (default: a temporary folder)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write the rows as JSON (default: not written)")
    return p


def parse_args(argv=None):
    """The options, each checked before any work: a bad value is a ConfigError naming the option,
    the value and the valid range (one ``error:`` line through ``errors.run``, exit status 1)."""
    p = build_parser()
    a = p.parse_args(argv)
    if a.unique is None:
        a.unique = min(4, a.n)   # a given --unique larger than --n is refused below
    for name, least in (("n", 1), ("unique", 1), ("workers", 1), ("batches", 1), ("batch_size", 1)):
        v = getattr(a, name)
        if v < least:
            raise ConfigError(f"--{name} {v}: expected at least {least}")
    if a.unique > a.n:
        raise ConfigError(f"--unique {a.unique}: expected at most --n {a.n} "
                          "(distinct pairs among the samples)")
    if a.batch_size > a.n:
        raise ConfigError(f"--batch_size {a.batch_size}: expected at most --n {a.n} (batches are kept full)")
    if not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"):
        raise UserError(f"/proc/{os.getpid()}/smaps_rollup does not exist here: this benchmark reads the "
                        "workers' memory from it; run it on Linux 4.14 or later")
    check_outputs(p, [("--json", a.json)], [("--data", a.data)])
    a.modes = MODES if a.records == "both" else (a.records,)
    return a


def main(argv=None) -> int:
    """The benchmark; a stop (SIGTERM, SIGINT) ends it with one line on stderr and status 75 or
    130 (:data:`STOPS`), after the measuring process and the temporary dataset are gone."""
    a = parse_args(argv)
    previous = stop_on_signals()
    try:
        tmp = None if a.data else tempfile.TemporaryDirectory()
        root = Path(a.data or tmp.name)
        rows = []
        try:
            d = ensure_data(root, a.n, a.unique)
            for mode in a.modes:
                rows += run_mode(d, mode, a.workers, a.batches, a.batch_size)
        finally:
            if tmp is not None:
                tmp.cleanup()
    except Stopped as e:
        status = STOPS[e.signum]
        print(f"stopped by {e}{' (Ctrl-C)' if e.signum == signal.SIGINT else ''} before the table: nothing "
              f"measured is kept{'' if a.data else ', the temporary dataset is removed'}; rerun the same "
              f"command; exit status {status}", file=sys.stderr, flush=True)
        return status
    finally:
        restore_signal_handlers(previous)
    print(f"\nloader memory: {a.n} samples ({SIZE}x{SIZE} label + photo PNGs), validate off, {a.workers} "
          f"worker(s), {a.batches} batches of {a.batch_size} read; MiB; {os.cpu_count()} CPU cores visible")
    print(f"{'records':>8} {'parent RSS':>10} {'worker':>6} {'USS 1st batch':>13} {'USS':>7} {'PSS':>7}")
    for r in rows:
        print(f"{r['records']:>8} {r['parent_rss_mib']:10.1f} {r['worker']:>6} "
              f"{r['uss_mib_first_batch']:13.1f} {r['uss_mib']:7.1f} {r['pss_mib']:7.1f}")
    if a.json:
        import torch

        from benchmarks.baseline import describe_device   # CPU model and threads, torch
        write_text_atomic(a.json, json.dumps({
            "benchmark": "loader_memory", "command": command_line("benchmarks/loader_memory.py", argv),
            "device": describe_device(torch.device("cpu")),
            "n": a.n, "unique": a.unique, "workers": a.workers, "batches": a.batches,
            "batch_size": a.batch_size, "image_size": SIZE, "validate": "off",
            "cpu_count": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    sys.exit(run(main))

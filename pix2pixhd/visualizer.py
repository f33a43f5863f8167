"""Training logs: a plain-text loss log, a JSON-lines history, tensorboardX, and an HTML page.

Only the master process writes, and only after :meth:`Visualizer.begin` (the trainer calls it once
the run has validated its data and built its models, so a start that fails leaves the run folder
as it was; messages logged before are kept in memory until then). Every logged loss is the mean
over its logging window (:class:`WindowMeans`), not the one step that falls on the log line: the
console line, the text log, the JSON history, the tensorboard scalars and the HTML curves (drawn
from the history, read once, then kept in memory) all show the same means; a curve of more than
:data:`CURVE_MAX_POINTS` records draws means of consecutive ones.

loss_log.txt has NVIDIA's shape, so parsers written for pix2pixHD's (and junyanz's pix2pix and
CycleGAN's) read it: each process start writes ``================ Training Loss (DATE)
================``; each log line is ``(epoch: E, iters: I, time: T) NAME: V ...`` (T: the
window's seconds per image; the losses in the reference's order, :data:`REFERENCE_LOSS_ORDER`,
then any it lacks), followed by one line ``    [step S] lr: ... images_per_s: ...`` with the rest,
which such parsers skip. Message lines start with ``================ [step S]``.

The HTML page (``web/index.html``, as the reference) shows the
loss curves (an inline SVG drawn here, so no plotting dependency) and, per epoch, label |
synthesized | real images (input | synthesized | target when the input is a photo, label_nc 0:
pix2pix, pix2pixHD with --label_nc 0; CycleGAN's real_A ... rec_B under a line naming the folders
of A and B); it links only to files that exist on disk. TensorBoard's image tag joins the same
captions (``images/label_synthesized_real``).

A write that fails (a full disk): loss_log.txt, loss_history.jsonl and the HTML page are the
run's record, so the run stops with one :class:`LogWriteError` line; TensorBoard is only a view,
so it is switched off for the rest of the run with one note, and training goes on. Nothing here
waits on a tensorboardX writer thread that has stopped (its queue would block for good), nor more
than :data:`TB_STALL_SECONDS` on one that is stuck (a write to a hung disk that never returns): that
too switches TensorBoard off with the note, and the stuck thread (a daemon) does not hold up exit.
Another writer (torch.utils.tensorboard's, the fallback) has its calls made in a daemon thread and
waited on for as long.
"""
from __future__ import annotations

import fnmatch
import html
import itertools
import json
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from pix2pixhd.checkpoint import atomic_write_bytes, not_regular_message
from pix2pixhd.errors import MissingDependencyError, UserError, loads_json

_WRITER_COUNT = itertools.count()   # tensorboard writers this process opened

# The longest a log or close call waits on a tensorboard writer thread that makes no progress (its
# queue stays full, or close() does not return) before TensorBoard is switched off.
TB_STALL_SECONDS = 60.0


class LogWriteError(UserError, RuntimeError):
    """A run's record (loss_log.txt, loss_history.jsonl, an image of the HTML page) could not be
    written: the message names the file, the OS error and the fix."""


def _log_write_error(path: Path, e: OSError) -> LogWriteError:
    import errno
    fix = {errno.EISDIR: f"Remove or rename the folder {path}",
           errno.EROFS: f"Make {path.parent} writable (it is on a read-only file system)",
           errno.EACCES: f"Make {path.parent} writable by this user",
           errno.EPERM: f"Make {path.parent} writable by this user"}.get(
        e.errno, "Free space on that disk (or raise the file-size limit)")
    return LogWriteError(
        f"could not write {path}: {type(e).__name__}: {e}; the run stops, as this file is part of "
        f"its record. {fix}, then continue the run with --auto_resume (or --resume)")


def _tensorboardx_event_writer(writer):
    """tensorboardX's EventFileWriter behind a SummaryWriter (its queue, writer thread and event
    file), or None (torch.utils.tensorboard's, or another tensorboardX layout)."""
    ev = getattr(getattr(writer, "file_writer", None), "event_writer", None)
    if all(hasattr(ev, a) for a in ("_worker", "_event_queue", "_ev_writer", "_closed")):
        return ev
    return None


def summary_writer_class():
    """tensorboardX's SummaryWriter (a declared dependency), else torch.utils.tensorboard's (same
    calls; it needs the `tensorboard` package, which GPU images often carry without tensorboardX).
    Neither: an error that names both fixes."""
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError as missing_x:
        try:
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter
        except ImportError:
            raise MissingDependencyError(
                f"tensorboard logging needs tensorboardX ({missing_x}) or the tensorboard package "
                "(for torch.utils.tensorboard): pip install tensorboardX, or pass "
                "--no_tensorboard to train without it") from missing_x


# The Cityscapes labelId palette (ids 0..33, plus 34 = license plate as car), as the reference's
# util.labelcolormap(35) uses: 0-4 unlabeled/ego/border/out-of-roi/static black, 7 road, 26 car.
CITYSCAPES_COLORS = (
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81),
    (128, 64, 128), (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70),
    (102, 102, 156), (190, 153, 153), (180, 165, 180), (150, 100, 100), (150, 120, 90),
    (153, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35),
    (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32), (0, 0, 142))


# TensorBoard grids are at most this wide (three 2048-px panels would be 6144 px, several MB of
# PNG every display_freq steps, for the whole run); the HTML page keeps the full-size images.
TB_MAX_WIDTH = 1536


def tensorboard_grid(panels: list[np.ndarray], max_width: int = TB_MAX_WIDTH) -> np.ndarray:
    """Panels [H_i, W_i, 3] uint8 side by side (label | synthesized | real ...), the shorter ones
    padded at the bottom with black (CycleGAN's domains may differ in size), then shrunk by the
    smallest whole factor that brings the width to ``max_width`` or less (area average)."""
    h = max(p.shape[0] for p in panels)
    grid = np.concatenate([np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0))) for p in panels], axis=1)
    f = -(-grid.shape[1] // max_width)
    if f > 1:
        hh, ww = grid.shape[0] // f * f, grid.shape[1] // f * f
        grid = grid[:hh, :ww].reshape(hh // f, f, ww // f, f, -1).mean((1, 3)).round().astype(np.uint8)
    return grid


def label_colormap(n: int) -> np.ndarray:
    """[n, 3] uint8 colours, as the reference's util.labelcolormap: for n == 35 the Cityscapes
    labelId palette (road 7 → (128, 64, 128), car 26 → (0, 0, 142)); otherwise the PASCAL VOC
    bit-interleaved map (id 0 → black)."""
    if n == len(CITYSCAPES_COLORS):
        return np.array(CITYSCAPES_COLORS, dtype=np.uint8)
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def label_to_rgb(label: torch.Tensor, label_nc: int) -> np.ndarray:
    """[1, H, W] or [H, W] ids → [H, W, 3] uint8 colours (ids ≥ label_nc are white)."""
    ids = label.reshape(label.shape[-2:]).long().cpu().numpy()
    cmap = np.concatenate([label_colormap(max(label_nc, 1)), [[255, 255, 255]]]).astype(np.uint8)
    return cmap[np.clip(ids, 0, label_nc)]


def tensor_to_rgb(img: torch.Tensor) -> np.ndarray:
    """[3, H, W] float in [-1, 1] or uint8 → [H, W, 3] uint8 (rounded, as encoding.float_to_uint8)."""
    img = img.detach().cpu()
    if img.dtype != torch.uint8:
        img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return img[:3].permute(1, 2, 0).numpy()


def save_png(arr: np.ndarray, path: Path, step: int | None = None) -> None:
    """``step``: kept in the file's text chunk "step" (a resume moves later steps' images aside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    info = None
    if step is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("step", str(step))
    Image.fromarray(arr).save(tmp, pnginfo=info)
    tmp.replace(path)


# The most points a loss curve draws per series (the plot is 640 px wide), so the page's time and
# size stay flat as the history grows. A longer history is drawn as the means of buckets of
# consecutive records, not every n-th record: with a small --print_freq each record is a short,
# noisy window, and a stride would draw an arbitrary one of each bucket.
CURVE_MAX_POINTS = 1000


class CurvePoints:
    """What :func:`loss_curves_svg` draws of a history, kept up record by record (:meth:`add`):
    each series' points, the means of buckets of consecutive records (one record each up to
    ``max_points`` records; the buckets double in size each time there would be more), and the
    exact extremes of ``x`` and of each series' values, which the axis labels show.

    ``keys``: the series (default: every key with a :data:`LOSS_PREFIXES` prefix); ``x``: the key
    of the horizontal axis, which every record holds.
    """

    def __init__(self, keys: list[str] | None = None, x: str = "step", max_points: int = CURVE_MAX_POINTS):
        self.keys, self.x, self.max_points = keys or None, x, max_points
        self.per_bucket = 1   # records per bucket; all but the last are full
        self.buckets: list[list] = []   # [records, {key: [sum of x, sum of values, count]}]
        self.x_range: tuple | None = None
        self.v_range: dict[str, tuple] = {}   # key: (lowest, highest) value
        self.seen: set[str] = set()   # the default keys met so far

    def add(self, rec: dict) -> None:
        s = rec[self.x]
        self.x_range = (s, s) if self.x_range is None else (min(self.x_range[0], s), max(self.x_range[1], s))
        if not self.buckets or self.buckets[-1][0] == self.per_bucket:
            self.buckets.append([0, {}])
        bucket = self.buckets[-1]
        bucket[0] += 1
        if self.keys is None:
            keys = [k for k in rec if k.startswith(LOSS_PREFIXES)]
            self.seen.update(keys)
        else:
            keys = [k for k in self.keys if k in rec]
        for k in keys:
            v = rec[k]
            lo_hi = self.v_range.get(k)
            self.v_range[k] = (v, v) if lo_hi is None else (min(lo_hi[0], v), max(lo_hi[1], v))
            sums = bucket[1].get(k)
            if sums is None:
                bucket[1][k] = [s, v, 1]
            else:
                sums[0] += s
                sums[1] += v
                sums[2] += 1
        if len(self.buckets) > self.max_points:   # merge neighbours: at most max_points / 2 + 1 left
            merged = []
            for i in range(0, len(self.buckets), 2):
                n, sums = self.buckets[i][0], {k: list(t) for k, t in self.buckets[i][1].items()}
                for n2, sums2 in self.buckets[i + 1:i + 2]:
                    n += n2
                    for k, t in sums2.items():
                        if k in sums:
                            sums[k] = [a + b for a, b in zip(sums[k], t)]
                        else:
                            sums[k] = list(t)
                merged.append([n, sums])
            self.buckets, self.per_bucket = merged, self.per_bucket * 2

    def svg(self, width: int = 720, height: int = 260) -> str:
        keys = self.keys or sorted(self.seen)
        ranges = [self.v_range[k] for k in keys if k in self.v_range]
        if self.x_range is None or not keys or not ranges:
            return "<p>No losses logged yet.</p>"
        # the points span the axis (CPU-minutes 0.06..0.13 were squeezed into a 0.06..1.06 one); a
        # single point gets a unit-wide axis
        lo_s, hi_s = self.x_range
        if not hi_s > lo_s:
            hi_s = lo_s + 1
        lo_v, hi_v = min(r[0] for r in ranges), max(r[1] for r in ranges)
        hi_v = max(hi_v, lo_v + 1e-6)
        x = self.x
        pad = 40
        colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

        def xy(s, v):
            x = pad + (s - lo_s) / (hi_s - lo_s) * (width - 2 * pad)
            y = height - pad - (v - lo_v) / (hi_v - lo_v) * (height - 2 * pad)
            return f"{x:.1f},{y:.1f}"

        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20 * len(keys)}">',
                 f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="none" stroke="#999"/>',
                 f'<text x="{pad}" y="{pad - 8}" font-size="11">{hi_v:.3g}</text>',
                 f'<text x="{pad}" y="{height - pad + 14}" font-size="11">{lo_v:.3g} ({html.escape(x)} {lo_s:.4g} … {hi_s:.4g})</text>']
        for i, k in enumerate(keys):
            pts = " ".join(xy(t[0] / t[2], t[1] / t[2]) for _, sums in self.buckets if (t := sums.get(k)))
            c = colours[i % len(colours)]
            parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
            parts.append(f'<text x="{pad}" y="{height + 14 + 20 * i}" font-size="12" fill="{c}">{html.escape(k)}</text>')
        parts.append("</svg>")
        return "\n".join(parts)


def loss_curves_svg(history: list[dict], width: int = 720, height: int = 260, *,
                    keys: list[str] | None = None, x: str = "step", max_points: int = CURVE_MAX_POINTS) -> str:
    """An SVG line plot of every loss in ``history`` (dicts with 'step' and loss values); at most
    ``max_points`` points per series (:class:`CurvePoints`).

    ``keys``: the series to draw (default: every key with a :data:`LOSS_PREFIXES` prefix); ``x``: the key of the
    horizontal axis. A dict may hold only some of the keys (each series skips dicts without it),
    which is how ``benchmarks/quality.py`` draws one line per recipe.
    """
    curves = CurvePoints(keys, x, max_points)
    for h in history:
        curves.add(h)
    return curves.svg(width, height)


# The images a run shows, in page order: pix2pixHD/pix2pix, then CycleGAN's two cycles.
VISUALS = ("label", "synthesized", "real", "real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B")
# Captions of the first three when the input is a photo (label_nc 0), not a label map; the image
# files keep the keys' names (epoch001_label.png).
PHOTO_CAPTIONS = {"label": "input", "synthesized": "synthesized", "real": "target"}
# A page image's file name, epoch{e:03d}_{key}.png: its epoch's digits and its key.
IMAGE_NAME = re.compile(r"epoch(\d+)_(.*)\.png\Z", re.S)
# Logged keys the loss curves draw by default (CycleGAN adds cycle_* and idt_*).
LOSS_PREFIXES = ("G_", "D_", "cycle_", "idt_")
# A message line of loss_log.txt and the step it is tagged with (Visualizer.log_message).
MESSAGE_STEP = re.compile(r"================ \[step (\d+)\] ")
# loss_log.txt's loss line, as NVIDIA's print_current_errors writes it; its step is on the extras
# line after it. OLD_LOSS_STEP: the loss line of earlier versions, which held the step itself.
LOSS_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+), time: ([\d.]+)\) ")
EXTRAS_STEP = re.compile(r"    \[step (\d+)\]")
OLD_LOSS_STEP = re.compile(r"\(epoch: \d+, iters: \d+, step: (\d+)\)")
# The line each process start writes to loss_log.txt (NVIDIA's Visualizer writes it at each start).
LOG_HEADER = "================ Training Loss ({}) ================"
# The references' loss order on the loss line (NVIDIA's pix2pixHD loss_names; junyanz's pix2pix and
# CycleGAN); losses a reference lacks follow in the order they were logged.
REFERENCE_LOSS_ORDER = {
    "pix2pixhd": ("G_GAN", "G_GAN_Feat", "G_VGG", "D_real", "D_fake"),
    "pix2pix": ("G_GAN", "G_L1", "D_real", "D_fake"),
    "cyclegan": ("D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"),
}
# The mark of a message about a file that stays on disk (log_message's ``kept``): a cut carries it on.
KEPT_MARK = "[kept] "
KEPT_MESSAGE = re.compile(MESSAGE_STEP.pattern + re.escape(KEPT_MARK))


def loss_line_order(losses, model: str | None = None) -> list[str]:
    """The names of ``losses`` in loss_log.txt's order: ``model``'s reference order (default
    pix2pixHD's), then those it lacks as logged; the trainer's progress line uses it too."""
    order = REFERENCE_LOSS_ORDER.get(model or "pix2pixhd", ())
    return [k for k in order if k in losses] + [k for k in losses if k not in order]


class WindowMeans:
    """Each loss's mean over a logging window (the steps since the last log line).

    ``add`` keeps running sums on the device (no device sync per step); ``means`` turns them into
    floats with one device-to-host copy per window. Under DDP ``means`` is a collective (every
    rank calls it at the same step): one all-reduce, so the mean is over every rank's steps, i.e.
    every image trained in the window. The window starts empty at every process start: the first
    window after a resume averages the steps this process ran since the checkpoint, and ``n``
    (logged as ``window_steps``) says how many.
    """

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        """One step's losses (scalar tensors, any dtype and device)."""
        for k, v in losses.items():
            v = v.detach().float()
            if k in self.sums:
                self.sums[k].add_(v)
            else:
                self.sums[k] = v.clone()
        self.n += 1

    def means(self, dist_info=None) -> dict[str, float]:
        """The window's means, then an empty window. Every step must have had the same keys."""
        if not self.sums:
            return {}
        keys = list(self.sums)   # the step's order; the same on every rank
        total = torch.stack([self.sums[k] for k in keys])
        n = self.n
        if dist_info is not None and dist_info.distributed:
            torch.distributed.all_reduce(total)
            n *= dist_info.world_size
        vals = (total / n).tolist()
        self.sums, self.n = {}, 0
        return dict(zip(keys, vals))


class Visualizer:
    """Everything a run writes besides checkpoints; a no-op unless ``enabled`` (the master rank)."""

    def __init__(self, experiment_dir: Path, *, enabled: bool = True, tensorboard: bool = True,
                 html_page: bool = True, label_nc: int = 0, dataroot: str | os.PathLike | None = None,
                 phase: str | None = None, direction: str | None = None):
        """``dataroot``, ``phase``, ``direction``: the run's options, which name CycleGAN's folders
        of A and B on the page; without ``dataroot`` they are read from the run's config.json."""
        self.dir = Path(experiment_dir)
        self.enabled = enabled
        self.label_nc = label_nc
        self.dataroot, self.phase, self.direction = dataroot, phase, direction
        # the step a message line is tagged with when log_message is given none: the last one
        # logged or shown, or the first step after begin's resumed_at_step (None: untagged)
        self.step: int | None = None
        self.html_page = html_page and enabled
        self.tensorboard = tensorboard and enabled
        self.writer = None  # the tensorboardX writer: opened here, closed by close(), reopened by a later log
        self.web = self.dir / "web"
        self.history_path = self.dir / "loss_history.jsonl"
        self.log_path = self.dir / "loss_log.txt"
        self.started = False
        self._pending: list[str] = []   # log_message() lines before begin()
        self._noted_bad_history = False  # loss_history.jsonl's unparseable lines said once
        # the page's loss curves: loss_history.jsonl read once (its cut at a resume, or the first
        # page write), then each log_losses record added; None: not read yet
        self._curves: CurvePoints | None = None
        # write_html's rows of the page it last wrote, by (epoch, the keys of its image files
        # that exist): a row's HTML is a function of those alone, so it is reused while they hold
        self._rows: dict[tuple[int, tuple[str, ...]], str] = {}
        self._purge_step: int | None = None  # the first tensorboard writer's purge_step (begin)
        self._tb_error: BaseException | None = None  # the first failed tensorboard write
        self._tb_stalled = False   # the writer thread made no progress for TB_STALL_SECONDS
        self._record_error: LogWriteError | None = None  # the record write that ended the run

    def begin(self, resumed_at_step: int | None = None) -> None:
        """Start writing: create the run folder, forget what was logged past ``resumed_at_step``
        (a resumed run redoes those steps; 0 for a fresh start, which keeps none of a dead
        attempt's; None keeps the logs as they are): history entries, loss_log.txt's lines from
        the first later step on (loss lines, and message lines tagged with a later step), the
        later image files (moved aside) and, through the writer's purge_step, the later
        tensorboard events. Then write the messages logged so far and open tensorboard."""
        if not self.enabled or self.started:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in (self.log_path, self.history_path):   # a fifo's open would wait for a reader for ever
            if (why := not_regular_message(path, "remove it (the run writes its record there), then continue "
                                                 "the run with --auto_resume (or --resume)")):
                raise LogWriteError(why)
        notes = []
        if resumed_at_step is not None:
            self.step = resumed_at_step + 1   # begin's notes, and those of the start that follows
            # a note these log (unparseable history lines) waits in _pending until the log is cut
            self.truncate_history(resumed_at_step)
            notes = self._truncate_log(resumed_at_step)
            notes += [(msg, True) for msg in self._set_aside_images(resumed_at_step)]
            if any((self.dir / "tensorboard").glob("events.out.tfevents.*")):
                # TensorBoard drops the earlier files' events at steps >= purge_step
                self._purge_step = resumed_at_step + 1
        self.started = True
        self._append(self.log_path, LOG_HEADER.format(time.strftime("%c")))
        pending, self._pending = self._pending, []
        for line in pending:
            self._append(self.log_path, line)
        for msg, kept in notes:
            self.log_message(msg, kept=kept)
        self._tensorboard()

    def _truncate_log(self, after_step: int) -> list[tuple[str, bool]]:
        """Cut loss_log.txt before its first line of a step after ``after_step``: a loss line (with
        its extras line, which holds its step), or a message line tagged with that step (that line
        and all after it are a dead or abandoned attempt's; untagged lines, the start headers and
        messages of versions before lines had tags, go with their place). The notes of an
        earlier start at this same step (the lines after a start header, tagged ``after_step + 1``
        before any loss line: options, "nothing to train" of a resume of a finished run) are no
        step trained past it: they stay, as the record of that start, unless that start went on
        to log a later step (they go with its steps then).
        Message lines marked kept (files left on disk: a kept checkpoint, images set aside) stay,
        tagged with the step this run starts at. The note to log (and whether it is kept), if any
        line was cut."""
        if not self.log_path.is_file():
            return []
        lines = self.log_path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(keepends=True)
        starting = False   # in a start's notes: after its header, before its first loss line
        start_notes = None   # (index, match) of the first note of a start at this step, until the next header
        for i, line in enumerate(lines):
            if line.rstrip("\r\n").startswith(LOG_HEADER.split("{}")[0]):
                starting, start_notes = True, None   # the start before it trained nothing past the step
                continue
            m = OLD_LOSS_STEP.match(line) or EXTRAS_STEP.match(line) or MESSAGE_STEP.match(line)
            if m is None and LOSS_LINE.match(line) and i + 1 < len(lines):
                m = EXTRAS_STEP.match(lines[i + 1])   # cut with its extras line
            if m is not None and m.re is MESSAGE_STEP and starting and int(m.group(1)) == after_step + 1:
                start_notes = start_notes or (i, m)   # a note of a start at this step: nothing trained yet
                continue
            starting = starting and (m is None or m.re is MESSAGE_STEP) and not LOSS_LINE.match(line)
            if m and int(m.group(1)) > after_step:
                i, m = start_notes or (i, m)   # a start that trained past the step: its notes go too
                kept = [MESSAGE_STEP.sub(f"================ [step {after_step + 1}] ", x, count=1)
                        for x in lines[i:] if KEPT_MESSAGE.match(x)]
                atomic_write_bytes(self.log_path, "".join(lines[:i] + kept).encode("utf-8", "surrogateescape"))
                also = (f"; {len(kept)} note(s) about files still on disk kept" if kept else "")
                return [(f"{self.log_path.name}: {len(lines) - i - len(kept)} line(s) from step {m.group(1)} on, "
                         f"logged past step {after_step} where this run starts, dropped (it trains those steps "
                         f"again){also}", False)]
        return []

    def _set_aside_images(self, after_step: int) -> list[str]:
        """Move the page's image files shown at a step after ``after_step`` into
        web/images/abandoned_stepS/ (S = ``after_step``), out of the page; moved rather than
        deleted, as a checkpoint past the step is kept (trainer._keep_later). Files without a
        step (written before images recorded theirs) stay."""
        folder = self.web / "images"
        later = []
        for p in sorted(folder.glob("epoch*_*.png")) if folder.is_dir() else []:
            try:
                with Image.open(p) as im:
                    step = int(im.info.get("step", -1))
            except (OSError, ValueError):
                continue
            if step > after_step:
                later.append(p)
        if not later:
            return []
        dest, k = folder / f"abandoned_step{after_step}", 1
        while dest.exists():
            k += 1
            dest = folder / f"abandoned_step{after_step}-{k}"
        dest.mkdir()
        for p in later:
            p.replace(dest / p.name)
        return [f"{len(later)} image(s) shown after step {after_step} moved from {folder} to {dest}"]

    def _append(self, path: Path, line: str) -> None:
        """``line`` appended to ``path``; an OS error raises :class:`LogWriteError`."""
        try:
            # UTF-8 whatever the locale; a name the file system gave as undecodable bytes (a
            # non-UTF-8 locale: surrogate escapes) is written back as those bytes
            with open(path, "a", encoding="utf-8", errors="surrogateescape") as f:
                f.write(line + "\n")
        except OSError as e:
            self._record_error = _log_write_error(path, e)
            raise self._record_error from e

    def _tensorboard(self):
        """The open tensorboard writer (None without tensorboard, or once it was switched off)."""
        if self.tensorboard and self.writer is None:
            # tensorboardX names its event file by the second and the host: a second writer in
            # the same second (a run resumed right after a stop) opened the same file and wiped
            # the first's events. The pid and a per-process count make each file its own.
            try:
                self.writer = summary_writer_class()(
                    str(self.dir / "tensorboard"), purge_step=self._purge_step,
                    filename_suffix=f".{os.getpid()}.{next(_WRITER_COUNT)}")
            except OSError as e:
                self._tensorboard_off(e, self.dir / "tensorboard")
                return None
            self._purge_step = None   # once: a writer reopened after close() purges nothing
            self._guard_writer_thread(self.writer)
        return self.writer

    def _guard_writer_thread(self, writer) -> None:
        """tensorboardX writes events in a thread that an OS error (a full disk) kills, with a
        traceback on stderr; its queue then fills and the next add_* blocks for good. Here the
        thread's writes and flushes keep the first OS error in ``_tb_error`` and drop the event,
        so the thread keeps emptying the queue; the next call switches tensorboard off."""
        ev = _tensorboardx_event_writer(writer)
        if ev is None:
            return
        events = ev._ev_writer

        def guarded(fn):
            def call(*args):
                if self._tb_error is not None:
                    return None
                try:
                    return fn(*args)
                except OSError as e:
                    self._tb_error = e
                    return None
            return call
        events.write_event = guarded(events.write_event)
        events.flush = guarded(events.flush)

    def _stalled(self) -> BaseException:
        """The error of a writer thread that made no progress for :data:`TB_STALL_SECONDS`, kept as
        the first failed write (the thread drops its events if it ever goes on)."""
        self._tb_stalled = True
        if self._tb_error is None:
            self._tb_error = TimeoutError(
                f"its writer thread made no progress for {TB_STALL_SECONDS:g} s (a hung disk or "
                "network mount?)")
        return self._tb_error

    def _writer_failure(self, writer, deadline: float | None = None) -> BaseException | None:
        """Why ``writer`` can take no more events (None: it can): a failed write, a writer thread
        that stopped, or one that made no progress. While its queue is full and its thread runs,
        this waits for room until ``deadline`` (time.monotonic(); default :data:`TB_STALL_SECONDS`
        from now), so that the one add_* call that follows cannot block (this thread is the only
        producer)."""
        ev = _tensorboardx_event_writer(writer)
        if deadline is None:
            deadline = time.monotonic() + TB_STALL_SECONDS
        while True:
            if self._tb_error is not None:
                return self._tb_error
            if ev is None or ev._closed:
                return None
            if ev._worker is None or not ev._worker.is_alive():
                return RuntimeError("its writer thread stopped")
            try:
                if not ev._event_queue.full():
                    return None
            except NotImplementedError:   # no full() on this platform: put() may block
                return None
            if time.monotonic() >= deadline:
                return self._stalled()
            time.sleep(0.01)

    def _call_bounded(self, fn, deadline: float) -> BaseException | None:
        """``fn()`` (a writer's close, or any call of a writer other than tensorboardX's) in a daemon thread, waited on until ``deadline``: the OS
        error it raised, the stall error if it has not returned by then (it is left to run; a daemon
        does not hold up exit), else None. Another exception is raised here."""
        out: list[BaseException | None] = []

        def call():
            try:
                fn()
                out.append(None)
            except BaseException as e:
                out.append(e)
        t = threading.Thread(target=call, name="pix2pixhd-tensorboard-close", daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.monotonic()))
        if not out:
            return self._stalled()
        if out[0] is not None and not isinstance(out[0], OSError):
            raise out[0]
        return out[0]

    def _tb_call(self, method: str, *args, **kwargs) -> None:
        """``writer.method(*args, **kwargs)`` unless tensorboard is off; a failure switches it off."""
        writer = self._tensorboard()
        if writer is None:
            return
        if _tensorboardx_event_writer(writer) is None:
            # another writer (torch.utils.tensorboard's): no queue to look at, so the call itself
            # runs in a daemon thread, waited on for TB_STALL_SECONDS at most
            failure = self._call_bounded(lambda: getattr(writer, method)(*args, **kwargs),
                                         time.monotonic() + TB_STALL_SECONDS)
            if failure is None:
                return
            self._tensorboard_off(failure)
            return
        failure = self._writer_failure(writer)
        if failure is None:
            try:
                getattr(writer, method)(*args, **kwargs)
                return
            except OSError as e:
                failure = e
        self._tensorboard_off(failure)

    def _tensorboard_off(self, error: BaseException, path: Path | None = None, *, quiet: bool = False) -> None:
        """Tensorboard off for the rest of the run, with one note naming the events file (``path``:
        the writer's) and ``error`` (none if ``quiet``: the run is ending on another error); the
        writer is closed without waiting on its thread."""
        if not self.tensorboard:
            return
        self.tensorboard = False
        writer, self.writer = self.writer, None
        if path is None:
            path = self._events_path(writer)
        if writer is not None:
            self._close_writer(writer)
        if quiet:
            return
        msg = (f"could not write {path}: {type(error).__name__}: {error}; TensorBoard logging is off "
               f"for the rest of this run (training goes on: {self.history_path.name}, "
               f"{self.log_path.name} and the checkpoints are its record)")
        print(f"note: {msg}", file=sys.stderr, flush=True)
        try:
            self.log_message(msg)
        except LogWriteError:   # the next loss log line reports it
            pass

    def _events_path(self, writer) -> Path:
        """``writer``'s events file (its folder where that is not known)."""
        ev = _tensorboardx_event_writer(writer)
        return Path(getattr(getattr(ev, "_ev_writer", None), "_file_name", self.dir / "tensorboard"))

    def _close_writer(self, writer, *, quiet: bool = False) -> None:
        """Close ``writer`` without raising an OS error, blocking on a stopped thread, or waiting
        more than :data:`TB_STALL_SECONDS` on a stuck one (the first error switches tensorboard
        off, with a note unless ``quiet``). tensorboardX's exit hook then has nothing left to do."""
        deadline = time.monotonic() + TB_STALL_SECONDS
        ev = _tensorboardx_event_writer(writer)
        if ev is None:
            if self._tb_stalled:   # a call of its never returned: close() would wait on it too
                return
            error = self._call_bounded(writer.close, deadline)
            if error is not None:
                self._tensorboard_off(error, self._events_path(writer), quiet=quiet)
            return
        if ev._closed:
            return
        worker, events = ev._worker, ev._event_queue
        error = None
        try:
            if self._writer_failure(writer, deadline) is None:
                # the thread runs and its queue has room: stop() returns once it wrote the queue
                error = self._call_bounded(writer.close, deadline)
        finally:
            if not ev._closed:   # a failed write, a stopped or stuck thread, or close() failed part way
                ev._closed = True   # its atexit close() does nothing now
                if worker is not None and worker.is_alive() and not self._tb_stalled:
                    try:   # it drops what is queued, then stops
                        events.put(worker._shutdown_signal, timeout=1)
                        worker.join(timeout=5)
                    except queue.Full:
                        pass
                if worker is None or not worker.is_alive():   # a stuck one holds the file's lock
                    try:
                        ev._ev_writer.close()
                    except OSError:
                        pass
                if events is not None:
                    events.cancel_join_thread()   # exit does not wait on events no one reads
                    if worker is None or not worker.is_alive():
                        events.close()
        if error is not None or self._tb_error is not None:
            self._tensorboard_off(error if error is not None else self._tb_error, self._events_path(writer),
                                  quiet=quiet)

    def _read_history(self) -> list[tuple[str, dict]]:
        """loss_history.jsonl's entries as (line, record). A line that is not a JSON record with
        a step (the half-written last line a full disk or a killed node leaves, or a line an
        append glued onto it) is skipped, and said once per run (stderr and loss_log.txt)."""
        out, bad = [], 0
        for line in self.history_path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = loads_json(line)
                if isinstance(rec["step"], bool) or not isinstance(rec["step"], (int, float)):
                    raise TypeError("step is not a number")
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            out.append((line, rec))
        if bad and not self._noted_bad_history:
            self._noted_bad_history = True
            msg = (f"note: {self.history_path}: {bad} line(s) are not complete JSON records (a write "
                   "cut short by a crash or a full disk); they are left out of the loss curves and "
                   "dropped from the file at the next start")
            print(msg, file=sys.stderr, flush=True)
            self.log_message(msg[len("note: "):])
        return out

    def truncate_history(self, after_step: int) -> None:
        """At the start of a run: forget log entries written after the checkpoint we resume from
        (0: a fresh start forgets a dead attempt's), and lines that do not parse."""
        if not self.enabled or not self.history_path.is_file():
            return
        keep = [(line, rec) for line, rec in self._read_history() if rec["step"] <= after_step]
        atomic_write_bytes(self.history_path, "".join(line + "\n" for line, _ in keep).encode())
        self._curves = CurvePoints() if self.html_page else None
        for _, rec in keep if self._curves is not None else []:
            self._curves.add(rec)

    def log_losses(self, epoch: int, it: int, step: int, losses: dict[str, float],
                   extras: dict[str, float], *, model: str | None = None) -> None:
        """One log entry at ``step``: ``losses`` are the window's means (:class:`WindowMeans`),
        ``extras`` the rest (lr, speed, phase times). loss_log.txt gets NVIDIA's loss line, the
        losses in ``model``'s reference order (default pix2pixHD's), then the extras line."""
        if not self.enabled:
            return
        self.begin()
        self.step = step
        rec = {"epoch": epoch, "iter": it, "step": step, **losses, **extras}
        line = json.dumps(rec)
        self._append(self.history_path, line)
        if self._curves is not None:
            self._curves.add(json.loads(line))   # the record as the file holds it
        names = loss_line_order(losses, model)
        ips = extras.get("images_per_s") or 0.0   # the window's; time: seconds per image
        loss_line = f"(epoch: {epoch}, iters: {it}, time: {1 / ips if ips > 0 else 0.0:.3f}) " + "".join(
            f"{k}: {losses[k]:.4f} " for k in names)
        # the lr in significant digits: 4 decimals would print its decayed values (1.33e-4,
        # 6.67e-5) alike
        extras_line = f"    [step {step}]" + "".join(
            f" {k}: {v:.4g}" if k == "lr" else f" {k}: {v}" if isinstance(v, int) else f" {k}: {v:.4f}"
            for k, v in extras.items())
        self._append(self.log_path, f"{loss_line}\n{extras_line}")   # one append: the pair
        for k, v in losses.items():
            self._tb_call("add_scalar", f"loss/{k}", v, step)
        for k, v in extras.items():
            self._tb_call("add_scalar", k, v, step)

    def log_message(self, msg: str, step: int | None = None, *, kept: bool = False) -> None:
        """One message line, tagged ``[step N]`` with the step it belongs to (default
        :attr:`step`; none if that is None): a resume to an earlier step cuts it (begin). The
        trainer gives the last step trained for what happened there (a save, a stop) and the next
        one for what applies from there on (a start, an unfreeze). ``kept``: the message names a
        file that outlives such a resume (a cut keeps the line)."""
        if not self.enabled:
            return
        step = self.step if step is None else step
        tag = "" if step is None else f"[step {step}] " + (KEPT_MARK if kept else "")
        line = f"================ {tag}{time.strftime('%c')} {msg}"
        if self.started:
            self._append(self.log_path, line)
        else:
            self._pending.append(line)

    def visuals(self, batches: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The first sample of each named batch as an HWC uint8 image, in :data:`VISUALS` order:
        label (ids coloured, or the input photo: captioned input), synthesized, real (captioned
        target then); CycleGAN's real_A, fake_B, rec_A, real_B, fake_A, rec_B."""
        def rgb(k, t):
            return label_to_rgb(t[0], self.label_nc) if k == "label" and self.label_nc > 0 else tensor_to_rgb(t[0])
        return {k: rgb(k, batches[k]) for k in VISUALS if k in batches}

    def display(self, visuals: dict[str, np.ndarray], epoch: int, step: int, *,
                html_only: bool = False) -> None:
        """Show ``visuals`` at ``step``: TensorBoard's grid (not if ``html_only``: the trainer's
        epoch-end displays, so TensorBoard gets one every --display_freq steps) and the page's
        images of ``epoch``."""
        if not self.enabled:
            return
        self.begin()
        self.step = step
        if not html_only and self._tensorboard() is not None:
            self._tb_call("add_image", "images/" + "_".join(map(self.caption, visuals)),
                          tensorboard_grid(list(visuals.values())), step, dataformats="HWC")
        if self.html_page:
            for k, v in visuals.items():
                path = self.web / "images" / f"epoch{epoch:03d}_{k}.png"
                try:
                    save_png(v, path, step)
                except OSError as e:
                    self._record_error = _log_write_error(path, e)
                    raise self._record_error from e
            self.write_html()

    def caption(self, key: str) -> str:
        """The caption of visual ``key``: itself, except a photo input's (label_nc 0), which is
        no label map: input | synthesized | target."""
        return PHOTO_CAPTIONS.get(key, key) if self.label_nc == 0 else key

    def _domains_line(self) -> str:
        """Which folder is CycleGAN's domain A and which B: --dataroot, --phase (--direction BtoA
        swaps them), as given to the constructor, else from the run's config.json."""
        try:
            if self.dataroot is not None:
                cfg = {"dataroot": self.dataroot, "phase": self.phase, "direction": self.direction}
            else:
                cfg = loads_json((self.dir / "config.json").read_text())
            root, phase, swap = Path(cfg["dataroot"]), cfg.get("phase") or "train", cfg.get("direction") == "BtoA"
        except (OSError, ValueError, KeyError, TypeError):
            return ("A: the images of the dataroot's trainA/ folder, B: those of its trainB/ "
                    "(the other way round with --direction BtoA)")
        a, b = (root / f"{phase}B", root / f"{phase}A") if swap else (root / f"{phase}A", root / f"{phase}B")
        return f"A: the images of {a}/, B: those of {b}/" + (" (--direction BtoA)" if swap else "")

    def write_html(self) -> Path | None:
        """Rewrite web/index.html: the loss curves, then a row per epoch of images, newest first.
        Called at every display and epoch end of a run that may last thousands of epochs, so its
        cost per old epoch is no file-system call: web/images is listed once (one scandir) and
        each row is looked up in :attr:`_rows` by what it shows (the files of its epoch that
        exist), which images moved aside (a resume) change, so a stale row is never reused."""
        if not self.html_page:
            return None
        if self._curves is None:
            self._curves = CurvePoints()
            for _, rec in self._read_history() if self.history_path.is_file() else []:
                self._curves.add(rec)
        shown, cycle = self._image_files()
        rows, cache = [], {}
        for e in sorted(shown, reverse=True):
            key = (e, tuple(k for k in VISUALS if k in shown[e]))
            row = self._rows.get(key)
            if row is None:
                cells = "".join(f'<td><a href="images/epoch{e:03d}_{k}.png"><img src="images/epoch{e:03d}_{k}.png" '
                                f'width="256"></a><br>{self.caption(k)}</td>' for k in key[1])
                row = f"<h3>epoch {e}</h3><table><tr>{cells}</tr></table>"
            cache[key] = row
            rows.append(row)
        self._rows = cache   # only the rows of this page: a row gone from it is not kept
        domains = f"<p>{html.escape(self._domains_line())}</p>" if cycle and rows else ""
        page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                f"{html.escape(self.dir.name)}</title></head><body>"
                f"<h1>{html.escape(self.dir.name)}</h1><h2>Losses</h2>{self._curves.svg()}"
                f"<h2>Results</h2>{domains}{''.join(rows) or '<p>No images yet.</p>'}</body></html>")
        path = self.web / "index.html"
        atomic_write_bytes(path, page.encode("utf-8", "surrogateescape"))
        return path

    def _image_files(self) -> tuple[dict[int, set[str]], bool]:
        """What web/images holds for the page, from one listing (no stat per file; a link's is
        followed): each epoch that a name matching ``epoch*_*.png`` has (a folder so named too, as
        the glob did) with the :data:`VISUALS` keys of its ``epoch{e:03d}_{key}.png`` files, and
        whether any name is CycleGAN's (``_real_A.png``, ``_real_B.png``). Nothing when
        web/images is missing or unreadable."""
        shown, cycle = {}, False
        try:
            with os.scandir(self.web / "images") as it:
                for entry in it:
                    name = entry.name
                    if not fnmatch.fnmatchcase(name, "epoch*_*.png"):
                        continue
                    cycle = cycle or name.endswith(("_real_A.png", "_real_B.png"))
                    # files are epoch{e:03d}_{key}.png: 3 digits or more (epoch 1000 is epoch1000_...)
                    if (m := IMAGE_NAME.match(name)) is None:
                        continue
                    keys = shown.setdefault(int(m.group(1)), set())
                    if m.group(1) == f"{int(m.group(1)):03d}" and m.group(2) in VISUALS and entry.is_file():
                        keys.add(m.group(2))
        except OSError:
            pass
        return shown, cycle

    def close(self) -> None:
        """Flush and close every log: the HTML page is rewritten with the losses logged since its
        last update, the tensorboard writer is closed (the text logs are closed after each write).
        Safe to call more than once; a later log reopens what it needs. Called while an exception
        is raised (the trainer's ``finally``), or after a record write failed, it raises nothing
        over that first error; closing tensorboard never blocks or raises."""
        in_flight = sys.exc_info()[1] is not None or self._record_error is not None
        try:
            if self.html_page and self.started and self.history_path.is_file() and self._record_error is None:
                try:
                    self.write_html()
                except Exception:
                    if not in_flight:
                        raise
        finally:
            writer, self.writer = self.writer, None
            if writer is not None:
                self._close_writer(writer, quiet=in_flight)

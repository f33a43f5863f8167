"""The synthesis data engine: maps in, a dataset out — streaming, sharded over ranks, resumable.

    job = SynthesisJob(out=Path("OUT"), input=Path("labels"), inst=Path("insts"), num_samples=2)
    report = run_synthesis(Synthesizer(G, cfg, device), job, identity=..., dist_info=info)

What runs where:
  * DataLoader workers decode the inputs (``FolderSource``: a folder of id maps or photos, matched
    by stem to ``--inst`` / ``--real`` folders; ``DatasetSource``: a dataset root in any layout
    ``pix2pixhd.data`` reads, validated by it). A bad input comes back as an item with its
    reason, so one file never stops the rest.
  * The main thread groups decoded maps **by size** (no padding to a common size: a map is only
    ever padded to the generator's multiple) and sends batches of exactly ``batch_size`` rows
    to the generator; a batch that has to go out short (end of input, or too many sizes waiting)
    is filled up by repeating its last row, and the extra outputs are dropped. So every
    generator call has the same shape, and a map's pixels do not depend on which maps share its
    batch — CPU and GPU convolution kernels are chosen by batch shape, and the same shape gives
    the same arithmetic row by row (``tests/test_synthesis_engine.py`` checks composition,
    shards and resume for bytes).
  * A pool of writer threads encodes PNGs (zlib runs without the GIL) and writes each file to
    ``NAME.PID.tmp`` (a shorter name for long ones, ``_tmp_path``) then renames it; the image is
    renamed after its label and instance partners, and its manifest line is appended after that.
    A line whose image and partners exist with the recorded sizes is therefore a complete output.
    A write the file system refuses (a full disk...) stops the job with one line naming the file
    (``OutputWriteError``); a rerun of the same command resumes it.
  * Memory: at most ``max_pending`` decoded maps wait for a batch and ``max_inflight`` outputs
    wait for a writer, whatever the number of inputs. What grows with the input count is the
    bookkeeping, stored compactly (bytes blobs and arrays: ``compact.Strs``, ``_Todo``, ``_Done``): the
    input names and the list to do (~0.1 KB per input for the whole run) and, during a rerun's
    scan, the finished outputs with their inputs' fingerprints (~0.2 KB per output).

Output (``out``): a dataset ``pix2pixhd.data`` reads back for training — the cityscapes layout
``{phase}_label`` (the label ids the generator saw), ``{phase}_inst`` (instance maps, when there
are any), ``{phase}_img`` (the synthesized photos); for photo inputs (label_nc 0) the rgb_pairs
layout ``{phase}_A`` (input) / ``{phase}_B`` (synthesized) — plus ``classes.json`` (the
output's classes: the checkpoint's label_nc, see ``_output_classes``), ``synthesis.json`` (the job: checkpoint and its hash, the input folders, seed, samples, options;
and its state: ``complete`` false from the start until the last output is in, the counts of
inputs, outputs and outputs written, the command that resumes it) and ``manifest.jsonl``: one line per output (input, output and partner files, the input files'
names, sizes and mtimes, sample index, seed, cluster choices, checkpoint and its hash, status
``ok`` with size and sha256, or ``skipped`` with the reason). With ``num_samples`` K > 1 every
output (and its partners) is named ``<stem>_<k>.png``. Label and instance maps whose ids a PNG
cannot hold (above 65535, e.g. Cityscapes' id*1000+k) are written as 32-bit TIFFs, ``.tif``.

Ranks (torchrun): the ranks first agree on the job (``_agree_on_job``: one digest, one --out; a
rank started with other options stops every rank before any work), then every rank lists the
same inputs, takes every world-th of those still to do,
and appends to its own ``manifest.parts/rank<R>.jsonl``; after a barrier rank 0 merges the parts
into ``manifest.jsonl``. Resume: a rerun of the same job (same ``synthesis.json`` digest, which
covers the resolved input folders and the checkpoint's sha256, not its path) reads the manifest and the parts, keeps every output whose
line says ``ok``, whose file has the recorded size and whose input files still have the recorded
size and mtime (an input edited or replaced in place is redone), removes the ``*.tmp`` of writes
that were killed, and does the rest; a killed run loses only the images that were in flight.
Another job in the same folder (another checkpoint, options or input folder) is refused unless
``overwrite``, which empties the old job's split folders; input folders that moved with their
files (the outputs' recorded fingerprints match there) are the same job (``_moved_folders``). One job at a time: rank 0 holds
``OUT/synthesis.lock`` (``OutLock``) for the job's lifetime. A run (under torchrun each rank)
stops on SIGTERM after the batches in flight (status 75, as training), and on Ctrl-C (SIGINT) the same way,
raising ``SynthesisInterrupted``, a KeyboardInterrupt (synthesize.py: status 130). Inputs all of
one wrong kind stop the job early (``EARLY_STOP``). A ``strict`` job that skipped inputs raises
``InputsSkippedError`` once it is complete (synthesize.py --strict: status 65).
"""
from __future__ import annotations

import bisect
import errno
import functools
import hashlib
import itertools
import heapq
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import sys
import threading
import time
import warnings
from array import array
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pix2pixhd.data.dataset import (_TURNS, ID_MODES, KIND_NOTES, _frames, _orientation, _read_error,
                                     synthesis_wording, wanted_modes)
from pix2pixhd.compact import Strs
from pix2pixhd.data.layouts import IMG_EXTS, decode_palette, hidden, list_folder, partner_key_of_stem, stem_key
from pix2pixhd.errors import (INTERRUPTED_EXIT_STATUS, PROGRESS_INTERVAL_S, SKIPPED_EXIT_STATUS, STOPPED_EXIT_STATUS,
                              ConfigError, InputError, MissingInputError, UserError, loads_json)
from pix2pixhd.errors import printable   # file names and file-provided text, before they reach a terminal
from pix2pixhd.errors import stderr_is_tty as _stderr_is_tty
from pix2pixhd.paths import file_sha256  # (also for callers)
from pix2pixhd.paths import tmp_beside as _tmp_path
from pix2pixhd.synthesis import Synthesizer, id_map_bytes, png_bytes, sample_seed
from pix2pixhd.synthesis_job import SynthesisJob  # noqa: F401 (defined without torch: synthesize.py's --help reads its defaults)

MANIFEST = "manifest.jsonl"
PARTS = "manifest.parts"
JOB_FILE = "synthesis.json"
LOCK_FILE = "synthesis.lock"
CLASSES_FILE = "classes.json"
WRITTEN_BY = "synthesize.py"          # classes.json's "written_by" when the engine wrote it
# A job whose first EARLY_STOP inputs (all of them, when it has fewer) are all skipped for the
# same reason, with nothing written, stops there: the inputs are the wrong kind for the checkpoint.
EARLY_STOP = 20
# The skipped inputs printed one line each (``skipped FILE: REASON``), per process: after them one
# line says that the rest are counted (the end line's "skipped N") and listed with their reasons in
# the manifest, which holds every one (a line per skipped input was thousands of lines for a
# folder of mostly empty files).
SKIP_LINES = 20
# The --input files named in the note on files read as stored (EXIF Orientation, several frames)
NOTE_NAMES = 5


@dataclass
class SynthesisReport:
    """Counts of this run (all ranks, on rank 0), its wall time and the generator's share of it."""
    written: int = 0
    skipped: int = 0                      # outputs not written, each with its reason in the manifest
    already_done: int = 0                 # complete from an earlier run of the same job
    seconds: float = 0.0
    generator_seconds: float = 0.0
    skipped_inputs: list[tuple[str, str]] = field(default_factory=list)   # (file, reason), this rank
    manifest: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @property
    def generator_fraction(self) -> float:
        return self.generator_seconds / self.seconds if self.seconds > 0 else 0.0


# ---- inputs ----------------------------------------------------------------------------------------
def _open(path: str | Path) -> Image.Image:
    """An image, decoded now, so a bad file fails here naming itself."""
    try:
        im = Image.open(path)
        im.load()
        return im
    except Exception as e:   # PIL raises OSError, SyntaxError, ValueError... on bad files
        raise InputError(f"cannot read this image{_read_error(path, e)}") from None   # as training says it


def _size(path: str | Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


_BOMB_FILTERED = False   # this process ignores Pillow's DecompressionBombWarning (a worker: for good)


def _quiet_bomb_warnings() -> None:
    """In a DataLoader worker, Pillow's DecompressionBombWarning is ignored from the first item on:
    the item carries a note naming the file instead (:func:`_noting_large_images`). The main
    process ignores it for the job's length (:func:`run_synthesis`). A filter, not a
    warnings.catch_warnings per item: that resets Python's once-only registries (every other
    warning was shown again after each item) and is not thread-safe (writer threads run)."""
    global _BOMB_FILTERED
    if not _BOMB_FILTERED and torch.utils.data.get_worker_info() is not None:
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        _BOMB_FILTERED = True


def _large_image_notes(files) -> list[str]:
    """The notes (without 'note: ') for those of ``files`` above Pillow's decompression-bomb
    warning limit, each naming the file: it is read as it is, and whether it should be that large
    is the user's to say."""
    notes = []
    for f in files:
        try:
            w, h = _size(f) if f is not None else (0, 0)
        except Exception:
            continue
        limit = Image.MAX_IMAGE_PIXELS   # None: Pillow checks no size
        if limit and w * h > limit:
            notes.append(f"{f} is {w}x{h} ({w * h} pixels, above Pillow's decompression-bomb warning "
                         f"limit of {limit}): read as it is; remove it if it is not meant "
                         "to be that large (a size this machine's memory cannot synthesize is skipped, "
                         "with the fix)")
    return notes


def _noting_large_images(getitem):
    """A source's ``__getitem__`` whose item carries 'notes' for its files above Pillow's
    decompression-bomb warning limit (a legal map under twice the limit: Pillow opens it and only
    warns, in two lines of a Python warning naming no file), for the main process to say once
    each, instead of Pillow's warning (ignored: :func:`_quiet_bomb_warnings`)."""
    @functools.wraps(getitem)
    def noting(self, i: int) -> dict:
        _quiet_bomb_warnings()
        item = getitem(self, i)
        limit, lab = Image.MAX_IMAGE_PIXELS, item.get("label")
        if limit and lab is not None and lab.shape[-2] * lab.shape[-1] > limit:   # the inputs share its size
            item["notes"] = _large_image_notes(self.input_files(i))
        return item
    return noting


class FolderSource(torch.utils.data.Dataset):
    """A folder of label maps (or photos for label_nc 0), with optional ``inst`` and ``real``
    folders matched by stem (Cityscapes' suffixes ignored, as the data module matches them).

    ``self[i]``: {'i', 'label' uint8/int32 [1, H, W] ids or uint8 [C, H, W] photo, 'inst' int32
    [1, H, W] or None, 'image' uint8 [3, H, W] or None, 'label_copy'/'inst_copy': the source file
    when it can be copied to the output as it is (it is what the generator read), 'inputs': the
    fingerprint of the files read (``input_fingerprint``), 'error': None or why the input is
    skipped}. Label maps are decoded as training decodes them; photos are taken in the modes
    training takes them in (see ``_label_ids``, ``_check_photo_mode``).
    """

    def __init__(self, job: SynthesisJob, cfg, *, needs_inst: bool, needs_image: bool):
        folder = Path(job.input)
        if not folder.is_dir():
            raise MissingInputError(f"--input {folder} is not a folder of label maps"
                                    + ("" if folder.exists() else " (it does not exist)"))
        for flag, d in (("--inst", job.inst), ("--real", job.real)):
            if d is not None and not Path(d).is_dir():
                raise MissingInputError(f"{flag} {d} is not a folder" + ("" if Path(d).exists() else
                                        " (it does not exist)") + f"; fix the path or leave {flag} out")
        files, problems = list_folder(folder, folder)
        self.root = folder
        self.abs_root = folder.resolve()   # the manifest's "input" paths: this + the key (synthesis.json's input)
        self.broken = [(p, msg) for kind, p, msg in problems if kind == "broken symlink"]
        self.ignored = [msg for kind, _, msg in problems if kind == "ignored"]
        if job.how_many > 0:
            files = files[:job.how_many]
        # sub-folders holding images (not searched): the error below, or the note on ignored entries
        self.image_subs = _image_sub_folders(problems)
        if not files and not self.broken:
            subs = self.image_subs
            raise MissingInputError(
                f"--input {folder} holds no images ({', '.join(IMG_EXTS)})" + (
                    f" directly: its images are in sub-folders ({_listed(subs)}), which are not "
                    f"searched: {_sub_folders_fix(folder, subs)}" if subs else ""))
        self.label_nc = cfg.label_nc
        # photo inputs (label_nc 0): the channels the direction's generator reads them with
        from pix2pixhd.models import input_image_nc
        self.input_nc = input_image_nc(cfg, job.direction)
        from pix2pixhd.data.layouts import load_palette
        self.palette = load_palette(cfg.palette or None) if cfg.label_nc > 0 else None
        # the partners and the inputs' names, compactly (_Index, Strs): held for the whole run
        self.inst_index = _Index(_index(job.inst, f"--inst {job.inst}", role="inst") if job.inst else None)
        self.real_index = _Index(_index(job.real, f"--real {job.real}") if job.real else None)
        self.inst_dir, self.real_dir = job.inst, job.real
        self.needs_inst, self.needs_image = needs_inst, needs_image
        self.has_inst = job.inst is not None or needs_inst   # items carry instance maps
        # compactly (held for the whole run): the names and stems in Strs; each path is the
        # folder / its name (list_folder's), and each partner key (partner_key) its stem in NFC
        self.keys = Strs(p.name for p in files)          # unique within one folder
        self.files = _Under(folder, self.keys)
        self.stems = Strs(stem_key(p) for p in files)
        self.match_keys = _NFC(self.stems)   # what --inst/--real partners match on (NFC)

    def __len__(self) -> int:
        return len(self.files)

    def source_name(self, i: int) -> str:
        return self.files[i]

    def record_name(self, i: int) -> str:
        """Input ``i`` as the manifest records it: absolute, under the resolved input root (the
        folder ``synthesis.json`` records), whatever the working directory and however the
        folder was spelt on the command line."""
        return _under(self.abs_root, self.root, self.files[i])

    def check_real_sizes(self, max_listed: int = 5) -> None:
        """Every --real photo must be its label map's size: refused before any work."""
        bad = []
        for f, key in zip(self.files, self.match_keys):
            rp = self.real_index.get(key)
            if rp is None:
                continue
            try:
                a, b = _size(f), _size(rp)
            except Exception:
                continue   # an unreadable file is skipped, with its reason, when its turn comes
            if a != b:
                bad.append(f"{rp} is {b[0]}x{b[1]} but its label map {f} is {a[0]}x{a[1]}")
        if bad:
            more = f"\n  ... and {len(bad) - max_listed} more" if len(bad) > max_listed else ""
            raise InputError(f"{len(bad)} --real photo(s) differ in size from their label maps (they are "
                             "compared pixel by pixel, and --feature_mode encoded encodes them in "
                             "place):\n  " + "\n  ".join(bad[:max_listed]) + more +
                             "\nresize them to their label maps' size, or leave --real out")

    def input_files(self, i: int) -> list[str | None]:
        """The files whose contents decide output ``i``'s bytes: the map, its instance map (with
        --inst) and its real photo (when the generator encodes it); None for a partner that is
        missing (the input is then skipped)."""
        files = [self.files[i]]
        if self.inst_dir is not None:
            files.append(_str(self.inst_index.get(self.match_keys[i])))
        if self.needs_image:
            files.append(_str(self.real_index.get(self.match_keys[i])))
        return files

    @_noting_large_images
    def __getitem__(self, i: int) -> dict:
        item = {"i": i, "label": None, "inst": None, "image": None, "label_copy": None,
                "inst_copy": None, "error": None,
                "inputs": input_fingerprint(self.input_files(i))}   # before reading: see there
        path = self.files[i]
        try:
            im = _open(path)
            # what is read differs from what viewers show: said once per job (_StoredNotes)
            item["orientation"], item["frames"] = _orientation(im), _frames(im)
            if self.label_nc > 0:
                ids = self._label_ids(im)
                if self.palette is None:   # a colour map is decoded to the nearest colour: JPEG is fine
                    _refuse_jpeg_ids(im, path, "label map")
                # the file is what the generator saw only when its pixels are the ids
                item["label_copy"] = path if self.palette is None and path.lower().endswith(".png") else None
                lo, hi = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
                if hi >= self.label_nc or lo < 0:
                    raise InputError(id_out_of_range(hi if hi >= self.label_nc else lo, self.label_nc))
                ids = ids.astype(np.uint8 if self.label_nc <= 256 else np.int32, copy=False)
                item["label"] = torch.from_numpy(np.ascontiguousarray(ids))[None]
            else:
                want = self._check_photo_mode(im)
                item["grey"] = want == "RGB" and im.getbands()[0] in ("L", "1", "I", "F")
                copy = im.mode == want and path.lower().endswith(".png")
                im = im if im.mode == want else im.convert(want)
                a = np.array(im)
                item["label"] = torch.from_numpy(np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1)))
                # the partner in {phase}_A is the image the generator read: the file itself only
                # when it is that image (an LA, P or RGB-for-a-grey-generator file is converted)
                item["label_copy"] = path if copy else None
            size = im.size
            if self.inst_dir is not None:
                ip = self.inst_index.get(self.match_keys[i])
                if ip is None:
                    raise InputError(f"no instance map named {self.stems[i]}.* in --inst {self.inst_dir}")
                inst_im = _open(ip)
                _refuse_jpeg_ids(inst_im, ip, "instance map", partner=True)
                if inst_im.mode not in ID_MODES:
                    raise InputError(f"instance map {ip} is a {inst_im.mode} image; instance maps are "
                                     f"single-channel id maps (modes {', '.join(ID_MODES)}, as training "
                                     "reads them): save it as a 16-bit (I;16) or 8-bit (L) PNG of ids, or a 32-bit "
                                     "(mode I) TIFF for ids above 65535")
                if inst_im.size != size:
                    raise InputError(f"instance map {ip} is {inst_im.size[0]}x{inst_im.size[1]}, the "
                                     f"label map {size[0]}x{size[1]}")
                item["inst"] = torch.from_numpy(np.asarray(inst_im).astype(np.int32))[None]
                item["inst_copy"] = str(ip) if str(ip).lower().endswith(".png") else None
            elif self.needs_inst:
                # without instance maps, the reference falls back to the label map itself
                item["inst"] = item["label"].to(torch.int32)
                item["inst_copy"] = item["label_copy"]
            if self.needs_image:
                rp = self.real_index.get(self.match_keys[i])
                if rp is None:
                    raise InputError(f"--feature_mode encoded: no real photo named {self.stems[i]}.* in "
                                     f"--real {self.real_dir}")
                try:   # read once: hashed and decoded, the same bytes
                    data = Path(rp).read_bytes()
                except OSError as e:   # as _open words it
                    raise InputError(f"cannot read this image ({type(e).__name__}: {e})") from None
                photo = _open(io.BytesIO(data)).convert("RGB")
                if photo.size != size:
                    raise InputError(f"photo {rp} is {photo.size[0]}x{photo.size[1]}, the label map "
                                     f"{size[0]}x{size[1]}")
                item["image"] = torch.from_numpy(np.asarray(photo).transpose(2, 0, 1).copy())
                item["real_sha256"] = hashlib.sha256(data).hexdigest()   # no copy in OUT: a moved job's check
        except Exception as e:   # this input is skipped with the reason; the rest go on
            item.update(label=None, inst=None, image=None, error=_reason(e))
        return item

    def _label_ids(self, im: Image.Image) -> np.ndarray:
        """A label map's ids, decoded as training decodes them (``pix2pixhd.data``'s PairedDataset):
        with the checkpoint's palette, the colours of an RGB or P image (a P image's pixels are
        indices into its own palette, not ids) through ``decode_palette``; without one, the pixels
        of a one-channel id map. The modes accepted are the ones training's validation accepts
        (``wanted_modes``), so a map synthesis reads is one training would have read the same way."""
        modes = wanted_modes(self, "label")
        if im.mode not in modes:
            bands = len(im.getbands())
            if self.palette is None and bands > 1:
                raise InputError(f"a {im.mode} image ({bands} channels), but this checkpoint takes label "
                                 f"ids (label_nc={self.label_nc}): give single-channel id maps (mode L: each "
                                 f"pixel its class id 0..{self.label_nc - 1}; a colour map's colours "
                                 "mapped to their ids first); colour maps are read only by a "
                                 "checkpoint trained with --palette")
            what = f"a {im.mode} image" + (" (bilevel)" if im.mode == "1" else f" ({bands} channel(s))")
            fix = ("save it as RGB in the palette's colours" if self.palette is not None else
                   "save it as an 8-bit id map (mode L), or 16-bit (I;16) for ids above 255")
            raise InputError(f"{what}: training does not read it as a label map either (modes "
                             f"{', '.join(modes)}); {fix}")
        if self.palette is not None:
            rgb = np.asarray(im.convert("RGB"))
            _refuse_unfit_colours(rgb, self.palette)
            return decode_palette(rgb, self.palette)
        return np.array(im)

    def _check_photo_mode(self, im: Image.Image) -> str:
        """The mode the generator reads a photo input in ('RGB', or 'L' for one input channel),
        after refusing what training refuses as a photo (the data module's ``wanted_modes``:
        its validation's list, which the file is then converted from). Grey photos (L, LA) are
        converted to RGB for an RGB generator, as ``--dataroot`` (the data module) converts them."""
        want = "L" if self.input_nc == 1 else "RGB"
        bands = im.getbands()
        modes = wanted_modes(self, "label")   # label_nc 0: the photo modes training reads
        if im.mode not in modes:
            deep = (" (16-bit and float values would be clipped to 255, not scaled)"
                    if im.mode[0] in "IF" else "")
            raise InputError(f"a {im.mode} image ({len(bands)} channel(s)): training does not read it "
                             f"as a photo either (modes {', '.join(modes)}); save it as an 8-bit "
                             f"{want} PNG or JPEG{deep}")
        return want


def _image_sub_folders(problems) -> list[str]:
    """The sub-folders (``NAME/``) among a folder listing's ignored entries that hold an image at
    any depth (Cityscapes' gtFine/test/<city>/), for the message on a folder without images."""
    subs = []
    for kind, p, _ in problems:
        p = Path(p)
        if kind == "ignored" and p.is_dir() and not hidden(p) and any(
                q.suffix.lower() in IMG_EXTS and not hidden(q) and q.is_file() for q in p.rglob("*")):
            subs.append(p.name + "/")
    return subs


def _listed(names: list[str], most: int = 4) -> str:
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")


def _sub_folders_fix(folder: Path, subs: list[str]) -> str:
    """What to do with an --input ``folder``'s sub-folders holding images (``subs``: NAME/)."""
    return (f"move them up into {folder.name}/, or synthesize each sub-folder (--input "
            f"{folder / subs[0]} with an --out of its own)")


def _ignored_note(src) -> str:
    """The note on the input's entries that are not images: how many, one of them, and the
    sub-folders among them that hold images (a Cityscapes tree with a folder per city beside
    some maps at the top): their images are not synthesized, and an example entry such as
    .DS_Store did not say so."""
    note = f"{len(src.ignored)} entr(y/ies) of the input are not images and are not used, e.g. {src.ignored[0]}"
    subs = getattr(src, "image_subs", None)
    if subs:
        note += (f"; sub-folders holding images are not searched: {_listed(subs)} (their images are not "
                 f"synthesized: {_sub_folders_fix(Path(src.root), subs)})")
    return note


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text if isinstance(e, (InputError, ValueError)) else f"{type(e).__name__}: {text}"


def _under(abs_root: Path, root, path) -> str:
    """``path`` (under ``root``) as an absolute path under ``abs_root`` (``root`` resolved)."""
    try:
        return str(abs_root / os.path.relpath(path, root))
    except ValueError:
        return os.path.abspath(path)


JPEG_FORMATS = ("JPEG", "MPO")


def _refuse_jpeg_ids(im: Image.Image, path, what: str, partner: bool = False) -> None:
    """An id map (label or instance ids) stored as JPEG: compression noise turns ids into other
    ids (extra classes, split instances) without a trace, so it is refused. ``partner``: the file
    is not the input the skip line names (an instance map), so the reason names it."""
    if im.format in JPEG_FORMATS or str(path).lower().endswith((".jpg", ".jpeg")):
        head = f"{what} {path} is a lossy JPEG" if partner else f"a lossy JPEG {what}"
        raise InputError(f"{head}: its ids are corrupted by compression; save {what}s as PNG")


def _refuse_unfit_colours(rgb: np.ndarray, palette) -> None:
    """A colour-map (``--palette``) checkpoint's input whose colours are not its palette's (a
    photo, say), measured as the data module's validation measures it (``palette_fit``)."""
    from pix2pixhd.data.layouts import PALETTE_MIN_NEAR, far_colours, palette_fit
    fit = palette_fit(rgb, palette)
    if fit < PALETTE_MIN_NEAR:
        raise InputError(f"only {fit:.0%} of its pixels are near a colour of this checkpoint's palette "
                         f"(a colour label map has {PALETTE_MIN_NEAR:.0%} at least, JPEG noise included): "
                         "a photo? give colour label maps in the palette's colours, or use a checkpoint "
                         "trained on photos (label_nc 0)")
    far = far_colours(rgb, palette)   # as training's validation: one colour far from every entry
    if far:
        (colour, n), total = far[0], rgb.shape[0] * rgb.shape[1]
        raise InputError(f"colour {colour} on {n} pixels ({n / total:.1%}) is far from every colour of this "
                         "checkpoint's palette, so it would be read as the nearest class: recolour it to one "
                         "of the palette's colours (a void border, say, to its void class)")


def id_out_of_range(bad: int, label_nc: int) -> str:
    """Why a map with label id ``bad`` (>= label_nc, or negative) is skipped, and the fix."""
    if bad < 0:
        return f"label id {bad} is negative; remap the ids to 0..{label_nc - 1}"
    text = (f"label id {bad} >= label_nc={label_nc} of the checkpoint; remap the ids to "
            f"0..{label_nc - 1}, or use a checkpoint trained on these classes")
    if bad == 255:
        text += ("; 255 is usually an 'ignore' (void) id, e.g. in Cityscapes trainIds: remap it to a "
                 "void class below label_nc when preparing the maps (e.g. ids[ids == 255] = 0)")
    return text


def _synthesis_wording(text: str, label_nc: int | None = None, label_id: int | None = None) -> str:
    """The data module's messages (written for training) with the fixes synthesize.py has: ids are
    remapped (a checkpoint's label_nc cannot be set; ``label_id``: the data module's id out of
    range, its DatasetError's), a colour-map checkpoint is one trained with --palette, and
    ``--validate full`` is synthesize.py's (``data.dataset.SYNTHESIS_FIXES``)."""
    if label_id is not None and label_nc:
        return id_out_of_range(label_id, label_nc)
    return synthesis_wording(text)


def _index(folder, what: str | None = None, role: str | None = None) -> dict[str, Path]:
    """``folder``'s images by :func:`partner_key` (stem in Unicode NFC), as the data module pairs
    them; two with one stem (a.png, a.jpg) are an InputError naming ``what`` (default: the
    folder) and, for a folder of ``role`` files ('inst'), what to do with each of Cityscapes'
    files (``layouts.index_images``)."""
    from pix2pixhd.data.layouts import index_images
    return index_images(folder, what=what, role=role)


def _str(p) -> str | None:
    return None if p is None else str(p)


class _Under(Sequence):
    """``str(folder / name)`` of each of ``names`` (a folder's files, as ``list_folder`` made
    their Paths), built when read: the folder's path is not stored once per input."""

    def __init__(self, folder: Path, names: Sequence):
        self.folder, self.names = folder, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return str(self.folder / self.names[i])


class _NFC(Sequence):
    """The partner key of each of ``strs`` (stems: ``layouts.partner_key_of_stem``, Unicode NFC),
    built when read."""

    def __init__(self, strs: Sequence):
        self.strs = strs

    def __len__(self) -> int:
        return len(self.strs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return partner_key_of_stem(self.strs[i])


class _Index:
    """``{key: Path}`` of an --inst or --real folder (``_index``), stored as two :class:`Strs`,
    the keys sorted: ``get(key)`` finds it by bisection and builds the Path. A dict of Paths was
    some 250 bytes per partner file for the whole run."""

    __slots__ = ("_keys", "_paths")

    def __init__(self, index: dict | None = None):
        keys = sorted(index or ())
        self._keys = Strs(keys)
        self._paths = Strs(str(index[k]) for k in keys)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: str, default=None):
        j = bisect.bisect_left(self._keys, key)
        if j < len(self._keys) and self._keys[j] == key:
            return Path(self._paths[j])
        return default


class _HashSet:
    """Membership of names by their 64-bit ``hash`` (this process's), in a sorted numpy array: 8
    bytes a name instead of a set of str. A name whose hash collides with a member's counts as a
    member (one in 2**64): only for filters where an extra member costs nothing but its memory
    (a torchrun rank's share of the manifest lines, ``_complete_lines``'s ``outputs``)."""

    __slots__ = ("_h",)

    def __init__(self, names=()):
        self._h = np.sort(np.fromiter((hash(n) for n in names), dtype=np.int64))

    def __contains__(self, name) -> bool:
        h = hash(name)
        j = int(np.searchsorted(self._h, h))
        return j < len(self._h) and int(self._h[j]) == h


class _Done:
    """_complete_lines's answer, ``{output: (size, inputs, partners, real_sha256)}``, stored
    compactly while the manifest is read: per line one entry of a bytes blob (the output's name,
    then its value as JSON) and its name's ``hash`` in an array; :meth:`freeze` keeps each
    output's last line (the dict's overwrite), sorted by hash. ``get``, ``pop`` and ``len`` as
    the dict's; the value's tuple is built when read. A dict of tuples of lists was
    some 650 bytes of Python objects per output while a rerun scanned a job."""

    __slots__ = ("_blob", "_ends", "_split", "_hashes", "_order", "_gone", "_n", "_none")

    def __init__(self):
        self._blob, self._ends, self._split, self._hashes = bytearray(), array("q"), array("q"), array("q")
        self._none: list = []   # an ok line whose output is null: a key of the dict, never looked up

    def add(self, output: str | None, value) -> None:
        if output is None:
            self._none[:] = [value]
            return
        self._hashes.append(hash(output))
        self._blob += output.encode("utf-8", "surrogatepass")
        self._split.append(len(self._blob))
        self._blob += json.dumps(value, separators=(",", ":")).encode()
        self._ends.append(len(self._blob))

    def freeze(self) -> "_Done":
        self._blob = bytes(self._blob)
        ends, split = np.array(self._ends, np.int64), np.array(self._split, np.int64)
        hashes = np.array(self._hashes, np.int64)
        order = np.lexsort((np.arange(len(hashes)), hashes))   # by hash, then line: the last line last
        hs = hashes[order]
        later = np.zeros(len(order), bool)   # the next entry has the same hash
        later[:-1] = hs[1:] == hs[:-1]
        keep = ~later
        for t in np.flatnonzero(later):   # kept unless a later line of its hash has its name
            name, u = self._name_of(int(order[t]), ends, split), t + 1
            while u < len(order) and hs[u] == hs[t] and self._name_of(int(order[u]), ends, split) != name:
                u += 1
            keep[t] = not (u < len(order) and hs[u] == hs[t])
        self._order = order[keep]
        self._hashes = hashes[self._order]
        self._ends, self._split = ends, split
        self._gone = np.zeros(len(self._order), bool)
        self._n = len(self._order)
        return self

    def _name_of(self, e: int, ends=None, split=None) -> bytes:
        ends = self._ends if ends is None else ends
        split = self._split if split is None else split
        return self._blob[int(ends[e - 1]) if e else 0:int(split[e])]

    def _find(self, output: str) -> int:
        """The slot of ``output`` in the sorted entries, or -1 (-2: the null output's line)."""
        if output is None:
            return -2 if self._none else -1
        h = hash(output)
        j = int(np.searchsorted(self._hashes, h))
        name = None
        while j < len(self._hashes) and int(self._hashes[j]) == h:
            if not self._gone[j]:
                name = name or output.encode("utf-8", "surrogatepass")
                if self._name_of(int(self._order[j])) == name:
                    return j
            j += 1
        return -1

    def _value(self, j: int) -> tuple:
        if j == -2:
            return self._none[0]
        e = int(self._order[j])
        size, inputs, partners, real = loads_json(self._blob[int(self._split[e]):int(self._ends[e])])
        return size, inputs, tuple(tuple(p) for p in partners), real

    def get(self, output: str, default=None):
        j = self._find(output)
        return default if j == -1 else self._value(j)

    def pop(self, output: str, default=None):
        j = self._find(output)
        if j == -1:
            return default
        value = self._value(j)
        if j == -2:
            self._none.clear()
        else:
            self._gone[j] = True
            self._n -= 1
        return value

    def __len__(self) -> int:
        return self._n + len(self._none)


class _Todo(Sequence):
    """The outputs still to do, by input: ``(i, ks)`` pairs in input order (``ks``: the sample
    indices of input ``i`` to do), stored as an array of the inputs and a dict of the ``ks`` of
    those with only some of their ``K`` samples to do (every input of a new job has all). A list
    of tuples of lists (and the stream's dict of it, and its sampler's list) was some 250 bytes
    per input for the whole run. Read as the list it replaces: ``todo[j]``, slices, ``len``."""

    __slots__ = ("_i", "_some", "_K")

    def __init__(self, pairs=(), K: int = 1):
        self._i, self._some, self._K = array("q"), {}, K
        for i, ks in pairs:
            self.append(i, ks)

    def append(self, i: int, ks) -> None:
        self._i.append(i)
        if list(ks) != list(range(self._K)):
            self._some[int(i)] = list(ks)

    def __len__(self) -> int:
        return len(self._i)

    def ks(self, i: int) -> list[int]:
        """The samples to do of input ``i`` (one of these inputs)."""
        ks = self._some.get(int(i))
        return list(range(self._K)) if ks is None else list(ks)

    def __getitem__(self, j):
        if isinstance(j, slice):
            t = _Todo(K=self._K)
            t._i = self._i[j]
            t._some = {i: self._some[i] for i in t._i if i in self._some} if self._some else {}
            return t
        i = self._i[j]
        return i, self.ks(i)

    def inputs(self) -> "_Inputs":
        """The inputs, in order: a sampler for the DataLoader (ints, a length)."""
        return _Inputs(self._i)

    def units(self) -> int:
        """The number of outputs to do."""
        return len(self._i) * self._K - sum(self._K - len(ks) for ks in self._some.values())

    def __eq__(self, other):
        if isinstance(other, (_Todo, list, tuple)):
            return len(self) == len(other) and all(a[0] == b[0] and list(a[1]) == list(b[1])
                                                   for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"_Todo({list(self)!r})"


class _Inputs:
    """A DataLoader sampler over an array of input indices."""

    def __init__(self, idx):
        self._idx = idx

    def __len__(self) -> int:
        return len(self._idx)

    def __iter__(self):
        return iter(self._idx)


def input_fingerprint(files) -> list[list]:
    """[[name, size, mtime_ns], ...] of an output's input files (size and mtime None for a file
    that is missing or cannot be stat'ed), recorded in its manifest line: on a rerun the output
    is complete only if its inputs still have these, so an input replaced or edited in place is
    redone. The folders themselves are in the job (``job_identity``). Taken before the files are
    read, so a file changed while it was read has a newer fingerprint than the one recorded and is
    redone next time. size + mtime, not a hash: a rerun stats every input instead of reading it."""
    fp = []
    for f in files:
        if f is None:
            fp.append([None, None, None])
            continue
        try:
            st = os.stat(f)
            fp.append([os.path.basename(f), st.st_size, st.st_mtime_ns])
        except OSError:
            fp.append([os.path.basename(f), None, None])
    return fp


class DatasetSource(torch.utils.data.Dataset):
    """One split of a dataset root, opened and validated by ``pix2pixhd.data.create_dataset``
    (the layouts and checks training uses; no resize, crop or flip: maps keep their size). Items
    as :class:`FolderSource`'s; the real photo is the dataset's own."""

    def __init__(self, job: SynthesisJob, cfg, *, needs_inst: bool, needs_image: bool):
        from pix2pixhd.data import create_dataset
        root = Path(job.dataroot)
        if not root.is_dir():
            raise MissingInputError(f"--dataroot {root} is not a folder" + ("" if root.exists() else
                                    " (it does not exist)"))
        from pix2pixhd.data.dataset import DatasetError, checkpoint_mode
        has_inst = (root / f"{job.phase}_inst").is_dir()
        direction = cfg.learned_direction_there(root, job.phase) or cfg.direction
        if direction != cfg.direction and os.environ.get("RANK", "0") == "0":   # fed as it learned
            print(printable(f"note: this checkpoint was saved before --direction BtoA applied to {job.phase}_A/ + "
                            f"{job.phase}_B/ folders: its generator learned {job.phase}_A -> {job.phase}_B, so "
                            f"{job.phase}_A/ is its input"), file=sys.stderr, flush=True)
        try:   # CycleGAN's unaligned layout: only the domain the generator reads is listed and checked
            # the layout there, where the checkpoint reads it (synthesize.py has no --dataset_mode):
            # a pix2pix run trained on AB images reads {phase}_A/ + {phase}_B/ photo pairs too
            dataset_mode = checkpoint_mode(root, job.phase, cfg.dataset_mode, model=cfg.model,
                                           label_nc=cfg.label_nc, palette=cfg.palette or None)
            self.ds = create_dataset(root, job.phase, cfg.data_config(
                dataset_mode=dataset_mode, resize_or_crop="none", required_multiple=1, no_flip=True,
                is_train=False, validate=job.validate, load_features=False, no_instance=not has_inst,
                inputs_only=not needs_image, direction=direction),   # label maps alone (no photo folder) synthesize
                read_domain="B" if job.direction == "BtoA" else "A", fixed_label_nc=True)
        except DatasetError as e:   # training's wording of the fixes -> synthesize.py's
            raise DatasetError(_synthesis_wording(str(e)), e.problems) from None
        self.root, self.mode = root, self.ds.mode
        self.abs_root = root.resolve()
        self.has_inst = has_inst or (needs_inst and cfg.label_nc > 0)
        self.label_nc, self.needs_inst, self.needs_image = cfg.label_nc, needs_inst, needs_image
        self.broken, self.ignored = [], [m for k, _, m in self.ds.layout.problems if k == "ignored"]
        # CycleGAN's unaligned layout: the input domain's images, each once (the dataset's
        # samples pair them with random images of the other domain and wrap around).
        self.domain = None
        if getattr(self.ds, "records_B", None) is not None:
            self.domain = "B" if job.direction == "BtoA" else "A"
            recs = self.ds.records_B if self.domain == "B" else self.ds.records
            if not recs:   # inputs_only: the other domain's folder alone is there
                there = [d.name for d in (root / f"{job.phase}A", root / f"{job.phase}B") if d.is_dir()]
                mine = f"{job.phase}{'B' if (self.domain == 'B') == (cfg.direction == 'AtoB') else 'A'}"
                raise MissingInputError(
                    f"--dataroot {root} --direction {job.direction or 'AtoB'}: the generator reads "
                    f"{root / mine}/, which does not exist (there: {', '.join(there)}/). Fix: "
                    f"--direction {'AtoB' if self.domain == 'B' else 'BtoA'} to translate "
                    f"{', '.join(there)}/, or add {mine}/")
        else:
            recs = self.ds.records
        if job.how_many > 0:
            recs = recs[:job.how_many]
        self.records = recs
        role = self.domain or ("ab" if self.mode == "aligned" else "label")
        paths = [Path(r[role]) for r in recs]
        self.files = Strs(str(p) for p in paths)   # compactly: held for the whole run (Strs)
        self.keys = Strs(str(p.relative_to(root)) for p in paths)
        self.stems = Strs(stem_key(p) for p in paths)
        del paths
        self.copy_label = self.mode in ("cityscapes", "rgb_pairs", "unaligned")

    def __len__(self) -> int:
        return len(self.records)

    def source_name(self, i: int) -> str:
        return self.files[i]

    def record_name(self, i: int) -> str:
        """Input ``i`` as the manifest records it (see FolderSource.record_name)."""
        return _under(self.abs_root, self.root, self.files[i])

    def check_real_sizes(self) -> None:
        pass   # the dataset's own photos: validation checked their sizes

    def input_files(self, i: int) -> list[str | None]:
        """The files whose contents decide output ``i``'s bytes (see FolderSource.input_files)."""
        rec = self.records[i]
        if self.domain is not None:
            return [self.files[i]]
        files = [self.files[i]] + ([_str(rec.get("inst"))] if "inst" in rec else [])
        return files + ([_str(rec.get("image"))] if self.needs_image else [])

    @_noting_large_images
    def __getitem__(self, i: int) -> dict:
        item = {"i": i, "label": None, "inst": None, "image": None, "label_copy": None,
                "inst_copy": None, "error": None, "inputs": input_fingerprint(self.input_files(i))}
        rec = self.records[i]
        copy = self.copy_label and self.files[i].lower().endswith(".png")
        try:
            if self.domain is not None:
                im = self.ds._open(rec[self.domain], self.domain)   # the data module's reader
                want = "L" if self.ds.channels[self.domain] == 1 else "RGB"
                copy = copy and im.mode == want      # the partner is the image the generator read
                im = im if im.mode == want else im.convert(want)
                a = np.array(im)
                item["label"] = torch.from_numpy(np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1)))
            else:
                if copy and self.label_nc == 0:      # rgb_pairs: the data module reads the input folder ({phase}_A, or _B with BtoA) as RGB
                    with Image.open(self.files[i]) as head:
                        copy = head.mode == "RGB"
                self._check_label_files(rec)
                s = self.ds[i]          # records[:how_many] keeps the dataset's indices
                item["label"] = s["label"].contiguous()
                if "inst" in s:
                    item["inst"] = s["inst"].contiguous()
                    if str(rec["inst"]).lower().endswith(".png"):
                        item["inst_copy"] = str(rec["inst"])
                elif self.needs_inst:   # no instance maps: the label map itself, as the reference
                    item["inst"] = s["label"].to(torch.int32)
                    if self.copy_label and self.files[i].lower().endswith(".png"):
                        item["inst_copy"] = self.files[i]
                if self.needs_image:
                    item["image"] = s["image"].contiguous()
                    item["real_sha256"] = file_sha256(rec["image"])   # no copy in OUT: see FolderSource
            if copy:
                item["label_copy"] = self.files[i]
        except Exception as e:
            item.update(label=None, inst=None, image=None,
                        error=_synthesis_wording(_reason(e), self.label_nc, getattr(e, "label_id", None)))
        return item

    def _check_label_files(self, rec: dict) -> None:
        """What the data module reads without a word but synthesis refuses, whatever --validate
        says: id maps stored as JPEG (label ids without a palette, instance ids), and inputs of a
        colour-map (--palette) checkpoint whose colours are not the palette's (a photo)."""
        if self.label_nc == 0:
            return
        palette = self.ds.palette
        if palette is None and "label" in rec:
            with Image.open(rec["label"]) as head:
                _refuse_jpeg_ids(head, rec["label"], "label map")
        if rec.get("inst") is not None and getattr(self.ds, "use_inst", True):
            with Image.open(rec["inst"]) as head:
                _refuse_jpeg_ids(head, rec["inst"], "instance map", partner=True)
        if palette is not None:
            if "ab" in rec:   # the input half of an AB image
                with Image.open(rec["ab"]) as ab:
                    ab = ab.convert("RGB")
                w2 = ab.size[0] // 2
                box = (0, 0, w2, ab.size[1]) if self.ds.direction == "AtoB" else (w2, 0, 2 * w2, ab.size[1])
                rgb = np.asarray(ab.crop(box))
            else:
                with Image.open(rec["label"]) as im:
                    rgb = np.asarray(im.convert("RGB"))
            _refuse_unfit_colours(rgb, palette)


class Rescaled(torch.utils.data.Dataset):
    """A source (FolderSource, DatasetSource) whose items are resized to ``width`` (height by the
    aspect ratio, rounded down as training's scale_width rounds it): ids nearest, photos bicubic,
    through ``pix2pixhd.data.transforms``, the functions training resizes with. The resized maps
    are what the generator reads, so they, not the files, go to the output dataset."""

    def __init__(self, src, width: int):
        self.src, self.width = src, width

    def __getattr__(self, name):   # the source's files, keys, stems, has_inst...
        if name == "src":          # (unpickling in a worker, before __dict__ is set)
            raise AttributeError(name)
        return getattr(self.src, name)

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> dict:
        from pix2pixhd.data import transforms as T
        item = self.src[i]
        if item["label"] is None:
            return item
        h, w = item["label"].shape[-2:]
        size = T.resized_size(w, h, "scale_width", self.width, 1)
        if size == (w, h):
            return item
        g = T.Geometry(size, (0, 0, *size), False)
        photo = self.src.label_nc == 0

        def ids(t):
            return torch.from_numpy(np.ascontiguousarray(T.apply_ids(t[0].numpy(), g)))[None]

        def rgb(t):
            a = t.permute(1, 2, 0).numpy()
            im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
            out = T.apply_photo(im, g)
            return torch.from_numpy(np.ascontiguousarray(out[None] if out.ndim == 2 else out.transpose(2, 0, 1)))

        item["label"] = rgb(item["label"]) if photo else ids(item["label"])
        if item["inst"] is not None:
            item["inst"] = ids(item["inst"])
        if item["image"] is not None:
            item["image"] = rgb(item["image"])
        item["label_copy"] = item["inst_copy"] = None   # the files are not what the generator read
        return item


def _input_size_notes(src, cfg) -> list[str]:
    """Say so when the first input looks like a pix2pix A|B pair fed whole (--input), and when it
    is far wider or narrower (1.5x) than the maps the generator was
    trained on (scale_width runs): a generator sees objects at the scale it learnt them, and
    synthesis keeps each map's size unless --scale_width says otherwise (NVIDIA's test.py resized
    to --loadSize)."""
    notes: list[str] = []
    if not len(src):
        return notes
    try:
        w, h = _size(src.files[0])
    except Exception:
        return notes   # an unreadable file is skipped with its reason in its turn
    if isinstance(src, FolderSource) and cfg.label_nc == 0 and cfg.resize_or_crop == "resize_and_crop" \
            and w == 2 * h:   # square training samples; a 2:1 input is likely an A|B pair (pix2pix)
        notes.append(f"{src.files[0]} is {w}x{h}, twice as wide as high, and this generator was trained on "
                     "square samples: if the inputs are side-by-side A|B images, --input feeds both halves to "
                     "the generator; --dataroot DIR --phase PHASE reads the input half of DIR/PHASE/")
    if "scale_width" not in cfg.resize_or_crop:
        return notes
    w = w // (2 if getattr(src, "mode", None) == "aligned" else 1)
    if 2 * w >= 3 * cfg.loadSize or 3 * w <= 2 * cfg.loadSize:
        notes.append(f"the generator was trained on maps resized to {cfg.loadSize} px wide (--resize_or_crop "
                     f"{cfg.resize_or_crop} --loadSize {cfg.loadSize}); {src.files[0]} is {w} px wide and is "
                     "synthesized at its size. --scale_width trained resizes the inputs as training did")
    return notes


def resolve_scale_width(value: str, cfg) -> int:
    """``--scale_width``: a width in pixels, 0 (keep sizes), or 'trained': the width the
    checkpoint's training resized its maps to (its --loadSize, with --resize_or_crop scale_width
    or scale_width_and_crop)."""
    if str(value).lower() == "trained":
        if "scale_width" not in cfg.resize_or_crop:
            raise ConfigError(f"--scale_width trained: this checkpoint was trained with --resize_or_crop "
                              f"{cfg.resize_or_crop}, which does not resize to one width; give a width "
                              "(--scale_width W) or leave the maps as they are (--scale_width 0)")
        return int(cfg.loadSize)
    try:
        w = int(value)
    except ValueError:
        raise ConfigError(f"--scale_width {value}: give a width in pixels, 0 (keep each map's size) or "
                          "'trained' (the checkpoint's --loadSize)") from None
    if w < 0:
        raise ConfigError(f"--scale_width {w}: must be >= 0 (0 keeps each map's size)")
    return w


# ---- outputs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputLayout:
    """Where one output's files go, relative to ``out``: the cityscapes layout for label maps,
    rgb_pairs for photo inputs."""
    split: str
    photo_inputs: bool

    @property
    def input_dir(self) -> str:
        return f"{self.split}_A" if self.photo_inputs else f"{self.split}_label"

    @property
    def inst_dir(self) -> str:
        return f"{self.split}_inst"

    @property
    def image_dir(self) -> str:
        return f"{self.split}_B" if self.photo_inputs else f"{self.split}_img"

    def dirs(self) -> list[str]:
        return [self.input_dir, self.image_dir] + ([] if self.photo_inputs else [self.inst_dir])

    @staticmethod
    def name(stem: str, k: int, num_samples: int) -> str:
        return f"{stem}.png" if num_samples == 1 else f"{stem}_{k}.png"


class OutputWriteError(UserError, OSError):
    """A file of the output (an image, a manifest) could not be written: the message names it, the
    OS error and the fix; a rerun of the same command resumes the job."""


class InputsSkippedError(InputError):
    """A job with ``strict`` (synthesize.py --strict) went through every input and skipped some:
    raised on every rank (the skip count is the job's, summed over the ranks) once the job is
    complete; the outputs written stay, and synthesis.json marks the job complete as without
    ``strict``. ``report``: the run's :class:`SynthesisReport`. ``errors.run`` returns its
    ``exit_status``, errors.SKIPPED_EXIT_STATUS (65), so a pipeline tells it from an error (1)."""
    exit_status = SKIPPED_EXIT_STATUS

    def __init__(self, message: str, report: "SynthesisReport"):
        super().__init__(message)
        self.report = report


class SynthesisInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) to a run, where Python's default handler was in place (one that raises
    KeyboardInterrupt; a caller's own handler is left to do its work): raised once the batches in
    flight are written (under torchrun on every rank), so that a notebook's or script's ``except
    KeyboardInterrupt`` still sees it; run_synthesis of the same job resumes it. ``report``: this
    run's counts; ``stopped``: False when the signal came too late to stop the job (the final
    merge: the job is complete, and synthesis.json says so); ``line``: what synthesize.py says on
    stderr (with exit status errors.INTERRUPTED_EXIT_STATUS, 130) when stopped, else None.
    Ctrl-C raised SystemExit(130) from the API, with a line telling to rerun a command there is not."""
    exit_status = INTERRUPTED_EXIT_STATUS

    def __init__(self, message: str, report: "SynthesisReport", *, stopped: bool = True,
                 line: str | None = None):
        super().__init__(message)
        self.report, self.stopped, self.line = report, stopped, line


class LoaderWorkerDiedError(UserError, RuntimeError):
    """A decoding worker process died (the out-of-memory killer's kill -9): the message is
    errors.loader_worker_died's line, ending with synthesis's way on (its default names
    train_hd.py's --resume, out of place here: a rerun of the same command resumes the job).
    Raised from torch's error."""


def _worker_death_error(e: Exception) -> Exception:
    """``e``, when it is torch's error of a loader worker that died (or could not put its sample in
    a full /dev/shm), as :class:`LoaderWorkerDiedError`; any other error as it is."""
    from pix2pixhd.errors import loader_worker_died, shared_memory_full
    # any type: torch's SIGCHLD handler raises its RuntimeError wherever the main thread is, and
    # raised inside the stdlib's own handler (Thread.start's, while a writer thread starts) it
    # surfaces as that code's error (KeyError) with torch's as its context: the chain is searched
    if isinstance(e, UserError):
        return e
    resume = "rerun the same command to resume the job"
    # a full /dev/shm: the same line as training's, naming synthesize.py's option and way on
    msg = (loader_worker_died(e, resume=resume, workers="--workers")
           or shared_memory_full(e, workers="--workers", resume=resume))
    if msg is None:
        return e
    err = LoaderWorkerDiedError(msg)
    err.__cause__ = e
    return err


# errors of the file system written to (not of the program): one line naming the file and the fix
_WRITE_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM",
                                             "ENAMETOOLONG", "EIO") if hasattr(errno, n)}
_FULL_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, n)}


def _write_error(path: Path, e: OSError) -> OutputWriteError:
    """``e``, met writing ``path``, as one line with its fix."""
    why = f"[Errno {e.errno}] {e.strerror}" if e.errno is not None and e.strerror else str(e)
    if e.errno in _FULL_ERRNOS:
        fix = "free space on that disk (or raise the quota or file-size limit)"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = f"make {path.parent} writable by this user"
    elif e.errno == errno.ENAMETOOLONG:
        fix = "give the input a shorter file name (this file system's names are shorter)"
    else:
        fix = f"check the file system of {path.parent}"
    return OutputWriteError(f"could not write {path}: {type(e).__name__}: {why}; {fix}, then rerun the "
                            "same command: it resumes the job (the outputs already written are kept)")


def _write_atomic(path: Path, data: bytes | None = None, copy_from: str | None = None) -> int:
    """``data`` (or the file ``copy_from``) to ``path`` via its temporary file (``_tmp_path``) and
    a rename, so a killed writer never leaves a partial file under the final name. No fsync per
    image: a process kill cannot lose a finished write, and after a power loss the manifest's size
    check redoes a file that came back short. Returns the size written. A failure removes the
    temporary file; one of the file system (a full disk, a read-only folder...) is an
    OutputWriteError naming ``path``."""
    tmp = _tmp_path(path)
    try:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
            size = tmp.stat().st_size
        else:
            with open(tmp, "wb") as f:
                f.write(data)
            size = len(data)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            raise _write_error(path, e) from e
        raise
    return size


class OutLock:
    """The lock of an output folder, ``OUT/synthesis.lock``: one job at a time writes into it.

    Rank 0 takes it before it touches the folder (``--overwrite``'s removals, the clean-up of
    ``*.tmp`` files, ``synthesis.json``) and keeps it until the job ends; the other ranks of the
    job do not lock: they start only when rank 0 has it (``raise_on_any_rank``), and rank 0
    releases it only after every rank has finished (the merge follows the last collective). The
    lock is an exclusive POSIX record lock (``fcntl.lockf``) on the file, which the kernel drops
    when its process dies, so a killed job never blocks the folder: its file stays behind naming
    its pid and host, and the next job takes it over with a note. A POSIX lock belongs to the
    process, not to the open file: DataLoader workers forked from a killed job do not keep it
    (a ``flock`` would live on in them), and the file is only ever read through the locked
    descriptor (closing another descriptor of it would drop the lock). The file records the
    holder (pid, host, start, job) for the refusal a second job gets. Where locks are not
    supported (some network filesystems; Windows, which has no ``fcntl``), a holder whose pid is
    alive on this host, or which is on another host, is taken as running."""

    FILE = LOCK_FILE         # the lock file's name in the folder
    HOLDER = "a synthesis"   # who held a lock taken over, in the note

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / self.FILE
        self.fd: int | None = None

    def acquire(self, job: str | None = None) -> str | None:
        """Take the lock or raise InputError naming its holder; returns a note when a dead job's
        lock was taken over."""
        try:
            import fcntl
        except ImportError:   # Windows: no POSIX locks; the recorded pid decides
            fcntl = None
        self.out.mkdir(parents=True, exist_ok=True)
        # never through a link: the lock's record is written over the file it opens, so a lock
        # path that is a link to another file (someone else's, in a shared folder) would wipe it
        flags = (os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_NOFOLLOW", 0))
        while True:
            if not hasattr(os, "O_NOFOLLOW") and os.path.islink(self.path):   # (Windows: no O_NOFOLLOW)
                raise InputError(self._not_a_file())
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as e:
                if os.path.islink(self.path) or (e.errno == errno.EISDIR and self.path.is_dir()):
                    raise InputError(self._not_a_file()) from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):   # a fifo or a device: nothing to write over
                os.close(fd)
                raise InputError(self._not_a_file())
            flocked = False   # no fcntl, ENOLCK, EOPNOTSUPP...: fall back on the recorded pid
            if fcntl is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    flocked = True
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EACCES):
                        holder = _read_lock(fd)
                        os.close(fd)
                        raise InputError(self._held_message(holder)) from None
            try:   # released (removed) between our open and flock: lock the file now at the path
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = _read_lock(fd)
        if not flocked and old.get("pid") and old.get("pid") != os.getpid() and \
                (old.get("host") != socket.gethostname() or _pid_alive(old["pid"])):
            os.close(fd)
            raise InputError(self._held_message(old))
        note = None
        if old.get("pid"):
            note = (f"{self.path} was left by {self.HOLDER} (pid {old['pid']} on "
                    f"{old.get('host', '?')}) that is no longer running; taking it over")
        rec = {"pid": os.getpid(), "host": socket.gethostname(), "job": job,
               "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        _write_at_start(fd, json.dumps(rec).encode())
        self.fd = fd
        return note

    def _not_a_file(self) -> str:
        what = ("a symbolic link (never followed: the lock's record would be written over the file "
                "it points to)" if os.path.islink(self.path) else
                "a folder" if self.path.is_dir() else "not a regular file (a fifo or a device)")
        return (f"{self.path} is {what}; the lock is a plain file that this program writes: remove "
                f"{self.path} and rerun")

    @staticmethod
    def _who(holder: dict) -> str:
        """The holder a lock file records, in words."""
        return (f"pid {holder['pid']} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
                if holder.get("pid") else "a process that has not yet recorded its pid")

    def _held_message(self, holder: dict) -> str:
        who = self._who(holder)
        return (f"--out {self.out} is being written by another synthesis ({who}; lock {self.path}): "
                "wait for it to finish, or pick another --out (if that process is gone from "
                f"another machine, remove {self.path})")

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        ours, removed = False, False
        try:
            ours = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            if ours:
                self.path.unlink()
                removed = True
        except FileNotFoundError:
            pass
        except PermissionError:   # Windows: an open file cannot be removed; removed once closed
            pass
        finally:
            os.close(fd)   # drops the lock
        if ours and not removed:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass


def _write_at_start(fd: int, data: bytes) -> None:
    """``data`` at offset 0 of ``fd`` (os.pwrite; where it is missing, Windows, a seek and writes)."""
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, 0)
        return
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_lock(fd: int) -> dict:
    """The holder a lock file records, read through ``fd`` (see OutLock); {} if none."""
    try:
        if hasattr(os, "pread"):
            data = os.pread(fd, 1 << 16, 0)
        else:   # Windows
            os.lseek(fd, 0, os.SEEK_SET)
            data = os.read(fd, 1 << 16)
        rec = loads_json(data.decode())
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid) -> bool:
    """Whether process ``pid`` of this host runs (when it cannot be told: True)."""
    if os.name == "nt":   # os.kill(pid, 0) there sends CTRL_C_EVENT to the process group
        return _windows_pid_alive(pid)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _windows_pid_alive(pid) -> bool:
    """``_pid_alive`` on Windows: OpenProcess and its exit code (STILL_ACTIVE); True when that
    cannot be asked (access denied, no ctypes)."""
    try:
        import ctypes
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, int(pid))   # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() != 87   # ERROR_INVALID_PARAMETER: no such process
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259   # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except Exception:
        return True


class _Manifest:
    """This rank's part of the manifest: one JSON line per output, appended as outputs finish."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.f = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.ok = 0   # lines with status ok (outputs written) by this process
        # A line cut short (a full disk, a power loss) ends the part without its newline: the
        # first line this run appends would join it and be lost with it (one output of a
        # completed job without its line). It is ended first; _read_lines ignores what it holds.
        try:
            if _ends_cut_short(path):
                self.f.write("\n")
                self.f.flush()
        except OSError as e:
            self.f.close()
            raise _write_error(self.path, e) from e

    def add(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":"))
        with self.lock:
            try:
                self.f.write(line + "\n")
                self.f.flush()
            except OSError as e:
                raise _write_error(self.path, e) from e
            self.ok += record.get("status") == "ok"

    def close(self) -> None:
        with self.lock:
            if self.f.closed:
                return
            try:
                self.f.flush()
                os.fsync(self.f.fileno())
            except OSError as e:
                try:
                    self.f.close()
                except OSError:
                    pass
                raise _write_error(self.path, e) from e
            self.f.close()


def _ends_cut_short(path: Path) -> bool:
    """Whether the file ``path`` holds something and does not end with a newline."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return False
        f.seek(end - 1)
        return f.read(1) != b"\n"


def _json_kind(v) -> str:
    """What JSON value ``v`` is, for a message: an object, a list, a string, a number..."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _bad_record(rec: dict) -> str | None:
    """Why manifest line ``rec`` cannot be used (a path or the job's digest that is not a string),
    or None."""
    for key in ("output", "label", "inst", "job"):
        v = rec.get(key)
        if v is not None and not isinstance(v, str):
            return f"its {key!r} is {_json_kind(v)}, not a string"
    return None


def _read_lines(paths, damaged: list | None = None) -> "iter[dict]":
    """Every readable JSON line of ``paths`` (a line cut short by a kill is ignored; so is a line
    whose paths or digest are not strings, added to ``damaged`` as (file, line number, why)). One
    that is not a regular file is refused before it is opened (a fifo would block for ever)."""
    from pix2pixhd.checkpoint import not_regular_message
    for p in paths:
        said = not_regular_message(p, f"remove it (synthesize.py writes {Path(p).name} as a file), or pick another --out")
        if said is not None:
            raise InputError(said)
        try:
            f = open(p, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        with f:
            for n, line in enumerate(f, 1):
                try:
                    rec = loads_json(line)
                except ValueError:   # cut short, or nested too deeply
                    continue
                if isinstance(rec, dict) and "output" in rec:
                    why = _bad_record(rec)
                    if why is None:
                        yield rec
                    elif damaged is not None:
                        damaged.append((p, n, why))


def _manifest_sources(out: Path) -> list[Path]:
    return [out / MANIFEST] + sorted((out / PARTS).glob("rank*.jsonl"))


def photos_dir(out: str | Path) -> Path:
    """The folder of synthesized photos in an output dataset (``{phase}_img`` or ``{phase}_B``)."""
    out = Path(out)
    return out / loads_json((out / JOB_FILE).read_text())["images"]


def job_identity(job: SynthesisJob, identity: dict, layout: "OutputLayout", *,
                 reads_real: bool = False) -> dict:
    """What decides an output's bytes: the generator (checkpoint and its hash, which generator,
    backend, precision, dropout, features and, in ``identity`` from run_synthesis, the clusters
    file's hash), the inputs (the resolved ``input`` and ``inst``
    folders, ``real`` when the generator encodes its photos (``reads_real``), or the ``dataroot``
    with its ``phase`` and ``direction``) and the job's seed, sample count and output split
    (``images``: the folder of the synthesized photos). So a rerun with another input folder
    whose files have the same names is another job, refused (or replaced with ``overwrite``),
    not a resume that keeps the old outputs; a folder that moved with its files is taken as the
    same job by _check_out_folder (``_moved_files_differ``). The files' contents are checked per output, by the
    fingerprint in its manifest line (``input_fingerprint``). Worker, writer and rank counts are
    not in it: they change no byte; nor are the batch size (see docs/synthesis.md on rounding) and
    ``how_many`` (a rerun with a larger one extends the job). The checkpoint (and ONNX file) count
    by their sha256: their paths (``_PATH_KEYS``) are recorded but not in the digest, so a
    byte-identical file elsewhere is the same job."""
    ident = dict(identity)
    folders = {"input": job.input, "inst": job.inst, "real": job.real if reads_real else None,
               "dataroot": job.dataroot}
    ident.update({k: str(Path(v).resolve()) for k, v in folders.items() if v is not None})
    if job.dataroot is not None:
        ident.update(phase=job.phase, direction=job.direction)
    ident.update(seed=job.seed, num_samples=job.num_samples, split=job.split, images=layout.image_dir)
    if job.scale_width:   # only when set: the digests of jobs that keep sizes stay as they were
        ident["scale_width"] = job.scale_width
    ident["digest"] = _digest(ident)
    return ident


# what job_identity adds for the inputs (older synthesis.json files lack them)
_INPUT_KEYS = ("input", "inst", "real", "dataroot", "phase", "direction", "digest")
# the input folders in the identity: a job whose folders moved, its files with them, is resumed
# (``_moved_folders``, ``_moved_files_differ``)
_FOLDER_KEYS = ("input", "inst", "real", "dataroot")
# the sha256 of the clusters file a sampled or chosen feature reads (older synthesis.json files lack it)
_CLUSTERS_KEY = "clusters_sha256"
# files the job counts by their sha256 (checkpoint_sha256, onnx_sha256): their paths are recorded
# for information, outside the digest (older synthesis.json files had them in it)
_PATH_KEYS = ("checkpoint", "onnx")
# synthesis.json's state of the job, beside its identity and outside the digest (see _job_state)
_STATE_KEYS = ("complete", "n_inputs", "n_outputs", "n_written", "n_skipped", "command", "cwd", "ranks",
               "older_digests")


def _legacy_digests(ident: dict, prev: dict | None = None) -> dict[str, str | None]:
    """The digests this job had in older synthesis.json files, each with what resuming such a
    file says (None: nothing): with the checkpoint's path in the digest (this job's path, or the
    path ``prev``, the folder's synthesis.json, records for a byte-identical file); and also
    without the clusters file's hash, or without it and the input folders; and, for the ONNX
    backend, with the precision 'bf16' or 'fp16' older versions recorded for its fp32 graph."""
    paths = [{k: ident[k] for k in _PATH_KEYS if k in ident}]
    if isinstance(prev, dict):
        theirs = {k: prev.get(k) for k in paths[0]}
        if theirs != paths[0]:
            paths.append(theirs)
    variants = [(ident, None)]
    if _CLUSTERS_KEY in ident:
        variants.append(({k: v for k, v in ident.items() if k != _CLUSTERS_KEY},
                         "predates the clusters file in a job's identity; resuming it as this job (the "
                         "clusters its outputs were drawn from cannot be checked)"))
    variants.append(({k: v for k, v in ident.items() if k not in _INPUT_KEYS and k != _CLUSTERS_KEY},
                     "predates input folders in a job's identity; resuming it as this job"))
    if ident.get("backend") == "onnx" and ident.get("precision") == "fp32":
        # the ONNX graph computes in fp32 whatever --precision said; versions before synthesize.py
        # refused bf16/fp16 with it recorded the precision asked for (auto: bf16 on CUDA): same bytes
        variants += [({**ident, "precision": p}, f"records precision {p!r} for --backend onnx, whose graph "
                      "computed in fp32 (versions before this one recorded --precision there without applying "
                      "it): its photos are this job's; resuming it as this job") for p in ("bf16", "fp16")]
    older: dict[str, str | None] = {}
    for d, note in variants:
        for p in paths:
            older.setdefault(_digest({**d, **p}, keep_paths=True), note)
    older.pop(ident.get("digest"), None)
    return older


def _moved_note(out: Path, prev: dict, ident: dict) -> str | None:
    """What resuming a folder whose synthesis.json names the checkpoint (or ONNX file) at
    another path says: the file given now has the same sha256."""
    moved = [k for k in _PATH_KEYS if prev.get(k) and ident.get(k) and prev[k] != ident[k]]
    if not moved:
        return None
    return "; ".join(f"{out / JOB_FILE} names {k} {prev[k]}; {ident[k]} has the same sha256: resuming "
                     "the job with it" for k in moved)


def _clusters_sha256(synth: Synthesizer) -> str | None:
    """The sha256 of the clusters file ``synth``'s features read (sampled or chosen centres), as
    ``FeatureClusters.load`` hashed the bytes it loaded; None without one (no features, encoded
    mode, or centres built in memory)."""
    f = synth.features
    if f is None or f.mode not in ("sample", "cluster") or f.clusters is None:
        return None
    return getattr(f.clusters, "file_sha256", None)


def _digest(ident: dict, keep_paths: bool = False) -> str:
    """The job's digest: its identity without the state (and the paths, unless ``keep_paths``,
    as older versions hashed them)."""
    drop = {"digest", *_STATE_KEYS, *(() if keep_paths else _PATH_KEYS)}
    return hashlib.sha256(json.dumps({k: v for k, v in ident.items() if k not in drop},
                                     sort_keys=True).encode()).hexdigest()[:16]


# ---- the run -------------------------------------------------------------------------------------
def _check_out_folder(job: SynthesisJob, ident: dict, layout: OutputLayout,
                      notes: list[str] | None = None, older: dict | None = None,
                      kept: list[str] | None = None, src=None) -> dict | None:
    """Refuse an ``out`` that holds something else (read-only: every rank runs it and reaches the
    same verdict). Returns the previous job's identity when it is another job to be replaced.
    ``notes``: what to say once the job starts. ``older``: filled with the digests of this job
    in the folder's older synthesis.json (``_legacy_digests``), whose manifest lines count;
    ``kept``: those of them recorded in the new synthesis.json (``older_digests``), so that its
    lines still count when that file's digest is no longer the one this job computes.
    ``src``: the inputs; with them, a job whose input folders moved (a copy staged into a
    per-job scratch folder) is this job when the files its outputs were made from are there with
    the names, sizes and modification times its manifest recorded (``_moved_files_differ``)."""
    notes = [] if notes is None else notes
    older = {} if older is None else older
    kept = [] if kept is None else kept
    out = Path(job.out)
    from pix2pixhd.paths import check_output_folder
    check_output_folder(out, "--out", "its output folders (<phase>_img, <phase>_label...) and synthesis.json")
    for flag, folder in (("--input", job.input), ("--dataroot", job.dataroot), ("--inst", job.inst),
                         ("--real", job.real)):
        if folder is not None and Path(folder).resolve() in (out.resolve(), *[(out / d).resolve() for d in layout.dirs()]):
            raise ConfigError(f"--out {out} would write into {flag} {folder}; pick another --out")
    prev = None
    from pix2pixhd.checkpoint import not_regular_message
    for name in (JOB_FILE, MANIFEST):   # refused before any read or write: a fifo would block for ever
        said = not_regular_message(out / name, f"remove it (synthesize.py writes {name} as a file), or pick another --out")
        if said is not None:
            raise InputError(said)
    if (out / JOB_FILE).is_file():
        try:
            prev = loads_json((out / JOB_FILE).read_text())
        except (OSError, ValueError):   # not JSON, not UTF-8
            prev = {"digest": "unreadable"}
        why = (f"it holds {_json_kind(prev)}, not the object synthesize.py writes" if not isinstance(prev, dict)
               else f"its 'digest' is {_json_kind(prev['digest'])}, not a string"
               if not isinstance(prev.get("digest"), (str, type(None))) else None)
        if why is not None:
            if not job.overwrite:
                raise InputError(f"{out / JOB_FILE} is damaged ({why}): the job it records cannot be "
                                 f"read; move {out} aside (or pick another --out), or pass --overwrite to "
                                 "replace what it holds")
            prev = {"digest": "unreadable"}
    else:
        taken = [d for d in layout.dirs() if (out / d).is_dir() and any((out / d).iterdir())]
        if taken:
            raise InputError(f"--out {out} already holds {', '.join(taken)}/ but no {JOB_FILE}: those "
                             "files were not written by synthesize.py's engine (a dataset?), and would "
                             "be overwritten; pick a new or empty --out")
    older.update(_legacy_digests(ident, prev))
    if prev is None:
        return None
    recorded = [d for d in prev.get("older_digests") or [] if isinstance(d, str)]
    if prev.get("digest") == ident["digest"]:
        kept.extend(recorded)
        older.update({d: None for d in recorded})
        if note := _moved_note(out, prev, ident):
            notes.append(note)
        return None
    # the digest it records, or its contents' (a state recorded in a file of an older identity)
    theirs = prev.get("digest"), _digest({k: v for k, v in prev.items() if k not in _STATE_KEYS}, keep_paths=True)
    known = next((d for d in theirs if d in older), None)
    if known is not None:
        # written before the inputs (or the clusters file) were part of a job, or while the checkpoint's
        # path was: the same generator and options, taken as this job (outputs without input
        # fingerprints are kept by name and size)
        if prev.get("digest"):
            older[prev["digest"]] = older[known]
        kept.extend([*recorded, *([prev["digest"]] if prev.get("digest") else [])])
        older.update({d: None for d in recorded})
        said = [f"{out / JOB_FILE} {older[known]}"] if older[known] else []
        notes.extend(said + [n for n in [_moved_note(out, prev, ident)] if n])
        return None
    diff = _identity_diff(prev, ident)
    moved = _moved_folders(prev, ident, diff) if src is not None else []
    why_not = None
    if moved and prev.get("digest"):
        # the same job over the same files at another path: its lines count, under its digest(s)
        jobs = {prev["digest"], *recorded}
        why_not = _moved_files_differ(out, jobs, src, layout, job.num_samples)
        if why_not is None:
            kept.extend(sorted(jobs))
            older.update({d: None for d in jobs})
            where = ", ".join(f"{k} {prev[k]}" for k in moved)
            notes.extend([f"{out / JOB_FILE} names {where}; the files there are the ones its outputs were "
                          "made from (the same names, sizes and modification times): resuming the job "
                          "from the new path"] + [n for n in [_moved_note(out, prev, ident)] if n])
            return None
    if not job.overwrite:
        detail = ", ".join(f"{k}: {prev.get(k)!r} then, {ident.get(k)!r} now" for k in diff[:4])
        moved_why = (f"; it is not this job moved: {why_not}, and a copy that keeps modification times "
                     "(cp -p, rsync -a) resumes" if why_not else "")
        raise InputError(f"--out {out} holds the outputs of another synthesis ({detail or 'unreadable '+JOB_FILE})"
                         f"{moved_why}; rerun with the same checkpoint, inputs and options to resume it, pass "
                         "--overwrite to replace it, or pick another --out")
    # --overwrite empties the previous job's split folders; folders this job writes that were not
    # the previous job's must be empty, as for a folder without a job (a dataset's own splits)
    theirs = set(_previous_dirs(prev, layout))
    taken = [d for d in layout.dirs() if d not in theirs and (out / d).is_dir() and any((out / d).iterdir())]
    if taken:
        raise InputError(f"--out {out} holds {', '.join(taken)}/, which the synthesis there did not write "
                         f"(it wrote {', '.join(sorted(theirs)) or 'other folders'}/): --overwrite would write "
                         "over those files; pick a new or empty --out, or another --out_phase")
    return prev


def _previous_dirs(prev: dict, layout: OutputLayout) -> list[str]:
    """The split folders the job of ``prev`` (a synthesis.json) wrote: from its photo folder
    (``images``: {split}_img, or {split}_B for photo inputs); unknown (an unreadable file): this
    job's."""
    images = prev.get("images") if isinstance(prev, dict) else None
    if not isinstance(images, str) or "/" in images or images in ("", ".", ".."):
        return layout.dirs()
    if images.endswith("_img"):
        return OutputLayout(images[:-len("_img")], photo_inputs=False).dirs()
    if images.endswith("_B"):
        return OutputLayout(images[:-len("_B")], photo_inputs=True).dirs()
    return layout.dirs()


def _inside(out_real: Path, path: Path) -> bool:
    """Whether ``path`` really lies in a sub-folder of OUT (``out_real``: OUT resolved): its folder,
    links resolved, is under OUT. Its own name is not resolved: removing a link removes the link."""
    try:
        return out_real in path.parent.resolve().parents
    except (OSError, RuntimeError):   # a link loop
        return False


def _mark_incomplete(out: Path) -> None:
    """--overwrite, before the previous job's files are removed: its synthesis.json, when it says
    the job is complete (or, written before the state was recorded, says nothing), is rewritten
    (atomically) with ``"complete": false``. The removals take minutes for a large job; a kill
    among them left a folder of some of its files under a synthesis.json that still said
    complete, which `data scan` passed and training took. This job's own synthesis.json replaces
    it once the removals are done."""
    _, prev = _load_json(out / JOB_FILE)
    if isinstance(prev, dict) and prev.get("complete") is not False:
        _write_job_file(out, {}, {**prev, "complete": False})


def _replace_previous(out: Path, prev: dict, layout: OutputLayout) -> str:
    """--overwrite: remove the previous job's files and its manifest, so the folder holds this
    job's outputs only: every file its manifest names, and every file in its split folders, with
    or without a manifest line (a killed run can leave a photo renamed into place before its line
    was written, or a label map written before its photo), then those folders once empty. Only
    files that really lie in OUT are removed: a manifest path that leads out of it through a link,
    and a split folder that is a link or lies elsewhere (not walked), are left. Returns the note
    that says what was removed and what was left."""
    removed, outside, linked = 0, {}, []
    out_real = out.resolve()
    for rec in _read_lines(_manifest_sources(out)):
        for key in ("output", "label", "inst"):
            rel = rec.get(key)
            if isinstance(rel, str) and rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts:
                if not _inside(out_real, out / rel):
                    outside[rel] = None
                    continue
                try:
                    (out / rel).unlink()
                    removed += 1
                except (FileNotFoundError, IsADirectoryError):
                    pass
    dirs = _previous_dirs(prev, layout)
    for d in dirs:
        folder = out / d
        if not folder.is_dir():
            continue
        if folder.is_symlink() or not _inside(out_real, folder / "x"):
            linked.append(d)
            continue
        for p in sorted(folder.rglob("*"), reverse=True):   # files first, then emptied subfolders
            try:
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                else:
                    p.unlink()
                    removed += 1
            except (FileNotFoundError, OSError):
                pass
        try:   # the emptied folder too: this job makes its own again, and an empty split of
            folder.rmdir()   # another --out_phase fails `data scan`
        except OSError:
            pass
    for p in _manifest_sources(out):
        p.unlink(missing_ok=True)
    left = []
    if outside:
        left.append(f"{len(outside)} path(s) its manifest names that lead elsewhere (e.g. {next(iter(outside))})")
    if linked:
        left.append(f"{', '.join(d + '/' for d in linked)} (a link, not followed: move it aside if its "
                    "files should go)")
    walked = ", ".join(d + "/" for d in dirs if d not in linked) or "no folder"
    return (f"--overwrite: removed {removed} file(s) of the previous synthesis in {out} (the files its "
            f"manifest names and everything else in {walked})"
            + (f"; left {' and '.join(left)}: only files in its sub-folders, links resolved, are removed"
               if left else ""))


def _needs(synth: Synthesizer) -> tuple[bool, bool]:
    cfg = synth.cfg
    needs_inst = cfg.label_nc > 0 and (not cfg.no_instance or cfg.instance_feat)
    needs_image = synth.features is not None and synth.features.mode == "encoded"
    return needs_inst, needs_image


def _no_inst_note(cfg) -> str:
    """What a run that reads instance maps does with none (--input without --inst): the label
    map stands in for them, so instances are whole classes."""
    said = []
    if not cfg.no_instance:
        said.append("instance boundaries are taken from the label map (class borders only: touching "
                    "objects of one class get no boundary between them)")
    if cfg.instance_feat:
        said.append("--instance_feat features are per class instead of per instance (all pixels of a "
                    "class share one feature)")
    return "no --inst folder: " + "; ".join(said)


def _unused_inst_note(job: SynthesisJob, cfg) -> str:
    """What happens to an --inst folder the generator does not read (a --no_instance run without
    --instance_feat, or photo inputs)."""
    if cfg.label_nc == 0:
        return f"--inst {job.inst} is not used: this run's generator reads photos (label_nc 0), not instance maps"
    split = OutputLayout(job.split, photo_inputs=False).inst_dir
    return (f"--inst {job.inst}: this run was trained with --no_instance (and without --instance_feat), so its "
            f"generator reads no instance maps; they are only copied to {Path(job.out) / split}/")


def _check_samples(job: SynthesisJob, synth: Synthesizer) -> None:
    """K > 1 samples of a generator that draws nothing would be K copies: refused, naming what
    makes it draw nothing (so the fix it gives is the one that applies)."""
    if job.num_samples == 1:   # (>= 1: _checked_job)
        return
    f = synth.features
    varies = synth.has_dropout or (f is not None and (f.mode == "sample" or
                                                      (f.mode == "cluster" and isinstance(f.cluster, dict))))
    if not varies:
        # the checkpoint's config says whether G has dropout (pix2pix's and CycleGAN's, unless trained
        # with --no_dropout); a G that has it and draws none had it switched off for this job
        cfg, k = synth.cfg, job.num_samples
        trained_without = cfg.model in ("pix2pix", "cyclegan") and bool(cfg.no_dropout)
        fix = "use --num_samples 1"
        if f is not None:
            why = ("its features come from the real photos (--feature_mode encoded)" if f.mode == "encoded"
                   else "every class takes the --cluster given")
            fix += ", or --feature_mode sample"
        elif trained_without:
            why = ("it was trained with --no_dropout" + (", CycleGAN's default" if cfg.model == "cyclegan" else "")
                   + ": it has no randomness to sample")
        elif cfg.model not in ("pix2pix", "cyclegan"):   # pix2pixHD's G has no dropout
            why = "it has no feature encoder and no dropout"
        elif not isinstance(synth.G, torch.nn.Module):
            why = "the ONNX export has no dropout"
            fix += ", or --backend torch to sample with its dropout"
        else:
            why = "--no_test_dropout switches its dropout off"
            fix = (f"drop --no_test_dropout (and --eval, which sets it) to sample {k} photos per map, or use "
                   "--num_samples 1")
        raise ConfigError(f"--num_samples {k}: this generator gives one image per map ({why}), so the samples "
                          f"would be identical; {fix}")


def _collisions(stems: list[str], files: list[str], max_listed: int = 5) -> None:
    """Two inputs with one output name would overwrite each other: refused before any work."""
    seen: dict[str, str] = {}
    clash = []
    for stem, f in zip(stems, files):
        if stem in seen:
            clash.append(f"{seen[stem]} and {f} both become {stem}.png")
        else:
            seen[stem] = f
    if clash:
        more = f"\n  ... and {len(clash) - max_listed} more" if len(clash) > max_listed else ""
        raise InputError(f"{len(clash)} pair(s) of inputs would be written to the same output file "
                         "(outputs are named by stem, Cityscapes suffixes removed):\n  "
                         + "\n  ".join(clash[:max_listed]) + more + "\nrename one of each pair")


@dataclass
class _Unit:
    item: dict
    k: int
    name: str
    seed: int


def run_synthesis(synth: Synthesizer, job: SynthesisJob, *, identity: dict | None = None,
                  dist_info=None) -> SynthesisReport:
    """Synthesize ``job`` (see :func:`_run_synthesis`), with Pillow's DecompressionBombWarning
    ignored for the job's length: a map above its warning limit is one note naming the file
    (:func:`_noting_large_images`). One catch_warnings for the job, entered before its threads start
    and left after they end."""
    # a Python caller's wrong argument: one line naming it, not an AttributeError from deep inside
    if not isinstance(synth, Synthesizer):
        raise ConfigError(f"run_synthesis: synth is {_type_name(synth)}; pass a Synthesizer of the generator: "
                          "generator, cfg = load_generator(RUN); Synthesizer(generator, cfg)")
    if not isinstance(job, SynthesisJob):
        raise ConfigError(f"run_synthesis: job is {_type_name(job)}; pass a SynthesisJob: "
                          "SynthesisJob(out=Path(OUT), input=Path(LABELS))"
                          + (" (a dict of its fields: SynthesisJob(**d))" if isinstance(job, dict) else ""))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        return _run_synthesis(synth, job, identity=identity, dist_info=dist_info)


def _type_name(value) -> str:
    """``value``'s type as an error names it: 'a dict', 'None', 'a GlobalGenerator'."""
    return "None" if value is None else f"a {type(value).__name__}"


# SynthesisJob's int fields, each with its least value (None: any) and what it means; synthesize.py
# checks its options of the same names with check_job_int too (scale_width there through
# resolve_scale_width), before the generator loads.
JOB_INTS = {"how_many": (0, "0 = all"), "workers": (0, "0 = decode in the main process"),
            "writers": (0, "PNG writing threads; 0 = 1"), "batch_size": (1, "maps per generator call"),
            "num_samples": (1, "photos per map"), "seed": (None, "the seed of sampled features and dropout"),
            "scale_width": (0, "0 keeps each map's size")}


def check_job_int(name: str, value: int) -> None:
    """synthesize.py's error for ``value`` of the int field ``name`` below its least value (JOB_INTS)."""
    lo, means = JOB_INTS[name]
    if lo is not None and value < lo:
        raise ConfigError(f"--{name} {value}: must be >= {lo} ({means})")


def _checked_job(job: SynthesisJob) -> SynthesisJob:
    """``job`` with its int fields checked as synthesize.py checks its options: of another integer
    type (numpy's ``np.int64``), an int in a copy (the manifest records them as JSON); not an integer
    (``batch_size="4"``), a ConfigError naming the field; below its least value (``how_many=-1``,
    which read as "all"), synthesize.py's error."""
    import dataclasses
    import numbers
    changes = {}
    for name, (_, means) in JOB_INTS.items():
        v = getattr(job, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ConfigError(f"SynthesisJob {name}={v!r}: must be an int ({means}; synthesize.py's --{name})")
        check_job_int(name, v)
        if type(v) is not int:
            changes[name] = int(v)
    return dataclasses.replace(job, **changes) if changes else job


def _run_synthesis(synth: Synthesizer, job: SynthesisJob, *, identity: dict | None = None,
                   dist_info=None) -> SynthesisReport:
    """Synthesize ``job`` with ``synth`` on this rank (``dist_info``: pix2pixhd.distributed's
    DistInfo under torchrun; None = one process). ``identity``: what the manifest records about
    the generator (checkpoint path and sha256, generator key, backend...); see ``job_identity``.
    ``job.strict``: a job that skipped inputs raises InputsSkippedError once it is complete.

    SIGTERM stops the run after the images in flight are written, with one line on stderr (under
    torchrun one per rank: every rank stops once any rank got it; the line tells the rank's images
    from the job's) and SystemExit(75), the status training uses for it (a rerun resumes); SIGINT
    (Ctrl-C) the same way where Python's default handler was in place, raising
    :class:`SynthesisInterrupted` (a KeyboardInterrupt) instead, with no line: synthesize.py says
    its line and exits with 130 (``_SignalStop``). Under torchrun SIGTERM ended
    each rank at once, and the decoding workers of a rank killed while it fetched a batch printed
    the broken hand-over's traceback, then outlived it for seconds. Its handler is in place from
    here on: a SIGTERM
    while the job is prepared (inputs listed, the manifest read, --overwrite's removals: minutes
    for a large job) stops it the same way once the preparation is done, before any output (it
    ended the process with status 143 and no line);
    one during the final merge lets the job complete, and is then passed on to the handler
    run_synthesis found for it (a Python caller's own, which would otherwise never hear of it);
    a SIGINT then raises SynthesisInterrupted with ``stopped`` False and the complete job's report
    (synthesize.py prints its summary and exits with 0, as after a SIGTERM there: Python's
    default handler raised a bare KeyboardInterrupt, which ended the command with status 130
    and no summary of the job it had completed)."""
    from pix2pixhd import distributed
    info = dist_info if dist_info is not None else distributed.DistInfo(device=synth.device)
    stop = _SignalStop()
    stop.install()
    try:
        report = _prepare_and_run(synth, job, identity, info, stop)
    finally:
        stop.restore()
    if stop.signum == signal.SIGINT:   # too late to stop this job: it is complete
        raise SynthesisInterrupted(f"Ctrl-C (SIGINT) came during the final merge, too late to stop the job: it is "
                                   f"complete in {job.out}", report, stopped=False)
    previous = stop.previous.get(stop.signum)
    if stop.signum is not None and callable(previous):   # too late to stop this job
        previous(stop.signum, None)
    return report


def _prepare_and_run(synth: Synthesizer, job: SynthesisJob, identity: dict | None, info,
                     stop: "_SignalStop | None") -> SynthesisReport:
    """run_synthesis's work: the checks, the folder prepared (and locked by rank 0), then _run_job."""
    from pix2pixhd.errors import raise_on_any_rank
    rank, world = info.rank, info.world_size
    job = _checked_job(job)
    if (job.input is None) == (job.dataroot is None):
        raise ConfigError("give either --input (a folder of maps) or --dataroot (a dataset root), not "
                          + ("both" if job.input is not None else "neither"))
    _check_samples(job, synth)
    cfg = synth.cfg
    needs_inst, needs_image = _needs(synth)
    if needs_image and job.input is not None and job.real is None:
        raise ConfigError("--feature_mode encoded needs --real FOLDER: the photos E encodes")
    notes: list[str] = []   # said once the job starts (after every check and the lock)
    if needs_inst and job.input is not None and job.inst is None:
        notes.append(_no_inst_note(cfg))
    if job.inst is not None and not needs_inst:
        notes.append(_unused_inst_note(job, cfg))
    Source = FolderSource if job.input is not None else DatasetSource
    src = Source(job, cfg, needs_inst=needs_inst, needs_image=needs_image)
    if job.real is not None:
        src.check_real_sizes()
    if job.scale_width:
        src = Rescaled(src, job.scale_width)
    else:
        notes += _input_size_notes(src, cfg)
    _collisions(src.stems, src.files)
    layout = OutputLayout(job.split, photo_inputs=cfg.label_nc == 0)
    identity = dict(identity or {"checkpoint": None})
    clusters = _clusters_sha256(synth)
    if clusters is not None and _CLUSTERS_KEY not in identity:
        identity[_CLUSTERS_KEY] = clusters
    ident = job_identity(job, identity, layout, reads_real=needs_image)
    _agree_on_job(ident, job, src, info)
    out = Path(job.out)
    older: dict = {}   # this job's digests in the folder's older synthesis.json (its lines count)
    kept: list[str] = []
    prev = _check_out_folder(job, ident, layout, notes, older, kept, src)
    if prev is None and job.how_many > 0:
        _check_how_many(job, src, layout, ident, older)
    classes = _output_classes(job, cfg, notes)
    if src.ignored:
        notes.append(_ignored_note(src))
    no_clusters = getattr(synth.features, "missing_clusters_note", None)
    if no_clusters is not None and (note := no_clusters()):   # every rank: it also quiets the per-batch note
        notes.append(note)

    # rank 0 locks and prepares the folder; the others wait, and stop too if it could not
    lock = OutLock(out) if rank == 0 else None
    created = False   # whether this run made OUT, or found it empty (an early stop empties it again)
    was_there = out.is_dir()
    err, state, recorded, marked = None, None, None, True
    if rank == 0:
        try:
            created = not was_there or not any(out.iterdir())
            taken_over = lock.acquire(ident["digest"])
            if taken_over:
                notes.insert(0, taken_over)
            if prev is not None:
                _mark_incomplete(out)   # before its first file goes
                notes.append(_replace_previous(out, prev, layout))
            from pix2pixhd.checkpoint import atomic_write_bytes, clean_stale_tmp
            clean_stale_tmp(out)   # the lock is ours: no other job has writes in flight here
            for d in layout.dirs():
                if d != layout.inst_dir or src.has_inst:   # an empty {phase}_inst/ would fail scan
                    (out / d).mkdir(parents=True, exist_ok=True)
            if prev is None:   # this job's state as an earlier run left it
                recorded = _load_json(out / JOB_FILE)[1]
            state = _job_state(job, src, info, kept)
            # complete: false until the last output is in; a complete job's rerun leaves its
            # synthesis.json as it is until _run_job finds work (most such reruns have none)
            marked = not _recorded_complete(recorded, ident)
            if marked:
                _write_job_file(out, ident, state)
            if classes is not None:
                atomic_write_bytes(out / CLASSES_FILE, classes)
        except Exception as e:   # reported on every rank by raise_on_any_rank
            err = e
    try:
        raise_on_any_rank(err, info)   # a collective under torchrun: every rank stops, or none
        if rank == 0:
            for n in notes:
                print(printable(f"note: {n}"), file=sys.stderr, flush=True)
        return _run_job(synth, job, src, layout, ident, info, older, state, recorded, stop, marked=marked)
    except _WrongInputs as e:
        gone = ""
        if rank == 0 and created:   # under torchrun every rank stopped (raise_on_any_rank): none writes
            lock.release()
            if was_there:   # an empty folder the user made: emptied, kept
                for p in out.iterdir():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink()
                gone = f"; what it had put in {out} was removed again"
            else:
                shutil.rmtree(out, ignore_errors=True)
                gone = f"; {out} was made for this run and removed again"
        raise InputError(f"{e}{gone}") from None
    finally:
        if lock is not None:
            lock.release()


# job_identity's keys that are synthesize.py options of the same name (named --KEY when they differ)
_OPTION_KEYS = ("input", "inst", "real", "dataroot", "phase", "direction", "seed", "num_samples",
                "scale_width", "backend", "precision", "feature_mode", "cluster", "out", "how_many",
                "overwrite")


def _agree_on_job(ident: dict, job: SynthesisJob, src, info) -> None:
    """Under torchrun (a collective: every rank calls it), before any work: every rank's job must
    be rank 0's (its identity, digest included, but the checkpoint's path, which may differ
    between machines, and its --out, --how_many, --overwrite and input count), else every rank
    stops with one ConfigError naming what differs. Ranks started with other options would write
    under two digests, and the merge would keep one rank's manifest lines only."""
    if info is None or not info.distributed:
        return
    mine = {k: v for k, v in ident.items() if k not in _PATH_KEYS}
    mine.update(out=str(Path(job.out).resolve()), how_many=job.how_many, overwrite=job.overwrite,
                n_inputs=len(src))
    from pix2pixhd.distributed import differing_keys, gather_all
    seen = gather_all(mine, info)
    first = seen[0]
    for r, theirs in enumerate(seen):
        diff = differing_keys(first, theirs, skip=("digest",))
        if theirs.get("digest") != first.get("digest") or diff:
            said = "; ".join(f"{'--' + k if k in _OPTION_KEYS else k} {first.get(k)!r} on rank 0, "
                             f"{theirs.get(k)!r} on rank {r}" for k in diff[:4]) or "the job digest"
            more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
            raise ConfigError(f"the ranks' options differ ({said}{more}): every rank must run the same "
                              "synthesis (one command line under torchrun, the same checkpoint and input "
                              "files on every machine); stopped before anything was written")


def _complete_lines(out: Path, jobs, damaged: list | None = None, outputs=None
                    ) -> dict[str, tuple[int, list | str, tuple, str | None]]:
    """The ok manifest lines of ``jobs`` (digests) in ``out``, by output: (its size, the
    fingerprint of its inputs, "legacy" for lines that predate fingerprints, its label and
    instance partners with their sizes, and the sha256 of its real photo: --feature_mode encoded,
    None for other jobs and for lines that predate it). Damaged lines go to ``damaged``.
    ``outputs``: only the lines of these outputs (a set of names, or a _HashSet; None: all), a
    torchrun rank's share, so that no rank holds the whole job's lines. A mapping (:class:`_Done`:
    get, pop, len as a dict's), stored compactly: a rerun's scan holds every complete output's."""
    done = _Done()
    for rec in _read_lines(_manifest_sources(out), damaged):
        if (rec.get("job") in jobs and rec.get("status") == "ok"
                and (outputs is None or rec["output"] in outputs)):
            partners = tuple((rec[key], rec.get(f"{key}_bytes")) for key in ("label", "inst")
                             if isinstance(rec.get(key), str))
            real = rec.get("real_sha256")
            done.add(rec["output"], (rec.get("bytes", -1), rec.get("inputs", "legacy"), partners,
                                     real if isinstance(real, str) else None))
    return done.freeze()


def _identity_diff(prev: dict, ident: dict) -> list[str]:
    """The identity keys whose values differ between ``prev`` (the folder's synthesis.json) and
    this job's ``ident`` (the state and the digest left out)."""
    return sorted(k for k in set(prev) | set(ident)
                  if k != "digest" and k not in _STATE_KEYS and prev.get(k) != ident.get(k))


def _moved_folders(prev: dict, ident: dict, diff: list[str]) -> list[str]:
    """The input folders (``_FOLDER_KEYS``) that alone tell ``prev`` (the folder's synthesis.json)
    from this job (``diff``: _identity_diff): each given at another path, the rest of the identity
    the same (the checkpoint's path aside, which is not in the digest). Empty when anything else
    differs, or when a folder was given then and not now, or the other way round."""
    diff = [k for k in diff if k not in _PATH_KEYS]
    if not diff or any(k not in _FOLDER_KEYS or not isinstance(prev.get(k), str) or ident.get(k) is None
                       for k in diff):
        return []
    return diff


_MOVED_COMPARED = 8   # inputs of a moved job compared byte for byte with their copies in OUT


def _same_bytes(a, b: Path) -> bool:
    """Whether file ``a`` (an input) is not shown to differ from ``b`` (its partner in OUT): True
    unless both can be read, have one size, and differ (a partner converted on the way, to
    another size, or missing, proves nothing)."""
    import filecmp
    try:
        if a is None or os.path.getsize(a) != b.stat().st_size:
            return True
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return True


def _same_sha256(path, digest: str) -> bool:
    """Whether file ``path`` (a real photo, which has no copy in OUT) has the sha256 its output's
    manifest line recorded; False when it cannot be read."""
    try:
        return path is not None and file_sha256(path) == digest
    except OSError:
        return False


def _moved_files_differ(out: Path, jobs, src, layout: "OutputLayout", K: int) -> str | None:
    """Why the inputs ``src`` (at the new paths) are not the files the job of ``jobs`` (its
    digests) read, or None when they are: every complete output (an ok manifest line) of an input
    still listed has inputs of the name, size and modification time its line recorded, and at
    least one does (or the job has no complete output yet, and there is nothing to keep). Name,
    size and modification time can match for other files (maps of one size written in the same
    clock tick): the first ``_MOVED_COMPARED`` matches are also compared byte for byte with their
    copies in OUT (the label and instance partners, where they are copies: the same size), and
    their real photos (--feature_mode encoded; no copy in OUT) with the sha256 their lines record
    (lines written before it was recorded: not compared)."""
    done = _complete_lines(out, jobs)
    if not done:
        return None
    matched = differ = compared = 0
    for i, stem in enumerate(src.stems):
        fp = None
        for k in range(K):
            rec = done.pop(f"{layout.image_dir}/{OutputLayout.name(stem, k, K)}", None)
            if rec is None:
                continue
            if fp is None:
                files = src.input_files(i)
                fp = input_fingerprint(files)
                same = rec[1] == fp
                if same and compared < _MOVED_COMPARED:
                    compared += 1
                    same = all(_same_bytes(f, out / rel) for f, (rel, _) in zip(files, rec[2]))
                    if same and rec[3] is not None and src.needs_image:   # the real photo: last
                        same = _same_sha256(files[-1], rec[3])
            matched, differ = (matched + 1, differ) if same else (matched, differ + 1)
    if differ:
        return (f"{differ} of its {differ + matched + len(done)} complete output(s) were made from other "
                "files of those names (another size, modification time or contents)")
    if not matched:
        return f"none of the inputs of its {len(done)} complete output(s) is there"
    return None


def _check_how_many(job: SynthesisJob, src, layout: "OutputLayout", ident: dict, older: dict) -> None:
    """Refuse a ``--how_many`` that covers fewer inputs than this job already has in ``out``
    (its synthesis.json's ``n_inputs``, or outputs in its manifest beyond this run's): the run
    would mark a folder complete that holds a partial job (read-only: every rank runs it)."""
    out = Path(job.out)
    said = None
    try:
        recorded = loads_json((out / JOB_FILE).read_text()).get("n_inputs")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, int) and recorded > len(src) + len(getattr(src, "broken", [])):
        said = f"its {JOB_FILE} records {recorded} inputs"
    if said is None and len(src) >= job.how_many:   # the input list was cut to --how_many
        K, jobs = job.num_samples, {ident["digest"], *older}
        mine = {f"{layout.image_dir}/{OutputLayout.name(stem, k, K)}" for stem in src.stems for k in range(K)}
        extra = {rec["output"] for rec in _read_lines(_manifest_sources(out))
                 if rec.get("job") in jobs and rec.get("output") and rec["output"] not in mine}
        if extra:
            said = f"its manifest holds {len(extra)} output(s) of inputs after the first {job.how_many}"
    if said is not None:
        raise InputError(f"--how_many {job.how_many}: --out {out} holds a larger part of this job ({said}), "
                         "which this run would leave undone and mark complete; rerun without --how_many "
                         "(or with one at least as large) to resume it, or pick another --out")


def _marked_complete_note(out: Path, recorded, done: int, todo: list) -> str | None:
    """What a rerun says when ``recorded`` (the folder's synthesis.json before it) marked the job
    complete with fewer outputs (``n_outputs``) than ``done`` of its outputs are complete here,
    while ``todo`` are still to do: versions before the --how_many check (_check_how_many) did
    that on a rerun with a smaller --how_many, and scan and training then took the partial folder
    as a finished dataset. The run completes it and records the whole job."""
    if not isinstance(recorded, dict) or recorded.get("complete") is not True:
        return None
    n = recorded.get("n_outputs")
    if not isinstance(n, int) or isinstance(n, bool) or done <= n:
        return None
    missing = sum(len(ks) for _, ks in todo)
    return (f"{out / JOB_FILE} marked this job complete with {n} output(s), but {done} of its outputs are "
            f"in {out} and {missing} are not: an older synthesize.py rerun with a smaller --how_many marked "
            "the partial folder complete; synthesizing the missing outputs (the job is complete once they "
            "are in)")


class _WrongInputs(InputError):
    """The first inputs were all skipped for one reason and nothing was written (EARLY_STOP)."""


def _job_state(job: SynthesisJob, src, info, older_digests=()) -> dict:
    """synthesis.json's state of the job at its start (``_STATE_KEYS``): not complete, its
    input and output counts, and what resumes it: the command line (``job.command``, else
    synthesize.py's, pix2pixhd-synthesize's or `python -m pix2pixhd synthesize`'s sys.argv; not under torchrun, whose command a rank does not see) with its
    working directory, and the rank count; and the digests of the folder's older synthesis.json
    files taken as this job (``older_digests``, see _check_out_folder), when there are any."""
    command = job.command
    if command is None and not info.distributed and sys.argv:
        name = os.path.basename(sys.argv[0])
        if name == "synthesize.py":
            command = shlex.join([sys.executable, *sys.argv])
        elif name == "pix2pixhd-synthesize":   # the installed console script
            command = shlex.join(sys.argv)
        elif name == "__main__.py" and sys.argv[1:2] == ["synthesize"]:   # python -m pix2pixhd synthesize
            command = shlex.join([sys.executable, "-m", "pix2pixhd", *sys.argv[1:]])
    return {"complete": False, "n_inputs": len(src) + len(getattr(src, "broken", [])),
            "n_outputs": len(src) * job.num_samples, "command": command,
            "cwd": os.getcwd() if command else None, "ranks": info.world_size,
            **({"older_digests": sorted(set(older_digests))} if older_digests else {})}


def _recorded_complete(recorded, ident: dict) -> bool:
    """Whether ``recorded`` (the folder's synthesis.json before this run; None when it is
    another job's, replaced) marks this very job (``ident``'s digest) complete. Its rerun does
    not rewrite it with ``"complete": false`` before it knows there is work: a no-op rerun (a
    requeue, a pipeline's "make sure it is done" step) took seconds to minutes for a large job
    to find none, and meanwhile training and `data scan` refused the finished dataset as
    incomplete; killed in that time, it left it so."""
    return (isinstance(recorded, dict) and recorded.get("complete") is True
            and recorded.get("digest") == ident["digest"])


def _write_job_file(out: Path, ident: dict, state: dict) -> None:
    """OUT/synthesis.json: the job's identity and its state, written atomically."""
    from pix2pixhd.checkpoint import atomic_write_bytes
    atomic_write_bytes(out / JOB_FILE, json.dumps({**state, **ident}, indent=1, sort_keys=True).encode())


def _run_job(synth: Synthesizer, job: SynthesisJob, src, layout: "OutputLayout", ident: dict,
             info, older: dict | None = None, state: dict | None = None,
             recorded: dict | None = None, stop: "_SignalStop | None" = None, *,
             marked: bool = True) -> SynthesisReport:
    """run_synthesis once the folder is prepared (and locked by rank 0): what is done, this
    rank's shard, the merge (not at a stop). ``older``: see _check_out_folder. ``state`` (rank 0):
    synthesis.json's state, rewritten at the end with the counts (complete when the run was not stopped).
    ``recorded`` (rank 0): the synthesis.json this run replaced, for _marked_complete_note.
    ``stop``: run_synthesis's SIGTERM flag (this rank's), installed by it. ``marked`` (rank 0):
    whether synthesis.json already says ``state`` (not complete); False for a complete job's rerun
    (_recorded_complete), which writes it here once there is work, before any rank writes an output."""
    from pix2pixhd import distributed
    from pix2pixhd.errors import raise_on_any_rank
    rank, world = info.rank, info.world_size
    out = Path(job.out)
    # what is complete already (every rank reads the files before any rank appends): an ok
    # line of this job whose file has the recorded size and whose inputs still have the recorded
    # fingerprint (an input replaced or edited since is redone)
    # Lines of an older synthesis.json of this job (``_legacy_digests``) count too; those older than
    # input folders in the identity carry no fingerprint: kept by name and size, as that version did.
    older = _legacy_digests(ident) if older is None else older
    jobs = {ident["digest"], *older}
    # Its label and instance partners must be there too, with their recorded sizes (lines that
    # record none: any size), else the output is redone with them.
    damaged: list[tuple[Path, int, str]] = []
    K = job.num_samples
    report = SynthesisReport()
    # Under torchrun each rank checks its share of the inputs (every world-th, in input order) and
    # the ranks exchange what is still to do (_todo_of_all_ranks): every rank stat'ing every
    # output, its partners and its inputs was world times the metadata operations on a shared
    # file system (and world times the lines held), for one answer that each rank then cut to its shard.
    share = range(rank, len(src.stems), world)
    mine_out = (_HashSet(f"{layout.image_dir}/{OutputLayout.name(src.stems[i], k, K)}" for i in share for k in range(K))
                if info.distributed else None)
    todo = _Todo(K=K)
    err = None
    try:
        done = _complete_lines(out, jobs, damaged, mine_out)
        del mine_out
        for i in share:
            stem, ks, fp = src.stems[i], [], None
            for k in range(K):
                rel = f"{layout.image_dir}/{OutputLayout.name(stem, k, K)}"
                size, inputs, partners, _ = done.get(rel, (None, None, (), None))
                if size is not None and _size_on_disk(out / rel) == size and all(
                        _size_on_disk(out / p) == n if isinstance(n, int) else _size_on_disk(out / p) >= 0
                        for p, n in partners):
                    if fp is None:   # stat the inputs only for outputs that may be complete
                        fp = input_fingerprint(src.input_files(i))
                    if inputs == fp or inputs == "legacy":
                        report.already_done += 1
                        continue
                ks.append(k)
            if ks:
                todo.append(i, ks)
        del done
    except Exception as e:   # reported on every rank by raise_on_any_rank (none waits in the exchange)
        err = e
    # a collective on every rank: also the barrier before any rank appends to its part
    raise_on_any_rank(err, info, "failed while checking which outputs are complete")
    if info.distributed:
        todo, report.already_done = _todo_of_all_ranks(todo, report.already_done, K, info)
    if rank == 0 and damaged:
        p, n, why = damaged[0]
        print(printable(f"note: {len(damaged)} manifest line(s) in {out} are damaged (first: {p} line {n}: {why}) "
                        "and ignored, as a line cut short by a kill is: outputs without a readable line are "
                        "synthesized again"), file=sys.stderr, flush=True)
    if rank == 0 and todo and (note := _marked_complete_note(out, recorded, report.already_done, todo)):
        print(printable(f"note: {note}"), file=sys.stderr, flush=True)
    err = None
    if rank == 0 and todo and not marked and state is not None:
        try:   # a complete job's rerun with work: marked incomplete now, before any output goes
            _write_job_file(out, ident, state)
            marked = True
        except Exception as e:   # reported on every rank by raise_on_any_rank
            err = e
    raise_on_any_rank(err, info)   # a collective on every rank, work or not: none writes before it
    mine = todo[rank::world]
    manifest = _Manifest(out / PARTS / f"rank{rank:05d}.jsonl")
    common = {"job": ident["digest"], "checkpoint": ident.get("checkpoint"),
              "checkpoint_sha256": ident.get("checkpoint_sha256"), "rank": rank}
    skip_lines = _SkipLines(out)
    for p, msg in getattr(src, "broken", []):   # broken symlinks among the inputs
        if rank == 0:
            skip_lines.say(str(p), msg)
            report.skipped_inputs.append((str(p), msg))
            report.skipped += 1
            manifest.add({**common, "input": _under(src.abs_root, src.root, p), "output": None,
                          "status": "skipped", "reason": msg})
    err = None
    try:
        _stream(synth, job, src, layout, mine, manifest, common, report, rank,
                stop=stop, early_stop=not report.already_done, dist_info=info, n_todo=len(todo),
                skip_lines=skip_lines,
                generator_name=(f"the ONNX generator {ident['onnx']}" if ident.get("onnx") else
                                f"the checkpoint {ident['checkpoint']}" if ident.get("checkpoint") else None))
    except Exception as e:   # re-raised below, after the other ranks know (none waits forever)
        err = _worker_death_error(e)
    finally:
        try:
            manifest.close()
        except OutputWriteError as e:   # a full disk: told on every rank, as a writer's error
            err = err or e
        report.written = manifest.ok
    raise_on_any_rank(err, info, "failed while synthesizing its shard")

    # read once: a signal after this lets the job complete (the ranks agree on this value)
    own = stop.signal if stop is not None else None   # this rank's: 'SIGTERM', 'SIGINT' or None
    stopped, peers = own is not None, None
    mine = report.written   # this rank's images of this run (its part's lines); below, the job's
    if info.distributed:   # totals over ranks; all_reduce is also the barrier before the merge
        # (already_done is not summed: every rank holds the whole count, _todo_of_all_ranks);
        # stopped when any rank was: rank 0 must not merge, nor mark complete, a job a rank left
        t = torch.tensor([report.written, report.skipped, own == "SIGTERM", own == "SIGINT"],
                         dtype=torch.float64, device=info.device)
        torch.distributed.all_reduce(t)
        report.written, report.skipped, n_term, n_int = (int(v) for v in t.tolist())
        stopped = n_term + n_int > 0
        peers = "SIGINT" if n_int else "SIGTERM"   # SIGINT over SIGTERM, as training's stop
        distributed.barrier(info)
    if rank == 0:
        if not stopped:   # a stop leaves the parts to the run that completes the job: the merge's
            # time grows with the job, and a scheduler's grace period after its SIGTERM does not
            report.manifest = (out / MANIFEST if _nothing_to_merge(out, report, damaged)
                               else merge_manifest(out, ident["digest"], older))
        if state is not None:   # the last output is in, unless stopped (a complete job's rerun
            # stopped before it found work, not marked incomplete, stays complete)
            _write_job_file(out, ident, {**state, "complete": not stopped or not marked,
                                         "n_written": report.written + report.already_done,
                                         "n_skipped": report.skipped})
    if stopped:
        _stop(own, peers, mine, report, out, info)
    if job.strict and report.skipped:   # every rank: the counts are the job's (summed above)
        complete = report.written + report.already_done
        raise InputsSkippedError(
            f"--strict: {report.skipped} output(s) of this job were skipped, their inputs not synthesized "
            f"({_skipped_inputs_named(report, info)}), so the exit status is {SKIPPED_EXIT_STATUS}; the {complete} "
            f"complete output(s) are kept and {out / JOB_FILE} marks the job complete. Fix those inputs (or take "
            "them out of the input folder) and rerun the same command: it synthesizes what is not complete", report)
    return report


# inputs a --strict job's last line names (the rest are counted): the line stays one line
STRICT_NAMED = 3


def _skipped_inputs_named(report: SynthesisReport, info) -> str:
    """The skipped inputs of this run, for --strict's line: how many, and the first
    :data:`STRICT_NAMED` by name (under torchrun gathered from every rank: a collective, called on
    every rank once the job's skip count, the same on each, is known). The line named
    manifest.jsonl's "skipped" lines instead, which also keep the skipped inputs of earlier runs
    that the input folder no longer holds (synthesis.json's n_skipped 0, the manifest's line still there)."""
    from pix2pixhd.distributed import gather_all
    seen = gather_all((len(report.skipped_inputs), [n for n, _ in report.skipped_inputs[:STRICT_NAMED]]), info)
    n = sum(k for k, _ in seen)
    names = sorted(name for _, first in seen for name in first)[:STRICT_NAMED]   # as the inputs sort
    listed = ", ".join(names) + (f" and {n - len(names)} more" if n > len(names) else "")
    return printable(f"{n} input(s): {listed}; their reasons on the 'skipped FILE: REASON' lines above")


def _stop(own: str | None, peers: str | None, mine: int, report: SynthesisReport, out: Path, info) -> None:
    """End a stopped run: SIGTERM's line on stderr and SystemExit(75), as training's; SIGINT
    (Ctrl-C) raises SynthesisInterrupted carrying the line, which synthesize.py says, with status
    130 (a Python caller gets the KeyboardInterrupt it expects, and no line naming a command).
    ``own``: the signal this rank got (None: another rank's, ``peers``). ``mine``: the images this
    rank wrote in this run; ``report``: the job's counts (summed over the ranks under torchrun),
    which the line tells apart from this rank's."""
    name = own or peers or "SIGTERM"
    status = INTERRUPTED_EXIT_STATUS if name == "SIGINT" else STOPPED_EXIT_STATUS
    complete = f"{report.written + report.already_done} of the job's outputs are complete in {out}"
    who = own or f"another rank's {name}"
    if info.distributed:
        who += f" (rank {info.rank} of {info.world_size})"
        counts = (f"this rank wrote {mine} of the {report.written} image(s) the job's {info.world_size} ranks "
                  f"wrote in this run; {complete}")
    else:
        counts = complete
    line = (f"stopped by {who} after {mine} image(s); rerun the same command to resume ({counts})"
            + (f"; exit status {status}" if status != STOPPED_EXIT_STATUS else ""))
    if name == "SIGINT":
        raise SynthesisInterrupted(f"stopped by {who} after {mine} image(s) ({counts}); run the same job again "
                                   "to resume", report, line=line)
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(status)


def _todo_of_all_ranks(todo: "_Todo", already_done: int, K: int, info) -> tuple["_Todo", int]:
    """Under torchrun (a collective: every rank calls it), the job's list to do, in input order,
    and its count of complete outputs, from every rank's ``todo`` and ``already_done`` for its
    share of the inputs: the same on every rank, as if each had checked them all. An input with
    all its ``K`` samples to do (every input of a new job) travels as its index alone (8 bytes
    in the array of a :class:`_Todo`)."""
    from pix2pixhd.distributed import gather_all
    seen = gather_all((todo._i, todo._some, already_done), info)
    idx = np.concatenate([np.frombuffer(part, np.int64) for part, _, _ in seen if len(part)] or
                         [np.zeros(0, np.int64)])
    everything = _Todo(K=K)
    everything._i.frombytes(np.sort(idx, kind="stable").tobytes())
    for _, some, _ in seen:
        everything._some.update(some)
    return everything, sum(n for _, _, n in seen)


def _nothing_to_merge(out: Path, report: SynthesisReport, damaged: list) -> bool:
    """Rank 0, after every rank has finished and not stopped: whether manifest.jsonl already is
    what merge_manifest would write, so it is kept as it is: no rank wrote a line in this run
    (nothing written or skipped), manifest.jsonl is there, no manifest line is damaged (the merge
    drops those), and manifest.parts/ holds only empty rank parts (this run's: removed here, with
    the folder). A no-op rerun re-merged and rewrote the whole manifest, with an fsync, in time that
    grows with the job."""
    if report.written or report.skipped or damaged or not (out / MANIFEST).is_file():
        return False
    parts = out / PARTS
    try:
        entries = list(parts.iterdir()) if parts.is_dir() else []
        if any(not (p.name.startswith("rank") and p.name.endswith(".jsonl")) or p.is_symlink()
               or not p.is_file() or p.stat().st_size for p in entries):
            return False   # an earlier run's lines (a stop, a kill), or a killed merge's runs
        for p in entries:
            p.unlink(missing_ok=True)
        if parts.is_dir():
            parts.rmdir()
    except OSError:
        return False   # the merge says what is wrong
    return True


class _SignalStop:
    """SIGTERM or SIGINT (Ctrl-C) to a run (each rank's own under torchrun; torchrun passes on
    the one it got): the handler only records the first; the stream stops taking inputs, the
    writes in flight finish and the decoding workers are shut down, the manifest parts stay
    unmerged, and run_synthesis exits with training's status for a SIGTERM stop (errors.
    STOPPED_EXIT_STATUS, 75) and one line saying what is complete and to rerun the same command to
    resume; for SIGINT it raises SynthesisInterrupted, a KeyboardInterrupt, which synthesize.py
    turns into the same line with errors.INTERRUPTED_EXIT_STATUS (130). A signal after the first
    is ignored while the run stops (as ``python -m pix2pixhd.features`` does). Ctrl-C ended the run
    at once with KeyboardInterrupt's "interrupted" line, which told neither. SIGINT is taken over
    only from Python's default handler (which raises KeyboardInterrupt): ignored on entry (a job a
    script started with ``&``) it stays ignored, and a caller's own handler keeps it. Installed
    only from the main thread (where Python allows handlers)."""

    def __init__(self):
        self.signal: str | None = None   # the first signal's name, 'SIGTERM' or 'SIGINT'
        self.signum: int | None = None
        self._installed = False
        self.previous: dict = {}   # {signum: the handler install() replaced}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._handler)}
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handler)
            self._installed = True

    def _handler(self, signum, frame) -> None:
        if self.signal is None:
            self.signum, self.signal = signum, signal.Signals(signum).name

    def restore(self) -> None:
        if self._installed:
            for s, handler in self.previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
            self._installed = False


def _size_on_disk(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -2


# what an input dataset's classes.json may pass on to the output's: descriptions of the classes and
# ids, never its maker's bookkeeping (written_by, seed, sizes, counts, complete...)
_CLASS_KEYS = ("classes", "void_id", "instance_ids", "palette", "colors")


def _classes_label_nc(meta: dict) -> int | None:
    """The class count a classes.json object describes (its label_nc, else one more than its
    largest class id), or None."""
    if meta.get("label_nc") is not None:
        return int(meta["label_nc"])
    classes = meta.get("classes")
    if isinstance(classes, list) and classes:
        return 1 + max(int(c["id"]) if isinstance(c, dict) else i for i, c in enumerate(classes))
    return None


def _load_json(path: Path):
    try:
        data = path.read_bytes()
        return data, loads_json(data)
    except (OSError, ValueError):
        return None, None


def _output_classes(job: SynthesisJob, cfg, notes: list[str]) -> bytes | None:
    """``OUT/classes.json`` for this job, or None to leave the folder's as it is (read-only: every
    rank runs it). It describes the output dataset: the checkpoint's ``label_nc`` (its ids are
    what the label maps hold), marked ``"written_by": "synthesize.py"``, with the input dataset's
    class names and descriptions (``_CLASS_KEYS``) only when its classes.json (the --dataroot's,
    or the --input folder's parent's) has that label_nc too.

    A classes.json already in OUT that the engine did not write (a dataset synthesized into) is
    never replaced: kept when it describes the checkpoint's label_nc, else refused (its dataset's
    label maps and the new ones would disagree). One the engine wrote (``written_by``), or that an
    older engine copied from the input dataset (same bytes, beside a synthesis.json), is rewritten.
    """
    if cfg.label_nc == 0:
        return None
    out = Path(job.out)
    # a label folder's dataset root is its parent (DATA/test_label -> DATA/classes.json)
    src = (Path(job.dataroot) if job.dataroot is not None else Path(job.input).parent) / CLASSES_FILE
    src_bytes, src_meta = _load_json(src) if src.is_file() else (None, None)
    have = out / CLASSES_FILE
    if have.is_file():
        data, meta = _load_json(have)
        ours = isinstance(meta, dict) and meta.get("written_by") == WRITTEN_BY
        legacy = data is not None and data == src_bytes and (out / JOB_FILE).is_file()
        if not (ours or legacy):
            try:
                n = _classes_label_nc(meta) if isinstance(meta, dict) else None
            except (TypeError, ValueError, KeyError):
                n = None
            if n == cfg.label_nc:
                notes.append(f"kept {have}: it describes {n} classes, as this checkpoint's label maps")
                return None
            what = f"label_nc {n}" if n is not None else "a class list that cannot be read"
            raise InputError(f"--out {out} holds {have} of another dataset ({what}), but this checkpoint "
                             f"writes label ids 0..{cfg.label_nc - 1} (label_nc {cfg.label_nc}): the folder "
                             "would hold maps of two class sets; pick another --out (or remove that "
                             "classes.json if it does not belong there)")
    meta = {"label_nc": cfg.label_nc, "written_by": WRITTEN_BY}
    if isinstance(src_meta, dict):
        try:
            n = _classes_label_nc(src_meta)
        except (TypeError, ValueError, KeyError):
            n = None
        if n == cfg.label_nc:
            meta.update({k: src_meta[k] for k in _CLASS_KEYS if k in src_meta})
            meta["classes_from"] = str(src.resolve())
        else:
            notes.append(f"{src} describes {'label_nc ' + str(n) if n is not None else 'no class count'}, "
                         f"not this checkpoint's {cfg.label_nc} classes: {have} gives label_nc "
                         f"{cfg.label_nc} without its class names")
    return json.dumps(meta, indent=1).encode()


def _stream(synth: Synthesizer, job: SynthesisJob, src, layout: OutputLayout,
            mine: "_Todo", manifest: _Manifest, common: dict,
            report: SynthesisReport, rank: int, *, stop: "_SignalStop | None" = None,
            early_stop: bool = True, dist_info=None, n_todo: int = 0,
            generator_name: str | None = None, skip_lines: "_SkipLines | None" = None) -> None:
    """Decode (workers) → group by size → generator → writer threads, for this rank's inputs.

    ``stop``: when its signal is set, no further input is taken; the batches already sent are
    written. ``early_stop``: the first EARLY_STOP inputs of the shard (all of them, when it has
    fewer) all skipped for one reason, none usable, raise _WrongInputs (their skip lines are held
    back until an input is usable, so a folder of the wrong kind prints one error, not a line per
    file). Under torchrun (``dist_info``) the first EARLY_STOP inputs are the job's (of the
    ``n_todo`` still to do, in input order), not the shard's: each rank holds its share of them,
    and the ranks decide together, once (``agree``), so that they stop only when all of them were
    skipped for one reason and no rank has written anything. ``generator_name``: what the error for a
    non-finite output names (the checkpoint or ONNX file). ``skip_lines``: prints the skip lines
    (the first SKIP_LINES of this process; the manifest holds every one). Inputs read as stored
    while viewers show them otherwise (an EXIF Orientation, frames after the first) are said in
    one note per kind at the end of the shard (:class:`_StoredNotes`)."""
    from tqdm import tqdm

    from pix2pixhd.data import create_dataloader
    from pix2pixhd.data.loader import shutdown_workers
    out, K, B = Path(job.out), job.num_samples, job.batch_size
    units_total = mine.units()
    cuda = synth.device.type == "cuda"
    from pix2pixhd.distributed import process_group_timeout
    # made in the try below (its finally shuts down what was made)
    loader, items, pool, bar = [], iter(()), None, _NoProgress()
    max_pending = max(4 * B, 16)                  # decoded units waiting for a full batch
    max_inflight = max(2 * B, 4 * job.writers)    # outputs handed to writers, not yet written
    slots = threading.BoundedSemaphore(max_inflight)
    futures: deque = deque()
    buckets: dict[tuple, list[_Unit]] = {}
    show = job.progress and rank == 0
    received = 0   # inputs the loader handed over: the next one is what a stalled worker holds
    wait_s = process_group_timeout().total_seconds()   # the most a fetch waits for a worker
    min_side = synth.min_side
    gen0 = synth.generator_seconds
    t0 = time.perf_counter()

    dist = dist_info is not None and dist_info.distributed
    if early_stop and dist:   # this rank's share of the job's first inputs (rank r has every world-th)
        early = len(range(rank, min(EARLY_STOP, n_todo), dist_info.world_size))
    else:
        early = min(EARLY_STOP, len(mine)) if early_stop else 0
    agreed = not (early_stop and dist and n_todo > 0)   # under torchrun: decided by all ranks, once
    said_grey: list[int] = []   # the grey-photo note is said once
    held: list[tuple[str, str]] = []   # skip lines not printed yet: no input has been usable so far
    skip_lines = skip_lines or _SkipLines(out)
    stored = _StoredNotes()

    def flush_held() -> None:
        nonlocal early
        early = 0
        for name_, reason_ in held:
            skip_lines.say(name_, reason_)
        held.clear()

    def agree(verdict) -> None:
        """Under torchrun, every rank once: its verdict on its share of the job's first inputs
        ("usable", its held skips when all were skipped, or "failed"); stop every rank when all
        the shares were skipped for one reason, else go on."""
        nonlocal agreed
        agreed = True
        world = dist_info.world_size
        from pix2pixhd.distributed import gather_all
        verdicts = gather_all(verdict, dist_info)
        if verdict == "failed":
            return
        if all(isinstance(v, list) for v in verdicts):
            first = sorted((p * world + r, n, why) for r, v in enumerate(verdicts) for p, (n, why) in enumerate(v))
            if first and len({_reason_kind(why, n) for _, n, why in first}) == 1:
                raise _WrongInputs(_wrong_inputs_message(job, synth.cfg, src, [(n, why) for _, n, why in first]))
        flush_held()

    def skip(item_i: int, ks, reason: str) -> None:
        name = src.source_name(item_i)
        reason = _without_name(reason, name, src.keys[item_i])
        report.skipped_inputs.append((name, reason))
        if early:
            held.append((name, reason))
            if len(held) >= early and not agreed:
                agree(list(held))
            elif len(held) >= early:
                kinds = {_reason_kind(r, n) for n, r in held}
                if len(kinds) == 1:
                    raise _WrongInputs(_wrong_inputs_message(job, synth.cfg, src, held))
                flush_held()
        else:
            skip_lines.say(name, reason)
        for k in ks:
            report.skipped += 1
            manifest.add({**common, "input": src.record_name(item_i), "key": src.keys[item_i], "sample": k,
                          "seed": sample_seed(job.seed, src.keys[item_i], k),
                          "output": f"{layout.image_dir}/{OutputLayout.name(src.stems[item_i], k, K)}",
                          "status": "skipped", "reason": reason})
        bar.update(len(ks))

    def reap(block: bool = False) -> None:
        while futures and (block or futures[0].done()):
            futures.popleft().result()     # a writer's error (disk full...) stops the run here

    def stack(ts: list[torch.Tensor]) -> torch.Tensor:
        """The batch; on CUDA in pinned memory, so that its copy to the device does not wait
        (pinning each item instead, as the loader's pin_memory does, is lost in the stack)."""
        if not cuda:
            return torch.stack(ts)
        return torch.stack(ts, out=torch.empty((len(ts), *ts[0].shape), dtype=ts[0].dtype, pin_memory=True))

    def run_batch(units: list[_Unit]) -> None:
        n = len(units)
        rows = units + [units[-1]] * (B - n)   # same call shape for every batch (see the module doc)
        # the stacking too is in the try: B rows of one large map can be more than this machine
        # holds (a lone 13000x13000 map's B copies failed the CPU allocator and stopped the job)
        try:
            lab = stack([u.item["label"] for u in rows])
            inst = stack([u.item["inst"] for u in rows]) if rows[0].item["inst"] is not None else None
            image = stack([u.item["image"] for u in rows]) if rows[0].item["image"] is not None else None
            imgs, choices, finite = synth.synthesize(lab, inst, image=image, seeds=[u.seed for u in rows],
                                                     source=src.source_name(units[0].item["i"]), finite_flags=True)
        except Exception as e:   # one size too large for this machine: skip its inputs, go on
            kind = _too_large(e)
            if kind is None:
                raise
            del e
            if cuda:
                torch.cuda.empty_cache()
            h, w = units[0].item["label"].shape[-2:]
            why = _too_large_reason(kind, B, int(h), int(w), synth.cfg)
            by_input: dict[int, list[int]] = {}
            for u in units:
                by_input.setdefault(int(u.item["i"]), []).append(u.k)
            for i, ks in by_input.items():
                skip(i, ks, why)
            return
        imgs, finite = imgs[:n], finite[:n]
        event = None
        if cuda:   # copy out without waiting; the writer waits for the copy's event
            host = torch.empty(imgs.shape, dtype=imgs.dtype, pin_memory=True)
            host.copy_(imgs, non_blocking=True)
            flags = torch.empty(finite.shape, dtype=finite.dtype, pin_memory=True)
            flags.copy_(finite, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(synth.device))   # the copy's device, whichever is current
            imgs, finite = host, flags
        for j, u in enumerate(units):
            slots.acquire()
            futures.append(pool.submit(_write_unit, out, layout, u, imgs[j], None if choices is None else choices[j],
                                       event, manifest, common, src, job, report, slots,
                                       (finite[j], synth, generator_name)))
        bar.update(n)
        reap()

    try:
        # The workers ignore SIGTERM and SIGINT, as training's do: a signal to the whole process
        # group (GNU timeout, SLURM's scancel) killed them, and the run failed on a dead worker
        # instead of stopping with the writes in flight done; they are shut down below. They are
        # forked (iter) before this process starts a thread of its own (the writers, a progress
        # bar's monitor): a lock another thread holds at the fork stays held in the child for ever.
        # A fetch waits at most the process-group timeout (PIX2PIXHD_DIST_TIMEOUT_S): a worker
        # that hands over nothing (alive, so torch waited for ever) stops the job with
        # _LoaderStalledError, where under torchrun the other ranks waited silently in a collective.
        if mine:
            loader = create_dataloader(src, None, shuffle=False, num_workers=job.workers,
                                       sampler=mine.inputs(), pin_memory=False,   # batches are (below)
                                       prefetch_factor=2, ignore_stops=True, timeout=wait_s)
            items = iter(loader)
        pool = ThreadPoolExecutor(max(1, job.writers), thread_name_prefix="synth-writer")
        bar = (tqdm(total=units_total, desc="synthesize") if show and _stderr_is_tty() else
               _LineProgress(units_total, "synthesize") if show else bar)   # tqdm(disable=True) starts a thread
        if not agreed and not early:   # this rank has none of the job's first inputs
            agree([])
        for item in items:
            received += 1
            if stop is not None and stop.signal:
                break   # the batches sent are written (reap below); the rest waits for a rerun
            i = int(item["i"])
            ks = mine.ks(i)
            for note in item.get("notes") or ():   # Pillow's decompression-bomb warning, as a note
                print(printable(f"note: {note}"), file=sys.stderr, flush=True)
            if item["error"] is not None:
                skip(i, ks, item["error"])
                continue
            h, w = item["label"].shape[-2:]
            if min(h, w) < min_side:
                skip(i, ks, f"{w}x{h} is too small for this generator: each side must be at least "
                            f"{min_side} (its downsamplings divide by {synth.multiple}, and its "
                            "bottleneck's instance norm needs more than one pixel); upsample the map")
                continue
            if not agreed:
                agree("usable")   # an input this checkpoint takes: the inputs are of the right kind
            elif held or early:
                flush_held()
            stored.add(src.source_name(i), item)
            if item.get("grey") and not said_grey:
                said_grey.append(i)
                print(printable(f"note: {src.source_name(i)} is a grey image, converted to RGB for this checkpoint "
                                "(label_nc 0, photo inputs) as --dataroot converts it; if it is a label id map, "
                                "use a checkpoint trained on label maps"), file=sys.stderr, flush=True)
            key = (tuple(item["label"].shape), item["label"].dtype, item["inst"] is None, item["image"] is None)
            bucket = buckets.setdefault(key, [])
            for k in ks:
                bucket.append(_Unit(item, k, OutputLayout.name(src.stems[i], k, K),
                                    sample_seed(job.seed, src.keys[i], k)))
            while len(bucket) >= B:
                run_batch(bucket[:B])
                del bucket[:B]
            if not bucket:   # sent: an emptied size keeps no key (with many sizes the sum below
                del buckets[key]   # ran over every size ever seen)
            if sum(len(b) for b in buckets.values()) > max_pending:   # many sizes: send the fullest
                fullest = max(buckets, key=lambda k_: len(buckets[k_]))
                run_batch(buckets.pop(fullest))
        if held:   # fewer inputs than EARLY_STOP, skipped for several reasons
            flush_held()
        if stop is None or not stop.signal:
            for bucket in buckets.values():
                if bucket:
                    run_batch(bucket)
        reap(block=True)
        stored.say()
    except RuntimeError as caught:
        if not str(caught).startswith("DataLoader timed out after"):
            raise
        raise _LoaderStalledError(_stalled_message(src, mine, received, job.workers, wait_s)) from caught
    except (EOFError, ConnectionError) as caught:
        # a worker killed while handing a batch's shared memory over surfaces as that socket's
        # error: a dead worker makes it torch's error of a dead worker (its one line, below)
        from pix2pixhd.data.loader import socket_error_as_worker_death
        err = socket_error_as_worker_death(caught, getattr(loader, "_iterator", None))
        if err is caught:
            raise
        raise err from caught
    finally:
        if not agreed:   # failed before its verdict: the other ranks are not left waiting
            try:
                agree("failed")
            except Exception:
                pass
        try:   # now, on every way out: left to interpreter exit, workers that ignore SIGTERM hang it
            shutdown_workers(loader)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            bar.close()
    report.seconds = time.perf_counter() - t0
    report.generator_seconds = synth.generator_seconds - gen0


class _SkipLines:
    """The ``skipped FILE: REASON`` lines of one process: the first SKIP_LINES, then one line saying
    that the rest are counted and listed in the manifest, which holds every skipped input with its
    reason, printed or not. ``out``: the job's folder (the manifest's)."""

    def __init__(self, out: Path):
        self.out, self.n = out, 0

    def say(self, name: str, reason: str) -> None:
        self.n += 1
        if self.n <= SKIP_LINES:
            print(printable(f"skipped {name}: {reason}"), flush=True)
        elif self.n == SKIP_LINES + 1:
            print(printable(f"skipped: further skipped inputs are not printed (the first {SKIP_LINES} were): "
                            f"the summary at the end counts them all, and {self.out / MANIFEST} lists each with its "
                            'reason ("status": "skipped")'), flush=True)


class _StoredNotes:
    """The --input files read as stored while viewers show them otherwise: an EXIF Orientation
    (turned or mirrored; read as stored, as training reads it) and files of several frames (the
    first alone is read). Items record them (FolderSource: ``orientation``, ``frames``); one note
    per kind, naming the first NOTE_NAMES files and the count, is said at the end (``say``),
    instead of a line per file. The fixes are the data module's (KIND_NOTES), as training says them."""

    def __init__(self):
        self.found = {"EXIF orientation read as stored": [0, []], "several frames": [0, []]}

    def add(self, name: str, item: dict) -> None:
        o, n = item.get("orientation"), item.get("frames") or 1
        for kind, what in (("EXIF orientation read as stored",
                            o in _TURNS and f"{name} (Orientation {o}: viewers show it {_TURNS[o]})"),
                           ("several frames", n > 1 and f"{name} ({n} frames)")):
            if what:
                seen = self.found[kind]
                seen[0] += 1
                if len(seen[1]) < NOTE_NAMES:
                    seen[1].append(what)

    def say(self) -> None:
        heads = {"EXIF orientation read as stored": "have an EXIF Orientation",
                 "several frames": "hold several frames (an animated PNG or WebP, a multi-page TIFF)"}
        for kind, (n, names) in self.found.items():
            if n:
                more = f" and {n - len(names)} more" if n > len(names) else ""
                print(printable(f"note: {n} input file(s) {heads[kind]}: {', '.join(names)}{more}; "
                                f"{KIND_NOTES[kind]}"), file=sys.stderr, flush=True)


class _NoProgress:
    """update/close that do nothing: the bar of a run that shows none (tqdm(disable=True) starts
    tqdm's monitor thread all the same)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _LoaderStalledError(UserError, RuntimeError):
    """A decoding worker, alive, handed over no input within the process-group timeout."""


def _stalled_message(src, mine: "_Todo", received: int, workers: int, wait_s: float) -> str:
    """_LoaderStalledError's line: the input the worker was to hand over next (the rank's
    ``received``-th in its order: the first not received), the limit ``wait_s`` and the ways on."""
    from pix2pixhd.distributed import DEFAULT_TIMEOUT_S, TIMEOUT_ENV
    nxt = next(itertools.islice(iter(mine.inputs()), received, None), None)
    held = f" (the next input: {src.source_name(nxt)})" if nxt is not None else ""
    return (f"the decoding worker (--workers {workers}) handed over no input for "
            f"{wait_s:g} s{held}: it is stuck (a file system read that does not "
            f"return, or a deadlocked worker); the outputs written so far are kept. Rerun the same command to "
            f"resume (--workers 0 decodes in this process); {TIMEOUT_ENV} sets the limit (seconds, default "
            f"{DEFAULT_TIMEOUT_S:g}; it is also how long a rank waits for the others under torchrun)")


class _LineProgress:
    """tqdm's update/close for a log file: ``progress: DESC N/TOTAL (P%), X outputs/s, ETA H:MM:SS``
    on stderr at most every PROGRESS_INTERVAL_S seconds, and once at the end."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n = total, desc, 0
        self._t0 = self._t_line = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self._t_line >= PROGRESS_INTERVAL_S:
            self._say()

    def _say(self) -> None:
        now = self._t_line = time.perf_counter()
        rate = self.n / max(now - self._t0, 1e-9)
        left = max(self.total - self.n, 0) / rate if rate > 0 else None
        eta = "?" if left is None else time.strftime("%H:%M:%S", time.gmtime(left)) if left < 86400 else f"{left / 86400:.1f} days"
        pct = 100.0 * self.n / self.total if self.total else 100.0
        print(f"progress: {self.desc} {self.n}/{self.total} ({pct:.1f}%), {rate:.2f} outputs/s, ETA {eta}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.n:
            self._say()


def _too_large(e: BaseException) -> str | None:
    """What ``e`` says of a batch too large for this device, or None: an allocation that failed
    (CUDA's OutOfMemoryError, the CPU allocator's "can't allocate memory", MemoryError), or a CUDA
    kernel that indexes in 32 bits given a tensor of 2^31 elements or more (ReflectionPad2d's
    "input tensor must fit into 32-bit index math": 36 x 8000 x 8000 one-hot channels are)."""
    text = str(e)
    if isinstance(e, (MemoryError, torch.OutOfMemoryError)) or (
            isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())):
        return "out of memory"
    if isinstance(e, RuntimeError) and "32-bit index math" in text:
        return "a tensor too large for this device's kernels (2^31 elements or more)"
    return None


def _too_large_reason(kind: str, batch: int, h: int, w: int, cfg) -> str:
    """The skip reason for ``batch`` h x w maps too large for this device (``kind``: _too_large's),
    with the fixes that can work: a smaller --batch_size where the batch, not one map, is too much
    (for 32-bit indexing: where one map's widest full-size tensor, its one-hot input or G's ngf
    channels, stays below 2^31 elements), and --scale_width, a new job, into another --out."""
    widest = h * w * max(cfg.label_nc + 1, getattr(cfg, "ngf", 0) or 0, 3)
    smaller = ("a smaller --batch_size (a rerun into this --out resumes and does them), or "
               if batch > 1 and (kind == "out of memory" or widest < 2 ** 31) else "")
    return (f"{kind} synthesizing {w}x{h} maps {batch} at a time: rerun with {smaller}--scale_width below "
            "the map's width into another --out")


def _without_name(reason: str, name: str, key: str) -> str:
    """A skip reason without the input's own name at its head (the skip line names it once)."""
    for prefix in (name, key, os.path.basename(name)):
        if prefix and reason.startswith(prefix + ": "):
            return reason[len(prefix) + 2:]
    return reason


def _reason_kind(reason: str, name: str) -> str:
    """A skip reason with what differs between files of one kind taken out (names, numbers)."""
    r = reason.replace(name, "").replace(os.path.basename(name), "").replace(Path(name).stem, "")
    return re.sub(r"\d+", "#", r)


def _input_kind(cfg, src) -> str:
    """What this checkpoint takes as input, for the early stop's message."""
    if cfg.label_nc == 0:
        return ("grey photos (label_nc 0, one input channel)" if getattr(src, "input_nc", 3) == 1
                else "photos (label_nc 0: RGB images; grey ones are converted)")
    if cfg.palette:
        return (f"colour label maps in the colours of its palette ({cfg.palette}), {cfg.label_nc} classes")
    return (f"label maps of class ids: single-channel PNGs (mode L, or I;16 for ids above 255) with ids "
            f"0..{cfg.label_nc - 1}")


def _wrong_inputs_message(job: SynthesisJob, cfg, src, held: list[tuple[str, str]]) -> str:
    where = f"--input {job.input}" if job.input is not None else f"--dataroot {job.dataroot} --phase {job.phase}"
    n = len(held)
    first = "the only input" if n == 1 else f"all {n} inputs" if n == len(src) else f"the first {n} inputs"
    name, reason = held[0]
    return (f"{first} of {where} cannot be synthesized by this checkpoint, for one reason ({name}: "
            f"{reason}); it takes {_input_kind(cfg, src)}. Stopped, nothing written")


def _write_unit(out: Path, layout: OutputLayout, u: _Unit, img: torch.Tensor, choices, event,
                manifest: _Manifest, common: dict, src, job: SynthesisJob, report: SynthesisReport,
                slots: threading.BoundedSemaphore, finite=None) -> None:
    """One output: label (and instance) partner, then the photo, then its manifest line.
    ``finite``: (its row of Synthesizer.synthesize's finite flags, the Synthesizer, the generator's
    name): a non-finite output raises NonFiniteOutputError, nothing written."""
    try:
        if event is not None:
            event.synchronize()
        item, name = u.item, u.name
        if finite is not None and not bool(finite[0].all()):
            flags, synth, generator = finite
            raise synth.nonfinite_error(*flags.tolist(), source=src.source_name(int(item["i"])),
                                        generator=generator)
        photo = np.ascontiguousarray(img.permute(1, 2, 0).numpy())           # uint8 [H, W, 3]
        label_rel = f"{layout.input_dir}/{name}"
        lab = item["label"]
        if layout.photo_inputs:
            if item["label_copy"]:
                label_bytes = _write_atomic(out / label_rel, copy_from=item["label_copy"])
            else:
                a = lab.numpy()
                label_bytes = _write_atomic(out / label_rel, png_bytes(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)))
        else:
            label_rel, label_bytes = _write_ids(out, layout.input_dir, name, lab, item["label_copy"])
        inst_rel = inst_bytes = None
        if item["inst"] is not None and not layout.photo_inputs:
            inst_rel, inst_bytes = _write_ids(out, layout.inst_dir, name, item["inst"], item["inst_copy"])
        data = png_bytes(photo)
        out_rel = f"{layout.image_dir}/{name}"
        _write_atomic(out / out_rel, data)
        i = int(item["i"])
        manifest.add({**common, "input": src.record_name(i), "key": src.keys[i], "sample": u.k,
                      "seed": u.seed, "output": out_rel, "label": label_rel, "inst": inst_rel,
                      "label_bytes": label_bytes, "inst_bytes": inst_bytes,
                      "clusters": None if choices is None else {str(k): v for k, v in choices.items()},
                      "inputs": item["inputs"],
                      **({"real_sha256": item["real_sha256"]} if item.get("real_sha256") else {}),
                      "status": "ok", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    finally:
        slots.release()


def _write_ids(out: Path, folder: str, name: str, ids: torch.Tensor, copy_from: str | None) -> tuple[str, int]:
    """An id map partner (label or instance ids [1, H, W]) of output ``name`` (``NAME.png``) →
    (its path relative to ``out``, its size): the file ``copy_from`` copied (a PNG the generator
    read as it is), else ``ids`` encoded by ``id_map_bytes``, whose extension it takes: NAME.tif
    for ids a PNG cannot hold (above 65535, negative). The other extension's file of that name,
    left by an earlier run for an input changed since, is removed: training would find two maps."""
    data, ext = (None, ".png") if copy_from else id_map_bytes(ids.numpy()[0])
    base = name[:-len(".png")]
    rel = f"{folder}/{base}{ext}"
    size = _write_atomic(out / rel, data, copy_from=copy_from)
    (out / folder / (base + (".tif" if ext == ".png" else ".png"))).unlink(missing_ok=True)
    return rel, size


# Lines a manifest merge sorts in memory at a time (the rest waits in sorted runs on disk).
MERGE_RUN_LINES = 100_000


def merge_manifest(out: Path, digest: str, older=()) -> Path:
    """Rank 0, after every rank has finished: ``manifest.jsonl`` = for each output, the last line
    this job wrote about it (an earlier run's or this one's parts), sorted by output name; then
    the parts are removed. Written to a temporary file and renamed. ``older``: this job's digests
    in older synthesis.json files (``_legacy_digests``), whose lines a resume kept, so kept too."""
    out = Path(out)
    jobs = {digest, *older}
    path = out / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    runs: list[Path] = []
    for stale in (out / PARTS).glob("merge*.tmp"):   # a merge killed midway left its runs
        stale.unlink(missing_ok=True)
    try:
        # Sorted runs of at most MERGE_RUN_LINES lines on disk, then one streaming merge: memory
        # stays bounded whatever the job's size (a dict of every line took gigabytes for
        # millions of outputs). Lines sort by (output, order read); of an output's lines the last
        # read wins: a later line about an output is a redo (an earlier run's was incomplete or
        # skipped).
        chunk: list[tuple[str, int, str]] = []

        def spill() -> None:
            chunk.sort()
            run = out / PARTS / f"merge{len(runs)}.{os.getpid()}.tmp"
            run.parent.mkdir(parents=True, exist_ok=True)
            with open(run, "w", encoding="utf-8") as f:
                for key, n, line in chunk:
                    f.write(json.dumps([key, n, line]) + "\n")
            runs.append(run)
            chunk.clear()

        for n, rec in enumerate(_read_lines(_manifest_sources(out))):
            if rec.get("job") not in jobs:
                continue
            key = rec["output"] or f"\0{rec.get('input')}"   # a broken symlink has no output name
            chunk.append((key, n, json.dumps(rec, sort_keys=True, separators=(",", ":"))))
            if len(chunk) >= MERGE_RUN_LINES:
                spill()
        if runs and chunk:
            spill()
        chunk.sort()
        readers = [open(r, encoding="utf-8") for r in runs]
        try:
            merged = heapq.merge(*(map(lambda ln: tuple(json.loads(ln)), f) for f in readers)) if runs else chunk
            with open(tmp, "w", encoding="utf-8") as f:
                last = None
                for key, _, line in merged:
                    if last is not None and key != last[0]:
                        f.write(last[1] + "\n")
                    last = (key, line)
                if last is not None:
                    f.write(last[1] + "\n")
                f.flush()
                os.fsync(f.fileno())
        finally:
            for r in readers:
                r.close()
        os.replace(tmp, path)
    except OSError as e:   # the parts stay: a rerun merges them
        tmp.unlink(missing_ok=True)
        raise _write_error(path, e) from e
    finally:
        for r in runs:
            r.unlink(missing_ok=True)
    for p in sorted((out / PARTS).glob("rank*.jsonl")):
        p.unlink(missing_ok=True)
    try:
        (out / PARTS).rmdir()
    except OSError:
        pass
    return path

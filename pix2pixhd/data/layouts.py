"""Finding a dataset's files on disk, and decoding colour-coded label maps through a palette.

Layouts (``dataset_mode``):
  cityscapes  ``{phase}_label`` (ids), ``{phase}_inst`` (instance ids), ``{phase}_img``,
              optional ``{phase}_feat``; partners matched by file stem (in Unicode NFC), ignoring
              Cityscapes' suffixes (``_gtFine_labelIds``, ``_gtFine_instanceIds``, ``_leftImg8bit``,
              the ``*TrainIds`` of cityscapesScripts...).
  palette     the cityscapes layout whose ``{phase}_label`` files are RGB colour maps, decoded
              to ids by nearest palette colour (id = position in the palette).
  rgb_pairs   ``{phase}_A`` (input photo), ``{phase}_B`` (target photo); ``label_nc=0``;
              ``direction`` 'BtoA' swaps them (``{phase}_B`` is the input).
  aligned     pix2pix: ``{phase}/*.jpg`` with A | B side by side; ``direction`` picks the input.
              With ``label_nc>0`` the input half is a colour map decoded through ``palette``.
  unaligned   CycleGAN: ``{phase}A/`` and ``{phase}B/`` images of two domains, any counts, not
              paired by name (``trainA``, ``trainB``, ``testA``, ``testB``); ``direction``
              'BtoA' makes ``{phase}B/`` the domain A. ``label_nc=0``.
``auto`` picks the first layout whose folders exist, in the order cityscapes/palette, rgb_pairs,
unaligned, aligned.

Nothing in a split's folders is dropped silently: broken symlinks are problems, and entries that
are not images (other files, sub-folders, which are not searched, hidden entries: names starting
with '.', such as macOS ``.DS_Store`` and ``._*`` AppleDouble files) are reported as 'ignored'.
A dataset's ``classes.json`` (``label_nc`` and/or ``classes: [{"id": ...}, ...]``) is read by
:func:`read_classes`.
"""
from __future__ import annotations

import json
import operator
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pix2pixhd.compact import Strs
from pix2pixhd.errors import ConfigError, InputError

IMG_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")
MODES = ("auto", "cityscapes", "palette", "rgb_pairs", "aligned", "unaligned")
# Problem kinds that are reported but do not stop training: entries that are not samples,
# single-channel AB images of the aligned layout (two grey photos, or not a pair: see scan), the
# unaligned layout's images whose EXIF Orientation viewers apply, and files of several frames
# (animated PNG or WebP, multi-page TIFF): both read as stored, the first frame only.
NOTICE_KINDS = ("ignored", "grey AB image", "EXIF orientation read as stored", "several frames")
# The most classes a dataset's classes.json may declare: every id of a 16-bit label map (PNG
# I;16), the widest id map scan and training suggest. TrainConfig checks --label_nc >= 0 only; a
# classes.json is a file of the dataset's, so its label_nc (or largest class id) is bounded here:
# an absurd one (a 25-byte {"label_nc": 1000000000}) was expanded into a set of that many ids
# (2.5 GB, then MemoryError or an OOM kill) before anything looked at it. Even this many classes
# is far past a usable generator (one one-hot input channel per class).
LABEL_NC_MAX = 65536
_CITYSCAPES_SUFFIX = re.compile(r"_(gtFine|gtCoarse)_(labelIds|instanceIds|color|labelTrainIds|instanceTrainIds)$"
                                r"|_leftImg8bit$")

# CMP Facades as shipped by pix2pix (../shared/data/facades/README.md): 12 colours, in the order
# the README lists them; a pixel's id is the index of its nearest colour.
FACADES_PALETTE = ((0, 0, 222), (0, 48, 255), (0, 128, 255), (0, 208, 255), (32, 255, 224),
                   (113, 255, 142), (192, 255, 64), (255, 240, 0), (255, 160, 0), (255, 80, 0),
                   (174, 0, 0), (255, 0, 0))
NAMED_PALETTES = {"facades": FACADES_PALETTE}


PALETTE_SHAPE = ('a list of [r, g, b] colours (integers 0-255), e.g. [[0, 0, 0], [128, 64, 128]], '
                 'or {"palette": [...]}')


def load_palette(palette) -> np.ndarray | None:
    """None | 'facades' | path to JSON (a list, or {"palette": [...]}) | [[r, g, b], ...] ->
    int32 [K, 3] or None. A JSON file may start with a UTF-8 BOM; anything wrong with it is one
    ConfigError naming the file, what is wrong and the expected shape."""
    if palette is None:
        return None
    if isinstance(palette, (str, Path)) and str(palette) in NAMED_PALETTES:
        palette = NAMED_PALETTES[str(palette)]
    elif isinstance(palette, (str, Path)):
        p = Path(palette)
        if not p.is_file():
            names = ", ".join(NAMED_PALETTES)
            there = "it is a folder, not a file" if p.is_dir() else "no such file"
            raise ConfigError(f"--palette {palette}: no such named palette ({names}) and {there}; pass "
                              f"--palette {next(iter(NAMED_PALETTES))} or the path of a JSON file holding "
                              f"{PALETTE_SHAPE}")
        return _palette_file(p)
    try:
        arr = np.asarray(palette, dtype=np.int32)
    except (TypeError, ValueError):   # ragged rows, strings
        raise ConfigError(f"palette must be {PALETTE_SHAPE}; got {palette!r:.80}") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise ConfigError(f"palette must be a list of [r, g, b] colours; got shape {arr.shape}")
    return arr


def palette_duplicates(palette: np.ndarray) -> list[tuple[int, int]]:
    """[(id, first id of its colour), ...] for each colour of ``palette`` (int32 [K, 3]) that an
    earlier id already has: a map pixel of it decodes to the earlier id, so the later one is never
    read (Cityscapes' colour table gives ids 0-4 one black, on purpose)."""
    first: dict[tuple, int] = {}
    out = []
    for i, c in enumerate(map(tuple, palette.tolist())):
        if c in first:
            out.append((i, first[c]))
        else:
            first[c] = i
    return out


def _palette_file(p: Path) -> np.ndarray:
    """The palette of JSON file ``p`` (see :func:`load_palette`)."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"palette file {p}: {what}; it should hold {PALETTE_SHAPE}")
    try:   # utf-8-sig: Notepad and PowerShell 5 write a byte order mark first
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise bad(f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise bad(f"cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if isinstance(data, dict):
        if "palette" not in data:
            keys = ", ".join(map(repr, list(data)[:6])) or "none"
            raise bad(f'a JSON object without a "palette" key (its keys: {keys})')
        data = data["palette"]
    if not isinstance(data, list) or not data:
        kind = {dict: "an object", str: "a string", bool: "true/false", type(None): "null",
                list: "an empty list"}.get(type(data), "a number")
        raise bad(f"the palette is {kind}" + ("" if data == [] else ", not a list of colours"))
    for i, c in enumerate(data):
        if not (isinstance(c, list) and len(c) == 3 and
                all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)):
            raise bad(f"colour {i} is {json.dumps(c)[:60]}, not [r, g, b] of integers 0-255")
    return np.asarray(data, dtype=np.int32)


def _palette_scores(flat: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """float32 [P, K]: squared distance of each pixel of ``flat`` (float32 [P, 3]) to each colour,
    less the pixel's own |x|^2 (the same for every colour): |p|^2 - 2 x.p. float32 holds these
    integers (< 2^18) exactly and lets the product run through BLAS; every step is exact, so the
    order (one product with -2 * colours, then |p|^2 added in place: fewer passes) changes no bit."""
    pal = palette.astype(np.float32)
    scores = flat @ (-2 * pal.T)
    scores += (pal * pal).sum(1)[None, :]
    return scores


def decode_palette(rgb: np.ndarray, palette: np.ndarray, distances: bool = False):
    """uint8 [H, W, 3] colour map -> uint8/int32 [H, W] ids of the nearest palette colour.

    Nearest (not exact) matching, because colour maps are often JPEG-compressed. With
    ``distances``: (ids, float32 [H, W] squared distance of each pixel to its nearest palette
    colour), from the scores the decoding computes anyway (exact integers, as :func:`far_colours`'s).
    """
    flat = rgb.reshape(-1, 3).astype(np.float32)
    scores = _palette_scores(flat, palette)
    ids = scores.argmin(1)
    out = ids.astype(np.uint8 if len(palette) <= 256 else np.int32).reshape(rgb.shape[:2])
    if not distances:
        return out
    n, k = scores.shape   # each row's score at its argmin (a flat take: half take_along_axis's time)
    d2 = np.einsum("ij,ij->i", flat, flat) + scores.ravel().take(ids + np.arange(0, n * k, k))
    return out, d2.reshape(rgb.shape[:2])


# A colour label map's pixels lie near its palette's colours, JPEG noise included: of the 400 CMP
# Facades training images, every label half has 45% or more of its pixels within PALETTE_NEAR of a
# facades colour (median 77%), every photo half 0.3% or fewer (palette_fit, every 4th pixel;
# measured by tests/test_data_facades.py). Fewer than PALETTE_MIN_NEAR near: not a map of this
# palette, e.g. the photo half of an AB image read with the wrong --direction.
PALETTE_NEAR, PALETTE_MIN_NEAR = 40.0, 0.25


# A colour of a map farther than PALETTE_NEAR from every palette colour decodes to the nearest class
# all the same: a colour missing from the palette (VOC's border colour, a class left out). JPEG noise
# makes far colours too, each on few pixels: of the 400 CMP Facades label halves, no single far
# colour covers more than 0.423% of a half (tests/test_data_facades.py) (a flat region keeps its exact colour, JPEG or not). One
# far colour on FAR_COLOUR_MIN_SHARE of a map's pixels or more is taken for a colour missing.
FAR_COLOUR_MIN_SHARE = 0.01


def far_colours(rgb: np.ndarray, palette: np.ndarray,
                min_share: float = FAR_COLOUR_MIN_SHARE) -> list[tuple[tuple[int, int, int], int]]:
    """[((r, g, b), pixels), ...], most pixels first: the colours of uint8 [H, W, 3] ``rgb``
    farther than PALETTE_NEAR from every colour of ``palette``, each on ``min_share`` of the
    pixels or more (see FAR_COLOUR_MIN_SHARE)."""
    flat = rgb.reshape(-1, 3).astype(np.uint32)
    if not len(flat):
        return []
    keys, counts = np.unique((flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2], return_counts=True)
    common = counts >= max(1.0, min_share * len(flat))
    keys, counts = keys[common], counts[common]
    cols = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], 1).astype(np.float32)
    d2 = (cols * cols).sum(1) + _palette_scores(cols, palette).min(1) if len(cols) else np.zeros(0)
    far = np.flatnonzero(d2 > PALETTE_NEAR ** 2)
    far = far[np.argsort(-counts[far], kind="stable")]
    return [(tuple(int(v) for v in cols[i]), int(counts[i])) for i in far]


def palette_fit(rgb: np.ndarray, palette: np.ndarray, step: int = 4) -> float:
    """The fraction of the pixels of uint8 [H, W, 3] ``rgb`` (every ``step``-th row and column)
    within PALETTE_NEAR (Euclidean, RGB levels) of a colour of ``palette``."""
    flat = rgb[::step, ::step].reshape(-1, 3).astype(np.float32)
    if not len(flat):
        return 1.0
    d2 = (flat * flat).sum(1) + _palette_scores(flat, palette).min(1)
    return float((d2 <= PALETTE_NEAR ** 2).mean())


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (not recursive), sorted; see :func:`list_folder` for the rest."""
    return list_folder(folder)[0]


def hidden(p: Path) -> bool:
    """Whether ``p``'s name starts with '.': macOS ``.DS_Store`` and ``._*`` (AppleDouble metadata
    beside each file copied from a Mac), editors' and tools' files; never a sample."""
    return p.name.startswith(".")


def list_folder(folder: Path, root: Path | None = None) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """(image files, problems) of one folder. Problems: a broken symlink with an image name
    ('broken symlink'); any other entry that is not an image file ('ignored': other files,
    sub-folders, which are not searched, hidden entries). Paths in messages are relative to ``root``.

    Read by ``os.scandir``, sorted by name (as the folder's paths sort): whether a sample is a
    file comes from the directory listing's file type (a symlink is followed, as ``Path.is_file``
    follows it), so a folder of 100k files is listed without a stat of each (links aside, and file
    systems that give no type); a Path and its relative name are made for kept files and problems
    alone."""
    images, problems = [], []
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: os.path.normcase(e.name))
    for e in entries:
        name = e.name
        image_name = _suffix(name).lower() in IMG_EXTS
        if image_name and not name.startswith(".") and _is_file(e):   # hidden(): no sample
            images.append(folder / name)
            continue
        p = folder / name
        rel = _rel(p, root)
        if hidden(p):
            problems.append(("ignored", str(p), f"{rel}{'/' if p.is_dir() else ''}: hidden (name starts "
                                                f"with '.', e.g. macOS .DS_Store or ._* files); not a sample"))
        elif image_name and p.is_symlink() and not p.exists():
            problems.append(("broken symlink", str(p), f"{rel} is a symlink to {os.readlink(p)}, "
                                                       "which does not exist; fix the link or remove it"))
        elif p.is_dir():
            problems.append(("ignored", str(p), f"{rel}/ is a folder; sub-folders are not searched "
                                                f"(move its images up into {folder.name}/ if they belong)"))
        else:
            what = ("not a regular file" if image_name else
                    f"not an image ({p.suffix or 'no extension'}; read: {', '.join(IMG_EXTS)})")
            problems.append(("ignored", str(p), f"{rel}: {what}"))
    return images, problems


def _is_file(entry: os.DirEntry) -> bool:
    """``Path(entry.path).is_file()``, from the listing where it can: ``DirEntry.is_file`` raises
    on a symlink loop (ELOOP) where ``Path.is_file`` answers False (then a broken symlink)."""
    try:
        return entry.is_file()
    except OSError:
        return Path(entry.path).is_file()


def _suffix(name: str) -> str:
    """``Path(name).suffix`` of a bare file name, without making a Path: from its last '.', unless
    that is its first or last character ('.bashrc' and 'x.' have none)."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _rel(p: Path, root: Path | None) -> str:
    try:
        return str(p.relative_to(root)) if root is not None else str(p)
    except ValueError:
        return str(p)


@dataclass(frozen=True)
class ClassList:
    """What a dataset's ``classes.json`` says: its ``label_nc`` (if given) and the ids it names
    (a ``range`` for ``label_nc`` alone: it answers ``in``, ``len`` and ``max`` without holding
    every id)."""
    path: Path
    label_nc: int | None
    ids: frozenset | range


def read_classes(root: Path) -> ClassList | None:
    """``root/classes.json`` as a :class:`ClassList`; None when there is none. Ids come from
    ``classes`` (a list of {"id": N, ...} or of names, whose ids are their positions), else
    ``range(label_nc)``. A file that cannot be read raises DatasetError naming it and the fix; so
    does a ``label_nc`` outside 0..:data:`LABEL_NC_MAX` or a class id at or above it."""
    from pix2pixhd.data.dataset import DatasetError
    path = Path(root) / "classes.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))   # a BOM (Notepad, PowerShell 5) is fine
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
        label_nc = int(meta["label_nc"]) if meta.get("label_nc") is not None else None
        classes = meta.get("classes")
        if classes is not None:
            ids = frozenset(int(c["id"]) if isinstance(c, dict) else i for i, c in enumerate(classes))
        elif label_nc is not None:
            ids = range(max(label_nc, 0))   # bounded below; a range holds no ids in memory
        else:
            raise ValueError("neither 'label_nc' nor 'classes' is given")
    except Exception as e:   # not JSON, not UTF-8, wrong types, a class without "id"
        msg = (f"{path} cannot be read ({type(e).__name__}: {e}); it should be a JSON object with "
               '"label_nc": N and/or "classes": [{"id": 0, ...}, ...]; fix or remove it')
        raise DatasetError(msg, [("classes.json", str(path), msg)]) from e
    # the wording of TrainConfig's range check (--label_nc N: must be >= 0 ...), with the upper
    # bound that only a dataset's file needs
    msg = None
    if label_nc is not None and not 0 <= label_nc <= LABEL_NC_MAX:
        msg = (f"{path}: label_nc {label_nc}: must be >= 0 and <= {LABEL_NC_MAX} (number of label classes, "
               f"ids 0..label_nc-1; {LABEL_NC_MAX}: every id of a 16-bit label map); set it to the number "
               "of classes its label maps hold")
    elif classes is not None and ids and max(ids) >= LABEL_NC_MAX:
        msg = (f"{path}: class id {max(ids)}: must be < {LABEL_NC_MAX} (label_nc at most {LABEL_NC_MAX}, "
               "every id of a 16-bit label map); renumber its classes to the ids its label maps hold")
    if msg is not None:
        raise DatasetError(msg, [("classes.json", str(path), msg)])
    return ClassList(path, label_nc, ids)


def stem_key(p: Path) -> str:
    """The file stem partners share: Cityscapes' per-kind suffixes removed."""
    return _CITYSCAPES_SUFFIX.sub("", p.stem)


def partner_key(p: Path) -> str:
    """What partners are matched on: :func:`stem_key` in Unicode normal form NFC, so that names
    that look the same match whatever form they are stored in (macOS writes NFD: 'cafe\u0301',
    Linux tools mostly NFC: 'caf\u00e9'). Files are still read by their own paths."""
    return partner_key_of_stem(stem_key(p))


def partner_key_of_stem(stem: str) -> str:
    """:func:`partner_key` of a file whose :func:`stem_key` is ``stem`` (for callers that hold
    the stems, not the Paths: synthesize.py's engine)."""
    return unicodedata.normalize("NFC", stem)


# NVIDIA pix2pixHD's test.py writes results/NAME/test_latest/images/ with these three side by
# side, each named after the label file's stem (X_gtFine_labelIds_synthesized_image.jpg).
RESULT_SUFFIXES = {"fake": "_synthesized_image", "real": "_real_image", "input": "_input_label"}
# Suffixes that name a file's role, not its scene, removed by :func:`result_key`; longest first,
# so "_gtFine_labelIds" is removed whole rather than leaving "_gtFine".
ROLE_SUFFIXES = sorted(["_leftImg8bit", "_gtFine_labelIds", "_gtFine_instanceIds", "_gtFine_color",
                        "_labelIds", "_instanceIds", "_synthesized_image", "_real_image",
                        "_input_label", "_label", "_labels", "_img", "_image", "_photo", "_fake",
                        "_real", "_inst"], key=len, reverse=True)


def result_key(stem: str) -> str:
    """What results and their photos and label maps pair on (``pix2pixhd.evaluate``): the stem in
    Unicode NFC, less one test.py result suffix (:data:`RESULT_SUFFIXES`), if any, and then less
    Cityscapes' suffixes (as :func:`stem_key`) or else one of :data:`ROLE_SUFFIXES`, so that
    ``X_gtFine_labelIds_synthesized_image``, ``X_gtCoarse_labelIds`` and ``X_leftImg8bit`` pair."""
    stem = unicodedata.normalize("NFC", stem)
    for s in RESULT_SUFFIXES.values():
        if stem.endswith(s) and len(stem) > len(s):
            stem = stem[: -len(s)]
            break
    bare = _CITYSCAPES_SUFFIX.sub("", stem)
    if bare != stem:
        return bare
    for s in ROLE_SUFFIXES:
        if stem.endswith(s):
            return stem[: -len(s)]
    return stem


def index_images(folder: Path, *, what: str | None = None, results: bool = False,
                 files: list[Path] | None = None, role: str | None = None,
                 colour_maps: bool = False) -> dict[str, Path]:
    """{key: path} of the images of ``folder`` (:func:`list_folder`: :data:`IMG_EXTS`, no hidden
    entries), keyed by :func:`partner_key`, or by :func:`result_key` with ``results``. ``files``:
    those of its images to index (already listed). Several images with one key are an InputError
    naming ``what`` (default: the folder), the images of the first such key, what to do with each
    (:func:`same_stem_fix`, for a folder of ``role`` files, e.g. 'label'; ``colour_maps``: label
    maps read through a palette; else: keep one) and how many other keys have several; none is an
    empty dict, for the caller to word."""
    folder = Path(folder)
    out: dict[str, Path] = {}
    same: dict[str, list[Path]] = {}
    for p in list_folder(folder)[0] if files is None else files:
        k = result_key(p.stem) if results else partner_key(p)
        if k in out:
            same.setdefault(k, [out[k]]).append(p)
        out[k] = p
    if same:
        k, group = next(iter(same.items()))
        names = [p.name for p in group]
        listed = (f"{names[0]} and {names[1]} both" if len(names) == 2 else
                  f"{', '.join(names[:-1])} and {names[-1]} all")
        n = len(same) - 1
        more = (f" ({n} other stem{'s' if n > 1 else ''} of {folder} hold{'' if n > 1 else 's'} several "
                "images too)" if n else "")
        fix = same_stem_fix(group, role, colour_maps=colour_maps) or "keep one image per stem"
        raise InputError(f"{what or folder}: {listed} pair as {k!r}; {fix}{more}")
    return out


class Records(Sequence):
    """A split's records (file groups: dicts role -> Path), stored compactly: the number of each
    record's set of roles (a uint8 array), per role its file names (:class:`~pix2pixhd.compact.Strs`:
    one bytes blob and one numpy array of offsets; ``os.fsencode``, so any name the file system
    gave survives; '' where a record lacks the role) and whether the role's values were str or
    Path, so that a dataset of 100k samples is a handful of Python objects, not 100k dicts of
    Paths. A DataLoader worker is a fork: a list of dicts would be copied into each worker page by
    page as the worker touches them (reference counts, the garbage collector's walks), some 6 MB
    per 10k samples per worker; these arrays are only read, and stay shared.
    ``records[i]`` builds the dict (Paths, the roles in their order) when asked; slices,
    ``+`` and ``==`` (with a list of dicts too) behave as the list they replace."""

    __slots__ = ("_kinds", "_kind", "_names", "_strs", "_n")

    def __init__(self, recs=()):
        if isinstance(recs, Records):
            self._kinds, self._kind, self._names = recs._kinds, recs._kind, recs._names
            self._strs, self._n = recs._strs, recs._n
            return
        recs = list(recs)
        kinds: dict[tuple, int] = {}   # the roles of a record, in order -> its number
        kind = np.empty(len(recs), np.uint8)
        parts: dict[str, list] = {}
        strs: dict[str, bool] = {}   # role -> its values were str (not Path)
        for i, rec in enumerate(recs):
            roles = tuple(rec)
            k = kinds.setdefault(roles, len(kinds))
            if k > 255:
                raise ValueError("Records: more than 256 different sets of roles")
            kind[i] = k
            for role, v in rec.items():
                if role not in parts:
                    parts[role] = [""] * i
                    strs[role] = isinstance(v, str)
                elif isinstance(v, str) != strs[role]:
                    raise TypeError(f"Records: role {role!r} mixes str and Path values")
                parts[role].append(os.fspath(v))
            for role, got in parts.items():   # a role this record lacks: an empty entry
                if len(got) == i:
                    got.append("")
        self._kinds = tuple(kinds)
        self._kind = kind
        self._names = {r: Strs(v) for r, v in parts.items()}
        self._strs = strs
        self._n = len(recs)

    def __len__(self) -> int:
        return self._n

    def _one(self, i: int) -> dict:
        out = {}
        for role in self._kinds[self._kind[i]]:
            name = self._names[role][i]
            out[role] = name if self._strs[role] else Path(name)
        return out

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(self._n)
            if step != 1:
                return Records(self._one(j) for j in range(start, stop, step))
            stop = max(start, stop)   # a run of records: the arrays' slices, no dict made
            r = Records.__new__(Records)
            r._kinds, r._strs, r._n = self._kinds, self._strs, stop - start
            r._kind = self._kind[start:stop].copy()
            r._names = {role: names[start:stop] for role, names in self._names.items()}
            return r
        i = operator.index(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("Records index out of range")
        return self._one(i)

    def __iter__(self):
        return (self._one(i) for i in range(self._n))

    def __add__(self, other):
        return Records([*self, *other])

    def __radd__(self, other):
        return Records([*other, *self])

    def __eq__(self, other):
        if isinstance(other, (Records, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"Records({list(self)!r})"

    def __reduce__(self):   # a spawned worker (or a copy) gets the arrays, not the dicts
        return (_records_from_state, ((self._kinds, self._kind, self._names, self._strs, self._n),))


def _records_from_state(state) -> Records:
    r = Records.__new__(Records)
    r._kinds, r._kind, r._names, r._strs, r._n = state
    return r


@dataclass
class Layout:
    """The files of one split. ``records`` hold paths per role; ``problems`` what is missing.
    :func:`find_files` leaves ``records`` and ``unpaired`` as :class:`Records` (compact, read-only
    sequences of the same dicts)."""
    mode: str
    root: Path
    phase: str
    records: list[dict] = field(default_factory=list)   # role -> Path; roles: label, inst, image, feat, ab, A
    # (kind, path, message); a missing partner's message is a PartnerMessage (its roles as fields)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    # unaligned only: domain B's files ({"B": path}), paired with no record (drawn at random)
    unpaired: list[dict] = field(default_factory=list)


# Split names whose {phase}A/ or {phase}B/ alone is read as one domain of the unaligned layout (a
# CycleGAN test split often has only the domain to translate); other lone names ending in A or B
# stay pix2pix phase folders.
LONE_DOMAIN_PHASES = ("train", "test", "val")


def _unaligned_phase(d: Path) -> str | None:
    """'train' for trainA/ or trainB/ when its partner folder exists (the unaligned layout), or
    alone when its split is one of LONE_DOMAIN_PHASES."""
    if d.name[-1:] in ("A", "B") and len(d.name) > 1 and not d.name.endswith(("_A", "_B")):
        other = d.with_name(d.name[:-1] + ("B" if d.name[-1] == "A" else "A"))
        if other.is_dir() or d.name[:-1] in LONE_DOMAIN_PHASES:
            return d.name[:-1]
    return None


# The folder names other tools give photos and their label maps (partners by file name), e.g.
# images/ + masks/, img/ + label/, VOC's JPEGImages/ + SegmentationClass/; compared in lower case.
# This project reads them as {phase}_img/ + {phase}_label/: such a pair is named with a rename,
# never offered as two pix2pix phases.
PHOTO_FOLDER_NAMES = ("images", "image", "imgs", "img", "photos", "photo", "jpegimages", "rgb", "pictures")
LABEL_FOLDER_NAMES = ("masks", "mask", "labels", "label", "annotations", "annotation", "segmentationclass",
                      "segmentationclasspng", "segmentation", "segmentations", "seg", "gt", "groundtruth",
                      "ground_truth", "semantic", "labelids")


def photo_label_folders(d: Path) -> tuple[Path, Path] | None:
    """(photo folder, label folder) when folder ``d`` holds a pair under the names other tools
    use (PHOTO_FOLDER_NAMES, LABEL_FOLDER_NAMES); else None."""
    if not d.is_dir():
        return None
    subs = {p.name.lower(): p for p in sorted(d.iterdir()) if p.is_dir()}
    photos = next((subs[n] for n in PHOTO_FOLDER_NAMES if n in subs), None)
    labels = next((subs[n] for n in LABEL_FOLDER_NAMES if n in subs), None)
    return (photos, labels) if photos is not None and labels is not None else None


def rename_hint(root: Path, phase: str) -> str | None:
    """The fix for photos and label maps in folders named as other tools name them
    (:func:`photo_label_folders`), in ``root/phase``, ``root`` or another folder of ``root``
    (root/images + root/masks, root/train/images + root/train/labels): the folders this project
    reads and a rename; None when there is no such pair."""
    root = Path(root)
    if not root.is_dir():
        return None
    subs = sorted(d for d in root.iterdir() if d.is_dir() and d.name != phase)
    for where in [root / phase, root] + subs:
        pair = photo_label_folders(where)
        if pair is None:
            continue
        p = phase if where == root else where.name
        photos, labels = pair
        return (f"{photos}/ + {labels}/ look like photos and their label maps in another tool's folder "
                f"names; this project reads them as {root / f'{p}_img'}/ (photos) + "
                f"{root / f'{p}_label'}/ (label maps: one channel of class ids, or colours with "
                f"--palette), partners by file name: rename them, e.g. `mv {photos} {root / f'{p}_img'} "
                f"&& mv {labels} {root / f'{p}_label'}`" + (f", and pass --phase {p}" if p != phase else ""))
    return None


def aligned_folder_problem(root: Path, phase: str) -> str | None:
    """Why ``root/phase/``, which the aligned layout reads, holds no pix2pix AB images: it is one
    of a pair of photo and label folders under other tools' names (:func:`rename_hint`: its
    photos would be cut into halves), or it holds entries but no image directly (sub-folders are
    not searched). None when it holds an image, or nothing (an empty split, reported as such)."""
    d = Path(root) / phase
    if not d.is_dir():
        return None
    if d in (photo_label_folders(Path(root)) or ()):
        return (f"{d}/ is not a folder of pix2pix AB images (two photos side by side, which the aligned "
                f"layout cuts in halves). {rename_hint(Path(root), 'train')}")
    # stops at the first image (a split of 100k needs no listing of it all: create_dataset and the
    # check before the VGG weights both ask, layout_of); the whole sorted listing only for the message
    entries = []
    for p in d.iterdir():
        if p.suffix.lower() in IMG_EXTS and not hidden(p):
            return None
        entries.append(p)
    if not entries:
        return None
    names = [p.name + ("/" if p.is_dir() else "") for p in sorted(entries)]
    held = ", ".join(names[:8]) + (f", ... ({len(names)} entries)" if len(names) > 8 else "")
    fix = rename_hint(root, phase) or (
        f"the cityscapes layout reads {Path(root) / f'{phase}_label'}/ + {Path(root) / f'{phase}_img'}/ "
        f"(partners by file name), the aligned layout (pix2pix) side-by-side A|B images directly in {d}/")
    return (f"no dataset for phase {phase!r}: {d}/ holds no image directly (it holds {held}; sub-folders "
            f"are not searched), so it is not a folder of pix2pix AB images either. {fix}")


def find_phases(root: Path) -> list[str]:
    """The splits ``root`` holds: ``{phase}_label/``, ``{phase}_A/``, CycleGAN's ``{phase}A/`` +
    ``{phase}B/`` (or one of them for LONE_DOMAIN_PHASES), pix2pix ``{phase}/`` of images
    (not a pair of photo and label folders under other tools' names: :func:`rename_hint`)."""
    phases = set()
    pair = photo_label_folders(root) or ()
    for d in root.iterdir():
        if not d.is_dir() or d in pair:
            continue
        for suffix in ("_label", "_A"):
            if d.name.endswith(suffix):
                phases.add(d.name[: -len(suffix)])
        if _unaligned_phase(d) is not None:
            phases.add(_unaligned_phase(d))
        elif "_" not in d.name and not hidden(d) and \
                any(p.suffix.lower() in IMG_EXTS and not hidden(p) for p in d.iterdir()):
            phases.add(d.name)
    return sorted(phases)


def detect_mode(root: Path, phase: str, palette) -> str:
    if (root / f"{phase}_label").is_dir():
        return "palette" if palette is not None else "cityscapes"
    if (root / f"{phase}_A").is_dir() and (root / f"{phase}_B").is_dir():
        return "rgb_pairs"
    if (root / f"{phase}A").is_dir() and (root / f"{phase}B").is_dir():
        return "unaligned"
    if (root / phase).is_dir():
        return "aligned"
    from pix2pixhd.data.dataset import DatasetError
    raise DatasetError(no_dataset_message(root, phase))


def no_dataset_message(root: Path, phase: str, generate: bool = True) -> str:
    """Why ``root`` has no split ``phase``, and the fix: the phases it does hold (``--phase``), the
    folders it holds otherwise; generating synthetic data is suggested only for a folder that is
    missing or empty (``generate``), never over what a folder holds."""
    root = Path(root)
    looked = (f"looked for {phase}_label/ (cityscapes layout), {phase}_A/ + {phase}_B/ (RGB pairs), "
              f"{phase}A/ + {phase}B/ (unpaired, CycleGAN) and {phase}/ (pix2pix AB images)")
    make = (f", or generate data with `python -m pix2pixhd.datasets.synthetic_streets --out {root}`"
            if generate else "")
    if not root.exists():
        return f"no dataset for phase {phase!r}: {root} does not exist. Fix --dataroot{make}"
    if not root.is_dir():
        return f"no dataset for phase {phase!r}: {root} is a file, not a folder. Fix --dataroot"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    if not entries:
        return f"no dataset for phase {phase!r}: {root} is empty. Fix --dataroot{make}"
    phases = [p for p in find_phases(root) if p != phase]
    hint = rename_hint(root, phase)
    if hint:
        return (f"no dataset for phase {phase!r} in {root} ({looked}). {hint}"
                + (f"; it also holds phase{'s' if len(phases) > 1 else ''} {', '.join(phases)}" if phases else ""))
    if phases:
        which = " or ".join(f"--phase {p}" for p in phases)
        return (f"no dataset for phase {phase!r} in {root} ({looked}): it holds phase"
                f"{'s' if len(phases) > 1 else ''} {', '.join(phases)}: pass {which}, or fix --dataroot")
    held = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
    return (f"no dataset for phase {phase!r} in {root}: {looked}; it holds {held}. Fix --dataroot/--phase, "
            "or pick the layout with --dataset_mode")


def _missing_folder_fix(role: str, root: Path, phase: str, instance_feat: bool | None) -> str:
    """The fix for a missing ``{phase}_{role}`` folder. ``instance_feat``: whether the instance
    maps are read for the feature encoder (which needs them also with no_instance); None: not known."""
    if role == "inst" and instance_feat:
        return ("--instance_feat averages the encoded features over each instance and needs instance maps "
                "(also with --no_instance): add the folder, or use --label_feat (features per class)")
    if role == "inst" and instance_feat is None:
        return ("add the folder, or pass no_instance=True (--no_instance); with --instance_feat, whose "
                "encoder needs instance maps also with --no_instance: add the folder, or use --label_feat")
    if role == "inst":
        return "pass no_instance=True (--no_instance) or add the folder"
    if role == "feat":
        where = f" --dataroot {root}" + (f" --phase {phase}" if phase != "train" else "")
        return ("--load_features reads the feature encoder's maps precomputed into it: write them with "
                f"`python -m pix2pixhd.features precompute --checkpoint RUN{where}` (RUN: the run whose "
                "encoder makes them, the stage --load_pretrain loads), or drop --load_features "
                "(load_features=False)" + _interrupted_precompute(root, phase, "; "))
    return "add the folder"


def progress_path(output: Path) -> Path:
    """The progress file of a run writing ``output`` (a file or a folder: ``features
    precompute``'s {phase}_feat/): beside it, hidden. The features module writes it and this
    module's errors name it, so both take its name from here."""
    return output.parent / f".{output.name}.progress"


def _interrupted_precompute(root: Path, phase: str, sep: str) -> str:
    """``sep`` and what to do about the progress file a ``features precompute`` of ``root``'s
    ``phase`` left beside {phase}_feat/ (:func:`progress_path`: ``.{phase}_feat.progress``); ''
    when there is none. Its maps are only part of the split. Left by a killed or stopped run, the
    same command continues from where it stopped, which writing them again from scratch would not;
    left by a ``--how_many N`` run that wrote all its N maps (:func:`_finished_how_many`), that
    command writes nothing: one without --how_many, or with a larger one, continues after them."""
    progress = progress_path(Path(root) / f"{phase}_feat")
    if not progress.is_file():
        return ""
    finished = _finished_how_many(progress)
    if finished is not None:
        count, asked = finished
        return (f"{sep}a precompute --how_many {asked} left {progress}: it wrote the first {count} maps and "
                "finished, so rerunning it writes nothing; run precompute without --how_many (or with a larger "
                "one), which continues after them")
    return f"{sep}an interrupted precompute left {progress}: rerun the same precompute command to finish it"


def _finished_how_many(progress: Path) -> tuple[int, int] | None:
    """(maps written, images asked for) when the precompute progress file ``progress`` is a finished
    ``--how_many`` run's: it records ``asked`` (pix2pixhd.features' precompute writes it; older
    versions' files lack it) and counts that many maps done. None otherwise: an interrupted run's,
    an older version's, or a file that cannot be read (the note then says to rerun the command)."""
    import torch   # (the progress files are torch's; the listing's other notes need it not)
    try:
        d = torch.load(progress, map_location="cpu", weights_only=True)
    except Exception:
        return None
    count, asked = (d.get("count"), d.get("asked")) if isinstance(d, dict) else (None, None)
    if type(count) is int and type(asked) is int and 0 < asked <= count:
        return count, asked
    return None


class PartnerMessage(str):
    """The message of a "missing partner" problem, ``"train_label/k.png has no train_feat/k.*"``,
    that also holds what it says as fields: ``roles``, the roles whose partner is missing (label,
    image, inst, feat: _find_files' roles), and ``root`` and ``phase``, the split's. It is the
    text (a ``str``: printed, compared and sorted as the message), so problems stay (kind, path,
    message) triples; :func:`missing_feat_note` reads the fields, so rewording the message cannot
    lose or invent its note. Pickled with its fields (an error's problems sent between processes)."""
    __slots__ = ("roles", "root", "phase")

    def __new__(cls, text: str, roles=(), root: str = "", phase: str = ""):
        self = super().__new__(cls, text)
        self.roles, self.root, self.phase = tuple(roles), str(root), phase
        return self

    def __reduce__(self):
        return type(self), (str(self), self.roles, self.root, self.phase)


def missing_feat_note(problems) -> str | None:
    """The fix for the feature maps that "missing partner" problems name (a record without its
    ``{phase}_feat/`` file), said once after the kind's list (dataset.format_problems, as its
    KIND_NOTES are): the precompute command that writes them (without --how_many: a precompute
    --how_many N writes the first N only, and every sample needs its map) and, where a precompute
    left its progress file in the dataroot, what continues it (:func:`_interrupted_precompute`:
    rerunning an interrupted one finishes the job; after a finished --how_many N, a run without
    --how_many or with a larger one continues after its maps). None when no
    missing partner is a feature map. Which roles a problem lacks, and of which split, come from
    its message's fields (:class:`PartnerMessage`, written by _find_files), not from its wording:
    a message without them (one not written there) adds no note."""
    splits = {}
    for kind, _path, msg in problems:
        if kind == "missing partner" and "feat" in getattr(msg, "roles", ()):
            splits.setdefault((msg.root, msg.phase), None)
    if not splits:
        return None
    notes = []
    for root, phase in splits:
        where = f" --dataroot {root}" + (f" --phase {phase}" if phase != "train" else "")
        notes.append(f"{phase}_feat/ lacks the feature maps of these samples: write them with `python -m "
                     f"pix2pixhd.features precompute --checkpoint RUN{where}` (without --how_many: every "
                     "image needs its map; RUN: the run whose encoder makes them; docs/features.md)"
                     + _interrupted_precompute(Path(root), phase, "; "))
    return "; ".join(notes)


def find_files(root: Path, phase: str, mode: str, *, use_inst: bool, use_feat: bool,
               direction: str = "AtoB", inputs_only: bool = False,
               instance_feat: bool | None = None, read_domain: str | None = None) -> Layout:
    """:func:`_find_files`, its records and domain B's stored compactly (:class:`Records`)."""
    lay = _find_files(root, phase, mode, use_inst=use_inst, use_feat=use_feat, direction=direction,
                      inputs_only=inputs_only, instance_feat=instance_feat, read_domain=read_domain)
    lay.records, lay.unpaired = Records(lay.records), Records(lay.unpaired)
    return lay


def _find_files(root: Path, phase: str, mode: str, *, use_inst: bool, use_feat: bool,
                direction: str = "AtoB", inputs_only: bool = False,
                instance_feat: bool | None = None, read_domain: str | None = None) -> Layout:
    """Collect one split's files and the partners that are missing. ``direction`` 'BtoA' makes
    ``{phase}_B`` the input (label role) of the rgb_pairs layout and ``{phase}B/`` domain A of
    the unaligned one. ``inputs_only``: a photo folder (or the unaligned layout's output domain)
    that is not there is not needed; ``read_domain`` ('A' or 'B', named after ``direction``):
    with ``inputs_only``, the one unaligned domain synthesis reads, the other's folder is not
    read. ``instance_feat``: whether the instance maps are read for the feature encoder (None: not
    known), for the message of a missing ``{phase}_inst``. A folder that is missing or holds no
    image is one problem; its files are not listed again as missing partners."""
    lay = Layout(mode, root, phase)
    if mode == "aligned":
        if not (root / phase).is_dir():
            there = (f"folders in {root}: {sorted(p.name for p in root.iterdir() if p.is_dir()) or 'none'}"
                     if root.is_dir() else f"{root} does not exist either")
            lay.problems.append(("missing folder", str(root / phase), (
                f"{root / phase} does not exist; the aligned layout (pix2pix) reads {phase}/ of side-by-side "
                f"A|B images ({there}). Fix "
                "--dataroot/--phase, or pick the layout of the data with --dataset_mode")))
            return lay
        images, lay.problems = list_folder(root / phase, root)
        lay.records = [{"ab": p} for p in images]
        return lay
    if mode == "unaligned":
        return _find_unaligned(lay, direction, inputs_only, read_domain if inputs_only else None)
    if mode == "rgb_pairs":   # the input photo is the label role
        src, tgt = ("A", "B") if direction == "AtoB" else ("B", "A")
        roles = {"label": f"{phase}_{src}", "image": f"{phase}_{tgt}"}
    else:
        roles = {"label": f"{phase}_label", "image": f"{phase}_img"}
    if inputs_only and not (root / roles["image"]).is_dir():
        del roles["image"]   # synthesis of maps without photos: the generator reads the labels only
    if use_inst:
        roles["inst"] = f"{phase}_inst"
    if use_feat:
        roles["feat"] = f"{phase}_feat"
    found: dict[str, dict[str, Path]] = {}
    same: dict[str, dict[str, list[Path]]] = {}   # role -> key -> its images, when several
    absent = set()
    for role, sub in roles.items():
        d = root / sub
        if not d.is_dir():
            fix = _missing_folder_fix(role, root, phase, instance_feat)
            lay.problems.append(("missing folder", str(d), f"{role} folder {d} does not exist; {fix}"))
            found[role] = {}
            absent.add(role)
            continue
        found[role] = {}
        images, problems = list_folder(d, root)
        lay.problems += problems
        for p in images:
            k = partner_key(p)
            if k in found[role]:
                same.setdefault(role, {}).setdefault(k, [found[role][k]]).append(p)
            found[role][k] = p   # (the last one is read where duplicates do not stop the run)
    # one problem per stem, naming all its images and what to do with each, said after every
    # folder is listed: whether the folder an image belongs in holds that stem already changes the fix
    folders = ({"label": root / f"{phase}_label", "inst": root / f"{phase}_inst", "image": root / f"{phase}_img"}
               if mode in ("cityscapes", "palette") else {})
    for role, groups in same.items():
        for k, files in groups.items():
            forms = (" (the same name in two Unicode normal forms, NFC and NFD: they look the same)"
                     if len({stem_key(p) for p in files}) > 1 else "")
            held = {r: found[r][k] for r in folders if r != role and k in found.get(r, {})}
            fix = same_stem_fix(files, role if folders else None, folders, held, colour_maps=mode == "palette")
            lay.problems.append(("duplicate stem", str(files[0]),
                                 f"{_and_names(files)} share the stem {k!r}{forms}; {fix or 'keep one'}"))
    keys = sorted(set().union(*[set(v) for v in found.values()]))
    folded = {role: {k.casefold(): p for k, p in v.items()} for role, v in found.items()}
    for role, sub in roles.items():
        if keys and not found[role] and role not in absent:   # as good as missing: said once
            fix = _missing_folder_fix(role, root, phase, instance_feat).replace("add the folder", "add its files")
            lay.problems.append(("empty", str(root / sub), f"{role} folder {root / sub} holds no images "
                                                           f"({', '.join(IMG_EXTS)}); {fix}"))
            absent.add(role)
    for k in keys:
        rec = {role: found[role].get(k) for role in roles}
        missing = [r for r, p in rec.items() if p is None]
        listed = [r for r in missing if r not in absent]   # a missing folder is said once, above
        if listed:
            have = next(p for p in rec.values() if p is not None)
            near = [folded[r][k.casefold()] for r in listed if k.casefold() in folded[r]]
            case = (f" ({', '.join(str(q.relative_to(root)) for q in near)} differ{'s' if len(near) == 1 else ''} "
                    "only in upper/lower case: partners match by the exact stem; rename one)" if near else "")
            lay.problems.append(("missing partner", str(have), PartnerMessage(
                f"{have.relative_to(root)} has no " + ", ".join(f"{roles[r]}/{k}.*" for r in listed) + case,
                listed, root, phase)))
        if missing:
            continue
        lay.records.append(rec)
    return lay


def _and_names(files: Sequence[Path]) -> str:
    """'DIR/a.png, b.png and c.png': files of one folder, the first by its path."""
    names = [str(files[0])] + [f.name for f in files[1:]]
    return ", ".join(names[:-1]) + f" and {names[-1]}"


# Cityscapes ships each scene's annotations side by side, one stem (gtFine/{split}/{city}/; gtCoarse
# alike): X_gtFine_labelIds.png, X_gtFine_instanceIds.png, X_gtFine_color.png and
# X_gtFine_polygons.json (not an image: listed as not used, never one of a stem's images), and
# cityscapesScripts' createTrainIdLabelImgs adds X_gtFine_labelTrainIds.png (and
# X_gtFine_instanceTrainIds.png). Copied into one {phase}_label/ as shipped, they share a stem.
# Per kind: the role this project reads it in (None: never), and what it is.
CITYSCAPES_KINDS = {
    "labelIds": ("label", "the id map"),
    "labelTrainIds": ("label", "the id map of train ids"),
    "instanceIds": ("inst", "the instance map of the labelIds"),
    "instanceTrainIds": ("inst", "the instance map of the labelTrainIds"),
    "color": (None, "Cityscapes' colour rendering, for viewing"),
    "leftImg8bit": ("image", "the photo"),
}
# Which ids each kind of id map holds, and the --label_nc they need (pix2pixHD trains labelIds).
CITYSCAPES_IDS = {
    "labelIds": "Cityscapes' label ids 0-33, which pix2pixHD trains with --label_nc 35",
    "labelTrainIds": ("cityscapesScripts' train ids 0-18 and 255 for the pixels Cityscapes ignores, which "
                      "need 255 remapped below --label_nc (e.g. to 19, with --label_nc 20)"),
}
# An instance map's ids are its label kind's: class*1000+k for objects, the class id elsewhere
# (instanceTrainIds: 255 for every class train ids ignore), so its boundaries are those of the id
# map of its own kind, with which it pairs.
_INST_OF = {"labelIds": "instanceIds", "labelTrainIds": "instanceTrainIds"}


def cityscapes_kind(p: Path) -> str | None:
    """The kind of Cityscapes file ``p`` is by its suffix (a key of :data:`CITYSCAPES_KINDS`), or None."""
    m = _CITYSCAPES_SUFFIX.search(p.stem)
    return None if m is None else (m.group(2) or "leftImg8bit")


def same_stem_fix(files: Sequence[Path], role: str | None, folders: dict[str, Path] | None = None,
                  held: dict[str, Path] | None = None, colour_maps: bool = False) -> str | None:
    """What to do with each of ``files``, images of one folder that share a stem, where that
    folder holds ``role`` files ('label' or 'inst'; None, or another role: not known) and Cityscapes'
    per-kind files are among them (:data:`CITYSCAPES_KINDS`): which to keep, which to move to the
    folder of ``folders`` (role -> folder) it is read from, named as it is (partners pair by the
    stem, Cityscapes' suffixes ignored), and which to move out (never read, or read by no folder
    of ``folders``). ``held``: role -> the file of this stem another folder holds already (then
    the copy is removed, not moved). ``colour_maps``: label maps are colour maps read through a
    palette, so the colour rendering is the one kept and the id maps are not read. None when no
    file has a Cityscapes suffix, or ``role`` is not known: the caller says to keep one. One
    function for the dataset's listing and evaluate's folders, so the two cannot advise apart."""
    kinds = [(f, cityscapes_kind(f)) for f in files]
    # label and instance folders only: photos may carry a label map's stem and suffix (synthesize.py
    # names each output after its map), and so may feature maps: there a suffix says nothing
    if role not in ("label", "inst") or all(k is None for _, k in kinds):
        return None
    folders, held = folders or {}, held or {}

    def read_as(kind):   # the role a file of ``kind`` is read in; an unknown one is taken for this folder's
        if kind is None:
            return role
        if colour_maps and kind in ("color", "labelIds", "labelTrainIds"):
            return "label" if kind == "color" else None
        return CITYSCAPES_KINDS[kind][0]

    def what(kind):
        if colour_maps and kind == "color":
            return "the colour map --palette decodes"
        if colour_maps and kind in CITYSCAPES_IDS:
            return "an id map, which the layout reads without --palette"
        return CITYSCAPES_KINDS[kind][1] if kind else None

    def named(f, kind):
        return f"{f.name} ({what(kind)})" if kind else f.name

    stay = [(f, k) for f, k in kinds if read_as(k) == role]
    kept_ids = {k for _, k in stay if k in CITYSCAPES_IDS and not colour_maps}
    clauses = []
    if len(stay) == 1:
        clauses.append(f"keep {named(*stay[0])}")
    elif stay:
        clauses.append("keep one of " + ", ".join(named(f, k) for f, k in stay))
    else:
        clauses.append(f"none of them is a {'label map' if role == 'label' else 'instance map'} of this folder")
    to_inst = [(f, k) for f, k in kinds if read_as(k) == "inst" != role and "inst" in folders]
    for f, k in kinds:
        dest = read_as(k)
        if dest == role:
            continue
        if (f, k) in to_inst and len(to_inst) > 1:   # one instance map per stem: the one of the ids kept
            if len(kept_ids) != 1:
                # which one to move hangs on the ids kept, but where the instance folder holds this
                # stem's map already neither is moved: both are copies or the other ids' map
                if (f, k) == to_inst[0] and "inst" in held:
                    clauses.append(f"remove {' and '.join(g.name for g, _ in to_inst)}: {folders['inst']}/ "
                                   f"holds {held['inst'].name} already")
                elif (f, k) == to_inst[0]:
                    clauses.append(f"move the one of {' or '.join(g.name for g, _ in to_inst)} that matches "
                                   f"the ids kept (instanceIds with labelIds, instanceTrainIds with labelTrainIds) "
                                   f"to {folders['inst']}/, named as it is, and the other out of the folder")
                continue
            if k != _INST_OF[next(iter(kept_ids))]:
                clauses.append(f"move {named(f, k)} out of the folder (not the ids kept)")
                continue
        if dest in held:
            clauses.append(f"remove {f.name}: {folders[dest]}/ holds {held[dest].name} already")
        elif dest in folders:
            clauses.append(f"move {named(f, k)} to {folders[dest]}/, named as it is (partners pair by the "
                           f"stem, Cityscapes' suffixes ignored)")
        else:
            clauses.append(f"move {named(f, k)} out of the folder" + ("" if dest is None else " (not read here)"))
    fix = (" and ".join(clauses) if len(clauses) <= 2 else ", ".join(clauses[:-1]) + f", and {clauses[-1]}")
    if kept_ids:
        fix += "; " + "; ".join(f"{f.name} holds {CITYSCAPES_IDS[k]}" for f, k in stay if k in kept_ids)
        if len(kept_ids) > 1:
            fix += ": --label_nc must be the one of the ids kept"
    return fix


def _find_unaligned(lay: Layout, direction: str, inputs_only: bool = False,
                    read_domain: str | None = None) -> Layout:
    """The unaligned layout: domain A's files as records ({"A": path}), domain B's as ``unpaired``
    ({"B": path}); a domain with no folder or no image is a problem (training needs both), except,
    with ``inputs_only``, a missing folder when the other domain's is there (synthesis reads one
    domain: the caller checks that its own is there). ``read_domain``: the domain synthesis
    reads; where its folder is there, the other's is neither listed nor required."""
    root, phase = lay.root, lay.phase
    folders = {"A": root / f"{phase}A", "B": root / f"{phase}B"}
    if direction == "BtoA":
        folders = {"A": folders["B"], "B": folders["A"]}
    both = folders
    if read_domain is not None:
        if read_domain not in folders:
            raise ValueError(f"read_domain={read_domain!r}; expected 'A' or 'B'")
        if folders[read_domain].is_dir():   # else both, as without it: the caller names the fix
            folders = {read_domain: folders[read_domain]}
    for domain, d in folders.items():
        if inputs_only and not d.is_dir() and any(o.is_dir() for o in both.values()):
            continue
        if not d.is_dir():
            lay.problems.append(("missing folder", str(d), f"{d} does not exist; the unaligned layout "
                                 f"needs {phase}A/ and {phase}B/ (one folder of images per domain)"))
            continue
        images, problems = list_folder(d, root)
        lay.problems += problems
        if not images:
            lay.problems.append(("empty", str(d), f"{_rel(d, root)}/ holds no images ({', '.join(IMG_EXTS)}); "
                                 f"domain {domain} needs at least one"))
        recs = [{domain: p} for p in images]
        if domain == "A":
            lay.records = recs
        else:
            lay.unpaired = recs
    return lay

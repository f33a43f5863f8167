"""Synthetic street scenes in the Cityscapes layout: the project's own default dataset.

Writes ``{train,test}_label`` (uint8 PNG class ids), ``{train,test}_inst`` (16-bit PNG instance
ids, Cityscapes' convention: ``class*1000 + k`` for things, the class id for stuff) and
``{train,test}_img`` (RGB PNG photos), plus ``classes.json`` (names, ids, ``label_nc``).

Each scene is a street seen from a car: a perspective road with lane markings, sidewalks,
building facades with window grids converging to a vanishing point, trees, poles, parked and
driving cars, pedestrians, sometimes an ego-vehicle hood (void, id 0). Cars in adjacent lanes,
cars parked in a row and pedestrians walking side by side touch, so only the instance map
separates them. Photos are rendered from the layout with per-object colours, textures, a sun
side, exposure, colour tint, cast shadows, vignetting and sensor noise: the label->photo mapping
is learnable but not a fixed colour lookup.

Deterministic: image ``i`` of split ``s`` depends only on ``(seed, s, i, width, height)``, not on
how many images are generated. Pure numpy + Pillow; ~5 ms per 256x128 scene on one core.

A rerun into the same folder replaces its split folders, so no scene of an earlier run (more
scenes, another size) stays behind. A non-empty folder that this tool did not write may be a real
dataset of the same layout, or another tool's output: it is refused, untouched. Ours is a folder
whose ``classes.json`` names this tool and the folder itself (``folder``: a copy of the file
elsewhere, as synthesize.py used to make, is not proof) and that holds nothing else than this
tool writes: ``classes.json`` and the six split folders, each holding only its scene files.

    python -m pix2pixhd.datasets.synthetic_streets --out data/streets --n_train 100 --n_test 10 \
        --width 256 --height 128 --seed 0
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.paths import check_name, check_output_folder

CLASSES = ("unlabeled", "sky", "road", "sidewalk", "building", "vegetation", "pole", "car",
           "person")
ID = {name: i for i, name in enumerate(CLASSES)}
THING_CLASSES = ("car", "person")
LABEL_NC = len(CLASSES)
SPLITS = {"train": 0, "test": 1}
MAX_SIZE = (4096, 4096)
TOOL = "pix2pixhd.datasets.synthetic_streets"   # classes.json's "written_by": the folder is ours

_CAR_COLOURS = np.array([[0.75, 0.05, 0.05], [0.1, 0.15, 0.5], [0.85, 0.85, 0.85],
                         [0.08, 0.08, 0.08], [0.45, 0.47, 0.5], [0.9, 0.75, 0.1],
                         [0.15, 0.4, 0.2], [0.55, 0.3, 0.15]], np.float32)


class _Canvas:
    """Label, instance and photo buffers painted together, far to near (painter's order)."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.label = np.zeros((h, w), np.uint8)            # [H, W] class ids
        self.inst = np.zeros((h, w), np.int32)             # [H, W] instance ids
        self.photo = np.zeros((h, w, 3), np.float32)       # [H, W, 3] linear-ish RGB in [0, 1]
        self.counts = {c: 0 for c in THING_CLASSES}

    def new_instance(self, cls: str) -> int:
        k = self.counts[cls]
        self.counts[cls] += 1
        return ID[cls] * 1000 + k

    def box(self, x0, y0, x1, y1):
        """Integer slices of a box clipped to the image, plus its float pixel-centre coords."""
        ix0, iy0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        ix1, iy1 = min(int(np.ceil(x1)), self.w), min(int(np.ceil(y1)), self.h)
        if ix1 <= ix0 or iy1 <= iy0:
            return None
        ys = np.arange(iy0, iy1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(ix0, ix1, dtype=np.float32)[None, :] + 0.5
        return (slice(iy0, iy1), slice(ix0, ix1)), ys, xs

    def paint(self, sl, mask, cls: str, inst_id: int, colour):
        """Paint class/instance ids and colour (an [3] colour or an [h, w, 3] texture) in mask."""
        lab, ins, ph = self.label[sl], self.inst[sl], self.photo[sl]
        lab[mask] = ID[cls]
        ins[mask] = inst_id
        colour = np.asarray(colour, np.float32)
        if colour.ndim == 3:
            colour = np.broadcast_to(colour, mask.shape + (3,))
        ph[mask] = colour[mask] if colour.ndim == 3 else colour

    def rect(self, x0, y0, x1, y1, cls, inst_id, colour):
        b = self.box(x0, y0, x1, y1)
        if b is not None:
            sl, ys, xs = b
            mask = np.ones((ys.shape[0], xs.shape[1]), bool)
            self.paint(sl, mask, cls, inst_id, colour)

    def ellipse(self, cx, cy, rx, ry, cls, inst_id, colour, shade=0.0):
        b = self.box(cx - rx, cy - ry, cx + rx, cy + ry)
        if b is None or rx <= 0 or ry <= 0:
            return
        sl, ys, xs = b
        dy, dx = (ys - cy) / ry, (xs - cx) / rx
        mask = dx * dx + dy * dy <= 1.0
        col = np.asarray(colour, np.float32) * (1.0 - shade * np.clip(dy, 0, 1))[..., None]
        col = np.broadcast_to(col, mask.shape + (3,))
        self.paint(sl, mask, cls, inst_id, col)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], [H, W] float32: a coarse grid upsampled bilinearly."""
    ch, cw = max(2, cells // 2), max(2, cells)
    grid = rng.uniform(-1, 1, (ch, cw)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.BILINEAR))


def render_scene(width: int, height: int, rng: np.random.Generator):
    """One scene: (label uint8 [H, W], inst int32 [H, W], photo uint8 [H, W, 3])."""
    W, H = width, height
    cv = _Canvas(H, W)
    yy = np.arange(H, dtype=np.float32)[:, None] + 0.5       # [H, 1]
    xx = np.arange(W, dtype=np.float32)[None, :] + 0.5       # [1, W]

    y_h = H * rng.uniform(0.36, 0.5)                          # horizon
    x_v = W * rng.uniform(0.35, 0.65)                         # vanishing point
    depth = H - y_h
    xl_r, xr_r = W * rng.uniform(-0.15, 0.2), W * rng.uniform(0.8, 1.15)        # road at bottom
    xl_s, xr_s = xl_r - W * rng.uniform(0.2, 0.45), xr_r + W * rng.uniform(0.2, 0.45)
    sun = rng.choice([-1.0, 1.0])                             # which facades are sunlit

    def at(x_bottom, t):                                      # a street-parallel line's x at depth t
        return x_v + (x_bottom - x_v) * t

    # Sky: vertical gradient plus clouds.
    t_sky = np.clip(yy / max(y_h, 1.0), 0, 1)
    zenith = np.array([0.25, 0.45, 0.85]) * rng.uniform(0.8, 1.1)
    haze = np.array([0.75, 0.82, 0.9]) * rng.uniform(0.9, 1.05)
    sky = zenith + (haze - zenith) * t_sky[..., None]
    clouds = np.clip(_smooth_noise(rng, H, W, 6) * rng.uniform(0.5, 1.5), 0, 1)[..., None]
    cv.photo[:] = sky * (1 - 0.8 * clouds) + 0.95 * 0.8 * clouds
    cv.label[:] = ID["sky"]
    cv.inst[:] = ID["sky"]

    # Ground: t in (0, 1] is the inverse depth of a ground row; z = 1/t is distance along the street.
    below = (yy > y_h)
    t = np.clip((yy - y_h) / depth, 1e-3, None)              # [H, 1]
    z = 1.0 / t
    road = below & (xx >= at(xl_r, t)) & (xx < at(xr_r, t))
    walk = below & ~road & (xx >= at(xl_s, t)) & (xx < at(xr_s, t))
    lawn = below & ~road & ~walk
    grain = rng.normal(0, 1, (H, W)).astype(np.float32)
    asphalt = rng.uniform(0.25, 0.4)
    col = np.repeat((asphalt + 0.04 * grain + 0.05 * _smooth_noise(rng, H, W, 8))[..., None], 3, 2)
    u = (xx - at(xl_r, t)) / np.maximum(at(xr_r, t) - at(xl_r, t), 1e-3)
    n_lanes = int(rng.integers(2, 4))
    for k in range(1, n_lanes):
        dash = (np.abs(u - k / n_lanes) < 0.012) & (np.mod(z * 0.7, 1.0) < 0.5)
        col[dash & road] = 0.85
    cv.paint(np.s_[:, :], road, "road", ID["road"], col)
    paving = rng.uniform(0.5, 0.65)
    tiles = ((np.mod(z * 2.0, 1.0) < 0.06) | (np.mod((xx - x_v) / (t * W) * 8, 1.0) < 0.06))
    col = np.repeat((paving - 0.12 * tiles + 0.03 * grain)[..., None], 3, 2) * [1.0, 0.97, 0.92]
    cv.paint(np.s_[:, :], walk, "sidewalk", ID["sidewalk"], col)
    col = np.array([0.2, 0.45, 0.12]) * (1 + 0.3 * _smooth_noise(rng, H, W, 16))[..., None]
    cv.paint(np.s_[:, :], lawn, "vegetation", ID["vegetation"], col + 0.03 * grain[..., None])

    # Building facades on both sides: their feet lie on the sidewalks' outer lines, their tops
    # converge to the vanishing point too. Segments along the street have their own height,
    # colour and window grid; gaps show sky over the lawn.
    for side, x_out in ((-1, xl_s), (1, xr_s)):
        tb = np.clip((xx - x_v) / (x_out - x_v), 1e-3, None)  # [1, W] inverse depth of the facade foot
        on_side = (xx - x_v) * side > 0
        zb = 1.0 / tb
        edges = np.cumsum(rng.uniform(1.5, 6.0, 12)) * rng.uniform(0.5, 1.0)
        seg = np.searchsorted(edges, zb)                       # [1, W] segment index
        heights = rng.uniform(0.4, 1.6, 13) * (rng.uniform(size=13) > 0.15)
        tints = rng.uniform(0.35, 0.85, (13, 1)) * rng.uniform(0.75, 1.0, (13, 3))
        floors = rng.uniform(0.12, 0.22, 13)
        y_foot = y_h + tb * depth
        y_top = y_h - tb * depth * heights[seg]
        facade = on_side & (yy >= y_top) & (yy < y_foot) & (heights[seg] > 0)
        hw = (y_foot - yy) / (tb * depth)                      # height above the street, world units
        win = ((np.mod(zb * 1.3, 1.0) > 0.35) & (np.mod(zb * 1.3, 1.0) < 0.8) &
               (np.mod(hw / floors[seg], 1.0) > 0.35) & (np.mod(hw / floors[seg], 1.0) < 0.8) &
               (hw > floors[seg]))
        light = 1.0 if side == sun else 0.6
        col = tints[seg] * light * (1 + 0.05 * grain[..., None])
        glass = np.array([0.15, 0.2, 0.3]) + 0.35 * (1 - t_sky[..., None]) * light
        col = np.where(win[..., None], glass, col)
        cv.paint(np.s_[:, :], facade, "building", ID["building"], col)

    # Objects, painted far to near. Each is (t, kind, lateral position in [0, 1] of its strip).
    objects = []
    for _ in range(rng.integers(2, 7)):
        objects.append((rng.uniform(0.08, 0.9), "tree", rng.choice([-1, 1]), None))
    for _ in range(rng.integers(1, 4)):
        objects.append((rng.uniform(0.08, 0.95), "pole", rng.choice([-1, 1]), None))
    for _ in range(rng.integers(1, 4)):                       # traffic, sometimes two lanes abreast
        objects.append((rng.uniform(0.12, 0.8), "car", int(rng.integers(0, n_lanes)),
                        "abreast" if rng.uniform() < 0.5 and n_lanes > 1 else None))
    side = rng.choice([-1, 1])                                # a row of cars parked nose to tail
    t0 = rng.uniform(0.2, 0.7)
    for k in range(int(rng.integers(2, 5))):
        objects.append((t0 / (1 + 0.25 * k), "parked", side, None))
    for _ in range(rng.integers(1, 5)):                       # pedestrians, sometimes in pairs
        objects.append((rng.uniform(0.15, 0.95), "person", rng.choice([-1, 1]),
                        "pair" if rng.uniform() < 0.5 else None))
    objects.sort(key=lambda o: o[0])
    shadows = np.zeros((H, W), np.float32)

    road_w = xr_r - xl_r
    for t_o, kind, where, extra in objects:
        y_g = y_h + t_o * depth                               # foot of the object
        ppm = road_w * t_o / 10.0                             # pixels per metre at this depth
        if kind in ("tree", "pole", "person"):
            x_in = at(xl_r if where < 0 else xr_r, t_o)
            x_outer = at(xl_s if where < 0 else xr_s, t_o)
            frac = rng.uniform(0.1, 0.4) if kind == "pole" else rng.uniform(0.2, 0.8)
            x_g = x_in + (x_outer - x_in) * frac
        if kind == "tree":
            trunk_w, trunk_h = 0.35 * ppm, rng.uniform(2.0, 4.0) * ppm
            cv.rect(x_g - trunk_w / 2, y_g - trunk_h, x_g + trunk_w / 2, y_g, "vegetation",
                    ID["vegetation"], [0.3, 0.2, 0.12])
            r = rng.uniform(1.5, 3.0) * ppm
            green = np.array([0.1, 0.35, 0.08]) * rng.uniform(0.7, 1.3)
            cv.ellipse(x_g, y_g - trunk_h - 0.6 * r, r, r * rng.uniform(0.8, 1.2), "vegetation",
                       ID["vegetation"], green, shade=0.5)
        elif kind == "pole":
            pw, ph = 0.15 * ppm, rng.uniform(5.0, 8.0) * ppm
            cv.rect(x_g - pw / 2, y_g - ph, x_g + pw / 2, y_g, "pole", ID["pole"],
                    np.array([0.35, 0.36, 0.38]) * rng.uniform(0.7, 1.3))
        elif kind == "person":
            n = 2 if extra == "pair" else 1
            pw = 0.55 * ppm
            for j in range(n):
                _person(cv, rng, x_g + (j - (n - 1) / 2) * pw, y_g, ppm)
        else:
            if kind == "car":
                lane = (where + 0.5) / n_lanes
                xs_ = [at(xl_r + road_w * lane, t_o)]
                if extra == "abreast":                        # the next lane over, touching
                    xs_.append(xs_[0] + (1 if where + 1 < n_lanes else -1) * 1.8 * ppm)
            else:
                edge = (xl_r if where < 0 else xr_r)
                xs_ = [at(edge, t_o) - where * 1.1 * ppm]
            for x_c in xs_:
                _car(cv, rng, x_c, y_g, ppm, shadows)

    # Ego-vehicle hood: void, as in Cityscapes.
    if rng.uniform() < 0.5:
        hood = (yy > H * (1 - rng.uniform(0.05, 0.12)) + 0.08 * H * ((xx / W - 0.5) * 2) ** 2)
        shine = 0.1 * np.exp(-(((xx - W / 2) / (0.2 * W)) ** 2))          # sky reflection
        cv.paint(np.s_[:, :], np.broadcast_to(hood, (H, W)), "unlabeled", 0,
                 np.array([0.06, 0.06, 0.07]) + shine[..., None])

    # Lighting and sensor: cast shadows, exposure, tint, vignette, noise; then 8-bit.
    ph = cv.photo * (1 - 0.55 * shadows[..., None])
    ph = ph * rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, 3)
    vign = 1 - 0.25 * (((xx / W - 0.5) ** 2 + (yy / H - 0.5) ** 2) * 2)
    ph = ph * vign[..., None] + rng.normal(0, rng.uniform(0.005, 0.025), ph.shape)
    photo = (np.clip(ph, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv.label, cv.inst, photo


def _car(cv: _Canvas, rng, x_c, y_g, ppm, shadows):
    """A car seen from behind: body, cabin with rear window, tail lights, wheels."""
    iid = cv.new_instance("car")
    w, h = 1.8 * ppm, 1.5 * ppm
    colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.8, 1.1)
    b = cv.box(x_c - 0.6 * w, y_g - 0.15 * h, x_c + 0.6 * w, y_g + 0.12 * h)
    if b is not None:                                          # shadow on the ground below it
        sl, ys, xs = b
        m = ((xs - x_c) / (0.6 * w)) ** 2 + ((ys - y_g) / (0.13 * h + 1e-3)) ** 2 <= 1
        shadows[sl] = np.maximum(shadows[sl], m)
    cv.rect(x_c - 0.42 * w, y_g - 0.15 * h, x_c - 0.22 * w, y_g, "car", iid, [0.03, 0.03, 0.03])
    cv.rect(x_c + 0.22 * w, y_g - 0.15 * h, x_c + 0.42 * w, y_g, "car", iid, [0.03, 0.03, 0.03])
    cv.rect(x_c - 0.5 * w, y_g - 0.6 * h, x_c + 0.5 * w, y_g - 0.1 * h, "car", iid, colour)
    cv.rect(x_c - 0.38 * w, y_g - h, x_c + 0.38 * w, y_g - 0.6 * h, "car", iid, colour * 0.9)
    cv.rect(x_c - 0.32 * w, y_g - 0.93 * h, x_c + 0.32 * w, y_g - 0.65 * h, "car", iid,
            [0.1, 0.12, 0.16])
    for s in (-1, 1):
        cv.rect(x_c + s * 0.47 * w - 0.06 * w, y_g - 0.5 * h, x_c + s * 0.47 * w + 0.06 * w,
                y_g - 0.4 * h, "car", iid, [0.8, 0.05, 0.05])


def _person(cv: _Canvas, rng, x_c, y_g, ppm):
    """A pedestrian: legs, torso, head; clothing and skin colours vary."""
    iid = cv.new_instance("person")
    h = rng.uniform(1.55, 1.9) * ppm
    w = 0.45 * ppm
    trousers = rng.uniform(0.05, 0.4, 3)
    shirt = rng.uniform(0.05, 0.95, 3)
    skin = np.array([0.9, 0.7, 0.55]) * rng.uniform(0.45, 1.0)
    cv.rect(x_c - 0.35 * w, y_g - 0.48 * h, x_c - 0.03 * w, y_g, "person", iid, trousers)
    cv.rect(x_c + 0.03 * w, y_g - 0.48 * h, x_c + 0.35 * w, y_g, "person", iid, trousers)
    cv.rect(x_c - 0.5 * w, y_g - 0.85 * h, x_c + 0.5 * w, y_g - 0.45 * h, "person", iid, shirt)
    cv.ellipse(x_c, y_g - 0.92 * h, 0.25 * w, 0.08 * h, "person", iid, skin)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one scene: independent of how many scenes a run generates."""
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def prepare_output(out, tool: str, owned, subdirs, foreign=None) -> dict | None:
    """Make ``out`` ready for a fresh write by ``tool``, so that no file of an earlier run (more
    images, another size) stays behind to be trained on; refuse a folder ``tool`` did not write.

    These tools write the Cityscapes layout's names (``train_label``...), the same as a real
    dataset's, so only a folder whose ``classes.json`` ``owned(meta)`` accepts is cleared: each
    of ``subdirs(meta)`` (plain folder names, checked) is removed whole, nothing else in ``out``
    is touched. ``foreign(out, meta)``, when given, lists what in ``out`` the tool did not write
    (entries, or why the classes.json is not this folder's own); anything listed refuses the
    folder too: ``classes.json`` alone is no proof (another tool may have copied it). An absent or
    empty ``out`` is fine; any other folder is refused, untouched, with an :class:`InputError`
    naming it, what it holds and the fix. Returns the earlier ``classes.json`` (or None).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{tool}: --out {out} is a file, not a folder; pass a new folder as --out")
    check_output_folder(out, "--out", "a dataset")   # under a file, or in a folder this user cannot write
    if not out.exists():
        return None
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    if not entries:
        return None
    try:
        meta = json.loads((out / "classes.json").read_text())
    except (OSError, ValueError):
        meta = None
    if not (isinstance(meta, dict) and owned(meta)):
        held = ", ".join(entries[:6]) + (f", ... ({len(entries)} entries)" if len(entries) > 6 else "")
        marker = ("a classes.json that this tool did not write" if (out / "classes.json").exists()
                  else "no classes.json")
        raise InputError(f"{tool}: the output folder {out} already holds {held} and {marker}, so "
                         f"it may be a real dataset: nothing was written or deleted. Pass another "
                         f"--out (a new or empty folder), or remove {out} yourself if it is yours "
                         f"to replace")
    alien = foreign(out, meta) if foreign is not None else []
    if alien:
        listed = "; ".join(alien[:4]) + (f"; ... ({len(alien)} in all)" if len(alien) > 4 else "")
        raise InputError(f"{tool}: the output folder {out} holds what this tool did not write ({listed}), "
                         f"so it may be another tool's output or a dataset of yours: nothing was written "
                         f"or deleted. Pass another --out (a new or empty folder), or remove {out} "
                         f"yourself if it is yours to replace")
    for name in subdirs(meta):
        d = out / check_name(name, "a split folder of classes.json", out)
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
        elif d.exists() or d.is_symlink():
            d.unlink()
    return meta


@contextlib.contextmanager
def writing(tool: str, out):
    """Turn an OS error met writing into ``out`` (a read-only folder, a read-only file system, a
    full disk) into one InputError naming the path, the error and the fix. Other OS errors (an
    input that cannot be read) pass through."""
    try:
        yield
    except OSError as e:
        err = write_error(tool, Path(out), e)
        if err is None:
            raise
        raise err from None


def write_error(tool: str, out: Path, e: OSError) -> InputError | None:
    """:func:`writing`'s message for ``e``; None when ``e`` is not about ``out``, a path inside it
    or a folder above it."""
    if not e.filename:
        return None
    failed = Path(os.path.abspath(e.filename))
    full = Path(os.path.abspath(out))
    if not (failed == full or full in failed.parents or failed in full.parents):
        return None
    given = Path(e.filename)
    above = next((q for q in (given, *given.parents) if q.exists() or q.is_symlink()), None)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {above} writable, or pass --out a folder you can write to" if above else \
            "pass --out a folder you can write to"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST) and above is not None and not above.is_dir():
        fix = f"{above} is a file, not a folder; pass --out a folder"
    else:
        fix = "pass --out a folder on another disk, or free space" if e.errno == errno.ENOSPC else \
            "pass another --out"
    return InputError(f"{tool}: cannot write {e.filename} ({e.strerror or type(e).__name__}); {fix}")


def _written_here(meta: dict) -> bool:
    """classes.json written by this tool (``written_by``, or the ``name`` of earlier versions)."""
    return meta.get("written_by") == TOOL or ("written_by" not in meta and
                                              meta.get("name") == "synthetic_streets")


def _split_folders() -> list[str]:
    return [f"{s}_{k}" for s in SPLITS for k in ("label", "inst", "img")]


def foreign_entries(out: Path, meta: dict, folders, written) -> list[str]:
    """What in ``out`` (whose classes.json names the tool) the tool did not write: a classes.json
    written for another folder (``meta["folder"]``: a copy), entries other than classes.json and
    ``folders``, and files of those folders that ``written(folder, file)`` does not accept (each
    folder named once, with its first such file and how many more). For ``prepare_output``'s
    ``foreign``."""
    found = []
    folder = meta.get("folder")
    if folder is not None and folder != str(out.resolve()):
        found.append(f"its classes.json was written into {folder}, so it is a copy")
    ours = set(folders)
    for p in sorted(out.iterdir()):
        if p.name == "classes.json" and p.is_file() and not p.is_symlink():
            continue
        if p.name not in ours or p.is_symlink() or not p.is_dir():
            found.append(p.name + ("/" if p.is_dir() else ""))
            continue
        extra = [f.name for f in sorted(p.iterdir()) if not f.is_file() or f.is_symlink() or not written(p, f)]
        if extra:
            found.append(f"{p.name}/{extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    return found


def _foreign(out: Path, meta: dict) -> list[str]:
    """What in ``out`` this tool did not write (:func:`foreign_entries`): its split folders hold
    only their scenes (``{split}_NNNNN.png``, photos .jpg too, at most the count classes.json
    records)."""
    def written(folder: Path, f: Path) -> bool:
        split, kind = folder.name.split("_")
        n = meta.get(f"n_{split}")
        exts = ("png", "jpg") if kind == "img" else ("png",)
        m = re.fullmatch(rf"{split}_([0-9]{{5}})\.({'|'.join(exts)})", f.name)
        return m is not None and not (isinstance(n, int) and int(m.group(1)) >= n)
    return foreign_entries(out, meta, _split_folders(), written)


def generate(out_dir, n_train: int = 100, n_test: int = 10, width: int = 256, height: int = 128,
             seed: int = 0, img_ext: str = "png") -> dict:
    """Write a synthetic street dataset in the Cityscapes layout under ``out_dir``.

    Files: ``{split}_label/{split}_{i:05d}.png`` (uint8 ids < ``LABEL_NC``),
    ``{split}_inst/…png`` (uint16 ids; ``class*1000+k`` for car/person, else the class id),
    ``{split}_img/…{img_ext}`` (RGB) for split in train/test, and ``classes.json``.
    Returns the metadata written to ``classes.json``. An earlier run's split folders are replaced
    (a split with n = 0 is left absent); a non-empty folder this tool did not write is refused
    (see :func:`prepare_output`).
    """
    if not (16 <= width <= MAX_SIZE[0] and 16 <= height <= MAX_SIZE[1]):
        raise ConfigError(f"synthetic_streets: size {width}x{height} is outside 16x16..{MAX_SIZE[0]}x"
                         f"{MAX_SIZE[1]}; pass --width/--height in that range")
    if img_ext not in ("png", "jpg"):
        raise ConfigError(f"synthetic_streets: img_ext={img_ext!r}; use 'png' or 'jpg'")
    # checked before the output folder is cleared: a refused value leaves it as it was
    for name, n in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"synthetic_streets: --{name} {n}: must be a whole number >= 0; pass "
                              f"--{name} 0 or more")
    if not str(out_dir).strip():
        raise ConfigError(f"synthetic_streets: --out {str(out_dir)!r} is empty; pass the folder to write "
                          "the dataset to (e.g. --out data/streets)")
    out = Path(out_dir)
    meta = {"name": "synthetic_streets", "written_by": TOOL, "label_nc": LABEL_NC,
            "classes": [{"id": i, "name": n, "thing": n in THING_CLASSES}
                        for i, n in enumerate(CLASSES)],
            "void_id": 0,
            "instance_ids": "class_id*1000 + k for thing classes (car, person), else class_id",
            "seed": seed, "width": width, "height": height, "n_train": n_train, "n_test": n_test}
    with writing("synthetic_streets", out):
        prepare_output(out, "synthetic_streets", _written_here, lambda _: _split_folders(), _foreign)
        # the folder is marked ours before any scene is written, so a run stopped halfway is replaced
        # by the next, not refused; "complete" says whether every scene it counts is there
        out.mkdir(parents=True, exist_ok=True)
        meta["folder"] = str(out.resolve())   # a copy of this classes.json elsewhere is not ours
        (out / "classes.json").write_text(json.dumps({**meta, "complete": False}, indent=1) + "\n")
        for split, n in (("train", n_train), ("test", n_test)):
            if n <= 0:
                continue
            dirs = {k: out / f"{split}_{k}" for k in ("label", "inst", "img")}
            for d in dirs.values():
                d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                label, inst, photo = render_scene(width, height, scene_rng(seed, split, i))
                stem = f"{split}_{i:05d}"
                Image.fromarray(label, "L").save(dirs["label"] / f"{stem}.png", compress_level=1)
                Image.fromarray(inst.astype(np.uint16)).save(dirs["inst"] / f"{stem}.png",
                                                              compress_level=1)
                if img_ext == "png":
                    Image.fromarray(photo, "RGB").save(dirs["img"] / f"{stem}.png", compress_level=1)
                else:
                    Image.fromarray(photo, "RGB").save(dirs["img"] / f"{stem}.jpg", quality=95)
        meta["complete"] = True
        (out / "classes.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def synthetic_streets_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pix2pixhd.datasets.synthetic_streets``."""
    from pix2pixhd.argparsing import make_parser
    p = make_parser("python -m pix2pixhd.datasets.synthetic_streets", __doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (Cityscapes layout)")
    from pix2pixhd.errors import add_debug_option
    add_debug_option(p)
    p.add_argument("--n_train", type=int, default=100,
                   help="number of training scenes (train_label/, train_inst/, train_img/)")
    p.add_argument("--n_test", type=int, default=10,
                   help="number of test scenes (test_*/; 0 writes no test split)")
    p.add_argument("--width", type=int, default=256,
                   help=f"pixels: scene width (16..{MAX_SIZE[0]})")
    p.add_argument("--height", type=int, default=128,
                   help=f"pixels: scene height (16..{MAX_SIZE[1]})")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the scenes: the same seed writes the same images")
    p.add_argument("--img_ext", choices=("png", "jpg"), default="png",
                   help="photo format: png (lossless) or jpg (quality 95); label and instance "
                        "maps are always PNG")
    return p


def main(argv=None) -> None:
    p = synthetic_streets_parser()
    a = p.parse_args(argv)
    t = time.perf_counter()
    meta = generate(a.out, a.n_train, a.n_test, a.width, a.height, a.seed, a.img_ext)
    print(f"wrote {a.n_train} train + {a.n_test} test scenes of {a.width}x{a.height} to "
          f"{os.fspath(a.out)} (label_nc={meta['label_nc']}) in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))

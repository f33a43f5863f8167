"""Preprocessing of one sample: the reference's ``resize_or_crop`` modes, identical for all maps.

The geometry (output size, crop window, flip) is decided once per sample from the source size and
a per-sample RNG, then applied to label, instance, feature and photo alike, so they stay pixel
aligned. Id maps (labels, instances, features) resample NEAREST, photos BICUBIC. Everything
stays uint8/int32 numpy [H, W] or [H, W, C]; the device-side code makes floats.

Modes (``resize_or_crop``), as in NVIDIA/pix2pixHD ``data/base_dataset.py``:
  resize_and_crop       resize to loadSize x loadSize, random fineSize x fineSize crop
  crop                  random fineSize x fineSize crop of the original
  scale_width           width to loadSize, height keeps the aspect ratio (the reference default)
  scale_width_and_crop  scale_width, then the random crop
  none                  each side rounded *up* to ``required_multiple`` (the generator's
                        2^n_downsample_global * 2^n_local_enhancers), by resampling (the
                        reference rounds to the nearest multiple, halves to even, so a side
                        can shrink: here none does)
When only one side of the (resized) image is larger than fineSize, the crop is skipped on the
other side: the sample is min(fineSize, side) on each side. Here the reference differs: it crops
fineSize x fineSize anyway, and PIL fills the part outside the image with zeros (label 0,
instance 0, a black photo). When neither side is larger, both leave the image whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


@dataclass(frozen=True)
class Geometry:
    """Where one sample's pixels go: resize to ``size`` (w, h), crop ``box``, then maybe flip."""
    size: tuple[int, int]                 # (w, h) after the resize step
    box: tuple[int, int, int, int]        # (x0, y0, x1, y1) crop in the resized image
    flip: bool

    @property
    def out_size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return x1 - x0, y1 - y0


def size_options(mode: str, load_size: int, fine_size: int) -> dict:
    """The options that decide a sample's size in ``mode``, in order: {'resize_or_crop': mode,
    'loadSize': ..., 'fineSize': ...}, less the sizes that mode does not read (none: neither;
    crop: fineSize; scale_width: loadSize), for messages that name only what plays a part."""
    out = {"resize_or_crop": mode}
    if mode in ("resize_and_crop", "scale_width", "scale_width_and_crop"):
        out["loadSize"] = load_size
    if "crop" in mode:
        out["fineSize"] = fine_size
    return out


def resized_size(w: int, h: int, mode: str, load_size: int, required_multiple: int) -> tuple[int, int]:
    """(w, h) after the resize step of ``mode``, before any crop."""
    if mode not in MODES:
        raise ValueError(f"resize_or_crop={mode!r}; expected one of {MODES}")
    if mode == "resize_and_crop":
        return load_size, load_size
    if mode in ("scale_width", "scale_width_and_crop"):
        return load_size, max(1, int(load_size * h / w))
    if mode == "none":
        m = required_multiple
        return -(-w // m) * m, -(-h // m) * m
    return w, h


def output_size(w: int, h: int, mode: str, load_size: int, fine_size: int,
                required_multiple: int) -> tuple[int, int]:
    """(w, h) of the tensors a source image of (w, h) becomes; no randomness involved."""
    rw, rh = resized_size(w, h, mode, load_size, required_multiple)
    if "crop" in mode and (rw > fine_size or rh > fine_size):
        return min(fine_size, rw), min(fine_size, rh)
    return rw, rh


def make_geometry(w: int, h: int, mode: str, load_size: int, fine_size: int, flip_allowed: bool,
                  required_multiple: int, rng: np.random.Generator) -> Geometry:
    """Draw one sample's geometry. ``rng`` is seeded from (seed, epoch, index) by the dataset."""
    rw, rh = resized_size(w, h, mode, load_size, required_multiple)
    ow, oh = output_size(w, h, mode, load_size, fine_size, required_multiple)
    x0 = int(rng.integers(0, rw - ow + 1))
    y0 = int(rng.integers(0, rh - oh + 1))
    flip = bool(rng.uniform() < 0.5) and flip_allowed
    return Geometry((rw, rh), (x0, y0, x0 + ow, y0 + oh), flip)


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    # Pixel-centre mapping, the same one PIL's NEAREST uses, so ids land where bicubic photo
    # pixels land.
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def apply_ids(a: np.ndarray, g: Geometry) -> np.ndarray:
    """Id map [H, W] or [H, W, C] (any integer dtype) -> resized (NEAREST), cropped, flipped."""
    h, w = a.shape[:2]
    (rw, rh), (x0, y0, x1, y1) = g.size, g.box
    rows = _nearest_index(rh, h)[y0:y1] if rh != h else np.arange(y0, y1)
    cols = _nearest_index(rw, w)[x0:x1] if rw != w else np.arange(x0, x1)
    if g.flip:
        cols = cols[::-1]
    if rw == w and rh == h and not g.flip:
        return np.array(a[y0:y1, x0:x1])      # a copy: PIL's arrays are read-only
    return a[rows[:, None], cols[None, :]]


def apply_photo(img: Image.Image, g: Geometry) -> np.ndarray:
    """RGB PIL image -> uint8 [h, w, 3], resized BICUBIC, cropped, flipped."""
    if img.size != g.size:
        img = img.resize(g.size, Image.BICUBIC)
    a = np.asarray(img)[g.box[1]:g.box[3], g.box[0]:g.box[2]]
    if g.flip:
        a = a[:, ::-1]
    return np.array(a)                        # contiguous and writable (PIL's arrays are read-only)

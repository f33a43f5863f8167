"""Differentiable augmentation of what the discriminator sees (DiffAugment, Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training").

On a small dataset D memorises the few real images and its gradients stop telling G anything.
DiffAugment transforms both D's real and fake inputs with random, differentiable operations, in
D's update and in G's, so D cannot memorise exact pixels and G still gets gradients through the
transform. Training option ``--diffaug`` (pix2pixHD and pix2pix; off by default).

Policies (applied in this order, each per sample; images are in [-1, 1]):

  color        brightness + U[-0.5, 0.5), saturation x U[0, 2) (around the per-pixel channel
               mean), contrast x U[0.5, 1.5) (around the per-sample mean), on the IMAGE channels
               only: the conditioning channels (one-hot labels, boundary map, a conditioning
               photo) are left as they are, since a jittered one-hot map is no longer one-hot.
  translation  an integer shift of up to 1/8 of the height and width, zero fill, on all channels
               (label map and image move together).
  cutout       one zeroed rectangle of half the height and width, centred anywhere, on all channels.

Conditional pairs: one :func:`draw` gives every sample its parameters; :func:`augment` applies
the same parameters to every tensor it is given with them, so the label map and the image of a
pair, and the real pair and the fake pair of a step, get the same transform (feature matching
compares D's features of the real and the fake pair, so they must be transformed alike). A
tensor holding several stacked copies of the batch (``torch.cat([real_in, fake_in], 0)``) gets
the parameters repeated. Parameters are drawn from torch's global CPU RNG (or ``generator``), so
a seeded run repeats and a resumed run continues them; no torchvision, pure torch ops, so
gradients reach the input (not the random parameters).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["POLICIES", "parse_policy", "AugmentParams", "draw", "augment"]

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def parse_policy(spec: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``""`` -> ``()`` (off). An
    unknown or repeated name raises ValueError naming the value and the fix."""
    if not spec:
        return ()
    names = [s.strip() for s in spec.split(",")]
    bad = [n for n in names if n not in POLICIES]
    if bad:
        raise ValueError(f"diffaug={spec!r}: unknown policy {bad[0]!r}; give a comma list of "
                         f"{', '.join(POLICIES)} (e.g. --diffaug color,translation,cutout), or '' for none")
    if len(set(names)) != len(names):
        raise ValueError(f"diffaug={spec!r} names a policy twice; give each of {', '.join(POLICIES)} "
                         "at most once")
    return tuple(names)


@dataclass(frozen=True)
class AugmentParams:
    """One draw for ``n`` samples of size ``height`` x ``width`` (CPU tensors; None: policy off).

    brightness, saturation, contrast: [n] factors; shift: [n, 2] integer (dy, dx) in pixels;
    cutout: [n, 2] integer (cy, cx) centres of the zeroed rectangle.
    """
    policy: tuple[str, ...]
    n: int
    height: int
    width: int
    brightness: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    cutout: torch.Tensor | None = None


def _randint(low: int, high: int, size, generator) -> torch.Tensor:
    return torch.randint(low, high, size, generator=generator, dtype=torch.int64)


def _half_up(x: float) -> int:
    """``int(x + 0.5)``, as DiffAugment's code sizes its shifts and cutouts (Python's ``round``
    rounds halves to even: 20 × 0.125 gives 2 there, 3 here and in the reference)."""
    return int(x + 0.5)


def draw(policy: tuple[str, ...] | str, n: int, height: int, width: int,
         generator: torch.Generator | None = None) -> AugmentParams:
    """Random parameters of ``policy`` for ``n`` samples of ``height`` x ``width``."""
    policy = parse_policy(policy) if isinstance(policy, str) else tuple(policy)
    kw = {}
    if "color" in policy:
        u = torch.rand(3, n, generator=generator)
        kw.update(brightness=u[0] - 0.5, saturation=u[1] * 2, contrast=u[2] + 0.5)
    if "translation" in policy:
        sy, sx = _half_up(height * TRANSLATION_RATIO), _half_up(width * TRANSLATION_RATIO)
        kw["shift"] = torch.stack([_randint(-sy, sy + 1, (n,), generator),
                                   _randint(-sx, sx + 1, (n,), generator)], 1)
    if "cutout" in policy:
        # centres as the reference draws them: one more position when the rectangle's side is even
        ch, cw = _half_up(height * CUTOUT_RATIO), _half_up(width * CUTOUT_RATIO)
        kw["cutout"] = torch.stack([_randint(0, height + 1 - ch % 2, (n,), generator),
                                    _randint(0, width + 1 - cw % 2, (n,), generator)], 1)
    return AugmentParams(policy, n, height, width, **kw)


def _per_sample(t: torch.Tensor, reps: int, x: torch.Tensor) -> torch.Tensor:
    """[n] parameters -> [reps * n, 1, 1, 1] in x's dtype and device (stacked copies repeat)."""
    return t.repeat(reps).to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _color(img: torch.Tensor, p: AugmentParams, reps: int) -> torch.Tensor:
    img = img + _per_sample(p.brightness, reps, img)
    mean = img.mean(dim=1, keepdim=True)
    img = (img - mean) * _per_sample(p.saturation, reps, img) + mean
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    return (img - mean) * _per_sample(p.contrast, reps, img) + mean


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """out[i, :, y, x] = x[i, :, y - dy_i, x - dx_i], zero where that falls outside."""
    n, _, h, w = x.shape
    sy, sx = int(shift[:, 0].abs().max()), int(shift[:, 1].abs().max())
    padded = F.pad(x, [sx, sx, sy, sy])
    shift = shift.to(x.device)
    iy = torch.arange(h, device=x.device).unsqueeze(0) - shift[:, :1] + sy   # [n, h]
    ix = torch.arange(w, device=x.device).unsqueeze(0) - shift[:, 1:] + sx   # [n, w]
    b = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded[b, :, iy.unsqueeze(2), ix.unsqueeze(1)]                      # [n, h, w, C]
    return out.permute(0, 3, 1, 2)


def _cutout_mask(centres: torch.Tensor, h: int, w: int, x: torch.Tensor) -> torch.Tensor:
    """[n, 1, h, w] mask: 0 inside each sample's rectangle (half the height and width), else 1."""
    ch, cw = _half_up(h * CUTOUT_RATIO), _half_up(w * CUTOUT_RATIO)
    centres = centres.to(x.device)
    y0, x0 = centres[:, :1] - ch // 2, centres[:, 1:] - cw // 2                # [n, 1]
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = (ys >= y0) & (ys < y0 + ch)                                          # [n, h]
    cols = (xs >= x0) & (xs < x0 + cw)                                          # [n, w]
    return (~(rows.unsqueeze(2) & cols.unsqueeze(1))).unsqueeze(1).to(x.dtype)


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def augment(x: torch.Tensor, params: AugmentParams, image_channels: int) -> torch.Tensor:
    """``x`` [k*n, C, H, W] transformed by ``params`` (drawn for n samples; k stacked copies of
    the batch each get the same n draws). ``image_channels``: the last this many channels are the
    image (colour-jittered); the ones before them are the condition (moved and cut, never
    jittered). Differentiable in ``x``; returns a new tensor in x's memory layout."""
    n_total, c, h, w = x.shape
    if (h, w) != (params.height, params.width) or n_total % params.n:
        raise ValueError(f"diffaug parameters for {params.n} samples of {params.height}x{params.width} "
                         f"do not fit a batch of {n_total} of {h}x{w}; draw them for this batch")
    if not 0 < image_channels <= c:
        raise ValueError(f"image_channels={image_channels} must be in 1..{c}")
    reps = n_total // params.n
    layout = _layout(x)
    if params.brightness is not None:
        cond, img = x[:, :c - image_channels], x[:, c - image_channels:]
        img = _color(img, params, reps)
        x = torch.cat([cond, img], 1) if cond.shape[1] else img
    if params.shift is not None:
        x = _translate(x, params.shift.repeat(reps, 1))
    if params.cutout is not None:
        x = x * _cutout_mask(params.cutout.repeat(reps, 1), h, w, x)
    return x.contiguous(memory_format=layout)

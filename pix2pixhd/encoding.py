"""Input encoding on the device: label ids → one-hot, instance ids → boundary map, uint8 → [-1, 1].

The data pipeline hands over integer/uint8 tensors (4× smaller than float over PCIe); everything
here runs on whatever device they arrive on. Layout of every result: [N, C, H, W] float.
"""
from __future__ import annotations

import torch

from pix2pixhd.errors import ConfigError, InputError, UserError


class LabelRangeError(UserError, ValueError):
    """A label id does not fit ``label_nc``."""


def one_hot(label: torch.Tensor, label_nc: int, *, dtype: torch.dtype = torch.float32,
            source: str | None = None) -> torch.Tensor:
    """label [N, 1, H, W] integer ids in [0, label_nc) → [N, label_nc, H, W] one-hot.

    An id >= label_nc (or < 0) raises :class:`LabelRangeError` naming the id, where it came from
    and the fix, instead of the reference's device-side assert. A float (or complex) label map is
    refused (:class:`~pix2pixhd.errors.InputError`) rather than truncated (2.7 would become class
    2), and so is an empty one (no sample, or no pixel).
    """
    if label.dim() != 4 or label.shape[1] != 1:
        raise ValueError(f"label map must be [N, 1, H, W]; got shape {tuple(label.shape)}")
    named = f" ({source})" if source else ""
    if label.is_floating_point() or label.is_complex():
        raise InputError(f"label map{named} has dtype {label.dtype}; label ids must be an integer tensor "
                         "(e.g. torch.int64 or uint8): convert with label.round().long() if the "
                         "values are whole class ids")
    if label.numel() == 0:
        raise InputError(f"label map{named} is empty (shape {tuple(label.shape)}); pass at least one "
                         "map of at least 1x1 pixels")
    ids = label.long()
    lo, hi = torch.stack(torch.aminmax(ids)).tolist()  # one pass, one device sync
    if lo < 0 or hi >= label_nc:
        where = f" in {source}" if source else ""
        if lo < 0:   # label_nc is not the problem
            fix = ("label ids must be >= 0; the file holds negative ids (a signed or int32 label "
                   "map?): save the labels as non-negative class ids")
        elif hi == 255:
            fix = ("255 is usually an 'ignore' (void) id, e.g. in Cityscapes trainIds: remap it to "
                   "a void class below label_nc when preparing the data; set --label_nc 256 only "
                   "if 255 is a real class (the generator then takes 256 input channels)")
        else:
            fix = f"set --label_nc {hi + 1} or remap the ids"
        raise LabelRangeError(
            f"label id {lo if lo < 0 else hi}{where} is outside [0, label_nc={label_nc}); {fix}")
    n, _, h, w = ids.shape
    out = torch.zeros(n, label_nc, h, w, dtype=dtype, device=label.device)
    return out.scatter_(1, ids, 1.0)


def boundary_map(inst: torch.Tensor) -> torch.Tensor:
    """inst [N, 1, H, W] instance ids → [N, 1, H, W] float, 1 where any 4-neighbour differs.

    Only equality of neighbours is used, so a float map of whole ids (the reference's instance
    tensors are float; benchmarks/baseline.py feeds such) gives the integer map's boundaries.
    ``instance_average`` and the Encoder, which index by id, refuse floats.
    """
    if inst.dim() != 4 or inst.shape[1] != 1:
        raise ValueError(f"instance map must be [N, 1, H, W]; got shape {tuple(inst.shape)}")
    edge = torch.zeros(inst.shape, dtype=torch.bool, device=inst.device)
    dx = inst[..., :, 1:] != inst[..., :, :-1]
    dy = inst[..., 1:, :] != inst[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()


def image_to_float(img: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N, C, H, W] in [0, 255] → float in [-1, 1] (floats in [-1, 1] pass through unchanged).

    Other integer dtypes (an int64 or int32 image) are scaled as uint8 is when their values lie
    in [0, 255], else refused (InputError), as are bool and complex images. A float image with
    values outside [-1, 1] (0-255 levels as float) is refused too (one aminmax, a device sync,
    on the float path only); a [0, 1] float image cannot be told from [-1, 1] data and is read as
    [-1, 1]: pass uint8 photos.
    """
    if img.dtype == torch.uint8:
        return img.to(dtype).div_(127.5).sub_(1.0)
    if img.is_floating_point():
        if img.numel():
            lo, hi = torch.stack(torch.aminmax(img)).tolist()  # one pass, one device sync; NaN passes
            if lo < -1 or hi > 1:
                raise InputError(f"float image of dtype {img.dtype} has values in [{lo:g}, {hi:g}]; float "
                                 "images must lie in [-1, 1]: pass uint8 values 0-255 instead (e.g. "
                                 "x.round().clamp(0, 255).to(torch.uint8) for 0-255 levels, or "
                                 "(x * 255).round().to(torch.uint8) for a [0, 1] float)")
        return img.to(dtype)
    if img.dtype == torch.bool or img.is_complex():
        raise InputError(f"image has dtype {img.dtype}; pass uint8 (or integer) values in [0, 255] "
                         "or floats in [-1, 1]")
    if img.numel():
        lo, hi = torch.stack(torch.aminmax(img)).tolist()  # one pass, one device sync
        if lo < 0 or hi > 255:
            raise InputError(f"image of dtype {img.dtype} has values in [{lo}, {hi}]; integer images "
                             "must be 8-bit values in [0, 255] (convert 16-bit ones, e.g. "
                             "(img // 257).to(torch.uint8)), or pass floats in [-1, 1]")
    return img.to(dtype).div_(127.5).sub_(1.0)


def float_to_uint8(img: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] → uint8 [0, 255], rounded (on purpose: it round-trips uint8 exactly; the
    reference's tensor2im truncates, about half a grey level darker on average — see README)."""
    return ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _check_label_nc(label_nc: int) -> None:
    if label_nc < 0:
        raise ConfigError(f"label_nc={label_nc}: must be the number of label classes (> 0), or 0 when "
                          "the input is an RGB image instead of a label map")


def encode_input(label: torch.Tensor, inst: torch.Tensor | None = None,
                 feat: torch.Tensor | None = None, *, label_nc: int,
                 dtype: torch.dtype = torch.float32,
                 source: str | None = None) -> torch.Tensor:
    """The generator's input: [one-hot(label) | RGB input] ⊕ [boundary(inst)] ⊕ [feat].

    label: [N, 1, H, W] ids when label_nc > 0, else an image [N, C, H, W] (uint8 or [-1, 1] float;
    a float outside [-1, 1] is refused, but a [0, 1] float photo cannot be told from [-1, 1] data
    and would be misread silently: pass uint8 photos, e.g. (x * 255).round().to(torch.uint8)).
    inst: [N, 1, H, W] integer instance ids, or None for no_instance. feat: [N, F, H, W] or None
    (uint8 as stored by --load_features, or float features taken as they are).
    Returns a new [N, label_nc (or C) + (1 if inst) + F, H, W] float tensor of ``dtype`` (never
    the caller's ``label`` itself). A negative ``label_nc`` is refused (ConfigError).
    """
    _check_label_nc(label_nc)
    parts = [one_hot(label, label_nc, dtype=dtype, source=source) if label_nc > 0
             else image_to_float(label, dtype)]
    if inst is not None:
        parts.append(boundary_map(inst).to(dtype))
    if feat is not None:   # E's or the clusters' floats are not photos: not range-checked here
        parts.append(feat.to(dtype) if feat.is_floating_point() else image_to_float(feat, dtype))
    if len(parts) > 1:
        return torch.cat(parts, 1)
    # a float photo already of ``dtype`` comes back from image_to_float as itself: a copy, so
    # that editing the result in place does not edit the caller's input
    return parts[0].clone() if parts[0] is label else parts[0]


def input_channels(label_nc: int, input_nc: int = 3, no_instance: bool = False,
                   feat_num: int = 0) -> int:
    """Channel count of :func:`encode_input`'s result (the generator's input_nc)."""
    _check_label_nc(label_nc)
    return (label_nc if label_nc > 0 else input_nc) + (0 if no_instance else 1) + feat_num

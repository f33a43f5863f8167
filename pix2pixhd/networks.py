"""The pix2pixHD networks (Wang et al. 2018) with NVIDIA's names, arguments and defaults.

GlobalGenerator, LocalEnhancer, ResnetBlock, NLayerDiscriminator, MultiscaleDiscriminator and
Encoder build the same nn.Sequential index layout as NVIDIA/pix2pixHD ``models/networks.py``, so
their state_dicts carry the reference's keys and shapes (checked against
``shared/reference/pix2pixhd_state_dict_shapes.json`` in the tests) and its checkpoints load
with ``load_state_dict`` directly.

Tensors at the boundaries: [N, C, H, W], NCHW or channels-last, any float dtype. Generators need
H and W divisible by ``required_multiple`` (2**n_downsampling, times 2**n_local_enhancers);
padding to it is the caller's job (the data pipeline and synthesis do it), a wrong size raises.

``upsample`` (GlobalGenerator, LocalEnhancer; ``--upsample``): 'transpose' is the reference's
stride-2 ConvTranspose2d; 'resize' replaces each by a :class:`ResizeConv2d` (nearest x2, then a
3x3 conv; Odena et al. 2016) at the same module index, so the keys stay the reference's while the
weight shapes differ ([out, in, 3, 3] instead of [in, out, 3, 3]).
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from pix2pixhd.config import UPSAMPLE_MODES
from pix2pixhd.errors import InputError
from pix2pixhd.layers import Dropout, InstanceNormAct, init_weights, norm_act

__all__ = ["GlobalGenerator", "LocalEnhancer", "ResnetBlock", "NLayerDiscriminator",
           "MultiscaleDiscriminator", "Encoder", "ResizeConv2d", "instance_average", "count_parameters",
           "check_input_size", "UPSAMPLE_MODES"]


def count_parameters(model: nn.Module) -> int:
    """The number of scalars in ``model``'s parameters (trainable or frozen; buffers such as
    BatchNorm's running statistics not counted); shared parameters count once."""
    return sum(p.numel() for p in model.parameters())


def check_input_size(x: torch.Tensor, multiple: int, who: str, why: str = "",
                     fix: str = "pad or resize the input to a multiple of {multiple} (e.g. {padded}); "
                                "the data pipeline's resize_or_crop=none does this") -> None:
    """Raise ValueError unless H and W of ``x`` divide by ``multiple``: '``who``: input size WxH
    (WxH) is not divisible by M``why``; ``fix``', where ``fix`` may name {multiple} and {padded}
    (the size padded up to the multiple, WxH). Every generator and E check their input with it."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        padded = f"{-(-w // multiple) * multiple}x{-(-h // multiple) * multiple}"
        raise ValueError(f"{who}: input size {w}x{h} (WxH) is not divisible by {multiple}{why}; "
                         + fix.format(multiple=multiple, padded=padded))


def _pad(padding_type: str, p: int) -> tuple[list[nn.Module], int]:
    """Padding module(s) and the conv padding that together pad by ``p`` as the reference does."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(p)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(p)], 0
    if padding_type == "zero":
        return [], p
    raise ValueError(f"padding_type={padding_type!r}; expected 'reflect', 'replicate' or 'zero'")


class ResnetBlock(nn.Module):
    """x + [pad, conv3, norm, relu, (dropout), pad, conv3, norm](x); keys conv_block.1/.5.

    ``use_bias``: pix2pixHD's convs always carry a bias; CycleGAN's (``ResnetGenerator``) only
    before instance norm (a bias before BatchNorm is cancelled by its shift).
    """

    def __init__(self, dim: int, padding_type: str = "reflect", norm: str = "instance",
                 use_dropout: bool = False, use_bias: bool = True):
        super().__init__()
        pad, p = _pad(padding_type, 1)
        layers: list[nn.Module] = pad + [nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias)]
        layers += norm_act(norm, dim, "relu")
        if use_dropout:
            layers += [Dropout(0.5)]
        layers += _pad(padding_type, 1)[0] + [nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias)]
        layers += norm_act(norm, dim, "none")[:1]  # the residual add follows this norm
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.conv_block[-1]
        if isinstance(last, InstanceNormAct):
            # The residual add is fused into the second norm (act='none').
            h = x
            for layer in self.conv_block[:-1]:
                h = layer(h)
            return last(h, residual=x)
        return x + self.conv_block(x)


class ResizeConv2d(nn.Conv2d):
    """x2 upsampling as a resize-convolution (Odena et al. 2016, "Deconvolution and Checkerboard
    Artifacts"): nearest-neighbour x2, then a 3x3 conv with reflection padding (as the rest of the
    generator pads), stride 1. A drop-in for the reference's ``ConvTranspose2d(in, out, 3, stride=2,
    padding=1, output_padding=1)``: same output size (2H x 2W) and channels, and, being a Conv2d,
    the same ``weight``/``bias`` keys; the weight is [out, in, 3, 3] and the conv runs at the output
    resolution (4x the transposed conv's multiply-adds). [N, in, H, W] -> [N, out, 2H, 2W]."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 3, stride=1, padding=1, padding_mode="reflect", bias=bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(input, scale_factor=2, mode="nearest"))


def _upsampling_conv(in_nc: int, out_nc: int, upsample: str, bias: bool = True) -> nn.Module:
    """The x2 upsampling conv of the generators: the reference's transposed conv or a resize-conv."""
    if upsample == "transpose":
        return nn.ConvTranspose2d(in_nc, out_nc, 3, stride=2, padding=1, output_padding=1, bias=bias)
    if upsample == "resize":
        return ResizeConv2d(in_nc, out_nc, bias=bias)
    raise ValueError(f"upsample={upsample!r}; expected one of {UPSAMPLE_MODES}")


def _global_layers(input_nc: int, output_nc: int, ngf: int, n_downsampling: int, n_blocks: int,
                   norm: str, padding_type: str, *, use_bias: bool = True,
                   use_dropout: bool = False, upsample: str = "transpose") -> list[nn.Module]:
    """The layers of pix2pixHD's global generator, which are also CycleGAN's ResnetGenerator
    (n_downsampling=2; ``use_bias``/``use_dropout`` as that reference sets them). The final
    7x7 conv always has a bias. ``upsample``: see :func:`_upsampling_conv`."""
    if n_blocks < 0:
        raise ValueError(f"n_blocks={n_blocks} must be >= 0")
    model: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=use_bias)]
    model += norm_act(norm, ngf)
    for i in range(n_downsampling):
        mult = 2 ** i
        model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias)]
        model += norm_act(norm, ngf * mult * 2)
    mult = 2 ** n_downsampling
    model += [ResnetBlock(ngf * mult, padding_type, norm, use_dropout, use_bias) for _ in range(n_blocks)]
    for i in range(n_downsampling):
        mult = 2 ** (n_downsampling - i)
        model += [_upsampling_conv(ngf * mult, ngf * mult // 2, upsample, bias=use_bias)]
        model += norm_act(norm, ngf * mult // 2)
    model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
    return model


class GlobalGenerator(nn.Module):
    """G1: conv7 → n_downsampling stride-2 convs → n_blocks ResnetBlocks → transposed convs → conv7, tanh.

    input [N, input_nc, H, W] → output [N, output_nc, H, W] in [-1, 1]. ``upsample='resize'``:
    resize-convolutions instead of the transposed convs (:class:`ResizeConv2d`).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, n_downsampling: int = 4,
                 n_blocks: int = 9, norm: str = "instance", padding_type: str = "reflect",
                 upsample: str = "transpose"):
        super().__init__()
        self.input_nc, self.output_nc = input_nc, output_nc
        self.required_multiple = 2 ** n_downsampling
        self.model = nn.Sequential(*_global_layers(input_nc, output_nc, ngf, n_downsampling,
                                                   n_blocks, norm, padding_type, upsample=upsample))
        init_weights(self, zero_conv_bias=False)  # the reference keeps PyTorch's conv biases

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        check_input_size(input, self.required_multiple, type(self).__name__)
        return self.model(input)


class LocalEnhancer(nn.Module):
    """G = {G1, G2, ...}: a global generator (final conv dropped) wrapped by local enhancers.

    Enhancer n (1 = coarsest) sees the input downsampled n_local_enhancers - n times by
    AvgPool2d(3, 2, 1, count_include_pad=False); its front end (``model{n}_1``) is summed with
    the coarser output and fed to its back end (``model{n}_2``). Keys match the reference.
    ``upsample='resize'``: every x2 upsampling (global part and enhancers) is a :class:`ResizeConv2d`.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 32, n_downsample_global: int = 4,
                 n_blocks_global: int = 9, n_local_enhancers: int = 1, n_blocks_local: int = 3,
                 norm: str = "instance", padding_type: str = "reflect", upsample: str = "transpose"):
        super().__init__()
        if n_local_enhancers < 1:
            raise ValueError(f"n_local_enhancers={n_local_enhancers} must be >= 1; "
                             "use GlobalGenerator for none")
        self.input_nc, self.output_nc = input_nc, output_nc
        self.n_local_enhancers = n_local_enhancers
        self.required_multiple = 2 ** (n_downsample_global + n_local_enhancers)
        ngf_global = ngf * 2 ** n_local_enhancers
        layers = _global_layers(input_nc, output_nc, ngf_global, n_downsample_global,
                                n_blocks_global, norm, padding_type, upsample=upsample)
        self.model = nn.Sequential(*layers[:-3])  # the global part without its final conv
        for n in range(1, n_local_enhancers + 1):
            ngf_n = ngf * 2 ** (n_local_enhancers - n)
            down: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf_n, 7, padding=0)]
            down += norm_act(norm, ngf_n)
            down += [nn.Conv2d(ngf_n, ngf_n * 2, 3, stride=2, padding=1)]
            down += norm_act(norm, ngf_n * 2)
            up: list[nn.Module] = [ResnetBlock(ngf_n * 2, padding_type, norm)
                                   for _ in range(n_blocks_local)]
            up += [_upsampling_conv(ngf_n * 2, ngf_n, upsample)]
            up += norm_act(norm, ngf_n)
            if n == n_local_enhancers:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*down))
            setattr(self, f"model{n}_2", nn.Sequential(*up))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        init_weights(self, zero_conv_bias=False)

    def global_parameters(self):
        """Parameters of the global part (frozen during the first niter_fix_global epochs)."""
        return self.model.parameters()

    def local_parameters(self):
        """Parameters trained while the global part is frozen: every enhancer's. The reference
        trains only the outermost (``model{n_local_enhancers}_*``): the same for its default of
        one enhancer; with more, the local stage here starts all of them new from a global stage,
        so none is left frozen at its random initialisation."""
        return (p for name, p in self.named_parameters() if not name.startswith("model."))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        check_input_size(input, self.required_multiple, type(self).__name__)
        pyramid = [input]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        coarsest = pyramid[-1]
        frozen = not any(p.requires_grad for p in self.model.parameters())
        # A frozen global part (--niter_fix_global) whose input needs no gradient builds no autograd
        # graph: nothing would flow back through it (saves its activations' memory). When the input
        # needs one (G's input carries the encoder's features, --instance_feat/--label_feat), the
        # gradient flows through the frozen G1 to it, as in the reference, which only turns off its
        # parameters' requires_grad.
        build_graph = torch.is_grad_enabled() and (not frozen or coarsest.requires_grad)
        with torch.set_grad_enabled(build_graph):
            out = self.model(coarsest)
        for n in range(1, self.n_local_enhancers + 1):
            x = pyramid[self.n_local_enhancers - n]
            out = getattr(self, f"model{n}_2")(getattr(self, f"model{n}_1")(x) + out)
        return out


class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv4/2 + lrelu, (n_layers-1) × [conv4/2, norm, lrelu], conv4/1 + norm + lrelu, conv4/1.

    With ``get_interm_feat`` each group is its own ``model{j}`` and forward returns the
    n_layers + 2 outputs (the last is the patch logits); otherwise ``model`` is one Sequential
    and forward returns the logits. Padding 2, as the reference (ceil((4-1)/2)).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 use_sigmoid: bool = False, get_interm_feat: bool = False):
        super().__init__()
        self.get_interm_feat = get_interm_feat
        self.n_layers = n_layers
        kw, padw = 4, 2
        seq: list[list[nn.Module]] = [[nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw),
                                       nn.LeakyReLU(0.2, True)]]
        nf = ndf
        for _ in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            seq += [[nn.Conv2d(nf_prev, nf, kw, stride=2, padding=padw)]
                    + norm_act(norm, nf, "leaky_relu")]
        nf_prev, nf = nf, min(nf * 2, 512)
        seq += [[nn.Conv2d(nf_prev, nf, kw, stride=1, padding=padw)]
                + norm_act(norm, nf, "leaky_relu")]
        last = [nn.Conv2d(nf, 1, kw, stride=1, padding=padw)]
        if use_sigmoid:
            # The reference puts the sigmoid in a group of its own that forward never reaches
            # when get_interm_feat is set; here it belongs to the last group and always runs.
            last.append(nn.Sigmoid())
        seq += [last]
        self.group_sizes = [len(g) for g in seq]   # Sequential slots per group, in either layout
        if get_interm_feat:
            for j, group in enumerate(seq):
                setattr(self, f"model{j}", nn.Sequential(*group))
        else:
            self.model = nn.Sequential(*[m for group in seq for m in group])
        init_weights(self, zero_conv_bias=False)

    def groups(self) -> list[nn.Module]:
        """The n_layers + 2 groups in order, each an ``nn.Sequential`` (the last one's output is
        the patch logits; the others' are the features ``get_interm_feat`` returns).

        With ``get_interm_feat`` they are ``model0`` ... ``model{n_layers+1}``; without it,
        consecutive slices of ``model`` sharing its modules (no copy), so that running them in
        turn gives what forward gives either way.
        """
        if self.get_interm_feat:
            return [getattr(self, f"model{j}") for j in range(self.n_layers + 2)]
        ends = [sum(self.group_sizes[:j + 1]) for j in range(len(self.group_sizes))]
        return [self.model[end - size:end] for end, size in zip(ends, self.group_sizes)]

    def forward(self, input: torch.Tensor):
        if not self.get_interm_feat:
            return self.model(input)
        res = [input]
        for group in self.groups():
            res.append(group(res[-1]))
        return res[1:]


class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs on an AvgPool2d(3, 2, 1, count_include_pad=False) image pyramid.

    Scale ``num_D - 1`` sees the full-resolution input, scale 0 the coarsest (the reference's
    indexing, so the global stage's two scales load into the local stage's coarser two).
    forward returns one entry per scale, finest first: a list of the n_layers + 2 features
    (last = logits) with ``get_interm_feat``, else a one-element list with the logits.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 3,
                 norm: str = "instance", use_sigmoid: bool = False, get_interm_feat: bool = True):
        super().__init__()
        self.num_D, self.n_layers, self.get_interm_feat = num_D, n_layers, get_interm_feat
        self._group_sizes: list[int] = []   # Sequential slots per group, the same for every scale
        for i in range(num_D):
            d = NLayerDiscriminator(input_nc, ndf, n_layers, norm, use_sigmoid, get_interm_feat)
            self._group_sizes = d.group_sizes
            if get_interm_feat:
                for j in range(n_layers + 2):
                    setattr(self, f"scale{i}_layer{j}", getattr(d, f"model{j}"))
            else:
                setattr(self, f"layer{i}", d.model)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)
        # Its padding-2 convs never shrink an input below 2x2, but an input that reaches a norm at
        # 1x1 cannot be normalised (BatchNorm's, at batch size 1): the coarsest scale's, when the
        # pyramid brings it to 1x1 and the second conv (n_layers >= 2) carries a norm.
        self._needs_two_pixels = n_layers >= 2 and norm != "none"

    @property
    def min_input_side(self) -> int:
        """The smallest side of a square input it takes."""
        return 2 ** (self.num_D - 1) + 1 if self._needs_two_pixels else 1

    def input_fits(self, h: int, w: int) -> bool:
        """Whether an h x w input passes (the coarsest scale, ceil(side / 2**(num_D - 1)) a
        side, must not be 1x1)."""
        return not self._needs_two_pixels or max(h, w) > 2 ** (self.num_D - 1)

    def scale_prefix(self, i: int) -> str:
        """The state_dict prefix of scale ``i``'s keys in this model's layout."""
        return f"scale{i}_" if self.get_interm_feat else f"layer{i}."

    def in_own_layout(self, state: dict) -> dict:
        """``state`` with keys of the other layout renamed to this model's.

        The reference names a discriminator's keys by whether it returns intermediate features
        (``getIntermFeat``, on unless ``--no_ganFeat_loss``): ``scale{i}_layer{j}.{k}.*`` (group
        j, slot k) with them, ``layer{i}.{f}.*`` (slot f of the flattened groups) without. The
        weights are the same either way, so a run (or a reference checkpoint) trained with one
        setting loads into a model built with the other. Keys of neither form are left as they are.
        """
        flat_of, group_of, f = {}, {}, 0
        for j, n in enumerate(self._group_sizes):
            for k in range(n):
                flat_of[j, k], group_of[f] = f, (j, k)
                f += 1
        out = {}
        for key, v in state.items():
            if self.get_interm_feat:
                m = re.fullmatch(r"layer(\d+)\.(\d+)\.(.+)", key)
                if m and int(m[2]) in group_of:
                    j, k = group_of[int(m[2])]
                    key = f"scale{m[1]}_layer{j}.{k}.{m[3]}"
            else:
                m = re.fullmatch(r"scale(\d+)_layer(\d+)\.(\d+)\.(.+)", key)
                if m and (int(m[2]), int(m[3])) in flat_of:
                    key = f"layer{m[1]}.{flat_of[int(m[2]), int(m[3])]}.{m[4]}"
            out[key] = v
        return out

    def _scale_forward(self, i: int, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.get_interm_feat:
            return [getattr(self, f"layer{i}")(x)]
        feats = []
        for j in range(self.n_layers + 2):
            x = getattr(self, f"scale{i}_layer{j}")(x)
            feats.append(x)
        return feats

    def forward(self, input: torch.Tensor) -> list[list[torch.Tensor]]:
        result = []
        x = input
        for i in range(self.num_D):
            result.append(self._scale_forward(self.num_D - 1 - i, x))
            if i != self.num_D - 1:
                x = self.downsample(x)
        return result


def check_instance_ids(inst: torch.Tensor) -> None:
    """A float (or complex) instance map is refused: ``.long()`` would truncate its values and
    merge instances (a ToTensor-scaled map, ids / 255, would become one instance)."""
    if inst.is_floating_point() or inst.is_complex():
        raise InputError(f"instance map has dtype {inst.dtype}; instance ids must be an integer tensor "
                         "(e.g. torch.int32 or int64, not scaled to [0, 1]): convert with "
                         "inst.round().long() if the values are whole ids")


def instance_average(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Replace every pixel's feature by the mean over its instance, per sample.

    features [N, C, H, W] float; inst [N, 1, H, W] integer ids (any values, e.g. class*1000+k);
    a float instance map is refused (InputError) rather than truncated.
    One scatter_add over (sample, instance) pairs; no Python loop over instances or channels.
    """
    check_instance_ids(inst)
    n, c, h, w = features.shape
    if inst.shape != (n, 1, h, w):
        raise ValueError(f"instance map shape {tuple(inst.shape)} does not match features "
                         f"{tuple(features.shape)}; expected ({n}, 1, {h}, {w})")
    ids = inst.reshape(n, h * w).long()
    # Dense per-sample indices: unique over (sample, id) pairs.
    key = ids + torch.arange(n, device=ids.device).unsqueeze(1) * (ids.max() - ids.min() + 1) - ids.min()
    uniq, dense = torch.unique(key, return_inverse=True)  # dense: [N, H*W] in [0, K)
    k = uniq.numel()
    flat = features.permute(1, 0, 2, 3).reshape(c, n * h * w).float()
    idx = dense.reshape(1, -1).expand(c, -1)
    sums = torch.zeros(c, k, device=features.device, dtype=flat.dtype).scatter_add_(1, idx, flat)
    counts = torch.zeros(k, device=features.device, dtype=flat.dtype).scatter_add_(
        0, dense.reshape(-1), torch.ones_like(flat[0]))
    means = sums / counts
    out = means.gather(1, idx).reshape(c, n, h, w).permute(1, 0, 2, 3)
    return out.to(features.dtype).contiguous(memory_format=_memory_format(features))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class Encoder(nn.Module):
    """E: an encoder-decoder whose output is average-pooled within each instance.

    forward(image [N, input_nc, H, W], inst [N, 1, H, W]) → [N, output_nc, H, W], constant
    inside each instance of each sample (the reference's per-instance mean).
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 16, n_downsampling: int = 4,
                 norm: str = "instance"):
        super().__init__()
        self.input_nc, self.output_nc = input_nc, output_nc
        self.required_multiple = 2 ** n_downsampling
        # the global generator's layout without ResNet blocks (the reference's Encoder, index for index)
        model = _global_layers(input_nc, output_nc, ngf, n_downsampling, 0, norm, "reflect")
        self.model = nn.Sequential(*model)
        init_weights(self, zero_conv_bias=False)

    def forward(self, input: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
        check_input_size(input, self.required_multiple, type(self).__name__)
        check_instance_ids(inst)   # before the network runs
        return instance_average(self.model(input), inst)

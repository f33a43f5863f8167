"""The networks of junyanz/pytorch-CycleGAN-and-pix2pix — pix2pix (Isola et al. 2017) and CycleGAN
(Zhu et al. 2017) — with that repo's names and keys.

What is here: ``UnetGenerator`` / ``UnetSkipConnectionBlock`` (``unet_128``, ``unet_256`` and the
encoder-decoder without skips of the paper's ablation), CycleGAN's ``ResnetGenerator``
(``resnet_9blocks``, ``resnet_6blocks``: the layers of pix2pixHD's global generator with two
downsamplings, built by ``networks.py``, so its residual blocks and norm + ReLU layers take the
same fused path), the PatchGAN discriminator of
junyanz/pytorch-CycleGAN-and-pix2pix ``models/networks.py`` (named ``PatchDiscriminator`` here so
it does not clash with pix2pixHD's padding-2 ``NLayerDiscriminator`` in ``networks.py``),
``PixelDiscriminator`` (1x1 PatchGAN), the 286x286 ImageGAN (a PatchDiscriminator with
``n_layers=5``), the factories ``define_G`` / ``define_D`` with the reference's argument names,
``receptive_field`` and ``set_dropout``. Norm layers come from ``pix2pixhd.layers.norm_act`` and
the init is ``pix2pixhd.layers.init_weights``, as for every network of the toolkit: with
``norm='instance'`` each norm is the fused ``InstanceNormAct`` (its activation fused in where the
reference's activation follows it directly, the discriminators; ``act='none'`` in the U-Net,
whose activations sit elsewhere), with the same state_dict keys as ``nn.InstanceNorm2d``.

Every module builds the same ``nn.Sequential`` index layout as the reference, so state_dict keys
are identical (``model.model.1.model.1.weight``, ``model.0.weight``, ``net.3.running_mean``...) and
the reference's checkpoints load with ``load_state_dict`` directly. Things the reference does that
are kept on purpose, because changing them changes outputs of its checkpoints:

* convs carry a bias only when the norm is instance norm (``use_bias``); with ``norm='none'`` the
  reference also drops the biases (its ``norm_layer`` is then a lambda, not InstanceNorm2d), and
  its identity stands in the norm's slot, keeping the Sequential indices;
* the down-path LeakyReLU of the reference is in-place, so the skip connection of every
  non-outermost U-Net block concatenates ``LeakyReLU(x)``, not ``x``. Kept (it saves one
  activation per level); it changes nothing numerically, because the parent's up path applies a
  ReLU to the concatenation first and ReLU(LeakyReLU(x)) == ReLU(x), forward and backward (the
  tests check this against a skip that carries ``x``). The caller's tensor is never touched:
  the outermost block starts with a conv.

Tensors at the boundaries: [N, C, H, W] float (any float dtype, NCHW or channels-last). A U-Net
with ``num_downs`` downsamplings needs H and W divisible by 2**num_downs (256 for unet_256);
discriminators take any size large enough for their convs (``min_input_side``, ``input_fits``:
3 * 2**n_layers a side for the PatchGAN). The pix2pix discriminators are
conditional: their input is ``cat([input, output], 1)``, hence ``input_nc = 3 + 3 = 6``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pix2pixhd.layers import NORMS, Dropout, init_weights, norm_act
from pix2pixhd.networks import _global_layers, check_input_size

__all__ = ["UnetGenerator", "UnetSkipConnectionBlock", "ResnetGenerator", "PatchDiscriminator",
           "PixelDiscriminator", "define_G", "define_D", "generator_multiple", "receptive_field",
           "set_dropout", "NETG", "UNETS", "RESNETS", "NETD"]

# U-Net netG name -> (number of downsamplings, skip connections)
UNETS = {"unet_128": (7, True), "unet_256": (8, True),
         "encoder_decoder_128": (7, False), "encoder_decoder_256": (8, False)}
# ResNet netG name -> residual blocks (CycleGAN's generators; two stride-2 downsamplings)
RESNETS = {"resnet_9blocks": 9, "resnet_6blocks": 6}
RESNET_DOWNSAMPLING = 2
NETG = (*UNETS, *RESNETS)
NETD = ("basic", "n_layers", "pixel", "image")
# The pix2pix paper's ImageGAN (C64-C128-C256-C512-C512-C512) is the PatchGAN with 5 layers:
# its receptive field is 286x286, larger than a 256x256 image.
IMAGEGAN_N_LAYERS = 5


def _norm(norm: str, num_features: int) -> nn.Module:
    """A norm whose activation is not next to it (the U-Net's): the factory's norm slot alone."""
    return norm_act(norm, num_features, "none")[0]


def _use_bias(norm: str) -> bool:
    # The reference: convs before BatchNorm need no bias (BN's shift replaces it); instance norm
    # without affine has no shift, so the conv keeps one. norm='none' also gets no bias there.
    return norm == "instance"


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: [down | submodule | up], concatenated with its (LeakyReLU'd) input.

    X ------------------- identity (LeakyReLU'd in place) ------------------- cat -> out
    |-- downsampling --> |submodule| -- upsampling --|
    Layouts (Sequential indices = the reference's):
      outermost: [downconv, sub, ReLU, upconv, Tanh]                    -> no concat
      innermost: [LReLU, downconv, ReLU, upconv, upnorm]
      otherwise: [LReLU, downconv, downnorm, sub, ReLU, upconv, upnorm, (Dropout 0.5)]
    ``skip=False`` gives the encoder-decoder: no concat, so the upconvs take ``inner_nc`` channels.
    Shapes: [N, input_nc, H, W] -> [N, outer_nc, H, W] outermost or without skip, else
    [N, input_nc + outer_nc, H, W].
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False,
                 innermost: bool = False, norm: str = "batch", use_dropout: bool = False,
                 skip: bool = True):
        super().__init__()
        if outermost and innermost:
            raise ValueError("UnetSkipConnectionBlock: a block cannot be both outermost and "
                             "innermost; build a UnetGenerator with num_downs >= 5")
        if (submodule is None) != innermost:
            raise ValueError("UnetSkipConnectionBlock: pass a submodule exactly when the block is "
                             f"not innermost (innermost={innermost}, submodule={submodule is not None})")
        self.outermost = outermost
        self.skip = skip
        use_bias = _use_bias(norm)
        if input_nc is None:
            input_nc = outer_nc
        # Channels the upconv sees: the submodule's output, which carries the skip when it has one.
        up_in = inner_nc if innermost or not skip else inner_nc * 2
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        # In-place as in the reference: it rewrites this block's input, which is also the skip
        # (see the module docstring for why that is harmless).
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            # Always biased and no norm: the output layer of the reference.
            upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1,
                                        bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, _norm(norm, outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1,
                                        bias=use_bias)
            model = [downrelu, downconv, _norm(norm, inner_nc), submodule, uprelu, upconv,
                     _norm(norm, outer_nc)]
            if use_dropout:
                model += [Dropout(0.5)]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost or not self.skip:
            return self.model(x)
        # self.model(x) runs first and its in-place LeakyReLU rewrites x: the skip is LReLU(x).
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net generator of pix2pix: ``num_downs`` 4x4 stride-2 convs down, the mirror up.

    Channels ngf, 2ngf, 4ngf, 8ngf, then 8ngf for the remaining num_downs - 4 levels; Dropout 0.5
    in the num_downs - 5 intermediate 8ngf blocks when ``use_dropout`` (3 for unet_256, 2 for
    unet_128). ``skip=False`` is the paper's encoder-decoder (same layers, no skip connections,
    narrower upconvs). [N, input_nc, H, W] -> [N, output_nc, H, W] in (-1, 1), H and W divisible
    by 2**num_downs.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", use_dropout: bool = False, skip: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"UnetGenerator: num_downs={num_downs} must be >= 5 (the reference "
                             "hard-wires the outer four levels ngf..8ngf plus an innermost one)")
        self.num_downs = num_downs
        self.required_multiple = 2 ** num_downs
        kw = dict(norm=norm, skip=skip)
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block,
                                            use_dropout=use_dropout, **kw)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, **kw)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.required_multiple, f"UnetGenerator(num_downs={self.num_downs})",
                         fix="resize or pad the input to a multiple of {multiple} (e.g. {padded})"
                         + (", or use unet_128 for smaller images" if self.num_downs > 7 else ""))
        return self.model(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator (after Johnson et al.): reflection pad + 7x7 conv, two stride-2 3x3
    convs, ``n_blocks`` residual blocks (reflection padding), two stride-2 transposed convs
    (output_padding 1), reflection pad + 7x7 conv, tanh; each inner conv followed by norm + ReLU.

    Convs carry a bias only before instance norm (the reference's ``use_bias``); the last conv
    always has one. Keys ``model.<i>`` (``model.10.conv_block.1.weight``...), the reference's.
    The layers are pix2pixHD's global generator's (``networks._global_layers``), so the norm +
    ReLU pairs and the residual add run through ``InstanceNormAct`` like pix2pixHD's.
    [N, input_nc, H, W] -> [N, output_nc, H, W] in (-1, 1), H and W divisible by 4.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
                 use_dropout: bool = False, n_blocks: int = 6, padding_type: str = "reflect"):
        super().__init__()
        self.input_nc, self.output_nc = input_nc, output_nc
        self.required_multiple = 2 ** RESNET_DOWNSAMPLING
        self.model = nn.Sequential(*_global_layers(
            input_nc, output_nc, ngf, RESNET_DOWNSAMPLING, n_blocks, norm, padding_type,
            use_bias=_use_bias(norm), use_dropout=use_dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.required_multiple, "ResnetGenerator", why=" (two stride-2 convs)",
                         fix="pad or resize the input to {padded}")
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator of the CycleGAN/pix2pix repo (its ``NLayerDiscriminator``).

    4x4 convs with padding 1: n_layers stride-2 convs (C64, C128, ..., capped at 8*ndf), one
    stride-1 conv, and a stride-1 conv to one channel of logits (no sigmoid). n_layers=3 is the
    70x70 PatchGAN, 1 the 16x16, 5 the 286x286 ImageGAN. Keys ``model.<i>``.
    [N, input_nc, H, W] -> [N, 1, H', W'] raw logits.
    """

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchDiscriminator: n_layers={n_layers} must be >= 1 "
                             "(1 -> 16x16, 3 -> 70x70, 5 -> 286x286 receptive field)")
        use_bias = _use_bias(norm)
        kw, padw = 4, 1
        seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw),
                                nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_prev, nf_mult = nf_mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * nf_prev, ndf * nf_mult, kw, stride=2, padding=padw,
                              bias=use_bias)]
            seq += norm_act(norm, ndf * nf_mult, "leaky_relu")  # [norm, LeakyReLU(0.2)] slots
        nf_prev, nf_mult = nf_mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * nf_prev, ndf * nf_mult, kw, stride=1, padding=padw, bias=use_bias)]
        seq += norm_act(norm, ndf * nf_mult, "leaky_relu")
        seq += [nn.Conv2d(ndf * nf_mult, 1, kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*seq)
        self.n_layers = n_layers

    @property
    def min_input_side(self) -> int:
        """The smallest side it takes: each stride-2 conv halves a side (rounding down), the two
        stride-1 convs take a pixel each, and the logits need one: floor(side / 2**n_layers) >= 3."""
        return 3 * 2 ** self.n_layers

    def input_fits(self, h: int, w: int) -> bool:
        return min(h, w) >= self.min_input_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN"): three 1x1 convs, C64-C128-1. Keys ``net.<i>``.

    [N, input_nc, H, W] -> [N, 1, H, W] raw logits, one per pixel.
    """

    def __init__(self, input_nc: int = 6, ndf: int = 64, norm: str = "batch"):
        super().__init__()
        use_bias = _use_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1, stride=1, padding=0),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, stride=1, padding=0, bias=use_bias),
            *norm_act(norm, ndf * 2, "leaky_relu"),
            # The reference drops this bias too (bias=use_bias), unlike PatchDiscriminator's last.
            nn.Conv2d(ndf * 2, 1, 1, stride=1, padding=0, bias=use_bias))
        self._normed = norm != "none"

    @property
    def min_input_side(self) -> int:
        return 2 if self._normed else 1

    def input_fits(self, h: int, w: int) -> bool:
        """Any size; with a norm, more than one pixel (a sample's pixels are what it normalises
        over; BatchNorm's, at batch size 1)."""
        return h * w > 1 or not self._normed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def define_G(input_nc: int = 3, output_nc: int = 3, ngf: int = 64, netG: str = "unet_256",
             norm: str = "batch", use_dropout: bool = True, init_type: str = "normal",
             init_gain: float = 0.02) -> nn.Module:
    """Build and initialise a generator by name (the reference's ``define_G``).

    netG: 'unet_256' (8 downsamplings, for 256x256), 'unet_128' (7), 'encoder_decoder_256',
    'encoder_decoder_128' (the same without skip connections), 'resnet_9blocks',
    'resnet_6blocks' (CycleGAN). use_dropout defaults to True as pix2pix training does
    (``--no_dropout`` off); the reference function's own default is False (CycleGAN trains
    without). No device placement: call ``.to(device)`` yourself.
    """
    if netG not in NETG:
        raise ValueError(f"define_G: netG={netG!r} is not known; expected one of {list(NETG)}")
    if norm not in NORMS:
        raise ValueError(f"define_G: norm={norm!r} is not known; expected one of {NORMS}")
    if netG in RESNETS:
        net: nn.Module = ResnetGenerator(input_nc, output_nc, ngf, norm=norm,
                                         use_dropout=use_dropout, n_blocks=RESNETS[netG])
    else:
        num_downs, skip = UNETS[netG]
        net = UnetGenerator(input_nc, output_nc, num_downs, ngf, norm=norm,
                            use_dropout=use_dropout, skip=skip)
    return init_weights(net, init_type, init_gain)


def generator_multiple(netG: str) -> int:
    """What H and W of generator ``netG``'s input must divide by (2 ** its downsamplings)."""
    if netG in RESNETS:
        return 2 ** RESNET_DOWNSAMPLING
    if netG in UNETS:
        return 2 ** UNETS[netG][0]
    raise ValueError(f"netG={netG!r} is not known; expected one of {list(NETG)}")


def define_D(input_nc: int = 6, ndf: int = 64, netD: str = "basic", n_layers_D: int = 3,
             norm: str = "batch", init_type: str = "normal",
             init_gain: float = 0.02) -> nn.Module:
    """Build and initialise a pix2pix discriminator by name (the reference's ``define_D``).

    netD: 'basic' (70x70 PatchGAN), 'n_layers' (PatchGAN with ``n_layers_D``: 1 -> 16x16),
    'pixel' (1x1), 'image' (286x286 ImageGAN, n_layers=5). input_nc is input + output channels
    (conditional D), 6 for RGB -> RGB.
    """
    if norm not in NORMS:
        raise ValueError(f"define_D: norm={norm!r} is not known; expected one of {NORMS}")
    if netD == "basic":
        net: nn.Module = PatchDiscriminator(input_nc, ndf, n_layers=3, norm=norm)
    elif netD == "n_layers":
        net = PatchDiscriminator(input_nc, ndf, n_layers=n_layers_D, norm=norm)
    elif netD == "pixel":
        net = PixelDiscriminator(input_nc, ndf, norm=norm)
    elif netD == "image":
        net = PatchDiscriminator(input_nc, ndf, n_layers=IMAGEGAN_N_LAYERS, norm=norm)
    else:
        raise ValueError(f"define_D: netD={netD!r} is not known; expected one of {NETD}")
    return init_weights(net, init_type, init_gain)


def receptive_field(net: nn.Module) -> int:
    """Side of the input window one output pixel of a purely sequential conv net depends on.

    Walks the Conv2d layers in registration order with r <- r + (k - 1) * dilation * jump,
    jump <- jump * stride (padding shifts the window, it does not widen it). Valid for the
    discriminators here, which are chains; a U-Net is not (every output sees the whole image).
    """
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"receptive_field: {type(net).__name__} has no Conv2d layers")
    if any(isinstance(m, (UnetSkipConnectionBlock, nn.ConvTranspose2d)) for m in net.modules()):
        raise ValueError(f"receptive_field: {type(net).__name__} is not a plain conv chain; it is "
                         "defined for the discriminators (PatchDiscriminator, PixelDiscriminator)")
    r, jump = 1, 1
    for c in convs:
        k, s, d = c.kernel_size[0], c.stride[0], c.dilation[0]
        if c.kernel_size[0] != c.kernel_size[1] or c.stride[0] != c.stride[1]:
            raise ValueError(f"receptive_field: non-square conv {c} is not supported")
        r += (k - 1) * d * jump
        jump *= s
    return r


class PerImageBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm as pix2pix runs it at test time: each image is normalised by its own mean and
    (biased) variance, then BatchNorm's affine is applied; the running statistics stay in the
    state_dict but are not read.

    The paper (Isola et al. 2017, §3.3): "we apply batch normalization using the statistics of the
    test batch, rather than aggregated statistics of the training batch"; its test batch is one
    image, so this is what a batch of one gives in train mode, row by row, without updating the
    running statistics. Computing it per image keeps a map's photo independent of the batch it
    came in. Exported to ONNX as InstanceNormalization.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def use_test_statistics(model: nn.Module, enabled: bool = True) -> int:
    """Switch every ``nn.BatchNorm2d`` of ``model`` between the paper's test-time statistics
    (:class:`PerImageBatchNorm2d`, ``enabled``) and its running statistics (``False``: plain
    BatchNorm, which uses them in eval mode). Parameters, buffers and state_dict keys are unchanged;
    survives ``.eval()``, ``.train()`` and ``copy.deepcopy``. Returns how many layers were switched
    (0: the model has no BatchNorm, e.g. instance norm)."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.__class__ = PerImageBatchNorm2d if enabled else nn.BatchNorm2d
            n += 1
    return n


def set_dropout(model: nn.Module, enabled: bool) -> int:
    """Turn every Dropout layer of ``model`` on or off regardless of train/eval mode.

    pix2pix keeps dropout on at test time (the paper's noise source), so synthesis calls
    ``model.eval(); set_dropout(model, True)``. Call it after ``.eval()``/``.train()``, which
    reset the flag. Returns how many Dropout layers were switched (0: the model has none, e.g.
    use_dropout=False).
    """
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train(enabled)
            n += 1
    return n


def _summary() -> None:
    """``python3 -m pix2pixhd.pix2pix_networks``: parameters, receptive fields, output sizes.

    Built on the meta device (no weights allocated), default widths, BatchNorm, RGB -> RGB.
    """
    print(f"{'network':<28}{'parameters':>12}{'receptive field':>17}{'output at 256x256':>19}")
    with torch.device("meta"):
        rows = [(f"G {name}", define_G(netG=name), 3, "-") for name in NETG]
        for name, n in (("basic", 3), ("n_layers", 1), ("pixel", 3), ("image", 3)):
            d = define_D(netD=name, n_layers_D=n)
            label = f"D {name}" + (f" (n_layers_D={n})" if name == "n_layers" else "")
            rows.append((label, d, 6, str(receptive_field(d))))
        for label, net, c, rf in rows:
            out = "x".join(map(str, net(torch.empty(1, c, 256, 256)).shape[1:]))
            print(f"{label:<28}{sum(p.numel() for p in net.parameters()):>12,}{rf:>17}{out:>19}")

if __name__ == "__main__":
    _summary()

"""Building blocks shared by every network: the one norm+activation factory and the one weight init.

pix2pixHD (``networks.py``), pix2pix (``pix2pix_networks.py``) and the coming CycleGAN networks
make every normalisation layer through :func:`norm_act` and initialise their weights with
:func:`init_weights`, so a norm name means the same layer everywhere (timm's ``create_norm_act``
is the model: layers by name, the fused variant behind the same key).

Every conv of the references is followed by a norm and an activation. ``norm_act`` returns them
as two Sequential slots so the state_dict indices equal the references' (their norms carry no
parameters for instance norm, BatchNorm's do and keep their slot). For instance norm the first
slot is :class:`InstanceNormAct`, which runs norm (+ residual) + activation as one call of
``pix2pixhd.kernels.instance_norm_act`` (Triton on CUDA, PyTorch elsewhere), and the second slot
is an ``nn.Identity``; a norm with no activation after it (``act='none'``) is the first slot alone.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import init

from pix2pixhd.kernels import instance_norm_act
from pix2pixhd.kernels.instance_norm_act import check_eps, check_impl

NORMS = ("instance", "batch", "none")
ACTS = ("relu", "leaky_relu", "none")


class InstanceNormAct(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` followed by an activation, fused where a fast path exists.

    Subclasses the plain layer, so its state_dict keys (none for affine=False) are unchanged
    and checkpoints move freely between fused and unfused models.
    ``impl``: 'auto' (on CUDA the faster of Triton and PyTorch's native norm, measured; the
    native norm elsewhere), 'triton' or 'ref'. Like ``nn.InstanceNorm2d`` it raises a ValueError
    for an input of one pixel per channel (H*W = 1), on every path. An unknown ``impl`` or
    ``act``, or eps <= 0, is a ValueError here, not at the first forward.
    """

    def __init__(self, num_features: int, act: str = "relu", negative_slope: float = 0.2,
                 eps: float = 1e-5, affine: bool = False, impl: str = "auto"):
        super().__init__(num_features, eps=eps, affine=affine, track_running_stats=False)
        if act not in ACTS:
            raise ValueError(f"act={act!r}; expected one of {ACTS}")
        check_impl(impl, "InstanceNormAct")
        check_eps(eps, "InstanceNormAct")
        self.act = act
        self.negative_slope = negative_slope
        self.impl = impl

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return instance_norm_act(x, self.weight, self.bias, act=self.act,
                                 negative_slope=self.negative_slope, eps=self.eps,
                                 residual=residual, impl=self.impl)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act}, impl={self.impl}"


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask does not depend on the input's memory layout.

    ``F.dropout`` draws its mask in memory order, so a channels-last input got another mask than
    the same values in NCHW from the same RNG state: ``--channels_last`` changed pix2pix's (and
    CycleGAN's with dropout) training, not only its rounding. A channels-last input is dropped out
    in NCHW order (one copy each way, on the few dropout layers); NCHW runs as ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.dim() != 4 or x.is_contiguous():
            return super().forward(x)
        cl = x.is_contiguous(memory_format=torch.channels_last)
        y = nn.functional.dropout(x.contiguous(), self.p, True, self.inplace)
        return y.contiguous(memory_format=torch.channels_last) if cl else y


def make_act(act: str, negative_slope: float = 0.2) -> nn.Module:
    if act == "relu":
        return nn.ReLU(True)
    if act == "leaky_relu":
        return nn.LeakyReLU(negative_slope, True)
    if act == "none":
        return nn.Identity()
    raise ValueError(f"act={act!r}; expected one of {ACTS}")


def norm_act(norm: str, num_features: int, act: str = "relu",
             negative_slope: float = 0.2) -> list[nn.Module]:
    """The two Sequential slots [norm, activation] that follow a conv in the references.

    instance: ``InstanceNormAct`` (no affine parameters, no running statistics; the activation
    fused in) and an ``nn.Identity`` where the reference has its activation; batch:
    ``BatchNorm2d`` (affine, running statistics) and the activation; none: ``nn.Identity`` and
    the activation. Neither slot of 'instance' and 'none' holds a state_dict entry, so the keys
    are the references' whichever implementation runs. Take ``[:1]`` for a norm whose
    activation is not next to it (``act='none'``).
    """
    if norm == "instance":
        return [InstanceNormAct(num_features, act=act, negative_slope=negative_slope), nn.Identity()]
    if norm == "batch":
        return [nn.BatchNorm2d(num_features, affine=True), make_act(act, negative_slope)]
    if norm == "none":
        return [nn.Identity(), make_act(act, negative_slope)]
    raise ValueError(f"norm={norm!r} is not known; expected one of {NORMS}")


def set_norm_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switch every fused norm+activation layer of ``model`` to 'auto', 'triton' or 'ref'."""
    check_impl(impl, "set_norm_impl")
    for m in model.modules():
        if isinstance(m, InstanceNormAct):
            m.impl = impl
    return model


def unfuse(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in NVIDIA's exact module layout: each InstanceNormAct becomes a
    plain ``nn.InstanceNorm2d`` and its activation moves into the ``nn.Identity`` slot after it.

    Same state_dict keys and values; the reference-style baseline and the fused-vs-unfused tests
    use it, and it gives modules the reference code itself can hold.
    """
    model = copy.deepcopy(model)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i, m in enumerate(list(seq)):
            if not isinstance(m, InstanceNormAct):
                continue
            plain = nn.InstanceNorm2d(m.num_features, eps=m.eps, affine=m.affine,
                                      track_running_stats=False)
            if m.affine:
                plain.load_state_dict(m.state_dict())
            seq[i] = plain
            if i + 1 < len(seq) and isinstance(seq[i + 1], nn.Identity):
                seq[i + 1] = make_act(m.act, m.negative_slope)
            elif m.act != "none":
                raise ValueError(f"{type(model).__name__}: an InstanceNormAct with act={m.act!r} has no "
                                 "activation slot after it; unfuse() only knows the reference layout")
    left = [n for n, m in model.named_modules() if isinstance(m, InstanceNormAct)]
    if left:
        raise ValueError(f"unfuse: fused norms outside an nn.Sequential remain: {left[:3]}")
    return model.to(memory_format=torch.contiguous_format)


INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02, *,
                 zero_conv_bias: bool = True) -> nn.Module:
    """The references' weight init, for every network: conv (and linear) weights by ``init_type``
    (normal: N(0, init_gain)), BatchNorm weights N(1, init_gain) and biases 0.

    ``zero_conv_bias``: pix2pix and CycleGAN set conv biases to 0; NVIDIA's pix2pixHD leaves them
    at PyTorch's default (``zero_conv_bias=False``). Modules are visited in ``net.apply`` order
    with torch's global RNG, so a seeded build repeats bit for bit. Returns ``net``.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"init_weights: init_type={init_type!r} is not known; expected one of "
                         f"{INIT_TYPES}")

    def init_func(m: nn.Module) -> None:
        name = m.__class__.__name__
        if getattr(m, "weight", None) is not None and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=init_gain)
            if zero_conv_bias and getattr(m, "bias", None) is not None:
                init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in name:
            init.normal_(m.weight, 1.0, init_gain)
            init.constant_(m.bias, 0.0)

    with torch.no_grad():
        net.apply(init_func)
    return net

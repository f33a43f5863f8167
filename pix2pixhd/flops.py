"""Analytic MAC count of the pix2pixHD networks, and the FLOPs of one training / synthesis step.

What it is for: the benchmarks turn measured times into achieved TFLOP/s and a utilisation of
the device's peak (``benchmarks/train.py``, ``benchmarks/synthesis.py``). Nothing here times or
runs real arithmetic.

How: the network is built on the ``meta`` device and run once on a meta input of the requested
size; a forward hook on every Conv2d / ConvTranspose2d records its exact multiply-accumulates
from the shapes it actually saw (so padding, strides, the discriminator's padding-2 sizes and the
avg-pooled pyramids are whatever the real network does, never re-derived by hand):

  Conv2d           N · C_out · H_out · W_out · (C_in / groups) · k_h · k_w
  ConvTranspose2d  N · C_in  · H_in  · W_in  · (C_out / groups) · k_h · k_w   (each input pixel
                   scatters one k_h x k_w x C_out/groups patch)

(``--upsample resize``'s ResizeConv2d is a Conv2d whose hook sees its output at 2H x 2W, so it is
counted by the first line: 4x the transposed conv it replaces.)

Only convolutions are counted: they are > 99.5 % of the arithmetic. Norms, activations, pooling,
padding, biases and the losses are not (they are memory-bound; their cost shows in the times).
1 MAC = 2 FLOPs. With the reference's defaults (label_nc 35 + boundary = 36 input channels) this
gives, per sample: global G at 1024x512 489.3 GMAC, local G at 2048x1024 747.9, the three-scale
D at 2048x1024 166.6, VGG19 to relu5_1 at 2048x1024 757.4 (``tests/test_flops.py``).

A training step's FLOPs (:func:`train_step_flops`) count only the work the step needs: forward
MACs, plus in the backward one MAC per forward MAC for each weight gradient that is needed and
one for each input gradient that is needed (a conv whose input requires no grad, e.g. a network's
first layer, needs none). The reference-style baseline computes more than that (D's weight
gradients in the G pass), and is charged the same needed FLOPs: its extra work shows as a lower
achieved TFLOP/s, the way model-FLOPs utilisation is usually reported. In the local stage the
global generator is frozen for the first ``niter_fix_global`` epochs (the Trainer sets its
parameters' requires_grad False): at such an ``epoch`` its convolutions need no weight gradient
and, with nothing before them needing one, no input gradient either, so only their forward counts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ConvRecord", "conv_records", "count_macs", "generator_macs", "discriminator_macs",
           "vgg19_macs", "encoder_macs", "train_step_flops", "synthesis_flops", "peak_tflops",
           "peak_entry", "PEAK_TFLOPS"]


@dataclass(frozen=True)
class ConvRecord:
    """One convolution call seen during a meta forward."""
    name: str
    kind: str            # 'conv' | 'convT'
    macs: int            # forward multiply-accumulates
    input_grad: bool     # its input requires grad: the backward computes dX (same MACs as forward)
    weight_grad: bool    # its weight requires grad: the backward computes dW (same MACs as forward)


def _conv_macs(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    k = m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.ConvTranspose2d):
        n, c_in, h, w = x.shape
        return n * c_in * h * w * (m.out_channels // m.groups) * k
    n, c_out, h, w = y.shape
    return n * c_out * h * w * (m.in_channels // m.groups) * k


def conv_records(model: nn.Module, *inputs: torch.Tensor, forward=None) -> list[ConvRecord]:
    """Run ``forward(*inputs)`` (default ``model``) once and record every conv call.

    ``inputs`` should be meta tensors (and ``model`` on the meta device) so nothing is computed;
    whether an input requires grad decides which backward MACs are needed. A module called twice
    (e.g. D on real and fake) is recorded twice.
    """
    names = {m: n for n, m in model.named_modules()}
    records: list[ConvRecord] = []

    def hook(m, args, out):
        x = args[0]
        records.append(ConvRecord(names.get(m, type(m).__name__),
                                  "convT" if isinstance(m, nn.ConvTranspose2d) else "conv",
                                  _conv_macs(m, x, out), bool(x.requires_grad),
                                  bool(m.weight.requires_grad and torch.is_grad_enabled())))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        (forward or model)(*inputs)
    finally:
        for h in handles:
            h.remove()
    return records


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Forward MACs of ``model(*inputs)``."""
    return sum(r.macs for r in conv_records(model, *inputs))


# ---- the networks for a config ------------------------------------------------------------------
def _meta_input(n: int, c: int, height: int, width: int, requires_grad: bool = False) -> torch.Tensor:
    return torch.empty(n, c, height, width, device="meta", requires_grad=requires_grad)


def _build(fn, cfg):
    """``fn(cfg)``'s network on the meta device, its norms the reference's: a kernel the run's
    --norm_impl picks (Triton) launches nothing on meta tensors, and the MACs are the convs'."""
    if getattr(cfg, "norm_impl", "ref") != "ref":
        cfg = dataclasses.replace(cfg, norm_impl="ref")
    with torch.device("meta"):
        return fn(cfg)


def generator_macs(cfg, width: int, height: int, batch: int = 1) -> int:
    """Forward MACs of the generator of ``cfg`` (a resolved TrainConfig) at width x height."""
    from pix2pixhd.models import build_generator, generator_input_nc
    g = _build(build_generator, cfg)
    return count_macs(g, _meta_input(batch, generator_input_nc(cfg), height, width))


def discriminator_macs(cfg, width: int, height: int, batch: int = 1) -> int:
    """Forward MACs of one pass of the (multiscale) discriminator on a (x, image) pair."""
    from pix2pixhd.models import build_discriminator, discriminator_input_nc
    d = _build(build_discriminator, cfg)
    if d is None:
        return 0
    return count_macs(d, _meta_input(batch, discriminator_input_nc(cfg), height, width))


def encoder_macs(cfg, width: int, height: int, batch: int = 1) -> int:
    """Forward MACs of the feature encoder's conv part (0 without --instance_feat/--label_feat)."""
    if not cfg.use_features or cfg.load_features:
        return 0
    from pix2pixhd.models import build_encoder
    e = _build(build_encoder, cfg)
    # The per-instance average (torch.unique) has no meta kernel and no MACs: count E.model.
    return count_macs(e.model, _meta_input(batch, cfg.output_nc, height, width))


def vgg19_macs(width: int, height: int, batch: int = 1) -> int:
    """Forward MACs of VGG19 up to relu5_1 (the perceptual loss's network)."""
    from pix2pixhd.losses import VGG19Features
    with torch.device("meta"):
        vgg = VGG19Features()
    return count_macs(vgg, _meta_input(batch, 3, height, width))


# ---- one step -----------------------------------------------------------------------------------
@dataclass
class StepFlops:
    """FLOPs (not MACs) of one step, per network and in total. ``forward_macs`` for reference."""
    flops: dict[str, float] = field(default_factory=dict)
    forward_macs: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.flops.values()))

    def to_dict(self) -> dict:
        return {"total_flops": self.total, "flops": dict(self.flops), "forward_macs": dict(self.forward_macs)}


def _needed(records: list[ConvRecord], *, weight_grads: bool, backward: bool = True) -> int:
    """Forward + needed backward MACs of one recorded pass."""
    macs = sum(r.macs for r in records)
    if backward:
        macs += sum(r.macs for r in records if r.input_grad)
        if weight_grads:
            macs += sum(r.macs for r in records if r.weight_grad)
    return macs


def train_step_flops(cfg, width: int, height: int, batch: int = 1, *, epoch: int = 1) -> StepFlops:
    """The FLOPs one pix2pixHD training step needs at ``epoch`` (see the module docstring for what
    counts).

    G (and E): forward, dW of every trainable conv, dX wherever the input carries grad; in the
    local stage at an epoch <= niter_fix_global the global part is frozen (forward only).
    D step: D on (x, real) and (x, fake.detach()): forward + dW, no dX into the inputs.
    G step: D on (x, fake): forward + dX only (D's weights are not being trained by this loss);
    VGG on fake (forward + dX) and on real (forward only).
    """
    from pix2pixhd.config import global_frozen_at
    from pix2pixhd.losses import VGG19Features
    from pix2pixhd.models import (build_discriminator, build_generator, discriminator_input_nc,
                                  generator_input_nc)
    out = StepFlops()
    nc = generator_input_nc(cfg)
    g = _build(build_generator, cfg)
    if global_frozen_at(cfg, epoch) and hasattr(g, "local_parameters"):
        g.model.requires_grad_(False)   # what Trainer._build_optimizers does for a frozen G1
    # With E trained, G's input (its feature channels) carries grad: dX through all of G, the
    # frozen global part too, back to E
    trains_e = cfg.use_features and not cfg.load_features
    g_rec = conv_records(g, _meta_input(batch, nc, height, width, requires_grad=trains_e))
    out.forward_macs["G"] = sum(r.macs for r in g_rec)
    out.flops["G"] = 2.0 * _needed(g_rec, weight_grads=True)
    if cfg.use_features and not cfg.load_features:
        # E is trained through G's input: forward, dW everywhere, dX after its first conv (its
        # input, the real photo, carries no grad).
        from pix2pixhd.models import build_encoder
        e_rec = conv_records(_build(build_encoder, cfg).model, _meta_input(batch, cfg.output_nc, height, width))
        out.forward_macs["E"] = sum(r.macs for r in e_rec)
        out.flops["E"] = 2.0 * _needed(e_rec, weight_grads=True)
    d = _build(build_discriminator, cfg)
    if d is not None:
        d_nc = discriminator_input_nc(cfg)
        d_rec = conv_records(d, _meta_input(batch, d_nc, height, width))
        out.forward_macs["D"] = sum(r.macs for r in d_rec)
        # D step: real and fake, forward + dW; dX for every layer after the first.
        d_step = 2 * _needed(d_rec, weight_grads=True)
        # G step: fake with grad, frozen D: forward + dX everywhere (into the fake image too).
        d.requires_grad_(False)
        d_g_rec = conv_records(d, _meta_input(batch, d_nc, height, width, requires_grad=True))
        out.flops["D"] = 2.0 * (d_step + _needed(d_g_rec, weight_grads=False))
    if not cfg.no_vgg_loss and cfg.model == "pix2pixhd":
        with torch.device("meta"):
            vgg = VGG19Features().requires_grad_(False)
        v_fake = conv_records(vgg, _meta_input(batch, 3, height, width, requires_grad=True))
        out.forward_macs["VGG"] = sum(r.macs for r in v_fake)
        out.flops["VGG"] = 2.0 * (_needed(v_fake, weight_grads=False) + out.forward_macs["VGG"])
    return out


def synthesis_flops(cfg, width: int, height: int, batch: int = 1) -> float:
    """FLOPs of one generator forward (what synthesis runs)."""
    return 2.0 * generator_macs(cfg, width, height, batch)


# ---- device peaks -------------------------------------------------------------------------------
# Dense peak TFLOP/s from the vendors' data sheets (no sparsity: the sheets' "with sparsity"
# figures halved). fp32 means the precision the benchmark runs in: fp32 convs use TF32 tensor
# cores by default in cuDNN (torch.backends.cudnn.allow_tf32 is True), so the TF32 peak is the
# honest ceiling for them. Matched against the CUDA device name in this order, most specific
# first (as benchmarks/kernels.py's PEAK_GBS): "NVIDIA H100 PCIe" and the NVL boards run lower
# clocks than the SXM part the bare "H100" / "H200" keys stand for.
#   H100 SXM / H200 SXM  989.4 bf16, 494.7 TF32 (sheet: 1,979 / 989 with sparsity)
#   H100 PCIe            756.5 bf16, 378.0 TF32 (sheet: 1,513 / 756 with sparsity; NVIDIA's H100
#                        table, checked here against a reseller's copy of it)
#   H100 NVL, H200 NVL   835.5 bf16, 417.5 TF32 (sheets: 1,671 / 835 with sparsity; from the
#                        review that asked for these rows, citing NVIDIA's H100 and H200 data
#                        sheets; not re-checked against the sheets themselves here)
PEAK_TFLOPS = (
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "fp32": 378.0}),
    ("H100 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 417.5}),
    ("H200 NVL", {"bf16": 835.5, "fp16": 835.5, "fp32": 417.5}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),
    ("H200", {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0}),
    ("L40S", {"bf16": 362.1, "fp16": 362.1, "fp32": 183.2}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "fp32": 62.5}),
)


def names_board(device_name: str, key: str) -> bool:
    """Whether a table's ``key`` names the board ``device_name``: the key as whole words of the
    name ("A100" in "NVIDIA A100-SXM4-80GB"), so "A10" is not an A10G nor "L4" an L40, boards with
    other peaks (they are then unknown: no fraction of a peak rather than a wrong one)."""
    import re
    return re.search(rf"(?<![a-z0-9]){re.escape(key.lower())}(?![a-z0-9])", device_name.lower()) is not None


def peak_entry(device_name: str, precision: str) -> tuple[str, float] | None:
    """(the PEAK_TFLOPS key that matched, its peak) for a CUDA device name and precision, or None
    when unknown (CPUs)."""
    for key, peaks in PEAK_TFLOPS:
        if names_board(device_name, key):
            peak = peaks.get(precision)
            return (key, peak) if peak is not None else None
    return None


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The data-sheet peak for a CUDA device name and precision, or None when unknown (CPUs)."""
    entry = peak_entry(device_name, precision)
    return entry[1] if entry else None


def build_parser():
    """``python3 -m pix2pixhd.flops``'s parser."""
    from pix2pixhd.argparsing import make_parser
    from pix2pixhd.errors import add_debug_option
    p = make_parser("python -m pix2pixhd.flops", "Analytic MAC/FLOP counts of the pix2pixHD networks "
                    "(NVIDIA's defaults: label_nc 35 + instance boundary, ngf 64 global / 32 local, ndf 64)")
    p.add_argument("--label_nc", type=int, default=35, help="label classes of the input (Cityscapes' 35)")
    add_debug_option(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python3 -m pix2pixhd.flops``: the model's GMAC and step TFLOP at the reference's settings."""
    import contextlib
    import io

    from pix2pixhd.config import TrainConfig
    args = build_parser().parse_args(argv)
    with contextlib.redirect_stdout(io.StringIO()):  # resolved()'s notes
        glob = TrainConfig(stage="global", label_nc=args.label_nc).resolved()
        loc = TrainConfig(stage="local", ngf=32, label_nc=args.label_nc).resolved()
    rows = [("global G (ngf 64)", 1024, 512, generator_macs(glob, 1024, 512)),
            ("local G (ngf 32, global part 64)", 2048, 1024, generator_macs(loc, 2048, 1024)),
            ("D, 2 scales", 1024, 512, discriminator_macs(glob, 1024, 512)),
            ("D, 3 scales", 2048, 1024, discriminator_macs(loc, 2048, 1024)),
            ("VGG19 to relu5_1", 1024, 512, vgg19_macs(1024, 512)),
            ("VGG19 to relu5_1", 2048, 1024, vgg19_macs(2048, 1024))]
    print(f"{'network':<34}{'size':>11}{'GMAC / forward':>16}")
    for name, w, h, macs in rows:
        print(f"{name:<34}{f'{w}x{h}':>11}{macs / 1e9:>16.1f}")
    print(f"\n{'training step (needed FLOPs)':<34}{'size':>11}{'TFLOP':>9}   per network")
    for name, c, w, h in (("global stage", glob, 1024, 512), ("local stage", loc, 2048, 1024)):
        s = train_step_flops(c, w, h)
        parts = ", ".join(f"{k} {v / 1e12:.2f}" for k, v in s.flops.items())
        print(f"{name:<34}{f'{w}x{h}':>11}{s.total / 1e12:>9.2f}   {parts}")
    print(f"{'synthesis (G forward)':<34}{'2048x1024':>11}{synthesis_flops(loc, 2048, 1024) / 1e12:>9.2f}")
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run
    raise SystemExit(run(main))

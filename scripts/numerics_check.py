#!/usr/bin/env python3
"""The numerical facts behind the GPU tests' tolerances and the native path's gradient fix,
printed on CPU (docs/benchmarks.md and docs/kernels.md quote this script's output).

    python scripts/numerics_check.py                 # all four, about 2 minutes on 2 cores
    python scripts/numerics_check.py --only norm     # one of: norm, fp32, bf16, adam

norm  PyTorch's native instance norm (F.instance_norm) on a channels-last input with a
      channels-last incoming gradient, channel means off zero: input-gradient error against fp64,
      batch 1, 2 and 4 and other sizes at batch 1, and the same through
      pix2pixhd.kernels.instance_norm_act(impl='auto').
fp32  NVIDIA's global generator (ngf 64, 4 downsamplings, 9 blocks) in fp32, NCHW, unfused:
      each output and gradient's distance from an fp64 run, at --fp32_res (the weight gradients
      of convs before a plain norm are small beside rounding: the GPU test's tolerance).
bf16  the same generator, channels-last, under bf16 autocast at 1024x512: the image's distance
      from the fp32 one, with the reference norms (the kernels' numerics) and with PyTorch's.
adam  Adam's state at the reference widths (global G + 2-scale D): 2 fp32 moments per parameter.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check_norm() -> None:
    from pix2pixhd.kernels import instance_norm_act
    cl = torch.channels_last
    print("norm: input-gradient error against fp64, x ~ N(5, 3^2), channels-last x and gradient")
    shapes = [(n, 64, 16, 32) for n in (1, 2, 4)] + [(1, 8, 4, 4), (1, 256, 32, 64), (1, 64, 64, 128)]
    for shape in shapes:
        torch.manual_seed(0)
        x0, g0 = torch.randn(shape) * 3 + 5, torch.randn(shape)
        xd = x0.double().requires_grad_()
        F.instance_norm(xd).backward(g0.double())
        x = x0.contiguous(memory_format=cl).requires_grad_()
        F.instance_norm(x).backward(g0.contiguous(memory_format=cl))
        xa = x0.contiguous(memory_format=cl).requires_grad_()
        instance_norm_act(xa, act="none", impl="auto").backward(g0.contiguous(memory_format=cl))
        print(f"  {list(shape)}: F.instance_norm {rel_err(x.grad, xd.grad):.1e}   "
              f"instance_norm_act(auto, act none) {rel_err(xa.grad, xd.grad):.1e}")


def _generator(seed: int):
    from pix2pixhd.layers import unfuse
    from pix2pixhd.networks import GlobalGenerator
    torch.manual_seed(seed)
    return unfuse(GlobalGenerator(36, 3, 64, 4, 9))


def check_fp32(h: int, w: int) -> None:
    plain = _generator(3)
    x, target = torch.randn(1, 36, h, w), torch.randn(1, 3, h, w)

    def run(model, dtype):
        xs = x.to(dtype).clone().requires_grad_()
        y = model(xs)
        ((y - target.to(dtype)) ** 2).mean().backward()
        return [y.detach(), xs.grad] + [p.grad for p in model.parameters()]

    got, ref = run(copy.deepcopy(plain), torch.float32), run(copy.deepcopy(plain).double(), torch.float64)
    scale = max(g.abs().max().item() for g in ref[1:])
    errs = [(i, rel_err(a, b)) for i, (a, b) in enumerate(zip(got, ref))
            if b.abs().max().item() >= 1e-6 * scale]  # conv biases before a norm: truly zero
    grad_errs = sorted(e for i, e in errs if i >= 2)
    print(f"fp32: unfused global generator at {w}x{h}, NCHW, against fp64: output {errs[0][1]:.1e}, "
          f"{len(grad_errs)} non-vanishing parameter gradients from {grad_errs[0]:.1e} to "
          f"{grad_errs[-1]:.1e} (median {grad_errs[len(grad_errs) // 2]:.1e})")


def check_bf16() -> None:
    from pix2pixhd.layers import set_norm_impl, unfuse
    from pix2pixhd.networks import GlobalGenerator
    torch.manual_seed(5)
    ref_norms = set_norm_impl(GlobalGenerator(36, 3, 64, 4, 9), "ref")  # the kernels' numerics
    plain = unfuse(ref_norms)
    ref_norms, plain = (m.to(memory_format=torch.channels_last) for m in (ref_norms, plain))
    x = torch.randn(1, 36, 512, 1024).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y32 = plain(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y_ref, y_plain = ref_norms(x), plain(x)
    print(f"bf16: global generator at 1024x512, channels-last, bf16 autocast vs fp32: reference "
          f"norms {rel_err(y_ref.float(), y32):.3f}, PyTorch's norms {rel_err(y_plain.float(), y32):.3f}, "
          f"the two bf16 images {rel_err(y_ref.float(), y_plain.float()):.3f} apart")


def check_adam() -> None:
    from pix2pixhd.networks import GlobalGenerator, MultiscaleDiscriminator
    with torch.device("meta"):
        n = sum(p.numel() for m in (GlobalGenerator(36, 3, 64, 4, 9),
                                    MultiscaleDiscriminator(39, 64, 3, 2)) for p in m.parameters())
    print(f"adam: global G + 2-scale D at the reference widths: {n / 1e6:.1f} M parameters, "
          f"Adam's two fp32 moments {2 * 4 * n / 2**30:.2f} GiB")


def resolution(text: str) -> tuple[int, int]:
    """``--fp32_res WIDTHxHEIGHT`` as (width, height): each side a multiple of 16 (the generator's
    4 downsamplings) and at least 32 (its blocks need 2x2 at the bottom)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT; give e.g. 256x128") from None
    if min(w, h) < 32 or w % 16 or h % 16:
        raise argparse.ArgumentTypeError(f"{text}: each side must be a multiple of 16 and at least 32 "
                                         "(the generator's 4 downsamplings); give e.g. 256x128")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    from pix2pixhd.argparsing import make_parser
    p = make_parser("scripts/numerics_check.py", __doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("norm", "fp32", "bf16", "adam"), default=None,
                   help="run this check alone (default: all four)")
    p.add_argument("--fp32_res", type=resolution, default="256x128",
                   help="WIDTHxHEIGHT of the fp32 check (sides multiples of 16, at least 32)")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    w, h = a.fp32_res
    checks = {"norm": check_norm, "fp32": lambda: check_fp32(h, w), "bf16": check_bf16,
              "adam": check_adam}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, fn in checks.items():
        if a.only in (None, name):
            t = time.perf_counter()
            fn()
            print(f"  ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a UserError: one error line, status 1
    raise SystemExit(run(main))

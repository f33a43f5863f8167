"""Benchmark: fused instance norm + activation against PyTorch, on the pix2pixHD layer shapes.

    python3 benchmarks/kernels.py                       # GPU: 1024x512 and 2048x1024, bf16
    python3 benchmarks/kernels.py --res 2048x1024 --dtype fp16 --no-compile
    python3 benchmarks/kernels.py --smoke               # CPU: tiny shapes through the Triton
                                                        # interpreter; checks the script, times
                                                        # mean nothing

For every distinct norm layer of the pix2pixHD generators and discriminator at a resolution
(channels, size, activation, residual or not) it times, forward and forward+backward:
  fused-nchw / fused-cl   pix2pixhd.kernels.instance_norm_act(impl='triton'), NCHW / channels-last
  eager-nchw / eager-cl   F.instance_norm + residual add + activation, as the unfused model runs
  compile-nchw/compile-cl the same function under torch.compile
and prints milliseconds and achieved GB/s against the bytes the op must move at least:
  forward  read x, write y (+ read residual)
  backward read x and dy, write dx (+ write dresidual)    (the fwd+bwd column adds both)
The fused kernels move more than that floor (the forward reads x twice, the backward reads x and
dy twice), so their GB/s against the floor is below the copy bandwidth by design. The weighted
total at the bottom multiplies each layer by how often it occurs in the network.

Timing: CUDA events around each call, the L2 cache flushed before each (a 256 MB write), the
median of --reps calls after warm-up. No GPU: says so and exits 0 (unless --smoke).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class Layer:
    name: str
    c: int
    h: int
    w: int
    act: str
    residual: bool
    count: int  # occurrences in the networks at this resolution


def pix2pixhd_layers(width: int, height: int) -> list[Layer]:
    """The norm layers at output size width x height (pix2pixHD defaults, one sample).

    width <= 1024: the global generator G1 (ngf 64, 4 downsamplings, 9 ResNet blocks).
    width  > 1024: G1 at half size inside the local enhancer, plus G2 (ngf 32, 3 blocks).
    Both: the multiscale discriminator (ndf 64, 3 layers; 2 scales up to 1024 wide, else 3);
    its convs use padding 2, so its sizes are a pixel or two off the powers of two.
    """
    layers: list[Layer] = []

    def g1(w, h, ngf, tag):
        layers.append(Layer(f"{tag} conv7", ngf, h, w, "relu", False, 1))
        for i in range(4):
            c = ngf * 2 ** (i + 1)
            layers.append(Layer(f"{tag} down{i + 1}", c, h >> (i + 1), w >> (i + 1), "relu", False, 1))
        c, hh, ww = ngf * 16, h >> 4, w >> 4
        layers.append(Layer(f"{tag} res norm1", c, hh, ww, "relu", False, 9))
        layers.append(Layer(f"{tag} res norm2+x", c, hh, ww, "none", True, 9))
        for i in range(4):
            c = ngf * 2 ** (3 - i)
            layers.append(Layer(f"{tag} up{i + 1}", c, h >> (3 - i), w >> (3 - i), "relu", False, 1))

    if width <= 1024:
        g1(width, height, 64, "G1")
    else:
        g1(width // 2, height // 2, 64, "G1")
        layers.append(Layer("G2 conv7", 32, height, width, "relu", False, 1))
        layers.append(Layer("G2 down", 64, height // 2, width // 2, "relu", False, 1))
        layers.append(Layer("G2 res norm1", 64, height // 2, width // 2, "relu", False, 3))
        layers.append(Layer("G2 res norm2+x", 64, height // 2, width // 2, "none", True, 3))
        layers.append(Layer("G2 up", 32, height, width, "relu", False, 1))
    num_d = 2 if width <= 1024 else 3
    for s in range(num_d):
        # Each scale runs 3 times per training step: on the fake for G, on fake and real for D.
        # The input of scale s is the image average-pooled s times: ceil(n / 2) each time.
        h, w = height, width
        for _ in range(s):
            h, w = -(-h // 2), -(-w // 2)
        sizes = []
        for _ in range(3):  # kernel 4, stride 2, padding 2: n // 2 + 1
            h, w = h // 2 + 1, w // 2 + 1
            sizes.append((h, w))
        layers.append(Layer(f"D{s} n1", 128, *sizes[1], "leaky_relu", False, 3))
        layers.append(Layer(f"D{s} n2", 256, *sizes[2], "leaky_relu", False, 3))
        # stride 1, padding 2: n + 1
        layers.append(Layer(f"D{s} n3", 512, sizes[2][0] + 1, sizes[2][1] + 1, "leaky_relu", False, 3))
    return layers


def smoke_layers() -> list[Layer]:
    return [Layer("tiny relu", 16, 24, 20, "relu", False, 2),
            Layer("tiny res", 32, 12, 10, "none", True, 3),
            Layer("tiny lrelu", 24, 9, 7, "leaky_relu", False, 1)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--res", default="1024x512,2048x1024",
                   help="comma-separated WIDTHxHEIGHT output sizes")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=20, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--backward", action=argparse.BooleanOptionalAction, default=True,
                   help="also time forward+backward")
    p.add_argument("--smoke", action="store_true",
                   help="no GPU needed: tiny shapes on CPU through TRITON_INTERPRET=1")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are first used
    # A silent fallback to PyTorch would make the fused rows measure the reference.
    os.environ["PIX2PIXHD_STRICT_KERNELS"] = "1"
    import torch
    import torch.nn.functional as F

    from pix2pixhd.kernels import instance_norm_act

    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/kernels.py: no CUDA GPU on this machine, nothing to time "
              "(run with --smoke to exercise the script on CPU through the Triton interpreter)")
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = getattr(torch, DTYPES[args.dtype])
    if args.smoke:
        args.no_compile, args.reps, args.warmup = True, 2, 1
        resolutions = [("smoke", smoke_layers())]
        print("SMOKE RUN: CPU, Triton interpreter; the times below measure nothing")
    else:
        resolutions = []
        for r in args.res.split(","):
            try:
                w, h = (int(v) for v in r.lower().split("x"))
            except ValueError:
                print(f"--res {r!r}: expected WIDTHxHEIGHT, e.g. 2048x1024", file=sys.stderr)
                return 2
            resolutions.append((r, pix2pixhd_layers(w, h)))
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, dtype "
              f"{args.dtype}, batch {args.batch}")

    def eager(x, residual, act):
        y = F.instance_norm(x, eps=1e-5)
        if residual is not None:
            y = y + residual
        if act == "relu":
            return F.relu(y)
        if act == "leaky_relu":
            return F.leaky_relu(y, 0.2)
        return y

    def fused(x, residual, act):
        return instance_norm_act(x, act=act, residual=residual, impl="triton")

    compiled = None if args.no_compile else torch.compile(eager, dynamic=False)
    methods = [("fused", fused), ("eager", eager)] + ([] if compiled is None else [("compile", compiled)])

    flush = torch.empty(256 * 2 ** 20, dtype=torch.uint8, device=device) if device.type == "cuda" else None

    def time_ms(fn) -> float:
        times = []
        for i in range(args.warmup + args.reps):
            if device.type == "cuda":
                flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                t = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                fn()
                t = (time.perf_counter() - t0) * 1e3
            if i >= args.warmup:
                times.append(t)
        return statistics.median(times)

    item = torch.empty((), dtype=dtype).element_size()
    for res_name, layers in resolutions:
        print(f"\n== {res_name} ({len(layers)} distinct norm layers) ==")
        cols = [f"{m}-{f}" for m, _ in methods for f in ("nchw", "cl")]
        header = f"{'layer':<16}{'shape':>20} {'x':>3} {'pass':<7}" + "".join(
            f"{c:>20}" for c in cols) + f"{'max rel err':>12}"
        print(header)
        print("  (each cell: ms | GB/s against the floor bytes)")
        totals = {c: [0.0, 0.0] for c in cols}  # weighted ms: forward, forward+backward
        for layer in layers:
            shape = (args.batch, layer.c, layer.h, layer.w)
            numel = args.batch * layer.c * layer.h * layer.w
            fwd_bytes = numel * item * (2 + layer.residual)
            bwd_bytes = numel * item * (3 + layer.residual)
            passes = [("fwd", fwd_bytes)] + ([("fwd+bwd", fwd_bytes + bwd_bytes)] if args.backward else [])
            x0 = torch.randn(shape, device=device, dtype=torch.float32).mul_(2).add_(0.5).to(dtype)
            r0 = torch.randn(shape, device=device, dtype=dtype) if layer.residual else None
            g0 = torch.randn(shape, device=device, dtype=dtype)
            rows = {p: [] for p, _ in passes}
            errs = []
            for mname, fn in methods:
                for fmt in (torch.contiguous_format, torch.channels_last):
                    col = f"{mname}-{'nchw' if fmt == torch.contiguous_format else 'cl'}"
                    x = x0.contiguous(memory_format=fmt)
                    r = r0.contiguous(memory_format=fmt) if r0 is not None else None
                    g = g0.contiguous(memory_format=fmt)
                    with torch.no_grad():
                        y = fn(x, r, layer.act)
                        y_ref = eager(x.float(), r.float() if r is not None else None, layer.act)
                    errs.append(((y.float() - y_ref).abs().max() / y_ref.abs().max()).item())
                    for pname, nbytes in passes:
                        if pname == "fwd":
                            def run(fn=fn, x=x, r=r):
                                with torch.no_grad():
                                    fn(x, r, layer.act)
                        else:
                            xg = x.detach().requires_grad_()
                            rg = r.detach().requires_grad_() if r is not None else None

                            def run(fn=fn, xg=xg, rg=rg, g=g):
                                torch.autograd.backward(fn(xg, rg, layer.act), g)
                                xg.grad = None
                                if rg is not None:
                                    rg.grad = None
                        ms = time_ms(run)
                        totals[col][0 if pname == "fwd" else 1] += ms * layer.count
                        rows[pname].append(f"{ms:8.3f} |{nbytes / ms / 1e6:7.0f}")
            shape_s = f"{layer.c}x{layer.h}x{layer.w}"
            for pname, _ in passes:
                err = f"{max(errs):12.1e}" if pname == "fwd" else ""
                print(f"{layer.name:<16}{shape_s:>20} {layer.count:>3} {pname:<7}"
                      + "".join(f"{c:>20}" for c in rows[pname]) + err)
        print(f"{'weighted total':<16}{'':>20} {'':>3} {'fwd':<7}"
              + "".join(f"{totals[c][0]:>17.3f} ms" for c in cols))
        if args.backward:
            print(f"{'':<16}{'':>20} {'':>3} {'fwd+bwd':<7}"
                  + "".join(f"{totals[c][1]:>17.3f} ms" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: fused instance norm + activation against PyTorch, on the pix2pixHD layer shapes.

    python3 benchmarks/kernels.py                       # GPU: 1024x512 and 2048x1024, bf16
    python3 benchmarks/kernels.py --res 2048x1024 --dtype bf16,fp32 --json k.json --markdown k.md
    python3 benchmarks/kernels.py --res 2048x1024 --dtype fp16 --no_compile
    python3 benchmarks/kernels.py --smoke               # CPU: tiny shapes through the Triton
                                                        # interpreter; checks the script, times
                                                        # mean nothing

For every distinct norm layer of the pix2pixHD generators and discriminator at a resolution
(channels, size, activation, residual or not) it times, forward and forward+backward:
  fused-nchw / fused-cl   pix2pixhd.kernels.instance_norm_act(impl='triton'), NCHW / channels-last
  eager-nchw / eager-cl   F.instance_norm + residual add + activation, as the unfused model runs
  compile-nchw/compile-cl the same function under torch.compile
and prints milliseconds and achieved GB/s against the bytes the op must move at least
(``floor_bytes``):
  forward  read x, write y (+ read residual)
  backward read x and dy, write dx (+ write dresidual, except after activation 'none': there
           d residual is dy itself, no bytes moved)      (the fwd+bwd column adds both)
and that as a fraction of the device's memory bandwidth: its data-sheet figure (``--peak_gbs``
overrides; see PEAK_GBS) and the copy bandwidth measured at start (a 1 GiB device-to-device copy,
read + write). The fused kernels move more than that floor (the forward reads x twice, the
backward reads x and dy twice), so their GB/s against the floor is below the copy bandwidth by
design. The weighted total at the bottom multiplies each layer by how often it occurs in the
network. The 'auto' column says which path ``impl='auto'`` measured faster for that layer
(forward + backward; kernels/instance_norm_act.py).

torch.compile: one compile per layer shape (``dynamic=False``), the dynamo cache enlarged to hold
them all; ``--compile_dynamic`` compiles once per activation / residual with dynamic shapes
(minutes less on a GPU check, possibly slower kernels: say which when quoting).

Timing (``time_per_call``): after --warmup single calls, a quick calibration doubles a loop count R
until R back-to-back calls take at least --min_ms (default 1 ms) between one pair of CUDA events,
so Python and autograd dispatch of a small layer overlap the GPU work as in training instead of
being timed alone. Each of --reps measurements then flushes the L2 cache (a 256 MB write),
times R calls between one event pair and divides by R; the cell is the median. The R calls cycle
through copies of the inputs, enough that every copy is used once per loop or at least 256 MB of
other inputs pass between two uses of one, so the calls after the first do not find their input
in L2. The forward+backward call is ``torch.autograd.grad(out, inputs, dy)`` (``fwd_bwd``): the
gradients come back as training's backward makes them (no AccumulateGrad copy of d residual
into a leaf's ``.grad``). No GPU: says so and exits 0 (unless --smoke).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._cli import check_outputs, command_line, make_parser, write_text_atomic  # noqa: E402
from pix2pixhd.argparsing import add_alias  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
METHODS = ("fused", "eager", "compile")
# Data-sheet memory bandwidth, GB/s, by device name (most specific first).
PEAK_GBS = (("H200", 4800), ("H100 NVL", 3900), ("H100 PCIe", 2000), ("H100", 3350),
            ("A100-SXM4-80GB", 2039), ("A100 80GB PCIe", 1935), ("A100", 1555), ("L40S", 864),
            ("A10", 600), ("L4", 300))


def peak_gbs(device_name: str) -> float | None:
    from pix2pixhd.flops import names_board
    for key, gbs in PEAK_GBS:
        if names_board(device_name, key):
            return float(gbs)
    return None


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


def floor_bytes(layer: Layer, numel: int, item: int) -> tuple[int, int]:
    """(forward, backward) bytes the op must move at least, for ``numel`` elements of ``item`` bytes.

    Forward: read x, write y, read the residual. Backward: read x and dy, write dx, and write
    d residual, unless the activation is 'none': then d residual is dy itself (the fused kernel
    returns dy, eager's add passes it through), so nothing more is moved.
    """
    fwd = numel * item * (2 + layer.residual)
    bwd = numel * item * (3 + (layer.residual and layer.act != "none"))
    return fwd, bwd


def fwd_bwd(fn, x, residual, dy, act):
    """One forward + backward of ``fn(x, residual, act)`` as training runs it: the gradients of x
    (and of the residual) from ``torch.autograd.grad``, returned, not accumulated into ``.grad``
    (an AccumulateGrad into a leaf clones a gradient that someone else still holds: for the
    residual after activation 'none' that is dy, a copy training never makes)."""
    import torch
    inputs = (x,) if residual is None else (x, residual)
    return torch.autograd.grad(fn(x, residual, act), inputs, dy)


class WallClock:
    """``start()`` / ``stop() -> ms`` with the host clock (CPU runs)."""

    def start(self) -> None:
        self._t = time.perf_counter()

    def stop(self) -> float:
        return (time.perf_counter() - self._t) * 1e3


class CudaClock:
    """``start()`` / ``stop() -> ms`` with a pair of CUDA events (stop synchronises)."""

    def start(self) -> None:
        import torch
        self._start, self._end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> float:
        import torch
        self._end.record()
        torch.cuda.synchronize()
        return self._start.elapsed_time(self._end)


def time_per_call(call, clock, *, warmup: int, reps: int, min_ms: float = 1.0, max_loop: int = 4096,
                  copies=None, before=None) -> tuple[float, int]:
    """(median ms per call, R): each of ``reps`` measurements times a loop of R calls between one
    ``clock.start()`` / ``clock.stop()`` and divides by R.

    ``call(k)`` runs the op once on input copy k. After ``warmup`` single calls, R doubles (from
    1, or straight to the estimate once a loop is timed) until a loop takes at least ``min_ms``
    (or R reaches ``max_loop``). ``copies(R)`` then readies the input copies for loops of R
    calls and returns how many there are (the loop cycles through them; default 1).
    ``before()`` runs before every loop, outside the clock (the L2 flush).
    """
    def loop(n: int, k: int) -> float:
        if before is not None:
            before()
        clock.start()
        for j in range(n):
            call(j % k)
        return clock.stop()

    for _ in range(warmup):
        loop(1, 1)
    r = 1
    while r < max_loop:
        t = loop(r, 1)
        if t >= min_ms:
            break
        grow = math.ceil(r * min_ms / t) if t > 0 else 2 * r
        r = min(max_loop, max(2 * r, grow))
    k = copies(r) if copies is not None else 1
    return statistics.median([loop(r, k) / r for _ in range(reps)]), r


def input_copies(tensors, r: int, rotate_bytes: int) -> list[tuple]:
    """Copies of ``tensors`` (None kept; requires_grad and memory format kept) for a loop of r
    calls: r of them, or as many as make ``rotate_bytes`` (the first is the tensors themselves)."""
    size = sum(t.numel() * t.element_size() for t in tensors if t is not None) or 1
    n = max(1, min(r, math.ceil(rotate_bytes / size)))
    out = [tuple(tensors)]
    for _ in range(n - 1):
        out.append(tuple(None if t is None else t.detach().clone().requires_grad_(t.requires_grad)
                         for t in tensors))
    return out


def smoke_layers() -> list[Layer]:
    return [Layer("tiny relu", 16, 24, 20, "relu", False, 2),
            Layer("tiny res", 32, 12, 10, "none", True, 3),
            Layer("tiny lrelu", 24, 9, 7, "leaky_relu", False, 1)]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/kernels.py`` (:func:`parse_args` checks its lists)."""
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--res", default="1024x512,2048x1024",
                   help="comma-separated WIDTHxHEIGHT output sizes")
    p.add_argument("--dtype", default="bf16", help=f"comma-separated storage dtypes: {', '.join(DTYPES)}")
    p.add_argument("--batch", type=int, default=1, help="images per activation tensor (the batch dimension)")
    p.add_argument("--reps", type=int, default=20,
                   help="timed loops per cell, each of R calls (R: see --min_ms); the cell is the "
                        "median of their times per call")
    p.add_argument("--warmup", type=int, default=5,
                   help="untimed single calls per measurement, before the calibration and the timed calls")
    p.add_argument("--min_ms", type=float, default=1.0,
                   help="time loops of R calls per event pair, R calibrated so a loop takes at least "
                        "this long (ms); the cell is the time per call")
    p.add_argument("--methods", default="fused,eager,compile",
                   help=f"comma-separated columns to time: some of {', '.join(METHODS)} (a run of "
                        "eager,compile gives torch.compile's ratio without timing the fused rows again)")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile rows")
    add_alias(p, "--no-compile", "--no_compile")   # the older spelling
    p.add_argument("--compile_dynamic", action="store_true",
                   help="torch.compile with dynamic shapes: one compile per activation/residual")
    p.add_argument("--backward", action="store_true", default=True,
                   help="also time forward+backward (on unless --no_backward)")
    p.add_argument("--no_backward", dest="backward", action="store_false", help="time the forward pass only")
    add_alias(p, "--no-backward", "--no_backward")   # the older spelling
    p.add_argument("--peak_gbs", type=float, default=None,
                   help="the device's memory bandwidth in GB/s (default: the data sheet's, by the device's name)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="write every measurement as JSON (default: not written)")
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="write the tables as markdown (default: not written)")
    p.add_argument("--smoke", action="store_true",
                   help="no GPU needed: tiny shapes on CPU through TRITON_INTERPRET=1")
    return p


def parse_args(argv=None):
    """The parsed command line, every value checked before any work (a bad one: ConfigError)."""
    p = build_parser()
    args = p.parse_args(argv)
    for d in args.dtype.split(","):
        if d not in DTYPES:
            raise ConfigError(f"--dtype {d!r}: expected some of {', '.join(DTYPES)}")
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"--methods {m!r}: expected some of {', '.join(METHODS)}")
    if not methods:
        raise ConfigError(f"--methods is empty: give some of {', '.join(METHODS)}")
    if args.no_compile:
        methods = [m for m in methods if m != "compile"]
        if not methods:
            raise ConfigError("--no_compile with --methods compile leaves nothing to time")
    if args.smoke and methods == ["compile"]:  # --smoke never compiles (it used to time eager)
        raise ConfigError("--smoke --methods compile: the smoke run times no torch.compile rows; give "
                          "--methods some of fused, eager")
    args.methods = [m for m in METHODS if m in methods]   # the table's column order
    for name, least in (("batch", 1), ("reps", 1), ("warmup", 0), ("min_ms", 0)):
        v = getattr(args, name)
        if not v >= least:
            raise ConfigError(f"--{name} {v}: expected at least {least}")
    if args.peak_gbs is not None and not args.peak_gbs > 0:
        raise ConfigError(f"--peak_gbs {args.peak_gbs}: expected a bandwidth above 0 GB/s")
    args.resolutions = []
    for r in args.res.split(","):
        try:
            w, h = (int(v) for v in r.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--res {r!r}: expected WIDTHxHEIGHT, e.g. 2048x1024") from None
        if w < 1 or h < 1:
            raise ConfigError(f"--res {r}: expected a positive WIDTHxHEIGHT, e.g. 2048x1024")
        layers = pix2pixhd_layers(w, h)
        small = [layer for layer in layers if layer.h * layer.w <= 1]
        if small:  # instance norm over one pixel (or none) is refused by instance_norm_act
            raise ConfigError(f"--res {r}: its layer {small[0].name} would be {small[0].w}x{small[0].h} "
                              "pixels, and instance norm needs more than 1 per channel; expected at least 32x16 "
                              "(32 high above 1024 wide: the generator downsamples 16 times, at half size there)")
        args.resolutions.append((r, layers))
    check_outputs(p, [("--json", args.json), ("--markdown", args.markdown)])
    # --smoke times its own tiny layers (at --batch): a --res given with it is noted, not used.
    args.smoke_ignores = args.smoke and args.res != p.get_default("res")
    return args


def copy_gbs(device) -> float | None:
    """Measured device-to-device copy bandwidth (read + write bytes / time) of a 1 GiB tensor."""
    import torch
    if device.type != "cuda":
        return None
    src = torch.empty(2 ** 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = []
    for i in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        if i >= 2:
            times.append(start.elapsed_time(end))
    del src, dst
    return 2 * 2 ** 30 / (statistics.median(times) / 1e3) / 1e9


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
        why = "no CUDA GPU on this machine, nothing timed"
        print(f"benchmarks/kernels.py: {why} "
              "(run with --smoke to exercise the script on CPU through the Triton interpreter)")
        # Status 0 (a CPU machine is not an error), but the files say so rather than go missing.
        if args.json:
            _write(args.json, json.dumps({"benchmark": "kernels", "command": command_line("benchmarks/kernels.py", argv),
                                          "device": None, "torch": torch.__version__, "not_run": why,
                                          "rows": []}, indent=1))
        if args.markdown:
            _write(args.markdown, f"# Fused instance norm + activation\n\nNot run: {why}.\n")
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")
    dtypes = args.dtype.split(",")
    if args.smoke:
        args.reps, args.warmup = 2, 1
        args.methods = [m for m in args.methods if m != "compile"]  # never empty: parse_args
        resolutions = [("smoke", smoke_layers())]
        print("SMOKE RUN: CPU, Triton interpreter; the times below measure nothing")
        if args.smoke_ignores:
            print(f"(--smoke times its own tiny layers: --res {args.res} not used)")
        device_name, peak, copy = "cpu (smoke)", None, None
    else:
        resolutions = args.resolutions  # checked by parse_args
        device_name = torch.cuda.get_device_name()
        peak = args.peak_gbs or peak_gbs(device_name)
        copy = copy_gbs(device)
        print(f"device: {device_name}, torch {torch.__version__}, dtypes {args.dtype}, batch "
              f"{args.batch}; memory bandwidth: data sheet "
              f"{f'{peak:.0f} GB/s' if peak else 'unknown (--peak_gbs)'}, measured copy {copy:.0f} GB/s")

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

    if "compile" not in args.methods:
        compiled = None
    else:
        import torch._dynamo
        # One graph per shape, layout and activation: the default cache (8) would silently run
        # eager after the eighth.
        torch._dynamo.config.cache_size_limit = 1024
        torch._dynamo.config.accumulated_cache_size_limit = 4096
        compiled = torch.compile(eager, dynamic=True if args.compile_dynamic else False)
    methods = [(m, {"fused": fused, "eager": eager, "compile": compiled}[m]) for m in args.methods]

    flush_bytes = 256 * 2 ** 20
    flush = torch.empty(flush_bytes, dtype=torch.uint8, device=device) if device.type == "cuda" else None
    clock = CudaClock() if device.type == "cuda" else WallClock()

    def time_ms(op, tensors) -> tuple[float, int]:
        """(ms per call, loop count R) of op(*tensors); the loop cycles through input copies."""
        sets = [tuple(tensors)]

        def copies(r):
            sets[:] = input_copies(tensors, r, flush_bytes if flush is not None else 0)
            return len(sets)

        try:
            return time_per_call(lambda k: op(*sets[k]), clock, warmup=args.warmup, reps=args.reps,
                                 min_ms=args.min_ms, copies=copies,
                                 before=flush.zero_ if flush is not None else None)
        finally:
            sets.clear()

    def frac(gbs, ref):
        return f"{100 * gbs / ref:.0f}%" if ref else "-"

    records, md = [], []

    def save(say: bool = True) -> None:
        if args.json:
            record = {"benchmark": "kernels", "command": command_line("benchmarks/kernels.py", argv),
                      "device": device_name, "torch": torch.__version__,
                      "peak_gbs": peak, "copy_gbs": copy, "methods": args.methods,
                      "compile": "compile" in args.methods,
                      "compile_dynamic": args.compile_dynamic, "rows": records}
            _write(args.json, json.dumps(record, indent=1), say=say)
        if args.markdown:
            _write(args.markdown, say=say, text=f"# Fused instance norm + activation: {device_name}\n\n"
                   f"Bandwidth: data sheet {f'{peak:.0f}' if peak else '-'} GB/s, measured copy "
                   f"{f'{copy:.0f}' if copy else '-'} GB/s. Cells: ms, GB/s against the floor "
                   "bytes, % of the data-sheet bandwidth.\n" + "\n".join(md) + "\n")

    for dtype_name in dtypes:
        dtype = getattr(torch, DTYPES[dtype_name])
        item = torch.empty((), dtype=dtype).element_size()
        for res_name, layers in resolutions:
            title = f"{res_name}, {dtype_name} ({len(layers)} distinct norm layers)"
            print(f"\n== {title} ==")
            cols = [f"{m}-{f}" for m, _ in methods for f in ("nchw", "cl")]
            header = f"{'layer':<16}{'shape':>20} {'x':>3} {'pass':<7}" + "".join(
                f"{c:>26}" for c in cols) + f"{'auto':>13}{'max rel err':>12}"
            print(header)
            print("  (each cell: ms | GB/s against the floor bytes | % of data-sheet bandwidth)")
            md += [f"\n### {title}", "", "| layer | shape | x | pass | " + " | ".join(cols)
                   + " | auto (nchw/cl) |", "|---" * (len(cols) + 5) + "|"]
            totals = {c: [0.0, 0.0] for c in cols}  # weighted ms: forward, forward+backward
            for layer in layers:
                shape = (args.batch, layer.c, layer.h, layer.w)
                numel = args.batch * layer.c * layer.h * layer.w
                fwd_bytes, bwd_bytes = floor_bytes(layer, numel, item)
                passes = [("fwd", fwd_bytes)] + ([("fwd+bwd", fwd_bytes + bwd_bytes)] if args.backward else [])
                x0 = torch.randn(shape, device=device, dtype=torch.float32).mul_(2).add_(0.5).to(dtype)
                r0 = torch.randn(shape, device=device, dtype=dtype) if layer.residual else None
                g0 = torch.randn(shape, device=device, dtype=dtype)
                rows = {p: [] for p, _ in passes}
                errs, auto = [], ["-", "-"]
                # What 'auto' picks between the fused kernel and PyTorch: only beside fused rows.
                formats = (torch.contiguous_format, torch.channels_last) if "fused" in args.methods else ()
                for i, fmt in enumerate(formats):
                    xa = x0.contiguous(memory_format=fmt).requires_grad_()
                    ra = r0.contiguous(memory_format=fmt) if r0 is not None else None
                    instance_norm_act(xa, act=layer.act, residual=ra, impl="auto")  # auto measures
                    auto[i] = auto_choice(xa, ra, layer.act)
                for mname, fn in methods:
                    for fmt in (torch.contiguous_format, torch.channels_last):
                        lay = "nchw" if fmt == torch.contiguous_format else "cl"
                        col = f"{mname}-{lay}"
                        x = x0.contiguous(memory_format=fmt)
                        r = r0.contiguous(memory_format=fmt) if r0 is not None else None
                        g = g0.contiguous(memory_format=fmt)
                        with torch.no_grad():
                            y = fn(x, r, layer.act)
                            y_ref = eager(x.float(), r.float() if r is not None else None, layer.act)
                        errs.append(((y.float() - y_ref).abs().max() / y_ref.abs().max()).item())
                        for pname, nbytes in passes:
                            if pname == "fwd":
                                def run(x, r, fn=fn):
                                    with torch.no_grad():
                                        fn(x, r, layer.act)
                                tensors = (x, r)
                            else:
                                def run(xg, rg, g, fn=fn):
                                    fwd_bwd(fn, xg, rg, g, layer.act)
                                tensors = (x.detach().requires_grad_(),
                                           r.detach().requires_grad_() if r is not None else None, g)
                            ms, loop = time_ms(run, tensors)
                            del tensors
                            gbs = nbytes / ms / 1e6
                            totals[col][0 if pname == "fwd" else 1] += ms * layer.count
                            rows[pname].append((ms, gbs, frac(gbs, peak)))
                            records.append({"res": res_name, "dtype": dtype_name, "layer": layer.name,
                                            "shape": list(shape), "count": layer.count, "act": layer.act,
                                            "residual": layer.residual, "pass": pname, "method": mname,
                                            "layout": lay, "ms": ms, "calls_per_timing": loop,
                                            "floor_bytes": nbytes, "gb_per_s": gbs,
                                            "fraction_of_datasheet": gbs / peak if peak else None,
                                            "fraction_of_copy": gbs / copy if copy else None,
                                            "auto_choice": auto[0 if lay == "nchw" else 1]})
                shape_s = f"{layer.c}x{layer.h}x{layer.w}"
                for pname, _ in passes:
                    err = f"{max(errs):12.1e}" if pname == "fwd" else ""
                    auto_s = "/".join(auto) if pname == "fwd" else ""
                    print(f"{layer.name:<16}{shape_s:>20} {layer.count:>3} {pname:<7}"
                          + "".join(f"{f'{ms:8.3f} |{gbs:6.0f} |{fr:>4}':>26}" for ms, gbs, fr in rows[pname])
                          + f"{auto_s:>13}" + err)
                    md.append(f"| {layer.name} | {shape_s} | {layer.count} | {pname} | "
                              + " | ".join(f"{ms:.3f} ms, {gbs:.0f} GB/s, {fr}" for ms, gbs, fr in rows[pname])
                              + f" | {auto_s} |")
                save(say=False)  # after every layer: a time cap that ends the run keeps what was measured
            for i, pname in enumerate(["fwd"] + (["fwd+bwd"] if args.backward else [])):
                line = "".join(f"{totals[c][i]:>23.3f} ms" for c in cols)
                print(f"{'weighted total' if i == 0 else '':<16}{'':>20} {'':>3} {pname:<7}" + line)
                md.append(f"| weighted total (ms) | | | {pname} | "
                          + " | ".join(f"{totals[c][i]:.3f}" for c in cols) + " | |")
            save()  # with the table's totals
    return 0


def auto_choice(x, residual, act) -> str:
    """What 'auto' chose for this configuration ('triton' / 'native'), '-' if it did not measure."""
    import importlib
    K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
    key = K.AutoChooser.key(x, None, None, residual, act, train=x.requires_grad)
    hit = K._AUTO.choices.get(key)
    return hit["choice"] if hit else "-"


def _write(path: str, text: str, say: bool = True) -> None:
    write_text_atomic(path, text, say=say)


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    sys.exit(run(main))

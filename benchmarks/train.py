"""Benchmark: training throughput of our Trainer against the reference-style step, in one process.

    python3 benchmarks/train.py                                  # GPU: global 1024x512, local 2048x1024,
                                                                 # reference architectures, fp32 and bf16
    python3 benchmarks/train.py --stage global --res 1024x512 --precision bf16 --channels_last both
    python3 benchmarks/train.py --json results/train_cpu.json    # CPU: small sizes (see the defaults),
                                                                 # then the reference widths at 256x128
    python3 benchmarks/train.py --stage global --res 1024x512 --precision fp32,bf16+cl   # per-path layout
    python3 benchmarks/train.py --stage global --res 256x128 --ngf 64 --ndf 64 --profile /tmp/prof

For every stage and resolution it builds one Trainer per requested precision / layout (our
default path: ``pix2pixhd.trainer.Trainer.train_step``) and the reference-style step of
``benchmarks/baseline.py`` (fp32, NCHW, unfused norms, three separate D passes, D weight
gradients in the G pass), all from the same initial weights, and runs them interleaved step by
step on the same synthetic batches (uint8 images, label and instance ids, as the data loader
hands them over), so slow drift of a shared machine hits every path alike. Per path it prints:

  step ms        median wall time of a step (device synchronised before and after), over the
                 timed steps, which run with the PhaseTimer off (no synchronisation inside)
  img/s          batch / step time
  phases         median ms of each phase (the Trainer's PhaseTimer marks, plus 'data': moving
                 the batch to the device and encoding it), from --phase_steps further steps per
                 path with the timer on (it syncs the device at every mark, both paths); those
                 steps are not in the step time
  peak MiB       CUDA: the path's parameters + buffers + optimizer state, plus the peak the step
                 allocates above what was resident before it (the path's peak as if alone); CPU: -
  TFLOP/s, util  the step's needed FLOPs (pix2pixhd.flops.train_step_flops, the same for every
                 path) / step time, and that over the device's data-sheet peak for the precision
                 (the row's JSON names the peak: peak_tflops, peak_source)
  vs baseline    baseline step time / this path's step time (> 1: faster than the reference)
  loss diff      max relative difference of the first step's losses to the baseline's (fp32 on
                 CPU: ~1e-6 shows the two compute the same thing; on CUDA cuDNN's convolutions
                 run in TF32 by default and the paths pick different algorithms, so expect
                 ~1e-4 to 1e-3; bf16: its rounding)

On CPU the default sizes use ngf/ndf 16; ``--reference_widths`` (on by default on CPU unless
--ngf/--ndf/--res are given or --stage leaves out global) adds NVIDIA's global configuration at its real widths (ngf 64,
9 blocks, ndf 64) at 256x128, the largest size a 2-core CPU steps through in seconds.

``--profile DIR`` then runs one more step of each path under torch.profiler, prints the ops with
the most self time and writes a Chrome trace per path into DIR.

VGG19 is randomly initialised (the timing does not depend on its weights and nothing is
downloaded). Every path is at epoch 1 with niter_fix_global 0 (the TrainConfig default; there is no
flag for it): in the local stage the global generator trains too, as after NVIDIA's
--niter_fix_global epochs. ``--json PATH`` writes the table, the config, the device and the FLOP
model, rewritten (atomically) after every configuration, so a run cut short keeps the rows done.
Each row's ``arch`` has ``norm_impl`` (--norm_impl as given) and ``norm_path``, the path our
paths' norms took: 'triton', 'native', 'ref' (--norm_impl triton without a GPU or the Triton
interpreter runs the reference, with a warning), or 'auto' (CUDA: measured per layer).

Every option is checked before any work: a value out of range is one ``error:`` line naming the
option, the value and the valid range (exit status 1, as the main tools; argparse's own errors, an
unknown option or a value of the wrong type, keep its usage and status 2).
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch


if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes the package importable
from benchmarks import baseline as B  # noqa: E402
from benchmarks._cli import (add_device_options, add_generator_options, check_outputs, command_line,  # noqa: E402
                             make_parser)
from pix2pixhd.argparsing import add_alias  # noqa: E402
from pix2pixhd.distributed import resolve_device  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402

PHASES = ["prepare", "G_forward", "D_forward_backward", "losses", "G_losses", "G_backward", "D_backward",
          "optimizer"]


def parse_res(text: str) -> list[tuple[int, int]]:
    out = []
    for r in text.split(","):
        try:
            w, h = (int(v) for v in r.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--res {r!r}: expected WIDTHxHEIGHT, e.g. 1024x512") from None
        if w < 1 or h < 1:
            raise ConfigError(f"--res {r!r}: expected a positive WIDTHxHEIGHT, e.g. 1024x512")
        out.append((w, h))
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/train.py``."""
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--stage", default="global,local", help="comma-separated: global, local")
    p.add_argument("--res", default=None, help="comma-separated WIDTHxHEIGHT for every stage "
                   "(default: GPU global 1024x512, local 2048x1024; CPU global 128x64, local 256x128)")
    p.add_argument("--precision", default=None,
                   help="our paths' precisions, comma-separated, each optionally with +cl for a "
                        "channels-last path, e.g. fp32,bf16+cl (default: GPU fp32,bf16; CPU fp32)")
    p.add_argument("--channels_last", default="off", choices=("off", "on", "both"),
                   help="memory format of the paths without +cl (the Trainer's default is off)")
    p.add_argument("--reference_widths", action="store_true", default=None,
                   help="also run the global stage at NVIDIA's widths (ngf 64, ndf 64) at 256x128 "
                        "(default: on for CPU unless --ngf, --ndf or --res is given or --stage "
                        "leaves out global; the GPU "
                        "defaults are the reference widths already)")
    p.add_argument("--no_reference_widths", dest="reference_widths", action="store_false",
                   help="do not run the global stage at NVIDIA's widths (see --reference_widths)")
    add_alias(p, "--no-reference_widths", "--no_reference_widths")   # the older spelling
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="after timing, profile one step per path (torch.profiler): top ops printed, "
                        "Chrome traces written to DIR (default: no profile)")
    p.add_argument("--norm_impl", default="auto", choices=("auto", "triton", "ref"),
                   help="our paths' fused instance norm (train_hd.py --norm_impl): auto (on CUDA the "
                        "faster of the Triton kernel and PyTorch's norm, timed per shape; else PyTorch), "
                        "triton, or ref (the PyTorch reference)")
    p.add_argument("--batch", type=int, default=1, help="images per training step (--batchSize)")
    add_generator_options(p)
    p.add_argument("--ndf", type=int, default=None,
                   help="discriminator filters of the first conv (default: 64 on GPU, 16 on CPU)")
    p.add_argument("--n_layers_D", type=int, default=3,
                   help="strided conv layers of each discriminator (the reference's 3)")
    p.add_argument("--no_vgg_loss", action="store_true",
                   help="leave out the VGG feature loss (and its VGG19 forward passes) in every path")
    p.add_argument("--steps", type=int, default=None, help="timed steps per path (default: GPU 20, CPU 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per path (default: GPU 5, CPU 1)")
    p.add_argument("--phase_steps", type=int, default=None,
                   help="steps per path after the timed ones, with the PhaseTimer on (it syncs the "
                        "device at every phase), for the phase columns only; at least 1 (default: GPU 3, CPU 1)")
    p.add_argument("--no_baseline", action="store_true", help="time only our path(s)")
    p.add_argument("--max_seconds", type=float, default=None,
                   help="stop a configuration's steps once this many seconds have passed since the "
                        "start (after at least one warm-up, one timed and one phase step of every "
                        "path; the rest of the warm-up is skipped too) and report the steps timed: "
                        "a caller's time cap then still gets a table (default: no limit)")
    add_device_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the random batches")
    return p


# Options whose values argparse's types cannot bound: (name, least valid value, what it counts).
# None (the device-dependent default) is always valid.
MINIMUMS = (("steps", 1, "timed steps per path"), ("warmup", 0, "untimed steps per path"),
            ("phase_steps", 1, "phase steps per path"), ("batch", 1, "images per step"),
            ("ngf", 1, "generator filters"), ("ndf", 1, "discriminator filters"),
            ("n_downsample_global", 0, "downsamplings"), ("n_blocks_global", 0, "residual blocks"),
            ("n_blocks_local", 0, "residual blocks"), ("n_layers_D", 1, "strided conv layers"),
            ("max_seconds", 0, "seconds"))


def check_args(p: argparse.ArgumentParser, args) -> None:
    """Every option's value, before any work: a bad one is a ConfigError naming the option, the
    value and the valid range (one ``error:`` line through ``errors.run``, exit status 1)."""
    for name, least, what in MINIMUMS:
        v = getattr(args, name)
        if v is not None and not v >= least:
            raise ConfigError(f"--{name} {v}: expected at least {least} ({what})")
    if not 1 <= args.label_nc <= 256:  # the random label maps are uint8, as the loader's
        raise ConfigError(f"--label_nc {args.label_nc}: expected 1 to 256 (label classes of the uint8 label maps)")
    for stage in args.stage.split(","):
        if stage not in ("global", "local"):
            raise ConfigError(f"--stage {stage!r}: expected global or local (comma-separated)")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        raise ConfigError(f"--peak_tflops {args.peak_tflops:g}: expected a peak above 0 TFLOP/s")
    for text, parse in ((args.res, parse_res), (args.precision, parse_precisions)):
        if text is not None:
            parse(text)
    cuda = resolve_device(args.device).type == "cuda"   # a device this machine lacks: one line
    default = "its default size is {} (without --res); give --res or fewer downsamplings"
    sizes = [(stage, w, h, None if args.res else default) for stage in args.stage.split(",")
             for w, h in (parse_res(args.res) if args.res else [default_res(stage, cuda)])]
    if reference_widths(args, cuda):   # the reference widths' configuration (main)
        sizes.append(("global", 256, 128, "--reference_widths runs it at {}; give --no_reference_widths "
                                          "or fewer downsamplings"))
    for stage, w, h, not_given in sizes:
        why = size_error(stage, w, h, args.n_downsample_global, not_given)
        if why:
            raise ConfigError(why)
    check_outputs(p, [("--json", args.json)], [("--profile", args.profile)])


def reference_widths(args, cuda: bool) -> bool:
    """Whether to run the global stage at the reference widths too: --reference_widths, else on
    CPU unless --ngf, --ndf or --res is given or --stage leaves out the global stage."""
    if args.reference_widths is not None:
        return args.reference_widths
    return not cuda and not (args.ngf or args.ndf or args.res) and "global" in args.stage.split(",")


def flop_text(flop: float) -> str:
    """'1.234 TFLOP', or in GFLOP below 1 TFLOP (a small configuration's would read 0.000)."""
    return f"{flop / 1e12:.3f} TFLOP" if flop >= 1e12 else f"{flop / 1e9:.4g} GFLOP"


def default_res(stage: str, cuda: bool) -> tuple[int, int]:
    """A stage's size when --res is not given (its help says which)."""
    if cuda:
        return (1024, 512) if stage == "global" else (2048, 1024)
    return (128, 64) if stage == "global" else (256, 128)


def size_error(stage: str, width: int, height: int, n_downsample_global: int,
               not_given: str | None = None) -> str | None:
    """Why the stage's generator cannot take width x height (None if it can): its sides must be
    multiples of its downsampling factor m and at least 2m (the residual blocks' reflection
    padding needs a bottleneck of 2 pixels a side). train.py and synthesis.py check it up front.
    ``not_given``: where the size comes from when --res did not give it, and the fix."""
    from pix2pixhd.config import TrainConfig
    m = B.resolved(TrainConfig(stage=stage, n_downsample_global=n_downsample_global)).required_multiple
    if not (width % m or height % m or min(width, height) < 2 * m):
        return None
    need = (f"the {stage} generator needs sides that are multiples of {m} and at least {2 * m} "
            "(a bottleneck of 2 pixels)")
    if not_given:
        return f"--n_downsample_global {n_downsample_global}: {need}, and {not_given.format(f'{width}x{height}')}"
    return f"--res {width}x{height}: {need}; give a larger --res or fewer --n_downsample_global"


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def make_batch(n: int, h: int, w: int, label_nc: int, seed: int, pin: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"label": torch.randint(0, label_nc, (n, 1, h, w), generator=g).to(torch.uint8),
             "inst": torch.randint(0, 8, (n, 1, h, w), generator=g).to(torch.int32),
             "image": torch.randint(0, 256, (n, 3, h, w), generator=g).to(torch.uint8)}
    return {k: v.pin_memory() for k, v in batch.items()} if pin else batch


class _Path:
    """One timed path: a callable step, its timer, optimizers and resident state.

    ``resident()`` -> (bytes kept between steps, of which optimizer state), read after the steps:
    Adam creates its state in the first step, so a size taken when the path is built leaves it
    out (1.40 GiB at the reference widths: scripts/numerics_check.py --only adam)."""

    def __init__(self, name, precision, channels_last, step, timer, zero_grads, resident):
        self.name, self.precision, self.channels_last = name, precision, channels_last
        self.step, self.timer, self.zero_grads, self.resident = step, timer, zero_grads, resident
        self.step_ms, self.cpu_ms, self.phases, self.extra_peak, self.first_losses = [], [], {}, [], None
        self.warmup_steps = self.phase_steps = 0


def _ours(cfg, device, vgg) -> tuple:
    from pix2pixhd.distributed import DistInfo
    from pix2pixhd.trainer import Trainer
    return Trainer(cfg, DistInfo(device=device), vgg=vgg)


def row_peak(given: float | None, gpu_name: str | None, precision: str) -> tuple[float | None, str | None]:
    """(peak TFLOP/s, where it came from) for a row's utilisation: --peak_tflops, else the data
    sheet's entry for the GPU's name and the path's precision (None on CPU or an unknown GPU)."""
    from pix2pixhd.flops import peak_entry
    if given is not None:   # check_args refuses 0 and below
        return given, "--peak_tflops"
    entry = peak_entry(gpu_name, precision) if gpu_name else None
    return (entry[1], f"data sheet: {entry[0]}, {precision}") if entry else (None, None)


def run_config(args, stage: str, width: int, height: int, device: torch.device, info: dict,
               ngf: int | None = None, ndf: int | None = None) -> list[dict]:
    # The Trainers' run folder (checkpoints_dir), removed with whatever it holds when the
    # configuration ends, however it ends (it was left behind, one per configuration).
    tmp = tempfile.mkdtemp(prefix="p2phd_bench_")
    try:
        return _run_config(args, stage, width, height, device, info, tmp, ngf, ndf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_config(args, stage, width, height, device, info, tmp, ngf, ndf) -> list[dict]:
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.flops import train_step_flops
    from pix2pixhd.kernels.instance_norm_act import path_taken
    from pix2pixhd.losses import VGG19Features, VGGLoss

    cuda = device.type == "cuda"
    ngf = ngf if ngf is not None else args.ngf if args.ngf is not None else (
        (64 if stage == "global" else 32) if cuda else 16)
    ndf = ndf if ndf is not None else args.ndf if args.ndf is not None else (64 if cuda else 16)
    base = dict(stage=stage, name="bench", checkpoints_dir=tmp, label_nc=args.label_nc, ngf=ngf, ndf=ndf,
                n_downsample_global=args.n_downsample_global, n_blocks_global=args.n_blocks_global,
                n_blocks_local=args.n_blocks_local, n_layers_D=args.n_layers_D,
                no_vgg_loss=args.no_vgg_loss, norm_impl=args.norm_impl, no_tensorboard=True, no_html=True,
                no_progress=True, device=str(device), seed=args.seed)
    cfg0 = B.resolved(TrainConfig(**base))
    m = cfg0.required_multiple
    if width % m or height % m:
        raise SystemExit(f"error: --res {width}x{height}: the {stage} generator needs multiples of {m}; "
                         f"give a --res whose sides are multiples of {m}")
    torch.manual_seed(args.seed)
    # Random weights: the same cost, nothing downloaded. Each path gets its own copy, since a
    # Trainer moves its VGG to its memory format in place (a shared one would hand the baseline
    # channels-last weights).
    vgg_net = None if args.no_vgg_loss else VGG19Features()

    layouts = {"off": [False], "on": [True], "both": [False, True]}[args.channels_last]
    paths: list[_Path] = []
    first = None
    # (precision, channels-last) once each: --channels_last both with fp32,fp32+cl names one twice.
    combos = dict.fromkeys((prec, cl) for prec, forced_cl in args.precisions
                           for cl in ([True] if forced_cl else layouts))
    for prec, cl in combos:
        cfg = B.resolved(TrainConfig(**base, precision=prec, channels_last=cl))
        tr = _ours(cfg, device, copy.deepcopy(vgg_net))
        first = first or tr
        name = f"ours {prec}" + (" cl" if cl else "")
        paths.append(_Path(name, prec, cl, tr.train_step, tr.timer,
                           lambda tr=tr: [o.zero_grad(set_to_none=True) for o in (tr.opt_G, tr.opt_D)],
                           lambda tr=tr: (B.trainer_resident_bytes(tr),
                                          B.state_bytes([], [tr.opt_G, tr.opt_D]))))
    if not args.no_baseline:
        # Same initial weights as every Trainer above (each seeds before building its networks).
        vgg = None if vgg_net is None else VGGLoss(copy.deepcopy(vgg_net)).to(device)
        ref = B.ReferenceStep(first.G, first.D, cfg0, vgg, device)
        paths.insert(0, _Path("baseline (reference-style)", "fp32", False, ref.train_step, ref.timer,
                              lambda: [o.zero_grad(set_to_none=True) for o in (ref.opt_G, ref.opt_D)],
                              lambda: (ref.resident_bytes(), B.state_bytes([], [ref.opt_G, ref.opt_D]))))

    batches = [make_batch(args.batch, height, width, args.label_nc, args.seed + i, cuda) for i in range(3)]

    def over_time() -> bool:
        return args.max_seconds is not None and time.monotonic() - args.started > args.max_seconds

    def run_step(p: _Path, batch: dict, kind: str, first: bool) -> None:
        """kind 'warmup' | 'timed' (PhaseTimer off: nothing syncs inside the step) | 'phases'
        (PhaseTimer on, its syncs included; only the phase times are kept)."""
        p.zero_grads()
        p.timer.start(kind == "phases")
        with B.PeakMemory(device) as mem:
            holder = {}
            ms, cpu_ms = B.timed(lambda: holder.setdefault("l", p.step(batch)), device)
        if first:
            p.first_losses = {k: float(v) for k, v in holder["l"].items()}
        if kind == "timed":
            p.step_ms.append(ms)
            p.cpu_ms.append(cpu_ms)
            if mem.extra is not None:
                p.extra_peak.append(mem.extra)
        elif kind == "phases":
            p.phase_steps += 1
            for k, v in p.timer.times.items():
                p.phases.setdefault(k, []).append(v)
        else:
            p.warmup_steps += 1
        p.timer.start(False)

    # Warm-up, timed and phase steps, each round over every path (interleaved: drift of a shared
    # machine hits all paths alike). Past --max_seconds each kind stops after its first round.
    plan = [("warmup", args.warmup), ("timed", args.steps), ("phases", args.phase_steps)]
    i = 0
    for kind, n in plan:
        for j in range(n):
            if j >= 1 and over_time():
                if kind == "warmup":
                    print(f"(--max_seconds {args.max_seconds:g}: warm-up cut at {j} of {n} steps)")
                elif kind == "timed":
                    print(f"(--max_seconds {args.max_seconds:g}: {j} of {n} timed steps)")
                break
            batch = batches[i % len(batches)]
            for p in paths:
                run_step(p, batch, kind, first=i == 0)
            i += 1

    if args.profile:
        profile_paths(paths, batches[0], Path(args.profile), f"{stage}_{width}x{height}_ngf{ngf}")

    # The FLOP model at the paths' epoch: a Trainer freezes the local stage's global generator
    # up to niter_fix_global (0 here), and the model then charges it no backward.
    flops = train_step_flops(cfg0, width, height, args.batch, epoch=first.epoch)
    rows = []
    base = paths[0] if not args.no_baseline else None
    base_losses = paths[0].first_losses if not args.no_baseline else None
    for p in paths:
        resident, opt_state = p.resident()
        step_ms = B.median(p.step_ms)
        peak, peak_source = row_peak(args.peak_tflops, info.get("gpu", "") if cuda else None, p.precision)
        tflops = flops.total / (step_ms / 1e3) / 1e12
        row = {"stage": stage, "res": f"{width}x{height}", "path": p.name, "precision": p.precision,
               "channels_last": p.channels_last, "batch": args.batch, "step_ms": step_ms,
               "step_ms_all": p.step_ms, "timed_steps": len(p.step_ms),
               "warmup_steps": p.warmup_steps, "phase_steps": p.phase_steps,
               "images_per_s": args.batch / (step_ms / 1e3),
               "phases_ms": {k: B.median(v) for k, v in p.phases.items()},
               "peak_mib": ((resident + max(p.extra_peak)) / 2**20) if p.extra_peak else None,
               "resident_mib": resident / 2**20, "optimizer_state_mib": opt_state / 2**20,
               "tflops": tflops,
               "util_pct": 100 * tflops / peak if peak else None,
               "peak_tflops": peak, "peak_source": peak_source,
               "speedup_vs_baseline": B.paired_ratio(base.step_ms, p.step_ms) if base else None,
               "cpu_ms": None if cuda else B.median(p.cpu_ms), "cpu_ms_all": None if cuda else p.cpu_ms,
               "cpu_speedup_vs_baseline": B.paired_ratio(base.cpu_ms, p.cpu_ms) if base and not cuda else None,
               "first_step_losses": p.first_losses,
               "loss_rel_diff": (max(abs(p.first_losses[k] - v) / max(abs(v), 1e-12)
                                     for k, v in base_losses.items()) if base_losses else None)}
        row.update({f"ms_{k}": v for k, v in row["phases_ms"].items()})
        rows.append(row)
    arch = {"ngf": ngf, "ndf": ndf, "n_downsample_global": args.n_downsample_global,
            "n_blocks_global": args.n_blocks_global, "n_layers_D": args.n_layers_D,
            "n_blocks_local": args.n_blocks_local, "num_D": cfg0.num_D, "label_nc": args.label_nc,
            "vgg": not args.no_vgg_loss, "norm_impl": args.norm_impl,
            # What our paths' norms ran: --norm_impl triton without a GPU (or without the
            # interpreter) runs the reference, with a warning (fp32, bf16, fp16 take one path).
            "norm_path": path_taken(args.norm_impl, device),
            "epoch": first.epoch, "niter_fix_global": cfg0.niter_fix_global or 0,
            "global_frozen": bool(getattr(first, "global_frozen", False))}
    print(f"\n== {stage} stage, {width}x{height}, batch {args.batch}, " + ", ".join(f"{k} {v}" for k, v in arch.items())
          + f" ==\nFLOP model per step: {flop_text(flops.total)} (forward GMAC: "
          + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in flops.forward_macs.items()) + ")")
    phase_cols = [(f"ms_{k}", k, ".1f") for k in PHASES if any(f"ms_{k}" in r for r in rows)]
    cpu_cols = [] if cuda else [("cpu_ms", "cpu ms", ".1f"), ("cpu_speedup_vs_baseline", "vs base (cpu)", ".2f")]
    B.print_table(rows, [("path", "path", ""), ("step_ms", "step ms", ".1f"), ("images_per_s", "img/s", ".3f")]
                  + phase_cols + [("peak_mib", "peak MiB", ".0f"), ("tflops", "TFLOP/s", ".3f"),
                                  ("util_pct", "util %", ".1f"), ("speedup_vs_baseline", "vs baseline", ".2f")]
                  + cpu_cols + [("loss_rel_diff", "loss diff", ".1e")])
    if not cuda:
        print(B.CPU_TABLE_NOTE.format(time="step ms"))
    for r in rows:
        r["arch"], r["flops"] = arch, flops.to_dict()
    return rows


def profile_paths(paths: list[_Path], batch: dict, out_dir: Path, tag: str, top: int = 25) -> None:
    """One more step of each path under torch.profiler: the ops with the most self time (CPU, and
    CUDA when there is one) printed, a Chrome trace per path written to out_dir."""
    from torch.profiler import ProfilerActivity, profile
    out_dir.mkdir(parents=True, exist_ok=True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    for p in paths:
        p.zero_grads()
        p.timer.start(False)
        with profile(activities=acts, record_shapes=True) as prof:
            p.step(batch)
        name = p.name.split(" (")[0].replace(" ", "_")
        trace = out_dir / f"{tag}_{name}.json"
        prof.export_chrome_trace(str(trace))
        print(f"\n-- profile: {p.name}, {tag} (trace: {trace}) --")
        print(prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=48))


def parse_precisions(text: str) -> list[tuple[str, bool]]:
    """'fp32,bf16+cl' -> [('fp32', False), ('bf16', True)]."""
    out = []
    for item in text.split(","):
        prec, _, suffix = item.partition("+")
        if prec not in ("fp32", "bf16", "fp16") or suffix not in ("", "cl"):
            raise ConfigError(f"--precision {item!r}: expected fp32, bf16 or fp16, optionally "
                              "followed by +cl (channels-last), e.g. fp32,bf16+cl")
        out.append((prec, suffix == "cl"))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    args.started = time.monotonic()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.precisions = parse_precisions(args.precision or ("fp32,bf16" if cuda else "fp32"))
    args.steps = args.steps if args.steps is not None else (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.phase_steps = args.phase_steps if args.phase_steps is not None else (3 if cuda else 1)
    stages = args.stage.split(",")
    info = B.describe_device(device)
    print(f"device: {B.device_label(info)}")
    if not cuda:
        print("(no GPU: small sizes; times are for comparing paths within this run only)")
    rows = []
    command = command_line("benchmarks/train.py", argv)

    def save() -> None:
        # After every configuration, atomically (B.write_json: a temporary file, then a rename):
        # a time cap that kills the run keeps the rows finished so far.
        B.write_json(args.json, {"benchmark": "train", "command": command, "device": info,
                                 "steps": args.steps, "warmup": args.warmup,
                                 "phase_steps": args.phase_steps, "rows": rows})

    for stage in stages:
        res = parse_res(args.res) if args.res else [default_res(stage, cuda)]
        for w, h in res:
            rows += run_config(args, stage, w, h, device, info)
            save()
    if reference_widths(args, cuda):
        print("\n(reference widths: NVIDIA's global generator and discriminator as published)")
        rows += run_config(args, "global", 256, 128, device, info, ngf=64, ndf=64)
        save()
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    sys.exit(run(main))

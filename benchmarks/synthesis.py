"""Benchmark: synthesis throughput of our Synthesizer against reference-style inference, in one process.

    python3 benchmarks/synthesis.py                              # GPU: global 1024x512, local 2048x1024
    python3 benchmarks/synthesis.py --stage local --res 2048x1024 --batch 4 --precision fp32,bf16
    python3 benchmarks/synthesis.py --json results/synthesis_cpu.json   # CPU: small sizes

Both paths take the same label / instance id maps ([N, 1, H, W] integers) and the same generator
weights and return uint8 photos [N, 3, H, W] on the device:
  baseline   ``benchmarks/baseline.py::reference_generate``: NVIDIA's test.py — fp32, NCHW, unfused
             norms, parameters requiring grad and no ``no_grad`` (a graph built per batch);
  ours       ``pix2pixhd.synthesis.Synthesizer``: inference_mode, channels-last, fused norms,
             autocast in the chosen precision ('auto' = bf16 on CUDA, fp32 on CPU).
The calls run interleaved on a shared machine. Per path: median ms per batch, images/s, peak MiB
(CUDA: weights + the call's peak above them; CPU: -), achieved TFLOP/s and utilisation from
``pix2pixhd.flops.synthesis_flops``, the ratio to the baseline, and the largest difference of
the uint8 outputs to the baseline's (fp32: 0-1 levels of rounding; bf16: a few levels).
The timed region excludes reading files and writing PNGs (the data pipeline's work).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch


if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes the package importable
from benchmarks import baseline as B  # noqa: E402
from benchmarks import train as T  # noqa: E402  argument helpers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--stage", default="global,local", help="comma-separated: global, local")
    p.add_argument("--res", default=None, help="comma-separated WIDTHxHEIGHT for every stage "
                   "(default: GPU global 1024x512, local 2048x1024; CPU global 256x128, local 512x256)")
    p.add_argument("--precision", default="auto",
                   help="our path's precisions, comma-separated: auto, fp32, bf16, fp16")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ngf", type=int, default=None,
                   help="default: the reference's (global 64, local 32) on GPU; 16 on CPU")
    p.add_argument("--n_blocks_global", type=int, default=9)
    p.add_argument("--n_blocks_local", type=int, default=3)
    p.add_argument("--label_nc", type=int, default=35)
    p.add_argument("--steps", type=int, default=None, help="timed batches per path (GPU 20, CPU 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches per path (GPU 5, CPU 1)")
    p.add_argument("--no_baseline", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--peak_tflops", type=float, default=None)
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def run_config(args, stage: str, width: int, height: int, device: torch.device, info: dict) -> list[dict]:
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.flops import peak_tflops, synthesis_flops
    from pix2pixhd.synthesis import Synthesizer
    from pix2pixhd.models import build_generator

    cuda = device.type == "cuda"
    ngf = args.ngf or ((64 if stage == "global" else 32) if cuda else 16)
    cfg = B.resolved(TrainConfig(stage=stage, label_nc=args.label_nc, ngf=ngf, n_blocks_global=args.n_blocks_global,
                                 n_blocks_local=args.n_blocks_local))
    m = cfg.required_multiple
    if width % m or height % m:
        raise SystemExit(f"--res {width}x{height}: the {stage} generator needs multiples of {m}")
    torch.manual_seed(args.seed)
    G = build_generator(cfg)
    paths = []  # (name, precision, fn, resident bytes)
    if not args.no_baseline:
        G_ref = B.unfuse(G).to(device)  # parameters require grad, as the reference's
        paths.append(("baseline (reference-style)", "fp32",
                      lambda lab, ins: B.reference_generate(G_ref, lab, ins, cfg.label_nc),
                      B.state_bytes([G_ref], [])))
    for prec in args.precisions:
        g = copy.deepcopy(G).eval().requires_grad_(False)  # as pix2pixhd.synthesis.load_generator returns it
        synth = Synthesizer(g, cfg, device=device, precision=prec)
        eff = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(synth.amp_dtype, "fp32")
        name = f"ours {prec}" + (f" ({eff})" if prec == "auto" else "")
        paths.append((name, prec, synth, B.state_bytes([g], [])))

    gen = torch.Generator().manual_seed(args.seed)
    n = args.batch
    label = torch.randint(0, args.label_nc, (n, 1, height, width), generator=gen).to(torch.uint8).to(device)
    inst = torch.randint(0, 8, (n, 1, height, width), generator=gen).to(torch.int32).to(device)
    times = {p[0]: [] for p in paths}
    cpu_times = {p[0]: [] for p in paths}
    extra = {p[0]: [] for p in paths}
    outputs = {}
    for i in range(args.warmup + args.steps):
        for name, _, fn, _ in paths:
            holder = {}
            with B.PeakMemory(device) as mem:
                ms, cpu_ms = B.timed(lambda h=holder, f=fn: h.setdefault("y", f(label, inst)), device)
            if i == 0:
                outputs[name] = holder["y"].cpu()
            holder.clear()  # free the output before the next path runs
            if i >= args.warmup:
                times[name].append(ms)
                cpu_times[name].append(cpu_ms)
                if mem.extra is not None:
                    extra[name].append(mem.extra)
    g_flops = synthesis_flops(cfg, width, height, n)
    ref_out = outputs[paths[0][0]] if not args.no_baseline else None
    base = paths[0][0] if not args.no_baseline else None
    rows = []
    for name, prec, _, resident in paths:
        ms = B.median(times[name])
        eff = "fp32" if name.startswith("baseline") else (
            name.split("(")[-1].rstrip(")") if prec == "auto" else prec)
        peak = args.peak_tflops or (peak_tflops(info.get("gpu", ""), eff) if cuda else None)
        tflops = g_flops / (ms / 1e3) / 1e12
        rows.append({"stage": stage, "res": f"{width}x{height}", "path": name, "precision": eff,
                     "batch": n, "ms_per_batch": ms, "ms_all": times[name], "images_per_s": n / (ms / 1e3),
                     "peak_mib": (resident + max(extra[name])) / 2**20 if extra[name] else None,
                     "tflops": tflops, "util_pct": 100 * tflops / peak if peak else None,
                     "speedup_vs_baseline": B.paired_ratio(times[base], times[name]) if base else None,
                     "cpu_ms": None if cuda else B.median(cpu_times[name]),
                     "cpu_speedup_vs_baseline": (B.paired_ratio(cpu_times[base], cpu_times[name])
                                                 if base and not cuda else None),
                     "max_abs_diff_u8": (int((outputs[name].int() - ref_out.int()).abs().max())
                                         if ref_out is not None else None)})
    print(f"\n== synthesis, {stage} generator (ngf {ngf}), {width}x{height}, batch {n} ==\n"
          f"FLOP model: {g_flops / 1e12:.4f} TFLOP per batch (G forward {g_flops / 2e9 / n:.2f} GMAC per image)")
    B.print_table(rows, [("path", "path", ""), ("ms_per_batch", "ms/batch", ".1f"),
                         ("images_per_s", "img/s", ".3f"), ("peak_mib", "peak MiB", ".0f"),
                         ("tflops", "TFLOP/s", ".3f"), ("util_pct", "util %", ".1f"),
                         ("speedup_vs_baseline", "vs baseline", ".2f")]
                  + ([] if cuda else [("cpu_ms", "cpu ms", ".1f"), ("cpu_speedup_vs_baseline", "vs base (cpu)", ".2f")])
                  + [("max_abs_diff_u8", "max |Δ| u8", "d")])
    for r in rows:
        r["ngf"], r["gmac_per_image"] = ngf, g_flops / 2e9 / n
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    from pix2pixhd.distributed import resolve_device
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.precisions = args.precision.split(",")
    for prec in args.precisions:
        if prec not in ("auto", "fp32", "bf16", "fp16"):
            raise SystemExit(f"--precision {prec!r}: expected auto, fp32, bf16 or fp16")
    args.steps = args.steps or (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    info = B.describe_device(device)
    print(f"device: {B.device_label(info)}")
    if not cuda:
        print("(no GPU: small sizes; times are for comparing paths within this run only)")
    rows = []
    for stage in args.stage.split(","):
        if stage not in ("global", "local"):
            raise SystemExit(f"--stage {stage!r}: expected global or local")
        res = T.parse_res(args.res) if args.res else [((1024, 512) if stage == "global" else (2048, 1024))
                                                      if cuda else ((256, 128) if stage == "global" else (512, 256))]
        for w, h in res:
            rows += run_config(args, stage, w, h, device, info)
    B.write_json(args.json, {"benchmark": "synthesis",
                             "command": " ".join(["python3", "benchmarks/synthesis.py"]
                                                 + (argv if argv is not None else sys.argv[1:])),
                             "device": info, "steps": args.steps, "warmup": args.warmup, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

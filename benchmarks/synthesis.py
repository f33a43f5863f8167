"""Benchmark: synthesis throughput — the generator alone against reference-style inference, and
(``--pipeline``) whole folders of maps through the old serial path and the data engine.

    python3 benchmarks/synthesis.py                              # GPU: global 1024x512, local 2048x1024
    python3 benchmarks/synthesis.py --stage local --res 2048x1024 --batch 4 --precision fp32,bf16
    python3 benchmarks/synthesis.py --json results/synthesis_cpu.json   # CPU: small sizes
    python3 benchmarks/synthesis.py --pipeline --res 1024x512,2048x1024 --n_images 4   # files in -> dataset out

``--pipeline``: label + instance map PNGs (synthetic streets) in a folder, and per stage, size and
path one fresh process that reads them, synthesizes and writes PNGs; per path images/s (end to
end, reading and writing included), the fraction of the wall time spent in the generator's
forward (``Synthesizer.generator_seconds`` for both paths; CUDA: device time from events), the
process's peak resident memory (VmHWM), for the engine also the largest peak of its decoding
worker processes (shared pages counted in both), and the largest difference of the outputs
between paths. The paths:
  old     ``serial_synthesize_folder`` below: synthesize.py's path before the data engine (issue
          17), kept as the yardstick — every map decoded to int64 in the main thread before the
          first image is made, batches of one size, PNGs encoded and written one by one on the
          main thread;
  engine  ``pix2pixhd.engine.run_synthesis``: decoding workers, size-grouped batches, writer
          threads, a dataset with manifest out (it also copies each label and instance map
          beside its photo and writes a manifest line: more work than the old path's).
Both run the same ``Synthesizer`` (same weights, precision 'auto': bf16 + channels-last on CUDA GPUs of
sm_80 and newer, fp32 NCHW on CPU) with the same batch size.

Both paths take the same label / instance id maps ([N, 1, H, W] integers) and the same generator
weights and return uint8 photos [N, 3, H, W] on the device:
  baseline   ``benchmarks/baseline.py::reference_generate``: NVIDIA's test.py — fp32, NCHW, unfused
             norms, parameters requiring grad and no ``no_grad`` (a graph built per batch);
  ours       ``pix2pixhd.synthesis.Synthesizer``: inference_mode, channels-last, fused norms,
             autocast in the chosen precision ('auto' = bf16 on CUDA sm_80+, fp32 on CPU).
The calls run interleaved on a shared machine. Per path: median ms per batch, images/s, peak MiB
(CUDA: weights + the call's peak above them; CPU: -), achieved TFLOP/s and utilisation from
``pix2pixhd.flops.synthesis_flops``, the ratio to the baseline, and the largest difference of
the uint8 outputs to the baseline's (fp32 on CPU: 0-1 levels of rounding; on CUDA, where cuDNN
runs fp32 convolutions in TF32 by default, a few levels; bf16: a few levels).
The timed region excludes reading files and writing PNGs (the data pipeline's work).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes the package importable
from benchmarks import baseline as B  # noqa: E402
from benchmarks import train as T  # noqa: E402  argument helpers
from benchmarks._cli import (add_device_options, add_generator_options, check_outputs, command_line,  # noqa: E402
                             make_parser)
from pix2pixhd.distributed import resolve_device  # noqa: E402
from pix2pixhd.errors import ConfigError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/synthesis.py``."""
    p = make_parser(__doc__.split("\n\n")[0])
    p.add_argument("--stage", default="global,local", help="comma-separated: global, local")
    p.add_argument("--res", default=None, help="comma-separated WIDTHxHEIGHT for every stage "
                   "(default: GPU global 1024x512, local 2048x1024; CPU global 256x128, local 512x256)")
    p.add_argument("--precision", default="auto",
                   help="our path's precisions, comma-separated: auto, fp32, bf16, fp16")
    p.add_argument("--batch", type=int, default=1, help="label maps per generator call")
    add_generator_options(p)
    # None: not given (--pipeline refuses it: its maps have the synthetic streets' classes).
    p.set_defaults(label_nc=None)
    p.add_argument("--steps", type=int, default=None, help="timed batches per path (default: GPU 20, CPU 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches per path (default: GPU 5, CPU 1)")
    p.add_argument("--no_baseline", action="store_true",
                   help="time only our path(s), not the reference-style one (benchmarks/baseline.py)")
    add_device_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the random label maps")
    q = p.add_argument_group("--pipeline: folders of PNG maps through the old path and the engine")
    q.add_argument("--pipeline", action="store_true", help="benchmark files in -> PNGs out")
    q.add_argument("--n_images", type=int, default=None, help="maps per size (default: GPU 64, CPU 4)")
    q.add_argument("--workers", type=int, default=2, help="the engine's decoding processes")
    q.add_argument("--writers", type=int, default=2, help="the engine's writer threads")
    q.add_argument("--data", default=None, help="where the maps are made (default: a temporary folder)")
    q.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    return p


# Options whose values argparse's types cannot bound: (name, least valid value, what it counts).
# None (the device-dependent default) is always valid.
MINIMUMS = (("steps", 1, "timed batches per path"), ("warmup", 0, "untimed batches per path"),
            ("batch", 1, "label maps per call"), ("ngf", 1, "generator filters"),
            ("n_downsample_global", 0, "downsamplings"), ("n_blocks_global", 0, "residual blocks"),
            ("n_blocks_local", 0, "residual blocks"), ("n_images", 1, "maps per size"),
            ("workers", 0, "decoding processes"), ("writers", 0, "writer threads"))


def default_res(stage: str, cuda: bool, pipeline: bool) -> list[tuple[int, int]]:
    """The sizes when --res is not given (its help says which; --pipeline: both, for every stage)."""
    if pipeline:
        return [(1024, 512), (2048, 1024)]
    if cuda:
        return [(1024, 512) if stage == "global" else (2048, 1024)]
    return [(256, 128) if stage == "global" else (512, 256)]


def check_args(p: argparse.ArgumentParser, args) -> None:
    """Every option's value, before any work (no map made, no batch timed): a bad one is a
    ConfigError naming the option, the value and the valid range (one ``error:`` line through
    ``errors.run``, exit status 1)."""
    from pix2pixhd.datasets.synthetic_streets import MAX_SIZE
    for name, least, what in MINIMUMS:
        v = getattr(args, name)
        if v is not None and not v >= least:
            raise ConfigError(f"--{name} {v}: expected at least {least} ({what})")
    if args.pipeline:
        # Pipeline mode runs whole folders once per path; it has no timed batches, no baseline and
        # one precision, and its maps have the synthetic streets' classes.
        given = [f"--{k}" for k in ("steps", "warmup", "label_nc") if getattr(args, k) is not None]
        given += ["--no_baseline"] if args.no_baseline else []
        given += [f"--precision {args.precision}"] if "," in args.precision else []
        if given:
            raise ConfigError(f"{', '.join(given)}: not used by --pipeline (one run per path of each folder, one "
                              "precision, the synthetic maps' classes); leave them out or drop --pipeline")
    if args.label_nc is None:
        args.label_nc = 35
    if not 1 <= args.label_nc <= 256:  # the random label maps are uint8
        raise ConfigError(f"--label_nc {args.label_nc}: expected 1 to 256 (label classes of the uint8 label maps)")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        raise ConfigError(f"--peak_tflops {args.peak_tflops:g}: expected a peak above 0 TFLOP/s")
    for stage in args.stage.split(","):
        if stage not in ("global", "local"):
            raise ConfigError(f"--stage {stage!r}: expected global or local (comma-separated)")
    for prec in args.precision.split(","):
        if prec not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision {prec!r}: expected auto, fp32, bf16 or fp16 (comma-separated)")
    res = T.parse_res(args.res) if args.res else None
    cuda = resolve_device(args.device).type == "cuda"
    for stage in args.stage.split(","):
        for w, h in res or default_res(stage, cuda, args.pipeline):
            why = T.size_error(stage, w, h, args.n_downsample_global, None if res else
                               "its default size is {} (without --res); give --res or fewer downsamplings")
            if why:
                raise ConfigError(why)
            if args.pipeline and not (16 <= w <= MAX_SIZE[0] and 16 <= h <= MAX_SIZE[1]):
                raise ConfigError(f"--res {w}x{h}: --pipeline makes synthetic street maps, 16x16 to "
                                  f"{MAX_SIZE[0]}x{MAX_SIZE[1]}")
    check_outputs(p, [("--json", args.json)], [("--data", args.data if args.pipeline else None)])


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if not args._child:   # a child's spec comes from a checked parent
        check_args(p, args)
    return args


def run_config(args, stage: str, width: int, height: int, device: torch.device, info: dict) -> list[dict]:
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.flops import peak_tflops, synthesis_flops
    from pix2pixhd.synthesis import Synthesizer
    from pix2pixhd.models import build_generator

    cuda = device.type == "cuda"
    ngf = args.ngf or ((64 if stage == "global" else 32) if cuda else 16)
    cfg = B.resolved(TrainConfig(stage=stage, label_nc=args.label_nc, ngf=ngf, n_blocks_global=args.n_blocks_global,
                                 n_blocks_local=args.n_blocks_local, n_downsample_global=args.n_downsample_global))
    m = cfg.required_multiple
    if width % m or height % m or min(width, height) < 2 * m:
        # the residual blocks' reflection padding needs a bottleneck of 2 pixels a side at least
        raise SystemExit(f"error: --res {width}x{height}: the {stage} generator needs sides that are multiples of "
                         f"{m} and at least {2 * m} (a bottleneck of 2 pixels); give a larger --res or fewer "
                         "--n_downsample_global")
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
        peak = args.peak_tflops if args.peak_tflops is not None else (
            peak_tflops(info.get("gpu", ""), eff) if cuda else None)
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
    if not cuda:
        print(B.CPU_TABLE_NOTE.format(time="ms/batch"))
    for r in rows:
        r["ngf"], r["gmac_per_image"] = ngf, g_flops / 2e9 / n
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._child:
        return _child(json.loads(args._child))
    if args.pipeline:
        return pipeline_main(args, argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.precisions = list(dict.fromkeys(args.precision.split(",")))   # each checked by check_args
    args.steps = args.steps if args.steps is not None else (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    info = B.describe_device(device)
    print(f"device: {B.device_label(info)}")
    if not cuda:
        print("(no GPU: small sizes; times are for comparing paths within this run only)")
    rows = []
    for stage in args.stage.split(","):
        res = T.parse_res(args.res) if args.res else default_res(stage, cuda, False)
        for w, h in res:
            rows += run_config(args, stage, w, h, device, info)
    B.write_json(args.json, {"benchmark": "synthesis",
                             "command": command_line("benchmarks/synthesis.py", argv),
                             "device": info, "steps": args.steps, "warmup": args.warmup, "rows": rows})
    return 0


# ---- --pipeline: folders through the old serial path and the engine -----------------------------------
def serial_synthesize_folder(synth, input_dir: Path, out_dir: Path, inst_dir: Path, batch_size: int) -> int:
    """REFERENCE ONLY — synthesize.py's path before the data engine (``synthesize_folder`` in
    pix2pixhd/synthesis.py at commit dbb2a0f, the parent of the engine's commit dc5c50f; its error
    handling and feature options left out): every map is read to int64 in the main thread and held
    until all are read, grouped by size, and each batch's PNGs are encoded and written one after
    the other on the main thread. Returns the number written."""
    from PIL import Image
    from pix2pixhd.synthesis import read_id_map
    out_dir.mkdir(parents=True, exist_ok=True)
    inst_index = {p.stem: p for p in inst_dir.iterdir()}
    items: dict[tuple, list] = {}
    for p in sorted(input_dir.iterdir()):
        lab = torch.from_numpy(read_id_map(p))[None, None]
        ins = torch.from_numpy(read_id_map(inst_index[p.stem]))[None, None]
        items.setdefault(tuple(lab.shape[-2:]), []).append((p, lab, ins))
    n = 0
    for group in items.values():
        for i in range(0, len(group), batch_size):
            chunk = group[i:i + batch_size]
            imgs = synth(torch.cat([c[1] for c in chunk]), torch.cat([c[2] for c in chunk]))
            for (p, *_), img in zip(chunk, imgs.cpu()):
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(out_dir / f"{p.stem}.png")
                n += 1
    return n


def _peak_rss() -> tuple[int, int]:
    """(this process's peak resident memory, the largest peak of its finished child processes:
    the engine's decoding workers), in bytes. Linux: VmHWM; elsewhere ru_maxrss."""
    import resource
    scale = 1 if sys.platform == "darwin" else 1024   # ru_maxrss: bytes on macOS, KiB on Linux
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024, children
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, children


def _child(spec: dict) -> int:
    """One path on one configuration, in a fresh process (so the peak memory is its own). Prints
    one JSON line: images written, wall seconds, seconds in G's forward, peak RSS."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    from pix2pixhd.synthesis import Synthesizer
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cfg = B.resolved(TrainConfig(stage=spec["stage"], label_nc=spec["label_nc"], ngf=spec["ngf"],
                                 n_blocks_global=spec["n_blocks_global"], n_blocks_local=spec["n_blocks_local"],
                                 n_downsample_global=spec["n_downsample_global"]))
    torch.manual_seed(spec["seed"])
    g = build_generator(cfg).eval().requires_grad_(False)   # as load_generator returns it
    synth = Synthesizer(g, cfg, device=device, precision=spec["precision"])
    data, out = Path(spec["data"]), Path(spec["out"])
    t0 = time.perf_counter()
    if spec["path"] == "old":
        n = serial_synthesize_folder(synth, data / "test_label", out, data / "test_inst", spec["batch"])
        B.sync(device)
        seconds = time.perf_counter() - t0
    else:
        from pix2pixhd.engine import SynthesisJob, run_synthesis
        rep = run_synthesis(synth, SynthesisJob(out=out, input=data / "test_label", inst=data / "test_inst",
                                                batch_size=spec["batch"], workers=spec["workers"],
                                                writers=spec["writers"], progress=False))
        n, seconds = rep.written, time.perf_counter() - t0
    # the same clock for both paths: Synthesizer's time in G's forward (CUDA: device time from events)
    gen_s = synth.generator_seconds
    rss, workers_rss = _peak_rss()
    print(json.dumps({"images": n, "seconds": seconds, "generator_seconds": gen_s, "peak_rss": rss,
                      "workers_peak_rss": workers_rss if spec["path"] == "engine" and spec["workers"] else None}))
    return 0


def _max_diff(a_dir: Path, b_dir: Path) -> int | None:
    """Largest |a - b| over the uint8 pixels of the PNGs both folders hold; None if their names differ."""
    import numpy as np
    from PIL import Image
    names = sorted(p.name for p in a_dir.glob("*.png"))
    if names != sorted(p.name for p in b_dir.glob("*.png")):
        return None
    return max((int(np.abs(np.asarray(Image.open(a_dir / k), dtype=np.int16)
                           - np.asarray(Image.open(b_dir / k), dtype=np.int16)).max()) for k in names), default=0)


PIPELINE_COLUMNS = [("stage", "stage", ""), ("res", "size", ""), ("ngf", "ngf", "d"), ("path", "path", ""),
                    ("images", "images", "d"), ("seconds", "s", ".1f"), ("images_per_s", "img/s", ".3f"),
                    ("generator_fraction", "in G", ".0%"), ("peak_rss_mib", "peak RSS MiB", ".0f"),
                    ("workers_peak_rss_mib", "worker peak MiB", ".0f"), ("speedup_vs_old", "vs old", ".2f"),
                    ("max_abs_diff_u8", "max |Δ| u8", "d")]


def pipeline_main(args, argv) -> int:
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    info = B.describe_device(device)
    n = args.n_images if args.n_images is not None else (64 if cuda else 4)
    stages = args.stage.split(",")
    res = T.parse_res(args.res) if args.res else default_res("global", cuda, True)
    threads = torch.get_num_threads()
    command = command_line("benchmarks/synthesis.py", argv)
    print(f"device: {B.device_label(info)}; {n} maps per size; batch {args.batch}; engine: "
          f"{args.workers} workers, {args.writers} writers; precision {args.precision}")
    rows = []
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="synth_bench_") as tmp:
        # Absolute: each path's process runs in the repository root.
        root = Path(os.path.abspath(args.data)) if args.data else Path(tmp)
        for w, h in res:
            data = root / f"maps_{w}x{h}"
            if not (data / "test_label").is_dir():
                t = time.perf_counter()
                generate(data, n_train=0, n_test=n, width=w, height=h, seed=args.seed)
                print(f"made {n} synthetic street maps of {w}x{h} in {time.perf_counter() - t:.1f} s")
            for stage in stages:
                ngf = args.ngf or ((64 if stage == "global" else 32) if cuda else 16)
                outs = {}
                for path in ("old", "engine"):
                    out = Path(tmp) / f"out_{stage}_{w}x{h}_{path}"
                    spec = {"path": path, "stage": stage, "ngf": ngf, "label_nc": LABEL_NC,
                            "n_blocks_global": args.n_blocks_global, "n_blocks_local": args.n_blocks_local,
                            "n_downsample_global": args.n_downsample_global,
                            "seed": args.seed, "device": str(device), "precision": args.precision.split(",")[0],
                            "batch": args.batch, "workers": args.workers, "writers": args.writers,
                            "threads": threads, "data": str(data), "out": str(out)}
                    proc = subprocess.run([sys.executable, "-m", "benchmarks.synthesis", "--_child", json.dumps(spec)],
                                          capture_output=True, text=True, cwd=repo,
                                          env=dict(os.environ, PYTHONPATH=str(repo)))
                    if proc.returncode != 0:
                        raise SystemExit(f"error: {path} path on {stage} {w}x{h} failed:\n{proc.stderr[-3000:]}")
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    outs[path] = out if path == "old" else out / "test_img"
                    row = {"stage": stage, "res": f"{w}x{h}", "ngf": ngf, "path": path, "images": r["images"],
                           "seconds": r["seconds"], "images_per_s": r["images"] / r["seconds"],
                           "generator_fraction": r["generator_seconds"] / r["seconds"],
                           "peak_rss_mib": r["peak_rss"] / 2**20,
                           "workers_peak_rss_mib": (r["workers_peak_rss"] / 2**20
                                                    if r["workers_peak_rss"] is not None else None)}
                    rows.append(row)
                    print(f"  {stage} {w}x{h} {path}: {row['images']} images in {row['seconds']:.1f} s, "
                          f"{row['generator_fraction']:.0%} in G, peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)
                diff = _max_diff(outs["old"], outs["engine"])
                rows[-1]["speedup_vs_old"] = rows[-1]["images_per_s"] / rows[-2]["images_per_s"]
                rows[-1]["max_abs_diff_u8"] = rows[-2]["max_abs_diff_u8"] = diff
                # after every configuration: a run cut short keeps what it measured
                B.write_json(args.json, {"benchmark": "synthesis_pipeline", "command": command, "device": info,
                                         "n_images": n, "batch": args.batch, "workers": args.workers,
                                         "writers": args.writers, "rows": rows})
    print()
    B.print_table(rows, PIPELINE_COLUMNS)
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    sys.exit(run(main))

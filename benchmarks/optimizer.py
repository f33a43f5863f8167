"""Benchmark: one Adam step over the pix2pixHD networks' parameters, per torch implementation.

    python3 benchmarks/optimizer.py                          # global G ngf 64 + D ndf 64 (reference)
    python3 benchmarks/optimizer.py --ngf 32 --stage local --rounds 5

The Trainer steps G and D with ``torch.optim.Adam(fused=True)`` on CPU and CUDA
(``Trainer._adam_impl``); the reference (and torch's default on CPU) loops over the parameters
one tensor at a time, each op writing a temporary. This times, interleaved over ``--rounds``
rounds, the best of ``--steps`` steps of each implementation over the parameters of the
networks the config builds (gradients random, state warmed by one step), and prints the
largest difference of the weights after three steps of the fused kernel and of the loop from
the same start (rounding: the same update).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pix2pixhd.config import TrainConfig  # noqa: E402
from pix2pixhd.models import build_discriminator, build_generator  # noqa: E402

from benchmarks._cli import make_parser  # noqa: E402

IMPLS = {"for-loop (reference)": {"foreach": False}, "foreach": {"foreach": True}, "fused (ours)": {"fused": True}}


def _params(cfg: TrainConfig, device: str, seed: int) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    ps = [p for net in (build_generator(cfg), build_discriminator(cfg)) for p in net.to(device).parameters()]
    g = torch.Generator(device).manual_seed(seed + 1)
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g, device=device)
    return ps


def _clone(ps):
    out = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    for q, p in zip(out, ps):
        q.grad = p.grad.clone()
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/optimizer.py``."""
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--stage", default="global", choices=["global", "local"],
                   help="whose parameters: the global stage's networks (GlobalGenerator + D) or the "
                        "local stage's (LocalEnhancer + D)")
    p.add_argument("--ngf", type=int, default=64, help="generator filters of the first conv (the reference's 64)")
    p.add_argument("--ndf", type=int, default=64, help="discriminator filters of the first conv (the reference's 64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the implementations")
    p.add_argument("--steps", type=int, default=3, help="timed steps per implementation per round (best kept)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the parameters live: cpu, cuda or cuda:N (default: cuda when there is "
                        "a GPU, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the random gradients")
    return p


def parse_args(argv=None):
    """The options, each checked before any work: a bad value is a ConfigError naming the option,
    the value and the valid range (one ``error:`` line through ``errors.run``, exit status 1)."""
    from pix2pixhd.distributed import resolve_device
    from pix2pixhd.errors import ConfigError
    p = build_parser()
    a = p.parse_args(argv)
    for name, least in (("rounds", 1), ("steps", 1), ("ngf", 1), ("ndf", 1)):
        v = getattr(a, name)
        if v < least:
            raise ConfigError(f"--{name} {v}: expected at least {least}")
    a.device = str(resolve_device(a.device))  # cuda -> cuda:0; CUDA on a CPU build refused
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    cfg = TrainConfig(stage=a.stage, ngf=a.ngf, ndf=a.ndf, label_nc=35, device=a.device).resolved()
    base = _params(cfg, a.device, a.seed)
    n = sum(q.numel() for q in base)
    print(f"device: {a.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{a.stage} G ngf {a.ngf} + D ndf {a.ndf}: {len(base)} tensors, {n / 1e6:.1f}M parameters")
    sync = (lambda: torch.cuda.synchronize(a.device)) if a.device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in IMPLS}
    for _ in range(a.rounds):
        for name, kw in IMPLS.items():
            ps = _clone(base)
            opt = torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999), **kw)
            opt.step()
            best = float("inf")
            for _ in range(a.steps):
                sync()
                t = time.perf_counter()
                opt.step()
                sync()
                best = min(best, time.perf_counter() - t)
            times[name].append(best * 1e3)
            del opt, ps
    ref = times["for-loop (reference)"]
    print(f"{'implementation':22s}  {'ms per step (each round)':>28s}  {'speed-up vs loop (each round)':>30s}")
    for name, ts in times.items():
        print(f"{name:22s}  {' '.join(f'{t:8.1f}' for t in ts):>28s}  "
              f"{' '.join(f'{r / t:6.2f}' for r, t in zip(ref, ts)):>30s}")
    loop, fused = _clone(base), _clone(base)
    o1 = torch.optim.Adam(loop, lr=2e-4, betas=(0.5, 0.999), foreach=False)
    o2 = torch.optim.Adam(fused, lr=2e-4, betas=(0.5, 0.999), fused=True)
    for _ in range(3):
        o1.step()
        o2.step()
    diff = max(float((x.detach() - y.detach()).abs().max()) for x, y in zip(loop, fused))
    print(f"max |fused - loop| of the weights after 3 steps: {diff:.1e}")
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    raise SystemExit(run(main))

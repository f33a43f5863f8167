"""The speed yardstick: pix2pixHD's training step and inference written the way NVIDIA's code runs them.

``benchmarks/train.py`` and ``benchmarks/synthesis.py`` time this and our default path in one
process, on the same weights and batches, and print the ratio; every speed-up we claim comes from
such a run. What makes it "reference-style" (NVIDIA/pix2pixHD ``train.py`` +
``models/pix2pixHD_model.py`` + ``test.py``), each item a cost our path avoids:

- fp32, NCHW, no autocast, no channels-last;
- unfused norms: every InstanceNormAct becomes ``nn.InstanceNorm2d`` followed by
  ``nn.ReLU`` / ``nn.LeakyReLU`` in the slot after it, and the ResNet block adds its residual
  separately (``x + conv_block(x)``): NVIDIA's module layout, the same state_dict;
- separate discriminator passes: D(x, fake.detach()), D(x, real), D(x, fake) — three forwards;
- the G loss is back-propagated through a D whose parameters still require grad, so the G
  backward computes D's weight gradients, which ``optimizer_D.zero_grad()`` then throws away;
- the VGG loss runs the network on fake and on real and detaches the real features;
- inference runs G (parameters requiring grad) outside ``no_grad``: an autograd graph is built
  for every image and dropped.

The losses themselves are ours (GANLoss, ImageNet-normalised VGG inputs, the reference's weights),
so baseline and default compute the same numbers from the same weights; ``tests/test_benchmarks.py``
checks that the losses and the updated weights of one step agree.

The second half of the file holds the measurement helpers both benchmark scripts use (device
description, synchronised timing, peak memory, tables, JSON records).
"""
from __future__ import annotations

import contextlib
import io
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pix2pixhd.encoding import encode_input, float_to_uint8, image_to_float
from pix2pixhd.layers import unfuse
from pix2pixhd.losses import VGG_WEIGHTS, GANLoss, VGGLoss
from pix2pixhd.trainer import PhaseTimer


# ---- the reference-style networks -----------------------------------------------------------------
class ReferenceStep:
    """One pix2pixHD training iteration as NVIDIA's train.py computes it (see the module docstring).

    ``ReferenceStep(G, D, cfg, vgg, device)`` deep-copies and unfuses G and D (so the caller's
    models are untouched and both paths start from the same weights) and makes its own Adam
    optimizers, built as the reference builds them (``torch.optim.Adam(params, lr, betas)``).
    ``train_step(batch)`` takes the Trainer's batch dict (uint8/int tensors) and returns the
    same loss dict; ``timer`` records ms per phase when ``timer.start(True)`` precedes a step.
    """

    def __init__(self, G: nn.Module, D: nn.Module, cfg, vgg: VGGLoss | None, device: torch.device):
        if cfg.model != "pix2pixhd" or D is None:
            raise ValueError(f"ReferenceStep reproduces pix2pixHD's step; got --model {cfg.model}")
        if cfg.norm != "instance":
            raise ValueError(f"ReferenceStep: --norm {cfg.norm}; the baseline is written for instance norm")
        if cfg.use_features:
            raise ValueError("ReferenceStep: --instance_feat/--label_feat are not part of the baseline")
        self.cfg, self.device = cfg, torch.device(device)
        self.G = unfuse(G).to(self.device)
        self.D = unfuse(D).to(self.device)
        self.vgg = vgg
        self.criterion_gan = GANLoss(cfg.gan_mode)
        betas = (cfg.beta1, 0.999)
        lr = cfg.lr
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=betas)
        self.timer = PhaseTimer(self.device)

    def prepare(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        # The reference's dataset hands over float tensors ([-1, 1] images, float label ids):
        # the conversion happens on the host and 4x the bytes cross to the device.
        cfg = self.cfg
        label = batch["label"].float().to(self.device)
        inst = batch["inst"].float().to(self.device) if not cfg.no_instance else None
        real = image_to_float(batch["image"]).to(self.device)
        x = encode_input(label.long(), inst, label_nc=cfg.label_nc)
        return x, real

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        cfg, t = self.cfg, self.timer
        x, real = self.prepare(batch)
        t.mark("prepare")
        fake = self.G(x)
        t.mark("G_forward")
        # pix2pixHD_model.forward: every loss first, each D pass separate.
        pred_fake_pool = self.D(torch.cat((x, fake.detach()), dim=1))
        loss_D_fake = self.criterion_gan(pred_fake_pool, False)
        pred_real = self.D(torch.cat((x, real.detach()), dim=1))
        loss_D_real = self.criterion_gan(pred_real, True)
        pred_fake = self.D(torch.cat((x, fake), dim=1))  # D's weights still require grad here
        loss_G_GAN = self.criterion_gan(pred_fake, True, for_discriminator=False)
        losses = {"D_real": loss_D_real, "D_fake": loss_D_fake, "G_GAN": loss_G_GAN}
        loss_G = loss_G_GAN
        if not cfg.no_ganFeat_loss:
            feat_weights = 4.0 / (cfg.n_layers_D + 1)
            D_weights = 1.0 / cfg.num_D
            loss_G_GAN_Feat = 0
            for i in range(cfg.num_D):
                for j in range(len(pred_fake[i]) - 1):
                    loss_G_GAN_Feat = loss_G_GAN_Feat + D_weights * feat_weights * F.l1_loss(
                        pred_fake[i][j], pred_real[i][j].detach()) * cfg.lambda_feat
            losses["G_GAN_Feat"] = loss_G_GAN_Feat
            loss_G = loss_G + loss_G_GAN_Feat
        if self.vgg is not None:
            # VGGLoss.forward as the reference writes it: both images through VGG, real detached.
            x_vgg = self.vgg.vgg(self.vgg.normalize(fake))
            y_vgg = self.vgg.vgg(self.vgg.normalize(real))
            loss_G_VGG = sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(VGG_WEIGHTS, x_vgg, y_vgg))
            losses["G_VGG"] = loss_G_VGG * cfg.lambda_feat
            loss_G = loss_G + losses["G_VGG"]
        loss_D = (loss_D_fake + loss_D_real) * 0.5
        t.mark("losses")
        # train.py: update G, then D.
        self.opt_G.zero_grad()
        loss_G.backward()  # also fills D's .grad, discarded below
        t.mark("G_backward")
        self.opt_G.step()
        t.mark("optimizer")
        self.opt_D.zero_grad()
        loss_D.backward()
        t.mark("D_backward")
        self.opt_D.step()
        t.mark("optimizer")
        return {k: v.detach() for k, v in losses.items()}

    def resident_bytes(self) -> int:
        """Parameters, buffers and optimizer state this path keeps between steps."""
        return state_bytes([self.G, self.D, self.vgg], [self.opt_G, self.opt_D])


def reference_generate(G_unfused: nn.Module, label: torch.Tensor, inst: torch.Tensor | None,
                       label_nc: int) -> torch.Tensor:
    """test.py's inference: fp32 NCHW, G's parameters requiring grad, no ``no_grad`` (the graph of
    each image is built and dropped). label/inst [N, 1, H, W] ids → uint8 [N, 3, H, W]."""
    x = encode_input(label, inst, label_nc=label_nc)
    fake = G_unfused(x)
    return float_to_uint8(fake)


# ---- measurement helpers shared by benchmarks/train.py and benchmarks/synthesis.py ------------------
def state_bytes(modules, optimizers) -> int:
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for m in modules:
        if m is not None:
            for t in list(m.parameters()) + list(m.buffers()):
                add(t)
    for opt in optimizers:
        if opt is not None:
            for state in opt.state.values():
                for t in state.values():
                    add(t)
    return total


def trainer_resident_bytes(trainer) -> int:
    return state_bytes([trainer.G, trainer.D, trainer.E, trainer.vgg], [trainer.opt_G, trainer.opt_D])


def resolved(cfg):
    """cfg.resolved() without its 'starts from random weights' note: benchmarks always do."""
    with contextlib.redirect_stdout(io.StringIO()):
        return cfg.resolved()


def describe_device(device: torch.device) -> dict:
    """What the numbers ran on, for the table header and the JSON record."""
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    tf32_conv=torch.backends.cudnn.allow_tf32,
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return info


def device_label(info: dict) -> str:
    if "gpu" in info:
        return f"{info['gpu']} ({info['gpu_memory_gib']} GiB), CUDA {info['cuda']}, torch {info['torch']}"
    return f"CPU {info['cpu']}, {info['cpu_threads']} threads, torch {info['torch']}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak CUDA memory of a region above what was allocated when it began (None on CPU, where
    the allocator keeps no statistics)."""

    def __init__(self, device: torch.device):
        self.device, self.extra = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.extra = torch.cuda.max_memory_allocated(self.device) - self._start
        return False


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one call of ``fn``, the device synchronised on both sides.

    The CPU time (all threads of this process) is what a CPU run should compare on a shared
    machine: other processes' load stretches the wall time but not the work this one did.
    """
    sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def paired_ratio(base: list[float], ours: list[float]) -> float:
    """Median over steps of baseline_i / ours_i: the paths ran interleaved, so step i of each saw
    the same machine state; the median of the pairs resists drift better than a ratio of medians."""
    return median([b / o for b, o in zip(base, ours) if o > 0])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(v, spec: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return format(v, spec)


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """rows: dicts; columns: (key, header, format spec). Missing keys print as '-'."""
    cells = [[h for _, h, _ in columns]] + [[fmt(r.get(k), spec) if spec else str(r.get(k, "-"))
                                             for k, _, spec in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A markdown table of the rows' scalar fields (lists and dicts stay in the JSON); floats to 4
    significant digits. ``columns`` picks and orders them (default: every scalar key, in order
    of first appearance)."""
    def scalar(v):
        return v is None or isinstance(v, (bool, int, float, str))

    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k, v in r.items() if scalar(v) and k not in columns]

    def cell(v):
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4g}"
        return "-" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def json_to_markdown(json_path: str, md_path: str, title: str, columns: str = "") -> None:
    """``# title``, the record's device/command, and markdown_table of its "rows" (``columns``:
    comma-separated keys, default all scalar ones); for the parts of scripts/gpu_check.sh whose
    script writes JSON only."""
    rec = json.loads(Path(json_path).read_text())
    rows = rec.get("rows", []) if isinstance(rec, dict) else rec
    head = [f"# {title}", ""]
    for key in ("command", "device", "summary"):
        if isinstance(rec, dict) and rec.get(key) is not None:
            val = rec[key]
            val = device_label(val) if key == "device" and isinstance(val, dict) and "torch" in val else val
            head.append(f"- {key}: `{val}`")
    table = markdown_table(rows, columns.split(",") if columns else None)
    Path(md_path).write_text("\n".join(head) + "\n\n" + table + "\n")


def junit_to_json(xml_path: str, json_path: str) -> dict:
    """pytest's --junitxml report as {"summary": counts, "rows": one per test} (gpu_check.sh)."""
    import xml.etree.ElementTree as ET
    rows = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        if not case.get("name"):   # an interrupted run (SIGINT) ends with a nameless, empty case
            continue
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (el.get("message") or "")[:300]
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                     "seconds": float(case.get("time") or 0), "message": message})
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error", "skipped")}
    record = {"summary": ", ".join(f"{n} {k}" for k, n in counts.items()), "counts": counts, "rows": rows}
    write_json(json_path, record)
    return record


def write_json(path: str | None, record: dict) -> None:
    """``record`` as JSON into ``path`` (nothing when None), atomically, saying ``wrote PATH``."""
    if not path:
        return
    from benchmarks._cli import write_text_atomic
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str))


# Printed under train.py's and synthesis.py's tables on CPU (format: time= the time column's header).
CPU_TABLE_NOTE = ("(CPU: peak MiB and util % are CUDA-only, hence -; {time} is wall time, cpu ms the "
                  "process's CPU time over all its threads)")


_NOT_A_SCRIPT = ("benchmarks/baseline.py is a module, not a script: the reference-style training step "
                 "and inference, and the measurement helpers, that benchmarks/train.py and "
                 "benchmarks/synthesis.py import; run one of those (with --help for their options)")

if __name__ == "__main__":
    import sys
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(_NOT_A_SCRIPT)
        raise SystemExit(0)
    print(f"error: {_NOT_A_SCRIPT}", file=sys.stderr)
    raise SystemExit(2)

"""Estimate (not a measurement) of the peak training memory per GPU, for the reference configurations.

    python3 benchmarks/memory.py                       # global 1024x512 and local 2048x1024, fp32/bf16/fp16
    python3 benchmarks/memory.py --json memory.json    # the same, and the numbers as JSON

What it is for: docs/scaling.md's "Memory per GPU (estimate)" table, written without a GPU. When a
GPU is at hand, ``benchmarks/train.py``'s "peak MiB" column is the measurement to trust instead.

How (nothing is computed, nothing is allocated): a real ``pix2pixhd.trainer.Trainer`` is built
inside ``FakeTensorMode`` (tensors with shapes, dtypes and storages but no data) and its own
``train_step`` runs once on a fake batch, so the passes are exactly the trainer's: G forward; D on
(x, real) and (x, fake.detach()) as one batched pass; D backward; D on (x, fake) with D frozen;
feature matching against the retained D(real) features; VGG on fake with graph and on real
without; G backward. While it runs:

* ``torch.autograd.graph.saved_tensors_hooks`` marks every storage autograd saves for backward;
* a ``TorchDispatchMode`` records every storage an op creates and notices (by weak reference) when
  it is freed, giving the timeline of live bytes over the whole step, backward included.

Replaying the timeline gives the step's peak of live tensors that are not parameter gradients
("step peak": saved activations + tensors the step holds, e.g. x, real, fake, D(real)'s features
+ the backward's gradient buffers at that moment) and the peak of live saved storages alone
("saved activations"). Unique storages are counted once, so views and in-place ops are not counted
twice. Constant state is counted from the modules: fp32 parameters of G, D and the frozen VGG19,
fp32 gradients and Adam's two fp32 moments of G and D (the step tensor is negligible).

  estimate = parameters + gradients + Adam + step peak

Precision follows the trainer: ``--precision bf16/fp16`` runs the forwards under autocast, weights,
gradients and Adam state stay fp32. A CPU-only torch cannot make CUDA tensors, so the fake tensors
are CPU tensors and CPU autocast's op lists apply; for the ops these networks use they match CUDA's
(convs in half precision; norms, activations, pooling in their input's dtype; ``cat`` promotes;
losses are cast to fp32 by our code) except reflection padding, which CPU autocast runs in fp32 and
CUDA in the input's dtype: it is given CUDA's behaviour here for the duration of the estimate.
Instance norm runs the trainer's CUDA path (the Triton autograd Function, which saves x, mean,
rstd) with its two kernels replaced by stand-ins that allocate the same outputs.

Not included (say so wherever a number from here is quoted): the CUDA context (~0.5 GiB), the
caching allocator's rounding and fragmentation, cuDNN / cuBLAS workspaces, NCCL buffers and DDP's
gradient buckets (about one more copy of the gradients under DDP), the GradScaler's few scalars,
and the data loader's pinned buffers.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

if __package__ in (None, ""):  # run as a file (python3 benchmarks/x.py): the repository root
    # makes the benchmarks package importable; first, so that this checkout's pix2pixhd is measured,
    # not an installed copy (pix2pixhd maps the checkout's kernels/ and datasets/ itself)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._cli import check_outputs, command_line, make_parser, write_text_atomic  # noqa: E402

GiB = 1024 ** 3
PRECISIONS = ("fp32", "bf16", "fp16")
# (stage, width, height): the paper's two training resolutions for the Cityscapes-style configs.
REFERENCE = (("global", 1024, 512), ("local", 2048, 1024))


# ---- the timeline of live storages --------------------------------------------------------------
def _storage_key(t: torch.Tensor) -> tuple[int, int, torch.UntypedStorage]:
    s = t.untyped_storage()
    return s._cdata, s.nbytes(), s  # _cdata: the StorageImpl's address, shared by every view


class StorageTimeline(TorchDispatchMode):
    """Records each storage that an op creates (alloc) and when its last reference dies (free).

    Frees are noticed at the next op (a weak reference expires), which is where a caching
    allocator could reuse the memory too. Each allocation gets a serial number: a StorageImpl's
    address is reused after it is freed, so addresses alone would mix up different tensors.
    ``saved`` collects the serials of the storages autograd saves.
    """

    def __init__(self):
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef
        self._weak = StorageWeakRef
        self.live: dict[int, tuple[object, int, int]] = {}  # address -> (weak ref, bytes, serial)
        self.events: list[tuple[int, int, int, str]] = []   # (+1 alloc / -1 free, serial, bytes, op)
        self.saved: set[int] = set()
        self._serial = 0

    def _free(self, key: int, op: str) -> None:
        _, nbytes, serial = self.live.pop(key)
        self.events.append((-1, serial, nbytes, op))

    def _sweep(self, op: str) -> None:
        for key in [k for k, (ref, _, _) in self.live.items() if ref.expired()]:
            self._free(key, op)

    def _track(self, t: torch.Tensor, op: str) -> None:
        key, nbytes, storage = _storage_key(t)
        old = self.live.get(key)
        if old is not None and not old[0].expired():
            return  # a view of, or an in-place op on, a storage already counted
        if old is not None:  # the address was freed and reused inside this op
            self._free(key, op)
        self._serial += 1
        self.live[key] = (self._weak(storage), nbytes, self._serial)
        self.events.append((+1, self._serial, nbytes, op))

    def serial_of(self, t: torch.Tensor) -> int | None:
        """The serial of ``t``'s storage if the step created it and it is alive, else None."""
        entry = self.live.get(_storage_key(t)[0])
        return entry[2] if entry is not None and not entry[0].expired() else None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__)
        self._sweep(name)
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out  # views and in-place ops allocate nothing (e.g. a parameter's detach())
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t, name)
        return out

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        """saved_tensors_hooks pack hook: mark the storage as saved. Storages the step did not
        create (parameters, the inputs) stay out; autocast's half-precision weight copies are in."""
        serial = self.serial_of(t)
        if serial is not None:
            self.saved.add(serial)
        return t

    def live_saved_bytes(self) -> int:
        return sum(nbytes for ref, nbytes, serial in self.live.values()
                   if serial in self.saved and not ref.expired())

    def replay(self, exclude: set[int]) -> dict:
        """Peak live bytes of step storages whose serial is not in ``exclude``, and of saved ones."""
        self._sweep("end")
        total = saved = peak = peak_saved = 0
        peak_op = ""
        for sign, serial, nbytes, op in self.events:
            if serial in exclude:
                continue
            total += sign * nbytes
            if serial in self.saved:
                saved += sign * nbytes
                peak_saved = max(peak_saved, saved)
            if total > peak:
                peak, peak_op = total, op
        return {"step_peak": peak, "saved_peak": peak_saved, "peak_at_op": peak_op}


def saved_activation_bytes(fn, *inputs) -> int:
    """Bytes of the unique storages that autograd saves while running ``fn(*inputs)``.

    Only storages created inside ``fn`` count (parameters and ``inputs`` already exist). The
    graph is kept until the count is taken, so this is the sum over the whole forward.
    """
    tl = StorageTimeline()
    with torch.autograd.graph.saved_tensors_hooks(tl.pack, lambda t: t), tl:
        out = fn(*inputs)
    total = tl.live_saved_bytes()
    del out
    return total


# ---- making the CPU fake run behave as the CUDA run ---------------------------------------------
@contextlib.contextmanager
def cuda_like_autocast():
    """CPU autocast casts reflection_pad2d to fp32; CUDA autocast leaves it in the input's dtype.

    A fallthrough kernel for the AutocastCPU key removes the cast; destroying the Library on exit
    restores PyTorch's own kernel.
    """
    lib = torch.library.Library("aten", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
            lib.impl("reflection_pad2d", torch.library.fallthrough_kernel, "AutocastCPU")
        yield
    finally:
        lib._destroy()


@contextlib.contextmanager
def triton_norm_stand_in():
    """Run instance norm through the trainer's CUDA path: the Triton autograd Function (its own
    save_for_backward list) with the two kernels replaced by stand-ins allocating the same outputs."""
    import importlib
    K = importlib.import_module("pix2pixhd.kernels._instance_norm_act_triton")
    # the module, not the function of the same name that pix2pixhd.kernels exports
    ina = importlib.import_module("pix2pixhd.kernels.instance_norm_act")

    def forward(x, weight, bias, residual, act, slope, eps, overrides):
        n, c = x.shape[:2]
        mean = torch.empty((n, c), device=x.device, dtype=torch.float32)
        return torch.empty_like(x), mean, torch.empty_like(mean)

    def backward(dy, x, weight, bias, residual, mean, rstd, act, slope, overrides, need_dx,
                 dw_dtype, db_dtype, dres_dtype):
        return (torch.empty_like(x) if need_dx else None,
                torch.empty_like(weight, dtype=dw_dtype) if dw_dtype is not None else None,
                torch.empty_like(bias, dtype=db_dtype) if db_dtype is not None else None,
                torch.empty_like(x, dtype=dres_dtype) if dres_dtype is not None else None)

    saved = K.forward, K.backward, ina._use_triton
    K.forward, K.backward = forward, backward
    ina._use_triton = lambda x, impl: impl != "ref" and x.dtype in ina._TRITON_DTYPES
    try:
        yield
    finally:
        K.forward, K.backward, ina._use_triton = saved


# ---- one estimate ---------------------------------------------------------------------------------
@dataclass
class MemoryEstimate:
    stage: str
    width: int
    height: int
    precision: str
    batch: int
    params_G: int            # parameter counts
    params_D: int
    params_VGG: int
    state_bytes: int         # fp32 parameters (G, D, VGG) + gradients + Adam's two moments (G, D)
    saved_peak_bytes: int    # peak of live storages autograd saved for backward
    step_peak_bytes: int     # peak of every live step tensor except parameter gradients
    peak_at_op: str          # the op at which the step peak was reached
    estimate_bytes: int      # state_bytes + step_peak_bytes

    def row(self) -> dict:
        return asdict(self)


def reference_config(stage: str, precision: str, label_nc: int = 35, checkpoints_dir: str = "."):
    """NVIDIA's reference settings: global ngf 64 / 4 downsamplings / 9 blocks / 2 D scales;
    local ngf 32 (global part 64) / 3 D scales; label_nc 35 + instance boundary; VGG loss on."""
    from pix2pixhd.config import TrainConfig
    with contextlib.redirect_stdout(io.StringIO()):  # resolved()'s "random weights" note
        return TrainConfig(stage=stage, ngf=64 if stage == "global" else 32, label_nc=label_nc,
                           precision=precision, checkpoints_dir=checkpoints_dir, no_html=True,
                           no_tensorboard=True, device="cpu").resolved()


def _numel(m: nn.Module | None, trainable: bool | None = None) -> int:
    if m is None:
        return 0
    return sum(p.numel() for p in m.parameters() if trainable is None or p.requires_grad == trainable)


def estimate(cfg, width: int, height: int, batch: int = 1) -> MemoryEstimate:
    """The estimate for one resolved TrainConfig at width x height (see the module docstring)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from pix2pixhd.encoding import input_channels
    from pix2pixhd.losses import VGG19Features
    from pix2pixhd.trainer import Trainer
    if width % cfg.required_multiple or height % cfg.required_multiple:
        raise ValueError(f"{width}x{height}: both sides must be multiples of {cfg.required_multiple} "
                         f"for this generator; pick e.g. {width // cfg.required_multiple * cfg.required_multiple}")
    from unittest import mock
    with FakeTensorMode(), cuda_like_autocast(), triton_norm_stand_in(), \
            contextlib.redirect_stdout(io.StringIO()):
        # The Trainer's Module.to(cpu, contiguous) is a no-op here (the fake parameters are made
        # on the CPU in NCHW), but it tries to swap every parameter, which fake tensors refuse
        # (they carry weak references): skip it.
        with mock.patch.object(nn.Module, "to", lambda self, *a, **k: self):
            tr = Trainer(cfg, vgg=VGG19Features())
        # No optimizer step, scaler or finiteness check: they read values (fake tensors have
        # none). Adam's state is counted from the parameter sizes below; the scaler's is scalars.
        tr.opt_G.step = tr.opt_D.step = lambda *a, **k: None
        tr.scaler = torch.amp.GradScaler("cpu", enabled=False)
        tr._check_finite = lambda losses: None
        nc = input_channels(cfg.label_nc, cfg.input_nc, cfg.no_instance, 0)

        def prepare(b):  # what Trainer.prepare returns: x [N, Cin, H, W] fp32, real [N, 3, H, W] fp32
            return b["x"], b["real"], b["inst"]
        tl = StorageTimeline()
        with torch.autograd.graph.saved_tensors_hooks(tl.pack, lambda t: t), tl:
            b = {"x": torch.empty(batch, nc, height, width), "real": torch.empty(batch, 3, height, width),
                 "inst": torch.empty(batch, 1, height, width, dtype=torch.int32),
                 "label": torch.empty(batch, 1, height, width, dtype=torch.uint8)}
            tr.prepare = prepare
            tr.train_step(b)
            tl._sweep("end")
            grads = {tl.serial_of(p.grad) for m in (tr.G, tr.D) for p in m.parameters()
                     if p.grad is not None}
            del b
        peaks = tl.replay(exclude=grads)
        trainable = _numel(tr.G, True) + _numel(tr.D, True)
        pG, pD, pV = _numel(tr.G), _numel(tr.D), _numel(tr.vgg)
    # fp32 parameters (all) + fp32 gradients and two fp32 Adam moments (trainable ones)
    state = 4 * (pG + pD + pV) + 4 * 3 * trainable
    return MemoryEstimate(cfg.stage, width, height, cfg.precision, batch, pG, pD, pV, state,
                          peaks["saved_peak"], peaks["step_peak"], peaks["peak_at_op"],
                          state + peaks["step_peak"])


# ---- command line ---------------------------------------------------------------------------------
def _table(rows: list[MemoryEstimate]) -> str:
    head = (f"{'stage':<8}{'resolution':>11}{'precision':>10}{'params+grads+Adam':>19}"
            f"{'saved activations':>19}{'step peak':>11}{'estimate':>10}")
    lines = ["ESTIMATE, not a measurement (GiB per GPU, batch 1; excludes CUDA context ~0.5 GiB, "
             "allocator overhead, fragmentation, cuDNN workspaces, DDP buckets)", head]
    for r in rows:
        lines.append(f"{r.stage:<8}{f'{r.width}x{r.height}':>11}{r.precision:>10}"
                     f"{r.state_bytes / GiB:>19.2f}{r.saved_peak_bytes / GiB:>19.2f}"
                     f"{r.step_peak_bytes / GiB:>11.2f}{r.estimate_bytes / GiB:>10.2f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/memory.py``."""
    p = make_parser("Estimate peak training memory per GPU from activation sizes (fake tensors; no GPU needed)")
    p.add_argument("--stage", choices=("global", "local", "both"), default="both",
                   help="which training stage to estimate: global (GlobalGenerator at "
                        f"{REFERENCE[0][1]}x{REFERENCE[0][2]}), local (LocalEnhancer at "
                        f"{REFERENCE[1][1]}x{REFERENCE[1][2]}) or both")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="training precisions to estimate, one row each (train_hd.py --precision)")
    p.add_argument("--label_nc", type=int, default=35,
                   help="label classes (the one-hot input's channels; Cityscapes' 35)")
    p.add_argument("--batch", type=int, default=1, help="images per GPU (--batchSize)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here (default: not written)")
    return p


def parse_args(argv=None):
    """The options, each checked before any work: a bad value is a ConfigError naming the option,
    the value and the valid range (one ``error:`` line through ``errors.run``, exit status 1);
    --label_nc by the configurations' own checks (TrainConfig.resolved, a UserError)."""
    from pix2pixhd.errors import ConfigError
    p = build_parser()
    args = p.parse_args(argv)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: expected at least 1 (images per GPU)")
    for stage, _, _ in REFERENCE:
        if args.stage in ("both", stage):
            reference_config(stage, args.precision[0], args.label_nc)
    check_outputs(p, [("--json", args.json)])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage, w, h in REFERENCE:
            if args.stage not in ("both", stage):
                continue
            for prec in args.precision:
                cfg = reference_config(stage, prec, args.label_nc, tmp)
                rows.append(estimate(cfg, w, h, args.batch))
                print(f"  {stage} {w}x{h} {prec}: done", file=sys.stderr)
    print(_table(rows))
    print("\nstep peak = the step's largest sum of live tensors other than parameter gradients "
          "(saved activations at that moment + held tensors + backward buffers); "
          "estimate = params+grads+Adam + step peak")
    if args.json:
        from benchmarks.baseline import describe_device
        write_text_atomic(args.json, json.dumps({
            "kind": "estimate (fake tensors, no GPU): excludes the CUDA context, allocator "
                    "overhead and fragmentation, cuDNN/cuBLAS workspaces, DDP buckets",
            "command": command_line("benchmarks/memory.py", argv),
            # the machine that computed the estimate (fake tensors: no device ran the networks)
            "device": describe_device(torch.device("cpu")),
            "torch": torch.__version__, "rows": [r.row() for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    from pix2pixhd.errors import run   # a bad value: one error line, status 1
    raise SystemExit(run(main))

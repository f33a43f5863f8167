"""Ahead-of-time compilation of the Triton kernels for real NVIDIA targets, on a machine without a GPU.

    python -m pix2pixhd.kernels.aot --arch 80,90                 # table per kernel and target
    python -m pix2pixhd.kernels.aot --arch 90 --full --json aot.json --markdown aot.md

What for: the kernels' tests run through Triton's interpreter on CPU, which says nothing about
what the GPU will run. This compiles, for sm_80 (A100) and sm_90 (H100/H200), every kernel
specialization the networks can launch, down to a cubin through the ptxas of the Triton wheel, and
reports what decides its speed: registers per thread, spilled bytes, shared memory, and whether
the global loads and stores in the PTX are vectorised (``ld.global.v4`` / ``v2``).

Which specializations (recorded, not listed by hand). The networks run on meta tensors (shapes,
strides and dtypes, no data, no compute) with the kernel module's recorder installed, forward and
backward, through the same dispatch, autograd Function and launchers the GPU uses; each launch is
handed to the recorder instead of being run, with the launch config planned for the target's SM
count (``launch_config`` splits the pixels into about 4 programs per SM). Recorded:
  pix2pixHD  GlobalGenerator (ngf 64, 4 downsamplings, 9 blocks) and LocalEnhancer (ngf 32, 3 local
             blocks) at 1024x512 and 2048x1024, batch 1; MultiscaleDiscriminator (ndf 64, 3 layers,
             3 scales) at both sizes, batch 2 (the trainer's stacked real+fake pass) and 1 (G's pass);
  pix2pix    U-Net 256 and the 70x70 PatchGAN with --norm instance at 256x256, and CycleGAN's
             ResNet generator (9 blocks, instance norm);
each built as a run builds it (``pix2pixhd.models`` on a resolved TrainConfig of those options);
  coverage   every activation x affine x residual combination (all gradients wanted) on one
             64-channel 256x512 layer, bf16 storage with fp32 parameters: what the public
             ``instance_norm_act`` accepts beyond what the networks happen to use (the storage
             dtype only changes the loads' and stores' conversions, which the networks cover);
the networks in fp32, bf16 and fp16 storage (cast to the dtype: autocast hands the norms conv
outputs in it, and the norms carry no parameters), everything in NCHW and channels-last.

Specialization, exactly as Triton's JIT does it for those tensors: the recorded arguments go
through the kernel's own argument binder (``native_specialize_impl``) and ``_pack_args``, so ints
equal to 1 become constexprs and pointers and ints divisible by 16 get ``tt.divisibility = 16``
(meta tensors sit at address 0, which stands for PyTorch's caching allocator, whose blocks are 512-
byte aligned). Without these hints the PTX would show scalar loads the GPU never runs.

Compilation: ``triton.compile(ASTSource(fn, signature, constexprs, attrs),
target=GPUTarget("cuda", arch, 32), options={"num_warps": ...})``, in parallel processes;
registers and spills come from ptxas's own report (``-v``), shared memory from Triton's metadata.
Results are cached in ``$PIX2PIXHD_AOT_CACHE`` (default ``~/.cache/pix2pixhd/aot``), one file per
specialization keyed by the kernel's JIT hash (its source and what it calls; the launchers do not
count), the Triton version, the target and the specialization, so a rerun compiles only what
changed.

Exit status 1 if any specialization fails to compile or spills. The last line reads
``N specializations compiled for sm_80,sm_90, S spills``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import torch

from pix2pixhd.errors import loads_json

from .instance_norm_act import triton_interpret_on

KERNEL_MODULE = "pix2pixhd.kernels._instance_norm_act_triton"
DISPATCH_MODULE = "pix2pixhd.kernels.instance_norm_act"
CACHE_ENV = "PIX2PIXHD_AOT_CACHE"
# SM counts the launch configs are planned for: A100 (sm_80), H100 SXM / H200 (sm_90).
DEFAULT_SMS = {80: 108, 90: 132}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
ACT_NAMES = {0: "none", 1: "relu", 2: "leaky_relu"}


# ---- recording ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Spec:
    """One specialization: what triton.compile needs, plus where the networks launch it."""
    kernel: str
    signature: dict            # arg name -> type ('*bf16', 'i32', 'constexpr', ...)
    constexprs: list           # [[arg index], value] pairs
    attrs: list                # [[arg index], [['tt.divisibility', 16]] or []] pairs
    num_warps: int
    sources: set = dataclasses.field(default_factory=set)
    example: str = ""          # one recorded launch: x's shape and the grid

    def key(self) -> str:
        return json.dumps([self.kernel, self.signature, self.constexprs, self.attrs, self.num_warps],
                          sort_keys=True, default=str)

    def describe(self) -> dict:
        """Human-readable fields for the table: dtype, layout, flags, blocks."""
        sig, const = self.signature, {self.arg_names()[i[0]]: v for i, v in self.constexprs}
        x_type = sig.get("x_ptr", sig.get("mean_part_ptr", "?")).lstrip("*")
        if "stride_p" in sig:
            layout = ("nchw" if const.get("stride_p") == 1 else
                      "cl" if const.get("stride_c") == 1 else "strided")
        else:
            layout = "-"
        aligned = {name: bool(a) for (i,), a in self.attrs for name in [self.arg_names()[i]]}
        flags = []
        if const.get("HAS_W"):
            flags.append("w")
        if const.get("HAS_B"):
            flags.append("b")
        if const.get("HAS_RES"):
            flags.append("res")
        if "ACT" in const:
            flags.append(ACT_NAMES[const["ACT"]])
        if const.get("STORE_DX") is False:
            flags.append("no-dx")
        if const.get("STORE_DRES"):
            flags.append("dres")
        if const.get("n_splits") == 1:
            flags.append("1-split")
        block = (f"{const['BLOCK_S']}x{const['BLOCK_C']}" if "BLOCK_S" in const
                 else f"{const.get('BLOCK_P')}x{const.get('BLOCK_C')}")
        return {"dtype": x_type, "layout": layout, "flags": ",".join(flags) or "-",
                "block": block, "warps": self.num_warps,
                "L%16": "-" if "L" not in aligned else ("yes" if aligned["L"] else "no")}

    def arg_names(self) -> list[str]:
        return list(self.signature)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["sources"] = sorted(self.sources)
        return d


class Recorder:
    """Installed as the kernel module's ``_RECORDER``: turns each launch into a Spec for one target."""

    def __init__(self, arch: int, sms: int):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature
        self.arch, self.sms = arch, sms
        self.backend = make_backend(GPUTarget("cuda", arch, 32))
        self._binders: dict[str, Callable] = {}
        self._make_binder = create_function_from_signature
        self.specs: dict[str, Spec] = {}
        self.source = "?"
        self.launches = 0

    def launch(self, kernel, grid, args, kwargs) -> None:
        """Specialise the launch as kernel[grid](*args, **kwargs) would (JITFunction.run)."""
        name = kernel.fn.__name__
        binder = self._binders.get(name)
        if binder is None:
            binder = self._binders[name] = self._make_binder(kernel.signature, kernel.params,
                                                             self.backend)
        bound, specialization, options = binder(*args, **kwargs)
        _, signature, constexprs, attrs = kernel._pack_args(self.backend, kwargs, bound,
                                                            specialization, options)
        spec = Spec(kernel=name, signature=dict(signature),
                    constexprs=sorted([list(k), v] for k, v in constexprs.items()),
                    attrs=sorted([list(k), v] for k, v in attrs.items()),
                    num_warps=int(kwargs.get("num_warps", 4)))
        spec = self.specs.setdefault(spec.key(), spec)
        spec.sources.add(self.source)
        if not spec.example:
            x = args[0]
            spec.example = f"{tuple(x.shape)} grid {tuple(grid)}"
        self.launches += 1


@contextlib.contextmanager
def recording(targets: list[tuple[int, int]]):
    """Inside: instance_norm_act takes the Triton path for meta tensors, and each launcher call
    (the kernel module's forward / backward) runs once per target, its launches recorded by that
    target's Recorder. Yields the Recorders, one per (arch, sms)."""
    K = _kernel_module()
    D = importlib.import_module(DISPATCH_MODULE)
    recs = [Recorder(arch, sms) for arch, sms in targets]

    def fan_out(launcher):
        def run(*args):
            out = None
            for r in recs:
                K._RECORDER = r
                out = launcher(*args)
            return out
        return run

    old = K._RECORDER, D._RECORDING, K.forward, K.backward
    K._RECORDER, D._RECORDING = recs[0], True
    K.forward, K.backward = fan_out(K.forward), fan_out(K.backward)
    try:
        yield recs
    finally:
        K._RECORDER, D._RECORDING, K.forward, K.backward = old


def _kernel_module():
    import triton
    K = importlib.import_module(KERNEL_MODULE)
    if not isinstance(K._fwd_kernel, triton.runtime.jit.JITFunction):
        raise RuntimeError(f"{KERNEL_MODULE} was imported under TRITON_INTERPRET=1, so its kernels "
                           "are interpreted functions that cannot be compiled; run "
                           "`python -m pix2pixhd.kernels.aot` in a process without TRITON_INTERPRET")
    return K


def _cuda_conv_layout(module, args, out):
    """Meta convolutions pick their output layout by the CPU rule (the input's); cuDNN makes it
    channels-last when the input or the weight is. Applied to every conv of a channels-last model,
    so the norms see the layout they get on the GPU."""
    return out.contiguous(memory_format=torch.channels_last)


def _run(model_fn, shape, dtype, layout, sum_outputs=None) -> None:
    """One forward + backward of model_fn() on meta tensors in the given dtype and layout."""
    fmt = LAYOUTS[layout]
    with torch.device("meta"):
        model = model_fn().to(dtype=dtype, memory_format=fmt)
        x = torch.empty(shape, dtype=dtype).contiguous(memory_format=fmt)
    if layout == "cl":
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.register_forward_hook(_cuda_conv_layout)
    out = model(x)
    flat = sum_outputs(out) if sum_outputs else [out]
    torch.autograd.backward(flat, [torch.empty_like(o) for o in flat])


def _flatten_d(out) -> list[torch.Tensor]:
    return [f for scale in out for f in (scale if isinstance(scale, (list, tuple)) else [scale])]


def _train_config(**options):
    """A resolved TrainConfig of train_hd.py's defaults and ``options``: the cases below build
    their networks as a run does (``pix2pixhd.models``), not from a copy of its arguments."""
    from pix2pixhd.config import TrainConfig
    return TrainConfig(name="aot", dataroot=".", **options).resolved()


def network_cases() -> list[tuple[str, Callable[[str, str], None]]]:
    """(name, run(dtype_name, layout)) for every network configuration the kernels serve."""
    from pix2pixhd.models import (build_discriminator, build_generator, discriminator_input_nc,
                                  generator_input_nc)
    # pix2pixHD's recipe on Cityscapes (35 labels + the instance boundary map): the global stage,
    # then the local stage at ngf 32 (what it inherits from a global stage of ngf 64) with 3 D
    # scales, whose first two are the global stage's 2-scale D
    stages = {"global": _train_config(stage="global"), "local": _train_config(stage="local", ngf=32, num_D=3)}
    d_cfg = stages["local"]
    cases = []
    for w, h in ((1024, 512), (2048, 1024)):
        for stage, cfg in stages.items():
            cases.append((f"pix2pixHD {stage} G {w}x{h}", lambda d, l, w=w, h=h, cfg=cfg: _run(
                lambda: build_generator(cfg), (1, generator_input_nc(cfg), h, w), DTYPES[d], l)))
        for batch, why in ((2, "real+fake"), (1, "G pass")):
            cases.append((f"pix2pixHD D {w}x{h} batch {batch} ({why})",
                          lambda d, l, w=w, h=h, batch=batch: _run(
                              lambda: build_discriminator(d_cfg), (batch, discriminator_input_nc(d_cfg), h, w),
                              DTYPES[d], l, sum_outputs=_flatten_d)))
    # pix2pix with --norm instance (its default, batch, does not go through the kernels); CycleGAN
    pix2pix, cyclegan = _train_config(model="pix2pix", norm="instance"), _train_config(model="cyclegan")
    cases.append(("pix2pix U-Net 256 (instance) 256x256", lambda d, l: _run(
        lambda: build_generator(pix2pix), (1, generator_input_nc(pix2pix), 256, 256), DTYPES[d], l)))
    cases.append(("pix2pix PatchGAN 70x70 (instance) 256x256", lambda d, l: _run(
        lambda: build_discriminator(pix2pix), (1, discriminator_input_nc(pix2pix), 256, 256), DTYPES[d], l,
        sum_outputs=lambda o: _flatten_d(o) if isinstance(o, (list, tuple)) else [o])))
    cases.append(("CycleGAN ResNet 9 blocks (instance) 256x256", lambda d, l: _run(
        lambda: build_generator(cyclegan, "AtoB"), (1, generator_input_nc(cyclegan, "AtoB"), 256, 256),
        DTYPES[d], l)))
    return cases


COVERAGE_DTYPE = "bf16"


def coverage_case(dtype_name: str, layout: str) -> None:
    """Every act x affine x residual on one layer, all gradients wanted (fp32 parameters); in
    COVERAGE_DTYPE storage only."""
    from pix2pixhd.kernels import instance_norm_act
    if dtype_name != COVERAGE_DTYPE:
        return
    fmt = LAYOUTS[layout]
    dtype = DTYPES[dtype_name]
    with torch.device("meta"):
        for act in ("relu", "leaky_relu", "none"):
            for affine in (False, True):
                for res in (False, True):
                    x = torch.empty(1, 64, 256, 512, dtype=dtype).contiguous(memory_format=fmt)
                    x.requires_grad_()
                    w = torch.empty(64, requires_grad=True) if affine else None
                    b = torch.empty(64, requires_grad=True) if affine else None
                    r = (torch.empty(1, 64, 256, 512, dtype=dtype).contiguous(memory_format=fmt)
                         .requires_grad_() if res else None)
                    y = instance_norm_act(x, w, b, act=act, residual=r)
                    y.backward(torch.empty_like(y))


def record(targets: list[tuple[int, int]], dtypes=tuple(DTYPES), layouts=tuple(LAYOUTS)
           ) -> tuple[list[Recorder], dict[str, int]]:
    """Every specialization for each (arch, sms) target; also how many launches each source made
    (for the first target)."""
    per_source: dict[str, int] = {}
    cases = network_cases() + [(f"coverage act x affine x residual 64x256x512 ({COVERAGE_DTYPE})",
                                coverage_case)]
    with recording(targets) as recs:
        for name, run in cases:
            before = recs[0].launches
            for d in dtypes:
                for lay in layouts:
                    for r in recs:
                        r.source = f"{name} {d} {lay}"
                    run(d, lay)
            per_source[name] = recs[0].launches - before
    return recs, per_source


# ---- compiling ------------------------------------------------------------------------------------
_LDST = re.compile(r"\b(ld|st)\.global((?:\.[A-Za-z0-9_:]+)*)")
_BITS = re.compile(r"\.[bfus](8|16|32|64)\b")
WIDTHS = ("16B", "8B", "4B", "2B", "1B")


def ptx_access_widths(ptx: str) -> dict[str, dict[str, int]]:
    """Count the global loads and stores of a PTX listing by bytes per access and thread:
    16B is ``ld.global.v4.b32`` (or v2.b64), 8B ``v2.b32`` or ``v4.b16``, 4B a scalar ``.b32``
    (one fp32, or two bf16 packed), 2B a scalar ``.b16``."""
    out = {"ld": dict.fromkeys(WIDTHS, 0), "st": dict.fromkeys(WIDTHS, 0)}
    for op, mods in _LDST.findall(ptx):
        vec = 8 if ".v8" in mods else 4 if ".v4" in mods else 2 if ".v2" in mods else 1
        bits = _BITS.findall(mods)
        nbytes = vec * int(bits[-1]) // 8 if bits else 0
        key = f"{nbytes}B"
        if key in out[op]:
            out[op][key] += 1
    return out


def parse_ptxas_log(log: str) -> dict:
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    stack = re.search(r"(\d+) bytes stack frame", log)
    if not regs or not spill:
        raise RuntimeError(f"no register/spill report in the ptxas log:\n{log}")
    return {"regs": int(regs.group(1)), "spill_stores": int(spill.group(1)),
            "spill_loads": int(spill.group(2)), "stack": int(stack.group(1)) if stack else 0}


def _compile_worker_init() -> None:
    os.environ.pop("TRITON_INTERPRET", None)
    from triton import knobs
    # A private Triton cache: every compile runs ptxas, whose -v report is where the register and
    # spill counts come from (a hit in a shared cache would skip it).
    knobs.cache.dir = tempfile.mkdtemp(prefix="p2phd_aot_triton_")
    # Removed when the worker exits (multiprocessing runs its finalizers, not atexit's).
    from multiprocessing.util import Finalize
    Finalize(None, shutil.rmtree, args=(knobs.cache.dir, True), exitpriority=0)
    knobs.nvidia.dump_ptxas_log = True
    # No line tables: debug info only, the code is the same, and a quarter of the compile time.
    knobs.compilation.disable_line_info = True


def compile_spec(spec_json: dict, arch: int) -> dict:
    """Compile one specialization for sm_<arch>; returns its resource report (or an error)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    t0 = time.perf_counter()
    try:
        fn = getattr(_kernel_module(), spec_json["kernel"])
        constexprs = {tuple(k): v for k, v in spec_json["constexprs"]}
        attrs = {tuple(k): v for k, v in spec_json["attrs"]}
        src = ASTSource(fn, spec_json["signature"], constexprs, attrs)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            ck = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                options={"num_warps": spec_json["num_warps"]})
        res = parse_ptxas_log(buf.getvalue())
        res.update(smem=int(ck.metadata.shared), access=ptx_access_widths(ck.asm["ptx"]),
                   error=None)
    except Exception as e:  # a compile error is a result to report, not a crash of the run
        res = {"error": f"{type(e).__name__}: {str(e)[-2000:]}"}
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


# What this module uses of Triton came with 3.5: triton.knobs.nvidia.dump_ptxas_log and
# JITFunction._pack_args (3.4 has neither).
MIN_TRITON = (3, 5)


def _import_triton():
    """``triton``, or a MissingDependencyError (one line) where it does not import or is older
    than :data:`MIN_TRITON`."""
    from pix2pixhd.errors import MissingDependencyError
    need = ".".join(map(str, MIN_TRITON))
    try:
        import triton
    except Exception as e:  # ImportError, or a broken install raising anything else
        raise MissingDependencyError(
            f"pix2pixhd.kernels.aot: Triton is not importable ({type(e).__name__}: {e}), so nothing can "
            f"be compiled. Triton has wheels for Linux only; there: pip install 'triton>={need}'") from e
    version = tuple(int(n) for n in re.findall(r"\d+", triton.__version__)[:2])
    if version < MIN_TRITON:
        raise MissingDependencyError(
            f"pix2pixhd.kernels.aot needs Triton >= {need} (triton.knobs.nvidia, JITFunction._pack_args); "
            f"this is triton {triton.__version__}: pip install 'triton>={need}'")
    return triton


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pix2pixhd" / "aot"


# Bump when what compile_spec stores changes, so older cached results are not read as current.
RESULT_FORMAT = "2"


def _kernel_hash(kernel: str) -> str:
    """The JIT's own hash of the kernel's source and what it calls (launchers do not count),
    with the Triton version (its ptxas included) and this module's result format."""
    import triton
    fn = getattr(_kernel_module(), kernel)
    return f"{fn.cache_key}|triton {triton.__version__}|format {RESULT_FORMAT}"


def compile_all(specs: dict[int, list[Spec]], cache_dir: Path | None, jobs: int,
                log: Callable[[str], None] = print) -> dict[tuple[int, str], dict]:
    """{(arch, spec key): result}; cached results are reused, the rest compiled in parallel."""
    results, todo = {}, []
    kernel_hash = {}
    for arch, lst in specs.items():
        for s in lst:
            if s.kernel not in kernel_hash:
                kernel_hash[s.kernel] = _kernel_hash(s.kernel)
            h = hashlib.sha256(f"{kernel_hash[s.kernel]}|sm_{arch}|{s.key()}".encode()).hexdigest()[:32]
            path = cache_dir / f"{h}.json" if cache_dir else None
            if path is not None and path.is_file():
                try:
                    results[(arch, s.key())] = loads_json(path.read_text()) | {"cached": True}
                    continue
                except ValueError:
                    pass  # a torn file: compile again
            todo.append((arch, s, path))
    log(f"compiling {len(todo)} specializations ({sum(map(len, specs.values())) - len(todo)} cached) "
        f"with {jobs} processes")
    t0 = time.perf_counter()
    if todo:
        import multiprocessing as mp
        # spawn: workers import Triton fresh, never inheriting this process's interpreter state.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_compile_worker_init) as ex:
            futs = [(arch, s, path, ex.submit(compile_spec, s.to_json(), arch)) for arch, s, path in todo]
            for arch, s, path, fut in futs:
                res = fut.result()
                results[(arch, s.key())] = res | {"cached": False}
                if path is not None and res.get("error") is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(res))
                    os.replace(tmp, path)
    if todo:
        log(f"compiled in {time.perf_counter() - t0:.1f} s")
    return results


# ---- reporting ------------------------------------------------------------------------------------
def vector_verdict(access: dict) -> str:
    """The widest global access of a kind in the PTX ('16B' = ld/st.global.v4.b32), '-' if none."""
    for w in WIDTHS:
        if access.get(w):
            return w
    return "-"


def rows_for(arch: int, specs: list[Spec], results: dict) -> list[dict]:
    rows = []
    for s in specs:
        r = results[(arch, s.key())]
        row = {"arch": f"sm_{arch}", "kernel": s.kernel, **s.describe(), "sources": sorted(s.sources),
               "example": s.example, "error": r.get("error")}
        if r.get("error") is None:
            acc = r["access"]
            row.update(regs=r["regs"], spills=r["spill_stores"] + r["spill_loads"],
                       stack=r["stack"], smem=r["smem"],
                       ld=vector_verdict(acc["ld"]), st=vector_verdict(acc["st"]),
                       ld_counts=acc["ld"], st_counts=acc["st"])
        rows.append(row)
    return rows


def _fmt_range(vals) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def summary_tables(rows: list[dict]) -> list[str]:
    """Markdown: per kernel and target, one line per (layout, dtype, L % 16)."""
    out = []
    for arch in sorted({r["arch"] for r in rows}):
        for kernel in sorted({r["kernel"] for r in rows if r["arch"] == arch}):
            rs = [r for r in rows if r["arch"] == arch and r["kernel"] == kernel]
            out.append(f"\n#### {kernel}, {arch}: {len(rs)} specializations\n")
            out.append("| layout | dtype | H*W % 16 == 0 | specs | regs/thread | spilled bytes | "
                       "stack | smem bytes | widest global load | widest global store | errors |")
            out.append("|---|---|---|---|---|---|---|---|---|---|---|")
            groups: dict[tuple, list[dict]] = {}
            for r in rs:
                groups.setdefault((r["layout"], r["dtype"], r["L%16"]), []).append(r)
            for (layout, dtype, al), g in sorted(groups.items()):
                ok = [r for r in g if r["error"] is None]

                def mix(kind):
                    c: dict[str, int] = {}
                    for r in ok:
                        c[r[kind]] = c.get(r[kind], 0) + 1
                    return ", ".join(f"{k} {n}/{len(ok)}" for k, n in sorted(c.items())) or "-"

                out.append(f"| {layout} | {dtype} | {al} | {len(g)} | "
                           f"{_fmt_range([r['regs'] for r in ok])} | "
                           f"{_fmt_range([r['spills'] for r in ok])} | "
                           f"{_fmt_range([r['stack'] for r in ok])} | "
                           f"{_fmt_range([r['smem'] for r in ok])} | {mix('ld')} | {mix('st')} | "
                           f"{len(g) - len(ok)} |")
    return out


def full_table(rows: list[dict]) -> list[str]:
    out = ["| arch | kernel | layout | dtype | flags | block | warps | H*W%16 | regs | spills | "
           "smem | global loads (bytes x count) | global stores | example launch |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["arch"], r["kernel"], r["layout"], r["dtype"], r["flags"],
                                         r["block"])):
        if r["error"] is not None:
            out.append(f"| {r['arch']} | {r['kernel']} | {r['layout']} | {r['dtype']} | {r['flags']} | "
                       f"{r['block']} | {r['warps']} | {r['L%16']} | ERROR: {r['error'][:80]} |")
            continue
        counts = {k: " ".join(f"{w}x{n}" for w, n in r[f"{k}_counts"].items() if n)
                  for k in ("ld", "st")}
        out.append(f"| {r['arch']} | {r['kernel']} | {r['layout']} | {r['dtype']} | {r['flags']} | "
                   f"{r['block']} | {r['warps']} | {r['L%16']} | {r['regs']} | {r['spills']} | "
                   f"{r['smem']} | {counts['ld']} | {counts['st']} | {r['example']} |")
    return out


# ---- command line ---------------------------------------------------------------------------------
def build_parser():
    """The command line of ``python -m pix2pixhd.kernels.aot``."""
    from pix2pixhd.argparsing import add_alias, make_parser
    p = make_parser("python -m pix2pixhd.kernels.aot", __doc__.split("\n\n")[0])
    p.add_argument("--arch", default="80,90",
                   help="comma-separated compute capabilities to compile for (80 = sm_80, 90 = sm_90)")
    p.add_argument("--sms", default=None,
                   help="comma-separated SM counts to plan launches for, one per --arch "
                        f"(default: {', '.join(f'sm_{a} {n}' for a, n in DEFAULT_SMS.items())})")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="storage dtypes to record")
    p.add_argument("--layouts", default=",".join(LAYOUTS), help="memory layouts to record")
    p.add_argument("--jobs", type=int, default=max(1, os.cpu_count() or 1),
                   help="parallel compiler processes")
    p.add_argument("--cache_dir", default=None,
                   help=f"compiled results cache (default: ${CACHE_ENV} or ~/.cache/pix2pixhd/aot)")
    p.add_argument("--no_cache", action="store_true", help="compile everything, store nothing")
    add_alias(p, "--cache-dir", "--cache_dir")   # the older spellings
    add_alias(p, "--no-cache", "--no_cache")
    p.add_argument("--full", action="store_true", help="also print one row per specialization")
    p.add_argument("--json", default=None, metavar="PATH", help="write every row as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="write the tables as markdown")
    from pix2pixhd.errors import add_debug_option
    add_debug_option(p)
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    from pix2pixhd.errors import ConfigError   # a bad option: one line from errors.run
    args = parse_args(argv)
    # The options first, before anything is done to this process's environment.
    try:
        archs = [int(a) for a in args.arch.split(",")]
        sms = ([int(n) for n in args.sms.split(",")] if args.sms else
               [DEFAULT_SMS.get(a, 0) for a in archs])
    except ValueError:
        raise ConfigError(f"--arch {args.arch!r} / --sms {args.sms!r}: expected comma-separated "
                          "integers, e.g. --arch 80,90") from None
    twice = sorted({a for a in archs if archs.count(a) > 1})
    if twice:  # each target would be recorded, compiled and counted once per mention
        raise ConfigError(f"--arch {args.arch}: " + ", ".join(f"sm_{a}" for a in twice)
                          + " given more than once; name each target once, e.g. --arch 80,90")
    if args.sms and len(sms) != len(archs):
        raise ConfigError(f"--sms {args.sms}: give one SM count per --arch ({args.arch}), "
                          f"e.g. --sms {','.join(str(DEFAULT_SMS.get(a, 132)) for a in archs)}")
    bad = [n for n in sms if n < 1]
    if args.sms and bad:
        raise ConfigError(f"--sms {args.sms}: an SM count must be a positive integer ({bad[0]} is not; "
                          f"an H100 SXM has 132, an A100 108)")
    no_default = [a for a, n in zip(archs, sms) if n < 1]
    if no_default:
        raise ConfigError(f"--arch {args.arch}: no default SM count for sm_{no_default[0]} (defaults "
                          f"exist only for {sorted(DEFAULT_SMS)}); give --sms, one per --arch")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected a positive number of compiler processes, "
                          f"e.g. --jobs {max(1, os.cpu_count() or 1)}")
    dtypes, layouts = args.dtypes.split(","), args.layouts.split(",")
    for flag, given, values, known in (("--dtypes", args.dtypes, dtypes, DTYPES),
                                       ("--layouts", args.layouts, layouts, LAYOUTS)):
        for v in values:
            if v not in known:
                raise ConfigError(f"{flag} {v!r}: expected some of {list(known)}")
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:  # recorded, compiled and counted once per mention
            raise ConfigError(f"{flag} {given}: {', '.join(twice)} given more than once; name each "
                              f"once, e.g. {flag} {','.join(known)}")
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    _check_outputs(args, cache_dir)
    if triton_interpret_on():
        if KERNEL_MODULE in sys.modules:
            # This process already built interpreted kernels: start a clean one.
            env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
            argv = sys.argv[1:] if argv is None else list(argv)
            return subprocess.call([sys.executable, "-m", "pix2pixhd.kernels.aot", *argv], env=env)
        os.environ.pop("TRITON_INTERPRET")  # compiling needs the JIT functions, not the interpreter
    triton = _import_triton()
    print(f"triton {triton.__version__}, torch {torch.__version__}; targets "
          + ", ".join(f"sm_{a} (launches planned for {n} SMs)" for a, n in zip(archs, sms)))

    t0 = time.perf_counter()
    recs, per_source = record(list(zip(archs, sms)), dtypes, layouts)
    specs = {r.arch: list(r.specs.values()) for r in recs}
    print(f"recorded in {time.perf_counter() - t0:.1f} s; launches per source (all dtypes and "
          "layouts, first target):")
    for name, k in per_source.items():
        print(f"    {k:6d}  {name}" + ("  (does not use the kernels)" if k == 0 else ""))
    for r in recs:
        print(f"sm_{r.arch}: {r.launches} launches, {len(r.specs)} distinct specializations")

    results = compile_all(specs, cache_dir, args.jobs)
    rows = [r for arch in archs for r in rows_for(arch, specs[arch], results)]
    tables = summary_tables(rows)
    print("\n".join(tables))
    full = full_table(rows)
    if args.full:
        print("\n".join(full))
    errors = [r for r in rows if r["error"] is not None]
    spills = [r for r in rows if r["error"] is None and r["spills"]]
    for r in errors:
        print(f"COMPILE ERROR {r['arch']} {r['kernel']} {r['layout']} {r['dtype']} {r['flags']} "
              f"{r['block']}: {r['error'][:500]}")
    for r in spills:
        print(f"SPILL {r['arch']} {r['kernel']} {r['layout']} {r['dtype']} {r['flags']} "
              f"{r['block']} warps {r['warps']}: {r['spills']} bytes")
    n_ok = len(rows) - len(errors)
    target_s = ",".join(f"sm_{a}" for a in archs)
    last = f"{n_ok} specializations compiled for {target_s}, {len(spills)} spills"
    if errors:
        last += f", {len(errors)} failed to compile"
    if args.markdown:
        cmd = " ".join(["python -m pix2pixhd.kernels.aot"]
                       + (sys.argv[1:] if argv is None else list(argv)))
        _write(args.markdown, "\n".join([f"# AOT compilation: {last}", "", "```", cmd, "```"]
                                        + tables + ["", "## Every specialization", ""]
                                        + full) + "\n")
    if args.json:
        _write(args.json, json.dumps({"triton": triton.__version__, "torch": torch.__version__,
                                      "targets": {f"sm_{a}": n for a, n in zip(archs, sms)},
                                      "rows": rows, "summary": last}, indent=1, default=str))
    print(last)
    return 1 if errors or spills else 0


def _check_outputs(args, cache_dir: Path | None) -> None:
    """A ConfigError (one line) before any work for an output that cannot be written: --json or
    --markdown a folder, under a file, in a folder that cannot be written, or both the same file;
    a cache folder that is a file or cannot be made or written. Missing folders above are made
    when written, as the benchmarks' --json and --markdown."""
    from pix2pixhd.errors import ConfigError, UserError
    from pix2pixhd.paths import check_output_file, check_output_folder
    files = [(flag, p) for flag, p in (("--json", args.json), ("--markdown", args.markdown)) if p]
    if len(files) == 2 and os.path.abspath(files[0][1]) == os.path.abspath(files[1][1]):
        raise ConfigError(f"--markdown {args.markdown} is also --json's file: one would overwrite the "
                          "other; give --markdown another file")
    cache_flag = "--cache_dir" if args.cache_dir else f"${CACHE_ENV} (or the default cache)"
    try:
        for flag, p in files:
            check_output_file(p, flag, kind="a results file",
                              default_name="aot.md" if flag == "--markdown" else "aot.json")
        if cache_dir is not None:
            check_output_folder(cache_dir, cache_flag, "compiled results")
    except UserError as e:   # (the checks make a file where each will be written, as root too)
        raise ConfigError(str(e)) from None


def _write(path: str, text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)


if __name__ == "__main__":
    from pix2pixhd.errors import run
    sys.exit(run(main))

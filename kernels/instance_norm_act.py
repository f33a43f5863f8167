"""Instance norm + optional affine + optional residual + activation: one public function.

``instance_norm_act`` is what every norm slot of the pix2pixHD networks calls (through
``pix2pixhd.layers.InstanceNormAct``). It dispatches to fused Triton kernels
(``_instance_norm_act_triton.py``: math, grid, numerics and determinism are in its header) or to
``instance_norm_act_ref``, the pure-PyTorch specification with the same signature.

Dispatch (``impl``):
  'ref'     always the reference.
  'triton'  the Triton kernels for CUDA tensors, and for CPU tensors when TRITON_INTERPRET is on
            (1, true, yes, on or y, any case: Triton's own rule, triton_interpret_on());
            anything else (no Triton, a CPU tensor without the interpreter, fp64) falls back to the
            reference and warns once per reason. The interpreter needs TRITON_INTERPRET=1 set
            before anything in the process imports triton (torch.compile does); set later, the
            call falls back and says so.
  'auto'    CUDA tensors: the faster of the Triton kernels and PyTorch's native instance norm
            (+ residual and activation), measured for each configuration (shape, dtype, layout,
            activation, affine, residual, training or inference) the first time it is seen:
            both run once on scratch tensors of that configuration (forward + backward when the
            call needs gradients, forward alone otherwise), as torch.backends.cudnn.benchmark
            does, and the choice holds for the rest of the process. An unmeasured kernel is
            never trusted: under torch.compile, an unmeasured configuration takes the native
            path. Set PIX2PIXHD_NORM_AUTOTUNE_FILE=path.json to keep the choices on disk (read at
            the first choice, rewritten after each new one; keyed by GPU, torch and Triton
            versions), so later runs skip the measurements and make the same choices; unset, a
            training run on CUDA keeps them in its run folder (norm_autotune.json), for --resume.
            Under torch.use_deterministic_algorithms an unrecorded configuration takes the
            native path unmeasured (a timing could differ in another process). A Triton
            candidate that fails (no C compiler for Triton's launcher, out of GPU memory) gives
            the native path for that configuration and the process, said once (AutoChooser).
            CPU tensors go to the native path silently, even under TRITON_INTERPRET=1 (the
            interpreter is a testing tool, far slower than PyTorch on CPU, and must not slow
            down every CPU test that happens to share a process with a kernel test). A CUDA
            tensor that cannot take the Triton path warns once, and runs the native path.
Without an importable Triton (no wheels for macOS or Windows) 'triton' on any device and 'auto' on
CUDA say so once, on the first call, and everything runs in PyTorch; 'auto' on CPU stays silent.
Set PIX2PIXHD_STRICT_KERNELS=1 (or true, yes, on) to turn those warnings into errors
(StrictKernelError, a UserError; e.g. in benchmarks and CI on GPU machines, where a fallback would
make the measured numbers meaningless); check_norm_impl(impl, device) raises the same error up
front, without running anything. 'auto' on CPU never raises it.

Tensors: x [N, C, H, W] fp32, fp16 or bf16, NCHW or channels-last, H*W > 1 (an empty x runs the
reference on every path: an empty y, zero weight and bias gradients); eps > 0; y has x's dtype and
memory format on every path. weight, bias [C] any float dtype and any strides (typically fp32
parameters under autocast); residual x's shape, any float dtype; all on x's device. Statistics
are fp32 (fp64 for fp64 x). The reference and the Triton kernels compute in fp32 and cast the
output once (the Triton interpreter's bf16 stores truncate instead of rounding to nearest); the
native path too, except for fp16/bf16 x with no weight, bias or residual, where PyTorch's kernel
rounds in x's dtype along the way (docs/kernels.md, Rounding; tests/test_kernel_rounding.py).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from pix2pixhd.errors import InputError, UserError, env_flag, loads_json

_ACTS = ("relu", "leaky_relu", "none")
_IMPLS = ("auto", "triton", "ref")
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
STRICT_ENV = "PIX2PIXHD_STRICT_KERNELS"
AUTOTUNE_ENV = "PIX2PIXHD_NORM_AUTOTUNE_FILE"


class StrictKernelError(UserError, RuntimeError):
    """A kernel fallback that PIX2PIXHD_STRICT_KERNELS turned into an error (one line)."""


class KernelBuildError(UserError, RuntimeError):
    """``impl='triton'`` on a machine where Triton cannot build the C launcher of its kernels (no
    C compiler: official PyTorch CUDA runtime images have none). One line naming the fix, instead
    of Triton's RuntimeError and its traceback; a RuntimeError still, as Triton's was."""


def triton_interpret_on() -> bool:
    """Whether TRITON_INTERPRET turns Triton's interpreter on (as Triton itself reads it)."""
    return env_flag("TRITON_INTERPRET")


def strict_kernels() -> bool:
    """Whether PIX2PIXHD_STRICT_KERNELS makes kernel fallbacks errors."""
    return env_flag(STRICT_ENV)


def check_eps(eps, where: str) -> None:
    """A ValueError unless eps is a finite number > 0 (0 gives NaN for a constant channel)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < float("inf"):
        raise ValueError(f"{where}: eps={eps!r}; expected a finite number > 0 (e.g. 1e-5, "
                         "nn.InstanceNorm2d's default): eps <= 0 gives NaN where a channel is constant")


def check_impl(impl, where: str) -> None:
    if impl not in _IMPLS:
        raise ValueError(f"{where}: impl={impl!r}; expected one of {_IMPLS}")


# Launch overrides (block sizes, split count) for tests and benchmarks; see launch_overrides().
_OVERRIDES: dict = {}
_WARNED: set[str] = set()
_QUIET = False  # set by path_taken(): a question about the dispatch, not a call
# Set by pix2pixhd.kernels.aot while it records launches: every call takes the Triton path
# (meta tensors included) and the kernel module hands the launches to its recorder.
_RECORDING = False


@contextlib.contextmanager
def launch_overrides(**kw):
    """Force the Triton launch config inside the block: block_p, block_c, splits, num_warps.

    Tests use it to make H*W straddle several tiles and several splits on tiny shapes, where the
    automatic choice would be one tile in one program.
    """
    unknown = set(kw) - {"block_p", "block_c", "splits", "num_warps"}
    if unknown:
        raise ValueError(f"launch_overrides: unknown keys {sorted(unknown)}; "
                         "expected block_p, block_c, splits, num_warps")
    for k in ("block_p", "block_c"):
        if k in kw and (kw[k] < 1 or kw[k] & (kw[k] - 1)):
            raise ValueError(f"launch_overrides: {k}={kw[k]} must be a power of two")
    old = dict(_OVERRIDES)
    _OVERRIDES.update(kw)
    try:
        yield
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(old)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    # Neither dense layout: follow the strides' order where they suggest channels-last.
    return torch.channels_last if x.stride(1) < x.stride(-1) else torch.contiguous_format


def _check(x, weight, bias, residual, act, impl, eps):
    check_impl(impl, "instance_norm_act")
    check_eps(eps, "instance_norm_act")
    if act not in _ACTS:
        raise ValueError(f"instance_norm_act: act={act!r}; expected one of {_ACTS}")
    if x.dim() != 4:
        raise ValueError(f"instance_norm_act: x has shape {tuple(x.shape)}; expected 4-D "
                         "[N, C, H, W] (unsqueeze a missing batch dimension)")
    if not x.is_floating_point():
        raise TypeError(f"instance_norm_act: x has dtype {x.dtype}; expected a float tensor "
                        "(convert integer images with pix2pixhd.encoding.image_to_float)")
    c = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"instance_norm_act: {name} has shape {tuple(t.shape)} but x has "
                             f"C={c} channels; expected ({c},)")
    for name, t in (("weight", weight), ("bias", bias), ("residual", residual)):
        if t is not None and not t.is_floating_point():  # .to(fp32) would take it silently
            raise TypeError(f"instance_norm_act: {name} has dtype {t.dtype}; expected a float "
                            f"tensor (any float dtype: convert it, e.g. {name}.float())")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"instance_norm_act: residual has shape {tuple(residual.shape)}, x has "
                         f"{tuple(x.shape)}; they must match (the residual is added after the norm)")
    for name, t in (("weight", weight), ("bias", bias), ("residual", residual)):
        if t is not None and t.device != x.device:  # a kernel would read another device's address
            raise ValueError(f"instance_norm_act: {name} is on {t.device}, x on {x.device}; move "
                             "them to one device")
    # One pixel per (n, c) normalises to 0 whatever x is: y = act(bias + residual) and x gets no
    # gradient. nn.InstanceNorm2d (so the native path) refuses it with this same check; every
    # path does, rather than the Triton and reference paths returning the bias.
    if x.shape[2] * x.shape[3] == 1:
        raise ValueError(f"instance_norm_act: x has shape {tuple(x.shape)}; expected more than 1 "
                         "spatial element, as nn.InstanceNorm2d (over one pixel the norm is 0 "
                         "whatever x is: an input too small for the network's downsamplings?)")


def _residual_act(y, residual, act, negative_slope, cdt, dtype, fmt):
    """The shared tail of both PyTorch paths: ``y`` (the normalised, affine-applied output in the
    compute dtype ``cdt``) plus the residual in ``cdt``, the activation, then one cast to ``dtype``
    in memory format ``fmt``."""
    if residual is not None:
        y = y + residual.to(cdt)
    if act == "relu":
        y = torch.relu(y)
    elif act == "leaky_relu":
        y = torch.nn.functional.leaky_relu(y, negative_slope)
    return y.to(dtype).contiguous(memory_format=fmt)


def instance_norm_act_ref(x, weight=None, bias=None, *, act="relu", negative_slope=0.2,
                          eps=1e-5, residual=None, impl="ref"):
    """Pure-PyTorch specification of :func:`instance_norm_act` (same signature; ``impl`` ignored).

    Computes in fp32 (fp64 stays fp64) and casts the result to x's dtype once, which is what the
    kernels do; the autograd graph of these few ops gives every gradient.
    """
    _check(x, weight, bias, residual, act, "ref", eps)
    fmt = _memory_format(x)
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(cdt)
    mean = xf.mean(dim=(2, 3), keepdim=True)
    xc = xf - mean
    var = xc.square().mean(dim=(2, 3), keepdim=True)  # biased, as nn.InstanceNorm2d
    y = xc * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.to(cdt).view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.to(cdt).view(1, -1, 1, 1)
    return _residual_act(y, residual, act, negative_slope, cdt, x.dtype, fmt)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous (NCHW) gradient.

    PyTorch's native instance norm on a channels-last input with a batch of one returns wrong
    input gradients when the incoming gradient is channels-last too (torch 2.13 and 2.11, CPU:
    1.2 to 1.5 relative error against fp64, `scripts/numerics_check.py --only norm`; with act
    'none' the next layer's gradient reaches it unchanged). An NCHW gradient, or a batch of two
    or four, is right. The norm's output is NCHW there anyway, so its gradient is made NCHW
    before it reaches the norm; larger batches keep theirs as it comes (no copy in their
    backward)."""

    @staticmethod
    def forward(ctx, y):
        return y.view_as(y)

    @staticmethod
    def backward(ctx, gy):
        return gy.contiguous()


def _instance_norm_act_eager(x, weight, bias, *, act, negative_slope, eps, residual):
    """PyTorch's native path ('auto' on CPU, or where it measured faster on CUDA): the native
    instance norm, whose own backward is cheaper than autograd through the reference's separate
    ops, then the residual and the activation. Same result as the reference up to rounding.

    The activation is out of place on purpose: F.instance_norm returns a view of batch_norm's
    output, and an in-place op on a view makes autograd rebase it (CopySlices + AsStridedBackward:
    a clone, a zero-filled tensor and two copies of the activation per norm in the backward, and
    non-contiguous gradients that the next conv's backward copies again; ~6 % of a CPU step at
    the reference widths). Peak memory is the same: nothing keeps the norm's output alive.

    Dtypes follow the reference: weight and bias in the compute dtype (fp32, fp64 for fp64 x; the
    native norm takes fp32 parameters beside fp16/bf16 x but no other mix), the residual cast to
    the compute dtype and added to the norm's output there, and the result cast to x's dtype
    once, so y has x's dtype whatever the residual's. With a residual, an fp16/bf16 x goes through
    the norm as an fp32 copy: the native norm returns x's dtype, and adding the residual to that
    rounded output rounded twice (a tenth to a third of the bf16 outputs off the correctly rounded
    value, ReLU's mask flipped near 0). The copy is what the norm keeps for its backward instead of x:
    one more x-sized tensor of fp16/bf16 per residual norm (the ResNet blocks' second ones).

    fp32 parameters (or that fp32 copy) make PyTorch's kernel compute an fp16/bf16 x in fp32 and
    cast once. Given x alone (no weight, bias or residual: the pix2pixHD norms) it rounds in x's
    dtype along the way: 35 % of fp16 and 46 % of bf16 outputs off the correctly rounded value
    on CPU. That is kept: an fp32 copy of x would cost every such norm a pass and twice the
    saved memory (docs/kernels.md, Rounding)."""
    fmt = _memory_format(x)
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    weight = weight.to(cdt) if weight is not None else None  # no-ops for fp32 parameters
    bias = bias.to(cdt) if bias is not None else None
    xin = x.to(cdt) if residual is not None else x  # a no-op for fp32 / fp64 x
    y = torch.nn.functional.instance_norm(xin, weight=weight, bias=bias, eps=eps)
    if fmt == torch.channels_last and x.shape[0] == 1:  # the one case PyTorch gets wrong
        y = _ContiguousGrad.apply(y)
    return _residual_act(y, residual, act, negative_slope, cdt, x.dtype, fmt)


def _fallback_name(impl: str) -> str:
    """What runs instead of the Triton kernels: 'auto' falls back to PyTorch's native norm,
    'triton' to the reference."""
    return "PyTorch's native norm" if impl == "auto" else "the PyTorch reference"


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        # The warning names the first frame outside this module: the line that called
        # instance_norm_act (or the layer that did), however deep the dispatch that warns.
        level, frame = 1, sys._getframe(0)
        while frame is not None and frame.f_globals.get("__name__") == __name__:
            level, frame = level + 1, frame.f_back
        warnings.warn(message, RuntimeWarning, stacklevel=level)


def _say_once(key: str, message: str, impl: str) -> None:
    """A fallback from the Triton kernels: one warning per ``key``, or under strict mode a
    StrictKernelError."""
    if _QUIET:
        return
    if strict_kernels():
        raise StrictKernelError(f"{message} ({STRICT_ENV}={os.environ.get(STRICT_ENV)} makes this an "
                                f"error; unset {STRICT_ENV} to run {_fallback_name(impl)} with a "
                                "warning instead, or choose impl='ref'/--norm_impl ref)")
    _warn_once(key, f"{message}; using {_fallback_name(impl)} (set {STRICT_ENV}=1 to make this "
                    "an error)")


_PROBED: dict = {}


def _once(fn):
    """``functools.lru_cache`` for the probes below, in a plain dict: torch.compile (Dynamo)
    warns about every lru_cache-wrapped call it traces (it ignores the cache and traces the
    function), while it traces a dict lookup quietly, and the first call of each fills it."""
    @functools.wraps(fn)
    def cached(*args):
        key = (fn.__name__, *args)
        if key not in _PROBED:
            _PROBED[key] = fn(*args)
        return _PROBED[key]
    return cached


@_once
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install raising anything else
        return f"{type(e).__name__}: {e}"
    return None


@_once
def _triton_not_found() -> str | None:
    """Why no Triton is installed, found without importing it (importing it before
    TRITON_INTERPRET is set would fix the compiled mode for the process); None when one is."""
    try:
        found = importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None if found else "ModuleNotFoundError: No module named 'triton'"


@_once
def _interpreter_too_late() -> str | None:
    """Why the Triton interpreter cannot run the kernels in this process, or None.

    ``triton.jit`` decides at definition whether a function is compiled or interpreted, and
    Triton's own library functions (``tl.sum``...) are defined when ``triton`` is first imported:
    imported before TRITON_INTERPRET=1 was set (``import triton``, any torch.compile call), they
    stay compiled, and an interpreted kernel calling them fails ("Cannot call @triton.jit'd
    outside of the scope of a kernel"). Asked only with TRITON_INTERPRET=1 and Triton imported,
    when the answer can no longer change."""
    from triton.runtime.jit import JITFunction
    std = sys.modules.get("triton.language.standard")
    kernels = sys.modules.get(__package__ + "._instance_norm_act_triton")
    if isinstance(getattr(std, "sum", None), JITFunction):
        what = "Triton was imported"
    elif isinstance(getattr(kernels, "_stats_kernel", None), JITFunction):
        what = "the kernels were imported"
    else:
        return None
    return (f"instance_norm_act: {what} before TRITON_INTERPRET=1 was set in this process "
            "(`import triton` and any torch.compile call import it), so the Triton interpreter "
            "cannot run the kernels; set TRITON_INTERPRET=1 before anything imports triton "
            "(e.g. in the environment: TRITON_INTERPRET=1 python ...)")


def _say_no_triton(err: str, impl: str) -> None:
    _say_once("import", f"pix2pixhd.kernels: Triton is not importable ({err}), so instance norm + "
                        "activation runs in PyTorch, unfused (same results; slower on CUDA). "
                        "Triton has wheels for Linux only; there: pip install 'triton>=3.2'", impl)


# What to do when Triton cannot build the C launcher it compiles at a kernel's first launch on a
# GPU (official PyTorch CUDA runtime images have no compiler).
_NO_CC_FIX = "install one (e.g. apt-get install gcc) or set CC to one"


def _first_line(e: BaseException) -> str:
    """``Type: first line of the message``: what a one-line report names of a cause."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _no_compiler(e: BaseException) -> bool:
    """Whether ``e`` is Triton finding no C compiler for a kernel's launcher ("Failed to find C
    compiler. Please specify via CC environment variable...")."""
    return isinstance(e, RuntimeError) and "C compiler" in str(e)


def _use_triton(x: torch.Tensor, impl: str) -> bool:
    if impl == "ref" or x.numel() == 0:  # nothing to launch for (a batch of 0 divided by 0)
        return False
    if _RECORDING:
        return x.dtype in _TRITON_DTYPES
    if impl == "auto" and not _tunable(x):
        return False  # 'auto' off CUDA is the native path, silently, whatever Triton's state
    # Checked before the device: a machine without Triton (macOS and Windows have no wheels)
    # hears once why nothing is fused, whatever tensor comes first.
    missing = _triton_not_found()
    if missing is not None:
        _say_no_triton(missing, impl)
        return False
    interpret = triton_interpret_on()
    if not x.is_cuda and not interpret:
        _say_once("cpu", f"instance_norm_act: impl={impl!r} on a {x.device.type} tensor needs "
                         "a CUDA device, or TRITON_INTERPRET=1 set before anything imports "
                         "triton, to run the Triton interpreter", impl)
        return False
    err = _triton_import_error()  # installed but broken
    if err is not None:
        _say_no_triton(err, impl)
        return False
    if x.dtype not in _TRITON_DTYPES:
        _say_once(f"dtype-{x.dtype}", f"instance_norm_act: dtype {x.dtype} has no Triton "
                                      "kernel (fp32, fp16, bf16 do)", impl)
        return False
    if interpret:
        late = _interpreter_too_late()
        if late is not None:
            _say_once("interpret-late", late, impl)
            return False
    return True


def check_norm_impl(impl: str, device, dtype: torch.dtype = torch.float32) -> None:
    """Raise, before any work, the StrictKernelError that the first ``instance_norm_act(...,
    impl=impl)`` call on a ``dtype`` tensor on ``device`` would raise under
    PIX2PIXHD_STRICT_KERNELS; a ValueError for an unknown ``impl``. Runs no kernel and warns
    nothing (without strict mode the first call warns as before). For 'auto' on CUDA it also
    reads PIX2PIXHD_NORM_AUTOTUNE_FILE, so an unreadable one is an InputError here."""
    check_impl(impl, "check_norm_impl")
    x = torch.empty((1, 1, 1, 2), device=device, dtype=dtype)
    if impl == "auto" and _tunable(x) and not _AUTO._loaded:
        _AUTO._load()
    if strict_kernels():
        _use_triton(x, impl)


def path_taken(impl: str, device, dtype: torch.dtype = torch.float32) -> str:
    """The path ``instance_norm_act(..., impl=impl)`` takes for a tensor of ``dtype`` on
    ``device``: 'triton', 'native', 'ref', or 'auto' where 'auto' measures Triton against
    native per configuration (CUDA). No warning and no strict-mode error: for records of what
    ran (benchmarks/train.py), where asking for 'triton' may have run the reference."""
    global _QUIET
    check_impl(impl, "path_taken")
    x = torch.empty((1, 1, 1, 2), device=device, dtype=dtype)
    _QUIET = True
    try:
        use = _use_triton(x, impl)
    finally:
        _QUIET = False
    if impl == "auto":
        return ("auto" if _tunable(x) else "triton") if use else "native"
    return "triton" if use else "ref"


class _InstanceNormActTriton(torch.autograd.Function):
    """The Triton path's autograd Function: one class at module level, the static configuration
    (act, negative_slope, eps) passed as non-tensor arguments, which get no gradient.

    It was built per configuration inside a cached function; torch.compile cannot trace a class
    definition ("Invalid call to __build_class__"), so every fused norm broke the graph and
    ``fullgraph=True`` failed (test_fused_function_traces_in_one_graph)."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, act, negative_slope, eps):
        from . import _instance_norm_act_triton as K
        overrides = dict(_OVERRIDES)
        y, mean, rstd = K.forward(x, weight, bias, residual, act, negative_slope, eps, overrides)
        # Saved: x, mean, rstd (+ weight, and bias/residual only when the activation mask
        # needs z). y is not saved: the backward recomputes xhat and the mask from x.
        keep = act != "none"
        ctx.save_for_backward(x, mean, rstd, weight, bias if keep else None,
                              residual if keep else None)
        ctx.act, ctx.negative_slope, ctx.overrides = act, negative_slope, overrides
        ctx.res_dtype = residual.dtype if residual is not None else None
        ctx.b_dtype = bias.dtype if bias is not None else None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        from . import _instance_norm_act_triton as K
        x, mean, rstd, weight, bias, residual = ctx.saved_tensors
        need_dx, need_dw, need_db, need_dres = ctx.needs_input_grad[:4]
        dy = dy.contiguous(memory_format=_memory_format(x))
        if ctx.act == "none" and need_dres:
            # d residual = dy exactly; no kernel, no copy when dtypes agree.
            dres = dy.to(ctx.res_dtype)
            dres_dtype = None
        else:
            dres = None
            dres_dtype = ctx.res_dtype if need_dres else None
        dx, dw, db, dres_k = K.backward(dy, x, weight, bias, residual, mean, rstd, ctx.act,
                                        ctx.negative_slope, ctx.overrides, need_dx,
                                        weight.dtype if need_dw else None,
                                        ctx.b_dtype if need_db else None, dres_dtype)
        return dx, dw, db, dres if dres is not None else dres_k, None, None, None


def instance_norm_act(x, weight=None, bias=None, *, act="relu", negative_slope=0.2, eps=1e-5,
                      residual=None, impl="auto"):
    """y = act(instance_norm(x) * weight + bias + residual), fused on GPU.

    Args:
        x: [N, C, H, W] fp32/fp16/bf16 (fp64 runs the reference), NCHW or channels-last.
        weight, bias: optional [C] affine parameters (nn.InstanceNorm2d(affine=True)).
        act: 'relu', 'leaky_relu' (with ``negative_slope``) or 'none'.
        eps: added to the biased variance, as nn.InstanceNorm2d; a finite number > 0
            (ValueError otherwise: with 0 a constant channel is 0/0).
        residual: optional tensor of x's shape added after the affine and before the activation
            (the ResNet block's second norm: ``x + norm(conv(...))`` in one pass).
        impl: 'auto', 'triton' or 'ref' (see the module docstring). The Triton path's backward
            is once_differentiable: no double backward (a backward through gradients taken with
            create_graph=True raises); use 'ref' where one is needed ('auto' may take Triton on CUDA).

    Returns:
        y with x's shape, dtype and memory format. Statistics are fp32 over H*W per (n, c);
        the variance is biased; no running statistics are kept (track_running_stats=False).
    """
    _check(x, weight, bias, residual, act, impl, eps)
    native = functools.partial(_instance_norm_act_eager, act=act, negative_slope=negative_slope,
                               eps=eps)
    if not _use_triton(x, impl):
        # 'ref', 'triton' falling back as documented, and any empty x (the native norm fails on
        # a batch of 0 with weight and bias; the reference gives an empty y and zero gradients).
        if impl != "auto" or x.numel() == 0:
            return instance_norm_act_ref(x, weight, bias, act=act, negative_slope=negative_slope,
                                         eps=eps, residual=residual)
        return native(x, weight, bias, residual=residual)
    fused = functools.partial(_fused_apply, act=act, negative_slope=negative_slope, eps=eps)
    if impl == "auto" and _tunable(x):
        if _AUTO.choose(x, weight, bias, residual, act, fused, native) == "native":
            return native(x, weight, bias, residual=residual)
    try:
        return fused(x, weight, bias, residual=residual)
    except RuntimeError as e:
        # 'auto' met this before trusting the kernels (AutoChooser.choose); 'triton' meets it here.
        if not _no_compiler(e):
            raise
        raise KernelBuildError(f"instance_norm_act: impl={impl!r} cannot launch the Triton kernels: "
                               "Triton builds a C launcher at a kernel's first launch and found no C "
                               f"compiler ({_first_line(e)}); {_NO_CC_FIX}, or choose --norm_impl "
                               + ("auto (PyTorch's native norm where Triton fails) or ref"
                                  if impl == "triton" else "ref")) from e


def _device_guard(x: torch.Tensor):
    """Triton launches on the current CUDA device, not the tensor's: a model on cuda:1 in a
    process whose current device is cuda:0 switches for the call (the backward runs on autograd's
    thread for x's device already). A no-op context otherwise, and while torch.compile traces."""
    if (x.is_cuda and x.device.index is not None and not torch.compiler.is_compiling()
            and x.device.index != torch.cuda.current_device()):
        return torch.cuda.device(x.device)
    return contextlib.nullcontext()


def _fused_apply(x, weight, bias, *, act, negative_slope, eps, residual):
    """The Triton path. The kernels read weight and bias at ``w_ptr + c``, so a strided or
    expanded parameter (``w[::2]``, ``t.expand(C)``) is made contiguous here (a no-op for
    parameters): read as it came, it gave wrong values or read past the buffer."""
    fmt = _memory_format(x)
    x = x.contiguous(memory_format=fmt)  # a no-op for dense NCHW / channels-last inputs
    if residual is not None:
        residual = residual.contiguous(memory_format=fmt)
    weight = weight.contiguous() if weight is not None else None
    bias = bias.contiguous() if bias is not None else None
    with _device_guard(x):
        return _InstanceNormActTriton.apply(x, weight, bias, residual, act,
                                            float(negative_slope), float(eps))


# ---- 'auto': measure before trusting -----------------------------------------------------------

def _tunable(x: torch.Tensor) -> bool:
    """Whether 'auto' measures this call (CUDA tensors; recording for AOT compilation never)."""
    return x.is_cuda and not _RECORDING


def _capturing(x: torch.Tensor) -> bool:
    """Whether ``x``'s CUDA stream is capturing a CUDA graph, where nothing may be measured (a
    function of its own so that CPU tests can stand in for a capture)."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _time_ms(name: str, fn: Callable[[], None], device: torch.device, calls: int = 3) -> float:
    """ms per call of ``fn``: the median of three measurements after one untimed call (which
    also compiles a kernel). On CUDA each measurement is ``calls`` calls back to back, queued
    behind a short GPU sleep, so it times the GPU's work: the CPU's launch overhead, which training
    hides behind the convolutions, would otherwise count against the path with more launches."""
    fn()
    times = []
    for _ in range(3):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            sleep = getattr(torch.cuda, "_sleep", None)
            if sleep is not None:
                sleep(2_000_000)  # about 1 ms of GPU cycles while the calls below are queued
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@_once
def _platform_label(device: torch.device) -> str:
    """What a measured choice depends on besides the call: the GPU, torch and Triton versions."""
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    triton_version = "-"
    if _triton_import_error() is None:
        import triton
        triton_version = triton.__version__
    return f"{dev}|torch {torch.__version__}|triton {triton_version}"


class AutoChooser:
    """'auto''s choice between the Triton kernels ('triton') and PyTorch's native path ('native').

    One measurement per configuration key, kept for the process (``choices``) and, when a file
    is named, on disk: ``path``, else $PIX2PIXHD_NORM_AUTOTUNE_FILE, else ``run_file`` (the
    Trainer's run folder, set_run_autotune_file). ``timer(name, fn, device) -> ms`` times a
    candidate; tests pass a fake one.

    Never measured, native taken instead: under torch.compile or CUDA-graph capture, and under
    torch.use_deterministic_algorithms (--deterministic), where the timing could choose another
    path in another process and a run would not repeat; a recorded choice holds in both.

    The Triton candidate can fail where native cannot: its first launch on a GPU builds a C
    launcher (no C compiler in official PyTorch CUDA runtime images; libcuda.so missing), or its
    scratch tensors run out of GPU memory. Then the key takes native for the rest of the process
    (``failed``) and the cause is said once (_say_once: an error under PIX2PIXHD_STRICT_KERNELS),
    but nothing is written to disk: a compiler installed later is measured again by the next
    process. An out-of-memory is kept for the process too, after freeing PyTorch's cached blocks:
    each later step holds at least as much memory as the first (optimizer states come after it),
    so measuring again would run out again, at every step. Native is measured only after Triton
    succeeded: its failure is PyTorch's own, and the real call would fail the same. A recorded
    'triton' choice read from disk is run once on scratch tensors in each process before it is
    trusted (the file may come from a machine with a compiler), with the same fallback.
    """

    def __init__(self, timer: Callable[[str, Callable[[], None], torch.device], float] | None = None,
                 path: str | os.PathLike | None = None):
        self.timer = timer or _time_ms
        self._path = path
        self.run_file: Path | None = None   # used when neither path nor the variable names one
        self.run_file_replaced = False      # run_file belongs to a run --overwrite replaces: unread
        self.choices: dict[str, dict] = {}
        self.failed: dict[str, str] = {}   # key -> why Triton failed (this process only)
        self._launched: set[str] = set()   # keys whose 'triton' choice ran in this process
        self._loaded = False

    @property
    def path(self) -> Path | None:
        p = self._path if self._path is not None else os.environ.get(AUTOTUNE_ENV) or self.run_file
        return Path(p) if p else None

    def _named(self, path: Path) -> str:
        """How a message names the file: through the variable, or as the run folder's."""
        if self.run_file is not None and path == Path(self.run_file):
            return f"the run folder's norm choices {path}"
        return f"{AUTOTUNE_ENV}: {path}"

    @staticmethod
    def key(x, weight, bias, residual, act, train: bool) -> str:
        layout = "channels_last" if _memory_format(x) == torch.channels_last else "nchw"
        dt = lambda t: "-" if t is None else str(t.dtype).replace("torch.", "")  # noqa: E731
        return (f"{_platform_label(x.device)}|{list(x.shape)}|{dt(x)}|{layout}|act={act}|"
                f"weight={dt(weight)}|bias={dt(bias)}|residual={dt(residual)}|"
                f"{'train' if train else 'inference'}")

    def _load(self) -> None:
        self._loaded = True
        path = self.path
        if path is None or not path.is_file():
            return
        if self.run_file_replaced and path == self.run_file:
            return   # the old run's choices, in the folder --overwrite moves aside: not this run's
        try:
            stored = loads_json(path.read_text())
            if not isinstance(stored, dict):
                raise ValueError(f"a JSON {type(stored).__name__}, not an object")
        except (OSError, ValueError) as e:
            raise InputError(f"{self._named(path)} is not a readable JSON file of norm choices "
                             f"({e}); delete it (it is rewritten by the next run) or point "
                             f"{AUTOTUNE_ENV} elsewhere") from None
        for k, v in stored.items():
            if isinstance(v, dict) and v.get("choice") in ("triton", "native"):
                self.choices.setdefault(k, v)

    def _save(self) -> None:
        path = self.path
        if path is None:
            return
        merged = {}
        if path.is_file():  # another process (a DDP rank) may have added choices meanwhile
            try:
                merged = loads_json(path.read_text())
            except (OSError, ValueError):
                merged = {}
        if not isinstance(merged, dict):
            merged = {}
        merged.update(self.choices)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as e:  # a cache: the choices still hold for this process
            with contextlib.suppress(OSError):
                tmp.unlink()
            _warn_once(f"autotune-write-{path}",
                       f"{AUTOTUNE_ENV}: cannot write {path} ({e.strerror or e}); the norm choices "
                       f"are kept for this process only; point {AUTOTUNE_ENV} at a file in a "
                       "folder you can write to, or unset it")

    def choose(self, x, weight, bias, residual, act, fused, native) -> str:
        """'triton' or 'native' for this call; measures both the first time its key is seen.

        fused, native: ``f(x, weight, bias, residual=r) -> y``, the two candidates.
        """
        train = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, weight, bias, residual))
        if not self._loaded:
            self._load()
        k = self.key(x, weight, bias, residual, act, train)
        if k in self.failed:
            return "native"
        hit = self.choices.get(k)
        traced = torch.compiler.is_compiling() or _capturing(x)
        if hit is not None and (hit["choice"] == "native" or k in self._launched or traced):
            return hit["choice"]
        if traced:
            return "native"  # no measuring inside a traced or captured graph; unmeasured: untrusted
        if hit is None and torch.are_deterministic_algorithms_enabled():
            _warn_once("autotune-deterministic",
                       "instance_norm_act: 'auto' does not time the norms under "
                       "torch.use_deterministic_algorithms (--deterministic): another process could "
                       "time them otherwise and take the other path, so every configuration without "
                       "a recorded choice takes PyTorch's native norm; for the fused kernels, reuse "
                       f"the choices of a run without it ({AUTOTUNE_ENV}, or --resume of a run that "
                       "recorded them in its folder) or force them with --norm_impl triton")
            return "native"
        # A recorded 'triton' (from disk) runs once untimed; an unrecorded key is timed.
        timer = self.timer if hit is None else (lambda name, fn, device: fn() or 0.0)
        failure = None
        try:
            ms_triton = self._measure("triton", fused, x, weight, bias, residual, train, timer)
        except Exception as e:  # noqa: BLE001 - whatever Triton raises, native is still there
            failure = self._failure_message(e, x)
        if failure is not None:  # out of the except block: the scratch tensors are freed now
            if failure[0] == "autotune-oom":
                torch.cuda.empty_cache()
            _say_once(failure[0], failure[1], "auto")  # strict mode raises here, every time
            self.failed[k] = failure[1]
            return "native"
        self._launched.add(k)
        if hit is not None:
            return hit["choice"]
        ms = {"triton": ms_triton,
              "native": self._measure("native", native, x, weight, bias, residual, train, self.timer)}
        choice = "triton" if ms["triton"] < ms["native"] else "native"
        self.choices[k] = {"choice": choice, "ms": ms}
        self._save()
        return choice

    @staticmethod
    def _failure_message(e: BaseException, x: torch.Tensor) -> tuple[str, str]:
        """(warning key, one line) for the Triton candidate failing on ``x``'s configuration."""
        what = (f"instance_norm_act: 'auto' could not run the Triton kernels on a "
                f"{list(x.shape)} {str(x.dtype).replace('torch.', '')} norm ({_first_line(e)})")
        if isinstance(e, torch.cuda.OutOfMemoryError):
            return "autotune-oom", (f"{what}: measuring them ran out of GPU memory; that "
                                    "configuration keeps PyTorch's native norm in this process")
        if _no_compiler(e):
            return "autotune-cc", (f"{what}: Triton builds a C launcher at a kernel's first launch "
                                   f"and found no C compiler; {_NO_CC_FIX} (the next run measures "
                                   "again), or choose --norm_impl ref")
        return f"autotune-{type(e).__name__}", (f"{what}; fix what it names (the next run measures "
                                                "again), or choose --norm_impl ref")

    def _measure(self, name, f, x, weight, bias, residual, train: bool, timer=None) -> float:
        # Scratch tensors of the call's configuration: the caller's tensors and graph stay
        # untouched. Their values come from a private generator: torch.randn_like would draw from
        # x's device's global generator (on CUDA the one dropout uses), so measuring in a resumed
        # process would move the RNG the checkpoint restored.
        gen = torch.Generator(device=x.device).manual_seed(0)

        def scratch(t, like_x=False):
            if t is None:
                return None
            s = torch.empty_like(t).normal_(generator=gen) if like_x else t.detach().clone()
            return s.requires_grad_(train and t.requires_grad)

        with torch.inference_mode(False), torch.set_grad_enabled(train):
            xs, rs = scratch(x, True), scratch(residual, True)
            ws, bs = scratch(weight), scratch(bias)
            leaves = [t for t in (xs, ws, bs, rs) if t is not None and t.requires_grad]
            gy = torch.empty_like(xs).normal_(generator=gen) if train else None

            def run():
                y = f(xs, ws, bs, residual=rs)
                if train:
                    torch.autograd.grad(y, leaves, gy)

            with _device_guard(x):  # CUDA events go to the current device's stream
                return float((timer or self.timer)(name, run, x.device))


_AUTO = AutoChooser()


def set_run_autotune_file(path: str | os.PathLike | None, *, replaces: bool = False) -> None:
    """Where 'auto' keeps its choices when PIX2PIXHD_NORM_AUTOTUNE_FILE is not set: the Trainer
    names its run folder's norm_autotune.json on CUDA, so --resume takes the path the run took
    for every norm, not a new timing's (under --deterministic too, where nothing is timed). The
    file is read at the next choice; choices already made in the process keep theirs.
    ``replaces``: the file is an older run's that this one replaces (--overwrite moves the folder
    aside before the first step): it is not read, so its choices are not taken over and a damaged
    one does not stop the run that replaces it."""
    _AUTO.run_file = Path(path) if path is not None else None
    _AUTO.run_file_replaced = replaces and path is not None
    _AUTO._loaded = False

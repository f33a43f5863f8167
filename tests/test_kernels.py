"""The fused instance norm + activation kernels against their PyTorch reference.

Without a GPU the Triton kernels run on CPU through the interpreter (TRITON_INTERPRET=1, set
below before anything imports the kernels; the kernels module is only imported at the first
Triton call, so an earlier import of pix2pixhd elsewhere in the process does not matter, see
test_interpreter_after_early_import). With a CUDA device the same tests run the compiled kernels
on it, and the ``cuda`` tests add the real networks' shapes (one channel of 2048x1024 included) in
every dtype and layout. Small shapes force the launch config so that H*W spans several tiles and
several splits with a ragged last tile, and C several channel blocks with a ragged last one,
which is where indexing bugs live.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pix2pixhd.kernels import instance_norm_act, instance_norm_act_ref  # noqa: E402
# The package re-exports the function under the module's own name, so fetch the module itself.
K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")

pytest.importorskip("triton")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA device, and TRITON_INTERPRET was set to something other than 1",
                allow_module_level=True)

ACTS = ("relu", "leaky_relu", "none")
TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in fp64."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def fmt_of(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "nchw"
    return "cl" if t.is_contiguous(memory_format=torch.channels_last) else "other"


def run_both(x, weight, bias, residual, act, gen, **overrides):
    """Forward + backward through Triton and the reference; returns (outs, grads) pairs."""
    results = []
    g = None
    x, weight, bias, residual = (t.to(DEVICE) if t is not None else None
                                 for t in (x, weight, bias, residual))
    for impl in ("triton", "ref"):
        leaves = [t.detach().clone().requires_grad_() if t is not None else None
                  for t in (x, weight, bias, residual)]
        # Clones keep the memory format of x / residual.
        with K.launch_overrides(**overrides):
            y = instance_norm_act(leaves[0], leaves[1], leaves[2], act=act, negative_slope=0.2,
                                  residual=leaves[3], impl=impl)
        if g is None:
            g = torch.randn(y.shape, generator=gen).to(DEVICE, y.dtype).contiguous(
                memory_format=torch.channels_last if fmt_of(x) == "cl" else torch.contiguous_format)
        y.backward(g)
        results.append((y, [t.grad if t is not None else None for t in leaves]))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("C", [3, 17, 64])
def test_triton_matches_reference(C, layout, dtype):
    # A fresh seed per case, from the parameters, so every case draws different data.
    gen = torch.Generator().manual_seed(1000 * C + 10 * (layout == "cl") + list(TOL).index(dtype))
    act = ACTS[(C + (layout == "cl")) % 3]  # every act meets both layouts over the C values
    N, H, W = 2, 7, 11  # H*W = 77: with block_p 16 and 2 splits the last tile holds 13 pixels
    x = (torch.randn(N, C, H, W, generator=gen) * 2 + 0.5).to(dtype)
    r = torch.randn(N, C, H, W, generator=gen).to(dtype)
    if layout == "cl":
        x, r = x.contiguous(memory_format=torch.channels_last), r.contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, generator=gen) * 0.5 + 1  # fp32 parameters, as under autocast
    b = torch.randn(C, generator=gen) * 0.5
    block_c = 8 if C > 3 else 4  # C=17 -> 3 channel blocks, the last with one channel
    (y, grads), (y_ref, grads_ref) = run_both(x, w, b, r, act, gen, block_p=16, block_c=block_c,
                                              splits=2)
    tol = TOL[dtype]
    assert y.dtype == dtype and fmt_of(y) == layout
    assert rel_err(y, y_ref) <= tol, f"forward act={act}"
    for name, gt, gr in zip(("x", "weight", "bias", "residual"), grads, grads_ref):
        assert gt is not None and gt.dtype == gr.dtype, name
        assert rel_err(gt, gr) <= tol, f"d{name} act={act}"
    assert fmt_of(grads[0]) == layout and fmt_of(grads[3]) == layout


@pytest.mark.parametrize("act", ACTS)
def test_triton_without_affine_or_residual(act):
    gen = torch.Generator().manual_seed(7 + ACTS.index(act))
    x = torch.randn(3, 5, 9, 5, generator=gen).contiguous(memory_format=torch.channels_last)
    (y, grads), (y_ref, grads_ref) = run_both(x, None, None, None, act, gen, block_p=8,
                                              block_c=4, splits=3)
    assert rel_err(y, y_ref) <= 1e-5 and rel_err(grads[0], grads_ref[0]) <= 1e-5


def test_automatic_launch_config_matches_reference():
    # No overrides: the config the kernels pick by themselves (one tile, one split on CPU).
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 13, 9, generator=gen)
    w, b = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
    (y, grads), (y_ref, grads_ref) = run_both(x, w, b, None, "leaky_relu", gen)
    assert rel_err(y, y_ref) <= 1e-5
    for gt, gr in zip(grads[:3], grads_ref[:3]):
        assert rel_err(gt, gr) <= 1e-5


def test_only_residual_needs_grad():
    # The ResNet block's second norm: act none, the residual's gradient is dy itself.
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 6, 6, generator=gen).to(DEVICE)
    r = torch.randn(2, 4, 6, 6, generator=gen).to(DEVICE).requires_grad_()
    y = instance_norm_act(x, act="none", residual=r, impl="triton")
    g = torch.randn(y.shape, generator=gen).to(DEVICE)
    y.backward(g)
    assert torch.equal(r.grad, g)


def test_reference_gradcheck_fp64():
    gen = torch.Generator().manual_seed(5)
    for act in ACTS:
        x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
        w = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
        b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
        r = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
        fn = lambda x, w, b, r: instance_norm_act_ref(x, w, b, act=act, residual=r)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, w, b, r), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("act", ACTS)
def test_reference_is_torch_instance_norm(act):
    # The specification itself against PyTorch's unfused layers, in fp64.
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)
    w = torch.randn(5, generator=gen, dtype=torch.float64)
    b = torch.randn(5, generator=gen, dtype=torch.float64)
    r = torch.randn(2, 5, 6, 7, generator=gen, dtype=torch.float64)
    want = F.instance_norm(x, weight=w, bias=b, eps=1e-5) + r
    want = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2), "none": lambda t: t}[act](want)
    got = instance_norm_act_ref(x, w, b, act=act, residual=r)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["triton", "ref"])
def test_constant_channel_is_finite(impl):
    x = torch.randn(2, 3, 5, 7, device=DEVICE)
    x[:, 1] = 4.25  # zero variance
    x.requires_grad_()
    b = torch.tensor([0.0, 0.3, 0.0], device=DEVICE, requires_grad=True)
    y = instance_norm_act(x, None, b, act="leaky_relu", impl=impl)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert torch.allclose(y[:, 1], torch.full_like(y[:, 1], 0.3))  # normalised to 0, + bias


def test_large_mean_small_std():
    # |mean| / std = 1e5: E[x^2] - E[x]^2 in fp32 would lose every digit of the variance.
    gen = torch.Generator().manual_seed(17)
    x = (1000 + 0.01 * torch.randn(2, 3, 9, 9, generator=gen)).to(DEVICE)  # fp32 storage
    with K.launch_overrides(block_p=16, splits=3):
        y = instance_norm_act(x, act="none", impl="triton")
    y64 = instance_norm_act_ref(x.double(), act="none")
    # fp32 can hold the mean only to ~6e-5, i.e. ~6e-3 of one std: the floor for any fp32 kernel.
    assert (y.double() - y64).abs().max().item() < 2e-2


def test_deterministic():
    gen = torch.Generator().manual_seed(19)
    x = torch.randn(2, 9, 8, 7, generator=gen).to(DEVICE).contiguous(memory_format=torch.channels_last)
    outs = []
    for _ in range(2):
        xl = x.clone().requires_grad_()
        with K.launch_overrides(block_p=8, block_c=4, splits=4):
            y = instance_norm_act(xl, act="relu", impl="triton")
            y.backward(torch.ones_like(y))
        outs.append((y, xl.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_non_dense_input():
    # A strided view is neither layout: it is copied to a dense one, results unchanged.
    gen = torch.Generator().manual_seed(23)
    base = torch.randn(2, 4, 10, 12, generator=gen).to(DEVICE)
    x = base[:, :, ::2, 1::2]
    y = instance_norm_act(x, act="relu", impl="triton")
    assert rel_err(y, instance_norm_act_ref(x, act="relu")) <= 1e-5



def test_strided_and_expanded_affine_parameters():
    # The kernels read weight[c] at w_ptr + c: a strided view read every other channel wrongly
    # (3.35 off), an expanded one read past its 1-element buffer. Gradients reach the base.
    gen = torch.Generator().manual_seed(29)
    x = torch.randn(2, 4, 5, 6, generator=gen).to(DEVICE)
    w_base = torch.randn(8, generator=gen).to(DEVICE).requires_grad_()
    b_one = torch.tensor([0.5], device=DEVICE, requires_grad=True)
    outs = []
    for impl in ("triton", "ref"):
        y = instance_norm_act(x, w_base[::2], b_one.expand(4), act="leaky_relu", impl=impl)
        outs.append((y, torch.autograd.grad(y, (w_base, b_one), torch.ones_like(y))))
    (y, (gw, gb)), (y_ref, (gw_ref, gb_ref)) = outs
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(gw, gw_ref) <= 1e-5 and rel_err(gb, gb_ref) <= 1e-5
    y = instance_norm_act(x, torch.tensor([2.0], device=DEVICE).expand(4), None, act="none",
                          impl="triton")
    assert rel_err(y, 2 * instance_norm_act_ref(x, act="none")) <= 1e-5


@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
@pytest.mark.parametrize("name", ["weight", "bias", "residual"])
def test_a_tensor_on_another_device_is_refused(name, impl):
    x = torch.randn(1, 2, 3, 3, device=DEVICE)
    other = torch.empty(x.shape if name == "residual" else (2,), device="meta")
    with pytest.raises(ValueError, match=f"{name} is on meta, x on {DEVICE.type}"):
        instance_norm_act(x, **{name: other}, impl=impl)


@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
@pytest.mark.parametrize("x_dtype, r_dtype", [(torch.bfloat16, torch.float32),
                                              (torch.float32, torch.bfloat16)],
                         ids=["bf16+fp32", "fp32+bf16"])
def test_y_has_xs_dtype_whatever_the_residuals(x_dtype, r_dtype, impl):
    # The native path ('auto' on CPU) added the residual by type promotion and returned fp32.
    gen = torch.Generator().manual_seed(31)
    x = torch.randn(2, 3, 5, 6, generator=gen).to(DEVICE, x_dtype)
    r = torch.randn(2, 3, 5, 6, generator=gen).to(DEVICE, r_dtype).requires_grad_()
    y = instance_norm_act(x, act="relu", residual=r, impl=impl)
    assert y.dtype == x_dtype
    assert rel_err(y, instance_norm_act_ref(x, act="relu", residual=r)) <= 1e-2
    (gr,) = torch.autograd.grad(y, (r,), torch.ones_like(y))
    assert gr.dtype == r_dtype


@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
@pytest.mark.parametrize("x_dtype, p_dtype", [(torch.float32, torch.float16),
                                              (torch.float32, torch.float64),
                                              (torch.bfloat16, torch.float32),
                                              (torch.float16, torch.bfloat16)],
                         ids=["fp32+fp16", "fp32+fp64", "bf16+fp32", "fp16+bf16"])
def test_affine_parameters_of_another_dtype(x_dtype, p_dtype, impl):
    # Every path computes the affine in fp32 from parameters of any float dtype; the native
    # one ('auto' on CPU) handed them to F.instance_norm as they came: "mixed dtype" errors.
    gen = torch.Generator().manual_seed(37)
    x = (torch.randn(2, 3, 5, 6, generator=gen) * 2 + 1).to(DEVICE, x_dtype)
    w = (torch.randn(3, generator=gen) * 0.5 + 1).to(DEVICE, p_dtype).requires_grad_()
    b = torch.randn(3, generator=gen).to(DEVICE, p_dtype).requires_grad_()
    y = instance_norm_act(x, w, b, act="leaky_relu", impl=impl)
    y_ref = instance_norm_act_ref(x, w, b, act="leaky_relu")
    assert y.dtype == x_dtype and rel_err(y, y_ref) <= TOL[x_dtype]
    gw, gb = torch.autograd.grad(y, (w, b), torch.ones_like(y))
    gw_ref, gb_ref = torch.autograd.grad(y_ref, (w, b), torch.ones_like(y_ref))
    assert gw.dtype == gb.dtype == p_dtype
    tol = max(TOL[x_dtype], TOL.get(p_dtype, 0))  # the gradients are rounded to p_dtype
    assert rel_err(gw, gw_ref) <= tol and rel_err(gb, gb_ref) <= tol


@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
def test_one_pixel_per_channel_is_refused_on_every_path(impl):
    # H*W = 1: the Triton and reference paths returned the bias (the norm of one pixel is 0,
    # whatever x), the native one raised; now all raise, as nn.InstanceNorm2d does.
    x = torch.randn(2, 4, 1, 1, device=DEVICE)
    with pytest.raises(ValueError, match="expected more than 1 spatial element"):
        instance_norm_act(x, None, torch.randn(4, device=DEVICE), act="none", impl=impl)
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        torch.nn.InstanceNorm2d(4)(x)  # the layer the fused one replaces
    for shape in ((2, 3, 1, 5), (2, 3, 5, 1)):  # one row or one column is fine
        x = torch.randn(shape, device=DEVICE)
        y = instance_norm_act(x, act="relu", impl=impl)
        assert rel_err(y, instance_norm_act_ref(x, act="relu")) <= 1e-5


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_nan_propagates_through_the_activation(act):
    # The fused ReLU was where(z > 0, z, 0), which turns NaN into 0; torch (and the reference)
    # keep it. A NaN pixel makes its whole channel NaN (its statistics are NaN), nothing else.
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    x[0, 0, 1, 1] = float("nan")
    y = instance_norm_act(x, act=act, impl="triton")
    y_ref = instance_norm_act_ref(x, act=act)
    assert torch.isnan(y[:, 0]).all() and torch.isnan(y_ref[:, 0]).all()
    assert rel_err(y[:, 1], y_ref[:, 1]) <= 1e-5


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_activation_mask_agrees_between_forward_and_backward(act):
    # The forward computed (x - mean) * (rstd * w) + b, the backward ((x - mean) * rstd) * w + b:
    # for z within rounding of 0 the two disagreed on its sign (11 of 64 pixels here), so the
    # gradient passed where y was 0 and vice versa. With dy = 1 the residual's gradient is
    # act'(z): 1 exactly where y > 0, as torch's rule for relu.
    torch.manual_seed(1)
    C = 64
    x = torch.randn(1, C, 8, 8)
    w = torch.rand(C) * 3 + 0.1
    xd = x.double()
    mean, var = xd.mean((2, 3)), xd.var((2, 3), unbiased=False)
    b = (-(xd[0, :, 0, 0] - mean[0]) / torch.sqrt(var[0] + 1e-5) * w.double()).float()  # z ~ 0
    x, w, b = x.to(DEVICE), w.to(DEVICE), b.to(DEVICE)
    r = torch.zeros_like(x, requires_grad=True)
    y = instance_norm_act(x, w, b, act=act, residual=r, impl="triton")
    y.backward(torch.ones_like(y))
    assert torch.equal(r.grad == 1, y > 0)


# -- dispatch ---------------------------------------------------------------------------------

def test_auto_on_cpu_is_reference_without_warning(monkeypatch):
    calls = []
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: calls.append(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        instance_norm_act(torch.randn(1, 2, 3, 3), impl="auto")
    assert calls == []


def test_triton_on_cpu_without_interpreter_warns_once_or_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(K, "_WARNED", set())
    x = torch.randn(1, 2, 3, 3)
    with pytest.warns(RuntimeWarning, match="TRITON_INTERPRET=1"):
        y = instance_norm_act(x, impl="triton")
    assert torch.equal(y, instance_norm_act_ref(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        instance_norm_act(x, impl="triton")  # said once only
    monkeypatch.setenv(K.STRICT_ENV, "1")
    with pytest.raises(RuntimeError, match=K.STRICT_ENV):
        instance_norm_act(x, impl="triton")


def test_fp64_falls_back_with_warning(monkeypatch):
    monkeypatch.setattr(K, "_WARNED", set())
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, device=DEVICE)
    with pytest.warns(RuntimeWarning, match="float64"):
        y = instance_norm_act(x, impl="triton")
    assert y.dtype == torch.float64


@pytest.mark.parametrize("kwargs, match", [
    (dict(impl="cuda"), "impl='cuda'"),
    (dict(act="gelu"), "act='gelu'"),
    (dict(weight=torch.ones(3)), r"weight has shape \(3,\) but x has C=2"),
    (dict(residual=torch.ones(1, 2, 3, 4)), "residual has shape"),
])
def test_errors_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        instance_norm_act(torch.randn(1, 2, 3, 3), **kwargs)


def test_interpreter_after_early_import():
    # pix2pixhd imported (and a norm run) before TRITON_INTERPRET is set: the kernels are
    # jitted lazily, so the interpreter still takes effect.
    code = (
        "import os, torch, pix2pixhd\n"
        "from pix2pixhd.kernels import instance_norm_act, instance_norm_act_ref\n"
        "x = torch.randn(2, 3, 5, 5)\n"
        "instance_norm_act(x)\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "import importlib\n"
        "K = importlib.import_module('pix2pixhd.kernels.instance_norm_act')\n"
        "called = []\n"
        "orig = K._fused_apply\n"
        "K._fused_apply = lambda *a, **k: called.append(a) or orig(*a, **k)\n"
        "y = instance_norm_act(x, impl='triton')\n"
        "assert called and (y - instance_norm_act_ref(x)).abs().max() < 1e-5\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "none"])
@pytest.mark.parametrize("cl", [False, True])
def test_auto_on_cpu_is_the_native_norm_and_matches_the_reference(act, cl, monkeypatch):
    """'auto' off the Triton path (CPU) runs PyTorch's native norm: same values and gradients
    as the specification, and the input's memory format."""
    calls = []
    native = F.instance_norm
    monkeypatch.setattr(F, "instance_norm", lambda *a, **k: calls.append(1) or native(*a, **k))
    torch.manual_seed(3)
    fmt = torch.channels_last if cl else torch.contiguous_format
    x = torch.randn(2, 5, 7, 9).contiguous(memory_format=fmt).requires_grad_()
    w, b = torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True)
    r = torch.randn(2, 5, 7, 9).contiguous(memory_format=fmt).requires_grad_()
    gy = torch.randn(2, 5, 7, 9)
    outs = []
    for impl in ("auto", "ref"):
        y = instance_norm_act(x, w, b, act=act, residual=r, impl=impl)
        grads = torch.autograd.grad(y, (x, w, b, r), gy)
        outs.append((y, grads))
    (ya, ga), (yr, gr) = outs
    assert calls == [1]  # 'auto' called the native norm once; 'ref' did not
    assert ya.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(ya, yr, rtol=1e-5, atol=1e-5)
    for a, b_ in zip(ga, gr):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-5)


def autograd_nodes(t: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [t.grad_fn], set()
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        names.add(type(f).__name__)
        stack += [g for g, _ in f.next_functions]
    return names


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cl", [False, True])
def test_native_path_backward_copies_nothing(act, cl):
    # F.instance_norm returns a view; an in-place activation on it would make autograd rebase the
    # view (CopySlices, AsStridedBackward0: clones and copies of every activation in the backward).
    fmt = torch.channels_last if cl else torch.contiguous_format
    x = torch.randn(2, 4, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    r = torch.randn(2, 4, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    y = instance_norm_act(x, act=act, residual=r, impl="auto")  # CPU: the native path
    nodes = autograd_nodes(y)
    assert "NativeBatchNormBackward0" in nodes
    # (Channels-last still shows CloneBackward0: instance_norm's own conversion to NCHW.)
    assert not nodes & {"CopySlices", "AsStridedBackward0"}, nodes
    gx, _ = torch.autograd.grad(y, (x, r), torch.ones_like(y))
    assert cl or gx.is_contiguous()  # NCHW: a dense gradient the conv's backward takes as is


# -- 'auto': measured, never trusted blind ----------------------------------------------------

class FakeTimer:
    """Stands in for the CUDA-event timer: fixed milliseconds per candidate, calls recorded.
    ``run=True`` also runs each candidate once, as the real timer does."""

    def __init__(self, ms: dict, run: bool = False):
        self.ms, self.run, self.calls = ms, run, []

    def __call__(self, name, fn, device):
        self.calls.append(name)
        if self.run:
            fn()
        return self.ms[name]


@pytest.fixture
def tuned(monkeypatch):
    """'auto' measures CPU tensors as it does CUDA ones, with a fresh chooser, no warning said
    yet, no strict mode and no disk file but the one a test names (``install(timer, path)``)."""
    monkeypatch.setattr(K, "_tunable", lambda x: True)
    monkeypatch.setattr(K, "_WARNED", set())
    monkeypatch.delenv(K.STRICT_ENV, raising=False)
    monkeypatch.delenv(K.AUTOTUNE_ENV, raising=False)

    def install(timer, path=None):
        chooser = K.AutoChooser(timer=timer, path=path)
        monkeypatch.setattr(K, "_AUTO", chooser)
        return chooser
    return install


def spy_fused(monkeypatch):
    calls = []
    orig = K._fused_apply
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: calls.append(a) or orig(*a, **k))
    return calls


def test_auto_measures_each_configuration_once_and_takes_the_faster_path(tuned, monkeypatch):
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    chooser = tuned(timer)
    fused = spy_fused(monkeypatch)
    x = torch.randn(2, 6, 5, 7, device=DEVICE)
    y = instance_norm_act(x, act="leaky_relu", impl="auto")
    assert timer.calls == ["triton", "native"] and len(fused) == 1  # measured, then Triton ran
    assert rel_err(y, instance_norm_act_ref(x, act="leaky_relu")) <= 1e-5
    instance_norm_act(torch.randn(2, 6, 5, 7, device=DEVICE), act="leaky_relu", impl="auto")
    assert timer.calls == ["triton", "native"] and len(fused) == 2  # same key: no new measurement
    # Each part of the key is its own configuration: shape, layout, act, dtype, residual, affine.
    # (Native measures faster from here on, which also keeps the slow interpreter out.)
    timer.ms = {"triton": 2.0, "native": 1.0}
    variants = [
        dict(x=torch.randn(2, 6, 5, 8, device=DEVICE)),
        dict(x=x.contiguous(memory_format=torch.channels_last)),
        dict(x=x, act="relu"),
        dict(x=x.to(torch.bfloat16)),
        dict(x=x, residual=torch.randn_like(x)),
        dict(x=x, weight=torch.ones(6, device=DEVICE), bias=torch.zeros(6, device=DEVICE)),
    ]
    for i, kw in enumerate(variants):
        kw.setdefault("act", "leaky_relu")
        instance_norm_act(kw.pop("x"), impl="auto", **kw)
        assert len(timer.calls) == 2 * (i + 2), kw
    assert len(fused) == 2 and len(chooser.choices) == len(variants) + 1
    assert [c["choice"] for c in chooser.choices.values()].count("triton") == 1


def test_auto_takes_the_native_path_when_it_measures_faster(tuned, monkeypatch):
    tuned(FakeTimer({"triton": 3.0, "native": 1.0}))
    fused = spy_fused(monkeypatch)
    native_calls = []
    native = F.instance_norm
    monkeypatch.setattr(F, "instance_norm", lambda *a, **k: native_calls.append(1) or native(*a, **k))
    x = torch.randn(1, 4, 6, 6, requires_grad=True, device=DEVICE)
    y = instance_norm_act(x, act="relu", impl="auto")
    y.sum().backward()
    assert fused == [] and native_calls == [1]
    assert x.grad is not None and rel_err(y, instance_norm_act_ref(x, act="relu")) <= 1e-5


def test_auto_measures_both_candidates_on_scratch_tensors_forward_and_backward(tuned):
    timer = FakeTimer({"triton": 1.0, "native": 2.0}, run=True)  # really runs both candidates
    chooser = tuned(timer)
    x = torch.randn(1, 3, 4, 5, requires_grad=True, device=DEVICE)
    r = torch.randn(1, 3, 4, 5, requires_grad=True, device=DEVICE)
    w = torch.randn(3, requires_grad=True, device=DEVICE)
    y = instance_norm_act(x, w, None, act="relu", residual=r, impl="auto")
    # The measurement ran backward on its own tensors: the caller's have no gradients yet.
    assert x.grad is None and r.grad is None and w.grad is None
    (key,) = chooser.choices
    assert key.endswith("|train") and "channels_last" not in key and "weight=float32" in key
    y_ref = instance_norm_act_ref(x, w, None, act="relu", residual=r)
    assert rel_err(y, y_ref) <= 1e-5
    with torch.no_grad():  # inference is its own configuration (forward only)
        instance_norm_act(x, w, None, act="relu", residual=r, impl="auto")
    assert len(chooser.choices) == 2 and any(k.endswith("|inference") for k in chooser.choices)
    with torch.inference_mode():  # measuring works inside inference_mode too
        instance_norm_act(torch.randn(1, 3, 4, 5, device=DEVICE), act="none", impl="auto")
    assert len(chooser.choices) == 3


def test_forced_impls_never_measure(tuned, monkeypatch):
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    tuned(timer)
    for impl in ("triton", "ref"):
        instance_norm_act(torch.randn(1, 3, 4, 4, device=DEVICE), impl=impl)
    assert timer.calls == []


def test_auto_without_a_device_does_not_measure(monkeypatch):
    # The real _tunable: CPU tensors are never measured ('auto' is the native path there).
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    monkeypatch.setattr(K, "_AUTO", K.AutoChooser(timer=timer))
    instance_norm_act(torch.randn(1, 3, 4, 4), impl="auto")
    assert timer.calls == []


def test_auto_choices_persist_on_disk(tuned, tmp_path, monkeypatch):
    path = tmp_path / "norm_choices.json"
    tuned(FakeTimer({"triton": 3.0, "native": 1.0}), path=path)
    x = torch.randn(1, 4, 5, 5, device=DEVICE)
    instance_norm_act(x, act="relu", impl="auto")
    stored = json.loads(path.read_text())
    (entry,) = stored.values()
    assert entry["choice"] == "native" and entry["ms"] == {"triton": 3.0, "native": 1.0}
    # A new process (a new chooser) reads the file through the environment variable and
    # measures nothing.
    monkeypatch.setenv(K.AUTOTUNE_ENV, str(path))
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    chooser = tuned(timer)
    instance_norm_act(x, act="relu", impl="auto")
    assert timer.calls == [] and chooser.choices == stored


def test_auto_disk_file_that_is_not_json_names_the_file_and_the_fix(tuned, tmp_path):
    path = tmp_path / "choices.json"
    path.write_text("{not json")
    tuned(FakeTimer({"triton": 1.0, "native": 2.0}), path=path)
    with pytest.raises(ValueError, match=rf"{K.AUTOTUNE_ENV}: .*choices.json.*delete it"):
        instance_norm_act(torch.randn(1, 2, 3, 3, device=DEVICE), impl="auto")


def test_auto_under_compile_uses_only_measured_choices(tuned, monkeypatch):
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    chooser = tuned(timer)
    x = torch.randn(1, 4, 5, 5, device=DEVICE)
    instance_norm_act(x, impl="auto")  # measured eagerly: Triton
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    args = (x, None, None, None, "relu", None, None)
    assert chooser.choose(*args) == "triton"  # the measured configuration keeps its choice
    assert chooser.choose(torch.randn(1, 4, 6, 6, device=DEVICE), *args[1:]) == "native"  # unmeasured: native
    assert len(timer.calls) == 2


# -- compiled, on a CUDA device, at the shapes of the real networks ------------------------------

# (name, [N, C, H, W], act, residual, affine): the pix2pixHD norms that move the most bytes.
NETWORK_LAYERS = [
    ("G1 conv7 1024x512", (1, 64, 512, 1024), "relu", False, False),
    ("G1 res norm2+x", (1, 1024, 32, 64), "none", True, False),
    ("D n1 2048x1024 real+fake", (2, 128, 257, 513), "leaky_relu", False, True),
    ("G2 conv7 2048x1024", (1, 32, 1024, 2048), "relu", False, False),  # 2M-pixel channels
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("layer", NETWORK_LAYERS, ids=[layer[0] for layer in NETWORK_LAYERS])
def test_compiled_kernels_match_reference_at_network_shapes(layer, layout, dtype):
    _, shape, act, has_res, affine = layer
    gen = torch.Generator().manual_seed(sum(shape))
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    x = (torch.randn(shape, generator=gen) * 2 + 0.5).to(dtype).contiguous(memory_format=fmt)
    r = torch.randn(shape, generator=gen).to(dtype).contiguous(memory_format=fmt) if has_res else None
    w = torch.randn(shape[1], generator=gen) * 0.5 + 1 if affine else None
    b = torch.randn(shape[1], generator=gen) * 0.5 if affine else None
    (y, grads), (y_ref, grads_ref) = run_both(x, w, b, r, act, gen)  # the automatic launch config
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    assert y.dtype == dtype and fmt_of(y) == layout
    assert rel_err(y, y_ref) <= tol
    for name, gt, gr in zip(("x", "weight", "bias", "residual"), grads, grads_ref):
        if gr is None:
            assert gt is None, name
            continue
        assert gt.dtype == gr.dtype and rel_err(gt, gr) <= tol, name
    assert fmt_of(grads[0]) == layout


def _old_interpreter_patch(tensor, scope):  # Triton 3.6's line, verbatim in what matters
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data))


def _new_interpreter_patch(tensor, scope):  # Triton 3.8's
    scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))


def test_old_interpreter_loop_bounds_are_fixed_only_where_needed(monkeypatch):
    """Triton 3.6's interpreter (on the GPU machines this project is lent) does int() of a
    1-element array for a tensor loop bound, which NumPy >= 2.4 refuses; the kernels module
    installs the squeeze there, and leaves a Triton that has it alone."""
    import numpy as np
    from triton.runtime import interpreter

    from pix2pixhd.kernels import _instance_norm_act_triton as KT

    class Scope:
        def __init__(self):
            self.attrs = {}

        def set_attr(self, obj, name, value):
            self.attrs[name] = value

    class Handle:
        data = np.array([5], dtype=np.int32)  # what program_id gives in the interpreter

    class T:
        handle = Handle()

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", _old_interpreter_patch)
    scope = Scope()
    _old_interpreter_patch(object, scope)
    if tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 4):  # the premise
        with pytest.raises(TypeError):
            scope.attrs["__index__"](T())
    KT._fix_old_interpreter_loop_bounds()
    fixed = interpreter._patch_lang_tensor
    assert fixed is not _old_interpreter_patch
    fixed(object, scope)
    assert scope.attrs["__index__"](T()) == 5
    KT._fix_old_interpreter_loop_bounds()  # twice: not wrapped again
    assert interpreter._patch_lang_tensor is fixed

    monkeypatch.setattr(interpreter, "_patch_lang_tensor", _new_interpreter_patch)
    KT._fix_old_interpreter_loop_bounds()
    assert interpreter._patch_lang_tensor is _new_interpreter_patch


@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
def test_an_empty_batch_launches_nothing_and_returns_an_empty_result(impl, monkeypatch):
    """N = 0 (a last batch that came out empty): on CUDA the split plan divided by zero; no
    kernel has anything to do, so none is launched, on any device."""
    calls = []
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: calls.append(a))
    x = torch.randn(0, 4, 5, 5, device=DEVICE, requires_grad=True)
    y = instance_norm_act(x, impl=impl)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape and calls == []


def test_device_guard_switches_to_the_tensors_gpu_only_when_it_is_not_current(monkeypatch):
    """Triton launches on the current CUDA device: a tensor on cuda:1 while cuda:0 is current
    switches for the call; the current device, CPU tensors and compile tracing do not."""
    entered = []

    class FakeX:
        def __init__(self, device):
            self.device = torch.device(device)
            self.is_cuda = self.device.type == "cuda"

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda d: entered.append(d) or contextlib.nullcontext())
    for dev in ("cuda:0", "cpu", "cuda:1"):
        with K._device_guard(FakeX(dev)):
            pass
    assert entered == [torch.device("cuda:1")]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with K._device_guard(FakeX("cuda:1")):
        pass
    assert entered == [torch.device("cuda:1")]


@pytest.mark.parametrize("act, res", [("none", False), ("none", True), ("relu", False)])
@pytest.mark.parametrize("n", [1, 2])
def test_native_path_gradient_is_right_for_channels_last_batch_of_one(act, res, n):
    """PyTorch's CPU instance norm returns wrong input gradients for a channels-last batch of one
    when the incoming gradient is channels-last (1.2-1.5 relative error on torch 2.13 and 2.11,
    channels with a mean well off zero: scripts/numerics_check.py --only norm), which act 'none'
    passes on, with or without the residual; 'auto' on CPU is that native path."""
    torch.manual_seed(0)
    shape = (n, 64, 16, 32)
    x0 = torch.randn(shape) * 3 + 5  # conv outputs are rarely centred
    g0 = torch.randn(shape)
    r0 = torch.randn(shape) if res else None  # the ResNet block's second norm

    def grad(x, g, r, impl):
        x = x.clone().requires_grad_()
        instance_norm_act(x, act=act, residual=r, impl=impl).backward(g)
        return x.grad

    cl = torch.channels_last
    ref = grad(x0.double(), g0.double(), r0.double() if res else None, "ref")
    got = grad(x0.contiguous(memory_format=cl), g0.contiguous(memory_format=cl),
               r0.contiguous(memory_format=cl) if res else None, "auto")
    assert rel_err(got, ref) <= 1e-5


def test_fused_function_traces_in_one_graph(monkeypatch):
    """torch.compile(fullgraph=True) through the Triton path: dispatch, _fused_apply and the
    autograd Function (forward and backward) in one graph. The Function was defined inside a
    cached function, a class definition Dynamo cannot trace ("Invalid call to __build_class__"):
    every fused norm broke the graph. Dynamo cannot trace the interpreter's launch itself, so the
    two launchers of the kernel module are replaced by the same math in PyTorch: this shows the
    Python around the kernels is traceable, not that Dynamo traces the compiled Triton launches
    (its user-defined Triton kernel support, on CUDA only)."""
    from pix2pixhd.kernels import _instance_norm_act_triton as KT

    def forward(x, weight, bias, residual, act, slope, eps, overrides):
        xf = x.float()
        mean = xf.mean((2, 3))
        rstd = torch.rsqrt(xf.var((2, 3), unbiased=False) + eps)
        y = instance_norm_act_ref(x, weight, bias, act=act, negative_slope=slope, eps=eps,
                                  residual=residual)
        return y, mean, rstd

    def backward(dy, x, weight, bias, residual, mean, rstd, act, slope, overrides, need_dx,
                 dw_dtype, db_dtype, dres_dtype):
        xhat = (x.float() - mean[..., None, None]) * rstd[..., None, None]
        w = weight.float()[:, None, None]
        g = dy.float()
        if act != "none":
            z = xhat * w + bias.float()[:, None, None] + residual.float()
            g = torch.where(z > 0, g, g * (0.0 if act == "relu" else slope))
        dx = rstd[..., None, None] * w * (g - g.mean((2, 3), keepdim=True)
                                          - xhat * (g * xhat).mean((2, 3), keepdim=True))
        return (dx.to(x.dtype), (g * xhat).sum((0, 2, 3)).to(dw_dtype),
                g.sum((0, 2, 3)).to(db_dtype), g.to(dres_dtype))

    monkeypatch.setattr(KT, "forward", forward)
    monkeypatch.setattr(KT, "backward", backward)
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(41)
    # On DEVICE: a CPU tensor on a CUDA machine (no interpreter there) takes the "needs CUDA or the
    # interpreter" fallback, whose warning breaks the graph.
    x, r = (torch.randn(2, 3, 4, 5, generator=gen).to(DEVICE).requires_grad_() for _ in range(2))
    w, b = (torch.randn(3, generator=gen).to(DEVICE).requires_grad_() for _ in range(2))

    def f(x, w, b, r):
        return instance_norm_act(x, w, b, act="leaky_relu", residual=r, impl="triton")

    graphs = []

    def backend(gm, example_inputs):  # aot_eager (forward and backward traced), graphs kept
        graphs.append(str(gm.graph))
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dynamo's notes on the lru_cache'd Triton probes
            y = torch.compile(f, backend=backend, fullgraph=True)(x, w, b, r)
            grads = torch.autograd.grad(y, (x, w, b, r), torch.ones_like(y))
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1 and "autograd_function_apply" in graphs[0]  # the Function, traced
    y_ref = instance_norm_act_ref(x, w, b, act="leaky_relu", residual=r)
    assert rel_err(y, y_ref) <= 1e-5
    for g, g_ref in zip(grads, torch.autograd.grad(y_ref, (x, w, b, r), torch.ones_like(y_ref))):
        assert rel_err(g, g_ref) <= 1e-5

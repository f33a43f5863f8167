"""instance_norm_act's negative_slope and eps reach every implementation: the reference, the Triton
kernels (the interpreter without a GPU, as in tests/test_kernels.py) and the native norm, forward
and backward, against nn.InstanceNorm2d(eps) + LeakyReLU(slope) in fp64. The other kernel tests
keep the defaults (0.2, 1e-5), where a constant in place of either would go unseen."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

import pytest  # noqa: E402

from pix2pixhd.kernels import instance_norm_act  # noqa: E402

K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")

pytest.importorskip("triton")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA device, and TRITON_INTERPRET was set to something other than 1",
                allow_module_level=True)

SLOPE, EPS = 0.1, 1e-3


def _impls():
    def call(impl, **overrides):
        def f(x, w, b, r):
            with K.launch_overrides(**overrides):
                return instance_norm_act(x, w, b, act="leaky_relu", negative_slope=SLOPE, eps=EPS,
                                         residual=r, impl=impl)
        return f

    def native(x, w, b, r):
        return K._instance_norm_act_eager(x, w, b, act="leaky_relu", negative_slope=SLOPE, eps=EPS,
                                          residual=r)
    return {"ref": call("ref"), "triton": call("triton"),
            "triton, 2 splits": call("triton", block_p=16, block_c=4, splits=2), "native": native}


@pytest.mark.parametrize("impl", list(_impls()))
def test_negative_slope_and_eps_reach_every_implementation(impl):
    gen = torch.Generator().manual_seed(17)
    C = 3
    # variance about 0.01 per channel: eps 1e-3 instead of 1e-5 changes y by about 5%
    x = torch.randn(2, C, 5, 7, generator=gen, dtype=torch.float64) * 0.1 + 0.3
    w = torch.randn(C, generator=gen, dtype=torch.float64) * 0.5 + 1
    b = torch.randn(C, generator=gen, dtype=torch.float64) * 0.5
    r = torch.randn(2, C, 5, 7, generator=gen, dtype=torch.float64)
    gy = torch.randn(2, C, 5, 7, generator=gen, dtype=torch.float64)

    norm = torch.nn.InstanceNorm2d(C, eps=EPS, affine=True).double()
    with torch.no_grad():
        norm.weight.copy_(w)
        norm.bias.copy_(b)
    leaves = [t.clone().requires_grad_() for t in (x, r)]
    want = torch.nn.LeakyReLU(SLOPE)(norm(leaves[0]) + leaves[1])
    assert (want < 0).float().mean() > 0.2   # the slope matters for many outputs
    want_grads = torch.autograd.grad(want, (leaves[0], norm.weight, norm.bias, leaves[1]), gy)

    args = [t.float().to(DEVICE).requires_grad_() for t in (x, w, b, r)]
    got = _impls()[impl](*args)
    got_grads = torch.autograd.grad(got, args, gy.float().to(DEVICE))
    torch.testing.assert_close(got.double().cpu(), want, rtol=1e-4, atol=1e-5)
    for name, g, wg in zip(("x", "weight", "bias", "residual"), got_grads, want_grads):
        torch.testing.assert_close(g.double().cpu(), wg, rtol=1e-4, atol=1e-4, msg=lambda m: f"d{name}: {m}")

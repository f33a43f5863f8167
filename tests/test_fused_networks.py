"""The networks with the fused norm+activation path against the plain, unfused PyTorch layers.

"Unfused" is built literally: every InstanceNormAct is swapped for nn.InstanceNorm2d and its
activation moved into the nn.Identity slot after it, which is NVIDIA's layout, so the
ResnetBlock falls back to ``x + conv_block(x)``. The fused model runs the Triton kernels through
the interpreter (TRITON_INTERPRET=1, set before triton or pix2pixhd is imported).
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pix2pixhd.layers import InstanceNormAct, set_norm_impl, unfuse  # noqa: E402
from pix2pixhd.networks import GlobalGenerator, MultiscaleDiscriminator  # noqa: E402

pytest.importorskip("triton")
K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")

# Whole channel blocks per program keep the interpreter to a handful of programs per layer.
FAST = dict(block_p=512, block_c=32)


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def compare(fused, plain, inputs, loss_fn, tol=1e-4):
    """Same outputs, input gradients and parameter gradients for the two models."""
    grads = []
    outs = []
    for model in (fused, plain):
        xs = [t.clone().requires_grad_() for t in inputs]
        with K.launch_overrides(**FAST):
            out = model(*xs)
            loss_fn(out).backward()
        outs.append(out)
        grads.append([x.grad for x in xs] + [p.grad for p in model.parameters()])
    return outs, grads


def assert_same(outs, grads, flatten, tol=1e-4):
    for a, b in zip(flatten(outs[0]), flatten(outs[1])):
        assert a.shape == b.shape and rel_err(a, b) <= tol
    assert len(grads[0]) == len(grads[1])
    scale = max(g.abs().max().item() for g in grads[1])
    for i, (a, b) in enumerate(zip(*grads)):
        assert a is not None and b is not None, i
        if b.abs().max().item() < 1e-4 * scale:
            # A conv bias right before an instance norm: its true gradient is exactly 0 (the
            # norm removes per-channel constants), both paths hold only rounding noise, which
            # has no relative error to speak of. Both must be that small.
            assert a.abs().max().item() < 1e-4 * scale, f"gradient {i} should vanish"
        else:
            assert rel_err(a, b) <= tol, f"gradient {i}"


def test_state_dict_keys_equal_unfused():
    for model in (GlobalGenerator(3, 3, ngf=8, n_downsampling=2, n_blocks=2),
                  MultiscaleDiscriminator(6, ndf=8, n_layers=2, num_D=2)):
        plain = unfuse(model)
        sd, sd_plain = model.state_dict(), plain.state_dict()
        assert list(sd) == list(sd_plain)
        # Checkpoints move both ways.
        model.load_state_dict(sd_plain, strict=True)
        plain.load_state_dict(sd, strict=True)


def test_affine_layer_matches_plain_layers():
    torch.manual_seed(0)
    layer = InstanceNormAct(6, act="leaky_relu", affine=True, impl="triton")
    with torch.no_grad():
        layer.weight.normal_(1, 0.3)
        layer.bias.normal_(0, 0.3)
    plain = nn.Sequential(nn.InstanceNorm2d(6, affine=True), nn.LeakyReLU(0.2))
    plain[0].load_state_dict(layer.state_dict())
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 6, 9, 7).contiguous(memory_format=torch.channels_last)
    outs, grads = compare(layer, plain, [x], lambda y: (y * y).sum())
    assert_same(outs, grads, lambda o: [o])
    assert outs[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_global_generator_fused_equals_unfused(layout):
    torch.manual_seed(1)
    model = GlobalGenerator(3, 3, ngf=8, n_downsampling=2, n_blocks=2)
    plain = unfuse(model)
    set_norm_impl(model, "triton")
    x = torch.randn(2, 3, 32, 32)
    if layout == "cl":
        model, plain = model.to(memory_format=torch.channels_last), plain.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randn(2, 3, 32, 32)
    outs, grads = compare(model, plain, [x], lambda y: ((y - target) ** 2).mean())
    assert_same(outs, grads, lambda o: [o])


def test_multiscale_discriminator_fused_equals_unfused():
    torch.manual_seed(2)
    model = MultiscaleDiscriminator(6, ndf=8, n_layers=2, num_D=2, get_interm_feat=True)
    plain = unfuse(model)
    set_norm_impl(model, "triton")
    x = torch.randn(2, 6, 32, 32)
    weights = {}

    def loss(feats):
        # A fixed random weighting of every intermediate feature, as feature matching uses them.
        total = 0
        for i, scale in enumerate(feats):
            for j, f in enumerate(scale):
                w = weights.setdefault((i, j), torch.randn(f.shape))
                total = total + (f * w).sum()
        return total

    outs, grads = compare(model, plain, [x], loss)
    assert_same(outs, grads, lambda o: [f for scale in o for f in scale])


def test_set_norm_impl_switches_path(monkeypatch):
    # 'ref' must never reach the Triton Function; 'triton' must.
    calls = []
    orig = K._fused_function
    monkeypatch.setattr(K, "_fused_function", lambda *a: calls.append(a) or orig(*a))
    model = GlobalGenerator(3, 3, ngf=8, n_downsampling=1, n_blocks=1)
    x = torch.randn(1, 3, 16, 16)
    with K.launch_overrides(**FAST):
        set_norm_impl(model, "ref")(x)
        assert calls == []
        set_norm_impl(model, "triton")(x)
    n_norms = sum(isinstance(m, InstanceNormAct) for m in model.modules())
    assert len(calls) == n_norms


def test_benchmark_layer_table_matches_networks():
    # benchmarks/kernels.py times a hand-written table of layer shapes; it must be the shapes
    # (and activations, and counts) the real networks feed their norms. Meta tensors: no compute.
    import collections

    from benchmarks import kernels as bench
    from pix2pixhd.networks import LocalEnhancer

    def norm_inputs(model, x):
        seen = collections.Counter()
        def hook(m, args, kwargs, out):
            residual = kwargs.get("residual", args[1] if len(args) > 1 else None)
            seen.update([(tuple(args[0].shape[1:]), m.act, residual is not None)])

        hooks = [m.register_forward_hook(hook, with_kwargs=True)
                 for m in model.modules() if isinstance(m, InstanceNormAct)]
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        return seen

    for (w, h), make_g, num_d in (((1024, 512), lambda: GlobalGenerator(3, 3, 64, 4, 9), 2),
                                  ((2048, 1024), lambda: LocalEnhancer(3, 3, 32, 4, 9, 1, 3), 3)):
        with torch.device("meta"):
            got = norm_inputs(make_g(), torch.empty(1, 3, h, w))
            d = MultiscaleDiscriminator(6, 64, 3, num_d)
            for _ in range(3):  # fake for G; fake and real for D
                got += norm_inputs(d, torch.empty(1, 6, h, w))
        want = collections.Counter()
        for layer in bench.pix2pixhd_layers(w, h):
            want[((layer.c, layer.h, layer.w), layer.act, layer.residual)] += layer.count
        assert got == want, (w, h, got - want, want - got)

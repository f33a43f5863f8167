"""The networks with the fused norm+activation path against the plain, unfused PyTorch layers.

"Unfused" is built literally: every InstanceNormAct is swapped for nn.InstanceNorm2d and its
activation moved into the nn.Identity slot after it, which is NVIDIA's layout, so the
ResnetBlock falls back to ``x + conv_block(x)``. Without a GPU the fused model runs the Triton
kernels through the interpreter (TRITON_INTERPRET=1, set before triton or pix2pixhd is imported);
with one they run compiled, and the ``cuda`` tests add the reference widths at 1024x512 and a
two-step Trainer run in bf16 + channels-last.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

import pytest  # noqa: E402
from torch import nn  # noqa: E402

from pix2pixhd.layers import InstanceNormAct, set_norm_impl, unfuse  # noqa: E402
from pix2pixhd.networks import GlobalGenerator, MultiscaleDiscriminator  # noqa: E402

pytest.importorskip("triton")
K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# Whole channel blocks per program keep the interpreter to a handful of programs per layer.
FAST = dict(block_p=512, block_c=32)


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def run(model, inputs, loss_fn):
    """(output, [input gradients..., parameter gradients...]) of one forward and backward."""
    model.to(DEVICE)
    xs = [t.to(DEVICE).clone().requires_grad_() for t in inputs]
    with K.launch_overrides(**FAST):
        out = model(*xs)
        loss_fn(out).backward()
    return out, [x.grad for x in xs] + [p.grad for p in model.parameters()]


def compare(fused, plain, inputs, loss_fn):
    """Outputs and gradients of the two models: ([out_fused, out_plain], [grads_f, grads_p])."""
    (out_f, g_f), (out_p, g_p) = run(fused, inputs, loss_fn), run(plain, inputs, loss_fn)
    return [out_f, out_p], [g_f, g_p]


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
    target = torch.randn(2, 3, 32, 32, device=DEVICE)
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
                w = weights.setdefault((i, j), torch.randn(f.shape, device=f.device))
                total = total + (f * w).sum()
        return total

    outs, grads = compare(model, plain, [x], loss)
    assert_same(outs, grads, lambda o: [f for scale in o for f in scale])


def test_set_norm_impl_switches_path(monkeypatch):
    # 'ref' must never reach the Triton Function; 'triton' must.
    calls = []
    orig = K._fused_apply
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: calls.append(a) or orig(*a, **k))
    model = GlobalGenerator(3, 3, ngf=8, n_downsampling=1, n_blocks=1).to(DEVICE)
    x = torch.randn(1, 3, 16, 16, device=DEVICE)
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


# -- compiled, on a CUDA device, at the reference widths ----------------------------------------

@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 convolutions without TF32 (cuDNN's default on CUDA), so fused and unfused differ only
    by the norms' rounding; every test of this module, the small ones included. (Set and restored
    by hand: monkeypatch cannot read torch.backends.cuda.matmul's flags on torch 2.13.)"""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32, matmul.allow_tf32 = False, False
    yield
    cudnn.allow_tf32, matmul.allow_tf32 = saved


def assert_as_close_as_unfused(fused, plain, inputs, loss_fn, flatten, factor=3.0, slack=1e-4):
    """At the reference widths a conv followed by a plain instance norm does not change with the
    scale of its weights, so its weight gradient is small beside fp32's rounding: the unfused fp32
    model alone is up to 0.19 (median 5.8e-3) from an fp64 run there, its output 1.2e-5 (NCHW,
    CPU, 256x128: scripts/numerics_check.py --only fp32; channels-last on CPU is far worse, from
    PyTorch's own norm at a batch of one: see _ContiguousGrad in the kernels). So each output and
    gradient of the fused model must be no farther from the fp64 unfused model than ``factor``
    times the fp32 unfused model's distance, plus ``slack``.
    """
    import copy
    plain64 = copy.deepcopy(plain).double()
    outs, grads = compare(fused, plain, inputs, loss_fn)
    out64, grads64 = run(plain64, [t.double() for t in inputs], loss_fn)
    scale = max(g.abs().max().item() for g in grads64)
    pairs = list(zip(flatten(outs[0]), flatten(outs[1]), flatten(out64)))
    pairs += list(zip(grads[0], grads[1], grads64))
    for i, (f, p, r) in enumerate(pairs):
        if r.abs().max().item() < 1e-6 * scale:  # a conv bias before a norm: truly zero
            assert f.abs().max().item() < 1e-4 * scale, f"tensor {i} should vanish"
            continue
        e_fused, e_plain = rel_err(f, r), rel_err(p, r)
        assert e_fused <= factor * e_plain + slack, (i, e_fused, e_plain)


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_reference_width_generator_fused_equals_unfused_on_cuda(layout, exact_fp32):
    # NVIDIA's global generator (ngf 64, 4 downsamplings, 9 blocks) at 1024x512, fp32.
    torch.manual_seed(3)
    model = set_norm_impl(GlobalGenerator(36, 3, 64, 4, 9), "triton")
    plain = unfuse(model)
    x = torch.randn(1, 36, 512, 1024)
    if layout == "cl":
        model, plain = (m.to(memory_format=torch.channels_last) for m in (model, plain))
        x = x.contiguous(memory_format=torch.channels_last)
    target = torch.randn(1, 3, 512, 1024, device=DEVICE)
    assert_as_close_as_unfused(model, plain, [x], lambda y: ((y - target) ** 2).mean(),
                               lambda o: [o])


@pytest.mark.cuda
def test_reference_width_discriminator_fused_equals_unfused_on_cuda(exact_fp32):
    # ndf 64, 3 layers, 2 scales, on the trainer's stacked real+fake batch of 2 at 1024x512.
    torch.manual_seed(4)
    model = set_norm_impl(MultiscaleDiscriminator(39, 64, 3, 2, get_interm_feat=True), "triton")
    plain = unfuse(model)
    x = torch.randn(2, 39, 512, 1024)
    weights = {}

    def loss(feats):
        return sum((f * weights.setdefault((i, j), torch.randn(f.shape, device=f.device))).sum()
                   for i, scale in enumerate(feats) for j, f in enumerate(scale))

    outs, grads = compare(model, plain, [x], loss)
    assert_same(outs, grads, lambda o: [f for scale in o for f in scale], tol=1e-3)


@pytest.mark.cuda
def test_reference_width_generator_bf16_channels_last_output_on_cuda():
    # Under bf16 autocast each path rounds after every layer: after 9 ResNet blocks either one
    # is 0.12-0.13 (relative, max) from the fp32 image (CPU, this shape: scripts/numerics_check.py
    # --only bf16). So the fused bf16 image must be about as close to the fp32 one as the
    # unfused bf16 image.
    torch.manual_seed(5)
    model = set_norm_impl(GlobalGenerator(36, 3, 64, 4, 9), "triton").to(DEVICE)
    plain = unfuse(model).to(DEVICE)
    model, plain = (m.to(memory_format=torch.channels_last) for m in (model, plain))
    x = torch.randn(1, 36, 512, 1024, device=DEVICE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y32 = plain(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y, y_plain = model(x), plain(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    e_fused, e_plain = rel_err(y.float(), y32), rel_err(y_plain.float(), y32)
    assert e_fused <= 1.5 * e_plain + 0.02, (e_fused, e_plain)


@pytest.mark.cuda
def test_trainer_two_steps_bf16_channels_last_fused_matches_reference_path_on_cuda(tmp_path,
                                                                                  monkeypatch):
    """Two Trainer steps (pix2pixHD global, reference widths, 256x512, bf16 + channels-last)
    through the Triton kernels and through the reference norms, from the same weights: the
    kernels are used, every loss is finite, and the two runs' losses agree to bf16 rounding."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.distributed import DistInfo
    from pix2pixhd.trainer import Trainer

    g = torch.Generator().manual_seed(0)
    batches = [{"label": torch.randint(0, 35, (1, 1, 256, 512), generator=g).to(torch.uint8),
                "inst": torch.randint(0, 8, (1, 1, 256, 512), generator=g).to(torch.int32),
                "image": torch.randint(0, 256, (1, 3, 256, 512), generator=g).to(torch.uint8)}
               for _ in range(2)]
    calls = []
    orig = K._fused_apply
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: calls.append(a) or orig(*a, **k))
    losses = {}
    for impl in ("triton", "ref"):
        cfg = TrainConfig(stage="global", name=f"two_steps_{impl}", checkpoints_dir=str(tmp_path),
                          label_nc=35, ngf=64, ndf=64, precision="bf16", channels_last=True,
                          norm_impl=impl, no_vgg_loss=True, no_tensorboard=True, no_html=True,
                          no_progress=True, device="cuda", seed=0).resolved()
        trainer = Trainer(cfg, DistInfo(device=torch.device("cuda")))
        n_before = len(calls)
        losses[impl] = [{k: float(v) for k, v in trainer.train_step(b).items()} for b in batches]
        assert (len(calls) > n_before) == (impl == "triton"), impl
    for step_t, step_r in zip(losses["triton"], losses["ref"]):
        assert step_t.keys() == step_r.keys()
        for k in step_t:
            assert torch.isfinite(torch.tensor(step_t[k])), k
            assert abs(step_t[k] - step_r[k]) <= 5e-2 * max(abs(step_r[k]), 1e-2), (k, step_t, step_r)

"""pix2pixHD networks: reference parameter counts and state_dict layout, shapes, gradients,
and a functional re-statement of the reference's forward computed from the state_dict alone."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pix2pixhd import (Encoder, GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator,
                       NLayerDiscriminator, count_parameters, instance_average)

# NVIDIA pix2pixHD's state_dict keys and shapes, copied from ../shared/reference so this test
# never skips; the copy is checked against the shared file wherever that exists.
REF = Path(__file__).resolve().parent / "data" / "pix2pixhd_state_dict_shapes.json"
SHARED_REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pix2pixhd_state_dict_shapes.json"


def meta(cls, *args, **kwargs):
    with torch.device("meta"):  # full-size models without allocating or initialising 730M weights
        return cls(*args, **kwargs)


@pytest.mark.parametrize("build, expected", [
    (lambda: meta(GlobalGenerator, 36, 3), 182_546_755),
    (lambda: meta(LocalEnhancer, 36, 3), 182_857_059),
    (lambda: meta(LocalEnhancer, 36, 3, n_local_enhancers=2), 731_346_659),
    (lambda: meta(NLayerDiscriminator, 39), 2_801_601),
    (lambda: meta(MultiscaleDiscriminator, 39, num_D=2), 5_603_202),
    (lambda: meta(MultiscaleDiscriminator, 39, num_D=3), 8_404_803),
    (lambda: meta(Encoder, 3, 3), 788_803),
])
def test_parameter_counts_match_reference(build, expected):
    assert count_parameters(build()) == expected


@pytest.mark.parametrize("name, build", [
    ("global_G_in36_ngf64_nd4_nb9", lambda: meta(GlobalGenerator, 36, 3)),
    ("local_G_in36_ngf32_nle1_nbl3", lambda: meta(LocalEnhancer, 36, 3)),
    ("multiscale_D_in39_ndf64_nl3_numD3_intermfeat", lambda: meta(MultiscaleDiscriminator, 39, num_D=3)),
    ("multiscale_D_in39_ndf64_nl3_numD2_intermfeat", lambda: meta(MultiscaleDiscriminator, 39, num_D=2)),
    ("encoder_in3_out3_nef16_nd4", lambda: meta(Encoder, 3, 3)),
])
def test_state_dict_keys_and_shapes_match_reference(name, build):
    ref = json.loads(REF.read_text())[name]
    ours = {k: list(v.shape) for k, v in build().state_dict().items()}
    assert ours == ref


@pytest.mark.skipif(not SHARED_REF.is_file(), reason=f"{SHARED_REF} absent (the copy in tests/data is used)")
def test_reference_shapes_copy_equals_the_shared_file():
    assert json.loads(REF.read_text()) == json.loads(SHARED_REF.read_text())


# ---- a functional statement of the reference forward, from the state_dict alone --------------
def _in_relu(x):
    return F.relu(F.instance_norm(x, eps=1e-5))


def _ref_resblock(sd, p, x):
    h = F.conv2d(F.pad(x, (1,) * 4, mode="reflect"), sd[p + "conv_block.1.weight"], sd[p + "conv_block.1.bias"])
    h = _in_relu(h)
    h = F.conv2d(F.pad(h, (1,) * 4, mode="reflect"), sd[p + "conv_block.5.weight"], sd[p + "conv_block.5.bias"])
    return x + F.instance_norm(h, eps=1e-5)


def _ref_global_trunk(sd, x, n_down, n_blocks, prefix="model."):
    """conv7, downsamplings, resblocks, upsamplings (no final conv); indices as the reference."""
    i = 1
    x = _in_relu(F.conv2d(F.pad(x, (3,) * 4, mode="reflect"), sd[f"{prefix}{i}.weight"], sd[f"{prefix}{i}.bias"]))
    for _ in range(n_down):
        i += 3
        x = _in_relu(F.conv2d(x, sd[f"{prefix}{i}.weight"], sd[f"{prefix}{i}.bias"], stride=2, padding=1))
    i += 3
    for _ in range(n_blocks):
        x = _ref_resblock(sd, f"{prefix}{i}.", x)
        i += 1
    for _ in range(n_down):
        x = _in_relu(F.conv_transpose2d(x, sd[f"{prefix}{i}.weight"], sd[f"{prefix}{i}.bias"],
                                        stride=2, padding=1, output_padding=1))
        i += 3
    return x, i


def _ref_global(sd, x, n_down, n_blocks):
    x, i = _ref_global_trunk(sd, x, n_down, n_blocks)
    i += 1
    return torch.tanh(F.conv2d(F.pad(x, (3,) * 4, mode="reflect"), sd[f"model.{i}.weight"], sd[f"model.{i}.bias"]))


def _ref_local(sd, x, n_down, n_blocks, n_le, n_blocks_local):
    pool = lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False)  # noqa: E731
    pyr = [x]
    for _ in range(n_le):
        pyr.append(pool(pyr[-1]))
    out, _ = _ref_global_trunk(sd, pyr[-1], n_down, n_blocks)
    for n in range(1, n_le + 1):
        a, b = f"model{n}_1.", f"model{n}_2."
        h = _in_relu(F.conv2d(F.pad(pyr[n_le - n], (3,) * 4, mode="reflect"), sd[a + "1.weight"], sd[a + "1.bias"]))
        h = _in_relu(F.conv2d(h, sd[a + "4.weight"], sd[a + "4.bias"], stride=2, padding=1))
        h = h + out
        for k in range(n_blocks_local):
            h = _ref_resblock(sd, f"{b}{k}.", h)
        k = n_blocks_local
        h = _in_relu(F.conv_transpose2d(h, sd[f"{b}{k}.weight"], sd[f"{b}{k}.bias"], stride=2, padding=1, output_padding=1))
        if n == n_le:
            k += 4
            h = torch.tanh(F.conv2d(F.pad(h, (3,) * 4, mode="reflect"), sd[f"{b}{k}.weight"], sd[f"{b}{k}.bias"]))
        out = h
    return out


def _ref_multiscale_d(sd, x, num_D, n_layers):
    results = []
    for i in range(num_D):
        s = num_D - 1 - i
        feats, h = [], x
        for j in range(n_layers + 2):
            w, b = sd[f"scale{s}_layer{j}.0.weight"], sd[f"scale{s}_layer{j}.0.bias"]
            stride = 2 if j < n_layers else 1
            h = F.conv2d(h, w, b, stride=stride, padding=2)
            if j == 0:
                h = F.leaky_relu(h, 0.2)
            elif j < n_layers + 1:
                h = F.leaky_relu(F.instance_norm(h, eps=1e-5), 0.2)
            feats.append(h)
        results.append(feats)
        x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    return results


def test_global_generator_matches_functional_reference():
    torch.manual_seed(0)
    g = GlobalGenerator(7, 3, ngf=8, n_downsampling=3, n_blocks=2).eval()
    x = torch.randn(2, 7, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(g(x), _ref_global(g.state_dict(), x, 3, 2), rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_le", [1, 2])
def test_local_enhancer_matches_functional_reference(n_le):
    torch.manual_seed(1)
    g = LocalEnhancer(5, 3, ngf=4, n_downsample_global=2, n_blocks_global=1,
                      n_local_enhancers=n_le, n_blocks_local=2).eval()
    x = torch.randn(2, 5, 48, 32)
    with torch.no_grad():
        torch.testing.assert_close(g(x), _ref_local(g.state_dict(), x, 2, 1, n_le, 2), rtol=0, atol=1e-5)


def test_multiscale_discriminator_matches_functional_reference():
    torch.manual_seed(2)
    d = MultiscaleDiscriminator(6, ndf=8, n_layers=3, num_D=3).eval()
    x = torch.randn(2, 6, 64, 48)
    with torch.no_grad():
        ours, ref = d(x), _ref_multiscale_d(d.state_dict(), x, 3, 3)
    assert len(ours) == 3 and all(len(s) == 5 for s in ours)
    for a, b in zip(ours, ref):
        for fa, fb in zip(a, b):
            torch.testing.assert_close(fa, fb, rtol=0, atol=1e-5)
    # finest scale first: its first feature has half the input's resolution (stride 2, pad 2: +1)
    assert ours[0][0].shape[-2:] == (33, 25) and ours[1][0].shape[-2:] == (17, 13)


def test_discriminator_without_intermediate_features_returns_logits_per_scale():
    d = MultiscaleDiscriminator(4, ndf=8, n_layers=2, num_D=2, get_interm_feat=False)
    out = d(torch.randn(1, 4, 32, 32))
    assert len(out) == 2 and all(len(s) == 1 and s[0].shape[1] == 1 for s in out)
    assert set(k.split(".")[0] for k in d.state_dict()) == {"layer0", "layer1"}


@pytest.mark.parametrize("h, w", [(48, 80), (32, 112)])
def test_generator_shapes_at_odd_multiples(h, w):
    g = GlobalGenerator(4, 3, ngf=4, n_downsampling=4, n_blocks=1)
    y = g(torch.randn(1, 4, h, w))
    assert y.shape == (1, 3, h, w) and y.abs().max() <= 1


def test_wrong_size_is_a_clear_error():
    g = LocalEnhancer(4, 3, ngf=4, n_downsample_global=2, n_blocks_global=1)
    with pytest.raises(ValueError, match=r"64x50 \(WxH\) is not divisible by 8.*64x56"):
        g(torch.randn(1, 4, 50, 64))


CONVS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
NORM_LAYERS = (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)  # the fused InstanceNormAct included


def convs_into_norms(model: torch.nn.Module, forward):
    """Run ``forward()`` and follow each conv's output tensor: ``{conv name: True when that very
    tensor is the input of a norm layer}`` (found by hooks, not from the layer list; False also
    when no layer takes it, e.g. the logits), and the output."""
    made, into, hooks = {}, {}, []

    def record(name):
        def hook(mod, inputs, out):
            made[id(out)] = (name, out)
            into.setdefault(name, set())
        return hook

    def consume(mod, inputs):
        for t in inputs:
            hit = made.get(id(t))
            if hit is not None and hit[1] is t:
                into.setdefault(hit[0], set()).add(isinstance(mod, NORM_LAYERS))

    for name, m in model.named_modules():
        if isinstance(m, CONVS):
            hooks.append(m.register_forward_hook(record(name)))
        if not list(m.children()):
            hooks.append(m.register_forward_pre_hook(consume))
    try:
        out = forward()
    finally:
        for h in hooks:
            h.remove()
    assert all(len(v) <= 1 for v in into.values()), into  # each conv feeds one kind of layer
    return {n: bool(v) and v.pop() for n, v in into.items()}, out


def assert_conv_bias_gradients(model: torch.nn.Module, into_norm: dict[str, bool]) -> None:
    """After a float64 backward: a conv bias right before a norm has a true gradient of exactly 0
    (the norm subtracts the per-channel mean, bias included: instance norm per sample, BatchNorm
    in training mode per batch), so it must be ~0 relative to its conv's weight gradient (float64
    rounding gives ~1e-16); any other conv bias must be clearly non-zero (>= 1e-3 of its weight's
    gradient). Every other parameter must get a non-zero gradient (a weight's true gradient is a
    sum of products, not a cancelling difference; without a norm, deep layers' gradients are
    ten orders of magnitude below the output layer's, so no common scale applies)."""
    convs = {n: m for n, m in model.named_modules() if isinstance(m, CONVS)}
    assert set(into_norm) == set(convs), "a conv's output was not followed"
    zero_biases = set()
    for name, conv in convs.items():
        w = conv.weight.grad.abs().max()
        assert w > 0, name
        if conv.bias is None:
            continue
        b = conv.bias.grad.abs().max()
        if into_norm[name]:
            assert b <= 1e-10 * w, f"{name}.bias feeds a norm: its gradient must be 0, got {b:.3g} (weight {w:.3g})"
            zero_biases.add(f"{name}.bias")
        else:
            assert b >= 1e-3 * w, f"{name}.bias: gradient {b:.3g} is not clearly non-zero (weight {w:.3g})"
    for name, p in model.named_parameters():
        if name not in zero_biases:
            assert p.grad.abs().max() > 0, name


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_conv_bias_gradients_are_zero_exactly_before_a_norm(norm):
    torch.manual_seed(0)
    f64 = torch.float64
    g = LocalEnhancer(4, 3, ngf=4, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1, norm=norm).to(f64)
    d = MultiscaleDiscriminator(7, ndf=4, n_layers=2, num_D=2, norm=norm).to(f64)
    e = Encoder(3, 3, ngf=4, n_downsampling=2, norm=norm).to(f64)
    x = torch.randn(2, 4, 32, 32, dtype=f64)
    inst = torch.randint(0, 3, (2, 1, 32, 32))
    g_into, fake = convs_into_norms(g, lambda: g(x))
    e_into, feat = convs_into_norms(e, lambda: e(torch.randn(2, 3, 32, 32, dtype=f64), inst))
    d_into, out = convs_into_norms(d, lambda: d(torch.cat([x, fake], 1)))
    (sum(f.mean() for s in out for f in s) + feat.square().mean()).backward()
    # Which convs do not feed a norm, by the reference's keys: the last conv before tanh (G, E),
    # D's first conv (LeakyReLU only) and its logits conv at each scale. With norm 'none', all.
    free = {"g": {"model1_2.5"}, "e": {"model.17"},
            "d": {"scale0_layer0.0", "scale0_layer3.0", "scale1_layer0.0", "scale1_layer3.0"}}
    for key, m, into in (("g", g, g_into), ("e", e, e_into), ("d", d, d_into)):
        assert {n for n, v in into.items() if not v} == (set(into) if norm == "none" else free[key]), key
        assert_conv_bias_gradients(m, into)


def test_init_matches_reference_distribution():
    torch.manual_seed(0)
    g = GlobalGenerator(8, 3, ngf=16, n_downsampling=2, n_blocks=2, norm="batch")
    convs = [m.weight for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    w = torch.cat([c.flatten() for c in convs])
    assert abs(w.mean()) < 2e-3 and abs(w.std() - 0.02) < 1e-3
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bw = torch.cat([b.weight for b in bns])
    assert abs(bw.mean() - 1) < 5e-3 and abs(bw.std() - 0.02) < 5e-3
    assert all(b.bias.abs().max() == 0 for b in bns)


def test_instance_norm_is_not_affine():
    g = GlobalGenerator(4, 3, ngf=4, n_downsampling=1, n_blocks=1)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and all(not m.affine for m in norms)


def test_instance_average_matches_naive_loop():
    torch.manual_seed(0)
    feats = torch.randn(3, 4, 9, 11)
    inst = torch.randint(0, 5, (3, 1, 9, 11)) * 1000 + torch.randint(0, 2, (3, 1, 9, 11))
    inst[1] = 7  # one sample with a single instance
    expected = feats.clone()
    for b in range(3):
        for i in inst[b].unique():
            m = inst[b, 0] == i
            for c in range(4):
                expected[b, c][m] = feats[b, c][m].mean()
    torch.testing.assert_close(instance_average(feats, inst), expected)
    cl = feats.contiguous(memory_format=torch.channels_last)
    assert instance_average(cl, inst).is_contiguous(memory_format=torch.channels_last)


def test_encoder_output_is_constant_within_instances():
    e = Encoder(3, 3, ngf=4, n_downsampling=2)
    inst = torch.zeros(1, 1, 16, 16, dtype=torch.int32)
    inst[..., 8:, :] = 1
    out = e(torch.randn(1, 3, 16, 16), inst)
    for i in (0, 1):
        vals = out[0, :, inst[0, 0] == i]
        assert torch.allclose(vals, vals[:, :1].expand_as(vals))

"""pix2pix networks: reference parameter counts and keys, shapes, receptive fields (analytic and
measured by back-propagation), gradients, the reference's skip quirk, no-skip encoder-decoder,
the dropout switch and the init."""
import pytest
import torch
from torch import nn

from tests.test_networks import assert_conv_bias_gradients, convs_into_norms

from pix2pixhd.layers import init_weights
from pix2pixhd.pix2pix_networks import (UNETS, PatchDiscriminator, PixelDiscriminator,
                                        UnetGenerator, UnetSkipConnectionBlock, define_D,
                                        define_G, receptive_field, set_dropout)


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def meta(fn, **kwargs):
    with torch.device("meta"):  # full-size models without allocating or initialising weights
        return fn(**kwargs)


@pytest.mark.parametrize("build, expected", [
    # The four numbers of issue 8 (the CycleGAN/pix2pix repo's models, 3 -> 3, BatchNorm).
    (lambda: meta(define_G, netG="unet_256"), 54_413_955),
    (lambda: meta(define_G, netG="unet_128"), 41_828_995),
    (lambda: meta(define_D, input_nc=6, netD="basic"), 2_768_705),
    (lambda: meta(define_D, input_nc=6, netD="pixel"), 9_024),
])
def test_parameter_counts_match_reference(build, expected):
    assert count(build()) == expected


def test_bias_follows_norm_like_the_reference():
    # Instance norm has no shift, so the convs before it keep their bias; batch norm's replace it.
    inst = meta(define_D, netD="basic", norm="instance")
    batch = meta(define_D, netD="basic", norm="batch")
    assert inst.model[2].bias is not None and batch.model[2].bias is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in inst.modules())
    # BN affine params (2*C) are gone, conv biases (C) come in: 2,768,705 - (128+256+512).
    assert count(inst) == 2_768_705 - (128 + 256 + 512)
    g_none = meta(define_G, netG="unet_256", norm="none")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in g_none.modules())


def test_state_dict_keys_are_the_reference_layout():
    g = meta(define_G, netG="unet_256")
    sd = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert sd["model.model.0.weight"] == (64, 3, 4, 4)                # outermost downconv, no bias
    assert "model.model.0.bias" not in sd
    assert sd["model.model.3.weight"] == (128, 3, 4, 4)               # ConvTranspose: [in, out, k, k]
    assert sd["model.model.3.bias"] == (3,)                            # output layer keeps its bias
    assert sd["model.model.1.model.1.weight"] == (128, 64, 4, 4)
    assert sd["model.model.1.model.2.running_var"] == (128,)
    assert sd["model.model.1.model.5.weight"] == (256, 64, 4, 4)
    inner = "model.model" + ".1.model.3.model.3.model.3.model.3.model.3.model" + ".3.model"
    assert sd[f"{inner}.1.weight"] == (512, 512, 4, 4)                # innermost down, no norm
    assert sd[f"{inner}.4.weight"] == (512,)                          # innermost upnorm
    assert not any(k.startswith(inner + ".3.model") for k in sd)     # 8 levels, no 9th
    d = meta(define_D, netD="basic")
    assert [k for k in d.state_dict() if k.endswith("weight")] == [
        "model.0.weight", "model.2.weight", "model.3.weight", "model.5.weight", "model.6.weight",
        "model.8.weight", "model.9.weight", "model.11.weight"]
    p = meta(define_D, netD="pixel")
    assert [k for k in p.state_dict() if not k.startswith("net.3")] == [
        "net.0.weight", "net.0.bias", "net.2.weight", "net.5.weight"]


def test_output_shapes_at_256_and_128():
    torch.manual_seed(0)
    g = define_G(netG="unet_256").eval()  # full size, once
    with torch.no_grad():
        y = g(torch.randn(1, 3, 256, 256))
    assert y.shape == (1, 3, 256, 256) and y.abs().max() <= 1
    g128 = define_G(netG="unet_128", ngf=8, output_nc=2)
    assert g128(torch.randn(2, 3, 128, 128)).shape == (2, 2, 128, 128)
    x = torch.randn(1, 6, 256, 256)
    expected = {("basic", 3): 30, ("n_layers", 1): 126, ("pixel", 3): 256, ("image", 3): 6}
    for (name, n), side in expected.items():
        d = define_D(netD=name, n_layers_D=n, ndf=8).eval()
        with torch.no_grad():
            assert d(x).shape == (1, 1, side, side), name
    with pytest.raises(ValueError, match="not divisible by 256") as e:
        g(torch.randn(1, 3, 128, 128))
    assert str(e.value).endswith(", or use unet_128 for smaller images")
    with pytest.raises(ValueError, match="not divisible by 128") as e:   # unet_128 itself: no such advice
        g128(torch.randn(1, 3, 100, 100))
    assert str(e.value).endswith("(e.g. 128x128)"), str(e.value)


def measured_receptive_field(d: nn.Module, size: int) -> int:
    """Extent of the input pixels the centre output pixel has a non-zero gradient for."""
    d = d.double().eval()
    x = torch.randn(1, 6, size, size, dtype=torch.float64, requires_grad=True)
    y = d(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3))).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2))).flatten()
    # The window must lie inside the image, else the border clips it and the measure is short.
    assert rows.min() > 0 and rows.max() < size - 1, "input too small for this receptive field"
    assert rows.max() - rows.min() == cols.max() - cols.min()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("netD, n_layers_D, size, expected", [
    ("pixel", 3, 16, 1), ("n_layers", 1, 48, 16), ("basic", 3, 160, 70), ("image", 3, 512, 286)])
def test_receptive_fields(netD, n_layers_D, size, expected):
    torch.manual_seed(0)
    d = define_D(netD=netD, n_layers_D=n_layers_D, ndf=4, norm="none")
    assert receptive_field(d) == expected
    assert measured_receptive_field(d, size) == expected


def test_receptive_field_rejects_generators():
    with pytest.raises(ValueError, match="not a plain conv chain"):
        receptive_field(meta(define_G, netG="unet_128"))


@pytest.mark.parametrize("netG", list(UNETS))
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generator_conv_biases_exist_and_get_gradients_as_the_norms_decide(netG, norm):
    """Convs before BatchNorm have no bias (the reference's use_bias); before instance norm they
    have one whose true gradient is exactly 0 (asserted ~0 in float64); the output upconv before
    tanh, the outermost downconv and the innermost downconv feed no norm: clearly non-zero."""
    torch.manual_seed(0)
    g = define_G(netG=netG, ngf=4, norm=norm).double()
    num_downs = UNETS[netG][0]
    x = torch.randn(1, 3, 2 ** num_downs, 2 ** num_downs, dtype=torch.float64)
    into, y = convs_into_norms(g, lambda: g(x))
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    innermost_down = "model.model.1" + ".model.3" * (num_downs - 2) + ".model.1"
    free = {"model.model.0", "model.model.3", innermost_down}
    assert {n for n, v in into.items() if not v} == (set(into) if norm == "none" else free)
    convs = dict(g.named_modules())
    biased = {n for n in into if convs[n].bias is not None}
    assert biased == ({"model.model.3"} if norm != "instance" else set(into))
    assert_conv_bias_gradients(g, into)


@pytest.mark.parametrize("netD, free", [
    ("basic", {"model.0", "model.11"}), ("n_layers", {"model.0", "model.5"}),
    ("pixel", {"net.0", "net.5"}), ("image", {"model.0", "model.17"})])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_discriminator_conv_biases_exist_and_get_gradients_as_the_norms_decide(netD, free, norm):
    torch.manual_seed(0)
    d = define_D(netD=netD, n_layers_D=1, ndf=4, norm=norm).double()
    into, y = convs_into_norms(d, lambda: d(torch.randn(2, 6, 96, 96, dtype=torch.float64)))
    y.square().mean().backward()
    assert {n for n, v in into.items() if not v} == (set(into) if norm == "none" else free)
    convs = dict(d.named_modules())
    assert all(convs[n].bias is None for n, v in into.items() if v and norm == "batch")
    assert all(convs[n].bias is not None for n, v in into.items() if v and norm == "instance")
    assert_conv_bias_gradients(d, into)


def _textbook_skip(g: UnetGenerator) -> None:
    """Rewire ``g`` so every skip carries the block's input x itself (not LeakyReLU(x))."""
    for m in g.modules():
        if isinstance(m, UnetSkipConnectionBlock) and not m.outermost:
            m.model[0].inplace = False
            m.forward = (lambda blk: lambda x: torch.cat([x, blk.model(x)], 1))(m)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_in_place_leaky_relu_skip_quirk_is_exactly_harmless(norm):
    """The reference's in-place down LeakyReLU makes the skip carry LeakyReLU(x); the parent's
    up-path ReLU follows the concat and ReLU(LeakyReLU(x)) == ReLU(x), so outputs and gradients
    equal those of a textbook skip -- bit for bit."""
    torch.manual_seed(0)
    g = define_G(netG="unet_128", ngf=8, norm=norm, use_dropout=False)
    x = torch.randn(2, 3, 128, 128)
    # The skip really is rewritten in place (this is the reference's behaviour we keep)...
    with torch.no_grad():
        h = g.model.model[0](x)                   # outermost downconv: the second block's input
        expected = nn.functional.leaky_relu(h, 0.2)
        out = g.model.model[1](h)
    torch.testing.assert_close(out[:, :8], expected, rtol=0, atol=0)
    torch.testing.assert_close(h, expected, rtol=0, atol=0)  # the block's input was rewritten
    # ... and the output and every gradient are the same as with a skip carrying x.
    outs, grads = [], []
    for rewire in (False, True):
        if rewire:
            _textbook_skip(g)
        g.zero_grad()
        y = g(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.clone() for p in g.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("netG, informative", [("unet_128", True), ("encoder_decoder_128", False)])
def test_encoder_decoder_has_no_skips(netG, informative):
    """Pin the bottleneck (innermost block's output) to a constant: without skips nothing of the
    input reaches the output any more, so two different inputs give the same image; with skips
    the U-Net still sees its input at every scale."""
    torch.manual_seed(0)
    g = define_G(netG=netG, ngf=8).eval()
    innermost = next(m for m in g.modules()
                     if isinstance(m, UnetSkipConnectionBlock) and m.model[0].__class__ is nn.LeakyReLU
                     and not any(isinstance(c, UnetSkipConnectionBlock) for c in m.model))
    pinned = None

    def pin(module, inputs, output):
        nonlocal pinned
        pinned = output.detach() if pinned is None else pinned
        return pinned

    innermost.register_forward_hook(pin)
    with torch.no_grad():
        a = g(torch.randn(1, 3, 128, 128))
        b = g(torch.randn(1, 3, 128, 128))
    assert ((a - b).abs().max() > 1e-3) == informative
    # The skip-less upconvs see half the channels, hence fewer parameters.
    assert (count(g) < count(meta(define_G, netG="unet_128", ngf=8))) == (not informative)


def test_dropout_switch():
    torch.manual_seed(0)
    assert set_dropout(meta(define_G, netG="unet_256"), True) == 3   # the three 512-ch blocks
    assert set_dropout(meta(define_G, netG="unet_128", use_dropout=False), True) == 0
    # Instance norm keeps activations O(1) in eval(); untrained BatchNorm running stats would
    # shrink them so far that dropout's effect on the output is ~1e-7.
    g = define_G(netG="unet_128", ngf=8, norm="instance").eval()
    assert set_dropout(g, True) == 2
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        on1, on2 = g(x), g(x)
        assert (on1 - on2).abs().max() > 1e-4       # stochastic although the model is in eval()
        set_dropout(g, False)
        torch.testing.assert_close(g(x), g(x), rtol=0, atol=0)
    assert not g.training and all(not m.training for m in g.modules() if isinstance(m, nn.Dropout))


def test_init_is_normal_002():
    torch.manual_seed(0)
    d = define_D(netD="basic")                             # 2.7M parameters, BatchNorm
    w = d.model[8].weight                                  # 256 -> 512 conv, 2M weights
    assert abs(w.std().item() - 0.02) < 5e-4 and abs(w.mean().item()) < 5e-4
    assert torch.all(d.model[0].bias == 0)
    bn = d.model[9]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and torch.all(bn.bias == 0)
    with pytest.raises(ValueError, match="init_type='uniform'"):
        init_weights(d, "uniform")


def test_unknown_names_raise_with_the_choices():
    with pytest.raises(ValueError, match="unet_256"):
        define_G(netG="unet_512")
    with pytest.raises(ValueError, match="pixel"):
        define_D(netD="multiscale")
    with pytest.raises(ValueError, match="norm='group'"):
        define_D(norm="group")
    assert isinstance(meta(define_D, netD="image"), PatchDiscriminator)
    assert isinstance(meta(define_D, netD="pixel"), PixelDiscriminator)


@pytest.mark.parametrize("netG", ["unet_128", "resnet_6blocks"])
def test_dropout_masks_do_not_depend_on_the_memory_layout(netG):
    """F.dropout draws its mask in memory order: the same weights, input and RNG state gave a
    channels-last U-Net outputs up to 0.23 away from the NCHW one in train mode (another mask),
    so --channels_last changed pix2pix's training, not only its rounding."""
    from pix2pixhd.pix2pix_networks import define_G
    torch.manual_seed(0)
    g = define_G(ngf=8, netG=netG, norm="instance", use_dropout=True)
    x = torch.randn(2, 3, 128, 128)
    outs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        outs.append(g.to(memory_format=fmt)(x.contiguous(memory_format=fmt)))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    assert outs[1].is_contiguous(memory_format=torch.channels_last)

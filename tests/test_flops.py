"""The analytic MAC model: the issue's four reference figures, the conv formulas against PyTorch's
own FLOP counter on real (tiny) networks, and what a training step's FLOPs include."""
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pix2pixhd import flops
from pix2pixhd.config import TrainConfig
from pix2pixhd.losses import VGG19Features
from pix2pixhd.networks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator


def cfg(**kw):
    return TrainConfig(**kw).resolved()


def test_reference_figures():
    # NVIDIA's defaults: 35 labels + instance boundary = 36 input channels.
    assert flops.generator_macs(cfg(stage="global"), 1024, 512) / 1e9 == pytest.approx(489.3, abs=0.05)
    local = cfg(stage="local", ngf=32)
    assert flops.generator_macs(local, 2048, 1024) / 1e9 == pytest.approx(747.9, abs=0.05)
    assert local.num_D == 3
    assert flops.discriminator_macs(local, 2048, 1024) / 1e9 == pytest.approx(166.6, abs=0.05)
    # The issue gives VGG19 to relu5_1 as 757 (no decimal); the exact count is 757.39.
    assert flops.vgg19_macs(2048, 1024) / 1e9 == pytest.approx(757.0, abs=0.5)


def test_batch_scales_linearly():
    c = cfg(stage="global", ngf=8, n_blocks_global=1)
    assert flops.generator_macs(c, 64, 32, batch=3) == 3 * flops.generator_macs(c, 64, 32)


@pytest.mark.parametrize("make,shape", [
    (lambda: GlobalGenerator(6, 3, ngf=4, n_downsampling=2, n_blocks=1), (2, 6, 36, 20)),
    (lambda: LocalEnhancer(6, 3, ngf=4, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1), (1, 6, 40, 24)),
    (lambda: MultiscaleDiscriminator(9, ndf=4, n_layers=2, num_D=3), (2, 9, 37, 29)),  # odd sizes, padding 2
    (lambda: VGG19Features(), (1, 3, 32, 48)),
])
def test_matches_torch_flop_counter_on_real_networks(make, shape):
    # An independent count: PyTorch's FlopCounterMode on a real forward (it counts 2 FLOPs per MAC
    # for convolution and transposed convolution).
    torch.manual_seed(0)
    model = make()
    x = torch.randn(shape)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    conv_flops = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(k))
    assert conv_flops > 0
    assert 2 * flops.count_macs(model, x) == conv_flops


def test_conv_formulas_by_hand():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)           # 8x6 -> 4x3
    convt = nn.ConvTranspose2d(5, 2, 3, stride=2, padding=1, output_padding=1)  # 4x3 -> 8x6
    model = nn.Sequential(conv, convt)
    x = torch.randn(2, 3, 8, 6)
    recs = flops.conv_records(model, x)
    assert [r.macs for r in recs] == [2 * 5 * 4 * 3 * 3 * 9, 2 * 5 * 4 * 3 * 2 * 9]
    assert [r.input_grad for r in recs] == [False, True]  # the input carries no grad, the hidden does


def test_train_step_flops_counts_the_needed_backward():
    c = cfg(stage="global", ngf=8, ndf=8, n_blocks_global=1)
    w, h = 64, 32
    s = flops.train_step_flops(c, w, h)
    g, d, v = (s.forward_macs[k] for k in ("G", "D", "VGG"))
    assert (g, d, v) == (flops.generator_macs(c, w, h), flops.discriminator_macs(c, w, h), flops.vgg19_macs(w, h))
    # G: forward + dW + dX, less dX of the first conv (its input, the encoded labels, needs none)
    with torch.device("meta"):
        G = GlobalGenerator(36, 3, ngf=8, n_blocks=1)
    first = flops.conv_records(G, torch.empty(1, 36, h, w, device="meta"))[0].macs
    assert s.flops["G"] == 2 * (3 * g - first)
    # VGG: fake forward + dX everywhere (no dW: frozen), real forward only
    assert s.flops["VGG"] == 2 * (3 * v)
    # D: two D-step passes (fwd + dW + dX, less dX of each scale's first conv: the inputs carry no
    # grad) + the G pass on the fake (fwd + dX everywhere, no dW: D is frozen there)
    with torch.device("meta"):
        D = MultiscaleDiscriminator(39, ndf=8, n_layers=3, num_D=2)
    recs = flops.conv_records(D, torch.empty(1, 39, h, w, device="meta"))
    firsts = sum(r.macs for r in recs if not r.input_grad)
    assert len([r for r in recs if not r.input_grad]) == 2
    assert s.flops["D"] == 2 * (2 * (3 * d - firsts) + 2 * d)
    assert s.total == sum(s.flops.values())


def test_peak_table():
    assert flops.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert flops.peak_tflops("AMD EPYC", "fp32") is None


def test_cli_prints_the_reference_table(capsys):
    assert flops.main([]) == 0
    out = capsys.readouterr().out
    for figure in ("489.3", "747.9", "166.6", "757.4"):
        assert figure in out

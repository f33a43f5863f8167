"""Tests that kill mutants which survived mutation testing of the core math modules (losses,
encoding, image_pool, diffaug, networks, pix2pix_networks, layers; review MUT7).

Each test checks behaviour against an independent statement of the math (the DiffAugment paper's
ranges and formulas, the pix2pixHD and pix2pix references' layer widths and output layer, a hand
computation), never against the implementation's own output; a one-line comment names the
mutant it kills. Tiny tensors, one thread, deterministic.
"""
import pytest
import torch
from torch import nn

from pix2pixhd import diffaug
from pix2pixhd.losses import VGGLoss
from pix2pixhd.networks import MultiscaleDiscriminator, NLayerDiscriminator, instance_average
from pix2pixhd.pix2pix_networks import UnetGenerator

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


class _TinyFeatures(nn.Module):
    """A stand-in for VGG19Features: five feature maps of one small conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return [h * (k + 1) for k in range(5)]


# kills: losses.py VGGLoss.forward, `with torch.no_grad():` around the real image's features dropped
def test_vgg_loss_builds_no_graph_through_the_real_image():
    torch.manual_seed(0)
    loss_fn = VGGLoss(vgg=_TinyFeatures())
    fake = torch.rand(1, 3, 8, 8, requires_grad=True)
    real = torch.rand(1, 3, 8, 8, requires_grad=True)   # e.g. another network's output
    loss = loss_fn(fake, real)
    loss.backward()
    # "real features carry no graph": the gradient reaches G's fake only, never the real input
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None


# kills: diffaug.py draw, brightness=u[0] (U[0, 1)) instead of u[0] - 0.5;
#        and contrast=u[2] (U[0, 1)) instead of u[2] + 0.5
def test_colour_factors_span_the_papers_ranges():
    # Zhao et al. 2020 (DiffAugment): brightness + U[-0.5, 0.5), saturation x U[0, 2),
    # contrast x U[0.5, 1.5), one draw per sample
    p = diffaug.draw("color", 4000, 8, 8, generator=torch.Generator().manual_seed(0))
    for name, lo, hi in (("brightness", -0.5, 0.5), ("saturation", 0.0, 2.0), ("contrast", 0.5, 1.5)):
        t = getattr(p, name)
        assert t.shape == (4000,)
        assert lo <= float(t.min()) < lo + 0.01, name      # reaches down to the bottom of its range
        assert hi - 0.01 < float(t.max()) < hi, name       # and up to the top, never past it


# kills: diffaug.py _color, the saturation mean over (C, H, W) instead of the per-pixel channel mean
#        (and the contrast mean over channels only instead of the per-sample mean)
def test_colour_jitter_is_the_papers_formula_on_a_hand_case():
    img = torch.tensor([[[[0.2, -0.6]], [[0.4, 0.0]], [[0.6, 0.3]]]], dtype=torch.float64)  # [1, 3, 1, 2]
    p = diffaug.AugmentParams(("color",), 1, 1, 2, brightness=torch.tensor([0.1]),
                              saturation=torch.tensor([0.5]), contrast=torch.tensor([1.2]))
    # by hand: + 0.1 -> pixels (0.3, 0.5, 0.7), (-0.5, 0.1, 0.4); saturation around each pixel's
    # channel mean (0.5; 0.0), x 0.5 -> (0.4, 0.5, 0.6), (-0.25, 0.05, 0.2); contrast around the
    # sample mean 1.5 / 6 = 0.25, x 1.2 -> (0.43, 0.55, 0.67), (-0.35, 0.01, 0.19)
    expected = torch.tensor([[[[0.43, -0.35]], [[0.55, 0.01]], [[0.67, 0.19]]]], dtype=torch.float64)
    torch.testing.assert_close(diffaug.augment(img, p, image_channels=3), expected)


# kills: diffaug.py _per_sample, t.repeat_interleave(reps) instead of t.repeat(reps) (the colour
#        factors of stacked copies [real; fake] paired with the wrong samples)
def test_colour_factors_repeat_for_stacked_copies_of_the_batch():
    p = diffaug.AugmentParams(("color",), 2, 2, 2, brightness=torch.tensor([0.1, -0.3]),
                              saturation=torch.ones(2), contrast=torch.ones(2))
    x = torch.zeros(4, 3, 2, 2)   # torch.cat([real_in, fake_in], 0): samples 0, 1, 0, 1
    y = diffaug.augment(x, p, image_channels=3)
    # zero image + brightness b; saturation and contrast 1 leave it: sample k gets b[k % 2]
    expected = torch.tensor([0.1, -0.3, 0.1, -0.3]).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    torch.testing.assert_close(y, expected)


def _conv_widths(module):
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


# kills: networks.py NLayerDiscriminator, nf = nf * 2 instead of min(nf * 2, 512) in the
#        stride-2 layers
def test_patchgan_widths_are_capped_at_512_as_the_reference():
    # NVIDIA pix2pixHD NLayerDiscriminator: nf = min(nf * 2, 512) for every conv after the first
    d = NLayerDiscriminator(3, ndf=64, n_layers=5)
    ms = MultiscaleDiscriminator(3, ndf=64, n_layers=5, num_D=2)
    assert _conv_widths(d) == [64, 128, 256, 512, 512, 512, 1]
    assert _conv_widths(ms) == [64, 128, 256, 512, 512, 512, 1] * 2


# kills: networks.py instance_average, the per-sample key stride (ids.max() - ids.min()) instead
#        of (ids.max() - ids.min() + 1): sample 0's top id and sample 1's bottom id share a key
def test_instance_average_never_merges_instances_of_different_samples():
    feats = torch.tensor([1., 3., 5., 7., 10., 30., 50., 70.]).view(2, 1, 1, 4)
    inst = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]).view(2, 1, 1, 4)
    # by hand, each sample alone: ids 0 -> mean(1, 3) = 2, 1 -> mean(5, 7) = 6; 20 and 60
    expected = torch.tensor([2., 2., 6., 6., 20., 20., 60., 60.]).view(2, 1, 1, 4)
    torch.testing.assert_close(instance_average(feats, inst), expected)


# kills: pix2pix_networks.py UnetSkipConnectionBlock outermost, nn.Identity() in place of nn.Tanh()
def test_unet_output_layer_is_tanh():
    # pix2pix's U-Net ends in upconv -> tanh: with the last upconv's weight 0 and bias 3 every
    # output pixel is tanh(3), whatever the input
    torch.manual_seed(0)
    g = UnetGenerator(3, 3, num_downs=5, ngf=2, norm="batch").eval()
    upconv = g.model.model[3]
    assert isinstance(upconv, nn.ConvTranspose2d) and upconv.out_channels == 3
    with torch.no_grad():
        upconv.weight.zero_()
        upconv.bias.fill_(3.0)
        out = g(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(out, torch.full((1, 3, 32, 32), 0.9950547536867305))

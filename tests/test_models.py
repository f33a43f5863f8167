"""Models in one place: pix2pixhd.models builds every network from a resolved TrainConfig, all
networks share one norm factory (pix2pix's instance norms are the fused InstanceNormAct, with the
plain layout's state_dict keys and outputs) and one init, and no inference module reaches into
the trainer for its builders."""
from pathlib import Path

import pytest
import torch
from torch import nn

from pix2pixhd import models
from pix2pixhd.config import TrainConfig
from pix2pixhd.layers import InstanceNormAct, set_norm_impl, unfuse
from pix2pixhd.pix2pix_networks import define_D, define_G

REPO = Path(__file__).resolve().parents[1]


def test_builders_make_each_models_networks():
    hd = TrainConfig(label_nc=5, ngf=4, ndf=4, n_downsample_global=2, n_blocks_global=1,
                     instance_feat=True, nef=4, n_downsample_E=2).resolved()
    g, d, e = models.build_generator(hd), models.build_discriminator(hd), models.build_encoder(hd)
    assert models.generator_input_nc(hd) == 5 + 1 + 3 and g.model[1].in_channels == 9
    assert models.discriminator_input_nc(hd) == 5 + 1 + 3 and d.scale0_layer0[0].in_channels == 9
    assert type(g).__name__ == "GlobalGenerator" and e is not None
    p2p = TrainConfig(model="pix2pix", netG_pix2pix="unet_128", ngf=4, ndf=4, norm="instance",
                      norm_impl="ref").resolved()
    g, d = models.build_generator(p2p), models.build_discriminator(p2p)
    assert type(g).__name__ == "UnetGenerator" and d.model[0].in_channels == 6
    assert models.build_encoder(p2p) is None
    # the fused norms follow --norm_impl, as pix2pixHD's do
    assert {m.impl for m in g.modules() if isinstance(m, InstanceNormAct)} == {"ref"}
    with pytest.raises(ValueError, match=r"resolved\(\)"):
        models.build_generator(TrainConfig(model="pix2pix"))


def assert_same_forward_and_backward(net: nn.Module, plain: nn.Module, x: torch.Tensor) -> None:
    """net and plain (its unfused layout) give the same output, input gradient and parameter
    gradients on x."""
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = net(xa), plain(xb)
    torch.testing.assert_close(ya, yb)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for (n, a), b in zip(net.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


@pytest.mark.parametrize("build, shape", [
    (lambda: define_G(3, 3, 4, "unet_128", "instance", use_dropout=False), (2, 3, 128, 128)),
    (lambda: define_D(6, 4, "basic", 3, "instance"), (2, 6, 40, 36)),
    (lambda: define_D(6, 4, "pixel", 3, "instance"), (2, 6, 9, 11)),
])
def test_pix2pix_instance_norm_is_fused_with_the_plain_layouts_keys_and_outputs(build, shape):
    torch.manual_seed(0)
    net = set_norm_impl(build(), "ref")
    assert any(isinstance(m, InstanceNormAct) for m in net.modules())
    plain = unfuse(net)  # the reference's layout: nn.InstanceNorm2d then its activation module
    assert not any(isinstance(m, InstanceNormAct) for m in plain.modules())
    assert any(type(m) is nn.InstanceNorm2d for m in plain.modules())
    assert list(net.state_dict()) == list(plain.state_dict())
    # a checkpoint of the plain layout (the reference's) loads into the fused one, strictly
    net.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(*shape, dtype=torch.float64)
    net, plain = net.double(), plain.double()
    assert_same_forward_and_backward(net, plain, x)


def test_one_init_for_every_network():
    # pix2pix zeroes conv biases (its reference), pix2pixHD keeps PyTorch's (NVIDIA's)
    torch.manual_seed(0)
    p2p = define_D(6, 8, "basic", 3, "instance")
    hd = models.build_discriminator(TrainConfig(ndf=8, num_D=1, label_nc=2).resolved())
    assert all(torch.all(m.bias == 0) for m in p2p.modules() if isinstance(m, nn.Conv2d))
    assert all(not torch.all(m.bias == 0) for m in hd.modules() if isinstance(m, nn.Conv2d))
    import pix2pixhd.networks
    import pix2pixhd.pix2pix_networks
    for mod in (pix2pixhd.networks, pix2pixhd.pix2pix_networks):
        src = Path(mod.__file__).read_text()
        assert "def init_weights" not in src and "def weights_init" not in src and "NORMS = " not in src


def test_inference_modules_import_models_not_the_trainer():
    for name in ("synthesis", "export", "features", "flops"):
        src = (REPO / "pix2pixhd" / f"{name}.py").read_text()
        assert "from pix2pixhd.trainer" not in src, name

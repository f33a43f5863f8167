"""CycleGAN's networks as the reference builds them: parameter counts, state_dict keys and shapes
derived by hand from junyanz/pytorch-CycleGAN-and-pix2pix ``models/networks.py`` (not from our
code), the reference's checkpoint files (``latest_net_G_A.pth``, ``latest_net_D_A.pth``, and the
legacy ones with instance-norm running statistics) loading, the fused instance norm + ReLU and
residual path equal to the plain layout, the conv biases the reference's ``use_bias`` decides,
the per-model defaults, and which generator each direction names."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pix2pixhd import models
from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.config import TrainConfig, model_defaults
from pix2pixhd.layers import InstanceNormAct, set_norm_impl, unfuse
from pix2pixhd.pix2pix_networks import ResnetGenerator, define_D, define_G
from tests.test_models import assert_same_forward_and_backward

REPO = Path(__file__).resolve().parents[1]


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def cyclegan_cfg(**kw) -> TrainConfig:
    return TrainConfig(model="cyclegan", **kw).resolved()


def test_parameter_counts_are_the_references():
    # ngf = ndf = 64, RGB <-> RGB, instance norm: the counts the reference prints
    with torch.device("meta"):
        g9 = models.build_generator(cyclegan_cfg())
        g6 = models.build_generator(cyclegan_cfg(netG_pix2pix="resnet_6blocks"))
        d = models.build_discriminator(cyclegan_cfg(), "D_A")
    assert count(g9) == 11_378_179
    assert count(g6) == 7_837_699
    assert count(d) == 2_764_737


def reference_resnet_keys(n_blocks: int, ngf: int = 64, nc_in: int = 3, nc_out: int = 3) -> dict:
    """The reference ResnetGenerator's state_dict shapes (instance norm: convs biased, norms
    without parameters), from its Sequential: [0 pad, 1 conv7, 2 norm, 3 relu], two downsamplings
    [4 conv, 5, 6], [7 conv, 8, 9], n_blocks ResnetBlocks (conv_block: 0 pad, 1 conv, 2 norm,
    3 relu, 4 pad, 5 conv, 6 norm), two ConvTranspose2d (weight [in, out, 3, 3]) + norm + relu,
    pad, conv7, tanh."""
    k = {"model.1.weight": (ngf, nc_in, 7, 7), "model.1.bias": (ngf,),
         "model.4.weight": (2 * ngf, ngf, 3, 3), "model.4.bias": (2 * ngf,),
         "model.7.weight": (4 * ngf, 2 * ngf, 3, 3), "model.7.bias": (4 * ngf,)}
    for i in range(10, 10 + n_blocks):
        for j in (1, 5):
            k[f"model.{i}.conv_block.{j}.weight"] = (4 * ngf, 4 * ngf, 3, 3)
            k[f"model.{i}.conv_block.{j}.bias"] = (4 * ngf,)
    up = 10 + n_blocks
    k[f"model.{up}.weight"], k[f"model.{up}.bias"] = (4 * ngf, 2 * ngf, 3, 3), (2 * ngf,)
    k[f"model.{up + 3}.weight"], k[f"model.{up + 3}.bias"] = (2 * ngf, ngf, 3, 3), (ngf,)
    k[f"model.{up + 7}.weight"], k[f"model.{up + 7}.bias"] = (nc_out, ngf, 7, 7), (nc_out,)
    return k


def reference_d_keys(ndf: int = 64, nc: int = 3) -> dict:
    """The reference NLayerDiscriminator (n_layers 3, instance norm: biased convs): [0 conv,
    1 lrelu], [2 conv, 3 norm, 4 lrelu], [5 conv, 6, 7] (stride 2), [8 conv, 9, 10] (stride 1),
    11 conv to one channel."""
    chans = [(ndf, nc), (2 * ndf, ndf), (4 * ndf, 2 * ndf), (8 * ndf, 4 * ndf), (1, 8 * ndf)]
    k = {}
    for i, (o, c) in zip((0, 2, 5, 8, 11), chans):
        k[f"model.{i}.weight"], k[f"model.{i}.bias"] = (o, c, 4, 4), (o,)
    return k


@pytest.mark.parametrize("netG, n_blocks", [("resnet_9blocks", 9), ("resnet_6blocks", 6)])
def test_state_dict_keys_and_shapes_are_the_references(netG, n_blocks):
    with torch.device("meta"):
        g = models.build_generator(cyclegan_cfg(netG_pix2pix=netG))
        d = models.build_discriminator(cyclegan_cfg(), "D_B")
    assert {k: tuple(v.shape) for k, v in g.state_dict().items()} == reference_resnet_keys(n_blocks)
    assert {k: tuple(v.shape) for k, v in d.state_dict().items()} == reference_d_keys()


def _reference_file(path: Path, shapes: dict, seed: int, legacy_norm_keys=()) -> dict:
    """A file as the reference writes it (torch.save of a CPU state_dict), with random values;
    ``legacy_norm_keys``: instance-norm prefixes that also get PyTorch < 0.4's running stats."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}
    for p in legacy_norm_keys:
        c = sd[p.rsplit(".", 1)[0] + f".{int(p.rsplit('.', 1)[1]) - 1}.weight"].shape[0]
        sd[f"{p}.running_mean"], sd[f"{p}.running_var"] = torch.zeros(c), torch.ones(c)
    torch.save(sd, path)
    return sd


def test_reference_checkpoint_files_load_and_run_as_the_plain_layout(tmp_path):
    cfg = cyclegan_cfg(ngf=8, ndf=8, netG_pix2pix="resnet_6blocks", norm_impl="ref")
    shapes_g, shapes_d = reference_resnet_keys(6, ngf=8), reference_d_keys(ndf=8)
    sd_g = _reference_file(tmp_path / "latest_net_G_A.pth", shapes_g, 0)
    sd_d = _reference_file(tmp_path / "latest_net_D_A.pth", shapes_d, 1)
    g = load_reference_weights(models.build_generator(cfg), tmp_path / "latest_net_G_A.pth")
    d = load_reference_weights(models.build_discriminator(cfg, "D_A"), tmp_path / "latest_net_D_A.pth")
    for net, sd in ((g, sd_g), (d, sd_d)):
        for k, v in net.state_dict().items():
            assert torch.equal(v, sd[k]), k
    # plain load_state_dict takes the same files, strictly
    models.build_generator(cfg).load_state_dict(torch.load(tmp_path / "latest_net_G_A.pth"), strict=True)
    # the fused networks compute what the reference's layout computes (nn.InstanceNorm2d, then
    # nn.ReLU / LeakyReLU modules, x + conv_block(x)), forward and backward
    torch.manual_seed(0)
    for net, shape in ((g, (2, 3, 20, 24)), (d, (2, 3, 36, 40))):
        plain = unfuse(net).double()
        net = net.double()
        assert_same_forward_and_backward(net, plain, torch.randn(*shape, dtype=torch.float64))
    # a file from PyTorch < 0.4 carries running stats of the instance norms: dropped, as the
    # reference's loader drops them; any other extra key still refuses the file
    legacy = _reference_file(tmp_path / "legacy_G.pth", shapes_g, 2,
                             legacy_norm_keys=("model.2", "model.10.conv_block.2"))
    assert "model.10.conv_block.2.running_var" in legacy
    g2 = load_reference_weights(models.build_generator(cfg), tmp_path / "legacy_G.pth")
    assert torch.equal(g2.state_dict()["model.1.weight"], legacy["model.1.weight"])
    torch.save({**sd_g, "model.1.running_mean": torch.zeros(8)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="1 unexpected key.*model.1.running_mean"):
        load_reference_weights(models.build_generator(cfg), tmp_path / "bad.pth")


def test_instance_norms_and_residual_adds_take_the_fused_path():
    g = define_G(3, 3, 8, "resnet_9blocks", "instance", use_dropout=False)
    fused = [m for m in g.modules() if isinstance(m, InstanceNormAct)]
    # 1 + 2 down + 9 x 2 in the blocks + 2 up; no ReLU module is left outside the fused layers
    assert len(fused) == 23
    assert not any(isinstance(m, nn.ReLU) for m in g.modules())
    blocks = [m for m in g.model if type(m).__name__ == "ResnetBlock"]
    assert len(blocks) == 9 and all(isinstance(b.conv_block[-1], InstanceNormAct) and
                                    b.conv_block[-1].act == "none" for b in blocks)
    # forward goes through the residual= argument of the last norm of each block
    seen = []
    for b in blocks:
        b.conv_block[-1].register_forward_hook(lambda m, args, kwargs, out: seen.append("residual" in kwargs),
                                               with_kwargs=True)
    g(torch.randn(1, 3, 16, 16))
    assert seen == [True] * 9
    assert set_norm_impl(g, "ref") is g and {m.impl for m in fused} == {"ref"}


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_conv_biases_follow_the_references_use_bias(norm):
    g = ResnetGenerator(3, 3, 4, norm=norm, n_blocks=2)
    convs = [(n, m) for n, m in g.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    last = convs[-1][0]
    for n, m in convs:   # before instance norm: biased; before BatchNorm: none; the output conv: always
        assert (m.bias is not None) == (norm == "instance" or n == last), n
    d = define_D(3, 4, "basic", norm=norm)
    assert sum(m.bias is None for m in d.modules() if isinstance(m, nn.Conv2d)) == (0 if norm == "instance" else 3)


def test_dropout_sits_in_each_residual_block_when_asked():
    g = define_G(3, 3, 4, "resnet_6blocks", "instance", use_dropout=True)
    blocks = [m for m in g.model if type(m).__name__ == "ResnetBlock"]
    assert all(isinstance(b.conv_block[4], nn.Dropout) for b in blocks)
    assert "model.10.conv_block.6.weight" in g.state_dict()   # the second conv moves one slot
    assert not any(isinstance(m, nn.Dropout) for m in models.build_generator(cyclegan_cfg(ngf=4)).modules())


def test_init_is_normal_002_with_zero_biases():
    torch.manual_seed(0)
    g = models.build_generator(cyclegan_cfg(ngf=16))
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    assert all(torch.all(m.bias == 0) for m in g.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None)


def test_cyclegan_defaults_are_the_references():
    c = cyclegan_cfg()
    assert (c.netG_pix2pix, c.ngf, c.ndf, c.netD_pix2pix, c.n_layers_D, c.norm, c.no_dropout) == (
        "resnet_9blocks", 64, 64, "basic", 3, "instance", True)
    assert (c.gan_mode, c.lambda_A, c.lambda_B, c.lambda_identity, c.pool_size) == ("lsgan", 10.0, 10.0, 0.5, 50)
    assert (c.lr, c.beta1, c.niter, c.niter_decay) == (0.0002, 0.5, 100, 100)
    assert (c.resize_or_crop, c.loadSize, c.fineSize, c.dataset_mode, c.label_nc) == (
        "resize_and_crop", 286, 256, "unaligned", 0)
    assert c.required_multiple == 4 and model_defaults("cyclegan")["netG_pix2pix"] == "resnet_9blocks"
    for bad, match in ((dict(label_nc=12), "label_nc 12 must be 0"),
                       (dict(stage="local"), "one stage"),
                       (dict(input_nc=1), "lambda_identity 0"),
                       (dict(pool_size=-1), "must be >= 0")):
        with pytest.raises(ValueError, match=match):
            cyclegan_cfg(**bad)
    assert cyclegan_cfg(input_nc=1, lambda_identity=0.0).input_nc == 1


def test_each_direction_names_its_generator_with_swapped_channels():
    cfg = cyclegan_cfg(input_nc=1, output_nc=3, lambda_identity=0.0, ngf=4)
    assert [models.generator_key(cfg, d) for d in (None, "AtoB", "BtoA")] == ["G_A", "G_A", "G_B"]
    g_a, g_b = models.build_generator(cfg, "AtoB"), models.build_generator(cfg, "BtoA")
    assert (g_a.input_nc, g_a.output_nc, g_b.input_nc, g_b.output_nc) == (1, 3, 3, 1)
    d_a, d_b = models.build_discriminator(cfg, "D_A"), models.build_discriminator(cfg, "D_B")
    assert (d_a.model[0].in_channels, d_b.model[0].in_channels) == (3, 1)
    assert models.network_keys(cfg) == ("G_A", "G_B", "D_A", "D_B")
    p2p = TrainConfig(model="pix2pix").resolved()
    assert models.generator_key(p2p) == models.generator_key(p2p, "AtoB") == "G"
    with pytest.raises(ValueError, match="trained with --direction AtoB, .* a --model cyclegan run has a "
                                         "generator for each way"):
        models.generator_key(p2p, "BtoA")
    # a run trained BtoA: that direction names its generator (it was refused), AtoB does not
    p2p_btoa = TrainConfig(model="pix2pix", direction="BtoA").resolved()
    assert models.generator_key(p2p_btoa, "BtoA") == models.generator_key(p2p_btoa) == "G"
    with pytest.raises(ValueError, match="^--direction AtoB: this pix2pix run was trained with --direction BtoA"):
        models.generator_key(p2p_btoa, "AtoB")
    with pytest.raises(ValueError, match="'D_A' and 'D_B'"):
        models.build_discriminator(cfg)


def test_train_hd_help_shows_cyclegans_options_and_defaults():
    """Every option's default for --model cyclegan is in its help (tests/test_config.py checks
    that for all options of every model); here the ones CycleGAN sets, as the command prints them."""
    out = subprocess.run([sys.executable, str(REPO / "train_hd.py"), "--model", "cyclegan", "--help"],
                         capture_output=True, text=True, cwd=str(REPO), timeout=120).stdout
    listing = " ".join(out.split()).split("options:", 1)[1]   # past the usage line
    for flag, default in (("--netG_pix2pix", "resnet_9blocks"), ("--lambda_A", "10.0"), ("--lambda_B", "10.0"),
                          ("--lambda_identity", "0.5"), ("--pool_size", "50"), ("--dataset_mode", "unaligned"),
                          ("--loadSize", "286"), ("--fineSize", "256"), ("--no_dropout", "on"),
                          ("--gan_mode", "lsgan"), ("--label_nc", "0"), ("--num_D", "1")):
        own = listing[listing.index(flag + " "):]
        assert own[own.index("(default: "):].startswith(f"(default: {default}"), flag

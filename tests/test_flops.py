"""The analytic MAC model: the issue's four reference figures, the conv formulas against PyTorch's
own FLOP counter on real (tiny) networks, and what a training step's FLOPs include."""
import dataclasses

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
    assert flops.vgg19_macs(2048, 1024) / 1e9 == pytest.approx(757.4, abs=0.05)


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


@pytest.mark.parametrize("name,bf16,tf32,key", [
    ("NVIDIA H100 80GB HBM3", 989.4, 494.7, "H100"),
    ("NVIDIA H100 PCIe", 756.5, 378.0, "H100 PCIe"),
    ("NVIDIA H100 NVL", 835.5, 417.5, "H100 NVL"),
    ("NVIDIA H200 NVL", 835.5, 417.5, "H200 NVL"),
    ("NVIDIA H200", 989.4, 494.7, "H200"),
    ("NVIDIA A100-SXM4-80GB", 312.0, 156.0, "A100"),
])
def test_peak_table_matches_the_specific_board_before_the_family(name, bf16, tf32, key):
    # An H100 PCIe or an NVL board given the SXM peak would understate its MFU by 24 % / 16 %.
    assert flops.peak_tflops(name, "bf16") == pytest.approx(bf16)
    assert flops.peak_tflops(name, "fp16") == pytest.approx(bf16)
    assert flops.peak_tflops(name, "fp32") == pytest.approx(tf32)
    assert flops.peak_entry(name, "bf16") == (key, pytest.approx(bf16))
    assert flops.peak_entry("AMD EPYC 7B13", "bf16") is None


def test_peak_tables_match_whole_board_names_only():
    """"A10" is not an A10G, "L4" not an L40 (other boards, other peaks): unknown, not wrong."""
    from benchmarks.kernels import peak_gbs
    assert flops.peak_entry("NVIDIA A10", "bf16") == ("A10", pytest.approx(125.0))
    assert flops.peak_entry("NVIDIA A10G", "bf16") is None
    assert peak_gbs("NVIDIA L4") == 300 and peak_gbs("NVIDIA L40") is None
    assert peak_gbs("NVIDIA L40S") == 864 and peak_gbs("NVIDIA A10G") is None
    assert peak_gbs("NVIDIA A100-SXM4-80GB") == 2039 and peak_gbs("NVIDIA A100-PCIE-40GB") == 1555
    assert peak_gbs("NVIDIA H100 80GB HBM3") == 3350 and peak_gbs("NVIDIA H200") == 4800


def test_a_gh200_is_not_taken_for_an_h200():
    """"H200" is a word of "NVIDIA H200 NVL", not of "NVIDIA GH200 480GB" (the Grace Hopper
    superchip's name): its Hopper GPU has its own memory (HBM3 or HBM3e, its own bandwidth) and
    power limit, so the H200 rows are not its. No row names it yet, so it is unknown (no fraction
    of a peak, as for an A10G) until figures from its own data sheet are added."""
    from benchmarks.kernels import peak_gbs
    gh200 = "NVIDIA GH200 480GB"
    assert not flops.names_board(gh200, "H200") and flops.names_board("NVIDIA H200 NVL", "H200")
    assert flops.peak_entry(gh200, "bf16") is None and peak_gbs(gh200) is None


def test_module_docstring_figures_are_the_module_s_own():
    """The reference figures the docstring quotes are what the module computes (to 0.05 GMAC)."""
    import re
    doc = " ".join(flops.__doc__.split())
    m = re.search(r"global G at 1024x512 ([\d.]+) GMAC, local G at 2048x1024 ([\d.]+), the three-scale "
                  r"D at 2048x1024 ([\d.]+), VGG19 to relu5_1 at 2048x1024 ([\d.]+)", doc)
    assert m, "the docstring's figures moved: update this test"
    local = cfg(stage="local", ngf=32)
    computed = [flops.generator_macs(cfg(stage="global"), 1024, 512), flops.generator_macs(local, 2048, 1024),
                flops.discriminator_macs(local, 2048, 1024), flops.vgg19_macs(2048, 1024)]
    for quoted, macs in zip(m.groups(), computed):
        assert float(quoted) == pytest.approx(macs / 1e9, abs=0.05)


def test_train_step_flops_leaves_out_a_frozen_global_generator():
    """Local stage, epoch <= niter_fix_global: the Trainer freezes G1 (requires_grad False), so its
    convolutions need neither weight nor input gradients: only their forward counts."""
    base = dict(stage="local", ngf=8, ndf=8, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1)
    w, h = 64, 32
    free = flops.train_step_flops(cfg(**base), w, h)
    assert free.to_dict() == flops.train_step_flops(cfg(**base, niter_fix_global=2), w, h, epoch=3).to_dict()
    frozen = flops.train_step_flops(cfg(**base, niter_fix_global=2), w, h, epoch=2)
    assert frozen.forward_macs == free.forward_macs
    assert frozen.flops["D"] == free.flops["D"] and frozen.flops["VGG"] == free.flops["VGG"]
    from pix2pixhd.models import build_generator, generator_input_nc
    c = cfg(**base)
    with torch.device("meta"):
        g = build_generator(c)
    recs = flops.conv_records(g, torch.empty(1, generator_input_nc(c), h, w, device="meta"))
    g1 = [r for r in recs if r.name.startswith("model.")]
    assert g1 and len(g1) < len(recs)
    # unfrozen, G1 costs dW everywhere and dX past its first conv (its input carries no grad)
    g1_backward = 2 * sum(r.macs for r in g1) - g1[0].macs
    assert frozen.flops["G"] == free.flops["G"] - 2 * g1_backward
    # the global stage has nothing to freeze
    glob = dataclasses.replace(cfg(stage="global", ngf=8, ndf=8, n_blocks_global=1), niter_fix_global=5)
    assert flops.train_step_flops(glob, w, h, epoch=1).total == flops.train_step_flops(
        cfg(stage="global", ngf=8, ndf=8, n_blocks_global=1), w, h).total


def test_a_frozen_global_generator_still_carries_the_encoders_gradient():
    """With --instance_feat, G's input holds E's features: frozen or not, every conv of G needs
    dX to carry E's gradient (the frozen G1 passes it on, as the reference's does); only G1's dW
    is left out. It was counted as if nothing flowed back through a frozen G1."""
    base = dict(stage="local", ngf=8, ndf=8, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1,
                instance_feat=True, nef=4, n_downsample_E=2)
    w, h = 64, 32
    free = flops.train_step_flops(cfg(**base), w, h)
    frozen = flops.train_step_flops(cfg(**base, niter_fix_global=2), w, h, epoch=2)
    from pix2pixhd.models import build_generator, generator_input_nc
    c = cfg(**base)
    with torch.device("meta"):
        g = build_generator(c)
    recs = flops.conv_records(g, torch.empty(1, generator_input_nc(c), h, w, device="meta"))
    g1 = [r for r in recs if r.name.startswith("model.")]
    # unfrozen: G1's dW and dX everywhere (its first conv's input carries grad); frozen: dX only
    assert frozen.flops["G"] == free.flops["G"] - 2 * sum(r.macs for r in g1)
    assert free.flops["G"] == 2 * 3 * sum(r.macs for r in recs)   # forward + dW + dX, every conv


def test_the_flop_model_of_a_triton_run_launches_no_kernel(monkeypatch):
    """benchmarks/train.py --norm_impl triton timed its steps, then the FLOP model, building the
    networks on the meta device with the run's norm_impl, died in the kernel's dispatch (strict
    kernels: a RuntimeError; the interpreter: a copy out of a meta tensor)."""
    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "1")
    kw = dict(stage="global", ngf=8, ndf=8, n_blocks_global=1)
    ran = flops.train_step_flops(cfg(norm_impl="triton", **kw), 64, 32)
    assert ran.flops == flops.train_step_flops(cfg(norm_impl="ref", **kw), 64, 32).flops

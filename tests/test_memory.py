"""benchmarks/memory.py: the saved-activation count against hand counts, fake against real tensors,
and the whole-step estimate on a tiny configuration."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def _load():
    name = "pix2pixhd_bench_memory"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


M = _load()
N, H, W = 2, 16, 16


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))


def test_saved_bytes_fp32_hand_count():
    # conv1 saves x (an input: not the step's) and its weight (a parameter); ReLU saves its output
    # [2, 8, 16, 16] fp32, which conv2 saves again as its input: one storage, counted once.
    net, x = _net(), torch.randn(N, 3, H, W)
    assert M.saved_activation_bytes(net, x) == N * 8 * H * W * 4


def test_saved_bytes_bf16_autocast_hand_count():
    # Under autocast conv1 saves its bf16 copy of x and of its weight, ReLU its bf16 output (also
    # conv2's input), conv2 its bf16 weight copy. Biases are cast but not saved.
    net, x = _net(), torch.randn(N, 3, H, W)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = M.saved_activation_bytes(net, x)
    want = 2 * (N * 3 * H * W + 8 * 3 * 9 + N * 8 * H * W + 4 * 8 * 9)
    assert got == want


def test_in_place_relu_shares_the_conv_output():
    # In-place ReLU overwrites conv1's output and saves it; conv2 saves the same storage.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 4, 3, padding=1))
    assert M.saved_activation_bytes(net, torch.randn(N, 3, H, W)) == N * 8 * H * W * 4


def test_fake_tensors_count_like_real_ones():
    from torch._subclasses.fake_tensor import FakeTensorMode
    real = M.saved_activation_bytes(_net(), torch.randn(N, 3, H, W))
    with FakeTensorMode():
        fake = M.saved_activation_bytes(_net(), torch.empty(N, 3, H, W))
    assert fake == real


def test_cuda_like_autocast_pads_in_half_and_restores():
    x = torch.randn(1, 2, 8, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.pad(x, (1, 1, 1, 1), mode="reflect").dtype == torch.float32  # CPU autocast's list
        with M.cuda_like_autocast():
            assert F.pad(x, (1, 1, 1, 1), mode="reflect").dtype == torch.bfloat16  # CUDA's
        assert F.pad(x, (1, 1, 1, 1), mode="reflect").dtype == torch.float32


def _tiny(precision, tmp_path):
    from pix2pixhd.config import TrainConfig
    return TrainConfig(stage="global", ngf=8, ndf=8, n_downsample_global=2, n_blocks_global=1,
                       label_nc=5, precision=precision, checkpoints_dir=str(tmp_path),
                       no_html=True, no_tensorboard=True, device="cpu").resolved()


def test_step_estimate_tiny(tmp_path):
    from pix2pixhd.losses import VGG19Features
    from pix2pixhd.models import build_discriminator, build_generator
    rows = {p: M.estimate(_tiny(p, tmp_path), 64, 32) for p in ("fp32", "bf16")}
    cfg = _tiny("fp32", tmp_path)
    n_g = sum(p.numel() for p in build_generator(cfg).parameters())
    n_d = sum(p.numel() for p in build_discriminator(cfg).parameters())
    n_v = sum(p.numel() for p in VGG19Features().parameters())
    for r in rows.values():
        assert (r.params_G, r.params_D, r.params_VGG) == (n_g, n_d, n_v)
        # fp32 weights of all three; fp32 grads + two Adam moments of G and D
        assert r.state_bytes == 4 * (n_g + n_d + n_v) + 12 * (n_g + n_d)
        assert 0 < r.saved_peak_bytes <= r.step_peak_bytes
        assert r.estimate_bytes == r.state_bytes + r.step_peak_bytes
        # the step at least holds x [1, 6, 32, 64] and real [1, 3, 32, 64] fp32 and VGG's
        # first activation of fake (saved for backward) [1, 64, 32, 64]
        assert r.step_peak_bytes > (6 + 3) * 32 * 64 * 4 + 64 * 32 * 64 * 2
    # bf16 saves a half-precision copy of every G and VGG weight that the backward multiplies
    # with (autocast's casts; fp32 saves the parameters themselves, which are not step storage)
    assert rows["bf16"].saved_peak_bytes - rows["fp32"].saved_peak_bytes > 2 * (n_g + n_v) // 2


def test_estimate_rejects_sizes_the_generator_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        M.estimate(_tiny("fp32", tmp_path), 66, 32)

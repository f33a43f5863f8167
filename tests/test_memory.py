"""benchmarks/memory.py against facts found without it: hand counts of a tiny net's saved tensors,
fake against real tensors, the bytes torch really holds after a real step, torch's profiler's
measured peak of a real CPU step, linearity in batch and pixels, and bf16's halved activations
plus weight copies."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import memory as M

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


def _tiny(precision, tmp_path, norm_impl="auto"):
    from pix2pixhd.config import TrainConfig
    return TrainConfig(stage="global", ngf=8, ndf=8, n_downsample_global=2, n_blocks_global=1,
                       label_nc=5, precision=precision, norm_impl=norm_impl, checkpoints_dir=str(tmp_path),
                       no_html=True, no_tensorboard=True, device="cpu").resolved()


def _real_trainer(cfg):
    from pix2pixhd.losses import VGG19Features
    from pix2pixhd.trainer import Trainer
    torch.manual_seed(0)
    return Trainer(cfg, vgg=VGG19Features())


def _batch(n, h, w):
    g = torch.Generator().manual_seed(0)
    return {"label": torch.randint(0, 5, (n, 1, h, w), generator=g).to(torch.uint8),
            "inst": torch.randint(0, 3, (n, 1, h, w), generator=g).to(torch.int32),
            "image": torch.randint(0, 256, (n, 3, h, w), generator=g).to(torch.uint8), "path": ["a"] * n}


@pytest.fixture(scope="module")
def estimates(tmp_path_factory):
    """(precision, width, batch) -> the estimate at height 32 on the tiny global configuration."""
    tmp = tmp_path_factory.mktemp("mem")
    return {(p, w, n): M.estimate(_tiny(p, tmp), w, 32, n)
            for p, w, n in (("fp32", 64, 1), ("fp32", 128, 1), ("fp32", 64, 2), ("bf16", 64, 1), ("bf16", 128, 1))}


def test_state_bytes_are_what_a_real_step_allocates(tmp_path, estimates):
    # After one real step on real tensors: the bytes of every parameter (G, D, VGG), every
    # gradient and Adam's moments that torch holds, counted from the tensors themselves (Adam's
    # per-parameter step counters, a few bytes each, are left out as the estimate says).
    tr = _real_trainer(_tiny("fp32", tmp_path))
    tr.train_step(_batch(1, 32, 64))
    params = [p for m in (tr.G, tr.D, tr.vgg) for p in m.parameters()]
    grads = [p.grad for p in params if p.grad is not None]
    moments = [st[k] for opt in (tr.opt_G, tr.opt_D) for st in opt.state.values() for k in ("exp_avg", "exp_avg_sq")]
    held = sum(t.nbytes for t in params + grads + moments)
    for r in estimates.values():
        assert r.state_bytes == held
        assert (r.params_G, r.params_D, r.params_VGG) == tuple(sum(p.numel() for p in m.parameters())
                                                                for m in (tr.G, tr.D, tr.vgg))


def _profiled_peak(fn) -> int:
    """Peak of the bytes torch's CPU allocator holds while ``fn`` runs, from the profiler's
    per-op memory records (allocations minus frees, in time order)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for e in sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def test_profiled_peak_of_a_hand_counted_net():
    # The measuring method itself, by hand: conv1's output [2, 8, 16, 16] fp32 is still alive when
    # the ReLU allocates its own (not in place): two of them, 2 * 16 KiB; conv1's is freed after,
    # so conv2's [2, 4, 16, 16] (8 KiB) never raises the peak.
    net, x, keep = _net(), torch.randn(N, 3, H, W), []
    assert _profiled_peak(lambda: keep.append(net(x))) == 2 * N * 8 * H * W * 4


def test_step_peak_is_close_above_torchs_measured_peak_on_a_real_cpu_step(tmp_path):
    # The same step (fp32, the reference norm path in both) on real tensors, the optimizer step
    # left out as the estimate does: torch's allocator peaks at most the estimate's step peak
    # plus the gradients it allocates, and no lower than 80% of the estimate.
    cfg = _tiny("fp32", tmp_path, norm_impl="ref")
    est = M.estimate(cfg, 64, 32, 1)
    tr = _real_trainer(cfg)
    tr.opt_G.step = tr.opt_D.step = lambda *a, **k: None
    measured = _profiled_peak(lambda: tr.train_step(_batch(1, 32, 64)))
    grads = sum(p.grad.nbytes for m in (tr.G, tr.D) for p in m.parameters() if p.grad is not None)
    assert est.saved_peak_bytes <= est.step_peak_bytes
    assert 0.8 * est.step_peak_bytes <= measured <= est.step_peak_bytes + grads


def test_fp32_saved_activations_are_per_pixel(estimates):
    # In fp32 autograd saves only activations (no weight copies), each [N, C, h, w]: twice the
    # batch saves exactly twice the bytes, twice the width twice within 2% (border rows and the
    # few scalars), and nothing is left at zero pixels.
    one, two, wide = (estimates["fp32", w, n].saved_peak_bytes for w, n in ((64, 1), (64, 2), (128, 1)))
    assert two == 2 * one
    assert abs(wide / one - 2) < 0.02
    assert abs(2 * one - wide) < 0.02 * one
    step = [estimates["fp32", w, n].step_peak_bytes for w, n in ((64, 1), (64, 2), (128, 1))]
    assert step[0] < step[1] and step[0] < step[2]


def test_bf16_saves_half_precision_activations_and_weight_copies(estimates):
    r = estimates
    fp32_pp = r["fp32", 128, 1].saved_peak_bytes - r["fp32", 64, 1].saved_peak_bytes
    bf16_pp = r["bf16", 128, 1].saved_peak_bytes - r["bf16", 64, 1].saved_peak_bytes
    # per pixel: mostly 2-byte tensors where fp32 has 4-byte ones (a few stay fp32: the losses'
    # inputs, concatenations with fp32 tensors), so between a half and three quarters
    assert 0.5 <= bf16_pp / fp32_pp <= 0.75
    # at zero pixels (extrapolated): one bf16 copy of each weight the backward multiplies with,
    # G's and VGG's at least, D's (used frozen in the G pass) at most on top
    p = r["bf16", 64, 1]
    at_zero = 2 * p.saved_peak_bytes - r["bf16", 128, 1].saved_peak_bytes
    assert 2 * (p.params_G + p.params_VGG) <= at_zero <= 2 * (p.params_G + p.params_VGG + p.params_D) * 1.01


def test_estimate_rejects_sizes_the_generator_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        M.estimate(_tiny("fp32", tmp_path), 66, 32)

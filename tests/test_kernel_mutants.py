"""The kernels' dispatch, launch config and 'auto' choices, pinned where mutation testing found
lines that every other test let change: launch overrides that were ignored (the CPU tests then ran
one tile in one program and still passed), the split planning for a GPU's SM count (and for the
AOT recorder's), the autotune key and file, the CUDA-graph capture guard, the timer's warm-up and
median, path_taken's labels and launch_overrides' power-of-two check.

CPU only: launch configs are planned on meta tensors, the Triton interpreter (TRITON_INTERPRET=1,
set by conftest without a GPU) runs the few launches, and 'auto' measures CPU tensors as CUDA ones
through tests/test_kernels.py's ``tuned`` fixture and a fake timer.
"""
import importlib
import json
import os
import types

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pix2pixhd.kernels import instance_norm_act, instance_norm_act_ref  # noqa: E402
from tests.test_kernels import tuned  # noqa: E402, F401  (fixture)
from tests.test_kernels import DEVICE, FakeTimer, rel_err, spy_fused  # noqa: E402

K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
KT = importlib.import_module("pix2pixhd.kernels._instance_norm_act_triton")


def meta(*shape, cl=False):
    x = torch.empty(*shape, device="meta")
    return x.contiguous(memory_format=torch.channels_last) if cl else x


# ---- launch config ------------------------------------------------------------------------------

def test_launch_overrides_set_the_tiles_and_the_splits():
    """What the CPU tests rely on to cover several tiles, channel blocks and splits on tiny
    shapes: 77 pixels in 16-pixel tiles (5), 2 splits of 3 tiles (48 pixels) each."""
    cfg = KT.launch_config(meta(2, 3, 7, 11), {"block_p": 16, "block_c": 4, "splits": 2}, None)
    assert cfg == dict(block_c=4, block_p=16, splits=2, chunk=48, num_warps=1), cfg


def test_launches_follow_the_overrides(monkeypatch):
    """The stats and forward grids are (N * splits, C blocks) as overridden, and the result is still
    the reference's (2 splits, a ragged last tile, a ragged channel block)."""
    grids = []
    launch = KT._launch
    monkeypatch.setattr(KT, "_launch", lambda kernel, grid, *a, **k: (
        grids.append((kernel.fn.__name__, grid)), launch(kernel, grid, *a, **k))[-1])
    x = torch.randn(2, 3, 5, 7, device=DEVICE)
    with K.launch_overrides(block_p=16, block_c=4, splits=2):
        y = instance_norm_act(x, act="relu", impl="triton")
    assert dict(grids)["_stats_kernel"] == (4, 1), grids
    assert dict(grids)["_fwd_kernel"] == (4, 1), grids
    assert rel_err(y, instance_norm_act_ref(x, act="relu")) <= 1e-5


def test_splits_fill_four_programs_per_sm():
    """One 64-channel 2048x1024 NCHW layer on 132 SMs (H100): 64 (n, c) rows, so 9 splits of
    114 tiles of 2048 pixels give 576 programs, about 4 per SM."""
    cfg = KT.launch_config(meta(1, 64, 1024, 2048), {}, 132)
    assert cfg == dict(block_c=1, block_p=2048, splits=9, chunk=233472, num_warps=8), cfg


class _Recorder:
    """Stands in for pix2pixhd.kernels.aot's Recorder: a target's SM count, launches kept."""

    def __init__(self, sms):
        self.sms, self.grids = sms, []

    def launch(self, kernel, grid, args, kwargs):
        self.grids.append((kernel.fn.__name__, grid))


def test_the_aot_recorder_plans_for_its_targets_sm_count(monkeypatch):
    """Under AOT recording (meta tensors, no GPU) the splits are planned for the recorder's SM
    count, as on that GPU: without it a meta tensor would get the CPU's one split."""
    rec = _Recorder(132)
    monkeypatch.setattr(KT, "_RECORDER", rec)
    x = meta(1, 64, 1024, 2048)
    assert KT._sm_count(x) == 132
    KT.forward(x, None, None, None, "relu", 0.2, 1e-5, {})
    assert dict(rec.grids)["_stats_kernel"] == (9, 64), rec.grids


# Launch heuristics at real network shapes (planned for an H100's 132 SMs). A deliberate change
# of the heuristics changes these rows: each names its layer and what it pins.
NETWORK_CONFIGS = [
    # pix2pix U-Net 256 after its fourth downsampling, NCHW: 256 pixels per channel take the short
    # 256-pixel tile (a 2048-pixel tile would leave 7/8 of every program masked off).
    ("unet256 down4 512x16x16 nchw", meta(1, 512, 16, 16),
     dict(block_c=1, block_p=256, splits=1, chunk=256, num_warps=2)),
    # pix2pixHD G1 ResNet block at 1024x512, NCHW: 2048 pixels, the long tile, 8 warps.
    ("G1 res 1024x32x64 nchw", meta(1, 1024, 32, 64),
     dict(block_c=1, block_p=2048, splits=1, chunk=2048, num_warps=8)),
    # pix2pixHD G1 first conv at 1024x512, channels-last: 64 channels x 64 pixels per tile, 8 warps
    # (16 KB of fp32 per tile: 16 elements per thread; 4 warps would give each thread 32).
    ("G1 conv7 64x512x1024 cl", meta(1, 64, 512, 1024, cl=True),
     dict(block_c=64, block_p=64, splits=512, chunk=1024, num_warps=8)),
]


@pytest.mark.parametrize("shape_name, x, want", NETWORK_CONFIGS,
                         ids=[c[0] for c in NETWORK_CONFIGS])
def test_launch_config_at_network_shapes(shape_name, x, want):
    cfg = KT.launch_config(x, {}, 132)
    assert cfg == want, f"{shape_name}: {cfg}"


def test_launch_overrides_take_powers_of_two_only():
    for kw in (dict(block_p=12), dict(block_c=6), dict(block_p=0)):
        (k, v), = kw.items()
        with pytest.raises(ValueError, match=rf"{k}={v} must be a power of two"):
            with K.launch_overrides(**kw):
                pass
    assert K._OVERRIDES == {}


# ---- path_taken ---------------------------------------------------------------------------------

def test_path_taken_says_auto_where_auto_measures(monkeypatch):
    monkeypatch.setattr(K, "_use_triton", lambda x, impl: True)
    monkeypatch.setattr(K, "_tunable", lambda x: True)  # a CUDA tensor
    assert K.path_taken("auto", "cpu") == "auto"
    monkeypatch.setattr(K, "_tunable", lambda x: False)  # AOT recording: Triton, unmeasured
    assert K.path_taken("auto", "cpu") == "triton"


# ---- the autotune key and file ------------------------------------------------------------------

def key_of(x, act="relu"):
    return K.AutoChooser.key(x, None, None, None, act, False)


def test_the_key_names_the_torch_and_triton_versions():
    import triton
    k = key_of(torch.empty(1, 2, 3, 4))
    assert k.startswith(f"cpu|torch {torch.__version__}|triton {triton.__version__}|[1, 2, 3, 4]|"), k


def test_a_choice_recorded_under_another_triton_version_is_measured_again(tuned, monkeypatch, tmp_path):
    import triton
    path = tmp_path / "choices.json"
    tuned(FakeTimer({"triton": 2.0, "native": 1.0}), path=path)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    instance_norm_act(x, impl="auto")  # recorded under this process's label
    monkeypatch.setattr(triton, "__version__", "0.0.other")
    monkeypatch.delitem(K._PROBED, ("_platform_label", x.device), raising=False)  # found again
    timer = FakeTimer({"triton": 2.0, "native": 1.0})
    tuned(timer, path=path)
    instance_norm_act(x, impl="auto")
    assert timer.calls == ["triton", "native"], "a choice made with another Triton was reused"
    assert len(json.loads(path.read_text())) == 2


def test_a_recorded_entry_that_is_no_choice_is_measured(tuned, tmp_path):
    path = tmp_path / "choices.json"
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    path.write_text(json.dumps({key_of(x): {"choice": "bogus"}}))
    timer = FakeTimer({"triton": 2.0, "native": 1.0})
    chooser = tuned(timer, path=path)
    instance_norm_act(x, impl="auto")
    assert timer.calls == ["triton", "native"], f"took {chooser.choices} from the file"
    assert json.loads(path.read_text())[key_of(x)]["choice"] == "native"


def test_two_processes_writing_one_file_keep_each_others_choices(tmp_path):
    """Two DDP ranks with one autotune file: each rewrite merges what the other added meanwhile."""
    path = tmp_path / "choices.json"
    a = K.AutoChooser(timer=FakeTimer({"triton": 2.0, "native": 1.0}), path=path)
    b = K.AutoChooser(timer=FakeTimer({"triton": 2.0, "native": 1.0}), path=path)
    xs = [torch.randn(1, 2, 4, h) for h in (4, 5, 6)]

    def choose(chooser, x):
        return chooser.choose(x, None, None, None, "relu", None, None)

    assert choose(a, xs[0]) == "native"  # a reads the absent file, writes its choice
    assert choose(b, xs[0]) == "native"  # b reads that one
    choose(a, xs[1])                     # a adds one after b has read the file ...
    choose(b, xs[2])                     # ... and b another: the file keeps all three
    assert set(json.loads(path.read_text())) == {key_of(x) for x in xs}


# ---- no measuring inside a CUDA-graph capture ---------------------------------------------------

def test_under_graph_capture_only_recorded_choices_hold(tuned, monkeypatch):
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    tuned(timer)
    fused = spy_fused(monkeypatch)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    instance_norm_act(x, impl="auto")  # measured outside the capture: Triton
    assert timer.calls == ["triton", "native"] and len(fused) == 1
    monkeypatch.setattr(K, "_capturing", lambda x: True)
    instance_norm_act(x, impl="auto")  # the measured key keeps its choice
    assert len(fused) == 2
    y = instance_norm_act(torch.randn(1, 2, 5, 4, device=DEVICE), impl="auto")  # unmeasured
    assert timer.calls == ["triton", "native"], "measured inside a CUDA-graph capture"
    assert len(fused) == 2 and y.shape == (1, 2, 5, 4)  # native, untried


# ---- the timer ----------------------------------------------------------------------------------

def test_time_ms_on_cpu_is_the_median_of_three_after_a_warm_up(monkeypatch):
    """The first call (which compiles a kernel) is not timed; one slow measurement of three does
    not decide."""
    now = [0.0]
    durations = iter([100.0, 0.005, 0.001, 0.003])  # s: warm-up, then 5, 1 and 3 ms
    calls = []

    def fn():
        calls.append(1)
        now[0] += next(durations)

    monkeypatch.setattr(K, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    ms = K._time_ms("t", fn, torch.device("cpu"))
    assert len(calls) == 4, f"{len(calls)} calls: expected 1 untimed + 3 timed"
    assert ms == pytest.approx(3.0), ms

"""The benchmarks: the reference-style baseline computes what our Trainer computes (so the speed
ratio compares equal work), it really is reference-style, and the two scripts run end to end at
tiny sizes and write their JSON records. No test looks at a time or a speed ratio."""
import json
import re

import pytest
import torch

from pix2pixhd.config import TrainConfig
from pix2pixhd.distributed import DistInfo
from pix2pixhd.errors import ConfigError
from pix2pixhd.layers import InstanceNormAct
from pix2pixhd.losses import VGG19Features, VGGLoss
from pix2pixhd.trainer import Trainer

from benchmarks import baseline as B
from benchmarks import synthesis as S
from benchmarks import train as T


def tiny_cfg(tmp_path, **kw):
    base = dict(name="t", checkpoints_dir=str(tmp_path), label_nc=5, ngf=4, n_downsample_global=2,
                n_blocks_global=1, n_blocks_local=1, ndf=4, n_layers_D=2, no_tensorboard=True,
                no_html=True, no_progress=True, device="cpu", nThreads=0)
    base.update(kw)
    return B.resolved(TrainConfig(**base))


def batch(n=2, h=32, w=32, label_nc=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"label": torch.randint(0, label_nc, (n, 1, h, w), generator=g).to(torch.uint8),
            "inst": torch.randint(0, 3, (n, 1, h, w), generator=g).to(torch.int32),
            "image": torch.randint(0, 256, (n, 3, h, w), generator=g).to(torch.uint8)}


@pytest.mark.parametrize("stage,gan_mode", [("global", "lsgan"), ("local", "hinge")])
def test_baseline_and_default_compute_the_same_step(tmp_path, stage, gan_mode):
    torch.manual_seed(0)
    vgg = VGG19Features()
    cfg = tiny_cfg(tmp_path, stage=stage, gan_mode=gan_mode)
    tr = Trainer(cfg, DistInfo(), vgg=vgg)
    ref = B.ReferenceStep(tr.G, tr.D, cfg, VGGLoss(vgg), torch.device("cpu"))
    for i in range(2):  # the second step also checks that both applied the same update
        b = batch(h=16, w=16, seed=i)
        ours, theirs = tr.train_step(b), ref.train_step(b)
        assert set(ours) == set(theirs) == {"D_real", "D_fake", "G_GAN", "G_GAN_Feat", "G_VGG"}
        for k in ours:
            assert theirs[k].item() == pytest.approx(ours[k].item(), rel=1e-4, abs=1e-6), (i, k)
        if i == 0:
            _align_zero_gradient_biases(tr, ref)
    # Both applied the same updates. Conv biases in front of an instance norm are left out: the
    # norm removes them, so their gradient is rounding noise that Adam scales to a full lr step.
    for net_ours, net_ref in ((tr.G, ref.G), (tr.D, ref.D)):
        sd_ref = net_ref.state_dict()
        weights = [k for k in net_ours.state_dict() if k.endswith("weight")]
        assert len(weights) > 5
        for k in weights:
            torch.testing.assert_close(sd_ref[k], net_ours.state_dict()[k], rtol=1e-4, atol=1e-5, msg=k)


def _align_zero_gradient_biases(tr, ref):
    """Biases whose exact gradient is zero get rounding noise, which Adam scales to a step of up to
    lr in a random direction: conv biases in front of an instance norm (the norm removes them) and,
    with the hinge loss, each D scale's last bias while every patch is inside both hinges (the
    real and fake terms' gradients are -1 and +1 per patch and cancel). Those steps differ between
    two correct paths (at one thread here the local/hinge case moved a last D bias by 1.4e-4 and
    G_GAN by 4e-3 relative on the next step), so they are copied from ours into the reference
    before the next step; a bias whose gradient is not zero must match as is. Zero means below
    1e-4 of the network's largest gradient: the noise is about 1e-6 of it (torch 2.13: up to
    7.8e-7 absolute in G; torch 2.11: 1.6e-6, so an absolute 1e-6 cut was a coin toss)."""
    for net_ours, net_ref in ((tr.G, ref.G), (tr.D, ref.D)):
        params_ref = dict(net_ref.named_parameters())
        largest = max(p.grad.abs().max().item() for p in net_ours.parameters() if p.grad is not None)
        for k, p in net_ours.named_parameters():
            if not k.endswith("bias") or p.grad is None:
                continue
            if p.grad.abs().max().item() <= 1e-4 * largest:
                with torch.no_grad():
                    params_ref[k].copy_(p)
            else:
                torch.testing.assert_close(params_ref[k], p, rtol=1e-4, atol=1e-5, msg=k)


def test_baseline_is_reference_style(tmp_path):
    cfg = tiny_cfg(tmp_path, no_vgg_loss=True)
    tr = Trainer(cfg, DistInfo())
    ref = B.ReferenceStep(tr.G, tr.D, cfg, None, torch.device("cpu"))
    # unfused norms, NVIDIA's layout, same state_dict keys; the caller's models are untouched
    for net, orig in ((ref.G, tr.G), (ref.D, tr.D)):
        assert not any(isinstance(m, InstanceNormAct) for m in net.modules())
        assert any(type(m) is torch.nn.InstanceNorm2d for m in net.modules())
        assert list(net.state_dict()) == list(orig.state_dict())
    assert any(isinstance(m, InstanceNormAct) for m in tr.G.modules())
    # D's weight gradients are computed during the G backward (and discarded), unlike ours
    grads_in_g_pass = []
    orig_step = ref.opt_G.step

    def step_and_look():
        grads_in_g_pass.append(all(p.grad is not None for p in ref.D.parameters()))
        return orig_step()

    ref.opt_G.step = step_and_look
    ref.train_step(batch())
    assert grads_in_g_pass == [True]
    # inference keeps an autograd graph
    y = B.reference_generate(ref.G, batch()["label"], batch()["inst"], 5)
    assert y.dtype == torch.uint8 and y.shape == (2, 3, 32, 32)
    x_graph = ref.G(torch.zeros(1, 6, 32, 32))
    assert x_graph.requires_grad and x_graph.grad_fn is not None


def test_unfuse_equals_fused_forward(tmp_path):
    cfg = tiny_cfg(tmp_path, stage="local", no_vgg_loss=True)
    tr = Trainer(cfg, DistInfo())
    x = torch.randn(2, 6, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(B.unfuse(tr.G)(x), tr.G(x), rtol=1e-5, atol=1e-5)
        d_in = torch.randn(2, 9, 32, 32)
        for a, b in zip(B.unfuse(tr.D)(d_in), tr.D(d_in)):
            for fa, fb in zip(a, b):
                torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-5)


def test_train_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert T.main(["--stage", "global,local", "--res", "32x32", "--ngf", "4", "--ndf", "4",
                   "--n_downsample_global", "2", "--n_layers_D", "2",
                   "--n_blocks_global", "1", "--n_blocks_local", "1", "--label_nc", "5",
                   "--steps", "1", "--warmup", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "baseline (reference-style)" in text and "ours fp32" in text and "vs baseline" in text
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "train" and "--res 32x32" in rec["command"]
    assert [(r["stage"], r["path"]) for r in rec["rows"]] == [
        ("global", "baseline (reference-style)"), ("global", "ours fp32"),
        ("local", "baseline (reference-style)"), ("local", "ours fp32")]
    for r in rec["rows"]:
        assert r["step_ms"] > 0 and r["images_per_s"] > 0 and r["tflops"] > 0
        assert {"prepare", "G_forward", "G_backward", "optimizer"} <= set(r["phases_ms"])
        assert r["flops"]["total_flops"] > 0
        # same weights, same batch: the first step's losses agree (fp32)
        assert r["loss_rel_diff"] < 1e-4
        assert r["peak_mib"] is None  # CPU: no allocator statistics, never a made-up number
        assert r["optimizer_state_mib"] > 0


def test_train_benchmark_max_seconds_reports_the_steps_it_timed(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert T.main(["--stage", "global", "--res", "32x32", "--ngf", "4", "--ndf", "4",
                   "--n_downsample_global", "2", "--n_layers_D", "2", "--n_blocks_global", "1",
                   "--label_nc", "5", "--no_vgg_loss", "--steps", "5", "--warmup", "1",
                   "--max_seconds", "0", "--json", str(out)]) == 0
    assert "(--max_seconds 0: 1 of 5 timed steps)" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 and all(r["timed_steps"] == 1 and r["step_ms"] > 0 for r in rows)
    for r in rows:  # no VGG: resident = parameters + buffers + Adam's two moments per parameter,
        # which exist only after the first step (a size taken earlier left them out)
        assert r["resident_mib"] >= 1.4 * r["optimizer_state_mib"] > 0, r  # 1.5 less the steps


def test_synthesis_benchmark_smoke(tmp_path, capsys):
    out = tmp_path / "synth.json"
    assert S.main(["--stage", "global", "--res", "64x32", "--ngf", "4", "--n_blocks_global", "1",
                   "--label_nc", "5", "--steps", "1", "--warmup", "0", "--precision", "auto,fp32",
                   "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert [r["path"] for r in rec["rows"]] == ["baseline (reference-style)", "ours auto (fp32)", "ours fp32"]
    for r in rec["rows"]:
        assert r["images_per_s"] > 0 and r["max_abs_diff_u8"] <= 1
    assert "max |Δ| u8" in capsys.readouterr().out


def test_synthesis_benchmark_refuses_a_bottleneck_too_small_and_takes_fewer_downsamplings(capsys):
    # the local stage at 64x32 crashed in the residual blocks' reflection padding (a 2x1 bottleneck)
    with pytest.raises(ConfigError) as e:   # refused before any work: one error line, status 1
        S.main(["--stage", "local", "--res", "64x32", "--ngf", "4", "--n_blocks_global", "1", "--n_blocks_local",
                "1", "--label_nc", "5", "--steps", "1", "--warmup", "0", "--no_baseline"])
    assert re.search(r"--res 64x32: the local generator needs sides that are multiples of 32 and at least 64",
                     str(e.value))
    assert S.main(["--stage", "local", "--res", "64x32", "--ngf", "4", "--n_blocks_global", "1", "--n_blocks_local",
                   "1", "--label_nc", "5", "--steps", "1", "--warmup", "0", "--no_baseline",
                   "--n_downsample_global", "2"]) == 0


def test_bad_resolution_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="multiples of 16"):
        T.main(["--stage", "global", "--res", "40x32", "--ngf", "4", "--ndf", "4", "--steps", "1"])


def test_optimizer_benchmark_smoke(capsys):
    from benchmarks import optimizer as O
    assert O.main(["--ngf", "4", "--ndf", "4", "--rounds", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in O.IMPLS)
    # the fused kernel computes the loop's update (rounding apart)
    diff = float(out.rsplit("after 3 steps: ", 1)[1].split()[0])
    assert diff < 1e-6


def test_kernel_benchmark_smoke_and_partial_results_on_a_cap(tmp_path, monkeypatch):
    """benchmarks/kernels.py --smoke (tiny layers, Triton interpreter) writes a row per layer,
    method, layout and pass; killed mid-run (gpu_check's time cap), the layers measured so far are
    on disk: it saves after every layer."""
    from benchmarks import kernels as BK

    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "0")  # main() sets it; restored after
    # --smoke's three kinds of layer (relu; residual, no activation; leaky_relu) with fewer
    # channels: the interpreter runs one NCHW program per channel, seconds per fused row.
    monkeypatch.setattr(BK, "smoke_layers", lambda: [BK.Layer("tiny relu", 3, 6, 5, "relu", False, 2),
                                                      BK.Layer("tiny res", 4, 5, 3, "none", True, 3),
                                                      BK.Layer("tiny lrelu", 2, 3, 7, "leaky_relu", False, 1)])
    js, md = tmp_path / "k.json", tmp_path / "k.md"
    assert BK.main(["--smoke", "--dtype", "fp32", "--json", str(js), "--markdown", str(md)]) == 0
    rec = json.loads(js.read_text())
    layers = [layer.name for layer in BK.smoke_layers()]
    got = {(r["layer"], r["method"], r["layout"], r["pass"]) for r in rec["rows"]}
    assert got == {(n, m, lay, p) for n in layers for m in ("fused", "eager")
                   for lay in ("nchw", "cl") for p in ("fwd", "fwd+bwd")}
    assert all(r["ms"] > 0 and r["auto_choice"] in ("triton", "native", "-") for r in rec["rows"])
    assert "weighted total" in md.read_text()

    # The capped run times eager rows only (what gpu_check's capped kernels_compile part keeps;
    # the save after each layer does not depend on the methods, and the fused rows above take
    # seconds per layer in the interpreter).
    timed, time_per_call = [], BK.time_per_call

    def cap(*a, **kw):  # gpu_check's timeout, arriving at the second layer's first timing
        if len(timed) == 4:  # a layer's timings: 2 layouts x 2 passes
            raise KeyboardInterrupt
        timed.append(a)
        return time_per_call(*a, **kw)

    monkeypatch.setattr(BK, "time_per_call", cap)
    js.unlink()
    with pytest.raises(KeyboardInterrupt):
        BK.main(["--smoke", "--dtype", "fp32", "--methods", "eager", "--json", str(js), "--markdown", str(md)])
    rows = json.loads(js.read_text())["rows"]
    assert len(rows) == 4 and {r["layer"] for r in rows} == {layers[0]}


def test_kernel_benchmark_methods_picks_the_columns(tmp_path, monkeypatch):
    """--methods eager times eager rows only and skips 'auto''s measurement (it compares the fused
    kernel with PyTorch: nothing to report beside eager rows); unknown or empty methods, or
    --no_compile leaving none, stop at parsing with the choices named (a ConfigError)."""
    from benchmarks import kernels as BK

    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "0")
    monkeypatch.setattr(BK, "auto_choice", lambda *a: pytest.fail("auto measured without fused rows"))
    js = tmp_path / "k.json"
    assert BK.main(["--smoke", "--dtype", "fp32", "--methods", "eager", "--json", str(js)]) == 0
    rec = json.loads(js.read_text())
    assert rec["methods"] == ["eager"] and not rec["compile"]
    assert {r["method"] for r in rec["rows"]} == {"eager"}
    assert {r["auto_choice"] for r in rec["rows"]} == {"-"}
    assert len(rec["rows"]) == len(BK.smoke_layers()) * 2 * 2   # layouts x passes

    assert BK.parse_args(["--methods", "compile,fused"]).methods == ["fused", "compile"]
    assert BK.parse_args(["--methods", "eager,compile", "--no_compile"]).methods == ["eager"]
    for bad in (["--methods", "triton"], ["--methods", ","], ["--methods", "compile", "--no_compile"]):
        with pytest.raises(ConfigError, match="--methods|--no_compile"):
            BK.parse_args(bad)


def test_kernel_benchmark_byte_floor_charges_no_residual_write_after_activation_none(tmp_path, monkeypatch):
    """A `res norm2+x` layer (activation none) hands dy itself back as d residual: its backward
    floor is read x + read dy + write dx = 3 numel, not 4 (which inflated GB/s by 7/6). With an
    activation after the add, d residual is a tensor of its own and is charged."""
    from benchmarks import kernels as BK

    n, item = 1000, 2
    cases = {("none", True): (3, 3), ("relu", True): (3, 4), ("relu", False): (2, 3),
             ("leaky_relu", False): (2, 3), ("none", False): (2, 3)}
    for (act, res), (f, b) in cases.items():
        assert BK.floor_bytes(BK.Layer("l", 4, 5, 50, act, res, 1), n, item) == (f * n * item, b * n * item)
    # every layer of the real tables, and the rows the script writes, use that model
    for layer in BK.pix2pixhd_layers(2048, 1024):
        if layer.residual:
            assert layer.act == "none"
            assert BK.floor_bytes(layer, n, item)[1] == 3 * n * item
    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "0")
    js = tmp_path / "k.json"
    assert BK.main(["--smoke", "--dtype", "fp32", "--methods", "eager", "--json", str(js)]) == 0
    for r in json.loads(js.read_text())["rows"]:
        numel = 1
        for d in r["shape"]:
            numel *= d
        want = {"fwd": 2 + r["residual"], "fwd+bwd": 2 + r["residual"] + 3}[r["pass"]]
        assert r["floor_bytes"] == want * numel * 4, r


@pytest.mark.parametrize("method", ["eager", "fused"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_kernel_benchmark_backward_returns_dy_as_the_residual_gradient(monkeypatch, method, layout):
    """The timed forward+backward makes no copy training does not make: d residual is dy's own
    storage (an AccumulateGrad into a leaf's .grad cloned it, since the harness still holds dy:
    2 numel of traffic more in both columns, pulling their ratio towards 1)."""
    from benchmarks import kernels as BK

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "0")
    import torch.nn.functional as F

    from pix2pixhd.kernels import instance_norm_act

    def eager(x, r, act):
        return F.instance_norm(x, eps=1e-5) + r

    def fused(x, r, act):
        return instance_norm_act(x, act=act, residual=r, impl="triton")

    fn = {"eager": eager, "fused": fused}[method]
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    x = torch.randn(1, 8, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    r = torch.randn(1, 8, 6, 5).contiguous(memory_format=fmt).requires_grad_()
    g = torch.randn(1, 8, 6, 5).contiguous(memory_format=fmt)
    dx, dr = BK.fwd_bwd(fn, x, r, g, "none")
    assert dr.data_ptr() == g.data_ptr()
    assert dx.shape == x.shape and dx.data_ptr() != g.data_ptr()
    assert x.grad is None and r.grad is None   # nothing accumulated into the leaves


class _FakeClock:
    """A CUDA-event stand-in: every call costs `per_call` ms of 'GPU' time, every event pair
    `overhead` ms more (launch gaps, the events themselves)."""

    def __init__(self, per_call, overhead):
        self.per_call, self.overhead, self.calls, self.running, self.loops = per_call, overhead, 0, False, 0

    def start(self):
        self.running, self.calls = True, 0
        self.loops += 1

    def stop(self):
        self.running = False
        return self.overhead + self.calls * self.per_call


def test_kernel_benchmark_times_a_loop_of_calls_per_event_pair():
    """A small layer's call (a few µs of GPU time) would be swamped by what one event pair adds;
    time_per_call times loops of R calls, R calibrated until a loop covers min_ms, divides by R,
    takes the median over reps, cycles through the input copies, and flushes outside the clock."""
    from benchmarks import kernels as BK

    clock = _FakeClock(per_call=0.004, overhead=0.05)
    seen, flushes, asked = [], [], []

    def call(k):
        assert clock.running
        clock.calls += 1
        seen.append(k)

    def copies(r):
        asked.append(r)
        return 3

    def before():
        assert not clock.running   # the flush is not timed
        flushes.append(1)

    ms, r = BK.time_per_call(call, clock, warmup=2, reps=5, min_ms=1.0, copies=copies, before=before)
    assert r * 0.004 + 0.05 >= 1.0 and r <= 2 * 1.0 / 0.004   # covers min_ms, not far past it
    assert asked == [r]
    assert ms == pytest.approx(0.004 + 0.05 / r)               # the pair's cost amortised
    assert abs(ms - 0.004) / 0.004 < 0.06                      # one call per pair: 0.054, 13x off
    timed = seen[-5 * r:]
    assert timed == [j % 3 for j in range(r)] * 5              # every copy, in turn
    assert len(flushes) == clock.loops >= 2 + 1 + 5            # a flush before every loop
    assert seen[:2] == [0, 0]                                  # warm-up: single calls

    # a call longer than min_ms is timed one per pair, as before
    slow = _FakeClock(per_call=3.0, overhead=0.01)

    def slow_call(k):
        slow.calls += 1

    ms, r = BK.time_per_call(slow_call, slow, warmup=1, reps=3, min_ms=1.0)
    assert r == 1 and ms == pytest.approx(3.01)


def test_kernel_benchmark_input_copies_keep_layout_and_grad():
    from benchmarks import kernels as BK

    x = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(1, 4, 8, 8)
    nbytes = 2 * x.numel() * 4
    sets = BK.input_copies((x, None, g), r=50, rotate_bytes=5 * nbytes)
    assert len(sets) == 5 and sets[0][0] is x          # enough to cover rotate_bytes, the first is x
    for a, none, b in sets[1:]:
        assert none is None and a.requires_grad and a.is_leaf and not b.requires_grad
        assert a.is_contiguous(memory_format=torch.channels_last) and a.data_ptr() != x.data_ptr()
        torch.testing.assert_close(a, x)
    assert len(BK.input_copies((x, None, g), r=3, rotate_bytes=10 ** 9)) == 3   # never more than R
    assert len(BK.input_copies((x, None, g), r=50, rotate_bytes=0)) == 1        # CPU: no L2 to beat


def test_kernel_benchmark_rows_say_how_many_calls_each_timing_covered(tmp_path, monkeypatch):
    """End to end (CPU, eager): each row records the R its timing covered (time_per_call's own
    calibration is tested with fake clocks above; here every timing's R is made distinct, so a
    row that drops, repeats or swaps them fails; real times under load made R alone flaky)."""
    from benchmarks import kernels as BK

    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "0")
    given, real = [], BK.time_per_call

    def distinct_r(*a, **kw):
        ms, _ = real(*a, **kw)
        given.append(7 + len(given))
        return ms, given[-1]
    monkeypatch.setattr(BK, "time_per_call", distinct_r)
    js = tmp_path / "k.json"
    assert BK.main(["--smoke", "--dtype", "fp32", "--methods", "eager", "--min_ms", "5",
                    "--json", str(js)]) == 0
    rows = json.loads(js.read_text())["rows"]
    assert rows and len(given) == len(rows)
    assert sorted(r["calls_per_timing"] for r in rows) == given


TINY_TRAIN = ["--res", "32x32", "--ngf", "4", "--ndf", "4", "--n_downsample_global", "2",
              "--n_layers_D", "2", "--n_blocks_global", "1", "--n_blocks_local", "1", "--label_nc", "5",
              "--no_vgg_loss"]


def test_train_benchmark_times_steps_with_the_phase_timer_off(tmp_path, monkeypatch):
    """On a GPU the PhaseTimer synchronises at every mark (6-8 per step): the steps whose wall time
    makes step ms, img/s, TFLOP/s and MFU run with it off, and the phase columns come from other
    steps. Spy: every step time in the rows was measured while no timer mark was enabled."""
    from pix2pixhd.trainer import PhaseTimer

    marks, step_timer_on, real_timed = [], {}, B.timed
    real_mark = PhaseTimer.mark

    def spy_mark(self, name):
        marks.append(self.enabled)
        return real_mark(self, name)

    def spy_timed(fn, device):
        marks.clear()
        ms, cpu_ms = real_timed(fn, device)
        tag = 1000.0 + len(step_timer_on)   # a unique 'time' to find the step in the rows
        step_timer_on[tag] = any(marks)
        assert marks, "the step made no phase marks"
        return tag, cpu_ms

    monkeypatch.setattr(PhaseTimer, "mark", spy_mark)
    monkeypatch.setattr(T.B, "timed", spy_timed)
    out = tmp_path / "t.json"
    assert T.main(["--stage", "global", *TINY_TRAIN, "--steps", "3", "--warmup", "1",
                   "--phase_steps", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == ["baseline (reference-style)", "ours fp32"]
    for r in rows:
        assert len(r["step_ms_all"]) == r["timed_steps"] == 3
        assert not any(step_timer_on[t] for t in r["step_ms_all"]), r["step_ms_all"]
        assert r["phase_steps"] == 2 and r["warmup_steps"] == 1
        assert {"prepare", "G_forward", "G_backward", "optimizer"} <= set(r["phases_ms"])
        assert all(v > 0 for v in r["phases_ms"].values())
    assert sum(step_timer_on.values()) == 2 * 2   # the phase steps, each path


def test_train_benchmark_writes_each_configuration_as_it_finishes(tmp_path, monkeypatch):
    """A time cap that kills the run during the local stage leaves the global rows on disk."""
    out = tmp_path / "t.json"
    real = T.run_config
    calls = []

    def run_config(args, stage, *a, **kw):
        calls.append(stage)
        if stage == "local":
            assert json.loads(out.read_text())["rows"], "nothing on disk after the first configuration"
            raise KeyboardInterrupt   # the cap
        return real(args, stage, *a, **kw)

    monkeypatch.setattr(T, "run_config", run_config)
    with pytest.raises(KeyboardInterrupt):
        T.main(["--stage", "global,local", *TINY_TRAIN, "--steps", "1", "--warmup", "0", "--json", str(out)])
    assert calls == ["global", "local"]
    rec = json.loads(out.read_text())
    assert [(r["stage"], r["path"]) for r in rec["rows"]] == [
        ("global", "baseline (reference-style)"), ("global", "ours fp32")]
    assert not list(tmp_path.glob("*.tmp"))   # written through a temporary file and a rename


def test_train_benchmark_max_seconds_also_cuts_the_warm_up(tmp_path, monkeypatch, capsys):
    n = []
    real_timed = B.timed
    monkeypatch.setattr(T.B, "timed", lambda fn, device: (n.append(1), real_timed(fn, device))[1])
    out = tmp_path / "t.json"
    assert T.main(["--stage", "global", *TINY_TRAIN, "--steps", "4", "--warmup", "3",
                   "--max_seconds", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(--max_seconds 0: warm-up cut at 1 of 3 steps)" in text
    assert "(--max_seconds 0: 1 of 4 timed steps)" in text
    rows = json.loads(out.read_text())["rows"]
    for r in rows:
        assert (r["warmup_steps"], r["timed_steps"], r["phase_steps"]) == (1, 1, 1)
        assert r["phases_ms"]
    assert len(n) == 2 * 3   # two paths: one warm-up, one timed, one phase step each


def test_train_benchmark_rows_name_the_peak_they_divide_by(tmp_path):
    assert T.row_peak(None, "NVIDIA H100 PCIe", "bf16") == (756.5, "data sheet: H100 PCIe, bf16")
    assert T.row_peak(None, "NVIDIA H100 NVL", "fp32") == (417.5, "data sheet: H100 NVL, fp32")
    assert T.row_peak(None, "NVIDIA H200", "bf16") == (989.4, "data sheet: H200, bf16")
    assert T.row_peak(None, None, "fp32") == (None, None)            # CPU
    assert T.row_peak(None, "Some GPU", "fp32") == (None, None)
    assert T.row_peak(123.0, "NVIDIA H100 PCIe", "bf16") == (123.0, "--peak_tflops")
    out = tmp_path / "t.json"
    assert T.main(["--stage", "global", *TINY_TRAIN, "--steps", "1", "--warmup", "0",
                   "--peak_tflops", "0.5", "--json", str(out)]) == 0
    for r in json.loads(out.read_text())["rows"]:
        assert r["peak_tflops"] == 0.5 and r["peak_source"] == "--peak_tflops"
        assert r["util_pct"] == pytest.approx(100 * r["tflops"] / 0.5)
        assert r["arch"]["niter_fix_global"] == 0 and r["arch"]["global_frozen"] is False

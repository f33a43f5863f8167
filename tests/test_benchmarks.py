"""The benchmarks: the reference-style baseline computes what our Trainer computes (so the speed
ratio compares equal work), it really is reference-style, and the two scripts run end to end at
tiny sizes and write their JSON records. No test looks at a time or a speed ratio."""
import json

import pytest
import torch

from pix2pixhd.config import TrainConfig
from pix2pixhd.distributed import DistInfo
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
        assert {"data", "G_forward", "G_backward", "optimizer"} <= set(r["phases_ms"])
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


def test_bad_resolution_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="multiples of 16"):
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
    js, md = tmp_path / "k.json", tmp_path / "k.md"
    assert BK.main(["--smoke", "--dtype", "fp32", "--json", str(js), "--markdown", str(md)]) == 0
    rec = json.loads(js.read_text())
    layers = [layer.name for layer in BK.smoke_layers()]
    got = {(r["layer"], r["method"], r["layout"], r["pass"]) for r in rec["rows"]}
    assert got == {(n, m, lay, p) for n in layers for m in ("fused", "eager")
                   for lay in ("nchw", "cl") for p in ("fwd", "fwd+bwd")}
    assert all(r["ms"] > 0 and r["auto_choice"] in ("triton", "native", "-") for r in rec["rows"])
    assert "weighted total" in md.read_text()

    calls = []

    def cap(*a):  # gpu_check's timeout, arriving during the second layer
        calls.append(a)
        if len(calls) > 2:  # auto_choice runs twice per layer (both layouts)
            raise KeyboardInterrupt
        return "-"

    monkeypatch.setattr(BK, "auto_choice", cap)
    js.unlink()
    with pytest.raises(KeyboardInterrupt):
        BK.main(["--smoke", "--dtype", "fp32", "--json", str(js), "--markdown", str(md)])
    rows = json.loads(js.read_text())["rows"]
    assert rows and {r["layer"] for r in rows} == {layers[0]}


def test_kernel_benchmark_methods_picks_the_columns(tmp_path, monkeypatch):
    """--methods eager times eager rows only and skips 'auto''s measurement (it compares the fused
    kernel with PyTorch: nothing to report beside eager rows); unknown or empty methods, or
    --no-compile leaving none, stop at parsing with the choices named."""
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
    assert BK.parse_args(["--methods", "eager,compile", "--no-compile"]).methods == ["eager"]
    for bad in (["--methods", "triton"], ["--methods", ","], ["--methods", "compile", "--no-compile"]):
        with pytest.raises(SystemExit):
            BK.parse_args(bad)

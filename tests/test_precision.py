"""--precision bf16/fp16 through torch.amp, --channels_last and --compile on CPU, tiny models.

bf16 must really run in bf16 (the convolutions' outputs are bf16), stay finite and learn (a
fixed-batch overfit whose loss falls); fp16 has a GradScaler whose state is in the checkpoint
and comes back on resume; fp32 and bf16 have none.
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer_step import fake_batch, tiny_cfg  # noqa: E402

from pix2pixhd.trainer import Trainer  # noqa: E402


def _conv_output_dtypes(module: torch.nn.Module) -> set:
    seen = set()
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    return seen


def test_bf16_runs_in_bf16_stays_finite_and_overfits_one_batch(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(tmp_path, precision="bf16"))
    assert not tr.scaler.is_enabled()  # bf16 needs no loss scaling
    g_dtypes, d_dtypes = _conv_output_dtypes(tr.G), _conv_output_dtypes(tr.D)
    batch = fake_batch(n=1, h=32, w=32)
    hist = [tr.train_step(batch) for _ in range(16)]
    assert g_dtypes == {torch.bfloat16} and d_dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())  # fp32 master weights
    for losses in hist:
        assert all(torch.isfinite(v) for v in losses.values()), losses
    # one fixed batch: G learns to match D's features of the real image (feature matching),
    # and D learns to score the real image as real
    first, last = hist[0], hist[-1]
    assert last["G_GAN_Feat"] < 0.85 * first["G_GAN_Feat"], (first, last)
    assert last["D_real"] < 0.85 * first["D_real"], (first, last)


def test_fp16_scaler_state_is_checkpointed_and_resumed(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg(tmp_path, precision="fp16")
    tr = Trainer(cfg)
    assert tr.scaler.is_enabled()
    seen = _conv_output_dtypes(tr.G)
    for i in range(3):
        losses = tr.train_step(fake_batch(seed=i))
        assert all(torch.isfinite(v) for v in losses.values())
    assert seen == {torch.float16}
    tr.save("latest")
    from pix2pixhd.checkpoint import load_checkpoint
    saved = load_checkpoint(tmp_path / "t")["scaler"]
    assert saved and saved["scale"] == tr.scaler.get_scale()
    resumed = Trainer(tiny_cfg(tmp_path, precision="fp16", resume=True))
    assert resumed.scaler.get_scale() == saved["scale"]
    assert resumed.scaler.state_dict()["_growth_tracker"] == saved["_growth_tracker"]
    for prec in ("fp32", "bf16"):
        t = Trainer(tiny_cfg(tmp_path, name=prec, precision=prec))
        t.train_step(fake_batch())
        assert t.state_dict()["scaler"] == {}


def test_channels_last_keeps_the_layout_and_the_numbers(tmp_path):
    batch = fake_batch(n=2, h=32, w=32)
    out = {}
    for cl in (False, True):
        torch.manual_seed(0)
        tr = Trainer(tiny_cfg(tmp_path, name=f"cl{cl}", channels_last=cl))
        x, real, _ = tr.prepare(batch)
        assert x.is_contiguous(memory_format=torch.channels_last) == cl
        w = tr.G.model[1].weight
        assert w.is_contiguous(memory_format=torch.channels_last) == cl
        out[cl] = {k: float(v) for k, v in tr.train_step(batch).items()}
    for k in out[False]:
        assert out[True][k] == pytest.approx(out[False][k], rel=1e-4, abs=1e-5), k


def test_compile_wraps_g_and_d_in_place_and_trains_the_same(tmp_path, monkeypatch):
    # Inductor needs minutes of C++ compilation on this CPU; aot_eager runs the same dynamo +
    # AOTAutograd graph capture without code generation, which is what the wiring must survive.
    calls = []
    orig = torch.nn.Module.compile

    def compile_aot_eager(self, *a, **kw):
        calls.append(type(self).__name__)
        return orig(self, backend="aot_eager")
    monkeypatch.setattr(torch.nn.Module, "compile", compile_aot_eager)
    batch = fake_batch(n=1, h=32, w=32)
    res = {}
    for comp in (False, True):
        torch.manual_seed(0)
        tr = Trainer(tiny_cfg(tmp_path, name=f"c{comp}", compile=comp))
        res[comp] = [{k: float(v) for k, v in tr.train_step(batch).items()} for _ in range(2)]
        if comp:
            assert sorted(calls) == ["GlobalGenerator", "MultiscaleDiscriminator"]
            assert "model.1.weight" in tr.G.state_dict()  # keys unchanged: checkpoints interchange
    for a, b in zip(res[False], res[True]):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), k

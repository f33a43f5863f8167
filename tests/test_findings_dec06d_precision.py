"""Precision and compile in the training loop: --compile draws eager's dropout masks, fp16's
skipped optimizer steps are counted in the log and said once, the summary's images_per_s leaves
out the first step (first_step_s), and the non-finite-loss advice follows the run's precision."""
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from pix2pixhd.cli import train_main
from pix2pixhd.layers import Dropout
from pix2pixhd.trainer import NonFiniteLossError, Trainer
from tests.test_pix2pix_e2e import _ab_images

SIZE = 64
TINY = ["--model", "pix2pix", "--netG_pix2pix", "resnet_6blocks", "--ngf", "8", "--ndf", "8",
        "--direction", "BtoA", "--loadSize", str(SIZE), "--fineSize", str(SIZE), "--nThreads", "0",
        "--device", "cpu", "--no_progress", "--no_tensorboard", "--no_html", "--print_freq", "1",
        "--display_freq", "1000", "--niter", "1", "--niter_decay", "0", "--deterministic"]


@pytest.fixture(scope="module")
def ab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ab")
    _ab_images(root / "train", 3)
    return root


def _train(tmp_path: Path, root: Path, name: str, *args) -> list[dict]:
    assert train_main(["--dataroot", str(root), "--checkpoints_dir", str(tmp_path), "--name", name,
                       *TINY, *args]) == 0
    return [json.loads(line) for line in (tmp_path / name / "loss_history.jsonl").read_text().splitlines()]


def _summary(out: str) -> dict:
    return json.loads(out[out.index("\n{") + 1:])


def _compile_runs() -> str | None:
    """Why torch.compile (inductor) cannot run here, or None."""
    try:
        torch.compile(lambda x: x * 2)(torch.ones(2))
    except Exception as e:   # no C compiler, an unsupported platform
        return f"torch.compile cannot run here: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def test_compiled_networks_draw_the_eager_dropout_masks():
    why = _compile_runs()
    if why:
        pytest.skip(why)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Dropout(0.5), nn.Conv2d(8, 3, 1))
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(1)
    eager = net(x)
    # the trainer's --compile (its pix2pix step 1, 128 px: D_fake 0.811851 eager, 0.812163 compiled)
    fake = SimpleNamespace(cfg=SimpleNamespace(compile=True), G=net, D=None, E=None,
                           dist=SimpleNamespace(distributed=False))
    Trainer._wrap_distributed(fake)
    torch.manual_seed(1)
    compiled = net(x)
    assert net._compiled_call_impl is not None
    # inductor's own generator drew other masks (nearly every value differed)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    # given to the compiled modules only, not set for the process
    assert torch._inductor.config.fallback_random is False


def test_fp16_skipped_steps_are_counted_in_the_log_and_said_once(tmp_path, ab_root, monkeypatch, capsys):
    init, step, calls = torch.amp.GradScaler.__init__, torch.amp.GradScaler.step, []

    def low_scale(self, *a, **k):   # 2**16 overflows this tiny run's fp16 gradients by itself
        init(self, *a, **{**k, "init_scale": 256.0})

    def overflow_step_2_G(self, opt, *a, **k):   # pix2pix steps D, then G: call 4 is step 2's G
        calls.append(opt)
        if len(calls) == 4:
            next(p for g in opt.param_groups for p in g["params"] if p.grad is not None).grad.view(-1)[0] = float("inf")
        return step(self, opt, *a, **k)
    monkeypatch.setattr(torch.amp.GradScaler, "__init__", low_scale)
    monkeypatch.setattr(torch.amp.GradScaler, "step", overflow_step_2_G)
    hist = _train(tmp_path, ab_root, "fp16", "--precision", "fp16", "--max_steps", "3")
    err = capsys.readouterr().err
    assert [(h["step"], h["skipped_steps"], h["loss_scale"]) for h in hist] == \
        [(1, 0, 256.0), (2, 1, 128.0), (3, 0, 128.0)]
    assert err.count("note: fp16: step 2 had inf/NaN gradients") == 1
    assert "lowered the loss scale to 128; skipped steps are counted in the log" in err
    log = (tmp_path / "fp16" / "loss_log.txt").read_text()
    assert "loss_scale: 128.0000 skipped_steps: 1\n" in log

    monkeypatch.setattr(torch.amp.GradScaler, "step", step)   # fp32: no scaler, no such extras
    hist = _train(tmp_path, ab_root, "fp32", "--max_steps", "1")
    assert "loss_scale" not in hist[0] and "skipped_steps" not in hist[0]
    assert "note: fp16" not in capsys.readouterr().err


def test_summary_images_per_s_leaves_out_the_first_step(tmp_path, ab_root, monkeypatch, capsys):
    step = Trainer.train_step

    def slow_first(self, batch):
        if self.global_step == 0:
            time.sleep(1.0)   # a compilation's wait
        return step(self, batch)
    monkeypatch.setattr(Trainer, "train_step", slow_first)
    monkeypatch.setattr(nn.Module, "compile", lambda self, **k: None)   # --compile's note, no compile
    _train(tmp_path, ab_root, "run", "--niter", "2", "--compile")   # 2 epochs x 3 steps
    out = capsys.readouterr()
    s = _summary(out.out)
    assert out.err.count("note: --compile: the networks compile during the first step") == 1
    assert s["steps"] == 6 and s["images"] == 6 and s["first_step_s"] >= 1.0
    assert s["images_per_s"] == pytest.approx(5 / (s["seconds"] - s["first_step_s"]), rel=0.05)
    assert s["images_per_s"] > s["images"] / s["seconds"]   # the slow first step left out


@pytest.mark.parametrize("precision, advice", [
    ("fp16", "Try a lower --lr, --precision bf16 or fp32, or check the data."),
    ("bf16", "Try a lower --lr, --precision fp32, or check the data."),
    ("fp32", "Try a lower --lr, or check the data.")])
def test_non_finite_loss_advice_follows_the_precision(tmp_path, precision, advice):
    fake = SimpleNamespace(cfg=SimpleNamespace(precision=precision), exp_dir=tmp_path, _stepped=[],
                           epoch=1, iter_in_epoch=0, global_step=0)
    with pytest.raises(NonFiniteLossError) as e:
        Trainer._check_finite(fake, {"G_GAN": torch.tensor(float("nan"))})
    assert str(e.value).endswith(advice)

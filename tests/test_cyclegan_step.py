"""One CycleGAN step and its history pool: the reference's losses and gradients recomputed by hand
from the pre-step networks (G on adversarial + cycle + identity with both Ds frozen, D_A and D_B on
½(real + pooled fake)), the pool's rule and its exact state round trip, the non-finite guard, and
bf16 / fp16 / channels-last as for the other models."""
import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from pix2pixhd.config import TrainConfig
from pix2pixhd.image_pool import ImagePool
from pix2pixhd.trainer import NonFiniteLossError, Trainer, _unwrap

KEYS = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_cyclegan(tmp_path, **kw) -> TrainConfig:
    base = dict(model="cyclegan", name="c", checkpoints_dir=str(tmp_path), ngf=4, ndf=4,
                netG_pix2pix="resnet_6blocks", netD_pix2pix="n_layers", n_layers_D=2, no_tensorboard=True, no_html=True,
                no_progress=True, device="cpu", nThreads=0, pool_size=3)
    base.update(kw)
    return TrainConfig(**base).resolved()


def unpaired_batch(n=2, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.int64).to(torch.uint8),
            "B": torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.int64).to(torch.uint8),
            "path": ["a.png"] * n, "path_B": ["b.png"] * n}


def test_one_step_is_the_references_recipe(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cyclegan(tmp_path))
    G0, D0 = copy.deepcopy(_unwrap(tr.G)), copy.deepcopy(_unwrap(tr.D))
    batch = unpaired_batch()
    losses = tr.train_step(batch)
    assert list(losses) == KEYS

    # The reference, from the pre-step networks, every pass separate (as its code runs them).
    A, B = (batch[k].float() / 127.5 - 1 for k in ("A", "B"))
    fake_B, fake_A = G0.G_A(A), G0.G_B(B)
    rec_A, rec_B = G0.G_B(fake_B), G0.G_A(fake_A)
    mse = lambda p, t: F.mse_loss(p, torch.full_like(p, t))  # noqa: E731 (LSGAN)
    D0.requires_grad_(False)
    ref = {"G_A": mse(D0.D_A(fake_B), 1.0), "G_B": mse(D0.D_B(fake_A), 1.0),
           "cycle_A": F.l1_loss(rec_A, A) * 10, "cycle_B": F.l1_loss(rec_B, B) * 10,
           "idt_A": F.l1_loss(G0.G_A(B), B) * 10 * 0.5, "idt_B": F.l1_loss(G0.G_B(A), A) * 10 * 0.5}
    sum(ref.values()).backward()
    D0.requires_grad_(True)
    # the pool is empty at the first step: D sees this step's fakes
    ref["D_A"] = 0.5 * (mse(D0.D_A(B), 1.0) + mse(D0.D_A(fake_B.detach()), 0.0))
    ref["D_B"] = 0.5 * (mse(D0.D_B(A), 1.0) + mse(D0.D_B(fake_A.detach()), 0.0))
    (ref["D_A"] + ref["D_B"]).backward()
    for k in KEYS:
        assert losses[k].item() == pytest.approx(ref[k].item(), rel=1e-5, abs=1e-7), k

    # the gradients the optimizers stepped on are the reference's: G's from L_G alone (no D
    # gradient from the G pass, none of D's loss in G), D's from ½(real + fake) alone
    for name, mine, theirs in (("G", _unwrap(tr.G), G0), ("D", _unwrap(tr.D), D0)):
        scale = max(p.grad.abs().max().item() for p in theirs.parameters())
        for (n, p), q in zip(mine.named_parameters(), theirs.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale, msg=f"{name}.{n}")
    # one Adam over G_A + G_B (the reference's order), one over D_A + D_B; both stepped
    g_params = list(itertools.chain(_unwrap(tr.G).G_A.parameters(), _unwrap(tr.G).G_B.parameters()))
    assert [p for group in tr.opt_G.param_groups for p in group["params"]] == g_params
    assert tr.opt_G.param_groups[0]["betas"] == (0.5, 0.999) and tr.opt_G.param_groups[0]["lr"] == 0.0002
    moved = [not torch.equal(p, q) for p, q in zip(_unwrap(tr.D).parameters(), D0.parameters())]
    assert all(moved)


def test_without_identity_loss_the_identity_passes_are_not_run(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cyclegan(tmp_path, lambda_identity=0.0))
    calls = []
    _unwrap(tr.G).G_A.register_forward_hook(lambda *a: calls.append("G_A"))
    losses = tr.train_step(unpaired_batch())
    assert calls == ["G_A", "G_A"]            # fake_B and rec_B only
    assert losses["idt_A"].item() == losses["idt_B"].item() == 0.0


def test_no_pool_trains_d_on_the_fakes_of_the_step(tmp_path):
    """--pool_size 0 (no history): D trains on this step's fakes, detached (it backpropagated
    into G's freed graph: 'Trying to backward through the graph a second time')."""
    torch.manual_seed(0)
    tr = Trainer(tiny_cyclegan(tmp_path, pool_size=0))
    before = {k: v.clone() for k, v in _unwrap(tr.D).state_dict().items()}
    losses = tr.train_step(unpaired_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(v, before[k]) for k, v in _unwrap(tr.D).state_dict().items())


def test_pool_rule_history_and_exact_state_round_trip():
    pool = ImagePool(4, seed=0)
    imgs = [torch.full((1, 1, 2, 2), float(i)) for i in range(200)]
    first = [pool.query(imgs[i]) for i in range(4)]        # filling: the new images come back
    assert all(torch.equal(a, b) for a, b in zip(first, imgs[:4]))
    state = copy.deepcopy(pool.state_dict())
    returned = [int(pool.query(imgs[i]).flatten()[0]) for i in range(4, 200)]
    old = [r for i, r in zip(range(4, 200), returned) if r != i]
    assert 70 <= len(old) <= 126                          # a coin per image: about half come from the past
    assert all(r <= i for i, r in zip(range(4, 200), returned))   # this one, or an older one
    assert len(old) == len(set(old))                      # an image handed out leaves the pool
    again = ImagePool(4, seed=123)                        # another seed, then the saved state
    again.load_state_dict(state)
    assert [int(again.query(imgs[i]).flatten()[0]) for i in range(4, 200)] == returned
    batch = torch.randn(3, 2, 4, 4)
    none = ImagePool(0).query(batch)   # the batch itself (same storage), detached
    assert none.data_ptr() == batch.data_ptr() and not none.requires_grad
    with pytest.raises(ValueError, match="--pool_size 4"):
        ImagePool(5).load_state_dict(state)


def test_non_finite_loss_updates_no_weight(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cyclegan(tmp_path))
    before = {k: v.clone() for k, v in _unwrap(tr.G).state_dict().items()}
    before_d = {k: v.clone() for k, v in _unwrap(tr.D).state_dict().items()}
    with torch.no_grad():
        _unwrap(tr.D).D_B.model[0].weight.fill_(float("nan"))   # G_B's adversarial loss: NaN
    with pytest.raises(NonFiniteLossError, match="G_B"):
        tr.train_step(unpaired_batch())
    assert all(torch.equal(v, _unwrap(tr.G).state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, _unwrap(tr.D).state_dict()[k]) for k, v in before_d.items() if "D_B.model.0" not in k)


def _conv_output_dtypes(module):
    seen = set()
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    return seen


def test_bf16_runs_in_bf16_and_fp16_checkpoints_its_scaler(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cyclegan(tmp_path, name="bf16", precision="bf16"))
    g_dtypes, d_dtypes = _conv_output_dtypes(tr.G), _conv_output_dtypes(tr.D)
    hist = [tr.train_step(unpaired_batch(seed=i % 2)) for i in range(4)]
    assert g_dtypes == {torch.bfloat16} and d_dtypes == {torch.bfloat16}
    assert not tr.scaler.is_enabled() and all(p.dtype == torch.float32 for p in tr.G.parameters())
    assert all(torch.isfinite(v) for h in hist for v in h.values())
    assert tr.pools["fake_B"].images[0].dtype == torch.bfloat16   # the pool keeps what G made
    tr.save("latest")
    resumed = Trainer(tiny_cyclegan(tmp_path, name="bf16", precision="bf16", resume=True))
    for k, p in tr.pools.items():
        assert all(torch.equal(a, b) for a, b in zip(p.images, resumed.pools[k].images))

    tr16 = Trainer(tiny_cyclegan(tmp_path, name="fp16", precision="fp16"))
    g16_dtypes = _conv_output_dtypes(tr16.G)
    assert tr16.scaler.is_enabled()
    for i in range(2):
        assert all(torch.isfinite(v) for v in tr16.train_step(unpaired_batch(seed=i)).values())
    assert g16_dtypes == {torch.float16}
    tr16.save("latest")
    from pix2pixhd.checkpoint import load_checkpoint
    saved = load_checkpoint(tmp_path / "fp16")["scaler"]
    assert saved and saved["scale"] == tr16.scaler.get_scale()
    assert Trainer(tiny_cyclegan(tmp_path, name="fp16", precision="fp16", resume=True)).scaler.get_scale() == saved["scale"]


def test_channels_last_keeps_the_layout_and_the_numbers(tmp_path):
    batch = unpaired_batch()
    out = {}
    for cl in (False, True):
        torch.manual_seed(0)
        tr = Trainer(tiny_cyclegan(tmp_path, name=f"cl{cl}", channels_last=cl))
        w = _unwrap(tr.G).G_B.model[1].weight
        assert w.is_contiguous(memory_format=torch.channels_last) == cl
        out[cl] = {k: float(v) for k, v in tr.train_step(batch).items()}
        fake = tr._last["fake_B"]
        assert fake.is_contiguous(memory_format=torch.channels_last) == cl
        assert tr.pools["fake_A"].images[0].is_contiguous(memory_format=torch.channels_last) == cl
    for k in KEYS:
        assert out[True][k] == pytest.approx(out[False][k], rel=1e-4, abs=1e-5), k

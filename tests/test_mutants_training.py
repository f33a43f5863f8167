"""Tests that kill mutants which survived mutation testing of the training system's behaviour
(trainer.py's schedule, steps, losses, pools and resume; models.py's builders; synthesis.py's
padding, dropout, inference mode and precision; checkpoint.py's RNG states; review MUT8).

Each test checks behaviour against an independent statement of the math (the pix2pixHD, pix2pix
and CycleGAN papers and reference code, the reference's state-dict shapes in
/work/shared/reference, torch's documented dropout, a hand computation), never against the
implementation's own output; a one-line comment names the mutant(s) it kills. Tiny networks and
tensors, one thread, deterministic.
"""
import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pix2pixhd import models
from pix2pixhd.checkpoint import rng_state, seed_rng, set_rng_state
from pix2pixhd.encoding import encode_input, float_to_uint8, image_to_float
from pix2pixhd.synthesis import Synthesizer, _SeededDropout, prepare_generator
from pix2pixhd.trainer import Trainer, _unwrap
from tests.test_cyclegan_step import tiny_cyclegan, unpaired_batch
from tests.test_trainer_step import _p2p_cfg, _rgb_batch, fake_batch, tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

REFERENCE = Path("/work/shared/reference/pix2pixhd_state_dict_shapes.json")


def _hinge_g(logits):
    """The hinge generator loss (Lim & Ye; SAGAN): -mean(D(G(x)))."""
    return -logits.mean()


# kills trainer.py _set_lr: the decayed lr set on opt_G only (D kept the initial lr)
def test_the_decayed_learning_rate_reaches_both_optimizers(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, niter=1, niter_decay=4, lr=0.1))
    tr.epoch = 3   # the reference subtracts lr/niter_decay from G's and D's lr after each epoch past niter
    tr._set_lr()
    for name, opt in (("G", tr.opt_G), ("D", tr.opt_D)):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 - 0.1 / 4]), name


# kills trainer.py _pix2pixhd_step: G's adversarial term called with for_discriminator=True
def test_pix2pixhd_hinge_generator_loss_is_minus_the_mean_logit(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, gan_mode="hinge"))
    G0, D0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    batch = fake_batch()
    losses = tr.train_step(batch)
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    with torch.no_grad():
        pred = D0(torch.cat([x, G0(x)], 1))
    expected = sum(_hinge_g(scale[-1]) for scale in pred)   # summed over the D scales
    assert losses["G_GAN"].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)


# kills trainer.py _pix2pix_step: for_discriminator=True in G's term; lambda_GAN dropped; D's loss
# not halved
def test_pix2pix_step_weights_hinge_gan_by_lambda_gan_and_halves_d(tmp_path):
    cfg = _p2p_cfg(tmp_path, gan_mode="hinge", lambda_GAN=2.5)
    tr = Trainer(cfg)
    G0, D0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    batch = _rgb_batch()
    torch.manual_seed(123)   # dropout: the same masks for the recomputation
    losses = tr.train_step(batch)
    D1 = copy.deepcopy(tr.D)  # pix2pix: G trains against the D that has stepped
    x, real = image_to_float(batch["label"]), image_to_float(batch["image"])
    torch.manual_seed(123)
    fake = G0(x)
    g_gan = _hinge_g(D1(torch.cat([x, fake], 1)))
    assert losses["G_GAN"].item() == pytest.approx(g_gan.item(), rel=1e-5, abs=1e-7)
    # Adam's first moment after one step is (1 - beta1) * grad: the gradients the trainer used
    (2.5 * g_gan + cfg.lambda_L1 * F.l1_loss(fake, real)).backward()
    for p, q in zip(tr.G.parameters(), G0.parameters()):
        torch.testing.assert_close(tr.opt_G.state[p]["exp_avg"] / (1 - cfg.beta1), q.grad, rtol=1e-3, atol=1e-6)
    # D: the paper's objective divided by 2, hinge: relu(1 - D(x, y)) + relu(1 + D(x, G(x)))
    d_fake = F.relu(1 + D0(torch.cat([x, fake.detach()], 1))).mean()   # fake first, as the step
    d_real = F.relu(1 - D0(torch.cat([x, real], 1))).mean()
    (0.5 * (d_fake + d_real)).backward()
    for p, q in zip(tr.D.parameters(), D0.parameters()):
        torch.testing.assert_close(tr.opt_D.state[p]["exp_avg"] / (1 - cfg.beta1), q.grad, rtol=1e-3, atol=1e-7)


class _TinyFeatures(nn.Module):
    """Five feature maps, as VGG19Features gives (a stand-in: the loss's math is under test)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        outs, h = [], self.conv(x)
        for _ in range(5):
            outs.append(h)
            h = F.avg_pool2d(torch.tanh(h), 2)
        return outs


# kills trainer.py _pix2pixhd_step: self.vgg(real, fake) (the VGG term's gradient left G)
def test_vgg_term_adds_lambda_feat_times_its_gradient_to_g(tmp_path):
    torch.manual_seed(7)
    feats = _TinyFeatures()
    batch = fake_batch()
    grads = {}
    for vgg in (False, True):
        tr = Trainer(tiny_cfg(tmp_path / str(vgg), no_vgg_loss=not vgg), vgg=feats if vgg else None)
        G0 = copy.deepcopy(tr.G)
        losses = tr.train_step(batch)
        grads[vgg] = [p.grad.clone() for p in tr.G.parameters()]
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    fake, real = G0(x), image_to_float(batch["image"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)   # ImageNet, on [0, 1] images
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    norm = lambda t: ((t + 1) / 2 - mean) / std  # noqa: E731
    with torch.no_grad():
        real_f = feats(norm(real))
    vgg = sum(w * F.l1_loss(f, r) for w, f, r in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), feats(norm(fake)), real_f))
    assert losses["G_VGG"].item() == pytest.approx(10 * vgg.item(), rel=1e-5)
    expected = torch.autograd.grad(10 * vgg, list(G0.parameters()))
    moved = 0
    for g0, g1, e in zip(grads[False], grads[True], expected):
        torch.testing.assert_close(g1 - g0, e, rtol=1e-3, atol=1e-5)
        moved += int(e.abs().max() > 1e-3)
    assert moved > 3


# kills trainer.py _cyclegan_step: cycle_A weighted by lambda_B; idt_A weighted by lambda_A
def test_cyclegan_cycle_and_identity_terms_take_their_own_lambdas(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cyclegan(tmp_path, lambda_A=10.0, lambda_B=2.0, lambda_identity=0.5))
    G0 = copy.deepcopy(_unwrap(tr.G))
    batch = unpaired_batch()
    losses = tr.train_step(batch)
    A, B = (image_to_float(batch[k]) for k in ("A", "B"))
    with torch.no_grad():   # Zhu et al.: lambda_A |G_B(G_A(A)) - A|, lambda_idt lambda_B |G_A(B) - B|, ...
        ref = {"cycle_A": 10.0 * F.l1_loss(G0.G_B(G0.G_A(A)), A), "cycle_B": 2.0 * F.l1_loss(G0.G_A(G0.G_B(B)), B),
               "idt_A": 2.0 * 0.5 * F.l1_loss(G0.G_A(B), B), "idt_B": 10.0 * 0.5 * F.l1_loss(G0.G_B(A), A)}
    for k, v in ref.items():
        assert losses[k].item() == pytest.approx(v.item(), rel=1e-5), k


# kills trainer.py __init__: both image pools seeded alike (their swap choices in lockstep)
def test_the_two_image_pools_draw_independent_streams(tmp_path):
    tr = Trainer(tiny_cyclegan(tmp_path))
    draws = [torch.rand(16, generator=p.generator) for p in tr.pools.values()]
    assert len(draws) == 2 and not torch.equal(*draws)


# kills trainer.py __init__ (resume reseeds instead of restoring the saved RNG) and
# checkpoint.py set_rng_state (torch's state not restored): pix2pix's dropout masks after a resume
def test_a_pix2pix_resume_continues_the_dropout_stream(tmp_path):
    b1, b2 = _rgb_batch(seed=1), _rgb_batch(seed=2)
    tr = Trainer(_p2p_cfg(tmp_path))
    tr.train_step(b1)
    tr.iter_in_epoch, tr.global_step = 1, 1
    tr.save("latest")
    tr.train_step(b2)                                     # the run in one go
    res = Trainer(_p2p_cfg(tmp_path, resume=True))
    res.train_step(b2)                                    # the run resumed after step 1
    for (k, v), w in zip(tr.G.state_dict().items(), res.G.state_dict().values()):
        assert torch.equal(v, w), k


# kills checkpoint.py set_rng_state: torch's, Python's or NumPy's state not restored
def test_rng_state_round_trip_restores_every_generator():
    seed_rng(3)
    state = rng_state()
    first = (torch.rand(4), random.random(), np.random.rand(4))
    set_rng_state(state)
    again = (torch.rand(4), random.random(), np.random.rand(4))
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and np.array_equal(first[2], again[2])


# kills checkpoint.py seed_rng: NumPy seeded with 0 whatever the seed
def test_seed_rng_seeds_each_generator_from_the_seed():
    seed_rng(1234)
    assert random.random() == random.Random(1234).random()
    assert np.random.rand() == np.random.RandomState(1234).rand()
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(1234)))


# kills trainer.py prepare: --label_feat's regions were the instance map, not the label map
def test_label_feat_encodes_the_label_maps_regions(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, label_feat=True, n_downsample_E=2, nef=4))
    seen = []
    tr.E.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    batch = fake_batch()
    tr.train_step(batch)
    # the reference: if opt.label_feat: inst_map = label_map (E averages within label regions)
    assert len(seen) == 1 and torch.equal(seen[0].long(), batch["label"].long())


# kills models.py build_discriminator: use_sigmoid=True (pix2pixHD's D gives logits; the
# reference's use_sigmoid is no_lsgan, and vanilla here is BCE on logits)
@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla", "hinge"])
def test_pix2pixhd_discriminator_ends_in_logits(tmp_path, gan_mode):
    d = models.build_discriminator(tiny_cfg(tmp_path, gan_mode=gan_mode))
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


# kills models.py build_encoder: E's depth n_downsample_global; E's width ngf
def test_encoder_has_the_references_shapes_whatever_gs_sizes(tmp_path):
    cfg = tiny_cfg(tmp_path, label_nc=35, instance_feat=True, nef=16, n_downsample_E=4, feat_num=3,
                   ngf=8, n_downsample_global=3)
    ref = json.loads(REFERENCE.read_text())["encoder_in3_out3_nef16_nd4"]
    got = {k: list(v.shape) for k, v in models.build_encoder(cfg).state_dict().items()}
    assert got == ref


# kills synthesis.py _SeededDropout._hook: kept units not scaled by 1/(1-p); the keep mask
# inverted (equivalent at p=0.5, the product's only rate; seen at p=0.25)
@pytest.mark.parametrize("p", [0.5, 0.25])
def test_seeded_dropout_is_torchs_inverted_dropout(p):
    model = nn.Sequential(nn.Dropout(p)).train()
    sd = _SeededDropout.of(model)
    with sd.seeded([1, 2]):
        y = model(torch.ones(2, 20000))
    dropped = (y == 0).float().mean().item()
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))   # scaled by 1/(1-p)
    assert abs(dropped - p) < 0.02


def _tiny_hd(tmp_path, **kw):
    cfg = tiny_cfg(tmp_path, no_instance=True, **kw)
    torch.manual_seed(0)
    return models.build_generator(cfg), cfg


# kills synthesis.py Synthesizer.synthesize: run without torch.inference_mode
def test_synthesis_runs_in_inference_mode(tmp_path):
    g, cfg = _tiny_hd(tmp_path)   # a training-mode module with parameters that require grad
    seen = []
    g.register_forward_hook(lambda m, i, o: seen.append((torch.is_inference_mode_enabled(), o.requires_grad)))
    Synthesizer(g, cfg)(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    assert seen == [(True, False)]


# kills synthesis.py Synthesizer.__init__: bf16 and fp16 autocast dtypes swapped
@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_synthesis_precision_runs_g_in_that_dtype(tmp_path, precision, dtype):
    g, cfg = _tiny_hd(tmp_path)
    seen = []
    g.model[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    Synthesizer(g, cfg, precision=precision)(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    assert seen == [dtype]


# kills synthesis.py synthesize: the output cropped from the bottom-right of the padded map
def test_output_is_the_top_left_of_g_on_the_replicate_padded_map(tmp_path):
    g, cfg = _tiny_hd(tmp_path)   # multiple 4
    label = torch.randint(0, 5, (1, 1, 10, 7), generator=torch.Generator().manual_seed(3)).to(torch.uint8)
    out = Synthesizer(g, cfg)(label)
    assert out.shape == (1, 3, 10, 7)
    # by hand: replicate the last row and column to 12 x 8, run G, keep the top-left 10 x 7
    padded = label[..., [*range(10), 9, 9], :][..., [*range(7), 6]]
    with torch.no_grad():
        y = g(encode_input(padded, None, label_nc=5))[..., :10, :7]
    assert torch.equal(out, float_to_uint8(y))


# kills synthesis.py prepare_generator: BatchNorm left on running statistics (pix2pix's test-time
# BatchNorm normalises each image by its own statistics, as at batch size 1 in the paper)
def test_prepared_batchnorm_generator_normalises_each_image_alone(tmp_path):
    cfg = _p2p_cfg(tmp_path)
    assert cfg.norm == "batch"
    torch.manual_seed(0)
    g = models.build_generator(cfg)
    for m in g.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(9.0)
    ref = copy.deepcopy(g).train()
    for m in ref.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    prepare_generator(g, test_dropout=False)
    x = image_to_float(_rgb_batch(n=2)["label"])
    with torch.no_grad():
        y = g(x)
        for i in range(2):
            torch.testing.assert_close(y[i:i + 1], ref(x[i:i + 1]), rtol=1e-4, atol=1e-5)


class _EncodedStub:
    """A FeatureSource in encoded mode for an encoder of 2^4: records the sizes it is given."""
    mode, multiple = "encoded", 16

    def __init__(self):
        self.sizes = []

    def __call__(self, label, inst, image=None, seeds=None):
        self.sizes.append(tuple(label.shape[-2:]))
        return torch.zeros(label.shape[0], 3, *label.shape[-2:])


# kills synthesis.py Synthesizer.__init__: the features' multiple ignored (E's decoder must land
# back on its input's size: 2^n_downsample_E divides it)
def test_maps_are_padded_to_the_feature_encoders_multiple(tmp_path):
    cfg = tiny_cfg(tmp_path, no_instance=True, instance_feat=True, load_features=True, n_downsample_E=4)
    assert cfg.required_multiple == 4   # G's alone: with --load_features the run has no E
    torch.manual_seed(0)
    stub = _EncodedStub()
    synth = Synthesizer(models.build_generator(cfg), cfg, features=stub)
    out = synth(torch.zeros(1, 1, 20, 20, dtype=torch.uint8), inst=torch.zeros(1, 1, 20, 20, dtype=torch.int32),
                image=torch.zeros(1, 3, 20, 20, dtype=torch.uint8))
    assert stub.sizes == [(32, 32)] and out.shape == (1, 3, 20, 20)

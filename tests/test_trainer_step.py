"""One training step on a tiny model: the reference's losses, frozen D during the G pass,
the non-finite guard, the lr schedule, stage transfers and the optimizer that steps."""
import copy
from pathlib import Path

import pytest
import torch

from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import encode_input, image_to_float
from pix2pixhd.losses import GANLoss, VGG19Features, feature_matching_loss
from pix2pixhd.trainer import NonFiniteLossError, Trainer, lr_at_epoch


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(name="t", checkpoints_dir=str(tmp_path), label_nc=5, ngf=4, n_downsample_global=2,
                n_blocks_global=1, n_blocks_local=1, ndf=4, n_layers_D=2, no_vgg_loss=True,
                no_tensorboard=True, no_html=True, no_progress=True, device="cpu", nThreads=0)
    if kw.get("model", "pix2pixhd") != "pix2pixhd":   # pix2pixHD's generator options: refused for the others
        for k in ("n_downsample_global", "n_blocks_global", "n_blocks_local"):
            base.pop(k)
    base.update(kw)
    return TrainConfig(**base).resolved()


def fake_batch(n=2, h=32, w=32, label_nc=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"label": torch.randint(0, label_nc, (n, 1, h, w), generator=g, dtype=torch.int64).to(torch.uint8),
            "inst": torch.randint(0, 3, (n, 1, h, w), generator=g, dtype=torch.int64).to(torch.int32),
            "image": torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.int64).to(torch.uint8),
            "path": ["a.png"] * n}


def test_one_step_losses_match_the_reference_recipe(tmp_path):
    torch.manual_seed(0)
    vgg_file = tmp_path / "vgg.pth"
    torch.save(VGG19Features().state_dict(), vgg_file)
    cfg = tiny_cfg(tmp_path, no_vgg_loss=False, vgg_path=str(vgg_file))
    tr = Trainer(cfg)
    G0, D0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    batch = fake_batch()
    losses = tr.train_step(batch)

    # Recompute from the pre-step weights, the way NVIDIA's code does (two separate D passes).
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    real = image_to_float(batch["image"])
    fake = G0(x)
    gan = GANLoss("lsgan")
    pred_real = D0(torch.cat([x, real], 1))
    pred_fake_det = D0(torch.cat([x, fake.detach()], 1))
    pred_fake = D0(torch.cat([x, fake], 1))
    expected = {
        "D_real": gan(pred_real, True), "D_fake": gan(pred_fake_det, False),
        "G_GAN": gan(pred_fake, True, for_discriminator=False),
        "G_GAN_Feat": feature_matching_loss(pred_fake, pred_real, n_layers_D=2, num_D=2, lambda_feat=10),
        "G_VGG": tr.vgg(fake, real) * 10,
    }
    assert set(losses) == set(expected)
    for k, v in expected.items():
        assert losses[k].item() == pytest.approx(v.item(), rel=1e-4, abs=1e-6), k

    # D's update used exactly the gradient of ½(real + fake): no G-pass gradient leaked into D.
    D_ref = copy.deepcopy(D0)
    loss_D = 0.5 * (gan(D_ref(torch.cat([x, real], 1)), True) + gan(D_ref(torch.cat([x, fake.detach()], 1)), False))
    loss_D.backward()
    for (name, p), (_, q) in zip(tr.D.named_parameters(), D_ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_g_pass_computes_no_discriminator_weight_gradients(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path))
    seen = []
    for p in tr.D.parameters():
        p.register_hook(lambda g: seen.append(1) or g)
    tr.train_step(fake_batch())
    n_d_params = len(list(tr.D.parameters()))
    assert len(seen) == n_d_params  # each D weight got a gradient once: in the D pass only
    assert all(p.requires_grad for p in tr.D.parameters())  # restored after the step


def test_switchable_losses(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, no_ganFeat_loss=True, gan_mode="hinge"))
    assert set(tr.train_step(fake_batch())) == {"D_real", "D_fake", "G_GAN"}


def test_non_finite_loss_stops_before_any_update(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path))
    with torch.no_grad():
        tr.G.model[1].bias.fill_(float("nan"))
    before_g = {k: v.clone() for k, v in tr.G.state_dict().items()}
    before_d = {k: v.clone() for k, v in tr.D.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, iteration 1 \(step 1\).*last good "
                       r"checkpoint.*no weights were updated"):
        tr.train_step(fake_batch())
    for k, v in tr.D.state_dict().items():
        assert torch.equal(v, before_d[k]), k
    for k, v in tr.G.state_dict().items():
        assert torch.equal(v, before_g[k]) or torch.isnan(v).any(), k


def test_pix2pix_non_finite_g_loss_says_d_was_already_updated(tmp_path):
    """pix2pix steps D before G's losses exist (as its reference does): a non-finite G loss must
    not claim that no weights were updated."""
    tr = Trainer(tiny_cfg(tmp_path, model="pix2pix", netG_pix2pix="unet_128", label_nc=0, input_nc=3,
                       ngf=4, ndf=4, n_layers_D=3))
    before_d = {k: v.clone() for k, v in tr.D.state_dict().items()}
    tr.criterion_l1 = lambda fake, real: fake.new_tensor(float("nan"))
    batch = {"label": torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8),
             "image": torch.randint(0, 256, (1, 3, 128, 128), dtype=torch.uint8), "path": ["a.png"]}
    with pytest.raises(NonFiniteLossError, match=r"G_L1.*D had already been updated in this step") as e:
        tr.train_step(batch)
    assert "no weights were updated" not in str(e.value)
    assert any(not torch.equal(v, before_d[k]) for k, v in tr.D.state_dict().items())


def test_lr_schedule_is_the_reference_linear_decay(tmp_path):
    cfg = tiny_cfg(tmp_path, niter=2, niter_decay=4, lr=0.1)
    lrs = [lr_at_epoch(cfg, e) for e in range(1, 7)]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.075, 0.05, 0.025])


def _save_stage(tmp_path, **kw):
    tr = Trainer(tiny_cfg(tmp_path, **kw))
    tr.train_step(fake_batch(h=32, w=32))
    tr.save("latest")
    return tr


def test_global_to_local_transfer_and_frozen_global_part(tmp_path):
    glob = _save_stage(tmp_path, name="g", stage="global", ngf=8)
    cfg = tiny_cfg(tmp_path, name="l", stage="local", ngf=4, load_pretrain=str(tmp_path / "g"),
                   niter_fix_global=1)
    loc = Trainer(cfg)
    gsd, lsd = glob.G.state_dict(), loc.G.state_dict()
    n_global_keys = len([k for k in lsd if k.startswith("model.")])
    assert n_global_keys == len(gsd) - 2  # everything but the final conv's weight and bias
    for k in lsd:
        if k.startswith("model."):
            assert torch.equal(lsd[k], gsd[k]), k
    # D: the global stage's 2 scales go to scales 0 and 1; scale 2 (finest) starts fresh
    for k, v in glob.D.state_dict().items():
        assert torch.equal(loc.D.state_dict()[k], v), k
    assert loc.cfg.num_D == 3
    # frozen global part: no gradients computed, weights unchanged, only the enhancer in the optimizer
    opt_ids = {id(p) for g in loc.opt_G.param_groups for p in g["params"]}
    assert not any(id(p) in opt_ids for p in loc.G.model.parameters())
    before = {k: v.clone() for k, v in loc.G.model.state_dict().items()}
    loc.train_step(fake_batch(h=32, w=32))
    assert all(p.grad is None for p in loc.G.model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in loc.G.model.state_dict().items())
    assert any(p.grad is not None for p in loc.G.model1_1.parameters())
    # after niter_fix_global the optimizer that steps holds every parameter
    loc.epoch = 2
    loc._unfreeze_global()
    opt_ids = {id(p) for g in loc.opt_G.param_groups for p in g["params"]}
    assert opt_ids == {id(p) for p in loc.G.parameters()}
    loc.train_step(fake_batch(h=32, w=32))
    assert not all(torch.equal(v, before[k]) for k, v in loc.G.model.state_dict().items())
    # the learning rate's decay reaches the optimizer that steps (the reference's edited a new one
    # its loop never stepped: its G learning rate never decayed)
    loc.epoch = loc.cfg.niter + 2
    lr = loc._set_lr()
    assert lr < loc.cfg.lr and all(g["lr"] == lr for g in loc.opt_G.param_groups)


@pytest.mark.parametrize("feat_global,feat_local", [(False, False), (False, True), (True, False)])
def test_stages_load_discriminators_trained_with_or_without_feature_matching(tmp_path, feat_global,
                                                                           feat_local):
    """--no_ganFeat_loss names D's keys differently (the reference's getIntermFeat): a global stage
    trained with it loads into a local stage with or without it, and a local stage into finetune."""
    glob = _save_stage(tmp_path, name="g", stage="global", ngf=8, no_ganFeat_loss=not feat_global)
    loc = Trainer(tiny_cfg(tmp_path, name="l", stage="local", ngf=4, load_pretrain=str(tmp_path / "g"),
                           no_ganFeat_loss=not feat_local))
    assert loc.D.get_interm_feat == feat_local
    # the global stage's scales 0 and 1, in the local stage's layout; scale 2 starts fresh
    loaded = loc.D.state_dict()
    glob_sd = loc.D.in_own_layout(glob.D.state_dict())
    assert set(glob_sd) < set(loaded) and len(glob_sd) == 2 * len(loaded) // 3
    for k, v in glob_sd.items():
        assert torch.equal(loaded[k], v), k
    loc.train_step(fake_batch())
    loc.save("latest")
    ft = Trainer(tiny_cfg(tmp_path, name="f", stage="finetune", ngf=4, load_pretrain=str(tmp_path / "l"),
                          no_ganFeat_loss=feat_local))
    assert ft.D.get_interm_feat != feat_local
    for k, v in ft.D.in_own_layout(loc.D.state_dict()).items():
        assert torch.equal(ft.D.state_dict()[k], v), k


def test_finetune_trains_everything_with_the_optimizer_it_steps(tmp_path):
    _save_stage(tmp_path, name="g", stage="global", ngf=8)
    loc = Trainer(tiny_cfg(tmp_path, name="l", stage="local", ngf=4, load_pretrain=str(tmp_path / "g"),
                           niter_fix_global=5))
    loc.train_step(fake_batch())
    loc.save("latest")
    ft = Trainer(tiny_cfg(tmp_path, name="f", stage="finetune", ngf=4, load_pretrain=str(tmp_path / "l")))
    for k, v in loc.G.state_dict().items():
        assert torch.equal(ft.G.state_dict()[k], v), k
    opt_ids = {id(p) for g in ft.opt_G.param_groups for p in g["params"]}
    assert opt_ids == {id(p) for p in ft.G.parameters()}
    before = {k: v.clone() for k, v in ft.G.state_dict().items()}
    ft.train_step(fake_batch())
    changed = [k for k, v in ft.G.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("model.") for k in changed) and any(k.startswith("model1_") for k in changed)


def test_instance_features_encoder_trains_with_g(tmp_path):
    tr = Trainer(tiny_cfg(tmp_path, instance_feat=True, n_downsample_E=2, nef=4))
    assert tr.G.model[1].in_channels == 5 + 1 + 3
    assert tr.D.scale0_layer0[0].in_channels == 5 + 1 + 3
    ids = {id(p) for g in tr.opt_G.param_groups for p in g["params"]}
    assert all(id(p) in ids for p in tr.E.parameters())
    before = [p.clone() for p in tr.E.parameters()]
    tr.train_step(fake_batch())
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.E.parameters()))


def _p2p_cfg(tmp_path, **kw):
    from pix2pixhd.config import model_defaults
    base = dict(model_defaults("pix2pix"), model="pix2pix", netG_pix2pix="unet_128", ngf=4, ndf=4,
                n_layers_D=3)   # basic: the 70x70 PatchGAN (tiny_cfg's 2 is refused there)
    base.update(kw)
    return tiny_cfg(tmp_path, **base)


def _rgb_batch(n=1, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"label": torch.randint(0, 256, (n, 3, size, size), generator=g).to(torch.uint8),
            "image": torch.randint(0, 256, (n, 3, size, size), generator=g).to(torch.uint8),
            "path": ["a.jpg"] * n}


def test_pix2pix_d_steps_first_and_g_trains_against_the_updated_d(tmp_path):
    """D's losses come from the pre-step D; G's cGAN term, and G's gradient, from the D that has
    already stepped. Trained G-first (or with both on the old D), G_GAN and G's gradient would be
    those of D0, which this asserts they are not."""
    cfg = _p2p_cfg(tmp_path)
    tr = Trainer(cfg)
    assert tr.G.training and any(isinstance(m, torch.nn.Dropout) for m in tr.G.modules())
    G0, D0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    batch = _rgb_batch()
    # The U-Net's dropout is the step's only randomness: the same seed before the step and before
    # the recomputation gives the same masks, hence the same fake (checked through G_L1 below).
    torch.manual_seed(123)
    losses = tr.train_step(batch)
    D1 = copy.deepcopy(tr.D)  # D after its one update (the G pass does not touch D's weights)
    assert set(losses) == {"D_real", "D_fake", "G_GAN", "G_L1"}
    assert tr.D.model[0].in_channels == 6  # conditional: input and output concatenated

    x, real = image_to_float(batch["label"]), image_to_float(batch["image"])
    torch.manual_seed(123)
    fake = G0(x)
    gan = GANLoss("vanilla")
    l1 = torch.nn.functional.l1_loss(fake, real)
    assert losses["G_L1"].item() == pytest.approx(l1.item(), rel=1e-6)
    with torch.no_grad():
        assert losses["D_real"].item() == pytest.approx(gan(D0(torch.cat([x, real], 1)), True).item(), rel=1e-5)
        assert losses["D_fake"].item() == pytest.approx(gan(D0(torch.cat([x, fake], 1)), False).item(), rel=1e-5)
        g_gan_old_d = gan(D0(torch.cat([x, fake], 1)), True, for_discriminator=False).item()
    g_gan = gan(D1(torch.cat([x, fake], 1)), True, for_discriminator=False)
    assert losses["G_GAN"].item() == pytest.approx(g_gan.item(), rel=1e-5)
    # the D step moved G_GAN far more than the tolerance above: the order is observable
    assert abs(g_gan.item() - g_gan_old_d) > 1e-3 * abs(g_gan_old_d)

    # G's gradient is that of λ_GAN·cGAN(D1) + λ_L1·L1. Adam's first step keeps (1 - β1)·grad as
    # its first moment, so the gradient the trainer used can be read back from the optimizer.
    used = [tr.opt_G.state[p]["exp_avg"] / (1 - cfg.beta1) for p in tr.G.parameters()]

    def g_grads(d):
        G0.zero_grad()
        torch.manual_seed(123)
        fake = G0(x)
        (cfg.lambda_GAN * gan(d(torch.cat([x, fake], 1)), True, for_discriminator=False)
         + cfg.lambda_L1 * torch.nn.functional.l1_loss(fake, real)).backward()
        return [p.grad.clone() for p in G0.parameters()]

    def same(a, b):
        return torch.allclose(a, b, rtol=1e-3, atol=1e-6)

    assert all(same(u, g) for u, g in zip(used, g_grads(D1)))
    assert not all(same(u, g) for u, g in zip(used, g_grads(D0)))  # the same check catches D0


@pytest.mark.parametrize("kw, keys, d_in", [
    (dict(lambda_GAN=0.0, ndf=64), {"G_L1"}, None),                          # L1 only: no D at all (ndf: the default)
    (dict(lambda_L1=0.0), {"D_real", "D_fake", "G_GAN"}, 6),                 # cGAN only
    (dict(lambda_L1=0.0, no_cond_D=True), {"D_real", "D_fake", "G_GAN"}, 3),  # GAN only (unconditional)
])
def test_pix2pix_loss_ablations(tmp_path, kw, keys, d_in):
    tr = Trainer(_p2p_cfg(tmp_path, **kw))
    assert set(tr.train_step(_rgb_batch())) == keys
    assert (tr.D is None) if d_in is None else tr.D.model[0].in_channels == d_in


def test_pix2pix_step_in_bf16_autocast(tmp_path):
    tr = Trainer(_p2p_cfg(tmp_path, precision="bf16"))
    seen = []
    h = tr.G.model.model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    losses = tr.train_step(_rgb_batch())
    h.remove()
    assert seen == [torch.bfloat16]  # the U-Net's first conv ran in bf16
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in tr.G.parameters())


def test_pix2pixhd_l1_term_adds_lambda_times_the_l1_gradient_to_g(tmp_path):
    """--lambda_L1 for pix2pixHD (off by default, issue 15): G_L1 = L1(G(x), real), logged
    unweighted, and G's gradient is the reference recipe's plus lambda_L1 times L1's."""
    assert tiny_cfg(tmp_path).lambda_L1 == 0.0   # the reference recipe: no L1 term
    batch = fake_batch()
    grads, losses = {}, {}
    for lam in (0.0, 7.0):
        tr = Trainer(tiny_cfg(tmp_path / str(lam), lambda_L1=lam))
        G0 = copy.deepcopy(tr.G)
        losses[lam] = tr.train_step(batch)
        grads[lam] = [p.grad.clone() for p in tr.G.parameters()]
    assert "G_L1" not in losses[0.0]
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    real = image_to_float(batch["image"])
    l1 = torch.nn.functional.l1_loss(G0(x), real)
    assert losses[7.0]["G_L1"].item() == pytest.approx(l1.item(), rel=1e-5)
    for k in ("D_real", "D_fake", "G_GAN", "G_GAN_Feat"):   # same weights, same D step: same losses
        assert losses[7.0][k].item() == pytest.approx(losses[0.0][k].item(), rel=1e-5, abs=1e-7), k
    expected = torch.autograd.grad(7.0 * l1, list(G0.parameters()))
    moved = 0
    for g0, g7, e in zip(grads[0.0], grads[7.0], expected):
        torch.testing.assert_close(g7 - g0, e, rtol=1e-3, atol=1e-5)
        moved += int(e.abs().max() > 1e-3)
    assert moved > 5   # the L1 term reaches most of G, not just the last layer


def test_batch_norm_discriminator_passes_run_in_the_references_order():
    """--norm batch: D's passes of a step run fake, real (the D update), then fake again (G's), as
    the reference's do, so D's running statistics follow the reference's (a side-by-side step
    against NVIDIA's code found them 2e-4 apart when real went first)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(tiny_cfg(Path(d), norm="batch", ngf=8))
    batch = fake_batch(h=32, w=32)
    _, real, _ = tr.prepare(batch)
    seen = []

    def which(module, args):
        image = args[0][:, -3:]
        seen.append("real" if torch.equal(image, real) else "fake")
    tr.D.register_forward_pre_hook(which)
    tr.train_step(batch)
    assert seen == ["fake", "real", "fake"]

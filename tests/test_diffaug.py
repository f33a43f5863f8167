"""--diffaug (DiffAugment, Zhao et al. 2020): off by default with the step bit-identical to the plain
recipe; each policy differentiable and exactly what it says; one draw per step shared by the real
and fake pairs, in D's and G's passes; colour leaves the label channels alone; tiny training steps
with every policy for pix2pixHD and pix2pix; bad values refused; the config round-trips."""
import copy

import pytest
import torch

from pix2pixhd import diffaug
from pix2pixhd.cli import resolve_config
from pix2pixhd.config import TrainConfig
from pix2pixhd.encoding import encode_input, image_to_float
from pix2pixhd.errors import ConfigError
from pix2pixhd.losses import GANLoss, feature_matching_loss
from pix2pixhd.trainer import Trainer
from tests.test_trainer_step import fake_batch

ALL = "color,translation,cutout"


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(name="t", checkpoints_dir=str(tmp_path), label_nc=5, ngf=4, n_downsample_global=2,
                n_blocks_global=1, ndf=4, n_layers_D=2, no_vgg_loss=True, no_tensorboard=True,
                no_html=True, no_progress=True, device="cpu", nThreads=0)
    if kw.get("model", "pix2pixhd") != "pix2pixhd":   # pix2pixHD's generator options: refused for the others
        del base["n_downsample_global"], base["n_blocks_global"]
    base.update(kw)
    return TrainConfig(**base).resolved()


def tiny_pix2pix_cfg(tmp_path, **kw) -> TrainConfig:
    return tiny_cfg(tmp_path, model="pix2pix", label_nc=0, netG_pix2pix="unet_128", ngf=4,
                    netD_pix2pix="n_layers", n_layers_D=2, ndf=4, **kw)


def pix2pix_batch(n=2, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.int64).to(torch.uint8)  # noqa: E731
    return {"label": img(), "image": img(), "path": ["a.png"] * n}


def one_hot_and_image(n=2, label_nc=5, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, label_nc, (n, 1, h, w), generator=g)
    one_hot = torch.zeros(n, label_nc, h, w).scatter_(1, ids, 1.0)
    return one_hot, torch.rand(n, 3, h, w, generator=g) * 2 - 1


# ---- off by default ------------------------------------------------------------------------
def test_off_by_default_and_the_step_is_the_plain_recipe_bit_for_bit(tmp_path, monkeypatch):
    assert TrainConfig().resolved().diffaug == "" and TrainConfig(model="pix2pix").resolved().diffaug == ""

    def refuse(*a, **k):
        raise AssertionError("diffaug was called with --diffaug off")
    monkeypatch.setattr(diffaug, "draw", refuse)
    monkeypatch.setattr(diffaug, "augment", refuse)

    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(tmp_path))
    assert tr.diffaug == ()
    G0, D0 = copy.deepcopy(tr.G), copy.deepcopy(tr.D)
    batch = fake_batch()
    rng_before = torch.get_rng_state()
    losses = tr.train_step(batch)
    assert torch.equal(torch.get_rng_state(), rng_before)   # no random draw was made for D's inputs

    # The un-augmented step restated: D on (x, real) and (x, fake) stacked, then the G pass.
    gan = GANLoss("lsgan")
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    real = image_to_float(batch["image"])
    fake = G0(x)
    n = x.shape[0]
    both = D0(torch.cat([torch.cat([x, real], 1), torch.cat([x, fake.detach()], 1)], 0))
    pred_real = [[f[:n] for f in s] for s in both]
    pred_fake_d = [[f[n:] for f in s] for s in both]
    d_real, d_fake = gan(pred_real, True), gan(pred_fake_d, False)
    (0.5 * (d_real + d_fake)).backward()
    D0.requires_grad_(False)
    pred_fake = D0(torch.cat([x, fake], 1))
    g_gan = gan(pred_fake, True, for_discriminator=False)
    fm = feature_matching_loss(pred_fake, pred_real, n_layers_D=2, num_D=2, lambda_feat=10)
    (g_gan + fm).backward()
    expected = {"D_real": d_real, "D_fake": d_fake, "G_GAN": g_gan, "G_GAN_Feat": fm}
    assert set(losses) == set(expected)
    for k, v in expected.items():
        assert torch.equal(losses[k], v.detach()), k
    for net, ref in ((tr.G, G0), (tr.D, D0)):
        for (name, p), (_, q) in zip(net.named_parameters(), ref.named_parameters()):
            assert torch.equal(p.grad, q.grad), name


# ---- the transforms ----------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", ALL])
def test_each_policy_is_differentiable_in_its_input(policy):
    torch.manual_seed(1)
    params = diffaug.draw(policy, 2, 8, 8)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: diffaug.augment(t, params, image_channels=3), (x,))
    y = diffaug.augment(x, params, image_channels=3)
    assert y.shape == x.shape
    y.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_moves_every_channel_by_the_drawn_shift_with_zero_fill():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    p = diffaug.AugmentParams(("translation",), 2, 8, 8, shift=torch.tensor([[1, -1], [0, 0]]))
    y = diffaug.augment(x, p, image_channels=1)
    assert torch.equal(y[0, :, 1:, :-1], x[0, :, :-1, 1:])      # down 1, left 1
    assert (y[0, :, 0, :] == 0).all() and (y[0, :, :, -1] == 0).all()
    assert torch.equal(y[1], x[1])                              # no shift: unchanged


def test_cutout_zeroes_one_rectangle_of_half_the_size_on_every_channel():
    x = torch.ones(1, 4, 8, 12)
    p = diffaug.AugmentParams(("cutout",), 1, 8, 12, cutout=torch.tensor([[4, 6]]))
    y = diffaug.augment(x, p, image_channels=3)
    assert torch.equal(y[0, :, 2:6, 3:9], torch.zeros(4, 4, 6))
    assert int((y == 0).sum()) == 4 * 4 * 6                     # nothing else touched


def test_colour_leaves_the_one_hot_label_channels_untouched():
    one_hot, img = one_hot_and_image()
    torch.manual_seed(2)
    params = diffaug.draw("color", 2, 16, 16)
    y = diffaug.augment(torch.cat([one_hot, img], 1), params, image_channels=3)
    assert torch.equal(y[:, :5], one_hot)
    assert not torch.allclose(y[:, 5:], img, atol=1e-3)
    # with translation and cutout too, the label channels are still exact one-hot or all zero
    params = diffaug.draw(ALL, 2, 16, 16)
    lab = diffaug.augment(torch.cat([one_hot, img], 1), params, image_channels=3)[:, :5]
    assert set(lab.unique().tolist()) <= {0.0, 1.0} and (lab.sum(1) <= 1).all()


def test_one_draw_transforms_stacked_copies_and_label_and_image_alike():
    one_hot, img = one_hot_and_image()
    torch.manual_seed(3)
    params = diffaug.draw("translation,cutout", 2, 16, 16)
    real_in, fake_in = torch.cat([one_hot, img], 1), torch.cat([one_hot, -img], 1)
    stacked = diffaug.augment(torch.cat([real_in, fake_in], 0), params, image_channels=3)
    assert torch.equal(stacked[:2], diffaug.augment(real_in, params, image_channels=3))
    assert torch.equal(stacked[2:], diffaug.augment(fake_in, params, image_channels=3))
    assert torch.equal(stacked[:2, :5], stacked[2:, :5])       # same transform of the label map
    # the image moved and was cut exactly as its label map: a copy of a label channel stays one
    pair = torch.cat([one_hot, one_hot[:, :3]], 1)
    out = diffaug.augment(pair, params, image_channels=3)
    assert torch.equal(out[:, 5:], out[:, :3]) and not torch.equal(out, pair)
    with pytest.raises(ValueError, match="draw them for this batch"):
        diffaug.augment(torch.zeros(3, 8, 16, 16), params, image_channels=3)


def _d_inputs(tr):
    """Every tensor D is called with during a step (the DDP-free D itself)."""
    seen = []
    tr.D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen


def test_pix2pixhd_step_gives_real_and_fake_pairs_the_same_transform_in_d_and_g(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(tmp_path, diffaug=ALL))
    seen = _d_inputs(tr)
    batch = fake_batch()
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    tr.train_step(batch)
    assert len(seen) == 2                      # D's pass (real and fake stacked) and G's pass
    both, g_pass = seen
    c = x.shape[1]
    real_in, fake_in = both[:2], both[2:]
    assert torch.equal(real_in[:, :c], fake_in[:, :c]) and torch.equal(real_in[:, :c], g_pass[:, :c])
    assert not torch.equal(real_in[:, :c], x)  # the condition was transformed
    # the fake in G's pass is the fake of D's pass, transformed alike (G's weights had not moved)
    torch.testing.assert_close(g_pass, fake_in)


def test_pix2pix_step_gives_real_and_fake_pairs_the_same_transform_in_d_and_g(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_pix2pix_cfg(tmp_path, diffaug=ALL))
    seen = _d_inputs(tr)
    batch = pix2pix_batch()
    x = image_to_float(batch["label"])
    tr.train_step(batch)
    assert len(seen) == 3                      # D on fake, D on real, G's pass
    conds = [s[:, :3] for s in seen]
    assert torch.equal(conds[0], conds[1]) and torch.equal(conds[0], conds[2])
    assert not torch.equal(conds[0], x)


@pytest.mark.parametrize("model", ["pix2pixhd", "pix2pix"])
def test_a_step_with_every_policy_trains_g_and_d(tmp_path, model):
    torch.manual_seed(0)
    cfg = tiny_cfg(tmp_path, diffaug=ALL) if model == "pix2pixhd" else tiny_pix2pix_cfg(tmp_path, diffaug=ALL)
    tr = Trainer(cfg)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in (("G", tr.G), ("D", tr.D))}
    losses = tr.train_step(fake_batch() if model == "pix2pixhd" else pix2pix_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    for k, m in (("G", tr.G), ("D", tr.D)):
        assert any(not torch.equal(p, q) for p, q in zip(m.parameters(), before[k])), k


def test_off_and_on_differ(tmp_path):
    """The option is not a no-op: the same seed and batch give other D losses with it."""
    out = {}
    for spec in ("", ALL):
        torch.manual_seed(0)
        out[spec] = Trainer(tiny_cfg(tmp_path / (spec or "off"), diffaug=spec)).train_step(fake_batch())
    assert out[""]["D_real"] != out[ALL]["D_real"]


# ---- the option ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, match", [
    ("colour", r"diffaug='colour': unknown policy 'colour'; give a comma list of color, translation, cutout"),
    ("color,,cutout", r"unknown policy ''"),
    ("color,color", "names a policy twice"),
])
def test_bad_policy_is_a_one_line_error_naming_value_and_fix(value, match):
    for make in (lambda: TrainConfig(diffaug=value).resolved(), lambda: resolve_config(["--diffaug", value])):
        with pytest.raises(ConfigError, match=match) as e:
            make()
        assert "\n" not in str(e.value)


def test_models_without_a_conditional_d_refuse_it():
    with pytest.raises(ConfigError, match="--model cyclegan ignores it: drop --diffaug"):
        TrainConfig(model="cyclegan", diffaug="color").resolved()
    with pytest.raises(ConfigError, match="--lambda_GAN 0 trains no D"):
        TrainConfig(model="pix2pix", lambda_GAN=0.0, diffaug="color").resolved()


def test_config_round_trip_and_command_line():
    cfg = TrainConfig(diffaug="translation,cutout").resolved()
    assert cfg.diffaug == "translation,cutout"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(TrainConfig.from_dict(cfg.to_dict()).to_dict()).diffaug == "translation,cutout"
    assert resolve_config(["--diffaug", "translation,cutout"]) == cfg
    old = {k: v for k, v in TrainConfig().resolved().to_dict().items() if k != "diffaug"}
    assert TrainConfig.from_dict(old).diffaug == ""   # a config saved before the option: off


def test_sizes_round_halves_up_as_the_reference():
    """DiffAugment sizes shifts and cutouts with int(x + 0.5): at 20 px the shift reaches 3
    (Python's round gave 2) and the 10 px cutout's centre may sit on 0..20."""
    g = torch.Generator().manual_seed(0)
    p = diffaug.draw("translation,cutout", 4000, 20, 20, generator=g)
    assert int(p.shift.abs().max()) == 3
    assert int(p.cutout.max()) == 20 and int(p.cutout.min()) == 0
    y = diffaug.augment(torch.ones(1, 1, 20, 20), diffaug.AugmentParams(("cutout",), 1, 20, 20,
                                                                         cutout=torch.tensor([[10, 10]])), 1)
    assert int((y == 0).sum()) == 10 * 10

"""Losses on hand-computed cases: GAN modes over scales, feature matching weights, VGG."""
import math

import pytest
import torch
import torch.nn.functional as F

from pix2pixhd.losses import (IMAGENET_MEAN, IMAGENET_STD, VGG_WEIGHTS, GANLoss, VGG19Features,
                              VGGLoss, feature_matching_loss)


def _scales(*logits):
    return [[torch.zeros(1), torch.tensor(v, dtype=torch.float32)] for v in logits]


def test_lsgan_sums_mse_over_scales_using_last_output():
    preds = _scales([[0.5, 1.5]], [[0.0]])
    loss = GANLoss("lsgan")
    # real: mean((0.5-1)^2, (1.5-1)^2) = 0.25 ; (0-1)^2 = 1
    assert loss(preds, True).item() == pytest.approx(1.25)
    # fake: mean(0.25, 2.25) = 1.25 ; 0
    assert loss(preds, False).item() == pytest.approx(1.25)


def test_vanilla_is_bce_on_logits():
    preds = _scales([[0.0, 2.0]])
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert GANLoss("vanilla")(preds, True).item() == pytest.approx(expected, rel=1e-6)


def test_hinge_for_d_and_g():
    preds = _scales([[0.5, -2.0]])
    loss = GANLoss("hinge")
    assert loss(preds, True).item() == pytest.approx((0.5 + 3.0) / 2)
    assert loss(preds, False).item() == pytest.approx((1.5 + 0.0) / 2)
    assert loss(preds, True, for_discriminator=False).item() == pytest.approx(0.75)


def test_feature_matching_uses_reference_weights_and_skips_logits():
    # two scales, n_layers_D=1 → three outputs per scale (2 intermediate + logits)
    fake = [[torch.full((1, 2), 1.0), torch.full((1, 2), 3.0), torch.full((1, 1), 100.0)],
            [torch.full((1, 2), 0.0), torch.full((1, 2), 0.0), torch.full((1, 1), -100.0)]]
    real = [[torch.full((1, 2), 0.0), torch.full((1, 2), 1.0), torch.full((1, 1), 0.0)],
            [torch.full((1, 2), 0.5), torch.full((1, 2), 0.0), torch.full((1, 1), 0.0)]]
    # L1s: 1, 2 (scale 0); 0.5, 0 (scale 1); weight = 1/2 * 4/2 * 10 = 10
    loss = feature_matching_loss(fake, real, n_layers_D=1, num_D=2, lambda_feat=10.0)
    assert loss.item() == pytest.approx(10 * (1 + 2 + 0.5 + 0))


def test_feature_matching_detaches_real_features():
    f = torch.ones(1, 2, requires_grad=True)
    r = torch.zeros(1, 2, requires_grad=True)
    feature_matching_loss([[f, f]], [[r, r]]).backward()
    assert f.grad is not None and r.grad is None


def test_vgg_missing_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="--no_vgg_loss"):
        VGG19Features.from_file(tmp_path / "absent.pth")


@pytest.fixture
def vgg_file(tmp_path):
    torch.manual_seed(0)
    vgg = VGG19Features()
    sd = vgg.state_dict()
    # torchvision's file also has the classifier and the last maxpool-free layers; extra keys are fine
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path)
    return path, vgg


def test_vgg_loads_torchvision_keys_and_returns_five_layers(vgg_file):
    path, vgg = vgg_file
    loaded = VGG19Features.from_file(path)
    assert list(loaded.state_dict()) == list(vgg.state_dict())
    assert list(loaded.state_dict())[0] == "features.0.weight" and "features.28.weight" in loaded.state_dict()
    outs = loaded(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512, 512]
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 2]


# pix2pixHD's VGGLoss weights; torchvision's ImageNet normalisation (RGB); the slice ends of
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features.
PIX2PIXHD_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RELU_ENDS = (2, 7, 12, 21, 30)


def test_vgg_constants_are_pix2pixhds_and_torchvisions():
    from pix2pixhd.losses import _VGG_SLICES
    assert VGG_WEIGHTS == PIX2PIXHD_WEIGHTS
    assert IMAGENET_MEAN == TORCHVISION_MEAN and IMAGENET_STD == TORCHVISION_STD
    assert _VGG_SLICES == RELU_ENDS


def test_vgg_loss_normalises_inputs_and_weights_layers(vgg_file):
    path, _ = vgg_file
    loss_fn = VGGLoss(vgg_path=path)
    fake, real = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    mean = torch.tensor(TORCHVISION_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(TORCHVISION_STD).view(1, 3, 1, 1)
    norm = lambda x: ((x + 1) / 2 - mean) / std  # noqa: E731
    # each feature is the output of a ReLU, the layer before its slice end
    layers = loss_fn.vgg.features
    assert len(layers) == RELU_ENDS[-1]
    assert all(isinstance(layers[end - 1], torch.nn.ReLU) for end in RELU_ENDS)
    feats = lambda x: [layers[:end](x) for end in RELU_ENDS]  # noqa: E731
    ff, rf = feats(norm(fake)), feats(norm(real))
    for got, want in zip(loss_fn.vgg(norm(fake)), ff):
        assert (got >= 0).all() and torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    expected = sum(w * F.l1_loss(a, b) for w, a, b in zip(PIX2PIXHD_WEIGHTS, ff, rf))
    assert loss_fn(fake, real).item() == pytest.approx(expected.item(), rel=1e-5)
    # the un-normalised input (the reference's bug) gives a different value
    unnorm = sum(w * F.l1_loss(a, b) for w, a, b in zip(PIX2PIXHD_WEIGHTS, feats(fake), feats(real)))
    assert abs(unnorm.item() - expected.item()) > 1e-3 * expected.item()
    assert loss_fn(real, real).item() == 0


def test_vgg_is_frozen_and_gradient_reaches_fake(vgg_file):
    loss_fn = VGGLoss(vgg_path=vgg_file[0]).train()
    assert not loss_fn.vgg.training and not any(p.requires_grad for p in loss_fn.parameters())
    fake = torch.zeros(1, 3, 16, 16, requires_grad=True)
    loss_fn(fake, torch.rand(1, 3, 16, 16)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0

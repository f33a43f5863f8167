"""Python API inputs: discriminator output shapes in the losses, integer images, label_nc, float
instance maps."""
import pytest
import torch
import torch.nn.functional as F

from pix2pixhd.encoding import encode_input, image_to_float, input_channels
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.losses import GANLoss, feature_matching_loss
from pix2pixhd.networks import Encoder, MultiscaleDiscriminator, NLayerDiscriminator, instance_average


def _d_outputs(d, seed=0, side=32):
    torch.manual_seed(seed)
    with torch.no_grad():
        return d(torch.randn(1, 3, side, side)), d(torch.randn(1, 3, side, side))


def test_gan_loss_reads_a_flat_feature_list_as_one_discriminator():
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, ndf=8, n_layers=3, get_interm_feat=True)
    out, _ = _d_outputs(d)
    assert len(out) == 5
    for mode in ("lsgan", "vanilla", "hinge"):
        loss = GANLoss(mode)
        # the reference: input[-1] (the logits) of a flat list
        assert torch.equal(loss(out, True), loss(out[-1], True)), mode
        assert torch.equal(loss(out, False), loss([out], False)), mode


def test_feature_matching_on_a_flat_feature_list_is_one_scale():
    torch.manual_seed(0)
    d = NLayerDiscriminator(3, ndf=8, n_layers=3, get_interm_feat=True)
    fake, real = _d_outputs(d)
    expected = sum(1.0 * 4 / 4 * 10 * F.l1_loss(f, r) for f, r in zip(fake[:-1], real[:-1]))
    got = feature_matching_loss(fake, real, n_layers_D=3, num_D=1)
    assert got.item() > 0
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(feature_matching_loss(fake, real), expected)
    torch.testing.assert_close(feature_matching_loss([fake], [real]), expected)


def test_feature_matching_refuses_n_layers_D_or_num_D_that_disagree_with_the_lists():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(3, ndf=8, n_layers=3, num_D=2)
    fake, real = _d_outputs(d)
    right = feature_matching_loss(fake, real, n_layers_D=3, num_D=2)
    torch.testing.assert_close(feature_matching_loss(fake, real), right)   # derived from the lists
    with pytest.raises(InputError, match=r"n_layers_D=4 but each scale holds 5 features .*pass n_layers_D=3"):
        feature_matching_loss(fake, real, n_layers_D=4, num_D=2)
    with pytest.raises(InputError, match=r"num_D=3 but the outputs hold 2 scale\(s\); pass num_D=2"):
        feature_matching_loss(fake, real, n_layers_D=3, num_D=3)
    logits_only = MultiscaleDiscriminator(3, ndf=8, n_layers=3, num_D=2, get_interm_feat=False)
    f2, r2 = _d_outputs(logits_only)
    with pytest.raises(InputError, match="only the logits.*get_interm_feat=True"):
        feature_matching_loss(f2, r2)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16])
def test_integer_photos_and_feats_are_scaled_as_uint8(dtype):
    img = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).reshape(1, 1, 2, 2).expand(1, 3, 2, 2)
    want = image_to_float(img)
    assert torch.equal(image_to_float(img.to(dtype)), want)
    got = encode_input(img.to(dtype), None, img.to(dtype), label_nc=0)
    assert torch.equal(got, torch.cat([want, want], 1))
    with pytest.raises(InputError, match=rf"dtype {dtype} has values in \[0, 256\].*\[0, 255\]"):
        image_to_float(torch.full((1, 3, 2, 2), 256, dtype=dtype).index_fill_(3, torch.tensor([0]), 0))


def test_negative_label_nc_is_refused():
    label = torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ConfigError, match=r"label_nc=-1: .*\(> 0\), or 0"):
        encode_input(label, label_nc=-1)
    with pytest.raises(ConfigError, match=r"label_nc=-1"):
        input_channels(-1)


def test_float_instance_maps_are_refused_not_truncated():
    f = torch.randn(1, 2, 4, 4)
    with pytest.raises(InputError, match=r"instance map has dtype torch.float32.*round\(\)\.long\(\)"):
        instance_average(f, torch.rand(1, 1, 4, 4))
    e = Encoder(3, 3, ngf=8, n_downsampling=2)
    inst = torch.zeros(1, 1, 16, 16, dtype=torch.int64)
    inst[..., 8:, :] = 3
    with pytest.raises(InputError, match="instance map has dtype torch.float32"):
        e(torch.randn(1, 3, 16, 16), inst.float() / 255)   # a ToTensor-scaled map
    out = e(torch.randn(1, 3, 16, 16), inst)               # integer ids still work
    assert not torch.equal(out[0, :, 0, 0], out[0, :, 15, 0])
    from pix2pixhd.features import instance_features   # the clustering's per-instance features too
    label = torch.zeros(1, 1, 16, 16, dtype=torch.int64)
    with pytest.raises(InputError, match="instance map has dtype torch.float32"):
        instance_features(out, inst.float() / 255, label)
    assert instance_features(out, inst, label).value.shape[0] == 2

"""Loading reference-format state_dicts: exact round trip, fused layers, clear refusals."""
import pytest
import torch

from pix2pixhd import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights


def _tiny_g(ngf=4):
    return GlobalGenerator(6, 3, ngf=ngf, n_downsampling=2, n_blocks=1)


def test_round_trip_through_file_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    src = _tiny_g()
    path = tmp_path / "latest_net_G.pth"
    torch.save(src.state_dict(), path)
    torch.manual_seed(1)
    dst = _tiny_g()
    load_reference_weights(dst, path)
    x = torch.randn(1, 6, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_dataparallel_prefix_is_stripped():
    src, dst = _tiny_g(), _tiny_g()
    sd = {"module." + k: v for k, v in src.state_dict().items()}
    load_reference_weights(dst, sd)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_wrong_architecture_is_refused_with_a_guess():
    local = LocalEnhancer(6, 3, ngf=2, n_downsample_global=2, n_blocks_global=1)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)unexpected key.*LocalEnhancer with 1 local"):
        load_reference_weights(_tiny_g(ngf=8), local.state_dict())


def test_shape_mismatch_is_refused():
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch.*model\.1\.weight"):
        load_reference_weights(_tiny_g(), GlobalGenerator(7, 3, ngf=4, n_downsampling=2, n_blocks=1).state_dict())


def test_ignore_prefix_for_a_new_discriminator_scale():
    d2 = MultiscaleDiscriminator(5, ndf=4, n_layers=2, num_D=2)
    d3 = MultiscaleDiscriminator(5, ndf=4, n_layers=2, num_D=3)
    before = {k: v.clone() for k, v in d3.state_dict().items() if k.startswith("scale2")}
    load_reference_weights(d3, d2.state_dict(), ignore_prefixes=("scale2_",))
    assert torch.equal(d3.state_dict()["scale1_layer0.0.weight"], d2.state_dict()["scale1_layer0.0.weight"])
    assert all(torch.equal(d3.state_dict()[k], v) for k, v in before.items())


def test_unreadable_file(tmp_path):
    p = tmp_path / "bad.pth"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="bad.pth could not be read"):
        load_reference_weights(_tiny_g(), p)


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("src_feat,dst_feat", [(False, True), (True, False)])
def test_discriminator_loads_across_the_no_ganFeat_loss_key_layouts(norm, src_feat, dst_feat):
    """The reference's D keys are ``layer{i}.{f}`` without getIntermFeat (--no_ganFeat_loss) and
    ``scale{i}_layer{j}.{k}`` with it; the same weights load either way and give the same logits."""
    torch.manual_seed(0)
    src = MultiscaleDiscriminator(4, ndf=4, n_layers=2, num_D=2, norm=norm, get_interm_feat=src_feat)
    torch.manual_seed(1)
    dst = MultiscaleDiscriminator(4, ndf=4, n_layers=2, num_D=2, norm=norm, get_interm_feat=dst_feat)
    assert set(src.state_dict()).isdisjoint(dst.state_dict())
    load_reference_weights(dst, src.state_dict())
    src.eval(), dst.eval()
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x)):
            torch.testing.assert_close(b[-1], a[-1], rtol=0, atol=0)
    # a key the layout does not have is still refused, not renamed into place
    bad = dict(src.state_dict())
    bad[next(iter(bad)).replace("0", "7", 1)] = bad.pop(next(iter(bad)))
    with pytest.raises(CheckpointMismatchError):
        load_reference_weights(dst, bad)


def test_input_channel_mismatch_is_one_line_naming_the_files_input_and_the_feature_options():
    """NVIDIA's label2city_1024p G takes labels + boundary + feat_num feature channels; loaded into
    a LocalEnhancer built for fewer input channels, the refusal is one line that says how many the
    file's first conv takes and names the options that add them up, the feature ones included."""
    kw = dict(ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1, n_blocks_local=1)
    with pytest.raises(CheckpointMismatchError) as e:
        load_reference_weights(LocalEnhancer(10, 3, **kw), LocalEnhancer(13, 3, **kw).state_dict())
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert "takes 13 input channels, the model's 10" in msg, msg
    assert all(o in msg for o in ("instance_feat", "label_feat", "feat_num", "no_instance", "label_nc")), msg
    # the same widths with another architecture detail: no input-channel sentence, no feature options
    with pytest.raises(CheckpointMismatchError) as e:
        load_reference_weights(LocalEnhancer(10, 3, **{**kw, "ngf": 8}), LocalEnhancer(10, 3, **kw).state_dict())
    assert "\n" not in str(e.value) and "input channels" not in str(e.value) and "feat_num" not in str(e.value)

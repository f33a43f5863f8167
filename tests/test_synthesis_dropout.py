"""pix2pix's seeded test-time dropout (``pix2pixhd.synthesis._SeededDropout``) leaves the caller's
generator usable: a second Synthesizer on the same module draws the same seeded masks as the
first, the module's Dropout layers keep the mode their owner set, an ONNX export after a
Synthesizer ran has no dropout in its graph, and a seed count that is not the batch size is
refused rather than giving every row one mask."""
import pytest
import torch

from pix2pixhd.config import TrainConfig
from pix2pixhd.models import build_generator
from pix2pixhd.pix2pix_networks import set_dropout, use_test_statistics
from pix2pixhd.synthesis import Synthesizer


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _unet():
    """A tiny pix2pix U-Net as load_generator leaves it: eval, dropout and per-image BN on."""
    cfg = TrainConfig(model="pix2pix", label_nc=0, ngf=2, netG_pix2pix="unet_128",
                      norm_impl="ref").resolved()
    torch.manual_seed(0)
    g = build_generator(cfg).eval()
    assert set_dropout(g, True) > 0
    use_test_statistics(g, True)
    return g, cfg


def _photos(n):
    return torch.randint(0, 256, (n, 3, 128, 128), generator=torch.Generator().manual_seed(1)).to(torch.uint8)


def _dropouts(g):
    return [m for m in g.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]


def test_a_second_synthesizer_on_the_module_draws_the_same_seeded_masks():
    g, cfg = _unet()
    x = _photos(2)
    s1 = Synthesizer(g, cfg, "cpu")
    a = s1(x, seeds=[7, 8])
    s2 = Synthesizer(g, cfg, "cpu", precision="fp32")   # e.g. the synthesis benchmark's loop
    assert s1.has_dropout and s2.has_dropout
    assert torch.equal(s2(x, seeds=[7, 8]), a) and torch.equal(s1(x, seeds=[7, 8]), a)
    assert not torch.equal(s2(x, seeds=[9, 10]), a)                # other seeds, other masks
    assert torch.equal(s2(x[1:], seeds=[8])[0], a[1])              # a row's masks: its seed alone
    # one hook per Dropout layer, however many Synthesizers; the layers keep their owner's mode
    assert all(len(m._forward_hooks) == 1 and m.training for m in _dropouts(g))
    set_dropout(g, False)                                          # --no_test_dropout after the fact
    assert not s1.has_dropout and torch.equal(s1(x, seeds=[7, 8]), s2(x, seeds=[9, 10]))


def test_export_after_a_synthesizer_has_no_dropout(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import copy

    import onnx
    from pix2pixhd.export import OnnxGenerator, export_onnx
    g, cfg = _unet()
    Synthesizer(g, cfg, "cpu")(_photos(1), seeds=[3])
    path = export_onnx(g, tmp_path / "g.onnx", 3, dynamo=False, check=True)   # legacy: fast
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not {op for op in ops if "Random" in op or "Dropout" in op}, sorted(ops)
    og = OnnxGenerator(path)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        ref = copy.deepcopy(g).eval()(x)
    assert torch.equal(og(x), og(x)) and (og(x) - ref).abs().max() <= 1e-4
    assert all(m.training and len(m._forward_hooks) == 1 for m in _dropouts(g))   # the caller's: as it was


def test_seeds_must_be_one_per_row():
    g, cfg = _unet()
    s = Synthesizer(g, cfg, "cpu")
    with pytest.raises(ValueError, match="1 seed\\(s\\) for a batch of 3 maps: pass one seed per row"):
        s(_photos(3), seeds=[5])
    assert s(_photos(3), seeds=[5, 6, 7]).shape == (3, 3, 128, 128)

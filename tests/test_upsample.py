"""--upsample resize (Odena et al. 2016): the default stays the reference's transposed conv (keys
and shapes of NVIDIA's state_dict); resize keeps the keys and output sizes with [out, in, 3, 3]
weights, computes nearest x2 then a reflect-padded 3x3 conv, refuses reference checkpoints naming
the option, is inherited by the next stage, counted right by the FLOP model, exports to ONNX and
trains."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pix2pixhd import flops
from pix2pixhd.cli import resolve_config
from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError
from pix2pixhd.models import build_generator
from pix2pixhd.networks import GlobalGenerator, LocalEnhancer, ResizeConv2d
from pix2pixhd.trainer import Trainer

REF = Path(__file__).resolve().parent / "data" / "pix2pixhd_state_dict_shapes.json"


def meta_generator(**kw):
    with torch.device("meta"):
        return build_generator(TrainConfig(**kw).resolved())


def shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def upsampling_modules(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.ConvTranspose2d, ResizeConv2d))}


@pytest.mark.parametrize("name, kw", [
    ("global_G_in36_ngf64_nd4_nb9", dict(stage="global")),
    ("local_G_in36_ngf32_nle1_nbl3", dict(stage="local", ngf=32)),
])
def test_default_is_the_reference_and_resize_keeps_its_keys(name, kw):
    ref = json.loads(REF.read_text())[name]
    assert TrainConfig(**kw).resolved().upsample == "transpose"
    assert shapes(meta_generator(**kw)) == ref
    resize = meta_generator(upsample="resize", **kw)
    ups = upsampling_modules(resize)
    assert len(ups) == (4 if kw["stage"] == "global" else 5)  # 4 in the global part, + 1 per enhancer
    assert all(isinstance(m, ResizeConv2d) for m in ups.values())
    got = shapes(resize)
    assert list(got) == list(ref)                              # same keys, same order
    for k, v in ref.items():
        if k.rpartition(".")[0] in ups and k.endswith(".weight"):
            assert got[k] == [v[1], v[0], *v[2:]], k          # [out, in, 3, 3] for [in, out, 3, 3]
        else:
            assert got[k] == v, k


@pytest.mark.parametrize("make, shape", [
    (lambda u: GlobalGenerator(6, 3, ngf=4, n_downsampling=2, n_blocks=1, upsample=u), (2, 6, 20, 28)),
    (lambda u: LocalEnhancer(6, 3, ngf=4, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1,
                             upsample=u), (1, 6, 40, 24)),
])
def test_resize_gives_the_same_output_shape(make, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    a, b = make("transpose")(x), make("resize")(x)
    assert a.shape == b.shape == (shape[0], 3, *shape[2:])
    assert b.abs().max() > 0.01 and torch.isfinite(b).all()


def test_resize_conv_is_nearest_x2_then_a_reflect_padded_3x3_conv():
    torch.manual_seed(0)
    m = ResizeConv2d(5, 3)
    x = torch.randn(2, 5, 4, 6)
    up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    expected = F.conv2d(F.pad(up, [1, 1, 1, 1], mode="reflect"), m.weight, m.bias)
    torch.testing.assert_close(m(x), expected)
    assert m(x).shape == (2, 3, 8, 12) and list(m.state_dict()) == ["weight", "bias"]
    with pytest.raises(ValueError, match=r"upsample='bilinear'; expected one of \('transpose', 'resize'\)"):
        GlobalGenerator(6, 3, ngf=4, n_downsampling=1, n_blocks=0, upsample="bilinear")


@pytest.mark.parametrize("file_mode, model_mode", [("transpose", "resize"), ("resize", "transpose")])
def test_a_checkpoint_of_the_other_mode_is_refused_naming_the_option(file_mode, model_mode):
    make = lambda u: GlobalGenerator(6, 3, ngf=4, n_downsampling=2, n_blocks=1, upsample=u)  # noqa: E731
    with pytest.raises(CheckpointMismatchError, match=rf"--upsample {file_mode}, the model's of "
                       rf"--upsample {model_mode}: build the model with --upsample {file_mode}"):
        load_reference_weights(make(model_mode), make(file_mode).state_dict())
    load_reference_weights(make(model_mode), make(model_mode).state_dict())   # its own mode loads


def test_option_round_trips_is_checked_and_inherited(tmp_path):
    cfg = TrainConfig(upsample="resize").resolved()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert resolve_config(["--upsample", "resize"]) == cfg
    old = {k: v for k, v in TrainConfig().resolved().to_dict().items() if k != "upsample"}
    assert TrainConfig.from_dict(old).upsample == "transpose"   # saved before the option
    with pytest.raises(ConfigError, match=r"--upsample 'bilinear': expected one of transpose, resize"):
        TrainConfig(upsample="bilinear").resolved()
    with pytest.raises(SystemExit):
        resolve_config(["--upsample", "bilinear"])
    for model in ("pix2pix", "cyclegan"):
        with pytest.raises(ConfigError, match=f"--model {model}'s generator ignores it: drop --upsample"):
            TrainConfig(model=model, upsample="resize").resolved()
    # the local stage builds its global part as the global stage did
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(
        TrainConfig(name="g", checkpoints_dir=str(tmp_path), upsample="resize").resolved().to_json())
    assert TrainConfig(stage="local", load_pretrain=str(tmp_path / "g")).resolved().upsample == "resize"


def test_flop_model_counts_the_resize_conv_at_the_output_resolution():
    kw = dict(stage="global", label_nc=5, ngf=4, n_downsample_global=2, n_blocks_global=1)
    t, r = TrainConfig(**kw).resolved(), TrainConfig(upsample="resize", **kw).resolved()
    convt = sum(rec.macs for rec in flops.conv_records(build_generator(t), torch.randn(1, 6, 32, 48))
                if rec.kind == "convT")
    assert convt > 0
    # each upsampling conv runs on 4x the pixels, with the same channels and 3x3 taps
    assert flops.generator_macs(r, 48, 32) == flops.generator_macs(t, 48, 32) + 3 * convt
    torch.manual_seed(0)
    g = build_generator(r)
    x = torch.randn(1, 6, 32, 48)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        g(x)
    conv_flops = sum(v for k, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(k))
    assert 2 * flops.count_macs(g, x) == conv_flops            # PyTorch's own count agrees


def test_resize_generator_exports_to_onnx(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from pix2pixhd.export import OnnxGenerator, export_onnx
    torch.manual_seed(0)
    g = GlobalGenerator(6, 3, ngf=4, n_downsampling=2, n_blocks=1, upsample="resize").eval()
    path = export_onnx(g, tmp_path / "g.onnx", dynamo=False, check=True)   # checked against torch
    x = torch.randn(1, 6, 24, 40)
    with torch.inference_mode():
        ref = g(x)
    assert (OnnxGenerator(path)(x) - ref).abs().max() <= 1e-4


def tiny_cfg(tmp_path, **kw):
    base = dict(name="t", checkpoints_dir=str(tmp_path), label_nc=5, ngf=4, n_downsample_global=2,
                n_blocks_global=1, n_blocks_local=1, ndf=4, n_layers_D=2, no_vgg_loss=True,
                no_tensorboard=True, no_html=True, no_progress=True, device="cpu", nThreads=0)
    return TrainConfig(**{**base, **kw}).resolved()


def test_a_training_step_with_resize_convs_and_the_next_stage(tmp_path):
    torch.manual_seed(0)
    tr = Trainer(tiny_cfg(tmp_path, ngf=8, upsample="resize"))
    ups = upsampling_modules(tr.G)
    assert ups and all(isinstance(m, ResizeConv2d) for m in ups.values())
    before = {n: m.weight.detach().clone() for n, m in ups.items()}
    g = torch.Generator().manual_seed(0)
    batch = {"label": torch.randint(0, 5, (2, 1, 32, 32), generator=g).to(torch.uint8),
             "inst": torch.randint(0, 3, (2, 1, 32, 32), generator=g).to(torch.int32),
             "image": torch.randint(0, 256, (2, 3, 32, 32), generator=g).to(torch.uint8)}
    losses = tr.train_step(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(not torch.equal(m.weight, before[n]) for n, m in ups.items())
    # the local stage inherits --upsample resize and takes the global part as it is
    tr.save("latest")
    loc = Trainer(tiny_cfg(tmp_path, name="l", stage="local", load_pretrain=str(tmp_path / "t")))
    assert loc.cfg.upsample == "resize"
    for k, v in loc.G.state_dict().items():
        if k.startswith("model."):
            assert torch.equal(v, tr.G.state_dict()[k]), k
    with pytest.raises(CheckpointMismatchError, match=r"upsample=resize\).*Use --ngf 4 and --upsample resize"):
        Trainer(tiny_cfg(tmp_path, name="l2", stage="local", load_pretrain=str(tmp_path / "t"),
                         upsample="transpose"))

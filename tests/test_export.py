"""ONNX export: onnxruntime (CPU) reproduces PyTorch within 1e-4 at sizes other than the traced one.

Tiny generators (ngf 8, 1-2 blocks, 32-96 px). Each export happens once per module (the
torch.export path takes ~10 s here); the legacy TorchScript exporter gets one quick test too.
"""
import copy

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pix2pixhd import GlobalGenerator, LocalEnhancer  # noqa: E402
from pix2pixhd.export import OnnxGenerator, check_onnx, export_onnx, main  # noqa: E402

ATOL = 1e-4


def _one_hot(n, c, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, c, (n, 1, h, w), generator=g)
    return torch.zeros(n, c, h, w).scatter_(1, ids, 1.0)


@pytest.fixture(scope="module")
def global_onnx(tmp_path_factory):
    torch.manual_seed(0)
    g = GlobalGenerator(6, 3, ngf=8, n_downsampling=2, n_blocks=2).eval()
    path = export_onnx(g, tmp_path_factory.mktemp("onnx") / "global.onnx", check=False,
                       config={"label_nc": 5, "netG": "global"})
    return g, path


@pytest.fixture(scope="module")
def local_onnx(tmp_path_factory):
    torch.manual_seed(1)
    g = LocalEnhancer(5, 3, ngf=8, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1,
                      n_blocks_local=1).eval()
    path = export_onnx(g, tmp_path_factory.mktemp("onnx") / "local.onnx", check=False)
    return g, path


@pytest.mark.parametrize("which", ["global_onnx", "local_onnx"])
def test_parity_at_two_dynamic_sizes(which, request):
    g, path = request.getfixturevalue(which)
    og = OnnxGenerator(path)
    # the trace example is 2m x 3m; these are neither, nor square, and N differs from the trace
    for n, (h, w) in [(2, (32, 48)), (1, (72, 40))]:
        x = _one_hot(n, g.input_nc, h, w, seed=h + w)
        with torch.inference_mode():
            ref = g(x)
        out = og(x)
        assert out.shape == ref.shape == (n, 3, h, w)
        assert out.dtype == torch.float32
        diff = (out - ref).abs().max().item()
        assert diff <= ATOL, f"{which} at {h}x{w}: max abs diff {diff}"
        assert ref.abs().max() > 0.01  # the comparison is not between two near-zero outputs


def test_metadata_and_size_check(global_onnx):
    g, path = global_onnx
    og = OnnxGenerator(path)
    assert og.input_nc == 6 and og.required_multiple == 4
    assert og.config == {"label_nc": 5, "netG": "global"}
    assert og.metadata["pix2pixhd.generator"] == "GlobalGenerator"
    with pytest.raises(ValueError, match="not divisible by 4"):
        og(torch.zeros(1, 6, 30, 32))
    with pytest.raises(ValueError, match=r"\[N, 6, H, W\]"):
        og(torch.zeros(1, 5, 32, 32))


def test_check_detects_a_different_generator(global_onnx):
    # the parity check is able to fail: other weights give a large difference
    g, path = global_onnx
    other = copy.deepcopy(g)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert check_onnx(g, path, sizes=[(32, 32)]) <= ATOL
    assert check_onnx(other, path, sizes=[(32, 32)]) > 100 * ATOL


def test_export_leaves_the_callers_module_alone(global_onnx, tmp_path):
    g = GlobalGenerator(6, 3, ngf=8, n_downsampling=2, n_blocks=1).train()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    export_onnx(g, tmp_path / "g.onnx", dynamo=False, check=True)  # legacy exporter, checked
    assert g.training
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m pix2pixhd.export"):
        OnnxGenerator(tmp_path / "nope.onnx")


def test_synthesizer_accepts_onnx_backend(global_onnx):
    # the lead's Synthesizer takes any callable; both backends must give the same uint8 images
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.synthesis import Synthesizer
    g, path = global_onnx
    cfg = TrainConfig(label_nc=5, netG="global", n_downsample_global=2, ngf=8,
                      n_blocks_global=2, no_instance=False).resolved()
    label = torch.randint(0, 5, (2, 1, 30, 42))  # not a multiple of 4: Synthesizer pads
    a = Synthesizer(g, cfg, "cpu", precision="fp32")(label, label)
    b = Synthesizer(OnnxGenerator(path), cfg, "cpu", precision="fp32")(label, label)
    assert a.shape == b.shape == (2, 3, 30, 42) and a.dtype == torch.uint8
    assert (a.int() - b.int()).abs().max() <= 1  # ≤1e-4 in [-1, 1] can flip one rounding


def test_cli_exports_a_checkpoint(tmp_path, capsys):
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    cfg = TrainConfig(label_nc=4, no_instance=True, netG="global", ngf=8, n_downsample_global=2,
                      n_blocks_global=1, norm_impl="ref").resolved()
    torch.manual_seed(2)
    g = build_generator(cfg)
    save_checkpoint({"G": g.state_dict(), "config": cfg.to_dict()}, tmp_path, "latest", cfg.to_json())
    assert main(["--checkpoint", str(tmp_path), "--legacy"]) == 0
    out = capsys.readouterr().out
    assert "generator.onnx" in out and "max |onnxruntime - torch|" in out
    og = OnnxGenerator(tmp_path / "generator.onnx")
    assert og.config["label_nc"] == 4 and og.input_nc == 4


# ---- the default (torch.export) path on pix2pix and CycleGAN generators -------------------------
def _pix2pix_generator(model: str, net: str):
    """A tiny generator as load_generator leaves it: eval, test-time dropout and per-image
    BatchNorm on (pix2pix's U-Net), or CycleGAN's ResNet; both name forward's argument ``x``."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    from pix2pixhd.pix2pix_networks import set_dropout, use_test_statistics
    cfg = TrainConfig(model=model, label_nc=0, ngf=2 if net.startswith("unet") else 4,
                      netG_pix2pix=net, norm_impl="ref").resolved()
    torch.manual_seed(3)
    g = build_generator(cfg).eval()
    set_dropout(g, True)
    use_test_statistics(g, True)
    return g, cfg


@pytest.mark.parametrize("model, net", [("pix2pix", "unet_128"), ("cyclegan", "resnet_6blocks")])
def test_default_exporter_exports_pix2pix_and_cyclegan_generators(model, net, tmp_path):
    """torch.export takes dynamic_shapes keyed by forward's own argument name; the U-Net's and the
    ResNet's is ``x``, not pix2pixHD's ``input``. The tests above only export pix2pixHD generators
    and the CLI tests pass --legacy, so the default path is checked here on the other two, at two
    sizes and batch sizes other than the trace example's (dropout off, as the file has it)."""
    g, cfg = _pix2pix_generator(model, net)
    path = export_onnx(g, tmp_path / "g.onnx", cfg.input_nc, check=False)   # dynamo=True: the default
    og = OnnxGenerator(path)
    m = og.required_multiple
    ref_g = copy.deepcopy(g).eval()   # eval() turns the dropout off, as the export does
    for n, (h, w) in [(2, (2 * m, 4 * m)), (1, (3 * m, 2 * m))]:   # the trace: N=1, 2m x 3m
        x = torch.rand(n, cfg.input_nc, h, w, generator=torch.Generator().manual_seed(h + w)) * 2 - 1
        with torch.inference_mode():
            ref = ref_g(x)
        out = og(x)
        assert out.shape == ref.shape == (n, 3, h, w)
        diff = (out - ref).abs().max().item()
        assert diff <= ATOL, f"{net} at {n}x{h}x{w}: max abs diff {diff}"
        assert ref.abs().max() > 0.01


# ---- the CLI: help, the check's wording, torch.onnx's torchvision notes, --direction -------------
def test_every_cli_option_has_help():
    from pix2pixhd.export import build_parser
    bare = [a.option_strings[0] for a in build_parser()._actions if not a.help]
    assert not bare, f"options without help text: {bare}"


def _run(folder, model, direction="AtoB"):
    """A tiny run folder by hand (untrained, seeded): pix2pix's U-Net (label_nc 0: photos in) or
    CycleGAN's ResNet, trained (as its config says) with ``direction``."""
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    net = "unet_128" if model == "pix2pix" else "resnet_6blocks"
    cfg = TrainConfig(model=model, label_nc=0, ngf=2 if model == "pix2pix" else 4, netG_pix2pix=net,
                      direction=direction, norm_impl="ref").resolved()
    torch.manual_seed(4)
    keys = ("G_A", "G_B") if model == "cyclegan" else ("G",)
    dirs = ("AtoB", "BtoA") if model == "cyclegan" else (None,)
    state = {k: build_generator(cfg, d).state_dict() for k, d in zip(keys, dirs)}
    save_checkpoint({**state, "config": cfg.to_dict()}, folder, "latest", cfg.to_json())
    return folder


def test_cli_checks_an_image_to_image_generator_on_images_without_torchvision_notes(tmp_path, capsys):
    """CycleGAN reads photos: the check's line says so (not 'label maps'); torch.onnx's default
    exporter logs 'torchvision is not installed. Skipping torchvision::nms' (and three more ops)
    on every export without torchvision, which pix2pixhd.export drops."""
    import importlib.util
    import logging
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: torch.onnx has no note to drop")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log, keep = logging.getLogger("torch.onnx._internal.exporter._registration"), Keep()
    log.addHandler(keep)
    try:
        assert main(["--checkpoint", str(_run(tmp_path, "cyclegan"))]) == 0   # the default exporter
    finally:
        log.removeHandler(keep)
    out = capsys.readouterr().out
    assert "on random images at" in out and "label maps" not in out, out
    assert not [m for m in seen if "torchvision" in m], seen


def test_cli_direction_of_a_pix2pix_run_is_its_own_or_refused(tmp_path, capsys):
    """A pix2pix run trained --direction BtoA exports with --direction BtoA (its one generator, to
    generator.onnx); the other direction is refused naming the run's, on either run."""
    from pix2pixhd.errors import ConfigError
    run = _run(tmp_path / "btoa", "pix2pix", "BtoA")
    assert main(["--checkpoint", str(run), "--direction", "BtoA", "--legacy"]) == 0
    assert OnnxGenerator(run / "generator.onnx").generator_key == "G"
    assert "on random images at" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="trained with --direction BtoA") as e:
        main(["--checkpoint", str(run), "--direction", "AtoB", "--legacy", "--no_check"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="trained with --direction AtoB"):
        main(["--checkpoint", str(_run(tmp_path / "atob", "pix2pix")), "--direction", "BtoA", "--legacy"])

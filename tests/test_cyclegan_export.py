"""ONNX export of either CycleGAN generator (``python -m pix2pixhd.export --direction``): each file
holds its generator key and its domain's channel count and reproduces load_generator's module
within 1e-4; ``synthesize.py --backend onnx --direction`` runs that direction's file."""
import json
import re

import pytest
import torch

from tests.test_cyclegan_train import full_run, unaligned  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_either_generator_exports_to_onnx(tmp_path, full_run, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from pix2pixhd.export import OnnxGenerator, main
    from pix2pixhd.synthesis import load_generator
    for direction, name, key in (("AtoB", "generator.onnx", "G_A"), ("BtoA", "generator_G_B.onnx", "G_B")):
        run = tmp_path / direction
        run.mkdir()
        for f in full_run.iterdir():    # a copy of the run: the export writes into its folder
            if f.is_file():
                (run / f.name).write_bytes(f.read_bytes())
        assert main(["--checkpoint", str(run), "--direction", direction, "--legacy"]) == 0
        og = OnnxGenerator(run / name)
        assert og.generator_key == key and og.input_nc == 3 and og.required_multiple == 4
        g, _ = load_generator(run, direction=direction)
        x = torch.rand(1, 3, 16, 20) * 2 - 1
        with torch.inference_mode():
            assert (og(x) - g(x)).abs().max() < 1e-4
    assert "max |onnxruntime - torch|" in capsys.readouterr().out


def grey_to_colour_run(folder, net: str):
    """A CycleGAN run folder by hand (untrained, seeded): domain A grey (1 channel), B RGB, so
    G_A and G_B differ in their input channels (identity loss off, as the config requires)."""
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    cfg = TrainConfig(model="cyclegan", ngf=4, netG_pix2pix=net, input_nc=1, output_nc=3,
                      lambda_identity=0, norm_impl="ref").resolved()
    torch.manual_seed(0)
    state = {k: build_generator(cfg, d).state_dict() for k, d in (("G_A", "AtoB"), ("G_B", "BtoA"))}
    save_checkpoint({**state, "config": cfg.to_dict()}, folder, "latest", cfg.to_json())
    return cfg


@pytest.mark.parametrize("net", ["resnet_6blocks", "unet_128"])
def test_each_exported_generator_takes_its_own_domains_channels(tmp_path, net):
    """G_A reads domain A (1 channel), G_B domain B (3): the file records each, whatever the
    generator's class (the U-Net keeps no input_nc of its own)."""
    pytest.importorskip("onnxruntime")
    from pix2pixhd.export import OnnxGenerator, main
    from pix2pixhd.synthesis import load_generator
    grey_to_colour_run(tmp_path, net)
    for direction, name, key, nc in (("AtoB", "generator.onnx", "G_A", 1), ("BtoA", "generator_G_B.onnx", "G_B", 3)):
        assert main(["--checkpoint", str(tmp_path), "--direction", direction, "--legacy", "--no_check"]) == 0
        og = OnnxGenerator(tmp_path / name)
        assert (og.generator_key, og.input_nc) == (key, nc)
        g, _ = load_generator(tmp_path, direction=direction)
        m = og.required_multiple
        x = torch.rand(1, nc, 2 * m, 3 * m) * 2 - 1
        with torch.inference_mode():
            y = g(x)
            assert y.shape[1] == 4 - nc and (og(x) - y).abs().max() < 1e-4


def test_synthesize_onnx_direction_runs_that_directions_file(tmp_path, capsys):
    """synthesize.py --backend onnx --direction BtoA reads generator_G_B.onnx by default and
    writes what the torch backend writes (G_B's grey photos); G_A's file given for BtoA is refused."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.errors import ConfigError
    from pix2pixhd.export import main as export_main
    run = tmp_path / "run"
    grey_to_colour_run(run, "resnet_6blocks")
    for d in ("AtoB", "BtoA"):
        assert export_main(["--checkpoint", str(run), "--direction", d, "--legacy", "--no_check"]) == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    Image.fromarray(rng.integers(0, 256, (4, 20, 3), dtype=np.uint8)).save(photos / "tiny.png")

    def synth(out, *extra):
        return synthesize_main(["--checkpoint", str(run), "--input", str(photos), "--out", str(tmp_path / out),
                                "--direction", "BtoA", "--device", "cpu", "--no_progress", "--workers", "0", *extra])

    assert synth("torch") == 0 and synth("onnx", "--backend", "onnx") == 0
    # a ResNet's bottleneck needs more than one pixel: 4 rows (one size multiple) are too few
    assert re.search(r"skipped .*tiny\.png: 20x4 is too small for this generator: each side must be at least 5",
                     capsys.readouterr().out)
    ident = json.loads((tmp_path / "onnx" / "synthesis.json").read_text())
    assert ident["generator"] == "G_B" and ident["onnx"] == str((run / "generator_G_B.onnx").resolve())
    for name in ("p0.png", "p1.png", "p2.png"):
        a, b = (np.asarray(Image.open(tmp_path / o / "test_B" / name)).astype(int) for o in ("torch", "onnx"))
        assert a.shape == (16, 20) and np.abs(a - b).max() <= 1          # one channel: domain A's
        assert (tmp_path / "onnx" / "test_A" / name).read_bytes() == (photos / name).read_bytes()
    with pytest.raises(ConfigError, match=r"generator\.onnx holds generator G_A, but this synthesis runs G_B") as e:
        synth("wrong", "--backend", "onnx", "--onnx_path", str(run / "generator.onnx"))
    # the fix reads G_B's own export (there already), not a re-export of G_B over G_A's file (WALK9)
    assert f"leave --onnx_path out to read {run / 'generator_G_B.onnx'}, G_B's own export (there already)" in str(e.value)
    assert f"--out {run / 'generator.onnx'}" not in str(e.value)

"""synthesize.py options that were accepted and then meant nothing, or were refused for the wrong reason.

``--backend onnx`` runs the exported fp32 graph through onnxruntime, which autocast does not reach:
``--precision bf16|fp16`` there gave the fp32 photos but recorded the precision asked for in
synthesis.json (and ``auto`` recorded bf16 on CUDA), so a resume was refused as another job. The
``--num_samples`` refusal named ``--no_test_dropout`` for a run trained with ``--no_dropout`` and "no
dropout" for a CycleGAN run whose dropout ``--no_test_dropout`` had switched off. Tiny untrained
pix2pix U-Nets and CycleGAN ResNets, 16x20 photos.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.cli import synthesize_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError
from pix2pixhd.models import build_generator

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _save_pix2pix(run, **options) -> None:
    cfg = TrainConfig(model="pix2pix", label_nc=0, ngf=2, netG_pix2pix="unet_128", norm_impl="ref",
                      **options).resolved()
    torch.manual_seed(0)
    save_checkpoint({"G": build_generator(cfg).state_dict(), "config": cfg.to_dict()}, run, "latest",
                    cfg.to_json())


def _save_cyclegan(run, **options) -> None:
    cfg = TrainConfig(model="cyclegan", ngf=2, netG_pix2pix="resnet_6blocks", norm_impl="ref", **options).resolved()
    torch.manual_seed(0)
    state = {k: build_generator(cfg, d).state_dict() for k, d in (("G_A", "AtoB"), ("G_B", "BtoA"))}
    save_checkpoint({**state, "config": cfg.to_dict()}, run, "latest", cfg.to_json())


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory):
    """A pix2pix run with its generator exported beside it (legacy exporter: fast)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from pix2pixhd.export import main as export_main
    run = tmp_path_factory.mktemp("onnx_run") / "run"
    _save_pix2pix(run)
    assert export_main(["--checkpoint", str(run), "--legacy", "--no_check"]) == 0
    return run


def _synth(run, photos, out, *extra):
    return synthesize_main(["--checkpoint", str(run), "--input", str(photos), "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0", "--writers", "1", *extra])


# ---- --precision with --backend onnx ----------------------------------------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="synthesize --backend onnx --precision {precision}: refused in one line naming both flags "
                        "(the graph is fp32), nothing written")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_half_precision_with_the_onnx_backend_is_refused(onnx_run, tmp_path, photos, precision):
    """It ran the fp32 graph (photos byte-identical to --precision fp32) and recorded the precision
    asked for."""
    with pytest.raises(ConfigError) as e:
        _synth(onnx_run, photos, tmp_path / "out", "--backend", "onnx", "--precision", precision)
    msg = str(e.value)
    assert f"--precision {precision} with --backend onnx" in msg and "\n" not in msg, msg
    assert "drop --precision" in msg and "--backend torch" in msg, msg
    assert not (tmp_path / "out").exists()


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --backend onnx with --precision auto where auto means bf16 (CUDA): the job "
                        "records fp32, what the ONNX graph computes")
def test_the_onnx_backend_records_fp32_where_auto_would_be_bf16(onnx_run, photos, tmp_path, monkeypatch):
    """On a CUDA device with bf16, auto resolved to bf16 for the fp32 graph and synthesis.json said
    so. This machine has no such device: the Synthesizer here resolves auto as one would."""
    import pix2pixhd.synthesis as synthesis

    class CudaAuto(synthesis.Synthesizer):
        def __init__(self, *args, precision="auto", **kwargs):
            super().__init__(*args, precision="bf16" if precision == "auto" else precision, **kwargs)

    monkeypatch.setattr(synthesis, "Synthesizer", CudaAuto)
    assert _synth(onnx_run, photos, tmp_path / "out", "--backend", "onnx") == 0
    ident = json.loads((tmp_path / "out" / "synthesis.json").read_text())
    assert (ident["backend"], ident["precision"]) == ("onnx", "fp32"), ident
    # and the torch backend still takes auto's bf16 there
    assert _synth(onnx_run, photos, tmp_path / "torch") == 0
    assert json.loads((tmp_path / "torch" / "synthesis.json").read_text())["precision"] == "bf16"


@pytest.mark.fault(cls="synthesis",
                   case="resuming a --backend onnx folder whose synthesis.json records precision 'bf16' (written "
                        "by a version that recorded --precision unapplied): the same job, resumed with a note")
def test_an_onnx_folder_recorded_as_bf16_resumes_as_the_same_job(onnx_run, photos, tmp_path, capsys):
    """Its photos are the fp32 graph's, as this version's: it was refused as another synthesis
    ("precision: 'bf16' then, 'fp32' now") and the rerun the refusal asked for (--precision bf16) is
    refused now. The folder is made as that version wrote it: synthesis.json with precision 'bf16'
    and the digest of that identity, its manifest lines under that digest."""
    from pix2pixhd.engine import _STATE_KEYS, _digest
    out = tmp_path / "out"
    assert _synth(onnx_run, photos, out, "--backend", "onnx") == 0
    photos_then = {p.name: p.read_bytes() for p in sorted((out / "test_B").iterdir())}
    old = json.loads((out / "synthesis.json").read_text())
    old["precision"] = "bf16"
    old["digest"] = _digest({k: v for k, v in old.items() if k not in _STATE_KEYS})
    (out / "synthesis.json").write_text(json.dumps(old, indent=1))
    lines = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines()]
    (out / "manifest.jsonl").write_text("".join(json.dumps({**r, "job": old["digest"]}) + "\n" for r in lines))
    capsys.readouterr()

    assert _synth(onnx_run, photos, out, "--backend", "onnx") == 0
    said = "".join(capsys.readouterr())   # the note on stderr, the summary on stdout
    assert "records precision 'bf16' for --backend onnx" in said and "resuming it as this job" in said, said
    assert "wrote 0 images" in said and "2 already complete" in said, said
    now = json.loads((out / "synthesis.json").read_text())
    assert now["precision"] == "fp32" and old["digest"] in now["older_digests"], now
    assert {p.name: p.read_bytes() for p in sorted((out / "test_B").iterdir())} == photos_then
    # and once more: the new synthesis.json is this job's, the old lines still count
    assert _synth(onnx_run, photos, out, "--backend", "onnx") == 0
    assert "wrote 0 images" in capsys.readouterr().out


# ---- --num_samples: the reason and the fix it gives --------------------------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="synthesize --num_samples 2 where nothing varies ({id}): refused naming the right cause "
                        "and fix")
@pytest.mark.parametrize("save, extra, why, fix", [
    pytest.param(lambda run: _save_pix2pix(run, no_dropout=True), [],
                 "(it was trained with --no_dropout: it has no randomness to sample)", "use --num_samples 1",
                 id="pix2pix trained with --no_dropout"),
    pytest.param(_save_cyclegan, [],
                 "(it was trained with --no_dropout, CycleGAN's default: it has no randomness to sample)",
                 "use --num_samples 1", id="CycleGAN trained without dropout"),
    pytest.param(lambda run: _save_cyclegan(run, no_dropout=False), ["--no_test_dropout"],
                 "(--no_test_dropout switches its dropout off)",
                 "drop --no_test_dropout (and --eval, which sets it) to sample 2 photos per map, or use "
                 "--num_samples 1", id="CycleGAN trained with dropout, --no_test_dropout"),
    pytest.param(_save_pix2pix, ["--eval"], "(--no_test_dropout switches its dropout off)",
                 "drop --no_test_dropout (and --eval, which sets it)", id="pix2pix with dropout, --eval"),
])
def test_num_samples_is_refused_with_the_reason_that_applies(tmp_path, photos, save, extra, why, fix):
    """pix2pix trained with --no_dropout was told "it was run with --no_test_dropout" (not given);
    CycleGAN trained with dropout and run with --no_test_dropout was told "it has no feature encoder
    and no dropout", which dropping --no_test_dropout would have made false."""
    save(tmp_path / "run")
    with pytest.raises(ConfigError) as e:
        _synth(tmp_path / "run", photos, tmp_path / "out", "--num_samples", "2", *extra)
    msg = str(e.value)
    assert msg.startswith("--num_samples 2: this generator gives one image per map " + why), msg
    assert fix in msg, msg
    assert not (tmp_path / "out").exists()


@pytest.mark.fault(cls="command-line errors",
                   case="synthesize --backend onnx --num_samples 2 for pix2pix trained with dropout: refused, the "
                        "graph has none; the torch backend samples")
def test_num_samples_through_onnx_names_the_export_and_the_torch_backend(onnx_run, photos, tmp_path):
    with pytest.raises(ConfigError) as e:
        _synth(onnx_run, photos, tmp_path / "out", "--backend", "onnx", "--num_samples", "2")
    assert str(e.value) == ("--num_samples 2: this generator gives one image per map (the ONNX export has no "
                            "dropout), so the samples would be identical; use --num_samples 1, or --backend torch "
                            "to sample with its dropout")


def test_num_samples_samples_where_the_dropout_is_on(tmp_path, photos):
    """The refusal's counterpart: the CycleGAN run trained with dropout, without --no_test_dropout,
    draws two different photos per map."""
    _save_cyclegan(tmp_path / "run", no_dropout=False)
    assert _synth(tmp_path / "run", photos, tmp_path / "out", "--num_samples", "2") == 0
    a, b = (np.asarray(Image.open(tmp_path / "out" / "test_B" / f"p0_{k}.png")).astype(int) for k in (0, 1))
    assert np.abs(a - b).max() > 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_python_api_refuses_a_half_precision_for_a_generator_that_is_not_a_module(precision):
    """Synthesizer(OnnxGenerator(...), precision='bf16') ran the fp32 graph and reported bf16 (the
    command line refuses it before loading; the API said nothing). Any callable that is not a
    torch module stands for the ONNX generator here."""
    from pix2pixhd.synthesis import Synthesizer
    cfg = TrainConfig(model="pix2pix", label_nc=0, ngf=2, netG_pix2pix="unet_128").resolved()
    with pytest.raises(ConfigError, match=rf"precision='{precision}' with an ONNX generator.*computes in fp32"):
        Synthesizer(lambda x: x, cfg, "cpu", precision=precision)
    assert Synthesizer(lambda x: x, cfg, "cpu", precision="auto").precision == "fp32"

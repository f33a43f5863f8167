"""``synthesize.py --backend onnx`` runs the file only when it is what the torch backend would run.

The exported file records the sha256 of the checkpoint it came from and its BatchNorm mode
(``pix2pixhd.export``); synthesis refuses a file exported from another checkpoint (a run trained
further with --resume, another --which_epoch) or with other BatchNorm statistics than it was asked
for (--eval, --bn_running_stats), naming the export command that writes the right one. Tiny
pix2pix U-Nets (ngf 2, BatchNorm), legacy exporter, 16x20 photos.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pix2pixhd.cli import synthesize_main  # noqa: E402
from pix2pixhd.engine import file_sha256  # noqa: E402
from pix2pixhd.errors import ConfigError, MissingInputError  # noqa: E402
from pix2pixhd.export import OnnxGenerator, main as export_main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _save(run, which, seed):
    """A pix2pix run's checkpoint ``which`` (latest or an epoch) with weights and BatchNorm running
    statistics drawn from ``seed`` (random statistics, so running and per-image photos differ)."""
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_generator
    cfg = TrainConfig(model="pix2pix", label_nc=0, ngf=2, netG_pix2pix="unet_128", norm_impl="ref").resolved()
    torch.manual_seed(seed)
    state = build_generator(cfg).state_dict()
    for k, v in state.items():
        if k.endswith("running_mean"):
            v.copy_(torch.randn_like(v))
        elif k.endswith("running_var"):
            v.copy_(torch.rand_like(v) + 0.5)
    save_checkpoint({"G": state, "config": cfg.to_dict(), "global_step": seed}, run, which, cfg.to_json())


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    _save(run, "latest", seed=1)
    return run


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def _synth(run, photos, out, *extra):
    return synthesize_main(["--checkpoint", str(run), "--input", str(photos), "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0", "--writers", "1", "--no_test_dropout", *extra])


def _export(run, *extra):
    assert export_main(["--checkpoint", str(run), "--legacy", "--no_check", *extra]) == 0


def _max_grey_level_difference(a, b):
    return max(np.abs(np.asarray(Image.open(a / "test_B" / n)).astype(int)
                      - np.asarray(Image.open(b / "test_B" / n)).astype(int)).max() for n in ("p0.png", "p1.png"))


def test_export_records_the_checkpoints_sha256_which_epoch_and_batchnorm_mode(run):
    _save(run, 3, seed=2)
    _export(run, "--which_epoch", "3")
    og = OnnxGenerator(run / "generator.onnx")
    assert og.checkpoint_sha256 == file_sha256(run / "epoch_0003.pt") != file_sha256(run / "latest.pt")
    assert og.checkpoint == str((run / "epoch_0003.pt").resolve()) and og.which_epoch == "3"
    assert og.batchnorm_statistics == "per_image"
    _export(run, "--bn_running_stats")
    assert OnnxGenerator(run / "generator.onnx").batchnorm_statistics == "running"


def test_a_file_exported_before_the_checkpoint_changed_is_refused_with_the_export_command(run, photos, tmp_path):
    """Export, then train on (latest.pt rewritten, as --resume does) or pick another epoch: the
    file's weights are the old ones, so synthesis refuses it; the command it names fixes it."""
    _export(run)
    old_sha = file_sha256(run / "latest.pt")
    _save(run, "latest", seed=2)   # the run trained further
    onnx = run / "generator.onnx"
    with pytest.raises(ConfigError) as e:
        _synth(run, photos, tmp_path / "stale", "--backend", "onnx")
    msg = str(e.value)
    assert "\n" not in msg and f"{onnx} is out of date" in msg
    assert old_sha[:12] in msg and file_sha256(run / "latest.pt")[:12] in msg and str(run / "latest.pt") in msg
    assert f"`python -m pix2pixhd.export --checkpoint {run}`" in msg and "--onnx_path" in msg
    assert not (tmp_path / "stale").exists()   # refused before anything was written

    _save(run, 7, seed=3)   # another epoch: the fix names it
    with pytest.raises(ConfigError, match=rf"`python -m pix2pixhd\.export --checkpoint {run} --which_epoch 7`"):
        _synth(run, photos, tmp_path / "stale", "--backend", "onnx", "--which_epoch", "7")
    other = tmp_path / "elsewhere.onnx"   # a file named with --onnx_path: the fix writes that file
    onnx.rename(other)
    with pytest.raises(ConfigError, match=rf"--checkpoint {run} --out {other}`"):
        _synth(run, photos, tmp_path / "stale", "--backend", "onnx", "--onnx_path", str(other))

    _export(run)   # the fix: the file now holds the new weights, as the torch backend runs them
    assert _synth(run, photos, tmp_path / "onnx", "--backend", "onnx") == 0
    assert _synth(run, photos, tmp_path / "torch") == 0
    assert _max_grey_level_difference(tmp_path / "onnx", tmp_path / "torch") <= 1
    ident = json.loads((tmp_path / "onnx" / "synthesis.json").read_text())
    assert ident["checkpoint_sha256"] == OnnxGenerator(onnx).checkpoint_sha256 == file_sha256(run / "latest.pt")


def test_a_file_without_a_checkpoint_hash_runs_with_a_note(run, photos, tmp_path, capsys):
    import onnx
    _export(run)
    path = run / "generator.onnx"
    model = onnx.load(str(path))   # as exported before the hash was recorded
    kept = [p for p in model.metadata_props if p.key != "pix2pixhd.checkpoint_sha256"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(path))
    assert _synth(run, photos, tmp_path / "out", "--backend", "onnx") == 0
    assert (f"note: {path} records no checkpoint hash (exported before pix2pixhd recorded it): it cannot be "
            f"checked against {run / 'latest.pt'}") in capsys.readouterr().out


def test_batchnorm_mode_of_the_file_must_be_the_one_asked_for(run, photos, tmp_path):
    """--eval / --bn_running_stats need a file exported with --bn_running_stats, and the default
    (per-image statistics) one without; synthesis.json records the mode the graph has."""
    _export(run)
    for flag in ("--eval", "--bn_running_stats"):
        with pytest.raises(ConfigError, match=r"normalises BatchNorm with per-image statistics, but this synthesis "
                                              r"asks for running ones .*`python -m pix2pixhd\.export --checkpoint "
                                              rf"{run} --bn_running_stats`"):
            _synth(run, photos, tmp_path / "refused", "--backend", "onnx", flag)
    _export(run, "--bn_running_stats")
    with pytest.raises(ConfigError, match=r"with running statistics, but this synthesis asks for per-image ones"):
        _synth(run, photos, tmp_path / "refused", "--backend", "onnx")
    assert not (tmp_path / "refused").exists()

    assert _synth(run, photos, tmp_path / "onnx", "--backend", "onnx", "--eval") == 0
    assert _synth(run, photos, tmp_path / "torch_eval", "--eval") == 0
    assert _synth(run, photos, tmp_path / "torch_per_image") == 0
    assert _max_grey_level_difference(tmp_path / "onnx", tmp_path / "torch_eval") <= 1
    # the two modes give other photos here, so the match above is the running statistics' doing
    assert _max_grey_level_difference(tmp_path / "onnx", tmp_path / "torch_per_image") > 10
    ident = json.loads((tmp_path / "onnx" / "synthesis.json").read_text())
    assert ident["backend"] == "onnx" and ident["batchnorm_statistics"] == "running"


def test_a_missing_file_names_the_run_folder_and_the_export_command(run, photos, tmp_path):
    with pytest.raises(MissingInputError) as e:
        _synth(run, photos, tmp_path / "out", "--backend", "onnx", "--eval")
    assert str(e.value) == (f"ONNX generator {run / 'generator.onnx'} does not exist; export it with "
                            f"`python -m pix2pixhd.export --checkpoint {run} --bn_running_stats`")
    _save(run, 2, seed=2)
    with pytest.raises(MissingInputError, match=rf"`python -m pix2pixhd\.export --checkpoint {run} "
                                                rf"--which_epoch 2 --out {tmp_path / 'g.onnx'}`"):
        _synth(run, photos, tmp_path / "out", "--backend", "onnx", "--which_epoch", "2",
               "--onnx_path", str(tmp_path / "g.onnx"))
    # OnnxGenerator alone: a run's default file names its folder as the run
    with pytest.raises(MissingInputError, match=rf"`python -m pix2pixhd\.export --checkpoint {run} --direction BtoA`"):
        OnnxGenerator(run / "generator_G_B.onnx")

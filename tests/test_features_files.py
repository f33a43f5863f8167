"""The clusters file of ``python -m pix2pixhd.features encode``: the identity of the encoder it
came from, a damaged file, where it is written, and the encode / precompute options checked
before any work. Tiny runs (an untrained E, 32x64 batches), no training."""
import hashlib
import re
from pathlib import Path

import pytest
import torch

from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError, InputError, MissingInputError
from pix2pixhd.features import (CLUSTERS_FILE, FeatureClusters, FeatureSource, encode_and_cluster, main,
                                stale_clusters_note)
from pix2pixhd.models import build_encoder


def _run(folder: Path, step: int, seed: int) -> TrainConfig:
    """A run folder with an untrained E (``seed`` picks its weights) saved at ``step``."""
    cfg = TrainConfig(name=folder.name, checkpoints_dir=str(folder.parent), instance_feat=True, label_nc=3,
                      nef=4, n_downsample_E=2, ngf=4, n_downsample_global=2, n_blocks_global=1,
                      n_clusters=2).resolved()
    torch.manual_seed(seed)
    save_checkpoint({"config": cfg.to_dict(), "global_step": step, "E": build_encoder(cfg).state_dict()},
                    folder, "latest", cfg.to_json())
    return cfg


def _batches():
    label = torch.zeros(1, 1, 32, 64, dtype=torch.long)
    label[..., 32:] = 1
    image = torch.randint(0, 256, (1, 3, 32, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return [{"image": image, "label": label, "inst": label}]


def _no_batches():
    raise AssertionError("the work started before the options were checked")
    yield


def test_clusters_of_another_run_at_the_same_step_are_noted(tmp_path, capsys):
    """Only the step was recorded: another run's clusters (or the global stage's, for a local stage
    whose step restarted) at the same step were used without a note."""
    pytest.importorskip("sklearn")
    a, b = tmp_path / "ck" / "a", tmp_path / "ck" / "b"
    _run(a, 5, seed=0)
    cfg = _run(b, 5, seed=1)
    path, fc = encode_and_cluster(a, batches=_batches())
    assert fc.encoder["checkpoint"] == str((a / "latest.pt").resolve())
    assert stale_clusters_note(FeatureClusters.load(path), a) is None   # its own encoder
    (b / CLUSTERS_FILE).write_bytes(path.read_bytes())
    FeatureSource.from_checkpoint(b, cfg, "sample")
    err = capsys.readouterr().err
    assert err.startswith(f"note: {b / CLUSTERS_FILE} were clustered from the encoder of {a.resolve()}"
                          "/latest.pt at step 5, but the encoder is "), err
    assert "at step 5, with other weights" in err
    assert f"re-cluster with `python -m pix2pixhd.features encode --checkpoint {b}`" in err
    # the same weights in another file (a copy of the run): no note
    _run(tmp_path / "ck" / "c", 9, seed=0)
    assert stale_clusters_note(FeatureClusters.load(path), tmp_path / "ck" / "c") is None


@pytest.mark.parametrize("damage", ["truncated", "empty", "other keys", "not a dict"])
def test_a_damaged_clusters_file_is_one_error_naming_it_and_the_fix(tmp_path, damage):
    path = tmp_path / "run" / CLUSTERS_FILE
    FeatureClusters({1: torch.zeros(2, 3)}, 3, 2).save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(1)} if damage == "other keys" else [1, 2], path)
    with pytest.raises(InputError) as e:
        FeatureClusters.load(path.parent)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path} is not a usable clusters file (")
    assert msg.endswith(f"rewrite it with `python -m pix2pixhd.features encode --checkpoint {path.parent}`")


def test_loaded_clusters_carry_the_hash_of_their_file(tmp_path):
    path = FeatureClusters({1: torch.zeros(2, 3)}, 3, 2).save(tmp_path / CLUSTERS_FILE)
    assert FeatureClusters.load(path).file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_encode_of_a_checkpoint_file_writes_beside_it_and_a_bad_out_is_refused_first(tmp_path):
    """--checkpoint RUN/latest.pt encoded everything, then failed writing RUN/latest.pt/..."""
    pytest.importorskip("sklearn")
    run = tmp_path / "ck" / "a"
    _run(run, 3, seed=0)
    path, _ = encode_and_cluster(run / "latest.pt", batches=_batches())
    assert path == run / CLUSTERS_FILE and FeatureClusters.load(path).global_step == 3
    with pytest.raises(ConfigError, match=f"cannot write {run}/latest.pt/x.pt: {run}/latest.pt is a file"):
        encode_and_cluster(run, batches=_no_batches(), out=run / "latest.pt" / "x.pt")
    with pytest.raises(ConfigError, match=f"--out {run} is a folder"):
        encode_and_cluster(run, batches=_no_batches(), out=run)


@pytest.mark.parametrize("argv, match", [
    (["encode", "--how_many", "-1"], r"--how_many -1: expected 0 \(every image\)"),
    (["encode", "--n_clusters", "-1"], r"--n_clusters -1: need at least 1"),
    (["precompute", "--upsample", "0"], r"--upsample 0: expected a factor of 1 or more"),
    (["precompute", "--upsample", "-2"], r"--upsample -2: expected a factor of 1 or more"),
    (["precompute", "--how_many", "-1"], r"--how_many -1: expected 0 \(every image\)")])
def test_bad_encode_and_precompute_options_are_refused_before_anything(tmp_path, argv, match):
    """--how_many -1 dropped the last image; --n_clusters -1 and --upsample 0 failed with a
    traceback after the work (precompute: after creating its output folder)."""
    run = tmp_path / "ck" / "a"
    _run(run, 3, seed=0)
    out = tmp_path / "feat"
    extra = ["--out_dir", str(out)] if argv[0] == "precompute" else ["--out", str(out / "c.pt")]
    with pytest.raises(ConfigError, match=match):
        main(argv + ["--checkpoint", str(run), "--device", "cpu", "--dataroot", str(tmp_path / "none")] + extra)
    assert not out.exists()


@pytest.mark.parametrize("cmd", ["encode", "precompute"])
def test_a_recorded_dataroot_that_is_not_here_asks_for_dataroot_not_for_generated_data(tmp_path, monkeypatch, cmd):
    """A run's config.json can hold a relative dataroot (an older or imported run): from another
    folder, the data module's missing-folder message offered to generate synthetic data there."""
    run = tmp_path / "ck" / "a"
    cfg = _run(run, 5, seed=0)
    monkeypatch.chdir(tmp_path)
    assert not Path(cfg.dataroot).exists()
    with pytest.raises(MissingInputError, match=rf"^{re.escape(cfg.dataroot)}: the dataroot the run's config\.json "
                                                r"records does not exist .*pass --dataroot with the folder") as e:
        main([cmd, "--checkpoint", str(run)])
    assert "synthetic_streets" not in str(e.value)

"""Findings FX53, each with the test that failed before its fix:

1. evaluate's note "N of M --fake images have no --real partner; skipped" did not say that FID/KID
   skip them too (they are computed over the paired subset), nor that --unpaired scores them all;
2. scripts/ablations.py on a --facades folder of other AB images (right half no facades label map)
   kept the converter's advice, "pass --direction AtoB", an option the script does not have;
3. --dataset_mode X on a root whose train/ holds sub-folders only advised "pass --dataset_mode
   aligned", which was then refused as "holds no image directly": two refusals in a circle;
4. synthesize.py --checkpoint RUN/epoch_0002.pt (or --which_epoch 2) with no clusters file at all
   advised plain `encode --checkpoint RUN`, which clusters the latest's encoder: its clusters were
   then noted as another encoder's, and only that note led to the epoch's own file;
5. the "no saved clusters" note named every class without centres: one line of hundreds of
   characters for a label_nc of 182.
"""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.data import DatasetError
from pix2pixhd.errors import run

REPO = Path(__file__).resolve().parents[1]


# ---- 1. evaluate: unpaired images are left out of FID/KID too ---------------------------------------
def test_the_skipped_note_says_fid_and_kid_skip_unpaired_images_too(tmp_path):
    pytest.importorskip("torchmetrics")
    from tests.test_evaluate import _tiny_extractor
    from pix2pixhd.evaluate import evaluate
    rng = np.random.default_rng(0)
    for side, n in (("fake", 5), ("real", 8)):
        (tmp_path / side).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / side / f"{i}.png")
    res = evaluate(tmp_path / "fake", tmp_path / "real", feature_extractor=_tiny_extractor(), kid_subsets=2,
                   kid_subset_size=3, verbose=False)
    assert res["n_images"] == 5 and res["n_real_unmatched"] == 3
    assert ("3 of 8 --real images have no --fake partner; skipped (by every metric, FID/KID included; "
            "--unpaired scores FID/KID over every image)") in res["notes"], res["notes"]
    # without FID/KID there is nothing about them to say
    res = evaluate(tmp_path / "fake", tmp_path / "real", no_fid=True, verbose=False)
    assert "3 of 8 --real images have no --fake partner; skipped by every metric" in res["notes"], \
        res["notes"]


# ---- 2. ablations: a wrong --facades folder is named with --facades ---------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="scripts/ablations.py --facades on a folder of other AB images (right half no facades "
                        "label map): the error names --facades and what it must hold, not the converter's "
                        "--direction, which the script has no option for")
def test_ablations_name_facades_not_the_converters_direction(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ablations", REPO / "scripts" / "ablations.py")
    abl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = abl   # dataclasses look their module up while the file executes
    spec.loader.exec_module(abl)
    src = tmp_path / "maps"
    (src / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 7):   # photo | photo: another pix2pix dataset
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(src / "train" / f"{i}.png")
    assert run(abl.main, ["--facades", str(src), "--out", str(tmp_path / "out"), "--n_val", "2",
                          "--only", "l1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: --facades {src} is not the pix2pix facades folder: {src / 'train' / '1.png'}: "
                          "only "), err
    assert err.endswith("--facades must hold train/N.jpg, each a photo (left half) | its colour label map in "
                        "the facades palette (right half): point it at that folder"), err
    assert "--direction" not in err, err


# ---- 3. data: no advice that is refused in turn -----------------------------------------------------
@pytest.mark.fault(cls="bad dataset",
                   case="--dataset_mode {mode} on a root whose train/ holds sub-folders only: the error says what "
                        "train/ holds and which layout reads it, never 'pass --dataset_mode aligned', which "
                        "is refused in turn")
@pytest.mark.parametrize("mode", ["cityscapes", "palette", "rgb_pairs", "unaligned"])
def test_a_split_of_sub_folders_is_not_offered_as_the_aligned_layout(tmp_path, mode):
    from pix2pixhd.data.dataset import layout_of
    root = tmp_path / "d"
    for sub in ("part1", "part2"):
        (root / "train" / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "train" / sub / "a.png")
    with pytest.raises(DatasetError) as first:
        layout_of(root, "train", mode, None, None)
    msg = str(first.value)
    assert "pass --dataset_mode aligned" not in msg, msg
    assert f"{root / 'train'}/ holds no image directly (it holds part1/, part2/; sub-folders are not searched)" \
        in msg, msg
    assert f"the cityscapes layout reads {root / 'train_label'}/ + {root / 'train_img'}/" in msg, msg
    assert msg.startswith(f"dataset_mode {mode} reads "), msg
    # and --dataset_mode aligned says no more than this
    with pytest.raises(DatasetError, match="holds no image directly"):
        layout_of(root, "train", "aligned", None, None)


def test_a_root_that_holds_aligned_images_is_still_named_as_such(tmp_path):
    from pix2pixhd.data.dataset import layout_of
    (tmp_path / "train").mkdir()
    Image.new("RGB", (16, 8)).save(tmp_path / "train" / "1.png")
    with pytest.raises(DatasetError, match="pass --dataset_mode aligned"):
        layout_of(tmp_path, "train", "cityscapes", None, None)


# ---- 4. an epoch's checkpoint without any clusters file ----------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="synthesize.py --checkpoint RUN/epoch_0002.pt or --which_epoch 2 with no clusters file at "
                        "all: the error is the encode of that checkpoint with --out its own file and the "
                        "--clusters that reads it, not plain encode --checkpoint RUN (the latest's encoder); "
                        "that command then works")
def test_no_clusters_for_an_epoch_checkpoint_advise_its_own_file(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from pix2pixhd.features import CLUSTERS_FILE, main as features_main
    from tests.test_walk8_synthesis_findings import _synth_epoch, _two_epoch_run
    run_dir = _two_epoch_run(tmp_path)
    (run_dir / CLUSTERS_FILE).unlink()
    ckpt, own = run_dir / "epoch_0002.pt", run_dir / "features_clustered_epoch_0002.pt"
    for extra, cmd in ((("--checkpoint", ckpt), f"--checkpoint {ckpt}"),
                       (("--which_epoch", "2"), f"--checkpoint {run_dir} --which_epoch 2")):
        capsys.readouterr()
        assert _synth_epoch(run_dir, tmp_path / f"out{extra[0]}", *extra) == 1
        err = capsys.readouterr().err
        assert (f"run `python -m pix2pixhd.features encode {cmd} --out {own}`, then synthesize with "
                f"--clusters {own}") in err, err
        assert f"encode --checkpoint {run_dir}`" not in err, err
    # the command given works, and the synthesis it names then runs without a note on the clusters
    assert features_main(["encode", "--checkpoint", str(ckpt), "--out", str(own)]) == 0
    assert not (run_dir / CLUSTERS_FILE).exists()
    capsys.readouterr()
    assert _synth_epoch(run_dir, tmp_path / "with", "--checkpoint", ckpt, "--clusters", own) == 0
    assert "re-cluster" not in capsys.readouterr().err
    # its own file there, --clusters left out: the error names --clusters it
    capsys.readouterr()
    assert _synth_epoch(run_dir, tmp_path / "without", "--checkpoint", ckpt) == 1
    assert f"synthesize with --clusters {own}" in capsys.readouterr().err


# ---- 5. the note on classes without clusters, for a large label_nc ----------------------------------
def test_the_no_saved_clusters_note_counts_classes_past_the_first_few():
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.features import FeatureClusters, FeatureSource
    have = {c: torch.rand(2, 3) for c in (1, 2, 4, 5, 6)}
    src = FeatureSource(TrainConfig(instance_feat=True, feat_num=3, label_nc=182).resolved(), "sample",
                        clusters=FeatureClusters(have, 3, 2))
    note = src.missing_clusters_note()
    assert note.startswith("classes 0, 3, 7, 8, 9, 10, 11, 12 and 169 more of this checkpoint's 182 have no saved "
                           "clusters (no instance"), note
    assert len(note) < 300, note
    # a few classes: all of them, as before
    src = FeatureSource(TrainConfig(instance_feat=True, feat_num=3, label_nc=9).resolved(), "sample",
                        clusters=FeatureClusters(have, 3, 2))
    assert src.missing_clusters_note().startswith("class(es) [0, 3, 7, 8] of this checkpoint's 9 have no saved")

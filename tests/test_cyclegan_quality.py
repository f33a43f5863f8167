"""benchmarks/cyclegan_quality.py on tiny fake facades: the unpaired halves are disjoint and
validated, training runs through train_hd.py in chunks that resume, every point carries the
scores of both directions and both cycles, and the table compares with a pix2pix run."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cyclegan_quality as C  # noqa: E402
from pix2pixhd.evaluate import SegmenterConfig  # noqa: E402
from tests.test_quality import _facades, _Feats  # noqa: E402


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()   # the benchmark sets its --threads (1)
    yield
    torch.set_num_threads(n)


def test_unpaired_facades_benchmark_trains_scores_and_resumes(tmp_path):
    _facades(tmp_path / "src", 9)
    argv = ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "data"), "--src", str(tmp_path / "src"),
            "--n_val", "3", "--size", "32", "--ngf", "4", "--ndf", "4", "--netG", "resnet_6blocks",
            "--eval_every_epochs", "1", "--budget_minutes", "0"]
    tiny = dict(seg=SegmenterConfig(steps=2, width=4, depth=2), feature_extractor=_Feats())
    state = C.run_recipe(C.parser().parse_args(argv), **tiny)
    split = json.loads((tmp_path / "out" / "unpaired" / "unpaired.json").read_text())
    assert len(split["A_label_maps"]) == 3 and len(split["B_photos"]) == 3
    assert not set(split["A_label_maps"]) & set(split["B_photos"])   # no scene in both domains
    val = set(json.loads((tmp_path / "data" / "facades" / "classes.json").read_text())["stems"]["val"])
    assert not val & (set(split["A_label_maps"]) | set(split["B_photos"]))
    (p1,) = state["points"]
    for k in ("seg", "G_B_seg", "cycle_A_psnr", "cycle_B_psnr", "kid_mean", "psnr"):
        assert k in p1, k
    assert 0 <= p1["G_B_seg"]["pixel_acc"] <= 1 and p1["cycle_A_psnr"] > 0
    assert (tmp_path / "out" / "samples_epoch1.png").is_file()

    # a larger budget continues from the evaluated checkpoint (--resume), one more chunk
    state = C.run_recipe(C.parser().parse_args(argv[:-1] + [str(p1["train_cpu_min"] + 1e-6)]), **tiny)
    assert [p["epoch"] for p in state["points"]] == [1, 2]
    assert "--resume" in (tmp_path / "out" / "train.log").read_text()

    # the pix2pix row: a quality.py state at or below the same CPU-minutes
    fake = tmp_path / "p2p"
    fake.mkdir()
    (fake / "state.json").write_text(json.dumps({
        "run": {"recipe": "pix2pix_l1_cgan", "flags": ["--model", "pix2pix"], "data": {}},
        "points": [{"epoch": 1, "train_cpu_min": 0.0, "psnr": 12.0,
                    "seg": {"pixel_acc": 0.5, "class_acc": 0.25, "mean_iou": 0.125}},
                   {"epoch": 2, "train_cpu_min": 1e9, "psnr": 13.0, "seg": None}]}))
    table = C.table_md(state, C.pix2pix_at(fake, state["points"][-1]["train_cpu_min"]))
    assert "| pix2pix_l1_cgan (paired) | 1 | 0.0 | 0.500 / 0.250 / 0.125 |" in table
    assert table.count("| cyclegan (unpaired) |") == 2

"""benchmarks/quality.py end to end on a few synthetic facades: split, chunks, scores, resume.

A tiny pix2pixHD recipe at 32 px, a 3-step segmenter and a random conv net as the FID/KID
feature extractor keep it to seconds; the real run differs only in sizes and the Inception file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("torchmetrics")

REPO = Path(__file__).resolve().parents[1]
from benchmarks import quality  # noqa: E402
from pix2pixhd.data import FACADES_PALETTE  # noqa: E402
from pix2pixhd.engine import photos_dir  # noqa: E402
from pix2pixhd.evaluate import SegmenterConfig  # noqa: E402

TINY = quality.Recipe("tiny", ("--ngf", "4", "--ndf", "4", "--n_downsample_global", "2",
                               "--n_blocks_global", "1", "--num_D", "1", "--n_layers_D", "2",
                               "--no_vgg_loss"), "a tiny pix2pixHD global generator")


def _facades(root: Path, n: int) -> Path:
    """n pix2pix-layout AB images (photo | colour label map), 64x32, blocks of palette colours."""
    rng = np.random.default_rng(0)
    pal = np.asarray(FACADES_PALETTE, np.uint8)
    (root / "train").mkdir(parents=True)
    for i in range(1, n + 1):
        ids = np.repeat(np.repeat(rng.integers(0, 12, (4, 4)), 8, 0), 8, 1)
        photo = np.clip(pal[ids].astype(int) // 2 + rng.integers(0, 60, (32, 32, 3)), 0, 255)
        ab = np.concatenate([photo.astype(np.uint8), pal[ids]], 1)
        Image.fromarray(ab).save(root / "train" / f"{i}.png")
    return root


class _Feats(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)

    def forward(self, x):
        return self.conv(x)


def _run(tmp: Path, max_epochs: int, log):
    spec = quality.DataSpec(str(tmp / "src"), n_val=3, split_seed=0, size=32)
    return quality.run_benchmark(TINY, tmp / "out", budget_minutes=1000, eval_every_epochs=1,
                                 max_epochs=max_epochs, data=tmp / "data", spec=spec,
                                 seg=SegmenterConfig(steps=3, width=4, depth=2),
                                 feature_extractor=_Feats(), log=log)


def test_quality_benchmark_splits_scores_every_epoch_and_resumes(tmp_path):
    _facades(tmp_path / "src", 8)
    logs: list[str] = []
    st = _run(tmp_path, 1, logs.append)
    manifest = json.loads((tmp_path / "data" / "quality_data.json").read_text())
    assert manifest["counts"] == {"train": 5, "val": 3}
    val = set(manifest["val_stems"])
    train = {p.stem for p in (tmp_path / "data" / "facades" / "train_label").iterdir()}
    assert len(val) == 3 and not val & train
    assert "real photos (ceiling)" in st["references"] and "colour label maps (floor)" in st["references"]
    assert [p["epoch"] for p in st["points"]] == [1]

    # the same command with a larger limit continues from epoch 1 (one more chunk, --resume)
    first = json.loads((tmp_path / "out" / "state.json").read_text())["points"]
    st = _run(tmp_path, 2, logs.append)
    assert [p["epoch"] for p in st["points"]] == [1, 2]
    assert st["points"][:1] == first
    for p in st["points"]:
        assert p["train_cpu_min"] > 0 and 0 <= p["seg"]["pixel_acc"] <= 1 and "kid_mean" in p
        fakes = tmp_path / "out" / "fakes" / f"epoch_{p['epoch']}"
        assert sorted(x.stem for x in photos_dir(fakes).iterdir()) == sorted(val)
    assert st["points"][1]["train_cpu_min"] > st["points"][0]["train_cpu_min"]
    log = (tmp_path / "out" / "train.log").read_text()
    assert log.count("$ python train_hd.py") == 2 and log.count("--resume --which_epoch 1") == 1
    # only the last evaluated point's checkpoint is kept
    assert [p.name for p in (tmp_path / "out" / "run").glob("epoch_*.pt")] == [quality._epoch_file(2)]
    assert (tmp_path / "out" / "quality.md").read_text().count("\n| tiny | ") == 2
    assert (tmp_path / "out" / "curves.svg").read_text().startswith("<svg")

    # the docs' picture: label | the run's last point | real, for the first validation images
    sheet = quality.compare_sheet([tmp_path / "out"], tmp_path / "data", tmp_path / "sheet.png", n=2)
    got = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    ev = Path(manifest["eval_dir"])
    first = manifest["val_stems"][0]
    colour, real = (np.asarray(Image.open(ev / d / f"{first}.png").convert("RGB")).astype(int) for d in ("colour", "img"))
    fake = np.asarray(Image.open(photos_dir(tmp_path / "out" / "fakes" / "epoch_2") / f"{first}.png").convert("RGB")).astype(int)
    side = colour.shape[0]
    assert got.shape == (2 * side, 3 * side, 3)
    assert (got[:side, :side] == colour).all()                    # few colours: exact after quantizing
    # 256 colours: each column is far closer to its own image than to the others'
    srcs = [colour, fake, real]
    for i in (1, 2):
        d = [abs(got[:side, i * side:(i + 1) * side] - src).mean() for src in srcs]
        assert d[i] < 10 and d[i] < 0.5 * min(d[j] for j in range(3) if j != i), (i, d)

    # --compare --until keeps only the points at or before that many CPU-minutes
    quality.compare([tmp_path / "out"], None, tmp_path / "until.md", until=st["points"][0]["train_cpu_min"])
    assert (tmp_path / "until.md").read_text().count("\n| tiny | 1 |") == 1
    assert (tmp_path / "until.md").read_text().count("\n| tiny | ") == 1
    # ... and so does its sample sheet: the fake column is epoch 1's, not the last point's
    sheet = quality.compare_sheet([tmp_path / "out"], tmp_path / "data", tmp_path / "sheet1.png", n=2,
                                  until=st["points"][0]["train_cpu_min"])
    got = np.asarray(Image.open(sheet).convert("RGB")).astype(int)[:side, side:2 * side]
    fake1 = np.asarray(Image.open(photos_dir(tmp_path / "out" / "fakes" / "epoch_1") / f"{first}.png").convert("RGB")).astype(int)
    d1, d2 = abs(got - fake1).mean(), abs(got - fake).mean()
    assert d1 < 10 and d1 < d2, (d1, d2)    # the two epochs' fakes differ by little (mean ≈ 4 here)

    # once done, a rerun trains nothing
    st = _run(tmp_path, 2, logs.append)
    assert len(st["points"]) == 2
    assert (tmp_path / "out" / "train.log").read_text().count("$ python train_hd.py") == 2


def test_quality_refuses_a_run_folder_with_other_settings(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "state.json").write_text(json.dumps({"run": {"recipe": "other"}, "points": []}))
    _facades(tmp_path / "src", 6)
    spec = quality.DataSpec(str(tmp_path / "src"), n_val=2, size=32)
    with pytest.raises(SystemExit, match="other settings"):
        quality.run_benchmark(TINY, out, budget_minutes=1, data=tmp_path / "data", spec=spec,
                              seg=SegmenterConfig(steps=1, width=4, depth=2), no_fid=True)


def test_preparation_extracts_each_reference_image_once(tmp_path):
    # the fault: the ceiling row was scored with FID/KID, whose result it drops, so --prepare_only
    # ran Inception over the 100 real photos twice
    _facades(tmp_path / "src", 6)
    spec = quality.DataSpec(str(tmp_path / "src"), n_val=3, split_seed=0, size=32)
    manifest = quality.prepare_data(spec, tmp_path / "data", log=lambda *a: None)
    seen: list[int] = []

    class Counting(_Feats):
        def forward(self, x):
            seen.append(len(x))
            return super().forward(x)
    sc = quality.make_scorer(manifest, tmp_path / "data", seg=SegmenterConfig(steps=1, width=4, depth=2),
                             feature_extractor=Counting(), log=lambda *a: None)
    # a 1-image probe (InceptionFeatures' feature count), then the 3 real photos (their features,
    # kept), the 3 blurred photos and the 3 colour maps: 10, not 13
    assert seen[0] == 1 and sum(seen) == 1 + 3 * 3, seen
    assert sc.real_feats.shape[0] == 3
    refs = sc.references
    assert set(refs["real photos (ceiling)"]) == {"seg", "grid", "psnr", "ssim"}
    assert "kid_mean" in refs["real photos blurred σ=4 px"] and "kid_mean" in refs["colour label maps (floor)"]


def test_window_averages_only_the_points_inside_it():
    """--window's mean ± std: points outside [lo, hi] CPU-minutes are left out, the std is the
    sample std, and a run with no point in the window says so instead of averaging nothing."""
    def pt(epoch, cpu, seg, kid):
        return {"epoch": epoch, "train_cpu_min": cpu, "seg": {"pixel_acc": seg}, "kid_mean": kid}
    a = {"run": {"recipe": "a"}, "points": [pt(2, 10.0, 0.10, 0.900), pt(4, 30.0, 0.50, 0.300),
                                            pt(6, 45.0, 0.60, 0.200), pt(8, 61.0, 0.70, 0.100)]}
    b = {"run": {"recipe": "b"}, "points": [pt(2, 12.0, 0.40, 0.500)]}
    rows = quality.window_md([a, b], 30, 60).splitlines()
    assert rows[2] == "| a | 2 | 4-6 | 0.550 ± 0.071 | 250 ± 71 |"
    assert rows[3] == "| b | 0 | - | - | - |"


def test_window_of_one_point_shows_no_spread():
    # the fault: one point in the window printed "0.387 ± 0.000", a spread it does not have
    pt = {"epoch": 4, "train_cpu_min": 30.0, "seg": {"pixel_acc": 0.387}, "kid_mean": 0.2}
    rows = quality.window_md([{"run": {"recipe": "a"}, "points": [pt]}], 20, 70).splitlines()
    assert rows[2] == "| a | 1 | 4-4 | 0.387 ± n/a | 200 ± n/a |"


def _table_state(with_fid: bool) -> dict:
    fid = {"fid": 150.0, "kid_mean": 0.2, "kid_std": 0.01} if with_fid else {}
    seg = {"pixel_acc": 0.5, "class_acc": 0.4, "mean_iou": 0.3}
    return {"run": {"recipe": "a", "data": {"n_val": 100}},
            "references": {"real photos (ceiling)": {"seg": seg, "grid": 1.0, "psnr": "inf", "ssim": 1.0}},
            "points": [{"epoch": 2, "train_cpu_min": 5.0, "train_wall_min": 6.0, "psnr": 12.0,
                        "ssim": 0.3, "grid": 2.0, "seg": seg, **fid}]}


def test_table_footnote_explains_fid_and_kid_only_when_they_were_computed():
    # the fault: after --no_fid the footnote still explained FID's bias and KID's subsets
    without = quality.table_md([_table_state(False)])
    foot = without.splitlines()[-1]
    assert foot.startswith("†grid: power on the 16-px grid") and "FID" not in without.replace("| FID |", "")
    assert "KID: mean" not in without and "subsets" not in without and "FID*" not in without
    with_fid = quality.table_md([_table_state(True)])
    assert "| FID* |" in with_fid and "| 150 | 200 ± 10 |" in with_fid
    assert with_fid.splitlines()[-1].startswith("*FID from 100 images per side")
    assert "KID: mean ± std over 100 subsets of 50. †grid:" in with_fid


def test_recipes_hold_the_exact_flags_of_the_reference_runs():
    hd = quality.RECIPES["pix2pixhd_global"].flags
    assert "--no_vgg_loss" in hd and hd[hd.index("--n_downsample_global") + 1] == "4"
    assert quality.RECIPES["pix2pix_l1"].flags[-2:] == ("--lambda_GAN", "0")
    assert quality.load_size(128) == 143


def test_every_recipe_is_a_valid_command_line(tmp_path):
    """Each recipe's flags on top of the shared ones resolve through train_hd.py's parser (no
    unknown flag, value or combination), and each single-change recipe differs from
    pix2pixhd_global in exactly the option its name says."""
    from pix2pixhd.cli import resolve_config
    common = quality.common_flags(tmp_path / "data", tmp_path / "out", 128, 1, 0)
    cfgs = {name: resolve_config(common + list(r.flags)).to_dict() for name, r in quality.RECIPES.items()}
    ref = cfgs["pix2pixhd_global"]
    diff = lambda name: {k: v for k, v in cfgs[name].items() if ref[k] != v}  # noqa: E731
    assert diff("pix2pixhd_global_l1") == {"lambda_L1": 100.0}
    assert diff("pix2pixhd_global_down2") == {"n_downsample_global": 2}
    assert diff("pix2pixhd_global_diffaug") == {"diffaug": "color,translation,cutout"}
    assert diff("pix2pixhd_global_resize") == {"upsample": "resize"}


def test_facade_ids_reach_the_generator_identically_in_training_and_synthesis(tmp_path):
    """Issue 15's first suspect: the palette decoding and one-hot input at train time against
    synthesis time. The same facade, read (a) as pix2pix AB image with --palette facades, (b)
    converted to id maps, through the data module and Trainer.prepare, and (c) as the converted
    id map through synthesize_folder, must give the generator the same one-hot tensor."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.data import create_dataset
    from pix2pixhd.datasets.convert_facades import convert
    from pix2pixhd.synthesis import Synthesizer, synthesize_folder
    from pix2pixhd.trainer import Trainer
    src = _facades(tmp_path / "src", 2)
    convert(src, tmp_path / "conv")
    cfg = TrainConfig(model="pix2pixhd", label_nc=12, no_instance=True, ngf=4, ndf=4,
                      n_downsample_global=2, n_blocks_global=1, num_D=1, no_vgg_loss=True,
                      checkpoints_dir=str(tmp_path / "ck"), no_tensorboard=True).resolved()
    trainer = Trainer(cfg)
    geometry = dict(label_nc=12, no_instance=True, resize_or_crop="none", is_train=False, validate="full")
    aligned = create_dataset(src, "train", dataset_mode="aligned", direction="BtoA", palette="facades",
                             **geometry)
    converted = create_dataset(tmp_path / "conv", "train", dataset_mode="cityscapes", **geometry)

    class Probe(torch.nn.Module):  # records what the generator is given
        seen: list = []

        def forward(self, x):
            self.seen.append(x.clone())
            return x[:, :3]

    probe = Probe()
    synthesize_folder(Synthesizer(probe, cfg, "cpu"), tmp_path / "conv" / "train_label",
                      tmp_path / "synth", batch_size=1, progress=False)
    for i in range(2):
        x_aligned = trainer.prepare({k: (v[None] if torch.is_tensor(v) else [v])
                                     for k, v in aligned[i].items()})[0]
        x_converted = trainer.prepare({k: (v[None] if torch.is_tensor(v) else [v])
                                       for k, v in converted[i].items()})[0]
        assert x_aligned.shape == (1, 12, 32, 32) and torch.equal(x_aligned.sum(1), torch.ones(1, 32, 32))
        assert torch.equal(x_aligned, x_converted)
        assert torch.equal(x_converted, probe.seen[i])

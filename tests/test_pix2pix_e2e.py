"""pix2pix end to end through the same commands as pix2pixHD: train_hd.py --model pix2pix on
side-by-side AB images (BtoA), an exact mid-epoch resume, the linear lr decay, and synthesize.py
with dropout on at test time by default and off with --no_test_dropout. Also the pieces of
scripts/ablations.py that do not need the real facades (split, jitter, each variant's flags)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import checkpoint_path, load_checkpoint
from pix2pixhd.cli import resolve_config, synthesize_main, train_main
from pix2pixhd.pix2pix_networks import receptive_field
from pix2pixhd.synthesis import load_generator

SIZE = 128  # unet_128 needs multiples of 128
TINY = ["--model", "pix2pix", "--netG_pix2pix", "unet_128", "--ngf", "4", "--ndf", "4",
        "--direction", "BtoA", "--loadSize", str(SIZE), "--fineSize", str(SIZE), "--nThreads", "0",
        "--device", "cpu", "--no_progress", "--no_tensorboard", "--no_html", "--print_freq", "1",
        "--display_freq", "1000", "--niter", "1", "--niter_decay", "2", "--deterministic"]


def _ab_images(folder: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    """n side-by-side AB jpgs: A (left) a 'photo' derived from B (right), a blocky colour map."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    labels = []
    for i in range(n):
        b = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((SIZE // 8, SIZE // 8, 1))).astype(np.uint8)
        a = (255 - b // 2 + rng.integers(0, 20, b.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(np.concatenate([a, b], 1)).save(folder / f"{i + 1}.jpg", quality=95)
        labels.append(b)
    return labels


@pytest.fixture(scope="module")
def ab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ab")
    labels = _ab_images(root / "train", 2)
    (root / "labels").mkdir()
    for i, b in enumerate(labels):  # synthesis input: the B (label) halves as RGB PNGs
        Image.fromarray(b).save(root / "labels" / f"{i + 1}.png")
    return root


def _train(ckdir: Path, root: Path, *args) -> int:
    return train_main(["--dataroot", str(root), "--checkpoints_dir", str(ckdir), *TINY, *args])


def _weights(path: Path) -> dict:
    ck = load_checkpoint(path)
    return {**{"G." + k: v for k, v in ck["G"].items()}, **{"D." + k: v for k, v in ck["D"].items()}}


def test_pix2pix_train_resume_and_synthesize(tmp_path, ab_root):
    # 3 epochs x 2 images. One run straight through; one cut mid-epoch 2 and resumed.
    assert _train(tmp_path, ab_root, "--name", "full") == 0
    assert _train(tmp_path, ab_root, "--name", "cut", "--max_steps", "3") == 0
    ck = load_checkpoint(tmp_path / "cut")
    assert (ck["epoch"], ck["iter_in_epoch"], ck["global_step"]) == (2, 1, 3)
    # --resume takes every option from the run's config.json (--max_steps too: lift it)
    assert train_main(["--resume", "--name", "cut", "--checkpoints_dir", str(tmp_path), "--max_steps", "0"]) == 0

    cfg = json.loads((tmp_path / "cut" / "config.json").read_text())
    # pix2pix's recipe, applied by --model pix2pix without being spelled out
    assert (cfg["model"], cfg["norm"], cfg["gan_mode"], cfg["direction"]) == ("pix2pix", "batch", "vanilla", "BtoA")
    assert (cfg["lambda_L1"], cfg["lr"], cfg["beta1"], cfg["label_nc"]) == (100.0, 2e-4, 0.5, 0)
    full, cut = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    assert full["global_step"] == cut["global_step"] == 6
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:  # dropout masks, BatchNorm statistics, crops and Adam state all carried over
        assert torch.equal(a[k], b[k]), k
    # linear decay over niter_decay=2 epochs: the third epoch runs at half the rate
    lrs = {json.loads(line)["epoch"]: json.loads(line)["lr"]
           for line in (tmp_path / "cut" / "loss_history.jsonl").read_text().splitlines()}
    assert lrs == pytest.approx({1: 2e-4, 2: 2e-4, 3: 1e-4})
    assert checkpoint_path(tmp_path / "cut", 3).is_file()

    # synthesis: dropout on by default (two calls differ), off with the option (identical)
    outs = {}
    for name, extra in (("on1", []), ("on2", []), ("off1", ["--no_test_dropout"]), ("off2", ["--no_test_dropout"])):
        rc = synthesize_main(["--checkpoint", str(tmp_path / "cut"), "--input", str(ab_root / "labels"),
                              "--out", str(tmp_path / name), "--device", "cpu", "--no_progress", *extra])
        assert rc == 0
        files = sorted((tmp_path / name).glob("*.png"))
        assert [f.name for f in files] == ["1.png", "2.png"]
        outs[name] = np.stack([np.asarray(Image.open(f)) for f in files])
    assert outs["on1"].shape == (2, SIZE, SIZE, 3)
    assert np.array_equal(outs["off1"], outs["off2"])
    assert not np.array_equal(outs["on1"], outs["on2"])

    g, _ = load_generator(tmp_path / "cut")
    drops = [m for m in g.modules() if isinstance(m, torch.nn.Dropout)]
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(drops) == 2 and all(m.training for m in drops)   # unet_128: two dropout levels
    assert norms and not any(m.training for m in norms)          # BatchNorm: running statistics
    g, _ = load_generator(tmp_path / "cut", test_dropout=False)
    assert not any(m.training for m in g.modules())


# ---- scripts/ablations.py on fake data -----------------------------------------------------------
@pytest.fixture(scope="module")
def abl():
    path = Path(__file__).resolve().parents[1] / "scripts" / "ablations.py"
    spec = importlib.util.spec_from_file_location("ablations", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def test_ablation_split_is_by_number_and_deterministic(abl, tmp_path):
    (tmp_path / "train").mkdir()
    for i in (1, 2, 10, 100, 3):
        (tmp_path / "train" / f"{i}.jpg").write_bytes(b"")
    train, val = abl.split(abl.facade_files(tmp_path), 2)
    assert [p.stem for p in train] == ["1", "2", "3"] and [p.stem for p in val] == ["10", "100"]
    with pytest.raises(ValueError, match="--n_val"):
        abl.split(abl.facade_files(tmp_path), 5)
    with pytest.raises(FileNotFoundError, match="no \\*.jpg"):
        abl.facade_files(tmp_path / "nowhere")


def test_ablation_jitter_keeps_pairs_aligned_and_reproducible(abl):
    n, load, fine = 3, 20, 16
    inputs = torch.arange(n * 3 * load * load, dtype=torch.int64).view(n, 3, load, load) % 251
    inputs = inputs.to(torch.uint8)
    targets = 255 - inputs
    ds = abl.JitteredPairs(inputs, targets, ["a", "b", "c"], fine, seed=0)
    sampler = abl.EpochSampler(n, seed=0)
    seen = set()
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        idx = list(sampler)
        assert sorted(i % n for i in idx) == [0, 1, 2]
        for i in idx:
            s = ds[i]
            assert s["label"].shape == s["image"].shape == (3, fine, fine)
            assert torch.equal(s["image"], 255 - s["label"])          # same crop and flip
            assert torch.equal(ds[i]["label"], s["label"])             # a function of (epoch, i)
            seen.add(s["label"].numpy().tobytes())
    assert len(seen) > n  # the crops/flips change between epochs
    sampler.set_epoch(1, skip=2)
    assert len(list(sampler)) == n - 2


def test_ablation_variants_resolve_to_the_papers_settings(abl, tmp_path):
    from pix2pixhd.models import build_discriminator, build_generator
    a = abl.build_parser().parse_args(["--facades", str(tmp_path)])
    got = {}
    for v in abl.VARIANTS:
        cfg = resolve_config(abl.variant_argv(v, a, tmp_path))
        d = build_discriminator(cfg)
        got[v.key] = cfg, d
        assert cfg.direction == "BtoA" and cfg.label_nc == 0 and cfg.fineSize == 128
    cfg, d = got["l1_cgan"]
    assert (cfg.lambda_L1, cfg.lambda_GAN, cfg.no_cond_D, cfg.gan_mode) == (100, 1, False, "vanilla")
    assert receptive_field(d) == 70 and d.model[0].in_channels == 6
    assert got["l1"][1] is None and got["l1"][0].lambda_L1 == 100
    assert got["gan"][0].lambda_L1 == 0 and got["gan"][1].model[0].in_channels == 3  # unconditional
    assert got["cgan"][0].lambda_L1 == 0 and got["cgan"][1].model[0].in_channels == 6
    assert got["l1_gan"][0].lambda_L1 == 100 and got["l1_gan"][0].no_cond_D
    assert {k: receptive_field(got[k][1]) for k in ("d1", "d16", "d286")} == {"d1": 1, "d16": 16, "d286": 286}
    enc = build_generator(got["encdec_l1_cgan"][0])
    unet = build_generator(got["l1_cgan"][0])
    assert sum(p.numel() for p in enc.parameters()) < sum(p.numel() for p in unet.parameters())
    hd = got["hd_gan_fm"][0]
    assert (hd.model, hd.netG, hd.no_ganFeat_loss, hd.no_vgg_loss, hd.lambda_GAN) == ("pix2pixhd", "global", False, True, 1)
    assert hd.num_D == 2 and hd.norm == "instance"

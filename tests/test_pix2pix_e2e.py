"""pix2pix end to end through the same commands as pix2pixHD: train_hd.py --model pix2pix on
side-by-side AB images (BtoA), an exact mid-epoch resume, the linear lr decay, and synthesize.py
with dropout on at test time by default and off with --no_test_dropout. (scripts/ablations.py:
tests/test_ablations.py.)"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import checkpoint_path, load_checkpoint
from pix2pixhd.cli import synthesize_main, train_main
from pix2pixhd.pix2pix_networks import PerImageBatchNorm2d
from pix2pixhd.synthesis import load_generator
from tests.test_train_e2e import _weights

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


@pytest.mark.fault(cls="interrupted run",
                   case="pix2pix stopped mid-epoch, resumed: bit-equal end (dropout, BatchNorm, Adam)")
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

    # synthesis: dropout on by default (masks seeded per map: another --seed differs), off with
    # the option (identical whatever the seed)
    outs = {}
    for name, extra in (("on1", []), ("on2", ["--seed", "1"]), ("off1", ["--no_test_dropout"]),
                        ("off2", ["--no_test_dropout", "--seed", "1"])):
        rc = synthesize_main(["--checkpoint", str(tmp_path / "cut"), "--input", str(ab_root / "labels"),
                              "--out", str(tmp_path / name), "--device", "cpu", "--no_progress", *extra])
        assert rc == 0
        files = sorted((tmp_path / name / "test_B").glob("*.png"))   # photo inputs: the rgb_pairs layout
        assert [f.name for f in files] == ["1.png", "2.png"]
        outs[name] = np.stack([np.asarray(Image.open(f)) for f in files])
    assert outs["on1"].shape == (2, SIZE, SIZE, 3)
    assert np.array_equal(outs["off1"], outs["off2"])
    assert not np.array_equal(outs["on1"], outs["on2"])

    g, _ = load_generator(tmp_path / "cut")
    drops = [m for m in g.modules() if isinstance(m, torch.nn.Dropout)]
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(drops) == 2 and all(m.training for m in drops)   # unet_128: two dropout levels
    assert norms and all(type(m) is PerImageBatchNorm2d for m in norms)   # the paper's test-time BN
    g, _ = load_generator(tmp_path / "cut", test_dropout=False, test_batch_stats=False)
    assert not any(m.training for m in g.modules())
    assert all(type(m) is torch.nn.BatchNorm2d for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))

    # --bn_running_stats: other photos (running statistics); --eval = it + --no_test_dropout
    for name, extra in (("run1", ["--bn_running_stats", "--no_test_dropout"]), ("eval", ["--eval"])):
        assert synthesize_main(["--checkpoint", str(tmp_path / "cut"), "--input", str(ab_root / "labels"),
                                "--out", str(tmp_path / name), "--device", "cpu", "--no_progress", *extra]) == 0
        files = sorted((tmp_path / name / "test_B").glob("*.png"))
        outs[name] = np.stack([np.asarray(Image.open(f)) for f in files])
    assert np.array_equal(outs["run1"], outs["eval"])
    assert np.abs(outs["run1"].astype(int) - outs["off1"]).mean() > 1.0
    for name, stats in (("eval", "running"), ("off1", "per_image")):   # part of the job's identity
        assert json.loads((tmp_path / name / "synthesis.json").read_text())["batchnorm_statistics"] == stats


def test_test_time_batchnorm_is_the_papers():
    """Isola et al. 2017, §3.3: at test time BatchNorm uses the statistics of the test batch (one
    image). A loaded pix2pix generator gives, for each map of a batch, what that map alone gives
    through the same weights in train mode (dropout off), not what eval-mode BatchNorm gives; its
    running statistics and state_dict are untouched."""
    import copy
    from pix2pixhd.pix2pix_networks import define_G, set_dropout, use_test_statistics
    torch.manual_seed(0)
    g = define_G(3, 3, 8, "unet_128", norm="batch", use_dropout=True)
    g.train()
    with torch.no_grad():   # running statistics far from any one image's
        for _ in range(3):
            g(torch.randn(2, 3, 128, 128) * 3 + 1)
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    paper = copy.deepcopy(g).train()
    set_dropout(paper, False)
    with torch.no_grad():
        want = torch.cat([paper(x[i:i + 1]) for i in range(3)])
        before = {k: v.clone() for k, v in g.state_dict().items()}
        assert use_test_statistics(g) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) > 0
        g.eval()
        set_dropout(g, False)
        got = copy.deepcopy(g)(x)   # survives deepcopy (export) and .eval()
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        assert g.state_dict().keys() == before.keys()
        assert all(torch.equal(g.state_dict()[k], v) for k, v in before.items())   # nothing updated
        use_test_statistics(g, False)   # running statistics: another function
        assert (g(x) - want).abs().max() > 0.05


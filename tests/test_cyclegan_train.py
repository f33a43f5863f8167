"""CycleGAN end to end through train_hd.py's own entry point, on an unaligned dataset: the
checkpoint (G_A, G_B, D_A, D_B, both optimizers, each D's history pool, config, RNG), the logged
losses and the HTML page, the lr decay, an interrupted run resumed bit-equal to the same run done
in one go (pools, Adam state, crops and B draws included), a two-rank gloo DDP run whose ranks
stay identical."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main

LOSSES = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]
TINY = ["--model", "cyclegan", "--ngf", "4", "--ndf", "4", "--netG_pix2pix", "resnet_6blocks",
        "--netD_pix2pix", "n_layers", "--n_layers_D", "2", "--loadSize", "20", "--fineSize", "16",
        "--pool_size", "3", "--batchSize", "2", "--nThreads", "0", "--device", "cpu", "--no_progress",
        "--no_tensorboard", "--print_freq", "1", "--display_freq", "2", "--niter", "1",
        "--niter_decay", "2", "--save_epoch_freq", "1", "--deterministic"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_unaligned(root: Path, n_a: int = 5, n_b: int = 3, seed: int = 0) -> Path:
    """Two unpaired domains of noisy blobs, counts differing, names unrelated."""
    rng = np.random.default_rng(seed)
    for d, n, tint in (("trainA", n_a, (200, 60, 40)), ("trainB", n_b, (40, 90, 200))):
        (root / d).mkdir(parents=True)
        for i in range(n):
            base = np.kron(rng.integers(0, 2, (5, 6, 1)), np.ones((4, 4, 1))) * np.array(tint)
            px = (base + rng.integers(0, 40, (20, 24, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / d / f"{d[-1]}_{rng.integers(1e6)}.png")
    return root


@pytest.fixture(scope="module")
def unaligned(tmp_path_factory):
    return write_unaligned(tmp_path_factory.mktemp("unaligned"))


def _train(ck: Path, root: Path, *args: str) -> None:
    torch.set_num_threads(1)
    assert train_main(["--dataroot", str(root), "--checkpoints_dir", str(ck), *TINY, *args]) == 0


def _pools_equal(a, b) -> bool:
    return all(pa[k]["size"] == pb[k]["size"] and torch.equal(pa[k]["generator"], pb[k]["generator"])
               and len(pa[k]["images"]) == len(pb[k]["images"])
               and all(torch.equal(x, y) for x, y in zip(pa[k]["images"], pb[k]["images"]))
               for pa, pb in zip(a, b) for k in ("fake_B", "fake_A"))


def assert_same_run(a: Path, b: Path, which="latest") -> None:
    ca, cb = load_checkpoint(a, which), load_checkpoint(b, which)
    assert (ca["epoch"], ca["iter_in_epoch"], ca["global_step"]) == (cb["epoch"], cb["iter_in_epoch"], cb["global_step"])
    for net in ("G_A", "G_B", "D_A", "D_B"):
        assert ca[net].keys() == cb[net].keys()
        for k, v in ca[net].items():
            assert torch.equal(v, cb[net][k]), f"{net}.{k}"
    for opt in ("optimizer_G", "optimizer_D"):
        assert ca[opt]["param_groups"] == cb[opt]["param_groups"], opt
        for i, st in ca[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, cb[opt]["state"][i][k]), f"{opt} state {i} {k}"
    assert _pools_equal(ca["pools"], cb["pools"])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, unaligned):
    """3 epochs x 2 steps (5 A images, batch 2, drop_last), the last at half the lr (niter 1,
    niter_decay 2: the project's linear decay)."""
    ck = tmp_path_factory.mktemp("full")
    _train(ck, unaligned, "--name", "full")
    return ck / "full"


def test_checkpoint_logs_and_page_hold_every_part_of_a_cyclegan_run(full_run):
    ck = load_checkpoint(full_run)
    assert ck["global_step"] == 6 and ck["epoch"] == 4
    assert not {"G", "D", "E"} & set(ck)
    for k in ("G_A", "G_B", "D_A", "D_B"):
        assert ck[k] and all(key.startswith("model.") for key in ck[k])   # the reference's keys
    assert len(ck["optimizer_G"]["param_groups"][0]["params"]) == 2 * len(ck["G_A"])   # G_A + G_B
    assert len(ck["optimizer_D"]["param_groups"][0]["params"]) == len(ck["D_A"]) + len(ck["D_B"])
    (pools,) = ck["pools"]                     # one rank
    assert {k: len(p["images"]) for k, p in pools.items()} == {"fake_B": 3, "fake_A": 3}
    assert pools["fake_B"]["images"][0].shape == (1, 3, 16, 16)
    cfg = json.loads((full_run / "config.json").read_text())
    assert (cfg["model"], cfg["dataset_mode"], cfg["lambda_A"], cfg["lambda_identity"], cfg["gan_mode"]) == (
        "cyclegan", "unaligned", 10.0, 0.5, "lsgan")
    history = [json.loads(line) for line in (full_run / "loss_history.jsonl").read_text().splitlines()]
    assert all(k in history[-1] for k in LOSSES)
    assert {h["epoch"]: h["lr"] for h in history} == pytest.approx({1: 2e-4, 2: 2e-4, 3: 1e-4})
    page = (full_run / "web" / "index.html").read_text()
    for name in ("real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B"):
        assert f"epoch003_{name}.png" in page and (full_run / "web" / "images" / f"epoch003_{name}.png").is_file()
    assert "cycle_A" in page and "idt_B" in page   # the loss curves draw them


def test_interrupted_run_resumes_bit_equal(tmp_path, unaligned, full_run):
    # cut mid-epoch 2 (the pools are full and swapping by then), resumed to the end
    _train(tmp_path, unaligned, "--name", "cut", "--max_steps", "3")
    ck = load_checkpoint(tmp_path / "cut")
    assert (ck["epoch"], ck["iter_in_epoch"], ck["global_step"]) == (2, 1, 3)
    assert train_main(["--resume", "--name", "cut", "--checkpoints_dir", str(tmp_path), "--max_steps", "0"]) == 0
    assert_same_run(full_run, tmp_path / "cut")
    assert_same_run(full_run, tmp_path / "cut", which=3)
    # the pools drew between the cut and the end (full since step 2: 3 images, batch 2), so
    # their restored state was exercised, not just carried along
    g1, g3 = (load_checkpoint(full_run, e)["pools"][0]["fake_B"]["generator"] for e in (1, 3))
    assert not torch.equal(g1, g3)


def test_two_rank_ddp_keeps_ranks_identical_and_checkpoints_each_ranks_pools(tmp_path):
    from tests.test_distributed import rank_params, run_two_ranks
    data = write_unaligned(tmp_path / "cg", n_a=4, n_b=3)
    run_two_ranks(tmp_path, ["--model", "cyclegan", "--label_nc", "0", "--dataroot", str(data),
                             "--netG_pix2pix", "resnet_6blocks", "--netD_pix2pix", "n_layers",
                             "--resize_or_crop", "resize_and_crop", "--loadSize", "20",
                             "--fineSize", "16", "--pool_size", "1", "--no_html"])
    r0, r1 = rank_params(tmp_path / "ranks", 0), rank_params(tmp_path / "ranks", 1)
    assert r0["global_step"] == r1["global_step"] == 2   # 4 A images, 2 ranks, batch 1
    assert r0["first_batch_paths"] != r1["first_batch_paths"]
    for net in ("G", "D"):   # the pairs: G_A.* and G_B.*, D_A.* and D_B.*
        assert {k.split(".")[0] for k in r0[net]} == ({"G_A", "G_B"} if net == "G" else {"D_A", "D_B"})
        for k in r0[f"{net}_param_names"]:
            assert torch.equal(r0[net][k], r1[net][k]), f"{net}.{k} differs between ranks"
    assert any(not torch.equal(v, r0["G_init"][k]) for k, v in r0["G"].items())
    ck = load_checkpoint(tmp_path / "ck" / "run")
    assert len(ck["rng"]) == len(ck["pools"]) == 2
    # each rank's D saw its own fakes: the two histories differ
    assert not torch.equal(ck["pools"][0]["fake_B"]["images"][0], ck["pools"][1]["fake_B"]["images"][0])
    for k, v in ck["G_A"].items():
        assert torch.equal(v, r0["G"][f"G_A.{k}"]), k

    from pix2pixhd.cli import resolve_config
    from pix2pixhd.trainer import Trainer
    tr = Trainer(resolve_config(["--resume", "--checkpoints_dir", str(tmp_path / "ck"), "--name", "run"]))
    assert torch.equal(tr.pools["fake_B"].images[0].cpu(), ck["pools"][0]["fake_B"]["images"][0])


def test_a_rank_the_saved_run_did_not_have_draws_its_pool_choices_from_its_own_stream(full_run, monkeypatch):
    """A one-process run resumed on two: the new rank 1 starts from rank 0's saved history (the
    images), but its pools' generators were rank 0's too, so both ranks' Ds drew the same
    swap/return choices from then on, where the resume note says new ranks start streams of their
    own. Built here as rank 1 of 2 without a process group: the loading's collectives answer as
    two ranks that agree, and nothing is wrapped in DDP."""
    import torch.distributed as dist

    from pix2pixhd.cli import resolve_config
    from pix2pixhd.distributed import DistInfo
    from pix2pixhd.trainer import Trainer

    def all_gather_object(out, obj, group=None):
        out[:] = [obj] * len(out)
    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    monkeypatch.setattr(Trainer, "_wrap_distributed", lambda self, rewrap_g=False: None)
    ck = load_checkpoint(full_run)
    assert len(ck["pools"]) == 1
    cfg = resolve_config(["--resume", "--checkpoints_dir", str(full_run.parent), "--name", full_run.name])
    r0 = Trainer(cfg)
    r1 = Trainer(cfg, dist_info=DistInfo(rank=1, world_size=2))
    for k in ("fake_B", "fake_A"):
        assert torch.equal(r1.pools[k].images[0].cpu(), ck["pools"][0][k]["images"][0])   # the history
        assert torch.equal(r0.pools[k].generator.get_state(), ck["pools"][0][k]["generator"])
        assert not torch.equal(r1.pools[k].generator.get_state(), r0.pools[k].generator.get_state()), k
    assert not torch.equal(r1.pools["fake_B"].generator.get_state(), r1.pools["fake_A"].generator.get_state())

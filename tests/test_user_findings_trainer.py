"""Training problems users reported, each reproduced as they met it: CycleGAN domains (or pooled
fakes) of different sizes, a resume with another crop or --pool_size, a discriminator too deep
for the crop, the progress bar and log naming the model, a resumed run with nothing left to
train, a --which_epoch resume that would overwrite later checkpoints, the lr column of
loss_log.txt."""
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd import errors
from pix2pixhd.checkpoint import auto_resume_checkpoint, load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError
from pix2pixhd.image_pool import ImagePool
from pix2pixhd.networks import MultiscaleDiscriminator
from pix2pixhd.pix2pix_networks import PatchDiscriminator, PixelDiscriminator
from pix2pixhd.run_folder import run_files
from pix2pixhd.trainer import CycleDiscriminators, Trainer
from pix2pixhd.visualizer import Visualizer
from tests.file_state import listing as _listing

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--model", "cyclegan", "--ngf", "4", "--ndf", "4", "--netG_pix2pix", "resnet_6blocks",
        "--netD_pix2pix", "n_layers", "--n_layers_D", "2", "--nThreads", "0", "--device", "cpu",
        "--no_progress", "--no_tensorboard", "--no_html", "--niter", "1", "--niter_decay", "0"]


def write_domains(root: Path, size_a: tuple[int, int], size_b: tuple[int, int], n: int = 3) -> Path:
    """trainA/ and trainB/ of ``n`` noise images each, of sizes (w, h) ``size_a`` and ``size_b``."""
    rng = np.random.default_rng(0)
    for d, (w, h) in (("trainA", size_a), ("trainB", size_b)):
        (root / d).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / d / f"{i}.png")
    return root


def _train(root: Path, ck: Path, *args: str) -> int:
    torch.set_num_threads(1)
    return train_main(["--dataroot", str(root), "--checkpoints_dir", str(ck), *TINY, *args])


# ---- 1. CycleGAN domains of different sizes -------------------------------------------------------
@pytest.mark.parametrize("sizes, opts", [
    (((64, 64), (64, 48)), ["--resize_or_crop", "scale_width", "--loadSize", "32"]),
    (((32, 32), (24, 32)), ["--resize_or_crop", "none"]),
], ids=["scale_width", "none"])
def test_cyclegan_trains_two_domains_of_different_sizes(tmp_path, sizes, opts):
    root = write_domains(tmp_path / "data", *sizes)
    assert _train(root, tmp_path / "ck", "--name", "r", "--batchSize", "1", *opts) == 0
    ck = load_checkpoint(tmp_path / "ck" / "r")
    assert ck["global_step"] == 3
    # the fake_B pool holds G_A's outputs, of domain A's size; fake_A's of domain B's
    (pools,) = ck["pools"]
    assert pools["fake_B"]["images"][0].shape[2:] != pools["fake_A"]["images"][0].shape[2:]


class _CountingD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.conv(x)


def test_cycle_discriminators_stack_real_and_fake_only_when_their_sizes_match():
    d_a, d_b = _CountingD(), _CountingD()
    both = CycleDiscriminators(d_a, d_b, stack=True)
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 12)
    both(b, b.flip(0), a, a.flip(0))                  # real and fake of one size: one pass each
    assert d_a.batches == d_b.batches == [4]
    d_a.batches.clear(), d_b.batches.clear()
    out = both(b, a, a, b)                            # real B, fake B of A's size...: apart
    assert d_a.batches == d_b.batches == [2, 2]
    assert [o.shape[2:] for o in out] == [b.shape[2:], a.shape[2:], a.shape[2:], b.shape[2:]]
    assert torch.equal(out[0], d_a(b)) and torch.equal(out[1], d_a(a))


def test_pool_never_stacks_an_older_image_of_another_size_into_a_batch():
    pool = ImagePool(2, seed=0)
    pool.query(torch.zeros(2, 1, 4, 4))                                   # full of 4x4 images
    for i in range(20):                                                    # batches of 2x2: never a 4x4
        assert pool.query(torch.full((2, 1, 2, 2), float(i + 1))).shape == (2, 1, 2, 2)
    alone = ImagePool(2, seed=0)                  # one image at a time: the reference's rule, any size
    alone.query(torch.zeros(2, 1, 4, 4))
    assert {tuple(alone.query(torch.ones(1, 1, 2, 2)).shape) for _ in range(20)} == {(1, 1, 4, 4), (1, 1, 2, 2)}


def test_resume_with_another_crop_trains_on_with_the_older_fakes_in_the_pool(tmp_path):
    root = write_domains(tmp_path / "data", (40, 40), (40, 40), n=4)
    ck = tmp_path / "ck"
    common = ["--name", "r", "--batchSize", "2", "--pool_size", "4", "--niter", "4"]
    assert _train(root, ck, *common, "--loadSize", "36", "--fineSize", "32", "--max_steps", "2") == 0
    assert load_checkpoint(ck / "r")["pools"][0]["fake_B"]["images"][0].shape == (1, 3, 32, 32)
    assert train_main(["--name", "r", "--checkpoints_dir", str(ck), "--resume", "--loadSize", "20",
                       "--fineSize", "16", "--max_steps", "3"]) == 0
    held = {tuple(t.shape) for t in load_checkpoint(ck / "r")["pools"][0]["fake_B"]["images"]}
    assert (1, 3, 16, 16) in held


# ---- 2. --pool_size on resume -----------------------------------------------------------------------
def test_resume_with_another_pool_size_is_one_line_before_anything_is_written(tmp_path, capsys):
    root = write_domains(tmp_path / "data", (40, 40), (40, 40))
    ck = tmp_path / "ck"
    assert _train(root, ck, "--name", "r", "--loadSize", "36", "--fineSize", "32", "--pool_size", "5") == 0
    before = _listing(ck / "r")
    capsys.readouterr()
    argv = ["--name", "r", "--checkpoints_dir", str(ck), "--resume", "--pool_size", "10"]
    with pytest.raises(ConfigError, match=r"latest\.pt: its image pools hold up to 5 images.*--pool_size 5"):
        train_main(argv)
    assert errors.run(train_main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert _listing(ck / "r") == before


# ---- 3. a discriminator too deep for the crop -------------------------------------------------------
def _d_runs(d, h, w) -> bool:
    try:
        with torch.inference_mode():   # (the sizes a forward takes do not depend on autograd)
            d(torch.randn(1, 3, h, w))
        return True
    except (RuntimeError, ValueError):
        return False


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_discriminators_say_exactly_which_sizes_they_take(norm):
    ds = ([MultiscaleDiscriminator(3, 2, n, k, norm) for k in (1, 3, 4) for n in (1, 2, 3)]
          + [PatchDiscriminator(3, 2, n, norm) for n in (1, 2, 3)] + [PixelDiscriminator(3, 2, norm)])
    sides = range(1, 27)
    for d in ds:
        fits = {(h, w): d.input_fits(h, w) for h, w in itertools.product(sides, repeat=2)}
        # a conv's, a pool's output size only grows with its input's, and a layer fails only on a
        # size below 1 (or a norm on one value per channel): what fits at (h, w) fits at any larger
        # h or w. So input_fits must be monotone, and the real forward is checked where it flips
        # (the first size that fits along each row and column, and the one before it) and at the
        # row's and column's ends (a row where nothing fits)
        for (h, w), ok in fits.items():
            assert not ok or (fits.get((h + 1, w), True) and fits.get((h, w + 1), True)), (d, h, w)
        probe = set()
        for a in sides:
            for line in ([(a, b) for b in sides], [(b, a) for b in sides]):
                first = next((i for i, hw in enumerate(line) if fits[hw]), None)
                probe.update([line[-1]] if first is None else line[max(first - 1, 0):first + 1])
        for h, w in sorted(probe):
            assert fits[h, w] == _d_runs(d, h, w), (d, h, w)
        s = d.min_input_side
        assert d.input_fits(s, s) and (s == 1 or not d.input_fits(s - 1, s - 1))


def _tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(name="t", checkpoints_dir=str(tmp_path), ngf=4, ndf=4, no_tensorboard=True, no_html=True,
                no_progress=True, device="cpu", nThreads=0, resize_or_crop="resize_and_crop")
    return TrainConfig(**{**base, **kw}).resolved()


@pytest.mark.parametrize("kw, expected", [
    (dict(model="pix2pix", netG_pix2pix="unet_128", netD_pix2pix="n_layers", n_layers_D=8, loadSize=128,
          fineSize=128), r"is 128x128, too small .*--n_layers_D 8; it needs 768x768.*use --n_layers_D 5 "),
    (dict(model="cyclegan", netD_pix2pix="image", loadSize=36, fineSize=32),
     r"--fineSize 32\) is 32x32, too small .*--netD_pix2pix image.*96x96.*--netD_pix2pix n_layers --n_layers_D 3"),
    (dict(model="cyclegan", netD_pix2pix="n_layers", n_layers_D=6, loadSize=36, fineSize=32),
     r"32x32, too small .*--n_layers_D 6; it needs 192x192.*--n_layers_D 3 \(or fewer\)"),
    (dict(model="pix2pixhd", label_nc=0, no_instance=True, no_vgg_loss=True, n_downsample_global=2,
          n_blocks_global=1, num_D=4, loadSize=8, fineSize=8),
     r"8x8, too small .*--num_D 4 .*1/8 of its size, 1x1.*--num_D 3 \(or fewer\)"),
], ids=["pix2pix", "cyclegan_image", "cyclegan_n_layers", "pix2pixhd_num_D"])
def test_a_discriminator_too_deep_for_the_crop_is_refused_before_training(tmp_path, kw, expected):
    with pytest.raises(ConfigError, match=expected):
        Trainer(_tiny(tmp_path, **kw))
    assert not (tmp_path / "t").exists()


def test_a_sample_too_small_for_the_discriminator_is_named_before_training(tmp_path):
    root = write_domains(tmp_path / "data", (32, 32), (32, 20))   # B comes out 32x20, D needs 24
    with pytest.raises(ConfigError, match=r"trainB/0\.png \(32x20\) with --resize_or_crop none is "
                                          r"32x20, too small .*--netD_pix2pix basic.*24x24"):
        train_main(["--dataroot", str(root), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "r",
                    *[a for a in TINY if a not in ("--n_layers_D", "2")], "--netD_pix2pix", "basic",
                    "--resize_or_crop", "none"])   # basic reads no --n_layers_D (refused with it)
    assert not (tmp_path / "ck" / "r" / "latest.pt").exists()


# ---- 4. the progress bar and the log name the model ---------------------------------------------------
def test_cyclegan_progress_and_log_name_the_model_not_a_pix2pixhd_stage(tmp_path, monkeypatch):
    import tqdm

    descs = []

    class Recording(tqdm.tqdm):
        def __init__(self, *a, **kw):
            descs.append(kw.get("desc"))
            super().__init__(*a, **{**kw, "disable": True})

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    root = write_domains(tmp_path / "data", (40, 40), (40, 40))
    assert _train(root, tmp_path / "ck", "--name", "r", "--loadSize", "36", "--fineSize", "32",
                  "--niter_decay", "1", "--max_dataset_size", "1") == 0
    assert descs == ["cyclegan epoch 1/2", "cyclegan epoch 2/2"]
    log = (tmp_path / "ck" / "r" / "loss_log.txt").read_text()
    assert "training cyclegan, epochs 1..2" in log and "stage" not in log


# ---- 5. a resume with nothing left to train says so --------------------------------------------------
def test_resume_of_a_run_stopped_at_its_last_step_says_it_has_finished(tmp_path, capsys):
    root = write_domains(tmp_path / "data", (40, 40), (40, 40))
    ck = tmp_path / "ck"
    # 3 steps: max_steps stops it at the last one, which closes the epoch as every epoch's end does
    assert _train(root, ck, "--name", "r", "--loadSize", "36", "--fineSize", "32", "--max_steps", "3") == 0
    assert (load_checkpoint(ck / "r")["epoch"], load_checkpoint(ck / "r")["iter_in_epoch"]) == (2, 0)
    capsys.readouterr()
    assert train_main(["--name", "r", "--checkpoints_dir", str(ck), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "has finished its 1 epoch(s) (niter 1 + niter_decay 0): nothing to train" in err, err
    assert "--niter or --niter_decay" in err
    assert load_checkpoint(ck / "r", 1)["global_step"] == 3   # the epoch was closed: epoch_0001.pt


# ---- 6. --resume --which_epoch N keeps the later checkpoints it overwrites ----------------------------
@pytest.mark.parametrize("flag", ["--resume", "--continue_train"])
def test_resume_from_an_earlier_epoch_keeps_the_later_checkpoints(tmp_path, capsys, flag):
    root = write_domains(tmp_path / "data", (40, 40), (40, 40))
    ck, run = tmp_path / "ck", tmp_path / "ck" / "r"
    assert _train(root, ck, "--name", "r", "--loadSize", "36", "--fineSize", "32", "--niter_decay", "1",
                  "--save_epoch_freq", "1") == 0
    old_latest, old_2 = (load_checkpoint(run, w) for w in ("latest", 2))
    capsys.readouterr()
    # gone back to epoch 1 to train on with another lr: another line of training
    assert train_main(["--name", "r", "--checkpoints_dir", str(ck), flag, "--which_epoch", "1",
                       "--lr", "0.0001"]) == 0
    err = capsys.readouterr().err
    assert f"note: {run / 'latest.pt'} holds step 6 (the end of epoch 2), later than step 3 where this run " \
           f"resumed: kept as {run / 'latest_step6.pt'}" in err, err
    assert f"kept as {run / 'epoch_0002_step6.pt'}" in err
    for kept, old in (("latest_step6.pt", old_latest), ("epoch_0002_step6.pt", old_2)):
        held = load_checkpoint(run / kept)
        assert held["global_step"] == 6
        assert all(torch.equal(v, held["G_A"][k]) for k, v in old["G_A"].items())
    # the new line of training is latest.pt and epoch_0002.pt; the kept files are listed as neither
    assert load_checkpoint(run)["global_step"] == 6
    assert not any(torch.equal(v, load_checkpoint(run)["G_A"][k]) for k, v in old_latest["G_A"].items()
                   if v.dim() == 4)
    assert run_files(run) == ["config.json", "epoch_0001.pt", "epoch_0002.pt", "latest.pt"]
    assert auto_resume_checkpoint(run) == ("latest", None)
    # a plain --resume of the run continues it and keeps nothing more
    capsys.readouterr()
    assert train_main(["--name", "r", "--checkpoints_dir", str(ck), "--resume"]) == 0
    assert "kept as" not in capsys.readouterr().err


# ---- 7. loss_log.txt's lr column -----------------------------------------------------------------
def test_loss_log_prints_decayed_learning_rates_apart(tmp_path):
    vis = Visualizer(tmp_path, tensorboard=False, html_page=False)
    for step, lr in ((1, 2e-4 * 2 / 3), (2, 2e-4 / 3)):   # --niter 1 --niter_decay 3: epochs 2 and 3
        vis.log_losses(step + 1, 1, step, {"D_A": 0.123456}, {"lr": lr, "images_per_s": 2.5})
    lines = (tmp_path / "loss_log.txt").read_text().splitlines()[1:]   # after the header
    assert "lr: 0.0001333 " in lines[1] and "lr: 6.667e-05 " in lines[3]   # the extras lines
    assert all("D_A: 0.1235 " in line for line in lines[::2])
    assert all(line.endswith("images_per_s: 2.5000") for line in lines[1::2])


def test_resume_says_on_the_console_where_it_resumed(tmp_path, capsys):
    # it was written to loss_log.txt only
    root = write_domains(tmp_path / "data", (40, 40), (40, 40))
    ck = tmp_path / "ck"
    assert _train(root, ck, "--name", "r", "--loadSize", "36", "--fineSize", "32", "--max_steps", "2",
                  "--niter", "2") == 0
    capsys.readouterr()
    assert train_main(["--name", "r", "--checkpoints_dir", str(ck), "--resume", "--max_steps", "1"]) == 0
    assert "note: r: resumed from epoch 1 iteration 2 (step 2)" in capsys.readouterr().err


def test_a_trainer_built_in_python_uses_the_configs_device(monkeypatch):
    # without dist_info it trained on the CPU whatever cfg.device said, without a word
    from pix2pixhd.distributed import DeviceUnavailableError
    cfg = TrainConfig(model="cyclegan", ngf=4, ndf=4, netG_pix2pix="resnet_6blocks", device="cuda",
                                  no_progress=True).resolved()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="--device cuda: CUDA is not available"):
        Trainer(cfg)
    assert Trainer(dataclasses.replace(cfg, device="cpu")).device == torch.device("cpu")

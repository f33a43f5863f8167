"""Findings of Dec 6 on reproducibility and provenance: a resume on another CPU thread count is
noted; out-of-range seeds are refused before anything is written; a later stage records which
checkpoint it loaded; a resume names another --dataroot or --channels_last; checkpoints record
their environment; a fresh start seeds Python's and NumPy's RNGs too."""
import json
import os
import random
import sys

import numpy as np
import pytest
import torch

from pix2pixhd import errors
from pix2pixhd.checkpoint import git_commit, load_checkpoint
from pix2pixhd.cli import resolve_config, train_main, train_parser
from pix2pixhd.config import SEED_MAX, TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.engine import file_sha256
from pix2pixhd.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(label_nc=LABEL_NC, resize_or_crop="none", ngf=4, n_downsample_global=2, n_blocks_global=1,
            n_blocks_local=1, ndf=4, n_layers_D=2, no_vgg_loss=True, batchSize=1, nThreads=0,
            no_progress=True, device="cpu", norm_impl="ref", print_freq=1, no_tensorboard=True, no_html=True,
            niter=2, niter_decay=0)


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=0, width=32, height=32, seed=0)
    return root


@pytest.fixture(scope="module")
def streets6(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets6")
    generate(root, n_train=6, n_test=0, width=32, height=32, seed=1)
    return root


def _cfg(tmp_path, streets, **kw) -> TrainConfig:
    base = dict(TINY, name="r", checkpoints_dir=str(tmp_path), dataroot=str(streets))
    if kw.get("resume"):   # a resume takes the run's own options
        base = dict(name="r", checkpoints_dir=str(tmp_path), device="cpu", no_progress=True)
    base.update(kw)
    return TrainConfig(**base).resolved()


# ---- 1. another CPU thread count at resume is noted ----------------------------------------------
def test_a_resume_on_another_thread_count_says_so_and_how_to_resume_exactly(tmp_path, streets, capsys):
    Trainer(_cfg(tmp_path, streets, max_steps=1)).fit()
    ck = load_checkpoint(tmp_path / "r")
    assert (ck["num_threads"], ck["device_type"]) == (1, "cpu")
    capsys.readouterr()
    Trainer(_cfg(tmp_path, streets, resume=True))   # the same count: nothing said
    assert "thread" not in capsys.readouterr().err
    torch.set_num_threads(2)
    try:
        Trainer(_cfg(tmp_path, streets, resume=True, max_steps=1)).fit()
    finally:
        torch.set_num_threads(1)
    err = capsys.readouterr().err
    assert "latest.pt was saved by a run with 1 CPU thread(s), this one has 2" in err, err
    assert "OMP_NUM_THREADS=1" in err and "torch.set_num_threads(1)" in err
    log = (tmp_path / "r" / "loss_log.txt").read_text()
    assert "saved by a run with 1 CPU thread(s), this one has 2" in log
    assert load_checkpoint(tmp_path / "r")["num_threads"] == 2


def test_a_checkpoint_without_the_thread_count_gets_no_note(tmp_path, streets, capsys):
    tr = Trainer(_cfg(tmp_path, streets))
    tr.save("latest")
    path = tmp_path / "r" / "latest.pt"
    ck = torch.load(path, weights_only=True)
    del ck["num_threads"], ck["device_type"]
    torch.save(ck, path)
    capsys.readouterr()
    torch.set_num_threads(2)
    try:
        Trainer(_cfg(tmp_path, streets, resume=True))
    finally:
        torch.set_num_threads(1)
    assert "thread" not in capsys.readouterr().err


def test_deterministic_help_says_what_it_does():
    text = " ".join(train_parser().format_help().split())
    assert "bit-exact resume on CPU" not in text
    assert "CPU runs repeat without it at a fixed thread count" in text


# ---- 2. out-of-range seeds --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**32), "9223372036854775807", "99999999999999999999"])
def test_an_out_of_range_seed_is_one_line_before_anything_is_written(seed, tmp_path, streets, capsys,
                                                                    monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    argv = ["--checkpoints_dir", str(tmp_path), "--name", "s", "--dataroot", str(streets), "--no_vgg_loss",
            "--device", "cpu", "--seed", seed]
    assert errors.run(train_main, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --seed {seed}: must be >= 0 and <= {SEED_MAX}"), err
    assert not (tmp_path / "s").exists()


def test_the_largest_seed_fits_every_seed_derived_from_it():
    from pix2pixhd.data.loader import ResumableSampler
    from pix2pixhd.image_pool import ImagePool
    assert resolve_config(["--seed", str(SEED_MAX), "--no_vgg_loss"]).seed == SEED_MAX
    assert len(ResumableSampler(5, shuffle=True, seed=SEED_MAX).order(10**6, 0)) == 5
    ImagePool(4, seed=(SEED_MAX * 1_000_003 + 7) * 2 + 1)
    np.random.default_rng([SEED_MAX, 10**6, 10**6])


# ---- 3. a later stage records which checkpoint it loaded --------------------------------------------
def test_a_later_stage_records_the_checkpoint_it_loaded(tmp_path, streets):
    g = Trainer(_cfg(tmp_path, streets, name="g", ngf=8))
    g.global_step, g.epoch = 7, 3
    g.save("latest")
    g_file = tmp_path / "g" / "latest.pt"
    want = {"path": str(g_file.resolve()), "global_step": 7, "epochs_done": 2, "iter_in_epoch": 0,
            "sha256": file_sha256(g_file)}
    loc = Trainer(_cfg(tmp_path, streets, name="l", stage="local", load_pretrain=str(tmp_path / "g")))
    loc.save("latest")
    ck = load_checkpoint(tmp_path / "l")
    assert ck["pretrain_checkpoint"] == want and ck["config"]["pretrain_checkpoint"] == want
    assert json.loads((tmp_path / "l" / "config.json").read_text())["pretrain_checkpoint"] == want
    g.global_step = 9   # the global run trains on: the local run still names what it loaded
    g.save("latest")
    resumed = _cfg(tmp_path, streets, name="l", resume=True)
    assert resumed.pretrain_checkpoint == want
    Trainer(resumed).save("latest")
    assert load_checkpoint(tmp_path / "l")["pretrain_checkpoint"] == want
    # finetune (the whole local stage loaded): the same record, of the local run's file
    ft = Trainer(_cfg(tmp_path, streets, name="f", stage="finetune", load_pretrain=str(tmp_path / "l")))
    l_file = tmp_path / "l" / "latest.pt"
    assert ft.cfg.pretrain_checkpoint == {"path": str(l_file.resolve()), "global_step": 0, "epochs_done": 0,
                                          "iter_in_epoch": 0, "sha256": file_sha256(l_file)}


# ---- 4. --dataroot and --channels_last given with --resume are named ---------------------------------
def test_a_resume_names_another_dataroot_and_channels_last(tmp_path, streets, streets6, capsys):
    Trainer(_cfg(tmp_path, streets, max_steps=1)).fit()
    assert load_checkpoint(tmp_path / "r")["dataset_size"] == 4
    base = ["--checkpoints_dir", str(tmp_path), "--name", "r", "--resume", "--device", "cpu"]
    assert resolve_config(base + ["--dataroot", str(streets)]).notes() == []
    changed, data = resolve_config(base + ["--dataroot", str(streets6), "--channels_last"]).notes()
    assert "--channels_last off -> on: the resumed run differs" in changed
    assert data.startswith(f"resuming {tmp_path / 'r'} from data at another path: --dataroot {streets} -> "
                           f"{streets6} (")
    capsys.readouterr()
    Trainer(_cfg(tmp_path, streets, resume=True, dataroot=str(streets6), max_steps=1)).fit()
    err = capsys.readouterr().err
    said = f"latest.pt was trained on 4 samples, --dataroot {streets6} holds 6"
    assert said in err, err
    log = (tmp_path / "r" / "loss_log.txt").read_text()
    assert said in log and f"--dataroot {streets} -> {streets6}" in log


# ---- 5. provenance ------------------------------------------------------------------------------------
def test_a_checkpoint_records_its_environment(tmp_path, streets):
    Trainer(_cfg(tmp_path, streets)).save("latest")
    env = load_checkpoint(tmp_path / "r")["environment"]
    assert env["argv"] == sys.argv and env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["num_threads"] == 1 and env["device"] == "cpu" and env["device_name"] and env["hostname"]
    assert set(env) >= {"cwd", "python", "triton", "git_commit", "git_dirty"}


def test_git_commit_is_read_from_the_files(tmp_path):
    sha, other = "a" * 40, "b" * 40
    assert git_commit(tmp_path) is None
    (tmp_path / ".git" / "refs" / "heads").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "packed-refs").write_text(f"# pack-refs\n{other} refs/heads/main\n")
    assert git_commit(tmp_path) == other   # packed
    (tmp_path / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    assert git_commit(tmp_path) == sha     # loose
    (tmp_path / ".git" / "HEAD").write_text(other + "\n")
    assert git_commit(tmp_path) == other   # detached


# ---- 6. a fresh start seeds Python's and NumPy's RNGs too ---------------------------------------------
def test_a_fresh_start_seeds_python_numpy_and_torch(tmp_path, streets):
    draws = []
    for i in range(2):
        random.seed(100 + i), np.random.seed(100 + i), torch.manual_seed(100 + i)
        Trainer(_cfg(tmp_path, streets, name=f"s{i}", seed=5))
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(()))))
    assert draws[0] == draws[1]


def test_a_resume_keeps_a_seed_recorded_before_the_range_check(tmp_path, streets):
    """Versions before SEED_MAX trained with larger seeds: their resume keeps the seed it recorded
    (a new out-of-range one is still refused)."""
    tr = Trainer(_cfg(tmp_path, streets, name="big"))
    tr.save("latest")
    cfg_file = tmp_path / "big" / "config.json"
    saved = json.loads(cfg_file.read_text())
    saved["seed"] = 5_000_000_000
    cfg_file.write_text(json.dumps(saved))
    assert _cfg(tmp_path, streets, name="big", resume=True).seed == 5_000_000_000
    with pytest.raises(errors.ConfigError, match="--seed 6000000000: must be"):
        _cfg(tmp_path, streets, name="big", resume=True, seed=6_000_000_000)


def test_a_pix2pix_run_loading_one_that_recorded_netG_local_keeps_its_sizes(tmp_path):
    """Versions before the pix2pixHD-options check recorded a pix2pix run's --netG local: a new
    run loading it is not a local stage and takes none of its sizes."""
    old = TrainConfig(model="pix2pix", name="old", checkpoints_dir=str(tmp_path), label_nc=0,
                      no_instance=True, loadSize=150, fineSize=128, netG_pix2pix="unet_128").resolved()
    saved = old.to_dict()
    saved["netG"] = "local"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    torch.save({"config": saved}, tmp_path / "old" / "latest.pt")
    new = resolve_config(["--model", "pix2pix", "--name", "new", "--checkpoints_dir", str(tmp_path),
                          "--load_pretrain", str(tmp_path / "old")])
    assert (new.loadSize, new.fineSize) == (286, 256)


def test_git_dirty_says_whether_tracked_files_changed(tmp_path):
    import shutil
    import subprocess
    from pix2pixhd.checkpoint import git_dirty
    assert git_dirty(tmp_path / "none") is None
    if shutil.which("git") is None:
        pytest.skip("no git on this machine")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    for name in ("clean", "dirty"):
        repo = tmp_path / name
        repo.mkdir()
        (repo / "a.py").write_text("x = 1\n")
        for cmd in (["init", "-q"], ["add", "a.py"], ["commit", "-q", "-m", "a"]):
            subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env)
        (repo / "untracked.txt").write_text("not code\n")
    (tmp_path / "dirty" / "a.py").write_text("x = 2\n")
    assert git_dirty(tmp_path / "clean") is False
    assert git_dirty(tmp_path / "dirty") is True


def test_a_cyclegan_resume_names_another_domain_B_count(tmp_path, capsys):
    """len() of a CycleGAN split is max(|A|, |B|): a domain B that lost an image keeps it, but each
    sample draws its B image among fewer. The checkpoint records |B| and a resume says so."""
    import shutil
    from tests.test_cyclegan_train import TINY, write_unaligned
    root = write_unaligned(tmp_path / "data", n_a=5, n_b=3)
    args = ["--dataroot", str(root), "--checkpoints_dir", str(tmp_path), "--name", "c", *TINY,
            "--niter", "1", "--niter_decay", "0"]
    assert train_main(args) == 0
    ckpt = load_checkpoint(tmp_path / "c")
    assert (ckpt["dataset_size"], ckpt["dataset_size_B"]) == (5, 3)
    first = sorted((root / "trainB").iterdir())[0]
    shutil.move(first, tmp_path / first.name)
    capsys.readouterr()
    assert train_main(args[:-4] + ["--niter", "2", "--niter_decay", "0", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "latest.pt was trained on 5 samples (5 domain A, 3 domain B images)" in err, err
    assert "holds 5 (5 domain A, 2 domain B images)" in err and "draws its domain B image among another number" in err


def test_a_cyclegan_resume_names_another_domain_A_count(tmp_path, capsys):
    """The same for domain A when B is the larger: len() stays max(|A|, |B|), but sample i reads
    A[i mod |A|]. The checkpoint recorded only |B| and the resume said nothing."""
    import shutil
    from tests.test_cyclegan_train import TINY, write_unaligned
    root = write_unaligned(tmp_path / "data", n_a=3, n_b=5)
    args = ["--dataroot", str(root), "--checkpoints_dir", str(tmp_path), "--name", "c", *TINY,
            "--niter", "1", "--niter_decay", "0"]
    assert train_main(args) == 0
    ckpt = load_checkpoint(tmp_path / "c")
    assert (ckpt["dataset_size"], ckpt["dataset_size_A"], ckpt["dataset_size_B"]) == (5, 3, 5)
    first = sorted((root / "trainA").iterdir())[0]
    shutil.move(first, tmp_path / first.name)
    capsys.readouterr()
    assert train_main(args[:-4] + ["--niter", "2", "--niter_decay", "0", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "latest.pt was trained on 5 samples (3 domain A, 5 domain B images)" in err, err
    assert "holds 5 (2 domain A, 5 domain B images)" in err, err
    assert "each sample takes its domain A image among another number" in err, err


@pytest.mark.parametrize("mine, theirs", [((5, 5, 3, "d0"), (5, 5, 2, "d1")),    # B differs, A the larger
                                          ((5, 3, 5, "d0"), (5, 2, 5, "d1"))])   # A differs, B the larger
def test_ddp_ranks_whose_cyclegan_domains_differ_are_refused_though_len_agrees(monkeypatch, mine, theirs):
    """len() of a CycleGAN split is max(|A|, |B|): ranks whose smaller domain differs agreed on it
    and trained on different data. The start's agreement compares both domains' counts."""
    from types import SimpleNamespace

    import pix2pixhd.trainer as tr
    from pix2pixhd.data import DatasetError
    me = SimpleNamespace(dist=SimpleNamespace(distributed=True), _dataset_size=mine[0], _dataset_size_A=mine[1],
                         _dataset_size_B=mine[2], cfg=SimpleNamespace(dataroot=mine[3]))
    monkeypatch.setattr(tr, "gather_all", lambda obj, dist: [obj, theirs])
    with pytest.raises(DatasetError, match=rf"^the ranks read datasets of different sizes \(rank 0: 5 samples "
                                           rf"\({mine[1]} domain A, {mine[2]} domain B images\) in d0, rank 1: 5 "
                                           rf"samples \({theirs[1]} domain A, {theirs[2]} domain B images\) in d1\)"):
        tr.Trainer._agree_on_dataset(me)
    monkeypatch.setattr(tr, "gather_all", lambda obj, dist: [obj, (*mine[:3], "elsewhere")])
    tr.Trainer._agree_on_dataset(me)   # the same counts under another path: agreed

"""Two-process DDP on CPU (gloo over loopback): the global stage trains, ranks stay identical,
rank 0's checkpoint resumes in one process, and a single process never starts a process group.

The test launches this same file under ``torch.distributed.run`` (torchrun); run as a script it
is the worker: it trains with the Trainer as ``train_hd.py`` would, then writes its own ranks'
parameters to ``OUT/rank{r}.pt`` so the test can compare ranks (product code needs no hook).
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = ["--label_nc", "9", "--loadSize", "64", "--fineSize", "64", "--resize_or_crop", "none",
        "--ngf", "4", "--n_downsample_global", "2", "--n_blocks_global", "1", "--ndf", "4",
        "--n_layers_D", "2", "--no_vgg_loss", "--no_tensorboard", "--no_progress", "--nThreads", "0",
        "--device", "cpu", "--batchSize", "1", "--niter", "1", "--niter_decay", "0",
        "--print_freq", "1", "--save_latest_freq", "1", "--name", "run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(script: Path | str, *args: str, port: int | None = None,
                 launcher: tuple[str, ...] = ("--nproc_per_node=2", "--nnodes=1")) -> list[str]:
    """``python -m torch.distributed.run LAUNCHER ... SCRIPT ARGS`` on loopback (a free port unless
    given: the agents of one multi-node run share theirs)."""
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "--master_addr=127.0.0.1",
            f"--master_port={port or free_port()}", str(script), *args]


REPO = Path(__file__).resolve().parents[1]


def repo_first(env: dict) -> dict:
    """``env`` with this checkout first on PYTHONPATH (what was there after it): a torchrun worker's
    sys.path starts at its script's folder, so it would otherwise import the installed pix2pixhd,
    which may be another copy."""
    return dict(env, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])]))


def torchrun_env() -> dict:
    return repo_first(dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"))


def make_data(root: Path, n: int = 4) -> Path:
    from pix2pixhd.datasets import synthetic_streets
    synthetic_streets.generate(root, n_train=n, n_test=0, width=64, height=32, seed=0)
    return root


def run_two_ranks(tmp_path: Path, extra: list[str]) -> subprocess.CompletedProcess:
    data = tmp_path / "data" if (tmp_path / "data").is_dir() else make_data(tmp_path / "data")
    out = tmp_path / "ranks"
    out.mkdir()
    tiny = TINY
    if "--model" in extra:   # pix2pixHD's generator options: refused for pix2pix and CycleGAN
        drop = {"--n_downsample_global", "--n_blocks_global"}
        tiny = [a for i, a in enumerate(TINY) if a not in drop and (i == 0 or TINY[i - 1] not in drop)]
    cmd = torchrun_cmd(__file__, str(out), *tiny, "--dataroot", str(data),
                       "--checkpoints_dir", str(tmp_path / "ck"), *extra)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=torchrun_env())
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    for r in (0, 1):   # the workers ran this checkout's package, not another installed copy
        assert Path(rank_params(out, r)["pix2pixhd_file"]).is_relative_to(REPO / "pix2pixhd"), r
    return p


def rank_params(out: Path, r: int) -> dict:
    return torch.load(out / f"rank{r}.pt", weights_only=True)


def test_two_process_gloo_run_keeps_ranks_identical_and_resumes_in_one_process(tmp_path, capsys):
    run_two_ranks(tmp_path, [])
    r0, r1 = rank_params(tmp_path / "ranks", 0), rank_params(tmp_path / "ranks", 1)
    assert r0["world_size"] == r1["world_size"] == 2
    # 4 images, 2 ranks, batch 1: each rank did 2 steps, and both know it
    assert r0["global_step"] == r1["global_step"] == 2
    # each rank started from its own seed (seed + rank) but DDP broadcast rank 0's weights, and
    # every step averaged the gradients: the ranks end bit-identical, and not at the init
    for net in ("G", "D"):
        for k, v in r0[net].items():
            assert torch.equal(v, r1[net][k]), f"{net}.{k} differs between ranks"
    assert any(not torch.equal(v, r0["G_init"][k]) for k, v in r0["G"].items())
    assert r0["first_batch_paths"] != r1["first_batch_paths"]  # ranks read different shards

    # rank 0's checkpoint holds those weights, one RNG state per rank, and resumes in one process
    from pix2pixhd.checkpoint import load_checkpoint
    ck = load_checkpoint(tmp_path / "ck" / "run")
    assert len(ck["rng"]) == 2 and ck["global_step"] == 2 and ck["epoch"] == 2
    for k, v in r0["G"].items():
        assert torch.equal(ck["G"][k], v), k

    from pix2pixhd.cli import resolve_config
    from pix2pixhd.trainer import Trainer
    cfg = resolve_config(["--resume", "--checkpoints_dir", str(tmp_path / "ck"), "--name", "run",
                          "--niter", "2"])
    capsys.readouterr()
    tr = Trainer(cfg)
    assert ("saved by 2 process(es), resumed on 1: each step now trains 1 image, not 2 (--batchSize 1 per "
            "process), so an epoch takes more steps; the learning rate and the epochs are unchanged\n"
            ) in capsys.readouterr().err   # at an epoch's end: no sample of it trained yet to leave out
    assert not torch.distributed.is_initialized()
    assert type(tr.G).__name__ == "GlobalGenerator"  # the plain path: no DDP wrapper
    for k, v in r0["G"].items():
        assert torch.equal(tr.G.state_dict()[k], v), k
    summary = tr.fit()
    assert summary["global_step"] == 2 + 4  # epoch 2 in one process: all 4 images, batch 1
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["losses"].values())


def test_two_nodes_of_one_rank_each_train_as_two_ranks_of_one_node(tmp_path):
    """Multi-node on one host: two torchrun agents (--nnodes=2, --node_rank 0 and 1, one worker
    each), so both workers have LOCAL_RANK 0 and only RANK tells them apart. Whatever keys on the
    global rank (who saves, the data shard, the seed, the RNG states in the checkpoint) must not
    take the local one: the run ends as the one-node two-rank run does."""
    data = make_data(tmp_path / "data")
    out = tmp_path / "ranks"
    out.mkdir()
    port = free_port()
    procs = [subprocess.Popen(
        torchrun_cmd(__file__, str(out), *TINY, "--dataroot", str(data),
                     "--checkpoints_dir", str(tmp_path / "ck"), port=port,
                     launcher=("--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=torchrun_env()) for node in (0, 1)]
    logs = [p.communicate(timeout=240)[0] for p in procs]
    for node, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"node {node}: torchrun failed ({p.returncode}):\n{log[-4000:]}"
    r0, r1 = rank_params(out, 0), rank_params(out, 1)
    assert (r0["local_rank"], r1["local_rank"], r0["world_size"]) == (0, 0, 2)
    assert r0["global_step"] == r1["global_step"] == 2
    for net in ("G", "D"):
        for k, v in r0[net].items():
            assert torch.equal(v, r1[net][k]), f"{net}.{k} differs between nodes"
    assert r0["first_batch_paths"] != r1["first_batch_paths"]   # each node's rank reads its shard
    # one writer: node 0's rank (two would log each step twice, under two headers)
    log = (tmp_path / "ck" / "run" / "loss_log.txt").read_text()
    assert log.count("training global stage") == 1 and log.count("(epoch: 1, iters:") == 2, log
    from pix2pixhd.checkpoint import load_checkpoint
    ck = load_checkpoint(tmp_path / "ck" / "run")
    assert len(ck["rng"]) == 2 and ck["global_step"] == 2
    for k, v in r0["G"].items():
        assert torch.equal(ck["G"][k], v), k


def test_two_ranks_keep_the_global_generator_in_step_after_it_unfreezes(tmp_path):
    """Local stage on two ranks across --niter_fix_global: epoch 1 trains the enhancer with the
    global generator frozen, epoch 2 all of G. DDP only all-reduces the parameters that needed
    gradients when it was built, so the unfreeze must wrap G anew: otherwise each rank would step
    the global generator with its own gradients, and the ranks would drift apart."""
    from pix2pixhd.cli import train_main
    data = make_data(tmp_path / "data")
    assert train_main([*TINY, "--dataroot", str(data), "--checkpoints_dir", str(tmp_path / "g"),
                       "--name", "g", "--ngf", "8"]) == 0   # the local G's global part: 2 x its ngf 4
    run_two_ranks(tmp_path, ["--stage", "local", "--load_pretrain", str(tmp_path / "g" / "g"),
                             "--n_blocks_local", "1", "--niter", "2", "--niter_fix_global", "1"])
    r0, r1 = rank_params(tmp_path / "ranks", 0), rank_params(tmp_path / "ranks", 1)
    assert r0["global_step"] == r1["global_step"] == 4   # 2 epochs x 2 steps per rank
    for net in ("G", "D"):
        for k, v in r0[net].items():
            assert torch.equal(v, r1[net][k]), f"{net}.{k} differs between ranks"
    global_part = [k for k in r0["G"] if k.startswith("model.")]
    assert global_part and len(global_part) < len(r0["G"])
    # the global generator was loaded from the global stage and trained in epoch 2
    assert any(not torch.equal(r0["G"][k], r0["G_init"][k]) for k in global_part)


def test_the_feature_encoder_trains_in_step_on_two_ranks(tmp_path):
    """--instance_feat: the encoder E learns only through G's loss, from the features it pools
    per instance; on two ranks it is a DDP module of its own and must end identical on both, and
    trained."""
    run_two_ranks(tmp_path, ["--instance_feat"])
    r0, r1 = rank_params(tmp_path / "ranks", 0), rank_params(tmp_path / "ranks", 1)
    assert r0["E"] and r0["E"].keys() == r1["E"].keys()
    for net in ("G", "D", "E"):
        for k, v in r0[net].items():
            assert torch.equal(v, r1[net][k]), f"{net}.{k} differs between ranks"
    assert any(not torch.equal(v, r0["E_init"][k]) for k, v in r0["E"].items())


def test_batch_norm_bf16_autocast_and_bf16_gradient_allreduce_on_two_ranks(tmp_path):
    p = run_two_ranks(tmp_path, ["--norm", "batch", "--precision", "bf16", "--ddp_bf16_grads"])
    assert "BatchNorm statistics stay per rank" in p.stdout  # CPU: no SyncBatchNorm, and it says so
    r0, r1 = rank_params(tmp_path / "ranks", 0), rank_params(tmp_path / "ranks", 1)
    assert r0["comm_hook"] == r1["comm_hook"] == "bf16_allreduce_hook"
    # parameters (not BatchNorm's running stats, which are per rank on CPU) stay identical:
    # the bf16 all-reduce hands every rank the same averaged gradient
    for net in ("G", "D"):
        for k in r0[f"{net}_param_names"]:
            assert torch.equal(r0[net][k], r1[net][k]), f"{net}.{k} differs between ranks"
    assert any(not torch.equal(v, r0["G_init"][k]) for k, v in r0["G"].items())


def test_pix2pix_under_ddp_keeps_ranks_identical(tmp_path):
    # pix2pix: BatchNorm U-Net (label ids one-hot in, 64x32 maps rounded up to unet_128's 128x128),
    # vanilla cGAN + L1, D updated by one backward per D pass; BatchNorm stats stay per rank on CPU
    run_two_ranks(tmp_path, ["--model", "pix2pix", "--netG_pix2pix", "unet_128", "--dataset_mode",
                             "cityscapes", "--no_instance", "--netD_pix2pix", "n_layers"])   # TINY's --n_layers_D 2
    r0, r1 = rank_params(tmp_path / "ranks", 0), rank_params(tmp_path / "ranks", 1)
    assert r0["global_step"] == r1["global_step"] == 2
    for net in ("G", "D"):
        for k in r0[f"{net}_param_names"]:
            assert torch.equal(r0[net][k], r1[net][k]), f"{net}.{k} differs between ranks"
    assert any(not torch.equal(v, r0["G_init"][k]) for k, v in r0["G"].items())


def worker(out: Path, argv: list[str]) -> None:
    import pix2pixhd
    from pix2pixhd import distributed
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.trainer import Trainer, _unwrap
    cfg = resolve_config(argv)
    info = distributed.setup(cfg.device)
    tr = Trainer(cfg, info)
    g0 = {k: v.clone() for k, v in _unwrap(tr.G).state_dict().items()}
    e0 = {k: v.clone() for k, v in _unwrap(tr.E).state_dict().items()} if tr.E is not None else {}
    first = []
    make_loader = tr.make_loader

    def recording_loader():  # remember which files this rank's first batch held
        loader, sampler = make_loader()
        first.extend(next(iter(loader))["path"])
        return loader, sampler
    tr.make_loader = recording_loader
    tr.fit()
    G, D = _unwrap(tr.G), _unwrap(tr.D)
    E = _unwrap(tr.E) if tr.E is not None else None
    torch.save({"G": G.state_dict(), "D": D.state_dict(), "G_init": g0,
                "E": E.state_dict() if E is not None else {}, "E_init": e0,
                "G_param_names": [n for n, _ in G.named_parameters()],
                "D_param_names": [n for n, _ in D.named_parameters()],
                "global_step": tr.global_step, "world_size": info.world_size,
                "local_rank": info.local_rank,
                "first_batch_paths": first, "pix2pixhd_file": pix2pixhd.__file__,
                "comm_hook": tr.G._get_ddp_logging_data().get("comm_hook", "")},
               out / f"rank{info.rank}.pt")
    distributed.cleanup(info)


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2:])


def test_mps_where_there_is_none_is_one_line_also_at_dry_run(monkeypatch, capsys):
    """--device mps on a machine without MPS: --dry_run said "1 process(es) on mps", the run
    ended in a 9-frame traceback (--device cuda got its one line)."""
    from pix2pixhd import distributed as D
    from pix2pixhd.cli import train_main
    from pix2pixhd.errors import run
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(D.DeviceUnavailableError, match=r"^--device mps: Apple's MPS is not available on this "
                                                       r"machine .*use --device cpu$"):
        D.resolve_device("mps")
    assert run(train_main, ["--device", "mps", "--dry_run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --device mps: Apple's MPS is not available") and err.count("\n") == 1, err


def test_a_single_process_on_cuda_n_makes_it_the_current_device(monkeypatch):
    """CUDA events, synchronize() and Triton launches follow the current device: a process told
    --device cuda:1 (no torchrun) must switch to it, as torchrun ranks always did."""
    from pix2pixhd import distributed as D
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)   # cuda:1 exists
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = D.setup("cuda:1")
    assert info.world_size == 1 and calls == [torch.device("cuda:1")]
    D.bind_cuda_device(torch.device("cpu"))
    D.bind_cuda_device(torch.device("cuda"))  # no index: the current device stays
    assert calls == [torch.device("cuda:1")]


def _torchrun_exit_worker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = torchrun_cmd(Path(__file__).with_name("dist_exit_worker.py"), str(tmp_path), *args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=torchrun_env())


GLOO_THREADS = ("gloo_tcp_loop", "pt_gloo_runloop")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the thread names from Linux's /proc")
def test_a_two_rank_run_ends_its_process_group_before_python_shuts_down(tmp_path):
    """DDP's constructor imports torch.distributed.nn, whose functions keep the world group in
    their default arguments when that import comes after init_process_group: the group then
    outlived destroy_process_group, its gloo threads ran into the interpreter's shutdown, and a
    rank could abort there ("terminate called without an active exception") after a complete
    run. train_main must leave no gloo thread behind."""
    data = make_data(tmp_path / "data")
    p = _torchrun_exit_worker(tmp_path, "train", *TINY, "--dataroot", str(data),
                              "--checkpoints_dir", str(tmp_path / "ck"))
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    for r in (0, 1):
        names = json.loads((tmp_path / f"threads{r}.json").read_text())
        assert not [n for n in names if n in GLOO_THREADS], f"rank {r} after train_main: {names}"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the thread names from Linux's /proc")
def test_work_in_flight_at_cleanup_finishes_before_the_rank_exits(tmp_path):
    """The abort made certain: an all-reduce still running in a gloo thread when the group is
    ended. With setup's import order before the fix, 5 of 6 runs of this worker aborted with
    "terminate called without an active exception" (0 of 6 after); cleanup must instead wait for
    the work and join the threads."""
    p = _torchrun_exit_worker(tmp_path, "pending")
    assert p.returncode == 0 and "terminate called" not in p.stderr, \
        f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    for r in (0, 1):
        names = json.loads((tmp_path / f"threads{r}.json").read_text())
        assert not [n for n in names if n in GLOO_THREADS], f"rank {r} after cleanup: {names}"


@pytest.mark.fault(cls="run folder in use",
                   case="two ranks, rank 0's start-up write fails (loss_log.txt is a folder): every "
                        "rank stops with the real error, none goes on into a collective")
def test_a_failed_start_up_write_on_rank_0_stops_every_rank_with_its_error(tmp_path):
    """Rank 0 alone writes the run folder at the start (config.json, the logs), after the ranks
    agreed that all could start; a failure there is agreed too. Before, rank 1 went on into DDP's
    first all-reduce and died of "Connection closed by peer" (NCCL: a hang until the timeout)."""
    data = make_data(tmp_path / "data")
    (tmp_path / "ck" / "run" / "loss_log.txt").mkdir(parents=True)
    cmd = torchrun_cmd(Path(__file__).parents[1] / "train_hd.py", *TINY, "--dataroot", str(data),
                       "--checkpoints_dir", str(tmp_path / "ck"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=torchrun_env())
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-4000:]
    folder = f"{tmp_path / 'ck' / 'run' / 'loss_log.txt'} is not a regular file (a folder): remove it"
    assert folder in out, out[-4000:]   # rank 0: its own error, with its fix
    assert "Free space" not in out, out[-4000:]
    # (the two ranks' lines can run into one on a shared stderr)
    assert re.search(r"error \(rank 1 of 2\): stopped because rank 0 could not start \(writing its run "
                     r"folder\) \([^\n]*is not a regular file \(a folder\)", out), out[-6000:]
    assert "Connection closed by peer" not in out, out[-6000:]
    assert not (tmp_path / "ck" / "run" / "latest.pt").exists()


def test_the_process_group_timeout_reaches_init_process_group(monkeypatch):
    """NCCL's default timeout (10 min) is shorter than rank 0's --validate full of a large dataset,
    which the other ranks wait for; the timeout is PIX2PIXHD_DIST_TIMEOUT_S (default 1 hour) on
    both ways the group is made (a first start; an elastic restart's own store)."""
    from datetime import timedelta

    import torch.distributed as dist

    from pix2pixhd import distributed as D
    from pix2pixhd.errors import ConfigError
    seen: list[dict] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **kw: seen.append(kw))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    monkeypatch.delenv(D.TIMEOUT_ENV, raising=False)
    D.setup("cpu")
    assert seen[-1]["timeout"] == timedelta(seconds=3600)
    monkeypatch.setenv(D.TIMEOUT_ENV, "7200")
    D.setup("cpu")
    assert seen[-1]["timeout"] == timedelta(seconds=7200)

    stores: list[dict] = []
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    monkeypatch.setattr(dist, "TCPStore", lambda *a, **kw: stores.append(kw))
    monkeypatch.setattr(dist, "PrefixStore", lambda prefix, store: store)
    monkeypatch.setenv(D.TIMEOUT_ENV, "90.5")
    D.setup("cpu")
    assert seen[-1]["timeout"] == stores[-1]["timeout"] == timedelta(seconds=90.5)

    for bad in ("ten minutes", "0", "-5", "inf"):
        monkeypatch.setenv(D.TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=rf"{D.TIMEOUT_ENV}={bad!r}: expected a number of seconds"):
            D.setup("cpu")

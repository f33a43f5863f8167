"""Trainer.fit() across its boundaries, through train_hd.py's own entry point: the local stage's
unfreeze of the global generator at --niter_fix_global, resumes that cross it, a resume after a
save on an epoch's last step, and a two-rank DDP run interrupted and resumed. Every resumed run
must end bit-equal (weights and optimizer state) to the same run done in one go."""
import contextlib
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, BATCH = 4, 2
STEPS_PER_EPOCH = N_TRAIN // BATCH
TINY = ["--label_nc", str(LABEL_NC), "--resize_or_crop", "none", "--n_downsample_global", "2",
        "--n_blocks_global", "1", "--n_blocks_local", "1", "--ndf", "4", "--n_layers_D", "2",
        "--no_vgg_loss", "--batchSize", str(BATCH), "--nThreads", "0", "--no_progress",
        "--no_tensorboard", "--no_html", "--print_freq", "1", "--device", "cpu", "--deterministic"]


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=N_TRAIN, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.fixture(scope="module")
def global_stage(tmp_path_factory, streets):
    """A one-epoch global stage (ngf 8) for the local runs to start from."""
    ck = tmp_path_factory.mktemp("global")
    train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), *TINY, "--name", "g",
                "--ngf", "8", "--niter", "1", "--niter_decay", "0"])
    return ck / "g"


def _train(ck: Path, streets: Path, *args: str) -> None:
    assert train_main(["--dataroot", str(streets), "--checkpoints_dir", str(ck), *TINY, *args]) == 0


def _local(ck, streets, global_stage, name, *args):
    _train(ck, streets, "--stage", "local", "--name", name, "--load_pretrain", str(global_stage),
           "--niter_fix_global", "1", *args)


def assert_same_run(a: Path, b: Path, which="latest") -> None:
    """Two runs' checkpoints hold the same position, bit-equal weights and optimizer states."""
    ca, cb = load_checkpoint(a, which), load_checkpoint(b, which)
    assert (ca["epoch"], ca["iter_in_epoch"], ca["global_step"]) == (cb["epoch"], cb["iter_in_epoch"], cb["global_step"])
    for net in ("G", "D"):
        assert ca[net].keys() == cb[net].keys()
        for k, v in ca[net].items():
            assert torch.equal(v, cb[net][k]), f"{net}.{k}"
    for opt in ("optimizer_G", "optimizer_D"):
        sa, sb = ca[opt], cb[opt]
        assert sa["param_groups"] == sb["param_groups"], opt
        assert sa["state"].keys() == sb["state"].keys(), opt
        for i, st in sa["state"].items():
            for k, v in st.items():
                assert torch.equal(v, sb["state"][i][k]), f"{opt} state {i} {k}"


# The local stage every local test compares with: 3 epochs (the last at half the lr), the global
# part fixed for the first, an epoch checkpoint after each, in one go.
LOCAL_RUN = ["--niter", "2", "--niter_decay", "1", "--save_epoch_freq", "1"]


@pytest.fixture(scope="module")
def local_full(tmp_path_factory, streets, global_stage):
    ck = tmp_path_factory.mktemp("local")
    _local(ck, streets, global_stage, "full", *LOCAL_RUN)
    return ck / "full"


def test_fit_unfreezes_the_global_generator_after_niter_fix_global(global_stage, local_full):
    g = load_checkpoint(global_stage)["G"]
    e1, e2, e3 = (load_checkpoint(local_full, e) for e in (1, 2, 3))
    global_keys = [k for k in e1["G"] if k.startswith("model.")]
    local_keys = [k for k in e1["G"] if not k.startswith("model.")]
    assert global_keys and local_keys
    # epoch 1 (fixed): the global part is the global stage's, bit for bit
    assert all(torch.equal(e1["G"][k], g[k]) for k in global_keys)
    # epochs 2 and 3: every global conv weight moves, in each epoch. (Not asserted for the
    # biases: each feeds an instance norm, so its true gradient is 0 and whether Adam moves it
    # depends on rounding noise.)
    global_weights = [k for k in global_keys if k.endswith(".weight")]
    for before, after in ((e1, e2), (e2, e3)):
        moved = [k for k in global_weights if not torch.equal(before["G"][k], after["G"][k])]
        assert len(moved) == len(global_weights), set(global_weights) - set(moved)
    # the optimizer that steps: the enhancer's parameters only during epoch 1, all of G after,
    # each with Adam state (it stepped every one)
    for ck, n in ((e1, len(local_keys)), (e2, len(e1["G"])), (e3, len(e1["G"]))):
        assert len(ck["optimizer_G"]["param_groups"][0]["params"]) == n
        assert len(ck["optimizer_G"]["state"]) == n
    # the enhancer's Adam state carried over at the unfreeze: its step counts every step of the
    # local stage, the global part's only those since the unfreeze (state i: G's i-th parameter,
    # in the order of G's state_dict, which holds no buffers)
    for ck, epochs in ((e1, 1), (e2, 2), (e3, 3)):
        names = local_keys if ck is e1 else list(e1["G"])
        steps = {names[i]: int(st["step"]) for i, st in ck["optimizer_G"]["state"].items()}
        assert {steps[k] for k in local_keys} == {epochs * STEPS_PER_EPOCH}, f"after epoch {epochs}"
        if ck is not e1:
            assert {steps[k] for k in global_keys} == {(epochs - 1) * STEPS_PER_EPOCH}, f"after epoch {epochs}"


@pytest.mark.fault(cls="interrupted run",
                   case="stopped mid fixed-global epochs, resumed across the unfreeze: bit-equal end")
def test_resume_across_the_unfreeze_is_exact(tmp_path, streets, global_stage, local_full):
    # stopped mid-epoch 1 (global part fixed); resumed for 2 steps, through the end of epoch 1
    # into epoch 2 (unfrozen); then to the end
    _local(tmp_path, streets, global_stage, "cut", *LOCAL_RUN, "--max_steps", "1")
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 1
    _train(tmp_path, streets, "--name", "cut", "--resume", "--max_steps", "2")
    ck = load_checkpoint(tmp_path / "cut")
    assert (ck["epoch"], ck["iter_in_epoch"]) == (2, 1)
    _train(tmp_path, streets, "--name", "cut", "--resume")
    assert load_checkpoint(tmp_path / "cut")["global_step"] == 3 * STEPS_PER_EPOCH
    assert_same_run(local_full, tmp_path / "cut")


@pytest.mark.fault(cls="interrupted run",
                   case="stopped at the end of the fixed epochs, resumed: bit-equal end")
def test_resume_from_the_end_of_the_fixed_epochs_is_exact(tmp_path, streets, global_stage, local_full):
    # A run that ended (or was killed) after the last fixed epoch's end-of-epoch save: its
    # latest.pt is at epoch 2, step 0, with the enhancer-only optimizer. Trained further, it must
    # unfreeze and continue exactly as the run that went through in one go.
    _local(tmp_path, streets, global_stage, "cut", "--niter", "1", "--niter_decay", "0")
    ck = load_checkpoint(tmp_path / "cut")
    assert (ck["epoch"], ck["iter_in_epoch"]) == (2, 0)
    _train(tmp_path, streets, "--name", "cut", "--resume", *LOCAL_RUN)
    assert_same_run(local_full, tmp_path / "cut")


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (no handler catches a BaseException)."""


def _cut_at_an_epochs_last_step_and_resume(run, ck: Path, streets: Path, full: Path) -> None:
    # --save_latest_freq hits an epoch's last step: latest.pt holds iter_in_epoch == steps per
    # epoch; a kill right after that save, before the epoch's end, leaves it so. The run must
    # resume, finish the epoch's bookkeeping and end bit-equal to the uninterrupted run.
    from pix2pixhd.trainer import Trainer
    real = Trainer.save

    def save_then_die(self, which):
        path = real(self, which)
        if which == "latest" and self.iter_in_epoch == STEPS_PER_EPOCH:
            raise _Killed
        return path
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "save", save_then_die)
        with pytest.raises(_Killed):
            run("--save_latest_freq", str(STEPS_PER_EPOCH))
    c = load_checkpoint(ck / "cut")
    assert (c["epoch"], c["iter_in_epoch"], c["global_step"]) == (1, STEPS_PER_EPOCH, STEPS_PER_EPOCH)
    _train(ck, streets, "--name", "cut", "--resume")
    assert_same_run(full, ck / "cut")
    assert_same_run(full, ck / "cut", which=1)  # the epoch-1 checkpoint, written by the resumed run


@pytest.mark.fault(cls="interrupted run",
                   case="saved on an epoch's last step (global stage), resumed: bit-equal end")
def test_global_resume_after_a_save_on_an_epochs_last_step_is_exact(tmp_path, streets):
    common = ["--ngf", "8", "--niter", "1", "--niter_decay", "1", "--save_epoch_freq", "1"]
    _train(tmp_path, streets, "--name", "full", *common)
    _cut_at_an_epochs_last_step_and_resume(lambda *a: _train(tmp_path, streets, "--name", "cut", *common, *a),
                                           tmp_path, streets, tmp_path / "full")


@pytest.mark.fault(cls="interrupted run",
                   case="saved on the last fixed-global step (local stage), resumed: bit-equal end")
def test_local_resume_after_a_save_on_the_last_fixed_step_is_exact(tmp_path, streets, global_stage, local_full):
    # the same at the end of the fixed epoch: the resumed run also unfreezes before epoch 2
    _cut_at_an_epochs_last_step_and_resume(
        lambda *a: _local(tmp_path, streets, global_stage, "cut", *LOCAL_RUN, *a), tmp_path, streets, local_full)


# ---- two ranks (gloo over loopback, CPU) --------------------------------------------------------
def _torchrun(data: Path, ck: Path, *args: str) -> None:
    """The two-rank run (torchrun, 2 CPU ranks, gloo), to its end."""
    with _torchrun_beside(data, ck, *args):
        pass


@contextlib.contextmanager
def _torchrun_beside(data: Path, ck: Path, *args: str):
    """The two-rank run started now, in the background, while the block runs (a torchrun is about
    one core's work: two beside each other take little more time than one); waited for and
    checked when the block ends, killed if it fails."""
    from tests.test_distributed import torchrun_cmd, torchrun_env
    cmd = torchrun_cmd(REPO / "train_hd.py", "--dataroot", str(data), "--checkpoints_dir", str(ck),
                       *TINY, "--batchSize", "1", "--ngf", "4", *args)
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=torchrun_env(),
                             cwd=str(REPO))
        try:
            yield
            p.wait(timeout=240)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        log.seek(0)
        assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{log.read()[-9000:]}"


# 4 images, 2 ranks, batch 1: 2 steps per epoch, 3 epochs (the last two at a decaying lr)
TWO_RANK_RUN = ["--niter", "1", "--niter_decay", "2"]


@pytest.fixture(scope="module")
def two_rank_cut(tmp_path_factory, streets):
    """The two-rank run stopped after step 3 (mid-epoch 2), run once for the module: each test
    resumes a copy of it (``_copy_cut``)."""
    ck = tmp_path_factory.mktemp("two_rank_cut")
    _torchrun(streets, ck, "--name", "cut", *TWO_RANK_RUN, "--max_steps", "3")
    return ck / "cut"


def _copy_cut(two_rank_cut: Path, ck: Path) -> Path:
    import shutil
    return Path(shutil.copytree(two_rank_cut, ck / "cut"))


@pytest.mark.fault(cls="interrupted run",
                   case="two DDP ranks stopped mid-epoch, resumed on two ranks: bit-equal end")
def test_two_rank_run_interrupted_and_resumed_equals_the_uninterrupted_one(tmp_path, streets, two_rank_cut):
    # Stopped after step 3 (mid-epoch 2), resumed on two ranks to the end: every rank resumes its
    # own RNG stream and data shard.
    with _torchrun_beside(streets, tmp_path, "--name", "full", *TWO_RANK_RUN):
        ck = load_checkpoint(_copy_cut(two_rank_cut, tmp_path))
        assert (ck["epoch"], ck["iter_in_epoch"], ck["global_step"], len(ck["rng"])) == (2, 1, 3, 2)
        _torchrun(streets, tmp_path, "--name", "cut", "--resume")
    assert load_checkpoint(tmp_path / "cut")["global_step"] == 6
    assert_same_run(tmp_path / "full", tmp_path / "cut")


@pytest.mark.fault(cls="interrupted run",
                   case="two DDP ranks stopped mid-epoch, resumed in one process: the epoch's "
                        "remaining samples, none twice")
@pytest.mark.usefixtures("one_thread")   # tests/conftest.py: the resumed runs train in this process
def test_a_two_rank_run_resumed_in_one_process_trains_the_rest_of_the_epoch_once(tmp_path, streets,
                                                                                two_rank_cut):
    """A restart on fewer processes (a lost node under torchrun's elastic min:max, or a resume on
    a smaller machine) continues the epoch with the samples no rank has trained yet, shared
    among the processes now running: not each old rank's skip count applied to the new shards,
    which would train some samples of the epoch twice and others never."""
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.data import ResumableSampler
    from pix2pixhd.trainer import Trainer
    # 4 images, 2 ranks, batch 1: stopped after step 3, one step into epoch 2 on each rank
    ck = load_checkpoint(_copy_cut(two_rank_cut, tmp_path))
    assert (ck["epoch"], ck["iter_in_epoch"], ck["samples_in_epoch"], ck["world_size"]) == (2, 1, 2, 2)

    # A checkpoint written before samples_in_epoch was saved: the count follows from the steps,
    # the batch size and the number of RNG states (one per rank that saved).
    import shutil
    shutil.copytree(tmp_path / "cut", tmp_path / "old")
    old = dict(ck)
    del old["samples_in_epoch"], old["world_size"]
    torch.save(old, tmp_path / "old" / "latest.pt")

    names = sorted(p.name for p in (streets / "train_label").iterdir())
    done = [names[i] for r in range(2)   # what each rank trained of epoch 2 before the stop
            for i in ResumableSampler(len(names), shuffle=True, seed=ck["config"]["seed"], rank=r,
                                      world_size=2, drop_last=True).order(2)[:1]]
    for name in ("cut", "old"):
        cfg = resolve_config(["--resume", "--checkpoints_dir", str(tmp_path), "--name", name])
        tr = Trainer(cfg)   # one process
        trained, step = [], tr.train_step

        def recording_step(batch, tr=tr, trained=trained, step=step):
            trained.append((tr.epoch, *batch["path"]))
            return step(batch)
        tr.train_step = recording_step
        tr.fit()
        rest = [Path(p).name for e, p in trained if e == 2]
        assert len(rest) == 2 and sorted(rest + done) == names, name   # each of the epoch's samples once
        assert [e for e, _ in trained] == [2] * 2 + [3] * 4, name       # then epoch 3, whole, the last
        assert tr.global_step == 3 + 2 + 4 and tr.epoch == 4, name


def test_a_rank_the_saved_run_did_not_have_starts_a_random_stream_of_its_own(tmp_path, streets, monkeypatch):
    """Resumed on more processes than saved, the ranks that saved take their own RNG states and
    each new one seeds a stream of its own (it took the last saved rank's before: two ranks drew
    the same dropout masks and augmentations)."""
    from pix2pixhd import distributed
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.distributed import DistInfo
    from pix2pixhd.trainer import Trainer
    _train(tmp_path, streets, "--name", "one", "--niter", "1", "--niter_decay", "0", "--max_steps", "1")
    saved = load_checkpoint(tmp_path / "one")["rng"]
    assert len(saved) == 1
    monkeypatch.setattr(distributed, "wrap", lambda module, info, bf16_grads=False: module)  # no group here
    monkeypatch.setattr(Trainer, "_agree_on_start", lambda self: None)                     # (its all-gather)
    cfg = resolve_config(["--resume", "--checkpoints_dir", str(tmp_path), "--name", "one"])
    states = []
    for rank in (0, 1, 2):
        Trainer(cfg, DistInfo(rank=rank, local_rank=rank, world_size=3))
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], saved[0]["torch"])
    assert not torch.equal(states[1], saved[0]["torch"]) and not torch.equal(states[1], states[2])


def test_a_resume_cannot_fix_again_a_global_generator_it_unfroze(tmp_path, streets, global_stage):
    """--resume --niter_fix_global 3 on a run past its unfreeze (niter_fix_global 1, in epoch 2):
    noted as taking effect and recorded in its config, while the global part kept training."""
    from pix2pixhd.errors import ConfigError
    _local(tmp_path, streets, global_stage, "cut", *LOCAL_RUN, "--max_steps", str(STEPS_PER_EPOCH + 1))
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 2
    before = (tmp_path / "cut" / "latest.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"^--niter_fix_global 3: .*cut trains its global generator already "
                                          r"\(unfrozen after epoch 1, it resumes at epoch 2\), and a resume "
                                          r"cannot fix it again"):
        _train(tmp_path, streets, "--name", "cut", "--resume", "--niter_fix_global", "3")
    assert (tmp_path / "cut" / "latest.pt").read_bytes() == before
    _train(tmp_path, streets, "--name", "cut", "--resume", "--niter_fix_global", "1", "--max_steps", "1")


def test_the_notes_of_a_resume_with_other_options_are_in_the_runs_log(tmp_path, streets, global_stage):
    """train_hd.py printed them on stdout only: loss_log.txt did not say that the epochs after the
    resume ran with another --lr, and config.json now holds the new value."""
    import shutil
    shutil.copytree(global_stage, tmp_path / "g")
    _train(tmp_path, streets, "--name", "g", "--resume", "--ngf", "8", "--niter", "2", "--lr", "0.001",
           "--max_steps", "1")
    log = (tmp_path / "g" / "loss_log.txt").read_text()
    assert re.search(r"note: resuming .*g with options other than its own: .*--lr 0\.0002 -> 0\.001", log), log

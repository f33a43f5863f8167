"""A training run that ends on an error under torchrun drops its DDP wrappers before it ends the
process group (Trainer.release_distributed, called by train_hd.py's _train).

The error's traceback keeps fit()'s frames, and a frame keeps its function, whose closures hold
the Trainer: without the release the Trainer, and with it each DDP module's reducer, outlived
``destroy_process_group``. The last reducer was then freed while errors.run let the error go,
ending the gloo group again inside a destructor that joins gloo's threads while holding the
interpreter lock one of them waited for: the rank printed its error line and then ignored
torchrun's SIGTERM until the SIGKILL 30 s later (tests/test_peer_gone.py took 35 s one run in
seven)."""
import gc
import weakref

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from pix2pixhd import cli, distributed
from pix2pixhd.errors import UserError
from tests.test_distributed import free_port


@pytest.fixture
def one_rank_group(monkeypatch):
    """A gloo group of one process (DDP works on it), ended after the test."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_release_leaves_no_ddp_module_alive_while_the_trainer_is(one_rank_group):
    from pix2pixhd.trainer import Trainer
    t = Trainer.__new__(Trainer)   # only the attributes release_distributed reads
    t.G, t.D, t.E = DDP(torch.nn.Linear(2, 2)), DDP(torch.nn.Linear(2, 1)), None
    inner = t.G.module
    refs = [weakref.ref(t.G), weakref.ref(t.D)]
    t.release_distributed()
    gc.collect()
    assert t.G is inner and isinstance(t.D, torch.nn.Linear) and t.E is None
    assert all(r() is None for r in refs), "a DDP wrapper outlived the release while the Trainer is held"
    t.release_distributed()   # twice, or on a single-process run: nothing to do


@pytest.mark.fault(cls="interrupted run", case="an error under torchrun: the DDP wrappers are dropped before the "
                                                "process group ends (a rank hung 30 s after its error line)")
def test_an_error_in_fit_releases_the_ddp_modules_before_the_group_ends(monkeypatch, tmp_path):
    from pix2pixhd import trainer as T
    order = []

    class FakeTrainer:
        def __init__(self, cfg, info):
            pass

        def fit(self):
            order.append("fit")
            raise UserError("a file that cannot be read")

        def release_distributed(self):
            order.append("release")

    monkeypatch.setattr(T, "Trainer", FakeTrainer)
    monkeypatch.setattr(distributed, "cleanup", lambda info: order.append("cleanup"))
    with pytest.raises(UserError, match="cannot be read"):
        cli._train(["--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "r",
                    "--device", "cpu", "--label_nc", "0", "--no_vgg_loss"])
    assert order == ["fit", "release", "cleanup"]

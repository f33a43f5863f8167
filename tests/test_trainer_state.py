"""The trainer's own state: whether the global generator is frozen is saved in the checkpoint and
restored on resume (not read back from the weights' requires_grad), and fit() closes its logs on
every way out (the end, --max_steps, an exception)."""
import pytest
import torch

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.trainer import Trainer
from tests.test_trainer_step import tiny_cfg


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=2, n_test=0, width=32, height=32, seed=0)
    return root


def _local(tmp_path, streets, **kw):
    """A local-stage trainer (ngf 4, global part ngf 8) whose global part is fixed for 1 epoch."""
    return tiny_cfg(tmp_path, stage="local", label_nc=LABEL_NC, dataroot=str(streets),
                    resize_or_crop="none", batchSize=2, niter=2, niter_decay=0,
                    niter_fix_global=1, save_epoch_freq=1, **kw)


def _opt_g_size(tr: Trainer) -> int:
    return sum(len(g["params"]) for g in tr.opt_G.param_groups)


def test_frozen_global_generator_is_saved_and_restored(tmp_path, streets):
    tr = Trainer(_local(tmp_path, streets, name="l"))
    n_all, n_local = len(list(tr.G.parameters())), len(list(tr.G.local_parameters()))
    assert tr.global_frozen and _opt_g_size(tr) == n_local < n_all
    tr.fit()  # epoch 1 fixed, epoch 2 everything
    assert not tr.global_frozen and _opt_g_size(tr) == n_all
    assert load_checkpoint(tmp_path / "l", 1)["global_frozen"] is True    # saved after epoch 1
    assert load_checkpoint(tmp_path / "l", 2)["global_frozen"] is False

    # Resuming the epoch-1 checkpoint (epoch 2 next, the unfreeze not yet done): the flag, not
    # the epoch or requires_grad, decides the optimizer the saved state is loaded into.
    again = Trainer(_local(tmp_path, streets, name="l", resume=True, which_epoch="1"))
    assert again.epoch == 2 and again.global_frozen and _opt_g_size(again) == n_local
    assert not any(p.requires_grad for p in again.G.model.parameters())


@pytest.mark.fault(cls="interrupted run",
                   case="a checkpoint without the global_frozen flag (older format): frozen or not, "
                        "read from its optimizer")
def test_checkpoint_without_the_flag_is_read_from_its_optimizer(tmp_path, streets):
    # Checkpoints written before the flag existed: an enhancer-only G optimizer means frozen.
    tr = Trainer(_local(tmp_path, streets, name="old"))
    tr.save("latest")
    ck_path = tmp_path / "old" / "latest.pt"
    ck = torch.load(ck_path, weights_only=False)
    del ck["global_frozen"]
    torch.save(ck, ck_path)
    again = Trainer(_local(tmp_path, streets, name="old", resume=True))
    assert again.global_frozen and _opt_g_size(again) == _opt_g_size(tr)
    tr._unfreeze_global()
    tr.save("latest")
    ck = torch.load(ck_path, weights_only=False)
    del ck["global_frozen"]
    torch.save(ck, ck_path)
    assert not Trainer(_local(tmp_path, streets, name="old", resume=True)).global_frozen


def _closes(tr: Trainer) -> list[str]:
    """Record the tensorboard writer's close (the writer fit() opened, once the run has started)
    and the logger's close."""
    calls = []
    open_writer, vis_close = tr.vis._tensorboard, tr.vis.close

    def opened():
        writer = open_writer()
        if writer is not None and not hasattr(writer, "_recorded"):
            writer._recorded, writer_close = True, writer.close
            writer.close = lambda: (calls.append("tensorboard"), writer_close())[1]
        return writer

    tr.vis._tensorboard = opened
    tr.vis.close = lambda: (calls.append("visualizer"), vis_close())[1]
    return calls


@pytest.mark.parametrize("how", ["end", "max_steps", "error"])
@pytest.mark.fault(cls="interrupted run",
                   case="fit() exit by {how}: text log and TensorBoard writer closed, events on disk")
def test_fit_closes_its_logs_on_every_exit(tmp_path, streets, how):
    cfg = tiny_cfg(tmp_path, name=how, label_nc=LABEL_NC, dataroot=str(streets), resize_or_crop="none",
                   batchSize=1, niter=1, niter_decay=0, no_tensorboard=False, no_html=False,
                   max_steps=1 if how == "max_steps" else 0)
    tr = Trainer(cfg)
    calls = _closes(tr)
    if how == "error":
        def boom(batch):
            raise RuntimeError("data went missing")
        tr.train_step = boom
        with pytest.raises(RuntimeError, match="data went missing"):
            tr.fit()
    else:
        assert tr.fit()["stopped_early"] == (how == "max_steps")
    assert calls == ["visualizer", "tensorboard"] and tr.vis.writer is None
    # the text log was written and the tensorboard events flushed to disk
    assert (tmp_path / how / "loss_log.txt").is_file()
    assert any((tmp_path / how / "tensorboard").iterdir())
    if how != "error":
        assert "G_GAN" in (tmp_path / how / "web" / "index.html").read_text()


def test_adam_is_torchs_fused_kernel_and_a_resume_keeps_it(tmp_path, streets):
    # On CPU the per-tensor Adam loop cost about a quarter of a reference-width step (profile in
    # docs/benchmarks.md); the fused kernel steps the same maths. A checkpoint saved by the loop
    # (an older version, or another device's choice) must not switch a resumed run back to it:
    # torch's load_state_dict copies the saved group's fused/foreach flags.
    tr = Trainer(_local(tmp_path, streets, name="f"))
    assert all(g["fused"] for opt in (tr.opt_G, tr.opt_D) for g in opt.param_groups)
    tr.train_step(next(iter(tr.make_loader()[0])))
    tr.save("latest")
    ck_path = tmp_path / "f" / "latest.pt"
    ck = torch.load(ck_path, weights_only=False)
    for key in ("optimizer_G", "optimizer_D"):
        for g in ck[key]["param_groups"]:
            g["fused"], g["foreach"] = None, None
    torch.save(ck, ck_path)
    again = Trainer(_local(tmp_path, streets, name="f", resume=True))
    for opt, old in ((again.opt_G, tr.opt_G), (again.opt_D, tr.opt_D)):
        assert all(g["fused"] and g["lr"] == old.param_groups[0]["lr"] for g in opt.param_groups)
        p = opt.param_groups[0]["params"][0]
        assert torch.equal(opt.state[p]["exp_avg"], old.state[old.param_groups[0]["params"][0]]["exp_avg"])

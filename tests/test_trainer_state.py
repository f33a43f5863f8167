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
    """A local-stage trainer (ngf 4, global part ngf 8) whose global part, loaded from a global
    run (--load_pretrain: a fresh local stage fixes only a loaded one), is fixed for 1 epoch."""
    if not kw.get("resume"):
        if not (tmp_path / "g" / "latest.pt").is_file():
            Trainer(tiny_cfg(tmp_path, name="g", stage="global", ngf=8, label_nc=LABEL_NC, dataroot=str(streets),
                             resize_or_crop="none")).save("latest")
        kw["load_pretrain"] = str(tmp_path / "g")
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
    ck["epoch"] = 2   # past its fixed epoch, where a run unfreezes (a resume cannot fix it again)
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


@pytest.mark.fault(cls="interrupted run",
                   case="resumed with --channels_last switched: Adam's moments take the parameters' "
                        "layout (fused Adam refuses a mismatch on CUDA and steps wrongly on CPU)")
def test_resume_with_the_other_memory_layout_gives_adam_state_the_parameters_layout(tmp_path, streets):
    tr = Trainer(_local(tmp_path, streets, name="cl", channels_last=True))
    batch = next(iter(tr.make_loader()[0]))
    tr.train_step(batch)
    tr.save("latest")
    again = Trainer(_local(tmp_path, streets, name="cl", resume=True, channels_last=False))
    moved = 0
    for opt, old in ((again.opt_G, tr.opt_G), (again.opt_D, tr.opt_D)):
        for p, p_old in zip(opt.param_groups[0]["params"], old.param_groups[0]["params"]):
            st, st_old = opt.state[p], old.state[p_old]
            for k in ("exp_avg", "exp_avg_sq"):
                assert st[k].stride() == p.stride(), k
                assert torch.equal(st[k], st_old[k]), k   # same values, other layout
                moved += st_old[k].stride() != p.stride()
    assert moved > 0  # the premise: the channels-last run saved moments in its own layout


def test_adam_state_step_follows_a_fused_groups_device():
    """A checkpoint written by an unfused Adam keeps ``step`` on the CPU after load_state_dict;
    fused CUDA Adam wants it on the parameter's device (here 'meta' stands for CUDA)."""
    from pix2pixhd.trainer import match_optimizer_state
    p = torch.nn.Parameter(torch.empty(2, 3, device="meta"))
    opt = torch.optim.Adam([p], fused=False)
    opt.state[p] = {"step": torch.tensor(3.0), "exp_avg": torch.empty(2, 3, device="meta"),
                    "exp_avg_sq": torch.empty(2, 3, device="meta")}
    match_optimizer_state(opt)
    assert opt.state[p]["step"].device.type == "cpu"  # unfused: torch keeps step on the CPU
    opt.param_groups[0]["fused"] = True
    match_optimizer_state(opt)
    assert opt.state[p]["step"].device.type == "meta" and opt.state[p]["step"].dtype == torch.float32


def test_deterministic_is_strict_on_cpu_and_warn_only_on_cuda(monkeypatch):
    """ReflectionPad2d's backward has no deterministic CUDA kernel: strict mode would stop the
    first G backward on a GPU, so there --deterministic warns instead, and says so."""
    from pix2pixhd.trainer import set_deterministic
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on, **kw: calls.append((on, kw)))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    set_deterministic(torch.device("cpu"))
    assert calls == [(True, {})]
    with pytest.warns(RuntimeWarning, match="ReflectionPad2d"):
        set_deterministic(torch.device("cuda"))
    assert calls[-1] == (True, {"warn_only": True})
    assert torch.backends.cudnn.benchmark is False
    import os
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.fault(cls="interrupted run",
                   case="resumed on a machine with fewer GPUs than the one that saved: the saved "
                        "CUDA random states of the GPUs this machine has are restored")
def test_cuda_rng_states_of_a_bigger_machine_restore_on_a_smaller_one(monkeypatch):
    from pix2pixhd import checkpoint as C
    state = C.rng_state()
    state["cuda"] = [torch.full((8,), i, dtype=torch.uint8) for i in range(8)]  # an 8-GPU node
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.append((int(s[0]), i)))
    C.set_rng_state(state)
    assert restored == [(0, 0)]

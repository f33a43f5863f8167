"""Options that change how a run computes, when a run is resumed or a stage started from another
(a user's walkthrough of the precision and performance options): --norm_impl and --compile given
anew on --resume are named in the resume note, as --channels_last is (each rounds otherwise);
--ddp_bf16_grads in one process is not (it changes nothing there, as the start says); a stage
started with --load_pretrain says when it runs at another precision or memory layout than the
stage it loads (those are not inherited)."""
import pytest
import torch

from pix2pixhd.config import TrainConfig

TINY = dict(label_nc=5, ngf=4, n_downsample_global=2, n_blocks_global=1, ndf=4, n_layers_D=1, num_D=1,
            no_vgg_loss=True, no_tensorboard=True, no_html=True, no_progress=True, device="cpu",
            nThreads=0, loadSize=32, fineSize=32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A global-stage run folder saved in bf16 and channels-last (untrained)."""
    from pix2pixhd.trainer import Trainer
    ck = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    Trainer(TrainConfig(checkpoints_dir=str(ck), name="g", precision="bf16", channels_last=True,
                        norm_impl="ref", **TINY).resolved()).save("latest")
    return ck


@pytest.mark.parametrize("option, value, said", [("norm_impl", "auto", "--norm_impl ref -> auto"),
                                                 ("compile", True, "--compile off -> on")])
def test_resume_names_a_kernel_or_compile_change(saved, option, value, said):
    notes = TrainConfig(checkpoints_dir=str(saved), name="g", resume=True, **{option: value}).resolved().notes()
    assert any(said in n and "differs from an uninterrupted one" in n for n in notes), notes


def test_resume_in_one_process_does_not_name_ddp_bf16_grads(saved, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    notes = TrainConfig(checkpoints_dir=str(saved), name="g", resume=True, ddp_bf16_grads=True).resolved().notes()
    assert not any("ddp_bf16_grads" in n for n in notes), notes
    monkeypatch.setenv("WORLD_SIZE", "2")   # under torchrun it changes the gradients: named
    notes = TrainConfig(checkpoints_dir=str(saved), name="g", resume=True, ddp_bf16_grads=True).resolved().notes()
    assert any("--ddp_bf16_grads off -> on" in n for n in notes), notes


def test_a_stage_says_it_runs_at_another_precision_and_layout_than_the_stage_it_loads(saved):
    local = TrainConfig(checkpoints_dir=str(saved), name="l", stage="local", load_pretrain=str(saved / "g"),
                        device="cpu").resolved()
    assert (local.precision, local.channels_last) == ("fp32", False)
    said = [n for n in local.notes() if "not how it ran" in n]
    assert said == [f"--load_pretrain {saved / 'g'} trained with --precision bf16 --channels_last on; this "
                    "stage runs --precision fp32 --channels_last off (a later stage takes the architecture, "
                    "data and losses of the stage it loads, not how it ran: give --precision bf16 "
                    "--channels_last on to keep them)"], local.notes()
    same = TrainConfig(checkpoints_dir=str(saved), name="l2", stage="local", load_pretrain=str(saved / "g"),
                       device="cpu", precision="bf16", channels_last=True).resolved()
    assert not any("not how it ran" in n for n in same.notes()), same.notes()

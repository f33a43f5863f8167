"""A checkpoint whose optimizer state does not fit its parameters (a damaged or crafted
latest.pt): --resume refuses it in one line naming the file and the fix. torch's
Optimizer.load_state_dict takes such a state as it is, and fused Adam's first step on the CPU then
read and wrote out of bounds: a moment of 3 values for a [8, 10, 7, 7] weight ended the run with
"Segmentation fault" (status 139, no message), found by a hostile-input walkthrough."""
import pytest
import torch

from pix2pixhd.checkpoint import CheckpointError, checkpoint_path
from pix2pixhd.trainer import Trainer
from tests.test_trainer_step import fake_batch, tiny_cfg


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged_opt")
    tr = Trainer(tiny_cfg(root, name="r"))
    tr.train_step(fake_batch(h=32, w=32))
    tr.save("latest")
    path = checkpoint_path(root / "r", "latest")
    return root, path, path.read_bytes()


@pytest.mark.fault(cls="damaged run folder", case="latest.pt whose optimizer moments do not fit their parameters "
                                              "(another shape, missing, a step of many values): --resume refuses it "
                                              "in one line naming the file, before any step")
@pytest.mark.parametrize("damage, said", [
    (lambda st: st.__setitem__("exp_avg", torch.zeros(3)), r"exp_avg is a torch.float32 tensor of shape \(3,\)"),
    (lambda st: st.pop("exp_avg_sq"), "exp_avg_sq is missing"),
    (lambda st: st.__setitem__("step", torch.zeros(5)), "step is a torch.float32 tensor of shape"),
])
def test_a_damaged_optimizer_state_is_refused_naming_the_file(saved, damage, said):
    root, path, good = saved
    try:
        ck = torch.load(path, weights_only=True)
        damage(ck["optimizer_G"]["state"][0])
        torch.save(ck, path)
        with pytest.raises(CheckpointError, match=rf"{path}: its optimizer_G does not fit this run's parameters "
                                                  rf"\(group 0 parameter 0 .*{said}.*\); the file is damaged, or was "
                                                  r"saved with other options or by another version: resume from another "
                                                  r"checkpoint of the run \(--which_epoch N\)") as e:
            Trainer(tiny_cfg(root, name="r", resume=True))
        assert "\n" not in str(e.value)
    finally:
        path.write_bytes(good)


def test_the_undamaged_checkpoint_resumes_and_steps(saved):
    root, path, good = saved
    tr = Trainer(tiny_cfg(root, name="r", resume=True))
    tr.train_step(fake_batch(h=32, w=32))

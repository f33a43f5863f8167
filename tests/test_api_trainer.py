"""The Trainer from Python keeps a run folder's one run: a second fit() on the same Trainer is
refused before it touches the folder, and save() on a Trainer that fit() did not start never
writes over another run's checkpoints (new or empty folders, resume=True and overwrite=True
excepted)."""
from pathlib import Path

import pytest

from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import RunExistsError, UserError
from pix2pixhd.trainer import Trainer
from tests.file_state import listing as _listing

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=2, n_test=0, width=32, height=32, seed=0)
    return root


def _cfg(ck: Path, streets: Path, name="r", **kw) -> TrainConfig:
    return TrainConfig(**{"name": name, "checkpoints_dir": str(ck), "dataroot": str(streets),
                          "label_nc": LABEL_NC, "resize_or_crop": "none", "ngf": 8, "ndf": 8,
                          "n_downsample_global": 2, "n_blocks_global": 1, "n_layers_D": 2,
                          "no_vgg_loss": True, "batchSize": 2, "nThreads": 0, "niter": 1,
                          "niter_decay": 0, "no_progress": True, "no_tensorboard": True,
                          "no_html": True, "device": "cpu", **kw}).resolved()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_fit_is_refused_and_leaves_the_run_as_it_was(tmp_path, streets, overwrite):
    t = Trainer(_cfg(tmp_path, streets, overwrite=overwrite))
    t.fit()
    run = tmp_path / "r"
    before = _listing(run)
    with pytest.raises(RunExistsError, match=r"fit\(\) was already called on this Trainer .*finished.*"
                                             r"resume=True") as e:
        t.fit()
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    assert _listing(run) == before                                           # nothing moved or written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]               # no r.replaced-TIME
    assert load_checkpoint(run, "1")["global_step"] == 1
    Trainer(_cfg(tmp_path, streets, resume=True, niter=2)).fit()   # what the message says works
    assert load_checkpoint(run, "latest")["global_step"] == 2


def test_a_fit_refused_before_it_started_can_be_called_again(tmp_path, streets):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")   # another run's, refused by check_new_run
    t = Trainer(_cfg(tmp_path, streets))
    with pytest.raises(RunExistsError, match="already holds a run"):
        t.fit()
    (tmp_path / "r" / "config.json").unlink()
    assert t.fit()["global_step"] == 1


def test_save_outside_fit_refuses_another_runs_folder(tmp_path, streets):
    Trainer(_cfg(tmp_path, streets)).fit()
    run = tmp_path / "r"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    t = Trainer(_cfg(tmp_path, streets))
    with pytest.raises(RunExistsError, match=r"already holds a run \(config.json, epoch_0001.pt, latest.pt\) "
                                             r"and Trainer.save\(\) would .*build the Trainer with resume=True; "
                                             r".*choose a name other than 'r'; .*set overwrite=True") as e:
        t.save("latest")
    assert "\n" not in str(e.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    with pytest.raises(RunExistsError):   # still refused: nothing was claimed
        t.save(1)
    nvidia = tmp_path / "nv"
    nvidia.mkdir()
    (nvidia / "latest_net_G.pth").write_bytes(b"")
    with pytest.raises(RunExistsError, match=r"holds an NVIDIA pix2pixHD run \(latest_net_G.pth\) and Trainer.save\(\)"):
        Trainer(_cfg(tmp_path, streets, name="nv")).save("latest")
    assert [p.name for p in nvidia.iterdir()] == ["latest_net_G.pth"]


def test_save_outside_fit_writes_a_new_folder_resumes_and_overwrites(tmp_path, streets):
    t = Trainer(_cfg(tmp_path, streets, name="new"))   # a new folder (tests/test_cli_compat.py's ck)
    t.save("latest")
    t.save("latest")   # its own folder now
    assert load_checkpoint(tmp_path / "new", "latest")["global_step"] == 0
    Trainer(_cfg(tmp_path, streets)).fit()
    resumed = Trainer(_cfg(tmp_path, streets, resume=True))
    assert resumed.save("latest") == tmp_path / "r" / "latest.pt"
    assert load_checkpoint(tmp_path / "r", "latest")["global_step"] == 1
    anew = Trainer(_cfg(tmp_path, streets, overwrite=True))
    anew.save("latest")   # replaces the run: the old one is moved aside, then deleted
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.json", "latest.pt", "lineage.json"]
    assert load_checkpoint(tmp_path / "r", "latest")["global_step"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "r"]

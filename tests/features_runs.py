"""Shared by the ``python -m pix2pixhd.features`` test modules (test_features_scale.py,
test_features_stop_progress.py, test_features_walk_today2.py, test_features_sigterm.py,
test_mutants_dec07h.py): a tiny untrained E's run folder and its dataset of synthetic 64x32 scenes,
E wrapped to count the images it encodes and to stop before a given one (so that nothing depends on
timing), and what the tests compare the commands' outputs with.

``run`` and ``counted`` are fixtures: import them into the test module (``# noqa: F401``); ``run``
is module-scoped, so each module builds its own, once."""
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

import pix2pixhd.features as features
from pix2pixhd.checkpoint import save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.models import build_encoder

N = 7   # the scenes of ``run``


def tiny_run(root: Path, n: int, **cfg) -> tuple[Path, Path]:
    """(a run folder under ``root`` with an untrained E, its dataset of ``n`` scenes); ``cfg``:
    TrainConfig options over those of every features test (the loader's nThreads, E's norm)."""
    generate(root / "streets", n_train=n, n_test=0, width=64, height=32, seed=0)
    folder = root / "ck" / "e"
    cfg = TrainConfig(name="e", checkpoints_dir=str(folder.parent), dataroot=str(root / "streets"),
                      label_nc=LABEL_NC, resize_or_crop="none", instance_feat=True, nef=4, n_downsample_E=2,
                      ngf=4, n_downsample_global=2, n_blocks_global=1, n_clusters=2, **cfg).resolved()
    torch.manual_seed(0)
    save_checkpoint({"config": cfg.to_dict(), "global_step": 1, "E": build_encoder(cfg).state_dict()},
                    folder, "latest", cfg.to_json())
    return folder, root / "streets"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(a run folder with an untrained E, its dataset of N scenes), read in the main process
    (nThreads 0) with per-image BatchNorm, as ``encode`` runs E."""
    return tiny_run(tmp_path_factory.mktemp("features_run"), N, nThreads=0, norm="batch")


class Counted(torch.nn.Module):
    """E, counting its forwards' batch sizes; before image ``stop_at`` raises signal ``signum``
    (handled by main's handler) or, with none, KeyboardInterrupt (a kill's stand-in: nothing is
    written at it)."""

    def __init__(self, e, sizes: list, stop_at: int | None, signum: int | None):
        super().__init__()
        self.e, self.sizes, self.stop_at, self.signum = e, sizes, stop_at, signum

    def forward(self, x, inst):
        if self.stop_at is not None and sum(self.sizes) + x.shape[0] > self.stop_at:
            if self.signum is None:
                raise KeyboardInterrupt
            signal.raise_signal(self.signum)   # its handler raises the stop before this returns
        self.sizes.append(x.shape[0])
        return self.e(x, inst)


@pytest.fixture
def counted(monkeypatch):
    """counted(stop_at=None, signum=None) → the list of E's batch sizes in the next command."""
    load = features.load_encoder

    def arm(stop_at=None, signum=None):
        sizes = []

        def wrapped(*a, **k):
            e, cfg, step = load(*a, **k)
            return Counted(e, sizes, stop_at, signum), cfg, step
        monkeypatch.setattr(features, "load_encoder", wrapped)
        return sizes
    return arm


def clusters(path: Path) -> dict:
    """The features, centers and counts of the clusters file ``path``."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    return {"features": d["features"], "centers": d["centers"], "counts": d["counts"]}


def same(a: dict, b: dict) -> bool:
    """``a`` and ``b`` hold the same keys and equal values, tensors to the bit, dicts in depth."""
    return a.keys() == b.keys() and all(
        (same(a[k], b[k]) if isinstance(a[k], dict) else
         torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]) for k in a)


def maps(folder: Path) -> dict:
    """{file name: pixel bytes} of the feature maps in ``folder``."""
    out = {}
    for p in sorted(folder.iterdir()):
        with Image.open(p) as im:
            out[p.name] = im.tobytes()
    return out


def progress_count(progress: Path) -> int:
    """The images (or maps) the progress file ``progress`` counts done."""
    return torch.load(progress, map_location="cpu", weights_only=True)["count"]


def encoded_after_a_rewrite(folder: Path, streets: Path, out: Path, index: int, counted, capsys) -> tuple[list, str]:
    """Photo ``index`` of the dataset rewritten (its mtime a second later), then encode (batches of
    2, progress every 2) run again into ``out``: (E's batch sizes in that run, its stderr). The
    photo's mtime is put back after, for the module's other tests."""
    img = sorted((streets / "train_img").iterdir())[index]
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    sizes = counted()
    try:
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    finally:
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    return sizes, capsys.readouterr().err

"""The --load_features recipe across stages (docs/features.md, section 4): global with E ->
``features precompute`` -> local with --load_features -> finetune, and synthesis of each later
stage with the clusters of the run whose E made the maps; run folders used from another working
directory (load_pretrain stored absolute; older relative ones found); --cluster checked against
the clusters before synthesis writes anything.

The stages are trained with the commands, with relative paths as a user types them, on 4
synthetic 64x32 scenes (a few seconds on a CPU)."""
import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from pix2pixhd.checkpoint import load_checkpoint, load_run_config
from pix2pixhd.cli import synthesize_main, train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.errors import ConfigError, MissingInputError
from pix2pixhd.features import (CLUSTERS_FILE, FeatureClusters, FeatureSource, feature_chain,
                                load_encoder, main as features_main)

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--checkpoints_dir", "ck", "--dataroot", "st", "--resize_or_crop", "scale_width", "--niter", "1",
          "--niter_decay", "0", "--batchSize", "2", "--nThreads", "0", "--device", "cpu", "--no_progress",
          "--no_tensorboard", "--no_html", "--validate", "off"]


class _cwd:
    def __init__(self, path):
        self.path, self.old = path, None

    def __enter__(self):
        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        os.chdir(self.old)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """ROOT with st/ (data) and ck/{g64, l128, ft}, every command run from ROOT with relative paths."""
    pytest.importorskip("sklearn")
    root = tmp_path_factory.mktemp("chain")
    generate(root / "st", n_train=4, n_test=2, width=64, height=32, seed=0)
    with _cwd(root):
        assert train_main(["--name", "g64", *COMMON, "--label_nc", str(LABEL_NC), "--instance_feat",
                           "--loadSize", "64", "--n_downsample_E", "2", "--ngf", "8", "--ndf", "8",
                           "--n_downsample_global", "2", "--n_blocks_global", "1", "--no_vgg_loss"]) == 0
        assert features_main(["precompute", "--checkpoint", "ck/g64", "--device", "cpu"]) == 0
        assert train_main(["--name", "l128", *COMMON, "--stage", "local", "--load_pretrain", "ck/g64",
                           "--load_features", "--loadSize", "128", "--n_blocks_local", "1",
                           "--max_steps", "1"]) == 0
        assert features_main(["encode", "--checkpoint", "ck/g64", "--device", "cpu"]) == 0
        # the stage after a --load_features stage: it used to be built with an E that its
        # --load_pretrain does not hold ("uses a feature encoder but the checkpoint holds none")
        assert train_main(["--name", "ft", *COMMON, "--stage", "finetune", "--load_pretrain", "ck/l128",
                           "--loadSize", "128", "--max_steps", "1"]) == 0
    return root


def _synthesize(run, out, *extra):
    return synthesize_main(["--checkpoint", str(run), "--input", "st/test_label", "--inst", "st/test_inst",
                            "--out", str(out), "--device", "cpu", "--no_progress", *extra])


def test_finetune_after_load_features_reads_the_maps_and_samples_the_first_stages_clusters(chain, capsys):
    ft = load_run_config(chain / "ck" / "ft")
    assert ft.load_features and ft.instance_feat   # inherited from ck/l128, not given
    assert load_checkpoint(chain / "ck" / "ft").get("E") is None
    with _cwd(chain):
        # two stages back: ck/ft -> ck/l128 -> ck/g64, whose E made the maps and the clusters
        assert [r.name for r, _ in feature_chain("ck/ft")] == ["ft", "l128", "g64"]
        src = FeatureSource.from_checkpoint("ck/ft", ft, "sample")
        assert src.clusters.path == Path("ck/g64").absolute() / CLUSTERS_FILE
        assert _synthesize("ck/ft", "out_ft") == 0
        assert len(list(Path("out_ft/test_img").glob("*.png"))) == 2
        assert load_encoder("ck/ft")[1].name == "g64"   # --use_encoded_image and encode: E of ck/g64
    assert f"using the clusters of {(chain / 'ck' / 'g64')}" in capsys.readouterr().out


def test_load_pretrain_is_stored_absolute_and_the_runs_work_from_a_sub_folder(chain):
    for run, prev in (("l128", "g64"), ("ft", "l128")):
        saved = json.loads((chain / "ck" / run / "config.json").read_text())["load_pretrain"]
        assert saved == str(chain / "ck" / prev)
        assert load_checkpoint(chain / "ck" / run)["config"]["load_pretrain"] == saved
    (chain / "sub").mkdir(exist_ok=True)
    with _cwd(chain / "sub"):
        assert synthesize_main(["--checkpoint", "../ck/l128", "--input", "../st/test_label", "--inst",
                                "../st/test_inst", "--out", "o", "--device", "cpu", "--no_progress"]) == 0
        assert load_encoder("../ck/l128")[1].name == "g64"


def test_dataroot_is_stored_absolute_and_encode_runs_from_a_sub_folder(chain):
    for run in ("g64", "l128", "ft"):
        assert json.loads((chain / "ck" / run / "config.json").read_text())["dataroot"] == str(chain / "st")
    (chain / "sub").mkdir(exist_ok=True)
    with _cwd(chain / "sub"):
        # no --dataroot: the run's own; it used to read "st" from sub/ and find no dataset
        assert features_main(["encode", "--checkpoint", "../ck/g64", "--device", "cpu"]) == 0


def _old_copy(chain, name, load_pretrain):
    """ck/l128 as an older version saved it: load_pretrain as typed, in config.json and the checkpoint."""
    dst = chain / "ck" / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(chain / "ck" / "l128", dst)
    cj = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cj, "name": name, "load_pretrain": load_pretrain}))
    ck = torch.load(dst / "latest.pt", weights_only=False)
    ck["config"] = {**ck["config"], "name": name, "load_pretrain": load_pretrain}
    torch.save(ck, dst / "latest.pt")
    return dst


def test_an_older_relative_load_pretrain_is_found_from_another_working_directory(chain):
    _old_copy(chain, "l128old", "ck/g64")   # typed in ROOT, where the run was trained
    (chain / "sub").mkdir(exist_ok=True)
    with _cwd(chain / "sub"):
        # this used to say "no checkpoint ck/g64/latest.pt" (ck/g64 from sub/, not from ROOT)
        e, cfg, _ = load_encoder("../ck/l128old")
        assert cfg.name == "g64"
        old = load_run_config("../ck/l128old")
        src = FeatureSource.from_checkpoint("../ck/l128old", old, "sample")
        assert src.clusters.path.resolve() == (chain / "ck" / "g64" / CLUSTERS_FILE).resolve()
    # typed from elsewhere ("../ck/g64" from a sub-folder): the stage beside it in ck/ is taken
    _old_copy(chain, "l128other", "../other/ck/g64")
    assert load_encoder(chain / "ck" / "l128other")[1].name == "g64"
    # nothing anywhere: one error naming the value, the folders tried and the fix
    dst = _old_copy(chain, "l128lost", "ck/gone")
    with _cwd(chain / "sub"), pytest.raises(MissingInputError) as e:
        load_encoder("../ck/l128lost")
    msg = str(e.value)
    assert "load_pretrain 'ck/gone'" in msg and str(chain / "ck" / "gone") in msg
    assert 'Set "load_pretrain" in ../ck/l128lost/config.json to that run' in msg
    shutil.rmtree(dst)


def test_a_bad_cluster_is_refused_before_synthesis_writes(chain):
    fc = FeatureClusters.load(chain / "ck" / "g64")
    cls = min(fc.centers)
    n = fc.centers[cls].shape[0]
    with _cwd(chain):
        out = Path("out_bad")
        with pytest.raises(ConfigError, match=rf"--cluster {cls}={n + 10}: class {cls} has {n} cluster\(s\) "
                                              rf"in .*{CLUSTERS_FILE}; pick an index in \[0, {n}\)"):
            _synthesize("ck/g64", out, "--cluster", f"{cls}={n + 10}")
        assert not (out / "synthesis.json").exists()
        with pytest.raises(ConfigError, match=rf"--cluster 99=0: class 99 is out of range: this run's "
                                              rf"label_nc is {LABEL_NC}, so classes are 0..{LABEL_NC - 1}"):
            _synthesize("ck/g64", out, "--cluster", "99=0")
        assert not out.exists() or not any(out.iterdir())
        # the corrected value runs into the same folder, without --overwrite
        assert _synthesize("ck/g64", out, "--cluster", f"{cls}={n - 1}") == 0


def test_feature_source_checks_cluster_choices_when_built():
    cfg = TrainConfig(label_nc=5, instance_feat=True, feat_num=3).resolved()
    fc = FeatureClusters({1: torch.zeros(4, 3), 2: torch.zeros(2, 3)}, feat_num=3, n_clusters=4)
    with pytest.raises(ConfigError, match=r"class 2 has 2 cluster\(s\) in the saved clusters; pick an index"):
        FeatureSource(cfg, "cluster", clusters=fc, cluster="1=3,2=5")
    with pytest.raises(ConfigError, match="class 7 is out of range: this run's label_nc is 5"):
        FeatureSource(cfg, "cluster", clusters=fc, cluster="7=0")
    with pytest.raises(ConfigError, match=r"class 3 has no clusters .*; classes with clusters: 1, 2"):
        FeatureSource(cfg, "cluster", clusters=fc, cluster="3=0")
    FeatureSource(cfg, "cluster", clusters=fc, cluster="1=3,2=1")   # in range: built
    FeatureSource(cfg, "cluster", clusters=fc, cluster="9")         # one index, mod each class's count


def _saved(folder: Path, cfg: TrainConfig) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(cfg.to_json())
    return folder


def test_a_chain_without_clusters_or_with_a_loop_is_named(tmp_path):
    base = TrainConfig(label_nc=5, instance_feat=True, checkpoints_dir=str(tmp_path)).resolved()
    g = _saved(tmp_path / "g", dataclasses.replace(base, name="g"))
    lf = dataclasses.replace(base, name="l", load_features=True, stage="local", load_pretrain=str(g))
    ft = dataclasses.replace(lf, name="f", stage="finetune", load_pretrain=str(tmp_path / "l"))
    _saved(tmp_path / "l", lf)
    f = _saved(tmp_path / "f", ft)
    with pytest.raises(MissingInputError) as e:
        FeatureSource.from_checkpoint(f, ft, "sample")
    msg = str(e.value)
    assert f"no {CLUSTERS_FILE} in any run of {f} -> {tmp_path / 'l'} -> {g}" in msg
    assert f"python -m pix2pixhd.features encode --checkpoint {g}`" in msg
    # clusters written beside a middle stage (encode --checkpoint l: E of g) are found too
    FeatureClusters({1: torch.zeros(2, 3)}, 3, 2).save(tmp_path / "l" / CLUSTERS_FILE)
    assert FeatureSource.from_checkpoint(f, ft, "sample").clusters.path == tmp_path / "l" / CLUSTERS_FILE
    # l loads f, which loads l: refused by name instead of recursing forever
    _saved(tmp_path / "l", dataclasses.replace(lf, load_pretrain=str(f)))
    with pytest.raises(ConfigError, match=rf"--load_pretrain chain of {f} loops \({f} -> {tmp_path / 'l'} -> {f}\)"):
        feature_chain(f, ft)

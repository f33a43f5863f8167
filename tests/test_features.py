"""Multimodal synthesis (issue 9): per-instance features, k-means clusters, sampling, the
encode / precompute commands, --load_features training and synthesis with features.

Everything runs on tiny configs (ngf 4, 64x32 synthetic street scenes, a few steps)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.config import TrainConfig
from pix2pixhd.features import (CLUSTERS_FILE, FeatureClusters, FeatureSource, _instance_features_ref,
                                instance_features, parse_cluster_spec, sample_features)
from pix2pixhd.networks import instance_average

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer_step import fake_batch, tiny_cfg  # noqa: E402


def _maps(n=3, h=9, w=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(0, 4, (n, 1, h, w), generator=g)
    inst = cls * 1000 + torch.randint(0, 3, (n, 1, h, w), generator=g)
    if n > 1:
        inst[1] = 7  # a sample that is one region
    label = torch.where(inst >= 1000, inst // 1000, inst)
    return inst, label


# ---- item 5: vectorised pooling vs the naive loop ------------------------------------------------
def test_instance_features_match_the_reference_loop():
    inst, label = _maps()
    feat = torch.randn(3, 5, 9, 11).contiguous(memory_format=torch.channels_last)
    got = instance_features(feat, inst, label)
    ref = _instance_features_ref(feat, inst, label)
    assert len(ref) == got.value.shape[0] and len(ref) > 10
    for k, (b, i, lab, v, area) in enumerate(ref):
        assert (int(got.sample[k]), int(got.inst_id[k]), int(got.label[k])) == (b, i, lab)
        assert torch.equal(got.value[k], v)
        assert float(got.area[k]) == pytest.approx(area)
    # every pixel's row is its own (sample, instance)
    rows = got.dense.reshape(3, 9, 11)
    assert torch.equal(got.inst_id[rows], inst[:, 0]) and torch.equal(got.sample[rows][:, 0, 0], torch.arange(3))


def test_instance_average_gradients_match_the_naive_loop():
    inst, _ = _maps(n=2, h=7, w=10, seed=1)
    x = torch.randn(2, 3, 7, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 7, 10, dtype=torch.float64)
    (instance_average(x, inst) * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    out = torch.zeros_like(x2)
    for b in range(2):
        for i in inst[b].unique():
            m = (inst[b, 0] == i)
            out = out + m * x2[b:b + 1, :, m].mean(-1)[..., None, None] * torch.eye(2, dtype=out.dtype)[b][:, None, None, None]
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


# ---- clustering ---------------------------------------------------------------------------------
def test_cluster_features_keeps_large_instances_and_finds_the_modes():
    pytest.importorskip("sklearn")
    from pix2pixhd.features import cluster_features
    rng = np.random.default_rng(0)
    modes = np.array([[-0.8, 0.1, 0.5], [0.6, -0.4, 0.0]], np.float32)
    big = modes[rng.integers(0, 2, 40)] + rng.normal(0, 0.01, (40, 3)).astype(np.float32)
    small = np.full((30, 3), 0.95, np.float32)  # tiny instances: must be ignored
    rows = np.concatenate([np.c_[big, np.full(40, 2.0)], np.c_[small, np.full(30, 0.1)]]).astype(np.float32)
    feats = {7: rows, 3: np.c_[small[:2], [0.2, 0.3]].astype(np.float32), 5: rows[:1]}
    centers = cluster_features(feats, n_clusters=2)
    assert set(centers) == {7, 5}  # class 3 had no instance above the area threshold
    assert centers[5].shape == (1, 3)  # k = min(n_clusters, instances kept)
    got = centers[7][np.argsort(centers[7][:, 0])]
    np.testing.assert_allclose(got, modes[np.argsort(modes[:, 0])], atol=0.01)


# ---- sampling -------------------------------------------------------------------------------------
def _clusters():
    g = torch.Generator().manual_seed(0)
    return FeatureClusters({1: torch.rand(4, 3, generator=g), 2: torch.rand(2, 3, generator=g),
                            3: torch.rand(3, 3, generator=g)}, feat_num=3, n_clusters=4)


def test_sampled_features_come_from_the_clusters_and_repeat_with_the_seed(tmp_path):
    inst, label = _maps(n=2, h=16, w=20)
    fc = _clusters()
    fc.save(tmp_path / CLUSTERS_FILE)
    fc = FeatureClusters.load(tmp_path)
    f = sample_features(inst, label, fc, seeds=[5, 6])
    assert f.shape == (2, 3, 16, 20)
    # constant within each instance, and a centre of the instance's own class (0 for classes without)
    rows = instance_features(f, inst, label)
    for k in range(len(rows.label)):
        m = (inst[rows.sample[k], 0] == rows.inst_id[k])
        vals = f[rows.sample[k]][:, m]
        assert torch.equal(vals, vals[:, :1].expand_as(vals))
        c = int(rows.label[k])
        if c in fc.centers:
            assert (fc.centers[c] == vals[:, 0]).all(1).any()
        else:
            assert (vals == 0).all()
    assert torch.equal(f, sample_features(inst, label, fc, seeds=[5, 6]))
    # per-image seeds: a sample's features do not depend on the batch it is in
    assert torch.equal(f[1:], sample_features(inst[1:], label[1:], fc, seeds=[6]))
    # over seeds, instances of a class see several of its centres
    seen = {tuple(sample_features(inst[:1], label[:1], fc, seeds=[s])[0, :, 0, 0].tolist()) for s in range(40)}
    assert len(seen) > 1


def test_chosen_clusters():
    inst, label = _maps(n=1, h=16, w=20)
    fc = _clusters()
    f = sample_features(inst, label, fc, cluster=3)
    for c, centres in fc.centers.items():
        m = label[0, 0] == c
        if m.any():
            torch.testing.assert_close(f[0][:, m], centres[3 % len(centres)][:, None].expand(3, int(m.sum())))
    f2 = sample_features(inst, label, fc, cluster={1: 2}, seeds=[9])
    assert torch.equal(f2[0][:, label[0, 0] == 1], fc.centers[1][2][:, None].expand(3, int((label == 1).sum())))
    with pytest.raises(ValueError, match="class 2 has 2 cluster"):
        sample_features(inst, label, fc, cluster={2: 5})
    with pytest.raises(ValueError, match="class 9 has no clusters"):
        sample_features(inst, label, fc, cluster={9: 0})
    assert parse_cluster_spec("26=3,24=1") == {26: 3, 24: 1} and parse_cluster_spec("4") == 4
    with pytest.raises(ValueError, match="class=index"):
        parse_cluster_spec("a=b")


@pytest.mark.parametrize("spec", ["3,4", "x", "26=3,24"])
def test_a_bad_cluster_spec_names_the_option_the_value_and_the_forms(spec):
    # int("3,4") used to escape as a bare ValueError (a traceback that never names --cluster)
    from pix2pixhd.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        parse_cluster_spec(spec)
    msg = str(e.value)
    assert f"--cluster {spec!r}" in msg and "(e.g. 3)" in msg and "(e.g. 26=3,24=1)" in msg


def test_clusters_of_another_feat_num_name_the_file_and_the_command(tmp_path):
    from pix2pixhd.errors import ConfigError
    path = FeatureClusters({0: torch.zeros(2, 3)}, 3, 2).save(tmp_path / "run" / CLUSTERS_FILE)
    cfg = TrainConfig(label_nc=5, ngf=4, n_downsample_global=2, instance_feat=True, feat_num=4).resolved()
    with pytest.raises(ConfigError) as e:
        FeatureSource(cfg, "sample", clusters=FeatureClusters.load(path.parent))
    msg = str(e.value)
    assert f"{path} holds 3-d features but the checkpoint's feat_num is 4" in msg
    assert f"`python -m pix2pixhd.features encode --checkpoint {path.parent}`" in msg
    other = FeatureClusters({0: torch.zeros(2, 3)}, 3, 2).save(tmp_path / "elsewhere.pt")   # encode --out
    with pytest.raises(ConfigError, match=f"encode --checkpoint CHECKPOINT --out {other}`"):
        FeatureSource(cfg, "sample", clusters=FeatureClusters.load(other))


def test_the_docs_name_the_seed_sampling_draws_from():
    """docs/features.md used to name ``features.image_seed(seed, file name)``, which nothing
    called; the engine seeds every row with ``synthesis.sample_seed(seed, relative path, sample)``."""
    import inspect

    import pix2pixhd.engine as engine
    import pix2pixhd.features as features
    doc = (Path(__file__).parents[1] / "docs" / "features.md").read_text()
    assert "image_seed" not in doc and "sample_seed(seed, relative path, k)" in doc
    assert not hasattr(features, "image_seed")
    assert "sample_seed(job.seed, " in inspect.getsource(engine)


def test_feature_maps_keep_the_rounding_of_the_resize_they_were_made_at(tmp_path):
    """scale_width truncates the height: a 1000x501 source at the global stage's width 512 is
    512x256, so precompute writes 1024x512, not the 1024x513.02 of the exact ratio. The loader
    used to refuse it ("resize them to one size"); it must replay that rounding, and still refuse
    maps of another aspect ratio."""
    from pix2pixhd.data import DatasetError, create_dataset
    from pix2pixhd.data.dataset import _size_mismatch
    from pix2pixhd.data.transforms import resized_size

    def fits(src, feat, multiple=32):
        return _size_mismatch({"label": src, "image": src, "feat": feat}, multiple) is None

    assert fits((1000, 501), (1024, 512))
    for w, h in [(1000, 501), (999, 500), (640, 481), (1237, 411), (700, 1001), (2048, 1024)]:
        for load, k in [(512, 2), (256, 4), (1024, 2), (512, 1)]:     # precompute: k x E's grid
            a, b = resized_size(w, h, "scale_width", load, 16)
            assert fits((w, h), (k * a, k * b)), (w, h, load, k)
    for src, feat in [((1000, 501), (1024, 520)),    # taller: a truncation never rounds up
                      ((1000, 750), (1024, 512)),    # another image's aspect ratio
                      ((1000, 501), (512, 1024)),    # transposed
                      ((64, 32), (100, 64))]:
        assert not fits(src, feat), (src, feat)

    # through the loader: a 200x101 scene whose global stage ran at width 64 (64x32), x2
    for d in ("train_label", "train_img", "train_feat"):
        (tmp_path / d).mkdir()
    Image.fromarray(np.full((101, 200), 2, np.uint8)).save(tmp_path / "train_label/a.png")
    Image.new("RGB", (200, 101), (9, 9, 9)).save(tmp_path / "train_img/a.png")
    Image.new("RGB", (128, 64), (10, 20, 30)).save(tmp_path / "train_feat/a.png")
    opts = dict(label_nc=5, no_instance=True, load_features=True, resize_or_crop="scale_width",
                loadSize=128, required_multiple=32)
    s = create_dataset(tmp_path, **opts)[0]
    assert s["feat"].shape == (3, 64, 128) and s["label"].shape == (1, 64, 128)
    assert s["feat"][:, 0, 0].tolist() == [10, 20, 30]
    Image.new("RGB", (128, 96)).save(tmp_path / "train_feat/a.png")      # not made from this source
    with pytest.raises(DatasetError, match=r"feat 128x96\); the feature map train_feat/a.png does not "
                                           r"have its source's aspect ratio.*features precompute"):
        create_dataset(tmp_path, **opts, validate="off")[0]


# ---- the trainer's encoder paths ----------------------------------------------------------------
def test_load_features_step_feeds_g_only(tmp_path):
    from pix2pixhd.trainer import Trainer
    tr = Trainer(tiny_cfg(tmp_path, instance_feat=True, load_features=True))
    assert tr.E is None  # the features come from disk
    assert tr.G.model[1].in_channels == 5 + 1 + 3 and tr.D.scale0_layer0[0].in_channels == 5 + 1 + 3
    batch = fake_batch()
    with pytest.raises(ValueError, match="precompute"):
        tr.train_step(batch)
    batch["feat"] = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    seen = {}
    tr.G.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].detach().clone()))
    tr.train_step(batch)
    torch.testing.assert_close(seen["x"][:, -3:], batch["feat"].float() / 127.5 - 1)


# ---- end to end: train with E, encode, synthesize with features, precompute, --load_features -----
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("sklearn")
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    from pix2pixhd.trainer import Trainer
    root = tmp_path_factory.mktemp("feat")
    generate(root / "streets", n_train=6, n_test=2, width=64, height=32, seed=0)
    cfg = TrainConfig(name="e", checkpoints_dir=str(root / "ck"), dataroot=str(root / "streets"),
                      label_nc=LABEL_NC, resize_or_crop="none", instance_feat=True, nef=4,
                      n_downsample_E=4, ngf=4, n_downsample_global=2, n_blocks_global=1, ndf=4,
                      n_layers_D=2, no_vgg_loss=True, no_tensorboard=True, no_html=True, no_progress=True,
                      device="cpu", nThreads=0, batchSize=2, niter=1, niter_decay=0, max_steps=3,
                      n_clusters=3, print_freq=100, display_freq=1000, validate="off").resolved()
    Trainer(cfg).fit()
    return root, cfg


def test_encode_command_saves_clusters_from_the_training_set(trained, capsys):
    from pix2pixhd.features import main
    root, cfg = trained
    ck = root / "ck" / "e"
    assert main(["encode", "--checkpoint", str(ck), "--device", "cpu"]) == 0
    assert "instances kept" in capsys.readouterr().out
    fc = FeatureClusters.load(ck)
    assert fc.feat_num == 3 and fc.n_clusters == 3 and fc.global_step == 3
    # road, sidewalk, building, sky cover far more than 1/64 of every scene: each has centres
    assert {1, 2, 3, 4} <= set(fc.centers)
    assert all(1 <= v.shape[0] <= 3 and v.shape[1] == 3 for v in fc.centers.values())
    assert all(v.abs().max() <= 1 for v in fc.centers.values())  # E ends in tanh
    raw = torch.load(ck / CLUSTERS_FILE, weights_only=True)["features"]
    assert sum(v.shape[0] for v in raw.values()) > 6 * 4  # one row per instance per image


def test_synthesis_with_features(trained, tmp_path):
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.synthesis import Synthesizer, load_generator
    root, cfg = trained
    ck = root / "ck" / "e"
    if not (ck / CLUSTERS_FILE).is_file():
        from pix2pixhd.features import encode_and_cluster
        encode_and_cluster(ck)
    fc = FeatureClusters.load(ck)
    g, cfg = load_generator(ck)
    with pytest.raises(ValueError, match="feature_mode"):
        Synthesizer(g, cfg)
    lab = torch.from_numpy(np.asarray(Image.open(root / "streets/test_label/test_00000.png")).astype(np.int64))[None, None]
    ins = torch.from_numpy(np.asarray(Image.open(root / "streets/test_inst/test_00000.png")).astype(np.int64))[None, None]
    outs = {}
    for k in range(2):
        src = FeatureSource(cfg, "cluster", clusters=fc, cluster=k)
        outs[k] = Synthesizer(g, cfg, features=src)(lab, ins).float()
    assert torch.equal(outs[0], Synthesizer(g, cfg, features=FeatureSource(cfg, "cluster", clusters=fc, cluster=0))(lab, ins).float())
    d = (outs[0] - outs[1]).abs()
    print(f"|cluster 0 - cluster 1|: mean {d.mean():.2f}, max {d.max():.0f} grey levels, "
          f"{(d > 0).float().mean():.0%} of values differ")
    # different clusters, measurably different photos (the same cluster: exactly equal, above)
    assert d.mean() > 0.5 and (d > 0).float().mean() > 0.2

    # The command: sampled (seeded), chosen cluster, encoded real photos
    runs = {}
    for name, extra in (("s1", []), ("s2", []), ("s3", ["--seed", "1"]), ("c", ["--cluster", "1"]),
                        ("e", ["--use_encoded_image", "--real", str(root / "streets/test_img")])):
        out = tmp_path / name
        assert synthesize_main(["--checkpoint", str(ck), "--input", str(root / "streets/test_label"),
                                "--inst", str(root / "streets/test_inst"), "--out", str(out),
                                "--device", "cpu", "--no_progress", "--batch_size", "1" if name == "s2" else "2"]
                               + extra) == 0
        runs[name] = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "test_img").glob("*.png"))]).astype(float)
        assert runs[name].shape == (2, 32, 64, 3)
    # a rerun with another batch size samples the same clusters: equal up to the CPU convolutions'
    # batch-dependent rounding (at most 1 grey level), far below another seed's difference
    assert np.abs(runs["s1"] - runs["s2"]).max() <= 1
    assert np.abs(runs["s1"] - runs["s3"]).mean() > 0.5  # another seed, other clusters
    assert np.abs(runs["c"] - runs["e"]).mean() > 0.5


def test_precompute_then_load_features_training(trained, tmp_path):
    from pix2pixhd.data import create_dataset
    from pix2pixhd.features import main
    from pix2pixhd.trainer import Trainer
    root, cfg = trained
    ck = root / "ck" / "e"
    out = tmp_path / "train_feat"
    assert main(["precompute", "--checkpoint", str(ck), "--device", "cpu", "--out_dir", str(out)]) == 0
    files = sorted(out.glob("*.png"))
    assert [p.name for p in files] == sorted(p.name for p in (root / "streets/train_label").glob("*.png"))
    feat = np.asarray(Image.open(files[0]))
    assert feat.shape == (64, 128, 3)  # x2 the size E ran at
    # x2 nearest: each 2x2 block is one value, and values are constant within (upsampled) instances
    assert np.array_equal(feat[::2, ::2], feat[1::2, 1::2])
    inst = np.asarray(Image.open(root / "streets/train_inst" / files[0].name)).astype(np.int64)
    up = inst.repeat(2, 0).repeat(2, 1)
    for i in np.unique(up):
        vals = feat[up == i]
        assert (vals == vals[0]).all()

    # The next stage reads them with --load_features (here at the same 64x32, crop by the pipeline)
    data = tmp_path / "next"
    data.mkdir()
    for sub in ("train_label", "train_inst", "train_img"):
        (data / sub).symlink_to(root / "streets" / sub)
    (data / "train_feat").symlink_to(out)
    ds = create_dataset(data, "train", label_nc=cfg.label_nc, load_features=True, resize_or_crop="scale_width",
                        loadSize=128, required_multiple=4, no_flip=True, validate="off")
    item = ds[0]
    assert item["feat"].shape == (3, 64, 128)
    nxt = TrainConfig.from_dict({**cfg.to_dict(), "load_features": True, "checkpoints_dir": str(tmp_path / "ck2"),
                         "load_pretrain": str(ck)}).resolved()
    tr = Trainer(nxt)
    assert tr.E is None
    batch = {k: (v[None] if torch.is_tensor(v) else [v]) for k, v in item.items()}
    losses = tr.train_step(batch)
    assert all(torch.isfinite(v) for v in losses.values())

    # That run has no E: encoding and clusters come from the run it loaded, whose E made the maps
    tr.save("latest")
    from pix2pixhd.features import encode_and_cluster, load_encoder
    if not (ck / CLUSTERS_FILE).is_file():
        encode_and_cluster(ck)
    e, e_cfg, _ = load_encoder(tmp_path / "ck2" / "e")
    assert not e_cfg.load_features and e_cfg.checkpoints_dir == cfg.checkpoints_dir
    src = FeatureSource.from_checkpoint(tmp_path / "ck2" / "e", nxt, "sample")
    assert src.clusters.global_step == FeatureClusters.load(ck).global_step


def test_label_feat_regions_are_the_label_map(tmp_path, capsys):
    from pix2pixhd.features import encode_features
    from pix2pixhd.networks import Encoder
    torch.manual_seed(0)
    inst, label = _maps(n=2, h=16, w=16)
    batch = {"label": label, "inst": inst, "image": torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)}
    e = Encoder(3, 3, ngf=4, n_downsampling=2)
    rows = encode_features(e, [batch], label_feat=True)
    # one row per (image, class present), not per instance
    assert sum(len(v) for v in rows.values()) == sum(len(label[b].unique()) for b in range(2))
    assert sum(len(v) for v in encode_features(e, [batch]).values()) == sum(len(inst[b].unique()) for b in range(2))
    cfg = TrainConfig(label_feat=True, feat_num=3).resolved()
    fc = _clusters()
    src = FeatureSource(cfg, "sample", clusters=fc)
    f = src(label, inst, seeds=[0, 1])
    assert "note: class(es) [0, 7] have no saved clusters" in capsys.readouterr().err
    for b in range(2):
        for c in label[b].unique():  # constant over each class region, across its instances
            vals = f[b][:, label[b, 0] == c]
            assert torch.equal(vals, vals[:, :1].expand_as(vals))
    with pytest.raises(FileNotFoundError, match="pix2pixhd.features encode"):
        FeatureClusters.load(tmp_path)
    with pytest.raises(ValueError, match="needs --cluster"):
        FeatureSource(cfg, "cluster", clusters=fc)


def test_a_class_without_clusters_is_one_note_line_not_a_python_warning(capsys):
    """Synthesis printed a raw ``UserWarning`` and the source line ``feat, choices =
    self.features(...)``."""
    import warnings
    inst, label = _maps(n=2, h=16, w=16)
    fc = _clusters()
    fc.path = Path("run/features_clustered.pt")
    src = FeatureSource(TrainConfig(label_feat=True, feat_num=3).resolved(), "sample", clusters=fc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # any warning raised would fail here
        src(label, inst, seeds=[0, 1])
        src(label, inst, seeds=[2, 3])            # the same classes again: said once
    err = capsys.readouterr().err
    assert err == ("note: class(es) [0, 7] have no saved clusters in run/features_clustered.pt (no instance "
                   "of them was larger than 1/64 of an image when encoding): their feature channels are 0\n"), err


# ---- clusters of another encoder step ---------------------------------------------------------------
def _run_with_clusters(folder: Path, step: int, cluster_step: int, **extra) -> TrainConfig:
    """A run folder (no training: a checkpoint dict with a stand-in E) and its clusters."""
    from pix2pixhd.checkpoint import save_checkpoint
    cfg = TrainConfig(name=folder.name, checkpoints_dir=str(folder.parent), instance_feat=True,
                      feat_num=3, label_nc=9).resolved()
    save_checkpoint({"config": cfg.to_dict(), "global_step": step, "E": {"w": torch.zeros(1)}, **extra},
                    folder, "latest", cfg.to_json())
    fc = _clusters()
    fc.global_step = cluster_step
    fc.save(folder / CLUSTERS_FILE)
    return cfg


@pytest.mark.parametrize("step, cluster_step, imported, noted", [
    (7, 7, False, False), (7, 3, False, True), (0, -1, True, False), (5, -1, True, True),
    (7, -1, False, True)],
    ids=["same step", "trained after encode", "imported as it was", "imported then trained",
         "no step recorded"])
def test_clusters_of_another_encoder_step_are_noted(tmp_path, capsys, step, cluster_step, imported, noted):
    """features_clustered.pt records the step of the E that made it; it was never compared with
    the checkpoint's, so clusters of another encoder were used silently."""
    run = tmp_path / "ck" / "r"
    cfg = _run_with_clusters(run, step, cluster_step,
                             **({"imported_from": "/nvidia/checkpoints/r"} if imported else {}))
    src = FeatureSource.from_checkpoint(run, cfg, "sample")
    assert src.clusters.global_step == cluster_step
    err = capsys.readouterr().err
    if not noted:
        assert err == "", err
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"note: {run / CLUSTERS_FILE} "), err
    assert f"at step {step}" in err and f"re-cluster with `python -m pix2pixhd.features encode --checkpoint {run}`" in err
    if cluster_step >= 0:
        assert f"clustered from the encoder at step {cluster_step}" in err, err
    else:
        assert ("imported from NVIDIA's run" if imported else "record no encoder step") in err, err

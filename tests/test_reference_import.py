"""Importing a run folder of NVIDIA's pix2pixHD (``python -m pix2pixhd.import_reference``): its
options from opt.txt, its weights, its position from iter.txt, its feature clusters; the run
synthesizes what the reference's G computes and continues its training (at the learning rate of its
epoch, where the reference's --continue_train restarted at --lr)."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pix2pixhd import GlobalGenerator, MultiscaleDiscriminator
from pix2pixhd.checkpoint import load_checkpoint
from pix2pixhd.cli import train_main
from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd.import_reference import import_reference_run, main, read_reference_clusters
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from pix2pixhd.encoding import encode_input
from pix2pixhd.errors import MissingInputError, RunExistsError
from pix2pixhd.synthesis import load_generator
from pix2pixhd.trainer import lr_at_epoch
from tests.file_state import file_state as _file_state

# as NVIDIA's base_options writes it: sorted "name: value" lines between two rulers
OPT_TXT = """------------ Options -------------
batchSize: 2
checkpoints_dir: /data/nvidia/checkpoints
continue_train: False
dataroot: /data/nvidia/cityscapes
fineSize: 32
fp16: False
gpu_ids: [0, 1]
label_nc: {label_nc}
lr: 0.0004
model: pix2pixHD
n_blocks_global: 1
n_downsample_global: 2
n_layers_D: 2
name: city_tiny
ndf: 4
netG: global
ngf: 4
niter: 2
niter_decay: 4
no_instance: False
no_vgg_loss: True
num_D: 2
resize_or_crop: none
-------------- End ----------------
"""


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=4, n_test=2, width=64, height=32, seed=0)
    return root


def _reference_run(folder, with_d=True):
    """A run folder as NVIDIA's code leaves it (its networks' state_dicts have our keys)."""
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    G = GlobalGenerator(LABEL_NC + 1, 3, ngf=4, n_downsampling=2, n_blocks=1)
    D = MultiscaleDiscriminator(LABEL_NC + 1 + 3, ndf=4, n_layers=2, num_D=2)
    torch.save({"module." + k: v for k, v in G.state_dict().items()}, folder / "latest_net_G.pth")
    if with_d:
        torch.save(D.state_dict(), folder / "latest_net_D.pth")
    (folder / "opt.txt").write_text(OPT_TXT.format(label_nc=LABEL_NC))
    # what NVIDIA's train.py writes: np.savetxt(path, (epoch, epoch_iter), delimiter=',', fmt='%d')
    np.savetxt(folder / "iter.txt", (4, 2), delimiter=",", fmt="%d")
    return G, D


def test_import_takes_opt_txt_and_synthesizes_what_the_reference_g_computes(tmp_path):
    G, D = _reference_run(tmp_path / "nvidia" / "city_tiny")
    out = import_reference_run(tmp_path / "nvidia" / "city_tiny",
                               ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours")])
    g, cfg = load_generator(out)
    assert (cfg.label_nc, cfg.ngf, cfg.n_downsample_global, cfg.num_D, cfg.lr, cfg.niter_decay,
            cfg.batchSize, cfg.resize_or_crop, cfg.stage) == (LABEL_NC, 4, 2, 2, 0.0004, 4, 2, "none", "global")
    assert cfg.dataroot == "/data/nvidia/cityscapes"   # opt.txt's, as written (--resume says if it is gone)
    label = torch.randint(0, LABEL_NC, (1, 1, 32, 32), dtype=torch.uint8)
    inst = torch.randint(0, 3, (1, 1, 32, 32), dtype=torch.int32)
    x = encode_input(label, inst, label_nc=LABEL_NC)
    with torch.no_grad():
        torch.testing.assert_close(g(x), G.eval()(x), rtol=0, atol=0)
    ck = load_checkpoint(out)
    assert (ck["epoch"], ck["samples_in_epoch"], ck["iter_in_epoch"]) == (4, 2, 1)
    assert ck["environment"]["torch"] == torch.__version__ and "argv" in ck["environment"]   # provenance
    assert all(torch.equal(ck["D"][k], v) for k, v in D.state_dict().items())
    # the folder is a run now: importing into it again is refused, not overwritten
    with pytest.raises(RunExistsError):
        import_reference_run(tmp_path / "nvidia" / "city_tiny",
                             ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours")])


def test_imported_run_continues_like_continue_train(tmp_path, streets):
    _reference_run(tmp_path / "nvidia" / "city_tiny", with_d=False)   # a release: G alone
    main([str(tmp_path / "nvidia" / "city_tiny"), "--name", "city",
          "--checkpoints_dir", str(tmp_path), "--ngf", "4"])
    before = load_checkpoint(tmp_path / "city")
    assert before["D"] is None
    train_main(["--resume", "--name", "city", "--checkpoints_dir", str(tmp_path), "--dataroot",
                str(streets), "--nThreads", "0", "--no_progress", "--no_tensorboard", "--no_html",
                "--device", "cpu", "--max_steps", "1"])
    after = load_checkpoint(tmp_path / "city")
    # epoch 4 had 2 of its 4 samples done (iter.txt): one step of batch 2 trains the other 2, which
    # ends the epoch (latest.pt at the start of epoch 5)
    assert (after["epoch"], after["samples_in_epoch"], after["global_step"]) == (5, 0, 1)
    assert after["optimizer_G"] is not None and after["D"] is not None
    cfg = load_generator(tmp_path / "city")[1]
    assert after["lr"] == pytest.approx(lr_at_epoch(cfg, 4)) == pytest.approx(0.0003)   # 1 of 4 decay epochs
    assert any(not torch.equal(after["G"][k], v) for k, v in before["G"].items())
    log = (tmp_path / "city" / "loss_log.txt").read_text()
    assert ("the learning rate the schedule gives epoch 4 (0.0003; NVIDIA's --continue_train restarted at "
            "--lr whatever the epoch)") in log, log


def test_an_imported_run_keeps_opt_txts_dataroot_and_resuming_without_it_says_to_pass_dataroot(
        tmp_path, monkeypatch):
    """The dataroot was dropped: --continue_train then said "no dataset in ./datasets/cityscapes ...
    generate data with synthetic_streets --out .../datasets/cityscapes", pointing at writing made-up
    scenes into a folder named after the real dataset."""
    src = tmp_path / "nvidia" / "city_tiny"
    _reference_run(src, with_d=False)
    (src / "opt.txt").write_text((src / "opt.txt").read_text().replace(
        "dataroot: /data/nvidia/cityscapes", "dataroot: ./datasets/cityscapes/"))
    monkeypatch.chdir(tmp_path)                      # not the folder NVIDIA's train.py ran in
    out = import_reference_run(src, ["--name", "city", "--checkpoints_dir", "ck"])
    assert load_generator(out)[1].dataroot == "./datasets/cityscapes/"   # recorded as given
    with pytest.raises(MissingInputError) as e:
        train_main(["--continue_train", "--name", "city", "--checkpoints_dir", "ck", "--nThreads", "0",
                    "--no_progress", "--no_tensorboard", "--no_html", "--device", "cpu", "--max_steps", "1"])
    msg = str(e.value)
    assert "\n" not in msg and "synthetic_streets" not in msg, msg
    assert (f"the run's dataroot ./datasets/cityscapes/ was not found (from {src.resolve()}/opt.txt, relative "
            "to the folder NVIDIA's train.py ran in); pass --dataroot DIR") in msg, msg
    assert not (tmp_path / "datasets").exists()


def test_import_into_its_own_source_folder_is_refused(tmp_path):
    src = tmp_path / "checkpoints" / "city_tiny"
    _reference_run(src)
    before = sorted(p.name for p in src.iterdir())
    for extra in ([], ["--overwrite"]):
        with pytest.raises(Exception, match="itself"):
            import_reference_run(src, ["--name", "city_tiny", "--checkpoints_dir", str(src.parent), *extra])
    assert sorted(p.name for p in src.iterdir()) == before


def test_missing_generator_names_the_file(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(MissingInputError, match=r"latest_net_G\.pth not found"):
        import_reference_run(tmp_path / "run", ["--name", "x", "--checkpoints_dir", str(tmp_path)])


def test_reference_cluster_file_reads_without_running_pickled_code(tmp_path):
    centers = {7: np.random.rand(10, 3), 26: np.random.rand(4, 3)}
    f = tmp_path / "features_clustered_010.npy"
    np.save(f, centers, allow_pickle=True)   # what encode_features.py does
    got = read_reference_clusters(f)
    assert sorted(got) == [7, 26] and all(np.allclose(got[k], centers[k]) for k in got)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil.npy"
    with open(bad, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array({1: Evil()}, dtype=object), fh)
    with pytest.raises(CheckpointMismatchError, match="refusing to load it"):
        read_reference_clusters(bad)
    assert not (tmp_path / "pwned").exists()


# ---- the cluster file encode_features.py wrote; an existing target folder -----------------------------
def _reference_feature_run(folder, cluster_counts):
    """A run trained with --instance_feat (G, E, opt.txt's n_clusters 10) and the cluster files
    ``encode_features.py --n_clusters K`` writes for each K in ``cluster_counts``."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.models import build_encoder, build_generator
    cfg = TrainConfig(label_nc=LABEL_NC, ngf=4, n_downsample_global=2, n_blocks_global=1, instance_feat=True,
                      nef=4, n_downsample_E=2).resolved()
    folder.mkdir(parents=True)
    torch.save(build_generator(cfg).state_dict(), folder / "latest_net_G.pth")
    torch.save(build_encoder(cfg).state_dict(), folder / "latest_net_E.pth")
    opts = "instance_feat: True\nn_clusters: 10\nnef: 4\nn_downsample_E: 2\n"
    (folder / "opt.txt").write_text(OPT_TXT.format(label_nc=LABEL_NC).replace("ndf: 4\n", "ndf: 4\n" + opts))
    for k in cluster_counts:
        np.save(folder / f"features_clustered_{k:03d}.npy",
                {c: np.full((k, 3), c / 10) for c in (1, 2)}, allow_pickle=True)


@pytest.mark.parametrize("counts, taken", [((20,), 20), ((10, 20), 10)])
def test_the_cluster_file_that_is_there_is_imported_and_named(tmp_path, capsys, counts, taken):
    from pix2pixhd.features import FeatureClusters
    _reference_feature_run(tmp_path / "nv", counts)
    out = import_reference_run(tmp_path / "nv", ["--name", "f", "--checkpoints_dir", str(tmp_path / "ours")])
    fc = FeatureClusters.load(out)   # features_clustered_020.npy used to be left behind silently
    assert fc.n_clusters == taken and fc.centers[2].shape == (taken, 3)
    said = capsys.readouterr().out
    assert f"clusters from features_clustered_{taken:03d}.npy ({taken} per class" in said
    assert ("the run's n_clusters is 10" in said) == (taken != 10)


def test_several_cluster_files_none_for_n_clusters_are_refused_by_name(tmp_path):
    from pix2pixhd.errors import ConfigError
    _reference_feature_run(tmp_path / "nv", (20, 30))
    argv = ["--name", "f", "--checkpoints_dir", str(tmp_path / "ours")]
    with pytest.raises(ConfigError, match=r"2 cluster files \(features_clustered_020\.npy, features_clustered_030"
                                          r"\.npy\) and none for n_clusters 10 .*give --n_clusters N"):
        import_reference_run(tmp_path / "nv", argv)
    assert not (tmp_path / "ours" / "f").exists()   # refused before anything is written
    from pix2pixhd.features import FeatureClusters
    assert FeatureClusters.load(import_reference_run(tmp_path / "nv", argv + ["--n_clusters", "30"])).n_clusters == 30


def test_an_existing_target_gives_the_fixes_import_takes(tmp_path):
    from pix2pixhd.errors import ConfigError
    _reference_run(tmp_path / "nv")
    ours = tmp_path / "ours"
    argv = ["--name", "city", "--checkpoints_dir", str(ours)]
    import_reference_run(tmp_path / "nv", argv)
    before = _file_state(ours / "city" / "latest.pt")
    with pytest.raises(RunExistsError) as e:
        import_reference_run(tmp_path / "nv", argv)
    msg = str(e.value)
    assert "add --resume" not in msg   # train_hd.py's advice: import does not continue a run
    assert "choose a --name other than 'city'" in msg and "add --overwrite" in msg
    assert f"python train_hd.py --resume --name city --checkpoints_dir {ours}" in msg
    # --resume used to be taken, and wrote the import over the run there
    for flag in ("--resume", "--continue_train", "--auto_resume"):
        with pytest.raises(ConfigError, match="an import writes a new run and continues none"):
            import_reference_run(tmp_path / "nv", argv + [flag])
    assert _file_state(ours / "city" / "latest.pt") == before
    assert import_reference_run(tmp_path / "nv", argv + ["--overwrite"]) == ours / "city"


def test_cluster_centres_of_another_width_are_refused_at_import(tmp_path):
    """opt.txt's feat_num was stamped on the clusters whatever their width: synthesis then failed
    with 'expanded size of the tensor (3) must match (4)'."""
    from pix2pixhd.errors import UserError
    _reference_feature_run(tmp_path / "nv", ())
    bad = tmp_path / "nv" / "features_clustered_010.npy"
    np.save(bad, {c: np.zeros((4, 4)) for c in (1, 2)}, allow_pickle=True)
    (tmp_path / "nv" / "opt.txt").write_text((tmp_path / "nv" / "opt.txt").read_text().replace(
        "ndf: 4\n", "ndf: 4\nfeat_num: 3\n"))
    argv = ["--name", "f", "--checkpoints_dir", str(tmp_path / "ours")]
    with pytest.raises(UserError, match=f"{bad} holds cluster centres 4 wide, but opt.txt's feat_num is 3"):
        import_reference_run(tmp_path / "nv", argv)
    assert not (tmp_path / "ours" / "f").exists()   # refused before anything is written


def test_import_reports_the_centres_the_file_holds_and_records_its_encoder(tmp_path, capsys):
    """features_clustered_010.npy holding 4 centres per class was reported as '(10 per class'."""
    from pix2pixhd.features import FeatureClusters, stale_clusters_note
    _reference_feature_run(tmp_path / "nv", ())
    np.save(tmp_path / "nv" / "features_clustered_010.npy", {c: np.zeros((4, 3)) for c in (1, 2)},
            allow_pickle=True)
    out = import_reference_run(tmp_path / "nv", ["--name", "f", "--checkpoints_dir", str(tmp_path / "ours")])
    assert "clusters from features_clustered_010.npy (4 per class, made with n_clusters 10)" in capsys.readouterr().out
    fc = FeatureClusters.load(out)
    assert fc.encoder["sha256"] and stale_clusters_note(fc, out) is None   # the imported E's own


def test_a_global_run_whose_opt_txt_records_niter_fix_global_imports(tmp_path):
    """NVIDIA's opt.txt records niter_fix_global for every run, and only netG local reads it: an
    imported global run must not be refused for it as if the user had given it."""
    _reference_run(tmp_path / "nv")
    opt = tmp_path / "nv" / "opt.txt"
    opt.write_text(opt.read_text().replace("ngf: 4\n", "ngf: 4\nniter_fix_global: 20\n"))
    out = import_reference_run(tmp_path / "nv", ["--name", "g", "--checkpoints_dir", str(tmp_path / "ours")])
    _, cfg = load_generator(out)
    assert (cfg.stage, cfg.niter_fix_global) == ("global", 0)

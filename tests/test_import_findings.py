"""``python -m pix2pixhd.import_reference`` on the folders a user migrating from NVIDIA's pix2pixHD
has: an opt.txt rewritten by encode_features.py, options the weights contradict, damaged files,
cluster files of other runs, numbered epochs, and the command line's own errors and notes."""
import json
import re

import numpy as np
import pytest
import torch

from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError, UserError
from pix2pixhd.import_reference import import_reference_run, main
from pix2pixhd.models import build_discriminator, build_encoder, build_generator
from pix2pixhd.networks import MultiscaleDiscriminator

# what the tiny runs are trained with (the weights); opt.txt may say otherwise
TRAINED = dict(netG="local", ngf=4, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=1,
               n_blocks_local=1, label_nc=5, no_instance=False, instance_feat=True, label_feat=False,
               feat_num=3, nef=4, n_downsample_E=1, num_D=3, n_layers_D=1, ndf=4, norm="instance",
               niter=4, niter_decay=4, niter_fix_global=5, no_vgg_loss=True, no_ganFeat_loss=False,
               input_nc=3, output_nc=3, batchSize=1, loadSize=64, fineSize=32, resize_or_crop="scale_width",
               n_clusters=10, lr=0.0002)
# what NVIDIA's encode_features.py --name NAME --netG local --ngf 4 ... writes over it
REWRITTEN = dict(instance_feat=False, num_D=2, niter=100, niter_decay=100, niter_fix_global=0, no_vgg_loss=False)


def _nv(folder, epochs=(), clusters=True, opt=True, **over):
    """A run folder as NVIDIA's train.py leaves it (weights of TRAINED; opt.txt: TRAINED with
    ``over``; numbered ``epochs`` with encoders that differ from latest's)."""
    folder.mkdir(parents=True)
    cfg = TrainConfig(**{k: v for k, v in TRAINED.items() if k not in ("n_clusters",)}).resolved()
    for i, label in enumerate(["latest", *map(str, epochs)]):
        torch.manual_seed(i)
        for key, net in (("G", build_generator(cfg)), ("D", build_discriminator(cfg)), ("E", build_encoder(cfg))):
            torch.save(net.state_dict(), folder / f"{label}_net_{key}.pth")
    if opt:
        opts = {**TRAINED, **over, "name": folder.name, "checkpoints_dir": "./checkpoints", "model": "pix2pixHD",
                "dataroot": "./datasets/streets/", "gpu_ids": [0], "fp16": over.get("fp16", False)}
        (folder / "opt.txt").write_text("------------ Options -------------\n" + "".join(
            f"{k}: {v}\n" for k, v in sorted(opts.items())) + "-------------- End ----------------\n")
    np.savetxt(folder / "iter.txt", (3, 4), delimiter=",", fmt="%d")
    if clusters:
        np.save(folder / "features_clustered_010.npy", {c: np.full((2, 3), c / 10) for c in range(4)},
                allow_pickle=True)
    return folder


def _refused(src, argv, kind=UserError) -> str:
    with pytest.raises(kind) as e:
        import_reference_run(src, argv)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ---- 1. an opt.txt rewritten by encode_features.py ---------------------------------------------------
def test_an_opt_txt_rewritten_by_encode_features_is_detected_and_the_training_flags_are_asked_for(tmp_path, capsys):
    """It was imported with the script's options: a shape error, then num_D's, then silently
    niter_fix_global 0, niter 100/100 and the VGG loss on."""
    src = _nv(tmp_path / "nv" / "city", **REWRITTEN)
    ours = ["--name", "city", "--checkpoints_dir", str(tmp_path / "ours")]
    msg = _refused(src, ours, ConfigError)
    assert msg.startswith(f"{src}/opt.txt was probably rewritten by NVIDIA's encode_features.py"), msg
    assert "latest_net_E.pth, features_clustered_010.npy" in msg, msg
    assert "opt.txt says num_D 2, but latest_net_D.pth holds 3 scales" in msg, msg
    assert ("pass the training's options to import_reference as trained: --num_D 3 --instance_feat (or "
            "--label_feat, as trained) --niter N --niter_decay N --niter_fix_global N --no_vgg_loss true|false") in msg
    # the architecture alone is not enough: the training-only options cannot come from the weights
    msg = _refused(src, ours + ["--instance_feat", "--num_D", "3"], ConfigError)
    assert "--niter N --niter_decay N --niter_fix_global N --no_vgg_loss true|false" in msg, msg
    assert "opt.txt's niter 100, niter_decay 100, niter_fix_global 0, no_vgg_loss False are the script's" in msg
    assert not (tmp_path / "ours").exists()
    capsys.readouterr()
    out = import_reference_run(src, ours + ["--instance_feat", "--num_D", "3", "--niter", "4", "--niter_decay", "4",
                                            "--niter_fix_global", "5", "--no_vgg_loss"])
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["instance_feat"], cfg["num_D"], cfg["niter"], cfg["niter_decay"], cfg["niter_fix_global"],
            cfg["no_vgg_loss"]) == (True, 3, 4, 4, 5, True)
    assert f"note: {src}/opt.txt looks rewritten by NVIDIA's encode_features.py: lr 0.0002" in capsys.readouterr().out


# ---- 6. options the weights contradict -------------------------------------------------------------
@pytest.mark.parametrize("over, said", [
    ({"num_D": 2}, "opt.txt says num_D 2, but latest_net_D.pth holds 3 scales: pass --num_D 3 to import_reference"),
    ({"ngf": 8}, "opt.txt says ngf 8, but latest_net_G.pth implies ngf 4: pass --ngf 4 to import_reference"),
    ({"label_nc": 8}, "opt.txt says label_nc 8, no_instance False, instance_feat True, label_feat False, feat_num 3: "
                      "G's input would be 12 channels (8 label + 1 boundary + 3 feature channels), but "
                      "latest_net_G.pth takes 9: 5 label + 1 boundary + 3 feature channels"),
    # the shapes cannot tell 6 labels without a boundary channel from 5 with one: both are named
    ({"no_instance": True}, "opt.txt says label_nc 5, no_instance True, instance_feat True, label_feat False, "
                            "feat_num 3: G's input would be 8 channels (5 label + 0 boundary + 3 feature channels), "
                            "but latest_net_G.pth takes 9: 6 label + 0 boundary + 3 feature channels or 5 label + 1 "
                            "boundary + 3 feature channels (latest_net_D.pth takes 9: G's condition without the "
                            "features, + 3 image channels): pass one of: --label_nc 6 | --no_instance false"),
])
def test_opt_txt_values_the_weights_contradict_are_named_with_the_fix(tmp_path, over, said):
    src = _nv(tmp_path / "nv", clusters=False, **over)
    msg = _refused(src, ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")], ConfigError)
    assert msg.startswith(f"the weights in {src} do not fit the options: ") and said in msg, msg
    if "label_nc" in over:
        assert msg.endswith("pass --label_nc 5 to import_reference (its options override opt.txt's)"), msg


def test_without_opt_txt_the_error_says_the_defaults_were_assumed(tmp_path):
    src = _nv(tmp_path / "nv", clusters=False, opt=False)
    msg = _refused(src, ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")], ConfigError)
    assert msg.startswith(f"{src} has no opt.txt, so our defaults were assumed, and its weights do not fit them: "
                          "the default netG global was assumed, but latest_net_G.pth is a LocalEnhancer"), msg
    assert "pass --netG local --ngf 4 --n_downsample_global 1 --n_blocks_global 1 --n_blocks_local 1 --num_D 3" in msg


def test_a_discriminator_of_other_scales_names_discriminator_options():
    with pytest.raises(CheckpointMismatchError) as e:
        load_reference_weights(MultiscaleDiscriminator(5, ndf=4, n_layers=1, num_D=2),
                               MultiscaleDiscriminator(5, ndf=4, n_layers=1, num_D=3).state_dict())
    msg = str(e.value)
    assert "the file's discriminator was built with num_D 3 (this discriminator: 2)" in msg, msg
    assert "build the model with --num_D 3" in msg and "n_downsample_global" not in msg, msg


# ---- 3, 11, 12, 16b: dry run, the default name, numbered epochs, absolute dataroot -------------------
def test_dry_run_writes_nothing_and_prints_the_options(tmp_path, capsys):
    src = _nv(tmp_path / "nv" / "city")
    main([str(src), "--checkpoints_dir", str(tmp_path / "ours"), "--dry_run"])
    said = capsys.readouterr().out
    assert not (tmp_path / "ours").exists()
    assert "num_D: 3" in said and f"dry run: would import {src} into {tmp_path / 'ours' / 'city'}" in said, said
    assert f"would write {tmp_path / 'ours' / 'city' / 'config.json'}" in said and "; nothing written" in said


def test_the_default_name_is_the_source_folders_and_other_epochs_are_named(tmp_path, capsys):
    src = _nv(tmp_path / "nv" / "label2city_512p", epochs=(10, 20))
    out = import_reference_run(src, ["--checkpoints_dir", str(tmp_path / "ours")])
    assert out == tmp_path / "ours" / "label2city_512p"
    said = capsys.readouterr().out
    assert (f"note: {src} also holds epochs 10, 20 (N_net_G.pth), not imported (a run of ours holds one of them): "
            f"import one as a run of its own with python -m pix2pixhd.import_reference {src} --which_epoch 20 "
            "--name label2city_512p_20") in said, said
    # later, asking the imported run for one of them says how to import it
    from pix2pixhd.checkpoint import CheckpointNotFoundError, load_checkpoint
    with pytest.raises(CheckpointNotFoundError, match=(
            rf"no checkpoint .*epoch_0010\.pt; .*: pass --which_epoch latest; this run was imported from "
            rf"{re.escape(str(src))}, which holds 10_net_G\.pth: import that epoch as a run of its own with "
            rf"python -m pix2pixhd\.import_reference {re.escape(str(src))} --which_epoch 10 --name label2city_512p_10")):
        load_checkpoint(out, 10)


def test_a_relative_dataroot_is_stored_absolute_from_the_folder_nvidia_ran_in(tmp_path, monkeypatch):
    src = _nv(tmp_path / "pix2pixHD" / "checkpoints" / "city", clusters=False)
    monkeypatch.chdir(tmp_path)
    out = import_reference_run(src, ["--checkpoints_dir", "ck"])
    stored = json.loads((out / "config.json").read_text())["dataroot"]
    assert stored == str(tmp_path / "pix2pixHD" / "datasets" / "streets")


# ---- 4. the clusters of an epoch that is not latest ------------------------------------------------
def test_clusters_imported_with_an_earlier_epoch_are_kept_as_latests_with_a_note(tmp_path, capsys):
    from pix2pixhd.features import FeatureClusters, stale_clusters_note
    src = _nv(tmp_path / "nv", epochs=(10,))
    out = import_reference_run(src, ["--name", "e10", "--checkpoints_dir", str(tmp_path / "ours")], which_epoch="10")
    said = capsys.readouterr().out
    assert ("note: features_clustered_010.npy records no epoch; NVIDIA's encode_features.py clusters the features "
            "of latest_net_E.pth unless given --which_epoch") in said, said
    assert stale_clusters_note(FeatureClusters.load(out), out) is not None   # synthesis says so too


# ---- 5, 7, 8, 10: damaged files, bad opt.txt values, options as typed, NVIDIA's options -------------
def test_damaged_weights_say_so_with_their_size(tmp_path):
    src = _nv(tmp_path / "nv")
    g = src / "latest_net_G.pth"
    g.write_bytes(g.read_bytes()[:2000])
    msg = _refused(src, ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")])
    assert msg.startswith(f"{g} could not be read as a state_dict: it is truncated or damaged (2000 bytes; "), msg
    assert msg.endswith("copy it again from the run that saved it"), msg
    _nv(tmp_path / "nv2")
    (tmp_path / "nv2" / "latest_net_E.pth").write_bytes(b"")
    assert _refused(tmp_path / "nv2", ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")]) == (
        f"{tmp_path / 'nv2' / 'latest_net_E.pth'} could not be read as a state_dict: it is empty (0 bytes): copy it "
        "again from the run that saved it")


def test_a_bad_opt_txt_value_names_the_file_and_the_flag(tmp_path):
    src = _nv(tmp_path / "nv", norm="group")
    assert _refused(src, ["--name", "x", "--checkpoints_dir", str(tmp_path)], ConfigError) == (
        f"{src}/opt.txt says norm: 'group', which is not a valid value (one of instance, batch): pass --norm "
        "with the value the run was trained with to import_reference")


def test_errors_name_the_options_as_the_user_typed_them(tmp_path):
    src = _nv(tmp_path / "nv")
    argv = ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")]
    msg = _refused(src, argv + ["--stage", "finetune"], ConfigError)
    assert msg.startswith(f"{src}/opt.txt says niter_fix_global 5") and "pass --niter_fix_global 0" in msg, msg
    assert "drop --niter_fix_global" not in msg
    assert _refused(src, argv + ["--continue_train"], ConfigError).startswith("--continue_train: an import writes")


def test_nvidia_only_options_are_explained_and_fp16_is_listed(tmp_path, capsys):
    src = _nv(tmp_path / "nv", fp16=True)
    with pytest.raises(ConfigError, match=r"^--gpu_ids 0 is an option of the reference code .*--device"):
        main([str(src), "--gpu_ids", "0"])
    with pytest.raises(SystemExit):
        main([str(src), "--ngf_x", "3"])
    assert "usage: python -m pix2pixhd.import_reference NVIDIA_RUN" in capsys.readouterr().err
    out = import_reference_run(src, ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")])
    assert json.loads((out / "config.json").read_text())["precision"] == "fp16"
    assert "fp16 (as --precision fp16)" in capsys.readouterr().out.split("from opt.txt:")[1]


# ---- 13. cluster files of another shape or run -------------------------------------------------------
@pytest.mark.parametrize("centers, said", [
    (np.zeros((4, 3)), "holds a float64 array of shape (4, 3), not the {class id: [k, feat_num] array} dict"),
    ({1: np.zeros((2, 3)), 2: np.zeros(3)}, "class 2 holds a 1-d array of shape (3,), not the [k, feat_num] array"),
    ({1: np.zeros((2, 3)), 26: np.zeros((2, 3))}, "holds centres for class 26, but the run has label_nc 5 "
                                                   "(classes 0 to 4): they are another run's"),
    ({}, "holds no cluster centres (an empty dict)"),
])
def test_cluster_files_that_do_not_fit_are_refused_by_what_is_wrong(tmp_path, centers, said):
    src = _nv(tmp_path / "nv", clusters=False)
    f = src / "features_clustered_010.npy"
    np.save(f, centers, allow_pickle=True)
    msg = _refused(src, ["--name", "x", "--checkpoints_dir", str(tmp_path / "ours")])
    assert msg.startswith(f"{f}") and said in msg and msg.count(str(f)) == 1, msg
    assert f"Move features_clustered_010.npy out of {src} to import the run without clusters" in msg, msg
    assert not (tmp_path / "ours").exists()


# ---- 15. the learning rate of a continued run ------------------------------------------------------
def test_the_docstring_says_nvidia_restarted_at_lr():
    doc = " ".join(import_reference_run.__doc__.split())
    assert "as the reference's --continue_train did" not in doc
    assert "its --continue_train restarted at --lr whatever the epoch" in doc


def test_a_lambda_feat_that_weighs_no_loss_is_imported_not_refused(tmp_path, monkeypatch):
    """NVIDIA's run trained with --no_ganFeat_loss --no_vgg_loss --lambda_feat 5: opt.txt's values
    were passed as typed options, and --lambda_feat (which then weighs nothing) was refused as an
    unused option that the user never typed."""
    monkeypatch.setitem(TRAINED, "no_ganFeat_loss", True)   # the weights too (D without features out)
    src = _nv(tmp_path / "nv", lambda_feat=5.0)
    out = import_reference_run(src, ["--checkpoints_dir", str(tmp_path / "ours")])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["no_ganFeat_loss"] and cfg["no_vgg_loss"]

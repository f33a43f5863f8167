"""Tests that kill mutants which survived mutation testing of the Dec 7 changes (the trainer's
BatchNorm D passes, the encoded synthesis's real-photo digests, --bn_running_stats for E, the
optimizer-state check, the repo import's epochs, refusals and option mapping, the cluster file's
dtypes, classes.json's bounds). Each says which mutant it kills."""
import json
import shutil

import numpy as np
import pytest
import torch

from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd.errors import ConfigError
from tests.test_trainer_step import fake_batch, tiny_cfg

REPO_NETG_SAID = "(one of unet_256, unet_128, resnet_9blocks, resnet_6blocks)"


# --- 1. trainer.py _d_real_fake under --norm batch (T11) -----------------------------------------

def test_batch_norm_d_passes_return_real_then_fake(tmp_path):
    """--norm batch runs D twice (fake first, as the reference): the pair returned is still
    (D(x, real), D(x, fake)); swapped, D would be trained to call the photos fake."""
    from pix2pixhd.encoding import encode_input, image_to_float
    from pix2pixhd.trainer import Trainer
    tr = Trainer(tiny_cfg(tmp_path, norm="batch"))
    batch = fake_batch()
    x = encode_input(batch["label"], batch["inst"], label_nc=5)
    real = image_to_float(batch["image"])
    fake = torch.zeros_like(real)
    seen = []
    hook = tr.D.register_forward_hook(lambda m, inp, out: seen.append((inp[0], out)))
    try:
        pred_real, pred_fake = tr._d_real_fake(x, real, fake)
    finally:
        hook.remove()
    by_input = {}
    for inp, out in seen:
        if torch.equal(inp, torch.cat([x, real], 1)):
            by_input["real"] = out
        elif torch.equal(inp, torch.cat([x, fake], 1)):
            by_input["fake"] = out
    assert set(by_input) == {"real", "fake"}, len(seen)
    assert pred_real is by_input["real"], "the first of the pair is not D's output for the real photo"
    assert pred_fake is by_input["fake"], "the second of the pair is not D's output for the fake"


# --- 2. engine.py DatasetSource: the real photo's sha256 in the manifest (E2) ---------------------

def test_an_encoded_dataroot_synthesis_records_each_real_photos_sha256(tmp_path):
    """--dataroot --feature_mode encoded: every ok manifest line records the sha256 of the photo
    E encoded (it has no copy in OUT), which a moved job compares."""
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    from pix2pixhd.models import build_encoder, build_generator
    from pix2pixhd.paths import file_sha256
    from tests.test_synthesis_engine import save_run
    run = tmp_path / "run"
    cfg = save_run(run, label_nc=LABEL_NC, instance_feat=True, feat_num=3, n_downsample_E=2, no_instance=True)
    torch.manual_seed(0)
    save_checkpoint({"G": build_generator(cfg).state_dict(), "E": build_encoder(cfg).state_dict(),
                     "config": cfg.to_dict()}, run, "latest", cfg.to_json())
    root = tmp_path / "data"
    generate(root, n_train=1, n_test=2, width=32, height=16, seed=0)
    out = tmp_path / "out"
    assert synthesize_main(["--checkpoint", str(run), "--dataroot", str(root), "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0", "--feature_mode", "encoded"]) == 0
    lines = [json.loads(s) for s in (out / "manifest.jsonl").read_text().splitlines()]
    ok = [rec for rec in lines if rec.get("status") == "ok"]
    assert len(ok) == 2, lines
    photos = {p.stem: file_sha256(p) for p in (root / "test_img").iterdir()}
    for rec in ok:
        stem = rec["output"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        assert isinstance(rec.get("real_sha256"), str), f"no real_sha256 in {rec}"
        assert rec["real_sha256"] == photos[stem], rec


# --- 3. cli.py: --bn_running_stats reaches E (F3) ------------------------------------------------

@pytest.mark.parametrize("flag, want", [(True, [False]), (False, [True])], ids=["bn_running_stats", "default"])
def test_bn_running_stats_reaches_the_encoder(tmp_path, monkeypatch, flag, want):
    """synthesize.py --feature_mode encoded --bn_running_stats: E runs on its running statistics
    (test_batch_stats False), as G does; without it, on each image's own."""
    from PIL import Image

    from pix2pixhd import features
    from pix2pixhd.cli import synthesize_main
    run, _ = _bn_run(tmp_path / "run")
    (tmp_path / "maps").mkdir()
    (tmp_path / "real").mkdir()
    Image.fromarray((np.arange(16 * 24) % 5).reshape(16, 24).astype(np.uint8)).save(tmp_path / "maps" / "a.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(
        tmp_path / "real" / "a.png")
    got, real_load = [], features.load_encoder

    def spy(*args, **kwargs):
        got.append(kwargs.get("test_batch_stats"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(features, "load_encoder", spy)
    args = ["--checkpoint", str(run), "--input", str(tmp_path / "maps"), "--out", str(tmp_path / "out"),
            "--device", "cpu", "--no_progress", "--workers", "0", "--feature_mode", "encoded",
            "--real", str(tmp_path / "real")]
    assert synthesize_main(args + (["--bn_running_stats"] if flag else [])) == 0
    assert got == want, f"load_encoder got test_batch_stats {got}"


def _bn_run(folder):
    """tests/test_encoder_batch_norm.py's bn_run (a fixture cannot be called directly)."""
    from tests.test_encoder_batch_norm import save_bn_run
    folder.mkdir(parents=True, exist_ok=True)
    return save_bn_run(folder)


# --- 4. trainer.py check_optimizer_state: every parameter, optimizer_D named (T5, T8) ------------

@pytest.mark.fault(cls="damaged run folder", case="latest.pt whose optimizer_D's last parameter's moment does not "
                                              "fit it: --resume refuses it naming optimizer_D")
def test_a_damaged_last_moment_of_optimizer_d_is_refused_naming_it(tmp_path):
    from pix2pixhd.checkpoint import CheckpointError, checkpoint_path
    from pix2pixhd.trainer import Trainer
    tr = Trainer(tiny_cfg(tmp_path, name="r"))
    tr.train_step(fake_batch(h=32, w=32))
    tr.save("latest")
    path = checkpoint_path(tmp_path / "r", "latest")
    ck = torch.load(path, weights_only=True)
    state = ck["optimizer_D"]["state"]
    last = max(state)
    assert last > 0
    state[last]["exp_avg"] = torch.zeros(3)
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match=rf"{path}: its optimizer_D does not fit this run's parameters "
                                              rf"\(group 0 parameter {last} .*exp_avg is a torch.float32 tensor "
                                              r"of shape \(3,\)"):
        Trainer(tiny_cfg(tmp_path, name="r", resume=True))


# --- 5. import_reference.py import_repo_run's epoch (I7, I8, I9) ---------------------------------

def _import_repo(src, ck, *extra):
    from pix2pixhd.checkpoint import load_checkpoint
    from pix2pixhd.import_reference import main as import_main
    assert import_main([str(src), "--model", "pix2pix", "--name", "x", "--checkpoints_dir", str(ck), *extra]) == 0
    return load_checkpoint(ck / "x")


def test_a_repo_latest_equal_to_several_epochs_continues_after_the_last(tmp_path):
    """latest_net_G.pth equal to 2_ and 4_net_G.pth: the last of them (4) ended, epoch 5 is next;
    --which_epoch 2 imports epoch 2's end: epoch 3."""
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "repo" / "facades")
    for n in (2, 4):
        for k in ("G", "D"):
            shutil.copyfile(src / f"latest_net_{k}.pth", src / f"{n}_net_{k}.pth")
    assert _import_repo(src, tmp_path / "ck1")["epoch"] == 5
    assert _import_repo(src, tmp_path / "ck2", "--which_epoch", "2")["epoch"] == 3


def test_a_repo_folder_without_numbered_files_starts_at_its_epoch_count(tmp_path):
    """No N_net_G.pth: the repo's train_opt.txt's epoch_count (where its --continue_train
    counted from) is the epoch the import continues at."""
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "repo" / "facades", epoch_count=5)
    assert _import_repo(src, tmp_path / "ck")["epoch"] == 5


# --- 6. the import refuses to write into its own source (I19) ------------------------------------

@pytest.mark.fault(cls="command-line errors", case="import_reference REPO_RUN whose output folder is the source "
                                                "itself (--overwrite): refused, the source kept")
def test_a_repo_import_into_its_own_folder_is_refused(tmp_path):
    from pix2pixhd.import_reference import main as import_main
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "repo" / "facades")
    with pytest.raises(ConfigError, match="itself") as e:
        import_main([str(src), "--model", "pix2pix", "--checkpoints_dir", str(src.parent), "--overwrite"])
    assert "--name defaults to the source folder's name" in str(e.value), str(e.value)
    assert (src / "latest_net_G.pth").is_file(), "the source's latest_net_G.pth is gone"


# --- 7. import_reference.py option mapping (I13, I14, I15, I18, I16, I10, I17) --------------------

def test_the_other_repo_models_options_are_not_taken(tmp_path):
    """pool_size is CycleGAN's, lambda_L1 pix2pix's: a folder's value of the other model's option
    is not read into the run (it would be refused as unused, or change the recipe)."""
    from tests.test_import_repo_runs import _cyclegan, _pix2pix
    src = _pix2pix(tmp_path / "repo" / "p", pool_size=7)
    cfg = _import_repo(src, tmp_path / "ck1")["config"]
    assert cfg["pool_size"] != 7, cfg["pool_size"]
    from pix2pixhd.checkpoint import load_checkpoint
    from pix2pixhd.import_reference import main as import_main
    src = _cyclegan(tmp_path / "repo" / "c", lambda_L1=33.0)
    assert import_main([str(src), "--model", "cyclegan", "--name", "x", "--checkpoints_dir",
                        str(tmp_path / "ck2")]) == 0
    cfg = load_checkpoint(tmp_path / "ck2" / "x")["config"]
    assert cfg["lambda_L1"] != 33.0, cfg["lambda_L1"]


def test_gan_mode_wins_over_an_older_no_lsgan(tmp_path):
    """An options file with both (the repo's gan_mode, and an older no_lsgan) is read as its
    gan_mode: no_lsgan is not taken beside it."""
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "repo" / "p", gan_mode="lsgan", no_lsgan=True)
    cfg = _import_repo(src, tmp_path / "ck")["config"]
    assert (cfg["gan_mode"], cfg["no_lsgan"]) == ("lsgan", False), (cfg["gan_mode"], cfg["no_lsgan"])


@pytest.mark.fault(cls="command-line errors", case="import_reference REPO_RUN whose options file says lr 0 (the "
                                                "excluded lower bound): refused naming the file and the flag")
def test_an_excluded_lower_bound_in_the_options_file_is_refused_as_its(tmp_path):
    from pix2pixhd.import_reference import main as import_main
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "repo" / "p", lr=0)
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--model", "pix2pix", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    assert str(e.value) == (f"{src / 'train_opt.txt'} says lr: '0', which this project has not: pass --lr with the "
                            "value to use to import_reference"), str(e.value)


@pytest.mark.fault(cls="command-line errors", case="import_reference REPO_RUN whose options file names a netG the "
                                                "repo does not build: refused naming the repo's generators")
def test_a_netg_the_repo_does_not_build_is_refused_naming_its_generators(tmp_path):
    from pix2pixhd.import_reference import main as import_main
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "repo" / "p", netG="encoder_decoder_128")
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--model", "pix2pix", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    assert str(e.value).startswith(f"{src / 'train_opt.txt'} says netG: 'encoder_decoder_128', which the repo "
                                   f"does not build {REPO_NETG_SAID}: pass --netG"), str(e.value)


def _cyclegan_with_damaged_g_a(folder, g_b):
    """A CycleGAN folder of the repo whose latest_net_G_A.pth is no generator (its architecture
    cannot be told), and ``g_b`` as latest_net_G_B.pth: G_B alone tells the architecture."""
    from tests.test_import_repo_runs import _cyclegan
    src = _cyclegan(folder, with_d=False, input_nc=1, output_nc=3, lambda_identity=0.0)
    torch.save({"x": torch.zeros(1)}, src / "latest_net_G_A.pth")
    torch.save(g_b.state_dict(), src / "latest_net_G_B.pth")
    return src


def test_g_b_of_another_width_is_refused_naming_it(tmp_path):
    """G_B's weights fix the options too: a G_B of ngf 16 where the options say 8 is named."""
    from pix2pixhd.import_reference import main as import_main
    from pix2pixhd.pix2pix_networks import define_G
    src = _cyclegan_with_damaged_g_a(tmp_path / "repo" / "c", define_G(3, 1, 16, "resnet_6blocks", "instance",
                                                                       use_dropout=False))
    with pytest.raises(ConfigError) as e:
        import_main([str(src), "--model", "cyclegan", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    assert "latest_net_G_B.pth is a ngf 16 generator" in str(e.value), str(e.value)


def test_g_b_takes_the_output_channels_and_gives_the_input_channels(tmp_path):
    """G_B translates B to A: input_nc 1 / output_nc 3 CycleGAN's G_B takes 3 channels and gives
    1, which fits (the import goes on to G_A, whose file is then named)."""
    from pix2pixhd.import_reference import main as import_main
    from pix2pixhd.pix2pix_networks import define_G
    src = _cyclegan_with_damaged_g_a(tmp_path / "repo" / "c", define_G(3, 1, 8, "resnet_6blocks", "instance",
                                                                       use_dropout=False))
    with pytest.raises(CheckpointMismatchError) as e:
        import_main([str(src), "--model", "cyclegan", "--name", "x", "--checkpoints_dir", str(tmp_path / "ck")])
    assert "latest_net_G_A.pth" in str(e.value) and "G_B" not in str(e.value), str(e.value)


@pytest.mark.fault(cls="command-line errors", case="import_reference of NVIDIA's run with --model pix2pix/cyclegan "
                                                "({id}): refused saying to drop --model")
@pytest.mark.parametrize("how", ["opt.txt says pix2pixHD", "an encoder file"])
def test_nvidias_run_with_a_repo_model_says_drop_model(tmp_path, how):
    from pix2pixhd.import_reference import import_repo_run
    from tests.test_import_repo_runs import _pix2pix
    src = _pix2pix(tmp_path / "nv", opt=False)
    if how == "an encoder file":
        torch.save({}, src / "latest_net_E.pth")
    else:
        (src / "opt.txt").write_text("------------ Options -------------\nmodel: pix2pixHD\n"
                                     "-------------- End ----------------\n")
    with pytest.raises(ConfigError) as e:
        import_repo_run(src, ["--name", "x", "--checkpoints_dir", str(tmp_path / "ck")], "pix2pix")
    assert str(e.value).endswith("imports as --model pix2pixhd only (its networks are pix2pixHD's): drop --model"), \
        str(e.value)


# --- 8. import_reference.py read_reference_clusters: arrays of numbers only (I2) -----------------

@pytest.mark.fault(cls="damaged run folder", case="NVIDIA's features_clustered_NNN.npy holding an array of strings "
                                              "({id}): refused naming its dtype")
@pytest.mark.parametrize("dtype", ["U100000", "S16"])
def test_a_cluster_array_of_strings_is_refused(tmp_path, dtype):
    """Strings of numbers would pass as centres (np.array(v, float32) parses them), and a wide
    string dtype holds far more bytes than the element budget counts."""
    from pix2pixhd.import_reference import read_reference_clusters
    f = tmp_path / "features_clustered_010.npy"
    np.save(f, {1: np.array([["1.5", "2", "3"]], dtype=dtype)}, allow_pickle=True)
    with pytest.raises(CheckpointMismatchError, match=rf"holds an array of dtype \|?[<>|]?{dtype[0]}"):
        read_reference_clusters(f)


# --- 9. classes.json's bounds (L2, L3) and _id_fix (D2, D3) --------------------------------------

@pytest.mark.fault(cls="bad dataset", case="classes.json naming class id 65536: refused")
def test_classes_json_naming_class_65536_is_refused(tmp_path):
    from pix2pixhd.data.dataset import DatasetError
    from pix2pixhd.data.layouts import read_classes
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"id": 0}, {"id": 65536}]}))
    with pytest.raises(DatasetError, match="class id 65536: must be < 65536"):
        read_classes(tmp_path)


def test_classes_json_with_an_empty_class_list_reads_as_no_ids(tmp_path):
    from pix2pixhd.data.layouts import read_classes
    (tmp_path / "classes.json").write_text(json.dumps({"classes": []}))
    got = read_classes(tmp_path)
    assert (got.label_nc, set(got.ids)) == (None, set())


def test_id_65536_is_told_to_remap_not_to_widen_label_nc():
    from pix2pixhd.data.dataset import _id_fix
    fix = _id_fix(65536, 35)
    assert fix.startswith("remap the ids to 0..N-1"), fix
    assert "65537" not in fix, fix


def test_an_id_past_the_bound_gets_no_add_it_to_classes_json_advice(tmp_path):
    from pix2pixhd.data.dataset import _id_fix
    from pix2pixhd.data.layouts import read_classes
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"id": 0}, {"id": 1}]}))
    classes = read_classes(tmp_path)
    fix = _id_fix(65536, 2, classes)
    assert "does not name id 65536" in fix and "add it to classes.json" not in fix, fix
    assert "add it to classes.json and pass --label_nc 65535" in _id_fix(65534, 2, classes)


# --- 10. engine.py: the real photo's recorded digest (E5, E4) ------------------------------------

@pytest.mark.fault(cls="synthesis", case="moved encoded job whose real photo cannot be read: counts as another "
                                         "photo")
def test_a_real_photo_that_cannot_be_read_counts_as_different(tmp_path):
    """A photo that cannot be read (gone, a folder in its place) is not shown to be the one the
    line recorded: the moved job is not resumed on it. (chmod 000 would not stop root.)"""
    from pix2pixhd.engine import _same_sha256
    from pix2pixhd.paths import file_sha256
    p = tmp_path / "a.png"
    p.write_bytes(b"photo")
    digest = file_sha256(p)
    assert _same_sha256(p, digest)
    p.unlink()
    assert not _same_sha256(p, digest), "a missing photo counted as the same"
    p.mkdir()
    assert not _same_sha256(p, digest), "a folder in the photo's place counted as the same"


@pytest.mark.fault(cls="synthesis", case="manifest line whose real_sha256 is not a string: not compared")
def test_a_non_string_real_sha256_in_a_manifest_line_is_not_compared(tmp_path):
    from pix2pixhd.engine import MANIFEST, _complete_lines
    lines = [{"job": "d", "status": "ok", "output": f"test_img/{n}.png", "bytes": 5, "inputs": [], "real_sha256": v}
             for n, v in (("a", 123), ("b", ["x"]), ("c", "ab" * 32))]
    (tmp_path / MANIFEST).write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    done = _complete_lines(tmp_path, {"d"})
    assert [done.get(f"test_img/{n}.png")[3] for n in "abc"] == [None, None, "ab" * 32]

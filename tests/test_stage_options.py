"""Options that say how a stage starts or continues: --which_epoch with --load_pretrain on a restart,
--niter_fix_global outside the local stage, the local stage's derived sizes, a run of no epochs, and
the options a --resume changes (config-level: run folders hold config.json and stub checkpoints)."""
import pytest
import torch

from pix2pixhd.cli import resolve_config, train_main
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError


def _run(ck, name, checkpoint=None, **options):
    """Run folder ``name``: its config.json and, given ``checkpoint`` (epoch, iter_in_epoch), a
    latest.pt stub holding that position (what resolved() reads of a checkpoint)."""
    cfg = TrainConfig(name=name, checkpoints_dir=str(ck), **options).resolved()
    (ck / name).mkdir()
    (ck / name / "config.json").write_text(cfg.to_json())
    if checkpoint is not None:
        epoch, it = checkpoint
        torch.save({"global_step": 3 * epoch + it, "epoch": epoch, "iter_in_epoch": it}, ck / name / "latest.pt")
    return cfg


TINY = dict(label_nc=9, ngf=8, ndf=8, n_downsample_global=2, n_blocks_global=1, num_D=1, n_layers_D=2,
            no_vgg_loss=True, resize_or_crop="scale_width", loadSize=32, niter=2, niter_decay=2)


# ---- 1. --auto_resume --load_pretrain X --which_epoch N: N is the stage loaded's ----------------------
def test_a_restart_of_a_local_stage_loaded_by_epoch_continues_from_its_latest(tmp_path):
    _run(tmp_path, "g", checkpoint=(5, 0), **TINY)
    argv = ["--checkpoints_dir", str(tmp_path), "--name", "l", "--stage", "local", "--load_pretrain",
            str(tmp_path / "g"), "--which_epoch", "2", "--n_blocks_local", "1", "--auto_resume"]
    first = resolve_config(argv)   # nothing of its own yet: epoch 2 of the global stage is loaded
    assert not first.resume and first.which_epoch == "2"
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "config.json").write_text(first.to_json())
    torch.save({"global_step": 10, "epoch": 4, "iter_in_epoch": 1}, tmp_path / "l" / "latest.pt")
    again = resolve_config(argv)   # it rewound to the run's own epoch_0002.pt (or failed without one)
    assert again.resume and again.which_epoch == "latest"
    note, = [n for n in again.notes() if "--which_epoch 2" in n]
    assert "the epoch of --load_pretrain's stage" in note and note.endswith("continues from latest.pt")
    # --resume cannot tell the two readings apart: refused, naming both
    with pytest.raises(ConfigError, match=r"^--resume --load_pretrain .*--which_epoch 2: .* ambiguous: drop "
                                          r"--load_pretrain to resume from .*epoch_0002\.pt, or drop "
                                          r"--which_epoch to continue from .*latest\.pt$"):
        resolve_config([a for a in argv if a != "--auto_resume"] + ["--resume"])
    # without --load_pretrain, --resume --which_epoch N names this run's epoch, as before
    own = resolve_config(["--checkpoints_dir", str(tmp_path), "--name", "l", "--resume", "--which_epoch", "1"])
    assert own.resume and own.which_epoch == "1"


# ---- 2. --niter_fix_global: the local stage's alone ------------------------------------------------
def test_niter_fix_global_is_refused_where_nothing_fixes_the_global_generator(tmp_path):
    for stage, why in (("global", "--stage global trains the global generator itself"),
                       ("finetune", "--stage finetune trains all of G from its first step")):
        with pytest.raises(ConfigError, match=rf"^--niter_fix_global 3: only the local stage .*{why}: "
                                              r"drop --niter_fix_global$"):
            TrainConfig(stage=stage, niter_fix_global=3).resolved()
        assert TrainConfig(stage=stage, niter_fix_global=0).resolved().niter_fix_global == 0   # the default
    with pytest.raises(ConfigError, match="--model pix2pix has no global generator"):
        TrainConfig(model="pix2pix", niter_fix_global=3).resolved()
    assert TrainConfig(stage="local", niter_fix_global=3).resolved().niter_fix_global == 3
    # a finetune from a local stage trained with it, and a finetune run that saved it, are not refused
    _run(tmp_path, "l", stage="local", niter_fix_global=3, **TINY)
    TrainConfig(stage="finetune", load_pretrain=str(tmp_path / "l")).resolved()
    saved = TrainConfig(stage="finetune", **TINY).resolved()
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "config.json").write_text(saved.to_json().replace('"niter_fix_global": 0',
                                                                        '"niter_fix_global": 3'))
    assert TrainConfig(name="f", checkpoints_dir=str(tmp_path), resume=True).resolved().niter_fix_global == 3


# ---- 3. the local stage's note names only the sizes it derived -------------------------------------
def test_the_local_stage_notes_only_the_sizes_it_derived(tmp_path):
    _run(tmp_path, "g", **TINY)
    local = dict(stage="local", load_pretrain=str(tmp_path / "g"), n_blocks_local=1)
    assert TrainConfig(**local, loadSize=48).resolved().notes() == []   # scale_width reads loadSize alone
    derived = TrainConfig(**local).resolved()
    assert derived.loadSize == 64 and derived.notes() == [
        "--stage local: images read as the global stage's (scale_width, loadSize 32) at 2x its size: "
        "loadSize 64 (give --loadSize for others)"]
    crop, = TrainConfig(**local, resize_or_crop="scale_width_and_crop", loadSize=48).resolved().notes()
    assert "fineSize 1024 (give --fineSize for others)" in crop and "loadSize" not in crop


# ---- 4. a run of no epochs ---------------------------------------------------------------------------
def test_a_run_of_no_epochs_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"^--niter 0 --niter_decay 0: .* give at least one epoch"):
        train_main(["--checkpoints_dir", str(tmp_path), "--name", "z", "--dataroot", str(tmp_path / "none"),
                    "--niter", "0", "--niter_decay", "0"])
    assert not (tmp_path / "z").exists()
    assert TrainConfig(niter=0, niter_decay=1).resolved().niter == 0


# ---- 5. options a resume changes ------------------------------------------------------------------
def test_a_resume_names_the_options_given_other_than_the_runs(tmp_path):
    _run(tmp_path, "r", checkpoint=(3, 0), **TINY)   # 2 epochs trained at the initial lr
    base = ["--checkpoints_dir", str(tmp_path), "--name", "r", "--resume"]
    same = ["--lr", "0.0002", "--niter", "2", "--label_nc", "9"]
    quiet = ["--print_freq", "7", "--nThreads", "3", "--no_progress", "--save_epoch_freq", "1", "--validate", "off"]
    assert resolve_config(base + same + quiet).notes() == []
    note, = resolve_config(base + ["--lr", "0.0001", "--seed", "3", "--no_flip", "--batchSize", "4",
                                   "--lambda_feat", "5"] + quiet).notes()
    assert note == (f"resuming {tmp_path / 'r'} with options other than its own: --seed 0 -> 3, --no_flip off "
                    "-> on, --batchSize 1 -> 4, --lambda_feat 10.0 -> 5.0, --lr 0.0002 -> 0.0001: the resumed "
                    "run differs from an uninterrupted one from here on")
    # longer: epochs 1-2 keep their learning rate (the decay starts at epoch 3 either way)
    assert resolve_config(base + ["--niter", "4", "--niter_decay", "4"]).notes() == []
    assert resolve_config(base + ["--auto_resume", "--niter_decay", "4"]).notes() == []


def test_a_resume_names_a_longer_schedule_that_changes_an_epoch_trained(tmp_path):
    _run(tmp_path, "r", checkpoint=(4, 1), **TINY)   # into epoch 4: its lr was decayed by 1/2
    base = ["--checkpoints_dir", str(tmp_path), "--name", "r", "--resume"]
    note, = resolve_config(base + ["--niter_decay", "4"]).notes()
    assert "--niter_decay 2 -> 4: the resumed run differs" in note
    note, = resolve_config(base + ["--niter", "3"]).notes()
    assert "--niter 2 -> 3: the resumed run differs" in note


def test_the_epoch_of_the_stage_loaded_survives_a_resume(tmp_path):
    """config.json's which_epoch is what the last start read: a resume rewrote the epoch of the
    stage loaded (which the --load_features chain reads to find the encoder that made the maps)."""
    import json
    from pix2pixhd.cli import train_main
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    generate(tmp_path / "data", n_train=2, n_test=0, width=64, height=32, seed=0)
    common = ["--dataroot", str(tmp_path / "data"), "--checkpoints_dir", str(tmp_path / "ck"), "--label_nc",
              str(LABEL_NC), "--resize_or_crop", "none", "--n_downsample_global", "2", "--n_blocks_global", "1",
              "--n_blocks_local", "1", "--ndf", "4", "--num_D", "1", "--n_layers_D", "2", "--no_vgg_loss",
              "--batchSize", "2", "--nThreads", "0", "--no_progress", "--no_tensorboard", "--no_html",
              "--device", "cpu"]
    assert train_main([*common, "--name", "g", "--ngf", "8", "--niter", "2", "--niter_decay", "0",
                       "--save_epoch_freq", "1"]) == 0
    assert train_main([*common, "--name", "l", "--stage", "local", "--load_pretrain", str(tmp_path / "ck" / "g"),
                       "--which_epoch", "1", "--niter", "2", "--niter_decay", "0", "--max_steps", "1"]) == 0
    saved = json.loads((tmp_path / "ck" / "l" / "config.json").read_text())
    assert (saved["which_epoch"], saved["pretrain_epoch"]) == ("1", "1")
    assert train_main(["--name", "l", "--checkpoints_dir", str(tmp_path / "ck"), "--resume"]) == 0
    saved = json.loads((tmp_path / "ck" / "l" / "config.json").read_text())
    assert (saved["which_epoch"], saved["pretrain_epoch"]) == ("latest", "1")
    assert TrainConfig.load(tmp_path / "ck" / "l").pretrain_epoch == "1"
    assert TrainConfig.load(tmp_path / "ck" / "g").pretrain_epoch is None

"""NVIDIA's command lines and habits meet this command line: --netG local without --stage is the
local stage (its --niter_fix_global freezes G1); --no_lsgan never overrides a --gan_mode given;
true/false options take an optional value, so that a resumed run or a model default can be
switched off; numbers out of range are one error line before anything is written; a mismatched
global stage names the options that differ; the reference's options this project replaces are one
error line naming the replacement; --model is case-insensitive."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd import errors
from pix2pixhd.cli import resolve_config, synthesize_main, train_main, train_parser
from pix2pixhd.compat import CheckpointMismatchError
from pix2pixhd import config
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError
from pix2pixhd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = ["--no_vgg_loss", "--n_blocks_global", "1", "--n_blocks_local", "1", "--n_downsample_global", "2",
        "--ndf", "4", "--n_layers_D", "2", "--label_nc", "4", "--device", "cpu", "--norm_impl", "ref"]


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A checkpoints folder with a tiny global stage 'g' (ngf 8) and its local stage 'l'."""
    from pix2pixhd.trainer import Trainer
    root = tmp_path_factory.mktemp("compat")
    for argv in (["--name", "g", "--ngf", "8"], ["--name", "l", "--stage", "local", "--load_pretrain", str(root / "g")]):
        t = Trainer(resolve_config(["--checkpoints_dir", str(root), *TINY, *argv]))
        t.exp_dir.mkdir(parents=True)
        t.save("latest")
    return root


def _cfg(ck, *argv):
    return resolve_config(["--checkpoints_dir", str(ck), *TINY, *argv])


def _saved_run(ck, name, **options):
    """A run folder holding only config.json (what resolved() reads to resume)."""
    cfg = TrainConfig(name=name, checkpoints_dir=str(ck), **options).resolved()
    (ck / name).mkdir()
    (ck / name / "config.json").write_text(cfg.to_json())
    return cfg


# ---- 1. NVIDIA's 1024p command: --netG local is the local stage ---------------------------------------
def test_nvidia_local_command_is_the_local_stage_and_freezes_g1(ck, streets, capsys):
    from pix2pixhd.trainer import Trainer
    nvidia = ["--name", "l1024", "--netG", "local", "--ngf", "4", "--num_D", "3", "--load_pretrain",
              str(ck / "g"), "--niter_fix_global", "10"]
    assert train_main(["--checkpoints_dir", str(ck), *TINY, *nvidia, "--dry_run", "--dataroot", str(streets)]) == 0
    assert " stage: local" in capsys.readouterr().out
    cfg = _cfg(ck, *nvidia)
    assert (cfg.stage, cfg.netG, cfg.num_D) == ("local", "local", 3)
    assert Trainer(cfg).global_frozen
    assert TrainConfig(netG="local").resolved().stage == "local"
    # the stage given keeps its stage; another model refuses pix2pixHD's generator by name
    assert TrainConfig(netG="local", stage="finetune").resolved().stage == "finetune"
    with pytest.raises(ConfigError, match="--netG local: --model pix2pix does not use it"):
        TrainConfig(model="pix2pix", netG="local").resolved()


def test_a_local_stage_from_a_local_run_takes_its_shapes(ck):
    from pix2pixhd.trainer import Trainer
    cfg = _cfg(ck, "--name", "l2", "--netG", "local", "--load_pretrain", str(ck / "l"))
    assert (cfg.stage, cfg.ngf, cfg.num_D, cfg.n_blocks_local) == ("local", 4, 3, 1)
    Trainer(cfg)   # loads the local run whole


# ---- 2. --no_lsgan and --gan_mode ------------------------------------------------------------------------
def test_no_lsgan_never_overrides_a_gan_mode_given(tmp_path):
    with pytest.raises(ConfigError, match=r"--no_lsgan means --gan_mode vanilla, and --gan_mode hinge"):
        resolve_config(["--no_lsgan", "--gan_mode", "hinge"])
    assert resolve_config(["--no_lsgan"]).gan_mode == "vanilla"
    assert resolve_config(["--no_lsgan", "--gan_mode", "vanilla"]).gan_mode == "vanilla"
    _saved_run(tmp_path, "v", no_lsgan=True)
    resume = ["--checkpoints_dir", str(tmp_path), "--name", "v", "--resume"]
    assert resolve_config(resume).gan_mode == "vanilla"
    c = resolve_config(resume + ["--gan_mode", "lsgan"])
    assert (c.gan_mode, c.no_lsgan) == ("lsgan", False)   # saved so, the next resume keeps lsgan


# ---- 3. true/false options take a value ------------------------------------------------------------------
@pytest.mark.parametrize("given, value", [([], None), (["--no_flip"], True), (["--no_flip", "false"], False),
                                          (["--no_flip", "0"], False), (["--no_flip", "true"], True),
                                          (["--no_flip=Off"], False), (["--no_flip", "1"], True)])
def test_a_true_false_option_alone_is_true_or_takes_a_value(given, value):
    assert train_parser(given).parse_args(given + ["--ngf", "8"]).no_flip is value


def test_other_words_for_a_true_false_option_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        train_parser().parse_args(["--compile", "maybe"])
    assert e.value.code == 2 and "argument --compile: 'maybe' is not true or false" in capsys.readouterr().err
    assert "--no_flip [true|false]" in train_parser().format_help()


def test_an_explicit_false_wins_over_model_defaults_and_the_run_resumed(tmp_path):
    p = resolve_config(["--model", "pix2pix", "--no_instance", "0"])
    assert (p.no_vgg_loss, p.no_instance, p.no_ganFeat_loss) == (True, False, True)
    assert resolve_config(["--model", "cyclegan", "--no_dropout", "false"]).no_dropout is False
    _saved_run(tmp_path, "r", compile=True, deterministic=True, channels_last=True, no_flip=True)
    resume = ["--checkpoints_dir", str(tmp_path), "--name", "r", "--resume"]
    flags = ("compile", "deterministic", "channels_last", "no_flip")
    assert [getattr(resolve_config(resume), k) for k in flags] == [True] * 4
    off = resolve_config(resume + [a for k in flags for a in (f"--{k}", "false")])
    assert [getattr(off, k) for k in flags] == [False] * 4


# ---- 4. ranges ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, says", [
    ("print_freq", "0", ">= 1"), ("save_latest_freq", "0", ">= 1"), ("display_freq", "0", ">= 1"),
    ("save_epoch_freq", "0", ">= 1"), ("batchSize", "0", ">= 1"), ("nThreads", "-1", ">= 0"),
    ("lr", "-1", "> 0"), ("lr", "0", "> 0"), ("beta1", "1", ">= 0 and < 1"), ("niter", "-1", ">= 0"),
    ("ngf", "0", ">= 1"), ("num_D", "-2", ">= 0"), ("max_steps", "-1", ">= 0")])
def test_a_number_out_of_range_is_one_line_before_anything_is_written(option, value, says, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    argv = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "r", "--dataroot", str(tmp_path), "--no_vgg_loss",
            "--device", "cpu", f"--{option}", value]
    assert errors.run(train_main, argv) == 1
    err = capsys.readouterr().err
    shown = str(float(value)) if option in ("lr", "beta1") else value
    assert err.startswith(f"error: --{option} {shown}: must be {says}") and err.count("\n") == 1, err
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("option, value, says", [("workers", "-1", ">= 0"), ("how_many", "-3", ">= 0"),
                                                 ("writers", "-1", ">= 0")])
def test_synthesize_refuses_numbers_out_of_range(option, value, says, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    argv = ["--checkpoint", str(tmp_path / "nowhere"), "--input", str(tmp_path), "--out", str(tmp_path / "o"),
            f"--{option}", value]
    assert errors.run(synthesize_main, argv) == 1
    assert capsys.readouterr().err.startswith(f"error: --{option} {value}: must be {says}")
    assert not (tmp_path / "o").exists()


# ---- 5. the global -> local load names the input options ----------------------------------------------
@pytest.mark.parametrize("given, says", [(["--no_instance"], "no_instance False there, True here"),
                                         (["--label_nc", "5"], "label_nc 4 there, 5 here"),
                                         (["--instance_feat", "--feat_num", "2"], "instance_feat False there, True here")])
def test_an_input_mismatch_at_the_local_stage_names_the_input_options(ck, given, says):
    from pix2pixhd.trainer import Trainer
    cfg = _cfg(ck, "--name", "x", "--stage", "local", "--load_pretrain", str(ck / "g"), *given)
    with pytest.raises(CheckpointMismatchError, match="input channels") as e:
        Trainer(cfg)
    assert says in str(e.value) and "Use --ngf" not in str(e.value)


# ---- 6. finetune from a global stage ------------------------------------------------------------------------
def test_finetune_from_a_global_stage_says_to_train_the_local_stage_first(ck):
    with pytest.raises(ConfigError, match="holds a global stage") as e:
        _cfg(ck, "--name", "f", "--stage", "finetune", "--load_pretrain", str(ck / "g"))
    assert "train the local stage first" in str(e.value) and "drop --netG" not in str(e.value)
    with pytest.raises(ConfigError, match="drop --stage finetune"):
        _cfg(ck, "--name", "g", "--resume", "--stage", "finetune")
    with pytest.raises(ConfigError, match="drop --netG global"):   # given: the old message
        _cfg(ck, "--name", "f", "--stage", "finetune", "--netG", "global")


# ---- 7. the reference's own options, --model pix2pixHD -----------------------------------------------------
REFERENCE_CASES = {
    "--gpu_ids 0,1": "--device", "--fp16": "--precision fp16", "--tf_log": "--no_tensorboard",
    "--data_type 16": "--precision fp16", "--data_type=32": "drop --data_type", "--serial_batches": "no equivalent",
    "--display_winsize 512": "not needed", "--use_dropout": "--no_dropout", "--verbose": "not needed",
    "--local_rank=0": "LOCAL_RANK",
    # the pix2pix/CycleGAN repo's later names
    "--preprocess scale_width": "use --resize_or_crop scale_width", "--load_size 286": "use --loadSize",
    "--crop_size 256": "use --fineSize", "--n_epochs 100": "use --niter", "--n_epochs_decay 100": "use --niter_decay",
    "--batch_size 4": "use --batchSize", "--num_threads 4": "use --nThreads",
    # the repo's options without an equivalent here
    "--init_type xavier": "no equivalent", "--init_gain 0.05": "no equivalent", "--lr_policy step": "no equivalent",
    "--lr_decay_iters 50": "no equivalent", "--epoch_count 5": "--resume",
    # NVIDIA's test options: synthesize.py's (--ntest was "did you mean --netG?", --cluster_path
    # "did you mean --n_clusters?"; the others argparse's plain "unrecognized arguments")
    "--ntest 5": "synthesize.py --checkpoint RUN", "--how_many 5": "--how_many N synthesizes",
    "--results_dir ./results": "to OUT (--out)",
    "--cluster_path features_clustered_010.npy": "synthesize.py --checkpoint RUN --clusters FILE",
    "--use_encoded_image": "synthesize.py --checkpoint RUN --feature_mode encoded",
    "--aspect_ratio 2": "no equivalent: synthesize.py writes each output at its input's size",
    "--export_onnx g.onnx": "python -m pix2pixhd.export --checkpoint RUN",
    "--onnx g.onnx": "synthesize.py --checkpoint RUN --backend onnx --onnx_path FILE",
    "--engine g.trt": "no equivalent: no TensorRT engine"}


@pytest.mark.parametrize("given", list(REFERENCE_CASES))
def test_a_reference_only_option_is_one_line_naming_the_replacement(given, capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert errors.run(train_main, ["--ngf", "8", *given.split(), "--dry_run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {given.replace('=', ' ')} is an option of the reference") and err.count("\n") == 1
    assert REFERENCE_CASES[given] in err
    assert {g.split()[0].split("=")[0][2:] for g in REFERENCE_CASES} == set(config.REFERENCE_ONLY)


def test_train_hd_refuses_fp16_in_one_line_with_status_1():
    env = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}   # another test's --debug
    p = subprocess.run([sys.executable, str(REPO / "train_hd.py"), "--fp16", "--dry_run"],
                       capture_output=True, text=True, cwd=str(REPO), timeout=120, env=env)
    assert p.returncode == 1 and p.stderr.splitlines() == [p.stderr.strip()], p.stderr
    assert "use --precision fp16" in p.stderr


def test_model_is_case_insensitive():
    assert resolve_config(["--model", "pix2pixHD"]) == resolve_config([])
    assert resolve_config(["--model", "Pix2Pix"]).norm == "batch"
    assert TrainConfig(model="pix2pixHD").resolved().model == "pix2pixhd"
    assert "(default: batch" in " ".join(train_parser(["--model", "PIX2PIX"]).format_help().split())


# ---- doubts: palette is inherited; --resume does not load another --load_pretrain --------------------------
def test_a_later_stage_reads_label_maps_as_its_global_stage_did(tmp_path):
    _saved_run(tmp_path, "g", palette="facades", label_nc=12)
    loc = resolve_config(["--stage", "local", "--load_pretrain", str(tmp_path / "g")])
    assert (loc.palette, loc.label_nc) == ("facades", 12)
    assert resolve_config(["--stage", "local", "--load_pretrain", str(tmp_path / "g"), "--palette", ""]).palette == ""


def test_resume_refuses_another_load_pretrain(tmp_path):
    _saved_run(tmp_path, "g")
    _saved_run(tmp_path, "l", stage="local", load_pretrain=str(tmp_path / "g"))
    resume = ["--checkpoints_dir", str(tmp_path), "--name", "l", "--resume"]
    assert resolve_config(resume + ["--load_pretrain", str(tmp_path / "g")]).stage == "local"   # the same command
    with pytest.raises(ConfigError, match=r"--load_pretrain .*nowhere: --resume continues .* loads nothing else"):
        resolve_config(resume + ["--load_pretrain", str(tmp_path / "nowhere")])


def test_the_pix2pix_repos_netG_and_netD_are_read_as_ours():
    # `--netG unet_128 --netD pixel`, as the pix2pix/CycleGAN repo spells them, used to stop with
    # "netG='unet_128'; expected 'global' or 'local'" and "unrecognized arguments: --netD"
    c = resolve_config(["--model", "pix2pix", "--netG", "unet_128", "--netD", "pixel", "--fineSize", "128",
                        "--loadSize", "142"])
    assert (c.netG_pix2pix, c.netD_pix2pix, c.netG) == ("unet_128", "pixel", "global")
    assert c == resolve_config(["--model", "pix2pix", "--netG_pix2pix", "unet_128", "--netD_pix2pix", "pixel",
                                "--fineSize", "128", "--loadSize", "142"])
    assert resolve_config(["--model", "cyclegan", "--netG", "resnet_6blocks"]).netG_pix2pix == "resnet_6blocks"
    with pytest.raises(ConfigError, match=r"--netG unet_128 is a pix2pix/CycleGAN generator.*add --model pix2pix"):
        resolve_config(["--netG", "unet_128"])
    with pytest.raises(ConfigError, match=r"--netG unet_128 and --netG_pix2pix unet_256 name two generators"):
        resolve_config(["--model", "pix2pix", "--netG", "unet_128", "--netG_pix2pix", "unet_256"])
    with pytest.raises(ConfigError, match=r"--netG foo: pix2pixHD's generator is global or local .*unet_128"):
        resolve_config(["--netG", "foo"])


def test_a_square_crop_the_generator_cannot_take_is_refused_with_the_sizes_and_generators_that_fit():
    # resize_and_crop (pix2pix's default) makes every sample min(loadSize, fineSize) square: a
    # unet_256 on 64x64 crops was refused once per image by the dataset's validation, naming
    # neither a size nor a generator that fits
    with pytest.raises(ConfigError, match=r"^--fineSize 64: .* every sample 64x64, and this generator needs "
                                          r"sides that divide by 256: give --fineSize 256, or a generator "
                                          r"that takes 64: --netG_pix2pix resnet_9blocks or resnet_6blocks$"):
        resolve_config(["--model", "pix2pix", "--loadSize", "72", "--fineSize", "64"])
    with pytest.raises(ConfigError, match=r"^--fineSize 72: .* divide by 16: give --fineSize 80 or 64, or a "
                                          r"generator that takes 72: fewer downsamplings"):
        resolve_config(["--resize_or_crop", "resize_and_crop", "--loadSize", "100", "--fineSize", "72"])
    # a crop larger than the image it is cut from (used to be min(loadSize, fineSize), silently)
    with pytest.raises(ConfigError, match=r"^--fineSize 64: --resize_or_crop resize_and_crop scales every image "
                                          r"to 32x32 \(--loadSize\) and crops 64x64 from it: give --fineSize 32 or "
                                          r"less, or --loadSize 64 or more$"):
        resolve_config(["--model", "cyclegan", "--loadSize", "32", "--fineSize", "64"])
    assert resolve_config(["--model", "pix2pix", "--loadSize", "72", "--fineSize", "64",
                           "--netG_pix2pix", "resnet_6blocks"]).fineSize == 64


# ---- NVIDIA's test.py options on synthesize.py, --debug, --dry_run ----------------------------------
SYNTHESIZE_REFERENCE_CASES = {
    "--name label2city_1024p": "--checkpoint CHECKPOINTS_DIR/NAME", "--results_dir ./results": "--out",
    "--gpu_ids 0": "--device", "--fp16": "--precision fp16", "--batchSize 1": "--batch_size",
    "--nThreads 0": "--workers", "--loadSize 1024": "--scale_width trained",
    "--resize_or_crop none": "--scale_width trained", "--cluster_path f.npy": "import_reference",
    "--export_onnx a.onnx": "pix2pixhd.export", "--ntest 5": "--how_many",
    "--aspect_ratio 2": "drop --aspect_ratio", "--label_nc 35": "come from the checkpoint's config.json"}


@pytest.mark.parametrize("given", list(SYNTHESIZE_REFERENCE_CASES))
def test_nvidia_test_options_on_synthesize_are_one_line_naming_the_replacement(given, capsys, monkeypatch):
    # they gave argparse's usage and "unrecognized arguments", status 2
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    argv = ["--checkpoint", "ck", "--input", "in", "--out", "out", *given.split()]
    assert errors.run(synthesize_main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {given} is an option of the reference") and err.count("\n") == 1, err
    assert SYNTHESIZE_REFERENCE_CASES[given] in err


def test_feature_options_on_a_run_without_an_encoder_are_refused(ck, tmp_path):
    # they were ignored, and the job even counted as the same one as without them
    from pix2pixhd.errors import ConfigError
    inp = tmp_path / "in"
    inp.mkdir()
    for extra, says in ((["--cluster", "3"], "--cluster 3"), (["--use_encoded_image"], "--use_encoded_image"),
                        (["--feature_mode", "cluster"], "--feature_mode cluster")):
        with pytest.raises(ConfigError, match=rf"^{says}: .*g has no feature encoder .*drop {says.split()[0]}$"):
            synthesize_main(["--checkpoint", str(ck / "g"), "--input", str(inp), "--out", str(tmp_path / "o"),
                             "--device", "cpu", *extra])
        assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    from pix2pixhd.datasets.synthetic_streets import generate
    root = tmp_path_factory.mktemp("streets")
    generate(root, n_train=3, n_test=0, width=64, height=32, seed=0)
    # the dry runs here read no label map, and take TINY's --label_nc 4: its classes.json
    # (label_nc 9) would refuse them, as --dry_run checks it as the run's start does
    (root / "classes.json").unlink()
    return root


def test_dry_run_on_the_folder_of_another_run_is_refused_as_the_launch_would_be(ck, streets, capsys):
    from pix2pixhd.errors import RunExistsError
    with pytest.raises(RunExistsError, match=r"already holds a run \(.*latest.pt.*add --resume"):
        train_main(["--checkpoints_dir", str(ck), *TINY, "--name", "g", "--ngf", "8", "--dry_run"])
    assert train_main(["--checkpoints_dir", str(ck), *TINY, "--name", "g", "--resume", "--dataroot", str(streets),
                       "--dry_run"]) == 0


def test_dry_run_lists_the_dataset_the_run_would_stop_for(tmp_path, streets, capsys):
    """It exited 0 for a --dataroot that does not exist and a --phase with a path in it; the run
    refused both. It now lists the dataset (not reading its files), as the run's start does."""
    from pix2pixhd.data.dataset import DatasetError
    from pix2pixhd.paths import UnsafeNameError
    argv = ["--checkpoints_dir", str(tmp_path), *TINY, "--name", "d", "--dry_run"]
    with pytest.raises(DatasetError, match="does not exist. Fix --dataroot"):
        train_main([*argv, "--dataroot", str(tmp_path / "none")])
    with pytest.raises(UnsafeNameError, match="--phase '../x' holds a path separator"):
        train_main([*argv, "--dataroot", str(streets), "--phase", "../x"])
    capsys.readouterr()
    assert train_main([*argv, "--dataroot", str(streets)]) == 0
    assert (f"dataset: 3 samples in {streets} (--phase train); their files are checked when the run starts "
            "(--validate full)") in capsys.readouterr().out
    assert not (tmp_path / "d").exists()


def test_debug_says_what_nvidias_debug_is_here(tmp_path, streets, capsys):
    argv = ["--checkpoints_dir", str(tmp_path), *TINY, "--name", "d", "--dry_run", "--dataroot", str(streets)]
    assert errors.run(train_main, argv) == 0
    assert "NVIDIA's --debug" not in capsys.readouterr().out
    assert errors.run(train_main, argv + ["--debug"]) == 0
    assert ("note: --debug shows the traceback of an error; NVIDIA's --debug (a run of 1 epoch on 10 images) is "
            "--niter 1 --niter_decay 0 --max_dataset_size 10") in capsys.readouterr().out


@pytest.mark.parametrize("flags, says", [
    (["--ddp_bf16_grads"], "note: --ddp_bf16_grads rounds the gradients DDP all-reduces between processes; "
                           "this run has one process, so it changes nothing"),
    (["--precision", "fp16"], "note: --precision fp16 on the CPU: autocast to fp16 there is usually slower "
                              "than fp32")])
def test_options_that_do_nothing_or_slow_the_cpu_down_are_noted(flags, says, capsys, monkeypatch, streets):
    """--ddp_bf16_grads in one process and fp16 on the CPU were taken without a word (the first
    trained bit-identical without it, the second slower than fp32)."""
    from pix2pixhd.cli import train_main
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert train_main(["--device", "cpu", "--no_vgg_loss", "--dry_run", "--dataroot", str(streets), *flags]) == 0
    assert says in capsys.readouterr().out

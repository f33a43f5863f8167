"""Findings of WALK9 (users of the pix2pix/CycleGAN repo, junyanz/pytorch-CycleGAN-and-pix2pix,
switching to this project) on the options: the repo's values this project has not (--dataset_mode
single went as far as a traceback after the option listing, --gan_mode wgangp was argparse's bare
"invalid choice"), its --model cycle_gan, its options that argparse's "did you mean" sent to another
option (--display_id -> --display_freq, --load_iter -> --loadSize, --num_test -> --num_D), its
network choices given without --model (--netD basic was taken silently), and the README's
``Trainer(TrainConfig(...).resolved()).fit()`` that ``from pix2pixhd import ...`` could not import.
Each is refused (or read) before anything runs: nothing is trained or written."""
import subprocess
import sys

import pytest

from pix2pixhd import config, errors
from pix2pixhd.cli import resolve_config, synthesize_main, synthesize_parser, train_main, train_parser
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError

CLI = "command-line errors"
fault = pytest.mark.fault
REPO = "the pix2pix/CycleGAN repo"


def _one_line(main, argv, capsys, monkeypatch) -> str:
    """The one error line ``main`` prints for ``argv`` through errors.run (status 1), with nothing
    on stdout (no option listing)."""
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)   # another test's --debug
    capsys.readouterr()
    assert errors.run(main, argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err


def _train(tmp_path, *extra) -> list[str]:
    return ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "q", *extra]


# ---- 1. --dataset_mode single / colorization / template ---------------------------------------------
@fault(cls=CLI, case="the pix2pix/CycleGAN repo's --dataset_mode single, colorization or template (free text "
                     "here): one line naming what to use, before the option listing (was a ValueError traceback "
                     "from the dataset, after it)")
@pytest.mark.parametrize("mode, says", [
    ("single", "python synthesize.py --checkpoint RUN --input FOLDER --out OUT"),
    ("colorization", "--model pix2pix --dataset_mode rgb_pairs with the colour photos in both train_A/ and "
                     "train_B/ and --input_nc 1"),
    ("template", "put the data in one of these layouts (docs/data.md)")])
@pytest.mark.parametrize("dry_run", [False, True])
def test_the_repos_dataset_modes_are_one_line_naming_what_to_use(tmp_path, capsys, monkeypatch, mode, says,
                                                                 dry_run):
    argv = _train(tmp_path, "--model", "pix2pix", "--dataset_mode", mode) + (["--dry_run"] if dry_run else [])
    err = _one_line(train_main, argv, capsys, monkeypatch)
    assert err.startswith(f"error: --dataset_mode {mode} is {REPO}'s "), err
    assert "(it takes auto, cityscapes, palette, rgb_pairs, aligned or unaligned)" in err and says in err, err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=f"^--dataset_mode {mode} is {REPO}'s"):   # from Python too
        TrainConfig(dataset_mode=mode).resolved()


@fault(cls=CLI, case="a --dataset_mode no one has (free text): one line with the choices, before the option "
                     "listing; create_dataset names the repo's single mode's equivalent too")
def test_an_unknown_dataset_mode_is_one_line_with_the_choices(tmp_path, capsys, monkeypatch):
    from pix2pixhd.data import create_dataset
    err = _one_line(train_main, _train(tmp_path, "--dataset_mode", "foo", "--dry_run"), capsys, monkeypatch)
    assert err == ("error: --dataset_mode 'foo': expected one of auto, cityscapes, palette, rgb_pairs, aligned, "
                   "unaligned\n"), err
    with pytest.raises(ConfigError, match=r"^--dataset_mode single is .*synthesize\.py --checkpoint RUN --input"):
        create_dataset(tmp_path, "train", dataset_mode="single")


# ---- 2. --gan_mode wgangp, --model cycle_gan ----------------------------------------------------------
@fault(cls=CLI, case="--gan_mode wgangp (the pix2pix/CycleGAN repo's WGAN-GP): one line saying it is not "
                     "implemented, with the choices (was argparse's bare invalid choice)")
def test_gan_mode_wgangp_says_wgan_gp_is_not_implemented(tmp_path, capsys, monkeypatch):
    err = _one_line(train_main, _train(tmp_path, "--model", "pix2pix", "--gan_mode", "wgangp", "--dry_run"),
                    capsys, monkeypatch)
    assert err.startswith("error: --gan_mode wgangp is the pix2pix/CycleGAN repo's WGAN-GP"), err
    assert "WGAN-GP is not implemented here" in err and "(it takes lsgan, vanilla or hinge)" in err, err
    with pytest.raises(ConfigError, match="WGAN-GP is not implemented here"):
        TrainConfig(gan_mode="wgangp").resolved()
    # any other value stays argparse's refusal with the choices (the help lists them alone)
    with pytest.raises(SystemExit) as e:
        train_main(_train(tmp_path, "--gan_mode", "wgan"))
    assert e.value.code == 2 and "invalid choice: 'wgan' (choose from 'lsgan', 'vanilla', 'hinge')" in \
        capsys.readouterr().err
    assert "{lsgan,vanilla,hinge}" in train_parser([]).format_help()


def test_model_cycle_gan_is_cyclegan_as_pix2pixHD_is_pix2pixhd():
    assert resolve_config(["--model", "cycle_gan"]) == resolve_config(["--model", "cyclegan"])
    assert resolve_config(["--model", "Cycle_GAN"]).model == "cyclegan"
    assert TrainConfig(model="cycle_gan").resolved().model == "cyclegan"


def test_import_reference_reads_model_cycle_gan(tmp_path, capsys):
    # it said "... not NVIDIA's pix2pixHD: add --model cyclegan", as if --model had not been given
    from pix2pixhd.checkpoint import load_checkpoint
    from pix2pixhd.import_reference import main as import_main
    from tests.test_import_repo_runs import _cyclegan
    src = _cyclegan(tmp_path / "repo" / "h2z")
    ck = tmp_path / "ck"
    assert import_main([str(src), "--model", "cycle_gan", "--name", "h2z", "--checkpoints_dir", str(ck)]) == 0
    assert ": G_A, G_B, D_A, D_B; epoch 1" in capsys.readouterr().out
    assert load_checkpoint(ck / "h2z")["config"]["model"] == "cyclegan"


# ---- 3. the repo's options without one here ----------------------------------------------------------
TRAIN_CASES = {
    "--display_id -1": "no visdom display here", "--display_port 8097": "no visdom display here",
    "--display_server http://localhost": "drop --display_server", "--display_env main": "drop --display_env",
    "--display_ncols 4": "drop --display_ncols", "--update_html_freq 1000": "every --display_freq steps",
    "--use_wandb": "no Weights & Biases", "--wandb_project_name p": "drop --wandb_project_name",
    "--load_iter 5": "--which_epoch", "--save_by_iter": "every --save_latest_freq steps",
    "--suffix x": "put what it would add in --name", "--num_test 50": "--how_many N",
}
SYNTHESIZE_CASES = {
    "--num_test 50": "use --how_many", "--dataset_mode single": "--input FOLDER",
    "--dataset_mode aligned": "drop --dataset_mode", "--load_iter 5": "--which_epoch",
    "--model_suffix _A": "--direction (AtoB: G_A, BtoA: G_B)", "--preprocess none": "--scale_width trained",
    "--load_size 286": "--scale_width trained", "--crop_size 256": "drop --crop_size",
    "--num_threads 4": "use --workers", "--no_dropout": "--no_test_dropout", "--max_dataset_size 9": "--how_many",
    "--netD basic": "drop --netD", "--ndf 64": "drop --ndf", "--n_layers_D 3": "drop --n_layers_D",
    "--display_id -1": "no visdom", "--display_port 8097": "no visdom", "--use_wandb": "drop --use_wandb",
    "--wandb_project_name p": "drop --wandb_project_name", "--suffix x": "--checkpoint CHECKPOINTS_DIR/NAME",
}


@fault(cls=CLI, case="an option of the pix2pix/CycleGAN repo's train.py with no equivalent here (--display_id, "
                     "--load_iter, --num_test...): one line naming that repo and what to use (argparse's closest "
                     "spelling named another option)")
@pytest.mark.parametrize("given", list(TRAIN_CASES))
def test_the_repos_training_options_are_one_line_naming_what_to_use(tmp_path, capsys, monkeypatch, given):
    err = _one_line(train_main, _train(tmp_path, *given.split(), "--dry_run"), capsys, monkeypatch)
    assert err.startswith(f"error: {given} is an option of the pix2pix/CycleGAN repo's code "
                          "(junyanz/pytorch-CycleGAN-and-pix2pix), not of train_hd.py: "), err
    assert TRAIN_CASES[given] in err and "did you mean" not in err, err


@fault(cls=CLI, case="an option of the pix2pix/CycleGAN repo's test.py synthesize.py has not (--num_test, "
                     "--dataset_mode, --load_iter...): one line naming what to use")
@pytest.mark.parametrize("given", list(SYNTHESIZE_CASES))
def test_the_repos_test_options_are_one_line_naming_what_to_use(tmp_path, capsys, monkeypatch, given):
    argv = ["--checkpoint", str(tmp_path / "run"), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
            *given.split()]
    err = _one_line(synthesize_main, argv, capsys, monkeypatch)
    assert err.startswith(f"error: {given} is an option of the pix2pix/CycleGAN repo's test.py "
                          "(junyanz/pytorch-CycleGAN-and-pix2pix), not of synthesize.py: "), err
    assert SYNTHESIZE_CASES[given] in err and "did you mean" not in err, err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_the_repo_tables_are_all_tried_and_name_no_option_of_the_command():
    assert {g.split()[0][2:] for g in TRAIN_CASES} == set(config.REPO_ONLY)
    assert {g.split()[0][2:] for g in SYNTHESIZE_CASES} == set(config.SYNTHESIZE_REPO_ONLY)
    for table, parser in ((config.REPO_ONLY, train_parser([])), (config.SYNTHESIZE_REPO_ONLY, synthesize_parser())):
        assert not {f"--{k}" for k in table} & set(parser._option_string_actions)
    assert not set(config.REPO_ONLY) & set(config.REFERENCE_ONLY)
    assert not set(config.SYNTHESIZE_REPO_ONLY) & set(config.SYNTHESIZE_REFERENCE_ONLY)


# ---- 4. the pix2pix/CycleGAN networks without --model ------------------------------------------------
@fault(cls=CLI, case="--netD basic or pixel without --model (the pix2pix/CycleGAN repo's default is "
                     "cycle_gan): refused naming --model pix2pix (basic, pix2pixHD's recorded default, was "
                     "taken silently)")
@pytest.mark.parametrize("netD", ["basic", "pixel"])
def test_netD_without_model_says_to_add_model_pix2pix(tmp_path, netD):
    with pytest.raises(ConfigError) as e:
        resolve_config(_train(tmp_path, "--netD", netD))
    assert str(e.value).startswith(f"--netD_pix2pix {netD}: --model pix2pixhd does not use it"), str(e.value)
    assert str(e.value).endswith("add --model pix2pix (or cyclegan) to train with it, or drop --netD_pix2pix")
    assert resolve_config(_train(tmp_path, "--model", "pix2pix", "--netD", netD)).netD_pix2pix == netD
    # --model pix2pixhd given: pix2pixHD was meant, and the option is dropped (its default passes, as a
    # command rebuilt from a run's config.json gives it)
    with pytest.raises(ConfigError, match=r"\): drop --netD_pix2pix$"):
        resolve_config(_train(tmp_path, "--model", "pix2pixhd", "--netD", "pixel"))
    assert resolve_config(_train(tmp_path, "--model", "pix2pixhd", "--netD", "basic")).model == "pix2pixhd"


@fault(cls=CLI, case="a CycleGAN-only option (--lambda_A) without --model: refused naming --model cyclegan")
def test_an_option_of_another_model_without_model_names_that_model(tmp_path):
    with pytest.raises(ConfigError, match=r"^--lambda_A 5\.0: --model pix2pixhd does not use it .*: add --model "
                                          r"cyclegan to train with it, or drop --lambda_A$"):
        resolve_config(_train(tmp_path, "--lambda_A", "5"))


# ---- 5. the README's Trainer(TrainConfig(...).resolved()).fit() -----------------------------------------
def test_trainer_and_trainconfig_import_from_the_package_lazily():
    from pix2pixhd import Trainer, TrainConfig as Config
    from pix2pixhd.trainer import Trainer as FromTrainer
    assert Trainer is FromTrainer and Config is TrainConfig
    # the package's import stays light: neither torch nor the trainer until Trainer is asked for
    code = ("import sys, pix2pixhd\n"
            "assert 'torch' not in sys.modules and 'pix2pixhd.trainer' not in sys.modules\n"
            "from pix2pixhd import TrainConfig\n"
            "assert 'torch' not in sys.modules\n"
            "from pix2pixhd import Trainer\n"
            "assert Trainer.__module__ == 'pix2pixhd.trainer'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr

"""FX48: the command-line findings FX45 and FX47 left. CycleGAN's trainA/ + trainB/ given to the
default pix2pixhd was refused as missing VGG19 weights (the layout only with --no_vgg_loss);
``--model cycle_gan --help`` showed pix2pixhd's defaults and ``python -m pix2pixhd.data scan``
refused the alias; ``--display_id -1`` was refused without its value (-1 read as an option);
NVIDIA's test options --ntest (-> "did you mean --netG?"), --how_many and --results_dir given to
train_hd.py got spelling suggestions; and the refusals of the reference's options said "not of this
project" of options that another command of the project has (the features command worded its own
lines to avoid it; it now shares reference_only_error, and refuses --ntest as docs/features.md says)."""
import numpy as np
import pytest
from PIL import Image

from pix2pixhd import config, errors, features
from pix2pixhd.cli import synthesize_main, train_main, train_parser
from pix2pixhd.data import DatasetError
from pix2pixhd.data.__main__ import main as data_main

CLI = "command-line errors"
fault = pytest.mark.fault


def _folders(root, names, n=2):
    """Two 32x32 photos in each folder of ``names``."""
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((32, 32, 3), 40 + i, np.uint8)).save(root / name / f"s{i}.png")
    return root


def _one_line(main, argv, capsys, monkeypatch) -> str:
    """The one error line ``main`` prints for ``argv`` through errors.run (status 1)."""
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)   # another test's --debug
    capsys.readouterr()
    assert errors.run(main, argv) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (out, err)
    return err


# ---- 1. the layout before the VGG19 weights ---------------------------------------------------------
@fault(cls="bad dataset", case="CycleGAN's trainA/ + trainB/ given to train_hd.py without --model (pix2pixhd, "
                               "whose VGG loss needs weights that are not there): the layout is named, with "
                               "--model cyclegan, before the missing VGG19 weights (which it never uses)")
@pytest.mark.parametrize("dry_run", [False, True])
def test_the_unaligned_layout_is_named_before_the_missing_vgg_weights(tmp_path, dry_run):
    root = _folders(tmp_path / "d", ["trainA", "trainB"])
    argv = ["--dataroot", str(root), "--name", "q", "--checkpoints_dir", str(tmp_path / "ck"), "--device", "cpu",
            "--nThreads", "0", "--no_progress", "--vgg_path", str(tmp_path / "no_vgg19.pth")]
    with pytest.raises(DatasetError, match=r"holds the unaligned layout \(trainA/ \+ trainB/\), CycleGAN's.*"
                                           r"--model pix2pixhd cannot train on.*train it with --model cyclegan"):
        train_main(argv + (["--dry_run"] if dry_run else []))
    assert not (tmp_path / "ck").exists()
    # paired data: the missing weights are still what is refused
    pairs = _folders(tmp_path / "p", ["train_A", "train_B"])
    argv[1] = str(pairs)
    with pytest.raises(errors.UserError, match=r"^VGG19 weights not found at .*no_vgg19\.pth"):
        train_main(argv + ["--label_nc", "0"] + (["--dry_run"] if dry_run else []))


@fault(cls="bad dataset", case="Trainer(cfg) from Python for CycleGAN's layout with --model pix2pixhd: the "
                               "layout is refused before VGGLoss looks for its weights")
def test_the_trainer_refuses_the_layout_before_building_the_vgg_loss(tmp_path):
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.trainer import Trainer
    root = _folders(tmp_path / "d", ["trainA", "trainB"])
    cfg = resolve_config(["--dataroot", str(root), "--checkpoints_dir", str(tmp_path / "ck"), "--device", "cpu",
                          "--vgg_path", str(tmp_path / "no_vgg19.pth")])
    with pytest.raises(DatasetError, match="--model pix2pixhd cannot train on"):
        Trainer(cfg)


# ---- 2 and 4. --model cycle_gan, the repo's spelling, everywhere --model is read ----------------------
def test_model_cycle_gan_help_shows_cyclegans_defaults():
    shown = " ".join(train_parser(["--model", "cycle_gan"]).format_help().split())
    assert "(default: unaligned; --model pix2pixhd: auto; --model pix2pix: aligned)" in shown   # --dataset_mode
    assert train_parser(["--model", "cycle_gan"]).format_help() == train_parser(["--model", "cyclegan"]).format_help()
    assert train_parser(["--model", "cycle_gan"]).format_help() != train_parser([]).format_help()


def test_scan_reads_model_cycle_gan_as_cyclegan(tmp_path, capsys):
    root = _folders(tmp_path / "d", ["trainA", "trainB"])
    assert data_main(["scan", str(root), "--model", "cycle_gan"]) == 0
    assert "sizes as train_hd.py --model cyclegan reads them" in capsys.readouterr().out


# ---- 3. a negative number after an option is its value ------------------------------------------------
@fault(cls=CLI, case="--display_id -1 (the repo's habit, visdom off): the one-line refusal shows the value, "
                     "which argparse reads as the option's, not as an option")
@pytest.mark.parametrize("main", ["train", "synthesize"])
@pytest.mark.parametrize("form", [["--display_id", "-1"], ["--display_id=-1"]], ids=["space", "equals"])
def test_a_negative_value_is_shown_with_its_option(tmp_path, capsys, monkeypatch, main, form):
    if main == "train":
        run, argv = train_main, ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"),
                                 *form, "--dry_run"]
    else:
        run, argv = synthesize_main, ["--checkpoint", str(tmp_path / "run"), "--input", str(tmp_path / "in"),
                                      "--out", str(tmp_path / "o"), *form]
    err = _one_line(run, argv, capsys, monkeypatch)
    assert err.startswith("error: --display_id -1 is an option of the pix2pix/CycleGAN repo's "), err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


# ---- 5. NVIDIA's test options given to train_hd.py; which command the line names ------------------------
@fault(cls=CLI, case="NVIDIA's test options given to train_hd.py (--ntest, --how_many, --results_dir): one line "
                     "naming synthesize.py's option (--ntest was 'did you mean --netG?')")
@pytest.mark.parametrize("given, says", [
    ("--ntest 5", "synthesize.py --checkpoint RUN --dataroot DATASET --phase test --out OUT --how_many N"),
    ("--how_many 5", "synthesize.py --checkpoint RUN --dataroot DATASET --phase test --out OUT --how_many N"),
    ("--results_dir ./results", "writes the synthesized dataset to OUT (--out)")],
    ids=["ntest", "how_many", "results_dir"])
def test_nvidias_test_options_on_train_hd_name_synthesize(tmp_path, capsys, monkeypatch, given, says):
    argv = ["--dataroot", str(tmp_path / "d"), "--checkpoints_dir", str(tmp_path / "ck"), *given.split(), "--dry_run"]
    err = _one_line(train_main, argv, capsys, monkeypatch)
    assert err.startswith(f"error: {given} is an option of the reference code (NVIDIA's pix2pixHD, the "
                          "pix2pix/CycleGAN repo), not of train_hd.py: it is a test option: "), err
    assert says in err and "did you mean" not in err, err
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


@fault(cls=CLI, case="train_hd.py --batch_size 4 (the repo's name of --batchSize): the line says it is not "
                     "train_hd.py's option, not that this project has none (synthesize.py has --batch_size)")
def test_train_hds_refusal_names_train_hd_not_the_project(capsys, monkeypatch):
    err = _one_line(train_main, ["--batch_size", "4", "--dry_run"], capsys, monkeypatch)
    assert ", not of train_hd.py: use --batchSize" in err and "this project" not in err, err


def test_the_features_commands_refusals_come_from_reference_only_error():
    """One function words every command's refusal: the features command's table holds the fixes
    alone, and its lines name it (--name and --label_nc are train_hd.py's options)."""
    assert all(isinstance(fix, str) for fix in features.REFERENCE_ONLY.values())
    line = config.reference_only_error("label_nc", "35", features.REFERENCE_ONLY, "python -m pix2pixhd.features")
    assert line == ("--label_nc 35 is an option of the reference's encode_features.py / precompute_feature_maps.py "
                    "(NVIDIA's pix2pixHD), not of python -m pix2pixhd.features: the encoder's and the data's "
                    "options come from the checkpoint's config.json: drop --label_nc")
    assert config.reference_only_error("display_id", None, features.REFERENCE_ONLY, "python -m pix2pixhd.features") \
        is None   # the repo's tables are train_hd.py's and synthesize.py's


@fault(cls=CLI, case="python -m pix2pixhd.features encode --ntest 5 (NVIDIA's habit, which docs/features.md "
                     "says is refused): one line naming --how_many, status 1")
def test_features_refuses_ntest_naming_how_many(capsys, monkeypatch):
    err = _one_line(features.main, ["encode", "--checkpoint", "ck/g", "--ntest", "5"], capsys, monkeypatch)
    assert err == ("error: --ntest 5 is an option of the reference's encode_features.py / "
                   "precompute_feature_maps.py (NVIDIA's pix2pixHD), not of python -m pix2pixhd.features: use "
                   "--how_many (at most this many images)\n"), err

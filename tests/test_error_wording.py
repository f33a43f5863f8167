"""Error messages an error-quality review found short of the project's rule (one line naming the
file, the value and the fix; options as --help spells them): each test reproduces one and checks
the new wording's key parts."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pix2pixhd.config import TrainConfig
from pix2pixhd.errors import ConfigError, InputError, MissingInputError, run
from tests.test_synthesis_engine import save_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
REPO = Path(__file__).resolve().parents[1]


def _city(root: Path, top: int = 3, classes: dict | None = None) -> Path:
    """A one-sample Cityscapes-layout split (no instance maps) whose label map's largest id is
    ``top``; ``classes``: its classes.json."""
    for d in ("train_label", "train_img"):
        (root / d).mkdir(parents=True)
    ids = np.zeros((32, 32), np.uint8)
    ids[0, 0] = top
    Image.fromarray(ids).save(root / "train_label" / "a.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train_img" / "a.png")
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    return root


def _error(capsys, main, argv) -> str:
    """The error of ``main(argv)`` through errors.run (status 1): its `error:` line and, for a
    dataset's problems, the list under it."""
    capsys.readouterr()
    assert run(main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    first = next((i for i, line in enumerate(err) if line.startswith("error: ")), None)
    assert first is not None, err
    return "\n".join(err[first:])


def _train_argv(tmp_path: Path, root: Path, *extra) -> list[str]:
    return ["--dataroot", str(root), "--name", "x", "--checkpoints_dir", str(tmp_path / "ck"), "--label_nc", "5",
            "--no_instance", "--no_vgg_loss", "--device", "cpu", "--resize_or_crop", "none", *extra]


# ---- 1. TrainConfig's type, choice, device and which_epoch checks name the option --------------
@pytest.mark.parametrize("option, value, says", [
    ("which_epoch", "foo", "--which_epoch 'foo': expected 'latest' or an epoch number N (the file epoch_NNNN.pt"),
    ("device", "tpu", "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
    ("precision", "BF16", "--precision 'BF16': expected one of fp32, bf16, fp16"),
    ("ngf", "8", "--ngf '8': must be int")])
@pytest.mark.fault(cls="command-line errors", case="a Python config's {option}={value!r}: the option as on "
                                                  "the command line")
def test_a_config_value_out_of_its_choices_names_the_option_as_the_command_line(option, value, says):
    # it said which_epoch='foo' (the field's name), and for an epoch no word of its file
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{option: value}).resolved()
    assert str(e.value).startswith(says), str(e.value)


# ---- 2. the data module's label_nc fixes say --label_nc; --dry_run reads classes.json -------------
@pytest.mark.fault(cls="bad dataset", case="a label id >= --label_nc: the fix says pass --label_nc N")
def test_an_id_past_label_nc_says_pass_label_nc(tmp_path, capsys):
    from pix2pixhd.cli import train_main
    root = _city(tmp_path / "d", top=8)
    err = _error(capsys, train_main, _train_argv(tmp_path, root))
    assert "label id 8 in train_label/a.png is >= label_nc=5; pass --label_nc 9 or remap ids" in err, err
    assert "set label_nc" not in err, err


@pytest.mark.fault(cls="bad dataset", case="classes.json's label_nc above --label_nc: refused by --dry_run "
                                           "too, the fix says pass --label_nc N")
def test_a_classes_json_with_more_classes_is_refused_by_the_dry_run_as_by_the_start(tmp_path, capsys):
    from pix2pixhd.cli import train_main
    root = _city(tmp_path / "d", top=3, classes={"label_nc": 9})
    says = f"{root / 'classes.json'} says label_nc=9 but --label_nc 5 was given; pass --label_nc 9"
    for extra in (["--dry_run"], ["--niter", "1", "--niter_decay", "0", "--ngf", "4", "--ndf", "4"]):
        err = _error(capsys, train_main, _train_argv(tmp_path, root, *extra))   # the dry run said all was well
        assert says in err, (extra, err)
    assert not (tmp_path / "ck" / "x").exists()


def test_synthesis_gets_no_label_nc_fix_from_the_data_module(tmp_path, capsys):
    """synthesize.py has no --label_nc: the data module's fixes come out in synthesis's words."""
    from pix2pixhd.cli import synthesize_main
    save_run(tmp_path / "run", label_nc=5, no_instance=True)
    argv = ["--checkpoint", str(tmp_path / "run"), "--phase", "train", "--device", "cpu", "--workers", "0",
            "--no_progress", "--validate", "full"]
    void = _error(capsys, synthesize_main, [*argv, "--dataroot", str(_city(tmp_path / "v", top=255)),
                                             "--out", str(tmp_path / "o1")])
    more = _error(capsys, synthesize_main, [*argv, "--dataroot", str(_city(tmp_path / "c", classes={"label_nc": 9})),
                                             "--out", str(tmp_path / "o2")])
    assert "255 is usually an 'ignore' (void) id" in void and "label_nc 256" not in void, void
    assert "says label_nc=9 but the checkpoint was trained with fewer classes: use a checkpoint trained on " \
           "this dataset's classes" in more, more
    assert "--label_nc" not in void + more


# ---- 3. a bare state_dict where a run's checkpoint is expected --------------------------------------
@pytest.mark.fault(cls="damaged run folder", case="latest.pt is a bare state_dict (torch.save(G.state_dict())): "
                                                  "its keys and the fix")
def test_a_bare_state_dict_says_what_it_holds_and_the_fix(tmp_path, capsys):
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.models import build_generator
    run_dir = tmp_path / "RB"
    cfg = save_run(run_dir, label_nc=5, no_instance=True)
    torch.save(build_generator(cfg).state_dict(), run_dir / "latest.pt")
    (tmp_path / "in").mkdir()
    for target in (run_dir, run_dir / "latest.pt"):   # the run folder (config.json read) and the file alone
        err = _error(capsys, synthesize_main, ["--checkpoint", str(target), "--input", str(tmp_path / "in"),
                                               "--out", str(tmp_path / "out"), "--device", "cpu"])
        # it said: RB (latest) holds no generator 'G' (it holds [])
        assert f"{run_dir / 'latest.pt'} holds no " in err and "was not written by train_hd.py" in err, err
        assert "its top-level entries are 'model." in err and "a bare state_dict?" in err, err
        assert "pass a run folder that train_hd.py wrote" in err and "python -m pix2pixhd.import_reference" in err


# ---- 4. a checkpoint without global_step ---------------------------------------------------------------
@pytest.mark.fault(cls="damaged run folder", case="a checkpoint with no global_step: not written by "
                                                  "train_hd.py, and the fix")
def test_a_checkpoint_without_global_step_says_who_did_not_write_it_and_the_fix(tmp_path, capsys):
    from pix2pixhd.features import main as features_main
    from pix2pixhd.models import build_encoder
    run_dir = tmp_path / "RF"
    cfg = save_run(run_dir, instance_feat=True)   # G and config, no global_step (train_hd.py writes one)
    ck = load_checkpoint(run_dir)
    ck["E"] = build_encoder(cfg).state_dict()
    save_checkpoint(ck, run_dir, "latest", cfg.to_json())
    err = _error(capsys, features_main, ["encode", "--checkpoint", str(run_dir), "--device", "cpu",
                                         "--dataroot", str(tmp_path / "none")])
    # it said: RF/latest.pt is not a training checkpoint (no global_step)
    assert (f"{run_dir / 'latest.pt'} was not written by train_hd.py: it holds no 'global_step' entry (its "
            "top-level entries are 'G', 'config', 'E')") in err, err
    assert "pass a run folder that train_hd.py wrote" in err and "import_reference" in err, err


# ---- 5. --palette that names nothing --------------------------------------------------------------
@pytest.mark.fault(cls="command-line errors", case="--palette nosuch: the named palettes and the JSON file's shape")
def test_an_unknown_palette_names_the_option_the_palettes_and_the_file_format(tmp_path, capsys):
    from pix2pixhd.data.__main__ import main as data_main
    root = _city(tmp_path / "d")
    err = _error(capsys, data_main, ["scan", str(root), "--palette", "nosuch"])
    # it said: palette='nosuch' is neither a named palette ('facades',) nor a JSON file
    assert err.startswith("error: --palette nosuch: no such named palette (facades) and no such file; pass "
                          "--palette facades or the path of a JSON file holding a list of [r, g, b] colours"), err
    assert '{"palette": [...]}' in err


# ---- 6. scan of a folder with no split ------------------------------------------------------------
@pytest.mark.fault(cls="bad dataset", case="scan of a split's folder (D/train_img): one error line naming the root")
def test_scan_of_a_split_folder_is_one_error_line_naming_the_dataset_root(tmp_path, capsys):
    from pix2pixhd.data.__main__ import main as data_main
    root = _city(tmp_path / "D")
    capsys.readouterr()
    with pytest.raises(InputError):
        data_main(["scan", str(root / "train_img")])
    assert run(data_main, ["scan", str(root / "train_img")]) == 1
    out, err = capsys.readouterr()
    # it printed "D/train_img: no splits found (...)" on stdout, no error:
    assert out == "" and err.count("\n") == 1 and err.startswith(f"error: {root / 'train_img'}: no splits found"), err
    assert f"python -m pix2pixhd.data scan {root}" in err and "(its splits: train)" in err, err


# ---- 7. --dry_run with --checkpoints_dir a file ---------------------------------------------------
@pytest.mark.fault(cls="command-line errors", case="--dry_run with --checkpoints_dir a file: refused as the "
                                                   "start refuses it")
def test_the_dry_run_refuses_a_checkpoints_dir_that_is_a_file(tmp_path, capsys):
    from pix2pixhd.cli import train_main
    root = _city(tmp_path / "d")
    (tmp_path / "file").write_text("x")
    argv = _train_argv(tmp_path, root, "--dry_run")
    argv[argv.index("--checkpoints_dir") + 1] = str(tmp_path / "file")
    err = _error(capsys, train_main, argv)   # it exited 0
    assert f"--checkpoints_dir {tmp_path / 'file'} is a file, not a folder" in err, err


# ---- 8. evaluate's segmentation options, some missing -----------------------------------------------
@pytest.mark.fault(cls="command-line errors", case="evaluate --labels without --train_images/--train_labels: "
                                                   "names the missing ones")
def test_a_segmentation_score_without_all_its_options_names_the_missing_ones(tmp_path, capsys):
    from pix2pixhd.evaluate import main as evaluate_main
    root = _city(tmp_path / "d")
    err = _error(capsys, evaluate_main, ["--fake", str(root / "train_img"), "--real", str(root / "train_img"),
                                         "--labels", str(root / "train_label"), "--label_nc", "5", "--no_fid",
                                         "--device", "cpu"])
    # it said: the segmentation score needs all of --labels, --train_images, --train_labels and --label_nc N > 0
    assert err == (f"error: --labels {root / 'train_label'} --label_nc 5: the segmentation score also needs "
                   "--train_images, --train_labels: give them, or drop --labels --label_nc (no segmentation "
                   "score)"), err


# ---- 9. a checkpoint whose config trains E but which holds none -------------------------------------
@pytest.mark.fault(cls="damaged run folder", case="a checkpoint whose config trains an encoder holds no E: "
                                                  "incomplete, and the fix")
def test_a_checkpoint_missing_the_encoder_its_config_trains_is_called_incomplete(tmp_path, capsys):
    from pix2pixhd.features import load_encoder
    run_dir = tmp_path / "RF"
    cfg = save_run(run_dir, instance_feat=True)
    ck = load_checkpoint(run_dir)
    ck["global_step"] = 3
    save_checkpoint(ck, run_dir, "latest", cfg.to_json())
    save_checkpoint(ck, run_dir, 2, cfg.to_json())
    with pytest.raises(CheckpointError) as e:
        load_encoder(run_dir)
    # it said the run "was trained without --instance_feat"
    assert str(e.value).startswith(f"{run_dir / 'latest.pt'} is incomplete: it holds no encoder E although its "
                                   "config trains one (--instance_feat); pass --which_epoch 2"), str(e.value)
    assert "train_hd.py --resume" in str(e.value) and "trained without" not in str(e.value)


# ---- 10. encode_features without instance maps ------------------------------------------------------
def test_encode_features_without_instance_maps_is_an_input_error_naming_the_folder():
    from pix2pixhd.features import encode_features
    batch = {"image": torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "label": torch.zeros(1, 1, 8, 8),
             "path": ["D/train_img/a.png"]}
    with pytest.raises(InputError) as e:   # a plain ValueError that printed {phase} as it is
        encode_features(torch.nn.Identity(), [batch])
    assert "{phase}" not in str(e.value) and "the batch of D/train_img/a.png has none" in str(e.value)
    assert "train_inst/" in str(e.value) and "--label_feat" in str(e.value)


# ---- 11. main_job's sample sheet with no scene --------------------------------------------------------
def test_main_jobs_sample_sheet_with_no_scene_is_a_missing_input_error(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("main_job_fx11", REPO / "scripts" / "main_job.py")
    mj = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mj)
    for d in ("label", "fake", "real"):
        (tmp_path / d).mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "label" / "a.png")
    with pytest.raises(MissingInputError) as e:   # a plain FileNotFoundError: a traceback
        mj.write_sample_sheet(tmp_path / "s.png", tmp_path / "label", tmp_path / "fake", tmp_path / "real", 3)
    assert str(e.value).startswith(f"{tmp_path / 's.png'}: no scene to show"), str(e.value)
    assert f"{tmp_path / 'fake'} (0)" in str(e.value) and "check that synthesize.py wrote" in str(e.value)

"""A user walkthrough's data findings, second round: --direction BtoA on {phase}_A/ + {phase}_B/,
a paired model on CycleGAN's layout (and CycleGAN on paired data), synthesis of one CycleGAN
domain beside an empty or broken other one, and scan's judgement of a missing {phase}_inst/."""
import json

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.__main__ import main as data_main

PHOTOS = dict(label_nc=0, no_instance=True, resize_or_crop="none", required_multiple=1)


def _photo(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)


def _folders(root, names, n=2):
    """Photos of value 40 in folders ending in A, 200 in those ending in B."""
    for name in names:
        for i in range(n):
            _photo(root / name / f"s{i}.png", (40 if name.endswith("A") else 200) + i)
    return root


# 1 -----------------------------------------------------------------------------------------------
def test_btoa_makes_the_B_folder_the_input_of_rgb_pairs(tmp_path):
    root = _folders(tmp_path, ["train_A", "train_B"])
    s = create_dataset(root, "train", direction="BtoA", **PHOTOS)[0]
    assert s["path"].endswith("train_B/s0.png")
    assert int(s["label"][0, 0, 0]) == 200 and int(s["image"][0, 0, 0]) == 40
    s = create_dataset(root, "train", **PHOTOS)[0]   # AtoB, as before
    assert int(s["label"][0, 0, 0]) == 40 and int(s["image"][0, 0, 0]) == 200
    # synthesis's inputs alone (no target folder): BtoA reads test_B/
    _folders(tmp_path, ["test_B"])
    ds = create_dataset(root, "test", direction="BtoA", dataset_mode="rgb_pairs", inputs_only=True, **PHOTOS)
    assert [r["label"].parent.name for r in ds.records] == ["test_B", "test_B"]
    assert "image" not in ds[0]


def test_a_training_run_with_btoa_reads_B_as_its_input(tmp_path):
    from pix2pixhd.cli import resolve_config
    root = _folders(tmp_path, ["train_A", "train_B"])
    cfg = resolve_config(["--model", "pix2pix", "--dataroot", str(root), "--dataset_mode", "rgb_pairs",
                          "--direction", "BtoA", "--checkpoints_dir", str(tmp_path / "ck")])
    s = create_dataset(cfg.dataroot, cfg.phase, cfg.data_config(validate="off", is_train=True))[(0, 0)]
    assert s["path"].endswith("train_B/s0.png")   # (trainer.make_loader's call)
    assert int(s["label"].float().mean()) == 200 and int(s["image"].float().mean()) == 40


def test_scan_names_the_input_folder_and_pairs_by_it_with_btoa(tmp_path, capsys):
    root = _folders(tmp_path, ["train_A", "train_B"])
    _photo(root / "train_B" / "extra.png", 9)
    assert data_main(["scan", str(root), "--direction", "BtoA"]) == 1
    out = capsys.readouterr().out
    assert "input photos train_B/, targets train_A/ (--direction BtoA)" in out, out
    assert "train_B/extra.png has no train_A/extra.*" in out, out


# 2 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["pix2pix", "pix2pixhd"])
@pytest.mark.parametrize("mode", ["unaligned", "auto"])
def test_a_paired_model_is_refused_the_unaligned_layout_in_one_line(tmp_path, model, mode):
    root = _folders(tmp_path, ["trainA", "trainB"])
    with pytest.raises(DatasetError) as e:   # pix2pixhd's label_nc 35: the layout is named first
        create_dataset(root, "train", dataset_mode=mode, model=model,
                       **{**PHOTOS, "label_nc": 0 if model == "pix2pix" else 35})
    msg = str(e.value)
    assert "\n" not in msg and "holds the unaligned layout (trainA/ + trainB/), CycleGAN's" in msg, msg
    assert f"--model {model} cannot train on" in msg and "--model cyclegan" in msg, msg
    assert "train_A/ + train_B/" in msg and "side-by-side A|B images in train/" in msg, msg
    assert "--dataset_mode unaligned" not in msg, msg


@pytest.mark.parametrize("mode", ["unaligned", "auto"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_train_hd_refuses_the_unaligned_layout_for_pix2pix_before_writing(tmp_path, dry_run, mode):
    """It wrote config.json, lineage.json and loss_log.txt, then failed at the first step with a
    KeyError traceback; the same command was then refused as a folder holding a run."""
    from pix2pixhd.cli import train_main
    root = _folders(tmp_path / "d", ["trainA", "trainB"])
    argv = ["--model", "pix2pix", "--dataroot", str(root), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "r", "--ngf", "4", "--ndf", "4", "--device", "cpu", "--nThreads", "0", "--no_progress",
            "--dataset_mode", mode]
    with pytest.raises(DatasetError, match=r"holds the unaligned layout \(trainA/ \+ trainB/\), CycleGAN's.*"
                                           r"--model pix2pix cannot train on"):
        train_main(argv + (["--dry_run"] if dry_run else []))
    assert not (tmp_path / "ck" / "r").exists()


def test_the_wrong_layout_message_does_not_send_a_paired_model_to_the_unaligned_layout(tmp_path):
    root = _folders(tmp_path, ["trainA", "trainB"])
    for model in (None, "pix2pix"):   # pix2pix's default dataset_mode, aligned
        with pytest.raises(DatasetError) as e:
            create_dataset(root, "train", dataset_mode="aligned", model=model, **PHOTOS)
        assert "--dataset_mode unaligned" not in str(e.value) and "--model cyclegan" in str(e.value)
    # CycleGAN on paired data: refused too (its samples have no domains A and B)
    sep = _folders(tmp_path / "sep", ["train_A", "train_B"])
    with pytest.raises(DatasetError, match=r"--model cyclegan reads two domains .* holds the rgb_pairs"):
        create_dataset(sep, "train", dataset_mode="unaligned", model="cyclegan", **PHOTOS)
    assert len(create_dataset(root, "train", dataset_mode="unaligned", model="cyclegan", **PHOTOS)) == 2


def test_scan_with_a_paired_model_reports_the_unaligned_layout(tmp_path, capsys):
    root = _folders(tmp_path, ["trainA", "trainB"])
    assert data_main(["scan", str(root)]) == 0   # judged as cyclegan's
    capsys.readouterr()
    assert data_main(["scan", str(root), "--model", "pix2pix"]) == 1
    assert "[train] " + str(root) + " holds the unaligned layout" in capsys.readouterr().out


# 3 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("other", ["empty", "unreadable"])
def test_synthesis_of_one_domain_reads_and_checks_that_domain_alone(tmp_path, other):
    root = _folders(tmp_path, ["testB"])
    (root / "testA").mkdir()
    if other == "unreadable":
        (root / "testA" / "x.png").write_bytes(b"not an image")
    kw = dict(dataset_mode="unaligned", inputs_only=True, validate="full", **PHOTOS)
    ds = create_dataset(root, "test", read_domain="B", **kw)
    assert [r["B"].name for r in ds.records_B] == ["s0.png", "s1.png"] and ds.records == []
    with pytest.raises(DatasetError, match="testA/"):   # the domain read is checked
        create_dataset(root, "test", read_domain="A", **kw)
    with pytest.raises(DatasetError, match="testA/"):   # not named: both domains, as before
        create_dataset(root, "test", **kw)


# 4 -----------------------------------------------------------------------------------------------
def test_scan_reports_a_missing_inst_folder_as_training_would(tmp_path, capsys):
    for d in ("train_label", "train_img", "test_label", "test_img"):
        (tmp_path / d).mkdir()
    ids = Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 4).astype(np.uint8))
    for phase in ("train", "test"):
        ids.save(tmp_path / f"{phase}_label" / "s0.png")
        _photo(tmp_path / f"{phase}_img" / "s0.png", 100)
    assert data_main(["scan", str(tmp_path), "--label_nc", "4", "--required_multiple", "1"]) == 1
    out = capsys.readouterr().out
    assert "train_inst does not exist; pass no_instance=True (--no_instance)" in out, out
    assert "test_inst does not exist" in out   # a size option given: test is judged as training too
    for more in (["--no_instance"], ["--model", "pix2pix"]):
        assert data_main(["scan", str(tmp_path), "--label_nc", "4", "--required_multiple", "1"] + more) == 0
    capsys.readouterr()
    # no size option: test is read as synthesize.py reads it, which uses instance maps where there are any
    assert data_main(["scan", str(tmp_path), "--label_nc", "4"]) == 1
    out = capsys.readouterr().out
    assert "train_inst does not exist" in out and "test_inst" not in out, out


def test_a_run_saved_before_btoa_applied_to_folders_goes_on_as_it_learned(tmp_path, capsys):
    """Before c71ccdc, --direction BtoA was read as AtoB for {phase}_A/{phase}_B folders and the
    config kept BtoA: a resume (or --load_pretrain, or synthesize.py --dataroot) of such a run
    would now feed it B as input, the other way from what it learned, without a word."""
    import torch
    from pix2pixhd.cli import resolve_config
    from pix2pixhd.trainer import Trainer
    root = _folders(tmp_path / "d", ["train_A", "train_B", "test_A", "test_B"])
    args = ["--model", "pix2pix", "--dataroot", str(root), "--dataset_mode", "rgb_pairs", "--checkpoints_dir",
            str(tmp_path / "ck"), "--name", "old", "--netG_pix2pix", "unet_128", "--ngf", "4", "--ndf", "4",
            "--resize_or_crop", "none", "--device", "cpu", "--nThreads", "0", "--no_progress"]
    t = Trainer(resolve_config(args + ["--direction", "BtoA"]))
    t.exp_dir.mkdir(parents=True)
    (t.exp_dir / "config.json").write_text(t.cfg.to_json())
    path = t.save("latest")
    ckpt = torch.load(path, weights_only=False)
    ckpt["config"]["config_format"] = 2   # as the versions before saved it
    torch.save(ckpt, path)
    capsys.readouterr()
    t = Trainer(resolve_config(args + ["--resume"]))
    assert t.cfg.direction == "BtoA"
    t._keep_learned_direction()   # (_start_run calls it before make_loader)
    loader, _ = t.make_loader()
    assert t.cfg.direction == "AtoB" and loader.dataset[(0, 0)]["path"].endswith("train_A/s0.png")
    assert (f"note: {path} was saved before --direction BtoA applied to train_A/ + train_B/ folders: it learned "
            "train_A -> train_B") in capsys.readouterr().out
    from pix2pixhd.cli import synthesize_main
    assert synthesize_main(["--checkpoint", str(path), "--dataroot", str(root), "--out", str(tmp_path / "o"),
                            "--no_progress", "--device", "cpu"]) == 0
    assert "its generator learned test_A -> test_B, so test_A/ is its input" in capsys.readouterr().err
    manifest = (tmp_path / "o" / "manifest.jsonl").read_text()
    rows = [json.loads(line) for line in manifest.splitlines()]
    assert all("test_A/" in r["input"] for r in rows), rows
    from pix2pixhd.cli import train_main   # the run itself: trains A -> B and records it
    assert train_main(args + ["--resume", "--max_steps", "1"]) == 0
    assert "it learned train_A -> train_B" in capsys.readouterr().out
    assert json.loads((tmp_path / "ck" / "old" / "config.json").read_text())["direction"] == "AtoB"
    assert torch.load(path, weights_only=False)["config"]["config_format"] == 3

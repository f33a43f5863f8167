"""One config: TrainConfig built in Python resolves to what train_hd.py resolves; "not given" is
None in the config (the user's own values win over every model's defaults and over inheritance);
abbreviations are refused; every option of both parsers explains itself, grouped as the config
groups its fields; the dataset reads one typed DataConfig."""
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd.cli import resolve_config, synthesize_parser, train_parser
from pix2pixhd.errors import ConfigError
from pix2pixhd.config import GROUPS, MODELS, DataConfig, TrainConfig, default_of, model_defaults

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model", MODELS)
def test_python_config_equals_the_command_line_resolution(model):
    assert TrainConfig(model=model).resolved() == resolve_config(["--model", model])
    given = dict(model=model, ngf=8, lr=1e-3, no_flip=True, stage="global")
    argv = ["--model", model, "--ngf", "8", "--lr", "0.001", "--no_flip", "--stage", "global"]
    assert TrainConfig(**given).resolved() == resolve_config(argv)


def test_pix2pix_defaults_are_the_papers_and_given_values_win():
    p = TrainConfig(model="pix2pix").resolved()
    assert (p.norm, p.gan_mode, p.label_nc, p.no_instance, p.loadSize, p.fineSize, p.num_D,
            p.no_vgg_loss, p.no_ganFeat_loss, p.dataset_mode) == (
        "batch", "vanilla", 0, True, 286, 256, 1, True, True, "aligned")
    hd = TrainConfig().resolved()
    assert (hd.norm, hd.gan_mode, hd.label_nc, hd.num_D, hd.loadSize) == ("instance", "lsgan", 35, 2, 1024)
    # A value the user gives is theirs, even when it equals pix2pixHD's default.
    assert TrainConfig(model="pix2pix", norm="instance").resolved().norm == "instance"
    assert resolve_config(["--model", "pix2pix", "--norm", "instance"]).norm == "instance"
    # not given = None until resolved
    raw = TrainConfig(model="pix2pix")
    assert raw.norm is None and raw.ngf is None
    with pytest.raises(ValueError, match=r"resolved\(\)"):
        raw.check_resolved()
    assert model_defaults("pix2pix")["norm"] == "batch" and model_defaults("pix2pixhd") == {}


def test_given_options_win_over_the_inherited_ones(tmp_path):
    prev = TrainConfig(name="g", checkpoints_dir=str(tmp_path), ngf=8, ndf=16, label_nc=9).resolved()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(prev.to_json())
    loc = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g"), ndf=32).resolved()
    assert (loc.ndf, loc.label_nc, loc.ngf, loc.netG, loc.num_D) == (32, 9, 4, "local", 3)
    assert loc == resolve_config(["--stage", "local", "--load_pretrain", str(tmp_path / "g"), "--ndf", "32"])


def test_the_loss_recipe_is_inherited_from_the_stage_loaded(tmp_path):
    # A global stage trained without VGG (no VGG19 file at hand) and with its own GAN recipe: the
    # local stage loading it keeps them (it used to fall back to the VGG loss and stop for the file).
    prev = TrainConfig(name="g", checkpoints_dir=str(tmp_path), no_vgg_loss=True, gan_mode="hinge",
                       lambda_feat=5.0, lambda_L1=100.0).resolved()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(prev.to_json())
    loc = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g")).resolved()
    assert (loc.no_vgg_loss, loc.gan_mode, loc.lambda_feat, loc.lambda_L1) == (True, "hinge", 5.0, 100.0)
    assert loc == resolve_config(["--stage", "local", "--load_pretrain", str(tmp_path / "g")])
    # given values still win, the reference's --no_lsgan included
    argv = ["--stage", "local", "--load_pretrain", str(tmp_path / "g"), "--no_vgg_loss", "false",
            "--no_lsgan"]
    loc = resolve_config(argv)
    assert (loc.no_vgg_loss, loc.gan_mode, loc.no_lsgan) == (False, "vanilla", True)
    # an inherited --no_lsgan gives way to a --gan_mode given
    prev = TrainConfig(name="v", checkpoints_dir=str(tmp_path), no_lsgan=True).resolved()
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "config.json").write_text(prev.to_json())
    assert prev.gan_mode == "vanilla"
    loc = resolve_config(["--stage", "local", "--load_pretrain", str(tmp_path / "v")])
    assert (loc.gan_mode, loc.no_lsgan) == ("vanilla", True)
    loc = resolve_config(["--stage", "local", "--load_pretrain", str(tmp_path / "v"), "--gan_mode", "lsgan"])
    assert (loc.gan_mode, loc.no_lsgan) == ("lsgan", False)


def test_resume_refuses_options_that_change_the_networks_by_name(tmp_path):
    # It used to be accepted, then to fail on loading with a list of state_dict shape mismatches.
    prev = TrainConfig(name="g", checkpoints_dir=str(tmp_path), ngf=8, label_nc=9).resolved()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(prev.to_json())
    (tmp_path / "g" / "latest.pt").write_bytes(b"")   # resolution reads config.json only
    base = ["--name", "g", "--checkpoints_dir", str(tmp_path), "--resume"]
    with pytest.raises(ConfigError, match=r"^--ngf 16 --no_instance True: --resume continues .*g, whose "
                                          r"networks were built with ngf 8, no_instance False.*drop --ngf "
                                          r"--no_instance"):
        resolve_config(base + ["--ngf", "16", "--no_instance"])
    with pytest.raises(ConfigError, match=r"--stage local: .* a global-stage run, and a run keeps its stage"):
        resolve_config(base + ["--stage", "local"])
    # the run's own values, and what says how to continue (schedule, logging, data), are fine
    c = resolve_config(base + ["--ngf", "8", "--label_nc", "9", "--stage", "global", "--niter", "5",
                               "--lr", "0.0001", "--print_freq", "7"])
    assert (c.ngf, c.niter, c.lr, c.print_freq, c.resume) == (8, 5, 0.0001, 7, True)


def test_abbreviations_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        resolve_config(["--ng", "8"])
    assert e.value.code == 2 and "unrecognized arguments: --ng (did you mean --ngf?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthesize_parser().parse_args(["--checkpoint", "c", "--input", "i", "--out", "o", "--batch", "2"])


def test_train_hd_refuses_ng():
    p = subprocess.run([sys.executable, str(REPO / "train_hd.py"), "--ng", "8", "--dry_run"],
                       capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert p.returncode == 2 and "unrecognized arguments: --ng (did you mean --ngf?)" in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("typed, meant", [("--precison", "--precision"), ("--channels-last", "--channels_last")])
def test_a_misspelt_train_option_names_the_closest_one(typed, meant, capsys):
    """synthesize.py said "did you mean"; train_hd.py only "unrecognized arguments"."""
    from pix2pixhd.cli import train_main
    with pytest.raises(SystemExit) as e:
        train_main([typed, "bf16" if "prec" in typed else "true", "--dry_run"])
    assert e.value.code == 2
    assert f"unrecognized arguments: {typed} (did you mean {meant}?)" in capsys.readouterr().err


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("parser", [train_parser(), train_parser(["--model", "pix2pix"]),
                                    synthesize_parser()], ids=["train", "train_pix2pix", "synthesize"])
def test_every_option_has_help(parser):
    for a in _options(parser):
        text = (a.help or "").split(" (default:")[0].strip()
        assert len(text) >= 8, f"{a.option_strings[0]} has no help text"


def test_help_groups_options_as_the_config_does():
    parser = train_parser()
    titles = [g.title for g in parser._action_groups]
    assert titles[-len(GROUPS):] == list(GROUPS.values())  # after argparse's own groups, in order
    group_of = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
    for f in dataclasses.fields(TrainConfig):
        assert group_of[f.name] == GROUPS[f.metadata["group"]], f.name
    text = parser.format_help()
    positions = [text.index(title + ":") for title in GROUPS.values()]
    assert positions == sorted(positions)


@pytest.mark.parametrize("model", MODELS)
def test_model_help_shows_every_option_with_its_default(model):
    parser = train_parser(["--model", model])
    by_dest = {a.dest: a for a in _options(parser)   # an alias and errors.run's flag are not options
               if a.option_strings[0] not in ("--continue_train", "--netD", "--debug")}
    assert set(by_dest) == {f.name for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(TrainConfig):
        d = default_of(f, model)
        shown = ("on" if d else "off") if isinstance(d, bool) else repr(d) if d == "" else str(d)
        assert f"(default: {shown}" in by_dest[f.name].help, f.name
    out = subprocess.run([sys.executable, str(REPO / "train_hd.py"), "--model", model, "--help"],
                         capture_output=True, text=True, cwd=str(REPO), timeout=120).stdout
    norm = "batch" if model == "pix2pix" else "instance"
    assert "--norm {instance,batch}" in out and f"(default: {norm}" in " ".join(out.split())


def test_resolved_prints_nothing_and_returns_its_notes(capsys):
    cfg = TrainConfig(stage="local").resolved()
    assert capsys.readouterr().out == ""
    assert cfg.notes() == ["--stage local without --load_pretrain starts from random weights"]
    assert TrainConfig().resolved().notes() == []


def test_data_config_is_the_runs_dataset_options(tmp_path):
    from pix2pixhd.data import create_dataset
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    generate(tmp_path, n_train=2, n_test=0, width=32, height=16, seed=0)
    cfg = TrainConfig(dataroot=str(tmp_path), label_nc=LABEL_NC, resize_or_crop="none", no_flip=True,
                      n_downsample_global=2, seed=3).resolved()
    dc = cfg.data_config()
    assert isinstance(dc, DataConfig)
    assert (dc.label_nc, dc.resize_or_crop, dc.no_flip, dc.required_multiple, dc.seed, dc.palette) == (
        LABEL_NC, "none", True, 4, 3, None)
    ds = create_dataset(tmp_path, "train", dc)
    assert len(ds) == 2 and ds.config == dc and not ds.flip
    # keyword options override the config's fields; unknown ones name the known ones
    assert create_dataset(tmp_path, "train", dc, validate="off").config.validate == "off"
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['fine_size'\].*'fineSize'"):
        create_dataset(tmp_path, "train", dc, fine_size=8)


def test_older_pix2pixhd_configs_keep_the_l1_term_off(tmp_path):
    """Format-1 configs saved pix2pix's lambda_L1 default (100) in pix2pixHD runs, whose step had
    no L1 term; read back, they must still train without one. Format 2 keeps what was saved."""
    saved = TrainConfig(model="pix2pixhd").resolved().to_dict()
    assert saved["config_format"] == 3 and saved["lambda_L1"] == 0.0
    old = {k: v for k, v in saved.items() if k != "config_format"} | {"lambda_L1": 100.0}
    assert TrainConfig.from_saved(old).lambda_L1 == 0.0
    assert TrainConfig.from_saved(saved | {"lambda_L1": 100.0}).lambda_L1 == 100.0
    p2p = {k: v for k, v in TrainConfig(model="pix2pix").resolved().to_dict().items() if k != "config_format"}
    assert p2p["lambda_L1"] == 100.0 and TrainConfig.from_saved(p2p).lambda_L1 == 100.0
    # a config.json of format 1, as the run folder holds it
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert TrainConfig.load(tmp_path).lambda_L1 == 0.0


def test_from_dict_round_trips_the_options_of_this_version():
    # dataclasses.asdict has no config_format: it was read as format 1, which set lambda_L1 to 0
    c = TrainConfig(lambda_L1=100.0).resolved()
    assert TrainConfig.from_dict(dataclasses.asdict(c)) == c == TrainConfig.from_dict(c.to_dict())
    assert TrainConfig.from_dict(dataclasses.asdict(c)).lambda_L1 == 100.0


@pytest.mark.parametrize("option, value, says", [
    ("precision", "BF16", "expected one of fp32, bf16, fp16"), ("precision", "fp8", "expected one of"),
    ("stage", "Local", "expected one of global, local, finetune"), ("model", "nope", "expected one of"),
    ("device", "tpu", "expected auto, cpu, cuda or cuda:N"), ("norm_impl", "fast", "expected one of"),
    ("validate", "none", "expected one of full, headers, off"), ("which_epoch", "best", "'latest' or an epoch"),
    ("label_nc", 9.5, "must be int"), ("no_flip", "yes", "must be bool"), ("lr", "0.1", "must be float")])
def test_python_configs_are_checked_as_the_command_line_checks_them(option, value, says):
    # from Python these were accepted, and training went on with another setting (fp32, no
    # global freeze, pix2pixHD, the CPU) or failed deep inside (label_nc 9.5)
    with pytest.raises(ConfigError, match=f"^--{option} {re.escape(repr(value))}: .*{re.escape(says)}"):
        TrainConfig(**{option: value}).resolved()
    with pytest.raises(ConfigError, match="^--netD_pix2pix 'huge': expected one of basic"):
        TrainConfig(model="pix2pix", netD_pix2pix="huge").resolved()
    assert TrainConfig(which_epoch=5, lr=1).resolved().which_epoch == "5"


def test_help_starts_with_a_one_line_usage():
    # argparse's generated usage listed every option: 50 lines before the description
    out = train_parser().format_help().splitlines()
    assert out[0] == "usage: train_hd.py [--model M] [--stage S] --dataroot DIR --name NAME [OPTIONS]" or \
        out[0].endswith("[--model M] [--stage S] --dataroot DIR --name NAME [OPTIONS]"), out[0]
    assert out[1] == "" and "CycleGAN" in out[2] + out[3]


def test_resume_with_the_same_load_pretrain_from_another_folder_is_not_refused(tmp_path, monkeypatch):
    # an older config.json holds load_pretrain as typed ("ck/g", relative to where it was trained):
    # --resume --load_pretrain ../A/ck/g from another folder names the same run and was refused
    a = tmp_path / "A"
    g = TrainConfig(name="g", checkpoints_dir="ck", ngf=8, label_nc=9).resolved()
    (a / "ck" / "g").mkdir(parents=True)
    (a / "ck" / "g" / "config.json").write_text(g.to_json())
    monkeypatch.chdir(a)
    loc = TrainConfig(name="l", checkpoints_dir="ck", stage="local", load_pretrain="ck/g").resolved()
    old = dataclasses.replace(loc, load_pretrain="ck/g")   # as configs were saved before
    (a / "ck" / "l").mkdir()
    (a / "ck" / "l" / "config.json").write_text(old.to_json())
    (a / "ck" / "l" / "latest.pt").write_bytes(b"")
    (tmp_path / "B").mkdir()
    monkeypatch.chdir(tmp_path / "B")
    c = resolve_config(["--checkpoints_dir", "../A/ck", "--name", "l", "--resume", "--load_pretrain", "../A/ck/g"])
    assert c.resume and c.ngf == loc.ngf
    with pytest.raises(ConfigError, match=r"--load_pretrain \.\./A/ck/l: --resume continues"):
        resolve_config(["--checkpoints_dir", "../A/ck", "--name", "l", "--resume", "--load_pretrain", "../A/ck/l"])


def test_typed_paths_are_stored_absolute_and_an_older_relative_dataroot_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = TrainConfig(name="g", checkpoints_dir="ck", dataroot="data", vgg_path="~/w/vgg19.pth").resolved()
    assert (c.dataroot, c.vgg_path) == (str(tmp_path / "data"), str(Path.home() / "w" / "vgg19.pth"))
    # a later stage run from another folder inherits the VGG file the first stage named
    (tmp_path / "ck" / "g").mkdir(parents=True)
    (tmp_path / "ck" / "g" / "config.json").write_text(c.to_json())
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    loc = TrainConfig(stage="local", load_pretrain="../ck/g", dataroot="../data").resolved()
    assert (loc.vgg_path, loc.dataroot) == (c.vgg_path, str(tmp_path / "data"))
    # resuming a run whose (older) config.json holds dataroot as typed: kept as saved
    old = dataclasses.replace(c, dataroot="data")
    (tmp_path / "ck" / "g" / "config.json").write_text(old.to_json())
    assert TrainConfig(name="g", checkpoints_dir="../ck", resume=True).resolved().dataroot == "data"


def _run_folder(tmp_path, name, **options):
    cfg = TrainConfig(name=name, checkpoints_dir=str(tmp_path), **options).resolved()
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(cfg.to_json())
    (tmp_path / name / "latest.pt").write_bytes(b"")   # resolution reads config.json only
    return cfg


def test_the_pix2pix_repos_netG_repeated_on_resume_resumes(tmp_path):
    # the README's alias: --netG resnet_6blocks is --netG_pix2pix; repeating the command with
    # --resume (or --auto_resume) used to be refused as "built with netG global"
    for model, g in (("cyclegan", "resnet_6blocks"), ("pix2pix", "unet_128")):
        argv = ["--model", model, "--name", model, "--checkpoints_dir", str(tmp_path), "--netG", g]
        first = resolve_config(argv)
        (tmp_path / model).mkdir()
        (tmp_path / model / "config.json").write_text(first.to_json())
        (tmp_path / model / "latest.pt").write_bytes(b"")
        assert (first.netG, first.netG_pix2pix) == ("global", g)
        c = resolve_config(argv + ["--resume"])   # --auto_resume, with a latest.pt, takes the same path
        assert (c.resume, c.netG_pix2pix) == (True, g)
        with pytest.raises(ConfigError, match=r"^--netG_pix2pix resnet_9blocks: --resume continues .* built "
                                              rf"with netG_pix2pix {g}"):
            resolve_config(argv[:-2] + ["--netG", "resnet_9blocks", "--resume"])


def test_options_a_model_does_not_use_are_refused_unless_they_are_its_defaults():
    for argv, says in (
            (["--model", "cyclegan", "--lambda_L1", "100"], "--lambda_L1 100.0: --model cyclegan does not use it "
                                                           "(it is pix2pixhd and pix2pix's"),
            (["--model", "cyclegan", "--lambda_GAN", "0"], "--lambda_GAN 0.0: --model cyclegan"),
            (["--model", "cyclegan", "--no_cond_D"], "--no_cond_D on: --model cyclegan"),
            (["--model", "cyclegan", "--num_D", "3"], "--num_D 3: --model cyclegan"),
            (["--model", "cyclegan", "--no_vgg_loss", "false"], "--no_vgg_loss off: --model cyclegan"),
            (["--model", "pix2pix", "--lambda_A", "5"], "--lambda_A 5.0: --model pix2pix does not use it (it is "
                                                       "cyclegan's"),
            (["--model", "pix2pix", "--pool_size", "10"], "--pool_size 10: --model pix2pix"),
            (["--model", "pix2pix", "--num_D", "2"], "--num_D 2: --model pix2pix"),
            (["--pool_size", "50"], "--pool_size 50: --model pixpixhd".replace("pixpix", "pix2pix")),
            (["--netD_pix2pix", "pixel"], "--netD_pix2pix pixel: --model pix2pixhd"),
            (["--lambda_GAN", "0"], "--lambda_GAN 0.0: --model pix2pixhd")):
        with pytest.raises(ConfigError) as e:
            resolve_config(argv)
        assert str(e.value).startswith(says) and str(e.value).endswith(f"drop {says.split()[0]}"), str(e.value)
    # the model's own defaults given, as the reference scripts do, and options it uses
    for argv in (["--model", "pix2pix", "--pool_size", "0", "--num_D", "1", "--lambda_L1", "100"],
                 ["--pool_size", "0", "--num_D", "3", "--no_vgg_loss", "--lambda_L1", "10"],
                 ["--model", "cyclegan", "--pool_size", "10", "--lambda_A", "5", "--no_vgg_loss"]):
        resolve_config(argv)
    # NVIDIA's pix2pixHD default: no pool (its D sees the current fakes); CycleGAN's: 50
    assert [resolve_config(["--model", m]).pool_size for m in ("pix2pixhd", "pix2pix", "cyclegan")] == [0, 0, 50]


def test_resume_refuses_another_direction(tmp_path):
    _run_folder(tmp_path, "p", model="pix2pix", direction="BtoA")
    base = ["--name", "p", "--checkpoints_dir", str(tmp_path), "--resume"]
    with pytest.raises(ConfigError, match=r"^--direction AtoB: --resume continues .*p, trained with direction "
                                          r"BtoA, .* drop --direction, or start a new run"):
        resolve_config(base + ["--direction", "AtoB"])
    assert resolve_config(base + ["--direction", "BtoA"]).direction == "BtoA"


def test_later_stages_read_images_as_the_stage_they_load(tmp_path):
    # a finetune from a local stage trained with --resize_or_crop none used to fall back to
    # scale_width at loadSize 1024 (8x upscaled 128 px maps, 60x slower steps), without a word
    g = _run_folder(tmp_path, "g", resize_or_crop="scale_width_and_crop", loadSize=64, fineSize=32, ngf=8)
    loc = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g"))
    c = loc.resolved()
    assert (c.resize_or_crop, c.loadSize, c.fineSize, c.ngf) == ("scale_width_and_crop", 128, 64, 4)
    assert any("at 2x its size: loadSize 128, fineSize 64" in n for n in c.notes())
    c = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g"), loadSize=96, fineSize=48).resolved()
    assert (c.loadSize, c.fineSize) == (96, 48) and not c.notes()
    _run_folder(tmp_path, "l", stage="local", load_pretrain=str(tmp_path / "g"), resize_or_crop="none",
                loadSize=128, fineSize=64)
    ft = TrainConfig(stage="finetune", load_pretrain=str(tmp_path / "l")).resolved()
    assert (ft.resize_or_crop, ft.loadSize, ft.fineSize) == ("none", 128, 64)
    assert TrainConfig(stage="finetune", load_pretrain=str(tmp_path / "l"),
                       resize_or_crop="scale_width").resolved().resize_or_crop == "scale_width"
    assert g.resize_or_crop == "scale_width_and_crop"


def test_a_size_the_feature_encoder_cannot_take_names_the_encoder(tmp_path):
    # it said "not a multiple of 16 as the generator needs", where the generator needs 4
    from pix2pixhd import data
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    generate(tmp_path / "st", n_train=2, n_test=1, width=128, height=64, seed=0)
    argv = ["--dataroot", str(tmp_path / "st"), "--label_nc", str(LABEL_NC), "--resize_or_crop",
            "scale_width_and_crop", "--loadSize", "128", "--fineSize", "40", "--n_downsample_global", "2",
            "--no_vgg_loss"]
    for extra, says in ((["--instance_feat"], "not a multiple of 16 as the feature encoder needs (--n_downsample_E "
                                               "4; the generator alone needs 4: fewer E downsamplings also fit)"),
                        (["--n_downsample_global", "4"], "not a multiple of 16 as the generator needs;")):
        c = resolve_config(argv + extra)
        with pytest.raises(Exception) as e:
            data.create_dataset(c.dataroot, "train", c.data_config())
        assert says in str(e.value)


def test_dry_run_says_which_values_came_from_the_stage_loaded(tmp_path):
    _run_folder(tmp_path, "g", ngf=8, label_nc=9, resize_or_crop="scale_width", loadSize=64)
    loc = TrainConfig(stage="local", load_pretrain=str(tmp_path / "g"), ndf=32).resolved()
    lines = {line.split(":")[0].strip(): line for line in loc.pretty().splitlines()}
    assert lines["label_nc"].endswith(f"[changed: from {tmp_path / 'g'}]")
    assert lines["ndf"].endswith("[changed]")   # given here
    # scale_width reads loadSize alone: the note names no fineSize
    assert [n for n in loc.notes() if "loadSize 128 (give --loadSize for others)" in n]
    _run_folder(tmp_path, "p", model="pix2pix")
    with pytest.raises(ConfigError, match=rf"^--load_pretrain {re.escape(str(tmp_path / 'p'))} is a --model pix2pix "
                                          r"run, which has one stage: drop --stage"):
        TrainConfig(stage="local", load_pretrain=str(tmp_path / "p")).resolved()


def test_load_refuses_a_missing_or_damaged_config_json_with_user_errors(tmp_path):
    from pix2pixhd.errors import MissingInputError, UserError
    with pytest.raises(MissingInputError, match="config.json not found: a run folder holds config.json"):
        TrainConfig.load(tmp_path)   # (a FileNotFoundError too, for callers that catch that)
    (tmp_path / "config.json").write_text('{"ngf": 8, "niter"')   # truncated by a crash
    with pytest.raises(ConfigError, match=r"config.json is not a run's config.json \(.*\); restore it"):
        TrainConfig.load(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="is not a run's config.json"):
        TrainConfig.load(tmp_path / "config.json")
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="holds list, not a run's configuration"):
        TrainConfig.load(tmp_path)

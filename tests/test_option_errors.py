"""Options and files refused with one line naming the value and the fix (user walkthroughs): the
instance and feature folders the options read, an encoder of the stage loaded built otherwise,
--load_features without encoded features, a VGG19 file that does not hold VGG19's weights,
grey photos (--output_nc 1, --input_nc 1) with the paired layouts."""
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from pix2pixhd.compat import CheckpointMismatchError, load_reference_weights
from pix2pixhd.config import TrainConfig
from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.layouts import find_files
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.losses import VGG19Features, vgg19_file, vgg19_shapes
from pix2pixhd.networks import Encoder

sys.path.insert(0, str(Path(__file__).parent))   # the block datasets of test_data.py
from test_data import NC, write_cityscapes  # noqa: E402


@pytest.fixture()
def city(tmp_path):
    write_cityscapes(tmp_path, "train", 3, feat=False)
    return tmp_path


def _problems(lay) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, _, msg in lay.problems:
        out.setdefault(kind, []).append(msg)
    return out


# ---- the folders the options read --------------------------------------------------------------
def test_a_missing_inst_folder_read_for_instance_feat_says_so(city):
    import shutil
    shutil.rmtree(city / "train_inst")
    # --instance_feat --no_instance: the loader still reads instance maps, for the encoder
    cfg = TrainConfig(label_nc=NC, instance_feat=True, no_instance=True, dataroot=str(city)).resolved()
    d = cfg.data_config()
    assert (d.no_instance, d.instance_feat) == (False, True)
    told = _problems(find_files(city, "train", "cityscapes", use_inst=True, use_feat=False, instance_feat=True))
    msg, = told["missing folder"]
    assert "--instance_feat" in msg and "--label_feat" in msg and "pass no_instance" not in msg
    assert "missing partner" not in told   # the folder is named once, not again per label map
    # through create_dataset, as training reads it: the same message
    with pytest.raises(DatasetError) as e:
        create_dataset(city, "train", d, validate="headers")
    assert "pass no_instance" not in str(e.value) and "use --label_feat" in str(e.value)
    assert "missing partner" not in str(e.value)


def test_a_missing_feat_folder_names_the_precompute_command_once(city):
    command = f"`python -m pix2pixhd.features precompute --checkpoint RUN --dataroot {city}`"
    for kind in ("holds no images", "does not exist"):   # test_data's datasets have an empty train_feat/
        if kind == "does not exist":
            (city / "train_feat").rmdir()
        with pytest.raises(DatasetError) as e:
            create_dataset(city, label_nc=NC, load_features=True, resize_or_crop="none")
        msg = str(e.value)
        assert f"feat folder {city / 'train_feat'} {kind}" in msg and command in msg
        assert "1 problem(s)" in msg and "missing partner" not in msg
    # a partner missing from a folder that holds others is still listed
    (city / "train_feat").mkdir()
    (city / "train_feat" / "s0.png").write_bytes((city / "train_img" / "s0.png").read_bytes())
    lay = find_files(city, "train", "cityscapes", use_inst=True, use_feat=True)
    assert len(_problems(lay)["missing partner"]) == 2 and len(lay.records) == 1


def test_load_features_without_encoded_features_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^--load_features: .*neither.*drop --load_features"):
        TrainConfig(label_nc=NC, load_features=True).resolved()
    with pytest.raises(ConfigError, match=r"--model pix2pix has none\): drop --load_features"):
        TrainConfig(model="pix2pix", load_features=True).resolved()
    assert TrainConfig(label_nc=NC, load_features=True, label_feat=True).resolved().data_config().load_features
    # a run saved before this check: its loader does not ask for {phase}_feat that nothing reads
    old = dataclasses.replace(TrainConfig(label_nc=NC).resolved(), load_features=True)
    assert not old.data_config().load_features


# ---- the encoder of the stage loaded ----------------------------------------------------------
def test_an_encoder_of_other_shapes_names_its_options_and_file(tmp_path):
    torch.save(Encoder(3, 3, 16, 2).state_dict(), tmp_path / "e.pth")
    with pytest.raises(CheckpointMismatchError) as e:
        load_reference_weights(Encoder(3, 3, 32, 3), tmp_path / "e.pth")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'e.pth'} does not fit Encoder") and "\n" not in msg
    assert "nef 16 (this encoder: 32), n_downsample_E 2 (this encoder: 3)" in msg
    assert msg.endswith("build the encoder with --nef 16 --n_downsample_E 2") and "ngf" not in msg
    with pytest.raises(CheckpointMismatchError, match=r"^ck/g/latest.pt's E does not fit .*feat_num 3 "
                                                      r"\(this encoder: 5\)"):
        load_reference_weights(Encoder(3, 5, 16, 2), Encoder(3, 3, 16, 2).state_dict(),
                               source="ck/g/latest.pt's E")


def test_a_later_stage_given_other_encoder_options_is_refused_by_name(tmp_path):
    g = TrainConfig(label_nc=NC, instance_feat=True, n_downsample_E=2, checkpoints_dir=str(tmp_path),
                    name="g").resolved()
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(g.to_json())
    local = dict(stage="local", load_pretrain=str(tmp_path / "g"), checkpoints_dir=str(tmp_path), name="l")
    with pytest.raises(ConfigError) as e:
        TrainConfig(**local, nef=32).resolved()
    assert str(e.value) == (
        f"--nef 32: this stage loads the feature encoder of {tmp_path / 'g'} "
        f"(E in {tmp_path / 'g' / 'latest.pt'}), "
        "built with nef 16, and its weights cannot change shape: drop --nef (the stage loaded gives its own), "
        "or train the global stage again with --nef 32")
    assert TrainConfig(**local, nef=16).resolved().nef == 16                 # the same value: fine
    assert TrainConfig(**local, nef=32, load_features=True).resolved().nef == 32   # no E is loaded


# ---- the VGG19 file ----------------------------------------------------------------------------
def _vgg_state(**change) -> dict:
    return {k: torch.zeros(change.get(k, s)) for k, s in vgg19_shapes().items()}


BAD_VGG = {
    "html": (lambda p: p.write_text("<!DOCTYPE html>\n<html><body>Access denied</body></html>"),
             r"a text file, not PyTorch weights \(it starts '<!DOCTYPE html>"),
    "module": (lambda p: torch.save(torch.nn.Linear(2, 2), p),
               r"it holds pickled Python objects \(torch.nn.modules.linear.Linear\).* not loaded"),
    "shapes": (lambda p: torch.save(_vgg_state(**{"features.28.weight": (512, 256, 3, 3)}), p),
               r"VGG19's keys with other shapes \(1 of 26 tensors, e.g. features.28.weight: \(512, 256, 3, 3\)"),
    "truncated": (lambda p: (torch.save({"w": torch.zeros(4096)}, p), p.write_bytes(p.read_bytes()[:9000])),
                  r"cannot be read as a PyTorch file, truncated or damaged\? \(9000 bytes; "),
    "empty": (lambda p: p.write_bytes(b""), r"the file is empty"),
    "keys": (lambda p: torch.save({"state_dict": _vgg_state()}, p),
             r"not torchvision's VGG19 state_dict: 26 of its 26 tensors missing, .*under 'state_dict'"),
}


@pytest.mark.parametrize("case", sorted(BAD_VGG))
def test_a_bad_vgg19_file_is_one_line_naming_it_and_the_expected_file(tmp_path, case):
    write, what = BAD_VGG[case]
    path = tmp_path / "vgg19.pth"
    write(path)
    for load in (vgg19_file, VGG19Features.from_file):   # --dry_run's check, and the loss's load
        with pytest.raises(InputError, match=r"^VGG19 weights " + str(path) + ": " + what) as e:
            load(path)
        msg = str(e.value)
        assert "\n" not in msg and "weights_only=False" not in msg
        assert "vgg19-dcbb9e9d.pth" in msg and msg.endswith("--no_vgg_loss")


def test_a_vgg19_file_in_either_format_passes(tmp_path):
    for new_format in (True, False):   # torchvision's own file is in the legacy format
        path = tmp_path / f"vgg_{new_format}.pth"
        torch.save(_vgg_state(), path, _use_new_zipfile_serialization=new_format)
        assert vgg19_file(path) == path
        assert not VGG19Features.from_file(path).features[28].weight.detach().any()


def test_dry_run_refuses_a_vgg19_file_without_its_weights(tmp_path):
    from pix2pixhd.cli import train_main
    bad = tmp_path / "vgg19.pth"
    bad.write_text("<html>404</html>")
    argv = ["--name", "dry", "--checkpoints_dir", str(tmp_path), "--dataroot", str(tmp_path), "--dry_run",
            "--device", "cpu", "--vgg_path", str(bad)]
    with pytest.raises(InputError, match="a text file, not PyTorch weights"):
        train_main(argv)


# ---- grey photos with the paired layouts ----------------------------------------------------------
def _grey_run(tmp_path, model, photos_mode):
    """A tiny paired dataset whose photos are ``photos_mode`` ("L" or "RGB") images."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    if model == "pix2pixhd":   # Cityscapes layout: ids + photos
        for d in ("train_label", "train_img"):
            (root / d).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 4, (32, 32), dtype=np.uint8), "L").save(root / "train_label" / f"{i}.png")
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).convert(photos_mode).save(
                root / "train_img" / f"{i}.png")
        return root, ["--label_nc", "4", "--no_instance", "--no_vgg_loss", "--ngf", "4", "--ndf", "4",
                      "--n_downsample_global", "2", "--n_blocks_global", "1", "--num_D", "1", "--n_layers_D", "2"]
    (root / "train").mkdir(parents=True)   # pix2pix: AB images, photo | photo
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).convert(photos_mode).save(
            root / "train" / f"{i}.png")
    return root, ["--model", "pix2pix", "--input_nc", "1", "--netG_pix2pix", "resnet_6blocks", "--ngf", "4",
                  "--ndf", "4", "--netD_pix2pix", "n_layers", "--n_layers_D", "1"]


@pytest.mark.parametrize("model", ["pix2pixhd", "pix2pix"])
@pytest.mark.parametrize("photos_mode", ["L", "RGB"])
def test_output_nc_1_trains_the_paired_models_on_grey_photos(tmp_path, model, photos_mode):
    # photos were always read as RGB: G's 1-channel output met D's 3-channel real at the first step
    from pix2pixhd.checkpoint import load_checkpoint
    from pix2pixhd.cli import train_main
    root, opts = _grey_run(tmp_path, model, photos_mode)
    argv = ["--dataroot", str(root), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "g", "--output_nc", "1",
            "--loadSize", "32", "--fineSize", "32", "--resize_or_crop", "none", "--batchSize", "1", "--niter", "1",
            "--niter_decay", "0", "--nThreads", "0", "--device", "cpu", "--no_html", "--no_tensorboard",
            "--no_progress", *opts]
    assert train_main(argv) == 0
    ck = load_checkpoint(tmp_path / "ck" / "g")
    last = [v for k, v in ck["G"].items() if k.endswith("weight") and v.ndim == 4][-1]
    assert ck["global_step"] == 2 and last.shape[0] == 1   # G's last conv: one output channel
    pix2pix = model == "pix2pix"
    sample = create_dataset(root, "train", label_nc=0 if pix2pix else 4, input_nc=1 if pix2pix else 3,
                            output_nc=1, no_instance=True, resize_or_crop="none", required_multiple=1,
                            no_flip=True)[0]
    assert sample["image"].shape == (1, 32, 32) and sample["label"].shape == (1, 32, 32)
    import numpy as np
    from PIL import Image
    first = sorted((root / ("train" if pix2pix else "train_img")).iterdir())[0]
    grey = torch.from_numpy(np.array(Image.open(first).convert("L")))   # an RGB photo: its luminance
    if pix2pix:   # AtoB: the A | B halves are the input and the photo
        assert torch.equal(sample["label"][0], grey[:, :32]) and torch.equal(sample["image"][0], grey[:, 32:])
    else:
        assert torch.equal(sample["image"][0], grey)


def test_photo_channels_other_than_1_or_3_are_refused():
    with pytest.raises(ConfigError, match=r"^--output_nc 4: photos are read as grey \(1\) or RGB \(3\)"):
        TrainConfig(output_nc=4).resolved()
    with pytest.raises(ConfigError, match=r"^--input_nc 2: photos"):
        TrainConfig(model="pix2pix", input_nc=2).resolved()
    assert TrainConfig(model="cyclegan", input_nc=1, output_nc=1).resolved().output_nc == 1


@pytest.mark.parametrize("model, norm", [("pix2pix", None), ("pix2pixhd", "batch"), ("cyclegan", "batch")])
def test_norm_impl_triton_without_an_instance_norm_is_refused(model, norm):
    """--norm_impl triton fuses instance norms: pix2pix's BatchNorm (its default) trained
    bit-identical with it, and nothing said that no kernel ran. ref (PyTorch's norms) is what
    runs there, so it stays accepted."""
    kw = dict(model=model, **({"norm": norm} if norm else {}))
    with pytest.raises(ConfigError, match=r"^--norm_impl triton fuses instance norms; with --norm batch the "
                                          r"networks have none.*drop --norm_impl$"):
        TrainConfig(norm_impl="triton", **kw).resolved()
    for impl in ("auto", "ref"):
        assert TrainConfig(norm_impl=impl, **kw).resolved().norm_impl == impl
    assert TrainConfig(norm_impl="triton", model=model, norm="instance").resolved().norm_impl == "triton"


def test_compile_of_the_interpreted_triton_kernels_is_refused(monkeypatch):
    """--compile --norm_impl triton with TRITON_INTERPRET=1 ended in a ~295-line Dynamo traceback
    (InterpreterError ... KeyError(torch.uint64)) at the first step."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ConfigError, match=r"^--compile --norm_impl triton under TRITON_INTERPRET=1: torch\.compile "
                                          r"cannot trace"):
        TrainConfig(compile=True, norm_impl="triton").resolved()
    assert TrainConfig(compile=True, norm_impl="ref").resolved().compile
    monkeypatch.delenv("TRITON_INTERPRET")
    assert TrainConfig(compile=True, norm_impl="triton").resolved().compile

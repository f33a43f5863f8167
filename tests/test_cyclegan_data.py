"""The unaligned layout (CycleGAN): trainA/ and trainB/ of any sizes, not paired by name. Auto
detection, the reference's sampling (len max(|A|, |B|), A in order, a random B per (seed, epoch,
index): reproducible, resumable, different per epoch), --direction, --max_dataset_size, the same
validation as every layout (errors name the files, nothing dropped silently) and the scan command.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.data import DatasetError, ResumableSampler, UnalignedDataset, create_dataset
from pix2pixhd.data.__main__ import main as data_main

OPTS = dict(label_nc=0, no_instance=True, resize_or_crop="resize_and_crop", loadSize=20, fineSize=16,
            required_multiple=4)


def write_unaligned(root, n_a=3, n_b=5, size=(24, 20)):
    """Image i of domain A is a flat colour with red = 10 + i, of domain B blue = 100 + i, so a
    sample tells which files it came from whatever the crop and flip."""
    for d, n in (("trainA", n_a), ("trainB", n_b)):
        (root / d).mkdir(parents=True)
        for i in range(n):
            px = np.zeros((size[1], size[0], 3), np.uint8)
            px[..., 0 if d == "trainA" else 2] = (10 if d == "trainA" else 100) + i
            Image.fromarray(px).save(root / d / f"{d[-1].lower()}{i:02d}.png")
    return root


def ids(sample):
    return int(sample["A"][0].float().mean().round()) - 10, int(sample["B"][2].float().mean().round()) - 100


def test_auto_detects_unaligned_and_draws_a_seeded_random_b_for_each_a(tmp_path):
    ds = create_dataset(write_unaligned(tmp_path), "train", **OPTS)
    assert isinstance(ds, UnalignedDataset) and ds.mode == "unaligned"
    assert len(ds) == 5                                   # max(|A|, |B|), as the reference
    s = ds[(4, 1)]
    assert s["A"].shape == s["B"].shape == (3, 16, 16) and s["A"].dtype == torch.uint8
    epoch1 = [ids(ds[(i, 1)]) for i in range(5)]
    assert [a for a, _ in epoch1] == [0, 1, 2, 0, 1]      # A in order, modulo |A|
    assert epoch1 == [ids(ds[(i, 1)]) for i in range(5)]  # (seed, epoch, index) decide B
    assert all(s["path_B"].endswith(f"b{b:02d}.png") for s, (_, b) in zip([ds[(i, 1)] for i in range(5)], epoch1))
    draws = {b for e in range(1, 9) for i in range(5) for _, b in [ids(ds[(i, e)])]}
    assert draws == set(range(5))                         # every B gets drawn over a few epochs
    assert [ids(ds[(i, 2)]) for i in range(5)] != epoch1  # a new draw per epoch
    other = create_dataset(tmp_path, "train", **OPTS, seed=1)
    assert [ids(other[(i, 1)]) for i in range(5)] != epoch1


def test_resumed_order_draws_the_same_pairs(tmp_path):
    ds = create_dataset(write_unaligned(tmp_path, 4, 7), "train", **OPTS)
    s = ResumableSampler(len(ds), shuffle=True, seed=3)
    s.set_epoch(2)
    full = [ids(ds[k]) + (ds[k]["A"].sum().item(), ds[k]["B"].sum().item()) for k in s]
    s.set_epoch(2, skip=3)
    assert [ids(ds[k]) + (ds[k]["A"].sum().item(), ds[k]["B"].sum().item()) for k in s] == full[3:]


def test_direction_btoa_makes_folder_b_the_domain_a(tmp_path):
    ds = create_dataset(write_unaligned(tmp_path), "train", **OPTS, direction="BtoA")
    s = ds[(0, 0)]
    assert "trainB" in s["path"] and "trainA" in s["path_B"]
    assert s["A"][2].float().mean() >= 100 and s["B"][0].float().mean() >= 10


def test_grey_domains_have_one_channel_and_max_dataset_size_limits_both(tmp_path):
    ds = create_dataset(write_unaligned(tmp_path), "train", **OPTS, input_nc=1)
    s = ds[(0, 0)]
    assert s["A"].shape == (1, 16, 16) and s["B"].shape == (3, 16, 16)
    ds.limit(2)
    assert len(ds.records) == len(ds.records_B) == 2 and len(ds) == 2


def test_validation_names_the_files_and_keeps_nothing_back(tmp_path, capsys):
    root = write_unaligned(tmp_path)
    (root / "trainB" / "b01.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    Image.new("I;16", (24, 20)).save(root / "trainA" / "deep.png")   # 16-bit: clipped, not scaled
    Image.new("F", (24, 20)).save(root / "trainB" / "float.tif")
    (root / "trainB" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError) as e:
        create_dataset(root, "train", **OPTS)
    msg = str(e.value)
    assert "trainB/b01.png: cannot read" in msg
    assert "trainA/deep.png: domain A image has mode I;16" in msg
    assert "trainB/float.tif: domain B image has mode F" in msg
    assert "16-bit and float values would be clipped to 255, not scaled" in msg
    assert "trainB/notes.txt: not an image" in msg           # a notice, listed with the problems
    assert {p[0] for p in e.value.problems} == {"unreadable", "wrong channels"}
    # with validation off, the loader still refuses the broken and the float file by name
    # (B images are drawn at random: either may come first)
    ds = create_dataset(root, "train", **OPTS, validate="off")
    with pytest.raises(DatasetError, match=r"trainB/(b01.png: cannot read this domain B image|float.tif: .*mode F)"):
        for e_ in range(20):
            for i in range(len(ds)):
                ds[(i, e_)]


@pytest.mark.parametrize("mode, ext", [("RGBA", "png"), ("CMYK", "jpg"), ("LA", "png"),
                                       ("P", "png"), ("1", "png")])
def test_8_bit_domain_images_of_any_photo_mode_load_as_rgb_or_grey(tmp_path, mode, ext):
    """As the paired layouts' photos: RGBA loses its alpha, CMYK JPEGs become RGB (convert('RGB'),
    the reference's), and a one-channel domain reads them as grey."""
    root = write_unaligned(tmp_path, n_a=1, n_b=1)
    a = root / "trainA" / "a00.png"
    rgb = Image.open(a).convert("RGB")
    rgb.putpixel((0, 0), (250, 40, 90))
    a.unlink()
    src = rgb.convert(mode)
    if mode == "RGBA":
        src.putalpha(0)                                  # fully transparent: the colour still trains
    src.save(root / "trainA" / f"a00.{ext}", **({"quality": 100} if ext == "jpg" else {}))
    want = np.asarray(Image.open(root / "trainA" / f"a00.{ext}").convert("RGB"))
    opts = {**OPTS, "resize_or_crop": "none", "no_flip": True, "required_multiple": 4}
    ds = create_dataset(root, "train", **opts)
    s = ds[(0, 0)]
    assert s["A"].shape == (3, 20, 24) and s["A"].dtype == torch.uint8
    np.testing.assert_array_equal(s["A"].permute(1, 2, 0).numpy(), want)
    if mode in ("RGBA", "CMYK"):                        # the colours survive, not a grey or black
        assert abs(int(s["A"][0, 0, 0]) - 250) <= 2 and abs(int(s["A"][1, 0, 0]) - 40) <= 2
    grey = create_dataset(root, "train", **opts, input_nc=1)[(0, 0)]["A"]
    assert grey.shape == (1, 20, 24)
    np.testing.assert_array_equal(grey[0].numpy(),
                                  np.asarray(Image.open(root / "trainA" / f"a00.{ext}").convert("L")))


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_a_domain_without_images_is_refused(tmp_path, what):
    root = write_unaligned(tmp_path)
    for p in (root / "trainB").iterdir():
        p.unlink()
    if what == "missing":
        (root / "trainB").rmdir()
        with pytest.raises(DatasetError, match="trainB"):   # auto finds no layout without trainB
            create_dataset(root, "train", **OPTS)
        with pytest.raises(DatasetError, match=r"trainB does not exist; the unaligned layout needs"):
            create_dataset(root, "train", **OPTS, dataset_mode="unaligned")
    else:
        with pytest.raises(DatasetError, match=r"trainB/ holds no images.*domain B needs at least one"):
            create_dataset(root, "train", **OPTS)


def test_label_maps_options_are_refused_for_unpaired_images(tmp_path):
    root = write_unaligned(tmp_path)
    with pytest.raises(DatasetError, match="set --label_nc 0 and no --palette"):
        create_dataset(root, "train", **{**OPTS, "label_nc": 12})


def test_scan_command_reports_both_domains(tmp_path, capsys):
    root = write_unaligned(tmp_path)
    (root / "testA").mkdir()
    (root / "testB").mkdir()
    Image.new("RGB", (8, 8)).save(root / "testA" / "t.png")
    Image.new("RGB", (8, 8)).save(root / "testB" / "t.png")
    assert data_main(["scan", str(root)]) == 0
    out = capsys.readouterr().out
    assert "[train] unaligned layout, 3 A + 5 B images (unpaired), label_nc=0" in out
    assert "[test] unaligned layout, 1 A + 1 B images (unpaired)" in out
    assert "trainA]" not in out and "[trainB]" not in out   # the domain folders are not phases
    (root / "testB" / "t.png").unlink()
    assert data_main(["scan", str(root)]) == 1
    assert "testB/ holds no images" in capsys.readouterr().out

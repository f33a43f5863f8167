"""Facades: the palette, the converter, and reading the pix2pix layout directly.

Uses ../shared/data/facades when present (skips otherwise); its images are never copied here.
Tiny hand-made AB folders, whose colour maps are painted with known ids, test the converter and
the palette decoding everywhere: the expected ids never come from the code's own decoder.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import FACADES_PALETTE, create_dataset
from pix2pixhd.datasets.convert_facades import convert, main
from pix2pixhd.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "facades"
needs_shared = pytest.mark.skipif(not (SHARED / "train").is_dir(), reason=f"{SHARED} absent")


def test_palette_matches_readme():
    readme = SHARED / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} absent")
    found = re.findall(r"\((\d+),(\d+),(\d+)\)", readme.read_text().replace(" ", ""))
    assert [tuple(map(int, c)) for c in found] == list(FACADES_PALETTE)


def test_converter_on_fake_ab(tmp_path):
    src = tmp_path / "src"
    (src / "train").mkdir(parents=True)
    pal = np.array(FACADES_PALETTE, np.uint8)
    rng = np.random.default_rng(0)
    truth = {}
    for i in (1, 2, 10):          # numeric order: 1, 2, 10 (so 10 is the held-out one)
        ids = np.kron(rng.integers(0, 12, (4, 4)), np.ones((8, 8), int))
        photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([photo, pal[ids]], 1)).save(src / "train" / f"{i}.png")
        truth[i] = ids, photo
    counts = convert(src, tmp_path / "out", holdout=1)
    assert counts == {"train": 2, "test": 1}
    assert (tmp_path / "out/test_label/10.png").is_file()
    ds = create_dataset(tmp_path / "out", "test", label_nc=12, no_instance=True,
                        resize_or_crop="none", required_multiple=1)
    s = ds[0]
    np.testing.assert_array_equal(s["label"][0].numpy(), truth[10][0])
    np.testing.assert_array_equal(s["image"].permute(1, 2, 0).numpy(), truth[10][1])
    with pytest.raises(ValueError, match="no training images"):
        convert(src, tmp_path / "o2", holdout=3)


def _hand_made_ab(root: Path, ext: str, noise: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``{root}/train/0.{ext}`` in the pix2pix A | B layout whose B half is a colour map with
    known ids: 16x16 blocks (JPEG's chroma blocks), block (r, c) of class ``IDS[r, c]``, each pixel
    its palette colour plus uniform integer noise in [-noise, noise] per channel. Returns (ids per
    pixel, the A photo)."""
    rng = np.random.default_rng(0)
    ids = np.kron(HAND_IDS, np.ones((16, 16), int))
    colours = np.array(FACADES_PALETTE, int)[ids] + rng.integers(-noise, noise + 1, ids.shape + (3,))
    photo = rng.integers(0, 256, ids.shape + (3,), dtype=np.uint8)
    (root / "train").mkdir(parents=True)
    ab = np.concatenate([photo, np.clip(colours, 0, 255).astype(np.uint8)], 1)
    Image.fromarray(ab).save(root / "train" / f"0.{ext}", **({"quality": 95} if ext == "jpg" else {}))
    return ids, photo


# Every class once in the first row, a shuffled second row: 2 x 12 blocks of 16x16 pixels.
HAND_IDS = np.array([list(range(12)), [7, 3, 11, 0, 9, 5, 1, 10, 2, 8, 4, 6]])


def test_facades_palette_colours_are_far_apart():
    # The fact the hand-made noisy pixels below rely on: every two colours are >= 58 apart, so a
    # pixel within 12*sqrt(3) = 20.8 of a colour (clipping to [0, 255] only brings it closer) is
    # nearer to it than to any other.
    pal = np.array(FACADES_PALETTE, float)
    dist = np.linalg.norm(pal[:, None] - pal[None], axis=-1)
    assert dist[~np.eye(len(pal), dtype=bool)].min() > 58


@pytest.mark.parametrize("ext, noise", [("png", 0), ("png", 12), ("jpg", 0)])
def test_aligned_facades_with_known_colour_ids_read_as_those_ids(tmp_path, ext, noise):
    """Hand-made colour maps read through the aligned layout, B -> A, decode to the ids they were
    painted with: exact colours, colours with noise (within 20.8 of theirs), and flat blocks saved
    as JPEG (quality 95), whose block interiors come back within a few levels of their colour
    (asserted from the file) while chroma upsampling blurs the block edges (not asserted)."""
    ids, photo = _hand_made_ab(tmp_path, ext, noise)
    ds = create_dataset(tmp_path, "train", label_nc=12, no_instance=True, direction="BtoA",
                        palette="facades", resize_or_crop="none", required_multiple=16)
    assert ds.mode == "aligned" and len(ds) == 1
    s = ds[0]
    label = s["label"][0].numpy()
    known = np.ones(ids.shape, bool)
    if ext == "jpg":
        inner = [(np.arange(n) % 16 >= 4) & (np.arange(n) % 16 < 12) for n in ids.shape]
        known = inner[0][:, None] & inner[1][None, :]
        b_half = np.asarray(Image.open(tmp_path / "train" / "0.jpg").convert("RGB"))[:, ids.shape[1]:]
        off = np.abs(b_half.astype(int) - np.array(FACADES_PALETTE)[ids]).max(-1)
        assert off[known].max() <= 4       # the interiors' colours are known without the decoder
    else:
        np.testing.assert_array_equal(s["image"].permute(1, 2, 0).numpy(), photo)
    assert known.sum() >= ids.size // 4
    np.testing.assert_array_equal(label[known], ids[known])
    assert sorted(np.unique(label[known]).tolist()) == list(range(12))


@needs_shared
def test_convert_shared_facades(tmp_path, capsys):
    main(["--src", str(SHARED), "--out", str(tmp_path), "--holdout", "40", "--limit", "3"])
    assert "'train': 3, 'test': 3" in capsys.readouterr().out
    ds = create_dataset(tmp_path, "train", label_nc=12, no_instance=True,
                        resize_or_crop="none", required_multiple=16)
    first = sorted((SHARED / "train").glob("*.jpg"), key=lambda p: int(p.stem))[0]
    s = ds[[Path(r["label"]).stem for r in ds.records].index(first.stem)]
    ab = np.asarray(Image.open(first).convert("RGB"))
    assert s["image"].shape == (3, 256, 256)
    np.testing.assert_array_equal(s["image"].permute(1, 2, 0).numpy(), ab[:, :256])
    ids = s["label"][0].numpy()
    assert len(np.unique(ids)) >= 4          # a facade has several classes
    # Pixels of the JPEG colour map within 20 of a palette colour (colours are >= 58 apart, so of
    # at most one) are known to be of that class: most pixels are, and each decodes to it.
    pal = np.array(FACADES_PALETTE)
    near = np.linalg.norm(ab[:, 256:, None].astype(float) - pal[None, None], axis=-1) <= 20  # [H, W, 12]
    known = near.any(-1)
    assert known.mean() > 0.5
    np.testing.assert_array_equal(ids[known], near.argmax(-1)[known])
    # JPEG colour maps (blurred at region edges): typical pixels lie close to their colour.
    dist = np.abs(ab[:, 256:].astype(int) - pal[ids]).max(-1)
    assert np.median(dist) < 16 and np.percentile(dist, 75) < 50


@needs_shared
def test_read_shared_facades_directly(tmp_path):
    ds = create_dataset(SHARED, "train", label_nc=12, no_instance=True, direction="BtoA",
                        palette="facades", resize_or_crop="resize_and_crop", loadSize=286,
                        fineSize=256, validate="headers")
    assert ds.mode == "aligned" and len(ds) == 400
    s = ds[(0, 0)]
    assert s["label"].shape == (1, 256, 256) and s["image"].shape == (3, 256, 256)
    assert int(s["label"].max()) < 12


def _fake_ab_folder(src: Path, stems) -> None:
    """``src/train/{stem}.png``: random photo | palette colour map, 32x32 each half."""
    (src / "train").mkdir(parents=True)
    pal = np.array(FACADES_PALETTE, np.uint8)
    rng = np.random.default_rng(0)
    for s in stems:
        ids = np.kron(rng.integers(0, 12, (4, 4)), np.ones((8, 8), int))
        photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([photo, pal[ids]], 1)).save(src / "train" / f"{s}.png")


def _files(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_reconversion_with_fewer_images_leaves_exactly_the_new_set(tmp_path):
    _fake_ab_folder(tmp_path / "big", (1, 2, 3, 4, 5))
    _fake_ab_folder(tmp_path / "small", (7, 8))
    out = tmp_path / "out"
    convert(tmp_path / "big", out, holdout=2, holdout_split="val")
    assert len(list((out / "val_img").iterdir())) == 2
    counts = convert(tmp_path / "small", out)                   # no holdout: val/ must go
    assert counts == {"train": 2}
    folders = sorted(p.name for p in out.iterdir())
    assert folders == ["classes.json", "train_img", "train_label"], folders
    for kind in ("img", "label"):
        assert sorted(p.name for p in (out / f"train_{kind}").iterdir()) == ["7.png", "8.png"]
    meta = json.loads((out / "classes.json").read_text())
    assert meta["splits"] == {"train": 2} and meta["complete"]
    ds = create_dataset(out, "train", label_nc=12, no_instance=True, resize_or_crop="none",
                        required_multiple=1)
    assert len(ds) == 2


def test_a_folder_the_converter_did_not_write_is_refused_and_left_untouched(tmp_path):
    from pix2pixhd.datasets.synthetic_streets import generate
    _fake_ab_folder(tmp_path / "src", (1, 2))
    real = tmp_path / "real"                                  # someone's own facades, converted
    (real / "train_label").mkdir(parents=True)
    (real / "train_label" / "1.png").write_bytes(b"their label")
    streets = tmp_path / "streets"                            # another tool's folder
    generate(streets, n_train=1, n_test=0, width=32, height=16)
    for folder in (real, streets):
        before = _files(folder)
        with pytest.raises(InputError) as e:
            convert(tmp_path / "src", folder)
        msg = str(e.value)
        assert str(folder) in msg and "train_label/" in msg and "another --out" in msg, msg
        assert _files(folder) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert(tmp_path / "src", empty) == {"train": 2}   # an empty folder is fine


def test_a_converted_folder_holding_other_files_or_a_copied_classes_json_is_refused(tmp_path):
    """classes.json alone is no proof that the folder is the converter's: a copy of it in a
    dataset of one's own, or files added to a converted folder, must not be deleted by a rerun."""
    import shutil
    _fake_ab_folder(tmp_path / "src", (1, 2))
    out = tmp_path / "out"
    convert(tmp_path / "src", out)
    assert convert(tmp_path / "src", out) == {"train": 2}   # its own folder: replaced
    mine = tmp_path / "mine"                                 # a dataset of one's own ...
    (mine / "train_img").mkdir(parents=True)
    (mine / "train_img" / "1.png").write_bytes(b"my photo")
    shutil.copy(out / "classes.json", mine / "classes.json")   # ... with the converter's classes.json
    (out / "train_img" / "extra.png").write_bytes(b"added by hand")
    for folder, named in ((mine, "so it is a copy"), (out, "train_img/extra.png")):
        before = _files(folder)
        with pytest.raises(InputError, match="nothing was written or deleted") as e:
            convert(tmp_path / "src", folder)
        assert named in str(e.value) and str(folder) in str(e.value), str(e.value)
        assert _files(folder) == before


@pytest.mark.fault(cls="bad dataset",
                   case="--palette with the photo half as input (wrong --direction): named with the fix")
def test_the_photo_half_read_as_a_colour_map_is_refused_with_the_direction_fix(tmp_path, capsys):
    # Facades are photo|label; --palette facades without --direction BtoA decoded the photo half
    # to the nearest colours, silently ("no problems"), and trained on it
    from pix2pixhd.data import DatasetError
    from pix2pixhd.data.__main__ import main as data_main
    pal = np.array(FACADES_PALETTE, np.uint8)
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    for i in range(3):
        ids = np.kron(rng.integers(0, 12, (4, 4)), np.ones((8, 8), int))
        grey = np.kron(rng.integers(60, 200, (4, 4, 1)), np.ones((8, 8, 3))).astype(np.uint8)  # a dull photo
        photo = (grey + rng.integers(-20, 21, grey.shape)).clip(0, 255).astype(np.uint8)
        label = (pal[ids].astype(int) + rng.integers(-15, 16, (32, 32, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(np.concatenate([photo, label], 1)).save(tmp_path / "train" / f"{i}.jpg", quality=90)
    with pytest.raises(DatasetError, match=r"train/0.jpg: 0% of the pixels of its input half \(the left, "
                                           r"--direction AtoB\) are near .* pass --direction BtoA"):
        create_dataset(tmp_path, label_nc=12, palette="facades", no_instance=True, resize_or_crop="none",
                       required_multiple=1)
    ds = create_dataset(tmp_path, label_nc=12, palette="facades", no_instance=True, direction="BtoA",
                        resize_or_crop="none", required_multiple=1)
    assert len(ds) == 3
    assert data_main(["scan", str(tmp_path), "--palette", "facades"]) == 1
    assert "not a colour map: 3 file(s)" in capsys.readouterr().out
    assert data_main(["scan", str(tmp_path), "--palette", "facades", "--direction", "BtoA"]) == 0
    # a {phase}_label folder holding photos, read with a palette: refused too
    (tmp_path / "p" / "train_label").mkdir(parents=True)
    (tmp_path / "p" / "train_img").mkdir()
    with Image.open(tmp_path / "train" / "0.jpg") as im:
        im.crop((0, 0, 32, 32)).save(tmp_path / "p" / "train_label" / "0.png")
        im.crop((0, 0, 32, 32)).save(tmp_path / "p" / "train_img" / "0.png")
    with pytest.raises(DatasetError, match=r"train_label/0.png: 0% .* check --palette, or pass --label_nc 0"):
        create_dataset(tmp_path / "p", label_nc=12, palette="facades", no_instance=True, resize_or_crop="none",
                       required_multiple=1)


@needs_shared
def test_the_palette_fit_threshold_separates_every_shared_facades_label_half_from_its_photo_half():
    # the figures docs/data.md and layouts.PALETTE_NEAR's comment quote, measured here
    # (``pytest -s -k palette_fit`` prints them), and the largest share of a label half that one
    # colour far from the palette (JPEG noise) covers, below FAR_COLOUR_MIN_SHARE
    from pix2pixhd.data.layouts import (FAR_COLOUR_MIN_SHARE, PALETTE_MIN_NEAR, far_colours, load_palette,
                                        palette_fit)
    pal = load_palette("facades")
    labels, photos, far = [], [], []
    for f in sorted((SHARED / "train").iterdir()):
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB"))
        w = a.shape[1] // 2
        photos.append(palette_fit(a[:, :w], pal))
        labels.append(palette_fit(a[:, w:], pal))
        # far colours on 0.1% of the half or more: the largest one is the same as over all of
        # them whenever it is that large (0.423% here), and listing every JPEG-noise colour of
        # a few pixels made this test 20x slower
        worst = far_colours(a[:, w:], pal, min_share=0.001)
        far.append(worst[0][1] / (a.shape[0] * (a.shape[1] - w)) if worst else 0.0)
    print(f"{len(labels)} images: label halves min {min(labels):.3f} median {np.median(labels):.3f}; "
          f"photo halves max {max(photos):.4f}; largest share of a label half one far colour covers "
          f"{100 * max(far):.3f}%")
    assert len(labels) == 400 and min(labels) >= 0.45 and max(photos) <= 0.003
    assert max(photos) < PALETTE_MIN_NEAR < min(labels)
    assert max(far) <= 0.00423 < FAR_COLOUR_MIN_SHARE

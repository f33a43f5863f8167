"""Facades: the palette, the converter, and reading the pix2pix layout directly.

Uses ../shared/data/facades when present (skips otherwise); its images are never copied here.
A tiny fake AB folder tests the converter everywhere.
"""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import FACADES_PALETTE, create_dataset, decode_palette
from pix2pixhd.datasets.convert_facades import convert, main

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
    np.testing.assert_array_equal(ids, decode_palette(ab[:, 256:], np.array(FACADES_PALETTE)))
    assert len(np.unique(ids)) >= 4          # a facade has several classes
    # JPEG colour maps (blurred at region edges): typical pixels lie close to their colour.
    dist = np.abs(ab[:, 256:].astype(int) - np.array(FACADES_PALETTE)[ids]).max(-1)
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

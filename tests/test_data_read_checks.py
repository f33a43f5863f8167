"""The loader repeats three of validation's checks that 'headers' or 'off' did not run: a colour
missing from the palette, indexed (P) label maps whose palettes disagree, a partner stored with an
EXIF rotation. It raises validation's own message for the file, with the scan hint; a clean
dataset loads the same tensors whatever the validation level."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataloader, create_dataset
from pix2pixhd.data.loader import shutdown_workers

W, H = 48, 32
NONE = dict(label_nc=4, resize_or_crop="none", required_multiple=16, no_instance=True, no_flip=True)
COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
BORDER = (224, 224, 192)   # VOC's border colour, not in COLOURS


def _ids():
    """Four vertical bands of ids 0..3."""
    ids = np.zeros((H, W), np.uint8)
    for k in range(1, 4):
        ids[:, k * W // 4:] = k
    return ids


def _photo():
    return Image.fromarray(np.stack([_ids() * 60, _ids() * 20, 255 - _ids() * 50], -1))


def _split(root, labels, photos=None):
    """Label maps (PIL images) with their photos in the cityscapes layout; ``photos``: index ->
    (file bytes, extension) in place of the default photo."""
    for d in ("label", "img"):
        (root / f"train_{d}").mkdir(parents=True, exist_ok=True)
    for i, lab in enumerate(labels):
        lab.save(root / "train_label" / f"s{i}.png")
        if i in (photos or {}):
            (root / "train_img" / f"s{i}.{photos[i][1]}").write_bytes(photos[i][0])
        else:
            _photo().save(root / "train_img" / f"s{i}.png")
    (root / "pal.json").write_text(json.dumps(COLOURS))
    return root


def _colour_maps(root):
    """s0 clean, s1 with the border colour on its first row (48 px, 3.1%)."""
    rgb = np.array(COLOURS, np.uint8)[_ids()]
    bad = rgb.copy()
    bad[0, :] = BORDER
    return _split(root, [Image.fromarray(rgb), Image.fromarray(bad)]), {"palette": str(root / "pal.json")}


def _indexed(ids, order):
    """A P image showing ``COLOURS[ids]`` whose palette lists the colours in ``order``."""
    p = Image.fromarray(np.argsort(order)[ids].astype(np.uint8), "P")
    p.putpalette(np.array(COLOURS, np.uint8)[order].ravel().tolist())
    return p


def _p_maps(root):
    """s0 and s1 indexed with one palette, s2 with index 0 and 1 swapped."""
    return _split(root, [_indexed(_ids(), [0, 1, 2, 3])] * 2 + [_indexed(_ids(), [1, 0, 2, 3])]), {}


def _exif_maps(root):
    """s1's photo is a JPEG with EXIF Orientation 3 (viewers show it turned 180 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = 3
    b = io.BytesIO()
    _photo().save(b, "JPEG", quality=95, exif=exif.tobytes())
    return _split(root, [Image.fromarray(_ids())] * 2, photos={1: (b.getvalue(), "jpg")}), {}


CASES = {"colour": (_colour_maps, 1, "colour not in palette"),
         "P palette": (_p_maps, 2, "P palettes differ"),
         "EXIF": (_exif_maps, 1, "EXIF orientation")}


def _full_problem(root, kind, opts):
    """Validation 'full''s message for the one problem of ``kind`` in ``root``."""
    with pytest.raises(DatasetError) as e:
        create_dataset(root, **NONE, **opts)
    (msg,) = [m for k, _, m in e.value.problems if k == kind]
    return msg


def _as_loader_says(root, msg, ds):
    """Validation's message with its file names as the loader names files (the paths it was
    given), and the loader's scan hint."""
    return msg.replace("train_label/", f"{root}/train_label/").replace("train_img/", f"{root}/train_img/") \
        + f". {ds.find_all()}"


@pytest.mark.fault(cls="bad dataset", case="{case} problem under --validate {validate}: refused with "
                                              "validation's message for the file")
@pytest.mark.parametrize("validate", ["headers", "off"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_loader_refuses_what_full_validation_refuses(tmp_path, case, validate):
    make, bad, kind = CASES[case]
    root, opts = make(tmp_path)
    expected = _full_problem(root, kind, opts)
    if case == "EXIF" and validate == "headers":   # the header read already names it
        with pytest.raises(DatasetError) as e:
            create_dataset(root, **NONE, **opts, validate=validate)
        assert [m for k, _, m in e.value.problems if k == kind] == [expected]
        return
    ds = create_dataset(root, **NONE, **opts, validate=validate)
    ds[0]   # a good sample (the reference palette, for P) loads
    with pytest.raises(DatasetError) as e:
        ds[bad]
    assert str(e.value) == _as_loader_says(root, expected, ds)
    assert f"{root}/train_" in str(e.value) and str(e.value).endswith("lists every such file before training")


@pytest.mark.fault(cls="bad dataset", case="{case} problem met in a DataLoader worker process: named")
@pytest.mark.parametrize("case", list(CASES))
def test_a_worker_raises_it_as_one_dataset_error_naming_the_file(tmp_path, case):
    make, bad, kind = CASES[case]
    root, opts = make(tmp_path)
    name = f"{root}/train_{'img' if case == 'EXIF' else 'label'}/s{bad}."
    ds = create_dataset(root, **NONE, **opts, validate="off")
    loader = create_dataloader(ds, 1, shuffle=False, num_workers=1)
    try:
        with pytest.raises(DatasetError, match=f"{name}.*(colour|index|EXIF Orientation)") as e:
            list(loader)
    finally:
        shutdown_workers(loader)
    assert "lists every such file before training" in str(e.value)


def test_the_input_half_of_an_ab_image_is_checked_too(tmp_path):
    rgb = np.array(COLOURS, np.uint8)[_ids()]
    rgb[:2, :] = BORDER   # 96 px, 6.2% of the half
    (tmp_path / "train").mkdir()
    Image.fromarray(np.concatenate([np.asarray(_photo()), rgb], 1)).save(tmp_path / "train" / "a.png")
    opts = dict(direction="BtoA", palette=COLOURS)
    expected = _full_problem(tmp_path, "colour not in palette", opts)
    ds = create_dataset(tmp_path, **NONE, **opts, validate="off")
    with pytest.raises(DatasetError) as e:
        ds[0]
    assert str(e.value) == expected.replace("train/a.png", f"{tmp_path}/train/a.png") + f". {ds.find_all()}"
    assert "of its input half (the right)" in str(e.value)


def test_a_photo_half_read_as_the_colour_map_is_named_as_such(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    labels = np.array(COLOURS, np.uint8)[_ids()]
    (tmp_path / "train").mkdir()
    Image.fromarray(np.concatenate([photo, labels], 1)).save(tmp_path / "train" / "a.png")
    ds = create_dataset(tmp_path, **NONE, palette=COLOURS, validate="headers")   # AtoB: the photo
    with pytest.raises(DatasetError, match=r"train/a.png: \d+% of the pixels of its input half \(the left, "
                                           r"--direction AtoB\).*pass --direction BtoA"):
        ds[0]


def test_jpeg_noise_and_palettes_that_differ_where_unused_are_not_refused(tmp_path):
    # a JPEG colour map of palette colours: its noise makes far colours, each on few pixels
    rng = np.random.default_rng(0)
    blocks = np.kron(rng.integers(0, 4, (8, 12)), np.ones((8, 8), int))
    b = io.BytesIO()
    Image.fromarray(np.array(COLOURS, np.uint8)[blocks]).save(b, "JPEG", quality=75)
    (tmp_path / "a").mkdir()
    photo = io.BytesIO()
    Image.new("RGB", (96, 64)).save(photo, "PNG")
    _split(tmp_path / "a", [Image.open(b)], photos={0: (photo.getvalue(), "png")})
    ds = create_dataset(tmp_path / "a", **NONE, palette=COLOURS, validate="off")
    assert ds[0]["label"].shape == (1, 64, 96)
    # one palette for every index the files use; s1 lists another colour at index 5, which no file uses
    maps = [_indexed(_ids(), [0, 1, 2, 3]) for _ in range(2)]
    maps[0].putpalette(np.array(COLOURS + [(1, 1, 1), (2, 2, 2)], np.uint8).ravel().tolist())
    maps[1].putpalette(np.array(COLOURS + [(0, 0, 0), (9, 9, 9)], np.uint8).ravel().tolist())
    (tmp_path / "b").mkdir()
    _split(tmp_path / "b", maps)
    ds = create_dataset(tmp_path / "b", **NONE, validate="off")
    assert (ds[1]["label"][0].numpy() == _ids()).all()


@pytest.mark.parametrize("mode", ["none", "crop"])
def test_a_clean_dataset_gives_the_same_tensors_at_every_validation_level(tmp_path, mode):
    rgb = np.array(COLOURS, np.uint8)[_ids()]
    exif = Image.Exif()
    exif[0x0112] = 1   # as stored: nothing to refuse
    b = io.BytesIO()
    _photo().save(b, "JPEG", quality=95, exif=exif.tobytes())
    for sub, labels in (("colour", [Image.fromarray(rgb)] * 2), ("P", [_indexed(_ids(), [1, 0, 2, 3])] * 2)):
        _split(tmp_path / sub, labels, photos={1: (b.getvalue(), "jpg")})
    opts = dict(NONE, resize_or_crop=mode, fineSize=32, no_flip=False)
    for sub, extra, want in (("colour", {"palette": COLOURS}, _ids()),
                             ("P", {}, np.argsort([1, 0, 2, 3])[_ids()])):
        samples = {v: [create_dataset(tmp_path / sub, **opts, **extra, validate=v)[(i, e)]
                       for i in range(2) for e in range(3)] for v in ("full", "headers", "off")}
        for v in ("headers", "off"):
            for a, s in zip(samples["full"], samples[v]):
                assert a.keys() == s.keys() and a["path"] == s["path"]
                assert all(torch.equal(a[k], s[k]) and a[k].dtype == s[k].dtype
                           for k in a if k != "path")
        if mode == "none":   # the ids the files hold (or their mirror image: flips are on)
            assert all(any(np.array_equal(s["label"][0].numpy(), w) for w in (want, want[:, ::-1]))
                       for s in samples["off"])


def test_decoding_gives_the_ids_and_distances_of_the_plain_formula():
    from pix2pixhd.data.layouts import decode_palette, load_palette
    grid = np.stack(np.meshgrid(np.arange(0, 256, 17), np.arange(0, 256, 13), np.arange(0, 256, 11)), -1)
    rgb = grid.reshape(-1, 1, 3).astype(np.uint8)
    for pal in (load_palette("facades"), load_palette([[i, 255 - i, 7 * i % 256] for i in range(256)])):
        d = ((rgb.reshape(-1, 1, 3).astype(np.int64) - pal[None].astype(np.int64)) ** 2).sum(-1)
        ids, d2 = decode_palette(rgb, pal, distances=True)
        assert np.array_equal(ids[:, 0], d.argmin(1)) and np.array_equal(d2[:, 0], d.min(1))
        assert np.array_equal(decode_palette(rgb, pal), ids)

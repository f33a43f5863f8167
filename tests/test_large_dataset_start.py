"""A run's start and steps on a large dataset (10k-100k samples) cost no work per sample that the
level asks for none: ``--validate headers`` decodes no PNG's pixels (PIL's getexif would, to look
for an eXIf chunk after them), the sampler's length is arithmetic (no permutation of every sample
drawn for it, which the trainer asked for each step), and a folder is listed without a stat of
each file. Each is checked by what it calls, not by timing, on a few tiny files.

Each test carries ``@pytest.mark.fault(cls=..., case=...)``: the fault table in the docs is built
from these markers."""
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from pix2pixhd.data import DatasetError, ResumableSampler, create_dataset
from pix2pixhd.data import dataset as dsmod
from pix2pixhd.data.layouts import IMG_EXTS, _rel, hidden, list_folder

sys.path.insert(0, str(Path(__file__).parent))   # the block datasets of test_data.py
from test_data import NC, write_cityscapes  # noqa: E402

fault = pytest.mark.fault


@pytest.fixture()
def png_loads(monkeypatch):
    """The PNG files whose pixels were decoded (PngImageFile.load calls), in call order."""
    calls = []
    real = PngImagePlugin.PngImageFile.load

    def load(self):
        calls.append(getattr(self, "filename", "?"))
        return real(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load)
    return calls


def _turned_png(path: Path, orientation: int = 3) -> None:
    """An RGB PNG of write_cityscapes' photo size with an EXIF Orientation (PIL writes the eXIf
    chunk before IDAT)."""
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif)


def _chunks(data: bytes) -> list[bytes]:
    """The chunks of PNG ``data``, each whole (length, type, body, CRC)."""
    out, i = [], 8
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append(data[i:i + 12 + n])
        i += 12 + n
    return out


def _move_exif_after_pixels(path: Path) -> None:
    """Rewrite PNG ``path`` with its eXIf chunk after the last IDAT (allowed by the PNG spec's
    1.5 extension; some tools write it there)."""
    data = path.read_bytes()
    chunks = _chunks(data)
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    assert len(exif) == 1 and rest[-1][4:8] == b"IEND"
    path.write_bytes(data[:8] + b"".join(rest[:-1]) + exif[0] + rest[-1])
    body = path.read_bytes()
    assert body.index(b"IDAT") < body.index(b"eXIf"), "the eXIf chunk was not moved"
    assert zlib.crc32(exif[0][4:-4]) == struct.unpack(">I", exif[0][-4:])[0]


@fault(cls="bad dataset", case="--validate headers on PNG samples without EXIF: no pixel decoded (PIL's "
                                "getexif would decode each to look for an eXIf chunk after the pixels)")
def test_headers_validation_decodes_no_png(tmp_path, png_loads):
    write_cityscapes(tmp_path, "train", 3, feat=False)
    ds = create_dataset(tmp_path, label_nc=NC, resize_or_crop="none", validate="headers")
    assert len(ds) == 3
    assert png_loads == [], f"--validate headers decoded PNG pixels: {png_loads}"
    # an animated PNG's frames are counted from its headers too
    apng = tmp_path / "anim.png"
    frames = [Image.new("RGB", (8, 8), (k * 40, 0, 0)) for k in range(3)]
    frames[0].save(apng, save_all=True, append_images=frames[1:])
    with Image.open(apng) as im:
        assert dsmod._frames(im) == 3 and dsmod._orientation(im) is None
    assert png_loads == [], f"_frames/_orientation decoded an animated PNG: {png_loads}"


@fault(cls="bad dataset", case="a PNG photo with an EXIF Orientation in an eXIf chunk before its pixels: "
                                "refused by --validate {validate}, as a JPEG's")
@pytest.mark.parametrize("validate", ["headers", "full"])
def test_png_exif_before_the_pixels_is_still_read(tmp_path, validate):
    write_cityscapes(tmp_path, "train", 3, feat=False)
    _turned_png(tmp_path / "train_img" / "s0.png", 3)
    body = (tmp_path / "train_img" / "s0.png").read_bytes()
    assert body.index(b"eXIf") < body.index(b"IDAT")
    with pytest.raises(DatasetError, match=r"train_img/s0.png has EXIF Orientation 3"):
        create_dataset(tmp_path, label_nc=NC, resize_or_crop="none", validate=validate)


@fault(cls="bad dataset", case="a PNG photo whose eXIf chunk (Orientation 3) comes after its pixels: "
                                "refused by --validate full, and by the loader under --validate headers "
                                "(whose header read does not reach it)")
@pytest.mark.parametrize("validate", ["headers", "full"])
def test_png_exif_after_the_pixels_is_refused_by_validation_or_the_loader(tmp_path, validate):
    write_cityscapes(tmp_path, "train", 3, feat=False)
    _turned_png(tmp_path / "train_img" / "s0.png", 3)
    _move_exif_after_pixels(tmp_path / "train_img" / "s0.png")
    if validate == "full":
        with pytest.raises(DatasetError, match=r"train_img/s0.png has EXIF Orientation 3"):
            create_dataset(tmp_path, label_nc=NC, resize_or_crop="none", validate=validate)
        return
    ds = create_dataset(tmp_path, label_nc=NC, resize_or_crop="none", validate=validate)
    ds[1]   # its partners are clean
    with pytest.raises(DatasetError, match=r"train_img/s0.png has EXIF Orientation 3"):
        ds[0]


# -- the sampler's length --------------------------------------------------------------------------

def _grid():
    for n in (0, 1, 2, 3, 5, 8, 11):
        for world in (1, 2, 3, 4):
            for rank in range(world):
                for drop_last in (False, True):
                    for done in sorted({0, 1, 2, n // 2, max(n - 1, 0), n, n + 3}):
                        for skip in (0, 1, 2, 5):
                            yield n, world, rank, drop_last, done, skip


@fault(cls="interrupted run", case="the sampler's length (a resumed epoch's done or skip, shards, "
                                   "drop_last) is what it yields, without drawing the epoch's permutation")
def test_sampler_length_is_arithmetic_and_what_it_yields(monkeypatch):
    cases = list(_grid())
    samplers = []
    for n, world, rank, drop_last, done, skip in cases:
        s = ResumableSampler(n, shuffle=True, seed=3, rank=rank, world_size=world, drop_last=drop_last)
        s.set_epoch(2, skip=skip) if skip else s.set_epoch(2, done=done)
        samplers.append(s)
    want = [len(s.order(2, s.done)[s.skip:]) for s in samplers]   # what __iter__ yields

    def no_randperm(*a, **kw):
        raise AssertionError("torch.randperm called for a length")

    monkeypatch.setattr(torch, "randperm", no_randperm)
    got = [len(s) for s in samplers]
    counts = [s.count(2, s.done) for s in samplers]
    monkeypatch.undo()
    bad = [(c, w, g) for c, w, g in zip(cases, want, got) if w != g]
    assert not bad, f"(n, world, rank, drop_last, done, skip), len(iteration), len(sampler): {bad[:5]}"
    full = [len(s.order(2, s.done)) for s in samplers]
    assert counts == full
    # the loader's length and what iterating yields agree (a resumed epoch: done, then skip)
    for s, w in zip(samplers, want):
        assert len(list(iter(s))) == w


# -- listing a folder -----------------------------------------------------------------------------

def _old_list_folder(folder: Path, root: Path | None = None):
    """list_folder as it was before it read the folder by os.scandir (the reference)."""
    images, problems = [], []
    for p in sorted(folder.iterdir()):
        rel = _rel(p, root)
        image_name = p.suffix.lower() in IMG_EXTS
        if hidden(p):
            problems.append(("ignored", str(p), f"{rel}{'/' if p.is_dir() else ''}: hidden (name starts "
                                                f"with '.', e.g. macOS .DS_Store or ._* files); not a sample"))
        elif image_name and p.is_file():
            images.append(p)
        elif image_name and p.is_symlink() and not p.exists():
            problems.append(("broken symlink", str(p), f"{rel} is a symlink to {os.readlink(p)}, "
                                                       "which does not exist; fix the link or remove it"))
        elif p.is_dir():
            problems.append(("ignored", str(p), f"{rel}/ is a folder; sub-folders are not searched "
                                                f"(move its images up into {folder.name}/ if they belong)"))
        else:
            what = ("not a regular file" if image_name else
                    f"not an image ({p.suffix or 'no extension'}; read: {', '.join(IMG_EXTS)})")
            problems.append(("ignored", str(p), f"{rel}: {what}"))
    return images, problems


@fault(cls="path tricks", case="a folder of images, sub-folders, hidden files, symlinks (to a file, to a "
                               "folder, broken, a loop) and other names: listed as before, without a "
                               "stat of each file")
def test_list_folder_is_unchanged_by_scandir(tmp_path):
    d = tmp_path / "data" / "train_img"
    d.mkdir(parents=True)
    for name in ("b.png", "a.png", "A.JPG", "c.jpeg", "y.PNG", "z.webp", "notes.txt", "noext", "x.",
                 "..png", ".DS_Store", "._a.png", "a.png.bak"):
        (d / name).write_bytes(b"x")
    for name in ("sub", "sub.png", ".hidden_dir"):
        (d / name).mkdir()
    (d / "link.png").symlink_to("a.png")
    (d / "abs_link.jpg").symlink_to(d / "b.png")
    (d / "broken.png").symlink_to("missing.png")
    (d / "broken.txt").symlink_to("missing.txt")
    (d / "dir_link.png").symlink_to("sub")
    (d / "loop1.png").symlink_to("loop2.png")
    (d / "loop2.png").symlink_to("loop1.png")
    (d / ".hidden_link.png").symlink_to("a.png")
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "pipe.png")
    for root in (tmp_path / "data", None, tmp_path / "elsewhere"):
        assert list_folder(d, root) == _old_list_folder(d, root)
    images, problems = list_folder(d, tmp_path / "data")
    assert [p.name for p in images] == ["A.JPG", "a.png", "abs_link.jpg", "b.png", "c.jpeg", "link.png",
                                        "y.PNG", "z.webp"]
    assert all(isinstance(p, Path) and p.parent == d for p in images)
    kinds = {Path(p).name: k for k, p, _ in problems}
    assert kinds["broken.png"] == kinds["loop1.png"] == "broken symlink" and kinds["sub.png"] == "ignored"


@fault(cls="path tricks", case="a folder of 30 images and a text file: the images are listed from the "
                               "directory's file types, no stat and no relative name made for each")
def test_list_folder_stats_no_image(tmp_path, monkeypatch):
    from pix2pixhd.data import layouts
    d = tmp_path / "train_img"
    d.mkdir()
    for i in range(30):
        (d / f"{i:03d}.png").write_bytes(b"x")
    (d / "notes.txt").write_bytes(b"x")
    stats, rels = [], []
    real_stat, real_rel = Path.stat, layouts._rel

    def stat(self, *a, **kw):
        stats.append(self.name)
        return real_stat(self, *a, **kw)

    def rel(p, root):
        rels.append(p.name)
        return real_rel(p, root)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setattr(layouts, "_rel", rel)
    images, problems = list_folder(d, tmp_path)
    monkeypatch.undo()
    assert len(images) == 30 and [k for k, _, _ in problems] == ["ignored"]
    assert not [s for s in stats if s.endswith(".png")], f"an image was stat'ed: {stats}"
    assert rels == ["notes.txt"], f"relative names made for: {rels}"

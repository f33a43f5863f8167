"""Files read otherwise than viewers show them, said once (not a line per file, never refused):
CycleGAN's unaligned domains and synthesize.py's --input files whose EXIF Orientation viewers
apply (read as stored, as training reads them), and files of several frames (an animated PNG, a
multi-page TIFF: the first frame alone is read) in training and synthesis. And a synthesis job
with many unreadable inputs among good ones prints the first SKIP_LINES skip lines, then one line
saying the rest are counted and listed in the manifest, which holds every one with its reason.

Each test carries ``@pytest.mark.fault(cls=..., case=...)``: the fault table in the docs is built
from these markers."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd import engine
from pix2pixhd.data import create_dataset
from tests.synthesis_runs import manifest, rgb_run, run, synth  # noqa: F401  (fixtures)

fault = pytest.mark.fault
EXIF_FIX = "PIL.ImageOps.exif_transpose(im).save(...)"
FRAMES_SAID = "only the first frame is read"
SHOWN = 20   # the skip lines printed (engine.SKIP_LINES)


def photo(seed: int, h: int = 16, w: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def turned_jpeg(path: Path, orientation: int, seed: int = 0) -> Path:
    """A JPEG whose EXIF Orientation tag viewers apply."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = photo(seed)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif)
    return path


def frames(path: Path, n: int = 3, seed: int = 0) -> Path:
    """An animated PNG (.png) or a multi-page TIFF (.tif) of ``n`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed).save(path, save_all=True, append_images=[photo(seed + k) for k in range(1, n)])
    return path


def still(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(seed).save(path)
    return path


@fault(cls="bad dataset", case="CycleGAN domain images with an EXIF Orientation (read as stored): one note "
                                "naming the first files and the count, under --validate {validate}")
@pytest.mark.parametrize("validate", ["headers", "full"])
def test_unaligned_images_with_an_exif_orientation_are_noted_once(tmp_path, capsys, validate):
    root = tmp_path / "cg"
    for i in range(6):
        turned_jpeg(root / "trainA" / f"t{i}.jpg", 6, seed=i)
    turned_jpeg(root / "trainB" / "m.jpg", 2)
    still(root / "trainA" / "plain.png")
    still(root / "trainB" / "b.png")
    ds = create_dataset(root, "train", label_nc=0, no_instance=True, resize_or_crop="none", validate=validate,
                        model="cyclegan")
    # read as stored: not refused, not turned (16x32 stored, 32x16 as viewers show it)
    assert len(ds) == 7 and {tuple(ds[i]["A"].shape) for i in range(7)} == {(3, 16, 32)}
    err = capsys.readouterr().err
    assert "EXIF orientation read as stored: 7 file(s), first 5:" in err, err
    assert "trainA/t0.jpg (Orientation 6: viewers show it turned 90 degrees clockwise)" in err, err
    assert "... and 2 more" in err and "plain.png" not in err, err
    assert err.count(EXIF_FIX) == 1 and "read as stored, not turned, as training reads them" in err, err


@fault(cls="bad dataset", case="an animated PNG and a multi-page TIFF in a paired and an unaligned dataset: one "
                                "note that only the first frame is read")
def test_files_of_several_frames_are_noted_once_in_training(tmp_path, capsys):
    pairs = tmp_path / "pairs"
    frames(pairs / "train_A" / "x.png", 3)
    still(pairs / "train_B" / "x.png")
    still(pairs / "train_A" / "y.png")
    frames(pairs / "train_B" / "y.tif", 2)
    still(pairs / "train_A" / "z.png")
    still(pairs / "train_B" / "z.png")
    ds = create_dataset(pairs, "train", label_nc=0, no_instance=True, resize_or_crop="none", validate="headers",
                        model="pix2pix")
    assert len(ds) == 3 and ds[0]["label"].shape[0] == 3   # read: not refused
    err = capsys.readouterr().err
    assert "several frames: 2 file(s):" in err and "train_A/x.png (3 frames)" in err, err
    assert "train_B/y.tif (2 frames)" in err and err.count(FRAMES_SAID) == 1, err

    cg = tmp_path / "cg"
    frames(cg / "trainA" / "anim.png", 4)
    still(cg / "trainB" / "b.png")
    create_dataset(cg, "train", label_nc=0, no_instance=True, resize_or_crop="none", validate="full",
                   model="cyclegan")
    err = capsys.readouterr().err
    assert "several frames: 1 file(s):" in err and "trainA/anim.png (4 frames)" in err, err
    assert err.count(FRAMES_SAID) == 1, err


@fault(cls="synthesis", case="--input files with an EXIF Orientation, an animated PNG and a multi-page TIFF: "
                              "synthesized as stored (first frame), one note per kind naming the first files")
def test_synthesis_inputs_read_as_stored_are_noted_once(rgb_run, tmp_path, capsys):
    inp = tmp_path / "in"
    for i in range(7):
        turned_jpeg(inp / f"t{i}.jpg", 8 if i % 2 else 6, seed=i)
    frames(inp / "anim.png", 3)
    frames(inp / "pages.tif", 2)
    still(inp / "plain.png")
    assert synth(rgb_run, inp, tmp_path / "out") == 0
    cap = capsys.readouterr()
    assert "wrote 10 images" in cap.out, cap.out
    exif = [line for line in cap.err.splitlines() if "EXIF Orientation" in line]
    assert len(exif) == 1, cap.err
    assert exif[0].startswith("note: 7 input file(s) have an EXIF Orientation: "), exif
    assert f"{inp / 't0.jpg'} (Orientation 6: viewers show it turned 90 degrees clockwise)" in exif[0], exif
    assert f"{inp / 't1.jpg'} (Orientation 8: viewers show it turned 90 degrees counter-clockwise)" in exif[0]
    assert "t5.jpg" not in exif[0] and "and 2 more" in exif[0] and EXIF_FIX in exif[0], exif
    several = [line for line in cap.err.splitlines() if "frames" in line]
    assert len(several) == 1, cap.err
    assert re.search(r"note: 2 input file\(s\) hold several frames .*anim\.png \(3 frames\), .*pages\.tif "
                     rf"\(2 frames\); {FRAMES_SAID}", several[0]), several
    assert "plain.png" not in cap.err, cap.err


@fault(cls="synthesis", case="many unreadable (empty) inputs among good ones: the first skip lines printed, then "
                              "one line; the manifest holds every reason")
def test_many_skipped_inputs_print_a_bounded_number_of_lines(run, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a", "b"):   # usable first: the early stop does not apply
        Image.fromarray((np.arange(16 * 24) % 5).reshape(16, 24).astype(np.uint8)).save(inp / f"{name}.png")
    n_empty = 35
    for i in range(n_empty):
        (inp / f"e{i:03d}.png").write_bytes(b"")
    out = tmp_path / "out"
    assert synth(run, inp, out) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("skipped ")]
    assert len(lines) == SHOWN, f"{len(lines)} skip lines printed:\n" + "\n".join(lines[-3:])
    assert engine.SKIP_LINES == SHOWN
    further = [line for line in text.splitlines() if line.startswith("skipped: further skipped inputs")]
    assert len(further) == 1 and str(out / "manifest.jsonl") in further[0], text
    assert "wrote 2 images" in text and f"skipped {n_empty};" in text, text
    skipped = [r for r in manifest(out) if r["status"] == "skipped"]
    assert len(skipped) == n_empty and all("cannot read this image" in r["reason"] for r in skipped)
    assert {Path(r["input"]).name for r in skipped} == {f"e{i:03d}.png" for i in range(n_empty)}


@pytest.mark.fault(cls="synthesis", case="an empty --input file: skipped as 'the file is empty (0 bytes)', as "
                                         "training says it (it was PIL's UnidentifiedImageError)")
def test_an_empty_synthesis_input_is_skipped_as_empty(run, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray((np.arange(16 * 24) % 5).reshape(16, 24).astype(np.uint8)).save(inp / "a.png")
    (inp / "b.png").write_bytes(b"")
    out = tmp_path / "out"
    assert synth(run, inp, out) == 0
    text = capsys.readouterr().out
    assert re.search(r"^skipped .*b\.png: cannot read this image: the file is empty \(0 bytes\)$", text, re.M), text
    assert [r["reason"] for r in manifest(out) if r["status"] == "skipped"] == [
        "cannot read this image: the file is empty (0 bytes)"]

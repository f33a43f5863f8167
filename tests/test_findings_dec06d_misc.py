"""Hostile and odd inputs a user's audit found: evaluate on an image whose header declares more
pixels than Pillow opens (a traceback), a palette giving two ids one colour (accepted silently),
and data scan passing samples too small for the generator that training refuses."""
import struct
import zlib

import numpy as np
from PIL import Image

from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.errors import run


def _png_header_only(path, w, h):
    """A grey PNG whose header says w x h (its data is a few rows): Pillow refuses to open it
    above Image.MAX_IMAGE_PIXELS x 2 (DecompressionBombError)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * (w + 1) * 2)) + chunk(b"IEND", b""))


def test_evaluate_refuses_an_image_declaring_too_many_pixels_in_one_line(tmp_path, capsys):
    from pix2pixhd.evaluate import main as evaluate_main
    (tmp_path / "fake").mkdir()
    (tmp_path / "real").mkdir()
    _png_header_only(tmp_path / "fake" / "a.png", 50000, 50000)
    Image.new("RGB", (32, 32)).save(tmp_path / "real" / "a.png")
    assert run(evaluate_main, ["--fake", str(tmp_path / "fake"), "--real", str(tmp_path / "real"), "--no_fid"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --fake image {tmp_path / 'fake' / 'a.png'} cannot be read (Image size "
                          "(2500000000 pixels) exceeds limit") and err.endswith(
        "its header declares more pixels than Pillow opens; re-create it at its real size, or remove it"), err
    assert "Traceback" not in err


def test_a_palette_giving_two_ids_one_colour_is_said(tmp_path, capsys):
    import json
    from pix2pixhd.data import create_dataset
    from pix2pixhd.data.layouts import NAMED_PALETTES, palette_duplicates
    pal = [list(c) for c in NAMED_PALETTES["facades"]]
    pal[5] = pal[2]
    (tmp_path / "dup.json").write_text(json.dumps(pal))
    assert palette_duplicates(np.asarray(pal)) == [(5, 2)]
    assert palette_duplicates(np.asarray(NAMED_PALETTES["facades"])) == []
    root = tmp_path / "d"
    for sub in ("train_label", "train_img"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.asarray(pal, np.uint8)[np.zeros((32, 32), int)]).save(root / "train_label" / "a.png")
    Image.new("RGB", (32, 32)).save(root / "train_img" / "a.png")
    create_dataset(root, "train", label_nc=12, palette=str(tmp_path / "dup.json"), no_instance=True,
                   resize_or_crop="none", validate="headers")
    err = capsys.readouterr().err
    assert (f"note: palette {tmp_path / 'dup.json'}: ids 5 (as 2) have the colour of an earlier id; their "
            "pixels read as that id, so those ids never occur") in err, err


def test_scan_finds_samples_too_small_for_the_generator_as_training_does(tmp_path, capsys):
    root = tmp_path / "tiny"
    for sub in ("train_label", "train_img"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(root / "train_label" / "a.png")
    Image.new("RGB", (1, 1)).save(root / "train_img" / "a.png")
    assert data_main(["scan", str(root), "--label_nc", "9", "--resize_or_crop", "none", "--no_instance"]) == 1
    out = capsys.readouterr().out
    assert "too small: 1 file(s):" in out, out
    assert (f"{root / 'train_label' / 'a.png'} (1x1) with --resize_or_crop none is 16x16, too small for the "
            "generator (16x downsampled): each side must be more than 16") in out, out
    assert "no problems" not in out


def test_an_error_line_is_one_write_with_its_newline(monkeypatch):
    """Under torchrun every rank of an agreed start error prints its line into one pipe; print()
    wrote the text and the newline apart, and CI once read rank 1's line glued to rank 0's."""
    import io
    import sys

    from pix2pixhd.errors import ConfigError

    class Recording(io.StringIO):
        def __init__(self):
            super().__init__()
            self.writes = []

        def write(self, text):
            self.writes.append(text)
            return super().write(text)

    err = Recording()
    monkeypatch.setattr(sys, "stderr", err)

    def fails(argv):
        raise ConfigError("rank 1's options differ from rank 0's")
    assert run(fails, []) == 1
    assert err.writes == ["error: rank 1's options differ from rank 0's\n"]

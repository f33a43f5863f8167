"""pix2pixhd.report.write_image_grid: the grid behind main_job's sample sheet and quality.py's sheets."""
import numpy as np
import pytest
from PIL import Image

from pix2pixhd.report import TITLE_HEIGHT, write_image_grid


def _cells(rng, n_rows, n_cols, h=6, w=10):
    return [[rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(n_cols)] for _ in range(n_rows)]


def test_grid_places_every_cell_with_white_gaps_and_titles(tmp_path):
    rng = np.random.default_rng(0)
    h, w, gap = 6, 10, 3
    rows = _cells(rng, 2, 3, h, w)
    rows[1][2] = Image.fromarray(rows[1][2])              # PIL images and arrays mix
    path = write_image_grid(rows, tmp_path / "sub" / "g.png", titles=("a", "b", "c"), gap=gap)
    got = np.asarray(Image.open(path))
    assert got.shape == (TITLE_HEIGHT + 2 * (h + gap), 3 * w + 2 * gap, 3)
    assert (got[:TITLE_HEIGHT] < 64).all(axis=2).any()   # the titles: dark (antialiased) text
    blank = np.ones(got.shape[:2], bool)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            y, x = TITLE_HEIGHT + i * (h + gap), j * (w + gap)
            np.testing.assert_array_equal(got[y:y + h, x:x + w], np.asarray(cell))
            blank[y:y + h, x:x + w] = False
    blank[:TITLE_HEIGHT] = False
    assert (got[blank] == 255).all()                      # the gaps, and the one after the last row
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["g.png"]   # no temporary left


def test_grid_without_gap_or_titles_is_the_cells_concatenated(tmp_path):
    rows = _cells(np.random.default_rng(1), 3, 2)
    got = np.asarray(Image.open(write_image_grid(rows, tmp_path / "g.png")))
    np.testing.assert_array_equal(got, np.concatenate([np.concatenate(r, 1) for r in rows], 0))


def test_grid_reduced_colours_and_refused_sizes(tmp_path):
    rng = np.random.default_rng(2)
    rows = _cells(rng, 4, 3, 16, 16)
    small = Image.open(write_image_grid(rows, tmp_path / "g.png", colors=16))
    assert small.mode == "P" and len(small.getcolors(4096)) <= 16
    rows[1][1] = np.zeros((5, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"16x16 like the first, got 16x5"):
        write_image_grid(rows, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_comparison_page_keeps_columns_when_a_label_or_real_is_missing(tmp_path):
    """A stem without a label file gets an empty label cell, not its synthesized image there."""
    import re

    from pix2pixhd.report import write_comparison_page
    for sub in ("fake", "lab", "real"):
        (tmp_path / sub).mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.full((4, 4, 3), 10, np.uint8)).save(tmp_path / "fake" / f"{stem}.png")
    Image.fromarray(np.full((4, 4, 3), 12, np.uint8)).save(tmp_path / "real" / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "lab" / "a.png")   # b: no label, no real
    page = write_comparison_page(tmp_path / "fake", tmp_path / "lab", tmp_path / "real", 3).read_text()
    rows = dict(re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", page))
    cells = {s: re.findall(r"<td>(.*?)</td>", r) for s, r in rows.items()}
    assert len(cells["a"]) == len(cells["b"]) == 3
    assert "index_files/label_" in cells["a"][0] and "a.png" in cells["a"][1] and "real/a.png" in cells["a"][2]
    assert cells["b"][0] == "" and 'src="b.png"' in cells["b"][1] and cells["b"][2] == ""
    assert "<h1>label | synthesized | real</h1>" in page


def test_comparison_page_of_a_photo_input_says_input_and_target(tmp_path):
    """label_nc 0 (pix2pix, CycleGAN): the first column is the input photo, not a label map."""
    from pix2pixhd.report import write_comparison_page
    for sub in ("fake", "lab", "real"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.full((4, 4, 3), 10, np.uint8)).save(tmp_path / sub / "a.png")
    page = write_comparison_page(tmp_path / "fake", tmp_path / "lab", tmp_path / "real", 0).read_text()
    assert "<h1>input | synthesized | target</h1>" in page and "label |" not in page

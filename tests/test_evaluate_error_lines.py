"""The look of python -m pix2pixhd.evaluate's refusal of several files (undecodable, mode I/F,
colour label maps): a short first line (how many, and the fix when they share one), then one
indented line per file named, the count of the others, and the fix of each kind, as the dataset's
problem lists print. It was one line: five long paths and the fixes, hundreds of characters.

Paths are the test's own (tmp_path, of any length), so line widths are checked with the path a
line names taken out; images are 16 px and nothing is scored.
"""
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torchmetrics")

from tests.evaluate_cli import images, one_error  # noqa: E402

# a long file name, as Cityscapes' are (frankfurt_000001_012345_gtFine_labelIds.png...)
LONG = "frankfurt_000001_012345_leftImg8bit_synthesized_image_epoch_200"


def _long_names(folder, n):
    """``folder``'s images renamed LONG_i.png (i < 10: they sort as numbers)."""
    for i in range(n):
        (folder / f"{i}.png").rename(folder / f"{LONG}_{i}.png")
    return [folder / f"{LONG}_{i}.png" for i in range(n)]


def _width_without_path(line, paths):
    """``line``'s length with the path of ``paths`` it names taken out, each time it is named
    (Pillow's reason repeats it: "cannot identify image file 'PATH'"): a path is as long as the
    user's folders make it, the rest of the line is the error's own."""
    for p in sorted(map(str, paths), key=len, reverse=True):
        if p in line:
            return len(line.replace(p, ""))
    return len(line)


@pytest.mark.fault(cls="bad dataset", case="7 undecodable --fake images of long names: a first line with the count "
                   "and the fix, then the first 5 one per line, then the count of the others (was one line of "
                   "hundreds of characters)")
def test_undecodable_files_are_listed_one_per_line_under_a_first_line_with_count_and_fix(tmp_path, capsys):
    fake, real = images(tmp_path / "fake", 7), images(tmp_path / "real", 7, seed=1)
    bad = _long_names(fake, 7)
    _long_names(real, 7)
    for i, p in enumerate(bad):
        if i % 2:
            p.write_text("not an image")
        else:
            data = p.read_bytes()
            p.write_bytes(data[:len(data) // 2])   # truncated
    lines = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"]).splitlines()
    # the fault: one line holding every path, the reasons, "and 2 more" and the fix
    assert lines[0] == ("error: 7 images cannot be read: each is truncated or not an image: re-create them "
                        "(e.g. rerun synthesize.py) or remove them"), lines
    assert len(lines) == 7, lines
    for i, line in enumerate(lines[1:6]):   # the first 5, in order, each on its own line
        why = "(cannot identify image file" if i % 2 else "(image file is truncated"
        assert line.startswith(f"  --fake image {bad[i]} {why}"), (i, lines)
    assert lines[6] == "  ... and 2 more", lines
    assert not any(str(p) in "\n".join(lines) for p in bad[5:]), lines
    assert max(_width_without_path(line, bad) for line in lines[1:]) <= 120, lines


@pytest.mark.fault(cls="bad dataset", case="5 mode-F --fake images of long names, a colour --labels map and an "
                   "undecodable --train_labels map: each file on its own line, each kind's fix after the list, "
                   "one line each, no file line over 120 characters but its path")
def test_files_of_several_kinds_are_one_per_line_with_each_kinds_fix_after_them(tmp_path, capsys):
    fake, real = images(tmp_path / "fake", 6), images(tmp_path / "real", 6, seed=1)
    train_img, train_lab = images(tmp_path / "train_img", 4, seed=2), images(tmp_path / "train_lab", 4, "L")
    labels = images(tmp_path / "labels", 6, "L", seed=3)
    names = [_long_names(d, n) for d, n in ((fake, 6), (real, 6), (train_img, 4), (train_lab, 4), (labels, 6))]
    fakes, tr_labs, labs = names[0], names[3], names[4]
    for i in range(5):   # five 32-bit float fakes: no fixed range
        fakes[i].unlink()
        fakes[i] = fakes[i].with_suffix(".tif")
        Image.fromarray(np.random.default_rng(i).random((16, 16), dtype=np.float32)).save(fakes[i])
    Image.open(names[1][2]).save(labs[2])   # an RGB picture given as a label map
    data = tr_labs[1].read_bytes()
    tr_labs[1].write_bytes(data[:len(data) // 2])
    err = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid", "--labels", str(labels),
                             "--train_images", str(train_img), "--train_labels", str(train_lab),
                             "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16"])
    lines = err.splitlines()
    assert lines[0] == "error: 7 images cannot be read (the fix of each kind follows the list):", lines
    # the five fakes (listed ahead of the segmentation inputs), then the first of each kind they
    # leave out, each on its own line
    want = [f"  --fake image {p} is a mode-F image (32-bit float values of no fixed range)" for p in fakes[:5]]
    want += [f"  --train_labels map {tr_labs[1]} (", f"  --labels map {labs[2]} is an RGB image (3 channels)"]
    assert len(lines) > len(want) + 2, lines
    for line, start in zip(lines[1:], want):
        assert line.startswith(start), (start, lines)
    # the fix of each kind, one line each after the list, none wrapped: the colour fix's command
    # stays whole on its line, to copy
    fixes = lines[1 + len(want):]
    assert len(fixes) == 3, lines
    assert fixes[0].startswith("  for each file that is truncated or not an image: re-create it"), lines
    assert fixes[1].startswith("  for each mode-I or mode-F image (32-bit values of no fixed range): convert"), lines
    assert fixes[2].startswith("  for each colour image given as a label map: convert it"), lines
    assert "(CMP Facades: python -m pix2pixhd.datasets.convert_facades --src SRC --out OUT), or pass " \
        "--palette facades (or a JSON file of [r, g, b] colours) to read colour maps" in fixes[2], lines
    files = lines[1:1 + len(want)]
    assert max(_width_without_path(line, [*fakes, *tr_labs, *labs]) for line in files) <= 120, lines


@pytest.mark.fault(cls="bad dataset", case="2 truncated --fake images, one named with a newline: still one line per "
                   "file, the newline shown as \\x0a (not a line that reads as another entry)")
def test_a_newline_in_a_refused_file_name_does_not_start_a_line(tmp_path, capsys):
    fake, real = images(tmp_path / "fake", 2), images(tmp_path / "real", 2, seed=1)
    (real / "1.png").rename(real / "a\n  --fake image b.png")
    (fake / "1.png").rename(fake / "a\n  --fake image b.png")
    for p in (fake / "0.png", fake / "a\n  --fake image b.png"):
        data = p.read_bytes()
        p.write_bytes(data[:len(data) // 2])
    lines = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"]).splitlines()
    assert len(lines) == 3 and lines[0].startswith("error: 2 images cannot be read: "), lines
    assert lines[2].startswith(f"  --fake image {fake}/a\\x0a  --fake image b.png (image file is truncated"), lines


def _truncate(*paths):
    for p in paths:
        data = p.read_bytes()
        p.write_bytes(data[:len(data) // 2])


COPY = "copy it again from the dataset or its source"


@pytest.mark.fault(cls="bad dataset", case="a truncated --real photo, --train_labels map or --fake image alone: "
                   "the dataset's files are copied again, only a --fake image re-created by synthesize.py (the "
                   "--real photo's fix said to rerun synthesize.py)")
def test_the_fix_of_one_undecodable_file_suits_the_option_it_came_from(tmp_path, capsys):
    fake, real = images(tmp_path / "fake", 4), images(tmp_path / "real", 4, seed=1)
    train_img, train_lab = images(tmp_path / "train_img", 4, seed=2), images(tmp_path / "train_lab", 4, "L")
    labels = images(tmp_path / "labels", 4, "L", seed=3)
    seg = ["--labels", str(labels), "--train_images", str(train_img), "--train_labels", str(train_lab),
           "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16"]
    whole = (real / "1.png").read_bytes()
    _truncate(real / "1.png")
    err = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert err.startswith(f"error: --real image {real / '1.png'} cannot be read (image file is truncated"), err
    # the fault: "re-create it (e.g. rerun synthesize.py)", which writes --fake images, not photos
    assert err.endswith(f"): it is truncated or not an image; re-create it (e.g. {COPY}) or remove it"), err
    (real / "1.png").write_bytes(whole)
    _truncate(train_lab / "2.png")
    err = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid", *seg])
    assert err.startswith(f"error: --train_labels map {train_lab / '2.png'} cannot be read ("), err
    assert err.endswith(f"re-create it (e.g. {COPY}) or remove it") and "synthesize" not in err, err
    (train_lab / "2.png").unlink()
    _truncate(fake / "3.png")
    err = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert err.startswith(f"error: --fake image {fake / '3.png'} cannot be read ("), err
    assert err.endswith("re-create it (e.g. rerun synthesize.py) or remove it"), err


@pytest.mark.fault(cls="bad dataset", case="6 truncated --fake images and a truncated --real photo (counted, not "
                   "named), and a truncated --fake image and --train_labels map with a colour --labels map: the "
                   "one fix fits both options (was 'rerun synthesize.py' for all)")
def test_the_fix_of_several_undecodable_files_fits_every_option_they_came_from(tmp_path, capsys):
    fake, real = images(tmp_path / "fake", 8), images(tmp_path / "real", 8, seed=1)
    _truncate(*(fake / f"{i}.png" for i in range(6)), real / "6.png")
    lines = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"]).splitlines()
    assert lines[0] == "error: 7 images cannot be read (the fix follows the list):", lines
    assert all(line.startswith("  --fake image ") for line in lines[1:6]) and lines[6] == "  ... and 2 more", lines
    # the fault: "re-create them (e.g. rerun synthesize.py) or remove them" for the --real photo too
    assert lines[7:] == ["  each is truncated or not an image: re-create them (a --fake image: rerun "
                         f"synthesize.py; a --real image: {COPY}) or remove them"], lines

    fake, real = images(tmp_path / "fake2", 6), images(tmp_path / "real2", 6, seed=1)
    train_img, train_lab = images(tmp_path / "train_img", 4, seed=2), images(tmp_path / "train_lab", 4, "L")
    labels = images(tmp_path / "labels", 6, "L", seed=3)
    _truncate(fake / "4.png", train_lab / "1.png")
    Image.open(real / "2.png").save(labels / "2.png")   # an RGB picture given as a label map
    lines = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid", "--labels", str(labels),
                               "--train_images", str(train_img), "--train_labels", str(train_lab),
                               "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16"]).splitlines()
    assert lines[0] == "error: 3 images cannot be read (the fix of each kind follows the list):", lines
    assert lines[4] == ("  for each file that is truncated or not an image: re-create it (a --fake image: rerun "
                        f"synthesize.py; a --train_labels map: {COPY}) or remove it"), lines


@pytest.mark.fault(cls="bad dataset", case="2 truncated --fake images, one named with a tab, an escape and a carriage "
                   "return: each shown as \\xNN, as errors.printable shows control characters (the tab was printed "
                   "raw)")
def test_every_control_character_in_a_refused_file_name_is_shown_escaped(tmp_path, capsys):
    fake, real = images(tmp_path / "fake", 2), images(tmp_path / "real", 2, seed=1)
    name = "a\tb\x1b[2Jc\rd.png"
    (real / "1.png").rename(real / name)
    (fake / "1.png").rename(fake / name)
    _truncate(fake / "0.png", fake / name)
    lines = one_error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"]).splitlines()
    assert len(lines) == 3 and lines[0].startswith("error: 2 images cannot be read: "), lines
    # the fault: "a\tb" with a raw tab, while a newline showed as \x0a
    assert lines[2].startswith(f"  --fake image {fake}/a\\x09b\\x1b[2Jc\\x0dd.png (image file is truncated"), lines

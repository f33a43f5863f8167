"""Mutants of today's commits that the suite let through (review MUT3), each killed here: the
validation stamp (create_dataset's ``stamp`` / ``reuse_stamp``: which changes validate again,
which damaged stamps are ignored, the source sizes a skipped validation reports), Records' slices,
equality and ``list + Records``, and evaluate's one error naming every unreadable file.

Datasets are 2-4 tiny images opened through create_dataset; validations counted by the calls to
``validate_dataset``. Each fault-type test carries ``@pytest.mark.fault(cls=..., case=...)``."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import create_dataset
from pix2pixhd.data import dataset as dsmod
from pix2pixhd.data.layouts import NAMED_PALETTES, Records
from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
from tests.evaluate_cli import images, one_error
from tests.test_validation_stamp import SKIPPED, TINY, streets, validations  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")
fault = pytest.mark.fault


def _open(root, stamp, **kw):
    kw = {"label_nc": LABEL_NC, "resize_or_crop": "none", **kw}
    return create_dataset(root, "train", validate="full", stamp=stamp, **kw)


def _stamped(root, stamp, **kw):
    """Open ``root`` (validated) and write its stamp, as a run does once validation passed."""
    ds = _open(root, stamp, **kw)
    assert ds.validation_stamp is not None
    stamp.write_text(json.dumps(ds.validation_stamp))
    return ds


# --- the validation stamp: what it covers -------------------------------------------------------

def test_the_listing_fingerprint_is_the_same_under_any_hash_seed(streets):
    """The files are a set: unsorted, their order (and the hash) would follow PYTHONHASHSEED, and
    every process (each resume) would see another fingerprint and validate again."""
    code = ("import sys; from pix2pixhd.data import create_dataset; from pix2pixhd.data import dataset as d; "
            f"ds = create_dataset(sys.argv[1], 'train', label_nc={LABEL_NC}, resize_or_crop='none', "
            "validate='off'); print(d._listing_fingerprint(ds))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(streets)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    outs = [p.communicate()[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(outs[0]) == 64, outs
    assert len(set(outs)) == 1, f"the fingerprint differs across hash seeds: {outs}"


@fault(cls="interrupted run", case="the dataset's classes.json edited after validation passed: validated again "
       "(the stamp covers it: the ids allowed follow it)")
def test_an_edited_classes_json_validates_again(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    _stamped(streets, stamp)
    _open(streets, stamp)
    assert validations == ["full"]   # unchanged: skipped
    classes = streets / "classes.json"
    st = classes.stat()
    classes.write_text(json.dumps(json.loads(classes.read_text())))   # same classes, other bytes
    os.utime(classes, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    _open(streets, stamp)
    assert validations == ["full", "full"], "an edited classes.json did not validate again"
    assert SKIPPED not in capsys.readouterr().err


@fault(cls="interrupted run", case="a file rewritten with other bytes (another size) and its old mtime put "
       "back: validated again (the stamp records sizes as well as times)")
def test_a_same_mtime_rewrite_of_another_size_validates_again(tmp_path, streets, validations):
    stamp = tmp_path / "validation.json"
    _stamped(streets, stamp)
    photo = sorted((streets / "train_img").iterdir())[1]
    st = photo.stat()
    Image.new("RGB", (64, 32), (10, 20, 30)).save(photo)   # same size in pixels, far fewer bytes
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert photo.stat().st_mtime_ns == st.st_mtime_ns and photo.stat().st_size != st.st_size
    _open(streets, stamp)
    assert validations == ["full", "full"], "a rewrite of another size with the old mtime was not validated"


@fault(cls="interrupted run", case="a file left out of the samples (no partner) added after validation passed: "
       "validated again, and refused (the stamp covers the listing's problems)")
def test_an_orphan_file_added_after_validation_validates_again(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    _stamped(streets, stamp)
    shutil.copy(sorted((streets / "train_label").iterdir())[0], streets / "train_label" / "orphan.png")
    capsys.readouterr()
    with pytest.raises(dsmod.DatasetError, match="orphan.png has no train_img/orphan"):   # the same samples,
        _open(streets, stamp)                                                          # one problem more
    assert validations == ["full", "full"], "an orphan file added since did not validate again"
    assert SKIPPED not in capsys.readouterr().err


def _palette_dataset(root):
    pal = np.asarray(NAMED_PALETTES["facades"], np.uint8)
    for sub in ("train_label", "train_img"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(pal[np.arange(32 * 32).reshape(32, 32) % 3 + i]).save(root / "train_label" / f"{i}.png")
        Image.new("RGB", (32, 32), (i, 2, 3)).save(root / "train_img" / f"{i}.png")
    return [list(map(int, c)) for c in pal]


@fault(cls="interrupted run", case="a resume with another --palette (the same files, label_nc and other "
       "options): validated again (the colours allowed changed)")
def test_another_palette_validates_again(tmp_path, validations):
    root, stamp = tmp_path / "d", tmp_path / "validation.json"
    pal = _palette_dataset(root)
    one, other = tmp_path / "one.json", tmp_path / "other.json"   # a 13th colour no map uses
    one.write_text(json.dumps(pal + [[1, 2, 3]]))
    other.write_text(json.dumps(pal + [[4, 5, 6]]))
    opts = {"label_nc": 13, "no_instance": True}
    _stamped(root, stamp, palette=str(one), **opts)
    _open(root, stamp, palette=str(one), **opts)
    assert validations == ["full"]   # the same palette: skipped
    _open(root, stamp, palette=str(other), **opts)
    assert validations == ["full", "full"], "another --palette did not validate again"


# --- damaged stamps: ignored ----------------------------------------------------------------------

@fault(cls="damaged run folder", case="a validation.json of wrong shape (a list; sizes [w, None], 0 x 0, counts "
       "that do not sum to the samples, a bool count): ignored, the dataset validated (never an error)")
@pytest.mark.parametrize("bad", ["w_without_h", "zero_sides", "counts_sum_to_5_of_4", "json_list", "bool_count"])
def test_a_stamp_of_wrong_shape_is_ignored(tmp_path, streets, validations, capsys, bad):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    assert good["sizes"] == [[64, 32, 4]]
    sizes = {"w_without_h": [[64, None, 4]], "zero_sides": [[0, 0, 4]], "counts_sum_to_5_of_4": [[64, 32, 5]],
             "bool_count": [[64, 32, True], [64, 32, 3]]}
    edited = [1, 2] if bad == "json_list" else {**good, "sizes": sizes[bad]}
    if bad != "json_list":
        edited["digest"] = dsmod._stamp_digest(edited)   # its own digest matches: the sizes' checks decide
    stamp.write_text(json.dumps(edited))
    capsys.readouterr()
    ds = _open(streets, stamp)
    assert validations == ["full", "full"], f"a stamp with {bad} skipped validation"
    assert SKIPPED not in capsys.readouterr().err
    assert set(ds.source_sizes.values()) == {(64, 32)}


# --- a skipped validation's source sizes ----------------------------------------------------------

def test_a_skipped_validation_reports_the_sizes_validation_read(tmp_path, validations, capsys):
    """Two sizes of one width (64x32, then 64x48): the stamp keeps them apart, as (w, h), and the
    skipped open reports exactly what validation read (check_batch_sizes groups batches by them)."""
    root = tmp_path / "two"
    generate(root, n_train=2, n_test=0, width=64, height=32, seed=0)
    generate(tmp_path / "tall", n_train=2, n_test=0, width=64, height=48, seed=1)
    for sub in ("train_img", "train_inst", "train_label"):
        for f in sorted((tmp_path / "tall" / sub).iterdir()):
            shutil.copy(f, root / sub / f.name.replace("train_", "zz_"))
    stamp = tmp_path / "validation.json"
    real = _stamped(root, stamp)
    assert sorted(set(real.source_sizes.values())) == [(64, 32), (64, 48)] and len(real.source_sizes) == 4
    assert real.validation_stamp["sizes"] == [[64, 32, 2], [64, 48, 2]]
    capsys.readouterr()
    again = _open(root, stamp)
    assert validations == ["full"] and SKIPPED in capsys.readouterr().err
    assert again.source_sizes == real.source_sizes, "a skipped validation reported other source sizes"


# --- a fresh --overwrite run does not reuse the old run's stamp -----------------------------------

@fault(cls="interrupted run", case="a new run with --overwrite in the place of one whose validation.json "
       "matches: validated again (the old run's stamp is not the new run's)")
def test_an_overwrite_run_validates_again(tmp_path, streets, validations, capsys):
    from pix2pixhd.cli import train_main
    argv = ["--dataroot", str(streets), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "r", *TINY, "--max_steps", "1"]
    assert train_main(argv) == 0 and validations == ["full"]
    assert (tmp_path / "ck" / "r" / "validation.json").is_file()
    capsys.readouterr()
    assert train_main([*argv, "--overwrite"]) == 0
    assert validations == ["full", "full"], "an --overwrite run reused the old run's validation stamp"
    assert SKIPPED not in capsys.readouterr().err


# --- Records behave as the list they replace ------------------------------------------------------

def _recs(n):
    return [{"label": Path(f"l{i}.png"), "image": Path(f"i{i}.png")} for i in range(n)]


def test_records_slices_equality_and_adding_to_a_list():
    g = Records(_recs(4))
    for s in (slice(2, 1), slice(-1, -3), slice(3, 0), slice(4, 2)):
        assert g[s] == [] and len(g[s]) == 0 and list(g[s]) == [], s
    assert g[1:3] == _recs(4)[1:3] and len(g[1:3]) == 2
    assert g != g[:1] and g[:1] != g and Records([]) != g and g != _recs(4)[:3]
    assert not (Records(g) == g[:1])
    x, y = _recs(2)
    assert [x] + Records([y]) == [x, y] and list([x] + Records([y])) == [x, y]
    assert Records([x]) + [y] == [x, y]


# --- evaluate: every unreadable file named in one error -------------------------------------------

_images, _error = images, one_error   # tests/evaluate_cli.py


@fault(cls="bad dataset", case="two neighbouring truncated --train_labels maps: one error naming both")
def test_two_neighbouring_truncated_train_labels_are_both_named(tmp_path, capsys):
    pytest.importorskip("torchmetrics")
    fake, real = _images(tmp_path / "fake", 4), _images(tmp_path / "real", 4, seed=1)
    train_img = _images(tmp_path / "train_img", 4, seed=2)
    train_lab, labels = _images(tmp_path / "train_lab", 4, "L"), _images(tmp_path / "labels", 4, "L", seed=3)
    for i in (1, 2):
        data = (train_lab / f"{i}.png").read_bytes()
        (train_lab / f"{i}.png").write_bytes(data[:len(data) // 2])
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid", "--labels", str(labels),
                          "--train_images", str(train_img), "--train_labels", str(train_lab),
                          "--label_nc", "3", "--seg_steps", "1", "--seg_width", "16"])
    assert err.startswith("error: 2 images cannot be read: "), err
    for i in (1, 2):
        assert f"--train_labels map {train_lab / f'{i}.png'} (" in err, err


def _png_header_only(path, w, h):
    """A grey PNG whose header says w x h (its data is a few rows): DecompressionBombError."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * (w + 1) * 2)) + chunk(b"IEND", b""))


@fault(cls="bad dataset", case="a truncated --fake image and one whose header declares more pixels than Pillow "
       "opens: one error naming both, with the one fix they share")
def test_a_truncated_image_and_a_decompression_bomb_share_one_fix(tmp_path, capsys):
    fake, real = _images(tmp_path / "fake", 4), _images(tmp_path / "real", 4, seed=1)
    data = (fake / "1.png").read_bytes()
    (fake / "1.png").write_bytes(data[:len(data) // 2])
    _png_header_only(fake / "2.png", 50000, 50000)
    err = _error(capsys, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert err.startswith("error: 2 images cannot be read: "), err
    assert str(fake / "1.png") in err and str(fake / "2.png") in err, err
    assert err.splitlines()[0].endswith("each is truncated, not an image, or declares more pixels than Pillow "
                                        "opens: re-create them (e.g. rerun synthesize.py) or remove them"), err

"""The synthetic street generator: determinism, label/instance consistency, learnable photos."""
import json

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.datasets import synthetic_streets as ss
from pix2pixhd.errors import InputError


def _read(root, split, i, kind):
    ext = "png"
    return np.array(Image.open(root / f"{split}_{kind}" / f"{split}_{i:05d}.{ext}"))


def test_deterministic_and_independent_of_count(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ss.generate(a, n_train=3, n_test=1, width=96, height=48, seed=5)
    ss.generate(b, n_train=2, n_test=1, width=96, height=48, seed=5)
    ss.generate(c, n_train=2, n_test=0, width=96, height=48, seed=6)
    for kind in ("label", "inst", "img"):
        for i in range(2):
            np.testing.assert_array_equal(_read(a, "train", i, kind), _read(b, "train", i, kind))
        np.testing.assert_array_equal(_read(a, "test", 0, kind), _read(b, "test", 0, kind))
    assert not np.array_equal(_read(a, "train", 0, "img"), _read(c, "train", 0, "img"))
    assert not np.array_equal(_read(a, "train", 0, "img"), _read(a, "test", 0, "img"))
    assert not (c / "test_img").exists()
    meta = json.loads((a / "classes.json").read_text())
    assert meta["label_nc"] == ss.LABEL_NC == len(meta["classes"])
    assert [c["name"] for c in meta["classes"]] == list(ss.CLASSES)


@pytest.fixture(scope="module")
def scenes():
    return [ss.render_scene(128, 64, ss.scene_rng(0, "train", i)) for i in range(12)]


def test_label_instance_consistency(scenes):
    for label, inst, photo in scenes:
        assert label.dtype == np.uint8 and label.shape == (64, 128)
        assert photo.dtype == np.uint8 and photo.shape == (64, 128, 3)
        assert label.max() < ss.LABEL_NC
        things = np.isin(label, [ss.ID[c] for c in ss.THING_CLASSES])
        np.testing.assert_array_equal(inst[things] // 1000, label[things])
        np.testing.assert_array_equal(inst[~things], label[~things])
    present = set(np.concatenate([np.unique(s[0]) for s in scenes]).tolist())
    assert present == set(range(ss.LABEL_NC)), present


def test_touching_instances_of_one_class(scenes):
    """Some same-class objects touch: only the instance map separates them."""
    touching = 0
    for label, inst, _ in scenes:
        for a, b, la, lb in ((inst[:, 1:], inst[:, :-1], label[:, 1:], label[:, :-1]),
                             (inst[1:], inst[:-1], label[1:], label[:-1])):
            m = (la == lb) & (a != b) & np.isin(la, [ss.ID["car"], ss.ID["person"]])
            touching += int(m.any())
    assert touching >= 4, touching


def test_photo_depends_on_label_but_not_trivially(scenes):
    label = np.stack([s[0] for s in scenes])
    photo = np.stack([s[2] for s in scenes]).astype(np.float32)
    means = {c: photo[label == c].mean(0) for c in range(ss.LABEL_NC)}
    # Learnable: sky, road and vegetation have clearly different mean colours.
    for c1, c2 in (("sky", "road"), ("sky", "vegetation"), ("road", "vegetation")):
        assert np.abs(means[ss.ID[c1]] - means[ss.ID[c2]]).max() > 20, (c1, c2)
    # Not a colour lookup: a class's pixels vary (textures, lighting, object colours).
    for c in ("road", "building", "car", "sky"):
        assert photo[label == ss.ID[c]].std(0).mean() > 8, c


def test_cli_and_size_check(tmp_path, capsys):
    ss.main(["--out", str(tmp_path / "d"), "--n_train", "2", "--n_test", "1", "--width", "64",
             "--height", "32", "--img_ext", "jpg"])
    assert "label_nc=9" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "train_img").glob("*.jpg"))) == 2
    assert Image.open(tmp_path / "d" / "train_inst" / "train_00000.png").size == (64, 32)
    with pytest.raises(ValueError, match="--width"):
        ss.generate(tmp_path / "e", 1, 0, width=8, height=8)


def _files(root):
    """{relative path: bytes} of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_rerun_with_fewer_smaller_scenes_leaves_exactly_the_new_set(tmp_path):
    d = tmp_path / "d"
    ss.generate(d, n_train=6, n_test=3, width=64, height=32, img_ext="jpg")
    meta = ss.generate(d, n_train=2, n_test=1, width=32, height=16)
    for split, n in (("train", 2), ("test", 1)):
        for kind in ("label", "inst", "img"):
            files = sorted(p.name for p in (d / f"{split}_{kind}").iterdir())
            assert files == [f"{split}_{i:05d}.png" for i in range(n)], (split, kind, files)
            assert {Image.open(d / f"{split}_{kind}" / f).size for f in files} == {(32, 16)}
    assert json.loads((d / "classes.json").read_text()) == meta
    assert meta["n_train"] == 2 and meta["complete"]
    ss.generate(d, n_train=1, n_test=0, width=32, height=16)   # a split of 0 scenes: gone
    assert not (d / "test_img").exists() and len(list((d / "train_img").iterdir())) == 1


def test_a_folder_the_generator_did_not_write_is_refused_and_left_untouched(tmp_path):
    real = tmp_path / "cityscapes"                               # a real dataset's layout
    (real / "train_label").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 8), np.uint8)).save(real / "train_label" / "aachen_0.png")
    (real / "classes.json").write_text(json.dumps({"name": "cityscapes", "label_nc": 35}))
    bare = tmp_path / "bare"                                      # no classes.json at all
    (bare / "train_img").mkdir(parents=True)
    (bare / "train_img" / "x.png").write_bytes(b"not ours")
    for folder, marker in ((real, "a classes.json that this tool did not write"),
                           (bare, "no classes.json")):
        before = _files(folder)
        with pytest.raises(InputError) as e:
            ss.generate(folder, n_train=1, n_test=0, width=32, height=16)
        msg = str(e.value)
        assert str(folder) in msg and "train_" in msg and marker in msg, msg
        assert "another --out" in msg and f"remove {folder}" in msg, msg
        assert _files(folder) == before
    legacy = tmp_path / "legacy"                                  # written by an earlier version
    ss.generate(legacy, n_train=3, n_test=0, width=32, height=16)
    meta = json.loads((legacy / "classes.json").read_text())
    del meta["written_by"], meta["complete"]
    (legacy / "classes.json").write_text(json.dumps(meta))
    ss.generate(legacy, n_train=1, n_test=0, width=32, height=16)
    assert len(list((legacy / "train_label").iterdir())) == 1


def _synthesized_from(data, out):
    """What synthesize.py leaves in ``out`` from the synthetic dataset ``data``: its test split's
    label and instance maps, the synthesized photos, a verbatim copy of data's classes.json (as
    synthesize used to write it), synthesis.json and manifest.jsonl."""
    out.mkdir()
    for kind in ("label", "inst", "img"):
        (out / f"test_{kind}").mkdir()
        for f in (data / f"test_{kind}").iterdir():
            (out / f"test_{kind}" / f.name).write_bytes(b"synthesized " + f.read_bytes()[:16])
    (out / "classes.json").write_bytes((data / "classes.json").read_bytes())
    (out / "synthesis.json").write_text("{}")
    (out / "manifest.jsonl").write_text("{}\n")


@pytest.mark.parametrize("tamper", ["synthesis output", "copied classes.json", "a file of the user's",
                                    "an extra image", "an image past the count"])
def test_a_folder_holding_what_the_generator_did_not_write_is_refused_untouched(tmp_path, tamper):
    """The advice "generate data with synthetic_streets --out OUT", followed on a synthesize.py
    output folder whose classes.json was copied from a synthetic dataset, replaced its
    synthesized images: classes.json naming the tool is no proof the folder is the tool's."""
    data = tmp_path / "data"
    ss.generate(data, n_train=0, n_test=2, width=32, height=16)
    out = tmp_path / "out"
    if tamper == "synthesis output":
        _synthesized_from(data, out)
    elif tamper == "copied classes.json":             # the job files removed: the copy still tells
        _synthesized_from(data, out)
        (out / "synthesis.json").unlink()
        (out / "manifest.jsonl").unlink()
    else:
        ss.generate(out, n_train=0, n_test=2, width=32, height=16)
        extra = {"a file of the user's": out / "notes.txt",
                 "an extra image": out / "test_img" / "aachen_000.png",
                 "an image past the count": out / "test_img" / "test_00002.png"}[tamper]
        extra.write_bytes(b"theirs")
    before = _files(out)
    with pytest.raises(InputError) as e:
        ss.generate(out, n_train=10, n_test=0, width=32, height=16)
    msg = str(e.value)
    assert str(out) in msg and "did not write" in msg and "nothing was written or deleted" in msg, msg
    assert "\n" not in msg and "another --out" in msg, msg
    assert _files(out) == before


def test_the_refusal_names_what_the_generator_did_not_write(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    ss.generate(data, n_train=0, n_test=1, width=32, height=16)
    _synthesized_from(data, out)
    msg = str(pytest.raises(InputError, ss.generate, out, n_train=1, n_test=0, width=32, height=16).value)
    assert "manifest.jsonl" in msg and "synthesis.json" in msg and f"written into {data.resolve()}" in msg, msg

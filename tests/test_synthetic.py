"""The synthetic street generator: determinism, label/instance consistency, learnable photos."""
import json

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.datasets import synthetic_streets as ss


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

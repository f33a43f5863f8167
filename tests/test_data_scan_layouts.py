"""``python -m pix2pixhd.data scan`` and the missing-dataset error: folders of label maps are not
read as pix2pix photo pairs without a word, a dataset of another phase is named with --phase, and
the scan's output into ``| head`` ends quietly."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.data import DatasetError, create_dataset
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.datasets.synthetic_streets import generate


def _id_maps(folder, n=4, size=(32, 32), levels=9, mode="L"):
    """n single-channel maps of ``levels`` ids."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, levels, size[::-1]).astype(np.uint8)
        im = Image.fromarray(a, "L")
        if mode == "P":   # ids as palette indices
            im = im.convert("P")
        im.save(folder / f"{i}.png")


# ---- scan: "aligned" images that are not two photos side by side -----------------------------------
@pytest.mark.parametrize("mode", ["L", "P"])
def test_scan_of_a_folder_of_id_maps_does_not_pass_them_as_photo_pairs(tmp_path, capsys, mode):
    """It said "[lab] aligned layout, 20 samples, label_nc=0, sizes: 16x32 (20), no problems"."""
    _id_maps(tmp_path / "lab", mode=mode)
    assert data_main(["scan", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no problems" not in out and "not an AB pair: 4 file(s)" in out, out
    assert "lab/0.png: a 32x32 single-channel image of only 9 values: a map of ids, not two photos side by " \
           "side" in out, out
    assert "label maps go in lab_label/ with their photos in lab_img/" in out, out
    with pytest.raises(DatasetError, match="not an AB pair"):   # training validation refuses them too
        create_dataset(tmp_path, "lab", label_nc=0, no_instance=True, resize_or_crop="none",
                       dataset_mode="aligned")


def test_grey_photo_pairs_pass_with_a_notice(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 64)).astype(np.uint8), "L").save(tmp_path / "train" / f"{i}.png")
    assert data_main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grey AB image: 2 file(s)" in out and "read as two grey photos side by side" in out, out
    assert out.rstrip().endswith("no problems"), out


def test_scan_into_a_closed_pipe_ends_quietly(tmp_path):
    """``scan DIR | head -2`` ended in a BrokenPipeError traceback."""
    generate(tmp_path / "d", n_train=2, n_test=1, width=32, height=16)
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "PIX2PIXHD_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    try:
        p = subprocess.run([sys.executable, "-m", "pix2pixhd.data", "scan", str(tmp_path / "d")], stdout=w,
                           stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(w)
    assert p.stderr.decode() == "" and p.returncode == 141, p.stderr.decode()


# ---- no dataset for the phase asked ----------------------------------------------------------------
def test_a_folder_holding_another_phase_names_it_and_does_not_suggest_generating_data(tmp_path):
    """A synthesized folder of test_* read for phase train said "... or generate data with
    `python -m pix2pixhd.datasets.synthetic_streets --out OUT`": that replaced its images."""
    generate(tmp_path / "out", n_train=0, n_test=2, width=32, height=16)
    (tmp_path / "out" / "synthesis.json").write_text("{}")
    with pytest.raises(DatasetError) as e:
        create_dataset(tmp_path / "out", "train", label_nc=9)
    msg = str(e.value)
    assert "it holds phase test: pass --phase test" in msg and "synthetic_streets" not in msg, msg
    assert "\n" not in msg


def test_a_folder_without_any_split_lists_what_it_holds_and_does_not_suggest_generating_data(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "photos_2019").mkdir()
    with pytest.raises(DatasetError) as e:
        create_dataset(tmp_path, "train", label_nc=9)
    msg = str(e.value)
    assert "it holds notes.txt, photos_2019/" in msg and "synthetic_streets" not in msg, msg


@pytest.mark.parametrize("empty", [True, False], ids=["empty", "missing"])
def test_an_empty_or_missing_folder_suggests_generating_data(tmp_path, empty):
    root = tmp_path / "data"
    if empty:
        root.mkdir()
    with pytest.raises(DatasetError) as e:
        create_dataset(root, "train", label_nc=9)
    msg = str(e.value)
    assert f"{root} {'is empty' if empty else 'does not exist'}" in msg, msg
    assert f"python -m pix2pixhd.datasets.synthetic_streets --out {root}" in msg, msg

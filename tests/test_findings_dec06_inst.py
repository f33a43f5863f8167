"""Instance maps whose ids a PNG cannot hold (32-bit TIFFs, PIL mode I, with Cityscapes-style ids
id*1000+k above 65535): synthesize.py used to fail after writing label copies ("ids from 0 to
78001 do not fit a 16-bit PNG"), leaving an incomplete folder. The output's instance map is now a
32-bit TIFF that reads back identical and that the data module (scan, training) takes."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.cli import synthesize_main
from pix2pixhd.data import create_dataset
from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.synthesis import id_map_bytes
from tests.test_synthesis_engine import save_run

LABEL_NC = 5


@pytest.fixture(scope="module")
def inst_run(tmp_path_factory):
    """label_nc 5 with instance maps (the generator reads their boundaries)."""
    folder = tmp_path_factory.mktemp("inst_run")
    save_run(folder, label_nc=LABEL_NC)
    return folder


def _inst(seed: int, big: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, LABEL_NC, (32, 32))
    return (cls * 1000 + 1 + (70000 if big else 0) * (cls > 2)).astype(np.int32)   # up to 74001


def _dataset(root: Path, big: bool = True) -> Path:
    """test_label/ (8-bit PNGs) + test_inst/ (32-bit TIFFs, mode I) of 2 maps, 32x32."""
    for d in ("test_label", "test_inst"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(2):
        inst = _inst(i, big)
        Image.fromarray((inst // 1000 % LABEL_NC).astype(np.uint8)).save(root / "test_label" / f"m{i}.png")
        Image.fromarray(inst).save(root / "test_inst" / f"m{i}.tif")
    return root


def _synth(run, out, *args):
    return synthesize_main(["--checkpoint", str(run), "--out", str(out), "--device", "cpu",
                            "--no_progress", "--workers", "0", *map(str, args)])


def _check_output(out: Path, src: Path, capsys) -> None:
    job = json.loads((out / "synthesis.json").read_text())
    assert job["complete"] is True and job["n_written"] == 2, job
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in lines] == ["ok", "ok"]
    for r in lines:
        stem = Path(r["output"]).stem
        assert r["inst"] == f"test_inst/{stem}.tif", r
        assert (out / r["inst"]).stat().st_size == r["inst_bytes"]
        with Image.open(out / r["inst"]) as im, Image.open(src / "test_inst" / f"{stem}.tif") as orig:
            assert im.mode == "I"
            np.testing.assert_array_equal(np.asarray(im), np.asarray(orig))
    assert sorted(p.name for p in (out / "test_inst").iterdir()) == ["m0.tif", "m1.tif"]
    ds = create_dataset(out, "test", label_nc=LABEL_NC, resize_or_crop="none", no_flip=True)
    for k in range(len(ds)):
        stem = Path(ds.records[k]["inst"]).stem
        np.testing.assert_array_equal(ds[k]["inst"][0].numpy(), np.asarray(Image.open(src / "test_inst" / f"{stem}.tif")))
    capsys.readouterr()
    assert data_main(["scan", str(out)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_input_folder_with_32bit_tiff_instance_ids_round_trips(inst_run, tmp_path, capsys):
    src = _dataset(tmp_path / "src")
    out = tmp_path / "out"
    assert _synth(inst_run, out, "--input", src / "test_label", "--inst", src / "test_inst") == 0
    _check_output(out, src, capsys)
    # a rerun finds every output complete: the .tif partners recorded in the manifest are there
    assert _synth(inst_run, out, "--input", src / "test_label", "--inst", src / "test_inst") == 0
    assert "2 already complete" in capsys.readouterr().out


def test_dataroot_with_32bit_tiff_instance_ids_round_trips(inst_run, tmp_path, capsys):
    src = _dataset(tmp_path / "src")
    out = tmp_path / "out"
    assert _synth(inst_run, out, "--dataroot", src, "--phase", "test") == 0
    _check_output(out, src, capsys)


def test_an_instance_map_changed_to_big_ids_replaces_its_png(inst_run, tmp_path, capsys):
    """A rerun after the input's ids grew past 65535 writes NAME.tif and removes the NAME.png the
    first run wrote (two instance maps of one stem would stop training)."""
    src = _dataset(tmp_path / "src", big=False)
    out = tmp_path / "out"
    args = ("--input", src / "test_label", "--inst", src / "test_inst")
    assert _synth(inst_run, out, *args) == 0
    assert sorted(p.name for p in (out / "test_inst").iterdir()) == ["m0.png", "m1.png"]
    _dataset(src, big=True)   # edited in place: their fingerprints change, the outputs are redone
    assert _synth(inst_run, out, *args) == 0
    _check_output(out, src, capsys)


@pytest.mark.parametrize("ids, ext", [(np.array([[0, 65535]]), ".png"), (np.array([[0, 78001]]), ".tif"),
                                      (np.array([[-3, 2 ** 31 - 1]]), ".tif")])
def test_id_map_bytes_reads_back_the_same_ids(ids, ext, tmp_path):
    data, got = id_map_bytes(ids.astype(np.int32))
    assert got == ext
    (tmp_path / f"m{ext}").write_bytes(data)
    with Image.open(tmp_path / f"m{ext}") as im:
        np.testing.assert_array_equal(np.asarray(im).astype(np.int64), ids)

"""What synthesis reads, and what makes an output done (pix2pixhd/engine.py):

* the inputs belong to the job: a rerun into the same --out with another input folder is refused
  as another synthesis (not answered with the old outputs because the names match), an input
  changed in place since its output was written is redone, and a plain resume (one process, or
  torchrun ranks over a folder one process started) still keeps what is complete;
* label maps decode as training decodes them (the data module's modes and palette decoding): a
  palette-mode (P) colour map goes through the checkpoint's palette, a bilevel (mode 1) map is
  refused as training refuses it;
* photo inputs take the modes training reads photos in (the data module's list; the rest
  refused naming the mode), grey ones with or without alpha converted to RGB as --dataroot (the data
  module) converts them, and the input's partner in the output is the image the generator read: the file is copied only when its
  mode is that, so ``python -m pix2pixhd.data scan OUT`` passes.

Checkpoints are tiny untrained generators (``save_run``): none of this depends on training.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd.errors import InputError
from tests.synthesis_runs import manifest, palette_run, rgb_run, run, synth  # noqa: F401  (fixtures)
from tests.test_synthesis_engine import ROOT, free_port, images, save_run, threads


@pytest.fixture(scope="module")
def inst_run(tmp_path_factory):
    """label_nc 5 with instance maps."""
    folder = tmp_path_factory.mktemp("inst_run")
    save_run(folder, label_nc=5)
    return folder


def ids(path: Path, seed: int = 0, h: int = 16, w: int = 24, top: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, top + 1, (h // 4, w // 4)).repeat(4, 0).repeat(4, 1)
    Image.fromarray(a.astype(np.uint8)).save(path)
    return path


def rgb(seed: int = 0, h: int = 16, w: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# ---- the inputs belong to the job ------------------------------------------------------------------
def test_another_input_folder_with_the_same_names_is_another_job(run, tmp_path, capsys):
    """Same names, other maps: the old outputs must not pass for the new inputs' ("wrote 0 ...
    3 already complete" before the inputs were part of the job)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for n in ("x", "y", "z"):
        ids(a / f"{n}.png", seed=1)
        ids(b / f"{n}.png", seed=2)
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    with pytest.raises(InputError, match=r"another synthesis \(input: '.*/a' then, '.*/b' now\).*"
                                         r"same checkpoint, inputs and options.*--overwrite"):
        synth(run, b, out)
    assert images(out / "test_label") == images(a)          # untouched
    capsys.readouterr()
    assert synth(run, b, out, "--overwrite") == 0
    assert "wrote 3 images" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert synth(run, b, fresh) == 0
    assert images(out / "test_img") == images(fresh / "test_img")
    assert images(out / "test_label") == images(b)
    assert json.loads((out / "synthesis.json").read_text())["input"] == str(b.resolve())


def test_an_instance_folder_given_or_changed_is_another_job(inst_run, tmp_path):
    inp, i1, i2 = tmp_path / "in", tmp_path / "i1", tmp_path / "i2"
    ids(inp / "x.png")
    ids(i1 / "x.png", seed=3)
    ids(i2 / "x.png", seed=4)
    out = tmp_path / "out"
    assert synth(inst_run, inp, out, "--inst", i1) == 0
    with pytest.raises(InputError, match=r"another synthesis \(inst: '.*/i1' then, '.*/i2' now\)"):
        synth(inst_run, inp, out, "--inst", i2)
    with pytest.raises(InputError, match=r"another synthesis \(inst: '.*/i1' then, None now\)"):
        synth(inst_run, inp, out)


def test_an_input_changed_in_place_is_redone_and_the_rest_kept(inst_run, tmp_path, capsys):
    inp, inst = tmp_path / "in", tmp_path / "inst"
    for k, n in enumerate("vwxyz"):
        ids(inp / f"{n}.png", seed=k)
        ids(inst / f"{n}.png", seed=10 + k)
    out = tmp_path / "out"
    assert synth(inst_run, inp, out, "--inst", inst) == 0
    before = images(out / "test_img")
    # other maps under the same names; the mtime set back (a restored backup), so neither a newer
    # mtime nor the outputs' sizes could tell
    ids(inp / "w.png", seed=7)
    ids(inst / "y.png", seed=8)
    for p, t in ((inp / "w.png", 1_000_000_000), (inst / "y.png", 1_000_000_000)):
        os.utime(p, ns=(t * 10**9, t * 10**9))              # a restored backup's old mtime
    capsys.readouterr()
    assert synth(inst_run, inp, out, "--inst", inst) == 0
    text = capsys.readouterr().out
    assert "wrote 2 images" in text and "3 already complete" in text, text
    fresh = tmp_path / "fresh"
    assert synth(inst_run, inp, fresh, "--inst", inst) == 0
    after = images(out / "test_img")
    assert after == images(fresh / "test_img")
    assert {n for n in after if after[n] != before[n]} <= {"w.png", "y.png"}
    assert images(out / "test_label") == images(inp) and images(out / "test_inst") == images(inst)
    # and a third run of the same command has nothing left to do
    capsys.readouterr()
    assert synth(inst_run, inp, out, "--inst", inst) == 0
    assert "wrote 0 images" in capsys.readouterr().out
    rec = {r["output"]: r for r in manifest(out)}["test_img/w.png"]
    st = (inp / "w.png").stat()
    assert rec["inputs"][0] == ["w.png", st.st_size, st.st_mtime_ns]


def test_two_ranks_resume_what_one_process_started(run, tmp_path):
    """The done-check runs on every rank against the files: ranks must agree on it, and keep the
    one process's outputs (same job, same inputs)."""
    inp = tmp_path / "in"
    for k in range(7):
        ids(inp / f"m{k}.png", seed=k)
    out, one = tmp_path / "out", tmp_path / "one"
    with threads(1):
        assert synth(run, inp, out, "--how_many", 3, "--batch_size", 2) == 0
        assert synth(run, inp, one, "--batch_size", 2) == 0
    kept = images(out / "test_img")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(ROOT / "synthesize.py"),
           "--checkpoint", str(run), "--input", str(inp), "--out", str(out), "--device", "cpu",
           "--no_progress", "--workers", "0", "--batch_size", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "wrote 4 images" in p.stdout and "3 already complete" in p.stdout, p.stdout
    assert images(out / "test_img") == images(one / "test_img")
    assert all(images(out / "test_img")[n] == b for n, b in kept.items())
    assert sorted(r["output"] for r in manifest(out)) == [f"test_img/m{k}.png" for k in range(7)]


# ---- label maps decode as training decodes them ---------------------------------------------------
def test_a_palette_mode_colour_map_decodes_through_the_checkpoint_palette(palette_run, tmp_path):
    """A P image stores palette indices; its colours are what the map means. Training decodes the
    colours through --palette; synthesis read the raw indices (ids 0, 1 instead of 5, 9)."""
    from pix2pixhd.checkpoint import load_run_config
    from pix2pixhd.data import create_dataset
    from pix2pixhd.data.__main__ import main as data_main
    from pix2pixhd.data.layouts import FACADES_PALETTE
    root = tmp_path / "ds"
    (root / "test_img").mkdir(parents=True)
    idx = np.zeros((32, 32), np.uint8)
    idx[:, 16:] = 1
    im = Image.fromarray(idx, "P")
    pal = list(FACADES_PALETTE[5]) + list(FACADES_PALETTE[9])
    im.putpalette(pal + [0] * (768 - len(pal)))
    (root / "test_label").mkdir()
    im.save(root / "test_label" / "a.png")
    Image.new("RGB", (32, 32)).save(root / "test_img" / "a.png")
    cfg = load_run_config(palette_run, "latest")
    ds = create_dataset(root, "test", cfg.data_config(resize_or_crop="none", required_multiple=1,
                                                       no_flip=True, is_train=False))
    trained = ds[0]["label"][0].numpy()
    assert sorted(np.unique(trained)) == [5, 9]
    out = tmp_path / "out"
    assert synth(palette_run, root / "test_label", out) == 0
    got = np.asarray(Image.open(out / "test_label" / "a.png"))
    assert got.ndim == 2 and (got == trained).all()
    assert data_main(["scan", str(out)]) == 0


def test_a_bilevel_label_map_reads_as_ids_0_and_1_as_training_reads_it(run, tmp_path, capsys):
    inp = tmp_path / "in"
    ids(inp / "a.png")
    mask = np.array(Image.open(ids(inp / "b.png"))) > 2
    Image.fromarray(mask).convert("1").save(inp / "b.png")
    assert Image.open(inp / "b.png").mode == "1"
    # the same map as 8-bit ids 0/1 synthesizes to the same photo
    Image.fromarray(mask.astype(np.uint8)).save(inp / "c.png")
    assert synth(run, inp, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert "wrote 3 images" in text and "skipped 0" in text, text
    out = sorted((tmp_path / "out" / "test_img").iterdir())
    assert [p.stem for p in out] == ["a", "b", "c"]
    assert np.array_equal(np.asarray(Image.open(out[1])), np.asarray(Image.open(out[2])))
    from types import SimpleNamespace
    from pix2pixhd.data.dataset import wanted_modes
    assert "1" in wanted_modes(SimpleNamespace(label_nc=5, palette=None), "label")   # training's


def test_a_colour_map_with_alpha_is_refused_for_a_palette_checkpoint(palette_run, tmp_path, capsys):
    from pix2pixhd.data.layouts import FACADES_PALETTE
    inp = tmp_path / "in"
    inp.mkdir()
    pal = np.array(FACADES_PALETTE, np.uint8)
    a = pal[np.arange(16 * 24).reshape(16, 24) % 12]
    Image.fromarray(a).save(inp / "a.png")
    Image.fromarray(a).convert("RGBA").save(inp / "b.png")
    assert synth(palette_run, inp, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*b\.png: a RGBA image \(4 channel\(s\)\).*training does not read it as "
                     r"a label map either \(modes RGB, P\).*save it as RGB", text), text
    got = np.asarray(Image.open(tmp_path / "out" / "test_label" / "a.png"))
    assert (got == np.arange(16 * 24).reshape(16, 24) % 12).all()


def test_a_colour_missing_from_the_palette_is_named_as_training_names_it(palette_run, tmp_path, capsys):
    """A colour far from every palette entry (VOC's (224, 224, 192) void border, say) was synthesized
    as its nearest class; training's validation refuses it, and so does synthesis now (one map)."""
    from pix2pixhd.data.layouts import FACADES_PALETTE
    inp = tmp_path / "in"
    inp.mkdir()
    pal = np.array(FACADES_PALETTE, np.uint8)
    a = pal[np.arange(16 * 24).reshape(16, 24) % 12]
    Image.fromarray(a).save(inp / "a.png")
    b = a.copy()
    b[:, :4] = (224, 224, 192)   # a sixth of the map
    Image.fromarray(b).save(inp / "b.png")
    assert synth(palette_run, inp, tmp_path / "out") == 0
    text = capsys.readouterr().out
    assert re.search(r"skipped .*b\.png: colour \(224, 224, 192\) on 64 pixels \(16\.7%\) is far from every "
                     r"colour of this checkpoint's palette", text), text
    assert "wrote 1 images" in text


# ---- photo inputs ------------------------------------------------------------------------------------
def training_photo_modes() -> tuple:
    """The modes training's validation takes a photo in (it converts them to RGB on load)."""
    from types import SimpleNamespace
    from pix2pixhd.data.dataset import wanted_modes
    return tuple(wanted_modes(SimpleNamespace(label_nc=0, palette=None), "image"))


def test_photo_modes_follow_training_and_partners_are_what_the_generator_read(rgb_run, tmp_path, capsys):
    """Modes training reads are converted to RGB, the rest refused naming the mode (a CMYK
    JPEG was refused as 'an image with an alpha channel (CMYK)'); grey images, with or without
    alpha, are converted to RGB as --dataroot converts them (--input refused L as 'an id map?'
    while --dataroot synthesized it); the partner in test_A is the image the generator read (an
    LA or P file was copied as it was, and scan refused the LA one)."""
    from pix2pixhd.data.__main__ import main as data_main
    trained = training_photo_modes()
    inp = tmp_path / "in"
    inp.mkdir()
    base = rgb()
    files = {"rgb.png": "RGB", "pal.png": "P", "cmyk.jpg": "CMYK", "rgba.png": "RGBA", "la.png": "LA",
             "l.png": "L"}
    for name, mode in files.items():
        base.convert(mode).save(inp / name)
        assert Image.open(inp / name).mode == mode
    out = tmp_path / "out"
    assert synth(rgb_run, inp, out) == 0
    text = capsys.readouterr().out
    assert "alpha channel (CMYK)" not in text and "an id map?" not in text
    accepted = ["rgb.png", "pal.png"] + [n for n in ("cmyk.jpg", "rgba.png", "la.png", "l.png")
                                         if files[n] in trained]
    for n in ("cmyk.jpg", "rgba.png"):
        if n not in accepted:   # a data module that refuses the mode for training
            assert re.search(rf"skipped .*{re.escape(n)}: a {files[n]} image \(4 channel\(s\)\): training "
                             r"does not read it as a photo either \(modes .*\); save it as an 8-bit RGB", text), text
    assert f"wrote {len(accepted)} images" in text and f"skipped {6 - len(accepted)}" in text
    assert sorted(images(out / "test_A")) == sorted(Path(n).with_suffix(".png").name for n in accepted)
    assert (out / "test_A" / "rgb.png").read_bytes() == (inp / "rgb.png").read_bytes()   # copied
    for n in accepted[1:]:                                                              # converted
        written = Image.open(out / "test_A" / Path(n).with_suffix(".png").name)
        assert written.mode == "RGB", n
        assert (np.asarray(written) == np.asarray(Image.open(inp / n).convert("RGB"))).all(), n
    assert data_main(["scan", str(out)]) == 0


def test_a_grey_generator_gets_grey_partners(tmp_path):
    """A generator that reads one channel (input_nc 1): an RGB photo is converted to L for it, and
    its partner in test_A is that L image, not the RGB file; an L file is copied."""
    save_run(tmp_path / "run", label_nc=0, no_instance=True, input_nc=1)
    inp = tmp_path / "in"
    inp.mkdir()
    rgb().save(inp / "c.png")
    rgb(1).convert("L").save(inp / "g.png")
    out = tmp_path / "out"
    assert synth(tmp_path / "run", inp, out) == 0
    c = Image.open(out / "test_A" / "c.png")
    assert c.mode == "L" and (np.asarray(c) == np.asarray(Image.open(inp / "c.png").convert("L"))).all()
    assert (out / "test_A" / "g.png").read_bytes() == (inp / "g.png").read_bytes()


def test_an_out_folder_written_before_inputs_were_in_the_identity_still_resumes(run, tmp_path, capsys):
    """synthesis.json and manifest lines as the previous version wrote them (no input folders in
    the identity, no fingerprints): the same command resumes them instead of refusing them."""
    import hashlib
    inp = tmp_path / "in"
    for k, n in enumerate("abc"):
        ids(inp / f"{n}.png", seed=k)
    out = tmp_path / "out"
    assert synth(run, inp, out) == 0
    job = json.loads((out / "synthesis.json").read_text())
    old = {k: v for k, v in job.items() if k not in ("input", "inst", "real", "dataroot", "phase",
                                                      "direction", "digest")}
    old["digest"] = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    (out / "synthesis.json").write_text(json.dumps(old))
    for part in out.rglob("*.jsonl"):
        lines = [json.loads(x) for x in part.read_text().splitlines() if x.strip()]
        for rec in lines:
            rec.pop("inputs", None)
            if rec.get("job") == job["digest"]:
                rec["job"] = old["digest"]
        part.write_text("".join(json.dumps(r) + "\n" for r in lines))
    capsys.readouterr()
    assert synth(run, inp, out) == 0
    captured = capsys.readouterr()
    assert "wrote 0 images" in captured.out and "3 already complete" in captured.out, captured.out
    assert "predates input folders" in captured.err
    assert len(manifest(out)) == 3   # the old lines are kept: the next rerun finds them complete too
    # the folder is this job's now: another input folder is refused as another synthesis
    other = tmp_path / "other"
    for k, n in enumerate("abc"):
        ids(other / f"{n}.png", seed=10 + k)
    with pytest.raises(InputError, match="another synthesis"):
        synth(run, other, out)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.float32])
def test_padding_keeps_every_id(dtype):
    """Synthesizer pads maps (replicate) to the generator's multiple. Integer maps used to go
    through float32, which holds integers exactly only up to 2^24: instance id 16777217 became
    16777216, merging two instances. Padding must equal NumPy's edge padding in any dtype."""
    from pix2pixhd.synthesis import _pad_to
    big = 2 ** 24 + 1 if dtype in (torch.int64, torch.int32) else 201
    a = torch.tensor([[big, big - 1, big], [big - 1, 7, big]], dtype=dtype)[None, None]
    padded, h, w = _pad_to(a, 4)
    assert (h, w) == (2, 3) and padded.dtype == dtype and padded.shape == (1, 1, 4, 4)
    expected = np.pad(a[0, 0].numpy(), ((0, 2), (0, 1)), mode="edge")
    np.testing.assert_array_equal(padded[0, 0].numpy(), expected)
    assert _pad_to(a, 1)[0] is a   # already a multiple: untouched

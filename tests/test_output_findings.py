"""Findings of a user walkthrough of the commands that write one output file or folder: features
encode, export, evaluate and synthesize.py. Their output paths are checked before any work (a
folder where a file is wanted and the reverse, a parent that is a file or cannot be written, the
checkpoint the command reads, an existing file of another kind); export refuses a file whose
opset is not the one asked for; evaluate scores one sample of --num_samples output (--sample);
--cluster refuses negatives and a class given twice. Tiny runs, 16-32 px images.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pixhd import errors
from pix2pixhd.errors import ConfigError, InputError
from pix2pixhd.paths import check_output_file, check_output_folder
from tests.test_features_files import _batches, _no_batches, _run as _feature_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _error(capsys, main, argv):
    """The single ``error:`` line of the command line ``main`` on ``argv`` (exit status 1)."""
    rc = errors.run(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _not_called(*_, **__):
    raise AssertionError("the work started before the output path was checked")


# ---- paths.check_output_file / check_output_folder ----------------------------------------------
def test_output_file_checks(tmp_path):
    read = tmp_path / "in.bin"
    read.write_bytes(b"input")
    kw = dict(kind="a thing", default_name="out.bin", inputs=[("the input", read)],
              why_not_kind=lambda p: None if p.read_bytes().startswith(b"thing") else "not a thing")
    with pytest.raises(ConfigError, match=rf"^--o {tmp_path} is a folder: give a thing to write, e.g. --o {tmp_path}/out.bin$"):
        check_output_file(tmp_path, "--o", **kw)
    with pytest.raises(ConfigError, match=rf"^cannot write {read}/x: {read} is a file, not a folder"):
        check_output_file(read / "x", "--o", **kw)
    (tmp_path / "link").symlink_to(read)
    for same in (read, tmp_path / "link", tmp_path / "." / "in.bin"):
        with pytest.raises(ConfigError, match=r"is the input this command reads: writing it would destroy it"):
            check_output_file(same, "--o", **kw)
    other = tmp_path / "other.bin"
    other.write_bytes(b"something else")
    with pytest.raises(ConfigError, match=r"exists and is not a thing \(not a thing\): writing would replace it"):
        check_output_file(other, "--o", **kw)
    assert other.read_bytes() == b"something else"
    for fine in (b"thing v1", b""):   # its own kind, or empty: written over as before
        other.write_bytes(fine)
        assert check_output_file(other, "--o", **kw) == other
    assert check_output_file(tmp_path / "new" / "sub" / "o.bin", "--o", **kw)   # missing folders are made
    with pytest.raises(ConfigError, match=rf"^--d {read} is a file, not a folder"):
        check_output_folder(read, "--d")
    with pytest.raises(ConfigError, match=rf"^cannot write {read}/sub: {read} is a file"):
        check_output_folder(read / "sub", "--d")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_parent_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=rf"cannot write {locked}/a/o.bin: {locked} is not writable"):
            check_output_file(locked / "a" / "o.bin", "--o", kind="a thing", default_name="o.bin")
        with pytest.raises(ConfigError, match=rf"{locked} is not writable"):
            check_output_folder(locked / "out", "--d")
    finally:
        locked.chmod(0o700)


# ---- features encode --out -----------------------------------------------------------------------
def test_encode_refuses_the_checkpoint_and_other_files_before_e_runs(tmp_path, monkeypatch):
    """--out RUN/latest.pt wrote the clusters over the 2.2 MB checkpoint it read."""
    from pix2pixhd import features
    run = tmp_path / "ck" / "a"
    _feature_run(run, 3, seed=0)
    other = tmp_path / "ck" / "b"
    _feature_run(other, 4, seed=1)
    (tmp_path / "g.onnx").write_bytes(b"\x08\x0a\x12\x07pytorch")
    monkeypatch.setattr(features, "load_encoder", _not_called)
    cases = {run / "latest.pt": "is the checkpoint this command reads",
             other / "latest.pt": r"exists and is not a clusters file \(a training checkpoint: ",
             run / "config.json": r"exists and is not a clusters file \(not a PyTorch file\)",
             tmp_path / "g.onnx": r"exists and is not a clusters file \(not a PyTorch file\)",
             tmp_path: "is a folder: give a clusters file to write"}
    for out, says in cases.items():
        before = out.read_bytes() if out.is_file() else None
        with pytest.raises(ConfigError, match=f"^--out {out} {says}") as e:
            features.encode_and_cluster(run, batches=_no_batches(), out=out)
        assert "\n" not in str(e.value)
        assert before is None or out.read_bytes() == before
    with pytest.raises(ConfigError, match="is the checkpoint this command reads"):   # a file as --checkpoint
        features.encode_and_cluster(run / "latest.pt", batches=_no_batches(), out=run / "latest.pt")


def test_encode_replaces_an_earlier_or_damaged_clusters_file(tmp_path):
    pytest.importorskip("sklearn")
    from pix2pixhd.features import CLUSTERS_FILE, FeatureClusters, encode_and_cluster
    run = tmp_path / "ck" / "a"
    _feature_run(run, 3, seed=0)
    path, _ = encode_and_cluster(run, batches=_batches())
    path.write_bytes(path.read_bytes()[:200])   # cut short
    assert encode_and_cluster(run, batches=_batches())[0] == run / CLUSTERS_FILE
    assert FeatureClusters.load(path).global_step == 3


def test_encode_on_data_with_more_classes_names_the_runs_class_count(tmp_path):
    """'set label_nc 12': encode has no --label_nc; the data has another class count."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.data.dataset import DatasetError
    from pix2pixhd.features import _dataset
    root = tmp_path / "data"
    for d in ("train_label", "train_img", "train_inst"):
        (root / d).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16, 3) if d == "train_img" else (16, 16), np.uint8)).save(root / d / "a.png")
    (root / "classes.json").write_text(json.dumps({"label_nc": 12}))
    cfg = TrainConfig(label_nc=3, instance_feat=True, dataroot=str(root)).resolved()
    with pytest.raises(DatasetError) as e:
        _dataset(cfg, str(root), "train", 0)
    msg = str(e.value)
    assert "pass --label_nc" not in msg
    assert "says label_nc=12 but this run was trained with label_nc=3" in msg
    assert "pass the --dataroot of a dataset with the run's 3 classes" in msg


# ---- --cluster -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, says", [
    ("-1", r"--cluster -1: a centre index is 0 or more"),
    ("7=-1", r"--cluster '7=-1': 7=-1 is negative"),
    ("-2=1", r"--cluster '-2=1': -2=1 is negative"),
    ("7=1,7=2", r"--cluster '7=1,7=2': class 7 is given twice \(7=1 and 7=2\)")])
def test_negative_and_repeated_cluster_choices_are_refused(spec, says):
    from pix2pixhd.features import parse_cluster_spec
    with pytest.raises(ConfigError, match=f"^{says}") as e:
        parse_cluster_spec(spec)
    assert "\n" not in str(e.value)
    assert parse_cluster_spec("0") == 0 and parse_cluster_spec("7=1,8=2") == {7: 1, 8: 2}


# ---- export --------------------------------------------------------------------------------------
@pytest.fixture
def onnx_run(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.test_synthesis_engine import save_run
    run = tmp_path / "run"
    save_run(run, label_nc=3, no_instance=True)   # a pix2pixHD global generator: ReflectionPad → Pad
    return run


def test_export_out_is_checked_before_the_export(onnx_run, tmp_path, monkeypatch, capsys):
    """--out RUN/latest.pt replaced the checkpoint with the ONNX file; --out /tmp ran the whole
    export, then failed writing /tmp.NNN.tmp in / with the advice to check /'s file system."""
    import pix2pixhd.synthesis
    from pix2pixhd.export import main
    monkeypatch.setattr(pix2pixhd.synthesis, "load_generator", _not_called)
    ckpt = onnx_run / "latest.pt"
    before = ckpt.read_bytes()
    notes = tmp_path / "notes.txt"   # a file no check recognised was overwritten
    notes.write_text("my notes\n")
    cases = {ckpt: "is the checkpoint this command reads",
             tmp_path: f"is a folder: give an ONNX file to write, e.g. --out {tmp_path}/generator.onnx",
             onnx_run / "config.json": "exists and is not an ONNX file (JSON, not an ONNX model)",
             notes: "exists and is not an ONNX file (a file that is not an ONNX model (nor named .onnx))",
             ckpt / "g.onnx": f"X{ckpt}/g.onnx: {ckpt} is a file, not a folder"}
    for out, says in cases.items():
        err = _error(capsys, main, ["--checkpoint", str(onnx_run), "--out", str(out)])
        want = f"error: cannot write {says[1:]}" if says.startswith("X") else f"error: --out {out} {says}"
        assert err.startswith(want), err
    assert ckpt.read_bytes() == before and notes.read_text() == "my notes\n"


def test_an_opset_the_file_does_not_get_is_refused_naming_legacy(onnx_run, tmp_path, capsys):
    """--opset 16 printed torch's 'Setting ONNX exporter to use operator set version 18' and an
    onnxscript traceback, then wrote an opset-18 file and exited 0."""
    pytest.importorskip("onnxscript")
    import onnx
    from pix2pixhd.export import main
    out = tmp_path / "o16.onnx"
    err = _error(capsys, main, ["--checkpoint", str(onnx_run), "--out", str(out), "--opset", "16", "--no_check"])
    assert err.startswith("error: --opset 16 was not honoured: the torch.export exporter wrote opset 18") and \
        "Export with --legacy --opset 16" in err, err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    # the TorchScript exporter writes it
    assert main(["--checkpoint", str(onnx_run), "--out", str(out), "--opset", "16", "--legacy", "--no_check"]) == 0
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] == [16]
    capsys.readouterr()
    # refused before any work: an opset --legacy does not write, one onnx does not know
    for extra, says in ((["--legacy", "--opset", "18"], "--opset 18 with --legacy: the TorchScript exporter "
                         "writes opsets up to 17"), (["--opset", "99"], "--opset 99: the installed onnx")):
        err = _error(capsys, main, ["--checkpoint", str(onnx_run), "--out", str(tmp_path / "x.onnx"), *extra])
        assert err.startswith(f"error: {says}"), err


# ---- evaluate ------------------------------------------------------------------------------------
def _images(folder, names, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{n}.png")
    return folder


def test_evaluate_json_is_checked_before_the_metrics(tmp_path, monkeypatch, capsys):
    """--json /tmp: a traceback after every metric was computed; --json RUN/latest.pt: overwritten."""
    from pix2pixhd import evaluate as ev
    fake, real = _images(tmp_path / "f", "ab", 0), _images(tmp_path / "r", "ab", 1)
    torch.save({"G": torch.zeros(1), "global_step": 3}, tmp_path / "latest.pt")
    (tmp_path / "config.json").write_text(json.dumps({"label_nc": 3, "name": "x"}))
    real_evaluate = ev.evaluate
    monkeypatch.setattr(ev, "evaluate", _not_called)
    argv = ["--fake", str(fake), "--real", str(real), "--no_fid", "--json"]
    for out, says in ((tmp_path, "is a folder: give a JSON results file to write"),
                      (tmp_path / "latest.pt", "exists and is not a JSON results file (a PyTorch file (zip), not JSON)"),
                      (tmp_path / "config.json", "exists and is not a JSON results file (JSON with keys label_nc, "
                                                 "name, not evaluate's results)")):
        before = out.read_bytes() if out.is_file() else None
        err = _error(capsys, ev.main, argv + [str(out)])
        assert err.startswith(f"error: --json {out} {says}"), err
        assert before is None or out.read_bytes() == before
    monkeypatch.setattr(ev, "evaluate", real_evaluate)
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"n_images": 5}))   # an earlier result: replaced
    assert ev.main(argv + [str(res)]) == 0 and json.loads(res.read_text())["n_images"] == 2
    # a write that fails all the same: one line, the table is out
    import builtins
    real_open, before = builtins.open, res.read_bytes()

    def full(f, mode="r", *a, **k):   # the temporary file's write: a full disk
        if str(f).endswith(".tmp") and "w" in mode:
            raise OSError(28, "No space left on device", str(f))
        return real_open(f, mode, *a, **k)
    monkeypatch.setattr(builtins, "open", full)
    err = _error(capsys, ev.main, argv + [str(res)])
    monkeypatch.undo()
    assert err == f"error: could not write --json {res} (No space left on device); the results are in the table above"
    assert res.read_bytes() == before and not list(res.parent.glob("*.tmp"))   # the earlier file intact


def test_num_samples_output_is_scored_one_sample_at_a_time(tmp_path, capsys):
    """synthesize.py --num_samples 3 writes X_0.png ... X_2.png: 'no file stems in common', no word
    of the sample suffix."""
    from pix2pixhd.evaluate import main
    real = _images(tmp_path / "real", ["test_00000", "test_00001"], 1)
    fake = _images(tmp_path / "fake", [f"test_0000{i}_{k}" for i in range(2) for k in range(3)], 0)
    for i in range(2):   # sample 1 is the photo itself
        (fake / f"test_0000{i}_1.png").write_bytes((real / f"test_0000{i}.png").read_bytes())
    err = _error(capsys, main, ["--fake", str(fake), "--real", str(real), "--no_fid"])
    assert err.startswith(f"error: --fake {fake} holds several samples per map (synthesize.py --num_samples "
                          "names them X_0.png ... X_2.png, e.g. test_00000_0.png)"), err
    assert "pass --sample K to score sample K" in err
    out = tmp_path / "s1.json"
    assert main(["--fake", str(fake), "--real", str(real), "--no_fid", "--sample", "1", "--json", str(out)]) == 0
    assert "note: --sample 1: scoring the 2 *_1 images" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["n_images"] == 2 and res["psnr"] == "inf" and res["sample"] == 1
    err = _error(capsys, main, ["--fake", str(fake), "--real", str(real), "--no_fid", "--sample", "3"])
    assert err.startswith(f"error: --sample 3: no image of --fake {fake} ends in _3"), err


def test_the_inception_path_is_recorded_absolute(tmp_path, monkeypatch):
    pytest.importorskip("torchmetrics")
    from pix2pixhd import evaluate as ev
    from tests.test_evaluate import _tiny_extractor
    real_features = ev.InceptionFeatures
    monkeypatch.setattr(ev, "InceptionFeatures", lambda path=None, *, net=None, device="cpu":
                        real_features(net=_tiny_extractor(), device=device))
    fake, real = _images(tmp_path / "f", "abc", 0), _images(tmp_path / "r", "abc", 1)
    monkeypatch.chdir(tmp_path)
    res = ev.evaluate("f", "r", inception="inc.pt", kid_subset_size=2, verbose=False)
    assert res["feature_extractor"] == str(tmp_path / "inc.pt")


# ---- synthesize.py --out, --inst -----------------------------------------------------------------
def test_synthesis_out_that_is_a_file_and_an_unused_inst_folder(tmp_path, capsys):
    """--out RUN/latest.pt: a FileExistsError traceback; --inst for a --no_instance run: ignored
    without a word."""
    from tests.synthesis_runs import synth
    from tests.test_synthesis_engine import save_run
    run = tmp_path / "run"
    save_run(run, label_nc=5, no_instance=True)
    labels = tmp_path / "labels"
    inst = tmp_path / "inst"
    for d in (labels, inst):
        d.mkdir()
        Image.fromarray(np.full((16, 16), 2, np.uint8)).save(d / "a.png")
    err = _error(capsys, lambda argv: synth(run, labels, run / "latest.pt"), [])
    assert err.startswith(f"error: --out {run}/latest.pt is a file, not a folder"), err
    err = _error(capsys, lambda argv: synth(run, labels, run / "latest.pt" / "o"), [])
    assert err.startswith(f"error: cannot write {run}/latest.pt/o: {run}/latest.pt is a file, not a folder"), err
    synth(run, labels, tmp_path / "out", "--inst", inst)
    assert f"note: --inst {inst}: this run was trained with --no_instance (and without --instance_feat), so its " \
           f"generator reads no instance maps; they are only copied to {tmp_path / 'out'}/test_inst/" \
        in capsys.readouterr().err

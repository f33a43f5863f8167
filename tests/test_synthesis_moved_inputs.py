"""A synthesis job whose input folders moved (pix2pixhd/engine.py ``_moved_folders``,
``_moved_files_differ``): a cluster job that stages its inputs into a per-job scratch folder
($TMPDIR) and is requeued gives the same files at another path each time. It resumes when the
files its outputs were made from are there with the names, sizes and modification times its
manifest recorded (a copy that keeps them: cp -p, rsync -a, shutil.copytree); other files under
the same names (another size, modification time or contents) are another job, refused as before.

Checkpoints are tiny untrained generators (``save_run``)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pixhd.errors import InputError
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (fixtures)
from tests.test_distributed import torchrun_cmd
from tests.test_synthesis_engine import ROOT, images, save_run, threads
from tests.test_synthesis_inputs import ids



@pytest.fixture(scope="module")
def inst_run(tmp_path_factory):
    """label_nc 5 with instance maps."""
    folder = tmp_path_factory.mktemp("inst_run")
    save_run(folder, label_nc=5)
    return folder


def maps(folder: Path, names="xyz", seed: int = 0) -> Path:
    for k, n in enumerate(names):
        ids(folder / f"{n}.png", seed=seed + k)
    return folder


@pytest.mark.fault(cls="synthesis", case="input folder moved with its files (cp -p / rsync -a): resumed, note")
def test_a_moved_input_folder_with_its_files_resumes(run, tmp_path, capsys):
    a = maps(tmp_path / "stage1" / "maps")
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    first = json.loads((out / "synthesis.json").read_text())
    before = images(out / "test_img")
    b = tmp_path / "stage2" / "maps"
    shutil.copytree(a, b)            # keeps modification times, as cp -p and rsync -a do
    shutil.rmtree(tmp_path / "stage1")
    capsys.readouterr()
    assert synth(run, b, out) == 0
    cap = capsys.readouterr()
    assert "wrote 0 images" in cap.out and "3 already complete" in cap.out, cap.out
    assert f"names input {a.resolve()}; the files there are the ones its outputs were made from" in cap.err
    job = json.loads((out / "synthesis.json").read_text())
    assert job["input"] == str(b.resolve()) and job["complete"] is True
    assert first["digest"] in job["older_digests"] and job["digest"] != first["digest"]
    assert images(out / "test_img") == before
    # the merged manifest keeps the first run's lines: data scan and the next resume count them
    assert {r["job"] for r in manifest(out)} == {first["digest"]}
    # moved again (a third requeue), with one more map: the old lines still count, the new map is made
    c = tmp_path / "stage3" / "maps"
    shutil.copytree(b, c)
    ids(c / "w.png", seed=9)
    capsys.readouterr()
    assert synth(run, c, out) == 0
    text = capsys.readouterr().out
    assert "wrote 1 images" in text and "3 already complete" in text, text
    fresh = tmp_path / "fresh"
    assert synth(run, c, fresh) == 0
    assert images(out / "test_img") == images(fresh / "test_img")


@pytest.mark.fault(cls="synthesis", case="input folder moved as a copy with new modification times: refused, "
                                         "naming cp -p / rsync -a")
def test_a_moved_copy_with_new_times_is_refused_naming_how_to_copy(run, tmp_path):
    a = maps(tmp_path / "a")
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    b = tmp_path / "b"
    b.mkdir()
    for f in sorted(a.iterdir()):
        shutil.copyfile(f, b / f.name)   # cp without -p: the contents, new times
        os.utime(b / f.name, ns=(10**18, 10**18))
    with pytest.raises(InputError, match=r"another synthesis \(input: '.*/a' then, '.*/b' now\); it is not this "
                                         r"job moved: 3 of its 3 complete output\(s\) were made from other files of "
                                         r"those names .*\(cp -p, rsync -a\) resumes; .*--overwrite"):
        synth(run, b, out)


@pytest.mark.fault(cls="synthesis", case="moved input folder with one map edited: refused (not kept as done)")
def test_a_moved_folder_with_one_file_changed_is_refused(run, tmp_path):
    a = maps(tmp_path / "a")
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    b = tmp_path / "b"
    shutil.copytree(a, b)
    ids(b / "y.png", seed=7)
    with pytest.raises(InputError, match=r"1 of its 3 complete output\(s\) were made from other files"):
        synth(run, b, out)
    assert json.loads((out / "synthesis.json").read_text())["input"] == str(a.resolve())   # untouched


def _stored_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8))).save(path, compress_level=0)   # size: shape only


@pytest.mark.fault(cls="synthesis", case="other maps of the same names, sizes and times in another folder: refused "
                                         "(contents compared)")
def test_other_maps_with_the_same_names_sizes_and_times_are_refused(run, tmp_path):
    """Uncompressed maps of one shape have one size, and two folders written in the same clock tick
    share modification times: only the contents tell them apart."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    grid = np.random.default_rng(1).integers(1, 3, (4, 6)).repeat(4, 0).repeat(4, 1)
    for n in "xyz":
        _stored_png(a / f"{n}.png", grid)
        _stored_png(b / f"{n}.png", 3 - grid)      # ids 1 and 2 swapped: same size, other map
        for f in (a / f"{n}.png", b / f"{n}.png"):
            os.utime(f, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    assert all((a / n).stat().st_size == (b / n).stat().st_size for n in ("x.png", "y.png", "z.png"))
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    with pytest.raises(InputError, match=r"3 of its 3 complete output\(s\) were made from other files"):
        synth(run, b, out)


@pytest.mark.fault(cls="synthesis", case="another input folder with other names: refused (none of its inputs there)")
def test_another_folder_with_other_names_is_refused(run, tmp_path):
    a, b = maps(tmp_path / "a", "xyz"), maps(tmp_path / "b", "uvw")
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    with pytest.raises(InputError, match=r"none of the inputs of its 3 complete output\(s\) is there"):
        synth(run, b, out)


@pytest.mark.fault(cls="synthesis", case="input and instance folders moved together: resumed; one moved, "
                                         "the other another folder: refused")
def test_input_and_instance_folders_moved_together_resume(inst_run, tmp_path, capsys):
    a = maps(tmp_path / "s1" / "labels")
    ai = maps(tmp_path / "s1" / "inst", seed=20)
    out = tmp_path / "out"
    assert synth(inst_run, a, out, "--inst", ai) == 0
    shutil.copytree(tmp_path / "s1", tmp_path / "s2")
    b, bi = tmp_path / "s2" / "labels", tmp_path / "s2" / "inst"
    other = maps(tmp_path / "other", seed=40)
    with pytest.raises(InputError, match=r"were made from other files"):
        synth(inst_run, b, out, "--inst", other)
    capsys.readouterr()
    assert synth(inst_run, b, out, "--inst", bi) == 0
    cap = capsys.readouterr()
    assert "wrote 0 images" in cap.out and "3 already complete" in cap.out, cap.out
    assert f"names input {a.resolve()}, inst {ai.resolve()}; the files there" in cap.err


@pytest.mark.fault(cls="synthesis", case="moved input folder of a job killed before its first output: resumed")
def test_a_moved_job_with_no_output_yet_resumes(run, tmp_path, capsys):
    a = maps(tmp_path / "a")
    out = tmp_path / "out"
    assert synth(run, a, out) == 0
    (out / "manifest.jsonl").unlink()    # as a kill before the first line: nothing complete
    b = tmp_path / "b"
    shutil.copytree(a, b)
    capsys.readouterr()
    assert synth(run, b, out) == 0
    assert "wrote 3 images" in capsys.readouterr().out


@pytest.mark.fault(cls="synthesis", case="--dataroot moved with its files: resumed")
def test_a_moved_dataroot_resumes(tmp_path, capsys):
    from pix2pixhd.cli import synthesize_main
    from pix2pixhd.datasets.synthetic_streets import generate

    def synth_root(root, out):
        return synthesize_main(["--checkpoint", str(tmp_path / "run"), "--dataroot", str(root), "--out",
                                str(out), "--device", "cpu", "--no_progress", "--workers", "0"])

    save_run(tmp_path / "run")
    generate(tmp_path / "d1", n_train=1, n_test=3, width=64, height=32, seed=0)
    out = tmp_path / "out"
    assert synth_root(tmp_path / "d1", out) == 0
    shutil.copytree(tmp_path / "d1", tmp_path / "d2")
    capsys.readouterr()
    assert synth_root(tmp_path / "d2", out) == 0
    cap = capsys.readouterr()
    assert "wrote 0 images" in cap.out and "3 already complete" in cap.out, cap.out
    assert f"names dataroot {(tmp_path / 'd1').resolve()}; the files there" in cap.err


@pytest.mark.fault(cls="synthesis", case="input folder moved, resumed by two torchrun ranks: every rank keeps the "
                                         "moved job's outputs")
def test_two_ranks_resume_a_job_whose_folder_moved(run, tmp_path):
    """Every rank decides on the move from the files (rank 0 may already have rewritten
    synthesis.json with the new path when another rank reads it): both must keep the outputs."""
    a = tmp_path / "s1" / "in"
    for k in range(7):
        ids(a / f"m{k}.png", seed=k)
    out, one = tmp_path / "out", tmp_path / "one"
    with threads(1):
        assert synth(run, a, out, "--how_many", 3, "--batch_size", 2) == 0
        assert synth(run, a, one, "--batch_size", 2) == 0
    kept = images(out / "test_img")
    b = tmp_path / "s2" / "in"
    shutil.copytree(a, b)
    shutil.rmtree(tmp_path / "s1")
    cmd = torchrun_cmd(ROOT / "synthesize.py", "--checkpoint", str(run), "--input", str(b), "--out", str(out),
                       "--device", "cpu", "--no_progress", "--workers", "0", "--batch_size", "2")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "wrote 4 images" in p.stdout and "3 already complete" in p.stdout, p.stdout
    assert "the files there are the ones its outputs were made from" in p.stderr, p.stderr[-3000:]
    assert images(out / "test_img") == images(one / "test_img")
    assert all(images(out / "test_img")[n] == v for n, v in kept.items())
    assert sorted(r["output"] for r in manifest(out)) == [f"test_img/m{k}.png" for k in range(7)]


@pytest.mark.fault(cls="synthesis", case="checkpoint and inputs staged together into a new scratch folder: resumed")
def test_a_checkpoint_moved_with_the_inputs_resumes(tmp_path, capsys):
    """A cluster job that copies its checkpoint and its maps into $TMPDIR: both paths differ
    from synthesis.json's; the checkpoint counts by its sha256, the maps by their files."""
    save_run(tmp_path / "s1" / "run", label_nc=5, no_instance=True)
    maps(tmp_path / "s1" / "in")
    out = tmp_path / "out"
    assert synth(tmp_path / "s1" / "run", tmp_path / "s1" / "in", out) == 0
    shutil.copytree(tmp_path / "s1", tmp_path / "s2")
    shutil.rmtree(tmp_path / "s1")
    capsys.readouterr()
    assert synth(tmp_path / "s2" / "run", tmp_path / "s2" / "in", out) == 0
    cap = capsys.readouterr()
    assert "wrote 0 images" in cap.out and "3 already complete" in cap.out, cap.out
    assert "has the same sha256: resuming the job with it" in cap.err and "names input" in cap.err, cap.err


@pytest.mark.fault(cls="synthesis", case="other instance maps of the same names, sizes and times beside the same "
                                         "label maps: refused (instance partners compared)")
def test_other_instance_maps_with_the_same_names_sizes_and_times_are_refused(inst_run, tmp_path):
    grid = np.random.default_rng(2).integers(1, 3, (4, 6)).repeat(4, 0).repeat(4, 1)
    labels, i1, i2 = tmp_path / "labels", tmp_path / "i1", tmp_path / "i2"
    for d in (labels, i1, i2):
        d.mkdir()
    t = 1_700_000_000 * 10**9
    for n in "xyz":
        _stored_png(labels / f"{n}.png", grid + 1)
        _stored_png(i1 / f"{n}.png", grid)
        _stored_png(i2 / f"{n}.png", 3 - grid)     # instance ids 1 and 2 swapped: same size, other map
        for f in (labels / f"{n}.png", i1 / f"{n}.png", i2 / f"{n}.png"):
            os.utime(f, ns=(t, t))
    out = tmp_path / "out"
    assert synth(inst_run, labels, out, "--inst", i1) == 0
    moved = tmp_path / "moved"
    shutil.copytree(labels, moved)
    with pytest.raises(InputError, match=r"3 of its 3 complete output\(s\) were made from other files"):
        synth(inst_run, moved, out, "--inst", i2)


def test_the_byte_comparison_reads_past_the_first_chunk(tmp_path):
    """Maps of several MiB (uncompressed 2048x1024) that differ only at the end are other maps."""
    from pix2pixhd.engine import _same_bytes
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    data = bytes(3 * 2**20)
    a.write_bytes(data)
    b.write_bytes(data[:-1] + b"\x01")
    assert _same_bytes(str(a), b) is False
    b.write_bytes(data)
    assert _same_bytes(str(a), b) is True


@pytest.fixture(scope="module")
def enc_run(tmp_path_factory):
    """label_nc 5, --instance_feat with its encoder E: --feature_mode encoded reads --real photos."""
    import torch

    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.models import build_encoder, build_generator
    folder = tmp_path_factory.mktemp("enc_run")
    cfg = save_run(folder, label_nc=5, instance_feat=True, feat_num=3, n_downsample_E=2, no_instance=True)
    torch.manual_seed(0)
    g, e = build_generator(cfg), build_encoder(cfg)
    save_checkpoint({"G": g.state_dict(), "E": e.state_dict(), "config": cfg.to_dict()}, folder, "latest",
                    cfg.to_json())
    return folder


def photos(folder: Path, names="xyz", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(names):
        Image.fromarray(np.random.default_rng(seed + k).integers(0, 256, (16, 24, 3), dtype=np.uint8)
                        ).save(folder / f"{n}.png")
    return folder


@pytest.mark.fault(cls="synthesis", case="--real folder of an encoded-features job moved with its files: resumed; "
                                         "other photos of the same names, sizes and times: refused")
def test_a_moved_real_folder_of_an_encoded_job_resumes_and_other_photos_are_refused(enc_run, tmp_path, capsys):
    """--feature_mode encoded: the outputs are made from the --real photos too (E encodes them), so
    their folder is part of the job: moved with its files it resumes; photos of the same names,
    sizes and modification times but other pixels are another job."""
    a, ar = maps(tmp_path / "s1" / "labels"), photos(tmp_path / "s1" / "real")
    out = tmp_path / "out"
    assert synth(enc_run, a, out, "--feature_mode", "encoded", "--real", ar) == 0
    before = images(out / "test_img")
    shutil.copytree(tmp_path / "s1", tmp_path / "s2")
    shutil.rmtree(tmp_path / "s1")
    b, br = tmp_path / "s2" / "labels", tmp_path / "s2" / "real"
    other = photos(tmp_path / "other", seed=40)
    for p in other.iterdir():   # the same names, sizes and modification times as the real photos
        st = (br / p.name).stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(InputError, match=r"were made from other files"):
        synth(enc_run, b, out, "--feature_mode", "encoded", "--real", other)
    capsys.readouterr()
    assert synth(enc_run, b, out, "--feature_mode", "encoded", "--real", br) == 0
    cap = capsys.readouterr()
    assert "wrote 0 images" in cap.out and "3 already complete" in cap.out, cap.out
    assert f"real {(tmp_path / 's1' / 'real').resolve()}; the files there" in cap.err, cap.err
    assert images(out / "test_img") == before

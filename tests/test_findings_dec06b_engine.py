"""Findings of a synthesis walkthrough: ranks started with other options, a full disk, a long
input name, inputs in sub-folders only, '~' in path options, no fcntl (Windows). Tiny untrained
checkpoint (tests/synthesis_runs.run), 32x32 maps."""
import errno
import json
import os
import pathlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pix2pixhd import engine
from pix2pixhd.cli import synthesize_main
from pix2pixhd.data.layouts import IMG_EXTS
from pix2pixhd.errors import InputError, MissingInputError
from pix2pixhd.errors import run as run_command
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_engine_findings import _job, _maps
from tests.test_synthesis_engine import ROOT, free_port
from tests.test_synthesis_user_findings import ids

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _args(run, inp, out, *extra):
    return ["--checkpoint", str(run), "--input", str(inp), "--out", str(out), "--device", "cpu",
            "--no_progress", "--workers", "0", *map(str, extra)]


# ---- 1: ranks with other options ------------------------------------------------------------------
def test_ranks_started_with_other_options_stop_before_any_work_naming_the_option(run, tmp_path):
    """Rank 0 --precision fp32, rank 1 bf16: each rank had its own digest, the merge dropped rank
    1's lines, and the folder was marked complete with its images unrecorded."""
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    port = free_port()
    procs = []
    for rank, precision in ((0, "fp32"), (1, "bf16")):
        env = dict(os.environ, OMP_NUM_THREADS="1", RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "synthesize.py"),
                                       *_args(run, maps, out, "--precision", precision)],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    said = [p.communicate(timeout=240) for p in procs]
    for rank, (p, (_, err)) in enumerate(zip(procs, said)):
        assert p.returncode == 1, err[-3000:]
        assert "Traceback" not in err, err
        assert [line for line in err.splitlines() if line.startswith("error")] == [
            f"error (rank {rank} of 2): the ranks' options differ (--precision 'fp32' on rank 0, 'bf16' "
            "on rank 1): every rank must run the same synthesis (one command line under torchrun, the "
            "same checkpoint and input files on every machine); stopped before anything was written"], err
    assert not out.exists()


# ---- 2: a full disk -------------------------------------------------------------------------------
def test_a_full_disk_is_one_error_line_naming_the_file_and_a_rerun_completes(run, tmp_path, monkeypatch,
                                                                               capsys):
    maps, out = _maps(tmp_path / "maps", 6), tmp_path / "out"
    real_open = open

    def full(file, mode="r", *a, **k):   # the photo of m4: no space left
        if "w" in mode and Path(file).parent.name == "test_img" and Path(file).name.startswith("m4.png."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(engine, "open", full, raising=False)
        assert run_command(synthesize_main, _args(run, maps, out)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        f"error: could not write {out / 'test_img' / 'm4.png'}: OSError: [Errno {errno.ENOSPC}] "
        f"{os.strerror(errno.ENOSPC)}; free space on that disk (or raise the quota or file-size limit), "
        "then rerun the same command: it resumes the job (the outputs already written are kept)"], err
    assert not list(out.rglob("*.tmp")) and _job(out)["complete"] is False
    assert run_command(synthesize_main, _args(run, maps, out)) == 0
    assert _job(out)["complete"] is True and len(manifest(out)) == 6
    assert sorted(p.name for p in (out / "test_img").iterdir()) == [f"m{k}.png" for k in range(6)]


def test_a_manifest_that_cannot_be_written_is_one_error_line(tmp_path, monkeypatch):
    part = engine._Manifest(tmp_path / "manifest.parts" / "rank00000.jsonl")

    class Full:
        closed = False

        def write(self, *a):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        flush = write

        def close(self):
            self.closed = True

    real, part.f = part.f, Full()
    with pytest.raises(engine.OutputWriteError, match=r"^could not write .*rank00000.jsonl: OSError: "
                                                      r"\[Errno 28\] .*free space on that disk"):
        part.add({"output": "x", "status": "ok"})
    with pytest.raises(engine.OutputWriteError, match="rank00000.jsonl"):
        part.close()
    real.close()


# ---- 3: a long input name -------------------------------------------------------------------------
def test_an_input_with_a_245_character_stem_is_synthesized(run, tmp_path):
    """Its temporary file, stem.png.PID.tmp, was longer than 255 bytes (Errno 36)."""
    stem = "s" * 245
    maps, out = tmp_path / "maps", tmp_path / "out"
    ids(maps / f"{stem}.png", h=32, w=32)
    ids(maps / "short.png", h=32, w=32)
    assert synth(run, maps, out) == 0
    assert sorted(p.name for p in (out / "test_img").iterdir()) == sorted([f"{stem}.png", "short.png"])
    assert (out / "test_label" / f"{stem}.png").is_file() and not list(out.rglob("*.tmp"))
    assert _job(out)["complete"] is True and len(manifest(out)) == 2


def test_temporary_names_fit_end_in_tmp_and_differ_per_name():
    short = engine._tmp_path(Path("d/a.png"))
    assert short.name == f"a.png.{os.getpid()}.tmp"
    longs = [engine._tmp_path(Path(f"d/{'é' * 120}{k}.png")) for k in (1, 2)]
    assert all(len(os.fsencode(p.name)) <= 255 and p.name.endswith(f".{os.getpid()}.tmp") for p in longs)
    assert longs[0] != longs[1] and all(p.parent == Path("d") for p in longs)


# ---- 4: images in sub-folders only ----------------------------------------------------------------
def test_an_input_folder_whose_images_are_in_sub_folders_names_them(run, tmp_path):
    """Cityscapes' gtFine/test/<city>/: "holds no images" did not say where they were."""
    root = tmp_path / "gtFine" / "test"
    for city in ("berlin", "bonn"):
        ids(root / city / f"{city}_000000_000019_gtFine_labelIds.png", h=32, w=32)
    (root / "empty").mkdir()
    (root / ".cache").mkdir()
    ids(root / ".cache" / "x.png")
    with pytest.raises(MissingInputError) as e:
        synth(run, root, tmp_path / "out")
    assert str(e.value) == (
        f"--input {root} holds no images ({', '.join(IMG_EXTS)}) directly: its images are in sub-folders "
        f"(berlin/, bonn/), which are not searched: move them up into test/, or synthesize each "
        f"sub-folder (--input {root / 'berlin'} with an --out of its own)")
    (root / "berlin").rename(tmp_path / "berlin")
    (root / "bonn").rename(tmp_path / "bonn")
    with pytest.raises(MissingInputError) as e:   # no image anywhere: as before
        synth(run, root, tmp_path / "out")
    assert str(e.value) == f"--input {root} holds no images ({', '.join(IMG_EXTS)})"


# ---- 5: '~' in path options -----------------------------------------------------------------------
def test_a_tilde_in_path_options_is_the_home_folder(run, tmp_path, monkeypatch):
    """--out=~/x made ./~/x; --dataroot ~/streets "does not exist"."""
    from pix2pixhd.synthesis import load_generator
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    _maps(home / "maps", 2)
    ids(home / "streets" / "test_label" / "a.png", h=32, w=32)
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert synthesize_main(["--checkpoint", str(run), "--input=~/maps", "--out=~/x", "--device", "cpu",
                            "--no_progress", "--workers", "0"]) == 0
    assert sorted(p.name for p in (home / "x" / "test_img").iterdir()) == ["m0.png", "m1.png"]
    assert synthesize_main(["--checkpoint", str(run), "--dataroot", "~/streets", "--out", "~/y",
                            "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    assert (home / "y" / "test_img" / "a.png").is_file()
    assert not list(cwd.iterdir())   # no ./~ folder
    job = engine.SynthesisJob(out="~/o", input=Path("~/i"), inst="~/n", real="~/r", dataroot=None)
    assert (job.out, job.input, job.inst, job.real) == (home / "o", home / "i", home / "n", home / "r")
    (home / "run").symlink_to(run)
    g, cfg = load_generator("~/run")
    assert cfg.label_nc == 5
    # --checkpoint ~/run on the command line (cli hashes and records it before load_generator)
    assert synthesize_main(["--checkpoint", "~/run", "--input=~/maps", "--out=~/z", "--device", "cpu",
                            "--no_progress", "--workers", "0"]) == 0
    assert sorted(p.name for p in (home / "z" / "test_img").iterdir()) == ["m0.png", "m1.png"]
    assert json.loads((home / "z" / "synthesis.json").read_text())["checkpoint"] == str((run / "latest.pt").resolve())


# ---- 6: no fcntl, pread, pwrite, O_CLOEXEC (Windows) ----------------------------------------------
def _like_windows(m):
    m.setitem(sys.modules, "fcntl", None)   # `import fcntl` raises ModuleNotFoundError
    for name in ("O_CLOEXEC", "pread", "pwrite"):
        m.delattr(os, name, raising=False)


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_the_out_lock_works_without_fcntl_falling_back_on_the_recorded_pid(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _like_windows(m)
        lock = engine.OutLock(tmp_path / "a")
        assert lock.acquire("job") is None
        rec = json.loads((tmp_path / "a" / "synthesis.lock").read_text())
        assert rec["pid"] == os.getpid() and rec["job"] == "job" and rec["host"] == socket.gethostname()
        other = engine.OutLock(tmp_path / "b")
        other.out.mkdir()
        # a holder alive on this host (the parent process): refused, naming it
        other.path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
        with pytest.raises(InputError, match=rf"is being written by another synthesis \(pid {os.getppid()} on host"):
            other.acquire()
        # a dead holder's lock: taken over with a note
        dead = _dead_pid()
        other.path.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
        note = other.acquire()
        assert note is not None and f"(pid {dead} on {socket.gethostname()}) that is no longer running" in note
        assert json.loads(other.path.read_text())["pid"] == os.getpid()
        other.release()
        lock.release()
    assert not (tmp_path / "a" / "synthesis.lock").exists() and not (tmp_path / "b" / "synthesis.lock").exists()


def test_the_lock_file_is_removed_after_closing_where_an_open_file_cannot_be_removed(tmp_path, monkeypatch):
    """Windows refuses to remove a file that is open (PermissionError)."""
    lock = engine.OutLock(tmp_path)
    lock.acquire()
    fd, real_unlink = lock.fd, pathlib.Path.unlink

    def unlink(self, *a, **k):
        try:
            os.fstat(fd)
        except OSError:   # closed
            return real_unlink(self, *a, **k)
        raise PermissionError(errno.EACCES, "The process cannot access the file", str(self))

    with monkeypatch.context() as m:
        m.setattr(pathlib.Path, "unlink", unlink)
        lock.release()
    assert not lock.path.exists()


def test_pid_alive_on_windows_sends_no_signal(monkeypatch):
    """os.kill(pid, 0) on Windows sends CTRL_C_EVENT; without an answer, a holder counts as alive."""
    sent = []
    with monkeypatch.context() as m:
        m.setattr(os, "name", "nt")
        m.setattr(os, "kill", lambda *a: sent.append(a))
        alive = engine._pid_alive(_dead_pid())
    assert alive is True and sent == []


# ---- names in another Unicode normal form (macOS writes NFD) ------------------------------------------
def test_real_photos_named_in_nfd_pair_with_nfc_label_maps(run, tmp_path):
    """--real (and --inst) partners are matched on NFC stems, as the data module matches them:
    the NFD-named photo of another size is found, and refused for its size (it was not found)."""
    from tests.test_synthesis_user_findings import photo
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    ids(tmp_path / "maps" / f"{nfc}.png", h=32, w=32)
    photo(tmp_path / "real" / f"{nfd}.png", h=16, w=16)
    assert engine._index(tmp_path / "real") == {nfc: tmp_path / "real" / f"{nfd}.png"}
    with pytest.raises(InputError, match="is 16x16 but its label map"):
        synthesize_main(_args(run, tmp_path / "maps", tmp_path / "out", "--real", tmp_path / "real"))


def test_evaluate_and_the_report_pair_names_in_either_normal_form(tmp_path):
    from pix2pixhd.data.layouts import index_images
    from pix2pixhd.evaluate import match_key
    assert match_key("cafe\u0301_synthesized_image") == match_key("caf\u00e9_leftImg8bit") == "caf\u00e9"
    ids(tmp_path / "cafe\u0301.png")
    assert index_images(tmp_path) == {"caf\u00e9": tmp_path / "cafe\u0301.png"}

"""Findings of code review REV4 on ``python -m pix2pixhd.features`` and
benchmarks/loader_memory.py, each shown failing on the code before its fix:

1. the progress save at a stop caught only OSError, but it writes through
   ``checkpoint._atomic_write``, which raises a full disk as a CheckpointError: that error replaced
   the stop (no ``stopped by`` line, status 1, not 75);
2. the inputs digest stamped an image's files (size, mtime) at the save after E read it: a photo
   rewritten in between got the new stamp beside the old content's features, and a rerun resumed
   from them;
3. a stop while encode read its progress file said "encode starts over", though a rerun continues;
5. loader_memory's measuring process unblocked the stop signals before its ``try``: a stop pending
   at its start escaped as a traceback, with no reply to the parent.

The features tests use the tiny untrained E and the 7 synthetic 64x32 scenes of
tests/features_runs.py (its fixtures, imported); E is wrapped to raise SIGTERM (main's handler: the
stop) or KeyboardInterrupt (a kill's stand-in) before a given image: nothing depends on timing.

Findings of REV5 (pix2pixhd/features.py), each shown failing on the code before its fix too:

R5-1. a stop before encode judged its progress file (loading E, the dataset, reading the file) promised
   "rerun the same command (it continues from PROGRESS)" for any file there, also a format-3, another
   encoder's or a damaged one, from which the rerun starts over;
R5-2. a stop's save renamed into place whose folder's fsync failed (a CheckpointError "was written, but
   its folder could not be synced") was reported failed, with the count of the save before, though the
   file holds every image done."""
import errno
import os
import signal
import threading

import pytest
import torch

import pix2pixhd.checkpoint as checkpoint
import pix2pixhd.features as features
from benchmarks import loader_memory as LM
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import N, progress_count
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

NO_SPACE = "OSError: [Errno 28] No space left on device"


def _full_disk_from_the_second_save(monkeypatch) -> list:
    """Progress saves after the first fail as a full disk does: through the real
    ``_atomic_write``, whose writer raises OSError(ENOSPC) (it wraps that into a CheckpointError).
    Returns the list of the saves' paths."""
    saves = []
    real = checkpoint.atomic_torch_save

    def save(obj, path):
        saves.append(path)
        if len(saves) == 1:
            return real(obj, path)

        def full(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        checkpoint._atomic_write(path, full)
    monkeypatch.setattr(checkpoint, "atomic_torch_save", save)
    return saves


def _stopped_before_image_5(command: str, folder, out, counted, capsys) -> str:
    """``python -m pix2pixhd.features COMMAND`` (batches of 1, progress saved every 3 images) with
    SIGTERM before image 5 through main's stop: its status is the stop's; returns its stderr."""
    counted(stop_at=4, signum=signal.SIGTERM)   # batches of 1: saved at 3, the stop before image 5
    out_flag = "--out" if command == "encode" else "--out_dir"
    with pytest.raises(SystemExit) as e:
        features.main([command, "--checkpoint", str(folder), out_flag, str(out), "--batch_size", "1",
                       "--progress_every", "3", "--device", "cpu"])
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    return capsys.readouterr().err


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: SIGTERM after 4 images (saved at 3), the disk full at the stop's save: "
                        "the stop's line says the save failed and that the file keeps 3, status 75, no traceback")
def test_encode_stop_whose_save_fails_keeps_the_stop(run, tmp_path, counted, capsys, monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    saves = _full_disk_from_the_second_save(monkeypatch)
    err = _stopped_before_image_5("encode", folder, out, counted, capsys)
    assert len(saves) == 2, saves   # the one at 3, the stop's
    line = (f"stopped by SIGTERM: nothing written to {out} (written whole at encode's end); the features of 3 "
            f"image(s) are kept in {progress} (keeping the features of all 4 encoded failed: {NO_SPACE}): rerun "
            "the same command to continue from there")
    assert err.strip().splitlines() == [line], err
    assert progress_count(progress) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.pt.progress"]   # no temporary file left


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: SIGTERM after 4 maps (saved at 3), the disk full at the stop's save: "
                        "the stop's line says the save failed and that the file records 3, status 75, no traceback")
def test_precompute_stop_whose_save_fails_keeps_the_stop(run, tmp_path, counted, capsys, monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    saves = _full_disk_from_the_second_save(monkeypatch)
    err = _stopped_before_image_5("precompute", folder, out, counted, capsys)
    assert len(saves) == 2, saves
    line = (f"stopped by SIGTERM: 4 feature map(s) written to {out}/ before the stop, each whole (through a "
            f"temporary file), the others not; {progress} records the first 3 (recording all 4 failed: "
            f"{NO_SPACE}): rerun the same command to write the others")
    assert err.strip().splitlines() == [line], err
    assert progress_count(progress) == 3


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: photo 1 rewritten (same size, new mtime) after E read it and before the "
                        "stop's save: the rerun sees the rewrite (a note naming other inputs) and starts over")
def test_a_photo_rewritten_after_it_was_encoded_is_seen_by_the_rerun(run, tmp_path, counted, capsys,
                                                                      monkeypatch):
    folder, streets = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    img = sorted((streets / "train_img").iterdir())[0]
    st = img.stat()
    rows, calls = features._batch_rows, []

    def then_rewritten(e, batch, *a):
        got = rows(e, batch, *a)
        calls.append(1)
        if len(calls) == 1:   # E has read photo 1 (batches of 1): rewritten before any save
            img.write_bytes(img.read_bytes())   # the same bytes, a second later
            os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return got
    monkeypatch.setattr(features, "_batch_rows", then_rewritten)
    args = ["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "1",
            "--progress_every", "100", "--device", "cpu"]
    try:
        counted(stop_at=2, signum=signal.SIGTERM)   # images 1 and 2 encoded, saved at the stop only
        with pytest.raises(SystemExit):
            features.main(args)
        assert os.stat(img).st_mtime_ns != st.st_mtime_ns, "the photo was not rewritten: the test sees nothing"
        assert progress_count(progress) == 2
        capsys.readouterr()
        monkeypatch.setattr(features, "_batch_rows", rows)
        sizes = counted()
        assert features.main(args) == 0
        err = capsys.readouterr().err
    finally:
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))   # for the module's other tests
    assert (f"note: {progress} records other inputs (among the images it counts done, a file added, removed "
            "or rewritten since): ignored, encode starts over") in err, err
    assert sum(sizes) == N, f"the rerun encoded {sum(sizes)} images, not all {N}: it resumed from stale features"


@pytest.mark.fault(cls="interrupted run",
                   case="features encode with a progress file of 4 images, SIGTERM while it is read: the line "
                        "says a rerun reads it and continues from it if it is this run's (not 'encode starts "
                        "over'), and the rerun does")
def test_a_stop_while_the_progress_file_is_read_says_a_rerun_continues(run, tmp_path, counted, capsys,
                                                                       monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    counted(stop_at=5)   # batches of 2, saves every 2: 4 done and saved, then killed
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)
    assert progress_count(progress) == 4
    capsys.readouterr()
    load = features._load_progress

    def stopped(*a, **k):
        signal.raise_signal(signal.SIGTERM)   # main's handler: the stop
        return load(*a, **k)
    monkeypatch.setattr(features, "_load_progress", stopped)
    args = ["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "2", "--progress_every", "2",
            "--device", "cpu"]
    sizes = counted()
    with pytest.raises(SystemExit) as e:
        features.main(args)
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    line = (f"stopped by SIGTERM: nothing written ({out} is written whole at encode's end; it was not created); "
            f"rerun the same command (it reads {progress} and continues from it if it is this run's)")
    assert err.strip().splitlines() == [line], err
    assert sizes == [] and progress_count(progress) == 4
    monkeypatch.setattr(features, "_load_progress", load)
    assert features.main(args) == 0
    assert f"note: resuming from {progress}: 4 of {N} image(s) already done" in capsys.readouterr().err
    assert sum(sizes) == N - 4


@pytest.mark.fault(cls="interrupted run",
                   case="loader_memory's measuring process, SIGTERM pending while it starts with the stop signals "
                        "blocked: it replies 'stopped', no exception escapes (in-process, pgid unchanged)")
def test_loader_memory_child_answers_a_stop_pending_at_its_start(monkeypatch):
    sent, closed = [], []

    class Send:
        def send(self, reply):
            sent.append(reply)

        def close(self):
            closed.append(True)
    monkeypatch.setattr(LM.os, "setpgid", lambda *a: None)   # this test process keeps its group
    handlers = {s: signal.getsignal(s) for s in LM.STOPS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, list(LM.STOPS))
    try:
        # to this thread (os.kill could be taken by another thread of the process, unblocked)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        LM._measure_in_child(Send(), "/nonexistent", "compact", 1, 1, 1)
    finally:
        for s in LM.STOPS:   # a stop still pending is discarded, not delivered to pytest
            signal.signal(s, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for s, h in handlers.items():
            signal.signal(s, h)
    assert sent == [("stopped", signal.SIGTERM)], sent
    assert closed == [True]


def _progress_of_4(folder, out, counted) -> None:
    """encode killed (KeyboardInterrupt) before image 6, batches of 2 saved every 2: a progress file
    of 4 images beside ``out``."""
    counted(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        features.encode_and_cluster(folder, out=out, batch_size=2, progress_every=2)


@pytest.mark.fault(cls="interrupted run",
                   case="features encode with a format-3 progress file (refused), SIGTERM before it is judged: "
                        "the line does not promise that a rerun continues from it; the rerun says format 3 and "
                        "starts over")
def test_a_stop_before_a_format_3_file_is_judged_promises_no_continuation(run, tmp_path, counted, capsys,
                                                                           monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    _progress_of_4(folder, out, counted)
    d = torch.load(progress, map_location="cpu", weights_only=True)
    d["version"] = 3   # an unreleased format, refused
    torch.save(d, progress)
    capsys.readouterr()
    load = features._load_progress

    def stopped(*a, **k):
        signal.raise_signal(signal.SIGTERM)   # main's handler: the stop, before the file is read
        return load(*a, **k)
    monkeypatch.setattr(features, "_load_progress", stopped)
    args = ["encode", "--checkpoint", str(folder), "--out", str(out), "--batch_size", "2", "--progress_every", "2",
            "--device", "cpu"]
    sizes = counted()
    with pytest.raises(SystemExit) as e:
        features.main(args)
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    err = capsys.readouterr().err
    assert f"it continues from {progress}" not in err, f"the stop promised a continuation from a format-3 file: {err}"
    line = (f"stopped by SIGTERM: nothing written ({out} is written whole at encode's end; it was not created); "
            f"rerun the same command (it reads {progress} and continues from it if it is this run's)")
    assert err.strip().splitlines() == [line], err
    monkeypatch.setattr(features, "_load_progress", load)
    assert features.main(args) == 0
    assert "format 3, another pix2pixhd version's" in capsys.readouterr().err
    assert sum(sizes) == N


def _folder_sync_fails_at_the_second_save(monkeypatch) -> list:
    """``checkpoint._fsync_dir`` raising OSError(EIO) from the second progress save on: the file is
    renamed into place, then ``_atomic_write`` raises its CheckpointError "was written, but its
    folder could not be synced". Returns the list of the saves' paths."""
    saves = []
    real_save, real_sync = checkpoint.atomic_torch_save, checkpoint._fsync_dir

    def save(obj, path):
        saves.append(path)
        return real_save(obj, path)

    def sync(folder):
        if len(saves) >= 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_sync(folder)
    monkeypatch.setattr(checkpoint, "atomic_torch_save", save)
    monkeypatch.setattr(checkpoint, "_fsync_dir", sync)
    return saves


EIO = f"OSError: [Errno {errno.EIO}] {os.strerror(errno.EIO)}"


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: SIGTERM after 4 images (saved at 3), the stop's save renamed into place "
                        "but its folder's fsync failing (EIO): the line says the 4 images are kept (saved, the "
                        "folder not synced), not that the save failed, status 75")
def test_encode_stop_whose_save_landed_but_folder_sync_failed_keeps_the_images(run, tmp_path, counted, capsys,
                                                                                monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "c.pt", tmp_path / ".c.pt.progress"
    saves = _folder_sync_fails_at_the_second_save(monkeypatch)
    err = _stopped_before_image_5("encode", folder, out, counted, capsys)
    assert len(saves) == 2, saves
    assert progress_count(progress) == 4
    line = (f"stopped by SIGTERM: nothing written to {out} (written whole at encode's end); the features of 4 "
            f"image(s) are kept in {progress} (saved, but its folder could not be synced: {EIO}): rerun the same "
            "command to continue from there")
    assert err.strip().splitlines() == [line], err


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: SIGTERM after 4 maps (saved at 3), the stop's save renamed into "
                        "place but its folder's fsync failing (EIO): the line says the file records 4 (saved, "
                        "the folder not synced), not that the save failed, status 75")
def test_precompute_stop_whose_save_landed_but_folder_sync_failed_records_the_maps(run, tmp_path, counted, capsys,
                                                                                    monkeypatch):
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    saves = _folder_sync_fails_at_the_second_save(monkeypatch)
    err = _stopped_before_image_5("precompute", folder, out, counted, capsys)
    assert len(saves) == 2, saves
    assert progress_count(progress) == 4
    line = (f"stopped by SIGTERM: 4 feature map(s) written to {out}/ before the stop, each whole (through a "
            f"temporary file), the others not; {progress} records the first 4 (saved, but its folder could not "
            f"be synced: {EIO}): rerun the same command to write the others")
    assert err.strip().splitlines() == [line], err

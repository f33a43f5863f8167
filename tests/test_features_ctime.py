"""``python -m pix2pixhd.features precompute``: a photo among the maps done, rewritten with other
bytes of the same size and its mtime set back (as ``cp -p``, ``rsync -a`` or ``touch -r`` leave
it), is seen by the rerun.

The progress file's inputs digest stamped each input with its size and mtime only, so such a rewrite
left the digest as it was: a precompute stopped after 4 maps, photo 0 rewritten that way, resumed
"4 of 7 already done" and kept photo 0's map of the old pixels. Each input's ctime is in the stamp
now (format 4), as in the validation stamp (tests/test_validation_stamp2.py): no tool sets it back.

The tiny untrained E and 7 synthetic 64x32 scenes of tests/features_runs.py (its fixtures,
imported); E is wrapped to raise SIGTERM (main's handler: the stop) before a given image: nothing
depends on timing (the ctime is waited for, bounded, before the rerun, never asserted on a clock).
Format 3 (today's unreleased one, without ctimes) is refused as another version's."""
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import pix2pixhd.features as features
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import N, maps, progress_count
from tests.file_state import rewrite_keeping_size_and_mtime
from tests.features_runs import counted, run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _save_stored(pixels: np.ndarray, path) -> None:
    """``pixels`` as a PNG without compression: its size depends on the image's size only, so that
    other pixels make a file of the same size."""
    Image.fromarray(pixels, "RGB").save(path, compress_level=0)


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute stopped (SIGTERM) after 4 of 7 maps, photo 0 rewritten with other "
                        "pixels of the same file size and its mtime set back (cp -p, rsync -a, touch -r): the "
                        "rerun says the file records other inputs and starts over, photo 0's map is of its new "
                        "pixels (it resumed from the 4 and kept the old pixels' map)")
def test_a_rewrite_keeping_size_and_mtime_of_a_done_photo_starts_over(run, tmp_path, counted, capsys):
    folder, streets = run
    photo = sorted((streets / "train_img").iterdir())[0]
    with Image.open(photo) as im:
        pixels = np.asarray(im.convert("RGB")).copy()
    _save_stored(pixels, photo)   # stored, so that the rewrite below can keep the size
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    args = ["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--batch_size", "2",
            "--progress_every", "2", "--device", "cpu"]
    counted(stop_at=4, signum=signal.SIGTERM)   # E's 3rd batch: 4 maps written and saved
    with pytest.raises(SystemExit) as e:
        features.main(args)
    assert e.value.code == STOPPED_EXIT_STATUS, repr(e.value)
    assert progress_count(progress) == 4, f"the progress file counts {progress_count(progress)} maps, not 4"
    stale = maps(out)[f"{photo.stem}.png"]

    st, other = photo.stat(), tmp_path / "other.png"
    _save_stored(255 - pixels, other)
    data = other.read_bytes()
    assert len(data) == st.st_size and data != photo.read_bytes(), "the rewrite is not other bytes of the same size"
    _, now = rewrite_keeping_size_and_mtime(photo, data)   # new bytes, the old times set back (cp -p)
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and now.st_ctime_ns != st.st_ctime_ns, \
        "the photo was not rewritten with its size and mtime kept: the test sees nothing"

    capsys.readouterr()
    sizes = counted()
    assert features.main(args) == 0
    err = capsys.readouterr().err
    assert (f"note: {progress} records other inputs (among the images it counts done, a file added, removed or "
            "rewritten since): ignored, precompute starts over") in err, err
    assert sum(sizes) == N, f"the rerun wrote {sum(sizes)} maps, not all {N}: it resumed past the rewritten photo"
    assert not progress.exists()

    counted()
    features.precompute_feature_maps(folder, out_dir=tmp_path / "whole", batch_size=2)
    got = maps(out)
    assert got == maps(tmp_path / "whole"), "the maps differ from an uninterrupted run's on the rewritten photo"
    assert got[f"{photo.stem}.png"] != stale, "photo 0's map is the old pixels' (E saw no difference)"


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute stopped after 4 of 7 maps, its progress file rewritten as format 3 "
                        "(today's unreleased one, inputs stamped without ctimes): refused as another version's "
                        "in a note, the rerun starts over and writes all 7")
def test_a_format_3_progress_file_is_refused(run, tmp_path, counted, capsys):
    folder, _ = run
    out, progress = tmp_path / "feat", tmp_path / ".feat.progress"
    counted(stop_at=4)   # a kill's stand-in before the 5th image: the save at 4 stands
    with pytest.raises(KeyboardInterrupt):
        features.precompute_feature_maps(folder, out_dir=out, batch_size=2, progress_every=2)
    d = torch.load(progress, map_location="cpu", weights_only=True)
    assert (d["count"], d["version"]) == (4, 4), (d["count"], d["version"])
    torch.save({**d, "version": 3}, progress)
    capsys.readouterr()
    sizes = counted()
    features.precompute_feature_maps(folder, out_dir=out, batch_size=2, progress_every=2)
    err = capsys.readouterr().err
    assert (f"note: {progress} cannot be read as a progress file (format 3, another pix2pixhd version's; this "
            "one writes 4): ignored, precompute starts over") in err, err
    assert sum(sizes) == N and not progress.exists()

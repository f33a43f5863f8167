"""The validation stamp (a run folder's ``validation.json``, create_dataset's ``stamp``), the gaps
closed after tests/test_validation_stamp.py: a rewrite that keeps a file's size and sets its mtime
back (``cp -p``, ``rsync -a``, ``touch -r``) validates again (the files' ctimes), a stamp edited by
hand validates again (its digest), a skipped validation prints again the notes the first one
printed, and a resume's check walks the records once.

Datasets are 4 tiny images (64x32) opened through create_dataset; validations counted by the calls
to ``validate_dataset`` (the ``validations`` fixture). Each fault-type test carries
``@pytest.mark.fault(cls=..., case=...)``."""
import json

import pytest

from pix2pixhd.data import create_dataset
from pix2pixhd.data import dataset as dsmod
from pix2pixhd.data import layouts
from pix2pixhd.datasets.synthetic_streets import LABEL_NC
from tests.file_state import rewrite_keeping_size_and_mtime
from tests.test_validation_stamp import SKIPPED, streets, validations  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")
fault = pytest.mark.fault


def _open(root, stamp):
    return create_dataset(root, "train", validate="full", stamp=stamp, label_nc=LABEL_NC, resize_or_crop="none")


def _stamped(root, stamp):
    """Open ``root`` (validated) and write its stamp, as a run does once validation passed."""
    ds = _open(root, stamp)
    assert ds.validation_stamp is not None
    stamp.write_text(json.dumps(ds.validation_stamp))
    return ds


@fault(cls="bad dataset", case="a data file rewritten after validation passed with its size and mtime kept "
       "(cp -p, rsync -a, touch -r): validated again (the stamp holds each file's ctime, which no tool sets back)")
def test_a_rewrite_that_keeps_size_and_mtime_validates_again(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    _stamped(streets, stamp)
    _open(streets, stamp)
    assert validations == ["full"]   # unchanged: skipped
    photo = sorted((streets / "train_img").iterdir())[1]
    # as `cp -p` does: new bytes (here the same ones), then the old times set back
    st, now = rewrite_keeping_size_and_mtime(photo, photo.read_bytes())
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and now.st_ctime_ns != st.st_ctime_ns
    capsys.readouterr()
    _open(streets, stamp)
    assert validations == ["full", "full"], "a rewrite that kept the size and mtime skipped validation"
    assert SKIPPED not in capsys.readouterr().err


@fault(cls="damaged run folder", case="a validation.json edited by hand (its sizes changed, its fingerprint "
       "still matching): its digest no longer matches, a note says so, the dataset validated again")
def test_a_hand_edited_stamp_validates_again(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    assert good["sizes"] == [[64, 32, 4]]
    stamp.write_text(json.dumps({**good, "sizes": [[32, 16, 4]]}))   # well-formed, and wrong
    capsys.readouterr()
    ds = _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full", "full"], "a stamp edited by hand skipped validation"
    assert set(ds.source_sizes.values()) == {(64, 32)}, f"the edited sizes were taken: {ds.source_sizes}"
    assert SKIPPED not in err and f"{stamp} does not match its own digest" in err, err
    assert ds.validation_stamp == good   # written anew by the caller: the same files, the same stamp


@fault(cls="bad dataset", case="an entry that is not a sample (a text file among the photos): validation's note "
       "about it printed again, after the skip note, by a resume that skips validation (the stamp keeps it)")
def test_a_skipped_validation_prints_the_notes_validation_printed(tmp_path, streets, validations, capsys,
                                                                 monkeypatch):
    """An entry not used as a sample (a text file among the photos): validation's note about it
    comes again after the skip note, as the first open printed it; the stamp keeps the first
    STAMP_NOTE_LINES lines and counts the rest."""
    (streets / "train_img" / "readme.txt").write_text("not a photo")
    stamp = tmp_path / "validation.json"
    capsys.readouterr()
    _stamped(streets, stamp)
    first = capsys.readouterr().err
    assert "train_img/readme.txt: not an image" in first, first
    _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full"] and SKIPPED in err, err
    assert "the notes it printed then follow" in err
    after = err[err.index(SKIPPED):].split("\n", 1)[1]
    assert after == first, f"a skipped validation printed other notes:\n{after}\nnot:\n{first}"

    monkeypatch.setattr(dsmod, "STAMP_NOTE_LINES", 1)   # a stamp keeping the first line only
    stamp.unlink()
    _stamped(streets, stamp)
    capsys.readouterr()
    _open(streets, stamp)
    after = capsys.readouterr().err.split("\n", 1)[1]
    more = f"  ... and 2 more line(s) of these notes, which {stamp} does not keep"
    assert after == first.split("\n")[0] + "\n" + more + "\n", after


def test_a_resume_check_walks_the_records_once(tmp_path, streets, validations, monkeypatch):
    """A record's dict of Paths is built when it is walked (Records), which is most of a resume's
    check at 100k records: the fingerprint, the stamp's sizes and the records' count share one walk."""
    stamp = tmp_path / "validation.json"
    _stamped(streets, stamp)
    built = []
    real = layouts.Records._one
    monkeypatch.setattr(layouts.Records, "_one", lambda self, i: built.append(i) or real(self, i))
    ds = _open(streets, stamp)
    assert validations == ["full"]
    assert sorted(built) == list(range(len(ds.all_records()))) == [0, 1, 2, 3], \
        f"records built {built} by a resume's check of 4 records"

"""The validation stamp's notes (a run folder's ``validation.json``, create_dataset's ``stamp``),
the gaps review MUT6 found after tests/test_validation_stamp2.py: a clean dataset's resume says
nothing of notes (it said they follow, then printed an empty line), a first note line over
STAMP_NOTE_CHARS is still counted on a resume, the classes.json note comes back after the skip
note, and the stamp's checks (its digest over the notes, the version, the notes' types, the
canonical JSON the digest is taken over, the escaping of a forged note) each decide a case.

Datasets are 4 tiny images (64x32) opened through create_dataset; validations counted by the calls
to ``validate_dataset`` (the ``validations`` fixture). Each fault-type test carries
``@pytest.mark.fault(cls=..., case=...)``."""
import json

import pytest

from pix2pixhd.data import dataset as dsmod
from pix2pixhd.datasets.synthetic_streets import LABEL_NC
from tests.test_mutants_dec07g import _open, _stamped
from tests.test_validation_stamp import SKIPPED, streets, validations  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")
fault = pytest.mark.fault
FOLLOW = "the notes it printed then follow"
DIGEST = "does not match its own digest"


def _after_skip(err: str) -> str:
    """What stderr holds after the skip note's line."""
    assert SKIPPED in err, err
    return err[err.index(SKIPPED):].split("\n", 1)[1]


def _forged(stamp, good: dict, **fields) -> None:
    """``good`` with ``fields`` changed and its digest recomputed (as anyone editing it can)."""
    edited = {**good, **fields}
    edited["digest"] = dsmod._stamp_digest(edited)
    stamp.write_text(json.dumps(edited))


# --- what a skipped validation prints -------------------------------------------------------------

@fault(cls="interrupted run", case="--resume on a dataset whose validation printed no note: the skip note "
       "alone (it said the notes follow, then printed an empty line)")
def test_a_clean_resume_prints_the_skip_note_alone(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    capsys.readouterr()
    _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full"]
    assert FOLLOW not in err, err
    assert _after_skip(err) == "", f"a clean resume printed after its skip note: {_after_skip(err)!r}"
    # the skip note counts the records (file groups), not the files validation reads (13 here)
    assert "says these 4 file group(s)" in err, err
    assert (good["notes"], good["notes_left"]) == ([], 0), good   # no note, no line


@fault(cls="bad dataset", case="validation's notes whose first line is longer than the stamp keeps: a resume "
       "that skips validation says how many lines it left out (it said nothing of them)")
def test_a_first_note_line_over_the_limit_is_still_counted(tmp_path, streets, validations, capsys, monkeypatch):
    (streets / "train_img" / "readme.txt").write_text("not a photo")   # a 3-line note
    monkeypatch.setattr(dsmod, "STAMP_NOTE_CHARS", 10)   # under the note's first line
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    assert (good["notes"], good["notes_left"]) == ([], 3), good
    capsys.readouterr()
    _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full"] and FOLLOW in err, err
    assert _after_skip(err) == f"  ... and 3 more line(s) of these notes, which {stamp} does not keep\n", err


@fault(cls="bad dataset", case="a classes.json naming fewer classes than --label_nc: its note printed again "
       "after the skip note by a resume that skips validation")
def test_the_classes_note_comes_back_after_a_skip(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    capsys.readouterr()
    good = _stamped(streets, stamp, label_nc=LABEL_NC + 5).validation_stamp
    first = capsys.readouterr().err
    assert f"classes.json says label_nc={LABEL_NC}" in first, first
    _open(streets, stamp, label_nc=LABEL_NC + 5)   # as a resume opens it: the run's label_nc
    err = capsys.readouterr().err
    assert validations == ["full"] and SKIPPED in err, err
    assert _after_skip(err) == first, f"the classes.json note did not come back:\n{err}"
    assert good["notes"] == first.rstrip("\n").split("\n"), good


@fault(cls="damaged run folder", case="a validation.json whose notes hold a terminal escape (digest recomputed): "
       "the note printed with the escape shown, not sent to the terminal")
def test_a_forged_note_is_printed_escaped(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    _forged(stamp, good, notes=["note: \x1b]0;owned\x07 here"])
    capsys.readouterr()
    _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full"]
    assert "\x1b" not in err and "\x07" not in err, repr(err)
    assert _after_skip(err) == "note: \\x1b]0;owned\\x07 here\n", repr(err)


# --- the stamp's own checks -------------------------------------------------------------------------

@fault(cls="damaged run folder", case="a validation.json whose notes alone were edited by hand: its digest "
       "(over the notes too) no longer matches, a note says so, the dataset validated again")
def test_a_stamp_with_edited_notes_validates_again(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    stamp.write_text(json.dumps({**good, "notes": ["note: all is well"], "notes_left": 2}))
    capsys.readouterr()
    ds = _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full", "full"], "a stamp with edited notes skipped validation"
    assert SKIPPED not in err and f"{stamp} {DIGEST}" in err, err
    assert ds.validation_stamp == good


@fault(cls="damaged run folder", case="a version 1 validation.json (no digest, no notes): validated again "
       "with nothing to say (an older stamp, not a damaged one)")
def test_an_older_stamp_validates_again_without_a_note(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    v1 = {k: v for k, v in good.items() if k not in ("digest", "notes", "notes_left")}
    stamp.write_text(json.dumps({**v1, "version": 1}))
    capsys.readouterr()
    _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full", "full"], "a version 1 stamp skipped validation"
    assert SKIPPED not in err and DIGEST not in err, err


@fault(cls="damaged run folder", case="a validation.json whose notes are {case} (its digest recomputed): "
       "ignored, the dataset validated (no traceback)")
@pytest.mark.parametrize("case, field", [
    ("notes=[1, 2]", {"notes": [1, 2]}), ("notes='abc'", {"notes": "abc"}),
    ("notes_left=-1", {"notes_left": -1}), ("notes_left=true", {"notes_left": True}),
    ("notes_left='3'", {"notes_left": "3"})],
    ids=["notes_ints", "notes_str", "notes_left_negative", "notes_left_bool", "notes_left_str"])
def test_a_stamp_with_notes_of_wrong_types_validates_again(tmp_path, streets, validations, capsys, case, field):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    _forged(stamp, good, **field)   # its own digest matches: the notes' checks decide
    capsys.readouterr()
    ds = _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full", "full"], f"a stamp with {case} skipped validation"
    assert SKIPPED not in err and DIGEST not in err, err
    assert ds.validation_stamp == good


@fault(cls="damaged run folder", case="a validation.json rewritten with its keys sorted and indented (the same "
       "content): still skips validation (the digest is over canonical JSON, not the file's bytes)")
def test_a_reformatted_stamp_still_skips(tmp_path, streets, validations, capsys):
    stamp = tmp_path / "validation.json"
    good = _stamped(streets, stamp).validation_stamp
    text = json.dumps(good, sort_keys=True, indent=2)
    assert text != json.dumps(good)
    stamp.write_text(text)
    capsys.readouterr()
    _open(streets, stamp)
    err = capsys.readouterr().err
    assert validations == ["full"], "a reformatted stamp of the same content validated again"
    assert DIGEST not in err, err


# --- _kept_notes ----------------------------------------------------------------------------------

def test_kept_notes_keeps_lines_up_to_the_limit_exactly(monkeypatch):
    """STAMP_NOTE_CHARS counts each kept line and the newline between two: 4 + 1 + 5 = 10 fits 10."""
    monkeypatch.setattr(dsmod, "STAMP_NOTE_CHARS", 10)
    assert dsmod._kept_notes(["aaaa\nbbbbb"]) == {"notes": ["aaaa", "bbbbb"], "notes_left": 0}
    assert dsmod._kept_notes(["aaaa\nbbbbbb"]) == {"notes": ["aaaa"], "notes_left": 1}
    assert dsmod._kept_notes(["aaaa", "bbbbb"]) == {"notes": ["aaaa", "bbbbb"], "notes_left": 0}
    assert dsmod._kept_notes(["aaaaaaaaaaa", "b"]) == {"notes": [], "notes_left": 2}

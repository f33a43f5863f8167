"""scripts/fault_table.py: its pytest plugin records each fault marker of each test that ran with
that test's outcome, and the page it writes lists exactly those rows. Run on a tiny test file of
its own (a pass, a failure, a skip, a parametrised case, an unmarked test, a deselected one) in
this process: a few seconds, no torch."""
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ft():
    spec = importlib.util.spec_from_file_location("fault_table", REPO / "scripts" / "fault_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SAMPLE = '''
import pytest

@pytest.mark.fault(cls="bad dataset", case="a file that holds")
def test_holds():
    assert 1 + 1 == 2

@pytest.mark.fault(cls="bad dataset", case="a file that breaks")
@pytest.mark.fault(cls="path tricks", case="a | in a case")
def test_breaks():
    assert 1 + 1 == 3

@pytest.mark.fault(cls="synthesis", case="needs a GPU")
def test_skipped():
    pytest.skip("no GPU here")

@pytest.fixture()
def broken():
    raise RuntimeError("fixture fails")

@pytest.mark.fault(cls="synthesis", case="a fixture that fails")
def test_errors(broken):
    pass

@pytest.mark.parametrize("how", ["missing", "truncated"])
@pytest.mark.fault(cls="damaged run folder", case="config.json {how} ({id}, {how!r})")
def test_param(how):
    assert how != "truncated"

def test_unmarked():
    pass

@pytest.mark.fault(cls="bad dataset", case="deselected by -k")
def test_left_out():
    pass
'''


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    fault(cls, case): a fault case\n")
    f = tmp_path / "test_sample_faults.py"
    f.write_text(textwrap.dedent(body))
    return f


def _run(ft, tmp_path: Path, f: Path, *more: str):
    sys.modules.pop(f.stem, None)   # each test writes its own file under the same module name
    return ft.run_fault_tests([str(f), "-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"),
                               "--rootdir", str(tmp_path), *more])


def test_rows_are_the_markers_of_the_tests_that_ran_with_their_outcomes(ft, tmp_path):
    f = _write(tmp_path, SAMPLE)
    rc, rows = _run(ft, tmp_path, f, "-k", "not left_out")
    assert rc == 1   # a test failed: pytest's status is passed on
    got = {(cls, case): (test.split("::")[1], outcome) for cls, case, test, outcome in rows}
    assert got == {
        ("bad dataset", "a file that holds"): ("test_holds", "passed"),
        ("bad dataset", "a file that breaks"): ("test_breaks", "failed"),
        ("path tricks", "a | in a case"): ("test_breaks", "failed"),
        ("synthesis", "needs a GPU"): ("test_skipped", "skipped (no GPU here)"),
        ("synthesis", "a fixture that fails"): ("test_errors", "error (in setup)"),
        ("damaged run folder", "config.json missing (missing, 'missing')"): ("test_param[missing]", "passed"),
        ("damaged run folder", "config.json truncated (truncated, 'truncated')"):
            ("test_param[truncated]", "failed"),
    }
    # two markers on one test: file order
    assert [case for _, case, test, _ in rows if test.endswith("test_breaks")] == ["a file that breaks",
                                                                                     "a | in a case"]


def test_the_page_lists_the_rows_with_counts(ft, tmp_path):
    f = _write(tmp_path, SAMPLE)
    _, rows = _run(ft, tmp_path, f)
    out = tmp_path / "docs" / "reliability.md"
    summary = ft.write_table(rows, "python scripts/fault_table.py -- -k sample", out, 90.0)
    assert summary == "8 fault cases in 4 classes: 3 passed, 3 failed, 1 error, 1 skipped"
    page = out.read_text()
    assert f"**{summary}.**" in page and "python scripts/fault_table.py -- -k sample" in page
    assert "1.5 min" in page
    # per class, in the script's class order: bad dataset (3: 2 passed, 1 failed) before path tricks
    assert "| bad dataset | 3 | 2 passed, 1 failed |" in page
    assert "| damaged run folder | 2 | 1 passed, 1 failed |" in page
    assert "| synthesis | 2 | 1 error, 1 skipped |" in page
    assert page.index("| bad dataset | 3 |") < page.index("| damaged run folder | 2 |") < \
        page.index("| path tricks | 1 |") < page.index("| synthesis | 2 |")
    # every case once, with its outcome and test; a | in a case is escaped
    case_rows = [ln for ln in page.splitlines() if ln.startswith("| ") and "`" in ln]
    assert len(case_rows) == 8
    assert "| path tricks | a \\| in a case | failed | `test_sample_faults.py::test_breaks` |" in page
    assert ("| synthesis | needs a GPU | skipped (no GPU here) | `test_sample_faults.py::test_skipped` |"
            in page)
    assert "| bad dataset | deselected by -k | passed | `test_sample_faults.py::test_left_out` |" in page
    assert "test_unmarked" not in page


def test_the_whole_run_lists_the_marked_tests_only(ft, tmp_path):
    # --all runs every test: the unmarked one runs, the table still lists fault markers only
    f = _write(tmp_path, SAMPLE)
    _, rows = _run(ft, tmp_path, f)
    assert len(rows) == 8 and not any(test.endswith("test_unmarked") for *_, test, _ in rows)
    _, rows = _run(ft, tmp_path, f, "-m", "fault")
    assert len(rows) == 8


@pytest.mark.parametrize("marker", ['cls="x", case="{nope}"', 'cls="x"', '"x", "y"'])
def test_a_marker_that_cannot_be_read_stops_the_run(ft, tmp_path, marker, capsys):
    f = _write(tmp_path, f"""
        import pytest

        @pytest.mark.fault({marker})
        def test_one():
            pass
        """)
    rc, rows = _run(ft, tmp_path, f)
    assert rc == pytest.ExitCode.USAGE_ERROR and rows == []
    assert "test_sample_faults.py::test_one" in capsys.readouterr().err

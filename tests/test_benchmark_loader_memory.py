"""benchmarks/loader_memory.py at a tiny size (200 samples, 1 worker, a few batches): the table and
the JSON record have their fields, every memory figure is positive, the workers were measured as
forks (their private memory is a fraction of their RSS), and the dataset of hard links it builds
is reused by a later run. No figure is compared with another mode's: at this size
the records are a few pages either way. A stop while it measures (SIGTERM, Ctrl-C) ends it with one
line and the stop's status, leaving no process and no temporary dataset; --unique defaults to at
most --n."""
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from benchmarks import loader_memory as LM
from tests.bounded import descendant_parents

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"),
                                reason="no /proc/PID/smaps_rollup here (Linux 4.14 or later): the "
                                       "benchmark reads the workers' memory from it")


def test_rows_fields_positive_and_json_written(tmp_path, capsys):
    out = tmp_path / "m.json"
    data = tmp_path / "data"
    assert LM.main(["--n", "200", "--workers", "1", "--batches", "3", "--records", "compact",
                    "--data", str(data), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "made 200 samples" in text and "USS 1st batch" in text and f"wrote {out}" in text
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "loader_memory" and "--n 200" in rec["command"]
    assert (rec["n"], rec["workers"], rec["batches"], rec["validate"]) == (200, 1, 3, "off")
    assert rec["device"]["device"] == "cpu" and rec["device"]["torch"], rec["device"]   # what it ran on
    assert [(r["records"], r["worker"]) for r in rec["rows"]] == [("compact", 0)]
    r = rec["rows"][0]
    for k in ("parent_rss_mib_before_fork", "parent_rss_mib", "uss_mib_first_batch", "uss_mib",
              "pss_mib", "rss_mib"):
        assert r[k] > 0, (k, r)
    # a fork shares the parent's pages (torch, the dataset): a spawned worker (the start method a
    # spawned measuring process would pass on) holds most of its RSS privately
    assert r["uss_mib"] < r["rss_mib"] / 2 and r["pss_mib"] < r["rss_mib"], r
    d = data / "tiny_8px_200_4u"
    assert os.stat(d / "train_img" / "s000150.png").st_nlink > 1   # hard links, taken by the dataset
    assert LM.ensure_data(data, 200, 4) == d and "made" not in capsys.readouterr().out   # reused


def test_unique_defaults_to_at_most_n_and_a_given_one_is_still_checked():
    a = LM.parse_args(["--n", "3", "--batch_size", "2"])   # the walkthrough's "--unique 4: ... at most --n 3"
    assert (a.n, a.unique) == (3, 3)
    assert LM.parse_args([]).unique == 4
    with pytest.raises(LM.ConfigError, match=r"--unique 4: expected at most --n 3"):
        LM.parse_args(["--n", "3", "--batch_size", "2", "--unique", "4"])


def _cmdline(pid: int) -> str | None:
    """``pid``'s command line; None once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of ``pid``'s children, their children, and so on (/proc)."""
    found = {}
    for p, parent in descendant_parents(pid).items():
        cmd = _cmdline(p)
        if cmd is not None:
            found[p] = (parent, cmd)
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie left to pid 1 has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.fault(cls="interrupted run",
                   case="benchmarks/loader_memory.py stopped while it measures ({how}): one 'stopped by' line, "
                        "status {status}, no traceback, the measuring process and its loader worker ended, the "
                        "temporary dataset removed")
@pytest.mark.parametrize("how, status", [("SIGTERM to the script", 75), ("Ctrl-C: SIGINT to its process group", 130)],
                         ids=["sigterm", "ctrl-c"])
def test_a_stop_while_measuring_leaves_no_process_no_dataset_and_one_line(tmp_path, request, how, status):
    script = Path(LM.__file__)
    # the temporary dataset's parent (tempfile reads TMPDIR): a short path, as a machine's TMPDIR is,
    # since the loader's worker makes a Unix socket there (108 bytes at most: tmp_path under an
    # xdist worker's folder is longer, and the socket then cannot be made)
    tmp = Path(tempfile.mkdtemp(prefix="lm", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    env.pop("PIX2PIXHD_DEBUG", None)
    err_file = tmp_path / "stderr"   # a file, not a pipe: a process left running would hold a pipe open
    with open(err_file, "w") as err_f:
        proc = subprocess.Popen([sys.executable, str(script), "--n", "2000", "--batches", "100000", "--workers",
                                 "1", "--records", "compact"], cwd=script.parents[1], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=err_f)
    seen: dict[int, tuple[int, str]] = {}
    try:
        deadline, worker = time.monotonic() + 120, False   # the measuring process imports torch, then forks
        while not worker and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            now = _descendants(proc.pid)
            seen.update(now)
            # the loader's worker: a fork of the measuring (spawned) process, not a child of the script
            worker = any(parent != proc.pid and "spawn_main" in cmd for parent, cmd in now.values())
        assert proc.poll() is None, f"the benchmark ended before it was stopped: {err_file.read_text()}"
        assert worker, f"no loader worker within 120 s: {seen}"
        seen.update(_descendants(proc.pid))
        if status == 75:
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)   # what a terminal sends on Ctrl-C
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_running(pid) for pid in seen):
            time.sleep(0.2)
        left = {pid: cmd for pid, (_, cmd) in seen.items() if _running(pid)}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in seen:   # this test's own processes, left by a failure: not left running
            if _running(pid) and _cmdline(pid) == seen[pid][1]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    err = err_file.read_text()
    assert proc.returncode == status, (proc.returncode, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped by SIG") and f"exit status {status}" in lines[0], err
    assert "Traceback" not in err
    assert not left, f"processes left running after the stop: {left}"
    assert list(tmp.iterdir()) == [], f"the temporary dataset was left: {list(tmp.iterdir())}"


def test_a_dropped_connection_in_a_worker_thread_prints_nothing_else_does(capsys):
    """The measuring process's and its workers' sys.excepthook (set before the workers fork): a
    connection the stopped measuring process dropped (resource_sharer's serving thread reports it
    through sys.excepthook) prints no traceback under the stop line; any other error still prints."""
    for err in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(32, "Broken pipe"),
                EOFError()):
        LM._quiet_dropped_connections(type(err), err, None)
    assert capsys.readouterr().err == ""
    try:
        raise ValueError("a real error")
    except ValueError as e:
        LM._quiet_dropped_connections(type(e), e, e.__traceback__)
    assert "ValueError: a real error" in capsys.readouterr().err

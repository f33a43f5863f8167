"""tests/bounded.py: a command that hangs fails the test with the stacks of every process it started."""
import sys
import time

import pytest

from tests.bounded import descendants, run_bounded

HANGS = ("import subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-c', 'import time\\ndef waits_in_the_child():\\n"
         "    time.sleep(300)\\nwaits_in_the_child()'], start_new_session=True)\n"
         "def waits_in_the_parent():\n    time.sleep(300)\n"
         "waits_in_the_parent()\n")


def test_a_hang_fails_with_the_stacks_of_the_command_and_of_its_children_then_leaves_none_running():
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as e:
        run_bounded([sys.executable, "-c", HANGS], timeout=3)
    said = str(e.value)
    assert "ran past its 3 s limit" in said
    assert "waits_in_the_parent" in said and "waits_in_the_child" in said   # a session of its own too
    assert said.count("threads (name:wchan): python:") == 2   # the command and its child
    assert time.monotonic() - t0 < 30


def test_a_command_within_its_limit_is_subprocess_run():
    p = run_bounded([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                    timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert descendants(2 ** 22 + 7) == []   # no such process: nothing below it

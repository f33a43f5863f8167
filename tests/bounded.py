"""A subprocess run with a time limit that, when a command hangs, says where: every process it
started (torchrun's agent, its ranks, their DataLoader workers) prints its threads' Python stacks
before it is killed. subprocess.run's own timeout killed torchrun's agent only, and the test's
failure showed the command line and nothing of where it had stopped (CI, 2026-12-08: a two-rank
synthesis that takes seconds ran into its 240 s limit once, with no trace of the cause)."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def descendant_parents(pid: int) -> dict[int, int]:
    """{pid: its parent's pid} of every live process below ``pid`` (its children, theirs...), read
    from /proc: torchrun starts each rank in a session of its own, so a process group does not
    reach them."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])   # the name in (...) may hold spaces
        children.setdefault(ppid, []).append(int(d.name))
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for c in children.get(parent, ()):
            found[c] = parent
            todo.append(c)
    return found


def descendants(pid: int) -> list[int]:
    """The pids of :func:`descendant_parents`."""
    return list(descendant_parents(pid))


def threads_waiting(pids) -> str:
    """For each process, one line: its pid, state and command, then each thread's name and the
    kernel function it waits in (/proc/PID/task/TID/wchan): what faulthandler's Python frames
    do not say (a futex of a lock held across a fork, a pipe, a socket)."""
    lines = []
    for pid in pids:
        d = Path(f"/proc/{pid}")
        try:
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
            tasks = []
            for t in sorted((d / "task").iterdir(), key=lambda p: int(p.name)):
                try:
                    tasks.append(f"{(t / 'comm').read_text().strip()}:{(t / 'wchan').read_text().strip() or '-'}")
                except OSError:
                    pass
        except OSError:
            continue
        lines.append(f"{pid} {state} {cmd}\n    threads (name:wchan): {' '.join(tasks)}")
    return "\n".join(lines)


def _signal_all(pids, sig) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def run_bounded(cmd: list[str], *, timeout: float, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)`` that fails the test
    past ``timeout`` seconds with the stacks of every process ``cmd`` started: they run with
    PYTHONFAULTHANDLER=1, and at the limit each thread's wait in the kernel is read
    (:func:`threads_waiting`), then each process gets SIGABRT (faulthandler prints all its
    threads, then the process ends), then SIGKILL for any still alive 15 s later."""
    env = dict(os.environ if env is None else env, PYTHONFAULTHANDLER="1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = descendants(p.pid)
        waits = threads_waiting([p.pid, *tree])
        _signal_all(reversed(tree), signal.SIGABRT)   # the workers and ranks first, the agent last
        time.sleep(1.0)
        _signal_all([p.pid], signal.SIGABRT)
        try:
            out, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            _signal_all([p.pid, *descendants(p.pid), *tree], signal.SIGKILL)
            out, err = p.communicate()
        pytest.fail(f"{' '.join(map(str, cmd))}\nran past its {timeout:g} s limit; the stacks of its processes "
                    f"(SIGABRT under PYTHONFAULTHANDLER) follow.\n--- stdout ---\n{out[-3000:]}\n"
                    f"--- where each thread waited ---\n{waits}\n--- stderr ---\n{err[-20000:]}", pytrace=False)
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)

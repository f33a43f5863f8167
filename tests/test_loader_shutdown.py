"""A DataLoader worker SIGKILLed (the out-of-memory killer) while it held the lock of the event
torch's shutdown sets (every worker checks it in its loop) made that shutdown wait for ever: a
training run that had saved latest.pt hung at its end (a full-suite run met it). The lock held
by a dead process is modelled here by holding it in this one."""
import os
import signal
import threading

import pytest
import torch

from pix2pixhd.data.loader import create_dataloader, shutdown_workers


class _Ten(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"x": torch.tensor([i])}


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker killed holding the lock of torch's shutdown event: the "
                        "workers are still shut down, no hang")
def test_shutdown_after_a_worker_died_holding_the_done_events_lock_does_not_hang():
    """The workers still alive are killed at once, not waited for (``timeout`` each): told
    nothing (the event is one of this process's own now), they would run until then. Built as
    training and synthesis build theirs (workers that ignore SIGTERM)."""
    loader = create_dataloader(_Ten(), 1, shuffle=False, num_workers=2, pin_memory=False, ignore_stops=True)
    it = iter(loader)
    next(it)
    workers = list(it._workers)
    event = it._workers_done_event
    assert event._cond.acquire(timeout=10)          # as a worker that died inside event.is_set()
    torchs = signal.signal(signal.SIGCHLD, lambda signum, frame: None)   # no death raised here
    try:
        os.kill(workers[0].pid, signal.SIGKILL)
        os.waitid(os.P_PID, workers[0].pid, os.WEXITED | os.WNOWAIT)
    finally:
        signal.signal(signal.SIGCHLD, torchs)
    done = threading.Event()
    t = threading.Thread(target=lambda: (shutdown_workers(loader, timeout=60), done.set()), daemon=True)
    t.start()
    try:
        assert done.wait(20), "shutdown_workers waited on the dead worker's lock, or on a live worker"
        assert not any(w.is_alive() for w in workers) and loader._iterator is None
    finally:
        event._cond.release()                       # a failed run's thread may go on
        t.join(10)


@pytest.mark.fault(cls="interrupted run",
                   case="a DataLoader worker killed, then the loader shut down from the main thread: "
                        "no dead worker's error out of the shutdown itself")
def test_shutdown_after_a_worker_died_raises_no_worker_error(monkeypatch):
    """shutdown_workers kills the workers still alive when one has died; torch's SIGCHLD handler
    (run in the main thread, wherever it is) raised the dead worker's error out of that shutdown,
    which a run calls after it has saved or on its way out (the test above met it on a loaded
    machine). torch's own shutdown stops watching its workers' pids first; so does this one now.
    When the handler runs depends on the scheduler: here it runs at every kill, as it may."""
    from torch.utils.data._utils.signal_handling import _error_if_any_worker_fails
    loader = create_dataloader(_Ten(), 1, shuffle=False, num_workers=2, pin_memory=False)
    it = iter(loader)
    next(it)
    workers = list(it._workers)
    torchs = signal.signal(signal.SIGCHLD, lambda signum, frame: None)   # not raised at the kill
    try:
        os.kill(workers[0].pid, signal.SIGKILL)
        os.waitid(os.P_PID, workers[0].pid, os.WEXITED | os.WNOWAIT)
    finally:
        signal.signal(signal.SIGCHLD, torchs)
    kill = type(workers[1]).kill

    def kill_and_handle(self):
        kill(self)
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)   # dead, not yet reaped by a join
        _error_if_any_worker_fails()   # what torch's SIGCHLD handler does then
    monkeypatch.setattr(type(workers[1]), "kill", kill_and_handle)
    shutdown_workers(loader, timeout=5)   # raised "DataLoader worker (pid N) is killed by signal: Killed"
    assert not any(w.is_alive() for w in workers) and loader._iterator is None

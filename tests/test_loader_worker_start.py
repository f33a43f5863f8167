"""A SIGTERM or SIGINT that reaches a DataLoader worker while it starts (GNU timeout or scancel
firing as a run's workers are forked; a sibling worker's signal to the process group) killed it,
where create_dataloader(ignore_stops=True) promises workers that ignore both: torch installs a
SIGTERM handler of its own in every worker (it dies of a SIGTERM that the loader's process did not
send) before the loader's worker_init_fn runs, and SIGINT's handler is the parent's until then.
The stop then came out as "DataLoader worker (pid N) is killed by signal: Terminated", read as an
out-of-memory kill (tests/test_features_sigterm.py met it on a loaded machine). The window is
made certain here: the worker signals itself inside it (WorkerInfo is built between torch's
handlers and worker_init_fn)."""
import os
import signal

import pytest
import torch
import torch.utils.data._utils.worker as torch_worker

from pix2pixhd.data.loader import create_dataloader, shutdown_workers


class _Six(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, key):   # (index, epoch), from the loader's ResumableSampler
        return {"x": torch.tensor([key[0]])}


@pytest.mark.fault(cls="interrupted run",
                   case="SIGTERM or SIGINT reaching a DataLoader worker as it starts (before its "
                        "worker_init_fn): the worker lives, and ignores it")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_a_worker_starts_does_not_kill_it(monkeypatch, signum):
    parent = os.getpid()

    class SignalledWorkerInfo(torch_worker.WorkerInfo):
        def __init__(self, **kw):
            if os.getpid() != parent:   # in the worker, after torch's handlers, before worker_init_fn
                os.kill(os.getpid(), signum)
            super().__init__(**kw)
    monkeypatch.setattr(torch_worker, "WorkerInfo", SignalledWorkerInfo)
    loader = create_dataloader(_Six(), 2, shuffle=False, num_workers=2, pin_memory=False, ignore_stops=True)
    try:
        got = [v for batch in loader for v in batch["x"].flatten().tolist()]
        workers = list(loader._iterator._workers)
        assert all(w.is_alive() for w in workers), [w.exitcode for w in workers]
    finally:
        shutdown_workers(loader)
    assert got == list(range(6))

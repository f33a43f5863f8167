"""Test-wide setup: Triton kernels run through the interpreter on machines without a GPU.

TRITON_INTERPRET must be set before any kernel module is imported (triton.jit reads it when the
kernel is defined), hence here, before the test modules import pix2pixhd. With a CUDA device the
same kernel tests run compiled, and the tests marked ``cuda`` (real network shapes, the Trainer on
the GPU) run too; without one those are skipped with a reason saying so.
"""
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Two threads, or one per pytest-xdist worker (``-n N``: the workers share the cores)
# (the cores this process may run on, as scripts/test.sh counts them: a cpuset-limited container
# has fewer than os.cpu_count())
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
torch.set_num_threads(max(1, min(2, _CORES // _WORKERS)))
_DETERMINISTIC_AT_START = (torch.are_deterministic_algorithms_enabled(),
                           torch.is_deterministic_algorithms_warn_only_enabled())


@pytest.fixture(autouse=True)
def _debug_env_restored():
    """errors.run(..., ["--debug"]) sets PIX2PIXHD_DEBUG=1 for the process (and its children, on
    purpose); left set, every later test's subprocess would print tracebacks instead of its one
    error line."""
    before = os.environ.get("PIX2PIXHD_DEBUG")
    yield
    if before is None:
        os.environ.pop("PIX2PIXHD_DEBUG", None)
    else:
        os.environ["PIX2PIXHD_DEBUG"] = before


@pytest.fixture(autouse=True)
def _deterministic_algorithms_restored():
    """A Trainer with --deterministic switches torch.use_deterministic_algorithms on for the
    process and leaves it on (as a training script would); left on, a later test's 'auto' norm
    chooser never measures (it takes native unmeasured under deterministic algorithms). Put back
    to the session's start after every test, since module fixtures (a training run shared by a
    module's tests) switch it on before any test's own fixture could note the state."""
    yield
    if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != \
            _DETERMINISTIC_AT_START:
        torch.use_deterministic_algorithms(_DETERMINISTIC_AT_START[0], warn_only=_DETERMINISTIC_AT_START[1])


@pytest.fixture(autouse=True)
def _stop_signals_restored():
    """SIGINT's and SIGTERM's handlers and the signal mask are as they were after every test: one
    left ignored or blocked is inherited by every later subprocess of the same worker (and the
    in-process stops of later tests never come), so the tests of other files that stop a run fail,
    far from the cause. A test that leaves them changed errors at teardown, naming them; they are
    put back first so the rest of the session is not affected."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    before = ({s: signal.getsignal(s) for s in stops}, signal.pthread_sigmask(signal.SIG_BLOCK, []))
    yield
    after = ({s: signal.getsignal(s) for s in stops}, signal.pthread_sigmask(signal.SIG_BLOCK, []))
    if after != before:
        for s, h in before[0].items():
            signal.signal(s, signal.SIG_DFL if h is None else h)   # None: a handler not set from Python
        signal.pthread_sigmask(signal.SIG_SETMASK, before[1])
        pytest.fail(f"the test left the stop signals changed: handlers and mask {after}, were {before}")


@pytest.fixture
def one_thread():
    """Opt-in (``pytestmark = pytest.mark.usefixtures("one_thread")``): torch on one thread for
    the test, the previous count restored after. Tiny networks: one thread is fastest, and on a
    loaded machine two spinning threads per op are many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_configure(config):
    # The stop tests send SIGINT as a terminal's Ctrl-C does. A suite started in the background
    # by a non-interactive shell (`cmd &`, `nohup`) inherits SIGINT ignored, and the project keeps
    # a signal ignored on entry ignored (as nohup means), so in-process SIGINTs and every test's
    # subprocess would ignore them, and those tests fail. The suite is a foreground run's whatever
    # started it: SIGINT gets Python's default handler here (in each xdist worker too), and
    # subprocesses inherit the default disposition.
    import signal
    import threading
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers", "cuda: runs the Triton kernels compiled on a CUDA device (skipped without one)")
    config.addinivalue_line(
        "markers", "fault(cls, case): the test tries fault case `case` of fault class `cls` ({name} "
        "in `case` is the test's parameter `name`, {id} its parameter id); scripts/fault_table.py "
        "runs them all and writes docs/reliability.md")


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False here): "
                                   "runs the Triton kernels compiled, not interpreted")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)

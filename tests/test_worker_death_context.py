"""A dead loader worker's error met inside another handler. torch's SIGCHLD handler raises its
RuntimeError ("DataLoader worker (pid N) is killed by signal: Killed.") wherever the main thread
is; a fresh-clone CI run met it inside ``threading.Thread.start`` (the engine starting a writer
thread), whose own ``except`` then failed with ``KeyError: <Thread(synth-writer_0, ...)>``, so
synthesize.py printed that traceback instead of its one line. The error's chain is searched,
whatever its type."""
import pytest

from pix2pixhd import engine, errors

KILLED = "DataLoader worker (pid 4242) is killed by signal: Killed. "


def _raised_while_handling(first: BaseException, then: BaseException) -> BaseException:
    """``then`` raised inside the handler of ``first`` (its __context__), as Thread.start does."""
    try:
        try:
            raise first
        except type(first):
            raise then
    except type(then) as e:
        return e


@pytest.mark.fault(cls="synthesis", case="a loader worker killed while a writer thread starts (the stdlib's "
                   "Thread.start fails with KeyError during torch's error): synthesis's one line, not a traceback")
def test_the_engine_finds_a_dead_worker_in_the_context_of_another_error():
    e = _raised_while_handling(RuntimeError(KILLED), KeyError("<Thread(synth-writer_0, stopped 1)>"))
    err = engine._worker_death_error(e)
    assert isinstance(err, engine.LoaderWorkerDiedError), repr(err)
    assert str(err).startswith("a data loader worker (pid 4242) was killed by signal: Killed")
    assert str(err).endswith("; rerun the same command to resume the job"), str(err)
    other = KeyError("nothing to do with a worker")
    assert engine._worker_death_error(other) is other


@pytest.mark.fault(cls="interrupted run", case="a loader worker killed while the main thread was in another "
                   "handler (the error a KeyError with torch's as its context): one error line, status 1")
def test_an_entry_point_says_one_line_for_a_dead_worker_in_the_context_of_another_error(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    e = _raised_while_handling(RuntimeError(KILLED), KeyError("<Thread(Thread-3, stopped 1)>"))

    def main(argv):
        raise e

    assert errors.run(main, []) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a data loader worker (pid 4242) was killed"), lines

    def plain(argv):   # an error of ours without a dead worker in its chain: its traceback, as before
        raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        errors.run(plain, [])

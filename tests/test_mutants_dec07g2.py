"""Tests that kill the mutants MUT4 found surviving in today's engine, trainer and errors changes:
the compact partner index (_Index), hash set (_HashSet) and manifest scan (_Done, hash collisions
and null outputs), the to-do list gathered from every rank (_todo_of_all_ranks), NFC partner keys,
--dataroot manifest keys, the epoch bar a stop leaves on a terminal, and the one-line errors of a
full /dev/shm and of a peer rank gone. Each was seen failing under its mutant."""
import json
from pathlib import Path

import pytest

from pix2pixhd import distributed, engine, errors, trainer
from pix2pixhd.cli import synthesize_main
from pix2pixhd.errors import InputError
from tests.synthesis_runs import run  # noqa: F401  (a fixture)
from tests.test_synthesis_user_findings import ids
from tests.test_worker_death_context import _raised_while_handling

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


SHM = "unable to allocate shared memory(shm) for file </torch_123_456_0>: Success (28)"


# ---- _Index, _HashSet -------------------------------------------------------------------------------
def test_the_partner_index_finds_its_keys_and_only_them():
    idx = engine._Index({"a-b": Path("r/a-b.png"), "a": Path("r/a.png"), "a b": Path("r/a b.png")})
    assert len(idx) == 3
    assert idx.get("a") == Path("r/a.png"), idx.get("a")
    assert idx.get("a b") == Path("r/a b.png") and idx.get("a-b") == Path("r/a-b.png")
    assert idx.get("0") is None, idx.get("0")       # before every key
    assert idx.get("zz") is None, idx.get("zz")     # after every key
    assert idx.get("a c", "none") == "none"
    assert engine._Index(None).get("a") is None


def test_the_hash_set_holds_its_names_only(monkeypatch):
    s = engine._HashSet(["a"])
    assert "a" in s
    assert "b" not in s
    assert "a" not in engine._HashSet()
    # the same with hashes fixed (the process's own are salted per run): a name whose hash sorts
    # before the member's, and one after every member's
    fixed = {"a": 5, "b": 3, "c": 9}
    monkeypatch.setattr(engine, "hash", fixed.__getitem__, raising=False)
    s = engine._HashSet(["a"])
    assert "a" in s
    assert "b" not in s, "a name whose hash sorts before the member's counts as a member"
    assert "c" not in s, "a name whose hash sorts after every member's counts as a member"


# ---- _Done ------------------------------------------------------------------------------------------
def _value(n):
    return [n, [["m.png", n, n]], [], None]


def _as_read(n):
    return n, [["m.png", n, n]], (), None


@pytest.mark.fault(cls="synthesis", case="a rerun's manifest holding several ok lines with a null output: "
                   "one key, as the dict it replaces")
def test_null_output_lines_count_once():
    done = engine._Done()
    done.add(None, _value(1))
    done.add("x.png", _value(2))
    done.add(None, _value(3))
    done.freeze()
    assert len(done) == 2, f"len {len(done)} for one named output and two null-output lines"
    assert done.get(None) == _value(3)   # kept as added: the last null-output line's
    assert done.pop(None) == _value(3) and len(done) == 1
    assert done.get(None, "gone") == "gone", done.get(None, "gone")   # as the engine asks: get with a default


@pytest.mark.fault(cls="synthesis", case="outputs whose names' hashes collide in a rerun's manifest scan: each "
                   "output's last line, none lost")
def test_outputs_whose_hashes_collide_keep_their_own_last_line(monkeypatch):
    monkeypatch.setattr(engine, "hash", lambda s: 7, raising=False)   # every name collides
    done = engine._Done()
    for name, n in (("x", 1), ("y", 2), ("x", 3)):
        done.add(name, _value(n))
    done.freeze()
    assert len(done) == 2, f"len {len(done)} for the 2 outputs x and y"
    assert done.get("x") == _as_read(3), done.get("x")
    assert done.get("y") == _as_read(2), done.get("y")
    assert done.get("z", "absent") == "absent", done.get("z", "absent")   # a name of the hash, not added
    assert done.pop("x") == _as_read(3) and done.get("x") is None and done.get("y") == _as_read(2)
    assert len(done) == 1


# ---- _todo_of_all_ranks -----------------------------------------------------------------------------
@pytest.mark.fault(cls="synthesis", case="under torchrun, a rerun whose ranks each hold some of an input's "
                   "samples to do: the job's list in input order with every rank's partial inputs")
def test_the_ranks_todo_lists_merge_in_input_order_with_their_partial_inputs(monkeypatch):
    K = 2
    mine = engine._Todo([(0, [0, 1]), (2, [1])], K)
    theirs = engine._Todo([(1, [0, 1]), (3, [0, 1])], K)

    def gather_all(obj, info):   # rank 0's view: its own, then rank 1's (as pickled over the wire)
        import pickle
        return [obj, pickle.loads(pickle.dumps((theirs._i, theirs._some, 5)))]

    monkeypatch.setattr(distributed, "gather_all", gather_all)
    todo, already = engine._todo_of_all_ranks(mine, 4, K, info=None)
    assert [(i, ks) for i, ks in todo] == [(0, [0, 1]), (1, [0, 1]), (2, [1]), (3, [0, 1])], list(todo)
    assert todo.units() == 7, todo.units()
    assert already == 9
    assert list(todo.inputs()) == [0, 1, 2, 3]


# ---- FolderSource's NFC partner keys, DatasetSource's keys -------------------------------------------
def _args(run, inp, out, *extra):
    return ["--checkpoint", str(run), "--input", str(inp), "--out", str(out), "--device", "cpu",
            "--no_progress", "--workers", "0", *map(str, extra)]


@pytest.mark.fault(cls="synthesis", case="an NFD-named label map with an NFC-named --real photo of another "
                   "size: found, and refused for its size")
def test_nfd_label_maps_pair_with_nfc_real_photos(run, tmp_path):
    from tests.test_synthesis_user_findings import photo
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    ids(tmp_path / "maps" / f"{nfd}.png", h=32, w=32)
    photo(tmp_path / "real" / f"{nfc}.png", h=16, w=16)
    with pytest.raises(InputError, match="is 16x16 but its label map"):
        synthesize_main(_args(run, tmp_path / "maps", tmp_path / "out", "--real", tmp_path / "real"))


def test_a_dataroot_synthesis_keys_its_outputs_by_the_path_under_the_root(tmp_path):
    from pix2pixhd.datasets.synthetic_streets import generate
    from tests.test_synthesis_engine import save_run
    root = tmp_path / "data"
    generate(root, n_train=0, n_test=2, width=64, height=32, seed=0)
    save_run(tmp_path / "run")
    assert synthesize_main(["--checkpoint", str(tmp_path / "run"), "--dataroot", str(root), "--out",
                            str(tmp_path / "out"), "--device", "cpu", "--no_progress", "--workers", "0"]) == 0
    lines = [json.loads(s) for s in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    ok = [rec for rec in lines if rec.get("status") == "ok"]
    names = sorted(p.name for p in (root / "test_label").iterdir())
    assert sorted(rec["key"] for rec in ok) == [f"test_label/{n}" for n in names], [rec["key"] for rec in ok]


# ---- the trainer's epoch bar after a stop -------------------------------------------------------------
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from pix2pixhd.datasets.synthetic_streets import generate
    root = tmp_path_factory.mktemp("streets1")
    generate(root, n_train=1, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.fixture(scope="module")
def streets(tmp_path_factory):
    from pix2pixhd.datasets.synthetic_streets import generate
    root = tmp_path_factory.mktemp("streets2")
    generate(root, n_train=2, n_test=0, width=64, height=32, seed=0)
    return root


@pytest.mark.fault(cls="interrupted run", case="--max_steps stopping on the last step of an epoch that is not "
                   "the run's last: the epoch's bar stays on the terminal")
def test_a_max_steps_stop_at_an_epochs_end_keeps_its_bar(tmp_path, scene, monkeypatch):
    from tests.test_trainer_epoch_loop import _bars, _cfg, _Terminal
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    trainer.Trainer(_cfg(tmp_path, scene, no_progress=False, niter=4, max_steps=2)).fit()
    bars = _bars(term.getvalue())
    assert len(bars) == 1 and "epoch 2/4" in bars[0], f"bars left on the screen after --max_steps 2: {bars}"


@pytest.mark.fault(cls="interrupted run", case="SIGTERM mid-epoch on a terminal: the epoch's bar stays on the "
                   "screen above the stop's line")
def test_a_sigterm_stop_keeps_the_epochs_bar(tmp_path, streets, monkeypatch):
    from tests.test_trainer_epoch_loop import _bars, _cfg, _Terminal
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setattr(trainer.Trainer, "_stop_requested", lambda self: 1 if self.global_step >= 1 else 0)
    with pytest.raises(trainer.TrainingStopped):
        trainer.Trainer(_cfg(tmp_path, streets, no_progress=False, niter=2)).fit()
    bars = _bars(term.getvalue())
    assert len(bars) == 1 and "epoch 1/2" in bars[0], f"bars left on the screen after SIGTERM: {bars}"


# ---- errors.run and the engine's worker-death error ---------------------------------------------------
@pytest.mark.fault(cls="interrupted run", case="/dev/shm full while the main thread was in another handler "
                   "(a KeyError with torch's error as its context): one error line, status 1")
def test_a_full_shm_in_the_context_of_another_error_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    e = _raised_while_handling(RuntimeError(SHM), KeyError("<Thread(Thread-3, stopped 1)>"))

    def main(argv):
        raise e

    assert errors.run(main, []) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out of shared memory"), lines


@pytest.mark.fault(cls="interrupted run", case="under torchrun, a ValueError that merely mentions a connection "
                   "reset: its traceback, not the peer-gone line")
def test_only_a_collectives_runtime_error_is_a_peer_gone(capsys, monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")

    def bad(argv):
        raise ValueError("reading x.json: Connection reset by peer")

    with pytest.raises(ValueError, match="Connection reset by peer"):
        errors.run(bad, [])

    def gone(argv):   # the collective's own: the line
        raise RuntimeError("[gloo] Connection reset by peer")

    assert errors.run(gone, []) == 1
    assert "another rank ended" in capsys.readouterr().err


@pytest.mark.fault(cls="synthesis", case="a loader worker's death: synthesis's error keeps torch's as its cause "
                   "(--debug's traceback shows it)")
def test_the_engines_worker_death_error_is_caused_by_torchs():
    e = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    err = engine._worker_death_error(e)
    assert isinstance(err, engine.LoaderWorkerDiedError) and err.__cause__ is e, (err, err.__cause__)
    e = RuntimeError(SHM)
    err = engine._worker_death_error(e)
    assert isinstance(err, engine.LoaderWorkerDiedError) and err.__cause__ is e, (err, err.__cause__)

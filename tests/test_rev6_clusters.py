"""Findings of code review REV6 on the clusters of a checkpoint other than the run's latest, each
with the test that failed before its fix:

1. ``synthesize.py --checkpoint RUN/epoch_0002.pt`` (a checkpoint FILE: ``which_epoch`` stays
   'latest') took the epoch for the latest: its note on the run's clusters (the latest's) advised
   ``encode --checkpoint RUN/epoch_0002.pt`` without --out, which overwrites RUN/features_clustered.pt
   (what the latest checkpoint, the later stages and synthesis without --clusters read) with epoch
   2's clusters. The checkpoint's own file name now says which it is (``epoch_NNNN.pt``, or a
   resume's ``epoch_N_stepS.pt`` / ``latest_stepS.pt``): the advice is ``--out`` a file named
   after it, then ``--clusters`` it;
2. ``python -m pix2pixhd.features encode --which_epoch 2`` (or ``--checkpoint RUN/epoch_0002.pt``)
   without --out silently replaced the latest's clusters in the run's file: it still writes there
   (the default users rely on), with a note naming what the file held, what reads it, and --out;
3. the encode command line was built in two functions (``encode_command``, ``_encode_for``), and
   the "stale clusters note, printed on rank 0" block was repeated in ``from_checkpoint`` and
   ``_from_file``: one function each.

The feature run is test_walk8_synthesis_findings.py's: epoch_0002.pt (step 4) and latest.pt (step 10)
with other E weights, its features_clustered.pt made from latest's E, its dataset beside it.
"""
import ast
from pathlib import Path

import pytest

from pix2pixhd import features
from pix2pixhd.features import CLUSTERS_FILE, FeatureClusters, recluster_advice
from pix2pixhd.features import main as features_main
from tests.test_walk8_synthesis_findings import _synth_epoch, _two_epoch_run

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture()
def epochs(tmp_path):
    return _two_epoch_run(tmp_path)


def _synth(ckpt: Path, out: Path, *extra) -> int:
    """synthesize.py on the run's test maps with --checkpoint ``ckpt``, a checkpoint file of it."""
    return _synth_epoch(ckpt.parent, out, "--checkpoint", ckpt, *extra)   # the last --checkpoint is argparse's


def _notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note:")]


# ---- 1. a checkpoint file of another epoch -----------------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="synthesize --checkpoint RUN/epoch_0002.pt (a file) with the run's clusters (the latest's), "
                        "and with --clusters RUN/features_clustered.pt: the note advises encode --out "
                        "RUN/features_clustered_epoch_0002.pt and --clusters it, not an encode that overwrites "
                        "the run's clusters file; that command then works and leaves the run's file as it was")
def test_an_epoch_checkpoint_file_is_advised_a_clusters_file_of_its_own(epochs, tmp_path, capsys):
    pytest.importorskip("sklearn")
    own = epochs / CLUSTERS_FILE
    before = own.read_bytes()
    ckpt = epochs / "epoch_0002.pt"
    epoch_file = epochs / "features_clustered_epoch_0002.pt"
    cmd = f"python -m pix2pixhd.features encode --checkpoint {ckpt} --out {epoch_file}"
    advice = (f"re-cluster with `{cmd}`, then synthesize with --clusters {epoch_file} (encode without --out would "
              f"overwrite {own}, the clusters of the latest checkpoint")
    for extra in ((), ("--clusters", own)):
        capsys.readouterr()
        assert _synth(ckpt, tmp_path / f"out{len(extra)}", *extra) == 0
        [note] = [line for line in capsys.readouterr().err.splitlines() if "re-cluster" in line]
        assert note.startswith(f"note: {own} were clustered from the encoder of {(epochs / 'latest.pt').resolve()}"), note
        assert advice in note, note
    # the command suggested writes the epoch's own file; the run's is left as it was
    assert features_main(cmd.split()[3:]) == 0
    assert own.read_bytes() == before
    written = FeatureClusters.load(epoch_file)
    assert written.encoder["checkpoint"] == str(ckpt.resolve()) and written.global_step == 4
    capsys.readouterr()
    assert _synth(ckpt, tmp_path / "with_file", "--clusters", epoch_file) == 0
    err = capsys.readouterr().err
    assert "re-cluster" not in err and "were clustered from" not in err, err   # its encoder's: no note


@pytest.mark.parametrize("name, target", [
    ("epoch_0002.pt", "features_clustered_epoch_0002.pt"),
    ("epoch_0002_step40.pt", "features_clustered_epoch_0002_step40.pt"),
    ("latest_step40.pt", "features_clustered_latest_step40.pt"),
    ("latest.pt", None),
], ids=["epoch", "epoch-kept-aside", "latest-kept-aside", "latest"])
def test_the_advice_for_a_checkpoint_file_names_its_own_clusters_file(tmp_path, name, target):
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_bytes(b"")
    for given in (False, True):
        advice = recluster_advice(run / name, "latest", run / CLUSTERS_FILE, given=given)
        cmd = f"python -m pix2pixhd.features encode --checkpoint {run / name}"
        if target is None:   # the run's latest: its own file, encode's default
            assert advice.startswith(f"`{cmd}`") and "--out" not in advice, advice
        else:
            assert advice.startswith(f"`{cmd} --out {run / target}`, then synthesize with --clusters "
                                     f"{run / target} (encode without --out would overwrite {run / CLUSTERS_FILE}"), \
                advice
    # the run folder at --which_epoch 2: as before
    assert recluster_advice(run, "2", run / CLUSTERS_FILE).startswith(
        f"`python -m pix2pixhd.features encode --checkpoint {run} --which_epoch 2 --out "
        f"{run / 'features_clustered_epoch_0002.pt'}`")


# ---- 2. encode without --out over the latest's clusters ------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="encode --which_epoch 2, then encode --checkpoint RUN/epoch_0002.pt, without --out: the run's "
                        "clusters file (the latest's) is still replaced, with a note naming the checkpoint it held, "
                        "what reads it and --out; encoding the latest again (the note's own advice) says nothing")
def test_encode_without_out_notes_it_replaces_another_checkpoints_clusters(epochs, capsys):
    pytest.importorskip("sklearn")
    own = epochs / CLUSTERS_FILE
    latest, epoch2 = (epochs / "latest.pt").resolve(), (epochs / "epoch_0002.pt").resolve()
    epoch_file = epochs / "features_clustered_epoch_0002.pt"

    def encode(*argv) -> list[str]:
        capsys.readouterr()
        assert features_main(["encode", *map(str, argv)]) == 0
        return _notes(capsys.readouterr().err)

    def holds() -> str:
        return FeatureClusters.load(own).encoder["checkpoint"]

    for argv, again in (((epochs, "--which_epoch", 2), "--which_epoch 2 "), ((epochs / "epoch_0002.pt",), "")):
        assert holds() == str(latest)
        [note] = encode("--checkpoint", *argv)
        assert note.startswith(f"note: {own} holds the clusters of the encoder of {latest} (step 10), which "
                               "synthesis without --clusters and the run's later stages read; this encode replaces "
                               f"them with those of {epoch2} (step 4) when it ends"), note
        assert note.endswith(f"with `python -m pix2pixhd.features encode --checkpoint {argv[0]} {again}--out "
                             f"{epoch_file}` and synthesize with --clusters {epoch_file}; `python -m "
                             f"pix2pixhd.features encode --checkpoint {epochs}` writes the latest checkpoint's "
                             "again"), note
        assert holds() == str(epoch2)   # the default path is kept: the run's file holds epoch 2's now
        assert encode("--checkpoint", *argv) == []   # epoch 2's over epoch 2's: nothing to say
        # the latest's back, as the note advised: nothing to say (REV7: it warned about following the advice)
        assert encode("--checkpoint", epochs) == []
        assert holds() == str(latest)
        assert encode("--checkpoint", epochs) == []   # the latest's over the latest's


# ---- 3. one command builder, one stale-note block ---------------------------------------------------------
def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, FunctionDef) of every function and method in ``tree``, nested ones too."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            name = prefix + node.name
            if isinstance(node, ast.FunctionDef):
                yield name, node
            yield from _functions(node, name + ".")


def _own_code(fn: ast.FunctionDef) -> list[ast.AST]:
    """The nodes of ``fn``'s body, its docstring and the functions nested in it left out."""
    body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) and \
        isinstance(fn.body[0].value, ast.Constant) else fn.body
    out, todo = [], list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def test_the_encode_command_line_and_the_stale_note_are_each_one_function():
    tree = ast.parse(Path(features.__file__).read_text())
    spelled, noting = [], []
    for name, fn in _functions(tree):
        nodes = _own_code(fn)
        if any(isinstance(n, ast.Constant) and isinstance(n.value, str) and "features encode" in n.value
               for n in nodes):
            spelled.append(name)
        if name.startswith("FeatureSource.") and any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "stale_clusters_note"
                for n in nodes):
            noting.append(name)
    assert spelled == ["encode_command"], spelled   # every other error and note calls it
    assert noting == ["FeatureSource._of_file"], noting
    # the one builder gives the lines both used to
    run = Path("/r")
    assert features.encode_command(run / CLUSTERS_FILE) == "python -m pix2pixhd.features encode --checkpoint /r"
    assert features.encode_command(Path("/x/c.pt")) == \
        "python -m pix2pixhd.features encode --checkpoint CHECKPOINT --out /x/c.pt"
    assert features.encode_command(None, run, "3") == "python -m pix2pixhd.features encode --checkpoint /r --which_epoch 3"
    assert features.encode_command(Path("/x/c.pt"), run, "3") == \
        "python -m pix2pixhd.features encode --checkpoint /r --which_epoch 3 --out /x/c.pt"

"""Findings of a review (REV6) of synthesis's --strict and Ctrl-C stop (ae6d8de), each with the
test that failed before its fix:

1. Ctrl-C during the Python API's ``run_synthesis`` raised SystemExit(130) and printed "rerun the
   same command" (there is no command): it raises ``SynthesisInterrupted``, a KeyboardInterrupt
   carrying the report, once the images in flight are written; synthesize.py alone turns it into
   its stop line and status 130; a caller's own SIGINT handler is left in place;
2. a Ctrl-C during the final merge let the job complete, but the command ended with
   "interrupted (Ctrl-C)" and 130, no summary: the summary and 0, as after a SIGTERM there;
3. docs/synthesis.md and --help said every torchrun rank ends --strict with 65: torchrun itself
   exits with 1 (its ChildFailedError); they say so, and how a pipeline tells skips from errors;
4. --strict's line pointed at manifest.jsonl's "skipped" lines, which keep stale lines of inputs
   a rerun no longer has: it names this run's skipped inputs (the first three) and their count;
5. ``--onnx_path FILE`` without ``--backend onnx`` was ignored (the PyTorch generator ran): refused.

Tiny untrained checkpoints (tests/synthesis_runs.run), 16x24 maps; the torchrun test runs two
gloo ranks on CPU in a subprocess.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from pix2pixhd import engine, errors
from pix2pixhd.cli import synthesize_parser
from pix2pixhd.engine import SynthesisInterrupted, SynthesisJob, run_synthesis
from pix2pixhd.synthesis import Synthesizer, load_generator
from tests.synthesis_runs import run  # noqa: F401  (a fixture)
from tests.synthesis_runs import band_map as _map, job_record as _job, signalling as _signalling, synth_cli as _cli
from tests.test_distributed import REPO, torchrun_cmd, torchrun_env

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

TIMEOUT = 240


def _maps(folder: Path, n: int = 6) -> Path:
    for k in range(n):
        _map(folder / f"m{k}.png", (0, 1, k % 5))
    return folder


# ---- 1. the Python API's Ctrl-C --------------------------------------------------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C (SIGINT) during the Python API's run_synthesis: a KeyboardInterrupt carrying the "
                        "report once the batches in flight are written, no 'rerun the same command' line; the "
                        "same job resumes")
def test_ctrl_c_through_the_api_raises_keyboard_interrupt_with_the_report(run, tmp_path, capsys):
    maps, out = _maps(tmp_path / "maps"), tmp_path / "out"
    g, cfg = load_generator(run)
    job = SynthesisJob(out=out, input=maps, batch_size=2, workers=0, progress=False)
    caught = None
    try:
        run_synthesis(Synthesizer(_signalling(g, signal.SIGINT), cfg), job)
    except KeyboardInterrupt as e:   # caught here: left to pytest, it would end the whole session
        caught = e
    except SystemExit as e:
        pytest.fail(f"Ctrl-C through the API raised SystemExit({e.code}), not KeyboardInterrupt")
    assert isinstance(caught, SynthesisInterrupted), "the run was not stopped"
    assert caught.stopped is True and caught.report.written == 2 and caught.exit_status == 130
    assert str(caught).startswith("stopped by SIGINT after 2 image(s)") and "run the same job again" in str(caught)
    assert caught.line.startswith("stopped by SIGINT after 2 image(s); rerun the same command")   # the command's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back
    err = capsys.readouterr().err
    assert "stopped by" not in err and "rerun the same command" not in err, err
    assert _job(out)["complete"] is False
    rep = run_synthesis(Synthesizer(g, cfg), job)
    assert rep.written == 4 and rep.already_done == 2 and _job(out)["complete"] is True


@pytest.mark.fault(cls="interrupted run",
                   case="a Python caller with its own SIGINT handler runs run_synthesis: its handler keeps SIGINT "
                        "(the run does not take it over)")
def test_a_callers_own_sigint_handler_is_left_in_place(run, tmp_path):
    maps = _maps(tmp_path / "maps", 2)
    g, cfg = load_generator(run)
    seen = []

    def mine(signum, frame):
        seen.append(signum)
    before = signal.signal(signal.SIGINT, mine)
    try:
        rep = run_synthesis(Synthesizer(_signalling(g, signal.SIGINT), cfg),
                            SynthesisJob(out=tmp_path / "out", input=maps, batch_size=1, workers=0, progress=False))
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)
    assert seen == [signal.SIGINT] and rep.written == 2   # the caller's handler heard it; the run was not stopped


@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C (SIGINT) to synthesize.py mid-job: still the stop line and exit status 130, the "
                        "rerun completes the job")
def test_ctrl_c_to_the_command_still_says_the_stop_line_with_status_130(run, tmp_path, capsys, monkeypatch):
    import pix2pixhd.synthesis as synthesis
    maps, out = _maps(tmp_path / "maps"), tmp_path / "out"
    real = synthesis.load_generator

    def signalling(*a, **k):   # the generator's first forward sends Ctrl-C's SIGINT
        g, cfg = real(*a, **k)

        def ctrl_c(*_):
            hook.remove()
            os.kill(os.getpid(), signal.SIGINT)
        hook = g.register_forward_pre_hook(ctrl_c)
        return g, cfg
    monkeypatch.setattr(synthesis, "load_generator", signalling)
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--batch_size", 2) == 130
    err = capsys.readouterr().err
    assert [x for x in err.splitlines() if not x.startswith("note: ")] == [
        f"stopped by SIGINT after 2 image(s); rerun the same command to resume (2 of the job's outputs are complete "
        f"in {out}); exit status 130"], err
    monkeypatch.setattr(synthesis, "load_generator", real)
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--batch_size", 2) == 0
    assert _job(out)["complete"] is True


# ---- 2. a Ctrl-C during the final merge ------------------------------------------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="{how} during synthesize.py's final manifest merge: the job completes, the summary is "
                        "printed and the exit status is 0")
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_final_merge_completes_with_the_summary_and_status_0(run, tmp_path, capsys,
                                                                                 monkeypatch, how):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    real = engine.merge_manifest

    def merge(*a, **k):
        os.kill(os.getpid(), getattr(signal, how))   # recorded by the run's handler: too late to stop
        return real(*a, **k)
    monkeypatch.setattr(engine, "merge_manifest", merge)
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert _cli("--checkpoint", run, "--input", maps, "--out", out) == 0
    o, err = capsys.readouterr()
    assert "wrote 3 images" in o and "interrupted" not in err and "stopped by" not in err, (o, err)
    assert _job(out)["complete"] is True and _job(out)["n_written"] == 3


@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C during the final merge of the Python API's run_synthesis: a KeyboardInterrupt "
                        "saying the job is complete, with its report")
def test_ctrl_c_during_the_merge_through_the_api_says_the_job_is_complete(run, tmp_path, monkeypatch):
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    real = engine.merge_manifest

    def merge(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)
    monkeypatch.setattr(engine, "merge_manifest", merge)
    g, cfg = load_generator(run)
    caught = None
    try:
        run_synthesis(Synthesizer(g, cfg), SynthesisJob(out=out, input=maps, workers=0, progress=False))
    except KeyboardInterrupt as e:
        caught = e
    assert isinstance(caught, SynthesisInterrupted) and caught.stopped is False and caught.line is None
    assert caught.report.written == 3 and _job(out)["complete"] is True and "complete" in str(caught)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- 3. --strict under torchrun: torchrun's own status ------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="synthesize.py --strict under torchrun (two CPU ranks), one input skipped: torchrun exits "
                        "with 1 (its ChildFailedError), as docs/synthesis.md and --help say, and synthesis.json "
                        "tells the skips (complete, n_skipped 1)")
def test_under_torchrun_strict_torchrun_exits_1_as_the_docs_and_help_say(run, tmp_path):
    maps, out = tmp_path / "maps", tmp_path / "out"
    for k in range(4):
        _map(maps / f"a{k}.png", (0, 1, k % 5))
    _map(maps / "z_bad.png", (0, 255))   # the fifth input: rank 0's
    cmd = torchrun_cmd(REPO / "synthesize.py", "--checkpoint", str(run), "--input", str(maps), "--out", str(out),
                       "--device", "cpu", "--no_progress", "--workers", "0", "--batch_size", "1", "--strict")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env=torchrun_env())
    said = p.stdout + p.stderr
    assert p.returncode == 1 and "ChildFailedError" in said, (p.returncode, said[-6000:])   # torchrun's, as it is
    lines = re.findall(r"^error \(rank (\d) of 2\): --strict: 1 output\(s\) of this job were skipped, their inputs "
                       rf"not synthesized \(1 input\(s\): {re.escape(str(maps / 'z_bad.png'))};", said, re.M)
    assert lines and set(lines) <= {"0", "1"}, said[-6000:]   # a rank still ending may get torchrun's SIGTERM
    assert _job(out)["complete"] is True and _job(out)["n_skipped"] == 1
    text = " ".join((REPO / "docs" / "synthesis.md").read_text().split())
    assert f"torchrun itself exits with status {p.returncode}" in text and "`n_skipped`" in text, \
        "docs/synthesis.md, What comes out: torchrun's own exit status under --strict"
    assert "every rank ends with 65 and says that line." not in text
    strict = next(a for a in synthesize_parser("synthesize.py")._actions if "--strict" in a.option_strings)
    assert f"torchrun itself exits with {p.returncode}" in strict.help and "n_skipped" in strict.help, strict.help


# ---- 4. --strict's line names this run's skipped inputs -------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="synthesize --strict rerun after the skipped input was replaced by another bad one: the "
                        "last line names this run's skipped input, not the manifest's stale line")
def test_strict_names_this_runs_skipped_inputs_not_the_manifests_stale_lines(run, tmp_path, capsys, monkeypatch):
    maps, out = tmp_path / "maps", tmp_path / "out"
    for k in range(2):
        _map(maps / f"a{k}.png", (0, 1, 2 + k))
    _map(maps / "z_old.png", (0, 255))
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--strict") == 65
    capsys.readouterr()
    (maps / "z_old.png").unlink()   # gone from the folder; its manifest line stays
    _map(maps / "z_new.png", (0, 255))
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--strict") == 65
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: --strict: 1 output(s) of this job were skipped, their inputs not synthesized "
                           f"(1 input(s): {maps / 'z_new.png'}; their reasons on the 'skipped FILE: REASON' lines "
                           "above), so the exit status is 65"), last
    assert "z_old" not in last and "manifest.jsonl" not in last, last
    assert any("z_old.png" in x for x in (out / "manifest.jsonl").read_text().splitlines())   # the stale line
    assert _job(out)["n_skipped"] == 1


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --strict with five skipped inputs: the last line names the first three and "
                        "counts the other two")
def test_strict_names_the_first_three_skipped_inputs_and_counts_the_rest(run, tmp_path, capsys, monkeypatch):
    maps, out = tmp_path / "maps", tmp_path / "out"
    _map(maps / "a.png", (0, 1))
    for k in range(5):
        _map(maps / f"z{k}.png", (0, 255))
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--strict") == 65
    last = capsys.readouterr().err.strip().splitlines()[-1]
    named = ", ".join(str(maps / f"z{k}.png") for k in range(3))
    assert f"(5 input(s): {named} and 2 more; their reasons" in last, last


# ---- 5. --onnx_path without --backend onnx ---------------------------------------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="synthesize.py --onnx_path FILE without --backend onnx: one line naming --backend onnx, "
                        "nothing synthesized (the PyTorch generator ran, the file unread)")
def test_onnx_path_without_the_onnx_backend_is_refused(run, tmp_path, capsys, monkeypatch):
    maps, out = _maps(tmp_path / "maps", 2), tmp_path / "out"
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    onnx = tmp_path / "g.onnx"
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--onnx_path", onnx) == 1
    err = capsys.readouterr().err
    assert err == (f"error: --onnx_path {onnx} goes with --backend onnx, which runs that ONNX file; without it "
                   "the PyTorch generator of --checkpoint runs: add --backend onnx, or drop --onnx_path\n"), err
    assert not out.exists()


def test_errors_run_says_the_stop_line_a_keyboard_interrupt_carries(capsys):
    # a command other than synthesize.py that runs run_synthesis under errors.run (benchmarks/synthesis.py)
    # printed the bare "interrupted (Ctrl-C)" line for a stop whose line says what was kept

    def main(argv):
        raise SynthesisInterrupted("stopped", None, line="stopped by SIGINT after 2 image(s); rerun ...")
    assert errors.run(main, []) == errors.INTERRUPTED_EXIT_STATUS
    assert capsys.readouterr().err.splitlines() == ["stopped by SIGINT after 2 image(s); rerun ..."]

    def plain(argv):
        raise KeyboardInterrupt
    assert errors.run(plain, []) == errors.INTERRUPTED_EXIT_STATUS
    assert "interrupted (Ctrl-C); exit status 130" in capsys.readouterr().err

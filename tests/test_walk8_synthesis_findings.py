"""Findings of a synthesis walkthrough (WALK8: features, clusters, synthesis in two torchrun shards,
stopped and resumed), each with the test that failed before its fix:

1. a job that skipped inputs exits 0 (it is complete): ``synthesize.py --strict`` (the Python API's
   ``SynthesisJob(strict=True)``) ends it with status 65 once every input was gone through, the
   outputs kept, the same status on every torchrun rank;
2. ``--which_epoch N``'s note on the run's clusters (the latest checkpoint's) suggested ``encode
   --which_epoch N``, which overwrites that file: it now suggests ``--out`` a file of the epoch,
   read with the new ``--clusters FILE``, checked against the encoder as the run's file is;
3. ``python -m pix2pixhd.features encode --name g ...`` (the reference's encode_features.py habit)
   printed argparse's usage: one line naming the replacement, as train_hd.py and synthesize.py;
4. Ctrl-C (SIGINT) ended a synthesis with "interrupted ...", which said neither what was kept nor
   to rerun: it stops as SIGTERM does, single process and under torchrun (status 130);
5. under torchrun each rank's stop line gave the job's image count as its own;
6. the "no saved clusters" note came once per batch that met new classes, and under torchrun from
   rank 0 alone (rank 1's classes never named): one note before the job, from the clusters file;
7. docs/synthesis.md says torchrun's own SignalException traceback follows the ranks' lines.

Tiny untrained checkpoints (tests/synthesis_runs.run; a feature run built here), 16x24 maps; the
torchrun tests run two gloo ranks on CPU in a subprocess.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from pix2pixhd import errors
from pix2pixhd.engine import InputsSkippedError, SynthesisInterrupted, SynthesisJob, run_synthesis
from pix2pixhd.features import CLUSTERS_FILE, FeatureClusters, checkpoint_encoder_identity
from pix2pixhd.features import main as features_main
from pix2pixhd.synthesis import Synthesizer, load_generator
from tests.synthesis_runs import manifest, run  # noqa: F401  (run: a fixture)
from tests.synthesis_runs import band_map as _map, job_record as _job, signalling as _signalling, synth_cli as _cli
from tests.test_distributed import REPO, torchrun_cmd, torchrun_env
from tests.test_engine_rank_scan import SLOW_WRITES
from tests.test_synthesis_engine import save_run

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

TIMEOUT = 240


# ---- 1. --strict ------------------------------------------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="synthesize --strict, two of six inputs with label id 255: every input gone through, "
                        "the four images kept, the job complete, exit status 65 and a last line saying why")
def test_strict_ends_a_job_that_skipped_inputs_with_status_65_keeping_its_outputs(run, tmp_path, capsys):
    maps = tmp_path / "maps"
    for k in range(4):
        _map(maps / f"a{k}.png", (0, 1, 2 + k % 2))
    for k in range(2):
        _map(maps / f"z{k}.png", (0, 255))
    assert _cli("--checkpoint", run, "--input", maps, "--out", tmp_path / "lax") == 0   # the default: as before
    assert _job(tmp_path / "lax")["complete"] is True and _job(tmp_path / "lax")["n_skipped"] == 2
    capsys.readouterr()

    out = tmp_path / "out"
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--strict") == errors.SKIPPED_EXIT_STATUS == 65
    o, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --strict: 2 output(s) of this job were skipped") and \
        "so the exit status is 65" in last and f"{out / 'synthesis.json'} marks the job complete" in last, err
    assert "skipped 2;" in o and "Traceback" not in err
    job = _job(out)
    assert job["complete"] is True and job["n_written"] == 4 and job["n_skipped"] == 2, job
    assert sorted(p.name for p in (out / "test_img").iterdir()) == [f"a{k}.png" for k in range(4)]
    # the rerun redoes the skipped inputs only, and says so again
    assert _cli("--checkpoint", run, "--input", maps, "--out", out, "--strict") == 65
    assert "wrote 0 images" in capsys.readouterr()[0]
    # the Python API: the same job, the error carries the report
    g, cfg = load_generator(run)
    with pytest.raises(InputsSkippedError, match=r"--strict: 2 output\(s\)") as e:
        run_synthesis(Synthesizer(g, cfg), SynthesisJob(out=tmp_path / "api", input=maps, workers=0,
                                                        progress=False, strict=True))
    assert e.value.exit_status == 65 and e.value.report.written == 4 and e.value.report.skipped == 2
    assert len(e.value.report.skipped_inputs) == 2 and _job(tmp_path / "api")["complete"] is True


# ---- a feature run (--instance_feat) whose clusters lack classes 3 and 4 ------------------------------
@pytest.fixture(scope="module")
def feature_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("feature_run")
    save_run(folder, label_nc=5, instance_feat=True, feat_num=3, n_downsample_E=2, no_instance=True)
    g = torch.Generator().manual_seed(1)
    FeatureClusters({c: torch.rand(2, 3, generator=g) * 2 - 1 for c in (0, 1, 2)}, 3, 2).save(folder / CLUSTERS_FILE)
    return folder


def _feature_maps(folder: Path) -> Path:
    """a0 and a2 (rank 0's under torchrun) hold class 3; a1 and a3 (rank 1's) class 4; z_bad, the
    fifth (rank 0's), ids 255."""
    for k in range(4):
        _map(folder / f"a{k}.png", (0, 1, 3 if k % 2 == 0 else 4))
    _map(folder / "z_bad.png", (0, 255))
    return folder


# ---- 6. the no-clusters note ---------------------------------------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="a multimodal synthesis whose batches meet two classes without clusters one after the "
                        "other: one note before the job naming both, not one per batch")
def test_the_no_clusters_note_is_said_once_naming_every_class_without_clusters(feature_run, tmp_path, capsys):
    maps = tmp_path / "maps"
    for k, c in enumerate((3, 3, 4, 4)):   # batch 1 meets class 3, batch 3 class 4
        _map(maps / f"a{k}.png", (0, c))
    assert _cli("--checkpoint", feature_run, "--input", maps, "--out", tmp_path / "out", "--batch_size", 1) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "no saved clusters" in line]
    assert notes == [f"note: class(es) [3, 4] of this checkpoint's 5 have no saved clusters in "
                     f"{feature_run / CLUSTERS_FILE} (no instance of them was larger than 1/64 of an image when "
                     "encoding): wherever the maps hold them, their feature channels are 0 (the manifest's "
                     "\"clusters\" gives their instances index -1)"], notes
    assert {tuple(v) for r in manifest(tmp_path / "out") for v in r["clusters"].values() if v[0] >= 3} == \
        {(3, -1), (4, -1)}


# ---- 1 and 6 under torchrun ----------------------------------------------------------------------------
STATUS_SCRIPT = r"""
import os, signal, sys
from pathlib import Path
# torchrun's SIGTERM to a rank still ending once its peer has exited (with 65) is not this rank's status
signal.signal(signal.SIGTERM, lambda *_: None)
from pix2pixhd.launch import synthesize
status = synthesize(sys.argv[2:])
Path(sys.argv[1], f"status{os.environ['RANK']}").write_text(str(status))
sys.exit(status)
"""


@pytest.fixture(scope="module")
def strict_torchrun(feature_run, tmp_path_factory):
    """synthesize.py --strict on two ranks: (its output, {rank: exit status}, out)."""
    tmp = tmp_path_factory.mktemp("strict_torchrun")
    maps, out, logs = _feature_maps(tmp / "maps"), tmp / "out", tmp / "logs"
    logs.mkdir()
    script = tmp / "status.py"
    script.write_text(STATUS_SCRIPT)
    cmd = torchrun_cmd(script, str(logs), "--checkpoint", str(feature_run), "--input", str(maps), "--out",
                       str(out), "--device", "cpu", "--no_progress", "--workers", "0", "--batch_size", "1",
                       "--strict")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env=torchrun_env())
    statuses = {r: int((logs / f"status{r}").read_text()) for r in (0, 1) if (logs / f"status{r}").is_file()}
    return p.stdout + p.stderr, statuses, out


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --strict under torchrun (two CPU ranks), one input of rank 0's skipped: "
                        "exit status 65 on both ranks, the job complete")
def test_under_torchrun_strict_gives_every_rank_status_65(strict_torchrun):
    said, statuses, out = strict_torchrun
    assert statuses == {0: 65, 1: 65}, said[-6000:]
    lines = re.findall(r"^error \(rank (\d) of 2\): --strict: 1 output\(s\) of this job were skipped", said, re.M)
    assert sorted(lines) == ["0", "1"], said[-6000:]
    assert "wrote 4 images" in said and "skipped 1;" in said, said[-6000:]
    assert _job(out)["complete"] is True and _job(out)["n_skipped"] == 1


@pytest.mark.fault(cls="synthesis",
                   case="a multimodal synthesis under torchrun where only rank 1's maps hold a class without "
                        "clusters: the class is named")
def test_under_torchrun_a_class_only_rank_1_meets_is_named(strict_torchrun):
    said, _, _ = strict_torchrun
    notes = [line for line in said.splitlines() if "no saved clusters" in line]
    assert len(notes) == 1 and "class(es) [3, 4] of this checkpoint's 5" in notes[0], said[-6000:]


# ---- 2. --which_epoch N's clusters, --clusters FILE ----------------------------------------------------
def _two_epoch_run(root: Path) -> Path:
    """A feature run (G and E, 9 classes) with epoch_0002.pt (step 4) and latest.pt (step 10), other
    E weights, whose dataset is generated beside it; its features_clustered.pt made from latest's E."""
    from pix2pixhd.checkpoint import save_checkpoint
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.datasets.synthetic_streets import LABEL_NC, generate
    from pix2pixhd.models import build_encoder, build_generator
    generate(root / "streets", n_train=3, n_test=2, width=64, height=32, seed=0)
    run_dir = root / "ck" / "g"
    cfg = TrainConfig(name="g", checkpoints_dir=str(run_dir.parent), dataroot=str(root / "streets"),
                      label_nc=LABEL_NC, instance_feat=True, feat_num=3, nef=4, n_downsample_E=2, netG="global",
                      ngf=4, n_downsample_global=2, n_blocks_global=1, norm_impl="ref", n_clusters=2, nThreads=0,
                      resize_or_crop="none").resolved()
    for which, step, seed in (("2", 4, 1), ("latest", 10, 0)):
        torch.manual_seed(seed)
        save_checkpoint({"config": cfg.to_dict(), "global_step": step, "G": build_generator(cfg).state_dict(),
                         "E": build_encoder(cfg).state_dict()}, run_dir, which, cfg.to_json())
    centers = {c: torch.rand(2, 3, generator=torch.Generator().manual_seed(c)) for c in range(LABEL_NC)}
    FeatureClusters(centers, 3, 2, global_step=10, encoder=checkpoint_encoder_identity(run_dir)).save(
        run_dir / CLUSTERS_FILE)
    return run_dir


@pytest.fixture(scope="module")
def epochs(tmp_path_factory):
    return _two_epoch_run(tmp_path_factory.mktemp("two_epochs"))


def _synth_epoch(run_dir: Path, out: Path, *extra) -> int:
    data = run_dir.parents[1] / "streets"
    return _cli("--checkpoint", run_dir, "--input", data / "test_label", "--inst", data / "test_inst",
                "--out", out, *extra)


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --which_epoch 2 with the run's clusters (the latest's): the note suggests encode "
                        "--which_epoch 2 --out an epoch file and --clusters it, not a command that overwrites the "
                        "run's clusters file; that command then works")
def test_the_which_epoch_note_suggests_a_clusters_file_of_the_epoch_and_clusters_reads_it(epochs, tmp_path, capsys):
    pytest.importorskip("sklearn")
    own = epochs / CLUSTERS_FILE
    before = own.read_bytes()
    assert _synth_epoch(epochs, tmp_path / "out", "--which_epoch", 2) == 0
    [note] = [line for line in capsys.readouterr().err.splitlines() if "re-cluster" in line]
    epoch_file = epochs / "features_clustered_epoch_0002.pt"
    cmd = f"python -m pix2pixhd.features encode --checkpoint {epochs} --which_epoch 2 --out {epoch_file}"
    assert note.startswith(f"note: {own} were clustered from the encoder of {(epochs / 'latest.pt').resolve()}"), note
    assert f"re-cluster with `{cmd}`, then synthesize with --clusters {epoch_file} (encode without --out would " \
           f"overwrite {own}, the clusters of the latest checkpoint" in note, note
    # the command suggested writes the epoch's file and leaves the run's as it was
    assert features_main(cmd.split()[3:]) == 0
    assert own.read_bytes() == before
    written = FeatureClusters.load(epoch_file)
    assert written.encoder["checkpoint"] == str((epochs / "epoch_0002.pt").resolve()) and written.global_step == 4
    capsys.readouterr()
    out = tmp_path / "with_file"
    assert _synth_epoch(epochs, out, "--which_epoch", 2, "--clusters", epoch_file) == 0
    err = capsys.readouterr().err
    assert "re-cluster" not in err and "were clustered from" not in err, err   # its encoder's: no note
    assert _job(out)["clusters_sha256"] == hashlib.sha256(epoch_file.read_bytes()).hexdigest()


@pytest.mark.fault(cls="synthesis",
                   case="synthesize --clusters naming another run's clusters file, one of another feat_num, and "
                        "one that does not exist: noted, refused and refused, naming the file and an encode "
                        "that writes this run's clusters without overwriting the other run's")
def test_clusters_of_another_run_are_noted_or_refused_naming_the_file(epochs, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    theirs = other / CLUSTERS_FILE
    FeatureClusters({1: torch.zeros(2, 3)}, 3, 2, global_step=3,
                    encoder={"sha256": "0" * 64, "checkpoint": str(other / "latest.pt")}).save(theirs)
    assert _synth_epoch(epochs, tmp_path / "out", "--clusters", theirs) == 0
    [note] = [line for line in capsys.readouterr().err.splitlines() if "re-cluster" in line]
    assert note.startswith(f"note: {theirs} were clustered from the encoder of {other / 'latest.pt'} at step 3"), note
    assert note.endswith(f"re-cluster with `python -m pix2pixhd.features encode --checkpoint {epochs}`, then leave "
                         f"--clusters out (synthesis reads {epochs / CLUSTERS_FILE})"), note

    wide = other / "wide.pt"
    FeatureClusters({1: torch.zeros(2, 4)}, 4, 2).save(wide)
    assert _synth_epoch(epochs, tmp_path / "wide", "--which_epoch", 2, "--clusters", wide) == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert line.startswith(f"error: {wide} holds 4-d features but the checkpoint's feat_num is 3"), line
    assert f"--which_epoch 2 --out {epochs / 'features_clustered_epoch_0002.pt'}`, then synthesize with " \
           f"--clusters {epochs / 'features_clustered_epoch_0002.pt'}" in line, line

    missing = tmp_path / "nope.pt"
    assert _synth_epoch(epochs, tmp_path / "missing", "--clusters", missing) == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert line == (f"error: --clusters {missing}: {missing} not found; write the clusters of this checkpoint's "
                    f"encoder there with `python -m pix2pixhd.features encode --checkpoint {epochs} --out {missing}`, "
                    f"or leave --clusters out to read the run's {CLUSTERS_FILE}"), line
    assert not (tmp_path / "wide").exists() and not (tmp_path / "missing").exists()


# ---- 3. the reference's encode_features.py options -----------------------------------------------------
@pytest.mark.fault(cls="command-line errors",
                   case="python -m pix2pixhd.features {argv}: one line naming what to use instead, status 1")
@pytest.mark.parametrize("argv, fix", [
    (["encode", "--name", "g", "--checkpoints_dir", "ck"], "give the run folder: --checkpoint CHECKPOINTS_DIR/NAME"),
    (["encode", "--checkpoint", "ck/g", "--instance_feat"],
     "the encoder's and the data's options come from the checkpoint's config.json: drop --instance_feat"),
    (["precompute", "--checkpoint", "ck/g", "--gpu_ids", "0"], "the device is --device (auto | cpu | cuda | cuda:N)"),
    (["encode", "--checkpoint", "ck/g", "--label_nc=35"],
     "the encoder's and the data's options come from the checkpoint's config.json: drop --label_nc"),
], ids=["name", "instance_feat", "gpu_ids", "label_nc"])
def test_the_reference_encode_options_are_one_line_naming_the_replacement(argv, fix, capsys):
    assert errors.run(features_main, argv) == 1
    out, err = capsys.readouterr()
    given = {"name": "--name g", "instance_feat": "--instance_feat", "gpu_ids": "--gpu_ids 0",
             "label_nc": "--label_nc 35"}
    flag = next(a for a in argv if a.startswith("--") and a.split("=")[0][2:] in given)
    assert err.splitlines() == [f"error: {given[flag.split('=')[0][2:]]} is an option of the reference's "
                                "encode_features.py / precompute_feature_maps.py (NVIDIA's pix2pixHD), not of "
                                f"python -m pix2pixhd.features: {fix}"], err
    assert out == ""


# ---- 4. Ctrl-C -------------------------------------------------------------------------------------------
@pytest.mark.fault(cls="interrupted run",
                   case="Ctrl-C (SIGINT) to a single-process synthesis: it stops as SIGTERM does, one line saying "
                        "what is complete and to rerun, status 130; the rerun completes the job")
def test_ctrl_c_stops_a_synthesis_as_sigterm_does_and_the_rerun_resumes(run, tmp_path, capsys):
    maps = tmp_path / "maps"
    for k in range(6):
        _map(maps / f"m{k}.png", (0, 1, k % 5))
    g, cfg = load_generator(run)
    out = tmp_path / "out"
    job = SynthesisJob(out=out, input=maps, batch_size=2, workers=0, progress=False)
    # the API raises a KeyboardInterrupt carrying the command's line (REV6: tests/test_rev6_synthesis.py);
    # synthesize.py prints it and exits with 130
    caught = None
    try:
        run_synthesis(Synthesizer(_signalling(g, signal.SIGINT), cfg), job)
    except KeyboardInterrupt as e:   # caught: left to pytest, it would end the whole session
        caught = e
    assert isinstance(caught, SynthesisInterrupted), "the run was not stopped"
    assert caught.exit_status == errors.INTERRUPTED_EXIT_STATUS == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back
    assert caught.line == (
        f"stopped by SIGINT after 2 image(s); rerun the same command to resume (2 of the job's outputs are complete "
        f"in {out}); exit status 130")
    assert _job(out)["complete"] is False
    rep = run_synthesis(Synthesizer(g, cfg), job)
    assert rep.written == 4 and rep.already_done == 2 and _job(out)["complete"] is True


# ---- 4 and 5 under torchrun ------------------------------------------------------------------------------
SIGNALLED_SCRIPT = "import os, sys\nfrom pathlib import Path\n" + SLOW_WRITES + r"""
from pix2pixhd.launch import synthesize
status = 1
try:
    status = synthesize(sys.argv[2:])
except SystemExit as e:
    status = e.code
    raise
finally:
    Path(sys.argv[1], f"status{os.environ['RANK']}").write_text(str(status))
sys.exit(status)
"""


@pytest.mark.fault(cls="interrupted run",
                   case="{how} to torchrun (two CPU ranks) mid-job: each rank's line says to rerun, counts its own "
                        "images apart from the job's, and its exit status is the signal's")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_stop_under_torchrun_says_to_rerun_and_tells_the_ranks_images_from_the_jobs(run, tmp_path, how):
    maps, out, logs = tmp_path / "maps", tmp_path / "out", tmp_path / "logs"
    for k in range(40):
        _map(maps / f"m{k:03d}.png", (0, 1, k % 5))
    logs.mkdir()
    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED_SCRIPT)
    cmd = torchrun_cmd(script, str(logs), "--checkpoint", str(run), "--input", str(maps), "--out", str(out),
                       "--device", "cpu", "--no_progress", "--workers", "0", "--writers", "1", "--batch_size", "1")
    log = tmp_path / "torchrun.log"
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=REPO, env=torchrun_env(), stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
    parts = [out / "manifest.parts" / f"rank{r:05d}.jsonl" for r in (0, 1)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while p.poll() is None and time.monotonic() < deadline:   # both ranks have written (20 each to go)
            if all(f.is_file() and f.read_text().count("\n") >= 2 for f in parts):
                break
            time.sleep(0.01)
        assert p.poll() is None, "the job ended before it could be signalled:\n" + log.read_text()[-5000:]
        if how == "SIGTERM":
            p.terminate()   # torchrun passes it on to its ranks
        else:
            os.killpg(p.pid, signal.SIGINT)   # Ctrl-C: `kill -INT -- -PGID` of torchrun's group
        p.wait(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)
    said = log.read_text()
    tail = "; exit status 130" if how == "SIGINT" else ""
    found = {m[0]: tuple(map(int, m[1:])) for m in re.findall(
        rf"^stopped by {how} \(rank (\d) of 2\) after (\d+) image\(s\); rerun the same command to resume \(this "
        rf"rank wrote (\d+) of the (\d+) image\(s\) the job's 2 ranks wrote in this run; (\d+) of the job's "
        rf"outputs are complete in {re.escape(str(out))}\){re.escape(tail)}$", said, re.M)}
    assert sorted(found) == ["0", "1"], f"one line per rank expected:\n{said[-6000:]}"
    assert "interrupted (rank" not in said, said[-6000:]
    mine = [sum(json.loads(x)["status"] == "ok" for x in f.read_text().splitlines()) for f in parts]
    for r in (0, 1):
        after, wrote, job_total, complete = found[str(r)]
        assert after == wrote == mine[r] and job_total == complete == sum(mine), (r, found, mine)
    assert mine[0] != sum(mine) and mine[1] != sum(mine)
    statuses = {r: int((logs / f"status{r}").read_text()) for r in (0, 1)}
    assert statuses == {r: 130 if how == "SIGINT" else 75 for r in (0, 1)}, said[-6000:]
    assert _job(out)["complete"] is False and (out / "manifest.parts").is_dir()


# ---- 7. torchrun's own traceback ---------------------------------------------------------------------
def test_the_docs_say_torchrun_prints_its_own_signal_traceback():
    text = " ".join((REPO / "docs" / "synthesis.md").read_text().split())
    assert "SignalException" in text and "torchrun itself" in text, "docs/synthesis.md, Stopping"

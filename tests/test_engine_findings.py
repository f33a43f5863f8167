"""Findings of a synthesis walkthrough at scale: a resume with a smaller --how_many, a missing
label partner on resume, the early stop under torchrun, the advice for an RGB label map. Tiny
untrained checkpoint (tests/synthesis_runs.run), 32x32 maps."""
import json
import os
import subprocess
import sys

import pytest

from pix2pixhd.data.__main__ import main as data_main
from pix2pixhd.errors import InputError
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_synthesis_complete import _crash_after
from tests.test_synthesis_engine import ROOT, free_port
from tests.test_synthesis_user_findings import ids, photo

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _maps(folder, n):
    for k in range(n):
        ids(folder / f"m{k}.png", h=32, w=32)
    return folder


def _job(out):
    return json.loads((out / "synthesis.json").read_text())


def test_a_smaller_how_many_on_a_partial_folder_is_refused_and_the_folder_stays_incomplete(
        run, tmp_path, monkeypatch):
    """A stopped 8-map job resumed with --how_many 2 was marked complete (n_inputs 2) although
    the folder held only part of the job."""
    maps, out = _maps(tmp_path / "maps", 8), tmp_path / "out"
    _crash_after(monkeypatch, 3)
    with pytest.raises(OSError, match="simulated crash"):
        synth(run, maps, out, "--batch_size", 1, "--writers", 1)
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"--how_many 2: --out .* holds a larger part of this job \(its "
                                          r"synthesis.json records 8 inputs\)"):
        synth(run, maps, out, "--how_many", 2)
    job = _job(out)
    assert job["complete"] is False and job["n_inputs"] == 8, job
    # a synthesis.json without the count (an older one): the manifest's outputs tell
    job.pop("n_inputs")
    (out / "synthesis.json").write_text(json.dumps(job))
    with pytest.raises(InputError, match=r"its manifest holds \d output\(s\) of inputs after the first 1"):
        synth(run, maps, out, "--how_many", 1)
    # the whole job (or a --how_many that covers it) resumes and completes it
    assert synth(run, maps, out, "--how_many", 8) == 0
    job = _job(out)
    assert job["complete"] is True and job["n_inputs"] == 8 and len(manifest(out)) == 8


def test_a_missing_or_changed_label_partner_is_redone_on_resume(run, tmp_path, capsys):
    """A resume counted an output complete by its photo alone: a deleted label partner stayed
    missing, synthesis.json said complete and `data scan` reported the folder."""
    maps, out = _maps(tmp_path / "maps", 3), tmp_path / "out"
    assert synth(run, maps, out) == 0
    first = (out / "test_label" / "m0.png").read_bytes()
    (out / "test_label" / "m0.png").unlink()
    (out / "test_label" / "m1.png").write_bytes(b"short")
    capsys.readouterr()
    assert synth(run, maps, out) == 0
    said = capsys.readouterr().out
    assert "wrote 2 images" in said and "1 already complete" in said, said
    assert (out / "test_label" / "m0.png").read_bytes() == first
    assert (out / "test_label" / "m1.png").stat().st_size == len(first)
    assert _job(out)["complete"] is True
    assert data_main(["scan", str(out)]) == 0
    assert all(r["label_bytes"] == (out / r["label"]).stat().st_size for r in manifest(out))


def test_an_rgb_label_map_skip_reason_does_not_send_a_palette_less_checkpoint_to_dataroot(run, tmp_path):
    """--dataroot reads colour maps only for a checkpoint trained with --palette."""
    inp = tmp_path / "in"
    ids(inp / "a.png", h=32, w=32)
    photo(inp / "b.png", h=32, w=32)
    assert synth(run, inp, tmp_path / "out") == 0
    rec = {r["input"]: r for r in manifest(tmp_path / "out")}
    reason = next(r["reason"] for r in rec.values() if r["status"] == "skipped")
    assert "--dataroot" not in reason and "trained with --palette" in reason, reason


def _torchrun(run, inp, out):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(ROOT / "synthesize.py"),
           "--checkpoint", str(run), "--input", str(inp), "--out", str(out), "--device", "cpu",
           "--no_progress", "--workers", "0"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_under_torchrun_the_early_stop_is_the_jobs_not_a_shards(run, tmp_path):
    """Maps alternating good and bad: rank 1's shard was all bad, and its early stop failed the
    job although rank 0 wrote its half. A job whose inputs are all bad stops, and the OUT it made
    is removed under torchrun too."""
    from concurrent.futures import ThreadPoolExecutor
    alt = tmp_path / "alt"
    for k in range(6):
        (ids if k % 2 == 0 else photo)(alt / f"m{k}.png", h=32, w=32)
    bad = tmp_path / "bad"
    for k in range(5):
        photo(bad / f"m{k}.png", h=32, w=32, seed=k)
    with ThreadPoolExecutor(2) as pool:   # beside each other: a torchrun is about one core's work
        alt_run, bad_run = (pool.submit(_torchrun, run, inp, tmp_path / f"{inp.name}o") for inp in (alt, bad))
    p = alt_run.result()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "wrote 3 images" in p.stdout and "cannot be synthesized" not in p.stdout + p.stderr, p.stdout
    assert _job(tmp_path / "alto")["complete"] is True
    p = bad_run.result()
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-5000:]
    assert "all 5 inputs of --input" in p.stderr and "was made for this run and removed again" in p.stderr, p.stderr
    assert not (tmp_path / "bado").exists()


def test_the_no_clusters_note_is_said_by_rank_0_only(monkeypatch, capsys):
    """Under torchrun every rank printed it."""
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.features import FeatureSource
    from tests.test_features import _clusters, _maps
    inst, label = _maps(n=2, h=16, w=16)
    cfg = TrainConfig(label_feat=True, feat_num=3).resolved()
    monkeypatch.setenv("RANK", "1")
    FeatureSource(cfg, "sample", clusters=_clusters())(label, inst, seeds=[0, 1])
    assert "no saved clusters" not in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    FeatureSource(cfg, "sample", clusters=_clusters())(label, inst, seeds=[0, 1])
    assert "note: class(es) [0, 7] have no saved clusters" in capsys.readouterr().err

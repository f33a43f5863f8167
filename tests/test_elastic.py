"""Fault tolerance: scripts/elastic_demo.py kills a DDP worker mid-run under torchrun
--max_restarts=1; the restart resumes from latest.pt (--auto_resume) and finishes, and the steps
each attempt actually trained (logged per step by the demo's worker) add up to an uninterrupted
run's: same step numbers with the same files, no gap, nothing retrained but the steps after the
last save, and the same final weights."""
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.fault(cls="interrupted run",
                   case="SIGKILL of a DDP worker under torchrun --max_restarts=1: the restart resumes "
                        "from latest.pt, steps as an uninterrupted run's, bit-equal end")
def test_killed_worker_restarts_and_the_attempts_train_the_uninterrupted_sequence(tmp_path, capsys):
    # The demo's main() in this process (its workers run the script under torchrun): one Python
    # and torch start-up fewer. Every wait in it is bounded by --timeout.
    spec = importlib.util.spec_from_file_location("elastic_demo", REPO / "scripts" / "elastic_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    rc = demo.main(["--workdir", str(tmp_path), "--timeout", "250"])
    out, err = capsys.readouterr()
    log = (tmp_path / "torchrun.log").read_text()[-4000:] if (tmp_path / "torchrun.log").exists() else ""
    assert rc == 0, out + err[-3000:] + log
    assert "[FAIL]" not in out and "SIGKILL worker pid" in out
    for rank in (0, 1):
        for check in (r"attempt 0 trained 1\.\.K \(K=\d+\)", r"attempt 1 resumed from step S=\d+",
                      r"attempt 1 trained S\+1\.\.12",
                      r"attempt 0's 1\.\.S \+ attempt 1's S\+1\.\.12 == the reference's steps and files"):
            assert re.search(rf"\[ok\] rank {rank}: {check}", out), (rank, check, out)
    assert "[ok] final G and D weights equal the reference run's, bit for bit" in out


def test_auto_resume_starts_fresh_without_a_checkpoint_and_resumes_with_one(tmp_path):
    from pix2pixhd.cli import resolve_config
    args = ["--auto_resume", "--checkpoints_dir", str(tmp_path), "--name", "x", "--ngf", "8"]
    assert not resolve_config(args).resume
    exp = tmp_path / "x"
    exp.mkdir()
    cfg = resolve_config(args)
    (exp / "config.json").write_text(cfg.to_json())
    import torch
    torch.save({"global_step": 0}, exp / "latest.pt")   # a checkpoint that reads (a stand-in)
    again = resolve_config(["--auto_resume", "--checkpoints_dir", str(tmp_path), "--name", "x"])
    assert again.resume and again.which_epoch == "latest" and again.ngf == 8  # options from the run

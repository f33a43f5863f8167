"""Fault tolerance: scripts/elastic_demo.py kills a DDP worker mid-run under torchrun
--max_restarts=1; the restart resumes from latest.pt (--auto_resume) and finishes every step."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_killed_worker_restarts_and_resumes_from_latest(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "elastic_demo.py"), "--workdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=450)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:] + (tmp_path / "torchrun.log").read_text()[-4000:]
    assert "[FAIL]" not in p.stdout and "SIGKILL worker pid" in p.stdout


def test_auto_resume_starts_fresh_without_a_checkpoint_and_resumes_with_one(tmp_path):
    from pix2pixhd.cli import resolve_config
    args = ["--auto_resume", "--checkpoints_dir", str(tmp_path), "--name", "x", "--ngf", "8"]
    assert not resolve_config(args).resume
    exp = tmp_path / "x"
    exp.mkdir()
    cfg = resolve_config(args)
    (exp / "config.json").write_text(cfg.to_json())
    (exp / "latest.pt").write_bytes(b"")
    again = resolve_config(["--auto_resume", "--checkpoints_dir", str(tmp_path), "--name", "x"])
    assert again.resume and again.which_epoch == "latest" and again.ngf == 8  # options from the run

"""Under torchrun, one rank's error (a file it cannot read, found mid-run with --validate off) ends
that rank with its one line while the other waits for it in a collective: gloo then raises
"Connection closed by peer" / "reset by peer" there (NCCL its remote error), and that rank printed
~30 lines of the backend's traceback, which buried the real cause. Now it prints one line too,
saying another rank ended and that its own line says why."""
import re
import subprocess
from pathlib import Path

import pytest

from pix2pixhd.errors import peer_gone, run

GLOO = ("[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:37509: Connection reset "
        "by peer. This is typically caused by a remote worker hanging or crashing.")


@pytest.mark.fault(cls="bad dataset", case="a collective's peer went away (gloo 'Connection reset by peer'): "
                                           "one error line naming the other rank, not the backend's traceback")
def test_a_collective_whose_peer_went_away_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("PIX2PIXHD_DEBUG", raising=False)

    def main(argv):
        raise RuntimeError(GLOO)
    assert run(main, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error (rank 0 of 2): stopped: another rank ended while this "
                                                  "one waited for it ([../third_party/gloo"), err
    assert "that rank's own error says why" in err, err


def test_other_runtime_errors_and_a_single_process_are_left_as_they_are(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert peer_gone(RuntimeError("CUDA out of memory")) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert peer_gone(RuntimeError(GLOO)) is None   # no other rank: not this case


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.fault(cls="bad dataset", case="one rank of two cannot read a training image mid-run (--validate off): "
                                           "each rank ends with one line, no traceback")
def test_one_ranks_unreadable_image_ends_every_rank_with_one_line(tmp_path):
    from tests.test_ddp_worker_death import ARGS
    from tests.test_distributed import REPO, make_data, torchrun_cmd, torchrun_env
    data = make_data(tmp_path / "data", n=8)
    _truncate(sorted((data / "train_img").iterdir())[3])
    cmd = torchrun_cmd(REPO / "train_hd.py", *ARGS, "--nThreads", "0", "--validate", "off", "--dataroot", str(data),
                       "--checkpoints_dir", str(tmp_path / "ck"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=torchrun_env())
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-4000:]
    lines = re.findall(r"error \(rank (\d) of 2\): (.*)", out)
    assert any("cannot read this photo" in e for _, e in lines), out[-4000:]
    # the other rank's line (when torchrun let it print before stopping it): one line, no traceback
    # (torchrun prefixes a rank's traceback with [rankN]:; its own summary of failed ranks follows)
    assert not re.search(r"^\[rank\d\]:", out, re.M), out[-4000:]
    assert all(e.startswith("stopped: another rank ended while this one waited for it (")
               for _, e in lines if "cannot read this photo" not in e), lines

"""``python -m pix2pixhd.features encode`` / ``precompute`` stopped by SIGTERM or SIGINT sent to its
whole process group (GNU timeout, SLURM's scancel, a terminal's Ctrl-C), DataLoader workers
included. The workers died of it, and the user read torch's "DataLoader worker (pid N) is killed
by signal: Terminated" (an out-of-memory kill, it seems) or a traceback; now the command stops with
one line saying what it had written and training's status for a stop (75 SIGTERM, 130 SIGINT),
and nothing it leaves is half-written (a feature map was written in place, so a stop mid-write left
a cut PNG).

A tiny untrained E on 6 synthetic 64x32 scenes, 2 loader workers. The signal is sent by the worker
about to decode image K, which the command waits for next (precompute: once map K-1 is written):
nothing depends on timing."""
import io
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pix2pixhd.errors import INTERRUPTED_EXIT_STATUS
from pix2pixhd.trainer import STOPPED_EXIT_STATUS
from tests.features_runs import tiny_run
from tests.test_sigterm import group_killed_on_exit, run_env

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py

REPO = Path(__file__).resolve().parents[1]
N, K = 6, 3
# python -m pix2pixhd.features, whose loader worker about to decode image K (once the file
# AFTER exists, if one is given) sends SIGNUM to the whole process group
SIGNALLED = r"""
import os, runpy, signal, sys, time
from pathlib import Path
from pix2pixhd.data.dataset import PairedDataset
K, signum, after = int(sys.argv.pop(1)), int(sys.argv.pop(1)), sys.argv.pop(1)
get = PairedDataset.__getitem__
def getitem(self, key):
    if (key[0] if isinstance(key, tuple) else key) == K:   # in a loader worker
        t0 = time.monotonic()
        while after and not Path(after).exists() and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        os.killpg(0, signum)
    return get(self, key)
PairedDataset.__getitem__ = getitem
sys.argv[0] = "pix2pixhd.features"
runpy.run_module("pix2pixhd.features", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(a run folder with an untrained E, its dataset of N scenes), read by 2 loader workers."""
    return tiny_run(tmp_path_factory.mktemp("features_stop"), N, nThreads=2)


def _signalled(signum: int, after: Path | None, *args: str) -> tuple[int, str]:
    """The command ``args`` signalled at image K; (its exit status, its stderr)."""
    cmd = [sys.executable, "-c", SIGNALLED, str(K), str(int(signum)), str(after or ""), *args, "--device", "cpu"]
    with group_killed_on_exit(subprocess.Popen(cmd, cwd=REPO, env=run_env(), stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, start_new_session=True)) as p:
        _, err = p.communicate(timeout=120)
    assert "data loader worker" not in err and "DataLoader worker" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return p.returncode, err


@pytest.mark.fault(cls="interrupted run",
                   case="features encode: SIGTERM to its process group (loader workers included) while E "
                        "runs: one line, nothing written, status 75, no dead-worker error")
def test_sigterm_stops_encode_with_one_line_and_nothing_written(run):
    folder, _ = run
    before = sorted(p.name for p in folder.iterdir())
    status, err = _signalled(signal.SIGTERM, None, "encode", "--checkpoint", str(folder))
    assert status == STOPPED_EXIT_STATUS == 75, (status, err[-3000:])
    line = (f"stopped by SIGTERM: nothing written ({folder / 'features_clustered.pt'} is written whole at "
            "encode's end; it was not created); rerun the same command (encode starts over)")
    assert err.strip().splitlines() == [line], err[-3000:]
    assert sorted(p.name for p in folder.iterdir()) == before   # no clusters file, no temporary one


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: SIGINT (Ctrl-C) to its process group after map K: one line "
                        "naming the K maps written, each whole, and the progress file recording them for a "
                        "rerun, status 130, no dead-worker error")
def test_sigint_stops_precompute_with_the_maps_written_whole(run, tmp_path):
    folder, _ = run
    out = tmp_path / "feat"
    first = sorted(p.stem for p in (run[1] / "train_label").iterdir())
    # batches of K: E has written maps 1..K before it needs image K + 1 (the worker waits there)
    status, err = _signalled(signal.SIGINT, out / f"{first[K - 1]}.png", "precompute", "--checkpoint",
                             str(folder), "--out_dir", str(out), "--batch_size", str(K))
    assert status == INTERRUPTED_EXIT_STATUS == 130, (status, err[-3000:])
    line = (f"stopped by SIGINT: {K} feature map(s) written to {out}/ before the stop, each whole (through a "
            f"temporary file), the others not; {tmp_path / '.feat.progress'} records the first {K}: rerun the "
            "same command to write the others; exit status 130")
    assert err.strip().splitlines() == [line], err[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [f"{s}.png" for s in first[:K]]
    assert (tmp_path / ".feat.progress").is_file()   # what the line says a rerun continues from
    for p in out.iterdir():
        with Image.open(p) as im:
            im.load()
            assert im.size == (128, 64)


@pytest.mark.fault(cls="interrupted run",
                   case="features precompute: Ctrl-C while a map is being written: that map is finished, "
                        "no cut PNG or temporary file left, status 130")
def test_ctrl_c_while_a_map_is_written_leaves_no_cut_file(run, tmp_path, monkeypatch, capsys):
    """SIGINT halfway through the 3rd map's bytes: the map was written in place, and the stop left
    it cut, a PNG --load_features fails on."""
    from pix2pixhd.features import main
    folder, _ = run
    out = tmp_path / "feat"
    save, calls = Image.Image.save, []

    def signalled_halfway(self, fp, *a, **k):
        calls.append(fp)
        if len(calls) != 3:
            return save(self, fp, *a, **k)
        buf = io.BytesIO()
        save(self, buf, format="PNG")
        data = buf.getvalue()
        with open(fp, "wb") as f:
            f.write(data[:len(data) // 2])
            f.flush()
            signal.raise_signal(signal.SIGINT)   # its handler runs before this returns
            f.write(data[len(data) // 2:])
    monkeypatch.setattr(Image.Image, "save", signalled_halfway)
    with pytest.raises((SystemExit, KeyboardInterrupt)) as e:
        main(["precompute", "--checkpoint", str(folder), "--out_dir", str(out), "--device", "cpu"])
    monkeypatch.undo()
    cut = []
    for p in sorted(out.iterdir()):
        try:
            with Image.open(p) as im:
                im.load()
        except (OSError, SyntaxError):
            cut.append(p.name)
    assert not cut, f"cut PNGs left: {cut} (of {sorted(q.name for q in out.iterdir())})"
    assert isinstance(e.value, SystemExit) and e.value.code == INTERRUPTED_EXIT_STATUS, repr(e.value)
    first = sorted(p.stem for p in (run[1] / "train_label").iterdir())
    assert sorted(p.name for p in out.iterdir()) == [f"{s}.png" for s in first[:3]]
    assert capsys.readouterr().err.startswith(f"stopped by SIGINT: 3 feature map(s) written to {out}/ before the stop")

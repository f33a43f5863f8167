"""benchmarks/loader_memory.py at a tiny size (200 samples, 1 worker, a few batches): the table and
the JSON record have their fields, every memory figure is positive, the workers were measured as
forks (their private memory is a fraction of their RSS), and the dataset of hard links it builds
is reused by a later run. No figure is compared with another mode's: at this size
the records are a few pages either way."""
import json
import os

import pytest

from benchmarks import loader_memory as LM

pytestmark = pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"),
                                reason="no /proc/PID/smaps_rollup here (Linux 4.14 or later): the "
                                       "benchmark reads the workers' memory from it")


def test_rows_fields_positive_and_json_written(tmp_path, capsys):
    out = tmp_path / "m.json"
    data = tmp_path / "data"
    assert LM.main(["--n", "200", "--workers", "1", "--batches", "3", "--records", "compact",
                    "--data", str(data), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "made 200 samples" in text and "USS 1st batch" in text and f"wrote {out}" in text
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "loader_memory" and "--n 200" in rec["command"]
    assert (rec["n"], rec["workers"], rec["batches"], rec["validate"]) == (200, 1, 3, "off")
    assert rec["device"]["device"] == "cpu" and rec["device"]["torch"], rec["device"]   # what it ran on
    assert [(r["records"], r["worker"]) for r in rec["rows"]] == [("compact", 0)]
    r = rec["rows"][0]
    for k in ("parent_rss_mib_before_fork", "parent_rss_mib", "uss_mib_first_batch", "uss_mib",
              "pss_mib", "rss_mib"):
        assert r[k] > 0, (k, r)
    # a fork shares the parent's pages (torch, the dataset): a spawned worker (the start method a
    # spawned measuring process would pass on) holds most of its RSS privately
    assert r["uss_mib"] < r["rss_mib"] / 2 and r["pss_mib"] < r["rss_mib"], r
    d = data / "tiny_8px_200_4u"
    assert os.stat(d / "train_img" / "s000150.png").st_nlink > 1   # hard links, taken by the dataset
    assert LM.ensure_data(data, 200, 4) == d and "made" not in capsys.readouterr().out   # reused

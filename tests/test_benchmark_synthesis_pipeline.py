"""benchmarks/synthesis.py --pipeline at tiny sizes: one run measures the old serial path and the
engine on the same maps, for each stage, and their outputs are equal. No time is asserted."""
import json

from benchmarks import synthesis as S


def test_pipeline_rows_for_both_paths_and_equal_outputs(tmp_path, capsys):
    out = tmp_path / "pipeline.json"
    assert S.main(["--pipeline", "--stage", "global,local", "--res", "128x64", "--ngf", "4",
                   "--n_blocks_global", "1", "--n_blocks_local", "1", "--n_images", "3", "--batch", "1",
                   "--workers", "1", "--writers", "1", "--data", str(tmp_path / "maps"),
                   "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "in G" in text and "peak RSS MiB" in text and "vs old" in text
    rec = json.loads(out.read_text())
    assert rec["benchmark"] == "synthesis_pipeline" and "--pipeline" in rec["command"] and rec["n_images"] == 3
    assert [(r["stage"], r["res"], r["path"]) for r in rec["rows"]] == [
        ("global", "128x64", "old"), ("global", "128x64", "engine"),
        ("local", "128x64", "old"), ("local", "128x64", "engine")]
    for r in rec["rows"]:
        assert r["images"] == 3 and r["images_per_s"] > 0 and r["peak_rss_mib"] > 0
        assert 0 < r["generator_fraction"] < 1
        # batch 1 on both paths: the same generator calls on the same weights and inputs. The
        # photos were byte-equal in most runs of this test here, not in all: in at least one of
        # ten, a pixel differed by one level (fp32 CPU kernels in two processes; the cause is not
        # pinned down). More than one level would be a real difference.
        assert r["max_abs_diff_u8"] is not None and r["max_abs_diff_u8"] <= 1
    old, engine = rec["rows"][0], rec["rows"][1]
    assert old["workers_peak_rss_mib"] is None and engine["workers_peak_rss_mib"] > 0
    assert engine["speedup_vs_old"] > 0 and "speedup_vs_old" not in old
    assert len(list((tmp_path / "maps" / "maps_128x64" / "test_label").iterdir())) == 3

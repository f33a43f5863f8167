"""What makes a synthesis in an --out the same job (the clusters file a sampled feature reads),
and what synthesize.py says around it: contradictory feature options, the note without --inst,
--overwrite of another --out_phase, an ONNX file of another run. Tiny untrained checkpoints
(tests/test_synthesis_engine.save_run), 16x24 maps of ids 0..4."""
import hashlib
import json

import pytest

from pix2pixhd.engine import file_sha256
from pix2pixhd.errors import ConfigError, InputError
from tests.synthesis_runs import manifest, synth
from tests.test_synthesis_engine import save_clusters, save_run
from tests.test_synthesis_user_findings import ids

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _feature_run(folder, k=4, **options):
    """A label_nc 5 run with --instance_feat (3 features) and its clusters, k per class."""
    cfg = save_run(folder, label_nc=5, instance_feat=True, feat_num=3, n_downsample_E=2,
                   **{"no_instance": True, **options})
    save_clusters(folder, cfg, k=k)
    return cfg


@pytest.fixture
def maps(tmp_path):
    for n in "ab":
        ids(tmp_path / "maps" / f"{n}.png")
    return tmp_path / "maps"


def test_a_changed_clusters_file_is_another_job(tmp_path, maps):
    """`features encode` again (here 2 clusters instead of 4) between two runs of one synthesis:
    the rerun used to resume, keeping outputs drawn from the old clusters (index 2 and 3 beside
    the new 0 and 1). It is another job now: refused, or replaced with --overwrite."""
    run, out = tmp_path / "run", tmp_path / "out"
    cfg = _feature_run(run)
    assert synth(run, maps, out, "--num_samples", 2, "--how_many", 1) == 0
    job = json.loads((out / "synthesis.json").read_text())
    assert job["clusters_sha256"] == file_sha256(run / "features_clustered.pt")
    save_clusters(run, cfg, k=2)
    with pytest.raises(InputError, match=r"another synthesis \(clusters_sha256: "):
        synth(run, maps, out, "--num_samples", 2)
    assert synth(run, maps, out, "--num_samples", 2, "--overwrite") == 0
    lines = manifest(out)
    assert len(lines) == 4 and all(0 <= k < 2 for r in lines for _, k in r["clusters"].values())


def test_an_out_folder_written_before_the_clusters_file_was_in_the_identity_still_resumes(tmp_path, maps, capsys):
    """synthesis.json and manifest lines as the previous version wrote them (no clusters_sha256):
    the same command resumes them with a note, and the merged manifest keeps their lines."""
    run, out = tmp_path / "run", tmp_path / "out"
    _feature_run(run)
    assert synth(run, maps, out, "--num_samples", 2, "--how_many", 1) == 0
    job = json.loads((out / "synthesis.json").read_text())
    old = {k: v for k, v in job.items() if k not in ("clusters_sha256", "digest")}
    old["digest"] = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    (out / "synthesis.json").write_text(json.dumps(old))
    lines = [dict(r, job=old["digest"]) for r in manifest(out)]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    capsys.readouterr()
    assert synth(run, maps, out, "--num_samples", 2) == 0
    said = capsys.readouterr()
    assert "wrote 2 images" in said.out and "2 already complete" in said.out, said.out
    assert "predates the clusters file in a job's identity" in said.err
    assert len(manifest(out)) == 4   # the old lines too: a rerun finds all four complete
    assert synth(run, maps, out, "--num_samples", 2) == 0
    assert "wrote 0 images" in capsys.readouterr().out


@pytest.mark.parametrize("given, named", [
    (["--feature_mode", "sample", "--cluster", "3"], ["--feature_mode sample", "--cluster 3"]),
    (["--feature_mode", "encoded", "--cluster", "3"], ["--feature_mode encoded", "--cluster 3"]),
    (["--use_encoded_image", "--cluster", "3"], ["--use_encoded_image", "--cluster 3"]),
    (["--use_encoded_image", "--feature_mode", "cluster"], ["--use_encoded_image", "--feature_mode cluster"]),
])
def test_contradictory_feature_options_are_refused_naming_both(tmp_path, maps, given, named):
    """They used to run silently in one of the two modes (cluster, or encoded)."""
    with pytest.raises(ConfigError) as e:
        synth(tmp_path / "no_run", maps, tmp_path / "out", *given)   # refused before the checkpoint is read
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in named), str(e.value)
    assert not (tmp_path / "out").exists()


def test_feature_options_that_agree_pick_their_mode():
    from pix2pixhd.cli import _feature_mode, synthesize_parser
    for given, mode in (([], "sample"), (["--cluster", "3"], "cluster"),
                        (["--feature_mode", "cluster", "--cluster", "3"], "cluster"), (["--use_encoded_image"], "encoded"),
                        (["--use_encoded_image", "--feature_mode", "encoded"], "encoded")):
        a = synthesize_parser().parse_args(["--checkpoint", "c", "--input", "i", "--out", "o", *given])
        assert _feature_mode(a) == mode, given


@pytest.mark.parametrize("no_instance", [True, False])
def test_the_missing_inst_note_says_what_the_run_does_without_instance_maps(tmp_path, maps, capsys, no_instance):
    """An --instance_feat run without --inst: its features are per class (the label map is the
    instance map); boundaries are mentioned only for a run that has the boundary channel."""
    run = tmp_path / "run"
    _feature_run(run, no_instance=no_instance)
    assert synth(run, maps, tmp_path / "out") == 0
    note = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("note: no --inst folder"))
    assert "--instance_feat features are per class instead of per instance" in note
    assert ("instance boundaries are taken from the label map" in note) == (not no_instance), note


def test_overwrite_removes_the_emptied_folders_of_another_out_phase(tmp_path, maps):
    """After --out_phase val, an --overwrite to test left val_img/ val_inst/ val_label/ behind,
    empty, and `python -m pix2pixhd.data scan OUT` reported split 'val'."""
    from pix2pixhd.data.__main__ import main as data_main
    run, out = tmp_path / "run", tmp_path / "out"
    save_run(run, label_nc=5, no_instance=False)   # writes {phase}_inst/ too (the label map's)
    assert synth(run, maps, out, "--out_phase", "val") == 0
    assert (out / "val_inst").is_dir()
    assert synth(run, maps, out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test_img", "test_inst", "test_label"]
    assert data_main(["scan", str(out)]) == 0


def test_an_onnx_file_of_another_run_is_said_to_be_that_runs(tmp_path, capsys):
    """--onnx_path naming another run's export: the fix named used to re-export over that run's
    file (`--out OTHER/generator.onnx`); it names a file of this run's own."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.test_onnx_staleness import _export, _save
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    _save(mine, "latest", seed=1)
    _save(theirs, "latest", seed=2)
    _export(theirs)
    photos = tmp_path / "photos"
    from tests.test_synthesis_user_findings import photo
    photo(photos / "p.png")
    before = (theirs / "generator.onnx").read_bytes()
    with pytest.raises(ConfigError) as e:
        synth(mine, photos, tmp_path / "out", "--backend", "onnx", "--onnx_path", theirs / "generator.onnx",
              "--no_test_dropout")
    msg = str(e.value)
    assert "\n" not in msg and f"belongs to run {theirs.resolve()}" in msg, msg
    assert f"`python -m pix2pixhd.export --checkpoint {mine} --out {mine / 'generator.onnx'}`" in msg
    assert f"--out {theirs}" not in msg
    assert (theirs / "generator.onnx").read_bytes() == before and not (tmp_path / "out").exists()

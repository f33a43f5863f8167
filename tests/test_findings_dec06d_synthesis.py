"""Findings of an audit of synthesis and export on hostile or broken inputs: --overwrite removing
files outside --out through links, NaN outputs written as black photos (and passing the ONNX
parity check), bad metadata in an .onnx file, synthesis.json and manifest lines of the wrong
shape. Tiny untrained checkpoints (tests/synthesis_runs.run), 32x32 maps."""
import json
import os
from pathlib import Path

import pytest
import torch

from pix2pixhd.cli import synthesize_main
from pix2pixhd.errors import InputError
from pix2pixhd.errors import run as run_command
from pix2pixhd.synthesis import NonFiniteOutputError, Synthesizer, load_generator
from tests.synthesis_runs import manifest, run, synth  # noqa: F401  (run: a fixture)
from tests.test_engine_findings import _job, _maps
from tests.test_synthesis_engine import save_clusters, save_run

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _errors(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error")]


# ---- 1: --overwrite and links -----------------------------------------------------------------------
@pytest.mark.fault(cls="path tricks",
                   case="synthesize --overwrite where a manifest path or a split folder leads out of OUT through "
                        "a link: nothing outside OUT removed, the note says what was left")
def test_overwrite_removes_nothing_a_link_leads_to_outside_out(run, tmp_path, capsys):
    """A manifest line naming evil/important.txt (evil -> a folder outside OUT) and a test_inst/
    that is a link: --overwrite deleted the files they lead to."""
    maps, out = _maps(tmp_path / "maps", 2), tmp_path / "out"
    assert synth(run, maps, out) == 0
    victim, other = tmp_path / "victim", tmp_path / "other"
    victim.mkdir(), other.mkdir()
    (victim / "important.txt").write_text("x"), (victim / "b.txt").write_text("y"), (other / "c.txt").write_text("z")
    os.symlink(victim, out / "evil")
    os.symlink(other, out / "test_inst")
    with open(out / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"job": _job(out)["digest"], "status": "ok", "output": "evil/important.txt",
                            "label": "evil/b.txt"}) + "\n")
    capsys.readouterr()
    assert synth(run, maps, out, "--seed", 5, "--overwrite") == 0
    assert sorted(p.name for p in victim.iterdir()) == ["b.txt", "important.txt"]
    assert [p.name for p in other.iterdir()] == ["c.txt"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "--overwrite" in line]
    assert len(notes) == 1 and "left 2 path(s) its manifest names that lead elsewhere (e.g. evil/important.txt)" \
        in notes[0] and "test_inst/ (a link, not followed" in notes[0], notes
    assert len(manifest(out)) == 2 and _job(out)["seed"] == 5


# ---- 2: non-finite outputs ----------------------------------------------------------------------------
def _nan_weight(folder: Path) -> None:
    ck = torch.load(folder / "latest.pt", weights_only=False)
    key = next(k for k, v in ck["G"].items() if v.is_floating_point() and v.dim() == 4)
    ck["G"][key].view(-1)[0] = float("nan")
    torch.save(ck, folder / "latest.pt")


@pytest.mark.fault(cls="numerics",
                   case="a generator giving NaN in synthesis: one line naming the checkpoint and the input, no "
                        "black photo written")
def test_a_nan_weight_is_an_error_naming_the_checkpoint_and_the_input(tmp_path, capsys):
    """It wrote black photos and said "wrote 2 images", exit 0."""
    ckpt, maps, out = tmp_path / "run", _maps(tmp_path / "maps", 2), tmp_path / "out"
    save_run(ckpt, label_nc=5, no_instance=True)
    _nan_weight(ckpt)
    args = ["--checkpoint", str(ckpt), "--input", str(maps), "--out", str(out), "--device", "cpu",
            "--no_progress", "--workers", "0"]
    assert run_command(synthesize_main, args) == 1
    [line] = _errors(capsys.readouterr().err)
    assert line.startswith(f"error: the checkpoint {(ckpt / 'latest.pt').resolve()} gave NaN or inf for "
                           f"{maps / 'm0.png'}: its weights hold non-finite values"), line
    assert not list((out / "test_img").iterdir())
    g, cfg = load_generator(ckpt, "latest", "cpu")   # the Python API raises too
    with pytest.raises(NonFiniteOutputError, match="the generator gave NaN or inf for x.png"):
        Synthesizer(g, cfg).synthesize(torch.zeros(1, 1, 32, 32, dtype=torch.long), source="x.png")


def test_nan_cluster_centres_are_an_error_naming_the_clusters_file(tmp_path, capsys):
    ckpt, maps, out = tmp_path / "run", _maps(tmp_path / "maps", 1), tmp_path / "out"
    cfg = save_run(ckpt, label_nc=5, instance_feat=True, feat_num=3, n_downsample_E=2, no_instance=True)
    save_clusters(ckpt, cfg)
    d = torch.load(ckpt / "features_clustered.pt", weights_only=True)
    for v in d["centers"].values():
        v.fill_(float("nan"))
    torch.save(d, ckpt / "features_clustered.pt")
    assert run_command(synthesize_main, ["--checkpoint", str(ckpt), "--input", str(maps), "--out", str(out),
                                         "--device", "cpu", "--no_progress", "--workers", "0"]) == 1
    [line] = _errors(capsys.readouterr().err)   # names the file and the command that rewrites it
    assert str(ckpt / "features_clustered.pt") in line and "NaN or inf" in line, line
    assert line.endswith(f"`python -m pix2pixhd.features encode --checkpoint {ckpt}`"), line
    assert not (out / "test_img").is_dir() or not list((out / "test_img").iterdir())


@pytest.mark.fault(cls="numerics",
                   case="NaN in the ONNX export's parity check: it fails in one line, no file written")
def test_the_export_parity_check_fails_on_nan_and_writes_nothing(tmp_path, capsys):
    """It printed `max |onnxruntime - torch| ... : 0` and wrote the file."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from pix2pixhd.export import main
    save_run(tmp_path, label_nc=4, no_instance=True)
    _nan_weight(tmp_path)
    assert run_command(main, ["--checkpoint", str(tmp_path), "--legacy"]) == 1
    [line] = _errors(capsys.readouterr().err)
    assert line.startswith(f"error: {tmp_path / 'generator.onnx'} was not written (there was no generator.onnx "
                           "before): the PyTorch generator itself outputs NaN or inf"), line
    assert not (tmp_path / "generator.onnx").exists()


# ---- 3: bad metadata in an ONNX file ------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from pix2pixhd import GlobalGenerator
    from pix2pixhd.export import export_onnx
    torch.manual_seed(0)
    g = GlobalGenerator(6, 3, ngf=4, n_downsampling=1, n_blocks=1).eval()
    return g, export_onnx(g, tmp_path_factory.mktemp("onnx") / "g.onnx", dynamo=False, check=False,
                          config={"label_nc": 5})


def test_nan_from_onnxruntime_alone_fails_the_parity_check(onnx_file, tmp_path, monkeypatch):
    from pix2pixhd.export import ExportCheckError, OnnxGenerator, check_onnx
    g, path = onnx_file
    monkeypatch.setattr(OnnxGenerator, "__call__",
                        lambda self, x: torch.full((x.shape[0], 3, *x.shape[2:]), float("nan")))
    with pytest.raises(ExportCheckError) as e:
        check_onnx(g, path, sizes=[(8, 12)], written=tmp_path / "out.onnx")
    assert str(e.value) == (f"{tmp_path / 'out.onnx'} was not written (there was no out.onnx before): onnxruntime "
                            "outputs NaN or inf on a 12x8 (WxH) input where PyTorch does not: the export is not "
                            "faithful; export again with the other exporter (--legacy or not) or another --opset")


@pytest.mark.parametrize("key, value, why", [
    ("required_multiple", "0", "is not a number >= 1"), ("required_multiple", "abc", "is not a whole number"),
    ("input_nc", "x", "is not a whole number"), ("config", "{not json", "is not JSON"),
    ("config", "[1,2]", "is not a JSON object (the training config)")])
def test_bad_onnx_metadata_is_one_line_naming_the_field(onnx_file, tmp_path, key, value, why):
    from pix2pixhd.export import OnnxGenerator, _with_metadata
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_with_metadata(onnx_file[1], {f"pix2pixhd.{key}": value}))
    with pytest.raises(InputError) as e:
        OnnxGenerator(bad)
    assert str(e.value) == (f"ONNX generator {bad}: its metadata pix2pixhd.{key} {value!r} {why}; the file was "
                            "edited or damaged; export it again with `python -m pix2pixhd.export --checkpoint "
                            f"<training run folder> --out {bad}`")


def test_external_data_outside_the_folder_is_one_line(onnx_file, tmp_path):
    import onnx
    from pix2pixhd.export import OnnxGenerator
    m = onnx.load(str(onnx_file[1]))
    init = max(m.graph.initializer, key=lambda t: len(t.raw_data))
    init.ClearField("raw_data")
    init.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "../../secret.bin"), ("offset", "0"), ("length", "16")):
        init.external_data.append(onnx.StringStringEntryProto(key=k, value=v))
    bad = tmp_path / "a" / "b" / "ext.onnx"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(m.SerializeToString())
    with pytest.raises(InputError, match=rf"^ONNX generator {bad} cannot be loaded by onnxruntime \(.*secret\.bin"
                                         r".*\): the file is damaged, or refers to data it may not read; export "):
        OnnxGenerator(bad)


# ---- 4: synthesis.json and manifest lines of the wrong shape ---------------------------------------------
@pytest.mark.fault(cls="synthesis",
                   case="synthesis.json of the wrong shape ({id}): refused in one line naming it, --overwrite "
                        "replaces it")
@pytest.mark.parametrize("text, why", [("[1,2]", "it holds a list, not the object synthesize.py writes"),
                                       ('{"digest":["a"]}', "its 'digest' is a list, not a string")])
def test_a_synthesis_json_of_the_wrong_shape_is_refused_and_overwrite_replaces_it(run, tmp_path, text, why):
    maps, out = _maps(tmp_path / "maps", 1), tmp_path / "out"
    assert synth(run, maps, out) == 0
    (out / "synthesis.json").write_text(text)
    with pytest.raises(InputError) as e:
        synth(run, maps, out)
    assert str(e.value) == (f"{out / 'synthesis.json'} is damaged ({why}): the job it records cannot be read; "
                            f"move {out} aside (or pick another --out), or pass --overwrite to replace what it holds")
    assert synth(run, maps, out, "--overwrite") == 0 and _job(out)["complete"] is True


@pytest.mark.fault(cls="synthesis",
                   case="a manifest line of the wrong shape: skipped with a note, its output synthesized again")
def test_a_manifest_line_of_the_wrong_shape_is_ignored_with_a_note(run, tmp_path, capsys):
    """{"output": ["x"], "job": DIGEST}: TypeError (unhashable) on resume and under --overwrite."""
    maps, out = _maps(tmp_path / "maps", 2), tmp_path / "out"
    assert synth(run, maps, out) == 0

    def add_bad_line():
        with open(out / "manifest.jsonl", "a") as f:
            f.write(json.dumps({"output": ["x"], "job": _job(out)["digest"], "status": "ok"}) + "\n")

    add_bad_line()
    capsys.readouterr()
    assert synth(run, maps, out) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert notes == [f"note: 1 manifest line(s) in {out} are damaged (first: {out / 'manifest.jsonl'} line 3: "
                     "its 'output' is a list, not a string) and ignored, as a line cut short by a kill is: "
                     "outputs without a readable line are synthesized again"], notes
    assert len(manifest(out)) == 2
    add_bad_line()
    assert synth(run, maps, out, "--seed", 3, "--overwrite") == 0 and len(manifest(out)) == 2

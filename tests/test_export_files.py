"""What ``python -m pix2pixhd.export`` leaves on disk, and what synthesis says of a damaged file.

The file is made and checked under a temporary name and written to its path only when the check
passes: a failed check or an interruption leaves the previous file (or none), never a file that
synthesis would run. A damaged file is one ``error:`` line naming the export command. Sizes are
printed WxH. Tiny pix2pix U-Net runs (ngf 2), legacy exporter (tests/test_onnx_staleness.py).
"""
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from pix2pixhd import errors  # noqa: E402
from pix2pixhd.errors import InputError  # noqa: E402
from pix2pixhd.export import OnnxGenerator, main as export_main  # noqa: E402
from tests.test_onnx_staleness import _export, _synth, photos, run  # noqa: E402,F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _leftovers(run):
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("previous", [b"the previous file", None])
def test_a_failed_check_writes_nothing_and_says_so_on_stderr(run, previous, capsys, monkeypatch):
    onnx = run / "generator.onnx"
    if previous is not None:
        onnx.write_bytes(previous)
    # the check measures a difference of 1.0: as if the exported graph computed something else
    monkeypatch.setattr("pix2pixhd.export.check_onnx", lambda *_, **__: 1.0)
    assert errors.run(export_main, ["--checkpoint", str(run), "--legacy"]) == 1
    out, err = capsys.readouterr()
    assert "max |onnxruntime - torch|" in out and "error" not in out
    assert err.startswith(f"error: {onnx} was not written: the exported graph does not reproduce") and \
        err.count("\n") == 1 and "--legacy" in err
    if previous is None:
        assert not onnx.exists() and "there was no generator.onnx before" in err
    else:
        assert onnx.read_bytes() == previous and "the previous generator.onnx there is untouched" in err
    assert _leftovers(run) == []


def test_an_export_interrupted_before_its_metadata_leaves_no_file(run, monkeypatch):
    """Ctrl-C after torch.onnx.export wrote the graph, before the metadata (the checkpoint's sha256)
    was added: no file without a hash is left where synthesis would read it."""
    import onnx

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _export(run)
    assert not (run / "generator.onnx").exists() and _leftovers(run) == []


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_file_is_one_error_line_naming_the_export(run, photos, tmp_path, damage, capsys):
    _export(run)
    onnx = run / "generator.onnx"
    data = onnx.read_bytes()
    onnx.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(InputError) as e:
        _synth(run, photos, tmp_path / "out", "--backend", "onnx")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"ONNX generator {onnx} cannot be read (")
    assert msg.endswith(f"export it again with `python -m pix2pixhd.export --checkpoint {run}`")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=r"export it again with `my command`$"):
        OnnxGenerator(onnx, fix="my command")


def test_sizes_are_printed_width_by_height(run, capsys):
    assert export_main(["--checkpoint", str(run), "--legacy"]) == 0
    og = OnnxGenerator(run / "generator.onnx")
    m = og.required_multiple
    # checked at H, W = (3m, 2m) and (2m, 5m)
    assert f"at {2 * m}x{3 * m} and {5 * m}x{2 * m} (WxH):" in capsys.readouterr().out
    with pytest.raises(ValueError, match=rf"input size {2 * m}x{m + 1} \(WxH\) is not divisible by {m}; "
                                         rf"pad it to {2 * m}x{2 * m} "):
        og(torch.zeros(1, og.input_nc, m + 1, 2 * m))


def test_export_onnx_keeps_the_previous_file_when_its_check_fails(tmp_path, monkeypatch):
    """The Python API: export_onnx(check=True) raises ExportCheckError and writes nothing."""
    from pix2pixhd import GlobalGenerator, export
    path = tmp_path / "g.onnx"
    path.write_bytes(b"the previous file")
    monkeypatch.setattr(export, "check_onnx", lambda *_, **__: 1.0)   # a graph that computes something else
    g = GlobalGenerator(4, 3, ngf=8, n_downsampling=1, n_blocks=1)
    with pytest.raises(export.ExportCheckError, match=r"g\.onnx: onnxruntime output differs .* not written "
                                                      r"\(the previous g\.onnx there is untouched\)"):
        export.export_onnx(g, path, dynamo=False)
    assert path.read_bytes() == b"the previous file" and _leftovers(tmp_path) == []

"""The benchmark scripts' findings of Dec 6: output paths checked before any work, a relative
--pipeline --data, options --pipeline does not use refused, the JSON records' device and command,
the CPU table note, --stage local without the reference widths, duplicate paths, small FLOP counts."""
import json
import sys

import pytest
import torch

from benchmarks import _cli, kernels as K, loader as L, memory as M, synthesis as S, train as T

TINY_TRAIN = ["--stage", "global", "--res", "32x32", "--n_downsample_global", "1", "--ngf", "8", "--ndf", "8",
              "--n_blocks_global", "1", "--n_layers_D", "1", "--no_vgg_loss", "--steps", "1", "--warmup", "0",
              "--phase_steps", "1", "--device", "cpu"]


def _refused(parse, argv, capsys, *words):
    from pix2pixhd.errors import run
    assert run(parse, argv) == 1   # a UserError: one error line, status 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err


def test_output_paths_refused_before_any_work(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    _refused(T.parse_args, TINY_TRAIN + ["--json", str(folder)], capsys, "is a folder")
    _refused(T.parse_args, TINY_TRAIN + ["--profile", "/proc/x"], capsys, "--profile", "/proc/x")
    _refused(S.parse_args, ["--json", "/proc/x/y.json"], capsys, "--json", "/proc/x/y.json")
    _refused(K.parse_args, ["--json", str(tmp_path / "k"), "--markdown", str(tmp_path / "k")], capsys,
             "--markdown", "also --json's file")
    _refused(L.parse_args, ["--json", str(folder)], capsys, "is a folder")
    _refused(M.parse_args, ["--json", "/proc/m.json"], capsys, "--json", "/proc/m.json")
    # A results file from an earlier run is overwritten, not refused.
    old = tmp_path / "old.json"
    old.write_text("{}")
    assert T.parse_args(TINY_TRAIN + ["--json", str(old)]).json == str(old)


def test_pipeline_refuses_options_it_does_not_use(capsys):
    for extra, word in ((["--precision", "fp32,bf16"], "--precision fp32,bf16"), (["--steps", "2"], "--steps"),
                        (["--warmup", "0"], "--warmup"), (["--no_baseline"], "--no_baseline"),
                        (["--label_nc", "35"], "--label_nc")):
        _refused(S.parse_args, ["--pipeline", *extra], capsys, word, "not used by --pipeline")
    assert S.parse_args([]).label_nc == 35   # the generator-only mode's default stays


def test_pipeline_relative_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert S.main(["--pipeline", "--stage", "global", "--res", "32x32", "--ngf", "4", "--n_downsample_global", "1",
                   "--n_blocks_global", "1", "--n_images", "1", "--workers", "0", "--writers", "0",
                   "--data", "pipe", "--json", "p.json"]) == 0
    assert (tmp_path / "pipe" / "maps_32x32" / "test_label").is_dir()
    assert "wrote p.json" in capsys.readouterr().out


def test_train_tiny_run_note_dedupe_flops(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert T.main(TINY_TRAIN + ["--no_baseline", "--channels_last", "both", "--precision", "fp32,fp32+cl",
                                "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "peak MiB and util % are CUDA-only" in text and "step ms is wall time" in text
    assert "0.000 TFLOP" not in text and "GFLOP" in text
    rec = json.loads(out.read_text())
    assert [r["path"] for r in rec["rows"]] == ["ours fp32", "ours fp32 cl"]   # no duplicate, no 256x128


def test_reference_widths_follow_the_stage():
    args = T.parse_args(["--stage", "local", "--device", "cpu"])
    assert not T.reference_widths(args, cuda=False)
    assert T.reference_widths(T.parse_args(["--device", "cpu"]), cuda=False)
    assert "TFLOP" in T.flop_text(2e12) and T.flop_text(2.2e7) == "0.022 GFLOP"


def test_loader_and_memory_records(tmp_path, capsys):
    lj, mj = tmp_path / "l.json", tmp_path / "m.json"
    L.main(["--res", "32x16", "--n", "1", "--epochs", "1", "--workers", "0", "--data", str(tmp_path / "d"),
            "--json", str(lj)])
    assert M.main(["--stage", "global", "--precision", "fp32", "--json", str(mj)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {lj}" in text and f"wrote {mj}" in text
    for rec in (json.loads(lj.read_text()), json.loads(mj.read_text())):
        assert {"cpu", "cpu_threads", "torch"} <= set(rec["device"])
    assert not list(tmp_path.glob("*.tmp"))


def test_command_records_the_path_as_invoked(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/benchmarks/train.py", "--steps", "1"])
    assert "/somewhere/benchmarks/train.py --steps 1" in _cli.command_line("benchmarks/train.py")
    # imported (argv given, as tests call main): the path relative to the repository root
    assert " benchmarks/train.py --steps 1" in _cli.command_line("benchmarks/train.py", ["--steps", "1"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only answer")
def test_kernels_without_gpu_writes_a_not_run_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIX2PIXHD_STRICT_KERNELS", "0")  # main() sets it; restored after
    j, md = tmp_path / "k.json", tmp_path / "k.md"
    assert K.main(["--json", str(j), "--markdown", str(md)]) == 0
    rec = json.loads(j.read_text())
    assert rec["rows"] == [] and "no CUDA GPU" in rec["not_run"]
    assert "Not run" in md.read_text()


def test_kernels_smoke_notes_an_unused_res():
    assert K.parse_args(["--smoke", "--res", "64x32"]).smoke_ignores
    assert not K.parse_args(["--smoke"]).smoke_ignores

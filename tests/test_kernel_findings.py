"""The kernel walkthrough's findings, one test each: the interpreter set after Triton was imported,
the native path's residual rounded twice, NaN statistics at |x| ~ 1e21, integer residuals, the
fallback warnings' line, AOT targets given twice, and the benchmarks' options (checked before any
work), run folders and recorded norm path.

Without a GPU the Triton kernels run through the interpreter (TRITON_INTERPRET=1, set in
conftest.py before anything imports Triton); tiny shapes only.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

from pix2pixhd.kernels import instance_norm_act, instance_norm_act_ref  # noqa: E402

K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_triton_imported_before_the_interpreter_falls_back_once_naming_the_cause_and_the_fix():
    # `import triton` (or any torch.compile call) before TRITON_INTERPRET=1 left Triton's own
    # tl.sum... compiled, and the interpreted kernels failed calling them ("Cannot call
    # @triton.jit'd outside of the scope of a kernel"); the docs said any time before the first
    # call was enough.
    code = textwrap.dedent("""
        import os, warnings, torch, triton
        from pix2pixhd.kernels import instance_norm_act, instance_norm_act_ref
        os.environ["TRITON_INTERPRET"] = "1"
        x = torch.randn(2, 3, 4, 5)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            y = instance_norm_act(x, impl="triton")
            instance_norm_act(x, impl="triton")
        assert torch.equal(y, instance_norm_act_ref(x))
        assert len(w) == 1, [str(m.message) for m in w]
        msg = str(w[0].message)
        assert "Triton was imported before TRITON_INTERPRET=1 was set" in msg, msg
        assert "set TRITON_INTERPRET=1 before anything imports triton" in msg, msg
        os.environ["PIX2PIXHD_STRICT_KERNELS"] = "1"
        try:
            instance_norm_act(x, impl="triton")
        except RuntimeError as e:
            assert "before anything imports triton" in str(e)
        else:
            raise AssertionError("strict mode did not raise")
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", K.STRICT_ENV)}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, where the interpreter is the only Triton
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("act", ["none", "relu"])
def test_native_path_adds_the_residual_before_its_one_cast(act, dtype):
    # 'auto' on CPU (the native path) added the residual to the norm's bf16 output: two
    # roundings, 29 % of the bf16 outputs here off the correctly rounded result (fp64, cast once).
    torch.manual_seed(0)
    shape = (2, 8, 16, 16)
    x = torch.randn(shape).to(dtype)
    r = torch.randn(shape).to(dtype).requires_grad_()
    w, b = torch.randn(8) * 0.5 + 1, torch.randn(8) * 0.5
    z = F.instance_norm(x.double(), weight=w.double(), bias=b.double()) + r.detach().double()
    truth = (z.relu() if act == "relu" else z).to(dtype)
    y = instance_norm_act(x, w, b, act=act, residual=r, impl="auto")
    assert y.dtype == dtype
    assert (y != truth).float().mean().item() <= 1e-3
    if act == "relu":  # the gradient passes exactly where the correctly rounded z is > 0
        (gr,) = torch.autograd.grad(y, (r,), torch.ones_like(y))
        assert ((gr != 0) != (z > 0)).float().mean().item() <= 1e-3


def test_statistics_of_values_near_1e21_are_not_nan():
    # The stats kernel weighed the first tile's delta^2 by n_a = 0: delta^2 overflowed to inf and
    # inf * 0 gave NaN; the reference (its squares overflow too) gives var = inf, y = 0.
    x = (torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 1e21).to(DEVICE)
    y_ref = instance_norm_act_ref(x, act="none")
    assert torch.isfinite(y_ref).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow notes (interpreter)
        for overrides in ({}, dict(block_p=16, splits=2)):
            with K.launch_overrides(**overrides):
                y = instance_norm_act(x, act="none", impl="triton")
            assert torch.equal(y, y_ref), overrides


@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
@pytest.mark.parametrize("name", ["residual", "weight"])
def test_integer_residual_or_parameters_are_refused(name, impl):
    # The docs say any float dtype; an int64 residual was converted silently.
    x = torch.randn(1, 2, 3, 3, device=DEVICE)
    t = torch.ones(x.shape if name == "residual" else (2,), dtype=torch.int64, device=DEVICE)
    with pytest.raises(TypeError, match=f"{name} has dtype torch.int64; expected a float tensor"):
        instance_norm_act(x, **{name: t}, impl=impl)


@pytest.mark.parametrize("case", ["no interpreter", "fp64", "no triton"])
def test_fallback_warnings_name_the_callers_line(case, monkeypatch):
    # stacklevel=3 pointed at the dispatch inside instance_norm_act, not at the call below.
    monkeypatch.setattr(K, "_WARNED", set())
    monkeypatch.delenv(K.STRICT_ENV, raising=False)
    x = torch.randn(1, 2, 3, 3)
    if case == "no interpreter":
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    elif case == "fp64":
        x = x.to(DEVICE, torch.float64)
    else:
        monkeypatch.setattr(K, "_triton_not_found", lambda: "ModuleNotFoundError: no triton")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        instance_norm_act(x, impl="triton")
    assert len(w) == 1, [str(m.message) for m in w]
    assert (w[0].filename, w[0].lineno) == (__file__, line)


def test_aot_refuses_a_target_given_twice():
    pytest.importorskip("triton")
    from pix2pixhd.errors import ConfigError
    from pix2pixhd.kernels import aot
    before = os.environ.get("TRITON_INTERPRET")
    with pytest.raises(ConfigError, match="--arch 80,90,80: sm_80 given more than once"):
        aot.main(["--arch", "80,90,80"])
    assert os.environ.get("TRITON_INTERPRET") == before  # refused before touching the process


# -- benchmarks --------------------------------------------------------------------------------

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks CUDA asked for on a CPU build")
BAD_OPTIONS = [
    ("train", ["--steps", "0"], "--steps 0: expected at least 1"),
    ("train", ["--steps", "-1"], "--steps -1: expected at least 1"),
    ("train", ["--warmup", "-1"], "--warmup -1: expected at least 0"),
    ("train", ["--ngf", "0"], "--ngf 0: expected at least 1"),
    ("train", ["--batch", "0"], "--batch 0: expected at least 1"),
    ("train", ["--label_nc", "0"], "--label_nc 0: expected 1 to 256"),
    ("train", ["--res", "64x32,foo"], "--res 'foo': expected WIDTHxHEIGHT"),
    ("train", ["--device", "tpu"], "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
    pytest.param("train", ["--device", "cuda"], "--device cuda: CUDA is not available", marks=CPU_ONLY),
    ("kernels", ["--batch", "0"], "--batch 0: expected at least 1"),
    ("kernels", ["--batch", "-1"], "--batch -1: expected at least 1"),
    ("kernels", ["--reps", "0"], "--reps 0: expected at least 1"),
    ("kernels", ["--res", "foo"], "--res 'foo': expected WIDTHxHEIGHT"),
    ("kernels", ["--res", "16x16"], "--res 16x16: its layer G1 down4 would be 1x1 pixels"),
    ("kernels", ["--smoke", "--methods", "compile"], "--smoke --methods compile: the smoke run times no"),
    pytest.param("optimizer", ["--device", "cuda"], "--device cuda: CUDA is not available",
                 marks=CPU_ONLY),
    ("optimizer", ["--steps", "0"], "--steps 0: expected at least 1"),
    ("optimizer", ["--rounds", "0"], "--rounds 0: expected at least 1"),
]


@pytest.mark.parametrize("script, argv, message", BAD_OPTIONS)
def test_benchmark_options_out_of_range_are_one_error_line_before_any_work(script, argv, message,
                                                                            capsys, monkeypatch):
    # They ran other values (--steps 0 ran 5, --ngf 0 used 16), printed an empty table, or
    # ended in tracebacks (--batch 0, --label_nc 0, --device cuda without CUDA, --reps 0 on a GPU).
    mod = importlib.import_module(f"benchmarks.{script}")
    monkeypatch.setenv(K.STRICT_ENV, os.environ.get(K.STRICT_ENV, "0"))  # kernels.main sets it
    from pix2pixhd.errors import run
    assert run(mod.main, argv) == 1   # a ConfigError: one error line, status 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "error:" in line] == [err[-1]]
    assert f"error: {message}" in err[-1], err


def test_benchmark_options_at_their_limits_are_accepted():
    from benchmarks import kernels as BK
    from benchmarks import train as T
    assert BK.parse_args(["--res", "32x16,2048x32", "--reps", "1", "--warmup", "0", "--batch", "1"])
    # 32x32 is the global stage's smallest at 4 downsamplings (the local stage's is 64x64)
    assert T.parse_args(["--stage", "global", "--steps", "1", "--warmup", "0", "--label_nc", "256", "--res", "32x32"])


def test_train_benchmark_removes_its_run_folders_and_records_the_norm_path_that_ran(tmp_path,
                                                                                   monkeypatch):
    # Each configuration left an empty /tmp/p2phd_bench_* behind; --norm_impl triton on a CPU
    # without the interpreter ran the reference but the JSON said "triton" only.
    from benchmarks import train as T
    made = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv(K.STRICT_ENV, raising=False)
    out = tmp_path / "t.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallback's own warning
        assert T.main(["--stage", "global", "--res", "32x32", "--ngf", "4", "--ndf", "4",
                       "--n_downsample_global", "2", "--n_layers_D", "2", "--n_blocks_global", "1",
                       "--label_nc", "5", "--no_vgg_loss", "--no_baseline", "--steps", "1",
                       "--warmup", "0", "--norm_impl", "triton", "--json", str(out)]) == 0
    assert made and all(p.startswith(os.path.join(tempfile.gettempdir(), "p2phd_bench_")) for p in made)
    assert not any(os.path.exists(p) for p in made)
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["arch"]["norm_impl"], row["arch"]["norm_path"]) == ("triton", "ref")


def test_path_taken_names_what_each_impl_runs_on_cpu(monkeypatch):
    monkeypatch.setattr(K, "_WARNED", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a question, not a call: no warning
        assert K.path_taken("auto", "cpu") == "native"
        assert K.path_taken("ref", "cpu") == "ref"
        assert K.path_taken("triton", "cpu", torch.float64) == "ref"
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        assert K.path_taken("triton", "cpu") == "ref"
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert K.path_taken("triton", "cpu") == "triton"

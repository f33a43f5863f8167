"""The Dec 6 kernel walkthrough's findings (second set), one test each: strict mode as a one-line
UserError (and checkable up front), 'auto' on CPU silent without Triton, the AOT tool's option
checks, an empty batch with affine on every path, eps <= 0 refused, Triton's truthy spellings of
the environment switches, an unusable autotune file, impl checked by the layer's constructor.

Without a GPU the Triton kernels run through the interpreter (TRITON_INTERPRET=1, set in
conftest.py before anything imports Triton); tiny shapes only.
"""
import importlib
import json
import os
import warnings

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pix2pixhd.errors import ConfigError, UserError  # noqa: E402
from pix2pixhd.kernels import check_norm_impl, instance_norm_act, instance_norm_act_ref  # noqa: E402
from pix2pixhd.layers import InstanceNormAct  # noqa: E402

K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
NO_TRITON = "ModuleNotFoundError: No module named 'triton'"


@pytest.fixture
def fresh(monkeypatch):
    """Warnings not yet said, no strict mode, no autotune file."""
    monkeypatch.setattr(K, "_WARNED", set())
    monkeypatch.delenv(K.STRICT_ENV, raising=False)
    monkeypatch.delenv(K.AUTOTUNE_ENV, raising=False)


def no_kernel(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("a kernel ran")
    monkeypatch.setattr(K, "_fused_apply", fail)


# ---- 1. strict mode: a one-line UserError, also raised up front, never by 'auto' on CPU ----------

def test_strict_mode_raises_a_one_line_user_error_and_check_norm_impl_raises_it_up_front(fresh, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv(K.STRICT_ENV, "1")
    no_kernel(monkeypatch)
    with pytest.raises(UserError) as up_front:
        check_norm_impl("triton", "cpu")
    with pytest.raises(UserError) as at_call:
        instance_norm_act(torch.randn(1, 2, 3, 3), impl="triton")
    for e in (up_front.value, at_call.value):
        msg = str(e)
        assert isinstance(e, K.StrictKernelError) and isinstance(e, RuntimeError)
        assert "\n" not in msg and f"{K.STRICT_ENV}=1 makes this an error" in msg
        assert "TRITON_INTERPRET=1" in msg and f"unset {K.STRICT_ENV}" in msg
    assert str(up_front.value) == str(at_call.value)
    check_norm_impl("ref", "cpu")
    check_norm_impl("auto", "cpu")
    with pytest.raises(ValueError, match="impl='Triton'"):
        check_norm_impl("Triton", "cpu")


@pytest.mark.parametrize("impl", ["auto", "triton"])
def test_without_triton_strict_mode_fails_triton_but_not_auto_on_cpu(fresh, monkeypatch, impl):
    monkeypatch.setattr(K, "_triton_not_found", lambda: NO_TRITON)
    monkeypatch.setenv(K.STRICT_ENV, "1")
    x = torch.randn(1, 2, 3, 3)
    if impl == "triton":
        with pytest.raises(K.StrictKernelError, match="Triton is not importable"):
            check_norm_impl(impl, "cpu")
        with pytest.raises(K.StrictKernelError, match="Triton is not importable"):
            instance_norm_act(x, impl=impl)
    else:  # auto never uses Triton on CPU, so nothing falls back
        check_norm_impl(impl, "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = instance_norm_act(x, impl=impl)
        assert torch.allclose(y, instance_norm_act_ref(x), atol=1e-5)


# ---- 2. 'auto' on CPU is silent without Triton; the fallback names the path that runs ----------

def test_auto_on_cpu_without_triton_is_silent_and_auto_elsewhere_names_the_native_path(fresh, monkeypatch):
    monkeypatch.setattr(K, "_triton_not_found", lambda: NO_TRITON)
    x = torch.randn(1, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        instance_norm_act(x, impl="auto")
    # Where 'auto' would use Triton (CUDA; stood in for by _tunable), it says so, naming the
    # native norm that runs, not the reference.
    monkeypatch.setattr(K, "_tunable", lambda t: True)
    with pytest.warns(RuntimeWarning, match="using PyTorch's native norm") as w:
        instance_norm_act(x, impl="auto")
    assert "PyTorch reference" not in str(w[0].message)
    monkeypatch.setattr(K, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="using the PyTorch reference"):
        instance_norm_act(x, impl="triton")


# ---- 3. the AOT tool's options: one error line each, before any work ----------------------------

@pytest.fixture
def aot(monkeypatch):
    from pix2pixhd.kernels import aot as mod

    def no_work(*a, **k):
        raise AssertionError("work started")
    monkeypatch.setattr(mod, "_import_triton", no_work)
    monkeypatch.setattr(mod, "record", no_work)
    # main() drops TRITON_INTERPRET (or reruns itself in a clean process): restored after the test.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return mod


@pytest.mark.parametrize("argv, match", [
    (["--dtypes", "bf16,bf16"], r"--dtypes bf16,bf16: bf16 given more than once"),
    (["--layouts", "cl,nchw,cl"], r"--layouts cl,nchw,cl: cl given more than once"),
    (["--jobs", "0"], r"--jobs 0: expected a positive number"),
    (["--jobs", "-2"], r"--jobs -2: expected a positive number"),
    (["--sms", "0"], r"--sms 0: an SM count must be a positive integer"),
    (["--sms", "132,108"], r"--sms 132,108: give one SM count per --arch \(90\)"),
])
def test_aot_refuses_bad_option_values_before_any_work(aot, argv, match, tmp_path):
    with pytest.raises(ConfigError, match=match) as e:
        aot.main(["--arch", "90", "--cache_dir", str(tmp_path), *argv])
    assert "\n" not in str(e.value)


def test_aot_refuses_unwritable_outputs_before_any_work(aot, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for argv, match in [
        (["--cache_dir", str(a_file)], r"--cache_dir .*f is a file"),
        (["--cache_dir", str(a_file / "cache")], r"f is a file, not a folder; give --cache_dir"),
        (["--json", str(a_file / "x.json")], r"f is a file, not a folder; give --json"),
        (["--markdown", str(tmp_path)], r"--markdown .* is a folder"),
        (["--json", str(tmp_path / "a"), "--markdown", str(tmp_path / "a")], "also --json's file"),
    ]:
        with pytest.raises(ConfigError, match=match):
            aot.main(["--arch", "90", "--no_cache", *argv] if "--cache_dir" not in argv
                     else ["--arch", "90", *argv])
    if os.path.isdir("/proc/self"):  # root passes permission bits there: a file is tried
        with pytest.raises(ConfigError, match=r"cannot write /proc/x: no file can be made in /proc"):
            aot.main(["--arch", "90", "--cache_dir", "/proc/x"])
    # A missing folder above --json is made when it is written, as the benchmarks' --json:
    # accepted, and nothing is made before the work.
    with pytest.raises(AssertionError, match="work started"):
        aot.main(["--arch", "90", "--no_cache", "--json", str(tmp_path / "new" / "dir" / "x.json")])
    assert not (tmp_path / "new").exists()


# ---- 4. an empty batch with affine parameters agrees on every path -------------------------------

@pytest.mark.parametrize("impl", ["auto", "triton", "ref"])
def test_empty_batch_with_affine_gives_an_empty_output_and_zero_gradients(impl):
    x = torch.randn(0, 3, 4, 4, device=DEVICE, requires_grad=True)
    w = torch.randn(3, device=DEVICE, requires_grad=True)
    b = torch.randn(3, device=DEVICE, requires_grad=True)
    y = instance_norm_act(x, w, b, impl=impl)
    assert y.shape == (0, 3, 4, 4)
    y.sum().backward()
    assert torch.equal(w.grad, torch.zeros(3, device=DEVICE))
    assert torch.equal(b.grad, torch.zeros(3, device=DEVICE))
    m = InstanceNormAct(3, affine=True, impl=impl).to(DEVICE)
    m(torch.randn(0, 3, 4, 4, device=DEVICE)).sum().backward()
    assert torch.equal(m.weight.grad, torch.zeros(3, device=DEVICE))


# ---- 5. eps <= 0 is refused ----------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0, 0.0, -1e-5, float("nan")])
def test_eps_that_is_not_positive_is_refused(eps):
    x = torch.ones(1, 2, 3, 3, device=DEVICE)  # constant channels: 0/0 with eps = 0
    for impl in ("auto", "triton", "ref"):
        with pytest.raises(ValueError, match=r"instance_norm_act: eps=.*expected a finite number > 0"):
            instance_norm_act(x, eps=eps, impl=impl)
    with pytest.raises(ValueError, match="eps="):
        instance_norm_act_ref(x, eps=eps)
    with pytest.raises(ValueError, match=r"InstanceNormAct: eps="):
        InstanceNormAct(2, eps=eps)


# ---- 6. the environment switches take Triton's truthy spellings ---------------------------------

@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                       ("On", True), ("y", True), ("0", False), ("false", False),
                                       ("", False), ("2", False), ("off", False)])
def test_environment_switches_read_as_triton_reads_them(monkeypatch, value, on):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    monkeypatch.setenv(K.STRICT_ENV, value)
    assert K.triton_interpret_on() is on and K.strict_kernels() is on


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter is the CPU path")
def test_triton_interpret_true_runs_the_interpreter_and_strict_true_is_strict(fresh, monkeypatch):
    assert os.environ.get("TRITON_INTERPRET") == "1"  # conftest: set before Triton was imported
    monkeypatch.setenv("TRITON_INTERPRET", "true")
    calls = []
    orig = K._fused_apply
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: calls.append(1) or orig(*a, **k))
    x = torch.randn(1, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = instance_norm_act(x, impl="triton")
    assert calls == [1] and torch.allclose(y, instance_norm_act_ref(x), atol=1e-5)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv(K.STRICT_ENV, "true")
    with pytest.raises(K.StrictKernelError, match=f"{K.STRICT_ENV}=true makes this an error"):
        instance_norm_act(x, impl="triton")


# ---- 9. an unusable autotune file ----------------------------------------------------------------

class FakeTimer:
    def __init__(self, ms):
        self.ms, self.calls = ms, []

    def __call__(self, name, fn, device):
        self.calls.append(name)
        return self.ms[name]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_corrupt_autotune_file_is_one_user_error_up_front(fresh, monkeypatch, tmp_path, content):
    path = tmp_path / "choices.json"
    path.write_text(content)
    monkeypatch.setattr(K, "_tunable", lambda t: True)  # CPU stands in for CUDA
    monkeypatch.setattr(K, "_AUTO", K.AutoChooser(timer=FakeTimer({"triton": 2.0, "native": 1.0})))
    monkeypatch.setenv(K.AUTOTUNE_ENV, str(path))
    with pytest.raises(UserError, match=rf"{K.AUTOTUNE_ENV}: .*choices.json .*delete it") as e:
        check_norm_impl("auto", "cpu")
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
    assert path.read_text() == content  # not rewritten


def test_an_unwritable_autotune_file_warns_once_and_the_choices_still_hold(fresh, monkeypatch, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    monkeypatch.setattr(K, "_tunable", lambda t: True)
    timer = FakeTimer({"triton": 2.0, "native": 1.0})
    chooser = K.AutoChooser(timer=timer, path=a_file / "choices.json")  # under a file
    monkeypatch.setattr(K, "_AUTO", chooser)
    x = torch.randn(1, 2, 3, 3)
    with pytest.warns(RuntimeWarning, match=rf"{K.AUTOTUNE_ENV}: cannot write .*choices.json") as w:
        y = instance_norm_act(x, impl="auto")
    assert len(w) == 1 and w[0].filename == __file__
    assert torch.allclose(y, instance_norm_act_ref(x), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        instance_norm_act(torch.randn(1, 2, 4, 4), impl="auto")
    assert len(chooser.choices) == 2 and timer.calls == ["triton", "native"] * 2
    assert not list(tmp_path.glob("*.tmp"))


# ---- 10. the layer checks impl when it is made ---------------------------------------------------

def test_instance_norm_act_refuses_an_unknown_impl_when_made():
    with pytest.raises(ValueError, match=r"InstanceNormAct: impl='Triton'; expected one of"):
        InstanceNormAct(4, impl="Triton")


# ---- the trainer checks strict mode before it writes; config reads TRITON_INTERPRET as Triton does --

def test_strict_mode_stops_training_before_the_run_folder_is_written(fresh, monkeypatch, tmp_path):
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.trainer import Trainer
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv(K.STRICT_ENV, "1")
    cfg = TrainConfig(checkpoints_dir=str(tmp_path), name="strict", norm_impl="triton", device="cpu",
                      ngf=4, ndf=4, no_vgg_loss=True, label_nc=4, n_downsample_global=1,
                      n_blocks_global=1).resolved()
    with pytest.raises(K.StrictKernelError):
        Trainer(cfg)
    assert not (tmp_path / "strict").exists()


def test_compile_guard_reads_triton_interpret_true(monkeypatch):
    from pix2pixhd.config import TrainConfig
    monkeypatch.setenv("TRITON_INTERPRET", "true")
    with pytest.raises(ConfigError, match=r"^--compile --norm_impl triton under TRITON_INTERPRET=true"):
        TrainConfig(compile=True, norm_impl="triton").resolved()

"""'auto' on a user's first GPU run: a Triton candidate that cannot run (no C compiler for
Triton's launcher, out of GPU memory) falls back to PyTorch's native norm instead of crashing the
step; measuring moves no caller's RNG; a resumed or --deterministic run never takes a path that a
new timing chose.

On CPU, ``_tunable`` is patched so that CPU tensors are measured as CUDA ones are, with a fake
timer (tests/test_kernels.py's); the Triton kernels run through the interpreter
(TRITON_INTERPRET=1, set by conftest without a GPU). A missing compiler is Triton's own
RuntimeError raised where the kernel module launches.
"""
import importlib
import json
import os
import warnings

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pix2pixhd.errors import UserError  # noqa: E402
from pix2pixhd.kernels import instance_norm_act, instance_norm_act_ref  # noqa: E402
from tests.test_kernels import DEVICE, FakeTimer, rel_err, tuned  # noqa: E402, F401  (tuned: fixture)

K = importlib.import_module("pix2pixhd.kernels.instance_norm_act")
KT = importlib.import_module("pix2pixhd.kernels._instance_norm_act_triton")

# Triton 3.x's message where it finds no compiler for a kernel's launcher (official PyTorch CUDA
# runtime images have none).
NO_CC = ("Failed to find C compiler. Please specify via CC environment variable or set "
         "triton.knobs.build.impl.")




def launch_fails(monkeypatch, error):
    """The kernel module's forward launch raises ``error`` (a fresh one each time)."""
    def forward(*a, **k):
        raise error()
    monkeypatch.setattr(KT, "forward", forward)


# ---- 1. a Triton candidate that fails ---------------------------------------------------------

@pytest.mark.fault(cls="kernels",
                   case="auto on a GPU without a C compiler (Triton cannot build its launcher): "
                        "PyTorch's native norm, one warning naming the cause and the fix, nothing "
                        "recorded on disk (a compiler installed later is measured)")
def test_no_c_compiler_for_the_measurement_falls_back_to_native_once(tuned, monkeypatch, tmp_path):
    path = tmp_path / "choices.json"
    timer = FakeTimer({"triton": 1.0, "native": 2.0}, run=True)
    chooser = tuned(timer, path=path)
    launch = KT.forward
    launch_fails(monkeypatch, lambda: RuntimeError(NO_CC + "\n(more lines)"))
    x = torch.randn(2, 3, 5, 6, device=DEVICE, requires_grad=True)
    with pytest.warns(RuntimeWarning) as w:
        y = instance_norm_act(x, act="relu", impl="auto")
    (msg,) = [str(m.message) for m in w]
    assert "no C compiler" in msg and "RuntimeError: Failed to find C compiler" in msg, msg
    assert "apt-get install gcc" in msg and "CC" in msg and "--norm_impl ref" in msg, msg
    assert "(more lines)" not in msg and "PyTorch's native norm" in msg, msg
    y.sum().backward()  # the native path ran: its gradient is the reference's
    assert rel_err(y, instance_norm_act_ref(x, act="relu")) <= 1e-5
    assert timer.calls == ["triton"]  # native is not measured after Triton failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, for every configuration
        instance_norm_act(torch.randn_like(x).requires_grad_(), act="relu", impl="auto")
        instance_norm_act(torch.randn(2, 3, 7, 6, device=DEVICE), act="relu", impl="auto")
    assert timer.calls == ["triton", "triton"]  # the known key is not tried again; the new one is
    assert len(chooser.failed) == 2 and chooser.choices == {} and not path.exists()
    # A compiler installed since: the next process measures the configuration and records it.
    monkeypatch.setattr(KT, "forward", launch)
    tuned(FakeTimer({"triton": 2.0, "native": 1.0}), path=path)
    instance_norm_act(torch.randn(2, 3, 5, 6, device=DEVICE), act="relu", impl="auto")
    assert [v["choice"] for v in json.loads(path.read_text()).values()] == ["native"]


@pytest.mark.fault(cls="kernels",
                   case="auto without a C compiler under PIX2PIXHD_STRICT_KERNELS=1: a one-line "
                        "StrictKernelError naming the cause and the fix")
def test_no_c_compiler_under_strict_mode_is_one_line(tuned, monkeypatch):
    tuned(FakeTimer({"triton": 1.0, "native": 2.0}, run=True))
    launch_fails(monkeypatch, lambda: RuntimeError(NO_CC))
    monkeypatch.setenv(K.STRICT_ENV, "1")
    with pytest.raises(K.StrictKernelError) as e:
        instance_norm_act(torch.randn(1, 2, 4, 4, device=DEVICE), impl="auto")
    msg = str(e.value)
    assert "\n" not in msg and "C compiler" in msg and "apt-get install gcc" in msg, msg
    assert f"{K.STRICT_ENV}=1 makes this an error" in msg, msg


@pytest.mark.fault(cls="kernels",
                   case="auto: the Triton measurement runs out of GPU memory: PyTorch's native norm "
                        "for that configuration, one warning, nothing recorded on disk")
def test_out_of_memory_while_measuring_falls_back_to_native(tuned, monkeypatch, tmp_path):
    path = tmp_path / "choices.json"
    timer = FakeTimer({"triton": 1.0, "native": 2.0}, run=True)
    chooser = tuned(timer, path=path)
    launch_fails(monkeypatch, lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to "
                                                                  "allocate 2.00 GiB"))
    freed = []  # the native call that follows needs the blocks the failed measurement cached
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: freed.append(1))
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    with pytest.warns(RuntimeWarning, match=r"ran out of GPU memory.*native norm") as w:
        y = instance_norm_act(x, impl="auto")
    assert len(w) == 1 and "OutOfMemoryError: CUDA out of memory" in str(w[0].message)
    assert rel_err(y, instance_norm_act_ref(x)) <= 1e-5
    assert freed == [1], "PyTorch's cached blocks were not freed after the out-of-memory"
    instance_norm_act(x, impl="auto")  # kept for the process: not measured again at every step
    assert timer.calls == ["triton"] and chooser.choices == {} and not path.exists()
    assert freed == [1]


@pytest.mark.fault(cls="kernels",
                   case="auto with a recorded 'triton' choice (an autotune file from a machine with "
                        "a compiler) where Triton cannot launch: PyTorch's native norm, one warning")
def test_a_recorded_triton_choice_is_tried_before_it_is_trusted(tuned, monkeypatch, tmp_path):
    path = tmp_path / "choices.json"
    tuned(FakeTimer({"triton": 1.0, "native": 2.0}), path=path)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    instance_norm_act(x, impl="auto")
    recorded = path.read_text()
    assert [v["choice"] for v in json.loads(recorded).values()] == ["triton"]
    timer = FakeTimer({"triton": 2.0, "native": 1.0})
    chooser = tuned(timer, path=path)  # a new process, on a machine without a compiler
    launch_fails(monkeypatch, lambda: RuntimeError(NO_CC))
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        y = instance_norm_act(x, impl="auto")
    assert rel_err(y, instance_norm_act_ref(x)) <= 1e-5
    assert timer.calls == [] and len(chooser.failed) == 1  # tried once, not timed
    assert path.read_text() == recorded


@pytest.mark.fault(cls="kernels",
                   case="auto where Triton's driver raises something other than a RuntimeError "
                        "(an AssertionError: libcuda.so not found): PyTorch's native norm, one "
                        "warning naming it")
def test_a_triton_failure_that_is_no_runtime_error_falls_back_too(tuned, monkeypatch):
    """Triton's CUDA driver asserts where it cannot find libcuda.so ("libcuda.so cannot found!"),
    and other failures raise ImportError or ValueError: 'auto' catches whatever the Triton
    candidate raises, since native is still there."""
    timer = FakeTimer({"triton": 1.0, "native": 2.0}, run=True)
    chooser = tuned(timer)
    launch_fails(monkeypatch, lambda: AssertionError("libcuda.so cannot found!"))
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    with pytest.warns(RuntimeWarning) as w:
        y = instance_norm_act(x, impl="auto")
    (msg,) = [str(m.message) for m in w]
    assert "AssertionError: libcuda.so cannot found!" in msg and "--norm_impl ref" in msg, msg
    assert "PyTorch's native norm" in msg and "C compiler" not in msg, msg
    assert rel_err(y, instance_norm_act_ref(x)) <= 1e-5
    assert timer.calls == ["triton"] and len(chooser.failed) == 1


@pytest.mark.fault(cls="kernels",
                   case="auto with a recorded 'triton' choice where Triton cannot launch: tried once "
                        "per process, not at every step, and native under torch.compile after")
def test_a_recorded_triton_choice_that_failed_is_not_tried_again(tuned, monkeypatch, tmp_path):
    """The failure is kept for the process and wins over the recorded choice: retried, the trial
    launch (a compile attempt, an allocation) would cost every step of the run; trusted inside
    torch.compile (where a recorded choice holds untried), the compiled graph would launch it."""
    path = tmp_path / "choices.json"
    tuned(FakeTimer({"triton": 1.0, "native": 2.0}), path=path)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    instance_norm_act(x, impl="auto")  # recorded: triton (the fake timer runs nothing)
    timer = FakeTimer({"triton": 2.0, "native": 1.0})
    chooser = tuned(timer, path=path)  # a new process, on a machine without a compiler
    tries = []
    launch_fails(monkeypatch, lambda: tries.append(1) or RuntimeError(NO_CC))
    with pytest.warns(RuntimeWarning, match="no C compiler") as w:
        for _ in range(3):
            y = instance_norm_act(x, impl="auto")
    assert len(tries) == 1, f"the failed recorded choice was launched {len(tries)} times in 3 calls"
    assert len(w) == 1 and timer.calls == [] and len(chooser.failed) == 1
    assert rel_err(y, instance_norm_act_ref(x)) <= 1e-5
    # Compiled later in the process (where a recorded choice otherwise holds untried): still native.
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert chooser.choose(x, None, None, None, "relu", None, None) == "native"
    assert len(tries) == 1


@pytest.mark.fault(cls="kernels",
                   case="--norm_impl triton without a C compiler: one error line naming the missing "
                        "compiler and the fix, not Triton's RuntimeError")
def test_forced_triton_without_a_c_compiler_is_one_user_error(tuned, monkeypatch):
    launch_fails(monkeypatch, lambda: RuntimeError(NO_CC + "\nmore"))
    with pytest.raises(UserError) as e:
        instance_norm_act(torch.randn(1, 2, 4, 4, device=DEVICE), impl="triton")
    msg = str(e.value)
    assert isinstance(e.value, K.KernelBuildError) and isinstance(e.value, RuntimeError)
    assert "\n" not in msg and "impl='triton'" in msg and "found no C compiler" in msg, msg
    assert "apt-get install gcc" in msg and "set CC" in msg and "--norm_impl" in msg, msg
    launch_fails(monkeypatch, lambda: RuntimeError("something else"))  # other errors pass as they are
    with pytest.raises(RuntimeError, match="^something else$"):
        instance_norm_act(torch.randn(1, 2, 4, 4, device=DEVICE), impl="triton")


# ---- 2. measuring draws from a private generator -------------------------------------------------

def test_measuring_moves_no_global_rng_and_keeps_the_layout(tuned, monkeypatch):
    tuned(FakeTimer({"triton": 2.0, "native": 1.0}, run=True))  # both candidates really run
    seen = []
    orig = K._fused_apply
    monkeypatch.setattr(K, "_fused_apply", lambda x, *a, **k: seen.append(x) or orig(x, *a, **k))
    cl = torch.channels_last
    x = torch.randn(2, 3, 4, 5, device=DEVICE).contiguous(memory_format=cl).requires_grad_()
    r = torch.randn(2, 3, 4, 5, device=DEVICE).contiguous(memory_format=cl)
    cpu, dev = torch.get_rng_state(), torch.cuda.get_rng_state() if DEVICE.type == "cuda" else None
    y = instance_norm_act(x, act="leaky_relu", residual=r, impl="auto")  # measures
    assert torch.equal(torch.get_rng_state(), cpu), "measuring drew from the global CPU generator"
    if dev is not None:
        assert torch.equal(torch.cuda.get_rng_state(), dev), "measuring drew from the CUDA generator"
    assert seen and all(t.is_contiguous(memory_format=cl) for t in seen)  # scratch kept the layout
    assert rel_err(y, instance_norm_act_ref(x, act="leaky_relu", residual=r)) <= 1e-5


# ---- 3. no new timing where a run must repeat --------------------------------------------------

def test_deterministic_algorithms_take_native_unless_a_choice_is_recorded(tuned, monkeypatch, tmp_path):
    path = tmp_path / "choices.json"
    tuned(FakeTimer({"triton": 1.0, "native": 2.0}), path=path)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    instance_norm_act(x, impl="auto")  # recorded: triton
    timer = FakeTimer({"triton": 1.0, "native": 2.0})
    chooser = tuned(timer, path=path)
    fused = []
    orig = K._fused_apply
    monkeypatch.setattr(K, "_fused_apply", lambda *a, **k: fused.append(1) or orig(*a, **k))
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True)
    try:
        instance_norm_act(x, impl="auto")  # the recorded choice holds
        assert len(fused) == 2  # tried once on scratch tensors, then the call
        with pytest.warns(RuntimeWarning, match=r"--deterministic.*native norm.*--norm_impl triton"):
            y = instance_norm_act(torch.randn(1, 2, 5, 4, device=DEVICE), impl="auto")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            instance_norm_act(torch.randn(1, 2, 6, 4, device=DEVICE), impl="auto")
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    assert timer.calls == [] and len(fused) == 2 and y.shape == (1, 2, 5, 4)
    assert len(chooser.choices) == 1  # the unmeasured native choices are not recorded


@pytest.mark.parametrize("seam", ["compiling", "capturing"])
def test_a_recorded_triton_choice_holds_untried_under_compile_and_capture(tuned, monkeypatch,
                                                                          tmp_path, seam):
    """A recorded 'triton' not yet tried in this process holds inside torch.compile or a CUDA-graph
    capture (where no trial launch may run): a resumed run compiles the path it took, not native."""
    path = tmp_path / "choices.json"
    tuned(FakeTimer({"triton": 1.0, "native": 2.0}), path=path)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    instance_norm_act(x, impl="auto")  # recorded: triton
    timer = FakeTimer({"triton": 2.0, "native": 1.0})
    chooser = tuned(timer, path=path)  # a new process: loaded from disk, never launched
    if seam == "compiling":
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    else:
        monkeypatch.setattr(K, "_capturing", lambda x: True)
    ran = []
    fused, native = (lambda *a, **k: ran.append("triton")), (lambda *a, **k: ran.append("native"))
    assert chooser.choose(x, None, None, None, "relu", fused, native) == "triton"
    assert timer.calls == [] and ran == [] and chooser.failed == {}
    unrecorded = torch.randn(1, 2, 5, 4, device=DEVICE)  # no choice on disk: native, untimed
    assert chooser.choose(unrecorded, None, None, None, "relu", fused, native) == "native"
    assert timer.calls == [] and ran == []


@pytest.mark.parametrize("device, norm_impl, rank, kept", [
    ("cuda", "auto", 0, "norm_autotune.json"), ("cuda", "auto", 1, "norm_autotune.rank1.json"),
    ("cpu", "auto", 0, None), ("cuda", "ref", 0, None)])
def test_a_training_run_on_cuda_keeps_its_norm_choices_in_its_run_folder(tmp_path, monkeypatch,
                                                                        device, norm_impl, rank, kept):
    """Trainer.__init__ names <run>/norm_autotune.json (one per rank; read by --resume) before its
    first norm; stopped right after, at check_norm_impl: the rest needs a GPU."""
    from pix2pixhd import kernels, trainer
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.distributed import DistInfo

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(K, "_AUTO", K.AutoChooser())
    K._AUTO.run_file = tmp_path / "an earlier run" / "norm_autotune.json"
    K._AUTO._loaded = True  # read already: the new file must be read at the next choice
    monkeypatch.setattr(trainer, "bind_cuda_device", lambda d: None)
    monkeypatch.setattr(trainer, "seed_rng", lambda seed: None)  # the test process's RNG stays
    monkeypatch.setattr(kernels, "check_norm_impl", stop)
    cfg = TrainConfig(name="r", checkpoints_dir=str(tmp_path), dataroot=str(tmp_path),
                      label_nc=4, resize_or_crop="none", no_vgg_loss=True, device="cpu",
                      norm_impl=norm_impl).resolved()
    with pytest.raises(Stop):
        trainer.Trainer(cfg, DistInfo(rank=rank, world_size=2, device=torch.device(device)))
    want = tmp_path / "r" / kept if kept else None
    assert K._AUTO.run_file == want and not K._AUTO._loaded
    monkeypatch.setenv(K.AUTOTUNE_ENV, str(tmp_path / "mine.json"))  # the variable wins
    assert K._AUTO.path == tmp_path / "mine.json"
    assert not (tmp_path / "r").exists()  # nothing written before the first measurement


@pytest.mark.parametrize("overwrite", [False, True])
def test_overwrite_neither_reads_nor_takes_over_the_replaced_runs_norm_choices(tmp_path, monkeypatch,
                                                                             overwrite):
    """--overwrite replaces the run in its folder (moved aside before the first step): its
    norm_autotune.json is the old run's. Trainer.__init__ (stopped at check_norm_impl, which reads
    the file next: the rest needs a GPU) marks it unread, so a damaged one does not stop the new run
    and the old run's choices are not taken over; without --overwrite (a folder this run may
    continue in) it is read, and a damaged one is refused. The variable's file is read either way."""
    from pix2pixhd import kernels, trainer
    from pix2pixhd.config import TrainConfig
    from pix2pixhd.distributed import DistInfo
    from pix2pixhd.errors import InputError

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.delenv(K.AUTOTUNE_ENV, raising=False)
    monkeypatch.setattr(K, "_AUTO", K.AutoChooser())
    monkeypatch.setattr(trainer, "bind_cuda_device", lambda d: None)
    monkeypatch.setattr(trainer, "seed_rng", lambda seed: None)
    monkeypatch.setattr(kernels, "check_norm_impl", stop)
    run = tmp_path / "r"
    run.mkdir()
    (run / "norm_autotune.json").write_text('{"k": {"choice": "triton"')   # cut short by a kill
    cfg = TrainConfig(name="r", checkpoints_dir=str(tmp_path), dataroot=str(tmp_path), label_nc=4,
                      resize_or_crop="none", no_vgg_loss=True, device="cpu", overwrite=overwrite).resolved()
    with pytest.raises(Stop):
        trainer.Trainer(cfg, DistInfo(rank=0, world_size=1, device=torch.device("cuda")))
    assert K._AUTO.path == run / "norm_autotune.json"
    if overwrite:
        K._AUTO._load()
        assert K._AUTO.choices == {}
        (run / "norm_autotune.json").write_text('{"k": {"choice": "triton"}}')   # whole: not taken over
        K._AUTO._load()
        assert K._AUTO.choices == {}
    else:
        with pytest.raises(InputError, match="run folder's norm choices .* not a readable JSON"):
            K._AUTO._load()
    mine = tmp_path / "mine.json"
    mine.write_text('{"k": {"choice": "native"}}')
    monkeypatch.setenv(K.AUTOTUNE_ENV, str(mine))   # the variable's file: read under --overwrite too
    K._AUTO._load()
    assert K._AUTO.choices == {"k": {"choice": "native"}}

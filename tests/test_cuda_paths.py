"""Branches taken only on CUDA, checked on a machine without one by faking what torch reports
(found by reading the code against torch's CUDA semantics before any GPU ran it):

* ``--precision auto`` takes bf16 only where the GPU computes in it (sm_80 and newer): torch's
  ``is_bf16_supported()`` also says yes where bf16 is emulated (a T4, a V100), slower than fp32;
* a process that a scheduler gave one GPU (SLURM ``--gpus-per-task=1``: CUDA_VISIBLE_DEVICES set
  per rank) runs on cuda:0 whatever its LOCAL_RANK, where cuda:LOCAL_RANK does not exist.
"""
import contextlib

import pytest
import torch

from pix2pixhd.distributed import DeviceUnavailableError, resolve_device
from pix2pixhd.synthesis import auto_precision


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_takes_bf16_only_where_the_gpu_computes_in_it(fake_cuda, monkeypatch, native, expected):
    # a T4/V100: bf16 tensors can be stored (emulated), so the default answer is yes
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or including_emulation)
    assert auto_precision(torch.device("cuda:0")) == expected
    assert auto_precision(torch.device("cpu")) == "fp32"


def test_one_gpu_bound_per_process_is_cuda_0_for_every_local_rank(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)   # processes a scheduler started
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")          # SLURM's binding for this task
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:0")
    assert resolve_device("cuda", local_rank=5) == torch.device("cuda:0")
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda:0")
    with pytest.raises(DeviceUnavailableError, match=r"^--device cuda:1: this machine has 1 CUDA"):
        resolve_device("cuda:1", local_rank=1)               # an explicit index is the user's
    # the whole machine visible (no binding): more ranks than GPUs is still refused
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(DeviceUnavailableError, match=r"^--device auto \(cuda:1\): this machine has 1"):
        resolve_device("auto", local_rank=1)
    # under torchrun the ranks of a node share CUDA_VISIBLE_DEVICES: two ranks on one visible GPU
    # would both take it (NCCL's "Duplicate GPU"), so that stays refused
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(DeviceUnavailableError, match=r"^--device auto \(cuda:1\): this machine has 1"):
        resolve_device("auto", local_rank=1)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    # two GPUs visible: ranks take their own
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")


def test_auto_precision_asks_the_synthesizer_s_own_device(fake_cuda, monkeypatch):
    """is_bf16_supported() answers for the current device: a process on cuda:1 with cuda:0
    current (an older GPU beside a newer one) must ask cuda:1."""
    asked = []
    monkeypatch.setattr(torch.cuda, "device", lambda d: asked.append(d) or contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert auto_precision(torch.device("cuda:1")) == "bf16"
    assert asked == [torch.device("cuda:1")]


def test_an_onnx_generator_stays_fp32_whatever_the_gpu(monkeypatch):
    """precision 'auto' with an ONNX graph (which computes in fp32) is fp32 even where a PyTorch
    generator would take bf16."""
    from pix2pixhd import synthesis
    from pix2pixhd.config import TrainConfig
    monkeypatch.setattr(synthesis, "auto_precision", lambda device: "bf16")
    cfg = TrainConfig(label_nc=3, no_instance=True, device="cpu").resolved()
    onnx_like = lambda x: x   # noqa: E731  (not an nn.Module: Synthesizer's test for an ONNX graph)
    assert synthesis.Synthesizer(onnx_like, cfg, "cpu").precision == "fp32"
    assert synthesis.Synthesizer(torch.nn.Identity(), cfg, "cpu").precision == "bf16"

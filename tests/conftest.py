"""Test-wide setup: Triton kernels run through the interpreter on machines without a GPU.

TRITON_INTERPRET must be set before any kernel module is imported (triton.jit reads it when the
kernel is defined), hence here, before the test modules import pix2pixhd.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

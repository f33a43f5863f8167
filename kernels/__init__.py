"""Triton kernels of pix2pixhd, installed as ``pix2pixhd.kernels``.

The kernels know nothing of the models: each is one public function with an ``impl=`` switch
and a pure-PyTorch reference twin that is its specification.
"""
from .instance_norm_act import (KernelBuildError, StrictKernelError, check_norm_impl, instance_norm_act,
                                instance_norm_act_ref, strict_kernels, triton_interpret_on)

__all__ = ["instance_norm_act", "instance_norm_act_ref", "check_norm_impl", "StrictKernelError",
           "KernelBuildError", "strict_kernels", "triton_interpret_on"]

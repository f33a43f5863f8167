"""Instance norm + optional affine + optional residual + activation, one public function.

Placeholder dispatch: only the reference exists so far; the Triton path is the kernels issue.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_ACTS = ("relu", "leaky_relu", "none")


def instance_norm_act_ref(x, weight=None, bias=None, *, act="relu", negative_slope=0.2,
                          eps=1e-5, residual=None, impl="ref"):
    """Pure-PyTorch specification of :func:`instance_norm_act` (same signature)."""
    if act not in _ACTS:
        raise ValueError(f"act={act!r}; expected one of {_ACTS}")
    y = F.instance_norm(x, weight=weight, bias=bias, eps=eps)
    if residual is not None:
        y = y + residual
    if act == "relu":
        y = F.relu(y)
    elif act == "leaky_relu":
        y = F.leaky_relu(y, negative_slope)
    return y


def instance_norm_act(x, weight=None, bias=None, *, act="relu", negative_slope=0.2, eps=1e-5,
                      residual=None, impl="auto"):
    return instance_norm_act_ref(x, weight, bias, act=act, negative_slope=negative_slope,
                                 eps=eps, residual=residual)

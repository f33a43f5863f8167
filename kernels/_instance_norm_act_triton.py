"""Triton kernels behind ``pix2pixhd.kernels.instance_norm_act``; import only through that module.

Imported lazily, on the first call that takes the Triton path, because ``triton.jit`` decides at
decoration time whether a kernel is compiled or interpreted (``TRITON_INTERPRET=1``): importing
this file early would freeze that choice before a test process had set the variable.

Math (per sample n and channel c, over the L = H*W pixels of x[n, c]):
    mean = sum(x) / L,  var = sum((x - mean)^2) / L  (biased, as nn.InstanceNorm2d)
    rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) * rstd
    z    = xhat * weight[c] + bias[c] (+ residual)         weight, bias, residual optional
    y    = act(z),  act in {none, relu, leaky_relu(slope)}
  backward, with gz = dy * act'(z) (the mask recomputed from x, mean, rstd; y is never saved):
    dbias[c]     = sum_{n, pixels} gz
    dweight[c]   = sum_{n, pixels} gz * xhat
    dresidual    = gz
    dx           = rstd * w * (gz - sum(gz) / L - xhat * sum(gz * xhat) / L)

Grid. One tensor layout serves NCHW and channels-last: element (n, c, p) lives at
n*stride_n + c*stride_c + p*stride_p (p = h*W + w). NCHW has stride_p = 1, channels-last
stride_c = 1; Triton specialises stride arguments equal to 1, so the tile [BLOCK_P, BLOCK_C]
is loaded coalesced along whichever axis is contiguous. At 2048x1024 one channel is 2M pixels,
far too many for one program, so the pixels of each (n, c) are cut into ``n_splits`` chunks of
``chunk`` pixels (a multiple of BLOCK_P):
    _stats_kernel      grid (N * n_splits, cdiv(C, BLOCK_C)): Welford partials of one chunk
    _combine_kernel    grid (N, cdiv(C, BLOCK_C)): merges the n_splits partials -> mean, rstd
    _fwd_kernel        grid (N * n_splits, cdiv(C, BLOCK_C)): normalise, affine, residual, act
    _bwd_reduce_kernel grid (N * n_splits, cdiv(C, BLOCK_C)): partial sum(gz), sum(gz * xhat)
    _bwd_dx_kernel     grid (N * n_splits, cdiv(C, BLOCK_C)): dx (and dresidual)
The forward reads x twice and writes y once; the backward reads x and dy twice each and writes
dx (and dresidual). The per-split partials are [N, n_splits, C] fp32, negligible traffic.

Numerics. Every load is converted to fp32 and all arithmetic is fp32 (fp16/bf16 are only storage
formats, cast once on store, compiled as cvt.rn: round to nearest even). The interpreter
(TRITON_INTERPRET=1) truncates its fp32 -> bf16 casts toward zero, about half of the bf16 outputs
one unit smaller in magnitude; fp_downcast_rounding="rtne" is the default and changes neither
(docs/kernels.md, Rounding). Divisions round correctly (``div_rn``; a plain ``/`` compiles to
the approximate ``div.full.f32``, up to 2 ulp, which the interpreter never shows): they act on
per-channel vectors only, so they cost nothing measurable. Statistics: within a tile a two-pass
mean/M2 over values held in registers, tiles merged into the running chunk statistics with Chan's
parallel update (the first tile's taken as they are), the chunks merged by Chan's formula in two
passes (mean first, then M2 = sum(M2_s + n_s (mean_s - mean)^2)).
No E[x^2] - E[x]^2 anywhere, so a channel with |mean| >> std keeps its precision, and a
constant channel gives var = 0, rstd = 1/sqrt(eps) and a finite output (= bias).

Determinism. No atomics: every partial is written by exactly one program and merged in a fixed
order, so results are bitwise reproducible run to run for a given shape and launch config.

Reference: ``instance_norm_act_ref`` in ``instance_norm_act.py`` (fp32 inside, same signature);
tests/test_kernels.py checks forward and every gradient against it.
"""
from __future__ import annotations

import inspect

import torch
import triton
import triton.language as tl


def _fix_old_interpreter_loop_bounds() -> None:
    """Lets the interpreter of Triton < 3.7 run these kernels beside NumPy >= 2.4.

    Those interpreters turn a tensor loop bound (``range(p_begin, p_end, ...)`` here) into a Python
    int with ``int(array)`` on a 1-element array, which NumPy 2.4 made an error ("only
    0-dimensional arrays can be converted to Python scalars"); Triton 3.7+ squeezes first. The
    same squeeze is installed here, only where the interpreter has the old line (triton 3.6, as on
    the GPU machines this project is lent, with NumPy 2.5). The compiled path is untouched.
    """
    try:
        from triton.runtime import interpreter
        patch = interpreter._patch_lang_tensor
        old = "int(self.handle.data)" in inspect.getsource(patch)
    except Exception:  # noqa: BLE001 - another Triton layout: nothing to fix
        return
    if not old or getattr(patch, "_pix2pixhd_fixed", False):
        return

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._pix2pixhd_fixed = True
    interpreter._patch_lang_tensor = patched


_fix_old_interpreter_loop_bounds()

ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2}
# Integer arguments Triton must not specialise on (value 1 -> constexpr, divisibility by 16): the
# split count only sets loop bounds and program indices, so specialising on it would only multiply
# the compiled variants (each one a JIT compile at first use on the GPU; see kernels/aot.py). The
# combine kernel's L and chunk only weight counts. Sizes and strides stay specialised: their
# divisibility is what lets the loads vectorise.
SPLIT_ARGS = ("n_splits",)


# Shared by the forward and both backward kernels: z and the activation's mask must come from
# one expression everywhere. The forward once folded rstd * w into one scale while the backward
# computed ((x - mean) * rstd) * w; near z = 0 the two roundings disagreed on z's sign, so the
# backward passed gradient where the forward had output 0 and vice versa
# (test_activation_mask_agrees_between_forward_and_backward).

@triton.jit
def _affine_params(w_ptr, b_ptr, c, c_mask, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                   BLOCK_C: tl.constexpr):
    """(w, b) [BLOCK_C] fp32 of channels c: 1 and 0 where there is no weight or bias."""
    if HAS_W:
        w = tl.load(w_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    else:
        w = tl.full([BLOCK_C], 1.0, dtype=tl.float32)
    if HAS_B:
        b = tl.load(b_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    else:
        b = tl.zeros([BLOCK_C], dtype=tl.float32)
    return w, b


@triton.jit
def _xhat(v, mean, rstd):
    """(x - mean) * rstd, not x * rstd - mean * rstd: the latter cancels when |mean| >> std."""
    return (v - mean[None, :]) * rstd[None, :]


@triton.jit
def _preact(xhat, w, b, res_ptr, offs, m, HAS_RES: tl.constexpr):
    """z = xhat * w + b (+ residual), the activation's input."""
    z = xhat * w[None, :] + b[None, :]
    if HAS_RES:
        z += tl.load(res_ptr + offs, mask=m, other=0.0).to(tl.float32)
    return z


@triton.jit
def _act(z, slope, ACT: tl.constexpr):
    """act(z); NaN stays NaN as in torch (a NaN fails z < 0, so it is kept, never zeroed)."""
    if ACT == 1:
        z = tl.where(z < 0, 0.0, z)
    elif ACT == 2:
        z = tl.where(z < 0, z * slope, z)
    return z


@triton.jit
def _act_grad(g, z, slope, ACT: tl.constexpr):
    """g * act'(z), torch's rule: the gradient passes where z > 0 (relu: exactly where y > 0;
    z = 0 and NaN pass none, or slope * g for leaky_relu)."""
    if ACT == 1:
        g = tl.where(z > 0, g, 0.0)
    elif ACT == 2:
        g = tl.where(z > 0, g, g * slope)
    return g



@triton.jit(do_not_specialize=SPLIT_ARGS)
def _stats_kernel(x_ptr, mean_part_ptr, m2_part_ptr,
                  C, L, stride_n, stride_c, stride_p, n_splits, chunk,
                  BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    n = pid // n_splits
    s = pid % n_splits
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    p_begin = s * chunk
    p_end = tl.minimum(p_begin + chunk, L)
    base = x_ptr + n.to(tl.int64) * stride_n + c.to(tl.int64)[None, :] * stride_c
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(p_begin, p_end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        m = (p < p_end)[:, None] & c_mask[None, :]
        v = tl.load(base + p.to(tl.int64)[:, None] * stride_p, mask=m, other=0.0).to(tl.float32)
        n_a = (start - p_begin).to(tl.float32)          # pixels already merged
        n_b = tl.minimum(p_end - start, BLOCK_P).to(tl.float32)
        mean_b = tl.math.div_rn(tl.sum(v, axis=0), n_b)
        d = tl.where(m, v - mean_b[None, :], 0.0)
        m2_b = tl.sum(d * d, axis=0)
        n_ab = n_a + n_b
        delta = mean_b - mean
        mean = mean + delta * tl.math.div_rn(n_b, n_ab)
        # The first tile's merge weighs delta^2 by n_a = 0: taken as 0 outright, since delta^2
        # overflows to inf for |x| >~ 1e19 and inf * 0 is NaN (the reference gives y = 0 there).
        m2 = m2 + m2_b + tl.where(n_a > 0, delta * delta * tl.math.div_rn(n_a * n_b, n_ab), 0.0)
    out = (n * n_splits + s).to(tl.int64) * C + c
    tl.store(mean_part_ptr + out, mean, mask=c_mask)
    tl.store(m2_part_ptr + out, m2, mask=c_mask)


@triton.jit(do_not_specialize=(*SPLIT_ARGS, "L", "chunk"))
def _combine_kernel(mean_part_ptr, m2_part_ptr, mean_ptr, rstd_ptr,
                    C, L, n_splits, chunk, eps,
                    BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    row0 = n.to(tl.int64) * n_splits
    # Pass 1: the count-weighted mean of the chunk means.
    acc = tl.zeros([BLOCK_S, BLOCK_C], dtype=tl.float32)
    for s0 in range(0, n_splits, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < n_splits
        cnt = tl.minimum(tl.maximum(L - s * chunk, 0), chunk).to(tl.float32)
        m = s_mask[:, None] & c_mask[None, :]
        mu = tl.load(mean_part_ptr + (row0 + s)[:, None] * C + c[None, :], mask=m, other=0.0)
        acc += cnt[:, None] * mu
    mean = tl.math.div_rn(tl.sum(acc, axis=0), L * 1.0)
    # Pass 2: Chan's merge, M2 = sum_s M2_s + n_s (mean_s - mean)^2.
    acc = tl.zeros([BLOCK_S, BLOCK_C], dtype=tl.float32)
    for s0 in range(0, n_splits, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        s_mask = s < n_splits
        cnt = tl.minimum(tl.maximum(L - s * chunk, 0), chunk).to(tl.float32)
        m = s_mask[:, None] & c_mask[None, :]
        offs = (row0 + s)[:, None] * C + c[None, :]
        mu = tl.load(mean_part_ptr + offs, mask=m, other=0.0)
        m2 = tl.load(m2_part_ptr + offs, mask=m, other=0.0)
        d = tl.where(m, mu - mean[None, :], 0.0)
        acc += m2 + cnt[:, None] * d * d
    var = tl.math.div_rn(tl.sum(acc, axis=0), L * 1.0)
    rstd = tl.math.div_rn(1.0, tl.math.sqrt_rn(var + eps))
    out = n.to(tl.int64) * C + c
    tl.store(mean_ptr + out, mean, mask=c_mask)
    tl.store(rstd_ptr + out, rstd, mask=c_mask)


@triton.jit
def _split_tile(mean_ptr, rstd_ptr, C, n_splits, BLOCK_C: tl.constexpr):
    """The tile of this program of the split grid (axis 0: sample x split, axis 1: channel
    blocks), as the kernels after the statistics start: sample n, split s, channels c and
    c_mask, their statistics' offset ``stat`` and values (mean, rstd)."""
    pid = tl.program_id(0)
    n = pid // n_splits
    s = pid % n_splits
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    stat = n.to(tl.int64) * C + c
    mean = tl.load(mean_ptr + stat, mask=c_mask, other=0.0)
    rstd = tl.load(rstd_ptr + stat, mask=c_mask, other=0.0)
    return n, s, c, c_mask, stat, mean, rstd


@triton.jit
def _split_pixels(n, s, c, L, stride_n, stride_c, chunk):
    """Split s's pixels [p_begin, p_end) of sample n and the tile's base offset (add p * stride_p).
    Apart from _split_tile so that each kernel keeps its order of loads (the compiled code, its
    registers included, stays as it was with the lines written out in each kernel)."""
    p_begin = s * chunk
    p_end = tl.minimum(p_begin + chunk, L)
    base = n.to(tl.int64) * stride_n + c.to(tl.int64)[None, :] * stride_c
    return p_begin, p_end, base


@triton.jit(do_not_specialize=SPLIT_ARGS)
def _fwd_kernel(x_ptr, y_ptr, res_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr,
                C, L, stride_n, stride_c, stride_p, n_splits, chunk, slope,
                HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_RES: tl.constexpr,
                ACT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n, s, c, c_mask, stat, mean, rstd = _split_tile(mean_ptr, rstd_ptr, C, n_splits, BLOCK_C)
    w, b = _affine_params(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, BLOCK_C)
    p_begin, p_end, base = _split_pixels(n, s, c, L, stride_n, stride_c, chunk)
    for start in range(p_begin, p_end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        m = (p < p_end)[:, None] & c_mask[None, :]
        offs = base + p.to(tl.int64)[:, None] * stride_p
        v = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
        z = _act(_preact(_xhat(v, mean, rstd), w, b, res_ptr, offs, m, HAS_RES), slope, ACT)
        tl.store(y_ptr + offs, z.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit(do_not_specialize=SPLIT_ARGS)
def _bwd_reduce_kernel(x_ptr, gy_ptr, res_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, part_ptr,
                       part_plane, C, L, stride_n, stride_c, stride_p, n_splits, chunk, slope,
                       HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_RES: tl.constexpr,
                       ACT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n, s, c, c_mask, stat, mean, rstd = _split_tile(mean_ptr, rstd_ptr, C, n_splits, BLOCK_C)
    if ACT != 0:
        w, b = _affine_params(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, BLOCK_C)
    p_begin, p_end, base = _split_pixels(n, s, c, L, stride_n, stride_c, chunk)
    acc_g = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_gx = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for start in range(p_begin, p_end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        m = (p < p_end)[:, None] & c_mask[None, :]
        offs = base + p.to(tl.int64)[:, None] * stride_p
        xhat = _xhat(tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32), mean, rstd)
        g = tl.load(gy_ptr + offs, mask=m, other=0.0).to(tl.float32)  # 0 outside the tile
        if ACT != 0:
            g = _act_grad(g, _preact(xhat, w, b, res_ptr, offs, m, HAS_RES), slope, ACT)
        acc_g += g
        acc_gx += g * xhat
    # part is [2, N, n_splits, C] (part_plane = N * n_splits * C): sum(gz), then sum(gz * xhat).
    out = (n * n_splits + s).to(tl.int64) * C + c
    tl.store(part_ptr + out, tl.sum(acc_g, axis=0), mask=c_mask)
    tl.store(part_ptr + part_plane + out, tl.sum(acc_gx, axis=0), mask=c_mask)


@triton.jit(do_not_specialize=SPLIT_ARGS)
def _bwd_dx_kernel(x_ptr, gy_ptr, res_ptr, w_ptr, b_ptr, mean_ptr, rstd_ptr, sums_ptr,
                   dx_ptr, dres_ptr,
                   sums_plane, C, L, stride_n, stride_c, stride_p, n_splits, chunk, slope,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_RES: tl.constexpr,
                   ACT: tl.constexpr, STORE_DX: tl.constexpr, STORE_DRES: tl.constexpr,
                   BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n, s, c, c_mask, stat, mean, rstd = _split_tile(mean_ptr, rstd_ptr, C, n_splits, BLOCK_C)
    # sums is [2, N, C] (sums_plane = N * C): per (n, c) sum(gz) and sum(gz * xhat), merged
    # over the splits. (Integer arguments equal to 1 become constexprs when compiled, so the
    # plane offset comes precomputed rather than as N.to(tl.int64) * C.)
    mean_g = tl.math.div_rn(tl.load(sums_ptr + stat, mask=c_mask, other=0.0), L * 1.0)
    mean_gx = tl.math.div_rn(tl.load(sums_ptr + sums_plane + stat, mask=c_mask, other=0.0), L * 1.0)
    w, b = _affine_params(w_ptr, b_ptr, c, c_mask, HAS_W, HAS_B, BLOCK_C)
    p_begin, p_end, base = _split_pixels(n, s, c, L, stride_n, stride_c, chunk)
    for start in range(p_begin, p_end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        m = (p < p_end)[:, None] & c_mask[None, :]
        offs = base + p.to(tl.int64)[:, None] * stride_p
        xhat = _xhat(tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32), mean, rstd)
        g = tl.load(gy_ptr + offs, mask=m, other=0.0).to(tl.float32)
        if ACT != 0:
            g = _act_grad(g, _preact(xhat, w, b, res_ptr, offs, m, HAS_RES), slope, ACT)
        if STORE_DRES:
            tl.store(dres_ptr + offs, g.to(dres_ptr.dtype.element_ty), mask=m)
        if STORE_DX:
            dx = (rstd * w)[None, :] * (g - mean_g[None, :] - xhat * mean_gx[None, :])
            tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=m)


# ---------------------------------------------------------------------------------------------
# Launchers. Tensors arrive already checked by instance_norm_act.py: x, residual, dy share one
# dense layout (NCHW or channels-last) described by (stride_n, stride_c, stride_p); weight and
# bias are contiguous [C] (the kernels read them at w_ptr + c) on x's device.

def layout_strides(x: torch.Tensor) -> tuple[int, int, int]:
    """(stride_n, stride_c, stride_p) of a [N, C, H, W] tensor dense in NCHW or channels-last."""
    sn, sc, sh, sw = x.stride()
    if x.shape[3] > 1:
        return sn, sc, sw                    # p = h * W + w advances by stride(w) ...
    return sn, sc, sh                        # ... and by stride(h) when W == 1


def launch_config(x: torch.Tensor, overrides: dict, sms: int | None = None) -> dict:
    """Block sizes and the pixel split, from the layout and the machine (overridable for tests).

    NCHW: one channel per program row, long contiguous pixel runs (BLOCK_P 2048, or 256 when
    H*W <= 1024; BLOCK_C 1).
    Channels-last: up to 64 channels side by side (contiguous) times enough pixels for ~4K
    elements per tile. The split gives about 4 programs per SM (``sms``: the GPU's SM count) so
    a layer with few (n, c) pairs, e.g. 1 x 64 channels at 2048x1024, still fills the GPU; each
    chunk spans whole tiles. ``sms=None`` (the CPU interpreter, which pays per program): one split.
    """
    n, c, h, w = x.shape
    L = h * w
    channels_last = x.stride(1) == 1 and c > 1
    if channels_last:
        block_c = min(triton.next_power_of_2(c), 64)
        block_p = max(4096 // block_c, 16)
        block_p = min(block_p, max(triton.next_power_of_2(L), 16))
    else:
        # Two tile lengths only: 2048 for long rows, 256 below (small layers are launch-bound;
        # more sizes would only add compiled variants).
        block_c, block_p = 1, (2048 if L > 1024 else 256)
    block_c = overrides.get("block_c", block_c)
    block_p = overrides.get("block_p", block_p)
    tiles = triton.cdiv(L, block_p)
    base = n * triton.cdiv(c, block_c)
    if "splits" in overrides:
        splits = overrides["splits"]
    elif sms is not None:
        splits = triton.cdiv(4 * sms, base)
    else:
        splits = 1
    splits = max(1, min(splits, tiles))
    chunk = triton.cdiv(tiles, splits) * block_p
    splits = triton.cdiv(L, chunk)
    # At least 16 bytes per thread and load (ld.global.v4.b32: 4 fp32 or 8 bf16), at most 8 warps;
    # kernels/aot.py shows the widths the compiled code gets.
    tile_bytes = block_p * block_c * x.element_size()
    num_warps = overrides.get("num_warps", max(1, min(8, tile_bytes // (16 * 32))))
    return dict(block_c=block_c, block_p=block_p, splits=splits, chunk=chunk, num_warps=num_warps)


# Ahead-of-time compilation (pix2pixhd.kernels.aot) runs the networks on meta tensors with a
# recorder installed here: every launch is handed to it instead of being run, and the launch
# configs are planned for the recorder's target (its SM count) rather than the local device.
_RECORDER = None


def _sm_count(x: torch.Tensor) -> int | None:
    if _RECORDER is not None:
        return _RECORDER.sms
    if x.is_cuda:
        return torch.cuda.get_device_properties(x.device).multi_processor_count
    return None


def _launch(kernel, grid, *args, **kwargs) -> None:
    if _RECORDER is not None:
        _RECORDER.launch(kernel, grid, args, kwargs)
    else:
        kernel[grid](*args, **kwargs)


def forward(x, weight, bias, residual, act, slope, eps, overrides):
    """y [N, C, H, W] (x's dtype and layout), mean and rstd [N, C] fp32."""
    N, C, H, W = x.shape
    L = H * W
    cfg = launch_config(x, overrides, _sm_count(x))
    sn, sc, sp = layout_strides(x)
    S, chunk = cfg["splits"], cfg["chunk"]
    mean_part = torch.empty((N, S, C), device=x.device, dtype=torch.float32)
    m2_part = torch.empty_like(mean_part)
    mean = torch.empty((N, C), device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    y = torch.empty_like(x)  # preserve_format: same strides as x
    grid = (N * S, triton.cdiv(C, cfg["block_c"]))
    _launch(_stats_kernel, grid, x, mean_part, m2_part, C, L, sn, sc, sp, S, chunk,
            BLOCK_P=cfg["block_p"], BLOCK_C=cfg["block_c"], num_warps=cfg["num_warps"])
    block_cc = min(triton.next_power_of_2(C), 128)
    block_s = min(triton.next_power_of_2(S), max(4096 // block_cc, 1))
    _launch(_combine_kernel, (N, triton.cdiv(C, block_cc)), mean_part, m2_part, mean, rstd,
            C, L, S, chunk, eps, BLOCK_S=block_s, BLOCK_C=block_cc, num_warps=4)
    dummy = mean  # never dereferenced: the HAS_* flags are False
    _launch(_fwd_kernel, grid, x, y, residual if residual is not None else dummy,
            weight if weight is not None else dummy, bias if bias is not None else dummy,
            mean, rstd, C, L, sn, sc, sp, S, chunk, slope,
            HAS_W=weight is not None, HAS_B=bias is not None,
            HAS_RES=residual is not None, ACT=ACT_CODES[act],
            BLOCK_P=cfg["block_p"], BLOCK_C=cfg["block_c"], num_warps=cfg["num_warps"])
    return y, mean, rstd


def backward(dy, x, weight, bias, residual, mean, rstd, act, slope, overrides,
             need_dx, dw_dtype, db_dtype, dres_dtype):
    """(dx or None, dweight or None, dbias or None, dresidual or None).

    ``bias`` and ``residual`` are only given when act != 'none' (the mask needs z); the
    ``d*_dtype`` arguments are the dtypes of the wanted gradients, None for those not wanted.
    """
    N, C, H, W = x.shape
    L = H * W
    cfg = launch_config(x, overrides, _sm_count(x))
    sn, sc, sp = layout_strides(x)
    S, chunk = cfg["splits"], cfg["chunk"]
    grid = (N * S, triton.cdiv(C, cfg["block_c"]))
    dummy = mean
    flags = dict(HAS_W=weight is not None, HAS_B=bias is not None, HAS_RES=residual is not None,
                 ACT=ACT_CODES[act], BLOCK_P=cfg["block_p"], BLOCK_C=cfg["block_c"],
                 num_warps=cfg["num_warps"])
    ptrs = (residual if residual is not None else dummy,
            weight if weight is not None else dummy, bias if bias is not None else dummy)
    part = torch.empty((2, N, S, C), device=x.device, dtype=torch.float32)
    _launch(_bwd_reduce_kernel, grid, x, dy, *ptrs, mean, rstd, part, N * S * C, C, L, sn, sc, sp,
            S, chunk, slope, **flags)
    sums = part.sum(dim=2)  # [2, N, C]; a fixed-order reduction, deterministic
    dw = sums[1].sum(0).to(dw_dtype) if dw_dtype is not None else None
    db = sums[0].sum(0).to(db_dtype) if db_dtype is not None else None
    dx = torch.empty_like(x) if need_dx else None
    dres = torch.empty_like(x, dtype=dres_dtype) if dres_dtype is not None else None
    if need_dx or dres is not None:
        _launch(_bwd_dx_kernel, grid, x, dy, *ptrs, mean, rstd, sums,
                dx if dx is not None else dummy, dres if dres is not None else dummy,
                N * C, C, L, sn, sc, sp, S, chunk, slope,
                STORE_DX=need_dx, STORE_DRES=dres is not None, **flags)
    return dx, dw, db, dres

"""Fused scalar quantizers: FSQ rounding and LFQ sign, each with id packing, one pass over the latents.

Both follow vector-quantize-pytorch's formulas step by step (fp32, no fused multiply-add) so the
ids agree with it; FSQ's ``tanh`` is the only function computed differently (libdevice on GPU,
an exp formula under the interpreter), so an id can differ only when a bounded latent lands within
a few ulp of a rounding boundary.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._vq import interpreting

try:  # libdevice is not available under the interpreter
    from triton.language.extra import libdevice as _libdevice
except Exception:  # pragma: no cover - depends on the Triton build
    _libdevice = None


@triton.jit
def _tanh(y, USE_LIBDEVICE: tl.constexpr):
    if USE_LIBDEVICE:
        r = _libdevice.tanh(y)
    else:
        e = tl.exp(-2.0 * tl.abs(y))
        t = (1.0 - e) / (1.0 + e)
        r = tl.where(y < 0, -t, t)
    return r


@triton.jit
def _round_half_even(v):
    f = tl.floor(v)
    frac = v - f
    odd = (f - 2.0 * tl.floor(f * 0.5)) == 1.0
    up = (frac > 0.5) | ((frac == 0.5) & odd)
    return tl.where(up, f + 1.0, f)


@triton.jit
def _fsq_level(z, a, b, c, hw, SYMMETRIC: tl.constexpr, HARD_CLAMP: tl.constexpr, USE_LIBDEVICE: tl.constexpr):
    """One FSQ rounding of z (BLOCK_M, BLOCK_C): (codes, level indices), as :func:`_fsq_kernel` computes them."""
    if SYMMETRIC:
        if HARD_CLAMP:
            t = tl.minimum(tl.maximum(z, -1.0), 1.0)
        else:
            t = _tanh(z, USE_LIBDEVICE)
        q = tl.floor((a[None, :] * (t + 1.0)) / 2.0 + 0.5)
        codes = b[None, :] * q - 1.0
        level = q
    else:
        y = z + a[None, :]
        if HARD_CLAMP:
            t = tl.minimum(tl.maximum(y, -1.0), 1.0)
        else:
            t = _tanh(y, USE_LIBDEVICE)
        q = _round_half_even(t * b[None, :] - c[None, :])
        codes = q / hw[None, :]
        level = q + hw[None, :]
    return codes, level


@triton.jit
def _fsq_kernel(z_ptr, codes_ptr, ids_ptr, a_ptr, b_ptr, c_ptr, hw_ptr, basis_ptr,
                M, C, stride_zm, stride_cm,
                SYMMETRIC: tl.constexpr, HARD_CLAMP: tl.constexpr, USE_LIBDEVICE: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rc = tl.arange(0, BLOCK_C)
    mask_m = rm < M
    mask_c = rc < C
    m2 = mask_m[:, None] & mask_c[None, :]
    z = tl.load(z_ptr + rm[:, None] * stride_zm + rc[None, :], mask=m2, other=0.0)
    a = tl.load(a_ptr + rc, mask=mask_c, other=0.0)        # standard: shift      symmetric: L - 1
    b = tl.load(b_ptr + rc, mask=mask_c, other=1.0)        # standard: half_l     symmetric: 2 / (L - 1)
    c = tl.load(c_ptr + rc, mask=mask_c, other=0.0)        # standard: offset     symmetric: unused
    hw = tl.load(hw_ptr + rc, mask=mask_c, other=1.0)      # standard: L // 2     symmetric: unused
    basis = tl.load(basis_ptr + rc, mask=mask_c, other=0)
    codes, level = _fsq_level(z, a, b, c, hw, SYMMETRIC, HARD_CLAMP, USE_LIBDEVICE)
    tl.store(codes_ptr + rm[:, None] * stride_cm + rc[None, :], codes, mask=m2)
    packed = tl.sum(tl.where(m2, level.to(tl.int64) * basis[None, :], 0), axis=1)
    tl.store(ids_ptr + rm, packed, mask=mask_m)


@triton.jit
def _rfsq_kernel(h_ptr, out_ptr, ids_ptr, counts_ptr, scales_ptr, a_ptr, b_ptr, c_ptr, hw_ptr, basis_ptr,
                 M, C, K, stride_hm, stride_om,
                 NUM_LEVELS: tl.constexpr, SYMMETRIC: tl.constexpr, HARD_CLAMP: tl.constexpr,
                 USE_LIBDEVICE: tl.constexpr, COUNT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """All residual levels of a row block in one pass; the residual never leaves registers."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rc = tl.arange(0, BLOCK_C)
    mask_m = rm < M
    mask_c = rc < C
    m2 = mask_m[:, None] & mask_c[None, :]
    rm64 = rm.to(tl.int64)
    residual = tl.load(h_ptr + rm64[:, None] * stride_hm + rc[None, :], mask=m2, other=0.0)
    a = tl.load(a_ptr + rc, mask=mask_c, other=0.0)
    b = tl.load(b_ptr + rc, mask=mask_c, other=1.0)
    c = tl.load(c_ptr + rc, mask=mask_c, other=0.0)
    hw = tl.load(hw_ptr + rc, mask=mask_c, other=1.0)
    basis = tl.load(basis_ptr + rc, mask=mask_c, other=0)
    total = tl.zeros([BLOCK_M, BLOCK_C], tl.float32)
    for lvl in tl.static_range(NUM_LEVELS):
        scale = tl.load(scales_ptr + lvl * C + rc, mask=mask_c, other=1.0)[None, :]
        codes, level = _fsq_level(residual / scale, a, b, c, hw, SYMMETRIC, HARD_CLAMP, USE_LIBDEVICE)
        quantized = codes * scale
        residual = residual - quantized
        total = total + quantized
        packed = tl.sum(tl.where(m2, level.to(tl.int64) * basis[None, :], 0), axis=1)
        tl.store(ids_ptr + rm64 * NUM_LEVELS + lvl, packed, mask=mask_m)
        if COUNT:
            tl.atomic_add(counts_ptr + lvl * K + packed, 1.0, mask=mask_m)
    tl.store(out_ptr + rm64[:, None] * stride_om + rc[None, :], total, mask=m2)


@triton.jit
def _lfq_kernel(x_ptr, codes_ptr, ids_ptr, M, C, stride_xm, stride_cm, scale,
                BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rc = tl.arange(0, BLOCK_C)
    mask_m = rm < M
    m2 = mask_m[:, None] & (rc[None, :] < C)
    x = tl.load(x_ptr + rm[:, None] * stride_xm + rc[None, :], mask=m2, other=0.0)
    pos = x > 0
    codes = tl.where(pos, scale, -scale)
    tl.store(codes_ptr + rm[:, None] * stride_cm + rc[None, :], codes, mask=m2)
    shift = tl.maximum(C - 1 - rc, 0).to(tl.int64)
    weight = tl.full([BLOCK_C], 1, tl.int64) << shift  # first dim = most significant bit
    packed = tl.sum(tl.where(m2 & pos, weight[None, :], 0), axis=1)
    tl.store(ids_ptr + rm, packed, mask=mask_m)


_CONSTANTS: dict = {}


def fsq_constants(levels: list[int], symmetric: bool, hard_clamp: bool, device, eps: float = 1e-3):
    """Per-dimension constants (a, b, c, half_width, basis) exactly as vector-quantize-pytorch builds them.

    Built on the CPU and copied to ``device`` once per (levels, options, device), then cached: a
    copy from host memory waits for the GPU, so it must not happen on every call.
    """
    key = (tuple(int(v) for v in levels), bool(symmetric), bool(hard_clamp), str(torch.device(device)), eps)
    if key not in _CONSTANTS:
        consts = _fsq_constants_cpu(list(key[0]), symmetric, hard_clamp, eps)
        _CONSTANTS[key] = tuple(t.to(device).contiguous() for t in consts)
    return _CONSTANTS[key]


def _fsq_constants_cpu(levels: list[int], symmetric: bool, hard_clamp: bool, eps: float):
    device = "cpu"
    lv = torch.tensor(levels, dtype=torch.int32, device=device)
    basis = torch.cumprod(torch.tensor([1] + list(levels[:-1]), device=device), dim=0).to(torch.int64)
    half_width = (lv // 2).float()
    if symmetric:
        lm1 = (lv - 1)
        return lm1.float(), 2.0 / lm1, torch.zeros_like(half_width), half_width, basis
    half_l = (lv - 1) * (1 + eps) / 2
    offset = torch.where(lv % 2 == 0, 0.5, 0.0).to(device)
    shift = offset / half_l if hard_clamp else torch.atanh(offset / half_l)
    return shift.float(), half_l.float(), offset.float(), half_width, basis


def fsq_quantize(z: torch.Tensor, levels: list[int], *, symmetric: bool = False, hard_clamp: bool = False):
    """FSQ: z (..., C) with C == len(levels) -> (codes (..., C) fp32 in [-1, 1], ids (...) int64)."""
    if z.shape[-1] != len(levels):
        raise ValueError(f"z must end in {len(levels)} (= len(levels)) channels, got {tuple(z.shape)}")
    lead = z.shape[:-1]
    z2 = z.reshape(-1, z.shape[-1]).float().contiguous()
    m, c = z2.shape
    a, b, cc, hw, basis = fsq_constants(list(levels), symmetric, hard_clamp, z.device)
    codes = torch.empty_like(z2)
    ids = torch.empty(m, dtype=torch.int64, device=z.device)
    if m:
        block_c = max(2, triton.next_power_of_2(c))
        block_m = 16 if interpreting() else 128
        _fsq_kernel[(triton.cdiv(m, block_m),)](
            z2, codes, ids, a, b, cc, hw, basis,
            m, c, z2.stride(0), codes.stride(0),
            SYMMETRIC=bool(symmetric), HARD_CLAMP=bool(hard_clamp),
            USE_LIBDEVICE=(_libdevice is not None and not interpreting()),
            BLOCK_M=block_m, BLOCK_C=block_c, num_warps=4, enable_fp_fusion=False)
    return codes.reshape(*lead, c), ids.reshape(lead)


def rfsq_quantize(h: torch.Tensor, levels: list[int], scales: torch.Tensor, *, symmetric: bool = False,
                  hard_clamp: bool = False, counts: torch.Tensor | None = None):
    """Residual FSQ over all levels in one kernel: h (..., C) fp32, scales (L, C) (or (L,)) fp32 ->
    (quantized (..., C) fp32 = sum of the levels' scaled codes, ids (..., L) int64).

    Level l rounds ``residual / scales[l]`` with FSQ and subtracts its codes times ``scales[l]``,
    as vector-quantize-pytorch's ``ResidualFSQ`` does. ``counts``: optional (L, K) fp32 histogram
    the kernel adds every id to (atomics), K = prod(levels).
    """
    if h.shape[-1] != len(levels):
        raise ValueError(f"h must end in {len(levels)} (= len(levels)) channels, got {tuple(h.shape)}")
    lead = h.shape[:-1]
    h2 = h.reshape(-1, h.shape[-1]).float().contiguous()
    m, c = h2.shape
    num_levels = scales.shape[0]
    scales = scales.float().reshape(num_levels, -1).expand(num_levels, c).contiguous()
    k = 1
    for v in levels:
        k *= int(v)
    a, b, cc, hw, basis = fsq_constants(list(levels), symmetric, hard_clamp, h.device)
    out = torch.empty_like(h2)
    ids = torch.empty((m, num_levels), dtype=torch.int64, device=h.device)
    if m:
        block_c = max(2, triton.next_power_of_2(c))
        block_m = 16 if interpreting() else 128
        _rfsq_kernel[(triton.cdiv(m, block_m),)](
            h2, out, ids, counts if counts is not None else out, scales, a, b, cc, hw, basis,
            m, c, k, h2.stride(0), out.stride(0),
            NUM_LEVELS=num_levels, SYMMETRIC=bool(symmetric), HARD_CLAMP=bool(hard_clamp),
            USE_LIBDEVICE=(_libdevice is not None and not interpreting()), COUNT=counts is not None,
            BLOCK_M=block_m, BLOCK_C=block_c, num_warps=4, enable_fp_fusion=False)
    return out.reshape(*lead, c), ids.reshape(*lead, num_levels)


def lfq_quantize(x: torch.Tensor, scale: float = 1.0):
    """LFQ: x (..., C) -> (codes (..., C) fp32 in {-scale, scale}, ids (...) int64, first dim = MSB)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).float().contiguous()
    m, c = x2.shape
    if c > 62:
        raise ValueError(f"LFQ ids are packed in int64: at most 62 bits, got {c}")
    codes = torch.empty_like(x2)
    ids = torch.empty(m, dtype=torch.int64, device=x.device)
    if m:
        block_c = max(2, triton.next_power_of_2(c))
        block_m = 16 if interpreting() else 128
        _lfq_kernel[(triton.cdiv(m, block_m),)](x2, codes, ids, m, c, x2.stride(0), codes.stride(0), float(scale),
                                                BLOCK_M=block_m, BLOCK_C=block_c, num_warps=4)
    return codes.reshape(*lead, c), ids.reshape(lead)

"""Fused nearest-code lookup: distance to every code + argmin + gather, in tiles.

One program owns ``BLOCK_N`` rows of ``x`` and walks the codebook in tiles of ``BLOCK_K`` codes,
keeping a running (best score, best id) per row, so no N x K matrix is ever written: memory is
O(N + K). With ``split_k > 1`` the codebook is cut into ``split_k`` ranges handled by different
programs and the per-range winners are reduced afterwards (O(split_k * N) extra memory), which
keeps the GPU busy when N is small.

Scores are computed exactly as vector-quantize-pytorch does, so the ids agree with it:

- ``metric="euclidean"``: ``sqrt(max((|x|^2 + |c|^2) + (-2 x.c), 1e-8))``, smallest wins;
- ``metric="dot"``: ``x.c``, largest wins (cosine codes: pass l2-normalized ``x`` and codes).

``|x|^2`` and ``|c|^2`` are computed once outside the kernel (in fp32) and read by it, so the only
difference from the PyTorch path is the summation order inside ``x.c``. Inputs may be fp32, bf16
or fp16: the dot product multiplies in the input type and accumulates in fp32 (bf16/fp16 products
are exact in fp32, fp32 uses IEEE fp32, never TF32). Ties go to the lowest code index, as
``torch.argmin``/``torch.argmax`` do: within a tile via a left tie-break, across tiles because a
later tile must be strictly better to win, across ``split_k`` ranges by taking the first minimum.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

EUCLIDEAN, DOT = 0, 1
_METRICS = {"euclidean": EUCLIDEAN, "dot": DOT}


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU with its interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@triton.jit
def _nearest_code_kernel(
    x_ptr, c_ptr, xsq_ptr, csq_ptr,          # (N, D), (K, D), (N,), (K,)
    ids_ptr, best_ptr, out_ptr,              # (S, N) int64 ids, (S, N) fp32 scores, (N, D) gathered codes
    N, K, D, stride_xn, stride_cn, stride_on,
    k_per_split,                             # codes per split range (a multiple of BLOCK_K)
    METRIC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    NUM_D_BLOCKS: tl.constexpr, WRITE_OUT: tl.constexpr, WRITE_SCORE: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = rn < N
    rn64 = rn.to(tl.int64)  # 64-bit offsets: N * D may pass 2**31
    rd = tl.arange(0, BLOCK_D)
    k_start = pid_s * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)

    if METRIC == 0:
        xsq = tl.load(xsq_ptr + rn, mask=mask_n, other=0.0)
    if NUM_D_BLOCKS == 1:  # the whole row fits in one tile: load it once
        x_tile = tl.load(x_ptr + rn64[:, None] * stride_xn + rd[None, :],
                         mask=mask_n[:, None] & (rd[None, :] < D), other=0.0)

    best = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_id = tl.zeros([BLOCK_N], tl.int32)
    for k0 in range(k_start, k_end, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        mask_k = rk < k_end
        acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
        if NUM_D_BLOCKS == 1:
            c_tile = tl.load(c_ptr + rk[:, None] * stride_cn + rd[None, :],
                             mask=mask_k[:, None] & (rd[None, :] < D), other=0.0)
            if UPCAST:
                acc = tl.dot(x_tile.to(tl.float32), tl.trans(c_tile.to(tl.float32)), acc, input_precision="ieee")
            else:
                acc = tl.dot(x_tile, tl.trans(c_tile), acc, input_precision=INPUT_PRECISION)
        else:
            for db in range(NUM_D_BLOCKS):
                dd = db * BLOCK_D + rd
                xt = tl.load(x_ptr + rn64[:, None] * stride_xn + dd[None, :],
                             mask=mask_n[:, None] & (dd[None, :] < D), other=0.0)
                ct = tl.load(c_ptr + rk[:, None] * stride_cn + dd[None, :],
                             mask=mask_k[:, None] & (dd[None, :] < D), other=0.0)
                if UPCAST:
                    acc = tl.dot(xt.to(tl.float32), tl.trans(ct.to(tl.float32)), acc, input_precision="ieee")
                else:
                    acc = tl.dot(xt, tl.trans(ct), acc, input_precision=INPUT_PRECISION)
        if METRIC == 0:
            csq = tl.load(csq_ptr + rk, mask=mask_k, other=0.0)
            score = (xsq[:, None] + csq[None, :]) + acc * -2.0
            score = tl.sqrt_rn(tl.maximum(score, 1e-8))
        else:
            score = -acc
        score = tl.where(mask_k[None, :], score, float("inf"))
        tile_best, tile_arg = tl.min(score, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_best < best  # strict: an earlier tile keeps its tie
        best = tl.where(better, tile_best, best)
        best_id = tl.where(better, tile_arg + k0, best_id)

    tl.store(ids_ptr + pid_s * N + rn, best_id.to(tl.int64), mask=mask_n)
    if WRITE_SCORE:
        tl.store(best_ptr + pid_s * N + rn, best, mask=mask_n)
    if WRITE_OUT:
        for db in range(NUM_D_BLOCKS):
            dd = db * BLOCK_D + rd
            m = mask_n[:, None] & (dd[None, :] < D)
            code = tl.load(c_ptr + best_id.to(tl.int64)[:, None] * stride_cn + dd[None, :], mask=m, other=0.0)
            tl.store(out_ptr + rn64[:, None] * stride_on + dd[None, :], code, mask=m)


@triton.jit
def _gather_rows_kernel(c_ptr, ids_ptr, out_ptr, N, D, stride_cn, stride_on,
                        BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, NUM_D_BLOCKS: tl.constexpr):
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = rn < N
    ids = tl.load(ids_ptr + rn, mask=mask_n, other=0)
    rn64 = rn.to(tl.int64)
    for db in range(NUM_D_BLOCKS):
        dd = db * BLOCK_D + tl.arange(0, BLOCK_D)
        m = mask_n[:, None] & (dd[None, :] < D)
        code = tl.load(c_ptr + ids[:, None] * stride_cn + dd[None, :], mask=m, other=0.0)
        tl.store(out_ptr + rn64[:, None] * stride_on + dd[None, :], code, mask=m)


def _pow2_at_least(n: int, lo: int) -> int:
    return max(lo, triton.next_power_of_2(max(1, n)))


def _default_blocks(n: int, k: int, d: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_N, BLOCK_K, BLOCK_D, num_warps, num_stages) for a problem size."""
    block_d = min(_pow2_at_least(d, 16), 128)
    if interpreting():  # small tiles: the interpreter's cost grows with tile size
        return 16, 16, min(block_d, 32), 1, 1
    big = d <= 64
    return (128 if big else 64), (128 if big else 64), block_d, 8, 3


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def nearest_code(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean", *,
                 x_sq: torch.Tensor | None = None, c_sq: torch.Tensor | None = None,
                 return_vectors: bool = True, block_n: int | None = None, block_k: int | None = None,
                 block_d: int | None = None, split_k: int | None = None):
    """Nearest code of each row of ``x``.

    x: (N, D) and codebook: (K, D), the same dtype (float32, bfloat16 or float16).
    metric: ``"euclidean"`` or ``"dot"`` (maximum inner product; cosine codes = normalized inputs).
    x_sq, c_sq: optional fp32 squared norms (N,), (K,) for ``"euclidean"``; computed when absent.
    Returns ``(ids, vectors)``: ids (N,) int64 in [0, K) and vectors (N, D) = ``codebook[ids]``
    (None when ``return_vectors`` is False).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    if x.ndim != 2 or codebook.ndim != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(f"x must be (N, D) and codebook (K, D), got {tuple(x.shape)} and {tuple(codebook.shape)}")
    if x.dtype != codebook.dtype or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"x and codebook must share a float32/bfloat16/float16 dtype, got {x.dtype} and {codebook.dtype}")
    if x.device != codebook.device:
        raise ValueError(f"x and codebook are on different devices ({x.device}, {codebook.device})")
    n, d = x.shape
    k = codebook.shape[0]
    if k == 0:
        raise ValueError("the codebook is empty")
    x = x.contiguous()
    codebook = codebook.contiguous()
    met = _METRICS[metric]
    if met == EUCLIDEAN:
        if x_sq is None:
            x_sq = (x.float() ** 2).sum(-1)
        if c_sq is None:
            c_sq = (codebook.float() ** 2).sum(-1)
        x_sq = x_sq.contiguous().float()
        c_sq = c_sq.contiguous().float()
    else:  # unused by the kernel, any valid pointer will do
        x_sq = c_sq = x.new_empty(1, dtype=torch.float32)

    bn, bk, bd, num_warps, num_stages = _default_blocks(n, k, d)
    bn, bk = block_n or bn, block_k or bk
    bd = block_d or bd
    num_d_blocks = triton.cdiv(d, bd)
    n_blocks = triton.cdiv(max(n, 1), bn)
    k_tiles = triton.cdiv(k, bk)
    if split_k is None:  # fewer row blocks than SMs: also split the codebook so every SM has work
        sms = _num_sms(x.device)
        split_k = 1 if n_blocks >= sms else min(k_tiles, triton.cdiv(2 * sms, n_blocks))
    split_k = max(1, min(int(split_k), k_tiles))
    k_per_split = triton.cdiv(k_tiles, split_k) * bk
    split_k = triton.cdiv(k, k_per_split)

    ids = torch.empty((split_k, n), dtype=torch.int64, device=x.device)
    scores = torch.empty((split_k, n), dtype=torch.float32, device=x.device) if split_k > 1 else ids
    out = torch.empty((n, d), dtype=codebook.dtype, device=x.device) if return_vectors else ids
    if n == 0:
        return ids[0], (out if return_vectors else None)
    write_out = return_vectors and split_k == 1
    precision = "ieee" if x.dtype == torch.float32 else "tf32"  # tf32 is ignored for 16-bit inputs
    _nearest_code_kernel[(n_blocks, split_k)](
        x, codebook, x_sq, c_sq, ids, scores, out,
        n, k, d, x.stride(0), codebook.stride(0), out.stride(0) if return_vectors else 0,
        k_per_split,
        METRIC=met, BLOCK_N=bn, BLOCK_K=bk, BLOCK_D=bd, NUM_D_BLOCKS=num_d_blocks,
        WRITE_OUT=write_out, WRITE_SCORE=split_k > 1, INPUT_PRECISION=precision,
        # the interpreter's bf16 dot is wrong; bf16 products are exact in fp32, so upcasting there
        # computes the same numbers the GPU's bf16 x bf16 -> fp32 dot does
        UPCAST=interpreting() and x.dtype == torch.bfloat16,
        num_warps=num_warps, num_stages=num_stages,
    )
    if split_k > 1:
        # first minimum over ranges = lowest id among equal scores (ranges are in code order)
        winner = torch.argmin(scores, dim=0, keepdim=True)
        ids = ids.gather(0, winner)[0]
        if return_vectors:
            _gather_rows_kernel[(n_blocks,)](codebook, ids, out, n, d, codebook.stride(0), out.stride(0),
                                             BLOCK_N=bn, BLOCK_D=bd, NUM_D_BLOCKS=num_d_blocks,
                                             num_warps=4)
    else:
        ids = ids[0]
    return ids, (out if return_vectors else None)

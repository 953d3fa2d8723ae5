"""PyTorch reference paths of the quantizer hot loops (the fused Triton kernels must match these).

- :func:`nearest_code_torch`: distance to every code + argmin + gather, chunked over N so the
  N x K distance matrix never exists whole (memory O(N + K) plus one chunk of bounded size);
- :func:`fsq_round_torch`: FSQ bound + rounding + id packing;
- :func:`lfq_sign_torch`: LFQ sign + bit packing.

Each follows vector-quantize-pytorch's arithmetic operation for operation, so ids are bitwise the
same as the library's. Ties go to the lowest index, as ``torch.argmin``/``torch.argmax`` do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METRICS = ("euclidean", "cosine", "dot")

# elements of one distance chunk: 2^16 fp32 = 256 KiB stays in a CPU core's L2 cache; on a GPU the chunk
# is there to bound memory, not for cache, so it is larger
_CHUNK_ELEMS = {"cpu": 1 << 16}
_CHUNK_ELEMS_DEFAULT = 1 << 25


def l2norm(t: torch.Tensor) -> torch.Tensor:
    """l2-normalize the last dim exactly as vector-quantize-pytorch does (eps 1e-6)."""
    return F.normalize(t, p=2, dim=-1, eps=1e-6)


def chunk_rows(n: int, k: int, device: torch.device, chunk_elems: int | None = None) -> int:
    elems = chunk_elems or _CHUNK_ELEMS.get(device.type, _CHUNK_ELEMS_DEFAULT)
    return max(1, min(n, elems // max(k, 1)))


def squared_norms(t: torch.Tensor) -> torch.Tensor:
    """fp32 squared l2 norms of the rows, computed as the library computes them."""
    return (t.float() ** 2).sum(-1)


@torch.no_grad()
def nearest_code_torch(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean", *,
                       x_sq: torch.Tensor | None = None, c_sq: torch.Tensor | None = None,
                       return_vectors: bool = True, chunk_elems: int | None = None):
    """Nearest code of each row of x: (N, D), codebook (K, D) -> (ids (N,) int64, codebook[ids]).

    metric ``"euclidean"``: smallest ``sqrt(max(|x|^2 + |c|^2 - 2 x.c, 1e-8))`` (the library's cdist);
    ``"dot"``: largest ``x.c`` (pass l2-normalized x and codes for cosine codes).
    Scores are computed in fp32 (bf16/fp16 inputs are upcast, as the library does).
    """
    if metric not in ("euclidean", "dot"):
        raise ValueError(f"metric must be 'euclidean' or 'dot' here, got {metric!r}")
    n, k = x.shape[0], codebook.shape[0]
    cb = codebook.float()
    ids = torch.empty(n, dtype=torch.long, device=x.device)
    if metric == "euclidean":
        x_sq = squared_norms(x) if x_sq is None else x_sq
        c_sq = squared_norms(codebook) if c_sq is None else c_sq
    rows = chunk_rows(n, k, x.device, chunk_elems)
    buf = torch.empty((rows, k), dtype=torch.float32, device=x.device)
    cb_t = cb.t()
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        xc = x[start:stop].float()
        b = buf[: stop - start]
        if metric == "euclidean":
            # (|x|^2 + |c|^2) + (-2 x.c), clamp, sqrt: the library's cdist bit for bit
            torch.add(x_sq[start:stop, None], c_sq[None, :], out=b)
            b.addmm_(xc, cb_t, alpha=-2)
            b.clamp_min_(1e-8).sqrt_()
            torch.argmin(b, dim=1, out=ids[start:stop])
        else:
            torch.mm(xc, cb_t, out=b)
            torch.argmax(b, dim=1, out=ids[start:stop])
    vectors = codebook.index_select(0, ids) if return_vectors else None
    return ids, vectors


# -- FSQ / LFQ ----------------------------------------------------------------------------------------
@torch.no_grad()
def fsq_round_torch(z: torch.Tensor, levels: list[int] | tuple[int, ...], *, symmetric: bool = False,
                    hard_clamp: bool = False, eps: float = 1e-3):
    """FSQ as vector-quantize-pytorch computes it: z (..., C) -> (codes (..., C) fp32, ids (...) int64)."""
    z = z.float()
    lv = torch.tensor(list(levels), dtype=torch.int32, device=z.device)
    basis = torch.cumprod(torch.tensor([1] + list(levels[:-1]), device=z.device), dim=0).to(torch.int64)
    if symmetric:
        t = z.clamp(-1.0, 1.0) if hard_clamp else torch.tanh(z)
        lm1 = lv - 1
        bracket = ((lm1 * (t + 1)) / 2.0 + 0.5).floor()
        codes = (2.0 / lm1) * bracket - 1.0
        level = bracket
    else:
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0).to(z.device)
        shift = offset / half_l if hard_clamp else torch.atanh(offset / half_l)
        y = z + shift
        t = y.clamp(-1.0, 1.0) if hard_clamp else torch.tanh(y)
        q = (t * half_l - offset).round()  # half to even, as the library
        half_width = lv // 2
        codes = q / half_width
        level = q + half_width
    ids = (level.to(torch.int64) * basis).sum(-1)
    return codes, ids


@torch.no_grad()
def lfq_sign_torch(x: torch.Tensor, scale: float = 1.0):
    """LFQ: x (..., C) -> (codes in {-scale, scale} fp32, ids (...) int64 with the first dim as MSB)."""
    x = x.float()
    c = x.shape[-1]
    pos = x > 0
    codes = torch.where(pos, torch.full_like(x, scale), torch.full_like(x, -scale))
    weights = 2 ** torch.arange(c - 1, -1, -1, device=x.device, dtype=torch.int64)
    ids = (pos.to(torch.int64) * weights).sum(-1)
    return codes, ids

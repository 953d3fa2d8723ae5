"""PyTorch reference paths of the quantizer hot loops (the fused Triton kernels must match these).

- :func:`nearest_code_torch`: distance to every code + argmin + gather, chunked over N so the
  N x K distance matrix never exists whole (memory O(N + K) plus one chunk of bounded size);
- :func:`fsq_round_torch`: FSQ bound + rounding + id packing;
- :func:`lfq_sign_torch`: LFQ sign + bit packing;
- :func:`rfsq_round_torch`: residual FSQ, level after level (the fused kernel does all levels at once);
- :func:`nearest_code_rerank_torch`: a low-precision (bf16/TF32) candidate search, then an exact
  fp32 re-rank of the best few codes: the exact search's ids at tensor-core speed.

Nothing here reads a tensor on the host, and per-call constants are cached on their device, so on a
GPU these functions only queue kernels.

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


# -- exact ids from a low-precision candidate search ------------------------------------------------
def _exact_scores(xc: torch.Tensor, cb: torch.Tensor, cand: torch.Tensor, metric: str,
                  x_sq: torch.Tensor | None, c_sq: torch.Tensor | None) -> torch.Tensor:
    """fp32 scores of the candidate codes (rows, C), lower is better, as :func:`nearest_code_torch` scores."""
    dots = torch.bmm(cb[cand], xc[:, :, None])[..., 0]  # (rows, C) exact fp32 x.c
    if metric == "euclidean":
        return ((x_sq[:, None] + c_sq[cand]) + dots * -2.0).clamp_min(1e-8).sqrt()
    return -dots


@torch.no_grad()
def nearest_code_rerank_torch(x: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean", *,
                              candidates: int = 8, candidate_dtype: torch.dtype = torch.bfloat16,
                              return_vectors: bool = True, chunk_elems: int | None = None):
    """Nearest code with the exact search's ids, most of the work in low precision.

    x: (N, D), codebook (K, D) -> (ids (N,) int64, codebook[ids] or None). The scores against every
    code are computed in ``candidate_dtype`` (bf16/fp16 GEMM on tensor cores, or fp32 for TF32 when
    the caller allows it); the ``candidates`` best codes of each row are then re-scored exactly in
    fp32 as :func:`nearest_code_torch` scores them, ties to the lowest index. The ids equal the
    exact search's whenever the true nearest code is among the candidates, i.e. unless more than
    ``candidates`` codes score within the low-precision error of the best one (duplicated codes
    count once per copy).
    """
    if metric not in ("euclidean", "dot"):
        raise ValueError(f"metric must be 'euclidean' or 'dot' here, got {metric!r}")
    n, k = x.shape[0], codebook.shape[0]
    take = max(1, min(int(candidates), k))
    cb = codebook.float()
    cb_low = codebook.to(candidate_dtype)
    c_sq = squared_norms(codebook) if metric == "euclidean" else None
    x_sq = squared_norms(x) if metric == "euclidean" else None
    ids = torch.empty(n, dtype=torch.long, device=x.device)
    rows = chunk_rows(n, k, x.device, chunk_elems)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        approx = torch.mm(x[start:stop].to(candidate_dtype), cb_low.t()).float()
        if metric == "euclidean":  # |x|^2 is the same for every code of a row: rank by |c|^2 - 2 x.c
            cand = torch.topk(c_sq[None, :] - 2.0 * approx, take, dim=1, largest=False).indices
        else:
            cand = torch.topk(approx, take, dim=1).indices
        xs = None if x_sq is None else x_sq[start:stop]
        score = _exact_scores(x[start:stop].float(), cb, cand, metric, xs, c_sq)
        best = score.min(dim=1, keepdim=True).values
        ids[start:stop] = torch.where(score == best, cand, k).min(dim=1).values  # lowest id among equals
    return ids, (codebook.index_select(0, ids) if return_vectors else None)


# -- FSQ / LFQ ----------------------------------------------------------------------------------------
_FSQ_CONSTANTS: dict = {}


def _fsq_constants(levels: tuple[int, ...], eps: float, device: torch.device):
    """(levels int32, basis int64, half_l, offset) on ``device``, made once: a host copy waits for the GPU."""
    key = (levels, eps, str(device))
    if key not in _FSQ_CONSTANTS:
        lv = torch.tensor(list(levels), dtype=torch.int32)
        basis = torch.cumprod(torch.tensor([1] + list(levels[:-1])), dim=0).to(torch.int64)
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        _FSQ_CONSTANTS[key] = tuple(t.to(device) for t in (lv, basis, half_l, offset))
    return _FSQ_CONSTANTS[key]


@torch.no_grad()
def fsq_round_torch(z: torch.Tensor, levels: list[int] | tuple[int, ...], *, symmetric: bool = False,
                    hard_clamp: bool = False, eps: float = 1e-3):
    """FSQ as vector-quantize-pytorch computes it: z (..., C) -> (codes (..., C) fp32, ids (...) int64)."""
    z = z.float()
    lv, basis, half_l, offset = _fsq_constants(tuple(int(v) for v in levels), eps, z.device)
    if symmetric:
        t = z.clamp(-1.0, 1.0) if hard_clamp else torch.tanh(z)
        lm1 = lv - 1
        bracket = ((lm1 * (t + 1)) / 2.0 + 0.5).floor()
        codes = (2.0 / lm1) * bracket - 1.0
        level = bracket
    else:
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
def rfsq_round_torch(h: torch.Tensor, levels: list[int] | tuple[int, ...], scales, *, symmetric: bool = False,
                     hard_clamp: bool = False):
    """Residual FSQ as vector-quantize-pytorch's ``ResidualFSQ`` computes it in eval, level after level:
    h (..., C), scales (L, C) -> (quantized (..., C) in h's dtype, ids (..., L) int64)."""
    quantized_out = 0.0
    residual = h
    all_ids = []
    for scale in scales:
        z = residual / scale
        codes, ids = fsq_round_torch(z.float(), levels, symmetric=symmetric, hard_clamp=hard_clamp)
        quantized = codes.to(z.dtype) * scale
        residual = residual - quantized
        quantized_out = quantized_out + quantized
        all_ids.append(ids)
    return quantized_out, torch.stack(all_ids, dim=-1)


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

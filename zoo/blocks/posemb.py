"""Fixed positional embeddings."""

from __future__ import annotations

import torch


def sincos_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(dim, height, width) MoCo-v3 2D sin-cos embedding: at row r, column c the vector is
    [sin(r w), cos(r w), sin(c w), cos(c w)] with w_i = temperature^(-i / (dim/4)), i < dim/4."""
    if dim % 4:
        raise ValueError(f"2D sin-cos embeddings need dim divisible by 4, got {dim}")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    rows = torch.arange(height, dtype=torch.float32)[:, None] * omega  # (H, D/4)
    cols = torch.arange(width, dtype=torch.float32)[:, None] * omega  # (W, D/4)
    emb = torch.cat([rows.sin()[:, None].expand(-1, width, -1), rows.cos()[:, None].expand(-1, width, -1),
                     cols.sin()[None].expand(height, -1, -1), cols.cos()[None].expand(height, -1, -1)], dim=-1)
    return emb.permute(2, 0, 1).contiguous()

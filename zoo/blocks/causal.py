"""Causal (GPT-style) transformer blocks with a key/value cache for autoregressive sampling.

Cached and uncached forward passes run the same arithmetic per position (one softmax over the
keys at positions <= i), so sampling with and without the cache gives the same ids.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class KVCache:
    """Keys and values of every layer: (B, heads, max_len, head_dim) each, filled up to ``length``."""

    def __init__(self, depth: int, batch: int, heads: int, max_len: int, head_dim: int, *,
                 device: torch.device, dtype: torch.dtype):
        shape = (batch, heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(depth)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(depth)]
        self.length = 0
        self.max_len = max_len


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position i sees positions <= i. x: (B, T, width)."""

    def __init__(self, width: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} must be a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.num_heads)
        p = self.dropout if self.training else 0.0
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:  # append the new positions, attend to everything cached so far (causal within the chunk)
            start, t = cache.length, x.shape[1]
            cache.k[layer][:, :, start:start + t] = k
            cache.v[layer][:, :, start:start + t] = v
            keys, values = cache.k[layer][:, :, :start + t], cache.v[layer][:, :, :start + t]
            mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(start)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=p)
        return self.proj(rearrange(out, "b h t d -> b t (h d)"))


class CausalBlock(nn.Module):
    """Pre-norm GPT block: x + Attn(LN(x)), then x + MLP(LN(x)). x: (B, T, width)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, num_heads, dropout)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=nn.GELU(),
                                             c_proj=nn.Linear(hidden, width), drop=nn.Dropout(dropout)))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))

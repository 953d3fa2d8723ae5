"""A causal Q-Former (BLIP-2 / SEED): learned queries read frozen image features through a BERT stack.

Each layer is post-norm BERT: self-attention among the queries (under a lower-triangular mask when
``causal``, so query i sees only queries <= i), then, in every ``cross_attention_freq``-th layer
(layers 0, f, 2f, ...), cross-attention from the queries to the backbone features, then the
query feed-forward. SEED's Q-Former keeps only the query path of BLIP-2's BERT (no word/position
embeddings, no text feed-forward), so the parameter names follow that layout
(``embeddings.LayerNorm``, ``encoder.layer.{i}.attention.self.query``, ``...crossattention...``,
``intermediate_query.dense``, ``output_query.dense`` / ``LayerNorm``) and official checkpoints map
one-to-one below the ``Qformer.bert.`` prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import InputError


class QFormerAttention(nn.Module):
    """Multi-head attention with BERT's separate ``query``/``key``/``value`` projections.

    x: (B, N, width), context: (B, L, kv_width) -> (B, N, width) (heads concatenated, no output proj).
    """

    def __init__(self, width: int, num_heads: int, kv_width: int | None = None):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not a multiple of num_heads {num_heads}")
        kv_width = kv_width or width
        self.num_heads = num_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(kv_width, width)
        self.value = nn.Linear(kv_width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask: optional (N, L) bool, True where a query may attend."""
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.num_heads)
                   for t in (self.query(x), self.key(context), self.value(context)))
        return rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "b h n d -> b n (h d)")


class AddNorm(nn.Module):
    """BERT's output sublayer: LayerNorm(dense(h) + residual). h: (B, N, in_dim) -> (B, N, width)."""

    def __init__(self, in_dim: int, width: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_dim, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nn.Module):
    """Attention (``self``) plus its post-norm residual (``output``)."""

    def __init__(self, width: int, num_heads: int, eps: float, kv_width: int | None = None):
        super().__init__()
        self.self = QFormerAttention(width, num_heads, kv_width)
        self.output = AddNorm(width, width, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.output(self.self(x, x if context is None else context, mask), x)


class Intermediate(nn.Module):
    """dense + GELU (exact): (B, N, width) -> (B, N, mlp_dim)."""

    def __init__(self, width: int, mlp_dim: int):
        super().__init__()
        self.dense = nn.Linear(width, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class QFormerLayer(nn.Module):
    """Self-attention, optional cross-attention to the image features, query feed-forward."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int, kv_width: int, cross: bool, eps: float):
        super().__init__()
        self.attention = BertAttention(width, num_heads, eps)
        self.crossattention = BertAttention(width, num_heads, eps, kv_width) if cross else None
        self.intermediate_query = Intermediate(width, mlp_dim)
        self.output_query = AddNorm(mlp_dim, width, eps)

    def forward(self, x: torch.Tensor, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask=mask)
        if self.crossattention is not None:
            x = self.crossattention(x, features)
        return self.output_query(self.intermediate_query(x), x)


class _Embeddings(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.LayerNorm = nn.LayerNorm(width, eps=eps)


class _Encoder(nn.Module):
    def __init__(self, layers: list[QFormerLayer]):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class CausalQFormer(nn.Module):
    """queries (B, N, width) + image features (B, L, kv_width) -> query embeddings (B, N, width).

    The queries themselves are owned by the model (SEED's ``query_tokens``) and passed in.
    """

    def __init__(self, width: int = 768, depth: int = 12, num_heads: int = 12, mlp_dim: int = 3072,
                 kv_width: int = 1408, cross_attention_freq: int = 2, causal: bool = True, eps: float = 1e-12):
        super().__init__()
        if cross_attention_freq < 1:
            raise ValueError(f"cross_attention_freq must be >= 1, got {cross_attention_freq}")
        self.width, self.kv_width, self.causal = width, kv_width, causal
        self.embeddings = _Embeddings(width, eps)
        self.encoder = _Encoder([QFormerLayer(width, num_heads, mlp_dim, kv_width, i % cross_attention_freq == 0, eps)
                                 for i in range(depth)])

    def attention_mask(self, num_queries: int, device: torch.device | None = None) -> torch.Tensor | None:
        """(N, N) bool, True where query i may attend to query j (j <= i when causal); None if not causal."""
        if not self.causal:
            return None
        return torch.ones(num_queries, num_queries, dtype=torch.bool, device=device).tril()

    def forward(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3 or features.shape[-1] != self.kv_width:
            raise InputError(f"the Q-Former cross-attends to features of shape (B, L, {self.kv_width}), got "
                             f"{tuple(features.shape)}: the backbone's feature width must match the config")
        x = self.embeddings.LayerNorm(queries)
        mask = self.attention_mask(x.shape[1], x.device)
        for layer in self.encoder.layer:
            x = layer(x, features, mask)
        return x


__all__ = ["CausalQFormer", "QFormerAttention", "QFormerLayer"]

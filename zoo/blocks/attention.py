"""Pre-norm transformer blocks shared by every ViT-style encoder and decoder in the zoo.

Parameter names (``ln_1``, ``attn``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) follow the CLIP/TiTok
layout so official checkpoints map one-to-one.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class ResidualAttentionBlock(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)). x: (B, L, width) -> (B, L, width)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, hidden), gelu=nn.GELU(), c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, width); attn_mask: optional (L, L) bool, True = may NOT attend (e.g. causal);
        key_padding_mask: optional (B, L) bool, True = no query may attend to this key (per sample)."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask, key_padding_mask=key_padding_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Sequential):
    """A stack of ``depth`` :class:`ResidualAttentionBlock`. x: (B, L, width) -> (B, L, width)."""

    def __init__(self, width: int, depth: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__(*[ResidualAttentionBlock(width, num_heads, mlp_ratio) for _ in range(depth)])

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self:
            x = block(x, attn_mask, key_padding_mask)
        return x

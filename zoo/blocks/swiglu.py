"""Bias-free pre-norm transformer blocks with QK-norm and a SwiGLU MLP (FlexTok / modern ViT style).

- norms are LayerNorms without affine parameters, computed in fp32 (:func:`layer_norm_fp32`);
- attention has separate ``wq``/``wk``/``wv``/``proj`` projections without bias, an fp32 LayerNorm
  on queries and keys per head (QK-norm) and the muP scale ``8 / head_dim`` (= 1/sqrt(64) at 64);
- the MLP is SwiGLU: ``fc2(silu(fc1(x)) * fc3(x))`` with hidden width ``int(2 * int(width * mlp_ratio) / 3)``.

Parameter names (``attn.wq``, ``mlp.fc1``...) follow apple/ml-flextok so its checkpoints map 1:1.
Masks follow ``scaled_dot_product_attention``: a bool (L, L) or (B, 1, L, L) tensor, True = may attend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def layer_norm_fp32(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dim without affine parameters, computed in fp32, cast back."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps).type_as(x)


def swiglu_hidden(width: int, mlp_ratio: float) -> int:
    """Hidden width of the SwiGLU MLP: 2/3 of ``int(width * mlp_ratio)`` (2048 at width 768, ratio 4)."""
    return int(2 * int(width * mlp_ratio) / 3)


class QKNormAttention(nn.Module):
    """Multi-head self-attention. x: (B, L, width) -> (B, L, width)."""

    def __init__(self, width: int, num_heads: int, qk_norm: bool = True):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.qk_norm = qk_norm
        self.scale = 8.0 / self.head_dim  # muP attention scale
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(width, width, bias=False)
        self.wv = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=self.num_heads) for f in (self.wq, self.wk, self.wv))
        if self.qk_norm:
            q, k = layer_norm_fp32(q), layer_norm_fp32(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class SwiGLU(nn.Module):
    """x (..., width) -> fc2(silu(fc1(x)) * fc3(x)) (..., width); no biases."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)
        self.fc3 = nn.Linear(width, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class SwiGLUBlock(nn.Module):
    """x + Attn(LN(x)), then x + SwiGLU(LN(x)); LNs without affine parameters. (B, L, w) -> (B, L, w)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.width = width
        self.attn = QKNormAttention(width, num_heads, qk_norm)
        self.mlp = SwiGLU(width, swiglu_hidden(width, mlp_ratio))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(layer_norm_fp32(x), attn_mask)
        return x + self.mlp(layer_norm_fp32(x))


class SwiGLUTransformer(nn.Module):
    """``depth`` :class:`SwiGLUBlock` in ``blocks``. x: (B, L, width) -> (B, L, width)."""

    def __init__(self, width: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(SwiGLUBlock(width, num_heads, mlp_ratio, qk_norm) for _ in range(depth))
        init_xavier(self)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, attn_mask)
        return x


def init_xavier(module: nn.Module) -> None:
    """Xavier-uniform Linear weights and zero biases, except ``adaLN_modulation`` layers (all zero)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            if "adaLN_modulation" in name:
                nn.init.zeros_(m.weight)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def prefix_causal_mask(num_prefix: int, num_causal: int, device: torch.device | None = None) -> torch.Tensor:
    """(L, L) bool mask, L = num_prefix + num_causal: every token sees the ``num_prefix`` first tokens
    (e.g. patches); the last ``num_causal`` (e.g. registers) also see themselves and earlier ones.
    Prefix tokens never see the causal ones."""
    n = num_prefix + num_causal
    idx = torch.arange(n, device=device)
    return (idx[None, :] < num_prefix) | (idx[None, :] <= idx[:, None])

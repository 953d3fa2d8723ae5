"""adaLN-zero time conditioning (DiT style) for flow / diffusion transformers.

- :class:`TimestepEmbedder`: t (B,) -> (B, width), sinusoidal features then a 2-layer SiLU MLP;
- :class:`AdaLNZeroBlock`: a :class:`~zoo.blocks.swiglu.SwiGLUBlock` whose norms are modulated by a
  conditioning vector per sample; with ``expansion`` > 1 every sample carries ``expansion`` sets of
  modulations, one per segment of the sequence (e.g. image patches and register tokens);
- :class:`AdaLNHead`: LN, shift/scale modulation, linear readout.

All modulation layers start at zero, so each block starts as the identity (adaLN-zero).
Parameter names (``adaLN_modulation.1``, ``mlp.0``/``mlp.2``) follow apple/ml-flextok.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from zoo.blocks.swiglu import SwiGLUBlock, layer_norm_fp32


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1.0 + scale) + shift


class TimestepEmbedder(nn.Module):
    """t (B,) float -> (B, width). Features [cos(t f), sin(t f)] with f_i = (1000 / max_timestep) *
    max_period^(-i / half), i < half = freq_dim / 2, then Linear-SiLU-Linear."""

    def __init__(self, width: int, freq_dim: int = 256, max_timestep: float = 1000.0, max_period: float = 256.0):
        super().__init__()
        self.freq_dim, self.max_timestep, self.max_period = freq_dim, max_timestep, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))
        for m in (self.mlp[0], self.mlp[2]):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def features(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = (1000.0 / self.max_timestep) * torch.exp(
            -math.log(self.max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.freq_dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(t).to(self.mlp[0].weight.dtype))


def expand_segments(mod: torch.Tensor, segments: Sequence[int]) -> torch.Tensor:
    """mod (B, len(segments) * D) -> (B, sum(segments), D): the i-th D-chunk repeated over segment i."""
    chunks = mod.chunk(len(segments), dim=-1)
    return torch.cat([c[:, None].expand(-1, n, -1) for c, n in zip(chunks, segments)], dim=1)


class AdaLNZeroBlock(SwiGLUBlock):
    """x (B, L, w), cond (B, w), segments (lengths summing to L, ``expansion`` of them) -> (B, L, w).

    Modulations per segment, in order: gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True,
                 expansion: int = 1):
        super().__init__(width, num_heads, mlp_ratio, qk_norm)
        self.expansion = expansion
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, expansion * 6 * width))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, segments: Sequence[int] | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        segments = [x.shape[1]] if segments is None else segments
        if len(segments) != self.expansion:
            raise ValueError(f"this block modulates {self.expansion} segments, got {len(segments)}")
        mod = expand_segments(self.adaLN_modulation(cond), segments)
        gate_msa, gate_mlp, shift_msa, scale_msa, shift_mlp, scale_mlp = mod.chunk(6, dim=-1)
        x = x + gate_msa * self.attn(modulate(layer_norm_fp32(x), shift_msa, scale_msa), attn_mask)
        return x + gate_mlp * self.mlp(modulate(layer_norm_fp32(x), shift_mlp, scale_mlp))


class AdaLNHead(nn.Module):
    """x (B, L, w), cond (B, w) -> (B, L, out): proj(LN(x) * (1 + scale) + shift); zero-initialised."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.proj = nn.Linear(width, out_dim)
        for m in (self.adaLN_modulation[1], self.proj):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(cond)[:, None].chunk(2, dim=-1)
        return self.proj(modulate(layer_norm_fp32(x), shift, scale))

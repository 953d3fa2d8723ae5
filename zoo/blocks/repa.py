"""REPA (representation alignment, arXiv 2410.06940): project intermediate features of a generator to
the feature space of a frozen vision backbone and maximise their cosine similarity per token.

The backbone is any callable images (B, 3, H, W) -> features (B, N, D) (a square token grid) or
(B, D, h, w); FlexTok used DINOv2-L, whose weights are not available offline here, so any frozen
model can be passed in (tests use a small random conv net).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.blocks.swiglu import layer_norm_fp32
from zoo.errors import InputError


class ProjectionHead(nn.Module):
    """(..., width) -> (..., out_dim): LN (no affine), then ``num_layers`` Linear layers with SiLU between."""

    def __init__(self, width: int, out_dim: int, hidden_ratio: float = 4.0, num_layers: int = 3):
        super().__init__()
        hidden = int(width * hidden_ratio)
        dims = [width] + [hidden] * (num_layers - 1)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.mlp = nn.Sequential(*layers)
        self.out_proj = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.mlp(layer_norm_fp32(x)))


def to_token_grid(features: torch.Tensor, grid: int) -> torch.Tensor:
    """Backbone features (B, N, D) with N a square or (B, D, h, w) -> (B, grid*grid, D) by bilinear resizing."""
    if features.ndim == 3:
        side = math.isqrt(features.shape[1])
        if side * side != features.shape[1]:
            raise InputError(f"REPA backbone tokens must form a square grid, got {features.shape[1]} tokens "
                             "(drop class/register tokens first)")
        features = rearrange(features, "b (h w) d -> b d h w", h=side)
    elif features.ndim != 4:
        raise InputError(f"REPA backbone features must be (B, N, D) or (B, D, h, w), got {tuple(features.shape)}")
    if features.shape[-1] != grid or features.shape[-2] != grid:
        features = F.interpolate(features.float(), size=(grid, grid), mode="bilinear", align_corners=False)
    return rearrange(features, "b d h w -> b (h w) d")


def repa_loss(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cos(projected, target); both (B, N, D)."""
    if projected.shape != target.shape:
        raise InputError(f"REPA projection {tuple(projected.shape)} and backbone features {tuple(target.shape)} "
                         "differ in shape (set repa_dim to the backbone's feature width)")
    return (1 - F.cosine_similarity(projected.float(), target.float(), dim=-1)).mean()

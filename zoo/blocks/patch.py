"""Patch embedding and its inverse."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class PatchEmbed(nn.Conv2d):
    """(B, C, H, W) -> (B, (H/p)*(W/p), width): a strided conv, flattened row-major."""

    def __init__(self, in_channels: int, width: int, patch_size: int):
        super().__init__(in_channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return rearrange(super().forward(images), "b d h w -> b (h w) d")


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """(B, (p*p*C), h, w) channel-first patch vectors -> (B, C, h*p, w*p) images."""
    return rearrange(patches, "b (p1 p2 c) h w -> b c (h p1) (w p2)", p1=patch_size, p2=patch_size, c=channels)

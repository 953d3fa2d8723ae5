"""A VQGAN-style convolutional pixel decoder (the MaskGIT-VQGAN decoder layout).

TiTok's two-stage variants decode 1D tokens into a 16x16 grid of proxy-code probabilities, embed
them with a 1024x256 codebook and let this decoder render pixels. Parameter names follow the
official layout (``conv_in``, ``mid.i``, ``up.i.block.j``, ``up.i.upsample_conv``, ``norm_out``,
``conv_out``) so official weights map one-to-one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice plus a residual. (B, in, H, W) -> (B, out, H, W).

    When the width changes, the MaskGIT-VQGAN layout has no input shortcut: the residual is a 1x1
    conv of the branch output itself (``h + nin_shortcut(h)``), which we keep for weight parity.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = (nn.Conv2d(out_channels, out_channels, 1, bias=False)
                             if in_channels != out_channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if self.nin_shortcut is not None else x)


class UpLevel(nn.Module):
    """``num_blocks`` ResnetBlocks, then (optionally) 2x nearest upsampling and a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(num_blocks))
        self.upsample_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class ConvPixelDecoder(nn.Module):
    """(B, z_channels, h, w) -> (B, 3, h*2^(L-1), w*2^(L-1)), L = len(channel_mult)."""

    def __init__(self, z_channels: int = 256, hidden: int = 128, channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
                 num_res_blocks: int = 2):
        super().__init__()
        levels = len(channel_mult)
        block_in = hidden * channel_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.ModuleList([ResnetBlock(block_in, block_in), ResnetBlock(block_in, block_in)])
        up = []
        for level in reversed(range(levels)):  # built coarse-to-fine, stored fine-first (official order)
            block_out = hidden * channel_mult[level]
            up.insert(0, UpLevel(block_in, block_out, num_res_blocks, upsample=level != 0))
            block_in = block_out
        self.up = nn.ModuleList(up)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        for block in self.mid:
            x = block(x)
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))

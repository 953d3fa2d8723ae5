"""Layers for ``kernels.kernelize``: drop-in forwards for the zoo's swappable quantizer layers.

Each class is stateless (no constructor, no members) and its ``forward`` has the same signature
as the zoo layer it replaces (``zoo.kernels.layers``); ``kernelize`` binds it to the zoo module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._scalar import fsq_quantize, lfq_quantize, rfsq_quantize
from ._vq import nearest_code


class NearestCode(nn.Module):
    """x (..., D), codebook (K, D), metric "euclidean" | "dot" -> (ids (...) int64, vectors (..., D))."""

    def forward(self, x: torch.Tensor, codebook: torch.Tensor, metric: str):
        lead = x.shape[:-1]
        ids, vectors = nearest_code(x.reshape(-1, x.shape[-1]), codebook, metric)
        return ids.reshape(lead), vectors.reshape(*lead, codebook.shape[-1])


class FSQRound(nn.Module):
    """z (..., C) fp32, levels, symmetric, hard_clamp -> (codes (..., C) fp32, ids (...) int64)."""

    def forward(self, z: torch.Tensor, levels: list[int], symmetric: bool, hard_clamp: bool):
        return fsq_quantize(z, levels, symmetric=symmetric, hard_clamp=hard_clamp)


class LFQSign(nn.Module):
    """x (..., C), scale -> (codes (..., C) fp32 in {-scale, scale}, ids (...) int64)."""

    def forward(self, x: torch.Tensor, scale: float):
        return lfq_quantize(x, scale)


class RFSQRound(nn.Module):
    """h (..., C), levels, scales (L, C), symmetric, hard_clamp -> (quantized (..., C) fp32, ids (..., L), counts).

    Every residual level in one kernel; ``counts`` is the (L, prod(levels)) fp32 code histogram (None
    unless ``count``).
    """

    def forward(self, h: torch.Tensor, levels: list[int], scales: torch.Tensor, symmetric: bool, hard_clamp: bool,
                count: bool = True):
        counts = None
        if count:
            counts = torch.zeros(scales.shape[0], math.prod(int(v) for v in levels), dtype=torch.float32,
                                 device=h.device)
        quantized, ids = rfsq_quantize(h, levels, scales, symmetric=symmetric, hard_clamp=hard_clamp, counts=counts)
        return quantized, ids, counts

"""Finite scalar quantization (FSQ) backed by vector-quantize-pytorch's ``FSQ``.

Each of C = len(levels) channels is bounded and rounded to one of ``levels[i]`` values; the
code id packs the per-channel indices (mixed radix), so K = prod(levels), e.g. FlexTok's
[8, 8, 8, 5, 5, 5] = 64,000 codes. There is no codebook to learn and no auxiliary loss.
Training runs the library's forward (straight-through rounding); eval runs the fused rounding
kernel on CUDA (the same arithmetic in PyTorch elsewhere).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from vector_quantize_pytorch import FSQ

from zoo.kernels.layers import FSQRound
from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, kernel_backend, zero_loss
from zoo.quantize.checks import check_common, check_int, check_levels

FLEXTOK_LEVELS = (8, 8, 8, 5, 5, 5)


@dataclass
class FSQConfig:
    """Options of :class:`FiniteScalarQuantizer`.

    levels: quantization levels per channel (each >= 3; use the symmetric variant inside residual FSQ).
    dim: D of the incoming latents, projected to len(levels) channels and back when different
    (None: len(levels)). lookup_backend: "auto" | "torch" | "triton" | "library" for eval.
    """

    levels: tuple[int, ...] = FLEXTOK_LEVELS
    dim: int | None = None
    lookup_backend: str = "auto"
    usage_window: int = 100

    def __post_init__(self):
        self.levels = check_levels("FSQConfig", self.levels, 3)
        self.dim = check_int("FSQConfig", "dim", self.dim, 1, optional=True)
        check_common(self)


class FiniteScalarQuantizer(Quantizer):
    """FSQ. x: (B, N, D) -> quantized (B, N, D), ids (B, N) int64 in [0, prod(levels))."""

    def __init__(self, config: FSQConfig):
        dim = config.dim or len(config.levels)
        super().__init__(dim, math.prod(config.levels), usage_window=config.usage_window)
        self.config = config
        self.levels = list(config.levels)
        # the library reads its constants while building: on the meta device (parameter counts, model
        # cards) it is built on the CPU (it has no parameters unless dim != len(levels))
        with torch.device("cpu") if torch.get_default_device().type == "meta" else contextlib.nullcontext():
            self.fsq = FSQ(levels=self.levels, dim=dim)
        self.round = FSQRound(kernel_backend(config.lookup_backend))

    @property
    def codebook(self) -> torch.Tensor:
        """(K, len(levels)) implicit codebook: the code of every id, before the output projection."""
        return self.fsq.implicit_codebook

    def describe(self) -> str:
        return f"dim={self.dim}, levels={self.levels}"

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        zero = {"loss": zero_loss(x)}
        if self.training or self.config.lookup_backend == "library":
            out, ids = self.fsq(x)
            return QuantizerOutput(out, ids.long(), QuantizerAux(**zero))
        z = self.fsq.project_in(x)
        codes, ids = self.round(z.float(), self.levels, False, False)
        return QuantizerOutput(self.fsq.project_out(codes.to(z.dtype)), ids, QuantizerAux(**zero))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        # the library computes codes in float32 from the ids alone: follow the module's dtype (bf16 models)
        return self.fsq.indices_to_codes(ids).to(self.codebook.dtype)

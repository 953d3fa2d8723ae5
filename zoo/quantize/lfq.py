"""Lookup-free quantization (LFQ) backed by vector-quantize-pytorch's ``LFQ``.

Each of C = log2(K) channels is quantized to its sign (+-scale); the id is the bit pattern (first
channel = most significant bit). An entropy loss (low per-sample entropy, high batch entropy)
keeps the codes in use. Training runs the library's forward; eval runs the fused sign+packing
kernel on CUDA (the same arithmetic in PyTorch elsewhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from vector_quantize_pytorch import LFQ

from zoo.errors import ConfigError
from zoo.kernels.layers import LFQSign
from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, kernel_backend, zero_loss
from zoo.quantize.checks import check_common, check_float, check_int


@dataclass
class LFQConfig:
    """Options of :class:`LookupFreeQuantizer`.

    dim: D of the incoming latents (projected to log2(codebook_size) channels and back when
    different). codebook_size: K, a power of two (2 ** dim when None).
    entropy_loss_weight, diversity_gamma: weight of the entropy loss and of its batch-entropy term.
    commitment_weight: weight of the commitment loss. codebook_scale: code magnitude.
    """

    dim: int
    codebook_size: int | None = None
    entropy_loss_weight: float = 0.1
    diversity_gamma: float = 1.0
    commitment_weight: float = 0.0
    codebook_scale: float = 1.0
    lookup_backend: str = "auto"
    usage_window: int = 100

    def __post_init__(self):
        name = type(self).__name__
        self.dim = check_int(name, "dim", self.dim, 1)
        k = check_int(name, "codebook_size", self.codebook_size, 1, optional=True)
        if k is None:
            if self.dim > 62:
                raise ConfigError(f"LFQConfig.codebook_size defaults to 2**dim; dim={self.dim} is over 62 bits: "
                                  "give a codebook_size")
            k = 2 ** self.dim
        if k < 2 or k & (k - 1):
            raise ConfigError(f"LFQ codebook_size must be a power of two >= 2, got {k}")
        if math.log2(k) > 62:
            raise ConfigError(f"LFQ supports at most 2**62 codes, got 2**{int(math.log2(k))}")
        self.codebook_size = k
        self.entropy_loss_weight = check_float(name, "entropy_loss_weight", self.entropy_loss_weight, 0.0)
        self.diversity_gamma = check_float(name, "diversity_gamma", self.diversity_gamma, 0.0)
        self.commitment_weight = check_float(name, "commitment_weight", self.commitment_weight, 0.0)
        self.codebook_scale = check_float(name, "codebook_scale", self.codebook_scale, 0.0, low_open=True)
        check_common(self)


class LookupFreeQuantizer(Quantizer):
    """LFQ. x: (B, N, D) -> quantized (B, N, D), ids (B, N) int64 in [0, K)."""

    def __init__(self, config: LFQConfig):
        super().__init__(config.dim, config.codebook_size, usage_window=config.usage_window)
        self.config = config
        self.lfq = LFQ(dim=config.dim, codebook_size=config.codebook_size,
                       entropy_loss_weight=config.entropy_loss_weight, diversity_gamma=config.diversity_gamma,
                       commitment_loss_weight=config.commitment_weight, codebook_scale=config.codebook_scale)
        self.sign = LFQSign(kernel_backend(config.lookup_backend))

    @property
    def codebook(self) -> torch.Tensor:
        """(K, log2 K) implicit codebook (+-scale per bit), before the output projection."""
        return self.lfq.codebook

    def describe(self) -> str:
        return f"dim={self.dim}, codebook_size={self.codebook_size}"

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        if self.training or self.config.lookup_backend == "library":
            ret, parts = self.lfq(x, return_loss_breakdown=True)
            loss = ret.entropy_aux_loss if self.training else zero_loss(x)
            losses = {"entropy": (parts.per_sample_entropy - self.lfq.diversity_gamma * parts.batch_entropy).detach(),
                      "per_sample_entropy": parts.per_sample_entropy.detach(),
                      "batch_entropy": parts.batch_entropy.detach(),
                      "commitment": parts.commitment.detach()}
            return QuantizerOutput(ret.quantized, ret.indices.long(), QuantizerAux(loss=loss, losses=losses))
        z = self.lfq.project_in(x)
        codes, ids = self.sign(z.float(), float(self.lfq.codebook_scale))
        return QuantizerOutput(self.lfq.project_out(codes.to(z.dtype)), ids, QuantizerAux(loss=zero_loss(x)))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        return self.lfq.indices_to_codes(ids)

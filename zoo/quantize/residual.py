"""Residual VQ and residual FSQ with L levels and quantizer dropout (vector-quantize-pytorch).

Level l quantizes what levels 0..l-1 left over; the quantized latent is the sum of the levels'
codes, the ids are (B, N, L). With quantizer dropout, training stops at a random level (levels
after it get id -1 and add nothing), so the decoder learns to work from any prefix of levels:
``ids_to_vectors`` accepts (B, N, L') for any 1 <= L' <= L, the basis of variable-bitrate codecs.

Training runs the library's forward; eval runs the levels through the zoo's fused lookup /
rounding (same ids as the library).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from vector_quantize_pytorch import ResidualFSQ, ResidualVQ

from zoo.errors import ConfigError
from zoo.kernels.layers import NearestCode, RFSQRound
from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, kernel_backend, zero_loss
from zoo.quantize.checks import check_bool, check_common, check_float, check_int, check_levels
from zoo.quantize.vq import InitFlags, eval_lookup


def _check_levels_and_dropout(config) -> None:
    """num_levels >= 1, quantizer_dropout a bool, 1 <= dropout_min_levels <= num_levels, common fields."""
    name = type(config).__name__
    config.num_levels = check_int(name, "num_levels", config.num_levels, 1)
    check_bool(name, "quantizer_dropout", config.quantizer_dropout)
    config.dropout_min_levels = check_int(name, "dropout_min_levels", config.dropout_min_levels, 1)
    if config.dropout_min_levels > config.num_levels:
        raise ConfigError(f"{name}.dropout_min_levels must be in [1, num_levels={config.num_levels}], "
                          f"got {config.dropout_min_levels}")
    check_common(config)


def _per_level_losses(all_losses: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
    flat = all_losses.detach().reshape(-1)
    out = {name: flat.sum()}
    out.update({f"{name}_l{i}": v for i, v in enumerate(flat)})
    return out


@dataclass
class RVQConfig:
    """Options of :class:`ResidualVectorQuantizer`.

    dim: D of the latents. codebook_size: K of every level. num_levels: L. codebook_dim: codes of
    a smaller dim (one projection in and out around all levels) or None. use_cosine: cosine codes
    (Euclidean by default, as in SoundStream/EnCodec). quantizer_dropout: train with a random
    number of levels in [dropout_min_levels, L]. Other options as :class:`~zoo.quantize.VQConfig`.
    """

    dim: int
    codebook_size: int = 1024
    num_levels: int = 8
    codebook_dim: int | None = None
    use_cosine: bool = False
    quantizer_dropout: bool = False
    dropout_min_levels: int = 1
    commitment_weight: float = 1.0
    ema_decay: float = 0.99
    kmeans_init: bool = False
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.0
    rotation_trick: bool = False
    lookup_backend: str = "auto"
    usage_window: int = 100

    def __post_init__(self):
        name = type(self).__name__
        self.dim = check_int(name, "dim", self.dim, 1)
        self.codebook_size = check_int(name, "codebook_size", self.codebook_size, 1)
        self.codebook_dim = check_int(name, "codebook_dim", self.codebook_dim, 1, optional=True)
        for flag in ("use_cosine", "kmeans_init", "rotation_trick"):
            check_bool(name, flag, getattr(self, flag))
        self.commitment_weight = check_float(name, "commitment_weight", self.commitment_weight, 0.0)
        self.ema_decay = check_float(name, "ema_decay", self.ema_decay, 0.0, 1.0)
        self.kmeans_iters = check_int(name, "kmeans_iters", self.kmeans_iters, 1)
        self.dead_code_threshold = check_float(name, "dead_code_threshold", self.dead_code_threshold, 0.0)
        _check_levels_and_dropout(self)


class ResidualVectorQuantizer(Quantizer):
    """Residual VQ. x: (B, N, D) -> quantized (B, N, D), ids (B, N, L) int64 in [0, K)."""

    def __init__(self, config: RVQConfig):
        super().__init__(config.dim, config.codebook_size, num_levels=config.num_levels,
                         usage_window=config.usage_window)
        self.config = config
        self.rvq = ResidualVQ(
            dim=config.dim, num_quantizers=config.num_levels, codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim, use_cosine_sim=config.use_cosine,
            quantize_dropout=config.quantizer_dropout, quantize_dropout_cutoff_index=config.dropout_min_levels - 1,
            commitment_weight=config.commitment_weight, decay=config.ema_decay, kmeans_init=config.kmeans_init,
            kmeans_iters=config.kmeans_iters, threshold_ema_dead_code=config.dead_code_threshold,
            rotation_trick=config.rotation_trick,
        )
        self.lookup = NearestCode(kernel_backend(config.lookup_backend))
        self._initted = InitFlags(self, list(self.rvq.layers))

    @property
    def codebooks(self) -> torch.Tensor:
        """(L, K, codebook_dim) codes of every level."""
        return self.rvq.codebooks

    def describe(self) -> str:
        c = self.config
        return (f"dim={c.dim}, codebook_size={c.codebook_size}, num_levels={c.num_levels}, "
                f"codebook_dim={c.codebook_dim or c.dim}")

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        if not self.training and self.config.lookup_backend != "library" and self._initted.fast_ok():
            return self._eval_quantize(x)
        quantized, ids, all_losses = self.rvq(x)
        self._initted.ran_library()
        loss = all_losses.sum() if self.training else zero_loss(x)
        return QuantizerOutput(quantized, ids, QuantizerAux(loss=loss, losses=_per_level_losses(all_losses, "commitment")))

    def _eval_quantize(self, x: torch.Tensor) -> QuantizerOutput:
        # ResidualVQ.forward in eval, operation for operation, with the fused lookup per level
        h = self.rvq.project_in(x)
        quantized_out = torch.zeros_like(h)
        residual = h
        all_ids = []
        for vq in self.rvq.layers:
            quantized, ids = eval_lookup(vq, residual, self.lookup)
            residual = residual - quantized.detach()
            quantized_out = quantized_out + quantized
            all_ids.append(ids)
        out = self.rvq.project_out(quantized_out)
        zeros = torch.zeros(self.num_levels, device=x.device)
        return QuantizerOutput(out, torch.stack(all_ids, dim=-1),
                               QuantizerAux(loss=zero_loss(x), losses=_per_level_losses(zeros, "commitment")))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N, L') for any 1 <= L' <= L (a prefix of the levels) -> (B, N, D)."""
        self.check_ids(ids)
        ids = ids.long()
        codebooks = self.rvq.codebooks
        out = None
        for level in range(ids.shape[-1]):
            codes = codebooks[level][ids[..., level]]
            out = codes if out is None else out + codes
        return self.rvq.project_out(out)


@dataclass
class RFSQConfig:
    """Options of :class:`ResidualFiniteScalarQuantizer`.

    dim: D of the latents (projected to len(levels) channels and back when different).
    levels: FSQ levels of every residual level (each level's grid is scaled down by levels**-l).
    num_levels: L. quantizer_dropout / dropout_min_levels: as :class:`RVQConfig`.
    """

    dim: int
    levels: tuple[int, ...] = (8, 5, 5, 5)
    num_levels: int = 4
    quantizer_dropout: bool = False
    dropout_min_levels: int = 1
    lookup_backend: str = "auto"
    usage_window: int = 100

    def __post_init__(self):
        self.dim = check_int(type(self).__name__, "dim", self.dim, 1)
        self.levels = check_levels(type(self).__name__, self.levels, 2)
        _check_levels_and_dropout(self)


class ResidualFiniteScalarQuantizer(Quantizer):
    """Residual FSQ. x: (B, N, D) -> quantized (B, N, D), ids (B, N, L) int64 in [0, prod(levels))."""

    def __init__(self, config: RFSQConfig):
        super().__init__(config.dim, math.prod(config.levels), num_levels=config.num_levels,
                         usage_window=config.usage_window)
        self.config = config
        self.levels = list(config.levels)
        self.rfsq = ResidualFSQ(dim=config.dim, levels=self.levels, num_quantizers=config.num_levels,
                                quantize_dropout=config.quantizer_dropout,
                                quantize_dropout_cutoff_index=config.dropout_min_levels - 1)
        self.round = RFSQRound(kernel_backend(config.lookup_backend))

    @property
    def codebooks(self) -> torch.Tensor:
        """(L, K, len(levels)) implicit codes of every level, before each level's scale."""
        return self.rfsq.codebooks

    def describe(self) -> str:
        c = self.config
        return f"dim={c.dim}, levels={list(c.levels)}, num_levels={c.num_levels}"

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        if self.training or self.config.lookup_backend == "library":
            quantized, ids = self.rfsq(x)
            return QuantizerOutput(quantized, ids.long(), QuantizerAux(loss=zero_loss(x)))
        return self._eval_quantize(x)

    def _eval_quantize(self, x: torch.Tensor) -> QuantizerOutput:
        # ResidualFSQ.forward in eval, operation for operation: every level in one Triton kernel on a
        # GPU (which also counts the ids for the usage statistics), level after level elsewhere
        r = self.rfsq
        h = r.project_in(x)
        if r.soft_clamp_input_value is not None:
            clamp = r.soft_clamp_input_value
            h = (h / clamp).tanh() * clamp
        layer = r.layers[0]
        quantized, ids, counts = self.round(h, self.levels, r.scales, layer.preserve_symmetry, layer.bound_hard_clamp)
        return QuantizerOutput(r.project_out(quantized.to(h.dtype)), ids, QuantizerAux(loss=zero_loss(x), counts=counts))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N, L') for any 1 <= L' <= L (a prefix of the levels) -> (B, N, D)."""
        self.check_ids(ids)
        r = self.rfsq
        out = 0.0
        for level in range(ids.shape[-1]):
            out = out + r.layers[level].indices_to_codes(ids[..., level]) * r.scales[level]
        return r.project_out(out)

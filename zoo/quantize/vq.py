"""Vector quantization (VQ) backed by vector-quantize-pytorch's ``VectorQuantize``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from vector_quantize_pytorch import VectorQuantize

from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, zero_loss


@dataclass
class VQConfig:
    """Options of :class:`VectorQuantizer`.

    dim: D of the incoming latents. codebook_size: K. codebook_dim: low-dimensional codebook
    (factorized codes: project D -> codebook_dim, look up, project back) or None for D.
    use_cosine: l2-normalize latents and codes (cosine similarity lookup), as TiTok and ViT-VQGAN do.
    ema_decay: decay of the EMA codebook update. kmeans_init: initialise codes by k-means on the
    first batch. dead_code_threshold: restart codes whose EMA cluster size falls below this (0: off).
    rotation_trick: pass gradients through the rotation trick instead of straight-through.
    """

    dim: int
    codebook_size: int
    codebook_dim: int | None = None
    use_cosine: bool = True
    commitment_weight: float = 0.25
    ema_decay: float = 0.8
    kmeans_init: bool = False
    dead_code_threshold: float = 0.0
    rotation_trick: bool = False


class VectorQuantizer(Quantizer):
    """Nearest-code VQ. x: (B, N, D) -> quantized (B, N, D), ids (B, N) int64 in [0, K)."""

    def __init__(self, config: VQConfig):
        super().__init__(config.dim, config.codebook_size)
        self.config = config
        self.vq = VectorQuantize(
            dim=config.dim,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            use_cosine_sim=config.use_cosine,
            commitment_weight=config.commitment_weight,
            decay=config.ema_decay,
            kmeans_init=config.kmeans_init,
            threshold_ema_dead_code=config.dead_code_threshold,
            rotation_trick=config.rotation_trick,
            straight_through=not config.rotation_trick,
        )

    @property
    def codebook(self) -> torch.Tensor:
        """(K, codebook_dim) code vectors (l2-normalized when ``use_cosine``)."""
        return self.vq.codebook

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        quantized, ids, loss, parts = self.vq(x, return_loss_breakdown=True)
        if not self.training:
            loss = zero_loss(x)
        losses = {"commitment": parts.commitment.detach()}
        return QuantizerOutput(quantized, ids, QuantizerAux(loss=loss, losses=losses))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        return self.vq.get_output_from_indices(ids)

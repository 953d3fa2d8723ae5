"""The contract every tokenizer in the zoo follows.

An image tokenizer is a plain ``nn.Module`` with

- ``encode(images) -> ids``: images (B, 3, H, W) float in [0, 1] -> ids (B, N) int64 in [0, vocab_size);
- ``decode(ids) -> images``: ids (B, N) -> images (B, 3, H, W) float in [0, 1];
- ``forward(images) -> TokenizerOutput``: reconstruction (unclamped) plus the quantizer's losses;
- ``num_tokens``, ``vocab_size``, ``input_size``, ``config`` (a dataclass), ``family``, ``name``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from zoo.quantize import QuantizerAux
from zoo.validation import check_ids, check_images


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode, restoring its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@dataclass
class TokenizerOutput:
    """reconstruction: (B, 3, H, W) float (not clamped, for losses); ids: (B, N) int64;
    aux: the quantizer's loss (already weighted), its named parts and usage statistics."""

    reconstruction: torch.Tensor
    ids: torch.Tensor
    aux: QuantizerAux
    extras: dict[str, Any] = field(default_factory=dict)


class Tokenizer(nn.Module):
    """Base class of every tokenizer: identity (family, name, config) and Hub helpers."""

    family: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any, name: str | None = None):
        super().__init__()
        self.config = config
        self.name = name or self.family

    def num_parameters(self, *, include_buffers: bool = False) -> int:
        """Number of parameters (plus float buffers such as EMA codebooks when asked)."""
        n = sum(p.numel() for p in self.parameters())
        if include_buffers:
            n += sum(b.numel() for name, b in self.named_buffers() if b.is_floating_point()
                     and name.endswith("_codebook.embed"))
        return n

    # Thin wrappers over zoo.hub so that ``model.save_pretrained(dir)`` reads as users expect.
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (atomically)."""
        from zoo import hub
        return hub.save_pretrained(self, directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload weights, config and a generated model card to the Hub repo ``repo_id``."""
        from zoo import hub
        return hub.push_to_hub(self, repo_id, **kwargs)


class ImageTokenizer(Tokenizer):
    """Shared checks and helpers of image tokenizers; subclasses implement the four hooks
    ``encode_latents``, ``quantizer``, ``decode_latents`` and ``token_lengths``."""

    modality: ClassVar[str] = "image"
    variable_length: ClassVar[bool] = False
    quantizer: nn.Module

    # -- the contract ---------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def input_size(self) -> int:
        return self.config.image_size

    @property
    def bits_per_image(self) -> float:
        return self.num_tokens * math.log2(self.vocab_size)

    def token_lengths(self) -> int | range | tuple[int, ...]:
        """Token counts that :meth:`decode` accepts."""
        return self.num_tokens

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) float in [0, 1] -> ids (B, num_tokens) int64 in [0, vocab_size)."""
        check_images(images, self.input_size)
        latents = self.encode_latents(images)
        with _frozen(self.quantizer):  # encoding never updates codebooks (EMA, dead-code restarts)
            return self.quantizer(latents).ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N) int in [0, vocab_size) -> images (B, 3, H, W) float in [0, 1]."""
        check_ids(ids, self.vocab_size, self.token_lengths())
        ids = ids.to(device=self._device(), dtype=torch.long)
        return self.decode_latents(self.quantizer.ids_to_vectors(ids)).clamp(0.0, 1.0)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """images: (B, 3, H, W) in [0, 1] -> reconstruction (unclamped), ids and quantizer losses."""
        check_images(images, self.input_size)
        quantized, ids, aux = self.quantizer(self.encode_latents(images))
        return TokenizerOutput(self.decode_latents(quantized), ids, aux)

    # -- hooks for subclasses -------------------------------------------------------------------
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> pre-quantization latents (B, N, D)."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """quantized latents (B, N, D) -> images (B, 3, H, W), unclamped."""
        raise NotImplementedError

    def _device(self) -> torch.device:
        return next(self.parameters()).device

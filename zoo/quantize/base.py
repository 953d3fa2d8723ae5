"""The quantizer interface every tokenizer in the zoo ends in.

A quantizer maps latents ``x: (B, N, D)`` to ``(quantized, ids, aux)``:

- ``quantized``: (B, N, D) float, the straight-through quantized latents;
- ``ids``: (B, N) int64 (or (B, N, L) for residual quantizers with L levels);
- ``aux``: :class:`QuantizerAux` with the weighted loss to add to the training objective, its
  named parts (commitment, codebook, entropy, ...) and usage statistics (usage, perplexity).

and maps ids back to vectors with :meth:`Quantizer.ids_to_vectors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from zoo.errors import InputError
from zoo.validation import check_ids


@dataclass
class QuantizerAux:
    """Side outputs of a quantizer call.

    loss: scalar, the weighted sum of the quantizer's losses (0 in eval).
    losses: named unweighted parts of ``loss`` (e.g. ``commitment``, ``entropy``).
    stats: named detached scalars for logging (``usage``, ``perplexity``, per-level figures).
    """

    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class QuantizerOutput(NamedTuple):
    """``quantized`` (B, N, D), ``ids`` (B, N) or (B, N, L) int64, ``aux``."""

    quantized: torch.Tensor
    ids: torch.Tensor
    aux: QuantizerAux


class UsageTracker(nn.Module):
    """Counts code use over a sliding window of recent calls to spot codebook collapse.

    ``usage`` is the fraction of codes hit at least once in the last ``window`` calls (per level),
    ``perplexity`` is exp(entropy) of the code histogram of the current batch (per level).
    The counts are not part of the state dict: they describe a run, not the model.
    """

    def __init__(self, codebook_size: int, num_levels: int = 1, window: int = 100):
        super().__init__()
        self.codebook_size = codebook_size
        self.num_levels = num_levels
        self.window = window
        # ring buffer of per-call histograms: (window, L, K) would be large; keep "last seen" steps instead
        self.register_buffer("last_seen", torch.full((num_levels, codebook_size), -1, dtype=torch.long),
                             persistent=False)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long), persistent=False)

    @torch.no_grad()
    def update(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """ids: (B, N) or (B, N, L) int64. Returns detached ``usage``/``perplexity`` (+ ``_l{i}`` per level)."""
        flat = ids.reshape(-1, self.num_levels) if ids.ndim == 3 else ids.reshape(-1, 1)
        stats: dict[str, torch.Tensor] = {}
        usages, perps = [], []
        for level in range(flat.shape[1]):
            counts = torch.bincount(flat[:, level], minlength=self.codebook_size).float()
            if self.training:
                self.last_seen[level][counts > 0] = self.calls
            probs = counts / counts.sum().clamp_min(1)
            perp = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
            if self.training:
                usage = ((self.last_seen[level] >= 0) & (self.last_seen[level] > self.calls - self.window)).float().mean()
            else:
                usage = (counts > 0).float().mean()
            usages.append(usage)
            perps.append(perp)
            if flat.shape[1] > 1:
                stats[f"usage_l{level}"] = usage
                stats[f"perplexity_l{level}"] = perp
        if self.training:
            self.calls += 1
        stats["usage"] = torch.stack(usages).mean()
        stats["perplexity"] = torch.stack(perps).mean()
        return stats


class Quantizer(nn.Module):
    """Base class: subclasses implement :meth:`quantize` and :meth:`ids_to_vectors`.

    Attributes: ``dim`` (D of the latents), ``codebook_size`` (K, ids are in [0, K)),
    ``num_levels`` (1, or L for residual quantizers).
    """

    dim: int
    codebook_size: int
    num_levels: int = 1

    def __init__(self, dim: int, codebook_size: int, num_levels: int = 1, usage_window: int = 100):
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_levels = num_levels
        self.usage = UsageTracker(codebook_size, num_levels, usage_window)

    @property
    def bits_per_token(self) -> float:
        """Bits one token carries: log2(K) per level."""
        return self.num_levels * math.log2(self.codebook_size)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """x: (B, N, D) float -> (quantized (B, N, D), ids, aux)."""
        self.check_latents(x)
        quantized, ids, aux = self.quantize(x)
        aux.stats.update(self.usage.update(ids))
        return QuantizerOutput(quantized, ids, aux)

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """ids: (B, N) (or (B, N, L)) int64 in [0, K) -> (B, N, D) vectors, as ``quantized`` in eval."""
        raise NotImplementedError

    # -- checks shared by every quantizer ---------------------------------------------------------
    def check_latents(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{type(self).__name__} expects latents of shape (B, N, {self.dim}), got {shape}")
        if not x.is_floating_point():
            raise InputError(f"{type(self).__name__} expects float latents, got dtype {x.dtype}")
        if not torch.isfinite(x).all():
            raise InputError(f"{type(self).__name__} got latents with NaN or Inf values")

    def check_ids(self, ids: torch.Tensor) -> None:
        check_ids(ids, self.codebook_size, None, levels=self.num_levels if self.num_levels > 1 else None)


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(())

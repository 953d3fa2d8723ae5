"""Codebook statistics over an evaluated set: usage, perplexity, bits per image."""

from __future__ import annotations

import math

import torch

from zoo.errors import InputError


def bits_per_image(num_tokens: int, vocab_size: int, num_levels: int = 1) -> float:
    """Bits to store one image's ids without entropy coding: num_tokens * num_levels * log2(vocab_size)."""
    if num_tokens < 0 or vocab_size < 1 or num_levels < 1:
        raise InputError(f"bits_per_image needs num_tokens >= 0, vocab_size >= 1 and num_levels >= 1, got "
                         f"{num_tokens}, {vocab_size}, {num_levels}")
    return float(num_tokens * num_levels * math.log2(vocab_size))


class CodeUsage:
    """Histogram of token ids over a whole evaluated set.

    ``update(ids)`` takes (B, N) ids, or (B, N, L) for L residual levels (one histogram per level).
    ``usage()`` is the fraction of the vocabulary used at least once; ``perplexity()`` is
    exp(entropy) of the id distribution (natural log), in [1, vocab_size]. Both average over levels.
    """

    def __init__(self, vocab_size: int, num_levels: int = 1):
        if vocab_size < 1:
            raise InputError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = vocab_size
        self.counts = torch.zeros(num_levels, vocab_size, dtype=torch.long)

    def update(self, ids: torch.Tensor) -> None:
        if ids.is_floating_point() or ids.ndim not in (2, 3):
            raise InputError(f"ids must be an integer tensor (B, N) or (B, N, L), got {ids.dtype} {tuple(ids.shape)}")
        flat = ids.detach().cpu().long().reshape(-1, ids.shape[2] if ids.ndim == 3 else 1)
        if flat.shape[1] > self.counts.shape[0]:  # more levels than seen so far (e.g. a higher bandwidth)
            grow = torch.zeros(flat.shape[1] - self.counts.shape[0], self.vocab_size, dtype=torch.long)
            self.counts = torch.cat([self.counts, grow])
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.vocab_size):
            raise InputError(f"token ids must be in [0, {self.vocab_size}), got [{int(flat.min())}, {int(flat.max())}]")
        for level in range(flat.shape[1]):
            self.counts[level] += torch.bincount(flat[:, level], minlength=self.vocab_size)

    def _levels(self) -> torch.Tensor:
        seen = self.counts.sum(1) > 0
        return self.counts[seen] if seen.any() else self.counts[:1]

    def usage(self) -> float:
        return float((self._levels() > 0).double().mean(1).mean())

    def perplexity(self) -> float:
        counts = self._levels().double()
        probs = counts / counts.sum(1, keepdim=True).clamp_min(1)
        entropy = -(probs * probs.clamp_min(1e-300).log()).sum(1)
        return float(entropy.exp().mean())

    def total(self) -> int:
        return int(self.counts.sum())

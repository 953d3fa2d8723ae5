"""Codebook statistics over an evaluated set: usage, perplexity, bits per image."""

from __future__ import annotations

import math

import torch

from zoo.errors import InputError
from zoo.quantize.base import code_counts
from zoo.validation import value_check_mode


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
    The counts stay on the ids' device and ``update`` never waits for it: ids outside the vocabulary
    raise :class:`InputError` at once for CPU ids, and when the statistics are read for others.
    """

    def __init__(self, vocab_size: int, num_levels: int = 1):
        if vocab_size < 1:
            raise InputError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = vocab_size
        # (L, K + 1): the last column counts ids outside [0, vocab_size)
        self.counts = torch.zeros(num_levels, vocab_size + 1, dtype=torch.float64)

    def update(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex() or ids.ndim not in (2, 3):
            what = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise InputError(f"ids must be an integer tensor (B, N) or (B, N, L), got {what}")
        ids = ids.detach().long()
        if value_check_mode(ids) == "sync" and ids.numel():
            lo, hi = (int(v) for v in torch.aminmax(ids))
            if lo < 0 or hi >= self.vocab_size:
                raise InputError(f"token ids must be in [0, {self.vocab_size}), got [{lo}, {hi}]")
        new = code_counts(ids, self.vocab_size, keep_invalid=True).to(torch.float64)
        if self.counts.device != new.device:
            self.counts = self.counts.to(new.device)
        if new.shape[0] > self.counts.shape[0]:  # more levels than seen so far (e.g. a higher bandwidth)
            grow = self.counts.new_zeros(new.shape[0] - self.counts.shape[0], self.vocab_size + 1)
            self.counts = torch.cat([self.counts, grow])
        self.counts[: new.shape[0]] += new

    def _valid(self) -> torch.Tensor:
        bad = int(self.counts[:, -1].sum())
        if bad:
            raise InputError(f"{bad} token id(s) given to CodeUsage.update were outside [0, {self.vocab_size})")
        return self.counts[:, :-1]

    def _levels(self) -> torch.Tensor:
        counts = self._valid()
        seen = counts.sum(1) > 0
        return counts[seen] if seen.any() else counts[:1]

    def usage(self) -> float:
        return float((self._levels() > 0).double().mean(1).mean())

    def perplexity(self) -> float:
        counts = self._levels().double()
        probs = counts / counts.sum(1, keepdim=True).clamp_min(1)
        entropy = -(probs * probs.clamp_min(1e-300).log()).sum(1)
        return float(entropy.exp().mean())

    def total(self) -> int:
        return int(self._valid().sum())

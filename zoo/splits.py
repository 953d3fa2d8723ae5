"""The seeded train/validation split every data module uses (image, audio and token-shard folders)."""

from __future__ import annotations

import torch


def train_val_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded shuffle of ``range(n)`` as (train, val) index lists: ``round(n * val_fraction)``
    items go to validation, at least one when ``n >= 2`` (none for ``n <= 1``)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return perm[n_val:], perm[:n_val]

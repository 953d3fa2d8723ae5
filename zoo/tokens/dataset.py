"""Reading token shards for training: :class:`TokenDataset` and :class:`TokenDataModule`.

Items come back as ``(ids, length, label)``: ids (N,) int64 for image tokenizers, (L, T) levels x
frames for residual audio ids, or (S,) once flattened with a residual ``pattern``
(see :mod:`zoo.tokens.vocab`). :func:`collate_tokens` pads ragged items with the declared ``pad_id``.
Shards are opened lazily (memory-mapped), so a corrupt shard only fails the items it holds, with
an error naming the file.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from zoo.errors import ConfigError
from zoo.splits import train_val_indices
from zoo.tokens.shards import ShardError, ShardReader, read_manifest
from zoo.tokens.vocab import flat_length, flat_vocab_size, flatten_levels

# manifest fields a consumer may pin with ``expect={...}``
EXPECT_KEYS = ("id", "name", "family", "revision", "vocab_size", "num_levels", "modality", "token_shape")


def check_compatible(manifest: dict[str, Any], expect: dict[str, Any] | None, source: str) -> None:
    """Raise :class:`ConfigError` when the shards' tokenizer differs from what a consumer expects."""
    if not expect:
        return
    tok = manifest["tokenizer"]
    bad = [f"{k}: shards have {tok.get(k)!r}, expected {v!r}" for k, v in expect.items()
           if k in EXPECT_KEYS and v is not None and tok.get(k) != v]
    unknown = sorted(set(expect) - set(EXPECT_KEYS))
    if unknown:
        raise ConfigError(f"expect: unknown key(s) {unknown}; known: {list(EXPECT_KEYS)}")
    if bad:
        raise ConfigError(f"token shards {source} come from another tokenizer than expected ("
                          + "; ".join(bad) + "): re-export them with zoo tokenize-dataset --model "
                          f"{expect.get('id', '<the generator tokenizer>')}")


class TokenDataset(Dataset):
    """Items of a shard folder written by ``zoo tokenize-dataset``: ``(ids, length, label)``.

    ``pattern`` flattens residual (L, T) ids into one sequence (``interleave``, ``level_major``,
    ``delay``); ``pad_id`` (default: :attr:`vocab_size`, the first id outside the vocabulary) fills
    ragged batches; ``expect`` pins manifest fields (tokenizer ``id``, ``vocab_size``, ...).
    """

    def __init__(self, root: str | Path, *, pattern: str | None = None, pad_id: int | None = None,
                 expect: dict[str, Any] | None = None, check_ids: bool = True):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        check_compatible(self.manifest, expect, str(self.root))
        tok = self.manifest["tokenizer"]
        self.tokenizer = tok
        self.token_vocab_size = int(tok["vocab_size"])
        self.num_levels = int(tok.get("num_levels") or 1)
        self.residual = tok.get("modality") == "audio" or self.num_levels > 1
        if pattern in (None, "none"):
            pattern = None
        self.pattern = pattern
        self.vocab_size = (flat_vocab_size(pattern, self.token_vocab_size, self.num_levels)
                           if pattern and self.residual else self.token_vocab_size)
        self.pad_id = self.vocab_size if pad_id is None else int(pad_id)
        self.check_ids = check_ids
        self.shards = [s["name"] for s in self.manifest["shards"]]
        counts = [int(s["num_items"]) for s in self.manifest["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._readers: dict[int, ShardReader] = {}
        items = self.manifest.get("items") or {}
        self.labels = list(items.get("label") or [-1] * len(self))
        self.item_lengths = list(items.get("length") or [])
        self.classes = list(self.manifest.get("classes") or [])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def max_length(self) -> int:
        """Longest item in ids of the (flattened) sequence."""
        if not self.item_lengths:
            return 0
        longest = max(self.item_lengths)
        if self.pattern and self.residual:
            return flat_length(self.pattern, self.num_levels, longest)
        return longest

    @property
    def variable_length(self) -> bool:
        return len(set(self.item_lengths)) > 1 or bool(self.tokenizer.get("variable_length"))

    def _reader(self, s: int) -> ShardReader:
        if s not in self._readers:
            self._readers[s] = ShardReader(self.root / self.shards[s])
        return self._readers[s]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        s = bisect.bisect_right(self._starts, i) - 1
        local = i - int(self._starts[s])
        reader = self._reader(s)
        raw = reader[local]
        if self.check_ids and raw.size:
            lo, hi = int(raw.min()), int(raw.max())
            if lo < 0 or hi >= self.token_vocab_size:
                raise ShardError(f"token shard {reader.path}: item {local} holds ids in [{lo}, {hi}], outside the "
                                 f"tokenizer's vocabulary [0, {self.token_vocab_size})")
        ids = torch.from_numpy(raw.astype(np.int64))
        label = int(reader.labels[local])
        if self.residual:
            ids = ids.reshape(-1, self.num_levels).T.contiguous()  # stored frame-major (T, L) -> (L, T)
            if self.pattern:
                ids = flatten_levels(ids[None], self.pattern, self.token_vocab_size)[0]
        return ids, int(ids.shape[-1]), label

    def collate(self, batch: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return collate_tokens(batch, self.pad_id)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}}


def collate_tokens(batch: list[tuple[torch.Tensor, int, int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
    """[(ids (..., N_i), N_i, label)] -> ids (B, ..., max N) padded with ``pad_id``, lengths (B,), labels (B,)."""
    longest = max(int(x[0].shape[-1]) for x in batch)
    ids = torch.full((len(batch), *batch[0][0].shape[:-1], longest), pad_id, dtype=torch.long)
    for row, (x, n, _) in enumerate(batch):
        ids[row, ..., :n] = x
    lengths = torch.tensor([int(x[1]) for x in batch], dtype=torch.long)
    labels = torch.tensor([int(x[2]) for x in batch], dtype=torch.long)
    return ids, lengths, labels


class TokenDataModule(L.LightningDataModule):
    """Train/val split of a token shard folder (``val_fraction`` of the items, at least 1)."""

    def __init__(self, root: str, batch_size: int = 64, num_workers: int = 0, val_fraction: float = 0.05,
                 pattern: str | None = None, pad_id: int | None = None, expect: dict[str, Any] | None = None,
                 seed: int = 0):
        super().__init__()
        self.root, self.batch_size, self.num_workers = root, batch_size, num_workers
        self.val_fraction, self.seed = val_fraction, seed
        self.dataset = TokenDataset(root, pattern=pattern, pad_id=pad_id, expect=expect)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        return self.dataset.manifest

    def setup(self, stage: str | None = None) -> None:
        n = len(self.dataset)
        if n == 0:
            raise ShardError(f"token shards {self.root} hold no items")
        train, val = train_val_indices(n, self.val_fraction, self.seed)
        self.val_set = Subset(self.dataset, val or train)
        self.train_set = Subset(self.dataset, train or val)

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=train, collate_fn=self.dataset.collate,
                          drop_last=train and len(ds) >= self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

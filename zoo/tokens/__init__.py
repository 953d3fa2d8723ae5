"""Tokens for generators: shards on disk, datasets that read them, and vocabulary helpers.

- :mod:`zoo.tokens.vocab`: LLM offsets and begin/end tokens, residual-level flattening patterns;
- :mod:`zoo.tokens.shards`: the safetensors shard format and ``manifest.json``;
- :mod:`zoo.tokens.dataset`: :class:`TokenDataset` / :class:`TokenDataModule`;
- :mod:`zoo.tokens.export`: ``zoo tokenize-dataset`` (Lightning predict loop, resumable).
"""

from zoo.tokens.shards import ShardError, read_manifest
from zoo.tokens.vocab import (PATTERNS, flat_vocab_size, flatten_levels, from_llm_ids, to_llm_ids,
                              unflatten_levels)

__all__ = ["PATTERNS", "ShardError", "flat_vocab_size", "flatten_levels", "from_llm_ids", "read_manifest",
           "to_llm_ids", "unflatten_levels"]

"""Token shards on disk: one safetensors file per shard plus ``manifest.json``.

Why safetensors: one file holds the shard's arrays *and* its item list (header metadata), so a
shard is written atomically in one rename and is self-describing; it is read lazily and
memory-mapped (``safe_open(...).get_slice``) by the ``safetensors`` package that every Hugging Face
loader already depends on (numpy, torch, jax, no pickle), and a truncated file fails its header
check instead of yielding garbage.

A shard ``shard-00012.safetensors`` holds n items:

- ``tokens``  (sum of lengths,) for images, (sum of frames, L) for residual audio ids (frame-major),
  int16 when the vocabulary fits, else int32;
- ``lengths`` (n,) int32 tokens (frames) per item; ``labels`` (n,) int64 (-1 without classes);
  ``index`` (n,) int64 positions in the manifest's item list;
- metadata: ``format``, ``run`` (a hash of what produced it: model, settings, the shard's files),
  ``items`` (JSON ``[[file, sha256], ...]``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InputError
from zoo.io import atomic_write, atomic_write_text

FORMAT = "zoo-token-shard/1"
MANIFEST = "manifest.json"
SHARD_GLOB = "shard-*.safetensors"


class ShardError(InputError):
    """A token shard (or its manifest) is missing, corrupt, truncated, or holds bad ids."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.int16) if vocab_size <= np.iinfo(np.int16).max else np.dtype(np.int32)


def run_hash(settings: dict[str, Any], files: list[str]) -> str:
    """What a shard's content depends on: the export settings and its source files (in order)."""
    blob = json.dumps({"settings": settings, "files": files}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class ShardItems:
    """The decoded items of one shard (before writing / after reading)."""

    tokens: list[np.ndarray]        # per item: (N,) or (T, L)
    labels: list[int]
    index: list[int]
    files: list[str]
    sha256: list[str]
    skipped: list[tuple[str, str]] | None = None   # (file, reason) of unreadable sources


def write_shard(path: str | Path, items: ShardItems, *, vocab_size: int, run: str,
                extra: dict[str, str] | None = None) -> Path:
    """Write one shard atomically (temporary file + rename): a crash leaves no half-written shard."""
    from safetensors.numpy import save_file

    dtype = token_dtype(vocab_size)
    lengths = np.array([len(t) for t in items.tokens], dtype=np.int32)
    if items.tokens:
        flat = np.concatenate([np.asarray(t) for t in items.tokens]).astype(dtype)
    else:
        flat = np.zeros((0,), dtype)
    arrays = {"tokens": np.ascontiguousarray(flat), "lengths": lengths,
              "labels": np.asarray(items.labels, dtype=np.int64).reshape(-1),
              "index": np.asarray(items.index, dtype=np.int64).reshape(-1)}
    meta = {"format": FORMAT, "run": run, "items": json.dumps([list(x) for x in zip(items.files, items.sha256)]),
            "skipped": json.dumps([list(x) for x in items.skipped or []]), **(extra or {})}
    return atomic_write(path, lambda p: save_file(arrays, str(p), metadata=meta))


def read_header(path: str | Path) -> dict[str, Any]:
    """A shard's metadata and per-item arrays (lengths, labels, index), without reading its tokens.

    Raises :class:`ShardError` naming the file when it cannot be read (corrupt or truncated)."""
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT or not {"tokens", "lengths", "labels", "index"} <= keys:
                raise ShardError(f"token shard {path} is not a {FORMAT} file (format={meta.get('format')!r}, "
                                 f"tensors {sorted(keys)})")
            out = {"run": meta.get("run"), "items": json.loads(meta.get("items", "[]")),
                   "skipped": json.loads(meta.get("skipped", "[]")), "metadata": meta,
                   "lengths": f.get_tensor("lengths"), "labels": f.get_tensor("labels"),
                   "index": f.get_tensor("index"), "shape": f.get_slice("tokens").get_shape()}
    except ShardError:
        raise
    except FileNotFoundError:
        raise ShardError(f"token shard {path} does not exist") from None
    except Exception as e:  # SafetensorError, OSError, JSON errors: all mean an unreadable shard
        raise ShardError(f"token shard {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                         "re-run zoo tokenize-dataset to rewrite it (finished shards are kept)") from None
    rows = int(out["shape"][0]) if out["shape"] else 0
    if int(out["lengths"].sum()) != rows or len(out["items"]) != len(out["lengths"]):
        raise ShardError(f"token shard {path}: {len(out['lengths'])} items whose lengths sum to "
                         f"{int(out['lengths'].sum())}, but it holds {rows} token rows and {len(out['items'])} "
                         "item names (corrupt)")
    return out


class ShardReader:
    """Lazy, memory-mapped access to one shard's items: ``reader[i]`` -> (N,) or (T, L) numpy ids."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header = read_header(self.path)
        self.lengths = header["lengths"].astype(np.int64)
        self.labels = header["labels"]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self._file = None
        self._handle = None

    def __len__(self) -> int:
        return len(self.lengths)

    def _open(self):
        if self._handle is None:
            from safetensors import safe_open

            try:
                self._file = safe_open(str(self.path), framework="np")
                self._handle = self._file.get_slice("tokens")
            except Exception as e:
                raise ShardError(f"token shard {self.path} cannot be opened ({type(e).__name__}: {e})") from None
        return self._handle

    def __getitem__(self, i: int) -> np.ndarray:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        try:
            return np.asarray(self._open()[a:b])
        except ShardError:
            raise
        except Exception as e:
            raise ShardError(f"token shard {self.path}: item {i} cannot be read ({type(e).__name__}: {e})") from None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the mmap themselves
        return {**self.__dict__, "_file": None, "_handle": None}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_text(Path(out_dir) / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def read_manifest(shards_dir: str | Path) -> dict[str, Any]:
    """``manifest.json`` of a shard folder; missing or invalid is a :class:`ShardError`."""
    path = Path(shards_dir) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{shards_dir} has no {MANIFEST}: not a folder written by zoo tokenize-dataset "
                         "(or the export has not finished; re-run it to resume)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path} is not valid JSON: {e}") from None
    need = {"format", "tokenizer", "shards", "num_items"}
    if not isinstance(manifest, dict) or not need <= set(manifest):
        raise ShardError(f"{path} is not a token manifest (needs keys {sorted(need)})")
    return manifest

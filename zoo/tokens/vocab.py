"""Vocabulary helpers: put tokenizer ids into an LLM vocabulary and flatten residual levels.

Every tokenizer's ids live in ``[0, vocab_size)``. An LLM that reads and writes them needs

- an **offset** into its own vocabulary and **begin/end** special tokens around each image (or
  clip): :func:`to_llm_ids` / :func:`from_llm_ids` (by default image id ``i`` becomes
  ``offset + i``, begin is ``offset + vocab_size`` and end ``offset + vocab_size + 1``);
- for residual (multi-level) tokenizers, a **pattern** that turns the (L, T) grid of levels x
  frames into one sequence, and its exact inverse (:func:`flatten_levels` / :func:`unflatten_levels`):

  ``parallel``    (B, L, T) as is (one head per level, e.g. SoundStream-style generators);
  ``interleave``  time-major ``t0l0 t0l1 ... t1l0 ...`` (MusicGen's "flattening" pattern), S = T * L;
  ``level_major`` all of level 0, then level 1, ... (VALL-E: level 0 autoregressively first), S = L * T;
  ``delay``       MusicGen's delay pattern: level l shifted right by l steps, the holes filled with
                  a pad id, then read time-major: S = (T + L - 1) * L.

  With ``level_offsets=True`` (default) level ``l``'s id ``i`` becomes ``l * vocab_size + i`` so a
  single flat vocabulary of ``flat_vocab_size(...)`` ids covers every level; the delay pad is
  ``num_levels * vocab_size`` (see :func:`delay_pad_id`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from zoo.errors import InputError

PATTERNS = ("parallel", "interleave", "level_major", "delay")
Ragged = Sequence[torch.Tensor]


# -- LLM vocabulary ------------------------------------------------------------------------------
def special_ids(offset: int, vocab_size: int, begin_id: int | None = None,
                end_id: int | None = None) -> tuple[int, int]:
    """(begin, end) ids: by default the two ids right after the tokenizer's block of the LLM vocabulary."""
    if offset < 0 or vocab_size < 1:
        raise InputError(f"offset must be >= 0 and vocab_size >= 1, got offset={offset}, vocab_size={vocab_size}")
    begin = offset + vocab_size if begin_id is None else int(begin_id)
    end = offset + vocab_size + 1 if end_id is None else int(end_id)
    for name, v in (("begin_id", begin), ("end_id", end)):
        if offset <= v < offset + vocab_size:
            raise InputError(f"{name}={v} falls inside the token block [{offset}, {offset + vocab_size})")
    if begin == end:
        raise InputError(f"begin_id and end_id must differ, both are {begin}")
    return begin, end


def llm_vocab_size(offset: int, vocab_size: int) -> int:
    """The LLM vocabulary size needed for the default layout: ``offset + vocab_size + 2``."""
    return offset + vocab_size + 2


def _check_range(ids: torch.Tensor, lo: int, hi: int, what: str) -> None:
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise InputError(f"{what} must be an integer tensor, got dtype {ids.dtype}")
    if ids.numel() and ids.device.type == "cpu":
        a, b = (int(v) for v in torch.aminmax(ids))
        if a < lo or b >= hi:
            raise InputError(f"{what} must be in [{lo}, {hi}), got values in [{a}, {b}]")


def to_llm_ids(ids: torch.Tensor | Ragged, offset: int, vocab_size: int, *, begin_id: int | None = None,
               end_id: int | None = None, special: bool = True) -> torch.Tensor | list[torch.Tensor]:
    """Tokenizer ids -> LLM ids ``[begin, offset + ids..., end]``.

    ids: (B, N) or (N,) int in [0, vocab_size), or a list of 1D tensors (ragged, variable length).
    Returns (B, N + 2) / (N + 2,) int64 (a list for ragged input); ``special=False`` only shifts.
    """
    if not isinstance(ids, torch.Tensor):
        return [to_llm_ids(x, offset, vocab_size, begin_id=begin_id, end_id=end_id, special=special) for x in ids]
    begin, end = special_ids(offset, vocab_size, begin_id, end_id)
    if ids.ndim not in (1, 2):
        raise InputError(f"ids must be (N,) or (B, N); flatten residual levels first (flatten_levels), "
                         f"got shape {tuple(ids.shape)}")
    _check_range(ids, 0, vocab_size, "ids")
    out = ids.long() + offset
    if not special:
        return out
    lead = out.shape[:-1]
    b = torch.full((*lead, 1), begin, dtype=torch.long, device=out.device)
    e = torch.full((*lead, 1), end, dtype=torch.long, device=out.device)
    return torch.cat([b, out, e], dim=-1)


def from_llm_ids(llm_ids: torch.Tensor | Ragged, offset: int, vocab_size: int, *, begin_id: int | None = None,
                 end_id: int | None = None, special: bool = True) -> torch.Tensor | list[torch.Tensor]:
    """The exact inverse of :func:`to_llm_ids`: the ids between the first begin and the next end.

    llm_ids: (B, M) or (M,) int (text may surround the image span), or a list of 1D tensors.
    Returns (B, N) when every row's span has the same length, else a list of (N_b,) tensors.
    A row without a begin/end pair, or an id in the span outside the token block, is an InputError.
    """
    if not isinstance(llm_ids, torch.Tensor):
        return [from_llm_ids(x, offset, vocab_size, begin_id=begin_id, end_id=end_id, special=special)
                for x in llm_ids]
    begin, end = special_ids(offset, vocab_size, begin_id, end_id)
    if llm_ids.ndim == 2:
        rows = [from_llm_ids(r, offset, vocab_size, begin_id=begin, end_id=end, special=special) for r in llm_ids]
        if rows and all(r.shape == rows[0].shape for r in rows):
            return torch.stack(rows) if rows else llm_ids.new_zeros((0, 0), dtype=torch.long)
        return rows
    if llm_ids.ndim != 1:
        raise InputError(f"llm_ids must be (M,) or (B, M), got shape {tuple(llm_ids.shape)}")
    span = llm_ids.long()
    if special:
        row = llm_ids.tolist()
        if begin not in row:
            raise InputError(f"no begin-of-image token ({begin}) in the LLM ids")
        start = row.index(begin) + 1
        if end not in row[start:]:
            raise InputError(f"no end-of-image token ({end}) after the begin token at position {start - 1}")
        span = span[start:row.index(end, start)]
    _check_range(span, offset, offset + vocab_size, "LLM ids between begin and end")
    return span - offset


# -- residual levels -----------------------------------------------------------------------------
def flat_vocab_size(pattern: str, vocab_size: int, num_levels: int, *, level_offsets: bool = True) -> int:
    """How many distinct ids a flattened sequence uses (levels x vocab, plus the delay pad)."""
    _check_pattern(pattern)
    base = vocab_size * num_levels if level_offsets else vocab_size
    return base + 1 if pattern == "delay" else base


def delay_pad_id(vocab_size: int, num_levels: int, *, level_offsets: bool = True) -> int:
    """The id that fills the holes of the delay pattern."""
    return vocab_size * num_levels if level_offsets else vocab_size


def flat_length(pattern: str, num_levels: int, frames: int) -> int:
    """Sequence length S of ``frames`` frames of ``num_levels`` levels under ``pattern``."""
    _check_pattern(pattern)
    if pattern == "parallel":
        return frames
    return (frames + num_levels - 1) * num_levels if pattern == "delay" else frames * num_levels


def frames_of(pattern: str, num_levels: int, length: int) -> int:
    """Inverse of :func:`flat_length`: the number of frames T in a sequence of ``length``."""
    _check_pattern(pattern)
    if pattern == "parallel":
        return length
    if length % num_levels:
        raise InputError(f"a {pattern} sequence of {num_levels} levels has a multiple of {num_levels} ids, got {length}")
    t = length // num_levels - (num_levels - 1 if pattern == "delay" else 0)
    if t < 0:
        raise InputError(f"a delay sequence of {num_levels} levels has at least {(num_levels - 1) * num_levels} ids, "
                         f"got {length}")
    return t


def delay_pattern(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, L, T) -> (B, L, T + L - 1): level l shifted right by l, holes = ``pad_id`` (MusicGen)."""
    b, levels, t = _check_grid(ids)
    out = ids.new_full((b, levels, t + levels - 1), pad_id)
    for lvl in range(levels):
        out[:, lvl, lvl:lvl + t] = ids[:, lvl]
    return out


def undelay_pattern(grid: torch.Tensor) -> torch.Tensor:
    """(B, L, T + L - 1) -> (B, L, T): the exact inverse of :func:`delay_pattern` (pads dropped)."""
    b, levels, s = _check_grid(grid, "delayed ids")
    t = s - levels + 1
    if t < 0:
        raise InputError(f"a delayed grid of {levels} levels needs at least {levels - 1} steps, got {s}")
    return torch.stack([grid[:, lvl, lvl:lvl + t] for lvl in range(levels)], dim=1)


def flatten_levels(ids: torch.Tensor, pattern: str, vocab_size: int, *, level_offsets: bool = True) -> torch.Tensor:
    """ids (B, L, T) levels x frames in [0, vocab_size) -> (B, S) (or (B, L, T') for "parallel"/"delay"
    grids kept as is: "parallel" returns (B, L, T)). See the module docstring for the patterns."""
    _check_pattern(pattern)
    b, levels, t = _check_grid(ids)
    _check_range(ids, 0, vocab_size, "ids")
    if pattern == "parallel":
        return ids.long()
    shift = (torch.arange(levels, device=ids.device) * vocab_size)[None, :, None] if level_offsets else 0
    x = ids.long() + shift
    if pattern == "level_major":
        return x.reshape(b, levels * t)
    if pattern == "delay":
        x = delay_pattern(x, delay_pad_id(vocab_size, levels, level_offsets=level_offsets))
    return x.transpose(1, 2).reshape(b, -1)  # time-major: t0l0 t0l1 ... t1l0 ...


def unflatten_levels(seq: torch.Tensor, pattern: str, num_levels: int, vocab_size: int, *,
                     level_offsets: bool = True) -> torch.Tensor:
    """The exact inverse of :func:`flatten_levels`: (B, S) -> (B, L, T) ids in [0, vocab_size).

    An id that does not belong to its level (with ``level_offsets``) is an InputError; the delay
    pattern's hole positions are ignored, as MusicGen does when it reverts the pattern."""
    _check_pattern(pattern)
    if pattern == "parallel":
        _check_grid(seq)
        return seq.long()
    if seq.ndim != 2:
        raise InputError(f"flattened ids must be (B, S), got shape {tuple(seq.shape)}")
    b, s = seq.shape
    t = frames_of(pattern, num_levels, s)
    seq = seq.long()
    if pattern == "level_major":
        x = seq.reshape(b, num_levels, t)
    else:
        x = seq.reshape(b, s // num_levels, num_levels).transpose(1, 2)
        if pattern == "delay":
            x = undelay_pattern(x)
    if level_offsets:
        shift = (torch.arange(num_levels, device=x.device) * vocab_size)[None, :, None]
        bad = (x < shift) | (x >= shift + vocab_size)
        if x.device.type == "cpu" and bool(bad.any()):
            lvl = int(bad.nonzero()[0, 1])
            raise InputError(f"flattened ids hold an id outside level {lvl}'s block "
                             f"[{lvl * vocab_size}, {(lvl + 1) * vocab_size})")
        x = x - shift
    else:
        _check_range(x, 0, vocab_size, "flattened ids")
    return x


def _check_pattern(pattern: str) -> None:
    if pattern not in PATTERNS:
        raise InputError(f"unknown residual pattern {pattern!r}; known: {', '.join(PATTERNS)}")


def _check_grid(ids: torch.Tensor, what: str = "ids") -> tuple[int, int, int]:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 3:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise InputError(f"{what} must be (B, L, T) levels x frames, got {shape}")
    return tuple(ids.shape)  # type: ignore[return-value]

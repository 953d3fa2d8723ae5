"""Small fake tokenizers with the zoo's contract, for the token-shard and generator tests:
a variable-length image tokenizer (``num_tokens=k`` and ragged ``target=``) and a residual audio
codec whose ids are (B, L, T) levels x frames. Their ids are simple deterministic functions of the
input, so exports can be checked against direct ``encode`` calls."""

from __future__ import annotations

import math

import numpy as np
import soundfile as sf
import torch
from torch import nn


class FakeRaggedImage(nn.Module):
    """images (B, 3, 16, 16) -> ids (B, k), k in 1..8, vocab 50; ``target`` gives per-image lengths."""

    modality = "image"
    family = "fake_ragged"
    variable_length = True

    def __init__(self):
        super().__init__()
        self.name = "fake_ragged"
        self.scale = nn.Parameter(torch.tensor(49.0))
        self.input_size, self.num_tokens, self.vocab_size = 16, 8, 50

    def token_lengths(self) -> range:
        return range(1, 9)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, num_tokens: int | None = None, target: str | None = None):
        cells = images.mean(1).reshape(images.shape[0], 8, -1).mean(-1)  # (B, 8) in [0, 1]
        ids = (cells * self.scale).round().long().clamp(0, 49)
        if target is not None:  # ragged: per-image length from the image itself
            return [row[:1 + int(row[0]) % 8] for row in ids]
        return ids[:, :num_tokens or 8]

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        v = ids.float().mean(1) / 49
        return v[:, None, None, None].expand(-1, 3, 16, 16).clone()


class FakeCodec(nn.Module):
    """wav (B, 1, T) at 8 kHz -> ids (B, 3, ceil(T / 80)) in [0, 32): 100 frames/s, 3 levels."""

    modality = "audio"
    family = "fake_codec"
    sample_rate, frame_rate, num_levels, vocab_size, channels, hop = 8000, 100.0, 3, 32, 1, 80

    def __init__(self):
        super().__init__()
        self.name = "fake_codec"
        self.w = nn.Parameter(torch.ones(()))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
        frames = math.ceil(wav.shape[-1] / self.hop)
        x = torch.nn.functional.pad(wav[:, 0], (0, frames * self.hop - wav.shape[-1]))
        x = x.reshape(wav.shape[0], frames, self.hop).abs().mean(-1) * self.w  # (B, T) in [0, 1]
        levels = self.num_levels if bandwidth is None else int(bandwidth)
        return torch.stack([((x * 31).round().long() + 7 * lvl) % 32 for lvl in range(levels)], dim=1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        amp = ids[:, 0].float() / 31  # (B, T)
        return amp.repeat_interleave(self.hop, dim=-1)[:, None]


def write_clips(root, n: int, seed: int = 0) -> list:
    """``n`` 8 kHz mono wav files of 0.1 to 0.5 s under ``root`` (two class folders)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        folder = root / ("speech" if i % 2 else "music")
        folder.mkdir(parents=True, exist_ok=True)
        wav = (rng.uniform(-0.8, 0.8, int(rng.integers(800, 4000)))).astype(np.float32)
        sf.write(folder / f"clip_{i:02d}.wav", wav, 8000)
        paths.append(folder / f"clip_{i:02d}.wav")
    return paths

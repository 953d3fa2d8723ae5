"""DM-Codec: "Distilling Multimodal Representations for Speech Tokenization" (Ahasan et al., 2024).

A SpeechTokenizer-style RVQ codec (SEANet with a 2-layer BiLSTM encoder and an LSTM decoder, 8 levels
of 1024 Euclidean EMA codes, 50 Hz at 16 kHz) whose quantized levels are pulled, during training,
toward a frozen language model's contextual embeddings of the transcript (LM-guided) and a frozen
self-supervised speech model's features (SM-guided), through one linear head (``transform``,
codec width -> teacher width). The codec itself is :class:`zoo.models.codec.AudioCodec`; this module
adds the head and the student features the distillation compares (the teachers, their alignment and
the loss live in :mod:`zoo.training`). Once trained, the tokenizer is an ordinary codec: ``encode``
/ ``decode`` never need the teachers.

Student features of a set of levels: the sum of those levels' codes, with a straight-through
gradient to the encoder latents (the official code distills one level's STE output; "RVQ-1" is level
0 alone, "RVQ-1:8" the sum of all eight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zoo.blocks.seanet import SEANetConfig
from zoo.errors import ConfigError, InputError
from zoo.models.codec import AudioCodec, CodecConfig
from zoo.registry import register_model


@dataclass
class DMCodecConfig(CodecConfig):
    """A codec config plus ``distill_dim``, the teachers' feature width the head maps to (768 for
    HuBERT-base/BERT-base officially; 384 for the offline Whisper-tiny/MiniLM stand-ins)."""

    distill_dim: int = 768

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantizer != "ema":
            raise ConfigError(f"DM-Codec distills EnCodec-style residual codes: quantizer must be 'ema', "
                              f"got {self.quantizer!r}")
        if isinstance(self.distill_dim, bool) or not isinstance(self.distill_dim, int) or self.distill_dim < 1:
            raise ConfigError(f"distill_dim must be a positive int (the teacher feature width), got {self.distill_dim!r}")


def parse_levels(levels: int | str | tuple[int, int], num_levels: int) -> tuple[int, int]:
    """A level selection -> half-open range [start, stop) of 0-based levels.

    ``1`` or ``"1"`` is RVQ-1 (level 0 alone), ``"1:8"`` the sum of levels 1..8 (paper notation,
    1-based and inclusive), a tuple is taken as (start, stop) 0-based.
    """
    if isinstance(levels, tuple):
        start, stop = levels
    elif isinstance(levels, int) and not isinstance(levels, bool):
        start, stop = levels - 1, levels
    elif isinstance(levels, str):
        try:
            parts = [int(p) for p in levels.split(":")]
        except ValueError:
            raise ConfigError(f"levels {levels!r} must look like '1' or '1:8' (1-based RVQ levels)") from None
        if len(parts) == 1:
            start, stop = parts[0] - 1, parts[0]
        elif len(parts) == 2:
            start, stop = parts[0] - 1, parts[1]
        else:
            raise ConfigError(f"levels {levels!r} must look like '1' or '1:8' (1-based RVQ levels)")
    else:
        raise ConfigError(f"levels must be an int, 'a:b' or (start, stop), got {levels!r}")
    if not 0 <= start < stop <= num_levels:
        raise ConfigError(f"levels {levels!r} select RVQ levels outside 1..{num_levels}")
    return int(start), int(stop)


class DMCodec(AudioCodec):
    """An :class:`AudioCodec` with DM-Codec's distillation head. wav (B, 1, T) <-> ids (B, L, T / hop)."""

    family = "dm_codec"
    config_class = DMCodecConfig

    def __init__(self, config: DMCodecConfig, name: str | None = None):
        super().__init__(config, name)
        self.transform = nn.Linear(config.encoder.dimension, config.distill_dim)

    def level_features(self, latents: torch.Tensor, ids: torch.Tensor, levels: int | str | tuple[int, int]
                       ) -> torch.Tensor:
        """The codes of the selected levels, summed, with a straight-through gradient to ``latents``.

        latents: (B, N, D) pre-quantization (``forward(...).extras["latents"]``); ids: (B, L, N) as ``forward`` returns them (levels that
        quantizer dropout skipped hold -1 and add nothing). Returns (B, N, D).
        """
        if latents.ndim != 3 or ids.ndim != 3 or ids.shape[0] != latents.shape[0] or ids.shape[2] != latents.shape[1]:
            raise InputError(f"latents (B, N, D) and ids (B, L, N) must agree, got {tuple(latents.shape)} and "
                             f"{tuple(ids.shape)}")
        start, stop = parse_levels(levels, self.num_levels)
        codebooks = self.quantizer.codebooks  # (L, K, D)
        codes = latents.new_zeros(latents.shape)
        for level in range(start, min(stop, ids.shape[1])):
            level_ids = ids[:, level]
            kept = (level_ids >= 0).unsqueeze(-1).to(latents.dtype)
            codes = codes + codebooks[level][level_ids.clamp_min(0)].to(latents.dtype) * kept
        return latents + (codes - latents).detach()

    def distill_features(self, latents: torch.Tensor, ids: torch.Tensor, levels: int | str | tuple[int, int]
                         ) -> torch.Tensor:
        """Student features for the distillation loss: ``transform(level_features(...))`` (B, N, distill_dim)."""
        return self.transform(self.level_features(latents, ids, levels))


def _speechtokenizer_stack(n_filters: int, dimension: int, lstm_layers: int) -> dict:
    return dict(channels=1, dimension=dimension, n_filters=n_filters, dilations=(1,), compress=2, true_skip=False,
                activation="elu", norm="weight_norm", causal=False, pad_mode="reflect", lstm_layers=lstm_layers)


def _dm_codec(n_filters: int, dimension: int, lstm_layers: int, num_levels: int, codebook_size: int,
              distill_dim: int, **kwargs) -> DMCodecConfig:
    stack = _speechtokenizer_stack(n_filters, dimension, lstm_layers)
    return DMCodecConfig(sample_rate=16_000, channels=1,
                         encoder=SEANetConfig(strides=(2, 4, 5, 8), bidirectional=True, **stack),
                         decoder=SEANetConfig(strides=(8, 5, 4, 2), **stack), quantizer="ema",
                         num_levels=num_levels, codebook_size=codebook_size, distill_dim=distill_dim,
                         commitment_weight=1.0, **kwargs)


# -- named variants: numbers only ------------------------------------------------------------------
# Official: SEANet 64 filters, strides [8,5,4,2] (hop 320, 50 Hz at 16 kHz), dimension 1024, 2-layer
# BiLSTM encoder / LSTM decoder, 8 x 1024 codes, a 1024 -> 768 head: 103,675,586 parameters in all
# (the codec's 102,888,386 plus the head's 787,200), as the official state dict counts them.
@register_model(DMCodec, paper="DM-Codec (LM+SM, 16 kHz)", params_official=103_675_586,
                official_repo="mubtasimahasan/DM-Codec")
def dm_codec_16khz() -> DMCodecConfig:
    return _dm_codec(64, 1024, 2, 8, 1024, 768, kmeans_init=True, kmeans_iters=50, dead_code_threshold=2.0,
                     quantizer_dropout=1.0, ema_decay=0.99)


# CPU-sized: the same layout at 8 filters / 64 dims / 1 LSTM layer, 8 x 1024 codes at 50 Hz (0.5-4 kbps),
# a 64 -> 384 head for the offline teachers (Whisper tiny.en encoder, MiniLM).
@register_model(DMCodec, paper=None)
def dm_codec_nano_16khz() -> DMCodecConfig:
    return _dm_codec(8, 64, 1, 8, 1024, 384, kmeans_init=True, kmeans_iters=10, dead_code_threshold=2.0,
                     quantizer_dropout=1.0, ema_decay=0.95)

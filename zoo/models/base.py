"""The contract every tokenizer in the zoo follows.

An image tokenizer is a plain ``nn.Module`` with

- ``encode(images) -> ids``: images (B, 3, H, W) float in [0, 1] -> ids (B, N) int64 in [0, vocab_size);
- ``decode(ids) -> images``: ids (B, N) -> images (B, 3, H, W) float in [0, 1];
- ``forward(images) -> TokenizerOutput``: reconstruction (unclamped) plus the quantizer's losses;
- ``num_tokens``, ``vocab_size``, ``input_size``, ``config`` (a dataclass), ``family``, ``name``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from zoo.audio import check_waveform, resample as resample_audio
from zoo.errors import CheckpointError, InputError
from zoo.quantize import QuantizerAux
from zoo.tokens import vocab as _vocab
from zoo.validation import check_ids, check_images, value_check_mode


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode, restoring its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@dataclass
class TokenizerOutput:
    """reconstruction: (B, 3, H, W) float (not clamped, for losses); ids: (B, N) int64;
    aux: the quantizer's loss (already weighted), its named parts and usage statistics."""

    reconstruction: torch.Tensor
    ids: torch.Tensor
    aux: QuantizerAux
    extras: dict[str, Any] = field(default_factory=dict)


class Tokenizer(nn.Module):
    """Base class of every tokenizer: identity (family, name, config) and Hub helpers."""

    family: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any, name: str | None = None):
        super().__init__()
        self.config = config
        self.name = name or self.family

    def num_parameters(self, *, include_buffers: bool = False) -> int:
        """Number of parameters (plus float buffers such as EMA codebooks when asked)."""
        n = sum(p.numel() for p in self.parameters())
        if include_buffers:
            n += sum(b.numel() for name, b in self.named_buffers() if b.is_floating_point()
                     and name.endswith("_codebook.embed"))
        return n

    # Thin wrappers over zoo.hub so that ``model.save_pretrained(dir)`` reads as users expect.
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (atomically)."""
        from zoo import hub
        return hub.save_pretrained(self, directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload weights, config and a model card (``card=`` Markdown, e.g. a bundled checkpoint's
        card from ``zoo.model_card.checkpoint_card``; else one generated with ``metrics=``) to ``repo_id``."""
        from zoo import hub
        from zoo.model_card import render_model_card

        metrics = kwargs.pop("metrics", None)
        card = kwargs.pop("card", None) or render_model_card(self, repo_id=repo_id, metrics=metrics)
        return hub.push_to_hub(self, repo_id, card=card, **kwargs)

    # -- ids inside an LLM vocabulary (zoo.tokens.vocab) ---------------------------------------------
    def llm_token_count(self, pattern: str = "interleave") -> int:
        """LLM vocabulary entries this tokenizer needs: its ids (x levels for residual ids, + the delay
        pad) plus begin and end; reserve ``[offset, offset + llm_token_count())``."""
        return self._llm_vocab(pattern) + 2

    def _llm_vocab(self, pattern: str) -> int:
        if self.modality != "audio":
            return int(self.vocab_size)
        return _vocab.flat_vocab_size(pattern, int(self.vocab_size), int(getattr(self, "num_levels", 1)))

    def to_llm_ids(self, ids: torch.Tensor | list[torch.Tensor], offset: int, *, pattern: str = "interleave",
                   begin_id: int | None = None, end_id: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        """ids (B, N) (or a list of (N_b,) for ragged ids), or residual (B, L, T) flattened with ``pattern``
        -> LLM ids (B, S + 2): ``[begin, offset + ids..., end]`` with begin/end right after the block
        (see :func:`zoo.tokens.vocab.to_llm_ids`)."""
        vocab = self._llm_vocab(pattern)
        if isinstance(ids, torch.Tensor) and ids.ndim == 3:
            ids = _vocab.flatten_levels(ids, pattern, int(self.vocab_size))
        return _vocab.to_llm_ids(ids, offset, vocab, begin_id=begin_id, end_id=end_id)

    def from_llm_ids(self, llm_ids: torch.Tensor | list[torch.Tensor], offset: int, *, pattern: str = "interleave",
                     num_levels: int | None = None, begin_id: int | None = None,
                     end_id: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        """The exact inverse of :meth:`to_llm_ids`: the span between begin and end, minus ``offset``
        (residual ids: unflattened to (B, L, T) with ``num_levels`` levels, default all)."""
        ids = _vocab.from_llm_ids(llm_ids, offset, self._llm_vocab(pattern), begin_id=begin_id, end_id=end_id)
        if self.modality != "audio":
            return ids
        levels = int(num_levels or getattr(self, "num_levels", 1))
        unflat = lambda x: _vocab.unflatten_levels(x[None] if x.ndim == 1 else x, pattern, levels,  # noqa: E731
                                                   int(self.vocab_size))
        return unflat(ids) if isinstance(ids, torch.Tensor) else [unflat(x)[0] for x in ids]


class ImageTokenizer(Tokenizer):
    """Shared checks and helpers of image tokenizers; subclasses implement the four hooks
    ``encode_latents``, ``quantizer``, ``decode_latents`` and ``token_lengths``."""

    modality: ClassVar[str] = "image"
    variable_length: ClassVar[bool] = False
    quantizer: nn.Module

    # -- the contract ---------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def input_size(self) -> int:
        return self.config.image_size

    @property
    def bits_per_image(self) -> float:
        return self.num_tokens * math.log2(self.vocab_size)

    def token_lengths(self) -> int | range | tuple[int, ...]:
        """Token counts that :meth:`decode` accepts."""
        return self.num_tokens

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) float in [0, 1] -> ids (B, num_tokens) int64 in [0, vocab_size)."""
        latents = self.check_model_output(self.encode_latents(self.prepare_images(images)), "latents")
        with _frozen(self.quantizer):  # encoding never updates codebooks (EMA, dead-code restarts)
            return self.quantizer(latents).ids

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N) int in [0, vocab_size) -> images (B, 3, H, W) float in [0, 1]."""
        check_ids(ids, self.vocab_size, self.token_lengths())
        ids = ids.to(device=self._device(), dtype=torch.long)
        images = self.decode_latents(self.quantizer.ids_to_vectors(ids))
        return self.check_model_output(images, "images").clamp(0.0, 1.0)

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """Check ``images`` (:func:`zoo.validation.check_images`) and move them to the model's device
        and float dtype: float64/float16/bfloat16 images are converted, not refused."""
        check_images(images, self.input_size)
        p = next(self.parameters())
        return images.to(device=p.device, dtype=p.dtype if p.is_floating_point() else images.dtype)

    def check_model_output(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """NaN/Inf in what the model computed from checked (finite) input means broken weights: say
        so (a :class:`CheckpointError` naming the non-finite tensors) instead of blaming the input.
        A value check, so on CPU tensors only (see :func:`zoo.validation.value_check_mode`)."""
        if value_check_mode(x) == "sync" and not bool(torch.isfinite(x).all()):
            bad = [n for n, t in self.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
            if bad:
                raise CheckpointError(f"{self.name}: {len(bad)} weight tensor(s) hold NaN or Inf (e.g. {bad[:3]}); the "
                                      f"{what} computed from finite input are not finite. Reload the checkpoint, or "
                                      "resume training from an earlier one")
            raise InputError(f"{self.name}: the {what} computed from finite input overflowed to NaN or Inf "
                             f"(dtype {x.dtype}); run the model in float32")
        return x

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """images: (B, 3, H, W) in [0, 1] -> reconstruction (unclamped), ids and quantizer losses."""
        images = self.prepare_images(images)
        quantized, ids, aux = self.quantizer(self.encode_latents(images))
        return TokenizerOutput(self.decode_latents(quantized), ids, aux)

    # -- hooks for subclasses -------------------------------------------------------------------
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> pre-quantization latents (B, N, D)."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """quantized latents (B, N, D) -> images (B, 3, H, W), unclamped."""
        raise NotImplementedError

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class AudioTokenizer(Tokenizer):
    """Shared contract of audio tokenizers (residual codecs): waveforms <-> ids (B, L, T).

    - ``encode(wav, sample_rate=None, bandwidth=None, num_levels=None) -> ids``: wav (B, C, T) float
      in [-1, 1] -> ids (B, L, T_frames) int64 in [0, vocab_size), L levels (all, or as many as
      ``bandwidth`` kbps / ``num_levels`` allow);
    - ``decode(ids) -> wav``: ids (B, L', T_frames) for any prefix 1 <= L' <= L -> (B, C, T_frames * hop);
    - ``sample_rate``, ``channels``, ``frame_rate`` (frames per second), ``hop_length``,
      ``num_levels``, ``vocab_size``, ``bandwidths`` (kbps), ``bitrate(levels)`` (kbps).

    Subclasses implement ``encode_latents`` (B, C, T) -> (B, N, D), ``decode_latents`` (B, N, D) ->
    (B, C, T) and the ``quantizer`` (ids (B, N, L) inside; the public ids are (B, L, N)).
    """

    modality: ClassVar[str] = "audio"
    quantizer: nn.Module

    # -- the contract ---------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.config.channels)

    @property
    def hop_length(self) -> int:
        raise NotImplementedError

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def num_levels(self) -> int:
        return int(self.quantizer.num_levels)

    @property
    def vocab_size(self) -> int:
        return int(self.quantizer.codebook_size)

    def bitrate(self, levels: int | None = None) -> float:
        """kbps of ``levels`` levels (all by default): frame_rate * levels * log2(vocab) / 1000."""
        levels = self.num_levels if levels is None else int(levels)
        return self.frame_rate * levels * math.log2(self.vocab_size) / 1000.0

    @property
    def bandwidths(self) -> list[float]:
        """Bitrates in kbps that ``encode(bandwidth=...)`` accepts exactly (a level count each)."""
        return [round(self.bitrate(n), 3) for n in range(1, self.num_levels + 1)]

    def levels_for(self, bandwidth: float | None = None, num_levels: int | None = None) -> int:
        """The level count for ``bandwidth`` kbps (largest count within it) or ``num_levels``."""
        if bandwidth is not None and num_levels is not None:
            raise InputError("give bandwidth or num_levels, not both")
        if num_levels is not None:
            if not 1 <= int(num_levels) <= self.num_levels:
                raise InputError(f"num_levels must be in [1, {self.num_levels}], got {num_levels}")
            return int(num_levels)
        if bandwidth is None:
            return self.num_levels
        per_level = self.bitrate(1)
        n = int(math.floor(float(bandwidth) / per_level + 1e-6))
        if float(bandwidth) <= 0 or n > self.num_levels:
            raise InputError(f"bandwidth {bandwidth} kbps is outside this model's range: {per_level:.3g} to "
                             f"{self.bitrate():.3g} kbps ({self.num_levels} levels of {per_level:.3g} kbps)")
        return max(1, n)

    def check_audio_ids(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor) or ids.ndim != 3:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise InputError(f"audio ids must have shape (B, L, T) (levels, frames), got {shape}")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise InputError(f"ids must be an integer tensor, got dtype {ids.dtype}")
        if not 1 <= ids.shape[1] <= self.num_levels:
            raise InputError(f"ids have {ids.shape[1]} levels (shape {tuple(ids.shape)}); this model decodes 1 to "
                             f"{self.num_levels} levels (a prefix of its residual levels)")
        if ids.shape[2] == 0:
            raise InputError("ids hold no frames")
        if ids.device.type == "cpu":
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.vocab_size:
                raise InputError(f"token ids must be in [0, {self.vocab_size}), got values in [{lo}, {hi}]")

    def prepare(self, wav: torch.Tensor, sample_rate: int | None = None, resample: bool = False) -> torch.Tensor:
        """Check ``wav`` (B, C, T) and resample it to the model's rate when asked (``resample=True``)."""
        if resample and sample_rate is not None and int(sample_rate) != self.sample_rate:
            check_waveform(wav, channels=self.channels, sample_rate=int(sample_rate), given_rate=None, min_samples=1)
            wav = resample_audio(wav, int(sample_rate), self.sample_rate)
            sample_rate = self.sample_rate
        check_waveform(wav, channels=self.channels, sample_rate=self.sample_rate, given_rate=sample_rate,
                       min_samples=self.hop_length)
        return wav.to(self._device())

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None, bandwidth: float | None = None,
               num_levels: int | None = None, *, resample: bool = False) -> torch.Tensor:
        """wav (B, C, T) float in [-1, 1] -> ids (B, L, ceil(T / hop)) int64 in [0, vocab_size).

        ``sample_rate``: the rate of ``wav``; a rate other than the model's is an error unless
        ``resample=True`` (then ``torchaudio.functional.resample`` converts it first).
        ``bandwidth`` (kbps) or ``num_levels`` keep a prefix of the residual levels.
        """
        levels = self.levels_for(bandwidth, num_levels)
        wav = self.prepare(wav, sample_rate, resample)
        with _frozen(self.quantizer):  # encoding never updates codebooks (EMA, dead-code restarts)
            ids = self.quantizer(self.encode_latents(wav)).ids
        return ids[..., :levels].transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, *, sample_rate: int | None = None) -> torch.Tensor:
        """ids (B, L', T) for any prefix 1 <= L' <= L -> wav (B, C, T * hop) float.

        ``sample_rate``: resample the output to this rate (``torchaudio.functional.resample``).
        """
        self.check_audio_ids(ids)
        ids = ids.to(device=self._device(), dtype=torch.long).transpose(1, 2)
        wav = self.decode_latents(self.quantizer.ids_to_vectors(ids))
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            wav = resample_audio(wav, self.sample_rate, int(sample_rate))
        return wav

    def forward(self, wav: torch.Tensor) -> TokenizerOutput:
        """wav (B, C, T) -> reconstruction (B, C, T'), ids (B, L, N) and quantizer losses (training);
        ``extras["latents"]``: the pre-quantization latents (B, N, D), e.g. for feature distillation."""
        check_waveform(wav, channels=self.channels, sample_rate=self.sample_rate, given_rate=None,
                       min_samples=self.hop_length)
        latents = self.encode_latents(wav)
        quantized, ids, aux = self.quantizer(latents)
        return TokenizerOutput(self.decode_latents(quantized), ids.transpose(1, 2), aux, {"latents": latents})

    # -- hooks for subclasses -------------------------------------------------------------------
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, C, T) -> pre-quantization latents (B, N, D)."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """quantized latents (B, N, D) -> wav (B, C, N * hop)."""
        raise NotImplementedError

    def _device(self) -> torch.device:
        return next(self.parameters()).device

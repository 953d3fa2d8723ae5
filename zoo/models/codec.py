"""Residual-VQ neural audio codecs: EnCodec (Défossez et al., 2022) and DAC (Kumar et al., 2023) style.

A SEANet encoder turns the waveform (B, C, T) into latents at ``sample_rate / hop`` frames per second,
a residual quantizer turns each frame into L ids (one per level), and a SEANet decoder renders the
sum of the levels' codes. Quantizer dropout trains the decoder on every prefix of levels, so one
model serves every bitrate: ``encode(wav, bandwidth=6)`` keeps the levels that fit 6 kbps and
``decode`` takes any prefix of levels.

- ``quantizer="ema"`` (EnCodec): Euclidean codes of the latent's dim, EMA updates, k-means init,
  dead-code restart (vector-quantize-pytorch via :class:`zoo.quantize.ResidualVectorQuantizer`).
- ``quantizer="factorized"`` (DAC): per-level projection to 8 dims, l2-normalized lookup, codes
  learned by gradient (:class:`zoo.quantize.factorized.FactorizedResidualVQ`).

Long files and streaming: causal models (``encoder.causal``) encode and decode chunk by chunk with
exactly the whole-file result (with ``pad_to_hop``, or for inputs of a whole number of hops: EnCodec
completes a partial last frame by reflect padding, the stream by zeros, so that one frame may differ) (:meth:`AudioCodec.encoder_stream`, :meth:`AudioCodec.decoder_stream`,
:meth:`AudioCodec.encode_long`); non-causal ones use overlapping windows (see :meth:`encode_long`).
Parameter names follow the official layouts closely (``zoo.convert.encodec`` / ``zoo.convert.dac``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from zoo.blocks.seanet import (SConv1d, SConvTranspose1d, SEANetConfig, SEANetDecoder, SEANetEncoder,
                               as_seanet_config, new_stream_state)
from zoo.errors import ConfigError, InputError
from zoo.models.base import AudioTokenizer, _frozen
from zoo.quantize import ResidualVectorQuantizer, RVQConfig
from zoo.quantize.factorized import FactorizedResidualVQ, FactorizedRVQConfig
from zoo.registry import register_model

QUANTIZER_KINDS = ("ema", "factorized")


@dataclass
class CodecConfig:
    """A codec: sample rate and channels, the two SEANet stacks, the residual quantizer.

    quantizer: "ema" (EnCodec codes) or "factorized" (DAC codes). quantizer_dropout: fraction of
    batch items trained on a random prefix of levels ("factorized"; "ema" drops per batch when > 0).
    pad_to_hop: zero-pad the input on the right to a multiple of the hop before encoding (DAC; also
    what makes chunked and streamed encoding exact); otherwise each conv completes its last frame
    with reflect padding (EnCodec). bandwidths: the nominal kbps list to report (None: one per level).
    """

    sample_rate: int = 24_000
    channels: int = 1
    encoder: SEANetConfig = field(default_factory=SEANetConfig)
    decoder: SEANetConfig = field(default_factory=lambda: SEANetConfig(strides=(8, 5, 4, 2)))
    quantizer: str = "ema"
    codebook_size: int = 1024
    num_levels: int = 32
    codebook_dim: int = 8
    quantizer_dropout: float = 1.0
    commitment_weight: float = 1.0
    codebook_weight: float = 1.0
    ema_decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 50
    dead_code_threshold: float = 2.0
    pad_to_hop: bool = False
    bandwidths: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.encoder = as_seanet_config(self.encoder)
        self.decoder = as_seanet_config(self.decoder)
        if self.bandwidths is not None:
            self.bandwidths = tuple(float(b) for b in self.bandwidths)
        if self.quantizer not in QUANTIZER_KINDS:
            raise ConfigError(f"quantizer must be one of {QUANTIZER_KINDS}, got {self.quantizer!r}")
        if self.encoder.hop_length != self.decoder.hop_length:
            raise ConfigError(f"encoder hop {self.encoder.hop_length} != decoder hop {self.decoder.hop_length}")
        if self.encoder.dimension != self.decoder.dimension:
            raise ConfigError("encoder.dimension and decoder.dimension must be equal")
        if self.encoder.channels != self.channels or self.decoder.channels != self.channels:
            raise ConfigError(f"encoder/decoder channels must equal channels={self.channels}")
        if self.sample_rate < 1:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}")


def build_quantizer(c: CodecConfig):
    """The residual quantizer of config ``c`` (latents (B, N, dimension))."""
    dim = c.encoder.dimension
    if c.quantizer == "factorized":
        return FactorizedResidualVQ(FactorizedRVQConfig(
            dim=dim, codebook_size=c.codebook_size, num_levels=c.num_levels, codebook_dim=c.codebook_dim,
            quantizer_dropout=c.quantizer_dropout, commitment_weight=c.commitment_weight,
            codebook_weight=c.codebook_weight))
    # EMA codebooks read their init flags on construction: on the meta device (model cards, counts) build on the CPU
    with torch.device("cpu") if torch.get_default_device().type == "meta" else contextlib.nullcontext():
        return _ema_quantizer(c, dim)


def _ema_quantizer(c: CodecConfig, dim: int) -> ResidualVectorQuantizer:
    q = ResidualVectorQuantizer(RVQConfig(
        dim=dim, codebook_size=c.codebook_size, num_levels=c.num_levels, use_cosine=False,
        quantizer_dropout=c.quantizer_dropout > 0, commitment_weight=c.commitment_weight, ema_decay=c.ema_decay,
        kmeans_init=c.kmeans_init, kmeans_iters=c.kmeans_iters, dead_code_threshold=c.dead_code_threshold))
    if c.kmeans_init:  # usable codes before training; training re-arms k-means (AudioCodecModule)
        with torch.no_grad():
            for layer in q.rvq.layers:
                cb = layer._codebook
                torch.nn.init.kaiming_uniform_(cb.embed)
                cb.embed_avg.copy_(cb.embed)
                cb.cluster_size.fill_(1.0)
                cb.initted.fill_(True)
        q._initted.refresh()
    return q


def rearm_kmeans(quantizer: torch.nn.Module) -> bool:
    """Mark EMA codebooks as uninitialized so the next training batch runs k-means. True if any."""
    found = False
    for m in quantizer.modules():
        if hasattr(m, "initted") and hasattr(m, "kmeans_iters"):
            m.initted.fill_(False)
            found = True
    for m in quantizer.modules():
        flags = getattr(m, "_initted", None)
        if flags is not None and hasattr(flags, "refresh"):
            flags.refresh()
    return found


class AudioCodec(AudioTokenizer):
    """wav (B, C, T) in [-1, 1] <-> ids (B, L, T / hop) in [0, codebook_size)."""

    family = "codec"
    config_class = CodecConfig

    def __init__(self, config: CodecConfig, name: str | None = None):
        super().__init__(config, name)
        self.encoder = SEANetEncoder(config.encoder)
        self.quantizer = build_quantizer(config)
        self.decoder = SEANetDecoder(config.decoder)

    @property
    def card_note(self) -> str:
        trainable = self.num_parameters()
        return (f"{trainable:,} trainable parameters (the figure the official totals count); the card's parameter "
                "figure adds the EMA codebooks, which are buffers. Audio is read with soundfile, resampled with "
                "torchaudio when asked (`resample=True`), and any prefix of the residual levels decodes.")

    # -- contract -------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return self.config.encoder.hop_length

    @property
    def causal(self) -> bool:
        return bool(self.config.encoder.causal and self.config.decoder.causal)

    @property
    def bandwidths(self) -> list[float]:
        if self.config.bandwidths:
            return list(self.config.bandwidths)
        return super().bandwidths

    def num_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Frames that ``num_samples`` samples encode to: ceil(T / hop)."""
        if isinstance(num_samples, torch.Tensor):
            return torch.div(num_samples + self.hop_length - 1, self.hop_length, rounding_mode="floor")
        return -(-int(num_samples) // self.hop_length)

    def decoded_length(self, num_frames: int) -> int:
        """Samples :meth:`decode` returns for ``num_frames`` frames: frames * hop, less one per odd
        stride with DAC's symmetric trim (the official DAC 24/16 kHz decoders end 8 samples short)."""
        n = int(num_frames)
        for s in self.config.decoder.strides:
            n = n * s - (1 if s % 2 and self.config.decoder.transpose_trim == "symmetric" and not self.causal else 0)
        return n

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        if self.config.pad_to_hop:
            wav = F.pad(wav, (0, (-wav.shape[-1]) % self.hop_length))
        return self.encoder(wav).transpose(1, 2)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents.transpose(1, 2))

    # -- batches of different lengths ------------------------------------------------------------
    @torch.no_grad()
    def encode_padded(self, wav: torch.Tensor, lengths: torch.Tensor | list[int], **kwargs: Any) -> torch.Tensor:
        """A right-padded batch (B, C, T_max) with per-item ``lengths`` -> ids (B, L, N_max) whose first
        ``num_frames(lengths[b])`` frames equal ``encode(wav[b:b+1, :, :lengths[b]])``; later frames are 0.

        Causal models with ``pad_to_hop`` encode the batch in one pass (right padding cannot reach
        earlier frames); the others encode item by item (their last frames see the padding).
        """
        lengths = [int(n) for n in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
        if len(lengths) != wav.shape[0] or any(n < 1 or n > wav.shape[-1] for n in lengths):
            raise InputError(f"lengths must give 1 <= length <= {wav.shape[-1]} for each of the {wav.shape[0]} "
                             f"items, got {lengths}")
        if self.causal and self.config.pad_to_hop:
            ids = self.encode(wav, **kwargs)
            frames = self.num_frames(torch.tensor(lengths, device=ids.device))
            mask = torch.arange(ids.shape[-1], device=ids.device)[None, :] < frames[:, None]
            return ids * mask[:, None, :]
        out = [self.encode(wav[b:b + 1, :, :n], **kwargs) for b, n in enumerate(lengths)]
        n_max = max(o.shape[-1] for o in out)
        return torch.cat([F.pad(o, (0, n_max - o.shape[-1])) for o in out])

    # -- streaming (causal models) ---------------------------------------------------------------
    def encoder_stream(self, bandwidth: float | None = None, num_levels: int | None = None) -> "EncoderStream":
        """A causal encoder fed chunk by chunk: ``feed(wav) -> ids`` then ``flush() -> ids``."""
        return EncoderStream(self, self.levels_for(bandwidth, num_levels))

    def decoder_stream(self) -> "DecoderStream":
        """A causal decoder fed ids chunk by chunk: ``feed(ids) -> wav``."""
        return DecoderStream(self)

    def _require_streamable(self) -> None:
        if not self.causal or "time_group_norm" in (self.config.encoder.norm, self.config.decoder.norm):
            raise ConfigError(f"{self.name} cannot stream: streaming needs a causal encoder and decoder without "
                              "time_group_norm (e.g. codec_nano_16khz, encodec_24khz); use encode_long for "
                              "overlapping windows instead")

    # -- long files ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_long(self, wav: torch.Tensor, *, chunk_seconds: float = 10.0, context_seconds: float = 1.0,
                    bandwidth: float | None = None, num_levels: int | None = None,
                    sample_rate: int | None = None, resample: bool = False) -> torch.Tensor:
        """Encode a long (B, C, T) signal in bounded memory -> the same ids shape as :meth:`encode`.

        Causal streamable models run the encoder stream over ``chunk_seconds`` chunks: the ids equal
        the whole-file ids exactly. Other models encode windows of ``chunk_seconds`` with
        ``context_seconds`` of audio on each side and keep the central frames: frames farther than
        the encoder's receptive field (:attr:`receptive_field`, LSTMs aside) from a window edge see
        the same input as in the whole file, so with context >= receptive field the ids match the
        whole file's up to float rounding (rare near-tie codes); an LSTM carries state across all
        frames, which no window reproduces exactly. Memory: O(chunk + 2 * context) activations.
        """
        levels = self.levels_for(bandwidth, num_levels)
        wav = self.prepare(wav, sample_rate, resample)
        hop = self.hop_length
        chunk = max(1, int(chunk_seconds * self.sample_rate) // hop) * hop
        if self._streamable():
            stream = EncoderStream(self, levels)
            parts = [stream.feed(wav[..., i:i + chunk]) for i in range(0, wav.shape[-1], chunk)]
            parts.append(stream.flush())
            return torch.cat(parts, dim=-1)
        ctx = int(math.ceil(context_seconds * self.sample_rate / hop)) * hop
        total = self.num_frames(wav.shape[-1])
        out = []
        for start in range(0, wav.shape[-1], chunk):
            lo, hi = max(0, start - ctx), min(wav.shape[-1], start + chunk + ctx)
            ids = self.encode(wav[..., lo:hi], num_levels=levels)
            first = (start - lo) // hop
            out.append(ids[..., first:first + chunk // hop])
        return torch.cat(out, dim=-1)[..., :total]

    @torch.no_grad()
    def decode_long(self, ids: torch.Tensor, *, chunk_seconds: float = 10.0, context_seconds: float = 1.0) -> torch.Tensor:
        """Decode (B, L, N) ids in bounded memory: the decoder stream for causal streamable models
        (exact), else windows of ``chunk_seconds`` with ``context_seconds`` of frames on each side."""
        self.check_audio_ids(ids)
        frames = max(1, int(chunk_seconds * self.frame_rate))
        if self._streamable():
            stream = DecoderStream(self)
            return torch.cat([stream.feed(ids[..., i:i + frames]) for i in range(0, ids.shape[-1], frames)], dim=-1)
        ctx = int(math.ceil(context_seconds * self.frame_rate))
        hop, out = self.hop_length, []
        for start in range(0, ids.shape[-1], frames):
            lo, hi = max(0, start - ctx), min(ids.shape[-1], start + frames + ctx)
            wav = self.decode(ids[..., lo:hi])
            first = (start - lo) * hop
            out.append(wav[..., first:first + frames * hop])
        return torch.cat(out, dim=-1)

    def _streamable(self) -> bool:
        try:
            self._require_streamable()
        except ConfigError:
            return False
        return True

    @property
    def receptive_field(self) -> int:
        """Input samples one encoder frame sees through its convolutions (LSTMs not counted)."""
        rf, jump = 1, 1
        for m in self.encoder.modules():
            if isinstance(m, SConv1d):
                rf += (m.k_eff - 1) * jump
                jump *= m.stride
        return rf


class EncoderStream:
    """Feeds (B, C, t) chunks of any length through a causal codec; returns ids of completed frames."""

    def __init__(self, model: AudioCodec, levels: int):
        model._require_streamable()
        self.model, self.levels = model, levels
        self.state = new_stream_state()
        self.pending: torch.Tensor | None = None

    @torch.no_grad()
    def feed(self, wav: torch.Tensor) -> torch.Tensor:
        """wav (B, C, t) -> ids (B, L, n) for the frames completed so far (n may be 0)."""
        m = self.model
        if self.pending is not None:
            wav = torch.cat([self.pending, wav.to(self.pending)], dim=-1)
        n = wav.shape[-1] // m.hop_length * m.hop_length
        self.pending = wav[..., n:]
        return self._encode(wav[..., :n])

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """Zero-pad what is left to a whole frame and encode it (as ``pad_to_hop`` does for a whole file)."""
        if self.pending is None or self.pending.shape[-1] == 0:
            return self._empty()
        wav = F.pad(self.pending, (0, (-self.pending.shape[-1]) % self.model.hop_length))
        self.pending = None
        return self._encode(wav)

    def _empty(self) -> torch.Tensor:
        b = self.pending.shape[0] if self.pending is not None else 1
        return torch.zeros(b, self.levels, 0, dtype=torch.long, device=self.model._device())

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] == 0:
            return torch.zeros(wav.shape[0], self.levels, 0, dtype=torch.long, device=wav.device)
        m = self.model
        latents = m.encoder.step(wav.to(m._device()), self.state)
        if latents.shape[-1] == 0:
            return torch.zeros(wav.shape[0], self.levels, 0, dtype=torch.long, device=wav.device)
        with _frozen(m.quantizer):
            ids = m.quantizer(latents.transpose(1, 2)).ids
        return ids[..., :self.levels].transpose(1, 2).contiguous()


class DecoderStream:
    """Feeds (B, L, n) ids through a causal codec's decoder; returns (B, C, n * hop) samples each time."""

    def __init__(self, model: AudioCodec):
        model._require_streamable()
        self.model = model
        self.state = new_stream_state()

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        m = self.model
        m.check_audio_ids(ids)
        vectors = m.quantizer.ids_to_vectors(ids.to(device=m._device(), dtype=torch.long).transpose(1, 2))
        return m.decoder.step(vectors.transpose(1, 2), self.state)


# -- named variants: numbers only ------------------------------------------------------------------
def _encodec(sample_rate: int, channels: int, num_levels: int, bandwidths: tuple[float, ...], *, causal: bool,
             norm: str) -> CodecConfig:
    stack = dict(channels=channels, dimension=128, n_filters=32, dilations=(1,), compress=2, true_skip=False,
                 activation="elu", norm=norm, causal=causal, pad_mode="reflect", lstm_layers=2)
    return CodecConfig(sample_rate=sample_rate, channels=channels, encoder=SEANetConfig(strides=(2, 4, 5, 8), **stack),
                       decoder=SEANetConfig(strides=(8, 5, 4, 2), **stack), quantizer="ema", num_levels=num_levels,
                       bandwidths=bandwidths, commitment_weight=1.0, ema_decay=0.99, kmeans_init=True,
                       kmeans_iters=50, dead_code_threshold=2.0, quantizer_dropout=1.0)


def _dac(sample_rate: int, strides: tuple[int, ...], num_levels: int, latent: int = 1024,
         dropout: float = 0.5) -> CodecConfig:
    common = dict(channels=1, dimension=latent, residual_kernel_size=7, dilations=(1, 3, 9), compress=1,
                  true_skip=True, activation="snake", norm="weight_norm", causal=False, pad_mode="constant",
                  lstm_layers=0, first_kernel_size=7)
    return CodecConfig(sample_rate=sample_rate, channels=1,
                       encoder=SEANetConfig(n_filters=64, strides=strides, last_kernel_size=3, **common),
                       decoder=SEANetConfig(n_filters=96, strides=tuple(reversed(strides)), last_kernel_size=7,
                                            final_activation="tanh", transpose_trim="symmetric", **common),
                       quantizer="factorized", num_levels=num_levels, codebook_dim=8, quantizer_dropout=dropout,
                       commitment_weight=0.25, codebook_weight=1.0, pad_to_hop=True)


@register_model(AudioCodec, paper="EnCodec 24 kHz", params_official=14_851_810,
                official_url="https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th")
def encodec_24khz() -> CodecConfig:
    return _encodec(24_000, 1, 32, (1.5, 3.0, 6.0, 12.0, 24.0), causal=True, norm="weight_norm")


@register_model(AudioCodec, paper="EnCodec 48 kHz (stereo)", params_official=14_856_294,
                official_url="https://dl.fbaipublicfiles.com/encodec/v0/encodec_48khz-7e698e3e.th")
def encodec_48khz() -> CodecConfig:
    return _encodec(48_000, 2, 16, (3.0, 6.0, 12.0, 24.0), causal=False, norm="time_group_norm")


@register_model(AudioCodec, paper="DAC 44.1 kHz (8 kbps)", params_official=76_651_890,
                official_url="https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth")
def dac_44khz() -> CodecConfig:
    return _dac(44_100, (2, 4, 8, 8), 9)


@register_model(AudioCodec, paper="DAC 44.1 kHz (16 kbps)", params_official=64_213_250,
                official_url="https://github.com/descriptinc/descript-audio-codec/releases/download/1.0.0/weights_44khz_16kbps.pth")
def dac_44khz_16kbps() -> CodecConfig:
    return _dac(44_100, (2, 4, 8, 8), 18, latent=128)


@register_model(AudioCodec, paper="DAC 24 kHz", params_official=74_708_706,
                official_url="https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.4/weights_24khz.pth")
def dac_24khz() -> CodecConfig:
    return _dac(24_000, (2, 4, 5, 8), 32)


@register_model(AudioCodec, paper="DAC 16 kHz", params_official=74_175_906,
                official_url="https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.5/weights_16khz.pth")
def dac_16khz() -> CodecConfig:
    return _dac(16_000, (2, 4, 5, 8), 12)


# CPU-sized codecs for tests, tutorials and the shipped demo checkpoint: 16 kHz speech, hop 320 (50 Hz).
@register_model(AudioCodec, paper=None)
def codec_nano_16khz() -> CodecConfig:
    """Causal and streamable (EnCodec-style codes): 8 levels x 1024 codes at 50 Hz = 0.5-4 kbps. Snake
    activations: on CPU-sized runs they learn speech markedly faster than ELU."""
    stack = dict(channels=1, dimension=64, n_filters=8, dilations=(1,), compress=2, true_skip=False,
                 activation="snake", norm="weight_norm", causal=True, pad_mode="constant", lstm_layers=1)
    return CodecConfig(sample_rate=16_000, channels=1, encoder=SEANetConfig(strides=(2, 4, 5, 8), **stack),
                       decoder=SEANetConfig(strides=(8, 5, 4, 2), **stack), quantizer="ema", num_levels=8,
                       codebook_size=1024, commitment_weight=1.0, ema_decay=0.95, kmeans_init=True, kmeans_iters=10,
                       dead_code_threshold=2.0, quantizer_dropout=1.0, pad_to_hop=True)


@register_model(AudioCodec, paper=None)
def dac_nano_16khz() -> CodecConfig:
    """Non-causal, Snake, factorized codes (DAC-style), 8 levels x 1024 codes at 50 Hz."""
    cfg = _dac(16_000, (2, 4, 5, 8), 8, latent=64)
    cfg.encoder.n_filters, cfg.decoder.n_filters = 8, 12
    cfg.encoder.dilations = cfg.decoder.dilations = (1, 3)
    cfg.decoder.transpose_trim = "centred"  # exactly frames * hop samples out (DAC's trim drops one per odd stride)
    return cfg


@register_model(AudioCodec, paper=None)
def codec_nano_16khz_32kbps() -> CodecConfig:
    """codec_nano_16khz's causal stack with a short hop (40 samples: 400 Hz frames) and 16 filters:
    8 levels x 1024 codes = 4-32 kbps. Learns intelligible speech on a CPU far sooner than hop 320."""
    stack = dict(channels=1, dimension=32, n_filters=16, dilations=(1,), compress=2, true_skip=False,
                 activation="snake", norm="weight_norm", causal=True, pad_mode="constant", lstm_layers=1)
    return CodecConfig(sample_rate=16_000, channels=1, encoder=SEANetConfig(strides=(2, 4, 5), **stack),
                       decoder=SEANetConfig(strides=(5, 4, 2), **stack), quantizer="ema", num_levels=8,
                       codebook_size=1024, commitment_weight=1.0, ema_decay=0.95, kmeans_init=True, kmeans_iters=10,
                       dead_code_threshold=2.0, quantizer_dropout=1.0, pad_to_hop=True)

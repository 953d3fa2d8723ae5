"""Audio files and waveform checks: soundfile I/O (wav/flac/ogg), channel handling, resampling.

Waveforms are float tensors (C, T) per file and (B, C, T) for models, in [-1, 1].
``torchaudio.load`` needs torchcodec, so files go through soundfile; resampling is
``torchaudio.functional.resample``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from zoo.errors import InputError
from zoo.io import atomic_path

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def load_audio(path: str | Path, sample_rate: int | None = None, channels: int | None = None,
               *, max_seconds: float | None = None) -> tuple[torch.Tensor, int]:
    """Read ``path`` -> (wav (C, T) float32, rate). ``sample_rate``: resample to it. ``channels``:
    1 averages a multi-channel file to mono, 2 duplicates a mono file; anything else must match."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True,
                           frames=-1 if max_seconds is None else int(max_seconds * sf.info(str(path)).samplerate))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError on bad files
        raise InputError(f"cannot read audio file {path} (truncated, corrupt or not a wav/flac/ogg file?): "
                         f"{type(e).__name__}: {e}") from None
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if wav.shape[-1] == 0:
        raise InputError(f"audio file {path} holds no samples")
    if not torch.isfinite(wav).all():
        raise InputError(f"audio file {path} holds NaN or Inf samples")
    if channels is not None:
        wav = to_channels(wav, channels, what=str(path))
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def to_channels(wav: torch.Tensor, channels: int, *, what: str = "audio") -> torch.Tensor:
    """(C, T) -> (channels, T): mono by channel mean, stereo by duplicating a mono signal."""
    if wav.shape[0] == channels:
        return wav
    if channels == 1:
        return wav.mean(0, keepdim=True)
    if wav.shape[0] == 1:
        return wav.expand(channels, -1).clone()
    raise InputError(f"{what} has {wav.shape[0]} channels; cannot turn that into {channels}")


def resample(wav: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``torchaudio.functional.resample`` along the last dim (float32)."""
    import torchaudio

    if orig == new:
        return wav
    return torchaudio.functional.resample(wav.float(), int(orig), int(new))


def save_audio(path: str | Path, wav: torch.Tensor, sample_rate: int) -> Path:
    """Write (C, T) or (T,) float audio as 16-bit PCM wav/flac (atomically); clips to [-1, 1]."""
    import soundfile as sf

    path = Path(path)
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2:
        raise InputError(f"save_audio takes (C, T) or (T,) audio, got shape {tuple(wav.shape)}")
    data = wav.detach().float().clamp(-1, 1).cpu().numpy().T
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"output audio must end in .wav, .flac or .ogg, got {path.name}")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, int(sample_rate), format=fmt, subtype="PCM_16" if fmt != "OGG" else None)
    return path


def check_waveform(wav: torch.Tensor, *, channels: int, sample_rate: int, given_rate: int | None,
                   min_samples: int) -> None:
    """Check model input: (B, channels, T) float, T >= ``min_samples``, finite; warn beyond [-1, 1].

    ``given_rate`` (the caller's sample rate) must equal ``sample_rate`` (resample first otherwise).
    Value checks run only for CPU tensors (no host sync on accelerators).
    """
    if not isinstance(wav, torch.Tensor):
        raise InputError(f"audio must be a torch.Tensor of shape (B, C, T), got {type(wav).__name__}")
    if wav.ndim != 3:
        hint = {1: " (use wav[None, None] for one mono signal)", 2: " (add a batch dim: wav[None])"}.get(wav.ndim, "")
        raise InputError(f"audio must have shape (B, C, T), got {tuple(wav.shape)}{hint}")
    if not wav.is_floating_point():
        raise InputError(f"audio must be float in [-1, 1], got dtype {wav.dtype} (int16 audio: divide by 32768)")
    if wav.shape[1] != channels:
        fix = "average the channels (wav.mean(1, keepdim=True))" if channels == 1 else \
            "duplicate a mono signal (wav.expand(-1, 2, -1))" if wav.shape[1] == 1 else "select the channels"
        raise InputError(f"this model takes {channels}-channel audio, got {wav.shape[1]} channels "
                         f"(shape {tuple(wav.shape)}); {fix}")
    if given_rate is not None and int(given_rate) != int(sample_rate):
        raise InputError(f"this model expects {sample_rate} Hz audio, got {given_rate} Hz; pass resample=True "
                         f"or resample first: torchaudio.functional.resample(wav, {given_rate}, {sample_rate})")
    if wav.shape[-1] < min_samples:
        what = "empty audio" if wav.shape[-1] == 0 else f"audio of {wav.shape[-1]} samples"
        raise InputError(f"{what} is too short: need at least {min_samples} samples "
                         f"({1000 * min_samples / sample_rate:.1f} ms at {sample_rate} Hz, one frame)")
    if wav.device.type == "cpu":
        if not torch.isfinite(wav).all():
            raise InputError("audio contains NaN or Inf samples")
        peak = float(wav.abs().max())
        if peak > 1.0 + 1e-4:
            log.warning("audio peaks at %.3g, beyond [-1, 1]: codecs are trained on [-1, 1] audio and will "
                        "distort it; normalize first (wav / wav.abs().max())", peak)


__all__ = ["AUDIO_EXTENSIONS", "check_waveform", "load_audio", "resample", "save_audio", "to_channels"]

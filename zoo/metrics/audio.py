"""Audio reconstruction metrics: mel distance, SI-SDR, STOI, PESQ (torchmetrics with pystoi / pesq), bitrate.

Signals are (T,) or (C, T) float tensors at ``sample_rate`` (channels are averaged to mono); every
function returns one float for one (reference, estimate) pair. The estimate is cut or zero-padded to
the reference's length first (codecs round lengths to whole frames).
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torchaudio

from zoo.errors import InputError

PESQ_RATE = 16_000  # wide-band PESQ runs at 16 kHz (P.862.2)


def as_mono(wav: torch.Tensor) -> torch.Tensor:
    """(T,), (C, T) or (1, C, T) -> (T,) float32 (channel mean)."""
    if wav.ndim == 3 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.ndim == 2:
        wav = wav.mean(0)
    if wav.ndim != 1:
        raise InputError(f"audio must have shape (T,), (C, T) or (1, C, T), got {tuple(wav.shape)}")
    return wav.float()


def match_length(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono versions of both, the estimate cut or zero-padded to the reference's length."""
    ref, est = as_mono(reference), as_mono(estimate).to(reference.device)
    if ref.numel() == 0:
        raise InputError("the reference signal is empty")
    if est.shape[0] >= ref.shape[0]:
        est = est[: ref.shape[0]]
    else:
        est = torch.nn.functional.pad(est, (0, ref.shape[0] - est.shape[0]))
    return ref, est


def log_mel(wav: torch.Tensor, sample_rate: int, *, n_fft: int = 1024, hop_length: int = 256,
            n_mels: int = 80) -> torch.Tensor:
    """(T,) -> (n_mels, frames) log10 mel magnitude spectrogram (floor 1e-5)."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                               n_mels=n_mels, power=1.0, f_min=0.0, f_max=sample_rate / 2,
                                               center=True).to(wav.device)
    return torch.log10(mel(as_mono(wav)).clamp_min(1e-5))


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, **mel_kwargs) -> float:
    """Mean absolute difference of the log10 mel spectrograms (80 mels, 1024-point FFT, hop 256)."""
    ref, est = match_length(reference, estimate)
    return float((log_mel(ref, sample_rate, **mel_kwargs) - log_mel(est, sample_rate, **mel_kwargs)).abs().mean())


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (torchmetrics, zero-mean)."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    ref, est = match_length(reference, estimate)
    return float(scale_invariant_signal_distortion_ratio(est.double(), ref.double(), zero_mean=True))


def stoi(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int, *, extended: bool = False) -> float:
    """Short-time objective intelligibility in [0, 1] (torchmetrics + pystoi; resamples to 10 kHz itself)."""
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    ref, est = match_length(reference, estimate)
    return float(short_time_objective_intelligibility(est.cpu(), ref.cpu(), sample_rate, extended=extended))


def pesq(reference: torch.Tensor, estimate: torch.Tensor, sample_rate: int) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0-4.6) at 16 kHz (torchmetrics + pesq); resamples first.

    Returns NaN when PESQ finds no speech in the reference (the pesq library's NoUtterancesError).
    """
    from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

    ref, est = match_length(reference, estimate)
    if sample_rate != PESQ_RATE:
        ref = torchaudio.functional.resample(ref.cpu(), sample_rate, PESQ_RATE)
        est = torchaudio.functional.resample(est.cpu(), sample_rate, PESQ_RATE)
    try:
        return float(perceptual_evaluation_speech_quality(est.cpu(), ref.cpu(), PESQ_RATE, "wb"))
    except Exception as e:  # pesq.NoUtterancesError / BufferTooShortError are plain Exceptions
        if type(e).__name__ in ("NoUtterancesError", "BufferTooShortError", "PesqError"):
            return float("nan")
        raise


def unavailable_metrics() -> dict[str, str]:
    """STOI / PESQ that cannot be computed here, each with why (their packages are optional extras)."""
    need = {"stoi": "pystoi", "pesq": "pesq"}
    return {metric: f"the {pkg} package is not installed (pip install {pkg}, or tokenizer-zoo[eval])"
            for metric, pkg in need.items() if importlib.util.find_spec(pkg) is None}


def bitrate_kbps(frame_rate: float, num_levels: int, vocab_size: int) -> float:
    """Bitrate of a token stream without entropy coding: frame_rate * levels * log2(vocab) / 1000."""
    if frame_rate <= 0 or num_levels < 1 or vocab_size < 1:
        raise InputError(f"bitrate needs frame_rate > 0, num_levels >= 1, vocab_size >= 1, got "
                         f"{frame_rate}, {num_levels}, {vocab_size}")
    return float(frame_rate * num_levels * math.log2(vocab_size) / 1000.0)

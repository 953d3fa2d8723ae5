"""Audio metrics on signals made here: mel distance, SI-SDR, STOI, PESQ, bitrate."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import InputError
from zoo.metrics.audio import bitrate_kbps, match_length, mel_distance, pesq, si_sdr, stoi

SR = 16_000


def speechlike(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    """Harmonics of a gliding 120-220 Hz pitch under a 4 Hz syllable envelope, with pauses: (T,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 120 + 100 * (0.5 + 0.5 * torch.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    voiced = sum(torch.sin(h * phase) / h for h in range(1, 12))
    env = torch.relu(torch.sin(2 * math.pi * 4 * t)) ** 2
    noise = 0.02 * torch.randn(t.shape, generator=g)
    return (0.3 * env * voiced + noise).float()


def with_noise(x: torch.Tensor, snr_db: float, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(x.shape, generator=g)
    n = n - n.mean()
    n = n * (x.pow(2).mean() / n.pow(2).mean() / 10 ** (snr_db / 10)).sqrt()
    return x + n, n


def test_si_sdr_equals_snr_for_added_noise():
    x = speechlike()
    x = x - x.mean()
    noisy, _ = with_noise(x, 10.0)
    assert si_sdr(x, noisy) == pytest.approx(10.0, abs=0.3)
    assert si_sdr(x, 0.25 * x) > 80  # scale-invariant


def test_mel_distance_grows_with_noise():
    x = speechlike()
    assert mel_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    d20, d0 = mel_distance(x, with_noise(x, 20)[0], SR), mel_distance(x, with_noise(x, 0)[0], SR)
    assert 0 < d20 < d0


def test_stoi_and_pesq_order():
    pytest.importorskip("pystoi")
    pytest.importorskip("pesq")
    x = speechlike(3.0)
    clean_stoi = stoi(x, x, SR)
    assert clean_stoi > 0.99
    assert stoi(x, with_noise(x, -5)[0], SR) < clean_stoi - 0.1
    clean_pesq = pesq(x, x, SR)
    assert clean_pesq > 4.0
    assert pesq(x, with_noise(x, 0)[0], SR) < clean_pesq - 1.0
    # 24 kHz input is resampled to 16 kHz for PESQ
    import torchaudio
    x24 = torchaudio.functional.resample(x, SR, 24_000)
    assert pesq(x24, x24, 24_000) > 4.0
    assert math.isnan(pesq(torch.zeros(SR * 2), torch.zeros(SR * 2), SR))  # no speech


def test_lengths_and_bitrate():
    ref, est = match_length(torch.ones(1, 100), torch.ones(1, 1, 90))
    assert ref.shape == est.shape == (100,) and est[90:].abs().sum() == 0
    ref, est = match_length(torch.ones(100), torch.ones(120))
    assert est.shape == (100,)
    with pytest.raises(InputError, match="shape"):
        match_length(torch.ones(2, 2, 2, 2), torch.ones(4))
    assert bitrate_kbps(75, 8, 1024) == pytest.approx(6.0)
    assert bitrate_kbps(50, 4, 256) == pytest.approx(1.6)
    with pytest.raises(InputError):
        bitrate_kbps(0, 1, 2)

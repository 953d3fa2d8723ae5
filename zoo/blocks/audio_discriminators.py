"""Audio discriminators for codec training, each returning per-sub-discriminator (logits, features).

- :class:`MultiPeriodDiscriminator` (HiFi-GAN, used by DAC and DM-Codec): the waveform folded into
  (T / p, p) for periods p, 2D convs along time.
- :class:`MultiScaleSTFTDiscriminator` (EnCodec): 2D convs over complex STFTs (real and imaginary
  parts as channels) at several FFT sizes.
- :class:`MultiBandSTFTDiscriminator` (DAC's "MRD"): STFT magnitudes split into frequency bands, each
  band through its own conv stack, outputs concatenated along frequency.

Every discriminator maps wav (B, C, T) -> list over sub-discriminators of (logits, [features]).
:func:`feature_matching_loss`, :func:`lsgan_d_loss`, :func:`lsgan_g_loss` work on those lists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from zoo.errors import ConfigError

DiscOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]


def _wn(module: nn.Module) -> nn.Module:
    return weight_norm(module)


class PeriodDiscriminator(nn.Module):
    """One period p: (B, C, T) -> (B, C, ceil(T/p), p) -> strided 2D convs (kernel (5, 1))."""

    def __init__(self, period: int, in_channels: int = 1, channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.period = period
        layers, ch = [], in_channels
        for i, out in enumerate(channels):
            stride = 3 if i < len(channels) - 1 else 1
            layers.append(_wn(nn.Conv2d(ch, out, (5, 1), (stride, 1), padding=(2, 0))))
            ch = out
        self.convs = nn.ModuleList(layers)
        self.conv_post = _wn(nn.Conv2d(ch, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = F.pad(wav, (0, (-wav.shape[-1]) % self.period), mode="reflect" if wav.shape[-1] > self.period else "constant")
        x = x.reshape(x.shape[0], x.shape[1], -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return x, feats


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), in_channels: int = 1,
                 channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, in_channels, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        return [d(wav) for d in self.discriminators]


def _stft(wav: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> complex (B, C, n_fft // 2 + 1, frames)."""
    b, c, t = wav.shape
    spec = torch.stft(wav.reshape(b * c, t), n_fft, hop, window=window, return_complex=True, center=True,
                      normalized=True)
    return spec.reshape(b, c, *spec.shape[-2:])


class STFTDiscriminator(nn.Module):
    """EnCodec-style: complex STFT (real, imag as 2C channels, (time, freq)) -> 2D convs with kernel (3, 9)."""

    def __init__(self, n_fft: int, hop: int, in_channels: int = 1, filters: int = 32,
                 dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [nn.Conv2d(2 * in_channels, filters, (3, 9), padding=(1, 4))]
        for d in dilations:
            layers.append(_wn(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        layers.append(_wn(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.conv_post = _wn(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = _stft(wav, self.n_fft, self.hop, self.window)
        x = torch.cat([z.real, z.imag], dim=1).transpose(2, 3)  # (B, 2C, frames, freq)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        x = self.conv_post(x)
        return x, feats


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: tuple[int, ...] = (1024, 2048, 512), in_channels: int = 1, filters: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, n // 4, in_channels, filters) for n in n_ffts)

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        return [d(wav) for d in self.discriminators]


class BandSTFTDiscriminator(nn.Module):
    """DAC-style: STFT magnitude split into frequency bands; each band through its own 2D convs."""

    BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))

    def __init__(self, n_fft: int, in_channels: int = 1, channels: int = 32):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        bins = n_fft // 2 + 1
        self.bands = [(int(lo * bins), int(hi * bins)) for lo, hi in self.BANDS]

        def stack() -> nn.ModuleList:
            return nn.ModuleList([
                _wn(nn.Conv2d(2 * in_channels, channels, (3, 9), padding=(1, 4))),
                _wn(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                _wn(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                _wn(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))),
                _wn(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)))])

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = _wn(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = _stft(wav, self.n_fft, self.hop, self.window)
        x = torch.cat([z.real, z.imag], dim=1).transpose(2, 3)  # (B, 2C, frames, freq)
        feats, outs = [], []
        for (lo, hi), convs in zip(self.bands, self.band_convs):
            h = x[..., lo:hi]
            for conv in convs:
                h = F.leaky_relu(conv(h), 0.1)
                feats.append(h)
            outs.append(h)
        x = self.conv_post(torch.cat(outs, dim=-1))
        feats.append(x)
        return x, feats


class MultiBandSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: tuple[int, ...] = (2048, 1024, 512), in_channels: int = 1, channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(BandSTFTDiscriminator(n, in_channels, channels) for n in n_ffts)

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        return [d(wav) for d in self.discriminators]


class CombinedDiscriminator(nn.Module):
    """Several discriminators behind one call: wav -> the concatenation of their outputs."""

    def __init__(self, discriminators: list[nn.Module]):
        super().__init__()
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        return [o for d in self.discriminators for o in d(wav)]


def build_discriminator(kinds: list[str], *, in_channels: int = 1, width: int = 32,
                        periods: tuple[int, ...] = (2, 3, 5, 7, 11)) -> CombinedDiscriminator:
    """``kinds`` from "mpd", "msstft", "mbstft"; ``width`` scales the channels (32 = the papers' STFT width)."""
    built = []
    for kind in kinds:
        if kind == "mpd":
            scale = width / 32
            chans = tuple(max(4, int(c * scale)) for c in (32, 128, 512, 1024, 1024))
            built.append(MultiPeriodDiscriminator(tuple(periods), in_channels, chans))
        elif kind == "msstft":
            built.append(MultiScaleSTFTDiscriminator(in_channels=in_channels, filters=width))
        elif kind == "mbstft":
            built.append(MultiBandSTFTDiscriminator(in_channels=in_channels, channels=width))
        else:
            raise ConfigError(f"unknown discriminator {kind!r}; choose from 'mpd', 'msstft', 'mbstft'")
    return CombinedDiscriminator(built)


def lsgan_d_loss(real: DiscOutput, fake: DiscOutput) -> torch.Tensor:
    """Least-squares GAN discriminator loss, summed over sub-discriminators."""
    return sum(((1 - r).pow(2).mean() + f.pow(2).mean()) for (r, _), (f, _) in zip(real, fake))


def lsgan_g_loss(fake: DiscOutput) -> torch.Tensor:
    return sum((1 - f).pow(2).mean() for f, _ in fake)


def feature_matching_loss(real: DiscOutput, fake: DiscOutput, *, relative: bool = False) -> torch.Tensor:
    """Mean L1 between the discriminator features of real and generated audio (``relative``: divided
    by the real features' mean magnitude, as EnCodec)."""
    total, n = 0.0, 0
    for (_, fr), (_, ff) in zip(real, fake):
        for a, b in zip(fr, ff):
            d = F.l1_loss(b, a.detach())
            if relative:
                d = d / a.detach().abs().mean().clamp_min(1e-8)
            total, n = total + d, n + 1
    return total / max(n, 1)


__all__ = ["BandSTFTDiscriminator", "CombinedDiscriminator", "MultiBandSTFTDiscriminator",
           "MultiPeriodDiscriminator", "MultiScaleSTFTDiscriminator", "PeriodDiscriminator", "STFTDiscriminator",
           "build_discriminator", "feature_matching_loss", "lsgan_d_loss", "lsgan_g_loss"]

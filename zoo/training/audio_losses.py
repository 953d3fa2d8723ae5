"""Losses for training audio codecs: multi-scale mel, waveform L1, and EnCodec's gradient balancer.

Adversarial and feature-matching losses live with the discriminators
(:mod:`zoo.blocks.audio_discriminators`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn


class MultiScaleMelLoss(nn.Module):
    """Sum over scales of L1(log10 mel(x̂), log10 mel(x)) (+ ``mag_weight`` x L1 of the mel magnitudes).

    DAC: windows (32, 64, ..., 2048) with (5, 10, ..., 320) mels; EnCodec / DM-Codec use 4-7 scales of
    64-2048. wav (B, C, T) x2 -> scalar.
    """

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048),
                 n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320), mag_weight: float = 1.0,
                 clamp: float = 1e-5):
        super().__init__()
        if len(windows) != len(n_mels):
            raise ValueError("windows and n_mels must have the same length")
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=w, win_length=w, hop_length=w // 4,
                                                 n_mels=m, power=1.0, center=True, f_min=0.0,
                                                 f_max=sample_rate / 2, norm="slaney", mel_scale="slaney")
            for w, m in zip(windows, n_mels))
        self.mag_weight, self.clamp = mag_weight, clamp

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        est, ref = estimate.reshape(-1, estimate.shape[-1]).float(), reference.reshape(-1, reference.shape[-1]).float()
        total = est.new_zeros(())
        for mel in self.mels:
            me, mr = mel(est), mel(ref)
            total = total + F.l1_loss(me.clamp_min(self.clamp).log10(), mr.clamp_min(self.clamp).log10())
            if self.mag_weight:
                total = total + self.mag_weight * F.l1_loss(me, mr)
        return total


def waveform_l1(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(estimate, reference)


class GradientBalancer:
    """EnCodec's loss balancer: each loss's gradient w.r.t. the model output is rescaled so that its
    norm is ``weight / sum(weights)`` of a reference norm (EMA of the gradient norms, decay ``ema_decay``),
    making the weights a share of the update independent of each loss's scale.

    Usage: ``balancer.backward({"mel": l1, "adv": l2}, output)`` then ``output``'s producers have
    their gradients (call instead of ``loss.backward()`` for these losses; others back-propagate
    normally, e.g. the quantizer's commitment loss).
    """

    def __init__(self, weights: dict[str, float], *, total_norm: float = 1.0, ema_decay: float = 0.999,
                 epsilon: float = 1e-12):
        self.weights, self.total_norm, self.decay, self.eps = dict(weights), total_norm, ema_decay, epsilon
        self.avg: dict[str, torch.Tensor] = {}
        self.count: dict[str, float] = {}

    def gradient(self, losses: dict[str, torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        """The balanced gradient w.r.t. ``output`` (to pass to ``output.backward``)."""
        grads, norms = {}, {}
        for name, loss in losses.items():
            (g,) = torch.autograd.grad(loss, [output], retain_graph=True)
            grads[name] = g
            norm = g.norm().detach()
            self.count[name] = self.decay * self.count.get(name, 0.0) + 1.0
            self.avg[name] = self.decay * self.avg.get(name, torch.zeros_like(norm)) + norm
            norms[name] = self.avg[name] / self.count[name]
        total_weight = sum(self.weights.get(n, 1.0) for n in losses)
        out = torch.zeros_like(output)
        for name, g in grads.items():
            scale = self.weights.get(name, 1.0) / total_weight * self.total_norm / (norms[name] + self.eps)
            out = out + scale * g
        return out

    def backward(self, losses: dict[str, torch.Tensor], output: torch.Tensor) -> None:
        output.backward(self.gradient(losses, output), retain_graph=True)


__all__ = ["GradientBalancer", "MultiScaleMelLoss", "waveform_l1"]

"""Rectified-flow utilities: noising, targets, time sampling, Euler sampler with (norm-)guidance.

Convention (minRF / FlexTok): ``x_t = t * noise + (1 - t) * x0`` with t in [0, 1] (t = 1 is pure
noise); the model predicts the velocity ``v = noise - x0``; sampling integrates from t = 1 to 0 with
Euler steps ``x <- x - dt * v``.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch

from zoo.errors import InputError

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Guidance = Union[float, Callable[[float], float]]


def logit_normal_t(batch: int, *, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """(batch,) times t = sigmoid(N(mean, std^2)) (SD3's logit-normal sampling)."""
    z = torch.randn(batch, generator=generator, device=device)
    return torch.sigmoid(z * std + mean)


def uniform_t(batch: int, *, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """(batch,) times t ~ U(0, 1)."""
    return torch.rand(batch, generator=generator, device=device)


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = t * noise + (1 - t) * x0; t (B,), x0/noise (B, ...)."""
    t = _expand(t, x0)
    return t * noise + (1.0 - t) * x0


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The rectified-flow regression target v = noise - x0 (d x_t / d t)."""
    return noise - x0


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One-step estimate of x0 from x_t and a predicted velocity: x_t - t * v."""
    return x_t - _expand(t, x_t) * v


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


class MomentumBuffer:
    """Running ``average <- update + momentum * average`` used by :func:`normalized_guidance`."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.running_average: torch.Tensor | float = 0.0

    def update(self, value: torch.Tensor) -> None:
        self.running_average = value + self.momentum * self.running_average


def normalized_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float, buffer: MomentumBuffer | None = None,
                        eta: float = 0.0, norm_threshold: float = 2.5) -> torch.Tensor:
    """Adaptive projected guidance (APG, arXiv 2410.02416) per sample over its last three dims (C, H, W):
    the guidance difference gets momentum, its norm is capped at ``norm_threshold``, and only its
    component orthogonal to ``cond`` (plus ``eta`` times the parallel one) is added, scaled by ``scale - 1``."""
    dims = [-1, -2, -3]
    diff = cond - uncond
    if buffer is not None:
        buffer.update(diff)
        diff = buffer.running_average
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), norm_threshold / norm)
    d64, c64 = diff.double(), torch.nn.functional.normalize(cond.double(), dim=dims)
    parallel = (d64 * c64).sum(dim=dims, keepdim=True) * c64
    orthogonal = (d64 - parallel).to(diff.dtype)
    return cond + (scale - 1) * (orthogonal + eta * parallel.to(diff.dtype))


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps (Euler steps of the flow sampler) must be an int >= 1, got {steps!r}")
    return steps


@torch.no_grad()
def euler_sample(velocity: VelocityFn, noise: torch.Tensor, steps: int, *, guidance: Guidance = 1.0,
                 uncond_velocity: VelocityFn | None = None, norm_guidance: bool = False, momentum: float = -0.5,
                 eta: float = 0.0, norm_threshold: float = 2.5) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 1 (``noise``, (B, ...)) to t = 0 with ``steps`` Euler steps.

    ``velocity(x, t)`` with t (B,) returns v; with ``guidance`` != 1 (a float, or a function of t)
    ``uncond_velocity`` (the null-condition prediction) is required and mixed in by classifier-free
    guidance, or by APG (:func:`normalized_guidance`, the FlexTok default) when ``norm_guidance``.
    """
    check_steps(steps)
    guided = callable(guidance) or float(guidance) != 1.0
    if guided and uncond_velocity is None:
        raise InputError(f"guidance scale {guidance!r} needs a null condition (an unconditional velocity); "
                         "this model/call has none, so use guidance=1.0")
    if not callable(guidance) and not math.isfinite(float(guidance)):
        raise InputError(f"guidance must be a finite number, got {guidance!r}")
    buffer = MomentumBuffer(momentum) if norm_guidance else None
    x, dt = noise, 1.0 / steps
    for i in range(steps, 0, -1):
        t_value = i / steps
        t = torch.full((x.shape[0],), t_value, device=x.device, dtype=torch.float32)
        v = velocity(x, t)
        if guided:
            scale = guidance(t_value) if callable(guidance) else float(guidance)
            v_u = uncond_velocity(x, t)
            v = (normalized_guidance(v, v_u, scale, buffer, eta, norm_threshold) if norm_guidance
                 else classifier_free_guidance(v, v_u, scale))
        x = x - dt * v
    return x

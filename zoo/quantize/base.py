"""The quantizer interface every tokenizer in the zoo ends in.

A quantizer maps latents ``x: (B, N, D)`` to ``(quantized, ids, aux)``:

- ``quantized``: (B, N, D) float, the straight-through quantized latents;
- ``ids``: (B, N) int64 (or (B, N, L) for residual quantizers with L levels);
- ``aux``: :class:`QuantizerAux` with the weighted loss to add to the training objective, its
  named parts (commitment, codebook, entropy, ...) and usage statistics (usage, perplexity).

and maps ids back to vectors with :meth:`Quantizer.ids_to_vectors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from zoo.errors import CheckpointError, ConfigError, InputError
from zoo.validation import check_ids


#: eval lookup backends of every quantizer config; "library" runs vector-quantize-pytorch's own forward
LOOKUP_BACKENDS = ("auto", "torch", "triton", "library")


def check_lookup_backend(value: str) -> None:
    """Config check shared by every quantizer: ``value`` must be one of :data:`LOOKUP_BACKENDS`."""
    if value not in LOOKUP_BACKENDS:
        raise ConfigError(f"lookup_backend must be one of {LOOKUP_BACKENDS}, got {value!r}")


def kernel_backend(lookup_backend: str) -> str:
    """The kernel dispatch backend of a config's ``lookup_backend`` ("library" leaves it on "auto")."""
    return "auto" if lookup_backend == "library" else lookup_backend


@dataclass
class QuantizerAux:
    """Side outputs of a quantizer call.

    loss: scalar, the weighted sum of the quantizer's losses (0 in eval).
    losses: named unweighted parts of ``loss`` (e.g. ``commitment``, ``entropy``).
    stats: named detached scalars for logging (``usage``, ``perplexity``, per-level figures).
    """

    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class QuantizerOutput(NamedTuple):
    """``quantized`` (B, N, D), ``ids`` (B, N) or (B, N, L) int64, ``aux``."""

    quantized: torch.Tensor
    ids: torch.Tensor
    aux: QuantizerAux


class UsageTracker(nn.Module):
    """Counts code use over a sliding window of recent calls to spot codebook collapse.

    ``usage`` is the fraction of codes hit at least once in the last ``window`` calls (per level),
    ``perplexity`` is exp(entropy) of the code histogram of the current batch (per level).
    The counts are not part of the state dict: they describe a run, not the model.
    """

    def __init__(self, codebook_size: int, num_levels: int = 1, window: int = 100):
        super().__init__()
        self.codebook_size = codebook_size
        self.num_levels = num_levels
        self.window = window
        # ring buffer of per-call histograms: (window, L, K) would be large; keep "last seen" steps instead
        self.register_buffer("last_seen", torch.full((num_levels, codebook_size), -1, dtype=torch.long),
                             persistent=False)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long), persistent=False)

    @torch.no_grad()
    def update(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """ids: (B, N) or (B, N, L) int64. Returns detached ``usage``/``perplexity`` (+ ``_l{i}`` per level)."""
        flat = ids.reshape(-1, ids.shape[-1]) if ids.ndim == 3 else ids.reshape(-1, 1)
        stats: dict[str, torch.Tensor] = {}
        usages, perps = [], []
        for level in range(flat.shape[1]):
            col = flat[:, level]
            col = col[col >= 0]  # -1 marks a residual level dropped by quantizer dropout
            if col.numel() == 0 and flat.shape[1] > 1:
                continue
            counts = torch.bincount(col, minlength=self.codebook_size).float()
            if self.training:
                self.last_seen[level][counts > 0] = self.calls
            probs = counts / counts.sum().clamp_min(1)
            perp = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
            if self.training:
                usage = ((self.last_seen[level] >= 0) & (self.last_seen[level] > self.calls - self.window)).float().mean()
            else:
                usage = (counts > 0).float().mean()
            usages.append(usage)
            perps.append(perp)
            if flat.shape[1] > 1:
                stats[f"usage_l{level}"] = usage
                stats[f"perplexity_l{level}"] = perp
        if self.training:
            self.calls += 1
        stats["usage"] = torch.stack(usages).mean()
        stats["perplexity"] = torch.stack(perps).mean()
        return stats


class Quantizer(nn.Module):
    """Base class: subclasses implement :meth:`quantize` and :meth:`ids_to_vectors`.

    Attributes: ``dim`` (D of the latents), ``codebook_size`` (K, ids are in [0, K)),
    ``num_levels`` (1, or L for residual quantizers).
    """

    dim: int
    codebook_size: int
    num_levels: int = 1

    def __init__(self, dim: int, codebook_size: int, num_levels: int = 1, usage_window: int = 100):
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.num_levels = num_levels
        self.usage = UsageTracker(codebook_size, num_levels, usage_window)
        self._register_shape_check()

    def describe(self) -> str:
        """Short summary of the shape-defining options, for error messages."""
        return f"dim={self.dim}, codebook_size={self.codebook_size}, num_levels={self.num_levels}"

    @property
    def bits_per_token(self) -> float:
        """Bits one token carries: log2(K) per level."""
        return self.num_levels * math.log2(self.codebook_size)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """x: (B, N, D) float -> (quantized (B, N, D), ids, aux)."""
        self.check_latents(x)
        quantized, ids, aux = self.quantize(x)
        aux.stats.update(self.usage.update(ids))
        return QuantizerOutput(quantized, ids, aux)

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """ids: (B, N) (or (B, N, L)) int64 in [0, K) -> (B, N, D) vectors, as ``quantized`` in eval."""
        raise NotImplementedError

    # -- checks shared by every quantizer ---------------------------------------------------------
    def check_latents(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{type(self).__name__} expects latents of shape (B, N, {self.dim}), got {shape}")
        if not x.is_floating_point():
            raise InputError(f"{type(self).__name__} expects float latents, got dtype {x.dtype}")
        if not torch.isfinite(x).all():
            raise InputError(f"{type(self).__name__} got latents with NaN or Inf values")

    def check_ids(self, ids: torch.Tensor) -> None:
        check_ids(ids, self.codebook_size, None, levels=self.num_levels if self.num_levels > 1 else None)
        if self.num_levels > 1 and ids.shape[2] == 0:
            raise InputError(f"ids must have at least one residual level, got shape {tuple(ids.shape)}")

    # -- clear errors when a checkpoint does not fit ----------------------------------------------
    def _register_shape_check(self) -> None:
        self._register_load_state_dict_pre_hook(_check_state_shapes, with_module=True)


def _check_state_shapes(module: "Quantizer", state_dict, prefix, local_metadata, strict, missing_keys,
                        unexpected_keys, error_msgs) -> None:
    """Raise :class:`CheckpointError` naming the tensor and both shapes instead of torch's size-mismatch list."""
    for name, tensor in module.state_dict().items():
        key = prefix + name
        if key in state_dict and isinstance(state_dict[key], torch.Tensor) \
                and tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint tensor {key!r} has shape {tuple(state_dict[key].shape)} but this "
                f"{type(module).__name__} expects {tuple(tensor.shape)} ({module.describe()}); "
                "the checkpoint was made for a quantizer with a different codebook size, dimension or level count")


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(())

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

from zoo.errors import CheckpointError, InputError
from zoo.quantize.checks import LOOKUP_BACKENDS, check_lookup_backend  # noqa: F401 (re-exported)
from zoo.validation import check_finite, check_ids


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
    #: (L, K) code histogram of this call when the quantizer's kernel counted it (None: counted from the ids)
    counts: torch.Tensor | None = None


class QuantizerOutput(NamedTuple):
    """``quantized`` (B, N, D), ``ids`` (B, N) or (B, N, L) int64, ``aux``."""

    quantized: torch.Tensor
    ids: torch.Tensor
    aux: QuantizerAux


def code_counts(ids: torch.Tensor, codebook_size: int, *, keep_invalid: bool = False) -> torch.Tensor:
    """Histogram of ids per level, on the ids' device without a host sync: (B, N) or (B, N, L) -> (L, K) float32.

    Ids outside [0, K) are not counted: -1 marks a residual level dropped by quantizer dropout (and
    latents that were not value-checked, e.g. NaN on a GPU, must not crash the statistics).
    ``keep_invalid``: return (L, K + 1), the last column counting those ids.
    """
    flat = ids.reshape(-1, ids.shape[-1]) if ids.ndim == 3 else ids.reshape(-1, 1)
    levels = flat.shape[1]
    bins = codebook_size + 1  # one spare bin per level takes the uncounted ids, dropped below
    flat = torch.where((flat >= 0) & (flat < codebook_size), flat, codebook_size)
    if levels > 1:
        flat = flat + torch.arange(levels, device=ids.device) * bins
    flat = flat.reshape(-1)
    if ids.device.type == "cpu":  # bincount reads max() on the host: fine on a CPU, a sync on a GPU
        counts = torch.bincount(flat, minlength=levels * bins).float()
    else:
        counts = torch.zeros(levels * bins, dtype=torch.float32, device=ids.device)
        counts.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
    return counts.view(levels, bins)[:, : bins if keep_invalid else codebook_size]


class UsageTracker(nn.Module):
    """Counts code use over a sliding window of recent calls to spot codebook collapse.

    ``usage`` is the fraction of codes hit at least once in the last ``window`` calls (per level),
    ``perplexity`` is exp(entropy) of the code histogram of the current batch (per level); both
    are averaged over the levels that saw any id in this call (all levels when none did).
    Everything stays on the device (histograms by bincount/index_add, no masks, no ``.item()``).
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
    def update(self, ids: torch.Tensor, counts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """ids: (B, N) or (B, N, L) int64; counts: their (L, K) histogram if already made (e.g. by a kernel).

        Returns detached ``usage``/``perplexity`` (+ ``usage_l{i}``/``perplexity_l{i}`` per level).
        """
        if counts is None:
            counts = code_counts(ids, self.codebook_size)
        counts = counts.float()
        levels = counts.shape[0]
        total = counts.sum(-1, keepdim=True)
        probs = counts / total.clamp_min(1)
        perp = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum(-1))
        if self.training:
            seen = self.last_seen[:levels]
            seen.copy_(torch.where(counts > 0, self.calls, seen))
            usage = ((seen >= 0) & (seen > self.calls - self.window)).float().mean(-1)
            self.calls += 1
        else:
            usage = (counts > 0).float().mean(-1)
        stats: dict[str, torch.Tensor] = {}
        if levels > 1:
            for level in range(levels):
                stats[f"usage_l{level}"] = usage[level]
                stats[f"perplexity_l{level}"] = perp[level]
        # mean over the levels that got ids (a level dropped by quantizer dropout has none), or all
        active = total[:, 0] > 0
        weight = torch.where(active.any(), active, torch.ones_like(active)).float()
        stats["usage"] = (usage * weight).sum() / weight.sum()
        stats["perplexity"] = (perp * weight).sum() / weight.sum()
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
        """x: (B, N, D) float -> (quantized (B, N, D) in x's dtype, ids, aux).

        Latents of another float dtype than the quantizer's parameters (e.g. bf16 latents into an
        fp32 projection) are computed in the parameters' dtype. No host sync on a GPU.
        """
        self.check_latents(x)
        dtype = self.compute_dtype()
        if x.shape[0] * x.shape[1] == 0:  # nothing to quantize (the library would average over nothing: NaN)
            quantized, ids, aux = self._empty(x)
        else:
            quantized, ids, aux = self.quantize(x if dtype is None or x.dtype == dtype else x.to(dtype))
        aux.stats.update(self.usage.update(ids, aux.counts))
        return QuantizerOutput(quantized.to(x.dtype), ids, aux)

    def _empty(self, x: torch.Tensor) -> QuantizerOutput:
        """An empty batch: empty outputs, a zero loss that is still part of the graph."""
        ids_shape = tuple(x.shape[:2]) + ((self.num_levels,) if self.num_levels > 1 else ())
        ids = torch.zeros(ids_shape, dtype=torch.long, device=x.device)
        return QuantizerOutput(x * 0, ids, QuantizerAux(loss=x.sum() * 0))

    def compute_dtype(self) -> torch.dtype | None:
        """dtype of the quantizer's float parameters (projections, learnable codes), None without any."""
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return None

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
        check_finite(x, f"{type(self).__name__} got latents with NaN or Inf values")  # CPU only by default: no GPU sync

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

"""Residual VQ with factorized, l2-normalized codes and a learned codebook per level (DAC style).

Each level projects the residual (B, N, D) to a small code space (``codebook_dim``, 8 in DAC) with a
weight-normed 1x1 projection, looks up the nearest code after l2-normalizing both the input and the
codebook, and projects the (unnormalized) code back. Codes are learned by gradient: codebook loss
||sg(z_e) - z_q||² plus commitment ||z_e - sg(z_q)||². Quantizer dropout gives a random number of
levels to a ``quantizer_dropout`` fraction of the batch items, so any prefix of levels decodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.kernels.layers import NearestCode
from zoo.quantize.base import Quantizer, QuantizerAux, QuantizerOutput, check_lookup_backend, kernel_backend


@dataclass
class FactorizedRVQConfig:
    """dim: D of the latents. codebook_size: K per level. num_levels: L. codebook_dim: the code space.
    quantizer_dropout: fraction of batch items trained with a random level count in [1, L] (0 = off).
    commitment_weight / codebook_weight: the two loss weights (DAC: 0.25 and 1)."""

    dim: int
    codebook_size: int = 1024
    num_levels: int = 9
    codebook_dim: int = 8
    quantizer_dropout: float = 0.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    lookup_backend: str = "auto"
    usage_window: int = 100

    def __post_init__(self):
        if min(self.dim, self.codebook_size, self.num_levels, self.codebook_dim) < 1:
            raise ConfigError("dim, codebook_size, num_levels and codebook_dim must be >= 1")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ConfigError(f"quantizer_dropout is a fraction in [0, 1], got {self.quantizer_dropout}")
        check_lookup_backend(self.lookup_backend)


class WNProjection(nn.Module):
    """A weight-normed 1x1 conv over channels: (B, Cin, N) -> (B, Cout, N); weight_v (Cout, Cin, 1)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        ref = nn.Conv1d(in_dim, out_dim, 1)
        self.weight_v = nn.Parameter(ref.weight.detach().clone())
        self.weight_g = nn.Parameter(ref.weight.detach().flatten(1).norm(dim=1).reshape(-1, 1, 1))
        self.bias = nn.Parameter(ref.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, torch._weight_norm(self.weight_v, self.weight_g, 0), self.bias)


class FactorizedCodebook(nn.Module):
    """One level: in_proj (D -> d), ``codebook`` Embedding(K, d), out_proj (d -> D). Channel-first (B, D, N)."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = WNProjection(dim, codebook_dim)
        self.out_proj = WNProjection(codebook_dim, dim)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def lookup(self, z_e: torch.Tensor, nearest: NearestCode) -> tuple[torch.Tensor, torch.Tensor]:
        """z_e (B, d, N) -> ids (B, N), codes (B, d, N) (the raw, unnormalized code vectors)."""
        enc = F.normalize(z_e.transpose(1, 2).float(), dim=-1)
        ids, _ = nearest(enc, F.normalize(self.codebook.weight.float(), dim=-1), "euclidean")
        return ids, self.codebook(ids).transpose(1, 2).to(z_e.dtype)

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, N) -> (B, D, N)."""
        return self.out_proj(self.codebook(ids).transpose(1, 2))


class FactorizedResidualVQ(Quantizer):
    """x (B, N, D) -> quantized (B, N, D), ids (B, N, L) int64 in [0, K)."""

    def __init__(self, config: FactorizedRVQConfig):
        super().__init__(config.dim, config.codebook_size, num_levels=config.num_levels,
                         usage_window=config.usage_window)
        self.config = config
        self.quantizers = nn.ModuleList(FactorizedCodebook(config.dim, config.codebook_size, config.codebook_dim)
                                        for _ in range(config.num_levels))
        self.nearest = NearestCode(kernel_backend(config.lookup_backend))

    def describe(self) -> str:
        c = self.config
        return (f"dim={c.dim}, codebook_size={c.codebook_size}, num_levels={c.num_levels}, "
                f"codebook_dim={c.codebook_dim}")

    def _levels_per_item(self, batch: int, device: torch.device) -> torch.Tensor:
        n = torch.full((batch,), self.num_levels, device=device)
        if self.training and self.config.quantizer_dropout > 0:
            drop = int(batch * self.config.quantizer_dropout)
            n[:drop] = torch.randint(1, self.num_levels + 1, (drop,), device=device)
        return n

    def quantize(self, x: torch.Tensor) -> QuantizerOutput:
        residual = x.transpose(1, 2)  # (B, D, N)
        out = torch.zeros_like(residual)
        levels = self._levels_per_item(x.shape[0], x.device)
        commit, codebook, ids = [], [], []
        for i, level in enumerate(self.quantizers):
            z_e = level.in_proj(residual)
            idx, z_q = level.lookup(z_e, self.nearest)
            keep = (i < levels).to(x.dtype)
            commit.append((F.mse_loss(z_e, z_q.detach(), reduction="none").mean((1, 2)) * keep).mean())
            codebook.append((F.mse_loss(z_q, z_e.detach(), reduction="none").mean((1, 2)) * keep).mean())
            z_q = level.out_proj(z_e + (z_q - z_e).detach())
            out = out + z_q * keep[:, None, None]
            residual = residual - z_q
            ids.append(idx)
        commit_t, codebook_t = torch.stack(commit), torch.stack(codebook)
        c = self.config
        loss = (c.commitment_weight * commit_t.sum() + c.codebook_weight * codebook_t.sum()) if self.training \
            else x.new_zeros(())
        losses = {"commitment": commit_t.detach().sum(), "codebook": codebook_t.detach().sum()}
        return QuantizerOutput(out.transpose(1, 2), torch.stack(ids, dim=-1), QuantizerAux(loss=loss, losses=losses))

    def ids_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N, L') for any 1 <= L' <= L (a prefix of the levels) -> (B, N, D)."""
        self.check_ids(ids)
        out = None
        for i in range(ids.shape[-1]):
            z = self.quantizers[i].decode_ids(ids[..., i])
            out = z if out is None else out + z
        return out.transpose(1, 2)


__all__ = ["FactorizedCodebook", "FactorizedRVQConfig", "FactorizedResidualVQ", "WNProjection"]

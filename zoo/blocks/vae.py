"""Latent spaces for latent generative decoders: pixels, or an SD/SDXL-style KL autoencoder.

:class:`SDVAE` wraps diffusers' ``AutoencoderKL`` (the well-kept implementation of the Stable
Diffusion VAE: 4 blocks of [128, 256, 512, 512] channels, x8 down). diffusers is an optional
dependency (``pip install "tokenizer-zoo[flextok]"``), imported only when such a VAE is built.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from zoo.errors import ConfigError

#: AutoencoderKL layout of the SD/SDXL VAE (FlexTok's VAEs differ only in ``latent_channels``).
SD_VAE_LAYOUT = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
}


class PixelSpace(nn.Module):
    """The identity latent space: images [0, 1] <-> latents [-1, 1] (3 channels, no downsampling)."""

    channels = 3
    downsample = 1

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents + 1.0) / 2.0


def _autoencoder_kl():
    try:
        from diffusers.models import AutoencoderKL
    except ImportError:
        raise ConfigError("this model works in the latent space of an SD-style VAE, which needs diffusers: "
                          "pip install 'diffusers>=0.30' (or the extra: pip install 'tokenizer-zoo[flextok]'); "
                          "the pixel-space variants (e.g. flextok_nano) need nothing extra") from None
    return AutoencoderKL


class SDVAE(nn.Module):
    """images [0, 1] (B, 3, H, W) <-> latents (B, C, H/8, W/8), scaled by ``scaling_factor``.

    Encoding takes the posterior mode (deterministic ids; FlexTok's training sampled the posterior).
    The VAE is frozen: its parameters never require grad and it always runs in eval mode.
    """

    downsample = 8

    def __init__(self, latent_channels: int = 16, scaling_factor: float = 0.18215):
        super().__init__()
        self.vae = _autoencoder_kl().from_config({**SD_VAE_LAYOUT, "latent_channels": latent_channels,
                                                  "scaling_factor": scaling_factor})
        self.channels = latent_channels
        self.scaling_factor = scaling_factor
        self.requires_grad_(False)
        self.vae.eval()

    def train(self, mode: bool = True) -> "SDVAE":
        return super().train(False)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images * 2.0 - 1.0).latent_dist.mode() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return (self.vae.decode(latents / self.scaling_factor).sample + 1.0) / 2.0


@functools.lru_cache(maxsize=None)
def sd_vae_parameter_count(latent_channels: int = 16) -> int | None:
    """Parameters of :class:`SDVAE` (83,821,011 at 16 channels), or None without diffusers."""
    try:
        with torch.device("meta"):  # count without allocating or initialising
            return sum(p.numel() for p in SDVAE(latent_channels).parameters())
    except ConfigError:
        return None

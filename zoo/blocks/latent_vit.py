"""ViT encoder and decoder over a grid of patches plus learnable 1D latent tokens (TiTok style).

The encoder reads ``grid*grid`` patch tokens and ``num_latent`` latent tokens with one transformer
and keeps only the latent tokens: images become a 1D sequence of ``num_latent`` vectors. The decoder
reads (a prefix of) those latents plus ``grid*grid`` mask tokens and keeps the mask tokens, which
a head turns into pixels (or proxy-code logits). One-D-Piece, FlexTok and SEED reuse both.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce, repeat
from torch import nn
from torch.nn import functional as F

from zoo.blocks.attention import Transformer
from zoo.blocks.patch import PatchEmbed, unpatchify


class LatentTokenEncoder(nn.Module):
    """images (B, 3, H, W) + latent tokens (N, width) -> latents (B, N, out_dim).

    The latent token embeddings themselves are owned by the model (``latent_tokens`` in TiTok) and
    passed in, so that variants can share or extend them.

    ``grid_seeded``: latent token i also starts from the embedding of patch ``i // (num_latent / grid²)``
    (each patch seeds ``num_latent / grid²`` consecutive tokens). The paper's latents start from learned
    constants only and must first learn which patches to read, a long plateau on small budgets; seeded
    latents start local and the transformer still mixes them globally.
    """

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, num_heads: int,
                 num_latent: int, out_dim: int, mlp_ratio: float = 4.0, legacy_layout: bool = False,
                 grid_seeded: bool = False):
        super().__init__()
        self.grid_seeded = grid_seeded
        self.legacy_layout = legacy_layout
        self.grid = image_size // patch_size
        self.width = width
        self.num_latent = num_latent
        scale = width ** -0.5
        self.patch_embed = PatchEmbed(3, width, patch_size)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio)
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, out_dim, kernel_size=1)  # a per-token linear map, conv for key parity

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W); latent_tokens: (N, width) -> (B, N, out_dim)."""
        b = images.shape[0]
        x = self.patch_embed(images)  # (B, grid², width)
        cls = repeat(self.class_embedding, "1 d -> b 1 d", b=b)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        latents = repeat(latent_tokens + self.latent_token_positional_embedding, "n d -> b n d", b=b)
        if self.grid_seeded:
            latents = latents + torch.repeat_interleave(x[:, 1:], self.num_latent // self.grid ** 2, dim=1)
        x = self.ln_pre(torch.cat([x, latents], dim=1))
        x = self.transformer(x)
        latents = self.ln_post(x[:, 1 + self.grid ** 2:])  # (B, N, width)
        if self.legacy_layout:
            # The official TiTok checkpoints built without ``is_legacy: False`` (every two-stage
            # variant, and One-D-Piece) feed the 1x1 conv a plain *reshape* of (B, N, width) to
            # (B, width, N, 1), which scrambles tokens and channels. Their weights were trained
            # with it, so it is kept here behind a flag.
            latents = self.conv_out(latents.reshape(b, self.width, self.num_latent, 1))
        else:
            latents = self.conv_out(rearrange(latents, "b n d -> b d n 1"))
        return rearrange(latents, "b d n 1 -> b n d")


class LatentTokenDecoder(nn.Module):
    """latents (B, n, in_dim) with n <= num_latent -> feature map (B, out_channels, H', W').

    head="pixel": a 1x1 conv to patch pixels, unpatchified, then a 3x3 conv: (B, 3, H, W).
    head="proxy": a 1x1 conv MLP to ``proxy_codes`` logits per patch: (B, proxy_codes, grid, grid),
    which a pixel decoder turns into an image (TiTok's two-stage design).
    head="conv": a 1x1 conv to ``conv_channels`` features per pixel, unpatchified, then
    :class:`ConvRefiner` (3x3 residual conv blocks at full resolution): (B, 3, H, W). The convolutions
    see across patch borders, so the output has no patch grid.
    """

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, num_heads: int,
                 num_latent: int, in_dim: int, head: str = "pixel", proxy_codes: int = 1024,
                 mlp_ratio: float = 4.0, conv_channels: int = 32, conv_blocks: int = 2,
                 grid_seeded: bool = False):
        super().__init__()
        self.grid_seeded = grid_seeded
        if head not in ("pixel", "proxy", "conv"):
            raise ValueError(f"decoder head must be 'pixel', 'proxy' or 'conv', got {head!r}")
        self.grid = image_size // patch_size
        self.patch_size = patch_size
        self.num_latent = num_latent
        self.head = head
        scale = width ** -0.5
        self.decoder_embed = nn.Linear(in_dim, width)
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, depth, num_heads, mlp_ratio)
        self.ln_post = nn.LayerNorm(width)
        if head == "pixel":
            self.ffn = nn.Sequential(nn.Conv2d(width, patch_size * patch_size * 3, kernel_size=1))
            self.conv_out = nn.Conv2d(3, 3, kernel_size=3, padding=1)
        elif head == "conv":
            self.ffn = nn.Sequential(nn.Conv2d(width, patch_size * patch_size * conv_channels, kernel_size=1))
            self.conv_out = ConvRefiner(conv_channels, conv_blocks)
        else:
            self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, kernel_size=1), nn.Tanh(),
                                     nn.Conv2d(2 * width, proxy_codes, kernel_size=1))
            self.conv_out = nn.Identity()

    def forward(self, latents: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """latents: (B, n, in_dim), n <= num_latent (a prefix of the token sequence).

        lengths: optional (B,) int, 1 <= lengths[b] <= n: sample b reads only its first lengths[b]
        latents (the tail is masked out as attention keys), which equals decoding
        ``latents[b:b+1, :lengths[b]]`` alone, so one batch can mix prefix lengths.
        """
        b, n, _ = latents.shape
        x = self.decoder_embed(latents) + self.latent_token_positional_embedding[:n]
        masks = repeat(self.mask_token, "1 1 d -> b g d", b=b, g=self.grid ** 2)
        cls = repeat(self.class_embedding, "1 d -> b 1 d", b=b)
        dropped = None if lengths is None else self.tail_mask(lengths, n)  # (B, L)
        if self.grid_seeded:
            # patch j's mask token also starts from the mean of the latents patch j seeded (absent
            # ones, beyond a shorter prefix or a sample's length, count as zeros)
            seeds = x if dropped is None else x * ~dropped[:, -n:, None]
            masks = masks + reduce(F.pad(seeds, (0, 0, 0, self.num_latent - n)), "b (g k) d -> b g d", "mean",
                                   g=self.grid ** 2)
        masks = torch.cat([cls, masks], dim=1) + self.positional_embedding
        x = self.ln_pre(torch.cat([masks, x], dim=1))
        x = self.transformer(x, key_padding_mask=dropped)
        x = self.ln_post(x[:, 1:1 + self.grid ** 2])
        x = rearrange(x, "b (h w) d -> b d h w", h=self.grid, w=self.grid)
        x = self.ffn(x)
        if self.head != "proxy":
            x = unpatchify(x, self.patch_size, x.shape[1] // self.patch_size ** 2)
        return self.conv_out(x)

    def tail_mask(self, lengths: torch.Tensor, n: int) -> torch.Tensor:
        """(B,) prefix lengths -> (B, L) bool key padding mask, True where a key is a dropped latent
        (position >= lengths[b] among the n latents); L = 1 + grid² + n. Attention broadcasts it over
        heads and queries (no (B * heads, L, L) mask is built)."""
        prefix = 1 + self.grid ** 2
        positions = torch.arange(prefix + n, device=lengths.device)
        return positions[None, :] >= prefix + lengths.to(torch.long)[:, None]


class ConvRefiner(nn.Module):
    """(B, C, H, W) per-pixel features -> (B, 3, H, W): ``blocks`` residual (GroupNorm, SiLU, 3x3 conv)
    x2 blocks at full resolution, then a 3x3 conv to RGB."""

    def __init__(self, channels: int, blocks: int = 2):
        super().__init__()
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
                          nn.GroupNorm(groups, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1))
            for _ in range(blocks))
        self.norm_out = nn.GroupNorm(groups, channels)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.conv_out(nn.functional.silu(self.norm_out(x)))

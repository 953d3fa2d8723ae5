"""TiTok: "An Image is Worth 32 Tokens for Reconstruction and Generation" (Yu et al., 2024).

A ViT encoder reads the image patches together with N learnable latent tokens and keeps only the
latents, which are projected to a 12-d (or 64-d) space and vector-quantized with l2-normalized
codes: the image becomes N token ids. A ViT decoder reads the quantized latents plus mask tokens
for every patch. Two decoder heads exist:

- ``decoder_head="proxy"`` (the two-stage variants titok_s_128 / b_64 / l_32): the decoder
  predicts, per 16x16 patch, logits over the 1024 codes of a MaskGIT-VQGAN; their softmax weighs
  the VQGAN codebook (1024x256) and the VQGAN's convolutional decoder renders pixels.
- ``decoder_head="pixel"`` (the single-stage variants titok_*_vq8k and titok_nano_*): the decoder
  predicts pixels directly.
- ``decoder_head="conv"`` (titok_micro_128_fsq): the decoder predicts per-pixel features that a few
  3x3 residual convolutions turn into pixels, so reconstructions show no patch grid.

Tokens are VQ codes (``quantizer="vq"``, the paper's) or FSQ codes (``quantizer="fsq"``: no codebook
to collapse, ``prod(fsq_levels)`` ids; ``token_dim`` must equal ``len(fsq_levels)``).

Parameter names match the official checkpoints (see ``zoo.convert.titok``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch import nn

from zoo.config import CheckedConfig, Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Range
from zoo.blocks import ConvPixelDecoder, LatentTokenDecoder, LatentTokenEncoder
from zoo.models.base import ImageTokenizer
from zoo.quantize import FLEXTOK_LEVELS, Quantizer, VectorQuantizer, VQConfig, make_quantizer
from zoo.quantize.checks import check_levels
from zoo.registry import register_model

# ViT sizes (width, depth, heads) as in the paper (Table 6 / official configs).
VIT_SIZES = {
    "nano": (128, 2, 4),
    "small": (512, 8, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


@dataclass
class TiTokConfig(CheckedConfig):
    """Every size of a TiTok model. Widths/depths/heads default to ViT-S. Checked on construction
    (types, ranges, heads dividing widths): a bad value raises :class:`zoo.errors.ConfigError`."""

    image_size: PositiveInt = 256
    patch_size: PositiveInt = 16
    num_tokens: PositiveInt = 32
    encoder_width: PositiveInt = 512
    encoder_depth: PositiveInt = 8
    encoder_heads: PositiveInt = 8
    decoder_width: PositiveInt = 512
    decoder_depth: PositiveInt = 8
    decoder_heads: PositiveInt = 8
    mlp_ratio: PositiveFloat = 4.0
    codebook_size: Annotated[int, Range(ge=2)] = 4096
    token_dim: PositiveInt = 12
    use_cosine: bool = True
    commitment_weight: NonNegativeFloat = 0.25
    ema_decay: Fraction = 0.8
    kmeans_init: bool = False
    dead_code_threshold: NonNegativeFloat = 0.0
    rotation_trick: bool = False
    # "pixel" (single stage) or "proxy" (two stage, MaskGIT-VQGAN decoder)
    decoder_head: Literal["pixel", "proxy", "conv"] = "pixel"
    conv_channels: PositiveInt = 32    # decoder_head="conv": features per pixel
    conv_blocks: PositiveInt = 2       # decoder_head="conv": residual 3x3 conv blocks
    # latents start from their patches (see zoo.blocks.LatentTokenEncoder); needs num_tokens a
    # multiple of (image_size / patch_size)²
    grid_seeded: bool = False
    quantizer: Literal["vq", "fsq"] = "vq"
    fsq_levels: tuple[int, ...] = FLEXTOK_LEVELS  # quantizer="fsq": levels per token channel
    proxy_codes: PositiveInt = 1024
    proxy_dim: PositiveInt = 256
    # True for official weights trained with the legacy encoder layout (a reshape, not a permute,
    # before the 1x1 token projection): the two-stage TiTok checkpoints and One-D-Piece.
    legacy_layout: bool = False

    def check(self) -> None:
        self.require(self.image_size % self.patch_size == 0, "image_size",
                     f"a multiple of patch_size ({self.patch_size})")
        for part in ("encoder", "decoder"):
            width, heads = getattr(self, f"{part}_width"), getattr(self, f"{part}_heads")
            self.require(width % heads == 0, f"{part}_heads", f"a divisor of {part}_width ({width})",
                         f"e.g. {part}_heads={max(h for h in range(1, min(width, heads) + 1) if width % h == 0)}")
        self.require(self.decoder_head != "proxy" or self.patch_size == 16, "patch_size",
                     "16 with decoder_head='proxy' (the proxy head renders a 16x upsampled grid)")
        grid2 = (self.image_size // self.patch_size) ** 2
        self.require(not self.grid_seeded or self.num_tokens % grid2 == 0, "num_tokens",
                     f"a multiple of the {grid2} patches with grid_seeded=True")
        if self.quantizer == "fsq":
            check_levels(type(self).__name__, self.fsq_levels, 3, name="fsq_levels")
            self.require(self.token_dim == len(self.fsq_levels), "token_dim",
                         f"len(fsq_levels) = {len(self.fsq_levels)} with quantizer='fsq'")


class TiTok(ImageTokenizer):
    """images (B, 3, H, W) in [0, 1] <-> ids (B, num_tokens) in [0, codebook_size)."""

    family = "titok"
    config_class = TiTokConfig

    def __init__(self, config: TiTokConfig, name: str | None = None):
        super().__init__(config, name)
        c = config
        self.latent_tokens = nn.Parameter(c.encoder_width ** -0.5 * torch.randn(c.num_tokens, c.encoder_width))
        self.encoder = LatentTokenEncoder(c.image_size, c.patch_size, c.encoder_width, c.encoder_depth,
                                          c.encoder_heads, c.num_tokens, c.token_dim, c.mlp_ratio,
                                          legacy_layout=c.legacy_layout, grid_seeded=c.grid_seeded)
        if c.quantizer == "fsq":
            self.quantize: Quantizer = make_quantizer("fsq", levels=tuple(c.fsq_levels))
        else:
            self.quantize = VectorQuantizer(VQConfig(dim=c.token_dim, codebook_size=c.codebook_size,
                                                     use_cosine=c.use_cosine, commitment_weight=c.commitment_weight,
                                                     ema_decay=c.ema_decay, kmeans_init=c.kmeans_init,
                                                     dead_code_threshold=c.dead_code_threshold,
                                                     rotation_trick=c.rotation_trick))
        self.decoder = LatentTokenDecoder(c.image_size, c.patch_size, c.decoder_width, c.decoder_depth,
                                          c.decoder_heads, c.num_tokens, c.token_dim, head=c.decoder_head,
                                          proxy_codes=c.proxy_codes, mlp_ratio=c.mlp_ratio,
                                          conv_channels=c.conv_channels, conv_blocks=c.conv_blocks,
                                          grid_seeded=c.grid_seeded)
        if c.decoder_head == "proxy":
            self.pixel_quantize = nn.Embedding(c.proxy_codes, c.proxy_dim)
            self.pixel_decoder = ConvPixelDecoder(z_channels=c.proxy_dim)

    @property
    def quantizer(self) -> Quantizer:
        return self.quantize

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def card_note(self) -> str:
        """The model card's paragraph on design choices that differ from the paper's TiTok."""
        c, parts = self.config, []
        if c.quantizer == "fsq":
            parts.append(f"Tokens are FSQ codes (levels {list(c.fsq_levels)}, {self.vocab_size:,} ids; no codebook "
                         "to learn or collapse) instead of the paper's VQ codes.")
        if c.grid_seeded:
            k = c.num_tokens // (c.image_size // c.patch_size) ** 2
            parts.append(f"Grid-seeded latents (not in the paper): each {c.patch_size}x{c.patch_size} patch's "
                         f"embedding is added to {k} consecutive latent tokens, and each decoder patch query starts "
                         "from its tokens' mean; the transformers still mix globally. This removes the long "
                         "initial plateau of learned-constant latents on small training budgets, at the price of "
                         "tokens tied more closely to image regions than the paper's.")
        if c.decoder_head == "conv":
            parts.append(f"The decoder ends in a convolutional head ({c.conv_channels} features per pixel, "
                         f"{c.conv_blocks} residual 3x3 block(s)), so reconstructions show no patch grid.")
        return " ".join(parts)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images, self.latent_tokens)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.decoder(latents)
        if self.config.decoder_head == "proxy":
            # (B, 1024, 16, 16) logits -> expected VQGAN code vector per position -> pixels
            x = torch.einsum("bchw,cd->bdhw", x.softmax(dim=1), self.pixel_quantize.weight)
            x = self.pixel_decoder(x)
        return x


def _titok(encoder: str, decoder: str, **kwargs) -> TiTokConfig:
    ew, ed, eh = VIT_SIZES[encoder]
    dw, dd, dh = VIT_SIZES[decoder]
    return TiTokConfig(encoder_width=ew, encoder_depth=ed, encoder_heads=eh,
                       decoder_width=dw, decoder_depth=dd, decoder_heads=dh, **kwargs)


# -- named variants: numbers only ---------------------------------------------------------------
# Two-stage variants of the paper: 4096 codes of dim 12, MaskGIT-VQGAN pixel decoder.
@register_model(TiTok, paper="TiTok-S-128", params_official=83_674_639, pixel_decoder=True,
                official_repo="yucornetto/tokenizer_titok_s128_imagenet")
def titok_s_128() -> TiTokConfig:
    return _titok("small", "small", num_tokens=128, decoder_head="proxy", legacy_layout=True)


@register_model(TiTok, paper="TiTok-B-64", params_official=204_814_095, pixel_decoder=True,
                official_repo="yucornetto/tokenizer_titok_b64_imagenet")
def titok_b_64() -> TiTokConfig:
    return _titok("base", "base", num_tokens=64, decoder_head="proxy", legacy_layout=True)


@register_model(TiTok, paper="TiTok-L-32", params_official=641_054_735, pixel_decoder=True,
                official_repo="yucornetto/tokenizer_titok_l32_imagenet")
def titok_l_32() -> TiTokConfig:
    return _titok("large", "large", num_tokens=32, decoder_head="proxy", legacy_layout=True)


# Single-stage variants (official "vq8k" configs): 8192 Euclidean codes of dim 64 (use_l2_norm: False
# upstream), ViT-L decoder, pixel head.
@register_model(TiTok, paper="TiTok-BL-64-VQ8k", params_official=390_016_148, pixel_decoder=False,
                official_repo="yucornetto/tokenizer_titok_bl64_vq8k_imagenet")
def titok_bl64_vq8k() -> TiTokConfig:
    return _titok("base", "large", num_tokens=64, codebook_size=8192, token_dim=64,
                  use_cosine=False)


@register_model(TiTok, paper="TiTok-BL-128-VQ8k", params_official=390_179_988, pixel_decoder=False,
                official_repo="yucornetto/tokenizer_titok_bl128_vq8k_imagenet")
def titok_bl128_vq8k() -> TiTokConfig:
    return _titok("base", "large", num_tokens=128, codebook_size=8192, token_dim=64,
                  use_cosine=False)


@register_model(TiTok, paper="TiTok-SL-256-VQ8k", params_official=330_260_884, pixel_decoder=False,
                official_repo="yucornetto/tokenizer_titok_sl256_vq8k_imagenet")
def titok_sl256_vq8k() -> TiTokConfig:
    return _titok("small", "large", num_tokens=256, codebook_size=8192, token_dim=64,
                  use_cosine=False)


# A CPU-sized variant for tests, tutorials and smoke runs: 64x64 images, 32 tokens. Dead-code
# restart keeps short runs from collapsing onto one code per token position.
@register_model(TiTok, paper=None)
def titok_nano_32() -> TiTokConfig:
    return _titok("nano", "nano", image_size=64, patch_size=8, num_tokens=32,
                  codebook_size=1024, dead_code_threshold=2.0)


# The bundled default image tokenizer (checkpoints/titok_micro_128_fsq): 64x64 images, 128 tokens of
# FSQ [8,8,8,5,5,5] = 64,000 ids (~16 bits each), grid-seeded latents (2 per 8x8 patch), a
# convolutional pixel head. Trains on a CPU: unseeded, it sat at the per-image mean colour (12.5 dB)
# for 900+ steps; seeded, it passed 17 dB within 400.
@register_model(TiTok, paper=None)
def titok_micro_128_fsq() -> TiTokConfig:
    return TiTokConfig(image_size=64, patch_size=8, num_tokens=128, encoder_width=128, encoder_depth=3,
                       encoder_heads=4, decoder_width=128, decoder_depth=3, decoder_heads=4, quantizer="fsq",
                       token_dim=6, fsq_levels=FLEXTOK_LEVELS, decoder_head="conv", conv_channels=16,
                       conv_blocks=1, grid_seeded=True)

"""Shared building blocks: transformer blocks, patch embedding, latent-token ViTs, pixel decoders."""

from zoo.blocks.attention import ResidualAttentionBlock, Transformer
from zoo.blocks.latent_vit import LatentTokenDecoder, LatentTokenEncoder
from zoo.blocks.patch import PatchEmbed, unpatchify
from zoo.blocks.pixel_decoder import ConvPixelDecoder

__all__ = ["ResidualAttentionBlock", "Transformer", "LatentTokenEncoder", "LatentTokenDecoder",
           "PatchEmbed", "unpatchify", "ConvPixelDecoder"]

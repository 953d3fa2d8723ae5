"""SEED: "Planting a SEED of Vision in Large Language Model" / SEED-LLaMA (Ge et al., 2023).

A frozen vision backbone gives patch features; a causal Q-Former with 32 learned queries reads them
(query i sees only queries <= i), so the 32 query embeddings form a left-to-right sequence an LLM can
read and write. Linear-Tanh-Linear maps each to 32 dims and a VQ with 8,192 Euclidean codes gives
32 ids per image. The de-tokenizer maps codes back to 768 dims and feeds two 4-block ViT heads:

- ``blocks`` (+ ``pos_embed``): reconstructs the causal Q-Former embeddings (stage-2 target);
- ``blocks_image`` (+ ``pos_embed_image``) then ``image_down`` and ``distill_image_proj``: the
  1024-d **generation embedding** (officially aligned to the unCLIP SD-2.1 image embedding), and,
  ours, a pixel decoder (the zoo's latent-token ViT decoder) over the same 32 features, so
  ``decode(ids)`` returns an image without any diffusion model.

Parameter names follow the released ``seed_quantizer.pt`` (see ``zoo.convert.seed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks import LatentTokenDecoder, Transformer
from zoo.blocks.backbones import build_backbone, set_layernorm_eps
from zoo.blocks.qformer import CausalQFormer
from zoo.errors import ConfigError, InputError
from zoo.models.base import ImageTokenizer, TokenizerOutput, _frozen
from zoo.quantize import QuantizerAux, VectorQuantizer, VQConfig
from zoo.registry import register_model
from zoo.validation import check_ids, check_images

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class SEEDConfig:
    """Every size of a SEED tokenizer (defaults: SEED-2 with BLIP-2's EVA-CLIP ViT-g/14 layout)."""

    image_size: int = 224
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    # backbone: "vit" (the zoo's ViT, EVA layout), "torchvision:<name>", "timm:<name>" or "none"
    backbone: str = "vit"
    backbone_pretrained: bool = False
    backbone_width: int = 1408
    backbone_depth: int = 39
    backbone_heads: int = 16
    backbone_patch_size: int = 14
    backbone_mlp_ratio: float = 4.3637
    freeze_backbone: bool = True
    num_queries: int = 32
    qformer_width: int = 768
    qformer_depth: int = 12
    qformer_heads: int = 12
    qformer_mlp_dim: int = 3072
    cross_attention_freq: int = 2
    causal: bool = True
    codebook_size: int = 8192
    code_dim: int = 32
    vq_beta: float = 0.25
    decoder_depth: int = 4
    decoder_heads: int = 12
    decoder_mlp_ratio: float = 4.0
    image_down_dims: tuple[int, ...] = (256, 128, 32)
    generation_dim: int = 1024
    # ours: a pixel decoder over the de-tokenized features (0 depth: none)
    pixel_width: int = 256
    pixel_depth: int = 4
    pixel_heads: int = 8
    pixel_patch_size: int = 16

    def __post_init__(self) -> None:
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        self.image_down_dims = tuple(int(d) for d in self.image_down_dims)
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError("image_mean and image_std need 3 values (RGB)")
        if not self.image_down_dims:
            raise ConfigError("image_down_dims needs at least one width")
        for name in ("num_queries", "qformer_width", "codebook_size", "code_dim", "generation_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", field=name)
        if self.pixel_depth and self.image_size % self.pixel_patch_size:
            raise ConfigError(f"image_size {self.image_size} must be a multiple of pixel_patch_size "
                              f"{self.pixel_patch_size}", field="pixel_patch_size")


def _mlp(dims: list[int], act: type[nn.Module], bias: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers += [nn.Linear(a, b, bias=bias)] + ([act()] if i < len(dims) - 2 else [])
    return nn.Sequential(*layers)


def _vit_head(width: int, depth: int, heads: int, mlp_ratio: float) -> Transformer:
    # the official de-tokenizer's timm-style blocks use LayerNorm eps 1e-6
    return set_layernorm_eps(Transformer(width, depth, heads, mlp_ratio), 1e-6)


class SEED(ImageTokenizer):
    """images (B, 3, S, S) in [0, 1] <-> 32 causal ids (B, 32) in [0, 8192); ids -> 1024-d embedding."""

    family = "seed"
    config_class = SEEDConfig

    def __init__(self, config: SEEDConfig, name: str | None = None):
        super().__init__(config, name)
        c = config
        w, n = c.qformer_width, c.num_queries
        self.visual_encoder = build_backbone(c.backbone, image_size=c.image_size, width=c.backbone_width,
                                             depth=c.backbone_depth, num_heads=c.backbone_heads,
                                             patch_size=c.backbone_patch_size, mlp_ratio=c.backbone_mlp_ratio,
                                             pretrained=c.backbone_pretrained)
        self.register_buffer("image_mean", torch.tensor(c.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(c.image_std).view(1, 3, 1, 1), persistent=False)
        self.ln_vision = nn.LayerNorm(c.backbone_width)
        self.query_tokens = nn.Parameter(0.02 * torch.randn(1, n, w))
        self.qformer = CausalQFormer(w, c.qformer_depth, c.qformer_heads, c.qformer_mlp_dim, c.backbone_width,
                                     c.cross_attention_freq, c.causal)
        self.encode_task_layer = _mlp([w, w, c.code_dim], nn.Tanh)
        self.quantize = VectorQuantizer(VQConfig(dim=c.code_dim, codebook_size=c.codebook_size, use_cosine=False,
                                                 learnable_codebook=True, commitment_weight=c.vq_beta))
        with torch.no_grad():  # the official init: uniform(-1/K, 1/K)
            self.quantize.codebook.uniform_(-1.0 / c.codebook_size, 1.0 / c.codebook_size)
        self.decode_task_layer = _mlp([c.code_dim, c.code_dim, w], nn.Tanh)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, w))
        self.blocks = _vit_head(w, c.decoder_depth, c.decoder_heads, c.decoder_mlp_ratio)
        self.pos_embed_image = nn.Parameter(torch.zeros(1, n, w))
        self.blocks_image = _vit_head(w, c.decoder_depth, c.decoder_heads, c.decoder_mlp_ratio)
        self.image_down = _mlp([w, *c.image_down_dims], nn.ReLU, bias=False)
        self.distill_image_proj = nn.Linear(n * c.image_down_dims[-1], c.generation_dim)
        self.pixel_decoder = (LatentTokenDecoder(c.image_size, c.pixel_patch_size, c.pixel_width, c.pixel_depth,
                                                 c.pixel_heads, n, w) if c.pixel_depth else None)
        if self.visual_encoder is not None and c.freeze_backbone:
            self.visual_encoder.requires_grad_(False)

    # -- the contract ---------------------------------------------------------------------------
    @property
    def quantizer(self) -> VectorQuantizer:
        return self.quantize

    @property
    def num_tokens(self) -> int:
        return self.config.num_queries

    @property
    def generation_dim(self) -> int:
        return self.config.generation_dim

    def train(self, mode: bool = True) -> "SEED":
        super().train(mode)
        if self.visual_encoder is not None and self.config.freeze_backbone:
            self.visual_encoder.eval()  # a frozen backbone stays in eval mode (as upstream)
        return self

    # -- encoder path ---------------------------------------------------------------------------
    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) in [0, 1] -> backbone tokens (B, L, backbone_width) (before ``ln_vision``)."""
        if self.visual_encoder is None:
            raise ConfigError(f"{self.name} has no backbone (backbone='none'): call encode_features(features) "
                              "with backbone features, or build it with backbone='vit'/'torchvision:...'/'timm:...'")
        x = (images - self.image_mean) / self.image_std
        if self.config.freeze_backbone:
            with torch.no_grad():
                return self.visual_encoder(x)
        return self.visual_encoder(x)

    def causal_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """backbone features (B, L, backbone_width) -> causal query embeddings (B, num_queries, width)."""
        if features.ndim != 3 or features.shape[-1] != self.config.backbone_width:
            raise InputError(f"backbone features must be (B, L, {self.config.backbone_width}), got "
                             f"{tuple(features.shape)}: the backbone's feature width does not match the config")
        feats = self.ln_vision(features)
        return self.qformer(self.query_tokens.expand(feats.shape[0], -1, -1), feats)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) -> pre-quantization latents (B, num_queries, code_dim)."""
        return self.encode_task_layer(self.causal_embeddings(self.backbone_features(images)))

    @torch.no_grad()
    def encode_features(self, features: torch.Tensor) -> torch.Tensor:
        """backbone features (B, L, backbone_width) -> ids (B, num_queries), for backbone-free use."""
        with _frozen(self.quantizer):
            return self.quantizer(self.encode_task_layer(self.causal_embeddings(features))).ids

    def quantize_st(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, QuantizerAux]:
        """SEED's VQ (upstream ``VectorQuantizer2``, legacy loss): nearest Euclidean code, straight-through,
        loss = |sg(e) - z|² + beta |e - sg(z)|², codes learned by gradient. latents (B, N, D) ->
        (quantized (B, N, D), ids (B, N), aux)."""
        with _frozen(self.quantizer):
            _, ids, lookup = self.quantizer(latents.detach())
        codes = self.quantizer.codebook[ids]
        commitment = F.mse_loss(latents, codes.detach())
        codebook = F.mse_loss(codes, latents.detach())
        aux = QuantizerAux(loss=commitment + self.config.vq_beta * codebook,
                           losses={"commitment": commitment.detach(), "codebook": codebook.detach()},
                           stats=lookup.stats)
        return latents + (codes - latents).detach(), ids, aux

    # -- de-tokenizer ---------------------------------------------------------------------------
    def detokenize(self, quantized: torch.Tensor) -> torch.Tensor:
        """code vectors (B, N, code_dim) -> (B, N, width)."""
        return self.decode_task_layer(quantized)

    def reconstruct_causal(self, up: torch.Tensor) -> torch.Tensor:
        """(B, N, width) -> reconstruction of the causal Q-Former embeddings (B, N, width)."""
        return self.blocks(up + self.pos_embed)

    def image_features(self, up: torch.Tensor) -> torch.Tensor:
        """(B, N, width) -> the image branch's features (B, N, width)."""
        return self.blocks_image(up + self.pos_embed_image)

    def generation_embedding(self, image_features: torch.Tensor) -> torch.Tensor:
        """image-branch features (B, N, width) -> generation embedding (B, generation_dim)."""
        return self.distill_image_proj(self.image_down(image_features).flatten(1))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """quantized code vectors (B, N, code_dim) -> images (B, 3, S, S), unclamped."""
        if self.pixel_decoder is None:
            raise ConfigError(f"{self.name} has no pixel decoder (pixel_depth=0): use decode_embedding(ids)")
        return self.pixel_decoder(self.image_features(self.detokenize(latents)))

    @torch.no_grad()
    def decode_embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, num_queries) in [0, vocab_size) -> generation embedding (B, generation_dim) (the unCLIP
        image embedding for official weights)."""
        check_ids(ids, self.vocab_size, self.num_tokens)
        ids = ids.to(device=self._device(), dtype=torch.long)
        return self.generation_embedding(self.image_features(self.detokenize(self.quantizer.ids_to_vectors(ids))))

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """images -> pixel reconstruction, ids, VQ losses (needs the pixel decoder); ``extras`` holds
        ``causal`` (target), ``causal_recon`` and ``generation`` (B, generation_dim)."""
        check_images(images, self.input_size)
        causal = self.causal_embeddings(self.backbone_features(images))
        quantized, ids, aux = self.quantize_st(self.encode_task_layer(causal))
        up = self.detokenize(quantized)
        feats = self.image_features(up)
        if self.pixel_decoder is None:
            raise ConfigError(f"{self.name} has no pixel decoder (pixel_depth=0), so forward has no reconstruction; "
                              "use causal_embeddings / quantize_st / decode_embedding")
        recon = self.pixel_decoder(feats)
        extras = {"causal": causal, "causal_recon": self.reconstruct_causal(up),
                  "generation": self.generation_embedding(feats)}
        return TokenizerOutput(recon, ids, aux, extras)

    @property
    def card_note(self) -> str:
        """Model-card paragraph: what the parameter count covers."""
        p = self.part_parameters()
        return (f"Parameters by part: backbone {p['backbone']:,} (incl. ln_vision), causal Q-Former {p['qformer']:,}, "
                f"tokenizer (encode_task_layer + codebook) {p['tokenizer']:,}, de-tokenizer {p['detokenizer']:,}, "
                f"pixel decoder (ours, stage 3) {p['pixel_decoder']:,}. Official counts cover everything but the "
                "backbone and the pixel decoder. `decode_embedding(ids)` gives the generation embedding "
                "(unCLIP image embedding for official weights).")

    def part_parameters(self) -> dict[str, int]:
        """Parameter counts per part (backbone, qformer, tokenizer, detokenizer, pixel_decoder)."""
        parts = {"backbone": ("visual_encoder", "ln_vision"), "qformer": ("qformer", "query_tokens"),
                 "tokenizer": ("encode_task_layer", "quantize"), "pixel_decoder": ("pixel_decoder",)}
        out = dict.fromkeys([*parts, "detokenizer"], 0)
        for name, p in self.named_parameters():
            top = name.split(".")[0]
            out[next((k for k, v in parts.items() if top in v), "detokenizer")] += p.numel()
        return out


# -- named variants: numbers only ---------------------------------------------------------------
# SEED-2 (AILab-CVC/seed-tokenizer-2): 164,101,696 parameters without the ViT (incl. a 512-entry
# position_ids buffer ours does not keep), 58,938,944 trained in stage 2. The backbone is BLIP-2's
# EVA-CLIP ViT-g/14 layout (985.9M, weights not downloadable by the zoo: convert them).
@register_model(SEED, paper="SEED-2 (SEED-LLaMA tokenizer)", params_official=164_101_696,
                params_official_stage2=58_938_944, pixel_decoder=True)
def seed_2() -> SEEDConfig:
    return SEEDConfig()


# A CPU-sized SEED: 64x64 images, the zoo's small ViT backbone, 32 causal tokens, 1024 codes.
@register_model(SEED, paper=None)
def seed_nano() -> SEEDConfig:
    return SEEDConfig(image_size=64, backbone_width=128, backbone_depth=2, backbone_heads=4, backbone_patch_size=8,
                      backbone_mlp_ratio=4.0, qformer_width=128, qformer_depth=2, qformer_heads=4, qformer_mlp_dim=256,
                      codebook_size=1024, code_dim=16, decoder_depth=1, decoder_heads=4, image_down_dims=(32, 8),
                      generation_dim=128, pixel_width=128, pixel_depth=2, pixel_heads=4, pixel_patch_size=8)

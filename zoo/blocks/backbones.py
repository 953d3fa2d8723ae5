"""Frozen vision backbones that return patch features, behind one spec string.

``build_backbone(spec, ...)`` returns an ``nn.Module`` mapping normalized images (B, 3, H, W) to
token features (B, L, width) (class token first where the model has one), with a ``width`` attribute:

- ``"vit"``: the zoo's own ViT (:class:`ViTBackbone`, CLIP/EVA layout: patch embed, class token,
  absolute positions, pre-norm blocks, no final norm). With width 1408, depth 39, 16 heads, patch 14,
  mlp ratio 4.3637 it is BLIP-2's EVA-CLIP ViT-g/14 as SEED uses it, and official weights convert
  onto it (``zoo.convert.seed``). No CLIP/EVA weights can be had offline.
- ``"torchvision:<name>"``: a torchvision ViT (``vit_b_16``, ...); ``pretrained`` loads its default
  ImageNet weights through torchvision (needs internet the first time).
- ``"timm:<name>"``: any timm model with ``forward_features`` returning tokens (timm is optional).
- ``"none"``: no backbone; the model is fed features directly.
"""

from __future__ import annotations

import torch
from einops import repeat
from torch import nn

from zoo.blocks.attention import Transformer
from zoo.blocks.patch import PatchEmbed
from zoo.errors import ConfigError


def set_layernorm_eps(module: nn.Module, eps: float) -> nn.Module:
    """Set every LayerNorm's eps in ``module`` (timm/EVA-layout blocks use 1e-6); returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps
    return module


class ViTBackbone(nn.Module):
    """images (B, 3, S, S) -> tokens (B, 1 + (S/p)², width), class token first."""

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"backbone image size {image_size} is not a multiple of its patch size {patch_size}")
        self.width = width
        grid = image_size // patch_size
        self.patch_embed = PatchEmbed(3, width, patch_size)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, grid * grid + 1, width))
        self.blocks = set_layernorm_eps(Transformer(width, depth, num_heads, mlp_ratio), eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        x = torch.cat([repeat(self.cls_token, "1 1 d -> b 1 d", b=x.shape[0]), x], dim=1) + self.pos_embed
        return self.blocks(x)


class TorchvisionViT(nn.Module):
    """A torchvision ``VisionTransformer``'s encoder output (B, 1 + grid², hidden_dim)."""

    def __init__(self, name: str, pretrained: bool):
        super().__init__()
        import torchvision

        try:
            self.model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None)
        except Exception as e:  # unknown name, or weights that cannot be downloaded
            raise ConfigError(f"cannot build torchvision backbone {name!r} (pretrained={pretrained}): {e}") from None
        if not hasattr(self.model, "_process_input") or not hasattr(self.model, "encoder"):
            raise ConfigError(f"torchvision model {name!r} is not a VisionTransformer; use a vit_* model")
        self.model.heads = nn.Identity()
        self.width = int(self.model.hidden_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.model._process_input(images)
        x = torch.cat([self.model.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.model.encoder(x)


class TimmBackbone(nn.Module):
    """A timm model's ``forward_features`` tokens (B, L, num_features)."""

    def __init__(self, name: str, pretrained: bool, image_size: int):
        super().__init__()
        try:
            import timm
        except ImportError:
            raise ConfigError(f"backbone 'timm:{name}' needs timm (pip install timm)") from None
        try:
            self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, img_size=image_size)
        except Exception as e:
            raise ConfigError(f"cannot build timm backbone {name!r} (pretrained={pretrained}): {e}") from None
        self.width = int(self.model.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.model.forward_features(images)
        if x.ndim != 3:
            raise ConfigError(f"timm backbone returned features of shape {tuple(x.shape)}; a ViT giving "
                              "(B, tokens, width) is needed")
        return x


def build_backbone(spec: str, *, image_size: int, width: int, depth: int, num_heads: int, patch_size: int,
                   mlp_ratio: float = 4.0, pretrained: bool = False) -> nn.Module | None:
    """The backbone named by ``spec`` (see the module docstring); None for ``"none"``.

    Raises :class:`ConfigError` when the backbone's feature width differs from ``width`` (the width the
    Q-Former's cross-attention is built for).
    """
    if spec == "none":
        return None
    if spec == "vit":
        if pretrained:
            raise ConfigError("the zoo's ViT backbone has no downloadable weights: load converted weights "
                              "(zoo.convert.seed) or use a torchvision:/timm: backbone with pretrained=True")
        return ViTBackbone(image_size, patch_size, width, depth, num_heads, mlp_ratio)
    kind, _, name = spec.partition(":")
    if kind == "torchvision" and name:
        backbone = TorchvisionViT(name, pretrained)
    elif kind == "timm" and name:
        backbone = TimmBackbone(name, pretrained, image_size)
    else:
        raise ConfigError(f"unknown backbone {spec!r}; use 'vit', 'torchvision:<name>', 'timm:<name>' or 'none'")
    if backbone.width != width:
        raise ConfigError(f"backbone {spec!r} gives {backbone.width}-d features but the config's backbone_width is "
                          f"{width}: set backbone_width={backbone.width}", field="backbone_width")
    return backbone


__all__ = ["TimmBackbone", "TorchvisionViT", "ViTBackbone", "build_backbone", "set_layernorm_eps"]

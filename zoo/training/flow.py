"""Training of flow-decoder tokenizers (FlexTok): the rectified-flow loss with nested dropout.

:class:`FlowTokenizerModule` is the zoo's :class:`~zoo.training.module.ImageTokenizerModule` (same
optimizers, schedules, logging, checkpoints) with the generator loss replaced by

    loss = flow_weight * |v(x_t, t, tokens[:k]) - (noise - x0)|^2 + quantizer loss
           + repa_weight * (1 - cos(head(decoder features), backbone(images)))   (REPA, optional)

where the model draws the kept-token count k per sample (nested dropout) and the CFG null condition
itself (see :meth:`zoo.models.flextok.FlexTok.flow_forward`). REPA needs a frozen backbone: pass an
``nn.Module`` as ``repa_backbone`` (or ``"package.module:factory"`` in a recipe) mapping images in
[0, 1] to (B, N, D) or (B, D, h, w) features, and build the model with ``repa_dim = D``. FlexTok used
DINOv2-L; no DINOv2 weights exist offline here, so REPA runs only with a backbone you supply.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks.repa import repa_loss, to_token_grid
from zoo.errors import ConfigError
from zoo.models.base import TokenizerOutput
from zoo.training.module import ImageTokenizerModule


def load_backbone(spec: str | nn.Module | Callable | None) -> nn.Module | None:
    """A frozen REPA backbone from an object or ``"package.module:factory"`` (called with no arguments)."""
    if spec is None or isinstance(spec, nn.Module):
        backbone = spec
    elif isinstance(spec, str):
        mod, _, attr = spec.partition(":")
        if not attr:
            raise ConfigError(f"repa_backbone must look like 'package.module:factory', got {spec!r}")
        try:
            backbone = getattr(importlib.import_module(mod), attr)()
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"cannot build the REPA backbone {spec!r}: {e}") from None
    else:
        raise ConfigError(f"repa_backbone must be an nn.Module or 'package.module:factory', got {type(spec).__name__}")
    if backbone is not None:
        backbone.requires_grad_(False)
        backbone.eval()
    return backbone


class FlowTokenizerModule(ImageTokenizerModule):
    """Trains a FlexTok-style model (``flow_forward``) with the flow-matching loss (+ REPA)."""

    def __init__(self, model_name: str | None = None, model_overrides: dict[str, Any] | None = None,
                 model: nn.Module | None = None, *, flow_weight: float = 1.0, repa_weight: float = 0.0,
                 repa_backbone: Any = None, val_steps: int | None = None, **kwargs: Any):
        super().__init__(model_name, model_overrides, model, **kwargs)
        if not hasattr(self.model, "flow_forward"):
            raise ConfigError(f"task 'flow' trains flow-decoder tokenizers (FlexTok); {type(self.model).__name__} "
                              "has no flow_forward")
        self.backbone = [load_backbone(repa_backbone)]  # a list: not a submodule, never saved or trained
        if not isinstance(repa_backbone, (str, type(None))):  # a module object: keep it out of checkpoints
            for hp in (self.hparams, getattr(self, "_hparams_initial", {})):
                hp.pop("repa_backbone", None)
        if repa_weight > 0 and (self.backbone[0] is None or self.model.decoder.repa_head is None):
            raise ConfigError("repa_weight > 0 needs repa_backbone (a frozen feature extractor) and a model built "
                              "with repa_dim = the backbone's feature width")

    def reconstruction_losses(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        hp = self.hparams
        use_repa = hp.repa_weight > 0
        out = self.model.flow_forward(images, return_features=use_repa)
        parts = {"flow": out.loss, "quantizer": out.aux.loss, "keep_k": out.keep_k.float().mean()}
        loss = hp.flow_weight * out.loss + out.aux.loss
        if use_repa:
            backbone = self.backbone[0].to(images.device)
            with torch.no_grad():
                target = to_token_grid(backbone(images), self.model.config.grid)
            parts["repa"] = repa_loss(self.model.decoder.repa_head(out.features), target)
            loss = loss + hp.repa_weight * parts["repa"]
        rec = self.model.vae.decode(out.x_t - out.t.view(-1, 1, 1, 1) * out.velocity)
        return loss, parts, TokenizerOutput(rec, out.ids, out.aux)

    @torch.no_grad()
    def validation_step(self, images: torch.Tensor, batch_idx: int) -> None:
        model = self.model
        n = model.num_tokens
        out = model.flow_forward(images, keep_k=torch.full((images.shape[0],), n, device=images.device))
        ids = model.encode(images)
        gen = torch.Generator(device=images.device).manual_seed(batch_idx)
        rec = model.decode(ids, steps=self.hparams.val_steps, generator=gen)
        mse = F.mse_loss(rec, images, reduction="none").flatten(1).mean(1)
        self.log("val/flow", out.loss, prog_bar=True, sync_dist=True)
        self.log("val/l1", F.l1_loss(rec, images), sync_dist=True)
        self.log("val/psnr", (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean(), prog_bar=True, sync_dist=True)

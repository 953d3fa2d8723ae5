"""Convert the released SEED tokenizer (``seed_quantizer.pt``, AILab-CVC/seed-tokenizer-2) to the zoo's SEED.

Upstream loads the file into ``Blip2QformerQuantizer`` with ``strict=False``. Here every key is
mapped explicitly:

- ``Qformer.bert.embeddings.*`` / ``Qformer.bert.encoder.*`` -> ``qformer.*`` (same names below);
  ``Qformer.bert.embeddings.position_ids`` (an index buffer of BERT's unused text path) is dropped;
- ``quantize.embedding.weight`` (K, D) -> the zoo VQ's learnable codebook (+ its bookkeeping buffers);
- the de-tokenizer's timm-style blocks (``blocks.*``, ``blocks_image.*``: ``norm1``, ``attn.qkv``,
  ``attn.proj``, ``norm2``, ``mlp.fc1/fc2``) -> the zoo's CLIP-style blocks (``ln_1``,
  ``attn.in_proj_*``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc/c_proj``);
- ``visual_encoder.*`` (BLIP-2's EVA ViT-g: ``q_bias``/``v_bias`` and a bias-free ``qkv``) -> the
  zoo ViT backbone (``in_proj_bias`` = [q_bias, 0, v_bias]);
- everything else keeps its name.

An official key with no place in the model (e.g. the Reverse Q-Former of the training-code
variant) raises :class:`CheckpointError`. Model keys the checkpoint lacks are an error too, except
under ``visual_encoder.`` (the released file may ship without the ViT; BLIP-2's ``eva_vit_g.pth``
converts with :func:`convert_eva_vit_state_dict`) and ``pixel_decoder.`` (ours, trained in stage 3):
those keep the model's current weights and are reported by :func:`absent_keys` and a warning.
"""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from zoo.convert.base import register_converter
from zoo.errors import CheckpointError

CODEBOOK = "quantize.embedding.weight"
DROPPED = ("Qformer.bert.embeddings.position_ids",)
OPTIONAL_PREFIXES = ("visual_encoder.", "pixel_decoder.")
_SEED_MARKERS = ("query_tokens", CODEBOOK, "encode_task_layer.0.weight")
# timm-style block names -> the zoo's CLIP-style names (official -> zoo)
_BLOCK_RENAMES = (("norm1.", "ln_1."), ("norm2.", "ln_2."), ("attn.qkv.weight", "attn.in_proj_weight"),
                  ("attn.qkv.bias", "attn.in_proj_bias"), ("attn.proj.", "attn.out_proj."),
                  ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."))
_BLOCK_KEY = re.compile(r"^(blocks|blocks_image|visual_encoder\.blocks)\.(\d+)\.(.+)$")


def _rename_block(rest: str) -> str:
    for old, new in _BLOCK_RENAMES:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise CheckpointError(f"unknown ViT block parameter {rest!r} in the SEED checkpoint")


def convert_eva_vit_state_dict(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """BLIP-2 EVA ViT tensors (keys under ``prefix``, e.g. ``"visual_encoder."`` or ``""`` for
    ``eva_vit_g.pth``) -> the zoo ViT backbone's keys under ``visual_encoder.``."""
    out: dict[str, torch.Tensor] = {}
    keys = [k for k in state if k.startswith(prefix)]
    for key in keys:
        rest = key[len(prefix):]
        m = re.match(r"^blocks\.(\d+)\.attn\.(q_bias|v_bias|qkv\.weight)$", rest)
        if m:
            i = m.group(1)
            if m.group(2) == "q_bias":
                q, v = state[key], state[f"{prefix}blocks.{i}.attn.v_bias"]
                out[f"visual_encoder.blocks.{i}.attn.in_proj_bias"] = torch.cat([q, torch.zeros_like(q), v])
            elif m.group(2) == "qkv.weight":
                out[f"visual_encoder.blocks.{i}.attn.in_proj_weight"] = state[key]
            continue
        if rest.startswith("blocks."):
            _, i, tail = rest.split(".", 2)
            out[f"visual_encoder.blocks.{i}.{_rename_block(tail)}"] = state[key]
        elif rest.startswith("patch_embed.proj."):
            out["visual_encoder.patch_embed." + rest[len("patch_embed.proj."):]] = state[key]
        elif rest in ("cls_token", "pos_embed"):
            out["visual_encoder." + rest] = state[key]
        else:
            raise CheckpointError(f"unknown EVA ViT key {key!r} (expected patch_embed, cls_token, pos_embed, blocks)")
    return out


def _official_to_zoo(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    out.update(convert_eva_vit_state_dict(state, "visual_encoder."))
    for key, value in state.items():
        if key in DROPPED or key.startswith("visual_encoder."):
            continue
        if key.startswith("Qformer.bert."):
            out["qformer." + key[len("Qformer.bert."):]] = value
        elif key == CODEBOOK:
            codes = value.float()
            out["quantize.vq._codebook.embed"] = codes[None].clone()
            out["quantize.vq._codebook.embed_avg"] = codes[None].clone()
            out["quantize.vq._codebook.cluster_size"] = torch.ones(1, codes.shape[0])
            out["quantize.vq._codebook.initted"] = torch.tensor(True)
        elif (m := _BLOCK_KEY.match(key)) and not key.startswith("visual_encoder."):
            out[f"{m.group(1)}.{m.group(2)}.{_rename_block(m.group(3))}"] = value
        else:
            out[key] = value
    return out


def absent_keys(state: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Model keys that ``state`` (an official SEED state dict) does not fill."""
    return sorted(set(model.state_dict()) - set(_official_to_zoo(state)))


def convert_seed_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official SEED state dict -> the full state dict of the zoo SEED ``model`` (a new dict)."""
    missing_markers = [k for k in _SEED_MARKERS if k not in state]
    if missing_markers:
        raise CheckpointError(f"not an official SEED tokenizer checkpoint: it lacks {missing_markers} (its keys "
                              f"start {sorted(state)[:4]}); is it another family's?")
    converted = _official_to_zoo(state)
    own = model.state_dict()
    unexpected = sorted(k for k in converted if k not in own)
    if unexpected:
        hint = (" (the Reverse Q-Former of SEED's training-code variant is not supported; the released "
                "tokenizer uses the image_down MLP)") if any("everse" in k for k in unexpected) else ""
        raise CheckpointError(f"{len(unexpected)} checkpoint tensor(s) have no place in {model.name}: "
                              f"{unexpected[:6]}{hint}")
    absent = sorted(set(own) - set(converted))
    required = [k for k in absent if not k.startswith(OPTIONAL_PREFIXES)]
    if required:
        raise CheckpointError(f"the SEED checkpoint lacks {len(required)} tensor(s) {model.name} needs: {required[:6]}")
    if absent:
        groups = sorted({k.split(".")[0] for k in absent})
        warnings.warn(f"SEED checkpoint: {len(absent)} tensor(s) under {groups} are absent and keep their current "
                      "values (visual_encoder: load BLIP-2's EVA ViT-g weights; pixel_decoder: train stage 3)",
                      stacklevel=2)
    for key in absent:
        converted[key] = own[key]
    for key, value in converted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"checkpoint tensor for {key!r} has shape {tuple(value.shape)} but {model.name} "
                                  f"expects {tuple(own[key].shape)}: a SEED of another size?")
    return converted


register_converter("official-seed", convert_seed_state_dict, family="seed",
                   weight_files=("seed_quantizer.pt", "model.safetensors", "pytorch_model.bin", "model.pt"),
                   description="AILab-CVC SEED tokenizer, seed_quantizer.pt (Blip2QformerQuantizer)")

__all__ = ["absent_keys", "convert_eva_vit_state_dict", "convert_seed_state_dict"]

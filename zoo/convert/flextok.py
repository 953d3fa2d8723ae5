"""Official FlexTok checkpoints (apple/ml-flextok, ``FlexTokFromHub`` / EPFL-VILAB on the Hub) -> zoo FlexTok.

The official model is a dict of named modules run in order (``encoder.module_dict.<name>...``); every
key is mapped explicitly below. Some module names differ between configurations (the decoder's patch
embedding is ``dec_patch_emb`` or ``dec_noise_patch_emb``, its null condition ``dec_nullcond`` or
``dec_latent_dropout``, its head ``dec_head`` or ``dec_to_patches``); both spellings are accepted.
A key that matches no rule, or a model tensor left unfilled, raises :class:`CheckpointError`.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from zoo.errors import CheckpointError

ENC = r"encoder\.module_dict\."
DEC = r"decoder\.module_dict\."
BLOCK = r"blocks\.(\d+)\.((?:attn\.(?:wq|wk|wv|proj)|mlp\.fc[123]|adaLN_modulation\.1)\.(?:weight|bias))"

#: (official key pattern, zoo key template); tried in order, the first full match wins.
RULES: list[tuple[str, str]] = [
    (ENC + r"enc_patch_emb\.patch_proj\.(weight|bias)", r"encoder.patches.patch_proj.\1"),
    (ENC + r"enc_posemb_module\.posembs", r"encoder.patches.posembs"),
    (ENC + r"enc_register_module\.registers", r"encoder.registers"),
    (ENC + r"enc_transformer\." + BLOCK, r"encoder.transformer.blocks.\1.\2"),
    (ENC + r"enc_to_latents\.proj\.(weight|bias)", r"encoder.to_latents.\1"),
    (DEC + r"dec_from_latents\.proj\.(weight|bias)", r"decoder.from_latents.\1"),
    (DEC + r"dec_nested_dropout\.dropout_mask_token", r"decoder.mask_token"),
    (DEC + r"(?:dec_nullcond|dec_latent_dropout)\.nullcond", r"decoder.null_cond"),
    (DEC + r"(?:dec_patch_emb|dec_noise_patch_emb)\.patch_proj\.(weight|bias)", r"decoder.patches.patch_proj.\1"),
    (DEC + r"(?:dec_posemb_module|dec_patches_posemb_module)\.posembs", r"decoder.patches.posembs"),
    (DEC + r"dec_time_embedder\.mlp\.([02])\.(weight|bias)", r"decoder.time_embed.mlp.\1.\2"),
    (DEC + r"dec_transformer\." + BLOCK, r"decoder.blocks.\1.\2"),
    (DEC + r"(?:dec_head|dec_to_patches)\.(adaLN_modulation\.1|proj)\.(weight|bias)", r"decoder.head.\1.\2"),
    (r"vae\.vae\.(.+)", r"vae.vae.\1"),
]
_COMPILED = [(re.compile(p), r) for p, r in RULES]


def map_key(key: str) -> str | None:
    """The zoo name of the official tensor ``key``, or None when no rule knows it."""
    for pattern, repl in _COMPILED:
        if pattern.fullmatch(key):
            return pattern.sub(repl, key)
    return None


def convert_flextok_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official FlexTok state dict -> the full state dict of the zoo ``model`` (a FlexTok).

    Raises CheckpointError naming unknown official keys, model keys the checkpoint does not fill,
    and shape mismatches. A pixel-space model refuses a checkpoint with a VAE and vice versa.
    """
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = map_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(f"{len(unknown)} official FlexTok keys have no zoo counterpart (e.g. {unknown[:4]}); "
                              "is this a FlexTok checkpoint of a supported layout?")
    has_vae = any(k.startswith("vae.") for k in out)
    wants_vae = any(k.startswith("vae.") for k in own)
    if has_vae != wants_vae:
        raise CheckpointError("the checkpoint " + ("holds" if has_vae else "lacks") + " VAE weights but the model "
                              + ("works in pixel space" if not wants_vae else "has an SD-VAE") +
                              f" (config.vae={getattr(model.config, 'vae', '?')!r}); pick a matching variant")
    missing = sorted(set(own) - set(out))
    unexpected = sorted(set(out) - set(own))
    shapes = [f"{k}: checkpoint {tuple(out[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in out and out[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError("official FlexTok checkpoint does not fit the model: "
                              + "; ".join(f"{what} {items[:4]}" for what, items in
                                          (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
                                          if items) + " (check depth, width, registers and levels)")
    return {k: out[k].to(own[k].dtype) for k in own}


def config_from_official(config: dict[str, Any]) -> dict[str, Any]:
    """FlexTokConfig fields read from an official hydra config (``config.json`` of a Hub checkpoint):
    widths, depths, head dim, registers, FSQ levels, patch size, VAE channels, nested-dropout mode."""
    try:
        enc, dec = config["encoder"]["module_dict"], config["decoder"]["module_dict"]
        fields: dict[str, Any] = {
            "encoder_width": enc["enc_transformer"]["dim"], "encoder_depth": enc["enc_transformer"]["depth"],
            "decoder_width": dec["dec_transformer"]["dim"], "decoder_depth": dec["dec_transformer"]["depth"],
            "head_dim": enc["enc_transformer"].get("head_dim", 64),
            "num_registers": enc["enc_register_module"]["n_max"],
            "levels": tuple(config["regularizer"]["levels"]),
            "patch_size": enc["enc_patch_emb"]["patch_sizes"][0],
        }
    except (KeyError, TypeError, IndexError) as e:
        raise CheckpointError(f"not an official FlexTok config (missing {e})") from None
    if "vae" in config and "latent_channels" in config["vae"]:
        fields["vae_channels"] = config["vae"]["latent_channels"]
    nd = dec.get("dec_nested_dropout", {})
    if nd.get("size_sampling_mode") in ("uniform", "pow2", "uniform_pow2"):
        fields["nested_dropout"] = nd["size_sampling_mode"]
    te = dec.get("dec_time_embedder", {})
    if "max_timestep" in te:
        fields["max_timestep"] = float(te["max_timestep"])
    return fields


from zoo.convert.base import register_converter  # noqa: E402  (not from zoo.convert: that imports this module)

register_converter("official-flextok", convert_flextok_state_dict, family="flextok",
                   description="apple/ml-flextok FlexTokFromHub, e.g. EPFL-VILAB/flextok_d18_d28_in1k")

"""Convert official TiTok checkpoints (bytedance/1d-tokenizer layout) to the zoo's TiTok.

The zoo's TiTok keeps the official parameter names, so every key maps to itself except the
quantizers: the official learnable codebook ``quantize.embedding.weight`` (K, D) becomes
vector-quantize-pytorch's codebook buffers ``quantize.vq._codebook.*`` (l2-normalized for cosine
codebooks, as the official lookup normalizes them on the fly), and the MaskGIT-VQGAN codebook
``pixel_quantize.embedding.weight`` becomes ``pixel_quantize.weight``.

The official encoder has two layouts (``is_legacy``): every two-stage checkpoint (proxy head +
MaskGIT-VQGAN pixel decoder) uses the legacy one, every single-stage checkpoint the fixed one. The
weights tell the two apart (the decoder head), and a model with the other layout is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.convert.base import register_converter
from zoo.errors import CheckpointError

CODEBOOK = "quantize.embedding.weight"
PROXY_CODEBOOK = "pixel_quantize.embedding.weight"
# zoo key -> official key where they differ (all other keys are identical).
_ZOO_CODEBOOK = ("quantize.vq._codebook.embed", "quantize.vq._codebook.embed_avg",
                 "quantize.vq._codebook.cluster_size", "quantize.vq._codebook.initted")
_RENAMED = {"pixel_quantize.weight": PROXY_CODEBOOK, **{k: CODEBOOK for k in _ZOO_CODEBOOK}}
_TITOK_MARKERS = ("latent_tokens", "encoder.patch_embed.weight", "decoder.decoder_embed.weight")


def official_key(zoo_key: str) -> str:
    """The official name of the zoo TiTok parameter/buffer ``zoo_key``."""
    return _RENAMED.get(zoo_key, zoo_key)


def is_two_stage(state: dict[str, torch.Tensor]) -> bool:
    """Official two-stage checkpoints carry the MaskGIT-VQGAN pixel decoder (and the legacy layout)."""
    return any(k.startswith(("pixel_decoder.", "pixel_quantize.")) for k in state)


def _check_family(state: dict[str, torch.Tensor]) -> None:
    missing = [k for k in _TITOK_MARKERS if k not in state]
    if len(missing) == len(_TITOK_MARKERS):
        raise CheckpointError(f"not an official TiTok checkpoint: none of the TiTok keys {list(_TITOK_MARKERS)} "
                              f"are in it (its keys start {sorted(state)[:4]}); is it another family's?")
    if CODEBOOK not in state:
        raise CheckpointError(f"not an official TiTok VQ checkpoint: no {CODEBOOK!r} (a VAE/continuous TiTok, "
                              "or another version? the zoo converts the VQ checkpoints)")


def _check_layout(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    cfg = model.config
    two_stage = is_two_stage(state)
    what = "two-stage (proxy head + MaskGIT-VQGAN pixel decoder, legacy encoder layout)" if two_stage else \
        "single-stage (pixel head, fixed encoder layout)"
    if two_stage != (cfg.decoder_head == "proxy"):
        raise CheckpointError(f"the checkpoint is a {what} TiTok but {model.name} has decoder_head="
                              f"{cfg.decoder_head!r}; pick a {'two' if two_stage else 'single'}-stage variant")
    if two_stage != bool(cfg.legacy_layout):
        raise CheckpointError(f"the checkpoint is a {what} TiTok, whose encoder layout is "
                              f"{'legacy' if two_stage else 'fixed'}, but {model.name} has legacy_layout="
                              f"{cfg.legacy_layout}: its ids would silently differ from the official ones")


def convert_titok_state_dict(state: dict[str, torch.Tensor], model: nn.Module | None = None, *,
                             use_cosine: bool | None = None) -> dict[str, torch.Tensor]:
    """Official TiTok state dict -> zoo TiTok state dict (a new dict; ``state`` is not modified).

    With ``model``, every key is mapped explicitly: an official key the model has no place for, or a
    model key the checkpoint does not fill, raises :class:`CheckpointError` naming it; a checkpoint of
    the other layout (two-stage/legacy vs single-stage/fixed) is refused. ``use_cosine`` defaults to
    the model's ``config.use_cosine`` (True without a model)."""
    _check_family(state)
    if model is not None:
        _check_layout(state, model)
        use_cosine = model.config.use_cosine if use_cosine is None else use_cosine
        wanted = {k: official_key(k) for k in model.state_dict()}
        missing = sorted({o for o in wanted.values() if o not in state})
        unexpected = sorted(set(state) - set(wanted.values()))
        if missing or unexpected:
            parts = ([f"missing {len(missing)} key(s): {missing[:5]}"] if missing else []) + \
                    ([f"unexpected {len(unexpected)} key(s): {unexpected[:5]}"] if unexpected else [])
            raise CheckpointError(f"official TiTok checkpoint does not fit {model.name}: " + "; ".join(parts))
    else:  # the official names as they come, with the two codebooks renamed
        wanted = {("pixel_quantize.weight" if o == PROXY_CODEBOOK else o): o for o in state if o != CODEBOOK}
        wanted.update({z: CODEBOOK for z in _ZOO_CODEBOOK})
    use_cosine = True if use_cosine is None else use_cosine
    codes = state[CODEBOOK].float()
    if use_cosine:
        codes = F.normalize(codes, dim=-1)
    k = codes.shape[0]
    special = {"quantize.vq._codebook.embed": codes[None].clone(),
               "quantize.vq._codebook.embed_avg": codes[None].clone(),
               "quantize.vq._codebook.cluster_size": torch.ones(1, k, device=codes.device),
               "quantize.vq._codebook.initted": torch.tensor(True, device=codes.device)}
    return {z: special[z] if z in special else state[o] for z, o in wanted.items()}


def check_titok_config(config: dict, model: nn.Module) -> None:
    """Compare the official ``config.json`` (``model.vq_model``) with the zoo model: what the weights
    cannot show (cosine or Euclidean codes, the encoder layout of a config that says so) or a VAE
    checkpoint raise :class:`CheckpointError` naming the field."""
    vq = (config.get("model") or {}).get("vq_model") if isinstance(config.get("model"), dict) else None
    if not isinstance(vq, dict):
        return  # not the official layout of config.json: the weights are checked on their own
    cfg = model.config
    if vq.get("quantize_mode", "vq") != "vq":
        raise CheckpointError(f"the official config has quantize_mode {vq['quantize_mode']!r}: a continuous "
                              "TiTok; the zoo converts the VQ checkpoints")
    expected = {"num_latent_tokens": cfg.num_tokens, "codebook_size": cfg.codebook_size, "token_size": cfg.token_dim,
                "use_l2_norm": cfg.use_cosine, "is_legacy": cfg.legacy_layout,
                "finetune_decoder": cfg.decoder_head == "proxy"}
    defaults = {"is_legacy": True, "finetune_decoder": True}  # the official code's defaults
    wrong = [f"{k}: checkpoint {vq.get(k, defaults.get(k))!r}, {model.name} {v!r}" for k, v in expected.items()
             if vq.get(k, defaults.get(k)) is not None and vq.get(k, defaults.get(k)) != v]
    if wrong:
        raise CheckpointError(f"the official config.json does not describe {model.name}: " + "; ".join(wrong))


register_converter("official-titok", lambda state, model: convert_titok_state_dict(state, model), family="titok",
                   description="bytedance/1d-tokenizer TiTok", check_config=check_titok_config)

"""Convert official EnCodec checkpoints (facebookresearch/encodec, e.g. ``encodec_24khz-d7cc33bc.th``).

The zoo's SEANet keeps EnCodec's module indices, so the mapping is a rename of the wrappers:
``<stack>.model.<i>[.block.<j>|.shortcut].conv.conv.<p>`` -> ``...conv.<p>`` (``weight_g``/``weight_v``/
``bias`` with weight norm, ``weight``/``bias`` without), ``.conv.norm.`` / ``.convtr.norm.`` ->
``.norm.`` (time group norm), ``.convtr.convtr.<p>`` -> ``.conv.<p>``; LSTM keys are unchanged. The EMA
codebooks ``quantizer.vq.layers.<l>._codebook.{embed, embed_avg, cluster_size, inited}`` become
vector-quantize-pytorch's ``quantizer.rvq.layers.<l>._codebook.*`` (with its leading head dim).
Every key is mapped explicitly; anything else raises :class:`CheckpointError` naming it.

``zoo convert --from official-encodec FILE --model encodec_24khz -o DIR`` reads pickles with
``weights_only=True`` by suffix (.th/.pth/.pt/.bin), so the official ``.th`` file converts as it is.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from zoo.convert.base import WEIGHT_FILES, register_converter
from zoo.errors import CheckpointError

_CONV = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.((?:block\.\d+\.|shortcut\.)?)"
                   r"(conv\.conv|convtr\.convtr|conv\.norm|convtr\.norm)\.(weight_g|weight_v|weight|bias)$")
_LSTM = re.compile(r"^(encoder|decoder)\.model\.\d+\.lstm\.(weight|bias)_(ih|hh)_l\d+(_reverse)?$")
_CODEBOOK = re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(embed|embed_avg|cluster_size|inited)$")


def official_encodec_key(key: str) -> str:
    """The zoo key of one official EnCodec state-dict key (raises on keys it does not know)."""
    m = _CONV.match(key)
    if m:
        stack, index, inner, wrapper, param = m.groups()
        part = "norm" if wrapper.endswith("norm") else "conv"
        return f"{stack}.model.{index}.{inner}{part}.{param}"
    if _LSTM.match(key):
        return key
    m = _CODEBOOK.match(key)
    if m:
        level, name = m.groups()
        return f"quantizer.rvq.layers.{level}._codebook.{'initted' if name == 'inited' else name}"
    raise CheckpointError(f"unexpected key {key!r} in the EnCodec checkpoint (not an official EnCodec "
                          "SEANet/RVQ parameter)")


def convert_encodec_state_dict(state: dict[str, torch.Tensor], model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Official EnCodec state dict -> zoo ``AudioCodec`` state dict (new dict; inputs untouched)."""
    if not any(k.startswith("quantizer.vq.layers.") for k in state):
        raise CheckpointError(f"not an official EnCodec checkpoint: no 'quantizer.vq.layers.*' keys "
                              f"(found e.g. {sorted(state)[:3]})")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = official_encodec_key(key)
        if key.endswith("._codebook.inited"):
            value = value.reshape(()).bool()
        elif key.endswith(("._codebook.embed", "._codebook.embed_avg", "._codebook.cluster_size")):
            value = value[None]
        out[new] = value
    return out


register_converter("official-encodec", convert_encodec_state_dict, family="codec",
                   weight_files=("encodec_24khz-d7cc33bc.th", "encodec_48khz-7e698e3e.th", "encodec_24khz-d7cc33bc.pth",
                                 "encodec_48khz-7e698e3e.pth", *WEIGHT_FILES),
                   description="facebookresearch/encodec EnCodec 24/48 kHz")

__all__ = ["convert_encodec_state_dict", "official_encodec_key"]

"""Convert official DAC checkpoints (descriptinc/descript-audio-codec ``weights*.pth``).

DAC nests its blocks (``encoder.block.<s>.block.<j>``, ``decoder.model.<s>.block.<j>``); the zoo's
SEANet is one flat ``nn.Sequential`` per stack, so a stage ``s`` with ``n`` residual units
(dilations 1, 3, 9) sits at flat indices ``1 + s * (n + 2)`` onwards: encoder stage = units, Snake,
strided conv; decoder stage = Snake, transposed conv, units. Weight-normed convs keep their
``weight_g``/``weight_v``/``bias`` names (under ``.conv.``), Snake keeps ``alpha``, and the quantizer
(``quantizer.quantizers.<l>.{in_proj, out_proj, codebook}``) has the same names in the zoo.
Every key is mapped explicitly; anything else raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from zoo.convert.base import WEIGHT_FILES, register_converter
from zoo.errors import CheckpointError

_WN = ("weight_g", "weight_v", "bias")
_QUANT = re.compile(r"^quantizer\.quantizers\.\d+\.(in_proj\.(weight_g|weight_v|bias)|out_proj\.(weight_g|weight_v|bias)"
                    r"|codebook\.weight)$")


def _unit(prefix: str, rest: str, key: str) -> str:
    """A residual unit's tail: ``block.0.alpha`` / ``block.1.<p>`` / ``block.2.alpha`` / ``block.3.<p>``."""
    m = re.match(r"^block\.([0-3])\.(alpha|weight_g|weight_v|bias)$", rest)
    if not m or (m.group(1) in "02") != (m.group(2) == "alpha"):
        raise CheckpointError(f"unexpected key {key!r} in the DAC checkpoint (residual unit part {rest!r})")
    j, p = m.groups()
    return f"{prefix}.block.{j}.{p}" if p == "alpha" else f"{prefix}.block.{j}.conv.{p}"


def dac_key_map(model: nn.Module) -> callable:
    """A function official key -> zoo key for a model with this encoder/decoder layout."""
    enc_n, dec_n = len(model.config.encoder.dilations), len(model.config.decoder.dilations)
    enc_s, dec_s = len(model.config.encoder.strides), len(model.config.decoder.strides)

    def layer(prefix: str, index: int, param: str) -> str:
        return f"{prefix}.{index}.alpha" if param == "alpha" else f"{prefix}.{index}.conv.{param}"

    def key_map(key: str) -> str:
        if _QUANT.match(key):
            return key
        m = re.match(r"^encoder\.block\.(\d+)\.(.*)$", key)
        if m:
            b, rest = int(m.group(1)), m.group(2)
            if b == 0 and rest in _WN:
                return layer("encoder.model", 0, rest)
            if 1 <= b <= enc_s:
                base = 1 + (b - 1) * (enc_n + 2)
                sub = re.match(r"^block\.(\d+)\.(.*)$", rest)
                if sub:
                    j, tail = int(sub.group(1)), sub.group(2)
                    if j < enc_n:
                        return _unit(f"encoder.model.{base + j}", tail, key)
                    if j == enc_n and tail == "alpha":
                        return layer("encoder.model", base + j, "alpha")
                    if j == enc_n + 1 and tail in _WN:
                        return layer("encoder.model", base + j, tail)
            if b == enc_s + 1 and rest == "alpha":
                return layer("encoder.model", 1 + enc_s * (enc_n + 2), "alpha")
            if b == enc_s + 2 and rest in _WN:
                return layer("encoder.model", 2 + enc_s * (enc_n + 2), rest)
        m = re.match(r"^decoder\.model\.(\d+)\.(.*)$", key)
        if m:
            b, rest = int(m.group(1)), m.group(2)
            if b == 0 and rest in _WN:
                return layer("decoder.model", 0, rest)
            if 1 <= b <= dec_s:
                base = 1 + (b - 1) * (dec_n + 2)
                sub = re.match(r"^block\.(\d+)\.(.*)$", rest)
                if sub:
                    j, tail = int(sub.group(1)), sub.group(2)
                    if j == 0 and tail == "alpha":
                        return layer("decoder.model", base, "alpha")
                    if j == 1 and tail in _WN:
                        return layer("decoder.model", base + 1, tail)
                    if 2 <= j < 2 + dec_n:
                        return _unit(f"decoder.model.{base + j}", tail, key)
            if b == dec_s + 1 and rest == "alpha":
                return layer("decoder.model", 1 + dec_s * (dec_n + 2), "alpha")
            if b == dec_s + 2 and rest in _WN:
                return layer("decoder.model", 2 + dec_s * (dec_n + 2), rest)
        raise CheckpointError(f"unexpected key {key!r} in the DAC checkpoint (not a DAC encoder/decoder/"
                              "quantizer parameter of this layout)")

    return key_map


def convert_dac_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official DAC state dict -> zoo ``AudioCodec`` state dict for ``model`` (a DAC-style codec)."""
    if not any(k.startswith("quantizer.quantizers.") for k in state):
        raise CheckpointError(f"not an official DAC checkpoint: no 'quantizer.quantizers.*' keys "
                              f"(found e.g. {sorted(state)[:3]})")
    if getattr(model.config, "quantizer", None) != "factorized":
        raise CheckpointError(f"DAC checkpoints load into DAC-style codecs (factorized codes), not {model.name}")
    key_map = dac_key_map(model)
    return {key_map(k): v for k, v in state.items()}


register_converter("official-dac", convert_dac_state_dict, family="codec",
                   weight_files=("weights.pth", "weights_44khz_8kbps_0.0.1.pth", "weights_44khz_16kbps.pth",
                                 "weights_24khz.pth", "weights_16khz.pth", *WEIGHT_FILES),
                   description="descriptinc/descript-audio-codec DAC 16/24/44 kHz")

__all__ = ["convert_dac_state_dict", "dac_key_map"]

"""Convert official DM-Codec checkpoints (mubtasimahasan/DM-Codec, SpeechTokenizer layout).

The codec's keys are EnCodec's (SEANet ``conv.conv`` / ``convtr.convtr`` wrappers, LSTM keys,
``quantizer.vq.layers.<l>._codebook.*``), mapped by :func:`zoo.convert.encodec.official_encodec_key`;
the distillation head ``transform.{weight, bias}`` keeps its name. Any other key is a
:class:`CheckpointError` naming it; a checkpoint without the head (an EnCodec or SpeechTokenizer one
built without ``semantic_dimension``) is refused with what was expected.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.convert.base import WEIGHT_FILES, register_converter
from zoo.convert.encodec import convert_encodec_state_dict
from zoo.errors import CheckpointError

HEAD_KEYS = ("transform.weight", "transform.bias")


def convert_dm_codec_state_dict(state: dict[str, torch.Tensor], model: nn.Module | None = None
                                ) -> dict[str, torch.Tensor]:
    """Official DM-Codec state dict -> zoo ``DMCodec`` state dict (new dict; inputs untouched)."""
    missing = [k for k in HEAD_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"not an official DM-Codec checkpoint: no distillation head {missing} (an EnCodec "
                              "checkpoint converts with --from official-encodec)")
    out = convert_encodec_state_dict({k: v for k, v in state.items() if k not in HEAD_KEYS}, model)
    out.update({k: state[k] for k in HEAD_KEYS})
    return out


register_converter("official-dm-codec", convert_dm_codec_state_dict, family="dm_codec",
                   weight_files=("model.pt", "model.pth", *WEIGHT_FILES),
                   description="mubtasimahasan/DM-Codec (SpeechTokenizer-style RVQ codec + distillation head)")

__all__ = ["convert_dm_codec_state_dict"]

"""Convert official TiTok / One-D-Piece checkpoints (bytedance/1d-tokenizer layout) to the zoo's.

The zoo's TiTok uses the official parameter names, so conversion only touches the quantizer: the
official learnable codebook ``quantize.embedding.weight`` (K, D) becomes vector-quantize-pytorch's
cosine codebook buffers ``quantize.vq._codebook.*`` (codes l2-normalized, as the official lookup
normalizes them on the fly), and ``pixel_quantize.embedding.weight`` becomes ``pixel_quantize.weight``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.errors import CheckpointError

_RENAMES = {"pixel_quantize.embedding.weight": "pixel_quantize.weight"}
_CODEBOOK = "quantize.embedding.weight"


def convert_titok_state_dict(state: dict[str, torch.Tensor], *, use_cosine: bool = True) -> dict[str, torch.Tensor]:
    """Official TiTok state dict -> zoo TiTok state dict (new dict; inputs are not modified)."""
    if _CODEBOOK not in state:
        raise CheckpointError(f"not an official TiTok checkpoint: no {_CODEBOOK!r} key "
                              f"(found e.g. {sorted(state)[:3]})")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == _CODEBOOK:
            codes = value.float()
            if use_cosine:
                codes = F.normalize(codes, dim=-1)
            k = codes.shape[0]
            out["quantize.vq._codebook.embed"] = codes[None].clone()
            out["quantize.vq._codebook.embed_avg"] = codes[None].clone()
            out["quantize.vq._codebook.cluster_size"] = torch.ones(1, k)
            out["quantize.vq._codebook.initted"] = torch.tensor(True)
        else:
            out[_RENAMES.get(key, key)] = value
    return out

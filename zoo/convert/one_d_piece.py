"""Convert official One-D-Piece checkpoints (turingmotors/One-D-Piece) to the zoo's OneDPiece.

One-D-Piece's model is TiTok's (legacy encoder layout, proxy head + MaskGIT-VQGAN pixel decoder)
with 256 latent tokens, and its checkpoints have TiTok's keys, so the TiTok converter maps them
(:func:`zoo.convert.titok.convert_titok_state_dict`). This one checks first that the checkpoint's
token count is the model's: a TiTok checkpoint (32-128 tokens) is refused with a clear error.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.convert.base import register_converter
from zoo.convert.titok import convert_titok_state_dict
from zoo.errors import CheckpointError


def convert_one_d_piece_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official One-D-Piece state dict -> the state dict of ``model`` (a OneDPiece); every key is
    mapped explicitly (a missing or unexpected key raises :class:`CheckpointError` naming it)."""
    tokens = state.get("latent_tokens")
    if tokens is not None and tokens.ndim == 2 and tokens.shape[0] != model.num_tokens:
        raise CheckpointError(f"the checkpoint has {tokens.shape[0]} latent tokens but {model.name} has "
                              f"{model.num_tokens}: official One-D-Piece checkpoints have 256 (a TiTok "
                              "checkpoint? convert it with --from official-titok)")
    return convert_titok_state_dict(state, model)


register_converter("official-one-d-piece", convert_one_d_piece_state_dict, family="one_d_piece",
                   description="turingmotors/One-D-Piece")

"""Weights that start a fine-tuning run (``module.init_from`` in a recipe)."""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import CheckpointError
from zoo.factory import from_pretrained


def pretrained_state(source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``source`` (a ``save_pretrained`` folder, a checkpoints/ name or a Hub id)
    for ``model``; a checkpoint of another model class or config is a :class:`CheckpointError`."""
    loaded = from_pretrained(source)
    if type(loaded) is not type(model) or loaded.config != model.config:
        raise CheckpointError(f"init_from {source!r} holds a {getattr(loaded, 'name', '?')} model whose config "
                              f"differs from {getattr(model, 'name', type(model).__name__)}'s; fine-tune with the "
                              "same model name and overrides")
    return loaded.state_dict()

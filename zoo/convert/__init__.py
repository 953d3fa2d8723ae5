"""Converters from official checkpoints of other codebases into the zoo's modules."""

from __future__ import annotations

from pathlib import Path

from zoo.convert.titok import convert_titok_state_dict
from zoo.errors import CheckpointError

CONVERTERS = {"titok": convert_titok_state_dict}


def load_official(name: str, directory: str | Path, *, map_location: str = "cpu"):
    """Build the registered variant ``name`` and load an official checkpoint folder into it."""
    from zoo.hub import WEIGHTS_NAME, load_state, read_weights
    from zoo.registry import create

    model = create(name)
    convert = CONVERTERS.get(model.family)
    if convert is None:
        raise CheckpointError(f"no converter for official {model.family} checkpoints")
    state = read_weights(Path(directory) / WEIGHTS_NAME, map_location)
    load_state(model, convert(state, use_cosine=model.config.use_cosine), source=f"{directory} (official {name})")
    return model.to(map_location).eval()


__all__ = ["convert_titok_state_dict", "load_official", "CONVERTERS"]

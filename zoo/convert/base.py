"""The converter registry and the shared steps of every converter: find and read the official
weight file (safetensors, or a weights-only pickle), convert, load strictly.

Family converters (``zoo/convert/<family>.py``) import :func:`register_converter` from here, not from
the ``zoo.convert`` package (whose ``__init__`` imports them: that would be an import cycle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import zoo.models  # noqa: F401  (the families register their variants)
from zoo import hub
from zoo.errors import CheckpointError, ConfigError
from zoo.model_card import render_model_card
from zoo.registry import create, get_entry

StateDict = dict[str, torch.Tensor]
ConvertFn = Callable[[StateDict, nn.Module], StateDict]
CheckConfigFn = Callable[[dict[str, Any], nn.Module], None]

# Weight files looked for in a checkpoint folder, in order.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.bin", "model.pt", "model.pth")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".th", ".ckpt")


@dataclass(frozen=True)
class Converter:
    """``convert(state, model)``: official state dict -> the state dict of ``model`` (a ``family`` model).
    ``check_config(config, model)``, if given, compares the official ``config.json`` found beside the
    weights with the model and raises :class:`CheckpointError` on a difference the weights cannot show."""

    source: str
    family: str
    convert: ConvertFn
    weight_files: tuple[str, ...] = WEIGHT_FILES
    description: str = ""
    check_config: CheckConfigFn | None = None


_CONVERTERS: dict[str, Converter] = {}


def register_converter(source: str, fn: ConvertFn, *, family: str, weight_files: tuple[str, ...] = WEIGHT_FILES,
                       description: str = "", check_config: CheckConfigFn | None = None) -> Converter:
    """Register ``fn`` as the converter of checkpoints from ``source`` into ``family`` models."""
    if source in _CONVERTERS:
        raise ValueError(f"converter {source!r} is registered twice")
    conv = Converter(source, family, fn, tuple(weight_files), description, check_config)
    _CONVERTERS[source] = conv
    return conv


def list_converters() -> list[str]:
    """Sorted names of the registered sources (``zoo convert --from``)."""
    return sorted(_CONVERTERS)


def get_converter(source: str) -> Converter:
    try:
        return _CONVERTERS[source]
    except KeyError:
        raise ConfigError(f"unknown checkpoint source {source!r}; known: {', '.join(list_converters())}") from None


def converter_for(family: str) -> Converter:
    """The (first registered) converter producing ``family`` models."""
    for conv in _CONVERTERS.values():
        if conv.family == family:
            return conv
    raise CheckpointError(f"no converter for official {family} checkpoints (known sources: "
                          f"{', '.join(list_converters())})")


# -- reading official files ------------------------------------------------------------------------
def find_weights(path: str | Path, weight_files: tuple[str, ...] = WEIGHT_FILES) -> Path:
    """``path`` itself when it is a file, else the first of ``weight_files`` inside the folder ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    for name in weight_files:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path} holds none of the weight files {list(weight_files)}")


def read_state_dict(file: str | Path, map_location: str = "cpu") -> StateDict:
    """Tensors of a ``.safetensors`` file, or of a pickled ``.bin``/``.pt`` state dict loaded with
    ``weights_only=True`` (a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped)."""
    file = Path(file)
    if file.suffix not in PICKLE_SUFFIXES:
        return hub.read_weights(file, map_location)
    try:
        obj: Any = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle/zip errors of every kind: a bad file, said plainly)
        raise CheckpointError(f"{file} is not a readable PyTorch state dict (corrupt, truncated or not "
                              f"weights-only?): {type(e).__name__}: {e}") from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{file} does not hold a state dict (a mapping of names to tensors)")
    return obj


def read_official_config(folder: Path) -> dict[str, Any] | None:
    """The official ``config.json`` beside the weights (None without one); a zoo config there means
    the folder is already converted."""
    path = folder / hub.CONFIG_NAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if isinstance(config, dict) and {"family", "zoo_version"} <= set(config):
        raise CheckpointError(f"{folder} is already a zoo checkpoint ({config['family']}); load it with "
                              f"zoo.from_pretrained({str(folder)!r}) instead of converting it")
    return config if isinstance(config, dict) else None


# -- converting -------------------------------------------------------------------------------------
def convert_checkpoint(source: str, path: str | Path, model: str | nn.Module, *,
                       map_location: str | torch.device = "cpu") -> nn.Module:
    """Load the official checkpoint at ``path`` (folder or file) from ``source`` into ``model`` (a
    registered name, built with :func:`zoo.create`, or a model instance); returns it in eval mode."""
    conv = get_converter(source)
    if isinstance(model, str):
        name = model
        if get_entry(name).family != conv.family:
            raise ConfigError(f"{source} checkpoints convert to {conv.family} models; {name!r} is a "
                              f"{get_entry(name).family} model")
        model = create(name)
    elif getattr(model, "family", None) != conv.family:
        raise ConfigError(f"{source} checkpoints convert to {conv.family} models, got {type(model).__name__}")
    file = find_weights(path, conv.weight_files)
    config = read_official_config(file.parent)
    if config is not None and conv.check_config is not None:
        conv.check_config(config, model)
    state = conv.convert(read_state_dict(file, str(map_location)), model)
    hub.load_state(model, state, source=f"{file} ({source})")
    return model.to(map_location).eval()


def load_official(name: str, directory: str | Path, *, map_location: str | torch.device = "cpu",
                  source: str | None = None) -> nn.Module:
    """Build the registered variant ``name`` and load an official checkpoint folder into it."""
    source = source or converter_for(get_entry(name).family).source
    return convert_checkpoint(source, directory, name, map_location=map_location)


def source_note(source: str, file: str | Path) -> str:
    """Markdown section of the model card of a checkpoint converted from ``file``."""
    conv = get_converter(source)
    what = f" ({conv.description})" if conv.description else ""
    return (f"## Source\n\nConverted from the `{source}` checkpoint{what} `{Path(file).name}` with "
            f"`zoo convert --from {source}`: the official weights, mapped key by key.\n")


def convert_to_folder(source: str, path: str | Path, model: str | nn.Module, out: str | Path) -> nn.Module:
    """``zoo convert``: convert the official checkpoint at ``path`` into ``model`` and write a
    ``save_pretrained`` folder at ``out`` whose model card names the source; returns the model."""
    file = find_weights(path, get_converter(source).weight_files)
    model = convert_checkpoint(source, file, model)
    card = render_model_card(model).rstrip("\n") + "\n\n" + source_note(source, file)
    hub.save_pretrained(model, out, card=card)
    return model

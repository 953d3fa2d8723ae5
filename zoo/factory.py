"""Build tokenizers: from a registered name (fresh weights), a ``save_pretrained`` folder, a name under
``checkpoints/``, a Hub repo id, or a registered name with published official weights.

The layer above the model registry (:mod:`zoo.registry`, filled by :mod:`zoo.models` on import),
the checkpoint files (:mod:`zoo.hub`) and the converters (:mod:`zoo.convert`); what
``zoo.from_pretrained``, ``zoo.create`` and the CLI go through.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

import zoo.models  # noqa: F401  (importing the families registers their variants)
from zoo import hub
from zoo.convert import load_official
from zoo.errors import CheckpointError, ConfigError, UnknownModelError
from zoo.models.base import Tokenizer
from zoo.registry import create, family_class, get_config, get_entry, list_models, make_config

log = logging.getLogger("zoo")


def load_directory(directory: str | Path, *, map_location: str | torch.device = "cpu",
                   expect_family: str | None = None) -> Tokenizer:
    """Build the model described by ``directory/config.json`` and load its weights strictly."""
    directory = Path(directory)
    cfg = hub.read_config(directory)
    family = cfg["family"]
    if expect_family is not None and family != expect_family:
        raise CheckpointError(f"{directory} holds a {family!r} model, expected {expect_family!r}")
    try:
        cls = family_class(family)
    except UnknownModelError as e:
        raise CheckpointError(f"{directory / hub.CONFIG_NAME}: {e}") from None
    try:
        config = make_config(cls.config_class, cfg["config"], what=str(directory / hub.CONFIG_NAME))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    model = cls(config, name=cfg.get("variant") or family)
    hub.load_state(model, hub.read_weights(directory / hub.WEIGHTS_NAME, str(map_location)), source=str(directory))
    return model.to(map_location).eval()


def from_pretrained(name_or_path: str | Path, revision: str | None = None, *, cache_dir: str | Path | None = None,
                    endpoint: str | None = None, token: str | None = None, map_location: str | torch.device = "cpu",
                    local_files_only: bool = False) -> Tokenizer:
    """Load a tokenizer, in eval mode, from (in order) a local folder, ``checkpoints/<name>``, a Hub
    repo id, or a registered variant with published official weights (downloaded and converted)."""
    folder = hub.resolve(name_or_path, revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                         local_files_only=local_files_only)
    if folder is not None:
        return load_directory(folder, map_location=map_location)
    name = str(name_or_path)
    try:
        entry = get_entry(name)
    except UnknownModelError as e:
        looked = ", ".join(dict.fromkeys(str(d) for d in hub.checkpoint_dirs()))
        raise UnknownModelError(f"{e}; not a local directory, not a checkpoint folder (looked in {looked}; "
                                "$ZOO_CHECKPOINTS adds a folder) and not a Hub repo id (owner/name)") from None
    repo = entry.meta.get("official_repo")
    if not repo:
        looked = ", ".join(dict.fromkeys(str(d / name) for d in hub.checkpoint_dirs()))
        raise CheckpointError(f"no pretrained weights are published for {name!r} and no checkpoint folder of that "
                              f"name was found (looked in {looked}; $ZOO_CHECKPOINTS adds a folder); zoo.create("
                              f"{name!r}) builds it with fresh weights, or put a save_pretrained folder at "
                              f"checkpoints/{name}/")
    directory = hub.download(repo, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                             local_files_only=local_files_only, config_required=False)
    return load_official(name, directory, map_location=map_location)


def pick_device(device: str | None) -> str:
    """``None``/"auto" -> "cuda" when a GPU is present, else "cpu"."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(name_or_path: str, *, revision: str | None = None, random_init: bool = False,
               device: str | None = None) -> Tokenizer:
    """``from_pretrained`` onto ``device``; with ``random_init`` a registered name without weights
    is built with fresh weights instead (for smoke tests)."""
    device = pick_device(device)
    if random_init and name_or_path in list_models():
        log.warning("%s: using RANDOM weights (--random-init)", name_or_path)
        return create(name_or_path).to(device).eval()
    return from_pretrained(name_or_path, revision=revision, map_location=device)


__all__ = ["create", "get_config", "list_models", "from_pretrained", "load_directory", "load_model", "pick_device"]

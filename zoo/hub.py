"""Save, load and share tokenizers: ``model.safetensors`` + ``config.json`` (+ a model card).

``from_pretrained(name_or_path)`` looks, in order, for

1. a local directory written by :func:`save_pretrained`;
2. ``<checkpoints>/<name>`` where ``<checkpoints>`` is ``$ZOO_CHECKPOINTS``, ``./checkpoints`` or the
   ``checkpoints/`` folder of a source checkout;
3. a Hugging Face Hub repo id (``owner/name``), downloaded through ``huggingface_hub``'s cache
   with ``revision`` pinning. ``$HF_ENDPOINT`` (read at call time) points at another Hub server;
4. a registered variant with published official weights (``official_repo`` in the registry),
   downloaded and converted from the official layout.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import zoo
from zoo.errors import CheckpointError, ConfigError, UnknownModelError
from zoo.io import atomic_write, atomic_write_text
from zoo.registry import family_class, get_entry, make_config

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


# -- save -------------------------------------------------------------------------------------------
def model_config_dict(model: Any) -> dict[str, Any]:
    """What ``config.json`` holds: family, variant name, config fields and the zoo version."""
    return {"family": model.family, "variant": model.name, "zoo_version": zoo.__version__,
            "config": dataclasses.asdict(model.config)}


def save_pretrained(model: Any, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``; each file is written
    to a temporary name and renamed, so a failed save never leaves a half-written file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(model_config_dict(model), indent=2) + "\n")
    return directory


# -- load -------------------------------------------------------------------------------------------
def checkpoint_dirs() -> list[Path]:
    """Folders searched for ``<name>/`` checkpoints, in order."""
    dirs = []
    if os.environ.get("ZOO_CHECKPOINTS"):
        dirs.append(Path(os.environ["ZOO_CHECKPOINTS"]))
    dirs.append(Path.cwd() / "checkpoints")
    dirs.append(Path(__file__).resolve().parents[1] / "checkpoints")
    return dirs


def from_pretrained(name_or_path: str | Path, revision: str | None = None, *, cache_dir: str | Path | None = None,
                    endpoint: str | None = None, token: str | None = None, map_location: str = "cpu",
                    local_files_only: bool = False):
    """Load a tokenizer (see the module docstring for where it looks). Returns the model in eval mode."""
    path = Path(name_or_path)
    if path.is_dir():
        return load_directory(path, map_location=map_location)
    name = str(name_or_path)
    if not _looks_like_repo_id(name) and (path.suffix or os.sep in name):
        raise CheckpointError(f"checkpoint directory {name!r} does not exist")
    for folder in checkpoint_dirs():
        if (folder / name / CONFIG_NAME).is_file():
            return load_directory(folder / name, map_location=map_location)
    if _looks_like_repo_id(name):
        directory = download(name, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                             local_files_only=local_files_only)
        return load_directory(directory, map_location=map_location)
    try:
        entry = get_entry(name)
    except UnknownModelError as e:
        raise UnknownModelError(f"{e}; not a local directory, not under checkpoints/ and not a Hub repo id "
                                "(owner/name)") from None
    repo = entry.meta.get("official_repo")
    if not repo:
        raise CheckpointError(f"no pretrained weights are published for {name!r}; zoo.create({name!r}) builds it "
                              f"with fresh weights, or put a save_pretrained folder at checkpoints/{name}/")
    from zoo.convert import load_official
    directory = download(repo, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                         local_files_only=local_files_only, config_required=False)
    return load_official(name, directory, map_location=map_location)


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/"))


def download(repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None,
             endpoint: str | None = None, token: str | None = None, local_files_only: bool = False,
             config_required: bool = True) -> Path:
    """Fetch ``config.json`` and ``model.safetensors`` of ``repo_id`` into the Hub cache; returns the folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, \
        RevisionNotFoundError

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    kwargs = dict(revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                  local_files_only=local_files_only, library_name="tokenizer-zoo", library_version=zoo.__version__)
    files = [WEIGHTS_NAME, CONFIG_NAME]
    got: list[str] = []
    for filename in files:
        try:
            got.append(hf_hub_download(repo_id, filename, **kwargs))
        except LocalEntryNotFoundError as e:  # a subclass of EntryNotFoundError: test it first
            raise CheckpointError(f"cannot download {filename} of {repo_id!r} and it is not in the local cache "
                                  f"(no network? set HF_ENDPOINT or pre-download it): {e}") from None
        except EntryNotFoundError:
            if filename == CONFIG_NAME and not config_required:
                continue
            raise CheckpointError(f"Hub repo {repo_id!r} (revision {revision or 'main'}) has no {filename}; "
                                  f"a zoo checkpoint needs {WEIGHTS_NAME} and {CONFIG_NAME}") from None
        except RevisionNotFoundError:
            raise CheckpointError(f"Hub repo {repo_id!r} has no revision {revision!r}") from None
        except RepositoryNotFoundError:
            raise CheckpointError(f"Hub repo {repo_id!r} not found (or private without a token)") from None
    return Path(got[0]).parent


def read_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_NAME}; expected a folder written by save_pretrained")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict) or not {"family", "config"} <= set(cfg):
        raise CheckpointError(f"{cfg_path} is not a zoo config (needs 'family' and 'config' keys)")
    return cfg


def read_weights(path: Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing or corrupt file raises :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        return load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {e}") from None


def load_directory(directory: str | Path, *, map_location: str = "cpu", expect_family: str | None = None):
    """Build the model described by ``directory/config.json`` and load its weights strictly."""
    directory = Path(directory)
    cfg = read_config(directory)
    family = cfg["family"]
    if expect_family is not None and family != expect_family:
        raise CheckpointError(f"{directory} holds a {family!r} model, expected {expect_family!r}")
    try:
        cls = family_class(family)
    except UnknownModelError as e:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {e}") from None
    try:
        config = make_config(cls.config_class, cfg["config"], what=str(directory / CONFIG_NAME))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    model = cls(config, name=cfg.get("variant") or family)
    load_state(model, read_weights(directory / WEIGHTS_NAME, map_location), source=str(directory))
    return model.to(map_location).eval()


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing, unexpected and
    mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise CheckpointError(f"weights in {source} do not match {type(model).__name__} "
                              f"{getattr(model, 'name', '')}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


# -- share ------------------------------------------------------------------------------------------
def push_to_hub(model: Any, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str | None = None, endpoint: str | None = None,
                metrics: dict[str, Any] | None = None) -> str:
    """Upload weights, config and a generated model card to ``repo_id``; returns the commit id."""
    import tempfile

    from huggingface_hub import HfApi

    from zoo.model_card import render_model_card

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp)
        atomic_write_text(Path(tmp) / CARD_NAME, render_model_card(model, repo_id=repo_id, metrics=metrics))
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                 commit_message=commit_message or f"Upload {model.name} (tokenizer-zoo {zoo.__version__})")
    return info.oid

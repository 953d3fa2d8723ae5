"""Checkpoint folders on disk and on the Hub: ``model.safetensors`` + ``config.json`` (+ ``README.md``).

File I/O only: this module knows nothing of model classes or the registry (it takes state dicts,
config dicts and duck-typed models), so the model base class can use it. Building a model from a
folder is :mod:`zoo.factory`'s job. :func:`resolve` finds the folder of ``name_or_path``, in order:

1. a local directory written by :func:`save_pretrained`;
2. ``<checkpoints>/<name>`` where ``<checkpoints>`` is ``$ZOO_CHECKPOINTS``, ``./checkpoints`` or the
   ``checkpoints/`` folder of a source checkout;
3. a Hugging Face Hub repo id (``owner/name``), downloaded through ``huggingface_hub``'s cache
   with ``revision`` pinning. ``$HF_ENDPOINT`` (read at call time) points at another Hub server.
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

from zoo.errors import CheckpointError
from zoo.io import atomic_write, atomic_write_text
from zoo.version import __version__

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


# -- save -------------------------------------------------------------------------------------------
def model_config_dict(model: Any) -> dict[str, Any]:
    """What ``config.json`` holds: family, variant name, config fields and the zoo version."""
    return {"family": model.family, "variant": model.name, "zoo_version": __version__,
            "config": dataclasses.asdict(model.config)}


def save_folder(directory: str | Path, state: dict[str, torch.Tensor], config: dict[str, Any], *,
                card: str | None = None) -> Path:
    """Write ``state`` to ``model.safetensors``, ``config`` to ``config.json`` (and ``card`` to
    ``README.md``) in ``directory``; each file is written to a temporary name and renamed, so a
    failed save never leaves a half-written file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    if card is not None:
        atomic_write_text(directory / CARD_NAME, card)
    return directory


def save_pretrained(model: Any, directory: str | Path, *, card: str | None = None) -> Path:
    """Save a zoo tokenizer (anything with ``state_dict()``, ``family``, ``name`` and a dataclass
    ``config``) as ``model.safetensors`` + ``config.json`` (+ ``README.md`` when ``card`` is given)."""
    return save_folder(directory, model.state_dict(), model_config_dict(model), card=card)


# -- load -------------------------------------------------------------------------------------------
def checkpoint_dirs() -> list[Path]:
    """Folders searched for ``<name>/`` checkpoints, in order."""
    dirs = []
    if os.environ.get("ZOO_CHECKPOINTS"):
        dirs.append(Path(os.environ["ZOO_CHECKPOINTS"]))
    dirs.append(Path.cwd() / "checkpoints")
    dirs.append(Path(__file__).resolve().parents[1] / "checkpoints")
    return dirs


def resolve(name_or_path: str | Path, revision: str | None = None, *, cache_dir: str | Path | None = None,
            endpoint: str | None = None, token: str | None = None, local_files_only: bool = False) -> Path | None:
    """The save_pretrained folder of ``name_or_path`` (see the module docstring for where it looks),
    downloading a Hub repo into the cache; None when it is none of these (a registered name, say)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if not looks_like_repo_id(name) and (path.suffix or os.sep in name):
        raise CheckpointError(f"checkpoint directory {name!r} does not exist")
    for folder in checkpoint_dirs():
        if (folder / name / CONFIG_NAME).is_file():
            return folder / name
    if looks_like_repo_id(name):
        return download(name, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token,
                        local_files_only=local_files_only)
    return None


def looks_like_repo_id(name: str) -> bool:
    """``owner/name``, not a relative or absolute path."""
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
                  local_files_only=local_files_only, library_name="tokenizer-zoo", library_version=__version__)
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
def push_to_hub(model: Any, repo_id: str, *, card: str | None = None, private: bool | None = None,
                token: str | None = None, revision: str | None = None, commit_message: str | None = None,
                endpoint: str | None = None) -> str:
    """Upload weights, config and ``card`` (``README.md``; the model's ``push_to_hub`` renders one)
    to ``repo_id``; returns the commit id."""
    import tempfile

    from huggingface_hub import HfApi

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, card=card)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                 commit_message=commit_message or f"Upload {model.name} (tokenizer-zoo {__version__})")
    return info.oid
